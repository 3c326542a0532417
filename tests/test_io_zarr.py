"""OME-Zarr reading and writing (voxfield.io.omezarr)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError
from voxfield.io import mrc, omezarr, read_volume, write_volume
from voxfield.io.volume import Volume

zarr = omezarr.zarr  # imported by voxfield.io.omezarr (works around a numcodecs/zfpy clash)


def test_map_roundtrip_with_pyramid(tmp_path: Path) -> None:
    vol = mrc.read(example_map_path())
    out = tmp_path / "map.ome.zarr"
    write_volume(vol, out)
    attrs = json.loads((out / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["unit"] for a in ms["axes"]] == ["angstrom"] * 3
    back = read_volume(out)
    assert back.format == "zarr" and back.axes == "ZYX"
    assert back.dtype == vol.dtype and np.array_equal(back.data, vol.data)
    assert back.spacing == vol.spacing and back.origin == vol.origin and back.unit == "Å"
    assert back.meta["zarr"]["level_shapes"] == [[64, 64, 64], [32, 32, 32]]
    level1 = read_volume(out, level=1)
    assert level1.shape == (32, 32, 32)
    assert level1.spacing == pytest.approx(tuple(2 * s for s in vol.spacing))
    # voxel centres: the first coarse voxel sits half a fine voxel further
    assert level1.origin == pytest.approx(tuple(o + s / 2 for o, s in zip(vol.origin, vol.spacing)))
    expected = vol.data.reshape(32, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)
    assert np.array_equal(level1.data, expected)


def test_shared_map_and_version_05(tmp_path: Path) -> None:
    from conftest import shared_file

    vol = mrc.read(shared_file("cryoem_maps/emd_3488.mrc"))
    out = tmp_path / "emd_3488.ome.zarr"
    omezarr.write(vol, out, version="0.5")
    meta = json.loads((out / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["attributes"]["ome"]["version"] == "0.5"
    back = omezarr.read(out)
    assert np.array_equal(back.data, vol.data) and back.spacing == vol.spacing
    assert back.meta["zarr"]["zarr_format"] == 3
    assert back.meta["zarr"]["level_shapes"] == [[100, 100, 100], [50, 50, 50]]


def test_5d_roundtrip_anisotropic(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 65535, (2, 3, 10, 150, 140), dtype=np.uint16)
    vol = Volume(data, "TCZYX", (2.0, 0.25, 0.25), "µm", (5.0, -1.0, 3.0))
    out = tmp_path / "five.ome.zarr"
    write_volume(vol, out)
    back = read_volume(out)
    assert back.axes == "TCZYX" and np.array_equal(back.data, data)
    assert back.spacing == vol.spacing and back.origin == vol.origin and back.unit == "µm"
    shapes = back.meta["zarr"]["level_shapes"]
    assert shapes[1] == [2, 3, 10, 75, 70]  # T, C never; Z not while it is 8x coarser
    assert shapes[-1][4] < 64 <= shapes[-2][4]
    level1 = read_volume(out, level=1)
    assert level1.spacing == (2.0, 0.5, 0.5)
    assert level1.origin == pytest.approx((5.0, -0.875, 3.125))
    assert level1.dtype == np.uint16
    manual = np.rint(data[:, :, :, :, :].reshape(2, 3, 10, 75, 2, 70, 2).mean(axis=(4, 6)))
    assert np.array_equal(level1.data, manual.astype(np.uint16))


def test_odd_sizes_and_levels_option(tmp_path: Path) -> None:
    data = np.arange(5 * 7 * 9, dtype=np.uint8).reshape(5, 7, 9)
    out = tmp_path / "odd.zarr"
    omezarr.write(Volume(data, "ZYX"), out, levels=3)
    back = omezarr.read(out, level=2)
    assert back.meta["zarr"]["level_shapes"] == [[5, 7, 9], [3, 4, 5], [2, 2, 3]]
    assert back.dtype == np.uint8


def test_ngff_axis_order_and_channel_metadata(tmp_path: Path) -> None:
    data = np.random.default_rng(4).random((6, 2, 20, 20), dtype=np.float32)
    out = tmp_path / "zc.ome.zarr"
    write_volume(Volume(data, "ZCYX", (1.0, 0.5, 0.5), "nm"), out)
    back = read_volume(out)
    assert back.axes == "CZYX" and np.array_equal(back.data, np.moveaxis(data, 1, 0))
    # add omero channel metadata as another tool would; it survives a voxfield rewrite
    group = zarr.open_group(str(out), mode="r+")
    omero = {"channels": [{"label": "DAPI", "color": "0000FF", "window": {"start": 0, "end": 1}},
                          {"label": "GFP", "color": "00FF00", "window": {"start": 0, "end": 1}}]}
    group.attrs["omero"] = omero
    vol = read_volume(out)
    assert vol.meta["zarr"]["omero"] == omero
    again = tmp_path / "again.ome.zarr"
    write_volume(vol, again)
    assert json.loads((again / ".zattrs").read_text())["omero"] == omero


def test_refuses_two_channel_like_axes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="one channel-like axis"):
        omezarr.write(Volume(np.zeros((2, 3, 8, 8), np.uint8), "CIYX"), tmp_path / "x.zarr")


def test_reads_ome_zarr_library_output(tmp_path: Path) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    data = np.random.default_rng(5).integers(0, 1000, (2, 16, 64, 64), dtype=np.uint16)
    for fmt, zarr_format in ((None, 3), (FormatV04(), 2)):
        out = tmp_path / f"lib{zarr_format}.ome.zarr"
        group = zarr.open_group(str(out), mode="w", zarr_format=zarr_format)
        write_image(data, group, axes="czyx", fmt=fmt, scale_factors=(2,),
                    scale={"c": 1.0, "z": 0.4, "y": 0.2, "x": 0.2},
                    axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
        vol = read_volume(out)
        assert vol.axes == "CZYX" and np.array_equal(vol.data, data)
        assert vol.spacing == pytest.approx((0.4, 0.2, 0.2)) and vol.unit == "µm"
        coarse = read_volume(out, level=1)
        assert coarse.shape == (2, 16, 32, 32)
        assert coarse.spacing == pytest.approx((0.4, 0.4, 0.4))
        assert vol.meta["zarr"]["zarr_format"] == zarr_format
        assert len(vol.meta["zarr"]["level_shapes"]) == 2


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_library_reads_our_output(tmp_path: Path, version: str) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    vol = mrc.read(example_map_path())
    out = tmp_path / "ours.ome.zarr"
    write_volume(vol, out, version=version)
    node = next(iter(Reader(parse_url(str(out)))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["coordinateTransformations"][1][0]["scale"] == [2 * s for s in vol.spacing]
    assert np.array_equal(np.asarray(node.data[0]), vol.data)
    assert tuple(node.data[1].shape) == (32, 32, 32)


def test_overwrite_existing_store_atomically(tmp_path: Path) -> None:
    out = tmp_path / "store.ome.zarr"
    first = Volume(np.zeros((4, 70, 70), np.uint8), "ZYX")
    second = Volume(np.ones((3, 8, 8), np.int16), "ZYX", (2.0, 2.0, 2.0), "µm")
    write_volume(first, out)
    write_volume(second, out)
    back = read_volume(out)
    assert back.shape == (3, 8, 8) and back.dtype == np.int16 and back.unit == "µm"
    assert not (out / "1").exists()  # nothing left of the first store's pyramid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.ome.zarr"]


def test_failed_write_keeps_old_store(tmp_path: Path) -> None:
    out = tmp_path / "keep.zarr"
    write_volume(Volume(np.ones((2, 8, 8), np.uint8), "ZYX"), out)
    with pytest.raises(DataError):
        write_volume(Volume(np.zeros((2, 2, 8, 8), np.uint8), "CIYX"), out)
    assert read_volume(out).shape == (2, 8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.zarr"]


def test_plain_zarr_array_reads_with_warning(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    out = tmp_path / "plain.zarr"
    arr = zarr.create_array(store=str(out), shape=data.shape, dtype=data.dtype, zarr_format=2)
    arr[...] = data
    with pytest.warns(UserWarning, match="guessed axes 'CZYX'"):
        vol = read_volume(out)
    assert vol.axes == "CZYX" and np.array_equal(vol.data, data) and vol.unit == "px"


def test_plain_zarr_group_reads_largest_array(tmp_path: Path) -> None:
    out = tmp_path / "group.zarr"
    group = zarr.open_group(str(out), mode="w")
    group.create_array("small", shape=(4, 4), dtype="u1")[...] = 1
    group.create_array("big", shape=(3, 6, 6), dtype="u2")[...] = 7
    with pytest.warns(UserWarning, match="no OME-NGFF"):
        vol = read_volume(out)
    assert vol.shape == (3, 6, 6) and vol.axes == "ZYX" and int(vol.data.max()) == 7


def test_bad_stores(tmp_path: Path) -> None:
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(FormatError, match="not an OME-Zarr"):
        read_volume(empty)
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    with pytest.raises(FormatError) as e:
        read_volume(broken)
    assert str(broken) in str(e.value)
    out = tmp_path / "ok.zarr"
    write_volume(Volume(np.zeros((2, 8, 8), np.uint8), "ZYX"), out)
    with pytest.raises(FormatError, match="level 5 does not exist"):
        read_volume(out, level=5)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_truncated_blosc_chunk_is_refused_every_time(tmp_path: Path, version: str) -> None:
    """A Blosc chunk cut short may decode from memory past its end (garbage one run, an
    error the next): the reader checks each chunk's size against its Blosc header first."""
    rng = np.random.default_rng(3)
    vol = Volume(rng.integers(0, 4000, (24, 24, 24), dtype=np.uint16), "ZYX", (1.0, 1.0, 1.0), "um")
    out = tmp_path / "u16.ome.zarr"
    omezarr.write(vol, out, version=version)
    chunks = [f for f in (out / "0").rglob("*") if f.is_file() and not f.name.startswith(".")
              and f.name != "zarr.json"]
    assert chunks
    victim = max(chunks, key=lambda f: f.stat().st_size)
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])
    for _ in range(3):
        with pytest.raises(FormatError, match="truncated"):
            read_volume(out)
    victim.write_bytes(raw + b"\0")  # too long is refused as well
    with pytest.raises(FormatError, match="Blosc header"):
        read_volume(out)
    victim.write_bytes(raw)
    np.testing.assert_array_equal(read_volume(out).data, vol.data)
