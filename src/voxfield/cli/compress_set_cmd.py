"""``voxfield compress-set``: several cryo-EM maps in one file, one shared ``cryo-pe`` network
with a learnable latent vector per map (:mod:`voxfield.compress.cryo_pe_set`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voxfield.cli import console
from voxfield.cli.compress_cmd import parse_settings, stage_progress
from voxfield.compress import container
from voxfield.compress.defaults import DEFAULT_RATIO
from voxfield.errors import OptionError
from voxfield.io import check_writable, read_volume
from voxfield.io.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from voxfield.compress.cryo_pe_set import CryoPESetReport


def describe_set_fit(rep: CryoPESetReport) -> str:
    """One line about a joint fit for the command's summary."""
    from voxfield.compress.cryo_pe_set import METHOD

    return (f"{METHOD}: {len(rep.members)} maps, one network (widths {rep.widths}, {rep.n_params:,} parameters incl. "
            f"{len(rep.members)} latent vectors), {rep.steps} steps, {rep.loss} loss, {rep.sampling} sampling, "
            f"weights at {rep.bits:.2f} bits")


def compress_set(
    inputs: Annotated[list[Path], typer.Argument(help="Maps to compress together (.mrc/.map(.gz), .tif, .npy, ...; 3-D, ZYX). Shapes and voxel sizes may differ.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .vxf file (required).")],
    ratio: Annotated[float | None, typer.Option(help="Target ratio: the sum of the maps' original bytes over the file bytes [default: 64].")] = None,
    tolerance: Annotated[float, typer.Option(help="Accepted relative deviation from the ratio.")] = 0.02,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    steps: Annotated[int | None, typer.Option(help="Training steps [default: as many as fit --time-budget].")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Seconds of training when --steps is not given [default: from the total voxel count, 30-180 s].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Any cryo-pe-set configuration key, e.g. --set sampling=balanced --set threshold=0.1 (threshold: the same for every map; default: each map's automatic contour).")] = None,
    axes: Annotated[str | None, typer.Option(help="Override the inputs' axis letters, e.g. ZYX.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
    check: Annotated[bool, typer.Option(help="Decode every member and report its PSNR.")] = True,
) -> None:
    """Compress several maps into one .vxf with one shared cryo-pe network and one latent
    vector per map; restore one with `voxfield decompress SET.vxf --member N` (N from 1, as
    `voxfield info SET.vxf` lists them)."""
    from voxfield.codecs.base import Target
    from voxfield.compress.api import decompress as decompress_vxf
    from voxfield.compress.cryo_pe_set import METHOD, CryoPESetConfig, CryoPESetReport
    from voxfield.compress.cryo_pe_set import compress_set as compress_maps
    from voxfield.metrics import psnr

    if not inputs:
        raise OptionError("give one or more maps to compress together")
    if output.suffix.lower() != container.SUFFIX:
        raise OptionError(f"output must end in {container.SUFFIX} (got {output.name})")
    if ratio is not None and ratio <= 1:
        raise OptionError(f"--ratio must be > 1 (got {ratio:g})")
    check_writable(output, overwrite=force)
    extra: dict[str, Any] = parse_settings(settings)
    extra.update({k: v for k, v in (("device", device), ("steps", steps), ("time_budget", time_budget),
                                    ("seed", seed)) if v is not None})
    cfg = CryoPESetConfig.preset(**extra)
    cfg.validate()  # unknown or bad keys fail before reading
    vols = [read_volume(p, axes=axes) for p in inputs]
    target = Target.ratio(ratio if ratio is not None else DEFAULT_RATIO, tolerance)
    rep = CryoPESetReport()
    t0 = time.perf_counter()
    with stage_progress(METHOD) as update:
        blob = compress_maps(vols, cfg, target, progress=update, report=rep)
    seconds = time.perf_counter() - t0
    write_bytes_atomic(output, blob, overwrite=force)
    total = sum(v.data.nbytes for v in vols)
    console.out.print(f"{len(vols)} maps -> {output}: {total:,} -> {len(blob):,} bytes, ratio {total / len(blob):.2f}, "
                      f"{describe_set_fit(rep)}, {seconds:.1f} s")
    for note in rep.notes:
        console.out.print(f"  note: {note}")
    for k, (vol, m) in enumerate(zip(vols, rep.members, strict=True)):
        line = (f"  member {k + 1} {m.name}: {' × '.join(map(str, vol.shape))}, voxel "
                f"{'x'.join(f'{s:.4g}' for s in vol.spacing)} {vol.unit}, threshold {m.threshold:.4g} "
                f"({m.threshold_source}), occupancy {m.occupancy_bytes:,} B ({m.occupancy_coder})")
        if check:
            line += f", PSNR {psnr(vol.data, decompress_vxf(blob, k + 1).data):.2f} dB (data range)"
        console.out.print(line)
