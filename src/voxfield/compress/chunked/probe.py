"""``method="auto"`` for chunked output: one classic codec for the whole array, chosen by
coding a few sampled chunks with each candidate at the per-chunk target.

The candidates are the codecs fast enough for the chunked default (each codes a 128^3
chunk at 5 MB/s per core or faster on this project's 2-core reference machine, rate
search included): SPERR, SZ3 and ZFP. HEVC, JPEG XL and JPEG 2000 are slower (0.7–3
MB/s per core) and are used when named with ``method=`` or ``codecs=``. The choice is
deterministic: the sampled chunks are fixed by the plan and the score is quality
(ratio target) or size (error and PSNR targets), never time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxfield.compress.chunk_codec import ChunkTarget, decode_chunk, encode_chunk, rd_bits
from voxfield.compress.chunk_codec import _rd_allocated as _rd_file
from voxfield.compress.chunked.plan import Plan
from voxfield.compress.chunked.source import Source
from voxfield.errors import OptionError, VoxfieldError

#: Candidates of ``method="auto"`` in chunked mode.
FAST_CODECS = ("sperr", "sz3", "zfp")
#: Chunks sampled by the probe.
PROBE_CHUNKS = 4
#: Rounds of slope correction on the samples' real file sizes, and the rate error that
#: stops them.
RD_CORRECTIONS = 3
RD_RATE_TOLERANCE = 0.02
#: Chunks sampled to calibrate the rate-distortion slope of a ratio target.
RD_CHUNKS = 32


@dataclass
class ProbeRow:
    """One candidate on the sampled chunks: bytes, PSNR (pooled over the chunks, on their
    joint data range), whether every chunk met the target, coding MB/s (for the report,
    not for the choice)."""

    codec: str
    nbytes: int
    psnr_db: float
    met: bool
    mb_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "bytes": self.nbytes, "psnr_db": round(self.psnr_db, 3), "met": self.met}


def sample_boxes(plan: Plan, n: int = PROBE_CHUNKS) -> list[tuple[slice, ...]]:
    """``n`` level-0 chunks spread evenly over the chunk grid (interior first)."""
    grid = tuple(-(-s // c) for s, c in zip(plan.shape, plan.chunks))
    total = math.prod(grid)
    flat = sorted({int(round(x)) for x in np.linspace(0, total - 1, n + 2)[1:-1]}) if total > n else range(total)
    out = []
    for f in flat:
        idx = np.unravel_index(f, grid)
        out.append(tuple(slice(int(i) * c, min((int(i) + 1) * c, s)) for i, c, s in zip(idx, plan.chunks, plan.shape)))
    return out


def available(codecs: tuple[str, ...] | list[str]) -> list[str]:
    """The codecs of ``codecs`` installed here."""
    from voxfield.codecs.registry import available_codecs

    have = set(available_codecs())
    return [c for c in codecs if c in have]


def choose_codec(source: Source, plan: Plan, target: ChunkTarget, candidates: tuple[str, ...] | list[str]
                 ) -> tuple[str, list[ProbeRow]]:
    """``(codec, table)``: the best candidate on the sampled chunks. Ratio target: the
    lowest squared error in total; other targets: the fewest bytes among the codecs that
    met the target on every chunk."""
    names = available(candidates)
    if not names:
        raise OptionError(f"none of the codecs {', '.join(candidates)} is installed here")
    if target.kind == "lossless":
        return "zstd", []
    blocks = [source.read(b) for b in sample_boxes(plan)]
    blocks = [b for b in blocks if b.size and float(b.max()) > float(b.min())] or blocks[:1]
    lo = min(float(b.min()) for b in blocks)
    hi = max(float(b.max()) for b in blocks)
    rows = []
    for name in names:
        nbytes, sse, n, met, t0 = 0, 0.0, 0, True, time.perf_counter()
        try:
            for b in blocks:
                blob = encode_chunk(b, name, target, None, plan.letters)
                d = decode_chunk(blob, b.shape, b.dtype).astype(np.float64)
                err = d - b
                nbytes += len(blob)
                sse += float(np.sum(err * err))
                n += b.size
                if target.kind == "max_abs_error" and float(np.abs(err).max()) > target.value * (1 + 1e-9):
                    met = False
                if target.kind == "rmse" and math.sqrt(float(np.mean(err * err))) > target.value * 1.0001:
                    met = False
        except VoxfieldError:
            continue
        secs = max(time.perf_counter() - t0, 1e-9)
        mse = sse / max(n, 1)
        psnr = 20 * math.log10(max(hi - lo, 1e-30)) - 10 * math.log10(mse) if mse > 0 else math.inf
        rows.append(ProbeRow(name, nbytes, psnr, met, sum(b.nbytes for b in blocks) / 1e6 / secs))
    if not rows:
        raise OptionError(f"no codec of {', '.join(names)} could code the sampled chunks")
    if target.kind == "ratio":
        best = max(rows, key=lambda r: (r.psnr_db, -r.nbytes))
    else:
        ok = [r for r in rows if r.met] or rows
        best = min(ok, key=lambda r: (r.nbytes, -r.psnr_db))
    return best.codec, rows


def calibrate_rd(source: Source, plan: Plan, codec: str, ratio: float, settings: dict[str, Any] | None = None,
                 n: int = RD_CHUNKS) -> ChunkTarget | None:
    """The ``ratio_rd`` target of a ``ratio`` goal: code ``n`` sampled chunks at the ratio
    and at 1.5x more bits, fit the distortion's power law (exponent ``alpha``, the median
    over the chunks), and find the slope at which the chunks' rate-distortion optimal bits
    average the goal. None when the samples cannot tell (constant data)."""
    from voxfield.compress.chunk_codec import _at_ratio, _method_kwargs, _volume, chunk_mse

    kw: dict[str, Any] = {**_method_kwargs(codec), **(settings or {}), "check": False}
    pts = []
    vols = []
    alphas = []
    for box in sample_boxes(plan, n):
        block = source.read(box)
        if not block.size or float(block.max()) == float(block.min()):
            continue
        vol = _volume(block, plan.letters)
        first = _at_ratio(vol, ratio, kw)
        more = _at_ratio(vol, ratio / 1.5, kw)
        b0, b1 = 8.0 * len(first) / block.size, 8.0 * len(more) / block.size
        d0, d1 = chunk_mse(vol, first), chunk_mse(vol, more)
        pts.append((d0, b0, block.size))
        vols.append((vol, (first, d0)))
        if d0 > 0 and d1 > 0 and b1 > b0 * 1.05 and d1 < d0:
            alphas.append(math.log(d0 / d1) / math.log(b1 / b0))
    if not pts or not alphas:
        return None
    alpha = float(min(max(float(np.median(alphas)), 0.2), 4.0))
    bits_raw = 8.0 * np.dtype(plan.dtype).itemsize
    b_mean = bits_raw / ratio
    total = sum(p[2] for p in pts)

    def mean_bits(slope: float) -> float:
        return sum(rd_bits(d, b, alpha, slope, b_mean) * m for d, b, m in pts) / total

    lo = min(alpha * d / b for d, b, _ in pts if d > 0) / 1e3
    hi = max(alpha * d / b for d, b, _ in pts if d > 0) * 1e3
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if mean_bits(mid) > b_mean:
            lo = mid
        else:
            hi = mid
    slope = math.sqrt(lo * hi)
    # the model's bits are not the file's (headers, codecs that stop short of a rate):
    # code the samples as the chunks will be coded and correct the slope on what they take
    for _ in range(RD_CORRECTIONS):
        target = ChunkTarget("ratio_rd", ratio, slope, alpha)
        got = sum(8.0 * len(_rd_file(v, target, kw, first=f)) for v, f in vols) / total
        if abs(got / b_mean - 1.0) <= RD_RATE_TOLERANCE:
            break
        slope *= (got / b_mean) ** (alpha + 1.0)
    return ChunkTarget("ratio_rd", ratio, slope, alpha)
