"""Worker processes of the fuzzer (:mod:`voxfield.bench.fuzz`).

The parent plans cases (:func:`voxfield.bench.fuzz_ops.plan_case`) and feeds them to ``W``
worker processes (``multiprocessing`` "spawn" context). Each worker imports voxfield once,
runs in its own session (so that the parent can kill its whole process group), under
resource limits (address space, file size, no core files), with its stdout/stderr
redirected at the descriptor level to a log file that is truncated per case, and with
``faulthandler`` dumping the Python stack on fatal signals and shortly before the case
timeout. A worker that dies is an ``abort`` (with its signal), one that overruns the timeout
is a ``hang`` (killed); both are respawned.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from voxfield.bench.fuzz_ops import Case, faulthandler_frame, normalize, plan_case, sandbox
from voxfield.bench.fuzz_seeds import Corpus


@dataclass
class Limits:
    """Per-case limits."""

    timeout: float = 20.0  # seconds (wall clock, the whole case)
    mem_gb: float = 8.0  # address space of a worker (RLIMIT_AS); 0: none
    fsize_gb: float = 2.0  # largest file a worker may write (RLIMIT_FSIZE); 0: none
    recycle: int = 1000  # restart a worker after this many cases (bounds leaked memory and files)


def worker_main(conn: Connection, corpus_root: str, root: str, logs: str, index: int, limits: Limits) -> None:
    """Body of a worker process: set up, then run cases until told to stop."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = "1"
    import faulthandler
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.mem_gb > 0:
        lim = int(limits.mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    if limits.fsize_gb > 0:
        lim = int(limits.fsize_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim, lim))
    cap = os.open(Path(logs) / f"w{index}.out", os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    os.dup2(cap, 1)
    os.dup2(cap, 2)
    fault = open(Path(logs) / f"w{index}.fault", "a+")  # noqa: SIM115 - lives as long as the process
    faulthandler.enable(fault)
    import torch

    import voxfield.cli.main  # noqa: F401 - import once, reuse for every case
    from voxfield.bench.fuzz_ops import Executor

    torch.set_num_threads(1)
    corpus = Corpus.from_json(Path(corpus_root), json.loads((Path(corpus_root) / "manifest.json").read_text()))
    ex = Executor(corpus, Path(root), cap)
    current = Path(logs) / f"w{index}.case.json"
    conn.send(("ready", os.getpid()))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            break
        case = Case(**msg[1])
        fault.truncate(0)

        def ready(desc: str, case: Case = case) -> None:
            current.write_text(json.dumps({"number": case.number, "mutation": desc}))

        faulthandler.dump_traceback_later(max(1.0, limits.timeout - 1.5), exit=False, file=fault)
        try:
            res = ex.run(case, ready).to_json()
        except Exception as exc:  # noqa: BLE001 - a bug of the fuzzer itself
            import traceback

            res = {**asdict(case), "outcome": "fuzzer-error", "findings": [["fuzzer-error", f"{type(exc).__name__}"]],
                   "detail": traceback.format_exc()[-3000:], "mutation": "", "rc": None, "stderr": "", "seconds": 0}
        faulthandler.cancel_dump_traceback_later()
        conn.send(("result", res))


class _Worker:
    def __init__(self, pool: Pool, index: int) -> None:
        self.index = index
        self.root = pool.run_dir / f"w{index}"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        ctx = get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, daemon=True,
                                args=(child, str(pool.corpus.root), str(self.root), str(pool.logs), index, pool.limits))
        self.proc.start()
        child.close()
        self.case: Case | None = None
        self.done = 0
        self.deadline = 0.0
        self.started = 0.0
        if not self.conn.poll(300):
            self.kill()
            raise RuntimeError(f"fuzz worker {index} did not start")
        tag, _ = self.conn.recv()
        assert tag == "ready"

    def send(self, case: Case, timeout: float) -> None:
        self.case = case
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.conn.send(("case", asdict(case)))

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.join(10)

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.proc.join(10)
        except (BrokenPipeError, OSError):
            pass
        if self.proc.is_alive():
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class Pool:
    """``workers`` worker processes over one corpus."""

    def __init__(self, corpus: Corpus, workers: int = 2, limits: Limits | None = None,
                 run_dir: Path | None = None) -> None:
        self.corpus = corpus
        self.limits = limits or Limits()
        self._own_dir = run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="vxfuzz-")) if run_dir is None else run_dir
        self.logs = self.run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.keep_dir: Path | None = None  # replay: where a dead worker's sandbox is saved
        self.workers = [_Worker(self, i) for i in range(max(1, workers))]

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dead(self, w: _Worker, outcome: str) -> dict[str, Any]:
        """Result of the case a worker was running when it died or overran."""
        assert w.case is not None
        case = w.case
        elapsed = time.monotonic() - w.started
        if outcome == "hang":
            w.kill()
        else:
            w.proc.join(10)
        code = w.proc.exitcode
        fault = _read(self.logs / f"w{w.index}.fault")
        out = _read(self.logs / f"w{w.index}.out")
        try:
            cur = json.loads((self.logs / f"w{w.index}.case.json").read_text())
            mutation = cur["mutation"] if cur.get("number") == case.number else "?"
        except (OSError, ValueError):
            mutation = "?"
        frame = faulthandler_frame(fault)
        if outcome == "hang":
            sig = f"hang ({case.op}): {frame}"
            detail = f"killed after {elapsed:.1f} s\n{fault[-3000:]}"
        else:
            name = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
            first = next((ln for ln in out.splitlines() if ln.strip() and not ln.startswith(("Fatal Python", "Current",
                                                                                          "Thread", "  File"))), "")
            sig = f"abort {name} ({case.op}): {frame}" + (f"; {normalize(first)}" if first else "")
            detail = f"worker died ({name}) after {elapsed:.1f} s\n{out[-2000:]}\n{fault[-3000:]}"
        w.case = None
        return {**asdict(case), "outcome": outcome, "findings": [[outcome, sig]], "mutation": mutation, "rc": code,
                "stderr": out[-2000:], "detail": detail, "seconds": round(elapsed, 3)}

    def _respawn(self, w: _Worker, number: int) -> None:
        if self.keep_dir is not None:
            box = sandbox(w.root, number)
            if box.exists():
                shutil.rmtree(self.keep_dir, ignore_errors=True)
                shutil.copytree(box, self.keep_dir, symlinks=True)
        self.workers[w.index] = _Worker(self, w.index)

    def run(self, cases: Iterable[Case], on_result: Callable[[dict[str, Any]], None]) -> None:
        """Run ``cases``; ``on_result`` gets each result dict as it arrives."""
        todo = iter(cases)
        exhausted = False
        while True:
            for i, w in enumerate(self.workers):
                if w.case is None and not exhausted and self.limits.recycle and w.done >= self.limits.recycle:
                    w.stop()
                    w = self.workers[i] = _Worker(self, i)
                if w.case is None and not exhausted:
                    nxt = next(todo, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        w.send(nxt, self.limits.timeout)
            busy = [w for w in self.workers if w.case is not None]
            if not busy:
                return
            now = time.monotonic()
            ready = wait([w.conn for w in busy], timeout=max(0.0, min(w.deadline for w in busy) - now))
            for w in busy:
                if w.conn in ready:
                    try:
                        tag, res = w.conn.recv()
                    except (EOFError, OSError):
                        number = w.case.number if w.case else -1
                        on_result(self._dead(w, "abort"))
                        self._respawn(w, number)
                        continue
                    w.case = None
                    w.done += 1
                    on_result(res)
                elif time.monotonic() > w.deadline:
                    number = w.case.number if w.case else -1
                    on_result(self._dead(w, "hang"))
                    self._respawn(w, number)


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""


def plan(corpus: Corpus, seed: int, numbers: Iterable[int]) -> list[Case]:
    """The planned cases ``numbers`` of a run with ``seed``."""
    return [plan_case(corpus, seed, i) for i in numbers]
