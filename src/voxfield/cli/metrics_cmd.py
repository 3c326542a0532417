"""``voxfield metrics ORIGINAL RESULT``: quality of a result against its original."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from voxfield.cli import console
from voxfield.compress import container
from voxfield.compress.api import decompress as decompress_vxf
from voxfield.errors import DataError
from voxfield.io import read_volume, write_bytes_atomic
from voxfield.io.volume import Volume
from voxfield.metrics import compare, format_report


def load_result(path: Path, axes: str | None) -> tuple[Volume, int | None]:
    """Read a result volume; a .vxf is decoded and its file size returned too."""
    if container.is_vxf(path):
        return decompress_vxf(path), path.stat().st_size
    return read_volume(path, axes=axes), None


def measure(original: Volume, result: Volume, *, compressed_nbytes: int | None = None,
            contour: float | None = None, cryoem: bool | None = None) -> dict[str, Any]:
    """Run :func:`voxfield.metrics.compare` with the frame taken from the original."""
    if original.shape != result.shape:
        raise DataError(f"shapes differ: original {original.shape}, result {result.shape}")
    spatial = [i for i, a in enumerate(original.axes) if a in "ZYX"]
    kwargs: dict[str, Any] = {}
    if cryoem is not None:
        kwargs["cryoem"] = cryoem
    return compare(
        original.data,
        result.data,
        spacing=original.spacing,
        spatial_axes=spatial,
        unit=original.unit,
        compressed_nbytes=compressed_nbytes,
        original_nbytes=original.data.nbytes if compressed_nbytes else None,
        contour=contour,
        **kwargs,
    )


def metrics(
    original: Annotated[Path, typer.Argument(help="Original volume.")],
    result: Annotated[Path, typer.Argument(help="Result volume, or the .vxf file (decoded, and its size gives the ratio).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    out: Annotated[Path | None, typer.Option("-o", "--output", help="Also save the JSON report here.")] = None,
    contour: Annotated[float | None, typer.Option(help="Density threshold for Acc(τ), Dice and IoU of masks.")] = None,
    axes: Annotated[str | None, typer.Option(help="Override both files' axis letters, e.g. ZYX.")] = None,
) -> None:
    """PSNR (data range; dtype-max PSNR labelled separately), SSIM, max error, ratio, FSC
    resolution and density-band errors for maps, mask scores at a contour."""
    orig = read_volume(original, axes=axes)
    res, nbytes = load_result(result, axes)
    report = measure(orig, res, compressed_nbytes=nbytes, contour=contour)
    report = {"original": str(original), "result": str(result), **report}
    if out is not None:
        from voxfield.io.metajson import dumps

        write_bytes_atomic(out, dumps(report).encode())
    if as_json:
        console.print_json(report)
    else:
        console.out.print(format_report(report))
