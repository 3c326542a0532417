"""Running the learned prior on arrays: tiled inference (bounded memory, the same values
as one pass up to float rounding, the same tiling on every run so decoding is
deterministic), and the closed-form refit of its linear head (the per-volume adaptation).

Arrays are ``(N, *spatial)`` with 2 or 3 spatial axes (see
:func:`voxfield.compress.hybrid_filter.conv_view`); each batch item is normalised by the
mean and standard deviation of its own decode.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from voxfield.compress.learned.net import HALO, EnhanceNet, condition, pad_even

#: Edge of the tiles' cores (voxels); tiles read :data:`HALO` more on each side.
TILE = 64


def _starts(n: int, core: int) -> list[int]:
    return list(range(0, n, core))


def _normalise(item: np.ndarray) -> tuple[np.ndarray, float, float]:
    a = item.astype(np.float64)
    mu = float(a.mean())
    sd = float(a.std()) or 1.0
    return ((a - mu) / sd).astype(np.float32), mu, sd


def _as3d(spatial: tuple[int, ...]) -> tuple[int, int, int]:
    if len(spatial) == 3:
        return spatial  # type: ignore[return-value]
    if len(spatial) == 2:
        return (1, *spatial)
    raise ValueError("the learned prior takes 2-D or 3-D arrays")


def supports(spatial: tuple[int, ...]) -> bool:
    """Whether the learned prior runs on items of this spatial shape (2 or 3 axes, each
    at least 4 voxels along the image axes)."""
    return len(spatial) in (2, 3) and min(spatial[-2:]) >= 4


def run_normalised(model: EnhanceNet, xn: np.ndarray, cond: torch.Tensor, *,
                   head: tuple[np.ndarray, float] | None = None, target: np.ndarray | None = None,
                   tile: int = TILE) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Enhance one normalised 3-D item ``xn``. ``head``: a refitted head ``(weight, bias)``
    in place of the trained one. ``target`` (normalised original): also return the normal
    equations ``(A, b)`` of the head refit, ``A = Σ f fᵀ``, ``b = Σ f (target − xn)`` over
    every voxel, with ``f`` the last features and a trailing 1."""
    if head is None:
        w = model.head.weight.detach().reshape(-1)
        bias = float(model.head.bias.detach()[0])
    else:
        w = torch.as_tensor(np.asarray(head[0], np.float32))
        bias = float(head[1])
    x = torch.from_numpy(np.ascontiguousarray(xn, np.float32))[None, None]
    xp, shape = pad_even(x)
    full = tuple(int(n) for n in xp.shape[2:])
    out = np.empty(full, np.float32)
    width = model.config.width
    A = np.zeros((width + 1, width + 1)) if target is not None else None
    b = np.zeros(width + 1) if target is not None else None
    tp = None
    if target is not None:
        tp, _ = pad_even(torch.from_numpy(np.ascontiguousarray(target, np.float32))[None, None])
    c = cond[None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float32 sums in one fixed order: the core count cannot change a decode
    try:
        _tiles(model, xp, c, full, shape, w, bias, tile, out, A, b, tp if target is not None else None)
    finally:
        torch.set_num_threads(threads)
    res = np.ascontiguousarray(out[: shape[0], : shape[1], : shape[2]])
    return res, ((A, b) if A is not None and b is not None else None)


def _tiles(model: EnhanceNet, xp: torch.Tensor, c: torch.Tensor, full: tuple[int, ...], shape: tuple[int, ...],
           w: torch.Tensor, bias: float, tile: int, out: np.ndarray, A: np.ndarray | None, b: np.ndarray | None,
           tp: torch.Tensor | None) -> None:
    """The tile loop of :func:`run_normalised` (fills ``out``, and ``A``/``b`` when given)."""
    width = model.config.width
    with torch.no_grad():
        for z in _starts(full[0], tile):
            for y in _starts(full[1], tile):
                for xx in _starts(full[2], tile):
                    core = [(z, min(z + tile, full[0])), (y, min(y + tile, full[1])), (xx, min(xx + tile, full[2]))]
                    lo = [max(0, a - HALO) for a, _ in core]
                    hi = [min(n, e + HALO) for (_, e), n in zip(core, full, strict=True)]
                    t = xp[:, :, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
                    f = model.features(t, c)[0]
                    inner = tuple(slice(a - l0, e - l0) for (a, e), l0 in zip(core, lo, strict=True))
                    f = f[(slice(None), *inner)]
                    xt = t[0, 0][inner]
                    corr = torch.tensordot(w, f, dims=([0], [0])) + bias
                    out[core[0][0]:core[0][1], core[1][0]:core[1][1], core[2][0]:core[2][1]] = (xt + corr).numpy()
                    if A is not None and b is not None and tp is not None:
                        # only voxels of the original (not the even padding) count
                        keep = tuple(slice(0, max(0, min(e, s) - a)) for (a, e), s in zip(core, shape, strict=True))
                        fk = f[(slice(None), *keep)].reshape(width, -1).double()
                        r = (tp[0, 0, core[0][0]:core[0][1], core[1][0]:core[1][1], core[2][0]:core[2][1]]
                             - xt)[keep].reshape(-1).double()
                        fk1 = torch.cat([fk, torch.ones(1, fk.shape[1], dtype=torch.float64)], 0)
                        A += (fk1 @ fk1.T).numpy()
                        b += (fk1 @ r).numpy()


def enhance(model: EnhanceNet, decode: np.ndarray, family: str, bits_per_voxel: float, *,
            head: tuple[np.ndarray, float] | None = None,
            progress: Callable[[float], None] | None = None) -> np.ndarray:
    """The learned prior on ``decode`` ``(N, *spatial)`` made by codec ``family`` at
    ``bits_per_voxel``: float32, same shape."""
    cond = condition(family, bits_per_voxel)
    spatial = tuple(int(n) for n in decode.shape[1:])
    out = np.empty(decode.shape, np.float32)
    for i in range(decode.shape[0]):
        xn, mu, sd = _normalise(decode[i].reshape(_as3d(spatial)))
        y, _ = run_normalised(model, xn, cond, head=head)
        out[i] = (y.astype(np.float64) * sd + mu).reshape(spatial)
        if progress:
            progress((i + 1) / decode.shape[0])
    return out


def head_equations(model: EnhanceNet, decode: np.ndarray, original: np.ndarray, family: str,
                   bits_per_voxel: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The enhanced ``decode`` (trained head) and the normal equations of the head refit,
    summed over the items (in each item's normalised units)."""
    cond = condition(family, bits_per_voxel)
    spatial = tuple(int(n) for n in decode.shape[1:])
    out = np.empty(decode.shape, np.float32)
    width = model.config.width
    A = np.zeros((width + 1, width + 1))
    b = np.zeros(width + 1)
    for i in range(decode.shape[0]):
        xn, mu, sd = _normalise(decode[i].reshape(_as3d(spatial)))
        tn = ((original[i].astype(np.float64).reshape(_as3d(spatial)) - mu) / sd).astype(np.float32)
        y, eq = run_normalised(model, xn, cond, target=tn)
        out[i] = (y.astype(np.float64) * sd + mu).reshape(spatial)
        assert eq is not None
        A += eq[0]
        b += eq[1]
    return out, (A, b)


def solve_head(model: EnhanceNet, equations: tuple[np.ndarray, np.ndarray], ridge: float = 1e-3
               ) -> tuple[np.ndarray, float]:
    """The least-squares head, pulled towards the trained one by ``ridge`` (relative to the
    mean diagonal of ``A``)."""
    A, b = equations
    theta0 = np.concatenate([model.head.weight.detach().reshape(-1).double().numpy(),
                             model.head.bias.detach().double().numpy()])
    lam = ridge * float(np.trace(A)) / A.shape[0]
    theta = np.linalg.solve(A + lam * np.eye(A.shape[0]), b + lam * theta0)
    return theta[:-1].astype(np.float32), float(theta[-1])


def enhance_decode(decode: np.ndarray, codec: str, bits_per_voxel: float, domain: str = "cryoem") -> np.ndarray:
    """The shipped learned prior of ``domain`` applied to one 2-D or 3-D classic-codec
    decode (made by ``codec`` at ``bits_per_voxel`` bits per voxel of its payload): float32,
    same shape. The zero-byte part of what ``auto`` and ``hybrid`` files store."""
    from voxfield.compress.learned.net import load_weights, weights_path
    from voxfield.errors import DataError

    a = np.asarray(decode)
    if a.ndim not in (2, 3) or not supports(a.shape):
        raise DataError(f"the learned prior takes one 2-D or 3-D image of at least 4x4, got shape {a.shape}")
    model, _ = load_weights(weights_path(domain))
    return enhance(model, a[None].astype(np.float32), codec, bits_per_voxel)[0]
