"""Seams of chunked coding: is the error at chunk faces larger than elsewhere?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeamReport:
    """Error at chunk faces against the error elsewhere: ``face_max``/``other_max``
    (max |error|), ``face_rmse``/``other_rmse``, and ``max_ratio`` = face_max / other_max
    (1 when the faces are no worse; the issue's bar is at most 1.5)."""

    face_max: float
    other_max: float
    face_rmse: float
    other_rmse: float

    @property
    def max_ratio(self) -> float:
        return self.face_max / self.other_max if self.other_max > 0 else (1.0 if self.face_max == 0 else np.inf)

    @property
    def rmse_ratio(self) -> float:
        return self.face_rmse / self.other_rmse if self.other_rmse > 0 else (1.0 if self.face_rmse == 0 else np.inf)


def face_mask(shape: tuple[int, ...], chunks: tuple[int, ...]) -> np.ndarray:
    """True on the voxels at a chunk face: the first or last voxel of a chunk along an
    axis that is cut into more than one chunk."""
    mask = np.zeros(shape, dtype=bool)
    for ax, (n, c) in enumerate(zip(shape, chunks)):
        if c >= n:
            continue
        idx = np.arange(n)
        on = ((idx % c == 0) | (idx % c == c - 1)) & (idx > 0) & (idx < n - 1)
        view = [None] * len(shape)
        view[ax] = slice(None)
        mask |= on[tuple(view)]
    return mask


def seam_report(original: np.ndarray, decoded: np.ndarray, chunks: tuple[int, ...]) -> SeamReport:
    """Compare the error at the faces of ``chunks`` with the error in the rest of the array."""
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(decoded, dtype=np.float64)
    if a.shape != b.shape or len(chunks) != a.ndim:
        raise ValueError(f"shapes {a.shape} and {b.shape} with chunks {chunks} do not match")
    err = np.abs(b - a)
    mask = face_mask(a.shape, tuple(chunks))
    face, other = err[mask], err[~mask]

    def stats(e: np.ndarray) -> tuple[float, float]:
        return (float(e.max()), float(np.sqrt(np.mean(e * e)))) if e.size else (0.0, 0.0)

    fm, fr = stats(face)
    om, orr = stats(other)
    return SeamReport(fm, om, fr, orr)
