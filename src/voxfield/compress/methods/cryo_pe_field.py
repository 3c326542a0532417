"""``cryo-pe``: a cryo-EM map as an occupancy mask plus a positional-encoding MLP over the
occupied voxels (:mod:`voxfield.compress.cryo_pe`)."""

from __future__ import annotations

from typing import Any

from voxfield.compress.defaults import default_target
from voxfield.compress.registry import Method, register_method


@register_method("cryo-pe")
class CryoPE(Method):
    """Occupancy + positional-encoding network, for 3-D maps."""

    kind = "neural"

    # Config: voxfield.compress.cryo_pe.CryoPEConfig (imported on use: it brings torch)
    def config(self, **settings: Any) -> Any:
        from voxfield.compress import cryo_pe

        cfg = cryo_pe.CryoPEConfig.preset(self.name, **settings)
        cfg.validate()
        return cfg

    def encode(self, vol: Any, target: Any, config: Any, *, progress: Any = None,
               **options: Any) -> tuple[bytes, Any]:
        from voxfield.compress import cryo_pe

        self.no_options(options)
        rep = cryo_pe.CryoPEReport()
        blob = cryo_pe.compress_cryo_pe(vol, config, target or default_target(),
                                        progress=progress, report=rep)
        return blob, rep

    def describe(self, report: Any) -> str:
        r = report
        return (f"cryo-pe: threshold {r.threshold:.4g} ({r.threshold_source}), {r.occupied:,} voxels occupied "
                f"({100 * r.occupied_fraction:.1f} %), occupancy {r.occupancy_bytes:,} B ({r.occupancy_coder}), "
                f"widths {r.widths}, {r.n_params:,} parameters, {r.steps} steps, {r.loss} loss, "
                f"weights at {r.bits:.2f} bits")

    def decode(self, reader: Any) -> Any:
        from voxfield.compress import cryo_pe

        return cryo_pe.decode_cryo_pe(reader)

    def open_field(self, reader: Any) -> tuple[Any, Any]:
        from voxfield.compress import cryo_pe

        return cryo_pe.load_field(reader)
