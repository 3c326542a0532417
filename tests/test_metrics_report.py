"""compare() and format_report(): the dict that the CLI and the benchmarks share."""

from __future__ import annotations

import json
import math
from importlib import resources

import mrcfile
import numpy as np
import pytest
import tifffile

from voxfield.errors import DataError, OptionError
from voxfield.metrics import REPORT_KEYS, compare, format_report, fsc, psnr, ssim


@pytest.fixture(scope="module")
def emd_crop() -> np.ndarray:
    """The shipped 64^3 crop of EMD-3488 (float32, 1.05 Å)."""
    with resources.as_file(resources.files("voxfield") / "data" / "emd_3488_crop64.mrc.gz") as p:
        with mrcfile.open(p) as m:
            return np.array(m.data, dtype=np.float32)


def _noisy(v: np.ndarray, rel: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (v + rel * float(v.std()) * rng.standard_normal(v.shape)).astype(v.dtype)


def test_compare_cryoem_map(emd_crop):
    noisy = _noisy(emd_crop, 0.2)
    nbytes = emd_crop.nbytes // 40
    d = compare(emd_crop, noisy, spacing=1.05, unit="Å", compressed_nbytes=nbytes, contour=0.1)
    assert tuple(d) == REPORT_KEYS
    text = json.dumps(d)
    assert json.loads(text)["shape"] == [64, 64, 64]

    assert d["dtype"] == "float32" and d["n_voxels"] == 64**3
    assert d["data_range"] == pytest.approx(float(emd_crop.max()) - float(emd_crop.min()))
    assert d["psnr_db"] == pytest.approx(psnr(emd_crop, noisy))
    assert 20 < d["psnr_db"] < 60
    # dtype-max convention for float data: peak 65535, tens of dB higher
    assert d["psnr_dtype_max_peak"] == 65535
    assert d["psnr_dtype_max_db"] - d["psnr_db"] == pytest.approx(20 * math.log10(65535 / d["data_range"]))
    assert d["ssim"] == pytest.approx(ssim(emd_crop, noisy))
    assert 0 < d["ssim"] < 1 and d["ssim_mode"] == "3D" and d["ssim_spatial_axes"] == [0, 1, 2]
    assert d["rmse"] == pytest.approx(math.sqrt(d["mse"]))
    assert d["max_abs_error"] >= d["rmse"] >= d["mean_abs_error"] > 0

    assert d["ratio"] == pytest.approx(40, rel=1e-3)
    assert d["bits_per_voxel"] == pytest.approx(32 / 40, rel=1e-3)

    r = fsc(emd_crop, noisy, 1.05)
    assert d["fsc_0.5_A"] == pytest.approx(r.resolution_05.angstrom)
    assert d["fsc_0.143_A"] == pytest.approx(r.resolution_0143.angstrom)
    assert 2.1 <= d["fsc_0.143_A"] <= d["fsc_0.5_A"] < 30
    assert d["fsc_nyquist_A"] == pytest.approx(2.1)
    assert len(d["fsc_curve"]["fsc"]) == 33

    # automatic cryo-EM mode (unit Å, float, both signs)
    assert [b["band"] for b in d["density_bands"]] == ["low", "medium", "high"]
    assert d["density_band_edges"] == pytest.approx([0.35 * emd_crop.max(), 0.75 * emd_crop.max()])
    assert d["density_bands"][2]["median_rel_error_pct"] < d["density_bands"][0]["median_rel_error_pct"]

    assert d["contour"] == 0.1
    assert 0.5 < d["contour_dice"] <= 1 and 0.9 < d["contour_accuracy"] <= 1
    assert d["contour_iou"] <= d["contour_dice"]

    text = format_report(d)
    assert "PSNR" in text and "dtype-max" in text and "65535" in text
    assert "FSC resolution" in text and "Å" in text and "density bands" in text


def test_compare_identical(emd_crop):
    d = compare(emd_crop, emd_crop.copy(), spacing=1.05, unit="A")
    assert d["psnr_db"] == math.inf and d["psnr_dtype_max_db"] == math.inf
    assert d["ssim"] == pytest.approx(1.0)
    assert d["max_abs_error"] == 0.0
    assert d["fsc_0.5_at_least"] is True and d["fsc_0.5_A"] == pytest.approx(2.1)
    json.dumps(d)  # inf is written as Infinity
    assert "inf dB" in format_report(d)
    assert "<= 2.10 Å" in format_report(d)


def test_compare_minimal_keys_are_none():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    d = compare(a, a + 0.01)
    assert tuple(d) == REPORT_KEYS
    for k in ("ratio", "bits_per_voxel", "fsc_0.5_A", "fsc_curve", "density_bands", "contour_dice"):
        assert d[k] is None
    assert d["ssim_mode"] == "2D"
    format_report(d)


def test_cryoem_flag(emd_crop):
    noisy = _noisy(emd_crop, 0.1)
    assert compare(emd_crop, noisy, spacing=1.05, unit="Å", cryoem=False)["density_bands"] is None
    assert compare(emd_crop, noisy)["density_bands"] is None  # no unit: not automatic
    d = compare(emd_crop, noisy, cryoem=True, density_edges=(0.07, 0.15))
    assert d["density_band_edges"] == [0.07, 0.15]
    # spacing without unit: FSC in Å, with a note saying so
    d = compare(emd_crop, noisy, spacing=1.05)
    assert d["fsc_0.5_A"] is not None and any("assumed" in n or "taken" in n for n in d["notes"])
    # nm spacing converts to Å
    d_nm = compare(emd_crop, noisy, spacing=0.105, unit="nm")
    assert d_nm["fsc_0.5_A"] == pytest.approx(d["fsc_0.5_A"])
    # pixels: no physical FSC
    assert compare(emd_crop, noisy, spacing=1.0, unit="px")["fsc_0.5_A"] is None


def test_compare_uint16_mri(fixtures):
    a = tifffile.imread(fixtures / "clesperanto_mini-t1-head.tif")
    assert a.dtype == np.uint16 and a.ndim == 3
    b = _noisy(a.astype(np.float64), 0.05).clip(0, 65535).astype(np.uint16)
    d = compare(a, b, compressed_nbytes=1000)
    assert d["psnr_dtype_max_peak"] == 65535
    rng_ = float(a.max()) - float(a.min())
    assert d["psnr_dtype_max_db"] - d["psnr_db"] == pytest.approx(20 * math.log10(65535 / rng_))
    assert d["density_bands"] is None
    assert d["ratio"] == pytest.approx(a.nbytes / 1000)


def test_compare_multichannel_volume():
    rng = np.random.default_rng(2)
    a = rng.random((2, 16, 16, 16)).astype(np.float32)  # CZYX
    b = a + np.float32(0.05) * rng.standard_normal(a.shape).astype(np.float32)
    d = compare(a, b, spacing=(0.3, 0.1, 0.1), unit="µm")
    assert d["ssim_mode"] == "3D per slice" and d["ssim_spatial_axes"] == [1, 2, 3]
    assert d["fsc_0.5_A"] is None and any("FSC skipped" in n for n in d["notes"])
    json.dumps(d)


def test_too_small_for_ssim_is_noted():
    a = np.arange(16.0).reshape(4, 4)
    d = compare(a, a + 0.5)
    assert d["ssim"] is None and any("ssim" in n for n in d["notes"])
    assert d["psnr_db"] == pytest.approx(20 * math.log10(15 / 0.5))


def test_compare_errors(emd_crop):
    with pytest.raises(DataError, match=r"\(64, 64, 64\).*\(64, 64, 63\)"):
        compare(emd_crop, emd_crop[:, :, :63])
    bad = emd_crop.copy()
    bad[3, 3, 3] = np.inf
    with pytest.raises(DataError, match="non-finite"):
        compare(emd_crop, bad)
    with pytest.raises(DataError, match="empty"):
        compare(np.zeros((0, 4)), np.zeros((0, 4)))
    with pytest.raises(OptionError):
        compare(emd_crop, emd_crop, spacing=(1.0, 1.0))
    with pytest.raises(OptionError):
        compare(emd_crop, emd_crop, compressed_nbytes=0)


def test_fsc_only_for_molecular_units_unless_forced():
    rng = np.random.default_rng(3)
    a = rng.random((20, 20, 20))
    b = a + 0.1 * rng.random((20, 20, 20))
    um = compare(a, b, spacing=(0.3, 0.1, 0.1), unit="µm")
    assert um["fsc_0.5_A"] is None and any("FSC skipped" in n for n in um["notes"])
    forced = compare(a, b, spacing=(0.3, 0.1, 0.1), unit="µm", fsc_mode=True)
    assert forced["fsc_0.5_A"] is not None
    nm = compare(a, b, spacing=1.0, unit="nm")
    assert nm["fsc_0.5_A"] is not None and nm["fsc_nyquist_A"] == pytest.approx(20.0)
    off = compare(a, b, spacing=1.0, unit="Å", fsc_mode=False)
    assert off["fsc_0.5_A"] is None
