"""``grid``: a multi-resolution latent grid with a small synthesis MLP, latents coded
under a learned Laplace model (:mod:`voxfield.compress.grid`)."""

from __future__ import annotations

from typing import Any

from voxfield.compress.defaults import default_target
from voxfield.compress.registry import Method, register_method


@register_method("grid")
class LatentGrid(Method):
    """Latent grid + MLP; random access through :class:`voxfield.compress.grid.GridField`."""

    kind = "neural"

    # Config: voxfield.compress.grid.GridConfig (imported on use: it brings torch)
    def config(self, **settings: Any) -> Any:
        from voxfield.compress import grid

        cfg = grid.GridConfig.preset(self.name, **settings)
        cfg.validate()
        return cfg

    def encode(self, vol: Any, target: Any, config: Any, *, progress: Any = None,
               **options: Any) -> tuple[bytes, Any]:
        from voxfield.compress import grid

        self.no_options(options)
        rep = grid.GridReport()
        blob = grid.compress_grid(vol, config, target or default_target(), progress=progress,
                                  report=rep)
        return blob, rep

    def describe(self, report: Any) -> str:
        return (f"grid: {report.levels} latent levels ({report.latents:,} latents, {report.latent_bytes:,} bytes), "
                f"{report.n_params} synthesis parameters, {report.steps} steps")

    def decode(self, reader: Any) -> Any:
        from voxfield.compress import grid

        return grid.decode_grid(reader)

    def open_field(self, reader: Any) -> tuple[Any, Any]:
        from voxfield.compress import grid

        return grid.load_field(reader)

    def summary(self, reader: Any) -> dict[str, Any]:
        method = reader.header.get("method", {})
        out = {k: method.get(k) for k in ("levels", "step", "steps", "lambda")}
        out["sections"] = {n: reader.section_info(n).size for n in reader.section_names}
        return out
