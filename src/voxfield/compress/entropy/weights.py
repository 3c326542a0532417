"""Quantisation and entropy coding of network weights.

Each tensor (one layer's weights or biases, shared by all blocks of one architecture) is
quantised uniformly and symmetrically: ``symbol = round(w / step)`` with
``step = 2 * max|w| / (2**bits - 1)``, so ``bits`` >= 8 gives at least 255 levels over the
tensor's range (the issue's "at least 8-bit, per layer"). ``bits`` may be fractional: it is
the knob that lands the file on its byte budget.

Symbols are coded with ``constriction``'s ANS coder under a parametric model per tensor,
chosen to minimise the coded size: a quantised Gaussian or Laplace (scale fitted to the
symbols) or a uniform distribution over [-K, K]. The decoder rebuilds the same models from
the stored (family, scale, K), so decoding is exact and deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import constriction
import numpy as np
import torch

from voxfield.compress.defaults import MIN_WEIGHT_BITS
from voxfield.errors import FormatError, describe_exception, library_failure

T = TypeVar("T")

FAMILIES = ("gauss", "laplace", "uniform")
MIN_BITS = MIN_WEIGHT_BITS


@dataclass(frozen=True)
class TensorCode:
    """How one tensor was quantised and modelled."""

    step: float
    bound: int
    family: str
    scale: float
    count: int

    def to_row(self) -> list[float]:
        return [self.step, float(self.bound), float(FAMILIES.index(self.family)), self.scale, float(self.count)]

    @classmethod
    def from_row(cls, row: list[float] | np.ndarray) -> TensorCode:
        fam = int(row[2])
        if fam not in range(len(FAMILIES)):
            raise FormatError("corrupt weight table (unknown model family)")
        return cls(float(row[0]), int(row[1]), FAMILIES[fam], float(row[3]), int(row[4]))


def quant_step(values: np.ndarray, bits: float) -> float:
    """Uniform step giving ``2**bits - 1`` levels over [-max|v|, max|v|]."""
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if peak == 0.0:
        return 1.0
    return 2.0 * peak / (2.0**bits - 1.0)


def quantize(values: np.ndarray, bits: float) -> tuple[np.ndarray, float]:
    """Symbols (int32) and step for ``values`` at ``bits`` bits."""
    step = float(np.float32(quant_step(values, bits)))  # stored as float32: quantise with that
    return np.rint(values.astype(np.float64) / step).astype(np.int32), step


def _model(family: str, bound: int, scale: float) -> constriction.stream.model.Model:
    if family == "gauss":
        return constriction.stream.model.QuantizedGaussian(-bound, bound, 0.0, scale)
    if family == "laplace":
        return constriction.stream.model.QuantizedLaplace(-bound, bound, 0.0, scale)
    return constriction.stream.model.Uniform(2 * bound + 1)


def _fit_scale(symbols: np.ndarray, family: str) -> float:
    s = symbols.astype(np.float64)
    if family == "gauss":
        return max(float(np.sqrt(np.mean(s * s))), 0.3)
    return max(float(np.mean(np.abs(s))), 0.3)  # Laplace: b = E|x|


def _to_model_symbols(symbols: np.ndarray, family: str, bound: int) -> np.ndarray:
    # Uniform(n) takes symbols 0..n-1; the quantised distributions take -bound..bound.
    return (symbols + bound).astype(np.int32) if family == "uniform" else symbols.astype(np.int32)


def _encoded_bits(symbols: np.ndarray, family: str, bound: int, scale: float) -> int:
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(_to_model_symbols(symbols, family, bound), _model(family, bound, scale))
    return int(coder.num_bits())


def choose_code(symbols: np.ndarray, step: float) -> TensorCode:
    """The model family (and fitted scale) that codes ``symbols`` in the fewest bits."""
    bound = max(int(np.max(np.abs(symbols))) if symbols.size else 0, 1)
    best: TensorCode | None = None
    best_bits = math.inf
    for family in FAMILIES:
        scale = _fit_scale(symbols, family) if family != "uniform" else 0.0
        scale = float(np.float32(scale))
        bits = _encoded_bits(symbols, family, bound, scale)
        if bits < best_bits:
            best, best_bits = TensorCode(step, bound, family, scale, int(symbols.size)), bits
    assert best is not None
    return best


def encode(tensors: list[np.ndarray], bits: float) -> tuple[bytes, list[TensorCode]]:
    """Quantise and entropy-code ``tensors`` (in order) into one ANS stream."""
    coded: list[tuple[np.ndarray, TensorCode]] = []
    for t in tensors:
        flat = np.asarray(t, dtype=np.float32).reshape(-1)
        symbols, step = quantize(flat, bits)
        coded.append((symbols, choose_code(symbols, step)))
    coder = constriction.stream.stack.AnsCoder()
    for symbols, code in reversed(coded):  # ANS is a stack: encode in reverse order
        coder.encode_reverse(_to_model_symbols(symbols, code.family, code.bound),
                             _model(code.family, code.bound, code.scale))
    return coder.get_compressed().tobytes(), [c for _, c in coded]


def decode_symbols(payload: bytes, codes: list[TensorCode], *, limit: int) -> list[np.ndarray]:
    """Integer symbols (int64, flat) of every tensor of a stream made by :func:`encode`.

    ``limit`` bounds the total count of symbols (the counts come from a header that may be
    damaged; see :func:`voxfield.compress.schema.alloc_limit`): more is refused before the
    decoder allocates anything."""
    if len(payload) % 4:
        raise FormatError("corrupt weight stream (length not a multiple of 4)")
    total = sum(int(c.count) for c in codes)
    if any(c.count < 0 for c in codes) or total > limit:
        raise FormatError(f"corrupt weight table ({total:,} weights exceed what the volume allows, {limit:,})")
    words = np.frombuffer(payload, dtype=np.uint32).copy()
    coder = constriction.stream.stack.AnsCoder(words)
    out = []
    try:
        for code in codes:
            if code.count < 0 or code.bound < 1 or code.step <= 0 or not math.isfinite(code.step):
                raise ValueError("bad tensor code")
            sym = coder.decode(_model(code.family, code.bound, code.scale), code.count).astype(np.int64)
            if code.family == "uniform":
                sym -= code.bound
            out.append(sym)
    except BaseException as exc:  # constriction reports bad streams as errors or Rust panics
        if not library_failure(exc):
            raise
        raise FormatError(f"corrupt weight stream ({describe_exception(exc)})") from None
    return out


def decode(payload: bytes, codes: list[TensorCode], *, limit: int) -> list[np.ndarray]:
    """Inverse of :func:`encode`: flat float32 arrays (symbols × step), one per tensor
    (``limit`` as in :func:`decode_symbols`)."""
    return [(s.astype(np.float64) * c.step).astype(np.float32)
            for s, c in zip(decode_symbols(payload, codes, limit=limit), codes, strict=True)]


def fake_quant(t: torch.Tensor, bits: float) -> torch.Tensor:
    """Quantise-dequantise ``t`` in the forward pass, identity gradient (straight-through),
    with the same step rule as :func:`quantize` (per tensor)."""
    peak = t.detach().abs().max()
    step = torch.where(peak > 0, 2.0 * peak / (2.0**bits - 1.0), torch.ones_like(peak))
    q = torch.round(t / step) * step
    return t + (q - t).detach()
