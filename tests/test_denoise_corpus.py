"""Issue 18: the training corpus (assemblies, curation, identity split, mmCIF writing), the
v2 simulator's new effects, measured noise spectra and the resolution-aware U-Net."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from voxfield.denoise import assemblies
from voxfield.denoise.corpus import ModelSummary, curate, identity_clusters, split_for, write_cif
from voxfield.denoise.noise_spectra import PROFILE_GRID, normalise_profile, radial_amplitude, shipped_profiles
from voxfield.denoise.predict import resolve_threshold
from voxfield.denoise.simulate import SIM_V2, SimConfig, _lowpass, simulate_sample, simulator
from voxfield.denoise.unet import UNet3D, UNetConfig, load_weights, save_weights, widen_to_resolution_input
from voxfield.errors import OptionError
from voxfield.io.atoms import AtomTable, read_atom_table


def _table(n_res: int = 40, seed: int = 0, chain: str = "A", water: int = 0) -> AtomTable:
    """A compact chain of alanines (N, CA, C, O, CB) plus ``water`` waters."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((n_res * 5, 3))
    steps *= 1.5 / np.linalg.norm(steps, axis=1, keepdims=True)
    xyz = np.cumsum(steps, axis=0)
    names = ["N", "CA", "C", "O", "CB"] * n_res
    el = ["N", "C", "C", "O", "C"] * n_res
    rname = ["ALA"] * (5 * n_res)
    ridx = np.repeat(np.arange(n_res), 5)
    if water:
        xyz = np.vstack([xyz, rng.uniform(-20, 20, (water, 3))])
        names += ["O"] * water
        el += ["O"] * water
        rname += ["HOH"] * water
        ridx = np.concatenate([ridx, n_res + np.arange(water)])
    n = len(xyz)
    num = {"N": 7, "C": 6, "O": 8}
    return AtomTable(xyz=xyz, element=np.array(el), atomic_number=np.array([num[e] for e in el]),
                     b_factor=np.full(n, 20.0, np.float32), occupancy=np.ones(n, np.float32),
                     residue_index=ridx.astype(np.int64), chain=np.full(n, chain), residue_number=ridx + 1,
                     insertion_code=np.full(n, ""), residue_name=np.array(rname), atom_name=np.array(names),
                     source="toy")


# ------------------------------------------------------------------ assemblies
def test_cyclic_ring_is_symmetric_and_touching() -> None:
    sub = _table()
    ring = assemblies.cyclic(sub, 5, np.random.default_rng(0))
    assert len(ring) == 5 * len(sub) and len(np.unique(ring.chain)) == 5
    cents = np.array([ring.xyz[ring.chain == c].mean(axis=0) for c in np.unique(ring.chain)])
    radii = np.linalg.norm(cents[:, :2], axis=1)
    assert np.ptp(radii) < 1e-6 and np.abs(cents[:, 2]).max() < 1e-6  # a ring about z
    d = sorted(np.linalg.norm(cents[0] - cents[1:], axis=1))[0]
    assert d == pytest.approx(2 * 0.9 * assemblies.subunit_radius(sub), rel=1e-6)  # neighbours touch
    with pytest.raises(OptionError):
        assemblies.cyclic(sub, 1, np.random.default_rng(0))


def test_dihedral_and_helical_assemblies() -> None:
    sub = _table()
    d = assemblies.dihedral(sub, 3, np.random.default_rng(1))
    assert len(d) == 6 * len(sub)
    assert np.linalg.norm(d.xyz.mean(axis=0)) < 1e-6  # the two rings are related by a 2-fold
    h = assemblies.helical(sub, np.random.default_rng(2), length=100.0, units_per_turn=6.0)
    n = len(h) // len(sub)
    cents = np.array([h.xyz[i * len(sub):(i + 1) * len(sub)].mean(axis=0) for i in range(n)])
    rise = np.diff(cents[:, 2])
    assert np.ptp(rise) < 1e-6 and rise[0] > 0 and n * rise[0] >= 100.0  # constant rise, long enough
    twist = np.diff(np.unwrap(np.arctan2(cents[:, 1], cents[:, 0])))
    assert np.abs(np.abs(twist) - 2 * np.pi / 6).max() < 1e-6
    assert h.residue_index.max() == n * (sub.residue_index.max() + 1) - 1  # residue index runs on


def test_bdna_duplex_geometry() -> None:
    dna = assemblies.bdna_duplex(20, np.random.default_rng(0))
    p = dna.element == "P"
    assert p.sum() == 40  # one phosphate per nucleotide, two strands
    r = np.linalg.norm(dna.xyz[p][:, :2], axis=1)
    assert np.allclose(r, 8.9, atol=0.01)
    assert np.ptp(dna.xyz[:, 2]) == pytest.approx(19 * 3.38, abs=8.0)
    assert set(np.unique(dna.chain)) == {"A", "B"} and set(np.unique(dna.residue_name)) <= {"DA", "DC", "DG", "DT"}
    # no two heavy atoms closer than 0.9 Å
    from scipy.spatial import cKDTree

    assert not cKDTree(dna.xyz).query_pairs(0.9)


# ------------------------------------------------------------------ curation and split
def test_curate_drops_waters_and_reads_sequences() -> None:
    t, s = curate(_table(30, water=12))
    assert len(t) == 150 and s.atoms == 150
    assert s.protein_residues == 30 and s.nucleic_residues == 0 and s.kind == "protein"
    assert s.sequences == {"A": "A" * 30}


def test_identity_clusters_join_similar_chains_only() -> None:
    rng = np.random.default_rng(0)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    a = "".join(rng.choice(aa, 120))
    b = "".join(rng.choice(aa, 120))
    mutant = "".join(c if rng.random() > 0.05 else "W" for c in a)
    summ = {k: ModelSummary(1000, 120, 0, 1, {"A": s}, {"A": "protein"})
            for k, s in (("m1", a), ("m2", mutant), ("m3", b))}
    summ["tiny"] = ModelSummary(400, 10, 0, 1, {"A": a[:10]}, {"A": "protein"})
    cl = identity_clusters(summ)
    assert cl["m1"] == cl["m2"] == "m1" and cl["m3"] == "m3" and cl["tiny"] == "tiny"


def test_split_is_deterministic_and_proportioned() -> None:
    keys = [f"cluster{i}" for i in range(2000)]
    s = [split_for(k) for k in keys]
    assert s == [split_for(k) for k in keys]
    frac = {v: s.count(v) / len(s) for v in ("train", "val", "test")}
    assert abs(frac["test"] - 0.12) < 0.03 and abs(frac["val"] - 0.08) < 0.03


def test_write_cif_round_trips(tmp_path: Path) -> None:
    ring = assemblies.cyclic(_table(), 3, np.random.default_rng(0))
    write_cif(ring, tmp_path / "ring.cif.gz", "ring")
    back = read_atom_table(tmp_path / "ring.cif.gz")
    assert len(back) == len(ring)
    assert np.allclose(back.xyz, ring.xyz, atol=1e-3)
    assert list(back.element) == list(ring.element) and list(back.chain) == list(ring.chain)


# ------------------------------------------------------------------ simulator v2
def test_anisotropic_lowpass_blurs_along_its_direction() -> None:
    a = np.zeros((32, 32, 32), np.float32)
    a[16, 16, 16] = 1.0
    out = _lowpass(a, 4.0, 0.0, (np.array([1.0, 0.0, 0.0]), 3.0))
    prof_z, prof_x = out[:, 16, 16], out[16, 16, :]
    width = [float((p > 0.5 * p.max()).sum()) for p in (prof_z, prof_x)]
    assert width[0] >= 2 * width[1]  # 3x worse resolution along z: a wider peak


def test_v2_simulator_draws_its_new_effects_and_v1_is_unchanged() -> None:
    from voxfield.denoise.molmap import atoms_from_table

    atoms = atoms_from_table(_table(60))
    cfg = replace(SIM_V2, box=32, p_local_res=1.0, p_aniso=1.0, p_real_noise=1.0)
    s = simulate_sample(atoms, np.random.default_rng(0), cfg, resolution=12.0)
    assert {"local_res", "aniso", "noise_spectrum"} <= set(s.info)
    assert np.isfinite(s.x).all() and s.label.any()
    # the v1 configuration draws none of them, so datasets made with it stay reproducible
    v1 = simulate_sample(atoms, np.random.default_rng(0), replace(SimConfig(), box=32), resolution=6.0)
    assert not {"local_res", "aniso", "noise_spectrum"} & set(v1.info)
    assert simulator("v2", 48).box == 48 and simulator("v1") == SimConfig()
    # strongest sharpening at the worst resolution, anisotropic: the map stays finite
    hard = replace(SIM_V2, box=32, p_sharpen=1.0, p_aniso=1.0, aniso=(3.0, 3.0), sharpen=10.0)
    for seed in range(3):
        s = simulate_sample(atoms, np.random.default_rng(seed), hard, resolution=20.0)
        assert np.isfinite(s.raw).all() and s.info["bfactor"] < 0
    with pytest.raises(OptionError, match="simulator"):
        simulator("v9")


def test_noise_profiles_measured_and_shipped() -> None:
    rng = np.random.default_rng(0)
    white = rng.standard_normal((48, 48, 48))
    k, amp = radial_amplitude(white)
    assert normalise_profile(k, amp) is None  # flat: no roll-off to anchor on
    smooth = _lowpass(white.astype(np.float32), 6.0)
    prof = normalise_profile(*radial_amplitude(smooth))
    assert prof is not None and prof.shape == PROFILE_GRID.shape
    assert prof[0:10].mean() > 0.8 and prof[-10:].max() < 0.2  # plateau, then roll-off
    shipped = shipped_profiles()
    assert len(shipped) >= 2 and all(p.shape == PROFILE_GRID.shape for _, p in shipped)
    assert not any("3488" in n or "21457" in n for n, _ in shipped)  # test maps are never a source


# ------------------------------------------------------------------ resolution-aware U-Net
def test_widened_model_predicts_as_before_and_resolution_matters_after_training(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = UNet3D(UNetConfig(channels=(4, 8))).eval()
    wide = widen_to_resolution_input(base).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(base(x), wide(x, torch.tensor([3.0, float("nan")])), atol=1e-6)
        wide.down[0][0].weight[:, 1:] += 0.5  # the resolution channels now carry weight
        a = wide(x, torch.tensor([3.0, 3.0]))
        b = wide(x, torch.tensor([15.0, 15.0]))
        c = wide(x)  # unknown resolution
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    save_weights(wide, tmp_path / "w.safetensors", {"thresholds": {"background": 0.4, "structural": 0.8}})
    back, _ = load_weights(tmp_path / "w.safetensors")
    assert back.config.resolution_input
    with torch.no_grad():
        assert torch.allclose(back(x, torch.tensor([15.0, 15.0])), b, atol=1e-6)


def test_thresholds_by_resolution_band() -> None:
    meta = {"thresholds": {"background": 0.5, "structural": 0.9},
            "thresholds_by_resolution": [{"max_resolution": 5.0, "background": 0.3, "structural": 0.7},
                                         {"max_resolution": 10.0, "background": 0.4, "structural": 0.8},
                                         {"max_resolution": 20.0, "background": 0.6, "structural": 0.95}]}
    assert resolve_threshold(meta, "background", None, 3.2) == 0.3
    assert resolve_threshold(meta, "structural", None, 7.0) == 0.8
    assert resolve_threshold(meta, "background", None, 15.0) == 0.6
    assert resolve_threshold(meta, "background", None, 40.0) == 0.6  # past the last band: its values
    assert resolve_threshold(meta, "background", None, None) == 0.5  # unknown: the withheld-resolution ones
    assert resolve_threshold(meta, "background", 0.2, 15.0) == 0.2


def test_training_with_the_resolution_input(tmp_path: Path) -> None:
    from voxfield.denoise.dataset import make_dataset
    from voxfield.denoise.train import TrainConfig, train

    f = tmp_path / "m.cif"
    write_cif(_table(60), f)
    ds = make_dataset([f], tmp_path / "ds", n_samples=3, seed=0, config=replace(SIM_V2, box=32))
    start = UNet3D(UNetConfig(channels=(4, 8)))
    save_weights(start, tmp_path / "start.safetensors", {})
    out = train(ds, tmp_path / "run", val_dir=ds, init_weights=tmp_path / "start.safetensors",
                config=TrainConfig(steps=2, batch=2, crop=16, eval_every=1, channels=(4, 8), resolution_input=True))
    model, meta = load_weights(out)
    assert model.config.resolution_input
    bands = meta["thresholds_by_resolution"]
    assert bands and all(0 <= b["background"] <= 1 for b in bands)
    assert "unknown_resolution" in meta["validation"]


def test_shipped_family_is_chosen_by_resolution() -> None:
    from voxfield.denoise.api import trained_range
    from voxfield.denoise.unet import GENERALIST, SPECIALIST, default_weights_path

    assert default_weights_path(3.2).name == SPECIALIST and default_weights_path(10.0).name == SPECIALIST
    assert default_weights_path(12.0).name == GENERALIST and default_weights_path(None).name == GENERALIST
    assert default_weights_path(float("nan")).name == GENERALIST
    v1, m1 = load_weights(default_weights_path(3.2))
    v2, m2 = load_weights(default_weights_path(15.0))
    assert not v1.config.resolution_input and v2.config.resolution_input
    assert trained_range(m1) == (2.5, 10.0) and trained_range(m2) == (2.5, 20.0)
    bands = m2["thresholds_by_resolution"]
    assert [b["max_resolution"] for b in bands] == [5.0, 10.0, 20.0]
    total = sum(f.stat().st_size for f in default_weights_path(None).parent.glob("*.safetensors"))
    assert total <= 20e6  # the limit on shipped weights
