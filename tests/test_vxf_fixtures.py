"""Files written by an earlier voxfield (``tests/data/vxf_v1``, made by
``tests/make_vxf_fixtures.py`` before the engine redesign) decode to the same bits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from make_vxf_fixtures import digest

import voxfield
from voxfield.compress.api import decompress

FOLDER = Path(__file__).parent / "data" / "vxf_v1"
EXPECTED = json.loads((FOLDER / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_file_decodes_bit_identically(name: str) -> None:
    want = EXPECTED[name]
    if name == "set.vxf":
        for member, d in want.items():
            assert digest(decompress(FOLDER / name, member=int(member))) == d, f"{name} member {member}"
    else:
        assert digest(decompress(FOLDER / name)) == want


@pytest.mark.parametrize("name", ["sci.vxf", "grid.vxf", "cryo-pe.vxf", "hybrid.vxf", "zstd.vxf"])
def test_old_file_random_access_matches_the_full_decode(name: str) -> None:
    full = decompress(FOLDER / name).data
    arr = voxfield.open(FOLDER / name)
    np.testing.assert_array_equal(arr[3:17, 5:9, ::3], full[3:17, 5:9, ::3])
