"""Heterogeneous reconstruction benchmark: voxfield (structural-basis VAE, paper 004) vs cryoDRGN.

Both tools train on the same simulated AdK particle set (``voxfield reconstruct simulate``:
closed → open hinge path, 50 ground-truth states, uniform poses, shifts, CTF, white noise at
the chosen SNR) for the same number of epochs, each as its own process, one after the other
(nothing else running), on the same machine. Reported:

* AU-FSC (CryoBench): per-image FSC between the volume decoded from the image's latent and its
  ground-truth state volume, area under |FSC| from 0 to Nyquist (cycles/pixel, max 0.5), mean ±
  std over every N/n-th image;
* |Spearman| between the latent's first principal component and the true path coordinate;
* training wall time, peak resident memory of the training process;
* decoding: the ``volume``/``eval_vol`` command for one volume (process start to file written),
  and the per-volume time inside one command decoding many volumes (marginal cost).

cryoDRGN runs from its own environment (``--cryodrgn /path/to/venv/bin/cryodrgn``; ANCHORS.md:
``pip install torch==2.13.0 cryodrgn``), with its default contrast inversion (the simulated images
are bright particles, what it expects) and either its default architecture or ``--cryodrgn-arch
small`` (256×3 encoder/decoder). Outputs: ``results.json``, ``results.md``, ``fsc.png``,
``latent_vs_truth.png`` under ``--out``.

    python benchmarks/run_reconstruct.py --epochs 5 --cryodrgn /work/cdrgn-venv/bin/cryodrgn
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def find_shared() -> Path | None:
    p = REPO.parent / "shared" / "data"
    return p if p.exists() else None


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` as a child process: wall seconds, peak RSS (MiB, this child only), return code."""
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return {"seconds": secs, "peak_mib": ru.ru_maxrss / 1024.0, "command": " ".join(cmd)}


def simulate(data: Path, n: int, snr: float, seed: int) -> None:
    if (data / "labels.npz").exists():
        meta = json.loads((data / "meta.json").read_text())
        if meta.get("n_images") == n and abs(float(meta.get("snr") or 0) - snr) < 1e-9 and meta.get("seed") == seed:
            return
    conf = find_shared()
    if conf is None:
        sys.exit("../shared/data is needed for the AdK models (atomic_models/conformations)")
    c = conf / "atomic_models" / "conformations"
    subprocess.run([sys.executable, "-m", "voxfield", "reconstruct", "simulate", str(c / "adk_closed.pdb"),
                    str(c / "adk_open.pdb"), "-o", str(data), "--n", str(n), "--snr", str(snr), "--seed", str(seed)],
                   check=True)


def cryodrgn_arch(name: str) -> list[str]:
    if name == "default":
        return []
    if name == "small":
        return ["--enc-dim", "256", "--enc-layers", "3", "--dec-dim", "256", "--dec-layers", "3"]
    raise SystemExit(f"unknown --cryodrgn-arch {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "reconstruct")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "voxfield-bench-adk")
    ap.add_argument("--work", type=Path, default=None, help="Run folders (default DATA/runs).")
    ap.add_argument("--n-images", type=int, default=20000)
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--zdim", type=int, default=8)
    ap.add_argument("--n-eval", type=int, default=100, help="Images for the per-image FSC.")
    ap.add_argument("--voxfield-args", default="--mask none --basis-fit encoder",
                    help="Extra arguments for `voxfield reconstruct train` (default pins --mask none --basis-fit "
                         "encoder: the committed results predate the solvent mask and the posterior basis fit; "
                         "run_cryobench.py measures the current defaults).")
    ap.add_argument("--cryodrgn", default=None, help="cryodrgn executable (its own environment); omit to skip.")
    ap.add_argument("--cryodrgn-arch", default="small", choices=["default", "small"])
    ap.add_argument("--cryodrgn-batch", type=int, default=None, help="cryoDRGN -b (default: its own default).")
    ap.add_argument("--skip-train", action="store_true", help="Reuse finished runs in WORK.")
    args = ap.parse_args()

    from voxfield.reconstruct.evaluate import (
        fsc_plot,
        latent_spearman,
        per_image_fsc,
        per_image_fsc_from_files,
        select_images,
    )
    from voxfield.reconstruct.run import load_run

    simulate(args.data, args.n_images, args.snr, args.seed)
    work = args.work or args.data / "runs"
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lab = np.load(args.data / "labels.npz")
    state, t_true = lab["state"], lab["t"]
    gt = [args.data / "gt" / f"state_{s:03d}.mrc" for s in range(len(lab["t_states"]))]
    meta = json.loads((args.data / "meta.json").read_text())
    apix = float(meta["apix"])
    idx = select_images(len(state), args.n_eval)
    parts, poses, ctf = args.data / "particles.mrcs", args.data / "poses.pkl", args.data / "ctf.pkl"
    res: dict[str, Any] = {
        "dataset": {k: meta[k] for k in ("n_images", "D", "apix", "resolution", "n_states", "snr") if k in meta}
        | {"snr_definition": meta.get("snr_definition"), "path": str(args.data)},
        "epochs": args.epochs, "zdim": args.zdim, "n_eval": int(len(idx)),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
    }

    # ---------------------------------------------------------------- voxfield
    vrun = work / "voxfield"
    vcmd = [sys.executable, "-m", "voxfield", "reconstruct", "train", str(parts), "--poses", str(poses), "--ctf",
            str(ctf), "-o", str(vrun), "--zdim", str(args.zdim), "--epochs", str(args.epochs), "--no-resume",
            "--device", "auto", *args.voxfield_args.split()]
    if not args.skip_train:
        res["voxfield_train"] = timed(vcmd, work / "voxfield_train.log")
    else:
        res["voxfield_train"] = json.loads((args.out / "results.json").read_text())["voxfield_train"]
    run = load_run(vrun)
    z = np.load(vrun / "z.npy")
    vol_one = work / "vf_one.mrc"
    res["voxfield_decode_command"] = timed([sys.executable, "-m", "voxfield", "reconstruct", "volume", str(vrun),
                                            "--particle", "0", "-o", str(vol_one), "--device", "cpu"],
                                           work / "voxfield_volume.log")
    run.volume(z[0])  # warm-up
    t0 = time.perf_counter()
    for i in idx[:50]:
        run.volume(z[i])
    res["voxfield_decode_per_volume_s"] = (time.perf_counter() - t0) / min(50, len(idx))
    vf = per_image_fsc(lambda i: run.volume(z[i]), idx, gt, state, apix)
    res["voxfield"] = {"au_fsc_mean": vf["au_fsc_mean"], "au_fsc_std": vf["au_fsc_std"],
                       "au_fsc_median": vf["au_fsc_median"], "resolution_0.5_A": vf.get("resolution_0.5_A"),
                       "resolution_0.143_A": vf.get("resolution_0.143_A"), "spearman": latent_spearman(z, t_true)}
    curves = {"voxfield": (vf["freq_per_A"], vf["fsc_mean"], vf["fsc_std"])}
    latents = {"voxfield": z}

    # ---------------------------------------------------------------- cryoDRGN
    if args.cryodrgn:
        crun = work / "cryodrgn"
        ccmd = [args.cryodrgn, "train_vae", str(parts), "--poses", str(poses), "--ctf", str(ctf), "--zdim",
                str(args.zdim), "-n", str(args.epochs), "-o", str(crun), "--no-analysis",
                *cryodrgn_arch(args.cryodrgn_arch)]
        if args.cryodrgn_batch:
            ccmd += ["-b", str(args.cryodrgn_batch)]
        if not args.skip_train:
            res["cryodrgn_train"] = timed(ccmd, work / "cryodrgn_train.log")
        else:
            res["cryodrgn_train"] = json.loads((args.out / "results.json").read_text())["cryodrgn_train"]
        res["cryodrgn_arch"] = args.cryodrgn_arch
        last = args.epochs  # cryoDRGN numbers its weights.N.pkl / z.N.pkl from 1
        weights, cfg = crun / f"weights.{last}.pkl", crun / "config.yaml"
        if not weights.exists():
            weights = crun / "weights.pkl"
        zc_path = crun / f"z.{last}.pkl"
        if not zc_path.exists():
            zc_path = crun / "z.pkl"
        with open(zc_path, "rb") as fh:
            zc = np.asarray(pickle.load(fh))
        one = work / "cd_z_one.txt"
        np.savetxt(one, zc[:1])
        res["cryodrgn_decode_command"] = timed([args.cryodrgn, "eval_vol", str(weights), "-c", str(cfg), "--zfile",
                                                str(one), "-o", str(work / "cd_one")], work / "cryodrgn_eval1.log")
        zsel = work / "cd_z_eval.txt"
        np.savetxt(zsel, zc[idx])
        many = timed([args.cryodrgn, "eval_vol", str(weights), "-c", str(cfg), "--zfile", str(zsel), "-o",
                      str(work / "cd_eval")], work / "cryodrgn_eval.log")
        res["cryodrgn_decode_many"] = many
        res["cryodrgn_decode_per_volume_s"] = (many["seconds"] - res["cryodrgn_decode_command"]["seconds"]) / max(
            1, len(idx) - 1)
        paths = sorted((work / "cd_eval").glob("*.mrc"))
        cd = per_image_fsc_from_files(paths, gt, state[idx], apix)
        res["cryodrgn"] = {"au_fsc_mean": cd["au_fsc_mean"], "au_fsc_std": cd["au_fsc_std"],
                           "au_fsc_median": cd["au_fsc_median"], "resolution_0.5_A": cd.get("resolution_0.5_A"),
                           "resolution_0.143_A": cd.get("resolution_0.143_A"), "spearman": latent_spearman(zc, t_true)}
        curves[f"cryoDRGN ({args.cryodrgn_arch})"] = (cd["freq_per_A"], cd["fsc_mean"], cd["fsc_std"])
        latents["cryoDRGN"] = zc
        res["ratios"] = {
            "train_time_voxfield_over_cryodrgn": res["voxfield_train"]["seconds"] / res["cryodrgn_train"]["seconds"],
            "decode_command_voxfield_over_cryodrgn": res["voxfield_decode_command"]["seconds"]
            / res["cryodrgn_decode_command"]["seconds"],
            "decode_per_volume_voxfield_over_cryodrgn": res["voxfield_decode_per_volume_s"]
            / max(1e-9, res["cryodrgn_decode_per_volume_s"]),
        }

    fsc_plot(curves, args.out / "fsc.png", apix, title=f"mean per-image FSC to ground truth, {args.epochs} epochs")
    plot_latents(latents, t_true, args.out / "latent_vs_truth.png")
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    (args.out / "results.md").write_text(markdown(res))
    print(markdown(res))


def plot_latents(latents: dict[str, np.ndarray], t: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxfield.reconstruct.analysis import latent_pca

    fig, axes = plt.subplots(1, len(latents), figsize=(5 * len(latents), 4), squeeze=False)
    for ax, (name, z) in zip(axes[0], latents.items()):
        pc = latent_pca(z, 2).projections
        sc = ax.scatter(pc[:, 0], pc[:, 1], c=t, s=2, cmap="viridis", rasterized=True)
        ax.set_title(f"{name}: latent PCA coloured by true t")
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        fig.colorbar(sc, ax=ax, label="true path coordinate t")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(r: dict[str, Any]) -> str:
    d = r["dataset"]
    lines = [f"# Heterogeneous reconstruction: voxfield vs cryoDRGN ({r['epochs']} epochs, zdim {r['zdim']})", "",
             f"Simulated AdK closed→open: {d.get('n_images')} images, {d.get('D')} px, {d.get('apix')} Å, SNR "
             f"{d.get('snr')} ({d.get('snr_definition')}), {d.get('n_states')} ground-truth states, CTF on. "
             f"AU-FSC over {r['n_eval']} images (every N/n-th; CryoBench definition, max 0.5). Machine: "
             f"{r['machine']['cores']} cores, no GPU.", "",
             "| tool | AU-FSC mean ± std | res. 0.5 / 0.143 (Å, mean curve) | |Spearman| PC1 vs t | train (s) | "
             "train peak RSS (MiB) | decode: command (s) | decode: per volume (s) |",
             "|---|---|---|---|---|---|---|---|"]

    def row(name: str, key: str, tr: str, dc: str, pv: str) -> None:
        if key not in r:
            return
        m = r[key]
        lines.append(f"| {name} | {m['au_fsc_mean']:.4f} ± {m['au_fsc_std']:.4f} | {m['resolution_0.5_A']:.2f} / "
                     f"{m['resolution_0.143_A']:.2f} | {m['spearman']['pc1']:.3f} | {r[tr]['seconds']:.1f} | "
                     f"{r[tr]['peak_mib']:.0f} | {r[dc]['seconds']:.2f} | {r[pv]:.4f} |")

    row("voxfield", "voxfield", "voxfield_train", "voxfield_decode_command", "voxfield_decode_per_volume_s")
    row(f"cryoDRGN ({r.get('cryodrgn_arch', '')})", "cryodrgn", "cryodrgn_train", "cryodrgn_decode_command",
        "cryodrgn_decode_per_volume_s")
    if "ratios" in r:
        q = r["ratios"]
        lines += ["", f"Ratios voxfield / cryoDRGN: training time {q['train_time_voxfield_over_cryodrgn']:.3f}, "
                      f"decode command {q['decode_command_voxfield_over_cryodrgn']:.3f}, decode per volume "
                      f"{q['decode_per_volume_voxfield_over_cryodrgn']:.4f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
