"""Confusion matrix, threshold sweep and G-mean-optimal thresholds for noise classification.

Conventions of DeepTracer-Denoising (the paper's "Definition of the Confusion Matrix"):

* **positive = noise**, negative = structure. A voxel is *predicted noise* when its score is
  **strictly below** the threshold (``score < t``); the score is anything where higher means
  "more structure" (the network's P(structure), or a raw map value for a plain-threshold
  baseline).
* TP = noise predicted noise, FP = structure predicted noise (type I error, the one to
  avoid), FN = noise predicted structure, TN = structure predicted structure.
* Only *valid* voxels are counted (the paper excludes the empty, zero-valued voxels of the
  input map); pass ``valid=None`` to count every voxel.
* G-mean = sqrt(TPR * TNR) (eq. 4); its maximum over thresholds is the optimal threshold
  (the paper finds 0.035 for background noise and 0.495 for structural noise).

Rates whose denominator is zero are ``nan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voxfield.errors import DataError, OptionError


def _ratio(a: int, b: int) -> float:
    return float("nan") if b == 0 else a / b


@dataclass(frozen=True)
class Confusion:
    """Counts of a noise-vs-structure classification (positive = noise)."""

    tp: int
    fp: int
    tn: int
    fn: int
    threshold: float | None = None

    @property
    def n(self) -> int:
        """Number of voxels counted."""
        return self.tp + self.fp + self.tn + self.fn

    @property
    def tpr(self) -> float:
        """True-positive rate (recall of the noise class) TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def tnr(self) -> float:
        """True-negative rate (structure kept) TN / (TN + FP)."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def fpr(self) -> float:
        """False-positive rate (structure removed) FP / (FP + TN)."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def fnr(self) -> float:
        """False-negative rate (noise left in) FN / (FN + TP)."""
        return _ratio(self.fn, self.fn + self.tp)

    @property
    def precision(self) -> float:
        """Precision of the noise class TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def accuracy(self) -> float:
        """(TP + TN) / all counted voxels."""
        return _ratio(self.tp + self.tn, self.n)

    @property
    def gmean(self) -> float:
        """sqrt(TPR * TNR), the paper's eq. 4 (``nan`` if either rate is undefined)."""
        return math.sqrt(self.tpr * self.tnr)

    def to_dict(self) -> dict[str, float | int | None]:
        """Counts, threshold and all rates as a flat dict (rates may be ``nan``)."""
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "n": self.n,
            "tpr": self.tpr,
            "tnr": self.tnr,
            "fpr": self.fpr,
            "fnr": self.fnr,
            "precision": self.precision,
            "accuracy": self.accuracy,
            "gmean": self.gmean,
        }


def _mask(a: np.ndarray, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """Bool array from a bool or 0/1 array, checked against ``shape``."""
    a = np.asarray(a)
    if shape is not None and a.shape != shape:
        raise DataError(f"{name}: shape {a.shape} does not match {shape}")
    if a.dtype == bool:
        return a
    if a.size and not np.isin(a, (0, 1)).all():
        raise DataError(f"{name}: not a mask (values other than 0/1)")
    return a != 0


def _valid_mask(valid: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    return None if valid is None else _mask(valid, "valid", shape)


def _select(a: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return a.ravel() if valid is None else a[valid]


def _split_scores(score: np.ndarray, structure_label: np.ndarray,
                  valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Valid scores of actual noise voxels and of actual structure voxels (float64)."""
    score = np.asarray(score)
    if score.dtype == bool or not np.issubdtype(score.dtype, np.number):
        raise DataError(f"score: expected a numeric array, got dtype {score.dtype}")
    label = _mask(structure_label, "structure_label", score.shape)
    v = _valid_mask(valid, score.shape)
    s = _select(score, v).astype(np.float64, copy=False)
    lab = _select(label, v)
    if not np.isfinite(s).all():
        raise DataError("score: NaN or infinite values among the valid voxels")
    return s[~lab], s[lab]


def confusion(score: np.ndarray, structure_label: np.ndarray, threshold: float,
              valid: np.ndarray | None = None) -> Confusion:
    """Confusion matrix of "noise when ``score < threshold``" against the label.

    ``structure_label`` is True (or 1) where a voxel is structure; actual noise is its
    complement. Only voxels where ``valid`` is True are counted (default: all).
    """
    t = float(threshold)
    if math.isnan(t):
        raise OptionError("threshold must be a number, got nan")
    noise, struct = _split_scores(score, structure_label, valid)
    tp = int(np.count_nonzero(noise < t))
    fp = int(np.count_nonzero(struct < t))
    return Confusion(tp=tp, fp=fp, tn=struct.size - fp, fn=noise.size - tp, threshold=t)


def confusion_from_masks(pred_noise: np.ndarray, structure_label: np.ndarray,
                         valid: np.ndarray | None = None) -> Confusion:
    """Confusion matrix of a boolean noise prediction (e.g. the hide-dust baseline)."""
    pred = _mask(pred_noise, "pred_noise", None)
    label = _mask(structure_label, "structure_label", pred.shape)
    v = _valid_mask(valid, pred.shape)
    p, lab = _select(pred, v), _select(label, v)
    tp = int(np.count_nonzero(p & ~lab))
    fp = int(np.count_nonzero(p & lab))
    fn = int(np.count_nonzero(~p & ~lab))
    tn = int(lab.size) - tp - fp - fn
    return Confusion(tp=tp, fp=fp, tn=tn, fn=fn, threshold=None)


@dataclass
class ThresholdSweep:
    """Rates at many thresholds (arrays of equal length, thresholds increasing)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray
    tpr: np.ndarray
    tnr: np.ndarray
    precision: np.ndarray
    gmean: np.ndarray

    def best(self) -> tuple[float, float]:
        """(threshold, G-mean) at the maximum G-mean.

        When several neighbouring thresholds tie (no score lies between them, so the counts
        are identical), the middle of that run is returned, a max-margin choice. Returns
        ``(nan, nan)`` when every G-mean is undefined.
        """
        g = self.gmean
        if g.size == 0 or np.isnan(g).all():
            return float("nan"), float("nan")
        i = int(np.nanargmax(g))
        j = i
        while j + 1 < g.size and g[j + 1] == g[i]:
            j += 1
        k = (i + j) // 2
        return float(self.thresholds[k]), float(g[k])

    def confusion_at(self, index: int) -> Confusion:
        """The :class:`Confusion` at ``thresholds[index]``."""
        return Confusion(tp=int(self.tp[index]), fp=int(self.fp[index]), tn=int(self.tn[index]),
                         fn=int(self.fn[index]), threshold=float(self.thresholds[index]))

    def to_dict(self) -> dict[str, list[float]]:
        """Arrays as lists (JSON-ready apart from ``nan``)."""
        return {k: getattr(self, k).tolist()
                for k in ("thresholds", "tp", "fp", "tn", "fn", "tpr", "tnr", "precision", "gmean")}


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=b > 0)
    return out


def sweep(score: np.ndarray, structure_label: np.ndarray, valid: np.ndarray | None = None,
          n: int = 1001, *, thresholds: np.ndarray | None = None) -> ThresholdSweep:
    """Exact confusion counts at ``n`` thresholds evenly spread from the minimum to the
    maximum valid score (or at the given ``thresholds``), by sorting each class once and
    counting with ``searchsorted``.
    """
    noise, struct = _split_scores(score, structure_label, valid)
    if noise.size + struct.size == 0:
        raise DataError("no valid voxels to evaluate")
    if thresholds is None:
        if int(n) < 2:
            raise OptionError(f"n must be >= 2, got {n}")
        allv = np.concatenate([noise, struct])
        t = np.linspace(allv.min(), allv.max(), int(n))
    else:
        t = np.asarray(thresholds, dtype=np.float64).ravel()
        if not np.isfinite(t).all():
            raise OptionError("thresholds must be finite")
        t = np.sort(t)
    noise.sort()
    struct.sort()
    tp = np.searchsorted(noise, t, side="left").astype(np.int64)
    fp = np.searchsorted(struct, t, side="left").astype(np.int64)
    fn = noise.size - tp
    tn = struct.size - fp
    tpr = _safe_div(tp.astype(float), np.full(t.shape, float(noise.size)))
    tnr = _safe_div(tn.astype(float), np.full(t.shape, float(struct.size)))
    precision = _safe_div(tp.astype(float), (tp + fp).astype(float))
    return ThresholdSweep(thresholds=t, tp=tp, fp=fp, tn=tn, fn=fn, tpr=tpr, tnr=tnr,
                          precision=precision, gmean=np.sqrt(tpr * tnr))


def best_gmean_threshold(score: np.ndarray, structure_label: np.ndarray,
                         valid: np.ndarray | None = None, *, n: int = 1001) -> tuple[float, float]:
    """(threshold, G-mean) maximising the G-mean over :func:`sweep`'s ``n`` thresholds."""
    return sweep(score, structure_label, valid, n).best()


def structural_threshold(score: np.ndarray, structure_label: np.ndarray, valid: np.ndarray | None,
                         background_threshold: float, *, n: int = 1001) -> tuple[float, float]:
    """The paper's structural-noise threshold: leave out the voxels already classified as
    background noise (``score < background_threshold``, e.g. 0.035), then return the
    G-mean-optimal (threshold, G-mean) on the remaining valid voxels (the paper finds 0.495).

    The paper says these voxels are excluded "from the positive class"; here they are left
    out whatever their label, as a structure voxel below the background threshold is a
    false positive at every structural threshold anyway.
    """
    bg = float(background_threshold)
    if not math.isfinite(bg):
        raise OptionError(f"background_threshold must be finite, got {background_threshold!r}")
    s = np.asarray(score)
    keep = s >= bg
    if valid is not None:
        keep &= _mask(valid, "valid", s.shape)
    if not keep.any():
        raise DataError(f"no valid voxels with score >= {bg:g}")
    return best_gmean_threshold(s, structure_label, keep, n=n)
