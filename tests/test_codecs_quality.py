"""Quality sanity checks against the measured figures of ANCHORS.md, on real data.

The bounds are loose (a few dB under what the codecs give today): they exist to catch a
broken codec (wrong layout, wrong mapping, a lost bit depth), not to pin numbers.
PSNR uses the data's own range.
"""

from __future__ import annotations

import functools

import mrcfile
import numpy as np
import pytest
import tifffile
from conftest import shared_file

from voxfield.codecs import Target, get_codec
from voxfield.errors import TargetNotMet

LOSSY = ["quant", "sz3", "sperr", "zfp", "jpeg2k", "jpegxl", "hevc"]


def psnr(a, b) -> float:
    rng = float(a.max()) - float(a.min())
    return 20 * np.log10(rng / np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@functools.lru_cache(maxsize=4)
def _mrc(rel: str) -> np.ndarray:
    with mrcfile.open(shared_file(rel)) as m:
        return np.array(m.data, dtype=np.float32)


def emd3488() -> np.ndarray:
    return _mrc("cryoem_maps/emd_3488.mrc")


def ratio_and_psnr(name: str, a: np.ndarray, target: Target, **config) -> tuple[float, float]:
    codec = get_codec(name, **config)
    payload = codec.encode(a, target)
    return a.nbytes / len(payload), psnr(a, codec.decode(payload))


# ANCHORS: SPERR 64x at 57.6 dB, SZ3 57x at 51.7 dB, ZFP (tolerance) 21x at 77 dB,
# 13x at 94 dB; 8-bit quantisation 8.5x at 58.9 dB on EMD-3001; gzip 3.1x.
@pytest.mark.parametrize(
    "name,ratio,min_db",
    [
        ("sperr", 64, 55.0),
        ("sperr", 124, 47.0),
        ("sz3", 57, 47.0),
        ("zfp", 21, 74.0),
        ("quant", 16, 62.0),
        ("jpeg2k", 64, 52.0),
        ("jpegxl", 64, 53.0),
        ("hevc", 64, 56.0),
        ("jpegxl", 16, 75.0),  # lossless JPEG XL on ~5000 levels
        ("hevc", 16, 75.0),  # lossless HEVC on ~2400 levels
    ],
)
def test_emd3488_quality_at_ratio(name, ratio, min_db):
    a = emd3488()
    got, db = ratio_and_psnr(name, a, Target.ratio(ratio))
    assert abs(got / ratio - 1) <= 0.03
    assert db >= min_db, f"{name} at {ratio}x: {db:.2f} dB < {min_db}"


def test_emd3488_error_bound_ratios():
    a = emd3488()
    rng = float(a.max() - a.min())
    r, db = ratio_and_psnr("sz3", a, Target.max_abs_error(1e-3 * rng))
    assert r > 18 and db > 67  # ANCHORS: 21x at 69.7 dB
    r, db = ratio_and_psnr("zfp", a, Target.max_abs_error(1e-3 * rng))
    assert r > 11 and db > 90  # ANCHORS: 13x at 94 dB


def test_emd3488_gzip_ratio():
    a = emd3488()
    r = a.nbytes / len(get_codec("gzip").encode(a))
    assert 2.7 < r < 3.6  # ANCHORS: 3.1x


def test_emd3001_eight_bit_quantisation():
    a = _mrc("cryoem_maps/emd_3001.map.gz")
    r, db = ratio_and_psnr("quant", a, Target("bits", 8), level=19)
    assert r > 7.0 and db > 57.0  # ANCHORS: 8.5x at 58.9 dB


@functools.lru_cache(maxsize=1)
def real_crops() -> dict[str, np.ndarray]:
    llsm = tifffile.imread(shared_file("fluorescence/pycudadecon_llsm_im_raw.tif"))
    hela = tifffile.imread(shared_file("multichannel/bian_hela-cells_3ch.tif"))
    imc = tifffile.imread(shared_file("multichannel/imc_pancreas_cytomapper/E34_imc.tiff"))
    return {
        "llsm-u2-zyx": np.ascontiguousarray(llsm[30:46, 100:196, 80:176]),
        "hela-u2-yxs": np.ascontiguousarray(hela[200:328, 300:428]),
        "imc-f4-cyx": np.ascontiguousarray(imc.astype(np.float32)),
        "emd21457-f4": _mrc("cryoem_maps/emd_21457_seg.mrc"),
    }


@pytest.mark.parametrize("name", LOSSY)
def test_real_crops_roundtrip(name):
    codec = get_codec(name)
    for label, a in real_crops().items():
        try:
            payload = codec.encode(a, Target.ratio(16))
            assert abs(a.nbytes / len(payload) / 16 - 1) <= 0.03
        except TargetNotMet as exc:  # acceptable, with a usable payload
            payload = exc.best
        b = codec.decode(payload)
        assert b.shape == a.shape and b.dtype == a.dtype, label
        assert psnr(a, b) > (15 if name == "quant" else 22), f"{name} {label}: {psnr(a, b):.1f} dB"
