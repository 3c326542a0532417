"""``voxfield decode``: any part of a compressed volume, evaluating only what it needs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from voxfield.cli import console
from voxfield.cli.compress_cmd import require_vxf
from voxfield.errors import FormatError, OptionError
from voxfield.io import check_writable, write_bytes_atomic, write_volume

if TYPE_CHECKING:
    from voxfield.compress.reader import VxfArray


def parse_roi(text: str, arr: VxfArray) -> tuple[slice, ...]:
    """``z0:z1,y0:y1,x0:x1`` (one range per axis of the volume, or per spatial axis with
    channels kept whole; ``:`` or empty means the whole axis; optional ``:step``)."""
    parts = [p.strip() for p in text.split(",")]
    spatial = [i for i, a in enumerate(arr.axes) if a not in "CS"]
    if len(parts) == arr.ndim:
        axes = list(range(arr.ndim))
    elif len(parts) == len(spatial):
        axes = spatial
    else:
        raise OptionError(f"--roi needs {arr.ndim} ranges for axes {arr.axes} (or {len(spatial)} for the "
                          f"non-channel axes), got {len(parts)}")
    key = [slice(None)] * arr.ndim
    for ax, part in zip(axes, parts, strict=True):
        n = arr.shape[ax]
        if part in ("", ":"):
            continue
        bits = part.split(":")
        if len(bits) not in (2, 3):
            raise OptionError(f"--roi range {part!r} for axis {arr.axes[ax]} must be start:stop[:step]")
        try:
            start = int(bits[0]) if bits[0] else 0
            stop = int(bits[1]) if bits[1] else n
            step = int(bits[2]) if len(bits) == 3 and bits[2] else 1
        except ValueError:
            raise OptionError(f"--roi range {part!r} is not made of integers") from None
        if not (0 <= start < stop <= n) or step < 1:
            raise OptionError(f"--roi range {part!r} is out of bounds for axis {arr.axes[ax]} of size {n}")
        key[ax] = slice(start, stop, step)
    return tuple(key)


def parse_slice(text: str, arr: VxfArray) -> tuple[int | slice, ...]:
    """``z=40`` (any axis letter) -> an index that takes that plane."""
    letter, sep, value = text.partition("=")
    letter = letter.strip().upper()
    if not sep or letter not in arr.axes:
        raise OptionError(f"--slice takes AXIS=INDEX with AXIS one of {arr.axes}, got {text!r}")
    ax = arr.axes.index(letter)
    try:
        i = int(value)
    except ValueError:
        raise OptionError(f"--slice index {value!r} is not an integer") from None
    if not 0 <= i < arr.shape[ax]:
        raise OptionError(f"--slice {letter}={i} is out of bounds (axis {letter} has {arr.shape[ax]} planes)")
    key: list[int | slice] = [slice(None)] * arr.ndim
    key[ax] = i
    return tuple(key)


def decode(
    input: Annotated[Path, typer.Argument(help=".vxf file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output: a volume file (.mrc, .tif, .ome.zarr, .npy...) or, with --coords, a .npy of values.")],
    roi: Annotated[str | None, typer.Option(help="Box z0:z1,y0:y1,x0:x1 (one range per axis; optional :step).")] = None,
    slice_: Annotated[str | None, typer.Option("--slice", help="One plane, e.g. z=40 (any axis).")] = None,
    step: Annotated[int | None, typer.Option(help="Preview: every k-th voxel along every non-channel axis.")] = None,
    coords: Annotated[Path | None, typer.Option(help=".npy of shape (P, n) voxel positions along the non-channel axes (fractional allowed).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
    member: Annotated[str | None, typer.Option(help="For a set made by compress-set: the map to decode (number from 1, or file name).")] = None,
) -> None:
    """Decode a region, a slice, a strided preview or a list of points of a .vxf file."""
    from voxfield.compress.reader import open_vxf

    chosen = [n for n, v in (("--roi", roi), ("--slice", slice_), ("--step", step), ("--coords", coords)) if v is not None]
    if len(chosen) != 1:
        raise OptionError("give exactly one of --roi, --slice, --step, --coords (whole volume: voxfield decompress)")
    require_vxf(input)
    check_writable(output, overwrite=force)
    t0 = time.perf_counter()
    arr = open_vxf(input, member=member)
    if coords is not None:
        try:
            pts = np.load(coords, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read coordinates ({exc})", coords) from None
        values = arr.points(pts)
        import io

        buf = io.BytesIO()
        np.save(buf, values)
        write_bytes_atomic(output, buf.getvalue(), overwrite=force)
        what = f"{len(pts)} points"
    else:
        if roi is not None:
            key = parse_roi(roi, arr)
        elif slice_ is not None:
            key = parse_slice(slice_, arr)
        else:
            if step is None or step < 1:
                raise OptionError("--step must be >= 1")
            key = tuple(slice(None, None, step) if a not in "CS" else slice(None) for a in arr.axes)
        vol = arr.volume(key)
        write_volume(vol, output, overwrite=force)
        what = f"{' × '.join(map(str, vol.shape))} ({vol.axes})"
    access = "" if arr.random_access else " (classic codec: decoded whole, then cut)"
    console.out.print(f"{input} -> {output}: {what}, {time.perf_counter() - t0:.2f} s{access}")
