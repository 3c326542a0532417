"""Format detection and the two entry points :func:`read_volume` and :func:`write_volume`.

Each format lives in its own module (``voxfield.io.mrc``, ``.tiff``, ``.omezarr``,
``.numpy_io``, ``.hdf5``) exposing::

    SUFFIXES: tuple[str, ...]                       # lower-case, longest first
    def sniff(head: bytes, path: Path) -> bool      # does this content look like ours?
    def read(path: Path, **options) -> Volume
    def write(vol: Volume, path: Path, **options) -> None   # path is a temporary name

A module that serves several formats (``numpy_io``: npy and npz) may also expose
``sniff_<name>``, ``read_<name>`` and ``write_<name>``, which take precedence for that format.

The registry picks a reader by content first (magic bytes) and suffix second, wraps every
write in :func:`voxfield.io.atomic.atomic_path`, and turns library exceptions into one-line
:class:`~voxfield.errors.FormatError` messages that name the file.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from voxfield.errors import FormatError, VoxfieldError
from voxfield.io.atomic import atomic_path
from voxfield.io.validate import describe_exception, memory_error, one_line
from voxfield.io.volume import Volume


@dataclass(frozen=True)
class FormatSpec:
    """A registered file format."""

    name: str
    module: str
    suffixes: tuple[str, ...]
    description: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def entry(self, what: str) -> Any:
        """The module's ``<what>_<name>`` function if it has one, else ``<what>``."""
        module = self.load()
        return getattr(module, f"{what}_{self.name}", None) or getattr(module, what)


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "mrc",
            "voxfield.io.mrc",
            (".mrc.gz", ".map.gz", ".ccp4.gz", ".mrcs.gz", ".mrc.bz2", ".map.bz2", ".ccp4.bz2",
             ".mrcs.bz2", ".mrc", ".map", ".ccp4", ".mrcs", ".rec", ".st", ".ali"),
            "MRC2014 / CCP4 maps and MRCS stacks (plain, gzip, bzip2)",
        ),
        FormatSpec("tiff", "voxfield.io.tiff", (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf"),
                   "TIFF, ImageJ hyperstacks and OME-TIFF"),
        FormatSpec("zarr", "voxfield.io.omezarr", (".ome.zarr", ".zarr"), "OME-Zarr (NGFF) multiscale images"),
        FormatSpec("npy", "voxfield.io.numpy_io", (".npy",), "NumPy .npy array"),
        FormatSpec("npz", "voxfield.io.numpy_io", (".npz",), "NumPy .npz archive"),
        FormatSpec("hdf5", "voxfield.io.hdf5", (".h5", ".hdf5", ".hdf"), "HDF5 dataset"),
    )
}

#: Magic numbers of compressed wrappers, peeled before sniffing.
_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"


def _read_head(path: Path, n: int = 2048) -> bytes:
    """First ``n`` bytes of the file's content, with a gzip/bzip2 wrapper peeled off."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(n)
    except OSError as exc:
        raise FormatError(f"cannot read file ({one_line(exc.strerror or exc)})", path) from None
    try:
        if raw.startswith(_GZIP_MAGIC):
            with gzip.open(path, "rb") as fh:
                return fh.read(n)
        if raw.startswith(_BZ2_MAGIC):
            with bz2.open(path, "rb") as fh:
                return fh.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(f"corrupt compressed file ({one_line(exc)})", path) from None
    return raw


def _sniffs(spec: FormatSpec, head: bytes, path: Path) -> bool:
    """``spec``'s sniffer on ``head``; a sniffer that fails on damaged content says no."""
    try:
        return bool(spec.entry("sniff")(head, path))
    except Exception:  # noqa: BLE001 - a damaged file is not this format's, the reader will tell
        return False


def _by_suffix(path: Path) -> FormatSpec | None:
    name = path.name.lower()
    best: tuple[int, FormatSpec] | None = None
    for spec in FORMATS.values():
        for suf in spec.suffixes:
            if name.endswith(suf) and (best is None or len(suf) > best[0]):
                best = (len(suf), spec)
    return None if best is None else best[1]


def format_of_suffix(path: str | os.PathLike[str]) -> str | None:
    """Name of the format a path's suffix stands for (longest match), or None."""
    spec = _by_suffix(Path(path))
    return None if spec is None else spec.name


def known_suffixes() -> list[str]:
    """All suffixes voxfield can read or write."""
    return sorted({s for spec in FORMATS.values() for s in spec.suffixes})


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name of the format of an existing file or folder, by content then suffix.

    Raises :class:`FormatError` for a missing path or a format voxfield does not know."""
    p = Path(path)
    if not p.exists():
        raise FormatError("no such file or folder", p)
    if p.is_dir():
        spec = FORMATS["zarr"]
        if _sniffs(spec, b"", p):
            return "zarr"
        raise FormatError("folder is not an OME-Zarr/Zarr store", p)
    if p.stat().st_size == 0:
        raise FormatError("file is empty", p)
    head = _read_head(p)
    for spec in FORMATS.values():
        if spec.name == "zarr":
            continue
        if _sniffs(spec, head, p):
            return spec.name
    spec = _by_suffix(p)
    if spec is not None and spec.name == "mrc":
        # Old CCP4 maps carry no 'MAP ' stamp; the MRC reader decides, permissively.
        return "mrc"
    raise FormatError(
        "unknown or unsupported file format (voxfield reads "
        + ", ".join(s.description for s in FORMATS.values())
        + ")",
        p,
    )


def format_for_output(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Format to write ``path`` in: ``format`` if given, else from the suffix."""
    if format is not None:
        if format not in FORMATS:
            raise FormatError(f"unknown format {format!r} (known: {', '.join(FORMATS)})", path)
        return format
    spec = _by_suffix(Path(path))
    if spec is None:
        raise FormatError(
            "cannot tell the output format from the suffix (use one of " + ", ".join(known_suffixes()) + ")",
            path,
        )
    return spec.name


def read_volume(path: str | os.PathLike[str], *, format: str | None = None, axes: str | None = None,
                **options: Any) -> Volume:
    """Read a volume from any supported format.

    Parameters
    ----------
    path:
        File or folder (OME-Zarr) to read.
    format:
        Force a format instead of detecting it.
    axes:
        Override the axis letters the file declares (e.g. ``"ZYX"`` for a TIFF stack that
        tifffile reports as ``"IYX"``); must have one letter per dimension.
    options:
        Passed to the format's reader (e.g. ``level=`` for OME-Zarr, ``key=`` for NPZ/HDF5,
        ``stack=`` for MRC).

    Raises
    ------
    FormatError
        Missing, unknown, corrupt or truncated file. This is also the safety net for the
        readers: any other exception a reader lets escape (a library's error on damaged
        content) becomes ``FormatError("cannot read as <format>: corrupt or unsupported
        file (<type>: <message>)")``, on one line.
    DataError
        Content voxfield refuses, and a :class:`MemoryError` while reading (with the
        bytes that were asked for when known).
    """
    p = Path(path)
    name = format or detect_format(p)
    if name not in FORMATS:
        raise FormatError(f"unknown format {name!r}", p)
    reader = FORMATS[name].entry("read")
    try:
        vol = reader(p, **options)
    except VoxfieldError:
        raise
    except MemoryError as exc:
        raise memory_error(exc, p) from None
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise FormatError(f"option not understood by the {name} reader: {one_line(exc)}", p) from None
        raise FormatError(f"cannot read as {name}: corrupt or unsupported file ({describe_exception(exc)})",
                          p) from None
    except (ValueError, OSError, EOFError, KeyError, IndexError, zlib.error) as exc:
        raise FormatError(f"cannot read as {name}: {one_line(exc) or type(exc).__name__}", p) from None
    except Exception as exc:  # noqa: BLE001 - the safety net: a reader's library failed on this file
        raise FormatError(f"cannot read as {name}: corrupt or unsupported file ({describe_exception(exc)})",
                          p) from None
    vol.meta.setdefault("format", name)
    vol.meta["source"] = str(p)
    if axes is not None:
        axes = axes.upper()
        if len(axes) != vol.ndim:
            raise FormatError(f"--axes {axes!r} has {len(axes)} letters but the data has {vol.ndim} dimensions", p)
        if axes != vol.axes:
            vol = _reassign_axes(vol, axes)
    return vol


def _reassign_axes(vol: Volume, axes: str) -> Volume:
    """Rename the axes of ``vol`` (no data movement), carrying spacing of letters kept."""
    from voxfield.io.volume import SPATIAL_LETTERS

    old = dict(zip(vol.spatial_axes, zip(vol.spacing, vol.origin)))
    spatial = [a for a in axes if a in SPATIAL_LETTERS]
    spacing = tuple(old.get(a, (1.0, 0.0))[0] for a in spatial)
    origin = tuple(old.get(a, (1.0, 0.0))[1] for a in spatial)
    meta = dict(vol.meta)
    meta["axes_overridden_from"] = vol.axes
    return Volume(vol.data, axes, spacing, vol.unit, origin, meta)


def write_volume(vol: Volume, path: str | os.PathLike[str], *, format: str | None = None,
                 overwrite: bool = True, **options: Any) -> Path:
    """Write ``vol`` to ``path`` atomically (temporary name, then rename).

    The format comes from ``format`` or the suffix. Header fields in ``vol.meta`` under the
    format's own namespace are written back, so a read/write round trip gives an equivalent
    file. Returns the final path.

    Header fields of ``vol.meta`` may come from an untrusted file (a forged ``.vxf``
    header): writers drop a field of the wrong type or out of range with one warning naming
    it and write everything else. Any other exception a writer lets escape becomes a
    one-line :class:`FormatError` (a :class:`MemoryError`: :class:`DataError`)."""
    p = Path(path)
    name = format_for_output(p, format)
    writer = FORMATS[name].entry("write")
    with atomic_path(p, overwrite=overwrite) as tmp:
        try:
            writer(vol, tmp, **options)
        except VoxfieldError as exc:
            if exc.path == str(tmp):  # name the file the user asked for, not the temporary one
                exc.path = str(p)
            raise
        except MemoryError as exc:
            raise memory_error(exc, p, "write the data") from None
        except (ValueError, OSError, TypeError) as exc:
            raise FormatError(f"cannot write as {name}: {one_line(exc) or type(exc).__name__}", p) from None
        except Exception as exc:  # noqa: BLE001 - the safety net: a writer's library failed
            raise FormatError(f"cannot write as {name}: {describe_exception(exc)}", p) from None
    return p
