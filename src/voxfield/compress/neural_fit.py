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

With application guidance (a :class:`~voxfield.compress.modes.guidance.FieldGuide`) the loss is
``MSE + weight x guidance``: segmentation guidance scores the same sampled voxels as the
MSE against the reference mask (:func:`~voxfield.compress.modes.guidance.segmentation_guidance_loss`,
soft Dice scaled so that ``weight`` means the same for sparse and dense segmentations); ssim
guidance draws, from a generator of its own, a few small patches (16^3 voxels in 3-D, 32^2
in 2-D, smaller when blocks or the per-block sample count are small) per block and scores
them with MS-SSIM (``1 - MS-SSIM`` scaled by
:func:`~voxfield.compress.modes.guidance.ssim_guidance_scale`). Both are weighted by the blocks'
shares of the volume like the MSE. The MSE draws stay exactly those of an unguided run; the
learning-rate range test uses the MSE alone.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from voxfield.compress.entropy.weights import fake_quant
from voxfield.compress.modes.guidance import FieldGuide, ms_ssim, segmentation_guidance_loss, ssim_guidance_scale
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
    mask: torch.Tensor | None = None  # (B, max_size, n) bool reference segmentation (segmentation guidance)


def _gather_extents(field: np.ndarray, ext_starts: np.ndarray, ext_stops: np.ndarray, dtype: type
                    ) -> tuple[np.ndarray, list[tuple[int, ...]], list[int]]:
    """Each block's extent of ``field`` (``(*coords, C)``), flattened and padded: ``(B, max_size, C)``."""
    n_axes = field.ndim - 1
    flats, shapes = [], []
    for lo, hi in zip(ext_starts, ext_stops, strict=True):
        box = field[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
        shapes.append(box.shape[:n_axes])
        flats.append(box.reshape(-1, field.shape[-1]))
    m = max(len(f) for f in flats)
    vals = np.zeros((len(flats), m, field.shape[-1]), dtype)
    for i, f in enumerate(flats):
        vals[i, : len(f)] = f
    return vals, shapes, [len(f) for f in flats]


def make_group_data(net: BatchedSiren, field: np.ndarray, ext_starts: np.ndarray, ext_stops: np.ndarray,
                    owned: Sequence[int], total: int, device: torch.device, scale: np.ndarray, *,
                    mask: np.ndarray | None = None) -> GroupData:
    """Gather each block's extent from ``field`` (``(*coords, C)``) into padded tensors
    (and from ``mask``, ``(*coords, n)`` bool, the reference segmentation, when given)."""
    vals, shapes, sizes = _gather_extents(field, ext_starts, ext_stops, np.float32)
    mask_t = None
    if mask is not None:
        mask_t = torch.from_numpy(_gather_extents(mask, ext_starts, ext_stops, np.bool_)[0]).to(device)
    return GroupData(
        net=net.to(device),
        values=torch.from_numpy(vals).to(device),
        shapes=torch.tensor(shapes, dtype=torch.int64, device=device),
        sizes=torch.tensor(sizes, dtype=torch.int64, device=device),
        weight=torch.tensor([o / total for o in owned], dtype=torch.float32, device=device),
        scale=torch.as_tensor(np.asarray(scale, dtype=np.float32), device=device),
        mask=mask_t,
    )


def sample(g: GroupData, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random voxels per block: local coordinates ``(B, n, d)``, values ``(B, n, C)``."""
    coords, vals, _ = sample_indexed(g, n, gen)
    return coords, vals


def sample_indexed(g: GroupData, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`sample` plus the voxels' flat indices in their block's extent ``(B, n)``."""
    dev = g.values.device
    u = torch.rand(g.sizes.shape[0], n, generator=gen, device="cpu").to(dev)
    flat = (u * g.sizes[:, None]).long().clamp_max(g.sizes[:, None] - 1)
    return _coords_of(g, flat), _gather(g.values, flat), flat


def _gather(t: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Rows ``flat`` (``(B, n)``) of each block's ``(B, max_size, C)`` tensor."""
    return torch.gather(t, 1, flat[..., None].expand(-1, -1, t.shape[-1]))


def _coords_of(g: GroupData, flat: torch.Tensor) -> torch.Tensor:
    """Local coordinates ``(B, n, d)`` of flat extent indices ``(B, n)``."""
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
    return torch.stack(coords, dim=-1)


def patch_shape(g: GroupData, samples: int) -> tuple[int, ...]:
    """Shape of the ssim guidance patches of a group: a cube over the last (up to) three
    coordinate axes, one voxel along the others; edge 16 in 3-D and 32 in 2-D, shrunk so a
    patch holds about ``samples`` voxels at most (never under 8) and fits in every block."""
    n_axes = int(g.shapes.shape[1])
    k = min(3, n_axes)
    edge = 32 if k == 2 else 16
    edge = max(8, min(edge, int(round(max(samples, 1) ** (1.0 / k)))))
    smallest = g.shapes.min(dim=0).values.tolist()
    return tuple(1 if a < n_axes - k else int(min(edge, smallest[a])) for a in range(n_axes))


def sample_patches(g: GroupData, shape: Sequence[int], n: int, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random patches of ``shape`` inside each block's extent: local coordinates
    ``(B, n * P, d)`` and values ``(B, n * P, C)``, ``P = prod(shape)``, patch by patch in
    C order."""
    dev = g.values.device
    n_axes = len(shape)
    b = g.sizes.shape[0]
    ext = torch.as_tensor(list(shape), dtype=torch.int64, device=dev)
    room = (g.shapes - ext[None, :] + 1).clamp_min(1)  # (B, n_axes) possible starts per axis
    u = torch.rand(b, n, n_axes, generator=gen, device="cpu").to(dev)
    start = (u * room[:, None, :]).long().clamp_max(room[:, None, :] - 1)  # (B, n, n_axes)
    offs = torch.stack(torch.meshgrid(*[torch.arange(int(s), device=dev) for s in shape], indexing="ij"),
                       dim=-1).reshape(-1, n_axes)  # (P, n_axes)
    idx = start[:, :, None, :] + offs[None, None]  # (B, n, P, n_axes)
    shp = g.shapes
    strides = torch.stack([torch.prod(shp[:, a + 1 :], dim=1) if a + 1 < n_axes else torch.ones_like(shp[:, 0])
                           for a in range(n_axes)], dim=-1)  # (B, n_axes)
    flat = (idx * strides[:, None, None, :]).sum(dim=-1).reshape(b, -1)
    return _coords_of(g, flat), _gather(g.values, flat)


def _forward(g: GroupData, coords: torch.Tensor, bits: float | None) -> torch.Tensor:
    if bits is None:
        return g.net(coords)
    return g.net(coords, [fake_quant(w, bits) for w in g.net.weights], [fake_quant(b, bits) for b in g.net.biases])


def group_loss(g: GroupData, coords: torch.Tensor, vals: torch.Tensor, *, bits: float | None = None) -> torch.Tensor:
    """Volume-weighted MSE of a group on a sample (fake-quantised weights when ``bits``)."""
    pred = _forward(g, coords, bits)
    per_block = ((pred - vals) ** 2).mean(dim=(1, 2))
    return (per_block * g.weight).sum()


def guided_loss(g: GroupData, coords: torch.Tensor, vals: torch.Tensor, flat: torch.Tensor, guide: FieldGuide,
                gen: torch.Generator, *, samples: int, bits: float | None = None) -> torch.Tensor:
    """:func:`group_loss` + ``guide.weight`` x the guidance loss of the group, scaled by the
    group's share of the volume like the MSE. ``flat`` are the sampled voxels' indices
    (segmentation); ``gen`` draws the ssim patches."""
    pred = _forward(g, coords, bits)
    per_block = ((pred - vals) ** 2).mean(dim=(1, 2))
    mse = (per_block * g.weight).sum()
    ch = guide.channel
    if guide.kind == "segmentation":
        assert g.mask is not None and guide.threshold is not None
        sel = pred if ch is None else pred[..., ch : ch + 1]
        ref = _gather(g.mask, flat)
        w = g.weight[:, None, None]
        term = g.weight.sum() * segmentation_guidance_loss(sel, ref, guide.threshold, guide.tau, weights=w)
    else:
        shape = patch_shape(g, samples)
        size = int(np.prod(shape))
        n = max(1, samples // (4 * size))
        pc, pv = sample_patches(g, shape, n, gen)
        pp = _forward(g, pc, bits)
        if ch is not None:
            pp, pv = pp[..., ch : ch + 1], pv[..., ch : ch + 1]
        spatial = list(shape[-min(3, len(shape)) :])  # patch axes (ssim guidance needs >= 2)
        b, c = pp.shape[0], pp.shape[-1]

        def items(t: torch.Tensor) -> torch.Tensor:  # (B, n*P, C) -> (B*n*C, 1, *spatial)
            t = t.reshape(b, n, size, c).permute(0, 1, 3, 2)
            return t.reshape(b * n * c, 1, *spatial)

        score = ms_ssim(items(pp), items(pv), 2.0).reshape(b, -1).mean(dim=1)
        term = ssim_guidance_scale(2.0) * (g.weight * (1.0 - score)).sum()
    return mse + guide.weight * term


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
          on_step: Callable[[int, int], None] | None = None, lrs: Sequence[float] | None = None,
          guide: FieldGuide | None = None) -> tuple[list[float], int]:
    """Fit every group; returns (learning rate per group, steps taken).

    With ``steps=None`` the run takes as many steps as fit in ``time_budget`` seconds
    (range test included): the count is first estimated from the range test's pace and
    re-estimated from the measured pace after every 5 % of the run. ``lrs`` forces
    per-group rates (after a range test, and for fine-tuning). ``on_step(step, total)``
    reports progress. ``guide`` adds application guidance (module docstring); the groups
    then need their ``mask`` for segmentation guidance."""
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
    guide_gen = torch.Generator().manual_seed(seed + 5) if guide is not None else None
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
            if guide is None:
                coords, vals = sample(g, samples, gen)
                loss = group_loss(g, coords, vals, bits=bits)
            else:
                assert guide_gen is not None
                coords, vals, flat = sample_indexed(g, samples, gen)
                loss = guided_loss(g, coords, vals, flat, guide, guide_gen, samples=samples, bits=bits)
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
