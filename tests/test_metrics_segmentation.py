"""Thresholded accuracy (SCI's Acc(tau)), Dice, IoU."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.errors import DataError, OptionError
from voxfield.metrics import dice, iou, mask_scores, thresholded_accuracy


def test_thresholded_accuracy_hand_case():
    o = np.array([0, 5, 10, 3, 4])
    r = np.array([0, 6, 2, 4, 9])
    # tau = 4 (strictly greater): o -> F T T F F, r -> F T F F T : agree at 0, 1, 3
    assert thresholded_accuracy(o, r, 4) == pytest.approx(3 / 5)
    assert thresholded_accuracy(o, o, 4) == 1.0


def test_dice_iou_hand_case():
    a = np.array([1, 1, 0, 0], dtype=bool)
    b = np.array([1, 0, 1, 0], dtype=bool)
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, ~a) == 0.0 and iou(a, ~a) == 0.0
    # 0/1 integer masks are accepted
    assert dice(a.astype(np.uint8), b.astype(np.uint8)) == pytest.approx(0.5)


def test_empty_masks():
    z = np.zeros((3, 3), dtype=bool)
    assert dice(z, z) == 1.0
    assert iou(z, z) == 1.0
    one = z.copy()
    one[1, 1] = True
    assert dice(z, one) == 0.0
    assert iou(z, one) == 0.0


def test_dice_iou_relation():
    rng = np.random.default_rng(0)
    a = rng.random((20, 20, 20)) > 0.6
    b = rng.random((20, 20, 20)) > 0.5
    d, j = dice(a, b), iou(a, b)
    assert d == pytest.approx(2 * j / (1 + j))


def test_mask_scores():
    o = np.array([[0.0, 0.2], [0.5, 0.9]])
    r = np.array([[0.3, 0.1], [0.6, 0.2]])
    s = mask_scores(o, r, 0.25)
    # o > .25: F F T T ; r > .25: T F T F -> inter 1, |A| 2, |B| 2, agree 2/4
    assert s == {
        "threshold": 0.25,
        "accuracy": 0.5,
        "dice": 0.5,
        "iou": pytest.approx(1 / 3),
        "n_original": 2,
        "n_result": 2,
    }
    assert s["accuracy"] == thresholded_accuracy(o, r, 0.25)


def test_errors():
    with pytest.raises(DataError, match="not a mask"):
        dice(np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(DataError, match=r"\(2,\).*\(3,\)"):
        iou(np.zeros(2, bool), np.zeros(3, bool))
    with pytest.raises(OptionError):
        thresholded_accuracy(np.zeros(3), np.zeros(3), float("nan"))
    with pytest.raises(DataError):
        mask_scores(np.array([np.nan, 1.0]), np.zeros(2), 0.5)
