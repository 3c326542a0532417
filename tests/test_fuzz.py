"""The fuzzer (``voxfield.bench.fuzz``): its mutators, its case planning, and the CI tier.

The fast tests check the instrument itself: mutators are deterministic given their random
state, forged ``.vxf`` mutations keep the container's checksums valid, forged MRC/NPY
headers stay well-formed where they should, cases are a pure function of (seed, number).

The slow tests are the acceptance bar's CI tier: a fixed-seed fuzz run of a few thousand
cases (corpus creation included, about 2 minutes on 2 cores) must show no traceback,
abort, hang, bad exit, unnamed error, silent wrong decode, write outside the output folder
or debris; and killed compress/decompress runs must leave no ``.voxfield-*`` debris once
rerun. On failure they print the failure table with a replay command per signature.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path
from random import Random

import numpy as np
import pytest

from voxfield.bench import fuzz_mutate as fm
from voxfield.bench.fuzz_ops import _same, normalize, plan_case
from voxfield.bench.fuzz_seeds import Corpus, Seed, mrc_bytes, npy_bytes

#: CI tier: cases and seed (fixed, so that a failure replays with benchmarks/fuzz.py --seed 0 --replay N).
CI_CASES = 2500
CI_SEED = 0


def _ctx() -> fm.MutContext:
    return fm.MutContext("/tmp/watched/escape/x.mrc", lambda r: bytes(range(256)) * 4)


@pytest.fixture(scope="module")
def vxf_blob(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real multi-section .vxf file (a neural fit would be slower; a hybrid-free classic
    file has one section, so a sci fit of 5 steps gives the two-section layout)."""
    from voxfield.cli.main import main

    d = tmp_path_factory.mktemp("vxf")
    rng = np.random.default_rng(0)
    np.save(d / "a.npy", rng.normal(size=(12, 12, 12)).astype(np.float32))
    assert main(["compress", str(d / "a.npy"), "-o", str(d / "a.vxf"), "--method", "siren", "--ratio", "4",
                 "--steps", "3", "--set", "lr=0.001", "--device", "cpu", "--no-check"]) == 0
    return (d / "a.vxf").read_bytes()


def _checksums_ok(blob: bytes) -> bool:
    """The container's own integrity rules: header CRC, section CRCs, total length."""
    magic, major, minor, hlen, crc, enc = fm.FIXED.unpack(blob[: fm.FIXED.size])
    stored = blob[fm.FIXED.size: fm.FIXED.size + hlen]
    if zlib.crc32(stored) != crc:
        return False
    import json

    import zstandard

    text = zstandard.ZstdDecompressor().decompress(stored, max_output_size=1 << 28) if enc == 1 else stored
    try:
        head = json.loads(text)
        off = fm.FIXED.size + hlen
        for s in head["sections"]:
            if zlib.crc32(blob[off: off + int(s["size"])]) != int(s["crc32"]):
                return False
            off += int(s["size"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return True  # the forged text is not JSON any more: only the header CRC applies
    return off == len(blob)


# ---------------------------------------------------------------------------------- mutators
@pytest.mark.parametrize("name", sorted(fm.BLIND) + ["forge-json", "forge-text", "forge-section", "forge-fixed"])
def test_vxf_mutators_are_deterministic(vxf_blob: bytes, name: str) -> None:
    for k in range(5):
        a, ma = fm.mutate(Random(f"t{k}"), "vxf", vxf_blob, _ctx(), "m.vxf", name)
        b, mb = fm.mutate(Random(f"t{k}"), "vxf", vxf_blob, _ctx(), "m.vxf", name)
        assert a == b and ma == mb
    outs = {fm.mutate(Random(f"t{k}"), "vxf", vxf_blob, _ctx(), "m.vxf", name)[0] for k in range(8)}
    assert len(outs) > 1, "different random states should give different mutations"


@pytest.mark.parametrize("name", ["forge-json", "forge-section"])
def test_forged_vxf_keeps_valid_checksums(vxf_blob: bytes, name: str) -> None:
    from voxfield.compress.container import VxfReader
    from voxfield.errors import VoxfieldError

    changed = 0
    for k in range(40):
        blob, mut = fm.mutate(Random(f"c{k}"), "vxf", vxf_blob, _ctx(), "m.vxf", name)
        assert blob is not None and _checksums_ok(blob), mut.desc
        changed += blob != vxf_blob
        if "sections" in mut.desc.split(" ", 2)[1]:
            continue  # a forged section table is meant to fail
        try:
            with VxfReader(blob) as r:
                for s in r.section_names:
                    r.section(s)
        except VoxfieldError as exc:  # value checks may refuse a forged header, checksums must pass
            assert "checksum" not in str(exc) and "truncated" not in str(exc), (mut.desc, str(exc))
    assert changed >= 35


def test_forge_text_keeps_header_crc(vxf_blob: bytes) -> None:
    for k in range(30):
        blob, mut = fm.mutate(Random(f"x{k}"), "vxf", vxf_blob, _ctx(), "m.vxf", "forge-text")
        _, _, _, hlen, crc, _ = fm.FIXED.unpack(blob[: fm.FIXED.size])
        assert zlib.crc32(blob[fm.FIXED.size: fm.FIXED.size + hlen]) == crc, mut.desc


def test_forge_json_weights_hot_keys_and_uses_absurd_values(vxf_blob: bytes) -> None:
    descs = [fm.mutate(Random(f"h{k}"), "vxf", vxf_blob, _ctx(), "m.vxf", "forge-json")[1].desc for k in range(200)]
    hot = sum(any(fm._HOT.search(k) for k in d.split(" ")[1].split(".")[-2:] if not k.isdigit()) for d in descs)
    assert hot > 140
    assert any("2**40" in d or "1099511627776" in d for d in descs)
    assert any("/tmp/watched/escape/x.mrc" in d or "../x.mrc" in d for d in descs) or \
        any("name" in d for d in descs)


def test_absurd_values_include_escape_paths() -> None:
    vals = fm.absurd_values(_ctx())
    for v in ("../x.mrc", "/abs/dir/x.mrc", "/tmp/watched/escape/x.mrc", 2**40, 2**63, -2**63, None, "", [], {}):
        assert v in vals
    assert any(isinstance(v, float) and np.isnan(v) for v in vals)


def test_forge_mrc_changes_only_the_header() -> None:
    data = mrc_bytes(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    seen = set()
    for k in range(40):
        out, mut = fm.mutate(Random(f"m{k}"), "mrc", data, _ctx(), "a.mrc", "forge-mrc")
        assert out is not None and len(out) == len(data) and out[1024:] == data[1024:]
        seen.add(mut.desc.split(" ")[1])
    assert {"nx", "mode"} & seen


def test_forge_npy_keeps_a_well_formed_preamble() -> None:
    data = npy_bytes(np.zeros((3, 4), np.float32))
    for k in range(40):
        out, mut = fm.mutate(Random(f"n{k}"), "npy", data, _ctx(), "a.npy", "forge-npy")
        assert out is not None and out.startswith(b"\x93NUMPY")
        if "header length" in mut.desc:
            continue
        major = out[6]
        size = 2 if major == 1 else 4
        hlen = int.from_bytes(out[8: 8 + size], "little")
        assert out[8 + size + hlen - 1: 8 + size + hlen] == b"\n", mut.desc
        assert out[8 + size + hlen:] == data[-48:], mut.desc  # the data bytes are untouched


def test_forge_npz_and_gzip_stay_valid_containers() -> None:
    import gzip
    import zipfile

    from voxfield.bench.fuzz_seeds import _zip_bytes

    z = _zip_bytes({"a.npy": npy_bytes(np.ones(5))})
    for k in range(10):
        out, _ = fm.mutate(Random(f"z{k}"), "npz", z, _ctx(), "a.npz", "forge-npz")
        zipfile.ZipFile(io.BytesIO(out)).testzip()
        g, _ = fm.mutate(Random(f"g{k}"), "mrcgz", gzip.compress(mrc_bytes(np.ones((2, 2, 2), np.float32))), _ctx(),
                         "a.mrc.gz", "forge-mrcgz")
        gzip.decompress(g)


def test_forge_star_and_tiff_are_deterministic() -> None:
    star = b"data_particles\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n000001@s.mrcs 15000.0\n000002@s.mrcs 14000\n"
    tif = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + struct.pack("<HHII", 256, 3, 1, 4) + \
        struct.pack("<HHII", 257, 3, 1, 4) + b"\x00" * 4 + bytes(16)
    for ftype, data, name in (("star", star, "forge-star"), ("tiff", tif, "forge-tiff")):
        for k in range(10):
            a = fm.mutate(Random(f"s{k}"), ftype, data, _ctx(), "f", name)
            b = fm.mutate(Random(f"s{k}"), ftype, data, _ctx(), "f", name)
            assert a == b


# ---------------------------------------------------------------------------------- planning
def _fake_corpus() -> Corpus:
    seeds = [Seed("vxf-a", "vxf:a", "vxf", "m.vxf", {"m.vxf": "vxf"}, ["info", "api-full"], {"": "ref.npy"}),
             Seed("in-b", "in:mrc", "input", "b.mrc", {"b.mrc": "mrc"}, ["info", "compress-zstd"]),
             Seed("set", "vxf:set", "vxf", "m.vxf", {"m.vxf": "vxf"}, ["info"], {"1": "r1", "2": "r2"}, members=2),
             Seed("z", "in:ome-zarr", "input", "z.zarr", {"z.zarr/.zattrs": "zarrjson", "z.zarr/0/0": "zarrchunk"},
                  ["info"])]
    return Corpus(Path("/nonexistent"), "k", seeds, {}, {}, 0.0)


def test_cases_are_a_function_of_seed_and_number() -> None:
    c = _fake_corpus()
    a = [plan_case(c, 7, i) for i in range(300)]
    b = [plan_case(c, 7, i) for i in reversed(range(300))][::-1]
    assert a == b
    assert [plan_case(c, 8, i) for i in range(50)] != a[:50]
    assert {x.target for x in a} == {s.name for s in c.seeds}
    assert any(x.mutator == "none" for x in a)  # control cases
    assert all(x.op in c.seed(x.target).ops and x.file in c.seed(x.target).mutables for x in a)
    assert all(x.args.get("member") in (None, "1", "2") and x.args.get("member_index") == x.args.get("member")
               for x in a if x.target == "set")


def test_normalize_and_same() -> None:
    assert normalize("/tmp/a/b.vxf: bad size 12345 at 0x1f") == "<path>: bad size N at N"
    x = np.array([1.0, np.nan], np.float32)
    assert _same(x, x.copy()) == ""
    assert "values differ" in _same(x, np.array([2.0, np.nan], np.float32))
    assert "shape" in _same(x, np.zeros(3, np.float32))
    assert "dtype" in _same(x, x.astype(np.float64))


# ---------------------------------------------------------------------------------- CI tier
@pytest.mark.slow
def test_fuzz_ci_tier(tmp_path: Path) -> None:
    """Fixed-seed fuzz run: zero failures of every class (corpus creation included)."""
    from voxfield.bench.fuzz import failure_table, run_fuzz

    t0 = time.perf_counter()
    data = run_fuzz(CI_CASES, CI_SEED, workers=2, timeout=20, out=tmp_path / "fuzz",
                    command=f"tests/test_fuzz.py ({CI_CASES} cases, seed {CI_SEED})")
    seconds = time.perf_counter() - t0
    print(f"fuzz CI tier: {CI_CASES} cases in {seconds:.0f} s, outcomes {data['totals']}")
    assert not data["meta"]["skipped_seeds"], f"seeds that could not be built: {data['meta']['skipped_seeds']}"
    assert data["failures"] == 0, "fuzzing found failures:\n" + failure_table(data) + \
        f"\n(full report: {tmp_path / 'fuzz' / 'fuzz.md'})"


@pytest.mark.slow
def test_fuzz_kill_leaves_no_debris(tmp_path: Path) -> None:
    """SIGKILLed compress/decompress, rerun: no .voxfield-* debris, complete output."""
    from voxfield.bench.fuzz import kill_check

    res = kill_check(trials=6, seed=0, edge=128, work_dir=tmp_path)
    bad = [r for r in res if r["outcome"] != "ok"]
    assert not bad, "\n".join(f"{r['command']} killed at {r['kill']}: {r['outcome']} "
                              f"(left {r['debris_after_kill']}, after rerun {r['debris_after_rerun']}, "
                              f"rc {r['rerun_rc']} {r['stderr']} {r['incomplete']})" for r in bad)


@pytest.mark.slow
def test_instrument_detects_planted_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures planted in the workers (VOXFIELD_FUZZ_INJECT) come out classified."""
    from voxfield.bench.fuzz import run_fuzz

    plant = {0: "abort", 1: "hang", 2: "traceback", 3: "escape", 4: "debris", 5: "unnamed", 6: "bad-exit",
             7: "leftover"}
    monkeypatch.setenv("VOXFIELD_FUZZ_INJECT", ",".join(f"{k}:{v}" for k, v in plant.items()))
    data = run_fuzz(10, 0, workers=1, timeout=4)
    got = {c["number"]: c["outcome"] for c in data["cases"]}
    want = {0: "abort", 1: "hang", 2: "traceback", 3: "wrote-outside", 4: "debris", 5: "unnamed", 6: "bad-exit",
            7: "debris"}
    assert {k: got[k] for k in want} == want
    sigs = {s["signature"] for s in data["signatures"]}
    assert any(s.startswith("abort SIGABRT") for s in sigs), sigs
    assert any(s.startswith("KeyError @ bench/fuzz_ops.py") or s.startswith("KeyError @") for s in sigs), sigs
    assert all(got[k] in ("ok", "clean") or k in want for k in got)
