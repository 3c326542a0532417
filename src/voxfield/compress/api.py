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

from voxfield.compress import classic, container, cryo_pe_set, ebound, guard, hybrid, neural
from voxfield.compress.methods import NEURAL_DECODERS
from voxfield.errors import FormatError
from voxfield.io.volume import Volume

Decoder = Callable[[container.VxfReader], Volume]

#: method name -> decoder of a whole volume.
DECODERS: dict[str, Decoder] = {classic.METHOD: classic.decode_classic, hybrid.METHOD: hybrid.decode_hybrid,
                                **NEURAL_DECODERS}


def decompress(source: str | os.PathLike[str] | bytes, member: int | str | None = None) -> Volume:
    """Decode a whole ``.vxf`` file (path or bytes) to a :class:`Volume` with the original
    shape, dtype, axes, spacing, origin and format header.

    A set of maps (``voxfield compress-set``) needs ``member``: its number counted from 1,
    or its name (:func:`voxfield.compress.cryo_pe_set.member_index`)."""
    with guard.decoding(source), container.VxfReader(source) as reader:
        name = reader.header.get("method", {}).get("name")
        if name == cryo_pe_set.METHOD or member is not None:
            vol = cryo_pe_set.decode_member(reader, member)
        else:
            if name not in DECODERS:
                raise FormatError(
                    f"unknown compression method {name!r} (this voxfield decodes: {', '.join(DECODERS)})",
                    reader.path,
                )
            vol = DECODERS[name](reader)
            if "ebound" in reader.header:
                vol = Volume(ebound.correct(reader, vol.data), vol.axes, vol.spacing, vol.unit, vol.origin,
                             vol.meta)
            guard.check_decoded(vol.data, reader.spec.shape, reader.spec.dtype, reader.path)
        guard.check_decoded(vol.data, None, None, reader.path)
        return vol


def describe(path: str | os.PathLike[str], *, quick: bool = False) -> dict[str, Any]:
    """Summary of a ``.vxf`` file without decoding: method, original volume, sizes.

    The header is validated (:mod:`voxfield.compress.schema`) and, unless ``quick``, every
    section's checksum is verified, so that a damaged file is reported here rather than at
    decoding time."""
    with guard.decoding(path), container.VxfReader(path) as reader:
        if not quick:
            reader.verify()
        head = reader.header
        vol = head.get("volume", {})
        shape = vol.get("shape", [])
        nbytes = int(np.prod(shape)) * np.dtype(vol.get("dtype", "u1")).itemsize if shape else 0
        method = head.get("method", {})
        summary: dict[str, Any] = {"name": method.get("name")}
        if method.get("name") in neural.METHODS:
            summary.update(_neural_summary(reader, method))
        elif method.get("name") == "grid":
            summary.update({k: method.get(k) for k in ("levels", "step", "steps", "lambda")})
            summary["sections"] = {n: reader.section_info(n).size for n in reader.section_names}
        elif method.get("name") == cryo_pe_set.METHOD:
            summary.update(cryo_pe_set.set_summary(method))
            members = cryo_pe_set.describe_members(reader)
            nbytes = sum(m["original_bytes"] for m in members)
        elif method.get("name") == hybrid.METHOD:
            summary.update({"prior": method.get("prior", {}).get("name"), "residual": method.get("residual"),
                            "selection": method.get("selection")})
            if method.get("filter"):
                f = method["filter"]
                summary["filter"] = f"{f['dims']}-D conv, {f['channels']} channels, kernel {f['kernel']}"
        else:
            summary.update({k: v for k, v in method.items() if k != "name"})
        if "ebound" in head:
            summary["max_abs_error"] = head["ebound"].get("max_abs_error")
        out: dict[str, Any] = {
            "file": str(Path(path)),
            "file_bytes": reader.size,
            "container_version": ".".join(map(str, reader.version)),
            "written_by": head.get("voxfield"),
            "method": summary,
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
        if method.get("name") == cryo_pe_set.METHOD:
            out["members"] = members
        return out


def _neural_summary(reader: container.VxfReader, method: dict[str, Any]) -> dict[str, Any]:
    """Blocks, architectures and coding of a neural file, for ``voxfield info``."""
    if method.get("constant"):
        return {"constant": True}
    from voxfield.compress.tables import unpack
    from voxfield.fields.siren import siren_param_count

    tab = unpack(reader.section("tables"))
    layout = method.get("layout", {})
    n_in, n_out = len(layout.get("coord_axes", [])), 1
    for a in layout.get("out_axes", []):
        n_out *= int(layout["shape"][a])
    counts = np.bincount(tab["group"].astype(np.int64), minlength=len(method.get("groups", [])))
    widths = [g["widths"] for g in method.get("groups", [])]
    cfg = method.get("config", {})
    params = sum(int(c) * siren_param_count(n_in, n_out, w, learn_frequency=bool(cfg.get("learn_frequency")))
                 for c, w in zip(counts, widths, strict=True))
    return {
        "blocks": int(len(tab["group"])),
        "architectures": [f"{int(c)} x {n_in}-{'-'.join(map(str, w))}-{n_out}" for c, w in zip(counts, widths, strict=True)],
        "parameters": params,
        "weight_bits": method.get("bits"),
        "steps": method.get("steps"),
        "partition": cfg.get("partition"),
        "deblock": cfg.get("deblock"),
        "coordinates": "".join(layout.get("axes", "")[i] for i in layout.get("coord_axes", [])),
    }
