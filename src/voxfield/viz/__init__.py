"""Figures: orthogonal slices of original, result and difference."""

from voxfield.viz.slices import central_slices, compare_figure, spatial_view

__all__ = ["central_slices", "compare_figure", "spatial_view"]
