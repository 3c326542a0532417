"""``hybrid``: a classic codec's file plus a small neural filter (or field) that corrects
its residual (:mod:`voxfield.compress.hybrid`). ``--method hybrid:PRIOR`` picks the codec."""

from __future__ import annotations

from typing import Any

import numpy as np

from voxfield.compress.defaults import default_target
from voxfield.compress.registry import Method, register_method


@register_method("hybrid")
class Hybrid(Method):
    """Classic prior + neural residual; region decoding through ``RegionDecoder``."""

    kind = "hybrid"

    # Config: voxfield.compress.hybrid.HybridConfig (imported on use: it brings torch)
    def config(self, **settings: Any) -> Any:
        from voxfield.compress import hybrid

        cfg = hybrid.HybridConfig.make(settings.pop("prior", None), **settings)
        hybrid.require_prior(cfg.prior)
        return cfg

    def encode(self, vol: Any, target: Any, config: Any, *, progress: Any = None,
               guide_mask: np.ndarray | None = None, **options: Any) -> tuple[bytes, Any]:
        from voxfield.compress import hybrid

        self.no_options(options)
        rep = hybrid.HybridReport()
        blob = hybrid.compress_hybrid(vol, config, target or default_target(), progress=progress,
                                      report=rep, guide_mask=guide_mask)
        return blob, rep

    def describe(self, report: Any) -> str:
        from voxfield.compress import hybrid

        return hybrid.describe_choice(report)

    def decode(self, reader: Any) -> Any:
        from voxfield.compress import hybrid

        return hybrid.decode_hybrid(reader)

    def open_region(self, reader: Any) -> Any:
        from voxfield.compress import hybrid

        return hybrid.RegionDecoder(reader)

    def summary(self, reader: Any) -> dict[str, Any]:
        method = reader.header.get("method", {})
        out = {"prior": method.get("prior", {}).get("name"), "residual": method.get("residual"),
               "selection": method.get("selection")}
        if method.get("filter"):
            f = method["filter"]
            out["filter"] = f"{f['dims']}-D conv, {f['channels']} channels, kernel {f['kernel']}"
        lp = method.get("learned")
        if isinstance(lp, dict):
            fl = lp.get("flags") or {}
            out["learned prior"] = (f"{lp.get('domain')} ({lp.get('weights')}), "
                                    f"{'adapted head' if lp.get('adapt') else 'shipped head'}, "
                                    f"conditioned on {lp.get('family')}, block flags {fl.get('shape')}")
        return out
