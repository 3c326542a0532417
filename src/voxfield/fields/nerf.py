"""NeRF positional encoding and the residual LeakyReLU MLP of paper 000 (Zou, cryo-EM INR).

Training form (:class:`NerfMLP`, torch) and an exact inference form (:class:`ExactNerf`,
numpy) that gives the same bits for a voxel whatever else is evaluated with it.

Architecture, as the paper's ``127-2048-Re1-Re2-1024-Re3-512-Re4-256-1``:

* input: ``gamma(p)`` of the 3 coordinates in [0, 1] -- ``p`` itself, then for
  ``k = 0 .. L-1`` the ``sin(2**k * pi * p)`` and ``cos(2**k * pi * p)`` of the 3 coordinates
  (NeRF's order), ``3 * (1 + 2 L)`` values (63 for ``L = 10``), concatenated with a learnable
  latent vector of the map (64 values, initialised uniform in [-1, 1]): 127 inputs;
* a linear layer to each width in turn, each followed by ``residual[i]`` residual layers
  ``h <- h + LeakyReLU(W h + b)`` at that width; every linear layer but the last is followed
  by LeakyReLU (slope 0.01); a last linear layer to one output.

:func:`layer_plan` spells out the layers; ``widths=(2048, 1024, 512, 256)`` with
``residual=(2, 1, 1, 0)`` is the paper's nine-layer network.

Exact inference: for one map the latent vector is a constant input, so ``W_z @ z`` is folded
into the first bias once, at load time. Every linear layer then multiplies integer-valued
float64 operands -- the stored weight symbols and layer inputs rounded to a fixed-point grid
of ``2**-frac_bits`` (clamped to ``±clip``) -- so every partial sum is an exact integer below
2**53 and any summation order gives the same result. Encodings, scales, biases, LeakyReLU and
the residual additions are element-wise, computed on row chunks padded to a fixed size
(:data:`voxfield.fields.exact.CHUNK`), so a voxel's value does not depend on the request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from voxfield.fields.exact import CHUNK

#: LeakyReLU negative slope of the paper.
SLOPE = 0.01
_MAX_SYMBOL_BITS = 16


def encoding_size(n_coords: int, n_freq: int) -> int:
    """Length of the positional encoding: ``n_coords * (1 + 2 * n_freq)`` (63 for 3, 10)."""
    return n_coords * (1 + 2 * n_freq)


def positional_encoding(x: torch.Tensor, n_freq: int) -> torch.Tensor:
    """``(N, d)`` coordinates -> ``(N, d (1 + 2 L))``: x, then sin/cos(2**k pi x), k = 0..L-1."""
    parts = [x]
    for k in range(n_freq):
        a = x * float(2.0**k * math.pi)
        parts += [torch.sin(a), torch.cos(a)]
    return torch.cat(parts, dim=-1)


def positional_encoding_np(x: np.ndarray, n_freq: int) -> np.ndarray:
    """numpy float64 twin of :func:`positional_encoding` (element-wise, deterministic)."""
    parts = [x]
    for k in range(n_freq):
        a = x * float(2.0**k * math.pi)
        parts += [np.sin(a), np.cos(a)]
    return np.concatenate(parts, axis=-1)


def layer_plan(n_in: int, widths: Sequence[int], residual: Sequence[int]) -> list[tuple[str, int, int]]:
    """``(kind, in, out)`` per linear layer; kind is ``lin`` (followed by LeakyReLU),
    ``res`` (residual, ``h + LeakyReLU(W h + b)``) or ``out`` (the last, no activation)."""
    if len(widths) != len(residual) or not widths:
        raise ValueError("widths and residual need the same, non-zero length")
    plan = [("lin", int(n_in), int(widths[0]))]
    for i, w in enumerate(widths):
        plan += [("res", int(w), int(w))] * int(residual[i])
        if i + 1 < len(widths):
            plan.append(("lin", int(w), int(widths[i + 1])))
    plan.append(("out", int(widths[-1]), 1))
    return plan


def param_count(n_in: int, widths: Sequence[int], residual: Sequence[int], latent_dim: int = 0) -> int:
    """Parameters of the network with ``n_in`` stored inputs (+ ``latent_dim`` stored latents)."""
    return int(latent_dim) + sum(i * o + o for _, i, o in layer_plan(n_in, widths, residual))


class NerfMLP(nn.Module):
    """Positional encoding + latent vector + residual LeakyReLU MLP (training form)."""

    def __init__(self, widths: Sequence[int], residual: Sequence[int], *, n_freq: int = 10, latent_dim: int = 64,
                 n_coords: int = 3, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        self.n_freq, self.n_coords = int(n_freq), int(n_coords)
        self.n_pe = encoding_size(n_coords, n_freq)
        self.latent = nn.Parameter(torch.rand(int(latent_dim), generator=gen) * 2 - 1)  # uniform [-1, 1]
        self.plan = layer_plan(self.n_pe + int(latent_dim), widths, residual)
        self.layers = nn.ModuleList()
        for _, fan_in, fan_out in self.plan:
            lin = nn.Linear(fan_in, fan_out)
            bound = 1.0 / math.sqrt(fan_in)  # torch's nn.Linear default, drawn from our generator
            with torch.no_grad():
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=gen) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=gen) * 2 - 1) * bound)
            self.layers.append(lin)

    def forward(self, coords: torch.Tensor, *, record: list[float] | None = None,
                latent: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 3)`` coordinates in [0, 1] -> ``(N,)``; ``record`` collects max |activation|.
        ``latent`` (``(N, latent_dim)``), when given, replaces the map's own latent vector row
        by row (the joint model of several maps, :mod:`voxfield.compress.cryo_pe_set`)."""
        h = positional_encoding(coords, self.n_freq)
        if latent is not None:
            h = torch.cat([h, latent], dim=-1)
        elif self.latent.numel():
            h = torch.cat([h, self.latent.expand(len(h), -1)], dim=-1)
        for (kind, _, _), lin in zip(self.plan, self.layers, strict=True):
            z = lin(h)
            if kind == "out":
                return z[:, 0]
            a = nn.functional.leaky_relu(z, SLOPE)
            h = h + a if kind == "res" else a
            if record is not None:
                record.append(float(h.detach().abs().max()))
        raise AssertionError("unreachable")

    def stored_tensors(self, fold_latent: bool) -> list[np.ndarray]:
        """Tensors written to a file, in file order: the latent (unless folded), then per
        layer the weight ``(in, out)`` and bias. Folding stores ``b + W_z z`` as the first
        bias and only the encoding rows of the first weight (the same function)."""
        out: list[np.ndarray] = []
        first = self.layers[0]
        w0 = first.weight.detach().double().cpu()
        b0 = first.bias.detach().double().cpu()
        if fold_latent:
            b0 = b0 + w0[:, self.n_pe:] @ self.latent.detach().double().cpu()
            w0 = w0[:, : self.n_pe]
        elif self.latent.numel():
            out.append(self.latent.detach().cpu().numpy().astype(np.float32))
        out += [w0.numpy().T.astype(np.float32).copy(), b0.numpy().astype(np.float32)]
        for lin in list(self.layers)[1:]:
            out += [lin.weight.detach().cpu().numpy().T.copy(), lin.bias.detach().cpu().numpy().copy()]
        return out


def frac_bits_for(fan_in: int, clip: float) -> int:
    """Fixed-point bits of layer inputs such that ``|input| * |symbol|`` summed over the
    widest fan-in stays below 2**53 (at most 24)."""
    return int(min(24, 52 - (_MAX_SYMBOL_BITS - 1) - math.ceil(math.log2(max(fan_in, 2)))
                   - math.ceil(math.log2(max(clip, 1.0)))))


class ExactNerf:
    """Inference form of :class:`NerfMLP` with integer weight symbols (see module doc).

    Parameters
    ----------
    plan : :func:`layer_plan` of the stored network (first layer: encoding inputs only).
    weight_symbols, weight_steps : per layer, integer symbols ``(in, out)`` and the step.
    biases : per layer, dequantised biases ``(out,)`` (float64; the first already holds the
        folded latent term).
    n_freq : encoding frequencies. frac_bits, clip : the fixed-point grid and range.
    """

    def __init__(self, plan: Sequence[tuple[str, int, int]], weight_symbols: Sequence[np.ndarray],
                 weight_steps: Sequence[float], biases: Sequence[np.ndarray], n_freq: int, frac_bits: int,
                 clip: float) -> None:
        self.plan = list(plan)
        self.w = [np.asarray(s, dtype=np.float64) for s in weight_symbols]
        self.b = [np.asarray(b, dtype=np.float64).reshape(-1) for b in biases]
        self.n_freq = int(n_freq)
        self.scale_in = float(2.0 ** int(frac_bits))
        self.mult = [float(s) / self.scale_in for s in weight_steps]  # exact: a power-of-two division
        self.limit = float(clip) * self.scale_in
        for (_, i, o), w, b in zip(self.plan, self.w, self.b, strict=True):
            if w.shape != (i, o) or b.shape != (o,):
                raise ValueError("weights do not match the architecture")

    def _fixed(self, v: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(v * self.scale_in), -self.limit, self.limit)

    def forward(self, coords: np.ndarray) -> np.ndarray:
        """``(N, 3)`` coordinates in [0, 1] (float64) -> ``(N,)`` float64."""
        n = len(coords)
        out = np.empty(n, dtype=np.float64)
        for lo in range(0, n, CHUNK):
            x = np.zeros((CHUNK, coords.shape[1]), dtype=np.float64)
            m = min(CHUNK, n - lo)
            x[:m] = coords[lo : lo + m]
            h = self._fixed(positional_encoding_np(x, self.n_freq))
            for (kind, _, _), w, mult, b in zip(self.plan, self.w, self.mult, self.b, strict=True):
                pre = (h @ w) * mult + b  # h @ w is exact: integer operands and partial sums < 2**53
                if kind == "out":
                    out[lo : lo + m] = pre[:m, 0]
                    break
                a = self._fixed(np.where(pre >= 0, pre, SLOPE * pre))
                h = np.clip(h + a, -self.limit, self.limit) if kind == "res" else a
        return out
