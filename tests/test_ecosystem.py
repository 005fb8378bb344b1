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
del os.fchmod  # Windows before Python 3.13 has no os.fchmod
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


# ---------------------------------------------------------------- geometry outputs (item 2)

def _expected_pieces(fixtures_dir: Path):
    """The pieces of small.osm by an independent route: the library's own loader, read back plainly."""
    from geo import load_network

    return load_network(fixtures_dir / "small.osm").roads


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb", ".geojson", ".parquet"])
def test_roads_geometry_by_suffix(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path, suffix: str) -> None:
    import geopandas as gpd
    import pyogrio
    import shapely
    from cli import cli

    out = tmp_path / f"roads{suffix}"
    r = runner.invoke(cli, ["roads", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--geometry", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.stderr and "roads.provenance.json" in r.stderr
    want = _expected_pieces(fixtures_dir).sort_values(["u", "v"], ignore_index=True)
    if suffix == ".parquet":  # pyogrio's bundled GDAL has no Parquet driver: GeoParquet through pyarrow
        got = gpd.read_parquet(out)
        crs = got.crs
        ids = [list(map(int, v)) for v in got["osm_way_ids"]]  # a real list column
    else:
        info = pyogrio.read_info(out)
        assert info["features"] == len(want) == 8
        assert info["crs"] == "EPSG:4326"
        got = pyogrio.read_dataframe(out)
        crs = got.crs
        if suffix == ".geojson":
            ids = [list(map(int, v)) for v in got["osm_way_ids"]] if not isinstance(got["osm_way_ids"].iloc[0], str) \
                else [[int(x) for x in v.strip("[]").split(",")] for v in got["osm_way_ids"]]
        else:  # no list type: joined with ';'
            assert all(isinstance(v, str) for v in got["osm_way_ids"])
            ids = [[int(x) for x in v.split(";")] for v in got["osm_way_ids"]]
    assert crs.to_epsg() == 4326 and len(got) == 8
    order = got[["u", "v"]].reset_index(drop=True).sort_values(["u", "v"]).index  # FlatGeobuf orders by its index
    got = got.iloc[order].reset_index(drop=True)
    ids = [ids[i] for i in order]
    assert {"highway", "name", "ref", "oneway", "length_m", "osm_way_ids"} <= set(got.columns)
    assert ids == [list(map(int, v)) for v in want["osm_way_ids"]]
    assert got["length_m"].sum() == pytest.approx(want["length_m"].sum(), rel=1e-9)
    assert shapely.equals_exact(got.geometry.values, want.geometry.values, tolerance=1e-9).all()
    side = json.loads((tmp_path / "roads.provenance.json").read_text(encoding="utf-8"))
    assert side["rows"] == 8 and side["source_kind"] == "osm-xml" and side["crs"] == "EPSG:4326"
    if suffix == ".gpkg":
        meta = pyogrio.read_info(out)["dataset_metadata"]
        assert json.loads(meta["icv_provenance"])["attribution"] == "© OpenStreetMap contributors (ODbL)"


def test_roads_gpkg_without_geometry_is_refused(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    from cli import cli

    out = tmp_path / "roads.gpkg"
    r = runner.invoke(cli, ["roads", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "-o", str(out)])
    assert r.exit_code == 2 and "Add --geometry" in r.stderr and r.stderr.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [zone_file]


def test_pull_exports_beside_the_cache(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    import pyogrio
    from cli import cli

    out = tmp_path / "pulled.fgb"
    r = runner.invoke(cli, ["pull", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--cache-dir", str(tmp_path / "cache"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert pyogrio.read_info(out)["features"] == 8 and (tmp_path / "cache" / "roads-fixture_zone-drive.parquet").exists()
    r = runner.invoke(cli, ["pull", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                            "--cache-dir", str(tmp_path / "cache2"), "-o", str(tmp_path / "x.txt")])
    assert r.exit_code == 2 and "not a geometry format" in r.stderr and not (tmp_path / "cache2").exists()


# ---------------------------------------------------------------- the library (item 4)

def test_import_geo_is_cheap_and_exposes_the_api() -> None:
    code = ("import sys, geo; heavy = [m for m in ('pandas', 'geopandas', 'shapely', 'osmnx', 'folium', 'numpy') "
            "if m in sys.modules]; print(heavy); print(geo.load_zone.__module__, geo.run_report.__module__, "
            "geo.compute_mileage.__module__, geo.coverage_map.__module__, geo.road_stats.__module__, "
            "geo.compare.__module__, geo.load_network.__module__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == "[]"
    assert second == "geo.zones geo.pipeline geo.fleet geo.maps geo.stats geo.pipeline geo.sources"
    import geo

    with pytest.raises(AttributeError):
        geo.no_such_thing  # noqa: B018


def test_errors_are_builtin_subclasses() -> None:
    import geo

    with pytest.raises(ValueError):
        geo.load_zone("no-such-zone-anywhere")
    assert issubclass(geo.CacheError, OSError) and issubclass(geo.OutputError, OSError)
    assert issubclass(geo.SourceUnavailableError, ConnectionError) and issubclass(geo.InputError, ValueError)
    e = geo.CacheError("x", where="w", hint="do y")
    assert str(e) == "w: x. Do y." and e.exit_code == 4


def test_run_report_writes_what_the_command_writes(fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    import geo
    from geo.stats import road_stats

    res = geo.run_report(source=fixtures_dir / "small.osm", zone=zone_file, out_dir=tmp_path / "lib")
    assert set(res.files) == {"report", "verdict chart", "coverage map", "coverage map provenance",
                              "test-mileage share map", "test-mileage share map provenance"}
    assert all(p.is_file() for p in res.files.values())
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == sorted(p.name for p in res.files.values())
    # the numbers are those of road_stats on the same network, and provenance rides along
    st = road_stats(res.network.roads, res.zone)
    row = res.comparison.set_index("figure")
    assert res.figures.set_index("figure").loc["carriageway_km", "value"] == pytest.approx(
        st.value("carriageway_km"), abs=1e-3)
    assert res.comparison.attrs["network"]["source_kind"] == "osm-xml"
    assert res.figures.attrs["attribution"] == "© OpenStreetMap contributors (ODbL)"
    outline = res.comparison[res.comparison["definition"].fillna("").str.startswith("zone_area_km2")]
    assert outline.set_index("figure").loc["area_km2", "computed"] == pytest.approx(res.zone.area_km2, rel=1e-6)
    assert set(row["verdict"]) <= {"agrees", "contradicts", "consistent lower bound", "exceeds", "not visible",
                                   "not comparable", "reported only"}
    assert repr(res).startswith("ReportResult(zone='fixture_zone', pieces=8, ") and len(repr(res)) < 200
    # the command writes the same files, and names each
    from click.testing import CliRunner
    from cli import cli

    r = CliRunner().invoke(cli, ["report", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                                 "--out-dir", str(tmp_path / "cmd")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "cmd").iterdir()) == sorted(p.name for p in res.files.values())
    for name in sorted(p.name for p in res.files.values()):
        assert f"wrote {tmp_path / 'cmd' / name}" in r.stderr


# ---------------------------------------------------------------- maps without a CDN (item 7)

def _assets_installed() -> bool:
    from geo._offline import ASSETS, asset_path
    from geo.errors import OutputError

    try:
        for a in ASSETS.values():
            asset_path(a)
    except OutputError:
        return False
    return True


def test_maps_are_self_contained_by_default(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    if not _assets_installed():
        pytest.skip("web assets not installed: run `python -m geo._offline install`")
    from cli import cli
    from geo._offline import external_references

    base = ["map", "coverage", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file)]
    r = runner.invoke(cli, [*base, "-o", str(tmp_path / "c.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "c.html").read_text(encoding="utf-8")
    refs = external_references(page)
    assert not any("jsdelivr" in u or u.endswith(".js") or u.endswith(".css") for u in refs), refs
    assert "tile.openstreetmap.org" in page  # tiles stay online and optional
    assert json.loads((tmp_path / "c.provenance.json").read_text(encoding="utf-8"))["scripts"] == "inlined"
    r = runner.invoke(cli, [*base, "--cdn", "-o", str(tmp_path / "cdn.html")])
    assert r.exit_code == 0, r.output
    assert "cdn.jsdelivr.net/npm/leaflet" in (tmp_path / "cdn.html").read_text(encoding="utf-8")
    r = runner.invoke(cli, [*base, "--offline", "--basemap", "amap", "-o", str(tmp_path / "a.html")])
    assert r.exit_code == 2 and "without tiles" in r.stderr and not (tmp_path / "a.html").exists()


def test_maps_without_assets_fall_back_to_the_cdn_with_one_warning(runner, fixtures_dir: Path, zone_file: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import cli

    monkeypatch.setenv("ICV_WEB_ASSETS", str(tmp_path / "none"))
    base = ["map", "coverage", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file)]
    r = runner.invoke(cli, [*base, "-o", str(tmp_path / "c.html")])
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("icv: warning:")]
    assert len(warn) == 1 and "python -m geo._offline install" in warn[0] and "CDN" in warn[0]
    assert "cdn.jsdelivr.net/npm/leaflet" in (tmp_path / "c.html").read_text(encoding="utf-8")
    r = runner.invoke(cli, [*base, "--offline", "-o", str(tmp_path / "o.html")])
    assert r.exit_code == 5 and "python -m geo._offline install" in r.stderr and not (tmp_path / "o.html").exists()


# ---------------------------------------------------------------- a fresh machine (item 8)

def test_bare_report_without_cache_tries_overpass_then_names_the_offline_choices(runner, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    import socket

    from cli import cli

    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ICV_OVERPASS_URL", f"http://127.0.0.1:{port}/api")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    r = runner.invoke(cli, ["report", "--timeout", "5"])
    assert r.exit_code == 3, r.output
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("icv: error:")]
    assert len(err) == 1 and "no cached network of zone 'jiading'" in err[0]
    assert f"127.0.0.1:{port}" in err[0] and "--source skeleton" in err[0] and "--source FILE" in err[0]
    assert "Traceback" not in r.output and not (tmp_path / "maps" / "report.md").exists()


def test_readme_second_command_needs_nothing_beside_the_clone(tmp_path: Path) -> None:
    """README's second command, as written, in an empty folder (the skeleton ships in scgraph-data)."""
    pytest.importorskip("scgraph_data")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    second = block[1].strip()
    assert second.startswith(".venv/bin/icv report") and "../shared" not in second
    args = second.split()[2:]
    env = {**os.environ, "ICV_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "cli", "report", *args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env={**env, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "maps" / "report.md").is_file() and (tmp_path / "maps" / "coverage.html").is_file()
    assert "skeleton scgraph-data" in (tmp_path / "maps" / "report.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- text tables (item 3)

def test_text_table_aligns_chinese_names_by_display_width() -> None:
    from wcwidth import wcswidth

    from geo._format import render

    recs = [{"name": "博园路", "km": 1.5, "pieces": 12}, {"name": "Boyuan Road", "km": 22.25, "pieces": 3},
            {"name": "嘉定区曹安公路", "km": 1234.0, "pieces": 1024}]
    text = render(recs, "table", width=80)
    lines = text.splitlines()
    header, rule, *rows = lines
    # every row ends at the same display column: the numbers are right-aligned by display width
    assert len({wcswidth(ln) for ln in [header, rule, *rows]}) == 1, lines
    # the 'km' column has one format: two decimals on every row, thousands separated
    kms = [ln.split()[-2] for ln in rows]
    assert kms == ["1.50", "22.25", "1,234.00"]
    # the name column starts the km column at the same display offset on every row
    ends = {wcswidth(ln[: ln.index(k) + len(k)]) for ln, k in zip(rows, kms)}
    assert len(ends) == 1


def test_text_table_fits_the_width_and_lists_definitions_below() -> None:
    from wcwidth import wcswidth

    from geo._format import render

    long = "a note that is far too long for one cell of a table on a terminal " * 3
    recs = [{"figure": f"f{i}", "value": i * 1.25, "note": long, "source": "http://example.org/" + "x" * 60}
            for i in range(3)]
    text = render(recs, "table", width=72, meta={"definition of f0": "the first figure " * 10})
    assert max(wcswidth(ln) for ln in text.splitlines()) <= 72
    assert "definition of f0: the first figure" in text
    assert text.count("f1") == 1  # one row per record, even when cells wrap


def test_compare_table_uses_short_labels(runner) -> None:
    from wcwidth import wcswidth

    from cli import cli

    r = runner.invoke(cli, ["compare", "--no-network"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    table, _, below = r.stdout.partition("\n\n")
    assert max(wcswidth(ln) for ln in r.stdout.splitlines()) <= 100
    assert "[1]" in table and "source [1]: " in below and "https://" not in table


def test_library_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/library.md, cell by cell, in an empty folder; the values it shows are checked here."""
    import re

    pytest.importorskip("scgraph_data")
    cells = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "library.md").read_text(encoding="utf-8"), re.S)
    assert len(cells) >= 8
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICV_CACHE_DIR", str(tmp_path / "cache"))
    ns: dict = {}
    for cell in cells:
        exec(compile(cell, "docs/library.md", "exec"), ns)  # noqa: S102 - our own documentation
    st, net, zone = ns["st"], ns["net"], ns["zone"]
    # independent check of the one number the notebook shows: clipped length in UTM 51N by plain GeoPandas
    clipped = net.roads.to_crs(32651).clip(__import__("geopandas").GeoSeries([zone.geometry], crs=4326).to_crs(32651))
    assert st.value("carriageway_km") == pytest.approx(clipped.length.sum() / 1000, rel=1e-3)
    assert ns["cmp"].attrs["network"]["attribution"] == "© OpenStreetMap contributors (ODbL)"
    assert sorted(p.name for p in ns["res"].files.values()) == sorted(p.name for p in (tmp_path / "maps").iterdir())
    import pyogrio

    assert pyogrio.read_info(tmp_path / "roads.gpkg")["features"] == len(net.roads)


def test_short_reprs(fixtures_dir: Path, zone_file: Path) -> None:
    import geo

    zone = geo.load_zone(zone_file)
    net = geo.load_network(fixtures_dir / "small.osm", zone=zone)
    st = geo.road_stats(net.roads, zone)
    assert repr(zone).startswith("Zone('fixture_zone', ") and "POLYGON" not in repr(zone)
    assert repr(net).startswith("Network(8 pieces, ") and len(repr(net)) < 200
    assert repr(st).startswith("RoadStats(zone='fixture_zone', pieces=") and len(repr(st)) < 200


# ---------------------------------------------------------------- help texts (item 9)

def _commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_command_has_an_example_and_network_options_last(runner) -> None:
    from cli import cli

    seen = 0
    for path, cmd in _commands(cli):
        r = runner.invoke(cli, [*path, "--help"], env={"COLUMNS": "100"})
        assert r.exit_code == 0, path
        assert "Example" in r.stdout, f"icv {' '.join(path)} --help has no example"
        assert "icv " + path[0] in r.stdout.split("Example", 1)[1], path
        if any(p.name == "source" for p in cmd.params):
            opts, _, net = r.stdout.partition("Network options")
            assert "--source" in net and "--cache-dir" in net and "\n  --source" not in opts, path
            assert net.count("\n  --") == 9  # the nine network options and nothing else
        seen += 1
    assert seen >= 12


def test_fleet_pieces_by_suffix(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    import geopandas as gpd
    import pyogrio
    from cli import cli

    net = ["--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file)]
    log = tmp_path / "log.parquet"
    r = runner.invoke(cli, ["fleet", "simulate", *net, "--vehicles", "2", "--enterprises", "1", "--seed", "3",
                            "-o", str(log)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "km.gpkg"
    r = runner.invoke(cli, ["fleet", "mileage", str(log), *net, "--out-dir", str(tmp_path / "out"),
                            "--pieces", str(out)])
    assert r.exit_code == 0, r.output
    ref = gpd.read_parquet(tmp_path / "out" / "mileage_pieces.parquet")  # the GeoParquet written beside
    info = pyogrio.read_info(out)
    assert info["features"] == len(ref) and info["crs"] == "EPSG:4326"
    got = pyogrio.read_dataframe(out)
    assert set(ref.columns) == set(got.columns)
    assert got["km"].sum() == pytest.approx(ref["km"].sum(), rel=1e-9) and got["km"].sum() > 0
    assert json.loads(pyogrio.read_info(out)["dataset_metadata"]["icv_provenance"])["synthetic_log"] is True
    # the CSV tables beside it are plain: pandas reads exactly the vehicles
    import pandas as pd

    veh = pd.read_csv(tmp_path / "out" / "mileage_by_vehicle.csv")
    assert len(veh) == 2 and not veh.iloc[:, 0].astype(str).str.startswith("#").any()


# ---------------------------------------------------------------- a smaller fixed cost (issue 13, item 2)

_MODULES_AFTER = """
import sys
from cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="icv", standalone_mode=False)
finally:
    print(" ".join(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def _top_modules(args: list[str]) -> set[str]:
    r = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return set(r.stderr.strip().splitlines()[-1].split())


def test_commands_import_only_what_they_use(fixtures_dir: Path, zone_file: Path) -> None:
    heavy = {"pandas", "geopandas", "numpy", "shapely", "pyproj", "osmnx", "networkx", "folium", "requests",
             "pyarrow", "tqdm", "importlib_metadata"}
    assert not _top_modules(["--help"]) & heavy
    assert not _top_modules(["zone", "show", "jiading"]) & {"osmnx", "networkx", "folium", "requests", "tqdm"}
    stats = _top_modules(["stats", "--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file),
                          "--format", "json"])
    assert {"geopandas", "shapely"} <= stats  # what it uses
    assert not stats & {"osmnx", "networkx", "folium", "requests", "tqdm", "branca", "jinja2", "matplotlib"}


def test_empty_fleet_table_keeps_its_header(runner, fixtures_dir: Path, zone_file: Path, tmp_path: Path) -> None:
    import pandas as pd
    from cli import cli

    net = ["--source", str(fixtures_dir / "small.osm"), "--zone", str(zone_file)]
    log = tmp_path / "log.parquet"
    assert runner.invoke(cli, ["fleet", "simulate", *net, "--vehicles", "1", "--enterprises", "1", "--noise", "0",
                               "-o", str(log)]).exit_code == 0
    r = runner.invoke(cli, ["fleet", "mileage", str(log), *net, "--out-dir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "out" / "mileage_bad_rows.csv").read_text(encoding="utf-8")
    assert text == "reason,rows,examples\n"  # a clean synthetic log: no bad rows, and still a header
    assert pd.read_csv(tmp_path / "out" / "mileage_bad_rows.csv").empty
    # --excel: every CSV of the folder with a byte-order mark, read back the same
    r = runner.invoke(cli, ["fleet", "mileage", str(log), *net, "--out-dir", str(tmp_path / "xl"), "--excel"])
    assert r.exit_code == 0, r.output
    for f in (tmp_path / "xl").glob("*.csv"):
        assert f.read_bytes().startswith(b"\xef\xbb\xbf"), f.name
    a = pd.read_csv(tmp_path / "out" / "mileage_by_vehicle.csv")
    b = pd.read_csv(tmp_path / "xl" / "mileage_by_vehicle.csv", encoding="utf-8-sig")
    assert list(a.columns) == list(b.columns) and a["vehicle_id"].tolist() == b["vehicle_id"].tolist()
