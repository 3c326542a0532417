"""A decoded neural field: blocks, their networks, and evaluation at any voxels.

The coordinate domain (the volume's coordinate axes, see
:class:`~voxfield.compress.field_layout.FieldLayout`) is tiled by blocks (one block for
INIF/SIREN, an octree partition for SCI). Block ``b`` owns the box ``[start, stop)`` and
its network is fitted on that box grown by ``overlap`` voxels on every side inside the
volume (its *extent*); local coordinates run over the extent, ``-1`` at its first voxel
centre and ``+1`` at its last.

Evaluation at a point ``p`` (voxel units, possibly fractional) blends the networks whose
extent contains it with weights that ramp linearly from 0 to 1 across the ``2*overlap``
voxels around each internal face (a partition of unity), so the field is continuous across
blocks and every point is evaluated independently: a region, a slice, every k-th voxel or a
list of points decode to exactly the values of the full decode there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from voxfield.compress.deblock import MARGIN, DeblockParams, deblock, label_map
from voxfield.fields.exact import ExactSiren


@dataclass
class Group:
    """Blocks sharing one architecture, with their networks (exact inference)."""

    blocks: list[int]
    net: ExactSiren


@dataclass
class BlockSet:
    """Block boxes and extents over the coordinate domain."""

    shape: tuple[int, ...]
    starts: np.ndarray  # (n_blocks, n_axes) int64
    stops: np.ndarray
    overlap: int = 0
    bandwidth: tuple[float, ...] | None = None
    ext_starts: np.ndarray = field(init=False)
    ext_stops: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.starts = np.asarray(self.starts, dtype=np.int64).reshape(-1, len(self.shape))
        self.stops = np.asarray(self.stops, dtype=np.int64).reshape(-1, len(self.shape))
        lim = np.asarray(self.shape, dtype=np.int64)
        self.ext_starts = np.maximum(self.starts - self.overlap, 0)
        self.ext_stops = np.minimum(self.stops + self.overlap, lim)

    @property
    def n_blocks(self) -> int:
        return len(self.starts)

    @property
    def ext_shapes(self) -> np.ndarray:
        return self.ext_stops - self.ext_starts

    def cycles(self) -> np.ndarray:
        """Per block and axis, the signal cycles across the block's extent (``bandwidth``
        in cycles/voxel × extent); the extent itself when no bandwidth is set."""
        span = np.maximum(self.ext_shapes - 1, 1).astype(np.float64)
        if self.bandwidth is None:
            return span
        return span * np.asarray(self.bandwidth, dtype=np.float64)[None, :]

    def coord_scale(self) -> np.ndarray:
        """Per block and axis, the half-range of the local coordinate: 1 on every axis
        without a bandwidth (each axis spans [-1, 1], as in SIREN/INIF/SCI), else each
        axis's cycles over the block's largest, so that one unit of coordinate holds the
        same number of signal cycles along every axis."""
        if self.bandwidth is None:
            return np.ones(self.ext_shapes.shape, dtype=np.float64)
        c = self.cycles()
        return c / c.max(axis=1, keepdims=True)

    def local_coords(self, b: int, points: np.ndarray) -> np.ndarray:
        """Voxel positions ``(N, n_axes)`` -> block ``b``'s local coordinates (in [-1, 1]
        along its longest axis)."""
        lo = self.ext_starts[b].astype(np.float64)
        span = np.maximum(self.ext_shapes[b] - 1, 1).astype(np.float64)
        return ((2.0 * (points - lo) / span - 1.0) * self.coord_scale()[b]).astype(np.float32)

    def axis_weight(self, b: int, axis: int, pos: np.ndarray) -> np.ndarray:
        """Blend weight of block ``b`` along ``axis`` at positions ``pos`` (voxel units).

        1 inside the block away from internal faces; a linear ramp over ``[start - overlap,
        start + overlap]`` at an internal lower face (and mirrored at the upper face); 0
        outside the extent. Faces on the volume border get no ramp."""
        pos = np.asarray(pos, dtype=np.float64)
        w = np.ones_like(pos)
        s, e = float(self.starts[b, axis]), float(self.stops[b, axis])
        m = float(self.overlap)
        if m > 0:
            if s > 0:
                w = np.minimum(w, np.clip((pos - (s - m) + 0.5) / (2 * m + 1), 0.0, 1.0))
            if e < self.shape[axis]:
                w = np.minimum(w, np.clip(((e + m) - pos - 0.5) / (2 * m + 1), 0.0, 1.0))
        inside = (pos >= self.ext_starts[b, axis] - 0.5) & (pos <= self.ext_stops[b, axis] - 0.5)
        return np.where(inside, w, 0.0)

    def blocks_touching(self, lows: Sequence[float], highs: Sequence[float]) -> np.ndarray:
        """Indices of blocks whose extent intersects the box ``[lows, highs]`` (inclusive,
        voxel units)."""
        lo = np.asarray(lows, dtype=np.float64)
        hi = np.asarray(highs, dtype=np.float64)
        ok = np.all((self.ext_starts <= hi + 0.5) & (self.ext_stops - 1 >= lo - 0.5), axis=1)
        return np.nonzero(ok)[0]


@dataclass
class NeuralField:
    """Networks + blocks + output mapping: evaluates normalised field values."""

    blocks: BlockSet
    groups: list[Group]
    n_out: int
    deblock: DeblockParams = field(default_factory=DeblockParams)

    def __post_init__(self) -> None:
        self._where: dict[int, tuple[int, int]] = {}
        for g, grp in enumerate(self.groups):
            for k, b in enumerate(grp.blocks):
                self._where[b] = (g, k)

    # ------------------------------------------------------------------ raw evaluation
    def _eval_block(self, b: int, local: np.ndarray) -> np.ndarray:
        """Network ``b`` at local coordinates ``(N, n_axes)`` -> ``(N, n_out)`` float32,
        bit-identical for a point whatever else is evaluated (see ``fields.exact``)."""
        g, k = self._where[b]
        return self.groups[g].net.forward_block(k, local)

    # ------------------------------------------------------------------ grids
    def evaluate_grid(self, index: Sequence[np.ndarray]) -> np.ndarray:
        """Field at the grid ``index[0] × index[1] × ...`` (sorted integer voxel indices per
        coordinate axis) -> ``(*len(index[a]), n_out)``."""
        index = [np.asarray(ix, dtype=np.int64) for ix in index]
        if self.deblock.active and not self._unit_step(index):
            return self._evaluate_filtered_subgrid(index)
        shape = tuple(len(ix) for ix in index)
        acc = np.zeros(shape + (self.n_out,), dtype=np.float64)
        wsum = np.zeros(shape, dtype=np.float64)
        lows = [float(ix.min()) for ix in index]
        highs = [float(ix.max()) for ix in index]
        for b in self.blocks.blocks_touching(lows, highs):
            sel, ws = [], []
            for ax, ix in enumerate(index):
                w = self.blocks.axis_weight(b, ax, ix)
                keep = np.nonzero(w > 0)[0]
                if keep.size == 0:
                    break
                sel.append(keep)
                ws.append(w[keep])
            else:
                pts = np.stack(np.meshgrid(*[index[a][sel[a]] for a in range(len(index))], indexing="ij"), axis=-1)
                vals = self._eval_block(b, self.blocks.local_coords(b, pts.reshape(-1, len(index))))
                vals = vals.reshape(pts.shape[:-1] + (self.n_out,))
                wgrid = ws[0]
                for w in ws[1:]:
                    wgrid = np.multiply.outer(wgrid, w)
                region = np.ix_(*sel)
                acc[region] += vals * wgrid[..., None]
                wsum[region] += wgrid
        out = (acc / np.maximum(wsum, 1e-12)[..., None]).astype(np.float32)
        if self.deblock.active:
            out = self._deblock_region(out, index)
        return out

    @staticmethod
    def _unit_step(index: Sequence[np.ndarray]) -> bool:
        return all(len(ix) <= 1 or bool(np.all(np.diff(ix) == 1)) for ix in index)

    def _deblock_region(self, values: np.ndarray, index: Sequence[np.ndarray]) -> np.ndarray:
        """Apply the face filter to a contiguous region; exact when the region carries a
        margin of :data:`MARGIN` voxels beyond what the caller keeps (see
        :meth:`evaluate_region`)."""
        region = [slice(int(ix[0]), int(ix[-1]) + 1) for ix in index]
        labels = label_map(self.blocks.starts, self.blocks.stops, region)
        return deblock(values, labels, self.deblock)

    def _evaluate_filtered_subgrid(self, index: Sequence[np.ndarray]) -> np.ndarray:
        """Strided or scattered grid under the face filter: decode the covering contiguous
        region (with margin) and pick the requested voxels (exact, not faster)."""
        full = self.evaluate_region([slice(int(ix.min()), int(ix.max()) + 1) for ix in index])
        pick = tuple(np.ix_(*[ix - ix.min() for ix in index]))
        return full[pick]

    def evaluate_region(self, region: Sequence[slice]) -> np.ndarray:
        """Field over a box of unit-step slices (exact under the face filter: decodes a
        margin around the box and crops it)."""
        shape = self.blocks.shape
        if not self.deblock.active:
            return self.evaluate_grid([np.arange(s.start, s.stop) for s in region])
        grown = [slice(max(s.start - MARGIN, 0), min(s.stop + MARGIN, n)) for s, n in zip(region, shape, strict=True)]
        index = [np.arange(g.start, g.stop) for g in grown]
        # evaluate without recursion into the strided path: the grown box is contiguous
        vals = self.evaluate_grid(index)
        crop = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(region, grown, strict=True))
        return vals[crop]

    # ------------------------------------------------------------------ points
    def evaluate_points(self, points: np.ndarray) -> np.ndarray:
        """Field at arbitrary positions ``(P, n_axes)`` in voxel units (fractional allowed)
        -> ``(P, n_out)``. With the face filter on, points must be integer voxels and are
        decoded through their covering region."""
        pts = np.asarray(points, dtype=np.float64)
        if self.deblock.active:
            ipts = np.rint(pts).astype(np.int64)
            lo, hi = ipts.min(axis=0), ipts.max(axis=0)
            full = self.evaluate_region([slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True)])
            return full[tuple((ipts - lo).T)]
        acc = np.zeros((len(pts), self.n_out), dtype=np.float64)
        wsum = np.zeros(len(pts), dtype=np.float64)
        for b in self.blocks.blocks_touching(pts.min(axis=0), pts.max(axis=0)):
            w = np.ones(len(pts))
            for ax in range(pts.shape[1]):
                w *= self.blocks.axis_weight(b, ax, pts[:, ax])
            keep = np.nonzero(w > 0)[0]
            if keep.size:
                vals = self._eval_block(b, self.blocks.local_coords(b, pts[keep]))
                acc[keep] += vals * w[keep, None]
                wsum[keep] += w[keep]
        return (acc / np.maximum(wsum, 1e-12)[:, None]).astype(np.float32)
