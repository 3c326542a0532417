"""How an n-D volume becomes a neural field: coordinate axes in, channels out.

Spatial axes (Z, Y, X), stack/unknown axes (I, Q) and, by default, time (T) become
**coordinates** of the field; channel axes (C, S) become its **outputs** by default (INIF's
choice), or coordinates with ``channels="coord"``. Values are mapped linearly from the
original's [min, max] to [-1, 1].

``to_field`` gives an array ``(*coord_shape, n_out)`` (coordinates first, in the volume's
axis order; outputs last), ``from_field`` undoes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from voxfield.errors import OptionError

CHANNEL_LETTERS = "CS"


@dataclass(frozen=True)
class FieldLayout:
    """Coordinate/output split of a volume's axes and its value normalisation."""

    axes: str
    shape: tuple[int, ...]
    coord_axes: tuple[int, ...]
    out_axes: tuple[int, ...]
    lo: float
    hi: float

    # ------------------------------------------------------------------ construction
    @classmethod
    def plan(cls, axes: str, data: np.ndarray, *, channels: Literal["output", "coord"] = "output",
             time: Literal["coord", "output"] = "coord") -> FieldLayout:
        """Choose the split for ``data`` with axis letters ``axes``."""
        if channels not in ("output", "coord"):
            raise OptionError(f"channels must be 'output' or 'coord', got {channels!r}")
        if time not in ("coord", "output"):
            raise OptionError(f"time must be 'coord' or 'output', got {time!r}")
        out_letters = (CHANNEL_LETTERS if channels == "output" else "") + ("T" if time == "output" else "")
        coord_axes = tuple(i for i, a in enumerate(axes) if a not in out_letters)
        out_axes = tuple(i for i, a in enumerate(axes) if a in out_letters)
        if not coord_axes:
            raise OptionError(f"axes {axes!r} leave no coordinate axis for the field")
        if len(coord_axes) > 4:
            raise OptionError(f"at most 4 coordinate axes are supported, {axes!r} gives {len(coord_axes)}")
        lo, hi = float(np.min(data)), float(np.max(data))
        return cls(axes, tuple(int(n) for n in data.shape), coord_axes, out_axes, lo, hi)

    # ------------------------------------------------------------------ properties
    @property
    def coord_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.coord_axes)

    @property
    def coord_letters(self) -> str:
        return "".join(self.axes[i] for i in self.coord_axes)

    @property
    def n_out(self) -> int:
        return int(np.prod([self.shape[i] for i in self.out_axes], dtype=np.int64)) if self.out_axes else 1

    @property
    def constant(self) -> bool:
        return self.hi == self.lo

    # ------------------------------------------------------------------ values
    def normalize(self, values: np.ndarray) -> np.ndarray:
        """Original values -> [-1, 1] (float32)."""
        if self.constant:
            return np.zeros(values.shape, np.float32)
        scale = 2.0 / (self.hi - self.lo)
        return ((values.astype(np.float64) - self.lo) * scale - 1.0).astype(np.float32)

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        """[-1, 1] -> original value range (float64)."""
        if self.constant:
            return np.full(values.shape, self.lo, np.float64)
        return (values.astype(np.float64) + 1.0) * (0.5 * (self.hi - self.lo)) + self.lo

    # ------------------------------------------------------------------ arrays
    def to_field(self, data: np.ndarray) -> np.ndarray:
        """``data`` (volume axes) -> ``(*coord_shape, n_out)`` normalised float32."""
        moved = np.transpose(data, self.coord_axes + self.out_axes)
        return self.normalize(moved.reshape(self.coord_shape + (self.n_out,)))

    def from_field(self, field: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
        """``(*coord_shape, n_out)`` field values -> array in the volume's axis order and
        ``dtype`` (rounded and clipped for integers)."""
        from voxfield.codecs.base import restore_dtype

        out_shape = tuple(self.shape[i] for i in self.out_axes)
        vals = self.denormalize(field).reshape(field.shape[:-1] + out_shape)
        order = self.coord_axes + self.out_axes
        inverse = np.argsort(order)
        return restore_dtype(np.transpose(vals, inverse), np.dtype(dtype))

    # ------------------------------------------------------------------ header
    def to_dict(self) -> dict[str, Any]:
        return {"axes": self.axes, "shape": list(self.shape), "coord_axes": list(self.coord_axes),
                "out_axes": list(self.out_axes), "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldLayout:
        return cls(str(d["axes"]), tuple(int(n) for n in d["shape"]), tuple(int(i) for i in d["coord_axes"]),
                   tuple(int(i) for i in d["out_axes"]), float(d["lo"]), float(d["hi"]))


def decode_whole(reader: Any, loader: Callable[[Any], tuple[Any, FieldLayout]]) -> Any:
    """Decode a whole neural ``.vxf`` (a :class:`~voxfield.compress.container.VxfReader`)
    with its method's ``loader`` (``reader -> (field or None, layout)``; None = constant
    volume) into a :class:`~voxfield.io.volume.Volume` with the original dtype and header."""
    from voxfield.io.volume import Volume

    fld, layout = loader(reader)
    desc = reader.header["volume"]
    if fld is None:
        data = np.full(layout.shape, layout.lo)
    else:
        data = layout.from_field(fld.evaluate_region([slice(0, n) for n in layout.coord_shape]), desc["dtype"])
    return Volume.from_description(desc, data)

