"""Decoding large volumes to disk in slabs, with bounded memory.

Neural files decode any region exactly (the values equal those of a whole-volume decode),
so a big volume can be decoded slab by slab along its first axis into a disk-backed array
(``numpy.lib.format.open_memmap`` in a temporary folder beside the output) and handed to
the format writer from there; resident memory stays near one slab plus the writer's own
buffers instead of the whole volume (and the network's activations over all of it).
Classic codecs decode in one piece, as their payloads are not randomly accessible.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voxfield.compress import guard
from voxfield.compress.reader import open_vxf
from voxfield.errors import DataError, OutputError
from voxfield.io import write_volume
from voxfield.io.atomic import temp_prefix
from voxfield.io.volume import Volume

#: Volumes above this many bytes are decoded in slabs.
STREAM_ABOVE = 256 << 20
#: Target bytes of one slab.
SLAB_BYTES = 64 << 20


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(nbytes: int, path: str | os.PathLike[str] | bytes) -> None:
    """Refuse to decode ``nbytes`` in memory when the machine has less RAM than that."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > total:
        where = None if isinstance(path, (bytes, bytearray)) else path
        raise DataError(f"decoding needs {_gib(nbytes)} of memory, this machine has {_gib(total)}", where)


def slab_ranges(shape: tuple[int, ...], itemsize: int, slab_bytes: int = SLAB_BYTES) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges along the first axis whose slabs hold about ``slab_bytes``."""
    per = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    step = max(1, slab_bytes // max(per, 1))
    return [(i, min(i + step, shape[0])) for i in range(0, shape[0], step)]


def decompress_to_file(src: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False,
                       stream_above: int = STREAM_ABOVE, slab_bytes: int = SLAB_BYTES,
                       progress: Callable[[float], None] | None = None, member: int | str | None = None) -> Volume:
    """Decode ``src`` (.vxf) and write it to ``out`` (format from the suffix, atomically).

    Random-access (neural) files larger than ``stream_above`` bytes are decoded slab by slab
    into a memory-mapped temporary array. Returns the written Volume (its data may be that
    memory map, valid until the function returns, so callers should use only its
    description). ``member`` picks one map of a set (``voxfield compress-set``)."""
    from voxfield.compress.api import decompress as decompress_vxf

    arr = open_vxf(src, member)
    nbytes = int(np.prod(arr.shape, dtype=np.int64)) * arr.dtype.itemsize
    if not arr.random_access or nbytes <= stream_above or len(arr.shape) < 2:
        check_memory(nbytes, src)
        vol = decompress_vxf(src, member)
        write_volume(vol, out, overwrite=overwrite)
        if progress is not None:
            progress(1.0)
        return vol
    out_dir = Path(out).resolve().parent
    free = shutil.disk_usage(out_dir).free
    if nbytes > free:
        raise OutputError(f"decoding needs {_gib(nbytes)} of disk space beside the output, {_gib(free)} free", out)
    with guard.decoding(src), tempfile.TemporaryDirectory(prefix=temp_prefix("decode"), dir=out_dir) as tmp:
        mm = np.lib.format.open_memmap(Path(tmp) / "decoded.npy", mode="w+", dtype=arr.dtype, shape=arr.shape)
        ranges = slab_ranges(arr.shape, arr.dtype.itemsize, slab_bytes)
        for k, (a, b) in enumerate(ranges):
            mm[a:b] = arr[a:b]
            if progress is not None:
                progress((k + 1) / len(ranges))
        mm.flush()
        vol = Volume.from_description(arr.header["volume"], mm)
        write_volume(vol, out, overwrite=overwrite)
        del mm
    return vol
