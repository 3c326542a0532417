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
from voxfield.io.validate import (
    check_nbytes,
    check_shape,
    describe_exception,
    is_clean_text,
    is_finite_number,
    is_int,
    one_line,
    warn_dropped,
)
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

    Raises :class:`FormatError` for a corrupt file (damaged object headers, B-trees, heaps
    or chunks: h5py's ``OSError``/``RuntimeError``/``ValueError``...) or a missing
    ``key``, and :class:`DataError` for non-numeric datasets and shapes that are absurd or
    larger than this machine's memory (refused before reading). One line, naming the file.
    """
    p = Path(path)
    try:
        fh = h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(f"not a readable HDF5 file ({_first_line(exc)})", p) from None
    except Exception as exc:  # noqa: BLE001 - h5py on a damaged superblock
        raise FormatError(f"not a readable HDF5 file ({describe_exception(exc)})", p) from None
    name = key
    try:
        with fh:
            name, ds, shape, attrs, info = _dataset(fh, key, p, "biufc")
            check_nbytes(shape, ds.dtype.itemsize, p)
            try:
                data = ds[()]
            except (OSError, RuntimeError, ValueError) as exc:
                raise FormatError(f"cannot read dataset {name!r}: corrupt or truncated data "
                                  f"({_first_line(exc)})", p) from None
    except (FormatError, DataError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - h5py on damaged object headers, B-trees, heaps
        where = f" at dataset {name!r}" if name else ""
        raise FormatError(f"corrupt HDF5 structure{where} ({describe_exception(exc)})", p) from None
    data = np.ascontiguousarray(data)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return _volume(data, attrs, info, p)


def read_header(path: str | os.PathLike[str], *, key: str | None = None) -> tuple[Volume, str]:
    """``(frame, dataset name)`` of one dataset without reading it: the Volume's data is a
    read-only zero-stride placeholder of the dataset's shape and dtype, with its axes,
    spacing, unit, origin and metadata (for readers of large files that read regions)."""
    p = Path(path)
    try:
        with h5py.File(p, "r") as fh:
            name, ds, shape, attrs, info = _dataset(fh, key, p, "biuf")
            dtype = ds.dtype.newbyteorder("=")
    except (FormatError, DataError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - h5py on a damaged file
        raise FormatError(f"not a readable HDF5 file ({describe_exception(exc)})", p) from None
    ph = np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape), writeable=False)
    return _volume(ph, attrs, info, p), name


def _dataset(fh: Any, key: str | None, p: Path, kinds: str) -> tuple[str, Any, tuple[int, ...], Any, Any]:
    """``(name, dataset, shape, attributes, storage info)`` of the dataset to read, its shape
    and data type (one of ``kinds``) checked; nothing of its data is read."""
    name = _pick_dataset(fh, key, p)
    ds = fh[name]
    shape = tuple(int(s) for s in ds.shape)
    check_shape(shape, p)
    if ds.dtype.kind not in kinds or ds.dtype.hasobject:
        raise DataError(f"dataset {name!r} has unsupported data type {ds.dtype}", p)
    return name, ds, shape, _read_attrs(ds, p), _storage_info(ds, name)


def _first_line(exc: BaseException) -> str:
    return one_line(str(exc).splitlines()[0]) if str(exc).strip() else type(exc).__name__


def _read_attrs(ds: h5py.Dataset, p: Path) -> dict[str, Any]:
    """The dataset's attributes as Python values; one that cannot be decoded is skipped
    with a warning (the data are still read)."""
    out: dict[str, Any] = {}
    for k in list(ds.attrs.keys()):
        try:
            out[k] = _attr_value(ds.attrs[k])
        except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
            warnings.warn(f"{p}: skipping unreadable attribute {k!r} ({_first_line(exc)})", UserWarning,
                          stacklevel=4)
    return out


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
        except (ValueError, RecursionError) as exc:
            warnings.warn(f"{p}: ignoring unreadable voxfield_meta ({one_line(exc)})", UserWarning, stacklevel=4)
    meta.update(format="hdf5", hdf5=info)
    axes = _axes_from_attrs(attrs, data.ndim)
    if axes is None:
        axes = axes_for_ndim(data.ndim, p)
        if data.ndim > 3:
            warnings.warn(f"{p}: no axis labels; guessed {axes!r} from {data.ndim} dimensions", UserWarning,
                          stacklevel=4)
    n = sum(a in "ZYX" for a in axes)
    spacing, unit, origin = (), "px", ()
    if _numbers(attrs.get("spacing"), n) and all(float(v) > 0 for v in attrs["spacing"]):
        spacing, unit = tuple(attrs["spacing"]), str(attrs.get("unit", "px"))
        if _numbers(attrs.get("origin"), n):
            origin = tuple(attrs["origin"])
    elif "spacing" in attrs:
        warnings.warn(f"{p}: ignoring spacing {one_line(attrs['spacing'], 80)} (not {n} positive finite numbers); "
                      "voxel size unknown", UserWarning, stacklevel=4)
    elif isinstance(attrs.get("element_size_um"), list):
        spacing, unit = _element_size(attrs["element_size_um"], axes, n)
    try:
        return Volume(data, axes, spacing, unit, origin, meta)
    except DataError as exc:
        raise FormatError(f"inconsistent HDF5 attributes ({exc.message})", p) from None


def _numbers(value: Any, n: int) -> bool:
    """A list of ``n`` finite numbers."""
    return isinstance(value, list) and len(value) == n and all(is_finite_number(v) for v in value)


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
    if not all(is_finite_number(v) for v in values):
        return (), "px"
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
    ``element_size_um`` (when the unit is a length) and dimension labels.

    ``vol.meta["hdf5"]`` may come from an untrusted file (a forged ``.vxf`` header): a
    storage setting of the wrong type or out of range (compression, level, chunks) and a
    foreign attribute HDF5 cannot hold safely (an empty name, a name with NUL or one of the
    dimension-scale names such as ``DIMENSION_LABELS``, which can crash the HDF5 library;
    integers beyond 64 bits, ragged or nested lists, text with NUL...) are dropped with
    one warning each; the data and every valid field are still written."""
    p = Path(path)
    if vol.dtype.hasobject or vol.dtype.kind not in "biufc":
        raise DataError(f"data type {vol.dtype} cannot be written to HDF5 (numeric arrays only)", p)
    if not is_clean_text(key, 1024) or not key.strip("/"):
        raise DataError(f"invalid dataset name {key!r}", p)
    check_shape(vol.shape, p)
    old = _clean_info(vol.meta.get("hdf5"), vol.shape, vol.dtype.itemsize)
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
        ds.attrs["voxfield_meta"] = _meta_json(meta)
        if vol.unit in ("Å", "nm", "µm", "mm", "m"):
            ds.attrs["element_size_um"] = np.asarray(vol.spacing_in("µm"), dtype=np.float64)
        elif "element_size_um" in ds.attrs:
            del ds.attrs["element_size_um"]
        for i, a in enumerate(vol.axes):
            ds.dims[i].label = a.lower()


#: Attribute names voxfield writes itself or that HDF5's dimension-scale API owns (a
#: foreign value under one of these, e.g. an integer ``DIMENSION_LABELS``, makes
#: ``H5DSset_label`` crash the process).
_RESERVED_ATTRS = frozenset({"DIMENSION_LABELS", "DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME",
                             "element_size_um", "axes", "spacing", "unit", "origin", "voxfield_meta"})
#: Largest foreign attribute value kept (HDF5 stores small attributes in the object header,
#: which holds 64 KiB).
_MAX_ATTR_BYTES = 1 << 15


def _attr_name_ok(k: Any) -> str | None:
    """Why attribute name ``k`` cannot be written, or None when it can."""
    if not is_clean_text(k, 255):
        return "not a usable HDF5 attribute name (empty, NUL, over 255 characters or not UTF-8)"
    if not k.strip():
        return "not a usable HDF5 attribute name (empty)"
    if k in _RESERVED_ATTRS:
        return "a name voxfield or HDF5 dimension scales own"
    return None


def _attr_array(v: Any) -> Any:
    """``v`` as a value h5py stores safely, or None when it cannot."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**64 else None
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        return v if is_clean_text(v, _MAX_ATTR_BYTES) else None
    if isinstance(v, (bytes, bytearray)):
        return bytes(v) if len(v) <= _MAX_ATTR_BYTES else None
    if not isinstance(v, list):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(v)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None
    if arr.dtype.kind not in "biufUS" or arr.ndim > 8 or arr.nbytes > _MAX_ATTR_BYTES:
        return None
    if arr.dtype.kind == "U" and not all(is_clean_text(x, _MAX_ATTR_BYTES) for x in arr.ravel().tolist()):
        return None
    return arr


def _meta_json(meta: dict[str, Any]) -> str:
    """``meta`` as ASCII JSON (lone surrogates and NULs escaped, so HDF5 takes the text);
    ``{}`` with a warning when it cannot be encoded at all (nested beyond Python's limit)."""
    try:
        return metajson.dumps(meta, ascii=True)
    except (RecursionError, ValueError, TypeError) as exc:
        warn_dropped("meta", "*", "<header>", f"cannot be stored as JSON ({describe_exception(exc, 80)})")
        return "{}"


def _write_foreign_attrs(ds: h5py.Dataset, attrs: dict[str, Any]) -> None:
    """Attributes other tools put on the source dataset (kept on a round trip); names and
    values HDF5 cannot hold safely are dropped with a warning (:func:`_attr_name_ok`,
    :func:`_attr_array`)."""
    for k, v in attrs.items():
        if v is None or k in ("DIMENSION_LABELS", "DIMENSION_LIST", "element_size_um"):
            continue
        why = _attr_name_ok(k)
        if why is not None:
            warn_dropped("hdf5.attrs", k, v, why)
            continue
        value = _attr_array(v)
        if value is None:
            warn_dropped("hdf5.attrs", k, v, "not a value HDF5 attributes hold (number, text, bytes or a "
                         "small regular list of them)")
            continue
        try:
            ds.attrs[k] = value
        except Exception as exc:  # noqa: BLE001 - h5py refused it: drop this one attribute
            warn_dropped("hdf5.attrs", k, v, f"HDF5 refused it ({describe_exception(exc, 80)})")


def _clean_info(old: Any, shape: tuple[int, ...], itemsize: int) -> dict[str, Any]:
    """``meta["hdf5"]`` without the storage settings the writer cannot use (one warning
    each): compression not gzip/lzf, a gzip level outside 0-9, chunks that are not one
    positive integer per axis (or exceed HDF5's 4 GiB chunk limit), attributes not a map."""
    if not isinstance(old, dict):
        if old is not None:
            warn_dropped("meta", "hdf5", old, "not a map of HDF5 storage settings")
        return {}
    out = dict(old)
    if out.get("compression") is not None and out["compression"] not in _COMPRESSIONS:
        warn_dropped("hdf5", "compression", out.pop("compression"), f"not one of {', '.join(_COMPRESSIONS)}")
    if out.get("compression_opts") is not None and not is_int(out["compression_opts"], 0, 9):
        warn_dropped("hdf5", "compression_opts", out.pop("compression_opts"), "not a gzip level 0 to 9")
    if out.get("shape") is not None and not (isinstance(out["shape"], list) and
                                             all(is_int(x, 0) for x in out["shape"])):
        warn_dropped("hdf5", "shape", out.pop("shape"), "not a list of sizes")
    chunks = out.get("chunks")
    if chunks is not None:
        ok = isinstance(chunks, list) and len(chunks) == len(shape) and all(is_int(c, 1) for c in chunks)
        if ok and math.prod(min(int(c), s) for c, s in zip(chunks, shape)) * itemsize >= 2**32:
            ok = False
        if not ok:
            warn_dropped("hdf5", "chunks", out.pop("chunks"), f"not {len(shape)} positive sizes under 4 GiB a chunk")
    if out.get("attrs") is not None and not isinstance(out["attrs"], dict):
        warn_dropped("hdf5", "attrs", out.pop("attrs"), "not a map of attributes")
    return out
