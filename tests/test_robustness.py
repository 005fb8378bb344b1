"""Bad inputs through the CLI: one clear line on stderr and a non-zero exit, never a traceback.

Each case is a file a user could plausibly hand to ``icv``: empty, truncated,
an HTML error page saved as ``.osm``, another encoding, absurd coordinates...
Every assertion checks the exit code, that stderr is exactly one
``icv: error:`` line naming the file, a fragment saying what is wrong, and
that nothing was written. docs/robustness.md lists the same cases with the
message a user sees.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pytest
from click.testing import CliRunner, Result
from shapely.geometry import LineString

from cli import cli
from geo import _cache
from geo._atomic import remove_stale_temps, write_text

FIXTURE_OSM = Path(__file__).resolve().parent / "fixtures" / "small.osm"
#: A box around tests/fixtures/small.osm (Anting, Jiading).
SQUARE = [[121.19, 31.29], [121.22, 31.29], [121.22, 31.36], [121.19, 31.36], [121.19, 31.29]]


def assert_one_line_error(r: Result, exit_code: int, *fragments: str) -> str:
    """The run failed with ``exit_code`` and one ``icv: error:`` line holding every fragment."""
    assert r.exit_code == exit_code, (r.exit_code, r.output, r.exception)
    err = r.stderr
    assert "Traceback" not in err and "Traceback" not in r.stdout
    assert err.count("\n") == 1 and err.startswith("icv: error: "), err
    for frag in fragments:  # a hint starts with a capital after the full stop
        assert frag in err or frag[:1].upper() + frag[1:] in err, (frag, err)
    return err.strip()


# ---------------------------------------------------------------- road sources

def _osm(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n{body}\n</osm>\n'


_TWO_NODES = '<node id="1" lat="31.3" lon="121.2"/><node id="2" lat="31.3" lon="121.201"/>'
_PRIMARY = '<tag k="highway" v="primary"/>'


def _write(name: str, data: bytes | str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return p
    return make


def _truncated_xml(d: Path) -> Path:
    p = d / "truncated.osm"
    p.write_bytes(FIXTURE_OSM.read_bytes()[:1500])
    return p


def _truncated_gz(d: Path) -> Path:
    p = d / "truncated.osm.gz"
    p.write_bytes(gzip.compress(FIXTURE_OSM.read_bytes())[:300])
    return p


def _gbk_xml(d: Path) -> Path:
    # declared UTF-8 but saved as GBK, as Windows tools in China often do
    p = d / "gbk.osm"
    doc = _osm(f'{_TWO_NODES}<way id="5"><nd ref="1"/><nd ref="2"/>{_PRIMARY}<tag k="name" v="嘉定测试路"/></way>')
    p.write_bytes(doc.encode("gbk"))
    return p


def _pbf(d: Path) -> Path:
    import osmium

    p = d / "small.osm.pbf"
    w = osmium.SimpleWriter(str(p))
    for o in osmium.FileProcessor(str(FIXTURE_OSM)):
        w.add(o)
    w.close()
    return p


def _truncated_pbf(d: Path) -> Path:
    p = _pbf(d)
    b = p.read_bytes()
    t = d / "truncated.osm.pbf"
    t.write_bytes(b[: len(b) // 2])
    return t


def _layer(name: str, geoms: list, cols: dict | None = None) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        gdf = gpd.GeoDataFrame(cols or {"highway": ["primary"] * len(geoms)}, geometry=geoms, crs=4326)
        if name.endswith(".parquet"):
            gdf.to_parquet(p)
        else:
            gdf.to_file(p)
        return p
    return make


def _truncated_parquet(d: Path) -> Path:
    p = _layer("whole.parquet", [LineString([(121.2, 31.3), (121.21, 31.31)])])(d)
    b = p.read_bytes()
    t = d / "truncated.parquet"
    t.write_bytes(b[: len(b) // 2])
    return t


def _nan_line() -> LineString:
    import warnings

    with warnings.catch_warnings():  # shapely warns about the NaN this case is made of
        warnings.simplefilter("ignore", RuntimeWarning)
        return LineString([(121.2, 31.3), (float("nan"), 31.31)])


def _folder(d: Path) -> Path:
    p = d / "extract.osm"
    p.mkdir()
    return p


#: id -> (make file in a folder, exit code, fragments of the message)
SOURCE_CASES: dict[str, tuple[Callable[[Path], Path], int, tuple[str, ...]]] = {
    "zero-length .osm": (_write("empty.osm", b""), 2, ("empty.osm", "the file is empty (0 bytes)")),
    "blank .osm": (_write("blank.osm", "  \n\n"), 2, ("blank.osm", "not XML")),
    "truncated XML": (_truncated_xml, 2, ("truncated.osm", "broken OSM XML at line 26", "truncated")),
    "truncated .osm.gz": (_truncated_gz, 2, ("truncated.osm.gz", "Compressed file ended")),
    "HTML error page saved as .osm": (
        _write("page.osm", "<!DOCTYPE html><html><body><h1>504 Gateway Timeout</h1></body></html>"), 2,
        ("page.osm", "HTML page, not OSM XML")),
    "XML that is not OSM": (_write("track.osm", '<?xml version="1.0"?><gpx version="1.1"></gpx>'), 2,
                            ("track.osm", "root element is <gpx>")),
    "OSM with no road ways": (
        _write("buildings.osm", _osm(f'{_TWO_NODES}<way id="7"><nd ref="1"/><nd ref="2"/>'
                                     '<tag k="building" v="yes"/></way>')), 2,
        ("buildings.osm", "holds no road ways")),
    "OSM with only footways": (
        _write("paths.osm", _osm(f'{_TWO_NODES}<way id="7"><nd ref="1"/><nd ref="2"/>'
                                 '<tag k="highway" v="footway"/></way>')), 2,
        ("paths.osm", "no road ways pass the filter 'drive'", "--filter all-roads")),
    "OSM roads outside the zone": (
        _write("elsewhere.osm", _osm('<node id="1" lat="1.3" lon="1.2"/><node id="2" lat="1.3" lon="1.201"/>'
                                     f'<way id="7"><nd ref="1"/><nd ref="2"/>{_PRIMARY}</way>')), 2,
        ("elsewhere.osm", "no road of the source lies in zone 'fixture_zone'")),
    "GBK-encoded OSM XML": (_gbk_xml, 2, ("gbk.osm", "not UTF-8", "iconv -f GBK -t UTF-8")),
    "way without id": (
        _write("noid.osm", _osm(f'{_TWO_NODES}<way><nd ref="1"/><nd ref="2"/>{_PRIMARY}</way>')), 2,
        ("noid.osm", "way (without id) has a missing or non-numeric id or node ref")),
    "non-numeric node ref": (
        _write("badref.osm", _osm(f'{_TWO_NODES}<way id="5"><nd ref="x"/><nd ref="2"/>{_PRIMARY}</way>')), 2,
        ("badref.osm", "way 5 has a missing or non-numeric id or node ref")),
    "NaN node coordinate": (
        _write("nan.osm", _osm('<node id="1" lat="nan" lon="121.2"/><node id="2" lat="31.3" lon="121.201"/>'
                               f'<way id="5"><nd ref="1"/><nd ref="2"/>{_PRIMARY}</way>')), 2,
        ("nan.osm", "node 1 of way 5 has coordinates out of range (lon=121.2, lat=nan)")),
    "absurd node coordinate": (
        _write("absurd.osm", _osm('<node id="1" lat="931.3" lon="121.2"/><node id="2" lat="31.3" lon="121.201"/>'
                                  f'<way id="5"><nd ref="1"/><nd ref="2"/>{_PRIMARY}</way>')), 2,
        ("absurd.osm", "node 1 of way 5 has coordinates out of range (lon=121.2, lat=931.3)")),
    "zero-length .osm.pbf": (_write("empty.osm.pbf", b""), 2, ("empty.osm.pbf", "the file is empty (0 bytes)")),
    "truncated .osm.pbf": (_truncated_pbf, 2, ("truncated.osm.pbf", "cannot read the PBF file", "unexpected EOF")),
    "not a PBF": (_write("garbage.osm.pbf", b"garbage\n" * 10), 2, ("garbage.osm.pbf", "cannot read the PBF file")),
    "zero-length .geojson": (_write("empty.geojson", b""), 2, ("empty.geojson", "the file is empty (0 bytes)")),
    "truncated .geojson": (_write("truncated.geojson", '{"type":"FeatureCollection","features":['), 2,
                           ("truncated.geojson", "cannot read the layer")),
    "zero-length .parquet": (_write("empty.parquet", b""), 2, ("empty.parquet", "the file is empty (0 bytes)")),
    "truncated .parquet": (_truncated_parquet, 2, ("truncated.parquet", "cannot read the layer",
                                                   "magic bytes not found")),
    "layer without highway column": (
        _layer("kinds.geojson", [LineString([(121.2, 31.3), (121.21, 31.31)])], {"kind": ["primary"]}), 2,
        ("kinds.geojson", "neither a `highway` nor an `fclass` column")),
    "layer with absurd coordinates": (
        _layer("absurd.geojson", [LineString([(121.2, 31.3), (121.21, 931.3)])]), 2,
        ("absurd.geojson", "feature #0 has coordinates out of range (lon=121.21, lat=931.3)")),
    "layer with NaN coordinates": (
        _layer("nan.parquet", [LineString([(121.2, 31.3), (121.21, 31.31)]),
                               _nan_line()],
               {"highway": ["primary", "primary"]}), 2,
        ("nan.parquet", "feature #1 has coordinates out of range (lon=nan, lat=31.31)")),
    "missing file": (lambda d: d / "missing.osm", 2, ("missing.osm", "file not found")),
    "a folder": (_folder, 2, ("extract.osm", "is a folder, not a file")),
    "unknown suffix": (_write("roads.txt", "highway\n"), 2, ("unknown kind of road source",)),
}


@pytest.mark.parametrize("case", list(SOURCE_CASES))
def test_roads_bad_source(case: str, runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    make, code, frags = SOURCE_CASES[case]
    src = make(tmp_path)
    r = runner.invoke(cli, ["roads", "--source", str(src), "--zone", str(zone_file)])
    assert_one_line_error(r, code, *frags)
    assert r.stdout == ""


@pytest.mark.parametrize("case", list(SOURCE_CASES))
def test_pull_bad_source_writes_nothing(case: str, runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    make, code, frags = SOURCE_CASES[case]
    src = make(tmp_path)
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(src), "--zone", str(zone_file), "--cache-dir", str(cache)])
    assert_one_line_error(r, code, *frags)
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.endswith(".lock")]


def test_debug_shows_the_traceback(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    src = tmp_path / "empty.osm"
    src.write_bytes(b"")
    r = runner.invoke(cli, ["--debug", "roads", "--source", str(src), "--zone", str(zone_file)])
    assert r.exit_code != 0
    from geo.errors import InputError

    assert isinstance(r.exception, InputError)  # re-raised for the traceback, not swallowed


def test_repeated_node_makes_no_zero_length_piece(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    # <nd ref="1"/><nd ref="1"/> (a mapping error) once made an extra 0 m piece
    src = tmp_path / "dup.osm"
    src.write_text(_osm(f'{_TWO_NODES}<way id="5"><nd ref="1"/><nd ref="1"/><nd ref="2"/>{_PRIMARY}</way>'))
    r = runner.invoke(cli, ["roads", "--source", str(src), "--zone", str(zone_file), "--format", "json"])
    assert r.exit_code == 0, r.output
    total = json.loads(r.stdout)["rows"][-1]
    assert total["pieces"] == 1
    # 0.001 deg of longitude at 31.3 N: 95.2 m on the WGS84 ellipsoid
    from pyproj import Geod

    expect = Geod(ellps="WGS84").inv(121.2, 31.3, 121.201, 31.3)[2] / 1000
    assert total["km"] == pytest.approx(round(expect, 3))


# ---------------------------------------------------------------- the cache

@pytest.fixture()
def pulled(runner: CliRunner, tmp_path: Path, zone_file: Path) -> tuple[Path, Path, Path]:
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    data, side = _cache.cache_paths(cache, _cache.cache_key("fixture_zone", "drive"))
    assert data.exists() and side.exists()
    return cache, data, side


def _roads_from_cache(runner: CliRunner, zone_file: Path, cache: Path) -> Result:
    return runner.invoke(cli, ["roads", "--zone", str(zone_file), "--cache-dir", str(cache), "--format", "json"])


def test_corrupted_cache_is_reported_then_refetched(runner: CliRunner, zone_file: Path,
                                                    pulled: tuple[Path, Path, Path]) -> None:
    cache, data, side = pulled
    b = bytearray(data.read_bytes())
    b[len(b) // 2] ^= 0xFF  # one flipped byte in the middle of the Parquet data
    data.write_bytes(bytes(b))
    r = _roads_from_cache(runner, zone_file, cache)
    assert_one_line_error(r, 4, str(data), "does not match its checksum", "icv pull --force")
    # `icv pull` notices the corruption and fetches again without --force
    r = runner.invoke(cli, ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    r = _roads_from_cache(runner, zone_file, cache)
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"][-1]["pieces"] == 8


def test_truncated_cache_is_never_read(runner: CliRunner, zone_file: Path, pulled: tuple[Path, Path, Path]) -> None:
    cache, data, side = pulled
    data.write_bytes(data.read_bytes()[:200])
    r = _roads_from_cache(runner, zone_file, cache)
    assert_one_line_error(r, 4, "does not match its checksum")


def test_unreadable_cache_with_matching_checksum(runner: CliRunner, zone_file: Path,
                                                 pulled: tuple[Path, Path, Path]) -> None:
    # a sidecar rewritten by hand to match garbage: still never read as data
    cache, data, side = pulled
    data.write_bytes(b"not parquet")
    doc = json.loads(side.read_text(encoding="utf-8"))
    from geo.provenance import sha256_file

    doc["sha256"] = sha256_file(data)
    side.write_text(json.dumps(doc), encoding="utf-8")
    r = _roads_from_cache(runner, zone_file, cache)
    assert_one_line_error(r, 4, "the cached data is unreadable")


def test_broken_sidecar(runner: CliRunner, zone_file: Path, pulled: tuple[Path, Path, Path]) -> None:
    cache, data, side = pulled
    side.write_text('{"sha256": ', encoding="utf-8")
    r = _roads_from_cache(runner, zone_file, cache)
    assert_one_line_error(r, 4, str(side), "sidecar is unreadable")


def test_missing_sidecar(runner: CliRunner, zone_file: Path, pulled: tuple[Path, Path, Path]) -> None:
    cache, data, side = pulled
    side.unlink()
    r = _roads_from_cache(runner, zone_file, cache)
    assert_one_line_error(r, 4, "no cached network 'roads-fixture_zone-drive'", "icv pull")


def test_no_cache_yet(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    r = _roads_from_cache(runner, zone_file, tmp_path / "nowhere")
    assert_one_line_error(r, 4, "no cached network", "run `icv pull` first")


def test_stale_temp_file_is_never_read_and_is_removed(runner: CliRunner, zone_file: Path,
                                                      pulled: tuple[Path, Path, Path]) -> None:
    """A SIGKILLed pull leaves ``.KEY.PID.*.tmp.parquet``: never read, removed by the next write."""
    cache, data, side = pulled
    dead_pid = _dead_pid()
    stale = cache / f".{data.stem}.{dead_pid}.abcd1234.tmp.parquet"
    stale.write_bytes(b"half-written garbage")
    r = _roads_from_cache(runner, zone_file, cache)
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"][-1]["pieces"] == 8
    r = runner.invoke(cli, ["pull", "--force", "--source", str(FIXTURE_OSM), "--zone", str(zone_file),
                            "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert not stale.exists()
    assert not list(cache.glob(".*.tmp*"))


def test_live_writers_temp_file_is_kept(tmp_path: Path) -> None:
    """Stale-file removal spares a temporary file whose writer still runs (a concurrent pull)."""
    live = tmp_path / f".out.{os.getpid()}.xyz_0000.tmp.json"
    live.write_text("{}")
    dead = tmp_path / f".out.{_dead_pid()}.xyz_0000.tmp.json"
    dead.write_text("{}")
    write_text(tmp_path / "out.json", "{}")
    assert live.exists() and not dead.exists()
    assert remove_stale_temps(tmp_path) == []


def _dead_pid() -> int:
    """A process id that no process has (a finished child's)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- generated names stay in their folder

def test_cache_key_never_escapes() -> None:
    for zone in ["../../evil", "..", "/etc/passwd", "a/../../b", "..\\..\\evil", "嘉定", "x" * 400]:
        key = _cache.cache_key(zone, "drive")
        assert "/" not in key and "\\" not in key and ".." not in key and not key.startswith(".")
        assert len(key.encode("utf-8")) + len(".parquet") <= 255
    # different long names must not collide once shortened
    assert _cache.cache_key("x" * 400, "drive") != _cache.cache_key("x" * 399 + "y", "drive")


def test_pull_with_zone_named_evil_stays_in_cache_dir(runner: CliRunner, tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    zone = work / "evil.geojson"
    zone.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "../../evil"},
        "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}]}))
    cache = work / "cache"
    before = {p for p in tmp_path.rglob("*")}
    r = runner.invoke(cli, ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p.resolve().is_relative_to(cache.resolve()) or p == cache for p in new), new


def test_long_highway_list_gives_a_valid_cache_name(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    classes = ",".join(["primary", "secondary", "tertiary"] + [f"class{i}_with_a_long_name" for i in range(20)])
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir",
                            str(cache), "--highway", classes])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["roads", "--zone", str(zone_file), "--cache-dir", str(cache), "--highway", classes,
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    direct = runner.invoke(cli, ["roads", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--highway",
                                 classes, "--format", "json"])
    assert json.loads(r.stdout)["rows"] == json.loads(direct.stdout)["rows"]
    assert {row["highway"] for row in json.loads(r.stdout)["rows"]} == {"motorway", "primary", "tertiary", "total"} - {
        "motorway"}
    assert [p for p in cache.iterdir() if p.suffix == ".parquet"][0].name.startswith("roads-fixture_zone-highway=")


def test_zone_import_name_with_dotdot_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "z.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}]}))
    out = tmp_path / "a" / "b" / "zones"
    r = runner.invoke(cli, ["zone", "import", str(src), "--crs", "wgs84", "--name", "../../evil",
                            "--out-dir", str(out)])
    assert_one_line_error(r, 2, "bad zone name '../../evil'")
    assert not list(tmp_path.rglob("evil*"))


def test_output_path_is_taken_as_given(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    """-o is the user's own path: written exactly there (through ``..`` if they wrote it), nowhere else."""
    (tmp_path / "x" / "y").mkdir(parents=True)
    out = tmp_path / "x" / "y" / ".." / "r.json"
    r = runner.invoke(cli, ["roads", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--format", "json",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x" / "r.json").exists()
    assert not list(tmp_path.rglob(".*.tmp*"))


def test_output_into_unwritable_place(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    r = runner.invoke(cli, ["roads", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--format", "json",
                            "-o", str(blocker / "r.json")])
    assert_one_line_error(r, 5, "is a file, not a folder")


# ---------------------------------------------------------------- zones

def _fc(geom: dict | None, props: dict | None = None) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props if props is not None else {"name": "z"}, "geometry": geom}]})


def _poly(ring: list) -> dict:
    return {"type": "Polygon", "coordinates": [ring]}


#: id -> (file name, content, --crs, fragments)
ZONE_CASES: dict[str, tuple[str, str | bytes, str, tuple[str, ...]]] = {
    "zone that is a line": ("line.geojson", _fc({"type": "LineString", "coordinates": SQUARE}), "wgs84",
                            ("line.geojson feature #0", "is a LineString, not a polygon")),
    "empty polygon": ("emptypoly.geojson", _fc({"type": "Polygon", "coordinates": []}), "wgs84",
                      ("emptypoly.geojson feature #0", "empty")),
    "null geometry": ("nullgeom.geojson", _fc(None), "wgs84", ("nullgeom.geojson", "empty")),
    "bow-tie (zero area)": (
        "bowtie.geojson",
        _fc(_poly([[121.19, 31.29], [121.22, 31.36], [121.22, 31.29], [121.19, 31.36], [121.19, 31.29]])),
        "wgs84", ("bowtie.geojson feature #0", "area")),
    "self-intersecting": (
        "selfx.geojson",
        _fc(_poly([[121.19, 31.29], [121.25, 31.36], [121.25, 31.29], [121.19, 31.33], [121.19, 31.29]])),
        "wgs84", ("selfx.geojson feature #0", "Self-intersection", "QGIS Fix Geometries")),
    "lon/lat swapped": ("swapped.geojson", _fc(_poly([[y, x] for x, y in SQUARE])), "wgs84",
                        ("swapped.geojson feature #0", "swapped")),
    "lon/lat swapped, gcj02": ("swapped_gcj.geojson", _fc(_poly([[y, x] for x, y in SQUARE])), "gcj02",
                               ("swapped_gcj.geojson feature #0", "swapped")),
    "absurd coordinates": ("absurd.geojson", _fc(_poly([[x * 10, y * 10] for x, y in SQUARE])), "wgs84",
                           ("absurd.geojson feature #0", "not lon/lat degrees", "--crs epsg:")),
    "projected coordinates read as wgs84": (
        "utm.geojson", _fc(_poly([[330000, 3465000], [333000, 3465000], [333000, 3470000], [330000, 3470000],
                                  [330000, 3465000]])), "wgs84", ("utm.geojson feature #0", "not lon/lat degrees")),
    "gcj02 outside China": (
        "paris.geojson", _fc(_poly([[2.30, 48.85], [2.40, 48.85], [2.40, 48.90], [2.30, 48.90], [2.30, 48.85]])),
        "gcj02", ("paris.geojson feature #0", "outside China", "--crs wgs84")),
    "unknown CRS name": ("ok1.geojson", _fc(_poly(SQUARE)), "bd09", ("unknown CRS 'bd09'",)),
    "unknown EPSG code": ("ok2.geojson", _fc(_poly(SQUARE)), "epsg:99999", ("unknown CRS 'epsg:99999'",)),
    "zero-length zone file": ("empty.geojson", b"", "wgs84", ("empty.geojson", "cannot read the zone file")),
    "truncated zone file": ("trunc.geojson", _fc(_poly(SQUARE))[:60], "wgs84",
                            ("trunc.geojson", "cannot read the zone file")),
    "HTML page as zone": ("page.geojson", "<html><body>404 Not Found</body></html>", "wgs84",
                          ("page.geojson", "cannot read the zone file")),
    "no features": ("none.geojson", '{"type":"FeatureCollection","features":[]}', "wgs84",
                    ("none.geojson", "holds no features")),
}


@pytest.mark.parametrize("case", list(ZONE_CASES))
def test_zone_import_bad_file(case: str, runner: CliRunner, tmp_path: Path) -> None:
    name, content, crs, frags = ZONE_CASES[case]
    src = tmp_path / name
    src.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    out = tmp_path / "zones"
    r = runner.invoke(cli, ["zone", "import", str(src), "--crs", crs, "--out-dir", str(out)])
    assert_one_line_error(r, 2, *frags)
    assert not out.exists() or not list(out.iterdir())


def test_zone_import_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(cli, ["zone", "import", str(tmp_path / "nope.geojson"), "--crs", "wgs84",
                            "--out-dir", str(tmp_path / "zones")])
    assert_one_line_error(r, 2, "nope.geojson", "not found")


def test_zone_option_with_bad_file(runner: CliRunner, tmp_path: Path) -> None:
    """The same checks guard ``--zone FILE`` of the network commands."""
    bad = tmp_path / "line.geojson"
    bad.write_text(_fc({"type": "LineString", "coordinates": SQUARE}))
    r = runner.invoke(cli, ["roads", "--source", str(FIXTURE_OSM), "--zone", str(bad)])
    assert_one_line_error(r, 2, "line.geojson", "not a polygon")


def test_zone_import_good_file_still_works(runner: CliRunner, tmp_path: Path) -> None:
    """Control for the cases above: the same square imports (area by an independent pyproj computation)."""
    src = tmp_path / "square.geojson"
    src.write_text(_fc(_poly(SQUARE)))
    out = tmp_path / "zones"
    r = runner.invoke(cli, ["zone", "import", str(src), "--crs", "wgs84", "--out-dir", str(out),
                            "--source-note", "test", "--licence", "CC0", "--format", "json"])
    assert r.exit_code == 0, r.output
    from pyproj import Geod
    from shapely.geometry import Polygon

    area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(Polygon(SQUARE))[0]) / 1e6
    assert json.loads(r.stdout)["rows"][0]["area_km2"] == pytest.approx(area_km2, rel=1e-3)
    assert sorted(p.name for p in out.iterdir()) == ["square.geojson", "square.json"]


# ---------------------------------------------------------------- fleet logs
# The fleet commands are written in parallel (geo.fleet); these run once they exist.

def _fleet_cmd() -> list[str]:
    from cli import cli as group

    fleet = group.commands.get("fleet")
    if fleet is None or "mileage" not in getattr(fleet, "commands", {}):
        pytest.skip("`icv fleet mileage` is not in cli.py yet")
    return ["fleet", "mileage"]



def test_output_file_gets_the_usual_mode(runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    """Atomic writes once left outputs readable by their owner only (mkstemp's 0600)."""
    out = tmp_path / "r.json"
    r = runner.invoke(cli, ["roads", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--format", "json",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------- fleet logs: icv fleet mileage F

_FLEET_HDR = "vehicle_id,enterprise,timestamp,lon,lat\n"
# one vehicle driving east along street A of the fixture (lat 31.300), 10 s apart: 2 x 95.2 m
_FLEET_ROWS = ["v1,上汽,2024-03-01T08:00:00+08:00,121.2000,31.3000",
               "v1,上汽,2024-03-01T08:00:10+08:00,121.2010,31.3000",
               "v1,上汽,2024-03-01T08:00:20+08:00,121.2020,31.3000"]
_FLEET_OK = _FLEET_HDR + "\n".join(_FLEET_ROWS) + "\n"

#: id -> (content, exit code, stderr fragments, expected "test mileage km" or None)
FLEET_CASES: dict[str, tuple[str | bytes, int, tuple[str, ...], float | None]] = {
    "missing columns": ("vehicle_id,timestamp,lon\nv1,2024-03-01T08:00:00,121.2\n", 2,
                        ("missing column(s) enterprise, lat",), None),
    "zero-length": (b"", 2, ("the file is empty",), None),
    "extra columns (ignored)": (_FLEET_HDR.strip() + ",foo\n" + "\n".join(r + ",x" for r in _FLEET_ROWS) + "\n", 0,
                                (), 0.19),
    "NaN and out-of-range coordinates (rows dropped, counted)": (
        _FLEET_HDR + _FLEET_ROWS[0] + "\nv1,上汽,2024-03-01T08:00:05+08:00,nan,31.3\n"
        "v1,上汽,2024-03-01T08:00:08+08:00,121.2,931.3\n" + "\n".join(_FLEET_ROWS[1:]) + "\n", 0,
        ("2 bad rows not used", "missing coordinates: 1", "coordinates out of range: 1"), 0.19),
    "unparsable timestamp (row dropped, counted)": (
        _FLEET_HDR + _FLEET_ROWS[0] + "\nv1,上汽,yesterday,121.2005,31.3000\n" + "\n".join(_FLEET_ROWS[1:]) + "\n", 0,
        ("1 bad rows not used", "unparsable timestamp: 1"), 0.19),
    "backwards timestamps (rows dropped, counted)": (
        _FLEET_HDR + "\n".join(_FLEET_ROWS[::-1]) + "\n", 0, ("2 bad rows not used", "backwards timestamp: 2"), 0.0),
    "GBK-encoded names (read as GB18030, warned)": (_FLEET_OK.encode("gbk"), 0,
                                                    ("not valid UTF-8; decoded as GB18030",), 0.19),
    "duplicate rows (dropped, counted)": (_FLEET_HDR + "\n".join(_FLEET_ROWS + _FLEET_ROWS) + "\n", 0,
                                          ("3 bad rows not used",), 0.19),
    "truncated mid-line (line dropped, counted)": (_FLEET_OK[:-20], 0, ("malformed line: 1",), 0.095),
}


@pytest.mark.parametrize("case", list(FLEET_CASES))
def test_fleet_mileage_bad_log(case: str, runner: CliRunner, tmp_path: Path, zone_file: Path) -> None:
    from cli import cli as group

    if "fleet" not in group.commands:
        pytest.skip("`icv fleet mileage` is not in cli.py yet")
    content, code, frags, km = FLEET_CASES[case]
    log = tmp_path / "log.csv"
    log.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    r = runner.invoke(cli, ["fleet", "mileage", str(log), "--source", str(FIXTURE_OSM), "--zone", str(zone_file),
                            "--format", "json"])
    if code:
        assert_one_line_error(r, code, str(log), *frags)
        return
    assert r.exit_code == 0, (r.output, r.exception)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith("icv: ") for line in lines)
    for frag in frags:
        assert frag in r.stderr, (frag, r.stderr)
    summary = {row["figure"]: row["value"] for row in json.loads(r.stdout)["tables"]["summary"]}
    # hand-computed: 0.001 deg of longitude at 31.3 N is 95.2 m
    assert summary["test mileage km"] == pytest.approx(km, abs=0.006)


# ---------------------------------------------------------------- options and outputs (review findings)

@pytest.mark.parametrize("args,code,frag", [
    (["zone", "list", "-o", "/proc/icv-test/x.json"], 5, "cannot"),
    (["roads", "--source", "SMALL", "--zone", "TABLE"], 2, "zone"),
    (["roads", "--source", "SMALL", "--zone", "ZONE", "--highway="], 2, "bad --highway list (empty)"),
    (["map", "coverage", "--source", "SMALL", "--cell-size-m", "10", "-o", "OUT"], 2,
     "grid cells"),
    (["stats", "--source", "SMALL", "--zone", "ZONE", "--intersection-tolerance", "inf"], 2, "tolerances"),
], ids=["unwritable -o", "zone is a table", "empty --highway", "too many grid cells", "infinite tolerance"])
def test_bad_options_one_line(args: list[str], code: int, frag: str, tmp_path: Path, zone_file: Path) -> None:
    table = tmp_path / "zone.csv"
    table.write_text("name,lon,lat\nx,121.2,31.3\n", encoding="utf-8")
    subst = {"SMALL": str(FIXTURE_OSM), "TABLE": str(table), "ZONE": str(zone_file),
             "OUT": str(tmp_path / "m.html")}
    r = CliRunner().invoke(cli, [subst.get(a, a) for a in args])
    assert_one_line_error(r, code, frag)
    assert not (tmp_path / "m.html").exists()


def test_web_mercator_is_refused_for_lengths() -> None:
    from geo import sources, stats
    from geo.errors import InputError

    roads = sources.load_network(FIXTURE_OSM).roads
    with pytest.raises(InputError, match="Mercator"):
        stats.road_stats(roads, None, crs="EPSG:3857")
