"""Robustness fuzzing of voxfield's file readers, decoders and command line.

A run mutates small valid files (every ``.vxf`` method and codec, every input format,
particle files: :mod:`voxfield.bench.fuzz_seeds`) with blind and forged, checksum-keeping
mutations (:mod:`voxfield.bench.fuzz_mutate`), runs one operation per case in worker
processes (``voxfield decompress/info/decode/compress``, ``voxfield.open``, the particle
readers: :mod:`voxfield.bench.fuzz_ops`, :mod:`voxfield.bench.fuzz_run`) and classifies
each outcome: ok, clean (exit 2 with one error line naming the file), or a failure —
traceback, abort, hang, bad-exit, unnamed, silent-wrong, wrote-outside, debris.

Case ``i`` of a run with seed ``S`` is fully determined by ``(S, i)`` (and the corpus,
which is built deterministically and cached), so any failure replays with
``python benchmarks/fuzz.py --seed S --replay i``.

>>> from voxfield.bench.fuzz import run_fuzz
>>> data = run_fuzz(cases=200, seed=0, workers=1, out=None)   # doctest: +SKIP
>>> data["failures"], data["signatures"][:1]                   # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxfield.bench.fuzz_kill import kill_check
from voxfield.bench.fuzz_ops import FAILURES, OUTCOMES, Case, plan_case, sandbox
from voxfield.bench.fuzz_report import failure_table, summary, write_reports
from voxfield.bench.fuzz_run import Limits, Pool
from voxfield.bench.fuzz_seeds import Corpus, build_corpus

__all__ = ["FAILURES", "OUTCOMES", "Case", "Corpus", "Limits", "build_corpus", "failure_table", "kill_check",
           "plan_case", "replay", "run_fuzz"]


def run_fuzz(cases: int = 1000, seed: int = 0, *, workers: int = 2, timeout: float = 20.0, start: int = 0,
             out: str | Path | None = None, corpus_dir: str | Path | None = None, mem_gb: float = 8.0,
             on_result: Callable[[dict[str, Any]], None] | None = None, log: Callable[[str], None] | None = None,
             command: str = "") -> dict[str, Any]:
    """Run cases ``start .. start+cases-1`` of seed ``seed``; write the reports into ``out``
    (when given) and return the summary (see :func:`voxfield.bench.fuzz_report.summary`)."""
    import voxfield

    t0 = time.perf_counter()
    corpus = build_corpus(corpus_dir, log=log)
    t_corpus = time.perf_counter() - t0
    if log:
        log(f"corpus {corpus.root} ({len(corpus.seeds)} seeds; {t_corpus:.1f} s)"
            + (f"; skipped {', '.join(corpus.skipped)}" if corpus.skipped else ""))
    planned = [plan_case(corpus, seed, i) for i in range(start, start + cases)]
    results: list[dict[str, Any]] = []

    def got(r: dict[str, Any]) -> None:
        results.append(r)
        if on_result:
            on_result(r)

    t1 = time.perf_counter()
    with Pool(corpus, workers, Limits(timeout=timeout, mem_gb=mem_gb)) as pool:
        t_pool = time.perf_counter() - t1
        t2 = time.perf_counter()
        pool.run(planned, got)
        t_run = time.perf_counter() - t2
    meta = {"command": command, "version": voxfield.__version__, "corpus": corpus.key, "seeds": len(corpus.seeds),
            "skipped_seeds": corpus.skipped, "seed": seed, "start": start, "cases": cases, "workers": workers,
            "timeout": timeout, "mem_gb": mem_gb, "seconds": time.perf_counter() - t0, "corpus_seconds": t_corpus,
            "startup_seconds": t_pool, "run_seconds": t_run, "rate": cases / t_run if t_run > 0 else 0.0,
            "platform": sys.platform}
    if out is not None:
        return write_reports(Path(out), results, meta)
    return summary(results, meta)


def replay(number: int, seed: int = 0, *, timeout: float = 20.0, corpus_dir: str | Path | None = None,
           keep: str | Path | None = None, mem_gb: float = 8.0) -> dict[str, Any]:
    """Re-run one case in a worker process and return its full result; with ``keep`` the
    case's sandbox (mutated input and outputs) is copied there for a look by hand."""
    corpus = build_corpus(corpus_dir)
    case = plan_case(corpus, seed, number)
    results: list[dict[str, Any]] = []
    with Pool(corpus, 1, Limits(timeout=timeout, mem_gb=mem_gb)) as pool:
        pool.keep_dir = None if keep is None else Path(keep)
        pool.run([case], results.append)
        if keep is not None and results[0]["outcome"] not in ("hang", "abort"):
            box = sandbox(pool.workers[0].root, number)
            dst = Path(keep)
            if box.exists():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(box, dst, symlinks=True)
    return results[0]
