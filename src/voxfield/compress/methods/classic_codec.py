"""``classic``: one adapter for every classic codec of :mod:`voxfield.codecs` (SPERR,
SZ3, ZFP, HEVC, JPEG 2000, JPEG XL, quantize, zstd, gzip, raw)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voxfield.compress import classic
from voxfield.compress.registry import Method, register_method

#: Codec of ``--codec`` without a name and of the demo.
DEFAULT_CODEC = "sperr"


@dataclass
class ClassicConfig:
    """``codec``: the codec's name (:func:`voxfield.codecs.registry.available_codecs`);
    ``options``: the codec's own settings (``{"level": 3}`` for zstd)."""

    codec: str = DEFAULT_CODEC
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from voxfield.codecs.registry import get_codec

        get_codec(self.codec, **self.options)  # unknown names and settings: OptionError


@register_method("classic")
class ClassicCodec(Method):
    """A classic codec's payload in a ``.vxf`` container."""

    kind = "classic"
    Config = ClassicConfig

    def config(self, **settings: Any) -> ClassicConfig:
        """``codec=NAME`` plus the codec's own settings (``classic`` with ``codec="zstd",
        level=3``)."""
        codec = settings.pop("codec", DEFAULT_CODEC)
        options = dict(settings.pop("options", None) or {}, **settings)
        cfg = ClassicConfig(str(codec), options)
        cfg.validate()
        return cfg

    def encode(self, vol: Any, target: Any, config: ClassicConfig, *, progress: Any = None,
               **options: Any) -> tuple[bytes, str]:
        from voxfield.codecs.registry import get_codec

        self.no_options(options)
        return classic.compress_volume(vol, get_codec(config.codec, **config.options), target), config.codec

    def describe(self, report: Any) -> str:
        return str(report)

    def decode(self, reader: Any) -> Any:
        return classic.decode_classic(reader)
