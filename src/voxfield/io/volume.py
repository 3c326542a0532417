"""The :class:`Volume` type: an n-dimensional array plus what puts it back where it came from."""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError

#: Axis letters voxfield understands. Z, Y, X are spatial; T is time; C (channel) and
#: S (samples of one pixel, e.g. RGB) are channel-like; I (image index of a stack) and
#: Q (unknown, as tifffile names it) are generic leading axes.
AXIS_LETTERS = "TCZYXSIQ"
SPATIAL_LETTERS = "ZYX"
CHANNEL_LETTERS = "CS"

#: Canonical unit spellings; readers map what files say onto these.
UNITS = ("Å", "nm", "µm", "mm", "m", "px")

_UNIT_ALIASES = {
    "a": "Å",
    "å": "Å",
    "Å": "Å",  # U+212B ANGSTROM SIGN
    "angstrom": "Å",
    "angstroms": "Å",
    "ang": "Å",
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "um": "µm",
    "µm": "µm",  # U+00B5 micro sign
    "μm": "µm",  # U+03BC greek mu
    "\\u00b5m": "µm",
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "mm": "mm",
    "millimeter": "mm",
    "millimetre": "mm",
    "m": "m",
    "meter": "m",
    "metre": "m",
    "px": "px",
    "pixel": "px",
    "pixels": "px",
    "": "px",
}

#: Size of one unit in metres, for conversions between units.
_UNIT_METRES = {"Å": 1e-10, "nm": 1e-9, "µm": 1e-6, "mm": 1e-3, "m": 1.0}


def normalize_unit(unit: str | None) -> str:
    """Map a unit as written in a file header (``"A"``, ``"\\u00B5m"``, ``"micron"``...) to
    one of :data:`UNITS`. Unknown spellings are returned stripped, unchanged."""
    if unit is None:
        return "px"
    key = str(unit).strip()
    return _UNIT_ALIASES.get(key, _UNIT_ALIASES.get(key.lower(), key))


def unit_factor(src: str, dst: str) -> float:
    """Factor that converts a length in unit ``src`` to unit ``dst`` (1.0 when either is px
    or unknown)."""
    a, b = _UNIT_METRES.get(normalize_unit(src)), _UNIT_METRES.get(normalize_unit(dst))
    if a is None or b is None:
        return 1.0
    return a / b


@dataclass
class Volume:
    """An n-dimensional image with its physical frame and its file format's header.

    Attributes
    ----------
    data:
        The array, in the order given by ``axes`` (e.g. ``"ZYX"``: last axis is X, the
        fastest-varying one in the file).
    axes:
        One letter per array axis, from :data:`AXIS_LETTERS` (``"ZYX"``, ``"CZYX"``,
        ``"TCZYX"``, ``"IYX"`` for a particle stack, ``"YXS"`` for RGB...).
    spacing:
        Voxel size along each *spatial* axis (the letters of ``axes`` that are in ZYX), in
        the order they appear in ``axes``, in ``unit``. ``1.0`` where unknown.
    unit:
        Unit of ``spacing`` and ``origin``: one of :data:`UNITS` (``"px"`` when unknown).
    origin:
        Physical position of the first voxel along each spatial axis, same order and unit
        as ``spacing``.
    meta:
        The format's own header, namespaced by format, plus provenance: ``meta["format"]``
        (reader that produced it), ``meta["source"]`` (path read), ``meta["mrc"]`` (MRC
        header fields), ``meta["tiff"]`` (ImageJ/OME metadata)... Writers of a format use
        their own namespace and ignore the others. Values must be JSON-serialisable except
        ``bytes`` (e.g. an MRC extended header), which containers store as binary sections.

    Construction checks the frame: ``spacing`` and ``origin`` must be empty (defaults) or
    hold one finite real number per spatial axis (spacing > 0), ``unit`` must be short text without
    control characters and ``meta`` a dict; anything else (``None`` entries, strings,
    NaN/Inf, a wrong length...) raises :class:`~voxfield.errors.DataError`, never a
    ``TypeError``: these values may come from an untrusted file header.
    """

    data: np.ndarray
    axes: str
    spacing: tuple[float, ...] = ()
    unit: str = "px"
    origin: tuple[float, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        self.axes = str(self.axes).upper()
        if len(self.axes) != self.data.ndim:
            raise DataError(
                f"axes {self.axes!r} has {len(self.axes)} letters but the array has "
                f"{self.data.ndim} dimensions {tuple(self.data.shape)}"
            )
        bad = sorted(set(self.axes) - set(AXIS_LETTERS))
        if bad:
            raise DataError(f"unknown axis letter(s) {''.join(bad)} in {self.axes!r}; use {AXIS_LETTERS}")
        if len(set(self.axes)) != len(self.axes):
            raise DataError(f"repeated axis letter in {self.axes!r}")
        n = len(self.spatial_axes)
        self.spacing = _frame_values("spacing", self.spacing, n, 1.0, self.spatial_axes)
        if any(s <= 0 for s in self.spacing):
            raise DataError(f"spacing {self.spacing} is not positive (voxel sizes must be > 0)")
        self.origin = _frame_values("origin", self.origin, n, 0.0, self.spatial_axes)
        if self.unit is not None and (not isinstance(self.unit, str) or len(self.unit) > 64
                                      or any(not c.isprintable() for c in self.unit)):
            raise DataError(f"unit {self.unit!r:.80} is not a unit name")
        self.unit = normalize_unit(self.unit)
        if self.meta is None:
            self.meta = {}
        if not isinstance(self.meta, dict):
            raise DataError(f"volume metadata must be a map, got {type(self.meta).__name__}")

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def spatial_axes(self) -> str:
        """The spatial axis letters (Z, Y, X) present, in array order."""
        return "".join(a for a in self.axes if a in SPATIAL_LETTERS)

    @property
    def format(self) -> str | None:
        """Name of the reader that produced this volume (``"mrc"``, ``"tiff"``...), if any."""
        return self.meta.get("format")

    def spacing_of(self, axis: str) -> float:
        """Voxel size along spatial axis ``axis`` (``"Z"``, ``"Y"`` or ``"X"``)."""
        return self.spacing[self.spatial_axes.index(axis.upper())]

    def origin_of(self, axis: str) -> float:
        """Origin along spatial axis ``axis``."""
        return self.origin[self.spatial_axes.index(axis.upper())]

    def spacing_in(self, unit: str) -> tuple[float, ...]:
        """Spacing converted to ``unit`` (unchanged when either unit is px)."""
        f = unit_factor(self.unit, unit)
        return tuple(s * f for s in self.spacing)

    # ------------------------------------------------------------------ copies
    def with_data(self, data: np.ndarray, *, axes: str | None = None) -> Volume:
        """A copy carrying ``data`` (same shape unless ``axes`` changes) and the same frame
        and header. Used to wrap a decoded or denoised array for writing."""
        data = np.asarray(data)
        if axes is None and data.shape != self.data.shape:
            raise DataError(f"new data has shape {data.shape}, expected {self.data.shape}")
        return Volume(
            data=data,
            axes=self.axes if axes is None else axes,
            spacing=self.spacing,
            unit=self.unit,
            origin=self.origin,
            meta=copy.deepcopy(self.meta),
        )

    # ------------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        """Everything but the voxels, as a dict (``meta`` is deep-copied and may hold bytes).

        :meth:`from_description` rebuilds the volume from it and an array."""
        return {
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "axes": self.axes,
            "spacing": list(self.spacing),
            "unit": self.unit,
            "origin": list(self.origin),
            "meta": copy.deepcopy(self.meta),
        }

    @classmethod
    def from_description(cls, desc: dict[str, Any], data: np.ndarray) -> Volume:
        """Inverse of :meth:`describe`: checks that ``data`` has the described shape and
        casts it to the described dtype.

        ``desc`` may come from an untrusted header: a missing or malformed ``shape``,
        ``dtype``, ``axes``, ``spacing``, ``origin`` or ``unit`` raises
        :class:`~voxfield.errors.DataError` naming the field (never ``KeyError`` or
        ``TypeError``); a ``meta`` that is not a dict is dropped with a warning."""
        if not isinstance(desc, dict):
            raise DataError(f"volume description must be a map, got {type(desc).__name__}")
        raw_shape = desc.get("shape")
        if not isinstance(raw_shape, (list, tuple)) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s >= 0
                for s in raw_shape):
            raise DataError(f"volume description: shape {raw_shape!r:.80} is not a list of sizes")
        shape = tuple(int(s) for s in raw_shape)
        data = np.asarray(data)
        if data.shape != shape:
            raise DataError(f"decoded array has shape {data.shape}, header says {shape}")
        try:
            dtype = np.dtype(desc.get("dtype"))
        except (TypeError, ValueError, SyntaxError) as exc:
            raise DataError(f"volume description: dtype {desc.get('dtype')!r:.80} is not a data type "
                            f"({' '.join(str(exc).split())[:80]})") from None
        if desc.get("dtype") is None or dtype.kind not in "biufc":
            raise DataError(f"volume description: dtype {desc.get('dtype')!r:.80} is not a numeric data type")
        if data.dtype != dtype:
            data = data.astype(dtype)
        axes = desc.get("axes")
        if not isinstance(axes, str):
            raise DataError(f"volume description: axes {axes!r:.80} is not a string of axis letters")
        meta = desc.get("meta") or {}
        if not isinstance(meta, dict):
            import warnings

            warnings.warn(f"ignoring volume metadata that is not a map ({type(meta).__name__})", UserWarning,
                          stacklevel=2)
            meta = {}
        return cls(
            data=data,
            axes=axes,
            spacing=_description_list("spacing", desc.get("spacing")),
            unit=desc.get("unit", "px"),
            origin=_description_list("origin", desc.get("origin")),
            meta=copy.deepcopy(meta),
        )

    def __repr__(self) -> str:
        sp = ", ".join(f"{a}={s:g}" for a, s in zip(self.spatial_axes, self.spacing))
        return (
            f"Volume(shape={self.shape}, dtype={self.dtype}, axes={self.axes!r}, "
            f"spacing=({sp}) {self.unit}, format={self.format!r})"
        )


def _description_list(name: str, value: Any) -> tuple[Any, ...]:
    """A described spacing/origin as a tuple (empty when absent); not a list: DataError."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"volume description: {name} {value!r:.80} is not a list of numbers")
    return tuple(value)


def _frame_values(name: str, values: Any, n: int, default: float, spatial: str) -> tuple[float, ...]:
    """``values`` (spacing or origin) as ``n`` finite floats; ``()``/None give ``default``.

    Refuses, with :class:`DataError`, a string or non-sequence, entries that are not real
    numbers (``None``, text, booleans...), NaN or Inf, and a count other than ``n``."""
    if values is None:
        return (default,) * n
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise DataError(f"{name} {values!r:.80} is not a list of numbers (one per spatial axis {spatial!r})")
    values = tuple(values)
    if not values:
        return (default,) * n
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise DataError(f"{name} {values!r:.80} holds {v!r:.40}, not a number")
        f = float(v)
        if not math.isfinite(f):
            raise DataError(f"{name} {values!r:.80} is not finite")
        out.append(f)
    if len(out) != n:
        raise DataError(f"{name} {tuple(out)} needs one value per spatial axis ({spatial!r}: {n})")
    return tuple(out)


def with_voxel_size(vol: Volume, apix: float) -> Volume:
    """``vol`` with every spatial voxel size set to ``apix`` Å (an origin given in voxels,
    unit "px", is converted with it; an origin in Å or nm is kept, in Å)."""
    if not apix > 0:
        raise OptionError(f"the voxel size (--apix) must be > 0 Å, got {apix:g}")
    scale = {"px": apix, "nm": 10.0}.get(vol.unit, 1.0)
    origin = tuple(o * scale for o in vol.origin)
    return Volume(vol.data, vol.axes, (float(apix),) * len(vol.spacing), "Å", origin, vol.meta)


def angstrom_frame(vol: Volume, apix: float | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(z, y, x) voxel size and origin in Å of a 3-D map (``apix`` overrides the header).
    Not a 3-D ZYX map, or no voxel size known: :class:`DataError`."""
    if vol.data.ndim != 3 or set(vol.axes) != set("ZYX"):
        raise DataError(f"the cryo-EM report needs a 3-D ZYX map, got axes {vol.axes} and shape {vol.shape}")
    scale = {"nm": 10.0, "Å": 1.0, "A": 1.0, "angstrom": 1.0}.get(vol.unit, 1.0)
    sp = tuple(vol.spacing_of(a) * scale for a in "ZYX")
    org = tuple(vol.origin_of(a) * scale for a in "ZYX")
    if apix is not None:
        if not apix > 0:
            raise OptionError(f"--apix must be > 0 Å, got {apix:g}")
        org = tuple(o / s * apix if s > 0 else 0.0 for o, s in zip(org, sp, strict=True))
        sp = (float(apix),) * 3
    elif min(sp) <= 0:
        raise DataError("the map's header gives a voxel size of 0; set it with --apix")
    return sp, org
