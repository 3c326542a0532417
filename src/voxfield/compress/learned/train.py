"""Training of the learned prior (CPU or CUDA): random crops of (decode, original) pairs,
each normalised by the mean and standard deviation of its whole decode, with random
flips and axis swaps; the loss is the mean over the batch of ``MSE(out) / MSE(decode)``,
so that every codec and ratio counts by its relative (dB) improvement, not by the size of
its error."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from voxfield.compress.learned.net import EnhanceNet, NetConfig, condition, pad_even
from voxfield.compress.learned.pairs import Pair

#: Floor on an item's decode MSE (normalised units) in the relative loss: near-lossless
#: crops (errors far below the signal's spread) are not weighted as if they were lossy.
BASE_FLOOR = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of a training run."""

    steps: int = 3000
    batch: int = 8
    crop: int = 24
    lr: float = 2e-3
    seed: int = 0
    time_budget: float | None = None  # seconds (None: all steps)
    threads: int | None = None


def _prepared(pairs: Sequence[Pair]) -> list[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
    out = []
    for p in pairs:
        mu = float(p.decode.mean())
        sd = float(p.decode.std()) or 1.0
        out.append((((p.decode - mu) / sd).astype(np.float32), ((p.original - mu) / sd).astype(np.float32),
                    condition(p.family, p.bits_per_voxel)))
    return out


def _crop(a: np.ndarray, b: np.ndarray, edge: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    sl = []
    for s in a.shape:
        e = min(s, edge)
        o = int(rng.integers(0, s - e + 1))
        sl.append(slice(o, o + e))
    a, b = a[tuple(sl)], b[tuple(sl)]
    for ax in range(3):
        if rng.random() < 0.5:
            a, b = np.flip(a, ax), np.flip(b, ax)
    if a.shape[0] > 1 and a.shape[0] == a.shape[1] == a.shape[2]:
        perm = tuple(rng.permutation(3))
        a, b = a.transpose(perm), b.transpose(perm)
    elif rng.random() < 0.5 and a.shape[1] == a.shape[2]:
        a, b = a.transpose(0, 2, 1), b.transpose(0, 2, 1)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def _batch(data: list[tuple[np.ndarray, np.ndarray, torch.Tensor]], cfg: TrainConfig, rng: np.random.Generator
           ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Crops grouped by shape (3-D crops and depth-1 images differ) as tensors."""
    groups: dict[tuple[int, ...], list[tuple[np.ndarray, np.ndarray, torch.Tensor]]] = {}
    for i in rng.integers(0, len(data), cfg.batch):
        d, o, c = data[int(i)]
        edge = cfg.crop if d.shape[0] > 1 else cfg.crop * 4
        a, b = _crop(d, o, edge, rng)
        groups.setdefault(a.shape, []).append((a, b, c))
    out = []
    for items in groups.values():
        x = torch.from_numpy(np.stack([a for a, _, _ in items]))[:, None]
        y = torch.from_numpy(np.stack([b for _, b, _ in items]))[:, None]
        out.append((x, y, torch.stack([c for _, _, c in items])))
    return out


def relative_loss(model: EnhanceNet, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mean over items of MSE(enhanced) / MSE(decode) (odd edges padded and cropped back), the decode's MSE floored at :data:`BASE_FLOOR`."""
    xp, shape = pad_even(x)
    out = model(xp, c)[:, :, : shape[0], : shape[1], : shape[2]]
    dims = (1, 2, 3, 4)
    base = ((x - y) ** 2).mean(dim=dims)
    err = ((out - y) ** 2).mean(dim=dims)
    return (err / (base + BASE_FLOOR)).mean()


def train(pairs: Sequence[Pair], cfg: TrainConfig = TrainConfig(), *, net: NetConfig = NetConfig(),
          device: str = "cpu", valid: Sequence[Pair] = (), log: Callable[[dict[str, Any]], None] | None = None
          ) -> tuple[EnhanceNet, list[dict[str, Any]]]:
    """Train an :class:`EnhanceNet` on ``pairs``; returns it (eval mode, CPU) and the log
    (step, loss, seconds; validation loss every 250 steps when ``valid`` is given)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = torch.device(device)
    model = EnhanceNet(net).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = _prepared(pairs)
    vdata = _prepared(valid)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    total = cfg.steps
    run = 0.0
    for step in range(1, 10**9):
        if step > total:
            break
        if cfg.time_budget is not None and step == 30:
            pace = (time.perf_counter() - t0) / 29
            total = max(60, min(cfg.steps, int(cfg.time_budget / max(pace, 1e-6))))
        frac = step / max(total, 1)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        loss = torch.zeros((), device=dev)
        groups = _batch(data, cfg, rng)
        for x, y, c in groups:
            loss = loss + relative_loss(model, x.to(dev), y.to(dev), c.to(dev)) * x.shape[0] / cfg.batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = float(loss.detach())
        run = 0.98 * run + 0.02 * lv if step > 1 else lv
        if step % 50 == 0 or step == total:
            rec: dict[str, Any] = {"step": step, "loss": round(run, 5), "seconds": round(time.perf_counter() - t0, 1)}
            if vdata and (step % 250 == 0 or step == total):
                rec["valid"] = round(validate(model, vdata, dev), 5)
            history.append(rec)
            if log:
                log(rec)
    return model.cpu().eval(), history


def validate(model: EnhanceNet, vdata: list[tuple[np.ndarray, np.ndarray, torch.Tensor]], dev: torch.device,
             edge: int = 48) -> float:
    """Mean relative loss on fixed central crops of the validation pairs."""
    model.eval()
    vals = []
    with torch.no_grad():
        for d, o, c in vdata:
            sl = tuple(slice((s - min(s, edge)) // 2, (s - min(s, edge)) // 2 + min(s, edge)) for s in d.shape)
            x = torch.from_numpy(np.ascontiguousarray(d[sl]))[None, None].to(dev)
            y = torch.from_numpy(np.ascontiguousarray(o[sl]))[None, None].to(dev)
            vals.append(float(relative_loss(model, x, y, c[None].to(dev))))
    model.train()
    return float(np.mean(vals)) if vals else float("nan")
