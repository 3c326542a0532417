"""Deblocking across block faces, after SCI (which uses H.264's adaptive deblocking filter,
List et al. 2003).

At every face between two blocks, along each coordinate axis in turn, the three samples on
each side ``p2 p1 p0 | q0 q1 q2`` are filtered with H.264's normal-strength rule carried
over to real values:

* the face is filtered only where ``|p0-q0| < alpha`` and ``|p1-p0| < beta`` and
  ``|q1-q0| < beta`` — a small step between smooth sides is a blocking artefact, a large
  one is a real edge and is kept;
* ``delta = clip(((q0-p0)*4 + (p1-q1)) / 8, -tc, tc)``; ``p0 += delta``, ``q0 -= delta``;
* where ``|p2-p0| < beta``: ``p1 += clip((p2 + (p0+q0)/2 - 2*p1) / 2, -tc, tc)``, and the
  same for ``q1``.

``alpha``, ``beta`` and ``tc`` are in the field's normalised units ([-1, 1]); the encoder
picks them by minimising the error against the original (the "adaptive" part) and stores
them. The filter reads at most 3 samples on each side of a face, so decoding a region with a
margin of :data:`MARGIN` voxels and cropping gives exactly the full decode's values there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MARGIN = 3


@dataclass(frozen=True)
class DeblockParams:
    """Filter thresholds (normalised units); ``tc == 0`` switches the filter off."""

    alpha: float = 0.0
    beta: float = 0.0
    tc: float = 0.0

    @property
    def active(self) -> bool:
        return self.tc > 0 and self.alpha > 0 and self.beta > 0

    def to_list(self) -> list[float]:
        return [self.alpha, self.beta, self.tc]

    @classmethod
    def from_list(cls, v: Sequence[float]) -> DeblockParams:
        return cls(float(v[0]), float(v[1]), float(v[2]))


def _filter_axis(field: np.ndarray, labels: np.ndarray, axis: int, prm: DeblockParams) -> None:
    """Filter, in place, every face along ``axis`` (``field``: ``(*coords, C)``)."""
    n = field.shape[axis]
    if n < 6:
        return
    lab = np.moveaxis(labels, axis, 0)
    f = np.moveaxis(field, axis, 0)  # view: writes land in ``field``
    src = f.copy()  # every face reads unfiltered samples: faces never chain within an axis
    # a face between positions i-1 and i where the block label changes, with 3 samples of
    # the same block on each side
    for i in np.nonzero((lab[1:] != lab[:-1]).any(axis=tuple(range(1, lab.ndim))))[0] + 1:
        if i < 3 or i > n - 3:
            continue
        face = (lab[i - 1] != lab[i]) & (lab[i - 3] == lab[i - 1]) & (lab[i + 2] == lab[i])
        if not face.any():
            continue
        p2, p1, p0 = src[i - 3], src[i - 2], src[i - 1]
        q0, q1, q2 = src[i], src[i + 1], src[i + 2]
        m = face[..., None] & (np.abs(p0 - q0) < prm.alpha) & (np.abs(p1 - p0) < prm.beta) & (np.abs(q1 - q0) < prm.beta)
        if not m.any():
            continue
        delta = np.clip(((q0 - p0) * 4 + (p1 - q1)) / 8, -prm.tc, prm.tc)
        dp1 = np.clip((p2 + (p0 + q0) / 2 - 2 * p1) / 2, -prm.tc, prm.tc)
        dq1 = np.clip((q2 + (p0 + q0) / 2 - 2 * q1) / 2, -prm.tc, prm.tc)
        ap = m & (np.abs(p2 - p0) < prm.beta)
        aq = m & (np.abs(q2 - q0) < prm.beta)
        new_p1 = np.where(ap, p1 + dp1, p1)
        new_q1 = np.where(aq, q1 + dq1, q1)
        new_p0 = np.where(m, p0 + delta, p0)
        new_q0 = np.where(m, q0 - delta, q0)
        f[i - 2], f[i - 1], f[i], f[i + 1] = new_p1, new_p0, new_q0, new_q1


def deblock(field: np.ndarray, labels: np.ndarray, prm: DeblockParams) -> np.ndarray:
    """Deblocked copy of ``field`` (``(*coord_shape, C)``); ``labels`` (``coord_shape``)
    gives each voxel's block index."""
    out = np.array(field, dtype=np.float32, copy=True)
    if not prm.active:
        return out
    for axis in range(labels.ndim):
        _filter_axis(out, labels, axis, prm)
    return out


def label_map(starts: np.ndarray, stops: np.ndarray, region: Sequence[slice]) -> np.ndarray:
    """Block index of every voxel of ``region`` (unit-step slices over the coordinate axes),
    from block boxes ``starts``/``stops`` of shape ``(n_blocks, n_axes)``."""
    shape = tuple(s.stop - s.start for s in region)
    lab = np.full(shape, -1, dtype=np.int32)
    for b in range(len(starts)):
        sl = []
        for ax, r in enumerate(region):
            lo, hi = max(int(starts[b, ax]), r.start), min(int(stops[b, ax]), r.stop)
            if lo >= hi:
                break
            sl.append(slice(lo - r.start, hi - r.start))
        else:
            lab[tuple(sl)] = b
    return lab


def choose_params(field: np.ndarray, target: np.ndarray, labels: np.ndarray) -> DeblockParams:
    """Search a small grid of strengths and keep the one with the lowest squared error
    against ``target`` (the original, normalised); off when nothing helps."""
    base = float(np.mean((field - target) ** 2))
    best, best_err = DeblockParams(), base
    rmse = np.sqrt(base)
    for k_tc in (0.5, 1.0, 2.0, 4.0):
        for k_beta in (2.0, 4.0, 8.0):
            prm = DeblockParams(alpha=float(np.float32(3 * k_beta * rmse)), beta=float(np.float32(k_beta * rmse)),
                                tc=float(np.float32(k_tc * rmse)))
            err = float(np.mean((deblock(field, labels, prm) - target) ** 2))
            if err < best_err * (1 - 1e-4):
                best, best_err = prm, err
    return best
