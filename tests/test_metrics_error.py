"""Pointwise error metrics, PSNR conventions, rate metrics and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxfield.errors import DataError, OptionError
from voxfield.metrics import (
    FLOAT_DTYPE_MAX_PEAK,
    _validate,
    bits_per_voxel,
    compression_ratio,
    dtype_max_peak,
    error_stats,
    max_abs_error,
    mean_abs_error,
    mse,
    psnr,
    psnr_dtype_max,
    rmse,
)


def test_hand_computed_example():
    o = np.array([0.0, 1.0, 2.0, 3.0])
    r = np.array([0.0, 1.0, 2.0, 5.0])
    # errors 0, 0, 0, 2 -> MSE 1, max 2, mean 0.5; data range 3 -> PSNR 20 log10(3)
    assert mse(o, r) == pytest.approx(1.0)
    assert rmse(o, r) == pytest.approx(1.0)
    assert max_abs_error(o, r) == pytest.approx(2.0)
    assert mean_abs_error(o, r) == pytest.approx(0.5)
    assert psnr(o, r) == pytest.approx(20 * math.log10(3.0))
    assert psnr(o, r) == pytest.approx(9.5424, abs=1e-4)
    assert psnr(o, r, data_range=10.0) == pytest.approx(20.0)


def test_psnr_uses_data_range_not_dtype_max():
    rng = np.random.default_rng(0)
    o = (1000 + rng.integers(0, 1001, size=(16, 16, 16))).astype(np.uint16)
    o.flat[0], o.flat[1] = 1000, 2000  # data range exactly 1000
    r = (o.astype(np.int64) + rng.integers(-3, 4, size=o.shape)).astype(np.uint16)
    assert float(o.max()) - float(o.min()) == 1000
    diff = psnr_dtype_max(o, r) - psnr(o, r)
    assert diff == pytest.approx(20 * math.log10(65535 / 1000), abs=1e-9)
    assert diff == pytest.approx(36.33, abs=0.01)


def test_identical_gives_inf():
    a = np.linspace(-1, 1, 1000, dtype=np.float32).reshape(10, 10, 10)
    assert psnr(a, a.copy()) == math.inf
    assert psnr_dtype_max(a, a) == math.inf
    assert mse(a, a) == 0.0


def test_constant_original():
    o = np.full((8, 8), 3.0)
    assert psnr(o, o) == math.inf
    r = o + 0.5
    assert psnr(o, r) == -math.inf  # no data range: undefined, reported as -inf
    assert psnr(o, r, data_range=1.0) == pytest.approx(20 * math.log10(1 / 0.5))


def test_integer_inputs_do_not_wrap():
    o = np.array([0, 10], dtype=np.uint8)
    r = np.array([255, 10], dtype=np.uint8)
    assert max_abs_error(o, r) == 255.0
    assert mse(o, r) == pytest.approx(255.0**2 / 2)
    assert max_abs_error(r, o) == 255.0


def test_dtype_max_convention():
    assert dtype_max_peak(np.uint16) == 65535
    assert dtype_max_peak(np.uint8) == 255
    assert dtype_max_peak(np.int16) == 32767
    assert dtype_max_peak(np.bool_) == 1
    assert dtype_max_peak(np.float32) == FLOAT_DTYPE_MAX_PEAK == 65535
    o = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    r = o + np.float32(0.01)
    assert psnr_dtype_max(o, r) == pytest.approx(20 * math.log10(65535) - 10 * math.log10(mse(o, r)))


def test_chunked_stats_match_numpy(monkeypatch):
    monkeypatch.setattr(_validate, "CHUNK_ELEMS", 1000)
    rng = np.random.default_rng(1)
    o = rng.standard_normal((30, 40, 50)).astype(np.float32)
    r = o + rng.standard_normal(o.shape).astype(np.float32) * 0.1
    # non-contiguous views too
    o2, r2 = o[:, ::2, :], r[:, ::2, :]
    for a, b in ((o, r), (o2, r2)):
        d = b.astype(np.float64) - a.astype(np.float64)
        st = error_stats(a, b)
        assert st.mse == pytest.approx(np.mean(d**2), rel=1e-12)
        assert st.mean_abs == pytest.approx(np.mean(np.abs(d)), rel=1e-12)
        assert st.max_abs == pytest.approx(np.abs(d).max(), rel=1e-12)
        assert st.data_range == pytest.approx(float(a.max()) - float(a.min()))


def test_rate():
    assert compression_ratio(1000, 10) == 100.0
    assert bits_per_voxel(1000, 8000) == 1.0
    # float32: 32 bits / ratio
    assert bits_per_voxel(4 * 64**3 / 50, 64**3) == pytest.approx(32 / 50)
    with pytest.raises(OptionError):
        compression_ratio(1000, 0)
    with pytest.raises(OptionError):
        bits_per_voxel(10, -1)


@pytest.mark.parametrize("fn", [mse, rmse, max_abs_error, mean_abs_error, psnr, psnr_dtype_max])
def test_validation(fn):
    a = np.zeros((4, 5, 6), dtype=np.float32)
    with pytest.raises(DataError, match=r"\(4, 5, 6\).*\(4, 6, 5\)"):
        fn(a, np.zeros((4, 6, 5), dtype=np.float32))
    bad = a.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fn(a, bad)
    bad[1, 2, 3] = np.inf
    with pytest.raises(DataError, match="Inf"):
        fn(bad, a)
    with pytest.raises(DataError, match="empty"):
        fn(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(DataError, match="dtype"):
        fn(a.astype(np.complex64), a.astype(np.complex64))


def test_bad_data_range():
    a = np.arange(10.0)
    with pytest.raises(OptionError):
        psnr(a, a + 1, data_range=0)
    with pytest.raises(OptionError):
        psnr(a, a + 1, data_range="x")
