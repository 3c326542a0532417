"""``jpegxl``: JPEG XL (libjxl through ``imagecodecs.jpegxl_encode``) on 2-D slices.

Layout: as ``jpeg2k`` — a stack of 2-D slices tiled into near-square mosaics (at most
2**24 pixels each), one JPEG XL codestream per mosaic (no container).

dtypes: every dtype is mapped linearly from [min, max] onto float32 in [0, 1] (min/max
stored) and coded as a linear-light grey float image. libjxl also takes uint8 (then
assumed sRGB-encoded: a perceptual transfer curve we do not want for densities) and
uint16 (linear, but with a 16-bit quantisation floor); on EMD-3488, float32 and uint16
inputs give the same sizes and PSNR to 0.01 dB, so float32 costs nothing and has no
floor. float16 is not accepted by this imagecodecs build.

Knob: the Butteraugli ``distance`` (0.01 = best lossy quality .. 25), searched in log
space for ratio/bytes targets. The smallest distance is still far from lossless (about
20x at 81 dB on EMD-3488), so for lower ratios the codec switches to **lossless** JPEG XL
(modular mode) on the values quantised to L + 1 levels over [min, max] (uint16 codes),
with L (<= 65535) as the knob: 16.6x at 82 dB for L = 4095 on EMD-3488. The largest
distance (25) bounds the ratio from above: small inputs (e.g. 47x40x48) stop near 70x.

``effort`` (1-9, default 3): on EMD-3488 effort 3 gives the best PSNR at a given size
(56.8 dB at 64x against 54.2 dB at effort 7, 42.1 against 41.0 dB at 256x) and is
5-10x faster; efforts >= 5 spend bits by psychovisual heuristics, which do not help
PSNR on density maps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from voxfield.codecs._common import LossyCodec, check_int_option, decode_float, fit_size, imagecodecs_has, keep_closest
from voxfield.codecs.jpeg2k import join_streams, split_streams
from voxfield.codecs.layout import (
    from_codes,
    from_mosaics,
    from_slices,
    mosaic_plan,
    slice_plan,
    to_codes,
    to_mosaics,
    to_slices,
)
from voxfield.errors import FormatError, TargetNotMet

try:  # pragma: no cover - depends on the imagecodecs build
    import imagecodecs
except ImportError:  # pragma: no cover
    imagecodecs = None

_MAX_PIXELS = 1 << 24
_DIST_MIN, _DIST_MAX = 0.01, 25.0
_MIN_LEVELS = 15


class JpegxlCodec(LossyCodec):
    """JPEG XL on slice mosaics (see the module docstring). Options: ``effort`` (1-9,
    default 3), ``threads`` (default 1)."""

    name = "jpegxl"
    description = "JPEG XL (libjxl) on 2-D slices"
    targets: ClassVar[frozenset[str]] = frozenset({"ratio", "bytes"})

    def __init__(self, effort: int = 3, threads: int = 1) -> None:
        super().__init__(
            effort=check_int_option("jpegxl effort", effort, 1, 9),
            threads=check_int_option("jpegxl threads", threads, 1, 256),
        )

    @classmethod
    def available(cls) -> bool:
        return imagecodecs_has("JPEGXL")

    def _prepare(self, data: np.ndarray) -> tuple[list[np.ndarray], dict[str, Any]]:
        lo, hi = float(np.min(data)), float(np.max(data))
        plan = slice_plan(data.shape)
        stack = to_slices(data, plan)
        unit = ((stack.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        mplan = mosaic_plan(unit.shape, _MAX_PIXELS)
        fill = float(np.mean(unit[-1]))
        return to_mosaics(unit, mplan, fill), {"lo": lo, "hi": hi}

    def _encode_distance(
        self, data: np.ndarray, pictures: list[np.ndarray], params: dict[str, Any], dist: float
    ) -> bytes:
        streams = [
            imagecodecs.jpegxl_encode(
                p, distance=float(dist), effort=self.config["effort"], lossless=False,
                numthreads=self.config["threads"],
            )
            for p in pictures
        ]
        return self._pack(data.shape, data.dtype, params, join_streams(streams))

    def _encode_levels(self, data: np.ndarray, stack: np.ndarray, levels: int) -> bytes:
        """Lossless JPEG XL (modular) of the values quantised to ``levels + 1`` codes."""
        lo, hi = float(np.min(data)), float(np.max(data))
        codes = to_codes(stack, lo, hi, levels, np.dtype(np.uint16))
        mplan = mosaic_plan(codes.shape, _MAX_PIXELS)
        fill = int(round(float(np.mean(codes[-1]))))
        streams = [
            imagecodecs.jpegxl_encode(
                p, effort=self.config["effort"], lossless=True, numthreads=self.config["threads"]
            )
            for p in to_mosaics(codes, mplan, fill)
        ]
        return self._pack(data.shape, data.dtype, {"lo": lo, "hi": hi, "L": levels}, join_streams(streams))

    def _decode(
        self, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes
    ) -> np.ndarray:
        plan = slice_plan(shape)
        mplan = mosaic_plan(plan.stack, _MAX_PIXELS)
        try:
            lo, hi = float(params["lo"]), float(params["hi"])
            levels = int(params["L"]) if "L" in params else None
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"corrupt jpegxl payload ({exc})") from None
        streams = split_streams(body, len(mplan.groups), self.name)
        pictures = [imagecodecs.jpegxl_decode(s, numthreads=self.config["threads"]) for s in streams]
        if any(p.ndim != 2 for p in pictures):
            raise FormatError("corrupt jpegxl payload (not a grey image)")
        if levels is not None:
            if not 1 <= levels <= 65535 or any(p.dtype != np.uint16 for p in pictures):
                raise FormatError("corrupt jpegxl payload (bad lossless codes)")
            values = from_codes(np.minimum(from_mosaics(pictures, mplan), levels), lo, hi, levels)
        else:
            unit = from_mosaics(pictures, mplan)
            values = unit.astype(np.float64) * (hi - lo) + lo
        return from_slices(decode_float(values, dtype), plan)

    def _encode_size(self, data: np.ndarray, goal: float, rtol: float) -> bytes:
        pictures, params = self._prepare(data)
        # ~64x at distance 0.25 and ~256x at 2.5 on a float32 density map
        ratio32 = data.nbytes / goal * 4.0 / data.dtype.itemsize
        guess = 0.25 * (ratio32 / 64.0) ** 1.6
        cache: dict[float, bytes] = {}

        def lossy(d: float) -> bytes:
            if d not in cache:
                cache[d] = self._encode_distance(data, pictures, params, d)
            return cache[d]

        try:
            payload, _ = fit_size(
                lossy, lo=_DIST_MIN, hi=_DIST_MAX, guess=min(max(guess, _DIST_MIN), _DIST_MAX), goal=goal,
                rtol=rtol, smaller_when="higher", log=True, slope=-0.6, nbytes=data.nbytes, codec=self.name,
            )
            return payload
        except TargetNotMet as exc:
            first = exc
            if len(lossy(_DIST_MIN)) >= goal:
                raise
        # Less compression than distance 0.01 gives: lossless JPEG XL on a value grid.
        stack = to_slices(data, slice_plan(data.shape))
        try:
            payload, _ = fit_size(
                lambda L: self._encode_levels(data, stack, int(L)),
                lo=_MIN_LEVELS, hi=65535, guess=4095, goal=goal, rtol=rtol, smaller_when="lower",
                log=True, integer=True, slope=0.3, nbytes=data.nbytes, codec=self.name,
            )
            return payload
        except TargetNotMet as exc:
            raise keep_closest(exc, first, goal) from None
