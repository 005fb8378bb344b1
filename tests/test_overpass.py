"""The Overpass source: OSMnx against a stand-in server on 127.0.0.1, and its server faults.

No test touches the network: the stand-in (tests/overpass_standin.py) serves real
OSM elements from ../shared/data/jiading_osm_signalized.osm (pulls of the zone,
compared with independent readings of the file) or a hand-made file (known
pieces, and the HTTP faults, which need no shared data).
"""

from __future__ import annotations

import io
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import osmnx as ox
import pandas as pd
import osmnx._http
import pytest
import requests
import shapely
from shapely.geometry import box

from click.testing import CliRunner

from cli import cli
from geo import _overpass, sources
from geo._overpass import OFFLINE_HINT, OverpassInfo, fetch_ways
from geo.errors import InputError, SourceUnavailableError
from geo.roads import RawWay, RoadFilter, build_roads_table, geodesic_length_m, parse_filter, split_runs
from geo.zones import Zone
from overpass_standin import OSM_BASE, SHARED_OSM, OverpassStandIn, load_osm, parse_query
from overpass_standin import overpass_standin  # noqa: F401  (the fixture)

OFFLINE_TEXT = ("--source FILE.osm|.osm.pbf|.geojson, or --source skeleton, "
                "or set ICV_OVERPASS_URL to a reachable Overpass server")
FAST = {"timeout": 5, "backoff": 0.05}

HAND_OSM = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6">
  <node id="1" lat="31.300" lon="121.250"/>
  <node id="2" lat="31.300" lon="121.251"/>
  <node id="3" lat="31.300" lon="121.252"/>
  <node id="4" lat="31.301" lon="121.251"/>
  <node id="5" lat="31.299" lon="121.251"/>
  <node id="6" lat="31.3005" lon="121.2525"/>
  <node id="7" lat="31.300" lon="121.253"/>
  <node id="8" lat="31.2995" lon="121.2525"/>
  <node id="9" lat="31.302" lon="121.250"/>
  <node id="10" lat="31.302" lon="121.251"/>
  <node id="11" lat="31.303" lon="121.251"/>
  <node id="12" lat="31.302" lon="121.252"/>
  <node id="13" lat="31.400" lon="121.400"/>
  <node id="14" lat="31.401" lon="121.400"/>
  <way id="100"><nd ref="1"/><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="primary"/><tag k="oneway" v="-1"/><tag k="name" v="Boyuan Road"/>
    <tag k="name:zh" v="博园路"/></way>
  <way id="101"><nd ref="2"/><nd ref="4"/><tag k="highway" v="residential"/></way>
  <way id="102"><nd ref="2"/><nd ref="5"/><tag k="highway" v="residential"/><tag k="access" v="private"/></way>
  <way id="103"><nd ref="3"/><nd ref="6"/><nd ref="7"/><nd ref="8"/><nd ref="3"/>
    <tag k="highway" v="tertiary"/><tag k="junction" v="roundabout"/></way>
  <way id="104"><nd ref="9"/><nd ref="10"/><nd ref="11"/><nd ref="9"/>
    <tag k="highway" v="primary"/><tag k="area" v="yes"/></way>
  <way id="105"><nd ref="4"/><nd ref="12"/><tag k="highway" v="footway"/></way>
  <way id="106"><nd ref="13"/><nd ref="14"/><tag k="highway" v="secondary"/></way>
</osm>
"""
#: the polygon around the hand-made ways (way 106 lies far outside)
AREA = box(121.249, 31.298, 121.254, 31.304)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests go straight to 127.0.0.1 (and never to a proxy), whatever the environment says."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def osm_file(shared_data: Path) -> Path:
    return shared_data / SHARED_OSM


@pytest.fixture(scope="module")
def hand_osm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("osm") / "hand.osm"
    path.write_text(HAND_OSM, encoding="utf-8")
    return path


@pytest.fixture()
def server(hand_osm: Path) -> Iterator[OverpassStandIn]:
    """The stand-in serving the hand-made ways: for HTTP behaviour, no shared data needed."""
    with OverpassStandIn(hand_osm) as s:
        yield s


@pytest.fixture(scope="module")
def jiading(shared_data: Path) -> Zone:
    poly = gpd.read_file(shared_data / "jiading_boundary_wgs84_amap.geojson").to_crs(4326).union_all()
    return Zone("jiading", poly)


@pytest.fixture(scope="module")
def clean(hand_osm: Path) -> list[RawWay]:
    """AREA pulled from a server without faults."""
    with OverpassStandIn(hand_osm) as s:
        ways, _ = fetch_ways(AREA, parse_filter("drive"), url=s.url, **FAST)
    assert sorted(w.way_id for w in ways) == [100, 101, 103]
    return ways


def ordered(ways: list[RawWay]) -> list[RawWay]:
    return sorted(ways, key=lambda w: (w.way_id, w.node_ids))


# --- independent expectations ------------------------------------------------------------------

def read_xml(path: Path, road_filter: RoadFilter) -> tuple[dict[int, tuple[float, float]], list[tuple]]:
    """Nodes and filtered ways of an OSM XML file, read with plain xml.etree."""
    root = ET.parse(path).getroot()
    loc = {int(n.get("id")): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    ways = []
    for w in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in w.iter("tag")}
        if road_filter.accepts(tags):
            ways.append((int(w.get("id")), tags, [int(nd.get("ref")) for nd in w.iter("nd")]))
    return loc, ways


def expected_truncated(path: Path, polygon: shapely.Geometry, road_filter: RoadFilter) -> gpd.GeoDataFrame:
    """The roads table of OSMnx's truncate_by_edge rule, computed without OSMnx or HTTP.

    A node stays if it lies in the polygon (boundary included) or is next to such
    a node along a road way; each way keeps its runs of consecutive kept nodes.
    """
    loc, ways = read_xml(path, road_filter)
    ids = np.array(list(loc))
    xy = np.array([loc[i] for i in ids])
    inside = set(ids[shapely.intersects_xy(polygon, xy[:, 0], xy[:, 1])].tolist())
    keep = set(inside)
    for _, _, refs in ways:
        for a, b in zip(refs, refs[1:]):
            if a in inside:
                keep.add(b)
            if b in inside:
                keep.add(a)
    kept_loc = {n: loc[n] for n in keep}
    raws = [r for wid, tags, refs in ways for r in split_runs(wid, tags, refs, kept_loc)]
    return build_roads_table(raws, road_filter)


def canonical(roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Two-way pieces turned to run from the lower node id, then sorted.

    build_roads_table orients a merged two-way piece by the order its ways
    arrive in, which differs between sources; one-way pieces keep travel order.
    """
    df = roads.copy()
    flip = (~df["oneway"]) & (df["u"] > df["v"])
    df.loc[flip, ["u", "v"]] = df.loc[flip, ["v", "u"]].to_numpy()
    df.loc[flip, "osm_way_ids"] = df.loc[flip, "osm_way_ids"].map(lambda ids: list(reversed(ids)))
    geoms = df.geometry.values.copy()
    geoms[flip.to_numpy()] = shapely.reverse(geoms[flip.to_numpy()])
    df = df.set_geometry(gpd.GeoSeries(geoms, index=df.index, crs=df.crs))
    df["_w"] = df["osm_way_ids"].map(lambda ids: ids[0])
    return df.sort_values(["u", "v", "_w"], kind="stable").drop(columns="_w").reset_index(drop=True)


def assert_same_roads(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> None:
    assert len(a) == len(b)
    cols = ["u", "v", "highway", "name", "name_en", "name_zh", "ref", "oneway", "lanes", "maxspeed", "access"]
    left, right = canonical(a), canonical(b)
    for c in cols:
        assert left[c].tolist() == right[c].tolist(), c
    assert left["osm_way_ids"].map(tuple).tolist() == right["osm_way_ids"].map(tuple).tolist()
    assert shapely.equals_exact(left.geometry.values, right.geometry.values, tolerance=0).all()
    np.testing.assert_allclose(left["length_m"], right["length_m"], rtol=1e-9)


# --- the stand-in itself ------------------------------------------------------------------------

@pytest.mark.parametrize("rf", [parse_filter("drive"), parse_filter("arterial"),
                                parse_filter("all-roads", include_private=True),
                                parse_filter(highway="primary,trunk")], ids=lambda f: f.label)
def test_standin_reads_the_filter_as_road_filter_does(osm_file: Path, rf: RoadFilter) -> None:
    data = load_osm(osm_file)
    ql = f"[out:json][timeout:5];(way{rf.overpass_filter()}(poly:'0 0 0 1 1 1');>;);out;"
    (wq,) = parse_query(ql).ways
    by_standin = [all(f.passes(w["tags"]) for f in wq.filters) for w in data.ways]
    # the query carries classes and area; access is decided after download by rf.accepts itself
    by_filter = [RoadFilter(rf.name, rf.highway, include_private=True).accepts(w["tags"]) for w in data.ways]
    assert by_standin == by_filter
    exact = [rf.accepts(w["tags"]) for w in data.ways]
    assert all(s for s, a in zip(by_standin, exact) if a)
    assert 0 < sum(exact) < len(data.ways) or rf.label == "all-roads+private"


def test_standin_get_and_post_give_the_same_answer(server: OverpassStandIn) -> None:
    coords = " ".join(f"{y} {x}" for x, y in AREA.exterior.coords)
    ql = f'[out:json][timeout:5];(way["highway"="primary"](poly:"{coords}");>;);out;'
    got = requests.get(server.url + "/interpreter", params={"data": ql}, timeout=5).json()
    posted = requests.post(server.url + "/interpreter", data={"data": ql}, timeout=5).json()
    assert got == posted
    assert got["osm3s"]["timestamp_osm_base"] == OSM_BASE
    ways = [e for e in got["elements"] if e["type"] == "way"]
    assert ways and all(w["tags"]["highway"] == "primary" for w in ways)
    node_ids = {e["id"] for e in got["elements"] if e["type"] == "node"}
    assert node_ids == {n for w in ways for n in w["nodes"]}  # ">;" : every node of every way


# --- end to end ---------------------------------------------------------------------------------

def test_pull_of_the_zone_matches_an_independent_reading(overpass_standin: OverpassStandIn, osm_file: Path,
                                                         jiading: Zone) -> None:
    server = overpass_standin
    rf = parse_filter("drive")
    ways, info = fetch_ways(jiading.geometry, rf, url=server.url, timeout=5)
    got = build_roads_table(ways, rf)
    assert_same_roads(got, expected_truncated(osm_file, jiading.geometry, rf))
    # the shared data README measures about 190 km inside the outline
    assert 185_000 < got["length_m"].sum() < 195_000
    assert info == OverpassInfo(url=server.url, osm_base=OSM_BASE, from_cache=False)
    (req,) = server.interpreter_requests
    assert req.method == "POST"
    assert req.query.startswith("[out:json][timeout:5];") and "[maxsize:" not in req.query


def test_pull_agrees_with_the_file_source(overpass_standin: OverpassStandIn, osm_file: Path,
                                          jiading: Zone, tmp_path: Path) -> None:
    server = overpass_standin
    file_net = sources.load_network(osm_file, zone=jiading, cache_dir=tmp_path)
    over_net = sources.load_network("overpass", zone=jiading, overpass_url=server.url, timeout=5,
                                    cache_dir=tmp_path)
    assert over_net.provenance.osm_timestamp == OSM_BASE
    # inside the outline both hold the same roads, km for km
    poly = jiading.geometry
    a, b = (clip_km_by_class(net.roads, poly) for net in (file_net, over_net))
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9)
    assert a.sum() == pytest.approx(188.8, abs=0.1)  # the README's ~190 km inside the outline
    # with a margin the pull holds whole pieces: the very same table as the file
    rf = parse_filter("drive")
    ways, _ = fetch_ways(poly, rf, url=server.url, timeout=5, margin_m=2000)
    widened = sources.select_in_zone(build_roads_table(ways, rf), jiading)
    assert_same_roads(widened, file_net.roads)


def clip_km_by_class(roads: gpd.GeoDataFrame, poly: shapely.Geometry) -> pd.Series:
    """km of each highway class inside the polygon (plain shapely clip, geodesic length)."""
    km = geodesic_length_m(shapely.intersection(roads.geometry.values, poly)) / 1000.0
    return roads.assign(km=km).groupby("highway")["km"].sum().sort_index()


@pytest.mark.parametrize("private", [False, True])
def test_hand_made_ways_known_pieces(server: OverpassStandIn, hand_osm: Path, private: bool) -> None:
    """oneway=-1, a roundabout ring, private access, an area and a footway, by hand."""
    rf = parse_filter("drive", include_private=private)
    ways, info = fetch_ways(AREA, rf, url=server.url, **FAST)
    roads = build_roads_table(ways, rf)
    pieces = {(r.u, r.v, tuple(r.osm_way_ids), r.highway, r.oneway) for r in roads.itertuples()}
    # way 100 runs against its nodes (3 -> 2 -> 1) and is split at node 2 where 101 (and 102) meet
    expected = {(3, 2, (100,), "primary", True), (2, 1, (100,), "primary", True),
                (2, 4, (101,), "residential", False), (3, 3, (103,), "tertiary", True)}
    if private:
        expected.add((2, 5, (102,), "residential", False))
    assert pieces == expected
    first = roads[roads["u"] == 3].query("highway == 'primary'").iloc[0]
    assert list(first.geometry.coords) == [(121.252, 31.3), (121.251, 31.3)]
    assert (first["name"], first["name_zh"]) == ("Boyuan Road", "博园路")
    ring = roads[roads["highway"] == "tertiary"].iloc[0]
    assert [c for c in ring.geometry.coords] == [(121.252, 31.3), (121.2525, 31.3005), (121.253, 31.3),
                                                  (121.2525, 31.2995), (121.252, 31.3)]
    assert_same_roads(roads, expected_truncated(hand_osm, AREA, rf))
    assert info.osm_base == OSM_BASE


def test_no_road_in_the_polygon_gives_no_ways(server: OverpassStandIn) -> None:
    ways, info = fetch_ways(box(100.0, 10.0, 100.01, 10.01), parse_filter("drive"), url=server.url, **FAST)
    assert ways == [] and info.osm_base == OSM_BASE and server.interpreter_count == 1


def test_memory_and_timeout_go_into_the_query(server: OverpassStandIn) -> None:
    fetch_ways(AREA, parse_filter("arterial"), url=server.url, timeout=7, memory=123_456_789)
    (req,) = server.interpreter_requests
    assert req.query.startswith("[out:json][timeout:7][maxsize:123456789];")


# --- server faults ------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["429", "502", "503", "504", "remark", "remark-oom", "truncated", "cut",
                                   "chunked-cut"])
def test_fault_then_success_is_retried(server: OverpassStandIn, clean: list[RawWay], fault: str,
                                       tmp_path: Path) -> None:
    server.retry_after = "0"
    server.script = [fault, "ok"]
    ways, info = fetch_ways(AREA, parse_filter("drive"), url=server.url, cache_dir=tmp_path, **FAST)
    assert [r.behaviour for r in server.interpreter_requests] == [fault, "ok"]
    assert ordered(ways) == ordered(clean)
    assert info.osm_base == OSM_BASE and not info.from_cache
    # OSMnx cached the good answer only
    (cached,) = (tmp_path / "overpass").glob("*.json")
    data = json.loads(cached.read_text(encoding="utf-8"))
    assert "remark" not in data and len(data["elements"]) > 0


def test_chunked_answer_reads_like_a_plain_one(overpass_standin: OverpassStandIn, jiading: Zone) -> None:
    """The real 400 kB answer, streamed in chunks as real servers do, read in many pieces."""
    server = overpass_standin
    plain, _ = fetch_ways(jiading.geometry, parse_filter("drive"), url=server.url, **FAST)
    server.script = ["chunked"]
    chunked, _ = fetch_ways(jiading.geometry, parse_filter("drive"), url=server.url, **FAST)
    assert [r.behaviour for r in server.interpreter_requests] == ["ok", "chunked"]
    assert ordered(chunked) == ordered(plain) and len(plain) > 500


def test_retries_are_bounded(server: OverpassStandIn) -> None:
    server.script = ["503"] * 10
    with pytest.raises(SourceUnavailableError) as e:
        fetch_ways(AREA, parse_filter("drive"), url=server.url, max_retries=2, **FAST)
    assert server.interpreter_count == 3
    msg = e.value.message
    assert server.url in msg and "HTTP 503" in msg and "3 tries" in msg and OFFLINE_TEXT in msg
    assert "\n" not in msg


def test_runtime_error_remark_is_never_cached(hand_osm: Path, tmp_path: Path) -> None:
    with OverpassStandIn(hand_osm) as s:
        s.script = ["remark", "remark"]
        with pytest.raises(SourceUnavailableError, match="Query timed out") as e:
            fetch_ways(AREA, parse_filter("drive"), url=s.url, cache_dir=tmp_path, max_retries=1, **FAST)
        assert "--timeout (now 5 s)" in e.value.message
        assert s.interpreter_count == 2
        url = s.url
    assert not list(tmp_path.rglob("*.json"))
    # with the server gone a later run fails again instead of reading a bad answer
    with pytest.raises(SourceUnavailableError, match="connection refused"):
        fetch_ways(AREA, parse_filter("drive"), url=url, cache_dir=tmp_path, **FAST)


def test_out_of_memory_remark_suggests_more_memory(server: OverpassStandIn) -> None:
    server.script = ["remark-oom"] * 2
    with pytest.raises(SourceUnavailableError, match="out of memory") as e:
        fetch_ways(AREA, parse_filter("drive"), url=server.url, max_retries=1, **FAST)
    assert "--memory" in e.value.message


def test_bad_request_is_not_retried(server: OverpassStandIn) -> None:
    server.script = ["400"]
    with pytest.raises(SourceUnavailableError, match="HTTP 400") as e:
        fetch_ways(AREA, parse_filter("drive"), url=server.url, **FAST)
    assert "parse error" in e.value.message and server.interpreter_count == 1


def test_web_page_instead_of_json_is_not_retried(server: OverpassStandIn) -> None:
    server.script = ["html"] * 5
    with pytest.raises(SourceUnavailableError, match="a web page, not Overpass JSON: Welcome to nginx!") as e:
        fetch_ways(AREA, parse_filter("drive"), url=server.url, **FAST)
    assert "ending in /api" in e.value.message and server.interpreter_count == 1


def test_slow_body_ends_in_a_clear_error(server: OverpassStandIn) -> None:
    server.script = ["slow"] * 5  # one byte per 50 ms: the body would take minutes
    with pytest.raises(SourceUnavailableError) as e:
        fetch_ways(AREA, parse_filter("drive"), url=server.url, timeout=1, backoff=0.05)
    msg = e.value.message
    assert "did not finish sending its answer within 1 s" in msg and server.url in msg and OFFLINE_TEXT in msg
    assert server.interpreter_count == 1  # a time-out is not retried


def test_hanging_server_ends_in_a_clear_error(server: OverpassStandIn) -> None:
    server.script = ["hang"] * 5  # silent for 60 s unless the client gives up first
    with pytest.raises(SourceUnavailableError) as e:
        fetch_ways(AREA, parse_filter("drive"), url=server.url, timeout=1, backoff=0.05)
    msg = e.value.message
    assert "no answer within 1 s" in msg and server.url in msg and OFFLINE_TEXT in msg
    assert server.interpreter_count == 1


def test_connection_refused_names_the_offline_alternatives(hand_osm: Path) -> None:
    with OverpassStandIn(hand_osm) as s:
        url = s.url
    with pytest.raises(SourceUnavailableError) as e:
        fetch_ways(AREA, parse_filter("drive"), url=url, **FAST)
    assert e.value.message == (f"{url}: cannot use the Overpass server: connection refused. "
                               f"{OFFLINE_HINT}.")
    assert e.value.exit_code == 3


def test_unknown_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # no DNS query leaves the machine: every resolver the request path uses fails here
    def no_such_host(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "gethostbyname", no_such_host)
    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    monkeypatch.setattr(osmnx._http, "_original_getaddrinfo", no_such_host)
    with pytest.raises(SourceUnavailableError) as e:
        fetch_ways(AREA, parse_filter("drive"), url="http://overpass.example.invalid/api", **FAST)
    assert "host name 'overpass.example.invalid' not found" in e.value.message
    assert OFFLINE_TEXT in e.value.message


def test_retry_after_is_honoured(server: OverpassStandIn) -> None:
    server.retry_after = "1"
    server.script = ["429", "ok"]
    fetch_ways(AREA, parse_filter("drive"), url=server.url, **FAST)
    first, second = server.interpreter_requests
    assert second.at - first.at >= 0.9  # backoff alone would wait 0.05 s


def test_429_without_retry_after_waits_for_the_announced_slot(server: OverpassStandIn) -> None:
    server.slot_wait_s = 1
    server.script = ["429-status", "ok"]
    fetch_ways(AREA, parse_filter("drive"), url=server.url, **FAST)
    first, second = server.interpreter_requests
    assert [r.path for r in server.requests] == ["/api/interpreter", "/api/status", "/api/interpreter"]
    assert second.at - first.at >= 0.9


def test_retry_after_http_date_and_cap() -> None:
    assert _overpass._retry_after("3") == 3.0
    assert _overpass._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _overpass._retry_after("soon") is None
    waits: list[float] = []
    hook = _overpass._RetryHook("http://x/api", timeout=5, max_retries=1, backoff=1.0, sleep=waits.append)
    fault = _overpass._Fault("HTTP 429", retry=True, wait_s=3600.0)
    hook._check = lambda response: fault  # type: ignore[method-assign]
    response = requests.Response()
    response.status_code = 429
    response.raw = io.BytesIO(b"")
    response.request = requests.Request("POST", "http://x/api/interpreter", data={"data": "q"}).prepare()
    hook.session.send = lambda *a, **k: response  # type: ignore[method-assign]
    with pytest.raises(SourceUnavailableError, match="2 tries"):
        hook(response, timeout=5)
    assert waits == [_overpass.MAX_WAIT_S]


# --- cache --------------------------------------------------------------------------------------

def test_second_pull_with_the_server_down_comes_from_the_cache(hand_osm: Path, tmp_path: Path) -> None:
    rf = parse_filter("drive")
    with OverpassStandIn(hand_osm) as s:
        ways, info = fetch_ways(AREA, rf, url=s.url, cache_dir=tmp_path, **FAST)
        url = s.url
    assert not info.from_cache
    assert [p.parent for p in tmp_path.rglob("*.json")] == [tmp_path / "overpass"]
    again, info2 = fetch_ways(AREA, rf, url=url, cache_dir=tmp_path, **FAST)
    assert info2 == OverpassInfo(url=url, osm_base=OSM_BASE, from_cache=True)
    assert ordered(again) == ordered(ways)


def test_unreadable_cache_file_is_fetched_again(server: OverpassStandIn, tmp_path: Path) -> None:
    rf = parse_filter("drive")
    ways, _ = fetch_ways(AREA, rf, url=server.url, cache_dir=tmp_path, **FAST)
    (cached,) = (tmp_path / "overpass").glob("*.json")
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 2])  # as a crash mid-write would leave it
    again, info = fetch_ways(AREA, rf, url=server.url, cache_dir=tmp_path, **FAST)
    assert not info.from_cache and server.interpreter_count == 2
    assert ordered(again) == ordered(ways)
    assert len(json.loads(cached.read_text(encoding="utf-8"))["elements"]) > 0


def test_no_cache_dir_writes_no_cache(server: OverpassStandIn, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fetch_ways(AREA, parse_filter("drive"), url=server.url, **FAST)
    fetch_ways(AREA, parse_filter("drive"), url=server.url, **FAST)
    assert server.interpreter_count == 2 and not list(tmp_path.rglob("*"))


# --- settings, URL, progress --------------------------------------------------------------------

def test_osmnx_settings_are_restored(server: OverpassStandIn, tmp_path: Path) -> None:
    names = ["overpass_url", "requests_timeout", "overpass_memory", "cache_folder", "use_cache",
             "useful_tags_way", "overpass_rate_limit", "requests_kwargs", "doh_url_template"]
    before = {n: getattr(ox.settings, n) for n in names}
    getaddrinfo = socket.getaddrinfo
    fetch_ways(AREA, parse_filter("drive"), url=server.url, cache_dir=tmp_path, memory=10**9, **FAST)
    server.script = ["503"] * 3
    with pytest.raises(SourceUnavailableError):
        fetch_ways(AREA, parse_filter("arterial"), url=server.url, max_retries=1, **FAST)
    assert {n: getattr(ox.settings, n) for n in names} == before
    assert socket.getaddrinfo is getaddrinfo


def test_url_from_environment_and_interpreter_suffix(server: OverpassStandIn,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICV_OVERPASS_URL", server.url + "/interpreter/")
    _, info = fetch_ways(AREA, parse_filter("arterial"), **FAST)
    assert info.url == server.url and server.interpreter_count == 1
    with pytest.raises(InputError, match="not an http"):
        fetch_ways(AREA, parse_filter("arterial"), url="ftp://example.org/api")


def test_progress_goes_to_stderr(server: OverpassStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    server.retry_after = "0"
    server.script = ["503", "ok"]
    fetch_ways(AREA, parse_filter("drive"), url=server.url, progress=True, **FAST)
    out, err = capsys.readouterr()
    assert out == ""
    assert f"asking {server.url}" in err and "HTTP 503" in err and "try 2 of 5" in err


# --- through the command line -------------------------------------------------------------------

def test_cli_pull_through_overpass_then_read_the_cache(overpass_standin: OverpassStandIn, tmp_path: Path) -> None:
    server = overpass_standin
    runner = CliRunner()
    args = ["--overpass-url", server.url, "--cache-dir", str(tmp_path), "--timeout", "5"]
    r = runner.invoke(cli, ["pull", "--source", "overpass", *args])
    assert r.exit_code == 0, r.output
    assert server.interpreter_count == 1 and len(list((tmp_path / "overpass").glob("*.json"))) == 1
    r = runner.invoke(cli, ["roads", "--source", "cache", "--cache-dir", str(tmp_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert OSM_BASE in r.output and server.url in r.output


def test_cli_unreachable_server_is_one_line_and_exit_3(hand_osm: Path, tmp_path: Path) -> None:
    with OverpassStandIn(hand_osm) as s:
        url = s.url
    r = CliRunner().invoke(cli, ["roads", "--source", "overpass", "--overpass-url", url,
                                 "--cache-dir", str(tmp_path), "--timeout", "5"])
    assert r.exit_code == 3
    errors = [line for line in r.output.splitlines() if line.startswith("icv: error:")]
    assert errors == [f"icv: error: {url}: cannot use the Overpass server: connection refused. {OFFLINE_HINT}."]
