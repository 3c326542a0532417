"""``voxfield denoise`` commands: inference with the shipped weights on real maps, the
training-data and training commands, hide dust, evaluation, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from test_cli import assert_one_line_error as assert_error
from test_cli import run_cli

from voxfield.data import example_map_path
from voxfield.denoise.unet import UNet3D, UNetConfig, default_weights_path, load_weights, save_weights
from voxfield.io import read_volume

HERE = Path(__file__).resolve().parent
MODEL_21457 = HERE / "data" / "6vyb_Ndom.pdb.gz"
MAP_21457 = HERE / "data" / "emd_21457_seg.mrc"


def _write_map(path: Path, data: np.ndarray, voxel: float = 1.05) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        m.voxel_size = voxel
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small network (for the command mechanics, not the quality)."""
    import torch

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(UNet3D(UNetConfig(channels=(2, 4))), p, {"thresholds": {"background": 0.5, "structural": 0.52}})
    return p


# ------------------------------------------------------------------ shipped weights
def test_shipped_weights_are_small_and_documented() -> None:
    # the family: unet_v1 (validated on 2.5-10 Å cubes) and unet_v2 (2.5-20 Å, harder cubes)
    for resolution, floor in ((3.0, 0.9), (None, 0.85)):
        p = default_weights_path(resolution)
        assert p.is_file() and p.stat().st_size <= 20 * 2**20
        model, meta = load_weights(p)
        t = meta["thresholds"]
        assert 0 < t["background"] < t["structural"] < 1
        assert meta["validation"]["background_gmean"] > floor
    card = p.with_name("MODEL_CARD.md").read_text()
    for needle in ("Training data", "Thresholds", "Validation", "EMD-3488", "hide dust"):
        assert needle in card


def test_denoise_real_crop_with_shipped_weights(tmp_path: Path) -> None:
    src = example_map_path()
    out, mask = tmp_path / "clean.mrc", tmp_path / "mask.mrc"
    proc = run_cli("denoise", src, "-o", out, "--mask-out", mask)
    assert proc.returncode == 0, proc.stderr
    a, b, m = read_volume(src), read_volume(out), read_volume(mask)
    assert b.data.shape == a.data.shape and b.spacing == pytest.approx(a.spacing) and b.origin == pytest.approx(a.origin)
    keep = m.data.astype(bool)
    assert np.array_equal(b.data[keep], a.data[keep]) and not b.data[~keep].any()
    pos = a.data > 0
    # most of the positive density of a haemoglobin crop is structure, but not all of it
    kept_share = (keep & pos).sum() / pos.sum()
    assert 0.2 < kept_share < 0.99
    # the strongest voxels are kept
    top = a.data > np.percentile(a.data, 99)
    assert keep[top].mean() > 0.95
    # structural mode removes at least as much
    out2 = tmp_path / "clean_struct.mrc"
    assert run_cli("denoise", "run", src, "-o", out2, "--mode", "structural").returncode == 0
    assert (read_volume(out2).data != 0).sum() <= (b.data != 0).sum()


def test_denoise_work_grid_and_prob_output(tmp_path: Path, tiny_weights: Path) -> None:
    src = example_map_path()
    out, prob = tmp_path / "w.mrc", tmp_path / "p.mrc"
    proc = run_cli("denoise", src, "-o", out, "--work-grid", "--prob-out", prob, "--weights", tiny_weights)
    assert proc.returncode == 0, proc.stderr
    v, p = read_volume(out), read_volume(prob)
    assert v.spacing == pytest.approx((1.0, 1.0, 1.0)) and v.data.shape == (67, 67, 67)
    assert p.data.min() >= 0 and p.data.max() <= 1


# ------------------------------------------------------------------ bad input
@pytest.mark.filterwarnings("ignore:Data array contains NaN values")  # the NaN map is written on purpose
def test_denoise_bad_inputs(tmp_path: Path, tiny_weights: Path) -> None:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((20, 20, 20)).astype(np.float32)
    nov = _write_map(tmp_path / "novox.mrc", m, voxel=0.0)
    assert_error(run_cli("denoise", nov, "-o", tmp_path / "o.mrc", "--weights", tiny_weights), "--apix")
    assert not (tmp_path / "o.mrc").exists()
    ok = run_cli("denoise", nov, "-o", tmp_path / "o.mrc", "--apix", "1.2", "--weights", tiny_weights)
    assert ok.returncode == 0, ok.stderr  # smaller than one tile: padded
    assert read_volume(tmp_path / "o.mrc").data.shape == (20, 20, 20)
    zero = _write_map(tmp_path / "zero.mrc", np.zeros((16, 16, 16)))
    assert_error(run_cli("denoise", zero, "-o", tmp_path / "z.mrc", "--weights", tiny_weights), "no positive voxel")
    bad = m.copy()
    bad[3, 3, 3] = np.nan
    nan = _write_map(tmp_path / "nan.mrc", bad)
    assert_error(run_cli("denoise", nan, "-o", tmp_path / "n.mrc", "--weights", tiny_weights), "NaN")
    good = _write_map(tmp_path / "good.mrc", m)
    assert_error(run_cli("denoise", good, "-o", tmp_path / "g.mrc", "--mode", "fancy", "--weights", tiny_weights), "--mode")
    assert_error(run_cli("denoise", good, "-o", tmp_path / "g.mrc", "--threshold", "2", "--weights", tiny_weights),
                 "--threshold")
    assert_error(run_cli("denoise", tmp_path / "missing.mrc", "-o", tmp_path / "g.mrc"), "missing.mrc")
    (tmp_path / "trunc.mrc").write_bytes((tmp_path / "good.mrc").read_bytes()[:1500])
    assert_error(run_cli("denoise", tmp_path / "trunc.mrc", "-o", tmp_path / "g.mrc", "--weights", tiny_weights))
    assert not (tmp_path / "g.mrc").exists()
    warn = run_cli("denoise", good, "-o", tmp_path / "g.mrc", "--resolution", "15", "--weights", tiny_weights)
    assert warn.returncode == 0 and "outside the trained range" in warn.stderr


# ------------------------------------------------------------------ training-data commands
# Three CLI subprocesses with training (~6 s); simulate_sample, make_dataset and training run
# in-process in test_denoise_pipeline.py, the denoise CLI in the other tests of this file.
@pytest.mark.slow
def test_simulate_make_dataset_train_commands(tmp_path: Path) -> None:
    sim, lab = tmp_path / "sim.mrc", tmp_path / "lab.mrc"
    proc = run_cli("denoise", "simulate", MODEL_21457, "-o", sim, "--resolution", "5", "--label-out", lab, "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    s, lb = read_volume(sim), read_volume(lab)
    assert s.data.shape == lb.data.shape and s.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert 0 < lb.data.mean() < 0.5 and s.data[lb.data > 0].mean() > s.data[lb.data == 0].mean()
    ds = tmp_path / "ds"
    proc = run_cli("denoise", "make-dataset", MODEL_21457, "-o", ds, "--samples", "2", "--box", "32")
    assert proc.returncode == 0, proc.stderr
    assert len(list(ds.glob("shard_*.npz"))) == 1
    run = tmp_path / "run"
    proc = run_cli("denoise", "train", ds, "-o", run, "--val", ds, "--steps", "2", "--batch", "1", "--crop", "16",
                   "--channels", "4,8", "--eval-every", "1", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "validation G-mean" in proc.stdout
    _, meta = load_weights(run / "model.safetensors")
    assert meta["training"]["steps"] == 2
    assert_error(run_cli("denoise", "train", ds, "-o", tmp_path / "r2", "--crop", "20"), "--crop")
    assert_error(run_cli("denoise", "make-dataset", tmp_path / "nope", "-o", ds), "nope")


# ------------------------------------------------------------------ hide dust
def test_dust_command(tmp_path: Path) -> None:
    m = np.zeros((30, 30, 30), np.float32)
    m[5:17, 5:17, 5:17] = 1.0
    m[25, 25, 25] = 1.0
    m[22, 3, 27] = 0.8
    src = _write_map(tmp_path / "m.mrc", m)
    out = tmp_path / "d.mrc"
    proc = run_cli("denoise", "dust", src, "-o", out, "--level", "0.5", "--size", "5")
    assert proc.returncode == 0, proc.stderr
    d = read_volume(out).data
    assert d[25, 25, 25] == 0 and d[22, 3, 27] == 0 and np.array_equal(d[5:17, 5:17, 5:17], m[5:17, 5:17, 5:17])
    assert "2 of 3 pieces" in proc.stdout
    assert_error(run_cli("denoise", "dust", src, "-o", out, "--level", "0.5", "--metric", "weight"), "metric")
    # --mass: the contour encloses 12^3 voxels of 1 Å^3 (the cube) at 1.21 Da/Å^3; the lone
    # voxel of 1.0 ties with the cube and stays above it, the one of 0.8 falls below
    proc = run_cli("denoise", "dust", src, "-o", out, "--mass", f"{12**3 * 1.21 / 1000:.6f}", "--apix", "1")
    assert proc.returncode == 0, proc.stderr
    assert "encloses" in proc.stdout and "1 of 2 pieces" in proc.stdout
    d = read_volume(out).data
    assert d[25, 25, 25] == 0 and np.array_equal(d[5:17, 5:17, 5:17], m[5:17, 5:17, 5:17])
    assert_error(run_cli("denoise", "dust", src, "-o", out, "--contour", "0.5", "--mass", "2"), "not both")


# ------------------------------------------------------------------ evaluation
def test_eval_on_emd_21457(tmp_path: Path) -> None:
    js, plots = tmp_path / "e.json", tmp_path / "plots"
    proc = run_cli("denoise", "eval", MAP_21457, MODEL_21457, "--resolution", "3.2", "-o", js, "--plots", plots)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(js.read_text())
    names = [r["method"] for r in res["rows"]]
    assert names[:4] == ["voxfield (background)", "voxfield (structural)", "plain threshold", "hide dust (size 5 Å)"]
    for r in res["rows"]:
        assert r["tp"] + r["fp"] + r["tn"] + r["fn"] == res["valid_voxels"]
        assert 0 <= r["gmean"] <= 1
    assert 0.3 < res["cc_mask"] < 0.9 and 0 < res["similarity"]["similarity"] <= 1
    assert sorted(p.name for p in plots.iterdir()) == ["emd_21457_seg_hist.png", "emd_21457_seg_pr.png"]
    assert "of the model at 1.21 Da" in res["level_source"]  # contour from the model's mass
    assert "| voxfield (background) |" in run_cli("denoise", "eval", MAP_21457, MODEL_21457, "--resolution", "3.2").stdout


def test_eval_rejects_a_model_that_does_not_overlap(tmp_path: Path) -> None:
    v = read_volume(MAP_21457)
    moved = tmp_path / "moved.mrc"
    with mrcfile.new(moved) as m:  # the same map without its ORIGIN: the model lands outside
        m.set_data(np.asarray(v.data, np.float32))
        m.voxel_size = 1.05
    proc = run_cli("denoise", "eval", moved, MODEL_21457, "--resolution", "3.2")
    assert_error(proc, "CC_mask")
    assert "--force" in proc.stderr
