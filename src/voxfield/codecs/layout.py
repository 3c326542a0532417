"""Array reshaping shared by the classic codecs.

Every backend has its own idea of what an array is: SPERR wants 2-D or 3-D, ZFP and SZ3
up to 4-D, image codecs want 2-D pictures and video codecs a stack of frames. The
functions here turn any 1- to 5-D array into the form a backend takes and back again,
**deterministically from the original shape**, so that nothing about the layout has to
be stored in a payload.

The canonical reshaping (:func:`volume_plan`) is:

1. axes of length 1 are dropped (SPERR aborts the process on a 3-D array with a
   length-1 axis, and no codec gains anything from them);
2. a trailing *samples* axis (length <= 4 after an axis of length >= 16, as in a YXS
   RGB or 3-channel image) is moved to the front, so that each channel becomes one
   smooth slice instead of interleaving unrelated values along the fastest axis;
3. leading axes are merged until the array has at most ``max_dims`` axes (the
   spatial/fastest axes are kept as they are: ``(C, Z, Y, X)`` becomes ``(C*Z, Y, X)``);
4. leading length-1 axes are added up to ``min_dims``.

For 2-D image and video codecs, :func:`to_slices` gives a ``(n, height, width)`` stack
(a 1-D signal is folded into a near-square picture, padded by repeating its last value),
:func:`mosaic_plan`/:func:`to_mosaic` tile such stacks into a few large pictures (one
codestream header and one global rate allocation instead of one per slice), and
:func:`pad_edges` pads pictures to a block multiple by edge replication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: A trailing axis this short after an axis at least ``_SAMPLES_MIN_PREV`` long is a
#: samples (channel) axis.
_SAMPLES_MAX = 4
_SAMPLES_MIN_PREV = 16


@dataclass(frozen=True)
class VolumePlan:
    """How an array of ``shape`` is presented to a backend (see :func:`volume_plan`)."""

    shape: tuple[int, ...]  # original shape
    squeezed: tuple[int, ...]  # without length-1 axes
    samples_first: bool  # trailing samples axis moved to the front
    moved: tuple[int, ...]  # squeezed shape after the move
    coded: tuple[int, ...]  # shape handed to the backend


def volume_plan(shape: tuple[int, ...], max_dims: int = 3, min_dims: int = 1) -> VolumePlan:
    """Plan the canonical reshaping of an array of ``shape`` (see the module docstring)."""
    shape = tuple(int(s) for s in shape)
    squeezed = tuple(s for s in shape if s != 1)
    samples_first = (
        len(squeezed) >= 3 and squeezed[-1] <= _SAMPLES_MAX and squeezed[-2] >= _SAMPLES_MIN_PREV
    )
    moved = (squeezed[-1],) + squeezed[:-1] if samples_first else squeezed
    coded = moved
    if len(coded) > max_dims:
        keep = max_dims - 1
        coded = (math.prod(coded[: len(coded) - keep]),) + coded[len(coded) - keep :]
    if len(coded) < min_dims:
        coded = (1,) * (min_dims - len(coded)) + coded
    return VolumePlan(shape, squeezed, samples_first, moved, coded)


def to_volume(data: np.ndarray, plan: VolumePlan) -> np.ndarray:
    """``data`` in the backend layout of ``plan`` (C-contiguous)."""
    a = data.reshape(plan.squeezed)
    if plan.samples_first:
        a = np.moveaxis(a, -1, 0)
    return np.ascontiguousarray(a.reshape(plan.coded))


def from_volume(coded: np.ndarray, plan: VolumePlan) -> np.ndarray:
    """Inverse of :func:`to_volume`."""
    a = coded.reshape(plan.moved)
    if plan.samples_first:
        a = np.moveaxis(a, 0, -1)
    return np.ascontiguousarray(a).reshape(plan.shape)


# ---------------------------------------------------------------------------- slices
@dataclass(frozen=True)
class SlicePlan:
    """A ``(n, height, width)`` stack view of an array (see :func:`slice_plan`)."""

    volume: VolumePlan
    folded: bool  # 1-D signal folded into a picture
    length: int  # number of values of a folded 1-D signal
    stack: tuple[int, int, int]  # (n, height, width)


def slice_plan(shape: tuple[int, ...]) -> SlicePlan:
    """Plan a stack of 2-D slices: the last two canonical axes are the picture, all
    leading axes are flattened into the slice list; a 1-D signal becomes one picture of
    ``ceil(n / w)`` rows of ``w = ceil(sqrt(n))`` values."""
    vol = volume_plan(shape, max_dims=3, min_dims=1)
    if len(vol.coded) == 1:
        n = vol.coded[0]
        w = max(1, math.isqrt(n - 1) + 1) if n > 1 else 1
        h = -(-n // w)
        return SlicePlan(vol, True, n, (1, h, w))
    coded = (1,) * (3 - len(vol.coded)) + vol.coded
    return SlicePlan(vol, False, 0, (coded[0], coded[1], coded[2]))


def to_slices(data: np.ndarray, plan: SlicePlan) -> np.ndarray:
    """``data`` as a C-contiguous ``(n, height, width)`` stack."""
    a = to_volume(data, plan.volume)
    if plan.folded:
        n, h, w = plan.stack
        flat = a.reshape(-1)
        pad = h * w - flat.size
        if pad:
            flat = np.concatenate([flat, np.full(pad, flat[-1], flat.dtype)])
        return flat.reshape(plan.stack)
    return a.reshape(plan.stack)


def from_slices(stack: np.ndarray, plan: SlicePlan) -> np.ndarray:
    """Inverse of :func:`to_slices`."""
    if plan.folded:
        a = stack.reshape(-1)[: plan.length]
        return from_volume(a.reshape(plan.volume.coded), plan.volume)
    return from_volume(stack.reshape(plan.volume.coded), plan.volume)


# ---------------------------------------------------------------------------- mosaics
@dataclass(frozen=True)
class MosaicPlan:
    """Slices of ``(height, width)`` tiled row by row into pictures of ``rows x cols``
    slices, at most ``per_group`` slices per picture."""

    n: int
    height: int
    width: int
    per_group: int
    cols: int
    rows: int

    @property
    def groups(self) -> list[tuple[int, int]]:
        """(first, stop) slice indices of each picture."""
        return [(i, min(i + self.per_group, self.n)) for i in range(0, self.n, self.per_group)]

    def grid(self, count: int) -> tuple[int, int]:
        """(rows, cols) of the picture holding ``count`` slices."""
        if count == self.per_group:
            return self.rows, self.cols
        cols = _best_cols(count, self.height, self.width)
        return -(-count // cols), cols


def _best_cols(n: int, h: int, w: int) -> int:
    """Columns of a near-square grid of ``n`` slices of ``h x w``."""
    cols = max(1, min(n, round(math.sqrt(n * h / w))))
    return cols


def mosaic_plan(stack_shape: tuple[int, int, int], max_pixels: int = 1 << 24) -> MosaicPlan:
    """Plan near-square mosaics of a ``(n, h, w)`` stack, each at most ``max_pixels``
    pixels (but always at least one slice)."""
    n, h, w = (int(s) for s in stack_shape)
    per_group = max(1, min(n, max_pixels // max(1, h * w)))
    cols = _best_cols(per_group, h, w)
    rows = -(-per_group // cols)
    return MosaicPlan(n, h, w, per_group, cols, rows)


def to_mosaics(stack: np.ndarray, plan: MosaicPlan, fill: float | int) -> list[np.ndarray]:
    """Tile the slices of ``stack`` into pictures; unused cells hold ``fill``."""
    out = []
    h, w = plan.height, plan.width
    for start, stop in plan.groups:
        rows, cols = plan.grid(stop - start)
        pic = np.full((rows * h, cols * w), fill, dtype=stack.dtype)
        for i in range(start, stop):
            r, c = divmod(i - start, cols)
            pic[r * h : (r + 1) * h, c * w : (c + 1) * w] = stack[i]
        out.append(pic)
    return out


def from_mosaics(pictures: list[np.ndarray], plan: MosaicPlan) -> np.ndarray:
    """Inverse of :func:`to_mosaics` (the pictures may have been decoded to any dtype)."""
    h, w = plan.height, plan.width
    dtype = pictures[0].dtype if pictures else np.float32
    stack = np.empty((plan.n, h, w), dtype=dtype)
    for (start, stop), pic in zip(plan.groups, pictures, strict=True):
        rows, cols = plan.grid(stop - start)
        if pic.shape != (rows * h, cols * w):
            raise ValueError(f"picture of shape {pic.shape}, expected {(rows * h, cols * w)}")
        for i in range(start, stop):
            r, c = divmod(i - start, cols)
            stack[i] = pic[r * h : (r + 1) * h, c * w : (c + 1) * w]
    return stack


# ---------------------------------------------------------------------------- padding
def padded_size(n: int, multiple: int, minimum: int = 0) -> int:
    """Smallest multiple of ``multiple`` that is >= max(n, minimum)."""
    n = max(n, minimum)
    return -(-n // multiple) * multiple


def pad_edges(stack: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad the last two axes of ``stack`` to ``height x width`` by repeating the last
    row/column (edge replication keeps the padding cheap to code)."""
    h, w = stack.shape[-2:]
    if (h, w) == (height, width):
        return np.ascontiguousarray(stack)
    pad = [(0, 0)] * (stack.ndim - 2) + [(0, height - h), (0, width - w)]
    return np.pad(stack, pad, mode="edge")


# ---------------------------------------------------------------------------- value maps
def to_codes(data: np.ndarray, lo: float, hi: float, levels: int, dtype: np.dtype) -> np.ndarray:
    """Map ``[lo, hi]`` linearly onto the integers ``0..levels`` (rounded, clipped)."""
    scale = levels / (hi - lo) if hi > lo else 0.0
    codes = np.rint((data.astype(np.float64) - lo) * scale)
    return np.clip(codes, 0, levels).astype(dtype)


def from_codes(codes: np.ndarray, lo: float, hi: float, levels: int) -> np.ndarray:
    """Inverse of :func:`to_codes` (float64)."""
    step = (hi - lo) / levels if levels else 0.0
    return codes.astype(np.float64) * step + lo
