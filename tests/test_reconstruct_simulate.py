"""Projection conventions (against cryoDRGN's test data) and the heterogeneous particle simulator."""

from __future__ import annotations

import json
import math
import pickle
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxfield.errors import DataError
from voxfield.reconstruct.ctf import compute_ctf, ctf_from_table, half_grid_freqs, wavelength
from voxfield.reconstruct.projection import FourierProjector, image_from_ft, image_ft, project, project_fourier
from voxfield.reconstruct.simulate import (
    check_same_atoms,
    interpolate_atoms,
    read_model,
    simulate_adk,
    simulate_dataset,
    superpose,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SYN = DATA / "particles" / "synthetic"
ADK = DATA / "atomic_models" / "conformations"

needs_syn = pytest.mark.skipif(not (SYN / "toy_projections.mrcs").exists(), reason="shared test data absent")
needs_adk = pytest.mark.skipif(not (ADK / "adk_open.pdb").exists(), reason="shared AdK models absent")


def _mrc(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True) as m:
            return np.array(m.data, dtype=np.float64)


def _pkl(path: Path):
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _smooth_volume(D: int = 32, seed: int = 0) -> np.ndarray:
    """A band-limited blobby volume inside the sphere of radius D/3."""
    rng = np.random.default_rng(seed)
    ax = np.arange(D) - D // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    v = np.zeros((D, D, D))
    for _ in range(12):
        c = rng.uniform(-D / 5, D / 5, 3)
        v += rng.uniform(0.5, 1.5) * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * 2.0**2))
    return v.astype(np.float32)


def _random_rot(n: int, seed: int) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=np.random.default_rng(seed)).as_matrix()


# ---------------------------------------------------------------------- projection convention


@needs_syn
def test_project_reproduces_cryodrgn_toy_projections():
    vol = _mrc(SYN / "toymodel_small_nocenter.mrc")
    imgs = _mrc(SYN / "toy_projections.mrcs")
    rot, _trans = _pkl(SYN / "toy_rot_trans.pkl")
    n = 60
    ours = project(vol, rot[:n])
    corr = [_corr(a, b) for a, b in zip(ours, imgs[:n])]
    assert min(corr) > 0.9999
    # same scale, not just correlated: the images are plain sums along the beam
    np.testing.assert_allclose(ours, imgs[:n], atol=1e-4 * imgs.max())
    # the other matrix convention (R instead of R^T) does not fit
    wrong = project(vol, np.transpose(rot[:n], (0, 2, 1)))
    assert np.median([_corr(a, b) for a, b in zip(wrong, imgs[:n])]) < 0.9


def _line_profile(img: np.ndarray, u: np.ndarray) -> np.ndarray:
    D = img.shape[0]
    ax = np.arange(D) - D / 2
    y, x = np.meshgrid(ax, ax, indexing="ij")
    s = (x * u[0] + y * u[1]).ravel() + D
    b = np.floor(s).astype(int)
    f = s - b
    return np.bincount(b, img.ravel() * (1 - f), minlength=2 * D + 2) + np.bincount(
        b + 1, img.ravel() * f, minlength=2 * D + 2
    )


def _common_line_corr(Ri: np.ndarray, Rj: np.ndarray, img_i: np.ndarray, img_j: np.ndarray) -> float:
    """Projection convention p = R^T r: image plane of R in the volume frame is spanned by
    R^T e_x, R^T e_y, its normal is R^T e_z = R[2]. Both images, projected onto their common
    line, give the same 1-D projection of the volume."""
    n = np.cross(Ri[2], Rj[2])
    n /= np.linalg.norm(n)
    return _corr(_line_profile(img_i, (Ri @ n)[:2]), _line_profile(img_j, (Rj @ n)[:2]))


@needs_syn
def test_hand_images_obey_the_rotation_convention_by_common_lines():
    imgs = _mrc(SYN / "hand.mrcs")
    rot = _pkl(SYN / "hand_rot.pkl").astype(np.float64)
    pairs = [(i, j) for i, j in np.random.default_rng(0).integers(0, len(imgs), (40, 2)) if i != j]
    good = [_common_line_corr(rot[i], rot[j], imgs[i], imgs[j]) for i, j in pairs]
    rt = np.transpose(rot, (0, 2, 1))
    bad = [_common_line_corr(rt[i], rt[j], imgs[i], imgs[j]) for i, j in pairs]
    assert min(good) > 0.99 and np.median(good) > 0.999
    assert np.median(bad) < 0.97


def test_shift_sign_matches_cryodrgn_hartley_recentring():
    """cryoDRGN centres a data image by H'(k) = cos(2πk·t) H(k) + sin(2πk·t) H(−k) with its pose
    shift t; applied to our shifted projection it must give back the unshifted one."""
    D = 32
    v = _smooth_volume(D)
    rot = _random_rot(3, 1)
    t = np.array([[2.5, -1.25], [-3.0, 0.5], [1.0, 3.5]])
    shifted = project(v, rot, t)
    centred = project(v, rot)
    k = (np.arange(D) - D // 2) / D  # fftshifted frequency of index i
    ky, kx = np.meshgrid(k, k, indexing="ij")
    neg = (-np.arange(D)) % D  # index of -k
    for sign, expect_good in ((1.0, True), (-1.0, False)):
        for img, ref, tt in zip(shifted, centred, t):
            F = np.fft.fftshift(np.fft.fft2(np.fft.fftshift(img)))
            H = F.real - F.imag
            arg = 2 * np.pi * (kx * tt[0] + ky * tt[1]) * sign
            H2 = np.cos(arg) * H + np.sin(arg) * H[np.ix_(neg, neg)]
            G = np.fft.fftshift(np.fft.fft2(np.fft.fftshift(H2))) / D**2
            back = G.real - G.imag
            err = np.sqrt(np.mean((back - ref) ** 2) / np.mean(ref**2))
            assert (err < 0.02) if expect_good else (err > 0.3)


def test_fourier_projector_matches_real_space_projector():
    D = 32
    v = _smooth_volume(D, seed=3)
    rot = _random_rot(8, 2)
    t = np.random.default_rng(4).uniform(-2, 2, (8, 2))
    a = project(v, rot, t)
    b = project_fourier(v, rot, t)
    assert min(_corr(x, y) for x, y in zip(a, b)) > 0.998
    assert abs(a.sum() / b.sum() - 1) < 0.05
    # the Fourier slice is the transform of the projection: axis-aligned pose, exact grid points
    eye = np.eye(3)[None]
    fp = FourierProjector(v, pad=2)
    ref = image_ft(v.sum(0))
    got = fp.slices(eye)[0]
    inside = np.abs(got) > 0
    assert np.corrcoef(np.abs(got[inside]), np.abs(ref[inside]))[0, 1] > 0.999
    np.testing.assert_allclose(image_from_ft(image_ft(v.sum(0)), D), v.sum(0), atol=1e-3)


def test_oversampled_projection_is_close_to_plain():
    v = _smooth_volume(32, seed=5)
    rot = _random_rot(3, 6)
    a, b = project(v, rot), project(v, rot, oversample=2)
    assert min(_corr(x, y) for x, y in zip(a, b)) > 0.999
    assert abs(a.sum() / b.sum() - 1) < 0.01


def test_ctf_is_cryodrgns():
    """cryoDRGN: CTF = sqrt(1 − w²) sin γ − w cos γ, γ = 2π(−½ Δf λ s² + ¼ Cs λ³ s⁴) − phase."""
    s = np.linspace(0, 0.3, 31)
    ang = np.deg2rad(20.0)
    freqs = np.stack([s * np.cos(ang), s * np.sin(ang)], -1)
    dfu, dfv, dfang, kv, cs, w = 15000.0, 14000.0, 35.0, 300.0, 2.7, 0.1
    lam = wavelength(kv)
    df = 0.5 * (dfu + dfv) + 0.5 * (dfu - dfv) * np.cos(2 * (ang - np.deg2rad(dfang)))
    gamma = 2 * np.pi * (-0.5 * df * lam * s**2 + 0.25 * cs * 1e7 * lam**3 * s**4)
    expected = np.sqrt(1 - w * w) * np.sin(gamma) - w * np.cos(gamma)
    np.testing.assert_allclose(compute_ctf(freqs, dfu, dfv, dfang, kv, cs, w), expected, atol=1e-9)


# --------------------------------------------------------------------------------- simulator

SIM = dict(n_images=50, D=32, apix=3.0, resolution=8.0, n_states=5, defocus=(10000.0, 20000.0), chunk=16)


@pytest.fixture(scope="module")
def adk_models():
    if not (ADK / "adk_open.pdb").exists():
        pytest.skip("shared AdK models absent")
    return [read_model(ADK / "adk_closed.pdb")[0], read_model(ADK / "adk_open.pdb")[0]]


@pytest.fixture(scope="module")
def sims(tmp_path_factory, adk_models):
    root = tmp_path_factory.mktemp("sim")
    noisy = simulate_adk(root / "noisy", ADK / "adk_closed.pdb", ADK / "adk_open.pdb", snr=0.1, seed=7, **SIM)
    clean = simulate_dataset(root / "clean", adk_models, snr=None, seed=7, **SIM)
    again = simulate_dataset(root / "again", adk_models, snr=0.1, seed=7, **{**SIM, "chunk": 7})
    other = simulate_dataset(root / "other", adk_models, snr=0.1, seed=8, **SIM)
    return noisy, clean, again, other


def test_simulator_writes_consistent_files(sims):
    from voxfield.reconstruct.star_io import read_star

    res = sims[0]
    n, D = SIM["n_images"], SIM["D"]
    for p in (res.particles, res.star, res.poses, res.ctf, res.labels, res.meta):
        assert p.is_file(), p
    with mrcfile.open(res.particles) as m:
        assert m.data.shape == (n, D, D) and m.data.dtype == np.float32
        assert m.voxel_size.x == pytest.approx(SIM["apix"])
        assert m.header.ispg == 0
    parts, optics, _ = read_star(res.star)
    assert len(parts) == n
    assert float(optics["rlnImagePixelSize"].iloc[0]) == pytest.approx(SIM["apix"])
    rot, trans = _pkl(res.poses)
    ctf = _pkl(res.ctf)
    assert rot.shape == (n, 3, 3) and trans.shape == (n, 2) and ctf.shape == (n, 9)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", rot, rot), np.broadcast_to(np.eye(3), (n, 3, 3)), atol=1e-5)
    assert np.abs(trans).max() <= 2.0 / D + 1e-6 and np.abs(trans).max() > 0.5 / D  # fractions of the box
    assert np.all(ctf[:, 0] == D) and np.allclose(ctf[:, 1], SIM["apix"])
    assert np.all((ctf[:, 2] >= ctf[:, 3]) & (ctf[:, 3] > 9000) & (ctf[:, 2] < 21000))
    np.testing.assert_allclose(ctf[:, 5:8], np.broadcast_to([300.0, 2.7, 0.1], (n, 3)), rtol=1e-6)
    lab = np.load(res.labels)
    state, t, t_states = lab["state"], lab["t"], lab["t_states"]
    assert state.shape == (n,) and state.min() >= 0 and state.max() < SIM["n_states"]
    assert len(np.unique(state)) > 1
    np.testing.assert_allclose(t, t_states[state])
    assert np.all(np.diff(t_states) > 0) and t_states[0] == 0 and t_states[-1] == 1
    np.testing.assert_array_equal(parts["vfTrueState"].to_numpy().astype(int), state)
    np.testing.assert_allclose(parts["vfTrueT"].to_numpy().astype(float), t, atol=1e-6)
    # STAR shifts are the pickle's shifts in Å
    np.testing.assert_allclose(parts["rlnOriginXAngst"].to_numpy(float), trans[:, 0] * D * SIM["apix"], atol=1e-4)
    meta = json.loads(res.meta.read_text())
    assert meta["seed"] == 7 and meta["snr"] == 0.1 and meta["n_images"] == n and meta["invert"] is True
    assert "variance" in meta["snr_definition"]
    assert meta["noise_std"] == pytest.approx(math.sqrt(meta["signal_var"] / 0.1))


def test_simulator_ground_truth_volumes(sims):
    res = sims[0]
    vols = [_mrc(res.gt_volume(s)) for s in range(SIM["n_states"])]
    assert all(v.shape == (SIM["D"],) * 3 for v in vols)
    with mrcfile.open(res.gt_volume(0)) as m:
        assert m.voxel_size.x == pytest.approx(SIM["apix"])
    # the ends differ; neighbouring states are more alike than the ends; mass is conserved
    c_end = _corr(vols[0], vols[-1])
    c_next = _corr(vols[0], vols[1])
    assert c_end < 0.9 and c_next > c_end
    sums = [v.sum() for v in vols]
    assert max(sums) / min(sums) < 1.02
    # the common centre stays at the box centre (centre of mass within 2 px of D/2)
    ax = np.arange(SIM["D"])
    mid = vols[len(vols) // 2]
    com = [float((mid.sum(axis=tuple(k for k in range(3) if k != a)) * ax).sum() / mid.sum()) for a in range(3)]
    assert np.allclose(com, SIM["D"] / 2, atol=2.0)


def test_simulator_snr_and_determinism(sims):
    noisy, clean, again, other = sims
    a, c = _mrc(noisy.particles), _mrc(clean.particles)
    noise = a - c
    assert c.var() == pytest.approx(noisy.signal_var, rel=1e-4)
    assert c.var() / noise.var() == pytest.approx(0.1, rel=0.05)
    assert abs(noise.mean()) < 0.02 * noise.std()
    # same seed -> same data, whatever the chunking; the noise-free run shares poses/CTF/states
    np.testing.assert_array_equal(a, _mrc(again.particles))
    for name in ("poses", "ctf"):
        x, y = _pkl(getattr(noisy, name)), _pkl(getattr(clean, name))
        for u, w in zip(x if isinstance(x, tuple) else (x,), y if isinstance(y, tuple) else (y,)):
            np.testing.assert_array_equal(u, w)
    np.testing.assert_array_equal(np.load(noisy.labels)["state"], np.load(clean.labels)["state"])
    # another seed -> other poses and images
    assert not np.allclose(_pkl(other.poses)[0], _pkl(noisy.poses)[0])
    assert _corr(a, _mrc(other.particles)) < 0.5


def test_clean_images_are_projections_of_ground_truth(sims):
    """Recompute clean images independently with the real-space projector, the GT volume of
    each image's state, its pose from poses.pkl and its CTF from ctf.pkl."""
    clean = sims[1]
    D = SIM["D"]
    imgs = _mrc(clean.particles)
    rot, trans = _pkl(clean.poses)
    ctf = _pkl(clean.ctf).astype(np.float64)
    state = np.load(clean.labels)["state"]
    freqs = half_grid_freqs(D, SIM["apix"]).reshape(-1, 2)
    corr = []
    for i in range(12):
        vol = _mrc(clean.gt_volume(int(state[i])))
        proj = project(vol, rot[i : i + 1].astype(np.float64), trans[i : i + 1].astype(np.float64) * D)
        c = ctf_from_table(freqs, ctf[i : i + 1]).reshape(D, D // 2 + 1)
        ref = image_from_ft(-c * image_ft(proj[0]), D)  # invert=True: contrast sign -1
        corr.append(_corr(ref, imgs[i]))
    assert min(corr) > 0.99


def test_read_model_fixes_charmm_elements(adk_models):
    """The AdK files have no element column and left-justified names (CA would be calcium)."""
    for m in adk_models:
        assert len(m) == 1656  # heavy atoms of 214 residues; hydrogens dropped
        assert set(np.unique(m.number).tolist()) == {6.0, 7.0, 8.0, 16.0}
        assert int((m.number == 16).sum()) == 7  # 6 Met SD + 1 Cys SG in AdK


def test_path_interpolation_and_alignment(adk_models):
    a, b = adk_models
    b_al = superpose(b, a)
    rmsd_raw = np.sqrt(((a.zyx - b.zyx) ** 2).sum(1).mean())
    rmsd_al = np.sqrt(((a.zyx - b_al.zyx) ** 2).sum(1).mean())
    assert rmsd_al < rmsd_raw - 1.0  # the files are not superposed as given
    np.testing.assert_allclose(interpolate_atoms([a, b_al], 0.0).zyx, a.zyx)
    np.testing.assert_allclose(interpolate_atoms([a, b_al], 1.0).zyx, b_al.zyx)
    mid = interpolate_atoms([a, b_al], 0.5).zyx
    np.testing.assert_allclose(mid, (a.zyx + b_al.zyx) / 2)
    d = [np.sqrt(((interpolate_atoms([a, b_al], t).zyx - a.zyx) ** 2).sum(1).mean()) for t in np.linspace(0, 1, 6)]
    assert np.all(np.diff(d) > 0)


def test_atom_order_is_checked(tmp_path, adk_models):
    a, b = adk_models
    perm = np.arange(len(b))
    i = int(np.flatnonzero(b.number != b.number[0])[0])
    perm[[0, i]] = perm[[i, 0]]
    with pytest.raises(DataError, match="same order|out of order"):
        check_same_atoms([a, b.subset(perm)])
    with pytest.raises(DataError, match="atoms"):
        check_same_atoms([a, b.subset(np.arange(len(b)) > 0)])
    # a file whose atoms are reordered within a residue (same elements: only names differ)
    lines = (ADK / "adk_open.pdb").read_text().splitlines(keepends=True)
    atoms = [k for k, ln in enumerate(lines) if ln.startswith("ATOM")]
    first_res = [k for k in atoms if lines[k][22:26] == lines[atoms[0]][22:26]]
    ca = next(k for k in first_res if lines[k][12:16].strip() == "CA")
    c = next(k for k in first_res if lines[k][12:16].strip() == "C")
    lines[ca], lines[c] = lines[c], lines[ca]
    bad = tmp_path / "adk_open_swapped.pdb"
    bad.write_text("".join(lines))
    with pytest.raises(DataError, match="same order"):
        simulate_adk(tmp_path / "out", ADK / "adk_closed.pdb", bad, n_images=4, D=32, apix=3.0, resolution=8.0)
    assert not (tmp_path / "out" / "particles.mrcs").exists()


@needs_adk
def test_box_too_small_is_refused(tmp_path, adk_models):
    with pytest.raises(DataError, match="increase D or apix"):
        simulate_dataset(tmp_path / "o", adk_models, n_images=4, D=32, apix=1.5, resolution=4.0, n_states=2)
