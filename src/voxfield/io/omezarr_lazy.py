"""OME-Zarr images opened lazily: every pyramid level as a Dask array, nothing read yet.

Works on any OME-NGFF 0.4/0.5 store (and a plain Zarr array), including stores written by
``voxfield compress IN -o OUT.ome.zarr``, whose chunks zarr decodes through the
``voxfield`` codec entry point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxfield.errors import FormatError
from voxfield.io.numpy_io import axes_for_ndim
from voxfield.io.validate import describe_exception, one_line


@dataclass
class LazyImage:
    """A multiscale image whose levels are Dask arrays (level 0 first).

    ``axes``: voxfield letters (``"ZYX"``, ``"CZYX"``, ``"TCZYX"``); ``scales``: per level,
    the NGFF scale of every axis; ``translations`` likewise; ``unit``: of the spatial axes
    (``"µm"``, ``"Å"``, ``"px"``); ``channel_names`` from the ``omero`` block, if any;
    ``attrs``: the group's NGFF attributes (``voxfield`` holds what voxfield recorded)."""

    path: Path
    levels: list[Any]
    axes: str
    scales: list[list[float]]
    translations: list[list[float]]
    unit: str
    channel_names: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.levels[0].shape)

    @property
    def dtype(self) -> Any:
        return self.levels[0].dtype

    def spacing(self, level: int = 0) -> tuple[float, ...]:
        """Voxel size of the spatial axes at ``level``, in :attr:`unit`."""
        return tuple(self.scales[level][i] * self._factors[a] for i, a in enumerate(self.axes) if a in "ZYX")

    _factors: dict[str, float] = field(default_factory=lambda: {"Z": 1.0, "Y": 1.0, "X": 1.0}, repr=False)


def open_lazy(path: str | os.PathLike[str]) -> LazyImage:
    """Open an OME-Zarr store without reading its voxels: each level a Dask array whose
    chunks are the store's (decoded on compute, in parallel under Dask)."""
    import dask.array as da
    import zarr

    from voxfield.io import omezarr

    p = Path(path)
    if not p.exists():
        raise FormatError("no such file or folder", p)
    try:
        node = zarr.open(store=str(p), mode="r")
        if isinstance(node, zarr.Array):
            axes = axes_for_ndim(node.ndim, p)
            return LazyImage(p, [da.from_zarr(node)], axes, [[1.0] * node.ndim], [[0.0] * node.ndim], "px")
        vf = node.attrs.get("voxfield")
        if isinstance(vf, dict) and vf.get("complete") is False:
            raise FormatError("an unfinished voxfield store (its run stopped before the end); rerun the same "
                              "`voxfield compress` command to finish it", p)
        image, attrs, _ = omezarr._find_image(node)
        if image is None:
            raise FormatError("not an OME-Zarr image (no multiscales metadata)", p)
        ms, _, arrays, letters, scales, translations = omezarr.multiscale_levels(image, attrs, p)
        unit, factors = omezarr._space_unit(ms.get("axes") or [], letters)
        names = None
        omero = attrs.get("omero")
        if isinstance(omero, dict) and isinstance(omero.get("channels"), list):
            names = [str(c.get("label", f"channel {i}")) if isinstance(c, dict) else f"channel {i}"
                     for i, c in enumerate(omero["channels"])]
        levels = [da.from_zarr(a) for a in arrays]
        img = LazyImage(p, levels, letters, scales, translations, unit, names, dict(attrs))
        img._factors = factors
        return img
    except (FormatError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - zarr on damaged metadata
        raise FormatError(f"not a readable OME-Zarr store ({one_line(describe_exception(exc))})", p) from None
