"""Error-bound, PSNR and bits targets: honoured on every value."""

from __future__ import annotations

import functools

import mrcfile
import numpy as np
import pytest

from voxfield.codecs import Target, get_codec
from voxfield.data import example_map_path
from voxfield.errors import OptionError

BOUNDED = ["quant", "sz3", "sperr", "zfp"]


@functools.lru_cache(maxsize=1)
def crop() -> np.ndarray:
    with mrcfile.open(example_map_path()) as m:
        return np.array(m.data, dtype=np.float32)


def _scaled(dtype, lo, hi) -> np.ndarray:
    c = crop()[16:48]
    u = (c - c.min()) / (c.max() - c.min())
    return np.rint(u * (hi - lo) + lo).astype(dtype)


def max_err(a, b) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def psnr(a, b) -> float:
    rng = float(a.max()) - float(a.min())
    return 20 * np.log10(rng / np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize("rel", [1e-4, 1e-3, 1e-2, 0.1])
def test_max_abs_error_float32(name, rel):
    a = crop()
    bound = rel * float(a.max() - a.min())
    codec = get_codec(name)
    b = codec.decode(codec.encode(a, Target.max_abs_error(bound)))
    assert b.dtype == a.dtype
    assert max_err(a, b) <= bound


@pytest.mark.parametrize("name", BOUNDED)
def test_rel_error(name):
    a = crop()
    codec = get_codec(name)
    b = codec.decode(codec.encode(a, Target.rel_error(2e-3)))
    assert max_err(a, b) <= 2e-3 * float(a.max() - a.min())


@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize(
    "dtype,lo,hi,bounds",
    [
        (np.uint16, 100, 4000, [0.3, 0.7, 1.0, 1.6, 5.0]),
        (np.int16, -3000, 3000, [0.5, 2.5]),
        (np.uint8, 0, 255, [1.0, 3.0]),
    ],
)
def test_max_abs_error_integers(name, dtype, lo, hi, bounds):
    a = _scaled(dtype, lo, hi)
    codec = get_codec(name)
    for bound in bounds:
        b = codec.decode(codec.encode(a, Target.max_abs_error(bound)))
        assert b.dtype == a.dtype
        err = max_err(a, b)
        assert err <= bound, f"{name} {np.dtype(dtype)} bound {bound}: {err}"
        if bound < 1:
            assert err == 0


@pytest.mark.parametrize("name", BOUNDED)
def test_max_abs_error_float16_and_float64(name):
    codec = get_codec(name)
    for dtype in (np.float16, np.float64):
        a = (crop()[20:44] * 100).astype(dtype)
        bound = 0.01 * float(a.max() - a.min())
        b = codec.decode(codec.encode(a, Target.max_abs_error(bound)))
        assert b.dtype == a.dtype
        assert max_err(a, b) <= bound


def test_zfp_tight_bound_is_smaller_and_still_holds():
    a = crop()
    bound = 1e-3 * float(a.max() - a.min())
    plain = get_codec("zfp").encode(a, Target.max_abs_error(bound))
    tight_codec = get_codec("zfp", tight=True)
    tight = tight_codec.encode(a, Target.max_abs_error(bound))
    assert len(tight) < len(plain)
    assert max_err(a, tight_codec.decode(tight)) <= bound


@pytest.mark.parametrize("name", ["quant", "sz3", "sperr", "jpeg2k"])
@pytest.mark.parametrize("db", [40.0, 60.0])
def test_psnr_target(name, db):
    a = crop()
    codec = get_codec(name)
    got = psnr(a, codec.decode(codec.encode(a, Target.psnr(db))))
    assert db <= got <= db + 4, f"{name}: asked {db} dB, got {got:.2f}"


def test_quant_bits():
    a = crop()
    codec = get_codec("quant")
    for k in (1, 4, 8, 12):
        b = codec.decode(codec.encode(a, Target("bits", k)))
        assert len(np.unique(b)) <= 2**k
        step = float(a.max() - a.min()) / (2**k - 1)
        assert max_err(a, b) <= step / 2 + 1e-6  # + float32 rounding of the reconstruction
    with pytest.raises(OptionError):
        codec.encode(a, Target("bits", 2.5))
