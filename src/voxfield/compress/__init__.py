"""Compression into ``.vxf`` files: classic codecs now, neural fields next."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

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


def __getattr__(name: str) -> object:
    """Import a re-exported name (or a submodule) on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


from voxfield._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__)  # `voxfield.compress(...)` calls voxfield.api.compress
