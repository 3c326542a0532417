"""Checks on array content and shape shared by readers, codecs and commands."""

from __future__ import annotations

import os

import numpy as np

from voxfield.errors import DataError

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
