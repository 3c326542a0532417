"""Array layout helpers of the codecs: every reshaping must invert exactly."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.codecs.layout import (
    from_codes,
    from_mosaics,
    from_slices,
    from_volume,
    mosaic_plan,
    pad_edges,
    padded_size,
    slice_plan,
    to_codes,
    to_mosaics,
    to_slices,
    to_volume,
    volume_plan,
)

SHAPES = [
    (7,), (1,), (1, 1, 5), (3, 1, 4, 5), (2, 3, 4, 5, 6), (64, 64, 3), (20, 30), (5, 17, 19), (1, 40, 48),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("max_dims,min_dims", [(3, 1), (3, 2), (4, 1)])
def test_volume_roundtrip(shape, max_dims, min_dims):
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    plan = volume_plan(shape, max_dims=max_dims, min_dims=min_dims)
    v = to_volume(a, plan)
    assert v.flags.c_contiguous
    assert min_dims <= v.ndim <= max(max_dims, min_dims)
    assert 1 not in v.shape or v.ndim == min_dims or v.size == 1
    np.testing.assert_array_equal(from_volume(v, plan), a)


def test_volume_plan_choices():
    # YXS: samples first
    assert volume_plan((512, 672, 3)).coded == (3, 512, 672)
    # a small trailing axis after a small one is not a samples axis
    assert volume_plan((8, 8, 3)).coded == (8, 8, 3)
    # leading axes merged, spatial axes kept
    assert volume_plan((2, 5, 10, 20, 30), max_dims=3).coded == (100, 20, 30)
    assert volume_plan((2, 5, 10, 20, 30), max_dims=4).coded == (10, 10, 20, 30)
    # length-1 axes dropped (SPERR aborts on them)
    assert volume_plan((1, 40, 48), max_dims=3, min_dims=2).coded == (40, 48)
    assert volume_plan((7,), max_dims=3, min_dims=2).coded == (1, 7)


@pytest.mark.parametrize("shape", SHAPES + [(1000,), (2, 3)])
def test_slices_roundtrip(shape):
    a = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    plan = slice_plan(shape)
    s = to_slices(a, plan)
    assert s.ndim == 3 and s.shape == plan.stack
    np.testing.assert_array_equal(from_slices(s, plan), a)


def test_fold_1d_is_near_square():
    plan = slice_plan((1000,))
    assert plan.folded and plan.stack == (1, 32, 32)


@pytest.mark.parametrize("stack", [(1, 5, 7), (47, 40, 48), (100, 100, 100), (3, 64, 2), (10, 1, 300)])
@pytest.mark.parametrize("max_pixels", [1 << 24, 9000])
def test_mosaic_roundtrip(stack, max_pixels):
    a = np.arange(np.prod(stack), dtype=np.uint16).reshape(stack)
    plan = mosaic_plan(stack, max_pixels)
    pics = to_mosaics(a, plan, fill=7)
    assert len(pics) == len(plan.groups)
    for p in pics:
        assert p.size <= max(max_pixels, stack[1] * stack[2])
    np.testing.assert_array_equal(from_mosaics(pics, plan), a)


def test_mosaic_near_square():
    plan = mosaic_plan((100, 100, 100))
    assert (plan.rows, plan.cols) == (10, 10)


def test_padding_and_codes():
    assert padded_size(5, 8, 16) == 16 and padded_size(17, 8) == 24 and padded_size(24, 8, 16) == 24
    a = np.arange(12, dtype=np.uint16).reshape(1, 3, 4)
    p = pad_edges(a, 8, 6)
    assert p.shape == (1, 8, 6)
    np.testing.assert_array_equal(p[:, :3, :4], a)
    assert (p[0, 5, :4] == a[0, 2]).all() and (p[0, :3, 5] == a[0, :, 3]).all()
    x = np.linspace(-2.0, 3.0, 101)
    c = to_codes(x, -2.0, 3.0, 4095, np.dtype(np.uint16))
    assert c.min() == 0 and c.max() == 4095
    assert np.abs(from_codes(c, -2.0, 3.0, 4095) - x).max() <= 5.0 / 4095 / 2 + 1e-12
