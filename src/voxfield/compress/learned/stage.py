"""The learned prior as a stage of a hybrid file: ``base = prior decode`` enhanced by the
shipped network of one domain, with an optional per-volume adaptation of its head and one
on/off flag per block. Everything after it (the fitted residual filter, the block flags of
the residual) works on ``base`` as it worked on the prior decode.

File: header ``method.learned`` = {``domain``, ``weights`` (file name, checked at decode),
``family`` (the codec family it was conditioned on), ``adapt``, ``width``, ``flags``
{``shape``, ``block``}}; section ``learned`` = one byte (1: an adapted head follows),
the head as ``width + 1`` float16 numbers when adapted, then the packed block flags.

Encoding (:class:`StageEncoder`) decides once, on the first prior decode it sees, which
domain (``auto``: each one with shipped weights) and whether the adaptation is kept, by
the MSE each option reaches with its best flags, priced with its side bytes by the
prior codec's rate (:class:`voxfield.compress.hybrid.RateModel`); it is skipped entirely
when no option beats the prior alone. Later prior decodes (the rate loop re-codes the
prior) reuse that decision and refit the head and flags.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxfield.compress.block_flags import expand_flags, flag_grid, pack_flags, unpack_flags
from voxfield.compress.hybrid_filter import ConvPlan
from voxfield.compress.learned.apply import enhance, head_equations, solve_head, supports
from voxfield.compress.learned.net import DOMAINS, EnhanceNet, load_weights, weights_path
from voxfield.errors import FormatError, OptionError

SECTION = "learned"
#: ``learned`` setting of the hybrid and auto methods.
CHOICES = ("auto", "none", *DOMAINS)


def available_domains() -> list[str]:
    """Domains whose weights are installed."""
    return [d for d in DOMAINS if weights_path(d).is_file()]


def check_choice(value: str) -> None:
    if value not in CHOICES:
        raise OptionError(f"learned must be one of {', '.join(CHOICES)}, got {value!r}")


def load_model(domain: str) -> EnhanceNet:
    """The shipped network of ``domain``."""
    model, _ = load_weights(weights_path(domain))
    return model


def _family(codec_name: str) -> str:
    return codec_name


def _bpv(payload_bytes: int, voxels: int) -> float:
    return 8.0 * payload_bytes / max(voxels, 1)


def pack_section(head: tuple[np.ndarray, float] | None, flags: np.ndarray) -> bytes:
    """The ``learned`` section (module docstring)."""
    if head is None:
        return b"\x00" + pack_flags(flags)
    vals = np.concatenate([np.asarray(head[0], np.float32), [np.float32(head[1])]]).astype("<f2")
    return b"\x01" + vals.tobytes() + pack_flags(flags)


def unpack_section(blob: bytes, width: int, flags_shape: tuple[int, ...]
                   ) -> tuple[tuple[np.ndarray, float] | None, np.ndarray]:
    """Inverse of :func:`pack_section`."""
    if not blob or blob[0] not in (0, 1):
        raise FormatError("corrupt learned-prior section")
    head = None
    pos = 1
    if blob[0] == 1:
        n = 2 * (width + 1)
        if len(blob) < pos + n:
            raise FormatError("corrupt learned-prior section (head)")
        vals = np.frombuffer(blob[pos:pos + n], "<f2").astype(np.float32)
        if not np.isfinite(vals).all():
            raise FormatError("corrupt learned-prior section (head)")
        head = (vals[:-1].copy(), float(vals[-1]))
        pos += n
    return head, unpack_flags(blob[pos:], flags_shape)


def quantise_head(head: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
    """The head as stored (float16)."""
    vals = np.concatenate([np.asarray(head[0], np.float32), [np.float32(head[1])]]).astype("<f2").astype(np.float32)
    return vals[:-1].copy(), float(vals[-1])


@dataclass
class StageReport:
    """What the stage decided and measured (dB gains over the prior decode at the first
    prior, before pricing): zero side bytes (trained head, no flags), zero bytes with
    flags, adapted head with flags."""

    domain: str = ""
    adapt: bool = False
    options: dict[str, dict[str, float]] = field(default_factory=dict)
    blocks_on: int = 0
    blocks: int = 0
    seconds: float = 0.0
    skipped: str = ""


def _db(mse_ref: float, mse: float) -> float:
    return float(10 * np.log10(mse_ref / mse)) if mse > 0 and mse_ref > 0 else 0.0


class StageEncoder:
    """The learned stage of one hybrid encode (module docstring). ``x_v``: the original in
    the conv view; ``block_errors(y_v)``: per-block squared error of a conv-view array
    (original dtype applied); ``price(mse, payload_bytes, side_bytes)``: the MSE at the
    payload's size."""

    def __init__(self, x_v: np.ndarray, plan: ConvPlan, codec_name: str, choice: str, block: int,
                 block_errors: Callable[[np.ndarray], np.ndarray],
                 price: Callable[[float, float, float], float], report: StageReport | None = None) -> None:
        self.x_v = x_v
        self.plan = plan
        self.family = _family(codec_name)
        self.block = block
        self.block_errors = block_errors
        self.price = price
        self.rep = report or StageReport()
        self.models: dict[str, EnhanceNet] = {}
        self.decided: tuple[str, bool] | None = None
        self.off = False
        self._last: tuple[bytes, tuple[np.ndarray, bytes, dict[str, Any]]] | None = None
        domains = available_domains() if choice == "auto" else [choice]
        if choice != "auto" and not weights_path(choice).is_file():
            raise OptionError(f"no learned-prior weights for {choice!r} are installed")
        if not supports(plan.spatial_shape):
            self.off, self.rep.skipped = True, "the learned prior takes 2-D or 3-D images of at least 4x4"
        elif not domains:
            self.off, self.rep.skipped = True, "no learned-prior weights installed"
        self.domains = domains

    def _model(self, domain: str) -> EnhanceNet:
        if domain not in self.models:
            self.models[domain] = load_model(domain)
        return self.models[domain]

    def meta(self, domain: str, adapt: bool, flags_shape: tuple[int, ...]) -> dict[str, Any]:
        return {"domain": domain, "weights": weights_path(domain).name, "family": self.family, "adapt": adapt,
                "width": self._model(domain).config.width, "flags": {"shape": list(flags_shape), "block": self.block}}

    def run(self, prior_v: np.ndarray, payload: bytes) -> tuple[np.ndarray, bytes, dict[str, Any]] | None:
        """``(base_v, section, meta)`` for this prior decode (conv view) of ``payload``, or
        None when the stage is off (decided on the first call). The last result is reused
        for the same payload."""
        if self.off:
            return None
        if self._last is not None and self._last[0] is payload:
            return self._last[1]
        out = self._run(prior_v, len(payload))
        self._last = (payload, out) if out is not None else None
        return out

    def _run(self, prior_v: np.ndarray, payload_bytes: int) -> tuple[np.ndarray, bytes, dict[str, Any]] | None:
        t0 = time.perf_counter()
        bpv = _bpv(payload_bytes, self.x_v.size)
        e_prior = self.block_errors(prior_v)
        n = self.x_v.size
        mse_prior = float(e_prior.sum()) / n
        best: tuple[float, str, bool, np.ndarray, np.ndarray, tuple[np.ndarray, float] | None] | None = None
        todo = [self.decided] if self.decided else [(d, a) for d in self.domains for a in (False, True)]
        cache: dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}
        for domain, adapt in todo:
            model = self._model(domain)
            if domain not in cache:
                cache[domain] = head_equations(model, prior_v, self.x_v, self.family, bpv)
            enh0, eq = cache[domain]
            head = None
            if adapt:
                head = quantise_head(solve_head(model, eq))
                enh = enhance(model, prior_v, self.family, bpv, head=head)
            else:
                enh = enh0
            e = self.block_errors(enh)
            flags = e < e_prior
            mse = float(np.where(flags, e, e_prior).sum()) / n
            section = pack_section(head, flags)
            cost = self.price(mse, payload_bytes, len(section) + 60)
            if self.decided is None:
                opt = {"mse": mse, "gain_db_flags": _db(mse_prior, mse), "priced_gain_db": _db(mse_prior, cost),
                       "side_bytes": len(section)}
                if not adapt:
                    opt["gain_db_zero_bytes"] = _db(mse_prior, float(e.sum()) / n)
                self.rep.options[f"{domain}{'+adapt' if adapt else ''}"] = {k: round(v, 4) for k, v in opt.items()}
            if best is None or cost < best[0]:
                best = (cost, domain, adapt, enh, flags, head)
        assert best is not None
        cost, domain, adapt, enh, flags, head = best
        self.rep.seconds += time.perf_counter() - t0
        if self.decided is None:
            if not cost < mse_prior or not flags.any():
                self.off, self.rep.skipped = True, "the learned prior does not pay on this volume"
                return None
            self.decided = (domain, adapt)
            self.rep.domain, self.rep.adapt = domain, adapt
        self.rep.blocks, self.rep.blocks_on = int(flags.size), int(flags.sum())
        on = expand_flags(flags, self.plan.spatial_shape, self.block)
        base = np.where(on, enh, prior_v.astype(np.float32))
        return base, pack_section(head, flags), self.meta(domain, adapt, flags.shape)


def decode_stage(prior_v: np.ndarray, meta: dict[str, Any], section: bytes, payload_bytes: int, plan: ConvPlan,
                 source: Any = None) -> np.ndarray:
    """``base_v`` of a file whose header has ``method.learned`` = ``meta``."""
    try:
        domain = str(meta["domain"])
        if domain not in DOMAINS:
            raise ValueError(f"unknown learned-prior domain {domain!r}")
        if str(meta.get("weights")) != weights_path(domain).name:
            raise ValueError(f"made with learned-prior weights {meta.get('weights')!r}, "
                             f"this voxfield has {weights_path(domain).name!r}")
        width = int(meta["width"])
        block = int(meta["flags"]["block"])
        shape_f = tuple(int(k) for k in meta["flags"]["shape"])
        if shape_f != flag_grid(plan, block):
            raise ValueError("learned-prior flag grid does not match the volume")
        family = str(meta["family"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"corrupt learned-prior header ({exc})", source) from None
    model = load_model(domain)
    if model.config.width != width:
        raise FormatError("learned-prior header does not match the shipped weights", source)
    head, flags = unpack_section(section, width, shape_f)
    enh = enhance(model, prior_v, family, _bpv(payload_bytes, prior_v.size), head=head)
    on = expand_flags(flags, plan.spatial_shape, block)
    return np.where(on, enh, prior_v.astype(np.float32))


def describe(rep: StageReport) -> str:
    """One line for summaries."""
    if rep.skipped:
        return f"learned prior: off ({rep.skipped})"
    opts = ", ".join(f"{k} {v.get('gain_db_flags', 0):+.2f} dB" for k, v in rep.options.items())
    return (f"learned prior: {rep.domain}{' + adapted head' if rep.adapt else ''}, on in {rep.blocks_on}/{rep.blocks} "
            f"blocks ({opts}; {rep.seconds:.1f} s)")


__all__ = ["CHOICES", "SECTION", "StageEncoder", "StageReport", "available_domains", "check_choice",
           "decode_stage", "describe", "pack_section", "unpack_section"]
