"""``jpeg2k``: JPEG 2000 (OpenJPEG through ``imagecodecs.jpeg2k_encode``) on 2-D slices.

Layout: the array is a stack of 2-D slices (all axes but the last two flattened into
the slice list; a trailing samples axis is moved first; a 1-D signal is folded into a
near-square picture). The slices are tiled into near-square **mosaics** (at most 2**24
pixels each) and every mosaic is one J2K codestream (no JP2 boxes). On EMD-3488 this is
far better than one codestream per slice: 98x instead of 61x at the same setting,
because a J2K header costs ~120 bytes and OpenJPEG's rate allocation then works over
the whole mosaic (one global quality) instead of per slice. (imagecodecs cannot write
tiled images, and OpenJPEG's 4-component limit rules out one component per slice.)

dtypes: uint8 and uint16 are coded natively (8/16-bit precision), int8/int16 offset by
128/32768 into uint8/uint16; all other dtypes (32-bit integers, floats) are mapped
linearly from [min, max] onto 0..65535 (min/max stored), which puts a floor of about
range/65535 (uniform error, PSNR ceiling ~ 107 dB) under the reconstruction.

Knob: OpenJPEG's fixed-quality rate allocation, ``level`` = target PSNR in dB of each
codestream relative to its peak (2**bits - 1), 9/7 irreversible wavelet. Sizes change
in small steps with the level (it is truncation-point based), so ratio/bytes targets
search it (linear); where a step straddles the ±3 % window (small inputs at high
ratios) the search is repeated with 5 and 7 wavelet resolutions instead of 6. ``psnr`` targets start from the
level that corresponds to the requested PSNR (data range) and adjust it after
measuring.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from voxfield.codecs._common import LossyCodec, check_int_option, decode_float, fit_size, imagecodecs_has
from voxfield.codecs.base import value_range
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
_LEVEL_MIN, _LEVEL_MAX = 5.0, 99.0


def join_streams(streams: list[bytes]) -> bytes:
    """Concatenate codestreams, each prefixed by its length (4 bytes, little endian)."""
    return b"".join(len(s).to_bytes(4, "little") + bytes(s) for s in streams)


def split_streams(body: bytes, count: int, codec: str) -> list[bytes]:
    out, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise FormatError(f"truncated {codec} payload")
        n = int.from_bytes(body[pos : pos + 4], "little")
        pos += 4
        if pos + n > len(body):
            raise FormatError(f"truncated {codec} payload")
        out.append(body[pos : pos + n])
        pos += n
    if pos != len(body):
        raise FormatError(f"corrupt {codec} payload (trailing bytes)")
    return out


def _code_spec(dtype: np.dtype) -> tuple[str, np.dtype, int]:
    """(how, code dtype, bits): how = "native", "offset" or "map"."""
    dtype = np.dtype(dtype)
    if dtype in (np.dtype(np.uint8), np.dtype(np.uint16)):
        return "native", dtype, dtype.itemsize * 8
    if dtype == np.dtype(np.int8):
        return "offset", np.dtype(np.uint8), 8
    if dtype == np.dtype(np.int16):
        return "offset", np.dtype(np.uint16), 16
    return "map", np.dtype(np.uint16), 16


class Jpeg2kCodec(LossyCodec):
    """JPEG 2000 on slice mosaics (see the module docstring). Option ``threads``
    (OpenJPEG threads, default 1)."""

    name = "jpeg2k"
    description = "JPEG 2000 (OpenJPEG) on 2-D slices"
    targets: ClassVar[frozenset[str]] = frozenset({"ratio", "bytes", "psnr"})

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads=check_int_option("jpeg2k threads", threads, 1, 256))

    @classmethod
    def available(cls) -> bool:
        return imagecodecs_has("JPEG2K")

    # -- core
    def _prepare(self, data: np.ndarray) -> tuple[list[np.ndarray], dict[str, Any], int]:
        how, cdt, bits = _code_spec(data.dtype)
        plan = slice_plan(data.shape)
        stack = to_slices(data, plan)
        params: dict[str, Any] = {}
        if how == "native":
            codes = stack
        elif how == "offset":
            off = 1 << (bits - 1)
            codes = (stack.astype(np.int32) + off).astype(cdt)
        else:
            lo, hi = float(np.min(data)), float(np.max(data))
            codes = to_codes(stack, lo, hi, 65535, cdt)
            params = {"lo": lo, "hi": hi}
        mplan = mosaic_plan(codes.shape, _MAX_PIXELS)
        fill = int(round(float(np.mean(codes[-1]))))
        return to_mosaics(codes, mplan, fill), params, bits

    def _encode_level(
        self, data: np.ndarray, pictures: list[np.ndarray], params: dict[str, Any], level: float,
        resolutions: int | None = None,
    ) -> bytes:
        kw: dict[str, Any] = {} if resolutions is None else {"resolutions": resolutions}
        streams = [
            imagecodecs.jpeg2k_encode(
                p, level=float(level), codecformat="J2K", reversible=False,
                numthreads=self.config["threads"], **kw,
            )
            for p in pictures
        ]
        return self._pack(data.shape, data.dtype, params, join_streams(streams))

    def _decode(
        self, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes
    ) -> np.ndarray:
        how, cdt, bits = _code_spec(dtype)
        plan = slice_plan(shape)
        mplan = mosaic_plan(plan.stack, _MAX_PIXELS)
        streams = split_streams(body, len(mplan.groups), self.name)
        pictures = [imagecodecs.jpeg2k_decode(s, numthreads=self.config["threads"]) for s in streams]
        if any(p.dtype != cdt for p in pictures):
            raise FormatError("corrupt jpeg2k payload (unexpected sample type)")
        codes = from_mosaics(pictures, mplan)
        if how == "native":
            stack = codes
        elif how == "offset":
            stack = (codes.astype(np.int32) - (1 << (bits - 1))).astype(dtype)
        else:
            try:
                lo, hi = float(params["lo"]), float(params["hi"])
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"corrupt jpeg2k payload ({exc})") from None
            stack = decode_float(from_codes(codes, lo, hi, 65535), dtype)
        return from_slices(stack, plan)

    # -- targets
    def _psnr_offset(self, data: np.ndarray, bits: int) -> float:
        """level - PSNR(data range): the codestream's peak over the coded range."""
        how, _, _ = _code_spec(data.dtype)
        if how == "map":
            return 0.0
        return 20 * math.log10(((1 << bits) - 1) / value_range(data))

    def _encode_psnr(self, data: np.ndarray, db: float) -> bytes:
        pictures, params, bits = self._prepare(data)
        start = min(max(db + self._psnr_offset(data, bits), _LEVEL_MIN), _LEVEL_MAX)
        return self._verified_psnr(
            data, db, lambda lv: self._encode_level(data, pictures, params, lv), start=start,
            step=lambda lv, d: min(max(lv - d + 0.2, _LEVEL_MIN), _LEVEL_MAX),
        )

    def _encode_size(self, data: np.ndarray, goal: float, rtol: float) -> bytes:
        pictures, params, bits = self._prepare(data)
        # guess: ~6 dB per bit per value, ~45 dB (16-bit peak) near 1 bit per value
        bpv = 8.0 * goal / data.size
        guess = 45.0 + 6.0 * math.log2(max(bpv, 1e-3)) + (bits - 16) * 6.02
        misses: list[TargetNotMet] = []
        # The fixed-quality allocation moves in steps (coding passes), which on small
        # inputs can straddle the ±3 % window; other wavelet depths step elsewhere.
        for res in (None, 5, 7):
            if res is not None and min(min(p.shape) for p in pictures) < 1 << (res - 1):
                continue
            try:
                payload, _ = fit_size(
                    lambda lv: self._encode_level(data, pictures, params, lv, res),
                    lo=_LEVEL_MIN, hi=_LEVEL_MAX, guess=min(max(guess, _LEVEL_MIN + 1), _LEVEL_MAX - 1),
                    goal=goal, rtol=rtol, smaller_when="lower", log=False, slope=0.06,
                    nbytes=data.nbytes, codec=self.name, max_steps=8 if res is None else 5,
                    max_bisect=10 if res is None else 4,
                )
                return payload
            except TargetNotMet as exc:
                misses.append(exc)
                if exc.best is not None and not 0.7 < len(exc.best) / goal < 1.4:
                    break  # out of reach, not a step problem
        first = misses[0]
        bests = [m.best for m in misses if m.best is not None]
        closest = min(bests, key=lambda p: abs(len(p) - goal), default=None)
        first.best = closest
        first.achieved = None if closest is None else float(len(closest))
        raise first
