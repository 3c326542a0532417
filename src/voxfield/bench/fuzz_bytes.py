"""Building blocks of the fuzzer's mutators (:mod:`voxfield.bench.fuzz_mutate`): the
mutation context, absurd values, blind byte mutators and JSON forging.

Every mutator is a function ``(rng, data, ctx) -> (new bytes or None, description)``
(``None`` deletes the file) and is deterministic given ``rng``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

MAGIC = b"\x89VXF\r\n\x1a\n"
FIXED = struct.Struct("<8sHHIIB")


@dataclass
class MutContext:
    """What a mutation may refer to besides its own bytes."""

    escape_abs: str  # an absolute output path inside the watched folder (detects escapes)
    donor: Callable[[Random], bytes]  # bytes of some other seed file (cross-file splices)


@dataclass
class Mutation:
    """One applied mutation."""

    mutator: str
    file: str
    desc: str
    forged: bool  # content may legitimately decode to other data (header/section forged)
    strict_path: bool = False  # forged only a descriptive field (name, writer version): data must not change


Mutator = Callable[[Random, bytes, MutContext], tuple[bytes | None, str]]


# ------------------------------------------------------------------------ interesting values
def absurd_values(ctx: MutContext) -> list[Any]:
    """Values that break assumptions (ranges, types, sizes, paths)."""
    return [0, -1, 1, 2, 3, 255, 65536, 2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**63 - 1, 2**63, -2**63, 2**64,
            10**30, 0.5, -0.0, 1e-308, 1e308, math.inf, -math.inf, math.nan, None, "", "x", "A" * 100_000,
            [], {}, True, False, [0], [-1], [2**40] * 3, [2**31, 2**31, 2**31], [1] * 10, list(range(20_000)),
            [[[[]]]], {"a": 1}, "../x.mrc", "../../x.mrc", "/abs/dir/x.mrc", ctx.escape_abs, "NaN", "<f4", "|O",
            "float128", "ZYXZ", "?", "\u0000", "é" * 10]


def wrong_type(rng: Random, value: Any) -> Any:
    """A value of another JSON type that a careless reader might still accept."""
    if isinstance(value, bool):
        return rng.choice([str(value), int(value), [value]])
    if isinstance(value, int):
        return rng.choice([str(value), float(value) + 0.5, [value], {"v": value}, -value, value * 2**32])
    if isinstance(value, float):
        return rng.choice([str(value), int(value) if math.isfinite(value) else 0, [value], -value, value * 1e300])
    if isinstance(value, str):
        return rng.choice([123, [value], {value: value}, value * 1000, value[::-1], value + "/../x"])
    if isinstance(value, list):
        return rng.choice([{"0": value[:1]}, str(value), value[:-1], value + value, value[::-1], len(value),
                           [str(v) for v in value]])
    if isinstance(value, dict):
        return rng.choice([list(value.values()), str(value), {}, {k: None for k in value}])
    return rng.choice([0, "", [], {}])


def nearby(rng: Random, value: Any) -> Any:
    """A plausible value close to ``value`` (passes range checks, breaks consistency)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, value * 2, value // 2, value + 8, 0 if value else 1])
    if isinstance(value, float):
        return rng.choice([value * 2, value / 2, -value, value + 1.0, value * (1 + 1e-7)])
    if isinstance(value, str):
        return rng.choice([value.upper(), value.lower(), value[:-1], value + value[-1:], value[::-1]])
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return rng.choice([value[:-1], value + value[-1:], value[::-1], value[:i] + [nearby(rng, value[i])] + value[i + 1:]])
    return rng.choice([None, 0, ""])


_BYTE_RUNS: list[bytes] = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00" * 4, b"\xff" * 4, b"\xff" * 8,
                           b"\x00" * 16] + [struct.pack(f, v) for f, v in (
    ("<i", 0), ("<i", -1), ("<i", 2**31 - 1), ("<i", -2**31), ("<i", 65536), ("<I", 2**32 - 1), (">i", 2**31 - 1),
    ("<q", 2**63 - 1), ("<q", -1), ("<Q", 2**40), ("<f", math.nan), ("<f", math.inf), ("<f", -math.inf),
    ("<f", 3.4e38), ("<d", math.nan), ("<d", math.inf), ("<d", 1e308), ("<H", 65535), ("<h", -32768))]


def _pos(rng: Random, n: int) -> int:
    """A position, biased to the start of the file where headers live."""
    if n <= 0:
        return 0
    r = rng.random()
    if r < 0.45:
        return rng.randrange(min(n, 1024))
    if r < 0.6:
        return rng.randrange(max(1, n - 64), n) if n > 64 else rng.randrange(n)
    return rng.randrange(n)


# ------------------------------------------------------------------------ blind mutators
def truncate(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    n = rng.choice([0, 1, 8, 21, _pos(rng, len(data)), len(data) - 1, len(data) // 2, _pos(rng, len(data))])
    n = max(0, min(len(data), n))
    return data[:n], f"truncate to {n} of {len(data)} bytes"


def bitflip(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    if not data:
        return b"\x01", "1 byte added to an empty file"
    b = bytearray(data)
    k = rng.choice([1, 1, 1, 2, 3, 4, 8, 16])
    at = []
    near = _pos(rng, len(b))
    for _ in range(k):
        p = near + rng.randrange(-16, 17) if rng.random() < 0.5 else _pos(rng, len(b))
        p = max(0, min(len(b) - 1, p))
        bit = rng.randrange(8)
        b[p] ^= 1 << bit
        at.append(f"{p}.{bit}")
    return bytes(b), f"flip {k} bit(s) at {','.join(at[:6])}{'…' if k > 6 else ''}"


def overwrite(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    run = rng.choice(_BYTE_RUNS)
    if rng.random() < 0.2:
        run = run * rng.randint(2, 64)
    p = _pos(rng, len(data))
    b = bytearray(data)
    b[p:p + len(run)] = run
    return bytes(b[: max(len(data), p + len(run))]), f"overwrite {len(run)} byte(s) at {p} with {run[:8].hex()}"


def insert(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    p = _pos(rng, len(data))
    run = rng.choice(_BYTE_RUNS) * rng.choice([1, 1, 3, 100, 4096])
    return data[:p] + run + data[p:], f"insert {len(run)} byte(s) at {p}"


def delete(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    p = _pos(rng, len(data))
    k = rng.choice([1, 2, 4, 8, 64, 1000])
    return data[:p] + data[p + k:], f"delete {k} byte(s) at {p}"


def duplicate(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    p = _pos(rng, len(data))
    k = rng.choice([1, 4, 16, 256, 4096])
    q = _pos(rng, len(data))
    return data[:q] + data[p:p + k] + data[q:], f"duplicate {k} byte(s) from {p} at {q}"


def crossover(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    other = ctx.donor(rng)
    a, b = _pos(rng, len(data)), _pos(rng, len(other))
    k = rng.choice([16, 256, 4096, len(other)])
    return data[:a] + other[b:b + k] + data[a + rng.choice([0, k]):], f"splice {k} donor bytes from {b} at {a}"


def remove(rng: Random, data: bytes, ctx: MutContext) -> tuple[None, str]:
    return None, "file removed"


BLIND: dict[str, Mutator] = {"truncate": truncate, "bitflip": bitflip, "overwrite": overwrite,
                             "splice-insert": insert, "splice-delete": delete, "splice-dup": duplicate,
                             "splice-cross": crossover}


# ------------------------------------------------------------------------ JSON forging
_HOT = re.compile(r"shape|width|level|count|size|bits|name|dim|channel|block|step|layer|hidden|latent|frac|^n_|"
                  r"^n$|group|dtype|axes|member|flag|kernel|clip|^lo$|^hi$|threshold|frequenc|origin|spacing|"
                  r"chunk|scale|translation|path|dataset|fill|order|compressor|codec|zarr_format|version|prior|"
                  r"field|layout|coord|out_axes|tables|occup|quant|ebound|step|offset|length|crc", re.I)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:64]):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def forge_json_value(rng: Random, doc: Any, ctx: MutContext, skip: tuple[str, ...] = ()) -> tuple[Any, str, str]:
    """Replace, delete or retype one node of a parsed JSON document; returns the new
    document, a description and the dotted path touched."""
    paths = [p for p in _paths(doc) if not (p and p[0] in skip)]
    if not paths:
        return rng.choice(absurd_values(ctx)), "whole document replaced", ""
    weights = [10.0 if any(isinstance(k, str) and _HOT.search(k) for k in p[-2:]) else 1.0 for p in paths]
    path = rng.choices(paths, weights)[0]
    parent = _get(doc, path[:-1])
    key = path[-1]
    old = parent[key]
    r = rng.random()
    if r < 0.1 and isinstance(parent, dict):
        del parent[key]
        how = "deleted"
    elif r < 0.3:
        parent[key] = wrong_type(rng, old)
        how = f"retyped to {_short(parent[key])}"
    elif r < 0.5:
        parent[key] = nearby(rng, old)
        how = f"nudged to {_short(parent[key])}"
    else:
        parent[key] = rng.choice(absurd_values(ctx))
        how = f"= {_short(parent[key])}"
    dotted = ".".join(str(k) for k in path)
    return doc, f"{dotted} {how}", dotted


def _short(v: Any) -> str:
    text = json.dumps(v, allow_nan=True, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 48 else f"{text[:40]}…({len(text)} chars)"


def json_text(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
