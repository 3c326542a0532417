"""Training the U-Net on simulated datasets (``voxfield denoise train``).

Paper 003 trains with categorical cross-entropy, class weights 40:1 (structure:noise), Adam
at 2e-4, mini-batches of 64^3 cubes. Here: one logit and binary cross-entropy, counted over
the *nonzero* input voxels only (the paper evaluates only those; zero voxels are noise by
definition and are never masked differently), random crops with random proper rotations
(90-degree turns; no mirroring, which would flip the hand of the structure), Adam. The
structure weight is ``class_weight``: a number (``40`` reproduces the paper) or ``"auto"``
(the noise:structure ratio of the valid voxels of each batch, so both classes weigh the same).

After training the two thresholds are chosen on the validation set by G-mean (paper's
procedure): *background* over all valid voxels, *structural* over the voxels not already
classed as background noise. Training state is checkpointed (model, optimiser, step, random
generators) so an interrupted run resumes where it stopped; ``init_weights`` starts from
trained weights (fine-tuning on new data).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxfield.denoise.confusion import best_gmean_threshold, confusion, structural_threshold
from voxfield.denoise.dataset import load_dataset
from voxfield.denoise.unet import UNet3D, UNetConfig, n_parameters, save_weights
from voxfield.errors import OptionError


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults: the shipped model's CPU run)."""

    steps: int = 2000
    batch: int = 4
    crop: int = 48
    lr: float = 1e-3
    class_weight: str = "auto"
    seed: int = 0
    eval_every: int = 100
    channels: tuple[int, ...] = (16, 32, 64, 128)
    resolution_input: bool = False
    resolution_dropout: float = 0.2

    def weight(self) -> float | None:
        """The fixed structure weight, or None for ``auto``."""
        if str(self.class_weight).lower() == "auto":
            return None
        try:
            w = float(self.class_weight)
        except ValueError:
            raise OptionError(f"--class-weight must be 'auto' or a number, got {self.class_weight!r}") from None
        if not math.isfinite(w) or w <= 0:
            raise OptionError(f"--class-weight must be > 0, got {self.class_weight!r}")
        return w


def _random_rotation(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 24 proper rotations of a cube (axes (-3, -2, -1))."""
    perm = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (1, 0, 2), (0, 2, 1), (2, 1, 0)][rng.integers(6)]
    odd = perm in [(1, 0, 2), (0, 2, 1), (2, 1, 0)]
    flips = [rng.random() < 0.5 for _ in range(3)]
    if odd ^ (sum(flips) % 2 == 1):  # keep the determinant +1
        flips[2] = not flips[2]
    lead = a.ndim - 3
    out = np.transpose(a, tuple(range(lead)) + tuple(lead + p for p in perm))
    for ax, f in enumerate(flips):
        if f:
            out = np.flip(out, axis=lead + ax)
    return out


#: Resolution bands (upper bounds, Å) with their own validation thresholds.
RESOLUTION_BANDS = (5.0, 10.0, 20.0)


def sample_resolutions(meta: dict[str, Any], n: int) -> np.ndarray:
    """Per-sample resolution (Å) of a dataset from its ``dataset.json`` (NaN when absent)."""
    recs = meta.get("samples", [])
    out = np.full(n, np.nan)
    for i, r in enumerate(recs[:n]):
        if isinstance(r, dict) and r.get("resolution") is not None:
            out[i] = float(r["resolution"])
    return out


def _batch(x: np.ndarray, lab: np.ndarray, cfg: TrainConfig, rng: np.random.Generator,
           res: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, box = x.shape[0], x.shape[-1]
    c = min(cfg.crop, box)
    xb = np.empty((cfg.batch, 1, c, c, c), np.float32)
    lb = np.empty((cfg.batch, 1, c, c, c), np.float32)
    rb = np.full(cfg.batch, np.nan, np.float32)
    for b in range(cfg.batch):
        i = rng.integers(n)
        if cfg.resolution_input and res is not None and rng.random() >= cfg.resolution_dropout:
            rb[b] = res[i]
        o = rng.integers(0, box - c + 1, size=3)
        sl = (i, slice(o[0], o[0] + c), slice(o[1], o[1] + c), slice(o[2], o[2] + c))
        both = np.stack([x[sl].astype(np.float32), lab[sl].astype(np.float32)])
        both = _random_rotation(both, rng)
        xb[b, 0], lb[b, 0] = both[0], both[1]
    return torch.from_numpy(xb), torch.from_numpy(lb), torch.from_numpy(rb)


def _loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w_struct: float | None) -> torch.Tensor:
    valid = (x > 0).float()
    n_s = float((valid * y).sum())
    n_n = float((valid * (1 - y)).sum())
    if w_struct is None:
        w_struct = n_n / n_s if n_s > 0 else 1.0
        w_struct = min(max(w_struct, 1.0), 100.0)
    w = valid * (1 + (w_struct - 1) * y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="sum")
    return bce / w.sum().clamp_min(1.0)


@torch.inference_mode()
def predict_cubes(model: UNet3D, x: np.ndarray, device: torch.device, batch: int = 4,
                  res: np.ndarray | None = None) -> np.ndarray:
    """Structure probabilities of whole cubes ``x`` (n, D, D, D), D a multiple of the
    model's ``multiple``; ``res`` (n,) resolutions in Å (NaN: unknown)."""
    model.eval()
    out = np.empty(x.shape, np.float32)
    for i in range(0, x.shape[0], batch):
        t = torch.from_numpy(x[i : i + batch].astype(np.float32))[:, None].to(device)
        r = None if res is None else torch.from_numpy(np.asarray(res[i : i + batch], np.float32))
        out[i : i + batch] = torch.sigmoid(model(t, r))[:, 0].cpu().numpy()
    return out


def _thresholds(prob: np.ndarray, lab: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    t_bg, g_bg = best_gmean_threshold(prob, lab, valid)
    t_st, g_st = structural_threshold(prob, lab, valid, t_bg)
    c = confusion(prob, lab, t_bg, valid)
    return {"background_threshold": t_bg, "background_gmean": g_bg, "structural_threshold": t_st,
            "structural_gmean": g_st, "tpr": c.tpr, "tnr": c.tnr, "precision": c.precision, "accuracy": c.accuracy}


def validate(model: UNet3D, x: np.ndarray, lab: np.ndarray, device: torch.device,
             res: np.ndarray | None = None, bands: bool = False) -> dict[str, Any]:
    """G-mean-optimal thresholds and the confusion counts at them on validation cubes
    (``res``: their resolutions, given to a resolution-aware model). With ``bands``, also
    the thresholds of each band of :data:`RESOLUTION_BANDS` (``by_resolution``) and, for
    a resolution-aware model, those with the resolution withheld (``unknown_resolution``)."""
    aware = model.config.resolution_input and res is not None
    prob = predict_cubes(model, x, device, res=res if aware else None)
    valid = x > 0
    out = _thresholds(prob, lab, valid)
    if bands and res is not None:
        lo = 0.0
        out["by_resolution"] = []
        for hi in RESOLUTION_BANDS:
            sel = (res > lo) & (res <= hi) if hi != RESOLUTION_BANDS[-1] else res > lo
            if sel.any():
                out["by_resolution"].append({"max_resolution": hi, "cubes": int(sel.sum()),
                                             **_thresholds(prob[sel], lab[sel], valid[sel])})
            lo = hi
        if aware:
            out["unknown_resolution"] = _thresholds(predict_cubes(model, x, device), lab, valid)
    return out


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    train_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    val_dir: str | os.PathLike[str] | None = None,
    config: TrainConfig = TrainConfig(),
    device: torch.device | str = "cpu",
    resume: bool = True,
    init_weights: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> Path:
    """Train (or resume training) and write ``out_dir/model.safetensors`` with the
    validation thresholds; returns its path. ``out_dir/checkpoint.pt`` holds the resumable
    state, ``out_dir/log.jsonl`` one line per validation."""
    dev = torch.device(device)
    w_fixed = config.weight()
    if config.steps < 1 or config.batch < 1:
        raise OptionError("--steps and --batch must be >= 1")
    x, lab, meta = load_dataset(train_dir)
    res = sample_resolutions(meta, x.shape[0])
    model = UNet3D(UNetConfig(tuple(config.channels), resolution_input=config.resolution_input))
    if config.crop % model.config.multiple or config.crop < model.config.multiple:
        raise OptionError(f"--crop must be a multiple of {model.config.multiple}, got {config.crop}")
    vx = vl = vres = None
    if val_dir is not None:
        vx, vl, vmeta = load_dataset(val_dir)
        vres = sample_resolutions(vmeta, vx.shape[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    torch.manual_seed(config.seed)
    earlier: dict[str, Any] | None = None
    if init_weights is not None:  # fine-tune: start from trained weights of the same architecture
        from voxfield.denoise.unet import load_weights

        start, start_meta = load_weights(init_weights)
        if config.resolution_input and not start.config.resolution_input:
            from voxfield.denoise.unet import widen_to_resolution_input

            start = widen_to_resolution_input(start)
        if start.config != model.config:
            raise OptionError(f"--init weights have channels {start.config.channels}, not {model.config.channels}")
        model.load_state_dict(start.state_dict())
        earlier = {"weights": Path(init_weights).name, **{k: start_meta.get(k) for k in ("training", "validation")}}
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    step = 0
    elapsed = 0.0
    if resume and ckpt.exists():
        st = torch.load(ckpt, map_location=dev, weights_only=False)
        if st.get("config") != asdict(config) | {"channels": list(config.channels)}:
            raise OptionError(f"{ckpt} was written with other settings; use a new output folder or --no-resume")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step = int(st["step"])
        elapsed = float(st.get("elapsed", 0.0))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)), last_epoch=step - 1
    ) if step else torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    log = out / "log.jsonl"
    running = []
    t0 = time.perf_counter()
    last: dict[str, Any] = {}
    while step < config.steps:
        model.train()
        xb, yb, rb = _batch(x, lab, config, rng, res)
        xb, yb = xb.to(dev), yb.to(dev)
        loss = _loss(model(xb, rb if config.resolution_input else None), xb, yb, w_fixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        running.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            rec: dict[str, Any] = {"step": step, "loss": float(np.mean(running)),
                                   "elapsed_s": round(elapsed + time.perf_counter() - t0, 1)}
            running = []
            if vx is not None:
                rec.update(validate(model, vx, vl, dev, vres))
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            last = rec
            _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                                    "config": asdict(config) | {"channels": list(config.channels)},
                                    "elapsed": elapsed + time.perf_counter() - t0})
        if progress:
            progress(step, config.steps, last)
    sim = meta.get("config") or (meta.get("parts") or [{}])[0].get("config") or {}
    final = {"training": {**asdict(config), "dataset_models": meta.get("models", []),
                          "resolution_range": sim.get("resolution"),
                          "dataset_samples": int(x.shape[0]), "parameters": n_parameters(model),
                          "elapsed_s": round(elapsed + time.perf_counter() - t0, 1)}}
    if earlier is not None:
        final["training"]["init"] = earlier
    if vx is not None:
        v = validate(model, vx, vl, dev, vres, bands=True)
        final["validation"] = v
        base = v.get("unknown_resolution", v)
        final["thresholds"] = {"background": base["background_threshold"], "structural": base["structural_threshold"]}
        if model.config.resolution_input and v.get("by_resolution"):
            final["thresholds_by_resolution"] = [
                {"max_resolution": b["max_resolution"], "background": b["background_threshold"],
                 "structural": b["structural_threshold"]} for b in v["by_resolution"]]
    path = out / "model.safetensors"
    save_weights(model, path, final)
    return path
