"""Compression into ``.vxf`` files: classic codecs now, neural fields next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxfield._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from voxfield.compress.api import decompress, describe
    from voxfield.compress.classic import compress_volume

__all__ = ["compress_volume", "decompress", "describe"]

#: Re-exported name -> the submodule that defines it, imported on first use so that
#: importing this package stays light (start-up time, issue 15): ``voxfield info`` and the
#: classic codecs never import the neural methods (torch).
_LAZY = {
    "decompress": "voxfield.compress.api",
    "describe": "voxfield.compress.api",
    "compress_volume": "voxfield.compress.classic",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())


from voxfield._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__)  # `voxfield.compress(...)` calls voxfield.api.compress
