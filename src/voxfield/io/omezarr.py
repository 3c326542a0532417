"""OME-Zarr (OME-NGFF) multiscale images, via :mod:`zarr` (v3 library).

Reading understands NGFF 0.4 (zarr_format 2, ``attrs["multiscales"]``) and 0.5
(zarr_format 3, ``attrs["ome"]["multiscales"]``), as well as older stores whose axes are
plain names or missing, a bioformats2raw layout (image in group ``0``), and plain Zarr
arrays or groups without NGFF metadata (axes guessed from the number of dimensions, with a
warning).

Writing produces an NGFF **0.4** image by default (``version="0.5"`` writes 0.5): 0.4 on
zarr_format 2 is what the tools of imaging facilities read today (Fiji/BigDataViewer
n5-zarr, QuPath, OMERO, napari-ome-zarr and neuroglancer all read it, while 0.5 / Zarr v3
support is still arriving in several of them), and nothing voxfield stores needs 0.5.
Level 0 holds the data bit-exact; each further level halves Y and X (and Z while its
spacing is comparable to the XY spacing) by a block mean cast back to the data type;
non-spatial axes are never downsampled. Chunks are compressed losslessly (Blosc-zstd with
byte shuffle).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import DataError, FormatError
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
from voxfield.io.volume import UNITS, Volume, normalize_unit, unit_factor


def _zfpy_breaks_numcodecs() -> bool:
    """numcodecs <= 0.16 parses zfpy's version with ``int()`` and fails to import when zfpy
    has a version such as ``1.0.1.post0`` (which then breaks ``import zarr``)."""
    if "numcodecs" in sys.modules:
        return False
    try:
        version = importlib.metadata.version("zfpy")
    except importlib.metadata.PackageNotFoundError:
        return False
    return not all(part.isdigit() for part in version.split("."))


if _zfpy_breaks_numcodecs():
    # Import numcodecs without its optional ZFPY codec (unusable in this case anyway).
    sys.modules.setdefault("numcodecs.zfpy", None)  # type: ignore[arg-type]

import zarr  # noqa: E402
from zarr.codecs import BloscCodec  # noqa: E402

SUFFIXES = (".ome.zarr", ".zarr")
_MARKERS = (".zattrs", ".zgroup", ".zarray", "zarr.json")
#: NGFF unit names <-> voxfield units.
_NGFF_UNIT = {"Å": "angstrom", "nm": "nanometer", "µm": "micrometer", "mm": "millimeter", "m": "meter"}
_LENGTH_M = {"angstrom": 1e-10, "picometer": 1e-12, "nanometer": 1e-9, "micrometer": 1e-6, "millimeter": 1e-3,
             "centimeter": 1e-2, "decimeter": 0.1, "meter": 1.0, "inch": 0.0254, "foot": 0.3048}
_TIME_S = {"second": 1.0, "millisecond": 1e-3, "microsecond": 1e-6, "nanosecond": 1e-9, "minute": 60.0,
           "hour": 3600.0}
_MIN_LEVEL_SIZE = 64


# ---------------------------------------------------------------------------- detection
def sniff(head: bytes, path: Path) -> bool:
    """A folder holding Zarr metadata (``.zattrs``, ``.zgroup``, ``.zarray`` or ``zarr.json``)."""
    return path.is_dir() and any((path / m).is_file() for m in _MARKERS)


# ---------------------------------------------------------------------------- reading
def read(path: str | os.PathLike[str], *, level: int = 0) -> Volume:
    """Read pyramid level ``level`` of an OME-Zarr image (or a plain Zarr array).

    ``meta["zarr"]`` records the NGFF version, zarr format, axes, dataset paths, the shape,
    scale and translation of every level, the chosen level and the ``omero`` block.

    Raises :class:`FormatError` (one line, naming the store) for unreadable metadata,
    NGFF metadata of the wrong structure, zero chunk sizes and chunks that do not decode
    (Blosc/zstd/gzip errors), and :class:`DataError` for non-numeric arrays and shapes
    that are absurd or larger than this machine's memory (refused before reading).
    """
    p = Path(path)
    if not p.exists():
        raise FormatError("no such file or folder", p)
    try:
        node = zarr.open(store=str(p), mode="r")
    except (zarr.errors.BaseZarrError, FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"not a readable Zarr store ({one_line(exc)})", p) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zarr on damaged metadata
        raise FormatError(f"not a readable Zarr store ({describe_exception(exc)})", p) from None
    try:
        if isinstance(node, zarr.Array):
            return _read_plain(node, p, "store is a plain Zarr array")
        image, attrs, version = _find_image(node)
        if image is None:
            return _read_plain(_largest_array(node, p), p, "store has no OME-NGFF multiscales metadata")
        return _read_multiscale(image, attrs, version, level, p)
    except (FormatError, DataError, MemoryError):
        raise
    except (zarr.errors.BaseZarrError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"invalid OME-Zarr store ({one_line(exc) or type(exc).__name__})", p) from None
    except Exception as exc:  # noqa: BLE001 - zarr/numcodecs on damaged metadata or chunks
        raise FormatError(f"invalid OME-Zarr store ({describe_exception(exc)})", p) from None


def _load(arr: Any, p: Path) -> np.ndarray:
    """All of ``arr``, after checking its chunk grid, dtype and size; a chunk that does not
    decode is a :class:`FormatError` naming the array."""
    name = arr.path or "/"
    shape = tuple(int(s) for s in arr.shape)
    check_shape(shape, p)
    chunks = tuple(int(c) for c in arr.chunks)
    if len(chunks) != len(shape) or any(c <= 0 for c in chunks):
        raise FormatError(f"array {name!r} has an invalid chunk shape {chunks}", p)
    if arr.dtype.kind not in "biufc":
        raise DataError(f"array {name!r} has unsupported data type {arr.dtype}", p)
    check_nbytes(shape, arr.dtype.itemsize, p)
    _check_blosc_chunks(arr, p)
    try:
        data = np.asarray(arr[...])
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the codec (Blosc, zstd, gzip...) on a damaged chunk
        raise FormatError(f"array {name!r}: a chunk is corrupt or truncated ({describe_exception(exc)})",
                          p) from None
    if tuple(data.shape) != shape:
        raise FormatError(f"array {name!r} decoded to shape {data.shape}, its metadata says {shape}", p)
    return _native(data)


def _check_blosc_chunks(arr: Any, p: Path) -> None:
    """Refuse a Blosc chunk file shorter or longer than its own header says.

    The Blosc decompressor trusts the compressed size in a frame's header, so a truncated
    chunk may decode from memory past its end (garbage, or an error, from one run to the
    next). Each unsharded Blosc chunk of a local store is checked here: 16 header bytes,
    compressed size (bytes 12-15, little-endian) equal to the file's size."""
    try:
        meta = json.dumps(arr.metadata.to_dict(), default=str).lower()
    except Exception:  # noqa: BLE001 - metadata of an unknown shape: leave it to the decoder
        return
    if "blosc" not in meta or "sharding" in meta:
        return
    folder = p / str(arr.path or "")
    if not folder.is_dir():
        return
    name = arr.path or "/"
    for f in folder.rglob("*"):
        if not f.is_file() or f.name.startswith(".") or f.name == "zarr.json":
            continue
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(16)
        declared = int.from_bytes(head[12:16], "little") if len(head) == 16 else -1
        if declared != size:
            raise FormatError(f"array {name!r}: chunk {f.relative_to(folder).as_posix()} is corrupt or truncated "
                              f"({size} bytes, its Blosc header says {declared})", p)


def _ome_attrs(group: Any) -> tuple[dict[str, Any], str | None]:
    """(NGFF attributes, version) of a group: 0.5 nests them under ``ome``."""
    attrs = dict(group.attrs)
    if isinstance(attrs.get("ome"), dict):
        ome = attrs["ome"]
        return ome, str(ome.get("version", "0.5"))
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        version = ms[0].get("version") if isinstance(ms, list) and ms and isinstance(ms[0], dict) else None
        return attrs, str(version) if version else None
    return attrs, None


def _find_image(root: Any) -> tuple[Any, dict[str, Any], str | None]:
    """The group holding ``multiscales`` (the root, or ``0`` of a bioformats2raw layout)."""
    attrs, version = _ome_attrs(root)
    if "multiscales" in attrs:
        return root, attrs, version
    if "0" in root and isinstance(root["0"], zarr.Group):
        sub_attrs, sub_version = _ome_attrs(root["0"])
        if "multiscales" in sub_attrs:
            return root["0"], sub_attrs, sub_version
    return None, attrs, version


def _largest_array(group: Any, p: Path) -> Any:
    arrays = []

    def walk(g: Any, depth: int) -> None:
        for _, a in g.arrays():
            arrays.append(a)
        if depth < 2:
            for _, sub in g.groups():
                walk(sub, depth + 1)

    walk(group, 0)
    if not arrays:
        raise FormatError("Zarr group holds no array", p)
    return max(arrays, key=lambda a: math.prod(a.shape))


def _read_plain(arr: Any, p: Path, why: str) -> Volume:
    """A Zarr array without NGFF metadata: axes guessed from ndim, with a warning."""
    shape = tuple(int(s) for s in arr.shape)
    check_shape(shape, p)
    axes = axes_for_ndim(len(shape), p)
    data = _load(arr, p)
    warnings.warn(f"{p}: {why}; guessed axes {axes!r} from {len(shape)} dimensions, spacing unknown",
                  UserWarning, stacklevel=3)
    info = {"version": None, "zarr_format": int(arr.metadata.zarr_format), "array": arr.path or "",
            "shape": list(shape)}
    return Volume(data, axes, meta={"format": "zarr", "zarr": info})


def _native(a: np.ndarray) -> np.ndarray:
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return np.ascontiguousarray(a)


def _axis_letters(axes: list[Any], ndim: int) -> str:
    """NGFF axes (dicts, names, or missing) -> voxfield letters."""
    if not axes:
        return "TCZYX"[5 - ndim:] if ndim <= 5 else axes_for_ndim(ndim)
    out = []
    for ax in axes:
        name = str((ax.get("name") if isinstance(ax, dict) else ax) or "")
        typ = ax.get("type") if isinstance(ax, dict) else None
        letter = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X",
                  "i": "I", "q": "Q", "s": "S"}.get(name.lower())
        if letter is None or letter in out:
            letter = {"time": "T", "channel": "C"}.get(str(typ))
        if letter is None or letter in out:
            letter = next((c for c in "QIZYX" if c not in out), None)
        if letter is None:
            raise ValueError(f"cannot name axes {axes}")
        out.append(letter)
    return "".join(out)


def _transforms(items: list[Any] | None, ndim: int) -> tuple[list[float], list[float]]:
    """(scale, translation) of a coordinateTransformations list (identity by default)."""
    scale, trans = [1.0] * ndim, [0.0] * ndim
    for t in items if isinstance(items, list) else []:
        if not isinstance(t, dict):
            continue
        if t.get("type") == "scale" and isinstance(t.get("scale"), list) and len(t["scale"]) == ndim:
            if all(is_finite_number(v) and float(v) > 0 for v in t["scale"]):
                scale = [float(v) for v in t["scale"]]
            else:
                warnings.warn(f"ignoring a scale that is not positive finite numbers ({one_line(t['scale'], 80)})",
                              UserWarning, stacklevel=4)
        elif t.get("type") == "translation" and isinstance(t.get("translation"), list) and \
                len(t["translation"]) == ndim:
            if all(is_finite_number(v) for v in t["translation"]):
                trans = [float(v) for v in t["translation"]]
            else:
                warnings.warn(f"ignoring a translation that is not finite numbers "
                              f"({one_line(t['translation'], 80)})", UserWarning, stacklevel=4)
        elif t.get("type") not in ("identity", "scale", "translation"):
            warnings.warn(f"ignoring coordinate transformation of type {t.get('type')!r}", UserWarning,
                          stacklevel=4)
    return scale, trans


def _space_unit(axes: list[Any], letters: str) -> tuple[str, dict[str, float]]:
    """The volume unit and, per spatial letter, the factor from its NGFF unit to it."""
    units = {}
    for ax, letter in zip(axes or [], letters):
        if letter in "ZYX" and isinstance(ax, dict) and ax.get("unit"):
            units[letter] = str(ax["unit"]).lower()
    if not units:
        return "px", {a: 1.0 for a in "ZYX"}
    first = next(units[a] for a in "XYZ" if a in units)
    target = normalize_unit(first)
    if target not in UNITS:
        target = "µm" if first in _LENGTH_M else "px"
    factors = {}
    for a in "ZYX":
        u = units.get(a, first)
        if u in _LENGTH_M and target != "px":
            factors[a] = _LENGTH_M[u] / _LENGTH_M[_NGFF_UNIT[target]]
        else:
            factors[a] = unit_factor(u, target)
    return target, factors


def _read_multiscale(group: Any, attrs: dict[str, Any], version: str | None, level: int, p: Path) -> Volume:
    """Read one level of an NGFF multiscale image."""
    ms, datasets, arrays, letters, scales, translations = multiscale_levels(group, attrs, p)
    if not 0 <= level < len(datasets):
        raise FormatError(f"level {level} does not exist (the image has {len(datasets)})", p)
    return _volume_of_level(ms, datasets, arrays, letters, scales, translations, attrs, version, level, p)


def multiscale_levels(group: Any, attrs: dict[str, Any], p: Path) -> tuple[Any, ...]:
    """Parse an NGFF ``multiscales`` block: ``(ms, datasets, arrays, letters, scales,
    translations)`` with the zarr array of every level and, per level, the scale and
    translation of every axis (FormatError for metadata of the wrong structure)."""
    multiscales = attrs["multiscales"]
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise FormatError("invalid OME-NGFF metadata: multiscales is not a list of objects", p)
    ms = multiscales[0]
    datasets = ms.get("datasets") or []
    if not isinstance(datasets, list):
        raise FormatError("invalid OME-NGFF metadata: multiscales datasets is not a list", p)
    if not datasets:
        raise FormatError("multiscales lists no datasets", p)
    if not all(isinstance(d, dict) and isinstance(d.get("path"), str) and d["path"] for d in datasets):
        raise FormatError("invalid OME-NGFF metadata: a dataset has no path", p)
    if not isinstance(ms.get("axes") or [], list):
        raise FormatError("invalid OME-NGFF metadata: axes is not a list", p)
    arrays = []
    for d in datasets:
        try:
            node = group[d["path"]]
        except KeyError:
            raise FormatError(f"dataset {d['path']!r} listed in multiscales is missing", p) from None
        if not isinstance(node, zarr.Array):
            raise FormatError(f"dataset {d['path']!r} listed in multiscales is not an array", p)
        arrays.append(node)
    ndim = len(arrays[0].shape)
    if any(len(a.shape) != ndim for a in arrays):
        raise FormatError("invalid OME-NGFF metadata: the levels have different numbers of dimensions", p)
    if ms.get("axes") and len(ms["axes"]) != ndim:
        raise FormatError(f"invalid OME-NGFF metadata: {len(ms['axes'])} axes for {ndim}-dimensional arrays", p)
    letters = _axis_letters(ms.get("axes") or [], ndim)
    g_scale, g_trans = _transforms(ms.get("coordinateTransformations"), ndim)
    scales, translations = [], []
    for d in datasets:
        s, t = _transforms(d.get("coordinateTransformations"), ndim)
        scales.append([a * b for a, b in zip(s, g_scale)])
        translations.append([a * b + c for a, b, c in zip(t, g_scale, g_trans)])
    return ms, datasets, arrays, letters, scales, translations


def _volume_of_level(ms: dict[str, Any], datasets: list[Any], arrays: list[Any], letters: str,
                     scales: list[list[float]], translations: list[list[float]], attrs: dict[str, Any],
                     version: str | None, level: int, p: Path) -> Volume:
    ndim = len(letters)
    arr = arrays[level]
    data = _load(arr, p)
    unit, factors = _space_unit(ms.get("axes") or [], letters)
    spacing = tuple(scales[level][i] * factors[a] for i, a in enumerate(letters) if a in "ZYX")
    origin = tuple(translations[level][i] * factors[a] for i, a in enumerate(letters) if a in "ZYX")
    info: dict[str, Any] = {
        "version": version,
        "zarr_format": int(arr.metadata.zarr_format),
        "name": ms.get("name"),
        "axes": ms.get("axes"),
        "datasets": [d["path"] for d in datasets],
        "level": level,
        "level_shapes": [list(a.shape) for a in arrays],
        "scales": scales,
        "translations": translations,
        "chunks": list(arr.chunks),
        "shape": list(arrays[0].shape),
        "letters": letters,
    }
    if "T" in letters:
        t_axis = (ms.get("axes") or [{}] * ndim)[letters.index("T")]
        t_unit = t_axis.get("unit") if isinstance(t_axis, dict) else None
        info["time_interval"] = scales[level][letters.index("T")] * _TIME_S.get(str(t_unit), 1.0)
    if isinstance(attrs.get("omero"), dict):
        info["omero"] = attrs["omero"]
    if level:
        info["level0_spacing"] = [scales[0][i] * factors[a] for i, a in enumerate(letters) if a in "ZYX"]
    return Volume(data, letters, spacing, unit, origin, meta={"format": "zarr", "zarr": info})


# ---------------------------------------------------------------------------- writing
def write(vol: Volume, path: str | os.PathLike[str], *, levels: int | None = None,
          chunks: tuple[int, ...] | None = None, version: str = "0.4") -> None:
    """Write ``vol`` as an OME-NGFF multiscale image (a folder).

    Parameters
    ----------
    levels:
        Number of pyramid levels including full resolution. ``None``: add levels until the
        smallest downsampled axis is below 64 voxels (or, when the data has the shape
        recorded in ``meta["zarr"]``, as many levels as the source had).
    chunks:
        Chunk shape in the written axis order (T, C/I/Q, Z, Y, X); default 64 voxels along
        Z, Y, X of a volume (256 along Y, X of an image) and 1 along other axes.
    version:
        ``"0.4"`` (zarr_format 2, default: the widest reader support) or ``"0.5"``
        (zarr_format 3).

    The axes are reordered as NGFF requires (time, then one channel-like axis, then Z, Y,
    X): a ``"ZCYX"`` volume is stored as ``"CZYX"`` and an RGB ``"YXS"`` image as ``"CYX"``.

    ``vol.meta["zarr"]`` may come from an untrusted file (a forged ``.vxf`` header): a
    field of the wrong type or out of range (level list, chunks, name, time interval, an
    ``omero`` block that is not strict JSON) is dropped with one warning naming it; the
    data and every valid field are still written (see :func:`_clean_old`).
    """
    p = Path(path)
    if version not in ("0.4", "0.5"):
        raise DataError(f"NGFF version {version!r} not supported (use '0.4' or '0.5')", p)
    data, letters = _ngff_order(vol, p)
    check_shape(tuple(data.shape), p)
    if data.dtype.kind not in "biuf" or data.dtype.itemsize > 8:
        raise DataError(f"data type {data.dtype} cannot be written to OME-Zarr", p)
    old = _clean_old(vol.meta.get("zarr"), data.ndim)
    fits = bool(old) and old.get("letters") == letters and list(old.get("shape") or []) == list(data.shape)
    if levels is None and fits and old.get("datasets"):
        levels = len(old["datasets"])
    if chunks is None and fits and old.get("chunks") and len(old["chunks"]) == data.ndim:
        chunks = tuple(old["chunks"])
    spacing = _spacing_by_letter(vol)
    pyramid = _pyramid(data, letters, spacing, levels)
    chunk_shape = _chunks(data.shape, letters, chunks, p)
    zarr_format = 2 if version == "0.4" else 3
    root = zarr.open_group(store=str(p), mode="w", zarr_format=zarr_format)
    datasets = []
    for k, (arr, factors) in enumerate(pyramid):
        _write_array(root, str(k), arr, chunk_shape, letters, zarr_format)
        transforms = _level_transforms(vol, letters, factors, old)
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    name = old.get("name") if fits and old.get("name") else Path(str(vol.meta.get("source", "image"))).name
    if not (is_clean_text(name, 1024) and _strict_json(name)):
        name = "image"
    multiscale: dict[str, Any] = {
        "name": name,
        "axes": _ngff_axes(letters, vol.unit, old),
        "datasets": datasets,
        "type": "mean",
        "metadata": {"method": "voxfield block mean (2x2[x2]) cast to the data type"},
    }
    omero = old.get("omero") if fits and isinstance(old.get("omero"), dict) else None
    if version == "0.4":
        multiscale = {"version": "0.4", **multiscale}
        attrs: dict[str, Any] = {"multiscales": [multiscale]}
        if omero:
            attrs["omero"] = omero
    else:
        ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscale]}
        if omero:
            ome["omero"] = omero
        attrs = {"ome": ome}
    root.attrs.update(attrs)


def _strict_json(value: Any) -> bool:
    """Does ``value`` encode as strict JSON (no NaN/Inf, no bytes) in UTF-8?"""
    try:
        json.dumps(value, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _clean_old(old: Any, ndim: int) -> dict[str, Any]:
    """``meta["zarr"]`` without the fields the writer cannot use (one warning each)."""
    if not isinstance(old, dict):
        if old is not None:
            warn_dropped("meta", "zarr", old, "not a map of OME-Zarr fields")
        return {}
    checks: dict[str, tuple[Any, str]] = {
        "letters": (lambda v: isinstance(v, str), "not text"),
        "shape": (lambda v: isinstance(v, list) and all(is_int(x, 0) for x in v), "not a list of sizes"),
        "datasets": (lambda v: isinstance(v, list) and 1 <= len(v) <= 32, "not a list of 1 to 32 levels"),
        "chunks": (lambda v: isinstance(v, list) and len(v) == ndim and all(is_int(x, 1, 2**31 - 1) for x in v),
                   f"not {ndim} positive chunk sizes"),
        "name": (lambda v: is_clean_text(v, 1024) and _strict_json(v), "not a name"),
        "time_interval": (lambda v: is_finite_number(v) and float(v) > 0, "not a positive number"),
        "omero": (lambda v: isinstance(v, dict) and _strict_json(v), "not a JSON object"),
    }
    out = dict(old)
    for key, (ok, why) in checks.items():
        if key in out and out[key] is not None and not ok(out[key]):
            warn_dropped("zarr", key, out.pop(key), why)
    return out


def _ngff_order(vol: Volume, p: Path) -> tuple[np.ndarray, str]:
    """Transpose to T, (C|I|Q|S), Z, Y, X; S is written as the channel axis C."""
    extra = [a for a in vol.axes if a in "CIQS"]
    if len(extra) > 1:
        raise DataError(f"OME-Zarr holds one channel-like axis; axes {vol.axes!r} have {''.join(extra)}: "
                        "write .tif instead", p)
    if "Y" not in vol.axes or "X" not in vol.axes:
        raise DataError(f"OME-Zarr needs Y and X axes; got {vol.axes!r}", p)
    order = [a for a in "T" + "".join(extra) + "ZYX" if a in vol.axes]
    data = np.transpose(vol.data, [vol.axes.index(a) for a in order])
    return data, "".join(order).replace("S", "C")


def _spacing_by_letter(vol: Volume) -> dict[str, float]:
    return {a: vol.spacing_of(a) for a in vol.spatial_axes}


def _pyramid(data: np.ndarray, letters: str, spacing: dict[str, float], levels: int | None
             ) -> list[tuple[np.ndarray, dict[str, int]]]:
    """[(array, cumulative factor per letter)] starting with the data itself."""
    out = [(data, {a: 1 for a in letters})]
    while levels is None or len(out) < levels:
        arr, factors = out[-1]
        axes = _axes_to_halve(arr.shape, letters, spacing, factors)
        sizes = [arr.shape[letters.index(a)] for a in axes]
        if not axes or (levels is None and min(sizes) < _MIN_LEVEL_SIZE):
            break
        out.append((_block_mean(arr, [letters.index(a) for a in axes]),
                    {a: f * (2 if a in axes else 1) for a, f in factors.items()}))
    return out


def _axes_to_halve(shape: tuple[int, ...], letters: str, spacing: dict[str, float],
                   factors: dict[str, int]) -> list[str]:
    """Y and X (when longer than 1), and Z while its spacing is below sqrt(2) x the XY spacing."""
    axes = [a for a in "YX" if a in letters and shape[letters.index(a)] > 1]
    if "Z" in letters and shape[letters.index("Z")] > 1 and axes:
        sz = spacing.get("Z", 1.0) * factors["Z"]
        sxy = max(spacing.get(a, 1.0) * factors[a] for a in "YX" if a in letters)
        if sz < math.sqrt(2.0) * sxy:
            axes.insert(0, "Z")
    return axes


def _block_mean(arr: np.ndarray, dims: list[int]) -> np.ndarray:
    """Mean over 2-voxel blocks along ``dims`` (a last odd voxel averages with itself),
    rounded and cast back to the input dtype."""
    pad = [(0, arr.shape[d] % 2 if d in dims else 0) for d in range(arr.ndim)]
    work = np.pad(arr, pad, mode="edge") if any(w for _, w in pad) else arr
    shape: list[int] = []
    for d, n in enumerate(work.shape):
        shape += [n // 2, 2] if d in dims else [n]
    pair_axes = tuple(i for i, d in enumerate(_expanded(work.ndim, dims)) if d == -1)
    mean = work.reshape(shape).mean(axis=pair_axes, dtype=np.float64)
    if arr.dtype.kind in "biu":
        info = np.iinfo(arr.dtype) if arr.dtype.kind != "b" else None
        mean = np.rint(mean)
        if info is not None:
            mean = np.clip(mean, info.min, info.max)
    return mean.astype(arr.dtype)


def _expanded(ndim: int, dims: list[int]) -> list[int]:
    """Axis map after splitting each dim of ``dims`` in (n/2, 2): the 2-axes are -1."""
    out: list[int] = []
    for d in range(ndim):
        out += [d, -1] if d in dims else [d]
    return out


def _chunks(shape: tuple[int, ...], letters: str, chunks: tuple[int, ...] | None, p: Path) -> tuple[int, ...]:
    if chunks is not None:
        if len(chunks) != len(shape) or any(int(c) < 1 for c in chunks):
            raise DataError(f"chunks {tuple(chunks)} do not fit axes {letters!r} with shape {shape}", p)
        return tuple(min(int(c), s) for c, s in zip(chunks, shape))
    edge = 64 if "Z" in letters else 256
    return tuple(min(edge, s) if a in "ZYX" else 1 for a, s in zip(letters, shape))


def _write_array(root: Any, name: str, arr: np.ndarray, chunks: tuple[int, ...], letters: str,
                 zarr_format: int) -> None:
    """One pyramid level, Blosc-zstd compressed (lossless)."""
    chunks = tuple(min(c, s) for c, s in zip(chunks, arr.shape))
    if zarr_format == 2:
        from numcodecs import Blosc

        compressors: Any = [Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)]
        extra: dict[str, Any] = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    else:
        compressors = [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]
        extra = {"dimension_names": [a.lower() for a in letters]}
    z = root.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=chunks, compressors=compressors,
                          fill_value=0, **extra)
    z[...] = arr


def _level_transforms(vol: Volume, letters: str, factors: dict[str, int], old: dict[str, Any]
                      ) -> list[dict[str, Any]]:
    """scale and translation of one level: voxel centres stay in place when coarsening."""
    scale, trans = [], []
    t_interval = float(old.get("time_interval", 1.0)) if old else 1.0
    for a in letters:
        if a in "ZYX":
            s0, f = vol.spacing_of(a), factors[a]
            scale.append(s0 * f)
            trans.append(vol.origin_of(a) + (f - 1) * s0 / 2.0)
        else:
            scale.append(t_interval if a == "T" else 1.0)
            trans.append(0.0)
    return [{"type": "scale", "scale": scale}, {"type": "translation", "translation": trans}]


def _ngff_axes(letters: str, unit: str, old: dict[str, Any]) -> list[dict[str, Any]]:
    """NGFF axes with types and units."""
    out = []
    for a in letters:
        if a in "ZYX":
            ax: dict[str, Any] = {"name": a.lower(), "type": "space"}
            if unit in _NGFF_UNIT:
                ax["unit"] = _NGFF_UNIT[unit]
        elif a == "T":
            ax = {"name": "t", "type": "time"}
            if old and "time_interval" in old:
                ax["unit"] = "second"
        elif a == "C":
            ax = {"name": "c", "type": "channel"}
        else:  # I or Q: NGFF allows one axis of a custom type
            ax = {"name": a.lower()}
        out.append(ax)
    return out
