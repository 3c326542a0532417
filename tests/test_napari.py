"""The napari reader plugin, driven headless through npe2 (napari itself is not needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

import voxfield  # noqa: E402
from voxfield.errors import VoxfieldError  # noqa: E402
from voxfield.io import omezarr  # noqa: E402
from voxfield.io.volume import Volume  # noqa: E402
from voxfield.viz import napari_reader  # noqa: E402
from voxfield.viz.napari_reader import StridedView, get_reader  # noqa: E402

MANIFEST = Path(napari_reader.__file__).resolve().parents[1] / "napari.yaml"


@pytest.fixture(scope="module")
def pm() -> npe2.PluginManager:
    """A private plugin manager holding only voxfield's manifest, activated (its commands
    registered), so that nothing depends on what is installed in the environment."""
    manager = npe2.PluginManager()
    manager.register(npe2.PluginManifest.from_file(MANIFEST))
    manager.activate("voxfield")
    return manager


def npe2_read(pm: npe2.PluginManager, paths: list[str], stack: bool = False) -> list:
    """What ``npe2.io_utils.read(paths, plugin_name="voxfield", stack=stack)`` does, on ``pm``
    and through npe2's public API: find voxfield's compatible reader contribution, ask it for
    a reader function (the npe1-style wrapper npe2 builds), call it."""
    readers = [r for r in pm.iter_compatible_readers(paths) if r.plugin_name == "voxfield"]
    assert len(readers) == 1, readers
    func = readers[0].exec(kwargs={"path": paths, "stack": stack, "_registry": pm.commands})
    assert func is not None, f"voxfield refused {paths}"
    return func(paths, stack=stack)


@pytest.fixture(scope="module")
def vxf_zyx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(np.arange(40), np.arange(96), np.arange(96), indexing="ij")
    data = (np.sin(z / 5.0) * np.cos(y / 7.0) + 0.3 * np.sin(x / 3.0)
            + 0.05 * rng.standard_normal((40, 96, 96))).astype("float32")
    path = tmp_path_factory.mktemp("napari") / "cell.vxf"
    voxfield.compress(Volume(data, "ZYX", (2.0, 0.5, 0.25), "µm", origin=(10.0, 5.0, 2.5)),
                      codec="sperr", ratio=16, output=path)
    return path, voxfield.decompress(path).data


# ---------------------------------------------------------------------------- manifest
def test_manifest_declares_the_reader() -> None:
    mf = npe2.PluginManifest.from_file(MANIFEST)
    assert mf.name == "voxfield"
    (cmd,) = mf.contributions.commands
    assert (cmd.id, cmd.python_name) == ("voxfield.get_reader", "voxfield.viz.napari_reader:get_reader")
    (rdr,) = mf.contributions.readers
    assert rdr.command == "voxfield.get_reader"
    assert rdr.filename_patterns == ["*.vxf", "*.zarr", "*.ome.zarr"]
    assert rdr.accepts_directories is True
    assert mf.validate_imports() is None  # python_name resolves to get_reader


# ---------------------------------------------------------------------------- .vxf
def test_vxf_volume_opens_as_lazy_multiscale_layer(pm: npe2.PluginManager,
                                                    vxf_zyx: tuple[Path, np.ndarray]) -> None:
    path, full = vxf_zyx
    layers = npe2_read(pm, [str(path)])
    assert len(layers) == 1
    data, kw, layer_type = layers[0]
    assert layer_type == "image"
    assert kw["multiscale"] is True
    assert [lvl.shape for lvl in data] == [(40, 96, 96), (20, 48, 48)]  # Z halves too: 20 planes >= 16
    assert all(lvl.dtype == np.float32 and lvl.ndim == 3 for lvl in data)
    assert kw["scale"] == [2.0, 0.5, 0.25]
    assert kw["translate"] == [10.0, 5.0, 2.5]
    assert kw["name"] == "cell"
    assert (kw["metadata"]["method"], kw["metadata"]["codec"], kw["metadata"]["unit"]) == ("classic", "sperr", "µm")
    assert "channel_axis" not in kw
    # lazy: indexing gives another view, np.asarray decodes; values equal the full decode's
    plane = data[1][3]
    assert isinstance(plane, StridedView) and plane.shape == (48, 48)
    np.testing.assert_array_equal(np.asarray(plane), full[6, ::2, ::2])
    np.testing.assert_array_equal(np.asarray(data[1][2:9:3, 5:40:2, -10:]), full[::2, ::2, ::2][2:9:3, 5:40:2, -10:])
    np.testing.assert_array_equal(np.asarray(data[0][..., 7]), full[..., 7])


def test_vxf_pyramid_depth_follows_the_size() -> None:
    small = np.zeros((8, 50, 70), dtype="float32")
    assert [v.shape for v in napari_reader.vxf_levels(small, "ZYX")] == [(8, 50, 70)]
    big = np.zeros((20, 1000, 600), dtype="uint8")
    assert [v.shape for v in napari_reader.vxf_levels(big, "ZYX")] == [
        (20, 1000, 600), (20, 500, 300), (20, 250, 150), (20, 125, 75)]  # Z=20 would drop below 16: kept
    img = np.zeros((3, 130, 260), dtype="uint16")
    assert [v.shape for v in napari_reader.vxf_levels(img, "CYX")] == [(3, 130, 260), (3, 65, 130), (3, 33, 65)]


def test_strided_view_reads_its_base_once_with_composed_steps() -> None:
    base = np.arange(4 * 30 * 40 * 50, dtype="float32").reshape(4, 30, 40, 50)
    keys: list[tuple] = []

    class Recording:
        shape, dtype = base.shape, base.dtype

        def __getitem__(self, key: tuple) -> np.ndarray:
            keys.append(key)
            return base[key]

    level = StridedView(Recording(), (1, 2, 4, 4))
    assert level.shape == (4, 15, 10, 13)
    view = level[1, 3:, ::-3][..., 1:12:5]
    assert keys == []  # nothing read yet
    assert view.shape == (12, 4, 3)
    out = np.asarray(view)
    assert keys == [(1, slice(6, 29, 2), slice(36, None, -12), slice(4, 45, 20))]  # one read, steps multiplied
    np.testing.assert_array_equal(out, base[:, ::2, ::4, ::4][1, 3:, ::-3][..., 1:12:5])
    np.testing.assert_array_equal(np.asarray(level[2, 0, 0, -1:]), base[2, 0, 0, 48:49])
    assert np.asarray(level[0, 20:]).shape == (0, 10, 13)
    with pytest.raises(IndexError):
        level[4]
    np.testing.assert_array_equal(level[:, 0, 0, [0, 2]], base[:, 0, 0, [0, 8]])  # fancy: on the materialised view


def test_vxf_channels_set_channel_axis_and_names(pm: npe2.PluginManager, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.random((2, 20, 64, 64)).astype("float32")
    named = tmp_path / "two.vxf"
    voxfield.compress(Volume(data, "CZYX", (0.3, 0.1, 0.1), "µm", meta={"tiff": {"channel_names": ["DAPI", "GFP"]}}),
                      codec="sperr", ratio=16, output=named)
    full = voxfield.decompress(named).data
    (levels, kw, _), = npe2_read(pm, [str(named)])
    assert kw["channel_axis"] == 0
    assert kw["name"] == ["DAPI", "GFP"]
    assert kw["scale"] == [0.3, 0.1, 0.1]  # per channel layer: the C axis is split off
    assert [lvl.shape for lvl in levels] == [(2, 20, 64, 64), (2, 20, 32, 32)]
    assert len(kw["metadata"]) == 2 and kw["metadata"][1]["channel"] == 1
    # napari splits channels with level[(slice(None),)*axis + (i,)]: must stay lazy
    green = [lvl[1] for lvl in levels]
    assert all(isinstance(g, StridedView) for g in green)
    np.testing.assert_array_equal(np.asarray(green[1][4]), full[1, 4, ::2, ::2])

    unnamed = tmp_path / "plain.vxf"
    voxfield.compress(Volume(data, "CZYX"), codec="sperr", ratio=16, output=unnamed)
    (_, kw, _), = npe2_read(pm, [str(unnamed)])
    assert kw["channel_axis"] == 0 and kw["name"] == "plain"


def test_stack_of_vxf_files_reads_each(pm: npe2.PluginManager, vxf_zyx: tuple[Path, np.ndarray],
                                       tmp_path: Path) -> None:
    path, _ = vxf_zyx
    other = tmp_path / "b.vxf"
    other.write_bytes(path.read_bytes())
    layers = npe2_read(pm, [str(path), str(other)], stack=True)
    assert [kw["name"] for _, kw, _ in layers] == ["cell", "b"]
    assert get_reader([str(path), str(other)]) is not None
    assert get_reader([str(path), str(tmp_path / "missing.vxf")]) is None


def test_damaged_vxf_raises_voxfield_error_when_read(pm: npe2.PluginManager, vxf_zyx: tuple[Path, np.ndarray],
                                                     tmp_path: Path) -> None:
    path, _ = vxf_zyx
    bad = tmp_path / "bad.vxf"
    payload = path.read_bytes()
    bad.write_bytes(payload[: len(payload) // 2])
    reader = get_reader(str(bad))  # get_reader only looks at the path
    assert callable(reader)
    with pytest.raises(VoxfieldError, match="truncated"):
        npe2_read(pm, [str(bad)])
    junk = tmp_path / "junk.vxf"
    junk.write_bytes(b"not a vxf file at all")
    with pytest.raises(VoxfieldError):
        get_reader(str(junk))(str(junk))


# ---------------------------------------------------------------------------- OME-Zarr
def test_omezarr_opens_as_multiscale_channels(pm: npe2.PluginManager, tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((2, 64, 140, 150)).astype("float32")
    path = tmp_path / "cells.ome.zarr"
    omezarr.write(Volume(data, "CZYX", (0.5, 0.2, 0.2), "µm"), path)
    (levels, kw, layer_type), = npe2_read(pm, [str(path)])
    assert layer_type == "image"
    assert kw["multiscale"] is True and len(levels) == 3
    assert [lvl.shape for lvl in levels] == [(2, 64, 140, 150), (2, 64, 70, 75), (2, 32, 35, 38)]
    assert kw["channel_axis"] == 0
    assert kw["scale"] == pytest.approx([0.5, 0.2, 0.2])
    assert kw["name"] == "cells"
    assert kw["metadata"][0]["unit"] == "µm"
    np.testing.assert_array_equal(levels[0].compute(), data)

    # channel labels come from the NGFF "omero" block (NGFF 0.4: the group's .zattrs)
    attrs_file = path / ".zattrs"
    attrs = json.loads(attrs_file.read_text())
    attrs["omero"] = {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}
    attrs_file.write_text(json.dumps(attrs))
    (_, kw, _), = npe2_read(pm, [str(path)])
    assert kw["name"] == ["DAPI", "GFP"]


def test_single_level_zarr_is_not_multiscale(pm: npe2.PluginManager, tmp_path: Path) -> None:
    data = np.arange(20 * 30 * 40, dtype="uint16").reshape(20, 30, 40)
    path = tmp_path / "small.zarr"
    omezarr.write(Volume(data, "ZYX", (1.5, 1.0, 1.0), "nm"), path)
    (arr, kw, _), = npe2_read(pm, [str(path)])
    assert "multiscale" not in kw and "channel_axis" not in kw
    assert kw["scale"] == pytest.approx([1.5, 1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(arr), data)


# ---------------------------------------------------------------------------- refusals
def test_get_reader_refuses_what_it_does_not_handle(pm: npe2.PluginManager, tmp_path: Path) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    plain = tmp_path / "folder"
    plain.mkdir()
    fake = tmp_path / "fake.zarr"  # named like a store, but no zarr metadata inside
    fake.mkdir()
    (fake / "readme.txt").write_text("x")
    command = pm.commands.get("voxfield.get_reader")
    for p in (txt, plain, fake, tmp_path / "missing.vxf", tmp_path / "missing.ome.zarr"):
        assert command(str(p)) is None, p
        assert get_reader([str(p)]) is None, p
    assert get_reader([]) is None
    assert get_reader(None) is None  # type: ignore[arg-type]
    assert get_reader(123) is None  # type: ignore[arg-type]
    # napari offers folders to every reader that accepts directories: voxfield's declines
    for folder in (plain, fake):
        readers = [r for r in pm.iter_compatible_readers([str(folder)]) if r.plugin_name == "voxfield"]
        assert len(readers) == 1
        assert readers[0].exec(kwargs={"path": [str(folder)], "stack": False, "_registry": pm.commands}) is None
    assert not [r for r in pm.iter_compatible_readers([str(txt)]) if r.plugin_name == "voxfield"]
