"""Entropy coding of the integer latent grids of the ``grid`` method.

Each level of the latent pyramid is coded with ``constriction``'s ANS coder under a
quantised Laplace model whose scale is learned per level and per context; the context of a
latent is the (clipped) magnitude of its parent in the next coarser level, so the coarsest
level is coded first (last into the ANS stack). :func:`laplace_bits` is the differentiable
rate of the same model, used while fitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import constriction
import numpy as np
import torch

from voxfield.errors import FormatError


def context_from_parent(parent: torch.Tensor | np.ndarray, shape: Sequence[int], contexts: int) -> Any:
    """``min(|parent at i // 2|, contexts-1)`` for every latent of a level of ``shape``
    (``(F, *grid)``); works on torch tensors and numpy arrays alike."""
    mag = abs(parent).sum(0) if isinstance(parent, np.ndarray) else parent.abs().sum(0)
    for a, n in enumerate(shape[1:]):
        idx = np.minimum(np.arange(n) // 2, mag.shape[a] - 1)
        if isinstance(mag, np.ndarray):
            mag = np.take(mag, idx, axis=a)
        else:
            mag = mag.index_select(a, torch.as_tensor(idx, device=mag.device))
    if isinstance(mag, np.ndarray):
        ctx = np.minimum(mag, contexts - 1).astype(np.int64)
        return np.broadcast_to(ctx[None], tuple(shape))
    ctx = mag.clamp(max=contexts - 1).long()
    return ctx.unsqueeze(0).expand(*shape)


def laplace_bits(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(round-interval of y) under Laplace(0, scale), stable in both tails."""
    scale = scale.clamp_min(1e-3)
    a = (y.abs() - 0.5) / scale
    b = (y.abs() + 0.5) / scale
    # |y| >= 0.5: P = 0.5*(exp(-a) - exp(-b)); |y| < 0.5 (the interval holds 0):
    # P = 1 - 0.5*exp(-b) - 0.5*exp(-(0.5-|y|)/scale)
    p_tail = 0.5 * (torch.exp(-a.clamp_min(0)) - torch.exp(-b))
    p_center = 1.0 - 0.5 * torch.exp(-b) - 0.5 * torch.exp(-(0.5 - y.abs()).clamp_min(0) / scale)
    p = torch.where(y.abs() < 0.5, p_center, p_tail)
    return -torch.log2(p.clamp_min(1e-12))


def _lap_model(bound: int) -> constriction.stream.model.Model:
    return constriction.stream.model.QuantizedLaplace(-bound, bound)


def encode_latents(levels: list[np.ndarray], scales: np.ndarray, contexts: int) -> tuple[bytes, list[int]]:
    """ANS-code integer latent grids (coarsest decoded first); returns bytes and bounds."""
    bounds = [max(1, int(np.abs(g).max())) for g in levels]
    coder = constriction.stream.stack.AnsCoder()
    for lv in range(len(levels)):  # finest first: ANS is a stack, so the coarsest decodes first
        g = levels[lv]
        ctx = (np.zeros(g.shape, np.int64) if lv == len(levels) - 1 or contexts == 1
               else context_from_parent(levels[lv + 1], g.shape, contexts))
        sc = scales[lv][ctx].reshape(-1).astype(np.float64)
        coder.encode_reverse(g.reshape(-1).astype(np.int32), _lap_model(bounds[lv]), np.zeros_like(sc), sc)
    return coder.get_compressed().tobytes(), bounds


def decode_latents(payload: bytes, shapes: list[tuple[int, ...]], bounds: list[int], scales: np.ndarray,
                   contexts: int) -> list[np.ndarray]:
    """Inverse of :func:`encode_latents`."""
    if len(payload) % 4:
        raise FormatError("corrupt latent stream (length not a multiple of 4)")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype=np.uint32).copy())
    out: list[np.ndarray | None] = [None] * len(shapes)
    try:
        for lv in reversed(range(len(shapes))):
            shape = shapes[lv]
            ctx = (np.zeros(shape, np.int64) if lv == len(shapes) - 1 or contexts == 1
                   else context_from_parent(out[lv + 1], shape, contexts))
            sc = scales[lv][ctx].reshape(-1).astype(np.float64)
            vals = coder.decode(_lap_model(bounds[lv]), np.zeros_like(sc), sc)
            out[lv] = vals.astype(np.int64).reshape(shape)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise FormatError(f"corrupt latent stream ({exc})") from None
    return [o for o in out if o is not None]
