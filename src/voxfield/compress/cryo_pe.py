"""The ``cryo-pe`` method: paper 000 (Zou, "Application of Deep Learning in Biological Data
Compression"), an implicit neural representation of a cryo-EM map above a density threshold.

Pipeline (paper section 3, with the choices the paper leaves open written down):

1. **threshold** -- ``threshold=`` (map units), or by default the automatic contour of
   :func:`voxfield.metrics.cryoem.auto_contour` (the level at which the map shows as one
   connected body). Voxels **above** the threshold are *occupied*.
2. **occupancy map** -- the binary map of occupied voxels, coded losslessly. ``gzip`` is the
   paper's (one byte per voxel, as its "100 MB to 10 MB" implies, DEFLATE level 9);
   ``zstd`` packs the bits (``np.packbits``) and runs zstd 19; ``context`` is an adaptive
   binary arithmetic (ANS, ``constriction``) coder whose probability is conditioned on 8
   already-decoded neighbours (3 in the previous row, 5 in the previous plane) and learned
   on the fly (counts updated after every row: nothing is stored but the bits). ``auto``
   (default) keeps the smallest and the header records which.
3. **below the threshold** every voxel decodes to one stored constant, the **mean of the
   below-threshold values**: of all constants it has the least squared error over those
   voxels, and it lies at or below the threshold, so a display at the threshold (what the
   paper's users do) still shows exactly the stored occupancy. (0 would be the paper's
   "filtered" value, but it is above the threshold whenever the threshold is negative, and it
   costs more error otherwise.)
4. **network** (:mod:`voxfield.fields.nerf`) -- trained on occupied voxels only: NeRF
   positional encoding of the coordinates scaled to [0, 1] (L = 10 frequencies: 63 values) +
   a learnable 64-D latent vector (127 inputs), residual MLP with LeakyReLU(0.01). Layer
   widths: ``widths=2048,1024,512,256`` (with ``residual=2,1,1,0``) is the paper's network;
   by default the widths follow the byte budget: ``w, w/2, w/4, w/8`` with the paper's
   residual pattern, ``w`` as large as the budget allows.
   The network predicts ``y = density / peak`` (``peak`` = largest |density| of the occupied
   voxels): zero stays zero, so the paper's value weight ``|y|`` keeps its meaning.
5. **loss** -- ``loss="weighted"`` (default), the paper's equations 3-6::

       w_value = ((|y| + eps) / (E_chunk[|y|] + eps))**2        eps = 1e-4   (3)
       w_error = 3 where the point's squared error > its 90th percentile, else 1   (4)
       w       = w_value * w_error / E_batch[w_value * w_error]                   (5)
       loss    = E_batch[(y - y_hat)**2 * w]                                      (6)

   ``y`` is the **ground truth** (the text: "emphasises points with larger absolute values");
   ``E[|y|]`` is taken over the current training chunk (the text: "the chunk's mean absolute
   density"); the 90th percentile and the normalisation of (5) over the batch; the weights are
   constants for the gradient (detached; the percentile indicator has no gradient anyway).
   ``loss="mse"`` is the plain MSE of equation 2 (the paper's ablation).
6. **training in chunks** -- the occupied voxels' flat indices and values are written to a
   memory-mapped file (slab by slab, so no full coordinate array is ever built); training
   draws a chunk of ``chunk_points`` of them (default 1M, the paper's chunk) into memory,
   runs one pass of random batches of ``batch`` points (default 1024, the paper's) over it,
   then draws the next chunk. Adam, learning rate 1e-3 (the paper's) with a cosine decay to
   1 % of it (the paper reports needing a decay). Instead of 100 epochs with early stopping
   the run is bounded by ``steps`` or ``time_budget`` seconds, like voxfield's other methods.
7. **weights** -- quantised per tensor at >= 8 bits and entropy-coded
   (:mod:`voxfield.compress.entropy.weights`); the bit depth is searched so that the file lands
   within tolerance of the target ratio (as :mod:`voxfield.compress.neural`). The latent
   vector is folded into the first layer's bias before coding (``fold_latent=True``, the same
   function, 64 x w1 fewer stored numbers); ``fold_latent=False`` stores it as is.
8. **container** ``.vxf`` -- header (volume, layout, configuration, threshold, constant,
   occupancy coder, architecture, fixed-point parameters) + sections ``occupancy``,
   ``tables`` (weight quantisation table) and ``weights``.

Decoding is exact and order-independent (:class:`voxfield.fields.nerf.ExactNerf`): any
region, slice, strided preview or list of points gives the values of the full decode. Decoded
occupied voxels are clamped to the range of the occupied voxels' true values (stored): the
true value lies in that range, so the clamp only removes error, and an occupied voxel never
decodes at or below the threshold. Only 3-D maps are accepted.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from voxfield import __version__
from voxfield.codecs.base import Target
from voxfield.compress import container, rate, tables
from voxfield.compress.classic import volume_header
from voxfield.compress.defaults import default_target
from voxfield.compress.entropy import weights as weight_coding
from voxfield.compress.entropy.occupancy import OCCUPANCY_CODERS, decode_occupancy, encode_occupancy
from voxfield.compress.field_layout import FieldLayout, decode_whole
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet
from voxfield.fields.nerf import ExactNerf, NerfMLP, encoding_size, frac_bits_for, layer_plan, param_count
from voxfield.io.validate import check_array
from voxfield.io.volume import Volume

METHOD = "cryo-pe"
#: The paper's residual pattern for the four widths (Re1, Re2 | Re3 | Re4 | -).
PAPER_RESIDUAL = (2, 1, 1, 0)
_EPS = 1e-4


def _int_tuple(value: Any, name: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").replace("-", ",").split(",") if p]
    elif isinstance(value, (int, np.integer)):
        parts = [value]
    else:
        parts = list(value)
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be integers like 2048,1024,512,256, got {value!r}") from None


@dataclass(frozen=True)
class CryoPEConfig:
    """Every knob of ``cryo-pe`` (module docstring); defaults follow the paper where it
    gives a value."""

    method: str = METHOD
    threshold: float | None = None  # None: automatic contour
    occupancy_coder: str = "auto"  # auto | gzip | zstd | context
    frequencies: int = 10  # L of the positional encoding
    latent_dim: int = 64
    widths: tuple[int, ...] | None = None  # None: from the byte budget (w, w/2, w/4, w/8)
    residual: tuple[int, ...] | None = None  # None: the paper's (2, 1, 1, 0), zeros beyond
    min_width: int = 4
    fold_latent: bool = True
    loss: str = "weighted"  # weighted | mse
    error_weight: float = 3.0
    error_quantile: float = 0.9
    lr: float = 1e-3
    lr_final: float = 0.01  # cosine decay to lr * lr_final
    batch: int = 1024
    chunk_points: int = 1 << 20
    steps: int | None = None
    time_budget: float | None = None
    bits_per_param: float = 8.0  # first guess of coded bits per parameter (sizing only)
    seed: int = 0
    device: str = "auto"

    @classmethod
    def preset(cls, method: str | None = None, **overrides: Any) -> Any:
        """The default configuration with ``overrides`` (unknown keys raise OptionError);
        ``method`` must be the class's own (``cryo-pe``, or ``cryo-pe-set`` for sets)."""
        own = getattr(cls, "METHOD_NAME", METHOD)
        method = own if method is None else method
        if method != own:
            raise OptionError(f"unknown method {method!r} for {cls.__name__} (known: {own})")
        base = cls()
        bad = set(overrides) - set(asdict(base))
        if bad:
            raise OptionError(f"unknown option(s) for {method}: {', '.join(sorted(bad))}")
        for key in ("widths", "residual"):
            if key in overrides:
                overrides[key] = _int_tuple(overrides[key], key)
        return replace(base, **overrides)

    def residual_for(self, n_widths: int) -> tuple[int, ...]:
        if self.residual is not None:
            return tuple(self.residual)
        return tuple((PAPER_RESIDUAL + (0,) * n_widths)[:n_widths])

    def validate(self) -> None:
        if self.threshold is not None and not (isinstance(self.threshold, (int, float))
                                               and math.isfinite(float(self.threshold))):
            raise OptionError(f"threshold must be a finite number, got {self.threshold!r}")
        if self.occupancy_coder not in OCCUPANCY_CODERS:
            raise OptionError(f"occupancy_coder must be one of {', '.join(OCCUPANCY_CODERS)}, "
                              f"got {self.occupancy_coder!r}")
        if self.loss not in ("weighted", "mse"):
            raise OptionError(f"loss must be weighted or mse, got {self.loss!r}")
        if not 0 <= self.frequencies <= 20:
            raise OptionError("frequencies must be in 0..20")
        if self.latent_dim < 0:
            raise OptionError("latent_dim must be >= 0")
        if self.widths is not None and (not self.widths or min(self.widths) < 1):
            raise OptionError("widths must be one or more positive integers")
        if self.residual is not None:
            if min(self.residual, default=0) < 0:
                raise OptionError("residual counts must be >= 0")
            n = len(self.widths) if self.widths is not None else 4
            if len(self.residual) != n:
                raise OptionError(f"residual needs one count per width ({n}), got {len(self.residual)}")
        if self.min_width < 1 or self.batch < 8 or self.chunk_points < self.batch:
            raise OptionError("min_width must be >= 1, batch >= 8 and chunk_points >= batch")
        if not 0 < self.error_quantile < 1 or self.error_weight <= 0:
            raise OptionError("error_quantile must be in (0, 1) and error_weight > 0")
        if self.lr <= 0 or not 0 < self.lr_final <= 1 or self.bits_per_param <= 0:
            raise OptionError("lr and bits_per_param must be > 0, lr_final in (0, 1]")
        if self.steps is not None and self.steps < 1:
            raise OptionError("steps must be >= 1")
        if self.time_budget is not None and self.time_budget <= 0:
            raise OptionError("time budget must be > 0 seconds")


@dataclass
class CryoPEReport:
    """What happened during a ``cryo-pe`` compression (for the CLI and benchmarks)."""

    method: str = METHOD
    threshold: float = 0.0
    threshold_source: str = ""
    fill: float = 0.0
    occupied: int = 0
    occupied_fraction: float = 0.0
    occupancy_coder: str = ""
    occupancy_bytes: int = 0
    occupancy_sizes: dict[str, int] = field(default_factory=dict)  # bytes per coder tried
    widths: list[int] = field(default_factory=list)
    residual: list[int] = field(default_factory=list)
    n_params: int = 0
    steps: int = 0
    bits: float = 0.0
    loss: str = ""
    final_loss: float = float("nan")
    lrs: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    weight_bytes: int = 0
    file_bytes: int = 0
    attempts: int = 1
    n_blocks: int = 1
    n_groups: int = 1


def _coords01(flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Flat voxel indices -> coordinates in [0, 1] (``i / (n - 1)`` per axis), float64."""
    idx = np.unravel_index(np.asarray(flat, dtype=np.int64), tuple(shape))
    return _scale01(np.stack(idx, axis=1).astype(np.float64), shape)


def _scale01(pos: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    den = np.array([max(int(n) - 1, 1) for n in shape], dtype=np.float64)
    return pos / den


def _auto_widths(budget: int, n_in: int, cfg: CryoPEConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Largest ``w, w/2, w/4, w/8`` network (paper's residual pattern) within ``budget``."""
    res = cfg.residual_for(4)
    stored_latent = 0 if cfg.fold_latent else cfg.latent_dim

    def widths_of(w: int) -> tuple[int, ...]:
        return tuple(max(cfg.min_width, int(round(w / 2**i))) for i in range(4))

    w = cfg.min_width
    if param_count(n_in, widths_of(w), res, stored_latent) > budget:
        raise TargetNotMet(f"the budget of {budget} parameters is below the smallest cryo-pe network "
                           f"({param_count(n_in, widths_of(w), res, stored_latent)} parameters); lower the ratio")
    while param_count(n_in, widths_of(w + 1), res, stored_latent) <= budget and w < 8192:
        w += 1
    return widths_of(w), res


class _Samples:
    """Occupied voxels on disk: flat indices (int64) and targets ``y`` (float32) in two
    memory-mapped ``.npy`` files, written slab by slab."""

    def __init__(self, data: np.ndarray, mask: np.ndarray, peak: float, folder: str) -> None:
        n = int(np.count_nonzero(mask))
        self.n = n
        self.index = np.lib.format.open_memmap(os.path.join(folder, "index.npy"), mode="w+", dtype=np.int64,
                                               shape=(n,))
        self.y = np.lib.format.open_memmap(os.path.join(folder, "y.npy"), mode="w+", dtype=np.float32, shape=(n,))
        plane = int(np.prod(data.shape[1:]))
        slab = max(1, (1 << 22) // max(plane, 1))
        pos = 0
        for z0 in range(0, data.shape[0], slab):
            m = mask[z0 : z0 + slab].reshape(-1)
            flat = np.flatnonzero(m)
            k = len(flat)
            self.index[pos : pos + k] = flat + z0 * plane
            self.y[pos : pos + k] = (data[z0 : z0 + slab].reshape(-1)[flat].astype(np.float64) / peak).astype(np.float32)
            pos += k
        self.index.flush()
        self.y.flush()

    def chunk(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.n <= size:
            return np.asarray(self.index), np.asarray(self.y)
        pick = np.sort(rng.choice(self.n, size=size, replace=False))
        return self.index[pick], self.y[pick]

    def close(self) -> None:
        for a in (self.index, self.y):
            mm = getattr(a, "_mmap", None)
            if mm is not None:
                mm.close()


class _Stored(Protocol):
    """What the weight coder needs of a network: its stored tensors in file order."""

    def stored_tensors(self, fold_latent: bool) -> list[np.ndarray]: ...


def weighted_mse(pred: torch.Tensor, y: torch.Tensor, mean_abs: float, *, error_weight: float = 3.0,
                 quantile: float = 0.9) -> torch.Tensor:
    """The paper's weighted MSE (equations 3-6, module docstring); ``mean_abs`` = E[|y|] of
    the chunk."""
    se = (pred - y) ** 2
    with torch.no_grad():
        w_value = ((y.abs() + _EPS) / (mean_abs + _EPS)) ** 2
        q = torch.quantile(se.detach().float(), quantile)
        w_error = torch.where(se.detach() > q, torch.full_like(se, error_weight), torch.ones_like(se))
        w = w_value * w_error
        w = w / w.mean().clamp_min(1e-30)
    return torch.mean(se * w)


def _train(net: NerfMLP, samples: _Samples, shape: Sequence[int], cfg: CryoPEConfig, device: torch.device,
           train_budget: float, progress: Callable[[str, float], None] | None) -> tuple[int, float]:
    n_chunk = min(cfg.chunk_points, samples.n)

    def draw(rng: np.random.Generator) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        flat, yv = samples.chunk(n_chunk, rng)
        x = torch.as_tensor(_coords01(flat, shape), dtype=torch.float32, device=device)
        return (x,), torch.as_tensor(yv, dtype=torch.float32, device=device)

    return train_chunked(net, draw, n_chunk, cfg, device, train_budget, progress)


def train_chunked(net: torch.nn.Module, draw: Callable[[np.random.Generator], tuple[tuple[torch.Tensor, ...], torch.Tensor]],
                  n_chunk: int, cfg: CryoPEConfig, device: torch.device, train_budget: float,
                  progress: Callable[[str, float], None] | None) -> tuple[int, float]:
    """The training loop of ``cryo-pe`` (module docstring, step 6), shared with the joint
    model of :mod:`voxfield.compress.cryo_pe_set`.

    ``draw(rng)`` returns the next chunk: the network's input tensors (each ``(n, ...)``)
    and the targets ``(n,)``; one pass of ``n_chunk // batch`` random batches runs over it,
    ``net(*inputs[pick])`` giving the predictions. Returns (steps, last loss)."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 2)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr)
    total = cfg.steps or 10**9
    step, t0, last = 0, time.perf_counter(), float("nan")
    chunk_x: tuple[torch.Tensor, ...] | None = None
    chunk_y: torch.Tensor | None = None
    chunk_left, mean_abs = 0, 1.0
    while step < total:
        if cfg.steps is None:
            if step == 20:
                pace = (time.perf_counter() - t0) / 20
                total = max(40, int(train_budget / max(pace, 1e-6)))
            elif step > 20 and step % 200 == 0 and time.perf_counter() - t0 > 1.1 * train_budget:
                total = step  # slower than measured (a busy machine): stop on time
                break
        if chunk_left <= 0:  # next chunk: one pass of batches over it
            chunk_x, chunk_y = draw(rng)
            mean_abs = float(chunk_y.abs().mean())
            chunk_left = max(1, n_chunk // cfg.batch)
        assert chunk_x is not None and chunk_y is not None
        frac = step / max(total, 1) if cfg.steps is not None or step >= 20 else 0.0
        lr = cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for pg in opt.param_groups:
            pg["lr"] = lr
        pick = torch.randint(0, len(chunk_y), (min(cfg.batch, len(chunk_y)),), generator=gen).to(device)
        pred = net(*(t[pick] for t in chunk_x))
        y = chunk_y[pick]
        if cfg.loss == "weighted":
            loss = weighted_mse(pred, y, mean_abs, error_weight=cfg.error_weight, quantile=cfg.error_quantile)
        else:
            loss = torch.mean((pred - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        chunk_left -= 1
        step += 1
        if progress is not None:
            progress("fit", min(step / total, 1.0))
    return step, last


def _fixed_point(net: NerfMLP, samples: _Samples, shape: Sequence[int], n_in: int, widths: Sequence[int],
                 device: torch.device) -> tuple[int, float]:
    """Fixed-point bits and clip of the exact network, from the largest activation over (up
    to 65536 of) the occupied voxels, with a 4x margin."""
    flat, _ = samples.chunk(1 << 16, np.random.default_rng(0))
    rec: list[float] = [1.0]
    with torch.no_grad():
        net(torch.as_tensor(_coords01(flat, shape), dtype=torch.float32, device=device), record=rec)
    return fixed_point_for(rec, n_in, widths)


def fixed_point_for(rec: Sequence[float], n_in: int, widths: Sequence[int]) -> tuple[int, float]:
    """Fixed-point bits and clip from the recorded largest activations ``rec`` (4x margin)."""
    clip = float(2.0 ** math.ceil(math.log2(max(4.0 * max(rec), 1.0))))
    fb = frac_bits_for(max(n_in, *widths), clip)
    if fb < 8:
        raise TargetNotMet("cryo-pe: network activations too large for exact decoding (fixed point below 8 bits)")
    return fb, clip


def _encode_weights(net: _Stored, fold: bool, bits: float) -> tuple[bytes, np.ndarray]:
    payload, codes = weight_coding.encode(net.stored_tensors(fold), bits)
    return payload, np.array([c.to_row() for c in codes], dtype=np.float32)


def _land_bits(net: _Stored, fold: bool, weight_bytes: float, tol: float
               ) -> tuple[float, bytes | None, np.ndarray | None]:
    """Bit depth in [8, 16] whose coded weights fill ``weight_bytes`` within ``tol``."""
    return rate.land_bits(lambda b: _encode_weights(net, fold, b), weight_bytes, tol)


def _method_header(cfg: CryoPEConfig, layout: FieldLayout, extra: dict[str, Any]) -> dict[str, Any]:
    conf = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items() if k != "device"}
    return {"name": METHOD, "config": conf, "layout": layout.to_dict(), **extra}


# ---------------------------------------------------------------------------- compress
@dataclass
class Occupancy:
    """Threshold, occupancy map and the constants of one map (module docstring, steps 1-3)."""

    threshold: float
    source: str  # "auto" or "given"
    mask: np.ndarray  # occupied voxels (bool, the map's shape)
    occupied: int
    fill: float  # mean of the below-threshold values (map units)
    peak: float  # largest |value| of the occupied voxels: the network predicts value / peak
    y_range: tuple[float, float]  # range of value / peak over the occupied voxels
    payloads: dict[str, bytes]  # occupancy bytes per coder tried
    coder: str  # the one kept (smallest)

    @property
    def payload(self) -> bytes:
        return self.payloads[self.coder]


def plan_occupancy(vol: Volume, threshold: float | None, occupancy_coder: str) -> Occupancy:
    """Threshold (given, or the automatic contour), occupancy map coded with
    ``occupancy_coder`` (``auto``: the smallest of the three), fill constant and peak of a
    3-D map. Raises :class:`DataError` when no threshold is found or no voxel is occupied."""
    from voxfield.metrics.cryoem import auto_contour

    data = vol.data
    if threshold is None:
        spacing = vol.spacing if vol.spacing and len(vol.spacing) == 3 else 1.0
        try:
            thr = float(auto_contour(data, spacing))
        except DataError as exc:
            raise DataError(f"cryo-pe: no automatic threshold ({exc.message}); give threshold=") from None
        source = "auto"
    else:
        thr, source = float(threshold), "given"
    mask = data > thr
    n_occ = int(np.count_nonzero(mask))
    if n_occ == 0:
        raise DataError(f"cryo-pe: threshold {thr:.6g} is at or above the map maximum {float(data.max()):.6g}: "
                        "no voxel is occupied")
    below = data[~mask]
    fill = float(below.astype(np.float64).mean()) if below.size else thr
    del below
    occ_vals = data[mask]
    peak = float(np.abs(occ_vals).max()) or 1.0
    y_lo, y_hi = float(occ_vals.min()) / peak, float(occ_vals.max()) / peak
    del occ_vals
    coders = ("gzip", "zstd", "context") if occupancy_coder == "auto" else (occupancy_coder,)
    sizes: dict[str, bytes] = {c: encode_occupancy(mask, c) for c in coders}
    coder = min(sizes, key=lambda c: (len(sizes[c]), coders.index(c)))
    return Occupancy(thr, source, mask, n_occ, fill, peak, (y_lo, y_hi), sizes, coder)


def _check_volume(vol: Volume) -> None:
    check_array(vol.data, vol.meta.get("source"))
    if vol.data.ndim != 3 or len(vol.axes) != 3 or set(vol.axes) != set("ZYX"):
        raise DataError(f"cryo-pe compresses 3-D maps (axes ZYX), got axes {vol.axes!r} and shape {vol.data.shape}")


def compress_cryo_pe(vol: Volume, cfg: CryoPEConfig, target: Target | None = None, *,
                     progress: Callable[[str, float], None] | None = None,
                     report: CryoPEReport | None = None) -> bytes:
    """Compress a 3-D map with ``cryo-pe``; returns the ``.vxf`` bytes, within
    ``target.rtol`` of the ratio/size target (default ratio 64, ±2 %).

    Raises :class:`DataError` for non-3-D data, NaN/Inf, or a threshold that leaves no
    occupied voxel; :class:`TargetNotMet` when the occupancy map and the smallest network do
    not fit in the budget."""
    from voxfield.compress.neural import default_time_budget, resolve_device

    cfg.validate()
    t_start = time.perf_counter()
    _check_volume(vol)
    target = target or default_target()
    if target.kind not in ("ratio", "bytes"):
        raise OptionError(f"the cryo-pe method aims for a ratio or a size, not {target.kind}")
    data = vol.data
    layout = FieldLayout.plan(vol.axes, data)
    rep = report or CryoPEReport()
    head_base = {"voxfield": __version__, "volume": volume_header(vol)}
    if layout.constant:
        blob = container.dumps({**head_base, "method": {"name": METHOD, "config": {"method": METHOD},
                                                         "layout": layout.to_dict(), "constant": True}}, {})
        rep.file_bytes, rep.total_seconds = len(blob), time.perf_counter() - t_start
        return blob
    if tuple(vol.axes) != ("Z", "Y", "X"):  # the field works in Z, Y, X order
        raise DataError(f"cryo-pe expects axes ZYX, got {vol.axes!r} (transpose the map first)")
    if vol.unit == "px" and cfg.threshold is None:
        warnings.warn(f"{vol.meta.get('source') or 'map'}: voxel size unknown (0 in the header); the automatic "
                      "threshold assumes 1 Å voxels: set the voxel size with --apix", UserWarning, stacklevel=2)
    shape = tuple(int(n) for n in data.shape)

    # --- threshold, occupancy, constant
    occ = plan_occupancy(vol, cfg.threshold, cfg.occupancy_coder)
    thr, source, mask, n_occ, fill, peak = occ.threshold, occ.source, occ.mask, occ.occupied, occ.fill, occ.peak
    y_lo, y_hi = occ.y_range
    sizes, coder, occ_payload = occ.payloads, occ.coder, occ.payload
    if progress is not None:
        progress("occupancy", 1.0)

    device = resolve_device(cfg.device)
    size_goal = rate.SizeGoal.of(target, data.nbytes, METHOD)
    goal, tol = size_goal.goal, size_goal.tol
    n_pe = encoding_size(3, cfg.frequencies)
    n_in_stored = n_pe if cfg.fold_latent else n_pe + cfg.latent_dim
    stored_latent = 0 if cfg.fold_latent else cfg.latent_dim
    budget_s = cfg.time_budget if cfg.time_budget is not None else default_time_budget(data.size)

    def header(extra: dict[str, Any]) -> dict[str, Any]:
        base = {"threshold": thr, "threshold_source": source, "fill": fill, "peak": peak, "y_range": [y_lo, y_hi],
                "occupancy_coder": coder, "occupied": n_occ}
        return {**head_base, "method": _method_header(cfg, layout, {**base, **extra})}

    def sizing_header(widths: Sequence[int], res: Sequence[int]) -> dict[str, Any]:
        return header({"widths": list(widths), "residual": list(res), "bits": 12.3456789, "frac_bits": 20,
                       "clip": 1024.0, "steps": 1234567, "final_loss": 0.123456789})

    rep.threshold, rep.threshold_source, rep.fill = thr, source, fill
    rep.occupied, rep.occupied_fraction = n_occ, n_occ / data.size
    rep.occupancy_coder, rep.occupancy_bytes = coder, len(occ_payload)
    rep.occupancy_sizes = {c: len(p) for c, p in sizes.items()}
    rep.loss = cfg.loss
    bpp = cfg.bits_per_param
    with tempfile.TemporaryDirectory(prefix="voxfield-cryo-pe-") as folder:
        samples = _Samples(data, mask, peak, folder)
        try:
            for attempt in range(1, 4):
                rep.attempts = attempt
                probe_res = cfg.residual_for(len(cfg.widths) if cfg.widths else 4)
                probe_w = cfg.widths or (4096, 2048, 1024, 512)
                n_tensors = len(layer_plan(n_in_stored, probe_w, probe_res)) * 2 + (1 if stored_latent else 0)
                probe_tab = tables.pack({"codes": np.random.default_rng(0).random((n_tensors, 5)).astype(np.float32)})
                over = container.overhead(sizing_header(probe_w, probe_res), ["occupancy", "tables", "weights"])
                weight_bytes = goal - over - len(probe_tab) - len(occ_payload)
                if weight_bytes < 64:
                    raise TargetNotMet(
                        f"ratio {data.nbytes / goal:.4g} is out of reach for cryo-pe: the file may hold {goal:.0f} "
                        f"bytes, the occupancy map ({coder}) takes {len(occ_payload)} and the container "
                        f"{over + len(probe_tab)}; the highest reachable ratio here is about "
                        f"{data.nbytes / (over + len(probe_tab) + len(occ_payload) + 1024):.4g}")
                if cfg.widths is not None:
                    widths, res = tuple(cfg.widths), cfg.residual_for(len(cfg.widths))
                else:
                    widths, res = _auto_widths(int(weight_bytes * 8 / bpp), n_in_stored, cfg)
                net = NerfMLP(widths, res, n_freq=cfg.frequencies, latent_dim=cfg.latent_dim,
                              seed=cfg.seed).to(device)
                t0 = time.perf_counter()
                train_budget = max(budget_s - (t0 - t_start), 5.0) * 0.85  # leave time for coding
                steps, last = _train(net, samples, shape, cfg, device, train_budget, progress)
                rep.train_seconds += time.perf_counter() - t0
                net = net.cpu()
                bits, payload, codes = _land_bits(net, cfg.fold_latent, weight_bytes, tol)
                if payload is None:
                    if cfg.widths is not None:
                        raise TargetNotMet(f"cryo-pe: widths {','.join(map(str, widths))} need more than the "
                                           f"{weight_bytes:.0f} bytes the target leaves for weights even at 8 bits; "
                                           "lower the ratio or the widths")
                    bpp *= len(_encode_weights(net, cfg.fold_latent, weight_coding.MIN_BITS)[0]) / weight_bytes * 1.02
                    continue
                assert codes is not None
                frac_bits, clip = _fixed_point(net, samples, shape, n_pe, widths, torch.device("cpu"))
                extra = {"widths": list(widths), "residual": list(res), "frac_bits": frac_bits, "clip": clip,
                         "steps": int(steps), "final_loss": last}
                blob, bits, payload, codes = rate.land_weights(
                    lambda b, p, c: container.dumps(header({**extra, "bits": float(b)}),
                                                    {"occupancy": occ_payload, "tables": tables.pack({"codes": c}),
                                                     "weights": p}),
                    lambda b: _encode_weights(net, cfg.fold_latent, b), bits, payload, codes, size_goal)
                rep.widths, rep.residual = list(widths), list(res)
                rep.n_params = param_count(n_in_stored, widths, res, stored_latent)
                rep.steps, rep.bits, rep.final_loss, rep.lrs = steps, float(bits), last, [cfg.lr]
                rep.weight_bytes, rep.file_bytes = len(payload), len(blob)
                if size_goal.hit(len(blob)):
                    rep.total_seconds = time.perf_counter() - t_start
                    return blob
                if len(blob) < goal and cfg.widths is None:  # even 16-bit weights leave room: plan bigger
                    bpp = bpp * len(payload) / weight_bytes * 0.98
                    continue
                break
        finally:
            samples.close()
    raise size_goal.missed(None, rep.file_bytes)


# ---------------------------------------------------------------------------- decode
@dataclass
class CryoPEField:
    """Decoded occupancy + exact network: evaluates normalised field values (the
    :class:`~voxfield.compress.field_layout.FieldLayout`'s [-1, 1] units), like
    :class:`~voxfield.compress.grid.GridField`."""

    mask: np.ndarray  # (Z, Y, X) bool
    net: ExactNerf
    layout: FieldLayout
    fill: float  # map units
    peak: float
    y_range: tuple[float, float]
    n_out: int = 1
    blocks: Any = None  # for API symmetry with NeuralField (no blocks)

    @property
    def coord_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.mask.shape)

    def _to_layout(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self.layout.lo, self.layout.hi
        return (values - lo) * (2.0 / (hi - lo)) - 1.0

    def _occupied_values(self, coords01: np.ndarray) -> np.ndarray:
        y = np.clip(self.net.forward(coords01), self.y_range[0], self.y_range[1])
        return y * self.peak

    def evaluate_grid(self, index: Sequence[np.ndarray]) -> np.ndarray:
        """Field at the grid ``index[0] × index[1] × index[2]`` -> ``(*len(index[a]), 1)``."""
        index = [np.asarray(ix, dtype=np.int64) for ix in index]
        out_shape = tuple(len(ix) for ix in index)
        vals = np.full(out_shape, self.fill, dtype=np.float64)
        plane = max(1, int(np.prod(out_shape[1:])))
        rows = max(1, (1 << 20) // plane)  # bounded memory on large requests
        for lo in range(0, out_shape[0], rows):
            sub = np.ix_(index[0][lo : lo + rows], index[1], index[2])
            occ = self.mask[sub]
            where = np.nonzero(occ)
            if not len(where[0]):
                continue
            pos = np.stack([index[0][lo + where[0]], index[1][where[1]], index[2][where[2]]], axis=1)
            block = vals[lo : lo + rows]
            block[where] = self._occupied_values(_scale01(pos.astype(np.float64), self.coord_shape))
        return self._to_layout(vals)[..., None]

    def evaluate_region(self, region: Sequence[slice]) -> np.ndarray:
        return self.evaluate_grid([np.arange(*s.indices(n)) for s, n in zip(region, self.coord_shape, strict=True)])

    def evaluate_points(self, points: np.ndarray) -> np.ndarray:
        """Field at positions ``(P, 3)`` in voxel units; a fractional position takes the
        occupancy of its nearest voxel and, when occupied, the network at the position."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise OptionError("points must have shape (P, 3)")
        near = np.clip(np.rint(pts).astype(np.int64), 0, np.array(self.coord_shape) - 1)
        occ = self.mask[tuple(near.T)]
        vals = np.full(len(pts), self.fill, dtype=np.float64)
        if occ.any():
            vals[occ] = self._occupied_values(_scale01(pts[occ], self.coord_shape))
        return self._to_layout(vals)[:, None]


def exact_network(plan: list[tuple[int, int, int]], syms: list[np.ndarray], codes: list[weight_coding.TensorCode],
                  pos: int, latent: np.ndarray | None, n_pe: int, n_freq: int, frac_bits: int,
                  clip: float) -> ExactNerf:
    """The exact decoder of stored layers ``syms[pos:]`` (weight, bias pairs along ``plan``);
    a constant ``latent`` input is folded into the first bias once."""
    plan = list(plan)
    wsym, wsteps, biases = [], [], []
    for _, i, o in plan:
        wsym.append(syms[pos].reshape(i, o))
        wsteps.append(codes[pos].step)
        biases.append(syms[pos + 1].astype(np.float64) * codes[pos + 1].step)
        pos += 2
    if latent is not None:
        w_lat = wsym[0][n_pe:].astype(np.float64) * wsteps[0]
        biases[0] = biases[0] + np.array([math.fsum(latent * w_lat[:, j]) for j in range(w_lat.shape[1])])
        wsym[0] = wsym[0][:n_pe]
        plan[0] = (plan[0][0], n_pe, plan[0][2])
    return ExactNerf(plan, wsym, wsteps, biases, n_freq, frac_bits, clip)


def load_field(reader: container.VxfReader) -> tuple[CryoPEField | None, FieldLayout]:
    """The :class:`CryoPEField` (None for a constant volume) and layout of a cryo-pe file."""
    m = reader.header.get("method", {})
    try:
        layout = FieldLayout.from_dict(m["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"corrupt cryo-pe header ({exc})", reader.path) from None
    if m.get("constant"):
        return None, layout
    try:
        conf = dict(m["config"])
        n_freq, latent_dim, fold = int(conf["frequencies"]), int(conf["latent_dim"]), bool(conf["fold_latent"])
        widths = [int(w) for w in m["widths"]]
        res = [int(r) for r in m["residual"]]
        shape = layout.coord_shape
        if len(shape) != 3 or layout.n_out != 1:
            raise ValueError("not a 3-D map")
        mask = decode_occupancy(reader.section("occupancy"), str(m["occupancy_coder"]), shape)
        if int(np.count_nonzero(mask)) != int(m["occupied"]):
            raise ValueError("occupancy map does not match the header")
        n_pe = encoding_size(3, n_freq)
        stored_in = n_pe if fold else n_pe + latent_dim
        plan = layer_plan(stored_in, widths, res)
        counts = ([] if fold or latent_dim == 0 else [latent_dim]) + [n for _, i, o in plan for n in (i * o, o)]
        rows = tables.unpack(reader.section("tables"))["codes"]
        if len(rows) != len(counts):
            raise ValueError("weight tables do not match the network")
        codes = [replace(weight_coding.TensorCode.from_row(r), count=n) for r, n in zip(rows, counts, strict=True)]
        syms = weight_coding.decode_symbols(reader.section("weights"), codes, limit=reader.alloc_limit)
        pos = 0
        latent = None
        if not fold and latent_dim:
            latent = syms[0].astype(np.float64) * codes[0].step
            pos = 1
        net = exact_network(plan, syms, codes, pos, latent, n_pe, n_freq, int(m["frac_bits"]), float(m["clip"]))
        y_range = (float(m["y_range"][0]), float(m["y_range"][1]))
        fld = CryoPEField(mask, net, layout, float(m["fill"]), float(m["peak"]), y_range)
    except FormatError as exc:
        raise FormatError(exc.message, reader.path) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FormatError(f"corrupt cryo-pe model ({exc})", reader.path) from None
    return fld, layout


def decode_cryo_pe(reader: container.VxfReader) -> Volume:
    """Decode a whole cryo-pe ``.vxf`` to a Volume (original dtype and header)."""
    return decode_whole(reader, load_field)
