"""Homogeneous sanity path: one conformation (AdK closed) → ``voxfield reconstruct train --zdim 0``
→ FSC of the reconstruction against the ground-truth volume (unmasked and with a soft mask of the
ground truth), optionally next to cryoDRGN's ``backproject_voxel`` on the same images.

    python benchmarks/run_homogeneous.py --epochs 2 --cryodrgn /work/cdrgn-venv/bin/cryodrgn

Writes ``homogeneous.json``, ``homogeneous.md`` and ``homogeneous_fsc.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "reconstruct")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "voxfield-bench-adk-hom")
    ap.add_argument("--n-images", type=int, default=10000)
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cryodrgn", default=None, help="cryodrgn executable for the backproject_voxel reference.")
    args = ap.parse_args()

    from voxfield.reconstruct.evaluate import fsc_curve, fsc_plot, resolution_at, soft_mask_from_volume
    from voxfield.reconstruct.run import load_run

    conf = REPO.parent / "shared" / "data" / "atomic_models" / "conformations" / "adk_closed.pdb"
    if not conf.exists():
        sys.exit("../shared/data is needed for the AdK model")
    d = args.data
    if not (d / "labels.npz").exists():
        subprocess.run([sys.executable, "-m", "voxfield", "reconstruct", "simulate", str(conf), str(conf), "-o", str(d),
                        "--n", str(args.n_images), "--snr", str(args.snr), "--states", "2"], check=True)
    run_dir = d / "run_hom"
    subprocess.run([sys.executable, "-m", "voxfield", "reconstruct", "train", str(d / "particles.mrcs"), "--poses",
                    str(d / "poses.pkl"), "--ctf", str(d / "ctf.pkl"), "-o", str(run_dir), "--zdim", "0", "--epochs",
                    str(args.epochs), "--no-resume", "--mask", "none"],  # pinned: the committed results predate masks
                   check=True)
    run = load_run(run_dir)
    apix = run.apix
    gt = mrcfile.read(d / "gt" / "state_000.mrc").astype(np.float64)
    mask = soft_mask_from_volume(gt)
    maps = {"voxfield (zdim 0)": run.volume(None)}
    if args.cryodrgn:
        bp = d / "backproject"
        subprocess.run([args.cryodrgn, "backproject_voxel", str(d / "particles.mrcs"), "--poses", str(d / "poses.pkl"),
                        "--ctf", str(d / "ctf.pkl"), "-o", str(bp)], check=True)
        maps["cryoDRGN backproject_voxel"] = mrcfile.read(bp / "backproject.mrc").astype(np.float64)
    res: dict = {"n_images": args.n_images, "snr": args.snr, "epochs": args.epochs, "apix": apix, "maps": {}}
    curves = {}
    for name, v in maps.items():
        rec = {}
        for tag, m in (("unmasked", None), ("masked", mask)):
            r = fsc_curve(v, gt, apix, mask=m)
            rec[tag] = {"res_0.5_A": resolution_at(r, 0.5), "res_0.143_A": resolution_at(r, 0.143),
                        "cc": float(np.corrcoef((v * (1 if m is None else m)).ravel(),
                                                (gt * (1 if m is None else m)).ravel())[0, 1])}
            if tag == "masked":
                curves[name] = r
        res["maps"][name] = rec
    args.out.mkdir(parents=True, exist_ok=True)
    fsc_plot(curves, args.out / "homogeneous_fsc.png", apix, title="homogeneous AdK (closed): masked FSC to ground truth")
    (args.out / "homogeneous.json").write_text(json.dumps(res, indent=1))
    lines = [f"# Homogeneous reconstruction vs ground truth (AdK closed, {args.n_images} images, SNR {args.snr}, "
             f"{apix} Å/px)", "", "| map | FSC 0.5 / 0.143 (Å), unmasked | masked | real-space CC (masked) |",
             "|---|---|---|---|"]
    for name, rec in res["maps"].items():
        u, m = rec["unmasked"], rec["masked"]
        lines.append(f"| {name} | {u['res_0.5_A']:.2f} / {u['res_0.143_A']:.2f} | {m['res_0.5_A']:.2f} / "
                     f"{m['res_0.143_A']:.2f} | {m['cc']:.3f} |")
    (args.out / "homogeneous.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
