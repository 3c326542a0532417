"""Behaviour shared by every lossy codec: round trips, size targets, errors."""

from __future__ import annotations

import functools

import mrcfile
import numpy as np
import pytest

from voxfield.codecs import Target, get_codec
from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet

LOSSY = ["quant", "sz3", "sperr", "zfp", "jpeg2k", "jpegxl", "hevc"]


@functools.lru_cache(maxsize=1)
def crop() -> np.ndarray:
    """The shipped EMD-3488 crop, 64^3 float32."""
    with mrcfile.open(example_map_path()) as m:
        return np.array(m.data, dtype=np.float32)


def _scaled(a: np.ndarray, dtype, lo: float, hi: float) -> np.ndarray:
    u = (a - a.min()) / (a.max() - a.min())
    return np.rint(u * (hi - lo) + lo).astype(dtype)


def inputs() -> dict[str, np.ndarray]:
    """Small realistic arrays of several dtypes and dimensions (from the crop)."""
    c = crop()
    return {
        "f4-3d": np.ascontiguousarray(c[::2, ::2, ::2]),
        "u2-2d": _scaled(c[32], np.uint16, 100, 4000),
        "u1-4d": _scaled(c[8:56:4, 8:56:2, 8:56:2].reshape(3, 4, 24, 24), np.uint8, 0, 255),
        "i2-3d": _scaled(c[20:44, ::2, ::2], np.int16, -3000, 3000),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    rng = float(a.max()) - float(a.min())
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 20 * np.log10(rng / np.sqrt(mse))


def encode_or_best(codec, a, target):
    try:
        return codec.encode(a, target)
    except TargetNotMet as exc:
        assert exc.best is not None
        return exc.best


@pytest.mark.parametrize("name", LOSSY)
def test_roundtrip_keeps_shape_and_dtype(name):
    codec = get_codec(name)
    for label, a in inputs().items():
        payload = encode_or_best(codec, a, Target.ratio(4))
        b = codec.decode(payload)
        assert b.shape == a.shape and b.dtype == a.dtype, label
        np.testing.assert_array_equal(codec.decode(payload), b)  # deterministic decode
        assert psnr(a, b) > 15, f"{name} {label}: {psnr(a, b):.1f} dB"


@pytest.mark.parametrize("name", LOSSY)
@pytest.mark.parametrize("ratio", [16, 64])
def test_ratio_target_on_crop(name, ratio):
    a = crop()
    codec = get_codec(name)
    # ratio 16 is also the default target of every lossy codec
    payload = codec.encode(a) if ratio == 16 else codec.encode(a, Target.ratio(ratio))
    got = a.nbytes / len(payload)
    assert abs(got / ratio - 1) <= 0.03, f"{name}: asked {ratio}, got {got:.2f}"
    b = codec.decode(payload)
    assert b.shape == a.shape and b.dtype == a.dtype
    assert psnr(a, b) > (25 if ratio == 64 else 35)


def test_default_target():
    for name in LOSSY:
        assert get_codec(name).default_target() == Target.ratio(16.0)


@pytest.mark.parametrize("name", ["sperr", "hevc"])
def test_bytes_target(name):
    a = crop()
    payload = get_codec(name).encode(a, Target.nbytes(20000))
    assert abs(len(payload) / 20000 - 1) <= 0.03


@pytest.mark.parametrize("name", LOSSY)
def test_corrupt_payload(name):
    codec = get_codec(name)
    a = inputs()["f4-3d"]
    payload = encode_or_best(codec, a, Target.ratio(10))
    bad = [b"", b"\x01", payload[:20], payload[: len(payload) // 2], payload[:-1], payload + b"\x00"]
    bad.append(b"\x07" * 64)
    for i in (5, len(payload) // 3, len(payload) // 2, len(payload) - 2):
        flipped = bytearray(payload)
        flipped[i] ^= 0x5A
        bad.append(bytes(flipped))
    for p in bad:
        with pytest.raises(FormatError):
            codec.decode(p)
    other = "sz3" if name != "sz3" else "zfp"
    with pytest.raises(FormatError, match="not a"):
        codec.decode(encode_or_best(get_codec(other), a, Target.ratio(10)))


@pytest.mark.parametrize("name", LOSSY)
def test_unreachable_ratio_raises_with_best(name):
    a = crop()[20:36, 20:36, 20:36].copy()  # 16 kB
    codec = get_codec(name)
    with pytest.raises(TargetNotMet) as err:
        codec.encode(a, Target.ratio(5000))
    exc = err.value
    assert isinstance(exc.best, bytes) and exc.achieved == len(exc.best)
    assert "5000" in str(exc)
    b = codec.decode(exc.best)
    assert b.shape == a.shape and b.dtype == a.dtype


@pytest.mark.parametrize("name", LOSSY)
def test_constant_and_invalid_inputs(name):
    codec = get_codec(name)
    const = np.full((6, 7, 8), 2.5, np.float32)
    with pytest.raises(TargetNotMet) as err:
        codec.encode(const, Target.ratio(4))
    np.testing.assert_array_equal(codec.decode(err.value.best), const)
    if "max_abs_error" in codec.targets:
        np.testing.assert_array_equal(codec.decode(codec.encode(const, Target.max_abs_error(0.1))), const)
    nan = np.ones((4, 5, 6), np.float32)
    nan[1, 2, 3] = np.nan
    invalid = (
        nan, np.zeros((4, 4), np.complex64), np.zeros((2,) * 6, np.float32), np.zeros((0, 3), np.float32),
    )
    for bad in invalid:
        with pytest.raises(DataError):
            codec.encode(bad, Target.ratio(4))
    with pytest.raises(OptionError):
        codec.encode(const, Target.lossless())


def test_targets_refused_where_unsupported():
    a = inputs()["f4-3d"]
    for name in ("jpegxl", "hevc"):
        with pytest.raises(OptionError):
            get_codec(name).encode(a, Target.max_abs_error(0.01))
    with pytest.raises(OptionError):
        get_codec("zfp").encode(a, Target.psnr(40))
    with pytest.raises(OptionError):
        get_codec("sz3").encode(a, Target("bits", 8))


@pytest.mark.parametrize("name", LOSSY)
def test_low_ratio_on_crop(name):
    # jpegxl and hevc get here through their lossless-on-fewer-levels path
    a = crop()
    codec = get_codec(name)
    payload = codec.encode(a, Target.ratio(5))
    assert abs(a.nbytes / len(payload) / 5 - 1) <= 0.03
    assert psnr(a, codec.decode(payload)) > 70
    if name in ("jpegxl", "hevc"):
        from voxfield.codecs.base import unframe

        levels = unframe(payload)[2].get("L")  # lossless mode on L + 1 levels
        assert levels is not None and levels < (4095 if name == "hevc" else 65535)
