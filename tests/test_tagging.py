"""Tag semantics and messy OSM: U-turns, zone edges, roundabouts, implied oneway, access, readers.

Every layout here is written by the test in metres (UTM 51N, EPSG:32651) and
stored as lon/lat at OSM's 1e-7° precision, so the answers below are computed
by hand from the layout; real extracts are checked against an independent
method (plain osmium, OSMnx) where they are used.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pyproj
import pytest
import shapely
from click.testing import CliRunner

from cli import cli
from geo import _format
from geo import stats as gstats
from geo.roads import (MissingNodesWarning, RawWay, build_roads_table, motor_vehicle_access, oneway_direction,
                       parse_filter)
from geo.sources import ZONE_MARGIN_M, load_network
from geo.stats import road_stats
from geo.zones import Zone

TO_LONLAT = pyproj.Transformer.from_crs(32651, 4326, always_xy=True)
ORIGIN = (330_000.0, 3_460_000.0)  # near Jiading
ABS_M = 0.05  # 1e-7° rounding of the stored coordinates moves a hand length by < 5 cm


def lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = TO_LONLAT.transform(ORIGIN[0] + x, ORIGIN[1] + y)
    return round(lon, 7), round(lat, 7)


def write_osm(path: Path, nodes: dict[int, tuple[float, float]], ways: list[tuple[int, list[int], dict]]) -> Path:
    """An OSM XML file of the layout (node positions in metres)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="icv tests">']
    for nid, (x, y) in nodes.items():
        lon, lat = lonlat(x, y)
        out.append(f'  <node id="{nid}" version="1" timestamp="2024-05-01T00:00:00Z" lat="{lat:.7f}" lon="{lon:.7f}"/>')
    for wid, refs, tags in ways:
        out.append(f'  <way id="{wid}" version="1" timestamp="2024-05-01T00:00:00Z">')
        out.extend(f'    <nd ref="{r}"/>' for r in refs)
        out.extend(f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items())
        out.append("  </way>")
    out.append("</osm>")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def box_zone(x0: float, y0: float, x1: float, y1: float, name: str = "box") -> Zone:
    return Zone(name, shapely.Polygon([lonlat(x0, y0), lonlat(x1, y0), lonlat(x1, y1), lonlat(x0, y1)]))


def stats_of(path: Path, zone: Zone, **kw):
    net = load_network(path, zone=zone, road_filter=parse_filter(kw.pop("preset", "drive")))
    return road_stats(net.stats_roads, zone, **kw), net


def ways_named(stats, name: str):
    p = stats.pieces
    return p[p["name"] == name]


# ---------------------------------------------------------------- 1. pairing

def test_u_turn_pieces_pair_with_each_other(tmp_path):
    """Two one-way ways joined end to start by a U-turn are the two sides of one road.

    Way 1 runs east 0 -> 1000 m on y = 0, then 10 m up-right to (1010, 10); way
    2 runs from there up-left to (1000, 20) and back west on y = 20. The two
    1000 m straights are 20 m apart and opposite: each is paired along all of
    its 1000 m; the two 14.142 m diagonals (90° apart) are not.
    """
    nodes = {1: (0, 0), 2: (1000, 0), 3: (1010, 10), 4: (1000, 20), 5: (0, 20)}
    tags = {"highway": "primary", "oneway": "yes", "name": "绥宁路"}
    osm = write_osm(tmp_path / "u.osm", nodes, [(1, [1, 2, 3], tags), (2, [3, 4, 5], tags)])
    st, net = stats_of(osm, box_zone(-100, -100, 1100, 100))
    diag = math.hypot(10, 10)
    assert len(st.pieces) == 2  # not merged into one piece that cannot pair with itself
    assert st.value("carriageway_km") * 1000 == pytest.approx(2000 + 2 * diag, abs=ABS_M)
    assert st.value("dual_carriageway_km") * 1000 == pytest.approx(2000, abs=ABS_M)
    assert st.value("centerline_km") * 1000 == pytest.approx(1000 + 2 * diag, abs=ABS_M)
    pieces = set(st.pieces["piece"])
    for row in st.pieces.itertuples():
        assert set(row.partners) == pieces - {row.piece}  # each side paired with the other


@pytest.mark.parametrize("drawn", ["one way", "three ways"])
def test_a_piece_that_turns_back_on_itself_is_split_and_pairs(tmp_path, drawn):
    """One one-way piece out along y = 0 and back along y = 20 (or 10 m further, three ways merged).

    One way: east 1000 m, north 20 m, west 1000 m; cut at (1000, 20), the vertex
    farthest from the start: the 1000 m sides pair, the 20 m turn does not
    (90° off). Three ways: A east 1000 m then to (1005, 5); B north 10 m; C
    to (1000, 20) then west 1000 m. A->B and B->C each turn 90°, so they merge
    into one piece, cut at (1005, 15): turn = 2 x hypot(5, 5) + 10 m, its
    diagonals 45° off east and west, so nothing of the turn pairs.
    """
    tags = {"highway": "secondary", "oneway": "yes", "name": "武威路"}
    if drawn == "one way":
        nodes = {1: (0, 0), 2: (1000, 0), 3: (1000, 20), 4: (0, 20)}
        ways = [(1, [1, 2, 3, 4], tags)]
        turn = 20.0
    else:
        nodes = {1: (0, 0), 2: (1000, 0), 3: (1005, 5), 4: (1005, 15), 5: (1000, 20), 6: (0, 20)}
        ways = [(1, [1, 2, 3], tags), (2, [3, 4], tags), (3, [4, 5, 6], tags)]
        turn = 2 * math.hypot(5, 5) + 10
    osm = write_osm(tmp_path / "u1.osm", nodes, ways)
    st, _ = stats_of(osm, box_zone(-100, -100, 1100, 100))
    assert len(st.pieces) == 2
    assert st.value("carriageway_km") * 1000 == pytest.approx(2000 + turn, abs=ABS_M)
    assert st.value("dual_carriageway_km") * 1000 == pytest.approx(2000, abs=ABS_M)
    assert st.value("centerline_km") * 1000 == pytest.approx(1000 + turn, abs=ABS_M)


def test_one_way_ways_merge_when_they_continue(tmp_path):
    """The U-turn rule splits only what turns back: a one-way road drawn as two ways stays one piece."""
    nodes = {1: (0, 0), 2: (500, 0), 3: (1000, 50)}
    tags = {"highway": "primary", "oneway": "yes", "name": "A路"}
    roads = build_roads_table(
        [RawWay(1, tags, [1, 2], [lonlat(*nodes[1]), lonlat(*nodes[2])]),
         RawWay(2, tags, [2, 3], [lonlat(*nodes[2]), lonlat(*nodes[3])])], parse_filter("drive"))
    assert len(roads) == 1 and roads.iloc[0]["osm_way_ids"] == [1, 2]


@pytest.mark.shared
def test_u_turn_ways_of_the_shared_subset_pair(shared_data):
    """绥宁路 853514851 + 853514852 and 武威路 160013438 + 160013445: separate pieces, each paired."""
    st, _ = stats_of(shared_data / "jiading_osm_signalized.osm", Zone("all", shapely.box(121.0, 31.0, 121.5, 31.5)))
    p = st.pieces
    for pair in ((853514851, 853514852), (160013438, 160013445)):
        rows = p[[any(w in pair for w in ws) for ws in p["osm_way_ids"]]]
        assert all(len(set(ws) & set(pair)) == 1 for ws in rows["osm_way_ids"]), rows["osm_way_ids"].tolist()
        assert (rows["paired_m"] > 0).all()
        partners = {q for ps in rows["partners"] for q in ps}
        assert partners & set(rows["piece"])  # paired with each other


def test_zone_edge_between_two_carriageways_changes_no_pairing(tmp_path):
    """The zone's edge runs between the carriageways: the outside one still pairs the inside one.

    Way 10 runs east on y = 0 (outside the zone, which starts at y = 15); way 11
    runs west on y = 30, 1000 m, inside. Paired along all of way 11: its
    centerline is 1000 - 1000 / 2 = 500 m.
    """
    nodes = {1: (0, 0), 2: (1000, 0), 3: (1000, 30), 4: (0, 30)}
    tags = {"highway": "primary", "oneway": "yes", "name": "Edge Road"}
    osm = write_osm(tmp_path / "edge.osm", nodes, [(10, [1, 2], tags), (11, [3, 4], tags)])
    zone = box_zone(-100, 15, 1100, 500)
    st, net = stats_of(osm, zone)
    assert len(net.roads) == 1 and len(net.surroundings) == 1  # way 10 is kept beside the zone
    assert st.value("carriageway_km") == pytest.approx(1.0, abs=ABS_M / 1000)
    assert st.value("centerline_km") == pytest.approx(0.5, abs=ABS_M / 1000)
    # the margin holds what pairing and clustering need
    assert ZONE_MARGIN_M >= gstats.StatsParams().pair_distance_m + 2 * gstats.StatsParams().intersection_tolerance_m
    # the cache keeps the margin: the same figure read back
    from geo.sources import pull_to_cache

    pull_to_cache(str(osm), zone=zone, cache_dir=tmp_path / "cache")
    cached = load_network("cache", zone=zone, cache_dir=tmp_path / "cache")
    assert len(cached.roads) == 1 and len(cached.surroundings) == 1
    assert road_stats(cached.stats_roads, zone).value("centerline_km") == pytest.approx(0.5, abs=ABS_M / 1000)
    # a pair distance beyond the margin is said on the command line
    zf = tmp_path / "edge.geojson"
    zf.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "name": "edge"}, "geometry": shapely.geometry.mapping(zone.geometry)}]}), encoding="utf-8")
    r = CliRunner().invoke(cli, ["stats", "--source", str(osm), "--zone", str(zf), "--pair-distance", "300"])
    assert r.exit_code == 0 and "icv: warning:" in r.stderr and "200 m" in r.stderr


def test_junction_cluster_half_outside_is_counted_by_its_position(tmp_path):
    """A cluster of two junction nodes 25 m apart across the zone edge counts where its mean lies.

    J1 (500, 5) is inside the zone (y >= 0) with the west and east arms and the
    link to J2; J2 (500, -20), outside, has the link, a south and a south-east
    arm. 25 m <= 2 x 15 m: one cluster, mean y = -7.5: outside, not counted.
    K (800, 5), inside, joins a north arm to the east road: counted. Without
    J2's outside arms J2 would not be a junction and the cluster would be J1
    alone, inside.
    """
    nodes = {1: (0, 5), 2: (500, 5), 3: (800, 5), 4: (1000, 5), 5: (500, -20), 6: (500, -500),
             7: (1000, -20), 8: (800, 400)}
    t = {"highway": "residential"}
    ways = [(20, [1, 2, 3, 4], {**t, "name": "West Street"}), (21, [2, 5], {**t, "name": "Link"}),
            (22, [5, 6], {**t, "name": "South"}), (23, [5, 7], {**t, "name": "Southeast"}),
            (24, [3, 8], {**t, "name": "North"})]
    osm = write_osm(tmp_path / "cluster.osm", nodes, ways)
    zone = box_zone(-100, 0, 1100, 1000)
    st, net = stats_of(osm, zone)
    assert set(st.junction_nodes["node"]) == {2, 3}
    assert st.value("intersections") == 1
    (row,) = st.junctions.itertuples()
    assert row.nodes == (3,)
    # the same figures whichever way the roads come: from the wider table
    st2 = road_stats(net.stats_roads, zone)
    assert st2.value("intersections") == 1


def test_a_small_named_roundabout_never_pairs_with_itself(tmp_path):
    """A 20 m square roundabout (80 m round), named, split into two pieces by two approach roads.

    Its east and west sides (and north and south) run opposite 20 m apart: as
    one-way pieces of one name they would pair and count 40 m. A roundabout is
    one carriageway: 80 m in centerline km too. Approaches: 500 m each, two-way.
    """
    nodes = {1: (0, 0), 2: (20, 0), 3: (20, 20), 4: (0, 20), 5: (-500, 0), 6: (520, 20)}
    ways = [(30, [1, 2, 3, 4, 1], {"highway": "tertiary", "junction": "roundabout", "name": "环岛"}),
            (31, [5, 1], {"highway": "tertiary", "name": "West"}), (32, [3, 6], {"highway": "tertiary", "name": "East"})]
    osm = write_osm(tmp_path / "ring.osm", nodes, ways)
    st, net = stats_of(osm, box_zone(-1000, -1000, 1000, 1000))
    ring = ways_named(st, "环岛")
    assert len(ring) == 2 and ring["oneway"].all()  # junction=roundabout implies oneway
    assert set(net.roads["junction"].dropna()) == {"roundabout"}
    assert ring["clipped_m"].sum() == pytest.approx(80, abs=ABS_M)
    assert ring["centerline_m"].sum() == pytest.approx(80, abs=ABS_M)
    assert st.value("centerline_km") * 1000 == pytest.approx(1080, abs=ABS_M)
    assert st.value("dual_carriageway_km") == 0


# ---------------------------------------------------------------- 2. oneway

@pytest.mark.parametrize("tags, expected", [
    ({"highway": "motorway"}, 1),                         # implied by OSM
    ({"highway": "motorway", "oneway": "no"}, 0),         # unless tagged otherwise
    ({"highway": "motorway_link"}, 0),                    # ramps must be tagged
    ({"highway": "primary", "junction": "roundabout"}, 1),
    ({"highway": "primary", "junction": "circular"}, 1),
    ({"highway": "primary", "junction": "roundabout", "oneway": "no"}, 0),
    ({"highway": "primary", "oneway": "-1"}, -1),
    ({"highway": "primary", "oneway": "reversible"}, 0),  # one carriageway, one direction at a time
    ({"highway": "primary", "oneway": "alternating"}, 0),
    ({"highway": "primary", "oneway": "YES"}, 1),
    ({"highway": "primary"}, 0),
])
def test_oneway_direction(tags, expected):
    assert oneway_direction(tags) == expected


def test_motorway_without_oneway_is_one_way_and_pairs(tmp_path):
    """Way 40 (motorway, no oneway tag) east on y = 0; way 41 drawn east on y = 30 but oneway=-1, so it runs
    west: a dual carriageway, 1 km of expressway. Way 42, a motorway tagged oneway=no, 500 m: once."""
    nodes = {1: (0, 0), 2: (1000, 0), 3: (0, 30), 4: (1000, 30), 5: (0, 400), 6: (500, 400)}
    ways = [(40, [1, 2], {"highway": "motorway", "ref": "G2"}),
            (41, [3, 4], {"highway": "motorway", "ref": "G2", "oneway": "-1"}),
            (42, [5, 6], {"highway": "motorway", "ref": "S5", "oneway": "no"})]
    osm = write_osm(tmp_path / "mw.osm", nodes, ways)
    st, net = stats_of(osm, box_zone(-100, -100, 1100, 1000))
    r = net.roads.set_index(net.roads["osm_way_ids"].map(lambda w: w[0]))
    assert bool(r.loc[40, "oneway"]) and bool(r.loc[41, "oneway"]) and not bool(r.loc[42, "oneway"])
    assert r.loc[41].geometry.coords[0] == pytest.approx(lonlat(1000, 30))  # turned to the travel direction
    assert st.value("carriageway_km") == pytest.approx(2.5, abs=1e-4)
    assert st.value("expressway_km") == pytest.approx(1.5, abs=1e-4)
    assert st.value("ref_centerline_km:G2") == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------- 3. access

ACCESS_CASES = [
    ({}, True),
    ({"access": "no", "motor_vehicle": "yes"}, True),        # the most specific tag wins
    ({"access": "private;delivery"}, False),                  # a list of restricted groups
    ({"access": "private;yes"}, True),                        # a list with an open value
    ({"access": "yes", "motorcar": "private"}, False),
    ({"vehicle": "no", "motorcar": "yes"}, True),
    ({"access": "no", "vehicle": "yes", "motor_vehicle": "no"}, False),
    ({"motor_vehicle": "destination"}, True),                 # public, to reach a place there
    ({"access": "customers"}, False),
    ({"access": "delivery"}, False),
    ({"access": " Private "}, False),
    ({"access": "no", "motorcar": ""}, False),                # an empty tag says nothing
    ({"access": "permissive"}, True),
]


@pytest.mark.parametrize("tags, open_", ACCESS_CASES)
def test_motor_vehicle_access_hierarchy(tags, open_):
    assert motor_vehicle_access(tags) is open_
    rf = parse_filter("drive")
    assert rf.accepts({"highway": "residential", **tags}) is open_
    assert parse_filter("drive", include_private=True).accepts({"highway": "residential", **tags})


def _access_osm(tmp_path: Path) -> Path:
    """One 100 m residential way per access case, ids 100, 101, ...; a few metres apart, unconnected."""
    nodes, ways = {}, []
    for i, (tags, _) in enumerate(ACCESS_CASES):
        nodes[2 * i + 1], nodes[2 * i + 2] = (0, 50 * i), (100, 50 * i)
        ways.append((100 + i, [2 * i + 1, 2 * i + 2], {"highway": "residential", **tags}))
    return write_osm(tmp_path / "access.osm", nodes, ways)


def test_access_the_same_in_the_xml_reader_and_the_overpass_pull(tmp_path):
    from overpass_standin import OverpassStandIn

    from geo._overpass import fetch_ways

    osm = _access_osm(tmp_path)
    expected = {100 + i for i, (_, open_) in enumerate(ACCESS_CASES) if open_}
    zone = box_zone(-50, -50, 150, 50 * len(ACCESS_CASES))
    net = load_network(osm, zone=zone)
    assert {w for ws in net.roads["osm_way_ids"] for w in ws} == expected
    assert net.roads["length_m"].sum() == pytest.approx(100 * len(expected), abs=ABS_M * len(expected))
    rf = parse_filter("drive")
    with OverpassStandIn(osm) as server:
        ways, _ = fetch_ways(zone.geometry, rf, url=server.url, timeout=5, backoff=0.05)
        assert server.interpreter_count == 1  # one query, access decided by the same function afterwards
    got = {w for ws in build_roads_table(ways, rf)["osm_way_ids"] for w in ws}
    assert got == expected


# ---------------------------------------------------------------- 4. --explain of every figure

FORMATS = ("table", "json", "csv", "markdown")


def _sweep(stats) -> int:
    """Render the explain table of every figure (sub-zones too) in every format; return how many."""
    n = 0
    names = list(stats.figures_by_name)
    for sub, s in stats.subzones.items():
        names += [f"subzone:{sub}/{f}" for f in s.figures_by_name]
    for name in names:
        fig = stats.figure(name)
        rows = gstats.records(gstats.explain(stats, name))
        for fmt in FORMATS:
            text = _format.render(rows, fmt, meta=gstats.stats_meta(stats), title=f"{name} = {fig.value}")
            assert text
            if fmt == "json":
                json.loads(text)  # strict: no NaN
        n += 1
    return n


def test_explain_named_streets_with_a_missing_english_name_writes_json(tmp_path):
    """Two pieces of 胜辛路, one with name:en and one without (the NaN name_en bug)."""
    nodes = {1: (0, 0), 2: (300, 0), 3: (600, 0), 4: (300, 300)}
    ways = [(50, [1, 2], {"highway": "primary", "name": "胜辛路", "name:en": "Shengxin Road"}),
            (51, [2, 3], {"highway": "primary", "name": "胜辛路"}),
            (52, [2, 4], {"highway": "primary", "name": "叶城路"})]
    osm = write_osm(tmp_path / "names.osm", nodes, ways)
    zone_file = tmp_path / "zone.geojson"
    zone_file.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "name": "z"}, "geometry": shapely.geometry.mapping(box_zone(-50, -50, 650, 350).geometry)}]}), encoding="utf-8")
    for fmt in FORMATS:
        r = CliRunner().invoke(cli, ["stats", "--source", str(osm), "--zone", str(zone_file), "--explain",
                                     "named_streets", "--format", fmt])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["stats", "--source", str(osm), "--zone", str(zone_file), "--explain",
                                 "named_streets", "--format", "json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)["rows"]}
    assert rows["胜辛路"]["name_en"] == ["Shengxin Road"] and rows["叶城路"]["name_en"] is None
    assert rows["胜辛路"]["pieces"] == 2 and rows["胜辛路"]["clipped_km"] == pytest.approx(0.6, abs=1e-4)


@pytest.mark.shared
def test_explain_every_figure_every_format_on_the_subset(shared_data):
    from geo.zones import load_zone

    import geopandas as gpd

    jd = load_zone("jiading")
    x0, y0, x1, y1 = jd.geometry.bounds
    halves = gpd.GeoDataFrame({"name": ["south", "north"]}, crs=4326, geometry=[
        shapely.box(x0, y0, x1, (y0 + y1) / 2).intersection(jd.geometry),
        shapely.box(x0, (y0 + y1) / 2, x1, y1).intersection(jd.geometry)])
    st, _ = stats_of(shared_data / "jiading_osm_signalized.osm", Zone("jiading", jd.geometry, subzones=halves))
    assert _sweep(st) > 100


def test_explain_every_figure_every_format_on_helsinki(helsinki_pbf):
    net = load_network(helsinki_pbf, road_filter=parse_filter("drive"))
    st = road_stats(net.roads, Zone("helsinki", shapely.box(*net.roads.total_bounds).buffer(-0.002)))
    assert _sweep(st) > 20


@pytest.mark.shared
def test_cli_explain_each_kind_of_figure_in_every_format(shared_data, tmp_path):
    """Through the command line, one figure of each kind, from a cache pulled once."""
    osm = shared_data / "jiading_osm_signalized.osm"
    cache = tmp_path / "cache"
    r = CliRunner().invoke(cli, ["pull", "--source", str(osm), "--zone", "jiading", "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    kinds = ["zone_area_km2", "pieces", "carriageway_km", "centerline_km", "dual_carriageway_km", "expressway_km",
             "named_streets", "unnamed_km", "intersections", "intersections_osmnx", "junction_nodes",
             "carriageway_density", "intersection_density", "class_km:primary", "class_centerline_km:trunk",
             "ref_km:G312", "ref_centerline_km:G312"]
    for fig in kinds:
        for fmt in FORMATS:
            r = CliRunner().invoke(cli, ["stats", "--source", "cache", "--zone", "jiading", "--cache-dir", str(cache),
                                         "--explain", fig, "--format", fmt])
            assert r.exit_code == 0, (fig, fmt, r.output)


# ---------------------------------------------------------------- 5. readers lose nothing silently

def _to_pbf(src: Path, dst: Path) -> Path:
    import osmium

    with osmium.SimpleWriter(str(dst), overwrite=True) as w:
        for o in osmium.FileProcessor(str(src)):
            if o.is_node():
                w.add_node(o)
            elif o.is_way():
                w.add_way(o)
    return dst


def test_negative_node_ids_load_from_pbf(tmp_path):
    """A JOSM-style file: every node id negative. 300 m + 400 m, by hand, from XML and from PBF."""
    nodes = {-1: (0, 0), -2: (300, 0), -3: (300, 400), 7: (600, 400)}
    ways = [(-10, [-1, -2, -3], {"highway": "residential", "name": "A"}),
            (11, [-3, 7], {"highway": "residential", "name": "B"})]
    osm = write_osm(tmp_path / "neg.osm", nodes, ways)
    pbf = _to_pbf(osm, tmp_path / "neg.osm.pbf")
    for src in (osm, pbf):
        net = load_network(src, road_filter=parse_filter("drive"))
        lengths = dict(zip(net.roads["name"], net.roads["length_m"]))
        assert lengths == pytest.approx({"A": 700.0, "B": 300.0}, abs=ABS_M)
        assert not net.provenance.notes  # nothing missing


@pytest.mark.shared
def test_the_shared_subset_as_pbf_equals_the_xml(shared_data, tmp_path):
    """The subset (negative ids for most nodes) re-encoded as PBF: 192.4 km in the zone's pieces, as the XML."""
    osm = shared_data / "jiading_osm_signalized.osm"
    pbf = _to_pbf(osm, tmp_path / "subset.osm.pbf")
    from geo.zones import load_zone

    zone = load_zone("jiading")
    a, b = load_network(osm, zone=zone), load_network(pbf, zone=zone)
    assert a.roads["length_m"].sum() / 1000 == pytest.approx(192.383, abs=5e-4)
    assert b.roads["length_m"].sum() / 1000 == pytest.approx(a.roads["length_m"].sum() / 1000, abs=1e-6)
    key = lambda r: sorted(zip(r["u"], r["v"], r["osm_way_ids"].map(tuple)))  # noqa: E731
    assert key(a.roads) == key(b.roads)


def test_missing_node_refs_are_counted_and_warned(tmp_path):
    """Way 60 has 4 refs, 3 of them absent from the file; way 61 has 2, both present: 3 of 6 missing (50 %)."""
    nodes = {1: (0, 0), 2: (100, 0), 3: (200, 0)}
    ways = [(60, [1, 901, 902, 903], {"highway": "residential"}), (61, [2, 3], {"highway": "residential"})]
    osm = write_osm(tmp_path / "cut.osm", nodes, ways)
    pbf = _to_pbf(osm, tmp_path / "cut.osm.pbf")
    from geo import _osmxml, _pbf

    for reader, src in ((_osmxml.read_ways, osm), (_pbf.read_ways, pbf)):
        counts: dict = {}
        with pytest.warns(MissingNodesWarning, match=r"3 of 6 way node refs \(50.0 %\)"):
            ways_read, _ = reader(src, counts=counts)
        assert counts == {"refs": 6, "missing": 3}
        assert [w.way_id for w in ways_read] == [61]  # way 60 keeps no run of two present nodes
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        net = load_network(osm, road_filter=parse_filter("drive"))
    assert any("3 of 6 way node refs" in n for n in net.provenance.notes)
    r = CliRunner().invoke(cli, ["roads", "--source", str(osm), "--zone", str(_zone_file(tmp_path))])
    assert r.exit_code == 0, r.output
    assert "icv: warning:" in r.stderr and "3 of 6 way node refs" in r.stderr


def test_a_few_missing_refs_do_not_warn(tmp_path):
    """1 of 11 refs missing (9.1 %) is an ordinary clipped extract: counted, not warned."""
    nodes = {i: (100 * i, 0) for i in range(1, 11)}
    osm = write_osm(tmp_path / "few.osm", nodes, [(70, [*range(1, 11), 999], {"highway": "residential"})])
    from geo import _osmxml

    counts: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingNodesWarning)
        _osmxml.read_ways(osm, counts=counts)
    assert counts == {"refs": 11, "missing": 1}


def _zone_file(tmp_path: Path) -> Path:
    f = tmp_path / "z.geojson"
    f.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "z"},
                 "geometry": shapely.geometry.mapping(box_zone(-500, -500, 1500, 500).geometry)}]}), encoding="utf-8")
    return f


# ---------------------------------------------------------------- 6. intersections as OSMnx counts them

def test_intersections_osmnx_by_hand(tmp_path):
    """Where icv and OSMnx differ, by hand.

    A T junction at node 2 (3 street ends): one icv intersection. Node 4 ends
    piece 2-4 and starts piece 4-5 (the class changes there): 2 street ends,
    no junction for icv, a node for OSMnx. Dead ends 1, 3, 5 are dropped by
    both. 2 and 4 are 100 m apart: two OSMnx clusters. icv 1, OSMnx 2.
    """
    nodes = {1: (0, 0), 2: (500, 0), 3: (1000, 0), 4: (500, 100), 5: (500, 600)}
    ways = [(80, [1, 2, 3], {"highway": "residential"}), (81, [2, 4], {"highway": "residential"}),
            (82, [4, 5], {"highway": "tertiary"})]
    osm = write_osm(tmp_path / "t.osm", nodes, ways)
    st, _ = stats_of(osm, box_zone(-100, -100, 1100, 700))
    assert st.value("intersections") == 1 and st.value("intersections_osmnx") == 2
    assert sorted(gstats.explain(st, "intersections_osmnx")["nodes"]) == [(2,), (4,)]


def _osmnx_count(roads, crs, tolerance=15.0) -> int:
    import networkx as nx
    import osmnx as ox

    from geo.roads import roads_to_graph

    G = roads_to_graph(roads)
    nx.set_node_attributes(G, ox.stats.count_streets_per_node(G), "street_count")  # as graph_from_* sets it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        C = ox.consolidate_intersections(ox.project_graph(G, to_crs=crs), tolerance=tolerance, rebuild_graph=True,
                                         dead_ends=False, reconnect_edges=False)
    return len(C)


def test_intersections_osmnx_equals_osmnx_on_helsinki(helsinki_pbf):
    """On Helsinki: osmnx.consolidate_intersections(tolerance=15) on the graph of the same pieces gives
    119 nodes, icv's intersections_osmnx the same; icv's own count is 80 (junctions of 3+ ends only)."""
    net = load_network(helsinki_pbf, road_filter=parse_filter("drive"))
    st = road_stats(net.roads)
    assert st.value("intersections_osmnx") == _osmnx_count(net.roads, st.crs) == 119
    assert st.value("intersections") == 80


@pytest.mark.shared
def test_intersections_osmnx_equals_osmnx_on_the_subset(shared_data):
    """The subset holds U-turn pairs between the same two nodes, which OSMnx counts as one street: 338."""
    net = load_network(shared_data / "jiading_osm_signalized.osm", road_filter=parse_filter("drive"))
    st = road_stats(net.roads)
    assert st.value("intersections_osmnx") == _osmnx_count(net.roads, st.crs) == 338
    assert st.value("intersections") == 303


# ---------------------------------------------------------------- the vectorized split (issue 13 item 1)

def test_grid_splits_into_the_hand_counted_pieces(tmp_path):
    """A 12 x 12 grid (tests/synthetic_osm.py) as PBF: 2·n·(n−1) = 264 one-segment pieces, (n−2)² = 100
    four-way and 4·(n−2) = 40 three-way junctions; the corners (a row end meeting a column end, two
    classes) stay two pieces. Its length: every segment once, summed here with pyproj."""
    from pyproj import Geod

    from synthetic_osm import write_grid_osm

    n, step = 12, 0.0001
    write_grid_osm(tmp_path / "g.osm", n, step=step)
    net = load_network(_to_pbf(tmp_path / "g.osm", tmp_path / "g.osm.pbf"), road_filter=parse_filter("drive"))
    roads = net.roads
    assert len(roads) == 2 * n * (n - 1)
    assert (roads["osm_way_ids"].map(len) == 1).all() and not roads["oneway"].any()
    ends = np.concatenate([roads["u"], roads["v"]])
    _, deg = np.unique(ends, return_counts=True)
    assert (deg == 4).sum() == (n - 2) ** 2 and (deg == 3).sum() == 4 * (n - 2) and (deg == 2).sum() == 4
    geod = Geod(ellps="WGS84")
    lon0, lat0 = 121.19, 31.29
    rows = sum(geod.line_length([lon0, lon0 + (n - 1) * step], [lat0 + i * step] * 2) for i in range(n))
    cols = n * geod.line_length([lon0, lon0], [lat0, lat0 + (n - 1) * step])
    assert roads["length_m"].sum() == pytest.approx(rows + cols, rel=1e-9)
