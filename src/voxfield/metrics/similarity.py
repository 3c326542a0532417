"""Structural similarity (SSIM), in 3-D for volumes and 2-D for images.

This is the SSIM of Wang et al. (2004) with their constants: a Gaussian window of
sigma = 1.5 voxels truncated at radius 5 (11 taps), K1 = 0.01, K2 = 0.03, population
(co)variances, and the mean taken over the voxels whose window lies entirely inside the
array (a border of 5 voxels on each side of each spatial axis is left out). In that regular
case the value equals ``skimage.metrics.structural_similarity(original, result,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R)`` computed in
float64, in any number of dimensions.

What voxfield adds:

* **n-D windows.** A volume is compared with a 3-D window, not slice by slice; an image
  with a 2-D window. ``spatial_axes`` says which axes are spatial; every other axis
  (channel, time, particle index) is looped over and the mean of the per-slice SSIMs is
  returned (all slices have the same size, so this is also the mean over all voxels).
* **Bounded memory.** Each spatial block is processed in slabs along its first spatial
  axis with a 5-voxel halo, in float64, at most :data:`SLAB_ELEMS` voxels per slab (a few
  hundred MB peak whatever the volume size). Because only voxels whose whole window lies
  inside the array are averaged, slabbing changes nothing: the result is exact.
* **Small dimensions** (the window must fit):

  - a spatial axis shorter than :data:`MIN_SPATIAL` (7) voxels is treated as a slice axis
    (e.g. a 4 x 256 x 256 stack is compared as four 2-D images, a ``YXS`` RGB image as
    three 2-D images);
  - a spatial axis of 7-10 voxels keeps sigma = 1.5 but its window is truncated at radius
    ``(n - 1) // 2`` (3 or 4) instead of 5, and that many border voxels are left out;
  - if no spatial axis has 7 voxels or more, :class:`~voxfield.errors.DataError`.

* **Data range** ``R`` (sets ``C1 = (K1 R)^2``, ``C2 = (K2 R)^2``): by default the
  original's ``max - min`` over the whole array (all channels together, like PSNR). If the
  original is constant, the range of both arrays together is used; if both are the same
  constant the SSIM is 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from voxfield.errors import DataError, OptionError

from ._validate import check_pair, default_spatial_axes, normalize_axes

SIGMA = 1.5
K1 = 0.01
K2 = 0.03
#: Window radius in voxels (int(3.5 * 1.5 + 0.5), the 11-tap window of Wang et al.).
RADIUS = 5
#: Spatial axes shorter than this are looped over as slices.
MIN_SPATIAL = 7
#: Most voxels in one slab (float64): about 10 arrays of this size live at once (~340 MB).
SLAB_ELEMS = 1 << 22


@dataclass(frozen=True)
class SSIMResult:
    """SSIM and how it was computed.

    Attributes
    ----------
    ssim : mean SSIM (dimensionless, at most 1).
    spatial_axes : axes the window ran over (after dropping axes shorter than 7 voxels).
    slice_axes : axes looped over (non-spatial axes and spatial axes shorter than 7).
    radius : window radius per entry of ``spatial_axes``, in voxels.
    data_range : ``R`` used for the constants, in data units.
    """

    ssim: float
    spatial_axes: tuple[int, ...]
    slice_axes: tuple[int, ...]
    radius: tuple[int, ...]
    data_range: float

    @property
    def mode(self) -> str:
        """``"3D"``, ``"2D"``... (window dimensionality), with ``" per slice"`` when looped."""
        s = f"{len(self.spatial_axes)}D"
        return s + (" per slice" if self.slice_axes else "")


def _ssim_map(x: np.ndarray, y: np.ndarray, radius: Sequence[int], c1: float, c2: float) -> np.ndarray:
    """SSIM map of two float64 blocks (same shape); boundary values are garbage and cropped."""

    def filt(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=SIGMA, radius=list(radius), mode="reflect")

    mx = filt(x)
    my = filt(y)
    sxx = filt(x * x)
    syy = filt(y * y)
    sxy = filt(x * y)
    mxy = mx * my
    sxy -= mxy  # covariance
    mx *= mx
    my *= my
    sxx -= mx  # variance of x
    syy -= my  # variance of y
    # numerator (2 mx my + C1)(2 sxy + C2) into mxy; denominator (mx^2 + my^2 + C1)(vx + vy + C2)
    mxy *= 2.0
    mxy += c1
    sxy *= 2.0
    sxy += c2
    mxy *= sxy
    mx += my
    mx += c1
    sxx += syy
    sxx += c2
    mx *= sxx
    mxy /= mx
    return mxy


def _ssim_sum(x: np.ndarray, y: np.ndarray, radius: Sequence[int], c1: float, c2: float) -> tuple[float, int]:
    """Sum and count of SSIM values over the cropped interior of one spatial block."""
    shape = x.shape
    r0, n0 = radius[0], shape[0]
    inner = math.prod(shape[1:])
    core = tuple(slice(r, n - r) for r, n in zip(radius[1:], shape[1:]))
    step = max(1, SLAB_ELEMS // max(inner, 1) - 2 * r0)
    total = 0.0
    count = 0
    for z0 in range(r0, n0 - r0, step):
        z1 = min(z0 + step, n0 - r0)
        xs = np.asarray(x[z0 - r0 : z1 + r0], dtype=np.float64)
        ys = np.asarray(y[z0 - r0 : z1 + r0], dtype=np.float64)
        s = _ssim_map(xs, ys, radius, c1, c2)
        kept = s[(slice(r0, r0 + (z1 - z0)),) + core]
        total += float(kept.sum(dtype=np.float64))
        count += kept.size
    return total, count


def ssim_details(
    original: np.ndarray,
    result: np.ndarray,
    *,
    data_range: float | None = None,
    spatial_axes: Sequence[int] | None = None,
    _checked: bool = False,
    _original_range: tuple[float, float] | None = None,
) -> SSIMResult:
    """SSIM with the details of how it was computed (see :func:`ssim` and the module docs)."""
    if not _checked:
        original, result = check_pair(original, result)
    ndim = original.ndim
    if ndim == 0:
        raise DataError("SSIM needs at least one dimension")
    axes = normalize_axes(default_spatial_axes(ndim) if spatial_axes is None else spatial_axes, ndim)
    used = tuple(ax for ax in axes if original.shape[ax] >= MIN_SPATIAL)
    if not used:
        raise DataError(
            f"array of shape {original.shape} too small for SSIM: no spatial axis "
            f"{list(axes)} has {MIN_SPATIAL} voxels or more"
        )
    slice_axes = tuple(ax for ax in range(ndim) if ax not in used)
    radius = tuple(min(RADIUS, (original.shape[ax] - 1) // 2) for ax in used)

    if data_range is None:
        if _original_range is not None:
            lo, hi = _original_range
        else:
            lo, hi = float(original.min()), float(original.max())
        rng = hi - lo
        if rng == 0:
            lo2 = min(lo, float(result.min()))
            hi2 = max(hi, float(result.max()))
            rng = hi2 - lo2
            if rng == 0:  # both the same constant
                return SSIMResult(1.0, used, slice_axes, radius, 0.0)
    else:
        try:
            rng = float(data_range)
        except (TypeError, ValueError):
            raise OptionError(f"data_range must be a number, got {data_range!r}") from None
        if not math.isfinite(rng) or rng <= 0:
            raise OptionError(f"data_range must be finite and > 0, got {data_range!r}")
    c1 = (K1 * rng) ** 2
    c2 = (K2 * rng) ** 2

    order = slice_axes + used
    xt = np.transpose(original, order)
    yt = np.transpose(result, order)
    lead = xt.shape[: len(slice_axes)]
    total = 0.0
    count = 0
    for idx in np.ndindex(*lead):
        s, c = _ssim_sum(xt[idx], yt[idx], radius, c1, c2)
        total += s
        count += c
    return SSIMResult(total / count, used, slice_axes, radius, rng)


def ssim(
    original: np.ndarray,
    result: np.ndarray,
    *,
    data_range: float | None = None,
    spatial_axes: Sequence[int] | None = None,
) -> float:
    """Mean structural similarity of ``result`` to ``original`` (dimensionless, <= 1).

    Parameters
    ----------
    original, result : arrays of the same shape, any real dtype (computed in float64).
    data_range : ``R`` in data units; default ``original.max() - original.min()`` (never the
        dtype maximum).
    spatial_axes : indices of the spatial axes; the window is n-D over them and every other
        axis is looped over (mean returned). Default: all axes for 1-3-D arrays, the last
        three for 4-D and 5-D (``CZYX``, ``TCZYX``).

    Gaussian window sigma = 1.5 (radius 5), K1 = 0.01, K2 = 0.03, population covariance.
    Spatial axes shorter than 7 voxels become slice axes, axes of 7-10 voxels get a window
    truncated at ``(n-1)//2``; see the module docstring for the details.
    """
    return ssim_details(original, result, data_range=data_range, spatial_axes=spatial_axes).ssim
