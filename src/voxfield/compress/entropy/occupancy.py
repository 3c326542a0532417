"""Lossless coding of boolean occupancy maps (the voxels a cryo-pe field is fitted on).

Three coders, named in the file so that decoding needs nothing else:

* ``gzip``: one byte per voxel, DEFLATE (what the Cryo-PE paper uses);
* ``zstd``: the mask bit-packed, then zstd;
* ``context``: adaptive binary arithmetic (ANS) coding, plane by plane and row by row, each
  bit under a context of 8 already-decoded neighbours (3 above in this plane, 5 in the
  previous plane) whose probability is a Krichevsky-Trofimov estimate from counts updated
  after every row. Encoder and decoder update the counts identically, so decoding is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import constriction
import numpy as np

from voxfield.codecs.lossless import gzip_compress, gzip_decompress, zstd_compress, zstd_decompress
from voxfield.errors import FormatError, OptionError

#: Occupancy coders a file may name (``auto``: the smallest of the others, chosen at encode).
OCCUPANCY_CODERS = ("auto", "gzip", "zstd", "context")

_CTX_BITS = 8


def _contexts(prev_plane: np.ndarray, plane: np.ndarray, y: int) -> np.ndarray:
    """Context of every voxel of row ``y`` of ``plane`` from padded arrays (``(Y+2, X+2)``,
    data at ``[1:-1, 1:-1]``) holding the previous plane and the rows of this plane decoded so
    far (rows ``>= y`` of ``plane`` are still zero)."""
    r = y + 1
    up = plane[r - 1]
    pz = prev_plane
    return (up[:-2].astype(np.int64) | up[1:-1] << 1 | up[2:] << 2 | pz[r, :-2] << 3 | pz[r, 1:-1] << 4
            | pz[r, 2:] << 5 | pz[r - 1, 1:-1] << 6 | pz[r + 1, 1:-1] << 7)


def _plane_contexts(prev_plane: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """:func:`_contexts` of every row of a fully known plane -> ``(Y, X)``."""
    up = plane[:-2]
    pz = prev_plane
    return (up[:, :-2].astype(np.int64) | up[:, 1:-1] << 1 | up[:, 2:] << 2 | pz[1:-1, :-2] << 3
            | pz[1:-1, 1:-1] << 4 | pz[1:-1, 2:] << 5 | pz[:-2, 1:-1] << 6 | pz[2:, 1:-1] << 7)


def _probs(counts: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """P(bit = 1) per context from the adaptive counts (Krichevsky-Trofimov estimate)."""
    c0 = counts[0][ctx].astype(np.float64)
    c1 = counts[1][ctx].astype(np.float64)
    return (c1 + 0.5) / (c0 + c1 + 1.0)


def _bernoulli() -> Any:
    return constriction.stream.model.Bernoulli(perfect=False)


def encode_occupancy_context(mask: np.ndarray) -> bytes:
    """Adaptive context coding of a 3-D boolean mask (row-adaptive counts, see module doc)."""
    nz, ny, nx = mask.shape
    pad = np.zeros((nz + 1, ny + 2, nx + 2), dtype=np.uint8)
    pad[1:, 1:-1, 1:-1] = mask
    n_ctx = 1 << _CTX_BITS
    # forward pass: counts at the start of every plane (small: Z x 2 x 256)
    starts = np.zeros((nz, 2, n_ctx), dtype=np.int64)
    counts = np.zeros((2, n_ctx), dtype=np.int64)
    for z in range(nz):
        starts[z] = counts
        ctx = _plane_contexts(pad[z], pad[z + 1])
        bits = mask[z].astype(np.int64)
        counts = counts + np.bincount((bits * n_ctx + ctx).ravel(), minlength=2 * n_ctx).reshape(2, n_ctx)
    coder = constriction.stream.stack.AnsCoder()
    for z in reversed(range(nz)):  # ANS is a stack: the last plane goes in first
        ctx = _plane_contexts(pad[z], pad[z + 1])
        bits = mask[z].astype(np.int64)
        keys = (np.arange(ny)[:, None] * (2 * n_ctx) + bits * n_ctx + ctx).ravel()
        rows = np.bincount(keys, minlength=ny * 2 * n_ctx).reshape(ny, 2 * n_ctx)
        before = np.cumsum(rows, axis=0) - rows  # counts of this plane's earlier rows
        probs = np.empty((ny, nx), dtype=np.float64)
        for y in range(ny):
            probs[y] = _probs(starts[z] + before[y].reshape(2, n_ctx), ctx[y])
        coder.encode_reverse(bits.ravel().astype(np.int32), _bernoulli(), probs.ravel())
    return coder.get_compressed().tobytes()


def decode_occupancy_context(payload: bytes, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`encode_occupancy_context`."""
    if len(payload) % 4:
        raise FormatError("corrupt occupancy stream (length not a multiple of 4)")
    nz, ny, nx = (int(n) for n in shape)
    n_ctx = 1 << _CTX_BITS
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype=np.uint32).copy())
    pad = np.zeros((nz + 1, ny + 2, nx + 2), dtype=np.uint8)
    counts = np.zeros((2, n_ctx), dtype=np.int64)
    model = _bernoulli()
    try:
        for z in range(nz):
            for y in range(ny):
                ctx = _contexts(pad[z], pad[z + 1], y)
                bits = coder.decode(model, _probs(counts, ctx)).astype(np.int64)
                pad[z + 1, y + 1, 1:-1] = bits
                counts += np.bincount(bits * n_ctx + ctx, minlength=2 * n_ctx).reshape(2, n_ctx)
    except (ValueError, RuntimeError) as exc:
        raise FormatError(f"corrupt occupancy stream ({exc})") from None
    return pad[1:, 1:-1, 1:-1].astype(bool)


def encode_occupancy(mask: np.ndarray, coder: str) -> bytes:
    """Lossless bytes of the boolean ``mask`` with ``coder`` (gzip | zstd | context)."""
    if coder == "gzip":  # the paper's: one byte per voxel, DEFLATE
        return gzip_compress(mask.astype(np.uint8).tobytes(), 9)
    if coder == "zstd":
        return zstd_compress(np.packbits(mask.reshape(-1)).tobytes())
    if coder == "context":
        return encode_occupancy_context(mask)
    raise OptionError(f"unknown occupancy coder {coder!r}")


def decode_occupancy(payload: bytes, coder: str, shape: Sequence[int]) -> np.ndarray:
    n = int(np.prod(shape))
    try:
        if coder == "gzip":
            raw = np.frombuffer(gzip_decompress(payload, what="occupancy map"), dtype=np.uint8)
            if raw.size != n or raw.max(initial=0) > 1:
                raise ValueError("occupancy size mismatch")
            return raw.astype(bool).reshape(shape)
        if coder == "zstd":
            raw = zstd_decompress(payload, (n + 7) // 8, what="occupancy map")
            if len(raw) != (n + 7) // 8:
                raise ValueError("occupancy size mismatch")
            return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n).astype(bool).reshape(shape)
    except ValueError as exc:
        raise FormatError(f"corrupt occupancy map ({exc})") from None
    if coder == "context":
        return decode_occupancy_context(payload, shape)
    raise FormatError(f"unknown occupancy coder {coder!r}")


# ---------------------------------------------------------------------------- helpers
