"""The default method ``auto`` against every classic codec it can choose as a prior
(issue 16, first part: no learned prior yet), matched on the bytes of the files written.

    python benchmarks/run_auto.py                                # writes benchmarks/results/auto/
    python benchmarks/run_auto.py --ratios 64,256 --time-budget 20

For each input and target ratio: auto's PSNR and measured ratio, every classic codec's,
and auto's gain over the best classic codec at that target. Because files land within a
tolerance of the target (auto ±2 %, classic codecs ±3 %), the gain is also given *at
matched ratio*: the best codec's PSNR interpolated, linear in log ratio between its own
runs at neighbouring targets, at auto's measured ratio. PSNR uses each original's own
value range (max − min). Nothing in auto was tuned on these inputs; they are the four
real inputs of the classic benchmark (``voxfield.bench.default_datasets``).

Writes ``results.json``/``results.md``/``rd_*.png`` (every run, by ``voxfield.bench``) and
``auto_vs_classic.{json,md}``, ``gain.png``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from voxfield.bench import BenchConfig, default_datasets, run_benchmark, write_results

HERE = Path(__file__).resolve().parent
PRIORS = ("sperr", "hevc", "jpegxl", "jpeg2k", "sz3", "zfp")


def _psnr(run: dict[str, Any]) -> float | None:
    m = run.get("metrics") or {}
    v = m.get("psnr_db")
    return float(v) if v is not None and math.isfinite(v) else None


#: A curve is extended (its end segment, linear in log ratio) this far past its end ratios.
EXTEND = 0.05


def _interp(points: list[tuple[float, float]], ratio: float) -> float | None:
    """PSNR at ``ratio`` from (ratio, PSNR) points, linear in log ratio; past either end
    by at most :data:`EXTEND` (files land within a few percent of their target) the end
    segment is extended; None further out or with fewer than two points."""
    pts = sorted(points)
    if len(pts) < 2:
        return None
    if ratio < pts[0][0] * (1 - EXTEND) or ratio > pts[-1][0] * (1 + EXTEND):
        return None
    seg = next(((a, b) for a, b in zip(pts, pts[1:], strict=False) if a[0] <= ratio <= b[0]),
               (pts[0], pts[1]) if ratio < pts[0][0] else (pts[-2], pts[-1]))
    (r0, p0), (r1, p1) = seg
    if r1 <= r0:
        return None
    w = (math.log(ratio) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return p0 + w * (p1 - p0)


def compare(doc: dict[str, Any], auto_label: str) -> list[dict[str, Any]]:
    """One row per (input, target): auto vs the best classic codec."""
    runs = [r for r in doc["runs"] if r.get("hit") or r.get("file_bytes")]
    rows = []
    for ds in dict.fromkeys(r["dataset"] for r in runs):
        mine = [r for r in runs if r["dataset"] == ds]
        curves: dict[str, list[tuple[float, float]]] = {}
        for r in mine:
            if r["codec"] != auto_label and _psnr(r) is not None and r.get("ratio"):
                curves.setdefault(r["codec"], []).append((float(r["ratio"]), _psnr(r)))  # type: ignore[arg-type]
        for a in (r for r in mine if r["codec"] == auto_label):
            target = float(a["target"]["value"])
            same = {r["codec"]: r for r in mine if r["codec"] != auto_label and float(r["target"]["value"]) == target
                    and r.get("hit") and _psnr(r) is not None}
            pa = _psnr(a)
            row: dict[str, Any] = {"dataset": ds, "target": target, "auto_ratio": a.get("ratio"), "auto_psnr": pa,
                                   "auto_hit": bool(a.get("hit")), "auto_encode_s": a.get("encode_s"),
                                   "auto_decode_s": a.get("decode_s"), "note": a.get("note"),
                                   "classic": {c: (r["ratio"], _psnr(r)) for c, r in same.items()}}
            if same and pa is not None and a.get("hit"):
                best = max(same, key=lambda c: _psnr(same[c]))  # type: ignore[arg-type, return-value]
                row["best"], row["best_ratio"], row["best_psnr"] = best, same[best]["ratio"], _psnr(same[best])
                row["gain_same_target"] = pa - row["best_psnr"]
                at = {c: _interp(curves.get(c, []), float(a["ratio"])) for c in curves}
                at = {c: v for c, v in at.items() if v is not None}
                if at:
                    best_m = max(at, key=lambda c: at[c])
                    row["best_matched"], row["best_psnr_matched"] = best_m, at[best_m]
                    row["gain_matched"] = pa - at[best_m]
            rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], out: Path, command: str) -> None:
    lines = ["# auto vs the best classic codec", "", f"Command: `{command}`", "",
             "PSNR on each original's own value range (max − min). `gain (same target)`: auto minus the best "
             "classic codec at the same target ratio (each file within its tolerance). `gain (matched)`: auto minus "
             "the best classic codec's PSNR interpolated (linear in log ratio) at auto's measured ratio; – where "
             "auto's ratio lies outside the codecs' measured range. No learned prior yet (issue 16).", "",
             "| input | target | auto ratio | auto PSNR | best classic (same target) | its ratio | its PSNR | "
             "gain (same target) dB | gain (matched) dB | auto encode s |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        def f(v: Any, d: int = 2) -> str:
            return "–" if v is None else f"{v:.{d}f}"
        lines.append(f"| {r['dataset']} | {r['target']:g} | {f(r['auto_ratio'], 1)} | {f(r['auto_psnr'])} | "
                     f"{r.get('best', '–')} | {f(r.get('best_ratio'), 1)} | {f(r.get('best_psnr'))} | "
                     f"**{f(r.get('gain_same_target'))}** | {f(r.get('gain_matched'))} | {f(r['auto_encode_s'], 1)} |")
    g = [r["gain_matched"] for r in rows if r.get("gain_matched") is not None]
    s = [r["gain_same_target"] for r in rows if r.get("gain_same_target") is not None]
    if s:
        lines += ["", f"Gain at the same target: min {min(s):+.2f} dB, median {sorted(s)[len(s) // 2]:+.2f} dB, "
                  f"max {max(s):+.2f} dB over {len(s)} cells."]
    if g:
        lines += [f"Gain at matched ratio: min {min(g):+.2f} dB, median {sorted(g)[len(g) // 2]:+.2f} dB over "
                  f"{len(g)} cells."]
    (out / "auto_vs_classic.md").write_text("\n".join(lines) + "\n")
    (out / "auto_vs_classic.json").write_text(json.dumps(rows, indent=1))


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [r for r in rows if r.get("gain_same_target") is not None]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(cells)), 3.5))
    labels = [f"{r['dataset']}\n{r['target']:g}x" for r in cells]
    ax.bar(range(len(cells)), [r["gain_same_target"] for r in cells], color="tab:blue", label="same target")
    ax.scatter(range(len(cells)), [r.get("gain_matched", float("nan")) for r in cells], color="k", zorder=3,
               label="matched ratio")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(cells)), labels, fontsize=7)
    ax.set_ylabel("auto − best classic (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gain.png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "auto")
    ap.add_argument("--ratios", default="32,64,128,256,512")
    ap.add_argument("--time-budget", type=float, default=60.0, help="seconds per residual-filter fit")
    ap.add_argument("--only", default=None, help="comma-separated dataset names")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--tables-only", action="store_true", help="remake the comparison from OUT/results.json")
    args = ap.parse_args()
    auto_label = f"auto[time_budget={args.time_budget:g}]"
    if args.tables_only:
        doc = json.loads((args.out / "results.json").read_text())
        rows = compare(doc, auto_label)
        write_table(rows, args.out, doc.get("command", ""))
        plot(rows, args.out)
        print(args.out / "auto_vs_classic.md")
        return
    ratios = [float(r) for r in args.ratios.split(",")]
    datasets = default_datasets(args.data_root)
    if args.only:
        keep = set(args.only.split(","))
        datasets = [d for d in datasets if d.name in keep]
    doc = run_benchmark(datasets, BenchConfig(codecs=[auto_label, *PRIORS], ratios=ratios))
    command = "python benchmarks/run_auto.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if v is not None and k not in ("out", "tables_only"))
    doc["command"] = command
    args.out.mkdir(parents=True, exist_ok=True)
    for p in write_results(doc, args.out):
        print(p)
    rows = compare(doc, auto_label)
    write_table(rows, args.out, command)
    plot(rows, args.out)
    print(args.out / "auto_vs_classic.md")


if __name__ == "__main__":
    main()
