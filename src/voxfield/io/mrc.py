"""MRC2014 / CCP4 maps and MRCS particle stacks (plain, gzip, bzip2), via :mod:`mrcfile`.

Conventions
-----------
**Axes.** Volumes are returned in the canonical order ``"ZYX"`` (X fastest), whatever the
file's ``mapc/mapr/maps`` say: the array is transposed on reading and transposed back on
writing, so a map stored with axis order 3,1,2 (EMD-3001) is written back exactly as it
was. Image stacks are ``"IYX"`` (I = image index), volume stacks (ispg 401-630)
``"IZYX"``, a single image with ``nz == 1`` and ``ispg == 0`` is ``"YX"``.

**Stack or volume.** mrcfile calls every ``ispg == 0`` file with ``nz > 1`` an image stack,
but Chimera/ChimeraX and EMAN write maps, masks and segments with ``ispg == 0`` too (e.g.
``emd_21457_seg.mrc``). voxfield decides, unless ``stack=`` says otherwise:

1. ``ispg`` in 401..630 -> volume stack ``"IZYX"``;
2. suffix ``.mrcs`` (before ``.gz``/``.bz2``) -> image stack ``"IYX"`` (RELION, cryoSPARC
   and EMAN name their particle stacks so; RELION writes ``mz == nz`` and may leave
   ``ispg`` at 1, so the header alone cannot tell);
3. ``ispg == 0`` and ``nz > 1`` and ``mz == 1`` -> image stack (the MRC2014 convention for
   stacks, as written by mrcfile and IMOD: sections are not sampled along a cell axis);
4. otherwise a volume ``"ZYX"`` (``ispg == 0`` with ``mz == nz`` is a map without symmetry,
   which is what Chimera and EMDB segment files are).

For image stacks the section axis is always the image index; of ``mapc/mapr/maps`` only a
swapped row/column order is applied.

**Spacing** (z, y, x) in Å is ``cella / (mx, my, mz)`` (mrcfile's ``voxel_size``). A zero or
invalid cell means the voxel size is unknown: spacing 1 in unit ``"px"``.

**Origin** (z, y, x) in Å of the first voxel: the header ORIGIN (words 50-52) when any of
it is non-zero, else ``nstart * voxel size`` (the ChimeraX convention). ``nxstart``,
``nystart``, ``nzstart`` are the starts of the column, row and section axes, mapped to X/Y/Z
through ``mapc/mapr/maps``.

**Header.** ``meta["mrc"]`` keeps every header field the writer needs to restore the file:
mode, nx/ny/nz, nxstart/nystart/nzstart, mx/my/mz, cella, cellb, mapc/mapr/maps, ispg,
origin (raw x, y, z), labels (as in the file, trailing blanks kept; ``label_fill`` when
unused labels are blank-padded), nversion, exttyp, extended_header (bytes), extra1/extra2
(bytes, only when not all zero), dmin/dmax/dmean/rms, compression, stack kind, the
canonical axes and shape, and ``data_crc32`` (zlib.crc32 of the canonical array bytes):
when the data are unchanged the original statistics are written back, otherwise they are
recomputed.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from mrcfile import utils as mrcutils

from voxfield.errors import DataError, FormatError
from voxfield.io.validate import check_nbytes, check_shape, is_finite_number, is_int, warn_dropped
from voxfield.io.volume import Volume, unit_factor

SUFFIXES = (".mrc.gz", ".map.gz", ".ccp4.gz", ".mrcs.gz", ".mrc.bz2", ".map.bz2", ".ccp4.bz2",
            ".mrcs.bz2", ".mrc", ".map", ".ccp4", ".mrcs", ".rec", ".st", ".ali")

HEADER_BYTES = 1024
_MAP_ID_OFFSET = 208
_LETTER = {1: "X", 2: "Y", 3: "Z"}
_NUMBER = {"X": 1, "Y": 2, "Z": 3}
_KNOWN_MODES = {0: "int8", 1: "int16", 2: "float32", 3: "complex int16", 4: "complex64",
                6: "uint16", 12: "float16", 101: "4-bit packed"}
#: Compressed files declaring more than this many bytes are measured before being read,
#: so that a corrupt header cannot make mrcfile allocate terabytes.
_MEASURE_ABOVE = 1 << 28
#: dtypes written as they are (MRC modes 0, 1, 2, 4, 6, 12).
_NATIVE_DTYPES = {np.dtype(t) for t in ("int8", "int16", "uint16", "float32", "float16", "complex64")}


# ---------------------------------------------------------------------------- detection
def sniff(head: bytes, path: Path) -> bool:
    """True for content with the ``MAP`` stamp at byte 208, or (old CCP4 / RELION files
    without the stamp) a plausible header whose size matches an uncompressed file."""
    if len(head) >= _MAP_ID_OFFSET + 3 and head[_MAP_ID_OFFSET:_MAP_ID_OFFSET + 3] == b"MAP":
        return True
    if len(head) < HEADER_BYTES or _compression_of(path) is not None:
        return False
    for order in "<>":
        nx, ny, nz, mode = np.frombuffer(head[:16], dtype=f"{order}i4").tolist()
        mapcrs = np.frombuffer(head[64:76], dtype=f"{order}i4").tolist()
        nsymbt = int(np.frombuffer(head[92:96], dtype=f"{order}i4")[0])
        if mode not in _KNOWN_MODES or mode in (3, 101) or min(nx, ny, nz) < 1 or nsymbt < 0:
            continue
        if sorted(mapcrs) != [1, 2, 3]:
            continue
        size = HEADER_BYTES + nsymbt + nx * ny * nz * mrcutils.dtype_from_mode(mode).itemsize
        try:
            if path.stat().st_size == size:
                return True
        except OSError:
            return False
    return False


def _compression_of(path: Path) -> str | None:
    """``"gzip"``, ``"bzip2"`` or None, from the file's first bytes."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
    except OSError:
        return None
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def _strip_compression_suffix(name: str) -> str:
    name = name.lower()
    for suf in (".gz", ".bz2"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


# ---------------------------------------------------------------------------- reading
def read(path: str | os.PathLike[str], *, stack: bool | None = None, permissive: bool = True) -> Volume:
    """Read an MRC/CCP4 map or MRCS stack as a :class:`Volume` in canonical axis order.

    Parameters
    ----------
    path:
        ``.mrc``, ``.map``, ``.ccp4``, ``.mrcs`` (optionally ``.gz``/``.bz2``)...
    stack:
        Force an image stack (``True``: axes ``"IYX"``) or a single volume (``False``:
        ``"ZYX"``, a volume stack is read as one volume of all its sections). ``None``
        decides from the suffix and header (see the module docstring).
    permissive:
        Read files with slightly broken headers (missing map ID, unknown machine stamp),
        emitting one warning; with ``False`` such files raise :class:`FormatError`.

    Raises
    ------
    FormatError
        Empty, truncated or corrupt file, unsupported mode.
    DataError
        Zero, negative or absurd dimensions in the header.
    """
    p = Path(path)
    problems: list[str] = []
    _check_nsymbt(p)
    header, ext = _read_header(p, permissive, problems)
    fields = _fields_from_header(header, ext)
    shape = _check_header(fields, p)
    data = _read_data(p, fields, shape, permissive, problems)
    if problems:
        warnings.warn(f"{p}: {'; '.join(dict.fromkeys(problems))}; read permissively", UserWarning,
                      stacklevel=2)
    kind = _stack_kind(fields, p, stack)
    canonical, axes = _to_canonical(data, fields, kind)
    fields.update(
        compression=_compression_of(p),
        stack=kind,
        axes=axes,
        shape=list(canonical.shape),
        data_crc32=_crc32(canonical),
    )
    spacing, origin, unit = _frame(fields, axes)
    return Volume(canonical, axes, spacing, unit, origin, meta={"format": "mrc", "mrc": fields})


class _CompressedStreamError(FormatError):
    """The gzip/bzip2 stream of a compressed MRC file is cut or corrupt."""


def _open_quietly(p: Path, permissive: bool, problems: list[str], **kwargs: Any) -> Any:
    """``mrcfile.open`` with its RuntimeWarnings collected into ``problems``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = mrcfile.open(p, mode="r", permissive=True, **kwargs)
        except (EOFError, zlib.error) as exc:
            raise _CompressedStreamError(f"truncated or corrupt compressed MRC file ({exc})", p) from None
        except OSError as exc:
            if _compression_of(p) is not None and p.is_file():
                raise _CompressedStreamError(f"corrupt compressed MRC file ({exc})", p) from None
            raise FormatError(f"cannot read MRC file ({exc})", p) from None
        except ValueError as exc:
            raise FormatError(_short(exc), p) from None
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            problems.append(str(w.message))
        else:
            warnings.warn(w.message, w.category, stacklevel=3)
    if problems and not permissive:
        mrc.close()
        detail = "; ".join(problems)
        raise FormatError(f"invalid MRC header: {detail} (use permissive=True to read anyway)", p)
    return mrc


def _short(exc: BaseException) -> str:
    msg = str(exc)
    if "enough bytes for MRC header" in msg:
        return f"too short for an MRC header ({HEADER_BYTES} bytes): truncated or not an MRC file"
    return f"cannot read MRC file: {msg}"


def _raw_nsymbt(head: bytes) -> int:
    """The extended header size (word 24) of a raw 1024-byte header, in the byte order of
    its machine stamp (or, without a usable stamp, the order that gives a known mode)."""
    stamp = head[212:214]
    if stamp in (b"\x44\x44", b"\x44\x41"):
        order = "<"
    elif stamp == b"\x11\x11":
        order = ">"
    else:
        order = "<" if int(np.frombuffer(head[12:16], dtype="<i4")[0]) in _KNOWN_MODES else ">"
    return int(np.frombuffer(head[92:96], dtype=f"{order}i4")[0])


def _check_nsymbt(p: Path) -> None:
    """Refuse a header whose extended header size is negative or larger than the file,
    before mrcfile would try to allocate and read it."""
    compression = _compression_of(p)
    try:
        if compression is None:
            with open(p, "rb") as fh:
                head = fh.read(HEADER_BYTES)
        else:
            opener = gzip.open if compression == "gzip" else bz2.open
            with opener(p, "rb") as fh:
                head = fh.read(HEADER_BYTES)
    except (OSError, EOFError, zlib.error):
        return  # mrcfile reports unreadable and cut files with its own words
    if len(head) < HEADER_BYTES:
        return
    nsymbt = _raw_nsymbt(head)
    if nsymbt < 0:
        raise FormatError(f"header declares a negative extended header size ({nsymbt}): corrupt header", p)
    if compression is None:
        have = p.stat().st_size
    elif nsymbt > _MEASURE_ABOVE:
        have = _decompressed_size(p, compression, HEADER_BYTES + nsymbt)
    else:
        return
    if HEADER_BYTES + nsymbt > have:
        raise FormatError(f"truncated: header declares a {nsymbt}-byte extended header that the file does not "
                          "hold", p)


def _read_header(p: Path, permissive: bool, problems: list[str]) -> tuple[Any, bytes]:
    """The header record array and the extended header bytes."""
    if p.is_file() and p.stat().st_size == 0:
        raise FormatError("file is empty", p)
    mrc = _open_quietly(p, permissive, problems, header_only=True)
    try:
        header = mrc.header.copy()
        ext = mrc.extended_header
        ext_bytes = b"" if ext is None else bytes(np.ascontiguousarray(ext).tobytes())
        if ext is None:
            raise FormatError(
                f"truncated: header declares a {int(header.nsymbt)}-byte extended header that the file "
                "does not hold", p)
    finally:
        mrc.close()
    return header, ext_bytes


def _fields_from_header(h: Any, ext: bytes) -> dict[str, Any]:
    """The header as a dict of JSON types (plus bytes)."""
    nlabl = max(0, min(int(h.nlabl), 10))
    fields: dict[str, Any] = {
        "mode": int(h.mode),
        "nx": int(h.nx), "ny": int(h.ny), "nz": int(h.nz),
        "nxstart": int(h.nxstart), "nystart": int(h.nystart), "nzstart": int(h.nzstart),
        "mx": int(h.mx), "my": int(h.my), "mz": int(h.mz),
        "cella": [float(h.cella.x), float(h.cella.y), float(h.cella.z)],
        "cellb": [float(h.cellb.alpha), float(h.cellb.beta), float(h.cellb.gamma)],
        "mapc": int(h.mapc), "mapr": int(h.mapr), "maps": int(h.maps),
        "ispg": int(h.ispg),
        "origin": [float(h.origin.x), float(h.origin.y), float(h.origin.z)],
        "labels": [bytes(h.label[i]).decode("latin-1") for i in range(nlabl)],
        "nversion": int(h.nversion),
        "exttyp": bytes(h.exttyp).decode("latin-1"),
        "extended_header": ext,
        "dmin": float(h.dmin), "dmax": float(h.dmax), "dmean": float(h.dmean), "rms": float(h.rms),
        "byte_order": _byte_order(h.mode.dtype),
    }
    unused = [bytes(h.label[i]) for i in range(nlabl, 10)]
    if unused and all(u == b" " * 80 for u in unused):
        fields["label_fill"] = " "  # CCP4/EMDB files pad unused labels with blanks
    for name in ("extra1", "extra2"):
        raw = bytes(h[name])
        if raw.strip(b"\0"):
            fields[name] = raw
    return fields


def _byte_order(dtype: np.dtype) -> str:
    """``"<"`` or ``">"`` (native order spelled out)."""
    if dtype.byteorder in "<>":
        return dtype.byteorder
    return "<" if np.little_endian else ">"


def _check_header(f: dict[str, Any], p: Path) -> tuple[int, ...]:
    """Validate mode and dimensions; return the data shape mrcfile will use."""
    mode = f["mode"]
    if mode not in _KNOWN_MODES:
        raise FormatError(f"unknown MRC mode {mode} (supported: 0, 1, 2, 4, 6, 12): corrupt header?", p)
    if mode in (3, 101):
        raise FormatError(f"MRC mode {mode} ({_KNOWN_MODES[mode]}) is not supported", p)
    nx, ny, nz = f["nx"], f["ny"], f["nz"]
    if min(nx, ny, nz) <= 0:
        raise DataError(f"header declares zero or negative dimensions nx={nx}, ny={ny}, nz={nz}", p)
    if mrcutils.spacegroup_is_volume_stack(f["ispg"]):
        mz = f["mz"]
        if mz <= 0 or nz % mz:
            raise FormatError(f"volume stack header: nz={nz} is not a multiple of mz={mz}", p)
        shape: tuple[int, ...] = (nz // mz, mz, ny, nx)
    else:
        shape = (nz, ny, nx)
    check_shape(shape, p)
    return shape


def _declared_bytes(f: dict[str, Any], shape: tuple[int, ...]) -> int:
    itemsize = mrcutils.dtype_from_mode(f["mode"]).itemsize
    return HEADER_BYTES + len(f["extended_header"]) + math.prod(shape) * itemsize


def _decompressed_size(p: Path, kind: str, limit: int) -> int:
    """Bytes in a compressed file's payload, read up to ``limit`` (streamed, not stored)."""
    opener = gzip.open if kind == "gzip" else bz2.open
    total = 0
    try:
        with opener(p, "rb") as fh:
            while total < limit:
                chunk = fh.read1(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        pass
    return total


def _read_data(p: Path, f: dict[str, Any], shape: tuple[int, ...], permissive: bool,
               problems: list[str]) -> np.ndarray:
    """The data block, after checking the file is as long as the header declares."""
    declared = _declared_bytes(f, shape)
    compression = _compression_of(p)
    if compression is None:
        actual = p.stat().st_size
    elif declared > _MEASURE_ABOVE:
        actual = _decompressed_size(p, compression, declared)
    else:
        actual = None
    if actual is not None and actual < declared:
        raise FormatError(f"truncated: header declares {declared} bytes, file has {actual}", p)
    check_nbytes(shape, mrcutils.dtype_from_mode(f["mode"]).itemsize, p)
    extra: list[str] = []
    try:
        mrc = _open_quietly(p, permissive, extra)
    except _CompressedStreamError:
        actual = _decompressed_size(p, compression or "gzip", declared)
        if actual >= declared:
            raise
        raise FormatError(f"truncated: header declares {declared} bytes, the {compression} stream ends "
                          f"after {actual}", p) from None
    try:
        data = mrc.data
    finally:
        mrc.close()
    if data is None:
        short = [m for m in extra if "Expected" in m]
        detail = short[0] if short else "; ".join(extra) or "no data block"
        raise FormatError(f"truncated: header declares {declared} bytes ({detail})", p)
    problems.extend(m for m in extra if m not in problems)
    return data


# ---------------------------------------------------------------------------- axes
def _stack_kind(f: dict[str, Any], p: Path, stack: bool | None) -> str:
    """``"volume"``, ``"image_stack"`` or ``"volume_stack"`` (rule in the module docstring)."""
    volume_stack = mrcutils.spacegroup_is_volume_stack(f["ispg"])
    if stack is False:
        return "volume"
    if volume_stack:
        return "volume_stack"
    if stack is True:
        return "image_stack"
    if _strip_compression_suffix(p.name).endswith(".mrcs"):
        return "image_stack"
    if f["ispg"] == 0 and f["nz"] > 1 and f["mz"] == 1:
        return "image_stack"
    return "volume"


def _file_letters(f: dict[str, Any]) -> str | None:
    """Axis letters of the (section, row, column) file axes, or None if mapc/mapr/maps
    are not a permutation of 1, 2, 3."""
    order = (f["maps"], f["mapr"], f["mapc"])
    if sorted(order) != [1, 2, 3]:
        return None
    return "".join(_LETTER[n] for n in order)


def _to_canonical(data: np.ndarray, f: dict[str, Any], kind: str) -> tuple[np.ndarray, str]:
    """Transpose the file-order array to canonical axes; return (array, axes)."""
    letters = _file_letters(f) or "ZYX"
    if kind == "volume_stack":
        perm = [letters.index(c) + 1 for c in "ZYX"]
        out, axes = data.transpose([0, *perm]), "IZYX"
    else:
        vol = data.reshape(f["nz"], f["ny"], f["nx"])
        if kind == "image_stack":
            out = vol.transpose(0, 2, 1) if letters[1:] == "XY" else vol
            axes = "IYX"
        else:
            out, axes = vol.transpose([letters.index(c) for c in "ZYX"]), "ZYX"
            if data.ndim == 2 and out.shape[0] == 1:
                out, axes = out[0], "YX"
    return _native(out), axes


def _from_canonical(data: np.ndarray, axes: str, f: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`_to_canonical` for writing."""
    letters = _file_letters(f) or "ZYX"
    if axes == "IZYX":
        return data.transpose([0, *("ZYX".index(c) + 1 for c in letters)])
    if axes == "IYX":
        return data.transpose(0, 2, 1) if letters[1:] == "XY" else data
    if axes == "ZYX":
        return data.transpose(["ZYX".index(c) for c in letters])
    # "YX", a single image: only a swapped row/column order applies
    return data.T if letters == "ZXY" else data


def _native(a: np.ndarray) -> np.ndarray:
    """C-contiguous, native byte order, writable."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return a


def _crc32(a: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B")) & 0xFFFFFFFF


# ---------------------------------------------------------------------------- frame
def _voxel_xyz(f: dict[str, Any]) -> dict[str, float]:
    """Voxel size along X, Y, Z from cell and sampling (0 where undefined)."""
    out = {}
    for letter, cell, m in zip("XYZ", f["cella"], (f["mx"], f["my"], f["mz"])):
        v = cell / m if m > 0 else 0.0
        out[letter] = float(v) if math.isfinite(v) and v > 0 else 0.0
    return out


def _frame(f: dict[str, Any], axes: str) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """(spacing, origin, unit) of the spatial axes in ``axes`` from header fields."""
    spatial = [a for a in axes if a in "ZYX"]
    vs = _voxel_xyz(f)
    known = [vs[a] for a in spatial if vs[a] > 0]
    unit = "Å" if known else "px"
    eff = {a: (vs[a] if vs[a] > 0 else 1.0) for a in "XYZ"}
    spacing = tuple(eff[a] for a in spatial)
    raw_origin = dict(zip("XYZ", f["origin"]))
    if any(v != 0 and math.isfinite(v) for v in raw_origin.values()):
        origin = tuple(raw_origin[a] if math.isfinite(raw_origin[a]) else 0.0 for a in spatial)
    else:
        letters = _file_letters(f) or "ZYX"
        # nxstart/nystart/nzstart belong to the column/row/section axes.
        start = {letters[2]: f["nxstart"], letters[1]: f["nystart"], letters[0]: f["nzstart"]}
        origin = tuple(start[a] * eff[a] for a in spatial)
    return spacing, origin, unit


# ---------------------------------------------------------------------------- writing
def write(vol: Volume, path: str | os.PathLike[str]) -> None:
    """Write ``vol`` as MRC2014; compression from the suffix (``.gz`` gzip, ``.bz2`` bzip2).

    Axes must reduce to ``YX``, ``ZYX``, ``IYX``/``QYX`` (image stack) or ``IZYX``/``QZYX``
    (volume stack) once length-1 T/C/S axes are dropped. Spacing and origin are converted
    to Å (a ``"px"`` volume with unit spacing gets a zero cell, i.e. unknown voxel size).
    Header fields of ``vol.meta["mrc"]`` (axis order, nstart, cell and sampling, ispg,
    labels, extended header, exttyp, nversion, statistics) are restored when its recorded
    shape and axes match the data; the statistics only when the data are unchanged. An
    image stack written under a name other than ``.mrcs`` gets ispg 0 and mz 1, so that it
    is read back as a stack.

    dtypes: int8, int16, uint16, float32, float16 and complex64 are written as they are;
    uint8 as mode 6 (uint16) and bool as int8 (values exact); other integers as int16 or
    uint16 when the values fit, else float32; float64 as float32 (warning when values change).

    ``vol.meta["mrc"]`` may come from an untrusted file (a forged ``.vxf`` header): a
    field of the wrong type or out of range for its 32-bit header word (see
    :data:`_FIELD_CHECKS`) is dropped with one warning naming it and replaced by the value a
    fresh header would have; the data and every valid field are still written. An axis
    order ``mapc/mapr/maps`` that is not a permutation of 1, 2, 3 is reset to 1, 2, 3, and
    the statistics are recomputed unless all four recorded ones are valid.
    """
    p = Path(path)
    data, axes = _squeeze_for_mrc(vol, p)
    data = _to_mrc_dtype(data, p)
    check_shape(tuple(data.shape), p)
    meta = _clean_fields(vol.meta.get("mrc"), axes, tuple(data.shape))
    fits = bool(meta) and meta.get("axes") == axes and list(meta.get("shape", [])) == list(data.shape)
    fields = {**_fresh_fields(data.shape, axes, meta), **meta} if fits else _fresh_fields(data.shape, axes, meta)
    if fits:
        fields = _consistent_fields(fields, axes, tuple(data.shape))
    if axes == "IYX" and not _strip_compression_suffix(p.name).endswith(".mrcs"):
        fields = _mark_as_stack(fields)
    fields = _reconcile_frame(fields, vol, axes, data.shape)
    file_data = np.ascontiguousarray(_from_canonical(data, axes, fields))
    compression = {"gz": "gzip", "bz2": "bzip2"}.get(p.name.lower().rsplit(".", 1)[-1])
    with mrcfile.new(p, compression=compression, overwrite=True) as mrc:
        if axes in ("IYX", "YX"):
            mrc.header.ispg = 0
        elif axes == "IZYX":
            mrc.header.ispg = fields["ispg"] if mrcutils.spacegroup_is_volume_stack(fields["ispg"]) else 401
        mrc.set_data(file_data)
        _apply_fields(mrc, fields, fits)
        stats = ("dmin", "dmax", "dmean", "rms")
        if fits and meta.get("data_crc32") == _crc32(data) and all(k in meta for k in stats):
            for k in stats:
                setattr(mrc.header, k, meta[k])
        else:
            mrc.update_header_stats()


_I32 = (-(2**31), 2**31 - 1)
_F32_MAX = float(np.finfo(np.float32).max)


def _f32_triple(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3 and
            all(is_finite_number(v, -_F32_MAX, _F32_MAX) for v in value))


def _f32_stat(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return True
    return is_finite_number(value, -_F32_MAX, _F32_MAX)


def _latin1_text(value: Any, max_len: int) -> bool:
    if not isinstance(value, str) or len(value) > max_len:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


#: Fields of ``meta["mrc"]`` the writer uses, and the check each value must pass (a value
#: that fails is dropped with a warning; see :func:`write`).
_FIELD_CHECKS: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: is_int(v, *_I32), "not a 32-bit integer") for k in ("nxstart", "nystart", "nzstart", "nversion")},
    **{k: (lambda v: is_int(v, 0, _I32[1]), "not a non-negative 32-bit integer") for k in ("mx", "my", "mz")},
    **{k: (lambda v: is_int(v, 1, 3), "not 1, 2 or 3") for k in ("mapc", "mapr", "maps")},
    "ispg": (lambda v: is_int(v, 0, 630), "not a space group number (0 to 630)"),
    "cella": (_f32_triple, "not three finite 32-bit floats"),
    "cellb": (_f32_triple, "not three finite 32-bit floats"),
    "origin": (_f32_triple, "not three finite 32-bit floats"),
    **{k: (_f32_stat, "not a 32-bit float") for k in ("dmin", "dmax", "dmean", "rms")},
    "labels": (lambda v: isinstance(v, list) and all(_latin1_text(x, 1 << 16) for x in v), "not a list of text"),
    "label_fill": (lambda v: isinstance(v, str), "not text"),
    "exttyp": (lambda v: _latin1_text(v, 4), "not a 4-character code"),
    "extended_header": (lambda v: isinstance(v, (bytes, bytearray)) and len(v) < 2**31, "not bytes"),
    "data_crc32": (lambda v: is_int(v, 0, 2**32 - 1), "not a CRC-32"),
    "axes": (lambda v: isinstance(v, str), "not text"),
    "shape": (lambda v: isinstance(v, list) and all(is_int(x, 0) for x in v), "not a list of sizes"),
}


def _clean_fields(meta: Any, axes: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """``meta["mrc"]`` without the fields that cannot go into a header (one warning each)."""
    if not isinstance(meta, dict):
        if meta is not None:
            warn_dropped("meta", "mrc", meta, "not a map of MRC header fields")
        return {}
    out = dict(meta)
    for key, (ok, why) in _FIELD_CHECKS.items():
        if key in out and not ok(out[key]):
            warn_dropped("mrc", key, out.pop(key), why)
    return out


def _consistent_fields(f: dict[str, Any], axes: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Fix header fields that are each valid but together would not describe the data:
    an axis order that is no permutation, a volume-stack space group on a single volume, a
    volume stack whose ``mz`` is not its volumes' depth."""
    f = dict(f)
    if _file_letters(f) is None:
        warn_dropped("mrc", "mapc/mapr/maps", [f["mapc"], f["mapr"], f["maps"]], "not a permutation of 1, 2, 3")
        f["mapc"], f["mapr"], f["maps"] = 1, 2, 3
    if axes != "IZYX" and mrcutils.spacegroup_is_volume_stack(f["ispg"]):
        warn_dropped("mrc", "ispg", f["ispg"], f"a volume-stack space group for {axes} data")
        f["ispg"] = 1 if axes == "ZYX" else 0
    if axes == "IZYX" and not mrcutils.spacegroup_is_volume_stack(f["ispg"]):
        warn_dropped("mrc", "ispg", f["ispg"], "not a volume-stack space group (401 to 630) for IZYX data")
        f["ispg"] = 401
    if axes == "IZYX" and f["mz"] != shape[1]:
        warn_dropped("mrc", "mz", f["mz"], f"a volume stack's mz must be its volumes' depth {shape[1]}")
        f["mz"] = shape[1]
    return f


def _squeeze_for_mrc(vol: Volume, p: Path) -> tuple[np.ndarray, str]:
    """Drop length-1 T/C/S axes, map Q to I; refuse axes MRC cannot hold."""
    data, axes = vol.data, vol.axes
    drop = [i for i, a in enumerate(axes) if a in "TCS" and data.shape[i] == 1]
    if drop:
        data = data.reshape([s for i, s in enumerate(data.shape) if i not in drop])
        axes = "".join(a for i, a in enumerate(axes) if i not in drop)
    axes = axes.replace("Q", "I")
    if axes not in ("YX", "ZYX", "IYX", "IZYX"):
        raise DataError(
            f"MRC holds YX, ZYX, IYX (image stack) or IZYX (volume stack); axes {vol.axes!r} "
            f"with shape {vol.shape} do not fit: write .tif/.ome.tif or .ome.zarr instead", p)
    return data, axes


def _to_mrc_dtype(data: np.ndarray, p: Path) -> np.ndarray:
    """Cast ``data`` to a dtype mrcfile writes, keeping values exactly where possible."""
    dt = data.dtype
    if dt.newbyteorder("=") in _NATIVE_DTYPES:
        return data.astype(dt.newbyteorder("="), copy=False)
    if dt == np.uint8:
        return data.astype(np.uint16)
    if dt == np.bool_:
        return data.astype(np.int8)
    if dt.kind in "iu":
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for target in (np.int16, np.uint16):
            info = np.iinfo(target)
            if info.min <= lo and hi <= info.max:
                return data.astype(target)
        if max(abs(lo), abs(hi)) <= 2**24:
            return data.astype(np.float32)
        warnings.warn(f"{p}: {dt.name} values up to {max(abs(lo), abs(hi))} do not fit an MRC mode exactly; "
                      "written as float32 (rounded)", UserWarning, stacklevel=3)
        return data.astype(np.float32)
    if dt.kind == "f":
        out = data.astype(np.float32)
        same = np.array_equal(out.astype(dt), data, equal_nan=True)
        if not same:
            warnings.warn(f"{p}: {dt.name} data written as float32 (MRC mode 2): values rounded",
                          UserWarning, stacklevel=3)
        return out
    if dt.kind == "c":
        out = data.astype(np.complex64)
        if not np.array_equal(out.astype(dt), data, equal_nan=True):
            warnings.warn(f"{p}: {dt.name} data written as complex64 (MRC mode 4): values rounded",
                          UserWarning, stacklevel=3)
        return out
    raise DataError(f"data type {dt} cannot be written as MRC (use a numeric array)", p)


def _mark_as_stack(f: dict[str, Any]) -> dict[str, Any]:
    """ispg 0 and mz 1 (same Z voxel size), so that a stack written under a name other than
    ``.mrcs`` is read back as a stack (rule 3 of the module docstring)."""
    f = dict(f)
    if f.get("mz", 1) > 0 and f["cella"][2] > 0:
        f["cella"] = [*f["cella"][:2], float(np.float32(f["cella"][2] / f["mz"]))]
    f["ispg"], f["mz"] = 0, 1
    return f


def _fresh_fields(shape: tuple[int, ...], axes: str, old: dict[str, Any] | None) -> dict[str, Any]:
    """Header fields for data without a matching ``meta["mrc"]`` (labels are kept)."""
    nx, ny = shape[-1], shape[-2]
    if axes == "IZYX":
        nz, mz = shape[0] * shape[1], shape[1]
    elif axes == "ZYX":
        nz = mz = shape[0]
    else:  # a single image, or an image stack (mz = 1 as in MRC2014 / mrcfile)
        nz, mz = (shape[0] if axes == "IYX" else 1), 1
    fields: dict[str, Any] = {
        "nx": nx, "ny": ny, "nz": nz, "nxstart": 0, "nystart": 0, "nzstart": 0,
        "mx": nx, "my": ny, "mz": mz, "cella": [0.0, 0.0, 0.0], "cellb": [90.0, 90.0, 90.0],
        "mapc": 1, "mapr": 2, "maps": 3, "ispg": {"ZYX": 1, "IZYX": 401}.get(axes, 0),
        "origin": [0.0, 0.0, 0.0],
    }
    if old and isinstance(old.get("labels"), list):
        fields["labels"] = list(old["labels"])
    return fields


def _frame_matches(a: tuple[float, ...], b: tuple[float, ...], scale: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 * max(abs(x), abs(y), scale) for x, y in zip(a, b))


def _reconcile_frame(f: dict[str, Any], vol: Volume, axes: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Adjust cell and origin so that the header describes ``vol``'s spacing and origin."""
    f = dict(f)
    spatial = [a for a in axes if a in "ZYX"]
    vsp = dict(zip(vol.spatial_axes, vol.spacing))
    vor = dict(zip(vol.spatial_axes, vol.origin))
    unit = vol.unit if vol.unit in ("Å", "nm", "µm", "mm", "m") else "px"
    factor = unit_factor(unit, "Å") if unit != "px" else 1.0
    want_sp = tuple(vsp.get(a, 1.0) * factor for a in spatial)
    want_or = tuple(vor.get(a, 0.0) * factor for a in spatial)
    have_sp, _, have_unit = _frame(f, axes)
    px_unknown = unit == "px" and all(s == 1.0 for s in want_sp)
    if have_unit != ("px" if px_unknown else "Å") or not _frame_matches(have_sp, want_sp, 0.0):
        cella = list(f["cella"])
        m = {"X": "mx", "Y": "my", "Z": "mz"}
        sizes = dict(zip(axes, shape))
        for i, letter in enumerate("XYZ"):
            if letter not in spatial:
                if letter == "Z" and not px_unknown and cella[2] <= 0:
                    f["mz"] = f["mz"] if f["mz"] > 0 else 1
                    cella[2] = (want_sp[spatial.index("X")] if "X" in spatial else 1.0) * f["mz"]
                continue
            if f[m[letter]] <= 0:
                f[m[letter]] = sizes[letter]
            cella[i] = 0.0 if px_unknown else want_sp[spatial.index(letter)] * f[m[letter]]
        f["cella"] = [float(np.float32(c)) for c in cella]
    _, have_or, _ = _frame(f, axes)
    scale = max(want_sp) if want_sp else 1.0
    if not _frame_matches(have_or, want_or, 1e-3 * scale):
        by_letter = dict(zip(spatial, want_or))
        f["origin"] = [float(np.float32(by_letter.get(a, 0.0))) for a in "XYZ"]
        f["nxstart"] = f["nystart"] = f["nzstart"] = 0
    return f


def _apply_fields(mrc: Any, f: dict[str, Any], restore_all: bool) -> None:
    """Write header fields ``f`` (from meta or fresh) into an open mrcfile object."""
    h = mrc.header
    for k in ("nxstart", "nystart", "nzstart", "mx", "my", "mz", "mapc", "mapr", "maps", "ispg"):
        setattr(h, k, int(f[k]))
    h.cella = tuple(f["cella"])
    h.cellb = tuple(f["cellb"])
    h.origin = tuple(f["origin"])
    if "labels" in f:
        labels = [str(s) for s in f["labels"]][:10]
        fill = (" " * 80 if restore_all and f.get("label_fill") == " " else "").encode()
        for i in range(10):
            h.label[i] = labels[i].encode("latin-1", "replace")[:80] if i < len(labels) else fill
        h.nlabl = len(labels)
    if not restore_all:
        return
    ext = f.get("extended_header") or b""
    if ext:
        mrc.set_extended_header(np.frombuffer(bytes(ext), dtype="V1"))
    h.exttyp = str(f.get("exttyp", "")).encode("latin-1")[:4]
    h.nversion = int(f.get("nversion", 20141))
    for name, size in (("extra1", 8), ("extra2", 84)):
        raw = f.get(name)
        if isinstance(raw, (bytes, bytearray)) and len(raw) == size:
            h[name] = np.frombuffer(bytes(raw), dtype=f"V{size}")[0]
