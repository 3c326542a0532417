"""Damaged and forged ``.vxf`` files: one clean error naming the file, never a traceback,
abort, hang, huge allocation, silent NaN decode or a write outside the output folder.

Each test reproduces a failure class found by fuzzing (issue 14): forged headers carry
recomputed checksums, so only the header validation (``compress/schema.py``) and the
decoding guard (``compress/guard.py``) stand between them and the decoders."""

from __future__ import annotations

import copy
import errno
import gzip
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import voxfield
from voxfield.cli.main import main
from voxfield.compress import container
from voxfield.compress.api import decompress, describe
from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError, OutputError
from voxfield.io import atomic, read_volume, write_volume
from voxfield.io.volume import Volume

# --------------------------------------------------------------------------- seed files


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """Small valid files of each method (32^3 crop of the shipped map, a few steps each)."""
    d = tmp_path_factory.mktemp("seeds")
    vol = read_volume(example_map_path())
    crop = Volume(np.ascontiguousarray(vol.data[16:48, 16:48, 16:48]), vol.axes, vol.spacing, vol.unit,
                  vol.origin, {})
    src = d / "crop.mrc"
    write_volume(crop, src)
    src2 = d / "crop2.mrc"
    write_volume(Volume(crop.data[::-1].copy(), crop.axes, crop.spacing, crop.unit, crop.origin, {}), src2)
    jobs = {
        "zstd": ["--codec", "zstd", "--lossless"],
        "sz3": ["--codec", "sz3", "--ratio", "8"],
        "sci": ["--method", "sci", "--steps", "5", "--ratio", "8"],
        "grid": ["--method", "grid", "--steps", "30", "--ratio", "16"],
        "cryo-pe": ["--method", "cryo-pe", "--steps", "5", "--ratio", "8"],
        "hybrid": ["--method", "hybrid:sz3", "--steps", "20", "--ratio", "32", "--set", "learned=none"],
        "learned": ["--method", "hybrid:sz3", "--ratio", "32", "--set", "residual=none", "--set", "learned=cryoem"],
        "ebound": ["--codec", "jpeg2k", "--ratio", "8", "--max-error", "0.01"],
    }
    out: dict[str, Path] = {}
    for name, args in jobs.items():
        p = d / f"{name}.vxf"
        rc = main(["compress", str(src), "-o", str(p), "--no-check", "-f", *args])
        if rc == 0:
            out[name] = p
    p = d / "set.vxf"
    if main(["compress-set", str(src), str(src2), "-o", str(p), "--steps", "5", "--ratio", "8", "-f"]) == 0:
        out["set"] = p
    assert {"zstd", "sci", "grid", "cryo-pe", "hybrid", "set"} <= set(out), f"seed files missing: {sorted(out)}"
    assert _parts(out["hybrid"])[0]["method"].get("filter"), "the hybrid seed should keep its filter"
    assert "learned" in out and _parts(out["learned"])[0]["method"].get("learned"), \
        "the learned seed should keep its learned prior"
    return out


def _parts(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    with container.VxfReader(path, validate=False) as r:
        return copy.deepcopy(r.header), {n: r.section(n) for n in r.section_names}


def _forge(src: Path, dst: Path, edit) -> Path:
    """Copy ``src`` to ``dst`` with ``edit(header, sections)`` applied and every checksum
    recomputed, as a forger (or a fuzzer) would."""
    header, sections = _parts(src)
    edit(header, sections)
    dst.write_bytes(container.dumps(header, sections))
    return dst


def _set(path: list[Any], value: Any):
    def edit(header: dict[str, Any], sections: dict[str, bytes]) -> None:
        node = header
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def _assert_clean(rc: int, err: str, name: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("voxfield: error:"), err
    assert name in lines[0], err


# --------------------------------------------------------------------------- header values

FORGED = [
    # (method, path in the header, value): each once found to raise, abort or hang
    ("sci", ["method", "groups", 0, "widths", 0], 2**31),  # Rust allocation of 25-1340 GB
    ("sci", ["method", "groups", 0, "widths"], []),
    ("sci", ["method", "groups", 0, "widths", 1], "wide"),
    ("sci", ["method", "bandwidth", 0], float("inf")),  # decoded to all NaN with exit 0
    ("sci", ["method", "layout", "hi"], float("-inf")),
    ("sci", ["method", "config", "omega_first"], float("-inf")),
    ("sci", ["method", "layout", "shape", 0], 17),  # voxfield.open returned wrong shapes
    ("sci", ["method", "layout", "coord_axes"], [0, 0, 0]),
    ("sci", ["volume", "shape", 2], 0),  # a (…, 0) array from voxfield.open
    ("sci", ["volume", "shape"], [2**31, 2**31, 16]),  # a multi-terabyte memory map
    ("sci", ["volume", "spacing"], [None, 1.0, 1.0]),  # TypeError in Volume
    ("sci", ["volume", "origin"], ["x", 0.0, 0.0]),
    ("sci", ["volume", "dtype"], "complex128"),
    ("sci", ["volume", "axes"], "ZZX"),
    ("sci", ["method", "overlap"], 2**63),
    ("grid", ["method", "levels"], 2**40),  # looped for ever
    ("grid", ["method", "config", "hidden"], 2**31),
    ("grid", ["method", "step"], float("nan")),
    ("cryo-pe", ["method", "residual", 0], 2**63),  # MemoryError, exit 1
    ("cryo-pe", ["method", "widths", 0], 2**31),
    ("cryo-pe", ["method", "occupied"], -5),
    ("hybrid", ["method", "filter", "channels"], 2**31),
    ("hybrid", ["method", "filter", "kernel"], 4),
    ("hybrid", ["method", "flags", "shape"], [2**30, 2**30]),
    ("learned", ["method", "learned"], 5),
    ("learned", ["method", "learned", "width"], 2**31),
    ("learned", ["method", "learned", "domain"], "moon"),
    ("learned", ["method", "learned", "flags", "shape"], [2**30, 2**30]),
    ("learned", ["method", "learned", "flags", "block"], 0),
    ("zstd", ["method", "codec"], None),
    ("zstd", ["method", "codec", "name"], 7),
    ("zstd", ["volume", "shape", 0], 2**20),  # plausible header: only the decode can tell
    ("ebound", ["ebound", "max_abs_error"], -1.0),
    ("ebound", ["ebound", "step"], float("inf")),
    ("set", ["method", "members", 0, "volume", "shape"], [16, 16]),
    ("set", ["method", "latent_dim"], 2**31),
]


@pytest.mark.parametrize("method,where,value", FORGED, ids=[f"{m}:{'.'.join(map(str, w))}" for m, w, _ in FORGED])
def test_forged_header_value_is_one_clean_error(seeds, tmp_path, capsys, method, where, value):
    if method not in seeds:
        pytest.skip(f"{method} seed not available on this install")
    if where == ["method", "latent_dim"]:
        where = ["method", "config", "latent_dim"]
    plausible = (method, where) == ("zstd", ["volume", "shape", 0])
    bad = _forge(seeds[method], tmp_path / "forged.vxf", _set(where, value))
    member = ["--member", "1"] if method == "set" else []
    t0 = time.perf_counter()
    rc, err = _run(["decompress", str(bad), "-o", str(tmp_path / "out.npy"), "-f", *member], capsys)
    _assert_clean(rc, err, "forged.vxf")
    rc, err = _run(["info", str(bad)], capsys)
    if not plausible:  # info reads the header and checksums, it does not decode
        _assert_clean(rc, err, "forged.vxf")
    with pytest.raises((FormatError, DataError)) as exc:
        voxfield.open(bad, 1 if method == "set" else None)[...]
    assert "forged.vxf" in str(exc.value)
    assert time.perf_counter() - t0 < 20
    assert not (tmp_path / "out.npy").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".voxfield-")]


def test_every_seed_decodes_and_passes_info(seeds, capsys):
    """The validation accepts every file voxfield writes."""
    for name, p in seeds.items():
        member = 1 if name == "set" else None
        vol = decompress(p, member)
        assert np.isfinite(vol.data).all()
        assert describe(p)["file_bytes"] == p.stat().st_size
        np.testing.assert_array_equal(voxfield.open(p, member)[...], vol.data)


def test_non_finite_decode_is_refused(seeds, tmp_path):
    """A finite but absurd value range overflows to Inf in the decode: refused, not written."""
    bad = _forge(seeds["sci"], tmp_path / "inf.vxf", _set(["method", "layout", "hi"], 1e308))
    with pytest.raises(FormatError, match="NaN or Inf") as exc:
        decompress(bad)
    assert "inf.vxf" in str(exc.value)


def test_forged_section_payload_with_valid_checksums(seeds, tmp_path, capsys):
    """Garbage inside a section whose checksum was recomputed (the entropy decoders once
    panicked in Rust): one clean line, for every method."""
    rng = np.random.default_rng(5)
    for name, p in seeds.items():
        header, sections = _parts(p)
        for sec in sections:
            def edit(h, s, sec=sec):
                data = bytearray(s[sec])
                for _ in range(max(1, len(data) // 50)):
                    if data:
                        data[int(rng.integers(len(data)))] = int(rng.integers(256))
                s[sec] = bytes(data)
            bad = _forge(p, tmp_path / f"{name}-{sec}.vxf", edit)
            member = ["--member", "1"] if name == "set" else []
            rc, err = _run(["decompress", str(bad), "-o", str(tmp_path / "o.npy"), "-f", *member], capsys)
            assert rc in (0, 2), err
            if rc == 2:
                _assert_clean(rc, err, bad.name)
            else:
                assert np.isfinite(np.load(tmp_path / "o.npy")).all()


# --------------------------------------------------------------------------- info


def test_info_verifies_section_checksums(seeds, tmp_path, capsys):
    blob = bytearray(seeds["sci"].read_bytes())
    blob[-10] ^= 0xFF  # inside the last section
    bad = tmp_path / "flipped.vxf"
    bad.write_bytes(bytes(blob))
    rc, err = _run(["info", str(bad)], capsys)
    _assert_clean(rc, err, "flipped.vxf")
    assert "checksum" in err
    rc, err = _run(["info", "--quick", str(bad)], capsys)
    assert rc == 0, err


# --------------------------------------------------------------------------- output safety


@pytest.mark.parametrize("stored", ["{escape}/x.mrc", "../x.mrc", "..", "sub/../../y.mrc", "..\\..\\z.mrc"])
def test_default_output_stays_in_the_input_folder(seeds, tmp_path, capsys, stored):
    folder = tmp_path / "in"
    folder.mkdir()
    escape = tmp_path / "escape"
    escape.mkdir()
    name = stored.format(escape=escape)
    bad = _forge(seeds["zstd"], folder / "f.vxf", _set(["volume", "name"], name))
    rc, err = _run(["decompress", str(bad)], capsys)
    assert rc == 0, err
    assert list(escape.iterdir()) == []
    assert not (tmp_path / "x.mrc").exists() and not (tmp_path / "x.decoded.mrc").exists()
    made = [p for p in folder.iterdir() if p.name != "f.vxf"]
    assert len(made) == 1 and made[0].parent == folder, made


def test_output_to_a_special_file_is_refused(seeds, tmp_path, capsys):
    rc, err = _run(["decompress", str(seeds["zstd"]), "-o", "/dev/null", "-f"], capsys)
    assert rc == 2 and "/dev/null" in err
    rc, err = _run(["compress", str(seeds["zstd"].parent / "crop.mrc"), "-o", "/proc/x.vxf", "--codec", "zstd",
                    "--lossless"], capsys)
    _assert_clean(rc, err, "/proc")


def test_disk_full_is_one_line_and_leaves_nothing(seeds, tmp_path, monkeypatch, capsys):
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    out = tmp_path / "full.vxf"
    rc, err = _run(["compress", str(seeds["zstd"].parent / "crop.mrc"), "-o", str(out), "--codec", "zstd",
                    "--lossless", "--no-check"], capsys)
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    _assert_clean(rc, err, "full.vxf")
    assert "no space left" in err
    assert list(tmp_path.iterdir()) == []


def test_memory_error_exits_2_naming_the_file(seeds, monkeypatch, capsys):
    from voxfield.compress.methods.classic_codec import ClassicCodec

    def boom(*a, **k):
        raise MemoryError("Unable to allocate 1.00 TiB for an array with shape (65536, 65536, 64)")

    monkeypatch.setattr(ClassicCodec, "decode", boom)
    rc, err = _run(["decompress", str(seeds["zstd"]), "-o", str(seeds["zstd"].with_suffix(".o.npy")), "-f"], capsys)
    _assert_clean(rc, err, "zstd.vxf")
    assert "1.00 TiB" in err and "memory" in err


# --------------------------------------------------------------------------- debris after SIGKILL


def test_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    # a child that dies holding a temporary output (file and folder, as OME-Zarr writes)
    code = ("import os, sys, time\n"
            "from voxfield.io.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    (os.mkdir(tmp) if sys.argv[1].endswith('.zarr') else open(tmp, 'wb').write(b'x' * 1000))\n"
            "    print('ready', flush=True); time.sleep(60)\n")
    # a live process's temporary is never touched
    mine = tmp_path / f"{atomic.temp_prefix('tmp')}abcd-c.vxf"
    mine.write_bytes(b"in progress")
    for name in ("a.vxf", "b.ome.zarr"):
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / name)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.kill()
        proc.wait()
        left = [p.name for p in tmp_path.iterdir() if p != mine]
        assert len(left) == 1 and left[0].startswith(".voxfield-tmp-") and left[0].endswith(name), left
        atomic.write_bytes_atomic(tmp_path / "next.vxf", b"data")  # the next run cleans up
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["next.vxf", mine.name])
        (tmp_path / "next.vxf").unlink()


# Sleeps through three kills of a real decompress (~7 s); the clean-up of a killed writer's
# temporaries runs fast in test_temporaries_of_dead_processes_are_removed_by_the_next_write,
# real killed commands in the slow test_fuzz.py::test_fuzz_kill_leaves_no_debris.
@pytest.mark.slow
def test_killed_decompress_leaves_no_debris_after_the_next_run(seeds, tmp_path):
    """SIGKILL a real ``voxfield decompress`` at several moments; the next run leaves the
    folder with the complete output only."""
    out = tmp_path / "out.mrc"
    cmd = [sys.executable, "-m", "voxfield", "decompress", str(seeds["sci"]), "-o", str(out), "-f"]
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.mrc"]
    np.testing.assert_array_equal(read_volume(out).data, decompress(seeds["sci"]).data)


@pytest.mark.parametrize("name", ["sci", "grid", "cryo-pe", "hybrid", "learned", "ebound", "set"])
def test_decoding_does_not_depend_on_the_thread_count(seeds, name):
    """The same file decodes to the same bits with 1 and 2 torch threads (a machine's core
    count must not change what an archive holds)."""
    import torch

    if name not in seeds:
        pytest.skip(f"no {name} seed")
    member = 2 if name == "set" else None
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = decompress(seeds[name], member=member).data
        torch.set_num_threads(2)
        two = decompress(seeds[name], member=member).data
    finally:
        torch.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


# --------------------------------------------------------------------------- messages name the file


def test_codec_checksum_messages_name_the_file(seeds, tmp_path, capsys):
    """Codec payload errors are raised without a path deep inside; the guard adds it."""
    def edit(h, s):
        payload = bytearray(s["payload"])
        payload[len(payload) // 2] ^= 0x5A
        s["payload"] = bytes(payload)
    for name in ("zstd", "sz3"):
        if name not in seeds:
            continue
        bad = _forge(seeds[name], tmp_path / f"{name}-payload.vxf", edit)
        rc, err = _run(["decompress", str(bad), "-o", str(tmp_path / "o.npy"), "-f"], capsys)
        if rc != 0:
            _assert_clean(rc, err, bad.name)


def test_gzip_helper_is_not_a_vxf(tmp_path, capsys):
    p = tmp_path / "not.vxf"
    p.write_bytes(gzip.compress(b"hello") + zlib.compress(b"x"))
    rc, err = _run(["decompress", str(p)], capsys)
    _assert_clean(rc, err, "not.vxf")


def test_output_error_types(tmp_path):
    with pytest.raises(OutputError):
        atomic.check_writable(tmp_path / "missing" / "x.vxf")
    with pytest.raises(DataError):
        from voxfield.compress.stream import check_memory
        check_memory(1 << 60, tmp_path / "x.vxf")


# --------------------------------------------------------------------------- found by the fuzzer


def _raw_vxf(dst: Path, text: bytes, body: bytes = b"") -> Path:
    """A .vxf file whose (uncompressed) header is ``text`` verbatim, checksums right."""
    fixed = container._FIXED.pack(container.MAGIC, container.FORMAT_MAJOR, container.FORMAT_MINOR,
                                  len(text), zlib.crc32(text), 0)
    dst.write_bytes(fixed + text + body)
    return dst


def test_deeply_nested_header_json_is_refused(tmp_path, capsys):
    """Was a RecursionError traceback (fuzz seed 0, case 271)."""
    depth = 100_000
    bad = _raw_vxf(tmp_path / "deep.vxf", b'{"sections":[],"x":' + b"[" * depth + b"]" * depth + b"}")
    rc, err = _run(["decompress", str(bad), "-o", str(tmp_path / "o.mrc")], capsys)
    _assert_clean(rc, err, "deep.vxf")
    assert "nested too deeply" in err
    assert not (tmp_path / "o.mrc").exists()


@pytest.mark.parametrize("size", [float("inf"), float("nan"), 1e300])
def test_non_finite_section_size_is_refused(seeds, tmp_path, capsys, size):
    """Was an OverflowError traceback in the section table (size ``Infinity``)."""
    header, _ = _parts(seeds["zstd"])
    header["sections"] = [{"name": "payload", "size": size, "crc32": 0}]
    from voxfield.io import metajson

    bad = _raw_vxf(tmp_path / "inf.vxf", metajson.dumps(header).encode())
    rc, err = _run(["info", str(bad)], capsys)
    _assert_clean(rc, err, "inf.vxf")


def test_unit_the_volume_refuses_is_refused_on_open(seeds, tmp_path, capsys):
    """A 1000-character unit passed the header check and failed in ``Volume`` without the
    file's name (``decode --step``)."""
    bad = _forge(seeds["sci"], tmp_path / "unit.vxf", _set(["volume", "unit"], "Å" * 1000))
    rc, err = _run(["decode", str(bad), "--step", "2", "-o", str(tmp_path / "o.npy")], capsys)
    _assert_clean(rc, err, "unit.vxf")
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize(("stored", "expected"), [("ypn.itlum", "ypn.itlum.decoded.mrc"),
                                                  ("noext", "noext.decoded.mrc"),
                                                  ("map.mrc", "map.decoded.mrc")])
def test_stored_name_with_unknown_suffix_gets_a_writable_output(seeds, tmp_path, capsys, stored, expected):
    """A stored name whose suffix no writer knows made ``decompress`` without ``-o`` fail
    with a message naming only the derived output; it now keeps the name and adds the
    suffix of the format the volume came from."""
    d = tmp_path / "in"
    d.mkdir()
    forged = _forge(seeds["zstd"], d / "m.vxf", _set(["volume", "name"], stored))
    rc, err = _run(["decompress", str(forged)], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in d.iterdir()) == sorted(["m.vxf", expected])
    np.testing.assert_array_equal(read_volume(d / expected).data, decompress(seeds["zstd"]).data)


def test_compress_never_writes_a_file_it_would_refuse(tmp_path, capsys, monkeypatch):
    """``compress`` checks the decode before writing: a file that does not decode is an
    error naming the input, and nothing is left at the output."""
    from voxfield.compress import api

    def broken(blob):
        raise FormatError("corrupt .vxf header (planted)")

    monkeypatch.setattr(api, "decompress", broken)
    src = tmp_path / "v.npy"
    np.save(src, np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    out = tmp_path / "out" / "x.vxf"
    out.parent.mkdir()
    rc, err = _run(["compress", str(src), "-o", str(out), "--codec", "zstd"], capsys)
    _assert_clean(rc, err, "v.npy")
    assert list(out.parent.iterdir()) == []
