"""Kill test of the fuzzer (:mod:`voxfield.bench.fuzz`): interrupted writes leave no debris.

Each trial starts a real ``voxfield compress`` / ``decompress`` subprocess on a volume big
enough for its write to take a while, SIGKILLs it at a seeded moment between the end of
the imports and the end of an uninterrupted run, then runs the same command again and
checks that it exits 0, that the output folder then holds no ``.voxfield-*`` entry, and
that the output is complete (it reads back to the original data).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

#: (name, command with {in}/{out} placeholders, output name)
COMMANDS: list[tuple[str, list[str], str]] = [
    ("compress-zstd", ["compress", "{in}/big.mrc", "-o", "{out}/big.vxf", "--codec", "zstd", "--force"], "big.vxf"),
    ("compress-gzip", ["compress", "{in}/big.mrc", "-o", "{out}/big.vxf", "--codec", "gzip", "--force",
                       "--no-check"], "big.vxf"),
    ("decompress-zarr", ["decompress", "{in}/big.vxf", "-o", "{out}/big.ome.zarr", "--force"], "big.ome.zarr"),
    ("decompress-tif", ["decompress", "{in}/big.vxf", "-o", "{out}/big.tif", "--force"], "big.tif"),
    ("decompress-mrc", ["decompress", "{in}/big.vxf", "-o", "{out}/big.mrc", "--force"], "big.mrc"),
    ("decompress-h5", ["decompress", "{in}/big.vxf", "-o", "{out}/big.h5", "--force"], "big.h5"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "voxfield", *argv], cwd=cwd, env=_env(), capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stderr[-2000:], time.perf_counter() - t0


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".voxfield")) if folder.is_dir() else []


def _setup(work: Path, edge: int) -> np.ndarray:
    """``in/big.mrc`` (an ``edge``³ tiling of the shipped map) and ``in/big.vxf`` (zstd)."""
    from voxfield.bench.fuzz_seeds import mrc_bytes
    from voxfield.cli.main import main
    from voxfield.data import example_map_path
    from voxfield.io import read_volume

    m = np.asarray(read_volume(example_map_path()).data, np.float32)
    reps = -(-edge // m.shape[0])
    big = np.ascontiguousarray(np.tile(m, (reps, reps, reps))[:edge, :edge, :edge])
    (work / "in").mkdir(parents=True, exist_ok=True)
    (work / "in" / "big.mrc").write_bytes(mrc_bytes(big))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["compress", str(work / "in" / "big.mrc"), "-o", str(work / "in" / "big.vxf"), "--codec", "zstd",
                   "--force", "--no-check"])
    if rc != 0:
        raise RuntimeError("kill test: could not make big.vxf")
    return big


def _complete(path: Path, big: np.ndarray) -> str:
    """'' when ``path`` reads back to ``big``, else why not."""
    try:
        if path.suffix == ".vxf":
            from voxfield.compress.api import decompress

            got = np.asarray(decompress(path).data)
        else:
            from voxfield.io import read_volume

            got = np.asarray(read_volume(path).data)
    except Exception as exc:  # noqa: BLE001
        return f"output unreadable: {type(exc).__name__}: {exc}"
    if got.shape != big.shape or not np.array_equal(got, big):
        return f"output differs (shape {got.shape})"
    return ""


def kill_check(trials: int = 6, seed: int = 0, *, edge: int = 128, work_dir: Path | None = None,
               log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run ``trials`` kill-and-rerun trials; returns one dict per trial with its ``outcome``
    (``ok``, ``debris``, ``incomplete``, ``bad-exit``)."""
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="vxfuzz-kill-")) if work_dir is None else work_dir
    rng = Random(f"vxfuzz-kill:{seed}")
    out: list[dict[str, Any]] = []
    try:
        big = _setup(work, edge)
        t_import = _run(["--version"], work)[2]
        full: dict[str, float] = {}
        for t in range(trials):
            name, argv, out_name = COMMANDS[rng.randrange(len(COMMANDS))] if t >= len(COMMANDS) else COMMANDS[t]
            odir = work / f"out-{t}"
            odir.mkdir()
            args = [a.replace("{in}", str(work / "in")).replace("{out}", str(odir)) for a in argv]
            if name not in full:
                rc, err, secs = _run(args, work)
                full[name] = secs
                shutil.rmtree(odir)
                odir.mkdir()
            lo = 0.8 * t_import
            # half the kills land while a .voxfield-* temporary exists (mid-write), the others
            # at a seeded moment between the end of the imports and the end of a normal run
            on_temp = rng.random() < 0.5
            delay = rng.random() * 0.05 if on_temp else lo + rng.random() * max(0.05, full[name] - lo)
            proc = subprocess.Popen([sys.executable, "-m", "voxfield", *args], cwd=work, env=_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            t_start, seen, killed = time.monotonic(), None, False
            while proc.poll() is None:
                now = time.monotonic()
                if on_temp and seen is None and _debris(odir):
                    seen = now
                if (seen is not None and now - seen >= delay) or (not on_temp and now - t_start >= delay):
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.002)
            proc.wait()
            when = (f"{time.monotonic() - t_start:.2f} s, " + ("mid-write" if seen is not None else "timed")) \
                if killed else "not killed (finished first)"
            left = _debris(odir)
            rc, err, _ = _run(args, work)
            after = _debris(odir) + _debris(work / "in")
            why = _complete(odir / out_name, big) if rc == 0 else ""
            outcome = "bad-exit" if rc != 0 else "debris" if after else "incomplete" if why else "ok"
            rec = {"trial": t, "command": name, "kill": when, "run_s": round(full[name], 3),
                   "killed": killed, "debris_after_kill": left, "rerun_rc": rc, "debris_after_rerun": after,
                   "incomplete": why, "stderr": err.strip().splitlines()[-1:] if rc else [], "outcome": outcome}
            out.append(rec)
            if log:
                log(f"kill trial {t}: {name}: {when} (run {full[name]:.2f} s) -> {outcome}"
                    + (f" (left {left})" if left else ""))
            shutil.rmtree(odir, ignore_errors=True)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return out
