"""Compact binary packing of small numeric tables (block table, quantisation table).

A ``.vxf`` header is JSON; numeric tables with hundreds of entries are cheaper as binary:
``pack({"name": array, ...})`` writes, per array, its name, dtype, shape and raw
little-endian bytes, then zstd-compresses the lot. No pickle; every field is validated on
unpacking.
"""

from __future__ import annotations

import struct

import numpy as np

from voxfield.codecs.lossless import zstd_compress, zstd_decompress
from voxfield.errors import FormatError

_ALLOWED = {"<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<f2", "<f4", "<f8", "|i1", "|u1"}


def pack(tables: dict[str, np.ndarray], *, level: int = 19) -> bytes:
    """Serialise named numeric arrays to compressed bytes."""
    out = bytearray()
    for name, arr in tables.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        dt = a.dtype.str
        if dt not in _ALLOWED:
            raise ValueError(f"cannot pack dtype {dt}")
        nb, db = name.encode(), dt.encode()
        out += struct.pack("<B", len(nb)) + nb + struct.pack("<B", len(db)) + db + struct.pack("<B", a.ndim)
        out += struct.pack(f"<{a.ndim}I", *a.shape) + a.tobytes()
    return zstd_compress(bytes(out), level)


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack`; raises :class:`FormatError` on anything malformed."""
    raw = zstd_decompress(blob, 256 * 2**20, what="table section")
    pos, out = 0, {}
    try:
        while pos < len(raw):
            (n,) = struct.unpack_from("<B", raw, pos)
            name = raw[pos + 1 : pos + 1 + n].decode()
            pos += 1 + n
            (n,) = struct.unpack_from("<B", raw, pos)
            dt = raw[pos + 1 : pos + 1 + n].decode()
            pos += 1 + n
            if dt not in _ALLOWED:
                raise ValueError(f"dtype {dt!r}")
            (nd,) = struct.unpack_from("<B", raw, pos)
            shape = struct.unpack_from(f"<{nd}I", raw, pos + 1)
            pos += 1 + 4 * nd
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
            if pos + size > len(raw):
                raise ValueError("table runs past the end")
            out[name] = np.frombuffer(raw, dtype=dt, count=int(np.prod(shape, dtype=np.int64)), offset=pos).reshape(shape).copy()
            pos += size
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"corrupt table section ({exc})") from None
    return out
