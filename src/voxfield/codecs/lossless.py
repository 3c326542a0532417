"""Lossless codecs: ``raw``, ``gzip``, ``zstd``.

They code the array's bytes (C order, the array's own dtype and byte order) and give
back a bit-exact copy. They accept any numeric or boolean dtype and any number of
dimensions (0-D included); the only target is ``lossless``. ``gzip`` is what the EMDB
ships maps in (``.map.gz``); ``zstd`` is the stronger general-purpose baseline.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, ClassVar

import numpy as np
import zstandard

from voxfield.codecs._common import BaseCodec, check_int_option, pack, unpack
from voxfield.errors import DataError, FormatError


def _check_input(data: Any, codec: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype.kind not in "biufc" or arr.dtype.hasobject:
        raise DataError(f"{codec} codes numeric arrays, not dtype {arr.dtype}")
    # (np.ascontiguousarray would turn a 0-D array into 1-D)
    return arr if arr.flags.c_contiguous else np.array(arr, order="C")


class _LosslessCodec(BaseCodec):
    lossless: ClassVar[bool] = True
    targets: ClassVar[frozenset[str]] = frozenset({"lossless"})

    def encode(self, data: np.ndarray, target=None) -> bytes:  # type: ignore[override]
        self.check_target(target)
        arr = _check_input(data, self.name)
        return pack(self.name, arr.shape, arr.dtype, {}, self._compress(arr.tobytes()))

    def decode(self, payload: bytes) -> np.ndarray:
        shape, dtype, _, body = unpack(self.name, payload)
        if dtype.hasobject or dtype.itemsize == 0:
            raise FormatError(f"corrupt {self.name} payload (dtype {dtype})")
        try:
            raw = self._decompress(body)
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(f"corrupt {self.name} payload ({exc})") from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(raw) != expected:
            raise FormatError(f"corrupt {self.name} payload ({len(raw)} bytes for {expected})")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def _compress(self, raw: bytes) -> bytes:
        raise NotImplementedError

    def _decompress(self, body: bytes) -> bytes:
        raise NotImplementedError


class RawCodec(_LosslessCodec):
    """The array's bytes as they are (plus the frame header)."""

    name = "raw"
    description = "uncompressed bytes"

    def _compress(self, raw: bytes) -> bytes:
        return raw

    def _decompress(self, body: bytes) -> bytes:
        return body


class GzipCodec(_LosslessCodec):
    """DEFLATE in a gzip member (``level`` 1-9, default 9), like the EMDB's ``.map.gz``.
    The gzip header's timestamp is zero, so encoding is deterministic."""

    name = "gzip"
    description = "gzip (DEFLATE), lossless"

    def __init__(self, level: int = 9) -> None:
        super().__init__(level=check_int_option("gzip level", level, 1, 9))

    def _compress(self, raw: bytes) -> bytes:
        return gzip_compress(raw, self.config["level"])

    def _decompress(self, body: bytes) -> bytes:
        return gzip_decompress(body, what="gzip payload")


class ZstdCodec(_LosslessCodec):
    """Zstandard (``level`` -7..22, default 19)."""

    name = "zstd"
    description = "Zstandard, lossless"

    def __init__(self, level: int = 19) -> None:
        super().__init__(level=check_int_option("zstd level", level, -7, 22))

    def _compress(self, raw: bytes) -> bytes:
        return zstd_compress(raw, self.config["level"])

    def _decompress(self, body: bytes) -> bytes:
        return zstd_decompress(body)


# The general-purpose byte coders of voxfield: every zstd and gzip stream inside a ``.vxf``
# (header, tables, occupancy maps, escapes) goes through these four functions.
def zstd_compress(raw: bytes, level: int = 19) -> bytes:
    """One zstd frame of ``raw`` at ``level``, with its content size (no checksum)."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False).compress(raw)


def zstd_decompress(body: bytes, max_size: int | None = None, *, what: str = "zstd stream") -> bytes:
    """Decompress one zstd frame. ``max_size`` bounds the output: a frame whose header
    declares more (a damaged or forged size field) is refused before anything is
    allocated. Damage is a :class:`FormatError` "corrupt {what} (...)"."""
    try:
        if max_size is not None:
            declared = zstandard.frame_content_size(body)
            if declared > max_size:
                raise FormatError(f"corrupt {what} (declares {declared:,} bytes, at most {max_size:,} expected)")
            return zstandard.ZstdDecompressor().decompress(body, max_output_size=max(max_size, 1))
        return zstandard.ZstdDecompressor().decompress(body)
    except zstandard.ZstdError as exc:
        raise FormatError(f"corrupt {what} ({exc})") from None


def gzip_compress(raw: bytes, level: int = 9) -> bytes:
    """One gzip member of ``raw`` (DEFLATE ``level``), timestamp zero: deterministic."""
    return gzip.compress(raw, compresslevel=level, mtime=0)


def gzip_decompress(body: bytes, *, what: str = "gzip stream") -> bytes:
    """Inverse of :func:`gzip_compress`; damage is a :class:`FormatError` naming ``what``."""
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(f"corrupt {what} ({exc})") from None
