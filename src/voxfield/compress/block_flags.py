"""Per-block on/off flags of the hybrid method's stages (the learned prior, the residual):
block sums, the flag grid of a volume, and the flags' packing (bits, zstd when shorter)."""

from __future__ import annotations

import numpy as np

from voxfield.codecs.lossless import zstd_compress
from voxfield.compress.hybrid_filter import ConvPlan
from voxfield.errors import FormatError


def block_sums(a: np.ndarray, block: int) -> np.ndarray:
    """Sums over blocks of ``block`` voxels per spatial edge: shape (N, *n_blocks)."""
    out = a
    for ax in range(1, a.ndim):
        n = out.shape[ax]
        if block >= n:
            out = out.sum(axis=ax, keepdims=True)
            continue
        nb = -(-n // block)
        pad = nb * block - n
        if pad:
            widths = [(0, 0)] * out.ndim
            widths[ax] = (0, pad)
            out = np.pad(out, widths)
        shape = out.shape[:ax] + (nb, block) + out.shape[ax + 1:]
        out = out.reshape(shape).sum(axis=ax + 1)
    return out


def expand_flags(flags: np.ndarray, spatial: tuple[int, ...], block: int) -> np.ndarray:
    """Flags ``(N, *n_blocks)`` repeated to voxels ``(N, *spatial)``."""
    out = flags
    for ax, n in enumerate(spatial, start=1):
        out = np.repeat(out, block, axis=ax)
        out = np.take(out, np.arange(n), axis=ax)
    return out


def pack_flags(flags: np.ndarray) -> bytes:
    """Block flags as bits, zstd-compressed when that is shorter (first byte: 1 zstd, 0 raw)."""
    raw = np.packbits(flags.reshape(-1).astype(bool)).tobytes()
    packed = zstd_compress(raw)
    return b"\x01" + packed if len(packed) < len(raw) else b"\x00" + raw


def unpack_flags(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_flags` (:class:`FormatError` when damaged)."""
    n = int(np.prod(shape, dtype=np.int64))
    if not blob or blob[0] not in (0, 1):
        raise FormatError("corrupt hybrid block flags")
    from voxfield.codecs.lossless import zstd_decompress

    try:
        raw = zstd_decompress(blob[1:], (n + 7) // 8) if blob[0] else blob[1:]
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    except FormatError as exc:
        raise FormatError(f"corrupt hybrid block flags ({exc.message})") from None
    if bits.size < n:
        raise FormatError("corrupt hybrid block flags (too few)")
    return bits[:n].reshape(shape).astype(bool)


def flag_grid(plan: ConvPlan, block: int) -> tuple[int, ...]:
    """Shape of the flags of a volume: one per batch item and block."""
    return (plan.batch,) + tuple(-(-n // block) for n in plan.spatial_shape)
