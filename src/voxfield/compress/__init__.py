"""Compression into ``.vxf`` files: classic codecs now, neural fields next."""

from voxfield.compress.api import decompress, describe
from voxfield.compress.classic import compress_volume

__all__ = ["compress_volume", "decompress", "describe"]

from voxfield._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__)  # `voxfield.compress(...)` calls voxfield.api.compress
