"""The voxfield command: every subcommand on real files, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from conftest import shared_file

from voxfield.cli.main import main
from voxfield.data import example_map_path
from voxfield.io import read_volume


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m voxfield`` in a subprocess (real exit code, real stderr)."""
    return subprocess.run([sys.executable, "-m", "voxfield", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "warning" not in ln]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("voxfield: error:")
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def example(tmp_path: Path) -> Path:
    p = tmp_path / "emd_3488_crop64.mrc"
    with mrcfile.open(example_map_path()) as src, mrcfile.new(p) as dst:
        dst.set_data(src.data.copy())
        dst.header.nxstart, dst.header.nystart, dst.header.nzstart = 18, 18, 18
        dst.voxel_size = src.voxel_size
    return p


# ------------------------------------------------------------------ info
def test_info_table_and_json(example, capsys):
    assert main(["info", str(example)]) == 0
    out = capsys.readouterr().out
    assert "64 Z × 64 Y × 64 X" in out and "float32" in out and "1.05" in out
    assert main(["info", str(example), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["shape"] == [64, 64, 64] and d["axes"] == "ZYX" and d["format"] == "mrc"
    assert d["spacing"] == pytest.approx({"Z": 1.05, "Y": 1.05, "X": 1.05}, rel=1e-5)
    assert d["origin"]["X"] == pytest.approx(18 * 1.05, rel=1e-5)
    data = read_volume(example).data
    assert d["stats"]["max"] == pytest.approx(float(data.max()))
    assert d["stats"]["mean"] == pytest.approx(float(data.mean()), rel=1e-6)


def test_info_on_gz_map_with_odd_axis_order(fixtures, capsys):
    assert main(["info", str(fixtures / "emd_3001.map.gz"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["header"]["ispg"] == "4"


# ------------------------------------------------------------------ compress / decompress
@pytest.mark.parametrize("codec", ["sz3", "sperr", "zfp", "quant", "jpeg2k"])
def test_compress_decompress_round_trip_keeps_header(example, tmp_path, codec, capsys):
    vxf = tmp_path / f"x-{codec}.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", codec, "--ratio", "32"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out
    ratio = 64**3 * 4 / vxf.stat().st_size
    assert ratio == pytest.approx(32, rel=0.03)
    dec = tmp_path / "back.mrc"
    assert main(["decompress", str(vxf), "-o", str(dec)]) == 0
    a, b = read_volume(example), read_volume(dec)
    assert b.shape == a.shape and b.dtype == a.dtype
    assert b.spacing == pytest.approx(a.spacing) and b.origin == pytest.approx(a.origin)
    assert b.meta["mrc"]["nxstart"] == 18
    err = np.abs(b.data.astype(np.float64) - a.data).max()
    assert 0 < err < 0.2 * (a.data.max() - a.data.min())


def test_decompress_default_name_restores_original_format(fixtures, tmp_path):
    src = tmp_path / "emd_3001.map.gz"
    shutil.copy(fixtures / "emd_3001.map.gz", src)
    vxf = tmp_path / "emd_3001.vxf"
    proc = run_cli("compress", src, "-o", vxf, "--codec", "zstd", "--lossless")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("decompress", vxf)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "emd_3001.decoded.map.gz"
    assert out.exists()
    a, b = read_volume(src), read_volume(out)
    assert np.array_equal(a.data, b.data)
    for key in ("ispg", "mapc", "mapr", "maps", "nxstart", "nystart", "nzstart", "labels"):
        assert a.meta["mrc"][key] == b.meta["mrc"][key], key
    assert a.meta["mrc"]["extended_header"] == b.meta["mrc"]["extended_header"]


def test_error_bound_option(example, tmp_path):
    vxf = tmp_path / "eb.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", "sz3", "--max-error", "0.01"]) == 0
    dec = tmp_path / "eb.mrc"
    assert main(["decompress", str(vxf), "-o", str(dec)]) == 0
    err = np.abs(read_volume(dec).data.astype(np.float64) - read_volume(example).data).max()
    assert err <= 0.01


def test_decompress_converts_to_other_format(example, tmp_path):
    vxf = tmp_path / "c.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", "zstd", "--lossless"]) == 0
    tif = tmp_path / "c.ome.tif"
    assert main(["decompress", str(vxf), "-o", str(tif)]) == 0
    v = read_volume(tif)
    assert np.array_equal(v.data, read_volume(example).data)
    assert v.unit == "Å" and v.spacing == pytest.approx((1.05, 1.05, 1.05), rel=1e-5)


def test_compress_tiff_with_axes_override(tmp_path):
    src = shared_file("multichannel/imc_pancreas_cytomapper/E34_imc.tiff")
    vxf = tmp_path / "e34.vxf"
    proc = run_cli("compress", src, "-o", vxf, "--codec", "sz3", "--ratio", "8", "--axes", "CYX")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "e34.tif"
    assert run_cli("decompress", vxf, "-o", out).returncode == 0
    assert tifffile.imread(out).shape == (5, 100, 100)


# ------------------------------------------------------------------ metrics / compare
def test_metrics_on_vxf_reports_ratio_and_quality(example, tmp_path, capsys):
    vxf = tmp_path / "m.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", "sperr", "--ratio", "64"]) == 0
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert main(["metrics", str(example), str(vxf), "--json", "-o", str(report)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ratio"] == pytest.approx(64, rel=0.03)
    assert 30 < d["psnr_db"] < 120
    assert d["psnr_dtype_max_db"] != d["psnr_db"]
    assert d["fsc_0.5_A"] >= 2 * 1.05 - 1e-6
    assert json.loads(report.read_text())["psnr_db"] == d["psnr_db"]
    assert main(["metrics", str(example), str(vxf)]) == 0
    assert "PSNR" in capsys.readouterr().out


def test_metrics_identical_files(example, capsys):
    assert main(["metrics", str(example), str(example), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["max_abs_error"] == 0 and d["psnr_db"] == float("inf")


def test_metrics_cryoem_report(example, tmp_path, capsys):
    vxf = tmp_path / "m.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", "sz3", "--ratio", "32"]) == 0
    capsys.readouterr()
    report = tmp_path / "cryo.json"
    assert main(["metrics", str(example), str(vxf), "--cryoem", "--resolution", "3.2", "--json",
                 "-o", str(report)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ratio"] == pytest.approx(32, rel=0.03)
    assert d["contour_source"] and d["contour"] > 0 and d["mask_voxels"] > 0
    assert [b["band"] for b in d["density_bands"]][:3] == ["low", "medium", "high"]
    assert d["psnr_mask_db"] != d["psnr_box_db"] and 20 < d["psnr_box_db"] < 120
    assert d["fsc_0.5_A"] >= 2 * 1.05 - 1e-6 and d["fsc_at_resolution"] is not None
    assert json.loads(report.read_text())["psnr_box_db"] == d["psnr_box_db"]
    assert main(["metrics", str(example), str(vxf), "--cryoem", "--contour", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "Relative error by density region" in text and "| high" in text.lower()
    assert "PSNR" in text and "FSC" in text


def test_metrics_cryoem_with_model_and_errors(tmp_path, capsys):
    emd, pdb = shared_file("cryoem_maps/emd_3488.mrc"), shared_file("atomic_models/5ni1_updated.cif")
    assert main(["metrics", str(emd), str(emd), "--cryoem", "--model", str(pdb), "--resolution", "3.2",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cc_mask_original"] == pytest.approx(d["cc_mask_result"]) and d["cc_mask_original"] > 0.6
    assert main(["metrics", str(emd), str(emd), "--cryoem", "--model", str(pdb)]) == 2  # no resolution
    assert "--resolution" in capsys.readouterr().err
    assert main(["metrics", str(emd), str(emd), "--resolution", "3.2"]) == 2  # without --cryoem
    assert main(["metrics", str(emd), str(emd), "--cryoem", "--apix", "0"]) == 2
    assert main(["metrics", str(emd), str(emd), "--cryoem", "--contour", "1e9"]) == 2  # empty mask


def test_compare_writes_png(example, tmp_path):
    vxf = tmp_path / "f.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", "zfp", "--ratio", "16"]) == 0
    png = tmp_path / "fig.png"
    assert main(["compare", str(example), str(vxf), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(png)
    assert img.shape[0] > 500 and img.shape[1] > 500 and img.std() > 0.05


# ------------------------------------------------------------------ bad input
def test_unknown_format(tmp_path):
    bad = tmp_path / "notes.xyz"
    bad.write_text("hello")
    assert_one_line_error(run_cli("info", bad), "notes.xyz", "unknown")


def test_truncated_mrc(example, tmp_path):
    bad = tmp_path / "cut.mrc"
    bad.write_bytes(example.read_bytes()[:50000])
    out = tmp_path / "cut.vxf"
    assert_one_line_error(run_cli("compress", bad, "-o", out), "cut.mrc", "truncated")
    assert not out.exists()


def test_nan_data(tmp_path):
    arr = np.random.default_rng(0).random((8, 8, 8), dtype=np.float32)
    arr[1, 2, 3] = np.nan
    arr[4, 4, 4] = np.inf
    p = tmp_path / "nan.npy"
    np.save(p, arr)
    out = tmp_path / "nan.vxf"
    assert_one_line_error(run_cli("compress", p, "-o", out, "--ratio", "4"), "nan.npy", "1 NaN", "1 Inf")
    assert not out.exists()


def test_absurd_header_dimensions(example, tmp_path):
    raw = bytearray(example.read_bytes())
    raw[0:4] = np.int32(2**30).tobytes()  # nx
    bad = tmp_path / "huge.mrc"
    bad.write_bytes(bytes(raw))
    assert_one_line_error(run_cli("info", bad), "huge.mrc")


def test_zero_dimension(example, tmp_path):
    raw = bytearray(example.read_bytes())
    raw[4:8] = np.int32(0).tobytes()  # ny
    bad = tmp_path / "zero.mrc"
    bad.write_bytes(bytes(raw))
    assert_one_line_error(run_cli("info", bad), "zero.mrc")


def test_unwritable_output(example, tmp_path):
    assert_one_line_error(run_cli("compress", example, "-o", tmp_path / "no" / "such" / "dir" / "x.vxf"),
                          "does not exist")
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert_one_line_error(run_cli("compress", example, "-o", ro / "x.vxf"), "not writable")


@pytest.mark.parametrize("ratio", ["1", "0.5", "-3"])
def test_ratio_must_exceed_one(example, tmp_path, ratio):
    out = tmp_path / "r.vxf"
    assert_one_line_error(run_cli("compress", example, "-o", out, "--ratio", ratio), "ratio")
    assert not out.exists()


def test_unreachable_ratio_leaves_no_file(example, tmp_path):
    out = tmp_path / "u.vxf"
    assert_one_line_error(run_cli("compress", example, "-o", out, "--codec", "jpeg2k", "--ratio", "1000000"))
    assert not out.exists()


def test_corrupt_vxf(example, tmp_path):
    vxf = tmp_path / "k.vxf"
    assert main(["compress", str(example), "-o", str(vxf), "--codec", "zstd", "--lossless"]) == 0
    blob = bytearray(vxf.read_bytes())
    blob[-10] ^= 0xFF
    vxf.write_bytes(bytes(blob))
    out = tmp_path / "k.mrc"
    assert_one_line_error(run_cli("decompress", vxf, "-o", out), "k.vxf", "checksum")
    assert not out.exists()
    vxf.write_bytes(bytes(blob[:100]))
    assert_one_line_error(run_cli("decompress", vxf, "-o", out), "truncated")
    assert_one_line_error(run_cli("decompress", example, "-o", out), "not a voxfield")


def test_unknown_codec(example, tmp_path):
    assert_one_line_error(run_cli("compress", example, "-o", tmp_path / "a.vxf", "--codec", "mp3"), "mp3")


def test_existing_output_needs_force(example, tmp_path):
    out = tmp_path / "e.vxf"
    out.write_bytes(b"keep")
    assert_one_line_error(run_cli("compress", example, "-o", out, "--codec", "zstd", "--lossless"), "--force")
    assert out.read_bytes() == b"keep"
    assert run_cli("compress", example, "-o", out, "--codec", "zstd", "--lossless", "--force").returncode == 0


# ------------------------------------------------------------------ demo
# The whole demo (sperr and sci fits, decode, ROI, plot): ~10 s. Its parts run in the fast tier
# (test_cli_neural: sci compress/decode/ROI; the classic CLI tests in this file).
@pytest.mark.slow
def test_demo_runs_on_shipped_map(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--time-budget", "5"]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "sperr" in out and "auto" in out  # the default method, then the classic codecs
    gain = re.search(r"auto vs the best classic codec here \((\w+)\): ([+-][0-9.]+) dB", out)
    assert gain is not None, out
    # auto keeps the prior codec's own file where its residual does not pay: never far below
    assert float(gain.group(2)) > -0.3, out
    assert "identical to the same region of the full decode" in out
    assert (tmp_path / "demo" / "compare.png").exists()
    dec = read_volume(tmp_path / "demo" / "emd_3488_crop64.decoded.mrc")
    assert dec.shape == (64, 64, 64) and dec.meta["mrc"]["nxstart"] == 18
