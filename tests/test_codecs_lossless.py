"""Lossless codecs: raw, gzip, zstd."""

from __future__ import annotations

import gzip as gzip_module

import mrcfile
import numpy as np
import pytest

from voxfield.codecs import Target, get_codec
from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError, OptionError

LOSSLESS = ["raw", "gzip", "zstd"]


def _arrays():
    rng = np.random.default_rng(1)
    yield rng.standard_normal((16, 17, 18)).astype(np.float32)
    yield rng.integers(0, 65535, (40, 30), dtype=np.uint16)
    yield rng.integers(-128, 127, (3, 4, 5, 6), dtype=np.int8)
    yield rng.integers(-(2**31), 2**31 - 1, (50,), dtype=np.int64)
    yield rng.standard_normal((2, 3, 4, 5, 6)).astype(">f8")  # big-endian kept as is
    yield np.array(3.5, dtype=np.float16)  # 0-D
    yield np.zeros((0, 4), dtype=np.uint8)  # empty
    yield rng.random((7, 7)) > 0.5  # bool
    yield np.asfortranarray(rng.standard_normal((6, 5)))  # not C-contiguous


@pytest.mark.parametrize("name", LOSSLESS)
def test_bit_exact(name):
    codec = get_codec(name)
    for a in _arrays():
        payload = codec.encode(a)
        b = codec.decode(payload)
        assert b.shape == a.shape and b.dtype == a.dtype
        np.testing.assert_array_equal(b, a)
        assert codec.decode(codec.encode(a, Target.lossless())).tobytes() == np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossy_targets_refused(name):
    with pytest.raises(OptionError):
        get_codec(name).encode(np.zeros(10, np.float32), Target.ratio(4))


@pytest.mark.parametrize("name", LOSSLESS)
def test_object_arrays_refused(name):
    with pytest.raises(DataError):
        get_codec(name).encode(np.array(["a", "b"], dtype=object))


@pytest.mark.parametrize("name", LOSSLESS)
def test_corrupt_payload(name):
    codec = get_codec(name)
    payload = codec.encode(np.arange(1000, dtype=np.float32))
    for bad in (b"", payload[:-1], payload[: len(payload) // 2], payload + b"\0", b"\x01\x05hello world"):
        with pytest.raises(FormatError):
            codec.decode(bad)
    flipped = bytearray(payload)
    flipped[-3] ^= 0xFF
    with pytest.raises(FormatError):
        codec.decode(bytes(flipped))
    other = "zstd" if name != "zstd" else "gzip"
    with pytest.raises(FormatError, match="not a"):
        codec.decode(get_codec(other).encode(np.arange(10)))


def test_ratios_on_example_map():
    with mrcfile.open(example_map_path()) as m:
        a = np.asarray(m.data, dtype=np.float32)
    sizes = {n: len(get_codec(n).encode(a)) for n in LOSSLESS}
    assert sizes["raw"] == pytest.approx(a.nbytes, rel=0.001)
    assert sizes["gzip"] < sizes["raw"] and sizes["zstd"] < sizes["raw"]
    assert a.nbytes / sizes["zstd"] > 1.1


def test_gzip_is_a_real_gzip_member_and_deterministic():
    a = np.arange(5000, dtype=np.int16)
    codec = get_codec("gzip", level=6)
    p1, p2 = codec.encode(a), codec.encode(a)
    assert p1 == p2
    body = p1[p1.index(b"\x1f\x8b") :]
    assert gzip_module.decompress(body) == a.tobytes()
