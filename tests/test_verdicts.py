"""Verdicts, reconciled definitions and users' own reported figures.

Known answers: rows written by hand for the verdict rules; a synthetic network
whose lengths are known by construction (and re-measured here with plain
pyproj + shapely) with a planted definition; the shared partial extract of south
Jiading, where the expressways lie outside the extract.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyproj
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st_
from shapely.geometry import LineString, box

from cli import cli
from geo import reconcile, reported, sources, stats, verdicts, zones
from geo.verdicts import Tolerances, assign_verdicts


def row(figure: str, reported_: float | None, computed: float | None, unit: str, definition: str = "x: y",
        qualifier: str | None = "exact") -> dict:
    delta = None if computed is None or reported_ is None else computed - reported_
    return {"figure": figure, "reported": reported_, "computed": computed, "unit": unit, "definition": definition,
            "qualifier": qualifier, "delta": delta, "delta_pct": None if delta is None else 100 * delta / reported_,
            "note": ""}


# ---------------------------------------------------------------- the rules, on hand-written rows

@pytest.mark.parametrize(("computed", "reach", "expected"), [
    (1100.0, 0.99, "agrees"),                    # -1.5 % on a whole-zone network
    (1060.0, 0.99, "contradicts"),               # -5.1 %: just outside 5 %
    (1062.0, 0.99, "agrees"),                    # -4.9 %
    (1000.0, 0.50, "consistent lower bound"),    # partial network: below is a lower bound
    (1300.0, 0.50, "exceeds"),                   # a lower bound already above reported
    (1100.0, 0.50, "agrees"),
    (1000.0, None, "consistent lower bound"),    # unknown reach: never a contradiction
    (0.0, 0.99, "contradicts"),                  # whole network, nothing there: a real contradiction
])
def test_length_verdicts(computed, reach, expected) -> None:
    [r] = assign_verdicts([row("test_road_km", 1117, computed, "km")], reach=reach)
    assert r["verdict"] == expected
    assert "±5 %" in r["verdict_rule"]


def test_not_visible_leaves_computed_out_with_the_reason() -> None:
    rows = [row("ref_km:G2", 19.5, 0.0, "km", "no piece with ref G2 in the zone"),
            row("expressway_km", 41, 0.0, "km", "expressway_km: centerline km of highway=motorway")]
    for r in assign_verdicts(rows, reach=0.207):
        assert r["verdict"] == "not visible"
        assert r["computed"] is None and r["delta"] is None and r["delta_pct"] is None  # never 0 and -100 %
        assert "20.7 % of the zone" in r["computed_reason"] and r["note"].startswith("not visible")
    assert rows[0]["computed"] == 0.0  # the input rows are not changed


def test_area_tolerance_is_two_percent_and_does_not_depend_on_reach() -> None:
    d = "zone_area_km2: outline"
    got = [r["verdict"] for r in assign_verdicts(
        [row("district_area_km2", 463.9, 455.0, "km2", d), row("district_area_km2", 463.9, 450.0, "km2", d)],
        reach=0.2)]
    assert got == ["agrees", "contradicts"]  # -1.9 % / -3.0 %; the outline is not a network figure
    # the outline beside a coverage claim is context, not a test of it
    [o] = assign_verdicts([row("area_km2", 463, 462.44, "km2", d)], reach=0.2)
    assert o["verdict"] == "not comparable" and "100.1 %" in o["computed_reason"]
    # the covered area is a network figure: a lower bound on a partial network
    [c] = assign_verdicts([row("area_km2", 463, 95.7, "km2", "covered_area_km2: within 500 m")], reach=0.207)
    assert c["verdict"] == "consistent lower bound" and "±2 %" in c["verdict_rule"]


def test_tolerances_are_configurable() -> None:
    r = row("streets", 636, 600, "count")  # -5.7 %
    assert assign_verdicts([r], reach=1.0)[0]["verdict"] == "contradicts"
    [wide] = assign_verdicts([r], reach=1.0, tolerances=Tolerances(count_pct=6))
    assert wide["verdict"] == "agrees" and "±6 %" in wide["verdict_rule"]
    with pytest.raises(ValueError):
        Tolerances(length_pct=-1)


def test_qualifiers_reported_only_and_computed_only() -> None:
    rows = assign_verdicts([
        row("vehicles", 200, 300, "count", "vehicles: fleet log", qualifier="at_least"),  # "more than 200"
        row("vehicles", 200, 150, "count", "vehicles: fleet log", qualifier="at_least"),
        row("vehicles", 638, 4, "count", "vehicles: distinct vehicle ids (SYNTHETIC log)"),
        row("test_road_km", 1300, 1300, "km", qualifier="target"),
        row("test_mileage_km", 18.52e6, None, "km"),
        row("carriageway_km", None, 188.8, "km"),
    ], reach=1.0)
    assert [r["verdict"] for r in rows] == ["agrees", "contradicts", "not comparable", "not comparable",
                                            "reported only", "not comparable"]
    assert "SYNTHETIC" in rows[2]["computed_reason"]
    assert rows[4]["verdict_rule"].startswith("reported only")


# ---------------------------------------------------------------- reconcile, on a table of pieces

def pieces_table(spec: list[tuple[str, float, float, tuple[str, ...]]]) -> pd.DataFrame:
    return pd.DataFrame({"highway": [s[0] for s in spec], "clipped_m": [s[1] for s in spec],
                         "centerline_m": [s[2] for s in spec], "names": [s[3] for s in spec]})


# lengths chosen so that no other definition of the space comes within 13 % of the planted one (5.8 km)
KM = {"motorway": 0.8, "motorway_link": 0.7, "trunk": 0.2, "primary": 0.8, "primary_link": 0.8, "secondary": 0.5,
      "tertiary": 0.3, "tertiary_link": 1.7, "unclassified": 1.4, "residential": 0.2}
NAMES = {"motorway": "京沪高速", "trunk": "曹安公路", "primary": "嘉松北路", "secondary": "胜辛路", "tertiary": "墨玉路",
         "residential": "安亭路"}
PIECES = pieces_table([
    ("motorway", 800, 400, ("京沪高速",)), ("motorway", 800, 400, ("京沪高速",)),  # a dual carriageway, paired
    *[(c, 1000 * k, 1000 * k, (NAMES[c],) if c in NAMES else ()) for c, k in KM.items() if c != "motorway"],
    ("service", 5000, 5000, ("停车场",)),  # outside every definition
])


def test_definition_space_is_the_documented_size_and_values() -> None:
    space = reconcile.definition_space(PIECES)
    assert sum(d.unit == "km" for d in space) == 2 * 7 * 2 * 2 == 56
    assert sum(d.unit == "count" for d in space) == 7 * 2 == 14
    by = {d.label: d.value for d in space}
    assert by["centerline km, motorway–tertiary with links"] == pytest.approx(5.8)  # .8+.7+.2+.8+.8+.5+.3+1.7
    assert by["carriageway km, motorway no links"] == pytest.approx(1.6)
    assert by["centerline km, motorway–residential no links, named roads only"] == pytest.approx(2.8)
    assert by["distinct street names, motorway–secondary no links"] == 4
    masked = reconcile.definition_space(PIECES, test_mask=PIECES["highway"].isin(["trunk", "primary"]).to_numpy())
    assert sum(d.unit == "km" for d in masked) == 112
    assert {d.label: d.value for d in masked}["carriageway km, motorway–residential with links, test-road set"] == \
        pytest.approx(1.0)


def test_closest_finds_the_planted_definition_first_and_no_false_match() -> None:
    space = reconcile.definition_space(PIECES)
    hits, tried = reconcile.closest(space, 5.8, "km")
    assert tried == 56
    assert hits == [{"definition": "centerline km, motorway–tertiary with links", "value": 5.8, "delta_pct": 0.0}]
    # 30 km is more than 5 % from every definition: the nearest 3, none of them claimed as a match
    hits, _ = reconcile.closest(space, 30.0, "km")
    assert len(hits) == 3 and all(abs(h["delta_pct"]) > 5 for h in hits)
    assert hits[0]["value"] == pytest.approx(max(d.value for d in space if d.unit == "km"))


# ---------------------------------------------------------------- the CLI on a synthetic network

LAT0, LON0 = 31.30, 121.20
UTM51 = pyproj.Transformer.from_crs(4326, 32651, always_xy=True)


def _way_lines() -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """Horizontal ways 250 m apart (no pairing) except the motorway's two carriageways (20 m apart)."""
    dlat_m = 1 / 111_000.0
    dlon_km = 1 / (111.32 * math.cos(math.radians(LAT0)))
    spec = [  # tags, length in km, latitude offset in m, reversed
        ({"highway": "motorway", "ref": "G2", "name": NAMES["motorway"], "oneway": "yes"}, KM["motorway"], 0, False),
        ({"highway": "motorway", "ref": "G2", "name": NAMES["motorway"], "oneway": "yes"}, KM["motorway"], 20, True),
    ]
    for i, (c, k) in enumerate((c, k) for c, k in KM.items() if c != "motorway"):
        tags = {"highway": c, **({"name": NAMES[c]} if c in NAMES else {}),
                **({"oneway": "yes"} if c.endswith("_link") else {})}
        spec.append((tags, k, 270 + 250 * i, False))
    out = []
    for tags, km, off, reverse in spec:
        lat = LAT0 + off * dlat_m
        n = 6
        pts = [(LON0 + km * dlon_km * i / n, lat) for i in range(n + 1)]
        out.append((tags, pts[::-1] if reverse else pts))
    return out


def write_planted_osm(path: Path) -> dict[str, float]:
    """The synthetic network; returns km per way (plain pyproj + shapely in UTM 51N)."""
    nid, lines = 0, []
    ways = _way_lines()
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n')
        refs = []
        for _, pts in ways:
            ids = []
            for lon, lat in pts:
                nid += 1
                f.write(f'<node id="{nid}" lat="{lat:.7f}" lon="{lon:.7f}"/>\n')
                ids.append(nid)
            refs.append(ids)
        for w, ((tags, pts), ids) in enumerate(zip(ways, refs, strict=True), start=1):
            f.write(f'<way id="{w}">' + "".join(f'<nd ref="{i}"/>' for i in ids)
                    + "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items()) + "</way>\n")
            lines.append(LineString([UTM51.transform(lon, lat) for lon, lat in pts]))
        f.write("</osm>\n")
    return {f"{w}:{tags['highway']}": shapely.length(ln) / 1000 for w, ((tags, _), ln) in
            enumerate(zip(ways, lines, strict=True), start=1)}


PLANTED_TOML = """\
[sources.mine]
publisher = "A test"
url = "https://example.org/planted"
published = "2024-03-01"

[[figure]]
place = "{place}"
figure = "test_road_km"
value = {km:.4f}
unit = "km"
as_of = "2024-02"
source = "mine"

[[figure]]
place = "{place}"
figure = "expressway_km"
value = 30
unit = "km"
as_of = "2024-02"
source = "mine"
"""


def _zone_place(zone_path: Path) -> str:
    """The place whose reported figures `icv compare` uses for this zone (the unit containing it, else its name)."""
    z = zones.load_zone(zone_path)
    pfz = getattr(reported, "place_for_zone", None)
    return (pfz(z).place if pfz else None) or z.meta.get("place") or z.name


@pytest.fixture()
def planted(tmp_path: Path):
    osm = tmp_path / "planted.osm"
    km = write_planted_osm(osm)
    zone_path = tmp_path / "planted_zone.geojson"
    import geopandas as gpd

    gpd.GeoDataFrame({"name": ["planted_zone"]}, geometry=[box(LON0 - 0.01, LAT0 - 0.01, LON0 + 0.04, LAT0 + 0.03)],
                     crs=4326).to_file(zone_path)
    place = _zone_place(zone_path)
    # the planted definition: centerline km of motorway–tertiary with links (the G2 pair counted once)
    planted_km = sum(v for k, v in km.items() if k.split(":")[1] not in ("unclassified", "residential")) \
        - km["1:motorway"]
    toml = tmp_path / "mine.toml"
    toml.write_text(PLANTED_TOML.format(place=place, km=planted_km), encoding="utf-8")
    return osm, zone_path, toml, planted_km, km


def test_reconcile_on_a_synthetic_network_finds_the_planted_definition(runner: CliRunner, planted) -> None:
    osm, zone_path, toml, planted_km, km = planted
    r = runner.invoke(cli, ["compare", "--source", str(osm), "--zone", str(zone_path), "--reported", str(toml),
                            "--reconcile", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    km_rows = [x for x in doc["rows"] if x["figure"] == "test_road_km"]
    assert [x["reported"] for x in km_rows] == [pytest.approx(planted_km, abs=1e-4)] * 2
    first = km_rows[0]["closest_definitions"][0]
    assert first["definition"] == "centerline km, motorway–tertiary with links"
    assert first["value"] == pytest.approx(planted_km, rel=1e-3) and abs(first["delta_pct"]) < 0.1
    assert km_rows[0]["definitions_tried"] == 56
    # 30 km of expressway matches nothing within 5 %: the nearest 3, no false match
    ex, ex_cw = [x for x in doc["rows"] if x["figure"] == "expressway_km"]
    assert ex_cw["computed"] == pytest.approx(km["1:motorway"] + km["2:motorway"], rel=1e-3)  # both sides
    assert ex["computed"] == pytest.approx(km["2:motorway"], rel=1e-3)  # the pair once
    assert len(ex["closest_definitions"]) == 3 and all(abs(d["delta_pct"]) > 5 for d in ex["closest_definitions"])
    assert all(x["verdict"] in verdicts.VERDICTS for x in doc["rows"])


def test_reconcile_table_prints_closest_and_rules(runner: CliRunner, planted) -> None:
    osm, zone_path, toml, planted_km, _ = planted
    r = runner.invoke(cli, ["compare", "--source", str(osm), "--zone", str(zone_path), "--reported", str(toml),
                            "--reconcile"])
    assert r.exit_code == 0, r.output
    assert "closest definitions to test_road_km" in r.stdout and "(56 tried)" in r.stdout
    assert "centerline km, motorway–tertiary with links" in r.stdout
    assert "verdict rule for test_road_km" in r.stdout and "±5 %" in r.stdout


def test_test_road_set_is_what_test_road_km_and_coverage_count(runner: CliRunner, planted, tmp_path: Path) -> None:
    osm, zone_path, toml, _, km = planted
    csv = tmp_path / "test_roads.csv"
    csv.write_text("name,ref,from,to,note\n曹安公路,,,,\n", encoding="utf-8")
    r = runner.invoke(cli, ["compare", "--source", str(osm), "--zone", str(zone_path), "--reported", str(toml),
                            "--test-roads", str(csv), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    km_rows = [x for x in doc["rows"] if x["figure"] == "test_road_km"]
    assert [x["definition"].split(":")[0] for x in km_rows] == ["test_set_centerline_km", "test_set_carriageway_km"]
    assert km_rows[1]["computed"] == pytest.approx(km["4:trunk"], rel=1e-3)
    assert "no test-road set" not in km_rows[1]["note"]
    # without the set the note says so
    r = runner.invoke(cli, ["compare", "--source", str(osm), "--zone", str(zone_path), "--reported", str(toml),
                            "--format", "json"])
    row0 = [x for x in json.loads(r.stdout)["rows"] if x["figure"] == "test_road_km"][0]
    assert "no test-road set" in row0["note"]


# ---------------------------------------------------------------- --reported FILE.toml

def test_reported_file_replaces_and_adds(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(PLANTED_TOML.format(place="Jiading", km=1000.0), encoding="utf-8")
    merged = reported.merge_figures(None, reported.load_reported_figures(f))
    hist = reported.history("Jiading", "test_road_km", figures=merged)
    assert [r.value for r in hist] == [1000.0]  # the shipped history of that figure is replaced
    assert reported.latest_figure("Jiading", "streets", figures=merged).value == 636  # the rest stays
    shipped = reported.load_reported_figures()
    gone = [r for r in shipped if r.place == "Jiading" and r.figure in ("test_road_km", "expressway_km")]
    assert len(gone) >= 2 and len(merged) == len(shipped) - len(gone) + 2


@pytest.mark.parametrize(("old", "new", "field", "line"), [
    ('unit = "km"', 'unit = "m"', "unit", 10),            # the first record's unit
    ("value = 30", 'value = "thirty"', "value", 17),       # the second record's value
    ('as_of = "2024-02"', 'as_of = "2024-13"', "as_of", 11),
    ('source = "mine"\n\n', 'source = "mien"\n\n', "source", 12),  # an unknown source key
    ('unit = "km"\n', 'unit = "km"\nunits = "km"\n', "units", 11),  # an unknown field
])
def test_reported_file_errors_name_line_and_field(runner: CliRunner, tmp_path: Path, old, new, field, line) -> None:
    text = PLANTED_TOML.format(place="Jiading", km=1000.0)
    assert old in text
    f = tmp_path / "bad.toml"
    f.write_text(text.replace(old, new, 1), encoding="utf-8")
    r = runner.invoke(cli, ["compare", "--no-network", "--reported", str(f)])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("icv: error:")
    assert f"field '{field}' (line {line})" in r.stderr and str(f) in r.stderr


# ---------------------------------------------------------------- the shared partial extract

@pytest.fixture(scope="module")
def jiading_compare(shared_data: Path) -> dict:
    r = CliRunner().invoke(cli, ["compare", "--source", str(shared_data / "jiading_osm_signalized.osm"),
                                 "--as-of", "2024-03-01", "--reconcile", "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_partial_extract_expressways_are_not_visible(jiading_compare, shared_data: Path) -> None:
    zone = zones.load_zone("jiading")
    net = sources.load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    st = stats.road_stats(net.roads, zone)
    # independently: no motorway and no G2/G1503 piece in the extract
    assert not net.roads["highway"].isin(["motorway"]).any()
    refs = {x.strip() for v in net.roads["ref"].dropna() for x in str(v).split(";")}
    assert refs and not refs & {"G2", "G1503"}
    by = {}
    for x in jiading_compare["rows"]:
        by.setdefault(x["figure"], []).append(x)
    for fig in ("expressway_km", "ref_km:G2", "ref_km:G1503"):
        for x in by[fig]:
            assert x["verdict"] == "not visible" and x["computed"] is None and x["delta_pct"] is None, x
            assert x["computed_reason"]
    for x in by["test_road_km"]:
        assert x["verdict"] == "consistent lower bound"
    assert by["test_road_km"][1]["computed"] == pytest.approx(st.value("carriageway_km"))
    assert by["streets"][0]["verdict"] == "consistent lower bound"


def test_partial_extract_covered_area_beside_the_outline(jiading_compare, shared_data: Path) -> None:
    import geopandas as gpd

    zone = zones.load_zone("jiading")
    net = sources.load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    # independent: the 500 m buffer of every loaded road in UTM 51N, cut by the zone, over the zone's UTM area
    z = gpd.GeoSeries([zone.geometry], crs=4326).to_crs(32651).iloc[0]
    near = shapely.union_all(net.roads.to_crs(32651).buffer(500).values).intersection(z)
    share = near.area / z.area
    covered, outline = [x for x in jiading_compare["rows"] if x["figure"] == "area_km2"]
    assert covered["definition"].startswith("covered_area_km2: zone area within 500 m of any loaded road")
    assert "no test-road set" in covered["definition"]
    assert covered["computed"] == pytest.approx(share * zone.area_km2, rel=5e-3)
    assert covered["verdict"] == "consistent lower bound"
    assert outline["computed"] == pytest.approx(zone.area_km2) and outline["verdict"] == "not comparable"


def test_whole_zone_threshold_is_configurable(runner: CliRunner, shared_data: Path) -> None:
    # the extract reaches 20.7 % of the zone: taken as the whole zone's, nothing is a lower bound any more
    r = runner.invoke(cli, ["compare", "--source", str(shared_data / "jiading_osm_signalized.osm"),
                            "--as-of", "2024-03-01", "--complete-reach", "20", "--format", "json"])
    assert r.exit_code == 0, r.output
    by = {x["figure"]: x for x in json.loads(r.stdout)["rows"]}
    assert by["test_road_km"]["verdict"] == "contradicts"
    assert by["ref_km:G2"]["verdict"] == "contradicts" and by["ref_km:G2"]["computed"] == 0
    assert "whole zone from 20 %" in by["test_road_km"]["verdict_rule"]


def test_conclusion_sentences_from_verdicts() -> None:
    from geo.report import conclusion

    rows = assign_verdicts([
        row("district_area_km2", 463.9, 462.44, "km2", "zone_area_km2: outline"),
        row("test_road_km", 1117, 1100, "km", "centerline_km: x"),
        row("test_road_km", 1117, 1500, "km", "carriageway_km: x"),   # the agreeing definition stands for the figure
        row("streets", 636, 500, "count", "named_streets: x"),
        row("vehicles", 638, None, "count"),
    ], reach=0.99)
    rows[1]["closest_definitions"] = [{"definition": "centerline km, motorway–residential with links",
                                       "value": 1100.0, "delta_pct": -1.52}]
    rows[1]["definitions_tried"], rows[1]["definitions_within_pct"] = 56, 5.0
    s = conclusion(rows, place="Jiading", reach=0.99)
    assert s[0] == "Of 4 reported figures of Jiading, 3 can be tested against OpenStreetMap here (the loaded network " \
                   "reaches 99.0 % of the zone)."
    assert s[1] == "OSM agrees with district_area_km2 (463.9 km² reported, 462.4 km² computed) and test_road_km " \
                   "(1,117 km reported, 1,100 km computed)."
    assert s[2] == "OSM contradicts streets (500 computed against 636, -21 %)."
    assert s[3].startswith("Reconciling definitions: for test_road_km the closest definition of the 56 tried is "
                           "centerline km, motorway–residential with links (1,100 km, -1.5 %)")
    assert 3 <= len(s) <= 6 and not any("cannot see" in x for x in s)


def test_whole_zone_network_agrees_and_contradicts(runner: CliRunner, planted, tmp_path: Path) -> None:
    osm, zone_path, _, planted_km, km = planted
    place = _zone_place(zone_path)
    total = sum(km.values())  # carriageway km of every way, measured here with plain pyproj + shapely
    toml = tmp_path / "total.toml"
    toml.write_text(PLANTED_TOML.format(place=place, km=total * 1.03), encoding="utf-8")  # 3 % off: agrees
    r = runner.invoke(cli, ["compare", "--source", str(osm), "--zone", str(zone_path), "--reported", str(toml),
                            "--complete-reach", "1", "--format", "json"])
    assert r.exit_code == 0, r.output
    centre, carriage = [x for x in json.loads(r.stdout)["rows"] if x["figure"] == "test_road_km"]
    assert carriage["computed"] == pytest.approx(total, rel=1e-3)
    assert carriage["verdict"] == "agrees"
    assert centre["verdict"] == "contradicts"  # the G2 pair counted once: 0.8 km less, -13 %
    assert centre["delta_pct"] == pytest.approx(100 * ((total - km["1:motorway"]) - total * 1.03) / (total * 1.03),
                                                abs=0.1)
    r = runner.invoke(cli, ["compare", "--source", str(osm), "--zone", str(zone_path), "--reported", str(toml),
                            "--complete-reach", "1", "--tolerance-length", "2", "--format", "json"])
    carriage = [x for x in json.loads(r.stdout)["rows"] if x["figure"] == "test_road_km"][1]
    assert carriage["verdict"] == "contradicts" and "±2 %" in carriage["verdict_rule"]


@settings(max_examples=300, deadline=None)
@given(rep=st_.floats(0.1, 1e6), ratio=st_.floats(0, 3), reach=st_.floats(0, 1),
       fig=st_.sampled_from(["test_road_km", "streets", "expressway_km"]))
def test_verdict_properties(rep, ratio, reach, fig) -> None:
    unit = "count" if fig == "streets" else "km"
    computed = rep * ratio
    [r] = assign_verdicts([row(fig, rep, computed, unit)], reach=reach)
    off = abs(computed - rep) / rep * 100
    if reach >= 0.95:  # a whole-zone network: agrees or contradicts, by the tolerance only
        assert r["verdict"] == ("agrees" if off <= 5 + 1e-9 else "contradicts") or math.isclose(off, 5)
    elif computed == 0:
        assert r["verdict"] == "not visible" and r["computed"] is None
    else:  # a partial network never contradicts: below is a lower bound, above exceeds
        expected = "agrees" if off <= 5 else "consistent lower bound" if computed < rep else "exceeds"
        assert r["verdict"] == expected or math.isclose(off, 5)
