"""``auto``: the hybrid method with the prior codec chosen per volume by a cheap probe.

Encoding (:meth:`Auto.encode`):

1. **Probe** (:func:`voxfield.compress.auto.probe_priors`): every available prior codec
   encodes representative sub-volumes (the whole volume when small) at the target; the
   codecs are ranked by PSNR at the goal size. Missing codecs are skipped and listed.
2. **Fit**: the hybrid method (:mod:`voxfield.compress.hybrid`: prior + residual filter,
   keeping the prior alone where the filter does not pay) runs with the winner at the full
   target, and with the runner-up too when its probe PSNR is within ``runner_up_db``
   (0.5 dB) of the winner's. The file with the best measured PSNR at the goal size is kept.
3. **Record**: the kept file is re-written with ``method.name = "auto"``; its own method
   header moves, unchanged, to ``method.inner`` (a ``hybrid`` file, or a ``classic`` one
   when the prior alone won), and ``method.auto`` records the choice. The sections are
   those of the inner file, byte for byte. The record's bytes count against the target
   (the fit aims for the goal less the record's estimated size), so its detail is priced:
   the richest of ``full`` (prior, reason, the whole probe table, the fits when the
   runner-up was fitted too, encode seconds), ``brief`` (prior, the probe's PSNR per
   codec, seconds), ``minimal`` (prior, the probe's ranking) and ``none`` (the prior)
   whose bytes cost at most ``record_db`` (0.02 dB) at the rate the probe measured for the
   winning codec. Large files get the full record; a 16 KB file of a steep codec, the
   prior alone. :meth:`Auto.describe` always shows everything (from the encode's report).

Decoding, region decoding and ``voxfield info`` delegate to the inner method through a
reader whose header carries the inner method (:class:`InnerReader`).

Error bounds (``--method auto --max-error E``) go through the error-bound mode of
:func:`voxfield.compress.api.compress` like the hybrid method (``kind = "hybrid"``): the
base ratio is searched with prior-only files (``residual="none"``), each made by the
probe's winner at that ratio (a probe is reused for ratios within :data:`REUSE_FACTOR`),
then the full method runs at the chosen base ratio.

Settings (``--set key=value``): every key of the hybrid method's configuration except
``prior``, plus ``candidates`` (comma-separated priors to consider, default all),
``probe_voxels`` (most voxels probed), ``probe_crops`` (sub-volumes of a larger volume),
``runner_up_db``, ``record_db`` and ``plain`` (default true: when a picked codec's own
file at the whole goal — or that of one of the next :data:`PLAIN_MORE` codecs that are
within :data:`PLAIN_DB` of the winner on the probe, missed the target on it, or made probe
files too small to judge them — scores higher than the fitted file, that plain classic file
is written instead, so auto is never below the codecs it picked by the record's bytes).
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxfield.compress.auto import (
    DEFAULT_PROBE_VOXELS,
    PROBE_CROPS,
    RATE_EXPONENT,
    STATUS_MISSED,
    Choice,
    ProbeRow,
    ProbeTable,
    choose_prior,
    parse_candidates,
    probe_priors,
)
from voxfield.compress.defaults import default_target
from voxfield.compress.registry import Method, register_method
from voxfield.errors import FormatError, OptionError, TargetNotMet

METHOD = "auto"
#: Methods whose files ``auto`` wraps.
INNER_METHODS = ("hybrid", "classic")
#: Runner-up fitted too when its probe PSNR is within this many dB of the winner's.
RUNNER_UP_DB = 0.5
#: Most PSNR (dB) the choice record may cost the file, priced by the probe's measured
#: slope (else a shorter record; ``--set record_db=...``).
RECORD_DB = 0.02
#: dB per doubling of the bytes assumed when the probe could not measure the slope.
DEFAULT_SLOPE_DB = 6.0
#: Bytes the probe reserves for the record (a share of the goal) when it prices the codecs.
RECORD_SHARE = 0.005
#: Bytes kept in hand for the record's estimate (its header is compressed with the rest).
RECORD_MARGIN = 8
#: Prior-only encodes reuse a probe made at a ratio within this factor (error-bound search).
REUSE_FACTOR = 1.5
#: Codecs of the probe's ranking fitted beyond the picks when no fit lands on the goal.
MORE_FITS = 2
#: Besides the picks, the own files of up to PLAIN_MORE more codecs whose probe score is
#: within PLAIN_DB of the winner's are made at the whole goal and kept when they score
#: higher: a sub-volume probe can misrank two codecs (measured: lattice light-sheet at 512x,
#: SPERR picked, HEVC's own file 0.64 dB higher on the whole volume).
PLAIN_DB = 3.0
PLAIN_MORE = 3
#: A probe file under this many bytes per sub-volume says little about a codec's whole
#: file: fixed stream costs (HEVC's parameter sets and slice headers) dominate it.
SMALL_PROBE_BYTES = 4096
#: Record detail levels, richest first (see :meth:`Auto._record`).
DETAILS = ("full", "brief", "minimal", "none")

_CONFIG: type | None = None


def config_class() -> type:
    """``AutoConfig``: the hybrid method's configuration (:class:`HybridConfig`, whose
    ``prior`` is ignored: the probe picks it) plus the probe's settings. Built on first use
    (the hybrid module brings torch)."""
    global _CONFIG
    if _CONFIG is None:
        from voxfield.compress.hybrid import HybridConfig

        @dataclass(frozen=True)
        class AutoConfig(HybridConfig):
            """Settings of the auto method: the hybrid method's (except ``prior``) and the
            probe's."""

            candidates: str | None = None  # comma-separated priors to consider (None: all)
            probe_voxels: int = DEFAULT_PROBE_VOXELS  # most voxels probed (whole volume at or below)
            probe_crops: int = PROBE_CROPS  # sub-volumes probed in a larger volume
            runner_up_db: float = RUNNER_UP_DB  # fit the runner-up too when this close on the probe
            record_db: float = RECORD_DB  # most PSNR the choice record in the header may cost
            plain: bool = True  # keep a picked codec's own file (no record) when it scores higher

            def validate(self) -> None:
                super().validate()
                parse_candidates(self.candidates)
                if not isinstance(self.probe_voxels, int) or self.probe_voxels < 4096:
                    raise OptionError("probe_voxels must be an integer >= 4096")
                if not isinstance(self.probe_crops, int) or not 1 <= self.probe_crops <= 64:
                    raise OptionError("probe_crops must be an integer in [1, 64]")
                if not self.runner_up_db >= 0:
                    raise OptionError("runner_up_db must be >= 0 (0: fit the winner only)")
                if not self.record_db >= 0:
                    raise OptionError("record_db must be >= 0 (0: record only the chosen prior)")

            def hybrid(self, prior: str) -> HybridConfig:
                """The hybrid configuration of one fit."""
                names = {f.name for f in dataclasses.fields(HybridConfig)}
                cfg = HybridConfig(**{**{n: getattr(self, n) for n in names}, "prior": prior})
                cfg.validate()
                return cfg

        AutoConfig.__module__ = __name__
        AutoConfig.__qualname__ = "AutoConfig"
        _CONFIG = AutoConfig
    return _CONFIG


@dataclass
class AutoReport:
    """What the auto method chose and measured (for the command's summary and benchmarks):
    the probe ``table``, the chosen ``prior`` and the ``reason``, the ``fits`` made (prior,
    bytes, PSNR, kept), the kept fit's hybrid report, and the seconds spent."""

    prior: str = ""
    reason: str = ""
    table: ProbeTable | None = None
    fits: list[dict[str, Any]] = field(default_factory=list)
    hybrid: Any = None
    kept: str = ""  # what the kept hybrid file holds: prior+filter, prior+field or prior
    record_detail: str = ""
    seconds: float = 0.0
    probe_seconds: float = 0.0
    fit_seconds: float = 0.0


class InnerReader:
    """A reader of an auto file as the file of the method it wraps: ``header["method"]`` is
    the inner method's header; sections and everything else are the file's."""

    def __init__(self, reader: Any, method: dict[str, Any]) -> None:
        self._reader = reader
        self.header = {**reader.header, "method": method}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _small_probe(row: ProbeRow, table: ProbeTable) -> bool:
    """True when ``row``'s probe was made on sub-volumes and its file per sub-volume is
    so small that the codec's fixed costs, not its coding, set its score."""
    return not table.whole and row.bytes is not None and row.bytes / max(table.crops, 1) < SMALL_PROBE_BYTES


@register_method(METHOD)
class Auto(Method):
    """The hybrid method with the prior picked by a probe; the file records the choice."""

    kind = "hybrid"

    def __init__(self) -> None:
        #: probes of prior-only encodes, by volume: [(ratio, table)] (see :meth:`_probe`)
        self._memo: dict[Any, list[tuple[float, ProbeTable]]] = {}

    # ------------------------------------------------------------------ configuration
    def config(self, **settings: Any) -> Any:
        if "prior" in settings:
            raise OptionError("the auto method picks the prior itself: restrict it with --set candidates=hevc,sperr, "
                              "or use --method hybrid:PRIOR")
        cls = config_class()
        known = {f.name for f in dataclasses.fields(cls)} - {"prior"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise OptionError(f"unknown setting(s) {', '.join(unknown)} for method {self.name!r} "
                              f"(known: {', '.join(sorted(known))})")
        if "residual" in settings and settings["residual"] is None:
            settings["residual"] = "none"
        cfg = cls(**settings)
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------ encoding
    def encode(self, vol: Any, target: Any, config: Any, *, progress: Any = None,
               guide_mask: np.ndarray | None = None, **options: Any) -> tuple[bytes, AutoReport]:
        from voxfield.codecs._common import size_rtol
        from voxfield.codecs.base import Target
        from voxfield.compress import hybrid
        from voxfield.io.validate import check_array

        self.no_options(options)
        t_start = time.perf_counter()
        target = target or default_target()
        if target.kind not in ("ratio", "bytes"):
            raise OptionError(f"the auto method aims for a ratio or a size, not {target.kind} "
                              "(an error bound goes with --max-error)")
        check_array(vol.data, vol.meta.get("source"))
        raw = int(vol.data.nbytes)
        goal = float(target.size_goal(raw))
        tol = size_rtol(target) * goal
        rep = AutoReport()
        table = self._probe(vol, target, config, goal)
        rep.table, rep.probe_seconds = table, table.seconds
        if progress:
            progress("probe", 1.0)
        choice = choose_prior(table, config.runner_up_db)
        rep.prior, rep.reason = choice.prior, choice.reason
        picks = [choice.prior]
        # the runner-up's full fit can settle a close probe; not needed when both would be the
        # codecs' own files of the whole volume, as the probe already made them
        settles = config.residual != "none" or not table.whole
        if choice.runner_up and settles and config.selection == "psnr" and config.guide is None:
            picks.append(choice.runner_up)
        detail, extra = self._record_plan(vol, config, table, choice, picks, goal)
        rep.record_detail = detail
        inner_goal = goal - extra - RECORD_MARGIN
        if inner_goal < 64:
            raise TargetNotMet(f"ratio {raw / goal:.4g} is out of reach for the auto method: the file may hold "
                               f"{goal:.0f} bytes, and its header alone takes about {extra + 200:.0f}")
        inner_target = Target.nbytes(inner_goal, rtol=min(0.5, 0.8 * tol / inner_goal))
        fits: list[tuple[str, bytes, float, Any]] = []
        failures: list[str] = []
        t_fit = time.perf_counter()
        # when no fit lands within the tolerance (a tiny goal, a codec that moves in steps),
        # the next codecs of the probe's ranking get their turn, up to MORE_FITS of them
        spare = [r.codec for r in table.ranked() if r.codec not in picks][:MORE_FITS]
        queue = list(picks)

        def lands(blob: bytes) -> bool:
            return abs(len(blob) + extra - goal) <= tol

        while queue:
            prior = queue.pop(0)
            hrep = hybrid.HybridReport()
            sub = (lambda stage, f, p=prior: progress(f"{p}: {stage}", f)) if progress else None
            try:
                blob = hybrid.compress_hybrid(vol, config.hybrid(prior), inner_target, progress=sub, report=hrep,
                                              guide_mask=guide_mask)
            except TargetNotMet as exc:
                failures.append(f"hybrid:{prior}: {exc.message}")
                rep.fits.append({"prior": prior, "error": exc.message})
                if not queue and spare and not any(lands(f[1]) for f in fits):
                    queue, spare = spare, []
                continue
            measured, score = _psnr_at_goal(vol.data, blob, goal - extra)
            fits.append((prior, blob, score, hrep))
            rep.fits.append({"prior": prior, "bytes": len(blob) + extra, "psnr": measured, "score": score,
                             "kept": False})
            if not queue and spare and not any(lands(f[1]) for f in fits):
                queue, spare = spare, []
        rep.fit_seconds = time.perf_counter() - t_fit
        if not fits:
            raise TargetNotMet(f"auto: {'; '.join(failures)}")
        landed = [f for f in fits if lands(f[1])] or fits
        prior, blob, _, hrep = max(landed, key=lambda f: f[2])
        for f in rep.fits:
            f["kept"] = f["prior"] == prior and "error" not in f
        if prior != choice.prior:
            got = {f["prior"]: f for f in rep.fits}
            first = got[choice.prior]
            then = (f"the fit of {choice.prior} failed ({first['error']})" if "error" in first else
                    f"ahead once fitted in full ({got[prior]['psnr']:.2f} dB against {first['psnr']:.2f} dB)")
            rep.reason = f"runner-up on the probe ({choice.prior}: {choice.reason}); {then}"
        rep.prior, rep.hybrid, rep.kept = prior, hrep, hrep.chosen
        rep.seconds = time.perf_counter() - t_start
        out = None
        for d in DETAILS[DETAILS.index(detail):]:  # the estimate may be off by a few bytes
            out = wrap(blob, self._record(rep, d))
            rep.record_detail = d
            if abs(len(out) - goal) <= tol:
                break
        assert out is not None
        if config.plain:
            best_row = table.best
            # close behind on the probe, or unable to reach the target on its small crops
            # (HEVC's coarse steps at 512x) though the whole volume may be fine
            near = [r.codec for r in table.ranked() if r.codec not in picks and best_row is not None and (
                r.status == STATUS_MISSED or (r.ok and r.score >= best_row.score - PLAIN_DB)
                or _small_probe(r, table))]
            out = self._plain_if_better(vol, target, picks + near[:PLAIN_MORE], out, goal, tol, rep)
        if abs(len(out) - goal) > tol:
            raise TargetNotMet(f"auto: the file of {len(out):,} bytes (ratio {raw / len(out):.4g}) misses the "
                               f"{goal:,.0f}-byte goal (ratio {raw / goal:.4g}) by more than {100 * tol / goal:.1f}%",
                               best=out, achieved=raw / len(out))
        return out, rep

    def _plain_if_better(self, vol: Any, target: Any, picks: list[str], out: bytes, goal: float, tol: float,
                         rep: AutoReport) -> bytes:
        """The picked codecs' own files at the whole goal (no record, no hybrid header),
        kept instead of ``out`` when one scores higher at the goal: where the residual does
        not pay, the record's bytes would otherwise leave auto a little below the codec. Such
        a file is a plain classic ``.vxf``, byte for byte what ``--codec NAME`` writes."""
        from voxfield.codecs.registry import get_codec
        from voxfield.compress.classic import compress_volume

        best, best_score = out, _psnr_at_goal(vol.data, out, goal)[1]
        for codec in picks:
            try:
                plain = compress_volume(vol, get_codec(codec), target)
            except TargetNotMet:
                continue
            if abs(len(plain) - goal) > tol:
                continue
            p, score = _psnr_at_goal(vol.data, plain, goal)
            rep.fits.append({"prior": codec, "bytes": len(plain), "psnr": p, "score": score, "kept": False,
                             "plain": True})
            if score > best_score:
                best, best_score = plain, score
                for f in rep.fits:
                    f["kept"] = f is rep.fits[-1]
                rep.prior, rep.kept, rep.record_detail = codec, "the codec's own file", "none (a classic file)"
        return best

    def _probe(self, vol: Any, target: Any, config: Any, goal: float) -> ProbeTable:
        """The probe at ``target``. Prior-only encodes (``residual="none"``: what the
        error-bound search makes at many ratios) reuse a probe of the same volume made at a
        ratio within :data:`REUSE_FACTOR`."""
        flat = vol.data.reshape(-1)
        sample = zlib.crc32(np.ascontiguousarray(flat[:: max(1, flat.size // 4096)]).tobytes())
        key = (id(vol.data), vol.data.shape, sample, config.candidates, config.probe_voxels, config.probe_crops,
               config.seed)
        ratio = vol.data.nbytes / goal
        if config.residual == "none":
            for r, table in self._memo.get(key, []):
                if max(r / ratio, ratio / r) <= REUSE_FACTOR:
                    return table
        # the probe compares the codecs at the payload a file with this record would leave them
        table = probe_priors(vol, target, config.candidates, max_probe_voxels=config.probe_voxels,
                             crops=config.probe_crops, seed=config.seed, side_bytes=int(RECORD_SHARE * goal),
                             slope=True)
        if config.residual == "none":
            self._memo.setdefault(key, []).append((ratio, table))
        return table

    def _record(self, rep: AutoReport, detail: str) -> dict[str, Any]:
        """The ``method.auto`` entry of the file, by detail: ``full`` (the prior, the reason,
        the whole probe table, the fits when the runner-up was fitted too, the encode
        seconds), ``brief`` (the prior, the probe's PSNR per codec, the seconds: the reason
        is derived from them), ``minimal`` (the prior and the probe's ranking), ``none``
        (the prior alone, for files too small to spend bytes on more)."""
        assert rep.table is not None
        rec: dict[str, Any] = {"prior": rep.prior}
        if detail == "full":
            rec["reason"] = rep.reason
        if detail != "none":
            rec["probe"] = rep.table.to_record(detail)
        if detail == "full" and len(rep.fits) > 1:  # [prior, PSNR of its full fit] (None: it failed)
            rec["fits"] = [[f["prior"], _round(f.get("psnr"))] for f in rep.fits]
        if detail in ("full", "brief"):
            rec["seconds"] = round(rep.seconds, 1)
        return rec

    def _record_plan(self, vol: Any, config: Any, table: ProbeTable, choice: Choice, picks: list[str],
                     goal: float) -> tuple[str, int]:
        """The richest record detail whose bytes cost the file at most ``record_db`` of PSNR
        (``none`` otherwise), and those bytes. The bytes are what wrapping adds to a hybrid
        file of the chosen prior, measured on a stand-in with placeholder numbers; their
        cost is priced by the probe's slope (dB per doubling of the bytes) near the goal."""
        from voxfield import __version__
        from voxfield.codecs.registry import get_codec
        from voxfield.compress import container
        from voxfield.compress.classic import volume_header

        inner = container.dumps(
            {"voxfield": __version__, "volume": volume_header(vol),
             "method": {"name": "hybrid", "prior": get_codec(choice.prior).get_config(), "residual": "filter",
                        "selection": config.selection, "filter": {"dims": 3, "channels": 4, "kernel": config.kernel},
                        "flags": {"shape": [1, 8, 8, 8], "block": 16}}},
            {"prior": b"", "filter": b""})
        stand_in = AutoReport(prior=choice.prior, reason=choice.reason, table=table, kept="prior+filter",
                              seconds=123.45,
                              fits=[{"prior": p, "bytes": int(goal), "psnr": 40.12345, "kept": i == 0}
                                    for i, p in enumerate(picks)])
        slope = table.slope_db if table.slope_db is not None else DEFAULT_SLOPE_DB
        extra = 0
        for detail in DETAILS:
            extra = len(wrap(inner, self._record(stand_in, detail))) - len(inner)
            cost = slope * math.log2(goal / max(goal - extra - RECORD_MARGIN, 1.0))
            if cost <= config.record_db:
                return detail, extra
        return DETAILS[-1], extra

    def describe(self, report: Any) -> str:
        """A few lines: the choice and why, the probe table, the fits and the kept file."""
        from voxfield.compress import hybrid

        rep: AutoReport = report
        plain = any(f.get("plain") and f.get("kept") for f in rep.fits)
        head = f"{rep.prior} (the codec's own file)" if plain else f"hybrid:{rep.prior} ({rep.kept or '?'})"
        lines = [f"auto -> {head}, {rep.prior}: {rep.reason}"]
        if rep.table is not None:
            t = rep.table
            lines.append(f"probe at {t.target_text()} on {t.where()}, {t.seconds:.1f} s: "
                         + ", ".join(t.cell(r) for r in t.rows))
        fits = ", ".join(("" if f.get("plain") else "hybrid:") + f"{f['prior']} "
                         + (f"failed ({f['error']})" if "error" in f else
                                                    f"{f['psnr']:.2f} dB{' (kept)' if f['kept'] else ''}")
                         for f in rep.fits)
        lines.append(f"fits ({rep.fit_seconds:.1f} s): {fits}")
        if rep.hybrid is not None and not plain:
            lines.append(hybrid.describe_choice(rep.hybrid))
        return "\n  ".join(lines)

    # ------------------------------------------------------------------ decoding
    def inner(self, reader: Any) -> tuple[Method, InnerReader]:
        """The wrapped method and a reader that shows it its own header."""
        from voxfield.compress.registry import get_method

        m = reader.header.get("method", {})
        self.check_header(m, getattr(reader, "spec", None), reader.path)
        return get_method(m["inner"]["name"]), InnerReader(reader, m["inner"])

    def decode(self, reader: Any) -> Any:
        method, view = self.inner(reader)
        return method.decode(view)

    def open_region(self, reader: Any) -> Any:
        method, view = self.inner(reader)
        return method.open_region(view)

    def open_field(self, reader: Any) -> Any:
        method, view = self.inner(reader)
        return method.open_field(view)

    def summary(self, reader: Any) -> dict[str, Any]:
        """``voxfield info``: the chosen prior and what the file keeps, why, the probe table
        and its cost, the encode seconds, the residual (at most 8 entries: ``info`` shows
        them on one row)."""
        m = reader.header.get("method", {})
        rec = m.get("auto") if isinstance(m.get("auto"), dict) else {}
        probe = rec.get("probe") if isinstance(rec.get("probe"), dict) else {}
        inner = m.get("inner") if isinstance(m.get("inner"), dict) else {}
        prior = rec.get("prior")
        out: dict[str, Any] = {"chosen": f"hybrid:{prior} -> {kept_of(inner)}",
                               "reason": f"{prior}: {stored_reason(rec)}",
                               "probe": ProbeTable.record_lines(probe) or "not stored (a small file spends no bytes on it)"}
        if isinstance(probe.get("seconds"), (int, float)):
            where = ""
            if isinstance(probe.get("voxels"), int):
                where = f" on {probe['voxels']:,} voxels" + (
                    f" in {probe['crops']} sub-volumes" if isinstance(probe.get("crops"), int) else " (whole volume)")
            out["probe_cost"] = f"{probe['seconds']:.2f} s{where}"
        if isinstance(rec.get("seconds"), (int, float)):
            out["encode_seconds"] = rec["seconds"]
        if isinstance(rec.get("fits"), list):  # the runner-up was fitted too
            out["fits"] = [f"hybrid:{f[0]} {f[1]:.2f} dB" if len(f) > 1 and isinstance(f[1], (int, float))
                           else f"hybrid:{f[0] if f else '?'} failed" for f in rec["fits"] if isinstance(f, list)]
        if isinstance(inner.get("filter"), dict):
            f = inner["filter"]
            out["filter"] = f"{f.get('dims')}-D conv, {f.get('channels')} channels, kernel {f.get('kernel')}"
        return out

    def check_header(self, method: dict[str, Any], spec: Any, path: Any) -> None:
        from voxfield.compress import schema

        inner = schema.check_dict(method.get("inner"), "method.inner", path)
        name = schema.check_text(inner.get("name"), "method.inner.name", path)
        if name not in INNER_METHODS:
            raise FormatError(f"corrupt .vxf header (method.inner.name {name!r} is not one of "
                              f"{', '.join(INNER_METHODS)})", path)
        if spec is not None:
            schema.METHOD_CHECKS[name](inner, spec, path)
        rec = schema.check_dict(method.get("auto"), "method.auto", path)
        schema.check_text(rec.get("prior"), "method.auto.prior", path)
        schema.check_text(rec.get("reason", ""), "method.auto.reason", path)


def kept_of(inner: dict[str, Any]) -> str:
    """What an auto file keeps, from its inner method header."""
    if inner.get("name") == "classic":
        return "prior (the codec's own file)"
    residual = inner.get("residual")
    return "prior" if residual in (None, "none") else f"prior+{residual}"


def stored_reason(rec: dict[str, Any]) -> str:
    """The reason of a stored choice: as written (full records), else derived from the
    stored probe rows (brief: PSNR per codec; minimal: the ranking)."""
    if isinstance(rec.get("reason"), str):
        return rec["reason"]
    probe = rec.get("probe") if isinstance(rec.get("probe"), dict) else {}
    rows = [r for r in probe.get("rows") or [] if isinstance(r, list) and r]
    target = probe.get("target")
    at = ""
    if isinstance(target, list) and len(target) == 2 and target[0] == "ratio" and isinstance(target[1], (int, float)):
        at = f" at {target[1]:.4g}x"
    scored = [(str(r[0]), r[1]) for r in rows if len(r) >= 2 and isinstance(r[1], (int, float))
              and not isinstance(r[1], bool)]
    if rows and str(rows[0][0]) != rec.get("prior"):  # the runner-up won the full fits
        return f"runner-up on the probe after {rows[0][0]}, ahead once fitted in full"
    if len(scored) >= 2:
        return f"highest PSNR{at} on the probe, {scored[0][1] - scored[1][1]:+.2f} dB over {scored[1][0]}"
    if rows:
        return "ranked first on the probe (" + " > ".join(str(r[0]) for r in rows) + ")"
    return "ranked first on the probe"


def wrap(blob: bytes, record: dict[str, Any]) -> bytes:
    """An auto file from a hybrid or classic file: the same sections, ``method`` moved to
    ``method.inner`` beside the choice ``record``."""
    from voxfield.compress import container

    with container.VxfReader(blob) as r:
        header = {k: v for k, v in r.header.items() if k != "sections"}
        sections = {n: r.section(n) for n in r.section_names}
    header["method"] = {"name": METHOD, "inner": header["method"], "auto": record}
    return container.dumps(header, sections)


def _psnr_at_goal(x: np.ndarray, blob: bytes, goal: float) -> tuple[float, float]:
    """PSNR (data range) of a file's decode, and the same charged for the bytes the file
    has over ``goal`` at the codecs' usual rate (a smaller file earns nothing: it must win
    on its own error), the score the fits are compared by."""
    from voxfield.compress.api import decompress
    from voxfield.metrics import psnr

    p = float(psnr(x, decompress(blob).data))
    score = p if math.isfinite(p) else (1e9 if p > 0 else -1e9)
    return p, score - 10 * RATE_EXPONENT * math.log10(max(len(blob), goal) / goal)


def _round(v: Any) -> float | None:
    if v is None or not math.isfinite(float(v)):
        return None
    return round(float(v), 2)
