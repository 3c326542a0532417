"""Solvent/focus masks of the structural basis (voxfield.reconstruct.masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxfield.errors import DataError, OptionError
from voxfield.reconstruct.fourier import half_sphere, volume_to_rows
from voxfield.reconstruct.masks import BasisProjector, auto_mask, resolve_mask, sphere_mask


def _blob(D: int, centre: tuple[float, float, float], sigma: float) -> np.ndarray:
    ax = np.arange(D) - D // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    return np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / (2 * sigma**2))


def _rows(vol: np.ndarray, hs, sigma: np.ndarray) -> np.ndarray:
    r = volume_to_rows(vol, hs)
    kr = np.sqrt((hs.coords.astype(float) ** 2).sum(1))
    return r / np.interp(kr, np.arange(len(sigma)), sigma)


def test_projection_masks_the_physical_volume_and_is_idempotent():
    D = 16
    hs = half_sphere(D)
    sigma = np.linspace(3.0, 0.5, D // 2 + 1)  # a spectral normalisation that is far from flat
    rng = np.random.default_rng(0)
    vols = [_blob(D, (2, -1, 0), 2.0) + 0.3 * rng.normal(size=(D,) * 3) for _ in range(3)]
    W = torch.zeros(hs.n_rows, 2, 3)
    for k, v in enumerate(vols):
        r = _rows(v, hs, sigma)
        W[:, 0, k] = torch.as_tensor(r.real, dtype=torch.float32)
        W[:, 1, k] = torch.as_tensor(r.imag, dtype=torch.float32)
    proj = BasisProjector(hs, sigma, torch.device("cpu"))
    before = np.fft.fftshift(proj.volumes(W).numpy(), axes=(1, 2, 3))
    # the lift to real space reproduces the volumes, band-limited to Nyquist as decoding renders them
    from voxfield.reconstruct.fourier import rows_to_volume_ft, volume_from_ft

    decoded0 = volume_from_ft(rows_to_volume_ft(volume_to_rows(vols[0], hs), hs), D)
    assert np.corrcoef(before[0].ravel(), decoded0.ravel())[0, 1] > 0.999
    m = (_blob(D, (2, -1, 0), 3.0) > 0.2).astype(np.float32)
    focus = (_blob(D, (2, -1, 0), 3.0) > 0.6).astype(np.float32)
    proj.set_masks(m, focus)
    proj.project(W)
    after = np.fft.fftshift(proj.volumes(W).numpy(), axes=(1, 2, 3))
    out = m == 0
    # the solvent is (nearly: the rows are band-limited to a sphere) empty, and much emptier than before
    assert np.abs(after[:, out]).max() < 0.25 * np.abs(before[:, out]).max()
    assert np.abs(after[:2, focus == 0]).mean() < np.abs(after[2, focus == 0]).mean()  # focus: not the bias
    inside = m == 1
    assert np.corrcoef(after[2][inside], before[2][inside])[0, 1] > 0.95
    W2 = W.clone()
    proj.project(W2)  # a second projection changes the rendered volumes little
    again = np.fft.fftshift(proj.volumes(W2).numpy(), axes=(1, 2, 3))
    assert np.linalg.norm(again - after) < 0.15 * np.linalg.norm(after)


def test_projection_works_on_what_decoding_renders_and_iterations_reduce_leakage():
    """The projector lifts rows to the same volume decoding renders (voxels within Nyquist), so
    a hard-edged focus mask leaks only through the spectrum masking adds beyond Nyquist; more
    alternating passes leave less of it."""
    from voxfield.reconstruct.fourier import rows_to_volume_ft, volume_from_ft

    D = 16
    hs = half_sphere(D)
    sigma = np.ones(D // 2 + 3)
    rng = np.random.default_rng(1)
    W = torch.zeros(hs.n_rows, 2, 3)
    for k in range(3):
        r = _rows(_blob(D, (0, 0, 2), 3.0) + 0.5 * rng.normal(size=(D,) * 3), hs, sigma)
        W[:, 0, k] = torch.as_tensor(r.real, dtype=torch.float32)
        W[:, 1, k] = torch.as_tensor(r.imag, dtype=torch.float32)
    proj = BasisProjector(hs, sigma, torch.device("cpu"))
    vals = torch.complex(W[:, 0, 0], W[:, 1, 0]).numpy()
    decoded = volume_from_ft(rows_to_volume_ft(vals, hs), D)  # decoding's rendering, without its gridding factor
    lifted = np.fft.fftshift(proj.volumes(W)[0].numpy())
    assert np.abs(lifted - decoded).max() < 1e-4 * np.abs(decoded).max()
    focus = np.zeros((D,) * 3, np.float32)
    focus[:, :, D // 2 :] = 1.0  # a hard edge: the worst case for a band-limited volume
    proj.set_masks(None, focus)

    def leakage(iterations: int) -> float:
        w = W.clone()
        proj.project(w, iterations=iterations)
        v = np.fft.fftshift(proj.volumes(w)[:2].numpy(), axes=(1, 2, 3))
        return float(np.abs(v[:, :, :, : D // 2 - 2]).max() / np.abs(v).max())

    one, four = leakage(1), leakage(4)  # measured: 0.18 and 0.054 for this noisy basis
    assert four < 0.5 * one
    assert four < 0.08


def test_auto_mask_covers_the_particle_not_the_box():
    D = 32
    v = _blob(D, (0, 0, 4), 2.5) + 0.4 * _blob(D, (0, 0, -5), 2.5)  # a half-occupied second lobe
    m = auto_mask(v)
    assert m[D // 2, D // 2, D // 2 + 4] == pytest.approx(1.0)
    assert m[D // 2, D // 2, D // 2 - 5] == pytest.approx(1.0)
    assert m[2, 2, 2] == 0.0
    assert 0.01 < m.mean() < 0.4
    with pytest.raises(DataError):
        auto_mask(-v)


def test_resolve_mask_kinds(tmp_path):
    assert resolve_mask("auto", 16) == ("auto", None)
    assert resolve_mask("none", 16) == ("none", None)
    kind, m = resolve_mask("sphere", 16)
    assert kind == "sphere" and m.shape == (16, 16, 16) and m[8, 8, 8] == 1.0 and m[0, 0, 0] == 0.0
    assert np.array_equal(sphere_mask(16), m)
    with pytest.raises(OptionError):
        resolve_mask(str(tmp_path / "missing.mrc"), 16)
    import mrcfile

    with mrcfile.new(tmp_path / "m.mrc") as f:
        f.set_data(np.ones((8, 8, 8), np.float32))
    with pytest.raises(DataError, match="particles need"):
        resolve_mask(str(tmp_path / "m.mrc"), 16)
