"""Chunked OME-Zarr compression (``voxfield compress IN -o OUT.ome.zarr``) on small stores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("dask")

import voxfield  # noqa: E402
from voxfield.cli.main import main  # noqa: E402
from voxfield.compress.chunked import compress_to_zarr, is_unfinished  # noqa: E402
from voxfield.compress.chunked.plan import make_plan, worker_memory_bytes  # noqa: E402
from voxfield.compress.chunked.source import open_source  # noqa: E402
from voxfield.errors import DataError, FormatError, OptionError  # noqa: E402
from voxfield.io import omezarr  # noqa: E402
from voxfield.io.volume import Volume  # noqa: E402
from voxfield.metrics.seams import face_mask, seam_report  # noqa: E402


def smooth(shape: tuple[int, ...], seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=shape), sigma)
    return ((x - x.min()) / np.ptp(x) * 3000 + 100).astype(np.uint16)


def digest(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def tif(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    import tifffile

    x = smooth((70, 150, 130))
    p = tmp_path_factory.mktemp("in") / "stack.tif"
    tifffile.imwrite(p, x, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    return p, x


def test_default_plans() -> None:
    p = make_plan("ZYX", (300, 1000, 1000), "<u2", {"Z": 1.0, "Y": 1.0, "X": 1.0})
    assert p.chunks == (128, 128, 128) and p.shards == (384, 512, 512)
    assert [lv.shape for lv in p.levels][:3] == [(300, 1000, 1000), (150, 500, 500), (75, 250, 250)]
    assert p.in_shard >= 1
    assert worker_memory_bytes(p) < 2 * 2**30
    f32 = make_plan("ZYX", (4096, 4096, 4096), "<f4", {})
    assert f32.shards == (256, 512, 512) and worker_memory_bytes(f32) < 2 * 2**30
    c = make_plan("CZYX", (3, 200, 512, 512), "<u2", {})
    assert c.chunks == (1, 128, 128, 128) and c.shards[0] == 1
    t = make_plan("TYX", (2000, 512, 512), "<u2", {})
    assert t.chunks == (32, 256, 256)
    yx = make_plan("CYX", (4, 5000, 7000), "<u1", {})
    assert yx.chunks == (1, 1024, 1024) and yx.shards == (1, 2048, 2048)
    aniso = make_plan("ZYX", (100, 1000, 1000), "<u2", {"Z": 4.0, "Y": 1.0, "X": 1.0})
    assert aniso.levels[1].factors == (1, 2, 2)  # Z not halved while it is the coarse axis
    with pytest.raises(OptionError):
        make_plan("ZYX", (64, 64, 64), "<u2", {}, chunks=(32, 32))
    with pytest.raises(OptionError):
        make_plan("ZYX", (64, 64, 64), "<u2", {}, chunks=(32, 32, 32), shards=(48, 64, 64))


def test_error_bound_pyramid_and_metadata(tif: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, x = tif
    out = tmp_path / "out.ome.zarr"
    res = compress_to_zarr(path, out, max_error=4.0, chunks=(32, 64, 64), workers=1)
    assert res.ratio > 3
    y = np.asarray(voxfield.open(out))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.abs(y.astype(float) - x).max() <= 4.0  # the bound holds in every chunk, faces included
    img = voxfield.open_zarr(out)
    assert img.axes == "ZYX" and img.unit == "µm"
    assert img.spacing(0) == pytest.approx((2.0, 0.5, 0.5))
    assert len(img.levels) == len(res.plan.levels) >= 2
    lv1 = np.asarray(img.levels[1]).astype(float)
    ref = omezarr._block_mean(x, [i for i, f in enumerate(res.plan.levels[1].factors) if f > 1]).astype(float)
    assert lv1.shape == ref.shape and np.abs(lv1 - ref).max() <= 4.0 + 1  # coded within the bound (+ rounding)
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert attrs["ome"]["version"] == "0.5" and attrs["voxfield"]["complete"] is True
    assert attrs["voxfield"]["chunk_target"] == {"kind": "max_abs_error", "value": 4.0}
    assert not (out / ".voxfield").exists()
    # the same data through the lossless OME-Zarr reader of voxfield.io
    vol = voxfield.read_volume(out)
    assert np.array_equal(vol.data, y)


def test_ratio_target_counts_real_voxels_and_no_seams(tif: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, x = tif
    out = tmp_path / "r.ome.zarr"
    res = compress_to_zarr(path, out, ratio=24, method="sperr", chunks=(32, 64, 64), levels=1, workers=1)
    # edge chunks are coded on their real voxels, so the store meets the ratio
    assert 24 * 0.9 < res.ratio < 24 * 1.15, res.ratio
    y = np.asarray(voxfield.open(out))
    rep = seam_report(x, y, res.plan.chunks)
    assert rep.max_ratio <= 1.5, rep  # the bar: max error at chunk faces <= 1.5x elsewhere
    assert np.isfinite(rep.rmse_ratio) and rep.face_rmse > 0


def test_face_mask() -> None:
    m = face_mask((8, 10), (4, 10))
    assert m[3].all() and m[4].all() and not m[0].any() and not m[2].any() and not m[7].any()


def test_psnr_target_holds_globally(tif: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, x = tif
    out = tmp_path / "p.ome.zarr"
    compress_to_zarr(path, out, psnr=45, chunks=(32, 64, 64), levels=1, workers=1)
    y = np.asarray(voxfield.open(out)).astype(float)
    mse = np.mean((y - x) ** 2)
    assert 20 * np.log10(np.ptp(x)) - 10 * np.log10(mse) >= 45


def test_resume_after_a_crash_gives_identical_store(tif: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = tif
    ref = tmp_path / "ref.ome.zarr"
    compress_to_zarr(path, ref, ratio=16, chunks=(32, 64, 64), shards=(64, 128, 128), workers=1)

    class Killed(Exception):
        pass

    def die(stage: str, done: int, total: int) -> None:
        if stage == "level 0" and done >= 2:
            raise Killed

    out = tmp_path / "crash.ome.zarr"
    with pytest.raises(Killed):
        compress_to_zarr(path, out, ratio=16, chunks=(32, 64, 64), shards=(64, 128, 128), workers=1, progress=die)
    assert is_unfinished(out)
    with pytest.raises(FormatError, match="unfinished"):
        voxfield.open(out)
    with pytest.raises(OptionError, match="different job"):
        compress_to_zarr(path, out, ratio=20, chunks=(32, 64, 64), shards=(64, 128, 128), workers=1)
    res = compress_to_zarr(path, out, ratio=16, chunks=(32, 64, 64), shards=(64, 128, 128), workers=1)
    assert res.resumed_tasks == 2
    assert digest(out) == digest(ref)


def test_store_reads_in_plain_zarr_without_importing_voxfield(tif: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    """The issue's bar: a zarr reader script, with voxfield installed but never imported,
    reads the sharded store through the ``zarr.codecs`` entry point."""
    import subprocess
    import sys

    path, x = tif
    out = tmp_path / "plain.ome.zarr"
    compress_to_zarr(path, out, max_error=2.0, chunks=(32, 64, 64), workers=1)
    script = ("import sys, zarr, numpy as np\n"
              "g = zarr.open_group(sys.argv[1], mode='r')\n"
              "a = g['0'][...]\n"
              "print(a.shape, int(a.astype(np.int64).sum()), g.attrs['ome']['multiscales'][0]['axes'][0]['name'])\n")
    r = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    y = np.asarray(voxfield.open(out))
    assert r.stdout.split() == [f"({x.shape[0]},", f"{x.shape[1]},", f"{x.shape[2]})", str(int(y.astype(np.int64).sum())), "z"]


def test_local_cluster_of_two_processes(tif: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = tif
    a, b = tmp_path / "one.ome.zarr", tmp_path / "two.ome.zarr"
    compress_to_zarr(path, a, ratio=16, chunks=(32, 64, 64), shards=(64, 128, 128), workers=1)
    res = compress_to_zarr(path, b, ratio=16, chunks=(32, 64, 64), shards=(64, 128, 128), workers=2)
    assert res.workers == 2 and res.peak_rss > 0
    assert digest(a) == digest(b)


def test_inputs_mrc_hdf5_npy_omezarr(tmp_path: Path) -> None:
    import h5py
    import mrcfile

    x = smooth((40, 48, 56), seed=1).astype(np.float32)
    with mrcfile.new(tmp_path / "m.mrc") as m:
        m.set_data(x)
        m.voxel_size = 1.3
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("vol", data=x, chunks=(8, 16, 16))
    np.save(tmp_path / "a.npy", x)
    for name in ("m.mrc", "d.h5", "a.npy"):
        out = tmp_path / f"{name}.ome.zarr"
        compress_to_zarr(tmp_path / name, out, max_error=1.0, chunks=(16, 32, 32), workers=1)
        y = np.asarray(voxfield.open(out))
        assert np.abs(y - x).max() <= 1.0, name
    assert voxfield.open_zarr(tmp_path / "m.mrc.ome.zarr").spacing(0) == pytest.approx((1.3, 1.3, 1.3))
    # OME-Zarr in (CZYX with channel names) -> OME-Zarr out, names and voxel size kept
    c = np.stack([x, x[::-1]]).astype(np.uint16)
    vol = Volume(c, "CZYX", (0.4, 0.2, 0.2), "µm", meta={"zarr": {"omero": {"channels": [
        {"label": "DAPI"}, {"label": "GFP"}]}, "letters": "CZYX", "shape": list(c.shape)}})
    omezarr.write(vol, tmp_path / "in.ome.zarr", version="0.5")
    out = tmp_path / "c.ome.zarr"
    res = compress_to_zarr(tmp_path / "in.ome.zarr", out, max_error=2.0, workers=1)
    assert res.plan.chunks[0] == 1
    img = voxfield.open_zarr(out)
    assert img.axes == "CZYX" and img.channel_names == ["DAPI", "GFP"]
    assert img.spacing(0) == pytest.approx((0.4, 0.2, 0.2))
    assert np.abs(np.asarray(img.levels[0]).astype(float) - c).max() <= 2.0


def test_bad_inputs(tmp_path: Path, tif: tuple[Path, np.ndarray]) -> None:
    path, _ = tif
    plain = tmp_path / "plain.zarr"
    zarr.create_array(plain, shape=(8, 8, 8), dtype="u2", chunks=(4, 4, 4))
    with pytest.raises(FormatError, match="not an OME-Zarr"):
        compress_to_zarr(plain, tmp_path / "o1.ome.zarr", workers=1)
    group = tmp_path / "group.zarr"
    zarr.open_group(group, mode="w").create_array("x", shape=(8, 8), dtype="u2", chunks=(4, 4))
    with pytest.raises(FormatError, match="multiscales"):
        compress_to_zarr(group, tmp_path / "o2.ome.zarr", workers=1)
    ragged = tmp_path / "ragged.ome.zarr"
    omezarr.write(Volume(smooth((16, 16, 16)), "ZYX"), ragged, version="0.5", levels=1)
    meta = json.loads((ragged / "0" / "zarr.json").read_text())
    meta["chunk_grid"] = {"name": "rectilinear", "configuration": {"chunk_shapes": [[10, 6], [16], [16]]}}
    (ragged / "0" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="ragged|chunk"):
        compress_to_zarr(ragged, tmp_path / "o3.ome.zarr", workers=1)
    with pytest.raises(DataError, match="needs"):
        compress_to_zarr(path, tmp_path / "o4.ome.zarr", workers=1, memory_limit=100 * 2**20)
    assert not (tmp_path / "o4.ome.zarr").exists()
    with pytest.raises(OptionError, match="does not answer"):
        compress_to_zarr(path, tmp_path / "o5.ome.zarr", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "o5.ome.zarr").exists()
    with pytest.raises(OptionError, match="one target"):
        compress_to_zarr(path, tmp_path / "o6.ome.zarr", ratio=8, psnr=40)
    with pytest.raises(DataError, match="axes"):
        open_source(path, axes="ZY")


def test_cli_compress_decompress_and_refusals(tif: tuple[Path, np.ndarray], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, x = tif
    out = tmp_path / "cli.ome.zarr"
    assert main(["compress", str(path), "-o", str(out), "--max-error", "3", "--chunks", "32,64,64",
                 "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "memory per worker at most" in text and "ratio" in text
    assert main(["compress", str(path), "-o", str(out), "--ratio", "8", "--workers", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["info", str(out), "--json"]) == 0  # metadata only, no voxel decoded
    facts = json.loads(capsys.readouterr().out)
    assert facts["complete"] is True and facts["shape"] == list(x.shape) and facts["axes"] == "ZYX"
    assert facts["ratio_level0"] == pytest.approx(x.nbytes / facts["bytes_per_level"][0])
    assert facts["spacing"] == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.5})
    back = tmp_path / "back.tif"
    assert main(["decompress", str(out), "-o", str(back)]) == 0
    y = voxfield.read_volume(back)
    assert np.abs(y.data.astype(float) - x).max() <= 3
    npy = tmp_path / "back.npy"
    assert main(["decompress", str(out), "-o", str(npy)]) == 0
    assert np.array_equal(np.load(npy), y.data)
    assert main(["compress", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "m.ome.zarr")]) == 2
    eq = tmp_path / "eq.ome.zarr"
    assert main(["compress", str(path), "-o", str(eq), "--ratio", "12", "--equal-ratio", "--chunks", "32,64,64",
                 "--workers", "1", "--levels", "1"]) == 0
    attrs = json.loads((eq / "zarr.json").read_text())["attributes"]["voxfield"]
    assert attrs["chunk_target"] == {"kind": "ratio", "value": 12.0}
    assert 12 * 0.9 < x.nbytes / attrs["bytes_per_level"][0] < 12 * 1.1


def test_damaged_store_gives_one_line_and_no_output(tif: tuple[Path, np.ndarray], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = tif
    out = tmp_path / "d.ome.zarr"
    compress_to_zarr(path, out, max_error=3.0, chunks=(32, 64, 64), shards=(64, 128, 128), workers=1, levels=1)
    shard = sorted((out / "0" / "c").rglob("*"))[-1]
    assert shard.is_file()
    for damage in (lambda b: b[: len(b) // 2], lambda b: b[:40] + bytes(200) + b[240:]):
        shard.write_bytes(damage(shard.read_bytes()))
        dest = tmp_path / "x.npy"
        assert main(["decompress", str(out), "-o", str(dest)]) == 2
        err = capsys.readouterr().err
        assert "damaged chunk data" in err and "d.ome.zarr" in err and "Traceback" not in err
        assert not dest.exists()


def test_without_distributed_the_default_runs_inline(tif: tuple[Path, np.ndarray], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from voxfield.compress.chunked import write

    monkeypatch.setattr(write, "_has_distributed", lambda: False)
    monkeypatch.setattr(write.os, "cpu_count", lambda: 4)
    with pytest.warns(UserWarning, match="distributed is not installed"):
        res = compress_to_zarr(tif[0], tmp_path / "i.ome.zarr", max_error=4.0, chunks=(32, 64, 64), levels=1)
    assert res.workers == 1
