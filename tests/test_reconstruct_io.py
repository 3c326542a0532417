"""Particle-stack input for reconstruction: RELION/cryoSPARC/cryoDRGN files, conventions, writers, bad input.

Real files come from ``../shared/data/particles`` (see its MANIFEST.md); tests that need them
skip cleanly when the folder is absent. Expected numbers were read from the files by hand.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from voxfield.errors import DataError, FormatError, VoxfieldError
from voxfield.reconstruct.particles import (
    ImageSource,
    check_images,
    load_ctf_pkl,
    load_particles,
    load_pose_pkl,
    parse_image_name,
    read_star_metadata,
    write_cryodrgn_pkls,
)
from voxfield.reconstruct.poses import csparc_pose_to_rot, euler_to_rot, rot_to_euler, rotvec_to_rot
from voxfield.reconstruct.star_io import add_star_columns, read_star, write_relion31_star

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = SHARED / "particles" / "real"
SYN = SHARED / "particles" / "synthetic"


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"shared data file {p} not available")
    return p


def _write_stack(path: Path, data: np.ndarray, voxel: float = 1.0) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about NaN data
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(np.asarray(data, dtype=np.float32))
            m.voxel_size = voxel
    return path


def _write_star_text(path: Path, columns: list[str], rows: list[list[object]], block: str = "data_particles") -> Path:
    lines = [block, "", "loop_"] + [f"_{c}" for c in columns]
    lines += [" ".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _reference_relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """cryoDRGN's ``utils.R_from_relion`` as documented: Ry(psi) @ Rb(tilt) @ Ra(rot) with
    Ra/Ry z-rotations [[c,-s,0],[s,c,0],[0,0,1]], Rb = [[c,0,-s],[0,1,0],[s,0,c]], then the
    entries (0,1), (1,0), (1,2), (2,1) negated. Written here independently of the module."""
    a, b, y = np.deg2rad([rot, tilt, psi])
    ra = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rb = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
    ry = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    r = ry @ rb @ ra
    for i, j in ((0, 1), (1, 0), (1, 2), (2, 1)):
        r[i, j] *= -1
    return r


# ------------------------------------------------------------------------------ conventions


def test_euler_to_rot_is_cryodrgn_r_from_relion_and_relion_matrix():
    rng = np.random.default_rng(0)
    eul = np.column_stack([rng.uniform(-180, 180, 50), rng.uniform(0, 180, 50), rng.uniform(-180, 180, 50)])
    got = euler_to_rot(eul)
    ref = np.stack([_reference_relion_matrix(*e) for e in eul])
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # = transpose of scipy's intrinsic ZYZ rotation
    sc = Rotation.from_euler("ZYZ", eul, degrees=True).as_matrix().transpose(0, 2, 1)
    np.testing.assert_allclose(got, sc, atol=1e-12)
    # RELION Euler_angles2matrix element A[0][2] = -cos(psi) sin(tilt), A[2][0] = sin(tilt) cos(rot)
    r, t, p = np.deg2rad(eul[0])
    assert got[0, 0, 2] == pytest.approx(-np.cos(p) * np.sin(t))
    assert got[0, 2, 0] == pytest.approx(np.sin(t) * np.cos(r))
    assert np.allclose(np.linalg.det(got), 1.0)


def test_euler_round_trip_random_rotations():
    mats = Rotation.random(500, random_state=1).as_matrix()
    eul = rot_to_euler(mats)
    assert np.all((eul[:, 1] >= 0) & (eul[:, 1] <= 180))
    assert np.all((eul[:, [0, 2]] > -180) & (eul[:, [0, 2]] <= 180))
    np.testing.assert_allclose(euler_to_rot(eul), mats, atol=1e-10)
    # angles themselves come back in the canonical range
    e0 = np.array([[-102.30296, 82.318041, 124.706463], [30.0, 0.0, 0.0], [10.0, 180.0, 0.0], [45.0, 90.0, -90.0]])
    back = rot_to_euler(euler_to_rot(e0))
    np.testing.assert_allclose(back, e0, atol=1e-9)
    # gimbal lock: only rot+psi (tilt 0) or rot-psi (tilt 180) matter
    for e in ([20.0, 0.0, 15.0], [20.0, 180.0, 15.0], [-170.0, 1e-9, 175.0]):
        np.testing.assert_allclose(euler_to_rot(rot_to_euler(euler_to_rot(e))), euler_to_rot(e), atol=1e-9)


def test_csparc_pose_is_transposed_rodrigues():
    v = np.array([[0.3, -0.2, 1.1], [0.0, 0.0, 0.0], [np.pi, 0, 0]])
    np.testing.assert_allclose(rotvec_to_rot(v), Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(
        csparc_pose_to_rot(v), Rotation.from_rotvec(v).as_matrix().transpose(0, 2, 1), atol=1e-12
    )


# -------------------------------------------------------------------------------- RELION


def test_relion31_star_with_stack():
    star = _need(REAL / "relion31.star")
    s = load_particles(star)
    assert len(s) == 5 and s.D == 256 and s.images.D == 256
    assert s.apix == pytest.approx(2.806)
    c = s.ctf[0]
    np.testing.assert_allclose(c[:2], [256, 2.806], rtol=1e-6)
    np.testing.assert_allclose(c[2:5], [13108.082418, 12845.582418, -160.39], rtol=1e-6)
    np.testing.assert_allclose(c[5:], [300.0, 0.01, 0.1, 0.0], rtol=1e-6)
    # rlnOriginXAngst/YAngst = 0.019324 / -0.64686 Å at 2.806 Å/px, sign kept
    np.testing.assert_allclose(s.trans[0], [0.019324 / 2.806, -0.64686 / 2.806], rtol=1e-5)
    np.testing.assert_allclose(s.rot[0], _reference_relion_matrix(-102.30296, 82.318041, 124.706463), atol=1e-6)
    assert s.rot.dtype == np.float32 and s.trans.dtype == np.float32 and s.ctf.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(REAL / "relion31.mrcs", permissive=True) as m:
            ref = np.asarray(m.data[[4, 0, 2]], dtype=np.float32)
    np.testing.assert_array_equal(s.images[np.array([4, 0, 2])], ref)
    np.testing.assert_array_equal(s.images[1:3], s.images[np.array([1, 2])])
    assert s.images[3].shape == (256, 256)
    assert s.table is not None and "rlnClassNumber" in s.table.columns
    assert s.trans_frac is not None and np.allclose(s.trans_frac * 256, s.trans)


def test_relion31_v2_block_order_same_as_relion31():
    a = load_particles(_need(REAL / "relion31.star"))
    b = load_particles(_need(REAL / "relion31.v2.star"))
    np.testing.assert_array_equal(a.rot, b.rot)
    np.testing.assert_array_equal(a.trans, b.trans)
    np.testing.assert_array_equal(a.ctf, b.ctf)


def test_relion31_extract_path_needs_datadir_basename_fallback(tmp_path):
    """rlnImageName pointing at Extract/job133/... resolves to the basename in datadir."""
    text = _need(REAL / "relion31.star").read_text().replace("@relion31.mrcs", "@Extract/job133/relion31.mrcs")
    star = tmp_path / "moved.star"
    star.write_text(text)
    with pytest.raises(DataError, match=r"1 of 1 image stack\(s\) not found, first: .*Extract/job133/relion31\.mrcs"):
        load_particles(star)
    s = load_particles(star, datadir=REAL)
    assert s.images.stacks == [REAL / "relion31.mrcs"]
    assert s.images[0].shape == (256, 256)


def test_six_optics_groups_merged_per_particle():
    star = _need(REAL / "relion31.6opticsgroups.star")
    meta = read_star_metadata(star)
    assert meta.n == 139
    groups = meta.optics_group
    assert np.bincount(groups)[1:].tolist() == [48, 29, 5, 7, 26, 24]
    apix = {1: 1.25, 2: 1.24, 3: 1.25, 4: 1.25, 5: 1.24, 6: 1.25}
    cs = {1: 2.7, 2: 2.7, 3: 2.7, 4: 2.6, 5: 2.7, 6: 2.7}
    np.testing.assert_allclose(meta.ctf[:, 1], [apix[g] for g in groups], rtol=1e-6)
    np.testing.assert_allclose(meta.ctf[:, 6], [cs[g] for g in groups], rtol=1e-6)
    assert np.all(meta.ctf[:, 0] == 196) and np.all(meta.ctf[:, 5] == 200) and np.allclose(meta.ctf[:, 7], 0.1)
    # first particle: group 6, dfU 10352.805929, OriginXAngst 13.284554 at 1.25 Å/px
    assert groups[0] == 6
    assert meta.ctf[0, 2] == pytest.approx(10352.805929)
    np.testing.assert_allclose(meta.trans_px[0], [13.284554 / 1.25, -3.21701 / 1.25], rtol=1e-6)
    # a group-2 particle converts Å with 1.24 Å/px
    i = int(np.nonzero(groups == 2)[0][0])
    ang = meta.table["rlnOriginXAngst"].to_numpy(dtype=float)[i]
    assert meta.trans_px[i, 0] == pytest.approx(ang / 1.24, rel=1e-6)
    # metadata-only ParticleStack
    s = load_particles(star, images=False)
    assert s.images is None and len(s) == 139 and s.D == 196 and s.apix == pytest.approx(1.25)
    np.testing.assert_array_equal(s.ctf, meta.ctf)


def test_six_optics_groups_missing_stacks_message():
    star = _need(REAL / "relion31.6opticsgroups.star")
    with pytest.raises(DataError) as err:
        load_particles(star)
    msg = str(err.value)
    assert "139 of 139 image stack(s) not found" in msg
    assert "Polish/job520/Micrographs/0003_shiny.mrcs" in msg and "datadir" in msg
    assert "\n" not in msg


def test_relion5_metadata():
    meta = read_star_metadata(_need(REAL / "relion5.star"))
    assert meta.n == 17
    c = meta.ctf[0]
    np.testing.assert_allclose(c[[0, 1, 5, 6, 7]], [448, 0.89, 100.0, 1.6, 0.1], rtol=1e-6)
    np.testing.assert_allclose(c[2:5], [11949.061330, 11800.493288, 49.059993], rtol=1e-6)
    np.testing.assert_allclose(meta.trans_px[0], [-3.12578 / 0.89, -1.41031 / 0.89], rtol=1e-5)
    np.testing.assert_allclose(meta.rot[0], _reference_relion_matrix(111.508618, 36.742536, 141.158035), atol=1e-6)
    assert meta.image_names[0] == "1@toy_images_a.mrcs"
    with pytest.raises(DataError, match="2 of 2 image stack"):
        load_particles(REAL / "relion5.star")


def test_relion30_and_31_sample_files_agree():
    s31 = load_particles(_need(REAL / "sample_particles_relion31.star"))
    s30 = load_particles(_need(REAL / "sample_relion_data.star"))
    assert len(s31) == len(s30) == 17 and s31.D == s30.D == 200
    # same angles in both files (row 1: 109.186640, 122.200343, 71.118492), except row 15 of the
    # 3.1 file, which duplicates row 14 (rlnAngleRot 118.314252 there, 134.333245 in the 3.0 file)
    keep = np.arange(17) != 14
    np.testing.assert_allclose(s31.rot[keep], s30.rot[keep], atol=1e-6)
    assert s30.table["rlnAngleRot"].to_numpy(float)[14] == pytest.approx(134.333245)
    np.testing.assert_array_equal(s31.rot[14], s31.rot[13])
    np.testing.assert_allclose(s31.rot[0], _reference_relion_matrix(109.186640, 122.200343, 71.118492), atol=1e-6)
    # 3.1: two optics groups, 300 kV then 200 kV, 1.4 Å/px; D from the stack header (no rlnImageSize)
    assert s31.ctf[:8, 5].tolist() == [300.0] * 8 and s31.ctf[8:, 5].tolist() == [200.0] * 9
    assert np.allclose(s31.ctf[:, 1], 1.4) and np.all(s31.ctf[:, 0] == 200)
    np.testing.assert_allclose(s31.trans[0], [0.1996 / 1.4, 0.1996 / 1.4], rtol=1e-5)
    # 3.0: pixel size = rlnDetectorPixelSize 5 µm / rlnMagnification 37369.207031; rlnOriginX in pixels
    assert s30.apix == pytest.approx(5e4 / 37369.207031, rel=1e-6)
    np.testing.assert_allclose(s30.trans[0], [0.1996, 0.1996], rtol=1e-6)
    np.testing.assert_allclose(s30.ctf[0, 2:5], [21186.804688, 21363.109375, 7.476096], rtol=1e-6)
    np.testing.assert_array_equal(s31.images[np.arange(17)], s30.images[np.arange(17)])


# ---------------------------------------------------------------------- cryoSPARC & pickles


def test_empiar_star_and_cs_agree():
    st = load_particles(_need(REAL / "empiar_10076_7.star"), require_poses=False)
    cs = load_particles(_need(REAL / "empiar_10076_7.cs"), require_poses=False)
    assert len(st) == len(cs) == 7 and st.D == cs.D == 320
    assert st.rot is None and cs.rot is None  # neither file holds poses
    np.testing.assert_allclose(st.ctf[:, 2], [15301.1, 15303.0, 15150.7, 15181.9, 15366.8, 15305.0, 15177.4], rtol=1e-6)
    np.testing.assert_allclose(st.ctf[:, 3], [14916.4, 14918.4, 14766.0, 14797.3, 14982.2, 14920.3, 14792.7], rtol=1e-6)
    np.testing.assert_allclose(st.ctf, cs.ctf, rtol=2e-6, atol=1e-5)  # dfAng 5.28° vs 0.092153385 rad
    assert st.ctf[0, 4] == pytest.approx(5.28) and cs.ctf[0, 4] == pytest.approx(5.28, abs=1e-5)
    assert st.apix == pytest.approx(5e4 / 38168, rel=1e-6) and cs.apix == pytest.approx(1.31, abs=1e-4)
    np.testing.assert_array_equal(st.images[np.arange(7)], cs.images[np.arange(7)])
    with pytest.raises(DataError, match="alignments3D/pose"):
        load_particles(REAL / "empiar_10076_7.cs")
    with pytest.raises(DataError, match="rlnAngleRot, rlnAngleTilt, rlnAnglePsi"):
        load_particles(REAL / "empiar_10076_7.star")


def test_cs_with_poses(tmp_path):
    """A .cs with alignments3D: rot = Rodrigues(pose).T, trans = shift (pixels), as cryoDRGN."""
    src = np.load(_need(REAL / "empiar_10076_7.cs"))
    rng = np.random.default_rng(3)
    pose = rng.normal(size=(7, 3)).astype(np.float32)
    shift = rng.normal(size=(7, 2)).astype(np.float32) * 5
    dt = src.dtype.descr + [("alignments3D/pose", "<f4", (3,)), ("alignments3D/shift", "<f4", (2,))]
    new = np.zeros(7, dtype=dt)
    for name in src.dtype.names:
        new[name] = src[name]
    new["alignments3D/pose"], new["alignments3D/shift"] = pose, shift
    shutil.copy(REAL / "empiar_10076_7.mrc", tmp_path / "empiar_10076_7.mrc")
    with open(tmp_path / "p.cs", "wb") as fh:
        np.save(fh, new)
    s = load_particles(tmp_path / "p.cs")
    np.testing.assert_allclose(s.rot, Rotation.from_rotvec(pose).as_matrix().transpose(0, 2, 1), atol=1e-6)
    np.testing.assert_array_equal(s.trans, shift)


def test_toy_star_ctf_equals_test_ctf_pkl_and_pkl_poses():
    star, ctf_pkl, pose_pkl = (
        _need(SYN / "toy_projections.star"),
        _need(SYN / "test_ctf.pkl"),
        SYN / "toy_rot_trans.pkl",
    )
    ref = load_ctf_pkl(ctf_pkl)
    assert ref.shape == (1000, 9) and ref.dtype == np.float32
    np.testing.assert_allclose(ref[0], [30, 1, 0, 0, 0, 300, 0.001, 0.1, 90], rtol=1e-6)
    s = load_particles(star, poses=pose_pkl)  # D=30 from the stack, 1 Å/px from its header
    np.testing.assert_array_equal(s.ctf, ref)
    with open(pose_pkl, "rb") as fh:
        rot, trans = pickle.load(fh)
    np.testing.assert_array_equal(s.rot, rot.astype(np.float32))
    np.testing.assert_allclose(s.trans, trans * 30, rtol=1e-6)
    np.testing.assert_allclose(s.trans_frac, trans, atol=1e-7)
    m = load_particles(SYN / "toy_projections.mrcs", poses=pose_pkl, ctf=ctf_pkl)
    np.testing.assert_array_equal(m.images[np.arange(0, 1000, 97)], s.images[np.arange(0, 1000, 97)])
    hand = load_particles(_need(SYN / "hand.mrcs"), poses=SYN / "hand_rot.pkl")
    assert len(hand) == 100 and hand.D == 64 and hand.trans is None and hand.rot.shape == (100, 3, 3)


def test_pkl_star_pkl_round_trip_pins_convention(tmp_path):
    """cryoDRGN poses -> our RELION 3.1 STAR -> read back: same rot and trans (sign and transpose)."""
    rot, trans = load_pose_pkl(_need(SYN / "toy_rot_trans.pkl"))
    ctf = load_ctf_pkl(SYN / "test_ctf.pkl")
    ctf[:, 2:4] = [[15000.0, 14500.0]]
    ctf[:, 4] = 33.0
    out = tmp_path / "toy.star"
    write_relion31_star(
        out, stack=("toy_projections.mrcs", 1000), rot=rot, trans_px=trans * 30, ctf=ctf, apix=1.0, D=30
    )
    s = load_particles(out, datadir=SYN)
    np.testing.assert_allclose(s.rot, rot, atol=2e-6)
    np.testing.assert_allclose(s.trans, trans * 30, atol=1e-5)
    np.testing.assert_allclose(s.ctf, ctf, rtol=1e-6)
    parts, optics, _ = read_star(out)
    assert optics["rlnImageSize"].tolist() == [30] and optics["rlnImageDimensionality"].tolist() == [2]
    assert parts["rlnImageName"][0] == "000001@toy_projections.mrcs"
    # STAR angles are RELION's: matrix of the written angles is the pkl matrix
    e = parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float)[0]
    np.testing.assert_allclose(_reference_relion_matrix(*e), rot[0], atol=2e-6)
    # rlnOriginXAngst = trans fraction * D * apix, no sign change
    assert parts["rlnOriginXAngst"][0] == pytest.approx(trans[0, 0] * 30, rel=1e-5)


def test_writers_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    n, D = 12, 64
    rot = Rotation.random(n, random_state=2).as_matrix().astype(np.float32)
    trans = rng.normal(size=(n, 2)).astype(np.float32) * 3
    ctf = np.zeros((n, 9), np.float32)
    ctf[:, 0], ctf[:, 1] = D, 1.5
    ctf[:, 2:5] = rng.uniform([9000, 8000, -90], [20000, 19000, 90], size=(n, 3))
    ctf[:, 5:8] = [300.0, 2.7, 0.07]
    ctf[6:, 5] = 200.0  # second optics group
    ctf[:, 8] = rng.uniform(0, 90, n)
    z = rng.normal(size=(n, 4))
    names = [f"{i + 1}@st{i % 2}.mrcs" for i in range(n)]
    star = write_relion31_star(
        tmp_path / "a.star",
        image_names=names,
        rot=rot,
        trans_px=trans,
        ctf=ctf,
        apix=1.5,
        D=D,
        extra_columns={"vfZ": z},
    )
    meta = read_star_metadata(star)
    np.testing.assert_allclose(meta.rot, rot, atol=2e-6)
    np.testing.assert_allclose(meta.trans_px, trans, atol=1e-5)
    np.testing.assert_allclose(meta.ctf, ctf, rtol=1e-6)
    assert meta.image_names == names and sorted(set(meta.optics_group)) == [1, 2]
    np.testing.assert_allclose(meta.table[[f"vfZ{j}" for j in range(1, 5)]].to_numpy(float), z, rtol=1e-8)
    write_cryodrgn_pkls(tmp_path / "p.pkl", tmp_path / "c.pkl", rot, trans, ctf, D)
    with open(tmp_path / "p.pkl", "rb") as fh:
        r2, t2 = pickle.load(fh)
    assert r2.dtype == np.float32 and t2.dtype == np.float32
    np.testing.assert_array_equal(r2, rot)
    np.testing.assert_allclose(t2, trans / D, rtol=1e-6)
    np.testing.assert_array_equal(load_ctf_pkl(tmp_path / "c.pkl"), ctf)
    assert not list(tmp_path.glob(".voxfield-tmp-*"))


def test_add_star_columns_keeps_optics(tmp_path):
    src = _need(REAL / "relion31.star")
    z = np.arange(10, dtype=float).reshape(5, 2)
    out = add_star_columns(src, tmp_path / "z.star", {"vfLatentZ": z, "vfCluster": np.array([0, 1, 0, 1, 1])})
    parts, optics, _ = read_star(out)
    assert optics is not None and optics["rlnImagePixelSize"].tolist() == [2.806]
    np.testing.assert_array_equal(parts[["vfLatentZ1", "vfLatentZ2"]].to_numpy(float), z)
    assert parts["vfCluster"].tolist() == [0, 1, 0, 1, 1]
    a, b = load_particles(src), load_particles(out, datadir=REAL)
    np.testing.assert_array_equal(a.ctf, b.ctf)
    np.testing.assert_allclose(a.rot, b.rot, atol=1e-6)
    with pytest.raises(DataError, match=r"shape \(4,\), expected \(5,\)"):
        add_star_columns(src, tmp_path / "bad.star", {"x": np.zeros(4)})


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def small_stack(tmp_path):
    return _write_stack(tmp_path / "s.mrcs", np.random.default_rng(0).normal(size=(5, 8, 8)))


def test_star_missing_columns(tmp_path, small_stack):
    cols = ["rlnImageName", "rlnDefocusU", "rlnAngleRot"]
    star = _write_star_text(tmp_path / "a.star", cols, [[f"{i}@s.mrcs", 10000, 5] for i in range(1, 4)])
    with pytest.raises(DataError, match="missing required pose column\\(s\\) rlnAngleTilt, rlnAnglePsi"):
        load_particles(star)
    with pytest.raises(
        DataError,
        match="missing required CTF column\\(s\\) rlnDefocusV, rlnDefocusAngle, rlnVoltage, "
        "rlnSphericalAberration, rlnAmplitudeContrast",
    ):
        load_particles(star, require_poses=False)
    star2 = _write_star_text(tmp_path / "b.star", ["rlnDefocusU", "rlnDefocusV"], [[1, 2]])
    with pytest.raises(DataError, match="missing required column rlnImageName"):
        load_particles(star2)
    star3 = _write_star_text(tmp_path / "c.star", ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"], [])
    with pytest.raises(VoxfieldError):
        load_particles(star3)


def test_index_beyond_stack(tmp_path, small_stack):
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    star = _write_star_text(tmp_path / "a.star", cols, [[f"{i}@s.mrcs", 0, 0, 0] for i in (1, 5, 6, 7)])
    with pytest.raises(DataError, match=r"particle 2: image 6 \(1-based\) is beyond the stack's 5 images \(2 such"):
        load_particles(star)
    star0 = _write_star_text(tmp_path / "z.star", cols, [["0@s.mrcs", 0, 0, 0]])
    with pytest.raises(DataError, match="1-based"):
        load_particles(star0)
    assert parse_image_name("000012@a/b.mrcs") == (11, "a/b.mrcs")


def test_odd_and_nonsquare_and_mixed_boxes(tmp_path):
    odd = _write_stack(tmp_path / "odd.mrcs", np.zeros((3, 31, 31)))
    with pytest.raises(DataError, match="box size D=31 is odd"):
        load_particles(odd, require_poses=False)
    rect = _write_stack(tmp_path / "rect.mrcs", np.zeros((3, 30, 32)))
    with pytest.raises(DataError, match="32x30 pixels, not square"):
        load_particles(rect, require_poses=False)
    _write_stack(tmp_path / "a.mrcs", np.zeros((2, 8, 8)))
    _write_stack(tmp_path / "b.mrcs", np.zeros((2, 16, 16)))
    (tmp_path / "l.txt").write_text("a.mrcs\nb.mrcs\n")
    with pytest.raises(DataError, match="different box sizes: a.mrcs 8 px, b.mrcs 16 px"):
        load_particles(tmp_path / "l.txt", require_poses=False)


def test_count_mismatch():
    stack = _need(SYN / "toy_projections.mrcs")
    with pytest.raises(DataError, match="100 poses for 1000 particle images"):
        load_particles(stack, poses=SYN / "hand_rot.pkl")
    with pytest.raises(DataError, match="1000 CTF parameters for 100 particle images"):
        load_particles(SYN / "hand.mrcs", poses=SYN / "hand_rot.pkl", ctf=SYN / "test_ctf.pkl")
    with pytest.raises(DataError, match="has no poses: pass poses="):
        load_particles(stack)


def test_nan_images_found_by_check_images(tmp_path):
    data = np.random.default_rng(1).normal(size=(40, 8, 8)).astype(np.float32)
    data[27, 3, 4] = np.nan
    data[33, 0, 0] = np.inf
    p = _write_stack(tmp_path / "nan.mrcs", data)
    s = load_particles(p, require_poses=False)  # lazy: loading does not read pixels
    with pytest.raises(DataError, match=r"particle 27 \(image 28 of .*nan\.mrcs\) contains NaN/Inf"):
        check_images(s, chunk=8)
    good = _write_stack(tmp_path / "ok.mrcs", np.nan_to_num(data, nan=0.0, posinf=0.0))
    check_images(load_particles(good, require_poses=False).images, chunk=7)


def test_unknown_extension_corrupt_pickle_truncated_stack(tmp_path, small_stack):
    with pytest.raises(FormatError, match="unknown particle file extension '.xyz'"):
        load_particles(tmp_path / "p.xyz")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage that is not a pickle")
    with pytest.raises(FormatError, match="cannot read pose pickle"):
        load_particles(small_stack, poses=bad)
    with pytest.raises(FormatError, match="cannot read CTF pickle"):
        load_particles(small_stack, require_poses=False, ctf=bad)
    with open(tmp_path / "wrong.pkl", "wb") as fh:
        pickle.dump(np.zeros((5, 7), np.float32), fh)
    with pytest.raises(DataError, match=r"\(N, 9\) array, got shape \(5, 7\)"):
        load_particles(small_stack, require_poses=False, ctf=tmp_path / "wrong.pkl")
    cut = tmp_path / "cut.mrcs"
    cut.write_bytes(small_stack.read_bytes()[:-100])
    with pytest.raises(FormatError, match="truncated"):
        load_particles(cut, require_poses=False)
    (tmp_path / "x.cs").write_bytes(b"not numpy")
    with pytest.raises(FormatError, match="cannot read cryoSPARC"):
        load_particles(tmp_path / "x.cs")


def test_image_source_indexing_and_pickling(tmp_path):
    d = np.arange(2 * 6 * 4 * 4, dtype=np.float32).reshape(2, 6, 4, 4)
    a = _write_stack(tmp_path / "a.mrcs", d[0])
    b = _write_stack(tmp_path / "b.mrcs", d[1])
    src = ImageSource([a, b], np.array([1, 0, 1, 0]), np.array([5, 0, 2, 3]), max_open=1)
    np.testing.assert_array_equal(src[np.array([3, 0, 1, 2])], np.stack([d[0, 3], d[1, 5], d[0, 0], d[1, 2]]))
    np.testing.assert_array_equal(src[-1], d[0, 3])
    np.testing.assert_array_equal(src[np.array([True, False, False, True])], np.stack([d[1, 5], d[0, 3]]))
    assert src[np.array([], dtype=int)].shape == (0, 4, 4)
    with pytest.raises(IndexError):
        src[np.array([4])]
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[np.arange(4)], src[np.arange(4)])


def test_image_source_unmaps_stacks_after_release_bytes(tmp_path):
    # every `release_bytes` of images read, the memory-mapped stacks are closed (their pages
    # leave the process's resident memory) and reopened on the next read, with the same data
    d = np.random.default_rng(0).normal(size=(40, 8, 8)).astype(np.float32)
    a = _write_stack(tmp_path / "a.mrcs", d)
    one = d[0].nbytes
    src = ImageSource([a], np.zeros(40, int), np.arange(40), release_bytes=10 * one)
    np.testing.assert_array_equal(src[np.arange(6)], d[:6])
    assert len(src._handles) == 1  # 6 images read: still mapped
    np.testing.assert_array_equal(src[np.arange(6, 12)], d[6:12])
    assert len(src._handles) == 0  # 12 >= 10 images: unmapped
    np.testing.assert_array_equal(src[np.arange(12, 40)], d[12:])
    assert len(src._handles) == 0
    np.testing.assert_array_equal(src[3], d[3])
    assert len(src._handles) == 1
    keep = ImageSource([a], np.zeros(40, int), np.arange(40))  # default 256 MiB: stays mapped
    np.testing.assert_array_equal(keep[np.arange(40)], d)
    assert len(keep._handles) == 1
