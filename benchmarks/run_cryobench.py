"""CryoBench-style comparison: voxfield vs RECOVAR vs cryoDRGN on the same particles, poses and CTF.

The datasets come from ``benchmarks/cryobench_data.py`` (a hinge motion and a compositional
assembly built from PDB 1BD2, SNR 0.01 and 0.1, 64 px, 50,000 images each, ground-truth volume
per state). Each tool trains on the first ``--n-images`` images of a dataset (the states are
drawn at random per image, so this is a random subset), from its own environment, one tool
at a time with nothing else running:

* voxfield: ``voxfield reconstruct train`` (``--voxfield-args`` adds options);
* cryoDRGN: ``cryodrgn train_vae`` with the same epochs and latent size, architecture
  ``--cryodrgn-arch`` (``small`` = 256×3 encoder/decoder, ``default`` = its own default);
* RECOVAR: ``recovar pipeline --mask sphere --accept-cpu`` with the same latent size (RECOVAR
  is not trained by epochs: it estimates a mean, a covariance and a linear embedding).

Reported per dataset and tool:

* AU-FSC (CryoBench): for every ``N // n_eval``-th image, the volume of its latent against the
  ground-truth volume of its state, area under ``|FSC|`` over cycles/pixel up to Nyquist
  (:func:`voxfield.reconstruct.evaluate.au_fsc`); mean ± std; and the mean per state
  ("per-state FSC", plotted). cryoDRGN volumes come from ``eval_vol``, RECOVAR's from
  ``compute_state`` at the image's latent (its kernel regression), voxfield's from the decoder.
* latent recovery: hinge → |Spearman| between the first principal component of the latents and
  the true angle; assembly → adjusted Rand index between the true states and k-means (k = the
  number of states) of the latents.
* training wall time and peak resident memory of the training process (``wait4``);
* decoding one volume: the tool's own command, process start to file written; and the marginal
  time per volume (voxfield: ``Run.volume`` on a loaded model; cryoDRGN and RECOVAR: the time of
  the command making many volumes minus the one-volume command, over the extra volumes).

RECOVAR's ``compute_state`` is slow on CPU (more than 8 min for one volume of 5,000 images of
64 px on 2 cores), so ``--recovar-eval 0`` skips it; the volumes of RECOVAR's *linear* model are
then evaluated instead when the pipeline wrote them: ``mean.mrc + Σ_k z_k · eigen_posK.mrc``
from its ``output/volumes`` (the mean and principal components its embedding ``z`` is the
posterior mean on), recorded as ``fsc_linear`` and marked "linear" in the table, together with
the mean volume alone (``fsc_mean_only``) as the no-heterogeneity reference.

voxfield's latent is the one ``voxfield reconstruct analyze`` uses by default: each image's
closed-form basis weights (``weights.npy``) when the run wrote them, otherwise the encoder's
``z``; the encoder's ``z`` is also evaluated and recorded (``latent_encoder_z``,
``fsc_encoder_z``) for reference.

Each (dataset, tool) result is cached under ``WORK/<dataset>/<tool>/result.json``; ``--tools``
chooses what to (re)run and the report merges every cached result. ``--seed-from`` fills the
cache from an earlier ``results.json`` (for a fresh WORK folder): those runs have no ``z.npy``,
so their latent panel is drawn from the PCA sample their result keeps (``latent_pca``), or left
empty with a note for results older than that field. A cached result may carry a hand-written
``conditions`` string (for instance: another job ran beside it), printed as a note of the
table. Outputs in ``--out``:
``results.json``, ``results.md``, ``fsc.png``, ``per_state.png``, ``latents.png``.

Any folder written by ``voxfield reconstruct simulate`` is a dataset: a name starting with
``hinge`` is scored as a continuous motion (|Spearman| against ``labels.npz``'s ``t``), any
other as discrete states (ARI against ``state``). The held-out check of issue 19 (AdK, a
protein none of the four sets uses; ``results/cryobench_heldout/``)::

    voxfield reconstruct simulate adk_closed.pdb adk_open.pdb -o /tmp/heldout/hinge_adk0.1 --n 5000 --snr 0.1 --seed 7
    voxfield reconstruct simulate adk_closed.pdb adk_open.pdb -o /tmp/heldout/hinge_adk0.01 --n 5000 --snr 0.01 --seed 8
    python benchmarks/run_cryobench.py --data /tmp/heldout --work /tmp/ho --out benchmarks/results/cryobench_heldout \
        --datasets hinge_adk0.1,hinge_adk0.01 --tools voxfield --data-note "Held-out AdK closed→open path ..."

    python benchmarks/cryobench_data.py --out /tmp/cryobench
    python benchmarks/run_cryobench.py --data /tmp/cryobench --work /tmp/cryobench-runs --n-images 5000 \\
        --epochs 5 --cryodrgn /work/venvs/cdrgn/bin/cryodrgn --recovar /work/venvs/recovar/bin/recovar
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_NOTE = "Datasets from `benchmarks/cryobench_data.py` (PDB 1BD2; 64 px, 2.5 Å/px, CTF on)"
DATASETS = ["hinge_snr0.1", "hinge_snr0.01", "assembly_snr0.1", "assembly_snr0.01"]
TOOLS = ["voxfield", "recovar", "recovar_mean1x", "cryodrgn"]
LABEL = {"voxfield": "voxfield", "recovar": "RECOVAR", "recovar_mean1x": "RECOVAR (1× mean)", "cryodrgn": "cryoDRGN"}
#: Anchors voxfield is compared against (each one that ran on a dataset).
ANCHORS = ("recovar", "recovar_mean1x", "cryodrgn")


def timed(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd``: wall seconds, peak RSS (MiB) of the child and its waited-for descendants."""
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}); see {log}:\n{log.read_text()[-3000:]}")
    return {"seconds": secs, "peak_mib": ru.ru_maxrss / 1024.0, "command": " ".join(cmd)}


def subset(src: Path, dst: Path, n: int) -> dict[str, Any]:
    """The first ``n`` images of dataset ``src`` (stack, poses, CTF, labels) in ``dst``."""
    import mrcfile

    meta = json.loads((src / "meta.json").read_text())
    if (dst / "labels.npz").exists() and json.loads((dst / "meta.json").read_text()).get("n_images") == n:
        return json.loads((dst / "meta.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    with mrcfile.mmap(src / "particles.mrcs", permissive=True) as m:
        n = min(n, int(m.data.shape[0]))
        x = np.array(m.data[:n], dtype=np.float32)
        vs = m.voxel_size
    with mrcfile.new(dst / "particles.mrcs", overwrite=True) as o:
        o.set_data(x)
        o.voxel_size = vs
    with open(src / "poses.pkl", "rb") as fh:
        rot, tr = pickle.load(fh)
    with open(dst / "poses.pkl", "wb") as fh:
        pickle.dump((np.asarray(rot)[:n], np.asarray(tr)[:n]), fh)
    with open(src / "ctf.pkl", "rb") as fh:
        ctf = pickle.load(fh)
    with open(dst / "ctf.pkl", "wb") as fh:
        pickle.dump(np.asarray(ctf)[:n], fh)
    lab = np.load(src / "labels.npz")
    np.savez(dst / "labels.npz", **{k: (lab[k][:n] if lab[k].shape[0] == meta["n_images"] else lab[k]) for k in lab})
    meta = dict(meta, n_images=n, subset_of=str(src))
    (dst / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def latent_metric(kind: str, z: np.ndarray, lab: Any) -> dict[str, Any]:
    from voxfield.reconstruct.evaluate import latent_ari, latent_spearman

    if kind == "hinge":
        s = latent_spearman(z, lab["t"])
        return {"name": "|Spearman| PC1 vs angle", "value": s["pc1"], "best_dim": s["best"]}
    a = latent_ari(z, lab["state"], seed=0)
    return {"name": "ARI of k-means", "value": a["ari"], "k": a["k"]}


def fsc_summary(r: dict[str, Any]) -> dict[str, Any]:
    return {"au_fsc_mean": r["au_fsc_mean"], "au_fsc_std": r["au_fsc_std"], "au_fsc_median": r["au_fsc_median"],
            "au_fsc_per_state": {str(k): v for k, v in r["au_fsc_per_class"].items()},
            "freq_per_px": r["freq_per_px"].tolist(), "fsc_mean": r["fsc_mean"].tolist()}


# ---------------------------------------------------------------------------- tools
def run_voxfield(data: Path, out: Path, args: argparse.Namespace, idx: np.ndarray, gt: list[Path],
                 state: np.ndarray, apix: float) -> dict[str, Any]:
    from voxfield.reconstruct.evaluate import per_image_fsc
    from voxfield.reconstruct.run import load_run

    run = out / "run"
    cmd = [sys.executable, "-m", "voxfield", "reconstruct", "train", str(data / "particles.mrcs"), "--poses",
           str(data / "poses.pkl"), "--ctf", str(data / "ctf.pkl"), "-o", str(run), "--zdim", str(args.zdim),
           "--epochs", str(args.epochs), "--no-resume", "--device", "cpu", *args.voxfield_args.split()]
    res: dict[str, Any] = {"train": timed(cmd, out / "train.log")}
    res["decode_one"] = timed([sys.executable, "-m", "voxfield", "reconstruct", "volume", str(run), "--particle",
                               "0", "-o", str(out / "one.mrc"), "--device", "cpu"], out / "decode.log")
    model = load_run(run)
    z = np.load(run / "z.npy")
    # the latent `voxfield reconstruct analyze` uses by default: the closed-form basis weights
    # (weights.npy) when the run wrote them, else the encoder's z
    has_w = (run / "weights.npy").exists()
    lat = np.load(run / "weights.npy") if has_w else z
    decode = model.volume_from_weights if has_w else model.volume
    res["latent_source"] = "weights.npy" if has_w else "z.npy"
    np.save(out / "z.npy", lat)
    np.save(out / "z_encoder.npy", z)
    decode(lat[0])  # warm-up
    t0 = time.perf_counter()
    for i in idx[:50]:
        decode(lat[i])
    res["decode_per_volume_s"] = (time.perf_counter() - t0) / len(idx[:50])
    res["fsc"] = fsc_summary(per_image_fsc(lambda i: decode(lat[i]), idx, gt, state, apix))
    if has_w:  # the encoder's latents too, for reference
        res["fsc_encoder_z"] = fsc_summary(per_image_fsc(lambda i: model.volume(z[i]), idx, gt, state, apix))
    return res


def cryodrgn_arch(name: str) -> list[str]:
    if name == "small":
        return ["--enc-dim", "256", "--enc-layers", "3", "--dec-dim", "256", "--dec-layers", "3"]
    return []


def run_cryodrgn(data: Path, out: Path, args: argparse.Namespace, idx: np.ndarray, gt: list[Path],
                 state: np.ndarray, apix: float) -> dict[str, Any]:
    from voxfield.reconstruct.evaluate import per_image_fsc_from_files

    run = out / "run"
    cmd = [args.cryodrgn, "train_vae", str(data / "particles.mrcs"), "--poses", str(data / "poses.pkl"), "--ctf",
           str(data / "ctf.pkl"), "--zdim", str(args.zdim), "-n", str(args.epochs), "-o", str(run),
           "--no-analysis", *cryodrgn_arch(args.cryodrgn_arch)]
    res: dict[str, Any] = {"train": timed(cmd, out / "train.log"), "arch": args.cryodrgn_arch}
    weights, cfg = run / f"weights.{args.epochs}.pkl", run / "config.yaml"
    if not weights.exists():
        weights = run / "weights.pkl"
    zp = run / f"z.{args.epochs}.pkl"
    with open(zp if zp.exists() else run / "z.pkl", "rb") as fh:
        z = np.asarray(pickle.load(fh))
    np.save(out / "z.npy", z)
    np.savetxt(out / "z_one.txt", z[:1])
    res["decode_one"] = timed([args.cryodrgn, "eval_vol", str(weights), "-c", str(cfg), "--zfile",
                               str(out / "z_one.txt"), "-o", str(out / "one")], out / "decode.log")
    np.savetxt(out / "z_eval.txt", z[idx])
    shutil.rmtree(out / "eval", ignore_errors=True)
    many = timed([args.cryodrgn, "eval_vol", str(weights), "-c", str(cfg), "--zfile", str(out / "z_eval.txt"),
                  "-o", str(out / "eval")], out / "eval.log")
    res["decode_per_volume_s"] = (many["seconds"] - res["decode_one"]["seconds"]) / max(1, len(idx) - 1)
    paths = sorted((out / "eval").glob("*.mrc"))
    res["fsc"] = fsc_summary(per_image_fsc_from_files(paths, gt, state[idx], apix))
    return res


def run_recovar(data: Path, out: Path, args: argparse.Namespace, idx: np.ndarray, gt: list[Path],
                state: np.ndarray, apix: float, mean_1x: bool = False) -> dict[str, Any]:
    from voxfield.reconstruct.evaluate import per_image_fsc_from_files

    run = out / "run"
    launcher = [args.recovar]
    if mean_1x:  # RECOVAR's own Python, through the launcher that sets its mean's upsampling to 1x
        launcher = [str(Path(args.recovar).with_name("python")), str(HERE / "recovar_mean1x.py")]
    cmd = [*launcher, "pipeline", str(data / "particles.mrcs"), "--poses", str(data / "poses.pkl"), "--ctf",
           str(data / "ctf.pkl"), "--mask", "sphere", "--zdim", str(args.zdim), "--accept-cpu", "-o", str(run)]
    done = out / "train.json"  # the pipeline's timing, kept so that a failed evaluation need not redo it
    if args.reuse and done.exists() and (run / "model" / f"zdim_{args.zdim}" / "latent_coords.npy").exists():
        res: dict[str, Any] = {"train": json.loads(done.read_text())}
    else:
        shutil.rmtree(run, ignore_errors=True)
        res = {"train": timed(cmd, out / "train.log")}
        done.write_text(json.dumps(res["train"]))
    z = np.load(run / "model" / f"zdim_{args.zdim}" / "latent_coords.npy")
    np.save(out / "z.npy", z)
    if args.recovar_eval == 0:  # latents only: no compute_state volumes (each is a kernel regression over the data)
        res.update(recovar_linear(run, z, idx, gt, state, apix))
        res["fsc"] = None
        res["decode_one"] = {"seconds": None, "note": args.recovar_decode_note}
        res["decode_per_volume_s"] = None
        return res
    np.savetxt(out / "z_one.txt", z[:1])
    shutil.rmtree(out / "one", ignore_errors=True)
    res["decode_one"] = timed([args.recovar, "compute_state", str(run), "--latent-points", str(out / "z_one.txt"),
                               "-o", str(out / "one")], out / "decode.log")
    ev = idx[:: max(1, len(idx) // args.recovar_eval)][: args.recovar_eval]
    np.savetxt(out / "z_eval.txt", z[ev])
    shutil.rmtree(out / "eval", ignore_errors=True)
    res["eval"] = timed([args.recovar, "compute_state", str(run), "--latent-points", str(out / "z_eval.txt"), "-o",
                         str(out / "eval")], out / "eval.log")
    res["decode_per_volume_s"] = (res["eval"]["seconds"] - res["decode_one"]["seconds"]) / max(1, len(ev) - 1)
    paths = [out / "eval" / f"state{k:03d}.mrc" for k in range(len(ev))]
    if not all(p.exists() for p in paths):
        raise RuntimeError(f"RECOVAR compute_state wrote {sorted(q.name for q in (out / 'eval').rglob('*.mrc'))[:8]}, "
                           f"not state000.mrc...; see {out / 'eval.log'}")
    res["n_eval"] = int(len(ev))
    res["fsc"] = fsc_summary(per_image_fsc_from_files(paths, gt, state[ev], apix))
    return res


def recovar_linear(run: Path, z: np.ndarray, idx: np.ndarray, gt: list[Path], state: np.ndarray,
                   apix: float) -> dict[str, Any]:
    """AU-FSC of RECOVAR's linear model: ``mean + Σ_k z_k u_k`` from the mean and eigenvolumes
    its pipeline writes (``output/volumes/mean.mrc``, ``eigen_pos0000.mrc``...; real space, in
    cryoDRGN's axis convention), at each evaluated image's latent ``z`` (the regularised
    embedding, zdim columns = the first zdim eigenvolumes); and of the mean alone. Empty when
    the volumes are missing."""
    import mrcfile

    from voxfield.reconstruct.evaluate import per_image_fsc

    means = sorted(run.rglob("volumes/mean.mrc"))
    if not means:
        return {}
    vd = means[0].parent
    eig = [vd / f"eigen_pos{k:04d}.mrc" for k in range(z.shape[1])]
    if not all(p.exists() for p in eig):
        return {}
    mean = np.asarray(mrcfile.read(means[0]), dtype=np.float64)
    u = np.stack([np.asarray(mrcfile.read(p), dtype=np.float64) for p in eig])
    lin = per_image_fsc(lambda i: (mean + np.tensordot(z[i], u, axes=1)).astype(np.float32), idx, gt, state, apix)
    only = per_image_fsc(lambda i: mean.astype(np.float32), idx, gt, state, apix)
    return {"fsc_linear": fsc_summary(lin), "fsc_mean_only": fsc_summary(only), "linear_volumes": str(vd)}


def latent_pca_sample(z: np.ndarray, colour: np.ndarray, n: int = 2000) -> dict[str, Any]:
    """Every ``len(z)/n``-th image's first two latent PCs and its colour (truth), rounded, for
    the latent plot of a report made without the run's ``z.npy``."""
    from voxfield.reconstruct.analysis import latent_pca

    pc = latent_pca(z, 2).projections
    step = max(1, len(z) // n)
    return {"pc": np.round(pc[::step], 4).tolist(), "colour": np.round(np.asarray(colour, float)[::step], 4).tolist()}


def run_recovar_mean1x(data: Path, out: Path, args: argparse.Namespace, idx: np.ndarray, gt: list[Path],
                       state: np.ndarray, apix: float) -> dict[str, Any]:
    """RECOVAR's pipeline with its mean reconstructed at 1x upsampling (``recovar_mean1x.py``)."""
    return run_recovar(data, out, args, idx, gt, state, apix, mean_1x=True)


RUNNERS = {"voxfield": run_voxfield, "cryodrgn": run_cryodrgn, "recovar": run_recovar,
           "recovar_mean1x": run_recovar_mean1x}


# ---------------------------------------------------------------------------- report
def markdown(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        "# CryoBench-style comparison: voxfield, RECOVAR, cryoDRGN", "",
        f"{s.get('data_note') or DEFAULT_DATA_NOTE}; each tool sees the "
        f"first {s['n_images']:,} images. voxfield and cryoDRGN: {s['epochs']} epochs, zdim {s['zdim']}; cryoDRGN "
        f"architecture: {s['cryodrgn_arch']}; RECOVAR: `pipeline`, zdim {s['zdim']} (no epochs). AU-FSC: CryoBench "
        f"per-image definition (|FSC| area over cycles/px to Nyquist, 0.5 = perfect), mean ± std over every "
        f"N/{s['n_eval']}-th image (RECOVAR: fewer, listed below; its `compute_state` is a reconstruction per "
        f"volume). Latent recovery: hinge |Spearman| of PC1 vs true angle; assembly ARI of k-means (k = 8). "
        f"Times are wall seconds on {r['machine']['cores']} CPU cores (no GPU), one tool at a time; memory is the "
        f"peak RSS of the training process.", "",
    ]
    if any("recovar_mean1x" in tools for tools in r["results"].values()):
        lines += [
            "RECOVAR is RECOVAR 1.0.5's `recovar pipeline` as shipped; on these sets (CPU) its mean reconstruction "
            "(2× upsampled) has Fourier shells 3–6 inverted against the truth, and the covariance and embedding are "
            "built around it. RECOVAR (1× mean) is the same pipeline with that one default changed to 1× "
            "(`benchmarks/recovar_mean1x.py`), which gives a correct mean; it is the fair anchor.", "",
        ]
    lines += [
        "| dataset | tool | AU-FSC | latent recovery | train (s) | train peak (MiB) | decode command (s) | "
        "decode per volume (s) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for ds, tools in r["results"].items():
        for t in TOOLS:
            if t not in tools:
                continue
            m = tools[t]
            au = "not measured" if m["fsc"] is None else f"{m['fsc']['au_fsc_mean']:.4f} ± {m['fsc']['au_fsc_std']:.4f}"
            if m["fsc"] is None and m.get("fsc_linear"):
                au = (f"{m['fsc_linear']['au_fsc_mean']:.4f} ± {m['fsc_linear']['au_fsc_std']:.4f} (linear; mean "
                      f"alone {m['fsc_mean_only']['au_fsc_mean']:.4f})")
            dc = "not measured" if m["decode_one"]["seconds"] is None else f"{m['decode_one']['seconds']:.2f}"
            pv = "—" if m["decode_per_volume_s"] is None else f"{m['decode_per_volume_s']:.4f}"
            lines.append(f"| {ds} | {LABEL[t]} | {au} | {m['latent']['value']:.3f} | {m['train']['seconds']:.0f} | "
                         f"{'≥ ' if m['train'].get('note') else ''}{m['train']['peak_mib']:.0f} | {dc} | {pv} |")
    notes = []
    for ds, tools in r["results"].items():
        for t, m in tools.items():
            if "n_eval" in m:
                notes.append(f"- {ds}, {LABEL[t]}: AU-FSC over {m['n_eval']} images (one `compute_state` volume each).")
            if m["train"].get("note"):
                notes.append(f"- {ds}, {LABEL[t]}: {m['train']['note']}.")
            if m.get("conditions"):  # how the run departed from "alone on the machine", written by hand
                notes.append(f"- {ds}, {LABEL[t]}: {m['conditions']}.")
            if m["decode_one"].get("note"):
                notes.append(f"- {ds}, {LABEL[t]}, decoding: {m['decode_one']['note']}.")
            if m["fsc"] is None and m.get("fsc_linear"):
                notes.append(f"- {ds}, {LABEL[t]}: AU-FSC of its linear model (mean + Σ z_k · eigenvolume_k from "
                             f"its `output/volumes`, at each image's embedding), not of `compute_state`; its mean "
                             f"volume alone gives {m['fsc_mean_only']['au_fsc_mean']:.4f}.")
            if m.get("latent_encoder_z") and m.get("fsc_encoder_z"):
                notes.append(f"- {ds}, {LABEL[t]}: latent = closed-form basis weights (`weights.npy`, the "
                             f"`analyze` default); the encoder's z gives latent recovery "
                             f"{m['latent_encoder_z']['value']:.3f} and AU-FSC {m['fsc_encoder_z']['au_fsc_mean']:.4f}.")
    if notes:
        lines += ["", *notes]
    lines += ["", "## Bars (voxfield against each anchor that ran on the dataset)", "",
              "| dataset | anchors | AU-FSC ≥ all | latent ≥ all | train ≤ cryoDRGN/3 and ≤ RECOVAR | decode per volume ≤ "
              "cryoDRGN/50 |",
              "|---|---|---|---|---|---|"]

    def yn(ok: bool) -> str:
        return "yes" if ok else "**no**"

    for ds, tools in r["results"].items():
        if "voxfield" not in tools:
            continue
        v = tools["voxfield"]
        others = [t for t in ANCHORS if t in tools]
        if not others:
            continue
        def au_of(m: dict[str, Any]) -> dict[str, Any] | None:
            """The anchor's measured volumes, else the better of its linear model and its mean alone."""
            if m["fsc"]:
                return m["fsc"]
            cands = [f for f in (m.get("fsc_linear"), m.get("fsc_mean_only")) if f]
            return max(cands, key=lambda f: f["au_fsc_mean"]) if cands else None

        au = all(v["fsc"]["au_fsc_mean"] >= au_of(tools[t])["au_fsc_mean"] for t in others if au_of(tools[t]))
        au_missing = [LABEL[t] for t in others if not au_of(tools[t])]
        au_linear = [LABEL[t] for t in others if not tools[t]["fsc"] and tools[t].get("fsc_linear")]
        la = all(v["latent"]["value"] >= tools[t]["latent"]["value"] for t in others)
        tr_ok, tr_txt = True, []
        if "cryodrgn" in tools:
            q = v["train"]["seconds"] / tools["cryodrgn"]["train"]["seconds"]
            tr_ok &= q <= 1 / 3
            tr_txt.append(f"{q:.3f} of cryoDRGN")
        for t in ("recovar", "recovar_mean1x"):
            if t in tools:
                q = v["train"]["seconds"] / tools[t]["train"]["seconds"]
                tr_ok &= q <= 1
                tr_txt.append(f"{q:.3f} of {LABEL[t]}")
        dc = "—"
        if "cryodrgn" in tools:
            q = v["decode_per_volume_s"] / tools["cryodrgn"]["decode_per_volume_s"]
            dc = f"{yn(q <= 1 / 50)} ({q:.4f})"
        au_txt = yn(au) + (f" (not measured for {', '.join(au_missing)})" if au_missing else "")
        au_txt += f" ({', '.join(au_linear)}: the better of linear model and mean)" if au_linear else ""
        lines.append(f"| {ds} | {', '.join(LABEL[t] for t in others)} | {au_txt} | {yn(la)} | {yn(tr_ok)} "
                     f"({', '.join(tr_txt)}) | {dc} |")
    return "\n".join(lines) + "\n"


def plots(r: dict[str, Any], out: Path, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxfield.reconstruct.analysis import latent_pca

    dss = list(r["results"])
    colours = {"voxfield": "C0", "recovar": "C1", "recovar_mean1x": "C3", "cryodrgn": "C2"}
    fig, axes = plt.subplots(1, len(dss), figsize=(4.2 * len(dss), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], dss):
        for t, m in r["results"][ds].items():
            for f, ls, suffix in ((m["fsc"], "-", ""), (m.get("fsc_linear") if m["fsc"] is None else None, "--",
                                                         " linear")):
                if f:
                    ax.plot(f["freq_per_px"], f["fsc_mean"], ls, color=colours[t],
                            label=f"{LABEL[t]}{suffix} ({f['au_fsc_mean']:.3f})")
        ax.axhline(0.5, color="0.7", lw=0.8)
        ax.set_title(ds)
        ax.set_xlabel("cycles / pixel")
        ax.set_ylabel("mean per-image FSC")
        ax.set_ylim(-0.1, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fsc.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(dss), figsize=(4.2 * len(dss), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], dss):
        for t, m in r["results"][ds].items():
            f, suffix = (m["fsc"], "") if m["fsc"] else (m.get("fsc_linear"), " linear")
            if not f:
                continue
            ps = {int(k): v for k, v in f["au_fsc_per_state"].items()}
            ks = sorted(ps)
            ax.plot(ks, [ps[k] for k in ks], "o-" if not suffix else "o--", ms=3, color=colours[t],
                    label=LABEL[t] + suffix)
        ax.set_title(ds)
        ax.set_xlabel("ground-truth state")
        ax.set_ylabel("AU-FSC (mean over its images)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "per_state.png", dpi=110)
    plt.close(fig)

    rows = [(ds, t) for ds in dss for t in TOOLS if t in r["results"][ds]]
    ntools = max(1, len(TOOLS))
    fig, axes = plt.subplots(len(dss), ntools, figsize=(3.6 * ntools, 3.2 * len(dss)), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ds, t in rows:
        i, j = dss.index(ds), TOOLS.index(t)
        ax = axes[i, j]
        ax.set_axis_on()
        zf, m = work / ds / t / "z.npy", r["results"][ds][t]
        if zf.exists():
            lab = np.load(work / ds / "data" / "labels.npz")
            c = lab["t"] if ds.startswith("hinge") else lab["state"]
            pc = latent_pca(np.load(zf), 2).projections
        elif m.get("latent_pca"):
            pc, c = np.asarray(m["latent_pca"]["pc"]), np.asarray(m["latent_pca"]["colour"])
        else:
            ax.text(0.5, 0.5, "latents of this run\nwere not kept", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{ds}: {LABEL[t]} ({m['latent']['value']:.2f})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.scatter(pc[:, 0], pc[:, 1], c=c, s=1, cmap="viridis" if ds.startswith("hinge") else "tab10",
                   rasterized=True)
        ax.set_title(f"{ds}: {LABEL[t]} ({r['results'][ds][t]['latent']['value']:.2f})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "latents.png", dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/cryobench"), help="Output of cryobench_data.py.")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cryobench-runs"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cryobench")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--tools", default=",".join(TOOLS), help="Tools to (re)run; cached results of others are kept.")
    ap.add_argument("--n-images", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--zdim", type=int, default=8)
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--recovar-eval", type=int, default=25,
                    help="Images whose RECOVAR volume is computed (0: latents only, no AU-FSC).")
    ap.add_argument("--data-note", default="", help="What the datasets are, for the report (default: the "
                    "cryobench_data.py sets); e.g. for held-out sets made by `voxfield reconstruct simulate`.")
    ap.add_argument("--recovar-decode-note", default="", help="With --recovar-eval 0: what is known of its decoding.")
    ap.add_argument("--voxfield-args", default="")
    ap.add_argument("--cryodrgn", default=None, help="cryodrgn executable in its own environment.")
    ap.add_argument("--cryodrgn-arch", default="small", choices=["small", "default"])
    ap.add_argument("--recovar", default=None, help="recovar executable in its own environment.")
    ap.add_argument("--reuse", action="store_true", help="RECOVAR: reuse a finished pipeline in WORK (its timing "
                                                         "is kept in train.json).")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--seed-from", type=Path, default=None,
                    help="An earlier results.json whose (dataset, tool) results fill WORK where it has none.")
    args = ap.parse_args()

    from voxfield.reconstruct.evaluate import select_images

    args.out.mkdir(parents=True, exist_ok=True)
    tools = [t for t in args.tools.split(",") if t] if not args.report_only else []
    for t in tools:
        if t not in RUNNERS:
            sys.exit(f"unknown tool {t}")
        exe = "recovar" if t.startswith("recovar") else t
        if t != "voxfield" and getattr(args, exe) is None:
            sys.exit(f"--{exe} (path to its executable) is needed to run {t}")
    seeded = json.loads(args.seed_from.read_text())["results"] if args.seed_from else {}
    results: dict[str, Any] = {}
    for ds in [d for d in args.datasets.split(",") if d]:
        for t, m in seeded.get(ds, {}).items():
            f = args.work / ds / t / "result.json"
            if not f.exists():
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps(m, indent=1, default=float))
        data = args.work / ds / "data"
        meta = subset(args.data / ds, data, args.n_images) if not args.report_only else json.loads(
            (data / "meta.json").read_text())
        lab = np.load(data / "labels.npz")
        state = lab["state"]
        gt = [args.data / ds / "gt" / f"state_{s:03d}.mrc" for s in range(int(meta["n_states"]))]
        idx = select_images(len(state), args.n_eval)
        kind = "hinge" if ds.startswith("hinge") else "assembly"
        for t in tools:
            out = args.work / ds / t
            out.mkdir(parents=True, exist_ok=True)
            print(f"== {ds}: {t}", flush=True)
            res = RUNNERS[t](data, out, args, idx, gt, state, float(meta["apix"]))
            res["latent"] = latent_metric(kind, np.load(out / "z.npy"), lab)
            res["latent_pca"] = latent_pca_sample(np.load(out / "z.npy"), lab["t"] if kind == "hinge" else state)
            if (out / "z_encoder.npy").exists() and res.get("latent_source") == "weights.npy":
                res["latent_encoder_z"] = latent_metric(kind, np.load(out / "z_encoder.npy"), lab)
            res["settings"] = {"n_images": args.n_images, "epochs": args.epochs, "zdim": args.zdim}
            (out / "result.json").write_text(json.dumps(res, indent=1, default=float))
            au = float("nan") if res["fsc"] is None else res["fsc"]["au_fsc_mean"]
            print(f"   AU-FSC {au:.4f}, latent {res['latent']['value']:.3f}, "
                  f"train {res['train']['seconds']:.0f} s", flush=True)
        results[ds] = {}
        for t in TOOLS:
            f = args.work / ds / t / "result.json"
            if f.exists():
                results[ds][t] = json.loads(f.read_text())
    report = {"settings": {"n_images": args.n_images, "epochs": args.epochs, "zdim": args.zdim,
                           "n_eval": args.n_eval, "recovar_eval": args.recovar_eval,
                           "cryodrgn_arch": args.cryodrgn_arch, "voxfield_args": args.voxfield_args,
                           "data_note": args.data_note},
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "results": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=float))
    (args.out / "results.md").write_text(markdown(report))
    plots(report, args.out, args.work)
    print(markdown(report))


if __name__ == "__main__":
    main()
