"""Cryo-EM quality report: contour mask, automatic contour, masked PSNR, FSC >= 0.9, CC_mask."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.fft
from conftest import shared_file
from scipy import ndimage

from voxfield.errors import DataError, FormatError, OptionError
from voxfield.metrics import (
    CRYOEM_REPORT_KEYS,
    ModelMapMismatchWarning,
    atom_mask,
    auto_contour,
    auto_contour_info,
    cc_mask,
    contour_mask,
    cryoem_report,
    dice,
    format_cryoem_report,
    load_model,
    simulate_model_map,
)

APIX = 1.05


def _blob_parts(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 'molecule' (two touching Gaussian blobs, peak ~1) and weak smooth noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((n, n, n), dtype=np.float64)
    c = n / 2
    mol = np.exp(-((z - c) ** 2 + (y - c) ** 2 + (x - c + 4) ** 2) / (2 * 4.0**2))
    mol += 0.8 * np.exp(-((z - c) ** 2 + (y - c) ** 2 + (x - c - 5) ** 2) / (2 * 3.5**2))
    noise = ndimage.gaussian_filter(rng.normal(size=(n, n, n)), 1.5)
    noise *= 0.03 / noise.std()
    return mol, noise


def _blob_map(n: int = 40, seed: int = 0) -> np.ndarray:
    """Molecule plus noise, with negative values, like an EMDB map."""
    mol, noise = _blob_parts(n, seed)
    return (mol + noise).astype(np.float32)


def _lowpass(a: np.ndarray, spacing: float, cutoff_a: float) -> np.ndarray:
    """Hard spherical cutoff at ``cutoff_a`` Å."""
    f = scipy.fft.rfftn(a.astype(np.float64))
    kz = np.fft.fftfreq(a.shape[0], spacing)[:, None, None]
    ky = np.fft.fftfreq(a.shape[1], spacing)[None, :, None]
    kx = np.fft.rfftfreq(a.shape[2], spacing)[None, None, :]
    f[np.sqrt(kz**2 + ky**2 + kx**2) > 1.0 / cutoff_a] = 0
    return scipy.fft.irfftn(f, s=a.shape)


def _pdb(atoms: list[tuple[str, float, float, float]]) -> str:
    lines = []
    for i, (el, x, y, z) in enumerate(atoms, start=1):
        name = f" {el:<3}"
        lines.append(
            f"ATOM  {i:5d} {name} ALA A{i:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00          {el:>2}"
        )
    lines.append("END")
    return "\n".join(lines) + "\n"


def _structure(atoms):
    gemmi = pytest.importorskip("gemmi")
    return gemmi.read_pdb_string(_pdb(atoms))


# ----------------------------------------------------------------------------- contour


def test_contour_mask_and_empty_mask_error():
    a = _blob_map(24)
    m = contour_mask(a, 0.5)
    assert m.dtype == bool and m.sum() == int((a > 0.5).sum()) > 0
    with pytest.raises(DataError, match="at or above the map maximum"):
        contour_mask(a, float(a.max()))
    with pytest.raises(DataError, match="empty"):
        cryoem_report(a, a, APIX, contour=float(a.max()) + 1)


def test_auto_contour_joins_the_molecule():
    mol, noise = _blob_parts()
    a = (mol + noise).astype(np.float32)
    info = auto_contour_info(a, APIX)
    assert info.rule == "connected"
    assert info.largest_fraction >= 0.9
    assert 0.0 < info.level < float(a.max())
    # the mask is the molecule: compare with the noiseless blobs thresholded at the same level
    assert dice(a > info.level, mol > info.level) > 0.9
    assert auto_contour(a, APIX) == pytest.approx(info.level)


def test_auto_contour_fallback_and_no_positive_density():
    # many separate equal peaks: no level has one region with 90 % of the mask
    a = np.zeros((30, 30, 30), np.float32)
    a[5::8, 5::8, 5::8] = 1.0
    a = ndimage.gaussian_filter(a, 1.0, truncate=2.0)  # separate bodies, zeros between
    info = auto_contour_info(a, 5.0)
    assert info.rule == "mean+3sd"
    assert info.mask_voxels > 0
    with pytest.raises(DataError, match="no positive density"):
        auto_contour(-np.abs(_blob_map(16)) - 0.1)


def test_auto_contour_on_emd_3488_matches_the_deposited_mask():
    mrcfile = pytest.importorskip("mrcfile")
    d = mrcfile.read(shared_file("cryoem_maps/emd_3488.mrc"))
    ref = mrcfile.read(shared_file("cryoem_maps/emd_3488_contour_mask.mrc")) > 0.5  # (100, 91, 91)
    level = auto_contour(d, APIX)
    assert 0.07 < level < 0.095
    assert dice(d[:, :91, :91] > level, ref) > 0.9  # measured 0.918 (level 0.0846)


# ----------------------------------------------------------------------------- report


def test_report_is_json_and_complete():
    a = _blob_map(32)
    b = a + np.random.default_rng(1).normal(0, 0.01, a.shape).astype(np.float32)
    d = cryoem_report(a, b, APIX, resolution=4.0)
    assert set(d) == set(CRYOEM_REPORT_KEYS)
    text = json.dumps(d)
    assert json.loads(text)["shape"] == [32, 32, 32]
    assert d["contour_source"].startswith("auto")
    assert d["density_band_rule"].startswith("paper")
    assert d["fsc_at_resolution"] is not None and d["fsc_0.9_to_resolution"] in (True, False)
    assert d["model"] is None and d["cc_mask_original"] is None
    s = format_cryoem_report(d)
    assert "| Density region | Mean Error (%) | Median Error (%) | Points within 20% Error (%) |" in s
    assert "PSNR inside contour mask" in s and "FSC >= 0.9 out to" in s


def test_band_edges_rules():
    a = _blob_map(24)
    assert cryoem_report(a, a, APIX, contour=0.2)["density_band_edges"] == pytest.approx([0.2, 0.4])
    d = cryoem_report(a, a, APIX, contour=0.2, band_edges=(0.1, 0.3))
    assert d["density_band_edges"] == pytest.approx([0.1, 0.3]) and d["density_band_rule"] == "given edges"
    vmax = float(a.max())
    d = cryoem_report(a, a, APIX)  # automatic contour: paper-scaled edges
    assert d["density_band_edges"] == pytest.approx([0.35 * vmax, 0.75 * vmax])


def test_masked_and_whole_box_psnr():
    a = _blob_map(32)
    level = 0.3
    inside = a > level
    noise = np.random.default_rng(2).normal(0, 0.02, a.shape).astype(np.float32)
    # errors only outside the mask: the masked PSNR is infinite, the whole-box one finite
    d = cryoem_report(a, np.where(inside, a, a + noise), APIX, contour=level)
    assert d["psnr_mask_db"] == math.inf
    assert math.isfinite(d["psnr_box_db"])
    # errors only inside: same peak, MSE over the mask = MSE over the box / mask fraction
    d = cryoem_report(a, np.where(inside, a + noise, a), APIX, contour=level)
    frac = inside.mean()
    assert d["psnr_mask_db"] == pytest.approx(d["psnr_box_db"] + 10 * math.log10(frac), abs=1e-6)
    assert d["psnr_mask_db"] < d["psnr_box_db"]
    assert d["psnr_peak"] == pytest.approx(float(a.max()) - float(a.min()))


def test_fsc_09_identical_and_lowpassed():
    a = _blob_map(40) + np.random.default_rng(3).normal(0, 0.05, (40, 40, 40)).astype(np.float32)
    d = cryoem_report(a, a.copy(), APIX, resolution=3.2)
    assert d["fsc_0.9_at_least"] is True
    assert d["fsc_0.9_A"] == pytest.approx(2 * APIX)  # Nyquist-limited
    assert d["fsc_0.9_to_resolution"] is True and d["fsc_at_resolution"] == pytest.approx(1.0)

    lp = _lowpass(a, APIX, 6.0)
    d = cryoem_report(a, lp, APIX, resolution=3.2)
    assert d["fsc_0.9_at_least"] is False
    assert 5.8 <= d["fsc_0.9_A"] <= 7.0
    assert d["fsc_0.9_to_resolution"] is False and d["fsc_at_resolution"] < 0.1
    d = cryoem_report(a, lp, APIX, resolution=8.0)
    assert d["fsc_0.9_to_resolution"] is True


def test_input_errors():
    a = _blob_map(16)
    with pytest.raises(DataError, match="--apix"):
        cryoem_report(a, a, 0.0)
    with pytest.raises(DataError, match="--apix"):
        cryoem_report(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(DataError, match="shapes differ"):
        cryoem_report(a, a[:-1], APIX)
    with pytest.raises(DataError, match="3-D"):
        cryoem_report(a[0], a[0], APIX)
    st = _structure([("C", 8.0, 8.0, 8.0)])
    with pytest.raises(OptionError, match="resolution"):
        cryoem_report(a, a, APIX, model=st)


# ----------------------------------------------------------------------------- model


def test_load_model_errors(tmp_path):
    with pytest.raises(FormatError, match="not found"):
        load_model(tmp_path / "missing.pdb")
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a model\n")
    with pytest.raises(FormatError):
        load_model(bad)
    good = tmp_path / "one.pdb"
    good.write_text(_pdb([("C", 1.0, 2.0, 3.0)]))
    assert load_model(good)[0].count_atom_sites() == 1


def test_simulated_map_honours_the_origin():
    # one sulphur atom at (x, y, z) = (210.0, 240.3, 170.1) Å in a box whose origin is far from 0
    origin = (150.0, 220.0, 200.0)  # (z, y, x) Å of voxel (0, 0, 0)
    st = _structure([("S", 210.0, 240.3, 170.1)])
    m = simulate_model_map(st, (24, 26, 28), APIX, origin, 3.0)
    assert m.shape == (24, 26, 28) and m.dtype == np.float32
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    want = np.rint((np.array([170.1, 240.3, 210.0]) - origin) / APIX)
    assert tuple(int(v) for v in peak) == tuple(int(v) for v in want)
    # without the origin the atom is outside the box: nothing but ringing-free zeros
    assert np.abs(simulate_model_map(st, (24, 26, 28), APIX, None, 3.0)).max() < 1e-6 * m.max()
    mask = atom_mask(np.array([[170.1, 240.3, 210.0]]), (24, 26, 28), APIX, origin, 2.0)
    assert mask[tuple(int(v) for v in want)] and 10 < mask.sum() < 40  # 4/3 pi 2^3 / 1.05^3 ~ 29


def test_cc_mask_synthetic_and_mismatch_warning():
    atoms = [("C", 10.0 + 1.5 * i, 12.0 + (i % 3), 11.0 + (i % 5)) for i in range(10)]
    st = _structure(atoms)
    shape, res = (24, 24, 32), 3.0
    m = simulate_model_map(st, shape, APIX, None, res)
    r = cc_mask(m, st, APIX, resolution=res)
    assert r.cc_mask[0] == pytest.approx(1.0) and r.n_atoms_in_box == 10 and not r.warnings
    shifted = np.roll(m, 6, axis=2)
    with pytest.warns(ModelMapMismatchWarning, match=r"CC_mask = -?0\.\d+"):
        r = cc_mask(shifted, st, APIX, resolution=res)
    assert r.cc_mask[0] < 0.2


def test_cc_mask_emd_3488_5ni1():
    mrcfile = pytest.importorskip("mrcfile")
    d = mrcfile.read(shared_file("cryoem_maps/emd_3488.mrc"))
    model = shared_file("atomic_models/5ni1_updated.cif")
    rep = cryoem_report(d, d.copy(), APIX, origin=(0.0, 0.0, 0.0), model=str(model), resolution=3.2)
    assert rep["cc_mask_original"] == pytest.approx(0.875, abs=0.02)  # measured 0.876
    assert rep["cc_mask_result"] == rep["cc_mask_original"]
    assert rep["model_atoms"] == rep["model_atoms_in_box"] == 4579
    assert rep["cc_mask_radius_A"] == 2.0
    json.dumps(rep)
    assert "CC_mask" in format_cryoem_report(rep)


def test_origin_handling_emd_21457_segment():
    from voxfield.io import read_volume

    vol = read_volume(shared_file("cryoem_maps/emd_21457_seg.mrc"))
    st = load_model(shared_file("atomic_models/6vyb_Ndom.pdb"))
    d = np.asarray(vol.data)
    assert min(vol.origin) > 150  # header ORIGIN, not nstart
    good = cc_mask(d, st, vol.spacing, resolution=3.2, origin=vol.origin)
    # measured 0.469: the segment is thresholded at 0.18 (half of the atom mask is 0 in it)
    assert good.cc_mask[0] > 0.4 and good.n_atoms_in_box > 0.99 * good.n_atoms
    with pytest.warns(ModelMapMismatchWarning, match="CC_mask"):
        bad = cc_mask(d, st, vol.spacing, resolution=3.2, origin=np.add(vol.origin, 5.0))
    assert bad.cc_mask[0] < 0.2
    with pytest.warns(ModelMapMismatchWarning, match="0 of 1615 atoms inside the box"):
        cc_mask(d, st, vol.spacing, resolution=3.2, origin=None)  # ORIGIN ignored, as gemmi does


# ----------------------------------------------------------------------------- mass contour
def test_mass_contour_encloses_the_volume_of_the_mass() -> None:
    from voxfield.metrics.cryoem import PROTEIN_DA_PER_A3, mass_contour

    rng = np.random.default_rng(0)
    m = rng.normal(0, 0.05, size=(40, 40, 40)).astype(np.float32)
    m[10:20, 10:20, 10:20] += 1.0  # 1000 voxels of 1.05^3 Å^3
    kda = 1000 * APIX**3 * PROTEIN_DA_PER_A3 / 1000
    lev = mass_contour(m, APIX, kda)
    assert int((m > lev).sum()) == 1000
    assert 0.5 < lev < 1.0
    with pytest.raises(OptionError):
        mass_contour(m, APIX, -3)
    with pytest.raises(OptionError, match="does not fit"):
        mass_contour(m, APIX, 1e6)


def test_mismatch_cc_falls_with_resolution_and_model_mass() -> None:
    from voxfield.metrics.map_model import MISMATCH_CC, MISMATCH_CC_FLOOR, mismatch_cc_for, model_mass_kda

    assert mismatch_cc_for(3.2) == MISMATCH_CC == mismatch_cc_for(6.0)
    assert mismatch_cc_for(15.0) < 0.112 < mismatch_cc_for(10.0)  # the correctly placed actin subunit at 15 Å
    assert mismatch_cc_for(25.0) == pytest.approx(MISMATCH_CC_FLOOR)
    st = load_model(shared_file("atomic_models/6vyb_Ndom.pdb"))
    heavy = sum(1 for ch in st[0] for r in ch for a in r if a.element.name != "H")
    kda = model_mass_kda(st)
    # about 110 Da per residue, 7-8 heavy atoms per residue
    assert 13.0 * heavy / 1000 < kda < 16.5 * heavy / 1000

