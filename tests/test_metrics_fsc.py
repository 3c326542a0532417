"""Fourier shell correlation: shells by physical frequency, resolution, edge cases."""

from __future__ import annotations

import json
import math
from importlib import resources

import mrcfile
import numpy as np
import pytest
from conftest import shared_file

from voxfield.errors import DataError, OptionError
from voxfield.metrics import fsc


@pytest.fixture(scope="module")
def emd_crop() -> np.ndarray:
    """The shipped 64^3 crop of EMD-3488 (float32, 1.05 Å)."""
    with resources.as_file(resources.files("voxfield") / "data" / "emd_3488_crop64.mrc.gz") as p:
        with mrcfile.open(p) as m:
            return np.array(m.data, dtype=np.float32)


def _kgrid(shape, spacing):
    g = np.meshgrid(*[np.fft.fftfreq(n, d=s) for n, s in zip(shape, spacing)], indexing="ij")
    return np.sqrt(sum(x**2 for x in g))


def lowpass(v: np.ndarray, spacing, cutoff_A: float) -> np.ndarray:
    """Hard spherical cutoff at ``cutoff_A`` Å in physical frequency."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    f = np.fft.fftn(v)
    f[_kgrid(v.shape, spacing) > 1.0 / cutoff_A] = 0
    return np.fft.ifftn(f).real


def reference_fsc(a, b, spacing):
    """Plain full-spectrum FSC with the documented shells (for checking the rfft path)."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    dk = 1.0 / min(n * s for n, s in zip(a.shape, spacing))
    nsh = int(math.floor(min(1 / (2 * s) for s in spacing) / dk + 1e-9)) + 1
    shell = np.rint(_kgrid(a.shape, spacing) / dk).astype(int)
    keep = shell < nsh
    s = shell[keep]
    num = np.bincount(s, (fa * fb.conj()).real[keep], nsh)
    pa = np.bincount(s, (np.abs(fa) ** 2)[keep], nsh)
    pb = np.bincount(s, (np.abs(fb) ** 2)[keep], nsh)
    return num / np.sqrt(pa * pb), np.bincount(s, minlength=nsh)


def test_self_fsc_is_one_and_nyquist(emd_crop):
    r = fsc(emd_crop, emd_crop, 1.05)
    assert np.allclose(r.fsc, 1.0)
    for res in (r.resolution_05, r.resolution_0143, r.resolution_at(0.9)):
        assert res.at_least
        assert res.angstrom == pytest.approx(2.1)  # Nyquist = 2 x 1.05 Å
    assert r.nyquist_angstrom == pytest.approx(2.1)
    assert r.frequency[0] == 0 and r.frequency[-1] == pytest.approx(1 / 2.1)
    assert len(r.fsc) == 33  # shells 0..32 for a 64^3 box


def test_matches_full_spectrum_reference():
    rng = np.random.default_rng(0)
    for shape, sp in (((16, 16, 16), 1.0), ((12, 15, 17), (1.0, 1.3, 0.8)), ((10, 14, 20), (2.0, 1.0, 1.0))):
        a = rng.standard_normal(shape)
        b = a + rng.standard_normal(shape)
        r = fsc(a, b, sp)
        ref, counts = reference_fsc(a, b, sp)
        assert np.allclose(r.fsc, ref, atol=1e-12)
        assert np.array_equal(r.n_voxels, counts)  # half-spectrum weighting counts each voxel once


def test_white_noise_makes_fsc_fall(emd_crop):
    rng = np.random.default_rng(1)
    noisy = emd_crop + 3 * emd_crop.std() * rng.standard_normal(emd_crop.shape)
    r = fsc(emd_crop, noisy, 1.05)
    assert r.fsc[1] > 0.9
    assert r.fsc[-5:].max() < 0.1  # the map's high-frequency power is drowned
    res = r.resolution_05
    assert not res.at_least and 3.0 < res.angstrom < 20
    assert r.resolution_0143.angstrom < res.angstrom


def test_lowpass_6A_crosses_half_at_6A(emd_crop):
    lp = lowpass(emd_crop, 1.05, 6.0)
    r = fsc(emd_crop, lp, 1.05)
    f05 = 1 / r.resolution_05.angstrom
    assert abs(f05 - 1 / 6.0) <= r.shell_width  # within one shell
    assert r.resolution_05.angstrom == pytest.approx(6.0, abs=0.25)
    # beyond the cutoff the low-passed map holds only round-off: FSC ~ 0
    assert np.all(np.abs(r.fsc[r.frequency > 1 / 6.0 + r.shell_width]) < 0.1)
    assert r.fsc_at_resolution(8.0) == pytest.approx(1.0)
    assert r.fsc_at_resolution(4.0) == pytest.approx(0.0, abs=0.1)
    with pytest.raises(OptionError, match="Nyquist"):
        r.fsc_at_resolution(2.0)


def test_anisotropic_spacing_and_non_cubic_box():
    # smooth random blob on a non-cubic grid with anisotropic voxels
    rng = np.random.default_rng(2)
    shape, sp = (40, 56, 72), (2.0, 1.2, 1.0)
    v = lowpass(rng.standard_normal(shape), sp, 4.5)
    r = fsc(v, lowpass(v, sp, 8.0), sp)
    assert r.shell_width == pytest.approx(1 / min(40 * 2.0, 56 * 1.2, 72 * 1.0))
    # last shell: the last centre at or below the isotropic Nyquist 1 / (2 x 2.0 Å)
    assert 0.25 - r.shell_width < 1 / r.nyquist_angstrom <= 0.25
    assert abs(1 / r.resolution_05.angstrom - 1 / 8.0) <= r.shell_width
    # physical binning: FSC vs the same map on swapped axes (with swapped spacing) is identical
    r2 = fsc(np.transpose(v, (2, 1, 0)), np.transpose(lowpass(v, sp, 8.0), (2, 1, 0)), sp[::-1])
    signal = r.frequency < 1 / 8.0 - r.shell_width  # beyond: round-off only
    assert np.allclose(r2.fsc[signal], r.fsc[signal], atol=1e-9)
    assert np.array_equal(r2.n_voxels, r.n_voxels)


def test_real_anisotropic_map(fixtures):
    # EMD-3001 (MicroED): 25 x 43 x 73 with voxels of 0.45, 0.39, 0.46 Å
    with mrcfile.open(fixtures / "emd_3001.map.gz") as m:
        v = np.array(m.data, dtype=np.float64)
        vs = m.voxel_size
        sp = (float(vs.z), float(vs.y), float(vs.x))
    if v.shape != (25, 43, 73):  # header order differs: use a fixed anisotropic spacing
        sp = (0.4482, 0.3925, 0.4587)
    r = fsc(v, lowpass(v, sp, 2.0), sp)
    assert abs(1 / r.resolution_05.angstrom - 0.5) <= r.shell_width
    assert r.resolution_at(0.9).angstrom >= r.resolution_05.angstrom


def test_scale_and_sign():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((16, 16, 16))
    assert np.allclose(fsc(a, 3 * a, 1.0).fsc, 1.0)
    neg = fsc(a, -a, 1.0)
    assert np.allclose(neg.fsc, -1.0)
    assert math.isinf(neg.resolution_05.angstrom) and not neg.resolution_05.at_least


def test_zero_maps_are_defined():
    z = np.zeros((8, 8, 8), dtype=np.float32)
    a = np.random.default_rng(4).standard_normal((8, 8, 8))
    with np.errstate(all="raise"):
        both = fsc(z, z, 1.0)
        one = fsc(a, z, 1.0)
    assert np.all(both.fsc == 1.0) and both.resolution_05.at_least
    assert np.all(one.fsc == 0.0) and math.isinf(one.resolution_0143.angstrom)


def test_mask_multiplies_both_maps():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((16, 16, 16))
    b = a + rng.standard_normal(a.shape)
    m = np.zeros(a.shape)
    m[4:12, 4:12, 4:12] = 1.0
    assert np.allclose(fsc(a, b, 1.0, mask=m).fsc, fsc(a * m, b * m, 1.0).fsc)
    with pytest.raises(DataError, match="mask"):
        fsc(a, b, 1.0, mask=m[:8])


def test_to_dict_is_json():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((12, 12, 12))
    d = fsc(a, a + rng.standard_normal(a.shape), 1.5).to_dict()
    json.dumps(d)
    assert len(d["fsc"]) == len(d["frequency_per_A"]) == len(d["n_voxels"]) == 7
    assert set(d) >= {"resolution_0.5_A", "resolution_0.143_A", "resolution_0.5_at_least", "nyquist_A"}


def test_interpolation_between_shells():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((32, 32, 32))
    # noise whose amplitude grows with frequency: FSC falls smoothly
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(32)] * 3, indexing="ij")))
    noise = np.fft.ifftn(np.fft.fftn(rng.standard_normal(a.shape)) * 4 * k).real
    r = fsc(a, a + noise, 1.0)
    res = r.resolution_at(0.5)
    j = int(np.nonzero(r.fsc[1:] < 0.5)[0][0]) + 1
    f = 1 / res.angstrom
    assert r.frequency[j - 1] <= f <= r.frequency[j]
    assert r.fsc_at_resolution(res.angstrom) == pytest.approx(0.5)


def test_errors():
    a = np.zeros((8, 8, 8))
    with pytest.raises(DataError, match="3-D"):
        fsc(np.zeros((8, 8)), np.zeros((8, 8)), 1.0)
    with pytest.raises(DataError, match=r"\(8, 8, 8\).*\(8, 8, 9\)"):
        fsc(a, np.zeros((8, 8, 9)), 1.0)
    with pytest.raises(OptionError):
        fsc(a, a, 0.0)
    with pytest.raises(OptionError):
        fsc(a, a, (1.0, 1.0))
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fsc(a, bad, 1.0)


def test_full_emd_3488_lowpass():
    path = shared_file("cryoem_maps/emd_3488.mrc")
    with mrcfile.open(path) as m:
        v = np.array(m.data, dtype=np.float32)
    r = fsc(v, lowpass(v, 1.05, 4.0), 1.05)
    assert abs(1 / r.resolution_05.angstrom - 0.25) <= r.shell_width
