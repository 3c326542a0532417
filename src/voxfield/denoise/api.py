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

#: Resolutions (Å) of the training maps of weights that do not record theirs (``unet_v1``).
TRAINED_RANGE = (2.5, 10.0)


def trained_range(meta: dict[str, Any] | None) -> tuple[float, float]:
    """The resolution range (Å) the weights were trained on, from their metadata
    (``training.resolution_range``), else :data:`TRAINED_RANGE`."""
    r = ((meta or {}).get("training") or {}).get("resolution_range")
    return (float(r[0]), float(r[1])) if r else TRAINED_RANGE


@dataclass
class DenoiseResult:
    """A denoised map (``volume``; on the original grid unless ``keep_grid=False``), the
    structure ``mask`` and ``probability`` on the same grid, the threshold used, the share
    of positive voxels set to 0, and how the prediction ran; the contour level (and where
    it came from), the share of the voxels above it set to 0, and how many voxels the
    structure protection kept (:func:`protect_structure`)."""

    volume: Volume
    mask: np.ndarray
    probability: np.ndarray
    threshold: float
    removed_fraction: float
    tiles_run: int
    tiles_total: int
    device: str
    seconds: float
    contour: float | None = None
    contour_source: str = ""
    removed_above_contour: float | None = None
    protected_voxels: int = 0


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


#: Density above the contour and connected to the main structure is removed only where
#: the network's structure probability is below this (it is confident it is noise).
CONFIDENT_NOISE = 0.05
#: Pieces above the contour holding at least this share of the largest piece's voxels
#: count as the main structure (several subunits may be separate at the contour).
MAIN_PIECE_SHARE = 0.1


def protect_structure(data: np.ndarray, prob: np.ndarray, keep: np.ndarray, level: float,
                      keep_above: float | None = None) -> np.ndarray:
    """The structure mask ``keep`` with the main structure protected: voxels above
    ``level`` in a piece of at least :data:`MAIN_PIECE_SHARE` of the largest piece are
    kept unless the probability is below :data:`CONFIDENT_NOISE`; with ``keep_above``,
    every voxel above that level is kept whatever the network says."""
    from scipy import ndimage

    out = keep.copy()
    above = np.asarray(data) > level
    labels, n = ndimage.label(above)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        main = np.zeros(n + 1, dtype=bool)
        main[1:] = sizes >= MAIN_PIECE_SHARE * sizes.max()
        out |= main[labels] & (np.asarray(prob) >= CONFIDENT_NOISE)
    if keep_above is not None:
        out |= np.asarray(data) > keep_above
    return out


def recommended_contour(data: np.ndarray, spacing: Any, contour: float | None, mass_kda: float | None
                        ) -> tuple[float, str]:
    """``(level, source)``: the given ``contour`` (e.g. the deposited one), else the level
    enclosing ``mass_kda`` at 1.21 Da/Å^3, else the automatic contour (connectivity rule)."""
    from voxfield.metrics.cryoem import auto_contour, mass_contour

    if contour is not None and mass_kda is not None:
        raise OptionError("give --contour or --mass, not both")
    if contour is not None:
        if not math.isfinite(contour):
            raise OptionError(f"--contour must be a number, got {contour}")
        return float(contour), "given"
    if mass_kda is not None:
        return mass_contour(data, spacing, mass_kda), f"encloses {mass_kda:g} kDa"
    return float(auto_contour(data, spacing)), "automatic"


def require_resolution(resolution: float | None) -> None:
    """Refuse a resolution that is given but is not a positive number of Å."""
    if resolution is not None and (not math.isfinite(resolution) or resolution <= 0):
        raise OptionError(f"--resolution must be > 0 Å, got {resolution}")


def check_resolution(resolution: float | None, meta: dict[str, Any] | None = None) -> None:
    """:func:`require_resolution`, and a warning outside the range the weights (``meta``)
    were trained on."""
    require_resolution(resolution)
    if resolution is None:
        return
    lo, hi = trained_range(meta)
    if not lo <= resolution <= hi:
        warnings.warn(f"resolution {resolution:g} Å is outside the trained range {lo:g}-{hi:g} Å; "
                      "the result may be unreliable", stacklevel=3)


def denoise(data: Volume | str | os.PathLike[str], *, mode: str = "background", threshold: float | None = None,
            apix: float | None = None, resolution: float | None = None,
            weights: str | os.PathLike[str] | None = None, device: str = "auto", keep_grid: bool = True,
            progress: Callable[[int, int], None] | None = None, contour: float | None = None,
            mass_kda: float | None = None, keep_above: float | None = None, protect: bool = True) -> DenoiseResult:
    """Classify every voxel of a cryo-EM map as structure or noise with the 3D U-Net and
    set the noise voxels to 0.

    ``data``: a map file or a :class:`Volume`. ``mode``: ``"background"`` (dust and noise
    only) or ``"structural"`` (also micelles, ice, unresolved density); ``threshold``
    overrides the mode's G-mean threshold stored with the weights. ``apix``: voxel size in
    Å for maps whose header has none. ``resolution`` (Å): an input of resolution-aware
    weights (the shipped ``unet_v2``), which also picks the threshold of its resolution
    band; it is checked against the weights' trained range (a warning outside it). Without
    it the network runs with the resolution withheld, as trained on a fifth of its crops.
    ``weights``: a weights file (default: the shipped family's member for ``resolution``,
    :func:`~voxfield.denoise.unet.default_weights_path`).
    ``keep_grid=False`` returns the result on the 1 Å working grid.
    ``progress(done, total)`` reports tiles.

    ``contour`` (the deposited level) or ``mass_kda`` set the recommended contour
    (default: the automatic one). With ``protect`` (default), density above it that is
    connected to the main structure is removed only where the network is confident
    (:func:`protect_structure`); ``keep_above`` keeps every voxel above that level. The
    result reports the share of the voxels above the contour that were set to 0."""
    if keep_above is not None and not math.isfinite(keep_above):
        raise OptionError(f"--keep-above must be a number, got {keep_above}")
    from voxfield.compress.neural import resolve_device
    from voxfield.denoise.predict import predict_map, resolve_threshold
    from voxfield.denoise.unet import default_weights_path, load_weights
    from voxfield.io import read_volume

    require_resolution(resolution)
    name = None
    if not isinstance(data, Volume):
        name = Path(data)
        data = read_volume(data)
    vol = prepare_map(data, apix, name)
    dev = resolve_device(device)
    model, meta = load_weights(weights if weights is not None else default_weights_path(resolution), dev)
    check_resolution(resolution, meta)
    t = resolve_threshold(meta, mode, threshold, resolution)
    t0 = time.perf_counter()
    pred = predict_map(model, vol.data, vol.spacing, device=dev, progress=progress, resolution=resolution)
    level, source = recommended_contour(np.asarray(vol.data, dtype=np.float32), vol.spacing, contour, mass_kda)
    if keep_grid:
        grid, prob, base = np.asarray(vol.data), pred.prob, vol
    else:
        from voxfield.denoise.grid import to_work_grid

        grid = to_work_grid(vol.data, vol.spacing)
        prob = pred.work_prob
        base = Volume(grid, vol.axes, (1.0, 1.0, 1.0), "Å", vol.origin, vol.meta)
    keep = np.asarray(prob) >= t
    before = int(keep.sum())
    if protect or keep_above is not None:
        keep = protect_structure(grid, prob, keep, level if protect else np.inf, keep_above)
    den = np.where(keep, grid, np.zeros((), dtype=grid.dtype)).astype(grid.dtype, copy=False)
    nz = grid > 0
    removed = float((nz & ~keep).sum()) / max(1, int(nz.sum()))
    above = grid > level
    removed_above = float((above & ~keep).sum()) / max(1, int(above.sum()))
    return DenoiseResult(base.with_data(den), keep, prob, float(t), removed, pred.tiles_run, pred.tiles_total,
                         dev.type, time.perf_counter() - t0, level, source, removed_above, int(keep.sum()) - before)
