"""Denoising evaluation figures are written atomically as readable PNGs."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from voxfield.denoise.confusion import sweep
from voxfield.denoise.plots import plot_pr_curves, plot_score_histogram


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    score = rng.random((10, 10, 10))
    label = rng.random((10, 10, 10)) < score
    valid = rng.random((10, 10, 10)) > 0.1
    return score, label, valid


def _check_png(path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_pr_curves_png(tmp_path):
    score, label, valid = _data()
    curves = {"network": sweep(score, label, valid, n=51), "raw": sweep(score**2, label, valid, n=51)}
    out = plot_pr_curves(curves, tmp_path / "pr.png", points={"dust": (0.5, 0.8)}, title="PR")
    assert out == tmp_path / "pr.png"
    _check_png(out)
    # overwrite in place
    plot_pr_curves(curves, out)
    _check_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pr.png"]


def test_score_histogram_png(tmp_path):
    score, label, valid = _data()
    out = plot_score_histogram(score, label, valid, tmp_path / "hist.png",
                               thresholds={"background": 0.035, "structural": 0.495}, title="scores")
    _check_png(out)
    out2 = plot_score_histogram(score, label, None, tmp_path / "hist_all.png")
    _check_png(out2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hist.png", "hist_all.png"]
