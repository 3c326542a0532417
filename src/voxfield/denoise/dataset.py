"""Training datasets on disk: shards of simulated cubes (``make-dataset``) and loading them.

A dataset folder holds ``shard_NNN.npz`` files (``x``: float16 (n, D, D, D) normalised
inputs, ``label``: bit-packed bool structure labels) and ``dataset.json`` (the models used,
the simulator configuration, the seed and one ``info`` record per sample).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from voxfield.denoise.molmap import Atoms, read_atoms
from voxfield.denoise.simulate import SimConfig, simulate_sample
from voxfield.errors import FormatError, OptionError

MODEL_SUFFIXES = (".pdb", ".cif", ".ent", ".mmcif", ".pdb.gz", ".cif.gz", ".ent.gz")


def model_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (their PDB/mmCIF files, sorted) into a list of model files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(MODEL_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise FormatError("model file or folder not found", p)
    if not out:
        raise OptionError("no PDB/mmCIF model files given")
    return out


def make_dataset(
    models: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    n_samples: int,
    seed: int = 0,
    config: SimConfig = SimConfig(),
    shard_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate ``n_samples`` cubes, cycling over ``models`` (files or folders), into
    ``out_dir`` (created; existing shards are replaced). Deterministic for a given seed."""
    if n_samples < 1:
        raise OptionError(f"--samples must be >= 1, got {n_samples}")
    files = model_files(models)
    atoms: list[Atoms] = [read_atoms(f) for f in files]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard_*.npz"):
        old.unlink()
    rng = np.random.default_rng(seed)
    infos: list[dict] = []
    xs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    shard = 0

    def flush() -> None:
        nonlocal shard, xs, labels
        if not xs:
            return
        tmp = out / f".shard_{shard:03d}.tmp.npz"
        np.savez(tmp, x=np.stack(xs).astype(np.float16), label=np.packbits(np.stack(labels), axis=-1),
                 box=np.int64(config.box))
        os.replace(tmp, out / f"shard_{shard:03d}.npz")
        shard += 1
        xs, labels = [], []

    for i in range(n_samples):
        s = simulate_sample(atoms[i % len(atoms)], rng, config)
        xs.append(s.x)
        labels.append(s.label)
        infos.append(s.info)
        if len(xs) == shard_size:
            flush()
        if progress:
            progress(i + 1, n_samples)
    flush()
    meta = {"models": [f.name for f in files], "seed": seed, "n_samples": n_samples,
            "config": asdict(config), "samples": infos}
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return out


def load_dataset(folder: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """All shards of a dataset folder: ``x`` float16 (n, D, D, D), ``label`` bool, metadata."""
    d = Path(folder)
    shards = sorted(d.glob("shard_*.npz"))
    if not shards:
        raise FormatError("no dataset shards (shard_*.npz) found; run `voxfield denoise make-dataset`", d)
    xs, ls = [], []
    for s in shards:
        try:
            with np.load(s) as z:
                x = z["x"]
                lab = np.unpackbits(z["label"], axis=-1, count=x.shape[-1]).astype(bool)
        except (OSError, KeyError, ValueError) as e:
            raise FormatError(f"corrupt dataset shard: {e}", s) from None
        xs.append(x)
        ls.append(lab)
    meta = json.loads((d / "dataset.json").read_text()) if (d / "dataset.json").exists() else {}
    return np.concatenate(xs), np.concatenate(ls), meta
