"""HDF5 datasets via :mod:`h5py`.

Reading takes ``key=`` (a dataset path), else a dataset named ``data``, else the largest
dataset in the file (all groups walked). The frame comes from voxfield's own attributes
(``axes``, ``spacing``, ``unit``, ``origin``, ``voxfield_meta``), else from what other tools
write: ``element_size_um`` (Vigra/ilastik/Fiji: spacing of the spatial axes in µm),
``DIMENSION_LABELS`` (HDF5 dimension scales) or an ilastik ``axistags`` JSON for the axes.
Without any, axes are guessed from the number of dimensions.

Writing stores the array as a chunked, losslessly compressed (gzip + shuffle) dataset
``data`` (or ``key=``) with voxfield's attributes, ``element_size_um`` when the unit is a
length, and dimension labels, so that other HDF5 tools see the axes too.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from voxfield.errors import DataError, FormatError
from voxfield.io import metajson
from voxfield.io.numpy_io import axes_for_ndim
from voxfield.io.validate import check_shape
from voxfield.io.volume import AXIS_LETTERS, Volume

SUFFIXES = (".h5", ".hdf5", ".hdf")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_AXIS_NAMES = {"t": "T", "time": "T", "c": "C", "channel": "C", "channels": "C", "z": "Z", "y": "Y",
               "x": "X", "s": "S", "i": "I", "q": "Q"}
_COMPRESSIONS = ("gzip", "lzf")


# ---------------------------------------------------------------------------- detection
def sniff(head: bytes, path: Path) -> bool:
    """HDF5 signature at offset 0, 512 or 1024 (after a user block)."""
    return any(head[o:o + 8] == HDF5_MAGIC for o in (0, 512, 1024))


# ---------------------------------------------------------------------------- reading
def read(path: str | os.PathLike[str], *, key: str | None = None) -> Volume:
    """Read one dataset of an HDF5 file with its axes and physical frame.

    Raises :class:`FormatError` for a corrupt file or a missing ``key``, and
    :class:`DataError` for non-numeric or absurdly shaped datasets.
    """
    p = Path(path)
    try:
        with h5py.File(p, "r") as fh:
            name = _pick_dataset(fh, key, p)
            ds = fh[name]
            shape = tuple(int(s) for s in ds.shape)
            check_shape(shape, p)
            if ds.dtype.kind not in "biufc" or ds.dtype.hasobject:
                raise DataError(f"dataset {name!r} has unsupported data type {ds.dtype}", p)
            data = ds[()]
            attrs = {k: _attr_value(v) for k, v in ds.attrs.items()}
            info = _storage_info(ds, name)
    except OSError as exc:
        raise FormatError(f"not a readable HDF5 file ({_first_line(exc)})", p) from None
    data = np.ascontiguousarray(data)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return _volume(data, attrs, info, p)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _datasets(fh: h5py.File) -> dict[str, tuple[int, ...]]:
    """Every numeric dataset in the file: path -> shape."""
    found: dict[str, tuple[int, ...]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc" and obj.ndim >= 2:
            found[name] = tuple(int(s) for s in obj.shape)

    fh.visititems(visit)
    return found


def _pick_dataset(fh: h5py.File, key: str | None, p: Path) -> str:
    """``key``, else ``data``, else the largest dataset (with a warning naming it)."""
    if key is not None:
        obj = fh.get(key)
        if not isinstance(obj, h5py.Dataset):
            held = ", ".join(_datasets(fh)) or "none"
            raise FormatError(f"no dataset {key!r} in file (datasets: {held})", p)
        return key
    if isinstance(fh.get("data"), h5py.Dataset):
        return "data"
    found = _datasets(fh)
    if not found:
        raise FormatError("file holds no numeric dataset of 2 or more dimensions", p)
    best = max(found, key=lambda k: math.prod(found[k]))
    if len(found) > 1:
        warnings.warn(f"{p}: {len(found)} datasets ({', '.join(sorted(found))}); reading the largest, "
                      f"{best!r} (choose with key=)", UserWarning, stacklevel=4)
    return best


def _attr_value(v: Any) -> Any:
    """An HDF5 attribute as a Python value (bytes -> str, numpy -> list/scalar)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in v.ravel()]
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _storage_info(ds: h5py.Dataset, name: str) -> dict[str, Any]:
    return {
        "key": name,
        "shape": [int(s) for s in ds.shape],
        "chunks": list(ds.chunks) if ds.chunks else None,
        "compression": ds.compression,
        "compression_opts": ds.compression_opts if isinstance(ds.compression_opts, int) else None,
        "shuffle": bool(ds.shuffle),
    }


def _volume(data: np.ndarray, attrs: dict[str, Any], info: dict[str, Any], p: Path) -> Volume:
    """Build the Volume from voxfield's attributes, else foreign conventions, else a guess."""
    foreign = {k: v for k, v in attrs.items() if _jsonable(v) and k not in
               ("axes", "spacing", "unit", "origin", "voxfield_meta")}
    info["attrs"] = foreign
    meta: dict[str, Any] = {}
    if isinstance(attrs.get("voxfield_meta"), str):
        try:
            loaded = metajson.loads(attrs["voxfield_meta"])
            meta = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:
            warnings.warn(f"{p}: ignoring unreadable voxfield_meta ({exc})", UserWarning, stacklevel=4)
    meta.update(format="hdf5", hdf5=info)
    axes = _axes_from_attrs(attrs, data.ndim)
    if axes is None:
        axes = axes_for_ndim(data.ndim, p)
        if data.ndim > 3:
            warnings.warn(f"{p}: no axis labels; guessed {axes!r} from {data.ndim} dimensions", UserWarning,
                          stacklevel=4)
    n = sum(a in "ZYX" for a in axes)
    spacing, unit, origin = (), "px", ()
    if isinstance(attrs.get("spacing"), list) and len(attrs["spacing"]) == n:
        spacing, unit = tuple(attrs["spacing"]), str(attrs.get("unit", "px"))
        if isinstance(attrs.get("origin"), list) and len(attrs["origin"]) == n:
            origin = tuple(attrs["origin"])
    elif isinstance(attrs.get("element_size_um"), list):
        spacing, unit = _element_size(attrs["element_size_um"], axes, n)
    try:
        return Volume(data, axes, spacing, unit, origin, meta)
    except DataError as exc:
        raise FormatError(f"inconsistent HDF5 attributes ({exc.message})", p) from None


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _letters(names: list[str]) -> str | None:
    """Axis letters from a list of axis names, or None if they are not recognisable."""
    out = "".join(_AXIS_NAMES.get(str(n).strip().lower(), "?") for n in names)
    if "?" in out or len(set(out)) != len(out) or not set(out) <= set(AXIS_LETTERS):
        return None
    return out


def _axes_from_attrs(attrs: dict[str, Any], ndim: int) -> str | None:
    """Axes from voxfield's ``axes``, ``DIMENSION_LABELS`` or ilastik ``axistags``."""
    own = attrs.get("axes")
    if isinstance(own, str) and len(own) == ndim and set(own.upper()) <= set(AXIS_LETTERS):
        return own.upper()
    labels = attrs.get("DIMENSION_LABELS")
    if isinstance(labels, list) and len(labels) == ndim:
        letters = _letters(labels)
        if letters:
            return letters
    tags = attrs.get("axistags")
    if isinstance(tags, str):
        try:
            keys = [a.get("key", "?") for a in json.loads(tags).get("axes", [])]
        except (ValueError, AttributeError):
            keys = []
        if len(keys) == ndim:
            return _letters(keys)
    return None


def _element_size(values: list[Any], axes: str, n: int) -> tuple[tuple[float, ...], str]:
    """``element_size_um``: one value per spatial axis, or one per array axis."""
    vals = [float(v) for v in values]
    if len(vals) == len(axes) and len(axes) != n:
        vals = [v for v, a in zip(vals, axes) if a in "ZYX"]
    if len(vals) != n or not all(v > 0 for v in vals):
        return (), "px"
    return tuple(vals), "µm"


# ---------------------------------------------------------------------------- writing
def write(vol: Volume, path: str | os.PathLike[str], *, key: str = "data", compression: str | None = None,
          chunks: tuple[int, ...] | None = None) -> None:
    """Write ``vol`` as dataset ``key`` (default ``data``), chunked and losslessly compressed
    (``compression``: ``"gzip"`` (default, with shuffle) or ``"lzf"``), with attributes
    ``axes``, ``spacing``, ``unit``, ``origin``, ``voxfield_meta`` (JSON of ``vol.meta``),
    ``element_size_um`` (when the unit is a length) and dimension labels."""
    p = Path(path)
    if vol.dtype.hasobject or vol.dtype.kind not in "biufc":
        raise DataError(f"data type {vol.dtype} cannot be written to HDF5 (numeric arrays only)", p)
    check_shape(vol.shape, p)
    old = vol.meta.get("hdf5") if isinstance(vol.meta.get("hdf5"), dict) else {}
    comp = compression or old.get("compression") or "gzip"
    if comp not in _COMPRESSIONS:
        raise DataError(f"compression {comp!r} is not one of {', '.join(_COMPRESSIONS)}", p)
    if chunks is None and old.get("chunks") and len(old.get("shape") or []) == vol.ndim:
        chunks = tuple(min(int(c), s) for c, s in zip(old["chunks"], vol.shape))
    opts = {"compression": comp, "shuffle": True, "chunks": chunks or True}
    if comp == "gzip":
        opts["compression_opts"] = int(old.get("compression_opts") or 4) if not compression else 4
    meta = {k: v for k, v in vol.meta.items() if k not in ("format", "source", "hdf5")}
    with h5py.File(p, "w") as fh:
        ds = fh.create_dataset(key, data=np.ascontiguousarray(vol.data), **opts)
        if list(old.get("shape") or []) == list(vol.shape):
            _write_foreign_attrs(ds, old.get("attrs") or {})
        ds.attrs["axes"] = vol.axes
        ds.attrs["spacing"] = np.asarray(vol.spacing, dtype=np.float64)
        ds.attrs["unit"] = vol.unit
        ds.attrs["origin"] = np.asarray(vol.origin, dtype=np.float64)
        ds.attrs["voxfield_meta"] = metajson.dumps(meta)
        if vol.unit in ("Å", "nm", "µm", "mm", "m"):
            ds.attrs["element_size_um"] = np.asarray(vol.spacing_in("µm"), dtype=np.float64)
        elif "element_size_um" in ds.attrs:
            del ds.attrs["element_size_um"]
        for i, a in enumerate(vol.axes):
            ds.dims[i].label = a.lower()


def _write_foreign_attrs(ds: h5py.Dataset, attrs: dict[str, Any]) -> None:
    """Attributes other tools put on the source dataset (kept on a round trip)."""
    for k, v in attrs.items():
        if k in ("DIMENSION_LABELS", "DIMENSION_LIST", "element_size_um") or v is None:
            continue
        try:
            ds.attrs[k] = v
        except (TypeError, ValueError):
            continue
