"""Benchmark inputs: real files from the project's data collection, or any path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from voxfield.errors import OptionError


@dataclass(frozen=True)
class Dataset:
    """One benchmark input: a file and how to read it."""

    name: str
    path: Path
    axes: str | None = None
    note: str = ""


#: The inputs of the committed classic-codec run (issue 2), relative to the data folder.
DEFAULT_DATASETS: tuple[tuple[str, str, str | None, str], ...] = (
    ("emd_3488", "cryoem_maps/emd_3488.mrc", None, "EMD-3488 haemoglobin, 3.2 Å, 100^3 float32, 1.05 Å"),
    ("emd_21457_seg", "cryoem_maps/emd_21457_seg.mrc", None, "EMD-21457 spike N-domain segment, 47x40x48 float32"),
    ("llsm_raw", "fluorescence/pycudadecon_llsm_im_raw.tif", "ZYX",
     "lattice light-sheet raw stack, 88x320x256 uint16"),
    ("imc_E34", "multichannel/imc_pancreas_cytomapper/E34_imc.tiff", "CYX",
     "imaging mass cytometry, 5 channels x 100x100 float32"),
)


#: The inputs of the neural-codec run (issue 3).
NEURAL_DATASETS: tuple[tuple[str, str, str | None, str], ...] = (
    DEFAULT_DATASETS[0],
    DEFAULT_DATASETS[1],
    DEFAULT_DATASETS[2],
    ("calcium_2Dt", "fluorescence/imageio_calcium_imaging_2Dt.tif", "TYX",
     "calcium imaging movie, 1000 frames of 30x40 uint16 (2D+t)"),
    DEFAULT_DATASETS[3],
)


def find_data_root(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The real-data folder: ``explicit``, ``$VOXFIELD_SHARED_DATA``, or ``../shared/data``
    beside the current folder or beside the source checkout."""
    cands: list[Path] = []
    if explicit:
        cands.append(Path(explicit))
    if os.environ.get("VOXFIELD_SHARED_DATA"):
        cands.append(Path(os.environ["VOXFIELD_SHARED_DATA"]))
    cands.append(Path.cwd().parent / "shared" / "data")
    cands.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    for c in cands:
        if c.is_dir():
            return c
    return None


def default_datasets(root: str | os.PathLike[str] | None = None,
                     table: tuple[tuple[str, str, str | None, str], ...] = DEFAULT_DATASETS,
                     names: list[str] | None = None) -> list[Dataset]:
    """Benchmark inputs of ``table`` found under the data folder (missing ones skipped),
    optionally only those named in ``names``."""
    base = find_data_root(root)
    if base is None:
        raise OptionError("no input files given and the data collection (../shared/data) was not found; "
                          "pass files or --data-root")
    out = []
    for name, rel, axes, note in table:
        if names is not None and name not in names:
            continue
        p = base / rel
        if p.exists():
            out.append(Dataset(name, p, axes, note))
    if not out:
        raise OptionError(f"none of the default benchmark files exist under {base}")
    return out


def dataset_from_path(spec: str) -> Dataset:
    """A dataset from ``PATH`` or ``PATH:AXES`` (e.g. ``stack.tif:ZYX``)."""
    path, axes = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and tail and tail.isalpha() and tail.isupper():
        path, axes = head, tail
    p = Path(path)
    name = p.name.split(".")[0]
    return Dataset(name, p, axes)


def mirror_tiled_emd3488(size: int, root: str | os.PathLike[str] | None = None):
    """EMD-3488 (100^3, 1.05 Å) extended to ``size``^3 by mirror tiling (numpy "symmetric"
    padding), so every voxel is a voxel of the real map: the large-map benchmarks' input.
    Returns a :class:`voxfield.io.Volume` with the map's voxel size and origin 0."""
    import numpy as np

    from voxfield.io import Volume, read_volume

    base = find_data_root(root)
    if base is None:
        raise OptionError("the real-data collection (../shared/data) is needed for EMD-3488")
    src = read_volume(base / "cryoem_maps" / "emd_3488.mrc")
    data = src.data
    while min(data.shape) < size:
        data = np.pad(data, [(0, max(0, size - n)) for n in data.shape], mode="symmetric")
    data = np.ascontiguousarray(data[:size, :size, :size], dtype=np.float32)
    return Volume(data, "ZYX", src.spacing, src.unit, (0.0, 0.0, 0.0), {"format": "mrc"})
