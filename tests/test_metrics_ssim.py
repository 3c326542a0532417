"""SSIM: agreement with scikit-image, n-D windows, slice axes, small dimensions, slabs."""

from __future__ import annotations

from importlib import resources

import mrcfile
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from voxfield.errors import DataError, OptionError
from voxfield.metrics import similarity as ssim_module
from voxfield.metrics import ssim, ssim_details


def _sk(a, b, data_range):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range
    )


@pytest.fixture(scope="module")
def emd_crop() -> np.ndarray:
    """The shipped 64^3 crop of EMD-3488 (float32, 1.05 Å)."""
    with resources.as_file(resources.files("voxfield") / "data" / "emd_3488_crop64.mrc.gz") as p:
        with mrcfile.open(p) as m:
            return np.array(m.data, dtype=np.float32)


def test_identical_is_one(emd_crop):
    assert ssim(emd_crop, emd_crop.copy()) == pytest.approx(1.0, abs=1e-12)


def test_decreases_with_noise(emd_crop):
    rng = np.random.default_rng(0)
    sd = float(emd_crop.std())
    vals = [ssim(emd_crop, emd_crop + s * sd * rng.standard_normal(emd_crop.shape)) for s in (0.05, 0.3, 1.0)]
    assert 1 > vals[0] > vals[1] > vals[2] > 0


def test_3d_equals_skimage_small_case():
    rng = np.random.default_rng(1)
    a = rng.random((20, 24, 30))
    b = a + 0.1 * rng.standard_normal(a.shape)
    rng_a = float(a.max() - a.min())
    assert ssim(a, b) == pytest.approx(_sk(a, b, rng_a), abs=1e-12)


def test_3d_equals_skimage_on_real_map(emd_crop):
    a = emd_crop.astype(np.float64)
    rng = np.random.default_rng(2)
    b = a + 0.02 * rng.standard_normal(a.shape)
    ours = ssim(emd_crop, b)  # float32 original, computed in float64
    assert ours == pytest.approx(_sk(a, b, float(a.max() - a.min())), abs=1e-9)


def test_volume_ssim_is_not_slice_ssim(emd_crop):
    rng = np.random.default_rng(3)
    b = emd_crop + 0.05 * rng.standard_normal(emd_crop.shape)
    d3 = ssim_details(emd_crop, b)
    d2 = ssim_details(emd_crop, b, spatial_axes=(1, 2))
    assert d3.mode == "3D" and d3.spatial_axes == (0, 1, 2)
    assert d2.mode == "2D per slice" and d2.slice_axes == (0,)
    assert d3.ssim != pytest.approx(d2.ssim, abs=1e-4)


def test_channel_loop_is_mean_of_channels():
    rng = np.random.default_rng(4)
    a = rng.random((3, 40, 50))
    a[1] *= 0.5
    b = a + rng.standard_normal(a.shape) * np.array([0.05, 0.1, 0.3])[:, None, None]
    dr = float(a.max() - a.min())  # one data range for all channels (the original's)
    expected = np.mean([_sk(a[c], b[c], dr) for c in range(3)])
    assert ssim(a, b, spatial_axes=(1, 2)) == pytest.approx(expected, abs=1e-12)
    # channel axis last (YXC) gives the same
    assert ssim(np.moveaxis(a, 0, -1), np.moveaxis(b, 0, -1), spatial_axes=(0, 1)) == pytest.approx(
        expected, abs=1e-12
    )
    # default for 3-D: the 3-voxel axis is too short for a window -> looped, same result
    det = ssim_details(a, b)
    assert det.slice_axes == (0,) and det.ssim == pytest.approx(expected, abs=1e-12)


def test_default_axes_4d_are_last_three():
    rng = np.random.default_rng(5)
    a = rng.random((2, 12, 13, 14))
    b = a + 0.1 * rng.standard_normal(a.shape)
    det = ssim_details(a, b)
    assert det.spatial_axes == (1, 2, 3) and det.slice_axes == (0,)
    dr = float(a.max() - a.min())
    assert det.ssim == pytest.approx(np.mean([_sk(a[i], b[i], dr) for i in range(2)]), abs=1e-12)


def test_small_dimensions():
    rng = np.random.default_rng(6)
    # 9 voxels along z: window truncated at radius 4 there, 5 elsewhere
    a = rng.random((9, 32, 32))
    b = a + 0.1 * rng.standard_normal(a.shape)
    det = ssim_details(a, b)
    assert det.spatial_axes == (0, 1, 2) and det.radius == (4, 5, 5)
    assert 0 < det.ssim < 1
    # 4 slices: per-slice 2-D
    a4, b4 = a[:4], b[:4]
    det4 = ssim_details(a4, b4)
    assert det4.spatial_axes == (1, 2) and det4.mode == "2D per slice"
    dr = float(a4.max() - a4.min())
    assert det4.ssim == pytest.approx(np.mean([_sk(a4[i], b4[i], dr) for i in range(4)]), abs=1e-12)
    with pytest.raises(DataError, match="too small"):
        ssim(np.zeros((5, 5)), np.ones((5, 5)))


def test_slabs_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(7)
    a = rng.random((30, 20, 25)).astype(np.float32)
    b = a + np.float32(0.1) * rng.standard_normal(a.shape).astype(np.float32)
    whole = ssim(a, b)
    monkeypatch.setattr(ssim_module, "SLAB_ELEMS", 600)  # 1 row per slab plus the halo
    assert ssim(a, b) == pytest.approx(whole, abs=1e-13)


def test_constant_original():
    a = np.full((16, 16), 2.0)
    assert ssim(a, a) == 1.0
    s = ssim(a, a + 1.0)  # range of both arrays together is used
    assert np.isfinite(s) and s < 1.0


def test_integer_data_uses_data_range():
    rng = np.random.default_rng(8)
    a = (1000 + rng.integers(0, 200, size=(20, 20, 20))).astype(np.uint16)
    b = (a.astype(np.int64) + rng.integers(-60, 61, size=a.shape)).astype(np.uint16)
    dr = float(a.max()) - float(a.min())
    assert ssim(a, b) == pytest.approx(_sk(a.astype(float), b.astype(float), dr), abs=1e-12)
    # the dtype-max range would say nearly 1: ours must be clearly lower
    assert ssim(a, b) < 0.9 < 0.999 < ssim(a, b, data_range=65535)


def test_errors():
    with pytest.raises(DataError, match="shapes differ"):
        ssim(np.zeros((10, 10)), np.zeros((10, 11)))
    with pytest.raises(OptionError):
        ssim(np.zeros((10, 10)), np.zeros((10, 10)), spatial_axes=(2,))
    with pytest.raises(OptionError):
        ssim(np.zeros((10, 10)), np.zeros((10, 10)), data_range=-1)
