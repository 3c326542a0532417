"""SCI's adaptive partition: spectrum concentration, octree, ILP, ablations, header table."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from voxfield.compress.partition import (
    Block,
    block_table,
    blocks_from_table,
    equidistant_partition,
    is_tiling,
    no_partition,
    octree,
    partition_objective,
    sci_partition,
    select_partition,
    spectrum_concentration,
    with_concentration,
)
from voxfield.errors import DataError, FormatError, OptionError

MAP64 = Path(__file__).resolve().parents[1] / "src" / "voxfield" / "data" / "emd_3488_crop64.mrc.gz"


def _full_fft_d(a: np.ndarray, m: int) -> float:
    """Reference eq. 9 with the complex full spectrum (no Hermitian shortcut)."""
    n = a.ndim - 1
    spec = sum(np.abs(np.fft.fftn(a[..., c].astype(np.float64), axes=tuple(range(n)))) for c in range(a.shape[-1]))
    flat = np.sort(spec.ravel())[::-1]
    return float(flat[:m].sum() / flat.sum())


def _coverage(blocks: list[Block], shape: tuple[int, ...]) -> np.ndarray:
    cov = np.zeros(shape, dtype=np.int32)
    for b in blocks:
        cov[b.slices] += 1
    return cov


# --------------------------------------------------------------------------------------
# spectrum concentration
# --------------------------------------------------------------------------------------


def test_cosine_is_concentrated_and_noise_is_spread():
    z = np.arange(16)
    cos = np.cos(2 * np.pi * 3 * z / 16)[None, None, :, None] * np.ones((16, 16, 1, 1))
    # A zero-mean cosine has two equal peaks (+-3) in the full spectrum.
    assert spectrum_concentration(cos, m=1) == pytest.approx(0.5, abs=1e-12)
    assert spectrum_concentration(cos, m=2) == pytest.approx(1.0, abs=1e-12)
    assert spectrum_concentration(cos, m=4) == pytest.approx(1.0, abs=1e-12)
    noise = np.random.default_rng(0).normal(size=(16, 16, 16, 1))
    d1, d4 = spectrum_concentration(noise, m=1), spectrum_concentration(noise, m=4)
    assert 0 < d1 < 0.01 and d1 < d4 < 0.02
    assert d1 < spectrum_concentration(cos, m=1) / 50


def test_constant_and_zero_blocks_have_d_one():
    assert spectrum_concentration(np.full((8, 9, 1), 3.5)) == pytest.approx(1.0)
    assert spectrum_concentration(np.zeros((8, 9, 2))) == 1.0
    assert spectrum_concentration(np.full((5, 1), -2.0, dtype=np.float32)) == pytest.approx(1.0)
    assert spectrum_concentration(np.ones((1, 1, 1, 1, 1))) == 1.0  # a single voxel


@pytest.mark.parametrize("shape", [(7, 1), (8, 2), (6, 5, 1), (5, 6, 3), (4, 5, 7, 1), (3, 4, 4, 5, 2), (9, 1, 1)])
@pytest.mark.parametrize("m", [1, 2, 3, 7])
def test_half_spectrum_matches_full_fft(shape, m):
    a = np.random.default_rng(len(shape) * 10 + m).normal(size=shape) + 0.3
    assert spectrum_concentration(a, m=m) == pytest.approx(_full_fft_d(a, m), rel=1e-12)


def test_concentration_uses_float64_and_any_dtype():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65535, size=(12, 10, 1)).astype(np.uint16)
    assert spectrum_concentration(a) == pytest.approx(_full_fft_d(a, 1), rel=1e-12)
    assert spectrum_concentration(a.astype(np.float32)) == pytest.approx(_full_fft_d(a, 1), rel=1e-9)


def test_concentration_errors():
    with pytest.raises(OptionError):
        spectrum_concentration(np.ones((4, 1)), m=0)
    with pytest.raises(DataError):
        spectrum_concentration(np.ones(4))
    with pytest.raises(DataError):
        spectrum_concentration(np.full((4, 1), np.nan))


# --------------------------------------------------------------------------------------
# octree
# --------------------------------------------------------------------------------------


def test_octree_node_counts_100_cubed():
    tree = octree((100, 100, 100), 4)
    assert len(tree) == 585
    assert tree.level_counts() == {1: 1, 2: 8, 3: 64, 4: 512}
    assert tree.nodes[0] == Block((0, 0, 0), (100, 100, 100), 1)
    assert is_tiling([tree.nodes[i] for i in tree.leaves], (100, 100, 100))
    for i, b in enumerate(tree.nodes[1:], start=1):
        p = tree.nodes[tree.parent[i]]
        assert p.level == b.level - 1
        assert all(pa <= a and b_ <= pb for pa, a, b_, pb in zip(p.start, b.start, b.stop, p.stop))


def test_octree_uneven_shape_and_min_size():
    # 15 -> 8 + 7 (first half takes the odd voxel); 7 < 2*4 is not split again.
    tree = octree((15, 40), 3, min_size=4)
    assert tree.level_counts() == {1: 1, 2: 4, 3: 2 * 4 + 2 * 2}
    assert [tree.nodes[c].shape for c in tree.children[0]] == [(8, 20), (8, 20), (7, 20), (7, 20)]
    assert [tree.nodes[c].start for c in tree.children[0]] == [(0, 0), (0, 20), (8, 0), (8, 20)]
    assert is_tiling([tree.nodes[i] for i in tree.leaves], (15, 40))
    # Stops early: (8, 8) splits once into 4x4 blocks, then nothing is splittable.
    assert len(octree((8, 8), 5, min_size=4)) == 5
    assert len(octree((7, 7), 5, min_size=4)) == 1
    assert [b.shape for b in octree((9,), 2, min_size=2).nodes] == [(9,), (5,), (4,)]
    # Per-axis min_size keeps a short T axis whole.
    t = octree((5, 32, 32), 3, min_size=(100, 4, 4))
    assert {b.shape[0] for b in t.nodes} == {5}
    assert t.level_counts() == {1: 1, 2: 4, 3: 16}


def test_octree_errors():
    with pytest.raises(OptionError):
        octree((10, 10), 0)
    with pytest.raises(OptionError):
        octree((10, 0), 2)
    with pytest.raises(OptionError):
        octree((10, 10), 2, min_size=0)
    with pytest.raises(OptionError):
        octree((10, 10), 2, min_size=(4, 4, 4))


# --------------------------------------------------------------------------------------
# the ILP against brute force
# --------------------------------------------------------------------------------------


def _all_partitions(tree, i=0):
    """Every set of tree nodes that tiles node i's region (exhaustive, tiny trees only)."""
    out = [[i]]
    if tree.children[i]:
        for combo in itertools.product(*(_all_partitions(tree, c) for c in tree.children[i])):
            out.append([x for part in combo for x in part])
    return out


def _brute_force(tree, D, max_blocks):
    sizes = np.array([b.size for b in tree.nodes], dtype=float)
    gain = D * sizes / sizes[0]
    return max(sum(gain[p]) for p in _all_partitions(tree) if len(p) <= max_blocks)


@pytest.mark.parametrize("shape,levels,min_size", [((16, 16), 3, 4), ((8, 8, 8), 3, 2), ((15, 9), 4, 2)])
def test_ilp_matches_brute_force_on_random_scores(shape, levels, min_size):
    tree = octree(shape, levels, min_size)
    sizes = np.array([b.size for b in tree.nodes], dtype=float)
    rng = np.random.default_rng(len(tree))
    for trial in range(6):
        # Scores that make splitting sometimes worth it, sometimes not.
        D = rng.uniform(0.05, 1.0, len(tree)) * (sizes[0] / sizes) ** rng.uniform(0, 0.6)
        for max_blocks in (1, 3, 5, 9, 40):
            best = _brute_force(tree, D, max_blocks)
            for gap, rel in ((0.0, 1e-9), (1e-4, 1e-4)):  # exact, and the default tolerance
                chosen = select_partition(tree, D, max_blocks, mip_rel_gap=gap)
                blocks = [tree.nodes[i] for i in chosen]
                assert len(blocks) <= max_blocks
                assert is_tiling(blocks, shape)
                got = float(sum(D[chosen] * sizes[chosen]) / sizes[0])
                assert got == pytest.approx(best, rel=rel), (trial, max_blocks, gap)


def test_sci_partition_matches_brute_force_on_data():
    rng = np.random.default_rng(5)
    x = np.zeros((16, 16, 16, 1))
    x[:, :, 8:] = rng.normal(size=(16, 16, 8, 1))
    x[:8, :8, :8] += np.cos(np.arange(8) / 3.0)[None, None, :, None]
    tree = octree((16, 16, 16), 3, 2)
    D = np.array([spectrum_concentration(x[b.slices]) for b in tree.nodes])
    for max_blocks in (1, 8, 12, 20, 64):
        blocks = sci_partition(x, levels=3, max_blocks=max_blocks, min_size=2, mip_rel_gap=0.0)
        got = partition_objective(blocks, (16, 16, 16))
        assert got == pytest.approx(_brute_force(tree, D, max_blocks), rel=1e-9)


# --------------------------------------------------------------------------------------
# sci_partition
# --------------------------------------------------------------------------------------


def _half_smooth_half_noise(shape=(32, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    x = np.empty((*shape, 1))
    half = shape[-1] // 2
    z = np.arange(shape[0])[:, None, None]
    x[..., :half, 0] = np.cos(2 * np.pi * z / shape[0]) + 2.0
    x[..., half:, 0] = rng.normal(size=(*shape[:-1], shape[-1] - half))
    return x, half


def _flat_and_piecewise(seed=0):
    """32^3: x < 16 one constant; x >= 16 a different constant on every 8^3 cube, plus noise.

    Splitting the flat half gains nothing (D = 1 at every level); splitting a 16^3 block of
    the right half into its eight constant 8^3 cubes raises its term from D * |x| to
    ~|x|, so the optimum is predictable by hand.
    """
    rng = np.random.default_rng(seed)
    x = np.full((32, 32, 32, 1), 5.0)
    levels = rng.uniform(0.0, 10.0, size=(4, 4, 2))
    x[:, :, 16:, 0] = np.kron(levels, np.ones((8, 8, 8)))
    return x


def test_splits_where_splitting_raises_the_objective():
    x = _flat_and_piecewise()
    blocks = sci_partition(x, levels=4, max_blocks=50, min_size=2)
    assert is_tiling(blocks, (32, 32, 32))
    flat = [b for b in blocks if b.stop[-1] <= 16]
    steps = [b for b in blocks if b.start[-1] >= 16]
    # By hand: four level-2 blocks on the flat side (ties merged), the stepped side cut
    # exactly at its cubes (level 3; level 4 adds nothing), 4 + 32 = 36 blocks.
    assert [b.level for b in flat] == [2] * 4 and all(b.D == pytest.approx(1.0) for b in flat)
    assert len(steps) == 32 and {b.level for b in steps} == {3}
    assert partition_objective(blocks, (32, 32, 32)) == pytest.approx(1.0)
    # With 20 blocks only one of the four stepped 16^3 blocks can be split (8 + 7 = 15 blocks):
    # the one whose own D is lowest, since it gains (1 - D) |x| / |x_root|.
    tight = sci_partition(x, levels=4, max_blocks=20, min_size=2)
    assert len(tight) == 15 and is_tiling(tight, (32, 32, 32))
    level2 = equidistant_partition(None, 2, data=x)
    worst = min((b for b in level2 if b.start[-1] >= 16), key=lambda b: b.D)
    split = [b for b in tight if b.level == 3]
    assert len(split) == 8
    assert all(np.all(np.array(b.start) >= worst.start) and np.all(np.array(b.stop) <= worst.stop) for b in split)


def test_white_noise_gains_little_from_splitting():
    # D of white noise scales like 1/|x|, so D * |x| hardly changes with the split: the
    # objective spends its blocks on structured regions, not on noise.
    x, half = _half_smooth_half_noise()
    blocks = sci_partition(x, levels=4, max_blocks=30, min_size=2)
    assert len(blocks) <= 30 and is_tiling(blocks, x.shape[:-1])
    noisy = [b for b in blocks if b.start[-1] >= half]
    assert noisy and all(b.level == 2 for b in noisy)
    assert max(b.D for b in noisy) < 0.01 < min(b.D for b in blocks if b.stop[-1] <= half)


@pytest.mark.parametrize("shape,levels", [((64, 48, 2), 4), ((20, 24, 18, 1), 3), ((9, 12, 10, 8, 3), 3), ((50, 1), 4)])
def test_partition_tiles_in_any_dimension(shape, levels):
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    x[: shape[0] // 2] = 1.0
    for max_blocks in (1, 7, 50):
        blocks = sci_partition(x, levels=levels, max_blocks=max_blocks)
        assert 1 <= len(blocks) <= max_blocks
        assert (_coverage(blocks, shape[:-1]) == 1).all()
        assert is_tiling(blocks, shape[:-1])
        assert [b.start for b in blocks] == sorted(b.start for b in blocks)
        assert all(0 < b.D <= 1 for b in blocks)
        for b in blocks[:3]:
            assert b.D == pytest.approx(spectrum_concentration(x[b.slices]))


def test_constant_volume_stays_whole():
    blocks = sci_partition(np.full((40, 40, 40, 1), 7.0), max_blocks=50)
    assert blocks == [Block((0, 0, 0), (40, 40, 40), 1)]
    assert sci_partition(np.zeros((32, 32, 1)))[0].D == 1.0


def test_partition_options_and_data_errors():
    x = np.zeros((16, 16, 1))
    with pytest.raises(OptionError):
        sci_partition(x, max_blocks=0)
    with pytest.raises(OptionError):
        sci_partition(x, levels=0)
    with pytest.raises(OptionError):
        sci_partition(x, m=0)
    with pytest.raises(OptionError):
        sci_partition(x, mip_rel_gap=-1.0)
    with pytest.raises(OptionError):
        select_partition(octree((16, 16), 2), [1.0] * 4, 5)  # one D per node (5 nodes)
    with pytest.raises(DataError):
        sci_partition(np.zeros(16))
    with pytest.raises(DataError):
        sci_partition(np.full((8, 8, 1), np.inf))
    with pytest.raises(DataError):
        sci_partition(np.zeros((0, 8, 1)))


def test_real_map_partition():
    import mrcfile

    with mrcfile.open(MAP64) as mrc:  # gzip is detected by mrcfile
        vol = np.asarray(mrc.data, dtype=np.float32)
    assert vol.shape == (64, 64, 64)
    blocks = sci_partition(vol[..., None], max_blocks=50)
    assert 1 < len(blocks) <= 50
    assert is_tiling(blocks, vol.shape)
    assert all(0 < b.D <= 1 for b in blocks)
    # The ILP optimum beats (or ties) the simple alternatives of the same block budget.
    obj = partition_objective(blocks, vol.shape)
    for alt in (no_partition(None, data=vol[..., None]), equidistant_partition(None, 2, data=vol[..., None])):
        assert obj >= partition_objective(alt, vol.shape) - 1e-12


def test_real_light_sheet_stack_is_fast():
    import tifffile

    vol = tifffile.imread(shared_file("fluorescence/pycudadecon_llsm_im_raw.tif"))
    assert vol.shape == (88, 320, 256)
    t0 = time.perf_counter()
    blocks = sci_partition(vol[..., None], levels=4, max_blocks=50)
    assert time.perf_counter() - t0 < 10.0  # about 1 s on 2 cores
    assert len(blocks) <= 50 and is_tiling(blocks, vol.shape)


def test_100_cubed_is_fast():
    x = np.random.default_rng(3).normal(size=(100, 100, 100, 1)).astype(np.float32)
    t0 = time.perf_counter()
    blocks = sci_partition(x, levels=4, max_blocks=50)
    assert time.perf_counter() - t0 < 5.0  # about 0.4 s on 2 cores
    assert len(blocks) <= 50 and is_tiling(blocks, (100, 100, 100))


# --------------------------------------------------------------------------------------
# ablations, blocks, table
# --------------------------------------------------------------------------------------


def test_equidistant_and_no_partition():
    ep = equidistant_partition((100, 100, 100), 3)
    assert len(ep) == 64 and {b.level for b in ep} == {3} and is_tiling(ep, (100, 100, 100))
    ep = equidistant_partition((15, 40), 3)  # the 7-voxel half stops at level 2 for its axis 0 only
    assert is_tiling(ep, (15, 40)) and len(ep) == 12
    assert all(math.isnan(b.D) for b in ep)
    x = np.random.default_rng(4).normal(size=(16, 16, 2))
    ep = equidistant_partition(None, 2, data=x, m=2)
    assert len(ep) == 4 and all(b.D == pytest.approx(spectrum_concentration(x[b.slices], 2)) for b in ep)
    (np_,) = no_partition(None, data=x)
    assert np_ == Block((0, 0), (16, 16), 1) and np_.D == pytest.approx(spectrum_concentration(x))
    assert no_partition((3, 4, 5)) == [Block((0, 0, 0), (3, 4, 5), 1)]
    with pytest.raises(OptionError):
        equidistant_partition((16, 16), 0)
    with pytest.raises(OptionError):
        equidistant_partition((8, 8), 2, data=x)
    with pytest.raises(DataError):
        with_concentration([Block((0, 0), (20, 20), 1)], x)


def test_block_helpers():
    b = Block((2, 0, 4), (6, 3, 9), 2, 0.25)
    assert b.shape == (4, 3, 5) and b.size == 60 and b.ndim == 3
    assert b.slices == (slice(2, 6), slice(0, 3), slice(4, 9))
    assert np.zeros((10, 10, 10, 2))[b.slices].shape == (4, 3, 5, 2)
    assert Block.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    assert Block.from_dict(b.to_dict()).D == 0.25
    assert Block((0,), (4,)).to_dict()["D"] is None


def test_block_table_round_trip():
    blocks = sci_partition(_flat_and_piecewise(), levels=3, max_blocks=20, min_size=2)
    text = json.dumps(block_table(blocks), allow_nan=False)
    back = blocks_from_table(json.loads(text))
    assert back == blocks and [b.D for b in back] == [b.D for b in blocks]
    assert blocks_from_table(block_table(equidistant_partition((8, 8), 2)))[0].D != 0.0


@pytest.mark.parametrize(
    "table",
    [
        [],
        {"version": 2, "start": [], "stop": [], "level": [], "D": []},
        {"version": 1, "start": [[0]], "stop": [[4]], "level": [1]},
        {"version": 1, "start": [[0]], "stop": [[4], [5]], "level": [1], "D": [None]},
        {"version": 1, "start": [[3]], "stop": [[2]], "level": [1], "D": [None]},
        {"version": 1, "start": [[0.5]], "stop": [[2]], "level": [1], "D": [None]},
        {"version": 1, "start": [[0]], "stop": [[2]], "level": [0], "D": [None]},
        {"version": 1, "start": [[0]], "stop": [[2]], "level": [1], "D": ["x"]},
        {"version": 1, "start": [[0], [0, 0]], "stop": [[2], [2, 2]], "level": [1, 1], "D": [None, None]},
        {"version": 1, "start": ["ab"], "stop": [[2]], "level": [1], "D": [None]},
    ],
)
def test_bad_tables_raise_format_error(table):
    with pytest.raises(FormatError):
        blocks_from_table(table)


def test_is_tiling_detects_gaps_and_overlaps():
    good = [Block((0, 0), (4, 8)), Block((4, 0), (8, 8))]
    assert is_tiling(good, (8, 8))
    assert not is_tiling(good[:1], (8, 8))
    assert not is_tiling([Block((0, 0), (5, 8)), Block((3, 0), (6, 8))], (8, 8))  # overlap, equal volume
    assert not is_tiling(good, (8, 7))
    assert not is_tiling([], (8, 8))
