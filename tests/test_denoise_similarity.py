"""The paper's map-model similarity (eqs. 1-3)."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.denoise.similarity import core_percentile, map_model_similarity
from voxfield.errors import DataError, OptionError


def _blob(shape: tuple[int, int, int], centre: tuple[float, float, float], sigma: float) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=np.float64)
    r2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    return np.exp(-r2 / (2 * sigma**2))


def test_core_percentile_by_hand():
    exp = np.arange(10.0)
    sim4 = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4.0])
    sim2 = np.array([0, 0, 0, 0, 0, 0, 0, 0, 3, 4.0])
    assert core_percentile(exp, sim4, 6.5) == pytest.approx(0.4)   # sim: 4/10 > exp: 3/10
    assert core_percentile(exp, sim2, 6.5) == pytest.approx(0.3)   # exp: 3/10 > sim: 2/10
    assert core_percentile(exp, sim2, 6.5, sim_floor=3.5) == pytest.approx(0.3)
    r = map_model_similarity(exp, sim4, 6.5)
    # 2 * P_core = 0.8: voxels above the 0.2 quantile of exp (1.8), i.e. 2..9
    assert r.p_core == pytest.approx(0.4)
    assert r.cutoff == pytest.approx(1.8)
    assert r.n_voxels == 8
    expect = np.corrcoef(exp[2:], sim4[2:])[0, 1]
    assert r.similarity == pytest.approx(expect)


def test_identical_maps_give_one():
    exp = _blob((16, 16, 16), (8, 8, 8), 2.0)
    exp[exp < 0.01] = 0.0
    r = map_model_similarity(exp, exp.copy(), 0.3)
    assert r.similarity == pytest.approx(1.0)
    assert 0.0 < r.p_core < 0.5 and r.n_voxels < exp.size


def test_anticorrelated_gives_zero():
    exp = _blob((16, 16, 16), (8, 8, 8), 2.0)
    sim = exp.max() - exp + 0.1       # positive everywhere: P_core = 1, all voxels used
    r = map_model_similarity(exp, sim, 0.3)
    assert r.p_core == 1.0 and r.n_voxels == exp.size and r.cutoff == float("-inf")
    assert r.similarity == 0.0


def test_constant_simulated_map_gives_zero():
    exp = _blob((8, 8, 8), (4, 4, 4), 1.5)
    assert map_model_similarity(exp, np.zeros_like(exp), 0.5).similarity == 0.0


def test_incomplete_model_scores_lower():
    rng = np.random.default_rng(0)
    shape = (32, 32, 32)
    a = _blob(shape, (10, 16, 10), 2.5)
    b = _blob(shape, (22, 16, 22), 2.5)
    exp = a + b + 0.05 * rng.standard_normal(shape)
    exp[exp < 0] = 0
    full = map_model_similarity(exp, np.where(a + b > 0.05, a + b, 0), 0.3)
    half = map_model_similarity(exp, np.where(a > 0.05, a, 0), 0.3)
    assert full.similarity > 0.9
    assert half.similarity < full.similarity - 0.3


def test_bad_input():
    with pytest.raises(DataError):
        map_model_similarity(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), 0.1)
    with pytest.raises(DataError):
        core_percentile(np.full(3, np.nan), np.zeros(3), 0.1)
    with pytest.raises(OptionError):
        map_model_similarity(np.zeros(3), np.zeros(3), float("inf"))
