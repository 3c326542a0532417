"""The boundary between a ``.vxf`` file and its decoders.

Every decoding entry point (:func:`voxfield.compress.api.decompress`,
:func:`~voxfield.compress.api.describe`, :class:`~voxfield.compress.reader.VxfArray`, the
streaming decoder) runs inside :func:`decoding`: whatever a damaged or forged file makes a
decoder or one of its libraries raise (a numpy ``ValueError``, an ``OverflowError``, a Rust
panic from an entropy coder) reaches the user as one :class:`~voxfield.errors.FormatError`
naming the file; running out of memory becomes a :class:`~voxfield.errors.DataError` with
the size that was asked for. :func:`check_decoded` then refuses output that cannot be the
original: a shape or dtype other than the header's, or NaN/Inf values (voxfield never
compresses non-finite data, so a finite original is the only kind there is).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from voxfield.errors import DataError, FormatError, VoxfieldError, describe_exception, library_failure


@contextmanager
def decoding(path: str | os.PathLike[str] | bytes | None) -> Iterator[None]:
    """Turn any failure inside the block into one error naming ``path``."""
    where = None if isinstance(path, (bytes, bytearray, memoryview)) else path
    try:
        yield
    except VoxfieldError as exc:
        if exc.path is None and where is not None:
            exc.path = str(where)
        raise
    except MemoryError as exc:
        need = f" ({describe_exception(exc)})" if str(exc) else ""
        raise DataError(f"not enough memory to decode this file{need}", where) from None
    except BaseException as exc:
        if not library_failure(exc):
            raise
        raise FormatError(f"corrupt .vxf file: cannot decode ({describe_exception(exc)})", where) from None


def check_decoded(data: np.ndarray, shape: tuple[int, ...] | None, dtype: np.dtype | None,
                  path: str | os.PathLike[str] | bytes | None) -> None:
    """Refuse decoded ``data`` of another shape or dtype than declared, or not finite."""
    where = None if isinstance(path, (bytes, bytearray, memoryview)) else path
    if shape is not None and tuple(data.shape) != tuple(shape):
        raise FormatError(f"corrupt .vxf file (decoded shape {tuple(data.shape)}, header says {tuple(shape)})", where)
    if dtype is not None and data.dtype != dtype:
        raise FormatError(f"corrupt .vxf file (decoded {data.dtype.name} data, header says {dtype.name})", where)
    if data.dtype.kind == "f" and data.size and not np.isfinite(data).all():
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise FormatError(f"corrupt .vxf file ({bad:,} decoded values are NaN or Inf; the original had none)", where)
