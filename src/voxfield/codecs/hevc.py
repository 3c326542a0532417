"""``hevc``: HEVC (x265) over the slices of a volume, through the ffmpeg binary of the
``imageio-ffmpeg`` wheel (subprocess with raw frames through stdin/stdout pipes; no
temporary files).

Layout: the 2-D slices along the leading axes are the video frames (all axes but the
last two flattened; a trailing samples axis moved first; a 1-D signal folded into one
near-square frame). Frames are padded to a multiple of 8 pixels and at least 16 (x265
refuses 8x8 pictures; widths 40 and 48 crash the x265 of imageio-ffmpeg 0.8.1, so they
become 56) by edge replication, and cropped on decoding. Very elongated frames (e.g.
6000 x 16) exceed x265's picture limits and raise DataError.

Pixels: grey, 8-bit (``gray``) for uint8/int8 data, else 12-bit (``gray12le``; option
``bitdepth`` 8, 10 or 12). Values are mapped linearly from [min, max] onto
0..2**bits - 1 (min/max stored): the 12-bit grid floors the error at ~range/8190.

Knob: CRF (float, x265 accepts fractional values; 0 = best .. 51), searched for
ratio/bytes targets. CRF 0 is far from lossless at 12 bits (x265 does not go below QP 0;
on EMD-3488 CRF 0 gives about 56x), so for lower ratios the codec switches to x265's
**lossless** mode on a coarser value grid: the number of levels L (<= 4095) becomes the
knob (lossless on 4096 levels: 12.8x on EMD-3488; 256 levels: 30x). Caveat: x265's
lossless output, decoded by this ffmpeg, is not always bit-exact for frames 16, 32 or 64
pixels wide (a handful of pixels of inter frames differ by a level or so; ``subme=2``
makes it rarer); the codec promises no exactness, and all quality figures are measured
on ffmpeg's decoded output. The payload is the raw HEVC bitstream (Annex B) in the
frame; any HEVC decoder reads it.

Defaults and why:

* ``preset="slow"``: on EMD-3488 at 64x, slow gives +3.5 dB over medium for 1.7x the
  time; slower/veryslow add < 0.5 dB for 3-5x the time;
* ``tune="psnr"``: switches off x265's psychovisual tools (psy-rd, adaptive
  quantisation), +0.6 dB at 64x and +1.3 dB at 256x in PSNR (which is what we report);
* normal GOP (keyint 250, B-frames): neighbouring slices predict each other well; an
  all-intra GOP (``keyint=1``) is several times larger at the same quality;
* x265's ``info`` SEI (the ~2.3 kB option string) is switched off: it would be a large
  share of the budget at high ratios on small volumes;
* ``threads=2``: x265 thread pool size, with ``frame-threads=1`` and
  ``lookahead-slices=0`` so that the bitstream does not depend on the number of threads
  (checked for 1, 2, 4 and 8).

``x265_params`` adds raw ``key=value:key=value`` x265 options.
"""

from __future__ import annotations

import functools
import math
import subprocess
from typing import Any, ClassVar

import numpy as np

from voxfield.codecs._common import LossyCodec, check_int_option, decode_float, fit_size, keep_closest
from voxfield.codecs.layout import (
    from_codes,
    from_slices,
    pad_edges,
    padded_size,
    slice_plan,
    to_codes,
    to_slices,
)
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet

PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
TUNES = ("psnr", "ssim", "grain", "fastdecode", "zerolatency", "animation")
_PIX = {8: "gray", 10: "gray10le", 12: "gray12le"}
_CRF_MIN, _CRF_MAX = 0.0, 51.0
_MIN_LEVELS = 15
#: Frame widths at which this x265 build corrupts its heap ("double free"), seen with
#: every preset and bit depth for heights other than 24; padded to 56 instead.
_BAD_WIDTHS = (40, 48)


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str | None:
    """Path of imageio-ffmpeg's ffmpeg binary when it has libx265, else None."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        r = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
    except Exception:
        return None
    return exe if r.returncode == 0 and "libx265" in r.stdout else None


def _stack_geometry(shape: tuple[int, ...]):
    plan = slice_plan(shape)
    n, h, w = plan.stack
    wp = padded_size(w, 8, 16)
    if wp in _BAD_WIDTHS:
        wp = 56
    return plan, n, h, w, padded_size(h, 8, 16), wp


class HevcCodec(LossyCodec):
    """HEVC/x265 over slices (see the module docstring). Options: ``preset``, ``tune``
    (None or an x265 tune), ``bitdepth`` (None = 8 for 8-bit integer data else 12),
    ``threads``, ``x265_params``."""

    name = "hevc"
    description = "HEVC (x265 via ffmpeg) over slices"
    targets: ClassVar[frozenset[str]] = frozenset({"ratio", "bytes"})

    def __init__(
        self,
        preset: str = "slow",
        tune: str | None = "psnr",
        bitdepth: int | None = None,
        threads: int = 2,
        x265_params: str = "",
    ) -> None:
        if preset not in PRESETS:
            raise OptionError(f"hevc preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if tune is not None and tune not in TUNES:
            raise OptionError(f"hevc tune must be None or one of {', '.join(TUNES)}, got {tune!r}")
        if bitdepth is not None and bitdepth not in _PIX:
            raise OptionError(f"hevc bitdepth must be 8, 10 or 12, got {bitdepth!r}")
        if not isinstance(x265_params, str) or any(c in x265_params for c in " \n\t"):
            raise OptionError(f"hevc x265_params must be 'key=value:key=value', got {x265_params!r}")
        super().__init__(
            preset=preset, tune=tune, bitdepth=bitdepth,
            threads=check_int_option("hevc threads", threads, 1, 64), x265_params=x265_params,
        )

    @classmethod
    def available(cls) -> bool:
        return ffmpeg_exe() is not None

    # -- ffmpeg
    def _bits(self, dtype: np.dtype) -> int:
        if self.config["bitdepth"] is not None:
            return int(self.config["bitdepth"])
        return 8 if np.dtype(dtype).itemsize == 1 and np.dtype(dtype).kind in "iu" else 12

    def _x265(self, frames: np.ndarray, bits: int, crf: float | None) -> bytes:
        n, h, w = frames.shape
        pix = _PIX[bits]
        params = f"log-level=error:info=0:pools={self.config['threads']}:frame-threads=1:lookahead-slices=0"
        if crf is None:
            # subme=2: with the slow preset's subme=3, lossless output decodes with
            # small differences more often on 16/32/64-wide frames (see the module
            # docstring); subme=2 costs < 0.1 % in size.
            params += ":lossless=1:subme=2"
        if self.config["x265_params"]:
            params += ":" + self.config["x265_params"]
        cmd = [
            str(ffmpeg_exe()), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", pix, "-s", f"{w}x{h}", "-framerate", "25", "-i", "pipe:0",
            "-an", "-c:v", "libx265", "-preset", self.config["preset"],
        ]
        if self.config["tune"]:
            cmd += ["-tune", self.config["tune"]]
        if crf is not None:
            cmd += ["-crf", f"{crf:.4f}"]
        cmd += ["-pix_fmt", pix, "-x265-params", params, "-f", "hevc", "pipe:1"]
        raw = frames.astype("<u2" if bits > 8 else np.uint8, copy=False).tobytes()
        r = subprocess.run(cmd, input=raw, capture_output=True)
        if r.returncode != 0 or not r.stdout:
            tail = r.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise DataError(f"x265 could not encode {n} frame(s) of {w}x{h} ({' / '.join(tail)})")
        return r.stdout

    def _ffdecode(self, stream: bytes, n: int, h: int, w: int, bits: int) -> np.ndarray:
        pix = _PIX[bits]
        cmd = [
            str(ffmpeg_exe()), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
            "-f", "hevc", "-i", "pipe:0", "-fps_mode", "passthrough",
            "-f", "rawvideo", "-pix_fmt", pix, "pipe:1",
        ]
        r = subprocess.run(cmd, input=stream, capture_output=True)
        dt = np.dtype("<u2") if bits > 8 else np.dtype(np.uint8)
        if r.returncode != 0 or len(r.stdout) != n * h * w * dt.itemsize:
            tail = " / ".join(r.stderr.decode(errors="replace").strip().splitlines()[-2:])
            detail = f"; {tail}" if tail else ""
            raise FormatError(
                f"corrupt hevc payload (ffmpeg decoded {len(r.stdout)} bytes for {n} frames{detail})"
            )
        return np.frombuffer(r.stdout, dtype=dt).reshape(n, h, w)

    # -- codec
    def _encode_at(
        self, data: np.ndarray, stack: np.ndarray, bits: int, levels: int, crf: float | None
    ) -> bytes:
        lo, hi = float(np.min(data)), float(np.max(data))
        _, n, h, w, hp, wp = _stack_geometry(data.shape)
        codes = to_codes(stack, lo, hi, levels, np.dtype(np.uint16))
        frames = pad_edges(codes, hp, wp)
        stream = self._x265(frames, bits, crf)
        params = {"lo": lo, "hi": hi, "b": bits, "L": levels}
        return self._pack(data.shape, data.dtype, params, stream)

    def _decode(
        self, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes
    ) -> np.ndarray:
        try:
            lo, hi = float(params["lo"]), float(params["hi"])
            bits, levels = int(params["b"]), int(params["L"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"corrupt hevc payload ({exc})") from None
        if bits not in _PIX or not 1 <= levels < (1 << bits):
            raise FormatError("corrupt hevc payload (bad parameters)")
        plan, n, h, w, hp, wp = _stack_geometry(shape)
        frames = self._ffdecode(body, n, hp, wp, bits)
        codes = np.minimum(frames[:, :h, :w], levels)
        return from_slices(decode_float(from_codes(codes, lo, hi, levels), dtype), plan)

    def _encode_size(self, data: np.ndarray, goal: float, rtol: float) -> bytes:
        plan = slice_plan(data.shape)
        stack = to_slices(data, plan)
        bits = self._bits(data.dtype)
        top = (1 << bits) - 1
        cache: dict[float, bytes] = {}

        def lossy(crf: float) -> bytes:
            if crf not in cache:
                cache[crf] = self._encode_at(data, stack, bits, top, crf)
            return cache[crf]

        # CRF ~2.5 at 64x, +10 per factor 2 in ratio on EMD-3488 (steeper on light sheet)
        guess = 2.5 + 10.0 * math.log2(max(data.nbytes / goal, 1.0) / 64.0)
        try:
            payload, _ = fit_size(
                lossy, lo=_CRF_MIN, hi=_CRF_MAX, guess=min(max(guess, 0.0), 45.0), goal=goal, rtol=rtol,
                smaller_when="higher", log=False, slope=-0.11, nbytes=data.nbytes, codec=self.name,
            )
            return payload
        except TargetNotMet as exc:
            first = exc
            if len(lossy(_CRF_MIN)) >= goal:
                raise
        # Less compression than CRF 0 gives: lossless HEVC on a coarser value grid.
        try:
            payload, _ = fit_size(
                lambda L: self._encode_at(data, stack, bits, int(L), None),
                lo=_MIN_LEVELS, hi=top, guess=top, goal=goal, rtol=rtol, smaller_when="lower",
                log=True, integer=True, slope=0.35, nbytes=data.nbytes, codec=self.name,
            )
            return payload
        except TargetNotMet as exc:
            raise keep_closest(exc, first, goal) from None

