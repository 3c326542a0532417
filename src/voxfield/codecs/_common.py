"""Machinery shared by the classic codecs: checked framing, input validation, the
lossy-codec skeleton (target dispatch, constant arrays, error/PSNR verification) and a
size search that starts from a guess.

Payloads are :func:`~voxfield.codecs.base.frame` frames whose parameters always carry
``"k"`` (the codec name) and ``"z"`` (CRC-32 of the frame description and the body).
The checksum is verified before any backend sees the body: several C/C++ backends
(SPERR, SZ3, ZFP) read corrupt streams out of bounds or abort the process, so a corrupt
or truncated payload must be refused in Python, as a
:class:`~voxfield.errors.FormatError`.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar, Literal

import numpy as np

from voxfield.codecs.base import Codec, Target, frame, restore_dtype, unframe, value_range
from voxfield.codecs.search import search_size
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet, VoxfieldError
from voxfield.metrics import psnr

#: dtypes every lossy codec accepts (decoded back to the same dtype).
LOSSY_DTYPES = tuple(
    np.dtype(d) for d in ("u1", "i1", "u2", "i2", "u4", "i4", "f2", "f4", "f8")
)


@cache
def imagecodecs_has(name: str) -> bool:
    """Whether the installed imagecodecs build has a working ``name`` codec (e.g. ``"ZFP"``).

    Asking loads that codec's extension module (tens of milliseconds each), so the codec
    modules ask on first use rather than at import: ``voxfield --help`` stays fast.
    """
    try:
        import imagecodecs
    except ImportError:  # pragma: no cover - imagecodecs is a core dependency
        return False
    codec = getattr(imagecodecs, name, None)
    return bool(codec is not None and codec.available)


# ---------------------------------------------------------------------------- framing
def _checksum(shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes) -> int:
    """CRC-32 over the frame's description (shape, dtype, parameters) and the body, so
    that a damaged header cannot send a backend the wrong shape either."""
    head = {"s": [int(s) for s in shape], "d": np.dtype(dtype).str, **params}
    js = json.dumps(head, separators=(",", ":"), sort_keys=True).encode()
    return zlib.crc32(body, zlib.crc32(js))


def pack(codec: str, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes) -> bytes:
    """Frame ``body`` with shape, dtype, codec name and CRC-32 (header and body)."""
    body = bytes(body)
    params = {"k": codec, **params}
    return frame(shape, dtype, {"z": _checksum(shape, dtype, params, body), **params}, body)


def unpack(
    codec: str, payload: bytes | bytearray | memoryview
) -> tuple[tuple[int, ...], np.dtype, dict[str, Any], bytes]:
    """Inverse of :func:`pack`; refuses payloads of another codec or with a bad checksum."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise FormatError(f"{codec} payload must be bytes, not {type(payload).__name__}")
    shape, dtype, params, body = unframe(payload)
    crc = params.pop("z", None)
    body = bytes(body)
    try:
        ok = crc == _checksum(shape, dtype, params, body)
    except (TypeError, ValueError):
        ok = False
    kind = params.pop("k", None)
    if kind != codec:
        raise FormatError(f"not a {codec} payload (made by codec {kind!r})")
    if not ok:
        raise FormatError(f"corrupt or truncated {codec} payload (checksum mismatch)")
    if any(s < 0 for s in shape):
        raise FormatError(f"corrupt {codec} payload (negative shape)")
    return shape, dtype, params, body


# ---------------------------------------------------------------------------- validation
def check_lossy_input(data: Any, codec: str) -> np.ndarray:
    """``data`` as a native-byte-order ndarray that lossy codecs accept, else DataError."""
    arr = np.asarray(data)
    if arr.dtype.newbyteorder("=") not in LOSSY_DTYPES:
        names = ", ".join(d.name for d in LOSSY_DTYPES)
        raise DataError(f"{codec} cannot code dtype {arr.dtype} (supported: {names})")
    if not 1 <= arr.ndim <= 5:
        raise DataError(f"{codec} codes arrays of 1 to 5 dimensions, got {arr.ndim}")
    if arr.size == 0:
        raise DataError(f"{codec} cannot code an empty array")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{codec} cannot code NaN or infinite values")
    return np.ascontiguousarray(arr)


def work_dtype(dtype: np.dtype) -> np.dtype:
    """Float type a float-only backend works in: float64 for float64 and 32-bit integers
    (exact), float32 otherwise (exact for 8/16-bit integers and float16)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def integer_bound(bound: float, dtype: np.dtype) -> float:
    """Backend error bound that keeps ``bound`` after rounding to an integer ``dtype``.

    A float reconstruction within ``floor(E)`` of an integer rounds to an integer within
    ``floor(E) <= E``; below 1 a bound of 0.49 rounds back to the exact value.
    """
    if np.dtype(dtype).kind not in "iu":
        return bound
    return float(math.floor(bound)) if bound >= 1 else 0.49


def check_int_option(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise OptionError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- metrics
def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def keep_closest(exc: TargetNotMet, other: TargetNotMet | None, goal: float) -> TargetNotMet:
    """Point ``exc`` at whichever of the two misses' payloads is closest to ``goal`` bytes
    (for codecs that search two knobs in turn) and return it for re-raising."""
    candidates = [e.best for e in (exc, other) if e is not None and e.best is not None]
    if candidates:
        closest = min(candidates, key=lambda p: abs(len(p) - goal))
        exc.best, exc.achieved = closest, float(len(closest))
    return exc


# ---------------------------------------------------------------------------- size search
def fit_size(
    encode_at: Callable[[float], bytes],
    *,
    lo: float,
    hi: float,
    guess: float,
    goal: float,
    rtol: float,
    smaller_when: Literal["higher", "lower"],
    log: bool = True,
    integer: bool = False,
    slope: float | None = None,
    nbytes: int | None = None,
    codec: str = "codec",
    max_steps: int = 8,
    max_bisect: int = 14,
) -> tuple[bytes, float]:
    """Find a knob value giving a payload within ``rtol`` of ``goal`` bytes.

    Starts at ``guess`` and takes secant steps on log(size) against the knob (log of
    the knob when ``log``), keeping a bracket; ``slope`` is the expected
    d log(size) / d knob (per unit of log knob when ``log``) for the first step. If
    that has not converged after ``max_steps`` encodes, the bracket is handed to
    :func:`~voxfield.codecs.search.search_size` (plain bisection, which also produces the
    :class:`~voxfield.errors.TargetNotMet` error with the closest payload when the goal
    is out of the knob's reach). Returns (payload, knob).
    """
    cache: dict[float, bytes] = {}

    def enc(k: float) -> bytes:
        if integer:
            k = float(round(k))
        if k not in cache:
            cache[k] = encode_at(k)
        return cache[k]

    def fwd(k: float) -> float:
        return math.log(k) if log else k

    def inv(t: float) -> float:
        return math.exp(t) if log else t

    sign = -1.0 if smaller_when == "higher" else 1.0  # sign of d size / d knob
    tlo, thi = fwd(lo), fwd(hi)
    if slope is None:
        slope = sign * (1.0 if log else 1.0 / max(thi - tlo, 1e-12) * 4)
    slope = math.copysign(max(abs(slope), 1e-6), sign)

    def miss(p: bytes) -> float:
        return math.log(max(len(p), 1) / goal)

    big: tuple[float, float] | None = None  # (t, f) with f > 0: payload too big
    small: tuple[float, float] | None = None  # f < 0: too small
    t = min(max(fwd(guess), tlo), thi)
    prev: tuple[float, float] | None = None
    for _ in range(max_steps):
        p = enc(inv(t))
        f = miss(p)
        if abs(len(p) - goal) <= rtol * goal:
            return p, (float(round(inv(t))) if integer else inv(t))
        if f > 0 and (big is None or f < big[1]):
            big = (t, f)
        if f < 0 and (small is None or f > small[1]):
            small = (t, f)
        # secant through the last two points (the expected slope for the first step)
        s = slope
        if prev is not None and prev[0] != t:
            est = (f - prev[1]) / (t - prev[0])
            if est * sign > 0:
                s = est
        tn = t - f / s
        if big is not None and small is not None:
            # safeguard: stay well inside the bracket, else regula falsi, else bisect
            (tb, fb), (ts, fs) = big, small
            a, b = min(tb, ts), max(tb, ts)
            margin = 0.05 * (b - a)
            if not a + margin <= tn <= b - margin:
                tn = tb - fb * (ts - tb) / (fs - fb) if fs != fb else 0.5 * (a + b)
                if not a + margin <= tn <= b - margin:
                    tn = 0.5 * (a + b)
        else:
            limit = 2.5 if log else 0.25 * (thi - tlo)
            tn = min(max(t + max(-limit, min(limit, tn - t)), tlo), thi)
            if tn == t:  # at a bound and the goal lies beyond it
                break
        if integer and round(inv(tn)) == round(inv(t)):
            break
        prev = (t, f)
        t = tn
    def closest() -> bytes:
        return min(cache.values(), key=lambda q: abs(len(q) - goal))

    if big is not None and small is not None:
        # bisection inside the bracket
        a, b = sorted((inv(big[0]), inv(small[0])))
        if a < b:
            try:
                return search_size(
                    enc, lo=a, hi=b, goal=goal, rtol=rtol, smaller_when=smaller_when, log=log,
                    integer=integer, nbytes=nbytes, codec=codec, max_iter=max_bisect,
                )
            except TargetNotMet:
                pass
        near = closest()
        sizes = sorted(len(q) for q in cache.values())
        below = max((n for n in sizes if n < goal), default=sizes[0])
        above = min((n for n in sizes if n > goal), default=sizes[-1])
        what = f"ratio {nbytes / goal:.4g}" if nbytes else f"{goal:.0f} bytes"
        unit = (lambda n: f"{nbytes / n:.4g}x") if nbytes else (lambda n: f"{n} bytes")
        raise TargetNotMet(
            f"{codec} cannot land within ±{100 * rtol:.0f}% of {what}: its size jumps from "
            f"{unit(above)} to {unit(below)} between neighbouring settings (closest: {unit(len(near))})",
            best=near,
            achieved=float(len(near)),
        )
    # the goal is beyond the knob's reach: search_size states the reachable range
    try:
        return search_size(
            enc, lo=lo, hi=hi, goal=goal, rtol=rtol, smaller_when=smaller_when, log=log,
            integer=integer, nbytes=nbytes, codec=codec, max_iter=max_bisect,
        )
    except TargetNotMet as exc:
        near = closest()  # of the whole search, not only of search_size's probes
        exc.best = near
        exc.achieved = float(len(near))
        raise


def size_rtol(target: Target) -> float:
    """Tolerance on payload size that keeps the compression *ratio* within ``rtol``
    (a size 3 % below the goal is a ratio 3.09 % above it)."""
    if target.kind == "ratio":
        return target.rtol / (1 + target.rtol)
    return target.rtol


# ---------------------------------------------------------------------------- lossy skeleton
class BaseCodec(Codec):
    """A :class:`Codec` whose equality is type + configuration."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return False
        return other.get_config() == self.get_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted((k, repr(v)) for k, v in self.config.items()))))


class LossyCodec(BaseCodec):
    """Skeleton of a lossy codec: validation, constant arrays, target dispatch.

    Subclasses implement ``_encode_size(data, goal, rtol)`` (ratio/bytes) and, for the
    target kinds they list, ``_encode_error(data, bound)`` (max_abs_error and rel_error,
    the latter converted to an absolute bound with the value range),
    ``_encode_psnr(data, db)`` and ``_encode_bits(data, bits)``, plus
    ``_decode(shape, dtype, params, body)``. Payloads are built with :meth:`_pack`.
    """

    lossless: ClassVar[bool] = False

    # -- encode
    def encode(self, data: np.ndarray, target: Target | None = None) -> bytes:
        self._require_available()
        target = self.check_target(target)
        data = check_lossy_input(data, self.name)
        lo, hi = float(np.min(data)), float(np.max(data))
        if hi == lo:
            return self._encode_constant(data, lo, target)
        kind = target.kind
        value = float(target.value) if target.value is not None else 0.0
        if kind in ("ratio", "bytes"):
            goal = target.size_goal(data.nbytes)
            assert goal is not None
            return self._encode_size(data, goal, size_rtol(target))
        if kind == "max_abs_error":
            return self._encode_error(data, value)
        if kind == "rel_error":
            return self._encode_error(data, value * (hi - lo))
        if kind == "psnr":
            return self._encode_psnr(data, value)
        if kind == "bits":
            return self._encode_bits(data, value)
        raise OptionError(f"codec {self.name} cannot aim for {kind}")  # pragma: no cover

    def _encode_constant(self, data: np.ndarray, value: float, target: Target) -> bytes:
        payload = self._pack(data.shape, data.dtype, {"cv": value}, b"")
        goal = target.size_goal(data.nbytes)
        if goal is not None and abs(len(payload) - goal) > size_rtol(target) * goal:
            raise TargetNotMet(
                f"{self.name}: the array is constant and codes exactly in {len(payload)} bytes "
                f"(ratio {data.nbytes / len(payload):.4g}); the size target cannot be matched",
                best=payload,
                achieved=float(len(payload)),
            )
        return payload

    def _encode_size(self, data: np.ndarray, goal: float, rtol: float) -> bytes:
        raise NotImplementedError

    def _encode_error(self, data: np.ndarray, bound: float) -> bytes:
        raise OptionError(f"codec {self.name} cannot aim for an error bound")

    def _encode_psnr(self, data: np.ndarray, db: float) -> bytes:
        raise OptionError(f"codec {self.name} cannot aim for a PSNR")

    def _encode_bits(self, data: np.ndarray, bits: float) -> bytes:
        raise OptionError(f"codec {self.name} cannot aim for bits per value")

    # -- decode
    def decode(self, payload: bytes) -> np.ndarray:
        self._require_available()
        shape, dtype, params, body = unpack(self.name, payload)
        if dtype not in LOSSY_DTYPES:
            raise FormatError(f"corrupt {self.name} payload (dtype {dtype})")
        if "cv" in params:
            try:
                return np.full(shape, params["cv"], dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise FormatError(f"corrupt {self.name} payload ({exc})") from None
        try:
            out = self._decode(shape, dtype, params, body)
        except VoxfieldError:
            raise
        except Exception as exc:  # a backend refusing the stream
            raise FormatError(f"corrupt {self.name} payload ({type(exc).__name__}: {exc})") from None
        if out.shape != shape or out.dtype != dtype:
            raise FormatError(
                f"corrupt {self.name} payload (decoded {out.shape} {out.dtype}, expected {shape} {dtype})"
            )
        return out

    def _decode(
        self, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes
    ) -> np.ndarray:
        raise NotImplementedError

    # -- helpers for subclasses
    def _pack(self, shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes) -> bytes:
        return pack(self.name, shape, dtype, params, body)

    def _require_available(self) -> None:
        if not self.available():
            raise OptionError(f"codec {self.name} is not available on this machine")

    def _verified_bound(
        self,
        data: np.ndarray,
        bound: float,
        encode_at: Callable[[float], bytes],
        start: float | None = None,
        tries: int = 8,
    ) -> bytes:
        """Encode at a backend bound (``start``, default ``bound`` adjusted for integer
        dtypes) and decode to check max |error| <= ``bound`` on every value, tightening
        the backend bound until it holds."""
        eb = integer_bound(bound, data.dtype) if start is None else start
        worst = math.inf
        for _ in range(tries):
            payload = encode_at(eb)
            err = max_abs_error(data, self.decode(payload))
            if err <= bound:
                return payload
            worst = min(worst, err)
            eb *= min(0.9, 0.98 * bound / err) if err > 0 else 0.5
        raise TargetNotMet(
            f"{self.name} could not keep max |error| <= {bound:g} (best {worst:g})",
            best=None,
            achieved=worst,
        )

    def _verified_psnr(
        self,
        data: np.ndarray,
        db: float,
        encode_at: Callable[[float], bytes],
        start: float,
        step: Callable[[float, float], float],
        tries: int = 6,
        slack: float = 0.5,
    ) -> bytes:
        """Encode at a knob value and measure the PSNR (data range); while it is below
        ``db``, or more than ``slack`` dB above it (wasted bytes), move the knob with
        ``step(knob, measured - db)``. Returns the smallest payload reaching ``db``."""
        rng = value_range(data)
        k = start
        ok: bytes | None = None
        got = -math.inf
        for _ in range(tries):
            payload = encode_at(k)
            got = psnr(data, self.decode(payload), data_range=rng)
            if got >= db:
                if ok is None or len(payload) < len(ok):
                    ok = payload
                if got - db <= slack:
                    break
            k = step(k, got - db)
        if ok is None:
            raise TargetNotMet(f"{self.name} could not reach PSNR {db:g} dB (best {got:.2f} dB)")
        return ok


def decode_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Backend output (any float/int array) cast back to ``dtype`` (rounded and clipped
    for integers)."""
    return restore_dtype(values, dtype)
