"""Relative error by density band, as in Table 1 of Zou's INR cryo-EM paper (paper 000).

The paper evaluates "filtered points with density > 0": every voxel where the **original**
is > 0, with the point-wise relative error

    rel = |result - original| / |original| * 100   (%)

and groups the points into density bands of the original: low (0-0.07), medium
(0.07-0.15) and high (> 0.15), on maps normalised to roughly [-0.3, 0.2]. Per band it reports
the mean and median relative error and the share of points within 20 % error.

Band edges
----------
* ``edges=(e1, e2)``: absolute density values, in the map's units. The paper's own
  numbers are ``edges=PAPER_EDGES = (0.07, 0.15)``.
* default: the paper's edges scaled to the map's maximum, ``(0.35, 0.75) * max(original)``
  (0.07/0.2 and 0.15/0.2: the paper's maps peak at about 0.2), so the bands mean the same
  thing on a map of any scale.
* ``contour=c``: bands relative to a contour (display threshold) level: low ``(0, c)`` =
  density below the displayed surface, medium ``[c, 2c)``, high ``>= 2c``. This is often the
  more natural split for a map with a recommended contour level.

A point with value ``v`` belongs to low when ``0 < v < e1``, medium when ``e1 <= v < e2``,
high when ``v >= e2``.

Expect the low band's mean to be huge (the paper reports > 1000 %): dividing by densities
near 0 inflates the relative error; read the median and the within-20 % share next to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from voxfield.errors import OptionError

from ._validate import check_pair

#: The paper's absolute band edges (maps normalised to about [-0.3, 0.2]).
PAPER_EDGES = (0.07, 0.15)
#: Default edges as fractions of the original's maximum (0.07/0.2, 0.15/0.2).
DEFAULT_EDGE_FRACTIONS = (0.35, 0.75)
BAND_NAMES = ("low", "medium", "high")


@dataclass(frozen=True)
class DensityBandRow:
    """One row of the density-band table.

    Attributes
    ----------
    band : "low", "medium" or "high".
    lower, upper : band limits in density units (``upper`` is ``inf`` for "high"); the
        band is ``lower < v < upper`` for low and ``lower <= v < upper`` otherwise.
    n_points : number of voxels of the original in the band.
    value_min, value_max : smallest and largest original value found in the band (None when
        the band is empty).
    mean_rel_error_pct, median_rel_error_pct : mean and median relative error in % (None when
        empty).
    within_pct : share of the band's points with relative error <= ``within_limit_pct``, in %.
    within_limit_pct : the limit used (20 % as in the paper).
    """

    band: str
    lower: float
    upper: float
    n_points: int
    value_min: float | None
    value_max: float | None
    mean_rel_error_pct: float | None
    median_rel_error_pct: float | None
    within_pct: float | None
    within_limit_pct: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable; ``upper`` may be ``inf``)."""
        return asdict(self)


def band_edges(
    original: np.ndarray,
    *,
    edges: Sequence[float] | None = None,
    contour: float | None = None,
) -> tuple[float, float]:
    """The two band edges ``(e1, e2)`` in density units (rules in the module docstring)."""
    if edges is not None and contour is not None:
        raise OptionError("give band edges or a contour level, not both")
    if edges is not None:
        vals = [float(e) for e in edges]
        if len(vals) != 2 or not all(math.isfinite(v) for v in vals) or not 0 < vals[0] < vals[1]:
            raise OptionError(f"density band edges must be two numbers 0 < e1 < e2, got {list(edges)}")
        return vals[0], vals[1]
    if contour is not None:
        c = float(contour)
        if not math.isfinite(c) or c <= 0:
            raise OptionError(f"contour level for density bands must be > 0, got {contour!r}")
        return c, 2.0 * c
    vmax = float(np.max(original))
    if vmax <= 0:
        # no positive density: every band is empty; keep the edges well defined
        return DEFAULT_EDGE_FRACTIONS
    return DEFAULT_EDGE_FRACTIONS[0] * vmax, DEFAULT_EDGE_FRACTIONS[1] * vmax


def density_bands(
    original: np.ndarray,
    result: np.ndarray,
    *,
    edges: Sequence[float] | None = None,
    contour: float | None = None,
    within: float = 20.0,
    _checked: bool = False,
) -> list[DensityBandRow]:
    """Relative error of ``result`` by density band of ``original`` (paper 000, Table 1).

    Parameters
    ----------
    original, result : maps of the same shape (any dimension), real.
    edges : absolute band edges ``(e1, e2)`` in density units; default
        ``(0.35, 0.75) * max(original)``. See the module docstring.
    contour : alternative to ``edges``: bands ``(0, c)``, ``[c, 2c)``, ``>= 2c``.
    within : relative-error limit in % for the "points within" column (paper: 20).

    Returns
    -------
    Three :class:`DensityBandRow` (low, medium, high), over the voxels where original > 0.
    """
    if not _checked:
        original, result = check_pair(original, result)
    if not math.isfinite(float(within)) or within < 0:
        raise OptionError(f"within must be a percentage >= 0, got {within!r}")
    e1, e2 = band_edges(original, edges=edges, contour=contour)
    pos = original > 0
    o = original[pos].astype(np.float64, copy=False)
    r = result[pos].astype(np.float64, copy=False)
    del pos
    rel = np.abs(r - o)
    rel /= o
    rel *= 100.0
    del r
    limits = ((0.0, e1), (e1, e2), (e2, math.inf))
    rows = []
    for name, (lo, hi) in zip(BAND_NAMES, limits):
        sel = (o >= lo) & (o < hi)
        vals = o[sel]
        err = rel[sel]
        if err.size == 0:
            rows.append(DensityBandRow(name, lo, hi, 0, None, None, None, None, None, float(within)))
            continue
        rows.append(
            DensityBandRow(
                band=name,
                lower=lo,
                upper=hi,
                n_points=int(err.size),
                value_min=float(vals.min()),
                value_max=float(vals.max()),
                mean_rel_error_pct=float(err.mean()),
                median_rel_error_pct=float(np.median(err)),
                within_pct=100.0 * float(np.count_nonzero(err <= within)) / err.size,
                within_limit_pct=float(within),
            )
        )
    return rows


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _range_label(row: DensityBandRow) -> str:
    if math.isinf(row.upper):
        return f">{row.lower:.3g}"
    return f"{row.lower:.3g}–{row.upper:.3g}"


def format_density_table(rows: Sequence[DensityBandRow] | Sequence[dict], title: str | None = None) -> str:
    """Markdown table in the layout of paper 000's Table 1 (region, mean %, median %, points
    within 20 %), plus the number of points. Accepts rows or their ``to_dict()`` forms."""
    rs = [r if isinstance(r, DensityBandRow) else DensityBandRow(**r) for r in rows]
    limit = rs[0].within_limit_pct if rs else 20.0
    lines = []
    if title:
        lines.append(f"**{title}**")
        lines.append("")
    lines.append(
        "| Density region | Mean Error (%) | Median Error (%) | "
        f"Points within {limit:g}% Error (%) | Points |"
    )
    lines.append("|---|---:|---:|---:|---:|")
    for r in rs:
        lines.append(
            f"| {r.band.capitalize()} ({_range_label(r)}) | {_fmt(r.mean_rel_error_pct)} | "
            f"{_fmt(r.median_rel_error_pct)} | {_fmt(r.within_pct)} | {r.n_points} |"
        )
    return "\n".join(lines)
