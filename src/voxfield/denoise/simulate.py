"""Training pairs: "experimental-looking" maps simulated from atomic models, with labels.

Each sample is a cube on the 1 Å working grid, built from a randomly rotated model:

signal
    molmap (Gaussians of sigma ``0.225 R``, atomic-number weighted) at a resolution ``R``
    drawn from [2.5, 10] Å, blurred further by a random factor (atomic B-factors make real
    maps softer than molmap) and, half of the time, sharpened (a negative B-factor, as
    deposited maps often are) before a cosine low-pass at ``1/R``. Order varies over the
    molecule as in real maps (whose structure voxels span a wider range than a uniform
    molmap's: on EMD-3488 the 10th percentile of the structure voxels is 2.6 % of the 99.9th
    percentile): each atom's weight is scaled by a smooth log-normal field and a random factor
    per residue, and each atom is drawn partly sharp, partly 1.5x softer, mixed by another
    smooth field.
unmodelled density (structural noise)
    a spatially contiguous part of the model (up to a quarter of it) drawn more blurred and
    weaker and left *out* of the label, as flexible parts without a model are in real
    map–model pairs.
coloured noise
    white Gaussian noise low-passed near the map's resolution (the solvent noise spectrum of
    EMD-3488 is flat out to about 1/(1.3 R) and falls off beyond), with a smoothly varying
    amplitude; optionally (``p_hf_noise``) a second component that reaches the grid's
    Nyquist frequency, as in deposited maps that were not low-passed at their resolution.
dust
    small Gaussian blobs (sigma 0.6–2.5 Å) scattered in the solvent.
detergent belt / ice layer
    a textured annulus around the model (a micelle) or a textured slab (ice or carbon film),
    each in a fraction of the samples.
masking
    half of the samples are multiplied by a soft mask around the model and are exactly zero
    outside it, like most deposited maps (EMD-3488 is 68 % zeros).

The ``v2`` simulator (:data:`SIM_V2`, the training set of ``unet_v2``) draws R from
2.5-20 Å and adds, each in a share of the cubes (all off in ``SimConfig()``, so datasets made
with it stay reproducible):

local resolution
    a smooth blend (sigmoid of a random field, correlation about 12 Å) of the map at R and at
    a 1.2-2.5x worse resolution, as flexible peripheries are in real maps;
anisotropic resolution
    the low-pass sees ``k^2 + (a^2 - 1)(k . d)^2``: resolution ``a`` = 1.3-3x worse along a
    random direction ``d`` (preferred orientation);
deposited-style post-processing
    sharpening up to B = -10 R^2 (applied up to the cut-off only), noise reaching Nyquist,
    and soft masks with exact zeros outside (as in v1);
real noise spectra
    white noise filtered by a noise profile measured on real data
    (:mod:`voxfield.denoise.noise_spectra`: the solvent of EMD-1703 and the background of
    three real particle stacks), its half-fall-off placed at 1/(0.7-1.4 R).

The input is then normalised exactly as at inference (:func:`voxfield.denoise.grid.normalise`)
and the label is the 3-sigma atom mask of the *modelled* atoms at ``R``
(:func:`voxfield.denoise.molmap.structure_label`). All randomness comes from the given
``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
from scipy.spatial.transform import Rotation

from voxfield.denoise.grid import normalise
from voxfield.denoise.molmap import Atoms, molmap, sigma_for, structure_label
from voxfield.denoise.noise_spectra import profile_filter, shipped_profiles
from voxfield.errors import DataError

#: Resolution range of the training maps (Å), the paper's range.
RESOLUTION_RANGE = (2.5, 10.0)


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the simulator (probabilities and ranges); the defaults are the shipped
    model's training configuration."""

    box: int = 64
    resolution: tuple[float, float] = RESOLUTION_RANGE
    blur: tuple[float, float] = (0.8, 1.6)
    amplitude_spread: float = 0.7
    soft_blur: float = 1.5
    p_sharpen: float = 0.5
    sharpen: float = 5.0
    p_hf_noise: float = 0.0
    p_unmodelled: float = 0.5
    unmodelled_fraction: tuple[float, float] = (0.03, 0.25)
    noise_std: tuple[float, float] = (0.003, 0.15)
    dust_per_1000A3: tuple[float, float] = (0.0, 0.3)
    p_belt: float = 0.15
    p_ice: float = 0.1
    p_mask: float = 0.5
    p_off_structure: float = 0.1
    p_local_res: float = 0.0
    local_res_factor: tuple[float, float] = (1.2, 2.5)
    p_aniso: float = 0.0
    aniso: tuple[float, float] = (1.3, 3.0)
    p_real_noise: float = 0.0
    real_noise_k50: tuple[float, float] = (0.7, 1.4)


#: The simulator of the resolution-aware weights ``unet_v2`` (issue 18): 2.5-20 Å, local
#: resolution variation, anisotropic resolution, sharpening up to B = -10 R^2, noise out to
#: Nyquist and noise with real spectra.
SIM_V2 = SimConfig(resolution=(2.5, 20.0), sharpen=10.0, p_sharpen=0.6, p_hf_noise=0.3, p_local_res=0.4,
                   p_aniso=0.25, p_real_noise=0.35)
#: The simulators by name: ``v1`` made the first weights' stage-1 cubes, ``v2`` those of
#: ``unet_v2``.
SIMULATORS = {"v1": SimConfig(), "v2": SIM_V2}


def simulator(name: str, box: int | None = None) -> SimConfig:
    """The simulator ``name`` of :data:`SIMULATORS` (``box`` overrides its cube edge)."""
    from dataclasses import replace

    from voxfield.errors import OptionError

    if name not in SIMULATORS:
        raise OptionError(f"--simulator must be one of {', '.join(SIMULATORS)}, got {name!r}")
    cfg = SIMULATORS[name]
    return replace(cfg, box=int(box)) if box is not None else cfg


@dataclass
class Sample:
    """One training cube: normalised input ``x`` (float32), bool ``label`` (structure),
    what was drawn (``info``) and the map before normalisation (``raw``)."""

    x: np.ndarray
    label: np.ndarray
    info: dict = field(default_factory=dict)
    raw: np.ndarray | None = None


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    s = float(f.std())
    return f / s if s > 0 else f


def _field_at(rng: np.random.Generator, zyx: np.ndarray, spread: float, length: float) -> np.ndarray:
    """A smooth random function (std ``spread``, correlation length about ``length`` Å)
    evaluated at the points ``zyx``: a sum of 12 random plane waves."""
    k = rng.standard_normal((12, 3)) / length
    phase = rng.uniform(0, 2 * np.pi, 12)
    return spread * np.sqrt(2.0 / 12) * np.cos(zyx @ k.T + phase).sum(axis=1)


def _lowpass(a: np.ndarray, resolution: float, bfactor: float = 0.0,
             aniso: tuple[np.ndarray, float] | None = None) -> np.ndarray:
    """Cosine-edged low-pass at 1/resolution, with an optional B-factor exp(-B k^2 / 4);
    with ``aniso = (direction, a)`` the resolution along ``direction`` is ``a`` times worse
    (preferred orientation): the filter sees ``k^2 + (a^2 - 1) (k . d)^2``."""
    spec = scipy.fft.rfftn(a)
    kz = np.fft.fftfreq(a.shape[0])[:, None, None]
    ky = np.fft.fftfreq(a.shape[1])[None, :, None]
    kx = np.fft.rfftfreq(a.shape[2])[None, None, :]
    k2 = kz**2 + ky**2 + kx**2
    if aniso is not None:
        d, f = aniso
        k2 = k2 + (f * f - 1.0) * (kz * d[0] + ky * d[1] + kx * d[2]) ** 2
    k = np.sqrt(k2)
    kc = 1.0 / resolution
    edge = np.clip((k - 0.85 * kc) / (0.15 * kc), 0.0, 1.0)
    filt = 0.5 * (1 + np.cos(np.pi * edge))
    if bfactor:  # up to the cut-off only: beyond it the filter is 0 (and exp(-B k^2) may overflow)
        kk = np.minimum(k, kc)
        filt = filt * np.exp(-bfactor * kk**2 / 4.0)
    spec *= filt
    return scipy.fft.irfftn(spec, s=a.shape).astype(np.float32)


def _place(atoms: Atoms, rng: np.random.Generator, box: int, off_structure: bool,
           rotate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the model at random (unless ``rotate`` is false) and translate it so that a
    random atom (or, for an off-structure cube, a point beside the model) lands inside the
    central part of the box. Returns the new (n, 3) coordinates in box voxels (1 Å) and the
    rotation's matrix."""
    rot = Rotation.random(random_state=rng) if rotate else Rotation.identity()
    c = atoms.zyx - atoms.zyx.mean(axis=0)
    xyz = rot.apply(c)
    if box <= 0:  # whole-model map: centred in a box of -box voxels
        return xyz + (-box) / 2.0, rot.as_matrix()
    anchor = xyz[rng.integers(len(xyz))]
    if off_structure:
        d = rng.standard_normal(3)
        anchor = anchor + d / np.linalg.norm(d) * rng.uniform(8, 25)
    target = rng.uniform(0.25 * box, 0.75 * box, size=3)
    return xyz - anchor + target, rot.as_matrix()


def whole_model_box(atoms: Atoms, resolution: float, margin: float = 12.0) -> int:
    """Edge (1 Å voxels, even) of a cube that holds the model in any orientation with
    ``margin`` Å plus 3 sigma of solvent around it."""
    radius = float(np.linalg.norm(atoms.zyx - atoms.zyx.mean(axis=0), axis=1).max())
    n = int(math.ceil(2 * (radius + margin + 3 * sigma_for(resolution))))
    return n + (n % 2)


def simulate_sample(
    atoms: Atoms,
    rng: np.random.Generator,
    cfg: SimConfig = SimConfig(),
    *,
    resolution: float | None = None,
    whole: bool = False,
    keep_frame: bool = False,
) -> Sample:
    """One simulated training cube from ``atoms`` (module docstring). ``resolution`` fixes
    R (else drawn from ``cfg.resolution``); ``whole`` simulates the whole model, centred in
    a cube sized by :func:`whole_model_box`, instead of a ``cfg.box`` cube; with
    ``keep_frame`` the whole model is not rotated, and ``info["origin_zyx"]`` (Å) places
    the map on the model's own coordinates."""
    R = float(resolution) if resolution is not None else float(
        math.exp(rng.uniform(math.log(cfg.resolution[0]), math.log(cfg.resolution[1]))))
    box = whole_model_box(atoms, R) if whole else int(cfg.box)
    shape = (box, box, box)
    frame = whole and keep_frame
    xyz, _ = _place(atoms, rng, -box if whole else box, (not whole) and rng.random() < cfg.p_off_structure,
                    rotate=not frame)
    placed = Atoms(xyz, atoms.number, atoms.residue, atoms.name)
    info: dict = {"model": atoms.name, "resolution": round(R, 3)}
    if frame:
        info["origin_zyx"] = [float(v) for v in atoms.zyx.mean(axis=0) - box / 2.0]

    # unmodelled part: atoms within a radius of a random atom
    modelled = np.ones(len(placed), bool)
    if rng.random() < cfg.p_unmodelled and len(placed) > 50:
        frac = rng.uniform(*cfg.unmodelled_fraction)
        centre = placed.zyx[rng.integers(len(placed))]
        d = np.linalg.norm(placed.zyx - centre, axis=1)
        k = max(1, int(frac * len(placed)))
        modelled[np.argsort(d)[:k]] = False
        info["unmodelled_atoms"] = int(k)
    blur = rng.uniform(*cfg.blur)
    # local order varies: per-atom amplitude (log-normal over a smooth field, times a random
    # factor per residue) and a per-atom mix of a sharp and a softer copy
    fa = _field_at(rng, placed.zyx, cfg.amplitude_spread, 12.0)
    res_f = rng.uniform(0.5, 1.2, size=int(placed.residue.max()) + 1)[placed.residue]
    w = placed.number * np.exp(fa) * res_f
    mix = 1.0 / (1.0 + np.exp(-2.0 * _field_at(rng, placed.zyx, 1.0, 10.0)))
    sub = placed.subset(modelled)
    sig = molmap(sub, shape, resolution=R, sigma_scale=blur, weights=(w * mix)[modelled])
    sig += molmap(sub, shape, resolution=R, sigma_scale=blur * cfg.soft_blur, weights=(w * (1 - mix))[modelled])
    if not modelled.all():
        sig += rng.uniform(0.3, 1.0) * molmap(
            placed.subset(~modelled), shape, resolution=R, sigma_scale=blur * rng.uniform(1.3, 2.5),
            weights=w[~modelled],
        )
    bf = -rng.uniform(0.0, cfg.sharpen) * R * R if rng.random() < cfg.p_sharpen else 0.0
    aniso = None
    if cfg.p_aniso > 0 and rng.random() < cfg.p_aniso:  # preferred orientation
        d = rng.standard_normal(3)
        aniso = (d / np.linalg.norm(d), float(rng.uniform(*cfg.aniso)))
        info["aniso"] = round(aniso[1], 3)
    if cfg.p_local_res > 0 and rng.random() < cfg.p_local_res:
        # local resolution: a smooth blend of the map at R and at a worse resolution
        f = float(rng.uniform(*cfg.local_res_factor))
        w = 1.0 / (1.0 + np.exp(-2.5 * _smooth_field(rng, shape, 12.0)))
        sig = w * _lowpass(sig, R, bf, aniso) + (1.0 - w) * _lowpass(sig, R * f, bf, aniso)
        info["local_res"] = round(f, 3)
    else:
        sig = _lowpass(sig, R, bf, aniso)
    peak = float(np.percentile(sig, 99.9))
    sig /= peak if peak > 0 else 1.0
    info["blur"] = round(blur, 3)
    info["bfactor"] = round(bf, 2)

    label = structure_label(placed.subset(modelled), shape, resolution=R)
    solvent = ~ndi.binary_dilation(label, iterations=2)

    # coloured noise with a smoothly varying amplitude
    nstd = float(math.exp(rng.uniform(math.log(cfg.noise_std[0]), math.log(cfg.noise_std[1]))))
    profiles = shipped_profiles() if cfg.p_real_noise > 0 else ()
    if profiles and rng.random() < cfg.p_real_noise:  # a noise spectrum measured on real data
        name, prof = profiles[int(rng.integers(len(profiles)))]
        k50 = 1.0 / (R * float(rng.uniform(*cfg.real_noise_k50)))
        kz = np.fft.fftfreq(box)[:, None, None]
        kx = np.fft.rfftfreq(box)[None, None, :]
        k = np.sqrt(kz**2 + kz.reshape(1, -1, 1) ** 2 + kx**2)
        spec = scipy.fft.rfftn(rng.standard_normal(shape).astype(np.float32)) * profile_filter(prof, k, k50)
        noise = scipy.fft.irfftn(spec, s=shape).astype(np.float32)
        info["noise_spectrum"] = name
    else:
        noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_for(R) * rng.uniform(0.7, 1.3),
                                    mode="wrap")
    noise /= max(float(noise.std()), 1e-12)
    amp = np.exp(0.4 * _smooth_field(rng, shape, 10.0))
    m = sig + nstd * amp * noise
    info["noise_std"] = round(nstd, 4)
    # noise beyond the resolution, out to the grid's Nyquist (deposited maps are rarely
    # low-passed at their resolution); drawn only when enabled, so that datasets made
    # without it stay reproducible
    if cfg.p_hf_noise > 0 and rng.random() < cfg.p_hf_noise:
        hf = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(0.4, 0.9), mode="wrap")
        hf /= max(float(hf.std()), 1e-12)
        k = rng.uniform(0.3, 1.5)
        m += nstd * k * amp * hf
        info["hf_noise"] = round(k, 3)

    # dust blobs in the solvent
    lam = rng.uniform(*cfg.dust_per_1000A3) * box**3 / 1000.0
    n_dust = int(rng.poisson(lam))
    if n_dust:
        pts = np.argwhere(solvent)
        pick = pts[rng.integers(len(pts), size=n_dust)]
        dust = np.zeros(shape, np.float32)
        for p in pick:
            s = rng.uniform(0.6, 2.5)
            r = int(math.ceil(3 * s))
            lo = np.maximum(p - r, 0)
            hi = np.minimum(p + r + 1, box)
            zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            g = np.exp(-((zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2) / (2 * s * s))
            dust[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += rng.uniform(0.1, 0.8) * g.astype(np.float32)
        m += dust * solvent
    info["dust"] = n_dust

    zz, yy, xx = np.meshgrid(*(np.arange(box, dtype=np.float32),) * 3, indexing="ij")
    pos = np.stack([zz, yy, xx], -1)
    # detergent belt: annulus around an axis through the model's centre
    if rng.random() < cfg.p_belt:
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        c = placed.zyx[modelled].mean(axis=0) if modelled.any() else np.full(3, box / 2)
        rel = pos - c
        h = rel @ axis
        radial = np.linalg.norm(rel - h[..., None] * axis, axis=-1)
        rin = rng.uniform(8, 22)
        belt = (np.abs(h) < rng.uniform(10, 18)) & (radial > rin) & (radial < rin + rng.uniform(8, 18))
        tex = np.clip(0.5 + 0.5 * _smooth_field(rng, shape, max(1.0, sigma_for(R) * 2)), 0, None)
        m += rng.uniform(0.1, 0.4) * ndi.gaussian_filter(belt.astype(np.float32), 1.5) * tex * solvent
        info["belt"] = True
    # ice / carbon layer: a textured slab
    if rng.random() < cfg.p_ice:
        nrm = rng.standard_normal(3)
        nrm /= np.linalg.norm(nrm)
        off = rng.uniform(0.2, 0.8) * box
        slab = np.abs(pos @ nrm - off - (np.full(3, box / 2) @ nrm - box / 2)) < rng.uniform(2, 6)
        tex = np.clip(0.5 + 0.5 * _smooth_field(rng, shape, 2.0), 0, None)
        m += rng.uniform(0.05, 0.3) * ndi.gaussian_filter(slab.astype(np.float32), 1.0) * tex * solvent
        info["ice"] = True
    # deposited maps are often masked: exactly zero outside a soft envelope
    if rng.random() < cfg.p_mask:
        env_atoms = placed if rng.random() < 0.5 else placed.subset(modelled)
        env = molmap(env_atoms, shape, resolution=max(R, 6.0), sigma_scale=2.0) if len(env_atoms) else np.zeros(shape, np.float32)
        hard = env > 0.05 * max(float(env.max()), 1e-12)
        hard = ndi.binary_dilation(hard, iterations=int(rng.integers(1, 8)))
        soft = ndi.gaussian_filter(hard.astype(np.float32), rng.uniform(0.5, 3.0))
        m = np.where(soft > 0.02, m * soft, 0.0).astype(np.float32)
        info["masked"] = True
    if not np.isfinite(m).all():  # a defect of the simulator, never a valid training cube
        raise DataError(f"simulated map of {atoms.name} at {R:.3g} Å is not finite ({info})")
    x, _ = normalise(m)
    info["box"] = box
    return Sample(x=x, label=label, info=info, raw=m.astype(np.float32, copy=False))
