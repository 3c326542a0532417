"""Neural methods (siren, sci): round trips, ratio control, decoding of any region, refusal
of damaged files, 2-5-D inputs, constant and bad data. Fast settings (few steps)."""

from __future__ import annotations

import numpy as np
import pytest

import voxfield
from voxfield.codecs.base import Target
from voxfield.compress.api import decompress
from voxfield.compress.neural import FitReport, NeuralConfig, compress_neural
from voxfield.data import example_map_path
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet
from voxfield.io import Volume, read_volume
from voxfield.metrics import psnr

FAST = {"steps": 60, "seed": 0}


@pytest.fixture(scope="module")
def crop() -> Volume:
    vol = read_volume(example_map_path())
    return Volume(np.ascontiguousarray(vol.data[16:48, 12:44, 16:48]), "ZYX", vol.spacing, vol.unit,
                  vol.origin, {"format": "mrc"})


@pytest.fixture(scope="module")
def encoded(crop):
    """One file per configuration, shared by the decoding tests."""
    out = {}
    for name, method, extra in [("siren", "siren", {}), ("sci", "sci", {"max_blocks": 8, "min_block_params": 0}),
                                ("sci-h264", "sci", {"max_blocks": 8, "min_block_params": 0, "deblock": "h264",
                                                     "overlap": 0})]:
        cfg = NeuralConfig.preset(method, **FAST, **extra)
        out[name] = compress_neural(crop, cfg, Target.ratio(12, 0.02))
    return out


@pytest.mark.parametrize("name", ["siren", "sci", "sci-h264"])
def test_round_trip_ratio_and_quality(crop, encoded, name):
    blob = encoded[name]
    assert crop.data.nbytes / len(blob) == pytest.approx(12, rel=0.02)
    dec = decompress(blob)
    assert dec.shape == crop.shape and dec.dtype == crop.dtype and dec.axes == "ZYX"
    assert dec.spacing == pytest.approx(crop.spacing)
    assert psnr(crop.data, dec.data) > 18  # 60 steps only; the benchmark measures real settings


@pytest.mark.parametrize("ratio", [6, 40])
def test_ratio_control(crop, ratio):
    blob = compress_neural(crop, NeuralConfig.preset("sci", steps=10, max_blocks=4), Target.ratio(ratio, 0.02))
    assert crop.data.nbytes / len(blob) == pytest.approx(ratio, rel=0.02)


@pytest.mark.parametrize("name", ["siren", "sci", "sci-h264"])
def test_any_region_equals_full_decode(encoded, name):
    blob = encoded[name]
    full = decompress(blob).data
    arr = voxfield.open(blob)
    assert arr.shape == full.shape and arr.random_access
    np.testing.assert_array_equal(arr[3:20, 5:17, 9:30], full[3:20, 5:17, 9:30])
    np.testing.assert_array_equal(arr[:, 7, :], full[:, 7, :])  # a slice along Y
    np.testing.assert_array_equal(arr[..., 31], full[..., 31])
    np.testing.assert_array_equal(arr[::4, ::4, ::4], full[::4, ::4, ::4])  # preview
    np.testing.assert_array_equal(arr[-5:, 2:9:3, -1], full[-5:, 2:9:3, -1])
    np.testing.assert_array_equal(arr[::-1, 0, 0], full[::-1, 0, 0])
    pts = np.array([[0, 0, 0], [31, 31, 31], [10, 20, 5], [16, 15, 17]])
    np.testing.assert_array_equal(arr.points(pts), full[tuple(pts.T)])


def test_fractional_points_interpolate_the_field(encoded):
    arr = voxfield.open(encoded["sci"])
    a, b = arr.points(np.array([[10.0, 10.0, 10.0]])), arr.points(np.array([[10.0, 10.0, 11.0]]))
    mid = arr.points(np.array([[10.0, 10.0, 10.5]]))
    assert min(a[0], b[0]) - 0.1 <= mid[0] <= max(a[0], b[0]) + 0.1


def test_region_decode_touches_only_needed_blocks(crop, encoded):
    arr = voxfield.open(encoded["sci"])
    blocks = arr._field.blocks
    hit = blocks.blocks_touching([0, 0, 0], [3, 3, 3])
    assert 0 < len(hit) < blocks.n_blocks


def test_decoding_is_deterministic(encoded):
    a = decompress(encoded["sci"]).data
    b = decompress(encoded["sci"]).data
    np.testing.assert_array_equal(a, b)


def test_encoding_is_reproducible_with_a_seed(crop):
    cfg = NeuralConfig.preset("sci", steps=15, max_blocks=4)
    assert compress_neural(crop, cfg, Target.ratio(10, 0.02)) == compress_neural(crop, cfg, Target.ratio(10, 0.02))


def test_damaged_files_refused(encoded):
    blob = bytearray(encoded["sci"])
    with pytest.raises(FormatError, match="truncated"):
        decompress(bytes(blob[:-7]))
    blob[-3] ^= 0x55
    with pytest.raises(FormatError, match="checksum"):
        decompress(bytes(blob))
    with pytest.raises(FormatError):
        voxfield.open(bytes(blob[:50]))


@pytest.mark.parametrize("axes,shape", [("YX", (96, 80)), ("CZYX", (2, 12, 20, 20)), ("TZYX", (3, 10, 20, 20)),
                                        ("TCZYX", (2, 2, 8, 16, 16)), ("YXS", (48, 56, 3))])
@pytest.mark.parametrize("method", ["siren", "sci"])
def test_dimensionalities(axes, shape, method):
    rng = np.random.default_rng(1)
    grid = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    data = (1000 + 500 * np.sin(sum(grid)) + 50 * rng.random(shape)).astype(np.uint16)
    vol = Volume(data, axes)
    blob = compress_neural(vol, NeuralConfig.preset(method, steps=30, max_blocks=4), Target.ratio(4, 0.02))
    dec = decompress(blob)
    assert dec.shape == shape and dec.dtype == np.uint16 and dec.axes == axes
    assert data.nbytes / len(blob) == pytest.approx(4, rel=0.02)
    arr = voxfield.open(blob)
    full = dec.data
    key = tuple(slice(1, None, 2) for _ in shape)
    np.testing.assert_array_equal(arr[key], full[key])


def test_channels_as_coordinate():
    data = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    cfg = NeuralConfig.preset("siren", steps=20, channels="coord")
    blob = compress_neural(Volume(data, "CYX"), cfg, Target.ratio(3, 0.02))
    assert decompress(blob).shape == (3, 40, 40)


def test_constant_volume_is_tiny_and_exact():
    vol = Volume(np.full((20, 30, 40), 7.25, np.float32), "ZYX")
    rep = FitReport("sci")
    blob = compress_neural(vol, NeuralConfig.preset("sci"), Target.ratio(64), report=rep)
    assert len(blob) < 1000
    np.testing.assert_array_equal(decompress(blob).data, vol.data)
    assert voxfield.open(blob)[3:5, 0, ::7].tolist() == [[7.25] * 6] * 2


def test_nan_refused(crop):
    bad = crop.data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compress_neural(Volume(bad, "ZYX"), NeuralConfig.preset("sci", steps=5), Target.ratio(8))


def test_budget_below_smallest_network(crop):
    with pytest.raises(TargetNotMet, match="out of reach|below the smallest"):
        compress_neural(crop, NeuralConfig.preset("sci", steps=5), Target.ratio(5000, 0.02))


def test_bad_options():
    with pytest.raises(OptionError, match="unknown option"):
        NeuralConfig.preset("sci", widht=3)
    with pytest.raises(OptionError):
        NeuralConfig.preset("nerf")
    with pytest.raises(OptionError):
        NeuralConfig.preset("sci", partition="kd").validate()


def test_out_of_bounds_requests(encoded):
    arr = voxfield.open(encoded["siren"])
    with pytest.raises(OptionError, match="out of bounds"):
        arr[32, 0, 0]
    with pytest.raises(OptionError, match="outside"):
        arr.points(np.array([[0, 0, 40]]))
    with pytest.raises(OptionError, match="too many"):
        arr[0, 0, 0, 0]


def test_weights_are_8_bit_or_more(encoded):
    from voxfield.compress.container import VxfReader

    for blob in encoded.values():
        assert VxfReader(blob).header["method"]["bits"] >= 8


def test_none_spelled_settings_mean_the_none_choice():
    """``--set partition=none`` / ``sci[deblock=none]`` parse "none" as None; it must mean
    the "none" choice, not an invalid value."""
    from voxfield.bench.methods import MethodSpec

    cfg = NeuralConfig.preset("sci", partition=None, deblock=None)
    cfg.validate()
    assert cfg.partition == "none" and cfg.deblock == "none"
    assert MethodSpec.parse("sci[partition=none,deblock=none,overlap=0]").settings["partition"] is None
