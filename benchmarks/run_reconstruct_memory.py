"""Peak memory of `voxfield reconstruct train` on a large particle set (issue 19's bar: at most
8 GB for 50,000 images of 128 px).

Runs the training command (its own defaults, ``--epochs`` passes; then the encoding of every
particle and its closed-form basis weights, as a user's run does) and records:

* the peak resident set of the process (``wait4``'s ``ru_maxrss``), which counts the pages of
  the memory-mapped particle stack the process has read as well as its own allocations;
* a trace of its resident memory every ``--interval`` seconds from ``/proc/PID/status``:
  ``RssAnon`` (the process's own memory: the images when the stack is read into memory,
  i.e. up to ``voxfield.reconstruct.api.IN_MEMORY_LIMIT``, the model, optimiser, batches)
  and ``RssFile`` (file-backed pages, i.e. the memory-mapped stack, which the kernel can
  drop and re-read);
* the wall time, per epoch from the run's log.

    python benchmarks/cryobench_data.py --out /tmp/cryobench128 --box 128 --snr 0.01 --kinds hinge \\
        --summary benchmarks/results/cryobench_data_128
    python benchmarks/run_reconstruct_memory.py --data /tmp/cryobench128/hinge_snr0.01 --work /tmp/mem128

Writes ``results.json``, ``results.md`` and ``memory.png`` under ``--out``
(default ``benchmarks/results/reconstruct_memory/``); ``--report-only`` remakes the last two
from ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "reconstruct_memory"
BAR_MIB = 8e9 / 2**20  # 8 GB


def proc_rss(pid: int) -> dict[str, float] | None:
    """``VmRSS``, ``RssAnon``, ``RssFile`` of ``pid`` in MiB (``None`` once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = float(val.split()[0]) / 1024.0
    return out or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="A `cryobench_data.py` / `reconstruct simulate` folder.")
    ap.add_argument("--work", type=Path, required=True, help="Folder for the run.")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--interval", type=float, default=2.0, help="Seconds between memory samples.")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report-only", action="store_true", help="Remake results.md and memory.png from results.json.")
    args = ap.parse_args()
    if args.report_only:
        report(json.loads((args.out / "results.json").read_text()), args.out)
        return
    meta = json.loads((args.data / "meta.json").read_text())
    run = args.work / "run"
    args.work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "voxfield", "reconstruct", "train", str(args.data / "particles.mrcs"), "--poses",
           str(args.data / "poses.pkl"), "--ctf", str(args.data / "ctf.pkl"), "-o", str(run), "--epochs",
           str(args.epochs), "--no-resume", "--device", "cpu"]
    trace: list[dict[str, float]] = []
    log = args.work / "train.log"
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                r = proc_rss(p.pid)
                if r is not None:
                    trace.append({"t": time.perf_counter() - t0, **r})
                done.wait(args.interval)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
        done.set()
        th.join()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.exit(f"training failed ({rc}); see {log}")
    epochs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    peak = ru.ru_maxrss / 1024.0
    res: dict[str, Any] = {
        "data": {"path": str(args.data), "n_images": meta["n_images"], "box": meta["D"], "apix": meta["apix"],
                 "stack_mib": (args.data / "particles.mrcs").stat().st_size / 2**20},
        "command": " ".join(cmd), "epochs": args.epochs, "seconds": secs,
        "train_seconds_per_epoch": [e["elapsed_s"] for e in epochs],
        "peak_rss_mib": peak, "peak_anon_mib": max((s.get("RssAnon", 0.0) for s in trace), default=None),
        "peak_file_mib": max((s.get("RssFile", 0.0) for s in trace), default=None),
        "bar_mib": BAR_MIB, "meets_bar": peak <= BAR_MIB, "trace": trace,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    report(res, args.out)


def report(res: dict[str, Any], out: Path) -> None:
    """``results.md`` and ``memory.png`` of a measurement."""
    d, peak, secs, trace = res["data"], res["peak_rss_mib"], res["seconds"], res["trace"]
    md = [
        "# Peak memory of `voxfield reconstruct train`", "",
        f"{d['n_images']:,} images of {d['box']} px ({d['stack_mib']:.0f} MiB stack: read into memory up to "
        f"4 GiB, memory-mapped above), default settings, {res['epochs']} epoch(s), then encoding and "
        f"closed-form weights of every particle; {res['machine']['cores']} CPU cores. Peak RSS is `wait4`'s (it "
        "counts the mapped stack pages the process holds); anonymous (images in memory, model, batches) and "
        "file-backed peaks are from `/proc/PID/status` samples.", "",
        "| images | box | peak RSS (MiB) | peak anonymous (MiB) | peak file-backed (MiB) | bar (MiB) | met | "
        "wall (s) | train s/epoch |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        f"| {d['n_images']:,} | {d['box']} | {peak:.0f} | {res['peak_anon_mib']:.0f} | {res['peak_file_mib']:.0f} | "
        f"{BAR_MIB:.0f} | {'yes' if res['meets_bar'] else 'no'} | {secs:.0f} | "
        f"{', '.join(f'{x:.0f}' for x in res['train_seconds_per_epoch'])} |",
        "", f"Command: `{res['command']}`",
    ]
    (out / "results.md").write_text("\n".join(md) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    t = [s["t"] for s in trace]
    for key, label in (("VmRSS", "resident (total)"), ("RssAnon", "anonymous (images, model, batches)"),
                       ("RssFile", "file-backed (memory-mapped images)")):
        ax.plot(t, [s.get(key, float("nan")) for s in trace], label=label)
    ax.axhline(BAR_MIB, color="k", ls="--", lw=1, label="bar: 8 GB")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_title(f"voxfield reconstruct train: {d['n_images']:,} images of {d['box']} px")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=110)
    print("\n".join(md))


if __name__ == "__main__":
    main()
