"""``voxfield demo``: the main job on the map shipped inside the package."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from voxfield.cli import console
from voxfield.cli.compress_cmd import DEFAULT_CODEC
from voxfield.cli.metrics_cmd import measure
from voxfield.codecs.base import Target
from voxfield.codecs.registry import get_codec
from voxfield.compress.api import decompress
from voxfield.compress.classic import compress_volume
from voxfield.data import example_map_path
from voxfield.errors import TargetNotMet
from voxfield.io import read_volume, write_bytes_atomic, write_volume
from voxfield.metrics import format_report
from voxfield.viz.slices import compare_figure

#: Codecs compared side by side in the demo (fast ones; `voxfield bench` runs them all).
DEMO_CODECS = ("quant", "zfp", "sz3", "sperr", "jpeg2k")


def demo(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the demo's files.")] = Path("voxfield-demo"),
    ratio: Annotated[float, typer.Option(help="Target compression ratio.")] = 64.0,
    codec: Annotated[str, typer.Option(help="Codec for the full round trip.")] = DEFAULT_CODEC,
) -> None:
    """Compress the shipped EMD-3488 crop, decode it, report quality and draw slices."""
    src = example_map_path()
    vol = read_volume(src)
    out.mkdir(parents=True, exist_ok=True)
    console.out.print(f"[bold]voxfield demo[/] on {src.name}: {vol.shape} {vol.dtype.name}, "
                      f"voxel {vol.spacing[0]:g} {vol.unit}, {vol.data.nbytes / 2**20:.2f} MiB")

    table = Table(title=f"classic codecs at ratio {ratio:g} (matched on file bytes)", title_justify="left")
    for col in ("codec", "ratio", "PSNR dB (data range)", "SSIM", "FSC 0.5 Å", "encode s"):
        table.add_column(col)
    for name in DEMO_CODECS:
        c = get_codec(name)
        t0 = time.perf_counter()
        try:
            blob = compress_volume(vol, c, Target.ratio(ratio))
        except TargetNotMet as exc:
            table.add_row(name, "missed", str(exc)[:60], "", "", "")
            continue
        secs = time.perf_counter() - t0
        m = measure(vol, decompress(blob), compressed_nbytes=len(blob))
        table.add_row(name, f"{m['ratio']:.1f}", f"{m['psnr_db']:.2f}", f"{m['ssim']:.4f}",
                      f"{m['fsc_0.5_A']:.2f}" if m.get("fsc_0.5_A") else "–", f"{secs:.2f}")
    console.out.print(table)

    vxf = out / (src.name.removesuffix(".gz") + ".vxf")
    blob = compress_volume(vol, get_codec(codec), Target.ratio(ratio))
    write_bytes_atomic(vxf, blob)
    dec = decompress(vxf)
    decoded = out / src.name.replace(".mrc.gz", ".decoded.mrc")
    write_volume(dec, decoded)
    report = measure(vol, dec, compressed_nbytes=vxf.stat().st_size)
    fig = compare_figure(vol, dec, out / "compare.png", title=f"{src.name}: {codec} at {report['ratio']:.1f}x")
    console.out.print(f"\n[bold]{codec}[/] round trip: {vxf} ({vxf.stat().st_size:,} bytes) -> {decoded}")
    console.out.print(format_report(report))
    console.out.print(f"slices: {fig}")
