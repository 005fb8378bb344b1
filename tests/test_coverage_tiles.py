"""The area near test roads: the tiled merge equals one union and the hand-computed answer."""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import LineString, box

from geo import maps

UTM = CRS.from_epsg(32651)


def _polygon_area_of_buffer(length: float, r: float) -> float:
    # shapely's buffer with quad_segs=8: a 32-gon for the two end caps (inscribed in the circle)
    n = 32
    return 2 * r * length + 0.5 * n * r * r * math.sin(2 * math.pi / n)


def test_one_road_in_a_large_zone_by_hand():
    zone = box(300_000, 3_450_000, 310_000, 3_460_000)
    line = LineString([(302_000, 3_455_000), (307_000, 3_455_000)])
    want = _polygon_area_of_buffer(5000.0, 500.0)
    for tiled in (True, False):
        got = maps.near_area_m2(np.array([line], dtype=object), zone, 500.0, UTM, UTM, tiled=tiled)
        assert abs(got - want) < 1e-3 * want / 1e3, (tiled, got, want)


def test_tiled_merge_equals_one_union_on_random_roads_cut_by_the_zone_edge():
    rng = np.random.default_rng(7)
    zone = shapely.Polygon([(300_000, 3_450_000), (312_000, 3_451_000), (309_000, 3_462_000), (301_000, 3_459_000)])
    x = rng.uniform(298_000, 314_000, 400)
    y = rng.uniform(3_448_000, 3_464_000, 400)
    ang = rng.uniform(0, 2 * math.pi, 400)
    ln = rng.uniform(50, 900, 400)
    lines = shapely.linestrings(np.stack([np.c_[x, y], np.c_[x + ln * np.cos(ang), y + ln * np.sin(ang)]], axis=1))
    for r in (60.0, 120.0, 500.0):
        one = maps.near_area_m2(lines, zone, r, UTM, UTM, tiled=False)
        tiles = maps.near_area_m2(lines, zone, r, UTM, UTM, tiled=True)
        assert 0 < one <= zone.area * (1 + 1e-12)
        assert abs(tiles - one) < 1e-6 * zone.area, (r, tiles, one)


def test_no_roads_no_area():
    zone = box(0, 0, 1000, 1000)
    assert maps.near_area_m2(np.array([], dtype=object), zone, 500.0, UTM, UTM) == 0.0
