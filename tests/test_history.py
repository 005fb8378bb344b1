"""OSM as it was: --as-of pulls (Overpass attic), OSM history files, `icv history`, the charts.

Known answer: a small history file written here. Ways north-south, each placed with pyproj's
Geod.fwd so its geodesic length is exact (1000, 2000, 3000, 500 -> 800, 700 m); they are added,
retagged, moved and deleted at known dates:

==========  ==========================================================================
2014-01-01  way 1 primary 博园路 1000 m
2015-06-01  way 2 residential Test Street 2000 m
2016-01-01  way 3 secondary Deleted Road 3000 m
2018-01-01  way 4 tertiary (no name) 500 m
2019-01-01  way 1 retagged primary -> trunk
2020-01-01  way 2 retagged residential -> footway (out of the drive filter)
2021-01-01  way 4's last node moved: 800 m
2022-05-01  way 3 deleted
2024-03-10  way 5 tertiary Later Road 700 m (after the report's 2024-02-29)
==========  ==========================================================================

Stats measure in UTM 51N, whose scale factor here is 0.99994: 1 km geodesic is 0.99994 km, so
the expected km are compared within 0.5 m per km.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import geopandas as gpd
import pyproj
import pytest
from shapely.geometry import box

from cli import cli
from geo import history as hist
from geo import sources
from geo.errors import InputError, SourceUnavailableError
from geo.roads import parse_filter
from ohsome_standin import OhsomeStandIn
from overpass_standin import OverpassStandIn

GEOD = pyproj.Geod(ellps="WGS84")
LAT0, LON0 = 31.30, 121.25
ZONE_BOX = (121.24, 31.29, 121.31, 31.34)
T0 = "2013-01-01T00:00:00Z"
#: The stand-in Overpass server's own data timestamp: unlike any as-of date, so provenance tells them apart
SERVER_BASE = "2026-11-30T12:00:00Z"

#: (date, drive km by class, named streets) at 00:00 UTC of each date, from the table above
EXPECTED = [
    (date(2014, 6, 30), {"primary": 1.0}, 1),
    (date(2017, 1, 2), {"primary": 1.0, "residential": 2.0, "secondary": 3.0}, 3),
    (date(2018, 6, 30), {"primary": 1.0, "residential": 2.0, "secondary": 3.0, "tertiary": 0.5}, 3),
    (date(2019, 6, 30), {"trunk": 1.0, "residential": 2.0, "secondary": 3.0, "tertiary": 0.5}, 3),
    (date(2020, 6, 30), {"trunk": 1.0, "secondary": 3.0, "tertiary": 0.5}, 2),
    (date(2021, 6, 30), {"trunk": 1.0, "secondary": 3.0, "tertiary": 0.8}, 2),
    (date(2022, 6, 30), {"trunk": 1.0, "tertiary": 0.8}, 1),
    (date(2024, 2, 29), {"trunk": 1.0, "tertiary": 0.8}, 1),
    (date(2024, 6, 30), {"trunk": 1.0, "tertiary": 1.5}, 2),
]


def _north(lon: float, lat: float, metres: float) -> tuple[float, float]:
    lon2, lat2, _ = GEOD.fwd(lon, lat, 0.0, metres)
    return lon2, lat2


def _history_elements() -> list[str]:
    """The history as OSM XML elements (nodes first, then ways; by id, then version)."""
    nodes: list[str] = []
    ways: list[str] = []

    def node(nid: int, v: int, ts: str, xy: tuple[float, float] | None) -> None:
        if xy is None:
            nodes.append(f'<node id="{nid}" version="{v}" timestamp="{ts}" visible="false"/>')
        else:
            nodes.append(f'<node id="{nid}" version="{v}" timestamp="{ts}" visible="true" '
                         f'lat="{xy[1]:.9f}" lon="{xy[0]:.9f}"/>')

    def way(wid: int, v: int, ts: str, refs: list[int], tags: dict[str, str] | None) -> None:
        if tags is None:
            ways.append(f'<way id="{wid}" version="{v}" timestamp="{ts}" visible="false"/>')
            return
        body = "".join(f'<nd ref="{r}"/>' for r in refs) + "".join(f'<tag k="{k}" v="{val}"/>' for k, val in tags.items())
        ways.append(f'<way id="{wid}" version="{v}" timestamp="{ts}" visible="true">{body}</way>')

    # way k runs north from (LON0 + 0.01 k, LAT0); nodes 10k+1 (start), 10k+2 (end)
    lengths = {1: 1000, 2: 2000, 3: 3000, 4: 500, 5: 700, 6: 400}
    for k, m in lengths.items():
        a = (LON0 + 0.01 * k, LAT0)
        ts = "2024-03-10T00:00:00Z" if k == 5 else T0
        node(10 * k + 1, 1, ts, a)
        node(10 * k + 2, 1, ts, _north(*a, m))
        if k == 4:  # moved on 2021-01-01: the way becomes 800 m
            node(10 * k + 2, 2, "2021-01-01T00:00:00Z", _north(*a, 800))
    nodes.sort(key=lambda s: int(s.split('"')[1]))
    r = lambda k: [10 * k + 1, 10 * k + 2]  # noqa: E731
    way(1, 1, "2014-01-01T00:00:00Z", r(1), {"highway": "primary", "name": "博园路"})
    way(1, 2, "2019-01-01T00:00:00Z", r(1), {"highway": "trunk", "name": "博园路"})
    way(2, 1, "2015-06-01T00:00:00Z", r(2), {"highway": "residential", "name": "Test Street"})
    way(2, 2, "2020-01-01T00:00:00Z", r(2), {"highway": "footway", "name": "Test Street"})
    way(3, 1, "2016-01-01T00:00:00Z", r(3), {"highway": "secondary", "name": "Deleted Road"})
    way(3, 2, "2022-05-01T00:00:00Z", r(3), None)
    way(4, 1, "2018-01-01T00:00:00Z", r(4), {"highway": "tertiary"})
    way(5, 1, "2024-03-10T00:00:00Z", r(5), {"highway": "tertiary", "name": "Later Road"})
    way(6, 1, "2014-01-01T00:00:00Z", r(6), {"building": "yes"})
    return nodes + ways


def _write_xml(path: Path, elements: list[str]) -> Path:
    path.write_text("<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"icv tests\">\n"
                    + "\n".join(elements) + "\n</osm>\n", encoding="utf-8")
    return path


@pytest.fixture()
def osh(tmp_path: Path) -> Path:
    """The history as OSM history XML (.osh)."""
    return _write_xml(tmp_path / "history.osh", _history_elements())


@pytest.fixture()
def osh_pbf(osh: Path) -> Path:
    """The same history converted to .osh.pbf with pyosmium's writer (history flag in the header)."""
    import osmium

    out = osh.with_name("history.osh.pbf")
    header = osmium.io.Header()
    header.has_multiple_object_versions = True
    writer = osmium.SimpleWriter(str(out), header=header)
    try:
        for obj in osmium.FileProcessor(str(osh)):
            writer.add(obj)
    finally:
        writer.close()
    return out


@pytest.fixture()
def zone_geojson(tmp_path: Path) -> Path:
    f = tmp_path / "hzone.geojson"
    gpd.GeoDataFrame({"name": ["hzone"]}, geometry=[box(*ZONE_BOX)], crs=4326).to_file(f)
    return f


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ICV_OHSOME_URL", raising=False)
    monkeypatch.delenv("ICV_OVERPASS_URL", raising=False)


def _km_by_class(roads: gpd.GeoDataFrame) -> dict[str, float]:
    from geo.stats import road_stats

    zone = load_zone_box()
    st = road_stats(roads, zone, subzones={})
    return {n.split(":", 1)[1]: float(f.value) for n, f in st.figures_by_name.items()
            if n.startswith("class_km:") and f.value}


def load_zone_box():
    from geo.zones import Zone

    return Zone("hzone", box(*ZONE_BOX), None, {})


def _assert_classes(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want), (got, want)
    for c, km in want.items():
        assert got[c] == pytest.approx(km, abs=0.0005 * max(km, 1)), c


# ---------------------------------------------------------------- as-of dates

def test_parse_as_of_bounds() -> None:
    today = date(2026, 12, 1)
    a = hist.parse_as_of("2024-02", today=today)
    assert a.day == date(2024, 2, 29) and a.attic == "2024-02-29T23:59:59Z"
    assert hist.parse_as_of("2012-09-12", today=today).day == date(2012, 9, 12)
    with pytest.raises(InputError, match="before 2012-09-12"):
        hist.parse_as_of("2012-09-11", today=today)
    with pytest.raises(InputError, match="in the future"):
        hist.parse_as_of("2026-12-02", today=today)
    with pytest.raises(InputError, match="bad as-of date"):
        hist.parse_as_of("29.02.2024", today=today)


def test_parse_time_range() -> None:
    assert hist.parse_time_range("2012-01-01/2012-12-31/P3M") == [
        date(2012, 1, 1), date(2012, 4, 1), date(2012, 7, 1), date(2012, 10, 1)]
    assert hist.parse_time_range("2012-01-31/2012-04-30/P1M") == [
        date(2012, 1, 31), date(2012, 2, 29), date(2012, 3, 31), date(2012, 4, 30)]
    assert hist.parse_time_range("2020-01-01/2022-01-01/P1Y") == [date(2020, 1, 1), date(2021, 1, 1), date(2022, 1, 1)]
    for bad in ("2012-01-01/2011-01-01/P1M", "2012-01-01/2013-01-01/P", "2012-01-01/2013-01-01/P0M", "soon"):
        with pytest.raises(InputError):
            hist.parse_time_range(bad)


# ---------------------------------------------------------------- history files (item 2)

@pytest.mark.parametrize("kind", ["osh", "osh.pbf", "osh.gz", "osh.bz2"])
def test_history_file_as_of_known_km(kind: str, osh: Path, osh_pbf: Path) -> None:
    from geo import _osh
    from geo.roads import build_roads_table
    from geo.sources import select_in_zone

    path = {"osh": osh, "osh.pbf": osh_pbf}.get(kind)
    if kind in ("osh.gz", "osh.bz2"):
        import bz2

        path = osh.with_name(f"history.{kind}")
        with open(osh, "rb") as a, (gzip.open if kind == "osh.gz" else bz2.open)(path, "wb") as b:
            shutil.copyfileobj(a, b)
    h = _osh.read_history(path)
    assert sorted(h.ways) == [1, 2, 3, 4, 5]  # the building is never a highway
    rf = parse_filter("drive")
    from datetime import datetime, time, timezone

    for day, want, _ in EXPECTED:
        ways = h.ways_as_of(datetime.combine(day, time(0), tzinfo=timezone.utc))
        roads = select_in_zone(build_roads_table(ways, rf), load_zone_box())
        _assert_classes(_km_by_class(roads), want)


def test_load_network_as_of_history_file(osh_pbf: Path) -> None:
    net = sources.load_network(osh_pbf, zone=load_zone_box(), as_of="2024-02-29")
    _assert_classes(_km_by_class(net.roads), {"trunk": 1.0, "tertiary": 0.8})
    assert net.provenance.osm_timestamp == "2024-02-29T23:59:59Z"
    assert net.provenance.source_kind == "osm-history"
    assert sorted(set(w for ids in net.roads["osm_way_ids"] for w in ids)) == [1, 4]
    # without a date: the newest state (way 5 added 2024-03-10)
    now = sources.load_network(osh_pbf, zone=load_zone_box())
    _assert_classes(_km_by_class(now.roads), {"trunk": 1.0, "tertiary": 1.5})
    assert now.provenance.osm_timestamp == "2024-03-10T00:00:00Z"


def test_cli_pull_history_file_as_of(runner, osh_pbf: Path, zone_geojson: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(osh_pbf), "--as-of", "2024-02-29", "--zone", str(zone_geojson),
                            "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output + r.stderr
    assert "asof-2024-02-29" in r.output
    side = json.loads(next(cache.glob("*asof-2024-02-29*.json")).read_text())
    assert side["provenance"]["osm_timestamp"] == "2024-02-29T23:59:59Z"
    # the dated entry is what a report as of that date reads from the cache
    out = tmp_path / "rep"
    r = runner.invoke(cli, ["report", "--source", "cache", "--as-of", "2024-02-29", "--zone", str(zone_geojson),
                            "--cache-dir", str(cache), "--no-maps", "--out-dir", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output + r.stderr
    md = (out / "report.md").read_text()
    assert "dates compared: the latest reported figures at or before 2024-02-29" in md
    assert "with OSM as of 2024-02-29" in md
    doc = json.loads(r.stdout)
    assert "2024-02-29T23:59:59Z" in doc["meta"]["network"]
    # another date with no dated entry: the current cache, a warning, and the report says which network it used
    r = runner.invoke(cli, ["pull", "--source", str(osh_pbf), "--zone", str(zone_geojson), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(cli, ["report", "--source", "cache", "--as-of", "2023-06", "--zone", str(zone_geojson),
                            "--cache-dir", str(cache), "--no-maps", "--out-dir", str(out)])
    assert r.exit_code == 0, r.stderr
    assert "icv: warning: no network pulled as of 2023-06 in the cache" in r.stderr
    assert "with OSM as it is in the source (data timestamp 2024-03-10T00:00:00Z)" in (out / "report.md").read_text()


def test_history_file_without_history(runner, tmp_path: Path, zone_geojson: Path) -> None:
    plain = _write_xml(tmp_path / "plain.osh", [
        f'<node id="1" version="1" timestamp="{T0}" lat="31.3" lon="121.25"/>',
        f'<node id="2" version="1" timestamp="{T0}" lat="31.31" lon="121.25"/>',
        f'<way id="1" version="1" timestamp="{T0}"><nd ref="1"/><nd ref="2"/><tag k="highway" v="primary"/></way>'])
    out = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(plain), "--as-of", "2024-02-29", "--zone", str(zone_geojson),
                            "--cache-dir", str(out)])
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert line.startswith("icv: error: ") and "\n" not in line
    assert "not an OSM history file" in line
    assert not out.exists() or not list(out.glob("*.parquet"))


@pytest.mark.parametrize("case, message", [
    ("empty", "the file is empty (0 bytes)"),
    ("truncated", "cannot read the OSM history file (XML parsing error"),
    ("no timestamps", "has no timestamp, so its history cannot be dated"),
])
def test_bad_history_files_one_line(runner, tmp_path: Path, zone_geojson: Path, osh: Path, case: str,
                                    message: str) -> None:
    bad = tmp_path / f"{case.replace(' ', '_')}.osh"
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "truncated":
        bad.write_bytes(osh.read_bytes()[:400])
    else:
        _write_xml(bad, ['<node id="1" version="1" lat="31.3" lon="121.25"/>',
                         '<node id="2" version="1" lat="31.31" lon="121.25"/>',
                         '<way id="1" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="primary"/></way>'])
    for args in (["pull", "--as-of", "2024-02-29", "--cache-dir", str(tmp_path / "c")], ["history"]):
        r = runner.invoke(cli, [*args, "--source", str(bad), "--zone", str(zone_geojson)])
        assert r.exit_code == 2, r.stderr
        assert r.stderr.startswith("icv: error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.parquet"))


def test_as_of_on_a_source_without_history(tmp_path: Path) -> None:
    p = _write_xml(tmp_path / "x.osm", [])
    with pytest.raises(InputError, match="needs a source with history"):
        sources.load_network(p, zone=load_zone_box(), as_of="2024-02-29")


@pytest.mark.parametrize("date_text, message", [("2010-01-01", "before 2012-09-12"),
                                                ("2999-01-01", "in the future")])
def test_cli_as_of_out_of_range(runner, osh_pbf: Path, zone_geojson: Path, tmp_path: Path, date_text: str,
                                message: str) -> None:
    r = runner.invoke(cli, ["pull", "--source", str(osh_pbf), "--as-of", date_text, "--zone", str(zone_geojson),
                            "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 2 and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- Overpass attic (item 1)

def _snapshot(day_iso: str) -> list[str]:
    """The plain OSM XML of the history as of a moment, by this test's own reading."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring("<osm>" + "".join(_history_elements()) + "</osm>")
    latest: dict[tuple[str, int], ET.Element] = {}
    for el in root:
        if el.get("timestamp") <= day_iso:
            latest[(el.tag, int(el.get("id")))] = el
    out = []
    for (tag, _), el in sorted(latest.items(), key=lambda kv: (kv[0][0] != "node", kv[0][1])):
        if el.get("visible") != "false":
            out.append(ET.tostring(el, encoding="unicode"))
    return out


def test_overpass_as_of(tmp_path: Path) -> None:
    from geo._overpass import fetch_ways

    dated = {"2017-01-02T00:00:00Z": _write_xml(tmp_path / "s2017.osm", _snapshot("2017-01-02T00:00:00Z")),
             "2024-02-29T23:59:59Z": _write_xml(tmp_path / "s2024.osm", _snapshot("2024-02-29T23:59:59Z"))}
    current = _write_xml(tmp_path / "now.osm", _snapshot("2030-01-01T00:00:00Z"))
    cache = tmp_path / "cache"
    zone = load_zone_box()
    with OverpassStandIn(current, osm_base=SERVER_BASE, attic=dated) as server:
        net = sources.load_network("overpass", zone=zone, overpass_url=server.url, cache_dir=cache,
                                   as_of="2024-02-29", timeout=10)
        assert server.interpreter_count == 1
        q = server.interpreter_requests[0].query
        assert '[date:"2024-02-29T23:59:59Z"]' in q
        _assert_classes(_km_by_class(net.roads), {"trunk": 1.0, "tertiary": 0.8})
        assert net.provenance.osm_timestamp == "2024-02-29T23:59:59Z"
        assert f"Overpass attic data as of 2024-02-29T23:59:59Z (server data {SERVER_BASE})" in net.provenance.notes
        # the same date again: OSMnx's cache (keyed by the query text, date included) answers
        sources.load_network("overpass", zone=zone, overpass_url=server.url, cache_dir=cache,
                             as_of="2024-02-29", timeout=10)
        assert server.interpreter_count == 1
        # today's data: another query, no date setting, another answer
        now = sources.load_network("overpass", zone=zone, overpass_url=server.url, cache_dir=cache, timeout=10)
        assert server.interpreter_count == 2
        assert "[date:" not in server.interpreter_requests[1].query
        _assert_classes(_km_by_class(now.roads), {"trunk": 1.0, "tertiary": 1.5})
        assert now.provenance.osm_timestamp == SERVER_BASE
        ways, info = fetch_ways(zone.geometry, parse_filter("drive"), url=server.url, as_of="2017-01-02T00:00:00Z",
                                timeout=10)
        assert sorted({w.way_id for w in ways}) == [1, 2, 3]


def test_cli_pull_overpass_as_of_keys_cache_by_date(runner, tmp_path: Path, zone_geojson: Path) -> None:
    dated = {"2024-02-29T23:59:59Z": _write_xml(tmp_path / "s2024.osm", _snapshot("2024-02-29T23:59:59Z"))}
    current = _write_xml(tmp_path / "now.osm", _snapshot("2030-01-01T00:00:00Z"))
    cache = tmp_path / "cache"
    with OverpassStandIn(current, osm_base=SERVER_BASE, attic=dated) as server:
        base = ["pull", "--zone", str(zone_geojson), "--cache-dir", str(cache), "--overpass-url", server.url]
        r1 = runner.invoke(cli, [*base, "--as-of", "2024-02-29"])
        r2 = runner.invoke(cli, base)
        assert r1.exit_code == 0 and r2.exit_code == 0, r1.stderr + r2.stderr
    dated_side = json.loads(next(cache.glob("roads-hzone-drive-asof-2024-02-29*.json")).read_text())
    now_side = json.loads((cache / "roads-hzone-drive.json").read_text())
    assert dated_side["provenance"]["osm_timestamp"] == "2024-02-29T23:59:59Z"
    assert now_side["provenance"]["osm_timestamp"] == SERVER_BASE  # today's pull: the server's data timestamp
    assert dated_side["rows"] == 2 and now_side["rows"] == 3


# ---------------------------------------------------------------- icv history (item 3)

def test_history_file_series_known_answer(osh_pbf: Path) -> None:
    days = [d for d, _, _ in EXPECTED]
    h = hist.history_from_file(osh_pbf, load_zone_box(), parse_filter("drive"), days)
    assert [p.day for p in h.points] == days
    for p, (_, want, names) in zip(h.points, EXPECTED):
        _assert_classes(p.km_by_class, want)
        assert p.named_streets == names, p.day
    assert h.provenance["source_kind"] == "osm-history" and "OpenStreetMap" in h.provenance["attribution"]


def test_history_ohsome_matches_known_answer(osh: Path) -> None:
    days = [d for d, _, _ in EXPECTED]
    with OhsomeStandIn(osh) as server:
        h = hist.history_from_ohsome(load_zone_box(), parse_filter("drive"), ",".join(d.isoformat() for d in days),
                                     url=server.url, timeout=10)
        paths = [r["path"] for r in server.requests]
    assert paths == ["/v1/elements/length/groupBy/tag", "/v1/elements/count/groupBy/tag"]
    assert server.requests[0]["groupByKey"] == "highway" and "type:way and highway in (" in server.requests[0]["filter"]
    for p, (day, want, names) in zip(h.points, EXPECTED):
        assert p.day == day
        _assert_classes(p.km_by_class, want)
        assert p.named_streets == names


def test_cli_history_ohsome_every_format(runner, osh: Path, zone_geojson: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    with OhsomeStandIn(osh) as server:
        monkeypatch.setenv("ICV_OHSOME_URL", server.url)  # the env var, as for Overpass
        results = {}
        for fmt in ("table", "json", "csv", "markdown"):
            args = ["history", "--zone", str(zone_geojson), "--time", "2014-01-01/2024-07-01/P6M", "--format", fmt]
            if fmt == "json":
                args += ["--out-dir", str(out), "--place", "Jiading"]
            r = runner.invoke(cli, args)
            assert r.exit_code == 0, r.stderr
            results[fmt] = r.stdout
    doc = json.loads(results["json"])
    rows = {r["date"]: r for r in doc["rows"]}
    assert len(rows) == 22
    assert rows["2017-01-01"]["total_km"] == pytest.approx(6.0, abs=0.003)
    assert rows["2024-01-01"]["total_km"] == pytest.approx(1.8, abs=0.002)
    assert rows["2024-07-01"]["tertiary_km"] == pytest.approx(1.5, abs=0.001)
    assert rows["2014-01-01"]["total_km"] == pytest.approx(1.0, abs=0.001)  # way 1 exists at 00:00 of its day
    assert doc["meta"]["source_kind"] == "ohsome" and "OpenStreetMap" in doc["meta"]["attribution"]
    assert "2017-01-01" in results["table"] and "total_km" in results["table"]
    assert results["csv"].splitlines()[0].startswith("date,total_km,")
    assert results["markdown"].startswith("### OSM road network")
    series = (out / "osm_history.csv").read_text().splitlines()
    assert series[0] == "date,zone,highway,km,named_streets"
    assert any(line.startswith("2017-01-01,hzone,total,6.0") for line in series)
    assert any("OpenStreetMap contributors" in line for line in series)
    sdoc = json.loads((out / "osm_history.json").read_text())
    assert {r["highway"] for r in sdoc["series"]} >= {"primary", "trunk", "total"}
    for name in ("history_chart.png", "history_chart.svg", "history_chart.html"):
        assert (out / name).stat().st_size > 1000


def test_cli_history_offline_equals_ohsome(runner, osh: Path, osh_pbf: Path, zone_geojson: Path) -> None:
    time_range = "2014-01-01/2024-07-01/P1Y"
    with OhsomeStandIn(osh) as server:
        a = runner.invoke(cli, ["history", "--zone", str(zone_geojson), "--time", time_range, "--format", "json",
                                "--ohsome-url", server.url])
    b = runner.invoke(cli, ["history", "--source", str(osh_pbf), "--zone", str(zone_geojson), "--time", time_range,
                            "--format", "json"])
    assert a.exit_code == 0 and b.exit_code == 0, a.stderr + b.stderr
    ra, rb = json.loads(a.stdout)["rows"], json.loads(b.stdout)["rows"]
    assert [r["date"] for r in ra] == [r["date"] for r in rb]
    for x, y in zip(ra, rb):
        assert x["total_km"] == pytest.approx(y["total_km"], abs=0.001 * max(1, y["total_km"]))
        assert x["named_streets"] == y["named_streets"]


@pytest.mark.parametrize("script, message", [
    (["400"], "HTTP 400: The provided time parameter is not ISO-8601 conform"),
    (["html"], "the answer is a web page (HTTP 200), not ohsome JSON"),
    (["cut", "cut"], "not complete JSON (cut short?); still failing after 2 tries"),
    (["503"] * 5, "still failing after 2 tries"),
    (["hang"], "no answer within 1 s"),
    (["slow"], "the answer did not arrive within 1 s"),
])
def test_cli_history_ohsome_errors(runner, osh: Path, zone_geojson: Path, tmp_path: Path, script: list[str],
                                   message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo import _ohsome

    real = _ohsome.fetch_history
    monkeypatch.setattr(_ohsome, "fetch_history",
                        lambda *a, **k: real(*a, **{**k, "max_retries": 1, "backoff": 0.01}))
    out = tmp_path / "out"
    with OhsomeStandIn(osh, script=list(script), hang_s=5) as server:
        r = runner.invoke(cli, ["history", "--zone", str(zone_geojson), "--time", "2014-01-01,2015-01-01",
                                "--ohsome-url", server.url, "--timeout", "1", "--out-dir", str(out)])
    assert r.exit_code == 3, r.stderr
    line = r.stderr.strip()
    assert line.startswith("icv: error: ") and "\n" not in line and message in line, line
    assert "Traceback" not in r.output
    assert not out.exists() or not any(out.iterdir())


def test_ohsome_retries_then_answers(osh: Path) -> None:
    with OhsomeStandIn(osh, script=["503", "429"]) as server:
        h = hist.history_from_ohsome(load_zone_box(), parse_filter("drive"), "2017-01-02", url=server.url,
                                     timeout=10, backoff=0.01)
    assert len(server.requests) == 4  # two faults, then the two answers
    _assert_classes(h.points[0].km_by_class, EXPECTED[1][1])


def test_ohsome_url_checked() -> None:
    from geo import _ohsome

    with pytest.raises(InputError, match="not an http"):
        _ohsome.resolve_url("ftp://example.org/v1")
    assert _ohsome.resolve_url("http://h/v1/elements/length/groupBy/tag") == "http://h/v1"


def test_ohsome_refused() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(SourceUnavailableError, match="connection refused"):
        hist.history_from_ohsome(load_zone_box(), parse_filter("drive"), "2017-01-02",
                                 url=f"http://127.0.0.1:{port}/v1", timeout=2)


# ---------------------------------------------------------------- charts and the report (items 4, 5)

def test_charts_escape_and_carry_provenance(osh_pbf: Path, tmp_path: Path) -> None:
    h = hist.history_from_file(osh_pbf, load_zone_box(), parse_filter("drive"), [d for d, _, _ in EXPECTED])
    rep = [hist.ReportedPoint(date(2018, 3, 1), 5.6, "km", "2018-03-01", "Evil <script>alert(1)</script> & co", ""),
           hist.ReportedPoint(date(2024, 2, 29), 1117.0, "km", "2024-02", "Shanghai Daily", "")]
    files = hist.write_charts(h, rep, tmp_path / "c", place="Jiading")
    page = files["html"].read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "src=" not in page and "<link" not in page and "@import" not in page  # self-contained: loads nothing
    assert "© OpenStreetMap contributors (ODbL)" in page and str(osh_pbf) in page
    assert page.count('<circle class="osm"') == len(EXPECTED) and page.count('<circle class="rep"') == 2
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in files["svg"].read_bytes()[:2000]


def test_reported_series_is_the_reported_history() -> None:
    from geo import reported

    s = hist.reported_series("Jiading")
    recs = reported.history("Jiading", "test_road_km")
    assert [p.value for p in s] == [r.value for r in recs]
    assert s[0].value == 5.6 and s[0].day == date(2018, 3, 1)
    assert any(p.value == 1117 for p in s) and all(p.source for p in s)


def test_cli_report_as_of_and_history(runner, osh: Path, osh_pbf: Path, zone_geojson: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    r = runner.invoke(cli, ["report", "--source", str(osh_pbf), "--zone", str(zone_geojson), "--as-of", "2024-02-29",
                            "--no-maps", "--out-dir", str(out), "--history",
                            "--history-time", "2014-01-01/2024-07-01/P1Y", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    md = (out / "report.md").read_text()
    assert "dates compared: the latest reported figures at or before 2024-02-29" in md
    assert "OSM as of 2024-02-29" in md
    assert "OSM data timestamp: 2024-02-29T23:59:59Z" in md
    assert "## OSM and the reported figures over time" in md
    for name in ("history_chart.html", "history_chart.png", "history_chart.svg", "osm_history.csv"):
        assert f"]({name})" in md and (out / name).exists()
    assert md.index("## OSM and the reported figures") < md.rindex("\n---\n")
    assert "as of 2024-02-29" in (out / "history_chart.html").read_text()  # the compared date, marked
    # the network the report measured is the one of 2024-02-29: 1.8 km
    doc = json.loads(r.stdout)
    assert "2024-02-29T23:59:59Z" in doc["meta"]["network"]


def test_cli_report_without_as_of_says_the_dates(runner, osh_pbf: Path, zone_geojson: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    r = runner.invoke(cli, ["report", "--source", str(osh_pbf), "--zone", str(zone_geojson), "--no-maps",
                            "--out-dir", str(out)])
    assert r.exit_code == 0, r.stderr
    md = (out / "report.md").read_text()
    assert "dates compared: the latest reported figures (each row gives its own date) with OSM as it is in the " \
           "source (data timestamp 2024-03-10T00:00:00Z)" in md
    assert "## OSM and the reported figures over time" not in md


def test_cli_report_history_ohsome_failure_writes_nothing(runner, osh: Path, zone_geojson: Path,
                                                         tmp_path: Path) -> None:
    plain = _write_xml(tmp_path / "now.osm", _snapshot("2030-01-01T00:00:00Z"))  # no history: --history asks ohsome
    out = tmp_path / "rep"
    with OhsomeStandIn(osh, script=["400"]) as server:
        r = runner.invoke(cli, ["report", "--source", str(plain), "--zone", str(zone_geojson), "--out-dir", str(out),
                                "--offline", "--history", "--history-time", "2014-01-01,2015-01-01",
                                "--ohsome-url", server.url])
    assert r.exit_code == 3, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("icv: error: http://127.0.0.1:")
    assert "HTTP 400" in r.stderr
    assert not out.exists() or not any(out.iterdir())  # no map, no report, no chart
    r = runner.invoke(cli, ["report", "--source", str(plain), "--zone", str(zone_geojson), "--no-maps",
                            "--out-dir", str(out), "--history", "--history-time", "bad-range"])
    assert r.exit_code == 2 and "bad time range" in r.stderr
    assert not (out / "report.md").exists()


def test_cli_report_as_of_through_overpass(runner, tmp_path: Path, zone_geojson: Path) -> None:
    dated = {"2024-02-29T23:59:59Z": _write_xml(tmp_path / "s2024.osm", _snapshot("2024-02-29T23:59:59Z"))}
    current = _write_xml(tmp_path / "now.osm", _snapshot("2030-01-01T00:00:00Z"))
    out = tmp_path / "rep"
    with OverpassStandIn(current, osm_base=SERVER_BASE, attic=dated) as server:
        r = runner.invoke(cli, ["report", "--source", "overpass", "--overpass-url", server.url, "--zone",
                                str(zone_geojson), "--as-of", "2024-02", "--no-maps", "--out-dir", str(out),
                                "--cache-dir", str(tmp_path / "cache"), "--format", "json"])
        queries = [q.query for q in server.interpreter_requests]
    assert r.exit_code == 0, r.stderr
    assert queries and all('[date:"2024-02-29T23:59:59Z"]' in q for q in queries)
    md = (out / "report.md").read_text()
    assert "dates compared: the latest reported figures at or before 2024-02 (each row gives its own date) " \
           "with OSM as of 2024-02-29" in md
    assert "OSM data timestamp: 2024-02-29T23:59:59Z" in md
    # the 2024-02-29 network (1.8 km), not today's (2.5 km)
    assert "| carriageway\\_km | 1.80 | km |" in md


def test_zone_edge_clips_both_sources_alike(runner, osh: Path, osh_pbf: Path, tmp_path: Path) -> None:
    """A zone whose north edge lies 1500 m north of the ways' start: ways 2 and 3 are cut there."""
    north = _north(LON0, LAT0, 1500.0)[1]
    f = tmp_path / "cut.geojson"
    gpd.GeoDataFrame({"name": ["cut"]}, geometry=[box(121.24, 31.29, 121.31, north)], crs=4326).to_file(f)
    want = {"primary": 1.0, "residential": 1.5, "secondary": 1.5}
    with OhsomeStandIn(osh) as server:
        a = runner.invoke(cli, ["history", "--zone", str(f), "--time", "2017-01-02", "--format", "json",
                                "--ohsome-url", server.url])
    b = runner.invoke(cli, ["history", "--source", str(osh_pbf), "--zone", str(f), "--time", "2017-01-02",
                            "--format", "json"])
    assert a.exit_code == 0 and b.exit_code == 0, a.stderr + b.stderr
    for r in (json.loads(a.stdout)["rows"][0], json.loads(b.stdout)["rows"][0]):
        _assert_classes({k[:-3]: v for k, v in r.items() if k.endswith("_km") and k != "total_km" and v}, want)
        assert r["total_km"] == pytest.approx(4.0, abs=0.003)


def test_as_of_equals_osmium_time_filter(osh_pbf: Path, tmp_path: Path) -> None:
    """A peer tool: osmium-tool's time-filter cuts the same history at each date; icv reads that snapshot as
    a plain PBF and must find the same ways and km as its own as-of reading."""
    import shutil as sh
    import subprocess

    exe = sh.which("osmium")
    if exe is None:
        pytest.skip("osmium-tool is not installed (apt-get install osmium-tool): the peer of this test")
    zone = load_zone_box()
    for day, want, _ in EXPECTED:
        snap = tmp_path / f"snap-{day.isoformat()}.osm.pbf"
        subprocess.run([exe, "time-filter", str(osh_pbf), f"{day.isoformat()}T23:59:59Z", "-o", str(snap), "-O"],
                       check=True, capture_output=True)
        peer = sources.load_network(snap, zone=zone)
        ours = sources.load_network(osh_pbf, zone=zone, as_of=day)  # the end of that day, as the peer's cut
        assert sorted(map(tuple, peer.roads["osm_way_ids"])) == sorted(map(tuple, ours.roads["osm_way_ids"])), day
        _assert_classes(_km_by_class(peer.roads), want)
        _assert_classes(_km_by_class(ours.roads), want)


@pytest.mark.shared
def test_overpass_as_of_on_the_shared_extract(shared_data: Path, tmp_path: Path) -> None:
    """Real data: the shared Jiading extract served as the attic state of 2024-02-29 (and nothing for 2015):
    the as-of pull over the real outline (with its margin) gives the file source's km, the earlier date none."""
    from geo.errors import EmptyNetworkError
    from geo.stats import road_stats
    from geo.zones import Zone

    osm = shared_data / "jiading_osm_signalized.osm"
    poly = gpd.read_file(shared_data / "jiading_boundary_wgs84_amap.geojson").to_crs(4326).union_all()
    zone = Zone("jiading", poly)
    empty = _write_xml(tmp_path / "empty.osm", [])
    with OverpassStandIn(empty, osm_base=SERVER_BASE, attic={"2020-01-01T00:00:00Z": osm}) as server:
        net = sources.load_network("overpass", zone=zone, overpass_url=server.url, as_of="2024-02-29",
                                   cache_dir=tmp_path, timeout=30)
        with pytest.raises(EmptyNetworkError):
            sources.load_network("overpass", zone=zone, overpass_url=server.url, as_of="2015-06-30",
                                 cache_dir=tmp_path, timeout=30)
        assert all("[date:" in r.query for r in server.interpreter_requests)
    file_net = sources.load_network(osm, zone=zone)
    km = lambda n: float(road_stats(n.roads, zone, subzones={}).figures_by_name["carriageway_km"].value)  # noqa: E731
    assert km(net) == pytest.approx(km(file_net), rel=1e-9)
    assert km(net) == pytest.approx(188.8, abs=0.1)  # the shared data's README: 188.8 km inside the outline
    assert net.provenance.osm_timestamp == "2024-02-29T23:59:59Z"


@pytest.mark.parametrize("args, message", [
    (["--source", "SNAPSHOT"], "no history in source"),
    (["--time", "2014-01-01/2999-01-01/P1Y"], "ends in the future"),
    (["--time", "2014-02-30/2015-01-01/P1Y"], "not a real date"),
])
def test_cli_history_bad_input_one_line(runner, tmp_path: Path, zone_geojson: Path, args: list[str],
                                        message: str) -> None:
    snap = _write_xml(tmp_path / "now.osm", _snapshot("2030-01-01T00:00:00Z"))
    args = [str(snap) if a == "SNAPSHOT" else a for a in args]
    out = tmp_path / "out"
    r = runner.invoke(cli, ["history", "--zone", str(zone_geojson), "--ohsome-url", "http://127.0.0.1:9/v1",
                            "--out-dir", str(out), *args])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("icv: error: ") and r.stderr.count("\n") == 1 and message in r.stderr
    assert not out.exists()


def test_unsorted_history_file(tmp_path: Path) -> None:
    """Versions of one way apart in the file, one of them not a road: that version still counts."""
    from datetime import datetime, timezone

    from geo import _osh

    a = (LON0 + 0.05, LAT0)
    b = _north(*a, 1000.0)
    p = _write_xml(tmp_path / "unsorted.osh", [
        f'<node id="1" version="1" timestamp="{T0}" visible="true" lat="{a[1]:.9f}" lon="{a[0]:.9f}"/>',
        f'<node id="2" version="1" timestamp="{T0}" visible="true" lat="{b[1]:.9f}" lon="{b[0]:.9f}"/>',
        '<way id="7" version="3" timestamp="2020-01-01T00:00:00Z" visible="true"><nd ref="1"/><nd ref="2"/>'
        '<tag k="highway" v="primary"/></way>',
        '<way id="9" version="1" timestamp="2014-01-01T00:00:00Z" visible="true"><nd ref="1"/><nd ref="2"/>'
        '<tag k="building" v="yes"/></way>',
        '<way id="7" version="1" timestamp="2014-01-01T00:00:00Z" visible="true"><nd ref="1"/><nd ref="2"/>'
        '<tag k="highway" v="primary"/></way>',
        '<way id="7" version="2" timestamp="2016-01-01T00:00:00Z" visible="true"><nd ref="1"/><nd ref="2"/>'
        '<tag k="landuse" v="grass"/></way>',
    ])
    h = _osh.read_history(p)
    at = lambda y: [w.way_id for w in h.ways_as_of(datetime(y, 6, 30, tzinfo=timezone.utc))]  # noqa: E731
    assert (at(2015), at(2017), at(2021)) == ([7], [], [7])


def test_html_chart_in_the_browser(osh_pbf: Path, tmp_path: Path) -> None:
    """Headless Chromium (as tests/test_browser.py drives it): the chart loads nothing, a hostile source is
    inert text, pointing at a reported point shows its source, the check boxes hide a series."""
    from test_browser import Chromium, chromium_path

    if not chromium_path():
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium); the browser check needs it")
    evil = "<img src=x onerror=alert(1)> Shanghai Daily"
    h = hist.history_from_file(osh_pbf, load_zone_box(), parse_filter("drive"), [d for d, _, _ in EXPECTED])
    rep = [hist.ReportedPoint(date(2018, 3, 1), 5.6, "km", "2018-03-01", evil, ""),
           hist.ReportedPoint(date(2024, 2, 29), 1117.0, "km", "2024-02", "Shanghai Daily", "")]
    page = hist.write_charts(h, rep, tmp_path, place="Jiading", png=False, svg=False,
                             mark=date(2024, 2, 29))["html"]
    with Chromium(1000, 800) as b:
        b.open(page)
        assert b.evaluate("document.querySelectorAll('circle.osm').length") == len(EXPECTED)
        text = b.evaluate("""(function(){var c=document.querySelector('circle.rep');
            c.dispatchEvent(new MouseEvent('mouseenter')); return document.getElementById('readout').textContent;})()""")
        assert text.startswith("2018-03-01: 5.6 km reported; source: ") and evil in text
        hidden = b.evaluate("""(function(){var box=document.querySelector('input[data-series=osm]'); box.click();
            return Array.from(document.querySelectorAll('svg .osm')).every(e => e.style.display === 'none');})()""")
        assert hidden
        assert b.evaluate("document.querySelectorAll('img').length") == 0
        assert b.dialogs() == [] and b.console_errors() == []
        assert all(u.startswith("file://") for u in b.requests()), b.requests()


def test_cli_report_history_from_ohsome(runner, osh: Path, tmp_path: Path) -> None:
    """A plain extract as the report's network, its history from ohsome; the zone is Jiading's place (the
    reported test-road km join the chart)."""
    plain = _write_xml(tmp_path / "now.osm", _snapshot("2030-01-01T00:00:00Z"))
    zone = tmp_path / "jz.geojson"
    gpd.GeoDataFrame({"name": ["jz"]}, geometry=[box(*ZONE_BOX)], crs=4326).to_file(zone)
    (tmp_path / "jz.json").write_text(json.dumps({"name": "jz", "place": "Jiading"}))  # the sidecar names the place
    out = tmp_path / "rep"
    with OhsomeStandIn(osh) as server:
        r = runner.invoke(cli, ["report", "--source", str(plain), "--zone", str(zone), "--no-maps", "--out-dir",
                                str(out), "--history", "--history-time", "2014-01-01/2024-01-01/P1Y",
                                "--ohsome-url", server.url])
        assert len(server.requests) == 2
    assert r.exit_code == 0, r.stderr
    series = json.loads((out / "osm_history.json").read_text())
    assert series["meta"]["source_kind"] == "ohsome"
    total = {row["date"]: row["km"] for row in series["series"] if row["highway"] == "total"}
    assert total["2017-01-01"] == pytest.approx(6.0, abs=0.003) and total["2023-01-01"] == pytest.approx(1.8, abs=0.002)
    md = (out / "report.md").read_text()
    assert "![OSM km and reported km over time](history_chart.png)" in md
    assert "- OSM: 1.0 km on 2014-01-01, 1.8 km on 2024-01-01 (ohsome" in md
    assert "- reported: 5.6 km as of 2018-03-01; 11.1 km as of 2018-09-18;" in md  # Jiading's, oldest first
    page = (out / "history_chart.html").read_text()
    assert page.count('<circle class="rep"') == len(hist.reported_series("Jiading"))


def test_history_pbf_under_a_plain_name_counts_current_versions_only(osh_pbf: Path, tmp_path: Path) -> None:
    """A history PBF named .osm.pbf: the PBF reader sees the header's history flag and takes the newest state."""
    import shutil

    plain = tmp_path / "named-plainly.osm.pbf"
    shutil.copyfile(osh_pbf, plain)
    want = sources.load_network(osh_pbf, zone=load_zone_box())  # the history reader, newest state
    got = sources.load_network(plain, zone=load_zone_box())
    assert got.roads["length_m"].sum() == pytest.approx(want.roads["length_m"].sum(), rel=1e-9)
    assert len(got.roads) == len(want.roads)
