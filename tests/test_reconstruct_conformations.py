"""Issue 19, deliverable 1: hinge motions and compositional states built from one model, and
the particle simulator on explicit states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import assert_one_line_error as assert_error
from test_cli import run_cli

from voxfield.errors import OptionError
from voxfield.io.atoms import AtomTable
from voxfield.reconstruct.conformations import composition_states, hinge_axis, hinge_states, select
from voxfield.reconstruct.simulate import read_model, simulate_dataset


def _two_domain_table() -> AtomTable:
    """Chain A: two compact blobs of 30 residues (CA only) side by side; chain B: 10 residues."""
    rng = np.random.default_rng(0)
    xyz = np.concatenate([rng.normal([0, 0, 0], 3.0, (30, 3)), rng.normal([9, 0, 0], 3.0, (30, 3)),
                          rng.normal([0, 10, 0], 2.0, (10, 3))])
    n = len(xyz)
    chain = np.array(["A"] * 60 + ["B"] * 10)
    resnum = np.concatenate([np.arange(1, 61), np.arange(1, 11)])
    return AtomTable(xyz=xyz, element=np.full(n, "C"), atomic_number=np.full(n, 6), b_factor=np.zeros(n, np.float32),
                     occupancy=np.ones(n, np.float32), residue_index=np.arange(n), chain=chain, residue_number=resnum,
                     insertion_code=np.full(n, ""), residue_name=np.full(n, "ALA"), atom_name=np.full(n, "CA"),
                     source="toy")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxfield.denoise.corpus import write_cif

    p = tmp_path_factory.mktemp("m") / "two_domain.cif"
    write_cif(_two_domain_table(), p)
    return p


def test_selection_parsing(model_file: Path) -> None:
    atoms, keys = read_model(model_file)
    assert select(keys, "A").sum() == 60 and select(keys, "B").sum() == 10
    assert select(keys, "A:31-60").sum() == 30 and select(keys, "A:5").sum() == 1
    assert select(keys, "A:1-10+B").sum() == 20
    for bad, msg in (("C", "names no atom"), ("A:x-3", "FIRST-LAST"), ("A:9-3", "before"), ("A+", "empty")):
        with pytest.raises(OptionError, match=msg):
            select(keys, bad)


def test_hinge_turns_the_domain_rigidly(model_file: Path) -> None:
    atoms, keys = read_model(model_file)
    dom = select(keys, "A:31-60")
    p, d = hinge_axis(atoms, dom)
    assert abs(np.linalg.norm(d) - 1) < 1e-9
    states = hinge_states(atoms, dom, [0.0, 20.0, 40.0])
    assert np.allclose(states[0].zyx, atoms.zyx)
    for s in states[1:]:
        assert np.allclose(s.zyx[~dom], atoms.zyx[~dom])  # the rest stays
        a, b = s.zyx[dom], atoms.zyx[dom]
        da = np.linalg.norm(a[:, None] - a[None], axis=-1)
        db = np.linalg.norm(b[:, None] - b[None], axis=-1)
        assert np.allclose(da, db)  # rigid
        assert np.allclose(np.linalg.norm(a - p, axis=1), np.linalg.norm(b - p, axis=1))  # about the hinge point
    rmsd = [float(np.sqrt(((s.zyx - atoms.zyx) ** 2).sum(axis=1).mean())) for s in states]
    assert rmsd[0] < 1e-9 < rmsd[1] < rmsd[2]
    with pytest.raises(OptionError, match="some but not all"):
        hinge_axis(atoms, np.ones(len(atoms), bool))


def test_composition_states(model_file: Path) -> None:
    atoms, keys = read_model(model_file)
    states = composition_states(atoms, keys, ["A:31-60", "B"], [[True, True], [True, False], [False, False]])
    assert [len(s) for s in states] == [70, 60, 30]
    with pytest.raises(OptionError, match="overlap"):
        composition_states(atoms, keys, ["A", "A:1-5"], [[True, True]])
    with pytest.raises(OptionError, match="flags"):
        composition_states(atoms, keys, ["B"], [[True, False]])


def test_simulate_on_explicit_states(tmp_path: Path, model_file: Path) -> None:
    atoms, keys = read_model(model_file)
    states = composition_states(atoms, keys, ["A:31-60", "B"], [[True, True], [False, True], [True, False]])
    res = simulate_dataset(tmp_path / "sim", [], states=states, n_images=24, D=48, apix=1.5, resolution=6.0, snr=0.1,
                           seed=3)
    assert res.n_states == 3
    meta = json.loads(res.meta.read_text())
    assert meta["states"] == "explicit" and meta["n_atoms"] == [70, 40, 60]
    lab = np.load(res.labels)
    assert set(np.unique(lab["state"])) <= {0, 1, 2} and lab["t_states"].tolist() == [0.0, 0.5, 1.0]
    import mrcfile

    vols = []
    for k in range(3):
        with mrcfile.open(res.gt_volume(k)) as m:
            vols.append(np.asarray(m.data, float))
    # the full state holds the most density; the partial ones differ from it where a group is missing
    assert vols[0].sum() > vols[1].sum() and vols[0].sum() > vols[2].sum()
    assert np.abs(vols[0] - vols[1]).max() > 0.1 * vols[0].max()
    # all states share one frame: the present parts coincide
    core = vols[1] > 0.5 * vols[1].max()
    assert np.corrcoef(vols[0][core], vols[1][core])[0, 1] > 0.9  # a shifted frame would decorrelate
    assert np.median(np.abs(vols[0][core] - vols[1][core]) / vols[1][core]) < 0.05


def test_cli_hinge_and_subunits(tmp_path: Path, model_file: Path) -> None:
    out = tmp_path / "hinge"
    proc = run_cli("reconstruct", "simulate", model_file, "-o", out, "--n", "20", "--box", "48", "--apix", "1.5",
                   "--resolution", "6", "--hinge", "A:31-60", "--angles", "-20,20", "--states", "5")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "meta.json").read_text())["n_states"] == 5
    out2 = tmp_path / "sub"
    proc = run_cli("reconstruct", "simulate", model_file, "-o", out2, "--n", "20", "--box", "48", "--apix", "1.5",
                   "--resolution", "6", "--subunits", "A:31-60;B", "--patterns", "11,10,01")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out2 / "meta.json").read_text())["n_atoms"] == [70, 60, 40]
    assert_error(run_cli("reconstruct", "simulate", model_file, model_file, "-o", tmp_path / "x", "--hinge", "A"),
                 "exactly one model")
    assert_error(run_cli("reconstruct", "simulate", model_file, "-o", tmp_path / "x", "--hinge", "A:31-60",
                         "--angles", "wide"), "--angles")
    assert_error(run_cli("reconstruct", "simulate", model_file, "-o", tmp_path / "x", "--subunits", "B",
                         "--patterns", "1x"), "--patterns")
    assert_error(run_cli("reconstruct", "simulate", model_file, "-o", tmp_path / "x"), "at least two models")

