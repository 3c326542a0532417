"""Orthogonal central slices of an original, a result and their difference."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from voxfield.errors import DataError  # noqa: E402
from voxfield.io.atomic import atomic_path  # noqa: E402
from voxfield.io.volume import Volume  # noqa: E402
from voxfield.metrics import max_abs_error, psnr  # noqa: E402


def spatial_view(vol: Volume, channel: int = 0) -> tuple[np.ndarray, str, tuple[float, ...]]:
    """Reduce ``vol`` to its spatial axes: index ``channel`` on channel-like axes and take
    the middle of time/stack axes. Returns (array, spatial axes, spacing)."""
    data = vol.data
    index: list[int | slice] = []
    for a, n in zip(vol.axes, vol.shape):
        if a in "ZYX":
            index.append(slice(None))
        elif a in "CS":
            if not 0 <= channel < n:
                raise DataError(f"channel {channel} out of range (axis {a} has {n})")
            index.append(channel)
        else:
            index.append(n // 2)
    return np.asarray(data[tuple(index)]), vol.spatial_axes, vol.spacing


def central_slices(arr: np.ndarray, axes: str) -> list[tuple[str, np.ndarray, tuple[str, str]]]:
    """Central planes through a 2-D or 3-D spatial array: (label, plane, (row axis, col axis))."""
    if arr.ndim == 2:
        return [(f"{axes[0]}{axes[1]}", arr, (axes[0], axes[1]))]
    if arr.ndim != 3:
        raise DataError(f"need 2 or 3 spatial axes to draw slices, got {axes!r}")
    out = []
    for k in range(3):
        idx = [slice(None)] * 3
        idx[k] = arr.shape[k] // 2
        rows, cols = [axes[i] for i in range(3) if i != k]
        out.append((f"{rows}{cols} at {axes[k]}={arr.shape[k] // 2}", arr[tuple(idx)], (rows, cols)))
    return out


def compare_figure(original: Volume, result: Volume, path: str | os.PathLike[str], *,
                   channel: int = 0, title: str | None = None, dpi: int = 130) -> Path:
    """Save a PNG: rows original / result / difference, columns the central orthogonal
    slices. Original and result share one colour scale (the original's 0.5-99.5 %
    percentiles); the difference uses a symmetric diverging scale. Pixel aspect follows
    the voxel size."""
    if original.shape != result.shape:
        raise DataError(f"shapes differ: original {original.shape}, result {result.shape}")
    a, axes, spacing = spatial_view(original, channel)
    b, _, _ = spatial_view(result, channel)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    diff = b - a
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max()) + 1e-12
    dmax = float(np.max(np.abs(diff))) or 1e-12
    sp = dict(zip(axes, spacing))
    planes_a, planes_b, planes_d = central_slices(a, axes), central_slices(b, axes), central_slices(diff, axes)
    ncol = len(planes_a)
    fig, grid = plt.subplots(3, ncol, figsize=(3.4 * ncol + 0.8, 9.6), squeeze=False, constrained_layout=True)
    rows = [("original", planes_a, "gray", (lo, hi)), ("result", planes_b, "gray", (lo, hi)),
            ("result − original", planes_d, "RdBu_r", (-dmax, dmax))]
    for r, (label, planes, cmap, (vmin, vmax)) in enumerate(rows):
        im = None
        for c, (name, plane, (ra, ca)) in enumerate(planes):
            ax = grid[r][c]
            im = ax.imshow(plane, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                           aspect=sp.get(ra, 1.0) / sp.get(ca, 1.0), origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label)
        fig.colorbar(im, ax=list(grid[r]), shrink=0.85)
    whole = (f"PSNR {psnr(original.data, result.data):.2f} dB (data range), "
             f"max |error| {max_abs_error(original.data, result.data):.4g}")
    if any(ax in "CS" for ax in original.axes):
        whole += f"; showing channel {channel}"
    fig.suptitle((title + "\n" if title else "") + whole, fontsize=10)
    final = Path(path)
    with atomic_path(final) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return final
