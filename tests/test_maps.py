"""Maps: coverage numbers, test-road sets, mileage shares, safety, lightness, offline, CLI."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Transformer
from shapely.geometry import LineString, MultiLineString, Polygon, box

from geo import maps
from geo.errors import InputError, OutputError, ReportedFiguresError
from geo.testroads import TestRoadEntry, load_test_roads, match_test_roads

EVIL = "<img src=x onerror=alert(1)>"
UTM51 = "EPSG:32651"
_TO_LL = Transformer.from_crs(UTM51, 4326, always_xy=True)


def utm_line(*pts: tuple[float, float], step: float = 50.0) -> LineString:
    """A line drawn in UTM 51N (metres), densified and returned in lon/lat."""
    line = shapely.segmentize(LineString(pts), step)
    xy = shapely.get_coordinates(line)
    lon, lat = _TO_LL.transform(xy[:, 0], xy[:, 1])
    return LineString(np.column_stack([lon, lat]))


def utm_box(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    ring = shapely.segmentize(box(x0, y0, x1, y1), 50.0)
    xy = shapely.get_coordinates(ring)
    lon, lat = _TO_LL.transform(xy[:, 0], xy[:, 1])
    return Polygon(np.column_stack([lon, lat]))


def roads_table(geoms, **cols) -> gpd.GeoDataFrame:
    n = len(geoms)
    base = {"osm_way_ids": [[i + 1] for i in range(n)], "highway": ["primary"] * n, "name": [None] * n,
            "name_en": [None] * n, "name_zh": [None] * n, "ref": [None] * n}
    base.update(cols)
    gdf = gpd.GeoDataFrame(base, geometry=list(geoms), crs=4326)
    from geo.roads import geodesic_length_m

    gdf["length_m"] = geodesic_length_m(gdf.geometry)
    return gdf


# A 2 km x 2 km zone in UTM 51N near Jiading; cells of 1 km are aligned to its corners.
X0, Y0 = 330_000.0, 3_460_000.0
ZONE = utm_box(X0, Y0, X0 + 2000, Y0 + 2000)


# ---------------------------------------------------------------- coverage numbers (known answers)

def test_coverage_of_a_straight_road_across_a_square_zone():
    # one road through the middle of the upper row of cells, sticking out 1 km on both sides
    road = utm_line((X0 - 1000, Y0 + 1500), (X0 + 3000, Y0 + 1500))
    other = utm_line((X0 + 500, Y0 + 100), (X0 + 500, Y0 + 400))  # 300 m inside the lower-left cell
    roads = roads_table([road, other])
    cov = maps.compute_coverage(roads, ZONE, zone_name="sq", test_mask=np.array([True, False]))
    assert cov.crs == UTM51
    assert cov.zone_area_km2 == pytest.approx(4.0, rel=1e-3)
    assert cov.test_km == pytest.approx(2.0, rel=1e-3)          # clipped at the zone boundary
    assert cov.road_km == pytest.approx(2.3, rel=1e-3)
    assert (cov.test_pieces, cov.road_pieces) == (1, 2)
    # the 1 km wide band around the road covers the upper half of the zone
    assert cov.share_within == pytest.approx(0.5, abs=2e-3)
    got = dict(zip(cov.cells["cell"], cov.cells["km"], strict=True))
    assert set(got) == {"E330N3461", "E331N3461"}
    assert got["E330N3461"] == pytest.approx(1.0, rel=1e-3)
    assert got["E331N3461"] == pytest.approx(1.0, rel=1e-3)


def test_share_within_grows_with_the_distance_and_caps_at_the_zone():
    road = utm_line((X0 - 1000, Y0 + 1500), (X0 + 3000, Y0 + 1500))
    roads = roads_table([road])
    # 250 m each side: 2 km x 0.5 km of 4 km²; 2 km reaches the whole zone
    assert maps.compute_coverage(roads, ZONE, buffer_m=250).share_within == pytest.approx(0.25, abs=2e-3)
    assert maps.compute_coverage(roads, ZONE, buffer_m=2000).share_within == pytest.approx(1.0, abs=1e-6)


def test_no_test_road_gives_zero_and_no_cells():
    roads = roads_table([utm_line((X0 + 100, Y0 + 100), (X0 + 900, Y0 + 100))])
    cov = maps.compute_coverage(roads, ZONE, test_mask=np.array([False]))
    assert cov.test_km == 0 and cov.share_within == 0 and len(cov.cells) == 0
    assert cov.road_km == pytest.approx(0.8, rel=1e-3)


def test_length_per_cell_and_grid_alignment():
    cells, cols, rows = maps.square_grid((100.0, 100.0, 2900.0, 900.0), 1000.0)
    assert sorted(cols.tolist()) == [0, 1, 2] and rows.tolist() == [0, 0, 0]
    km = maps.length_per_cell(np.array([LineString([(500, 500), (2500, 500)])]), cells)
    assert dict(zip(cols.tolist(), km.tolist(), strict=True)) == {0: 500.0, 1: 1000.0, 2: 500.0}


def test_bad_buffer_or_cell_size():
    roads = roads_table([utm_line((X0, Y0), (X0 + 10, Y0))])
    with pytest.raises(InputError):
        maps.compute_coverage(roads, ZONE, buffer_m=0)
    with pytest.raises(InputError):
        maps.compute_coverage(roads, ZONE, cell_size_m=-1)


# ---------------------------------------------------------------- compact encoding

def test_encode_decode_round_trip_on_a_1e5_grid():
    line = LineString([(121.123456789, 31.1), (121.1234567, 31.1000001), (121.2, 31.2), (121.2, 31.2)])
    enc = maps.encode_geometry(line)
    assert all(isinstance(v, int) for v in enc[0])
    (dec,) = maps.decode_geometry(enc, "line")
    # the two first points round to one; the repeated last point is dropped
    assert dec == pytest.approx(np.array([[121.12346, 31.1], [121.2, 31.2]]), abs=1e-9)
    poly = Polygon([(0, 0), (1, 0), (1, 1), (0, 0)], [[(0.5, 0.2), (0.8, 0.2), (0.8, 0.5), (0.5, 0.2)]])
    ((ext, hole),) = maps.decode_geometry(maps.encode_geometry(poly), "polygon")
    assert ext.tolist() == [[0, 0], [1, 0], [1, 1], [0, 0]]
    assert hole[1].tolist() == [0.8, 0.2]
    multi = MultiLineString([[(0, 0), (1, 1)], [(2, 2), (3, 3)]])
    assert len(maps.decode_geometry(maps.encode_geometry(multi), "line")) == 2


def test_dumps_safe_leaves_no_markup():
    s = maps.dumps_safe({"n": EVIL + "</script>&\u2028"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s)["n"] == EVIL + "</script>&\u2028"


# ---------------------------------------------------------------- the coverage page

def _small_roads():
    return roads_table(
        [utm_line((X0 - 200, Y0 + 1500), (X0 + 2200, Y0 + 1500)), utm_line((X0 + 500, Y0), (X0 + 500, Y0 + 2000)),
         utm_line((X0 + 1500, Y0 + 200), (X0 + 1700, Y0 + 900))],
        highway=["primary", "residential", "primary_link"], name=["博园路", "Ａ路", None],
        name_en=["Boyuan Road", None, None], ref=["S5", None, None])


def test_coverage_page_holds_tooltips_title_and_provenance(tmp_path):
    roads = _small_roads()
    prov = {"source_kind": "osm-xml", "source": "x.osm", "osm_timestamp": "2024-01-02T03:04:05Z", "filter": "drive"}
    m = maps.coverage_map(roads, ZONE, zone_name="sq", test_mask=np.array([True, False, True]),
                          test_set_label="set.csv (2 rows)", unmatched=["line 3: Nowhere Rd"], provenance=prov,
                          basemap=maps.resolve_basemap("none"))
    out = maps.save_map(m, tmp_path / "c.html")
    page = out.read_text(encoding="utf-8")
    layers = maps.extract_layers(page)
    by_kind = {}
    for v in layers.values():
        by_kind.setdefault(v["kind"], []).append(v)
    test_layer = next(v for v in by_kind["line"] if all("dashArray" not in s for s in v["styles"]))
    other_layer = next(v for v in by_kind["line"] if all("dashArray" in s for s in v["styles"]))
    assert len(test_layer["rows"]) == 2 and len(other_layer["rows"]) == 1
    rows = [dict(zip(test_layer["keys"], r, strict=True)) for r in test_layer["rows"]]
    boyuan = next(r for r in rows if r["n"] == "博园路")
    assert boyuan["e"] == "Boyuan Road" and boyuan["r"] == "S5" and boyuan["w"] == "1"
    assert boyuan["k"] == pytest.approx(roads.length_m[0] / 1000, abs=0.005)
    classes = next(f[2] for f in test_layer["fields"] if f[1] == "h")
    assert classes[boyuan["h"]] == "primary"
    # only what the tooltip shows travels with the features
    assert set(test_layer["keys"]) <= {"n", "e", "h", "r", "k", "w", "s"}
    assert [f[0] for f in test_layer["fields"]] == ["Name", "Name (en)", "Class", "Ref", "km", "OSM way"]
    # title block: headline numbers, provenance, attribution
    cov = maps.compute_coverage(roads, ZONE, test_mask=np.array([True, False, True]))
    assert f"{100 * cov.share_within:.1f}%" in page
    assert "2024-01-02T03:04:05Z" in page and "filter: drive" in page
    assert "© OpenStreetMap contributors" in page
    assert "line 3: Nowhere Rd" in page
    assert "L.control.scale" in page and "L.control.layers" in page
    meta = json.loads((tmp_path / "c.provenance.json").read_text(encoding="utf-8"))
    assert meta["network"]["osm_timestamp"] == "2024-01-02T03:04:05Z"
    assert meta["coverage"]["share_within"] == pytest.approx(cov.share_within, abs=1e-5)
    assert '<meta name="icv:provenance"' in page


def test_hostile_strings_are_inert_in_the_page(tmp_path):
    roads = roads_table([utm_line((X0, Y0 + 500), (X0 + 1000, Y0 + 500))], name=[EVIL], name_en=[EVIL], ref=[EVIL],
                        highway=[EVIL])
    m = maps.coverage_map(roads, ZONE, zone_name=EVIL, test_set_label=EVIL, unmatched=[EVIL],
                          provenance={"source": EVIL, "source_kind": EVIL, "filter": EVIL},
                          basemap=maps.resolve_basemap("none"))
    page = maps.save_map(m, tmp_path / "evil.html").read_text(encoding="utf-8")
    assert EVIL not in page
    assert "<img" not in page.lower()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # escaped in the title block
    # ... and intact as data
    layers = maps.extract_layers(page)
    names = [r[v["keys"].index("n")] for v in layers.values() for r in v["rows"] if "n" in v["keys"]]
    assert EVIL in names
    # tooltips are built with textContent, never innerHTML
    assert "innerHTML" not in maps._RUNTIME_JS and "textContent" in maps._RUNTIME_JS


def test_enterprise_names_are_escaped_in_the_chart():
    svg = maps.svg_bar_chart({EVIL: 3.0, "B & Co": 1.0}, title="t<")
    assert "<img" not in svg and "&lt;img" in svg and "B &amp; Co" in svg and "t&lt;" in svg
    assert "75.0%" in svg and "25.0%" in svg


# ---------------------------------------------------------------- basemaps

def test_amap_shifts_every_overlay_to_gcj02():
    from geo.gcj02 import wgs84_to_gcj02

    pts = [(121.20, 31.30), (121.21, 31.305), (121.23, 31.30)]
    roads = roads_table([LineString(pts)])
    zone = box(121.19, 31.29, 121.24, 31.31)
    page_of = {}
    for name in ("osm", "amap"):
        m = maps.coverage_map(roads, zone, basemap=maps.resolve_basemap(name))
        page_of[name] = maps.extract_layers(maps.map_html(m))
    for name, layers in page_of.items():
        road = next(v for v in layers.values() if v["kind"] == "line")
        (got,) = maps.decode_geometry(road["geoms"][0], "line")
        lon, lat = np.array(pts).T
        if name == "amap":
            lon, lat = wgs84_to_gcj02(lon, lat)
        assert got == pytest.approx(np.column_stack([lon, lat]), abs=0.51e-5)
        zone_layer = next(v for v in layers.values() if v["styles"][0].get("className") == "icv-zone")
        ((ring,),) = maps.decode_geometry(zone_layer["geoms"][0], "polygon")
        zx, zy = shapely.get_coordinates(zone.exterior).T
        if name == "amap":
            zx, zy = wgs84_to_gcj02(zx, zy)
        assert ring == pytest.approx(np.column_stack([zx, zy]), abs=0.51e-5)
    # the shift is real: hundreds of metres in Shanghai
    a = maps.decode_geometry(next(v for v in page_of["amap"].values() if v["kind"] == "line")["geoms"][0], "line")[0]
    assert np.abs(a[0] - np.array(pts[0])).max() > 1e-3


def test_basemap_rules(monkeypatch):
    assert maps.resolve_basemap("osm").tiles[0][0].startswith("https://tile.openstreetmap.org/")
    assert maps.resolve_basemap("osm", offline=True).tiles == ()
    assert maps.resolve_basemap("none").tiles == ()
    assert maps.resolve_basemap("amap").gcj02
    with pytest.raises(InputError, match="without tiles"):  # nothing to align the shifted overlays with
        maps.resolve_basemap("amap", offline=True)
    assert maps.resolve_basemap("amap", tiles_url="http://127.0.0.1:8080/{z}/{x}/{y}.png", offline=True).gcj02
    local = maps.resolve_basemap("osm", tiles_url="http://127.0.0.1:8080/{z}/{x}/{y}.png", offline=True)
    assert local.tiles[0][0] == "http://127.0.0.1:8080/{z}/{x}/{y}.png"
    with pytest.raises(InputError, match="local tile URL"):
        maps.resolve_basemap("osm", tiles_url="https://tiles.example.org/{z}/{x}/{y}.png", offline=True)
    with pytest.raises(InputError, match="placeholders"):
        maps.resolve_basemap("osm", tiles_url="http://127.0.0.1/tiles")
    with pytest.raises(InputError, match="Tianditu key"):
        maps.resolve_basemap("tianditu")
    t = maps.resolve_basemap("tianditu", tianditu_key="abc123")
    assert all("tk=abc123" in url for url, *_ in t.tiles)
    assert "abc123" not in t.label  # provenance never carries the key
    with pytest.raises(InputError):
        maps.resolve_basemap("tianditu", tianditu_key="a&b")
    with pytest.raises(InputError):
        maps.resolve_basemap("google")


def test_no_tianditu_key_in_the_code():
    root = Path(maps.__file__).resolve().parent.parent
    src = (root / "geo" / "maps.py").read_text(encoding="utf-8") + (root / "cli.py").read_text(encoding="utf-8")
    assert not re.search(r"tk=[0-9a-f]{16,}", src)


def test_an_offline_map_refuses_remote_tiles():
    m = maps.coverage_map(roads_table([utm_line((X0, Y0 + 5), (X0 + 100, Y0 + 5))]), ZONE,
                          basemap=maps.resolve_basemap("osm"))
    with pytest.raises(OutputError, match="remote tiles"):
        maps.map_html(m, offline=True)


# ---------------------------------------------------------------- offline and output

def _assets_or_skip():
    from geo._offline import ASSETS, asset_dir, asset_path

    try:
        for a in ASSETS.values():
            asset_path(a)
    except OutputError:
        pytest.skip(f"offline assets not installed in {asset_dir()}: run `python -m geo._offline install`")


def test_offline_page_is_self_contained(tmp_path):
    _assets_or_skip()
    from geo._offline import external_references

    m = maps.coverage_map(_small_roads(), ZONE, basemap=maps.resolve_basemap("osm", offline=True))
    online = maps.map_html(m)
    assert external_references(online) == [maps.LEAFLET_JS[1], maps.LEAFLET_CSS[1]]
    page = maps.save_map(m, tmp_path / "o.html", offline=True).read_text(encoding="utf-8")
    assert external_references(page) == []
    # nothing is loaded from elsewhere (Leaflet's own attribution is a plain <a href> link)
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "L.version" in page or "Leaflet" in page
    assert "url(data:image/png;base64," in page  # the layer-control icon of leaflet.css


def test_offline_inlines_every_folium_default_asset():
    _assets_or_skip()
    import folium

    from geo._offline import MARKER_ICON_CSS, external_references, inline_assets

    page = folium.Map(tiles=None).get_root().render()
    assert len(external_references(page)) == 10
    with pytest.raises(OutputError, match="cannot inline"):
        inline_assets(page)
    out = inline_assets(page, drop=MARKER_ICON_CSS)
    assert external_references(out) == []
    assert "jQuery" in out and "bootstrap" in out.lower() and "font/woff2;base64" in out


def test_missing_assets_fail_cleanly_and_leave_no_file(tmp_path):
    m = maps.coverage_map(_small_roads(), ZONE, basemap=maps.resolve_basemap("none"))
    target = tmp_path / "x.html"
    with pytest.raises(OutputError, match="npm package leaflet@1.9.3"):
        maps.save_map(m, target, offline=True, asset_root=tmp_path / "empty")
    assert list(tmp_path.iterdir()) == []


def test_page_is_at_most_a_third_of_explore(shared_data):
    pytest.importorskip("mapclassify")
    pytest.importorskip("matplotlib")
    from geo.sources import load_network
    from geo.zones import load_zone

    zone = load_zone("jiading")
    net = load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    ours = maps.map_html(maps.coverage_map(net.roads, zone.geometry, zone_name=zone.name, provenance=net.provenance))
    theirs = net.roads.explore(column="highway").get_root().render()
    assert len(ours.encode()) <= len(theirs.encode()) / 3


# ---------------------------------------------------------------- real data, independent methods

def test_coverage_on_real_jiading_data_agrees_with_independent_methods(shared_data):
    from geo import stats
    from geo.sources import load_network
    from geo.zones import load_zone

    zone = load_zone("jiading")
    net = load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    cov = maps.compute_coverage(net.roads, zone.geometry, zone_name=zone.name)
    # every road counts: test km are the statistics' carriageway km
    st = stats.road_stats(net.roads, zone)
    assert cov.test_km == pytest.approx(st.figure("carriageway_km").value, abs=1e-3)
    assert cov.cells["km"].sum() == pytest.approx(cov.test_km, rel=1e-9)
    # share of area within 500 m: plain geopandas, another equal-area projection (EPSG:6933)
    z = gpd.GeoSeries([zone.geometry], crs=4326)
    near = gpd.GeoSeries([net.roads.to_crs(UTM51).buffer(500).union_all()], crs=UTM51).to_crs(4326)
    inter = near.intersection(z)
    share = float(inter.to_crs(6933).area.iloc[0] / z.to_crs(6933).area.iloc[0])
    assert cov.share_within == pytest.approx(share, rel=2e-3)
    assert 0.05 < cov.share_within < 0.6


# ---------------------------------------------------------------- test-road sets

def test_csv_set_matches_with_the_statistics_normalization(tmp_path):
    roads = roads_table(
        [utm_line((X0, Y0 + i * 100), (X0 + 500, Y0 + i * 100)) for i in range(5)],
        name=["博园路", "A路;华江路", None, "Other", None], name_zh=[None, None, "曹安公路", None, None],
        name_en=["Boyuan Road", None, None, None, None], ref=[None, None, None, "G1503;S5", "G2"])
    p = tmp_path / "set.csv"
    p.write_text("\ufeffName,Ref,From,To,Note\n"
                 "  博园路 ,,,,\n"        # whitespace collapsed
                 "Ａ路,,x,y,full-width A\n"  # NFKC
                 "曹安公路,,,,\n"          # name:zh when name is missing
                 ",g 1503,,,\n"           # ref token, spaces and case
                 "Boyuan Road,,,,\n"      # the English label
                 "Nowhere Road,,A,B,\n"
                 "\n", encoding="utf-8")
    ts = load_test_roads(p)
    assert ts.kind == "names" and len(ts.entries) == 6
    assert ts.entries[1] == TestRoadEntry(3, "Ａ路", None, "x", "y", "full-width A")
    match = match_test_roads(roads, ts)
    assert match.mask.tolist() == [True, True, True, True, False]
    assert match.pieces_per_entry == [1, 1, 1, 1, 1, 0]
    assert [e.line for e in match.unmatched] == [7]
    assert "Nowhere Road (from A to B)" in match.unmatched[0].label


def test_road_column_is_a_name_or_a_ref(tmp_path):
    roads = roads_table([utm_line((X0, Y0), (X0 + 500, Y0)), utm_line((X0, Y0 + 100), (X0 + 500, Y0 + 100))],
                        name=["G2 Service Rd", None], ref=[None, "G2"])
    p = tmp_path / "r.csv"
    p.write_text("road\nG2\n", encoding="utf-8")
    assert match_test_roads(roads, load_test_roads(p)).mask.tolist() == [False, True]


@pytest.mark.parametrize("text,err", [
    ("", "empty"),
    ("street,km\nfoo,1\n", "no name, ref or road column"),
    ("name,ref,note\n,,only a note\n", "row 2 names no road"),
    ("name\n", "no rows"),
])
def test_bad_csv_sets(tmp_path, text, err):
    p = tmp_path / "bad.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=err):
        load_test_roads(p)


def test_bad_set_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_test_roads(tmp_path / "none.csv")
    (tmp_path / "s.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="unknown kind"):
        load_test_roads(tmp_path / "s.xlsx")
    (tmp_path / "latin.csv").write_bytes("name\nStra\xdfe\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        load_test_roads(tmp_path / "latin.csv")
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(121.2, 31.3)], crs=4326)
    pts.to_file(tmp_path / "p.geojson", driver="GeoJSON")
    with pytest.raises(InputError, match="LineString"):
        load_test_roads(tmp_path / "p.geojson")
    (tmp_path / "broken.geojson").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="GeoJSON"):
        load_test_roads(tmp_path / "broken.geojson")


def test_geojson_set_matches_by_geometry(tmp_path):
    roads = roads_table([
        utm_line((X0, Y0 + 1000), (X0 + 1000, Y0 + 1000)),      # drawn again 8 m off: a test road
        utm_line((X0, Y0 + 1500), (X0 + 1000, Y0 + 1500)),      # 500 m away: not
        utm_line((X0 + 700, Y0 + 1000), (X0 + 1700, Y0 + 1000)),  # only 30 % along the set's line: not
    ])
    set_lines = gpd.GeoDataFrame(
        {"name": ["Test Rd", None]},
        geometry=[utm_line((X0, Y0 + 1008), (X0 + 1000, Y0 + 1008)), utm_line((X0, Y0 + 5000), (X0 + 900, Y0 + 5000))],
        crs=4326)
    p = tmp_path / "set.geojson"
    set_lines.to_file(p, driver="GeoJSON")
    ts = load_test_roads(p)
    assert ts.kind == "geometries" and [e.name for e in ts.entries] == ["Test Rd", "feature 2"]
    match = match_test_roads(roads, ts)
    assert match.mask.tolist() == [True, False, False]
    assert [e.name for e in match.unmatched] == ["feature 2"]


def test_real_set_by_name_on_jiading(shared_data, tmp_path):
    from geo.names import street_names
    from geo.sources import load_network
    from geo.zones import load_zone

    zone = load_zone("jiading")
    net = load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    named = net.roads["name"].dropna()
    top = named.value_counts().index[:3].tolist()
    p = tmp_path / "set.csv"
    p.write_text("name\n" + "\n".join(top) + "\nNo Such Road 123\n", encoding="utf-8")
    match = match_test_roads(net.roads, load_test_roads(p))
    expect = np.array([bool(set(street_names(n, z)) & set(top))
                       for n, z in zip(net.roads["name"], net.roads["name_zh"], strict=True)])
    assert (match.mask.to_numpy() == expect).all() and expect.sum() >= 3
    assert [e.name for e in match.unmatched] == ["No Such Road 123"]


# ---------------------------------------------------------------- mileage shares

def _fig(place, figure, value, as_of, published, unit="km"):
    from geo.reported import ReportedFigure, Source

    return ReportedFigure(place=place, figure=figure, value=value, unit=unit, as_of=as_of, as_of_precision="day",
                          qualifier="exact", source=Source(publisher=f"P {place}", url=f"https://example.org/{place}",
                                                           published=published))


def _districts():
    return gpd.GeoDataFrame({"name_en": ["Jiading", "Pudong", "Huangpu"], "name_zh": ["嘉定区", "浦东新区", "黄浦区"],
                             "adcode": [310114, 310115, 310101]},
                            geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)], crs=4326)


def test_shares_from_hand_made_figures():
    figs = [
        _fig("Shanghai", "test_mileage_km", 1000.0, date(2024, 1, 1), date(2024, 1, 5)),
        _fig("Shanghai", "test_mileage_km", 5000.0, date(2025, 1, 1), date(2025, 1, 5)),  # later: not comparable
        _fig("Jiading", "test_mileage_km", 600.0, date(2023, 12, 31), date(2024, 1, 10)),
        _fig("Shanghai/Pudong", "test_mileage_km", 150.0, date(2023, 12, 1), date(2024, 1, 2)),
    ]
    s = maps.reported_mileage_shares(_districts(), figures=figs)
    assert s.city_total.value == 1000.0  # the total known when the district figures were published
    by = {d.name_en: d for d in s.districts}
    assert by["Jiading"].share == pytest.approx(0.60) and by["Pudong"].share == pytest.approx(0.15)
    assert by["Huangpu"].share is None and by["Huangpu"].figure is None
    assert s.unattributed_km == pytest.approx(250.0) and s.unattributed_share == pytest.approx(0.25)
    figs.append(_fig("Huangpu", "test_mileage_km", 400.0, date(2023, 12, 1), date(2024, 1, 3)))
    with pytest.raises(ReportedFiguresError, match="exceed the city total"):
        maps.reported_mileage_shares(_districts(), figures=figs)
    with pytest.raises(ReportedFiguresError, match="no reported figures for the city"):
        maps.reported_mileage_shares(_districts(), city="Beijing", figures=figs)


def test_real_reported_share_of_jiading():
    from geo import reported
    from geo.zones import load_zone

    subs = load_zone("shanghai_districts").subzones
    s = maps.reported_mileage_shares(subs)
    jd = reported.latest_figure("Jiading", "test_mileage_km")
    city = reported.latest_figure("Shanghai", "test_mileage_km", as_of=jd.source.published)
    by = {d.name_en: d for d in s.districts}
    assert len(by) == 16
    assert by["Jiading"].share == pytest.approx(jd.value / city.value)
    assert by["Jiading"].share == pytest.approx(0.81, abs=0.005)          # the article's 81 %
    assert by["Jiading"].reported_share.value == 81
    assert [n for n, d in by.items() if d.share is not None] == ["Jiading"]
    assert s.unattributed_km == pytest.approx(city.value - jd.value)


def test_mileage_page_cites_sources_and_never_spreads_the_rest(tmp_path):
    figs = [_fig("Shanghai", "test_mileage_km", 1000.0, date(2024, 1, 1), date(2024, 1, 5)),
            _fig("Jiading", "test_mileage_km", 600.0, date(2023, 12, 31), date(2024, 1, 10))]
    s = maps.reported_mileage_shares(_districts(), figures=figs)
    m = maps.mileage_map(s, _districts(), basemap=maps.resolve_basemap("none"))
    page = maps.save_map(m, tmp_path / "m.html").read_text(encoding="utf-8")
    (layer,) = maps.extract_layers(page).values()
    rows = {r[layer["keys"].index("n")]: dict(zip(layer["keys"], r, strict=True)) for r in layer["rows"]}
    assert rows["Jiading"]["u"] == "https://example.org/Jiading" and rows["Jiading"]["pub"] == "2024-01-10"
    assert rows["Jiading"]["c"].startswith("60.0%")
    assert rows["Jiading"]["cu"] == "https://example.org/Shanghai"
    assert rows["Pudong"]["m"] == "no reported figure" and rows["Huangpu"]["s"] == 0
    assert "c" not in {k for k, v in rows["Pudong"].items() if v is not None}
    assert layer["popup"] is True
    assert "Not attributed to a district" in page and "400 km" in page and "40.0%" in page


# ---------------------------------------------------------------- fleet km

def test_fleet_km_join_cells_and_chart():
    roads = roads_table([utm_line((X0 + 100, Y0 + 500), (X0 + 1900, Y0 + 500)),
                         utm_line((X0 + 500, Y0 + 100), (X0 + 500, Y0 + 1900))], name=["A", "B"])
    roads["osm_way_ids"] = [[11, 12], [13]]
    by_piece = pd.DataFrame({"piece": [0, 0, 1, 7], "enterprise": ["X", "Y", "X", "Z"], "km": [10, 5, 5, 2]})
    fk = maps.fleet_km_by_piece(by_piece, roads)
    assert fk.by_piece.to_dict() == {0: 15, 1: 5} and fk.unmatched_km == 2
    assert fk.by_enterprise.to_dict() == {"X": 15, "Y": 5}
    by_ways = pd.DataFrame({"osm_way_ids": ["12;11", "[13]", "99"], "enterprise": ["X", "X", "X"], "km": [1, 2, 3]})
    fk2 = maps.fleet_km_by_piece(by_ways, roads)
    assert fk2.by_piece.to_dict() == {0: 1, 1: 2} and fk2.unmatched_km == 3
    with pytest.raises(InputError, match="columns"):
        maps.fleet_km_by_piece(pd.DataFrame({"km": [1]}), roads)
    with pytest.raises(InputError, match="non-negative"):
        maps.fleet_km_by_piece(pd.DataFrame({"piece": [0], "enterprise": ["X"], "km": [-1]}), roads)
    m = maps.mileage_map(None, _districts().iloc[:1].set_geometry([ZONE]), fleet=fk, roads=roads, zone_geom=ZONE,
                         basemap=maps.resolve_basemap("none"))
    page = maps.map_html(m)
    layers = list(maps.extract_layers(page).values())
    road = next(v for v in layers if v["kind"] == "line")
    assert sorted(r[road["keys"].index("f")] for r in road["rows"]) == [5.0, 15.0]
    cells = next(v for v in layers if v["kind"] == "polygon" and v["fields"][0][0] == "Fleet km in cell")
    # each piece's km is spread over the cells it crosses: nothing lost, nothing added
    assert sum(r[cells["keys"].index("k")] for r in cells["rows"]) == pytest.approx(20.0, abs=0.05 * len(cells["rows"]))
    assert "<svg" in page and "Fleet km by enterprise" in page and "75.0%" in page


# ---------------------------------------------------------------- CLI

@pytest.fixture()
def small_network(tmp_path):
    roads = gpd.GeoDataFrame(
        {"highway": ["primary", "residential"], "name": ["博园路", EVIL], "osm_way_id": [101, 102]},
        geometry=[utm_line((X0 - 200, Y0 + 1500), (X0 + 2200, Y0 + 1500)),
                  utm_line((X0 + 500, Y0), (X0 + 500, Y0 + 2000))],
        crs=4326)
    roads.to_file(tmp_path / "roads.geojson", driver="GeoJSON")
    gpd.GeoDataFrame({"name": ["sq"]}, geometry=[ZONE], crs=4326).to_file(tmp_path / "sq.geojson", driver="GeoJSON")
    return tmp_path


def _net_args(d: Path) -> list[str]:
    return ["--source", str(d / "roads.geojson"), "--zone", str(d / "sq.geojson")]


def test_cli_map_coverage(small_network):
    from cli import cli

    d = small_network
    (d / "set.csv").write_text("name\n博园路\nNowhere Rd\n", encoding="utf-8")
    out = d / "out" / "cov.html"
    out.parent.mkdir()  # -o never creates folders
    r = CliRunner().invoke(cli, ["map", "coverage", *_net_args(d), "--test-roads", str(d / "set.csv"),
                                 "--basemap", "none", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "test-road entry matches no road: line 3: Nowhere Rd" in r.stderr
    cov_km = float(re.search(r"([\d.]+) km of test road", r.stdout).group(1))
    assert cov_km == pytest.approx(2.0, abs=0.05)
    assert "50.0% of 4.0 km²" in r.stdout
    page = out.read_text(encoding="utf-8")
    assert EVIL not in page
    meta = json.loads((out.parent / "cov.provenance.json").read_text(encoding="utf-8"))
    assert meta["network"]["source"].endswith("roads.geojson") and meta["network"]["source_sha256"]
    assert meta["test_roads"].startswith(str(d / "set.csv"))


def test_cli_bad_test_roads_is_one_line_and_writes_nothing(small_network):
    from cli import cli

    d = small_network
    (d / "bad.csv").write_text("street\nfoo\n", encoding="utf-8")
    out = d / "cov.html"
    r = CliRunner().invoke(cli, ["map", "coverage", *_net_args(d), "--test-roads", str(d / "bad.csv"),
                                 "-o", str(out)])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icv: error:") and "bad.csv" in lines[0]
    assert not out.exists()


def test_cli_basemap_errors(small_network):
    from cli import cli

    d = small_network
    r = CliRunner(env={"ICV_TIANDITU_KEY": None}).invoke(cli, ["map", "coverage", *_net_args(d), "--basemap",
                                                               "tianditu", "-o", str(d / "t.html")])
    assert r.exit_code == 2 and "Tianditu key" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["map", "coverage", *_net_args(d), "--offline", "--tiles",
                                 "https://example.org/{z}/{x}/{y}.png", "-o", str(d / "t.html")])
    assert r.exit_code == 2 and "local tile URL" in r.stderr
    r = CliRunner(env={"ICV_TIANDITU_KEY": "k123"}).invoke(
        cli, ["map", "coverage", *_net_args(d), "--basemap", "tianditu", "-o", str(d / "t.html")])
    assert r.exit_code == 0, r.output
    assert "tk=k123" in (d / "t.html").read_text(encoding="utf-8")
    assert "k123" not in (d / "t.provenance.json").read_text(encoding="utf-8")


def test_cli_map_mileage(tmp_path):
    from cli import cli

    out = tmp_path / "mil.html"
    r = CliRunner().invoke(cli, ["map", "mileage", "--basemap", "none", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert re.search(r"Jiading: 18\.52 M km = 80\.9% of Shanghai's 22\.90 M km", r.stdout)
    assert "not attributed to a district: 4.38 M km (19.1%)" in r.stdout
    page = out.read_text(encoding="utf-8")
    assert "https://shine.cn/biz/event/2403300087" in page
    meta = json.loads((tmp_path / "mil.provenance.json").read_text(encoding="utf-8"))
    assert meta["city_total"]["value_km"] == 22_900_000
    assert meta["district_figures"][0]["district"] == "Jiading"


def test_cli_map_mileage_with_fleet(small_network):
    from cli import cli

    d = small_network
    pd.DataFrame({"osm_way_ids": ["101", "102", "999"], "enterprise": ["AutoX", "Baidu", "AutoX"],
                  "km": [30.0, 10.0, 5.0]}).to_csv(d / "fleet.csv", index=False)
    out = d / "mf.html"
    r = CliRunner().invoke(cli, ["map", "mileage", *_net_args(d), "--fleet", str(d / "fleet.csv"), "--basemap",
                                 "none", "-o", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "Fleet km by enterprise" in page and "75.0%" in page and "25.0%" in page
    assert "5.0 km match no road piece" in page
    r = CliRunner().invoke(cli, ["map", "mileage", *_net_args(d), "--fleet", str(d / "nope.csv"), "-o", str(out)])
    assert r.exit_code == 2 and "fleet km table not found" in r.stderr


def test_cli_offline(small_network):
    _assets_or_skip()
    from cli import cli

    d = small_network
    out = d / "off.html"
    r = CliRunner().invoke(cli, ["map", "coverage", *_net_args(d), "--offline", "-o", str(out)])
    assert r.exit_code == 0, r.output
    from geo._offline import external_references

    page = out.read_text(encoding="utf-8")
    assert external_references(page) == [] and "tile.openstreetmap.org" not in page


def test_fleet_table_of_another_network_is_refused(tmp_path) -> None:
    import pandas as pd

    from geo import maps, sources
    from geo.errors import InputError

    roads = sources.load_network(Path(__file__).parent / "fixtures" / "small.osm").roads
    good = pd.DataFrame({"piece": [0], "osm_way_ids": [";".join(map(str, roads["osm_way_ids"][0]))],
                         "enterprise": ["A"], "km": [10.0]})
    assert maps.fleet_km_by_piece(good, roads).per_piece["km"].sum() == 10.0
    bad = good.assign(osm_way_ids=["999999"])
    with pytest.raises(InputError, match="another road network"):
        maps.fleet_km_by_piece(bad, roads)


def test_template_syntax_in_osm_names_is_data_not_template_code():
    # branca parses rendered markup as a Jinja template: names must come through as written
    names = ["{{ 7*7 }} Road", "A {% raw %} B", "{# c #}"]
    roads = roads_table([utm_line((X0 + 200, Y0 + 200 + 400 * i), (X0 + 1800, Y0 + 200 + 400 * i)) for i in range(3)],
                        name=names)
    m = maps.coverage_map(roads, ZONE, zone_name="zone {{ 6*7 }}", test_set_label="set {% if 1 %}x{% endif %}")
    page = maps.map_html(m)
    data = [json.loads(t) for t in re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S)]
    shown = {v for d in data for row in d["rows"] for v in row if isinstance(v, str)}
    assert set(names) | {"zone {{ 6*7 }}"} <= shown
    assert "49 Road" not in page
    assert "set {% if 1 %}x{% endif %}" in page  # the title block, as written


def test_encode_geometries_equals_encoding_one_by_one():
    from shapely.geometry import GeometryCollection, LinearRing, MultiPolygon

    geoms = [
        LineString([(121.1, 31.2), (121.100001, 31.200001), (121.2, 31.3)]),  # 2nd vertex rounds onto the 1st
        MultiLineString([[(121.0, 31.0), (121.5, 31.5)], [(122.0, 31.0), (122.00001, 31.00002), (122.1, 31.1)]]),
        Polygon([(0, 0), (1, 0), (1, 1), (0, 0)], [[(0.2, 0.1), (0.5, 0.1), (0.5, 0.4), (0.2, 0.1)]]),
        MultiPolygon([Polygon([(0, 0), (1, 0), (1, 1)]), Polygon([(5, 5), (6, 5), (6, 6)])]),
        GeometryCollection([LineString([(0, 0), (1, 1)]), Polygon([(0, 0), (1, 0), (1, 1)])]),
        LinearRing([(0, 0), (1, 0), (1, 1)]), None, LineString(), Polygon(), LineString([(3, 3), (3, 3)]),
        LineString([(121.123456789, 31.987654321, 7.0), (121.2, 31.2, 8.0)]),  # z is dropped
    ]
    assert maps.encode_geometries(geoms) == [maps.encode_geometry(g) for g in geoms]
    # by hand: x0, y0 on the 1e-5 grid, then deltas; the vertex that rounding repeats is dropped
    assert maps.encode_geometries(geoms[:1]) == [[[12110000, 3120000, 10000, 10000]]]
    assert maps.encode_geometries([]) == []


def test_length_per_cell_whole_pieces_edges_and_cells_that_are_not_boxes():
    cells, cols, _ = maps.square_grid((0.0, 0.0, 2000.0, 1000.0), 1000.0)
    lines = np.array([LineString([(100, 100), (400, 500)]),     # inside cell 0: 500 m, counted whole
                      LineString([(1000, 200), (1000, 700)]),   # on the shared edge: in both cells
                      LineString([(900, 900), (1300, 900)])], dtype=object)  # crosses: 100 + 300
    km = dict(zip(cols.tolist(), maps.length_per_cell(lines, cells).tolist(), strict=True))
    assert km == {0: pytest.approx(500 + 500 + 100), 1: pytest.approx(500 + 300)}
    # a triangle's bounds hold the line, the triangle does not (no shortcut for cells that are not boxes)
    tri = np.array([Polygon([(0, 0), (1000, 0), (0, 1000)])], dtype=object)
    inside_bounds = np.array([LineString([(600, 600), (900, 900)]), LineString([(100, 100), (200, 100)])],
                             dtype=object)
    assert maps.length_per_cell(inside_bounds, tri).tolist() == [pytest.approx(100.0)]
