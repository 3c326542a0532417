"""TIFF, ImageJ hyperstacks and OME-TIFF, via :mod:`tifffile`.

Reading keeps tifffile's axis letters (``"ZYX"``, ``"IYX"``, ``"QYX"``, ``"YXS"``,
``"TZCYX"``...; other modulo letters become ``Q``). The physical frame comes from:

* **OME-TIFF**: ``PhysicalSizeX/Y/Z`` and their units (default µm), ``TimeIncrement``,
  channel names, and the origin from the first plane's ``PositionX/Y/Z``;
* **ImageJ**: ``spacing`` (Z) and ``unit`` of the description (escapes such as
  ``\\u00B5m`` decoded), X/Y from ``XResolution``/``YResolution`` (pixels per unit),
  ``finterval``, and ``xorigin/yorigin/zorigin`` (in pixels, ImageJ's convention);
* **plain TIFF**: the frame voxfield itself stores in tifffile's JSON description, else
  the resolution tags with ``ResolutionUnit`` inch or cm (converted to µm).

Unknown sizes give spacing 1 in unit ``"px"``.

Writing picks OME-TIFF for ``.ome.tif``/``.ome.tiff``; otherwise an ImageJ hyperstack when
the axes and dtype suit ImageJ (letters from TZCYXS, dtype uint8/uint16/int16/float32; ImageJ
stores axes in TZCYXS order, so e.g. a ``"CZYX"`` volume comes back as ``"ZCYX"``); else a
plain TIFF whose JSON description records axes, spacing, unit and origin. Units are
kept (Å and nm volumes stay in Å and nm: OME and ImageJ both take them).
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from voxfield.errors import DataError, FormatError
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
from voxfield.io.volume import AXIS_LETTERS, Volume, normalize_unit, unit_factor

SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf")

_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: ImageJ's own spellings of units that are not ASCII.
_IJ_UNIT = {"µm": "\\u00B5m", "Å": "\\u00C5"}
#: OME-XML UnitsLength spellings.
_OME_UNIT = {"Å": "Å", "nm": "nm", "µm": "µm", "mm": "mm", "m": "m"}
#: Lossless TIFF compressions that are kept on rewriting (lossy ones would lose more).
_LOSSLESS = {1, 5, 8, 32773, 32946, 34925, 50000}
_IJ_KEEP = ("Info", "Labels", "Ranges", "LUTs", "Overlays", "ROI", "Plot", "Properties",
            "min", "max", "mode", "loop", "finterval", "fps")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


# ---------------------------------------------------------------------------- detection
def sniff(head: bytes, path: Path) -> bool:
    """True for classic or BigTIFF magic bytes (either byte order)."""
    return head[:4] in _MAGIC


# ---------------------------------------------------------------------------- reading
@contextmanager
def _tifffile_log() -> Iterator[list[logging.LogRecord]]:
    """Collect tifffile's log records (it logs, not raises, on corrupt structures)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = tifffile.logger()
    handler, propagate = _Keep(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read(path: str | os.PathLike[str], *, series: int = 0, level: int = 0) -> Volume:
    """Read one series (and pyramid level) of a TIFF / ImageJ / OME-TIFF file.

    Raises :class:`FormatError` for files that are not TIFF, truncated or corrupt (damaged
    IFDs, pages that disagree, compressed strips or tiles that do not decode), and for a
    ``series``/``level`` that does not exist; :class:`DataError` for shapes beyond this
    machine's memory or unsupported sample types. Every message is one line naming the file.
    """
    p = Path(path)
    with _tifffile_log() as log:
        try:
            with tifffile.TiffFile(p) as tf:
                vol = _read_open(tf, p, series, level, log)
        except (FormatError, DataError, MemoryError):
            raise
        except tifffile.TiffFileError as exc:
            raise FormatError(f"not a TIFF file or corrupt TIFF ({one_line(exc)})", p) from None
        except (IndexError, KeyError, struct.error) as exc:
            raise FormatError(f"corrupt TIFF structure ({one_line(exc) or type(exc).__name__})", p) from None
        except ValueError as exc:
            raise FormatError(f"truncated or corrupt TIFF ({one_line(exc)})", p) from None
        except OSError as exc:
            raise FormatError(f"cannot read TIFF ({one_line(exc)})", p) from None
        except Exception as exc:  # noqa: BLE001 - tifffile/imagecodecs on damaged content
            raise FormatError(_corrupt_message(exc), p) from None
    return vol


def _corrupt_message(exc: Exception) -> str:
    """One line for an exception tifffile or a codec raised on a damaged file."""
    module = type(exc).__module__ or ""
    if module.startswith("imagecodecs") or type(exc).__name__.endswith(("DecodeError", "DeflateError")):
        return f"corrupt compressed image data: a strip or tile does not decode ({describe_exception(exc)})"
    if "incompatible keyframe" in str(exc):
        return "corrupt TIFF: its pages disagree in shape, type or compression (incompatible keyframe)"
    return f"corrupt TIFF structure ({describe_exception(exc)})"


def _select(tf: tifffile.TiffFile, p: Path, series: int, level: int) -> tuple[Any, Any]:
    """The series and the pyramid level asked for."""
    if not tf.series:
        raise FormatError("TIFF holds no image", p)
    if not 0 <= series < len(tf.series):
        raise FormatError(f"series {series} does not exist (the file has {len(tf.series)})", p)
    s = tf.series[series]
    if not 0 <= level < len(s.levels):
        raise FormatError(f"level {level} does not exist (series {series} has {len(s.levels)})", p)
    return s, s.levels[level]


def _read_pixels(tf: tifffile.TiffFile, lvl: Any, p: Path, log: list[logging.LogRecord]) -> np.ndarray:
    """The level's pixels, after checking shape, dtype and that the file holds them."""
    shape = tuple(int(n) for n in lvl.shape)
    check_shape(shape, p)
    if lvl.dtype is None or np.dtype(lvl.dtype).kind not in "biufc":
        raise DataError(f"unsupported TIFF sample type {lvl.dtype}", p)
    _check_extent(tf, lvl, p)
    check_nbytes(shape, np.dtype(lvl.dtype).itemsize, p)
    data = lvl.asarray()
    _check_log(log, p)
    if tuple(data.shape) != shape:
        raise FormatError(f"TIFF data shape {data.shape} does not match its series shape {shape}", p)
    return data


def _read_open(tf: tifffile.TiffFile, p: Path, series: int, level: int,
               log: list[logging.LogRecord]) -> Volume:
    if tf.filehandle.size < 2**32:
        # Walk the whole IFD chain first: a cut file logs an error here, and a circular
        # chain is detected and cut (listing series before this can loop forever).
        len(tf.pages)
    _check_log(log, p)
    s, lvl = _select(tf, p, series, level)
    data = _read_pixels(tf, lvl, p, log)
    axes, spacing, unit, origin, meta = _frame_of(tf, s, lvl, series, level, tuple(data.shape), p)
    data = np.ascontiguousarray(data)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return Volume(data, axes, spacing, unit, origin, meta={"format": "tiff", "tiff": meta})


def _frame_of(tf: tifffile.TiffFile, s: Any, lvl: Any, series: int, level: int, shape: tuple[int, ...],
              p: Path) -> tuple[str, Any, str, Any, dict[str, Any]]:
    """(axes, spacing, unit, origin, tiff meta) of a series level, without its pixels."""
    axes = _voxfield_axes(lvl.axes, p)
    kind = "ome" if tf.is_ome else "imagej" if tf.is_imagej else "plain"
    page = lvl.keyframe if hasattr(lvl, "keyframe") else tf.pages.first
    meta = _page_meta(page)
    meta.update(kind=kind, series=series, level=level, n_series=len(tf.series),
                level_shapes=[list(lv.shape) for lv in s.levels], axes=axes, shape=list(shape))
    if kind == "ome":
        spacing, unit, origin = _ome_frame(tf, series, axes, meta)
        if level:
            spacing = _scale_for_level(spacing, axes, s.levels[0].shape, shape)
    elif kind == "imagej":
        spacing, unit, origin = _imagej_frame(tf, axes, meta)
    else:
        spacing, unit, origin = _plain_frame(tf, page, axes, meta)
    return axes, spacing, unit, origin, meta


def read_header(path: str | os.PathLike[str], *, series: int = 0) -> Volume:
    """The frame of a TIFF's series (axes, spacing, unit, origin, metadata) without reading
    its pixels: the returned Volume's data is a read-only zero-stride placeholder of the
    right shape and dtype (for readers of large files that read regions themselves)."""
    p = Path(path)
    try:
        with _tifffile_log() as log, tifffile.TiffFile(p) as tf:
            s, lvl = _select(tf, p, series, 0)
            shape = tuple(int(n) for n in lvl.shape)
            check_shape(shape, p)
            if lvl.dtype is None or np.dtype(lvl.dtype).kind not in "biuf":
                raise DataError(f"unsupported TIFF sample type {lvl.dtype}", p)
            axes, spacing, unit, origin, meta = _frame_of(tf, s, lvl, series, 0, shape, p)
            _check_log(log, p)
    except (FormatError, DataError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile on a damaged file
        raise FormatError(f"not a readable TIFF file ({describe_exception(exc)})", p) from None
    ph = np.lib.stride_tricks.as_strided(np.zeros(1, np.dtype(lvl.dtype).newbyteorder("=")), shape,
                                         (0,) * len(shape), writeable=False)
    return Volume(ph, axes, spacing, unit, origin, meta={"format": "tiff", "tiff": meta})


def _check_log(log: list[logging.LogRecord], p: Path) -> None:
    """Turn tifffile's error log records into a FormatError (truncated/corrupt file)."""
    errors = [_log_text(r) for r in log if r.levelno >= logging.ERROR]
    if errors:
        raise FormatError(f"truncated or corrupt TIFF ({errors[-1]})", p)
    for r in log:
        warnings.warn(f"{p}: {_log_text(r)}", UserWarning, stacklevel=4)
    log.clear()


def _log_text(record: logging.LogRecord) -> str:
    """A tifffile log message without its ``<tifffile.TiffFile ...>`` prefix."""
    return re.sub(r"^<[^>]*>\s*", "", record.getMessage())


#: Largest expansion of each TIFF compression (pixel bytes per stored byte): raw 1,
#: LZW 4096 (a 12-bit code stands for at most 4096 bytes), Deflate 1032 (zlib's limit, with
#: margin), PackBits 64.
_MAX_EXPANSION = {1: 1, 5: 4096, 8: 1100, 32946: 1100, 32773: 128}


def _check_extent(tf: tifffile.TiffFile, lvl: Any, p: Path) -> None:
    """Refuse a file shorter than its pages' data (tifffile would read zeros or fail), and
    pages whose declared pixels could not come out of the bytes they store with their
    compression (a forged ImageWidth/ImageLength), before anything is allocated."""
    size = tf.filehandle.size
    end = 0
    stored = 0
    compression = None
    offset = getattr(lvl, "dataoffset", None)
    if offset is not None:
        end = int(offset) + int(lvl.nbytes)
    else:
        for page in lvl.pages:
            if page is None:
                continue
            if compression is None:
                compression = int(getattr(page, "compression", 0) or 0)
            for off, cnt in zip(page.dataoffsets, page.databytecounts):
                end = max(end, int(off) + int(cnt))
                stored += int(cnt)
    if end > size:
        raise FormatError(f"truncated: image data ends at byte {end}, file has {size}", p)
    ratio = _MAX_EXPANSION.get(compression) if compression is not None else None
    declared = int(lvl.nbytes)
    if ratio is not None and declared > ratio * stored + (1 << 20):
        raise FormatError(f"corrupt header: the image declares {declared} bytes of pixels, more than its "
                          f"{stored} stored bytes can hold", p)


def _voxfield_axes(axes: str, p: Path) -> str:
    """tifffile axis letters -> voxfield letters (other letters become Q, then I)."""
    out = []
    spare = [c for c in "QI" if c not in axes]
    for c in axes.upper():
        if c in AXIS_LETTERS and c not in out:
            out.append(c)
        elif spare:
            out.append(spare.pop(0))
        else:
            raise DataError(f"TIFF axes {axes!r} have more unknown dimensions than voxfield can name", p)
    return "".join(out)


def _enum_name(enum: Any, value: Any) -> str | None:
    try:
        return enum(int(value)).name.lower()
    except (ValueError, TypeError):
        return None


def _page_meta(page: Any) -> dict[str, Any]:
    """Storage properties of the first page (JSON types and bytes only)."""
    meta: dict[str, Any] = {
        "compression": int(page.compression),
        "compression_name": _enum_name(tifffile.COMPRESSION, page.compression),
        "photometric": _enum_name(tifffile.PHOTOMETRIC, page.photometric),
        "planarconfig": _enum_name(tifffile.PLANARCONFIG, page.planarconfig),
    }
    tags = page.tags
    if "XResolution" in tags and "YResolution" in tags:
        try:
            res = [[int(v) for v in tags[t].value] for t in ("XResolution", "YResolution")]
            res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        except (TypeError, ValueError, OverflowError):
            res = None  # a damaged resolution tag: sizes unknown
        if res is not None and all(len(r) == 2 for r in res):
            meta["resolution"], meta["resolution_unit"] = res, res_unit
    if getattr(page, "colormap", None) is not None and page.photometric == 3:
        cmap = np.asarray(page.colormap)
        meta["colormap"] = cmap.astype("<u2").tobytes()
    return meta


def _ratio(value: Any) -> float:
    num, den = value
    return float(num) / float(den) if den else 0.0


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, non-numeric, NaN or infinite)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def _plain_frame(tf: tifffile.TiffFile, page: Any, axes: str, meta: dict[str, Any]
                 ) -> tuple[tuple[float, ...], str, tuple[float, ...]]:
    """Frame of a plain TIFF: voxfield's JSON description, else resolution tags."""
    spatial = [a for a in axes if a in "ZYX"]
    shaped = tf.shaped_metadata[0] if tf.is_shaped and tf.shaped_metadata else {}
    own = shaped.get("voxfield") if isinstance(shaped, dict) else None
    if isinstance(own, dict):
        sp = own.get("spacing") if isinstance(own.get("spacing"), list) else []
        org = own.get("origin") if isinstance(own.get("origin"), list) else [0.0] * len(spatial)
        sp_f, org_f = [_finite(v) for v in sp], [_finite(v) for v in org]
        if len(sp_f) == len(org_f) == len(spatial) and None not in sp_f and None not in org_f:
            meta["voxfield_frame"] = True
            return tuple(sp_f), normalize_unit(own.get("unit")), tuple(org_f)  # type: ignore[arg-type]
    if page.description and not tf.is_shaped:
        meta["description"] = page.description
    spacing = {a: 1.0 for a in spatial}
    unit = "px"
    res_unit = meta.get("resolution_unit")
    if "resolution" in meta and res_unit in (2, 3):
        xr, yr = (_ratio(r) for r in meta["resolution"])
        if xr > 0 and yr > 0:
            per_unit = 25400.0 if res_unit == 2 else 10000.0  # inch / cm in µm
            spacing["X"], spacing["Y"], unit = per_unit / xr, per_unit / yr, "µm"
    return tuple(spacing[a] for a in spatial), unit, (0.0,) * len(spatial)


def _unescape(text: str) -> str:
    """Decode ImageJ's ``\\uXXXX`` escapes."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(text))


def _jsonable_ij(value: Any) -> Any:
    """ImageJ metadata value -> JSON types and bytes."""
    if isinstance(value, np.ndarray):
        return value.tobytes()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        return {str(k): _jsonable_ij(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable_ij(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _imagej_frame(tf: tifffile.TiffFile, axes: str, meta: dict[str, Any]
                  ) -> tuple[tuple[float, ...], str, tuple[float, ...]]:
    """Frame of an ImageJ hyperstack (spacing/unit/origin of the description)."""
    ij = dict(tf.imagej_metadata or {})
    kept = {k: _jsonable_ij(v) for k, v in ij.items() if k in _IJ_KEEP}
    for k in ("spacing", "unit", "xorigin", "yorigin", "zorigin", "ImageJ"):
        if k in ij:
            kept[k] = _jsonable_ij(ij[k])
    meta["imagej"] = kept
    if _finite(ij.get("finterval")) is not None:
        meta["time_interval"] = _finite(ij["finterval"])
    unit = normalize_unit(_unescape(ij.get("unit", ""))) if ij.get("unit") else "px"
    if unit in ("pixel", "pixels"):
        unit = "px"
    spatial = [a for a in axes if a in "ZYX"]
    spacing = {a: 1.0 for a in "ZYX"}
    if unit != "px" and "resolution" in meta:
        xr, yr = (_ratio(r) for r in meta["resolution"])
        spacing["X"] = 1.0 / xr if xr > 0 else 1.0
        spacing["Y"] = 1.0 / yr if yr > 0 else 1.0
    z = _finite(ij.get("spacing"))
    if z is not None and z > 0:
        spacing["Z"] = z
    origin = {a: -(_finite(ij.get(f"{a.lower()}origin", 0.0)) or 0.0) * spacing[a] for a in "ZYX"}
    return tuple(spacing[a] for a in spatial), unit, tuple(origin[a] + 0.0 for a in spatial)


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _ome_frame(tf: tifffile.TiffFile, series: int, axes: str, meta: dict[str, Any]
               ) -> tuple[tuple[float, ...], str, tuple[float, ...]]:
    """Frame of an OME-TIFF image: physical sizes, units, time increment, channels, origin."""
    xml = tf.ome_metadata or ""
    meta["ome_xml"] = xml
    try:
        images = _as_list(tifffile.xml2dict(xml).get("OME", {}).get("Image"))
    except (SyntaxError, ValueError, AttributeError, KeyError, TypeError) as exc:  # malformed XML: warn
        warnings.warn(f"{tf.filehandle.path}: unreadable OME-XML ({exc}); sizes unknown", UserWarning,
                      stacklevel=4)
        images = []
    image = images[series] if series < len(images) else {}
    pixels = image.get("Pixels", {}) if isinstance(image, dict) else {}
    if not isinstance(pixels, dict):
        pixels = {}
    spatial = [a for a in axes if a in "ZYX"]
    sizes, units = {}, {}
    for a in "XYZ":
        v = _finite(pixels.get(f"PhysicalSize{a}"))
        if v is not None and v > 0:
            sizes[a] = v
            units[a] = normalize_unit(pixels.get(f"PhysicalSize{a}Unit", "µm"))
    unit = next((units[a] for a in ("X", "Y", "Z") if a in units), "px")
    spacing = {a: sizes[a] * unit_factor(units[a], unit) if a in sizes else 1.0 for a in "ZYX"}
    if _finite(pixels.get("TimeIncrement")) is not None:
        t_unit = str(pixels.get("TimeIncrementUnit", "s"))
        meta["time_interval"] = _finite(pixels["TimeIncrement"]) * _TIME_UNITS.get(t_unit, 1.0)
    channels = _as_list(pixels.get("Channel"))
    names = [c.get("Name") for c in channels if isinstance(c, dict)]
    if names and all(isinstance(n, str) for n in names):
        meta["channel_names"] = names
    origin = {a: 0.0 for a in "ZYX"}
    planes = _as_list(pixels.get("Plane"))
    if planes and isinstance(planes[0], dict):
        first = planes[0]
        for a in "XYZ":
            pos = _finite(first.get(f"Position{a}"))
            if pos is not None:
                pu = normalize_unit(first.get(f"Position{a}Unit", unit))
                origin[a] = pos * (unit_factor(pu, unit) if unit != "px" else 1.0)
    return tuple(spacing[a] for a in spatial), unit, tuple(origin[a] for a in spatial)


def _scale_for_level(spacing: tuple[float, ...], axes: str, base: tuple[int, ...],
                     shape: tuple[int, ...]) -> tuple[float, ...]:
    """Spacing of a pyramid level from the level-0 spacing and the shape ratio."""
    ratio = {a: b / s for a, b, s in zip(axes, base, shape)}
    spatial = [a for a in axes if a in "ZYX"]
    return tuple(sp * ratio[a] for sp, a in zip(spacing, spatial))


# ---------------------------------------------------------------------------- writing
def write(vol: Volume, path: str | os.PathLike[str], *, compression: str | int | None = None) -> None:
    """Write ``vol`` as OME-TIFF (``.ome.tif``/``.ome.tiff``), ImageJ hyperstack or plain TIFF.

    ``compression`` (e.g. ``"zlib"``, ``"lzw"``, ``"zstd"``, ``"none"``) overrides the
    source's compression, which is kept when it was lossless. Metadata of
    ``vol.meta["tiff"]`` (ImageJ ranges, labels, info, LUTs, overlays, properties; OME
    channel names, time increment; photometric, colormap) are restored when the data
    still has the recorded axes and shape.

    ``vol.meta["tiff"]`` may come from an untrusted file (a forged ``.vxf`` header): a
    field of the wrong type or out of range (a non-integer compression code, a resolution
    that is not two positive rationals, an ImageJ ``Ranges`` that is not numbers, a
    colormap of the wrong size...) is dropped with one warning naming it, and the data and
    every valid field are still written (see :func:`_clean_meta`).
    """
    p = Path(path)
    check_shape(vol.shape, p)
    if "Y" not in vol.axes or "X" not in vol.axes:
        raise DataError(f"TIFF images need Y and X axes; got {vol.axes!r}", p)
    if vol.dtype.kind not in "biuf" or vol.dtype.itemsize > 8:
        raise DataError(f"data type {vol.dtype} cannot be written as TIFF", p)
    if vol.unit != "px" and any(s <= 0 for s in vol.spacing):
        raise DataError(f"voxel size {vol.spacing} {vol.unit} is not positive: TIFF cannot store it", p)
    meta = _clean_meta(vol.meta.get("tiff"))
    fits = bool(meta) and meta.get("axes") == vol.axes and list(meta.get("shape", [])) == list(vol.shape)
    kwargs: dict[str, Any] = {"compression": _compression(meta, compression)}
    name = p.name.lower()
    if name.endswith((".ome.tif", ".ome.tiff")):
        data, kw = _ome_args(vol, meta, p)
    elif _imagej_ok(vol):
        data, kw = _imagej_args(vol, meta, fits)
    else:
        data, kw = _plain_args(vol, meta, fits)
    kwargs.update(kw)
    data = np.ascontiguousarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(p, data, **kwargs)


def _is_bytes_list(value: Any) -> bool:
    return isinstance(value, bytes) or (isinstance(value, list) and all(isinstance(v, bytes) for v in value))


def _is_text_list(value: Any) -> bool:
    return is_clean_text(value) or (isinstance(value, list) and all(is_clean_text(v) for v in value))


#: ImageJ metadata voxfield writes back, and the check each value must pass.
_IJ_CHECKS: dict[str, tuple[Any, str]] = {
    "Info": (is_clean_text, "not text"),
    "Labels": (_is_text_list, "not a list of text"),
    "Ranges": (lambda v: isinstance(v, list) and 0 < len(v) <= 4096 and all(is_finite_number(x) for x in v),
               "not a list of finite numbers"),
    "LUTs": (lambda v: isinstance(v, list) and all(isinstance(x, bytes) and x and len(x) % 3 == 0 for x in v),
             "not a list of RGB lookup tables"),
    "Overlays": (_is_bytes_list, "not bytes"),
    "ROI": (_is_bytes_list, "not bytes"),
    "Plot": (_is_bytes_list, "not bytes"),
    "Properties": (lambda v: isinstance(v, dict) and all(is_clean_text(k) and (is_clean_text(x) or
                   is_finite_number(x)) for k, x in v.items()), "not a map of text"),
    "min": (is_finite_number, "not a finite number"),
    "max": (is_finite_number, "not a finite number"),
    "finterval": (lambda v: is_finite_number(v, 0.0), "not a finite non-negative number"),
    "fps": (lambda v: is_finite_number(v, 0.0), "not a finite non-negative number"),
    "mode": (lambda v: is_clean_text(v, 64, single_line=True), "not a short word"),
    "loop": (lambda v: isinstance(v, bool), "not true/false"),
    "spacing": (lambda v: is_finite_number(v) and float(v) > 0, "not a positive number"),
}


def _resolution_ok(value: Any) -> bool:
    """Two rationals ``[[num, den], [num, den]]`` of positive 32-bit integers."""
    return (isinstance(value, list) and len(value) == 2 and
            all(isinstance(r, list) and len(r) == 2 and all(is_int(x, 1, 2**32 - 1) for x in r) for r in value))


#: Fields of ``meta["tiff"]`` the writer uses, and the check each value must pass.
_META_CHECKS: dict[str, tuple[Any, str]] = {
    "axes": (lambda v: isinstance(v, str), "not text"),
    "shape": (lambda v: isinstance(v, list) and all(is_int(x, 0) for x in v), "not a list of sizes"),
    "compression": (lambda v: is_int(v, 1, 65535), "not a TIFF compression code"),
    "compression_name": (lambda v: is_clean_text(v, 64, single_line=True), "not a short name"),
    "photometric": (lambda v: isinstance(v, str), "not text"),
    "colormap": (lambda v: isinstance(v, bytes), "not bytes"),
    "resolution": (_resolution_ok, "not two positive rationals"),
    "resolution_unit": (lambda v: is_int(v, 1, 3), "not 1, 2 or 3"),
    "time_interval": (lambda v: is_finite_number(v) and float(v) > 0, "not a positive number"),
    "channel_names": (lambda v: isinstance(v, list) and all(is_clean_text(x, 1024, single_line=True) for x in v),
                      "not a list of names"),
    "imagej": (lambda v: isinstance(v, dict), "not a map"),
}


def _clean_meta(meta: Any) -> dict[str, Any]:
    """``meta["tiff"]`` without the fields the writer cannot use (warning once for each):
    the policy for untrusted headers is to drop a bad field and write everything else."""
    if not isinstance(meta, dict):
        if meta is not None:
            warn_dropped("meta", "tiff", meta, "not a map of TIFF header fields")
        return {}
    out = dict(meta)
    for key, (ok, why) in _META_CHECKS.items():
        if key in out and not ok(out[key]):
            warn_dropped("tiff", key, out.pop(key), why)
    if "imagej" in out:
        ij = dict(out["imagej"])
        for key, (ok, why) in _IJ_CHECKS.items():
            if key in ij and not ok(ij[key]):
                warn_dropped("tiff.imagej", key, ij.pop(key), why)
        out["imagej"] = ij
    return out


def _colormap(meta: dict[str, Any], dtype: np.dtype, *, imagej: bool = False) -> np.ndarray | None:
    """The recorded palette as a ``(3, 2**bits)`` uint16 array when it suits ``dtype``
    (uint8, or uint16 outside ImageJ files), else None (with a warning when one was recorded)."""
    raw = meta.get("colormap")
    if raw is None:
        return None
    kinds = (np.dtype("uint8"),) if imagej else (np.dtype("uint8"), np.dtype("uint16"))
    if dtype in kinds and len(raw) == 3 * 2 * 2 ** (8 * dtype.itemsize):
        return np.frombuffer(raw, dtype="<u2").reshape(3, -1)
    warn_dropped("tiff", "colormap", f"<{len(raw)} bytes>", f"not a palette for {dtype} data")
    return None


def _compression(meta: dict[str, Any], override: str | int | None) -> Any:
    """Compression argument for tifffile: override, else the source's when lossless."""
    if override is not None:
        return None if str(override).lower() in ("none", "raw", "1") else override
    code = meta.get("compression")
    if isinstance(code, int) and code in _LOSSLESS and code != 1:
        return code
    if isinstance(code, int) and code not in _LOSSLESS:
        warnings.warn(f"source TIFF compression {meta.get('compression_name') or code} is lossy; "
                      "writing zlib instead", UserWarning, stacklevel=3)
        return "zlib"
    return None


def _imagej_ok(vol: Volume) -> bool:
    """Can ImageJ hold these axes and dtype?"""
    if vol.dtype not in (np.dtype("uint8"), np.dtype("uint16"), np.dtype("int16"), np.dtype("float32")):
        return False
    if not set(vol.axes) <= set("TZCYXS") or "Y" not in vol.axes or "X" not in vol.axes:
        return False
    if "S" in vol.axes:
        return vol.axes.endswith("YXS") and vol.shape[-1] in (3, 4) and vol.dtype != np.float32
    return True


def _spatial(vol: Volume, letter: str, default: float) -> float:
    return vol.spacing_of(letter) if letter in vol.spatial_axes else default


def _imagej_args(vol: Volume, meta: dict[str, Any], fits: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Data in TZCYXS order and tifffile arguments for an ImageJ hyperstack."""
    order = [c for c in "TZCYXS" if c in vol.axes]
    data = np.transpose(vol.data, [vol.axes.index(c) for c in order])
    ij_axes = "".join(order)
    md: dict[str, Any] = {"axes": ij_axes}
    old = meta.get("imagej", {}) if isinstance(meta.get("imagej"), dict) else {}
    same_layout = fits and ij_axes == vol.axes
    for k in _IJ_KEEP:
        if k in old and (same_layout or k in ("Info", "Properties", "finterval", "fps", "loop")):
            md[k] = _ij_value(k, old[k])
    if "time_interval" in meta and "T" in vol.axes:
        md["finterval"] = float(meta["time_interval"])
    kw: dict[str, Any] = {"imagej": True, "metadata": md}
    if vol.unit != "px":
        md["unit"] = _IJ_UNIT.get(vol.unit, vol.unit)
        sx, sy = _spatial(vol, "X", 1.0), _spatial(vol, "Y", 1.0)
        kw["resolution"] = _resolution(meta, sx, sy, fits)
        if "Z" in vol.axes:
            md["spacing"] = vol.spacing_of("Z")
        elif same_layout and "spacing" in old:
            md["spacing"] = float(old["spacing"])  # ImageJ keeps a z spacing for 2-D images too
    for a in vol.spatial_axes:
        o = vol.origin_of(a)
        if o != 0.0 and vol.spacing_of(a) > 0:
            md[f"{a.lower()}origin"] = -o / vol.spacing_of(a)
    if "S" in ij_axes:
        # tifffile refuses photometric="rgb" for 16-bit ImageJ data but stores 3/4 samples
        # as RGB itself when it is left to choose.
        kw["photometric"] = "rgb" if vol.dtype == np.uint8 else None
    else:
        kw["photometric"] = "minisblack"
        cmap = _colormap(meta, vol.dtype, imagej=True) if fits and meta.get("photometric") == "palette" else None
        if cmap is not None:
            kw["photometric"] = "palette"
            kw["colormap"] = cmap
    return data, kw


def _ij_value(key: str, value: Any) -> Any:
    """meta value -> what tifffile's ImageJ writer expects."""
    if key == "LUTs":
        return [np.frombuffer(v, dtype=np.uint8).reshape(3, -1) for v in value]
    if key == "Ranges":
        return tuple(float(v) for v in value)
    return value


def _resolution(meta: dict[str, Any], sx: float, sy: float, fits: bool) -> Any:
    """X/Y resolution (pixels per unit): the source's rationals when they still match."""
    raw = meta.get("resolution")
    if fits and raw and all(r[1] for r in raw):
        rx, ry = (_ratio(r) for r in raw)
        if math.isclose(1.0 / rx, sx, rel_tol=1e-9) and math.isclose(1.0 / ry, sy, rel_tol=1e-9):
            return tuple(tuple(r) for r in raw)
    return (1.0 / sx, 1.0 / sy)


def _ome_args(vol: Volume, meta: dict[str, Any], p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Data and tifffile arguments for OME-TIFF (physical sizes, channels, origin)."""
    axes = vol.axes.replace("I", "Q") if "Q" not in vol.axes else vol.axes
    if "I" in axes:
        raise DataError(f"OME-TIFF cannot hold both I and Q axes ({vol.axes!r}); write .tif instead", p)
    tail = "YXS" if "S" in axes else "YX"
    lead = [c for c in axes if c not in tail]
    order = lead + list(tail)
    data = np.transpose(vol.data, [axes.index(c) for c in order])
    oaxes = "".join(order)
    md: dict[str, Any] = {"axes": oaxes}
    if vol.unit != "px":
        u = _OME_UNIT.get(vol.unit, vol.unit)
        for a in vol.spatial_axes:
            md[f"PhysicalSize{a}"] = vol.spacing_of(a)
            md[f"PhysicalSize{a}Unit"] = u
    if "time_interval" in meta and "T" in oaxes:
        md["TimeIncrement"] = float(meta["time_interval"])
        md["TimeIncrementUnit"] = "s"
    names = meta.get("channel_names")
    if names and "C" in oaxes and len(names) == data.shape[oaxes.index("C")]:
        md["Channel"] = {"Name": list(names)}
    if any(o != 0.0 for o in vol.origin):
        md["Plane"] = _planes(vol, oaxes, data.shape)
    kw: dict[str, Any] = {"ome": True, "metadata": md,
                          "photometric": "rgb" if "S" in oaxes and data.shape[-1] in (3, 4) else "minisblack"}
    return data, kw


def _planes(vol: Volume, oaxes: str, shape: tuple[int, ...]) -> dict[str, list[Any]]:
    """Per-plane PositionX/Y/Z (the volume origin, Z advancing with the plane's Z index)."""
    lead = [c for c in oaxes if c not in "YXS"]
    lead_shape = [shape[oaxes.index(c)] for c in lead]
    n = math.prod(lead_shape)
    unit = _OME_UNIT.get(vol.unit, vol.unit) if vol.unit != "px" else None
    out: dict[str, list[Any]] = {}
    for a in vol.spatial_axes:
        if a == "Z" and "Z" in lead:
            zi = np.unravel_index(np.arange(n), lead_shape)[lead.index("Z")] if lead else np.zeros(n, int)
            out["PositionZ"] = [vol.origin_of("Z") + int(i) * vol.spacing_of("Z") for i in zi]
        else:
            out[f"Position{a}"] = [vol.origin_of(a)] * n
        if unit:
            out[f"Position{a}Unit"] = [unit] * n
    return out


def _plain_args(vol: Volume, meta: dict[str, Any], fits: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Data and tifffile arguments for a plain TIFF with voxfield's JSON description."""
    frame = {"spacing": list(vol.spacing), "unit": vol.unit, "origin": list(vol.origin)}
    kw: dict[str, Any] = {"metadata": {"axes": vol.axes, "voxfield": frame}}
    rgb = vol.axes.endswith("S") and vol.shape[-1] in (3, 4) and vol.dtype.kind in "uf"
    kw["photometric"] = "rgb" if rgb else "minisblack"
    if fits and meta.get("photometric") == "palette" and "colormap" in meta and not rgb:
        cmap = _colormap(meta, vol.dtype)
        if cmap is not None:
            kw["photometric"] = "palette"
            kw["colormap"] = cmap
    f = unit_factor(vol.unit, "µm")
    if vol.unit in ("Å", "nm", "µm", "mm", "m") and "X" in vol.axes and "Y" in vol.axes:
        sx, sy = vol.spacing_of("X") * f, vol.spacing_of("Y") * f
        kw["resolution"] = (1e4 / sx, 1e4 / sy)
        kw["resolutionunit"] = "centimeter"
    return vol.data, kw
