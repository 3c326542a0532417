"""Why voxfield reads the basis weights out on a band of low frequencies: the imprint of the
training images on the basis, measured against images the basis never saw.

For each dataset, with a trained run (``run_cryobench.py`` leaves one in
``WORK/<dataset>/voxfield/run``) and its training images, and (optionally) as many images of the
same simulation that training never used:

* for each candidate shell cutoff (:func:`voxfield.reconstruct.posterior.band_candidates`),
  :func:`voxfield.reconstruct.posterior.band_scan` gives the **noise floor** ``f``: the median
  eigenvalue of the least-squares weights' covariance, whitened by the noise it should have
  (1 when the predicted noise holds), and the **score** (summed signal-to-noise) that
  ``band="auto"`` maximises;
* the latent recovery of the weights read out on each band (|Spearman| of PC1 against the true
  angle for ``hinge*`` sets, ARI of k-means against the true states otherwise), on the
  training images, next to the readout before this change (every shell, the encoder's prior);
* with ground truth (``--data``), latent and AU-FSC of the four readouts: encoder or moment
  prior, all shells or the ``auto`` band (the default is moment + auto).

On unseen images the floor stays near 1 at every cutoff; on the training images it climbs with
the cutoff: the basis has fitted part of each training image's noise, and that imprint sits
mostly at high frequency. Writes ``results.json``, ``results.md``, ``floor.png`` and
``latent.png`` to ``--out``::

    python benchmarks/readout_band.py --work /tmp/cbw --data /tmp/cryobench \\
        --datasets hinge_snr0.01,assembly_snr0.01,hinge_snr0.1,assembly_snr0.1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def latent_score(ds: str, w: np.ndarray, lab: Any, sl: slice) -> float:
    from voxfield.reconstruct.evaluate import latent_ari, latent_spearman

    if ds.startswith("hinge"):
        return float(latent_spearman(w, lab["t"][sl])["pc1"])
    return float(latent_ari(w, lab["state"][sl], seed=0)["ari"])


def scan(ds: str, run_dir: Path, data: Path, lab: Any, sl: slice, gt: list[Path] | None = None) -> dict[str, Any]:
    from voxfield.reconstruct.api import load_stack
    from voxfield.reconstruct.posterior import band_scan, posterior_weights
    from voxfield.reconstruct.run import load_run

    run = load_run(run_dir)
    stack, imgs = load_stack(data / "particles.mrcs", poses=data / "poses.pkl", ctf=data / "ctf.pkl")
    images = np.asarray(imgs[sl])
    rot = stack.rot[sl]
    tr = None if stack.trans is None else stack.trans[sl]
    ctf = None if stack.ctf is None else stack.ctf[sl]
    z = run.encode(images, tr, ctf)
    t0 = time.perf_counter()
    sc = band_scan(run, images, rot, tr, ctf, z=z)
    out = {"images": [sl.start, sl.stop], "cuts": sc["cuts"], "choice": sc["cuts"][sc["choice"]],
           "resolution_A": [run.D * run.apix / c for c in sc["cuts"]],
           "floor": [f.floor for f in sc["fits"]], "score": [f.score for f in sc["fits"]],
           "top_eigenvalues": [f.eig[:4].tolist() for f in sc["fits"]],
           "latent": [latent_score(ds, w, lab, sl) for w in sc["weights"]], "scan_s": time.perf_counter() - t0}
    old = posterior_weights(run, images, rot, tr, ctf, z=z, prior="encoder", band=None)["weights"]
    out["latent_full_band_encoder_prior"] = latent_score(ds, old, lab, sl)
    if gt is not None:  # the four readouts (prior x band) on the training images: latent and AU-FSC
        from voxfield.reconstruct.evaluate import per_image_fsc, select_images

        state = lab["state"][sl]
        idx = select_images(len(state), 100)
        out["variants"] = []
        for prior, band in (("encoder", None), ("moment", None), ("encoder", "auto"), ("moment", "auto")):
            p = posterior_weights(run, images, rot, tr, ctf, z=z, prior=prior, band=band)
            w = p["weights"]
            f = per_image_fsc(lambda i, w=w: run.volume_from_weights(w[i]), idx, gt, state, run.apix)
            out["variants"].append({"prior": prior, "band": "all shells" if band is None else "auto",
                                    "band_shell": p["band_shell"], "latent": latent_score(ds, w, lab, sl),
                                    "au_fsc": f["au_fsc_mean"], "au_fsc_std": f["au_fsc_std"]})
    return out


def report(res: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxfield.reconstruct.evaluate import save_png

    names = list(res["datasets"])
    lines = ["# Readout band: the imprint of the training images on the basis", "",
             f"Command: `{res['command']}`", "",
             "Noise floor `f`: median whitened eigenvalue of the least-squares weights' covariance (1 = the noise the "
             "likelihood predicts). Latent: |Spearman| of PC1 vs angle (hinge) or ARI of k-means (assembly), on the "
             "training images, weights read out on the band with its own moment prior. `auto` marks the band "
             "`band=\"auto\"` picks from the training images alone.", ""]
    for ds in names:
        r = res["datasets"][ds]
        tr, un = r["train"], r.get("unseen")
        lines += [f"## {ds}", "",
                  f"Training images {tr['images'][0]}–{tr['images'][1]}"
                  + (f"; unseen images {un['images'][0]}–{un['images'][1]} of the same simulation" if un else "")
                  + f". Before this change (every shell, encoder prior): latent {tr['latent_full_band_encoder_prior']:.4f}.",
                  "", "| cutoff (shell) | resolution (Å) | floor, training | floor, unseen | score, training | "
                  "latent, training |", "|---|---|---|---|---|---|"]
        for i, c in enumerate(tr["cuts"]):
            mark = " (auto)" if c == tr["choice"] else ""
            fu = f"{un['floor'][i]:.2f}" if un else "—"
            lines.append(f"| {c}{mark} | {tr['resolution_A'][i]:.1f} | {tr['floor'][i]:.2f} | {fu} | "
                         f"{tr['score'][i]:.1f} | {tr['latent'][i]:.4f} |")
        lines.append("")
        if tr.get("variants"):
            lines += ["| prior | band | latent | AU-FSC |", "|---|---|---|---|"]
            for v in tr["variants"]:
                band = v["band"] if v["band"] != "auto" else f"auto (shell {v['band_shell']})"
                lines.append(f"| {v['prior']} | {band} | {v['latent']:.4f} | {v['au_fsc']:.4f} ± {v['au_fsc_std']:.4f} |")
            lines.append("")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], names):
        r = res["datasets"][ds]
        ax.plot(r["train"]["cuts"], r["train"]["floor"], "o-", label="training images")
        if r.get("unseen"):
            ax.plot(r["unseen"]["cuts"], r["unseen"]["floor"], "s--", label="unseen images")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axvline(r["train"]["choice"], color="k", ls=":", lw=0.8, label="auto band")
        ax.set(title=ds, xlabel="readout cutoff (Fourier shell)", ylabel="noise floor (1 = as predicted)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, out / "floor.png")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], names):
        tr = res["datasets"][ds]["train"]
        ax.plot(tr["cuts"], tr["latent"], "o-", label="band + moment prior")
        ax.axhline(tr["latent_full_band_encoder_prior"], color="tab:red", ls="--", lw=1,
                   label="before: all shells, encoder prior")
        ax.axvline(tr["choice"], color="k", ls=":", lw=0.8, label="auto band")
        ax.set(title=ds, xlabel="readout cutoff (Fourier shell)",
               ylabel="|Spearman| PC1" if ds.startswith("hinge") else "ARI (k-means)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, out / "latent.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="run_cryobench.py's WORK folder (runs and training data)")
    ap.add_argument("--data", type=Path, default=None,
                    help="folder of the full simulations (cryobench_data.py --out): ground-truth volumes, and the "
                         "images after the training ones are the unseen ones")
    ap.add_argument("--datasets", required=True)
    ap.add_argument("--n-unseen", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "readout_band")
    ap.add_argument("--report-only", action="store_true", help="redraw the report from --out's results.json")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report(json.loads((args.out / "results.json").read_text()), args.out)
        return 0
    res: dict[str, Any] = {"command": "python benchmarks/readout_band.py " + " ".join(argv or sys.argv[1:]),
                           "datasets": {}}
    for ds in args.datasets.split(","):
        data = args.work / ds / "data"
        run_dir = args.work / ds / "voxfield" / "run"
        n = int(json.loads((data / "meta.json").read_text())["n_images"])
        print(f"== {ds}: training images", flush=True)
        full = None if args.data is None else args.data / ds
        gt = None
        if full is not None and (full / "gt").is_dir():
            meta = json.loads((full / "meta.json").read_text())
            gt = [full / "gt" / f"state_{s:03d}.mrc" for s in range(int(meta["n_states"]))]
        r = {"train": scan(ds, run_dir, data, np.load(data / "labels.npz"), slice(0, n), gt)}
        n_full = int(json.loads((full / "meta.json").read_text())["n_images"]) if full is not None else 0
        if n_full >= n + 100:
            print(f"== {ds}: unseen images", flush=True)
            r["unseen"] = scan(ds, run_dir, full, np.load(full / "labels.npz"), slice(n, min(n_full, n + args.n_unseen)))
        res["datasets"][ds] = r
        (args.out / "results.json").write_text(json.dumps(res, indent=1))
    report(res, args.out)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
