"""voxfield as a zarr codec: v3 array->bytes codec and v2 numcodecs compressor, registered
through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from voxfield.compress.chunk_codec import ChunkTarget, decode_chunk, encode_chunk, squeeze_axes  # noqa: E402
from voxfield.compress.zarr_codec import VoxfieldCodec, VoxfieldNumcodec, weights_versions  # noqa: E402
from voxfield.errors import OptionError  # noqa: E402


def smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    for ax in range(len(shape)):
        x = np.cumsum(x, axis=ax)
    return (x / np.abs(x).max() * 1000).astype(np.float32)


def store_nbytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def test_chunk_target_validation() -> None:
    with pytest.raises(OptionError):
        ChunkTarget("psnr", 40)
    with pytest.raises(OptionError):
        ChunkTarget("ratio", 1.0)
    with pytest.raises(OptionError):
        ChunkTarget("max_abs_error", float("nan"))
    t = ChunkTarget("rmse", 2.5)
    assert ChunkTarget.from_dict(t.to_dict()) == t


def test_squeeze_axes_keeps_two() -> None:
    assert squeeze_axes((1, 1, 64, 64), "TCYX") == ((64, 64), "YX")
    assert squeeze_axes((1, 3, 1, 64, 64), "TCZYX") == ((3, 64, 64), "CYX")
    assert squeeze_axes((1, 1, 1), "ZYX") == ((1, 1), "YX")


def test_chunk_roundtrip_bound_and_constant() -> None:
    x = smooth((32, 32, 32))
    blob = encode_chunk(x, "sperr", ChunkTarget("max_abs_error", 0.5), axes="ZYX")
    y = decode_chunk(blob, x.shape, x.dtype)
    assert y.dtype == x.dtype and np.abs(y - x).max() <= 0.5
    c = np.full((1, 16, 16, 16), 7, np.uint16)
    y = decode_chunk(encode_chunk(c, "sperr", ChunkTarget("ratio", 64), axes="CZYX"), c.shape, c.dtype)
    assert np.array_equal(y, c)


def test_v3_error_bound_holds_across_sharded_chunks(tmp_path: Path) -> None:
    x = smooth((48, 64, 40))
    codec = VoxfieldCodec(method="sperr", target={"kind": "max_abs_error", "value": 0.25}, axes="ZYX")
    a = zarr.create_array(tmp_path / "a.zarr", shape=x.shape, chunks=(16, 32, 16), shards=(48, 64, 32),
                          dtype=x.dtype, serializer=codec, compressors=None)
    a[...] = x
    y = zarr.open_array(tmp_path / "a.zarr", mode="r")[...]
    assert np.abs(y - x).max() <= 0.25
    assert store_nbytes(tmp_path / "a.zarr") < x.nbytes / 3  # it did compress


def test_v3_ratio_target_and_metadata(tmp_path: Path) -> None:
    x = smooth((64, 64, 64), seed=1)
    codec = VoxfieldCodec(method="zfp", target=ChunkTarget("ratio", 16), axes="ZYX")
    a = zarr.create_array(tmp_path / "r.zarr", shape=x.shape, chunks=(32, 32, 32), dtype=x.dtype,
                          serializer=codec, compressors=None)
    a[...] = x
    ratio = x.nbytes / store_nbytes(tmp_path / "r.zarr")
    assert 11 < ratio < 23, ratio
    meta = zarr.open_array(tmp_path / "r.zarr", mode="r").metadata.to_dict()["codecs"][0]
    assert meta["name"] == "voxfield"
    conf = meta["configuration"]
    assert conf["method"] == "zfp" and conf["target"] == {"kind": "ratio", "value": 16.0}
    assert conf["weights"] == weights_versions() and conf["axes"] == "ZYX"
    assert VoxfieldCodec.from_dict(meta) == codec


def test_v3_newer_layout_refused() -> None:
    with pytest.raises(OptionError, match="newer"):
        VoxfieldCodec.from_dict({"name": "voxfield", "configuration": {"method": "sperr", "version": 99}})


def test_v2_numcodec(tmp_path: Path) -> None:
    import numcodecs

    x = smooth((40, 40, 40), seed=2)
    comp = VoxfieldNumcodec(method="sz3", target={"kind": "max_abs_error", "value": 1.0})
    assert numcodecs.get_codec(comp.get_config()).get_config() == comp.get_config()
    a = zarr.create_array(tmp_path / "v2.zarr", shape=x.shape, chunks=(20, 20, 40), dtype=x.dtype,
                          zarr_format=2, compressors=comp, filters=None)
    a[...] = x
    y = zarr.open_array(tmp_path / "v2.zarr", mode="r")[...]
    assert np.abs(y - x).max() <= 1.0


def test_hybrid_per_chunk_is_reproducible(tmp_path: Path) -> None:
    x = smooth((24, 24, 24), seed=3)
    blobs = [encode_chunk(x, "hybrid:sperr", ChunkTarget("ratio", 24), {"steps": 20, "seed": 0}, "ZYX")
             for _ in range(2)]
    assert blobs[0] == blobs[1]
    y = decode_chunk(blobs[0], x.shape, x.dtype)
    assert np.sqrt(np.mean((y - x) ** 2)) < 0.05 * (x.max() - x.min())


def test_plain_zarr_reads_through_entry_point(tmp_path: Path) -> None:
    """A script that never imports voxfield reads both formats: zarr finds the codecs
    through the ``zarr.codecs`` and ``numcodecs.codecs`` entry points."""
    x = smooth((32, 32, 32), seed=4)
    a = zarr.create_array(tmp_path / "v3.zarr", shape=x.shape, chunks=(16, 16, 16), dtype=x.dtype,
                          serializer=VoxfieldCodec(method="sperr", target={"kind": "max_abs_error", "value": 0.5}),
                          compressors=None)
    a[...] = x
    b = zarr.create_array(tmp_path / "v2.zarr", shape=x.shape, chunks=(16, 16, 16), dtype=x.dtype, zarr_format=2,
                          compressors=VoxfieldNumcodec(method="sperr", target={"kind": "max_abs_error", "value": 0.5}),
                          filters=None)
    b[...] = x
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import zarr
        x = np.load(sys.argv[1])
        for p in sys.argv[2:]:
            y = zarr.open_array(p, mode="r")[...]
            assert np.abs(y - x).max() <= 0.5, p
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "v3.zarr"),
                          str(tmp_path / "v2.zarr")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
