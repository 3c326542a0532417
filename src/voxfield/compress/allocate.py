"""SCI's parameter allocation and funnel-shaped SIREN sizes, as pure functions.

* :func:`allocate` splits a parameter budget among the blocks of a partition
  ("Parameter Allocation": proportional to ``|x_i| / D_i``, plus the ablation modes).
* :func:`siren_params` counts the parameters of an MLP; :func:`funnel_widths` finds the
  largest funnel-shaped SIREN (first hidden layer ``fr`` times wider than the others,
  eq. 13) that fits a parameter count.
* :func:`plan_groups` turns per-block budgets into per-block widths using at most
  ``max_groups`` distinct architectures, so that blocks of equal architecture can be
  trained together as one batched model, without exceeding the total budget.
* :func:`max_blocks_for_budget` caps the partition's block count by what the budget can
  feed (the "theoretical minimum number of parameters" behind eq. 11).

A network's layers are ``in -> w_0 -> w_1 -> ... -> w_{k-1} -> out``, every linear layer
with a bias; ``n_layers`` counts the linear layers, so ``n_layers = 7`` (SCI's default)
has 6 hidden widths ``[w_0, h, h, h, h, h]`` with ``w_0 = round(fr * h)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from voxfield.compress.partition import Block
from voxfield.errors import OptionError

__all__ = [
    "MODES",
    "allocate",
    "allocation_weights",
    "funnel_widths",
    "group_indices",
    "max_blocks_for_budget",
    "min_network_params",
    "plan_groups",
    "siren_params",
]

#: Allocation modes: SCI's own (``"size/D"``) and the ablations of its Table 2.
MODES = ("size/D", "size", "D", "equal")


# --------------------------------------------------------------------------------------
# Budget split among blocks
# --------------------------------------------------------------------------------------


def _check_int(v: object, what: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum:
        raise OptionError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def allocation_weights(blocks: Sequence[Block], mode: str = "size/D") -> np.ndarray:
    """Relative share of each block, shape ``(len(blocks),)``, positive float64.

    ``"size/D"``: ``|x_i| / D_i`` (SCI: a block's spectrum coverage; large and spread-out
    blocks get more). ``"size"``: ``|x_i|`` (voxel count). ``"D"``: ``1 / D_i`` (BRIEF's
    ``by_d`` mode and SCI's ablation: complexity only, blind to size, so a small complex
    block gets as much as a large one; sensible only for blocks of similar size, as in EP).
    ``"equal"``: 1 each.
    """
    if mode not in MODES:
        raise OptionError(f"unknown allocation mode {mode!r}; choose one of {', '.join(MODES)}")
    if not blocks:
        raise OptionError("no blocks to allocate parameters to")
    size = np.array([b.size for b in blocks], dtype=np.float64)
    if mode == "equal":
        return np.ones_like(size)
    if mode == "size":
        return size
    D = np.array([b.D for b in blocks], dtype=np.float64)
    if not (np.isfinite(D).all() and (D > 0).all()):
        raise OptionError(f"mode {mode!r} needs each block's spectrum concentration D > 0 (use with_concentration)")
    return size / D if mode == "size/D" else 1.0 / D


def _proportional_with_floor(total: float, weights: np.ndarray, floor: float) -> np.ndarray:
    """Real shares ``x_i >= floor``, ``sum x_i = total``, ``x_i ∝ w_i`` among unfloored blocks.

    Water filling: blocks whose proportional share falls below ``floor`` get ``floor``;
    the rest share what remains, proportionally; repeat until stable. Assumes
    ``total >= len(weights) * floor``.
    """
    pinned = np.zeros(weights.size, dtype=bool)
    while True:
        free = ~pinned
        rest = total - floor * pinned.sum()
        share = np.where(free, rest * weights / weights[free].sum(), floor)
        low = free & (share < floor)
        if not low.any():
            return share
        pinned |= low


def allocate(total_params: int, blocks: Sequence[Block], *, mode: str = "size/D", min_params: int = 1) -> list[int]:
    """Split ``total_params`` network parameters among ``blocks`` by ``mode``.

    Each block gets an integer count ``>= min_params`` (pass the size of the smallest
    network you accept, e.g. :func:`min_network_params`); blocks above the floor get
    counts proportional to :func:`allocation_weights` (to within one parameter, largest
    remainders rounded up), and the counts add up to exactly ``total_params``.
    Raises :class:`OptionError` when ``total_params < len(blocks) * min_params``.
    """
    total = _check_int(total_params, "total_params", 1)
    floor = _check_int(min_params, "min_params", 1)
    w = allocation_weights(blocks, mode)
    n = len(blocks)
    if total < n * floor:
        raise OptionError(
            f"budget too small for {n} blocks; lower the ratio or the block count "
            f"({total} parameters < {n} blocks x {floor} minimum)"
        )
    x = _proportional_with_floor(float(total), w, float(floor))
    counts = np.maximum(np.floor(x).astype(np.int64), floor)
    left = total - int(counts.sum())
    if left > 0:  # largest remainders first (stable: lower index wins ties)
        order = np.argsort(-(x - np.floor(x)), kind="stable")
        counts[order[:left]] += 1
    elif left < 0:  # float round-off only: take back from the largest blocks
        for i in np.argsort(-counts, kind="stable")[:-left]:
            counts[i] -= 1
    return [int(c) for c in counts]


# --------------------------------------------------------------------------------------
# Network sizes
# --------------------------------------------------------------------------------------


def siren_params(in_features: int, out_features: int, widths: Sequence[int]) -> int:
    """Parameters (weights + biases) of the MLP ``in -> widths[0] -> ... -> widths[-1] -> out``."""
    dims = [_check_int(in_features, "in_features", 1), *(_check_int(w, "width", 1) for w in widths)]
    dims.append(_check_int(out_features, "out_features", 1))
    return sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))


def _check_arch(in_features: int, out_features: int, n_layers: int, fr: float) -> tuple[int, int, int, float]:
    i = _check_int(in_features, "in_features", 1)
    o = _check_int(out_features, "out_features", 1)
    n = _check_int(n_layers, "n_layers (linear layers, >= 2: one hidden layer)", 2)
    if not isinstance(fr, int | float | np.number) or isinstance(fr, bool) or not (math.isfinite(fr) and fr > 0):
        raise OptionError(f"fr (first-layer width ratio) must be a positive number, got {fr!r}")
    return i, o, n, float(fr)


def _funnel(h: int, n_layers: int, fr: float) -> list[int]:
    """Hidden widths of the funnel with shared width ``h``: ``[round(fr h), h, ..., h]``.

    With ``n_layers == 2`` there is a single hidden layer of width ``h``.
    """
    if n_layers == 2:
        return [h]
    return [max(1, math.floor(fr * h + 0.5))] + [h] * (n_layers - 2)


def _h_estimate(params: int, i: int, o: int, n_layers: int, fr: float) -> int:
    """Real root of count(h) = params with w_0 = fr*h exactly, floored (a first guess).

    count(h) = a h^2 + b h + o with a = fr + (n_layers - 3),
    b = (i + 1) fr + 1 + (n_layers - 3) + o; for n_layers = 2, count(h) = (i + 1 + o) h + o.
    """
    if n_layers == 2:
        return max(1, (params - o) // (i + 1 + o))
    a = fr + (n_layers - 3)
    b = (i + 1) * fr + 1 + (n_layers - 3) + o
    disc = b * b + 4.0 * a * (params - o)
    if disc <= 0:
        return 1
    return max(1, int((-b + math.sqrt(disc)) / (2.0 * a)))


def funnel_widths(params: int, in_features: int, out_features: int, n_layers: int = 7, fr: float = 2.2) -> list[int]:
    """Largest funnel-shaped SIREN with at most ``params`` parameters: its hidden widths.

    Widths ``[round(fr * h), h, ..., h]`` (``n_layers - 1`` of them; ``n_layers`` counts
    linear layers) for the largest integer ``h >= 1`` whose parameter count is
    ``<= params``: the quadratic in h is solved, then h is adjusted on the exact integer
    count. ``fr = 1`` gives a plain SIREN (all widths equal). Raises :class:`OptionError`
    when even ``h = 1`` does not fit.
    """
    i, o, n, fr = _check_arch(in_features, out_features, n_layers, fr)
    p = _check_int(params, "params", 1)

    def count(h: int) -> int:
        return siren_params(i, o, _funnel(h, n, fr))

    if count(1) > p:
        raise OptionError(
            f"{p} parameters cannot hold a {n}-layer network ({i} -> ... -> {o}); "
            f"the smallest one ({_funnel(1, n, fr)}) needs {count(1)}"
        )
    h = _h_estimate(p, i, o, n, fr)
    while h > 1 and count(h) > p:
        h -= 1
    while count(h + 1) <= p:
        h += 1
    return _funnel(h, n, fr)


def min_network_params(
    in_features: int, out_features: int, n_layers: int = 7, fr: float = 2.2, min_width: int = 2
) -> int:
    """Parameters of the funnel network with shared width ``min_width`` (the smallest accepted)."""
    i, o, n, fr = _check_arch(in_features, out_features, n_layers, fr)
    return siren_params(i, o, _funnel(_check_int(min_width, "min_width", 1), n, fr))


def max_blocks_for_budget(
    total_params: int, in_features: int, out_features: int, n_layers: int = 7, fr: float = 2.2, min_width: int = 2
) -> int:
    """How many blocks ``total_params`` can feed with a network of width >= ``min_width`` each.

    ``total_params // min_network_params(...)``; 0 when not even one fits. Use it to cap
    ``max_blocks`` before partitioning.
    """
    total = _check_int(total_params, "total_params", 0)
    return total // min_network_params(in_features, out_features, n_layers, fr, min_width)


# --------------------------------------------------------------------------------------
# Snapping per-block budgets to a few architectures
# --------------------------------------------------------------------------------------


def _shared_width(widths: Sequence[int]) -> int:
    """The ``h`` of a funnel (its last hidden width)."""
    return int(widths[-1])


def _contiguous_groups(budgets: np.ndarray, fit: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Cut sorted ``budgets`` into <= k contiguous groups ``[a, b)`` minimising the waste.

    A group takes the network that fits its smallest member (``fit[a]`` parameters), so its
    waste is ``sum(budgets[a:b]) - (b - a) * fit[a]``. Exact dynamic programme,
    O(k n^2) with the inner minimum vectorised. Integer costs, so ties are exact; among
    equal wastes the fewest groups win.
    """
    n = budgets.size
    csum = np.concatenate([[0], np.cumsum(budgets)])
    starts = np.arange(n)
    inf = np.iinfo(np.int64).max // 4
    best = np.full((k + 1, n + 1), inf, dtype=np.int64)
    cut = np.zeros((k + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0
    for g in range(1, k + 1):
        for end in range(1, n + 1):
            a = starts[:end]
            cost = best[g - 1, a] + (csum[end] - csum[a]) - (end - a) * fit[a]
            cost = np.where(best[g - 1, a] >= inf, inf, cost)
            j = int(np.argmin(cost))
            best[g, end], cut[g, end] = cost[j], a[j]
    g = int(np.argmin(best[1:, n])) + 1  # first (fewest groups) among the minima
    bounds, end = [], n
    while g > 0:
        a = int(cut[g, end])
        bounds.append((a, end))
        end, g = a, g - 1
    return bounds[::-1]


def _widen_groups(groups: list[list[int]], budgets: np.ndarray, cost: Callable[[int], int], left: int) -> int:
    """Widen whole groups ``[a, e, h]`` one step at a time while ``left`` allows; return what is left.

    Each step widens the group whose network is smallest relative to its members' mean
    budget among those whose step (``(e - a) * (cost(h + 1) - cost(h))``) still fits.
    """
    while True:
        best, best_ratio = -1, math.inf
        for g, (a, e, h) in enumerate(groups):
            step = (e - a) * (cost(h + 1) - cost(h))
            ratio = cost(h) / float(budgets[a:e].mean())
            if step <= left and ratio < best_ratio:
                best, best_ratio = g, ratio
        if best < 0:
            return left
        a, e, h = groups[best]
        left -= (e - a) * (cost(h + 1) - cost(h))
        groups[best][2] = h + 1


def _split_group(groups: list[list[int]], cost: Callable[[int], int], left: int) -> bool:
    """Use a spare architecture slot: widen the top members of one group, as many as ``left`` pays for.

    Picks the group and count j (its j largest budgets, the end of its sorted range) that
    spend the most of ``left``; splits it in two. Returns False when no member can be widened.
    """
    best = (0, -1, 0)  # (spent, group, j)
    for g, (a, e, h) in enumerate(groups):
        step = cost(h + 1) - cost(h)
        j = min(e - a - 1, left // step)  # a split must leave members behind
        if j > 0 and j * step > best[0]:
            best = (j * step, g, j)
    _, g, j = best
    if g < 0:
        return False
    a, e, h = groups[g]
    groups[g : g + 1] = [[a, e - j, h], [e - j, e, h + 1]]
    return True


def _merge_equal(groups: list[list[int]]) -> None:
    """Merge neighbouring groups that ended with the same width (frees an architecture slot)."""
    g = 0
    while g + 1 < len(groups):
        if groups[g][2] == groups[g + 1][2]:
            groups[g][1] = groups[g + 1][1]
            del groups[g + 1]
        else:
            g += 1


def plan_groups(
    param_budgets: Sequence[int],
    in_features: int,
    out_features: int,
    *,
    n_layers: int = 7,
    fr: float = 2.2,
    max_groups: int = 4,
) -> list[list[int]]:
    """Per-block hidden widths using at most ``max_groups`` distinct funnel architectures.

    Total parameters never exceed ``sum(param_budgets)``. Three steps:

    1. Sort the budgets and cut them into <= ``max_groups`` contiguous groups by an exact
       dynamic programme that minimises the budget left unused when each group takes the
       largest funnel fitting its *smallest* member (so no block exceeds its own budget).
    2. Top up: the parameters still unused (group snapping plus width rounding) are spent
       by widening whole groups one step (``h -> h + 1``), each time the group whose
       members are furthest below their mean budget, while the total stays within budget.
    3. While fewer than ``max_groups`` architectures are in use, split a group and widen
       its largest members only (as many as the rest pays for), then top up again.

    Steps 2-3 may give a block more than its own budget (never the total): the budgets
    are treated as shares of one pot, not as per-block caps.

    Returns the widths of each block in input order; blocks with equal widths can be
    batched. Raises :class:`OptionError` when a budget cannot hold the smallest network.
    """
    i, o, n, fr = _check_arch(in_features, out_features, n_layers, fr)
    k = _check_int(max_groups, "max_groups", 1)
    b = np.array([_check_int(v, "parameter budget", 1) for v in param_budgets], dtype=np.int64)
    if b.size == 0:
        raise OptionError("no parameter budgets to plan")
    order = np.argsort(b, kind="stable")
    bs = b[order]
    fit_widths = [funnel_widths(int(v), i, o, n, fr) for v in bs]  # raises for too-small budgets
    fit = np.array([siren_params(i, o, w) for w in fit_widths], dtype=np.int64)
    groups = [[a, e, _shared_width(fit_widths[a])] for a, e in _contiguous_groups(bs, fit, min(k, bs.size))]

    def cost(h: int) -> int:
        return siren_params(i, o, _funnel(h, n, fr))

    while True:
        left = int(b.sum()) - sum((e - a) * cost(h) for a, e, h in groups)
        left = _widen_groups(groups, bs, cost, left)
        _merge_equal(groups)
        if len(groups) >= k or not _split_group(groups, cost, left):
            break
        _merge_equal(groups)
    out: list[list[int]] = [[] for _ in range(b.size)]
    for a, e, hg in groups:
        for pos in range(a, e):
            out[int(order[pos])] = _funnel(hg, n, fr)
    return out


def group_indices(widths: Sequence[Sequence[int]]) -> dict[tuple[int, ...], list[int]]:
    """Block indices per distinct architecture (first-seen order): what to batch together."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for idx, w in enumerate(widths):
        groups.setdefault(tuple(int(v) for v in w), []).append(idx)
    return groups
