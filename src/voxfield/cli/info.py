"""``voxfield info FILE``: what a file holds, its frame, value statistics and header."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from voxfield.cli import console
from voxfield.compress import container
from voxfield.io import read_volume
from voxfield.io.validate import check_finite

if TYPE_CHECKING:
    from voxfield.io.volume import Volume

_MAX_TEXT = 100


def value_stats(data: np.ndarray) -> dict[str, float]:
    """min, max, mean, standard deviation and the 0.1 / 99.9 percentiles of ``data``.

    Works for every numeric dtype: booleans count as 0/1, complex values are summarised by
    their magnitude, integers and low-precision floats are computed in float64 (no
    overflow of sums). An empty array gives NaN for everything; a non-numeric one raises
    :class:`~voxfield.errors.DataError`."""
    flat = np.asarray(data).reshape(-1)
    if flat.dtype.kind == "b":
        flat = flat.astype(np.uint8)
    elif flat.dtype.kind == "c":
        flat = np.abs(flat)
    elif flat.dtype.kind not in "iuf":
        from voxfield.errors import DataError

        raise DataError(f"value statistics need numeric data, got {flat.dtype}")
    if flat.size == 0:
        nan = float("nan")
        return {"min": nan, "max": nan, "mean": nan, "std": nan, "p0.1": nan, "p99.9": nan}
    if flat.dtype.kind == "f" and flat.dtype.itemsize < 4:
        flat = flat.astype(np.float32)
    p_lo, p_hi = np.percentile(flat, [0.1, 99.9])
    return {
        "min": float(flat.min()),
        "max": float(flat.max()),
        "mean": float(flat.mean(dtype=np.float64)),
        "std": float(flat.std(dtype=np.float64)),
        "p0.1": float(p_lo),
        "p99.9": float(p_hi),
    }


def summarize_header(meta: dict[str, Any]) -> dict[str, str]:
    """Header fields of the volume's own format, as short printable strings."""
    fmt = meta.get("format")
    fields = meta.get(fmt, {}) if isinstance(meta.get(fmt), dict) else {}
    out: dict[str, str] = {}
    for key, value in fields.items():
        out[key] = _short(value)
    return out


def _short(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in list(value.items())[:8]) + (
            ", …}" if len(value) > 8 else "}")
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            text = " | ".join(v.strip() for v in value if v.strip())
        else:
            text = ", ".join(_short(v) for v in value[:12]) + (", …" if len(value) > 12 else "")
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def member_line(m: dict[str, Any]) -> str:
    """One member of a set as a short line: name, shape, dtype, voxel size, threshold, occupancy."""
    spacing = "x".join(f"{float(x):.4g}" for x in m.get("spacing") or [])
    occ = m.get("occupancy_bytes")
    return (f"{m.get('name')}: {' × '.join(map(str, m.get('shape') or []))} {m.get('dtype')}, voxel {spacing} "
            f"{m.get('unit') or ''}, {m.get('original_bytes', 0):,} bytes, threshold {float(m.get('threshold') or 0):.4g}, "
            f"{m.get('occupied') or 0:,} occupied" + (f" ({occ:,} B {m.get('occupancy_coder')})" if occ is not None else ""))


def volume_info(vol: Volume, path: Path) -> dict[str, Any]:
    """Everything ``info`` reports about a volume, JSON-ready."""
    check_finite(vol.data, path)
    return {
        "file": str(path),
        "format": vol.format,
        "shape": list(vol.shape),
        "dtype": vol.dtype.name,
        "axes": vol.axes,
        "spacing": dict(zip(vol.spatial_axes, vol.spacing)),
        "unit": vol.unit,
        "origin": dict(zip(vol.spatial_axes, vol.origin)),
        "nbytes": int(vol.data.nbytes),
        "stats": value_stats(vol.data),
        "header": summarize_header(vol.meta),
    }


def info(
    file: Annotated[Path, typer.Argument(help="Volume file or folder (.mrc/.map(.gz), .tif, .ome.zarr, .npy, .npz, .h5) or .vxf")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    axes: Annotated[str | None, typer.Option(help="Override the axis letters the file declares, e.g. ZYX.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help=".vxf files: validate the header only, without reading every section to verify its checksum.")] = False,
) -> None:
    """Show shape, dtype, axes, voxel size, origin, value statistics and header of a file."""
    from rich.table import Table

    if container.is_vxf(file):
        from voxfield.compress.api import describe as describe_vxf

        d = describe_vxf(file, quick=quick)
        if as_json:
            console.print_json(d)
            return
        t = Table(title=f"{file} (voxfield compressed)", show_header=False, title_justify="left")
        for k, v in d.items():
            if k == "members":  # a set (compress-set): one row per map
                for m in v:
                    t.add_row(f"member {m['member']}", member_line(m))
                continue
            t.add_row(k, _short(v) if not isinstance(v, float) else f"{v:.4g}")
        console.out.print(t)
        return
    if file.is_dir():
        from voxfield.compress.chunked import describe_store

        d = describe_store(file)
        if d is not None:  # a voxfield store: its metadata, no voxel decoded (it may hold terabytes)
            if as_json:
                console.print_json(d)
                return
            t = Table(title=f"{file} (voxfield OME-Zarr)", show_header=False, title_justify="left")
            for k, v in d.items():
                t.add_row(k, _short(v) if not isinstance(v, float) else f"{v:.4g}")
            console.out.print(t)
            return
    vol = read_volume(file, axes=axes)
    d = volume_info(vol, file)
    if as_json:
        console.print_json(d)
        return
    t = Table(title=str(file), show_header=False, title_justify="left")
    t.add_row("format", str(d["format"]))
    t.add_row("shape", " × ".join(f"{n} {a}" for n, a in zip(vol.shape, vol.axes)))
    t.add_row("dtype", d["dtype"])
    t.add_row("size", f"{d['nbytes'] / 2**20:.2f} MiB")
    t.add_row("voxel size", ", ".join(f"{a} {s:.6g}" for a, s in d["spacing"].items()) + f" {vol.unit}")
    t.add_row("origin", ", ".join(f"{a} {o:.6g}" for a, o in d["origin"].items()) + f" {vol.unit}")
    s = d["stats"]
    t.add_row("values", f"min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}  std {s['std']:.6g}")
    t.add_row("percentiles", f"0.1 % {s['p0.1']:.6g}  99.9 % {s['p99.9']:.6g}")
    for k, v in d["header"].items():
        t.add_row(f"[dim]{vol.format}.{k}[/]", v)
    console.out.print(t)
