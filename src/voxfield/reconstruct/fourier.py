"""Fourier-space layout of the structural basis, central-slice extraction and full-volume synthesis.

Layout
------
A real volume ``v[z, y, x]`` of box ``D`` (even) has the transform
``F = rfftn(ifftshift(v))`` (origin at voxel ``D/2``), so by the projection–slice theorem the
projection along ``z`` (``v.sum(0)``) has ``rfft2(ifftshift(p)) == F[0]``.

The basis stores Fourier voxels on integer coordinates ``k = (kx, ky, kz)`` inside a sphere of
radius ``D/2 + 2`` (the extra shell holds the neighbours that trilinear interpolation needs at
the Nyquist radius). Because ``F(−k) = conj F(k)`` for a real volume, only one of each
Friedel pair is stored: the *canonical* one with ``kx > 0``, or ``kx = 0, ky > 0``, or
``kx = ky = 0, kz ≥ 0``. A lookup table maps every integer coordinate of the sphere to its
canonical row and a conjugation flag, so reading any voxel of the full sphere is one gather.

Slices
------
An image pixel with frequency ``(kx, ky)`` (in pixels of the ``rfft2`` half-plane, radius
``≤ D/2``) samples the volume at ``(kx, ky, 0) @ R`` (row vector times the pose's rotation
matrix, cryoDRGN's convention), interpolated trilinearly from its 8 integer neighbours.
:class:`SliceBasis` (a ``torch.autograd.Function``) does the interpolation straight from the
basis — ``Σ_k s_k W_k + W_bias`` at the 8 neighbours (``W`` stored as ``[R, 2, K + 1]``) — without ever forming a volume, and its
backward pass writes gradients only to the rows it read (returned as a sparse tensor for
``torch.optim.SparseAdam``, or dense with ``index_add_``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Extra radius (in Fourier pixels) of the stored sphere beyond Nyquist.
PAD_RADIUS = 2


@dataclass
class HalfSphere:
    """Index tables of the canonical half sphere for a box ``D``.

    Attributes
    ----------
    D : box size.
    radius : stored radius ``D/2 + PAD_RADIUS``.
    coords : ``[R, 3]`` int64 canonical coordinates ``(kx, ky, kz)`` of the stored rows.
    lut_row : ``[2r+1, 2r+1, 2r+1]`` int64 row index for every integer coordinate
        ``(kz + r, ky + r, kx + r)``; ``R`` (one past the last row, a zero row) outside.
    lut_conj : same shape, bool: the coordinate is the conjugate of its row.
    """

    D: int
    radius: int
    coords: np.ndarray
    lut_row: np.ndarray
    lut_conj: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.coords.shape[0])


def _canonical(kx: np.ndarray, ky: np.ndarray, kz: np.ndarray) -> np.ndarray:
    return (kx > 0) | ((kx == 0) & (ky > 0)) | ((kx == 0) & (ky == 0) & (kz >= 0))


def half_sphere(D: int) -> HalfSphere:
    """Build the canonical half-sphere tables for an even box size ``D``."""
    if D % 2 or D < 4:
        raise ValueError(f"box size must be even and >= 4, got {D}")
    r = D // 2 + PAD_RADIUS
    ax = np.arange(-r, r + 1)
    kz, ky, kx = np.meshgrid(ax, ax, ax, indexing="ij")
    inside = kx * kx + ky * ky + kz * kz <= r * r
    canon = inside & _canonical(kx, ky, kz)
    coords = np.stack([kx[canon], ky[canon], kz[canon]], axis=1).astype(np.int64)
    n = coords.shape[0]
    lut_row = np.full(kx.shape, n, dtype=np.int64)
    lut_row[canon] = np.arange(n)
    lut_conj = np.zeros(kx.shape, dtype=bool)
    # non-canonical points inside the sphere read the row of their Friedel mate, conjugated
    other = inside & ~canon
    lut_row[other] = lut_row[(-kz[other] + r, -ky[other] + r, -kx[other] + r)]
    lut_conj[other] = True
    return HalfSphere(D=D, radius=r, coords=coords, lut_row=lut_row, lut_conj=lut_conj)


def image_half_plane(D: int, radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the ``rfft2`` half-plane of a ``D×D`` image within ``radius`` (default ``D/2``).

    Returns ``(flat_index, kxy)``: indices into the flattened ``[D, D//2+1]`` array and the
    integer frequencies ``(kx, ky)`` of those pixels (``[P, 2]``, float64).
    """
    rad = D / 2 if radius is None else float(radius)
    ky = np.fft.fftfreq(D, 1.0 / D)
    kx = np.arange(D // 2 + 1, dtype=np.float64)
    KY, KX = np.meshgrid(ky, kx, indexing="ij")
    sel = (KX * KX + KY * KY) <= rad * rad
    flat = np.flatnonzero(sel.reshape(-1))
    kxy = np.stack([KX.reshape(-1)[flat], KY.reshape(-1)[flat]], axis=1)
    return flat, kxy


class SliceTables:
    """Torch copies of the lookup tables, plus the trilinear neighbour computation."""

    def __init__(self, hs: HalfSphere, device: torch.device | str = "cpu"):
        self.hs = hs
        self.r = hs.radius
        self.side = 2 * hs.radius + 1
        self.lut_row = torch.as_tensor(hs.lut_row.reshape(-1), device=device)
        self.lut_conj = torch.as_tensor(hs.lut_conj.reshape(-1), device=device)
        self.n_rows = hs.n_rows
        self._offsets: torch.Tensor | None = None

    def neighbours(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows, trilinear weights and conjugation signs of the 8 neighbours of ``xyz [..., 3]``.

        Returns ``rows [..., 8]`` (int64; ``n_rows`` = zero row outside the sphere),
        ``weights [..., 8]`` and ``sign [..., 8]`` (``-1`` where the imaginary part flips).
        Coordinates must lie within ``radius − 1`` of the origin (slices do: ``|k| ≤ D/2``).
        """
        r, side = self.r, self.side
        base = torch.floor(xyz)
        frac = xyz - base
        b = base.long() + r
        flat0 = (b[..., 2] * side + b[..., 1]) * side + b[..., 0]
        if self._offsets is None or self._offsets.device != xyz.device:
            o = torch.tensor([(dz * side + dy) * side + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])
            self._offsets = o.to(xyz.device)
        flat = flat0[..., None] + self._offsets
        rows = self.lut_row[flat]
        sgn = 1.0 - 2.0 * self.lut_conj[flat].to(xyz.dtype)
        fx, fy, fz = frac[..., 0], frac[..., 1], frac[..., 2]
        wx = torch.stack([1 - fx, fx], -1)
        wy = torch.stack([1 - fy, fy], -1)
        wz = torch.stack([1 - fz, fz], -1)
        w = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).flatten(-3)
        return rows, w, sgn


def slice_coords(kxy: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """3-D Fourier coordinates ``[B, P, 3]`` of image pixels ``kxy [P, 2]`` for poses ``rot [B, 3, 3]``."""
    k3 = torch.cat([kxy, torch.zeros_like(kxy[:, :1])], dim=1)  # [P, 3]
    return torch.einsum("pi,bij->bpj", k3, rot)


def _gather_columns(W: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor,
                    sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``A [B, P, 2, K1]``: every basis column interpolated at the slice points, and the factors ``[B, P, 2, 8]``."""
    R, _, K1 = W.shape
    B, P, n_nb = rows.shape
    Wz = torch.cat([W.reshape(R, 2 * K1), W.new_zeros(1, 2 * K1)], 0)
    acc = W.new_zeros(B, P, 2, K1)
    fac = torch.stack([weights, weights * sign], dim=-2)  # [B, P, 2, 8]
    for n in range(n_nb):
        acc.addcmul_(Wz[rows[..., n]].view(B, P, 2, K1), fac[..., n, None])
    return acc, fac


def slice_basis_columns(W: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Central slices of every basis column separately, ``[B, P, 2, K1]`` (real/imaginary), from the
    neighbour tables of :meth:`SliceTables.neighbours` (no gradient bookkeeping)."""
    return _gather_columns(W, rows, weights, sign)[0]


class SliceBasis(torch.autograd.Function):
    """Central slices of ``Σ_k s_k W_k`` interpolated from the basis without forming volumes.

    Inputs: ``s [B, K1]`` (weights, the last one usually fixed to 1 for the bias volume),
    ``W [R, 2, K1]`` (real and imaginary parts of the stored rows), ``rows/weights/sign [B, P, 8]``
    from :meth:`SliceTables.neighbours`, and ``sparse`` (bool). Output ``[B, P, 2]``.
    Row ``R`` (outside the sphere) reads as zero.

    Forward: the 8 neighbours' rows are gathered and combined with their trilinear weights (and
    conjugation signs) into ``A [B, P, 2, K1]``, then contracted with ``s`` (one batched matrix
    product). Backward: ``∂/∂s = Aᵀ g``; ``∂/∂W`` is scattered (``index_add_``) to the gathered
    rows only — returned as a sparse COO tensor over the touched rows when ``sparse``.
    """

    @staticmethod
    def forward(ctx, s, W, rows, weights, sign, sparse: bool = False):  # type: ignore[override]
        acc, fac = _gather_columns(W, rows, weights, sign)
        return _contract(ctx, s, W, acc, fac, rows, sparse)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_s, grad_W = _slice_backward(ctx, grad_out)
        return grad_s, grad_W, None, None, None, None


class SliceBasisColumns(torch.autograd.Function):
    """:class:`SliceBasis` from columns already gathered by :func:`gather_slice_columns` (the same
    output and gradients, without gathering twice when the columns are also needed elsewhere)."""

    @staticmethod
    def forward(ctx, s, W, acc, fac, rows, sparse: bool = False):  # type: ignore[override]
        return _contract(ctx, s, W, acc, fac, rows, sparse)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_s, grad_W = _slice_backward(ctx, grad_out)
        return grad_s, grad_W, None, None, None, None


def gather_slice_columns(W: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor,
                         sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A [B, P, 2, K1], factors [B, P, 2, 8])`` for :class:`SliceBasisColumns` (no gradient)."""
    with torch.no_grad():
        return _gather_columns(W.detach(), rows, weights, sign)


def _contract(ctx, s, W, acc, fac, rows, sparse):
    R, _, K1 = W.shape
    B, P, _ = rows.shape
    out = torch.bmm(acc.view(B, P * 2, K1), s.unsqueeze(2)).view(B, P, 2)
    ctx.save_for_backward(s, acc, rows, fac)
    ctx.sparse = sparse
    ctx.shape = (R, K1)
    return out


def _slice_backward(ctx, grad_out):
    """Gradients of :class:`SliceBasis` / :class:`SliceBasisColumns` with respect to ``s`` and ``W``."""
    s, acc, rows, fac = ctx.saved_tensors
    R, K1 = ctx.shape
    B, P, n_nb = rows.shape
    grad_s = grad_W = None
    if ctx.needs_input_grad[0]:
        grad_s = torch.bmm(grad_out.reshape(B, 1, P * 2), acc.view(B, P * 2, K1)).view(B, K1)
    if ctx.needs_input_grad[1]:
        outer = grad_out.unsqueeze(-1) * s[:, None, None, :]  # [B, P, 2, K1]
        gW = acc.new_zeros(R + 1, 2 * K1)
        for n in range(n_nb):
            gW.index_add_(0, rows[..., n].reshape(-1), (outer * fac[..., n, None]).reshape(B * P, 2 * K1))
        gW = gW[:R].view(R, 2, K1)
        if ctx.sparse:
            hit = torch.zeros(R + 1, dtype=torch.bool, device=rows.device)
            hit[rows.reshape(-1)] = True
            touched = torch.nonzero(hit[:R]).view(-1)
            with torch.sparse.check_sparse_tensor_invariants(enable=False):
                grad_W = torch.sparse_coo_tensor(touched[None], gW[touched], size=(R, 2, K1), is_coalesced=True)
        else:
            grad_W = gW
    return grad_s, grad_W


def slice_basis(s, W, rows, weights, sign, sparse: bool = False) -> torch.Tensor:
    """Functional form of :class:`SliceBasis`."""
    return SliceBasis.apply(s, W, rows, weights, sign, sparse)


def half_grid_lookup(hs: HalfSphere, radius: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the stored rows go in a volume's ``rfftn`` array ``[D, D, D//2+1]``.

    Returns ``(flat, row, conj, kr)`` for the voxels within ``radius`` (default Nyquist ``D/2``,
    at most the stored radius): their flat indices into the ``rfftn`` array, the stored row each
    reads, whether it reads the conjugate (the ``kx = 0`` plane gets both members of each
    Friedel pair, so the inverse transform is exactly real) and the radius ``|k|`` in pixels.
    """
    D = hs.D
    rad = D / 2 if radius is None else min(float(radius), float(hs.radius))
    r = hs.radius
    ax_y = np.fft.fftfreq(D, 1.0 / D).astype(np.int64)
    ax_x = np.arange(D // 2 + 1)
    KZ, KY, KX = np.meshgrid(ax_y, ax_y, ax_x, indexing="ij")
    kr = np.sqrt(KX * KX + KY * KY + KZ * KZ)
    sel = kr <= rad
    idx = (KZ[sel] + r, KY[sel] + r, KX[sel] + r)
    return np.flatnonzero(sel.reshape(-1)), hs.lut_row[idx], hs.lut_conj[idx], kr[sel]


def gridding_correction(D: int) -> np.ndarray:
    """``sinc²(x/D) sinc²(y/D) sinc²(z/D)`` on the ``D³`` box (origin at voxel ``D/2``): the real-space
    transform of the trilinear interpolation kernel used for the slices (see :mod:`voxfield.reconstruct.run`)."""
    c = np.sinc((np.arange(D) - D // 2) / D) ** 2
    return (c[:, None, None] * c[None, :, None] * c[None, None, :]).astype(np.float32)


def rows_to_volume_ft(values: np.ndarray | torch.Tensor, hs: HalfSphere, radius: float | None = None) -> np.ndarray:
    """Fill the ``rfftn`` array ``[D, D, D//2+1]`` of a volume from canonical-row values ``[R]`` (complex).

    Voxels beyond ``radius`` (default Nyquist ``D/2``) are zero (see :func:`half_grid_lookup`).
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    D = hs.D
    flat, row, conj, _ = half_grid_lookup(hs, radius)
    out = np.zeros(D * D * (D // 2 + 1), dtype=np.complex128 if values.dtype == np.complex128 else np.complex64)
    vals = values[row]
    out[flat] = np.where(conj, np.conj(vals), vals)
    return out.reshape(D, D, D // 2 + 1)


def volume_from_ft(ft: np.ndarray, D: int) -> np.ndarray:
    """Real-space volume (origin at voxel ``D/2``) from its ``rfftn`` array."""
    return np.fft.fftshift(np.fft.irfftn(ft, s=(D, D, D), axes=(0, 1, 2))).astype(np.float32)


def volume_to_rows(vol: np.ndarray, hs: HalfSphere) -> np.ndarray:
    """Canonical-row values (complex ``[R]``) of a real volume's transform (zero beyond the stored sphere's grid)."""
    D = hs.D
    ft = np.fft.rfftn(np.fft.ifftshift(np.asarray(vol, dtype=np.float64)))
    c = hs.coords
    kx, ky, kz = c[:, 0], c[:, 1], c[:, 2]
    ok = (np.abs(ky) <= D // 2) & (np.abs(kz) <= D // 2) & (kx <= D // 2)
    # rfftn index of (kz, ky, kx): negative frequencies wrap; +D/2 reads the (aliased) −D/2 entry
    vals = np.zeros(c.shape[0], dtype=np.complex128)
    vals[ok] = ft[kz[ok] % D, ky[ok] % D, kx[ok]]
    return vals


def slice_basis_from_columns(s, W, acc, fac, rows, sparse: bool = False) -> torch.Tensor:
    """Functional form of :class:`SliceBasisColumns` (``acc, fac`` from :func:`gather_slice_columns`)."""
    return SliceBasisColumns.apply(s, W, acc, fac, rows, sparse)
