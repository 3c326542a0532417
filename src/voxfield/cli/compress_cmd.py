"""``voxfield compress`` and ``voxfield decompress``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from voxfield.cli import console
from voxfield.codecs.base import Target
from voxfield.codecs.registry import available_codecs, get_codec
from voxfield.compress import container
from voxfield.compress.api import decompress as decompress_vxf
from voxfield.compress.classic import compress_volume, output_name
from voxfield.errors import FormatError, OptionError
from voxfield.io import check_writable, read_volume, write_volume
from voxfield.io.atomic import write_bytes_atomic
from voxfield.metrics import max_abs_error, psnr

DEFAULT_CODEC = "sperr"


def make_target(ratio: float | None, max_error: float | None, rel_error: float | None,
                psnr_db: float | None, lossless: bool, tolerance: float) -> Target | None:
    """The one target given on the command line (None: the codec's default)."""
    given = [(k, v) for k, v in (("ratio", ratio), ("max_abs_error", max_error), ("rel_error", rel_error),
                                 ("psnr", psnr_db)) if v is not None]
    if lossless:
        given.append(("lossless", None))
    if len(given) > 1:
        raise OptionError("give one target: --ratio, --max-error, --rel-error, --psnr or --lossless")
    if not given:
        return None
    kind, value = given[0]
    if kind == "ratio" and value is not None and value <= 1:
        raise OptionError(f"--ratio must be > 1 (got {value:g})")
    return Target(kind, value, tolerance)  # type: ignore[arg-type]


def default_output(path: Path) -> Path:
    """``map.mrc`` -> ``map.mrc.vxf`` beside it (keeps the full original name visible)."""
    return path.parent / (path.name.rstrip("/") + container.SUFFIX)


def compress(
    input: Annotated[Path, typer.Argument(help="Volume to compress (.mrc/.map(.gz), .tif, .ome.zarr, .npy, .npz, .h5).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output .vxf file [default: INPUT.vxf].")] = None,
    codec: Annotated[str, typer.Option(help="Codec: " + ", ".join(available_codecs()))] = DEFAULT_CODEC,
    ratio: Annotated[float | None, typer.Option(help="Target compression ratio (original bytes / file bytes).")] = None,
    max_error: Annotated[float | None, typer.Option("--max-error", help="Absolute error bound, in data units.")] = None,
    rel_error: Annotated[float | None, typer.Option("--rel-error", help="Error bound relative to the value range.")] = None,
    psnr_db: Annotated[float | None, typer.Option("--psnr", help="Target PSNR in dB (data range).")] = None,
    lossless: Annotated[bool, typer.Option("--lossless", help="Lossless (gzip, zstd, raw).")] = False,
    tolerance: Annotated[float, typer.Option(help="Accepted relative deviation from a ratio target.")] = 0.03,
    axes: Annotated[str | None, typer.Option(help="Override the input's axis letters, e.g. ZYX.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
    check: Annotated[bool, typer.Option(help="Decode the result and report PSNR and max error.")] = True,
) -> None:
    """Compress a volume into a self-describing .vxf file at a target ratio or error bound."""
    out = output or default_output(input)
    if out.suffix.lower() != container.SUFFIX:
        raise OptionError(f"output must end in {container.SUFFIX} (got {out.name})")
    check_writable(out, overwrite=force)
    target = make_target(ratio, max_error, rel_error, psnr_db, lossless, tolerance)
    c = get_codec(codec)
    vol = read_volume(input, axes=axes)
    t0 = time.perf_counter()
    with console.err.status(f"compressing with {c.name}…"):
        blob = compress_volume(vol, c, target)
    seconds = time.perf_counter() - t0
    write_bytes_atomic(out, blob, overwrite=force)
    r = vol.data.nbytes / len(blob)
    msg = (f"{input.name} -> {out}: {vol.data.nbytes:,} -> {len(blob):,} bytes, ratio {r:.2f} "
           f"({8 * len(blob) / vol.data.size:.3f} bits/voxel), {c.name}, {seconds:.2f} s")
    if check:
        dec = decompress_vxf(blob)
        msg += (f"; PSNR {psnr(vol.data, dec.data):.2f} dB (data range), "
                f"max |error| {max_abs_error(vol.data, dec.data):.4g}")
    console.out.print(msg)


def decompress(
    input: Annotated[Path, typer.Argument(help=".vxf file made by voxfield compress.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file; its suffix picks the format [default: the original name with .decoded].")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
) -> None:
    """Decode a .vxf file back to the original format (or the format of -o's suffix)."""
    if not container.is_vxf(input):
        if not input.exists():
            raise FormatError("no such file", input)
        raise FormatError("not a voxfield .vxf file", input)
    with container.VxfReader(input) as reader:
        out = output or output_name(reader.header, input)
    check_writable(out, overwrite=force)
    t0 = time.perf_counter()
    vol = decompress_vxf(input)
    write_volume(vol, out, overwrite=force)
    console.out.print(f"{input} -> {out}: {' × '.join(map(str, vol.shape))} {vol.dtype.name} "
                      f"({vol.axes}), {time.perf_counter() - t0:.2f} s")
