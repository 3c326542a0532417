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

import constriction
import numpy as np
import zstandard

from voxfield.codecs.lossless import zstd_decompress
from voxfield.errors import FormatError, OptionError, TargetNotMet

SECTION = "ebound"
#: Context classes of the second pass (sum of |q| over face neighbours).
_CLASS_EDGES = np.array([0, 1, 2, 4, 8], dtype=np.int64)  # class c: sum <= edge[c]; last: above
_MAX_K = 4096
_MAGIC = b"VXEB"
_HEAD = struct.Struct("<4sBBIIII")  # magic, version, use_ctx, K, n_escape, n_exception, table bytes


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


# ---------------------------------------------------------------------------- coding
def _parity(shape: tuple[int, ...]) -> np.ndarray:
    """Checkerboard parity (bool, True = odd) of every voxel."""
    grids = np.indices(shape, sparse=True)
    s = sum(grids[1:], grids[0].astype(np.int64)) if len(grids) > 1 else grids[0]
    return np.broadcast_to(np.asarray(s) % 2 == 1, shape)


def _context(q: np.ndarray, odd: np.ndarray) -> np.ndarray:
    """Context class of every odd-parity voxel (flat order): sum of |q| over its face
    neighbours (all of even parity), binned by ``_CLASS_EDGES``."""
    a = np.abs(q)
    total = np.zeros(q.shape, np.int64)
    for ax in range(q.ndim):
        if q.shape[ax] < 2:
            continue
        lo = [slice(None)] * q.ndim
        hi = [slice(None)] * q.ndim
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        total[tuple(hi)] += a[tuple(lo)]
        total[tuple(lo)] += a[tuple(hi)]
    vals = total[odd]
    return np.searchsorted(_CLASS_EDGES, vals, side="left").astype(np.int64)


def _symbols(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Model symbols (0..2K+1; 2K+1 = escape) and the escaped values, in order."""
    esc = np.abs(q) > k
    sym = np.where(esc, 2 * k + 1, q + k).astype(np.int32)
    return sym, q[esc].astype(np.int64)


def _encode_stream(parts: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """ANS-code ``(symbols, counts)`` parts, each under its own histogram."""
    coder = constriction.stream.stack.AnsCoder()
    for sym, counts in reversed(parts):
        if sym.size:
            model = constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)
            coder.encode_reverse(sym, model)
    return coder.get_compressed().tobytes()


def _decode_stream(words: bytes, counts_list: list[np.ndarray]) -> list[np.ndarray]:
    if len(words) % 4:
        raise FormatError("corrupt error-bound section (stream length)")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(words, dtype=np.uint32).copy())
    out = []
    for counts in counts_list:
        n = int(counts.sum())
        if n == 0:
            out.append(np.zeros(0, np.int32))
            continue
        model = constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)
        out.append(np.asarray(coder.decode(model, n), dtype=np.int64))
    return out


def _choose_k(q: np.ndarray) -> int:
    a = np.abs(q)
    if a.size == 0:
        return 1
    k = int(np.quantile(a, 0.9995)) if a.size > 2000 else int(a.max())
    return int(min(max(k, 1), _MAX_K))


def encode_indices(q: np.ndarray) -> bytes:
    """Entropy-code quantisation indices (any shape; the decoder is given the shape)."""
    k = _choose_k(q)
    flat_even_first = [False, True] if q.ndim >= 1 and q.size > 1 else [False]
    best: bytes | None = None
    for use_ctx in flat_even_first:
        blob = _encode_indices(q, k, use_ctx)
        if best is None or len(blob) < len(best):
            best = blob
    assert best is not None
    return best


def _encode_indices(q: np.ndarray, k: int, use_ctx: bool) -> bytes:
    n_sym = 2 * k + 2
    if use_ctx:
        odd = np.asarray(_parity(q.shape))
        groups = [q[~odd]]
        ctx = _context(q, odd)
        qo = q[odd]
        groups += [qo[ctx == c] for c in range(len(_CLASS_EDGES) + 1)]
    else:
        groups = [q.reshape(-1)]
    parts, tables, escapes = [], [], []
    for g in groups:
        sym, esc = _symbols(g, k)
        counts = np.bincount(sym, minlength=n_sym).astype(np.uint32)
        parts.append((sym, counts))
        tables.append(counts)
        escapes.append(esc)
    stream = _encode_stream(parts)
    table = zstandard.ZstdCompressor(level=19).compress(np.concatenate(tables).astype("<u4").tobytes())
    esc_all = np.concatenate(escapes) if escapes else np.zeros(0, np.int64)
    esc_blob = zstandard.ZstdCompressor(level=19).compress(esc_all.astype("<i8").tobytes()) if esc_all.size else b""
    head = _HEAD.pack(_MAGIC, 1, int(use_ctx), k, len(esc_blob), 0, len(table))
    return head + table + esc_blob + stream


def decode_indices(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_indices`."""
    if len(blob) < _HEAD.size:
        raise FormatError("truncated error-bound section")
    magic, version, use_ctx, k, n_esc, _, n_table = _HEAD.unpack_from(blob)
    if magic != _MAGIC or version != 1 or k < 1 or k > _MAX_K:
        raise FormatError("corrupt error-bound section (header)")
    pos = _HEAD.size
    n_sym = 2 * k + 2
    n_groups = (len(_CLASS_EDGES) + 2) if use_ctx else 1
    total = int(np.prod(shape, dtype=np.int64))
    try:
        table = np.frombuffer(zstd_decompress(blob[pos: pos + n_table], 4 * n_sym * n_groups), dtype="<u4")
        pos += n_table
        esc = (np.frombuffer(zstd_decompress(blob[pos: pos + n_esc], 8 * total), dtype="<i8")
               if n_esc else np.zeros(0, np.int64))
    except (FormatError, ValueError) as exc:
        raise FormatError(f"corrupt error-bound section ({exc})") from None
    pos += n_esc
    if table.size != n_sym * n_groups:
        raise FormatError("corrupt error-bound section (histogram size)")
    counts = [table[i * n_sym: (i + 1) * n_sym] for i in range(n_groups)]
    if sum(int(c.sum()) for c in counts) != total:
        raise FormatError("corrupt error-bound section (histograms do not cover the volume)")
    try:
        syms = _decode_stream(blob[pos:], counts)
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise FormatError(f"corrupt error-bound section ({exc})") from None
    esc_iter = [0]

    def values(sym: np.ndarray) -> np.ndarray:
        v = sym.astype(np.int64) - k
        mask = sym == 2 * k + 1
        m = int(mask.sum())
        if m:
            if esc_iter[0] + m > esc.size:
                raise FormatError("corrupt error-bound section (escapes)")
            v[mask] = esc[esc_iter[0]: esc_iter[0] + m]
            esc_iter[0] += m
        return v

    if not use_ctx:
        return values(syms[0]).reshape(shape)
    q = np.zeros(shape, np.int64)
    odd = np.asarray(_parity(shape))
    q[~odd] = values(syms[0])
    ctx = _context(q, odd)
    qo = np.zeros(int(odd.sum()), np.int64)
    for c in range(len(_CLASS_EDGES) + 1):
        sel = ctx == c
        if int(sel.sum()) != syms[c + 1].size:
            raise FormatError("corrupt error-bound section (context counts)")
        qo[sel] = values(syms[c + 1])
    q[odd] = qo
    return q


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
        exc = zstandard.ZstdCompressor(level=19).compress(bad.astype("<i8").tobytes() + vals.tobytes())
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
            size = len(base) + _entropy_bytes(q)
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


def _entropy_bytes(q: np.ndarray) -> int:
    """Order-0 entropy of the indices in bytes (a quick estimate of the coded size)."""
    _, c = np.unique(q, return_counts=True)
    p = c / c.sum()
    return int(-(c * np.log2(p)).sum() / 8) + 16
