"""Noise spectra measured on real data, for the training simulator (issue 18).

A *profile* is the radially averaged amplitude of the noise as a function of spatial
frequency, with the frequency axis divided by the profile's own half-fall-off frequency
``k50`` (where the amplitude first drops below half of its low-frequency plateau) and the
amplitude divided by that plateau. The shape (how flat, how steep the roll-off, how much
floor beyond it) carries over between maps; the simulator places ``k50`` near ``1/R``.

:func:`noise_profile` measures one from the solvent of a map (voxels below the automatic
contour, away from the structure) or from the background of particle images;
:func:`shipped_profiles` reads the profiles shipped with the package
(``denoise/weights/noise_spectra.json``, made by ``benchmarks/measure_noise_spectra.py``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

#: Profiles are stored on this grid of k / k50.
PROFILE_GRID = np.linspace(0.0, 3.0, 61)


def radial_amplitude(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequency in cycles per voxel, mean |F|) over shells of a 2-D or 3-D array (the
    mean removed)."""
    x = np.asarray(a, np.float64)
    x = x - x.mean()
    f = np.abs(scipy.fft.fftn(x))
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in x.shape], indexing="ij")
    k = np.sqrt(sum(g**2 for g in grids))
    nbins = max(x.shape) // 2
    idx = np.minimum((k * 2 * nbins).astype(int), nbins)
    s = np.bincount(idx.ravel(), f.ravel(), nbins + 1)
    c = np.bincount(idx.ravel(), minlength=nbins + 1)
    amp = s[:nbins] / np.maximum(c[:nbins], 1)
    return (np.arange(nbins) + 0.5) / (2 * nbins), amp


def normalise_profile(k: np.ndarray, amp: np.ndarray) -> np.ndarray | None:
    """The amplitude resampled on :data:`PROFILE_GRID` (k / k50), plateau 1; ``None`` when
    the amplitude never halves (no roll-off to anchor on)."""
    # the first shell holds the (removed) mean: it is not noise
    k, amp = np.asarray(k, float)[1:], np.asarray(amp, float)[1:]
    low = amp[: max(2, len(amp) // 8)]
    plateau = float(np.median(low)) if low.size else float(amp[0])
    if plateau <= 0:
        return None
    below = np.nonzero((amp < 0.5 * plateau) & (np.arange(len(amp)) > 0))[0]
    if below.size == 0:
        return None
    k50 = float(k[below[0]])
    out = np.interp(PROFILE_GRID, k / k50, amp / plateau, right=float(amp[-1] / plateau))
    return np.clip(out, 0.0, 4.0)


def noise_profile(data: np.ndarray, spacing: float = 1.0, *, images: bool = False) -> np.ndarray | None:
    """The normalised noise profile of a real map's solvent or, with ``images``, of the
    background of a particle stack (n, y, x). In a map the structure (above the automatic
    contour, dilated by 2 voxels) is replaced by noise of the remaining voxels' mean and
    spread before the spectrum is taken; in images the profile is the median over the
    four corner squares (0.28 of the edge) of every image, away from the particle."""
    a = np.asarray(data, np.float64)
    if images:
        side = int(min(a.shape[1:]) * 0.28)
        profs = []
        for im in a:
            for corner in (im[:side, :side], im[:side, -side:], im[-side:, :side], im[-side:, -side:]):
                k, amp = radial_amplitude(corner)
                p = normalise_profile(k, amp)
                if p is not None:
                    profs.append(p)
        return np.median(profs, axis=0) if profs else None
    from voxfield.metrics.cryoem import auto_contour

    level = auto_contour(a, spacing)
    struct = ndi.binary_dilation(a > level, iterations=2)
    rng = np.random.default_rng(0)
    sol = a[~struct]
    filled = np.where(struct, rng.normal(sol.mean(), sol.std(), a.shape), a)
    k, amp = radial_amplitude(filled)
    return normalise_profile(k, amp)


def profile_filter(profile: np.ndarray, k: np.ndarray, k50: float) -> np.ndarray:
    """The amplitude filter of ``profile`` at frequencies ``k`` (cycles per voxel) for a
    half-fall-off at ``k50``."""
    return np.interp(np.asarray(k) / k50, PROFILE_GRID, profile, right=float(profile[-1]))


@lru_cache(maxsize=1)
def shipped_profiles() -> tuple[tuple[str, np.ndarray], ...]:
    """``(name, profile)`` of the profiles shipped with the package (empty when missing)."""
    p = Path(__file__).with_name("weights") / "noise_spectra.json"
    if not p.is_file():
        return ()
    d = json.loads(p.read_text())
    return tuple((e["name"], np.asarray(e["profile"], float)) for e in d["profiles"])
