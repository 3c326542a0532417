"""Decoding a voxfield OME-Zarr store back to a plain file.

``.npy`` output is streamed: the full-resolution level is decoded block by block into a
memory-mapped file, so any size works. Other formats (TIFF, MRC, HDF5, OME-Zarr) are
written from memory and refuse an array larger than half this machine's memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError


def decompress_zarr(path: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False,
                    progress: Callable[[float], None] | None = None) -> tuple[tuple[int, ...], str, str]:
    """Decode the full resolution of the OME-Zarr store ``path`` into ``output`` (its
    suffix picks the format). Returns ``(shape, dtype name, axes)``."""
    from voxfield.compress.chunked.write import machine_memory
    from voxfield.io import check_writable
    from voxfield.io.atomic import atomic_path
    from voxfield.io.omezarr_lazy import open_lazy

    img = open_lazy(path)
    arr = img.levels[0]
    out = Path(output)
    src = Path(path)
    check_writable(out, overwrite=overwrite)
    letters = img.axes
    report = progress or (lambda f: None)
    if out.suffix.lower() == ".npy":
        with atomic_path(out, overwrite=overwrite) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=arr.dtype, shape=arr.shape)
            _stream(arr, mm, report, src)
            mm.flush()
            del mm
        return tuple(arr.shape), np.dtype(arr.dtype).name, letters
    need = int(arr.nbytes)
    if need > machine_memory() // 2:
        raise DataError(f"{need / 2**30:.1f} GiB do not fit in memory here; decode to .npy (streamed) instead",
                        out)
    from voxfield.io import write_volume
    from voxfield.io.volume import Volume

    data = np.empty(arr.shape, arr.dtype)
    _stream(arr, data, report, src)
    spatial = [a for a in letters if a in "ZYX"]
    spacing = img.spacing(0)
    origin = tuple(img.translations[0][letters.index(a)] * img._factors.get(a, 1.0) for a in spatial)
    meta: dict[str, Any] = {"source": str(path)}
    vol = Volume(data, letters, spacing, img.unit, origin, meta=meta)
    try:
        write_volume(vol, out, overwrite=overwrite)
    except OptionError:
        raise
    return tuple(arr.shape), np.dtype(arr.dtype).name, letters


def _stream(arr: Any, out: Any, report: Callable[[float], None], path: Path) -> None:
    """Decode the Dask array ``arr`` into ``out`` block by block (one block at a time in
    memory), reporting the fraction done. A damaged chunk raises :class:`FormatError`
    naming the store and the region."""
    import itertools

    from voxfield.errors import FormatError, VoxfieldError
    from voxfield.io.validate import describe_exception, one_line

    chunks = arr.chunks
    blocks = list(itertools.product(*[range(len(c)) for c in chunks]))
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    for i, idx in enumerate(blocks):
        region = tuple(slice(int(starts[d][k]), int(starts[d][k + 1])) for d, k in enumerate(idx))
        try:
            block = np.asarray(arr.blocks[idx].compute(scheduler="synchronous"))
        except (MemoryError, KeyboardInterrupt):
            raise
        except VoxfieldError as exc:
            raise FormatError(f"damaged chunk data at {_where(region)}: {exc}", path) from None
        except Exception as exc:  # noqa: BLE001 - zarr/numcodecs on damaged chunk bytes
            raise FormatError(f"damaged chunk data at {_where(region)} "
                              f"({one_line(describe_exception(exc))})", path) from None
        out[region] = block
        report((i + 1) / len(blocks))


def _where(region: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{r.start}:{r.stop}" for r in region) + "]"
