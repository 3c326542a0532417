"""Density-band relative error (paper 000, Table 1)."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.errors import DataError, OptionError
from voxfield.metrics import PAPER_EDGES, DensityBandRow, band_edges, density_bands, format_density_table


def _map() -> np.ndarray:
    """A map normalised like the paper's: about [-0.3, 0.2], with points in every band."""
    rng = np.random.default_rng(0)
    return rng.uniform(-0.3, 0.2, size=(20, 20, 20))


def test_ten_percent_everywhere():
    o = _map()
    rows = density_bands(o, o * 1.1)
    assert [r.band for r in rows] == ["low", "medium", "high"]
    for r in rows:
        assert r.n_points > 0
        assert r.mean_rel_error_pct == pytest.approx(10.0)
        assert r.median_rel_error_pct == pytest.approx(10.0)
        assert r.within_pct == 100.0
    assert sum(r.n_points for r in rows) == int((o > 0).sum())


def test_known_errors_per_band():
    # absolute paper edges: low (0, 0.07), medium [0.07, 0.15), high >= 0.15
    o = np.array([0.01, 0.02, 0.05, 0.10, 0.12, 0.2, 0.3, -0.1, 0.0])
    rel = np.array([1.00, 0.10, 0.40, 0.05, 0.25, 0.0, 0.3, 0, 0])  # wanted relative errors
    sign = np.array([1, -1, 1, -1, 1, 1, -1, 1, 1])
    r = o * (1 + sign * rel)
    r[7] = 5.0  # negative original: not counted whatever the error
    r[8] = 1.0  # zero original: not counted (density > 0 only)
    low, med, high = density_bands(o, r, edges=PAPER_EDGES)
    assert (low.n_points, med.n_points, high.n_points) == (3, 2, 2)
    assert low.mean_rel_error_pct == pytest.approx(100 * (1.0 + 0.1 + 0.4) / 3)
    assert low.median_rel_error_pct == pytest.approx(40.0)
    assert low.within_pct == pytest.approx(100 / 3)
    assert (low.value_min, low.value_max) == (0.01, 0.05)
    assert med.mean_rel_error_pct == pytest.approx(15.0)
    assert med.within_pct == pytest.approx(50.0)
    assert high.mean_rel_error_pct == pytest.approx(15.0)
    assert high.median_rel_error_pct == pytest.approx(15.0)
    assert high.within_pct == pytest.approx(50.0)
    assert (high.lower, high.upper) == (0.15, float("inf"))


def test_default_edges_scale_with_the_map():
    o = _map()
    e1, e2 = band_edges(o)
    assert (e1, e2) == pytest.approx((0.35 * o.max(), 0.75 * o.max()))
    # a map at the paper's scale (max 0.2) gets the paper's edges
    o2 = o / o.max() * 0.2
    assert band_edges(o2) == pytest.approx(PAPER_EDGES)
    # scaling the map scales the bands: identical row statistics
    a = density_bands(o, o * 1.05 + 0.001)
    b = density_bands(o * 7, (o * 1.05 + 0.001) * 7)
    for x, y in zip(a, b):
        assert x.n_points == y.n_points
        assert x.mean_rel_error_pct == pytest.approx(y.mean_rel_error_pct)


def test_contour_edges():
    o = _map()
    assert band_edges(o, contour=0.05) == (0.05, 0.1)
    rows = density_bands(o, o, contour=0.05)
    assert rows[0].upper == 0.05 and rows[1].lower == 0.05 and rows[2].lower == 0.1
    assert all(r.mean_rel_error_pct == 0 for r in rows)


def test_empty_band_and_no_positive_density():
    o = np.array([0.01, 0.02, -0.5])
    rows = density_bands(o, o, edges=(0.1, 0.2))
    assert rows[1].n_points == 0 and rows[1].mean_rel_error_pct is None
    neg = -np.abs(_map()) - 0.01
    rows = density_bands(neg, neg * 2)
    assert all(r.n_points == 0 for r in rows)


def test_format_table_layout():
    o = _map()
    rows = density_bands(o, o * 1.1, edges=PAPER_EDGES)
    md = format_density_table(rows, title="test map")
    lines = md.splitlines()
    assert lines[0] == "**test map**"
    assert lines[2].startswith(
        "| Density region | Mean Error (%) | Median Error (%) | Points within 20% Error (%)"
    )
    assert lines[4].startswith("| Low (0–0.07) | 10.00 | 10.00 | 100.00 |")
    assert lines[5].startswith("| Medium (0.07–0.15) |")
    assert lines[6].startswith("| High (>0.15) |")
    # dict rows (from compare()) render the same
    assert format_density_table([r.to_dict() for r in rows], title="test map") == md
    assert isinstance(rows[0], DensityBandRow)


def test_errors():
    o = _map()
    with pytest.raises(OptionError):
        density_bands(o, o, edges=(0.2, 0.1))
    with pytest.raises(OptionError):
        density_bands(o, o, edges=(0.1, 0.2), contour=0.1)
    with pytest.raises(DataError, match="shapes differ"):
        density_bands(o, o[:5])
