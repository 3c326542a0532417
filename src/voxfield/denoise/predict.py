"""Tiled prediction on whole maps and the masking of the original map (``voxfield denoise``).

Pipeline (paper 003, Fig. 2; conventions of ANCHORS.md): resample to the 1 Å grid,
negatives to 0, divide by the 99.9th percentile of the nonzero voxels, clip to 1; cut into
``tile``^3 boxes (default 64) whose central ``core``^3 (default 50) parts tile the map
(zero padding outside it, so maps smaller than a tile work); predict each box, keep its
core; interpolate the structure probability back onto the *original* grid; voxels whose
probability is below the threshold are noise and are set to 0 in the original map. Boxes
whose input is all zero are not run (their voxels are noise by definition).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from voxfield.denoise.grid import from_work_grid, normalise, spacing_zyx, to_work_grid
from voxfield.denoise.unet import UNet3D
from voxfield.errors import DataError, OptionError

#: Thresholds of the paper (structure probability below it = noise), used when a weights
#: file carries none.
PAPER_THRESHOLDS = {"background": 0.035, "structural": 0.495}
MODES = ("background", "structural")


@dataclass
class Prediction:
    """Result of :func:`predict_map`.

    Attributes
    ----------
    work_input : the normalised map on the 1 Å grid.
    work_prob : structure probability on the 1 Å grid.
    prob : structure probability on the original grid.
    scale : the normalisation divisor (99.9th percentile of the nonzero voxels).
    tiles_run, tiles_total : boxes predicted / boxes covering the map.
    """

    work_input: np.ndarray
    work_prob: np.ndarray
    prob: np.ndarray
    scale: float
    tiles_run: int
    tiles_total: int


def tile_starts(n: int, core: int) -> list[int]:
    """Start indices of the cores along one axis of length ``n``."""
    return list(range(0, max(n, 1), core))


def predict_work(
    model: UNet3D,
    x: np.ndarray,
    *,
    tile: int = 64,
    core: int = 50,
    device: torch.device | str = "cpu",
    batch: int = 2,
    progress: Callable[[int, int], None] | None = None,
    resolution: float | None = None,
) -> tuple[np.ndarray, int, int]:
    """Structure probability of a normalised 1 Å map ``x`` by overlapping tiles;
    ``resolution`` (Å) is passed to a model with the resolution input (unknown when None).

    Returns ``(prob, tiles_run, tiles_total)``.
    """
    mult = model.config.multiple
    if tile % mult:
        raise OptionError(f"tile size must be a multiple of {mult}, got {tile}")
    if not 0 < core <= tile or (tile - core) % 2:
        raise OptionError(f"core must be in (0, tile] with an even margin, got core {core} for tile {tile}")
    margin = (tile - core) // 2
    shp = x.shape
    starts = [tile_starts(n, core) for n in shp]
    padded_shape = tuple(len(s) * core + 2 * margin for s in starts)
    pad = np.zeros(padded_shape, np.float32)
    pad[margin : margin + shp[0], margin : margin + shp[1], margin : margin + shp[2]] = x
    prob = np.zeros(tuple(len(s) * core for s in starts), np.float32)
    jobs = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
    todo = [j for j in jobs if pad[j[0] : j[0] + tile, j[1] : j[1] + tile, j[2] : j[2] + tile].any()]
    dev = torch.device(device)
    model.eval()
    done = len(jobs) - len(todo)
    if progress:
        progress(done, len(jobs))
    with torch.inference_mode():
        for i in range(0, len(todo), batch):
            group = todo[i : i + batch]
            t = torch.from_numpy(np.stack([pad[a : a + tile, b : b + tile, c : c + tile] for a, b, c in group]))
            r = torch.full((len(group),), float("nan") if resolution is None else float(resolution))
            p = torch.sigmoid(model(t[:, None].to(dev), r))[:, 0].cpu().numpy()
            for (a, b, c), pj in zip(group, p):
                prob[a : a + core, b : b + core, c : c + core] = pj[margin : margin + core, margin : margin + core,
                                                                   margin : margin + core]
            done += len(group)
            if progress:
                progress(done, len(jobs))
    return prob[: shp[0], : shp[1], : shp[2]], len(todo), len(jobs)


def predict_map(
    model: UNet3D,
    data: np.ndarray,
    spacing: float | Sequence[float],
    *,
    tile: int = 64,
    core: int = 50,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    resolution: float | None = None,
) -> Prediction:
    """Structure probability of every voxel of a 3-D map (module docstring); the map's
    ``resolution`` (Å) is an input of resolution-aware weights."""
    a = np.asarray(data)
    if a.ndim != 3:
        raise DataError(f"denoising needs a 3-D map, got shape {a.shape}")
    if min(a.shape) < 1:
        raise DataError(f"the map is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise DataError("the map holds NaN or Inf values")
    sp = spacing_zyx(spacing)
    work = to_work_grid(a, sp)
    x, scale = normalise(work)
    if scale == 0:
        raise DataError("the map has no positive voxel (all zero or negative): nothing to denoise")
    wprob, run, total = predict_work(model, x, tile=tile, core=core, device=device, progress=progress,
                                     resolution=resolution)
    prob = from_work_grid(wprob, a.shape, sp)
    return Prediction(work_input=x, work_prob=wprob, prob=prob, scale=scale, tiles_run=run, tiles_total=total)


#: Background-mode threshold for maps at :data:`LOW_RES_FROM` Å and worse: the mean of the
#: G-mean-best thresholds on the validation models' simulated maps (4E43 and 1OSM at 10, 15
#: and 20 Å: 0.76, 0.65, 0.85 and 0.79, 0.88, 0.88), where the weights' own background
#: threshold (chosen at 2.5-10 Å) keeps too much blurred noise.
LOW_RES_BACKGROUND_THRESHOLD = 0.80
LOW_RES_FROM = 10.0


def resolve_threshold(meta: dict[str, Any], mode: str, threshold: float | None,
                      resolution: float | None = None) -> float:
    """The threshold to use: ``threshold`` when given; else, for weights with thresholds per
    resolution band (``thresholds_by_resolution``: the G-mean thresholds of validation maps
    in each band) and a known ``resolution``, the band's; else the weights' G-mean threshold
    for ``mode`` (the paper's 0.035 / 0.495 when the weights carry none), except that weights
    without bands use :data:`LOW_RES_BACKGROUND_THRESHOLD` in background mode at
    :data:`LOW_RES_FROM` Å and worse."""
    if mode not in MODES:
        raise OptionError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if threshold is not None:
        t = float(threshold)
        if not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise OptionError(f"--threshold must be a probability in [0, 1], got {threshold!r}")
        return t
    known = resolution is not None and math.isfinite(resolution) and resolution > 0
    bands = meta.get("thresholds_by_resolution")
    if bands:
        if known:
            for band in bands:
                if resolution <= float(band["max_resolution"]):
                    return float(band[mode])
            return float(bands[-1][mode])
    elif mode == "background" and known and resolution >= LOW_RES_FROM:
        return LOW_RES_BACKGROUND_THRESHOLD
    return float(meta.get("thresholds", {}).get(mode, PAPER_THRESHOLDS[mode]))


def apply_mask(data: np.ndarray, prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(denoised map, structure mask)``: voxels with probability below ``threshold`` set
    to 0, the others unchanged (same dtype as ``data``)."""
    keep = np.asarray(prob) >= threshold
    out = np.where(keep, data, np.zeros((), dtype=np.asarray(data).dtype)).astype(np.asarray(data).dtype, copy=False)
    return out, keep
