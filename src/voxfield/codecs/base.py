"""The :class:`Codec` interface, compression targets and payload framing.

A codec turns an array into bytes and back, like ``numcodecs.abc.Codec``. It works on
plain numpy arrays, not on :class:`~voxfield.io.Volume`: the physical frame and the file
header are the container's business (``voxfield.compress.container``), which keeps codecs
usable as chunk codecs in a zarr store. Every payload is self-contained (it carries shape,
dtype and the parameters the decoder needs), and decoding returns the original shape and
dtype.

Compression ratios are *original bytes / payload bytes* (``data.nbytes / len(payload)``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from voxfield.errors import DataError, FormatError, OptionError

TargetKind = Literal["lossless", "ratio", "bytes", "max_abs_error", "rel_error", "psnr", "bits"]


@dataclass(frozen=True)
class Target:
    """What a lossy codec should aim for.

    kind:
        ``"ratio"`` (original bytes / payload bytes), ``"bytes"`` (payload size),
        ``"max_abs_error"`` (absolute error bound, in data units), ``"rel_error"`` (error
        bound relative to the data's value range), ``"psnr"`` (dB, data range),
        ``"bits"`` (bits per value, for quantisers) or ``"lossless"``.
    value:
        The number for that kind (unused for ``"lossless"``).
    rtol:
        Relative tolerance on size for ``"ratio"`` and ``"bytes"`` targets (±3 % default).
    """

    kind: TargetKind
    value: float | None = None
    rtol: float = 0.03

    def __post_init__(self) -> None:
        if self.kind != "lossless":
            if self.value is None or not np.isfinite(self.value):
                raise OptionError(f"target {self.kind} needs a finite value")
            if self.kind == "ratio" and self.value <= 1:
                raise OptionError(f"compression ratio must be > 1, got {self.value:g}")
            if self.kind in ("bytes", "max_abs_error", "rel_error", "bits") and self.value <= 0:
                raise OptionError(f"target {self.kind} must be > 0, got {self.value:g}")
        if not 0 < self.rtol < 1:
            raise OptionError(f"tolerance must be in (0, 1), got {self.rtol:g}")

    @classmethod
    def ratio(cls, value: float, rtol: float = 0.03) -> Target:
        return cls("ratio", float(value), rtol)

    @classmethod
    def nbytes(cls, value: float, rtol: float = 0.03) -> Target:
        return cls("bytes", float(value), rtol)

    @classmethod
    def max_abs_error(cls, value: float) -> Target:
        return cls("max_abs_error", float(value))

    @classmethod
    def rel_error(cls, value: float) -> Target:
        return cls("rel_error", float(value))

    @classmethod
    def psnr(cls, value: float) -> Target:
        return cls("psnr", float(value))

    @classmethod
    def lossless(cls) -> Target:
        return cls("lossless")

    def size_goal(self, nbytes: int) -> float | None:
        """Target payload size in bytes for an input of ``nbytes``, or None if the target
        is not a size."""
        if self.kind == "ratio":
            return nbytes / float(self.value)  # type: ignore[arg-type]
        if self.kind == "bytes":
            return float(self.value)  # type: ignore[arg-type]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "rtol": self.rtol}


class Codec(ABC):
    """A compressor of n-dimensional numeric arrays.

    Subclasses set :attr:`name`, :attr:`lossless`, :attr:`targets` (the target kinds they
    accept) and implement :meth:`encode` / :meth:`decode`. ``__init__`` takes keyword
    configuration only, and :meth:`get_config` returns it so that
    ``type(c).from_config(c.get_config())`` rebuilds an equal codec.
    """

    name: ClassVar[str] = ""
    lossless: ClassVar[bool] = False
    targets: ClassVar[frozenset[str]] = frozenset({"lossless"})
    description: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        self.config = dict(config)

    @abstractmethod
    def encode(self, data: np.ndarray, target: Target | None = None) -> bytes:
        """Compress ``data`` to meet ``target`` (the codec's default when None)."""

    @abstractmethod
    def decode(self, payload: bytes) -> np.ndarray:
        """Decompress a payload made by :meth:`encode` to an array of the original shape
        and dtype."""

    @classmethod
    def available(cls) -> bool:
        """Whether the backend library/binary is present on this machine."""
        return True

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Codec:
        cfg = dict(config)
        cfg.pop("name", None)
        return cls(**cfg)

    def check_target(self, target: Target | None) -> Target:
        """Return the effective target, refusing kinds this codec cannot honour."""
        if target is None:
            return Target.lossless() if self.lossless else self.default_target()
        if target.kind not in self.targets:
            raise OptionError(
                f"codec {self.name} cannot aim for {target.kind} "
                f"(it accepts: {', '.join(sorted(self.targets))})"
            )
        return target

    def default_target(self) -> Target:
        """Target used when none is given (lossy codecs: ratio 16)."""
        return Target.ratio(16.0)

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({cfg})"


# ---------------------------------------------------------------------------- framing
_FRAME_VERSION = 1


def frame(data_shape: tuple[int, ...], dtype: np.dtype, params: dict[str, Any], body: bytes) -> bytes:
    """Prefix ``body`` with a compact description: frame version (1 byte), JSON length
    (uvarint) and JSON ``{"s": shape, "d": dtype, **params}``."""
    head = {"s": [int(s) for s in data_shape], "d": np.dtype(dtype).str, **params}
    js = json.dumps(head, separators=(",", ":"), sort_keys=True).encode()
    return bytes([_FRAME_VERSION]) + _uvarint(len(js)) + js + body


def unframe(payload: bytes | memoryview) -> tuple[tuple[int, ...], np.dtype, dict[str, Any], memoryview]:
    """Inverse of :func:`frame`: returns (shape, dtype, params, body)."""
    mv = memoryview(payload)
    if len(mv) < 3 or mv[0] != _FRAME_VERSION:
        raise FormatError("corrupt codec payload (bad frame header)")
    n, pos = _read_uvarint(mv, 1)
    if pos + n > len(mv):
        raise FormatError("truncated codec payload")
    try:
        head = json.loads(bytes(mv[pos : pos + n]))
        shape = tuple(int(s) for s in head.pop("s"))
        dtype = np.dtype(head.pop("d"))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise FormatError(f"corrupt codec payload ({type(exc).__name__}: {exc})") from None
    return shape, dtype, head, mv[pos + n :]


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_uvarint(mv: memoryview, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(mv) or shift > 63:
            raise FormatError("corrupt codec payload (bad length)")
        b = mv[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


# ---------------------------------------------------------------------------- dtype helpers
def as_float(data: np.ndarray) -> np.ndarray:
    """``data`` as float32 (float64 kept for float64 input), for float-only backends."""
    if data.dtype == np.float64:
        return np.ascontiguousarray(data)
    return np.ascontiguousarray(data, dtype=np.float32)


def restore_dtype(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast decoded values back to ``dtype``: round and clip to the integer range for
    integer types, plain cast for floats."""
    dtype = np.dtype(dtype)
    if data.dtype == dtype:
        return data
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype)


def value_range(data: np.ndarray) -> float:
    """max - min of ``data`` as a float (0.0 for constant data)."""
    if data.size == 0:
        raise DataError("empty array")
    return float(np.max(data)) - float(np.min(data))

