"""``sz3``: the SZ3 error-bounded prediction codec (``imagecodecs.sz3_encode``).

Knob: the absolute error bound (SZ3's ABS mode). Targets:

* ``max_abs_error`` E: ABS mode at E (integer data: ``floor(E)``, or 0.49 below 1, so
  that rounding back to integers keeps the bound), then every value is checked after
  decoding and the bound tightened if SZ3's float arithmetic ever overshoots;
* ``rel_error`` r: the same with E = r * (max - min), which is SZ3's REL mode;
* ``psnr`` p: imagecodecs does not expose SZ3's PSNR mode, so it is done the same way
  SZ3 does it internally: ``E = sqrt(3) * range * 10**(-p/20)`` (uniform error within
  ±E), then the PSNR (data range) is measured and E adjusted until it is >= p and at
  most 0.5 dB above;
* ``ratio`` / ``bytes``: search on E in log space.

dtypes: SZ3 (through imagecodecs) takes float32/float64; 8/16-bit integers and float16
are coded as float32, 32-bit integers as float64 (both exact conversions), and decoded
values are rounded and clipped back to the integer dtype.

Layout: axes of length 1 dropped, a trailing samples axis (YXS) moved first, 5-D merged
to 4-D by joining the two leading axes (SZ3 predicts natively in 1 to 4 dimensions).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from voxfield.codecs._common import LossyCodec, decode_float, fit_size, imagecodecs_has, work_dtype
from voxfield.codecs.base import value_range
from voxfield.codecs.layout import from_volume, to_volume, volume_plan
from voxfield.errors import FormatError

try:  # pragma: no cover - depends on the imagecodecs build
    import imagecodecs
except ImportError:  # pragma: no cover
    imagecodecs = None


def _plan(shape: tuple[int, ...]):
    return volume_plan(shape, max_dims=4, min_dims=1)


class Sz3Codec(LossyCodec):
    """SZ3 (see the module docstring)."""

    name = "sz3"
    description = "SZ3 error-bounded prediction codec"
    targets: ClassVar[frozenset[str]] = frozenset({"ratio", "bytes", "max_abs_error", "rel_error", "psnr"})

    def __init__(self) -> None:
        super().__init__()

    @classmethod
    def available(cls) -> bool:
        return imagecodecs_has("SZ3")

    def _encode_at(self, data: np.ndarray, bound: float) -> bytes:
        plan = _plan(data.shape)
        vol = to_volume(data, plan).astype(work_dtype(data.dtype), copy=False)
        body = imagecodecs.sz3_encode(vol, mode="abs", abs=float(bound))
        return self._pack(data.shape, data.dtype, {}, body)

    def _decode(
        self, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes
    ) -> np.ndarray:
        plan = _plan(shape)
        if not body:
            raise FormatError("truncated sz3 payload")
        vol = imagecodecs.sz3_decode(body, plan.coded, work_dtype(dtype))
        return decode_float(from_volume(vol, plan), dtype)

    def _encode_error(self, data: np.ndarray, bound: float) -> bytes:
        return self._verified_bound(data, bound, lambda e: self._encode_at(data, e))

    def _encode_psnr(self, data: np.ndarray, db: float) -> bytes:
        rng = value_range(data)
        start = math.sqrt(3.0) * rng * 10 ** (-db / 20)
        return self._verified_psnr(
            data, db, lambda e: self._encode_at(data, e), start=start,
            step=lambda e, d: e * 10 ** (min(d, 6.0) / 20 - 0.005),
        )

    def _encode_size(self, data: np.ndarray, goal: float, rtol: float) -> bytes:
        rng = value_range(data)
        ratio = data.nbytes / goal
        # On cryo-EM maps size ~ bound**-0.45 around 1e-3 * range at ratio ~20 (float32).
        ratio32 = ratio * 4.0 / data.dtype.itemsize
        guess = rng * 1e-3 * (max(ratio32, 1.5) / 20.0) ** 2.2
        payload, _ = fit_size(
            lambda e: self._encode_at(data, e),
            lo=rng * 1e-9, hi=rng, guess=min(guess, 0.5 * rng), goal=goal, rtol=rtol,
            smaller_when="higher", log=True, slope=-0.45, nbytes=data.nbytes, codec=self.name,
        )
        return payload
