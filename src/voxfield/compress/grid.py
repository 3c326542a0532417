"""The ``grid`` method: multi-resolution latent grids and a small synthesis network.

After Cool-Chic (Ladune et al., ICCV 2023), carried to 2-4 coordinate dimensions:

* **latents** — ``L`` grids over the coordinate axes, level ``l`` with ``ceil(n / 2**l)``
  values per axis and ``latent_channels`` features; stored as integers;
* **features** — every grid is upsampled to the voxel grid by separable linear interpolation
  with voxel-centre alignment (voxel ``i`` sits at grid position ``(i + 0.5) / 2**l - 0.5``,
  borders replicated), so the weights are dyadic fractions;
* **synthesis** — a small ReLU MLP maps the ``L * latent_channels`` features of a voxel to
  its values (one per output channel);
* **rate** — latents are coded with ANS under a zero-mean Laplace whose scale depends on a
  context: the magnitude of the co-located latent of the next coarser level (a quiet parent
  — solvent, background — predicts a quiet child and costs almost no bits). The scales are
  learned and stored (a ``levels × contexts`` table).

Training minimises MSE + λ·bits, with λ steered online toward the byte budget, on random
boxes of voxels per step (the whole volume when it is small); uniform noise stands in for
rounding for the first part of the run, straight-through rounding afterwards. The file
lands within tolerance by a final rescaling of the latent quantisation step, after which
the synthesis network is fine-tuned on the frozen integer latents.

Decoding is exact and order-independent: integer latents, dyadic interpolation weights
(every sum is exact in float64), and the synthesis network evaluated with integer weights
and fixed-point activations (:mod:`voxfield.fields.exact`). Any region, slice, strided
preview or point decodes to the values of the full decode, computing only what it needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from voxfield import __version__
from voxfield.codecs.base import Target
from voxfield.compress import container, rate, tables
from voxfield.compress.classic import volume_header
from voxfield.compress.defaults import default_target
from voxfield.compress.entropy import weights as weight_coding
from voxfield.compress.entropy.latents import decode_latents, encode_latents, laplace_bits
from voxfield.compress.field_layout import FieldLayout, decode_whole
from voxfield.compress.schema import GRID_MAX_LEVELS, check_count
from voxfield.errors import FormatError, OptionError, TargetNotMet
from voxfield.fields.exact import CHUNK, ExactSiren
from voxfield.io.validate import check_array
from voxfield.io.volume import Volume

METHOD = "grid"
_MAX_LEVELS = GRID_MAX_LEVELS


@dataclass(frozen=True)
class GridConfig:
    """Knobs of the ``grid`` method (defaults need no tuning)."""

    method: str = METHOD
    levels: int | None = None  # None: until the coarsest grid is <= 8 along its longest axis
    latent_channels: int = 1
    hidden: int = 16
    hidden_layers: int = 2
    contexts: int = 4
    lr: float = 3e-2
    steps: int | None = None
    time_budget: float | None = None
    crop: int = 1 << 20  # voxels per step: the whole volume up to about 100^3, random boxes beyond
    noise_fraction: float = 0.7
    finetune_fraction: float = 0.1
    mlp_bits: float = 10.0
    lambda_init: float = 1e-3
    warm_start: bool = True  # latents start as a Laplacian pyramid of the data, synthesis as their sum
    channels: str = "output"
    time: str = "coord"
    seed: int = 0
    device: str = "auto"

    @classmethod
    def preset(cls, method: str = METHOD, **overrides: Any) -> GridConfig:
        base = cls()
        bad = set(overrides) - set(asdict(base))
        if bad:
            raise OptionError(f"unknown option(s) for {method}: {', '.join(sorted(bad))}")
        return replace(base, **overrides)

    def validate(self) -> None:
        if self.levels is not None and not 1 <= self.levels <= _MAX_LEVELS:
            raise OptionError(f"levels must be 1..{_MAX_LEVELS}")
        if self.latent_channels < 1 or self.hidden < 1 or self.hidden_layers < 0 or self.contexts < 1:
            raise OptionError("latent_channels, hidden and contexts must be >= 1, hidden_layers >= 0")
        if self.mlp_bits < weight_coding.MIN_BITS or self.mlp_bits > 16:
            raise OptionError("mlp_bits must be in [8, 16]")
        if self.steps is not None and self.steps < 1:
            raise OptionError("steps must be >= 1")
        if self.time_budget is not None and self.time_budget <= 0:
            raise OptionError("time budget must be > 0 seconds")
        if self.channels not in ("output", "coord") or self.time not in ("coord", "output"):
            raise OptionError("channels must be output|coord and time coord|output")


def default_levels(coord_shape: Sequence[int]) -> int:
    """Levels until the coarsest grid has at most 8 values along its longest axis."""
    return int(min(_MAX_LEVELS, max(1, math.ceil(math.log2(max(max(coord_shape) / 8, 1))) + 1)))


def level_shape(coord_shape: Sequence[int], level: int) -> tuple[int, ...]:
    return tuple(max(1, -(-int(n) // 2**level)) for n in coord_shape)


def axis_interp(index: np.ndarray, level: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid indices and weight of the linear interpolation of level ``level`` (grid length
    ``size``) at voxel positions ``index`` (integers or fractions): value = (1-w)·g[i0] + w·g[i1]."""
    pos = np.asarray(index, dtype=np.float64)
    if level == 0:
        i0 = np.clip(np.floor(pos), 0, size - 1).astype(np.int64)
        w = np.clip(pos - i0, 0.0, 1.0)
        i1 = np.minimum(i0 + 1, size - 1)
        return i0, i1, np.where(i1 == i0, 0.0, w)
    u = (pos + 0.5) / 2.0**level - 0.5
    lo = np.floor(u)
    w = u - lo
    i0 = np.clip(lo, 0, size - 1).astype(np.int64)
    i1 = np.clip(lo + 1, 0, size - 1).astype(np.int64)
    return i0, i1, w


# ---------------------------------------------------------------------------- model
class GridModel(nn.Module):
    """Latents, entropy-model scales and synthesis network (training form)."""

    def __init__(self, coord_shape: Sequence[int], n_out: int, cfg: GridConfig, levels: int) -> None:
        super().__init__()
        self.coord_shape = tuple(int(n) for n in coord_shape)
        self.levels = levels
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        self.latents = nn.ParameterList(
            [nn.Parameter(torch.zeros((cfg.latent_channels,) + level_shape(self.coord_shape, lv))) for lv in range(levels)])
        self.log_scale = nn.Parameter(torch.zeros(levels, cfg.contexts))
        dims = [levels * cfg.latent_channels] + [cfg.hidden] * cfg.hidden_layers + [n_out]
        self.layers = nn.ModuleList()
        for i in range(len(dims) - 1):
            lin = nn.Linear(dims[i], dims[i + 1])
            bound = 1.0 / math.sqrt(dims[i])
            with torch.no_grad():
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=gen) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=gen) * 2 - 1) * bound)
            self.layers.append(lin)

    @torch.no_grad()
    def warm_start(self, grids: list[np.ndarray], step: float) -> None:
        """Latents := pyramid levels; synthesis := ``step * sum(features)`` through a ReLU
        pair (relu(s) - relu(-s) = s) in the first two hidden units, small elsewhere."""
        for lat, g in zip(self.latents, grids, strict=True):
            lat.copy_(torch.as_tensor(np.repeat(g, lat.shape[0], axis=0) / lat.shape[0], dtype=lat.dtype))
        if len(self.layers) < 2 or self.layers[0].out_features < 2:
            return
        for i, lin in enumerate(self.layers):
            lin.weight.mul_(0.01)
            lin.bias.zero_()
            if i == 0:
                lin.weight[0, :] = step
                lin.weight[1, :] = -step
            elif i < len(self.layers) - 1:
                lin.weight[0, 0] = 1.0
                lin.weight[1, 1] = 1.0
            else:
                lin.weight[:, 0] = 1.0
                lin.weight[:, 1] = -1.0

    def synth(self, feats: torch.Tensor) -> torch.Tensor:
        h = feats
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def features(self, lat: list[torch.Tensor], index: list[np.ndarray],
                 starts: list[tuple[int, ...]] | None = None) -> torch.Tensor:
        """Upsampled features at the grid of voxel indices ``index`` -> ``(N, L*F)``.

        ``lat[l]`` may be a sub-box of level ``l`` starting at ``starts[l]`` (it must hold
        every grid value the interpolation needs)."""
        cols = []
        for lv, g in enumerate(lat):
            t = g
            full = level_shape(self.coord_shape, lv)
            for a, ix in enumerate(index):
                i0, i1, w = axis_interp(ix, lv, full[a])
                off = 0 if starts is None else starts[lv][a]
                shape = [1] * t.ndim
                shape[a + 1] = len(ix)
                wt = torch.as_tensor(w, dtype=t.dtype, device=t.device).view(shape)
                t = t.index_select(a + 1, torch.as_tensor(i0 - off, device=t.device)) * (1 - wt) + \
                    t.index_select(a + 1, torch.as_tensor(i1 - off, device=t.device)) * wt
            cols.append(t.reshape(t.shape[0], -1))
        return torch.cat(cols, 0).T

    def support(self, box: list[np.ndarray]) -> list[tuple[slice, ...]]:
        """Per level, the sub-box of latents that the voxels of ``box`` interpolate from."""
        out = []
        for lv in range(self.levels):
            full = level_shape(self.coord_shape, lv)
            sl = []
            for a, ix in enumerate(box):
                i0, i1, _ = axis_interp(np.array([ix[0], ix[-1]]), lv, full[a])
                sl.append(slice(int(i0.min()), int(i1.max()) + 1))
            out.append(tuple(sl))
        return out

    def sub_contexts(self, level: int, sub: tuple[slice, ...]) -> torch.Tensor:
        """Context index of the latents of ``level`` inside ``sub`` (from the rounded
        parent level, whole grid, no gradient)."""
        shape = (self.cfg.latent_channels,) + tuple(s.stop - s.start for s in sub)
        dev = self.latents[level].device
        if level == self.levels - 1 or self.cfg.contexts == 1:
            return torch.zeros(shape, dtype=torch.long, device=dev)
        mag = torch.round(self.latents[level + 1].detach()).abs().sum(0)
        for a, s in enumerate(sub):
            idx = np.minimum(np.arange(s.start, s.stop) // 2, mag.shape[a] - 1)
            mag = mag.index_select(a, torch.as_tensor(idx, device=dev))
        return mag.clamp(max=self.cfg.contexts - 1).long().unsqueeze(0).expand(*shape)


def pyramid(field: np.ndarray, levels: int, step: float) -> list[np.ndarray]:
    """Laplacian pyramid of ``field`` (``(*coords, C)``, channels averaged) built with the
    method's own upsampling, in units of ``step``: coarsest level = block means, each finer
    level = what the coarser ones leave, so that the sum of the upsampled levels is the
    field."""
    x = field.mean(axis=-1)
    shape = x.shape
    grids: list[np.ndarray] = [np.zeros(0)] * levels
    residual = x.astype(np.float64)
    for lv in reversed(range(levels)):
        target = level_shape(shape, lv)
        g = residual
        for a, n in enumerate(target):  # block means down to the level's grid
            f = 2**lv
            pad = n * f - g.shape[a]
            if pad > 0:
                g = np.concatenate([g, np.repeat(np.take(g, [-1], axis=a), pad, axis=a)], axis=a)
            g = g.reshape(g.shape[:a] + (n, f) + g.shape[a + 1:]).mean(axis=a + 1)
        up = g
        for a, n in enumerate(shape):
            i0, i1, w = axis_interp(np.arange(n), lv, target[a])
            ws = [1] * up.ndim
            ws[a] = n
            up = np.take(up, i0, axis=a) * (1 - w.reshape(ws)) + np.take(up, i1, axis=a) * w.reshape(ws)
        residual = residual - up
        grids[lv] = g[None] / step
    return grids


class LazyAdam:
    """Adam that updates only the slices of the latent grids that a step touched (like
    ``torch.optim.SparseAdam``): the cost of a step follows the crop, not the volume."""

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0
        self.b1, self.b2 = betas
        self.eps = eps

    @torch.no_grad()
    def step(self, grads: list[tuple[torch.Tensor | None, tuple[slice, ...]]], lr: float) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, m, v, (g, sl) in zip(self.params, self.m, self.v, grads, strict=True):
            if g is None:
                continue
            m[sl] = self.b1 * m[sl] + (1 - self.b1) * g
            v[sl] = self.b2 * v[sl] + (1 - self.b2) * g * g
            p[sl] -= lr * (m[sl] / c1) / ((v[sl] / c2).sqrt() + self.eps)


def _mlp_tensors(model: GridModel) -> list[np.ndarray]:
    out = []
    for lin in model.layers:
        out += [lin.weight.detach().cpu().numpy().T.copy(), lin.bias.detach().cpu().numpy()]
    return out


# ---------------------------------------------------------------------------- decoding
@dataclass
class GridField:
    """Decoded latents + exact synthesis: evaluates normalised field values."""

    latents: list[np.ndarray]  # integer grids (F, *grid) per level
    step: float
    net: ExactSiren
    n_out: int
    coord_shape: tuple[int, ...]
    blocks: Any = field(default=None)  # for API symmetry with NeuralField (no blocks)

    def _features_grid(self, index: Sequence[np.ndarray]) -> np.ndarray:
        cols = []
        for lv, g in enumerate(self.latents):
            t = g.astype(np.float64)
            for a, ix in enumerate(index):
                i0, i1, w = axis_interp(ix, lv, t.shape[a + 1])
                shape = [1] * t.ndim
                shape[a + 1] = len(ix)
                wt = w.reshape(shape)
                t = np.take(t, i0, axis=a + 1) * (1 - wt) + np.take(t, i1, axis=a + 1) * wt
            cols.append(t.reshape(t.shape[0], -1))
        return np.concatenate(cols, 0).T * self.step

    def evaluate_grid(self, index: Sequence[np.ndarray]) -> np.ndarray:
        """Field at the grid ``index[0] × index[1] × ...`` -> ``(*len(index[a]), n_out)``."""
        index = [np.asarray(ix, dtype=np.int64) for ix in index]
        shape = tuple(len(ix) for ix in index)
        # features row by row of the first axis keep memory bounded on large requests
        rows = max(1, CHUNK * 16 // max(1, int(np.prod(shape[1:]))))
        out = np.empty(shape + (self.n_out,), np.float32)
        for lo in range(0, shape[0], rows):
            sub = [index[0][lo : lo + rows], *index[1:]]
            feats = self._features_grid(sub)
            out[lo : lo + rows] = self.net.forward_block(0, feats).reshape(tuple(len(s) for s in sub) + (self.n_out,))
        return out

    def evaluate_region(self, region: Sequence[slice]) -> np.ndarray:
        return self.evaluate_grid([np.arange(s.start, s.stop) for s in region])

    def evaluate_points(self, points: np.ndarray) -> np.ndarray:
        """Field at positions ``(P, n_axes)`` in voxel units (fractional allowed)."""
        pts = np.asarray(points, dtype=np.float64)
        n_axes = pts.shape[1]
        cols = []
        for lv, g in enumerate(self.latents):
            parts = [axis_interp(pts[:, a], lv, g.shape[a + 1]) for a in range(n_axes)]
            acc = np.zeros((g.shape[0], len(pts)))
            for corner in range(2**n_axes):
                idx, wgt = [], np.ones(len(pts))
                for a in range(n_axes):
                    i0, i1, w = parts[a]
                    if corner >> a & 1:
                        idx.append(i1)
                        wgt = wgt * w
                    else:
                        idx.append(i0)
                        wgt = wgt * (1 - w)
                acc += g[(slice(None), *idx)].astype(np.float64) * wgt
            cols.append(acc)
        feats = np.concatenate(cols, 0).T * self.step
        return self.net.forward_block(0, feats)


# ---------------------------------------------------------------------------- compress
@dataclass
class GridReport:
    """What happened during a grid compression."""

    method: str = METHOD
    levels: int = 0
    latents: int = 0
    n_params: int = 0
    steps: int = 0
    step: float = 1.0
    lam: float = 0.0
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    file_bytes: int = 0
    latent_bytes: int = 0
    n_blocks: int = 1
    n_groups: int = 1
    bits: float = 0.0
    lrs: list[float] = field(default_factory=list)
    attempts: int = 1


def _fixed_point(model: GridModel, ints: list[np.ndarray], qstep: float, coord_shape: Sequence[int], levels: int,
                 cfg: GridConfig, gen: torch.Generator, device: torch.device) -> tuple[int, float]:
    """Fixed-point bits and clip level of the exact synthesis, from the largest feature and
    activation over (up to a million voxels of) the volume, with a 4x margin."""
    lat = [torch.as_tensor(i * qstep, dtype=torch.float32, device=device) for i in ints]
    feats_max = max(float(np.abs(i).max()) * qstep for i in ints)
    with torch.no_grad():
        h = model.features(lat, _crop_box(coord_shape, 1 << 20, gen))
        act_max = float(h.abs().max())
        for lin in model.layers[:-1]:
            h = torch.relu(lin(h))
            act_max = max(act_max, float(h.abs().max()))
    clip = float(2.0 ** math.ceil(math.log2(max(4.0 * max(act_max, feats_max), 1.0))))
    fan = max(levels * cfg.latent_channels, cfg.hidden)
    frac_bits = int(max(8, min(24, 52 - 15 - math.ceil(math.log2(max(fan, 2))) - math.ceil(math.log2(clip)))))
    return frac_bits, clip


def _warm_step(field_np: np.ndarray, levels: int, target_bits: float) -> float:
    """Quantisation step of the warm-start pyramid whose empirical entropy (per level, no
    context) is about the latent budget."""
    flat = []
    for g in pyramid(field_np, levels, 1.0):  # entropy from at most ~1M values per level (strided)
        v = g.ravel()
        k = max(1, v.size // (1 << 20))
        flat.append((v[::k], v.size / v[::k].size))

    def bits_at(q: float) -> float:
        total = 0.0
        for g, weight in flat:
            _, counts = np.unique(np.rint(g / q), return_counts=True)
            total -= weight * float((counts * np.log2(counts / counts.sum())).sum())
        return total

    lo, hi = 1e-6, 10.0
    for _ in range(30):
        q = math.sqrt(lo * hi)
        if bits_at(q) > target_bits:
            lo = q
        else:
            hi = q
    return float(math.sqrt(lo * hi))


def _resolve_device(name: str) -> torch.device:
    from voxfield.compress.neural import resolve_device

    return resolve_device(name)


def _crop_box(shape: Sequence[int], budget: int, gen: torch.Generator) -> list[np.ndarray]:
    n = int(np.prod(shape))
    if n <= budget:
        return [np.arange(s) for s in shape]
    f = (budget / n) ** (1.0 / len(shape))
    sizes = [max(1, min(s, int(round(s * f)))) for s in shape]
    out = []
    for s, k in zip(shape, sizes, strict=True):
        start = int(torch.randint(0, s - k + 1, (1,), generator=gen))
        out.append(np.arange(start, start + k))
    return out


def _header(vol: Volume, layout: FieldLayout, cfg: GridConfig, levels: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"voxfield": __version__, "volume": volume_header(vol),
            "method": {"name": METHOD, "config": {k: v for k, v in asdict(cfg).items() if k != "device"},
                       "layout": layout.to_dict(), "levels": levels, **extra}}


def _blob(vol: Volume, layout: FieldLayout, cfg: GridConfig, levels: int, step: float, scales: np.ndarray,
          bounds: list[int], mlp_payload: bytes, mlp_codes: np.ndarray, lat_payload: bytes, frac_bits: int,
          clip: float, extra: dict[str, Any]) -> bytes:
    head = _header(vol, layout, cfg, levels, {"step": step, "frac_bits": frac_bits, "clip": clip, **extra})
    tab = tables.pack({"scales": scales.astype(np.float32), "bounds": np.asarray(bounds, np.int32),
                       "codes": mlp_codes.astype(np.float32)})
    return container.dumps(head, {"tables": tab, "mlp": mlp_payload, "latents": lat_payload})


def compress_grid(vol: Volume, cfg: GridConfig, target: Target | None = None, *,
                  progress: Callable[[str, float], None] | None = None, report: GridReport | None = None) -> bytes:
    """Compress ``vol`` with the ``grid`` method; returns ``.vxf`` bytes within
    ``target.rtol`` of the ratio/size target (default ratio 64, ±2 %)."""
    from voxfield.compress.neural import default_time_budget

    cfg.validate()
    t_start = time.perf_counter()
    check_array(vol.data, vol.meta.get("source"))
    target = target or default_target()
    if target.kind not in ("ratio", "bytes"):
        raise OptionError(f"the grid method aims for a ratio or a size, not {target.kind}")
    layout = FieldLayout.plan(vol.axes, vol.data, channels=cfg.channels, time=cfg.time)  # type: ignore[arg-type]
    rep = report or GridReport()
    if layout.constant:
        head = {"voxfield": __version__, "volume": volume_header(vol),
                "method": {"name": METHOD, "config": {"method": METHOD}, "layout": layout.to_dict(), "constant": True}}
        blob = container.dumps(head, {})
        rep.file_bytes, rep.total_seconds = len(blob), time.perf_counter() - t_start
        return blob
    device = _resolve_device(cfg.device)
    field_np = layout.to_field(vol.data)
    coord_shape, n_out = field_np.shape[:-1], field_np.shape[-1]
    levels = cfg.levels or default_levels(coord_shape)
    size_goal = rate.SizeGoal.of(target, vol.data.nbytes, METHOD)
    goal, tol = size_goal.goal, size_goal.tol
    model = GridModel(coord_shape, n_out, cfg, levels).to(device)
    n_mlp = sum(p.numel() for p in model.layers.parameters())
    # container + tables + network: measured on a provisional file
    probe_codes = np.random.default_rng(0).random((2 * len(model.layers), 5)).astype(np.float32)
    fixed = len(_blob(vol, layout, cfg, levels, 1.0, np.ones((levels, cfg.contexts)), [1] * levels,
                      b"\0" * int(n_mlp * cfg.mlp_bits / 8), probe_codes, b"", 16, 1024.0,
                      {"steps": 123456, "lambda": 0.001234, "lr": cfg.lr})) + 16
    latent_budget = goal - fixed
    if latent_budget < 16:
        raise TargetNotMet(f"ratio {vol.data.nbytes / goal:.4g} is out of reach for grid: the file may hold "
                           f"{goal:.0f} bytes, the container and synthesis network take about {fixed}; the highest "
                           f"reachable ratio here is about {vol.data.nbytes / (fixed + 64):.4g}")
    target_bits = latent_budget * 8.0
    x = torch.from_numpy(field_np).to(device)
    n_vox = int(np.prod(coord_shape))
    budget = cfg.time_budget if cfg.time_budget is not None else default_time_budget(vol.data.size)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 2)  # training noise: seeded, no global state
    if cfg.warm_start:
        # the pyramid in units of a step that puts its rate near the budget
        w_step = _warm_step(field_np, levels, target_bits)
        model.warm_start(pyramid(field_np, levels, w_step), w_step)
    # boxes smaller than the volume: only the latents a step sees move (Adam moments stay per latent)
    use_lazy = n_vox > cfg.crop
    dense = list(model.layers.parameters()) + [model.log_scale] + ([] if use_lazy else list(model.latents))
    opt = torch.optim.Adam(dense, lr=cfg.lr)
    lazy = LazyAdam([p.data for p in model.latents]) if use_lazy else None
    lam = cfg.lambda_init
    total = cfg.steps or 10**9
    t0 = time.perf_counter()
    step = 0
    recheck = 20
    train_budget = budget / (1.0 + cfg.finetune_fraction) - (t0 - t_start)  # the warm start counts too
    while step < total:
        if cfg.steps is None and step == recheck:  # pace re-measured every 5 % of the run
            pace = (time.perf_counter() - t0) / step
            total = max(40, step + 1, int(step + (train_budget - (time.perf_counter() - t0)) / pace))
            recheck = step + max(20, total // 20)
        frac = step / max(total, 1) if cfg.steps is not None or step >= 20 else 0.0
        lr = cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for pg in opt.param_groups:
            pg["lr"] = lr
        box = _crop_box(coord_shape, cfg.crop, gen)
        subs = model.support(box)
        if lazy is not None:
            leaves = [model.latents[lv].data[(slice(None), *sub)].clone().requires_grad_(True)
                      for lv, sub in enumerate(subs)]
        else:
            leaves = [model.latents[lv][(slice(None), *sub)] for lv, sub in enumerate(subs)]
        if frac < cfg.noise_fraction:
            lat = [y + (torch.rand(y.shape, generator=noise_gen, dtype=y.dtype) - 0.5).to(y.device) for y in leaves]
        else:
            lat = [y + (torch.round(y) - y).detach() for y in leaves]
        pred = model.synth(model.features(lat, box, [tuple(s.start for s in sub) for sub in subs]))
        ref = x[tuple(slice(int(b[0]), int(b[-1]) + 1) for b in box)].reshape(-1, n_out)
        mse = torch.mean((pred - ref) ** 2)
        bits = lat[0].new_zeros(())
        for lv, (y, sub) in enumerate(zip(lat, subs, strict=True)):
            bits = bits + laplace_bits(y, torch.exp(model.log_scale[lv])[model.sub_contexts(lv, sub)]).sum()
        n_crop = int(np.prod([len(b) for b in box]))
        loss = mse + lam * bits / n_crop
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if lazy is not None:
            lazy.step([(y.grad, (slice(None), *sub)) for y, sub in zip(leaves, subs, strict=True)], lr)
        if step % 10 == 0:  # steer lambda toward the latent budget (bits scaled to the volume)
            est = float(bits.detach()) * n_vox / n_crop
            lam *= math.exp(0.4 * math.tanh(est / target_bits - 1.0))
            lam = min(max(lam, 1e-7), 10.0)
        step += 1
        if progress is not None:
            progress("fit", step / total)
    rep.train_seconds = time.perf_counter() - t0
    rep.steps, rep.lam = step, lam

    # --- quantise, land the size (latent step), fine-tune the synthesis, code
    scales = np.exp(model.log_scale.detach().cpu().numpy().astype(np.float64)).astype(np.float32).astype(np.float64)
    raw = [y.detach().cpu().numpy().astype(np.float64) for y in model.latents]

    def land(budget_bytes: float) -> float:
        """Latent quantisation step whose coded latents fill ``budget_bytes``."""
        lo_s, hi_s, q = 1.0 / 64, 16.0, 1.0
        best: tuple[float, float] | None = None
        for _ in range(40):
            sc_q = (scales / q).astype(np.float32).astype(np.float64)
            payload, _ = encode_latents([np.rint(r / q).astype(np.int64) for r in raw], sc_q, cfg.contexts)
            miss = len(payload) - budget_bytes
            if best is None or abs(miss) < abs(best[1]):
                best = (q, miss)
            if abs(miss) <= 0.3 * tol:
                break
            if miss > 0:
                lo_s = q
            else:
                hi_s = q
            q = math.sqrt(lo_s * hi_s)
        assert best is not None
        return float(np.float32(best[0]))

    def finetune(q: float, n_steps: int) -> list[np.ndarray]:
        """Fine-tune the synthesis on the frozen integer latents at step ``q``."""
        ints_q = [np.rint(r / q).astype(np.int64) for r in raw]
        fixed_lat = [torch.as_tensor(i * q, dtype=torch.float32, device=device) for i in ints_q]
        ft_opt = torch.optim.Adam(model.layers.parameters(), lr=cfg.lr * 0.1)
        for k in range(n_steps):
            for pg in ft_opt.param_groups:
                pg["lr"] = cfg.lr * 0.1 * 0.5 * (1 + math.cos(math.pi * k / n_steps))
            box = _crop_box(coord_shape, cfg.crop, gen)
            with torch.no_grad():
                feats = model.features(fixed_lat, box)
            ref = x[tuple(slice(int(b[0]), int(b[-1]) + 1) for b in box)].reshape(-1, n_out)
            loss = torch.mean((model.synth(feats) - ref) ** 2)
            ft_opt.zero_grad(set_to_none=True)
            loss.backward()
            ft_opt.step()
            if progress is not None:
                progress("fine-tune synthesis", (k + 1) / n_steps)
        return ints_q

    ft_steps = max(1, int(step * cfg.finetune_fraction))
    qstep = land(latent_budget)
    ints = finetune(qstep, ft_steps)
    extra = {"steps": int(step), "lambda": float(lam), "lr": cfg.lr}

    def build(q: float, ints_q: list[np.ndarray], mlp_bits: float) -> tuple[bytes, bytes]:
        sc = (scales / q).astype(np.float32).astype(np.float64)
        lat_payload, bounds = encode_latents(ints_q, sc, cfg.contexts)
        mlp_payload, mlp_code_list = weight_coding.encode(_mlp_tensors(model), mlp_bits)
        mlp_codes = np.array([c.to_row() for c in mlp_code_list], dtype=np.float32)
        # fixed-point range of the exact synthesis: the largest activation seen, with margin
        frac_bits, clip = _fixed_point(model, ints_q, q, coord_shape, levels, cfg, gen, device)
        return _blob(vol, layout, cfg, levels, q, sc, bounds, mlp_payload, mlp_codes, lat_payload, frac_bits,
                     clip, extra), lat_payload

    # the real container, tables and network replace the provisional estimate
    written: dict[str, Any] = {}

    def make(state: tuple[float, list[np.ndarray]]) -> tuple[bytes, int]:
        written["blob"], written["latents"] = build(state[0], state[1], cfg.mlp_bits)
        written["step"] = state[0]
        return written["blob"], len(written["latents"])

    def reland(room: float) -> tuple[float, list[np.ndarray]] | None:
        new_q = land(room)
        return None if new_q == written["step"] else (new_q, finetune(new_q, max(1, ft_steps // 3)))

    blob, (qstep, ints) = rate.land_file(make, reland, (qstep, ints), size_goal, tries=3)
    lat_payload = written["latents"]
    mlp_bits = cfg.mlp_bits
    if len(blob) < goal - tol:
        # the latent size moves in jumps (many latents cross a rounding edge together):
        # spend what is left on finer network weights
        for b in np.arange(cfg.mlp_bits + 0.5, 16.01, 0.5):
            cand, cand_lat = build(qstep, ints, float(b))
            if len(cand) > goal + tol:
                break
            blob, lat_payload, mlp_bits = cand, cand_lat, float(b)
            if len(blob) >= goal - tol:
                break
    rep.levels, rep.latents = levels, int(sum(i.size for i in ints))
    rep.n_params, rep.step, rep.file_bytes = n_mlp, qstep, len(blob)
    rep.latent_bytes, rep.bits = len(lat_payload), mlp_bits
    rep.total_seconds = time.perf_counter() - t_start
    if not size_goal.hit(len(blob)):
        raise size_goal.missed(blob)
    return blob


# ---------------------------------------------------------------------------- reading
def load_field(reader: container.VxfReader) -> tuple[GridField | None, FieldLayout]:
    """The :class:`GridField` (None for a constant volume) and layout of a grid file."""
    m = reader.header.get("method", {})
    try:
        layout = FieldLayout.from_dict(m["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"corrupt grid header ({exc})", reader.path) from None
    if m.get("constant"):
        return None, layout
    try:
        cfg = GridConfig(**{k: v for k, v in m["config"].items() if k in GridConfig.__dataclass_fields__})
        levels = int(m["levels"])
        tab = tables.unpack(reader.section("tables"))
        shapes = [(cfg.latent_channels,) + level_shape(layout.coord_shape, lv) for lv in range(levels)]
        check_count(sum(math.prod(s) for s in shapes), reader.alloc_limit, "the latent grids", reader.path)
        bounds = [int(b) for b in tab["bounds"]]
        scales = tab["scales"].astype(np.float64)
        if len(bounds) != levels or scales.shape != (levels, cfg.contexts):
            raise ValueError("latent tables do not match the levels")
        lat = decode_latents(reader.section("latents"), shapes, bounds, scales, cfg.contexts)
        dims = [levels * cfg.latent_channels] + [cfg.hidden] * cfg.hidden_layers + [layout.n_out]
        counts = [n for i in range(len(dims) - 1) for n in (dims[i] * dims[i + 1], dims[i + 1])]
        rows = tab["codes"]
        if len(rows) != len(counts):
            raise ValueError("network tables do not match the architecture")
        codes = [replace(weight_coding.TensorCode.from_row(r), count=n) for r, n in zip(rows, counts, strict=True)]
        syms = weight_coding.decode_symbols(reader.section("mlp"), codes, limit=reader.alloc_limit)
        wsym, wsteps, biases = [], [], []
        for i in range(len(dims) - 1):
            wsym.append(syms[2 * i].reshape(1, dims[i], dims[i + 1]))
            wsteps.append(codes[2 * i].step)
            biases.append((syms[2 * i + 1].astype(np.float64) * codes[2 * i + 1].step).reshape(1, 1, dims[i + 1]))
        net = ExactSiren(wsym, wsteps, biases, None, "relu", frac_bits=int(m["frac_bits"]), clip=float(m["clip"]))
        fld = GridField(lat, float(m["step"]), net, layout.n_out, layout.coord_shape)
    except FormatError as exc:
        raise FormatError(exc.message, reader.path) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FormatError(f"corrupt grid model ({exc})", reader.path) from None
    return fld, layout


def decode_grid(reader: container.VxfReader) -> Volume:
    """Decode a whole grid ``.vxf`` to a Volume (original dtype and header)."""
    return decode_whole(reader, load_field)
