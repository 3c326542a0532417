"""ChimeraX "hide dust" (``surface dust``) reproduced on the map itself: the baseline that
DeepTracer-Denoising is compared with.

ChimeraX hides, for display only, the connected pieces of the contour surface at ``level``
whose size metric is below a limit (default: metric ``size``, limit 5 Å). Here the pieces
are the connected components of ``map > level``; the voxels of the small ones are "dust".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from voxfield.errors import DataError, OptionError

METRICS = ("size", "area", "volume")


@dataclass
class DustResult:
    """Outcome of :func:`dust_mask` (masks have the map's shape).

    ``component_metric[i]`` is the metric of component ``i + 1`` (Å, Å^2 or Å^3).
    """

    dust: np.ndarray
    surface: np.ndarray
    kept: np.ndarray
    n_components: int
    n_dust: int
    metric: str
    limit: float
    level: float
    component_metric: np.ndarray

    def noise_mask(self) -> np.ndarray:
        """What the baseline calls noise: voxels at or below the level, or in dust."""
        return ~self.kept


def _spacing(spacing: float | Sequence[float]) -> np.ndarray:
    try:
        sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)).copy()
    except (TypeError, ValueError):
        raise OptionError(f"spacing must be a number or a (z, y, x) triple, got {spacing!r}") from None
    if not (np.isfinite(sp).all() and (sp > 0).all()):
        raise OptionError(f"spacing must be positive and finite, got {spacing!r}")
    return sp


def _check(map: np.ndarray, level: float, size: float, metric: str) -> tuple[np.ndarray, float, float]:
    if metric not in METRICS:
        raise OptionError(f"unknown dust metric {metric!r} (choose from {', '.join(METRICS)})")
    try:
        lvl, lim = float(level), float(size)
    except (TypeError, ValueError):
        raise OptionError(f"level and size must be numbers, got {level!r}, {size!r}") from None
    if not math.isfinite(lvl):
        raise OptionError(f"level must be finite, got {level!r}")
    if not (math.isfinite(lim) and lim > 0):
        raise OptionError(f"dust size limit must be positive and finite, got {size!r}")
    a = np.asarray(map)
    if a.ndim != 3:
        raise DataError(f"map must be 3-D, got shape {a.shape}")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise DataError(f"map must be real-valued, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise DataError("map contains NaN or infinite values")
    return a, lvl, lim


def _bbox_size(labels: np.ndarray, n: int, sp: np.ndarray) -> np.ndarray:
    """Largest bounding-box edge (max index - min index + 1) * spacing of each component."""
    out = np.zeros(n)
    for i, sl in enumerate(ndimage.find_objects(labels, max_label=n)):
        if sl is not None:
            out[i] = max((s.stop - s.start) * d for s, d in zip(sl, sp))
    return out


def _areas(a: np.ndarray, labels: np.ndarray, n: int, lvl: float, sp: np.ndarray) -> np.ndarray:
    """Marching-cubes surface area (Å^2) of each component's piece of the contour surface.

    The whole map, padded by one below-level voxel (so that pieces touching the box edge are
    closed, like ChimeraX's capped faces), is contoured once at ``level``. Each vertex lies
    on a grid edge between an above-level voxel and a voxel at or below the level; a
    triangle belongs to the component of the above-level end of its vertices' edges. The
    triangle areas, summed per component, are what ``skimage.measure.mesh_surface_area``
    gives for that component's mesh.
    """
    from skimage.measure import marching_cubes

    low = min(float(a.min()), lvl) - max(1.0, abs(lvl))
    work = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    padded = np.pad(work, 1, constant_values=low)
    verts, faces, _, _ = marching_cubes(padded, level=lvl)
    idx = verts - 1.0
    hi_bound = np.asarray(a.shape) - 1
    lo = np.clip(np.floor(idx + 1e-6).astype(np.int64), 0, hi_bound)
    hi = np.clip(np.ceil(idx - 1e-6).astype(np.int64), 0, hi_bound)
    vlab = np.maximum(labels[tuple(lo.T)], labels[tuple(hi.T)])
    tlab = vlab[faces].max(axis=1)
    p = verts[faces] * sp  # (n_faces, 3 vertices, 3 coordinates) in Å
    tri = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    return np.bincount(tlab, weights=tri, minlength=n + 1)[1 : n + 1]


def dust_mask(map: np.ndarray, level: float, spacing: float | Sequence[float], *,
              size: float = 5.0, metric: str = "size") -> DustResult:
    """Find the dust of ``map`` contoured at ``level``, as ChimeraX ``surface dust`` does.

    * The surface encloses the voxels with ``map > level`` (at or below: outside).
    * Pieces are connected components with **face** connectivity (the default structure of
      ``scipy.ndimage.label``): ChimeraX's marching-cubes surface joins two above-level
      voxels through a shared face, while voxels touching only at an edge or a corner give
      separate pieces (a marching-cubes ambiguity aside).
    * Metrics per component, with ``spacing`` in Å (a float or ``(z, y, x)``):

      - ``"size"``: largest bounding-box edge, ``(max index - min index + 1) * spacing``
        along each axis (the voxel box; ChimeraX's box of the triangulated surface is a
        little smaller, as the surface passes between voxel centres);
      - ``"volume"``: voxel count times the voxel volume (Å^3);
      - ``"area"``: area (Å^2) of the component's piece of the marching-cubes surface at
        ``level`` (one contour of the whole map, split by component; see ``_areas``).

    A component is dust when its metric is strictly below ``size`` (the limit).
    """
    a, lvl, lim = _check(map, level, size, metric)
    sp = _spacing(spacing)
    surface = a > lvl
    labels, n = ndimage.label(surface)
    if n == 0:
        values = np.zeros(0)
    elif metric == "volume":
        values = np.bincount(labels.ravel(), minlength=n + 1)[1:] * float(np.prod(sp))
    elif metric == "size":
        values = _bbox_size(labels, n, sp)
    else:
        values = _areas(a, labels, n, lvl, sp)
    is_dust = np.concatenate([[False], values < lim])
    dust = is_dust[labels]
    return DustResult(dust=dust, surface=surface, kept=surface & ~dust, n_components=int(n),
                      n_dust=int(is_dust.sum()), metric=metric, limit=lim, level=lvl,
                      component_metric=values)


def hide_dust(map: np.ndarray, level: float, spacing: float | Sequence[float], *,
              size: float = 5.0, metric: str = "size") -> np.ndarray:
    """Copy of ``map`` with the voxels of dust components (see :func:`dust_mask`) set to 0."""
    res = dust_mask(map, level, spacing, size=size, metric=metric)
    out = np.array(map, copy=True)
    out[res.dust] = 0
    return out
