"""Fitting batched block networks to a field: sampling, learning-rate-free optimisation,
quantisation-aware fine-tuning.

Every step draws ``samples`` random voxels from each block's extent (all blocks of a group
in one ``(B, N, d)`` batch, no Python loop over voxels), and minimises the squared error
weighted by block size, so the objective is the volume's MSE. Learning rate:

* ``"auto"`` (default): a learning-rate range test — short runs from the same
  initialisation at 5 rates from 1e-4 to 1e-2, per group; the rate with the lowest loss at
  the end wins and the full run starts from scratch with it (Adam, cosine decay);
* ``"prodigy"``: the Prodigy optimiser (Mishchenko & Defazio 2023), which estimates the step
  size itself (learning rate 1.0, cosine decay);
* ``"adam"``: Adam at the given ``lr`` (the classic hand-tuned setting).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from voxfield.compress.weight_coding import fake_quant
from voxfield.errors import OptionError
from voxfield.fields.siren import BatchedSiren

RANGE_TEST_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@dataclass
class GroupData:
    """Training data of one group: block extents, padded to the largest."""

    net: BatchedSiren
    values: torch.Tensor  # (B, max_size, C) normalised field values of each extent (flat)
    shapes: torch.Tensor  # (B, n_axes) extent shape per block (int64)
    sizes: torch.Tensor  # (B,) voxels per extent
    weight: torch.Tensor  # (B,) share of the volume's voxels owned by each block
    scale: torch.Tensor  # (B, n_axes) half-range of each local coordinate (BlockSet.coord_scale)


def make_group_data(net: BatchedSiren, field: np.ndarray, ext_starts: np.ndarray, ext_stops: np.ndarray,
                    owned: Sequence[int], total: int, device: torch.device, scale: np.ndarray) -> GroupData:
    """Gather each block's extent from ``field`` (``(*coords, C)``) into padded tensors."""
    n_axes = field.ndim - 1
    flats, shapes = [], []
    for lo, hi in zip(ext_starts, ext_stops, strict=True):
        box = field[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
        shapes.append(box.shape[:n_axes])
        flats.append(box.reshape(-1, field.shape[-1]))
    m = max(len(f) for f in flats)
    vals = np.zeros((len(flats), m, field.shape[-1]), np.float32)
    for i, f in enumerate(flats):
        vals[i, : len(f)] = f
    return GroupData(
        net=net.to(device),
        values=torch.from_numpy(vals).to(device),
        shapes=torch.tensor(shapes, dtype=torch.int64, device=device),
        sizes=torch.tensor([len(f) for f in flats], dtype=torch.int64, device=device),
        weight=torch.tensor([o / total for o in owned], dtype=torch.float32, device=device),
        scale=torch.as_tensor(np.asarray(scale, dtype=np.float32), device=device),
    )


def sample(g: GroupData, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random voxels per block: local coordinates ``(B, n, d)``, values ``(B, n, C)``."""
    dev = g.values.device
    u = torch.rand(g.sizes.shape[0], n, generator=gen, device="cpu").to(dev)
    flat = (u * g.sizes[:, None]).long().clamp_max(g.sizes[:, None] - 1)
    vals = torch.gather(g.values, 1, flat[..., None].expand(-1, -1, g.values.shape[-1]))
    coords = []
    rem = flat
    shp = g.shapes
    n_axes = shp.shape[1]
    strides = [torch.prod(shp[:, a + 1 :], dim=1) if a + 1 < n_axes else torch.ones_like(shp[:, 0])
               for a in range(n_axes)]
    for a in range(n_axes):
        idx = rem // strides[a][:, None]
        rem = rem - idx * strides[a][:, None]
        span = (shp[:, a] - 1).clamp_min(1).float()[:, None]
        coords.append((2.0 * idx.float() / span - 1.0) * g.scale[:, a : a + 1])
    return torch.stack(coords, dim=-1), vals


def group_loss(g: GroupData, coords: torch.Tensor, vals: torch.Tensor, *, bits: float | None = None) -> torch.Tensor:
    """Volume-weighted MSE of a group on a sample (fake-quantised weights when ``bits``)."""
    if bits is None:
        pred = g.net(coords)
    else:
        pred = g.net(coords, [fake_quant(w, bits) for w in g.net.weights], [fake_quant(b, bits) for b in g.net.biases])
    per_block = ((pred - vals) ** 2).mean(dim=(1, 2))
    return (per_block * g.weight).sum()


def _optimizer(params: list[torch.nn.Parameter], kind: str, lr: float) -> torch.optim.Optimizer:
    if kind == "prodigy":
        try:
            from prodigyopt import Prodigy
        except ImportError:  # pragma: no cover - dependency declared in pyproject
            raise OptionError("optimizer 'prodigy' needs the prodigyopt package") from None
        return Prodigy(params, lr=1.0, weight_decay=0.0, safeguard_warmup=True, use_bias_correction=True)
    return torch.optim.Adam(params, lr=lr)


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def train(groups: list[GroupData], *, steps: int | None, samples: int, optimizer: str = "auto",
          lr: float | None = None, seed: int = 0, bits: float | None = None, time_budget: float | None = None,
          on_step: Callable[[int, int], None] | None = None, lrs: Sequence[float] | None = None
          ) -> tuple[list[float], int]:
    """Fit every group; returns (learning rate per group, steps taken).

    With ``steps=None`` the run takes as many steps as fit in ``time_budget`` seconds
    (range test included): the count is first estimated from the range test's pace and
    re-estimated from the measured pace after every 5 % of the run. ``lrs`` forces
    per-group rates (after a range test, and for fine-tuning). ``on_step(step, total)``
    reports progress."""
    if optimizer not in ("auto", "adam", "prodigy"):
        raise OptionError(f"unknown optimizer {optimizer!r} (auto, adam, prodigy)")
    if optimizer == "adam" and lr is None and lrs is None:
        raise OptionError("optimizer 'adam' needs --lr")
    if steps is None and (time_budget is None or time_budget <= 0):
        raise OptionError("give a number of steps or a time budget")
    t_start = time.perf_counter()
    pace: float | None = None
    if lrs is None:
        if optimizer == "auto":
            probe = max(10, min(150, steps // 25)) if steps is not None else 40
            lrs = range_test(groups, samples=samples, seed=seed, probe_steps=probe)
            pace = (time.perf_counter() - t_start) / (probe * len(RANGE_TEST_LRS))
        elif optimizer == "prodigy":
            lrs = [1.0] * len(groups)
        else:
            lrs = [float(lr)] * len(groups)  # type: ignore[arg-type]
    kind = "prodigy" if optimizer == "prodigy" and bits is None else "adam"
    opts = [_optimizer(list(g.net.parameters()), kind, rate) for g, rate in zip(groups, lrs, strict=True)]
    gen = torch.Generator().manual_seed(seed + 1)
    if steps is not None:
        total = int(steps)
    else:
        assert time_budget is not None
        remaining = time_budget - (time.perf_counter() - t_start)
        total = max(20, int(remaining / pace)) if pace else 200
    warmup = min(100, total // 20) if bits is None else 0
    recheck = max(20, total // 20) if steps is None else -1
    t_loop = time.perf_counter()
    step = 0
    while step < total:
        if step == recheck and time_budget is not None:
            # re-estimated every 5 % of the run from the pace so far, so that a machine that
            # slows down (other work on its cores) still ends near the budget
            measured = (time.perf_counter() - t_loop) / step
            total = max(step + 1, int(step + (time_budget - (time.perf_counter() - t_start)) / measured))
            recheck = step + max(20, total // 20)
        for g, opt, rate in zip(groups, opts, lrs, strict=True):
            for pg in opt.param_groups:
                pg["lr"] = _lr_at(step, total, rate, warmup)
            coords, vals = sample(g, samples, gen)
            loss = group_loss(g, coords, vals, bits=bits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step += 1
        if on_step is not None:
            on_step(step, total)
    return list(lrs), total


def range_test(groups: list[GroupData], *, samples: int, seed: int, probe_steps: int,
               candidates: Sequence[float] = RANGE_TEST_LRS) -> list[float]:
    """Per group, the candidate rate whose short run from the current initialisation ends
    with the lowest loss (mean of its last quarter). The networks are left unchanged."""
    best = [math.inf] * len(groups)
    chosen = [candidates[0]] * len(groups)
    saved = [copy.deepcopy(g.net.state_dict()) for g in groups]
    for rate in candidates:
        gen = torch.Generator().manual_seed(seed + 7)
        opts = [torch.optim.Adam(g.net.parameters(), lr=rate) for g in groups]
        tail = [0.0] * len(groups)
        for step in range(probe_steps):
            for i, (g, opt) in enumerate(zip(groups, opts, strict=True)):
                coords, vals = sample(g, samples, gen)
                loss = group_loss(g, coords, vals)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step >= probe_steps * 3 // 4:
                    v = float(loss.detach())
                    tail[i] += v if math.isfinite(v) else math.inf
        for i in range(len(groups)):
            if tail[i] < best[i]:
                best[i], chosen[i] = tail[i], rate
        for g, state in zip(groups, saved, strict=True):
            g.net.load_state_dict(state)
    return chosen
