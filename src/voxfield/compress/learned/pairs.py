"""Training pairs for the learned prior: (original, classic-codec decode) volumes.

* **cryoem**: maps simulated from atomic models (:func:`voxfield.denoise.simulate.simulate_sample`:
  molmap-style Gaussians with varying local order, coloured noise, dust, belts, ice and
  masks) at 2–20 Å, resampled to 1–(R/3) Å voxels, plus real maps given as files;
* **microscopy**: crops of real volumes and images (3-D crops, and 2-D images as depth-1
  volumes).

Each volume is encoded by every available codec family at a ratio drawn log-uniformly
in ``ratios`` (16–1024 by default), and decoded. Everything is seeded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi

from voxfield.errors import TargetNotMet, VoxfieldError

#: Ratio range of the training decodes.
RATIOS = (16.0, 1024.0)
#: Codec families encoded for each training volume.
TRAIN_CODECS = ("sperr", "hevc", "jpegxl", "jpeg2k", "sz3", "zfp")


@dataclass
class Pair:
    """An original (float32) and one codec's decode of it, with the codec family, the bits
    per voxel it spent and where the original came from."""

    original: np.ndarray
    decode: np.ndarray
    family: str
    bits_per_voxel: float
    source: str
    info: dict = field(default_factory=dict)


def codec_pairs(x: np.ndarray, rng: np.random.Generator, source: str, *,
                codecs: Sequence[str] = TRAIN_CODECS, ratios: tuple[float, float] = RATIOS) -> list[Pair]:
    """Encode ``x`` (its own dtype) with each codec at a random ratio and decode it."""
    from voxfield.codecs import Target, available_codecs, get_codec

    have = set(available_codecs())
    out = []
    orig = x.astype(np.float32)
    for name in codecs:
        if name not in have:
            continue
        r = float(math.exp(rng.uniform(math.log(ratios[0]), math.log(ratios[1]))))
        codec = get_codec(name)
        try:
            payload = codec.encode(x, Target.ratio(r, rtol=0.2))
        except TargetNotMet as exc:
            if exc.best is None:
                continue
            payload = exc.best
        except VoxfieldError:
            continue  # the codec does not take this shape or dtype
        dec = codec.decode(payload).astype(np.float32)
        if dec.shape != x.shape or not np.isfinite(dec).all():
            continue
        out.append(Pair(orig, dec, name, 8.0 * len(payload) / x.size, source, {"ratio": x.nbytes / len(payload)}))
    return out


def simulated_maps(model_paths: Sequence[str | os.PathLike[str]], n: int, rng: np.random.Generator, *,
                   resolution: tuple[float, float] = (2.0, 20.0), box: int = 64) -> Iterable[tuple[np.ndarray, str]]:
    """``n`` simulated maps (float32 cubes of about ``box``), cycling over the models."""
    from voxfield.denoise.molmap import read_atoms
    from voxfield.denoise.simulate import SimConfig, simulate_sample

    atoms = [read_atoms(p) for p in model_paths]
    for i in range(n):
        a = atoms[i % len(atoms)]
        R = float(math.exp(rng.uniform(math.log(resolution[0]), math.log(resolution[1]))))
        # voxel size: 1 Å up to R/3 Å (maps are sampled at 1/2 to 1/4 of their resolution)
        vox = float(rng.uniform(1.0, max(1.0, R / 3.0)))
        big = int(min(128, math.ceil(box * vox / 2) * 2))
        s = simulate_sample(a, rng, SimConfig(box=big, resolution=(R, R)))
        m = s.raw if s.raw is not None else s.x
        if vox > 1.0:
            m = ndi.zoom(m, 1.0 / vox, order=1)
        yield np.ascontiguousarray(m.astype(np.float32)), f"sim:{a.name}@{R:.1f}A/{vox:.2f}A"


def random_crops(x: np.ndarray, n: int, rng: np.random.Generator, edge: int) -> list[np.ndarray]:
    """``n`` random crops of at most ``edge`` per axis of a 3-D array (2-D: depth 1)."""
    if x.ndim == 2:
        x = x[None]
    out = []
    for _ in range(n):
        sl = []
        for s in x.shape:
            e = min(s, edge)
            a = int(rng.integers(0, s - e + 1))
            sl.append(slice(a, a + e))
        out.append(np.ascontiguousarray(x[tuple(sl)]))
    return out


def make_pairs(volumes: Iterable[tuple[np.ndarray, str]], rng: np.random.Generator, *,
               progress: Callable[[int], None] | None = None, **kw: object) -> list[Pair]:
    """Codec pairs of every volume (see :func:`codec_pairs`)."""
    out: list[Pair] = []
    for i, (x, src) in enumerate(volumes):
        if x.size < 512 or float(x.max()) == float(x.min()):
            continue
        out.extend(codec_pairs(x, rng, src, **kw))  # type: ignore[arg-type]
        if progress:
            progress(i + 1)
    return out
