"""The .vxf container: layout, versioning, checksums, refusal of damaged files."""

from __future__ import annotations

import struct
import zlib

import pytest

from voxfield.compress import container
from voxfield.errors import FormatError


def _blob() -> bytes:
    header = {"voxfield": "test", "volume": {"shape": [2, 3], "meta": {"ext": b"\x00\x01\xff"}},
              "method": {"name": "classic"}}
    return container.dumps(header, {"payload": b"abc" * 100, "extra": b""})


def test_round_trip_header_and_sections(tmp_path):
    p = tmp_path / "x.vxf"
    n = container.write(p, {"volume": {"meta": {"ext": b"\x00\x01\xff"}}, "method": {"name": "m"}},
                        {"a": b"hello", "b": bytes(range(256))})
    assert n == p.stat().st_size
    assert container.is_vxf(p)
    with container.VxfReader(p, validate=False) as r:
        assert r.version == (container.FORMAT_MAJOR, container.FORMAT_MINOR)
        assert r.section_names == ["a", "b"]
        assert r.section("b") == bytes(range(256))
        assert r.section("a") == b"hello"
        # bytes inside the header survive (MRC extended headers travel this way)
        assert r.header["volume"]["meta"]["ext"] == b"\x00\x01\xff"
        assert r.header["sections"][0] == {"name": "a", "size": 5, "crc32": zlib.crc32(b"hello")}


def test_reader_from_bytes_matches_file(tmp_path):
    blob = _blob()
    with container.VxfReader(blob, validate=False) as r:
        assert r.section("payload") == b"abc" * 100
        assert r.section("extra") == b""
        assert r.size == len(blob)


def test_overhead_predicts_file_size():
    header = {"volume": {"shape": [100, 100, 100]}, "method": {"name": "classic", "codec": {"name": "sz3"}}}
    over = container.overhead(header, ["payload"])
    for n in (10, 1000, 100000):
        size = len(container.dumps(header, {"payload": b"\x07" * n}))
        assert 0 <= over - (size - n) <= 40


@pytest.mark.parametrize("cut", [3, 15, 25, -1, -50])
def test_truncated_file_refused(tmp_path, cut):
    blob = _blob()
    p = tmp_path / "t.vxf"
    p.write_bytes(blob[:cut])
    with pytest.raises(FormatError) as e:
        with container.VxfReader(p, validate=False) as r:
            r.section("payload")
    assert "t.vxf" in str(e.value)


def test_trailing_garbage_refused():
    with pytest.raises(FormatError, match="unexpected bytes"):
        container.VxfReader(_blob() + b"junk", validate=False)


def test_corrupt_section_detected_when_read():
    blob = bytearray(_blob())
    blob[-5] ^= 0xFF  # inside the payload
    r = container.VxfReader(bytes(blob), validate=False)
    with pytest.raises(FormatError, match="checksum"):
        r.section("payload")


def test_corrupt_header_detected():
    blob = bytearray(_blob())
    blob[30] ^= 0x01
    with pytest.raises(FormatError, match="checksum"):
        container.VxfReader(bytes(blob), validate=False)


def test_bad_magic_and_newer_major_version():
    with pytest.raises(FormatError, match="magic"):
        container.VxfReader(b"PK\x03\x04" + b"\x00" * 40, validate=False)
    blob = bytearray(_blob())
    struct.pack_into("<H", blob, 8, container.FORMAT_MAJOR + 1)
    with pytest.raises(FormatError, match="newer voxfield"):
        container.VxfReader(bytes(blob), validate=False)


def test_newer_minor_version_still_reads():
    blob = bytearray(_blob())
    struct.pack_into("<H", blob, 10, container.FORMAT_MINOR + 7)
    with container.VxfReader(bytes(blob), validate=False) as r:
        assert r.section("payload") == b"abc" * 100


def test_missing_section_is_format_error():
    with pytest.raises(FormatError, match="missing section"):
        container.VxfReader(_blob(), validate=False).section("nope")

