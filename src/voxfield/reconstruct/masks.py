"""Solvent and focus masks for the structural basis (``voxfield reconstruct train --mask/--focus-mask``).

The basis volumes live in Fourier space, so a real-space mask cannot be applied per slice.
Instead :class:`BasisProjector` projects the whole basis onto the masked space every few
hundred images (the way RELION flattens the solvent of its references every iteration):
each column of the basis becomes a volume (rows times the spectral normalisation, inverse
FFT), is multiplied by its mask, and goes back to rows. Between projections training
stays sparse; a projection of ``K + 1`` volumes costs two FFTs each.

* ``mask`` (solvent mask) applies to every basis volume, the bias included. ``auto`` builds
  it from the current average volume once training has seen enough images
  (:func:`auto_mask`) and rebuilds it at every epoch end; when the average gives no plausible
  mask (it covers more than ``MASK_FRACTION_RANGE``'s upper end of the box: a particle that
  fills the box, or an average that is still noise) there is no solvent mask until the next
  rebuild; ``sphere`` is a soft sphere; a path
  reads an MRC mask on the particles' grid; ``none`` disables it.
* ``focus`` (focus mask, optional) applies only to the heterogeneous basis volumes
  ``V_1 … V_K``: the latent then describes variability inside the focus region only, while
  the bias volume ``V_0`` keeps the whole particle.

Noise outside the particle carries no information, yet without a mask the basis fits it;
removing it raises the FSC of every decoded volume against the truth.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from voxfield.errors import DataError, OptionError

from .fourier import HalfSphere, half_grid_lookup

#: Fraction of the box a usable solvent mask may cover (outside this range ``auto`` falls back to a sphere).
MASK_FRACTION_RANGE = (0.005, 0.7)


def sphere_mask(D: int, radius: float | None = None, soft_px: float | None = None) -> np.ndarray:
    """Soft spherical mask ``[D, D, D]`` (origin at voxel ``D/2``): 1 inside ``radius`` (default
    ``D/2 − soft_px``: the edge ends at the box's inscribed sphere), raised-cosine edge
    ``soft_px`` wide (default ``max(2, D/16)`` voxels)."""
    soft_px = max(2.0, D / 16) if soft_px is None else float(soft_px)
    r0 = D / 2 - soft_px if radius is None else float(radius)
    ax = np.arange(D) - D // 2
    rr = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    t = np.clip((rr - r0) / max(soft_px, 1e-6), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)


def auto_mask(volume: np.ndarray, *, smooth_px: float = 1.5, threshold_frac: float = 0.08, dilate_px: int = 3,
              soft_px: int = 5) -> np.ndarray:
    """Solvent mask from an average volume: Gaussian-smoothed (``smooth_px``), thresholded at
    ``threshold_frac`` of its maximum, dilated by ``dilate_px`` voxels, raised-cosine edge
    ``soft_px`` wide (:func:`voxfield.reconstruct.evaluate.soft_mask_from_volume`).

    The threshold is low on purpose: a moving domain or a partly occupied subunit is smeared
    in the average and must stay inside.
    """
    from scipy import ndimage

    from .evaluate import soft_mask_from_volume

    v = ndimage.gaussian_filter(np.asarray(volume, dtype=np.float64), smooth_px)
    top = float(v.max())
    if not np.isfinite(v).all() or top <= 0:
        raise DataError("auto mask: the average volume has no positive density")
    return soft_mask_from_volume(v, threshold=threshold_frac * top, dilate_px=dilate_px, soft_px=soft_px)


def read_mask(path: str | os.PathLike[str], D: int) -> np.ndarray:
    """A mask file (MRC or any volume format voxfield reads) on the ``D³`` grid, values clipped to [0, 1]."""
    from voxfield.io.registry import read_volume

    vol = read_volume(path)
    m = np.squeeze(np.asarray(vol.data, dtype=np.float32))
    if m.shape != (D, D, D):
        raise DataError(f"mask is {m.shape}, the particles need ({D}, {D}, {D})", path)
    if not np.isfinite(m).all():
        raise DataError("mask has NaN or infinite values", path)
    m = np.clip(m, 0.0, 1.0)
    if float(m.max()) <= 0:
        raise DataError("mask is empty (no voxel > 0)", path)
    return m


def mask_fraction(mask: np.ndarray) -> float:
    """Mean of the mask: the fraction of the box it keeps."""
    return float(np.mean(mask))


class BasisProjector:
    """Projects basis columns ``W [R, 2, K + 1]`` (normalised Fourier rows) onto real-space masks.

    ``gain [R]`` converts a row to data units (the spectral normalisation σ̄ at the row's
    radius), so the mask acts on the physical volume. ``mask`` applies to every column,
    ``focus`` additionally to columns ``0 … K − 1`` (not the last, the bias).
    """

    def __init__(self, hs: HalfSphere, sigma: np.ndarray, device: torch.device) -> None:
        D = hs.D
        self.D, self.dev = D, device
        # volumes are rendered from the voxels within Nyquist, exactly as decoding renders them
        # (voxfield.reconstruct.run.Run); the rows of the stored shell beyond Nyquist would put
        # frequencies into the masked volume that decoded volumes never have, and the mask would
        # leak once they are dropped
        flat, row, conj, _ = half_grid_lookup(hs)
        self.flat = torch.as_tensor(flat, device=device)
        self.row = torch.as_tensor(row, device=device)
        self.conj = torch.as_tensor(conj, device=device)
        c = hs.coords
        kx, ky, kz = c[:, 0], c[:, 1], c[:, 2]
        ok = (np.abs(ky) <= D // 2) & (np.abs(kz) <= D // 2) & (kx <= D // 2)
        self.ok = torch.as_tensor(np.flatnonzero(ok), device=device)
        self.gather = torch.as_tensor((kz[ok] % D) * D * (D // 2 + 1) + (ky[ok] % D) * (D // 2 + 1) + kx[ok],
                                      device=device)
        kr = np.sqrt((c.astype(np.float64) ** 2).sum(1))
        g = np.interp(kr, np.arange(len(sigma)), np.asarray(sigma, dtype=np.float64))
        self.gain = torch.as_tensor(g, dtype=torch.float32, device=device)
        self.mask: torch.Tensor | None = None
        self.focus: torch.Tensor | None = None

    def set_masks(self, mask: np.ndarray | None, focus: np.ndarray | None = None) -> None:
        """Real-space masks ``[D, D, D]`` (origin at voxel ``D/2``), or ``None``."""

        def prep(m: np.ndarray | None) -> torch.Tensor | None:
            if m is None:
                return None
            return torch.as_tensor(np.fft.ifftshift(np.asarray(m, dtype=np.float32)), device=self.dev)

        self.mask, self.focus = prep(mask), prep(focus)

    @property
    def active(self) -> bool:
        return self.mask is not None or self.focus is not None

    def volumes(self, W: torch.Tensor) -> torch.Tensor:
        """Real-space volumes ``[K + 1, D, D, D]`` (``ifftshift`` layout, data units / scale) of the columns."""
        D = self.D
        K1 = W.shape[2]
        vals = torch.complex(W[:, 0, :], W[:, 1, :]) * self.gain[:, None]  # [R, K1]
        v = vals[self.row]
        v = torch.where(self.conj[:, None], v.conj(), v)
        ft = torch.zeros(D * D * (D // 2 + 1), K1, dtype=v.dtype, device=W.device)
        ft[self.flat] = v
        ft = ft.T.reshape(K1, D, D, D // 2 + 1)
        return torch.fft.irfftn(ft, s=(D, D, D), dim=(1, 2, 3))

    @torch.no_grad()
    def project(self, W: torch.Tensor, iterations: int = 1) -> None:
        """Mask every column of ``W`` in place. Masking spreads a volume's spectrum beyond
        Nyquist, which decoding drops, so one pass leaves a little leakage at a sharp mask edge;
        each further pass (``iterations``, alternating projections) reduces it."""
        if not self.active:
            return
        for _ in range(max(1, int(iterations))):
            self._project_once(W)

    def _project_once(self, W: torch.Tensor) -> None:
        vol = self.volumes(W)
        if self.mask is not None:
            vol = vol * self.mask
        if self.focus is not None:
            vol[:-1] = vol[:-1] * self.focus
        ft = torch.fft.rfftn(vol, dim=(1, 2, 3)).reshape(vol.shape[0], -1)  # [K1, D*D*(D//2+1)]
        vals = ft[:, self.gather].T / self.gain[self.ok, None]  # [n_ok, K1]
        out = torch.zeros(W.shape[0], W.shape[2], dtype=vals.dtype, device=W.device)
        out[self.ok] = vals
        W[:, 0, :] = out.real
        W[:, 1, :] = out.imag

    @torch.no_grad()
    def mean_volume(self, W: torch.Tensor, s_mean: torch.Tensor) -> np.ndarray:
        """Volume ``[D, D, D]`` (origin at ``D/2``) of the basis at weights ``s_mean [K + 1]``."""
        vol = self.volumes(W)
        v = torch.einsum("kxyz,k->xyz", vol, s_mean.to(vol.dtype))
        return np.fft.fftshift(v.cpu().numpy())


def resolve_mask(spec: str, D: int) -> tuple[str, np.ndarray | None]:
    """``--mask`` value → ``(kind, mask or None)``: ``auto`` (built during training), ``sphere``,
    ``none`` or a file path."""
    s = str(spec).strip()
    if s.lower() in ("auto", "none"):
        return s.lower(), None
    if s.lower() == "sphere":
        return "sphere", sphere_mask(D)
    if not os.path.exists(s):
        raise OptionError(f"--mask {s!r}: not auto, sphere, none, or an existing file")
    return "file", read_mask(s, D)


def describe(kind: str, mask: np.ndarray | None) -> dict[str, Any]:
    """A JSON-able summary of a mask for the run's log."""
    return {"kind": kind, "fraction": None if mask is None else round(mask_fraction(mask), 4)}
