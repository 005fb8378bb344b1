"""Outputs and a library that fit the ecosystem (issue 16): portable locks, plain CSV, geometry
outputs, tables by display width, the public API, messages and maps without a CDN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Run the CLI as Windows would: no ``fcntl``, and ``os.kill(pid, 0)`` is not a harmless probe.
_NO_POSIX = """
import os, sys
sys.modules["fcntl"] = None  # import fcntl -> ImportError, as on Windows
_kill = os.kill
def kill(pid, sig):
    # psutil probes with signal 0 on POSIX only (OpenProcess on Windows); icv's own code never may
    if sig == 0 and "psutil" not in sys._getframe(1).f_code.co_filename:
        raise AssertionError("os.kill(pid, 0) terminates the process on Windows")
    return _kill(pid, sig)
os.kill = kill
from cli import main
main(sys.argv[1:])
"""


def test_pull_runs_without_fcntl(fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # a stale temporary file of a dead writer: the sweep must ask for its pid without os.kill
    cache.mkdir()
    stale = cache / ".roads-fixture_zone-drive.999999999.abcdefgh.tmp.parquet"
    stale.write_bytes(b"x")
    args = ["pull", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
            "--cache-dir", str(cache)]
    r = subprocess.run([sys.executable, "-c", _NO_POSIX, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in cache.glob("roads-*")) == ["roads-fixture_zone-drive.json",
                                                             "roads-fixture_zone-drive.parquet"]
    assert not stale.exists()
    side = json.loads((cache / "roads-fixture_zone-drive.json").read_text(encoding="utf-8"))
    assert side["rows"] == 8
    # and read back through the same lock
    r = subprocess.run([sys.executable, "-c", _NO_POSIX, "roads", "--zone", str(zone_file), "--cache-dir",
                        str(cache), "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"][-1]["pieces"] == 8


def test_pid_check_never_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    from geo import _atomic

    real_kill = os.kill

    def guarded(pid: int, sig: int) -> None:
        if "psutil" not in sys._getframe(1).f_code.co_filename:
            raise AssertionError("icv called os.kill")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", guarded)
    assert _atomic._pid_alive(os.getpid()) is True
    assert _atomic._pid_alive(999_999_999) is False


# ---------------------------------------------------------------- plain CSV (item 1), -o (item 6)

def test_csv_is_header_and_rows_with_a_sidecar(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    import pandas as pd
    from cli import cli

    out = tmp_path / "roads.csv"
    r = runner.invoke(cli, ["roads", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--format", "csv", "-o", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    # small.osm: 8 pieces in 5 classes (+ the total row), nothing else in the file
    assert list(df.columns) == ["highway", "pieces", "km", "share_pct"]
    assert df["highway"].iloc[-1] == "total" and df["pieces"].iloc[-1] == 8
    assert df["pieces"].iloc[:-1].sum() == 8
    assert not any(str(v).startswith("#") for v in df.iloc[:, 0])
    side = json.loads((tmp_path / "roads.provenance.json").read_text(encoding="utf-8"))
    assert side["file"] == "roads.csv" and side["source_kind"] == "osm-xml"
    assert side["attribution"] == "© OpenStreetMap contributors (ODbL)"
    assert "roads.provenance.json" in r.stderr
    # to stdout: rows only on stdout, the provenance as one stderr line
    r = runner.invoke(cli, ["roads", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--format", "csv"])
    assert r.stdout.splitlines()[0] == "highway,pieces,km,share_pct" and len(r.stdout.splitlines()) == len(df) + 1
    assert "OpenStreetMap" in r.stderr and "OpenStreetMap" not in r.stdout


def test_empty_csv_keeps_its_header() -> None:
    from geo._format import render

    assert render([], "csv", columns=["piece", "km"], meta={"source": "x"}) == "piece,km\n"


def test_excel_csv_has_a_bom(runner, tmp_path: Path) -> None:
    from cli import cli

    out = tmp_path / "z.csv"
    r = runner.invoke(cli, ["zone", "show", "shanghai_districts", "--format", "csv", "--excel", "-o", str(out)])
    assert r.exit_code == 0, r.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfname,kind,")
    assert "嘉定区" in raw.decode("utf-8-sig") or "Jiading" in raw.decode("utf-8-sig")
    r = runner.invoke(cli, ["zone", "show", "jiading", "--excel"])
    assert r.exit_code == 2 and "--excel applies to --format csv" in r.stderr


def test_output_into_a_missing_folder_is_refused(runner, tmp_path: Path) -> None:
    from cli import cli

    out = tmp_path / "missing" / "deeper" / "x.csv"
    r = runner.invoke(cli, ["zone", "show", "jiading", "--format", "csv", "-o", str(out)])
    assert r.exit_code == 5
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and str(out.parent) in lines[0]
    assert not (tmp_path / "missing").exists()


# ---------------------------------------------------------------- messages (item 6)

def test_piped_pull_shows_each_retry_once_and_no_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geopandas as gpd
    from overpass_standin import OverpassStandIn
    from test_overpass import AREA, HAND_OSM

    osm = tmp_path / "hand.osm"
    osm.write_text(HAND_OSM, encoding="utf-8")
    zone = tmp_path / "hand_zone.geojson"
    gpd.GeoDataFrame({"name": ["hand_zone"]}, geometry=[AREA], crs=4326).to_file(zone)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with OverpassStandIn(osm) as server:
        server.retry_after = "0"
        server.script = ["503", "ok"]
        r = subprocess.run([sys.executable, "-m", "cli", "pull", "--source", "overpass", "--overpass-url",
                            server.url, "--zone", str(zone), "--cache-dir", str(tmp_path / "cache"),
                            "--timeout", "10"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        assert server.interpreter_count == 2
    assert r.stderr.count("HTTP 503") == 1 and r.stderr.count("try 2 of") == 1, r.stderr
    assert "\r" not in r.stderr and "it/s" not in r.stderr and "B/s" not in r.stderr  # no bar into a pipe
