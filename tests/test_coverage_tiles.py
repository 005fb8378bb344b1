"""The area near test roads: the tiled merge equals one union and the hand-computed answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
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


# ---------------------------------------------------------------- chains (sparse networks, no tiles)

def test_chain_lines_pairs_ends_at_each_node_by_hand():
    # a '+' junction (4 arms meeting at the origin) and a path of three pieces, apart from it
    arms = [LineString([(0, 0), (100, 0)]), LineString([(0, 0), (0, 100)]), LineString([(-100, 0), (0, 0)]),
            LineString([(0, -100), (0, 0)])]
    path = [LineString([(1000, 0), (1100, 0)]), LineString([(1200, 50), (1100, 0)]),
            LineString([(1200, 50), (1300, 50), (1300, 150)])]
    chains = maps.chain_lines(np.array(arms + path, dtype=object))
    # the 4 arms pair up into 2 lines through the origin; the path becomes one line of 5 points
    assert len(chains) == 3
    assert sorted(shapely.get_num_coordinates(chains).tolist()) == [3, 3, 5]
    lines = np.array(arms + path, dtype=object)
    assert shapely.length(chains).sum() == pytest.approx(shapely.length(lines).sum(), abs=1e-9)
    assert shapely.equals(shapely.union_all(chains), shapely.union_all(lines))


def test_chain_lines_closes_a_loop_and_keeps_other_types():
    loop = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (10, 10)]), LineString([(10, 10), (0, 0)])]
    other = shapely.MultiLineString([[(50, 50), (60, 60)]])
    chains = maps.chain_lines(np.array([*loop, other], dtype=object))
    assert len(chains) == 2
    ring = chains[shapely.get_type_id(chains) == 1][0]
    assert shapely.get_num_coordinates(ring) == 4 and ring.coords[0] == ring.coords[-1]
    assert any(g.equals(other) for g in chains)


def _sparse_network(clusters: int, seed: int = 3) -> tuple[np.ndarray, shapely.Polygon]:
    """Small street grids (5 x 5 nodes, 100 m blocks: 40 pieces each) scattered over a 60 km box."""
    rng = np.random.default_rng(seed)
    out = []
    for cx, cy in zip(rng.uniform(302_000, 358_000, clusters), rng.uniform(3_402_000, 3_458_000, clusters)):
        for i in range(5):
            for j in range(4):
                out.append(LineString([(cx + i * 100, cy + j * 100), (cx + i * 100, cy + (j + 1) * 100)]))
                out.append(LineString([(cx + j * 100, cy + i * 100), (cx + (j + 1) * 100, cy + i * 100)]))
    return np.array(out, dtype=object), box(300_000, 3_400_000, 360_000, 3_460_000)


def test_sparse_network_chained_equals_one_plain_union_within_the_promise():
    lines, zone = _sparse_network(60)  # 2,400 pieces: chained, not tiled
    assert len(lines) >= maps.CHAIN_MIN_PIECES
    got = maps.near_area_m2(lines, zone, 500.0, UTM, UTM)
    plain = float(shapely.intersection(shapely.union_all(shapely.buffer(lines, 500.0, quad_segs=8)), zone).area)
    chained = maps.chain_lines(lines)
    assert len(chained) < len(lines) / 3  # each cluster's grid lines join up
    # the chained union is what was used (not the fallback)
    assert got == pytest.approx(float(shapely.intersection(
        shapely.union_all(shapely.buffer(chained, 500.0, quad_segs=8)), zone).area), rel=1e-12)
    assert 0 < got < zone.area
    # promised: 0.1 percentage point of the zone; the bound checked in near_area_m2 is 0.05
    assert abs(got - plain) < 5e-4 * zone.area, (got, plain)
    # and what it really changes here: the slivers of the cut arcs, parts per million
    assert abs(got - plain) < 1e-6 * zone.area


def test_chained_union_falls_back_to_the_pieces_where_the_bound_is_too_loose():
    lines, _ = _sparse_network(60)
    # a zone just around one cluster: the bound on the arcs is large against it, so the pieces' union is used
    cx, cy = shapely.get_coordinates(lines[0])[0]
    zone = box(cx - 1500, cy - 1500, cx + 1900, cy + 1900)
    got = maps.near_area_m2(lines, zone, 500.0, UTM, UTM, tiled=False)
    plain = float(shapely.intersection(shapely.union_all(shapely.buffer(lines, 500.0, quad_segs=8)), zone).area)
    chained = float(shapely.intersection(shapely.union_all(shapely.buffer(maps.chain_lines(lines), 500.0,
                                                                          quad_segs=8)), zone).area)
    assert abs(chained - plain) > 1e-10 * plain  # the two differ (by slivers) ...
    assert got == pytest.approx(plain, rel=1e-12)  # ... and the pieces' union was used


def test_tiled_real_subset_chained_share_matches_one_plain_union(shared_data):
    """The real Jiading subset tiled 3 x 3 (7k pieces, sparse): the share as icv computes it vs shapely alone."""
    from geo.sources import load_network
    from geo.zones import load_zone

    net = load_network(shared_data / "jiading_osm_signalized.osm", zone=load_zone("jiading"))
    geoms = np.asarray(net.roads.geometry.values, dtype=object)
    tiles = np.concatenate([shapely.transform(geoms, lambda xy, i=i, j=j: xy + [i * 0.25, j * 0.25])
                            for i in range(3) for j in range(3)])
    zone_ll = shapely.box(*shapely.total_bounds(tiles)).buffer(0.01)
    from pyproj import Transformer

    fwd = Transformer.from_crs(4326, UTM, always_xy=True)
    lines = shapely.transform(tiles, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    zone = shapely.transform(zone_ll, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    got = maps.near_area_m2(lines, zone, 500.0, UTM, UTM)
    plain = float(shapely.intersection(shapely.union_all(shapely.buffer(lines, 500.0, quad_segs=8)), zone).area)
    assert abs(got - plain) / zone.area < 1e-3  # 0.1 percentage point
    assert abs(got - plain) / zone.area < 1e-5


def test_street_grid_cut_by_a_zone_edge_chained_equals_one_plain_union():
    # 600 m blocks, 3,280 pieces over a 24 km box; the zone, a slanted quadrilateral, cuts the grid
    n, s = 41, 600.0
    x0, y0 = 300_000.0, 3_450_000.0
    segs = [LineString([(x0 + i * s, y0 + j * s), (x0 + i * s, y0 + (j + 1) * s)]) for i in range(n) for j in range(n - 1)]
    segs += [LineString([(x0 + j * s, y0 + i * s), (x0 + (j + 1) * s, y0 + i * s)]) for i in range(n) for j in range(n - 1)]
    lines = np.array(segs, dtype=object)
    zone = shapely.Polygon([(x0 + 2_000, y0 + 1_000), (x0 + 23_000, y0 + 3_000), (x0 + 21_000, y0 + 22_000),
                            (x0 + 1_000, y0 + 20_000)])
    assert len(lines) >= maps.CHAIN_MIN_PIECES
    got = maps.near_area_m2(lines, zone, 500.0, UTM, UTM, tiled=False)
    plain = float(shapely.intersection(shapely.union_all(shapely.buffer(lines, 500.0, quad_segs=8)), zone).area)
    chained = float(shapely.intersection(shapely.union_all(shapely.buffer(maps.chain_lines(lines), 500.0,
                                                                          quad_segs=8)), zone).area)
    assert got == pytest.approx(chained, rel=1e-12)  # the chains were used: the zone's edge is no arc
    assert abs(got - plain) < 1e-6 * zone.area
