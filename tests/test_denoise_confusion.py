"""Confusion matrix, threshold sweep and G-mean thresholds (positive = noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxfield.denoise.confusion import (
    Confusion,
    best_gmean_threshold,
    confusion,
    confusion_from_masks,
    structural_threshold,
    sweep,
)
from voxfield.errors import DataError

SCORE = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
STRUCT = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1], dtype=bool)


def test_hand_checked_counts_and_rates():
    c = confusion(SCORE, STRUCT, 0.35)
    # predicted noise: 0..3; noise: 0,1,2,4,7; structure: 3,5,6,8,9
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 2, 4)
    assert c.threshold == 0.35
    assert c.tpr == pytest.approx(0.6)
    assert c.tnr == pytest.approx(0.8)
    assert c.fpr == pytest.approx(0.2)
    assert c.fnr == pytest.approx(0.4)
    assert c.precision == pytest.approx(0.75)
    assert c.accuracy == pytest.approx(0.7)
    assert c.gmean == pytest.approx(math.sqrt(0.48))
    d = c.to_dict()
    assert d["tp"] == 3 and d["n"] == 10 and d["gmean"] == pytest.approx(math.sqrt(0.48))


def test_threshold_is_strict_and_masks_agree():
    # score 0.3 (structure) at threshold 0.3 is not predicted noise
    c = confusion(SCORE, STRUCT, 0.3)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 0, 2, 5)
    m = confusion_from_masks(SCORE < 0.35, STRUCT)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 1, 2, 4) and m.threshold is None


def test_valid_mask_excludes_voxels():
    valid = np.ones(10, dtype=bool)
    valid[[3, 7]] = False
    c = confusion(SCORE, STRUCT, 0.35, valid)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 0, 1, 4)
    assert c.precision == 1.0 and c.gmean == pytest.approx(math.sqrt(0.75))
    m = confusion_from_masks(SCORE < 0.35, STRUCT, valid)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 0, 1, 4)


def test_zero_division_is_nan():
    c = Confusion(tp=0, fp=0, tn=5, fn=0)
    assert math.isnan(c.tpr) and math.isnan(c.precision) and math.isnan(c.gmean)
    assert c.tnr == 1.0 and c.accuracy == 1.0


def test_shape_mismatch_and_nan_scores():
    with pytest.raises(DataError):
        confusion(SCORE, STRUCT[:9], 0.5)
    with pytest.raises(DataError):
        confusion(SCORE, STRUCT, 0.5, valid=np.ones(3, dtype=bool))
    with pytest.raises(DataError):
        confusion_from_masks(SCORE < 0.5, STRUCT.reshape(2, 5))
    bad = SCORE.copy()
    bad[0] = np.nan
    with pytest.raises(DataError):
        confusion(bad, STRUCT, 0.5)


def test_separable_sweep_reaches_gmean_one():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 0.4, 500)
    struct = rng.uniform(0.6, 1.0, 300)
    score = np.concatenate([noise, struct])
    label = np.concatenate([np.zeros(500, bool), np.ones(300, bool)])
    t, g = best_gmean_threshold(score, label)
    assert g == 1.0
    assert noise.max() < t <= struct.min()
    c = confusion(score, label, t)
    assert (c.fp, c.fn) == (0, 0)


def test_sweep_matches_brute_force():
    rng = np.random.default_rng(1)
    score = rng.random((6, 7, 8)).astype(np.float32)
    label = rng.random((6, 7, 8)) < score  # structure more likely at high score
    valid = rng.random((6, 7, 8)) > 0.2
    sw = sweep(score, label, valid, n=101)
    assert sw.thresholds.size == 101
    for i, t in enumerate(sw.thresholds):
        c = confusion(score, label, t, valid)
        assert (sw.tp[i], sw.fp[i], sw.tn[i], sw.fn[i]) == (c.tp, c.fp, c.tn, c.fn)
        assert sw.gmean[i] == pytest.approx(c.gmean, nan_ok=True)
        assert sw.precision[i] == pytest.approx(c.precision, nan_ok=True)
    t, g = sw.best()
    assert g == pytest.approx(np.nanmax([confusion(score, label, x, valid).gmean for x in sw.thresholds]))
    assert 0.2 < t < 0.8
    d = sw.to_dict()
    assert len(d["gmean"]) == 101 and isinstance(d["thresholds"], list)


def test_structural_threshold_excludes_background():
    rng = np.random.default_rng(2)
    background = rng.uniform(0.0, 0.03, 2000)     # noise, score below 0.035
    low_struct = rng.uniform(0.0, 0.03, 50)       # structure voxels scored as background
    structural = rng.uniform(0.1, 0.45, 200)      # structural noise
    struct = rng.uniform(0.55, 1.0, 400)
    score = np.concatenate([background, low_struct, structural, struct])
    label = np.concatenate([np.zeros(2000, bool), np.ones(50, bool), np.zeros(200, bool), np.ones(400, bool)])
    t, g = structural_threshold(score, label, None, 0.035)
    assert g == 1.0 and 0.45 < t <= 0.55
    # without excluding the background, the 50 low structure voxels cost G-mean
    _, g_all = best_gmean_threshold(score, label)
    assert g_all < 1.0
    with pytest.raises(DataError):
        structural_threshold(score, label, None, 2.0)
