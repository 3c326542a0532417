"""Compression into ``.vxf`` files: classic codecs now, neural fields next."""

from voxfield.compress.api import decompress, describe
from voxfield.compress.classic import compress_volume

__all__ = ["compress_volume", "decompress", "describe"]
