"""Per-image Gaussian posterior of the basis weights for one batch: the E-step shared by
training (``basis_fit="posterior"``) and :func:`voxfield.reconstruct.posterior.posterior_weights`.

For an image with data ``y`` (``[P]`` complex, spectrally normalised), CTF ``C`` and slice
columns ``A`` (``[P, K + 1]`` complex, the last the bias volume), the weights ``s`` of the
``K`` heterogeneous columns have the posterior ``N(ŝ, Λ⁻¹)`` with

    M = C A[:, :K] (real and imaginary parts stacked),  r = y − C A[:, K],
    Λ = Mᵀ diag(π) M + Σ⁻¹,   ŝ = Λ⁻¹ (Mᵀ diag(π) r + Σ⁻¹ μ)

where ``π`` is the precision of each real component (the likelihood weight over the noise
variance) and ``N(μ, Σ)`` the prior.
"""

from __future__ import annotations

import torch


def design(A: torch.Tensor, C: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear model of a batch, real and imaginary parts stacked (float64): ``M [B, 2P, K]``
    (the CTF-multiplied slice columns of the ``K`` heterogeneous volumes) and ``r [B, 2P]``
    (the data less the CTF-multiplied bias slice). Arguments as in :func:`batch_posterior`."""
    Ac = torch.complex(A[:, :, 0, :], A[:, :, 1, :]) * C[:, :, None]  # [B, P, K1]
    M = torch.cat([Ac[..., :-1].real, Ac[..., :-1].imag], dim=1).double()
    rc = y - Ac[..., -1]
    return M, torch.cat([rc.real, rc.imag], dim=1).double()


def batch_posterior(A: torch.Tensor, C: torch.Tensor, y: torch.Tensor, precision: torch.Tensor,
                    prior_prec: torch.Tensor, prior_mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means ``ŝ [B, K]`` and Cholesky factors ``L [B, K, K]`` of the precisions ``Λ = L Lᵀ``.

    ``A [B, P, 2, K + 1]`` (real/imaginary slice columns), ``C [B, P]`` (real CTF), ``y [B, P]``
    (complex data), ``precision [P]`` or ``[B, P]`` (per real component), ``prior_prec [K, K]``,
    ``prior_mean [K]`` or ``[B, K]``. Computed in float64.
    """
    M, r = design(A, C, y)
    pi = precision.double()
    pi = torch.cat([pi, pi], dim=-1)
    Mw = M * (pi[..., :, None] if pi.dim() == 2 else pi[None, :, None])
    P0 = prior_prec.double()
    m0 = prior_mean.double()
    prec = Mw.transpose(1, 2) @ M + P0
    rhs = (Mw.transpose(1, 2) @ r[..., None])[..., 0] + (m0 @ P0.T if m0.dim() == 2 else (P0 @ m0)[None])
    L = torch.linalg.cholesky(prec)
    s_hat = torch.cholesky_solve(rhs[..., None], L)[..., 0]
    return s_hat, L


def sample_posterior(s_hat: torch.Tensor, L: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw ``ŝ + L⁻ᵀ ε`` (``ε ~ N(0, I)``) from each posterior of :func:`batch_posterior`."""
    eps = torch.randn(s_hat.shape, dtype=s_hat.dtype, device=s_hat.device, generator=generator)
    return s_hat + torch.linalg.solve_triangular(L.transpose(1, 2), eps[..., None], upper=True)[..., 0]


def shell_sums(power: torch.Tensor, shell: torch.Tensor, n_shell: int) -> torch.Tensor:
    """Sum over a batch of the per-pixel values ``power [B, P]`` in each Fourier shell
    (``shell [P]`` integer indices): ``[n_shell]`` in float64. With squared residuals it gives
    the per-shell noise levels of the E-step (divided by the shell's pixel count)."""
    return torch.bincount(shell, weights=power.sum(0).double(), minlength=n_shell)
