"""NPY/NPZ (voxfield.io.numpy_io) and HDF5 (voxfield.io.hdf5)."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import shared_file
from test_io_mrc import assert_same_header

from voxfield.errors import DataError, FormatError
from voxfield.io import mrc, numpy_io, read_volume, write_volume
from voxfield.io.volume import Volume


# ---------------------------------------------------------------------------- NPY
def test_npy_keeps_data_only(fixtures: Path, tmp_path: Path) -> None:
    vol = mrc.read(fixtures / "emd_3197.map.gz")
    out = tmp_path / "map.npy"
    write_volume(vol, out)
    back = read_volume(out)
    assert back.format == "npy" and back.axes == "ZYX"
    assert back.dtype == vol.dtype and np.array_equal(back.data, vol.data)
    assert back.unit == "px" and "mrc" not in back.meta  # metadata is dropped, as documented
    assert "npz" in numpy_io.write_npy.__doc__


@pytest.mark.parametrize(("ndim", "axes"), [(2, "YX"), (3, "ZYX"), (4, "CZYX"), (5, "TCZYX")])
def test_npy_axes_guess(tmp_path: Path, ndim: int, axes: str) -> None:
    data = np.arange(2**ndim, dtype=np.int16).reshape((2,) * ndim)
    np.save(tmp_path / "a.npy", data)
    assert numpy_io.read_npy(tmp_path / "a.npy").axes == axes


def test_npy_fortran_order_and_big_endian(tmp_path: Path) -> None:
    data = np.asfortranarray(np.arange(24, dtype=">f4").reshape(2, 3, 4))
    np.save(tmp_path / "f.npy", data)
    back = read_volume(tmp_path / "f.npy")
    assert np.array_equal(back.data, data) and back.dtype == np.dtype("float32")
    assert back.meta["npy"]["fortran_order"] is True


def test_npy_refuses_objects_and_truncation(tmp_path: Path) -> None:
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        read_volume(obj)
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((10, 10, 10), np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(FormatError, match="truncated"):
        read_volume(cut)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(FormatError, match="corrupt .npy header"):
        read_volume(bad)
    with pytest.raises(DataError, match="object"):
        numpy_io.write_npy(Volume(np.array([[1, None]], dtype=object), "YX"), tmp_path / "o.npy")


# ---------------------------------------------------------------------------- NPZ
def test_npz_roundtrip_keeps_everything(fixtures: Path, tmp_path: Path) -> None:
    src = fixtures / "emd_3001.map.gz"
    vol = mrc.read(src)
    out = tmp_path / "map.npz"
    write_volume(vol, out)
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["data", "voxfield_meta"]
        assert npz["voxfield_meta"].dtype.kind == "U" and npz["voxfield_meta"].ndim == 0
    back = read_volume(out)
    assert back.format == "npz" and back.axes == vol.axes
    assert np.array_equal(back.data, vol.data) and back.dtype == vol.dtype
    assert back.spacing == vol.spacing and back.origin == vol.origin and back.unit == vol.unit
    assert back.meta["mrc"] == vol.meta["mrc"]  # including the extended header bytes
    assert isinstance(back.meta["mrc"]["extended_header"], bytes)
    # NPZ -> MRC gives back the original header
    again = tmp_path / "again.map.gz"
    write_volume(back, again)
    assert_same_header(src, again)


def test_npz_foreign_arr_0() -> None:
    vol = read_volume(shared_file("medical/imageio_stent_ct.npz"))
    assert vol.axes == "ZYX" and vol.shape == (256, 128, 128) and vol.dtype == np.int16
    assert vol.meta["npz"]["key"] == "arr_0" and vol.unit == "px"


def test_npz_key_choice(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    np.savez(path, small=np.zeros((2, 2)), big=np.ones((3, 4, 5)), other=np.zeros((4, 4)))
    with pytest.warns(UserWarning, match="largest, 'big'"):
        vol = read_volume(path)
    assert vol.shape == (3, 4, 5)
    assert read_volume(path, key="other").shape == (4, 4)
    with pytest.raises(FormatError, match="no array 'nope'"):
        read_volume(path, key="nope")
    hidden = tmp_path / "archive.bin"  # an npz under another name is found by content
    hidden.write_bytes(path.read_bytes())
    assert read_volume(hidden, key="other").format == "npz"


def test_npz_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, data=np.arange(1000.0).reshape(10, 10, 10))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(FormatError, match="corrupt|truncated"):
        read_volume(cut)
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(FormatError):
        read_volume(fake)
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as zf, zf.open("data.npy", "w") as fh:
        np.save(fh, np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        read_volume(tmp_path / "pickled.npz")


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_every_format_header_survives_npz_and_hdf5(fixtures: Path, tmp_path: Path, suffix: str) -> None:
    store = tmp_path / "src.ome.zarr"
    write_volume(mrc.read(fixtures / "emd_3197.map.gz"), store)
    sources = [fixtures / "emd_3001.map.gz", fixtures / "clesperanto_mini-t1-head.tif", store]
    for i, src in enumerate(sources):
        vol = read_volume(src)
        out = tmp_path / f"copy{i}{suffix}"
        write_volume(vol, out)
        back = read_volume(out)
        assert back.meta[vol.format] == vol.meta[vol.format], src
        assert np.array_equal(back.data, vol.data) and back.axes == vol.axes


# ---------------------------------------------------------------------------- HDF5
def test_hdf5_roundtrip_keeps_everything(fixtures: Path, tmp_path: Path) -> None:
    vol = mrc.read(fixtures / "emd_21457_seg.mrc")
    out = tmp_path / "seg.h5"
    write_volume(vol, out)
    with h5py.File(out, "r") as fh:
        ds = fh["data"]
        assert ds.compression == "gzip" and ds.chunks is not None
        assert ds.attrs["axes"] == "ZYX"
        assert np.allclose(ds.attrs["element_size_um"], np.array(vol.spacing) * 1e-4)
        assert [d.label for d in ds.dims] == ["z", "y", "x"]
    back = read_volume(out)
    assert back.format == "hdf5" and back.axes == "ZYX"
    assert np.array_equal(back.data, vol.data) and back.dtype == vol.dtype
    assert back.spacing == vol.spacing and back.origin == vol.origin and back.unit == "Å"
    assert back.meta["mrc"] == vol.meta["mrc"]


def test_hdf5_key_and_lzf(tmp_path: Path) -> None:
    vol = Volume(np.arange(60, dtype=np.uint16).reshape(3, 4, 5), "CYX", (0.5, 0.5), "µm")
    out = tmp_path / "k.h5"
    write_volume(vol, out, key="images/raw", compression="lzf")
    with h5py.File(out, "r") as fh:
        assert fh["images/raw"].compression == "lzf"
    back = read_volume(out)  # the only dataset
    assert back.axes == "CYX" and np.array_equal(back.data, vol.data)
    assert read_volume(out, key="images/raw").meta["hdf5"]["key"] == "images/raw"
    with pytest.raises(FormatError, match="no dataset 'missing'"):
        read_volume(out, key="missing")


def test_hdf5_foreign_element_size(tmp_path: Path) -> None:
    path = tmp_path / "fiji.h5"
    data = np.random.default_rng(6).integers(0, 255, (4, 10, 12), dtype=np.uint8)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("small", data=np.zeros((2, 2)))
        ds = fh.create_dataset("volume/raw", data=data)
        ds.attrs["element_size_um"] = [0.3, 0.1, 0.1]
    with pytest.warns(UserWarning, match="largest, 'volume/raw'"):
        vol = read_volume(path)
    assert vol.axes == "ZYX" and np.array_equal(vol.data, data)
    assert vol.spacing == (0.3, 0.1, 0.1) and vol.unit == "µm"


def test_hdf5_foreign_axis_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.h5"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("data", data=np.zeros((2, 3, 4, 5), np.float32))
        for i, name in enumerate("zcyx"):
            ds.dims[i].label = name
        il = fh.create_dataset("ilastik", data=np.zeros((3, 4, 2), np.uint8))
        il.attrs["axistags"] = json.dumps({"axes": [{"key": k, "typeFlags": 2} for k in "yxc"]})
    assert read_volume(path).axes == "ZCYX"
    ilastik = read_volume(path, key="ilastik")
    assert ilastik.axes == "YXC"
    out = tmp_path / "again.h5"
    write_volume(ilastik, out)  # foreign attributes survive a round trip
    with h5py.File(out, "r") as fh:
        assert json.loads(fh["data"].attrs["axistags"])["axes"][2]["key"] == "c"


def test_hdf5_corrupt(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    write_volume(Volume(np.random.default_rng(7).random((20, 30, 40)), "ZYX"), good)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FormatError) as e:
        read_volume(cut)
    assert str(cut) in str(e.value)
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 200)
    with pytest.raises(FormatError, match="HDF5"):
        read_volume(fake)
    empty = tmp_path / "none.h5"
    with h5py.File(empty, "w") as fh:
        fh.attrs["note"] = "no data"
    with pytest.raises(FormatError, match="no numeric dataset"):
        read_volume(empty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_volume(good).shape == (20, 30, 40)
