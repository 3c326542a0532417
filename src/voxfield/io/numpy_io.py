"""NumPy ``.npy`` arrays and ``.npz`` archives.

``.npy`` holds an array and nothing else: axes are guessed from the number of dimensions
(:func:`axes_for_ndim`) and writing drops every piece of metadata (spacing, unit, origin,
header) -- use ``.npz`` to keep them. ``.npz`` files written by voxfield carry the array as
``data`` and the volume description as ``voxfield_meta`` (a 0-d unicode array holding the
JSON of :mod:`voxfield.io.metajson`), which reading restores. Pickled (object) arrays are
never loaded.
"""

from __future__ import annotations

import math
import os
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from voxfield.errors import DataError, FormatError
from voxfield.io import metajson
from voxfield.io.validate import check_nbytes, check_shape, describe_exception, one_line, warn_dropped
from voxfield.io.volume import Volume

SUFFIXES = (".npy", ".npz")
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
META_KEY = "voxfield_meta"

_AXES_BY_NDIM = {1: "X", 2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}


def axes_for_ndim(ndim: int, path: str | os.PathLike[str] | None = None) -> str:
    """Axes guessed from the number of dimensions: 2 YX, 3 ZYX, 4 CZYX, 5 TCZYX."""
    if ndim not in _AXES_BY_NDIM or ndim < 2:
        raise DataError(f"cannot guess the axes of a {ndim}-dimensional array (voxfield takes 2 to 5)", path)
    return _AXES_BY_NDIM[ndim]


# ---------------------------------------------------------------------------- detection
def sniff(head: bytes, path: Path) -> bool:
    """``.npy`` or ``.npz`` content (see :func:`sniff_npy`, :func:`sniff_npz`)."""
    return sniff_npy(head, path) or sniff_npz(head, path)


def sniff_npy(head: bytes, path: Path) -> bool:
    """``.npy`` magic bytes."""
    return head.startswith(NPY_MAGIC)


def sniff_npz(head: bytes, path: Path) -> bool:
    """A zip archive that is an ``.npz`` (suffix ``.npz``, or only ``.npy`` members)."""
    if not head.startswith(ZIP_MAGICS):
        return False
    if path.name.lower().endswith(".npz"):
        return True
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


# ---------------------------------------------------------------------------- npy header
def _read_npy_header(fh: IO[bytes], where: str | os.PathLike[str]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open ``.npy`` stream, positioned after it.

    Any failure to parse the header (numpy tokenizes and evaluates it as a Python literal,
    so a damaged one can raise ``ValueError``, ``SyntaxError``, ``tokenize.TokenError``,
    ``TypeError``, ``MemoryError``...) is a one-line :class:`FormatError`."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        out = tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)
    except (ValueError, OSError, SyntaxError, tokenize.TokenError, TypeError, EOFError) as exc:
        raise FormatError(f"corrupt .npy header ({one_line(exc) or type(exc).__name__})", where) from None
    except Exception as exc:  # noqa: BLE001 - numpy's header parser on damaged bytes
        raise FormatError(f"corrupt .npy header ({describe_exception(exc)})", where) from None
    return out


def _check_npy_dtype(dtype: np.dtype, where: str | os.PathLike[str]) -> None:
    if dtype.hasobject:
        raise DataError("array holds Python objects (pickle); voxfield never loads pickles", where)
    if dtype.kind not in "biufc":
        raise DataError(f"unsupported array data type {dtype}", where)


# ---------------------------------------------------------------------------- npy
def read(path: str | os.PathLike[str], *, key: str | None = None) -> Volume:
    """Read ``.npy`` (axes guessed) or ``.npz`` (``key``, else ``data``, else the only or the
    largest array; voxfield's ``voxfield_meta`` restored). The format is told by content."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise FormatError(f"cannot read file ({exc.strerror or exc})", p) from None
    if head.startswith(NPY_MAGIC):
        if key is not None:
            raise FormatError("a .npy file holds one array; key= is for .npz", p)
        return read_npy(p)
    if head.startswith(ZIP_MAGICS):
        return read_npz(p, key=key)
    if not head:
        raise FormatError("file is empty", p)
    raise FormatError("not a NumPy .npy or .npz file", p)


def read_npy(path: str | os.PathLike[str]) -> Volume:
    """Read a ``.npy`` array; axes guessed from its dimensions (2 YX, 3 ZYX, 4 CZYX, 5 TCZYX)."""
    p = Path(path)
    with open(p, "rb") as fh:
        shape, fortran, dtype = _read_npy_header(fh, p)
        _check_npy_dtype(dtype, p)
        check_shape(shape, p)
        need = math.prod(shape) * dtype.itemsize
        have = p.stat().st_size - fh.tell()
        if have < need:
            raise FormatError(f"truncated: header declares {need} data bytes, file has {have}", p)
        check_nbytes(shape, dtype.itemsize, p)
        data = np.fromfile(fh, dtype=dtype, count=math.prod(shape))
    if data.size != math.prod(shape):
        raise FormatError(f"truncated: read {data.size} of {math.prod(shape)} values", p)
    data = data.reshape(shape, order="F" if fortran else "C")
    axes = axes_for_ndim(data.ndim, p)
    return Volume(_native(data), axes, meta={"format": "npy", "npy": {"fortran_order": fortran}})


def _native(a: np.ndarray) -> np.ndarray:
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------- npz
def _npz_members(zf: zipfile.ZipFile, p: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array name -> (shape, dtype) of every ``.npy`` member, from headers only.

    A member whose header declares more data bytes than the member holds (its size in the
    zip directory) is refused here, before numpy would allocate the declared array."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            continue
        where = f"{p}:{info.filename}"
        with zf.open(info) as fh:
            shape, _, dtype = _read_npy_header(fh, where)
            header_len = fh.tell()
        if all(int(s) >= 0 for s in shape):
            need = math.prod(shape) * dtype.itemsize
            have = int(info.file_size) - header_len
            if need > have:
                raise FormatError(f"truncated or corrupt: array header declares {need} data bytes, "
                                  f"the member holds {have}", where)
        out[info.filename[:-4]] = (shape, dtype)
    return out


def _pick_key(members: dict[str, tuple[tuple[int, ...], np.dtype]], key: str | None, p: Path) -> str:
    """The array to read: ``key``, else ``data``, else the only array, else the largest."""
    arrays = {k: v for k, v in members.items() if k != META_KEY}
    if key is not None:
        if key not in arrays:
            held = ", ".join(sorted(arrays)) or "none"
            raise FormatError(f"no array {key!r} in archive (it holds {held})", p)
        return key
    if not arrays:
        raise FormatError("archive holds no array", p)
    if "data" in arrays:
        return "data"
    if len(arrays) == 1:
        return next(iter(arrays))
    best = max(arrays, key=lambda k: int(np.prod(arrays[k][0], dtype=np.int64)))
    names = ", ".join(sorted(arrays))
    warnings.warn(f"{p}: archive holds {len(arrays)} arrays ({names}); reading the largest, "
                  f"{best!r} (choose with key=)", UserWarning, stacklevel=4)
    return best


def read_npz(path: str | os.PathLike[str], *, key: str | None = None) -> Volume:
    """Read one array of a ``.npz`` archive, restoring voxfield's description if present."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            members = _npz_members(zf, p)
            name = _pick_key(members, key, p)
            shape, dtype = members[name]
            _check_npy_dtype(dtype, p)
            check_shape(shape, p)
            check_nbytes(shape, dtype.itemsize, p)
            with np.load(p, allow_pickle=False) as npz:
                data = npz[name]
                desc = _load_meta(npz, p) if META_KEY in members else None
    except zipfile.BadZipFile as exc:
        raise FormatError(f"corrupt .npz archive ({one_line(exc)})", p) from None
    except (EOFError, zlib.error) as exc:
        raise FormatError(f"truncated or corrupt .npz archive ({one_line(exc) or type(exc).__name__})", p) from None
    except NotImplementedError as exc:
        raise FormatError(f"unsupported or corrupt .npz archive ({one_line(exc)})", p) from None
    except (FormatError, DataError):
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/numpy on a damaged archive
        raise FormatError(f"corrupt .npz archive ({describe_exception(exc)})", p) from None
    if tuple(data.shape) != tuple(shape):
        raise FormatError(f"array {name!r} has shape {data.shape}, its header says {shape}", p)
    info = {"key": name, "keys": sorted(k for k in members if k != META_KEY)}
    if desc is not None and list(desc.get("shape", data.shape)) == list(data.shape):
        meta = dict(desc.get("meta") or {}) if isinstance(desc.get("meta") or {}, dict) else {}
        meta.update(format="npz", npz=info)
        try:
            return Volume(_native(data), desc["axes"], _float_tuple(desc.get("spacing")), desc.get("unit", "px"),
                          _float_tuple(desc.get("origin")), meta)
        except (DataError, TypeError, ValueError) as exc:
            detail = exc.message if isinstance(exc, DataError) else one_line(exc)
            warnings.warn(f"{p}: ignoring inconsistent {META_KEY} ({detail})", UserWarning, stacklevel=3)
    axes = axes_for_ndim(data.ndim, p)
    return Volume(_native(data), axes, meta={"format": "npz", "npz": info})


def _float_tuple(value: Any) -> tuple[Any, ...]:
    """A stored spacing/origin list as a tuple (``()`` when absent); :class:`Volume`
    checks the values."""
    if value is None or value == []:
        return ()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"spacing/origin {value!r} is not a list")
    return tuple(value)


def _load_meta(npz: Any, p: Path) -> dict[str, Any] | None:
    """The description stored by voxfield, or None (with a warning) if unreadable."""
    try:
        text = npz[META_KEY]
        desc = metajson.loads(str(text[()]))
        if not isinstance(desc, dict) or "axes" not in desc:
            raise ValueError("not a volume description")
        return desc
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        warnings.warn(f"{p}: ignoring unreadable {META_KEY} ({one_line(exc)})", UserWarning, stacklevel=4)
        return None


# ---------------------------------------------------------------------------- writing
def write(vol: Volume, path: str | os.PathLike[str], *, key: str = "data") -> None:
    """Write ``.npz`` (data + voxfield_meta, compressed) or ``.npy`` (data only), by suffix.

    A ``.npy`` file keeps only the array: axes, spacing, unit, origin and header metadata
    are dropped (use ``.npz`` to keep them).
    """
    p = Path(path)
    if p.name.lower().endswith(".npy"):
        write_npy(vol, p)
    else:
        write_npz(vol, p, key=key)


def _check_writable_data(vol: Volume, p: Path) -> None:
    if vol.dtype.hasobject or vol.dtype.kind not in "biufc":
        raise DataError(f"data type {vol.dtype} cannot be written (numeric arrays only)", p)
    check_shape(vol.shape, p)


def write_npy(vol: Volume, path: str | os.PathLike[str]) -> None:
    """Write the array alone as ``.npy``; all metadata is dropped (``.npz`` keeps it)."""
    p = Path(path)
    _check_writable_data(vol, p)
    with open(p, "wb") as fh:
        np.save(fh, np.ascontiguousarray(vol.data), allow_pickle=False)


def write_npz(vol: Volume, path: str | os.PathLike[str], *, key: str = "data") -> None:
    """Write a compressed ``.npz`` with the array under ``key`` and ``voxfield_meta``.

    ``vol.meta`` is stored as JSON whatever it holds (odd values become text); a header
    nested too deeply to encode is dropped with a warning and the rest is written."""
    p = Path(path)
    _check_writable_data(vol, p)
    if not key or key == META_KEY:
        raise DataError(f"invalid array name {key!r}", p)
    desc = vol.describe()
    desc["meta"] = {k: v for k, v in desc["meta"].items() if k not in ("format", "source", "npz", "npy")}
    try:
        text = np.array(metajson.dumps(desc))
    except (RecursionError, ValueError, TypeError) as exc:
        warn_dropped("meta", "*", "<header>", f"cannot be stored as JSON ({describe_exception(exc, 80)})")
        desc["meta"] = {}
        text = np.array(metajson.dumps(desc))
    with open(p, "wb") as fh:
        np.savez_compressed(fh, **{key: np.ascontiguousarray(vol.data), META_KEY: text})
