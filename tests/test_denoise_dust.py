"""ChimeraX hide-dust baseline on synthetic maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.measure import marching_cubes, mesh_surface_area

from voxfield.denoise.dust import dust_mask, hide_dust
from voxfield.errors import DataError, OptionError

SP = 1.05


def _map() -> np.ndarray:
    m = np.zeros((30, 30, 30), dtype=np.float32)
    m[2:14, 2:14, 2:14] = 1.0          # 12-voxel cube
    m[20, 20, 20] = 1.0                # speck
    m[25, 5, 25] = 2.0                 # speck
    m[0, 29, 0] = 0.3                  # below the level: not surface
    return m


def test_size_metric_hides_specks_keeps_cube():
    m = _map()
    r = dust_mask(m, 0.5, SP, size=5.0)
    assert r.n_components == 3 and r.n_dust == 2
    assert sorted(r.component_metric.tolist()) == pytest.approx([SP, SP, 12 * SP])
    assert r.dust[20, 20, 20] and r.dust[25, 5, 25]
    assert int(r.dust.sum()) == 2
    assert r.kept[2:14, 2:14, 2:14].all() and int(r.kept.sum()) == 12**3
    assert int(r.surface.sum()) == 12**3 + 2
    noise = r.noise_mask()
    assert noise[0, 29, 0] and noise[20, 20, 20] and not noise[5, 5, 5]
    # a limit below the speck size hides nothing
    assert dust_mask(m, 0.5, SP, size=1.0).n_dust == 0


def test_volume_metric():
    m = _map()
    v = SP**3
    r = dust_mask(m, 0.5, SP, size=2.0 * v, metric="volume")
    assert r.n_dust == 2
    assert sorted(r.component_metric.tolist()) == pytest.approx([v, v, 1728 * v])
    assert dust_mask(m, 0.5, SP, size=0.99 * v, metric="volume").n_dust == 0
    assert dust_mask(m, 0.5, SP, size=1729 * v, metric="volume").n_dust == 3


def test_area_metric():
    m = _map()
    r = dust_mask(m, 0.5, SP, size=5.0, metric="area")
    # a single voxel at 1.0 among zeros, contoured at 0.5: an octahedron with vertices
    # 0.5 voxel from the centre, area 2*sqrt(3)*(0.5*SP*sqrt(2))**2
    octa = 2 * math.sqrt(3) * (0.5 * SP * math.sqrt(2)) ** 2
    speck1 = np.zeros((5, 5, 5))
    speck1[2, 2, 2] = 1.0
    verts, faces, _, _ = marching_cubes(speck1, 0.5, spacing=(SP, SP, SP))
    assert mesh_surface_area(verts, faces) == pytest.approx(octa)
    areas = sorted(r.component_metric.tolist())
    assert areas[0] == pytest.approx(octa)          # speck at 1.0
    assert octa < areas[1] < 5.0                    # speck at 2.0 (vertices at 0.75 voxel)
    assert areas[2] > 6 * (11 * SP) ** 2            # cube
    assert r.n_dust == 2 and int(r.dust.sum()) == 2
    assert dust_mask(m, 0.5, SP, size=1.0, metric="area").n_dust == 0


def test_area_matches_isolated_component_mesh():
    m = np.zeros((12, 12, 12))
    m[3:6, 3:5, 4] = [[1.0, 2.0], [3.0, 1.5], [0.8, 2.5]]
    r = dust_mask(m, 0.5, (1.0, 1.5, 2.0), size=1.0, metric="area")
    verts, faces, _, _ = marching_cubes(m, 0.5, spacing=(1.0, 1.5, 2.0))
    assert r.n_components == 1
    assert r.component_metric[0] == pytest.approx(mesh_surface_area(verts, faces))


def test_diagonal_neighbours_are_separate_components():
    m = np.zeros((10, 10, 10))
    m[2, 2, 2] = m[3, 3, 3] = 1.0      # corner contact only
    m[6, 6, 6] = m[7, 7, 6] = 1.0      # edge contact only
    m[6, 2, 2] = m[6, 2, 3] = 1.0      # face contact: one component of size 2 voxels
    r = dust_mask(m, 0.5, 1.0, size=2.0)
    assert r.n_components == 5
    assert sorted(r.component_metric.tolist()) == [1.0, 1.0, 1.0, 1.0, 2.0]
    assert r.n_dust == 4 and not r.dust[6, 2, 2]


def test_anisotropic_spacing():
    m = np.zeros((8, 8, 8))
    m[1, 1, 1:4] = 1.0     # 3 voxels along x
    m[5, 5:8, 5] = 1.0     # 3 voxels along y
    r = dust_mask(m, 0.5, (1.0, 1.0, 2.0), size=5.0)
    assert r.component_metric.tolist() == [6.0, 3.0]
    assert not r.dust[1, 1, 2] and r.dust[5, 6, 5]


def test_hide_dust_zeros_only_dust():
    m = _map()
    out = hide_dust(m, 0.5, SP)
    assert out.dtype == m.dtype and out is not m
    assert out[20, 20, 20] == 0 and out[25, 5, 25] == 0
    expect = m.copy()
    expect[20, 20, 20] = expect[25, 5, 25] = 0
    np.testing.assert_array_equal(out, expect)
    assert m[20, 20, 20] == 1.0  # input untouched


def test_bad_options():
    m = _map()
    with pytest.raises(OptionError):
        dust_mask(m, 0.5, SP, metric="diameter")
    with pytest.raises(OptionError):
        dust_mask(m, float("nan"), SP)
    with pytest.raises(OptionError):
        dust_mask(m, 0.5, SP, size=0.0)
    with pytest.raises(OptionError):
        dust_mask(m, 0.5, (1.0, -1.0, 1.0))
    with pytest.raises(DataError):
        dust_mask(m[0], 0.5, SP)
    bad = m.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(DataError):
        hide_dust(bad, 0.5, SP)


def test_nothing_above_level():
    r = dust_mask(np.zeros((4, 4, 4)), 0.5, 1.0, metric="area")
    assert r.n_components == 0 and r.n_dust == 0 and not r.dust.any()
