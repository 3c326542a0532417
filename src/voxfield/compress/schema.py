"""One validation layer for ``.vxf`` headers, run once when a file is opened.

A ``.vxf`` header is JSON written by voxfield, but a reader cannot trust it: a damaged
file, or one forged with valid checksums, may carry values of the wrong type, out of range,
non-finite, or sizes that would make the decoder allocate terabytes or loop for ever.
:func:`validate_header` checks, before anything is allocated:

- the container's own keys (``volume``, ``method``, ``sections``);
- the volume description: shape (1–5 positive dimensions, at most
  :data:`~voxfield.io.validate.MAX_VOXELS` voxels), a supported dtype, axis letters (one per
  dimension, no repeats), finite spacing and origin of the right length, unit and name;
- every number of the method's configuration: finite, and integers within ±2**53;
- the method's own structure (layer widths, levels, block flags, member tables...),
  each bounded by what the declared volume can use.

Decoders then bound every array they size from the header by :func:`alloc_limit` of the
declared volume (:func:`check_count`), so that no header can request more than a small
multiple of the volume it describes. Errors are :class:`~voxfield.errors.FormatError`
naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxfield.compress.learned import DOMAINS as LEARNED_DOMAINS
from voxfield.errors import FormatError
from voxfield.io.validate import MAX_VOXELS, SUPPORTED_DTYPES

#: Axis letters a volume may carry.
AXIS_LETTERS = "TCZYXSIQ"
SPATIAL = "ZYX"
#: Most dimensions of a volume (XYZCT).
MAX_NDIM = 5
#: Arrays sized from a header may hold at most ``ALLOC_FACTOR * voxels + ALLOC_SLACK`` items.
ALLOC_FACTOR = 8
ALLOC_SLACK = 1 << 22
#: Largest integer accepted anywhere in a method's configuration.
MAX_INT = 2**53
#: Longest stored text (names, units).
MAX_TEXT = 4096
#: Most resolution levels of a grid file.
GRID_MAX_LEVELS = 9

PathLike = str | os.PathLike[str] | None


@dataclass(frozen=True)
class VolumeSpec:
    """The validated description of the volume a file decodes to."""

    shape: tuple[int, ...]
    dtype: np.dtype
    axes: str

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.voxels * self.dtype.itemsize


def _fail(message: str, path: PathLike) -> FormatError:
    return FormatError(f"corrupt .vxf header ({message})", path)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def check_int(v: Any, what: str, path: PathLike, lo: int = 0, hi: int = MAX_INT) -> int:
    """``v`` as an int in ``[lo, hi]``, else :class:`FormatError`."""
    if not _is_int(v) or not lo <= int(v) <= hi:
        raise _fail(f"{what} must be an integer in {lo}..{hi}, got {_show(v)}", path)
    return int(v)


def check_float(v: Any, what: str, path: PathLike, *, positive: bool = False) -> float:
    """``v`` as a finite float (``> 0`` with ``positive``), else :class:`FormatError`."""
    if not _is_num(v) or not math.isfinite(float(v)) or (positive and float(v) <= 0):
        raise _fail(f"{what} must be a finite{' positive' if positive else ''} number, got {_show(v)}", path)
    return float(v)


def check_list(v: Any, what: str, path: PathLike, *, min_len: int = 0, max_len: int = 1 << 20) -> list[Any]:
    """``v`` as a list of ``min_len..max_len`` items, else :class:`FormatError`."""
    if not isinstance(v, list) or not min_len <= len(v) <= max_len:
        raise _fail(f"{what} must be a list of {min_len}..{max_len} items, got {_show(v)}", path)
    return v


def check_dict(v: Any, what: str, path: PathLike) -> dict[str, Any]:
    """``v`` as a dict, else :class:`FormatError`."""
    if not isinstance(v, dict):
        raise _fail(f"{what} must be an object, got {_show(v)}", path)
    return v


def check_text(v: Any, what: str, path: PathLike, *, optional: bool = False) -> str | None:
    """``v`` as a short string (or None with ``optional``), else :class:`FormatError`."""
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > MAX_TEXT or "\x00" in v:
        raise _fail(f"{what} must be a short text, got {_show(v)}", path)
    return v


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------- volume
def check_volume(desc: Any, path: PathLike, where: str = "volume") -> VolumeSpec:
    """Validate a volume description (``header["volume"]``, or a set member's)."""
    d = check_dict(desc, where, path)
    shape_in = check_list(d.get("shape"), f"{where}.shape", path, min_len=1, max_len=MAX_NDIM)
    shape = tuple(check_int(n, f"{where}.shape", path, 1, MAX_VOXELS) for n in shape_in)
    if math.prod(shape) > MAX_VOXELS:
        raise _fail(f"{where}.shape {shape} declares {math.prod(shape):.3g} voxels", path)
    try:
        dtype = np.dtype(d.get("dtype")) if isinstance(d.get("dtype"), str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype not in SUPPORTED_DTYPES:
        raise _fail(f"{where}.dtype {_show(d.get('dtype'))} is not a supported data type", path)
    axes = d.get("axes")
    if (not isinstance(axes, str) or len(axes) != len(shape) or len(set(axes)) != len(axes)
            or any(a not in AXIS_LETTERS for a in axes)):
        raise _fail(f"{where}.axes {_show(axes)} do not match shape {shape} (letters from {AXIS_LETTERS})", path)
    n_spatial = sum(a in SPATIAL for a in axes)
    for key in ("spacing", "origin"):
        v = d.get(key)
        if v is None:
            continue
        items = check_list(v, f"{where}.{key}", path, max_len=MAX_NDIM)
        if len(items) not in (0, n_spatial):
            raise _fail(f"{where}.{key} has {len(items)} values for {n_spatial} spatial axes", path)
        for x in items:
            check_float(x, f"{where}.{key}", path, positive=key == "spacing")
    unit = check_text(d.get("unit", "px"), f"{where}.unit", path)
    if unit is not None and (len(unit) > 64 or not unit.isprintable()):  # as Volume requires
        raise _fail(f"{where}.unit {_show(unit)} is not a unit name", path)
    check_text(d.get("name"), f"{where}.name", path, optional=True)
    if d.get("meta") is not None:
        check_dict(d["meta"], f"{where}.meta", path)
    return VolumeSpec(shape, dtype, axes)


def alloc_limit(spec: VolumeSpec) -> int:
    """Most items any array sized from the header of ``spec``'s file may hold."""
    return ALLOC_FACTOR * spec.voxels + ALLOC_SLACK


def check_count(n: int, limit: int, what: str, path: PathLike) -> int:
    """Refuse a header-derived size ``n`` above ``limit`` (see :func:`alloc_limit`)."""
    if n < 0 or n > limit:
        raise FormatError(f"corrupt .vxf header ({what} of {n:,} items exceeds what the declared volume allows, "
                          f"{limit:,})", path)
    return n


# ---------------------------------------------------------------------------- numbers
#: Keys whose values only describe the encode (reports); they are never used to decode.
_INFORMATIONAL = frozenset({"final_loss", "notes", "target", "report", "psnr", "time", "seconds", "lrs"})


def check_numbers(tree: Any, what: str, path: PathLike, depth: int = 0) -> None:
    """Every number below ``tree`` is finite and every integer within ±2**53."""
    if depth > 32:
        raise _fail(f"{what} is nested too deeply", path)
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k not in _INFORMATIONAL:
                check_numbers(v, f"{what}.{k}", path, depth + 1)
    elif isinstance(tree, list):
        for v in tree:
            check_numbers(v, what, path, depth + 1)
    elif _is_int(tree):
        if abs(int(tree)) > MAX_INT:
            raise _fail(f"{what} = {_show(tree)} is out of range", path)
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise _fail(f"{what} = {tree} is not finite", path)


def check_layout(d: Any, spec: VolumeSpec, path: PathLike, what: str = "method.layout") -> None:
    """A neural file's coordinate/output split agrees with its volume."""
    lay = check_dict(d, what, path)
    if lay.get("axes") != spec.axes:
        raise _fail(f"{what}.axes {_show(lay.get('axes'))} differ from the volume's {spec.axes!r}", path)
    shape = check_list(lay.get("shape"), f"{what}.shape", path, max_len=MAX_NDIM)
    if tuple(shape) != spec.shape or not all(_is_int(n) for n in shape):
        raise _fail(f"{what}.shape {_show(shape)} differs from the volume's {list(spec.shape)}", path)
    coord = check_list(lay.get("coord_axes"), f"{what}.coord_axes", path, min_len=1, max_len=4)
    out = check_list(lay.get("out_axes"), f"{what}.out_axes", path, max_len=MAX_NDIM)
    if not all(_is_int(i) for i in coord + out) or sorted(coord + out) != list(range(len(spec.shape))):
        raise _fail(f"{what} coordinate and output axes {coord} + {out} do not split {len(spec.shape)} axes", path)
    lo = check_float(lay.get("lo"), f"{what}.lo", path)
    hi = check_float(lay.get("hi"), f"{what}.hi", path)
    if hi < lo:
        raise _fail(f"{what} value range [{lo}, {hi}] is reversed", path)


# ---------------------------------------------------------------------------- methods
MethodCheck = Callable[[dict[str, Any], VolumeSpec, PathLike], None]


def _widths(v: Any, what: str, path: PathLike, *, max_width: int = 1 << 16, max_layers: int = 64) -> list[int]:
    return [check_int(w, what, path, 1, max_width)
            for w in check_list(v, what, path, min_len=1, max_len=max_layers)]


def _check_neural(m: dict[str, Any], spec: VolumeSpec, path: PathLike) -> None:
    check_layout(m.get("layout"), spec, path)
    if m.get("constant"):
        return
    check_dict(m.get("config"), "method.config", path)
    limit = alloc_limit(spec)
    n_in = len(m["layout"]["coord_axes"])
    groups = check_list(m.get("groups"), "method.groups", path, min_len=1, max_len=1 << 16)
    for g in groups:
        widths = _widths(check_dict(g, "method.groups[]", path).get("widths"), "method.groups[].widths", path)
        dims = [n_in, *widths, 1]
        check_count(sum(a * b + b for a, b in zip(dims[:-1], dims[1:])), limit, "a block network", path)
    check_int(m.get("overlap", 0), "method.overlap", path, 0, 1 << 16)
    if m.get("bandwidth") is not None:
        for b in check_list(m["bandwidth"], "method.bandwidth", path, max_len=4):
            check_float(b, "method.bandwidth", path, positive=True)
    deb = check_list(m.get("deblock", [0, 0, 0]), "method.deblock", path, max_len=8)
    for x in deb:
        check_float(x, "method.deblock", path)
    check_float(m.get("bits", 8), "method.bits", path, positive=True)


def _check_grid(m: dict[str, Any], spec: VolumeSpec, path: PathLike) -> None:
    check_layout(m.get("layout"), spec, path)
    if m.get("constant"):
        return
    cfg = check_dict(m.get("config"), "method.config", path)
    check_int(m.get("levels"), "method.levels", path, 1, GRID_MAX_LEVELS)
    check_int(cfg.get("latent_channels", 1), "method.config.latent_channels", path, 1, 256)
    check_int(cfg.get("hidden", 16), "method.config.hidden", path, 1, 4096)
    check_int(cfg.get("hidden_layers", 2), "method.config.hidden_layers", path, 0, 64)
    check_int(cfg.get("contexts", 1), "method.config.contexts", path, 1, 256)
    check_float(m.get("step"), "method.step", path, positive=True)
    check_int(m.get("frac_bits"), "method.frac_bits", path, 1, 52)
    check_float(m.get("clip"), "method.clip", path, positive=True)


def _check_cryo_pe_net(m: dict[str, Any], path: PathLike) -> None:
    cfg = check_dict(m.get("config"), "method.config", path)
    check_int(cfg.get("frequencies"), "method.config.frequencies", path, 0, 64)
    check_int(cfg.get("latent_dim"), "method.config.latent_dim", path, 0, 1 << 12)
    widths = _widths(m.get("widths"), "method.widths", path, max_width=8192)
    res = check_list(m.get("residual"), "method.residual", path, min_len=len(widths), max_len=len(widths))
    for i, r in enumerate(res):
        check_int(r, "method.residual", path, 0, len(widths) - 1 - i)
    check_int(m.get("frac_bits"), "method.frac_bits", path, 1, 52)
    check_float(m.get("clip"), "method.clip", path, positive=True)


def _check_cryo_pe(m: dict[str, Any], spec: VolumeSpec, path: PathLike) -> None:
    check_layout(m.get("layout"), spec, path)
    if m.get("constant"):
        return
    _check_cryo_pe_net(m, path)
    check_int(m.get("occupied"), "method.occupied", path, 0, spec.voxels)
    check_text(m.get("occupancy_coder"), "method.occupancy_coder", path)
    for key in ("fill", "peak"):
        check_float(m.get(key), f"method.{key}", path)
    y = check_list(m.get("y_range"), "method.y_range", path, min_len=2, max_len=2)
    for v in y:
        check_float(v, "method.y_range", path)


def _check_set(m: dict[str, Any], path: PathLike) -> list[VolumeSpec]:
    _check_cryo_pe_net(m, path)
    members = check_list(m.get("members"), "method.members", path, min_len=1, max_len=1 << 16)
    specs = []
    for i, entry in enumerate(members):
        e = check_dict(entry, f"method.members[{i}]", path)
        mspec = check_volume(e.get("volume"), path, f"method.members[{i}].volume")
        check_layout(e.get("layout"), mspec, path, f"method.members[{i}].layout")
        check_text(e.get("name"), f"method.members[{i}].name", path, optional=True)
        check_text(e.get("section"), f"method.members[{i}].section", path)
        check_text(e.get("occupancy_coder"), f"method.members[{i}].occupancy_coder", path)
        check_int(e.get("occupied"), f"method.members[{i}].occupied", path, 0, mspec.voxels)
        for v in check_list(e.get("y_range"), f"method.members[{i}].y_range", path, min_len=2, max_len=2):
            check_float(v, f"method.members[{i}].y_range", path)
        specs.append(mspec)
    return specs


def _check_classic(m: dict[str, Any], spec: VolumeSpec, path: PathLike) -> None:
    codec = check_dict(m.get("codec"), "method.codec", path)
    check_text(codec.get("name"), "method.codec.name", path)


def _check_hybrid(m: dict[str, Any], spec: VolumeSpec, path: PathLike) -> None:
    prior = check_dict(m.get("prior"), "method.prior", path)
    check_text(prior.get("name"), "method.prior.name", path)
    check_text(m.get("residual", "filter"), "method.residual", path)
    if m.get("filter") is not None:
        f = check_dict(m["filter"], "method.filter", path)
        check_int(f.get("dims"), "method.filter.dims", path, 2, 3)
        check_int(f.get("channels"), "method.filter.channels", path, 1, 64)
        k = check_int(f.get("kernel"), "method.filter.kernel", path, 1, 15)
        if k % 2 == 0:
            raise _fail(f"method.filter.kernel must be odd, got {k}", path)
    if m.get("flags") is not None:
        fl = check_dict(m["flags"], "method.flags", path)
        fshape = [check_int(n, "method.flags.shape", path, 1, MAX_VOXELS)
                  for n in check_list(fl.get("shape"), "method.flags.shape", path, min_len=1, max_len=MAX_NDIM + 1)]
        check_count(math.prod(fshape), spec.voxels, "the block flags", path)
        check_int(fl.get("block"), "method.flags.block", path, 1, MAX_VOXELS)
    if m.get("learned") is not None:  # the learned prior stage
        lp = check_dict(m["learned"], "method.learned", path)
        dom = check_text(lp.get("domain"), "method.learned.domain", path)
        if dom not in LEARNED_DOMAINS:
            raise _fail(f"method.learned.domain {_show(dom)} is not one of {', '.join(LEARNED_DOMAINS)}", path)
        check_text(lp.get("weights"), "method.learned.weights", path)
        check_text(lp.get("family"), "method.learned.family", path)
        check_int(lp.get("width"), "method.learned.width", path, 1, 256)
        lf = check_dict(lp.get("flags"), "method.learned.flags", path)
        lshape = [check_int(n, "method.learned.flags.shape", path, 1, MAX_VOXELS)
                  for n in check_list(lf.get("shape"), "method.learned.flags.shape", path, min_len=1,
                                      max_len=MAX_NDIM + 1)]
        check_count(math.prod(lshape), spec.voxels, "the learned-prior block flags", path)
        check_int(lf.get("block"), "method.learned.flags.block", path, 1, MAX_VOXELS)
    if m.get("field") is not None:  # INIF residual: a neural file's header inside this one
        fd = check_dict(m["field"], "method.field", path)
        fspec = check_volume(fd.get("volume"), path, "method.field.volume")
        if fspec.shape != spec.shape:
            raise _fail(f"method.field.volume shape {fspec.shape} differs from the volume's {spec.shape}", path)
        fm = check_dict(fd.get("method"), "method.field.method", path)
        if fm.get("name") not in ("sci", "siren"):
            raise _fail(f"method.field.method.name {_show(fm.get('name'))} is not a neural method", path)
        _check_neural(fm, fspec, path)


#: method name -> its structural check (methods without one get the generic checks only).
METHOD_CHECKS: dict[str, MethodCheck] = {
    "sci": _check_neural,
    "siren": _check_neural,
    "grid": _check_grid,
    "cryo-pe": _check_cryo_pe,
    "classic": _check_classic,
    "hybrid": _check_hybrid,
}


def _check_ebound(e: Any, path: PathLike) -> None:
    d = check_dict(e, "ebound", path)
    check_float(d.get("max_abs_error"), "ebound.max_abs_error", path, positive=True)
    check_float(d.get("step"), "ebound.step", path, positive=True)
    if not isinstance(d.get("integer", False), bool):
        raise _fail(f"ebound.integer must be true or false, got {_show(d.get('integer'))}", path)


def validate_header(header: Any, path: PathLike) -> VolumeSpec:
    """Check a whole ``.vxf`` header (see the module docstring); returns the volume's
    :class:`VolumeSpec` (for a set, that of its largest member)."""
    head = check_dict(header, "header", path)
    method = check_dict(head.get("method"), "method", path)
    name = check_text(method.get("name"), "method.name", path)
    check_numbers(method, "method", path)
    if "ebound" in head:
        check_numbers(head["ebound"], "ebound", path)
        _check_ebound(head["ebound"], path)
    if name == "cryo-pe-set":
        if head.get("volume") is not None:
            check_dict(head["volume"], "volume", path)
        specs = _check_set(method, path)
        return max(specs, key=lambda s: s.voxels)
    spec = check_volume(head.get("volume"), path)
    check = METHOD_CHECKS.get(str(name))
    if check is None:  # a method added through the registry checks its own header
        from voxfield.compress.registry import header_check

        check = header_check(str(name))
    if check is not None:
        check(method, spec, path)
    return spec
