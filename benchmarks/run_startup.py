"""Start-up time (issue 15): wall time and peak memory of the light commands, before and
after the start-up work.

Each command runs as ``python -m voxfield ...`` in a fresh interpreter, with ``PYTHONPATH``
pointing at the ``src/`` folder of the tree being measured: this tree ("after") and a git
worktree of the commit before any start-up work ("before", 58aa303; created in a temporary
folder and removed at the end unless ``--before`` names an existing tree). Runs of the two
trees are interleaved; each command is run once untimed first (so both trees run from
compiled bytecode, cached under a temporary ``PYTHONPYCACHEPREFIX``, as an installed
package would), then ``--runs`` times. Reported: the median wall time and the median peak
resident set (``ru_maxrss`` of the child, from ``os.wait4``), and whether the command
imported torch (one extra run with ``-X importtime``).

Inputs: the shipped 64^3 EMD-3488 crop and a 100^3 float32 map made from it (cubic
upsampling), written to a temporary folder.

    python benchmarks/run_startup.py                 # 5 timed runs per command and tree
    python benchmarks/run_startup.py --runs 9 --before /tmp/voxfield-before

Writes results/startup/{results.json,results.md,startup.png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The last commit before any start-up work.
BEFORE_COMMIT = "58aa303"
#: Modules whose import the light commands must avoid (``tests/test_startup.py``).
HEAVY = ("torch", "matplotlib", "dask", "gemmi", "scipy.optimize")
MB = 1e6
#: GNU time, for the peak resident set of each run.
TIME = "/usr/bin/time"


def commands(maps: Path) -> list[dict]:
    """The measured commands: name, argv after ``python -m voxfield``, and the bars of issue 15."""
    crop = ROOT / "src" / "voxfield" / "data" / "emd_3488_crop64.mrc.gz"
    big = maps / "map100.mrc"
    return [
        {"name": "--help", "argv": ["--help"], "bar_s": 0.5, "bar_mb": 120},
        {"name": "info crop64.mrc.gz", "argv": ["info", str(crop)], "bar_s": 0.8, "bar_mb": None},
        {"name": "info 100^3 .mrc", "argv": ["info", str(big)], "bar_s": 0.8, "bar_mb": None},
        {"name": "compress --codec sperr --ratio 64 (100^3)",
         "argv": ["compress", str(big), "-o", "{tmp}/x.vxf", "--codec", "sperr", "--ratio", "64", "-f"],
         "bar_s": 1.5, "bar_mb": None},
        {"name": "decompress (100^3 sperr)", "argv": ["decompress", "{tmp}/x.vxf", "-o", "{tmp}/x.mrc", "-f"],
         "bar_s": None, "bar_mb": None},
    ]


def make_maps(folder: Path) -> None:
    """``map100.mrc``: the shipped crop upsampled to 100^3 (float32, cubic spline)."""
    import numpy as np
    import scipy.ndimage as ndi

    from voxfield.data import example_map_path
    from voxfield.io import Volume, read_volume, write_volume

    v = read_volume(example_map_path())
    data = ndi.zoom(v.data.astype(np.float64), 100 / 64, order=3).astype(np.float32)
    spacing = tuple(s * 64 / 100 for s in v.spacing)
    write_volume(Volume(data, "ZYX", spacing, v.unit, v.origin, {}), folder / "map100.mrc", overwrite=True)


def run_once(src: Path, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """One ``python -m voxfield`` run: (wall seconds, peak RSS in MB, exit code).

    The peak is GNU time's ``%M`` (``ru_maxrss`` of the child): measured through
    ``/usr/bin/time`` because a child forked straight from this (numpy-loaded) process
    would report this process's resident set as its own peak."""
    env = {**env, "PYTHONPATH": str(src)}
    rss_file = cwd / ".rss"
    cmd = [sys.executable, "-m", "voxfield", *argv]
    if Path(TIME).exists():
        cmd = [TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{src}: voxfield {' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    kb = int(rss_file.read_text().split()[-1]) if cmd[0] == TIME else usage.ru_maxrss
    return wall, kb * 1024 / MB, proc.returncode


def heavy_imports(src: Path, argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The :data:`HEAVY` modules a command imports (from ``-X importtime``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "voxfield", *argv], cwd=cwd,
                          env={**env, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True)
    seen = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in seen]


def ensure_before(path: Path) -> bool:
    """Create the "before" worktree at :data:`BEFORE_COMMIT` if missing; True if created."""
    if (path / "src" / "voxfield" / "__init__.py").exists():
        return False
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), BEFORE_COMMIT], check=True,
                   capture_output=True)
    return True


def check_tree(src: Path, env: dict[str, str]) -> None:
    """PYTHONPATH must win over the editable install."""
    out = subprocess.run([sys.executable, "-c", "import voxfield; print(voxfield.__file__)"], env={
        **env, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True).stdout.strip()
    if Path(out).resolve() != (src / "voxfield" / "__init__.py").resolve():
        raise RuntimeError(f"PYTHONPATH={src} imports voxfield from {out}")


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": sys.version.split()[0],
            "platform": platform.platform()}


def git_head() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True)
    return out.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")


def write_markdown(doc: dict, path: Path) -> None:
    m, rows = doc["machine"], doc["rows"]
    lines = [
        "# Start-up time (issue 15)",
        "",
        f"`python -m voxfield ...`, fresh interpreter per run, median of {doc['runs']} runs "
        "(after one untimed run; bytecode cached). Peak RSS: the child's `ru_maxrss`.",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Times are absolute seconds on "
        "this CPU; another machine gives other numbers.",
        f"Load average (1 min): {doc['load_start'][0]:.2f} before the first run, {doc['load_after'][0]:.2f} after "
        "the last (the runs themselves keep one of the cores busy; other jobs share the machine).",
        f"Before: {doc['before']['commit']}; after: {doc['after']['commit']}.",
        "",
        "| command | before s | after s | bar s | before peak MB | after peak MB | bar MB | heavy imports before | after |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        ok_s = "" if r["bar_s"] is None else (" ✓" if a["wall_s"] <= r["bar_s"] else " ✗")
        ok_mb = "" if r["bar_mb"] is None else (" ✓" if a["peak_mb"] <= r["bar_mb"] else " ✗")
        lines.append(
            f"| `{r['name']}` | {b['wall_s']:.2f} | {a['wall_s']:.2f}{ok_s} | "
            f"{'–' if r['bar_s'] is None else r['bar_s']} | {b['peak_mb']:.0f} | {a['peak_mb']:.0f}{ok_mb} | "
            f"{'–' if r['bar_mb'] is None else r['bar_mb']} | {', '.join(b['heavy']) or 'none'} | "
            f"{', '.join(a['heavy']) or 'none'} |")
    lines += ["", "Heavy imports: which of " + ", ".join(HEAVY) + " the command imported (`-X importtime`).", ""]
    path.write_text("\n".join(lines))


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = doc["rows"]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, unit, bar_key in ((axes[0], "wall_s", "wall time (s)", "bar_s"),
                                   (axes[1], "peak_mb", "peak RSS (MB)", "bar_mb")):
        ax.bar(x - 0.2, [r["before"][key] for r in rows], 0.4, label="before (58aa303)", color="#bbbbbb")
        ax.bar(x + 0.2, [r["after"][key] for r in rows], 0.4, label="after", color="#3b75af")
        label = "bar (issue 15)"
        for i, r in enumerate(rows):
            if r[bar_key] is not None:
                ax.plot([i - 0.45, i + 0.45], [r[bar_key]] * 2, color="#c0392b", lw=1.5, label=label)
                label = None
        ax.set_xticks(x, [r["name"].replace(" (", "\n(").replace(" --codec", "\n--codec") for r in rows], fontsize=7)
        ax.set_ylabel(unit)
        ax.set_ylim(0, 1.25 * max(max(r["before"][key], r["after"][key]) for r in rows))
        ax.legend(fontsize=8, ncol=3, loc="upper center")
    fig.suptitle(f"voxfield start-up, median of {doc['runs']} runs, {doc['machine']['cores']} cores "
                 f"(load {doc['load_start'][0]:.1f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "startup")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, default=Path(tempfile.gettempdir()) / "voxfield-before",
                    help=f"a checkout of {BEFORE_COMMIT} (created as a git worktree if missing, then removed)")
    args = ap.parse_args()
    load_start = os.getloadavg()
    created = ensure_before(args.before)
    trees = {"before": args.before / "src", "after": ROOT / "src"}
    try:
        with tempfile.TemporaryDirectory(prefix="voxfield-startup-") as tmp:
            tmp_p = Path(tmp)
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
            env["PYTHONPYCACHEPREFIX"] = str(tmp_p / "pycache")
            for src in trees.values():
                check_tree(src, env)
            make_maps(tmp_p)
            cmds = commands(tmp_p)
            work = {t: tmp_p / t for t in trees}
            for w in work.values():
                w.mkdir()

            def argv_for(c: dict, tree: str) -> list[str]:
                return [a.replace("{tmp}", str(work[tree])) for a in c["argv"]]

            for c in cmds:  # warm-up: bytecode, file cache, and x.vxf for decompress
                for tree, src in trees.items():
                    run_once(src, argv_for(c, tree), env, work[tree])
            heavy = {(c["name"], t): heavy_imports(src, argv_for(c, t), env, work[t]) for c in cmds
                     for t, src in trees.items()}
            load_before = os.getloadavg()
            samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for _ in range(args.runs):
                for c in cmds:
                    for tree, src in trees.items():
                        wall, peak, _rc = run_once(src, argv_for(c, tree), env, work[tree])
                        samples.setdefault((c["name"], tree), []).append((wall, peak))
            load_after = os.getloadavg()
    finally:
        if created:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(args.before)], check=False)

    rows = []
    for c in cmds:
        row = {"name": c["name"], "argv": c["argv"], "bar_s": c["bar_s"], "bar_mb": c["bar_mb"]}
        for tree in trees:
            s = samples[(c["name"], tree)]
            row[tree] = {"wall_s": statistics.median(w for w, _ in s), "wall_min_s": min(w for w, _ in s),
                         "peak_mb": statistics.median(p for _, p in s), "heavy": heavy[(c["name"], tree)],
                         "samples": [{"wall_s": w, "peak_mb": p} for w, p in s]}
        rows.append(row)
    doc = {
        "issue": 15, "runs": args.runs, "machine": machine(),
        "load_start": list(load_start), "load_before": list(load_before), "load_after": list(load_after),
        "before": {"commit": BEFORE_COMMIT}, "after": {"commit": git_head()},
        "invocation": "python -m voxfield ARGS, PYTHONPATH=<tree>/src, PYTHONPYCACHEPREFIX=<tmp>",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "results.md")
    plot(doc, args.out / "startup.png")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
