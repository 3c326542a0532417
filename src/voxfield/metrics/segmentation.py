"""Mask metrics: SCI's thresholded accuracy Acc(tau), Dice and IoU.

Conventions: a voxel is "in" a thresholded mask when its value is **strictly greater** than
the threshold (``v > tau``), as in SCI. Dice and IoU of two empty masks are 1.0 (both
agree that there is nothing), so a codec that keeps an empty region empty is not penalised.
"""

from __future__ import annotations

import math

import numpy as np

from voxfield.errors import DataError, OptionError

from ._validate import check_pair, flat_view, iter_chunks


def _threshold(value: float, name: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(t):
        raise OptionError(f"{name} must be finite, got {value!r}")
    return t


def _as_mask(a: np.ndarray, name: str) -> np.ndarray:
    """Bool view/copy of a mask; integer/float masks must hold only 0 and 1."""
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise DataError(f"{name}: not a mask (values other than 0/1); threshold it first")
    return a != 0


def _counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(|A|, |B|, |A and B|) for two bool arrays of equal shape, streamed."""
    fa, fb = flat_view(a), flat_view(b)
    na = nb = nab = 0
    for sl in iter_chunks(fa.size, 1 << 22):
        xa, xb = fa[sl], fb[sl]
        na += int(np.count_nonzero(xa))
        nb += int(np.count_nonzero(xb))
        nab += int(np.count_nonzero(xa & xb))
    return na, nb, nab


def _dice_from(na: int, nb: int, nab: int) -> float:
    return 1.0 if na + nb == 0 else 2.0 * nab / (na + nb)


def _iou_from(na: int, nb: int, nab: int) -> float:
    union = na + nb - nab
    return 1.0 if union == 0 else nab / union


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two masks (bool, or 0/1 values).
    1.0 when both are empty."""
    x, y = check_pair(a, b, ("mask a", "mask b"))
    return _dice_from(*_counts(_as_mask(x, "mask a"), _as_mask(y, "mask b")))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|A∩B| / |A∪B|`` of two masks. 1.0 when both are empty."""
    x, y = check_pair(a, b, ("mask a", "mask b"))
    return _iou_from(*_counts(_as_mask(x, "mask a"), _as_mask(y, "mask b")))


def thresholded_accuracy(
    original: np.ndarray, result: np.ndarray, tau: float, *, _checked: bool = False
) -> float:
    """SCI's Acc(tau): fraction (0-1) of voxels where ``(original > tau) == (result > tau)``.

    ``tau`` is in the data's units (SCI uses 200 and 500 on uint16 data). Dominated by the
    background for sparse data: report Dice next to it.
    """
    if not _checked:
        original, result = check_pair(original, result)
    t = _threshold(tau, "tau")
    fa, fb = flat_view(original), flat_view(result)
    agree = 0
    for sl in iter_chunks(fa.size, 1 << 22):
        agree += int(np.count_nonzero((fa[sl] > t) == (fb[sl] > t)))
    return agree / fa.size


def mask_scores(
    original: np.ndarray, result: np.ndarray, threshold: float, *, _checked: bool = False
) -> dict:
    """Scores of the masks ``original > threshold`` and ``result > threshold``.

    Returns a JSON-serialisable dict: ``threshold``, ``accuracy`` (Acc(tau), 0-1), ``dice``,
    ``iou``, ``n_original`` and ``n_result`` (voxels in each mask).
    """
    if not _checked:
        original, result = check_pair(original, result)
    t = _threshold(threshold, "threshold")
    fa, fb = flat_view(original), flat_view(result)
    na = nb = nab = agree = 0
    for sl in iter_chunks(fa.size, 1 << 22):
        ma = fa[sl] > t
        mb = fb[sl] > t
        na += int(np.count_nonzero(ma))
        nb += int(np.count_nonzero(mb))
        nab += int(np.count_nonzero(ma & mb))
        agree += int(np.count_nonzero(ma == mb))
    return {
        "threshold": t,
        "accuracy": agree / fa.size,
        "dice": _dice_from(na, nb, nab),
        "iou": _iou_from(na, nb, nab),
        "n_original": na,
        "n_result": nb,
    }


__all__ = ["dice", "iou", "mask_scores", "thresholded_accuracy"]
