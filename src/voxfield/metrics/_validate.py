"""Input checks and chunked iteration shared by the metric modules (private).

Every public metric goes through :func:`check_pair` (or :func:`check_array`) so that user
mistakes - shapes that differ, empty arrays, NaN/Inf, complex or object data - surface as a
:class:`~voxfield.errors.DataError` with a message that names the problem, never as a numpy
warning or a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from voxfield.errors import DataError, OptionError

#: Elements per chunk when a metric streams over a volume (8 MiB of float64).
CHUNK_ELEMS = 1 << 20

_ALLOWED_KINDS = "biuf"


def as_checked_array(a: object, name: str) -> np.ndarray:
    """``np.asarray(a)`` with a supported dtype (bool, integer, float) and at least one voxel."""
    arr = np.asarray(a)
    if arr.dtype.kind not in _ALLOWED_KINDS:
        raise DataError(
            f"{name}: unsupported dtype {arr.dtype} (metrics need bool, integer or real float data)"
        )
    if arr.size == 0:
        raise DataError(f"{name}: empty array (shape {arr.shape})")
    return arr


def flat_view(a: np.ndarray) -> np.ndarray:
    """1-D view of ``a`` (a copy, in ``a``'s own dtype, only when ``a`` is not contiguous)."""
    return a.reshape(-1)


def iter_chunks(n: int, chunk: int | None = None) -> Iterator[slice]:
    """Slices ``[i, i + chunk)`` covering ``range(n)`` (default chunk :data:`CHUNK_ELEMS`)."""
    if chunk is None:
        chunk = CHUNK_ELEMS
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise :class:`DataError` when a float array holds NaN or Inf (checked chunk by chunk)."""
    if a.dtype.kind != "f":
        return
    flat = flat_view(a)
    for sl in iter_chunks(flat.size):
        part = flat[sl]
        if not np.isfinite(part).all():
            n_nan = int(np.isnan(flat).sum())
            n_inf = int(np.isinf(flat).sum())
            raise DataError(f"{name}: contains non-finite values ({n_nan} NaN, {n_inf} Inf)")


def check_array(a: object, name: str = "array") -> np.ndarray:
    """Validated array: supported dtype, non-empty, finite."""
    arr = as_checked_array(a, name)
    check_finite(arr, name)
    return arr


def check_pair(
    original: object, result: object, names: tuple[str, str] = ("original", "result")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two arrays for a full-reference metric and return them as ndarrays.

    Raises :class:`DataError` when the shapes differ (naming both), when either is empty,
    has an unsupported dtype, or holds NaN/Inf.
    """
    a = np.asarray(original)
    b = np.asarray(result)
    if a.shape != b.shape:
        raise DataError(f"shapes differ: {names[0]} {a.shape} vs {names[1]} {b.shape}")
    a = as_checked_array(a, names[0])
    b = as_checked_array(b, names[1])
    check_finite(a, names[0])
    check_finite(b, names[1])
    return a, b


def positive_number(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``float(value)`` when it is finite and > 0 (or >= 0), else :class:`OptionError`."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def normalize_axes(
    axes: Sequence[int] | int | None, ndim: int, name: str = "spatial_axes"
) -> tuple[int, ...]:
    """Sorted, non-negative, unique axis indices; :class:`OptionError` when out of range."""
    if axes is None:
        raise OptionError(f"{name} is required")
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out: list[int] = []
    for ax in axes:
        try:
            i = int(ax)
        except (TypeError, ValueError):
            raise OptionError(f"{name}: {ax!r} is not an axis index") from None
        if not -ndim <= i < ndim:
            raise OptionError(f"{name}: axis {i} out of range for an array of {ndim} dimensions")
        i %= ndim
        if i in out:
            raise OptionError(f"{name}: axis {i} given twice")
        out.append(i)
    if not out:
        raise OptionError(f"{name}: at least one spatial axis is needed")
    return tuple(sorted(out))


def default_spatial_axes(ndim: int) -> tuple[int, ...]:
    """All axes for 1-3 dimensional data, else the last three (``...ZYX``)."""
    if ndim <= 3:
        return tuple(range(ndim))
    return tuple(range(ndim - 3, ndim))
