"""Codec registry and configuration round trips."""

from __future__ import annotations

import pytest

from voxfield.codecs import (
    CODECS,
    Codec,
    available_codecs,
    codec_from_config,
    codec_names,
    get_codec,
)
from voxfield.errors import OptionError

EXPECTED = ["raw", "gzip", "zstd", "quant", "sz3", "sperr", "zfp", "jpeg2k", "jpegxl", "hevc"]


def test_names():
    assert codec_names() == EXPECTED
    for name in EXPECTED:
        assert CODECS[name].name == name


def test_available_on_this_machine():
    # every backend ships with the declared dependencies (imagecodecs, imageio-ffmpeg)
    assert available_codecs() == EXPECTED


def test_unknown_codec_lists_known_ones():
    with pytest.raises(OptionError) as err:
        get_codec("brotli")
    msg = str(err.value)
    assert "brotli" in msg
    for name in EXPECTED:
        assert name in msg


def test_bad_options():
    with pytest.raises(OptionError):
        get_codec("zstd", nonsense=1)
    with pytest.raises(OptionError):
        get_codec("gzip", level=12)
    with pytest.raises(OptionError):
        get_codec("zfp", mode="precision")
    with pytest.raises(OptionError):
        get_codec("hevc", preset="ludicrous")
    with pytest.raises(OptionError):
        get_codec("hevc", bitdepth=16)
    with pytest.raises(OptionError):
        get_codec("jpegxl", effort=0)


@pytest.mark.parametrize(
    "name,config",
    [
        ("raw", {}),
        ("gzip", {"level": 6}),
        ("zstd", {"level": 3}),
        ("quant", {"level": 19}),
        ("sz3", {}),
        ("sperr", {"threads": 2}),
        ("zfp", {"mode": "rate"}),
        ("zfp", {"tight": True}),
        ("jpeg2k", {}),
        ("jpegxl", {"effort": 5}),
        ("hevc", {"preset": "medium", "tune": None, "bitdepth": 10}),
    ],
)
def test_config_roundtrip(name, config):
    codec = get_codec(name, **config)
    cfg = codec.get_config()
    assert cfg["name"] == name
    for k, v in config.items():
        assert cfg[k] == v
    again = type(codec).from_config(cfg)
    assert again == codec and again.get_config() == cfg
    assert codec_from_config(cfg) == codec
    assert isinstance(codec, Codec)
    assert codec.lossless == (name in ("raw", "gzip", "zstd"))


def test_defaults_are_in_config():
    assert get_codec("zstd").get_config() == {"name": "zstd", "level": 19}
    assert get_codec("gzip").get_config() == {"name": "gzip", "level": 9}
    assert get_codec("hevc").get_config()["preset"] == "slow"
    assert get_codec("jpegxl").get_config()["effort"] == 3
    assert get_codec("zfp").get_config()["mode"] == "accuracy"


def test_codec_from_config_needs_name():
    with pytest.raises(OptionError):
        codec_from_config({"level": 3})
