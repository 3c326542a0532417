"""The ``cryo-pe-set`` method (one cryo-pe network shared by several maps, one latent per
map) and ``voxfield compress-set`` / ``decompress --member``: ratio over the whole set,
each member restored with its own shape, voxel size and header, exact region decoding per
member, member selection and its errors. Tiny crops, few steps."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

import voxfield
from voxfield.cli.main import main
from voxfield.codecs.base import Target
from voxfield.compress.api import decompress
from voxfield.compress.container import VxfReader
from voxfield.compress.cryo_pe import _Samples
from voxfield.compress.cryo_pe_set import (
    CryoPESetConfig,
    CryoPESetReport,
    _SetSamples,
    compress_set,
    member_index,
)
from voxfield.data import example_map_path
from voxfield.errors import DataError, OptionError
from voxfield.io import Volume, read_volume
from voxfield.metrics import psnr

#: name -> (crop of the 64^3 example map, voxel-size factor); d is the whole map at half
#: sampling (twice the voxel size) and has the same shape as a.
CROPS = {
    "a.mrc": ((slice(16, 48), slice(12, 44), slice(16, 48)), 1),
    "b.mrc": ((slice(10, 34), slice(20, 48), slice(14, 44)), 1),
    "c.mrc": ((slice(30, 58), slice(8, 32), slice(20, 46)), 1),
    "d.mrc": ((slice(0, 64, 2), slice(0, 64, 2), slice(0, 64, 2)), 2),
}
RATIO = 8.0


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("set")
    src = read_volume(example_map_path())
    paths = []
    for i, (name, (box, factor)) in enumerate(CROPS.items()):
        p = folder / name
        with mrcfile.new(p) as dst:
            dst.set_data(np.ascontiguousarray(src.data[box]))
            dst.header.nxstart, dst.header.nystart, dst.header.nzstart = 3 + i, 5 + i, 7 + i
            dst.voxel_size = 1.05 * factor
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def set_file(maps) -> Path:
    out = maps[0].parent / "set.vxf"
    code = main(["compress-set", *map(str, maps), "-o", str(out), "--ratio", str(RATIO), "--steps", "30",
                 "--device", "cpu", "--no-check"])
    assert code == 0
    return out


def test_ratio_is_the_sum_of_originals_over_the_file(maps, set_file, capsys):
    total = sum(read_volume(p).data.nbytes for p in maps)
    assert total / set_file.stat().st_size == pytest.approx(RATIO, rel=0.02)
    head = VxfReader(set_file).header
    # one shared network: one weight section, one occupancy section per map
    assert VxfReader(set_file).section_names == ["occupancy.1", "occupancy.2", "occupancy.3", "occupancy.4",
                                                 "tables", "weights"]
    assert [m["name"] for m in head["method"]["members"]] == list(CROPS)
    assert any("voxel sizes differ" in n for n in head["method"]["notes"])
    assert main(["info", str(set_file), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in d["members"]] == list(CROPS) and [m["member"] for m in d["members"]] == [1, 2, 3, 4]
    assert d["original_bytes"] == total and d["ratio"] == pytest.approx(RATIO, rel=0.02)
    assert d["method"]["maps"] == 4 and d["members"][3]["spacing"] == pytest.approx([2.1] * 3, rel=1e-5)
    assert main(["info", str(set_file)]) == 0
    table = capsys.readouterr().out
    for k, name in enumerate(CROPS, 1):
        assert f"member {k}" in table and name in table


def test_each_member_decodes_to_its_own_frame(maps, set_file, tmp_path):
    decoded = []
    for k, p in enumerate(maps, 1):
        out = tmp_path / f"m{k}.mrc"
        assert main(["decompress", str(set_file), "--member", str(k), "-o", str(out)]) == 0
        a, b = read_volume(p), read_volume(out)
        assert b.shape == a.shape and b.dtype == a.dtype and b.axes == a.axes
        assert b.spacing == pytest.approx(a.spacing) and b.origin == pytest.approx(a.origin)
        for key in ("nxstart", "nystart", "nzstart", "cella", "ispg"):
            assert b.meta["mrc"][key] == a.meta["mrc"][key], key
        # the member's own threshold and occupancy: lossless above/below its threshold
        thr = VxfReader(set_file).header["method"]["members"][k - 1]["threshold"]
        np.testing.assert_array_equal(b.data > thr, a.data > thr)
        decoded.append(b.data)
    originals = [read_volume(p).data for p in maps]
    # a and d have the same shape: each decodes closer to its own original than to the other
    assert psnr(originals[0], decoded[0]) > psnr(originals[3], decoded[0])
    assert psnr(originals[3], decoded[3]) > psnr(originals[0], decoded[3])
    # by name, as by number
    np.testing.assert_array_equal(decompress(set_file, "c.mrc").data, decoded[2])


def test_member_region_equals_member_full_decode(set_file):
    for k in (1, 2, 4):
        full = decompress(set_file, k).data
        arr = voxfield.open(set_file, member=k)
        assert arr.shape == full.shape and arr.random_access
        np.testing.assert_array_equal(arr[3:20, 5:17, 2:21], full[3:20, 5:17, 2:21])
        np.testing.assert_array_equal(arr[:, 7, :], full[:, 7, :])
        np.testing.assert_array_equal(arr[::4, ::3, ::5], full[::4, ::3, ::5])
        pts = np.array([[0, 0, 0], [10, 12, 5], [16, 16, 16], [n - 1 for n in full.shape]])
        np.testing.assert_array_equal(arr.points(pts), full[tuple(pts.T)])
    np.testing.assert_array_equal(decompress(set_file, 2).data, decompress(set_file, 2).data)  # deterministic
    # one network, but each member's own latent: a and d (same shape) differ at the same positions
    pos = np.random.default_rng(1).random((50, 3))
    net_a, net_d = (voxfield.open(set_file, member=k)._field.net for k in (1, 4))
    assert not np.allclose(net_a.forward(pos), net_d.forward(pos), atol=1e-4)


def test_bad_member_is_exit_2_listing_members(set_file, tmp_path, capsys):
    out = tmp_path / "x.mrc"
    for bad in ("5", "0", "nope.mrc"):
        assert main(["decompress", str(set_file), "--member", bad, "-o", str(out)]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("voxfield: error:"), err
        assert "1 a.mrc, 2 b.mrc, 3 c.mrc, 4 d.mrc" in err[0]
        assert ("out of range" in err[0]) == (bad != "nope.mrc")
    assert not out.exists()
    with pytest.raises(OptionError, match="out of range"):
        voxfield.open(set_file, member=5)


def test_set_without_member_asks_for_one(set_file, tmp_path, capsys):
    out = tmp_path / "y.mrc"
    assert main(["decompress", str(set_file), "-o", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "set of 4 maps" in err[0] and "--member" in err[0]
    assert not out.exists()
    with pytest.raises(OptionError, match="set of 4 maps"):
        decompress(set_file)
    with pytest.raises(OptionError, match="set of 4 maps"):
        voxfield.open(set_file)


def test_member_on_a_single_map_file_is_refused(maps, tmp_path, capsys):
    single = tmp_path / "one.vxf"
    assert main(["compress", str(maps[1]), "-o", str(single), "--codec", "zstd", "--lossless", "--no-check"]) == 0
    capsys.readouterr()
    assert main(["decompress", str(single), "--member", "1", "-o", str(tmp_path / "z.mrc")]) == 2
    assert "applies to sets" in capsys.readouterr().err
    assert main(["decompress", str(single), "-o", str(tmp_path / "z.mrc")]) == 0


def test_member_index_rules():
    head = {"method": {"name": "cryo-pe-set", "members": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}
    assert member_index(head, 1) == 0 and member_index(head, "3") == 2 and member_index(head, "b") == 1
    with pytest.raises(OptionError, match="more than one"):
        member_index(head, "a")
    with pytest.raises(OptionError, match="out of range"):
        member_index(head, -1)


def test_sampling_rules():
    rng = np.random.default_rng(0)
    masks = [np.zeros((4, 5, 6), bool), np.zeros((3, 3, 3), bool)]
    masks[0][1:3, 1:4, :] = True  # 36 occupied
    masks[1][1, 1, 1] = masks[1][2, 2, 2] = True  # 2 occupied
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        parts = []
        for k, m in enumerate(masks):
            Path(d, str(k)).mkdir()
            parts.append(_Samples(np.where(m, 1.0, 0.0).astype(np.float32), m, 1.0, str(Path(d, str(k)))))
        prop = _SetSamples(parts, [m.shape for m in masks], balanced=False)
        x, y, ids = prop.chunk(100, rng)  # more than all: every occupied voxel once
        assert np.bincount(ids).tolist() == [36, 2] and np.all(y == 1.0)
        x, y, ids = prop.chunk(19, rng)
        assert len(ids) == 19 and x.min() >= 0 and x.max() <= 1
        bal = _SetSamples(parts, [m.shape for m in masks], balanced=True)
        x, y, ids = bal.chunk(20, rng)
        assert np.bincount(ids).tolist() == [10, 10] and np.all(y == 1.0)
        small = x[ids == 1]
        assert {tuple(r) for r in np.round(small * 2).astype(int)} == {(1, 1, 1), (2, 2, 2)}
        for p in parts:
            p.close()


def test_api_balanced_given_thresholds_and_refusals():
    src = read_volume(example_map_path())
    vols = [Volume(np.ascontiguousarray(src.data[16:40, 16:40, 16:40]), "ZYX", src.spacing),
            Volume(np.ascontiguousarray(src.data[8:28, 20:44, 12:40]), "ZYX", src.spacing)]
    rep = CryoPESetReport()
    cfg = CryoPESetConfig.preset(steps=60, device="cpu", sampling="balanced", loss="mse")
    blob = compress_set(vols, cfg, Target.ratio(6, 0.02), thresholds=[0.05, None], report=rep)
    assert sum(v.data.nbytes for v in vols) / len(blob) == pytest.approx(6, rel=0.02)
    for k, v in enumerate(vols, 1):  # the shared network learns both maps (plain MSE: PSNR is its measure)
        assert psnr(v.data, decompress(blob, k).data) > psnr(v.data, np.full_like(v.data, v.data.mean())) + 1
    assert rep.members[0].threshold == 0.05 and rep.members[0].threshold_source == "given"
    assert rep.members[1].threshold_source == "auto" and rep.sampling == "balanced"
    assert [m.name for m in rep.members] == ["map1", "map2"]
    dec = decompress(blob, 1).data
    assert np.array_equal(dec > 0.05, vols[0].data > 0.05)  # the occupancy is lossless
    with pytest.raises(OptionError, match="sampling"):
        CryoPESetConfig.preset(sampling="even").validate()
    with pytest.raises(OptionError, match="fold_latent"):
        CryoPESetConfig.preset(fold_latent=True).validate()
    with pytest.raises(OptionError, match="unknown option"):
        CryoPESetConfig.preset(widht=3)
    with pytest.raises(DataError, match=r"map 2 \(map2\).*constant"):
        compress_set([vols[0], Volume(np.ones((8, 8, 8), np.float32), "ZYX")], cfg, Target.ratio(4))
    with pytest.raises(DataError, match=r"map 1 \(map1\).*3-D"):
        compress_set([Volume(vols[0].data[0], "YX"), vols[1]], cfg, Target.ratio(4))


def test_cli_option_errors(maps, tmp_path, capsys):
    out = tmp_path / "e.vxf"
    assert main(["compress-set", str(maps[0]), str(maps[1]), "-o", str(out), "--set", "widht=3"]) == 2
    assert "widht" in capsys.readouterr().err
    assert main(["compress-set", str(maps[0]), "-o", str(tmp_path / "e.mrc")]) == 2
    assert ".vxf" in capsys.readouterr().err
    assert main(["compress-set", str(maps[0]), str(maps[1]), "-o", str(out), "--ratio", "100000",
                 "--steps", "5"]) == 2
    assert "out of reach" in capsys.readouterr().err
    assert not out.exists()


def test_decode_command_takes_a_member(set_file, tmp_path):
    out = tmp_path / "part.npy"
    assert main(["decode", str(set_file), "--member", "2", "--roi", "2:9,3:11,0:6", "-o", str(out)]) == 0
    expected = voxfield.open(set_file, member=2)[2:9, 3:11, 0:6]
    np.testing.assert_array_equal(np.load(out), expected)
    assert main(["decode", str(set_file), "--member", "9", "--roi", "0:2,0:2,0:2", "-o",
                 str(tmp_path / "bad.npy")]) == 2
    assert not (tmp_path / "bad.npy").exists()
