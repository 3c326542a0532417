"""Codec registry: name -> class.

>>> from voxfield.codecs import get_codec, Target
>>> codec = get_codec("zstd", level=3)
>>> codec.decode(codec.encode(array))          # doctest: +SKIP
>>> get_codec("sperr").encode(array, Target.ratio(64))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from voxfield.codecs.base import Codec
from voxfield.codecs.hevc import HevcCodec
from voxfield.codecs.jpeg2k import Jpeg2kCodec
from voxfield.codecs.jpegxl import JpegxlCodec
from voxfield.codecs.lossless import GzipCodec, RawCodec, ZstdCodec
from voxfield.codecs.quantize import QuantCodec
from voxfield.codecs.sperr import SperrCodec
from voxfield.codecs.sz3 import Sz3Codec
from voxfield.codecs.zfp import ZfpCodec
from voxfield.errors import OptionError

#: Every codec class by name, lossless first.
CODECS: dict[str, type[Codec]] = {
    c.name: c
    for c in (
        RawCodec, GzipCodec, ZstdCodec, QuantCodec, Sz3Codec, SperrCodec, ZfpCodec,
        Jpeg2kCodec, JpegxlCodec, HevcCodec,
    )
}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Add a codec class to the registry (usable as a class decorator)."""
    if not cls.name:
        raise ValueError("a codec class needs a name")
    CODECS[cls.name] = cls
    return cls


def codec_names() -> list[str]:
    """Names of all registered codecs (available on this machine or not)."""
    return list(CODECS)


def available_codecs() -> list[str]:
    """Names of the registered codecs whose backend is present on this machine."""
    return [name for name, cls in CODECS.items() if cls.available()]


def get_codec(name: str, **config: Any) -> Codec:
    """A codec instance by name, configured with keyword options.

    Raises OptionError for an unknown name (listing the known ones) or an option the
    codec does not take.
    """
    try:
        cls = CODECS[name]
    except (KeyError, TypeError):
        raise OptionError(f"unknown codec {name!r} (known: {', '.join(CODECS)})") from None
    try:
        return cls(**config)
    except TypeError as exc:
        raise OptionError(f"codec {name}: {exc}") from None


def codec_from_config(config: dict[str, Any]) -> Codec:
    """Rebuild a codec from :meth:`Codec.get_config` output (``{"name": ..., **options}``)."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name is None:
        raise OptionError("codec config has no 'name'")
    return get_codec(name, **cfg)
