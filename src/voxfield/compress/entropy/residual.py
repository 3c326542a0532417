"""Entropy coding of integer residual indices (the ``ebound`` section of error-bounded files).

Indices are coded with constriction's ANS coder in two interlaced passes: the voxels of
even checkerboard parity first, under one histogram model; then the odd ones, each under
the histogram of its context class (the sum of ``|q|`` over its face neighbours, all
already decoded, in 6 classes). Indices beyond ``±K`` are escaped and stored as int64
(zstd). The context model is used only when it makes the stream smaller. The histograms
travel in the stream, so decoding is exact and deterministic.
"""

from __future__ import annotations

import struct

import constriction
import numpy as np

from voxfield.codecs.lossless import zstd_compress, zstd_decompress
from voxfield.errors import FormatError

#: Context classes of the second pass (sum of |q| over face neighbours).
_CLASS_EDGES = np.array([0, 1, 2, 4, 8], dtype=np.int64)  # class c: sum <= edge[c]; last: above
_MAX_K = 4096
_MAGIC = b"VXEB"
_HEAD = struct.Struct("<4sBBIIII")  # magic, version, use_ctx, K, n_escape, n_exception, table bytes


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
    table = zstd_compress(np.concatenate(tables).astype("<u4").tobytes())
    esc_all = np.concatenate(escapes) if escapes else np.zeros(0, np.int64)
    esc_blob = zstd_compress(esc_all.astype("<i8").tobytes()) if esc_all.size else b""
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


def entropy_bytes(q: np.ndarray) -> int:
    """Order-0 entropy of the indices in bytes (a quick estimate of the coded size)."""
    _, c = np.unique(q, return_counts=True)
    p = c / c.sum()
    return int(-(c * np.log2(p)).sum() / 8) + 16
