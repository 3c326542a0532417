"""Bisection on a codec's knob to land on a payload size.

Codecs without a rate mode (SZ3's error bound, ZFP's tolerance, HEVC's CRF, JPEG XL's
distance...) reach a compression ratio by searching their knob: :func:`search_size`
brackets the goal and bisects (in log space for scale-like knobs) until the payload is
within the relative tolerance, keeping the closest payload seen in case it never is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from voxfield.errors import TargetNotMet


def search_size(
    encode_at: Callable[[float], bytes],
    *,
    lo: float,
    hi: float,
    goal: float,
    rtol: float,
    smaller_when: Literal["higher", "lower"],
    log: bool = True,
    integer: bool = False,
    max_iter: int = 40,
    nbytes: int | None = None,
    codec: str = "codec",
) -> tuple[bytes, float]:
    """Find a knob value whose payload size is within ``rtol`` of ``goal`` bytes.

    Parameters
    ----------
    encode_at:
        Encodes the data at a knob value and returns the payload.
    lo, hi:
        Knob range to search (``lo < hi``; both > 0 when ``log``).
    goal, rtol:
        Target payload size in bytes and accepted relative deviation.
    smaller_when:
        ``"higher"`` if a higher knob gives a smaller payload (error bounds, CRF),
        ``"lower"`` if it gives a larger one (bits per voxel, quality).
    log, integer:
        Bisect in log space; restrict the knob to integers.
    nbytes:
        Size of the original data, used only to state ratios in error messages.

    Returns
    -------
    (payload, knob)
        The first payload found within tolerance and the knob value that made it.

    Raises
    ------
    TargetNotMet
        When no knob value in the range lands within tolerance; ``best`` holds the closest
        payload, ``achieved`` its size in bytes.
    """
    if not lo < hi:
        raise ValueError("search needs lo < hi")
    if log and lo <= 0:
        raise ValueError("log search needs lo > 0")
    cache: dict[float, bytes] = {}
    best: tuple[float, bytes, float] | None = None  # (relative miss, payload, knob)

    def size_at(k: float) -> int:
        nonlocal best
        if integer:
            k = float(round(k))
        if k not in cache:
            cache[k] = encode_at(k)
        payload = cache[k]
        miss = abs(len(payload) - goal) / goal
        if best is None or miss < best[0]:
            best = (miss, payload, k)
        return len(payload)

    def ok() -> bool:
        return best is not None and best[0] <= rtol

    # Orient so that "a" is the knob end giving the larger payload.
    a, b = (lo, hi) if smaller_when == "higher" else (hi, lo)
    size_a, size_b = size_at(a), size_at(b)
    if not ok() and size_a >= goal >= size_b:
        for _ in range(max_iter):
            if integer and abs(a - b) <= 1:
                break
            mid = math.sqrt(a * b) if log else 0.5 * (a + b)
            if integer:
                mid = float(round(mid))
                if mid in (a, b):
                    break
            s = size_at(mid)
            if ok():
                break
            if s > goal:
                a = mid
            else:
                b = mid
    assert best is not None
    if best[0] <= rtol:
        return best[1], best[2]
    msg = f"{codec} cannot reach the size target"
    if nbytes:
        msg = (
            f"{codec} cannot reach ratio {nbytes / goal:.4g} within ±{100 * rtol:.0f}% "
            f"(closest: {nbytes / max(len(best[1]), 1):.4g}; its range here is "
            f"{nbytes / max(max(size_a, size_b), 1):.4g}..{nbytes / max(min(size_a, size_b), 1):.4g})"
        )
    raise TargetNotMet(msg, best=best[1], achieved=float(len(best[1])))
