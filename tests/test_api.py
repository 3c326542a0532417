"""The Python API of the README: ``from voxfield import compress, decompress, open,
denoise, reconstruct`` and what each returns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import voxfield
from voxfield.data import example_map_path
from voxfield.errors import OptionError, VoxfieldError


@pytest.fixture(scope="module")
def crop() -> voxfield.Volume:
    vol = voxfield.read_volume(example_map_path())
    return voxfield.Volume(np.ascontiguousarray(vol.data[16:48, 16:48, 16:48]), vol.axes, vol.spacing, vol.unit,
                           vol.origin, {})


def test_names_import_and_call_the_functions():
    import voxfield.compress as pkg  # the sub-package of the same name calls the function too
    from voxfield import compress, decompress, denoise, open, reconstruct  # noqa: A004

    for f in (compress, decompress, denoise, open, reconstruct, pkg):
        assert callable(f)
    res = pkg(np.ones((4, 4, 4), np.float32), codec="zstd", lossless=True)
    assert res.method == "classic" and res.psnr_db == float("inf")


def test_compress_array_volume_and_path(crop, tmp_path):
    arr = crop.data
    r1 = voxfield.compress(arr, codec="sperr", ratio=32)
    r2 = voxfield.compress(crop, method="classic:sperr", ratio=32)
    # the same codec and target whatever the input kind (the headers, hence the payload budgets, differ)
    assert abs(r2.ratio - 32) / 32 < 0.03 and abs(r1.psnr_db - r2.psnr_db) < 1.0
    assert r1.path is None and abs(r1.ratio - 32) / 32 < 0.03
    assert r1.ratio == pytest.approx(arr.nbytes / len(r1.payload))
    assert r1.psnr_db > 25 and r1.max_abs_error > 0
    out = tmp_path / "m.vxf"
    r3 = voxfield.compress(example_map_path(), codec="sz3", max_error=0.01, output=out)
    assert r3.path == out and out.stat().st_size == r3.nbytes
    back = voxfield.decompress(out)
    assert np.max(np.abs(back.data - voxfield.read_volume(example_map_path()).data)) <= 0.01
    assert back.spacing == voxfield.read_volume(example_map_path()).spacing
    np.testing.assert_array_equal(voxfield.open(out)[5:9, ::2, 3], back.data[5:9, ::2, 3])


def test_compress_neural_with_progress(crop):
    stages: list[str] = []
    res = voxfield.compress(crop, method="sci", ratio=16, steps=10, progress=lambda s, f: stages.append(s))
    assert res.method == "sci" and stages and "block" in res.description
    assert res.report.steps == 10
    np.testing.assert_array_equal(voxfield.open(res.payload)[...], voxfield.decompress(res.payload).data)


def test_compress_errors_are_voxfield_errors(crop, tmp_path):
    with pytest.raises(OptionError, match="give one target"):
        voxfield.compress(crop, codec="sperr", ratio=8, psnr=40)
    with pytest.raises(OptionError, match="unknown method"):
        voxfield.compress(crop, method="nope")
    with pytest.raises(OptionError, match="must end in .vxf"):
        voxfield.compress(crop, codec="zstd", output=tmp_path / "x.mrc")
    with pytest.raises(VoxfieldError):
        voxfield.compress(tmp_path / "missing.mrc", codec="zstd")


def test_denoise_returns_the_cleaned_map(crop):
    res = voxfield.denoise(crop, mode="background", device="cpu")
    assert res.volume.data.shape == crop.data.shape and res.mask.shape == crop.data.shape
    kept = res.volume.data != 0
    np.testing.assert_array_equal(res.volume.data[kept], crop.data[kept])  # kept voxels unchanged
    assert 0 <= res.removed_fraction <= 1 and 0 < res.threshold < 1


def test_api_import_is_light():
    code = ("import sys, voxfield, voxfield.api\n"
            "from voxfield import compress, decompress, open, denoise, reconstruct\n"
            "bad = [m for m in ('torch', 'matplotlib', 'dask') if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ADK = SHARED / "atomic_models" / "conformations"


@pytest.mark.slow
@pytest.mark.skipif(not (ADK / "adk_open.pdb").exists(), reason="../shared/data (AdK models) not present")
def test_reconstruct_trains_a_run(tmp_path):
    from voxfield.cli.main import main

    sim = tmp_path / "sim"
    assert main(["reconstruct", "simulate", str(ADK / "adk_closed.pdb"), str(ADK / "adk_open.pdb"), "-o", str(sim),
                 "--n", "80", "--box", "32", "--apix", "3.0", "--resolution", "8", "--states", "3", "--seed", "1"]) == 0
    run = voxfield.reconstruct(sim / "particles.star", tmp_path / "run", zdim=2, K=3, epochs=1, batch=40,
                               device="cpu")
    z = np.load(tmp_path / "run" / "z.npy")
    assert z.shape == (80, 2) and np.isfinite(z).all()
    assert run.volume(z[0]).shape == (32, 32, 32)
    with pytest.raises(OptionError, match="unknown training setting"):
        voxfield.reconstruct(sim / "particles.star", tmp_path / "run2", colour=1)
