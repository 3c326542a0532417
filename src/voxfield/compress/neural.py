"""The neural methods ``siren`` (INIF's backbone) and ``sci`` (SCI), end to end.

``compress_neural(vol, config, target)`` returns the bytes of a ``.vxf`` file:

1. **analyse** — coordinate/output split and [-1, 1] normalisation
   (:class:`~voxfield.compress.field_layout.FieldLayout`); a constant volume needs no
   network and becomes a tiny file that decodes exactly.
2. **budget** — bytes for the weights = target file size − container header − tables;
   parameters = weight bytes × 8 / (expected bits per parameter after quantisation and
   entropy coding).
3. **partition** — ``siren``: one block; ``sci``: SCI's ILP octree partition (or
   equidistant / none for ablations) with at most as many blocks as the budget can feed.
4. **allocate** — parameters ∝ size/D (or size, D, equal), widths per block snapped to at
   most ``max_groups`` architectures (funnel ratio ``fr``), each group one batched model.
5. **fit** — learning-rate-free by default (range test), cosine schedule, random voxels
   per step, for ``steps`` steps (or as many as fit in ``time_budget`` seconds); with
   ``guide`` (application guidance, :mod:`~voxfield.compress.modes.guidance`) the loss is
   ``MSE + guide_weight x`` a segmentation (soft Dice at a threshold) or MS-SSIM loss.
6. **quantise + entropy-code** — per-tensor uniform quantisation at ≥ 8 bits, ANS coding;
   the bit depth is searched so the file lands within tolerance of the target, then a
   short quantisation-aware fine-tune, then the final search.
7. **container** — header (volume, layout, method configuration, groups, deblocking) +
   ``tables`` (block table, quantisation table) + ``weights`` sections.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from voxfield import __version__
from voxfield.codecs.base import Target
from voxfield.compress import container, rate, tables
from voxfield.compress.allocate import allocate, max_blocks_for_budget, plan_groups
from voxfield.compress.classic import volume_header
from voxfield.compress.deblock import DeblockParams, choose_params, label_map
from voxfield.compress.defaults import default_target
from voxfield.compress.entropy import weights as weight_coding
from voxfield.compress.field_layout import FieldLayout, decode_whole
from voxfield.compress.modes.guidance import (
    DEFAULT_GUIDE_WEIGHT,
    DEFAULT_TAU_FRACTION,
    FieldGuide,
    GuideConfig,
    prepare_field_guide,
)
from voxfield.compress.neural_fit import GroupData, make_group_data, train
from voxfield.compress.neural_model import BlockSet, Group, NeuralField
from voxfield.compress.partition import Block, equidistant_partition, no_partition, sci_partition
from voxfield.errors import FormatError, OptionError, TargetNotMet
from voxfield.fields.exact import ExactSiren
from voxfield.fields.siren import BatchedSiren, siren_param_count
from voxfield.io.validate import check_array
from voxfield.io.volume import Volume

METHODS = ("siren", "sci")


@dataclass(frozen=True)
class NeuralConfig:
    """Every knob of the neural methods; :meth:`preset` gives each method's defaults."""

    method: str = "sci"
    layers: int = 7
    fr: float = 2.2
    omega_first: float = 20.0
    omega_per_cycle: float | None = None  # if set: spectrum-adapted frequencies (see first_omegas)
    bandwidth_energy: float = 0.9  # energy fraction that defines an axis's signal bandwidth
    omega_hidden: float = 30.0
    activation: str = "sin"
    learn_frequency: bool = False
    partition: str = "adaptive"  # adaptive | equidistant | none
    levels: int = 4
    max_blocks: int = 50
    min_block_params: int = 2500  # voxfield: cap blocks so each network keeps this many parameters
    spectrum_m: int = 1
    allocation: str = "size/D"
    max_groups: int = 4
    min_width: int = 6
    overlap: int = 2
    deblock: str = "blend"  # blend | h264 | none
    steps: int | None = None
    time_budget: float | None = None  # seconds; None: default_time_budget(voxels)
    samples: int = 65536
    optimizer: str = "auto"
    lr: float | None = None
    qat_fraction: float = 0.1
    bits_per_param: float = 8.0
    channels: str = "output"
    time: str = "coord"
    seed: int = 0
    device: str = "auto"
    # application guidance (voxfield.compress.modes.guidance): None | "segmentation" | "ssim"
    guide: str | None = None
    guide_weight: float = DEFAULT_GUIDE_WEIGHT  # loss = MSE + guide_weight x guidance loss (0.3, measured)
    guide_threshold: float | None = None  # segmentation threshold in data units; None: Otsu's
    guide_channel: int | None = None  # output channel (flat index over C/S) guidance looks at; None: all
    guide_tau: float = DEFAULT_TAU_FRACTION  # soft threshold width, fraction of the data range

    @classmethod
    def preset(cls, method: str, **overrides: Any) -> NeuralConfig:
        """Defaults of ``method``: ``siren`` = INIF (one 7-layer SIREN, cosine activation,
        first-layer frequency 90 with a learnable adjustment, plain widths); ``sci`` = SCI
        (adaptive partition, funnel fr 2.2, omega 20, allocation size/D, deblocking)."""
        if method == "siren":
            base = cls(method="siren", fr=1.0, omega_first=90.0, activation="cos", learn_frequency=True,
                       partition="none", overlap=0, deblock="none")
        elif method == "sci":
            # SCI's settings (levels 4, a_max 50, fr 2.2, M 1, size/D allocation, 7 layers)
            # with voxfield's changes, each measured in benchmarks/results/neural: blocks
            # capped by a per-network parameter floor, first-layer omega following the block
            # size and the data's bandwidth, blended block overlaps instead of the
            # post-filter. The paper's exact configuration: --set min_block_params=0
            # --set omega_per_cycle=none
            # --set deblock=h264 --set overlap=0
            base = cls(method="sci", omega_per_cycle=4.0)
        else:
            raise OptionError(f"unknown neural method {method!r} (known: {', '.join(METHODS)})")
        bad = set(overrides) - set(asdict(base))
        if bad:
            raise OptionError(f"unknown option(s) for {method}: {', '.join(sorted(bad))}")
        for key in ("partition", "deblock"):  # "--set deblock=none" arrives as None
            if key in overrides and overrides[key] is None:
                overrides[key] = "none"
        return replace(base, **overrides)

    def validate(self) -> None:
        if self.layers < 2:
            raise OptionError("layers must be >= 2")
        if self.fr < 1:
            raise OptionError("fr must be >= 1")
        if self.partition not in ("adaptive", "equidistant", "none"):
            raise OptionError(f"partition must be adaptive, equidistant or none, got {self.partition!r}")
        if self.deblock not in ("blend", "h264", "none"):
            raise OptionError(f"deblock must be blend, h264 or none, got {self.deblock!r}")
        if self.steps is not None and self.steps < 1:
            raise OptionError("steps must be >= 1")
        if self.time_budget is not None and self.time_budget <= 0:
            raise OptionError("time budget must be > 0 seconds")
        if self.guide is None and (self.guide_threshold is not None or self.guide_channel is not None):
            raise OptionError("guide_threshold and guide_channel go with guide=segmentation or guide=ssim")
        self.guide_config()

    def guide_config(self) -> GuideConfig | None:
        """The validated guidance setting (None without ``guide``)."""
        if self.guide is None:
            return None
        return GuideConfig(self.guide, self.guide_weight, self.guide_threshold, self.guide_channel, self.guide_tau)


def default_time_budget(n_voxels: int) -> float:
    """Training seconds when neither steps nor a budget are given: 180 s for volumes of a
    million voxels or more, shrinking with the square root of the size below that (small
    inputs converge sooner), never under 30 s."""
    return float(min(180.0, max(30.0, 180.0 * (n_voxels / 1e6) ** 0.5)))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda asked for, but torch sees no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise OptionError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


# ---------------------------------------------------------------------------- planning
def _partition(field: np.ndarray, cfg: NeuralConfig, max_blocks: int) -> list[Block]:
    shape = field.shape[:-1]
    min_size = max(4, 2 * cfg.overlap + 2)
    if cfg.partition == "none" or max_blocks <= 1:
        return no_partition(shape, data=field, m=cfg.spectrum_m)
    if cfg.partition == "equidistant":
        level = cfg.levels
        while level > 1 and len(equidistant_partition(shape, level, min_size)) > max_blocks:
            level -= 1
        return equidistant_partition(shape, level, min_size, data=field, m=cfg.spectrum_m)
    return sci_partition(field, levels=cfg.levels, max_blocks=max_blocks, m=cfg.spectrum_m, min_size=min_size)


def plan_network(field: np.ndarray, cfg: NeuralConfig, param_budget: int) -> tuple[list[Block], list[list[int]]]:
    """Blocks and per-block widths for ``param_budget`` parameters."""
    n_in, n_out = field.ndim - 1, field.shape[-1]
    extra = cfg.layers - 1 if cfg.learn_frequency else 0
    cap = max_blocks_for_budget(param_budget, n_in, n_out, cfg.layers, cfg.fr, min_width=cfg.min_width)
    if cap < 1:
        raise TargetNotMet(
            f"the budget of {param_budget} parameters is below the smallest {cfg.layers}-layer network "
            f"(width {cfg.min_width}); lower the ratio")
    if cfg.min_block_params > 0:
        cap = min(cap, max(1, param_budget // cfg.min_block_params))
    blocks = _partition(field, cfg, min(cfg.max_blocks, cap) if cfg.method == "sci" else 1)
    budgets = allocate(param_budget - extra * len(blocks), blocks, mode=cfg.allocation,
                       min_params=max(1, siren_param_count(n_in, n_out, [cfg.min_width] * (cfg.layers - 1))))
    widths = plan_groups(budgets, n_in, n_out, n_layers=cfg.layers, fr=cfg.fr, max_groups=cfg.max_groups)
    return blocks, widths


def _group_by_widths(widths: list[list[int]]) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, w in enumerate(widths):
        groups.setdefault(tuple(w), []).append(b)
    return list(groups.values())


# ---------------------------------------------------------------------------- coding
def group_tensors(net: BatchedSiren) -> list[np.ndarray]:
    """The tensors stored for a group, in file order."""
    out = []
    for w, b in zip(net.weights, net.biases, strict=True):
        out += [w.detach().cpu().numpy(), b.detach().cpu().numpy()]
    if net.log_freq is not None:
        out.append(net.log_freq.detach().cpu().numpy())
    return out


def _encode_all(nets: list[BatchedSiren], bits: float) -> tuple[bytes, np.ndarray]:
    tensors = [t for net in nets for t in group_tensors(net)]
    payload, codes = weight_coding.encode(tensors, bits)
    return payload, np.array([c.to_row() for c in codes], dtype=np.float32)


def axis_bandwidth(field_arr: np.ndarray, energy: float = 0.9) -> tuple[float, ...]:
    """Signal bandwidth of each coordinate axis, in cycles per voxel: the frequency below
    which ``energy`` of the power (DC excluded, channels summed) lies along that axis."""
    x = field_arr - field_arr.mean(axis=tuple(range(field_arr.ndim - 1)), keepdims=True)
    power = (np.abs(np.fft.rfftn(x, axes=tuple(range(x.ndim - 1)))) ** 2).sum(axis=-1)
    out = []
    n_axes = field_arr.ndim - 1
    for a in range(n_axes):
        n = field_arr.shape[a]
        if n < 2:
            out.append(0.5)
            continue
        other = tuple(i for i in range(n_axes) if i != a)
        marg = power.sum(axis=other)
        if a == n_axes - 1:  # rfft axis: already folded, double the non-edge bins
            f = np.fft.rfftfreq(n)
            w = np.where((f > 0) & (f < 0.5), 2.0, 1.0)
            m = marg * w
        else:
            f = np.abs(np.fft.fftfreq(n))
            m = marg
        order = np.argsort(f, kind="stable")
        f, m = f[order], m[order]
        keep = f > 0
        f, m = f[keep], m[keep]
        total = m.sum()
        if total <= 0:
            out.append(1.0 / n)
            continue
        c = np.cumsum(m) / total
        out.append(float(max(f[min(np.searchsorted(c, energy), len(f) - 1)], 1.0 / n)))
    return tuple(float(np.float32(b)) for b in out)


def first_omegas(cfg: NeuralConfig, bset: BlockSet, members: list[int] | np.ndarray) -> np.ndarray:
    """First-layer omega per block: ``omega_first``, or with ``omega_per_cycle`` that many
    radians per signal cycle across the block's extent along its richest axis (so blocks of
    any size and data of any bandwidth get a frequency that matches their content)."""
    members = np.asarray(members, dtype=np.int64)
    if cfg.omega_per_cycle is None:
        return np.full(len(members), float(cfg.omega_first))
    return cfg.omega_per_cycle * bset.cycles()[members].max(axis=1)


def exact_groups(payload: bytes, code_rows: np.ndarray, group_widths: list[list[int]], block_group: np.ndarray,
                 n_in: int, n_out: int, cfg: NeuralConfig, bset: BlockSet, *, limit: int | None = None) -> list[Group]:
    """Networks for inference, rebuilt from the coded weights exactly as a reader does
    (integer symbols, see :mod:`voxfield.fields.exact`). ``limit`` bounds the number of
    weights a file's header may declare (the reader's ``alloc_limit``; None when the
    encoder rebuilds its own networks)."""
    # element counts follow from the architecture (the table's float32 count column is
    # exact only below 2**24 elements, so it is not trusted)
    counts = []
    for gi, widths in enumerate(group_widths):
        nb, dims = int(np.count_nonzero(block_group == gi)), [n_in, *widths, n_out]
        for layer in range(len(dims) - 1):
            counts += [nb * dims[layer] * dims[layer + 1], nb * dims[layer + 1]]
        if cfg.learn_frequency:
            counts.append(nb * len(widths))
    if len(counts) != len(code_rows):
        raise ValueError("weight tables do not match the networks")
    codes = [replace(weight_coding.TensorCode.from_row(r), count=n) for r, n in zip(code_rows, counts, strict=True)]
    syms = weight_coding.decode_symbols(payload, codes, limit=sum(counts) if limit is None else limit)
    pos, groups = 0, []
    for gi, widths in enumerate(group_widths):
        members = [int(b) for b in np.nonzero(block_group == gi)[0]]
        nb, dims = len(members), [n_in, *widths, n_out]
        wsym, wsteps, biases = [], [], []
        for layer in range(len(dims) - 1):
            shape_w, shape_b = (nb, dims[layer], dims[layer + 1]), (nb, 1, dims[layer + 1])
            if syms[pos].size != np.prod(shape_w) or syms[pos + 1].size != np.prod(shape_b):
                raise ValueError("weight tables do not match the networks")
            wsym.append(syms[pos].reshape(shape_w))
            wsteps.append(codes[pos].step)
            biases.append((syms[pos + 1].astype(np.float64) * codes[pos + 1].step).reshape(shape_b))
            pos += 2
        omegas = np.tile(np.array([1.0] + [cfg.omega_hidden] * (len(widths) - 1), dtype=np.float64), (nb, 1))
        omegas[:, 0] = first_omegas(cfg, bset, members)
        if cfg.learn_frequency:
            log_freq = (syms[pos].astype(np.float64) * codes[pos].step).reshape(nb, len(widths))
            pos += 1
            freq = omegas * np.exp(log_freq)
        else:
            freq = omegas
        groups.append(Group(members, ExactSiren(wsym, wsteps, biases, freq, cfg.activation)))
    if pos != len(syms):
        raise ValueError("weight tables do not match the networks")
    return groups


def _method_header(cfg: NeuralConfig, layout: FieldLayout, blocks: BlockSet, groups: list[dict[str, Any]],
                   bits: float, deblock: DeblockParams, extra: dict[str, Any]) -> dict[str, Any]:
    # the guidance keys only when guidance is on: unguided files stay as they were
    skip = ("device",) + (tuple(k for k in asdict(cfg) if k.startswith("guide")) if cfg.guide is None else ())
    return {
        "name": cfg.method,
        "config": {k: v for k, v in asdict(cfg).items() if k not in skip},
        "layout": layout.to_dict(),
        "overlap": blocks.overlap,
        "groups": groups,
        "bits": bits,
        "deblock": deblock.to_list(),
        **extra,
    }


def _tables(blocks: BlockSet, block_group: np.ndarray, codes: np.ndarray) -> bytes:
    return tables.pack({"starts": blocks.starts.astype(np.int32), "stops": blocks.stops.astype(np.int32),
                        "group": block_group.astype(np.int16), "codes": codes.astype(np.float32)})


# ---------------------------------------------------------------------------- compress
@dataclass
class FitReport:
    """What happened during a neural compression (for the CLI and benchmarks)."""

    method: str
    n_blocks: int = 0
    n_groups: int = 0
    n_params: int = 0
    steps: int = 0
    bits: float = 0.0
    lrs: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    file_bytes: int = 0
    attempts: int = 1
    guide: str | None = None
    guide_threshold: float | None = None  # segmentation threshold used, data units


def _constant_file(vol: Volume, layout: FieldLayout, cfg: NeuralConfig) -> bytes:
    header = {"voxfield": __version__, "volume": volume_header(vol),
              "method": {"name": cfg.method, "config": {"method": cfg.method}, "layout": layout.to_dict(),
                         "constant": True}}
    return container.dumps(header, {})


def compress_neural(vol: Volume, cfg: NeuralConfig, target: Target | None = None, *,
                    progress: Callable[[str, float], None] | None = None,
                    report: FitReport | None = None, guide_mask: np.ndarray | None = None) -> bytes:
    """Compress ``vol`` with a neural method; returns the ``.vxf`` bytes.

    ``target`` must be a ratio or a byte size (default ratio 64); the file lands within
    ``target.rtol`` of it (±2 % is the default tolerance for neural methods).
    ``progress(stage, fraction)`` is called during fitting. ``guide_mask`` (with
    ``cfg.guide="segmentation"``) is the reference segmentation to keep (bool, 0/1 or label
    image with the volume's shape, or one channel's shape with ``guide_channel``) instead of
    the thresholded original; it is not stored."""
    cfg.validate()
    if guide_mask is not None and cfg.guide != "segmentation":
        raise OptionError("a guide mask goes with guide=segmentation")
    t_start = time.perf_counter()
    check_array(vol.data, vol.meta.get("source"))
    target = target or default_target()
    if target.kind not in ("ratio", "bytes"):
        raise OptionError(f"the {cfg.method} method aims for a ratio or a size, not {target.kind} "
                          "(error bounds come with --max-error in the hybrid mode)")
    layout = FieldLayout.plan(vol.axes, vol.data, channels=cfg.channels, time=cfg.time)  # type: ignore[arg-type]
    rep = report or FitReport(cfg.method)
    if layout.constant:
        blob = _constant_file(vol, layout, cfg)
        rep.file_bytes, rep.total_seconds = len(blob), time.perf_counter() - t_start
        return blob
    gcfg = cfg.guide_config()
    guide: FieldGuide | None = None if gcfg is None else prepare_field_guide(gcfg, layout, vol.data, guide_mask)
    guide_extra: dict[str, Any] = {} if guide is None else {"guide": guide.describe()}
    if guide is not None:
        rep.guide, rep.guide_threshold = guide.kind, guide.data_threshold
    device = resolve_device(cfg.device)
    size_goal = rate.SizeGoal.of(target, vol.data.nbytes, cfg.method)
    goal, tol = size_goal.goal, size_goal.tol
    field_arr = layout.to_field(vol.data)
    n_in, n_out = field_arr.ndim - 1, field_arr.shape[-1]
    head_base = {"voxfield": __version__, "volume": volume_header(vol)}

    bandwidth = axis_bandwidth(field_arr, cfg.bandwidth_energy) if cfg.omega_per_cycle is not None else None
    bpp = cfg.bits_per_param
    for attempt in range(1, 4):
        rep.attempts = attempt
        # --- budget: container + tables of a provisional plan, then the weights
        guess = _overhead_guess(head_base, cfg, layout, field_arr)
        smallest = siren_param_count(n_in, n_out, [cfg.min_width] * (cfg.layers - 1)) * bpp / 8
        if goal < guess + smallest:
            raise TargetNotMet(
                f"ratio {vol.data.nbytes / goal:.4g} is out of reach for {cfg.method}: the file may hold {goal:.0f} "
                f"bytes, but the container takes about {guess} and the smallest network about {smallest:.0f}; the "
                f"highest reachable ratio here is about {vol.data.nbytes / (guess + smallest):.4g}")
        provisional = max(1, int((goal - guess) * 8 / bpp))
        blocks, widths = plan_network(field_arr, cfg, provisional)
        n_tensors = sum(2 * cfg.layers + (1 if cfg.learn_frequency else 0) for _ in _group_by_widths(widths))
        shape_c = field_arr.shape[:-1]
        dummy_blocks = BlockSet(field_arr.shape[:-1], [b.start for b in blocks], [b.stop for b in blocks],
                                cfg.overlap if len(blocks) > 1 else 0)
        dummy_groups = [{"widths": list(widths[g[0]])} for g in _group_by_widths(widths)]
        rnd = np.random.default_rng(0)
        dummy_tab = _tables(dummy_blocks, rnd.integers(0, 4, len(blocks)),
                            rnd.random((n_tensors, 5)).astype(np.float32))
        over = container.overhead({**head_base, "method": _method_header(
            cfg, layout, dummy_blocks, dummy_groups, 8.123456, DeblockParams(0.1234567, 0.1234567, 0.1234567),
            {"lrs": [1e-3] * len(dummy_groups), "steps": 123456,
             "bandwidth": [0.12345678] * len(shape_c), **guide_extra})}, ["tables", "weights"]) + len(dummy_tab)
        weight_bytes = goal - over
        if weight_bytes < 64:
            raise TargetNotMet(f"ratio {vol.data.nbytes / goal:.4g} is out of reach: the container and tables alone "
                               f"take {over} bytes of the {goal:.0f} allowed")
        budget = int(weight_bytes * 8 / bpp)
        blocks, widths = plan_network(field_arr, cfg, budget)
        groups_idx = _group_by_widths(widths)
        bset = BlockSet(field_arr.shape[:-1], [b.start for b in blocks], [b.stop for b in blocks],
                        cfg.overlap if len(blocks) > 1 else 0, bandwidth)
        owned = [int(np.prod(np.array(b.stop) - np.array(b.start))) for b in blocks]
        gdata: list[GroupData] = []
        for gi, members in enumerate(groups_idx):
            net = BatchedSiren(len(members), n_in, n_out, widths[members[0]],
                               omega_first=first_omegas(cfg, bset, members),
                               omega_hidden=cfg.omega_hidden, learn_frequency=cfg.learn_frequency,
                               activation=cfg.activation, seed=cfg.seed * 1000 + gi)  # type: ignore[arg-type]
            gdata.append(make_group_data(net, field_arr, bset.ext_starts[members], bset.ext_stops[members],
                                         [owned[b] for b in members], int(np.prod(field_arr.shape[:-1])), device,
                                         bset.coord_scale()[members],
                                         mask=None if guide is None else guide.mask_field))
        n_params = sum(g.net.params_per_block() * g.net.n_blocks for g in gdata)
        samples = _samples_per_block(cfg, gdata)

        # --- fit (the fine-tune takes qat_fraction more steps: keep the total in budget)
        t0 = time.perf_counter()
        budget = cfg.time_budget if cfg.time_budget is not None else default_time_budget(vol.data.size)
        fit_budget = budget / (1.0 + cfg.qat_fraction) - (t0 - t_start)
        lrs, steps = train(gdata, steps=cfg.steps, samples=samples, optimizer=cfg.optimizer, lr=cfg.lr, seed=cfg.seed,
                           time_budget=max(fit_budget, 5.0), guide=guide,
                           on_step=(lambda s, n: progress("fit", s / n)) if progress else None)
        rep.train_seconds += time.perf_counter() - t0

        # --- bits to land on the budget, QAT, bits again
        nets = [g.net for g in gdata]
        bits, payload, codes = _land_bits(nets, weight_bytes, tol)
        if payload is None:
            bpp = bpp * (len(_encode_all(nets, weight_coding.MIN_BITS)[0]) / weight_bytes) * 1.02
            continue  # even 8-bit overshoots: re-plan smaller
        qat = max(1, int(steps * cfg.qat_fraction)) if cfg.qat_fraction > 0 else 0
        if qat:
            # with a time budget the fine-tune gets what is left of it (its steps cost more
            # than fitting steps: fake quantisation), keeping a tenth for coding the file
            left = 0.9 * (budget - (time.perf_counter() - t_start))
            timed = cfg.steps is None and left > 1.0
            train(gdata, steps=None if timed else qat, time_budget=left if timed else None, samples=samples,
                  seed=cfg.seed + 11, bits=bits, lrs=[r * 0.1 for r in lrs], guide=guide,
                  on_step=(lambda s, n: progress("quantisation-aware fine-tune", s / n)) if progress else None)
            bits, payload, codes = _land_bits(nets, weight_bytes, tol)
            if payload is None:
                bits, payload, codes = weight_coding.MIN_BITS, *_encode_all(nets, weight_coding.MIN_BITS)
        assert codes is not None
        block_group = np.zeros(len(blocks), dtype=np.int16)
        for gi, members in enumerate(groups_idx):
            block_group[members] = gi
        ghead = [{"widths": list(widths[m[0]])} for m in groups_idx]
        fit_info = {"lrs": [float(r) for r in lrs], "steps": int(steps),
                    "bandwidth": None if bandwidth is None else list(bandwidth), **guide_extra}

        def make_file(b: float, p: bytes, c: np.ndarray, bset: BlockSet = bset, groups_idx: list[list[int]] = groups_idx,
                      block_group: np.ndarray = block_group, ghead: list[dict[str, Any]] = ghead,
                      fit_info: dict[str, Any] = fit_info, n_blocks: int = len(blocks),
                      widths: list[list[int]] = widths) -> bytes:
            deb = DeblockParams()
            if cfg.deblock == "h264" and n_blocks > 1:
                groups = exact_groups(p, c, [widths[m[0]] for m in groups_idx], block_group, n_in, n_out, cfg, bset)
                deb = _choose_deblock(bset, groups, field_arr)
            method = _method_header(cfg, layout, bset, ghead, float(b), deb, fit_info)
            return container.dumps({**head_base, "method": method},
                                   {"tables": _tables(bset, block_group, c), "weights": p})

        # land the file: the real header and tables replace the estimate
        blob, bits, payload, codes = rate.land_weights(make_file, lambda b, nets=nets: _encode_all(nets, b),
                                                       bits, payload, codes, size_goal)
        rep.n_blocks, rep.n_groups, rep.n_params = len(blocks), len(groups_idx), n_params
        rep.steps, rep.bits, rep.lrs = steps, float(bits), [float(r) for r in lrs]
        rep.file_bytes = len(blob)
        if size_goal.hit(len(blob)):
            rep.total_seconds = time.perf_counter() - t_start
            return blob
        if len(blob) < goal:  # even 16-bit weights leave room: plan bigger
            bpp = bpp * len(payload) / weight_bytes * 0.98
            continue
        break
    raise size_goal.missed(None, rep.file_bytes)


def _overhead_guess(head_base: dict[str, Any], cfg: NeuralConfig, layout: FieldLayout, field_arr: np.ndarray) -> int:
    """Container + tables bytes of a one-block network (a first guess before planning)."""
    shape = field_arr.shape[:-1]
    one = BlockSet(shape, [[0] * len(shape)], [list(shape)], 0)
    n_tensors = 2 * cfg.layers + (1 if cfg.learn_frequency else 0)
    tab = _tables(one, np.zeros(1), np.random.default_rng(0).random((n_tensors, 5)).astype(np.float32))
    head = {**head_base, "method": _method_header(cfg, layout, one, [{"widths": [16] * (cfg.layers - 1)}], 8.123456,
                                                  DeblockParams(), {"lrs": [1e-3], "steps": 12345})}
    return container.overhead(head, ["tables", "weights"]) + len(tab)


def _choose_deblock(bset: BlockSet, groups: list[Group], field_arr: np.ndarray) -> DeblockParams:
    nf = NeuralField(bset, groups, field_arr.shape[-1])
    full = nf.evaluate_grid([np.arange(n) for n in field_arr.shape[:-1]])
    labels = label_map(bset.starts, bset.stops, [slice(0, n) for n in field_arr.shape[:-1]])
    return choose_params(full, field_arr, labels)


def _samples_per_block(cfg: NeuralConfig, gdata: list[GroupData]) -> int:
    """Voxels drawn per block and step: ``cfg.samples`` over all blocks, at least 256 each,
    and bounded so one step costs at most about 2.5e8 multiply-adds."""
    n_blocks = sum(g.net.n_blocks for g in gdata)
    per = max(256, cfg.samples // n_blocks)
    macs = sum(g.net.params_per_block() * g.net.n_blocks for g in gdata)
    largest = max(int(g.sizes.max()) for g in gdata)  # more draws than voxels buys little
    return int(max(256, min(per, 2.5e8 // max(macs, 1), largest)))


def _land_bits(nets: list[BatchedSiren], weight_bytes: float, tol: float
               ) -> tuple[float, bytes | None, np.ndarray | None]:
    """Bit depth in [8, 16] whose coded weights fill ``weight_bytes`` within ``tol``."""
    return rate.land_bits(lambda b: _encode_all(nets, b), weight_bytes, tol)


# ---------------------------------------------------------------------------- decode
def load_field(reader: container.VxfReader) -> tuple[NeuralField | None, FieldLayout]:
    """The :class:`NeuralField` (None for a constant volume) and layout of a neural file."""
    m = reader.header.get("method", {})
    try:
        layout = FieldLayout.from_dict(m["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"corrupt neural header ({exc})", reader.path) from None
    if m.get("constant"):
        return None, layout
    try:
        cfg = NeuralConfig(**{k: v for k, v in m["config"].items() if k in NeuralConfig.__dataclass_fields__})
        tab = tables.unpack(reader.section("tables"))
        bw = m.get("bandwidth")
        bset = BlockSet(layout.coord_shape, tab["starts"], tab["stops"], int(m.get("overlap", 0)),
                        None if bw is None else tuple(float(b) for b in bw))
        groups = exact_groups(reader.section("weights"), tab["codes"], [[int(w) for w in g["widths"]] for g in m["groups"]],
                              tab["group"].astype(np.int64), len(layout.coord_axes), layout.n_out, cfg, bset,
                              limit=reader.alloc_limit)
        if sorted(b for g in groups for b in g.blocks) != list(range(bset.n_blocks)):
            raise ValueError("block table and groups disagree")
        deb = DeblockParams.from_list(m.get("deblock", [0, 0, 0]))
    except FormatError as exc:
        raise FormatError(exc.message, reader.path) from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise FormatError(f"corrupt neural model ({exc})", reader.path) from None
    return NeuralField(bset, groups, layout.n_out, deb), layout


def decode_neural(reader: container.VxfReader) -> Volume:
    """Decode a whole neural ``.vxf`` to a Volume (original dtype and header)."""
    return decode_whole(reader, load_field)
