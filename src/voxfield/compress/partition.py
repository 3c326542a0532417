"""SCI's adaptive partition of a volume into spectrum-concentrated blocks.

Implements the "Adaptive Partitioning" step of SCI (Yang et al., "Spectrum Concentrated
Implicit Neural Compression", eqs. 7-12) as pure numpy/scipy functions:

1. :func:`octree` enumerates every candidate block: the nodes of a 2^n-ary tree over the
   n coordinate axes, down to ``levels`` levels (level 1 = the whole domain).
2. :func:`spectrum_concentration` scores a block by eq. 9: the share of the top-``m``
   Fourier magnitudes in the block's whole amplitude spectrum (``D`` in (0, 1]).
3. :func:`sci_partition` picks the set of tree nodes that tiles the domain and maximises
   ``sum_i D_i * |x_i| / |x_root|`` with at most ``max_blocks`` blocks (eqs. 8, 11, 12),
   an integer linear program solved with :func:`scipy.optimize.milp` (HiGHS). The paper's
   weight ``1 / 2^(n l)`` is the relative volume of a level-``l`` node for even splits; the
   relative volume itself is used here so that uneven splits are weighted correctly.

Data convention: ``data`` has shape ``(*coord_shape, C)``. The first n axes (n = 1..4:
Z/Y/X, possibly T or a stack index) are the coordinate axes the network takes as input,
the last axis holds the C >= 1 output channels. A plain 3-D map is passed as
``vol[..., None]``.

Splitting rule: an axis of length L is halved into ``(L + 1) // 2`` and ``L // 2`` voxels
(the first half takes the odd voxel) when ``L >= 2 * min_size``, and is left whole
otherwise; a node none of whose axes can be split is a leaf of the tree even above
``levels``.

The ablations of SCI's Table 2 are :func:`equidistant_partition` ("EP") and
:func:`no_partition` ("NP"). :func:`block_table` / :func:`blocks_from_table` turn a
partition into JSON-able data for a file header and back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.fft
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from voxfield.errors import DataError, FormatError, OptionError

__all__ = [
    "Block",
    "Octree",
    "block_table",
    "blocks_from_table",
    "equidistant_partition",
    "is_tiling",
    "no_partition",
    "octree",
    "partition_objective",
    "sci_partition",
    "select_partition",
    "spectrum_concentration",
    "with_concentration",
]

TABLE_VERSION = 1

# Merges of sibling blocks back into their parent are accepted when they lose at most this
# much of the (max-normalised) objective: resolves exact ties (constant regions, where every
# split scores the same) towards fewer blocks, deterministically.
_MERGE_TOL = 1e-9


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One axis-aligned block of the coordinate grid.

    ``start``/``stop`` are half-open voxel bounds along the n coordinate axes (channels are
    never split), ``level`` the tree level it comes from (1 = the whole domain), ``D`` its
    spectrum concentration (eq. 9, in (0, 1]; NaN when not computed). Equality and hashing
    compare bounds and level only, not ``D``.
    """

    start: tuple[int, ...]
    stop: tuple[int, ...]
    level: int = 1
    D: float = field(default=math.nan, compare=False)

    @property
    def ndim(self) -> int:
        """Number of coordinate axes n."""
        return len(self.start)

    @property
    def shape(self) -> tuple[int, ...]:
        """Block extent in voxels along each coordinate axis, shape ``(n,)``."""
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def size(self) -> int:
        """Number of grid points (voxels) covered, channels not counted."""
        return math.prod(self.shape)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Index of the block in an array ``(*coord_shape, C)``: ``data[block.slices]``."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (``D`` is ``None`` when unknown)."""
        return {
            "start": [int(v) for v in self.start],
            "stop": [int(v) for v in self.stop],
            "level": int(self.level),
            "D": None if not math.isfinite(self.D) else float(self.D),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Block:
        """Inverse of :meth:`to_dict`; raises :class:`FormatError` on malformed input."""
        if not isinstance(d, Mapping):
            raise FormatError(f"block entry must be a mapping, got {type(d).__name__}")
        try:
            start, stop, level, D = d["start"], d["stop"], d.get("level", 1), d.get("D")
        except KeyError as exc:
            raise FormatError(f"block entry lacks {exc.args[0]!r}") from None
        return _make_block(start, stop, level, D)


def _as_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise FormatError(f"block {what} must be an integer, got {v!r}")
    return int(v)


def _make_block(start: Any, stop: Any, level: Any, D: Any) -> Block:
    """Validated :class:`Block` from untrusted (header) values."""
    if not isinstance(start, Sequence) or not isinstance(stop, Sequence) or isinstance(start, str | bytes):
        raise FormatError("block start/stop must be lists of integers")
    s0 = tuple(_as_int(v, "start") for v in start)
    s1 = tuple(_as_int(v, "stop") for v in stop)
    if not s0 or len(s0) != len(s1):
        raise FormatError(f"block start {list(s0)} and stop {list(s1)} differ in length or are empty")
    if any(a < 0 or b <= a for a, b in zip(s0, s1)):
        raise FormatError(f"block bounds {list(s0)}..{list(s1)} are not 0 <= start < stop")
    lev = _as_int(level, "level")
    if lev < 1:
        raise FormatError(f"block level must be >= 1, got {lev}")
    if D is None:
        dval = math.nan
    elif isinstance(D, int | float | np.floating) and not isinstance(D, bool):
        dval = float(D)
    else:
        raise FormatError(f"block D must be a number or null, got {D!r}")
    return Block(s0, s1, lev, dval)


# --------------------------------------------------------------------------------------
# Spectrum concentration (eq. 9)
# --------------------------------------------------------------------------------------


def _check_m(m: int) -> int:
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise OptionError(f"m (number of top spectrum values) must be an integer >= 1, got {m!r}")
    return int(m)


def _magnitude_spectrum(block_data: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Half-spectrum amplitudes ``sum_c |rfftn(block[..., c])|``, float64.

    ``block_data``: ``(*block_shape, C)``. Returns the rfftn layout ``(*block_shape[:-1],
    block_shape[-1] // 2 + 1)`` over the n coordinate axes, magnitudes summed over channels.
    """
    n = block_data.ndim - 1
    axes = tuple(range(n))
    total: np.ndarray | None = None
    for c in range(block_data.shape[-1]):
        x = np.asarray(block_data[..., c], dtype=np.float64)  # rfftn keeps float32 in float32
        mag = np.abs(scipy.fft.rfftn(x, axes=axes, workers=workers))
        total = mag if total is None else total + mag
    assert total is not None
    return total


def _hermitian_weights(last_len: int) -> np.ndarray:
    """How many full-spectrum bins each rfft bin along the last axis stands for.

    A real signal's spectrum satisfies ``|F(k)| = |F(-k)|``; rfft keeps bins
    ``0..L//2`` of the last axis. Bin 0 and (for even L) bin L/2 pair with bins inside the
    kept half, every other bin also stands for its mirror in the dropped half.
    """
    w = np.full(last_len // 2 + 1, 2.0)
    w[0] = 1.0
    if last_len % 2 == 0:
        w[-1] = 1.0
    return w


def spectrum_concentration(block_data: np.ndarray, m: int = 1, *, workers: int | None = None) -> float:
    """Spectrum concentration D of one block (SCI eq. 9), in (0, 1].

    ``D = (sum of the m largest |F(k)|) / (sum_k |F(k)|)`` where ``|F(k)|`` is the
    amplitude of the **full** n-D discrete Fourier spectrum over the coordinate axes
    (the DC term included, as in the paper and the authors' BRIEF code), summed over the
    C channels. It is computed from ``rfftn`` in float64, each half-spectrum bin counted
    as many times as it appears in the full spectrum (Hermitian symmetry), so the result
    equals the full-FFT value.

    ``block_data``: array ``(*block_shape, C)`` (n >= 1 coordinate axes, any real dtype).
    ``m``: how many top values form the numerator (the paper uses M = 1). When ``m`` is at
    least the number of spectrum values, D = 1.

    Constant and all-zero blocks: a non-zero constant block has all its energy at DC, so
    D = 1 exactly; an all-zero block has no spectrum (0/0) and is *defined* as D = 1
    (perfectly concentrated: nothing to represent). D is dimensionless.
    """
    m = _check_m(m)
    a = np.asarray(block_data)
    if a.ndim < 2 or a.size == 0:
        raise DataError(f"block data must have shape (*coord_shape, C) with n >= 1 coordinate axes, got {a.shape}")
    if np.iscomplexobj(a):
        raise DataError("block data must be real")
    spec = _magnitude_spectrum(a, workers)
    weights = _hermitian_weights(a.shape[a.ndim - 2])
    total = float(np.sum(spec * weights))  # weights broadcast along the last rfft axis
    if not np.isfinite(total):
        raise DataError("block data contains NaN or Inf")
    if total <= 0.0:
        return 1.0
    n_full = math.prod(a.shape[:-1])
    if m >= n_full:
        return 1.0
    return min(1.0, _top_m_sum(spec, weights, m) / total)


def _top_m_sum(spec: np.ndarray, weights: np.ndarray, m: int) -> float:
    """Sum of the m largest values of the full spectrum, given its half ``spec``.

    Every half-spectrum bin appears once or twice in the full spectrum, so the m largest
    full values are among the m largest half values: take those, largest first, each
    repeated per its weight, until m values are summed.
    """
    flat = spec.reshape(-1)
    wflat = np.broadcast_to(weights, spec.shape).reshape(-1)
    k = min(m, flat.size)
    idx = np.argpartition(flat, flat.size - k)[flat.size - k :] if k < flat.size else np.arange(flat.size)
    order = idx[np.argsort(-flat[idx], kind="stable")]
    remaining, acc = m, 0.0
    for i in order:
        take = min(remaining, int(wflat[i]))
        acc += take * float(flat[i])
        remaining -= take
        if remaining == 0:
            break
    return acc


# --------------------------------------------------------------------------------------
# The tree of candidate blocks (eq. 7)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Octree:
    """All candidate blocks: a 2^n-ary tree over the coordinate axes, breadth-first.

    ``nodes[0]`` is the root (level 1); ``parent[i]`` is the index of node i's parent (-1
    for the root); ``children[i]`` the indices of its children, in order of ``start``
    (empty for a leaf of the tree). Node ``D`` values are NaN (see :func:`with_concentration`).
    """

    shape: tuple[int, ...]
    nodes: tuple[Block, ...]
    parent: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def leaves(self) -> list[int]:
        """Indices of the tree's leaves (nodes without children); they tile the domain."""
        return [i for i, ch in enumerate(self.children) if not ch]

    def path(self, i: int) -> list[int]:
        """Node indices from node ``i`` up to the root, both included."""
        out = [i]
        while self.parent[out[-1]] >= 0:
            out.append(self.parent[out[-1]])
        return out

    def level_counts(self) -> dict[int, int]:
        """Number of nodes at each level."""
        counts: dict[int, int] = {}
        for b in self.nodes:
            counts[b.level] = counts.get(b.level, 0) + 1
        return counts


def _check_shape(shape: Iterable[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise OptionError(f"shape must be a sequence of integers, got {shape!r}") from None
    if not out or any(s < 1 for s in out):
        raise OptionError(f"shape must have >= 1 axes of length >= 1, got {out}")
    return out


def _check_levels(levels: int, what: str = "levels") -> int:
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 1:
        raise OptionError(f"{what} must be an integer >= 1 (1 = the whole volume), got {levels!r}")
    return int(levels)


def _check_min_size(min_size: int | Sequence[int], n: int) -> tuple[int, ...]:
    vals = [min_size] * n if isinstance(min_size, int | np.integer) else list(min_size)
    if len(vals) != n or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in vals):
        raise OptionError(f"min_size must be an integer >= 1 or one per coordinate axis ({n}), got {min_size!r}")
    return tuple(int(v) for v in vals)


def _split_axis(a: int, b: int, min_len: int) -> list[tuple[int, int]]:
    """Halves of ``[a, b)``: first half ``(L + 1) // 2``; whole when ``L < 2 * min_len``."""
    length = b - a
    if length < 2 * min_len:
        return [(a, b)]
    mid = a + (length + 1) // 2
    return [(a, mid), (mid, b)]


def _child_bounds(block: Block, min_size: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Bounds of a node's children in C order (= sorted by start); [] when unsplittable."""
    per_axis = [_split_axis(a, b, ms) for a, b, ms in zip(block.start, block.stop, min_size)]
    if all(len(p) == 1 for p in per_axis):
        return []
    return [(tuple(p[0] for p in combo), tuple(p[1] for p in combo)) for combo in itertools.product(*per_axis)]


def octree(shape: Sequence[int], levels: int, min_size: int | Sequence[int] = 4) -> Octree:
    """Build the tree of candidate blocks over a coordinate grid.

    ``shape``: the coordinate shape ``(S_1, ..., S_n)`` (no channel axis). ``levels``:
    depth, 1 = root only. ``min_size``: an axis shorter than ``2 * min_size`` voxels is not
    split (an int for all axes, or one per axis; pass a large value to never split an axis
    such as a short T or stack axis). Splitting halves every splittable axis, first half
    ``(L + 1) // 2``, so a node has 2^k children for its k splittable axes.

    A 100^3 grid with levels=4 (and min_size <= 6) gives 1 + 8 + 64 + 512 = 585 nodes.
    """
    shp = _check_shape(shape)
    levels = _check_levels(levels)
    ms = _check_min_size(min_size, len(shp))
    nodes: list[Block] = [Block(tuple(0 for _ in shp), shp, 1)]
    parent: list[int] = [-1]
    children: list[list[int]] = [[]]
    i = 0
    while i < len(nodes):  # breadth first: nodes is the queue
        node = nodes[i]
        if node.level < levels:
            for start, stop in _child_bounds(node, ms):
                children[i].append(len(nodes))
                nodes.append(Block(start, stop, node.level + 1))
                parent.append(i)
                children.append([])
        i += 1
    return Octree(shp, tuple(nodes), tuple(parent), tuple(tuple(c) for c in children))


# --------------------------------------------------------------------------------------
# The ILP (eqs. 8, 11, 12)
# --------------------------------------------------------------------------------------


def _check_data(data: np.ndarray) -> np.ndarray:
    a = np.asarray(data)
    if a.ndim < 2:
        raise DataError(
            f"data must have shape (*coord_shape, C) with >= 1 coordinate axes and a channel axis, got {a.shape}; "
            "add a channel axis with data[..., None]"
        )
    if a.size == 0:
        raise DataError(f"data is empty, shape {a.shape}")
    if np.iscomplexobj(a) or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"data must be real numbers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise DataError("data contains NaN or Inf")
    return a


def _check_max_blocks(max_blocks: int) -> int:
    if isinstance(max_blocks, bool) or not isinstance(max_blocks, int | np.integer) or max_blocks < 1:
        raise OptionError(f"max_blocks must be an integer >= 1, got {max_blocks!r}")
    return int(max_blocks)


def _gains(tree: Octree, D: np.ndarray) -> np.ndarray:
    """Objective gain of each node, ``D_i * |x_i| / |x_root|`` (to be maximised), shape (N,)."""
    sizes = np.array([b.size for b in tree.nodes], dtype=np.float64)
    return np.asarray(D, dtype=np.float64) * sizes / sizes[0]


def partition_objective(blocks: Sequence[Block], shape: Sequence[int] | None = None) -> float:
    """SCI's objective (to maximise) of a partition: ``sum_i D_i * |x_i| / |x_root|``.

    ``shape``: the coordinate shape; defaults to the bounding box of the blocks.
    """
    if not blocks:
        return 0.0
    if shape is None:
        shape = tuple(max(b.stop[k] for b in blocks) for k in range(blocks[0].ndim))
    root = math.prod(int(s) for s in shape)
    return float(sum(b.D * b.size for b in blocks) / root)


def _path_matrix(tree: Octree) -> sparse.csr_matrix:
    """Rows: the tree's leaves; columns: nodes; 1 where the node lies on the leaf's root path."""
    rows, cols = [], []
    for r, leaf in enumerate(tree.leaves):
        p = tree.path(leaf)
        rows.extend([r] * len(p))
        cols.extend(p)
    data = np.ones(len(rows))
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(tree.leaves), len(tree)))


def select_partition(
    tree: Octree,
    D: Sequence[float] | np.ndarray,
    max_blocks: int,
    *,
    mip_rel_gap: float = 1e-4,
    time_limit: float = 60.0,
) -> list[int]:
    """Solve SCI's ILP on a tree with given node scores; return the active node indices.

    Binary x_i per node; minimise ``sum_i -D_i |x_i| / |x_root| * x_i`` (eq. 8) subject to
    ``sum_i x_i <= max_blocks`` (eq. 11) and, for each leaf of the tree, exactly one active
    node on its path to the root (eq. 12), which makes the active nodes tile the domain.
    The objective is divided by its largest coefficient (same optimum, better-conditioned
    for HiGHS's absolute tolerances). Afterwards, sibling groups whose parent scores at least
    as well (ties, e.g. constant regions) are merged back into the parent.

    ``mip_rel_gap``: HiGHS stops once its solution is provably within this relative
    distance of the optimum. The default 1e-4 is HiGHS's and Gurobi's own (the authors'
    solver); the LP relaxation of this problem is nearly integral, so the default is fast
    even for thousands of nodes, while proving exact optimality (``0``) can take seconds
    there. ``time_limit`` (s): on expiry the best solution found so far is used.

    Always feasible for ``max_blocks >= 1``: the root alone satisfies every constraint.
    Returns indices sorted by the nodes' ``start``.
    """
    max_blocks = _check_max_blocks(max_blocks)
    Dv = np.asarray(D, dtype=np.float64)
    if Dv.shape != (len(tree),) or not np.isfinite(Dv).all():
        raise OptionError(f"D must hold one finite value per tree node ({len(tree)}), got shape {Dv.shape}")
    if not (0.0 <= mip_rel_gap < 1.0) or not time_limit > 0:
        raise OptionError(f"need 0 <= mip_rel_gap < 1 and time_limit > 0, got {mip_rel_gap!r}, {time_limit!r}")
    gain = _gains(tree, Dv)
    scale = float(np.max(np.abs(gain))) or 1.0
    c = -gain / scale
    n = len(tree)
    if n == 1 or max_blocks == 1:
        return [0]
    constraints = [
        LinearConstraint(_path_matrix(tree), 1.0, 1.0),
        LinearConstraint(sparse.csr_matrix(np.ones((1, n))), 0.0, float(max_blocks)),
    ]
    res = milp(
        c,
        constraints=constraints,
        integrality=np.ones(n),
        bounds=Bounds(0.0, 1.0),
        options={"time_limit": float(time_limit), "mip_rel_gap": float(mip_rel_gap)},
    )
    if res.x is None:
        # Cannot happen: x = (1, 0, ..., 0) (the root alone) is feasible for max_blocks >= 1.
        raise RuntimeError(f"partition ILP returned no solution (status {res.status}: {res.message})")
    active = {i for i in range(n) if res.x[i] > 0.5}
    active = _merge_ties(tree, active, gain / scale)
    return sorted(active, key=lambda i: tree.nodes[i].start)


def _merge_ties(tree: Octree, active: set[int], gain: np.ndarray) -> set[int]:
    """Replace all-active sibling groups by their parent when that loses nothing (ties)."""
    changed = True
    while changed:
        changed = False
        for p in range(len(tree) - 1, -1, -1):  # children come after parents (breadth first)
            ch = tree.children[p]
            if ch and all(c in active for c in ch) and gain[p] >= sum(gain[c] for c in ch) - _MERGE_TOL:
                active.difference_update(ch)
                active.add(p)
                changed = True
    return active


def _node_concentrations(data: np.ndarray, tree: Octree, m: int, workers: int | None) -> np.ndarray:
    return np.array([spectrum_concentration(data[b.slices], m, workers=workers) for b in tree.nodes])


def sci_partition(
    data: np.ndarray,
    *,
    levels: int = 4,
    max_blocks: int = 50,
    m: int = 1,
    min_size: int | Sequence[int] = 4,
    workers: int | None = None,
    mip_rel_gap: float = 1e-4,
) -> list[Block]:
    """SCI's adaptive partition of ``data`` (shape ``(*coord_shape, C)``) into blocks.

    Computes D (eq. 9, top-``m``) for every node of :func:`octree` (``levels``,
    ``min_size``), then solves the ILP (eqs. 8, 11, 12) with at most ``max_blocks`` blocks
    (the paper's defaults: M = 1, a_max = 50). Returns the chosen blocks, each with its D,
    sorted by ``start``; they tile the coordinate grid exactly (every voxel in one block).
    ``workers``: FFT threads (scipy.fft); ``mip_rel_gap``: see :func:`select_partition`.
    Raises :class:`OptionError` for ``levels < 1``, ``max_blocks < 1``, ``m < 1``;
    :class:`DataError` for unusable data.
    """
    levels = _check_levels(levels)
    max_blocks = _check_max_blocks(max_blocks)
    m = _check_m(m)
    a = _check_data(data)
    tree = octree(a.shape[:-1], levels, min_size)
    D = _node_concentrations(a, tree, m, workers)
    chosen = select_partition(tree, D, max_blocks, mip_rel_gap=mip_rel_gap)
    return [replace(tree.nodes[i], D=float(D[i])) for i in chosen]


# --------------------------------------------------------------------------------------
# Ablations: equidistant partition (EP) and no partition (NP)
# --------------------------------------------------------------------------------------


def with_concentration(
    blocks: Sequence[Block], data: np.ndarray, m: int = 1, *, workers: int | None = None
) -> list[Block]:
    """Copies of ``blocks`` with ``D`` computed on ``data`` (shape ``(*coord_shape, C)``)."""
    m = _check_m(m)
    a = _check_data(data)
    for b in blocks:
        if b.ndim != a.ndim - 1 or any(s > L for s, L in zip(b.stop, a.shape)):
            raise DataError(f"block {b.start}..{b.stop} does not fit data of coordinate shape {a.shape[:-1]}")
    return [replace(b, D=spectrum_concentration(a[b.slices], m, workers=workers)) for b in blocks]


def _coord_shape(shape: Sequence[int] | None, data: np.ndarray | None) -> tuple[int, ...]:
    if data is not None:
        a = _check_data(data)
        if shape is not None and _check_shape(shape) != a.shape[:-1]:
            raise OptionError(f"shape {tuple(shape)} does not match the data's coordinate shape {a.shape[:-1]}")
        return a.shape[:-1]
    if shape is None:
        raise OptionError("give a coordinate shape or data")
    return _check_shape(shape)


def equidistant_partition(
    shape: Sequence[int] | None,
    level: int,
    min_size: int | Sequence[int] = 4,
    *,
    data: np.ndarray | None = None,
    m: int = 1,
) -> list[Block]:
    """SCI's "EP" ablation: every node at tree level ``level`` (1 = the whole volume).

    Where ``min_size`` stops a branch earlier, its shallower leaf is used instead, so the
    blocks always tile the grid. ``shape``: coordinate shape (or None with ``data``);
    with ``data`` (``(*coord_shape, C)``) the blocks carry their D (top-``m``).
    """
    shp = _coord_shape(shape, data)
    level = _check_levels(level, "level")
    tree = octree(shp, level, min_size)
    blocks = sorted((tree.nodes[i] for i in tree.leaves), key=lambda b: b.start)
    return with_concentration(blocks, data, m) if data is not None else blocks


def no_partition(shape: Sequence[int] | None, *, data: np.ndarray | None = None, m: int = 1) -> list[Block]:
    """SCI's "NP" ablation: the whole grid as one block (with its D when ``data`` is given)."""
    shp = _coord_shape(shape, data)
    blocks = [Block(tuple(0 for _ in shp), shp, 1)]
    return with_concentration(blocks, data, m) if data is not None else blocks


# --------------------------------------------------------------------------------------
# Checks and serialisation
# --------------------------------------------------------------------------------------


def is_tiling(blocks: Sequence[Block], shape: Sequence[int]) -> bool:
    """True when ``blocks`` cover the grid ``shape`` exactly once (no gap, no overlap).

    Checks bounds, that the volumes add up to the grid's, and pairwise disjointness
    (O(N^2) box tests, vectorised per block; memory O(N)).
    """
    shp = tuple(int(s) for s in shape)
    if not blocks:
        return False
    if any(b.ndim != len(shp) for b in blocks):
        return False
    lo = np.array([b.start for b in blocks], dtype=np.int64)
    hi = np.array([b.stop for b in blocks], dtype=np.int64)
    if (lo < 0).any() or (hi > np.array(shp)).any() or (hi <= lo).any():
        return False
    if int(np.prod(hi - lo, axis=1).sum()) != math.prod(shp):
        return False
    for i in range(len(blocks) - 1):
        overlap = np.all((lo[i + 1 :] < hi[i]) & (lo[i] < hi[i + 1 :]), axis=1)
        if overlap.any():
            return False
    return True


def block_table(blocks: Sequence[Block]) -> dict[str, Any]:
    """JSON-able column table of a partition (for a file header).

    ``{"version": 1, "start": [[...], ...], "stop": [[...], ...], "level": [...],
    "D": [float | None, ...]}``, one row per block, in the given order.
    """
    return {
        "version": TABLE_VERSION,
        "start": [[int(v) for v in b.start] for b in blocks],
        "stop": [[int(v) for v in b.stop] for b in blocks],
        "level": [int(b.level) for b in blocks],
        "D": [b.to_dict()["D"] for b in blocks],
    }


def blocks_from_table(table: Mapping[str, Any]) -> list[Block]:
    """Inverse of :func:`block_table`; raises :class:`FormatError` when the table is malformed."""
    if not isinstance(table, Mapping):
        raise FormatError(f"block table must be a mapping, got {type(table).__name__}")
    if table.get("version") != TABLE_VERSION:
        raise FormatError(f"unsupported block table version {table.get('version')!r} (expected {TABLE_VERSION})")
    cols = {}
    for key in ("start", "stop", "level", "D"):
        col = table.get(key)
        if not isinstance(col, list):
            raise FormatError(f"block table column {key!r} missing or not a list")
        cols[key] = col
    n = len(cols["start"])
    if any(len(col) != n for col in cols.values()):
        raise FormatError("block table columns differ in length")
    blocks = [_make_block(cols["start"][i], cols["stop"][i], cols["level"][i], cols["D"][i]) for i in range(n)]
    if len({b.ndim for b in blocks}) > 1:
        raise FormatError("block table mixes blocks of different dimensionality")
    return blocks
