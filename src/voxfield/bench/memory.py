"""Run a function in a forked child and measure its time and peak memory.

Peak memory is the growth of the child's resident set during the call: the child resets
its high-water mark (``/proc/self/clear_refs``), notes its current RSS, runs, and reads
``VmHWM``. This counts memory allocated by C libraries (codecs, ffmpeg pipes) as well as
by Python, which ``tracemalloc`` would miss. Where ``/proc`` is missing (not Linux), the
peak is reported as None.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections.abc import Callable
from typing import Any


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> int | None:
    """Reset this process's RSS high-water mark; return the current RSS in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def peak_since(baseline_kib: int | None) -> float | None:
    """MiB of RSS growth above ``baseline_kib`` at the high-water mark."""
    hwm = _status_kib("VmHWM")
    if hwm is None or baseline_kib is None:
        return None
    return max(0.0, (hwm - baseline_kib) / 1024.0)


def _child(conn: Any, fn: Callable[[], dict[str, Any]]) -> None:
    try:
        conn.send(("ok", fn()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


def run_isolated(fn: Callable[[], dict[str, Any]], *, timeout: float = 1800.0) -> dict[str, Any]:
    """Run ``fn`` in a forked child and return its result dict, or
    ``{"error": ..., "traceback": ...}`` if it raised, died or timed out."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn))
    t0 = time.perf_counter()
    proc.start()
    child.close()
    result: dict[str, Any]
    if parent.poll(timeout):
        try:
            msg = parent.recv()
        except EOFError:
            msg = ("error", "child exited without a result", "")
        result = msg[1] if msg[0] == "ok" else {"error": msg[1], "traceback": msg[2]}
    else:
        proc.kill()
        result = {"error": f"timed out after {timeout:.0f} s"}
    proc.join(10)
    if proc.exitcode not in (0, None) and "error" not in result:
        result = {"error": f"child exited with code {proc.exitcode}"}
    result.setdefault("wall_s", time.perf_counter() - t0)
    parent.close()
    return result


def measure_call(fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """Call ``fn`` in this process: (its result, seconds, peak MiB growth)."""
    base = reset_peak()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, peak_since(base)


__all__ = ["measure_call", "peak_since", "reset_peak", "run_isolated"]

