"""Methods are registered objects: a method defined outside the package (here, in this
test, and as an installed plug-in with an entry point) compresses and decodes through the
API, the command line, ``voxfield.open`` and ``info`` without touching voxfield's files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import voxfield
from voxfield.cli.main import main
from voxfield.compress import registry
from voxfield.compress.registry import Method, register_method

TOY_SOURCE = '''
from dataclasses import dataclass

import numpy as np

from voxfield import __version__
from voxfield.compress import container
from voxfield.compress.classic import volume_header
from voxfield.compress.registry import Method
from voxfield.io.volume import Volume


@dataclass
class HalfConfig:
    scale: float = 1.0


class Half(Method):
    """Stores the volume as float16 (a lossy 'codec' of 2x on float32)."""

    Config = HalfConfig

    def encode(self, vol, target, config, *, progress=None, **options):
        self.no_options(options)
        if progress is not None:
            progress("store", 1.0)
        data = (np.asarray(vol.data, dtype=np.float32) * config.scale).astype("<f2")
        head = {"voxfield": __version__, "volume": volume_header(vol),
                "method": {"name": self.name, "scale": config.scale}}
        return container.dumps(head, {"data": data.tobytes()}), {"bytes": data.nbytes}

    def describe(self, report):
        return f"{self.name}: {report['bytes']:,} bytes of float16"

    def decode(self, reader):
        desc = reader.header["volume"]
        data = np.frombuffer(reader.section("data"), dtype="<f2").astype(np.float32)
        data = (data / reader.header["method"]["scale"]).reshape(desc["shape"]).astype(desc["dtype"])
        return Volume.from_description(desc, data)
'''


@pytest.fixture()
def toy(tmp_path: Path):
    """The toy method registered as ``toy-half`` for the test's duration."""
    ns: dict[str, object] = {}
    exec(compile(TOY_SOURCE, "toy_method.py", "exec"), ns)  # noqa: S102 - the test's own source
    cls = register_method("toy-half", replace=True)(ns["Half"])
    yield cls
    registry.unregister_method("toy-half")


def _volume(tmp_path: Path) -> Path:
    p = tmp_path / "v.npy"
    np.save(p, np.random.default_rng(0).normal(size=(12, 10, 8)).astype(np.float32))
    return p


def test_api_round_trip(toy, tmp_path):
    src = _volume(tmp_path)
    res = voxfield.compress(src, method="toy-half", output=tmp_path / "v.vxf", scale=2.0)
    assert res.method == "toy-half" and res.path == tmp_path / "v.vxf"
    assert 1.7 < res.ratio < 2.0  # float16 plus the container header
    back = voxfield.decompress(tmp_path / "v.vxf")
    want = np.load(src)
    assert back.data.dtype == np.float32 and back.data.shape == want.shape
    assert np.max(np.abs(back.data - want)) < 1e-2
    arr = voxfield.open(tmp_path / "v.vxf")  # no field: decoded once, then indexed
    np.testing.assert_array_equal(arr[2:5, :, ::2], back.data[2:5, :, ::2])
    from voxfield.api import describe

    assert describe(tmp_path / "v.vxf")["method"] == {"name": "toy-half", "scale": 2.0}


def test_cli_round_trip(toy, tmp_path, capsys):
    src = _volume(tmp_path)
    out = tmp_path / "c.vxf"
    assert main(["compress", str(src), "-o", str(out), "--method", "toy-half", "--set", "scale=4"]) == 0
    assert "toy-half: 1,920 bytes of float16" in capsys.readouterr().out
    assert main(["decompress", str(out), "-o", str(tmp_path / "c.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), np.load(src), atol=1e-2)
    assert main(["info", str(out)]) == 0
    assert "toy-half" in capsys.readouterr().out


def test_unknown_setting_and_unknown_method_are_clear(toy, tmp_path, capsys):
    src = _volume(tmp_path)
    assert main(["compress", str(src), "--method", "toy-half", "--set", "colour=3"]) == 2
    assert "unknown setting(s) colour for method 'toy-half'" in capsys.readouterr().err
    assert main(["compress", str(src), "--method", "no-such-method"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'no-such-method'" in err and "toy-half" in err


def test_a_file_of_an_unregistered_method_names_the_file(toy, tmp_path, capsys):
    src = _volume(tmp_path)
    voxfield.compress(src, method="toy-half", output=tmp_path / "u.vxf")
    registry.unregister_method("toy-half")
    assert main(["decompress", str(tmp_path / "u.vxf"), "-o", str(tmp_path / "u.npy")]) == 2
    err = capsys.readouterr().err
    assert "u.vxf" in err and "unknown compression method 'toy-half'" in err
    assert not (tmp_path / "u.npy").exists()


def test_registering_twice_is_refused(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_method("toy-half")(type("Other", (Method,), {}))
    with pytest.raises(TypeError):
        register_method("not-a-method")(dataclass(type("Plain", (), {})))


def test_builtin_methods_are_all_registered():
    assert {"classic", "sci", "siren", "grid", "cryo-pe", "cryo-pe-set", "hybrid"} <= set(registry.method_names())
    assert registry.method_names("neural")[:4] == ["sci", "siren", "grid", "cryo-pe"]


def test_installed_plugin_is_found_through_its_entry_point(tmp_path):
    """A package installed beside voxfield adds a method with an entry point in the group
    ``voxfield.methods``; the command line finds it by name."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_plugin.py").write_text(TOY_SOURCE)
    dist = site / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[voxfield.methods]\nhalf = toy_plugin:Half\n")
    src = _volume(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "voxfield", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    r = run("compress", str(src), "-o", str(tmp_path / "p.vxf"), "--method", "half")
    assert r.returncode == 0, r.stderr
    assert "half: 1,920 bytes of float16" in r.stdout
    r = run("decompress", str(tmp_path / "p.vxf"), "-o", str(tmp_path / "p.npy"))
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), np.load(src), atol=1e-2)
    code = textwrap.dedent("""
        import sys
        from voxfield.compress import registry
        print(registry.method_names())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "'half'" in r.stdout
