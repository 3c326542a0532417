"""Classic-codec baseline run (issue 2): every classic codec on the four real inputs at
ratios 16, 64 and 256, matched on the bytes of the .vxf file written.

    python benchmarks/run_classic.py            # writes benchmarks/results/classic/

Needs the real-data collection at ../shared/data (or $VOXFIELD_SHARED_DATA). Equivalent to
``voxfield bench --codecs all --ratios 16,64,256 -o benchmarks/results/classic``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxfield.bench import BenchConfig, default_datasets, run_benchmark, write_results
from voxfield.codecs.registry import available_codecs

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "classic")
    ap.add_argument("--codecs", default="all")
    ap.add_argument("--ratios", default="16,64,256")
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    codecs = available_codecs() if args.codecs == "all" else args.codecs.split(",")
    ratios = [float(r) for r in args.ratios.split(",")]
    doc = run_benchmark(default_datasets(args.data_root), BenchConfig(codecs=codecs, ratios=ratios))
    doc["command"] = "python benchmarks/run_classic.py"
    for p in write_results(doc, args.out):
        print(p)


if __name__ == "__main__":
    main()
