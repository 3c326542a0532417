"""Science-lossless ratio (issue 4): for each codec, the highest compression ratio whose
decoded EMD-3488 map keeps FSC >= 0.9 against the original in every shell out to the
map's resolution (3.2 Å). Each row is a full search (doubling, then bisection to 5 %);
ratios are measured on the bytes of the .vxf file written.

    python benchmarks/run_science_lossless.py                       # classic codecs
    python benchmarks/run_science_lossless.py --methods sci,grid --time-budget 45 --out results/science_lossless_neural

Writes results/science_lossless/{results.json,results.md,fsc_vs_ratio.png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from voxfield.bench.datasets import find_data_root  # noqa: E402
from voxfield.bench.methods import MethodSpec, parse_methods, with_settings  # noqa: E402
from voxfield.bench.runner import machine_info  # noqa: E402
from voxfield.compress.api import decompress  # noqa: E402
from voxfield.compress.modes.science import science_lossless  # noqa: E402
from voxfield.io import read_volume  # noqa: E402

HERE = Path(__file__).resolve().parent
CLASSIC = "sperr,hevc,jpegxl,jpeg2k,zfp,sz3,quant"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "science_lossless")
    ap.add_argument("--methods", default=CLASSIC)
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--resolution", type=float, default=3.2)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--time-budget", type=float, default=None, help="training seconds per neural compression")
    args = ap.parse_args()
    src = args.input or find_data_root() / "cryoem_maps" / "emd_3488.mrc"
    vol = read_volume(src)
    spacing = tuple(vol.spacing_of(a) for a in "ZYX")
    rows = []
    for text in parse_methods(args.methods):
        spec = MethodSpec.parse(with_settings(text, time_budget=args.time_budget))
        t0 = time.perf_counter()
        tol = 0.02 if spec.neural else 0.03
        res = science_lossless(vol.data, lambda t, s=spec: s.encode(vol, t)[0],
                               lambda b: decompress(b).data, spacing, args.resolution, threshold=args.threshold,
                               tolerance=tol)
        rows.append({"method": spec.label, "ratio": res.ratio, "min_fsc": res.min_fsc, "seconds": time.perf_counter() - t0,
                     "search": res.to_dict()})
        print(f"{spec.label}: {res.ratio and round(res.ratio, 1)} (lowest FSC {res.min_fsc}) "
              f"in {rows[-1]['seconds']:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/run_science_lossless.py --methods " + args.methods + (
        f" --time-budget {args.time_budget:g}" if args.time_budget else "")
    doc = {"input": src.name, "shape": list(vol.shape), "spacing_A": list(spacing), "resolution_A": args.resolution,
           "threshold": args.threshold, "machine": machine_info(), "rows": rows, "command": cmd}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    lines = [f"# Science-lossless ratio on {src.name} ({' x '.join(map(str, vol.shape))}, {spacing[0]:g} Å/voxel)", "",
             f"Highest ratio whose decoded map keeps FSC >= {args.threshold:g} against the original in every shell "
             f"out to {args.resolution:g} Å (ratio = original bytes / .vxf file bytes). Command: `{cmd}`.", "",
             "| method | science-lossless ratio | lowest FSC to the resolution | compressions tried | search s |",
             "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -(r["ratio"] or 0)):
        ratio = "none (even 4x loses it)" if r["ratio"] is None else f"{r['ratio']:.1f}"
        mf = "–" if r["min_fsc"] is None else f"{r['min_fsc']:.4f}"
        lines.append(f"| {r['method']} | {ratio} | {mf} | {len(r['search']['probes'])} | {r['seconds']:.0f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        pts = sorted((p["ratio"], p["min_fsc"]) for p in r["search"]["probes"] if p["ratio"] and p["min_fsc"] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=r["method"], ms=3)
    ax.axhline(args.threshold, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (file bytes)")
    ax.set_ylabel(f"lowest FSC out to {args.resolution:g} Å")
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.005)
    ax.legend(fontsize=8)
    ax.set_title(f"{src.name}: FSC kept vs ratio")
    fig.tight_layout()
    fig.savefig(args.out / "fsc_vs_ratio.png", dpi=120)
    print(args.out / "results.md")


if __name__ == "__main__":
    main()
