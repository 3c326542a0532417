"""Closed-form per-image basis weights: the posterior of the linear decoder given each image.

The decoder is linear in its weights: an image's central slice is ``X = A s + a_0`` with
``A [P, K]`` the slices of the ``K`` basis volumes at the image's pose and ``a_0`` that of
the bias volume. With the CTF ``C`` and Gaussian noise of variance ``σ²`` per real component
(in the spectrally normalised units of training, one ``σ²`` per Fourier shell: normalising by
``σ̄_y``, which the signal dominates at low frequency, leaves the noise coloured), the weights
``s`` of one image have a Gaussian posterior under a Gaussian prior ``N(μ, Σ)``:

    Λ = Mᵀ Π M + Σ⁻¹,   ŝ = Λ⁻¹ (Mᵀ Π (y − C a_0) + Σ⁻¹ μ),   M = C A,   Π = diag(1 / σ²)

(complex quantities stacked as real and imaginary parts). This is RECOVAR's per-image
embedding (a regularised projection onto a linear basis, with the pose and CTF of each image)
applied to voxfield's learnt basis. The prior is empirical: the mean and covariance of the
encoder's weights ``s(z)`` over the images; ``σ²`` of each shell is the mean squared residual
of the encoder's reconstruction in that shell. At low SNR the amortised encoder, a network that must learn to
read heterogeneity from a noisy image, is the weak link; this estimate uses every pixel with
its exact noise weight instead.

The result ``ŝ`` [N, K] serves as a latent (its principal components for plots, k-means for
discrete states) and decodes to a volume with :meth:`voxfield.reconstruct.run.Run.volume_from_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from voxfield.errors import DataError

from .estep import batch_posterior, shell_sums
from .fourier import slice_basis_columns, slice_coords
from .run import Run
from .train import BatchPrep, enc_box


@torch.no_grad()
def posterior_weights(run: Run, images: Any, rot: np.ndarray, trans: np.ndarray | None, ctf: np.ndarray | None,
                      z: np.ndarray | None = None, *, batch: int = 128, prior_scale: float = 1.0,
                      prior: tuple[np.ndarray, np.ndarray] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Posterior-mean basis weights ``[N, K]`` of every image (module docstring).

    ``z`` [N, zdim]: the encoder's latents (``run.encode`` when omitted), which give the
    prior and the noise level. ``prior_scale`` multiplies the prior covariance (larger: the
    data count more); ``prior = (mean [K], cov [K, K])`` replaces the empirical prior. Returns ``{"weights" [N, K], "std" [N, K] (posterior standard
    deviations), "prior_mean" [K], "prior_cov" [K, K], "noise_var" (overall, as a 0-d array),
    "noise_var_shell" [n_shells]}``.
    """
    if run.zdim == 0 or run.model.K == 0:
        raise DataError("this run is homogeneous (zdim 0): it has no basis weights")
    N = int(images.shape[0])
    if rot.shape[0] != N:
        raise DataError(f"{rot.shape[0]} poses for {N} images")
    dev = run.device
    model = run.model
    if z is None:
        z = run.encode(images, trans, ctf)
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=dev)
    if prior is None:
        s_enc = model.weights(zt).double()  # [N, K]
        mu = s_enc.mean(0)
        cov = torch.cov(s_enc.T).reshape(model.K, model.K) * float(prior_scale)
    else:
        mu = torch.as_tensor(np.asarray(prior[0], dtype=np.float64).reshape(model.K), device=dev)
        cov = torch.as_tensor(np.asarray(prior[1], dtype=np.float64).reshape(model.K, model.K), device=dev)
        if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
            raise DataError("posterior_weights: prior has NaN or infinite values")
    cov = cov + torch.eye(model.K, dtype=cov.dtype, device=dev) * (1e-6 * float(torch.trace(cov)) / model.K + 1e-12)
    prec0 = torch.linalg.inv(cov)
    prep = BatchPrep(run.D, run.apix, dev, run.cfg.mask_radius, enc_box(run.D, run.cfg))
    sig_p = torch.as_tensor(run.sigma, dtype=torch.float32, device=dev)[prep.shell]
    tb = model.tables(dev)
    W = model.basis.detach()
    # noise level: residual of the encoder's reconstruction on a sample of images
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(N, size=min(N, 512), replace=False))
    n_shell = int(prep.shell.max()) + 1
    res2 = torch.zeros(n_shell, dtype=torch.float64, device=dev)
    cnt = torch.zeros(n_shell, dtype=torch.float64, device=dev)
    shell_px = 2 * torch.bincount(prep.shell, minlength=n_shell).double()  # real components per image
    for i in range(0, len(sample), batch):
        j = sample[i : i + batch]
        y, C, _ = prep(images[j], None if trans is None else trans[j], None if ctf is None else ctf[j], run.scale)
        y = y / sig_p
        r = torch.as_tensor(np.asarray(rot[j], dtype=np.float32), device=dev)
        X = model.slices(zt[j], r, prep.kxy, False)
        d = y - C * torch.complex(X[..., 0], X[..., 1])
        res2 += shell_sums(d.real**2 + d.imag**2, prep.shell, n_shell)
        cnt += len(j) * shell_px
    noise = float(res2.sum() / cnt.sum().clamp_min(1))
    noise_shell = torch.where(cnt > 0, res2 / cnt.clamp_min(1), torch.full_like(res2, noise)).clamp_min(1e-30)
    pix_prec = (1.0 / noise_shell[prep.shell]).float()
    out = np.zeros((N, model.K), dtype=np.float32)
    std = np.zeros((N, model.K), dtype=np.float32)
    for i in range(0, N, batch):
        j = np.arange(i, min(N, i + batch))
        y, C, _ = prep(images[j], None if trans is None else trans[j], None if ctf is None else ctf[j], run.scale)
        y = y / sig_p
        r = torch.as_tensor(np.asarray(rot[j], dtype=np.float32), device=dev)
        rows, wts, sgn = tb.neighbours(slice_coords(prep.kxy, r))
        A = slice_basis_columns(W, rows, wts, sgn)  # [B, P, 2, K1]
        s_hat, L = batch_posterior(A, C, y, pix_prec, prec0, mu)
        out[j] = s_hat.float().cpu().numpy()
        std[j] = torch.linalg.diagonal(torch.cholesky_inverse(L)).clamp_min(0).sqrt().float().cpu().numpy()
        if progress:
            progress(int(j[-1]) + 1, N)
    return {"weights": out, "std": std, "prior_mean": mu.float().cpu().numpy(),
            "prior_cov": cov.float().cpu().numpy(), "noise_var": np.asarray(noise),
            "noise_var_shell": noise_shell.float().cpu().numpy()}
