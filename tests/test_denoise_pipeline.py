"""The denoiser's library: working grid, molmap labels, simulator, datasets, U-Net training
(smoke), tiled prediction and weights files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voxfield.denoise.dataset import load_dataset, make_dataset
from voxfield.denoise.grid import from_work_grid, normalise, to_work_grid, work_shape
from voxfield.denoise.molmap import Atoms, molmap, structure_label
from voxfield.denoise.predict import apply_mask, predict_map, predict_work, resolve_threshold
from voxfield.denoise.simulate import SimConfig, simulate_sample
from voxfield.denoise.train import TrainConfig, _random_rotation, train
from voxfield.denoise.unet import UNet3D, UNetConfig, load_weights, save_weights
from voxfield.errors import DataError, FormatError, OptionError

HERE = Path(__file__).resolve().parent


def _toy_atoms(n: int = 300, seed: int = 0) -> Atoms:
    """A compact random 'protein': a self-avoiding-ish chain of atoms 1.5 Å apart."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((n, 3))
    steps *= 1.5 / np.linalg.norm(steps, axis=1, keepdims=True)
    xyz = np.cumsum(steps, axis=0)
    xyz -= xyz.mean(axis=0)
    return Atoms(xyz, np.full(n, 6.0, np.float32), np.arange(n) // 8, "toy")


@pytest.fixture(scope="module")
def atoms_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    a = _toy_atoms()
    lines = []
    for i, (z, y, x) in enumerate(a.zyx):
        lines.append(f"ATOM  {i + 1:5d}  CA  ALA A{i // 8 + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00           C")
    p = tmp_path_factory.mktemp("models") / "toy.pdb"
    p.write_text("\n".join(lines) + "\nEND\n")
    return p


# ------------------------------------------------------------------ working grid
def test_work_grid_shape_and_round_trip() -> None:
    assert work_shape((100, 100, 100), 1.05) == (104, 104, 104)
    assert work_shape((10, 20, 30), (2.0, 1.0, 0.5)) == (19, 20, 15)
    z, y, x = np.mgrid[0:40, 0:40, 0:40] * 1.05
    smooth = np.sin(z / 7.0) * np.cos(y / 9.0) + x / 50.0
    work = to_work_grid(smooth, 1.05)
    # voxel k of the 1 Å grid sits at k Å: compare with the function itself
    kz, ky, kx = np.mgrid[0 : work.shape[0], 0 : work.shape[1], 0 : work.shape[2]].astype(float)
    truth = np.sin(kz / 7.0) * np.cos(ky / 9.0) + kx / 50.0
    assert np.abs(work - truth).max() < 0.01
    back = from_work_grid(work, smooth.shape, 1.05)
    assert back.shape == smooth.shape
    assert np.abs(back - smooth)[:-2, :-2, :-2].max() < 0.02


def test_normalise_percentile_and_zero_map() -> None:
    a = np.zeros((10, 10, 10), np.float32)
    a[:5] = -3.0
    a[5:] = np.linspace(0.001, 1.0, 500).reshape(5, 10, 10)
    x, scale = normalise(a)
    assert scale == pytest.approx(np.percentile(a[a > 0], 99.9))
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.all(x[:5] == 0)
    z, s = normalise(-np.ones((4, 4, 4)))
    assert s == 0.0 and not z.any()


def test_bad_voxel_size_names_apix() -> None:
    with pytest.raises(DataError, match="--apix"):
        to_work_grid(np.ones((4, 4, 4)), 0.0)


# ------------------------------------------------------------------ molmap and labels
def test_label_is_three_sigma_ball() -> None:
    one = Atoms(np.array([[10.0, 10.0, 10.0]]), np.array([6.0], np.float32), np.array([0]))
    lab = structure_label(one, (21, 21, 21), resolution=3.0)
    # radius 3 * 0.225 * 3 = 2.0255 Å on a 1 Å grid: the lattice points with d^2 <= 4
    assert lab.sum() == 1 + 6 + 12 + 8 + 6
    m = molmap(one, (21, 21, 21), resolution=3.0)
    assert np.unravel_index(np.argmax(m), m.shape) == (10, 10, 10)
    assert m.sum() == pytest.approx(6.0, rel=1e-3)  # the atomic number, all of it inside the box
    far = np.ones_like(lab)
    far[5:16, 5:16, 5:16] = False
    assert not m[far].any()  # truncated at 3 sigma


# ------------------------------------------------------------------ simulator and datasets
def test_simulated_sample_is_deterministic_and_sane() -> None:
    a = _toy_atoms()
    s1 = simulate_sample(a, np.random.default_rng(3), SimConfig(box=32))
    s2 = simulate_sample(a, np.random.default_rng(3), SimConfig(box=32))
    assert np.array_equal(s1.x, s2.x) and np.array_equal(s1.label, s2.label)
    assert s1.x.shape == (32, 32, 32) and s1.x.dtype == np.float32
    assert 0.0 <= s1.x.min() and s1.x.max() <= 1.0
    assert 0 < s1.label.sum() < s1.label.size
    # structure voxels are denser on average than the nonzero noise voxels
    nz = s1.x > 0
    assert s1.x[nz & s1.label].mean() > s1.x[nz & ~s1.label].mean()
    whole = simulate_sample(a, np.random.default_rng(0), SimConfig(), resolution=4.0, whole=True)
    assert whole.x.shape[0] == whole.info["box"] and whole.info["resolution"] == 4.0


def test_make_and_load_dataset(tmp_path: Path, atoms_file: Path) -> None:
    out = make_dataset([atoms_file], tmp_path / "ds", n_samples=3, seed=1, config=SimConfig(box=32), shard_size=2)
    assert sorted(p.name for p in out.glob("shard_*.npz")) == ["shard_000.npz", "shard_001.npz"]
    x, lab, meta = load_dataset(out)
    assert x.shape == (3, 32, 32, 32) and lab.shape == x.shape and lab.dtype == bool
    assert meta["models"] == ["toy.pdb"] and len(meta["samples"]) == 3
    again = make_dataset([atoms_file], tmp_path / "ds2", n_samples=3, seed=1, config=SimConfig(box=32), shard_size=2)
    x2, lab2, _ = load_dataset(again)
    assert np.array_equal(x, x2) and np.array_equal(lab, lab2)
    with pytest.raises(FormatError):
        load_dataset(tmp_path)


# ------------------------------------------------------------------ training
def test_rotation_augmentation_is_proper() -> None:
    rng = np.random.default_rng(0)
    base = np.zeros((2, 3, 3, 3))
    base[0, 0, 0, 0], base[0, 1, 0, 0], base[0, 0, 1, 0], base[0, 0, 0, 1] = 1, 2, 3, 4
    for _ in range(30):
        r = _random_rotation(base, rng)
        e = [np.argwhere(r[0] == v)[0] for v in (1, 2, 3, 4)]
        axes = np.array([e[1] - e[0], e[2] - e[0], e[3] - e[0]], float)
        assert np.linalg.det(axes) == pytest.approx(1.0)  # handedness kept


def test_train_smoke_resume_and_weights(tmp_path: Path, atoms_file: Path) -> None:
    ds = make_dataset([atoms_file], tmp_path / "ds", n_samples=2, seed=0, config=SimConfig(box=32))
    cfg = TrainConfig(steps=2, batch=1, crop=16, eval_every=1, channels=(4, 8))
    path = train(ds, tmp_path / "run", val_dir=ds, config=cfg)
    model, meta = load_weights(path)
    assert model.config.channels == (4, 8)
    assert 0.0 <= meta["thresholds"]["background"] <= 1.0 and 0.0 <= meta["thresholds"]["structural"] <= 1.0
    assert meta["training"]["steps"] == 2
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    # resume: a 3-step run in the same folder continues at step 3 only
    cfg3 = TrainConfig(steps=3, batch=1, crop=16, eval_every=1, channels=(4, 8))
    with pytest.raises(OptionError, match="other settings"):
        train(ds, tmp_path / "run", val_dir=ds, config=cfg3)
    # a fixed paper weight (40:1) trains too
    train(ds, tmp_path / "run40", config=TrainConfig(steps=1, batch=1, crop=16, channels=(4, 8), class_weight="40"))
    with pytest.raises(OptionError):
        TrainConfig(class_weight="lots").weight()


def test_resume_continues_from_checkpoint(tmp_path: Path, atoms_file: Path) -> None:
    ds = make_dataset([atoms_file], tmp_path / "ds", n_samples=2, seed=0, config=SimConfig(box=32))
    cfg = TrainConfig(steps=3, batch=1, crop=16, eval_every=1, channels=(4, 8))
    full = train(ds, tmp_path / "full", config=cfg)
    # interrupted run: stop after step 2 by removing the final record, then resume
    part = tmp_path / "part"
    train(ds, part, config=cfg)
    state = torch.load(part / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3
    log = (part / "log.jsonl").read_text().splitlines()
    assert len(log) == 3
    a, _ = load_weights(full)
    b, _ = load_weights(part / "model.safetensors")
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k  # same seed, same data: identical weights
    # resuming a finished run adds no step
    train(ds, part, config=cfg)
    assert len((part / "log.jsonl").read_text().splitlines()) == 3


# ------------------------------------------------------------------ prediction
def test_tiled_prediction_equals_whole_volume() -> None:
    torch.manual_seed(0)
    model = UNet3D(UNetConfig(channels=(3,))).eval()  # no pooling: receptive radius 2 voxels
    x = np.random.default_rng(0).random((37, 29, 45)).astype(np.float32)
    x[:5] = 0
    with torch.inference_mode():
        whole = torch.sigmoid(model(torch.from_numpy(x)[None, None]))[0, 0].numpy()
    tiled, run, total = predict_work(model, x, tile=16, core=12)
    assert total == 4 * 3 * 4
    # equal away from the map's faces (there the whole-map pass zero-pads each layer's
    # activations, the tiles see activations of zero input)
    assert np.abs(tiled - whole)[2:-2, 2:-2, 2:-2].max() < 1e-5
    # a tile whose input is all zero is skipped and predicted as noise (0)
    x2 = np.zeros((40, 12, 12), np.float32)
    x2[:10] = 0.5
    p, run2, total2 = predict_work(model, x2, tile=16, core=12)
    assert run2 < total2 and not p[26:].any()


def test_predict_map_small_and_bad_maps() -> None:
    torch.manual_seed(0)
    model = UNet3D(UNetConfig(channels=(2, 4))).eval()
    m = np.random.default_rng(1).standard_normal((20, 22, 18)).astype(np.float32)  # smaller than a tile
    pred = predict_map(model, m, 1.3)
    assert pred.prob.shape == m.shape and pred.work_prob.shape == work_shape(m.shape, 1.3)
    out, keep = apply_mask(m, pred.prob, 0.5)
    assert np.array_equal(out[keep], m[keep]) and not out[~keep].any() and out.dtype == m.dtype
    with pytest.raises(DataError, match="no positive voxel"):
        predict_map(model, np.zeros((8, 8, 8)), 1.0)
    bad = m.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        predict_map(model, bad, 1.0)
    with pytest.raises(DataError, match="--apix"):
        predict_map(model, m, 0.0)


def test_thresholds_from_weights_and_overrides(tmp_path: Path) -> None:
    assert resolve_threshold({}, "background", None) == 0.035
    assert resolve_threshold({}, "structural", None) == 0.495
    meta = {"thresholds": {"background": 0.2, "structural": 0.6}}
    assert resolve_threshold(meta, "structural", None) == 0.6
    assert resolve_threshold(meta, "background", 0.3) == 0.3
    with pytest.raises(OptionError):
        resolve_threshold(meta, "fancy", None)
    with pytest.raises(OptionError):
        resolve_threshold(meta, "background", 1.5)
    model = UNet3D(UNetConfig(channels=(2, 4)))
    save_weights(model, tmp_path / "w.safetensors", meta)
    m2, meta2 = load_weights(tmp_path / "w.safetensors")
    assert meta2["thresholds"] == meta["thresholds"]
    (tmp_path / "junk.safetensors").write_bytes(b"not weights at all")
    with pytest.raises(FormatError):
        load_weights(tmp_path / "junk.safetensors")


def test_fine_tune_from_weights(tmp_path: Path, atoms_file: Path) -> None:
    ds = make_dataset([atoms_file], tmp_path / "ds", n_samples=2, seed=0, config=SimConfig(box=32))
    torch.manual_seed(5)
    start = UNet3D(UNetConfig(channels=(4, 8)))
    save_weights(start, tmp_path / "start.safetensors", {"training": {"steps": 7}})
    cfg = TrainConfig(steps=1, batch=1, crop=16, channels=(4, 8), lr=1e-12)
    out = train(ds, tmp_path / "ft", config=cfg, init_weights=tmp_path / "start.safetensors")
    tuned, meta = load_weights(out)
    assert meta["training"]["init"]["weights"] == "start.safetensors"
    assert meta["training"]["init"]["training"] == {"steps": 7}
    # a near-zero learning rate leaves the convolution weights where they started
    w0 = start.state_dict()["down.0.0.weight"]
    assert torch.allclose(tuned.state_dict()["down.0.0.weight"], w0, atol=1e-6)
    with pytest.raises(OptionError, match="channels"):
        train(ds, tmp_path / "ft2", config=TrainConfig(steps=1, batch=1, crop=16, channels=(2, 4)),
              init_weights=tmp_path / "start.safetensors")


def test_structure_protection_keeps_the_main_piece_unless_confident() -> None:
    from voxfield.denoise.api import CONFIDENT_NOISE, protect_structure, recommended_contour

    data = np.zeros((30, 30, 30), np.float32)
    data[5:20, 5:20, 5:20] = 1.0   # the main structure
    data[25, 25, 25] = 1.0         # dust above the contour
    prob = np.full(data.shape, 0.3, np.float32)  # the network is unsure everywhere ...
    prob[6, 6, 6] = CONFIDENT_NOISE / 2          # ... but one voxel of the main piece it calls noise
    keep = prob >= 0.5                            # the mode's threshold removes everything
    out = protect_structure(data, prob, keep, level=0.5)
    main = data > 0.5
    main[25, 25, 25] = False
    assert out[main].sum() == main.sum() - 1 and not out[6, 6, 6]
    assert not out[25, 25, 25]                    # a separate small piece is not protected
    safe = protect_structure(data, prob, keep, level=0.5, keep_above=0.9)
    assert safe[6, 6, 6] and safe[25, 25, 25]     # --keep-above: everything above it stays
    with pytest.raises(OptionError, match="not both"):
        recommended_contour(data, 1.0, 0.5, 10.0)
    lev, src = recommended_contour(data, 1.0, None, 15**3 * 1.21 / 1000)
    assert 0 < lev < 1 and "kDa" in src


def test_whole_model_simulation_can_keep_the_model_frame(atoms_file: Path) -> None:
    from voxfield.denoise.molmap import read_atoms

    atoms = read_atoms(atoms_file)
    s = simulate_sample(atoms, np.random.default_rng(0), SimConfig(), resolution=6.0, whole=True, keep_frame=True)
    origin = np.asarray(s.info["origin_zyx"])
    # the label's structure voxels, put back at the origin, sit on the model's own atoms
    zyx = np.argwhere(s.label).astype(float) + origin
    assert np.linalg.norm(zyx.mean(axis=0) - atoms.zyx.mean(axis=0)) < 2.0
    rotated = simulate_sample(atoms, np.random.default_rng(0), SimConfig(), resolution=6.0, whole=True)
    assert "origin_zyx" not in rotated.info


def test_low_resolution_background_threshold() -> None:
    from voxfield.denoise.predict import LOW_RES_BACKGROUND_THRESHOLD

    meta = {"thresholds": {"background": 0.444, "structural": 0.87}}
    assert resolve_threshold(meta, "background", None, 4.0) == 0.444
    assert resolve_threshold(meta, "background", None, None) == 0.444
    assert resolve_threshold(meta, "background", None, 15.0) == LOW_RES_BACKGROUND_THRESHOLD
    assert resolve_threshold(meta, "structural", None, 15.0) == 0.87
    assert resolve_threshold(meta, "background", 0.3, 15.0) == 0.3  # an explicit threshold wins
