"""voxfield's Python API: the functions behind every command, exported from
:mod:`voxfield` (``from voxfield import compress, decompress, open, denoise, reconstruct``).

Each takes a file path, a :class:`~voxfield.io.volume.Volume` or a numpy array, and
returns numpy arrays, a ``Volume`` or a small result object; heavy libraries are imported
only by the function that needs them.
"""

from __future__ import annotations

import os
from typing import Any

from voxfield.compress.api import CompressResult, describe
from voxfield.compress.api import compress as _compress
from voxfield.compress.api import decompress as _decompress
from voxfield.io.volume import Volume


def compress(data: Any, *, method: str | None = None, ratio: float | None = None, max_error: float | None = None,
             rel_error: float | None = None, psnr: float | None = None, fsc_target: float | None = None,
             resolution: float | None = None, output: str | os.PathLike[str] | None = None, device: str | None = None,
             progress: Any = None, **settings: Any) -> CompressResult:
    """Compress a volume (path, :class:`Volume` or numpy array) into ``.vxf`` bytes, written
    to ``output`` when given. ``method``: ``"sci"`` (default), ``"siren"``, ``"grid"``,
    ``"cryo-pe"``, ``"hybrid"``/``"hybrid:PRIOR"``, ``"classic:CODEC"`` (e.g.
    ``"classic:sperr"``) or any registered method. One target: ``ratio``, ``max_error`` /
    ``rel_error`` (every voxel within the bound), ``psnr``, or ``fsc_target`` with
    ``resolution``. ``**settings``: the method's configuration and the other options of
    :func:`voxfield.compress.api.compress` (``codec``, ``steps``, ``time_budget``,
    ``seed``, ``guide``, ``check``, ``overwrite``...). ``progress(stage, fraction)``.

    Returns a :class:`~voxfield.compress.api.CompressResult` (``payload``, ``path``,
    ``ratio``, ``report``, ``psnr_db``...)."""
    return _compress(data, method=method, ratio=ratio, max_error=max_error, rel_error=rel_error, psnr=psnr,
                     fsc_target=fsc_target, resolution=resolution, output=output, device=device, progress=progress,
                     **settings)


def decompress(source: str | os.PathLike[str] | bytes, member: int | str | None = None) -> Volume:
    """Decode a whole ``.vxf`` file (path or bytes) to a :class:`Volume` with the original
    shape, dtype, axes, spacing, origin and format header (``member``: one map of a set)."""
    return _decompress(source, member)


def open(path: str | os.PathLike[str] | bytes, member: int | str | None = None) -> Any:  # noqa: A001
    """Random access to a ``.vxf`` file: ``open("x.vxf")[z0:z1, y0:y1, x0:x1]`` decodes
    only what the request needs (:class:`voxfield.compress.reader.VxfArray`). An
    OME-Zarr store (a voxfield one, or any other) opens as a Dask array of its full
    resolution, decoded chunk by chunk on compute (:func:`open_zarr` gives every level)."""
    if _is_zarr(path):
        return open_zarr(path).levels[0]
    from voxfield.compress.reader import open_vxf

    return open_vxf(path, member)


def _is_zarr(path: Any) -> bool:
    if isinstance(path, (bytes, bytearray)):
        return False
    from pathlib import Path

    p = Path(path)
    return p.is_dir() or p.name.lower().endswith(".zarr")


def open_zarr(path: str | os.PathLike[str]) -> Any:
    """Open an OME-Zarr store lazily: a :class:`~voxfield.io.omezarr_lazy.LazyImage`
    whose ``levels`` are Dask arrays (full resolution first), with ``axes``, voxel size
    (``spacing(level)``, ``unit``) and ``channel_names``. An unfinished voxfield store
    raises :class:`~voxfield.errors.FormatError`."""
    from voxfield.io.omezarr_lazy import open_lazy

    return open_lazy(path)


def compress_to_zarr(input: str | os.PathLike[str], output: str | os.PathLike[str], **options: Any) -> Any:
    """Compress an input of any size chunk by chunk into an OME-Zarr store, on Dask
    (:func:`voxfield.compress.chunked.compress_to_zarr`: ``method``, ``ratio`` /
    ``psnr`` / ``max_error`` / ``lossless``, ``chunks``, ``shards``, ``levels``,
    ``workers``, ``scheduler``, ``force``, ``progress``). Returns a
    :class:`~voxfield.compress.chunked.ChunkedResult`."""
    from voxfield.compress.chunked import compress_to_zarr as _run

    return _run(input, output, **options)


def denoise(data: Any, **options: Any) -> Any:
    """Clean a cryo-EM map with the shipped 3D U-Net (:func:`voxfield.denoise.api.denoise`:
    ``mode``, ``threshold``, ``apix``, ``resolution``, ``weights``, ``device``,
    ``keep_grid``, ``progress``). Returns a :class:`~voxfield.denoise.api.DenoiseResult`."""
    from voxfield.denoise.api import denoise as _denoise

    return _denoise(data, **options)


def reconstruct(particles: str | os.PathLike[str], output: str | os.PathLike[str], **options: Any) -> Any:
    """Train the heterogeneous reconstruction (structural-basis VAE) on a particle stack
    into the run folder ``output`` (:func:`voxfield.reconstruct.api.reconstruct`).
    Returns the trained :class:`~voxfield.reconstruct.run.Run` (``run.volume(z)``...)."""
    from voxfield.reconstruct.api import reconstruct as _reconstruct

    return _reconstruct(particles, output, **options)


__all__ = ["CompressResult", "compress", "compress_to_zarr", "decompress", "denoise", "describe", "open", "open_zarr",
           "reconstruct"]
