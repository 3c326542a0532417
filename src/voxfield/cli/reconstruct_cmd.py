"""``voxfield reconstruct``: heterogeneous reconstruction from particle images with known poses
(structural-basis VAE with sparse Fourier backpropagation, paper 004).

Commands: ``train`` (STAR / cryoSPARC .cs / MRCS + cryoDRGN pickles), ``volume`` (decode MRC
volumes for latents, particles or a principal-component traversal), ``analyze`` (PCA, UMAP,
k-means volumes, per-particle latents), ``simulate`` (AdK particle set with ground truth) and
``eval`` (per-image FSC to ground truth, AU-FSC, latent–truth correlation).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from voxfield.cli import console
from voxfield.errors import DataError, OptionError

app = typer.Typer(
    name="reconstruct", no_args_is_help=True, add_completion=False,
    help="Heterogeneous cryo-EM reconstruction from particle images with known poses and CTF "
         "(structural-basis VAE, sparse Fourier backpropagation, paper 004).",
    context_settings={"help_option_names": ["-h", "--help"]},
)


#: Seconds between the plain progress lines written when stderr is not a terminal.
PLAIN_PROGRESS_EVERY_S = 60.0


@contextmanager
def _bar(label: str) -> Iterator[Callable[..., None]]:
    """A progress bar on a terminal; elsewhere (a batch job's log) a plain line at the first
    update, every :data:`PLAIN_PROGRESS_EVERY_S` seconds and at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not console.err.is_terminal:
        t0, last = time.perf_counter(), [None]

        def plain(done: int, total: int, info: str = "") -> None:
            now = time.perf_counter()
            if last[0] is None or now - last[0] >= PLAIN_PROGRESS_EVERY_S or (total and done >= total):
                last[0] = now
                console.err.print(f"{label}: {done}/{total or '?'} {info} ({now - t0:.0f} s)".replace("  ", " "))

        yield plain
        return

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), console=console.err, transient=True)
    task = progress.add_task(label, total=None, info="")

    def update(done: int, total: int, info: str = "") -> None:
        progress.update(task, completed=done, total=total, info=info)

    with progress:
        yield update


def _device(name: str):
    from voxfield.compress.neural import resolve_device

    return resolve_device(name)


@app.command()
def train(
    particles: Annotated[Path, typer.Argument(help="Particles: RELION .star (3.0/3.1/5), cryoSPARC .cs, or an "
                                                   ".mrcs stack with --poses/--ctf (cryoDRGN pickles).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder (checkpoint.pt, config.json, "
                                                               "log.jsonl, z.npy).")],
    datadir: Annotated[Path | None, typer.Option(help="Folder of the image stacks named in the STAR/.cs file.")] = None,
    poses: Annotated[Path | None, typer.Option(help="cryoDRGN pose pickle (overrides the file's poses).")] = None,
    ctf: Annotated[Path | None, typer.Option(help="cryoDRGN CTF pickle (overrides the file's CTF).")] = None,
    apix: Annotated[float | None, typer.Option(help="Pixel size (Å) where the input records none.")] = None,
    zdim: Annotated[int, typer.Option(help="Latent dimension (0: homogeneous reconstruction, one volume).")] = 8,
    basis: Annotated[int, typer.Option(help="Number K of structural basis volumes.")] = 16,
    epochs: Annotated[int, typer.Option(help="Passes over the data.")] = 20,
    batch: Annotated[int, typer.Option(help="Images per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the encoder and weight MLP.")] = 1e-3,
    basis_lr: Annotated[float, typer.Option(help="(Sparse) Adam learning rate of the basis volumes.")] = 3e-3,
    beta: Annotated[float, typer.Option(help="Weight of the KL term (1 = the ELBO's).")] = 0.05,
    weighting: Annotated[str, typer.Option(help="Loss weighting: white (whitened likelihood, default) or eq4 "
                                                "(paper: ∝ σ̄², squared error in data units).")] = "white",
    sparse: Annotated[bool, typer.Option("--sparse/--dense", help="Sparse basis gradients with SparseAdam "
                                                                   "(default), or dense with Adam.")] = True,
    invert: Annotated[bool, typer.Option("--invert-data/--no-invert-data",
                                         help="Multiply images by −1 (cryoDRGN's default: particles white on "
                                              "black in the file).")] = True,
    mask: Annotated[str, typer.Option(help="Solvent mask the basis is projected onto: auto (from the average "
                                           "volume, default), sphere, none, or an MRC file on the particles' "
                                           "grid.")] = "auto",
    focus_mask: Annotated[Path | None, typer.Option(help="Focus mask (MRC): heterogeneity is learnt inside it "
                                                         "only; the rest of the particle stays a single volume.")]
    = None,
    basis_fit: Annotated[str, typer.Option(help="How the basis volumes are fitted: encoder (through the "
                                                "encoder's latent, the paper's VAE) or posterior (through "
                                                "each image's closed-form weights: stochastic EM, default).")] = "posterior",
    readout_band: Annotated[str, typer.Option(help="Fourier shells the basis weights (OUTPUT/weights.npy) are "
                                                   "read out from: auto (chosen from the data; best latent), all "
                                                   "(every shell; sharper per-particle volumes at low SNR), or a "
                                                   "shell number. Rerun on a finished run to redo only the "
                                                   "readout.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUTPUT/checkpoint.pt.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Train the structural-basis VAE (checkpoint every epoch, resumable); writes OUTPUT/z.npy."""
    from voxfield.reconstruct.api import reconstruct

    band: int | str | None = {"auto": "auto", "all": None}.get(readout_band.strip().lower(), readout_band)
    if isinstance(band, str) and band != "auto":
        try:
            band = int(band)
        except ValueError:
            raise OptionError(f"--readout-band must be auto, all or a shell number, got {readout_band!r}") from None
    t0 = time.perf_counter()
    with _bar("train") as update:
        def prog(ep: int, n_ep: int, b: int, n_b: int, tot: dict[str, float]) -> None:
            update(ep * n_b + b, n_ep * n_b, f"epoch {ep + 1}/{n_ep} loss {tot.get('loss', 0):.4g}")

        run = reconstruct(particles, output, datadir=datadir, poses=poses, ctf=ctf, apix=apix, device=device,
                          resume=resume, progress=prog, on_note=lambda text: console.err.print(text),
                          zdim=zdim, K=basis, epochs=epochs, batch=batch, lr=lr, basis_lr=basis_lr, beta=beta,
                          weighting=weighting, sparse=sparse, invert=invert, seed=seed, mask=mask,
                          focus_mask="" if focus_mask is None else str(focus_mask), basis_fit=basis_fit,
                          readout_band=band)
    msg = f"run: {output} ({run.epoch} epochs, {time.perf_counter() - t0:.1f} s)"
    if zdim > 0:
        msg += f"; latents: {output / 'z.npy'} {np.load(output / 'z.npy').shape}"
    console.out.print(msg)


def _parse_z(text: str, zdim: int) -> np.ndarray:
    try:
        vals = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise OptionError(f"--z must be {zdim} numbers, got {text!r}") from None
    if len(vals) != zdim or not all(math.isfinite(v) for v in vals):
        raise OptionError(f"--z must be {zdim} finite numbers (the run's latent dimension), got {len(vals)}")
    return np.asarray(vals, dtype=np.float32)


def _run_z(run_dir: Path) -> np.ndarray:
    p = run_dir / "z.npy"
    if not p.exists():
        raise DataError(f"{run_dir}: no z.npy (train writes it when it finishes)")
    return np.load(p)


_LATENT_HELP = ("Latent used: weights (each particle's closed-form basis weights, RUN/weights.npy; the default "
                "when present) or z (the encoder's latents, RUN/z.npy).")


def _run_latent(run: Any, run_dir: Path, latent: str) -> tuple[np.ndarray, Any, str]:
    """``(latents [N, d], decode(latent) -> volume, "weights" | "z")`` for ``--latent``."""
    if latent not in ("auto", "weights", "z"):
        raise OptionError(f"--latent must be auto, weights or z, got {latent!r}")
    if latent == "auto":
        latent = "weights" if (run_dir / "weights.npy").exists() else "z"
    if latent == "z":
        return _run_z(run_dir), run.volume, "z"
    if not (run_dir / "weights.npy").exists():
        raise DataError(f"{run_dir}: no weights.npy (`reconstruct train` writes it when it finishes)")
    w = np.load(run_dir / "weights.npy")
    if w.ndim != 2 or w.shape[1] != run.model.K:
        raise DataError(f"{run_dir}/weights.npy: expected [N, {run.model.K}], got {list(w.shape)}")
    return w, run.volume_from_weights, "weights"


def _write_map(path: Path, vol: np.ndarray, apix: float) -> None:
    from voxfield.io import write_volume
    from voxfield.io.volume import Volume

    write_volume(Volume(np.ascontiguousarray(vol, dtype=np.float32), "ZYX", (apix,) * 3, "Å", (0.0, 0.0, 0.0), {}), path)


@app.command()
def volume(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `reconstruct train`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .mrc (one volume) or folder (several).")],
    z: Annotated[str | None, typer.Option(help="Latent vector, e.g. '0.1 -0.3 ...' (zdim numbers).")] = None,
    zfile: Annotated[Path | None, typer.Option(help="Text/.npy file of latents, one per row: one volume each.")] = None,
    particle: Annotated[int | None, typer.Option(help="Decode the latent of this particle (0-based).")] = None,
    pc: Annotated[int | None, typer.Option(help="Traverse this principal component of the latents (1-based).")] = None,
    steps: Annotated[int, typer.Option(help="Volumes along --pc (5th to 95th percentile).")] = 10,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Write MRC volumes: one pass over the basis and an inverse FFT per volume."""
    from voxfield.reconstruct.run import load_run

    run = load_run(run_dir, _device(device))
    chosen = sum(x is not None for x in (z, zfile, particle, pc))
    if run.zdim == 0:
        if chosen:
            raise OptionError("this run is homogeneous (zdim 0): give no --z/--zfile/--particle/--pc")
        _write_map(output, run.volume(None), run.apix)
        console.out.print(f"wrote {output}")
        return
    if chosen != 1:
        raise OptionError("give exactly one of --z, --zfile, --particle, --pc")
    if z is not None:
        points = _parse_z(z, run.zdim)[None]
    elif zfile is not None:
        points = np.load(zfile) if zfile.suffix == ".npy" else np.loadtxt(zfile, ndmin=2)
        points = np.asarray(points, dtype=np.float32).reshape(-1, run.zdim) if points.size % run.zdim == 0 else None
        if points is None:
            raise OptionError(f"{zfile}: rows must hold {run.zdim} numbers")
    elif particle is not None:
        zz = _run_z(run_dir)
        if not 0 <= particle < len(zz):
            raise OptionError(f"--particle must be in 0..{len(zz) - 1}, got {particle}")
        points = zz[particle][None]
    else:
        from voxfield.reconstruct.analysis import pc_traversal

        if steps < 1 or not 1 <= pc <= run.zdim:
            raise OptionError(f"--pc must be in 1..{run.zdim} and --steps >= 1")
        points = pc_traversal(_run_z(run_dir), pc=pc, steps=steps)
    if len(points) == 1 and output.suffix.lower() in (".mrc", ".map"):
        t0 = time.perf_counter()
        _write_map(output, run.volume(points[0]), run.apix)
        console.out.print(f"wrote {output} (decoded in {time.perf_counter() - t0:.3f} s)")
        return
    output.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(points):
        _write_map(output / f"vol_{i:03d}.mrc", run.volume(p), run.apix)
    np.savetxt(output / "z_values.txt", points)
    console.out.print(f"wrote {len(points)} volumes to {output}")


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `reconstruct train`.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Folder (default RUN/analyze).")] = None,
    k: Annotated[int, typer.Option(help="k-means clusters (one volume each).")] = 20,
    pcs: Annotated[int, typer.Option(help="Principal components to traverse.")] = 2,
    steps: Annotated[int, typer.Option(help="Volumes per traversal.")] = 10,
    umap: Annotated[bool, typer.Option("--umap/--no-umap", help="UMAP embedding (needs umap-learn; falls back "
                                                                "to PCA with a warning).")] = True,
    latent: Annotated[str, typer.Option(help=_LATENT_HELP)] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Latent PCA/UMAP plots, k-means and PC-traversal volumes, per-particle latents (.npy + STAR column)."""
    from voxfield.reconstruct.analysis import analyze as run_analysis
    from voxfield.reconstruct.run import load_run

    run = load_run(run_dir, _device(device))
    if run.zdim == 0:
        raise OptionError("this run is homogeneous (zdim 0): there is no latent space to analyse")
    zz, decode, latent = _run_latent(run, run_dir, latent)
    name = "Weight" if latent == "weights" else "Latent"
    out = output or run_dir / "analyze"
    summary = run_analysis(zz, out, k=k, seed=seed, pcs=min(pcs, zz.shape[1]), steps=steps,
                           decode_volume=decode, apix=run.apix, umap=umap,
                           progress=lambda s: console.err.print(s))
    src = json.loads((run_dir / "config.json").read_text()).get("source", {})
    star = src.get("particles")
    if star and star.endswith(".star") and Path(star).exists():
        from voxfield.reconstruct.particles import add_star_columns

        cols = {f"rlnVoxfield{name}{j + 1}": zz[:, j] for j in range(zz.shape[1])}
        add_star_columns(star, out / "particles_latent.star", cols)
        summary["star"] = str(out / "particles_latent.star")
    console.out.print(f"analysis of {latent}: {out} (k-means {min(k, len(zz))} volumes, "
                      f"{min(pcs, zz.shape[1])} traversals)")


def _explicit_states(model: tuple, hinge: str | None, angles: str, n_states: int, subunits: str | None,
                     patterns: str | None) -> list | None:
    """The states of --hinge or --subunits (None for a path between models)."""
    from voxfield.reconstruct.conformations import composition_states, hinge_states, select

    atoms, keys = model
    if hinge is not None:
        try:
            a0, a1 = (float(v) for v in angles.split(","))
        except ValueError:
            raise OptionError(f"--angles must be 'first,last' in degrees, got {angles!r}") from None
        if not (math.isfinite(a0) and math.isfinite(a1)):
            raise OptionError(f"--angles must be finite, got {angles!r}")
        return hinge_states(atoms, select(keys, hinge), np.linspace(a0, a1, int(n_states)))
    if subunits is not None:
        groups = [g.strip() for g in subunits.split(";") if g.strip()]
        if not 1 <= len(groups) <= 8:
            raise OptionError(f"--subunits takes 1 to 8 groups, got {len(groups)}")
        if patterns is None:
            import itertools

            pats = [p for p in itertools.product((True, False), repeat=len(groups)) if any(p)]
        else:
            pats = []
            for word in patterns.split(","):
                word = word.strip()
                if len(word) != len(groups) or set(word) - {"0", "1"}:
                    raise OptionError(f"--patterns: {word!r} must be {len(groups)} flags of 0/1, one per group")
                pats.append([c == "1" for c in word])
        if len(pats) < 2:
            raise OptionError("--subunits needs at least two states")
        return composition_states(atoms, keys, groups, pats)
    return None


@app.command()
def simulate(
    models: Annotated[list[Path], typer.Argument(help="Two or more PDB/mmCIF models with the same atoms in the same "
                                                      "order (the path runs through them), e.g. adk_closed.pdb "
                                                      "adk_open.pdb.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder (particles.mrcs/.star, poses.pkl, "
                                                               "ctf.pkl, gt/, labels.npz, meta.json).")],
    n_images: Annotated[int, typer.Option("--n", help="Number of particle images.")] = 20000,
    box: Annotated[int, typer.Option(help="Image box D (even).")] = 64,
    apix: Annotated[float, typer.Option(help="Pixel size (Å).")] = 1.5,
    resolution: Annotated[float, typer.Option(help="Resolution of the molmap volumes (Å).")] = 4.0,
    states: Annotated[int, typer.Option(help="Ground-truth volumes along the path (each image gets one).")] = 50,
    snr: Annotated[float, typer.Option(help="Signal variance / noise variance over the whole images (0: no noise).")] = 0.1,
    defocus: Annotated[str, typer.Option(help="Defocus range in Å, 'min,max'.")] = "10000,25000",
    shift: Annotated[float, typer.Option(help="Largest in-plane shift (pixels, uniform per axis).")] = 2.0,
    invert: Annotated[bool, typer.Option("--invert/--no-invert", help="Bright particles (RELION/cryoDRGN default "
                                                                        "convention).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    hinge: Annotated[str | None, typer.Option(help="Continuous motion from ONE model: this domain (e.g. 'A:1-120' or "
                                                   "'H:1-120+L:1-110') turns rigidly about its hinge through --angles.")] = None,
    angles: Annotated[str, typer.Option(help="With --hinge: first,last angle in degrees (--states steps).")] = "-30,30",
    subunits: Annotated[str | None, typer.Option(help="Compositional states from ONE model: subunit groups separated "
                                                      "by ';' (e.g. 'B;C;D'), each present or absent.")] = None,
    patterns: Annotated[str | None, typer.Option(help="With --subunits: the states as flags per group, e.g. "
                                                      "'111,110,100' [default: every combination with at least one "
                                                      "group present].")] = None,
) -> None:
    """Simulate a heterogeneous particle set with ground truth: along a conformational path
    between two or more models, a domain turned about a hinge (--hinge), or subunits present
    or absent (--subunits)."""
    from voxfield.reconstruct.simulate import read_model, simulate_dataset

    if hinge is not None and subunits is not None:
        raise OptionError("give --hinge or --subunits, not both")
    if (hinge is not None or subunits is not None) and len(models) != 1:
        raise OptionError("--hinge and --subunits build the states from exactly one model")
    if hinge is None and subunits is None and len(models) < 2:
        raise OptionError("give at least two models (the two ends of the conformational path), or one with --hinge "
                          "or --subunits")
    try:
        lo, hi = (float(v) for v in defocus.split(","))
    except ValueError:
        raise OptionError(f"--defocus must be 'min,max' in Å, got {defocus!r}") from None
    if not (0 < lo <= hi) or not math.isfinite(hi):
        raise OptionError(f"--defocus must satisfy 0 < min <= max, got {defocus!r}")
    if not math.isfinite(snr) or snr < 0:
        raise OptionError(f"--snr must be >= 0, got {snr}")
    read = [read_model(m) for m in models]
    explicit = _explicit_states(read[0], hinge, angles, states, subunits, patterns)
    with _bar("simulate") as update:
        res = simulate_dataset(output, [a for a, _ in read], atom_ids=[k for _, k in read], n_images=n_images, D=box,
                               apix=apix, resolution=resolution, n_states=states, snr=snr if snr > 0 else None,
                               defocus=(lo, hi), max_shift_px=shift, invert=invert, seed=seed, progress=False,
                               states=explicit)
        update(n_images, n_images)
    console.out.print(f"wrote {res.n_images} images ({res.D} px, {res.apix} Å) and {res.n_states} ground-truth volumes "
                      f"to {output} in {res.seconds:.1f} s")


@app.command(name="eval")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `reconstruct train`.")],
    truth: Annotated[Path, typer.Option(help="Simulation folder (labels.npz, gt/state_XXX.mrc).")],
    n: Annotated[int, typer.Option(help="Images evaluated (every N/n-th, as CryoBench).")] = 100,
    plot: Annotated[Path | None, typer.Option(help="Write the mean FSC curve (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    latent: Annotated[str, typer.Option(help=_LATENT_HELP)] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Per-image FSC to ground truth (AU-FSC, CryoBench) and |Spearman| of the latents with the true path coordinate."""
    from voxfield.reconstruct.evaluate import fsc_plot, latent_spearman, per_image_fsc, select_images
    from voxfield.reconstruct.run import load_run

    run = load_run(run_dir, _device(device))
    lab_path = truth / "labels.npz"
    if not lab_path.exists():
        raise DataError(f"{truth}: no labels.npz (not a `reconstruct simulate` folder)")
    lab = np.load(lab_path)
    state, t_true = lab["state"], lab["t"]
    n_states = int(len(lab["t_states"]))
    gt = [truth / "gt" / f"state_{s:03d}.mrc" for s in range(n_states)]
    missing = [p for p in gt if not p.exists()]
    if missing:
        raise DataError(f"{truth}: {len(missing)} ground-truth volumes missing, e.g. {missing[0]}")
    if n < 1:
        raise OptionError("--n must be >= 1")
    idx = select_images(len(state), min(n, len(state)))
    rec: dict[str, Any] = {"run": str(run_dir), "epoch": run.epoch, "n_images": int(len(idx))}
    if run.zdim > 0:
        zz, dec, rec["latent"] = _run_latent(run, run_dir, latent)
        if len(zz) != len(state):
            raise DataError(f"{run_dir}: {len(zz)} latents but {lab_path} has {len(state)} images")
        decode = lambda i: dec(zz[i])  # noqa: E731
        rec["spearman"] = latent_spearman(zz, t_true)
    else:
        hom = run.volume(None)
        decode = lambda i: hom  # noqa: E731
    t0 = time.perf_counter()
    r = per_image_fsc(decode, idx, gt, state, run.apix)
    rec.update({k: r[k] for k in ("au_fsc_mean", "au_fsc_std", "au_fsc_median", "resolution_0.5_A",
                                  "resolution_0.143_A") if k in r})
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    if plot is not None:
        fsc_plot({f"voxfield (epoch {run.epoch})": (r["freq_per_A"], r["fsc_mean"], r["fsc_std"])}, plot, run.apix)
    if as_json:
        console.print_json(rec)
        return
    msg = (f"AU-FSC {rec['au_fsc_mean']:.4f} ± {rec['au_fsc_std']:.4f} over {len(idx)} images; mean-curve resolution "
           f"{rec.get('resolution_0.5_A', float('nan')):.2f} Å (0.5), {rec.get('resolution_0.143_A', float('nan')):.2f} Å (0.143)")
    if "spearman" in rec:
        msg += f"; |Spearman| latent PC1 vs true t: {rec['spearman']['pc1']:.3f} (best dim {rec['spearman']['best']:.3f})"
    console.out.print(msg)
