"""Both shipped denoiser weights on the validation cubes of ``unet_v2`` (issue 18): the
G-mean at each one's best threshold, per resolution band (the evidence available before the
test split was looked at).

    python benchmarks/train_denoiser_v2.py --corpus /tmp/dn2/corpus --work /tmp/dn2   # makes /tmp/dn2/val
    python benchmarks/run_denoise_validation.py --val /tmp/dn2/val                     # ~1 min

Writes ``benchmarks/results/denoise_validation/{results.json,results.md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from voxfield.denoise.confusion import sweep
from voxfield.denoise.dataset import load_dataset
from voxfield.denoise.train import RESOLUTION_BANDS, predict_cubes, sample_resolutions
from voxfield.denoise.unet import GENERALIST, SPECIALIST, default_weights_path, load_weights

OUT = Path(__file__).resolve().parent / "results" / "denoise_validation"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val", type=Path, required=True)
    args = ap.parse_args()
    x, lab, meta = load_dataset(args.val)
    res = sample_resolutions(meta, len(x))
    valid = x > 0
    rows = []
    for name in (SPECIALIST, GENERALIST):
        model, _ = load_weights(default_weights_path(None).with_name(name))
        prob = predict_cubes(model, x, torch.device("cpu"), res=res if model.config.resolution_input else None)
        lo = 0.0
        for hi in RESOLUTION_BANDS:
            sel = (res > lo) & (res <= hi)
            t, g = sweep(prob[sel], lab[sel], valid[sel]).best()
            rows.append({"weights": name, "band": [lo, hi], "cubes": int(sel.sum()), "best_threshold": t, "gmean": g})
            lo = hi
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Shipped weights on unet_v2's validation cubes (corpus val split, simulator v2)", "",
             "G-mean at each weights' best threshold per band (positive = noise, nonzero voxels).", "",
             "| band (Å) | cubes | unet_v1 | unet_v2 |", "|---|---:|---:|---:|"]
    for i, hi in enumerate(RESOLUTION_BANDS):
        a, b = rows[i], rows[i + len(RESOLUTION_BANDS)]
        lines.append(f"| {a['band'][0] or 2.5:g}-{hi:g} | {a['cubes']} | {a['gmean']:.3f} | {b['gmean']:.3f} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
