"""Figures: orthogonal slices of original, result and difference."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxfield._lazy import lazy_exports as _lazy_exports

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


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())
