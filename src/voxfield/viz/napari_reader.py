"""napari reader plugin: open ``.vxf`` files and OME-Zarr folders as (multiscale) image layers.

Registered through ``voxfield/napari.yaml`` (an npe2 manifest). napari calls
:func:`get_reader` with the path(s) it was asked to open; for a path voxfield handles, it
returns a function that turns the path(s) into napari *LayerData* tuples
``(data, add_kwargs, "image")``. Nothing here imports napari, so the plugin can be tested
with ``npe2`` alone.

``.vxf`` files are opened with :func:`voxfield.open` and nothing is decoded up front: every
pyramid level is a :class:`StridedView` of the file, a lazy array whose indexing composes
into one read of the file at the end (``np.asarray(view)``), so a neural file decodes only
the voxels on screen. OME-Zarr levels are Dask arrays (:func:`voxfield.io.omezarr_lazy.open_lazy`).

Errors of the files themselves (damaged, truncated, not an image) are raised by the reader
function as :class:`~voxfield.errors.VoxfieldError` for napari to show; :func:`get_reader`
never raises for a path it does not handle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: A napari LayerData tuple: ``(data, add_kwargs, layer_type)``.
LayerData = tuple[Any, dict[str, Any], str]
#: What napari passes to a reader: one path or a list of paths.
PathOrPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
ReaderFunction = Callable[[PathOrPaths], list[LayerData]]

#: Most pyramid levels offered for a ``.vxf`` file (full resolution included).
MAX_LEVELS = 4
#: A new level is added only while the previous one is at least this large along Y and X.
MIN_LEVEL_SIZE = 64
#: Z is subsampled in a level only while it keeps at least this many planes.
MIN_Z_SIZE = 16

#: Files in the folder that make it a Zarr store (v2 group/array, v3 node).
_ZARR_MARKERS = (".zgroup", ".zarray", ".zattrs", "zarr.json")
_SPATIAL = "ZYX"


# ---------------------------------------------------------------------------- lazy levels
class StridedView:
    """A lazy, read-only view of an array-like ``base`` (e.g. a :class:`VxfArray`).

    The view holds, for each axis of ``base``, either an integer (the axis is dropped) or a
    regular selection ``(start, step, length)``. Indexing the view with integers, slices
    (any step) and ``...`` returns another view and reads nothing; ``np.asarray(view)``
    reads the selected voxels with a single ``base[key]`` call, ``key`` made of integers and
    slices of the base (the view's steps multiplied into it), so that ``base`` decodes only
    what is needed. Other keys (integer arrays, masks, ``None``) are applied to the
    materialised view.

    ``StridedView(base)`` is the whole of ``base``; ``StridedView(base, steps)`` takes every
    ``steps[i]``-th voxel along axis ``i`` (a pyramid level of a ``.vxf`` file).
    """

    def __init__(self, base: Any, steps: Sequence[int] | None = None,
                 _selection: Sequence[int | tuple[int, int, int]] | None = None) -> None:
        self._base = base
        base_shape = tuple(int(n) for n in base.shape)
        if _selection is None:
            steps = tuple(steps) if steps is not None else (1,) * len(base_shape)
            if len(steps) != len(base_shape) or any(int(s) < 1 for s in steps):
                raise ValueError(f"steps {tuple(steps)} do not fit an array of shape {base_shape}")
            _selection = [(0, int(s), -(-n // int(s))) for n, s in zip(base_shape, steps, strict=True)]
        self._sel: tuple[int | tuple[int, int, int], ...] = tuple(_selection)
        self.shape: tuple[int, ...] = tuple(s[2] for s in self._sel if not isinstance(s, int))
        self.dtype = np.dtype(base.dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions of the view."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements of the view."""
        return math.prod(self.shape)

    @property
    def base_key(self) -> tuple[int | slice, ...]:
        """The key that reads this view from ``base``: ``np.asarray(view) == base[view.base_key]``."""
        key: list[int | slice] = []
        for s in self._sel:
            if isinstance(s, int):
                key.append(s)
                continue
            start, step, length = s
            if length == 0:
                key.append(slice(0, 0, 1))
                continue
            last = start + step * (length - 1)
            stop = last + (1 if step > 0 else -1)
            key.append(slice(start, None if stop < 0 else stop, step))
        return tuple(key)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d view")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"StridedView(shape={self.shape}, dtype={self.dtype}, base_key={self.base_key}, base={self._base!r})"

    def __getitem__(self, key: Any) -> StridedView | np.ndarray:
        basic = _basic_key(key, self.ndim)
        if basic is None:  # fancy indexing: on the materialised view
            return np.asarray(self)[key]
        new: list[int | tuple[int, int, int]] = []
        it = iter(basic)
        for s in self._sel:
            if isinstance(s, int):
                new.append(s)
                continue
            start, step, length = s
            k = next(it)
            if isinstance(k, int):
                i = k + length if k < 0 else k
                if not 0 <= i < length:
                    raise IndexError(f"index {k} is out of bounds for an axis of size {length}")
                new.append(start + i * step)
            else:
                r = range(length)[k]
                new.append((start + r.start * step, r.step * step, len(r)) if len(r) else (start, step, 0))
        return StridedView(self._base, _selection=new)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if self.size == 0:
            out = np.empty(self.shape, dtype=self.dtype)
        else:
            out = np.asarray(self._base[self.base_key])
            if out.shape != self.shape:  # a base that keeps integer-indexed axes
                out = out.reshape(self.shape)
        return out if dtype is None else out.astype(dtype, copy=False)


def _basic_key(key: Any, ndim: int) -> list[int | slice] | None:
    """``key`` as one integer or slice per axis, or None when it is not basic indexing."""
    if not isinstance(key, tuple):
        key = (key,)
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    out: list[int | slice] = []
    for k in key:
        if k is Ellipsis:
            out.extend([slice(None)] * (ndim - (len(key) - 1)))
        elif isinstance(k, slice):
            out.append(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            out.append(int(k))
        else:
            return None
    if len(out) > ndim:
        raise IndexError(f"too many indices ({len(out)}) for a {ndim}-D array")
    return out + [slice(None)] * (ndim - len(out))


def vxf_levels(arr: Any, axes: str) -> list[StridedView]:
    """The pyramid of a ``.vxf`` array-like: level 0 the whole array, level ``k`` every
    ``2**k``-th voxel along Y and X (and Z while it keeps at least :data:`MIN_Z_SIZE`
    planes). A level is added while the previous one is at least :data:`MIN_LEVEL_SIZE`
    voxels along Y and X, up to :data:`MAX_LEVELS` levels."""
    shape = tuple(int(n) for n in arr.shape)
    levels = [StridedView(arr)]
    planar = [i for i, a in enumerate(axes) if a in "YX"]
    if not planar:
        return levels
    for k in range(1, MAX_LEVELS):
        if min(levels[-1].shape[i] for i in planar) < MIN_LEVEL_SIZE:
            break
        steps = [1] * len(shape)
        for i in planar:
            steps[i] = 2**k
        if "Z" in axes:
            iz = axes.index("Z")
            j = k
            while j > 0 and -(-shape[iz] // 2**j) < MIN_Z_SIZE:
                j -= 1
            steps[iz] = 2**j
        levels.append(StridedView(arr, steps))
    return levels


# ---------------------------------------------------------------------------- get_reader
def get_reader(path: PathOrPaths) -> ReaderFunction | None:
    """npe2 reader contribution: the function that reads ``path``, or None.

    ``path`` is one path or a list of paths (napari's ``stack`` mode); it is accepted when
    every path is a ``.vxf`` file or an OME-Zarr folder (a ``*.zarr`` / ``*.ome.zarr``
    directory holding Zarr metadata). Never raises: anything unexpected means None."""
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths or not all(_kind(p) is not None for p in paths):
            return None
    except Exception:  # noqa: BLE001 - napari asks every plugin; refusing must not fail
        return None
    return read_paths


def _kind(path: Any) -> str | None:
    """``"vxf"``, ``"zarr"`` or None (not ours, or not there)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".vxf") and p.is_file():
        return "vxf"
    if name.endswith(".zarr") and p.is_dir() and any((p / m).is_file() for m in _ZARR_MARKERS):
        return "zarr"
    return None


def read_paths(path: PathOrPaths) -> list[LayerData]:
    """The reader function :func:`get_reader` returns: LayerData tuples for ``path`` (one
    path or a list, read one after the other). Raises
    :class:`~voxfield.errors.VoxfieldError` for a damaged or unreadable file."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        kind = _kind(p)
        if kind == "vxf":
            layers.extend(read_vxf(p))
        elif kind == "zarr":
            layers.extend(read_omezarr(p))
        else:
            from voxfield.errors import FormatError

            raise FormatError("not a .vxf file or an OME-Zarr folder", p)
    return layers


# ---------------------------------------------------------------------------- .vxf
def read_vxf(path: str | os.PathLike[str]) -> list[LayerData]:
    """One image layer for a ``.vxf`` file: a lazy pyramid (see :func:`vxf_levels`), the
    voxel size as ``scale``, the origin as ``translate``, a C axis as ``channel_axis``."""
    import voxfield

    arr = voxfield.open(path)
    axes = str(arr.axes)
    header = arr.header if isinstance(arr.header, dict) else {}
    vol = header.get("volume") if isinstance(header.get("volume"), dict) else {}
    spatial = [a for a in axes if a in _SPATIAL]
    spacing = _floats(vol.get("spacing"), len(spatial), 1.0, positive=True)
    origin = _floats(vol.get("origin"), len(spatial), 0.0)
    unit = vol.get("unit") if isinstance(vol.get("unit"), str) else "px"
    method = header.get("method") if isinstance(header.get("method"), dict) else {}
    codec = method.get("codec")
    codec_name = codec.get("name") if isinstance(codec, dict) else codec

    levels = vxf_levels(arr, axes)
    n = len(arr.shape)
    rgb = "S" in axes and axes.index("S") == n - 1 and arr.shape[-1] in (3, 4)
    channel_axis = axes.index("C") if "C" in axes else (axes.index("S") if "S" in axes and not rgb else None)
    dropped = {channel_axis} if channel_axis is not None else set()
    if rgb:
        dropped.add(n - 1)
    per_axis_scale = {a: s for a, s in zip(spatial, spacing, strict=True)}
    per_axis_origin = {a: o for a, o in zip(spatial, origin, strict=True)}
    scale = [per_axis_scale.get(a, 1.0) for i, a in enumerate(axes) if i not in dropped]
    translate = [per_axis_origin.get(a, 0.0) for i, a in enumerate(axes) if i not in dropped]
    metadata = {
        "method": method.get("name"),
        "codec": codec_name,
        "axes": axes,
        "unit": unit,
        "spacing": list(spacing),
        "path": str(path),
        "header": header,
    }
    kwargs: dict[str, Any] = {"name": _stem(path), "scale": scale, "translate": translate, "metadata": metadata}
    if rgb:
        kwargs["rgb"] = True
    data: Any = levels[0]
    if len(levels) > 1:
        data = levels
        kwargs["multiscale"] = True
    if channel_axis is not None:
        n_channels = int(arr.shape[channel_axis])
        kwargs["channel_axis"] = channel_axis
        names = _vxf_channel_names(vol.get("meta"), n_channels)
        if names is not None:
            kwargs["name"] = names
        kwargs["metadata"] = [dict(metadata, channel=c) for c in range(n_channels)]
    return [(data, kwargs, "image")]


def _vxf_channel_names(meta: Any, n: int) -> list[str] | None:
    """Channel names recorded in a ``.vxf`` header's volume ``meta`` (from an OME-TIFF or an
    OME-Zarr ``omero`` block), if there is one name per channel."""
    if not isinstance(meta, dict):
        return None
    candidates: list[Any] = [meta.get("channel_names")]
    for ns in ("tiff", "zarr"):
        sub = meta.get(ns)
        if isinstance(sub, dict):
            candidates.append(sub.get("channel_names"))
            omero = sub.get("omero")
            if isinstance(omero, dict) and isinstance(omero.get("channels"), list):
                candidates.append([c.get("label") if isinstance(c, dict) else None for c in omero["channels"]])
    for names in candidates:
        if isinstance(names, list) and len(names) == n and all(isinstance(x, str) and x for x in names):
            return list(names)
    return None


def _floats(values: Any, n: int, default: float, positive: bool = False) -> tuple[float, ...]:
    """``n`` finite numbers from a header list, or ``default`` for each when it has none
    (or holds anything else: the header is validated on open, this only guards)."""
    if isinstance(values, (list, tuple)) and len(values) == n:
        try:
            out = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            out = ()
        if len(out) == n and all(math.isfinite(v) and (v > 0 or not positive) for v in out):
            return out
    return (default,) * n


# ---------------------------------------------------------------------------- OME-Zarr
def read_omezarr(path: str | os.PathLike[str]) -> list[LayerData]:
    """One image layer for an OME-Zarr folder: its levels as Dask arrays (``multiscale``
    when there are several), level 0's NGFF scale and translation, a C axis as
    ``channel_axis`` with the ``omero`` channel labels as names."""
    from voxfield.io.omezarr_lazy import open_lazy

    img = open_lazy(path)
    axes = str(img.axes)
    channel_axis = axes.index("C") if "C" in axes else None
    keep = [i for i in range(len(axes)) if i != channel_axis]
    scale = [float(img.scales[0][i]) for i in keep]
    translate = [float(img.translations[0][i]) for i in keep] if img.translations else [0.0] * len(keep)
    metadata = {"axes": axes, "unit": img.unit, "path": str(path), "ngff": img.attrs}
    kwargs: dict[str, Any] = {"name": _stem(path), "scale": scale, "translate": translate, "metadata": metadata}
    data: Any = img.levels[0]
    if len(img.levels) > 1:
        data = list(img.levels)
        kwargs["multiscale"] = True
    if channel_axis is not None:
        n_channels = int(img.shape[channel_axis])
        kwargs["channel_axis"] = channel_axis
        names = img.channel_names
        if names and len(names) == n_channels:
            kwargs["name"] = [str(x) for x in names]
        kwargs["metadata"] = [dict(metadata, channel=c) for c in range(n_channels)]
    return [(data, kwargs, "image")]


def _stem(path: str | os.PathLike[str]) -> str:
    """Layer name: the file or folder name without ``.vxf`` / ``.ome.zarr`` / ``.zarr``."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr", ".vxf"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name
