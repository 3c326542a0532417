"""The layout of a chunked OME-Zarr output: chunks, shards, pyramid levels, the tasks
that write them, and the memory one worker needs.

Defaults (per NGFF axis):

=========  ======================================  =========================
data       chunk                                   shard (chunks per axis)
=========  ======================================  =========================
ZYX        128 x 128 x 128                         4 x 4 x 4 (512^3 of 2 bytes)
CZYX/TCZYX 1 per channel and time point, 128^3     1, 4 x 4 x 4
TYX (2D+t) 32 time points x 256 x 256              4 x 4 x 4 (128 x 1024^2)
YX / CYX   1 per channel, 1024 x 1024              1, 2 x 2
=========  ======================================  =========================

(clipped to the array; a shard is at most :data:`MAX_SHARD_BYTES`). A task writes one
level-0 shard and the pyramid levels that lie inside it (levels whose block of one chunk
covers a whole number of chunks of the shard); deeper levels are made in later rounds
from the level above, a block of 2 chunks per halved axis per task.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxfield.errors import OptionError

#: Largest level-0 shard a task holds in memory (bytes of the input dtype).
MAX_SHARD_BYTES = 256 * 2**20
#: Pyramid levels stop when the smallest halved spatial axis would fall below this.
MIN_LEVEL_SIZE = 64
#: Chunks per halved axis in a task of a deep pyramid level.
LEVEL_TASK_CHUNKS = 2


@dataclass(frozen=True)
class Level:
    """One pyramid level: its ``shape`` and its cumulative downsampling ``factors`` per
    NGFF axis (1 for T and C)."""

    shape: tuple[int, ...]
    factors: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """Chunks, shards and levels of the output, in NGFF axis order ``letters``."""

    letters: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...]
    levels: tuple[Level, ...]
    in_shard: int

    def to_dict(self) -> dict[str, Any]:
        return {"letters": self.letters, "shape": list(self.shape), "dtype": self.dtype, "chunks": list(self.chunks),
                "shards": list(self.shards), "levels": [{"shape": list(lv.shape), "factors": list(lv.factors)}
                                                         for lv in self.levels], "in_shard": self.in_shard}

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def shard_boxes(self) -> list[tuple[slice, ...]]:
        """Level-0 regions of the tasks of round 0, one per shard, in C order."""
        return _grid(self.shape, self.shards)

    def level_boxes(self, level: int) -> list[tuple[slice, ...]]:
        """Regions of the tasks that make ``level`` (> :attr:`in_shard`) from ``level - 1``."""
        lv = self.levels[level]
        prev = self.levels[level - 1]
        step = tuple(c * (LEVEL_TASK_CHUNKS if f != pf else 1) for c, f, pf in
                     zip(self.level_chunks(level), lv.factors, prev.factors))
        return _grid(lv.shape, step)

    def level_chunks(self, level: int) -> tuple[int, ...]:
        """Chunk shape of ``level`` (the level-0 chunk, clipped to the level)."""
        return tuple(min(c, n) for c, n in zip(self.chunks, self.levels[level].shape))

    def rounds(self) -> list[int]:
        """Levels made in rounds after round 0 (each needs the one before it written)."""
        return list(range(self.in_shard + 1, len(self.levels)))

    def worker_memory(self) -> int:
        """Bytes one worker needs at most (see :func:`worker_memory_bytes`)."""
        return worker_memory_bytes(self)


def worker_memory_bytes(plan: Plan) -> int:
    """Upper bound of the memory one task uses: the shard it reads (input dtype), the
    pyramid level it derives next (a float64 mean of 1/8 of the voxels and its rounding),
    zarr's buffers (at most the input again): 2.5 x the shard; a float64 working copy of
    one chunk and the codec's work on it (8 copies); 600 MB for the interpreter and the
    libraries; and the 256 MB glibc may keep for reuse (``tasks.MALLOC_KEEP_BYTES``)."""
    shard = math.prod(min(s, n) for s, n in zip(plan.shards, plan.shape)) * plan.itemsize
    chunk = math.prod(min(c, n) for c, n in zip(plan.chunks, plan.shape))
    deep = 0
    for k in plan.rounds():
        step = [c * LEVEL_TASK_CHUNKS for c in plan.level_chunks(k)]
        deep = max(deep, math.prod(min(2 * s, n) for s, n in zip(step, plan.levels[k - 1].shape)) * 8)
    return int(max(shard * 2.5, deep) + chunk * 8 * 8 + (600 + 256) * 2**20)


def default_chunks(letters: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The default chunk shape (table in the module docstring)."""
    spatial3 = "Z" in letters
    out = []
    for a, n in zip(letters, shape):
        if a == "C":
            c = 1
        elif a == "T":
            c = 1 if spatial3 else 32
        elif spatial3:
            c = 128
        elif "T" in letters:
            c = 256
        else:
            c = 1024
        out.append(max(1, min(c, n)))
    return tuple(out)


def default_shards(letters: str, shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Shards of 4 chunks per Z/Y/X (2 for a 2-D image; T too for 2D+t), shrunk along the
    longest axis until at most :data:`MAX_SHARD_BYTES`."""
    spatial3 = "Z" in letters
    mult = []
    for a in letters:
        if a in "ZYX":
            mult.append(4 if spatial3 or "T" in letters else 2)
        elif a == "T" and not spatial3:
            mult.append(4)
        else:
            mult.append(1)
    while True:
        shards = tuple(min(c * m, -(-n // c) * c) for c, m, n in zip(chunks, mult, shape))
        if math.prod(shards) * itemsize <= MAX_SHARD_BYTES or max(mult) == 1:
            return shards
        k = max(range(len(mult)), key=lambda i: (mult[i], shards[i]))
        mult[k] //= 2


def _halve(letters: str, shape: tuple[int, ...], spacing: dict[str, float], factors: tuple[int, ...]) -> list[int]:
    """Axes to halve for the next level: Y and X, and Z while its voxel is below sqrt(2) x
    the in-plane one (the rule of :func:`voxfield.io.omezarr.write`)."""
    dims = [i for i, a in enumerate(letters) if a in "YX" and shape[i] > 1]
    if "Z" in letters and dims:
        z = letters.index("Z")
        if shape[z] > 1:
            sz = spacing.get("Z", 1.0) * factors[z]
            sxy = max(spacing.get(letters[i], 1.0) * factors[i] for i in dims)
            if sz < math.sqrt(2.0) * sxy:
                dims.insert(0, z)
    return dims


def make_plan(letters: str, shape: tuple[int, ...], dtype: str, spacing: dict[str, float], *,
              chunks: tuple[int, ...] | None = None, shards: tuple[int, ...] | None = None,
              levels: int | None = None) -> Plan:
    """The plan for an array of ``shape`` (NGFF order ``letters``).

    ``chunks``/``shards``: per axis, overriding the defaults (a shard is a multiple of the
    chunk); ``levels``: pyramid levels including full resolution (default: halve until
    the smallest halved axis is under :data:`MIN_LEVEL_SIZE`)."""
    itemsize = np.dtype(dtype).itemsize
    if chunks is None:
        chunks = default_chunks(letters, shape)
    else:
        if len(chunks) != len(shape) or any(int(c) < 1 for c in chunks):
            raise OptionError(f"--chunks {tuple(chunks)} does not fit the {len(shape)} axes {letters} {shape} "
                              "(one size >= 1 per axis)")
        chunks = tuple(min(int(c), n) for c, n in zip(chunks, shape))
    if shards is None:
        shards = default_shards(letters, shape, chunks, itemsize)
    else:
        if len(shards) != len(shape) or any(int(s) < 1 or int(s) % c for s, c in zip(shards, chunks)):
            raise OptionError(f"--shards {tuple(shards)} must be a multiple of the chunk {chunks} on every axis")
        shards = tuple(min(int(s), -(-n // c) * c) for s, c, n in zip(shards, chunks, shape))
    if levels is not None and not 1 <= levels <= 32:
        raise OptionError(f"--levels must be 1 to 32, got {levels}")
    lv = [Level(tuple(shape), (1,) * len(shape))]
    while levels is None or len(lv) < levels:
        cur = lv[-1]
        dims = _halve(letters, cur.shape, spacing, cur.factors)
        if not dims:
            break
        new_shape = tuple(-(-n // 2) if i in dims else n for i, n in enumerate(cur.shape))
        if levels is None and min(new_shape[i] for i in dims) < MIN_LEVEL_SIZE:
            break
        lv.append(Level(new_shape, tuple(f * 2 if i in dims else f for i, f in enumerate(cur.factors))))
    in_shard = 0
    for k in range(1, len(lv)):
        if all((s // c) % f == 0 or s >= n for s, c, f, n in zip(shards, chunks, lv[k].factors, shape)):
            in_shard = k
        else:
            break
    return Plan(letters, tuple(shape), np.dtype(dtype).str, tuple(chunks), tuple(shards), tuple(lv), in_shard)


def _grid(shape: tuple[int, ...], step: tuple[int, ...]) -> list[tuple[slice, ...]]:
    ranges = [range(0, n, s) for n, s in zip(shape, step)]
    return [tuple(slice(o, min(o + s, n)) for o, s, n in zip(origin, step, shape))
            for origin in itertools.product(*ranges)]


def halved_dims(plan: Plan, level: int) -> list[int]:
    """NGFF axes halved from ``level - 1`` to ``level``."""
    a, b = plan.levels[level - 1].factors, plan.levels[level].factors
    return [i for i in range(len(a)) if b[i] != a[i]]


def scaled_box(box: tuple[slice, ...], factors: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The region ``box`` of a finer level divided by ``factors``, clipped to ``shape``
    (a last odd voxel belongs to the last coarse one)."""
    return tuple(slice(b.start // f, min(-(-b.stop // f), n)) for b, f, n in zip(box, factors, shape))
