"""Pointwise error metrics: MSE, RMSE, max/mean absolute error and PSNR.

All of them are computed in float64 by streaming over the arrays in chunks of about a
million voxels, so that a 256^3 or larger volume costs no full-size float64 temporaries
(a non-contiguous input is first copied once, in its own dtype). Integer inputs are
subtracted in float64, so there is no wrap-around (``uint16 0 - 1`` is ``-1``, not 65535).

Two PSNR conventions exist and they differ by tens of dB (see ``docs/ANCHORS.md``,
"The metric trap"):

* :func:`psnr` - voxfield's number: the peak is the **data range of the original**
  (``max - min``), never the dtype maximum. Use this one.
* :func:`psnr_dtype_max` - what SCI, TINC and INIF report: the peak is the dtype maximum
  (65535 for uint16, 255 for uint8) **and 65535 for float data as well**. Only for
  reproducing those papers' tables; always label it as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voxfield.errors import OptionError

from ._validate import check_pair, flat_view, iter_chunks

#: Peak used by :func:`psnr_dtype_max` for floating-point data (SCI/TINC/INIF use 65535
#: for float32 volumes too; ANCHORS.md, "The metric trap").
FLOAT_DTYPE_MAX_PEAK = 65535.0


@dataclass(frozen=True)
class ErrorStats:
    """Everything one pass over ``(original, result)`` yields.

    Attributes
    ----------
    n : number of voxels.
    sse : sum of squared errors, in (data unit)^2.
    sae : sum of absolute errors, in data units.
    max_abs : largest absolute error, in data units.
    original_min, original_max : extremes of the original, in data units.
    """

    n: int
    sse: float
    sae: float
    max_abs: float
    original_min: float
    original_max: float

    @property
    def mse(self) -> float:
        return self.sse / self.n

    @property
    def rmse(self) -> float:
        return math.sqrt(self.mse)

    @property
    def mean_abs(self) -> float:
        return self.sae / self.n

    @property
    def data_range(self) -> float:
        return self.original_max - self.original_min


def error_stats(original: np.ndarray, result: np.ndarray, *, _checked: bool = False) -> ErrorStats:
    """One streaming float64 pass computing sums of squared/absolute errors, the maximum
    absolute error and the original's min/max. ``original`` and ``result``: same shape, any
    real dtype. Raises :class:`~voxfield.errors.DataError` on bad input."""
    if not _checked:
        original, result = check_pair(original, result)
    a = flat_view(original)
    b = flat_view(result)
    sse = 0.0
    sae = 0.0
    max_abs = 0.0
    lo = math.inf
    hi = -math.inf
    for sl in iter_chunks(a.size):
        ac = a[sl]
        d = np.subtract(b[sl], ac, dtype=np.float64)
        sse += float(np.dot(d, d))
        np.abs(d, out=d)
        sae += float(d.sum())
        max_abs = max(max_abs, float(d.max()))
        lo = min(lo, float(ac.min()))
        hi = max(hi, float(ac.max()))
    return ErrorStats(n=int(a.size), sse=sse, sae=sae, max_abs=max_abs, original_min=lo, original_max=hi)


def mse(original: np.ndarray, result: np.ndarray) -> float:
    """Mean squared error ``mean((result - original)^2)``, in (data unit)^2. Arrays of equal shape."""
    return error_stats(original, result).mse


def rmse(original: np.ndarray, result: np.ndarray) -> float:
    """Root mean squared error, in data units."""
    return error_stats(original, result).rmse


def max_abs_error(original: np.ndarray, result: np.ndarray) -> float:
    """Largest absolute error ``max|result - original|``, in data units (the L-infinity error
    that error-bounded codecs such as SZ3/ZFP guarantee)."""
    return error_stats(original, result).max_abs


def mean_abs_error(original: np.ndarray, result: np.ndarray) -> float:
    """Mean absolute error ``mean|result - original|``, in data units."""
    return error_stats(original, result).mean_abs


def psnr_from_mse(mse_value: float, peak: float) -> float:
    """``10 log10(peak^2 / mse)`` in dB with the edge cases defined.

    * ``mse == 0`` (identical arrays): ``inf``.
    * ``peak == 0`` and ``mse > 0`` (constant original): ``-inf``. There is no signal range
      to compare the error with; this is the limit of the formula as the range goes to 0, and
      it makes the report say plainly that PSNR is meaningless here (pass an explicit
      ``data_range`` to :func:`psnr` to get a number).
    """
    if mse_value < 0 or peak < 0:
        raise OptionError(f"mse and peak must be >= 0, got mse={mse_value}, peak={peak}")
    if mse_value == 0:
        return math.inf
    if peak == 0:
        return -math.inf
    return 20.0 * math.log10(peak) - 10.0 * math.log10(mse_value)


def psnr(original: np.ndarray, result: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, with the peak = the original's data range.

    Parameters
    ----------
    original, result : arrays of the same shape (any dimension, any real dtype).
    data_range : peak value in data units. Default: ``original.max() - original.min()``
        (never the dtype maximum: see :func:`psnr_dtype_max` for that convention).

    Returns
    -------
    ``10 log10(data_range^2 / MSE)`` in dB; ``inf`` when the arrays are identical; ``-inf``
    when the original is constant (data range 0) and the result differs from it.
    """
    stats = error_stats(original, result)
    if data_range is None:
        peak = stats.data_range
    else:
        try:
            peak = float(data_range)
        except (TypeError, ValueError):
            raise OptionError(f"data_range must be a number, got {data_range!r}") from None
        if not math.isfinite(peak) or peak <= 0:
            raise OptionError(f"data_range must be finite and > 0, got {data_range!r}")
    return psnr_from_mse(stats.mse, peak)


def dtype_max_peak(dtype: np.dtype | type) -> float:
    """Peak used by the dtype-maximum PSNR convention (SCI/TINC/INIF).

    bool -> 1; integer types -> their maximum (255 for uint8, 65535 for uint16, 32767 for
    int16); floating point -> 65535 (those papers keep 65535 for float32 volumes;
    ``docs/ANCHORS.md``, "The metric trap").
    """
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return 1.0
    if dt.kind in "iu":
        return float(np.iinfo(dt).max)
    if dt.kind == "f":
        return FLOAT_DTYPE_MAX_PEAK
    raise OptionError(f"no dtype-maximum convention for dtype {dt}")


def psnr_dtype_max(original: np.ndarray, result: np.ndarray) -> float:
    """PSNR in dB with the peak = the **dtype maximum of the original** (see
    :func:`dtype_max_peak`): the convention of SCI, TINC and INIF.

    It is *not* voxfield's PSNR: for data that does not fill its dtype it is inflated by
    ``20 log10(dtype_max / data_range)`` dB (about 19 dB on SCI's HiP-CT block, 37 dB on
    INIF's hiPS-cell example). Report it only next to :func:`psnr`, labelled as the
    dtype-max convention, when comparing with those papers.
    """
    original = np.asarray(original)
    stats = error_stats(original, result)
    return psnr_from_mse(stats.mse, dtype_max_peak(original.dtype))
