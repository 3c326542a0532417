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
by that score. Within a candidate, each block (``block`` voxels per edge) keeps the prior
alone or prior + residual, whichever scores better there (one bit per block, stored).

File: header ``method`` = {name "hybrid", prior codec configuration, residual kind and
its parameters, block flags layout}; sections ``prior`` (the codec's payload), ``flags``
and ``filter`` or ``field.tables`` + ``field.weights``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import zstandard

from voxfield import __version__
from voxfield.codecs._common import size_rtol
from voxfield.codecs.base import Target, restore_dtype
from voxfield.codecs.registry import CODECS, available_codecs, get_codec
from voxfield.compress import container, hybrid_filter
from voxfield.compress.classic import compress_volume, volume_header
from voxfield.errors import FormatError, OptionError, TargetNotMet
from voxfield.io.validate import check_array
from voxfield.io.volume import Volume

METHOD = "hybrid"
#: Prior codecs a hybrid can use, default first.
PRIORS = ("sperr", "sz3", "hevc", "jpeg2k", "zfp", "jpegxl")
RESIDUALS = ("filter", "field", "none")
SELECTIONS = ("psnr", "ssim", "segmentation")
#: What each prior needs on the machine.
PRIOR_NEEDS = {
    "sperr": "imagecodecs built with SPERR",
    "sz3": "imagecodecs built with SZ3",
    "zfp": "imagecodecs built with ZFP",
    "jpeg2k": "imagecodecs built with OpenJPEG",
    "jpegxl": "imagecodecs built with libjxl",
    "hevc": "the ffmpeg binary of imageio-ffmpeg (with libx265)",
}


@dataclass(frozen=True)
class HybridConfig:
    """Settings of the hybrid method (``--set key=value``)."""

    prior: str = "sperr"
    residual: str = "filter"
    selection: str = "psnr"
    block: int = 16  # edge of the selection blocks (voxels, along the convolved axes)
    channels: int = 4  # filter width (4: 241 weights in 3-D)
    kernel: int = 3
    steps: int = 1000
    time_budget: float | None = 60.0  # seconds for one filter fit (None: all steps)
    fraction: float = 0.1  # residual="field": share of the budget for the field (INIF: 0.1)
    field_method: str = "sci"
    field_time_budget: float | None = 60.0
    guide: str | None = None
    guide_weight: float = 0.3
    guide_threshold: float | None = None
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.prior not in PRIORS:
            raise OptionError(f"unknown hybrid prior {self.prior!r} (known: {', '.join(PRIORS)})")
        if self.residual not in RESIDUALS:
            raise OptionError(f"residual must be one of {', '.join(RESIDUALS)}, got {self.residual!r}")
        if self.selection not in SELECTIONS:
            raise OptionError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.block < 2:
            raise OptionError("block must be >= 2 voxels")
        if not 1 <= self.channels <= 64:
            raise OptionError("channels must be in [1, 64]")
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

    @classmethod
    def make(cls, prior: str | None = None, **settings: Any) -> HybridConfig:
        bad = set(settings) - set(asdict(cls()))
        if bad:
            raise OptionError(f"unknown option(s) for hybrid: {', '.join(sorted(bad))}")
        if settings.get("residual") is None and "residual" in settings:
            settings["residual"] = "none"
        cfg = cls(**settings) if prior is None else cls(**{**settings, "prior": prior})
        cfg.validate()
        return cfg


def parse_method(name: str) -> str | None:
    """``"hybrid"`` -> None (default prior), ``"hybrid:hevc"`` -> ``"hevc"``; anything
    else is not a hybrid method (raises)."""
    head, _, prior = name.partition(":")
    if head != METHOD:
        raise OptionError(f"not a hybrid method: {name!r}")
    if prior and prior not in PRIORS:
        raise OptionError(f"unknown hybrid prior {prior!r} (hybrid:{', hybrid:'.join(PRIORS)})")
    return prior or None


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
    seconds: float = 0.0
    prior_seconds: float = 0.0
    residual_seconds: float = 0.0


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


def _block_sums(a: np.ndarray, block: int) -> np.ndarray:
    """Sums over blocks of ``block`` voxels per spatial edge: shape (N, *n_blocks)."""
    out = a
    for ax in range(1, a.ndim):
        n = out.shape[ax]
        nb = -(-n // block)
        pad = nb * block - n
        if pad:
            widths = [(0, 0)] * out.ndim
            widths[ax] = (0, pad)
            out = np.pad(out, widths)
        shape = out.shape[:ax] + (nb, block) + out.shape[ax + 1:]
        out = out.reshape(shape).sum(axis=ax + 1)
    return out


def _expand_flags(flags: np.ndarray, spatial: tuple[int, ...], block: int) -> np.ndarray:
    out = flags
    for ax, n in enumerate(spatial, start=1):
        out = np.repeat(out, block, axis=ax)
        out = np.take(out, np.arange(n), axis=ax)
    return out


def _pack_flags(flags: np.ndarray) -> bytes:
    return zstandard.ZstdCompressor(level=19).compress(np.packbits(flags.reshape(-1).astype(bool)).tobytes())


def _unpack_flags(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    try:
        bits = np.unpackbits(np.frombuffer(zstandard.ZstdDecompressor().decompress(blob), dtype=np.uint8))
    except zstandard.ZstdError as exc:
        raise FormatError(f"corrupt hybrid block flags ({exc})") from None
    if bits.size < n:
        raise FormatError("corrupt hybrid block flags (too few)")
    return bits[:n].reshape(shape).astype(bool)


def flag_grid(plan: hybrid_filter.ConvPlan, block: int) -> tuple[int, ...]:
    return (plan.batch,) + tuple(-(-n // block) for n in plan.spatial_shape)


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
    target = target or Target.ratio(64.0, rtol=0.02)
    if target.kind not in ("ratio", "bytes"):
        raise OptionError(f"the hybrid method aims for a ratio or a size, not {target.kind} "
                          "(an error bound goes with --max-error)")
    x = np.ascontiguousarray(vol.data)
    goal = float(target.size_goal(x.nbytes))  # type: ignore[arg-type]
    tol = size_rtol(target) * goal
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
    if cfg.residual == "filter":
        blob = _filter_candidate(x, vol, cfg, plan, goal, tol, encode_prior, assemble, method_head, ref, progress, rep)
        if blob is not None:
            candidates["prior+filter"] = blob
    elif cfg.residual == "field":
        blob = _field_candidate(x, vol, cfg, goal, encode_prior, assemble, method_head, plan, ref, progress, rep)
        if blob is not None:
            candidates["prior+field"] = blob
    # --- keep the best by the selection score
    best_name, best_score = "", -np.inf
    for name, blob in candidates.items():
        y = _decode_candidate(blob)
        s = _score(cfg.selection, x, y, ref)
        mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
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
            f = _unpack_flags(r.section("flags"), tuple(fl["shape"]))
            rep.blocks, rep.blocks_on = int(f.size), int(f.sum())
    rep.seconds = time.perf_counter() - t_start
    return blob


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
        from voxfield.compress.guidance import DEFAULT_TAU_FRACTION, segmentation_guidance_loss

        thr, mask = ref
        mask_t = torch.as_tensor(plan.forward(mask.astype(np.float32)))
        tau = DEFAULT_TAU_FRACTION * rng / s_ref

        def seg(out: torch.Tensor, crop: tuple[Any, ...]) -> torch.Tensor:
            items, *sl = crop
            m = mask_t[(torch.as_tensor(items), *sl)][:, None]
            return segmentation_guidance_loss((out - thr) / s_ref, m, 0.0, tau)

        return seg
    from voxfield.compress.guidance import ms_ssim_loss, ssim_guidance_scale

    xt = torch.as_tensor(plan.forward(x.astype(np.float32)))
    scale = ssim_guidance_scale(rng) / s_ref**2

    def structural(out: torch.Tensor, crop: tuple[Any, ...]) -> torch.Tensor:
        items, *sl = crop
        return scale * ms_ssim_loss(out, xt[(torch.as_tensor(items), *sl)][:, None], rng)

    return structural


def _filter_candidate(x: np.ndarray, vol: Volume, cfg: HybridConfig, plan: hybrid_filter.ConvPlan, goal: float,
                      tol: float, encode_prior: Callable[[float], tuple[bytes, np.ndarray]],
                      assemble: Callable[..., bytes], method_head: Callable[..., dict[str, Any]], ref: Any,
                      progress: Callable[[str, float], None] | None, rep: HybridReport) -> bytes | None:
    from voxfield.compress.neural import resolve_device

    dims = plan.dims
    n_params = hybrid_filter.param_count(dims, cfg.channels, cfg.kernel)
    grid = flag_grid(plan, cfg.block)
    est_flags = 16 + int(np.prod(grid)) // 8
    dummy = {"dims": dims, "channels": cfg.channels, "kernel": cfg.kernel, "codes": [[0.123456789] * 5] * 6,
             "norm": [[1.2345678, 1.2345678]] * plan.batch}
    head = method_head("filter", {"filter": dummy, "flags": {"shape": list(grid), "block": cfg.block}})
    over = container.overhead({"voxfield": __version__, "volume": volume_header(vol), "method": head},
                              ["prior", "filter", "flags"])
    residual_bytes = n_params + est_flags
    budget = goal - over - residual_bytes
    if budget < 0.5 * goal:
        return None  # the filter would eat too much of a tiny budget
    payload, dec = encode_prior(budget)
    prior_v = plan.forward(dec)
    norm = hybrid_filter.normalisation(prior_v)
    t0 = time.perf_counter()
    weights = hybrid_filter.fit(
        prior_v, plan.forward(x), norm, channels=cfg.channels, kernel=cfg.kernel, steps=cfg.steps,
        time_budget=cfg.time_budget, seed=cfg.seed, guide_loss=_guide_loss(cfg, plan, x, ref),
        guide_weight=cfg.guide_weight, device=resolve_device(cfg.device),
        progress=(lambda f: progress("residual filter", f)) if progress else None)
    rep.residual_seconds += time.perf_counter() - t0
    wpay, rows = hybrid_filter.encode_weights(weights)
    qweights = hybrid_filter.decode_weights(wpay, rows, dims, cfg.channels, cfg.kernel)
    for _ in range(3):  # land the file: re-code the prior for the measured side bytes
        corrected = hybrid_filter.run(prior_v, qweights, norm, cfg.kernel)
        flags = _choose_flags(cfg, x, dec, plan.inverse(corrected), plan, ref)
        fpay = _pack_flags(flags)
        meta = {"dims": dims, "channels": cfg.channels, "kernel": cfg.kernel, "codes": rows,
                "norm": norm.tolist()}
        head = method_head("filter", {"filter": meta, "flags": {"shape": list(flags.shape), "block": cfg.block}})
        blob = assemble(head, {"prior": payload, "filter": wpay, "flags": fpay})
        if abs(len(blob) - goal) <= tol:
            return blob
        budget = len(payload) + (goal - len(blob))
        payload, dec = encode_prior(budget)
        prior_v = plan.forward(dec)
        norm = hybrid_filter.normalisation(prior_v)
    return blob if abs(len(blob) - goal) <= tol else None


def _choose_flags(cfg: HybridConfig, x: np.ndarray, prior: np.ndarray, corrected: np.ndarray,
                  plan: hybrid_filter.ConvPlan, ref: Any) -> np.ndarray:
    """One bit per block: the residual is kept where it scores better there."""
    kind = cfg.selection
    cast = restore_dtype(corrected, x.dtype)
    e_prior = _block_errors(kind, x, prior, plan, cfg.block, ref)
    e_corr = _block_errors(kind, x, cast, plan, cfg.block, ref)
    return e_corr < e_prior


def _field_candidate(x: np.ndarray, vol: Volume, cfg: HybridConfig, goal: float,
                     encode_prior: Callable[[float], tuple[bytes, np.ndarray]], assemble: Callable[..., bytes],
                     method_head: Callable[..., dict[str, Any]], plan: hybrid_filter.ConvPlan, ref: Any,
                     progress: Callable[[str, float], None] | None, rep: HybridReport) -> bytes | None:
    from voxfield.compress import neural

    grid = flag_grid(plan, cfg.block)
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
    flags = _choose_flags(cfg, x, dec, corrected, plan, ref)
    head = method_head("field", {"field": {"method": fmethod, "volume": fvolume},
                                 "flags": {"shape": list(flags.shape), "block": cfg.block}})
    blob = assemble(head, {"prior": payload, **fsections, "flags": _pack_flags(flags)})
    return blob


class _SubReader:
    """A reader-like view of the residual field's header and sections inside a hybrid file."""

    def __init__(self, method: dict[str, Any], volume: dict[str, Any], sections: Callable[[str], bytes],
                 path: Any = None) -> None:
        self.header = {"method": method, "volume": volume}
        self._sections = sections
        self.path = path

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
    if kind == "none":
        return prior
    plan = hybrid_filter.conv_view(shape, axes)
    try:
        fl = m["flags"]
        flags = _unpack_flags(reader.section("flags"), tuple(int(n) for n in fl["shape"]))
        block = int(fl["block"])
        if flags.shape != flag_grid(plan, block):
            raise ValueError("flag grid does not match the volume")
        if kind == "filter":
            f = m["filter"]
            dims, ch, k = int(f["dims"]), int(f["channels"]), int(f["kernel"])
            weights = hybrid_filter.decode_weights(reader.section("filter"), f["codes"], dims, ch, k)
            norm = np.asarray(f["norm"], dtype=np.float32)
            corrected_v = hybrid_filter.run(plan.forward(prior), weights, norm, k)
        elif kind == "field":
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


def decode_hybrid(reader: container.VxfReader) -> Volume:
    """Decode a hybrid ``.vxf`` (an open reader) to a Volume."""
    return Volume.from_description(reader.header["volume"], decode_hybrid_array(reader))


def describe_choice(rep: HybridReport) -> str:
    """One line for the command's summary."""
    parts = [f"hybrid:{rep.prior} -> {rep.chosen}", f"prior {rep.prior_bytes:,} B"]
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
            self.weights = hybrid_filter.decode_weights(reader.section("filter"), f["codes"], int(f["dims"]),
                                                        int(f["channels"]), self.k)
            self.norm = np.asarray(f["norm"], dtype=np.float32)
            self.plan = hybrid_filter.conv_view(self.shape, self.axes)
            self.block = int(m["flags"]["block"])
            self.flags = _unpack_flags(reader.section("flags"), tuple(int(n) for n in m["flags"]["shape"]))
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
