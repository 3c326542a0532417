"""``voxfield reconstruct`` commands end to end on a tiny simulated AdK set (simulate → train →
volume → analyze → eval), on the real RELION files, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from test_cli import assert_one_line_error as assert_error
from test_cli import run_cli

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ADK = SHARED / "atomic_models" / "conformations"
REAL = SHARED / "particles" / "real"

needs_adk = pytest.mark.skipif(not (ADK / "adk_open.pdb").exists(), reason="../shared/data (AdK models) not present")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ADK / "adk_open.pdb").exists():
        pytest.skip("../shared/data (AdK models) not present")
    out = tmp_path_factory.mktemp("sim") / "adk"
    proc = run_cli("reconstruct", "simulate", ADK / "adk_closed.pdb", ADK / "adk_open.pdb", "-o", out, "--n", "160",
                   "--box", "32", "--apix", "3.0", "--resolution", "8", "--states", "5", "--snr", "1", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def run(sim: Path) -> Path:
    out = sim.parent / "run"
    proc = run_cli("reconstruct", "train", sim / "particles.star", "-o", out, "--zdim", "2", "--basis", "3",
                   "--epochs", "2", "--batch", "40", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    (sim.parent / "train_stderr.txt").write_text(proc.stderr)
    return out


@needs_adk
def test_simulate_writes_consistent_set(sim: Path) -> None:
    with mrcfile.open(sim / "particles.mrcs", permissive=True) as m:
        assert m.data.shape == (160, 32, 32)
        assert float(m.voxel_size.x) == pytest.approx(3.0)
    lab = np.load(sim / "labels.npz")
    assert lab["state"].shape == (160,) and set(np.unique(lab["state"])) <= set(range(5))
    assert len(list((sim / "gt").glob("state_*.mrc"))) == 5


@needs_adk
def test_train_writes_run_and_latents(run: Path) -> None:
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    z = np.load(run / "z.npy")
    assert z.shape == (160, 2) and np.isfinite(z).all()
    w = np.load(run / "weights.npy")
    assert w.shape == (160, 3) and np.isfinite(w).all() and w.std(0).min() > 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["basis_fit"] == "posterior"  # the default
    assert cfg["config"]["zdim"] == 2 and cfg["D"] == 32 and cfg["apix"] == pytest.approx(3.0)


@needs_adk
def test_train_records_the_readout_and_rerunning_a_finished_run_redoes_only_the_readout(
        run: Path, sim: Path, tmp_path: Path) -> None:
    import shutil

    info = json.loads((run / "weights.json").read_text())
    # 3 basis volumes: too few to measure the noise floor, so "auto" reads every shell (16 at 32 px)
    assert info["readout_band"] == "auto" and info["band_shell"] == 16 and info["noise_floor"] == 1.0
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    log_before = (copy / "log.jsonl").read_text()
    args = ("reconstruct", "train", sim / "particles.star", "-o", copy, "--zdim", "2", "--basis", "3", "--epochs", "2",
            "--batch", "40", "--device", "cpu")
    proc = run_cli(*args, "--readout-band", "4")
    assert proc.returncode == 0, proc.stderr
    assert (copy / "log.jsonl").read_text() == log_before  # no training step
    info4 = json.loads((copy / "weights.json").read_text())
    assert info4["readout_band"] == 4 and info4["band_shell"] == 4
    assert not np.allclose(np.load(copy / "weights.npy"), np.load(run / "weights.npy"))
    proc = run_cli(*args, "--readout-band", "wide")
    assert_error(proc, "--readout-band")


@needs_adk
def test_train_prints_plain_progress_lines_when_not_on_a_terminal(run: Path) -> None:
    # a batch job's log (stderr not a terminal) gets plain lines: the first update and the end
    # (160 images in batches of 40 for 2 epochs: 8 steps)
    err = (run.parent / "train_stderr.txt").read_text()
    lines = [x for x in err.splitlines() if x.startswith("train: ")]
    assert len(lines) >= 2, err
    assert re.match(r"train: \d/8 epoch 1/2 loss \S+ \(\d+ s\)$", lines[0]), lines[0]
    assert re.match(r"train: 8/8 epoch 2/2 loss \S+ \(\d+ s\)$", lines[-1]), lines[-1]


@needs_adk
def test_train_resume_is_a_no_op_when_done(run: Path, sim: Path) -> None:
    before = (run / "log.jsonl").read_text()
    proc = run_cli("reconstruct", "train", sim / "particles.star", "-o", run, "--zdim", "2", "--basis", "3",
                   "--epochs", "2", "--batch", "40", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert (run / "log.jsonl").read_text() == before  # already at epoch 2: nothing retrained


@needs_adk
def test_volume_particle_z_and_pc(run: Path, tmp_path: Path) -> None:
    one = tmp_path / "p0.mrc"
    assert run_cli("reconstruct", "volume", run, "--particle", "0", "-o", one).returncode == 0
    with mrcfile.open(one) as m:
        assert m.data.shape == (32, 32, 32) and float(m.voxel_size.x) == pytest.approx(3.0)
        v0 = m.data.copy()
    z0 = np.load(run / "z.npy")[0]
    two = tmp_path / "z.mrc"
    assert run_cli("reconstruct", "volume", run, "--z", " ".join(map(str, z0)), "-o", two).returncode == 0
    with mrcfile.open(two) as m:
        np.testing.assert_allclose(m.data, v0, atol=1e-5 * np.abs(v0).max())
    trav = tmp_path / "pc1"
    assert run_cli("reconstruct", "volume", run, "--pc", "1", "--steps", "3", "-o", trav).returncode == 0
    assert len(list(trav.glob("vol_*.mrc"))) == 3
    assert np.loadtxt(trav / "z_values.txt").shape == (3, 2)


@needs_adk
def test_analyze_writes_plots_volumes_and_star(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "an"
    proc = run_cli("reconstruct", "analyze", run, "-o", out, "--k", "3", "--steps", "2", "--no-umap")
    assert proc.returncode == 0, proc.stderr
    assert (out / "z_pca.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "kmeans3").glob("vol_*.mrc"))) == 3
    star = (out / "particles_latent.star").read_text()
    # the default latent is the closed-form basis weights (K = 3 columns)
    assert "rlnVoxfieldWeight1" in star and "rlnVoxfieldWeight3" in star and "data_optics" in star
    assert "analysis of weights" in proc.stdout
    out_z = tmp_path / "an_z"
    proc = run_cli("reconstruct", "analyze", run, "-o", out_z, "--k", "2", "--pcs", "1", "--steps", "2", "--no-umap",
                   "--latent", "z")
    assert proc.returncode == 0, proc.stderr
    star = (out_z / "particles_latent.star").read_text()
    assert "rlnVoxfieldLatent1" in star and "rlnVoxfieldLatent2" in star and "rlnVoxfieldWeight1" not in star
    assert_error(run_cli("reconstruct", "analyze", run, "--latent", "pca"), "--latent")


@needs_adk
def test_eval_reports_au_fsc_and_spearman(run: Path, sim: Path, tmp_path: Path) -> None:
    png = tmp_path / "fsc.png"
    proc = run_cli("reconstruct", "eval", run, "--truth", sim, "--n", "8", "--json", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert 0.0 < rec["au_fsc_mean"] <= 0.5
    assert rec["n_images"] == 8
    assert 0.0 <= rec["spearman"]["pc1"] <= 1.0
    assert rec["latent"] == "weights"
    proc = run_cli("reconstruct", "eval", run, "--truth", sim, "--n", "8", "--json", "--latent", "z")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["latent"] == "z"
    assert png.stat().st_size > 1000


# ------------------------------------------------------------------ bad input
@needs_adk
@pytest.mark.filterwarnings("ignore:Data array contains NaN values:RuntimeWarning")  # the NaN stack is deliberate
def test_bad_inputs_fail_with_one_line(sim: Path, tmp_path: Path) -> None:
    # STAR without the angle columns
    text = (sim / "particles.star").read_text().replace("_rlnAngleRot", "_rlnSomethingElse")
    bad = tmp_path / "noangles.star"
    bad.write_text(text)
    proc = run_cli("reconstruct", "train", bad, "--datadir", sim, "-o", tmp_path / "r1", "--epochs", "1")
    assert_error(proc, "rlnAngleRot")
    assert not (tmp_path / "r1" / "checkpoint.pt").exists()
    # NaN in one image
    stack = tmp_path / "nan.mrcs"
    with mrcfile.open(sim / "particles.mrcs", permissive=True) as m:
        data = m.data.copy()
    data[7, 3, 3] = np.nan
    with mrcfile.new(stack) as m:
        m.set_data(data)
    proc = run_cli("reconstruct", "train", stack, "--poses", sim / "poses.pkl", "--ctf", sim / "ctf.pkl", "-o",
                   tmp_path / "r2", "--epochs", "1")
    assert_error(proc, "NaN")
    # pose count does not match the stack
    proc = run_cli("reconstruct", "train", REAL / "relion31.mrcs", "--poses", sim / "poses.pkl", "-o", tmp_path / "r3")
    assert_error(proc, "160")
    # odd/absurd options
    assert_error(run_cli("reconstruct", "train", sim / "particles.star", "-o", tmp_path / "r4", "--zdim", "-1"), "--zdim")
    assert_error(run_cli("reconstruct", "train", sim / "particles.star", "-o", tmp_path / "r5", "--mask", "blobby"),
                 "--mask")
    assert_error(run_cli("reconstruct", "train", sim / "particles.star", "-o", tmp_path / "r6", "--focus-mask",
                         tmp_path / "none.mrc"), "--focus-mask")
    wrong = tmp_path / "wrong_box.mrc"
    with mrcfile.new(wrong) as m:
        m.set_data(np.ones((8, 8, 8), np.float32))
    assert_error(run_cli("reconstruct", "train", sim / "particles.star", "-o", tmp_path / "r7", "--mask", wrong),
                 "wrong_box.mrc")
    assert not (tmp_path / "r7" / "checkpoint.pt").exists()
    assert_error(run_cli("reconstruct", "simulate", ADK / "adk_open.pdb", "-o", tmp_path / "s"), "two models")


@needs_adk
def test_volume_bad_options(run: Path, tmp_path: Path) -> None:
    assert_error(run_cli("reconstruct", "volume", run, "--z", "1 2 3", "-o", tmp_path / "a.mrc"), "--z")
    assert_error(run_cli("reconstruct", "volume", run, "--particle", "999", "-o", tmp_path / "a.mrc"), "--particle")
    assert_error(run_cli("reconstruct", "volume", run, "-o", tmp_path / "a.mrc"), "exactly one")
    assert_error(run_cli("reconstruct", "volume", tmp_path, "--particle", "0", "-o", tmp_path / "a.mrc"),
                 "checkpoint.pt")


# Trains on 256 px real images (~10 s); reading the RELION 3.1 set is tested fast in
# test_reconstruct_io (test_relion31_*), homogeneous training in test_reconstruct_model (zdim 0).
@pytest.mark.slow
def test_real_relion31_stack_trains_homogeneous(tmp_path: Path) -> None:
    """The real RELION 3.1 particles (5 images, 256 px) go through loading, CTF and one step of
    homogeneous training (mechanics only; 5 images reconstruct nothing)."""
    if not (REAL / "relion31.star").exists():
        pytest.skip("../shared/data not present")
    out = tmp_path / "hom"
    proc = run_cli("reconstruct", "train", REAL / "relion31.star", "--datadir", REAL, "-o", out, "--zdim", "0",
                   "--epochs", "1", "--batch", "5", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    vol = tmp_path / "hom.mrc"
    assert run_cli("reconstruct", "volume", out, "-o", vol).returncode == 0
    with mrcfile.open(vol) as m:
        assert m.data.shape == (256, 256, 256)
        assert float(m.voxel_size.x) == pytest.approx(2.806, abs=1e-3)


# Two subprocess trainings on real 200 px images (~10 s each).
@pytest.mark.slow
@pytest.mark.parametrize("star", ["sample_relion_data.star", "sample_particles_relion31.star", "relion31.star"])
def test_real_particle_files_train_heterogeneous(tmp_path: Path, star: str) -> None:
    """Issue 19, deliverable 4: every real particle file with poses loads and trains a
    heterogeneous model (mechanics only: a few images reconstruct nothing)."""
    if not (REAL / star).exists():
        pytest.skip("../shared/data not present")
    out = tmp_path / "het"
    proc = run_cli("reconstruct", "train", REAL / star, "--datadir", REAL, "-o", out, "--zdim", "2", "--basis", "2",
                   "--epochs", "1", "--batch", "4", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    z = np.load(out / "z.npy")
    assert z.shape[1] == 2 and z.shape[0] >= 5 and np.isfinite(z).all()


@pytest.mark.slow
def test_real_particles_without_poses_are_refused_clearly(tmp_path: Path) -> None:
    """EMPIAR-10076's files carry CTF but no poses; voxfield needs given poses, and says so."""
    for name, needle in (("empiar_10076_7.star", "rlnAngleRot"), ("empiar_10076_7.cs", "alignments3D/pose")):
        if not (REAL / name).exists():
            pytest.skip("../shared/data not present")
        assert_error(run_cli("reconstruct", "train", REAL / name, "--datadir", REAL, "-o", tmp_path / name),
                     name, needle)
