"""Rate metrics: compression ratio and bits per voxel (SCI's BPV)."""

from __future__ import annotations

from ._validate import positive_number


def compression_ratio(original_nbytes: int, compressed_nbytes: int) -> float:
    """Compression ratio ``original_nbytes / compressed_nbytes`` (dimensionless, "x").

    Both sizes in bytes and > 0; count the real bytes (the whole compressed file, headers
    included), not a parameter count. Raises :class:`~voxfield.errors.OptionError` otherwise.
    """
    o = positive_number(original_nbytes, "original_nbytes")
    c = positive_number(compressed_nbytes, "compressed_nbytes")
    return o / c


def bits_per_voxel(compressed_nbytes: int, n_voxels: int) -> float:
    """Bits per voxel ``8 * compressed_nbytes / n_voxels`` (SCI's BPV).

    ``n_voxels`` counts every sample of the array (all channels and time points). For
    float32 data, ``32 / bits_per_voxel`` is the compression ratio against the raw array.
    """
    c = positive_number(compressed_nbytes, "compressed_nbytes")
    n = positive_number(n_voxels, "n_voxels")
    return 8.0 * c / n
