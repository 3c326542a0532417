"""Compress a :class:`~voxfield.io.Volume` with a classic codec into a ``.vxf`` file.

The container holds the volume description (so ``decompress`` writes the original format
back with its header) and one ``payload`` section made by the codec. A ratio target is
met on the **file** (original data bytes / ``.vxf`` bytes): the container's own bytes are
subtracted from the codec's budget.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from voxfield import __version__
from voxfield.codecs._common import size_rtol
from voxfield.codecs.base import Codec, Target
from voxfield.codecs.registry import get_codec
from voxfield.compress import container
from voxfield.errors import FormatError, OptionError, TargetNotMet
from voxfield.io import registry
from voxfield.io.validate import check_array
from voxfield.io.volume import Volume

METHOD = "classic"
_PAYLOAD = "payload"


def volume_header(vol: Volume) -> dict[str, Any]:
    """The ``"volume"`` entry of a ``.vxf`` header: everything but the voxels.

    The absolute source path is dropped (it may leak a user's folder layout); the file
    name is kept as ``name`` so ``decompress`` can propose an output name."""
    desc = vol.describe()
    source = desc["meta"].pop("source", None)
    if source:
        desc["name"] = Path(source).name
    return desc


def file_target(target: Target, nbytes: int, overhead: int) -> Target:
    """Turn a ratio/bytes target on the whole file into a bytes target on the payload,
    keeping the same absolute tolerance in bytes."""
    goal = target.size_goal(nbytes)
    if goal is None:
        return target
    budget = goal - overhead
    tol_bytes = size_rtol(target) * goal
    if budget < 8:
        raise TargetNotMet(
            f"ratio {nbytes / goal:.4g} is out of reach: the file may hold {goal:.0f} bytes but the "
            f"container header alone takes {overhead}"
        )
    return Target.nbytes(budget, rtol=min(0.5, 0.9 * tol_bytes / budget))


def compress_volume(vol: Volume, codec: Codec | str, target: Target | None = None) -> bytes:
    """Compress ``vol`` with a classic codec; return the bytes of a ``.vxf`` file.

    Ratio and size targets apply to the file: within ``target.rtol`` of
    ``data.nbytes / ratio`` bytes, container included."""
    if isinstance(codec, str):
        codec = get_codec(codec)
    check_array(vol.data, vol.meta.get("source"))
    target = codec.check_target(target)
    header: dict[str, Any] = {
        "voxfield": __version__,
        "volume": volume_header(vol),
        "method": {"name": METHOD, "codec": codec.get_config(), "target": target.to_dict()},
    }
    over = container.overhead(header, [_PAYLOAD])
    payload_target = file_target(target, vol.data.nbytes, over)
    try:
        payload = codec.encode(np.ascontiguousarray(vol.data), payload_target)
    except TargetNotMet as exc:
        # Restate the miss as a file ratio and keep the closest file for benchmarks.
        best = None if exc.best is None else container.dumps(header, {_PAYLOAD: exc.best})
        achieved = None if best is None else vol.data.nbytes / len(best)
        raise TargetNotMet(str(exc), best=best, achieved=achieved) from None
    blob = container.dumps(header, {_PAYLOAD: payload})
    goal = target.size_goal(vol.data.nbytes)
    if goal is not None and abs(len(blob) - goal) > size_rtol(target) * goal:
        raise TargetNotMet(
            f"{codec.name}: file of {len(blob)} bytes misses the {goal:.0f}-byte goal by more than "
            f"{100 * target.rtol:.0f}%",
            best=blob,
            achieved=vol.data.nbytes / len(blob),
        )
    return blob


def decode_classic(reader: container.VxfReader) -> Volume:
    """Decode a classic-codec ``.vxf`` (an open reader) to a Volume."""
    method = reader.header.get("method", {})
    cfg = method.get("codec")
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise FormatError("corrupt .vxf header (no codec configuration)", reader.path)
    try:
        codec = get_codec(cfg["name"], **{k: v for k, v in cfg.items() if k != "name"})
    except OptionError as exc:
        raise FormatError(f"made with a codec this voxfield lacks: {exc}", reader.path) from None
    data = codec.decode(reader.section(_PAYLOAD))
    return Volume.from_description(reader.header["volume"], data)


def safe_base_name(name: Any) -> str | None:
    """The base name of a stored file name, safe to create beside the input: the last
    component of either kind of path separator, without control characters; None when
    nothing usable is left (empty, ``.``, ``..``, hidden names, or absurdly long)."""
    if not isinstance(name, str):
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if not base or base.startswith(".") or len(base.encode("utf-8", "replace")) > 200:
        return None
    return base


def output_name(header: dict[str, Any], vxf_path: str | os.PathLike[str]) -> Path:
    """Default output path for ``decompress``: the original file's base name with
    ``.decoded`` before its format suffix, in the ``.vxf`` file's folder. The stored name
    comes from the file and is not trusted: only its sanitised base name is used
    (:func:`safe_base_name`), so the output never lands elsewhere. A name without a known
    suffix keeps its whole self and gets the suffix of the format it was read from; without
    a usable name, ``<vxf stem>.decoded`` plus that suffix (``.mrc`` for maps, ``.npz``
    for anything else)."""
    p = Path(vxf_path)
    vol = header.get("volume")
    name = safe_base_name(vol.get("name") if isinstance(vol, dict) else None)
    meta = vol.get("meta") if isinstance(vol, dict) else None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not name:
        shape = vol.get("shape") if isinstance(vol, dict) else None
        fallback = ".mrc" if isinstance(shape, list) and len(shape) <= 3 else ".npz"
        return p.with_suffix(".decoded" + _PLAIN_SUFFIX.get(fmt, fallback))
    lower = name.lower()
    for suf in (".ome.tiff", ".ome.tif", ".ome.zarr", ".mrc.gz", ".map.gz", ".mrc.bz2", ".map.bz2"):
        if lower.endswith(suf):
            return p.parent / (name[: -len(suf)] + ".decoded" + name[-len(suf):])
    stem, dot, ext = name.rpartition(".")
    if dot and registry.format_of_suffix(name) is not None:
        return p.parent / f"{stem}.decoded.{ext}"
    # A name voxfield could not write back (no suffix, or an unknown one): keep it whole and
    # add the suffix of the format it was read from (NumPy .npz, which stores any volume
    # with its frame, when that is unknown too).
    return p.parent / f"{name}.decoded{_PLAIN_SUFFIX.get(fmt, '.npz')}"


#: The suffix ``decompress`` gives a volume read from each format.
_PLAIN_SUFFIX = {"mrc": ".mrc", "tiff": ".tif", "zarr": ".ome.zarr", "npy": ".npy", "npz": ".npz", "hdf5": ".h5"}
