"""One chunk of a large array in, one ``.vxf`` file out: what the zarr codecs run.

A chunk is coded as a complete ``.vxf`` file, so every chunk describes itself (method,
codec configuration, target, learned-prior weights by version) and ``voxfield info`` can
read a chunk dumped from a store. Singleton axes (a chunk of one time point or one
channel) are dropped before coding and restored on decoding.

Per-chunk targets (:class:`ChunkTarget`) come from a global one:

``ratio``
    every chunk at the same ratio (the total file is then at that ratio);
``max_abs_error``
    every voxel of every chunk within the bound, so the bound holds across chunks;
``rmse``
    a global PSNR turned into an RMSE on the data range of the whole array: each chunk aims
    for that RMSE (its own PSNR on its own range), so the mean squared error of the whole
    array, a mean of the chunks', is at most the RMSE squared;
``lossless``
    bit-exact.

A chunk the codec cannot take to its ratio (a constant background chunk is smaller than
the goal at any setting) keeps the closest file the rate search made; a chunk whose values
are all equal, or a sliver too small for the codec's header at that ratio, is coded
losslessly (zstd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxfield.errors import OptionError, TargetNotMet

#: Kinds of per-chunk targets.
TARGET_KINDS = ("ratio", "ratio_rd", "max_abs_error", "rmse", "lossless")
#: ``ratio_rd``: a chunk's bits stay within this factor of the array's mean.
RD_MAX_FACTOR = 2.0


@dataclass(frozen=True)
class ChunkTarget:
    """What each chunk aims for: ``kind`` (one of :data:`TARGET_KINDS`) and ``value``."""

    kind: str
    value: float | None = None
    slope: float | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise OptionError(f"chunk target {self.kind!r}: expected one of {', '.join(TARGET_KINDS)}")
        if self.kind != "lossless":
            if self.value is None or not math.isfinite(self.value) or self.value <= 0:
                raise OptionError(f"chunk target {self.kind} needs a finite value > 0, got {self.value!r}")
            if self.kind in ("ratio", "ratio_rd") and self.value <= 1:
                raise OptionError(f"compression ratio must be > 1, got {self.value:g}")
        if self.kind == "ratio_rd":
            for name, v in (("slope", self.slope), ("alpha", self.alpha)):
                if v is None or not math.isfinite(v) or v <= 0:
                    raise OptionError(f"chunk target ratio_rd needs a finite {name} > 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "value": self.value}
        if self.kind == "ratio_rd":
            d.update(slope=self.slope, alpha=self.alpha)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ChunkTarget:
        if not isinstance(d, dict) or "kind" not in d:
            raise OptionError(f"chunk target {d!r}: expected {{'kind': ..., 'value': ...}}")

        def num(key: str) -> float | None:
            v = d.get(key)
            try:
                return None if v is None else float(v)
            except (TypeError, ValueError):
                raise OptionError(f"chunk target {key} {v!r} is not a number") from None

        return cls(str(d["kind"]), num("value"), num("slope"), num("alpha"))

    def text(self) -> str:
        """The target in words, for reports."""
        if self.kind == "ratio":
            return f"ratio {self.value:g} per chunk"
        if self.kind == "ratio_rd":
            return f"ratio {self.value:g} on average, bits allocated across chunks by rate-distortion slope"
        if self.kind == "max_abs_error":
            return f"max error {self.value:g} per voxel"
        if self.kind == "rmse":
            return f"RMSE {self.value:g} per chunk"
        return "lossless"


def squeeze_axes(shape: tuple[int, ...], axes: str | None) -> tuple[tuple[int, ...], str | None]:
    """The chunk's shape and axes without its singleton axes (at least two axes kept)."""
    keep = [i for i, n in enumerate(shape) if n > 1]
    if len(keep) < 2:
        keep = list(range(max(0, len(shape) - 2), len(shape)))
    sq = tuple(shape[i] for i in keep)
    return sq, (None if axes is None else "".join(axes[i] for i in keep))


def _volume(arr: np.ndarray, axes: str | None) -> Any:
    from voxfield.io.numpy_io import axes_for_ndim
    from voxfield.io.volume import Volume

    shape, letters = squeeze_axes(arr.shape, axes if axes is not None and len(axes) == arr.ndim else None)
    data = np.ascontiguousarray(arr.reshape(shape))
    return Volume(data, letters or axes_for_ndim(data.ndim, None), meta={"chunk": {"shape": list(arr.shape)}})


def trailing_fill(arr: np.ndarray, fill: Any) -> tuple[slice, ...]:
    """The region of ``arr`` left after cutting, along every axis, the trailing slabs whose
    values all equal ``fill``: the padding zarr adds to an edge chunk (and any real border
    of fill values, which decodes exactly since it is restored as ``fill``)."""
    is_fill = np.isnan(arr) if isinstance(fill, float) and np.isnan(fill) else arr == fill
    keep = []
    for ax in range(arr.ndim):
        other = tuple(i for i in range(arr.ndim) if i != ax)
        full = is_fill.all(axis=other) if other else is_fill
        n = arr.shape[ax]
        while n > 0 and full[n - 1]:
            n -= 1
        keep.append(slice(0, n))
    return tuple(keep)


def _method_kwargs(method: str) -> dict[str, Any]:
    from voxfield.codecs.registry import CODECS

    if method in CODECS:
        return {"codec": method}
    return {"method": method}


def psnr_capable(method: str) -> bool:
    """True when ``method`` (a codec name or ``classic:NAME``) can aim for a PSNR."""
    from voxfield.codecs.registry import get_codec

    name = method.split(":", 1)[1] if method.startswith("classic:") else method
    try:
        return "psnr" in get_codec(name).targets
    except OptionError:
        return False


def encode_chunk(arr: np.ndarray, method: str, target: ChunkTarget, settings: dict[str, Any] | None = None,
                 axes: str | None = None, fill: Any = None) -> bytes:
    """Code one chunk (any shape and dtype) as the bytes of a ``.vxf`` file.

    ``method``: a classic codec name (``"sperr"``), ``"classic:NAME"``, or any method of
    :func:`voxfield.compress` (``"auto"``, ``"hybrid:hevc"``); ``settings`` are passed
    to it (e.g. ``{"steps": 300, "seed": 0}`` for a reproducible residual fit).

    ``fill``: the array's fill value; trailing slabs of it (the padding of a chunk at the
    array's edge) are cut before coding and restored by :func:`decode_chunk`, so an edge
    chunk is coded, and its target met, on its real voxels only."""
    from voxfield.compress.api import compress

    arr = np.asarray(arr)
    if fill is not None and arr.size:
        region = trailing_fill(arr, fill)
        if all(r.stop > 0 for r in region):
            arr = arr[region]
    vol = _volume(arr, axes)
    data = vol.data
    kw: dict[str, Any] = {**_method_kwargs(method), **(settings or {}), "check": False}
    if data.size == 0:
        raise OptionError("an empty chunk cannot be coded")
    if target.kind == "lossless" or float(data.max()) == float(data.min()):
        return compress(vol, codec="zstd", check=False).payload
    if target.kind == "ratio":
        return _at_ratio(vol, float(target.value), kw)  # type: ignore[arg-type]
    if target.kind == "ratio_rd":
        return _rd_allocated(vol, target, kw)
    if target.kind == "max_abs_error":
        return compress(vol, max_error=target.value, **kw).payload
    # rmse: this chunk's PSNR on its own range
    assert target.value is not None
    span = float(data.max()) - float(data.min())
    db = 20.0 * math.log10(span / target.value)
    if db > 140.0:
        return compress(vol, codec="zstd", check=False).payload
    return compress(vol, psnr=max(db, 1.0), **kw).payload


#: A chunk's file is given at least this many bytes: a sliver at the array's edge (a few
#: planes of a chunk) coded at the array's ratio would spend nearly all of its bytes on
#: the ``.vxf`` header and decode as a visible seam.
MIN_CHUNK_FILE = 2048


def _at_ratio(vol: Any, ratio: float, kw: dict[str, Any]) -> bytes:
    from voxfield.compress.api import compress

    ratio = min(ratio, vol.data.nbytes / MIN_CHUNK_FILE)
    if ratio < 2.0:
        return compress(vol, codec="zstd", check=False).payload
    try:
        return compress(vol, ratio=ratio, **kw).payload
    except TargetNotMet as exc:
        if exc.best is not None:
            return exc.best
        # a sliver of an edge chunk too small to hold the codec's header at that ratio
        return compress(vol, codec="zstd", check=False).payload


def chunk_mse(vol: Any, blob: bytes) -> float:
    """Mean squared error of the decoded ``blob`` against ``vol``'s data."""
    from voxfield.compress.api import decompress

    dec = decompress(blob).data.astype(np.float64).reshape(vol.data.shape)
    return float(np.mean((dec - vol.data.astype(np.float64)) ** 2))


def rd_bits(d0: float, b0: float, alpha: float, slope: float, b_mean: float) -> float:
    """Bits per voxel minimising ``D + slope * b`` for a chunk whose distortion at ``b0``
    bits per voxel is ``d0`` and falls as ``b**-alpha`` (a power law fits wavelet and
    transform codecs at these rates), kept within :data:`RD_MAX_FACTOR` of ``b_mean``."""
    if d0 <= 0:
        return b_mean / RD_MAX_FACTOR
    b = (alpha * d0 * b0**alpha / slope) ** (1.0 / (alpha + 1.0))
    return float(min(max(b, b_mean / RD_MAX_FACTOR), b_mean * RD_MAX_FACTOR))


def _rd_allocated(vol: Any, target: ChunkTarget, kw: dict[str, Any],
                  first: tuple[bytes, float] | None = None) -> bytes:
    """``ratio_rd``: code at the array's mean ratio, measure the distortion, and recode at
    the rate where this chunk's distortion falls as fast per bit as the array's slope
    (``target.slope``, calibrated on sampled chunks so that the mean stays on ratio).
    Equal slopes minimise the total squared error for the total bytes. ``first``: the
    chunk's file at the mean ratio and its squared error, when already made."""
    assert target.value is not None and target.slope is not None and target.alpha is not None
    n = vol.data.size
    bits_raw = 8.0 * vol.data.dtype.itemsize
    b_mean = bits_raw / target.value
    if first is None:
        blob = _at_ratio(vol, target.value, kw)
        first = (blob, chunk_mse(vol, blob))
    blob0, d0 = first
    b0 = 8.0 * len(blob0) / n
    b = rd_bits(d0, b0, target.alpha, target.slope, b_mean)
    if abs(b / b0 - 1.0) < 0.04:
        return blob0
    return _at_ratio(vol, max(bits_raw / b, 1.0001), kw)


def decode_chunk(blob: bytes, shape: tuple[int, ...], dtype: np.dtype, fill: Any = 0) -> np.ndarray:
    """Decode the ``.vxf`` bytes of one chunk to an array of ``shape`` and ``dtype`` (a
    chunk coded without its trailing fill slabs is padded back with ``fill``)."""
    from voxfield.compress.api import decompress
    from voxfield.errors import FormatError

    vol = decompress(bytes(blob))
    data = vol.data
    stored = vol.meta.get("chunk", {}).get("shape") if isinstance(vol.meta.get("chunk"), dict) else None
    cshape = tuple(int(n) for n in stored) if isinstance(stored, list) and len(stored) == len(shape) else tuple(shape)
    if data.size != math.prod(cshape) or any(c > n for c, n in zip(cshape, shape)):
        raise FormatError(f"a voxfield chunk holds {data.size} values {cshape} where the array's chunk has "
                          f"{math.prod(shape)} (shape {shape})")
    if data.dtype != dtype:
        data = data.astype(dtype)
    data = data.reshape(cshape)
    if cshape == tuple(shape):
        return data
    out = np.full(shape, fill, dtype=dtype)
    out[tuple(slice(0, n) for n in cshape)] = data
    return out
