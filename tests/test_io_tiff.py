"""TIFF / ImageJ / OME-TIFF reading and writing (voxfield.io.tiff)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import shared_file

from voxfield.errors import FormatError
from voxfield.io import mrc, read_volume, tiff, write_volume
from voxfield.io.volume import Volume


def roundtrip(src: Path, tmp_path: Path, name: str | None = None) -> tuple[Volume, Volume, Path]:
    vol = tiff.read(src)
    out = tmp_path / (name or src.name)
    write_volume(vol, out)
    back = tiff.read(out)
    assert back.dtype == vol.dtype and np.array_equal(back.data, vol.data)
    assert back.axes == vol.axes
    assert back.unit == vol.unit
    assert back.spacing == pytest.approx(vol.spacing, rel=1e-7)
    assert back.origin == pytest.approx(vol.origin, abs=1e-9)
    return vol, back, out


# ---------------------------------------------------------------------------- ImageJ
def test_imagej_mri_head(fixtures: Path, tmp_path: Path) -> None:
    vol, back, _ = roundtrip(fixtures / "clesperanto_mini-t1-head.tif", tmp_path)
    assert vol.axes == "ZYX" and vol.shape == (32, 32, 32) and vol.dtype == np.uint16
    assert vol.unit == "mm"
    assert vol.spacing == pytest.approx((1.5, 1e6 / 666666, 1e6 / 666666), rel=1e-12)
    meta = back.meta["tiff"]
    assert meta["kind"] == "imagej"
    assert meta["imagej"]["Info"] == vol.meta["tiff"]["imagej"]["Info"]
    assert (meta["imagej"]["min"], meta["imagej"]["max"]) == (3.0, 521.0)
    # the same rational resolution (tifffile stores it reduced: 333333/500000)
    pairs = zip(meta["resolution"], vol.meta["tiff"]["resolution"], strict=True)
    assert [a * d == b * c for (a, b), (c, d) in pairs] == [True, True]


def test_imagej_beads_um_palette(tmp_path: Path) -> None:
    vol, back, _ = roundtrip(shared_file("fluorescence/bian_Bead_Image1_crop.tif"), tmp_path)
    assert vol.unit == "µm" and vol.axes == "ZYX" and vol.dtype == np.uint8
    assert vol.spacing[0] == 0.125
    assert vol.spacing[2] == pytest.approx(1e6 / 44460534, rel=1e-12)
    assert back.meta["tiff"]["photometric"] == "palette"
    assert back.meta["tiff"]["colormap"] == vol.meta["tiff"]["colormap"]
    assert back.meta["tiff"]["imagej"]["Labels"] == vol.meta["tiff"]["imagej"]["Labels"]


def test_imagej_hela_composite_rgb(tmp_path: Path) -> None:
    vol, back, _ = roundtrip(shared_file("multichannel/bian_hela-cells_3ch.tif"), tmp_path)
    assert vol.axes == "YXS" and vol.shape == (512, 672, 3) and vol.dtype == np.uint16
    old, new = vol.meta["tiff"]["imagej"], back.meta["tiff"]["imagej"]
    for key in ("Ranges", "Overlays", "mode", "Info", "Labels", "spacing"):
        assert new[key] == old[key], key
    assert isinstance(new["Overlays"], bytes)


def test_imagej_czyx_is_stored_in_imagej_order(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 4000, (2, 5, 16, 20), dtype=np.uint16)
    vol = Volume(data, "CZYX", (0.5, 0.2, 0.2), "µm")
    out = tmp_path / "czyx.tif"
    write_volume(vol, out)
    with tifffile.TiffFile(out) as tf:
        assert tf.is_imagej
        ij = tf.imagej_metadata
        assert (ij["channels"], ij["slices"]) == (2, 5)
    back = tiff.read(out)
    assert back.axes == "ZCYX"
    assert np.array_equal(back.data, np.moveaxis(data, 0, 1))
    assert back.spacing == pytest.approx((0.5, 0.2, 0.2), rel=1e-7) and back.unit == "µm"


# ---------------------------------------------------------------------------- plain TIFF
@pytest.mark.parametrize(
    ("rel", "axes"),
    [
        ("multichannel/imc_pancreas_cytomapper/E34_imc.tiff", "IYX"),
        ("fluorescence/pycudadecon_llsm_im_raw.tif", "IYX"),
        ("fluorescence/bian_membrane_2d_timelapse.tif", "QYX"),
    ],
)
def test_plain_tiffs(tmp_path: Path, rel: str, axes: str) -> None:
    vol, back, _ = roundtrip(shared_file(rel), tmp_path)
    assert vol.axes == axes and vol.unit == "px" and vol.spacing == (1.0, 1.0)
    assert back.meta["tiff"]["kind"] == "plain"


def test_plain_tiff_keeps_nm_unit_and_origin(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.int32).reshape(3, 4, 5)
    vol = Volume(data, "IYX", (2.5, 2.5), "nm", (10.0, -4.0))
    out = tmp_path / "stack.tif"
    write_volume(vol, out)
    back = tiff.read(out)
    assert back.axes == "IYX" and back.unit == "nm" and back.dtype == np.int32
    assert back.spacing == (2.5, 2.5) and back.origin == (10.0, -4.0)
    with tifffile.TiffFile(out) as tf:  # resolution tags for other readers: px per cm
        assert tf.pages.first.tags["XResolution"].value[0] / tf.pages.first.tags["XResolution"].value[1] == \
            pytest.approx(1e4 / 2.5e-3)


def test_compression_option_and_kept(fixtures: Path, tmp_path: Path) -> None:
    vol = tiff.read(fixtures / "clesperanto_mini-t1-head.tif")
    out = tmp_path / "zip.tif"
    write_volume(vol, out, compression="zlib")
    back = tiff.read(out)
    assert back.meta["tiff"]["compression"] == 8 and np.array_equal(back.data, vol.data)
    again = tmp_path / "again.tif"
    write_volume(back, again)  # the source's lossless compression is kept
    assert tiff.read(again).meta["tiff"]["compression"] == 8


# ---------------------------------------------------------------------------- OME-TIFF
def test_ome_5d_roundtrip(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 65535, (3, 4, 2, 24, 32), dtype=np.uint16)
    src = tmp_path / "five.ome.tif"
    tifffile.imwrite(src, data, ome=True, metadata={
        "axes": "TZCYX", "PhysicalSizeX": 0.108, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.108,
        "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 350.0, "PhysicalSizeZUnit": "nm",
        "TimeIncrement": 2.5, "TimeIncrementUnit": "s", "Channel": {"Name": ["DAPI", "GFP"]}})
    vol = tiff.read(src)
    assert vol.axes == "TZCYX" and np.array_equal(vol.data, data)
    assert vol.unit == "µm" and vol.spacing == pytest.approx((0.35, 0.108, 0.108), rel=1e-12)
    assert vol.meta["tiff"]["channel_names"] == ["DAPI", "GFP"]
    assert vol.meta["tiff"]["time_interval"] == 2.5
    out = tmp_path / "again.ome.tiff"
    write_volume(vol, out)
    back = tiff.read(out)
    assert back.meta["tiff"]["kind"] == "ome" and back.axes == "TZCYX"
    assert np.array_equal(back.data, data) and back.dtype == np.uint16
    assert back.spacing == pytest.approx(vol.spacing, rel=1e-12) and back.unit == "µm"
    assert back.meta["tiff"]["channel_names"] == ["DAPI", "GFP"]
    assert back.meta["tiff"]["time_interval"] == 2.5
    hyperstack = tmp_path / "hyper.tif"  # OME -> ImageJ keeps the frame interval and units
    write_volume(back, hyperstack)
    ij = tiff.read(hyperstack)
    assert ij.meta["tiff"]["kind"] == "imagej" and ij.axes == "TZCYX"
    assert ij.meta["tiff"]["imagej"]["finterval"] == 2.5
    assert ij.spacing == pytest.approx(vol.spacing, rel=1e-7) and ij.unit == "µm"


def test_mrc_volume_to_ome_tiff_keeps_angstrom_and_origin(fixtures: Path, tmp_path: Path) -> None:
    vol = mrc.read(fixtures / "emd_21457_seg.mrc")
    out = tmp_path / "seg.ome.tif"
    write_volume(vol, out)
    back = read_volume(out)
    assert back.format == "tiff" and back.meta["tiff"]["kind"] == "ome"
    assert back.unit == "Å" and back.axes == "ZYX"
    assert back.spacing == pytest.approx(vol.spacing, rel=1e-12)
    assert back.origin == pytest.approx(vol.origin, rel=1e-12)
    assert np.array_equal(back.data, vol.data)
    with tifffile.TiffFile(out) as tf:
        assert 'PhysicalSizeXUnit="Å"' in tf.ome_metadata
    # and the other way round: OME-TIFF (Å) -> MRC keeps the frame
    mrc_out = tmp_path / "seg.mrc"
    write_volume(back, mrc_out)
    again = mrc.read(mrc_out)
    assert again.spacing == pytest.approx(vol.spacing, rel=1e-6)
    assert again.origin == pytest.approx(vol.origin, rel=1e-6)


def test_mrc_volume_to_imagej_keeps_angstrom(fixtures: Path, tmp_path: Path) -> None:
    vol = mrc.read(fixtures / "emd_3197.map.gz")
    out = tmp_path / "map.tif"
    write_volume(vol, out)
    back = tiff.read(out)
    assert back.meta["tiff"]["kind"] == "imagej" and back.unit == "Å"
    assert back.spacing == pytest.approx(vol.spacing, rel=1e-6)
    assert back.origin == pytest.approx(vol.origin, rel=1e-6)


def test_stack_to_ome_uses_q_axis(tmp_path: Path) -> None:
    vol = Volume(np.zeros((4, 8, 8), np.float32), "IYX", (1.5, 1.5), "Å")
    out = tmp_path / "stack.ome.tif"
    write_volume(vol, out)
    back = tiff.read(out)
    assert back.axes == "QYX" and back.spacing == (1.5, 1.5) and back.unit == "Å"


def test_ome_pyramid_level(tmp_path: Path) -> None:
    data = np.random.default_rng(8).integers(0, 255, (64, 96), dtype=np.uint8)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, subifds=1, metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        tw.write(data[::2, ::2], subfiletype=1)
    vol = tiff.read(path, level=1)
    assert vol.shape == (32, 48) and vol.spacing == (1.0, 1.0) and vol.unit == "µm"
    assert vol.meta["tiff"]["level_shapes"] == [[64, 96], [32, 48]]
    with pytest.raises(FormatError, match="level 2 does not exist"):
        tiff.read(path, level=2)


# ---------------------------------------------------------------------------- bad input
def test_truncated_tiff(fixtures: Path, tmp_path: Path) -> None:
    src = (fixtures / "clesperanto_mini-t1-head.tif").read_bytes()
    for cut in (len(src) // 2, len(src) - 100, 100):
        bad = tmp_path / f"cut{cut}.tif"
        bad.write_bytes(src[:cut])
        with pytest.raises(FormatError, match="truncated|corrupt") as e:
            tiff.read(bad)
        assert str(bad) in str(e.value)


def test_truncated_plain_tiff(tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.ones((3, 16, 16), np.uint16), photometric="minisblack")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(FormatError, match="truncated"):
        tiff.read(bad)


def test_not_a_tiff(tmp_path: Path) -> None:
    bad = tmp_path / "text.tif"
    bad.write_bytes(b"this is not an image\n" * 20)
    with pytest.raises(FormatError, match="not a TIFF"):
        tiff.read(bad)
    with pytest.raises(FormatError, match="unknown or unsupported"):
        read_volume(bad)


def test_missing_series(fixtures: Path) -> None:
    with pytest.raises(FormatError, match="series 3 does not exist"):
        tiff.read(fixtures / "clesperanto_mini-t1-head.tif", series=3)
