"""Check RECOVAR's mean reconstruction against the truth at 2× (its default) and 1× upsampling.

Why this exists: on the CryoBench-style sets (``benchmarks/cryobench_data.py``) RECOVAR 1.0.5's
``recovar pipeline`` on CPU returned a mean whose FSC against the truth is negative over
Fourier shells 3–6, while cryoDRGN and voxfield reconstruct the same particles, poses and CTF
correctly. This script isolates the cause: it calls RECOVAR's own mean reconstruction
(``recovar.reconstruction.homogeneous.get_mean_conformation_relion``, RECOVAR's Python, its own
data loader and noise estimate) on the same images twice, with ``upsampling_factor`` 2 and 1,
and scores both against the ground truth, the population-weighted average of the true states
of those images. Optional ``--pipeline-mean LABEL=PATH`` adds ``mean.mrc`` files written by
full pipeline runs. Outputs in ``--out``: ``results.json``, ``results.md``, ``fsc.png``.

    python benchmarks/recovar_mean_check.py --data /tmp/cbw/hinge_snr0.1/data \\
        --truth /tmp/cryobench/hinge_snr0.1/gt --recovar-python /work/venvs/recovar/bin/python \\
        --out benchmarks/results/recovar_mean_check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Run with RECOVAR's Python: its loader, noise estimate and mean at each upsampling factor.
RECOVAR_SCRIPT = """
import sys, numpy as np
from recovar.data_io import cryoem_dataset as cd
from recovar.reconstruction import homogeneous, noise
from recovar.core import fourier_transform_utils as ftu
from recovar.utils.helpers import write_mrc
d, out = sys.argv[1], sys.argv[2]
ds = cd.load_dataset(d + "/particles.mrcs", d + "/poses.pkl", d + "/ctf.pkl", lazy=False, uninvert_data=False)
p = np.random.default_rng(0).permutation(ds.n_images)
h = ds.n_images // 2
ds.halfset_indices = [np.sort(p[:h]).astype(np.int32), np.sort(p[h:]).astype(np.int32)]
nv, _ = noise.estimate_noise_variance(ds, 512)
for up in (2, 1):
    means, _, _ = homogeneous.get_mean_conformation_relion(ds, 512, noise_variance=nv, use_regularization=False,
                                                           upsampling_factor=up)
    vol = np.asarray(ftu.get_idft3(np.asarray(means.combined).reshape(ds.volume_shape))).real
    write_mrc(out + f"/mean_up{up}.mrc", vol, float(ds.voxel_size))
"""


def score(vol: np.ndarray, truth: np.ndarray, apix: float) -> dict[str, Any]:
    """AU-FSC (|FSC| to Nyquist, CryoBench definition) and the FSC curve of ``vol`` against ``truth``."""
    from voxfield.reconstruct.evaluate import au_fsc, fsc_curve

    r = fsc_curve(vol.astype(np.float32), truth.astype(np.float32), apix)
    f = np.asarray(r.frequency) * apix
    c = np.asarray(r.fsc)
    return {"au_fsc": float(au_fsc(c, f)), "freq_per_px": f.round(5).tolist(), "fsc": c.round(4).tolist(),
            "flipped_shells": [int(k) for k in np.flatnonzero((np.sign(c) != np.sign(c[1])) & (np.abs(c) > 0.1))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="particles.mrcs, poses.pkl, ctf.pkl, labels.npz")
    ap.add_argument("--truth", type=Path, required=True, help="folder of state_NNN.mrc ground-truth volumes")
    ap.add_argument("--recovar-python", required=True, help="the Python of RECOVAR's environment")
    ap.add_argument("--work", type=Path, default=Path("/tmp/recovar_mean_check"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "recovar_mean_check")
    ap.add_argument("--pipeline-mean", action="append", default=[], metavar="LABEL=PATH",
                    help="a mean.mrc from a full pipeline run, scored too")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mrcfile

    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([args.recovar_python, "-c", RECOVAR_SCRIPT, str(args.data), str(args.work)], check=True,
                   stdout=(args.work / "recovar.log").open("w"), stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    state = np.load(args.data / "labels.npz")["state"]
    counts = np.bincount(state)
    truth = sum(c * np.asarray(mrcfile.read(args.truth / f"state_{s:03d}.mrc"), np.float64)
                for s, c in enumerate(counts) if c) / counts.sum()
    with mrcfile.open(args.work / "mean_up1.mrc") as f:
        apix = float(f.voxel_size.x)
    vols = {"RECOVAR mean, 2× upsampling (its default)": args.work / "mean_up2.mrc",
            "RECOVAR mean, 1× upsampling": args.work / "mean_up1.mrc"}
    for spec in args.pipeline_mean:
        label, _, path = spec.partition("=")
        vols[label] = Path(path)
    res = {name: score(np.asarray(mrcfile.read(p), np.float64), truth, apix) | {"path": str(p)}
           for name, p in vols.items()}
    report = {"data": str(args.data), "n_images": int(len(state)), "apix": apix,
              "truth": "population-weighted average of the true states of these images",
              "seconds_both_means": round(seconds, 1), "results": res}
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    lines = ["# RECOVAR's mean against the truth", "",
             f"`{args.data}` ({len(state):,} images, {apix} Å/px); truth = {report['truth']}. AU-FSC: area under "
             "|FSC| to Nyquist (0.5 = perfect). |FSC| hides sign: a volume of the right shape has one sign at every "
             "shell (negative throughout when the data sign is inverted, as in the API calls, where RECOVAR's "
             "automatic sign check is not run), so the shells whose sign differs from shell 1's (|FSC| > 0.1) are "
             "listed.", "",
             "| volume | AU-FSC | FSC at shells 2 / 4 / 8 | shells of the other sign |", "|---|---:|---|---|"]
    for name, m in res.items():
        c = m["fsc"]
        lines.append(f"| {name} | {m['au_fsc']:.4f} | {c[2]:+.2f} / {c[4]:+.2f} / {c[8]:+.2f} | "
                     f"{', '.join(map(str, m['flipped_shells'])) or 'none'} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in res.items():
        ax.plot(m["freq_per_px"], m["fsc"], label=f"{name} ({m['au_fsc']:.3f})")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("cycles / pixel")
    ax.set_ylabel("FSC against the truth (signed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "fsc.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
