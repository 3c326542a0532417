"""Data shipped inside the package.

``emd_3488_crop64.mrc.gz``: a 64^3 crop (voxels 18..81 on each axis, nstart = 18) of
EMD-3488, human haemoglobin at 3.2 Å (Khoshouei et al. 2017), 1.05 Å voxels, from the
EMDB (CC0). It keeps 99.9 % of the density above 3 sigma of the full 100^3 map and is the
default input of ``voxfield demo``.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

EXAMPLE_MAP = "emd_3488_crop64.mrc.gz"


def example_map_path() -> Path:
    """Path of the shipped example map (EMD-3488 crop, 64^3 float32, 1.05 Å)."""
    ref = files("voxfield.data") / EXAMPLE_MAP
    with as_file(ref) as p:
        return Path(p)
