"""Structural-basis VAE (paper 004, Kimanius et al.): encoder, latent → basis weights, Fourier basis.

The decoder of a latent ``z`` is the Fourier volume ``V(z) = Σ_k s_k(z) V_k + V_0``: ``K``
learnable *structural basis* volumes ``V_k`` and a bias ``V_0``, stored only inside the
Nyquist sphere on the canonical half grid (:mod:`voxfield.reconstruct.fourier`), weighted by a
small residual MLP ``s(z)``. Images are compared with central slices interpolated straight
from the basis; the full volume is only formed for output (one matrix–vector product over the
stored voxels and an inverse FFT).

The encoder follows the paper's code: the masked, CTF-sign-flipped real-space image, flattened,
through a linear layer and residual GELU blocks, to the mean and log-variance of ``z``.
With ``zdim = 0`` the model is a single (homogeneous) volume, ``V_0``.
"""

from __future__ import annotations

import torch
from torch import nn

from .fourier import HalfSphere, SliceTables, slice_basis, slice_coords


class ResBlock(nn.Module):
    """``x + Linear(GELU(Linear(LayerNorm(x))))``."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class Encoder(nn.Module):
    """Image (flattened, ``in_dim``) → ``(mu, logvar)`` of a ``zdim``-dimensional Gaussian."""

    def __init__(self, in_dim: int, zdim: int, width: int = 256, blocks: int = 5):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 2 * zdim)
        self.zdim = zdim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.inp(x))
        o = self.out(nn.functional.gelu(self.norm(h)))
        return o[:, : self.zdim], o[:, self.zdim :].clamp(-12.0, 6.0)


class BasisWeights(nn.Module):
    """Latent ``z`` → basis weights ``s(z)`` (``K``): a three-layer residual MLP."""

    def __init__(self, zdim: int, K: int, width: int = 64):
        super().__init__()
        self.inp = nn.Linear(zdim, width)
        self.block = ResBlock(width)
        self.out = nn.Linear(width, K)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(nn.functional.gelu(self.block(self.inp(z))))


class StructuralBasisVAE(nn.Module):
    """The full model. ``basis`` holds ``[R, 2, K + 1]`` (real/imaginary; the last column is the bias volume)."""

    def __init__(
        self,
        hs: HalfSphere,
        *,
        zdim: int = 8,
        K: int = 16,
        enc_in: int = 64 * 64,
        enc_width: int = 256,
        enc_blocks: int = 5,
        dec_width: int = 64,
        init_scale: float = 1e-3,
        seed: int = 0,
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.zdim = int(zdim)
        self.K = int(K) if zdim > 0 else 0
        self.hs = hs
        if self.zdim > 0:
            self.encoder = Encoder(enc_in, self.zdim, enc_width, enc_blocks)
            self.weights = BasisWeights(self.zdim, self.K, dec_width)
        else:
            self.encoder = None
            self.weights = None
        w = torch.randn(hs.n_rows, 2, self.K + 1, generator=g) * init_scale
        self.basis = nn.Parameter(w)
        self._tables: dict[str, SliceTables] = {}

    def tables(self, device: torch.device) -> SliceTables:
        key = str(device)
        if key not in self._tables:
            self._tables[key] = SliceTables(self.hs, device)
        return self._tables[key]

    def basis_weights(self, z: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``[B, K + 1]`` weights including the fixed 1 of the bias volume."""
        ones = self.basis.new_ones(batch, 1)
        if self.K == 0 or z is None:
            return ones
        return torch.cat([self.weights(z), ones], dim=1)

    def slices(self, z: torch.Tensor | None, rot: torch.Tensor, kxy: torch.Tensor, sparse: bool) -> torch.Tensor:
        """Complex central slices ``[B, P]`` (as ``[B, P, 2]``) at pixels ``kxy`` for poses ``rot``."""
        tb = self.tables(rot.device)
        xyz = slice_coords(kxy, rot)
        rows, wts, sgn = tb.neighbours(xyz)
        s = self.basis_weights(z, rot.shape[0])
        return slice_basis(s, self.basis, rows, wts, sgn, sparse)

    def row_values(self, z: torch.Tensor | None) -> torch.Tensor:
        """Complex values of every stored row for one latent (``z [zdim]`` or ``None``)."""
        s = self.basis_weights(None if z is None else z[None], 1)[0]
        v = torch.einsum("rck,k->rc", self.basis, s)
        return torch.complex(v[:, 0], v[:, 1])

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the basis (optimised with dense Adam)."""
        return [p for n, p in self.named_parameters() if n != "basis"]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, ``[B]``."""
    return 0.5 * torch.sum(mu * mu + logvar.exp() - 1.0 - logvar, dim=1)


def n_parameters(model: nn.Module) -> int:
    """Number of scalar parameters."""
    return int(sum(p.numel() for p in model.parameters()))

