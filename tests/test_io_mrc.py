"""MRC/CCP4/MRCS reading and writing (voxfield.io.mrc)."""

from __future__ import annotations

import gzip
import shutil
import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from conftest import shared_file

from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError
from voxfield.io import mrc, read_volume, tiff, write_volume
from voxfield.io.volume import Volume


# ---------------------------------------------------------------------------- helpers
def raw_header(path: Path) -> tuple[dict[str, np.ndarray], bytes, np.ndarray]:
    """Header fields, extended header and file-order data, read with mrcfile directly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True) as m:
            fields = {n: np.array(m.header[n]).copy() for n in m.header.dtype.names}
            return fields, bytes(m.extended_header), np.array(m.data)


def assert_same_header(original: Path, written: Path, ignore: tuple[str, ...] = ("machst",)) -> None:
    a, ext_a, _ = raw_header(original)
    b, ext_b, _ = raw_header(written)
    differing = [n for n in a if n not in ignore and not np.array_equal(a[n], b[n])]
    assert differing == [], {n: (a[n], b[n]) for n in differing}
    assert ext_a == ext_b


def roundtrip(src: Path, tmp_path: Path, name: str | None = None, **read_opts) -> tuple[Volume, Volume, Path]:
    vol = mrc.read(src, **read_opts)
    out = tmp_path / (name or src.name)
    write_volume(vol, out)
    back = mrc.read(out, **read_opts)
    assert back.dtype == vol.dtype
    assert np.array_equal(back.data, vol.data)
    assert back.axes == vol.axes
    assert back.spacing == vol.spacing and back.origin == vol.origin and back.unit == vol.unit
    return vol, back, out


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["emd_21457_seg.mrc", "emd_3001.map.gz", "emd_3197.map.gz"])
def test_roundtrip_committed_maps(fixtures: Path, tmp_path: Path, name: str) -> None:
    _, _, out = roundtrip(fixtures / name, tmp_path)
    assert_same_header(fixtures / name, out)


def test_roundtrip_emd_3001_stays_gzip_with_axis_order(fixtures: Path, tmp_path: Path) -> None:
    src = fixtures / "emd_3001.map.gz"
    _, _, out = roundtrip(src, tmp_path, "copy.map.gz")
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    fields, ext, data = raw_header(out)
    _, _, original = raw_header(src)
    assert (int(fields["mapc"]), int(fields["mapr"]), int(fields["maps"])) == (3, 1, 2)
    assert int(fields["ispg"]) == 4 and len(ext) == 160
    assert np.array_equal(data, original)  # on-disk order restored exactly


def test_roundtrip_shipped_example(tmp_path: Path) -> None:
    src = example_map_path()
    vol, _, out = roundtrip(src, tmp_path)
    assert_same_header(src, out)
    assert vol.shape == (64, 64, 64)
    assert vol.origin == pytest.approx((18 * 1.05,) * 3, rel=1e-6)


@pytest.mark.parametrize("rel", ["cryoem_maps/emd_3488.mrc", "cryoem_maps/emd_1703.map",
                                 "cryoem_maps/cylindra_beta-tubulin_from_EMD-7974.mrc"])
def test_roundtrip_shared_maps(tmp_path: Path, rel: str) -> None:
    src = shared_file(rel)
    vol, _, out = roundtrip(src, tmp_path)
    assert vol.axes == "ZYX" and vol.unit == "Å"
    assert_same_header(src, out)


def test_roundtrip_relion_stack(tmp_path: Path) -> None:
    src = shared_file("particles/real/relion31.mrcs")
    with pytest.warns(UserWarning, match="read permissively") as rec:
        vol = mrc.read(src)
    assert len([w for w in rec if "read permissively" in str(w.message)]) == 1
    assert vol.axes == "IYX" and vol.shape == (5, 256, 256)
    out = tmp_path / "stack.mrcs"
    write_volume(vol, out)
    back = mrc.read(out)  # a valid file now: no warning
    assert back.axes == "IYX" and np.array_equal(back.data, vol.data)
    # The writer repairs the missing map ID; every other field is kept (stats -1,-2,-3,-1 too).
    assert_same_header(src, out, ignore=("machst", "map"))


def test_bzip2_output(fixtures: Path, tmp_path: Path) -> None:
    vol, _, out = roundtrip(fixtures / "emd_3197.map.gz", tmp_path, "emd_3197.mrc.bz2")
    assert out.read_bytes()[:3] == b"BZh"
    assert vol.meta["mrc"]["compression"] == "gzip"
    assert mrc.read(out).meta["mrc"]["compression"] == "bzip2"
    assert_same_header(fixtures / "emd_3197.map.gz", out)


# ---------------------------------------------------------------------------- frame
def test_emd_3001_canonical_orientation(fixtures: Path) -> None:
    vol = mrc.read(fixtures / "emd_3001.map.gz")
    fields, _, raw = raw_header(fixtures / "emd_3001.map.gz")
    assert raw.shape == (25, 43, 73)  # sections = Y, rows = X, columns = Z
    assert vol.axes == "ZYX"
    assert np.array_equal(vol.data, raw.transpose(2, 0, 1))
    cella = fields["cella"]
    expected = (float(cella["z"]) / 72, float(cella["y"]) / 12, float(cella["x"]) / 40)
    assert vol.spacing == pytest.approx(expected, rel=1e-7)
    # nxstart (columns = Z) = 0, nystart (rows = X) = -21, nzstart (sections = Y) = -12
    assert vol.origin == pytest.approx((0.0, -12 * expected[1], -21 * expected[2]), rel=1e-7)
    assert vol.meta["mrc"]["mapc"] == 3 and vol.meta["mrc"]["nystart"] == -21


def test_origin_is_header_origin(fixtures: Path) -> None:
    vol = mrc.read(fixtures / "emd_21457_seg.mrc")
    fields, _, _ = raw_header(fixtures / "emd_21457_seg.mrc")
    o = fields["origin"]
    assert vol.origin == (float(o["z"]), float(o["y"]), float(o["x"]))
    assert vol.origin == pytest.approx((204.75, 231.0, 162.75), abs=1e-3)
    assert vol.axes == "ZYX"  # ispg 0, mz == nz: a map segment, not a stack


def test_origin_from_nstart(fixtures: Path) -> None:
    vol = mrc.read(fixtures / "emd_3197.map.gz")
    assert vol.meta["mrc"]["nxstart"] == -2
    assert vol.origin == pytest.approx((0.0, 0.0, -2 * 11.4), rel=1e-6)


def test_stack_rules_and_override(fixtures: Path, tmp_path: Path) -> None:
    seg = fixtures / "emd_21457_seg.mrc"
    assert mrc.read(seg, stack=True).axes == "IYX"
    stack = tmp_path / "images.mrc"
    with mrcfile.new(stack) as m:  # mrcfile convention for stacks: ispg 0, mz 1
        m.header.ispg = 0
        m.set_data(np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5))
    vol = mrc.read(stack)
    assert vol.axes == "IYX" and vol.spacing == (1.0, 1.0)
    assert mrc.read(stack, stack=False).axes == "ZYX"


def test_stack_written_as_mrc_stays_a_stack(tmp_path: Path) -> None:
    relion_like = tmp_path / "particles.mrcs"
    with mrcfile.new(relion_like) as m:  # RELION: ispg 0 but mz = nz, cell z = nz * pixel
        m.set_data(np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6))
        m.header.ispg = 0
        m.voxel_size = 2.5
    vol = mrc.read(relion_like)
    assert vol.axes == "IYX" and vol.meta["mrc"]["mz"] == 4
    out = tmp_path / "particles.mrc"
    write_volume(vol, out)
    back = mrc.read(out)
    assert back.axes == "IYX" and np.array_equal(back.data, vol.data)
    assert back.spacing == (2.5, 2.5)
    fields, _, _ = raw_header(out)
    assert (int(fields["ispg"]), int(fields["mz"]), float(fields["cella"]["z"])) == (0, 1, 2.5)


def test_volume_stack_roundtrip(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    vol = Volume(data, "IZYX", (2.0, 2.0, 2.0), "Å")
    out = tmp_path / "vstack.mrc"
    write_volume(vol, out)
    assert int(raw_header(out)[0]["ispg"]) == 401
    back = mrc.read(out)
    assert back.axes == "IZYX" and np.array_equal(back.data, data)
    assert back.spacing == (2.0, 2.0, 2.0)


def test_single_image_and_big_endian(tmp_path: Path) -> None:
    image = Volume(np.arange(12, dtype=np.int16).reshape(3, 4), "YX", (0.5, 0.25), "nm")
    mrc.write(image, tmp_path / "image.mrc")
    back = mrc.read(tmp_path / "image.mrc")
    assert back.axes == "YX" and np.array_equal(back.data, image.data)
    assert back.spacing == pytest.approx((5.0, 2.5)) and back.unit == "Å"
    big = tmp_path / "big.mrc"
    data = np.arange(24, dtype=">f4").reshape(2, 3, 4)
    with mrcfile.new(big) as m:
        m.set_data(data)
        m.voxel_size = 3.0
    vol = mrc.read(big)
    assert vol.meta["mrc"]["byte_order"] == ">" and vol.dtype == np.dtype("=f4")
    assert np.array_equal(vol.data, data) and vol.spacing == (3.0, 3.0, 3.0)
    write_volume(vol, tmp_path / "little.mrc")
    assert_same_header(big, tmp_path / "little.mrc")  # same values, native byte order


# ---------------------------------------------------------------------------- writer
def test_changed_data_recomputes_stats(fixtures: Path, tmp_path: Path) -> None:
    vol = mrc.read(fixtures / "emd_3197.map.gz")
    doubled = vol.with_data(vol.data * 2)
    out = tmp_path / "doubled.mrc"
    write_volume(doubled, out)
    fields, _, _ = raw_header(out)
    assert float(fields["dmax"]) == pytest.approx(float(vol.data.max()) * 2)
    assert float(fields["dmean"]) == pytest.approx(float(vol.data.mean()) * 2, rel=1e-5)


def test_changed_frame_is_written(fixtures: Path, tmp_path: Path) -> None:
    vol = mrc.read(fixtures / "emd_3001.map.gz")
    moved = Volume(vol.data, vol.axes, (1.0, 2.0, 3.0), "Å", (10.0, 20.0, 30.0), vol.meta)
    out = tmp_path / "moved.mrc"
    write_volume(moved, out)
    back = mrc.read(out)
    assert back.spacing == pytest.approx((1.0, 2.0, 3.0), rel=1e-6)
    assert back.origin == pytest.approx((10.0, 20.0, 30.0), rel=1e-6)
    assert back.meta["mrc"]["mapc"] == 3  # axis order still restored


def test_tiff_volume_to_mrc_converts_to_angstrom(fixtures: Path, tmp_path: Path) -> None:
    vol = tiff.read(fixtures / "clesperanto_mini-t1-head.tif")
    assert vol.unit == "mm"
    out = tmp_path / "head.mrc"
    write_volume(vol, out)
    back = mrc.read(out)
    assert back.unit == "Å"
    assert back.spacing == pytest.approx(tuple(s * 1e7 for s in vol.spacing), rel=1e-6)
    assert back.dtype == np.uint16 and np.array_equal(back.data, vol.data)


def test_refuses_axes_mrc_cannot_hold(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 3, 4, 5), np.float32), "CZYX")
    with pytest.raises(DataError, match=r"\.ome\.zarr"):
        mrc.write(vol, tmp_path / "x.mrc")
    single = Volume(np.ones((1, 3, 4, 5), np.float32), "CZYX")
    mrc.write(single, tmp_path / "ok.mrc")  # length-1 channel axis dropped
    assert mrc.read(tmp_path / "ok.mrc").shape == (3, 4, 5)


@pytest.mark.parametrize(
    ("data", "dtype", "warns"),
    [
        (np.array([[[0, 200, 255]]], np.uint8), np.uint16, False),
        (np.array([[[-5, 0, 30000]]], np.int32), np.int16, False),
        (np.array([[[0, 60000, 1]]], np.int64), np.uint16, False),
        (np.array([[[-1, 1_000_000, 3]]], np.int32), np.float32, False),
        (np.array([[[0.5, 1.25, -3.0]]], np.float64), np.float32, False),
        (np.array([[[0.1, 1e-9, 2.0]]], np.float64), np.float32, True),
        (np.array([[[1, 2**40, 3]]], np.int64), np.float32, True),
        (np.array([[[True, False, True]]]), np.int8, False),
    ],
)
def test_dtype_casting(tmp_path: Path, data: np.ndarray, dtype: type, warns: bool) -> None:
    out = tmp_path / "cast.mrc"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        mrc.write(Volume(data, "ZYX"), out)
    assert any("float32" in str(w.message) for w in rec) == warns
    back = mrc.read(out)
    assert back.dtype == dtype
    if not warns:
        assert np.array_equal(back.data.astype(np.float64), data.astype(np.float64))


def test_px_volume_has_unknown_voxel_size(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 3, 4), np.float32), "ZYX")
    mrc.write(vol, tmp_path / "px.mrc")
    fields, _, _ = raw_header(tmp_path / "px.mrc")
    assert tuple(float(fields["cella"][a]) for a in "xyz") == (0.0, 0.0, 0.0)
    assert mrc.read(tmp_path / "px.mrc").unit == "px"


# ---------------------------------------------------------------------------- bad input
def _patched(src: bytes, offset: int, fmt: str, *values: int) -> bytes:
    b = bytearray(src)
    b[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    return bytes(b)


def test_truncated_file(fixtures: Path, tmp_path: Path) -> None:
    src = (fixtures / "emd_21457_seg.mrc").read_bytes()
    bad = tmp_path / "cut.mrc"
    bad.write_bytes(src[:-1000])
    with pytest.raises(FormatError, match=r"truncated: header declares 361984 bytes, file has 360984") as e:
        mrc.read(bad)
    assert str(bad) in str(e.value)


def test_truncated_gzip(fixtures: Path, tmp_path: Path) -> None:
    gz = (fixtures / "emd_3001.map.gz").read_bytes()
    bad = tmp_path / "cut.map.gz"
    bad.write_bytes(gz[: len(gz) // 2])
    expected = r"truncated: header declares 315084 bytes, the gzip stream ends"
    with pytest.raises(FormatError, match=expected) as e:
        mrc.read(bad)
    assert 0 < int(str(e.value).rsplit(" ", 1)[-1]) < 315084


def test_corrupt_map_id_reads_with_one_warning(fixtures: Path, tmp_path: Path) -> None:
    src = (fixtures / "emd_21457_seg.mrc").read_bytes()
    bad = tmp_path / "noid.mrc"
    bad.write_bytes(src[:208] + b"XXXX" + src[212:])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        vol = mrc.read(bad)
    messages = [str(w.message) for w in rec]
    assert len(messages) == 1
    assert messages[0].startswith(f"{bad}: Map ID string not found")
    assert messages[0].endswith("; read permissively")
    assert np.array_equal(vol.data, mrc.read(fixtures / "emd_21457_seg.mrc").data)
    with pytest.raises(FormatError, match="Map ID"):
        mrc.read(bad, permissive=False)


@pytest.mark.parametrize("name", ["absurd.mrc", "absurd.mrc.gz"])
@pytest.mark.parametrize(("fmt", "values"), [("<i", (2_000_000_000,)), ("<3i", (100_000, 100_000, 100_000))])
def test_absurd_dimensions(fixtures: Path, tmp_path: Path, name: str, fmt: str,
                           values: tuple[int, ...]) -> None:
    src = _patched((fixtures / "emd_21457_seg.mrc").read_bytes(), 0, fmt, *values)
    bad = tmp_path / name
    bad.write_bytes(gzip.compress(src) if name.endswith(".gz") else src)
    with pytest.raises(DataError, match="corrupt header"):
        mrc.read(bad)


def test_large_declared_size_in_gzip_is_measured(fixtures: Path, tmp_path: Path, monkeypatch) -> None:
    src = _patched((fixtures / "emd_21457_seg.mrc").read_bytes(), 0, "<i", 2_000_000)
    bad = tmp_path / "big.mrc.gz"
    bad.write_bytes(gzip.compress(src))
    monkeypatch.setattr(mrc, "_MEASURE_ABOVE", 1 << 20)
    with pytest.raises(FormatError, match="truncated: header declares"):
        mrc.read(bad)


def test_zero_dimension(fixtures: Path, tmp_path: Path) -> None:
    bad = tmp_path / "zero.mrc"
    bad.write_bytes(_patched((fixtures / "emd_21457_seg.mrc").read_bytes(), 0, "<i", 0))
    with pytest.raises(DataError, match="nx=0"):
        mrc.read(bad)


def test_unknown_mode(fixtures: Path, tmp_path: Path) -> None:
    bad = tmp_path / "mode.mrc"
    bad.write_bytes(_patched((fixtures / "emd_21457_seg.mrc").read_bytes(), 12, "<i", 99))
    with pytest.raises(FormatError, match="unknown MRC mode 99"):
        mrc.read(bad)


def test_empty_and_short_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        mrc.read(empty)
    short = tmp_path / "short.mrc"
    short.write_bytes(b"\0" * 500)
    with pytest.raises(FormatError, match="too short for an MRC header"):
        mrc.read(short)


def test_registry_reads_old_ccp4_without_stamp(fixtures: Path, tmp_path: Path) -> None:
    src = (fixtures / "emd_21457_seg.mrc").read_bytes()
    copy = tmp_path / "old.dat"
    copy.write_bytes(src[:208] + b"\0\0\0\0" + src[212:])  # no MAP stamp, odd suffix
    with pytest.warns(UserWarning, match="read permissively"):
        vol = read_volume(copy)
    assert vol.format == "mrc" and vol.shape == (47, 40, 48)
    shutil.copy(fixtures / "emd_21457_seg.mrc", tmp_path / "plain.mrc")
    assert read_volume(tmp_path / "plain.mrc").meta["source"].endswith("plain.mrc")
