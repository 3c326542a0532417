"""Latent-space analysis of a trained heterogeneous reconstruction (``voxfield reconstruct
analyze RUN/``), following cryoDRGN's ``analyze`` conventions.

* PCA by SVD of the centred latents (signs fixed so that each component's largest loading
  is positive, so results are reproducible).
* UMAP (``umap-learn``) when it is installed, else t-SNE (scikit-learn) when that is, else
  the first two principal components, with a one-line warning. ``umap-learn`` is optional.
  Latents with ``zdim <= 2`` are plotted as they are.
* k-means (scipy ``kmeans2``, k-means++ seeding, best of several seeded restarts), centres
  reordered by hierarchical clustering so that consecutive volumes are neighbours in
  latent space; volumes are generated at the **on-data** particle nearest to each centre,
  as cryoDRGN does (``centres.txt`` holds those latents, ``centres_ind.txt`` their particle
  indices, ``centres_mean.txt`` the k-means means).
* PC traversal: ``steps`` points evenly spaced along principal component ``j`` between the
  5th and 95th percentiles of the projections, all other components at 0 (the latent mean),
  as cryoDRGN's ``pc_traversal`` / ``analyze`` (``pc{j}/z_values.txt``, ``pc{j}/vol_XXX.mrc``).

All files are written atomically. Volumes are 0-indexed (``vol_000.mrc``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError
from voxfield.io.atomic import atomic_path, write_bytes_atomic

from .evaluate import latent_spearman, save_png

__all__ = [
    "LatentPCA",
    "analyze",
    "kmeans",
    "latent_pca",
    "latent_umap",
    "nearest_particles",
    "pc_traversal",
    "plot_latent",
    "plot_pca_variance",
]

#: Above this many points, latent plots use hexagonal binning instead of a scatter.
HEXBIN_ABOVE = 5000


def _check_z(z: Any) -> np.ndarray:
    zz = np.asarray(z, dtype=np.float64)
    if zz.ndim == 1:
        zz = zz[:, None]
    if zz.ndim != 2 or zz.shape[0] < 2 or zz.shape[1] < 1:
        raise DataError(f"latents must have shape [N >= 2, zdim >= 1], got {np.shape(z)}")
    if not np.isfinite(zz).all():
        raise DataError("latents: NaN or infinite values")
    return zz


# ---------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class LatentPCA:
    """PCA of latents.

    projections : [N, n_components], coordinates along the first principal components.
    explained_variance_ratio : [min(N, zdim)], variance fraction of every component.
    components : [min(N, zdim), zdim], unit principal axes (rows).
    mean : [zdim], latent mean.
    """

    projections: np.ndarray
    explained_variance_ratio: np.ndarray
    components: np.ndarray
    mean: np.ndarray

    def inverse(self, coords: np.ndarray) -> np.ndarray:
        """Latents for PC coordinates ``coords`` [M, c] (c leading components)."""
        c = np.atleast_2d(np.asarray(coords, dtype=np.float64))
        return self.mean + c @ self.components[: c.shape[1]]


def latent_pca(z: np.ndarray, n_components: int = 2) -> LatentPCA:
    """PCA of ``z`` [N, zdim] by SVD; ``n_components`` is clamped to ``min(N, zdim)``."""
    zz = _check_z(z)
    if n_components < 1:
        raise OptionError(f"n_components must be >= 1, got {n_components}")
    mean = zz.mean(axis=0)
    zc = zz - mean
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    # deterministic signs: the largest-magnitude loading of each axis is positive
    big = np.argmax(np.abs(vt), axis=1)
    sign = np.sign(vt[np.arange(vt.shape[0]), big])
    sign[sign == 0] = 1.0
    vt = vt * sign[:, None]
    var = s**2
    total = float(var.sum())
    evr = var / total if total > 0 else np.zeros_like(var)
    nc = min(n_components, vt.shape[0])
    return LatentPCA(projections=zc @ vt[:nc].T, explained_variance_ratio=evr, components=vt, mean=mean)


# ---------------------------------------------------------------------------- UMAP
def latent_umap(z: np.ndarray, seed: int = 0, *, n_neighbors: int = 15, min_dist: float = 0.1,
                warn: bool = True) -> tuple[np.ndarray, str]:
    """2-D embedding of the latents and the method used: ``"umap"`` (umap-learn),
    ``"tsne"`` (scikit-learn, when umap-learn is missing), ``"pca"`` (neither installed;
    a one-line warning), or ``"latent"`` for ``zdim <= 2`` (the latents themselves)."""
    zz = _check_z(z)
    if zz.shape[1] <= 2:
        return zz.copy(), "latent"
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        umap = None
    if umap is not None:
        nn = max(2, min(n_neighbors, zz.shape[0] - 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", numba notices
            reducer = umap.UMAP(n_components=2, n_neighbors=nn, min_dist=min_dist, random_state=seed)
            emb = reducer.fit_transform(zz.astype(np.float32))
        return np.asarray(emb, dtype=np.float64), "umap"
    try:
        from sklearn.manifold import TSNE  # type: ignore[import-not-found]
    except ImportError:
        TSNE = None  # noqa: N806
    if TSNE is not None:
        if warn:
            warnings.warn("umap-learn is not installed: using t-SNE (scikit-learn) for the 2-D latent embedding",
                          stacklevel=2)
        perplexity = float(min(30.0, max(2.0, (zz.shape[0] - 1) / 3.0)))
        emb = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(zz)
        return np.asarray(emb, dtype=np.float64), "tsne"
    if warn:
        warnings.warn("umap-learn is not installed (pip install umap-learn): using PCA for the 2-D latent embedding",
                      stacklevel=2)
    return latent_pca(zz, 2).projections, "pca"


# ---------------------------------------------------------------------------- k-means
def nearest_particles(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the particle (row of ``z``) nearest to each centre (Euclidean), [k]."""
    from scipy.spatial.distance import cdist

    zz = _check_z(z)
    c = np.atleast_2d(np.asarray(centres, dtype=np.float64))
    if c.shape[1] != zz.shape[1]:
        raise DataError(f"centres have {c.shape[1]} dimensions, latents {zz.shape[1]}")
    out = np.empty(c.shape[0], dtype=np.int64)
    best = np.full(c.shape[0], np.inf)
    step = max(1, (1 << 22) // max(1, c.shape[0]))
    for s0 in range(0, zz.shape[0], step):
        d = cdist(c, zz[s0 : s0 + step])
        j = np.argmin(d, axis=1)
        dj = d[np.arange(c.shape[0]), j]
        better = dj < best
        best[better] = dj[better]
        out[better] = j[better] + s0
    return out


def kmeans(z: np.ndarray, k: int, seed: int = 0, *, n_init: int = 5, iters: int = 50,
           reorder: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """k-means of ``z`` [N, zdim]: returns ``(centres [k, zdim], labels [N])``.

    scipy ``kmeans2`` with k-means++ seeding, ``n_init`` restarts seeded from ``seed`` (the
    lowest within-cluster sum of squares wins), ``iters`` Lloyd iterations each. With
    ``reorder`` the clusters are renumbered along the leaves of an average-linkage
    dendrogram of the centres, so that consecutive clusters are close (cryoDRGN orders its
    k-means volumes the same way). Deterministic for a given seed.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.cluster.vq import kmeans2, vq

    zz = _check_z(z)
    if not 1 <= k <= zz.shape[0]:
        raise OptionError(f"k must be in [1, N={zz.shape[0]}], got {k}")
    best: tuple[float, np.ndarray] | None = None
    for r in range(max(1, n_init)):
        rng = np.random.default_rng([seed, r])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "One of the clusters is empty": handled below
            cent, lab = kmeans2(zz, k, iter=iters, minit="++", rng=rng)
        counts = np.bincount(lab, minlength=k)
        for e in np.nonzero(counts == 0)[0]:  # re-seed an empty cluster at the worst-fit point
            d2 = ((zz - cent[lab]) ** 2).sum(axis=1)
            far = int(np.argmax(d2))
            cent[e] = zz[far]
            lab[far] = e
        lab, _ = vq(zz, cent)
        sse = float(((zz - cent[lab]) ** 2).sum())
        if best is None or sse < best[0] - 1e-12:
            best = (sse, cent.copy())
    assert best is not None
    cent = best[1]
    if reorder and k > 2:
        order = leaves_list(linkage(cent, method="average", optimal_ordering=True))
        cent = cent[order]
    labels, _ = vq(zz, cent)
    return cent, labels.astype(np.int64)


# ---------------------------------------------------------------------------- traversal
def pc_traversal(z: np.ndarray, pc: int = 1, steps: int = 10, *, lo: float = 5.0, hi: float = 95.0,
                 pca: LatentPCA | None = None) -> np.ndarray:
    """``steps`` latents [steps, zdim] along principal component ``pc`` (1-based), evenly
    spaced between the ``lo``-th and ``hi``-th percentiles of the projections on it, the
    other components at 0 (cryoDRGN's ``pc_traversal`` default)."""
    zz = _check_z(z)
    p = pca if pca is not None else latent_pca(zz, zz.shape[1])
    ncomp = p.components.shape[0]
    if not 1 <= pc <= ncomp:
        raise OptionError(f"pc must be in [1, {ncomp}], got {pc}")
    if steps < 1:
        raise OptionError(f"steps must be >= 1, got {steps}")
    proj = (zz - p.mean) @ p.components[pc - 1]
    a, b = np.percentile(proj, [lo, hi])
    t = np.linspace(a, b, steps)
    return p.mean + t[:, None] * p.components[pc - 1][None, :]


# ---------------------------------------------------------------------------- plots
def plot_latent(z2d: np.ndarray, path: str | os.PathLike[str], title: str = "", *,
                labels: np.ndarray | None = None, colour: np.ndarray | None = None, colour_label: str = "",
                centres: np.ndarray | None = None, axis_labels: tuple[str, str] = ("", ""),
                dpi: int = 120) -> Path:
    """Scatter of 2-D latent coordinates (hexbin density above :data:`HEXBIN_ABOVE` points),
    coloured by integer cluster ``labels`` or a continuous ``colour`` (hexbin: mean colour
    per bin), with numbered ``centres`` [k, 2]. A 1-D input gives a histogram, or with
    ``colour`` a scatter of the latent against it. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = np.asarray(z2d, dtype=np.float64)
    if xy.ndim == 1:
        xy = xy[:, None]
    if xy.ndim != 2 or xy.shape[1] not in (1, 2) or xy.shape[0] == 0:
        raise DataError(f"plot_latent needs [N, 2] or [N, 1] coordinates, got {np.shape(z2d)}")
    n = xy.shape[0]
    for name, arr in (("labels", labels), ("colour", colour)):
        if arr is not None and np.shape(arr)[0] != n:
            raise DataError(f"{name} has {np.shape(arr)[0]} values for {n} points")
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    if xy.shape[1] == 1:
        x = xy[:, 0]
        if colour is not None:
            ax.scatter(x, colour, s=2 if n > HEXBIN_ABOVE else 6, alpha=0.5, rasterized=True)
            ax.set_ylabel(colour_label or "colour")
        else:
            ax.hist(x, bins=min(100, max(10, n // 20)), color="C0")
            ax.set_ylabel("particles")
        if centres is not None:
            for i, c in enumerate(np.asarray(centres, dtype=np.float64).reshape(-1)):
                ax.axvline(c, color="k", lw=0.6, alpha=0.6)
                ax.annotate(str(i), (c, 1.0), xycoords=("data", "axes fraction"), fontsize=7, ha="center",
                            va="bottom")
        ax.set_xlabel(axis_labels[0] or "z")
    else:
        x, y = xy[:, 0], xy[:, 1]
        if labels is not None:
            lab = np.asarray(labels)
            cmap = "tab20" if int(lab.max(initial=0)) < 20 else "turbo"
            ax.scatter(x, y, c=lab, cmap=cmap, s=1 if n > HEXBIN_ABOVE else 6, alpha=0.6, rasterized=True,
                       linewidths=0)
        elif colour is not None:
            col = np.asarray(colour, dtype=np.float64)
            if n > HEXBIN_ABOVE:
                art = ax.hexbin(x, y, C=col, reduce_C_function=np.mean, gridsize=80, cmap="viridis", mincnt=1)
            else:
                art = ax.scatter(x, y, c=col, cmap="viridis", s=6, alpha=0.8, linewidths=0)
            fig.colorbar(art, ax=ax, label=colour_label)
        elif n > HEXBIN_ABOVE:
            art = ax.hexbin(x, y, gridsize=80, bins="log", cmap="viridis", mincnt=1)
            fig.colorbar(art, ax=ax, label="particles (log)")
        else:
            ax.scatter(x, y, s=6, alpha=0.6, color="C0", linewidths=0)
        if centres is not None:
            c = np.asarray(centres, dtype=np.float64)
            ax.scatter(c[:, 0], c[:, 1], marker="o", s=30, facecolors="w", edgecolors="k", linewidths=0.8)
            for i, (cx, cy) in enumerate(c[:, :2]):
                ax.annotate(str(i), (cx, cy), fontsize=7, ha="left", va="bottom", xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi)


def plot_pca_variance(explained_variance_ratio: np.ndarray, path: str | os.PathLike[str], *, title: str = "",
                      dpi: int = 120) -> Path:
    """Bar plot of the explained variance ratio per principal component, with the cumulative
    fraction as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evr = np.asarray(explained_variance_ratio, dtype=np.float64).reshape(-1)
    if evr.size == 0:
        raise DataError("no explained variance values to plot")
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    pcs = np.arange(1, evr.size + 1)
    ax.bar(pcs, evr, color="C0", label="per component")
    ax.plot(pcs, np.cumsum(evr), "o-", color="C1", ms=3, label="cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    ax.set_ylim(0.0, 1.05)
    ax.set_xticks(pcs if evr.size <= 20 else pcs[:: max(1, evr.size // 10)])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi)


# ---------------------------------------------------------------------------- files
def _write_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def _write_matrix(path: Path, a: np.ndarray, fmt: str = "%.9g") -> None:
    buf = io.StringIO()
    np.savetxt(buf, np.atleast_2d(a), fmt=fmt)
    _write_text(path, buf.getvalue())


def _write_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    write_bytes_atomic(path, buf.getvalue())


def _default_writer(apix: float) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, vol: np.ndarray) -> None:
        from voxfield.io import mrc
        from voxfield.io.volume import Volume

        mrc.write(Volume(np.asarray(vol, dtype=np.float32), "ZYX", (apix,) * 3, "Å", (0.0, 0.0, 0.0)), path)

    return write


def _write_volumes(points: np.ndarray, folder: Path, decode: Callable[[np.ndarray], Any],
                   write: Callable[[Path, np.ndarray], None], say: Callable[[str], None]) -> list[str]:
    names: list[str] = []
    for i, zp in enumerate(points):
        vol = decode(np.asarray(zp, dtype=np.float32))
        if hasattr(vol, "detach"):
            vol = vol.detach().cpu().numpy()
        vol = np.asarray(vol)
        final = folder / f"vol_{i:03d}.mrc"
        with atomic_path(final) as tmp:  # the writer gets a temporary name ending in vol_XXX.mrc
            write(tmp, vol)
        names.append(final.name)
    say(f"wrote {len(names)} volumes to {folder}")
    return names


def analyze(z: np.ndarray, out_dir: str | os.PathLike[str], *, k: int = 20, seed: int = 0, pcs: int = 2,
            steps: int = 10, decode_volume: Callable[[np.ndarray], Any] | None = None,
            write_volume: Callable[[Path, np.ndarray], None] | None = None, true_t: np.ndarray | None = None,
            apix: float = 1.0, umap: bool = True, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """cryoDRGN-style analysis of latents ``z`` [N, zdim] into ``out_dir``.

    Writes ``z_pca.png`` (PC1/PC2, or a histogram for zdim 1), ``z_umap.png`` (or
    ``z_tsne.png``; nothing extra when falling back to PCA or for zdim <= 2 — see
    :func:`latent_umap`), ``pca_variance.png``, ``kmeans{k}/`` (``centres.txt`` on-data
    centre latents, ``centres_ind.txt``, ``centres_mean.txt``, ``labels.npy``, ``z_pca.png``
    with the centres, ``vol_XXX.mrc``), ``pc{j}/`` (``z_values.txt``, ``vol_XXX.mrc``) for
    ``j = 1..min(pcs, zdim)``, and ``summary.json``.

    ``decode_volume(z_point [zdim] float32) -> volume`` and ``write_volume(path, volume)``
    produce the volumes (``write_volume`` defaults to an MRC writer with voxel size
    ``apix``; it receives a temporary path that is renamed afterwards). Without
    ``decode_volume`` no volumes are written. ``true_t`` [N] (ground-truth interpolation
    coordinate) colours the plots and adds Spearman correlations
    (:func:`~voxfield.reconstruct.evaluate.latent_spearman`) to the summary. ``progress``
    receives one-line messages (e.g. ``rich.console.Console().print``). Returns the summary.
    """
    zz = _check_z(z)
    n, zdim = zz.shape
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress if progress is not None else (lambda _msg: None)
    t = None
    if true_t is not None:
        t = np.asarray(true_t, dtype=np.float64).reshape(-1)
        if t.size != n:
            raise DataError(f"true_t has {t.size} values for {n} latents")
    if write_volume is None:
        write_volume = _default_writer(apix)
    files: list[str] = []

    def rel(p: Path) -> str:
        s = str(p.relative_to(out))
        files.append(s)
        return s

    summary: dict[str, Any] = {"n_particles": int(n), "zdim": int(zdim), "seed": int(seed)}
    colour = {"colour": t, "colour_label": "true t"} if t is not None else {}

    # PCA
    pca = latent_pca(zz, zdim)
    summary["pca_explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio]
    two = pca.projections[:, : min(2, zdim)]
    ax_labels = ("PC1", "PC2") if zdim >= 2 else ("PC1", "")
    plot_latent(two, out / "z_pca.png", f"PCA of z (N={n})", axis_labels=ax_labels, **colour)
    rel(out / "z_pca.png")
    plot_pca_variance(pca.explained_variance_ratio, out / "pca_variance.png", title="PCA of z")
    rel(out / "pca_variance.png")
    say("PCA done")

    # UMAP (or fallback)
    emb_method = "latent" if zdim <= 2 else "pca"
    if umap and zdim > 2:
        emb, emb_method = latent_umap(zz, seed)
        if emb_method in ("umap", "tsne"):
            name = f"z_{emb_method}.png"
            plot_latent(emb, out / name, f"{emb_method.upper()} of z (N={n})",
                        axis_labels=(f"{emb_method.upper()}1", f"{emb_method.upper()}2"), **colour)
            rel(out / name)
            _write_npy(out / f"{emb_method}.npy", emb.astype(np.float32))
            rel(out / f"{emb_method}.npy")
    summary["embedding"] = emb_method
    say(f"2-D embedding: {emb_method}")

    # k-means
    kk = min(k, n)
    centres_mean, labels = kmeans(zz, kk, seed)
    ind = nearest_particles(zz, centres_mean)
    centres = zz[ind]
    kdir = out / f"kmeans{kk}"
    kdir.mkdir(exist_ok=True)
    _write_matrix(kdir / "centres.txt", centres)
    _write_matrix(kdir / "centres_mean.txt", centres_mean)
    _write_text(kdir / "centres_ind.txt", "".join(f"{int(i)}\n" for i in ind))
    _write_npy(kdir / "labels.npy", labels)
    for p in ("centres.txt", "centres_mean.txt", "centres_ind.txt", "labels.npy"):
        rel(kdir / p)
    cpro = (centres - pca.mean) @ pca.components[: min(2, zdim)].T
    plot_latent(two, kdir / "z_pca.png", f"k-means (k={kk}) on PCA of z", labels=labels, centres=cpro,
                axis_labels=ax_labels)
    rel(kdir / "z_pca.png")
    kinfo: dict[str, Any] = {"k": int(kk), "centre_particles": [int(i) for i in ind],
                             "cluster_sizes": [int(c) for c in np.bincount(labels, minlength=kk)]}
    if decode_volume is not None:
        kinfo["volumes"] = [rel(kdir / nm) for nm in _write_volumes(centres, kdir, decode_volume, write_volume, say)]
    summary["kmeans"] = kinfo
    say(f"k-means (k={kk}) done")

    # PC traversals
    trav: dict[str, Any] = {}
    for j in range(1, min(pcs, zdim, pca.components.shape[0]) + 1):
        pts = pc_traversal(zz, j, steps, pca=pca)
        pdir = out / f"pc{j}"
        pdir.mkdir(exist_ok=True)
        _write_matrix(pdir / "z_values.txt", pts)
        rel(pdir / "z_values.txt")
        coord = (pts - pca.mean) @ pca.components[j - 1]
        info: dict[str, Any] = {"pc_range": [float(coord[0]), float(coord[-1])], "steps": int(steps)}
        if decode_volume is not None:
            info["volumes"] = [rel(pdir / nm) for nm in _write_volumes(pts, pdir, decode_volume, write_volume, say)]
        trav[f"pc{j}"] = info
    summary["pc_traversal"] = trav

    if t is not None:
        summary["spearman_true_t"] = latent_spearman(zz, t)
    summary["files"] = sorted(set(files)) + ["summary.json"]
    _write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    say(f"analysis written to {out}")
    return summary
