"""``voxfield metrics ORIGINAL RESULT``: quality of a result against its original."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from voxfield.cli import console
from voxfield.compress import container
from voxfield.errors import DataError, OptionError
from voxfield.io import read_volume, write_bytes_atomic
from voxfield.io.volume import Volume, angstrom_frame


def load_result(path: Path, axes: str | None) -> tuple[Volume, int | None]:
    """Read a result volume; a .vxf is decoded and its file size returned too."""
    if container.is_vxf(path):
        from voxfield.compress.api import decompress as decompress_vxf

        return decompress_vxf(path), path.stat().st_size
    return read_volume(path, axes=axes), None


def measure(original: Volume, result: Volume, *, compressed_nbytes: int | None = None,
            contour: float | None = None, cryoem: bool | None = None) -> dict[str, Any]:
    """Run :func:`voxfield.metrics.compare` with the frame taken from the original."""
    from voxfield.metrics import compare

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
    cryoem: Annotated[bool, typer.Option("--cryoem", help="Cryo-EM report: density bands (paper 000 Table 1), PSNR "
                                         "in the contour mask and the box, FSC 0.5/0.143/0.9, CC_mask with --model.")
                      ] = False,
    model: Annotated[Path | None, typer.Option(help="Atomic model (PDB/mmCIF) for the map-model CC_mask "
                                                    "(with --cryoem; needs --resolution).")] = None,
    resolution: Annotated[float | None, typer.Option(help="The map's resolution in Å (FSC there; model low-pass).")
                          ] = None,
    apix: Annotated[float | None, typer.Option(help="Voxel size in Å, overriding the header (e.g. when it is 0).")
                    ] = None,
    segment: Annotated[str | None, typer.Option(help="Segmentation agreement: threshold the original at its Otsu "
                                                     "level ('otsu') or at a number, the result at the same level; "
                                                     "Dice, IoU and object counts.")] = None,
    segment_channel: Annotated[int | None, typer.Option("--segment-channel", help="With --segment: the channel "
                                                                                 "(index along C) to segment.")
                               ] = None,
    segment_mask: Annotated[Path | None, typer.Option("--segment-mask", help="With --segment: a reference "
                                                      "segmentation (mask or label image, the original's shape) "
                                                      "instead of the thresholded original.")] = None,
) -> None:
    """PSNR (data range; dtype-max PSNR labelled separately), SSIM, max error, ratio, FSC
    resolution and density-band errors for maps, mask scores at a contour; with ``--cryoem``
    the cryo-EM quality report; with ``--segment`` the agreement of a threshold segmentation."""
    from voxfield.metrics import format_report, format_segmentation

    if segment is None and (segment_channel is not None or segment_mask is not None):
        raise OptionError("--segment-channel and --segment-mask go with --segment (otsu or a threshold)")
    if segment is not None:
        parse_segment(segment)  # a bad value fails before reading
    orig = read_volume(original, axes=axes)
    res, nbytes = load_result(result, axes)
    seg = None if segment is None else segment_report(orig, res, segment, segment_channel, segment_mask)
    if cryoem:
        _cryoem(orig, res, nbytes, original, result, contour=contour, model=model, resolution=resolution, apix=apix,
                as_json=as_json, out=out, seg=seg)
        return
    if model is not None or resolution is not None or apix is not None:
        raise OptionError("--model, --resolution and --apix go with --cryoem")
    report = measure(orig, res, compressed_nbytes=nbytes, contour=contour)
    report = {"original": str(original), "result": str(result), **report}
    if seg is not None:
        report["segmentation"] = seg
    if out is not None:
        from voxfield.io.metajson import dumps

        write_bytes_atomic(out, dumps(report).encode())
    if as_json:
        console.print_json(report)
    else:
        text = format_report(report)
        if seg is not None:  # before the notes
            lines = text.split("\n")
            at = next((i for i, ln in enumerate(lines) if ln.startswith("note: ")), len(lines))
            text = "\n".join(lines[:at] + [format_segmentation(seg)] + lines[at:])
        console.out.print(text)


def parse_segment(value: str) -> float | None:
    """``--segment`` -> threshold (None: Otsu's)."""
    if value.strip().lower() == "otsu":
        return None
    try:
        return float(value)
    except ValueError:
        raise OptionError(f"--segment takes 'otsu' or a threshold (a number), got {value!r}") from None


def segment_report(orig: Volume, res: Volume, segment: str, channel: int | None, mask_path: Path | None
                   ) -> dict[str, Any]:
    """:func:`~voxfield.metrics.segmentation_agreement` of a result for ``voxfield metrics``:
    the original thresholded at ``segment`` (or its Otsu level), or the reference mask file,
    against the result thresholded at the same level; ``channel`` along the C (or S) axis."""
    from voxfield.metrics import segmentation_agreement

    if orig.shape != res.shape:
        raise DataError(f"shapes differ: original {orig.shape}, result {res.shape}")
    threshold = parse_segment(segment)
    ch_axis = next((i for i, a in enumerate(orig.axes) if a in "CS"), None)
    if channel is not None and ch_axis is None:
        raise OptionError(f"--segment-channel {channel}: the original (axes {orig.axes}) has no channel axis")
    mask = None
    if mask_path is not None:
        mask = read_volume(mask_path).data
    try:
        return segmentation_agreement(orig.data, res.data, threshold, mask, channel, channel_axis=ch_axis)
    except DataError as exc:
        if mask_path is not None and "mask" in exc.message:
            raise DataError(exc.message, mask_path) from None
        raise


def _cryoem(orig: Volume, res: Volume, nbytes: int | None, original: Path, result: Path, *, contour: float | None,
            model: Path | None, resolution: float | None, apix: float | None, as_json: bool, out: Path | None,
            seg: dict[str, Any] | None = None) -> None:
    from voxfield.metrics import format_segmentation
    from voxfield.metrics.cryoem import cryoem_report, format_cryoem_report

    if orig.shape != res.shape:
        raise DataError(f"shapes differ: original {orig.shape}, result {res.shape}")
    if model is not None and resolution is None:
        raise OptionError("--model needs --resolution (the model map is low-passed to it)")
    perm = [orig.axes.index(a) for a in "ZYX"] if set(orig.axes) == set("ZYX") else None
    a = orig.data if perm is None else orig.data.transpose(perm)
    b = res.data if perm is None else res.data.transpose(perm)
    sp, org = angstrom_frame(orig, apix)
    rep = cryoem_report(a, b, sp, contour=contour, origin=org, model=None if model is None else str(model),
                        resolution=resolution)
    report: dict[str, Any] = {"original": str(original), "result": str(result), **rep}
    if nbytes:
        report["ratio"] = orig.data.nbytes / nbytes
    if seg is not None:
        report["segmentation"] = seg
    if out is not None:
        from voxfield.io.metajson import dumps

        write_bytes_atomic(out, dumps(report).encode())
    if as_json:
        console.print_json(report)
    else:
        text = format_cryoem_report(rep)
        if nbytes:
            text = f"compression ratio: {report['ratio']:.2f} ({nbytes} bytes)\n" + text
        if seg is not None:
            text += "\n" + format_segmentation(seg)
        console.out.print(text, markup=False, highlight=False)
