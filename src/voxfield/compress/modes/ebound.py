"""Error-bounded mode: a guaranteed maximum error ``E`` on top of any method.

After the method (a classic codec, a neural field, the hybrid) has made its file, the
residual ``x - decoded`` is quantised so that every decoded voxel lies within ``E`` of
the original, and the quantisation indices are entropy-coded into an extra ``ebound``
section of the same ``.vxf``:

* float data: ``q = rint((x - a) / s)`` with step ``s = 2E`` (shrunk by a few units in the
  last place of the data's magnitude so that rounding the corrected value back to the
  dtype cannot cross the bound), corrected value ``a + q s``;
* integer data: the base is rounded to the dtype first and the integer residual ``r`` is
  binned with width ``2 floor(E) + 1`` (``q = floor((r + floor(E)) / (2 floor(E) + 1))``),
  so the error is at most ``floor(E) <= E``; ``E < 1`` is lossless.

Every voxel is checked at encode time; any voxel still outside the bound (not expected,
kept for safety against floating-point corner cases) is stored exactly in an exception
list. Indices are coded with constriction's ANS coder in two interlaced passes: the
voxels of even checkerboard parity first, under one histogram model; then the odd ones,
each under the histogram of its context class (the sum of ``|q|`` over its face
neighbours, all already decoded, in 6 classes). Indices beyond ``±K`` are escaped and
stored as int32 (zstd). The context model is used only when it makes the section
smaller. The histograms travel in the section, so decoding is exact and deterministic.

The decoder needs the base decode to be reproducible to the last bit for the bound to hold
exactly; voxfield's decoders are deterministic on one machine (neural weights are decoded
with integer arithmetic), and the float margin absorbs differences of a few units in the
last place.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxfield.codecs.lossless import zstd_compress, zstd_decompress
from voxfield.compress.entropy.residual import decode_indices, encode_indices, entropy_bytes
from voxfield.errors import FormatError, OptionError, TargetNotMet

SECTION = "ebound"


@dataclass(frozen=True)
class BoundSpec:
    """How the residual of a file was quantised (the ``ebound`` header entry)."""

    bound: float  # E, absolute, in data units
    step: float  # float data: the step s; integer data: the bin width 2 floor(E) + 1
    integer: bool

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs_error": self.bound, "step": self.step, "integer": self.integer}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoundSpec:
        try:
            spec = cls(float(d["max_abs_error"]), float(d["step"]), bool(d["integer"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"corrupt error-bound header ({exc})") from None
        if not (spec.step > 0 and math.isfinite(spec.step)):
            raise FormatError("corrupt error-bound header (bad step)")
        return spec


def absolute_bound(data: np.ndarray, max_error: float | None = None, rel_error: float | None = None) -> float:
    """``E`` in data units from ``--max-error`` (absolute) or ``--rel-error`` (fraction of
    the data's value range max - min); refuses E <= 0 and non-finite values."""
    if (max_error is None) == (rel_error is None):
        raise OptionError("give one error bound: --max-error (absolute) or --rel-error (fraction of the range)")
    value = max_error if max_error is not None else rel_error
    assert value is not None
    if not math.isfinite(value) or value <= 0:
        flag = "--max-error" if max_error is not None else "--rel-error"
        raise OptionError(f"{flag} must be > 0, got {value:g}")
    if max_error is not None:
        return float(max_error)
    rng = float(np.max(data)) - float(np.min(data))
    if rng == 0:
        return float(rel_error) if rel_error is not None else 0.0  # constant data: any E holds
    return float(rel_error) * rng  # type: ignore[operator]


def make_spec(dtype: np.dtype, bound: float, data: np.ndarray) -> BoundSpec:
    """The quantisation for ``bound`` on data of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return BoundSpec(bound, float(2 * math.floor(bound) + 1), True)
    finfo = np.finfo(dtype)
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    # half an ulp of the largest magnitude is the most the final cast can add
    margin = 4.0 * float(np.spacing(finfo.dtype.type(max(peak, finfo.tiny))))
    step = 2.0 * bound - 2.0 * margin
    if step <= 0:
        raise OptionError(f"error bound {bound:g} is below the precision of the {dtype.name} data (about "
                          f"{margin:.3g}); use a lossless codec")
    return BoundSpec(bound, step, False)


def quantise(x: np.ndarray, approx: np.ndarray, spec: BoundSpec) -> np.ndarray:
    """Quantisation indices (int64) of the residual ``x - approx``."""
    if spec.integer:
        base = _int_base(approx, x.dtype)
        r = x.astype(np.int64) - base
        half = int(round((spec.step - 1) / 2))
        return np.floor_divide(r + half, int(spec.step))
    return np.rint((x.astype(np.float64) - approx.astype(np.float64)) / spec.step).astype(np.int64)


def reconstruct(approx: np.ndarray, q: np.ndarray, spec: BoundSpec, dtype: np.dtype) -> np.ndarray:
    """``approx`` corrected by the indices ``q``, in ``dtype``."""
    dtype = np.dtype(dtype)
    if spec.integer:
        info = np.iinfo(dtype)
        val = _int_base(approx, dtype) + q * int(spec.step)
        return np.clip(val, info.min, info.max).astype(dtype)
    return (approx.astype(np.float64) + q.astype(np.float64) * spec.step).astype(dtype)


def _int_base(approx: np.ndarray, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(approx.astype(np.float64)), info.min, info.max).astype(np.int64)


# ---------------------------------------------------------------------------- section
def encode_section(x: np.ndarray, approx: np.ndarray, bound: float) -> tuple[bytes, dict[str, Any]]:
    """The ``ebound`` section and header entry that bring ``approx`` within ``bound`` of
    ``x`` everywhere (verified here; exceptions stored exactly)."""
    if not (bound > 0 and math.isfinite(bound)):
        raise OptionError(f"the error bound must be > 0, got {bound:g}")
    if x.shape != approx.shape:
        raise ValueError("approximation and original differ in shape")
    spec = make_spec(x.dtype, bound, x)
    q = quantise(x, approx, spec)
    rec = reconstruct(approx, q, spec, x.dtype)
    bad = np.flatnonzero(np.abs(rec.astype(np.float64) - x.astype(np.float64)).reshape(-1) > bound)
    body = encode_indices(q)
    exc = b""
    if bad.size:
        vals = x.reshape(-1)[bad]
        exc = zstd_compress(bad.astype("<i8").tobytes() + vals.tobytes())
    section = struct.pack("<II", len(body), bad.size) + body + exc
    return section, spec.to_dict()


def apply_section(section: bytes, entry: dict[str, Any], approx: np.ndarray) -> np.ndarray:
    """Correct a decoded array with its ``ebound`` section."""
    spec = BoundSpec.from_dict(entry)
    if len(section) < 8:
        raise FormatError("truncated error-bound section")
    n_body, n_bad = struct.unpack_from("<II", section)
    body = section[8: 8 + n_body]
    if len(body) != n_body:
        raise FormatError("truncated error-bound section")
    q = decode_indices(body, approx.shape)
    out = reconstruct(approx, q, spec, approx.dtype)
    if n_bad:
        if n_bad > out.size:
            raise FormatError("corrupt error-bound exceptions (count)")
        try:
            raw = zstd_decompress(section[8 + n_body:], n_bad * (8 + out.dtype.itemsize))
        except FormatError as exc:
            raise FormatError(f"corrupt error-bound exceptions ({exc.message})") from None
        if len(raw) != n_bad * (8 + out.dtype.itemsize):
            raise FormatError("corrupt error-bound exceptions")
        idx = np.frombuffer(raw[: 8 * n_bad], dtype="<i8")
        if idx.size and (idx.min() < 0 or idx.max() >= out.size):
            raise FormatError("corrupt error-bound exceptions (index)")
        flat = out.reshape(-1)
        flat[idx] = np.frombuffer(raw[8 * n_bad:], dtype=out.dtype)
    return out


def attach(blob: bytes, original: np.ndarray, bound: float,
           decode: Callable[[bytes], np.ndarray]) -> bytes:
    """A copy of the ``.vxf`` ``blob`` with an ``ebound`` section: ``decode(blob)`` is the
    method's own decode, ``original`` the array it approximates."""
    from voxfield.compress import container

    approx = decode(blob)
    section, entry = encode_section(original, approx, bound)
    with container.VxfReader(blob) as reader:
        header = dict(reader.header)
        sections = {n: reader.section(n) for n in reader.section_names if n != SECTION}
    header["ebound"] = entry
    sections[SECTION] = section
    return container.dumps(header, sections)


def correct(reader: Any, data: np.ndarray) -> np.ndarray:
    """Apply a reader's ``ebound`` section to its method's decode (no-op without one)."""
    entry = reader.header.get("ebound")
    if entry is None:
        return data
    if not isinstance(entry, dict):
        raise FormatError("corrupt error-bound header", reader.path)
    try:
        return apply_section(reader.section(SECTION), entry, np.ascontiguousarray(data))
    except FormatError as exc:
        raise FormatError(exc.message, reader.path) from None


def search_base(encode_base: Callable[[float], bytes], decode: Callable[[bytes], np.ndarray], original: np.ndarray,
                bound: float, *, lo: float = 2.0, hi: float = 2048.0, evaluations: int = 12,
                on_probe: Callable[[float, int, int], None] | None = None) -> tuple[bytes, float]:
    """The base ratio (in [lo, hi]) that makes the smallest error-bounded file: a coarse
    log-spaced scan, then a golden-section refinement around the best point.
    ``encode_base(ratio)`` makes the method's file at about that ratio. Returns the final
    file and the base ratio used."""
    spec = make_spec(original.dtype, bound, original)
    cache: dict[float, tuple[int, bytes]] = {}

    def cost(log_r: float) -> float:
        r = float(np.exp(log_r))
        key = round(log_r, 6)
        if key not in cache:
            try:
                base = encode_base(r)
            except TargetNotMet as exc:
                if exc.best is None:
                    cache[key] = (1 << 62, b"")
                    return float(1 << 62)
                base = exc.best
            q = quantise(original, decode(base), spec)
            size = len(base) + entropy_bytes(q)
            cache[key] = (size, base)
            if on_probe is not None:
                on_probe(r, len(base), size)
        return float(cache[key][0])

    a, b = math.log(lo), math.log(hi)
    n0 = max(4, evaluations // 2)
    grid = np.linspace(a, b, n0)
    costs = [cost(float(g)) for g in grid]
    i = int(np.argmin(costs))
    left, right = grid[max(i - 1, 0)], grid[min(i + 1, n0 - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = right - g * (right - left), left + g * (right - left)
    for _ in range(max(0, evaluations - n0)):
        if cost(c) < cost(d):
            right = d
        else:
            left = c
        c, d = right - g * (right - left), left + g * (right - left)
    best_key = min(cache, key=lambda k_: cache[k_][0])
    base = cache[best_key][1]
    if not base:
        raise TargetNotMet("no base file could be made for the error-bounded mode")
    return attach(base, original, bound, decode), float(np.exp(best_key))
