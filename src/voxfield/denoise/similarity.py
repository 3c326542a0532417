"""DeepTracer-Denoising's map–model similarity (the paper's eqs. 1–3).

The paper scores how completely a deposited model explains its experimental map by
correlating the map with a map simulated from the model, over the "core" of the map plus as
much again of the next-highest voxels (eq. 2's factor of two adds some noise voxels, which
raises the correlation of complete pairs more than that of incomplete ones). It keeps only
the training pairs whose similarity lies inside the main (Gaussian-looking) mode of the
distribution, discarding incomplete or mis-fitted models before training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voxfield.errors import DataError
from voxfield.metrics.segmentation import _threshold


@dataclass(frozen=True)
class SimilarityResult:
    """``similarity`` in [0, 1]; ``p_core`` from eq. 1; ``n_voxels`` correlated; ``cutoff``
    the experimental value above which voxels were used (``-inf``: all voxels)."""

    similarity: float
    p_core: float
    n_voxels: int
    cutoff: float

    def to_dict(self) -> dict[str, float | int]:
        """Fields as a flat dict."""
        return {"similarity": self.similarity, "p_core": self.p_core,
                "n_voxels": self.n_voxels, "cutoff": self.cutoff}


def _pair(exp: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e, s = np.asarray(exp), np.asarray(sim)
    if e.shape != s.shape:
        raise DataError(f"experimental map {e.shape} and simulated map {s.shape} differ in shape")
    if e.size == 0:
        raise DataError("empty maps")
    for a, name in ((e, "experimental map"), (s, "simulated map")):
        if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise DataError(f"{name} must be real-valued, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise DataError(f"{name} contains NaN or infinite values")
    return e, s


def _contour(contour: float) -> float:
    return _threshold(contour, "contour level")


def core_percentile(exp: np.ndarray, sim: np.ndarray, contour: float, *, sim_floor: float = 0.0) -> float:
    """Eq. 1: ``P_core = max(1 - F_exp(C), 1 - F_sim(0))``, i.e. the larger of the fraction
    of experimental voxels above the recommended contour ``C`` and the fraction of simulated
    voxels above zero (``sim_floor``: use a small positive value for a simulated map with
    low-pass ripples instead of exact zeros)."""
    e, s = _pair(exp, sim)
    c = _contour(contour)
    return max(float(np.count_nonzero(e > c)) / e.size, float(np.count_nonzero(s > sim_floor)) / s.size)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return float("nan") if den == 0.0 else float(np.dot(x, y)) / den


def map_model_similarity(exp: np.ndarray, sim: np.ndarray, contour: float, *,
                         sim_floor: float = 0.0) -> SimilarityResult:
    """Eqs. 1–3: Pearson correlation of ``exp`` and ``sim`` over the voxels where ``exp``
    exceeds its ``(1 - 2 P_core)`` quantile (eq. 2; all voxels when ``2 P_core >= 1``).

    A negative correlation counts as no correlation (0.0), as does an undefined one
    (constant values, fewer than two voxels), so the result lies in [0, 1].
    """
    e, s = _pair(exp, sim)
    p = core_percentile(e, s, contour, sim_floor=sim_floor)
    ef = e.ravel().astype(np.float64)
    sf = s.ravel().astype(np.float64)
    if 2.0 * p >= 1.0:
        cutoff = float("-inf")
        sel = np.ones(ef.shape, dtype=bool)
    else:
        cutoff = float(np.quantile(ef, 1.0 - 2.0 * p))
        sel = ef > cutoff
    r = _pearson(ef[sel], sf[sel])
    sim_value = 0.0 if not math.isfinite(r) or r < 0.0 else min(r, 1.0)
    return SimilarityResult(similarity=sim_value, p_core=p, n_voxels=int(np.count_nonzero(sel)), cutoff=cutoff)
