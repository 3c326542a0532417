"""Closed-form per-image basis weights: the posterior of the linear decoder given each image.

The decoder is linear in its weights: an image's central slice is ``X = A s + a_0`` with
``A [P, K]`` the slices of the ``K`` basis volumes at the image's pose and ``a_0`` that of
the bias volume. With the CTF ``C`` and Gaussian noise of variance ``σ²`` per real component
(in the spectrally normalised units of training, one ``σ²`` per Fourier shell: normalising by
``σ̄_y``, which the signal dominates at low frequency, leaves the noise coloured), the weights
``s`` of one image have a Gaussian posterior under a Gaussian prior ``N(μ, Σ)``:

    Λ = Mᵀ Π M / f + Σ⁻¹,   ŝ = Λ⁻¹ (Mᵀ Π (y − C a_0) / f + Σ⁻¹ μ),   M = C A,   Π = diag(1 / σ²)

(complex quantities stacked as real and imaginary parts). This is RECOVAR's per-image
embedding (a regularised projection onto a linear basis, with the pose and CTF of each image)
applied to voxfield's learnt basis. ``σ²`` of each shell is the mean squared residual of the
encoder's reconstruction in that shell.

**The imprint, and the readout band.** The basis was fitted to these very images, so it carries
a little of each image's noise: an image's own weights fit its noise better than the noise level
predicts. The imprint adds up coherently over an image's pixels and is largest where the basis
holds least signal, at high frequency. Measured on held-out images of the CryoBench-style sets,
the least-squares weights of training images vary about six times more than predicted along
directions without signal, against about 1.0–1.1 times on images the basis never saw; restricting
the readout to shells up to ~1/3 of Nyquist brings it back to 1.1–1.4 while keeping most of the
signal. So the readout uses the pixels up to a shell cutoff (``band``), chosen from the data:

* for each candidate cutoff (:func:`band_candidates`) the least-squares weights ``S`` of a
  calibration sample are whitened by their predicted noise covariance ``P̄`` (mean of
  ``(MᵀΠM)⁻¹``); the eigenvalues ``λ`` of their covariance are ``1 + signal`` per direction
  when the prediction holds, and the directions without signal sit at the **noise floor**
  ``f`` (their median, with at least :data:`MIN_K_FLOOR` basis volumes; 1 with fewer);
* the score ``Σ max(λ/f − 1, 0)``, the signal-to-noise summed over directions, is computed
  for each cutoff; the widest cutoff within :data:`BAND_TOLERANCE` of the best is used.

The prior is then the **noise-corrected moment prior** of that band (``prior="moment"``, the
default): ``μ`` the mean of ``S`` and ``Σ = P̄^½ V diag(max(λ − f, 10⁻³ f)) Vᵀ P̄^½``; the
likelihood is divided by the floor ``f`` (the noise the data show, not the one predicted).
``prior="encoder"`` uses the mean and covariance of the encoder's weights ``s(z)`` instead.

The result ``ŝ`` [N, K] serves as a latent (its principal components for plots, k-means for
discrete states) and decodes to a volume with :meth:`voxfield.reconstruct.run.Run.volume_from_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from voxfield.errors import DataError, OptionError

from .estep import batch_posterior, design, shell_sums
from .fourier import slice_basis_columns, slice_coords
from .run import Run
from .train import BatchPrep, enc_box

#: Images that choose the band and give the moment prior (a seeded sample when there are more).
CALIBRATION_IMAGES = 5000
#: Cutoffs whose score is within this fraction of the best count as equal; the widest is used.
BAND_TOLERANCE = 0.05
#: With fewer basis volumes there are too few directions without signal to measure the noise
#: floor: the floor is then 1 (the predicted noise) and ``band="auto"`` uses every shell.
MIN_K_FLOOR = 8
#: Priors by name (or give ``(mean, cov)``).
PRIORS = ("moment", "encoder")


def band_candidates(max_shell: int, first: int = 4, ratio: float = 1.2) -> list[int]:
    """Shell cutoffs that ``band="auto"`` compares: ``first`` to ``max_shell``, about ``ratio`` apart."""
    out: list[int] = []
    c = min(int(first), int(max_shell))
    while c < max_shell:
        out.append(c)
        c = max(c + 1, int(round(c * ratio)))
    out.append(int(max_shell))
    return out


@dataclass
class MomentFit:
    """The noise-corrected moment prior of one band (module docstring): ``score`` (summed
    signal-to-noise), ``floor`` ``f``, prior ``mean [K]`` and ``cov [K, K]``, and the whitened
    eigenvalues ``eig [K]`` (descending)."""

    score: float
    floor: float
    mean: np.ndarray
    cov: np.ndarray
    eig: np.ndarray


def moment_prior(G: np.ndarray, b: np.ndarray, *, measure_floor: bool = True) -> MomentFit:
    """The noise-corrected moment prior from per-image normal equations ``G [n, K, K]``
    (``MᵀΠM``) and ``b [n, K]`` (``MᵀΠr``): see the module docstring. ``measure_floor=False``
    takes the floor as 1 (the predicted noise)."""
    G = np.asarray(G, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, K = b.shape
    if n < 2:
        raise DataError("posterior_weights: at least 2 images are needed for the moment prior")
    ridge = 1e-6 * max(float(np.trace(G.mean(0))) / K, 1e-30)
    H = G + ridge * np.eye(K)
    S = np.linalg.solve(H, b[..., None])[..., 0]
    pbar = np.linalg.inv(H).mean(0)
    e, Q = np.linalg.eigh((pbar + pbar.T) / 2)
    e = np.clip(e, 1e-30, None)
    wh, whi = (Q * e**-0.5) @ Q.T, (Q * e**0.5) @ Q.T
    lam, V = np.linalg.eigh(wh @ np.cov(S.T, bias=True).reshape(K, K) @ wh)
    lam, V = lam[::-1], V[:, ::-1]
    f = max(float(np.median(lam)), 1e-6) if measure_floor else 1.0
    cov = whi @ (V * np.clip(lam - f, 1e-3 * f, None)) @ V.T @ whi
    score = float(np.clip(lam / f - 1.0, 0.0, None).sum())
    return MomentFit(score, f, S.mean(0), (cov + cov.T) / 2, lam)


def choose_band(fits: list[MomentFit], tolerance: float = BAND_TOLERANCE) -> int:
    """Index of the widest band whose score is within ``tolerance`` of the best (the last,
    widest, band when no band shows any signal)."""
    scores = np.array([f.score for f in fits])
    best = float(scores.max()) if len(scores) else 0.0
    if not best > 0:
        return len(fits) - 1
    return int(np.nonzero(scores >= (1.0 - tolerance) * best)[0].max())


@torch.no_grad()
def posterior_weights(run: Run, images: Any, rot: np.ndarray, trans: np.ndarray | None, ctf: np.ndarray | None,
                      z: np.ndarray | None = None, *, batch: int = 128,
                      prior: str | tuple[np.ndarray, np.ndarray] | None = "moment", band: int | str | None = "auto",
                      prior_scale: float = 1.0,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Posterior-mean basis weights ``[N, K]`` of every image (module docstring).

    ``z`` [N, zdim]: the encoder's latents (``run.encode`` when omitted), which give the noise
    level per shell (and the ``"encoder"`` prior). ``prior``: ``"moment"`` (default; ``None``
    means the same), ``"encoder"`` (its covariance times ``prior_scale``), or ``(mean [K],
    cov [K, K])``. ``band``: ``"auto"`` (default), a shell cutoff (pixels up to that Fourier
    shell, in pixels of the box), or ``None`` for every shell. Returns ``{"weights" [N, K],
    "std" [N, K] (posterior standard deviations), "prior_mean" [K], "prior_cov" [K, K],
    "noise_var" (overall, 0-d), "noise_var_shell" [n_shells], "band_shell" (the cutoff used),
    "band_resolution" (Å), "noise_floor" (f; 1 when not measured), "band_candidates",
    "band_scores" (lists; empty unless ``band="auto"``)}``.
    """
    if run.zdim == 0 or run.model.K == 0:
        raise DataError("this run is homogeneous (zdim 0): it has no basis weights")
    N = int(images.shape[0])
    if rot.shape[0] != N:
        raise DataError(f"{rot.shape[0]} poses for {N} images")
    if prior is None:
        prior = "moment"
    if isinstance(prior, str) and prior not in PRIORS:
        raise OptionError(f"unknown prior {prior!r}: use {' or '.join(PRIORS)}, or give (mean, cov)")
    dev = run.device
    model = run.model
    K = model.K
    prep = BatchPrep(run.D, run.apix, dev, run.cfg.mask_radius, enc_box(run.D, run.cfg))
    n_shell = int(prep.shell.max()) + 1
    max_shell = n_shell - 1
    if band is None:
        cuts = [max_shell]
    elif isinstance(band, str):
        if band != "auto":
            raise OptionError(f"band must be 'auto', a shell number or None, got {band!r}")
        cuts = band_candidates(max_shell) if K >= MIN_K_FLOOR else [max_shell]
    else:
        if int(band) < 1:
            raise OptionError(f"band must be a shell >= 1, got {band}")
        cuts = [min(int(band), max_shell)]
    if z is None:
        z = run.encode(images, trans, ctf)
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=dev)
    sig_p = torch.as_tensor(run.sigma, dtype=torch.float32, device=dev)[prep.shell]
    tb = model.tables(dev)
    W = model.basis.detach()

    def batch_data(j: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, C, _ = prep(images[j], None if trans is None else trans[j], None if ctf is None else ctf[j], run.scale)
        return y / sig_p, C, torch.as_tensor(np.asarray(rot[j], dtype=np.float32), device=dev)

    # noise level: residual of the encoder's reconstruction on a sample of images
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(N, size=min(N, 512), replace=False))
    res2 = torch.zeros(n_shell, dtype=torch.float64, device=dev)
    cnt = torch.zeros(n_shell, dtype=torch.float64, device=dev)
    shell_px = 2 * torch.bincount(prep.shell, minlength=n_shell).double()  # real components per image
    for i in range(0, len(sample), batch):
        j = sample[i : i + batch]
        y, C, r = batch_data(j)
        X = model.slices(zt[j], r, prep.kxy, False)
        d = y - C * torch.complex(X[..., 0], X[..., 1])
        res2 += shell_sums(d.real**2 + d.imag**2, prep.shell, n_shell)
        cnt += len(j) * shell_px
    noise = float(res2.sum() / cnt.sum().clamp_min(1))
    noise_shell = torch.where(cnt > 0, res2 / cnt.clamp_min(1), torch.full_like(res2, noise)).clamp_min(1e-30)
    pix_prec = (1.0 / noise_shell[prep.shell]).float()

    def columns(r: torch.Tensor) -> torch.Tensor:
        rows, wts, sgn = tb.neighbours(slice_coords(prep.kxy, r))
        return slice_basis_columns(W, rows, wts, sgn)  # [B, P, 2, K + 1]

    # calibration: per-image normal equations of each candidate band, on a sample of images
    fits: list[MomentFit] = []
    if prior == "moment" or len(cuts) > 1:
        cal = np.arange(N) if N <= CALIBRATION_IMAGES else np.sort(rng.choice(N, CALIBRATION_IMAGES, replace=False))
        order = torch.argsort(prep.shell, stable=True)
        order = order[prep.shell[order] <= cuts[-1]]
        bounds = torch.searchsorted(prep.shell[order], torch.as_tensor(cuts, device=dev), right=True).tolist()
        Gs = np.zeros((len(cuts), len(cal), K, K), dtype=np.float32)
        bs = np.zeros((len(cuts), len(cal), K), dtype=np.float32)
        for i in range(0, len(cal), batch):
            j = cal[i : i + batch]
            y, C, r = batch_data(j)
            M, rr = design(columns(r)[:, order], C[:, order], y[:, order])
            half = M.shape[1] // 2
            w = pix_prec[order].double()
            Mw = M * torch.cat([w, w])[None, :, None]
            G = torch.zeros(len(j), K, K, dtype=torch.float64, device=dev)
            bb = torch.zeros(len(j), K, dtype=torch.float64, device=dev)
            lo = 0
            for c, hi in enumerate(bounds):
                for off in (0, half):
                    part = slice(off + lo, off + hi)
                    G += Mw[:, part].transpose(1, 2) @ M[:, part]
                    bb += (Mw[:, part].transpose(1, 2) @ rr[:, part, None])[..., 0]
                Gs[c, i : i + len(j)] = G.cpu().numpy()
                bs[c, i : i + len(j)] = bb.cpu().numpy()
                lo = hi
        fits = [moment_prior(Gs[c], bs[c], measure_floor=K >= MIN_K_FLOOR) for c in range(len(cuts))]
        del Gs, bs
    pick = choose_band(fits) if len(cuts) > 1 else 0
    cut = cuts[pick]
    floor = fits[pick].floor if fits else 1.0
    if isinstance(prior, tuple):
        mu = torch.as_tensor(np.asarray(prior[0], dtype=np.float64).reshape(K), device=dev)
        cov = torch.as_tensor(np.asarray(prior[1], dtype=np.float64).reshape(K, K), device=dev)
        if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
            raise DataError("posterior_weights: prior has NaN or infinite values")
    elif prior == "encoder":
        s_enc = model.weights(zt).double()  # [N, K]
        mu = s_enc.mean(0)
        cov = torch.cov(s_enc.T).reshape(K, K) * float(prior_scale)
    else:
        mu = torch.as_tensor(fits[pick].mean, device=dev)
        cov = torch.as_tensor(fits[pick].cov, device=dev)
    cov = cov + torch.eye(K, dtype=cov.dtype, device=dev) * (1e-6 * float(torch.trace(cov)) / K + 1e-12)
    prec0 = torch.linalg.inv(cov)
    sel = torch.nonzero(prep.shell <= cut)[:, 0]
    prec_sel = pix_prec[sel] / floor
    out = np.zeros((N, K), dtype=np.float32)
    std = np.zeros((N, K), dtype=np.float32)
    for i in range(0, N, batch):
        j = np.arange(i, min(N, i + batch))
        y, C, r = batch_data(j)
        s_hat, L = batch_posterior(columns(r)[:, sel], C[:, sel], y[:, sel], prec_sel, prec0, mu)
        out[j] = s_hat.float().cpu().numpy()
        std[j] = torch.linalg.diagonal(torch.cholesky_inverse(L)).clamp_min(0).sqrt().float().cpu().numpy()
        if progress:
            progress(int(j[-1]) + 1, N)
    return {"weights": out, "std": std, "prior_mean": mu.float().cpu().numpy(),
            "prior_cov": cov.float().cpu().numpy(), "noise_var": np.asarray(noise),
            "noise_var_shell": noise_shell.float().cpu().numpy(), "band_shell": int(cut),
            "band_resolution": float(run.D * run.apix / max(cut, 1)), "noise_floor": float(floor),
            "band_candidates": cuts if len(cuts) > 1 else [],
            "band_scores": [f.score for f in fits] if len(cuts) > 1 else []}
