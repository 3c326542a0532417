"""The hybrid method (INIF, paper 001): a classic codec spends most of the bytes, a small
neural model corrects its residual, and each block keeps whichever is better.

``--method hybrid[:PRIOR]`` with PRIOR one of sperr (default), sz3, hevc, jpeg2k, zfp,
jpegxl. Residual models (``--set residual=...``):

* ``filter`` (default, voxfield): a prior-conditioned network, ``out = prior + net(prior)``
  (:mod:`voxfield.compress.hybrid_filter`), a few hundred weights;
* ``field`` (INIF's design): a coordinate network (``sci`` or ``siren``) fitted to the
  residual ``x - prior`` with ``fraction`` of the budget (INIF: 10 %);
* ``none``: the prior alone (in a hybrid file).

Encoding makes the candidates the settings allow — always including *prior alone at the
whole budget*, which is the prior codec's own ``.vxf`` file, byte for byte what
``--codec PRIOR`` writes for the same target — and keeps the one with the best whole-volume score (``selection``: psnr,
ssim or segmentation), so a hybrid file is never worse than its prior at the same size,
by that score (PSNR: compared at the prior file's size, see :class:`RateModel`). Within a
candidate, each block (``block`` voxels per edge, by default about 4096 voxels) keeps the prior
alone or prior + residual, whichever scores better there (one bit per block, stored).

File: header ``method`` = {name "hybrid", prior codec configuration, residual kind and
its parameters, block flags layout}; sections ``prior`` (the codec's payload) and either
``filter`` (binary: per-item normalisation, weight code table, flags, weight stream; see
:func:`voxfield.compress.hybrid_filter.pack_section`) or ``field.tables`` +
``field.weights`` + ``flags``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from voxfield import __version__
from voxfield.codecs.base import Target, restore_dtype
from voxfield.codecs.registry import CODECS, available_codecs, get_codec
from voxfield.compress import container, hybrid_filter
from voxfield.compress.block_flags import block_sums as _block_sums
from voxfield.compress.block_flags import expand_flags as _expand_flags
from voxfield.compress.block_flags import flag_grid
from voxfield.compress.block_flags import pack_flags as _pack_flags
from voxfield.compress.block_flags import unpack_flags as _unpack_flags
from voxfield.compress.classic import compress_volume, volume_header
from voxfield.compress.defaults import default_target

# The method's names and choices live in a module without torch (the command line lists them).
from voxfield.compress.hybrid_names import (  # noqa: F401 - re-exported names of the method
    METHOD,
    PRIOR_NEEDS,
    PRIORS,
    RESIDUALS,
    SELECTIONS,
    parse_method,
)
from voxfield.compress.learned import stage as learned_stage
from voxfield.compress.rate import SizeGoal, land_file
from voxfield.errors import FormatError, OptionError, TargetNotMet
from voxfield.io.validate import check_array
from voxfield.io.volume import Volume


@dataclass(frozen=True)
class HybridConfig:
    """Settings of the hybrid method (``--set key=value``)."""

    prior: str = "sperr"
    residual: str = "filter"
    selection: str = "psnr"
    block: int = 0  # edge of the selection blocks along the convolved axes (0: ~4096 voxels a block)
    channels: int = 0  # filter width (0: by the budget, 2 or 4; 4 is 241 weights in 3-D)
    kernel: int = 3
    steps: int = 1000
    time_budget: float | None = 60.0  # seconds for one filter fit (None: all steps)
    fraction: float = 0.1  # residual="field": share of the budget for the field (INIF: 0.1)
    field_method: str = "sci"
    field_time_budget: float | None = 60.0
    guide: str | None = None
    guide_weight: float = 0.3
    guide_threshold: float | None = None
    learned: str = "auto"  # learned prior stage: auto (each shipped domain, kept where it pays), none, or a domain
    filter_base: str = "both"  # with the learned prior on: fit the filter on the prior, the learned output, or both
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.prior not in PRIORS:
            raise OptionError(f"unknown hybrid prior {self.prior!r} (known: {', '.join(PRIORS)})")
        if self.residual not in RESIDUALS:
            raise OptionError(f"residual must be one of {', '.join(RESIDUALS)}, got {self.residual!r}")
        if self.selection not in SELECTIONS:
            raise OptionError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.block != 0 and self.block < 2:
            raise OptionError("block must be >= 2 voxels (or 0 for automatic)")
        if not 0 <= self.channels <= 64:
            raise OptionError("channels must be in [1, 64] (or 0 for automatic)")
        if self.kernel not in (1, 3, 5):
            raise OptionError("kernel must be 1, 3 or 5")
        if self.steps < 1:
            raise OptionError("steps must be >= 1")
        if not 0 < self.fraction < 1:
            raise OptionError("fraction must be in (0, 1)")
        if self.field_method not in ("sci", "siren"):
            raise OptionError("field_method must be sci or siren")
        if self.guide is not None and self.guide not in ("segmentation", "ssim"):
            raise OptionError(f"unknown guide {self.guide!r} (segmentation, ssim)")
        if self.guide is not None and self.residual != "filter":
            raise OptionError("guidance in the hybrid method works with residual=filter")
        if self.guide_weight <= 0:
            raise OptionError("guide_weight must be > 0")
        learned_stage.check_choice(self.learned)
        if self.filter_base not in ("both", "prior", "learned"):
            raise OptionError(f"filter_base must be both, prior or learned, got {self.filter_base!r}")

    @classmethod
    def make(cls, prior: str | None = None, **settings: Any) -> HybridConfig:
        bad = set(settings) - set(asdict(cls()))
        if bad:
            raise OptionError(f"unknown option(s) for hybrid: {', '.join(sorted(bad))}")
        for key in ("residual", "learned"):  # ``--set residual=none`` arrives as None
            if key in settings and settings[key] is None:
                settings[key] = "none"
        cfg = cls(**settings) if prior is None else cls(**{**settings, "prior": prior})
        cfg.validate()
        return cfg


#: Automatic block edge: about this many voxels a block (16 in 3-D, 64 in 2-D).
AUTO_BLOCK_VOXELS = 4096
#: Automatic filter widths, and the share of the prior's payload the widest one may take.
FILTER_WIDTHS = (2, 4)
FILTER_SHARE = 0.08
#: No filter candidate when the narrowest filter and its flags would take more than this
#: share of the payload (the prior alone is kept).
MAX_RESIDUAL_SHARE = 0.2
#: Rate exponent a of ``mse ~ bytes**-a`` used when the two prior encodes do not give one
#: (0.66 is 2 dB per doubling of the size).
DEFAULT_RATE_EXPONENT = 0.66


def auto_block(dims: int) -> int:
    """Block edge of about :data:`AUTO_BLOCK_VOXELS` voxels in ``dims`` dimensions."""
    return max(2, int(round(AUTO_BLOCK_VOXELS ** (1.0 / max(dims, 1)))))


def auto_width(dims: int, kernel: int, payload_bytes: float) -> int:
    """The widest filter of :data:`FILTER_WIDTHS` whose weights (about a byte each) fit in
    :data:`FILTER_SHARE` of the payload; the narrowest if none does."""
    fits = [c for c in FILTER_WIDTHS if hybrid_filter.param_count(dims, c, kernel) <= FILTER_SHARE * payload_bytes]
    return max(fits) if fits else FILTER_WIDTHS[0]


@dataclass
class RateModel:
    """``mse ~ bytes**-a`` near the target, measured from the prior codec's encodes at two
    sizes; prices extra bytes so candidates of slightly different size compare at the same
    size (the way the benchmark compares them)."""

    points: list[tuple[float, float]] = field(default_factory=list)

    def add(self, nbytes: float, mse: float) -> None:
        if nbytes > 0 and mse > 0:
            self.points.append((float(nbytes), float(mse)))

    def exponent(self) -> float:
        if len(self.points) < 2:
            return DEFAULT_RATE_EXPONENT
        (b0, m0), (b1, m1) = min(self.points), max(self.points)
        if b1 / b0 < 1.01:
            return DEFAULT_RATE_EXPONENT
        return float(np.clip(np.log(m0 / m1) / np.log(b1 / b0), 0.0, 10.0))

    def at_base(self, mse: float, base_bytes: float, extra_bytes: float) -> float:
        """The MSE a candidate with ``extra_bytes`` more than the base would have at the
        base's size. Conservative: bytes over the base are charged, bytes under it earn
        nothing (a smaller file must win on its own error), so the choice never rests on a
        rate estimate in the candidate's favour."""
        scale = max(base_bytes + max(extra_bytes, 0.0), 1.0) / max(base_bytes, 1.0)
        return float(mse * scale ** self.exponent())


def require_prior(name: str) -> None:
    """A clear error when the prior codec's backend is missing, naming what it needs and
    the priors that would work here."""
    cls = CODECS.get(name)
    if cls is None or not cls.available():
        usable = [p for p in PRIORS if p in available_codecs()]
        fallback = f"use --method hybrid:{usable[0]}" if usable else "no prior codec is available here"
        raise OptionError(f"hybrid prior {name!r} is unavailable on this machine (needs "
                          f"{PRIOR_NEEDS.get(name, name)}); {fallback}")


@dataclass
class HybridReport:
    """What the hybrid encoder chose and measured (for the CLI and benchmarks)."""

    prior: str = ""
    chosen: str = ""
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)
    prior_bytes: int = 0
    residual_bytes: int = 0
    blocks_on: int = 0
    blocks: int = 0
    filter_channels: int = 0
    rate_exponent: float = 0.0
    seconds: float = 0.0
    prior_seconds: float = 0.0
    residual_seconds: float = 0.0
    learned: learned_stage.StageReport | None = None


# ---------------------------------------------------------------------------- scores
def _score(kind: str, x: np.ndarray, y: np.ndarray, ref: Any) -> float:
    """Higher is better."""
    if kind == "psnr":
        return -float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    if kind == "ssim":
        from voxfield.metrics import ssim

        return float(ssim(x, y))
    thr, mask = ref
    return -float(np.count_nonzero((y > thr) != mask))


def _block_errors(kind: str, x: np.ndarray, y: np.ndarray, plan: hybrid_filter.ConvPlan, block: int,
                  ref: Any) -> np.ndarray:
    """Per-block badness (lower is better) of ``y`` against ``x`` in the conv view:
    squared error, 1 - local SSIM, or mis-segmented voxels (ties broken by squared error)."""
    xv, yv = plan.forward(x).astype(np.float64), plan.forward(y).astype(np.float64)
    if kind == "ssim":
        from skimage.metrics import structural_similarity

        rng = float(x.max()) - float(x.min()) or 1.0
        bad = np.empty_like(xv)
        for i in range(xv.shape[0]):
            win = 7 if min(xv.shape[1:]) >= 7 else (min(xv.shape[1:]) // 2) * 2 + 1
            if win < 3:
                bad[i] = (xv[i] - yv[i]) ** 2
                continue
            _, smap = structural_similarity(xv[i], yv[i], data_range=rng, full=True, win_size=win)
            bad[i] = 1.0 - smap
    elif kind == "segmentation":
        thr, mask = ref
        mv = plan.forward(mask)
        bad = ((yv > thr) != mv).astype(np.float64) + 1e-9 * (xv - yv) ** 2
    else:
        bad = (xv - yv) ** 2
    return _block_sums(bad, block)


# ---------------------------------------------------------------------------- encode
def compress_hybrid(vol: Volume, cfg: HybridConfig, target: Target | None = None, *,
                    progress: Callable[[str, float], None] | None = None, report: HybridReport | None = None,
                    guide_mask: np.ndarray | None = None) -> bytes:
    """Compress ``vol`` with the hybrid method at a ratio or size target (default 64x);
    returns the ``.vxf`` bytes."""
    cfg.validate()
    require_prior(cfg.prior)
    check_array(vol.data, vol.meta.get("source"))
    t_start = time.perf_counter()
    rep = report or HybridReport()
    rep.prior = cfg.prior
    target = target or default_target()
    if target.kind not in ("ratio", "bytes"):
        raise OptionError(f"the hybrid method aims for a ratio or a size, not {target.kind} "
                          "(an error bound goes with --max-error)")
    x = np.ascontiguousarray(vol.data)
    size_goal = SizeGoal.of(target, x.nbytes, METHOD)
    goal, tol = size_goal.goal, size_goal.tol
    codec = get_codec(cfg.prior)
    head_base = {"voxfield": __version__, "volume": volume_header(vol)}
    plan = hybrid_filter.conv_view(x.shape, vol.axes)
    ref = _selection_reference(cfg, x, guide_mask)

    def encode_prior(nbytes: float) -> tuple[bytes, np.ndarray]:
        t0 = time.perf_counter()
        rt = min(0.5, 0.8 * tol / max(nbytes, 1.0))
        try:
            payload = codec.encode(x, Target.nbytes(nbytes, rtol=rt))
        except TargetNotMet as exc:
            if exc.best is None:
                raise
            payload = exc.best
        dec = codec.decode(payload)
        rep.prior_seconds += time.perf_counter() - t0
        return payload, dec

    def assemble(method: dict[str, Any], sections: dict[str, bytes]) -> bytes:
        return container.dumps({**head_base, "method": method}, sections)

    def method_head(residual: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {"name": METHOD, "prior": codec.get_config(), "residual": residual,
                "selection": cfg.selection, **extra}

    candidates: dict[str, bytes] = {}
    # --- prior alone, whole budget
    over = container.overhead({**head_base, "method": method_head("none", {})}, ["prior"])
    if goal - over < 64:
        raise TargetNotMet(f"ratio {x.nbytes / goal:.4g} is out of reach for the hybrid method: the file may hold "
                           f"{goal:.0f} bytes and the container takes {over}")
    # prior alone: the prior codec's own file, byte for byte what ``--codec PRIOR`` writes
    # for this target, so a hybrid that keeps the prior is exactly that codec's file
    try:
        candidates["prior"] = compress_volume(vol, codec, target)
    except TargetNotMet as exc:
        if exc.best is not None:
            candidates["prior"] = exc.best
        else:
            payload, _ = encode_prior(goal - over)
            candidates["prior"] = assemble(method_head("none", {}), {"prior": payload})
    if progress:
        progress("prior", 1.0)
    rate = RateModel()
    base_len = len(candidates["prior"])
    base_payload = _payload_size(candidates["prior"])
    base_mse = float(np.mean((x.astype(np.float64) - _decode_candidate(candidates["prior"]).astype(np.float64)) ** 2))
    rate.add(base_payload, base_mse)
    stage = None
    if cfg.learned != "none" and cfg.selection == "psnr":
        stage = _learned_stage(x, cfg, plan, rate, rep)
        blob = _learned_candidate(vol, plan, size_goal, encode_prior, assemble, method_head, stage)
        if blob is not None:
            candidates["prior+learned"] = blob
        else:
            stage = None
        if progress:
            progress("learned prior", 1.0)
    if cfg.residual == "filter":
        # with the learned prior on, the filter is fitted twice, on the prior decode and on the
        # learned output, each in half the time (neither stack wins everywhere: measured in
        # benchmarks/results/auto/learned_split.md); the selection below keeps the better file
        bases = [("prior+filter", None), ("prior+learned+filter", stage)] if stage is not None else [("prior+filter", None)]
        if stage is not None and cfg.filter_base != "both":
            bases = [b for b in bases if (b[1] is None) == (cfg.filter_base == "prior")]
        fit_cfg = cfg if len(bases) == 1 or cfg.time_budget is None else replace(cfg, time_budget=cfg.time_budget / 2)
        for name, st in bases:
            blob = _filter_candidate(x, vol, fit_cfg, plan, size_goal, encode_prior, assemble, method_head, ref,
                                     progress, rep, rate, st)
            if blob is not None:
                candidates[name] = blob
    elif cfg.residual == "field":
        blob = _field_candidate(x, vol, cfg, goal, encode_prior, assemble, method_head, plan, ref, progress, rep)
        if blob is not None:
            candidates["prior+field"] = blob
    # --- keep the best by the selection score (PSNR: at the prior file's size, priced by
    # the prior codec's own rate, so a candidate a few bytes larger does not win by them)
    rep.rate_exponent = rate.exponent()
    best_name, best_score = "", -np.inf
    for name, blob in candidates.items():
        y = _decode_candidate(blob)
        mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
        if cfg.selection == "psnr":
            s = -rate.at_base(mse, base_payload, len(blob) - base_len)
        else:
            s = _score(cfg.selection, x, y, ref)
        rep.candidates[name] = {"bytes": len(blob), "score": s, "mse": mse}
        if s > best_score:
            best_name, best_score = name, s
    rep.chosen = best_name
    blob = candidates[best_name]
    with container.VxfReader(blob) as r:
        prior_section = "prior" if "prior" in r.section_names else "payload"
        rep.prior_bytes = r.section_info(prior_section).size
        rep.residual_bytes = sum(r.section_info(n).size for n in r.section_names if n != prior_section)
        fl = r.header["method"].get("flags")
        if fl:
            f = _candidate_flags(r)
            rep.blocks, rep.blocks_on = int(f.size), int(f.sum())
    rep.seconds = time.perf_counter() - t_start
    return blob


def _learned_stage(x: np.ndarray, cfg: HybridConfig, plan: hybrid_filter.ConvPlan, rate: RateModel,
                   rep: HybridReport) -> learned_stage.StageEncoder:
    """The learned-prior stage of this encode (block errors in squared error of the
    original dtype, side bytes priced by ``rate``)."""
    dims = plan.dims
    edge = cfg.block or auto_block(dims)

    def errors(y_v: np.ndarray) -> np.ndarray:
        y = restore_dtype(plan.inverse(y_v), x.dtype)
        return _block_errors("psnr", x, y, plan, edge, None)

    rep.learned = learned_stage.StageReport()
    return learned_stage.StageEncoder(plan.forward(x), plan, cfg.prior, cfg.learned, edge, errors,
                                      lambda mse, pb, side: rate.at_base(mse, pb, side), rep.learned)


def _learned_side(plan: hybrid_filter.ConvPlan, stage: learned_stage.StageEncoder) -> tuple[dict[str, Any], int]:
    """An upper estimate of the stage's header entry and section bytes."""
    grid = flag_grid(plan, stage.block)
    meta = {"domain": "microscopy", "weights": "microscopy_v1.safetensors", "family": stage.family, "adapt": False,
            "width": 16, "flags": {"shape": list(grid), "block": stage.block}}
    return meta, 1 + 2 * 17 + 16 + int(np.prod(grid)) // 8


def _learned_candidate(vol: Volume, plan: hybrid_filter.ConvPlan, size_goal: SizeGoal,
                       encode_prior: Callable[[float], tuple[bytes, np.ndarray]], assemble: Callable[..., bytes],
                       method_head: Callable[..., dict[str, Any]], stage: learned_stage.StageEncoder) -> bytes | None:
    """Prior + learned stage (no residual), landed on the goal; None when the stage is off."""
    if stage.off:
        return None
    meta, side = _learned_side(plan, stage)
    over = container.overhead({"voxfield": __version__, "volume": volume_header(vol),
                               "method": method_head("none", {"learned": meta})}, ["prior", "learned"])
    room = size_goal.room(over)
    if side > MAX_RESIDUAL_SHARE * room:
        return None  # its flags would eat too much of a tiny budget
    payload, dec = encode_prior(room - side)
    if stage.run(plan.forward(dec), payload) is None:
        return None

    def make(state: tuple[bytes, np.ndarray]) -> tuple[bytes, int]:
        prior_payload, prior_dec = state
        res = stage.run(plan.forward(prior_dec), prior_payload)
        assert res is not None  # decided on the first prior
        _, section, lmeta = res
        blob = assemble(method_head("none", {"learned": lmeta}), {"prior": prior_payload, "learned": section})
        return blob, len(prior_payload)

    blob, _ = land_file(make, encode_prior, (payload, dec), size_goal, tries=3)
    return blob if size_goal.hit(len(blob)) else None


def _candidate_flags(reader: container.VxfReader) -> np.ndarray:
    """The block flags of a hybrid file (inside the filter section, or their own section)."""
    m = reader.header["method"]
    shape = tuple(int(n) for n in m["flags"]["shape"])
    if m.get("residual") == "filter":
        f = m["filter"]
        n_items = shape[0]
        _, _, blob, _ = hybrid_filter.split_section(reader.section("filter"), n_items, int(f["dims"]),
                                                    int(f["channels"]), int(f["kernel"]))
        return _unpack_flags(blob, shape)
    return _unpack_flags(reader.section("flags"), shape)


def _payload_size(blob: bytes) -> int:
    """Bytes of the prior codec's payload in a classic or hybrid file."""
    with container.VxfReader(blob) as r:
        return r.section_info("prior" if "prior" in r.section_names else "payload").size


def _decode_candidate(blob: bytes) -> np.ndarray:
    """Decoded array of a candidate: a hybrid file or the prior codec's own file."""
    with container.VxfReader(blob) as reader:
        if reader.header.get("method", {}).get("name") == METHOD:
            return decode_hybrid_array(reader)
    from voxfield.compress.api import decompress

    return decompress(blob).data


def _selection_reference(cfg: HybridConfig, x: np.ndarray, mask: np.ndarray | None) -> Any:
    if cfg.selection != "segmentation" and cfg.guide != "segmentation":
        return None
    from skimage.filters import threshold_otsu

    thr = cfg.guide_threshold if cfg.guide_threshold is not None else float(threshold_otsu(x.astype(np.float64)))
    ref = x > thr if mask is None else mask.astype(bool)
    if ref.shape != x.shape:
        raise OptionError(f"the guide mask has shape {ref.shape}, the data {x.shape}")
    if not ref.any() or ref.all():
        raise OptionError("segmentation guidance needs data with both foreground and background at the threshold "
                          f"{thr:g}")
    return thr, ref


def _guide_loss(cfg: HybridConfig, plan: hybrid_filter.ConvPlan, x: np.ndarray, ref: Any
                ) -> Callable[[torch.Tensor, tuple[Any, ...]], torch.Tensor] | None:
    """The guidance term for the filter fit, on crops of the corrected output (data units),
    scaled to the fit's normalised units (divided by the data's variance) so that
    ``guide_weight`` means the same as for the neural methods."""
    if cfg.guide is None:
        return None
    rng = float(x.max()) - float(x.min()) or 1.0
    s_ref = float(x.std()) or 1.0
    if cfg.guide == "segmentation":
        from voxfield.compress.modes.guidance import DEFAULT_TAU_FRACTION, segmentation_guidance_loss

        thr, mask = ref
        mask_t = torch.as_tensor(plan.forward(mask.astype(np.float32)))
        tau = DEFAULT_TAU_FRACTION * rng / s_ref

        def seg(out: torch.Tensor, crop: tuple[Any, ...]) -> torch.Tensor:
            items, *sl = crop
            m = mask_t[(torch.as_tensor(items), *sl)][:, None]
            return segmentation_guidance_loss((out - thr) / s_ref, m, 0.0, tau)

        return seg
    from voxfield.compress.modes.guidance import ms_ssim_loss, ssim_guidance_scale

    xt = torch.as_tensor(plan.forward(x.astype(np.float32)))
    scale = ssim_guidance_scale(rng) / s_ref**2

    def structural(out: torch.Tensor, crop: tuple[Any, ...]) -> torch.Tensor:
        items, *sl = crop
        return scale * ms_ssim_loss(out, xt[(torch.as_tensor(items), *sl)][:, None], rng)

    return structural


def _filter_candidate(x: np.ndarray, vol: Volume, cfg: HybridConfig, plan: hybrid_filter.ConvPlan,
                      size_goal: SizeGoal, encode_prior: Callable[[float], tuple[bytes, np.ndarray]],
                      assemble: Callable[..., bytes], method_head: Callable[..., dict[str, Any]], ref: Any,
                      progress: Callable[[str, float], None] | None, rep: HybridReport,
                      rate: RateModel, stage: learned_stage.StageEncoder | None = None) -> bytes | None:
    from voxfield.compress.neural import resolve_device

    dims = plan.dims
    edge = cfg.block or auto_block(dims)
    grid = flag_grid(plan, edge)
    est_flags = 16 + int(np.prod(grid)) // 8
    width = cfg.channels or 16  # a two-digit width for estimating the header size; chosen below

    lmeta_est, lside = _learned_side(plan, stage) if stage is not None else (None, 0)

    def header(channels: int, flags_shape: list[int], block: int, lmeta: dict[str, Any] | None) -> dict[str, Any]:
        meta = {"dims": dims, "channels": channels, "kernel": cfg.kernel}
        extra = {"learned": lmeta} if lmeta is not None else {}
        return method_head("filter", {**extra, "filter": meta, "flags": {"shape": flags_shape, "block": block}})

    over = container.overhead({"voxfield": __version__, "volume": volume_header(vol),
                               "method": header(width, list(grid), edge, lmeta_est)},
                              ["prior", "filter"] + (["learned"] if stage is not None else []))
    room = size_goal.room(over)
    width = cfg.channels or auto_width(dims, cfg.kernel, room)
    n_params = hybrid_filter.param_count(dims, width, cfg.kernel)
    residual_bytes = n_params + est_flags + hybrid_filter.section_overhead(plan.batch, dims, width, cfg.kernel)
    if residual_bytes + lside > MAX_RESIDUAL_SHARE * room:
        return None  # the filter would eat too much of a tiny budget
    payload, dec = encode_prior(room - residual_bytes - lside)
    rate.add(len(payload), float(np.mean((x.astype(np.float64) - dec.astype(np.float64)) ** 2)))

    def base_of(prior_payload: bytes, prior_dec: np.ndarray) -> tuple[np.ndarray, bytes | None, dict[str, Any] | None]:
        """The filter's input (conv view): the prior decode, or the learned stage's output."""
        if stage is None:
            return plan.forward(prior_dec), None, None
        res = stage.run(plan.forward(prior_dec), prior_payload)
        assert res is not None  # the stage was on for the first prior
        return res

    prior_v, _, _ = base_of(payload, dec)
    norm = hybrid_filter.normalisation(prior_v)
    t0 = time.perf_counter()
    weights = hybrid_filter.fit(
        prior_v, plan.forward(x), norm, channels=width, kernel=cfg.kernel, steps=cfg.steps,
        time_budget=cfg.time_budget, seed=cfg.seed, guide_loss=_guide_loss(cfg, plan, x, ref),
        guide_weight=cfg.guide_weight, device=resolve_device(cfg.device),
        crop_voxels=hybrid_filter.crop_voxels_for(width),
        progress=(lambda f: progress("residual filter", f)) if progress else None)
    rep.residual_seconds += time.perf_counter() - t0
    rep.filter_channels = width
    wpay, rows = hybrid_filter.encode_weights(weights)
    qweights = hybrid_filter.decode_weights(wpay, rows, dims, width, cfg.kernel)
    chosen: dict[str, int] = {}

    def make(state: tuple[bytes, np.ndarray]) -> tuple[bytes, int]:
        prior_payload, prior_dec = state
        pv, lsection, lmeta = base_of(prior_payload, prior_dec)
        base = plan.inverse(pv)
        nm = hybrid_filter.normalisation(pv)
        corrected = plan.inverse(hybrid_filter.run(pv, qweights, nm, cfg.kernel))
        if "block" not in chosen:  # the flag layout is chosen once, on the first prior
            chosen["block"] = _flag_layout(cfg, x, base, corrected, plan, ref, edge, rate, len(prior_payload))
        flags = _choose_flags(cfg, x, restore_dtype(base, x.dtype), corrected, plan, ref, chosen["block"])
        section = hybrid_filter.pack_section(nm, rows, _pack_flags(flags), wpay)
        sections = {"prior": prior_payload, "filter": section}
        if lsection is not None:
            sections["learned"] = lsection
        blob = assemble(header(width, list(flags.shape), chosen["block"], lmeta), sections)
        return blob, len(prior_payload)

    # land the file: the prior is re-coded for the room the measured side bytes leave
    blob, _ = land_file(make, encode_prior, (payload, dec), size_goal, tries=3)
    return blob if size_goal.hit(len(blob)) else None


def _flag_layout(cfg: HybridConfig, x: np.ndarray, prior: np.ndarray, corrected: np.ndarray,
                 plan: hybrid_filter.ConvPlan, ref: Any, edge: int, rate: RateModel, prior_bytes: int) -> int:
    """Block edge for the flags: ``edge``, or (PSNR selection) one flag per image/channel
    when the per-block flags cost more bytes than they gain, priced by ``rate``."""
    whole = max(plan.spatial_shape)
    if cfg.selection != "psnr" or whole <= edge:
        return edge
    best, best_mse = edge, np.inf
    n = x.size
    cast = restore_dtype(corrected, x.dtype)
    for block in (edge, whole):
        e_prior = _block_errors("psnr", x, prior, plan, block, ref)
        e_corr = _block_errors("psnr", x, cast, plan, block, ref)
        flags = e_corr < e_prior  # what _choose_flags picks for PSNR
        mse = float(np.where(flags, e_corr, e_prior).sum()) / n
        cost = rate.at_base(mse, prior_bytes, len(_pack_flags(flags)))
        if cost < best_mse:
            best, best_mse = block, cost
    return best


def _choose_flags(cfg: HybridConfig, x: np.ndarray, prior: np.ndarray, corrected: np.ndarray,
                  plan: hybrid_filter.ConvPlan, ref: Any, block: int) -> np.ndarray:
    """One bit per block: the residual is kept where it scores better there."""
    kind = cfg.selection
    cast = restore_dtype(corrected, x.dtype)
    e_prior = _block_errors(kind, x, prior, plan, block, ref)
    e_corr = _block_errors(kind, x, cast, plan, block, ref)
    return e_corr < e_prior


def _field_candidate(x: np.ndarray, vol: Volume, cfg: HybridConfig, goal: float,
                     encode_prior: Callable[[float], tuple[bytes, np.ndarray]], assemble: Callable[..., bytes],
                     method_head: Callable[..., dict[str, Any]], plan: hybrid_filter.ConvPlan, ref: Any,
                     progress: Callable[[str, float], None] | None, rep: HybridReport) -> bytes | None:
    from voxfield.compress import neural

    edge = cfg.block or auto_block(plan.dims)
    grid = flag_grid(plan, edge)
    field_goal = cfg.fraction * goal
    head_over = 600 + int(np.prod(grid)) // 8
    payload, dec = encode_prior(goal - field_goal - head_over)
    resid = (x.astype(np.float64) - dec.astype(np.float64)).astype(np.float32)
    rvol = Volume(resid, vol.axes, vol.spacing, vol.unit, vol.origin, {})
    ncfg = neural.NeuralConfig.preset(cfg.field_method, seed=cfg.seed, device=cfg.device,
                                      time_budget=cfg.field_time_budget)
    t0 = time.perf_counter()
    try:
        fblob = neural.compress_neural(rvol, ncfg, Target.nbytes(field_goal, rtol=0.1),
                                       progress=progress)
    except TargetNotMet:
        return None
    finally:
        rep.residual_seconds += time.perf_counter() - t0
    with container.VxfReader(fblob) as fr:
        fmethod = fr.header["method"]
        fsections = {f"field.{n}": fr.section(n) for n in fr.section_names}
        fvolume = fr.header["volume"]
    corrected = dec.astype(np.float64) + _eval_field(fmethod, fsections, fvolume)
    flags = _choose_flags(cfg, x, dec, corrected, plan, ref, edge)
    head = method_head("field", {"field": {"method": fmethod, "volume": fvolume},
                                 "flags": {"shape": list(flags.shape), "block": edge}})
    blob = assemble(head, {"prior": payload, **fsections, "flags": _pack_flags(flags)})
    return blob


class _SubReader:
    """A reader-like view of the residual field's header and sections inside a hybrid file."""

    def __init__(self, method: dict[str, Any], volume: dict[str, Any], sections: Callable[[str], bytes],
                 path: Any = None) -> None:
        from voxfield.compress import schema

        self.header = {"method": method, "volume": volume}
        self._sections = sections
        self.path = path
        self.alloc_limit = schema.alloc_limit(schema.check_volume(volume, path, "method.field.volume"))

    def section(self, name: str) -> bytes:
        return self._sections(f"field.{name}")


def _eval_field(fmethod: dict[str, Any], fsections: dict[str, bytes] | Callable[[str], bytes],
                fvolume: dict[str, Any], path: Any = None) -> np.ndarray:
    from voxfield.compress import neural

    get = fsections.__getitem__ if isinstance(fsections, dict) else fsections
    vol = neural.decode_neural(_SubReader(fmethod, fvolume, get, path))  # type: ignore[arg-type]
    return vol.data.astype(np.float64)


# ---------------------------------------------------------------------------- decode
def decode_hybrid_array(source: bytes | container.VxfReader) -> np.ndarray:
    """The decoded array of a hybrid file (bytes or open reader)."""
    if isinstance(source, (bytes, bytearray)):
        with container.VxfReader(source) as reader:
            return decode_hybrid_array(reader)
    reader = source
    m = reader.header.get("method", {})
    desc = reader.header.get("volume", {})
    try:
        shape = tuple(int(n) for n in desc["shape"])
        dtype = np.dtype(desc["dtype"])
        axes = str(desc["axes"])
        codec = get_codec(m["prior"]["name"], **{k: v for k, v in m["prior"].items() if k != "name"})
    except (KeyError, TypeError, ValueError, OptionError) as exc:
        raise FormatError(f"corrupt hybrid header ({exc})", reader.path) from None
    prior = codec.decode(reader.section("prior"))
    if prior.shape != shape:
        raise FormatError("corrupt hybrid file (prior shape)", reader.path)
    kind = m.get("residual")
    plan = hybrid_filter.conv_view(shape, axes)
    if m.get("learned") is not None:
        prior = _learned_base(reader, m["learned"], prior, plan)
    if kind == "none":
        return restore_dtype(prior, dtype) if m.get("learned") is not None else prior
    try:
        fl = m["flags"]
        shape_f = tuple(int(n) for n in fl["shape"])
        block = int(fl["block"])
        if shape_f != flag_grid(plan, block):
            raise ValueError("flag grid does not match the volume")
        if kind == "filter":
            f = m["filter"]
            dims, ch, k = int(f["dims"]), int(f["channels"]), int(f["kernel"])
            norm, weights, fblob = hybrid_filter.unpack_section(reader.section("filter"), plan.batch, dims, ch, k)
            flags = _unpack_flags(fblob, shape_f)
            corrected_v = hybrid_filter.run(plan.forward(prior), weights, norm, k)
        elif kind == "field":
            flags = _unpack_flags(reader.section("flags"), shape_f)
            corrected = prior.astype(np.float64) + _eval_field(m["field"]["method"], reader.section,
                                                                m["field"]["volume"], reader.path)
            corrected_v = plan.forward(corrected)
        else:
            raise ValueError(f"unknown residual kind {kind!r}")
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise FormatError(f"corrupt hybrid file ({exc})", reader.path) from None
    on = _expand_flags(flags, plan.spatial_shape, block)
    out_v = np.where(on, corrected_v, plan.forward(prior).astype(np.float64))
    return restore_dtype(plan.inverse(out_v), dtype)


def _learned_base(reader: container.VxfReader, meta: Any, prior: np.ndarray, plan: hybrid_filter.ConvPlan
                  ) -> np.ndarray:
    """The learned stage's output (float32, the volume's shape) of a file that has one."""
    if not isinstance(meta, dict):
        raise FormatError("corrupt hybrid header (method.learned)", reader.path)
    base_v = learned_stage.decode_stage(plan.forward(prior), meta, reader.section(learned_stage.SECTION),
                                        reader.section_info("prior").size, plan, reader.path)
    return plan.inverse(base_v)


def decode_hybrid(reader: container.VxfReader) -> Volume:
    """Decode a hybrid ``.vxf`` (an open reader) to a Volume."""
    return Volume.from_description(reader.header["volume"], decode_hybrid_array(reader))


def describe_choice(rep: HybridReport) -> str:
    """One line for the command's summary."""
    parts = [f"hybrid:{rep.prior} -> {rep.chosen}", f"prior {rep.prior_bytes:,} B"]
    if rep.learned is not None:
        parts.append(learned_stage.describe(rep.learned))
    if rep.residual_bytes:
        parts.append(f"residual {rep.residual_bytes:,} B")
    if rep.blocks:
        parts.append(f"residual kept in {rep.blocks_on}/{rep.blocks} blocks")
    others = ", ".join(f"{k} {v['mse']:.4g}" for k, v in rep.candidates.items())
    parts.append(f"MSE of candidates: {others}")
    return ", ".join(parts)


class RegionDecoder:
    """Random access to a hybrid file: the prior is decoded once (classic payloads have no
    random access), the residual filter runs only on the requested box plus its halo, so
    the values equal those of the whole decode. Field residuals are decoded whole once."""

    def __init__(self, reader: container.VxfReader) -> None:
        m = reader.header.get("method", {})
        desc = reader.header["volume"]
        self.shape = tuple(int(n) for n in desc["shape"])
        self.dtype = np.dtype(desc["dtype"])
        self.axes = str(desc["axes"])
        self.kind = m.get("residual")
        self._full: np.ndarray | None = None
        if self.kind != "filter":
            self._full = decode_hybrid_array(reader)
            return
        try:
            codec = get_codec(m["prior"]["name"], **{k: v for k, v in m["prior"].items() if k != "name"})
            self.prior = codec.decode(reader.section("prior"))
            f = m["filter"]
            self.k = int(f["kernel"])
            self.plan = hybrid_filter.conv_view(self.shape, self.axes)
            if m.get("learned") is not None:
                if self.prior.shape != self.shape:
                    raise ValueError("prior does not match the volume")
                self.prior = _learned_base(reader, m["learned"], self.prior, self.plan)
            self.norm, self.weights, fblob = hybrid_filter.unpack_section(
                reader.section("filter"), self.plan.batch, int(f["dims"]), int(f["channels"]), self.k)
            self.block = int(m["flags"]["block"])
            self.flags = _unpack_flags(fblob, tuple(int(n) for n in m["flags"]["shape"]))
            if self.flags.shape != flag_grid(self.plan, self.block) or self.prior.shape != self.shape:
                raise ValueError("flags or prior do not match the volume")
        except (KeyError, TypeError, ValueError, OptionError) as exc:
            raise FormatError(f"corrupt hybrid file ({exc})", reader.path) from None

    def region(self, per_axis: list[np.ndarray]) -> np.ndarray:
        """Values at the outer product of sorted per-axis indices, original dtype."""
        if self._full is not None:
            return self._full[np.ix_(*per_axis)]
        plan = self.plan
        spatial_axes = plan.perm[plan.n_batch_axes:]
        h = hybrid_filter.halo(self.k)
        lo = [int(ix.min()) for ix in per_axis]
        hi = [int(ix.max()) + 1 for ix in per_axis]
        elo, ehi = list(lo), list(hi)
        for a in spatial_axes:
            elo[a], ehi[a] = max(0, lo[a] - h), min(self.shape[a], hi[a] + h)
        box = tuple(slice(a, b) for a, b in zip(elo, ehi, strict=True))
        crop = self.prior[box]
        cplan = hybrid_filter.conv_view(crop.shape, self.axes)
        # batch items of the crop -> batch items of the whole volume
        batch_axes = plan.perm[: plan.n_batch_axes]
        if batch_axes:
            grids = np.meshgrid(*[np.arange(elo[a], ehi[a]) for a in batch_axes], indexing="ij")
            items = np.ravel_multi_index(tuple(g.reshape(-1) for g in grids), tuple(self.shape[a] for a in batch_axes))
        else:
            items = np.zeros(1, np.int64)
        pv = cplan.forward(crop)
        corr = hybrid_filter.run(pv, self.weights, self.norm[items], self.k)
        block_ix = [np.arange(elo[a], ehi[a]) // self.block for a in spatial_axes]
        on = self.flags[np.ix_(items, *block_ix)]
        out = cplan.inverse(np.where(on, corr, pv.astype(np.float64)))
        sel = np.ix_(*[ix - e for ix, e in zip(per_axis, elo, strict=True)])
        return restore_dtype(out[sel], self.dtype)
