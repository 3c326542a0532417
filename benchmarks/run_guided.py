"""Guided vs unguided compression on a segmentation task (issue 7).

    python benchmarks/run_guided.py
    python benchmarks/run_guided.py --only hela_nuclei --ratios 64

Task: the threshold segmentation (Otsu's threshold of the original) and its objects
(connected components of >= 8 voxels). For each input, ratio and method (``sci`` and
``hybrid:sperr``), the file is made without and with ``guide=segmentation`` at the same
target ratio, decoded, segmented with the *original's* threshold, and compared with the
original's segmentation: Dice, IoU, object counts; PSNR (data range) gives the cost.
Inputs: the nuclei channel of the HeLa image (channel 2, "nuclei" in the data manifest),
the lattice light-sheet stack, EMD-3488. Writes results/guided/{results.json,results.md,
dice_vs_psnr.png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.bench.datasets import find_data_root
from voxfield.codecs.base import Target
from voxfield.compress import hybrid
from voxfield.compress.api import decompress
from voxfield.compress.methods import compress_field
from voxfield.io import read_volume
from voxfield.io.volume import Volume
from voxfield.metrics import psnr
from voxfield.metrics.segmentation import otsu_threshold, segmentation_agreement

HERE = Path(__file__).resolve().parent
INPUTS = {
    "hela_nuclei": ("multichannel/bian_hela-cells_3ch.tif", None, 2),
    "llsm_raw": ("fluorescence/pycudadecon_llsm_im_raw.tif", "ZYX", None),
    "emd_3488": ("cryoem_maps/emd_3488.mrc", None, None),
}


def load(root: Path, name: str) -> Volume:
    rel, axes, channel = INPUTS[name]
    vol = read_volume(root / rel, axes=axes)
    if channel is None:
        return vol
    ax = vol.axes.index("S") if "S" in vol.axes else vol.axes.index("C")
    data = np.ascontiguousarray(np.take(vol.data, channel, axis=ax))
    return Volume(data, vol.axes.replace(vol.axes[ax], ""), vol.spacing, vol.unit, vol.origin, {})


def encode(vol: Volume, method: str, ratio: float, guide: str | None, weight: float, thr: float,
           budget: float) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    if method == "sci":
        settings: dict[str, Any] = {"time_budget": budget}
        if guide:
            settings.update(guide=guide, guide_weight=weight, guide_threshold=thr)
        blob, _ = compress_field(vol, "sci", Target.ratio(ratio, 0.02), settings)
    else:
        extra: dict[str, Any] = {"guide": guide, "guide_weight": weight, "guide_threshold": thr,
                                 "selection": "segmentation"} if guide else {}
        cfg = hybrid.HybridConfig.make(method.split(":")[1], time_budget=budget, **extra)
        blob = hybrid.compress_hybrid(vol, cfg, Target.ratio(ratio, 0.02))
    return blob, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "guided")
    ap.add_argument("--only", default=",".join(INPUTS))
    ap.add_argument("--ratios", default="64,256")
    ap.add_argument("--methods", default="sci,hybrid:sperr")
    ap.add_argument("--weight", type=float, default=None, help="guide weight [default: each method's default]")
    ap.add_argument("--time-budget", type=float, default=60.0, help="training seconds per fit")
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    root = args.data_root or find_data_root()
    if root is None:
        raise SystemExit("the real-data folder (../shared/data) is needed")
    rows = []
    started = time.time()
    for name in args.only.split(","):
        vol = load(root, name)
        thr = otsu_threshold(vol.data)
        for ratio in (float(r) for r in args.ratios.split(",")):
            for method in args.methods.split(","):
                weight = args.weight if args.weight is not None else (0.3 if method == "sci" else
                                                                      hybrid.HybridConfig().guide_weight)
                for guide in (None, "segmentation"):
                    blob, enc_s = encode(vol, method, ratio, guide, weight, thr, args.time_budget)
                    dec = decompress(blob).data
                    seg = segmentation_agreement(vol.data, dec, threshold=thr)
                    row = {"dataset": name, "method": method, "target": ratio, "guide": guide or "none",
                           "weight": weight if guide else None, "ratio": vol.data.nbytes / len(blob),
                           "psnr_db": psnr(vol.data, dec), "threshold": thr, "dice": seg["dice"], "iou": seg["iou"],
                           "objects_original": seg["objects_reference"], "objects_decoded": seg["objects_decoded"],
                           "encode_s": enc_s}
                    rows.append(row)
                    print(f"{name} {ratio:g}x {method} guide={row['guide']}: ratio {row['ratio']:.1f}, PSNR "
                          f"{row['psnr_db']:.2f}, Dice {row['dice']:.4f}, IoU {row['iou']:.4f}, objects "
                          f"{row['objects_decoded']}/{row['objects_original']}, {enc_s:.0f} s", flush=True)
    command = "python benchmarks/run_guided.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k not in ("out", "data_root"))
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"kind": "voxfield-guided", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "duration_s": time.time() - started, "command": command, "rows": rows,
           "task": "threshold segmentation at the original's Otsu threshold; objects = connected components >= 8 "
                   "voxels; PSNR on the original's value range"}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "results.md").write_text(markdown(rows, command))
    plot(rows, args.out / "dice_vs_psnr.png")
    print(args.out / "results.md")


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["# Guided vs unguided: segmentation task", "", f"Command: `{command}`", "",
             "Segmentation of the decoded volume at the original's Otsu threshold vs the original's. PSNR on the "
             "original's value range. Δ = guided − unguided at the same target ratio.", "",
             "| dataset | method | target | guide | ratio | PSNR dB | Dice | IoU | objects dec/orig | Δ Dice | Δ IoU "
             "| Δ PSNR dB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(x for x in rows if x["dataset"] == r["dataset"] and x["method"] == r["method"]
                    and x["target"] == r["target"] and x["guide"] == "none")
        d = (r["dice"] - base["dice"], r["iou"] - base["iou"], r["psnr_db"] - base["psnr_db"])
        delta = ("–", "–", "–") if r is base else (f"**{d[0]:+.4f}**", f"{d[1]:+.4f}", f"{d[2]:+.2f}")
        lines.append(f"| {r['dataset']} | {r['method']} | {r['target']:g} | {r['guide']} | {r['ratio']:.1f} | "
                     f"{r['psnr_db']:.2f} | {r['dice']:.4f} | {r['iou']:.4f} | {r['objects_decoded']}/"
                     f"{r['objects_original']} | {delta[0]} | {delta[1]} | {delta[2]} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        if r["guide"] != "none":
            continue
        g = next(x for x in rows if x["dataset"] == r["dataset"] and x["method"] == r["method"]
                 and x["target"] == r["target"] and x["guide"] != "none")
        ax.annotate("", (g["psnr_db"], g["dice"]), (r["psnr_db"], r["dice"]), arrowprops={"arrowstyle": "->"})
        ax.plot(r["psnr_db"], r["dice"], "o", color="grey")
        ax.text(r["psnr_db"], r["dice"], f" {r['dataset']} {r['method']} {r['target']:g}x", fontsize=6)
    ax.set_xlabel("PSNR (dB, data range)")
    ax.set_ylabel("Dice vs original segmentation")
    ax.set_title("unguided (dot) -> guided (arrow head)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
