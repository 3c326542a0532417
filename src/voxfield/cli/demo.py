"""``voxfield demo``: the main job on the map shipped inside the package."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

import voxfield
from voxfield.cli import console
from voxfield.cli.compress_cmd import DEFAULT_METHOD, describe_fit, run_neural
from voxfield.cli.metrics_cmd import measure
from voxfield.data import example_map_path
from voxfield.errors import TargetNotMet
from voxfield.io import read_volume, write_bytes_atomic, write_volume

#: Classic codecs compared side by side in the demo (fast ones; `voxfield bench` runs them all).
DEMO_CODECS = ("zfp", "sz3", "jpeg2k", "sperr", "hevc")


def demo(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the demo's files.")] = Path("voxfield-demo"),
    ratio: Annotated[float, typer.Option(help="Target compression ratio.")] = 64.0,
    method: Annotated[str, typer.Option(help="Method of the round trip (default: auto).")] = DEFAULT_METHOD,
    time_budget: Annotated[float, typer.Option("--time-budget", help="Seconds of training per neural fit.")] = 60.0,
) -> None:
    """Compress the shipped EMD-3488 crop with the default method and the classic
    codecs at one ratio, decode it whole and in part, report quality, draw slices."""
    from rich.table import Table

    from voxfield.codecs.base import Target
    from voxfield.codecs.registry import get_codec
    from voxfield.compress.api import decompress
    from voxfield.compress.classic import compress_volume
    from voxfield.metrics import format_report
    from voxfield.viz.slices import compare_figure

    src = example_map_path()
    vol = read_volume(src)
    out.mkdir(parents=True, exist_ok=True)
    console.out.print(f"[bold]voxfield demo[/] on {src.name}: {vol.shape} {vol.dtype.name}, "
                      f"voxel {vol.spacing[0]:g} {vol.unit}, {vol.data.nbytes / 2**20:.2f} MiB")

    vxf = out / (src.name.removesuffix(".gz") + ".vxf")
    t0 = time.perf_counter()
    blob, rep = run_neural(vol, method, Target.ratio(ratio, 0.02), {"time_budget": time_budget})
    neural_s = time.perf_counter() - t0
    write_bytes_atomic(vxf, blob)

    table = Table(title=f"ratio {ratio:g}, matched on file bytes (PSNR over the data range)", title_justify="left")
    for col in ("method", "ratio", "PSNR dB", "SSIM", "FSC 0.5 Å", "encode s"):
        table.add_column(col)
    rows = [(method, blob, neural_s)]
    for name in DEMO_CODECS:
        c = get_codec(name)
        t0 = time.perf_counter()
        try:
            rows.append((name, compress_volume(vol, c, Target.ratio(ratio)), time.perf_counter() - t0))
        except TargetNotMet as exc:
            table.add_row(name, "missed", str(exc)[:60], "", "", "")
    scores: dict[str, tuple[float, float]] = {}
    for name, b, secs in rows:
        m = measure(vol, decompress(b), compressed_nbytes=len(b))
        scores[name] = (m["psnr_db"], m["ratio"])
        table.add_row(name, f"{m['ratio']:.1f}", f"{m['psnr_db']:.2f}", f"{m['ssim']:.4f}",
                      f"{m['fsc_0.5_A']:.2f}" if m.get("fsc_0.5_A") else "–", f"{secs:.1f}")
    console.out.print(table)
    classic = {k: v for k, v in scores.items() if k != method}
    if classic:
        best = max(classic, key=lambda k: classic[k][0])
        gain = scores[method][0] - classic[best][0]
        console.out.print(f"{method} vs the best classic codec here ({best}): {gain:+.2f} dB "
                          f"(ratios {scores[method][1]:.1f} and {classic[best][1]:.1f})"
                          + ("" if gain >= 0 else " — the classic codec is better on this volume"))

    dec = decompress(vxf)
    decoded = out / src.name.replace(".mrc.gz", ".decoded.mrc")
    write_volume(dec, decoded)
    t0 = time.perf_counter()
    part = voxfield.open(vxf)[16:48, 16:48, 16:48]
    roi_s = time.perf_counter() - t0
    same = bool((part == dec.data[16:48, 16:48, 16:48]).all())
    report = measure(vol, dec, compressed_nbytes=vxf.stat().st_size)
    fig = compare_figure(vol, dec, out / "compare.png", title=f"{src.name}: {method} at {report['ratio']:.1f}x")
    console.out.print(f"\n[bold]{describe_fit(method, rep)}[/]: {vxf} ({vxf.stat().st_size:,} bytes) -> {decoded}")
    console.out.print(format_report(report))
    console.out.print(f"region [16:48, 16:48, 16:48] decoded alone in {roi_s:.2f} s, "
                      f"{'identical to' if same else 'DIFFERENT from'} the same region of the full decode")
    console.out.print(f"slices: {fig}")
