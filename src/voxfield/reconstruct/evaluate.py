"""Evaluation of heterogeneous reconstructions against ground truth.

Volume agreement
----------------
FSC curves come from :func:`voxfield.metrics.fourier_shell.fsc` (shells of one frequency
step ``1 / (D * apix)``, shell ``j`` at ``j / (D * apix)`` 1/Å, shell 0 is DC, the last one
at Nyquist for a cubic box). FSC is invariant to a positive scale of either map, so decoded
and ground-truth volumes need not share an intensity scale; a *negative* scale (inverted
contrast) gives a negative FSC, and the per-image AU-FSC takes ``|FSC|``, as CryoBench does.
The volumes must however be on the same grid: same box, same voxel size, same origin and
handedness. Nothing here aligns or flips volumes (CryoBench aligns with ChimeraX first).

AU-FSC (CryoBench)
------------------
CryoBench (Jeon et al. 2024, ``metrics/fsc`` of ml-struct-bio/CryoBench) summarises a
per-image FSC curve by the area under it: ``sklearn.metrics.auc`` (trapezoid rule) of the
FSC over the spatial frequency in **cycles per pixel** (its ``pixres`` column,
``arange(D // 2) / D``), with the absolute value of the FSC in the per-image script
(``cdrgn_per_img_fsc.py``), and the FSC at DC set to 1. A perfect reconstruction therefore
scores about 0.5. CryoBench reports the mean and standard deviation over images (and the
mean per ground-truth class).

:func:`au_fsc` does the same (trapezoid, ``|FSC|``, cycles/pixel) on our shells, which run
from DC to Nyquist *inclusive* (``0 .. D/2`` over ``D``): identical volumes give exactly
0.5 for an even box. CryoBench's shells stop one step short (``(D/2 - 1) / D``) and are
binned slightly differently (shell ``i`` holds radii ``[i - 1, i)`` voxels, ours
``round(r) == i``), so its values are lower by up to about ``1 / D`` (0.008 at D = 128);
pass ``fmax=(D // 2 - 1) / D`` to stop where CryoBench stops.

Images are sampled as CryoBench does by :func:`select_images`: ``arange(0, N, N // n)``.

Latent quality
--------------
:func:`latent_spearman`: absolute Spearman rank correlation between the true interpolation
coordinate and (a) the first principal component of the latents, (b) each latent
dimension (the best one is reported).

:func:`adjusted_rand_index` and :func:`latent_ari`: for discrete (compositional) states, the
adjusted Rand index (Hubert & Arabie 1985) between the true state of each image and the
k-means clusters of its latent (k = the number of true states): 1 for identical partitions,
about 0 for a random one.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError
from voxfield.metrics.fourier_shell import FSCResult, fsc

__all__ = [
    "adjusted_rand_index",
    "au_fsc",
    "fsc_curve",
    "fsc_plot",
    "latent_ari",
    "latent_spearman",
    "per_image_fsc",
    "per_image_fsc_from_files",
    "resolution_at",
    "select_images",
    "soft_mask_from_volume",
]


# ---------------------------------------------------------------------------- FSC basics
def _as_volume(vol: Any, name: str) -> np.ndarray:
    """3-D real float array from a numpy array or anything with ``__array__`` (CPU tensors)."""
    if hasattr(vol, "detach"):  # torch tensor: leave the graph, go to the CPU
        vol = vol.detach().cpu().numpy()
    arr = np.asarray(vol)
    if arr.ndim != 3:
        raise DataError(f"{name}: expected a 3-D volume, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: unsupported dtype {arr.dtype}")
    return arr


def fsc_curve(vol1: Any, vol2: Any, apix: float, mask: np.ndarray | None = None) -> FSCResult:
    """FSC of two volumes on the same grid (voxel size ``apix`` Å), optionally masked.

    Thin wrapper of :func:`voxfield.metrics.fourier_shell.fsc`; ``result.frequency`` is in
    1/Å, ``result.frequency * apix`` in cycles/pixel.
    """
    return fsc(_as_volume(vol1, "vol1"), _as_volume(vol2, "vol2"), apix, mask=mask)


def _curve_result(freq_per_a: np.ndarray, values: np.ndarray, apix: float) -> FSCResult:
    """An :class:`FSCResult` around a bare curve (e.g. a mean of per-image curves)."""
    f = np.asarray(freq_per_a, dtype=np.float64)
    c = np.asarray(values, dtype=np.float64)
    if f.ndim != 1 or f.shape != c.shape or f.size < 2:
        raise DataError(f"FSC curve: frequencies {f.shape} and values {c.shape} must be equal 1-D arrays (>= 2)")
    return FSCResult(frequency=f, fsc=c, n_voxels=np.zeros(f.size, dtype=np.int64),
                     spacing=(float(apix),) * 3, shell_width=float(f[1] - f[0]))


def resolution_at(curve: FSCResult | tuple[np.ndarray, np.ndarray], t: float, apix: float = 1.0) -> float:
    """Resolution in Å where the FSC first falls below ``t`` (0.5, 0.143...).

    ``curve`` is an :class:`FSCResult` or a pair ``(frequency in 1/Å, fsc)``; the rule is
    :meth:`FSCResult.resolution_at` (linear interpolation; the last shell's resolution when
    it never falls below ``t``; ``inf`` when below already at the first shell after DC).
    ``apix`` is only used for a bare pair and does not change the result.
    """
    res = curve if isinstance(curve, FSCResult) else _curve_result(curve[0], curve[1], apix)
    return float(res.resolution_at(t).angstrom)


def soft_mask_from_volume(vol: np.ndarray, threshold: float | None = None, dilate_px: int = 3, soft_px: int = 6,
                          *, percentile: float = 99.99) -> np.ndarray:
    """Soft solvent mask of a (ground-truth or consensus) volume, for masked FSC.

    Voxels ``>= threshold`` (default: half of the ``percentile``-th percentile of ``vol``,
    cryoDRGN's ``gen_mask`` rule, i.e. about half the maximum density) form the core;
    it is dilated by ``dilate_px`` voxels (Euclidean distance) and given a raised-cosine
    edge ``soft_px`` voxels wide: ``0.5 * (1 + cos(pi * d / soft_px))`` at distance
    ``d`` from the dilated core, 0 beyond. Returns float32 in [0, 1], same shape.
    (cryoDRGN's defaults are wider, 3 px dilation + 10 px edge, or 25 Å + 15 Å; ours suit
    small boxes.)
    """
    from scipy import ndimage

    v = _as_volume(vol, "vol").astype(np.float64, copy=False)
    if not np.isfinite(v).all():
        raise DataError("vol: NaN or infinite values")
    if dilate_px < 0 or soft_px < 0:
        raise OptionError(f"dilate_px and soft_px must be >= 0, got {dilate_px}, {soft_px}")
    thr = 0.5 * float(np.percentile(v, percentile)) if threshold is None else float(threshold)
    core = v >= thr
    if not core.any():
        raise DataError(f"mask threshold {thr:g} is above every voxel")
    if core.all():
        return np.ones(v.shape, dtype=np.float32)
    dist = ndimage.distance_transform_edt(~core)  # distance (voxels) to the core
    d = dist - float(dilate_px)  # distance to the dilated core (<= 0 inside it)
    mask = np.zeros(v.shape, dtype=np.float64)
    mask[d <= 0] = 1.0
    if soft_px > 0:
        edge = (d > 0) & (d < soft_px)
        mask[edge] = 0.5 * (1.0 + np.cos(np.pi * d[edge] / soft_px))
    return mask.astype(np.float32)


def au_fsc(fsc_values: np.ndarray, freqs_per_pixel: np.ndarray, *, absolute: bool = True,
           fmax: float = 0.5) -> float:
    """Area under the FSC curve over frequency in cycles/pixel, DC to ``fmax`` (Nyquist).

    Trapezoid rule over the given shells (those with frequency ``<= fmax``), of ``|FSC|``
    (``absolute=True``, CryoBench's per-image AU-FSC) or the signed FSC. A curve equal to 1
    up to Nyquist scores 0.5 (module docstring for the comparison with CryoBench).
    Multiply a frequency in 1/Å by the voxel size in Å to get cycles/pixel.
    """
    c = np.asarray(fsc_values, dtype=np.float64)
    f = np.asarray(freqs_per_pixel, dtype=np.float64)
    if c.ndim != 1 or c.shape != f.shape or c.size < 2:
        raise DataError(f"au_fsc: fsc {c.shape} and frequencies {f.shape} must be equal 1-D arrays (>= 2 shells)")
    if not (np.isfinite(c).all() and np.isfinite(f).all()):
        raise DataError("au_fsc: NaN or infinite values")
    if np.any(np.diff(f) <= 0) or f[0] < 0:
        raise DataError("au_fsc: frequencies must be >= 0 and increasing")
    if f.max() > 0.5 + 1e-6:
        raise DataError(f"au_fsc: frequencies reach {f.max():g} > 0.5 cycles/pixel (were they in 1/Å?)")
    keep = f <= fmax + 1e-9
    y = np.abs(c[keep]) if absolute else c[keep]
    x = f[keep]
    if x.size < 2:
        return 0.0
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


# ---------------------------------------------------------------------------- per image
def select_images(n_images: int, n: int) -> np.ndarray:
    """``n`` evenly spaced image indices among ``n_images``, CryoBench's choice
    (``arange(0, N, N // n)``; all images when ``n >= N``)."""
    if n_images < 1 or n < 1:
        raise OptionError(f"need n_images >= 1 and n >= 1, got {n_images}, {n}")
    if n >= n_images:
        return np.arange(n_images)
    return np.arange(0, n_images, n_images // n)[:n]


class _GTCache:
    """Ground-truth volumes by index: an array [M, D, D, D], a sequence of arrays or paths,
    or a callable ``j -> volume``; the last few loaded are kept."""

    def __init__(self, gt: Any, keep: int = 4) -> None:
        self.gt = gt
        self.keep = keep
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, j: int) -> np.ndarray:
        if j in self.cache:
            return self.cache[j]
        if callable(self.gt):
            v = self.gt(j)
        else:
            item = self.gt[j]
            v = _read_volume(item) if isinstance(item, str | os.PathLike) else item
        arr = _as_volume(v, f"ground-truth volume {j}")
        if len(self.cache) >= self.keep:
            self.cache.pop(next(iter(self.cache)))
        self.cache[j] = arr
        return arr


def _read_volume(path: str | os.PathLike[str]) -> np.ndarray:
    from voxfield.io.registry import read_volume

    vol = read_volume(path)
    data = np.squeeze(np.asarray(vol.data))
    if data.ndim != 3:
        raise DataError(f"expected a 3-D volume, got shape {vol.data.shape}", path)
    return data


def per_image_fsc(decode_fn: Callable[[int], Any], z_or_indices: Sequence[int] | np.ndarray, gt_volumes: Any,
                  gt_index_per_image: Sequence[int] | np.ndarray, apix: float, mask: np.ndarray | None = None, *,
                  fmax: float = 0.5, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Per-image FSC between the volume decoded for each selected image and its ground truth.

    Parameters
    ----------
    decode_fn : ``i -> volume`` (3-D array or tensor) for image index ``i`` (e.g. decode
        the image's latent; or read the volume generated for it from disk).
    z_or_indices : the image indices to evaluate (see :func:`select_images`).
    gt_volumes : ground-truth volumes by index: array ``[M, D, D, D]``, a sequence of arrays
        or file paths, or a callable ``j -> volume``.
    gt_index_per_image : ``[N]``, the ground-truth volume index of every image.
    apix : voxel size in Å (both volumes on the same grid and origin).
    mask : optional soft mask (e.g. :func:`soft_mask_from_volume`) applied to both.
    fmax : upper frequency (cycles/px) of the AU-FSC.
    progress : optional callback ``(done, total)``.

    Returns
    -------
    dict with ``indices`` [n], ``gt_index`` [n], ``au_fsc`` [n] (|FSC| area, see
    :func:`au_fsc`), ``au_fsc_mean``/``au_fsc_std``/``au_fsc_median``, ``au_fsc_per_class``
    (ground-truth index -> mean), ``freq_per_A`` and ``freq_per_px`` [shells],
    ``curves`` [n, shells], ``fsc_mean``/``fsc_std`` [shells], per-image ``res_0.5_A`` and
    ``res_0.143_A`` [n], and ``resolution_0.5_A``/``resolution_0.143_A`` of the mean curve.
    """
    idx = np.asarray(z_or_indices, dtype=np.int64).reshape(-1)
    gt_of = np.asarray(gt_index_per_image, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise DataError("per_image_fsc: no images selected")
    if idx.min() < 0 or idx.max() >= gt_of.size:
        raise DataError(f"per_image_fsc: image indices must be in [0, {gt_of.size}), got {idx.min()}..{idx.max()}")
    gts = _GTCache(gt_volumes)
    curves: list[np.ndarray] = []
    freq: np.ndarray | None = None
    aucs = np.empty(idx.size)
    r5 = np.empty(idx.size)
    r1 = np.empty(idx.size)
    for k, i in enumerate(idx):
        gt = gts(int(gt_of[i]))
        vol = _as_volume(decode_fn(int(i)), f"decoded volume for image {i}")
        if vol.shape != gt.shape:
            raise DataError(f"image {i}: decoded volume {vol.shape} and ground truth {gt.shape} differ in shape")
        res = fsc(vol, gt, apix, mask=mask)
        if freq is None:
            freq = res.frequency
        elif res.frequency.shape != freq.shape:
            raise DataError(f"image {i}: volume grid differs from the first image's")
        curves.append(res.fsc)
        aucs[k] = au_fsc(res.fsc, res.frequency * float(apix), fmax=fmax)
        r5[k] = res.resolution_at(0.5).angstrom
        r1[k] = res.resolution_at(0.143).angstrom
        if progress is not None:
            progress(k + 1, idx.size)
    assert freq is not None
    cur = np.stack(curves)
    mean = cur.mean(axis=0)
    mres = _curve_result(freq, mean, apix)
    per_class: dict[int, float] = {}
    gsel = gt_of[idx]
    for g in np.unique(gsel):
        per_class[int(g)] = float(aucs[gsel == g].mean())
    return {
        "indices": idx,
        "gt_index": gsel,
        "au_fsc": aucs,
        "au_fsc_mean": float(aucs.mean()),
        "au_fsc_std": float(aucs.std()),
        "au_fsc_median": float(np.median(aucs)),
        "au_fsc_per_class": per_class,
        "freq_per_A": freq,
        "freq_per_px": freq * float(apix),
        "curves": cur,
        "fsc_mean": mean,
        "fsc_std": cur.std(axis=0),
        "res_0.5_A": r5,
        "res_0.143_A": r1,
        "resolution_0.5_A": float(mres.resolution_at(0.5).angstrom),
        "resolution_0.143_A": float(mres.resolution_at(0.143).angstrom),
    }


def per_image_fsc_from_files(vol_paths: Sequence[str | os.PathLike[str]], gt_volumes: Any,
                             gt_index_per_volume: Sequence[int] | np.ndarray, apix: float,
                             mask: np.ndarray | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`per_image_fsc` for volumes already on disk (e.g. cryoDRGN ``eval_vol`` output):
    ``vol_paths[k]`` is compared with ground truth ``gt_index_per_volume[k]``. Any format
    :func:`voxfield.io.registry.read_volume` reads (MRC...). ``indices`` in the result are
    positions in ``vol_paths``."""
    paths = [Path(p) for p in vol_paths]
    gt_of = np.asarray(gt_index_per_volume, dtype=np.int64).reshape(-1)
    if gt_of.size != len(paths):
        raise DataError(f"{len(paths)} volume files but {gt_of.size} ground-truth indices")
    return per_image_fsc(lambda k: _read_volume(paths[k]), np.arange(len(paths)), gt_volumes, gt_of, apix,
                         mask=mask, **kwargs)


# ---------------------------------------------------------------------------- latents
def _spearman_abs(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b).statistic
    rho = float(rho)
    return abs(rho) if math.isfinite(rho) else 0.0


def latent_spearman(z: np.ndarray, t_true: np.ndarray) -> dict[str, Any]:
    """|Spearman rho| between the true interpolation coordinate ``t_true`` [N] and the
    latents ``z`` [N, zdim]: ``pc1`` (first principal component of ``z``), ``per_dim``
    (each latent dimension), ``best_dim`` and ``best`` (the best single dimension). For
    ``zdim == 1`` all equal the latent's own correlation. Constant inputs give 0."""
    zz = np.asarray(z, dtype=np.float64)
    if zz.ndim == 1:
        zz = zz[:, None]
    t = np.asarray(t_true, dtype=np.float64).reshape(-1)
    if zz.ndim != 2 or zz.shape[0] != t.size or t.size < 3:
        raise DataError(f"latent_spearman: z {zz.shape} and t_true {t.shape} must have the same N >= 3")
    if not (np.isfinite(zz).all() and np.isfinite(t).all()):
        raise DataError("latent_spearman: NaN or infinite values")
    per_dim = [_spearman_abs(zz[:, j], t) for j in range(zz.shape[1])]
    zc = zz - zz.mean(axis=0)
    if zz.shape[1] == 1:
        pc1 = zc[:, 0]
    else:
        _, _, vt = np.linalg.svd(zc, full_matrices=False)
        pc1 = zc @ vt[0]
    best = int(np.argmax(per_dim))
    return {"pc1": _spearman_abs(pc1, t), "per_dim": per_dim, "best_dim": best, "best": per_dim[best]}


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index of two partitions of the same items (any hashable labels).

    ``ARI = (Σ_ij C(n_ij, 2) − E) / (½(Σ_i C(a_i, 2) + Σ_j C(b_j, 2)) − E)`` with ``n_ij`` the
    contingency table, ``a``/``b`` its row/column sums and ``E = Σ_i C(a_i,2) Σ_j C(b_j,2) / C(n,2)``.
    Symmetric, 1 for identical partitions (up to renaming), 0 in expectation for random ones.
    Two single-cluster partitions give 1.
    """
    a = np.asarray(labels_true).reshape(-1)
    b = np.asarray(labels_pred).reshape(-1)
    if a.size != b.size or a.size < 2:
        raise DataError(f"adjusted_rand_index: label arrays of sizes {a.size} and {b.size} (need equal, >= 2)")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.float64)
    np.add.at(table, (ia, ib), 1.0)

    def c2(x: np.ndarray | float) -> Any:
        return x * (x - 1.0) / 2.0

    sum_ij = float(c2(table).sum())
    sum_a = float(c2(table.sum(axis=1)).sum())
    sum_b = float(c2(table.sum(axis=0)).sum())
    expected = sum_a * sum_b / c2(float(a.size))
    top = 0.5 * (sum_a + sum_b)
    if top == expected:  # both partitions trivial (all one cluster, or all singletons)
        return 1.0
    return float((sum_ij - expected) / (top - expected))


def latent_ari(z: np.ndarray, labels_true: Any, k: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Adjusted Rand index between true discrete states and k-means clusters of the latents.

    ``z`` [N, zdim]; ``labels_true`` [N]; ``k`` defaults to the number of distinct true
    labels. k-means is :func:`voxfield.reconstruct.analysis.kmeans` (k-means++, 5 restarts,
    seeded). Returns ``{"ari", "k", "labels"}``.
    """
    from .analysis import kmeans

    zz = np.asarray(z, dtype=np.float64)
    if zz.ndim == 1:
        zz = zz[:, None]
    lab = np.asarray(labels_true).reshape(-1)
    if zz.ndim != 2 or zz.shape[0] != lab.size:
        raise DataError(f"latent_ari: z {zz.shape} and labels {lab.shape} must have the same N")
    if not np.isfinite(zz).all():
        raise DataError("latent_ari: NaN or infinite latents")
    kk = int(k) if k is not None else int(np.unique(lab).size)
    _, pred = kmeans(zz, kk, seed=seed, reorder=False)
    return {"ari": adjusted_rand_index(lab, pred), "k": kk, "labels": pred}


# ---------------------------------------------------------------------------- plots
def save_png(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically (temporary name, then rename), close it."""
    import matplotlib.pyplot as plt

    from voxfield.io.atomic import atomic_path

    final = Path(path)
    try:
        with atomic_path(final) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return final


def fsc_plot(curves: Mapping[str, Any], path: str | os.PathLike[str], apix: float, *, title: str = "",
             dpi: int = 120) -> Path:
    """FSC curves (label -> ``(freq 1/Å, fsc mean, fsc std or None)`` or an
    :class:`FSCResult`) as a PNG: x in 1/Å with resolution (Å) tick labels on top, the
    0.5 and 0.143 thresholds, a ±1 std band where given. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    nyq = 1.0 / (2.0 * float(apix))
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for label, val in curves.items():
        if isinstance(val, FSCResult):
            f, m, s = val.frequency, val.fsc, None
        else:
            f, m, s = val
        f = np.asarray(f, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        (line,) = ax.plot(f, m, lw=1.5, label=label)
        if s is not None:
            s = np.asarray(s, dtype=np.float64)
            ax.fill_between(f, m - s, m + s, color=line.get_color(), alpha=0.2, lw=0)
    ax.axhline(0.5, color="0.4", ls="--", lw=1, label="0.5")
    ax.axhline(0.143, color="0.4", ls=":", lw=1, label="0.143")
    ax.set_xlim(0.0, nyq)
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.02)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.grid(alpha=0.3)
    top = ax.secondary_xaxis("top")
    top.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{1.0 / x:.3g}" if x > 0 else "∞"))
    top.set_xlabel("resolution (Å)")
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi)
