""""Science-lossless" compression of cryo-EM maps: the highest ratio whose decoded map
keeps the Fourier shell correlation with the original at or above a threshold (0.9 by
default) in every shell out to the map's resolution.

The search is a geometric bisection over the target ratio: ratios double from ``start``
(or from the lowest ratio the codec reaches, when that is higher) until one fails (or
``max_ratio`` is reached), then the interval between the last ratio
that kept the FSC and the first that lost it is halved (in log ratio) until its ends are
within ``precision`` of each other. Each probe compresses and decodes the whole map with
the chosen codec or neural method, so the cost is about ``log2(max/start) + log2(1/precision)``
compressions. The result is the passing file with the highest *measured* ratio (bytes of
the ``.vxf`` file written).

FSC is a correlation per resolution shell, so it ignores a global scale or offset that PSNR
would punish; the criterion follows paper 000 and ANCHORS.md ("science-lossless": no loss
of information the map's resolution supports).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from voxfield.codecs.base import Target
from voxfield.errors import DataError, OptionError, TargetNotMet
from voxfield.metrics.fourier_shell import fsc


@dataclass
class Probe:
    """One compression tried during the search."""

    target: float
    ratio: float | None  # measured on the bytes written (None: the target was not reached)
    min_fsc: float | None  # lowest FSC over the shells out to the resolution
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "ratio": self.ratio, "min_fsc": self.min_fsc, "passed": self.passed,
                "note": self.note}


@dataclass
class ScienceResult:
    """Outcome of :func:`science_lossless`: the best passing file and every probe."""

    blob: bytes | None
    ratio: float | None
    min_fsc: float | None
    threshold: float
    resolution: float
    probes: list[Probe] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"ratio": self.ratio, "min_fsc": self.min_fsc, "threshold": self.threshold,
                "resolution_A": self.resolution, "probes": [p.to_dict() for p in self.probes]}


def min_fsc_to_resolution(original: np.ndarray, result: np.ndarray, spacing: float | Sequence[float],
                          resolution: float) -> float:
    """Lowest FSC between ``original`` and ``result`` over every shell from the first
    non-zero frequency out to ``1 / resolution`` (Å), the shell at the resolution
    interpolated. Raises :class:`OptionError` if the resolution is finer than Nyquist."""
    fr = fsc(original, result, spacing)
    at = fr.fsc_at_resolution(resolution)
    kmax = 1.0 / resolution
    inner = fr.fsc[1:][fr.frequency[1:] <= kmax * (1 + 1e-9)]
    vals = np.append(inner, at)
    vals = vals[np.isfinite(vals)]
    return float(vals.min()) if vals.size else float("nan")


def science_lossless(
    original: np.ndarray,
    encode: Callable[[Target], bytes],
    decode: Callable[[bytes], np.ndarray],
    spacing: float | Sequence[float],
    resolution: float,
    *,
    threshold: float = 0.9,
    start: float = 4.0,
    max_ratio: float = 8192.0,
    precision: float = 0.05,
    tolerance: float = 0.03,
    on_probe: Callable[[Probe], None] | None = None,
) -> ScienceResult:
    """Highest ratio whose decoded map keeps FSC >= ``threshold`` out to ``resolution`` Å.

    ``encode(target)`` returns ``.vxf`` bytes for a ratio target (raising
    :class:`TargetNotMet` when the codec cannot reach it) and ``decode(bytes)`` the decoded
    array (same shape as ``original``). ``precision`` is the relative width of the final
    bracket; ``tolerance`` the ratio tolerance handed to the codec."""
    if not 0 < threshold < 1:
        raise OptionError(f"the FSC target must be in (0, 1), got {threshold:g}")
    if not resolution > 0:
        raise OptionError(f"--resolution must be > 0 Å, got {resolution:g}")
    if not 1 < start < max_ratio:
        raise OptionError(f"need 1 < start ({start:g}) < max ratio ({max_ratio:g})")
    if original.ndim != 3:
        raise DataError(f"the FSC search needs a 3-D map, got shape {original.shape}")
    min_fsc_to_resolution(original, original, spacing, resolution)  # resolution beyond Nyquist fails now
    res = ScienceResult(None, None, None, threshold, resolution)
    best: tuple[float, bytes, float] | None = None

    def probe(r: float) -> bool:
        nonlocal best
        try:
            blob = encode(Target.ratio(r, tolerance))
        except TargetNotMet as exc:
            p = Probe(r, exc.achieved, None, False, f"target not reached: {exc}")
        else:
            measured = original.nbytes / len(blob)
            m = min_fsc_to_resolution(original, decode(blob), spacing, resolution)
            p = Probe(r, measured, m, bool(m >= threshold))
            if p.passed and (best is None or measured > best[0]):
                best = (measured, blob, m)
        res.probes.append(p)
        if on_probe is not None:
            on_probe(p)
        return p.passed

    lo: float | None = None
    hi: float | None = None
    r = start
    while r <= max_ratio:
        if probe(r):
            lo = r
            r *= 2.0
            continue
        last = res.probes[-1]
        if lo is None and last.min_fsc is None and last.ratio is not None and last.ratio > r * (1 + tolerance):
            # the codec's lowest ratio lies above this one (e.g. HEVC at its finest CRF):
            # start again from there instead of calling the map lost
            r = last.ratio * (1 + 2 * tolerance)
            continue
        hi = r
        break
    if lo is None:
        res.probes.sort(key=lambda p: p.target)
        return res  # even the starting ratio loses the FSC: no file
    if hi is not None:
        while hi / lo > 1.0 + precision:
            mid = math.sqrt(lo * hi)
            if probe(mid):
                lo = mid
            else:
                hi = mid
    if best is not None:
        res.ratio, res.blob, res.min_fsc = best[0], best[1], best[2]
    res.probes.sort(key=lambda p: p.target)
    return res
