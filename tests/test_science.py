"""Science-lossless search: the highest ratio keeping FSC >= 0.9 out to the map's resolution."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.cli.main import main
from voxfield.codecs.base import Target
from voxfield.codecs.registry import get_codec
from voxfield.compress.api import decompress
from voxfield.compress.classic import compress_volume
from voxfield.compress.modes.science import min_fsc_to_resolution, science_lossless
from voxfield.data import example_map_path
from voxfield.errors import OptionError, TargetNotMet
from voxfield.io import read_volume


@pytest.fixture(scope="module")
def vol():
    return read_volume(example_map_path())


def test_min_fsc_to_resolution(vol):
    a = vol.data.astype(np.float64)
    assert min_fsc_to_resolution(a, a, 1.05, 3.2) == pytest.approx(1.0)
    noisy = a + np.random.default_rng(0).normal(0, a.std(), a.shape)
    m = min_fsc_to_resolution(a, noisy, 1.05, 3.2)
    assert m < 0.9
    # the shells out to a coarser resolution correlate better than out to a finer one
    assert min_fsc_to_resolution(a, noisy, 1.05, 8.0) >= m
    with pytest.raises(OptionError, match="Nyquist"):
        min_fsc_to_resolution(a, a, 1.05, 1.5)


def test_search_brackets_the_highest_passing_ratio(vol):
    codec = get_codec("sz3")
    res = science_lossless(vol.data, lambda t: compress_volume(vol, codec, t), lambda b: decompress(b).data,
                           1.05, 3.2, threshold=0.9, precision=0.1)
    assert res.blob is not None and res.ratio is not None and res.ratio > 4
    assert res.ratio == pytest.approx(vol.data.nbytes / len(res.blob))
    # the file returned really keeps the FSC, recomputed independently
    assert min_fsc_to_resolution(vol.data, decompress(res.blob).data, 1.05, 3.2) >= 0.9
    passed = [p.target for p in res.probes if p.passed]
    failed = [p.target for p in res.probes if not p.passed]
    assert failed, "the search must find a ratio that loses the FSC"
    assert min(failed) / max(passed) <= 1.1 + 1e-9  # bracket narrowed to the precision
    assert min(failed) > max(passed)


def test_search_with_nothing_passing_returns_no_file(vol):
    def encode(target: Target) -> bytes:
        return compress_volume(vol, get_codec("quant"), target)

    zeros = np.zeros_like(vol.data)
    res = science_lossless(vol.data, encode, lambda b: zeros + np.random.default_rng(1).normal(size=zeros.shape),
                           1.05, 3.2)
    assert res.blob is None and res.ratio is None and len(res.probes) == 1


def test_search_counts_unreachable_ratios_as_failures(vol):
    def encode(target: Target) -> bytes:
        if target.value > 20:
            raise TargetNotMet("too far", achieved=15.0)
        return compress_volume(vol, get_codec("zstd"), Target.lossless())  # exact copy

    res = science_lossless(vol.data, encode, lambda b: decompress(b).data, 1.05, 3.2, start=4, precision=0.2)
    assert res.ratio is not None and res.min_fsc == pytest.approx(1.0)
    assert any(p.ratio == 15.0 and not p.passed for p in res.probes)


def test_cli_fsc_target(tmp_path, capsys):
    out = tmp_path / "sl.vxf"
    m = str(example_map_path())
    assert main(["compress", m, "-o", str(out), "--codec", "sz3", "--fsc-target", "0.9", "--resolution", "3.2"]) == 0
    text = capsys.readouterr()
    assert "science-lossless" in text.out and "keeps FSC 0.9" in text.err
    dec = decompress(out.read_bytes()).data
    src = read_volume(m).data
    assert min_fsc_to_resolution(src, dec, 1.05, 3.2) >= 0.9
    assert src.nbytes / out.stat().st_size > 4
    bad = tmp_path / "bad.vxf"
    assert main(["compress", m, "-o", str(bad), "--codec", "sz3", "--fsc-target", "0.9"]) == 2
    assert main(["compress", m, "-o", str(bad), "--codec", "sz3", "--fsc-target", "0.9", "--resolution", "3.2",
                 "--ratio", "10"]) == 2
    assert main(["compress", m, "-o", str(bad), "--codec", "sz3", "--resolution", "3.2"]) == 2
    assert main(["compress", m, "-o", str(bad), "--codec", "sz3", "--fsc-target", "0.9", "--resolution", "1.0"]) == 2
    assert not bad.exists()


def test_search_starts_at_the_codecs_lowest_ratio(vol):
    """A codec whose finest setting already compresses 12x is searched from there."""
    def encode(target: Target) -> bytes:
        if target.value < 12:
            raise TargetNotMet("below range", achieved=12.5)
        return compress_volume(vol, get_codec("sperr"), target)

    res = science_lossless(vol.data, encode, lambda b: decompress(b).data, 1.05, 3.2, start=4, precision=0.2)
    assert res.ratio is not None and res.ratio > 12
    assert res.probes[0].target == 4 and res.probes[0].min_fsc is None and not res.probes[0].passed
    assert any(p.passed and p.target > 12 for p in res.probes)
