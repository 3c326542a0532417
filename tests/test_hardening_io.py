"""Damaged and forged input: every reader and writer answers with a one-line VoxfieldError.

Regression tests for a fuzzing campaign (truncations, bit flips, byte overwrites, splices,
well-formed headers with absurd values). Each damaged file is built on the fly from a small
valid file written in ``tmp_path``. A reader must either read the damaged file or raise a
:class:`~voxfield.errors.VoxfieldError` whose one-line message names the file; any other
exception (a library's ``RuntimeError``, ``ZeroDivisionError``, ``TypeError``...) is a bug.
Writers fed forged ``Volume.meta`` header fields (as ``decompress`` is, from a ``.vxf``
header) must write the data and drop each bad field with a warning.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import tifffile

from voxfield.errors import DataError, FormatError, VoxfieldError
from voxfield.io import read_volume, write_volume
from voxfield.io.volume import Volume

# ---------------------------------------------------------------------------- helpers


def _vol(dtype: Any = np.float32, shape: tuple[int, ...] = (4, 6, 8)) -> Volume:
    data = (np.arange(int(np.prod(shape))) % 97).reshape(shape).astype(dtype)
    return Volume(data, "ZYX", (1.5, 1.5, 2.0), "Å", (0.0, 3.0, 6.0))


def _write(vol: Volume, path: Path, **options: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_volume(vol, path, **options)
    return path


def _assert_names_file(err: BaseException, *paths: Path | str) -> None:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
    assert any(str(p) in msg for p in paths), f"message does not name {paths}: {msg!r}"


def _read_fails(path: Path, kind: type[VoxfieldError] = VoxfieldError, **options: Any) -> VoxfieldError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(kind) as info:
            read_volume(path, **options)
    _assert_names_file(info.value, path)
    return info.value


def _cli_info_fails(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``voxfield info PATH`` exits 2 and prints exactly one error line naming the file."""
    from voxfield.cli.main import main

    capsys.readouterr()
    rc = main(["info", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "voxfield: error:" in ln]
    assert len(lines) == 1, err
    assert str(path) in lines[0], lines[0]
    return lines[0]


def _patch(path: Path, offset: int, new: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(new)] = new
    path.write_bytes(bytes(raw))
    return path


def _patch_after(path: Path, anchor: bytes, new: bytes, delta: int = 0) -> Path:
    i = path.read_bytes().find(anchor)
    assert i >= 0, f"{anchor!r} not in {path}"
    return _patch(path, i + len(anchor) + delta, new)


def _patch_tiff_tag(path: Path, page: int, name: str, value: int) -> Path:
    """Set a one-value SHORT/LONG tag of page ``page`` in place (a forged IFD entry)."""
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[page].tags[name]
        offset, code = tag.valueoffset, tag.dtype
    fmt = {3: "<H", 4: "<I", 16: "<Q"}[int(code)]
    return _patch(path, offset, struct.pack(fmt, value))


# ---------------------------------------------------------------------------- TIFF


def test_tiff_corrupt_deflate_strip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16), compression="zlib",
                     photometric="minisblack", metadata=None)
    with tifffile.TiffFile(path) as tf:
        offset, count = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    _patch(path, offset, b"\xff" * count)
    err = _read_fails(path, FormatError)
    assert "does not decode" in err.message
    _cli_info_fails(path, capsys)


@pytest.mark.parametrize(
    ("page", "tag", "value", "expect"),
    [
        (1, "ImageWidth", 7, "incompatible keyframe"),  # tifffile: RuntimeError
        (0, "RowsPerStrip", 0, ""),  # tifffile: ZeroDivisionError
        (0, "BitsPerSample", 7, ""),  # tifffile: AssertionError
        (0, "ImageWidth", 0, ""),  # tifffile: ZeroDivisionError
        (0, "StripOffsets", 1, "does not decode"),  # imagecodecs: DeflateError
    ],
)
def test_tiff_forged_tags(tmp_path: Path, page: int, tag: str, value: int, expect: str) -> None:
    path = _write(_vol(np.float64), tmp_path / "shaped.tif", compression="zlib")
    _patch_tiff_tag(path, page, tag, value)
    err = _read_fails(path, FormatError)
    assert expect in err.message


def test_tiff_absurd_size_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.zeros((6, 8), np.uint8), compression="zlib", metadata=None)
    _patch_tiff_tag(path, 0, "ImageWidth", 0xFFFFFFFF)
    err = _read_fails(path)
    assert "corrupt header" in err.message or "memory" in err.message


def test_tiff_unreadable_frame_values_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((3, 6, 8), np.uint8), imagej=True,
                     metadata={"axes": "ZYX", "spacing": "abc", "unit": "um", "finterval": "x"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = read_volume(path)
    assert vol.shape == (3, 6, 8) and vol.spacing_of("Z") == 1.0


# ---------------------------------------------------------------------------- HDF5


@pytest.mark.parametrize(("anchor", "delta"), [(b"axes\x00", 0), (b"unit\x00", 4), (b"HEAP", 0), (b"TREE", 0)])
def test_hdf5_corrupt_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str], anchor: bytes, delta: int) -> None:
    path = _write(_vol(), tmp_path / "v.h5")
    _patch_after(path, anchor, b"\xff\xff\xff\xff", delta)
    err = _read_fails(path, FormatError)
    assert "HDF5" in err.message
    _cli_info_fails(path, capsys)


def test_hdf5_absurd_shape_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import h5py

    huge = tmp_path / "huge.h5"
    with h5py.File(huge, "w") as fh:  # declared, never written: a few KB on disk
        fh.create_dataset("data", shape=(2**20, 2**20, 2**4), dtype="f4", chunks=(1, 64, 16))
    assert _read_fails(huge, DataError)
    big = tmp_path / "big.h5"
    with h5py.File(big, "w") as fh:
        fh.create_dataset("data", shape=(64, 64, 64), dtype="f4", chunks=(8, 8, 8))
    monkeypatch.setattr("voxfield.io.validate.memory_bytes", lambda: 1 << 16)
    err = _read_fails(big, DataError)
    assert "1,048,576 bytes" in err.message


def test_hdf5_foreign_attributes_with_odd_values_still_read(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("data", data=np.zeros((4, 6, 8), np.float32))
        ds.attrs["spacing"] = np.array([np.nan, 1.0, 1.0])
        ds.attrs["element_size_um"] = np.array([b"a", b"b", b"c"])
        ds.attrs["voxfield_meta"] = "[" * 100000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = read_volume(path)
    assert vol.spacing == (1.0, 1.0, 1.0) and vol.unit == "px"


# ---------------------------------------------------------------------------- OME-Zarr


def _zarr_store(tmp_path: Path, version: str = "0.4") -> Path:
    return _write(_vol(), tmp_path / "v.ome.zarr", version=version, chunks=(2, 3, 4))


def test_zarr_corrupt_blosc_chunk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _zarr_store(tmp_path)
    chunk = store / "0" / "0" / "0" / "0"
    chunk.write_bytes(b"\x02\x01\x21\x04" + b"\xff" * (len(chunk.read_bytes()) - 4))
    err = _read_fails(store, FormatError)
    assert "corrupt" in err.message
    _cli_info_fails(store, capsys)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_zarr_truncated_chunk(tmp_path: Path, version: str) -> None:
    store = _zarr_store(tmp_path, version)
    chunk = sorted(p for p in (store / "0").rglob("*") if p.is_file() and not p.name.startswith((".", "zarr")))[0]
    chunk.write_bytes(chunk.read_bytes()[:9])
    _read_fails(store, FormatError)


def test_zarr_zero_chunk_shape(tmp_path: Path) -> None:
    store = _zarr_store(tmp_path)
    zarray = store / "0" / ".zarray"
    meta = json.loads(zarray.read_text())
    meta["chunks"] = [0, 3, 4]  # zarr divides by it: ZeroDivisionError
    zarray.write_text(json.dumps(meta))
    _read_fails(store, FormatError)


@pytest.mark.parametrize(
    "multiscales",
    [["x"], "abc", [{"datasets": "0"}], [{"datasets": [{"path": 5}]}], [{"datasets": [{"path": "0"}], "axes": 5}],
     [{"datasets": [{"path": "nope"}]}], [{"datasets": [{"path": "0"}], "axes": [{"name": 1}, {"name": 2}]}]],
)
def test_zarr_malformed_ngff_metadata(tmp_path: Path, multiscales: Any) -> None:
    store = _zarr_store(tmp_path)
    zattrs = store / ".zattrs"
    attrs = json.loads(zattrs.read_text())
    attrs["multiscales"] = multiscales  # ["x"]: zarr reader used to raise AttributeError
    zattrs.write_text(json.dumps(attrs))
    _read_fails(store)


def test_zarr_absurd_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _zarr_store(tmp_path)
    zarray = store / "0" / ".zarray"
    meta = json.loads(zarray.read_text())
    meta["shape"] = [2**40, 2**40, 8]
    zarray.write_text(json.dumps(meta))
    _read_fails(store, DataError)
    meta["shape"] = [4000, 6000, 8000]  # plausible, but more than this (patched) machine holds
    zarray.write_text(json.dumps(meta))
    monkeypatch.setattr("voxfield.io.validate.memory_bytes", lambda: 1 << 30)
    err = _read_fails(store, DataError)
    assert "memory" in err.message


# ---------------------------------------------------------------------------- NumPy


def _npy_with_header(path: Path, header: str, data: bytes = b"") -> Path:
    text = header.encode("latin1")
    pad = (-(10 + len(text) + 1)) % 64
    text += b" " * pad + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, ",  # tokenize.TokenError
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 5), 'x': [",
        "{'descr': 5, 'fortran_order': False, 'shape': (3, 4, 5), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': 'abc', }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, None, 5), }",
    ],
)
def test_npy_corrupt_header(tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str) -> None:
    path = _npy_with_header(tmp_path / "h.npy", header, b"\0" * 240)
    err = _read_fails(path, FormatError)
    assert ".npy header" in err.message
    _cli_info_fails(path, capsys)


def test_npy_absurd_shape_refused(tmp_path: Path) -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 10), }"
    path = _npy_with_header(tmp_path / "big.npy", header, b"\0" * 64)
    _read_fails(path)


def test_npz_member_declaring_more_than_it_holds(tmp_path: Path) -> None:
    import zipfile

    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4000, 4000, 400), }"
    member = _npy_with_header(tmp_path / "m.npy", header, b"\0" * 64)
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(member, "data.npy")
    err = _read_fails(path, FormatError)
    assert "declares" in err.message


def test_npz_unsupported_zip_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(_vol(), tmp_path / "v.npz")
    raw = path.read_bytes()
    central = raw.find(b"PK\x01\x02")
    _patch(path, central + 6, b"\xff\x00")  # "version needed to extract" 25.5: NotImplementedError
    _read_fails(path, FormatError)
    _cli_info_fails(path, capsys)


def test_npz_forged_description_falls_back_to_guessed_axes(tmp_path: Path) -> None:
    desc = {"shape": [4, 6, 8], "dtype": "<f4", "axes": "ZYX", "spacing": [None, "a", 1], "unit": "Å",
            "origin": "xyz", "meta": {}}
    path = tmp_path / "f.npz"
    np.savez(path, data=np.zeros((4, 6, 8), np.float32), voxfield_meta=np.array(json.dumps(desc)))
    with pytest.warns(UserWarning, match="voxfield_meta"):
        vol = read_volume(path)
    assert vol.axes == "ZYX" and vol.spacing == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------- MRC


@pytest.mark.parametrize(
    ("word", "value", "kind"),
    [
        (23, 2**31 - 1, FormatError),  # nsymbt: a 2 GB extended header in a 2 KB file
        (23, -5, FormatError),
        (0, 2**31 - 1, VoxfieldError),  # nx
        (2, 0, DataError),  # nz
        (3, 7, FormatError),  # mode
    ],
)
def test_mrc_absurd_header_values(tmp_path: Path, word: int, value: int, kind: type[VoxfieldError]) -> None:
    path = _write(_vol(), tmp_path / "v.mrc")
    _patch(path, 4 * word, struct.pack("<i", value))
    _read_fails(path, kind)


def test_mrc_gz_absurd_nsymbt(tmp_path: Path) -> None:
    import gzip

    plain = _write(_vol(), tmp_path / "v.mrc")
    _patch(plain, 4 * 23, struct.pack("<i", 2**31 - 1))
    path = tmp_path / "v.mrc.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    _read_fails(path, FormatError)


# ---------------------------------------------------------------------------- the registry safety net


def test_read_volume_wraps_any_reader_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(_vol(), tmp_path / "v.npy")

    def broken(p: Path) -> Volume:
        raise ZeroDivisionError("deep inside\na library " + "x" * 1000)

    monkeypatch.setattr("voxfield.io.numpy_io.read_npy", broken)
    err = _read_fails(path, FormatError)
    assert "cannot read as npy: corrupt or unsupported file (ZeroDivisionError: deep inside a library" in err.message
    assert len(err.message) < 400
    _cli_info_fails(path, capsys)


def test_read_volume_memory_error_is_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(_vol(), tmp_path / "v.npy")

    def greedy(p: Path) -> Volume:
        return np.empty(2**62, np.uint8)  # numpy's MemoryError records the size asked for

    monkeypatch.setattr("voxfield.io.numpy_io.read_npy", greedy)
    err = _read_fails(path, DataError)
    assert f"{2**62:,} bytes" in err.message


# ---------------------------------------------------------------------------- info


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                                   "uint64", "float16", "float32", "float64", "longdouble", "complex64",
                                   "complex128"])
def test_value_stats_every_numeric_dtype(dtype: str) -> None:
    from voxfield.cli.info import value_stats

    data = (np.arange(60).reshape(3, 4, 5) % 2).astype(dtype)
    stats = value_stats(data)
    assert stats["min"] == 0.0 and stats["max"] == 1.0
    assert stats["mean"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in stats.values())


def test_info_on_boolean_npy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voxfield.cli.main import main

    path = tmp_path / "mask.npy"
    np.save(path, np.arange(60).reshape(3, 4, 5) % 3 == 0)
    assert main(["info", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dtype"] == "bool" and out["stats"]["max"] == 1.0


# ---------------------------------------------------------------------------- Volume frame


@pytest.mark.parametrize(
    ("spacing", "origin"),
    [((None, 1.0, 1.0), ()), (("a", 1.0, 1.0), ()), ((float("nan"), 1.0, 1.0), ()), ((1.0, 1.0), ()),
     ("abc", ()), ((1.0, float("inf"), 1.0), ()), ((), (None, 0.0, 0.0)), ((), "xyz"), ((), (0.0, 0.0)),
     ((True, 1.0, 1.0), ()), ((), (0.0, float("-inf"), 0.0))],
)
def test_volume_refuses_bad_spacing_and_origin(spacing: Any, origin: Any) -> None:
    with pytest.raises(DataError):
        Volume(np.zeros((2, 3, 4), np.float32), "ZYX", spacing, "Å", origin)


@pytest.mark.parametrize(
    ("key", "value"),
    [("spacing", [None, None, None]), ("spacing", "abc"), ("origin", [None, 0, 0]), ("origin", 5),
     ("shape", None), ("shape", ["a", 3, 4]), ("dtype", None), ("dtype", "garbage"), ("dtype", "O"), ("axes", None),
     ("axes", 5), ("unit", 5), ("unit", "a\x00b")],
)
def test_volume_from_forged_description(key: str, value: Any) -> None:
    desc = _vol().describe()
    desc[key] = value
    with pytest.raises(DataError):
        Volume.from_description(desc, np.zeros((4, 6, 8), np.float32))


# ---------------------------------------------------------------------------- writers and forged metadata


def _forged_write(vol: Volume, ns: str, key: str, value: Any, path: Path, sub: str | None = None) -> Volume:
    """Write ``vol`` with ``meta[ns][key]`` (or ``meta[ns][key][sub]``) forged; check that a
    warning names the field and that the data read back are unchanged."""
    meta = json.loads(json.dumps(vol.meta, default=lambda o: None))
    meta[ns] = dict(vol.meta.get(ns) or {})
    if sub is None:
        meta[ns][key] = value
    else:
        meta[ns][key] = dict(meta[ns].get(key) or {})
        meta[ns][key][sub] = value
    forged = Volume(vol.data, vol.axes, vol.spacing, vol.unit, vol.origin, meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_volume(forged, path)
    field = sub or key
    assert any(field in str(w.message) for w in caught), [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = read_volume(path)
    np.testing.assert_array_equal(back.data, vol.data)
    return back


@pytest.mark.parametrize(
    ("key", "value"),
    [("mx", 2**40), ("my", -(2**40)), ("mz", 1e300), ("mapc", 2**40), ("mapr", None), ("maps", "abc"),
     ("nxstart", 2**40), ("cella", []), ("cella", [1e300, 1, 1]), ("cellb", "abc"), ("origin", [None, 1, 2]),
     ("ispg", 401), ("ispg", -3), ("nversion", 2**40), ("labels", 5), ("labels", [1, None]), ("exttyp", "\u4e00"),
     ("extended_header", 5), ("dmin", "x"), ("rms", 1e300), ("data_crc32", "x"), ("label_fill", 7)],
)
def test_mrc_writer_forged_fields(tmp_path: Path, key: str, value: Any) -> None:
    src = _write(_vol(), tmp_path / "src.mrc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = read_volume(src)
    back = _forged_write(vol, "mrc", key, value, tmp_path / "out.mrc")
    assert back.axes == "ZYX"
    assert back.spacing == pytest.approx(vol.spacing)


def test_mrc_writer_axis_order_not_a_permutation(tmp_path: Path) -> None:
    vol = read_volume(_write(_vol(), tmp_path / "src.mrc"))
    vol.meta["mrc"].update(mapc=1, mapr=1, maps=2)
    with pytest.warns(UserWarning, match="mapc/mapr/maps"):
        write_volume(vol, tmp_path / "out.mrc")
    with mrcfile.open(tmp_path / "out.mrc") as m:
        assert (int(m.header.mapc), int(m.header.mapr), int(m.header.maps)) == (1, 2, 3)
    np.testing.assert_array_equal(read_volume(tmp_path / "out.mrc").data, vol.data)


@pytest.mark.parametrize(
    ("key", "sub", "value"),
    [("compression", None, "x"), ("compression", None, 2**40), ("resolution", None, [[0, 0], [1, 0]]),
     ("resolution", None, "abc"), ("imagej", None, 5), ("imagej", "Ranges", ["a", None]), ("imagej", "LUTs", [5]),
     ("imagej", "Properties", {"a": None}), ("imagej", "spacing", "abc"), ("imagej", "mode", "a\nimages=99"),
     ("imagej", "Info", "\udcff"), ("photometric", None, 5), ("time_interval", None, "x"),
     ("shape", None, None)],
)
def test_tiff_writer_forged_fields(tmp_path: Path, key: str, sub: str | None, value: Any) -> None:
    src = tmp_path / "src.tif"
    tifffile.imwrite(src, (np.arange(3 * 6 * 8) % 200).astype(np.uint8).reshape(3, 6, 8), imagej=True,
                     compression="zlib", resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0, "Ranges": (0.0, 10.0), "Info": "x"})
    vol = read_volume(src)
    _forged_write(vol, "tiff", key, value, tmp_path / "out.tif", sub)


@pytest.mark.parametrize(
    ("key", "value"),
    [("chunks", [0, 0, 0]), ("chunks", ["a", 1, 1]), ("chunks", 5), ("datasets", "abc"), ("datasets", list(range(99))),
     ("name", {"a": float("nan")}), ("name", "\udcff"), ("time_interval", "x"), ("omero", {"x": float("nan")}),
     ("omero", {"x": b"bytes"}), ("omero", [1])],
)
def test_zarr_writer_forged_fields(tmp_path: Path, key: str, value: Any) -> None:
    vol = read_volume(_zarr_store(tmp_path))
    _forged_write(vol, "zarr", key, value, tmp_path / "out.ome.zarr")


@pytest.mark.parametrize(
    ("key", "value"),
    [("chunks", [0, 0, 0]), ("chunks", [-1, 2, 2]), ("chunks", ["a", 1, 1]), ("compression", "szip"),
     ("compression", ["gzip"]), ("compression_opts", 99), ("compression_opts", "x"), ("attrs", [1, 2])],
)
def test_hdf5_writer_forged_settings(tmp_path: Path, key: str, value: Any) -> None:
    vol = read_volume(_write(_vol(), tmp_path / "src.h5"))
    _forged_write(vol, "hdf5", key, value, tmp_path / "out.h5")


@pytest.mark.parametrize(
    ("name", "value"),
    [("big", 2**70), ("neg", -(2**70)), ("ragged", [[1], [1, 2]]), ("mixed", ["a", 1]), ("nested", {"a": 1}),
     ("nul", "a\x00b"), ("", 1), ("a\x00b", 1), ("x" * 300, 1), ("surrogate", "\udcff"), ("deep", [[[[[[[[[1]]]]]]]]]),
     ("big list", list(range(100000))), ("CLASS", "DIMENSION_SCALE"), ("REFERENCE_LIST", 5)],
)
def test_hdf5_writer_drops_odd_foreign_attributes(tmp_path: Path, name: str, value: Any) -> None:
    vol = read_volume(_write(_vol(), tmp_path / "src.h5"))
    vol.meta["hdf5"]["attrs"] = {name: value, "kept": 3, "nan": float("nan"), "long": "y" * 70000, "slash/name": 1}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_volume(vol, tmp_path / "out.h5")
    assert any("hdf5.attrs" in str(w.message) for w in caught)
    back = read_volume(tmp_path / "out.h5")
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.meta["hdf5"]["attrs"]["kept"] == 3 and back.meta["hdf5"]["attrs"]["slash/name"] == 1


def _forged_vxf(tmp_path: Path, meta: dict[str, Any]) -> Path:
    """A lossless .vxf of a small volume whose header carries ``meta`` (as an attacker or a
    damaged disk could leave it); the header checksum is recomputed so that it loads."""
    from voxfield.cli.main import main
    from voxfield.compress import container

    src = _write(_vol(), tmp_path / "src.mrc")
    vxf = tmp_path / "src.vxf"
    assert main(["compress", str(src), "--codec", "zstd", "--lossless", "-o", str(vxf)]) == 0
    with container.VxfReader(vxf) as reader:
        header = reader.header
        sections = {name: reader.section(name) for name in reader.section_names}
    header["volume"]["meta"].update(meta)
    forged = tmp_path / "forged.vxf"
    forged.write_bytes(container.dumps(header, sections))
    return forged


def test_decompress_to_h5_with_forged_attribute_does_not_crash(tmp_path: Path) -> None:
    """A NUL in an attribute name reached HDF5 as ``DIMENSION_LABELS``, which made setting
    the dimension labels segfault (exit 139). Run in a child process: a crash must fail
    this test, not kill the test run."""
    forged = _forged_vxf(tmp_path, {"hdf5": {"shape": [4, 6, 8], "attrs": {"DIMENSION_LABELS\x00x": 5,
                                                                          "DIMENSION_LIST\x00": [1]}}})
    out = tmp_path / "out.h5"
    code = textwrap.dedent(f"""
        import sys
        from voxfield.cli.main import main
        sys.exit(main(["decompress", {str(forged)!r}, "-o", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "DIMENSION_LABELS" in proc.stderr  # the dropped attribute is named in a warning
    np.testing.assert_array_equal(read_volume(out).data, _vol().data)


def test_decompress_to_mrc_with_forged_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voxfield.cli.main import main

    forged = _forged_vxf(tmp_path, {"mrc": {"axes": "ZYX", "shape": [4, 6, 8], "mx": 2**40, "cella": [],
                                            "mapc": None, "labels": 5, "ispg": "x"}})
    out = tmp_path / "out.mrc"
    assert main(["decompress", str(forged), "-o", str(out)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "mrc['mx']" in err and "Traceback" not in err
    np.testing.assert_array_equal(read_volume(out).data, _vol().data)


def test_decompress_with_null_spacing_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voxfield.cli.main import main
    from voxfield.compress import container

    forged = _forged_vxf(tmp_path, {})
    with container.VxfReader(forged) as reader:
        header = reader.header
        sections = {name: reader.section(name) for name in reader.section_names}
    header["volume"]["spacing"] = [None, None, None]
    forged.write_bytes(container.dumps(header, sections))
    rc = main(["decompress", str(forged), "-o", str(tmp_path / "out.mrc")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "voxfield: error:" in ln]) == 1
    assert "spacing" in err


# ---------------------------------------------------------------------------- particle files


def _stack(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "s.mrcs"
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.zeros((n, 8, 8), np.float32))
        m.voxel_size = 1.0
    return path


def _cs_array(n: int = 3) -> np.ndarray:
    dt = [("blob/path", "S20"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)), ("blob/psize_A", "<f4"),
          ("alignments3D/pose", "<f4", (3,)), ("alignments3D/shift", "<f4", (2,)), ("ctf/df1_A", "<f4"),
          ("ctf/df2_A", "<f4"), ("ctf/df_angle_rad", "<f4"), ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"),
          ("ctf/amp_contrast", "<f4")]
    a = np.zeros(n, dt)
    a["blob/path"] = b"s.mrcs"
    a["blob/idx"] = np.arange(n)
    a["blob/shape"] = 8
    a["blob/psize_A"] = 1.0
    a["ctf/accel_kv"] = 300.0
    a["ctf/df1_A"] = a["ctf/df2_A"] = 1e4
    return a


def _save_cs(path: Path, a: np.ndarray) -> Path:
    with open(path, "wb") as fh:
        np.save(fh, a)
    return path


def test_cs_with_zero_dimensional_array(tmp_path: Path) -> None:
    from voxfield.reconstruct.particles import load_particles

    _stack(tmp_path)
    path = _save_cs(tmp_path / "scalar.cs", _cs_array(1)[0:1].reshape(()))
    with pytest.raises(FormatError) as info:
        load_particles(path)
    _assert_names_file(info.value, path)


@pytest.mark.parametrize(
    ("field", "dtype", "expect"),
    [("alignments3D/pose", "<f4", "has shape (3,), expected (3, 3)"),  # was read as ONE rotation vector
     ("blob/idx", "<f4", "blob/idx"), ("blob/shape", "<f4", "blob/shape"), ("ctf/df1_A", "S4", "not numeric"),
     ("blob/psize_A", "<f4", None)],
)
def test_cs_fields_of_the_wrong_shape_or_type(tmp_path: Path, field: str, dtype: str, expect: str | None) -> None:
    from voxfield.reconstruct.particles import load_particles

    _stack(tmp_path)
    good = _cs_array()
    fields = [(n, dtype) if n == field else (n, good.dtype[n].base.str, good.dtype[n].shape) for n in good.dtype.names]
    bad = np.zeros(3, [f if len(f) == 2 or f[2] else f[:2] for f in fields])
    for n in good.dtype.names:
        if n != field:
            bad[n] = good[n]
    if field == "blob/psize_A":
        bad[field] = np.nan  # unknown pixel size: the stack header's is used
    path = _save_cs(tmp_path / "bad.cs", bad)
    if expect is None:
        assert load_particles(path).apix == 1.0
        return
    with pytest.raises(DataError) as info:
        load_particles(path)
    _assert_names_file(info.value, path)
    assert expect in info.value.message


def test_cs_absurd_row_count(tmp_path: Path) -> None:
    from voxfield.reconstruct.particles import load_particles

    path = _save_cs(tmp_path / "a.cs", _cs_array())
    raw = path.read_bytes()
    i = raw.find(b"'shape': (3,)")
    path.write_bytes(raw[:i] + b"'shape': (99999999999,)" + raw[i + len(b"'shape': (3,)") + 10:])
    with pytest.raises(FormatError) as info:
        load_particles(path)
    _assert_names_file(info.value, path)


def test_star_non_integer_optics_group(tmp_path: Path) -> None:
    from voxfield.reconstruct.particles import load_particles

    _stack(tmp_path)
    path = tmp_path / "p.star"
    path.write_text("data_particles\n\nloop_\n_rlnImageName\n_rlnOpticsGroup\n_rlnAngleRot\n_rlnAngleTilt\n"
                    "_rlnAnglePsi\n1@s.mrcs abc 0 0 0\n2@s.mrcs def 0 0 0\n")
    with pytest.raises(VoxfieldError) as info:
        load_particles(path)
    _assert_names_file(info.value, path)


def test_particle_entry_points_wrap_library_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voxfield.reconstruct import particles

    _stack(tmp_path)
    path = _save_cs(tmp_path / "a.cs", _cs_array())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("pandas\nexploded")

    monkeypatch.setattr(particles, "_cs_metadata", broken)
    with pytest.raises(FormatError, match="cannot read particle file: corrupt or unsupported file "
                                          r"\(RuntimeError: pandas exploded\)") as info:
        particles.load_particles(path)
    _assert_names_file(info.value, path)
    pkl = tmp_path / "poses.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump([[1, 2], [3]], fh)  # ragged: numpy raises ValueError
    with pytest.raises(VoxfieldError) as info:
        particles.load_pose_pkl(pkl)
    _assert_names_file(info.value, pkl)


def test_pickle_may_not_call_numpy_functions(tmp_path: Path) -> None:
    from voxfield.reconstruct.particles import load_ctf_pkl

    target = tmp_path / "written_by_pickle.npy"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cnumpy\nsave\n(V" + str(target).encode() + b"\nI1\ntR.")
    with pytest.raises(FormatError):
        load_ctf_pkl(evil)
    assert not target.exists()


# ---------------------------------------------------------------------------- seeded mini-fuzz


def _mutate(raw: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """One random damage: truncation, bit flips, overwrite, splice or an absurd header word."""
    b = bytearray(raw)
    kind = rnd.randrange(5)
    if kind == 0:
        n = rnd.randrange(0, len(b))
        return bytes(b[:n]), f"truncate to {n}"
    if kind == 1:
        flips = [(rnd.randrange(len(b)), rnd.randrange(8)) for _ in range(rnd.randint(1, 8))]
        for i, bit in flips:
            b[i] ^= 1 << bit
        return bytes(b), f"flip {flips}"
    if kind == 2:
        i, n = rnd.randrange(len(b)), rnd.randint(1, 16)
        b[i:i + n] = bytes(rnd.randrange(256) for _ in range(n))
        return bytes(b), f"overwrite {n} at {i}"
    if kind == 3:
        i, j = rnd.randrange(len(b)), rnd.randrange(len(b))
        n = rnd.randint(1, 64)
        piece = bytes(b[i:i + n])
        b[j:j + len(piece)] = piece
        return bytes(b), f"splice {i}+{n} to {j}"
    i = rnd.randrange(0, max(1, min(len(b), 2048) - 8)) & ~3
    word = rnd.choice([b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x00\x00\x00\x00",
                       b"\xff\xff\xff\xff\xff\xff\xff\x7f"])
    b[i:i + len(word)] = word
    return bytes(b), f"word {word.hex()} at {i}"


def _fuzz(valid: Path, read: Callable[[Path], Any], *, seed: int, n: int = 200,
          names: Callable[[Path], tuple[Path | str, ...]] | None = None) -> None:
    """``n`` mutations of ``valid`` (a file, or a folder whose files are mutated one at a
    time): each must read or raise a one-line VoxfieldError naming the file."""
    rnd = random.Random(seed)
    files = [valid] if valid.is_file() else sorted(p for p in valid.rglob("*") if p.is_file())
    failures: list[str] = []
    for i in range(n):
        target = valid.with_name("fuzzed" + "".join(valid.suffixes))
        if valid.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(valid, target)
            victim = target / rnd.choice(files).relative_to(valid)
        else:
            victim = target
        raw = (victim if valid.is_dir() else valid).read_bytes()
        if not raw:
            continue
        damaged, how = _mutate(raw, rnd)
        victim.write_bytes(damaged)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read(target)
        except VoxfieldError as exc:
            msg = str(exc)
            expected = names(target) if names else (target,)
            if "\n" in msg or not any(str(p) in msg for p in expected):
                failures.append(f"#{i} {victim.name} {how}: message {msg!r}")
        except Exception as exc:  # noqa: BLE001 - what this test hunts
            failures.append(f"#{i} {victim.name} {how}: {type(exc).__name__}: {exc}"[:300])
    assert not failures, f"{len(failures)} of {n} damaged files escaped:\n" + "\n".join(failures[:8])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("v.mrc", lambda p: _write(_vol(), p)),
        ("v.mrc.gz", lambda p: _write(_vol(), p)),
        ("v.mrcs", lambda p: _write(Volume(np.ones((3, 6, 8), np.int16), "IYX"), p)),
        ("v.tif", lambda p: _write(_vol(np.float64), p, compression="zlib")),
        ("v.tif", lambda p: _write(_vol(np.uint8), p)),
        ("v.ome.tif", lambda p: _write(_vol(), p, compression="zlib")),
        ("v.npy", lambda p: _write(_vol(), p)),
        ("v.npz", lambda p: _write(_vol(), p)),
        ("v.h5", lambda p: _write(_vol(), p)),
        ("v.ome.zarr", lambda p: _write(_vol(), p, chunks=(2, 3, 4))),
        ("v.ome.zarr", lambda p: _write(_vol(), p, chunks=(2, 3, 4), version="0.5")),
    ],
    ids=["mrc", "mrc.gz", "mrcs", "tiff-zlib", "imagej", "ome-tiff", "npy", "npz", "hdf5", "zarr-v2", "zarr-v3"],
)
def test_mini_fuzz_volume_readers(tmp_path: Path, name: str, make: Callable[[Path], Path]) -> None:
    valid = make(tmp_path / name)
    read_volume(valid)
    _fuzz(valid, read_volume, seed=sum(name.encode()) + len(str(make)), n=200)


@pytest.mark.parametrize("kind", ["star", "cs", "pose-pkl", "ctf-pkl"])
def test_mini_fuzz_particle_readers(tmp_path: Path, kind: str) -> None:
    from voxfield.reconstruct.particles import load_particles, write_cryodrgn_pkls
    from voxfield.reconstruct.star_io import write_relion31_star

    stack = _stack(tmp_path)
    rot = np.stack([np.eye(3, dtype=np.float32)] * 3)
    ctf = np.tile(np.array([8, 1.0, 1e4, 1e4, 0, 300, 2.7, 0.1, 0], np.float32), (3, 1))
    if kind == "star":
        valid = tmp_path / "p.star"
        write_relion31_star(valid, rot=rot, ctf=ctf, apix=1.0, D=8, stack=("s.mrcs", 3))
        read: Callable[[Path], Any] = load_particles
    elif kind == "cs":
        valid = _save_cs(tmp_path / "p.cs", _cs_array())
        read = load_particles
    else:
        poses, ctf_pkl = tmp_path / "poses.pkl", tmp_path / "ctf.pkl"
        write_cryodrgn_pkls(poses, ctf_pkl, rot, np.zeros((3, 2)), ctf, 8)
        if kind == "pose-pkl":
            valid = poses
            read = lambda p: load_particles(stack, poses=p)  # noqa: E731
        else:
            valid = ctf_pkl
            read = lambda p: load_particles(stack, require_poses=False, ctf=p)  # noqa: E731
    read(valid)
    _fuzz(valid, read, seed=len(kind) * 7919, n=200, names=lambda p: (p, stack))


# ---------------------------------------------------------------------------- found by the fuzzer


def test_tiff_circular_ifd_chain_is_refused_quickly(tmp_path: Path) -> None:
    """A damaged OME-TIFF whose IFD chain is circular made tifffile list its series
    forever (fuzz seed 7, case 42); the reader walks the chain first and refuses it."""
    p = tmp_path / "loop.ome.tif"
    shutil.copy(Path(__file__).parent / "data" / "fuzz_circular_ifd.ome.tif", p)
    code = ("import sys\nfrom voxfield.io import read_volume\nfrom voxfield.errors import FormatError\n"
            f"try:\n    read_volume({str(p)!r})\nexcept FormatError as e:\n    print(e); sys.exit(2)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "loop.ome.tif" in run.stdout and "circular" in run.stdout


def test_hdf5_zero_spacing_is_ignored_with_a_warning(tmp_path: Path) -> None:
    """Spacing [0, 0, 0] in HDF5 attributes made ``compress`` write a .vxf it then refused
    (fuzz seed 10, case 209); it now reads as unknown voxel size, with a warning."""
    import h5py

    p = tmp_path / "z.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("data", data=np.ones((4, 5, 6), np.float32))
        ds.attrs["axes"] = "ZYX"
        ds.attrs["spacing"] = np.zeros(3)
        ds.attrs["unit"] = "Å"
    with pytest.warns(UserWarning, match="ignoring spacing"):
        vol = read_volume(p)
    assert vol.spacing == (1.0, 1.0, 1.0) and vol.unit == "px"


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, -2.0, 1.0)])
def test_volume_refuses_non_positive_spacing(spacing: tuple[float, ...]) -> None:
    with pytest.raises(DataError, match="not positive"):
        Volume(np.zeros((2, 2, 2)), "ZYX", spacing)
