"""Slab-wise decoding to disk equals the whole-volume decode, header included."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.codecs.base import Target
from voxfield.compress.api import decompress
from voxfield.compress.methods import compress_field
from voxfield.compress.stream import decompress_to_file, slab_ranges
from voxfield.data import example_map_path
from voxfield.io import Volume, read_volume


def test_slab_ranges_cover_the_axis_once():
    r = slab_ranges((10, 4, 5), 4, slab_bytes=3 * 4 * 5 * 4)
    assert r == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert slab_ranges((7, 1000, 1000), 4, slab_bytes=1) == [(i, i + 1) for i in range(7)]


@pytest.mark.parametrize("method", ["sci", "grid"])
def test_streamed_decode_equals_full_decode(tmp_path, method):
    vol = read_volume(example_map_path())
    crop = Volume(np.ascontiguousarray(vol.data[:24, :20, :28]), "ZYX", vol.spacing, vol.unit, vol.origin,
                  {"format": "mrc"})
    blob, _ = compress_field(crop, method, Target.ratio(8, 0.02), {"steps": 10, "max_blocks": 4}
                             if method == "sci" else {"steps": 10})
    src = tmp_path / "c.vxf"
    src.write_bytes(blob)
    seen = []
    out = tmp_path / "streamed.mrc"
    decompress_to_file(src, out, stream_above=0, slab_bytes=20 * 28 * 4 * 5, progress=seen.append)
    assert len(seen) == 5 and seen[-1] == 1.0  # 24 planes in slabs of 5
    full = decompress(blob)
    got = read_volume(out)
    np.testing.assert_array_equal(got.data, full.data)
    assert got.spacing == pytest.approx(full.spacing) and got.origin == pytest.approx(full.origin)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".voxfield-decode-")]  # temp removed
