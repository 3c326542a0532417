"""SCI's parameter allocation, funnel SIREN sizes and architecture grouping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxfield.compress.allocate import (
    MODES,
    allocate,
    allocation_weights,
    funnel_widths,
    group_indices,
    max_blocks_for_budget,
    min_network_params,
    plan_groups,
    siren_params,
)
from voxfield.compress.partition import Block, sci_partition
from voxfield.errors import OptionError

MAP64 = Path(__file__).resolve().parents[1] / "src" / "voxfield" / "data" / "emd_3488_crop64.mrc.gz"


def _blocks(sizes_d):
    """Blocks along one axis with the given (length, D) pairs."""
    out, pos = [], 0
    for length, d in sizes_d:
        out.append(Block((pos, 0), (pos + length, 10), 2, d))
        pos += length
    return out


BLOCKS = _blocks([(10, 0.5), (20, 0.1), (40, 0.8), (30, 0.05), (5, 1.0)])


# --------------------------------------------------------------------------------------
# allocate
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_allocation_follows_the_mode(mode):
    total = 100_003
    counts = allocate(total, BLOCKS, mode=mode)
    assert sum(counts) == total and all(c >= 1 for c in counts)
    w = {
        "size/D": [b.size / b.D for b in BLOCKS],
        "size": [b.size for b in BLOCKS],
        "D": [1 / b.D for b in BLOCKS],
        "equal": [1.0] * len(BLOCKS),
    }[mode]
    ideal = total * np.array(w) / np.sum(w)
    assert np.all(np.abs(np.array(counts) - ideal) < 1.0)
    np.testing.assert_allclose(allocation_weights(BLOCKS, mode) / np.sum(w), np.array(w) / np.sum(w))


def test_d_mode_ignores_size_and_size_mode_ignores_d():
    a = _blocks([(10, 0.2), (80, 0.2)])
    assert allocate(1000, a, mode="D") == [500, 500]
    assert allocate(1000, a, mode="size") == [111, 889]
    b = _blocks([(10, 0.1), (10, 0.4)])
    assert allocate(1000, b, mode="size") == [500, 500]
    assert allocate(1000, b, mode="D") == [800, 200]
    assert allocate(1000, b, mode="size/D") == [800, 200]


def test_minimum_is_respected_and_the_rest_stays_proportional():
    blocks = _blocks([(1, 1.0), (50, 0.1), (100, 0.1), (2, 1.0)])
    counts = allocate(10_000, blocks, mode="size/D", min_params=500)
    assert sum(counts) == 10_000
    assert counts[0] == counts[3] == 500  # their proportional shares (~2 and ~4) are below the floor
    assert counts[2] == pytest.approx(2 * counts[1], abs=1)
    assert allocate(2000, blocks, mode="equal", min_params=500) == [500] * 4


def test_allocation_errors():
    with pytest.raises(OptionError, match="budget too small for 5 blocks; lower the ratio or the block count"):
        allocate(40, BLOCKS, min_params=10)
    with pytest.raises(OptionError, match="unknown allocation mode"):
        allocate(1000, BLOCKS, mode="variance")
    with pytest.raises(OptionError):
        allocate(1000, [Block((0,), (4,))], mode="size/D")  # D unknown
    with pytest.raises(OptionError):
        allocate(1000, [Block((0,), (4,), 1, 0.0)], mode="D")
    assert allocate(1000, [Block((0,), (4,))], mode="size") == [1000]  # D not needed
    with pytest.raises(OptionError):
        allocate(0, BLOCKS)
    with pytest.raises(OptionError):
        allocate(1000, [])
    with pytest.raises(OptionError):
        allocate(1000, BLOCKS, min_params=0)


# --------------------------------------------------------------------------------------
# network sizes
# --------------------------------------------------------------------------------------


def test_siren_params_counts_weights_and_biases():
    assert siren_params(3, 1, []) == 4
    assert siren_params(3, 1, [2]) == 4 * 2 + 3 * 1
    assert siren_params(2, 3, [5, 4]) == 3 * 5 + 6 * 4 + 5 * 3
    with pytest.raises(OptionError):
        siren_params(3, 1, [0])
    with pytest.raises(OptionError):
        siren_params(0, 1, [4])


@pytest.mark.parametrize("n_layers", [2, 3, 5, 7, 9])
@pytest.mark.parametrize("fr", [1.0, 2.2, 3.7])
@pytest.mark.parametrize("io", [(3, 1), (2, 3), (4, 5)])
def test_funnel_widths_is_the_largest_that_fits(n_layers, fr, io):
    i, o = io
    smallest = min_network_params(i, o, n_layers, fr, min_width=1)
    for params in [smallest, smallest + 1, 500, 1361, 7_777, 56_320, 1_000_000]:
        if params < smallest:
            continue
        w = funnel_widths(params, i, o, n_layers, fr)
        assert len(w) == n_layers - 1 and all(v >= 1 for v in w)
        assert siren_params(i, o, w) <= params
        h = w[-1]
        if n_layers > 2:
            assert w[1:] == [h] * (n_layers - 2)
            assert w[0] == max(1, int(np.floor(fr * h + 0.5)))
        wider = [max(1, int(np.floor(fr * (h + 1) + 0.5)))] + [h + 1] * (n_layers - 2) if n_layers > 2 else [h + 1]
        assert siren_params(i, o, wider) > params


def test_plain_siren_and_small_budgets():
    assert funnel_widths(10_000, 3, 1, 7, 1.0) == [43] * 6  # 9676 parameters; width 44 needs 10121
    assert funnel_widths(siren_params(3, 1, [2, 1, 1]), 3, 1, 4, 2.2) == [2, 1, 1]
    with pytest.raises(OptionError):
        funnel_widths(siren_params(3, 1, [2, 1, 1]) - 1, 3, 1, 4, 2.2)
    with pytest.raises(OptionError):
        funnel_widths(1000, 3, 1, n_layers=1)
    with pytest.raises(OptionError):
        funnel_widths(1000, 3, 1, fr=0.0)


def test_max_blocks_for_budget():
    m = min_network_params(3, 1, 7, 2.2, min_width=2)
    assert m == siren_params(3, 1, [4, 2, 2, 2, 2, 2])
    assert max_blocks_for_budget(50 * m + m - 1, 3, 1, 7, 2.2) == 50
    assert max_blocks_for_budget(m - 1, 3, 1, 7, 2.2) == 0
    # That many blocks can indeed all be fed.
    blocks = _blocks([(1, 0.5)] * 50)
    counts = allocate(50 * m, blocks, min_params=m)
    assert plan_groups(counts, 3, 1) == [[4, 2, 2, 2, 2, 2]] * 50


# --------------------------------------------------------------------------------------
# plan_groups
# --------------------------------------------------------------------------------------


def _used(widths, i=3, o=1):
    return sum(siren_params(i, o, w) for w in widths)


def test_plan_groups_on_a_real_partition():
    import mrcfile

    with mrcfile.open(MAP64) as mrc:
        vol = np.asarray(mrc.data, dtype=np.float32)[..., None]
    total = vol.size * 4 // (4 * 64)  # float32 weights at 64x: 4096 parameters for 64^3
    cap = max_blocks_for_budget(total, 3, 1)
    blocks = sci_partition(vol, max_blocks=min(50, cap))
    for mode in MODES:
        budgets = allocate(total, blocks, mode=mode, min_params=min_network_params(3, 1))
        widths = plan_groups(budgets, 3, 1, max_groups=4)
        assert len(widths) == len(blocks)
        assert len(group_indices(widths)) <= 4
        assert 0.9 * total <= _used(widths) <= total, mode


def test_plan_groups_uses_the_budget_and_few_architectures():
    rng = np.random.default_rng(0)
    for trial in range(20):
        budgets = (rng.lognormal(7.5, 1.0, size=int(rng.integers(1, 120))) + 300).astype(int)
        for k in (1, 2, 4, 8):
            widths = plan_groups(budgets, 3, 1, max_groups=k)
            assert len(group_indices(widths)) <= k
            assert _used(widths) <= budgets.sum()
            if k >= 4:
                assert _used(widths) >= 0.9 * budgets.sum(), (trial, k)


def test_plan_groups_keeps_input_order_and_exact_fits():
    a, b = siren_params(3, 1, funnel_widths(2000, 3, 1)), siren_params(3, 1, funnel_widths(20_000, 3, 1))
    budgets = [b, a, b, a, a]
    widths = plan_groups(budgets, 3, 1, max_groups=2)
    assert widths == [funnel_widths(b, 3, 1), funnel_widths(a, 3, 1)] * 2 + [funnel_widths(a, 3, 1)]
    assert _used(widths) == sum(budgets)
    one = plan_groups(budgets, 3, 1, max_groups=1)
    assert len(group_indices(one)) == 1 and _used(one) <= sum(budgets)
    g = group_indices(widths)
    assert sorted(len(v) for v in g.values()) == [2, 3]


def test_plan_groups_errors():
    with pytest.raises(OptionError):
        plan_groups([], 3, 1)
    with pytest.raises(OptionError):
        plan_groups([1000, 10], 3, 1)  # 10 parameters hold no 7-layer network
    with pytest.raises(OptionError):
        plan_groups([1000], 3, 1, max_groups=0)
