"""Random access to a ``.vxf`` file: ``voxfield.open("x.vxf")[z0:z1, y0:y1, x0:x1]``.

For neural files only the blocks that the request touches are evaluated, and only at the
requested voxels (a region, a slice along any axis, every k-th voxel, or a list of points,
fractional positions included); the values equal those of the full decode. Classic-codec
files have no random access: they are decoded once, then indexed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxfield.codecs.base import restore_dtype
from voxfield.compress import container, guard, registry, schema
from voxfield.compress.field_layout import FieldLayout
from voxfield.compress.modes import ebound
from voxfield.errors import FormatError, OptionError
from voxfield.io.volume import Volume

if TYPE_CHECKING:
    from voxfield.compress.grid import GridField
    from voxfield.compress.hybrid import RegionDecoder
    from voxfield.compress.neural_model import NeuralField


class VxfArray:
    """A read-only, array-like view of a compressed volume.

    ``shape``, ``dtype``, ``axes``, ``ndim`` describe the original volume; indexing with
    integers, slices (any step) and ``...`` returns a numpy array like the same indexing of
    the decoded volume would. ``member`` picks one map of a set (``voxfield compress-set``:
    its number counted from 1, or its name); ``header`` is then that member's view (its
    ``volume`` entry in place of the set's)."""

    def __init__(self, path: str | os.PathLike[str] | bytes, member: int | str | None = None) -> None:
        with guard.decoding(path):
            self._open(path, member)

    def _open(self, path: str | os.PathLike[str] | bytes, member: int | str | None) -> None:
        with container.VxfReader(path) as reader:
            self.header = reader.header
            self.path = reader.path
            method = registry.method_for_header(reader.header, reader.path)
            is_set = method.kind == "set"
            if is_set or member is not None:
                from voxfield.compress import cryo_pe_set

                self.header = cryo_pe_set.member_header(reader.header, member, reader.path)
            spec = schema.check_volume(self.header.get("volume"), reader.path)
            self.shape: tuple[int, ...] = spec.shape
            self.dtype = spec.dtype
            self.axes: str = spec.axes
            self._field: NeuralField | GridField | None = None
            self._layout: FieldLayout | None = None
            self._full: np.ndarray | None = None
            self._hybrid: RegionDecoder | None = None
            if is_set:
                self._field, self._layout = cryo_pe_set.load_member_field(reader, member)
            else:
                if "ebound" in reader.header:  # the correction is coded for the whole volume
                    self._full = ebound.correct(reader, method.decode(reader).data)
                elif (region := method.open_region(reader)) is not None:
                    self._hybrid = region
                elif (opened := method.open_field(reader)) is not None:
                    self._field, self._layout = opened
                else:
                    self._full = method.decode(reader).data
            if self._full is not None:
                guard.check_decoded(self._full, self.shape, self.dtype, reader.path)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def random_access(self) -> bool:
        """Whether regions decode without decoding the whole volume."""
        return self._full is None or self._hybrid is not None

    def __repr__(self) -> str:
        return f"VxfArray(shape={self.shape}, dtype={self.dtype}, axes={self.axes!r}, path={self.path})"

    # ------------------------------------------------------------------ indexing
    def _normalize_key(self, key: Any) -> list[int | slice]:
        if not isinstance(key, tuple):
            key = (key,)
        if sum(k is Ellipsis for k in key) > 1:
            raise OptionError("only one ... allowed in an index")
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        if len(key) > self.ndim:
            raise OptionError(f"too many indices ({len(key)}) for a {self.ndim}-D volume {self.shape}")
        key = tuple(key) + (slice(None),) * (self.ndim - len(key))
        out: list[int | slice] = []
        for k, n, a in zip(key, self.shape, self.axes, strict=True):
            if isinstance(k, (int, np.integer)):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise OptionError(f"index {int(k)} out of bounds for axis {a} of size {n}")
                out.append(i)
            elif isinstance(k, slice):
                out.append(k)
            else:
                raise OptionError(f"unsupported index {k!r} (use integers, slices or ...; see .points())")
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        with guard.decoding(self.path):
            data = self._getitem(key)
            guard.check_decoded(data, None, self.dtype, self.path)
        return data

    def _getitem(self, key: Any) -> np.ndarray:
        keys = self._normalize_key(key)
        if self._full is not None:
            return np.asarray(self._full[tuple(keys)])
        per_axis = [np.array([k]) if isinstance(k, int) else np.arange(*k.indices(n))
                    for k, n in zip(keys, self.shape, strict=True)]
        if any(len(ix) == 0 for ix in per_axis):
            shape = tuple(len(ix) for ix, k in zip(per_axis, keys, strict=True) if not isinstance(k, int))
            return np.empty(shape, dtype=self.dtype)
        if self._hybrid is not None:
            uniq = [np.unique(ix) for ix in per_axis]
            back = [np.searchsorted(u, ix) for u, ix in zip(uniq, per_axis, strict=True)]
            data = self._hybrid.region(uniq)[np.ix_(*back)]
        else:
            data = self._decode_grid(per_axis)
        squeeze = tuple(i for i, k in enumerate(keys) if isinstance(k, int))
        return data.reshape(tuple(n for i, n in enumerate(data.shape) if i not in squeeze))

    def _decode_grid(self, per_axis: list[np.ndarray]) -> np.ndarray:
        """Values at the outer product of per-axis indices (any order per axis)."""
        layout = self._layout
        assert layout is not None
        # evaluate on sorted unique indices, then undo the order
        uniq = [np.unique(ix) for ix in per_axis]
        back = [np.searchsorted(u, ix) for u, ix in zip(uniq, per_axis, strict=True)]
        coord_index = [uniq[a] for a in layout.coord_axes]
        if self._field is None:  # constant volume
            vals = np.full(tuple(len(u) for u in coord_index) + (layout.n_out,), 0.0, np.float32)
        else:
            vals = self._field.evaluate_grid(coord_index)
        full = layout.denormalize(vals)
        out_shape = tuple(layout.shape[a] for a in layout.out_axes)
        full = full.reshape(full.shape[:-1] + out_shape)
        # select requested output (channel) indices
        for j, a in enumerate(layout.out_axes):
            full = np.take(full, uniq[a], axis=len(layout.coord_axes) + j)
        order = layout.coord_axes + layout.out_axes
        arr = np.transpose(full, np.argsort(order))
        arr = arr[np.ix_(*back)]
        return restore_dtype(arr, self.dtype)

    # ------------------------------------------------------------------ other requests
    def points(self, coords: np.ndarray) -> np.ndarray:
        """Values at positions ``coords`` of shape ``(P, n_coord_axes)`` given in voxel units
        along the coordinate axes (the non-channel axes, in the volume's order); fractional
        positions evaluate the continuous field. Returns ``(P, *channel_shape)`` in the
        original dtype (float64 for fractional positions of integer data)."""
        with guard.decoding(self.path):
            out = self._points(coords)
            guard.check_decoded(out, None, None, self.path)
        return out

    def _points(self, coords: np.ndarray) -> np.ndarray:
        pts = np.asarray(coords, dtype=np.float64)
        if self._layout is None:  # classic or hybrid file: nearest voxel
            if self._full is None:
                self._full = self[...]
            idx = np.rint(pts).astype(np.int64)
            if pts.ndim != 2 or pts.shape[1] != self.ndim:
                raise OptionError(f"coordinates must have shape (P, {self.ndim})")
            self._check_points(idx, self.shape)
            return self._full[tuple(idx.T)]
        layout = self._layout
        n = len(layout.coord_axes)
        if pts.ndim != 2 or pts.shape[1] != n:
            raise OptionError(f"coordinates must have shape (P, {n}) for the axes {layout.coord_letters}")
        self._check_points(pts, layout.coord_shape)
        if self._field is None:
            vals = np.zeros((len(pts), layout.n_out), np.float32)
        else:
            vals = self._field.evaluate_points(pts)
        out = layout.denormalize(vals).reshape((len(pts),) + tuple(layout.shape[a] for a in layout.out_axes))
        integral = bool(np.all(pts == np.rint(pts)))
        return restore_dtype(out, self.dtype) if integral or self.dtype.kind == "f" else out

    @staticmethod
    def _check_points(pts: np.ndarray, shape: tuple[int, ...]) -> None:
        lim = np.asarray(shape, dtype=np.float64) - 1
        if len(pts) and (np.any(pts < 0) or np.any(pts > lim)):
            raise OptionError(f"coordinates outside the volume (valid range 0..{tuple(int(v) for v in lim)})")

    def volume(self, key: Any = ...) -> Volume:
        """A :class:`Volume` of ``self[key]`` carrying the original frame: origin moved to the
        first voxel taken, spacing multiplied by the step (integer indices drop the axis)."""
        keys = self._normalize_key(key)
        data = self[tuple(keys)]
        desc = self.header["volume"]
        spatial = [a for a in self.axes if a in "ZYX"]
        spacing = list(desc.get("spacing") or [1.0] * len(spatial))
        origin = list(desc.get("origin") or [0.0] * len(spatial))
        axes, sp, org = "", [], []
        for k, n, a in zip(keys, self.shape, self.axes, strict=True):
            if isinstance(k, int):
                continue
            axes += a
            if a in "ZYX":
                start, _, step = k.indices(n)
                j = spatial.index(a)
                sp.append(spacing[j] * abs(step))
                org.append(origin[j] + start * spacing[j])
        meta = dict(desc.get("meta") or {})
        # header fields of the source format describe the whole volume, not this cut
        fmt = meta.get("format")
        if fmt and isinstance(meta.get(fmt), dict) and data.shape != self.shape:
            meta.pop(fmt)
        with guard.decoding(self.path):
            return Volume(data, axes, tuple(sp), desc.get("unit", "px"), tuple(org), meta)


def open_vxf(path: str | os.PathLike[str] | bytes, member: int | str | None = None) -> VxfArray:
    """Open a ``.vxf`` file for random access (see :class:`VxfArray`; ``member`` for a set)."""
    if not isinstance(path, (bytes, bytearray)) and not Path(path).exists():
        raise FormatError("no such file", path)
    return VxfArray(path, member)
