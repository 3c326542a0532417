"""The prior-conditioned neural residual of the hybrid method: a tiny convolutional
network, fitted to one volume at encode time, that maps the prior codec's decode to the
original (``out = prior + net(prior)``), with its weights stored in the file.

INIF's residual is a coordinate network over the volume (``residual="field"`` in
:mod:`voxfield.compress.hybrid`); a coordinate network has to spend parameters on *where*
the residual is, while the residual of a transform codec is mostly systematic in *what*
the decode looks like locally (ringing, flattened peaks, blurred edges), which a few
hundred convolution weights capture for the whole volume (measured in
``benchmarks/results/hybrid``).

Arrays are handled as ``(N, *spatial)`` with 1 to 3 spatial axes (:func:`conv_view`):
channel axes become the batch, so one network serves every channel, each normalised by
the mean and standard deviation of its own prior decode (stored in the filter section).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from voxfield.compress.entropy import weights as weight_coding

#: Axis letters that are never convolved over (they index separate images).
BATCH_AXES = "CS"


@dataclass(frozen=True)
class ConvPlan:
    """How an array maps to ``(N, *spatial)`` for convolution."""

    perm: tuple[int, ...]  # axes order: batch axes first, then spatial
    n_batch_axes: int
    shape: tuple[int, ...]  # original shape

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.perm[self.n_batch_axes:])

    @property
    def dims(self) -> int:
        return len(self.perm) - self.n_batch_axes

    @property
    def batch(self) -> int:
        return int(np.prod([self.shape[i] for i in self.perm[: self.n_batch_axes]], dtype=np.int64))

    def forward(self, data: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(data.transpose(self.perm)).reshape((self.batch,) + self.spatial_shape)

    def inverse(self, arr: np.ndarray) -> np.ndarray:
        full = arr.reshape(tuple(self.shape[i] for i in self.perm))
        return np.ascontiguousarray(full.transpose(np.argsort(self.perm)))


def conv_view(shape: tuple[int, ...], axes: str) -> ConvPlan:
    """Channel-like axes (C, S) and any axes beyond the last three become the batch; the
    last (up to) three other axes are convolved over."""
    batch = [i for i, a in enumerate(axes) if a in BATCH_AXES]
    rest = [i for i, a in enumerate(axes) if a not in BATCH_AXES]
    if len(rest) > 3:
        batch, rest = batch + rest[:-3], rest[-3:]
    if not rest:  # a pure channel vector: treat it as a 1-D signal
        rest, batch = batch[-1:], batch[:-1]
    return ConvPlan(tuple(batch + rest), len(batch), tuple(shape))


def _conv(dims: int) -> Callable[..., torch.Tensor]:
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]


def param_shapes(dims: int, channels: int, kernel: int) -> list[tuple[int, ...]]:
    """Tensor shapes of the network, in file order: conv k (1 -> c), conv 1 (c -> c),
    conv k (c -> 1), each weight then bias."""
    k = (kernel,) * dims
    one = (1,) * dims
    return [(channels, 1, *k), (channels,), (channels, channels, *one), (channels,), (1, channels, *k), (1,)]


def param_count(dims: int, channels: int, kernel: int) -> int:
    return sum(math.prod(s) for s in param_shapes(dims, channels, kernel))


def halo(kernel: int) -> int:
    """Voxels of context the network reads on each side (two k-wide convolutions)."""
    return 2 * (kernel // 2)


def apply_net(params: list[torch.Tensor], x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``x + net(x)`` for ``x`` of shape ``(N, 1, *spatial)`` (replicate padding)."""
    dims = x.ndim - 2
    conv = _conv(dims)
    p = kernel // 2
    pad = (p, p) * dims

    def padded(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, pad, mode="replicate") if p else t

    h = F.gelu(conv(padded(x), params[0], params[1]))
    h = F.gelu(conv(h, params[2], params[3]))
    return x + conv(padded(h), params[4], params[5])


def init_params(dims: int, channels: int, kernel: int, seed: int) -> list[torch.Tensor]:
    """Initial weights (the last layer at zero, so training starts from the prior)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, shape in enumerate(param_shapes(dims, channels, kernel)):
        if i >= 4:
            t = torch.zeros(shape)
        elif len(shape) == 1:
            t = torch.zeros(shape)
        else:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
        out.append(t.requires_grad_(True))
    return out


def normalisation(prior: np.ndarray) -> np.ndarray:
    """Per batch item ``(mean, std)`` of the prior decode, as float32 ``(N, 2)``."""
    flat = prior.reshape(prior.shape[0], -1).astype(np.float64)
    mu = flat.mean(axis=1)
    sd = flat.std(axis=1)
    sd = np.where(sd > 0, sd, 1.0)
    return np.stack([mu, sd], axis=1).astype(np.float32)


def _crop_edges(spatial: tuple[int, ...], voxels: int) -> tuple[int, ...]:
    edge = max(8, int(round(voxels ** (1.0 / len(spatial)))))
    return tuple(min(n, edge) for n in spatial)


def crop_voxels_for(channels: int, base: int = 55_000) -> int:
    """Voxels per training step: fewer for wider filters, so a step costs about the same."""
    return max(4096, base * 4 // max(4, channels))


def fit(prior: np.ndarray, target: np.ndarray, norm: np.ndarray, *, channels: int, kernel: int, steps: int,
        time_budget: float | None, seed: int, lr: float = 1e-2, crop_voxels: int = 55_000,
        bits: float = weight_coding.MIN_BITS, qat_fraction: float = 0.05,
        guide_loss: Callable[[torch.Tensor, tuple[slice, ...]], torch.Tensor] | None = None,
        guide_weight: float = 0.0, progress: Callable[[float], None] | None = None,
        device: torch.device | None = None) -> list[np.ndarray]:
    """Fit the network on random crops of ``(N, *spatial)`` arrays (prior decode and
    original), MSE in normalised units (+ ``guide_weight`` × ``guide_loss(out, crop)``
    where ``out`` is the corrected crop in data units); the last ``qat_fraction`` of the
    steps see fake-quantised weights. Returns float32 weights."""
    dev = device or torch.device("cpu")
    dims = prior.ndim - 1
    mu = torch.as_tensor(norm[:, 0], device=dev).view(-1, 1, *([1] * dims))
    sd = torch.as_tensor(norm[:, 1], device=dev).view(-1, 1, *([1] * dims))
    p_all = torch.as_tensor(prior.astype(np.float32), device=dev)[:, None]
    t_all = torch.as_tensor(target.astype(np.float32), device=dev)[:, None]
    pn = (p_all - mu) / sd
    tn = (t_all - mu) / sd
    params = [t.detach().to(dev).requires_grad_(True) for t in init_params(dims, channels, kernel, seed)]
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    spatial = prior.shape[1:]
    edges = _crop_edges(spatial, crop_voxels)
    n_items = prior.shape[0]
    per_item = max(1, math.prod(edges))
    batch = max(1, min(n_items, crop_voxels // per_item))
    t0 = time.perf_counter()
    total = steps
    qat_from = int(total * (1 - qat_fraction))
    step = 0
    while step < total:
        if time_budget is not None and step == 20:
            pace = (time.perf_counter() - t0) / 20
            total = max(40, min(steps, int(time_budget / max(pace, 1e-6))))
            qat_from = int(total * (1 - qat_fraction))
        frac = step / max(total, 1)
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        items = rng.integers(0, n_items, batch)
        starts = [int(rng.integers(0, n - e + 1)) for n, e in zip(spatial, edges, strict=True)]
        sl = tuple(slice(s, s + e) for s, e in zip(starts, edges, strict=True))
        idx = (torch.as_tensor(items, device=dev), slice(None), *sl)
        use = params if step < qat_from else [weight_coding.fake_quant(p, bits) for p in params]
        out = apply_net(use, pn[idx], kernel)
        loss = ((out - tn[idx]) ** 2).mean()
        if guide_loss is not None and guide_weight > 0:
            loss = loss + guide_weight * guide_loss(out * sd[items] + mu[items], (items, *sl))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if progress is not None:
            progress(step / total)
    return [p.detach().cpu().numpy().astype(np.float32) for p in params]


def encode_weights(weights: list[np.ndarray], bits: float = weight_coding.MIN_BITS) -> tuple[bytes, list[list[float]]]:
    """Quantise and entropy-code the weights; returns the payload and the code table."""
    payload, codes = weight_coding.encode([w.reshape(-1) for w in weights], bits)
    return payload, [c.to_row() for c in codes]


_ROW = struct.Struct("<ffIB")  # step, scale, bound, family of one tensor's code
_LEN = struct.Struct("<I")


def pack_section(norm: np.ndarray, rows: list[list[float]], flags: bytes, weights: bytes) -> bytes:
    """The ``filter`` section: per-item normalisation (float32), the weight code table,
    the block flags and the weight stream, in binary (a JSON table would cost more bytes
    than the weights of a small filter)."""
    head = np.asarray(norm, dtype="<f4").tobytes()
    table = b"".join(_ROW.pack(r[0], r[3], int(r[1]), int(r[2])) for r in rows)
    return head + table + _LEN.pack(len(flags)) + flags + weights


def section_overhead(n_items: int, dims: int, channels: int, kernel: int) -> int:
    """Bytes of a ``filter`` section besides the flags and the weight stream."""
    return 8 * n_items + _ROW.size * len(param_shapes(dims, channels, kernel)) + _LEN.size


def split_section(blob: bytes, n_items: int, dims: int, channels: int,
                  kernel: int) -> tuple[np.ndarray, list[list[float]], bytes, bytes]:
    """The parts of a ``filter`` section: normalisation ``(N, 2)``, code table rows, flags
    and the (still coded) weight stream."""
    shapes = param_shapes(dims, channels, kernel)
    n_norm = 8 * n_items
    at = section_overhead(n_items, dims, channels, kernel)
    if len(blob) < at:
        raise ValueError("filter section too short")
    norm = np.frombuffer(blob, dtype="<f4", count=2 * n_items).reshape(n_items, 2).astype(np.float32)
    rows = []
    for i, shape in enumerate(shapes):
        step, scale, bound, family = _ROW.unpack_from(blob, n_norm + i * _ROW.size)
        rows.append([step, float(bound), float(family), scale, float(math.prod(shape))])
    (n_flags,) = _LEN.unpack_from(blob, at - _LEN.size)
    if at + n_flags > len(blob):
        raise ValueError("filter section too short for its flags")
    return norm, rows, blob[at: at + n_flags], blob[at + n_flags:]


def unpack_section(blob: bytes, n_items: int, dims: int, channels: int,
                   kernel: int) -> tuple[np.ndarray, list[np.ndarray], bytes]:
    """Inverse of :func:`pack_section`: normalisation ``(N, 2)``, decoded weights, flags."""
    norm, rows, flags, wpay = split_section(blob, n_items, dims, channels, kernel)
    return norm, decode_weights(wpay, rows, dims, channels, kernel), flags


def decode_weights(payload: bytes, rows: list[list[float]], dims: int, channels: int, kernel: int) -> list[np.ndarray]:
    """Inverse of :func:`encode_weights` (shapes from the architecture)."""
    shapes = param_shapes(dims, channels, kernel)
    if len(rows) != len(shapes):
        raise ValueError("filter code table does not match the network")
    from dataclasses import replace

    codes = [replace(weight_coding.TensorCode.from_row(r), count=math.prod(s)) for r, s in zip(rows, shapes, strict=True)]
    flat = weight_coding.decode(payload, codes, limit=sum(c.count for c in codes))
    return [f.reshape(s) for f, s in zip(flat, shapes, strict=True)]


#: Memory a decode slab may take in the convolutions' unfolded (im2col) buffers.
RUN_MEMORY = 256 << 20


def run(prior: np.ndarray, weights: list[np.ndarray], norm: np.ndarray, kernel: int,
        chunk_voxels: int | None = None) -> np.ndarray:
    """The corrected array ``(N, *spatial)`` (float64 arithmetic, so the result does not
    depend on the machine's float32 kernels), computed item by item and, for large items,
    in slabs along the first spatial axis with a halo (by default slabs whose convolution
    buffers take about :data:`RUN_MEMORY`)."""
    if chunk_voxels is None:
        dims = prior.ndim - 1
        chunk_voxels = max(4096, RUN_MEMORY // (8 * weights[0].shape[0] * kernel ** dims))
    params = [torch.as_tensor(w.astype(np.float64)) for w in weights]
    out = np.empty(prior.shape, np.float64)
    h = halo(kernel)
    per_plane = int(np.prod(prior.shape[2:], dtype=np.int64)) if prior.ndim > 2 else 1
    slab = max(1, chunk_voxels // max(per_plane, 1))
    n0 = prior.shape[1]
    with torch.no_grad():
        for i in range(prior.shape[0]):
            mu, sd = float(norm[i, 0]), float(norm[i, 1])
            for a in range(0, n0, slab):
                b = min(n0, a + slab)
                lo, hi = max(0, a - h), min(n0, b + h)
                x = torch.as_tensor((prior[i, lo:hi].astype(np.float64) - mu) / sd)[None, None]
                y = apply_net(params, x, kernel)[0, 0].numpy()
                out[i, a:b] = y[a - lo: a - lo + (b - a)] * sd + mu
    return out
