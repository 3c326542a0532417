"""The probe of the ``auto`` method: which classic codec makes the best prior for this
volume at this target, measured cheaply (no torch here).

:func:`probe_priors` encodes a few representative sub-volumes (the whole volume when it is
small) with every available prior codec of the hybrid method
(:data:`voxfield.compress.hybrid_names.PRIORS`) at the target, and measures bytes and PSNR
(on the *whole* original's value range, so crops compare like the full volume). It returns
a :class:`ProbeTable`, ranked best first:

* ratio or size targets: by PSNR at the goal size. Each codec is probed at the payload
  ratio a file of the whole volume leaves it (the file's goal less that codec's container
  header and the caller's side bytes: at high ratios on small volumes the header is a
  large share, and the ranking changes with it). A probe file a little larger or smaller
  than its goal is priced at the goal with the codecs' usual rate (2 dB per doubling); a
  codec whose probe file misses the goal by more than :data:`REACH_RTOL` did not reach the
  target and ranks after every codec that did. With ``slope=True`` the winner is encoded
  once more, smaller, to measure its dB per doubling of bytes there (what a byte of side
  information costs);
* error-bound and PSNR targets: by bytes (smallest first), codecs that cannot aim for the
  target last.

Codecs missing on this machine are listed (status ``missing``, with what they need) and
never probed; a codec that fails on the data is listed as ``failed``.
:func:`choose_prior` returns the winner and a one-line reason. The probe's cost is bounded by
``max_probe_voxels`` and recorded (seconds per codec and in all).

Sub-volumes: the volume is cut into tiles of at most ``max_probe_voxels / crops`` voxels
(halving its longest axes), every tile is scored by the spread of its values (a strided
sample), and ``crops`` tiles are taken from the busiest half, from the busiest down to the
median one: the data's foreground, not its empty margins, decides the choice.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxfield.compress.hybrid_names import PRIOR_NEEDS, PRIORS
from voxfield.errors import OptionError, TargetNotMet, VoxfieldError, describe_exception

#: Volumes of at most this many voxels are probed whole.
DEFAULT_PROBE_VOXELS = 1 << 21
#: Sub-volumes probed in a larger volume (together at most ``max_probe_voxels`` voxels).
PROBE_CROPS = 3
#: A probe file further than this from its byte goal did not reach the target.
REACH_RTOL = 0.25
#: Size tolerance asked of the codecs on the probe (looser than a real file's: faster).
PROBE_RTOL = 0.05
#: ``mse ~ bytes**-a``: prices a probe file's distance to its goal (0.66: 2 dB per doubling).
RATE_EXPONENT = 0.66
#: The slope of the best codec is measured at this share of its probe bytes.
SLOPE_STEP = 0.8
#: Voxels of the strided sample that scores a tile.
_SCORE_SAMPLES = 4096
#: Most tiles scored.
_MAX_TILES = 4096

STATUS_OK = "ok"            # reached the target on the probe
STATUS_MISSED = "missed"    # encoded, but could not reach the target
STATUS_UNSUPPORTED = "unsupported"  # the codec cannot aim for this kind of target
STATUS_FAILED = "failed"    # the codec failed on the data
STATUS_MISSING = "missing"  # not available on this machine


@dataclass
class ProbeRow:
    """One codec on the probe. ``bytes``: payload bytes summed over the sub-volumes;
    ``ratio``: probed bytes of data / ``bytes``; ``psnr``: dB on the whole volume's range
    (None when nothing was decoded); ``score``: the ranking key (higher is better);
    ``error``: why the codec did not reach the target, failed or is missing."""

    codec: str
    status: str
    bytes: int = 0
    ratio: float | None = None
    psnr: float | None = None
    score: float = -math.inf
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def encoded(self) -> bool:
        """Whether the codec made a probe file (reached the target or not)."""
        return self.status in (STATUS_OK, STATUS_MISSED) and self.bytes > 0


@dataclass
class ProbeTable:
    """The probe of every candidate prior, best first (see :func:`probe_priors`)."""

    target_kind: str
    target_value: float | None
    rows: list[ProbeRow]
    voxels: int  # voxels probed
    total_voxels: int  # voxels of the volume
    crops: int  # sub-volumes probed (1 with ``whole``)
    whole: bool  # the whole volume was probed
    data_range: float
    seconds: float = 0.0
    crop_shape: tuple[int, ...] = ()
    #: dB per doubling of the bytes of the best codec near the target (ratio and size
    #: targets, with ``slope=True``; None: not measured)
    slope_db: float | None = None

    # ------------------------------------------------------------------ views
    def ranked(self) -> list[ProbeRow]:
        """Rows that made a probe file, best first (those that reached the target first)."""
        return [r for r in self.rows if r.encoded]

    @property
    def best(self) -> ProbeRow | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    @property
    def by_size(self) -> bool:
        """Whether the rows are ranked by size (error and PSNR targets), not by PSNR."""
        return self.target_kind not in ("ratio", "bytes")

    def target_text(self) -> str:
        v = self.target_value
        if self.target_kind == "ratio":
            return f"{v:.6g}x"
        if self.target_kind == "bytes":
            return f"{v:,.0f} B"
        if self.target_kind == "psnr":
            return f"PSNR {v:.4g} dB"
        return f"{self.target_kind.replace('_', ' ')} {v:.4g}"

    def where(self) -> str:
        """What was probed, e.g. ``whole volume (262,144 voxels)``."""
        if self.whole:
            return f"whole volume ({self.voxels:,} voxels)"
        shape = "x".join(map(str, self.crop_shape))
        return f"{self.crops} sub-volumes of {shape} ({self.voxels:,} of {self.total_voxels:,} voxels)"

    def cell(self, row: ProbeRow) -> str:
        """One row, short: ``hevc 39.13 dB`` (``10,240 B`` ranked by size), or the status."""
        if not row.encoded:
            return f"{row.codec} {row.status}"
        if self.by_size:
            text = f"{row.codec} {row.bytes:,} B"
        else:
            text = f"{row.codec} {row.psnr:.2f} dB" if row.psnr is not None else f"{row.codec} -"
        return text if row.ok else f"{text} ({row.status} {row.ratio:.3g}x)"

    def lines(self) -> list[str]:
        """The table as text lines (a title, then one line per codec)."""
        out = [f"probe at {self.target_text()} on {self.where()}, {self.seconds:.2f} s:"]
        for i, r in enumerate(self.rows, start=1):
            if r.encoded:
                ps = "-" if r.psnr is None else f"{r.psnr:6.2f} dB"
                rt = "-" if r.ratio is None else f"{r.ratio:7.2f}x"
                line = f"  {i}. {r.codec:7s} {r.status:8s} {r.bytes:>10,} B {rt} {ps} {r.seconds:6.2f} s"
            else:
                line = f"  {i}. {r.codec:7s} {r.status:8s} {r.error}"
            out.append(line)
        return out

    # ------------------------------------------------------------------ record
    def to_record(self, detail: str = "full") -> dict[str, Any]:
        """The table as a compact JSON-ready dict for a file's header, rows best first:

        * ``"full"``: ``[codec, bytes, psnr, seconds]`` rows, the target, the voxels probed
          (and sub-volumes), the probe's seconds;
        * ``"brief"``: ``[codec, psnr]`` rows, the target, the seconds;
        * ``"minimal"``: ``[codec]`` rows (the ranking).

        A codec that did not reach the target has its status appended to its row; one that
        encoded nothing has only its status. Numbers are rounded and never non-finite."""
        rows = []
        for r in self.rows:
            if not r.encoded:
                row: list[Any] = [r.codec, r.status]
            elif detail == "full":
                row = [r.codec, r.bytes, _num(r.psnr, 2), _num(r.seconds, 2)]
            elif detail == "brief":
                row = [r.codec, _num(r.psnr, 2)]
            else:
                row = [r.codec]
            if r.encoded and not r.ok:
                row.append(r.status)
            rows.append(row)
        rec: dict[str, Any] = {"rows": rows}
        if detail in ("full", "brief"):
            rec["target"] = [self.target_kind, _num(self.target_value, 6)]
            rec["seconds"] = _num(self.seconds, 2)
        if detail == "full":
            rec["voxels"] = self.voxels
            if not self.whole:
                rec["crops"] = self.crops
        return rec

    @staticmethod
    def record_lines(rec: dict[str, Any]) -> list[str]:
        """Short text of a stored record (:meth:`to_record`), one cell per codec, e.g.
        ``hevc 40.00 dB``; tolerant of anything (the record comes from a file)."""
        out = []
        for row in rec.get("rows") or []:
            if not isinstance(row, list) or not row:
                continue
            text = str(row[0])
            rest = row[1:]
            status = rest.pop() if rest and isinstance(rest[-1], str) else None
            psnr = rest[1] if len(rest) == 3 else rest[0] if len(rest) == 1 else None  # full / brief
            if isinstance(psnr, (int, float)) and not isinstance(psnr, bool):
                text += f" {psnr:.2f} dB"
            if status:
                text += f" ({status})"
            out.append(text)
        return out


def _num(v: float | None, digits: int) -> float | None:
    if v is None or not math.isfinite(float(v)):
        return None
    return round(float(v), digits)


# ---------------------------------------------------------------------------- sub-volumes
def probe_regions(data: np.ndarray, max_voxels: int = DEFAULT_PROBE_VOXELS, crops: int = PROBE_CROPS,
                  seed: int = 0) -> list[tuple[slice, ...]]:
    """Index tuples of the sub-volumes to probe: the whole array when it has at most
    ``max_voxels`` voxels, else ``crops`` tiles of at most ``max_voxels / crops`` voxels,
    from the busiest (largest spread of values) down to the median tile, in that order.
    Deterministic (``seed`` only breaks ties)."""
    shape = data.shape
    whole = tuple(slice(None) for _ in shape)
    if math.prod(shape) <= max_voxels or crops < 1:
        return [whole]
    per = max(1, max_voxels // crops)
    edge = list(shape)
    while math.prod(edge) > per and max(edge) > 1:
        i = int(np.argmax(edge))
        edge[i] = (edge[i] + 1) // 2
    starts = [sorted(set(range(0, n - e + 1, e)) | {n - e}) for n, e in zip(shape, edge, strict=True)]
    tiles = list(itertools.product(*starts))
    if len(tiles) > _MAX_TILES:
        tiles = tiles[:: -(-len(tiles) // _MAX_TILES)]
    steps = [max(1, int(round((math.prod(edge) / _SCORE_SAMPLES) ** (1 / len(edge))))) if e > 1 else 1
             for e in edge]
    spread = np.empty(len(tiles))
    for k, start in enumerate(tiles):
        sample = data[tuple(slice(s, s + e, st) for s, e, st in zip(start, edge, steps, strict=True))]
        spread[k] = float(np.std(sample, dtype=np.float64))
    tie = np.random.default_rng(seed).random(len(tiles))
    order = np.lexsort((tie, -spread))  # busiest first
    busy = [int(i) for i in order if spread[i] > 0] or [int(i) for i in order]
    n = min(crops, len(busy))
    picks = list(dict.fromkeys(busy[int(round(q * (len(busy) - 1)))] for q in np.linspace(0.0, 0.5, n)))
    k = 0
    while len(picks) < n and k < len(busy):  # quantiles that fell on the same tile
        if busy[k] not in picks:
            picks.append(busy[k])
        k += 1
    return [tuple(slice(s, s + e) for s, e in zip(tiles[i], edge, strict=True)) for i in picks]


# ---------------------------------------------------------------------------- probe
def _crop_target(kind: str, value: float, crop: np.ndarray, peak: float) -> Any:
    """The target of one sub-volume: ``value`` is the payload ratio for size targets (the
    same ratio on every crop), else the whole volume's target (the same error bound; a
    PSNR on the whole range turned into the same MSE on the crop's range)."""
    from voxfield.codecs.base import Target

    if kind in ("ratio", "bytes"):
        return Target.ratio(value, PROBE_RTOL)
    if kind == "max_abs_error":
        return Target.max_abs_error(value)
    if kind == "rel_error":
        return Target.max_abs_error(value * peak)
    if kind == "psnr":
        mse = peak**2 / 10 ** (value / 10)
        rng = float(crop.max()) - float(crop.min())
        return Target.psnr(10 * math.log10(rng**2 / mse) if rng > 0 and mse > 0 else value)
    raise OptionError(f"the auto probe aims for a ratio, a size, an error bound or a PSNR, not {kind}")


def _probe_one(name: str, crops: list[np.ndarray], kind: str, value: float, peak: float) -> ProbeRow:
    """One codec on the sub-volumes; ``value``: as :func:`_crop_target` takes it."""
    from voxfield.codecs.registry import get_codec
    from voxfield.metrics.error import psnr_from_mse

    t0 = time.perf_counter()
    codec = get_codec(name)
    nbytes, sse, n = 0, 0.0, 0
    try:
        for c in crops:
            tgt = _crop_target(kind, value, c, peak)
            codec.check_target(tgt)
            try:
                payload = codec.encode(c, tgt)
            except TargetNotMet as exc:
                if exc.best is None:
                    raise
                payload = exc.best
            dec = codec.decode(payload)
            nbytes += len(payload)
            sse += float(np.sum((c.astype(np.float64) - dec.astype(np.float64)) ** 2))
            n += c.size
    except OptionError as exc:
        return ProbeRow(name, STATUS_UNSUPPORTED, seconds=time.perf_counter() - t0, error=exc.message)
    except TargetNotMet as exc:
        return ProbeRow(name, STATUS_MISSED, seconds=time.perf_counter() - t0, error=exc.message)
    except VoxfieldError as exc:
        return ProbeRow(name, STATUS_FAILED, seconds=time.perf_counter() - t0, error=exc.message)
    except Exception as exc:  # noqa: BLE001 - a codec library failing on these data is a result
        return ProbeRow(name, STATUS_FAILED, seconds=time.perf_counter() - t0, error=describe_exception(exc))
    raw = sum(c.nbytes for c in crops)
    mse = sse / max(n, 1)
    p = psnr_from_mse(mse, peak) if peak > 0 else (math.inf if mse == 0 else -math.inf)
    row = ProbeRow(name, STATUS_OK, nbytes, raw / max(nbytes, 1), p if math.isfinite(p) else None,
                   seconds=time.perf_counter() - t0)
    if kind in ("ratio", "bytes"):
        off = nbytes / (raw / value)  # probe bytes / their goal
        if abs(off - 1) > REACH_RTOL:
            row.status = STATUS_MISSED
            row.error = f"reached {row.ratio:.4g}x on the probe (payload ratio {value:.4g}x asked)"
        # PSNR at the goal size; an exact file (inf dB) ranks first
        base = p if math.isfinite(p) else (1e9 if p > 0 else -1e9)
        row.score = base - 10 * RATE_EXPONENT * math.log10(max(off, 1e-12))
    else:
        row.score = -float(nbytes)
    return row


def file_overhead(vol: Any, codec: str, target: Any) -> int:
    """Bytes a classic ``.vxf`` file of ``vol`` (a Volume) with ``codec`` spends besides the
    codec's payload (its container header); 0 for a bare array."""
    if not hasattr(vol, "describe"):
        return 0
    from voxfield import __version__
    from voxfield.codecs.registry import get_codec
    from voxfield.compress import container
    from voxfield.compress.classic import volume_header

    head = {"voxfield": __version__, "volume": volume_header(vol),
            "method": {"name": "classic", "codec": get_codec(codec).get_config(), "target": target.to_dict()}}
    return container.overhead(head, ["payload"])


def probe_priors(vol: Any, target: Any = None, candidates: Any = None, *,
                 max_probe_voxels: int = DEFAULT_PROBE_VOXELS, crops: int = PROBE_CROPS, seed: int = 0,
                 side_bytes: int = 0, slope: bool = False) -> ProbeTable:
    """Probe the candidate prior codecs on ``vol`` (a Volume or an array) at ``target``
    (a :class:`~voxfield.codecs.base.Target`; None: the default ratio). ``candidates``:
    codec names (or a comma-separated string; default every prior of the hybrid method).

    For a ratio or size target the codecs are probed at the payload ratio a file of the
    whole volume leaves them: the file's goal less its container header (each codec's
    classic ``.vxf`` header, for a Volume) and ``side_bytes`` (other bytes the caller's file
    holds), so that codecs compare where the real file will put them. ``slope``: also
    measure how fast the best codec's PSNR grows with its bytes there (one more encode of
    that codec: :attr:`ProbeTable.slope_db`). Returns the ranked :class:`ProbeTable`."""
    from voxfield.codecs.registry import CODECS
    from voxfield.compress.defaults import default_target

    t0 = time.perf_counter()
    data = np.asarray(getattr(vol, "data", vol))
    target = target or default_target()
    names = parse_candidates(candidates)
    if data.size == 0:
        raise OptionError("the auto probe needs a non-empty volume")
    if target.kind not in ("ratio", "bytes", "max_abs_error", "rel_error", "psnr"):
        raise OptionError(f"the auto probe aims for a ratio, a size, an error bound or a PSNR, not {target.kind}")
    peak = float(np.max(data)) - float(np.min(data))
    regions = probe_regions(data, max_probe_voxels, crops, seed)
    pieces = [np.ascontiguousarray(data[r]) for r in regions]
    whole = len(regions) == 1 and pieces[0].shape == data.shape
    goal = target.size_goal(data.nbytes)
    rows: list[ProbeRow] = []
    for name in names:
        cls = CODECS.get(name)
        if cls is None or not cls.available():
            rows.append(ProbeRow(name, STATUS_MISSING, error=f"needs {PRIOR_NEEDS.get(name, name)}"))
            continue
        value = float(target.value) if target.value is not None else 0.0
        if goal is not None:
            room = goal - file_overhead(vol, name, target) - side_bytes
            if room < 16:
                rows.append(ProbeRow(name, STATUS_MISSED, error=f"the file may hold {goal:.0f} bytes, its header "
                                     f"alone takes about {goal - room:.0f}"))
                continue
            value = max(data.nbytes / room, 1.0 + 1e-6)  # the payload ratio
        rows.append(_probe_one(name, pieces, target.kind, value, peak))
    rank = {STATUS_OK: 0, STATUS_MISSED: 1, STATUS_UNSUPPORTED: 2, STATUS_FAILED: 3, STATUS_MISSING: 4}
    rows.sort(key=lambda r: (rank[r.status], -r.score if math.isfinite(r.score) else math.inf))
    table = ProbeTable(target.kind, None if target.value is None else float(target.value), rows,
                       sum(p.size for p in pieces), int(data.size), len(pieces), whole, peak,
                       crop_shape=tuple(pieces[0].shape))
    if slope and goal is not None and rows and rows[0].ok and rows[0].psnr is not None:
        table.slope_db = _slope(rows[0], pieces, peak)
    table.seconds = time.perf_counter() - t0
    return table


def _slope(best: ProbeRow, pieces: list[np.ndarray], peak: float) -> float | None:
    """dB per doubling of the bytes of ``best`` near its probe point: the crops encoded
    again at :data:`SLOPE_STEP` of its bytes (None when that fails or says nothing)."""
    assert best.ratio is not None and best.psnr is not None
    low = _probe_one(best.codec, pieces, "ratio", best.ratio / SLOPE_STEP, peak)
    best.seconds += low.seconds
    if not low.encoded or low.psnr is None or low.bytes <= 0 or low.bytes >= best.bytes:
        return None
    s = (best.psnr - low.psnr) / math.log2(best.bytes / low.bytes)
    return float(min(max(s, 0.0), 60.0))


def parse_candidates(candidates: Any) -> list[str]:
    """Candidate prior names: None -> every prior; ``"hevc,sperr"`` or a list -> those (each
    must be a prior of the hybrid method)."""
    if candidates is None or candidates == "":
        return list(PRIORS)
    items = candidates.split(",") if isinstance(candidates, str) else list(candidates)
    names = [str(c).strip() for c in items if str(c).strip()]
    bad = [n for n in names if n not in PRIORS]
    if bad or not names:
        raise OptionError(f"auto candidates must be priors of the hybrid method ({', '.join(PRIORS)}), "
                          f"got {', '.join(bad) or 'none'}")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------- choice
@dataclass
class Choice:
    """The prior :func:`choose_prior` picked, why (a phrase after the codec's name, e.g.
    ``hevc: highest PSNR at 64x on the probe, +2.17 dB over sperr``), and the runner-up
    worth a full fit."""

    prior: str
    reason: str
    runner_up: str | None = None
    skipped: list[str] = field(default_factory=list)


def choose_prior(table: ProbeTable, runner_up_db: float = 0.5) -> Choice:
    """The best prior of a probe and a one-line reason; ``runner_up`` is the second codec
    when it reached the target and its probe PSNR is within ``runner_up_db`` of the first's
    (ratio and size targets), so that a full fit of both can settle it. Raises
    :class:`TargetNotMet` when no codec could reach the target (its header alone is too
    big), :class:`OptionError` when none could be probed at all."""
    ranked = table.ranked()
    skipped = [f"{r.codec} ({r.status}: {r.error})" for r in table.rows if not r.encoded]
    if not ranked:
        missed = [r for r in table.rows if r.status == STATUS_MISSED]
        if missed:
            raise TargetNotMet(f"{table.target_text()} is out of reach for every prior codec ({missed[0].codec}: "
                               f"{missed[0].error})")
        raise OptionError("auto: no prior codec could encode this volume: " + "; ".join(skipped))
    first = ranked[0]
    second = ranked[1] if len(ranked) > 1 else None
    at = table.target_text()
    if not first.ok:
        got = "" if first.ratio is None else f" ({first.ratio:.4g}x)"
        reason = f"no codec reached {at} on the probe, {first.codec} came closest{got}"
        return Choice(first.codec, reason, None, skipped)
    reached = [r for r in ranked if r.ok]
    if table.by_size:
        if second is not None and second.ok:
            gain = 100 * (1 - first.bytes / max(second.bytes, 1))
            reason = f"smallest probe file at {at}, {gain:.1f}% smaller than {second.codec}"
        else:
            reason = f"the only codec that could aim for {at} on the probe"
        return Choice(first.codec, reason, None, skipped)
    if len(reached) == 1:
        return Choice(first.codec, f"the only codec that reached {at} on the probe", None, skipped)
    assert second is not None
    lead = (first.psnr or 0.0) - (second.psnr or 0.0)
    reason = f"highest PSNR at {at} on the probe, {lead:+.2f} dB over {second.codec}"
    runner = second.codec if second.ok and first.psnr is not None and second.psnr is not None \
        and lead <= runner_up_db else None
    return Choice(first.codec, reason, runner, skipped)

