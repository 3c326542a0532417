"""What a worker runs: one task writes one region of the output and then its done marker.

Tasks are plain functions of a picklable :class:`Job` and a task number, so the same code
runs inline, on a local Dask cluster or on a remote one. A task that dies leaves no
marker and is simply run again on resume: it rewrites its whole region (a level-0 shard
is one object in the store), so the result is the same as an uninterrupted run's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.compress.chunked.plan import Plan, halved_dims, scaled_box
from voxfield.compress.chunked.source import Source

#: Folder of the output store holding the run's bookkeeping (removed when complete).
STATE_DIR = ".voxfield"


@dataclass(frozen=True)
class Job:
    """Everything a task needs: the input, the plan, the output store's path."""

    source: Source
    plan: Plan
    output: str

    def marker(self, level: int, index: int) -> Path:
        return Path(self.output) / STATE_DIR / "done" / str(level) / str(index)


def is_done(job: Job, level: int, index: int) -> bool:
    """True when the task has written its region completely."""
    return job.marker(level, index).exists()


def _mark(job: Job, level: int, index: int) -> None:
    m = job.marker(level, index)
    m.parent.mkdir(parents=True, exist_ok=True)
    tmp = m.with_name(m.name + ".tmp")
    tmp.write_bytes(b"")
    os.replace(tmp, m)


#: glibc malloc: blocks up to this size come from the heap (reused) rather than fresh
#: ``mmap`` calls, and freed heap memory is kept up to this much. A chunk's codec work
#: allocates and frees arrays of tens of MB many times; with glibc's defaults (and Dask's
#: ``MALLOC_TRIM_THRESHOLD_=65536`` in workers) each one costs page faults, a third of a
#: task's time in system calls.
MALLOC_KEEP_BYTES = 256 * 2**20
_SETUP_DONE: list[bool] = []


def _single_threaded() -> None:
    """One task per core: keep torch and the codecs' thread pools to one thread, and let
    glibc reuse large blocks (see :data:`MALLOC_KEEP_BYTES`); once per process."""
    if _SETUP_DONE:
        return
    _SETUP_DONE.append(True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, MALLOC_KEEP_BYTES)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, MALLOC_KEEP_BYTES)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):  # not glibc
            pass


def _times(t0: float, c0: Any) -> dict[str, float]:
    c1 = os.times()
    return {"wall_s": time.perf_counter() - t0, "user_s": c1.user - c0.user, "sys_s": c1.system - c0.system}


def reset_peak_rss() -> None:
    """Start a new peak-memory measurement for this process (Linux: ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss() -> int:
    """Peak resident memory of this process since :func:`reset_peak_rss` (``VmHWM``;
    elsewhere the process's lifetime peak), in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb if sys.platform == "darwin" else kb * 1024)


def _array(job: Job, level: int) -> Any:
    import zarr

    return zarr.open_array(store=job.output, path=str(level), mode="r+")


def shard_task(job: Job, index: int) -> dict[str, Any]:
    """Round 0: read one level-0 shard from the input, write it, and write the pyramid
    levels that lie inside it (block means of the original voxels)."""
    from voxfield.io.omezarr import _block_mean

    _single_threaded()
    reset_peak_rss()
    t0, c0 = time.perf_counter(), os.times()
    plan = job.plan
    box = plan.shard_boxes()[index]
    if is_done(job, 0, index):
        return {"index": index, "skipped": True}
    data = job.source.read(box)
    _array(job, 0)[box] = data
    for k in range(1, plan.in_shard + 1):
        data = _block_mean(data, halved_dims(plan, k))
        region = scaled_box(box, plan.levels[k].factors, plan.levels[k].shape)
        _array(job, k)[region] = data
    _mark(job, 0, index)
    return {"index": index, "skipped": False, "peak_rss": peak_rss(),
            "nbytes": int(np.prod([b.stop - b.start for b in box])) * plan.itemsize, **_times(t0, c0)}


def level_task(job: Job, level: int, index: int) -> dict[str, Any]:
    """Later rounds: make a block of ``level`` from the decoded ``level - 1``."""
    from voxfield.io.omezarr import _block_mean

    _single_threaded()
    reset_peak_rss()
    plan = job.plan
    if is_done(job, level, index):
        return {"index": index, "skipped": True}
    box = plan.level_boxes(level)[index]
    prev = plan.levels[level - 1]
    step = tuple(f // pf for f, pf in zip(plan.levels[level].factors, prev.factors))
    src = tuple(slice(b.start * s, min(b.stop * s, n)) for b, s, n in zip(box, step, prev.shape))
    data = np.asarray(_array(job, level - 1)[src])
    out = _block_mean(data, halved_dims(plan, level))
    _array(job, level)[box] = out
    _mark(job, level, index)
    return {"index": index, "skipped": False, "peak_rss": peak_rss()}


def range_task(source: Source, box: tuple[slice, ...]) -> tuple[float, float]:
    """(min, max) of one region of the input (the data range of a PSNR target)."""
    _single_threaded()
    data = source.read(box)
    return float(data.min()), float(data.max())
