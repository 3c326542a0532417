"""Checks on array content and shape shared by readers, codecs and commands, and the helpers
readers and writers use against damaged files and untrusted headers: one-line quoting of
library exceptions, a memory guard before allocating, and type/range checks with a
"field dropped" warning for header fields of ``Volume.meta``."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from voxfield.errors import DataError, describe_exception  # noqa: F401 - re-exported for the readers

#: Largest number of voxels voxfield accepts from a header (2**40, about 4 TB of float32):
#: anything above is taken as a corrupt header, not a real volume.
MAX_VOXELS = 2**40

#: dtypes the codecs and metrics handle.
SUPPORTED_DTYPES = tuple(
    np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float16", "float32", "float64")
)


def check_shape(shape: tuple[int, ...], path: str | os.PathLike[str] | None = None) -> None:
    """Refuse empty, negative or absurdly large shapes (a sign of a corrupt header)."""
    if len(shape) == 0:
        raise DataError("array has no dimensions", path)
    if any(int(s) <= 0 for s in shape):
        raise DataError(f"empty or negative dimension in shape {tuple(shape)}", path)
    n = 1
    for s in shape:
        n *= int(s)
    if n > MAX_VOXELS:
        raise DataError(f"shape {tuple(shape)} declares {n:.3g} voxels: corrupt header?", path)


def check_dtype(dtype: np.dtype, path: str | os.PathLike[str] | None = None) -> None:
    """Refuse dtypes voxfield cannot process (complex, bool, object, strings...)."""
    if np.dtype(dtype) not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise DataError(f"unsupported data type {np.dtype(dtype).name} (supported: {names})", path)


def check_finite(data: np.ndarray, path: str | os.PathLike[str] | None = None) -> None:
    """Refuse NaN and Inf values, naming how many there are."""
    if data.dtype.kind != "f":
        return
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum() - n_nan)
        raise DataError(f"data contains {n_nan} NaN and {n_inf} Inf values", path)


def check_array(data: np.ndarray, path: str | os.PathLike[str] | None = None) -> None:
    """All of :func:`check_shape`, :func:`check_dtype` and :func:`check_finite`."""
    check_shape(tuple(data.shape), path)
    check_dtype(data.dtype, path)
    check_finite(data, path)


#: Longest library message quoted in a one-line error (longer ones are cut with "…").
MAX_DETAIL = 200


def one_line(text: object, limit: int = MAX_DETAIL) -> str:
    """``text`` on one line (runs of whitespace, newlines included, become one space), cut
    to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_nbytes(shape: tuple[int, ...], itemsize: int, path: str | os.PathLike[str] | None = None) -> int:
    """Bytes an array of ``shape`` and ``itemsize`` needs (exact, no overflow); refuse with
    :class:`DataError` one that could never fit in this machine's memory (a corrupt header,
    or a file too large to load whole) before anything is allocated."""
    n = int(itemsize)
    for s in shape:
        n *= int(s)
    limit = memory_bytes()
    if limit is not None and n > limit:
        raise DataError(f"reading the data needs {n:,} bytes, more than this machine's memory "
                        f"({limit:,} bytes): corrupt header or file too large", path)
    return n


def memory_error(exc: MemoryError, path: str | os.PathLike[str] | None, what: str = "read the data") -> DataError:
    """A one-line :class:`DataError` for a :class:`MemoryError`, with the bytes that were
    asked for when numpy says (its ``_ArrayMemoryError`` records them)."""
    size = getattr(exc, "_total_size", None)
    need = f" ({int(size):,} bytes needed)" if isinstance(size, int) else ""
    return DataError(f"not enough memory to {what}{need}", path)


def warn_dropped(namespace: str, key: object, value: object, why: str) -> None:
    """Warn (one line) that header field ``namespace[key]`` is not written back because its
    value is of the wrong type or out of range; writers call this for fields of
    ``Volume.meta`` that may come from an untrusted file and carry on without them."""
    shown = one_line(repr(value), 60)
    warnings.warn(f"ignoring header field {namespace}[{one_line(repr(key), 60)}] = {shown}: {why}",
                  UserWarning, stacklevel=3)


def is_int(value: object, lo: int | None = None, hi: int | None = None) -> bool:
    """True for an integer (not a bool) within ``[lo, hi]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return False
    v = int(value)
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def is_finite_number(value: object, lo: float | None = None, hi: float | None = None) -> bool:
    """True for a finite int or float (not a bool) within ``[lo, hi]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        v = float(value)
    except OverflowError:
        return False
    return math.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi)


def is_clean_text(value: object, max_len: int = 1 << 16, *, single_line: bool = False) -> bool:
    """True for a ``str`` that encodes as UTF-8 (no lone surrogates), holds no NUL and, with
    ``single_line``, no line break, and is at most ``max_len`` characters."""
    if not isinstance(value, str) or len(value) > max_len or "\x00" in value:
        return False
    if single_line and ("\n" in value or "\r" in value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
