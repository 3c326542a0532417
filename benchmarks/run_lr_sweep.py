"""Learning-rate-free training check (issue 3): SIREN with the default automatic rate
(range test) and with Prodigy, against a 4-point sweep of fixed Adam rates, on two inputs
at 128x, same time budget for every run.

    python benchmarks/run_lr_sweep.py     # writes results/lr_sweep/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxfield.bench import BenchConfig, run_benchmark, write_results
from voxfield.bench.datasets import NEURAL_DATASETS, default_datasets
from voxfield.bench.methods import with_settings

HERE = Path(__file__).resolve().parent
VARIANTS = ["siren", "siren[optimizer=prodigy]"] + [f"siren[optimizer=adam,lr={lr}]" for lr in ("1e-4", "3e-4", "1e-3", "3e-3")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lr_sweep")
    ap.add_argument("--only", default="emd_3488,calcium_2Dt")
    ap.add_argument("--ratios", default="128")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="training seconds for every neural run (default: the methods' own size-scaled budget)")
    args = ap.parse_args()
    datasets = default_datasets(None, NEURAL_DATASETS, args.only.split(","))
    doc = run_benchmark(datasets, BenchConfig(codecs=[with_settings(v, time_budget=args.time_budget) for v in VARIANTS], ratios=[float(r) for r in args.ratios.split(",")],
                                              timeout_s=3600))
    doc["command"] = f"python benchmarks/run_lr_sweep.py --only {args.only} --ratios {args.ratios}" + (f" --time-budget {args.time_budget:g}" if args.time_budget else "")
    for p in write_results(doc, args.out):
        print(p)


if __name__ == "__main__":
    main()
