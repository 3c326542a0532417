"""voxfield: neural fields to compress, denoise and reconstruct biological volumes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from voxfield.errors import VoxfieldError
from voxfield.io import Volume, read_volume, write_volume

if TYPE_CHECKING:
    from voxfield.compress.reader import VxfArray

__version__ = "0.1.0"


def open(path: str | os.PathLike[str] | bytes, member: int | str | None = None) -> VxfArray:  # noqa: A001 - documented API: voxfield.open("x.vxf")
    """Open a ``.vxf`` file for random access: ``voxfield.open("x.vxf")[z0:z1, y0:y1, x0:x1]``
    returns a numpy array, decoding only what the request needs (see
    :class:`voxfield.compress.reader.VxfArray`). For a set of maps (``voxfield
    compress-set``) ``member`` picks one: its number counted from 1, or its name.

    An OME-Zarr store (``voxfield compress IN -o OUT.ome.zarr``, or any other) opens as a
    Dask array of its full resolution; ``voxfield.open_zarr`` gives every level."""
    from voxfield.api import open as _open

    return _open(path, member)  # type: ignore[no-any-return]


#: Functions of :mod:`voxfield.api` offered here, imported on first use (``import voxfield``
#: stays light: no torch).
_API = ("compress", "compress_to_zarr", "decompress", "denoise", "open_zarr", "reconstruct")


def __getattr__(name: str) -> object:
    if name in _API:
        import importlib

        return getattr(importlib.import_module("voxfield.api"), name)
    raise AttributeError(f"module 'voxfield' has no attribute {name!r}")


__all__ = ["Volume", "VoxfieldError", "__version__", "compress", "compress_to_zarr", "decompress", "denoise", "open",
           "open_zarr", "read_volume", "reconstruct", "write_volume"]
