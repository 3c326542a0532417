"""Simulated heterogeneous cryo-EM particle sets with known conformations (cryoDRGN-ready).

A continuous conformational change is made by linear interpolation of the atom coordinates
of two (or more) atomic models with the same atoms in the same order — e.g. adenylate kinase
closed (``adk_closed.pdb``) → open (``adk_open.pdb``). The path is discretised into
``n_states`` ground-truth volumes (``t = linspace(0, 1, n_states)``); every image gets a state
drawn uniformly at random, a uniformly random rotation, an in-plane shift, a CTF and white
Gaussian noise.

Image formation (conventions of :mod:`voxfield.reconstruct.projection`, i.e. cryoDRGN's)
-----------------------------------------------------------------------------------------
``img = IFFT( c · CTF(k) · exp(+2πi k·t) · V̂_s((kx, ky, 0) @ R) ) + noise`` where ``V̂_s`` is
the transform of the state's volume (origin at voxel ``D/2``), sampled on the ``D×D`` image
grid within the Nyquist circle (:class:`~voxfield.reconstruct.projection.FourierProjector`,
``pad``-times zero padded, trilinear), ``CTF`` is :func:`voxfield.reconstruct.ctf.compute_ctf`
on :func:`~voxfield.reconstruct.ctf.half_grid_freqs` (cryoDRGN's CTF: ``−w`` at ``k = 0``),
``exp(+2πi k·t)`` moves the content by ``−t`` (cryoDRGN re-centres by ``+t``), and ``c`` is the
contrast sign.

**Contrast.** cryoDRGN (``train_vae``, ``train_nn``, ``backproject_voxel``) multiplies the
images by −1 unless ``--uninvert-data`` is given, and its CTF is negative at low frequency.
With the default ``invert=True`` (``c = −1``) the images are therefore what cryoDRGN expects
*without extra flags* to reconstruct positive density: the particle is bright at low
resolution, as in RELION/cryoSPARC particle stacks (and as in cryoDRGN's own test set:
positive projections with a CTF table whose 90° phase shift makes cryoDRGN's CTF ≈ −1).
``invert=False`` gives dark particles (train cryoDRGN with ``--uninvert-data`` then).

**SNR** = variance of the clean, CTF-modulated images (over all pixels of all images, with
the single overall mean removed) / variance of the noise. The noise is white Gaussian with
``σ² = signal variance / snr``; ``snr=None`` writes noise-free images.

Outputs (every file written atomically)
---------------------------------------
``particles.mrcs`` (float32 stack, voxel size = ``apix``), ``particles.star`` (RELION 3.1,
with the true state index ``vfTrueState`` and path coordinate ``vfTrueT`` as extra columns),
``poses.pkl`` and ``ctf.pkl`` (cryoDRGN pickles: ``(rot, trans_px / D)`` and ``[N, 9]``),
``gt/state_XXX.mrc`` (ground-truth volumes in the box and pose frame of the images, voxel
size ``apix``, origin 0), ``labels.npz`` (``state``, ``t`` per image and the state grid
``t_states``) and ``meta.json`` (all parameters, seed, SNR definition, measured signal and
noise variance, conventions).

Everything is drawn from independent streams of ``numpy.random.SeedSequence(seed)``, so a
seed gives the same data whatever the chunk sizes, and the noise-free run (``snr=None``) has
the same poses, CTFs and states as a noisy one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.denoise.molmap import LABEL_SIGMAS, Atoms, atoms_from_table, molmap, sigma_for
from voxfield.errors import DataError, OptionError
from voxfield.io.atomic import atomic_path, write_bytes_atomic
from voxfield.io.atoms import read_atom_table
from voxfield.reconstruct.ctf import CTF_COLUMNS, ctf_from_table, half_grid_freqs
from voxfield.reconstruct.projection import FourierProjector, _phase, image_from_ft

__all__ = [
    "SimulationResult",
    "read_model",
    "check_same_atoms",
    "superpose",
    "interpolate_atoms",
    "path_center",
    "state_volumes",
    "atoms_volumes",
    "state_reach",
    "random_ctf",
    "simulate_dataset",
    "simulate_adk",
    "SNR_DEFINITION",
]

SNR_DEFINITION = (
    "SNR = variance of the clean CTF-modulated images (all pixels of all images, overall mean removed) "
    "/ variance of the white Gaussian noise"
)
CONVENTIONS = (
    "cryoDRGN pose convention: pixel (y, x) of a projection is sum_z v(R^T (x, y, z)) about voxel D/2 of the "
    "(z, y, x) volume (Fourier: slice at (kx, ky, 0) @ R); the image content is shifted by -t (pixels), "
    "poses.pkl stores (R, t / D); image FT (origin at pixel D/2) = c * CTF * exp(+2 pi i k.t) * slice"
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate_dataset` wrote and measured."""

    out_dir: Path
    n_images: int
    D: int
    apix: float
    n_states: int
    signal_var: float
    noise_std: float
    snr: float | None
    seconds: float

    @property
    def particles(self) -> Path:
        return self.out_dir / "particles.mrcs"

    @property
    def star(self) -> Path:
        return self.out_dir / "particles.star"

    @property
    def poses(self) -> Path:
        return self.out_dir / "poses.pkl"

    @property
    def ctf(self) -> Path:
        return self.out_dir / "ctf.pkl"

    @property
    def labels(self) -> Path:
        return self.out_dir / "labels.npz"

    @property
    def meta(self) -> Path:
        return self.out_dir / "meta.json"

    def gt_volume(self, state: int) -> Path:
        return self.out_dir / "gt" / f"state_{int(state):03d}.mrc"


# ------------------------------------------------------------------------------ atomic models


def read_model(path: str | os.PathLike[str]) -> tuple[Atoms, list[tuple[str, int, str, str, str]]]:
    """Non-hydrogen atoms (occupancy > 0, first model) of a PDB/mmCIF file, and their keys
    ``(chain, residue number, insertion code, residue name, atom name)`` in the same order.

    Read by :func:`voxfield.io.atoms.read_atom_table`, like
    :func:`~voxfield.denoise.molmap.read_atoms`: PDB files without an element column and with
    CHARMM-style left-justified names (such as the AdK models ``adk_open.pdb``/``adk_closed.pdb``)
    get the element of the atom name's first letter in standard residues (``CA`` carbon, not
    calcium; ``HG1`` hydrogen, not mercury), and their hydrogens are dropped."""
    table = read_atom_table(path)
    if len(table) == 0:
        raise DataError(f"{os.fspath(path)}: no non-hydrogen atoms")
    return atoms_from_table(table), table.keys()


def check_same_atoms(models: Sequence[Atoms], keys: Sequence[Sequence[tuple]] | None = None) -> None:
    """Raise :class:`DataError` unless all ``models`` hold the same atoms in the same order:
    same count, atomic numbers and residue indices (and the same ``keys`` from
    :func:`read_model` when given), so that interpolating their coordinates is meaningful."""
    if len(models) < 2:
        raise DataError(f"at least two models are needed for a conformational path, got {len(models)}")
    ref = models[0]
    for j, m in enumerate(models[1:], start=1):
        where = f"model {j} ({m.name or '?'}) vs model 0 ({ref.name or '?'})"
        if len(m) != len(ref):
            raise DataError(
                f"{where}: {len(m)} vs {len(ref)} atoms; interpolation needs the same atoms in the same order"
            )
        bad = np.flatnonzero((m.number != ref.number) | (m.residue != ref.residue))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{where}: atom {i} differs (atomic number {m.number[i]:g} vs {ref.number[i]:g}, residue index "
                f"{m.residue[i]} vs {ref.residue[i]}); {bad.size} atoms out of order"
            )
        if keys is not None:
            ka, kb = keys[0], keys[j]
            bad_k = [i for i, (a, b) in enumerate(zip(ka, kb)) if a[1:] != b[1:]]
            if len(ka) != len(kb) or bad_k:
                i = bad_k[0] if bad_k else min(len(ka), len(kb))
                a = ka[i] if i < len(ka) else None
                b = kb[i] if i < len(kb) else None
                raise DataError(
                    f"{where}: atom {i} is {b} vs {a}; interpolation needs the same atoms in the same order"
                )


def superpose(mobile: Atoms, target: Atoms) -> Atoms:
    """``mobile`` rigidly moved onto ``target`` (least-squares over all atoms, Kabsch; atoms
    must correspond one to one)."""
    P = mobile.zyx - mobile.zyx.mean(0)
    Q = target.zyx - target.zyx.mean(0)
    U, _, Vt = np.linalg.svd(P.T @ Q)
    d = np.sign(np.linalg.det(U @ Vt))
    R = U @ np.diag([1.0, 1.0, d]) @ Vt
    return Atoms(P @ R + target.zyx.mean(0), mobile.number, mobile.residue, mobile.name)


def interpolate_atoms(models: Sequence[Atoms], t: float) -> Atoms:
    """Atoms at path coordinate ``t`` in [0, 1] of the piecewise-linear path through
    ``models`` (equal share of ``t`` per segment; two models: ``(1 − t) A + t B``)."""
    tt = float(t)
    if not 0.0 <= tt <= 1.0:
        raise OptionError(f"path coordinate t must be in [0, 1], got {t!r}")
    nseg = len(models) - 1
    u = tt * nseg
    i = min(int(math.floor(u)), nseg - 1)
    f = u - i
    a, b = models[i], models[i + 1]
    return Atoms((1.0 - f) * a.zyx + f * b.zyx, a.number, a.residue, f"t={tt:.4f}")


def path_center(models: Sequence[Atoms]) -> np.ndarray:
    """Common centre (z, y, x) Å: the centroid of the mean structure of ``models``."""
    return np.mean([m.zyx for m in models], axis=0).mean(axis=0)


def state_reach(states: Sequence[Atoms], center: np.ndarray, resolution: float) -> float:
    """How far (Å) the states' density reaches from ``center``: the farthest atom plus 3
    sigma of its molmap Gaussian. A box of ``D`` px at ``apix`` holds it when
    ``reach <= (D // 2 - 1) * apix``."""
    c = np.asarray(center, np.float64)
    return max(float(np.linalg.norm(m.zyx - c, axis=1).max()) for m in states) + LABEL_SIGMAS * sigma_for(resolution)


def atoms_volumes(
    states: Sequence[Atoms],
    *,
    D: int,
    apix: float,
    resolution: float,
    center: np.ndarray,
    progress: Progress | None = None,
) -> np.ndarray:
    """Molmap volumes ``[len(states), D, D, D]`` (float32) of the given atoms, all in one
    frame: ``center`` (z, y, x Å) sits on voxel ``D/2``. :class:`DataError` when a state
    (atoms plus 3 sigma) does not fit in the box."""
    c = np.asarray(center, np.float64)
    origin = c - (D // 2) * float(apix)
    reach = state_reach(states, c, resolution)
    half = (D // 2 - 1) * float(apix)
    if reach > half:
        raise DataError(
            f"the models reach {reach:.1f} Å from their centre (atoms + 3 sigma), but a box of {D} px at {apix:g} Å/px "
            f"holds only {half:.1f} Å: increase D or apix"
        )
    vols = np.empty((len(states), D, D, D), dtype=np.float32)
    for k, a in enumerate(states):
        vols[k] = molmap(a, (D, D, D), resolution=resolution, spacing=apix, origin=origin)
        if progress:
            progress(k + 1, len(states))
    return vols


def state_volumes(
    models: Sequence[Atoms],
    n_states: int,
    *,
    D: int,
    apix: float,
    resolution: float,
    center: np.ndarray | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth volumes ``[n_states, D, D, D]`` (float32, molmap) at
    ``t = linspace(0, 1, n_states)`` (returned second), all in one frame: the common
    ``center`` (default :func:`path_center`) sits on voxel ``D/2``."""
    c = path_center(models) if center is None else np.asarray(center, np.float64)
    t_states = np.linspace(0.0, 1.0, int(n_states))
    vols = atoms_volumes([interpolate_atoms(models, float(t)) for t in t_states], D=D, apix=apix,
                         resolution=resolution, center=c, progress=progress)
    return vols, t_states


# ------------------------------------------------------------------------------------ CTF


def random_ctf(
    rng: np.random.Generator,
    n: int,
    *,
    D: int,
    apix: float,
    defocus: tuple[float, float] = (10000.0, 25000.0),
    astigmatism: float = 400.0,
    kv: float = 300.0,
    cs: float = 2.7,
    w: float = 0.1,
    phase: float = 0.0,
) -> np.ndarray:
    """cryoDRGN CTF table ``[n, 9]`` (``D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase``): mean
    defocus uniform in ``defocus`` Å, ``dfU − dfV`` uniform in ``[0, astigmatism]`` Å, angle
    uniform in [0, 180)°."""
    lo, hi = (float(x) for x in defocus)
    if not 0 < lo <= hi:
        raise OptionError(f"defocus range must be 0 < low <= high Å, got {defocus!r}")
    if astigmatism < 0 or astigmatism > 2 * lo:
        raise OptionError(f"astigmatism must be in [0, 2 x lowest defocus] Å, got {astigmatism!r}")
    mean = rng.uniform(lo, hi, n)
    ast = rng.uniform(0.0, float(astigmatism), n)
    ang = rng.uniform(0.0, 180.0, n)
    table = np.empty((n, len(CTF_COLUMNS)), dtype=np.float64)
    table[:, 0] = D
    table[:, 1] = apix
    table[:, 2] = mean + ast / 2
    table[:, 3] = mean - ast / 2
    table[:, 4] = ang
    table[:, 5] = kv
    table[:, 6] = cs
    table[:, 7] = w
    table[:, 8] = phase
    return table


# ------------------------------------------------------------------------------ simulation


@contextmanager
def _rich_bar(label: str) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)  # the library's own stderr console: it does not import voxfield.cli

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


@contextmanager
def _progress_fn(progress: bool | Progress | None, label: str) -> Iterator[Progress | None]:
    if progress is True:
        with _rich_bar(label) as fn:
            yield fn
    elif callable(progress):
        yield progress
    else:
        yield None


def _write_mrc(path: Path, data: np.ndarray, apix: float) -> None:
    import mrcfile

    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = float(apix)
        mrc.update_header_stats()


def _check_options(
    n_images: int,
    D: int,
    apix: float,
    resolution: float,
    n_states: int,
    snr: float | None,
    max_shift_px: float,
    pad: int,
    chunk: int,
) -> None:
    if int(n_images) < 1:
        raise OptionError(f"n_images must be >= 1, got {n_images!r}")
    if int(D) < 8 or int(D) % 2:
        raise OptionError(f"D must be an even box size >= 8, got {D!r}")
    if not (math.isfinite(apix) and apix > 0):
        raise OptionError(f"apix must be > 0 Å, got {apix!r}")
    if not (math.isfinite(resolution) and resolution > 0):
        raise OptionError(f"resolution must be > 0 Å, got {resolution!r}")
    if int(n_states) < 2:
        raise OptionError(f"n_states must be >= 2, got {n_states!r}")
    if snr is not None and not (math.isfinite(snr) and snr > 0):
        raise OptionError(f"snr must be > 0 (or None for noise-free images), got {snr!r}")
    if not (math.isfinite(max_shift_px) and 0 <= max_shift_px < D / 4):
        raise OptionError(f"max_shift_px must be in [0, D/4), got {max_shift_px!r}")
    if int(pad) < 1 or int(chunk) < 1:
        raise OptionError("pad and chunk must be >= 1")


def simulate_dataset(
    out_dir: str | os.PathLike[str],
    models: Sequence[Atoms],
    *,
    n_images: int = 20000,
    D: int = 64,
    apix: float = 1.5,
    resolution: float = 4.0,
    n_states: int = 50,
    snr: float | None = 0.1,
    defocus: tuple[float, float] = (10000.0, 25000.0),
    astigmatism: float = 400.0,
    kv: float = 300.0,
    cs: float = 2.7,
    w: float = 0.1,
    max_shift_px: float = 2.0,
    invert: bool = True,
    align: bool = True,
    seed: int = 0,
    pad: int = 3,
    chunk: int = 2048,
    atom_ids: Sequence[Sequence[tuple]] | None = None,
    progress: bool | Progress | None = None,
    states: Sequence[Atoms] | None = None,
) -> SimulationResult:
    """Simulate a heterogeneous particle set along the path through ``models`` and write it to
    ``out_dir`` (created if needed; see the module docstring for the files and conventions).

    ``models``: two or more :class:`~voxfield.denoise.molmap.Atoms` with the same atoms in the
    same order (checked). ``align``: superpose every model onto the first (Kabsch, all atoms)
    before interpolating, so that the path holds no rigid-body motion. ``D``, ``apix``: box
    (even) and pixel size; the molecule (plus 3 sigma of its Gaussians) must fit in the box
    about the common centre. ``resolution``: molmap resolution (Å; sigma = 0.225 resolution).
    ``n_states``: ground-truth volumes at ``t = linspace(0, 1, n_states)``; each image gets a
    state uniformly at random. Rotations are uniform on SO(3); shifts uniform in
    ``±max_shift_px`` per axis; CTF: :func:`random_ctf` with ``defocus``, ``astigmatism``,
    ``kv``, ``cs``, ``w``. ``snr``: see :data:`SNR_DEFINITION` (``None``: no noise).
    ``invert``: bright particles (default; what cryoDRGN expects without
    ``--uninvert-data``). ``pad``: zero-padding factor of the Fourier projector. ``progress``:
    ``True`` for a rich progress bar on stderr, or a ``callback(done, total)``.

    ``states``: explicit ground-truth states instead of a path (``models`` is then ignored
    and ``n_states`` is their number): any atoms per state, e.g. a domain turned about a
    hinge or subunits present or absent (:mod:`voxfield.reconstruct.conformations`). They
    are used as given (not superposed), centred on the centroid of all their atoms; ``t``
    of state ``k`` is ``k / (n - 1)``.
    """
    t0 = time.perf_counter()
    explicit = states is not None
    if explicit:
        states = list(states)
        n_states = len(states)
        if any(len(a) == 0 for a in states):
            raise OptionError("every state needs at least one atom")
        models = states
    D, n_images, n_states, pad, chunk = int(D), int(n_images), int(n_states), int(pad), int(chunk)
    apix, resolution = float(apix), float(resolution)
    _check_options(n_images, D, apix, resolution, n_states, snr, float(max_shift_px), pad, chunk)
    models = list(models)
    if not explicit:
        check_same_atoms(models, atom_ids)
        if align:
            models = [models[0]] + [superpose(m, models[0]) for m in models[1:]]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(exist_ok=True)

    # -- random draws, one independent stream each
    s_state, s_rot, s_shift, s_ctf, s_noise = np.random.SeedSequence(int(seed)).spawn(5)
    from scipy.spatial.transform import Rotation

    state = np.random.default_rng(s_state).integers(0, n_states, n_images)
    rot = Rotation.random(n_images, random_state=np.random.default_rng(s_rot)).as_matrix()
    trans = np.random.default_rng(s_shift).uniform(-max_shift_px, max_shift_px, (n_images, 2))
    ctf = random_ctf(
        np.random.default_rng(s_ctf),
        n_images,
        D=D,
        apix=apix,
        defocus=defocus,
        astigmatism=astigmatism,
        kv=kv,
        cs=cs,
        w=w,
    )
    if explicit:
        center = np.concatenate([m.zyx for m in models]).mean(axis=0)
        with _progress_fn(progress, "volumes") as bar:
            vols = atoms_volumes(models, D=D, apix=apix, resolution=resolution, center=center, progress=bar)
        t_states = np.linspace(0.0, 1.0, n_states)
    else:
        center = path_center(models)
        with _progress_fn(progress, "volumes") as bar:
            vols, t_states = state_volumes(
                models, n_states, D=D, apix=apix, resolution=resolution, center=center, progress=bar
            )
    t_img = t_states[state]
    for s in range(n_states):
        _write_mrc(out / "gt" / f"state_{s:03d}.mrc", vols[s], apix)

    # -- clean images, state by state, into the stack; then noise, image by image in order
    import mrcfile

    freqs = half_grid_freqs(D, apix).reshape(-1, 2)
    sign = -1.0 if invert else 1.0
    total = 0.0
    total_sq = 0.0
    batch = 512
    with atomic_path(out / "particles.mrcs") as tmp:
        with mrcfile.new_mmap(tmp, shape=(n_images, D, D), mrc_mode=2, overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = apix
            data = mrc.data
            with _progress_fn(progress, "projecting") as bar:
                done = 0
                for s in range(n_states):
                    idx = np.flatnonzero(state == s)
                    if idx.size == 0:
                        continue
                    fp = FourierProjector(vols[s], pad=pad)
                    for i in range(0, idx.size, batch):
                        sel = idx[i : i + batch]
                        ft = fp.slices(rot[sel])
                        c = ctf_from_table(freqs, ctf[sel]).reshape(len(sel), D, D // 2 + 1)
                        ft = ft * (sign * c) * _phase(D, trans[sel])
                        imgs = image_from_ft(ft, D).astype(np.float32)
                        data[sel] = imgs
                        total += float(imgs.sum(dtype=np.float64))
                        total_sq += float(np.square(imgs, dtype=np.float64).sum())
                        done += len(sel)
                        if bar:
                            bar(done, n_images)
                    del fp
            npix = float(n_images) * D * D
            signal_var = total_sq / npix - (total / npix) ** 2
            noise_std = 0.0 if snr is None else math.sqrt(signal_var / float(snr))
            if snr is not None:
                rng = np.random.default_rng(s_noise)
                with _progress_fn(progress, "noise") as bar:
                    for i in range(0, n_images, chunk):
                        j = min(i + chunk, n_images)
                        noise = rng.standard_normal((j - i, D, D), dtype=np.float32)
                        data[i:j] = data[i:j] + np.float32(noise_std) * noise
                        if bar:
                            bar(j, n_images)
            mrc.update_header_stats()

    # -- metadata
    from voxfield.reconstruct.particles import write_cryodrgn_pkls
    from voxfield.reconstruct.star_io import write_relion31_star

    write_cryodrgn_pkls(out / "poses.pkl", out / "ctf.pkl", rot, trans, ctf, D)
    write_relion31_star(
        out / "particles.star",
        rot=rot,
        trans_px=trans,
        ctf=ctf,
        apix=apix,
        D=D,
        stack=("particles.mrcs", n_images),
        extra_columns={"vfTrueState": state.astype(np.int64), "vfTrueT": t_img},
    )
    with atomic_path(out / "labels.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, state=state.astype(np.int64), t=t_img, t_states=t_states)
    seconds = time.perf_counter() - t0
    meta: dict[str, Any] = {
        "generator": "voxfield.reconstruct.simulate.simulate_dataset",
        "models": [m.name for m in models],
        "n_atoms": len(models[0]) if not explicit else [len(m) for m in models],
        "states": "explicit" if explicit else "path through the models",
        "aligned": bool(align) and not explicit,
        "n_images": n_images,
        "D": D,
        "apix": apix,
        "resolution": resolution,
        "molmap_sigma": sigma_for(resolution),
        "n_states": n_states,
        "t_states": t_states,
        "center_zyx": center,
        "gt_origin_zyx_model_frame": center - (D // 2) * apix,
        "snr": snr,
        "snr_definition": SNR_DEFINITION,
        "signal_var": signal_var,
        "noise_std": noise_std,
        "defocus": list(defocus),
        "astigmatism": float(astigmatism),
        "kv": float(kv),
        "cs": float(cs),
        "w": float(w),
        "phase_shift": 0.0,
        "max_shift_px": float(max_shift_px),
        "shift_distribution": "uniform per axis",
        "rotation_distribution": "uniform on SO(3) (scipy Rotation.random)",
        "invert": bool(invert),
        "contrast": (
            "bright particles: cryoDRGN reconstructs positive density with its defaults (it inverts data)"
            if invert
            else "dark particles: train cryoDRGN with --uninvert-data"
        ),
        "projector": f"Fourier slice, {pad}x zero-padded, trilinear, Nyquist circle",
        "conventions": CONVENTIONS,
        "seed": int(seed),
        "seconds": seconds,
        "files": {
            "particles": "particles.mrcs",
            "star": "particles.star",
            "poses": "poses.pkl",
            "ctf": "ctf.pkl",
            "labels": "labels.npz",
            "gt": [f"gt/state_{s:03d}.mrc" for s in range(n_states)],
        },
    }
    from voxfield.io.metajson import to_jsonable

    write_bytes_atomic(out / "meta.json", (json.dumps(to_jsonable(meta), indent=2) + "\n").encode())
    return SimulationResult(out, n_images, D, apix, n_states, signal_var, noise_std, snr, seconds)


def simulate_adk(
    out_dir: str | os.PathLike[str],
    closed_pdb: str | os.PathLike[str],
    open_pdb: str | os.PathLike[str],
    **kwargs: Any,
) -> SimulationResult:
    """:func:`simulate_dataset` along adenylate kinase's closed → open hinge motion (``t = 0``
    closed, ``t = 1`` open), from two PDB/mmCIF files with the same atoms in the same order
    (checked by residue and atom name; read with :func:`read_model`, which fixes the
    elements of CHARMM-style PDB files). Keyword arguments go to
    :func:`simulate_dataset` (defaults: 20000 images of 64 px at 1.5 Å/px, molmap 4 Å, 50
    states, SNR 0.1)."""
    read = [read_model(p) for p in (closed_pdb, open_pdb)]
    return simulate_dataset(out_dir, [m for m, _ in read], atom_ids=[k for _, k in read], **kwargs)
