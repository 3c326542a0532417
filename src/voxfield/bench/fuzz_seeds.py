"""Seed corpus of the fuzzer (:mod:`voxfield.bench.fuzz`): small valid files of every kind.

:func:`build_corpus` writes, into a cache folder keyed by the voxfield version and a hash of
the settings below, one folder per seed:

* ``.vxf`` files of every classic codec the install has, of every neural method (2-D, 3-D
  and multichannel inputs where the method takes them), a ``compress-set``, the hybrid
  method with its residual filter and with a residual field, error-bounded files and a
  constant volume, each with the reference decode (``ref.npy``, one per member for a set);
* input volumes in every format voxfield reads (MRC, MRC.gz, TIFF, OME-TIFF, NPY incl.
  bool and float16, NPZ, HDF5, OME-Zarr) and particle files (RELION STAR + MRCS,
  cryoSPARC ``.cs``, cryoDRGN pose and CTF pickles).

Everything derives from a crop of the map shipped in the package; files are written with
fixed timestamps and UUIDs where a format stores one, and the neural fits run a fixed number
of steps with a fixed learning rate on one CPU thread, so that a rebuild gives the same bytes
— except the hybrid file with a residual field, whose field fit is bounded by time (the
hybrid method offers no step count for it). The manifest records every file's SHA-256 so
that a reproducer names the exact corpus; the cache key covers the voxfield version and
this module's source, so a changed recipe builds a new corpus.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when the corpus recipe changes (part of the cache key).
CORPUS_RECIPE = 3
#: Neural fits: fixed steps and learning rate (no range test), CPU.
NEURAL = ["--device", "cpu", "--no-check", "--seed", "0"]
#: Operations (see :mod:`voxfield.bench.fuzz_ops`) by target kind.
VXF_OPS = ("decompress-npy", "decompress-mrc", "decompress-tif", "decompress-h5", "decompress-zarr",
           "decompress-noout", "info", "info-json", "decode-roi", "decode-slice", "decode-step", "decode-coords",
           "api-full", "api-roi", "api-plane")
INPUT_OPS = ("info", "compress-zstd")
PARTICLE_OPS = ("particles",)


@dataclass
class Seed:
    """One seed: a folder holding an entry file (or folder) and its companions."""

    name: str
    family: str  # row of the outcome table, e.g. "vxf:sci", "in:mrc", "particles:star"
    kind: str  # "vxf", "input" or "particles"
    entry: str  # path passed to the operation, relative to the seed folder
    mutables: dict[str, str]  # relative path -> file type ("vxf", "mrc", "mrcgz", "npy", ...)
    ops: list[str]
    refs: dict[str, str] = field(default_factory=dict)  # member ("" or "1", "2") -> reference .npy
    shape: list[int] = field(default_factory=list)
    axes: str = ""
    members: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    """The built corpus: its folder, seeds and what could not be built."""

    root: Path
    key: str
    seeds: list[Seed]
    skipped: dict[str, str]
    sha256: dict[str, str]
    build_seconds: float

    def seed(self, name: str) -> Seed:
        for s in self.seeds:
            if s.name == name:
                return s
        raise KeyError(name)

    def path(self, seed: Seed, rel: str | None = None) -> Path:
        return self.root / "seeds" / seed.name / (seed.entry if rel is None else rel)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "seeds": [asdict(s) for s in self.seeds], "skipped": self.skipped,
                "sha256": self.sha256, "build_seconds": self.build_seconds}

    @classmethod
    def from_json(cls, root: Path, d: dict[str, Any]) -> Corpus:
        return cls(root, d["key"], [Seed(**s) for s in d["seeds"]], d.get("skipped", {}), d.get("sha256", {}),
                   float(d.get("build_seconds", 0.0)))


# ----------------------------------------------------------------------------- MRC writer
_MRC_MODES = {np.dtype("int8"): 0, np.dtype("int16"): 1, np.dtype("float32"): 2, np.dtype("uint16"): 6,
              np.dtype("float16"): 12}


def mrc_bytes(data: np.ndarray, voxel: float = 1.05, origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
              ispg: int = 1, label: str = "voxfield fuzz seed") -> bytes:
    """A minimal MRC2014 file (no timestamp, so byte-for-byte reproducible). ``data`` is
    (Z, Y, X) or (Y, X); ``ispg`` 0 marks an image stack."""
    a = np.ascontiguousarray(data)
    if a.ndim == 2:
        a = a[None]
    nz, ny, nx = a.shape
    mode = _MRC_MODES[a.dtype]
    h = bytearray(1024)
    struct.pack_into("<4i", h, 0, nx, ny, nz, mode)
    struct.pack_into("<3i", h, 16, 0, 0, 0)
    struct.pack_into("<3i", h, 28, nx, ny, nz if ispg else 1)
    struct.pack_into("<6f", h, 40, nx * voxel, ny * voxel, (nz if ispg else 1) * voxel, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, 1, 2, 3)
    f = a.astype(np.float64)
    struct.pack_into("<3f", h, 76, float(f.min()), float(f.max()), float(f.mean()))
    struct.pack_into("<2i", h, 88, ispg, 0)
    struct.pack_into("<i", h, 108, 20140)
    struct.pack_into("<3f", h, 196, *origin)
    h[208:212] = b"MAP "
    h[212:216] = b"\x44\x44\x00\x00"
    struct.pack_into("<f", h, 216, float(f.std()))
    struct.pack_into("<i", h, 220, 1)
    lab = label.encode("ascii")[:80]
    h[224:224 + len(lab)] = lab
    return bytes(h) + a.astype(a.dtype.newbyteorder("<")).tobytes()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive with fixed timestamps (``np.savez`` stamps the current time)."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    """The ``.npy`` serialisation of ``arr``."""
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------- sources
def source_arrays() -> dict[str, np.ndarray]:
    """The deterministic arrays every seed is made from (crops of the shipped map)."""
    from voxfield.data import example_map_path
    from voxfield.io import read_volume

    m = np.asarray(read_volume(example_map_path()).data, dtype=np.float32)
    main = np.ascontiguousarray(m[20:44, 20:44, 20:44])
    small = np.ascontiguousarray(m[24:40, 24:40, 24:40])
    lo, hi = float(small.min()), float(small.max())
    u16 = np.round((small - lo) / (hi - lo) * 4000).astype(np.uint16)
    return {
        "main": main,  # 24^3 float32
        "small": small,  # 16^3 float32
        "img2d": np.ascontiguousarray(m[8:56, 8:56, 8:56].max(axis=0)),  # 48x48
        "multi": np.ascontiguousarray(np.stack([small, m[26:42, 26:42, 26:42]])),  # CZYX 2x16^3
        "u16": u16,
        "u8c": np.ascontiguousarray(np.stack([u16 // 16, (4000 - u16) // 16]).astype(np.uint8)),
        "bool": small > np.float32(np.percentile(small, 70)),
        "f16": small.astype(np.float16),
        "const": np.full((16, 16, 16), 0.25, np.float32),
    }


def settings_hash() -> str:
    """Hash of everything that decides the corpus content."""
    import voxfield

    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    text = json.dumps({"recipe": CORPUS_RECIPE, "source": source, "version": voxfield.__version__, "neural": NEURAL,
                       "ops": [VXF_OPS, INPUT_OPS, PARTICLE_OPS]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """``$VOXFIELD_FUZZ_CACHE`` or ``<temp>/voxfield-fuzz-corpus``."""
    env = os.environ.get("VOXFIELD_FUZZ_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "voxfield-fuzz-corpus"


@contextmanager
def _quiet() -> Iterator[None]:
    import io

    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextmanager
def _prefer_residual(x: np.ndarray) -> Iterator[None]:
    """Make the hybrid encoder keep its residual candidate (for a seed that exercises the
    residual decoder; on this tiny input the prior alone usually scores better)."""
    from voxfield.compress import container, hybrid

    orig = getattr(hybrid, "_decode_candidate", None)
    if orig is None:
        yield
        return

    def patched(blob: bytes) -> np.ndarray:
        with container.VxfReader(blob) as r:
            residual = r.header.get("method", {}).get("residual")
        return x if residual not in (None, "none") else orig(blob)

    hybrid._decode_candidate = patched  # type: ignore[attr-defined]
    try:
        yield
    finally:
        hybrid._decode_candidate = orig  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- builders
def _write_inputs(src: Path, arrays: dict[str, np.ndarray]) -> None:
    """Every input file the seeds are made from, in ``src``."""
    from voxfield.io import Volume, write_volume

    src.mkdir(parents=True, exist_ok=True)
    (src / "main.mrc").write_bytes(mrc_bytes(arrays["main"], origin=(12.0, 6.0, -3.0)))
    (src / "small.mrc").write_bytes(mrc_bytes(arrays["small"]))
    (src / "const.mrc").write_bytes(mrc_bytes(arrays["const"]))
    (src / "main.mrc.gz").write_bytes(gzip.compress(mrc_bytes(arrays["small"]), mtime=0))
    (src / "int16.mrc").write_bytes(mrc_bytes((arrays["small"] * 1000).astype(np.int16)))
    (src / "img2d.npy").write_bytes(npy_bytes(arrays["img2d"]))
    (src / "multi.npy").write_bytes(npy_bytes(arrays["multi"]))
    (src / "small.npy").write_bytes(npy_bytes(arrays["small"]))
    (src / "bool.npy").write_bytes(npy_bytes(arrays["bool"]))
    (src / "f16.npy").write_bytes(npy_bytes(arrays["f16"]))
    (src / "small.npz").write_bytes(_zip_bytes({"data.npy": npy_bytes(arrays["small"]),
                                                "extra.npy": npy_bytes(np.arange(3))}))
    with _quiet():
        write_volume(Volume(arrays["u16"], "ZYX", (0.2, 0.1, 0.1), "µm"), src / "u16.tif", overwrite=True)
        write_volume(Volume(arrays["u8c"], "CZYX", (0.3, 0.1, 0.1), "µm"), src / "u8c.ome.tif", overwrite=True)
        write_volume(Volume(arrays["small"], "ZYX", (1.05,) * 3, "Å", (1.0, 2.0, 3.0)), src / "small.h5",
                     overwrite=True)
        write_volume(Volume(arrays["u16"], "ZYX", (0.2, 0.1, 0.1), "µm"), src / "u16.ome.zarr", overwrite=True)
    _fix_bytes(src / "u8c.ome.tif", rb'urn:uuid:[0-9a-f-]{36}', b"urn:uuid:00000000-0000-0000-0000-000000000000")


def _fix_bytes(path: Path, pattern: bytes, repl: bytes) -> None:
    """Replace a run-time stamp (a UUID, a clock time) by a fixed text of the same length."""
    import re

    data = path.read_bytes()
    path.write_bytes(re.sub(pattern, lambda m: repl[: len(m.group(0))].ljust(len(m.group(0)), b"0"), data))


def _particles(dst: Path, arrays: dict[str, np.ndarray]) -> dict[str, Seed]:
    """STAR + MRCS, cryoSPARC .cs and cryoDRGN pickles describing 6 images of 16x16."""
    from voxfield.reconstruct.particles import write_cryodrgn_pkls
    from voxfield.reconstruct.star_io import write_relion31_star

    n, d = 6, 16
    imgs = np.stack([arrays["small"][i * 2] for i in range(n)]).astype(np.float32)
    rng = np.random.default_rng(7)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]).transpose(2, 0, 1)
    trans = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    ctf = np.zeros((n, 9), np.float32)
    ctf[:, 0], ctf[:, 1], ctf[:, 2], ctf[:, 3] = d, 1.05, 15000, 14500
    ctf[:, 4], ctf[:, 5], ctf[:, 6], ctf[:, 7] = 30, 300, 2.7, 0.1
    seeds: dict[str, Seed] = {}
    for name in ("star", "cs", "pkl"):
        (dst / f"particles-{name}").mkdir(parents=True, exist_ok=True)
        (dst / f"particles-{name}" / "stack.mrcs").write_bytes(mrc_bytes(imgs, ispg=0))
    with _quiet():
        for name in ("star", "pkl"):
            write_relion31_star(dst / f"particles-{name}" / "p.star", rot=rot, trans_px=trans, ctf=ctf, apix=1.05, D=d,
                                stack=("stack.mrcs", n))
        for name in ("star", "pkl"):
            _fix_bytes(dst / f"particles-{name}" / "p.star", rb"at [0-9:]{8} on [0-9/]{10}", b"at 00:00:00 on 01/01/2020")
        write_cryodrgn_pkls(dst / "particles-pkl" / "poses.pkl", dst / "particles-pkl" / "ctf.pkl", rot, trans, ctf, d)
    cs = np.zeros(n, dtype=[("uid", "<u8"), ("blob/path", "S16"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
                            ("blob/psize_A", "<f4"), ("alignments3D/pose", "<f4", (3,)),
                            ("alignments3D/shift", "<f4", (2,)), ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"),
                            ("ctf/df_angle_rad", "<f4"), ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"),
                            ("ctf/amp_contrast", "<f4")])
    cs["uid"] = np.arange(n) + 1000
    cs["blob/path"] = b">stack.mrcs"
    cs["blob/idx"] = np.arange(n)
    cs["blob/shape"] = d
    cs["blob/psize_A"] = 1.05
    cs["alignments3D/pose"] = rng.normal(size=(n, 3))
    cs["alignments3D/shift"] = trans
    cs["ctf/df1_A"], cs["ctf/df2_A"], cs["ctf/accel_kv"], cs["ctf/cs_mm"] = 15000, 14500, 300, 2.7
    cs["ctf/amp_contrast"] = 0.1
    (dst / "particles-cs" / "p.cs").write_bytes(npy_bytes(cs))
    seeds["particles-star"] = Seed("particles-star", "particles:star", "particles", "p.star",
                                   {"p.star": "star", "stack.mrcs": "mrc"}, list(PARTICLE_OPS))
    seeds["particles-cs"] = Seed("particles-cs", "particles:cs", "particles", "p.cs",
                                 {"p.cs": "cs", "stack.mrcs": "mrc"}, list(PARTICLE_OPS))
    seeds["particles-pkl"] = Seed("particles-pkl", "particles:pkl", "particles", "p.star",
                                  {"poses.pkl": "pkl", "ctf.pkl": "pkl"}, list(PARTICLE_OPS),
                                  extra={"poses": "poses.pkl", "ctf": "ctf.pkl"})
    return seeds


def _input_seeds() -> list[tuple[str, str, str, str]]:
    """(seed name, family, source file, file type) of the input-format seeds."""
    return [("in-mrc", "in:mrc", "main.mrc", "mrc"), ("in-mrc-int16", "in:mrc", "int16.mrc", "mrc"),
            ("in-mrcgz", "in:mrc.gz", "main.mrc.gz", "mrcgz"), ("in-tif", "in:tiff", "u16.tif", "tiff"),
            ("in-ometif", "in:ome-tiff", "u8c.ome.tif", "tiff"), ("in-npy", "in:npy", "small.npy", "npy"),
            ("in-npy-bool", "in:npy", "bool.npy", "npy"), ("in-npy-f16", "in:npy", "f16.npy", "npy"),
            ("in-npz", "in:npz", "small.npz", "npz"), ("in-h5", "in:hdf5", "small.h5", "h5"),
            ("in-zarr", "in:ome-zarr", "u16.ome.zarr", "zarr")]


def _vxf_recipes() -> list[tuple[str, str, list[str]]]:
    """(seed name, family, voxfield command line with {src} for the input folder)."""
    from voxfield.codecs.registry import available_codecs

    m, lr = "{src}/main.mrc", ["--set", "lr=0.001"]
    out: list[tuple[str, str, list[str]]] = []
    for c in available_codecs():
        lossless = c in ("raw", "gzip", "zstd")
        out.append((f"vxf-{c}", f"vxf:{c}", ["compress", m, "--codec", c, "--no-check"]
                    + ([] if lossless else ["--ratio", "8", "--tolerance", "0.2"])))
    for name, fname, fam in (("tif", "u16.tif", "zstd-tiff"), ("ometif", "u8c.ome.tif", "zstd-ome-tiff"),
                             ("h5", "small.h5", "zstd-hdf5"), ("zarr", "u16.ome.zarr", "zstd-ome-zarr"),
                             ("npz", "small.npz", "zstd-npz"),
                             ("f16", "f16.npy", "zstd-f16"), ("mrcgz", "main.mrc.gz", "zstd-mrc.gz"),
                             ("2d", "img2d.npy", "zstd-2d"), ("4d", "multi.npy", "zstd-4d")):
        out.append((f"vxf-zstd-{name}", f"vxf:{fam}", ["compress", f"{{src}}/{fname}", "--codec", "zstd",
                                                       "--no-check"]))
    out += [
        ("vxf-sci", "vxf:sci", ["compress", m, "--method", "sci", "--ratio", "8", "--steps", "20", "--set",
                                "max_blocks=4", "--set", "min_block_params=0", *lr, *NEURAL]),
        ("vxf-siren", "vxf:siren", ["compress", m, "--method", "siren", "--ratio", "8", "--steps", "20", *lr, *NEURAL]),
        ("vxf-grid", "vxf:grid", ["compress", m, "--method", "grid", "--ratio", "8", "--steps", "20", *NEURAL]),
        ("vxf-cryo-pe", "vxf:cryo-pe", ["compress", m, "--method", "cryo-pe", "--ratio", "8", "--steps", "20",
                                        *NEURAL]),
        ("vxf-sci-2d", "vxf:sci-2d", ["compress", "{src}/img2d.npy", "--method", "sci", "--ratio", "4", "--steps",
                                      "10", "--set", "max_blocks=4", "--set", "min_block_params=0", *lr, *NEURAL]),
        ("vxf-grid-2d", "vxf:grid-2d", ["compress", "{src}/img2d.npy", "--method", "grid", "--ratio", "4",
                                        "--steps", "10", *NEURAL]),
        ("vxf-siren-4d", "vxf:siren-4d", ["compress", "{src}/multi.npy", "--axes", "CZYX", "--method", "siren",
                                          "--ratio", "4", "--steps", "10", *lr, *NEURAL]),
        ("vxf-sci-4d", "vxf:sci-4d", ["compress", "{src}/multi.npy", "--axes", "CZYX", "--method", "sci",
                                      "--ratio", "4", "--steps", "10", "--set", "max_blocks=4", "--set",
                                      "min_block_params=0", *lr, *NEURAL]),
        ("vxf-const", "vxf:sci-constant", ["compress", "{src}/const.mrc", "--method", "sci", "--ratio", "8",
                                           "--steps", "5", *lr, *NEURAL]),
        ("vxf-ebound-sz3", "vxf:ebound-sz3", ["compress", m, "--codec", "sz3", "--max-error", "0.01", "--no-check"]),
        ("vxf-ebound-jpeg2k", "vxf:ebound-jpeg2k", ["compress", m, "--codec", "jpeg2k", "--max-error", "0.01",
                                                    "--ratio", "8", "--no-check"]),
        ("vxf-ebound-siren", "vxf:ebound-siren", ["compress", m, "--method", "siren", "--ratio", "8", "--steps", "10",
                                                  "--max-error", "0.05", *lr, *NEURAL]),
        ("vxf-set", "vxf:cryo-pe-set", ["compress-set", m, "{src}/small.npy", "--ratio", "8", "--steps", "10",
                                        *NEURAL]),
    ]
    return out


def _hybrid_seeds(src: Path) -> list[tuple[str, str, Callable[[], bytes]]]:
    from voxfield.codecs.base import Target
    from voxfield.codecs.registry import available_codecs
    from voxfield.compress import hybrid
    from voxfield.io import read_volume

    have = available_codecs()
    prior = next((p for p in ("sz3", *hybrid.PRIORS) if p in have), "sz3")

    def make(ratio: float, **kw: Any) -> Callable[[], bytes]:
        def run() -> bytes:
            vol = read_volume(src / "main.mrc")
            cfg = hybrid.HybridConfig.make(prior, device="cpu", **kw)
            with _prefer_residual(np.asarray(vol.data)):
                return hybrid.compress_hybrid(vol, cfg, Target.ratio(ratio, 0.1))
        return run

    return [("vxf-hybrid-filter", "vxf:hybrid-filter", make(8.0, residual="filter", steps=10, time_budget=None)),
            ("vxf-hybrid-field", "vxf:hybrid-field", make(4.0, residual="field", fraction=0.5, field_method="siren",
                                                          field_time_budget=0.5))]


def _reference(vxf: Path, seed: Seed, folder: Path) -> None:
    """Decode ``vxf`` with the library and store the reference array(s) in ``folder``."""
    from voxfield.compress.api import decompress
    from voxfield.compress.container import VxfReader

    with VxfReader(vxf) as r:
        head = r.header
    members = head.get("method", {}).get("members") if head.get("method", {}).get("name") == "cryo-pe-set" else None
    keys = [str(k + 1) for k in range(len(members))] if isinstance(members, list) else [""]
    for k in keys:
        vol = decompress(vxf, int(k) if k else None)
        np.save(folder / f"ref{k}.npy", np.asarray(vol.data))
        seed.refs[k] = f"ref{k}.npy"
        if not seed.shape:
            seed.shape, seed.axes = list(vol.shape), vol.axes
    seed.members = len(keys) if keys != [""] else 0
    if seed.members:
        seed.extra["member_names"] = [str((m.get("volume") or {}).get("name", "")) for m in members]


def _sha_tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


def build_corpus(cache_dir: str | os.PathLike[str] | None = None, *, rebuild: bool = False,
                 log: Callable[[str], None] | None = None) -> Corpus:
    """Build (or load from the cache) the seed corpus; returns it. Safe against concurrent
    builders: a corpus is built in a temporary folder and renamed into place."""
    import torch

    from voxfield.cli.main import main

    key = settings_hash()
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = base / f"corpus-{key}"
    manifest = root / "manifest.json"
    if manifest.is_file() and not rebuild:
        return Corpus.from_json(root, json.loads(manifest.read_text()))
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=base))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        arrays = source_arrays()
        src, seeds_dir = work / "src", work / "seeds"
        _write_inputs(src, arrays)
        seeds: list[Seed] = []
        skipped: dict[str, str] = {}
        for name, fam, fname, ftype in _input_seeds():
            d = seeds_dir / name
            d.mkdir(parents=True)
            if (src / fname).is_dir():
                shutil.copytree(src / fname, d / fname)
                mut = {str(p.relative_to(d)): ("zarrjson" if p.suffix == ".json" or p.name.startswith(".z")
                                               else "zarrchunk") for p in sorted((d / fname).rglob("*")) if p.is_file()}
            else:
                shutil.copy2(src / fname, d / fname)
                mut = {fname: ftype}
            # voxfield compresses numeric data only: a bool array is refused by design
            extra = {"refuses": ["compress-zstd"]} if name == "in-npy-bool" else {}
            seeds.append(Seed(name, fam, "input", fname, mut, list(INPUT_OPS), extra=extra))
        seeds += list(_particles(seeds_dir, arrays).values())
        makers: list[tuple[str, str, Callable[[], bytes] | list[str]]] = [*_vxf_recipes(), *_hybrid_seeds(src)]
        for name, fam, how in makers:
            d = seeds_dir / name
            d.mkdir(parents=True)
            out = d / "m.vxf"
            t1 = time.perf_counter()
            try:
                with _quiet():
                    if callable(how):
                        out.write_bytes(how())
                        rc = 0
                    else:
                        rc = main([a.replace("{src}", str(src)) for a in how] + ["-o", str(out)])
                if rc != 0 or not out.is_file():
                    raise RuntimeError(f"exit code {rc}")
                seed = Seed(name, fam, "vxf", "m.vxf", {"m.vxf": "vxf"}, list(VXF_OPS))
                _reference(out, seed, d)
                seeds.append(seed)
                if log:
                    log(f"seed {name}: {out.stat().st_size} bytes, {time.perf_counter() - t1:.1f} s")
            except Exception as exc:  # noqa: BLE001 - a seed the install cannot make is skipped, not fatal
                skipped[name] = f"{type(exc).__name__}: {exc}"
                shutil.rmtree(d, ignore_errors=True)
                if log:
                    log(f"seed {name}: skipped ({skipped[name]})")
        for s in seeds:
            _restrict_ops(s)
        shutil.rmtree(src)
        corpus = Corpus(root, key, seeds, skipped, _sha_tree(seeds_dir), time.perf_counter() - t0)
        (work / "manifest.json").write_text(json.dumps(corpus.to_json(), indent=1))
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(work, root)
        except OSError:  # another builder won the race
            shutil.rmtree(work, ignore_errors=True)
        return Corpus.from_json(root, json.loads(manifest.read_text()))
    finally:
        torch.set_num_threads(threads)
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _restrict_ops(seed: Seed) -> None:
    """Drop operations a seed cannot take (MRC holds 2-D/3-D data only; slices need 2+ axes)."""
    if seed.kind != "vxf":
        return
    spatial = sum(a not in "CS" for a in seed.axes)
    if len(seed.shape) > 3 or spatial < 2:
        seed.ops = [o for o in seed.ops if o != "decompress-mrc"]
