"""Hybrid method (issue 7): each hybrid beside its prior codec alone and the pure neural
method, same run, on the neural-codec inputs plus the bead stack and the HeLa image.

    python benchmarks/run_hybrid.py                       # everything (about 1.5 h on 2 cores)
    python benchmarks/run_hybrid.py --only emd_3488 --ratios 256

Writes results/hybrid/{results.json,results.md,rd_*.png} (all runs) and
{hybrid_vs_prior.md,hybrid_vs_prior.json,gain_256.png}: the hybrid's PSNR minus its
prior's PSNR interpolated (linearly in log ratio) at the hybrid's *measured* ratio, so the
comparison is at matched ratio even where the two files land a percent apart. PSNR uses
each original's own value range.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from voxfield.bench import BenchConfig, run_benchmark, write_results
from voxfield.bench.datasets import NEURAL_DATASETS, default_datasets

HERE = Path(__file__).resolve().parent
EXTRA_DATASETS = (
    ("bead", "fluorescence/bian_Bead_Image1_crop.tif", "ZYX", "widefield bead stack, 41x150x150 uint8"),
    ("hela_3ch", "multichannel/bian_hela-cells_3ch.tif", "YXS", "HeLa cells, 512x672, 3 channels uint16 (12-bit)"),
)
#: (hybrid, its prior) pairs run at every ratio / only at --side-ratios
MAIN_PAIRS = (("hybrid:sperr", "sperr"), ("hybrid:hevc", "hevc"))
SIDE_PAIRS = (("hybrid:sz3", "sz3"), ("hybrid:jpeg2k", "jpeg2k"))


def with_budget(name: str, seconds: float) -> str:
    return f"{name}[time_budget={seconds:g}]"


def prior_psnr_at(runs: list[dict[str, Any]], dataset: str, prior: str, ratio: float) -> float | None:
    """The prior's PSNR at ``ratio``, interpolated linearly in log(ratio) between its two
    nearest measured points (None outside the measured range by more than 3 %)."""
    pts = sorted((r["ratio"], r["metrics"]["psnr_db"]) for r in runs
                 if r["dataset"] == dataset and r["codec"] == prior and "error" not in r and r.get("hit") is not False)
    if not pts:
        return None
    for (r0, p0), (r1, p1) in zip(pts, pts[1:], strict=False):
        if r0 <= ratio <= r1:
            t = (math.log(ratio) - math.log(r0)) / (math.log(r1) - math.log(r0)) if r1 > r0 else 0.0
            return p0 + t * (p1 - p0)
    near = min(pts, key=lambda p: abs(math.log(p[0] / ratio)))
    if abs(math.log(near[0] / ratio)) <= math.log(1.03):
        return near[1]
    return None


def comparison(doc: dict[str, Any], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    runs = doc["runs"]
    rows = []
    for hyb, prior in pairs:
        for r in runs:
            if r["codec"] != hyb or "error" in r:
                continue
            target = r["target"]["value"]
            same = next((p for p in runs if p["dataset"] == r["dataset"] and p["codec"] == prior
                         and p["target"]["value"] == target and "error" not in p), None)
            interp = prior_psnr_at(runs, r["dataset"], prior, r["ratio"])
            fit = r.get("fit") or {}
            rows.append({
                "dataset": r["dataset"], "hybrid": hyb.split("[")[0], "prior": prior, "target": target,
                "hybrid_ratio": r["ratio"], "hybrid_psnr": r["metrics"]["psnr_db"],
                "prior_ratio": same["ratio"] if same else None,
                "prior_psnr": same["metrics"]["psnr_db"] if same else None,
                "prior_psnr_at_hybrid_ratio": interp,
                "gain_db": None if interp is None else r["metrics"]["psnr_db"] - interp,
                "chosen": fit.get("chosen"), "blocks_on": fit.get("blocks_on"), "blocks": fit.get("blocks"),
                "residual_bytes": fit.get("residual_bytes"), "hybrid_encode_s": r["encode_s"],
                "prior_encode_s": same["encode_s"] if same else None,
            })
    return rows


def neural_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Pure neural vs hybrid:sperr at the same target: PSNR and encode time."""
    runs = doc["runs"]
    out = []
    for r in runs:
        if not r["codec"].startswith("sci") or "error" in r:
            continue
        h = next((x for x in runs if x["dataset"] == r["dataset"] and x["codec"].startswith("hybrid:sperr")
                  and x["target"]["value"] == r["target"]["value"] and "error" not in x), None)
        if h is None:
            continue
        out.append({"dataset": r["dataset"], "target": r["target"]["value"],
                    "neural_psnr": r["metrics"]["psnr_db"], "neural_encode_s": r["encode_s"],
                    "hybrid_psnr": h["metrics"]["psnr_db"], "hybrid_encode_s": h["encode_s"],
                    "encode_time_ratio": h["encode_s"] / r["encode_s"]})
    return out


def markdown(rows: list[dict[str, Any]], nrows: list[dict[str, Any]], command: str) -> str:
    def f(v: Any, fmt: str = ".2f") -> str:
        return "–" if v is None else format(v, fmt)

    lines = ["# Hybrid vs its prior codec alone (matched ratio)", "",
             f"Command: `{command}`", "",
             "PSNR on each original's own value range (max - min). `gain` = hybrid PSNR - prior PSNR "
             "interpolated (linear in log ratio) at the hybrid's measured ratio. `chosen`: the candidate "
             "the encoder kept (prior alone or prior + residual filter); `blocks`: blocks where the "
             "residual is applied.", "",
             "| dataset | hybrid | target | hybrid ratio | hybrid PSNR | prior ratio | prior PSNR | prior PSNR @ hybrid ratio "
             "| gain dB | chosen | blocks | residual B | enc s hybrid / prior |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["hybrid"], r["target"])):
        blocks = "–" if not r["blocks"] else f"{r['blocks_on']}/{r['blocks']}"
        enc = "–" if r["prior_encode_s"] in (None, 0) else f"{r['hybrid_encode_s']:.1f} / {r['prior_encode_s']:.2f}"
        lines.append(f"| {r['dataset']} | {r['hybrid']} | {r['target']:g} | {f(r['hybrid_ratio'], '.1f')} | "
                     f"{f(r['hybrid_psnr'])} | {f(r['prior_ratio'], '.1f')} | {f(r['prior_psnr'])} | "
                     f"{f(r['prior_psnr_at_hybrid_ratio'])} | **{f(r['gain_db'], '+.2f')}** | {r['chosen']} | "
                     f"{blocks} | {r['residual_bytes'] if r['residual_bytes'] is not None else '–'} | {enc} |")
    worst = min((r["gain_db"] for r in rows if r["gain_db"] is not None), default=None)
    lines += ["", f"Smallest gain over all rows: {f(worst, '+.3f')} dB."]
    at256 = sorted({r["dataset"] for r in rows if r["target"] == 256 and (r["gain_db"] or 0) >= 0.5
                    and r["hybrid"] == "hybrid:sperr"})
    lines += [f"hybrid:sperr >= +0.5 dB at 256x on: {', '.join(at256) or 'none'}."]
    if nrows:
        lines += ["", "## Hybrid vs pure neural (sci) at the same target", "",
                  "| dataset | target | sci PSNR | sci encode s | hybrid:sperr PSNR | hybrid encode s | hybrid / sci time |",
                  "|---|---|---|---|---|---|---|"]
        for n in nrows:
            lines.append(f"| {n['dataset']} | {n['target']:g} | {n['neural_psnr']:.2f} | {n['neural_encode_s']:.1f} | "
                         f"{n['hybrid_psnr']:.2f} | {n['hybrid_encode_s']:.1f} | {n['encode_time_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def gain_plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hybrids = sorted({r["hybrid"] for r in rows})
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(hybrids), figsize=(4.2 * len(hybrids), 3.6), squeeze=False)
    for ax, h in zip(axes[0], hybrids, strict=True):
        for ds in datasets:
            pts = sorted((r["hybrid_ratio"], r["gain_db"]) for r in rows
                         if r["hybrid"] == h and r["dataset"] == ds and r["gain_db"] is not None)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=ds)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("measured ratio")
        ax.set_ylabel("PSNR gain over prior (dB)")
        ax.set_title(h)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "hybrid")
    ap.add_argument("--ratios", default="64,128,256,512")
    ap.add_argument("--side-ratios", default="256", help="ratios of the sz3/jpeg2k hybrids")
    ap.add_argument("--only", default=None, help="comma-separated dataset names")
    ap.add_argument("--time-budget", type=float, default=60.0, help="seconds per residual-filter fit")
    ap.add_argument("--neural", default="emd_3488,llsm_raw,bead", help="datasets for the pure-neural comparison at 256x")
    ap.add_argument("--neural-budget", type=float, default=60.0)
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    names = args.only.split(",") if args.only else None
    datasets = default_datasets(args.data_root, NEURAL_DATASETS + EXTRA_DATASETS, names)
    ratios = [float(r) for r in args.ratios.split(",")]
    docs = []
    main_methods = [m for h, p in MAIN_PAIRS for m in (with_budget(h, args.time_budget), p)]
    docs.append(run_benchmark(datasets, BenchConfig(codecs=main_methods + ["zstd"], ratios=ratios, timeout_s=3600)))
    side = [float(r) for r in args.side_ratios.split(",") if r]
    if side:
        side_methods = [m for h, p in SIDE_PAIRS for m in (with_budget(h, args.time_budget), p)]
        docs.append(run_benchmark(datasets, BenchConfig(codecs=side_methods, ratios=side, timeout_s=3600)))
    neural_sets = [d for d in datasets if d.name in args.neural.split(",")]
    if neural_sets:
        docs.append(run_benchmark(neural_sets, BenchConfig(codecs=[f"sci[time_budget={args.neural_budget:g}]"],
                                                          ratios=[256.0], timeout_s=3600)))
    doc = docs[0]
    for d in docs[1:]:
        doc["runs"] += d["runs"]
        doc["duration_s"] += d["duration_s"]
    doc["config"]["codecs"] = sorted({r["codec"] for r in doc["runs"]})
    command = "python benchmarks/run_hybrid.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k not in ("out", "data_root"))
    doc["command"] = command
    for p in write_results(doc, args.out):
        print(p)
    pairs = [(with_budget(h, args.time_budget), p) for h, p in MAIN_PAIRS + SIDE_PAIRS]
    rows = comparison(doc, pairs)
    nrows = neural_rows(doc)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hybrid_vs_prior.json").write_text(json.dumps({"rows": rows, "neural": nrows, "command": command},
                                                              indent=1))
    (args.out / "hybrid_vs_prior.md").write_text(markdown(rows, nrows, command))
    gain_plot(rows, args.out / "gain.png")
    print(args.out / "hybrid_vs_prior.md")


if __name__ == "__main__":
    main()
