"""Order-independent inference of quantised SIRENs: the same point gives the same bits
whatever else is evaluated with it.

Floating-point matrix products depend on how the BLAS library blocks and orders the sums,
which changes with the shape of the request (and, measured with MKL here, even with a
row's position in a fixed-size batch): decoding a region would then differ in the last
bits from the same region of the full decode. Here every linear layer is computed on
**integer-valued float64 operands**: the weights are the stored integer symbols, and the
layer inputs are rounded to a fixed-point grid of ``2**-frac_bits``. Every partial sum is an
integer below 2**53, so any summation order gives the exact same result. The scales
(``step * 2**-frac_bits``), biases and sines are applied element-wise on padded chunks of a
fixed size, which are position-independent as well; the sines are numpy's, which do not
depend on the thread count (torch's do, in the last bit).

The fixed-point rounding (2**-24 with the defaults) is far below float32 precision, so the
decoded values match the training network to float32 accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

#: Rows per evaluation call; every call is padded to exactly this many rows.
CHUNK = 1 << 13
_MAX_SYMBOL_BITS = 16  # |symbol| < 2**15 for weights quantised at <= 16 bits


def frac_bits_for(widths: Sequence[int], in_features: int) -> int:
    """Fixed-point bits of layer inputs such that ``inputs * symbols`` summed over the
    widest fan-in stays below 2**53 (at most 24)."""
    fan = max([in_features, *widths])
    return int(min(24, 52 - (_MAX_SYMBOL_BITS - 1) - math.ceil(math.log2(max(fan, 2)))))


class ExactSiren:
    """Inference-only SIREN group whose layers hold integer weight symbols.

    Parameters
    ----------
    weight_symbols, weight_steps:
        Per linear layer: integer symbols of shape ``(B, in, out)`` and the quantisation
        step (weights = symbols * step).
    biases:
        Per linear layer: dequantised biases ``(B, 1, out)`` (float64).
    frequencies:
        Effective omega per block and hidden layer ``(B, n_hidden)`` (float64).
    activation:
        ``"sin"`` or ``"cos"``.
    """

    def __init__(self, weight_symbols: Sequence[np.ndarray], weight_steps: Sequence[float],
                 biases: Sequence[np.ndarray], frequencies: np.ndarray | None, activation: str,
                 frac_bits: int | None = None, clip: float | None = None) -> None:
        self.w = [torch.from_numpy(np.asarray(s, dtype=np.float64)) for s in weight_symbols]
        self.steps = [float(s) for s in weight_steps]
        self.b = [torch.from_numpy(np.asarray(b, dtype=np.float64)) for b in biases]
        n_hidden = len(self.w) - 1
        freq = np.ones((int(self.w[0].shape[0]), n_hidden)) if frequencies is None else frequencies
        self.freq = torch.from_numpy(np.asarray(freq, dtype=np.float64))
        if activation not in ("sin", "cos", "relu"):
            raise ValueError(f"unknown activation {activation!r}")
        self.activation = activation
        widths = [int(w.shape[2]) for w in self.w[:-1]]
        self.frac_bits = frac_bits_for(widths, int(self.w[0].shape[1])) if frac_bits is None else int(frac_bits)
        self.scale_in = float(2.0**self.frac_bits)
        # ReLU activations are unbounded: ``clip`` (chosen by the encoder from the largest
        # activation it saw, with margin) keeps every integer product below 2**53.
        self.clip = clip

    def _fixed(self, v: torch.Tensor) -> torch.Tensor:
        """Values on the fixed-point grid (integers in units of 2**-frac_bits)."""
        if self.clip is not None:
            v = v.clamp(-self.clip, self.clip)
        return torch.round(v * self.scale_in)

    def forward_block(self, k: int, local: np.ndarray) -> np.ndarray:
        """Network ``k`` at local coordinates ``(N, in)`` -> ``(N, out)`` float32."""
        n = len(local)
        rows = -(-n // CHUNK) * CHUNK
        x = np.zeros((rows, local.shape[1]), dtype=np.float64)
        x[:n] = local
        out = np.empty((n, int(self.w[-1].shape[2])), dtype=np.float32)
        # numpy, not torch, for the sines: torch splits element-wise work across threads and
        # its vector and scalar paths differ in the last bit, so the result would depend on
        # the thread count (measured: 3% of voxels differ between 1 and 2 threads).
        np_act = {"sin": np.sin, "cos": np.cos, "relu": lambda v: np.maximum(v, 0.0)}[self.activation]

        def act(v: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np_act(v.numpy()))

        last = len(self.w) - 1
        for lo in range(0, n, CHUNK):
            h = self._fixed(torch.from_numpy(x[lo : lo + CHUNK]))
            for i in range(len(self.w)):
                z = h @ self.w[i][k]  # exact: integer operands, integer partial sums < 2**53
                pre = z * (self.steps[i] / self.scale_in) + self.b[i][k]
                if i < last:
                    h = self._fixed(act(pre * self.freq[k, i]))
                else:
                    h = pre
            out[lo : lo + CHUNK] = h[: min(CHUNK, n - lo)].numpy().astype(np.float32)
        return out
