"""``voxfield denoise``: clean cryo-EM maps with the shipped 3D U-Net (paper 003), and the
tools around it: ``simulate``, ``make-dataset``, ``train``, ``dust`` (ChimeraX hide dust) and
``eval`` (confusion matrix against an atomic model)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import numpy as np
import typer
from typer.core import TyperGroup

from voxfield.cli import console
from voxfield.errors import OptionError
from voxfield.io import check_writable, read_volume, write_volume
from voxfield.io.volume import Volume

DEFAULT_COMMAND = "run"


class _DefaultGroup(TyperGroup):
    """``voxfield denoise MAP ...`` runs the ``run`` command; named sub-commands dispatch."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="denoise", cls=_DefaultGroup, no_args_is_help=True, add_completion=False,
    help="Denoise cryo-EM maps: `voxfield denoise MAP -o OUT.mrc` (3D U-Net voxel classifier, paper 003), "
         "or one of the commands below.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@contextmanager
def _bar(label: str) -> Iterator[Callable[[int, int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console.err, transient=True)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


def _device(name: str):
    from voxfield.compress.neural import resolve_device

    return resolve_device(name)


def _load(weights: Path | None, device: Any, resolution: float | None = None):
    from voxfield.denoise.unet import default_weights_path, load_weights

    return load_weights(weights if weights is not None else default_weights_path(resolution), device)


def _read_map(path: Path, apix: float | None) -> Volume:
    from voxfield.denoise.api import prepare_map

    return prepare_map(read_volume(path), apix, path)


@app.command(name=DEFAULT_COMMAND)
def run(
    input: Annotated[Path, typer.Argument(help="Map to denoise (.mrc/.map/.ccp4, optionally .gz).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Denoised map (MRC; original header, voxel size, origin).")],
    mode: Annotated[str, typer.Option(help="background (dust and noise only) or structural (also micelles, ice, "
                                            "unresolved density).")] = "background",
    threshold: Annotated[float | None, typer.Option(help="Structure-probability threshold (overrides the mode's "
                                                         "G-mean threshold stored with the weights).")] = None,
    mask_out: Annotated[Path | None, typer.Option("--mask-out", help="Also write the structure mask (0/1).")] = None,
    prob_out: Annotated[Path | None, typer.Option("--prob-out", help="Also write the structure probability map.")] = None,
    keep_grid: Annotated[bool, typer.Option("--keep-grid/--work-grid", help="Write on the original grid (default) or "
                                            "on the 1 Å working grid.")] = True,
    apix: Annotated[float | None, typer.Option(help="Voxel size in Å (for maps whose header has none).")] = None,
    resolution: Annotated[float | None, typer.Option(help="The map's resolution in Å: an input of the network and "
                                                          "it picks the thresholds of its band (2.5-5, 5-10, "
                                                          "10-20 Å); recommended. Warned outside the trained range.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights file [default: the shipped model].")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    contour: Annotated[float | None, typer.Option(help="Recommended (deposited) contour level [default: the level enclosing --mass, else the automatic contour].")] = None,
    mass: Annotated[float | None, typer.Option(help="Molecular mass in kDa: the contour encloses it at 1.21 Da/Å³.")] = None,
    keep_above: Annotated[float | None, typer.Option("--keep-above", help="Safety: never remove a voxel above this level.")] = None,
    protect: Annotated[bool, typer.Option("--protect/--no-protect", help="Keep density above the contour that is connected to the main structure unless the network is confident it is noise (P < 0.05).")] = True,
) -> None:
    """Classify every voxel as structure or noise and set the noise voxels to 0."""
    from voxfield.denoise.api import denoise

    for p in (output, mask_out, prob_out):
        if p is not None:
            check_writable(p)
    with _bar("denoise: tiles") as update:
        res = denoise(input, mode=mode, threshold=threshold, apix=apix, resolution=resolution, weights=weights,
                      device=device, keep_grid=keep_grid, progress=update, contour=contour, mass_kda=mass,
                      keep_above=keep_above, protect=protect)
    base = res.volume
    write_volume(base, output)
    if mask_out is not None:
        write_volume(Volume(res.mask.astype(np.int8), base.axes, base.spacing, base.unit, base.origin, base.meta),
                     mask_out)
    if prob_out is not None:
        write_volume(Volume(res.probability.astype(np.float32), base.axes, base.spacing, base.unit, base.origin,
                            base.meta), prob_out)
    console.out.print(
        f"{input.name} -> {output}: {mode} mode, threshold {res.threshold:.3f}; {res.removed_fraction:.1%} of the "
        f"positive voxels set to 0; {res.tiles_run}/{res.tiles_total} tiles in {res.seconds:.1f} s on {res.device}"
    )
    console.out.print(
        f"  contour {res.contour:.4g} ({res.contour_source}): {res.removed_above_contour:.2%} of the voxels above it "
        f"set to 0; {res.protected_voxels:,} voxels kept by the structure protection")


@app.command()
def simulate(
    model: Annotated[Path, typer.Argument(help="Atomic model (PDB/mmCIF).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Simulated noisy map (MRC, 1 Å voxels).")],
    resolution: Annotated[float, typer.Option(help="Resolution in Å.")] = 4.0,
    label_out: Annotated[Path | None, typer.Option("--label-out", help="Also write the structure label (0/1).")] = None,
    clean_out: Annotated[Path | None, typer.Option("--clean-out", help="Also write the noise-free molmap.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    keep_frame: Annotated[bool, typer.Option("--keep-frame/--random-orientation", help="Keep the model's frame (the map overlays the model, origin set) or rotate it at random as in training.")] = True,
    simulator_name: Annotated[str, typer.Option("--simulator", help="v2 (local and anisotropic resolution, real noise spectra) or v1.")] = "v2",
) -> None:
    """Simulate an experimental-looking map of a whole model (noise, dust, structural noise)."""
    from voxfield.denoise.api import require_resolution
    from voxfield.denoise.molmap import molmap, read_atoms
    from voxfield.denoise.simulate import simulate_sample, simulator

    require_resolution(resolution)
    for p in (output, label_out, clean_out):
        if p is not None:
            check_writable(p)
    cfg = simulator(simulator_name)
    atoms = read_atoms(model)
    rng = np.random.default_rng(seed)
    s = simulate_sample(atoms, rng, cfg, resolution=resolution, whole=True, keep_frame=keep_frame)
    sp = (1.0, 1.0, 1.0)
    org = tuple(s.info.get("origin_zyx", (0.0, 0.0, 0.0)))
    write_volume(Volume(s.raw, "ZYX", sp, "Å", org, {}), output)
    if label_out is not None:
        write_volume(Volume(s.label.astype(np.int8), "ZYX", sp, "Å", org, {}), label_out)
    if clean_out is not None:
        # the centred, unrotated model (with --keep-frame, exactly the noisy map's placement)
        a = read_atoms(model)
        box = s.info["box"]
        centred = type(a)(a.zyx - a.zyx.mean(axis=0) + box / 2.0, a.number, a.residue, a.name)
        write_volume(Volume(molmap(centred, (box,) * 3, resolution=resolution), "ZYX", sp, "Å", org, {}),
                     clean_out)
    console.out.print(f"{model.name} -> {output}: {box_text(s.info)}")


def box_text(info: dict[str, Any]) -> str:
    """One line describing a simulated sample."""
    keys = ("box", "resolution", "blur", "bfactor", "noise_std", "dust", "unmodelled_atoms", "belt", "ice", "masked")
    return ", ".join(f"{k} {info[k]}" for k in keys if k in info)


@app.command(name="make-dataset")
def make_dataset(
    models: Annotated[list[Path], typer.Argument(help="PDB/mmCIF files or folders of them.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder (created).")],
    samples: Annotated[int, typer.Option(help="Number of cubes.")] = 640,
    box: Annotated[int, typer.Option(help="Cube edge (1 Å voxels).")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    simulator_name: Annotated[str, typer.Option("--simulator", help="v2 (2.5-20 Å, local and anisotropic resolution, real noise spectra) or v1 (2.5-10 Å).")] = "v2",
) -> None:
    """Simulate training cubes (normalised input + 3-sigma structure label) into a folder."""
    from voxfield.denoise.dataset import make_dataset as build
    from voxfield.denoise.simulate import simulator

    if box < 16 or box % 8:
        raise OptionError(f"--box must be a multiple of 8 and >= 16, got {box}")
    t0 = time.perf_counter()
    with _bar("simulate") as update:
        out = build(models, output, n_samples=samples, seed=seed, config=simulator(simulator_name, box), progress=update)
    console.out.print(f"{samples} cubes of {box}^3 in {out} ({time.perf_counter() - t0:.1f} s)")


@app.command()
def train(
    dataset: Annotated[Path, typer.Argument(help="Training dataset folder (make-dataset).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder: checkpoint.pt, log.jsonl, model.safetensors.")],
    val: Annotated[Path | None, typer.Option(help="Validation dataset folder (thresholds are chosen on it).")] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 2000,
    batch: Annotated[int, typer.Option(help="Cubes per step.")] = 4,
    crop: Annotated[int, typer.Option(help="Random crop edge (multiple of 8).")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper: 2e-4), cosine decay.")] = 1e-3,
    class_weight: Annotated[str, typer.Option(help="Structure weight: 'auto' (balanced per batch) or a number "
                                                   "(paper: 40).")] = "auto",
    channels: Annotated[str, typer.Option(help="U-Net channels per level.")] = "16,32,64,128",
    eval_every: Annotated[int, typer.Option(help="Validate and checkpoint every N steps.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUTPUT/checkpoint.pt.")] = True,
    init: Annotated[Path | None, typer.Option(help="Start from these weights (fine-tune), e.g. the shipped ones.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resolution_input: Annotated[bool, typer.Option("--resolution-input/--map-only", help="Give the network each cube's resolution (withheld from 20 % of the crops); map-only weights given with --init are widened.")] = True,
) -> None:
    """Train the U-Net (resumable); writes OUTPUT/model.safetensors with G-mean thresholds."""
    from voxfield.denoise.train import TrainConfig
    from voxfield.denoise.train import train as run_training
    from voxfield.denoise.unet import channels_from_text

    if not math.isfinite(lr) or lr <= 0:
        raise OptionError(f"--lr must be > 0, got {lr}")
    if eval_every < 1:
        raise OptionError("--eval-every must be >= 1")
    try:
        ch = tuple(channels_from_text(channels))
    except ValueError:
        raise OptionError(f"--channels must be numbers like 16,32,64,128, got {channels!r}") from None
    if not ch or min(ch) < 1:
        raise OptionError(f"--channels must be positive numbers, got {channels!r}")
    if not resume and (output / "checkpoint.pt").exists():
        (output / "checkpoint.pt").unlink()
        (output / "log.jsonl").unlink(missing_ok=True)
    cfg = TrainConfig(steps=steps, batch=batch, crop=crop, lr=lr, class_weight=class_weight, seed=seed,
                      eval_every=eval_every, channels=ch, resolution_input=resolution_input)
    cfg.weight()
    with _bar("train: steps") as update:
        path = run_training(dataset, output, val_dir=val, config=cfg, device=_device(device), resume=resume, init_weights=init,
                            progress=lambda s, n, last: update(s, n))
    from voxfield.denoise.unet import load_weights

    _, meta = load_weights(path)
    v = meta.get("validation")
    msg = f"weights: {path}"
    if v:
        msg += (f"; validation G-mean {v['background_gmean']:.3f} (TPR {v['tpr']:.3f}, TNR {v['tnr']:.3f}) at "
                f"threshold {v['background_threshold']:.3f}; structural threshold {v['structural_threshold']:.3f}")
    console.out.print(msg)


@app.command()
def dust(
    input: Annotated[Path, typer.Argument(help="Map (.mrc/.map, ...).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Map with the dust pieces set to 0.")],
    level: Annotated[float | None, typer.Option("--level", "--contour", help="Contour level, e.g. the deposited one [default: the level enclosing --mass, else the automatic contour].")] = None,
    mass: Annotated[float | None, typer.Option(help="Molecular mass in kDa: the contour encloses it at 1.21 Da/Å³.")] = None,
    size: Annotated[float, typer.Option(help="Pieces whose metric is below this are dust (Å, Å² or Å³).")] = 5.0,
    metric: Annotated[str, typer.Option(help="size (largest bounding-box edge, Å), area (Å²) or volume (Å³).")] = "size",
    apix: Annotated[float | None, typer.Option(help="Voxel size in Å (for maps whose header has none).")] = None,
) -> None:
    """ChimeraX "hide dust" on the map itself: connected pieces above the level that are
    smaller than the limit are set to 0."""
    from voxfield.denoise.dust import dust_mask
    from voxfield.metrics.cryoem import auto_contour, mass_contour

    check_writable(output)
    vol = _read_map(input, apix)
    if level is not None and mass is not None:
        raise OptionError("give --contour or --mass, not both")
    if level is not None:
        lev, how = float(level), ""
    elif mass is not None:
        lev, how = mass_contour(vol.data, vol.spacing, mass), f" (encloses {mass:g} kDa)"
    else:
        lev, how = float(auto_contour(vol.data, vol.spacing)), " (auto)"
    res = dust_mask(np.asarray(vol.data, dtype=np.float32), lev, vol.spacing, size=size, metric=metric)
    out = np.where(res.dust, np.zeros((), vol.data.dtype), vol.data).astype(vol.data.dtype, copy=False)
    write_volume(Volume(out, vol.axes, vol.spacing, vol.unit, vol.origin, vol.meta), output)
    console.out.print(f"{input.name} -> {output}: level {lev:.4g}{how}, "
                      f"{res.n_dust} of {res.n_components} pieces below {size:g} ({metric}) set to 0 "
                      f"({int(res.dust.sum())} voxels)")


@app.command(name="eval")
def evaluate_cmd(
    map: Annotated[Path, typer.Argument(help="Experimental map.")],
    model: Annotated[Path, typer.Argument(help="Its atomic model (PDB/mmCIF), in the map's frame (ORIGIN honoured).")],
    resolution: Annotated[float, typer.Option(help="The map's resolution in Å (sets the 3-sigma label).")],
    level: Annotated[float | None, typer.Option("--level", "--contour", help="Contour level for the threshold and hide-dust baselines, e.g. the deposited one "
                                                     "[default: the level enclosing --mass, else the model's mass, at 1.21 Da/Å³].")] = None,
    mass: Annotated[float | None, typer.Option(help="Molecular mass in kDa for the contour [default: the model's].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Evaluate even when CC_mask says the model does not fit the map.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Folder for the PR-curve and histogram PNGs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    out: Annotated[Path | None, typer.Option("-o", "--output", help="Also save the JSON here.")] = None,
    apix: Annotated[float | None, typer.Option(help="Voxel size in Å (for maps whose header has none).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights file [default: the shipped model].")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Confusion matrix (positive = noise, nonzero voxels, paper 003) of the network, a
    plain threshold and hide dust against the model's 3-sigma label."""
    from voxfield.denoise.api import check_resolution, require_resolution
    from voxfield.denoise.evaluate import evaluate, format_table
    from voxfield.denoise.molmap import read_atoms
    from voxfield.metrics.map_model import load_model

    require_resolution(resolution)
    if level is not None and mass is not None:
        raise OptionError("give --contour or --mass, not both")
    if out is not None:
        check_writable(out)
    vol = _read_map(map, apix)
    st = load_model(model)
    atoms = read_atoms(model)
    dev = _device(device)
    net, meta = _load(weights, dev, resolution)
    check_resolution(resolution, meta)
    with _bar("eval: tiles") as update:
        res = evaluate(vol, st, atoms, resolution=resolution, model=net, meta=meta, level=level, device=dev,
                       plots_dir=plots, name=map.name.split(".")[0], progress=update, mass_kda=mass, force=force)
    if out is not None:
        from voxfield.io.atomic import write_bytes_atomic

        write_bytes_atomic(out, json.dumps(res, indent=1).encode())
    if as_json:
        console.print_json(res)
        return
    console.out.print(f"{map.name} vs {model.name} at {resolution:g} Å: {res['valid_voxels']:,} nonzero voxels "
                      f"({res['noise_voxels']:,} noise, {res['structure_voxels']:,} structure); contour level "
                      f"{res['level']:.4g} ({res['level_source']}); similarity (eqs. 1-3) "
                      f"{res['similarity']['similarity']:.3f}; CC_mask {res['cc_mask']:.3f}")
    console.out.print(format_table(res))
