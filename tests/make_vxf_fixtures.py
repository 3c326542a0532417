"""Write the ``.vxf`` fixtures of ``tests/data/vxf_v1/`` and the hashes of their decodes.

These files were written by voxfield 0.1.0 before the engine redesign (issue 15); the test
``tests/test_vxf_fixtures.py`` checks that every later version decodes them to the same
bits. Run once, never again on the same folder (it would overwrite the old files)::

    python tests/make_vxf_fixtures.py tests/data/vxf_v1
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from voxfield.cli.main import main
from voxfield.compress.api import decompress
from voxfield.data import example_map_path
from voxfield.io import read_volume, write_volume
from voxfield.io.volume import Volume

JOBS = {
    "zstd": ["--codec", "zstd", "--lossless"],
    "sz3": ["--codec", "sz3", "--ratio", "8"],
    "sperr": ["--codec", "sperr", "--ratio", "16"],
    "sci": ["--method", "sci", "--steps", "20", "--ratio", "16"],
    "siren": ["--method", "siren", "--steps", "20", "--ratio", "16"],
    "grid": ["--method", "grid", "--steps", "30", "--ratio", "16"],
    "cryo-pe": ["--method", "cryo-pe", "--steps", "20", "--ratio", "16"],
    "hybrid": ["--method", "hybrid:sz3", "--steps", "20", "--ratio", "32"],
    "ebound-sci": ["--method", "sci", "--steps", "20", "--ratio", "16", "--max-error", "0.02"],
}


def digest(vol: Volume) -> dict[str, object]:
    data = np.ascontiguousarray(vol.data)
    return {"sha256": hashlib.sha256(data.tobytes()).hexdigest(), "shape": list(data.shape),
            "dtype": data.dtype.str, "axes": vol.axes, "spacing": list(vol.spacing)}


def make(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    vol = read_volume(example_map_path())
    crop = Volume(np.ascontiguousarray(vol.data[20:44, 20:44, 20:44]), vol.axes, vol.spacing, vol.unit,
                  vol.origin, {})
    src, src2 = folder / "crop.mrc", folder / "crop2.mrc"
    write_volume(crop, src)
    write_volume(Volume(crop.data[::-1].copy(), crop.axes, crop.spacing, crop.unit, crop.origin, {}), src2)
    expected: dict[str, object] = {}
    for name, args in JOBS.items():
        out = folder / f"{name}.vxf"
        assert main(["compress", str(src), "-o", str(out), "--no-check", "-f", *args]) == 0, name
        expected[out.name] = digest(decompress(out))
    out = folder / "set.vxf"
    assert main(["compress-set", str(src), str(src2), "-o", str(out), "--steps", "20", "--ratio", "8", "-f"]) == 0
    expected[out.name] = {str(m): digest(decompress(out, member=m)) for m in (1, 2)}
    src.unlink()
    src2.unlink()
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    make(Path(sys.argv[1]))
