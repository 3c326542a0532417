"""Inputs of any size, read region by region: OME-Zarr, TIFF (BigTIFF, OME-TIFF), MRC,
HDF5 and ``.npy``.

A :class:`Source` is small and picklable (a path and a frame, no open file): every Dask
task opens the file itself and reads only its region. Regions are given and returned in
NGFF axis order (T, C, Z, Y, X); the file's own order is mapped on reading. TIFF and MRC
files and ``.npy`` are memory-mapped where their layout allows it (uncompressed,
contiguous); compressed or tiled TIFFs are read through tifffile's zarr view, which
decodes only the tiles a region touches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import DataError, FormatError
from voxfield.io.validate import describe_exception, one_line

#: NGFF axis order; voxfield's channel-like letters (C, I, Q, S) all map to C.
NGFF_ORDER = "TCZYX"


@dataclass(frozen=True)
class Source:
    """One input array, read by region. ``letters``/``shape``: in NGFF order; ``perm``:
    file axis of each NGFF axis; ``spacing``/``origin``: by spatial letter; ``unit``:
    of the spatial axes; ``channel_names`` and ``omero`` when the input had them."""

    kind: str
    path: str
    inner: str | int | None
    file_shape: tuple[int, ...]
    dtype: str
    letters: str
    perm: tuple[int, ...]
    spacing: dict[str, float]
    origin: dict[str, float]
    unit: str
    name: str
    channel_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.file_shape[i] for i in self.perm)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        """The voxels of ``region`` (slices in NGFF order), a new native-endian array."""
        file_region: list[slice] = [slice(None)] * len(self.file_shape)
        for k, ax in enumerate(self.perm):
            file_region[ax] = region[k]
        try:
            block = np.asarray(_read_file_region(self, tuple(file_region)))
        except (FormatError, DataError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - any reader on a damaged file
            raise FormatError(f"cannot read a region ({one_line(describe_exception(exc))})", Path(self.path)) from None
        out = np.transpose(block, self.perm)
        out = np.ascontiguousarray(out, dtype=np.dtype(self.dtype).newbyteorder("="))
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            raise DataError("the data hold NaN or infinite values (in a region at "
                            f"{tuple(s.start for s in region)})", Path(self.path))
        return out


def _read_file_region(src: Source, region: tuple[slice, ...]) -> Any:
    p = Path(src.path)
    if src.kind == "npy":
        return np.load(p, mmap_mode="r")[region]
    if src.kind == "mrc":
        import mrcfile

        with mrcfile.mmap(p, mode="r", permissive=True) as m:
            data = m.data.reshape(src.file_shape)
            return np.array(data[region])
    if src.kind == "hdf5":
        import h5py

        with h5py.File(p, "r") as fh:
            return fh[str(src.inner)][region]
    if src.kind == "tiff":
        import tifffile

        try:
            mm = tifffile.memmap(p, series=int(src.inner or 0), mode="r")
        except ValueError:
            mm = None
        if mm is not None and tuple(mm.shape) == src.file_shape:
            return np.array(mm[region])
        import zarr

        with tifffile.TiffFile(p) as tf:
            store = tf.series[int(src.inner or 0)].aszarr(level=0)
            try:
                z = zarr.open_array(store, mode="r")
                return z[region]
            finally:
                store.close()
    if src.kind == "zarr":
        import zarr

        return zarr.open_array(store=str(p), path=str(src.inner or ""), mode="r")[region]
    raise FormatError(f"no region reader for {src.kind}", p)


def _ngff_perm(letters: str, path: Path) -> tuple[str, tuple[int, ...]]:
    """(NGFF letters, file axis of each) for voxfield letters ``letters``."""
    chan = [a for a in letters if a in "CIQS"]
    if len(chan) > 1:
        raise DataError(f"axes {letters!r} have two channel-like axes ({''.join(chan)}); OME-Zarr holds one: "
                        "give --axes to name them (e.g. TZYX)", path)
    if "Y" not in letters or "X" not in letters:
        raise DataError(f"axes {letters!r}: OME-Zarr needs Y and X axes (give --axes)", path)
    order = [a for a in "T" + "".join(chan) + "ZYX" if a in letters]
    ngff = "".join(order).translate(str.maketrans("IQS", "CCC"))
    return ngff, tuple(letters.index(a) for a in order)


def open_source(path: str | os.PathLike[str], *, axes: str | None = None, key: str | None = None,
                series: int = 0) -> Source:
    """Open ``path`` for region reads without loading it.

    ``axes``: the file's axis letters, overriding what its header says (``"ZYX"`` for a
    plain TIFF stack whose pages are Z sections; tifffile calls them ``I``). A single ``I``
    axis with no Z is taken as Z, the common case of a light-sheet or confocal stack.
    ``key``: the HDF5 dataset; ``series``: the TIFF series.

    Raises :class:`FormatError` for an unknown or damaged file, a zarr store without OME
    metadata, or ragged chunks; :class:`DataError` for axes OME-Zarr cannot hold."""
    from voxfield.io.registry import detect_format

    p = Path(path)
    if not p.exists():
        raise FormatError("no such file or folder", p)
    fmt = _format_of(p, detect_format)
    if fmt == "zarr":
        src = _zarr_source(p)
    elif fmt == "tiff":
        from voxfield.io import tiff

        src = _from_header(tiff.read_header(p, series=series), p, "tiff", series)
    elif fmt == "hdf5":
        from voxfield.io import hdf5

        hv, name = hdf5.read_header(p, key=key)
        src = _from_header(hv, p, "hdf5", name)
    elif fmt == "mrc":
        src = _mrc_source(p)
    elif fmt == "npy":
        src = _npy_source(p)
    else:
        raise FormatError(f"{fmt} files cannot be compressed to OME-Zarr chunk by chunk (use OME-Zarr, TIFF, "
                          "MRC, HDF5 or .npy)", p)
    if axes is not None:
        src = _with_axes(src, axes.upper(), p)
    else:
        fl = src.meta.get("file_letters", "")
        stack = [a for a in fl if a in "IQ"]
        if len(stack) == 1 and "Z" not in fl and "C" not in fl and "S" not in fl:
            src = _with_axes(src, fl.replace(stack[0], "Z"), p)
    return src


def _format_of(p: Path, detect: Any) -> str:
    if p.is_dir():
        return "zarr"
    return str(detect(p))


def _frame(letters: str, hv: Any) -> tuple[dict[str, float], dict[str, float]]:
    spacing = {a: float(hv.spacing_of(a)) for a in letters if a in "ZYX"}
    origin = {a: float(hv.origin_of(a)) for a in letters if a in "ZYX"}
    return spacing, origin


def _from_header(hv: Any, p: Path, kind: str, inner: str | int | None) -> Source:
    ngff, perm = _ngff_perm(hv.axes, p)
    spacing, origin = _frame(hv.axes, hv)
    meta = {"file_letters": hv.axes, "format": kind}
    return Source(kind, str(p.resolve()), inner, tuple(int(n) for n in hv.data.shape), hv.data.dtype.str, ngff, perm,
                  spacing, origin, hv.unit, p.name, None, meta)


def _with_axes(src: Source, axes: str, p: Path) -> Source:
    from voxfield.io.volume import AXIS_LETTERS

    if len(axes) != len(src.file_shape) or len(set(axes)) != len(axes) or any(a not in AXIS_LETTERS for a in axes):
        raise DataError(f"--axes {axes!r} does not fit the file's {len(src.file_shape)} axes "
                        f"{src.file_shape} (letters from {''.join(AXIS_LETTERS)}, each once)", p)
    ngff, perm = _ngff_perm(axes, p)
    old = src.meta.get("file_letters", "")
    spacing = {a: src.spacing.get(old[i] if i < len(old) and old[i] in "ZYX" else a, 1.0)
               for i, a in enumerate(axes) if a in "ZYX"}
    origin = {a: src.origin.get(old[i] if i < len(old) and old[i] in "ZYX" else a, 0.0)
              for i, a in enumerate(axes) if a in "ZYX"}
    return Source(src.kind, src.path, src.inner, src.file_shape, src.dtype, ngff, perm, spacing, origin, src.unit,
                  src.name, src.channel_names, {**src.meta, "file_letters": axes})


def _mrc_source(p: Path) -> Source:
    import mrcfile

    from voxfield.io import mrc

    try:
        with mrcfile.mmap(p, mode="r", permissive=True) as m:
            if m.data is None:
                raise FormatError("not a readable MRC file (no data block)", p)
            h = m.header
            f = mrc._fields_from_header(h, b"")
            shape = mrc._check_header(f, p)
            dtype = m.data.dtype
            file_shape = tuple(int(n) for n in m.data.shape)
            vs = m.voxel_size
            sp = {"X": float(vs.x), "Y": float(vs.y), "Z": float(vs.z)}
    except (FormatError, DataError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - mrcfile on a damaged or compressed file
        raise FormatError(f"cannot memory-map this MRC file ({one_line(describe_exception(exc))}); "
                          "a .gz/.bz2 map must be decompressed first", p) from None
    del shape
    letters = mrc._file_letters(f) or "ZYX"
    if len(file_shape) == 2:
        letters = letters[1:]
    ngff, perm = _ngff_perm(letters, p)
    spacing = {a: (sp[a] if sp[a] > 0 else 1.0) for a in letters}
    origin = {a: 0.0 for a in letters}
    return Source("mrc", str(p.resolve()), None, file_shape, dtype.str, ngff, perm, spacing, origin,
                  "Å" if all(sp[a] > 0 for a in letters) else "px", p.name, None,
                  {"file_letters": letters, "format": "mrc"})


def _npy_source(p: Path) -> Source:
    from voxfield.io.numpy_io import axes_for_ndim

    try:
        a = np.load(p, mmap_mode="r")
    except Exception as exc:  # noqa: BLE001 - numpy on a damaged file
        raise FormatError(f"not a readable .npy file ({one_line(describe_exception(exc))})", p) from None
    if a.dtype.kind not in "biuf":
        raise DataError(f"unsupported data type {a.dtype}", p)
    letters = axes_for_ndim(a.ndim, p)
    ngff, perm = _ngff_perm(letters, p)
    return Source("npy", str(p.resolve()), None, tuple(int(n) for n in a.shape), a.dtype.str, ngff, perm,
                  {x: 1.0 for x in letters if x in "ZYX"}, {x: 0.0 for x in letters if x in "ZYX"}, "px", p.name,
                  None, {"file_letters": letters, "format": "npy"})


def _zarr_source(p: Path) -> Source:
    import zarr

    from voxfield.io import omezarr

    try:
        node = zarr.open(store=str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr on damaged metadata
        raise FormatError(f"not a readable zarr store ({one_line(describe_exception(exc))})", p) from None
    if isinstance(node, zarr.Array):
        raise FormatError("a plain zarr array, not an OME-Zarr image (no multiscales metadata); write it as "
                          "OME-Zarr or .npy first", p)
    try:
        image, attrs, _ = omezarr._find_image(node)
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"not a readable OME-Zarr store ({one_line(describe_exception(exc))})", p) from None
    if image is None:
        raise FormatError("not an OME-Zarr image (a zarr group without multiscales metadata)", p)
    try:
        ms, datasets, arrays, letters, scales, translations = omezarr.multiscale_levels(image, attrs, p)
    except (FormatError, DataError):
        raise
    except Exception as exc:  # noqa: BLE001 - zarr refusing an array's metadata
        text = one_line(describe_exception(exc))
        if "chunk grid" in text.lower():
            raise FormatError(f"ragged chunks ({text}): voxfield reads regular chunk grids; rechunk the store "
                              "first", p) from None
        raise FormatError(f"not a readable OME-Zarr store ({text})", p) from None
    arr = arrays[0]
    _check_regular_chunks(arr, p)
    unit, factors = omezarr._space_unit(ms.get("axes") or [], letters)
    spacing = {a: float(scales[0][i]) * factors.get(a, 1.0) for i, a in enumerate(letters) if a in "ZYX"}
    origin = {a: float(translations[0][i]) * factors.get(a, 1.0) for i, a in enumerate(letters) if a in "ZYX"}
    ngff, perm = _ngff_perm(letters, p)
    names = None
    omero = attrs.get("omero")
    if isinstance(omero, dict) and isinstance(omero.get("channels"), list):
        names = tuple(str(c.get("label", f"channel {i}")) if isinstance(c, dict) else f"channel {i}"
                      for i, c in enumerate(omero["channels"]))
    inner = arr.path if hasattr(arr, "path") else str(datasets[0].get("path", "0"))
    meta = {"file_letters": letters, "format": "zarr", "omero": omero if isinstance(omero, dict) else None,
            "name": ms.get("name")}
    return Source("zarr", str(p.resolve()), inner, tuple(int(n) for n in arr.shape), arr.dtype.str
                  if hasattr(arr.dtype, "str") else np.dtype(arr.dtype).str, ngff, perm, spacing, origin, unit,
                  str(ms.get("name") or p.name), names, meta)


def _check_regular_chunks(arr: Any, p: Path) -> None:
    """zarr 3 allows a rectilinear (ragged) chunk grid; chunk-by-chunk coding needs a regular one."""
    grid = getattr(getattr(arr, "metadata", None), "chunk_grid", None)
    if grid is not None and type(grid).__name__ != "RegularChunkGrid":
        raise FormatError(f"ragged chunks ({type(grid).__name__}): voxfield reads regular chunk grids; "
                          "rechunk the store first", p)
    try:
        chunks = arr.chunks
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"ragged chunks ({one_line(describe_exception(exc))}); rechunk the store first",
                          p) from None
    if any(not isinstance(c, int | np.integer) or c <= 0 for c in chunks):
        raise FormatError(f"ragged chunks {chunks!r}; rechunk the store first", p)
