"""voxfield: neural fields to compress, denoise and reconstruct biological volumes."""

from voxfield.errors import VoxfieldError
from voxfield.io import Volume, read_volume, write_volume

__version__ = "0.1.0"

__all__ = ["Volume", "VoxfieldError", "__version__", "read_volume", "write_volume"]
