"""``cryo-pe-set``: several maps in one file, one network and one latent vector per map
(:mod:`voxfield.compress.cryo_pe_set`, ``voxfield compress-set``)."""

from __future__ import annotations

from typing import Any

from voxfield.compress.registry import Method, register_method


@register_method("cryo-pe-set")
class CryoPESet(Method):
    """A set of maps; every decode names a member (number from 1, or name)."""

    kind = "set"

    def config(self, **settings: Any) -> Any:
        from voxfield.compress import cryo_pe_set

        cfg = cryo_pe_set.CryoPESetConfig.preset(self.name, **settings)
        cfg.validate()
        return cfg

    def encode(self, vol: Any, target: Any, config: Any, *, progress: Any = None,
               **options: Any) -> tuple[bytes, Any]:
        """``vol``: a sequence of Volumes; ``options``: ``thresholds``, ``names``."""
        from voxfield.compress import cryo_pe_set

        rep = cryo_pe_set.CryoPESetReport()
        blob = cryo_pe_set.compress_set(vol, config, target, progress=progress, report=rep, **options)
        return blob, rep

    def decode(self, reader: Any, member: int | str | None = None) -> Any:
        from voxfield.compress import cryo_pe_set

        return cryo_pe_set.decode_member(reader, member)

    def summary(self, reader: Any) -> dict[str, Any]:
        from voxfield.compress import cryo_pe_set

        return cryo_pe_set.set_summary(reader.header.get("method", {}))
