"""`icv compare` is a thin front end: the library's compare_rows gives the rows the command prints."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import geo
from cli import cli


def test_compare_command_prints_the_library_rows(shared_data: Path) -> None:
    src = shared_data / "jiading_osm_signalized.osm"
    from geo.pipeline import load

    zone, net = load(src, "jiading")
    place, rows, meta = geo.compare_rows(zone, net)
    assert place == "Jiading"
    by = {(r["figure"], str(r.get("definition")).split(":")[0]): r for r in rows}
    # the partial extract: expressway not visible (null, not 0), road km a lower bound
    assert by[("expressway_km", "expressway_km")]["verdict"] == "not visible"
    assert by[("expressway_km", "expressway_km")]["computed"] is None
    assert by[("test_road_km", "carriageway_km")]["verdict"] == "consistent lower bound"
    assert abs(by[("test_road_km", "carriageway_km")]["computed"] - 188.78) < 0.01  # the data README's 188.8 km
    assert "20.7%" in meta["network reach"]
    r = CliRunner().invoke(cli, ["compare", "--source", str(src), "--format", "json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    printed_rows = printed["rows"] if isinstance(printed, dict) else printed
    assert [(p["figure"], p["verdict"], p["computed"]) for p in printed_rows] == \
        [(q["figure"], q["verdict"], q["computed"]) for q in rows]


def test_another_place_gets_reported_figures_only(shared_data: Path) -> None:
    zone = geo.resolve_zone("jiading")
    place, rows, meta = geo.compare_rows(zone, None, place="Wuhan")
    assert place == "Wuhan" and "none" in meta["computed"]
    assert rows and all(r.get("computed") is None for r in rows)
