"""Mutators of the fuzzer (:mod:`voxfield.bench.fuzz`): blind byte mutations
(:mod:`voxfield.bench.fuzz_bytes`) and forged, structure-aware ones that keep a file's own
checksums valid (:mod:`voxfield.bench.fuzz_forge`).

:func:`mutate` picks a mutator for a file type with :data:`WEIGHTS` (or takes one by name)
and returns the new bytes (``None``: the file is deleted) and a :class:`Mutation`; it is
deterministic given its ``rng``.
"""

from __future__ import annotations

import re
from random import Random

from voxfield.bench.fuzz_bytes import (  # noqa: F401 - re-exported
    _HOT,
    BLIND,
    FIXED,
    MAGIC,
    Mutation,
    Mutator,
    MutContext,
    absurd_values,
    bitflip,
    forge_json_value,
    json_text,
    remove,
    wrong_type,
)
from voxfield.bench.fuzz_forge import (  # noqa: F401 - re-exported
    forge_cs,
    forge_h5,
    forge_mrc,
    forge_mrcgz,
    forge_npy,
    forge_npz,
    forge_pkl,
    forge_star,
    forge_tiff,
    forge_vxf_fixed,
    forge_vxf_json,
    forge_vxf_section,
    forge_vxf_text,
    forge_zarr_json,
    pack_vxf,
    parse_vxf,
    vxf_damage,
)

# ------------------------------------------------------------------------ choice
FORGED: dict[str, Mutator] = {"forge-json": forge_vxf_json, "forge-text": forge_vxf_text,
                              "forge-section": forge_vxf_section, "forge-fixed": forge_vxf_fixed,
                              "forge-mrc": forge_mrc, "forge-mrcgz": forge_mrcgz, "forge-npy": forge_npy,
                              "forge-npz": forge_npz, "forge-tiff": forge_tiff, "forge-h5": forge_h5,
                              "forge-zarr-json": forge_zarr_json, "forge-star": forge_star, "forge-cs": forge_cs,
                              "forge-pkl": forge_pkl, "remove": remove}
#: Mutators that let the data legitimately change (decoded output compared leniently).
LENIENT = {"forge-json", "forge-text", "forge-section"}
_BLIND_W = {"truncate": 2, "bitflip": 3, "overwrite": 2, "splice-insert": 1, "splice-delete": 1, "splice-dup": 1,
            "splice-cross": 1}
#: file type -> mutator -> weight.
WEIGHTS: dict[str, dict[str, float]] = {
    "vxf": {**_BLIND_W, "forge-json": 14, "forge-text": 3, "forge-section": 4, "forge-fixed": 1},
    "mrc": {**_BLIND_W, "forge-mrc": 8},
    "mrcgz": {**_BLIND_W, "forge-mrcgz": 8},
    "npy": {**_BLIND_W, "forge-npy": 8},
    "npz": {**_BLIND_W, "forge-npz": 8},
    "tiff": {**_BLIND_W, "forge-tiff": 8},
    "h5": {**_BLIND_W, "forge-h5": 6},
    "zarrjson": {**_BLIND_W, "forge-zarr-json": 10, "remove": 1},
    "zarrchunk": {**_BLIND_W, "remove": 1},
    "star": {**_BLIND_W, "forge-star": 10},
    "cs": {**_BLIND_W, "forge-cs": 8},
    "pkl": {**_BLIND_W, "forge-pkl": 8},
}


def mutate(rng: Random, ftype: str, data: bytes, ctx: MutContext, rel: str,
           mutator: str | None = None) -> tuple[bytes | None, Mutation]:
    """Mutate ``data`` (a file of type ``ftype``); ``mutator`` forces one by name."""
    weights = WEIGHTS.get(ftype, _BLIND_W)
    if mutator is None:
        mutator = rng.choices(list(weights), list(weights.values()))[0]
    fn = BLIND.get(mutator) or FORGED[mutator]
    new, desc = fn(rng, data, ctx)
    strict = mutator == "forge-json" and bool(re.match(r"header (volume\.name|voxfield) ", desc))
    return new, Mutation(mutator, rel, desc, mutator in LENIENT and not strict, strict)


def pick_mutator(rng: Random, ftype: str) -> str:
    """The mutator :func:`mutate` would pick for ``ftype`` with this ``rng`` state."""
    weights = WEIGHTS.get(ftype, _BLIND_W)
    return rng.choices(list(weights), list(weights.values()))[0]
