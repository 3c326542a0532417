"""``sci`` and ``siren``: volumes as block-partitioned SIREN fields (papers 001 and 002),
implemented in :mod:`voxfield.compress.neural`."""

from __future__ import annotations

from typing import Any

import numpy as np

from voxfield.compress.defaults import default_target
from voxfield.compress.registry import Method, register_method


def _neural() -> Any:
    from voxfield.compress import neural

    return neural


class _Siren(Method):
    kind = "neural"

    # Config: voxfield.compress.neural.NeuralConfig (imported on use: it brings torch)
    def config(self, **settings: Any) -> Any:
        cfg = _neural().NeuralConfig.preset(self.name, **settings)
        cfg.validate()
        return cfg

    def encode(self, vol: Any, target: Any, config: Any, *, progress: Any = None,
               guide_mask: np.ndarray | None = None, **options: Any) -> tuple[bytes, Any]:

        self.no_options(options)
        neural = _neural()
        rep = neural.FitReport(self.name)
        kw = {"guide_mask": guide_mask} if guide_mask is not None else {}
        blob = neural.compress_neural(vol, config, target or default_target(), progress=progress,
                                      report=rep, **kw)
        return blob, rep

    def describe(self, report: Any) -> str:
        return (f"{self.name}: {report.n_blocks} block(s) in {report.n_groups} group(s), {report.n_params:,} "
                f"parameters, {report.steps} steps, weights at {report.bits:.2f} bits")

    def decode(self, reader: Any) -> Any:
        return _neural().decode_neural(reader)

    def open_field(self, reader: Any) -> tuple[Any, Any]:
        return _neural().load_field(reader)

    def summary(self, reader: Any) -> dict[str, Any]:
        return neural_summary(reader, reader.header.get("method", {}))


@register_method("sci")
class Sci(_Siren):
    """SCI: an octree of blocks chosen by spectrum concentration, one SIREN per block."""


@register_method("siren")
class Siren(_Siren):
    """One SIREN for the whole volume (INIF/SIREN baseline)."""


def neural_summary(reader: Any, method: dict[str, Any]) -> dict[str, Any]:
    """Blocks, architectures and coding of a sci/siren file, for ``voxfield info``."""
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
