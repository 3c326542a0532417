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

from voxfield.compress.chunk_codec import ChunkTarget, decode_chunk, encode_chunk
from voxfield.compress.chunked.plan import Plan
from voxfield.compress.chunked.source import Source
from voxfield.errors import OptionError, VoxfieldError

#: Candidates of ``method="auto"`` in chunked mode.
FAST_CODECS = ("sperr", "sz3", "zfp")
#: Chunks sampled by the probe.
PROBE_CHUNKS = 4


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
