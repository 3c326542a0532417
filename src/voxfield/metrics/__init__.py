"""Quality metrics for compressed, denoised or reconstructed volumes.

Functions take numpy arrays (any real dtype, computed in float64) and plain parameters; they
import nothing from voxfield but :mod:`voxfield.errors`. Bad input (shapes that differ,
empty arrays, NaN/Inf) raises :class:`~voxfield.errors.DataError`, a bad option
:class:`~voxfield.errors.OptionError`.

Modules: :mod:`~voxfield.metrics.error` (MSE, PSNR with the data range and, labelled, with
the dtype maximum), :mod:`~voxfield.metrics.rate` (ratio, bits per voxel),
:mod:`~voxfield.metrics.similarity` (n-D SSIM), :mod:`~voxfield.metrics.fourier_shell` (Fourier shell
correlation and resolution), :mod:`~voxfield.metrics.density` (paper 000's
relative-error table), :mod:`~voxfield.metrics.segmentation` (Acc(tau), Dice, IoU, the
agreement of a threshold segmentation: :func:`segmentation_agreement`),
:mod:`~voxfield.metrics.report` (:func:`compare`: everything in one JSON-ready dict),
:mod:`~voxfield.metrics.cryoem` (the cryo-EM quality report: contour mask and automatic
contour, masked PSNR, FSC >= 0.9, CC_mask) and :mod:`~voxfield.metrics.map_model` (model map
simulated with gemmi, CC_mask; gemmi is imported only when a model is used).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cryoem import (
        AUTO_CONTOUR_FRACTION,
        AUTO_CONTOUR_MIN_VOLUME,
        CRYOEM_REPORT_KEYS,
        AutoContour,
        auto_contour,
        auto_contour_info,
        contour_mask,
        cryoem_report,
        format_cryoem_report,
    )
    from .density import (
        DEFAULT_EDGE_FRACTIONS,
        PAPER_EDGES,
        DensityBandRow,
        band_edges,
        density_bands,
        format_density_table,
    )
    from .error import (
        FLOAT_DTYPE_MAX_PEAK,
        ErrorStats,
        dtype_max_peak,
        error_stats,
        max_abs_error,
        mean_abs_error,
        mse,
        psnr,
        psnr_dtype_max,
        psnr_from_mse,
        rmse,
    )
    from .fourier_shell import FSCResult, Resolution, fsc
    from .map_model import (
        DEFAULT_CC_MASK_RADIUS,
        MapModelCC,
        ModelMapMismatchWarning,
        atom_coordinates,
        atom_mask,
        cc_mask,
        load_model,
        masked_cc,
        simulate_model_map,
    )
    from .rate import bits_per_voxel, compression_ratio
    from .report import REPORT_KEYS, compare, format_report
    from .segmentation import (
        count_objects,
        dice,
        format_segmentation,
        iou,
        mask_scores,
        otsu_threshold,
        reference_segmentation,
        segmentation_agreement,
        thresholded_accuracy,
    )
    from .similarity import SSIMResult, ssim, ssim_details

__all__ = [
    "AUTO_CONTOUR_FRACTION",
    "AUTO_CONTOUR_MIN_VOLUME",
    "CRYOEM_REPORT_KEYS",
    "DEFAULT_CC_MASK_RADIUS",
    "DEFAULT_EDGE_FRACTIONS",
    "FLOAT_DTYPE_MAX_PEAK",
    "PAPER_EDGES",
    "REPORT_KEYS",
    "AutoContour",
    "DensityBandRow",
    "ErrorStats",
    "FSCResult",
    "MapModelCC",
    "ModelMapMismatchWarning",
    "Resolution",
    "SSIMResult",
    "atom_coordinates",
    "atom_mask",
    "auto_contour",
    "auto_contour_info",
    "band_edges",
    "bits_per_voxel",
    "cc_mask",
    "compare",
    "compression_ratio",
    "contour_mask",
    "count_objects",
    "cryoem_report",
    "density_bands",
    "dice",
    "dtype_max_peak",
    "error_stats",
    "format_cryoem_report",
    "format_density_table",
    "format_report",
    "format_segmentation",
    "fsc",
    "iou",
    "load_model",
    "mask_scores",
    "masked_cc",
    "max_abs_error",
    "mean_abs_error",
    "mse",
    "otsu_threshold",
    "psnr",
    "psnr_dtype_max",
    "psnr_from_mse",
    "reference_segmentation",
    "rmse",
    "segmentation_agreement",
    "simulate_model_map",
    "ssim",
    "ssim_details",
    "thresholded_accuracy",
]


#: Re-exported name -> the submodule that defines it, imported on first use so that
#: importing this package stays light (start-up time, issue 15).
_LAZY = {
    "AUTO_CONTOUR_FRACTION": "voxfield.metrics.cryoem",
    "AUTO_CONTOUR_MIN_VOLUME": "voxfield.metrics.cryoem",
    "CRYOEM_REPORT_KEYS": "voxfield.metrics.cryoem",
    "AutoContour": "voxfield.metrics.cryoem",
    "auto_contour": "voxfield.metrics.cryoem",
    "auto_contour_info": "voxfield.metrics.cryoem",
    "contour_mask": "voxfield.metrics.cryoem",
    "cryoem_report": "voxfield.metrics.cryoem",
    "format_cryoem_report": "voxfield.metrics.cryoem",
    "DEFAULT_EDGE_FRACTIONS": "voxfield.metrics.density",
    "PAPER_EDGES": "voxfield.metrics.density",
    "DensityBandRow": "voxfield.metrics.density",
    "band_edges": "voxfield.metrics.density",
    "density_bands": "voxfield.metrics.density",
    "format_density_table": "voxfield.metrics.density",
    "FLOAT_DTYPE_MAX_PEAK": "voxfield.metrics.error",
    "ErrorStats": "voxfield.metrics.error",
    "dtype_max_peak": "voxfield.metrics.error",
    "error_stats": "voxfield.metrics.error",
    "max_abs_error": "voxfield.metrics.error",
    "mean_abs_error": "voxfield.metrics.error",
    "mse": "voxfield.metrics.error",
    "psnr": "voxfield.metrics.error",
    "psnr_dtype_max": "voxfield.metrics.error",
    "psnr_from_mse": "voxfield.metrics.error",
    "rmse": "voxfield.metrics.error",
    "FSCResult": "voxfield.metrics.fourier_shell",
    "Resolution": "voxfield.metrics.fourier_shell",
    "fsc": "voxfield.metrics.fourier_shell",
    "DEFAULT_CC_MASK_RADIUS": "voxfield.metrics.map_model",
    "MapModelCC": "voxfield.metrics.map_model",
    "ModelMapMismatchWarning": "voxfield.metrics.map_model",
    "atom_coordinates": "voxfield.metrics.map_model",
    "atom_mask": "voxfield.metrics.map_model",
    "cc_mask": "voxfield.metrics.map_model",
    "load_model": "voxfield.metrics.map_model",
    "masked_cc": "voxfield.metrics.map_model",
    "simulate_model_map": "voxfield.metrics.map_model",
    "bits_per_voxel": "voxfield.metrics.rate",
    "compression_ratio": "voxfield.metrics.rate",
    "REPORT_KEYS": "voxfield.metrics.report",
    "compare": "voxfield.metrics.report",
    "format_report": "voxfield.metrics.report",
    "count_objects": "voxfield.metrics.segmentation",
    "dice": "voxfield.metrics.segmentation",
    "format_segmentation": "voxfield.metrics.segmentation",
    "iou": "voxfield.metrics.segmentation",
    "mask_scores": "voxfield.metrics.segmentation",
    "otsu_threshold": "voxfield.metrics.segmentation",
    "reference_segmentation": "voxfield.metrics.segmentation",
    "segmentation_agreement": "voxfield.metrics.segmentation",
    "thresholded_accuracy": "voxfield.metrics.segmentation",
    "SSIMResult": "voxfield.metrics.similarity",
    "ssim": "voxfield.metrics.similarity",
    "ssim_details": "voxfield.metrics.similarity",
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
