"""Entry points over every compression method: compress a Volume, decode a ``.vxf``.

Methods are dispatched on ``header["method"]["name"]`` so that files written today keep
decoding after new methods are added.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.compress import classic, container, neural
from voxfield.errors import FormatError
from voxfield.io.volume import Volume

Decoder = Callable[[container.VxfReader], Volume]

#: method name -> decoder of a whole volume.
DECODERS: dict[str, Decoder] = {
    classic.METHOD: classic.decode_classic,
    **{name: neural.decode_neural for name in neural.METHODS},
}


def decompress(source: str | os.PathLike[str] | bytes) -> Volume:
    """Decode a whole ``.vxf`` file (path or bytes) to a :class:`Volume` with the original
    shape, dtype, axes, spacing, origin and format header."""
    with container.VxfReader(source) as reader:
        name = reader.header.get("method", {}).get("name")
        if name not in DECODERS:
            raise FormatError(
                f"unknown compression method {name!r} (this voxfield decodes: {', '.join(DECODERS)})",
                reader.path,
            )
        return DECODERS[name](reader)


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of a ``.vxf`` file without decoding: method, original volume, sizes."""
    with container.VxfReader(path) as reader:
        head = reader.header
        vol = head.get("volume", {})
        shape = vol.get("shape", [])
        nbytes = int(np.prod(shape)) * np.dtype(vol.get("dtype", "u1")).itemsize if shape else 0
        return {
            "file": str(Path(path)),
            "file_bytes": reader.size,
            "container_version": ".".join(map(str, reader.version)),
            "written_by": head.get("voxfield"),
            "method": head.get("method"),
            "original_name": vol.get("name"),
            "original_format": vol.get("meta", {}).get("format"),
            "shape": shape,
            "dtype": np.dtype(vol["dtype"]).name if vol.get("dtype") else None,
            "axes": vol.get("axes"),
            "spacing": vol.get("spacing"),
            "unit": vol.get("unit"),
            "origin": vol.get("origin"),
            "original_bytes": nbytes,
            "ratio": nbytes / reader.size if reader.size else None,
            "sections": {n: reader.section_info(n).size for n in reader.section_names},
        }
