"""Format detection, read_volume/write_volume entry points (voxfield.io.registry)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from conftest import shared_file

from voxfield.errors import DataError, FormatError, OutputError
from voxfield.io import detect_format, read_volume, write_volume
from voxfield.io.volume import Volume


@pytest.fixture
def samples(fixtures: Path, tmp_path: Path) -> dict[str, Path]:
    """One small file per format, each named by its usual suffix."""
    data = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    np.save(tmp_path / "a.npy", data)
    np.savez(tmp_path / "a.npz", data=data)
    with h5py.File(tmp_path / "a.h5", "w") as fh:
        fh["data"] = data
    write_volume(Volume(data, "ZYX"), tmp_path / "a.ome.zarr")
    return {
        "mrc": fixtures / "emd_21457_seg.mrc",
        "mrc.gz": fixtures / "emd_3001.map.gz",
        "tiff": fixtures / "clesperanto_mini-t1-head.tif",
        "zarr": tmp_path / "a.ome.zarr",
        "npy": tmp_path / "a.npy",
        "npz": tmp_path / "a.npz",
        "hdf5": tmp_path / "a.h5",
    }


@pytest.mark.parametrize(("key", "fmt"), [("mrc", "mrc"), ("mrc.gz", "mrc"), ("tiff", "tiff"),
                                          ("zarr", "zarr"), ("npy", "npy"), ("npz", "npz"), ("hdf5", "hdf5")])
def test_detection_by_content(samples: dict[str, Path], key: str, fmt: str) -> None:
    assert detect_format(samples[key]) == fmt
    vol = read_volume(samples[key])
    assert vol.format == fmt and vol.meta["source"] == str(samples[key])


@pytest.mark.parametrize(("key", "fmt", "fake"), [("mrc", "mrc", "map.tif"), ("tiff", "tiff", "head.mrc"),
                                                  ("npy", "npy", "array.h5"), ("hdf5", "hdf5", "data.npz"),
                                                  ("mrc.gz", "mrc", "compressed.dat")])
def test_misleading_suffix(samples: dict[str, Path], tmp_path: Path, key: str, fmt: str, fake: str) -> None:
    target = tmp_path / "renamed" / fake
    target.parent.mkdir()
    shutil.copy(samples[key], target)
    assert detect_format(target) == fmt
    assert read_volume(target).shape == read_volume(samples[key]).shape


def test_unknown_missing_empty(tmp_path: Path) -> None:
    text = tmp_path / "notes.xyz"
    text.write_text("not an image\n")
    with pytest.raises(FormatError, match="unknown or unsupported file format"):
        read_volume(text)
    with pytest.raises(FormatError, match="no such file"):
        read_volume(tmp_path / "missing.mrc")
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="file is empty") as e:
        read_volume(empty)
    assert str(empty) in str(e.value)
    with pytest.raises(FormatError, match="suffix"):
        write_volume(Volume(np.zeros((2, 2)), "YX"), tmp_path / "out.xyz")


def test_axes_override_on_llsm_tiff() -> None:
    vol = read_volume(shared_file("fluorescence/pycudadecon_llsm_im_raw.tif"), axes="zyx")
    assert vol.axes == "ZYX" and vol.shape == (88, 320, 256)
    assert vol.meta["axes_overridden_from"] == "IYX"
    assert len(vol.spacing) == 3
    with pytest.raises(FormatError, match="3 dimensions"):
        read_volume(shared_file("fluorescence/pycudadecon_llsm_im_raw.tif"), axes="YX")


def test_axes_override_on_tiff_stack(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    assert read_volume(path).axes == "QYX"
    assert read_volume(path, axes="ZYX").axes == "ZYX"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    vol = Volume(np.zeros((2, 3, 4, 5), np.float32), "TZYX")
    with pytest.raises(DataError, match="MRC holds"):
        write_volume(vol, out_dir / "result.mrc")
    assert os.listdir(out_dir) == []


def test_failed_write_keeps_existing_file(fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep.mrc"
    shutil.copy(fixtures / "emd_21457_seg.mrc", out)
    before = out.read_bytes()
    with pytest.raises(DataError):
        write_volume(Volume(np.zeros((2, 2, 3, 4), np.float32), "CTYX"), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mrc"]


def test_output_folder_problems(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 3, 4), np.float32), "ZYX")
    with pytest.raises(OutputError, match="does not exist"):
        write_volume(vol, tmp_path / "missing" / "x.mrc")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_volume(vol, afile / "x.mrc")
    with pytest.raises(OutputError, match="exists"):
        write_volume(vol, afile.with_name("afile"), format="mrc", overwrite=False)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_volume(Volume(np.zeros((2, 3, 4), np.float32), "ZYX"), locked / "x.tif")
    finally:
        locked.chmod(0o700)


def test_unknown_reader_option(samples: dict[str, Path]) -> None:
    with pytest.raises(FormatError, match="option not understood"):
        read_volume(samples["tiff"], stack=True)
