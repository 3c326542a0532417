"""The command line for neural files: compress --method, decode --roi/--slice/--step/--coords."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, run_cli

import voxfield
from voxfield.cli.main import main
from voxfield.data import example_map_path
from voxfield.io import Volume, read_volume, write_volume


@pytest.fixture(scope="module")
def small_map(tmp_path_factory):
    vol = read_volume(example_map_path())
    crop = Volume(np.ascontiguousarray(vol.data[16:48, 16:48, 16:48]), "ZYX", vol.spacing, vol.unit,
                  tuple(o + 16 * s for o, s in zip(vol.origin, vol.spacing)), {})
    p = tmp_path_factory.mktemp("neural") / "crop.mrc"
    write_volume(crop, p)
    return p


@pytest.fixture(scope="module")
def small_vxf(small_map):
    out = small_map.with_suffix(".vxf")
    code = main(["compress", str(small_map), "-o", str(out), "--method", "sci", "--ratio", "16", "--steps", "40",
                 "--set", "max_blocks=8", "--set", "min_block_params=0", "--device", "cpu"])
    assert code == 0
    return out


def test_compress_neural_lands_on_ratio(small_map, small_vxf):
    assert small_map.stat().st_size - 1024 == 32**3 * 4  # MRC header + data
    assert 32**3 * 4 / small_vxf.stat().st_size == pytest.approx(16, rel=0.02)
    dec = small_vxf.with_suffix(".back.mrc")
    assert main(["decompress", str(small_vxf), "-o", str(dec)]) == 0
    a, b = read_volume(small_map), read_volume(dec)
    assert b.shape == a.shape and b.spacing == pytest.approx(a.spacing) and b.origin == pytest.approx(a.origin)


def test_info_describes_neural_file(small_vxf, capsys):
    assert main(["info", str(small_vxf), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"]["name"] == "sci" and set(d["sections"]) == {"tables", "weights"}


def test_decode_roi_slice_step_coords(small_vxf, tmp_path):
    full = voxfield.open(small_vxf)[...]
    roi = tmp_path / "roi.npy"
    assert main(["decode", str(small_vxf), "--roi", "2:18,5:21,0:32", "-o", str(roi)]) == 0
    np.testing.assert_array_equal(np.load(roi), full[2:18, 5:21, 0:32])
    roi_mrc = tmp_path / "roi.mrc"
    assert main(["decode", str(small_vxf), "--roi", "2:18,5:21,0:32", "-o", str(roi_mrc)]) == 0
    v = read_volume(roi_mrc)
    src = read_volume(small_vxf.with_suffix(".mrc"))
    # the cut keeps its place in space: origin moves by the start of the box
    assert v.origin == pytest.approx((src.origin[0] + 2 * 1.05, src.origin[1] + 5 * 1.05, src.origin[2]), rel=1e-5)
    sl = tmp_path / "slice.npy"
    assert main(["decode", str(small_vxf), "--slice", "x=7", "-o", str(sl)]) == 0
    np.testing.assert_array_equal(np.load(sl), full[:, :, 7])
    st = tmp_path / "step.tif"
    assert main(["decode", str(small_vxf), "--step", "4", "-o", str(st)]) == 0
    prev = read_volume(st)
    np.testing.assert_array_equal(prev.data, full[::4, ::4, ::4])
    assert prev.spacing == pytest.approx((4.2, 4.2, 4.2), rel=1e-5)
    pts = np.array([[0, 0, 0], [31, 2, 5], [10.5, 10, 10]])
    cp = tmp_path / "pts.npy"
    np.save(cp, pts)
    out = tmp_path / "vals.npy"
    assert main(["decode", str(small_vxf), "--coords", str(cp), "-o", str(out)]) == 0
    vals = np.load(out)
    assert vals.shape == (3,)
    assert vals[0] == full[0, 0, 0] and vals[1] == full[31, 2, 5]


def test_decode_errors(small_vxf, tmp_path):
    out = tmp_path / "x.npy"
    assert_one_line_error(run_cli("decode", small_vxf, "--roi", "0:40,0:5,0:5", "-o", out), "out of bounds")
    assert_one_line_error(run_cli("decode", small_vxf, "--slice", "q=3", "-o", out), "--slice")
    assert_one_line_error(run_cli("decode", small_vxf, "--slice", "z=99", "-o", out), "out of bounds")
    assert_one_line_error(run_cli("decode", small_vxf, "-o", out), "exactly one")
    assert_one_line_error(run_cli("decode", small_vxf, "--step", "2", "--slice", "z=1", "-o", out), "exactly one")
    bad = tmp_path / "pts.npy"
    np.save(bad, np.array([[0, 0, 99]]))
    assert_one_line_error(run_cli("decode", small_vxf, "--coords", bad, "-o", out), "outside")
    assert not out.exists()


def test_neural_option_errors(small_map, tmp_path):
    out = tmp_path / "o.vxf"
    assert_one_line_error(run_cli("compress", small_map, "-o", out, "--method", "nerf"), "nerf")
    assert_one_line_error(run_cli("compress", small_map, "-o", out, "--method", "sci", "--set", "widht=3"), "widht")
    assert_one_line_error(run_cli("compress", small_map, "-o", out, "--method", "sci", "--codec", "sz3"), "not both")
    assert_one_line_error(run_cli("compress", small_map, "-o", out, "--method", "sci", "--ratio", "100000",
                                  "--steps", "5"), "out of reach")
    assert not out.exists()


def test_constant_volume_cli(tmp_path):
    p = tmp_path / "flat.npy"
    np.save(p, np.full((16, 16, 16), 3, np.int16))
    out = tmp_path / "flat.vxf"
    assert main(["compress", str(p), "-o", str(out), "--method", "siren"]) == 0
    assert out.stat().st_size < 1000
    np.testing.assert_array_equal(voxfield.open(out)[...], np.full((16, 16, 16), 3, np.int16))
