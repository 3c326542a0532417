"""Neural-field building blocks: batched sine MLPs (SIREN) evaluated with ``baddbmm``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxfield._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from voxfield.fields.siren import BatchedSiren, siren_param_count

__all__ = ["BatchedSiren", "siren_param_count"]


#: Re-exported name -> the submodule that defines it, imported on first use so that
#: importing this package stays light (start-up time, issue 15).
_LAZY = {
    "BatchedSiren": "voxfield.fields.siren",
    "siren_param_count": "voxfield.fields.siren",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())
