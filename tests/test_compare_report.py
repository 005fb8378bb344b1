"""`icv compare` and `icv report` (the main job) with click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from geo import reported, sources, stats, zones


@pytest.fixture(scope="module")
def jiading_stats(shared_data: Path):
    zone = zones.load_zone("jiading")
    net = sources.load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    return zone, stats.road_stats(net.stats_roads, zone)


def rows_by(doc: dict, figure: str) -> list[dict]:
    return [r for r in doc["rows"] if r["figure"] == figure]


def test_compare_sets_computed_beside_reported(runner: CliRunner, shared_data: Path, jiading_stats) -> None:
    zone, st = jiading_stats
    r = runner.invoke(cli, ["compare", "--source", str(shared_data / "jiading_osm_signalized.osm"),
                            "--as-of", "2024-03-01", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    covered, area = rows_by(doc, "area_km2")  # the coverage claim's test first, the outline beside it
    assert covered["definition"].startswith("covered_area_km2") and covered["computed"] < area["computed"]
    assert area["reported"] == 463 and area["as_of"] == "2024-02"
    assert area["computed"] == pytest.approx(zone.area_km2)
    assert area["delta"] == pytest.approx(zone.area_km2 - 463)
    assert area["delta_pct"] == pytest.approx(100 * (zone.area_km2 - 463) / 463)
    assert "shine.cn" in area["source"]
    km = rows_by(doc, "test_road_km")
    assert [row["definition"].split(":")[0] for row in km] == ["centerline_km", "carriageway_km"]
    assert km[1]["computed"] == pytest.approx(st.value("carriageway_km"))
    assert km[0]["computed"] == pytest.approx(st.value("centerline_km"))
    assert km[0]["computed"] < km[1]["computed"]
    assert km[1]["delta"] == pytest.approx(st.value("carriageway_km") - 1117)
    [streets] = rows_by(doc, "streets")
    assert streets["reported"] == 636 and streets["computed"] == st.value("named_streets")
    for fig in ("vehicles", "enterprises", "test_mileage_km", "share_of_city_mileage"):
        [row] = rows_by(doc, fig)
        assert row["computed"] is None and "needs fleet data" in row["note"]
    assert {r["figure"] for r in doc["rows"]} >= {"ref_km:G2", "ref_km:G1503", "expressway_km"}
    # the partial subset reaches a small part of the zone: the output says so
    assert "lower bounds" in doc["meta"]["network reach"]


def test_compare_as_of_picks_earlier_figures(runner: CliRunner) -> None:
    r = runner.invoke(cli, ["compare", "--no-network", "--as-of", "2021-01-01", "--format", "json"])
    assert r.exit_code == 0, r.output
    [km] = rows_by(json.loads(r.stdout), "test_road_km")
    expected = reported.latest_figure("Jiading", "test_road_km", "2021-01-01")
    assert km["reported"] == expected.value == 315
    assert km["computed"] is None


def test_compare_other_place_is_reported_only(runner: CliRunner) -> None:
    r = runner.invoke(cli, ["compare", "--place", "Wuhan", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["rows"] and all(row["computed"] is None for row in doc["rows"])
    assert all(row["place"] == "Wuhan" for row in doc["rows"])


def test_compare_history_is_a_sorted_time_series(runner: CliRunner) -> None:
    r = runner.invoke(cli, ["compare", "--history", "--figure", "test_road_km", "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = [ln.split(",") for ln in r.stdout.splitlines()[1:] if ln and not ln.startswith("#")]
    dates = [ln[2] for ln in lines]
    assert dates == sorted(dates) and len(dates) >= 5
    assert {ln[1] for ln in lines} == {"test_road_km"}


def test_compare_unknown_place(runner: CliRunner) -> None:
    r = runner.invoke(cli, ["compare", "--place", "Atlantis", "--no-network"])
    assert r.exit_code == 2 and r.stderr.startswith("icv: error:") and r.stderr.count("\n") == 1


def test_compare_without_cache_warns_and_keeps_area(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(cli, ["compare", "--cache-dir", str(tmp_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "icv pull" in r.stderr
    doc = json.loads(r.stdout)
    assert rows_by(doc, "area_km2")[0]["computed"] is not None
    assert rows_by(doc, "test_road_km")[0]["computed"] is None


def test_report_writes_report_and_maps(runner: CliRunner, shared_data: Path, tmp_path: Path, jiading_stats) -> None:
    _, st = jiading_stats
    out = tmp_path / "maps"
    r = runner.invoke(cli, ["report", "--source", str(shared_data / "jiading_osm_signalized.osm"),
                            "--out-dir", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} >= {"report.md", "coverage.html", "mileage_share.html"}
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "© OpenStreetMap contributors (ODbL)" in md
    assert f"{st.value('carriageway_km'):,.2f}" in md
    assert "sha256 " in md and "road filter: drive" in md
    doc = json.loads(r.stdout)
    assert rows_by(doc, "test_road_km")[1]["computed"] == pytest.approx(st.value("carriageway_km"))
    assert "[1/5]" in r.stderr and "[5/5]" in r.stderr  # progress on stderr, data on stdout
    assert {row["verdict"] for row in doc["rows"]} >= {"consistent lower bound", "not visible"}


def test_report_reads_as_a_finding(runner: CliRunner, shared_data: Path, tmp_path: Path, jiading_stats) -> None:
    import re

    from geo.verdicts import VERDICT_COLOURS

    _, st = jiading_stats
    out = tmp_path / "maps"
    r = runner.invoke(cli, ["report", "--source", str(shared_data / "jiading_osm_signalized.osm"),
                            "--out-dir", str(out), "--no-maps", "--format", "json"])
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text(encoding="utf-8")
    finding = md.split("## Finding\n\n", 1)[1].split("\n\n", 1)[0]
    sentences = [x for x in re.split(r"(?<=[.])\s+(?=[A-Z0-9])", finding) if x]
    assert 3 <= len(sentences) <= 6, sentences
    assert "cannot see expressway\\_km, ref\\_km:G1503 and ref\\_km:G2" in finding
    assert f"{st.value('carriageway_km'):,.1f} km against 1,117 km" in finding  # the lower bound, with its numbers
    assert "closest" in finding or "nearest" in finding
    # a compact table: 7 short columns, full definitions listed below it
    table = [ln for ln in md.split("## Reported and computed", 1)[1].split("![", 1)[0].splitlines() if ln.startswith("|")]
    assert table[0] == "| figure | reported | as of | computed | definition | delta % | verdict |"
    assert all(len(cell) <= 40 for ln in table for cell in ln.split("|")), max(table, key=len)
    assert "| expressway\\_km | 41 km | 2024-02 | not visible | expressway\\_km | — | not visible |" in table
    assert "### Definitions" in md and "### Verdict rules" in md and "±5 %" in md
    # the chart beside report.md, embedded, in the verdict colours, with provenance
    assert "](verdicts.svg)" in md
    svg = (out / "verdicts.svg").read_text(encoding="utf-8")
    assert svg.startswith("<?xml") and "</svg>" in svg
    for v in ("consistent lower bound", "not visible", "agrees"):
        assert VERDICT_COLOURS[v].lower() in svg.lower() and v in svg
    assert "OpenStreetMap contributors (ODbL)" in svg and "filter: drive" in svg and "zone: jiading" in svg


def test_report_escapes_names_in_markdown(runner: CliRunner, fixtures_dir: Path, tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    from geo._format import md_escape

    assert md_escape("a|b <img src=x onerror=alert(1)>") == "a\\|b \\<img src=x onerror=alert(1)\\>"
    hostile = tmp_path / "<img src=z onerror=alert(3)>.geojson"
    gpd.GeoDataFrame({"name": ["x"]}, geometry=[box(121.19, 31.29, 121.22, 31.36)], crs=4326).to_file(hostile)
    r = runner.invoke(cli, ["report", "--source", str(fixtures_dir / "small.osm"), "--zone", str(hostile),
                            "--out-dir", str(tmp_path / "out"), "--no-maps", "--format", "markdown"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    import re

    raw_tag = re.compile(r"(?<!\\)<img")  # only an escaped \<img (shown as text) may appear
    assert not raw_tag.search(md) and not raw_tag.search(r.stdout)
    assert "\\<img src=z onerror=alert(3)\\>" in md
    svg = (tmp_path / "out" / "verdicts.svg").read_text(encoding="utf-8")
    assert "<img" not in svg  # the chart's text is XML-escaped


def test_compare_sets_fleet_figures_beside_reported(runner: CliRunner, fixtures_dir: Path, zone_file: Path,
                                                     tmp_path: Path) -> None:
    src = str(fixtures_dir / "small.osm")
    log = tmp_path / "fleet.parquet"
    r = runner.invoke(cli, ["fleet", "simulate", "--source", src, "--zone", str(zone_file), "-o", str(log),
                            "--vehicles", "4", "--enterprises", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["fleet", "mileage", str(log), "--source", src, "--zone", str(zone_file),
                            "--out-dir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "out" / "mileage_figures.json").read_text(encoding="utf-8"))["figures"]
    r = runner.invoke(cli, ["compare", "--no-network", "--as-of", "2024-03-01", "--format", "json",
                            "--fleet-summary", str(tmp_path / "out" / "mileage_figures.json")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    [veh] = rows_by(doc, "vehicles")
    assert veh["reported"] == 638 and veh["computed"] == 4 == summary["vehicles"]["value"]
    assert veh["delta"] == 4 - 638
    [ent] = rows_by(doc, "enterprises")
    assert ent["computed"] == 2
    [km] = rows_by(doc, "test_mileage_km")
    assert km["computed"] == pytest.approx(summary["test_mileage_km"]["value"])
    assert "SYNTHETIC" in veh["definition"]
    assert veh["verdict"] == "not comparable" and "SYNTHETIC" in veh["computed_reason"]  # never a contradiction
