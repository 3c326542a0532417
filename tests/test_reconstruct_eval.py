"""Evaluation (FSC, AU-FSC, per-image FSC, latent Spearman) and latent-space analysis of the
heterogeneous reconstruction (voxfield.reconstruct.evaluate / .analysis)."""

from __future__ import annotations

import json
import sys
import warnings

import mrcfile
import numpy as np
import pytest
from scipy import ndimage

from voxfield.errors import DataError, OptionError
from voxfield.metrics.fourier_shell import fsc
from voxfield.reconstruct.analysis import (
    analyze,
    kmeans,
    latent_pca,
    latent_umap,
    nearest_particles,
    pc_traversal,
    plot_latent,
    plot_pca_variance,
)
from voxfield.reconstruct.evaluate import (
    au_fsc,
    fsc_curve,
    fsc_plot,
    latent_spearman,
    per_image_fsc,
    per_image_fsc_from_files,
    resolution_at,
    select_images,
    soft_mask_from_volume,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def smooth_volume(rng: np.random.Generator, d: int = 16, sigma: float = 1.2) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=(d, d, d)), sigma).astype(np.float32)


def assert_png(path, min_side: int = 100) -> None:
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert float(img[..., :3].std()) > 0.01  # not a blank canvas


# ---------------------------------------------------------------------------- AU-FSC
def test_au_fsc_identical_volumes_is_half_even_box():
    rng = np.random.default_rng(0)
    v = smooth_volume(rng, 32)
    res = fsc_curve(v, v, 2.0)
    fpx = res.frequency * 2.0
    assert fpx[0] == 0.0 and fpx[-1] == pytest.approx(0.5)
    assert au_fsc(res.fsc, fpx) == pytest.approx(0.5, abs=1e-9)


def test_au_fsc_identical_volumes_odd_box_stops_below_nyquist():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(33, 33, 33))
    res = fsc_curve(v, v, 1.0)
    # last shell 16/33 cycles/px: area under 1 is 16/33 (within 1/D of 0.5)
    assert au_fsc(res.fsc, res.frequency) == pytest.approx(16 / 33, abs=1e-9)


def test_au_fsc_independent_noise_is_small():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(32, 32, 32))
    b = rng.normal(size=(32, 32, 32))
    res = fsc_curve(a, b, 1.5)
    val = au_fsc(res.fsc, res.frequency * 1.5)
    # |FSC| of noise ~ 1/sqrt(shell voxels); the DC shell (1 voxel) gives |FSC| = 1 over 1/(2D)
    assert 0.01 < val < 0.06


def test_au_fsc_trapezoid_values():
    f = np.linspace(0.0, 0.5, 11)
    assert au_fsc(1.0 - 2.0 * f, f) == pytest.approx(0.25)  # linear: trapezoid is exact
    assert au_fsc(-np.ones(11), f) == pytest.approx(0.5)  # |FSC| (CryoBench)
    assert au_fsc(-np.ones(11), f, absolute=False) == pytest.approx(-0.5)
    assert au_fsc(np.ones(11), f, fmax=0.25) == pytest.approx(0.25)
    with pytest.raises(DataError, match="cycles/pixel"):
        au_fsc(np.ones(11), f * 4)  # frequencies in 1/Å at 0.5 Å/px, not cycles/px
    with pytest.raises(DataError):
        au_fsc(np.ones(3), f)


def test_resolution_at_matches_fscresult_and_pair():
    rng = np.random.default_rng(3)
    v = smooth_volume(rng, 24)
    w = v + 0.5 * rng.normal(size=v.shape).astype(np.float32)
    res = fsc_curve(v, w, 1.7)
    for t in (0.5, 0.143):
        expected = res.resolution_at(t).angstrom
        assert resolution_at(res, t) == expected
        assert resolution_at((res.frequency, res.fsc), t, 1.7) == pytest.approx(expected)
    assert 2 * 1.7 <= resolution_at(res, 0.143) <= resolution_at(res, 0.5) < np.inf


def test_soft_mask_from_volume():
    d = 32
    zz, yy, xx = np.mgrid[:d, :d, :d] - d / 2
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    vol = np.where(r <= 6, 1.0, 0.0)
    m = soft_mask_from_volume(vol, dilate_px=2, soft_px=4)
    assert m.dtype == np.float32 and m.shape == vol.shape
    assert m[16, 16, 16] == 1.0 and m[16, 16, 16 + 8] == 1.0  # core (r <= 6) dilated by 2
    assert m[16, 16, 16 + 10] == pytest.approx(0.5, abs=0.02)  # mid-edge: d = 2 of 4
    assert m[0, 0, 0] == 0.0 and m[16, 16, 16 + 13] == 0.0  # beyond the edge
    assert np.all((m >= 0) & (m <= 1))
    # default threshold: half of the 99.99th percentile (1.0 here) -> same core
    assert np.array_equal(soft_mask_from_volume(vol, dilate_px=0, soft_px=0) == 1, vol >= 0.5)
    with pytest.raises(DataError):
        soft_mask_from_volume(vol, threshold=5.0)


# ---------------------------------------------------------------------------- per image
def test_per_image_fsc_synthetic_decoder():
    rng = np.random.default_rng(4)
    gts = np.stack([smooth_volume(rng, 16) for _ in range(3)])
    n = 12
    gt_of = np.arange(n) % 3
    apix = 2.0

    def decode(i: int) -> np.ndarray:
        if i % 2 == 0:
            return 2.5 * gts[gt_of[i]]  # right class, other scale: FSC == 1
        return gts[(gt_of[i] + 1) % 3]  # wrong class

    idx = np.arange(n)
    out = per_image_fsc(decode, idx, gts, gt_of, apix)
    assert out["curves"].shape == (n, 9) and out["freq_per_px"][-1] == pytest.approx(0.5)
    even = out["au_fsc"][0::2]
    np.testing.assert_allclose(even, 0.5, atol=1e-9)
    for k in range(1, n, 2):
        r = fsc(gts[(gt_of[k] + 1) % 3], gts[gt_of[k]], apix)
        assert out["au_fsc"][k] == pytest.approx(au_fsc(r.fsc, r.frequency * apix))
        assert out["au_fsc"][k] < 0.3
    assert out["au_fsc_mean"] == pytest.approx(out["au_fsc"].mean())
    assert out["au_fsc_std"] == pytest.approx(out["au_fsc"].std())
    np.testing.assert_allclose(out["fsc_mean"], out["curves"].mean(axis=0))
    assert set(out["au_fsc_per_class"]) == {0, 1, 2}
    # mean curve: half the images agree perfectly (FSC 1), half are wrong-class curves
    np.testing.assert_allclose(out["fsc_mean"], 0.5 + 0.5 * out["curves"][1::2].mean(axis=0))
    assert out["fsc_mean"][1:].max() < 0.75
    for t in (0.5, 0.143):
        assert out[f"resolution_{t}_A"] == resolution_at((out["freq_per_A"], out["fsc_mean"]), t, apix)
    assert np.all(out["res_0.5_A"][0::2] == pytest.approx(2 * apix))


def test_per_image_fsc_gt_callable_mask_and_subset():
    rng = np.random.default_rng(5)
    gts = [smooth_volume(rng, 16) for _ in range(2)]
    calls = []

    def gt_fn(j):
        calls.append(j)
        return gts[j]

    noise = [rng.normal(scale=0.02, size=(16, 16, 16)) for _ in range(10)]
    gt_of = np.array([0, 1] * 5)
    mask = soft_mask_from_volume(gts[0], threshold=0.0, dilate_px=1, soft_px=2)
    sel = select_images(10, 3)
    np.testing.assert_array_equal(sel, [0, 3, 6])  # CryoBench: arange(0, N, N // n)
    out = per_image_fsc(lambda i: gts[gt_of[i]] + noise[i], sel, gt_fn, gt_of, 1.0, mask=mask)
    assert sorted(set(calls)) == [0, 1] and len(calls) == 2  # cached
    for k, i in enumerate(sel):
        r = fsc(gts[gt_of[i]] + noise[i], gts[gt_of[i]], 1.0, mask=mask)
        assert out["au_fsc"][k] == pytest.approx(au_fsc(r.fsc, r.frequency))
    assert 0.3 < out["au_fsc_mean"] < 0.5
    with pytest.raises(DataError, match="shape"):
        per_image_fsc(lambda i: np.zeros((8, 8, 8)), [0], gts, gt_of, 1.0)


def test_per_image_fsc_from_files(tmp_path):
    rng = np.random.default_rng(6)
    gts = [smooth_volume(rng, 16) for _ in range(2)]
    gt_paths, vol_paths = [], []
    for j, g in enumerate(gts):
        p = tmp_path / f"gt_{j}.mrc"
        with mrcfile.new(p) as m:
            m.set_data(g)
            m.voxel_size = 3.0
        gt_paths.append(str(p))
    vols = [gts[1], gts[0] * 0.5 + 0.1 * rng.normal(size=(16, 16, 16)).astype(np.float32), gts[1]]
    for k, v in enumerate(vols):
        p = tmp_path / f"vol_{k:03d}.mrc"
        with mrcfile.new(p) as m:
            m.set_data(np.asarray(v, dtype=np.float32))
        vol_paths.append(p)
    gt_of = [1, 0, 0]
    out = per_image_fsc_from_files(vol_paths, gt_paths, gt_of, 3.0)
    ref = per_image_fsc(lambda k: vols[k], np.arange(3), gts, gt_of, 3.0)
    np.testing.assert_allclose(out["au_fsc"], ref["au_fsc"], rtol=1e-6)
    assert out["au_fsc"][0] == pytest.approx(0.5)
    assert out["au_fsc"][2] < out["au_fsc"][1] < 0.5


# ---------------------------------------------------------------------------- Spearman
def test_latent_spearman_monotone_and_shuffled():
    rng = np.random.default_rng(7)
    n = 500
    t = rng.uniform(size=n)
    z = np.column_stack([rng.normal(size=n), np.exp(3 * t), rng.normal(size=n)])
    out = latent_spearman(z, t)
    assert out["best_dim"] == 1 and out["best"] == pytest.approx(1.0)
    assert out["per_dim"][0] < 0.15 and out["per_dim"][2] < 0.15
    # decreasing 1-D latent: |rho| = 1; pc1 is the latent itself
    out1 = latent_spearman(-(t**3)[:, None], t)
    assert out1["pc1"] == pytest.approx(1.0) and out1["best"] == pytest.approx(1.0)
    # PC1 of a latent spread along a diagonal direction
    z2 = np.outer(t - 0.5, [1.0, -2.0, 0.5]) + 1e-3 * rng.normal(size=(n, 3))
    assert latent_spearman(z2, t)["pc1"] > 0.99
    shuffled = latent_spearman(z[rng.permutation(n)], t)
    assert shuffled["pc1"] < 0.15 and shuffled["best"] < 0.15
    assert latent_spearman(np.ones((n, 2)), t)["best"] == 0.0


# ---------------------------------------------------------------------------- analysis
def blobs(rng, n_per=100, zdim=4):
    means = np.array([[0.0] * zdim, [6.0] + [0.0] * (zdim - 1), [0.0, 6.0] + [0.0] * (zdim - 2)])
    z = np.concatenate([m + 0.5 * rng.normal(size=(n_per, zdim)) for m in means])
    return z, np.repeat(np.arange(3), n_per), means


def test_kmeans_recovers_blobs_and_is_seeded():
    rng = np.random.default_rng(8)
    z, truth, means = blobs(rng)
    centres, labels = kmeans(z, 3, seed=0)
    assert centres.shape == (3, 4) and labels.shape == (300,)
    # each true blob maps to one distinct cluster
    mapping = {int(np.bincount(labels[truth == c]).argmax()) for c in range(3)}
    assert len(mapping) == 3
    for c in range(3):
        assert np.all(labels[truth == c] == labels[truth == c][0])
    # centres near the blob means (any order)
    d = np.linalg.norm(centres[:, None, :] - means[None], axis=-1)
    assert np.all(d.min(axis=1) < 0.3)
    c2, l2 = kmeans(z, 3, seed=0)
    np.testing.assert_array_equal(l2, labels)
    np.testing.assert_allclose(c2, centres)
    with pytest.raises(OptionError):
        kmeans(z, 0)


def test_nearest_particles():
    z = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [0.0, 3.0]])
    idx = nearest_particles(z, np.array([[4.0, 4.0], [0.9, 0.1], [0.0, 2.0]]))
    np.testing.assert_array_equal(idx, [2, 1, 3])


def test_latent_pca_variance_ratios():
    n = 400
    u = np.tile([1.0, -1.0], n // 2)  # zero mean, orthogonal to v
    v = np.tile([1.0, 1.0, -1.0, -1.0], n // 4)
    q, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(3, 3)))
    z = np.column_stack([3 * u, 2 * v, np.zeros(n)]) @ q.T + np.array([1.0, -2.0, 0.5])
    p = latent_pca(z, 2)
    np.testing.assert_allclose(p.explained_variance_ratio, [9 / 13, 4 / 13, 0.0], atol=1e-12)
    assert p.projections.shape == (n, 2)
    np.testing.assert_allclose(np.abs(p.projections[:, 0]), 3.0, atol=1e-9)
    np.testing.assert_allclose(p.inverse(p.projections), z, atol=1e-9)  # rank 2: exact
    np.testing.assert_allclose(p.mean, [1.0, -2.0, 0.5])


def test_pc_traversal_percentiles():
    rng = np.random.default_rng(10)
    z = np.column_stack([rng.normal(scale=5.0, size=1000), rng.normal(size=1000)])
    pts = pc_traversal(z, pc=1, steps=7)
    p = latent_pca(z, 2)
    proj = (z - p.mean) @ p.components[0]
    coord = (pts - p.mean) @ p.components[0]
    assert pts.shape == (7, 2)
    np.testing.assert_allclose(coord[[0, -1]], np.percentile(proj, [5, 95]))
    np.testing.assert_allclose(np.diff(coord), np.diff(coord)[0])  # evenly spaced
    np.testing.assert_allclose((pts - p.mean) @ p.components[1], 0.0, atol=1e-9)  # on the axis
    with pytest.raises(OptionError):
        pc_traversal(z, pc=3)


def test_latent_umap_fallback_and_small_zdim(monkeypatch):
    rng = np.random.default_rng(11)
    z = rng.normal(size=(50, 4))
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.warns(UserWarning, match="umap-learn is not installed"):
        emb, method = latent_umap(z, 0)
    assert method == "pca"
    np.testing.assert_allclose(emb, latent_pca(z, 2).projections)
    emb2, m2 = latent_umap(z[:, :2], 0)
    assert m2 == "latent" and np.array_equal(emb2, z[:, :2])


def test_plots_are_png(tmp_path):
    rng = np.random.default_rng(12)
    z2 = rng.normal(size=(6000, 2))  # above the hexbin threshold
    plot_latent(z2, tmp_path / "dense.png", "dense")
    plot_latent(z2, tmp_path / "dense_col.png", colour=z2[:, 0], colour_label="t")
    plot_latent(z2[:300], tmp_path / "labels.png", labels=(z2[:300, 0] > 0).astype(int),
                centres=np.array([[0.0, 0.0], [1.0, 1.0]]))
    plot_latent(z2[:300, :1], tmp_path / "hist.png")
    plot_pca_variance(np.array([0.6, 0.3, 0.1]), tmp_path / "var.png")
    v = smooth_volume(rng, 16)
    r = fsc_curve(v, v + 0.3 * rng.normal(size=v.shape), 2.0)
    fsc_plot({"a": r, "b": (r.frequency, r.fsc * 0.8, 0.05 * np.ones_like(r.fsc))}, tmp_path / "fsc.png", 2.0)
    for name in ("dense", "dense_col", "labels", "hist", "var", "fsc"):
        assert_png(tmp_path / f"{name}.png")
    assert not list(tmp_path.glob(".voxfield-tmp-*"))


def test_analyze_writes_expected_files(tmp_path):
    rng = np.random.default_rng(13)
    n = 60
    t = np.linspace(0, 1, n)
    z = np.column_stack([np.tanh(2 * t), 0.1 * rng.normal(size=n), 0.05 * rng.normal(size=n)])
    decoded = []

    def decode(zp):
        decoded.append(np.array(zp))
        assert zp.shape == (3,) and zp.dtype == np.float32
        return np.full((8, 8, 8), float(zp[0]), dtype=np.float32)

    msgs = []
    summary = analyze(z, tmp_path / "an", k=4, seed=0, pcs=2, steps=3, decode_volume=decode, true_t=t,
                      apix=2.5, progress=msgs.append, umap=False)
    out = tmp_path / "an"
    for f in ("z_pca.png", "pca_variance.png", "kmeans4/z_pca.png"):
        assert_png(out / f)
    centres = np.loadtxt(out / "kmeans4/centres.txt")
    ind = np.loadtxt(out / "kmeans4/centres_ind.txt", dtype=int)
    assert centres.shape == (4, 3)
    np.testing.assert_allclose(centres, z[ind], rtol=1e-5, atol=1e-6)  # on-data centres
    labels = np.load(out / "kmeans4/labels.npy")
    assert labels.shape == (n,) and set(labels.tolist()) == {0, 1, 2, 3}
    for i in range(4):
        with mrcfile.open(out / f"kmeans4/vol_{i:03d}.mrc") as m:
            assert m.data.shape == (8, 8, 8)
            assert float(m.data[0, 0, 0]) == pytest.approx(z[ind[i], 0], rel=1e-5)
            assert float(m.voxel_size.x) == pytest.approx(2.5)
    for j in (1, 2):
        zv = np.loadtxt(out / f"pc{j}/z_values.txt")
        assert zv.shape == (3, 3)
        for i in range(3):
            assert (out / f"pc{j}/vol_{i:03d}.mrc").is_file()
    assert not (out / "pc3").exists()
    assert len(decoded) == 4 + 2 * 3
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["kmeans"]["k"] == 4 and sum(on_disk["kmeans"]["cluster_sizes"]) == n
    assert on_disk["spearman_true_t"]["best_dim"] == 0
    assert on_disk["spearman_true_t"]["best"] == pytest.approx(1.0)
    assert on_disk["spearman_true_t"]["pc1"] > 0.95
    assert on_disk == json.loads(json.dumps(summary))
    for f in on_disk["files"]:
        assert (out / f).is_file(), f
    assert msgs and not list(out.rglob(".voxfield-tmp-*"))


def test_analyze_one_dim_no_decoder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    rng = np.random.default_rng(14)
    z = rng.normal(size=(40, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zdim 1: no embedding, so no fallback warning
        summary = analyze(z, tmp_path, k=3, pcs=2, steps=4)
    assert summary["embedding"] == "latent"
    assert_png(tmp_path / "z_pca.png")
    assert (tmp_path / "kmeans3/labels.npy").is_file()
    assert not list(tmp_path.rglob("*.mrc"))
    zv = np.loadtxt(tmp_path / "pc1/z_values.txt")
    assert zv.shape == (4,)
    np.testing.assert_allclose(zv[[0, -1]], np.percentile(z[:, 0], [5, 95]), rtol=1e-8)
    assert not (tmp_path / "pc2").exists()


# ---------------------------------------------------------------------------- ARI
def test_adjusted_rand_index_known_values():
    from voxfield.reconstruct.evaluate import adjusted_rand_index

    # textbook example (sklearn's documentation gives 0.24242424...)
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(8 / 33, abs=1e-12)
    # identical up to renaming
    assert adjusted_rand_index([0, 0, 1, 1, 2], ["b", "b", "a", "a", "c"]) == pytest.approx(1.0)
    # a split that shares nothing beyond chance is negative
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    rng = np.random.default_rng(0)
    assert abs(adjusted_rand_index(rng.integers(0, 8, 20000), rng.integers(0, 8, 20000))) < 0.01
    with pytest.raises(DataError):
        adjusted_rand_index([0, 1, 2], [0, 1])


def test_latent_ari_recovers_separated_states_and_not_mixed_ones():
    from voxfield.reconstruct.evaluate import latent_ari

    rng = np.random.default_rng(1)
    lab = rng.integers(0, 4, 800)
    centres = np.eye(4, 3) * 10.0
    z = centres[lab] + rng.normal(size=(800, 3))
    r = latent_ari(z, lab, seed=0)
    assert r["k"] == 4 and r["ari"] > 0.99
    shuffled = latent_ari(z, rng.permutation(lab), seed=0)
    assert shuffled["ari"] < 0.05
