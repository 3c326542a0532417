"""Neural-codec run (issue 3): siren and sci beside the classic codecs, same run.

    python benchmarks/run_neural.py                 # all five inputs, ratios 64-512
    python benchmarks/run_neural.py --only emd_3488,llsm_raw --ratios 128,256

Writes results/neural/{results.json,results.md,rd_*.png}. Neural methods run with their
default settings (training time budget 180 s for volumes of 1M+ voxels, less for smaller
ones); every encode/decode time is measured in the same run on this machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxfield.bench import BenchConfig, run_benchmark, write_results
from voxfield.bench.datasets import NEURAL_DATASETS, default_datasets
from voxfield.bench.methods import parse_methods, with_settings

HERE = Path(__file__).resolve().parent
METHODS = "siren,sci,grid,sperr,sz3,zfp,hevc,jpeg2k,zstd"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "neural")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--ratios", default="64,128,256,512")
    ap.add_argument("--only", default=None, help="comma-separated dataset names")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--time-budget", type=float, default=None,
                    help="training seconds for every neural run (default: the methods' own size-scaled budget)")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else None
    datasets = default_datasets(args.data_root, NEURAL_DATASETS, names)
    methods = [with_settings(m, time_budget=args.time_budget) for m in parse_methods(args.methods)]
    cfg = BenchConfig(codecs=methods, ratios=[float(r) for r in args.ratios.split(",")], timeout_s=3600)
    doc = run_benchmark(datasets, cfg)
    doc["command"] = "python benchmarks/run_neural.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k not in ("out", "data_root"))
    for p in write_results(doc, args.out):
        print(p)


if __name__ == "__main__":
    main()
