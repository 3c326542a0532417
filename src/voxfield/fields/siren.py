"""Batched SIREN: B independent sine MLPs evaluated together with ``torch.baddbmm``.

SCI trains one small network per block and INIF one network per volume; both are this
module with ``n_blocks`` = number of blocks of one architecture (1 for INIF). Every layer
``l`` computes ``h_{l+1} = act(omega_l * (h_l @ W_l + b_l))`` for hidden layers and a plain
affine map for the last one, with weights of shape ``(B, in, out)``.

Initialisation follows Sitzmann et al. (2020): first layer ``U(-1/in, 1/in)``, later layers
``U(-sqrt(6/in)/omega, sqrt(6/in)/omega)``, so that pre-activations stay of order one.
The *learnable frequency* (INIF) is a per-block, per-layer log-multiplier on omega,
initialised at 0 (omega unchanged); it is stored with the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

Activation = Literal["sin", "cos"]


def siren_param_count(in_features: int, out_features: int, widths: Sequence[int], *,
                      learn_frequency: bool = False) -> int:
    """Parameters of one network: weights and biases (+ one frequency per hidden layer)."""
    dims = [in_features, *widths, out_features]
    n = sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(len(dims) - 1))
    return n + (len(widths) if learn_frequency else 0)


class BatchedSiren(nn.Module):
    """``n_blocks`` SIRENs of identical architecture.

    Parameters
    ----------
    n_blocks:
        Number of independent networks (blocks) evaluated together.
    in_features, out_features:
        Coordinate dimensions in, channels out.
    widths:
        Hidden layer widths (a 7-layer SIREN has 6); SCI's funnel has ``widths[0] = fr *
        widths[1]``.
    omega_first, omega_hidden:
        Sine frequencies of the first and the other hidden layers (``omega_first`` may give
        one value per block).
    learn_frequency:
        Learn a per-layer log-multiplier of omega (INIF's learnable frequency).
    activation:
        ``"sin"`` (SIREN, SCI) or ``"cos"`` (INIF).
    seed:
        Seed of the initialisation (explicit; no global state is touched).
    """

    def __init__(self, n_blocks: int, in_features: int, out_features: int, widths: Sequence[int], *,
                 omega_first: float | Sequence[float] = 30.0, omega_hidden: float = 30.0, learn_frequency: bool = False,
                 activation: Activation = "sin", seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if n_blocks < 1 or in_features < 1 or out_features < 1 or not widths or min(widths) < 1:
            raise ValueError("BatchedSiren needs n_blocks, in/out features and widths >= 1")
        self.n_blocks = int(n_blocks)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.widths = [int(w) for w in widths]
        self.activation: Activation = activation
        self.learn_frequency = bool(learn_frequency)
        dims = [self.in_features, *self.widths, self.out_features]
        gen = torch.Generator().manual_seed(int(seed))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        first = np.broadcast_to(np.asarray(omega_first, dtype=np.float64), (self.n_blocks,))
        omegas = [1.0] + [float(omega_hidden)] * (len(self.widths) - 1)
        for i in range(len(dims) - 1):
            fan_in, fan_out = dims[i], dims[i + 1]
            # first layer U(-1/in, 1/in); every later layer (the linear output one too, as in
            # the reference code) U(-sqrt(6/in)/omega_hidden, +...)
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / float(omega_hidden)
            w = (torch.rand(self.n_blocks, fan_in, fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
            b_bound = 1.0 / math.sqrt(fan_in)
            b = (torch.rand(self.n_blocks, 1, fan_out, generator=gen, dtype=dtype) * 2 - 1) * b_bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        table = np.tile(np.asarray(omegas, dtype=np.float64), (self.n_blocks, 1))
        table[:, 0] = first
        self.register_buffer("omega", torch.tensor(table, dtype=dtype).view(self.n_blocks, 1, -1))
        if self.learn_frequency:
            self.log_freq = nn.Parameter(torch.zeros(self.n_blocks, 1, len(self.widths), dtype=dtype))
        else:
            self.register_parameter("log_freq", None)

    @property
    def n_layers(self) -> int:
        """Number of linear layers."""
        return len(self.weights)

    def params_per_block(self) -> int:
        return siren_param_count(self.in_features, self.out_features, self.widths,
                                 learn_frequency=self.learn_frequency)

    def frequencies(self) -> torch.Tensor:
        """Effective omega per block and hidden layer, shape ``(B, 1, n_hidden)``."""
        if self.log_freq is not None:
            return self.omega * torch.exp(self.log_freq)
        return self.omega

    def forward(self, coords: torch.Tensor, weights: Sequence[torch.Tensor] | None = None,
                biases: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Evaluate the networks.

        ``coords`` has shape ``(B, N, in_features)`` (coordinates in [-1, 1]); returns
        ``(B, N, out_features)``. ``weights``/``biases`` override the parameters (used for
        quantisation-aware fine-tuning with fake-quantised copies)."""
        ws = list(self.weights) if weights is None else list(weights)
        bs = list(self.biases) if biases is None else list(biases)
        freq = self.frequencies()
        act = torch.sin if self.activation == "sin" else torch.cos
        h = coords
        last = len(ws) - 1
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = act(h * freq[:, :, i : i + 1])
        return h

    def select(self, index: Sequence[int]) -> BatchedSiren:
        """A new module holding only the networks ``index`` (used to decode a region: only
        the blocks it touches are evaluated)."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        sub = BatchedSiren.__new__(BatchedSiren)
        nn.Module.__init__(sub)
        sub.n_blocks = len(idx)
        sub.in_features, sub.out_features = self.in_features, self.out_features
        sub.widths = list(self.widths)
        sub.activation = self.activation
        sub.learn_frequency = self.learn_frequency
        sub.weights = nn.ParameterList([nn.Parameter(w.detach()[idx].clone(), requires_grad=False) for w in self.weights])
        sub.biases = nn.ParameterList([nn.Parameter(b.detach()[idx].clone(), requires_grad=False) for b in self.biases])
        sub.register_buffer("omega", self.omega[idx].clone())
        if self.log_freq is not None:
            sub.log_freq = nn.Parameter(self.log_freq.detach()[idx].clone(), requires_grad=False)
        else:
            sub.register_parameter("log_freq", None)
        return sub
