"""Figures: orthogonal slices of original, result and difference."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxfield.viz.slices import central_slices, compare_figure, spatial_view

__all__ = ["central_slices", "compare_figure", "spatial_view"]


#: Re-exported name -> the submodule that defines it, imported on first use so that
#: importing this package stays light (start-up time, issue 15).
_LAZY = {
    "central_slices": "voxfield.viz.slices",
    "compare_figure": "voxfield.viz.slices",
    "spatial_view": "voxfield.viz.slices",
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
