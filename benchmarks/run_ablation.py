"""SCI ablation (issue 3, after SCI's Table 2) on EMD-3488 at 128x and 256x:
partition (adaptive / equidistant / none), funnel ratio fr, allocation mode, deblocking,
and voxfield's changes against the paper's exact configuration.

    python benchmarks/run_ablation.py     # writes results/ablation/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxfield.bench import BenchConfig, run_benchmark, write_results
from voxfield.bench.datasets import NEURAL_DATASETS, default_datasets
from voxfield.bench.methods import with_settings

HERE = Path(__file__).resolve().parent
PAPER = "min_block_params=0,omega_per_cycle=none,deblock=h264,overlap=0"
VARIANTS = [
    "sci",                                   # voxfield defaults
    f"sci[{PAPER}]",                         # SCI as published (a_max 50, w0 20, fr 2.2, size/D, H.264-style filter)
    "sci[partition=equidistant]",            # EP
    "sci[partition=none]",                   # NP (one block)
    "sci[fr=1.0]",
    "sci[fr=3.5]",
    "sci[allocation=size]",
    "sci[allocation=D]",
    "sci[allocation=equal]",
    "sci[deblock=none,overlap=0]",
    "sci[deblock=h264,overlap=0]",
    "sci[omega_per_cycle=none]",             # fixed w0 = 20 (SCI) instead of spectrum-adapted
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ablation")
    ap.add_argument("--ratios", default="128,256")
    ap.add_argument("--only", default="emd_3488")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="training seconds for every neural run (default: the methods' own size-scaled budget)")
    args = ap.parse_args()
    datasets = default_datasets(None, NEURAL_DATASETS, args.only.split(","))
    doc = run_benchmark(datasets, BenchConfig(codecs=[with_settings(v, time_budget=args.time_budget) for v in VARIANTS], ratios=[float(r) for r in args.ratios.split(",")],
                                              timeout_s=3600))
    doc["command"] = f"python benchmarks/run_ablation.py --ratios {args.ratios} --only {args.only}" + (f" --time-budget {args.time_budget:g}" if args.time_budget else "")
    for p in write_results(doc, args.out):
        print(p)


if __name__ == "__main__":
    main()
