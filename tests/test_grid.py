"""The ``grid`` method (latent grids + synthesis MLP): round trip, ratio control, exact
decoding of any region, determinism, 2-4-D inputs, constant and bad data. Fast settings."""

from __future__ import annotations

import numpy as np
import pytest

import voxfield
from voxfield.codecs.base import Target
from voxfield.compress import grid
from voxfield.compress.api import decompress
from voxfield.compress.methods import compress_field, make_config
from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet
from voxfield.io import Volume, read_volume
from voxfield.metrics import psnr

FAST = {"steps": 80, "seed": 0}


@pytest.fixture(scope="module")
def crop() -> Volume:
    vol = read_volume(example_map_path())
    return Volume(np.ascontiguousarray(vol.data[16:48, 12:44, 16:48]), "ZYX", vol.spacing, vol.unit,
                  vol.origin, {"format": "mrc"})


@pytest.fixture(scope="module")
def blob(crop) -> bytes:
    out, rep = compress_field(crop, "grid", Target.ratio(12, 0.02), FAST)
    assert rep.steps == 80 and rep.levels >= 2
    return out


def test_round_trip_ratio_and_quality(crop, blob):
    assert crop.data.nbytes / len(blob) == pytest.approx(12, rel=0.02)
    dec = decompress(blob)
    assert dec.shape == crop.shape and dec.dtype == crop.dtype and dec.axes == "ZYX"
    assert dec.spacing == pytest.approx(crop.spacing)
    # a constant at the mean scores 0 dB above the variance; the fit must do much better
    base = psnr(crop.data, np.full_like(crop.data, crop.data.mean()))
    assert psnr(crop.data, dec.data) > base + 10


@pytest.mark.parametrize("ratio", [5, 40])
def test_ratio_control(crop, ratio):
    out, _ = compress_field(crop, "grid", Target.ratio(ratio, 0.02), {"steps": 20})
    assert crop.data.nbytes / len(out) == pytest.approx(ratio, rel=0.02)


def test_any_region_equals_full_decode(blob):
    full = decompress(blob).data
    arr = voxfield.open(blob)
    assert arr.shape == full.shape and arr.random_access
    np.testing.assert_array_equal(arr[3:20, 5:17, 9:30], full[3:20, 5:17, 9:30])
    np.testing.assert_array_equal(arr[:, 7, :], full[:, 7, :])
    np.testing.assert_array_equal(arr[::4, ::3, ::5], full[::4, ::3, ::5])
    np.testing.assert_array_equal(arr[-5:, 2:9:3, -1], full[-5:, 2:9:3, -1])
    pts = np.array([[0, 0, 0], [31, 31, 31], [10, 20, 5]])
    np.testing.assert_array_equal(arr.points(pts), full[tuple(pts.T)])


def test_decoding_and_encoding_are_deterministic(crop, blob):
    np.testing.assert_array_equal(decompress(blob).data, decompress(blob).data)
    # Training is seeded; multithreaded scatter-adds may still differ in the last float bit,
    # so a second encode must match in size and quality, not necessarily byte for byte.
    again, _ = compress_field(crop, "grid", Target.ratio(12, 0.02), FAST)
    assert abs(len(again) - len(blob)) <= 0.005 * len(blob)
    assert psnr(crop.data, decompress(again).data) == pytest.approx(psnr(crop.data, decompress(blob).data), abs=0.05)


def test_damaged_file_refused(blob):
    bad = bytearray(blob)
    bad[-3] ^= 0x55
    with pytest.raises(FormatError, match="checksum"):
        decompress(bytes(bad))
    with pytest.raises(FormatError, match="truncated"):
        decompress(blob[:-5])


@pytest.mark.parametrize("axes,shape", [("YX", (96, 80)), ("TZYX", (3, 10, 20, 20)), ("CZYX", (2, 12, 20, 20))])
def test_dimensionalities(axes, shape):
    rng = np.random.default_rng(1)
    g = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    data = (1000 + 500 * np.sin(sum(g)) + 50 * rng.random(shape)).astype(np.uint16)
    out, _ = compress_field(Volume(data, axes), "grid", Target.ratio(6, 0.02), {"steps": 40})
    dec = decompress(out)
    assert dec.shape == shape and dec.dtype == np.uint16 and dec.axes == axes
    assert data.nbytes / len(out) == pytest.approx(6, rel=0.02)
    key = tuple(slice(1, None, 2) for _ in shape)
    np.testing.assert_array_equal(voxfield.open(out)[key], dec.data[key])


def test_random_boxes_with_lazy_updates_land_too(crop):
    """A crop smaller than the volume switches to per-box (lazy) latent updates."""
    out, rep = compress_field(crop, "grid", Target.ratio(10, 0.02), {"steps": 30, "crop": 4096})
    assert crop.data.nbytes / len(out) == pytest.approx(10, rel=0.02)
    assert psnr(crop.data, decompress(out).data) > 10


def test_constant_volume_is_exact():
    vol = Volume(np.full((12, 16, 20), -3.5, np.float32), "ZYX")
    out, _ = compress_field(vol, "grid", Target.ratio(64))
    assert len(out) < 1000
    np.testing.assert_array_equal(decompress(out).data, vol.data)


def test_bad_input_and_options(crop):
    bad = crop.data.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(DataError):
        compress_field(Volume(bad, "ZYX"), "grid", Target.ratio(8), {"steps": 5})
    with pytest.raises(OptionError, match="unknown option"):
        make_config("grid", hiden=3)
    with pytest.raises(OptionError):
        make_config("grid", levels=20)
    with pytest.raises(TargetNotMet, match="out of reach"):
        compress_field(crop, "grid", Target.ratio(20000, 0.02), {"steps": 5})


def test_pyramid_sums_back_to_the_data():
    """The warm start's Laplacian pyramid reconstructs the field when its levels are summed."""
    rng = np.random.default_rng(3)
    field = rng.normal(size=(12, 10, 9, 1)).astype(np.float32)
    levels = 3
    pyr = grid.pyramid(field, levels, 1.0)
    assert len(pyr) == levels
    recon = np.zeros(field.shape[:-1])
    for lv, g in enumerate(pyr):
        sizes = grid.level_shape(field.shape[:-1], lv)
        idx = [grid.axis_interp(np.arange(n), lv, m) for n, m in zip(field.shape[:-1], sizes, strict=True)]
        up = g[0]
        for ax, (i0, i1, w) in enumerate(idx):
            up = np.take(up, i0, axis=ax) * (1 - w).reshape([-1 if k == ax else 1 for k in range(up.ndim)]) + \
                np.take(up, i1, axis=ax) * w.reshape([-1 if k == ax else 1 for k in range(up.ndim)])
        recon += up
    np.testing.assert_allclose(recon, field[..., 0], atol=1e-4)
