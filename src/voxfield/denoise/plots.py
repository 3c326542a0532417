"""Figures of the denoising evaluation: precision–recall curves and score histograms
(the paper's Fig. 6), written as PNG files atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from voxfield.errors import DataError
from voxfield.io.atomic import atomic_path

from .confusion import ThresholdSweep, _mask


def _save(fig: object, path: str | os.PathLike[str], dpi: int) -> Path:
    import matplotlib.pyplot as plt

    final = Path(path)
    try:
        with atomic_path(final) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")  # type: ignore[attr-defined]
    finally:
        plt.close(fig)  # type: ignore[arg-type]
    return final


def plot_pr_curves(curves: dict[str, ThresholdSweep], path: str | os.PathLike[str], *,
                   points: dict[str, tuple[float, float]] | None = None, title: str = "",
                   dpi: int = 120) -> Path:
    """Precision–recall curves of the noise class (recall = TPR on x, precision on y), one
    line per named :class:`ThresholdSweep`, with optional marked operating points
    (label -> (recall, precision)). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, sw in curves.items():
        ok = np.isfinite(sw.tpr) & np.isfinite(sw.precision)
        ax.plot(sw.tpr[ok], sw.precision[ok], label=name, lw=1.5)
    for name, (rec, prec) in (points or {}).items():
        ax.plot([rec], [prec], marker="o", ls="none", ms=7, label=name)
    ax.set_xlabel("recall (TPR, noise)")
    ax.set_ylabel("precision (noise)")
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    if curves or points:
        ax.legend(fontsize=8, loc="lower left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_score_histogram(score: np.ndarray, structure_label: np.ndarray, valid: np.ndarray | None,
                         path: str | os.PathLike[str], *, thresholds: dict[str, float] | None = None,
                         title: str = "", bins: int = 100, dpi: int = 120) -> Path:
    """Overlaid relative-frequency (density) histograms of ``score`` over the valid voxels:
    actual noise in red, actual structure in blue, with a vertical line per named threshold
    (the paper's Fig. 6.I.(a)). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.asarray(score)
    lab = _mask(structure_label, "structure_label", s.shape)
    v = np.ones(s.shape, dtype=bool) if valid is None else _mask(valid, "valid", s.shape)
    noise = s[v & ~lab].astype(np.float64)
    struct = s[v & lab].astype(np.float64)
    both = np.concatenate([noise, struct])
    if both.size == 0:
        raise DataError("no valid voxels to plot")
    if not np.isfinite(both).all():
        raise DataError("score: NaN or infinite values among the valid voxels")
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    if noise.size:
        ax.hist(noise, bins=edges, density=True, color="tab:red", alpha=0.5, label=f"noise ({noise.size})")
    if struct.size:
        ax.hist(struct, bins=edges, density=True, color="tab:blue", alpha=0.5, label=f"structure ({struct.size})")
    colors = ["k", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for i, (name, t) in enumerate((thresholds or {}).items()):
        ax.axvline(float(t), color=colors[i % len(colors)], ls="--", lw=1.2, label=f"{name} = {float(t):.4g}")
    ax.set_xlabel("score")
    ax.set_ylabel("relative frequency (density)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)
