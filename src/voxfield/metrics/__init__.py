"""Quality metrics for compressed, denoised or reconstructed volumes.

Functions take numpy arrays (any real dtype, computed in float64) and plain parameters; they
import nothing from voxfield but :mod:`voxfield.errors`. Bad input (shapes that differ,
empty arrays, NaN/Inf) raises :class:`~voxfield.errors.DataError`, a bad option
:class:`~voxfield.errors.OptionError`.

Modules: :mod:`~voxfield.metrics.error` (MSE, PSNR with the data range and, labelled, with
the dtype maximum), :mod:`~voxfield.metrics.rate` (ratio, bits per voxel),
:mod:`~voxfield.metrics.similarity` (n-D SSIM), :mod:`~voxfield.metrics.fourier_shell` (Fourier shell
correlation and resolution), :mod:`~voxfield.metrics.density` (paper 000's
relative-error table), :mod:`~voxfield.metrics.segmentation` (Acc(tau), Dice, IoU) and
:mod:`~voxfield.metrics.report` (:func:`compare`: everything in one JSON-ready dict).
"""

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
from .rate import bits_per_voxel, compression_ratio
from .report import REPORT_KEYS, compare, format_report
from .segmentation import dice, iou, mask_scores, thresholded_accuracy
from .similarity import SSIMResult, ssim, ssim_details

__all__ = [
    "DEFAULT_EDGE_FRACTIONS",
    "FLOAT_DTYPE_MAX_PEAK",
    "PAPER_EDGES",
    "REPORT_KEYS",
    "DensityBandRow",
    "ErrorStats",
    "FSCResult",
    "Resolution",
    "SSIMResult",
    "band_edges",
    "bits_per_voxel",
    "compare",
    "compression_ratio",
    "density_bands",
    "dice",
    "dtype_max_peak",
    "error_stats",
    "format_density_table",
    "format_report",
    "fsc",
    "iou",
    "mask_scores",
    "max_abs_error",
    "mean_abs_error",
    "mse",
    "psnr",
    "psnr_dtype_max",
    "psnr_from_mse",
    "rmse",
    "ssim",
    "ssim_details",
    "thresholded_accuracy",
]
