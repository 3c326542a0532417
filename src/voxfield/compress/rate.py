"""The rate controller: how every method lands its ``.vxf`` file on a byte goal.

A ratio or size :class:`~voxfield.codecs.base.Target` is turned once into a
:class:`SizeGoal` (bytes, tolerance in bytes, the error to raise when it cannot be met).
Every method then follows the same two steps:

1. **Plan** the payload from an estimate of the container's overhead (its header written
   with placeholder values, :func:`voxfield.compress.container.overhead`): ``goal.room(over)``.
2. **Land** the real file with :func:`land_file`: write the container with its real header
   and tables, and while the file misses the goal, give the payload coder the room that the
   *measured* header leaves and write again. The payload coder searches its own knob
   (weight bit depth, latent step, the prior codec's size) with :func:`land_knob`.

So the size that is checked is always that of the bytes actually written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from voxfield.compress.defaults import MIN_WEIGHT_BITS
from voxfield.errors import OptionError, TargetNotMet

if TYPE_CHECKING:
    from voxfield.codecs.base import Target

S = TypeVar("S")
T = TypeVar("T")

#: Lowest bit depth of quantised network weights (at least 255 levels per tensor).
MIN_BITS = MIN_WEIGHT_BITS


@dataclass(frozen=True)
class SizeGoal:
    """A byte goal for one file: ``goal`` bytes within ``tol`` bytes.

    ``tol`` keeps the *ratio* within the target's ``rtol`` (a file 3 % under its goal has a
    ratio 3.09 % over it). ``raw_bytes`` is the size of the original data and ``method`` the
    name used in error messages."""

    goal: float
    tol: float
    raw_bytes: int
    rtol: float
    method: str

    @classmethod
    def of(cls, target: Target, raw_bytes: int, method: str) -> SizeGoal:
        """The goal of a ratio or size ``target`` for ``raw_bytes`` of data;
        :class:`OptionError` for any other kind of target."""
        from voxfield.codecs._common import size_rtol

        if target.kind not in ("ratio", "bytes"):
            raise OptionError(f"the {method} method aims for a ratio or a size, not {target.kind} "
                              "(an error bound goes with --max-error)")
        goal = float(target.size_goal(raw_bytes))  # type: ignore[arg-type]
        return cls(goal, size_rtol(target) * goal, int(raw_bytes), float(target.rtol), method)

    def hit(self, n_bytes: int) -> bool:
        """Whether a file of ``n_bytes`` is within tolerance of the goal."""
        return abs(n_bytes - self.goal) <= self.tol

    @property
    def ratio(self) -> float:
        """The ratio the goal stands for."""
        return self.raw_bytes / self.goal

    def room(self, overhead: float) -> float:
        """Bytes left for the payload when the container takes ``overhead``."""
        return self.goal - overhead

    def out_of_reach(self, overhead: float, smallest: float = 64.0, what: str = "the container") -> TargetNotMet:
        """The error for a goal below ``overhead`` + the ``smallest`` useful payload."""
        return TargetNotMet(
            f"ratio {self.ratio:.4g} is out of reach for {self.method}: the file may hold {self.goal:.0f} bytes, "
            f"but {what} takes about {overhead:.0f} and the smallest payload about {smallest:.0f}; the highest "
            f"reachable ratio here is about {self.raw_bytes / (overhead + smallest):.4g}")

    def missed(self, blob: bytes | None, n_bytes: int | None = None) -> TargetNotMet:
        """The error for a file that could not be landed (``blob``, if any, is kept as the
        best effort)."""
        n = len(blob) if blob is not None else n_bytes
        last = f" (last file {n} bytes)" if n else ""
        return TargetNotMet(f"{self.method}: could not land within ±{100 * self.rtol:.0f}% of {self.goal:.0f} "
                            f"bytes{last}", best=blob, achieved=self.raw_bytes / n if n else None)


def land_file(make: Callable[[S], tuple[bytes, int]], reland: Callable[[float], S | None], state: S,
              goal: SizeGoal, *, tries: int = 4) -> tuple[bytes, S]:
    """Write the file and land it on ``goal`` using its real size.

    ``make(state)`` writes the whole file from a payload ``state`` and returns
    ``(file bytes, payload bytes)``; when the file misses the goal, ``reland(room)`` makes a
    new state whose payload should fill ``room`` bytes (the goal less the measured header
    and side sections), or returns None when it cannot do better. At most ``tries`` files
    are written. Returns the last file and the state it was written from (the caller checks
    ``goal.hit``)."""
    blob = b""
    for attempt in range(tries):
        blob, payload_bytes = make(state)
        if goal.hit(len(blob)) or attempt == tries - 1:
            break
        new = reland(goal.goal - (len(blob) - payload_bytes))
        if new is None:
            break
        state = new
    return blob, state


def land_knob(encode_at: Callable[[float], tuple[bytes, T]], room: float, tol: float, lo: float, hi: float,
              *, max_iter: int = 30) -> tuple[float, bytes | None, T | None]:
    """The value of a knob in ``[lo, hi]`` (size growing with the knob) whose payload fills
    ``room`` bytes within ``tol``, by bisection; ``encode_at(knob)`` returns
    ``(payload, side)``.

    Returns ``(knob, payload, side)``; ``payload`` is None when even ``lo`` overshoots by more
    than half the tolerance (the caller plans a smaller model). When even ``hi`` leaves room,
    ``hi`` is returned (the caller may plan bigger)."""
    p_lo, c_lo = encode_at(lo)
    if len(p_lo) > room + 0.5 * tol:
        return lo, None, None
    best = (abs(len(p_lo) - room), lo, p_lo, c_lo)
    p_hi, c_hi = encode_at(hi)
    if len(p_hi) <= room:
        return hi, p_hi, c_hi
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        p, c = encode_at(mid)
        miss = abs(len(p) - room)
        if miss < best[0] and len(p) <= room + 0.5 * tol:
            best = (miss, mid, p, c)
        if miss <= 0.25 * tol:
            break
        if len(p) > room:
            hi = mid
        else:
            lo = mid
    return best[1], best[2], best[3]


def land_bits(encode_at: Callable[[float], tuple[bytes, T]], weight_bytes: float, tol: float,
              max_bits: float = 16.0) -> tuple[float, bytes | None, T | None]:
    """Bit depth in ``[MIN_BITS, max_bits]`` whose coded weights fill ``weight_bytes``
    within ``tol`` bytes (:func:`land_knob` on the bit depth)."""
    return land_knob(encode_at, weight_bytes, tol, MIN_BITS, max_bits)


def land_weights(make: Callable[[float, bytes, T], bytes], encode_at: Callable[[float], tuple[bytes, T]],
                 bits: float, payload: bytes, codes: T, goal: SizeGoal, *, tries: int = 4
                 ) -> tuple[bytes, float, bytes, T]:
    """:func:`land_file` for methods whose payload is coded network weights:
    ``make(bits, payload, codes)`` writes the file, ``encode_at(bits)`` codes the weights;
    the bit depth is searched again (:func:`land_bits`) for the room the real file leaves.
    Returns the last file and its ``(bits, payload, codes)``."""
    def reland(room: float) -> tuple[float, bytes, T] | None:
        b, p, c = land_bits(encode_at, room, goal.tol)
        return None if p is None or c is None else (b, p, c)

    blob, (bits, payload, codes) = land_file(lambda s: (make(*s), len(s[1])), reland, (bits, payload, codes),
                                             goal, tries=tries)
    return blob, bits, payload, codes
