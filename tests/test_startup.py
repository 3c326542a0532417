"""Fast start-up (issue 15): the light commands never import the heavy libraries.

``voxfield --help``, ``voxfield info``, and ``compress``/``decompress`` with a classic codec
must not import torch, matplotlib, dask, gemmi or scipy.optimize: each command runs in a
fresh interpreter and reports which of them ``sys.modules`` holds when it is done. Timings
are not tested here (they depend on the machine); ``benchmarks/run_startup.py`` measures
them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxfield.data import example_map_path

#: Modules the light commands must never import.
HEAVY = ("torch", "matplotlib", "dask", "gemmi", "scipy.optimize")

#: Runs ``main(argv)`` and writes its exit code and the heavy modules it imported.
_PROBE = """
import json, sys
argv, report, heavy = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
if argv is None:
    code = sys.argv[4]
    exec(code)
    rc = 0
else:
    from voxfield.cli.main import main
    rc = main(argv)
with open(report, "w") as f:
    json.dump({"rc": rc, "heavy": sorted(m for m in heavy if m in sys.modules)}, f)
"""


def probe(tmp: Path, argv: list[str] | None, code: str = "") -> dict:
    """Run the CLI with ``argv`` (or the Python ``code``) in a fresh interpreter in ``tmp``."""
    report = tmp / "probe.json"
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), str(report), json.dumps(HEAVY), code],
                          cwd=tmp, capture_output=True, text=True, timeout=300)
    assert report.exists(), proc.stderr
    return {**json.loads(report.read_text()), "stderr": proc.stderr}


def assert_light(res: dict) -> None:
    assert res["rc"] == 0, res["stderr"]
    assert res["heavy"] == [], f"imported {res['heavy']}"


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a smooth float32 map ``map.mrc`` (48^3) and ``map.vxf``, its
    lossless compression."""
    tmp = tmp_path_factory.mktemp("startup")
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, 48),) * 3, indexing="ij")
    data = np.exp(-4 * (x * x + y * y + z * z)) + 0.01 * rng.standard_normal((48,) * 3)
    with mrcfile.new(tmp / "map.mrc") as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = 1.5
    assert_light(probe(tmp, ["compress", "map.mrc", "-o", "map.vxf", "--codec", "zstd", "--lossless"]))
    return tmp


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["compress", "--help"], ["denoise", "--help"],
                                  ["reconstruct", "--help"]], ids=" ".join)
def test_help_is_light(tmp_path: Path, argv: list[str]) -> None:
    assert_light(probe(tmp_path, argv))


def test_info_is_light(maps: Path) -> None:
    assert_light(probe(maps, ["info", "map.mrc"]))
    assert_light(probe(maps, ["info", str(example_map_path())]))
    assert_light(probe(maps, ["info", "map.vxf", "--json"]))


@pytest.mark.parametrize("codec", ["sperr", "zfp", "gzip"])
def test_classic_round_trip_is_light(maps: Path, codec: str) -> None:
    from voxfield.codecs.registry import available_codecs

    if codec not in available_codecs():
        pytest.skip(f"{codec} is not available in this imagecodecs build")
    target = ["--lossless"] if codec == "gzip" else ["--ratio", "16"]
    assert_light(probe(maps, ["compress", "map.mrc", "-o", f"{codec}.vxf", "--codec", codec, *target, "-f"]))
    assert_light(probe(maps, ["decompress", f"{codec}.vxf", "-o", f"{codec}.mrc", "-f"]))


def test_import_voxfield_is_light(tmp_path: Path) -> None:
    """``import voxfield`` and the lazy top-level API names import no heavy library until
    a function that needs one is called."""
    assert_light(probe(tmp_path, None, "import voxfield"))
    assert_light(probe(tmp_path, None, "import voxfield.compress, voxfield.codecs, voxfield.metrics, "
                                       "voxfield.bench, voxfield.denoise, voxfield.viz, voxfield.fields"))
    code = ("from voxfield import compress, decompress, open, denoise, reconstruct\n"
            "assert all(callable(f) for f in (compress, decompress, open, denoise, reconstruct))")
    assert_light(probe(tmp_path, None, code))
