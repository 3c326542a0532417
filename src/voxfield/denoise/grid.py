"""The 1 Å working grid of the denoiser: resampling, normalisation and back-mapping.

DeepTracer-Denoising (paper 003) works on maps resampled to 1.0 Å voxels (so that a helix has
the same size in voxels in every map), with negative values set to 0, divided by the 99.9th
percentile of the nonzero voxels and clipped to 1 (the conventions of the same author's
SR-CryoEM code; ANCHORS.md). Resampling is trilinear. Voxel ``(k, j, i)`` of the 1 Å grid has
its centre at the same origin as voxel ``(0, 0, 0)`` of the original grid plus ``(k, j, i)`` Å,
so that the prediction can be interpolated back onto the original voxels exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

from voxfield.errors import DataError
from voxfield.metrics.map_model import spacing3

#: Voxel size of the working grid, Å.
WORK_SPACING = 1.0
#: Percentile of the nonzero voxels that becomes 1.0 after normalisation.
NORM_PERCENTILE = 99.9
#: Largest working grid accepted (voxels): 1 Å grids above 1024^3 are refused.
MAX_WORK_VOXELS = 1024**3


def spacing_zyx(spacing: float | Sequence[float]) -> np.ndarray:
    """Voxel size as a float64 ``(z, y, x)`` array; :class:`DataError` naming ``--apix`` for 0,
    negative or non-finite values (:func:`voxfield.metrics.map_model.spacing3`)."""
    return np.asarray(spacing3(spacing), dtype=np.float64)

def work_shape(shape: Sequence[int], spacing: float | Sequence[float]) -> tuple[int, int, int]:
    """Shape of the 1 Å grid covering a map of ``shape`` voxels of ``spacing`` Å."""
    sp = spacing_zyx(spacing)
    out = tuple(int(math.floor((n - 1) * s / WORK_SPACING + 1e-6)) + 1 for n, s in zip(shape, sp))
    if math.prod(out) > MAX_WORK_VOXELS:
        raise DataError(
            f"the map resampled to {WORK_SPACING:g} Å would be {out} voxels "
            f"(over {MAX_WORK_VOXELS:,}); crop it first"
        )
    return out  # type: ignore[return-value]


def to_work_grid(data: np.ndarray, spacing: float | Sequence[float]) -> np.ndarray:
    """Trilinear resampling of a ``(z, y, x)`` map onto the 1 Å grid (float32). Maps already
    at 1 Å (within 0.1 %) are only converted to float32."""
    a = np.asarray(data, dtype=np.float32)
    sp = spacing_zyx(spacing)
    if np.allclose(sp, WORK_SPACING, rtol=1e-3, atol=0):
        return np.array(a, dtype=np.float32, copy=True)
    shp = work_shape(a.shape, sp)
    return ndi.affine_transform(
        a, WORK_SPACING / sp, output_shape=shp, order=1, mode="nearest", prefilter=False
    ).astype(np.float32, copy=False)


def from_work_grid(work: np.ndarray, shape: Sequence[int], spacing: float | Sequence[float]) -> np.ndarray:
    """Trilinear interpolation of a 1 Å-grid array back onto the original ``shape`` /
    ``spacing`` voxels (float32)."""
    sp = spacing_zyx(spacing)
    w = np.asarray(work, dtype=np.float32)
    if np.allclose(sp, WORK_SPACING, rtol=1e-3, atol=0) and tuple(w.shape) == tuple(shape):
        return np.array(w, copy=True)
    return ndi.affine_transform(
        w, sp / WORK_SPACING, output_shape=tuple(int(n) for n in shape), order=1, mode="nearest", prefilter=False
    ).astype(np.float32, copy=False)


def normalise(work: np.ndarray, percentile: float = NORM_PERCENTILE) -> tuple[np.ndarray, float]:
    """Negatives to 0, divide by the ``percentile`` of the nonzero voxels, clip to [0, 1].

    Returns ``(normalised float32 array, scale)``; an all-zero (or all-negative) map gives
    a zero array and scale 0.
    """
    a = np.clip(np.asarray(work, dtype=np.float32), 0.0, None)
    nz = a[a > 0]
    if nz.size == 0:
        return np.zeros_like(a), 0.0
    scale = float(np.percentile(nz, percentile))
    if not scale > 0:
        scale = float(nz.max())
    return np.clip(a / scale, 0.0, 1.0).astype(np.float32, copy=False), scale
