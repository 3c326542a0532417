"""Structural-basis VAE: CTF values, half-sphere tables, slice extraction (gradcheck, sparse vs
dense, projection–slice theorem), volume synthesis, training smoke run and resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from voxfield.reconstruct.ctf import compute_ctf, ctf_from_table, half_grid_freqs, wavelength
from voxfield.reconstruct.fourier import (
    SliceTables,
    half_sphere,
    image_half_plane,
    rows_to_volume_ft,
    slice_basis,
    slice_coords,
    volume_from_ft,
    volume_to_rows,
)
from voxfield.reconstruct.projection import project
from voxfield.reconstruct.run import load_run, volume_reference
from voxfield.reconstruct.train import TrainConfig, train


# --- CTF against hand-computed values (λ = 12.2639/sqrt(V + 0.97845e-6 V²),
# CTF = sqrt(1 − w²) sin γ − w cos γ, γ = 2π(−½Δfλs² + ¼Csλ³s⁴) − phase) ----------------------
def test_wavelength_300kv():
    assert wavelength(300.0) == pytest.approx(0.019686970, rel=1e-6)


def test_ctf_hand_values():
    f = np.array([[0.1, 0.0]])
    # dfU = dfV = 1 µm, 300 kV, Cs 2.7 mm, w 0.1 at 0.1 1/Å: γ = 2π(−½Δfλs² + ¼Csλ³s⁴)
    assert compute_ctf(f, 10000.0, 10000.0, 0.0, 300.0, 2.7, 0.1)[0] == pytest.approx(0.0305300, abs=1e-6)
    # 90° phase plate shift
    assert compute_ctf(f, 10000.0, 10000.0, 0.0, 300.0, 2.7, 0.1, 90.0)[0] == pytest.approx(-0.9995339, abs=1e-6)
    # astigmatism: dfU along dfAng = 30°, dfV perpendicular
    a = np.deg2rad(30.0)
    along = np.array([[0.1 * np.cos(a), 0.1 * np.sin(a)]])
    perp = np.array([[0.1 * np.cos(a + np.pi / 2), 0.1 * np.sin(a + np.pi / 2)]])
    assert compute_ctf(along, 12000.0, 8000.0, 30.0, 300.0, 2.7, 0.1)[0] == pytest.approx(-0.9343512, abs=1e-6)
    assert compute_ctf(perp, 12000.0, 8000.0, 30.0, 300.0, 2.7, 0.1)[0] == pytest.approx(0.9543582, abs=1e-6)


def test_ctf_table_torch_matches_numpy():
    f = half_grid_freqs(32, 1.7).reshape(-1, 2)
    t = np.array([[32, 1.7, 15000, 14000, 30, 300, 2.7, 0.1, 0], [32, 1.7, 21000, 20500, 110, 200, 2.0, 0.07, 20]])
    a = ctf_from_table(f, t)
    b = ctf_from_table(torch.tensor(f), torch.tensor(t)).numpy()
    assert a.shape == (2, 32 * 17)
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert a[0, 0] == pytest.approx(-0.1)  # DC: −w
    # underfocus: the first lobe is negative and deepens at low frequency (15000 Å, 0.01 1/Å)
    assert compute_ctf(np.array([[0.01, 0.0]]), 15000.0, 15000.0, 0.0, 300.0, 2.7, 0.1)[0] == pytest.approx(
        math.sqrt(0.99) * math.sin(2 * math.pi * -0.5 * 15000 * wavelength(300.0) * 1e-4 + 2 * math.pi * 0.25 * 2.7e7
                                   * wavelength(300.0) ** 3 * 1e-8) - 0.1 * math.cos(
            2 * math.pi * (-0.5 * 15000 * wavelength(300.0) * 1e-4 + 0.25 * 2.7e7 * wavelength(300.0) ** 3 * 1e-8)))
    assert compute_ctf(np.array([[0.01, 0.0]]), 15000.0, 15000.0, 0.0, 300.0, 2.7, 0.1)[0] == pytest.approx(-0.19, abs=0.01)


# --- half-sphere tables ----------------------------------------------------------------------
def test_half_sphere_friedel_tables():
    hs = half_sphere(8)
    r = hs.radius
    c = hs.coords
    assert len(np.unique(c, axis=0)) == len(c)
    # every point inside the sphere maps to a row; conjugated ones to their Friedel mate
    for kz in range(-r, r + 1):
        for ky in range(-r, r + 1):
            for kx in range(-r, r + 1):
                row = hs.lut_row[kz + r, ky + r, kx + r]
                if kx * kx + ky * ky + kz * kz > r * r:
                    assert row == hs.n_rows
                    continue
                sign = -1 if hs.lut_conj[kz + r, ky + r, kx + r] else 1
                assert tuple(c[row]) == (sign * kx, sign * ky, sign * kz)


def test_rows_volume_round_trip():
    rng = np.random.default_rng(0)
    D = 16
    vol = rng.normal(size=(D, D, D))
    hs = half_sphere(D)
    back = volume_from_ft(rows_to_volume_ft(volume_to_rows(vol, hs), hs), D)
    # equals the volume low-passed to the Nyquist sphere (computed directly with numpy)
    ft = np.fft.rfftn(np.fft.ifftshift(vol))
    k = np.fft.fftfreq(D, 1 / D)
    kk = k[:, None, None] ** 2 + k[None, :, None] ** 2 + np.arange(D // 2 + 1)[None, None, :] ** 2
    ref = np.fft.fftshift(np.fft.irfftn(ft * (kk <= (D / 2) ** 2), s=(D, D, D), axes=(0, 1, 2)))
    np.testing.assert_allclose(back, ref, atol=1e-4)


# --- slice extraction ------------------------------------------------------------------------
def _tiny(D=6, B=2, K1=3, seed=0):
    hs = half_sphere(D)
    tb = SliceTables(hs)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(hs.n_rows, 2, K1, dtype=torch.float64, generator=g, requires_grad=True)
    s = torch.randn(B, K1, dtype=torch.float64, generator=g, requires_grad=True)
    _, kxy = image_half_plane(D)
    rot = torch.tensor(Rotation.random(B, random_state=seed).as_matrix())
    rows, w, sg = tb.neighbours(slice_coords(torch.tensor(kxy), rot))
    return s, W, rows, w.double(), sg.double()


def test_slice_gradcheck():
    s, W, rows, w, sg = _tiny()
    assert torch.autograd.gradcheck(lambda s_, W_: slice_basis(s_, W_, rows, w, sg, False), (s, W))


def test_sparse_gradient_equals_dense_and_touches_only_read_rows():
    s, W, rows, w, sg = _tiny(D=8, B=3)
    slice_basis(s, W, rows, w, sg, True).pow(2).sum().backward()
    sparse = W.grad
    assert sparse.is_sparse
    touched = set(sparse.coalesce().indices()[0].tolist())
    assert touched == set(rows.reshape(-1).tolist()) - {W.shape[0]}
    assert len(touched) < W.shape[0]  # a few slices read only part of the sphere
    dense_s = s.grad.clone()
    W.grad = None
    s.grad = None
    slice_basis(s, W, rows, w, sg, False).pow(2).sum().backward()
    torch.testing.assert_close(sparse.to_dense(), W.grad)
    torch.testing.assert_close(dense_s, s.grad)


def _blob_volume(D):
    zz, yy, xx = np.mgrid[:D, :D, :D] - D / 2
    v = np.exp(-((xx - 3) ** 2 + (yy + 2) ** 2 + zz**2) / (2 * 2.5**2))
    v += 0.7 * np.exp(-((xx + 4) ** 2 + (yy - 3) ** 2 + (zz - 4) ** 2) / (2 * 2.0**2))
    v += 0.5 * np.exp(-(xx**2 + (yy - 5) ** 2 + (zz + 3) ** 2) / (2 * 1.8**2))
    return v


def test_projection_slice_theorem():
    """A real-space projection equals the inverse FFT of the central slice extracted from the basis."""
    D = 32
    vol = _blob_volume(D)
    hs = half_sphere(D)
    rows = volume_to_rows(vol, hs)
    W = torch.tensor(np.stack([rows.real, rows.imag], -1)[:, :, None])
    rot = Rotation.random(4, random_state=3).as_matrix()
    flat, kxy = image_half_plane(D)
    tb = SliceTables(hs)
    r, w, sg = tb.neighbours(slice_coords(torch.tensor(kxy), torch.tensor(rot)))
    out = slice_basis(torch.ones(4, 1, dtype=torch.float64), W, r, w, sg)
    ft = np.zeros((4, D * (D // 2 + 1)), dtype=np.complex128)
    ft[:, flat] = (out[..., 0] + 1j * out[..., 1]).numpy()
    imgs = np.fft.fftshift(np.fft.irfft2(ft.reshape(4, D, D // 2 + 1), s=(D, D)), axes=(-2, -1))
    ref = project(vol, rot, oversample=2)
    for a, b in zip(imgs, ref):
        cc = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert cc > 0.995
        # trilinear interpolation on the unpadded grid attenuates towards the box edge (sinc²)
        assert np.abs(a - b).max() < 0.08 * np.abs(b).max()
    # identity pose: the slice at kz = 0 is exact (no interpolation)
    r, w, sg = tb.neighbours(slice_coords(torch.tensor(kxy), torch.eye(3, dtype=torch.float64)[None]))
    out = slice_basis(torch.ones(1, 1, dtype=torch.float64), W, r, w, sg)
    ft = np.zeros(D * (D // 2 + 1), dtype=np.complex128)
    ft[flat] = (out[0, :, 0] + 1j * out[0, :, 1]).numpy()
    img = np.fft.fftshift(np.fft.irfft2(ft.reshape(D, D // 2 + 1), s=(D, D)))
    keep = np.isin(np.arange(D * (D // 2 + 1)), flat).reshape(D, D // 2 + 1)
    lowpass = np.fft.fftshift(np.fft.irfft2(np.fft.rfft2(np.fft.ifftshift(vol.sum(0))) * keep, s=(D, D)))
    np.testing.assert_allclose(img, lowpass, atol=1e-9)


# --- training smoke run, resume, decoding ---------------------------------------------------
def _toy_data(n=96, D=16, seed=0):
    rng = np.random.default_rng(seed)
    vol_a = _blob_volume(D)
    rot = Rotation.random(n, random_state=seed).as_matrix().astype(np.float32)
    trans = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    imgs = project(vol_a, rot, trans) + rng.normal(0, 0.3, (n, D, D)).astype(np.float32)
    ctf = np.tile(np.array([D, 2.0, 15000, 15000, 0, 300, 2.7, 0.1, 0], np.float32), (n, 1))
    ctf[:, 2] = ctf[:, 3] = rng.uniform(10000, 20000, n)
    from voxfield.reconstruct.ctf import half_grid_freqs as hg

    F = np.fft.rfft2(np.fft.ifftshift(imgs, axes=(-2, -1))) * ctf_from_table(hg(D, 2.0).reshape(-1, 2), ctf).reshape(n, D, D // 2 + 1)
    imgs = np.fft.fftshift(np.fft.irfft2(F, s=(D, D)), axes=(-2, -1)).astype(np.float32)
    return imgs, rot, trans, ctf


def test_training_smoke_resume_and_decode(tmp_path):
    imgs, rot, trans, ctf = _toy_data()
    cfg = TrainConfig(zdim=2, K=3, epochs=2, batch=32, enc_width=32, enc_blocks=1, dec_width=8, invert=False,
                      sigma_images=64)
    out = train(imgs, rot, trans, ctf, 2.0, tmp_path / "run", TrainConfig(**{**cfg.__dict__, "epochs": 1}))
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1]
    assert np.isfinite(log[0]["loss"]) and log[0]["kl"] >= 0
    first = load_run(out)
    # resume to epoch 2 with the same settings: continues from the checkpoint
    with pytest.raises(Exception, match="other settings"):
        train(imgs, rot, trans, ctf, 2.0, out, cfg)  # epochs differ → refused (config mismatch)
    out2 = train(imgs, rot, trans, ctf, 2.0, tmp_path / "run2", cfg)
    run = load_run(out2)
    assert run.epoch == 2 and first.epoch == 1
    z = run.encode(imgs, trans, ctf)
    assert z.shape == (len(imgs), 2) and np.isfinite(z).all()
    v = run.volume(z[0])
    assert v.shape == (16, 16, 16) and v.dtype == np.float32
    np.testing.assert_allclose(v, volume_reference(run, z[0]), atol=1e-4 * np.abs(v).max())
    assert not np.allclose(run.volume(z[0]), run.volume(z[0] + 5.0))  # the latent changes the volume


def test_homogeneous_training_recovers_volume(tmp_path):
    """zdim 0: a few epochs of noisy, CTF-modulated projections give a volume correlated with the truth."""
    D = 16
    imgs, rot, trans, ctf = _toy_data(n=400, D=D, seed=1)
    cfg = TrainConfig(zdim=0, epochs=6, batch=50, basis_lr=0.03, invert=False, sigma_images=200)
    run = load_run(train(imgs, rot, trans, ctf, 2.0, tmp_path / "hom", cfg))
    v = run.volume(None)
    truth = _blob_volume(D)
    cc = np.corrcoef(v.ravel(), truth.ravel())[0, 1]
    assert cc > 0.8


def test_masks_in_training_confine_the_basis(tmp_path):
    """--mask sphere empties the solvent of every decoded volume; --focus-mask confines what the latent changes."""
    import mrcfile

    from voxfield.reconstruct.masks import sphere_mask

    D = 16
    imgs, rot, trans, ctf = _toy_data(n=128, D=D, seed=2)
    focus = np.zeros((D, D, D), np.float32)
    focus[:, :, D // 2 :] = 1.0  # one half of the box
    fpath = tmp_path / "focus.mrc"
    with mrcfile.new(fpath) as f:
        f.set_data(focus)
    cfg = TrainConfig(zdim=2, K=3, epochs=2, batch=32, enc_width=32, enc_blocks=1, dec_width=8, invert=False,
                      sigma_images=64, mask="sphere", focus_mask=str(fpath), mask_every=64, enc_box=8)
    out = train(imgs, rot, trans, ctf, 2.0, tmp_path / "run", cfg)
    assert (out / "mask.mrc").exists() and (out / "focus_mask.mrc").exists()
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["mask"]["kind"] == "sphere" and 0.05 < log[-1]["mask"]["fraction"] < 0.6
    run = load_run(out)
    assert run.model.encoder.inp.in_features == 8 * 8  # the encoder saw Fourier-cropped 8x8 images
    z = run.encode(imgs, trans, ctf)
    va, vb = run.volume(z[0]), run.volume(z[0] + 3.0)
    solvent = sphere_mask(D) == 0
    assert np.abs(va[solvent]).max() < 0.05 * np.abs(va).max()
    diff = np.abs(va - vb)
    assert diff.max() > 0  # the latent still changes the volume...
    assert diff[:, :, : D // 2 - 1].max() < 0.05 * diff.max()  # ...but only inside the focus mask


def test_auto_mask_training_runs_and_records_its_choice(tmp_path):
    imgs, rot, trans, ctf = _toy_data(n=96, D=16, seed=3)
    cfg = TrainConfig(zdim=0, epochs=2, batch=32, invert=False, sigma_images=64, mask_after=64)
    out = train(imgs, rot, trans, ctf, 2.0, tmp_path / "run", cfg)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["mask"]["kind"] for r in log] == ["auto", "auto"]
    # the toy blob fills the box, so auto finds no plausible solvent mask and uses none
    assert log[-1]["mask"]["fraction"] is None and not (out / "mask.mrc").exists()


def test_posterior_weights_recover_known_mixtures(tmp_path):
    """With a known linear basis (base + s * difference), the closed-form posterior finds each image's s."""
    from voxfield.reconstruct.fourier import volume_to_rows
    from voxfield.reconstruct.posterior import posterior_weights

    D, n = 16, 160
    rng = np.random.default_rng(4)
    base = _blob_volume(D)
    ax = np.arange(D) - D // 2
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    diff = 0.8 * np.exp(-((zz - 3) ** 2 + (yy + 2) ** 2 + xx**2) / 4.0)
    s_true = rng.uniform(-1, 1, n)
    rot = Rotation.random(n, random_state=4).as_matrix().astype(np.float32)
    trans = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    imgs = np.stack([project(base + s_true[i] * diff, rot[i : i + 1], trans[i : i + 1])[0] for i in range(n)])
    imgs = imgs + rng.normal(0, 0.3, imgs.shape).astype(np.float32)
    ctf = np.tile(np.array([D, 2.0, 15000, 15000, 0, 300, 2.7, 0.1, 0], np.float32), (n, 1))
    F = np.fft.rfft2(np.fft.ifftshift(imgs, axes=(-2, -1))) * ctf_from_table(
        half_grid_freqs(D, 2.0).reshape(-1, 2), ctf).reshape(n, D, D // 2 + 1)
    imgs = np.fft.fftshift(np.fft.irfft2(F, s=(D, D)), axes=(-2, -1)).astype(np.float32)
    cfg = TrainConfig(zdim=1, K=1, epochs=1, batch=32, enc_width=16, enc_blocks=1, dec_width=8, invert=False,
                      sigma_images=64, mask="none")
    run = load_run(train(imgs, rot, trans, ctf, 2.0, tmp_path / "run", cfg, max_steps=1))
    kr = np.sqrt((run.model.hs.coords.astype(float) ** 2).sum(1))
    g = np.interp(kr, np.arange(run.sigma.size), run.sigma) * run.scale
    for col, vol in ((0, diff), (1, base)):
        rows = volume_to_rows(vol, run.model.hs) / g
        run.model.basis.data[:, 0, col] = torch.as_tensor(rows.real, dtype=torch.float32)
        run.model.basis.data[:, 1, col] = torch.as_tensor(rows.imag, dtype=torch.float32)
    run = dataclasses.replace(run)  # re-derive the decoder's cached tables from the new basis
    z = np.zeros((n, 1), np.float32)
    p = posterior_weights(run, imgs, rot, trans, ctf, z=z, prior=(np.zeros(1), np.eye(1)))
    s_hat = p["weights"][:, 0]
    assert np.corrcoef(s_hat, s_true)[0, 1] > 0.9
    assert np.all(p["std"] > 0) and float(p["noise_var"]) > 0
    # decoding the weights gives the mixture (up to the interpolation and gridding of the slices)
    i = int(np.argmax(s_true))
    v = run.volume_from_weights(p["weights"][i])
    assert np.corrcoef(v.ravel(), (base + s_true[i] * diff).ravel())[0, 1] > 0.9
    with pytest.raises(Exception, match="basis weights"):
        run.volume_from_weights(np.zeros(3))


def test_slice_from_gathered_columns_matches_slice_basis():
    from voxfield.reconstruct.fourier import gather_slice_columns, slice_basis_from_columns

    s, W, rows, w, sg = _tiny(D=8, B=3)
    acc, fac = gather_slice_columns(W, rows, w, sg)
    out = slice_basis_from_columns(s, W, acc, fac, rows, True)
    ref = slice_basis(s.detach(), W.detach(), rows, w, sg, False)
    torch.testing.assert_close(out, ref)
    out.pow(2).sum().backward()
    g_cols, gs_cols = W.grad.to_dense().clone(), s.grad.clone()
    W.grad = s.grad = None
    slice_basis(s, W, rows, w, sg, False).pow(2).sum().backward()
    torch.testing.assert_close(g_cols, W.grad)
    torch.testing.assert_close(gs_cols, s.grad)


def test_batch_posterior_matches_dense_solve_and_samples_its_covariance():
    from voxfield.reconstruct.estep import batch_posterior, sample_posterior

    g = torch.Generator().manual_seed(5)
    B, P, K = 2, 30, 3
    A = torch.randn(B, P, 2, K + 1, dtype=torch.float64, generator=g)
    C = torch.randn(B, P, dtype=torch.float64, generator=g)
    y = torch.complex(torch.randn(B, P, dtype=torch.float64, generator=g), torch.randn(B, P, dtype=torch.float64, generator=g))
    pi = torch.rand(P, dtype=torch.float64, generator=g) + 0.5
    P0 = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]], dtype=torch.float64)
    m0 = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
    s_hat, L = batch_posterior(A, C, y, pi, P0, m0)
    for b in range(B):  # the textbook normal equations, written out
        M = np.concatenate([(A[b, :, 0, :K] * C[b, :, None]).numpy(), (A[b, :, 1, :K] * C[b, :, None]).numpy()])
        r = np.concatenate([(y[b].real - A[b, :, 0, K] * C[b]).numpy(), (y[b].imag - A[b, :, 1, K] * C[b]).numpy()])
        w = np.concatenate([pi.numpy(), pi.numpy()])
        lam = M.T @ (w[:, None] * M) + P0.numpy()
        np.testing.assert_allclose(s_hat[b].numpy(), np.linalg.solve(lam, M.T @ (w * r) + P0.numpy() @ m0.numpy()), rtol=1e-10)
        np.testing.assert_allclose((L[b] @ L[b].T).numpy(), lam, rtol=1e-10)
    draws = torch.stack([sample_posterior(s_hat, L, torch.Generator().manual_seed(i)) for i in range(4000)])
    cov = np.cov(draws[:, 0].numpy().T)
    np.testing.assert_allclose(cov, torch.cholesky_inverse(L[0]).numpy(), atol=0.1 * float(cov.diagonal().max()))
    np.testing.assert_allclose(draws[:, 0].mean(0).numpy(), s_hat[0].numpy(), atol=0.05 * float(np.sqrt(cov.diagonal().max())) * 4)


def _two_state_data(n: int, D: int, seed: int, noise: float):
    rng = np.random.default_rng(seed)
    base = _blob_volume(D)
    ax = np.arange(D) - D // 2
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    diff = 0.8 * np.exp(-((zz - 3) ** 2 + (yy + 2) ** 2 + xx**2) / 4.0)
    state = rng.integers(0, 2, n)
    rot = Rotation.random(n, random_state=seed).as_matrix().astype(np.float32)
    trans = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    imgs = np.stack([project(base + (2 * state[i] - 1) * diff, rot[i : i + 1], trans[i : i + 1])[0] for i in range(n)])
    ctf = np.tile(np.array([D, 2.0, 15000, 15000, 0, 300, 2.7, 0.1, 0], np.float32), (n, 1))
    F = np.fft.rfft2(np.fft.ifftshift(imgs, axes=(-2, -1))) * ctf_from_table(
        half_grid_freqs(D, 2.0).reshape(-1, 2), ctf).reshape(n, D, D // 2 + 1)
    imgs = np.fft.fftshift(np.fft.irfft2(F, s=(D, D)), axes=(-2, -1))
    imgs = (imgs + rng.normal(0, noise * imgs.std(), imgs.shape)).astype(np.float32)
    return imgs, rot, trans, ctf, state


def test_posterior_weights_estimate_coloured_noise_per_shell(tmp_path):
    """The posterior's noise level is estimated per Fourier shell: with noise whose power falls
    with frequency by a known filter, the estimate (times each shell's normalisation σ̄²) follows
    the filter's power, not a single level."""
    from voxfield.reconstruct.fourier import volume_to_rows
    from voxfield.reconstruct.posterior import posterior_weights

    D, n = 16, 256
    rng = np.random.default_rng(5)
    base = _blob_volume(D)
    rot = Rotation.random(n, random_state=5).as_matrix().astype(np.float32)
    base = 0.05 * base  # weak signal: the residuals are dominated by the noise at every shell
    clean = project(base, rot, None)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(D) * D, np.fft.rfftfreq(D) * D, indexing="ij"))
    gain = 1.0 / (1.0 + (k / 3.0) ** 2)  # noise amplitude filter: strongly coloured
    white = rng.normal(0, 1.0, (n, D, D))
    noise = np.fft.fftshift(np.fft.irfft2(np.fft.rfft2(np.fft.ifftshift(white, axes=(-2, -1))) * gain, s=(D, D)),
                            axes=(-2, -1))
    imgs = (clean + noise).astype(np.float32)
    cfg = TrainConfig(zdim=1, K=1, epochs=1, batch=32, enc_width=16, enc_blocks=1, dec_width=8, invert=False,
                      sigma_images=128, mask="none")
    run = load_run(train(imgs, rot, None, None, 2.0, tmp_path / "run", cfg, max_steps=1))
    kr = np.sqrt((run.model.hs.coords.astype(float) ** 2).sum(1))
    g = np.interp(kr, np.arange(run.sigma.size), run.sigma) * run.scale
    rows = volume_to_rows(base, run.model.hs) / g  # the exact model: residuals are the noise alone
    run.model.basis.data[:, :, 0] = 0.0
    run.model.basis.data[:, 0, 1] = torch.as_tensor(rows.real, dtype=torch.float32)
    run.model.basis.data[:, 1, 1] = torch.as_tensor(rows.imag, dtype=torch.float32)
    run = dataclasses.replace(run)
    p = posterior_weights(run, imgs, rot, None, None, z=np.zeros((n, 1), np.float32), prior=(np.zeros(1), np.eye(1)))
    ns = np.asarray(p["noise_var_shell"], dtype=float)
    shells = np.arange(2, 8)
    power = ns[shells] * run.sigma[shells] ** 2  # back in data units (up to one overall factor)
    expect = (1.0 / (1.0 + (shells / 3.0) ** 2)) ** 2
    ratio = power / expect
    assert np.all(np.isfinite(ns)) and np.all(ns > 0)
    assert ratio.max() / ratio.min() < 1.5  # follows the filter (which spans a factor of 20 here)
    assert (expect.max() / expect.min()) > 10


def test_posterior_basis_fit_learns_two_states(tmp_path):
    """basis_fit="posterior" (stochastic EM on the basis) learns the difference of two states: both
    the closed-form weights on the fitted basis and the encoder's latent separate them (random
    labels give an ARI near 0)."""
    from voxfield.reconstruct.evaluate import latent_ari
    from voxfield.reconstruct.posterior import posterior_weights

    imgs, rot, trans, ctf, state = _two_state_data(n=1000, D=16, seed=6, noise=1.0)
    cfg = TrainConfig(zdim=1, K=2, epochs=6, batch=32, basis_lr=0.03, enc_width=32, enc_blocks=1, dec_width=8,
                      invert=False, sigma_images=200, mask="none", basis_fit="posterior")
    out = train(imgs, rot, trans, ctf, 2.0, tmp_path / "run", cfg)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(np.isfinite(r["loss"]) for r in log)
    run = load_run(out)
    z = run.encode(imgs, trans, ctf)
    p = posterior_weights(run, imgs, rot, trans, ctf, z=z)["weights"]
    assert latent_ari(p, state, 2, seed=0)["ari"] > 0.5
    assert latent_ari(z, state, 2, seed=0)["ari"] > 0.15
    with pytest.raises(Exception, match="unknown basis fit"):
        train(imgs, rot, trans, ctf, 2.0, tmp_path / "bad", TrainConfig(**{**cfg.__dict__, "basis_fit": "em"}))


def _banded_normal_equations(n=4000, K=10, inflation=(1, 1, 1, 12, 12, 12), seed=0):
    """Per-image normal equations of nested bands: each band adds ``G_j = I`` and data whose
    noise is ``inflation[j]`` times what ``G_j`` predicts (the imprint of high bands). Two
    directions carry signal (variances 9 and 4)."""
    rng = np.random.default_rng(seed)
    s = np.zeros((n, K))
    s[:, 0] = rng.normal(0, 3, n)
    s[:, 1] = rng.normal(0, 2, n)
    Gc, bc, G, b = [], [], np.zeros((n, K, K)), np.zeros((n, K))
    for f in inflation:
        G = G + np.eye(K)
        b = b + s + rng.normal(0, np.sqrt(f), (n, K))
        Gc.append(G.copy())
        bc.append(b.copy())
    return s, Gc, bc


def test_moment_prior_measures_the_noise_floor_and_the_band_choice_avoids_the_inflated_bands():
    """The floor (median whitened eigenvalue) follows the actual noise of each band, the score
    (summed signal-to-noise) peaks at the widest band before the inflated ones, and the weights
    read out there are closer to the truth than those of every band."""
    from voxfield.reconstruct.posterior import choose_band, moment_prior

    s, Gc, bc = _banded_normal_equations()
    fits = [moment_prior(G, b) for G, b in zip(Gc, bc)]
    # actual noise of band c (whitened by the predicted 1/(c+1)): sum(inflation[:c+1]) / (c+1)
    infl = np.cumsum([1, 1, 1, 12, 12, 12]) / np.arange(1, 7)
    assert np.allclose([f.floor for f in fits], infl, rtol=0.1)
    assert choose_band(fits) == 2
    # the prior's covariance recovers the signal variances (9 and 4) in weight units
    ev = np.sort(np.linalg.eigvalsh(fits[2].cov))[::-1]
    assert ev[0] == pytest.approx(9, rel=0.15) and ev[1] == pytest.approx(4, rel=0.2) and ev[2] < 0.1

    def err(c):
        G, b, f = Gc[c], bc[c], fits[c]
        P = np.linalg.inv(f.cov)
        w = np.linalg.solve(G / f.floor + P, (b / f.floor + f.mean @ P)[..., None])[..., 0]
        return float(((w - s) ** 2).sum(1).mean())

    assert err(2) < min(err(c) for c in (0, 1, 3, 4, 5))
    # without measuring the floor (too few directions), the inflated bands look like signal
    assert moment_prior(Gc[5], bc[5], measure_floor=False).score > fits[5].score * 3


def test_choose_band_prefers_the_widest_of_equal_scores_and_the_full_band_without_signal():
    from voxfield.reconstruct.posterior import MomentFit, band_candidates, choose_band

    def fit(score):
        return MomentFit(score, 1.0, np.zeros(2), np.eye(2), np.ones(2))

    assert choose_band([fit(5.0), fit(10.0), fit(9.8), fit(9.0)]) == 2  # 9.8 is within 5 % of 10
    assert choose_band([fit(0.0), fit(0.0), fit(0.0)]) == 2
    c = band_candidates(32)
    assert c[0] == 4 and c[-1] == 32 and all(b > a for a, b in zip(c, c[1:]))
    assert band_candidates(3) == [3]


def test_posterior_weights_readout_band_options(tmp_path):
    """band="auto" picks one of its candidates (with K >= MIN_K_FLOOR), an integer band uses the
    pixels up to that shell only, None every shell; bad options are clear errors."""
    from voxfield.errors import OptionError
    from voxfield.reconstruct.posterior import MIN_K_FLOOR, posterior_weights

    imgs, rot, trans, ctf, state = _two_state_data(n=300, D=16, seed=8, noise=0.5)
    cfg = TrainConfig(zdim=1, K=MIN_K_FLOOR, epochs=1, batch=32, enc_width=16, enc_blocks=1, dec_width=8,
                      invert=False, sigma_images=100, mask="none")
    run = load_run(train(imgs, rot, trans, ctf, 2.0, tmp_path / "run", cfg))
    z = run.encode(imgs, trans, ctf)
    auto = posterior_weights(run, imgs, rot, trans, ctf, z=z)
    assert auto["band_shell"] in auto["band_candidates"] and len(auto["band_scores"]) == len(auto["band_candidates"])
    assert auto["band_candidates"][-1] == 8 and auto["noise_floor"] > 0 and np.isfinite(auto["weights"]).all()
    assert auto["band_resolution"] == pytest.approx(16 * 2.0 / auto["band_shell"])
    low = posterior_weights(run, imgs, rot, trans, ctf, z=z, band=3, prior="encoder")
    full = posterior_weights(run, imgs, rot, trans, ctf, z=z, band=None, prior="encoder")
    assert low["band_shell"] == 3 and full["band_shell"] == 8 and low["band_candidates"] == []
    assert low["noise_floor"] == 1.0  # not measured without calibration
    assert not np.allclose(low["weights"], full["weights"])
    assert np.median(low["std"]) > np.median(full["std"])  # fewer pixels, wider posteriors
    with pytest.raises(OptionError, match="band"):
        posterior_weights(run, imgs, rot, trans, ctf, z=z, band="wide")
    with pytest.raises(OptionError, match="prior"):
        posterior_weights(run, imgs, rot, trans, ctf, z=z, prior="flat")
