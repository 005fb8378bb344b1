"""CLI basics with click's CliRunner: version, pull, roads, output formats, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from cli import cli
from geo import __version__


def test_version(runner: CliRunner) -> None:
    r = runner.invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_roads_table_and_formats(runner: CliRunner, fixtures_dir: Path, zone_file: Path) -> None:
    src = str(fixtures_dir / "small.osm")
    r = runner.invoke(cli, ["roads", "--source", src, "--zone", str(zone_file), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    rows = {row["highway"]: row for row in doc["rows"]}
    assert rows["total"]["pieces"] == 8
    assert rows["motorway"]["pieces"] == 1
    assert doc["meta"]["source_kind"] == "osm-xml"
    assert doc["meta"]["attribution"] == "© OpenStreetMap contributors (ODbL)"
    r = runner.invoke(cli, ["roads", "--source", src, "--zone", str(zone_file), "--format", "csv"])
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert table[0].keys() >= {"highway", "pieces", "km", "share_pct"}
    r = runner.invoke(cli, ["roads", "--source", src, "--zone", str(zone_file), "--format", "markdown"])
    assert r.stdout.startswith("### Road network") and "| highway |" in r.stdout
    r = runner.invoke(cli, ["roads", "--source", src, "--zone", str(zone_file), "--filter", "arterial"])
    assert r.exit_code == 0 and "residential" not in r.stdout


def test_output_file_is_written(runner: CliRunner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()  # -o never creates folders (tests/test_ecosystem.py)
    out = tmp_path / "out" / "roads.json"
    r = runner.invoke(cli, ["roads", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--format", "json", "-o", str(out)])
    assert r.exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert not list(out.parent.glob(".*tmp*"))  # no temporary file left


def test_pull_then_read_cache(runner: CliRunner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert len(list(cache.glob("roads-fixture_zone-drive.*"))) == 2
    r = runner.invoke(cli, ["roads", "--zone", str(zone_file), "--cache-dir", str(cache), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"][-1]["pieces"] == 8


def test_bad_input_one_line_no_traceback(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    bad = tmp_path / "page.osm"
    bad.write_text("<html><body>429 Too Many Requests</body></html>")
    r = runner.invoke(cli, ["roads", "--source", str(bad), "--zone", str(zone_file)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("icv: error:")
    assert "HTML" in r.stderr and str(bad) in r.stderr and "Traceback" not in r.stderr
    r = runner.invoke(cli, ["roads", "--zone", str(zone_file), "--cache-dir", str(tmp_path / "none")])
    assert r.exit_code == 4 and "icv pull" in r.stderr


def test_debug_shows_traceback(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    bad = tmp_path / "empty.osm"
    bad.write_bytes(b"")
    r = runner.invoke(cli, ["--debug", "roads", "--source", str(bad), "--zone", str(zone_file)])
    assert r.exit_code != 0 and r.exception is not None


def test_bad_highway_list(runner: CliRunner, fixtures_dir: Path, zone_file: Path) -> None:
    r = runner.invoke(cli, ["roads", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--highway", "primary;drop"])
    assert r.exit_code == 2 and "--highway" in r.stderr


def test_output_through_a_symlink_and_into_an_unwritable_place(runner: CliRunner, tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    r = runner.invoke(cli, ["zone", "list", "--format", "json", "-o", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and json.loads(real.read_text(encoding="utf-8"))["rows"]
    r = runner.invoke(cli, ["zone", "list", "-o", "/proc/icv-test/out.json"])
    assert r.exit_code == 5 and r.stderr.startswith("icv: error: cannot") and r.stderr.count("\n") == 1
