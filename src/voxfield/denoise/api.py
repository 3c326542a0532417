"""``denoise``: one call from a map to its cleaned version (the ``voxfield denoise``
command is a thin layer over it)."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import OptionError
from voxfield.io.volume import Volume, with_voxel_size

#: Resolutions (Å) of the maps the shipped weights were trained on.
TRAINED_RANGE = (2.5, 10.0)


@dataclass
class DenoiseResult:
    """A denoised map (``volume``; on the original grid unless ``keep_grid=False``), the
    structure ``mask`` and ``probability`` on the same grid, the threshold used, the share
    of positive voxels set to 0, and how the prediction ran."""

    volume: Volume
    mask: np.ndarray
    probability: np.ndarray
    threshold: float
    removed_fraction: float
    tiles_run: int
    tiles_total: int
    device: str
    seconds: float


def prepare_map(vol: Volume, apix: float | None = None, name: Any = None) -> Volume:
    """A 3-D map with its voxel size in Å (``apix`` overrides the header; nm converted),
    finite values; otherwise :class:`OptionError` naming ``name``."""
    where = f"{name}: " if name is not None else ""
    if vol.data.ndim != 3:
        raise OptionError(f"{where}a 3-D map is needed, got shape {vol.data.shape}")
    if apix is not None:
        if not math.isfinite(apix) or apix <= 0:
            raise OptionError(f"--apix must be > 0 Å, got {apix}")
        vol = with_voxel_size(vol, apix)
    sp = np.asarray(vol.spacing, dtype=float)
    if vol.unit == "nm":
        vol = Volume(vol.data, vol.axes, tuple(float(s) * 10 for s in sp), "Å",
                     tuple(float(o) * 10 for o in vol.origin), vol.meta)
    elif vol.unit not in ("Å",) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise OptionError(f"{where}the voxel size is unknown ({list(sp)} {vol.unit}); give it in Å with --apix")
    if not np.all(np.isfinite(vol.data)):
        raise OptionError(f"{where}the map holds NaN or Inf values")
    return vol


def check_resolution(resolution: float | None) -> None:
    """Refuse a resolution that is not a positive number; warn outside the trained range."""
    if resolution is None:
        return
    if not math.isfinite(resolution) or resolution <= 0:
        raise OptionError(f"--resolution must be > 0 Å, got {resolution}")
    lo, hi = TRAINED_RANGE
    if not lo <= resolution <= hi:
        warnings.warn(f"resolution {resolution:g} Å is outside the trained range {lo:g}-{hi:g} Å; "
                      "the result may be unreliable", stacklevel=3)


def denoise(data: Volume | str | os.PathLike[str], *, mode: str = "background", threshold: float | None = None,
            apix: float | None = None, resolution: float | None = None,
            weights: str | os.PathLike[str] | None = None, device: str = "auto", keep_grid: bool = True,
            progress: Callable[[int, int], None] | None = None) -> DenoiseResult:
    """Classify every voxel of a cryo-EM map as structure or noise with the 3D U-Net and
    set the noise voxels to 0.

    ``data``: a map file or a :class:`Volume`. ``mode``: ``"background"`` (dust and noise
    only) or ``"structural"`` (also micelles, ice, unresolved density); ``threshold``
    overrides the mode's G-mean threshold stored with the weights. ``apix``: voxel size in
    Å for maps whose header has none. ``resolution`` (Å) is only checked against
    :data:`TRAINED_RANGE`. ``weights``: a weights file (default: the shipped model).
    ``keep_grid=False`` returns the result on the 1 Å working grid.
    ``progress(done, total)`` reports tiles."""
    from voxfield.compress.neural import resolve_device
    from voxfield.denoise.predict import apply_mask, predict_map, resolve_threshold
    from voxfield.denoise.unet import default_weights_path, load_weights
    from voxfield.io import read_volume

    check_resolution(resolution)
    name = None
    if not isinstance(data, Volume):
        name = Path(data)
        data = read_volume(data)
    vol = prepare_map(data, apix, name)
    dev = resolve_device(device)
    model, meta = load_weights(weights if weights is not None else default_weights_path(), dev)
    t = resolve_threshold(meta, mode, threshold)
    t0 = time.perf_counter()
    pred = predict_map(model, vol.data, vol.spacing, device=dev, progress=progress)
    if keep_grid:
        den, keep = apply_mask(vol.data, pred.prob, t)
        prob, base = pred.prob, vol
    else:
        from voxfield.denoise.grid import to_work_grid

        work = to_work_grid(vol.data, vol.spacing)
        den, keep = apply_mask(work, pred.work_prob, t)
        prob = pred.work_prob
        base = Volume(work, vol.axes, (1.0, 1.0, 1.0), "Å", vol.origin, vol.meta)
    nz = np.asarray(vol.data) > 0
    removed = float((nz & ~(pred.prob >= t)).sum()) / max(1, int(nz.sum()))
    return DenoiseResult(base.with_data(den), keep, prob, float(t), removed, pred.tiles_run, pred.tiles_total,
                         dev.type, time.perf_counter() - t0)
