"""Nothing half-written, nothing lost: runs killed mid-write, and two pulls at once.

Each test runs ``icv`` as a subprocess on a large synthetic grid network so that
writing takes long enough to be caught: it polls for the hidden temporary file
that :mod:`geo._atomic` creates (``.NAME.PID.RANDOM.tmp*``) and sends the signal
as soon as it appears. Then:

- SIGINT: exit 130, the previous output is byte-for-byte intact, no temporary
  file is left;
- SIGKILL: the previous output is intact; the temporary files it necessarily
  leaves are never read and the next run removes them;
- two ``icv pull`` at once on one cache: both succeed and the cache is one
  consistent pair (data matching its sidecar's checksum).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from synthetic_osm import write_grid_osm

from geo import _cache

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_OSM = ROOT / "tests" / "fixtures" / "small.osm"
ZONE_NAME = "grid_zone"
KEY = _cache.cache_key(ZONE_NAME, "drive")
GRID_N = 300  # 300 x 300 nodes: about 180,000 road pieces, a write of about a second


@pytest.fixture(scope="module")
def big_osm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("big") / "grid.osm"
    write_grid_osm(p, GRID_N)
    return p


@pytest.fixture()
def zone_file(tmp_path: Path) -> Path:
    f = tmp_path / f"{ZONE_NAME}.geojson"
    ring = [[121.185, 31.285], [121.225, 31.285], [121.225, 31.365], [121.185, 31.365], [121.185, 31.285]]
    f.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return f


def _icv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli import main; main()", *args]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_icv(*args), cwd=ROOT, capture_output=True, text=True, timeout=300)


def _temps(folder: Path, stem: str) -> list[Path]:
    return sorted(folder.glob(f".{stem}.*.tmp*"))


def _kill_mid_write(args: list[str], folder: Path, stem: str, sig: int) -> tuple[subprocess.Popen, str]:
    """Start icv, send ``sig`` as soon as its temporary file for ``stem`` appears; return (process, stderr)."""
    proc = subprocess.Popen(_icv(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and _temps(folder, stem):
            seen = True
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    _, err = proc.communicate(timeout=120)
    assert seen, f"the run ended before its temporary file appeared (rc {proc.returncode}): {err}"
    return proc, err


def _pull_small(zone_file: Path, cache: Path) -> tuple[bytes, bytes]:
    r = _run("pull", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    data, side = _cache.cache_paths(cache, KEY)
    return data.read_bytes(), side.read_bytes()


def _assert_cache_is(cache: Path, data_bytes: bytes, side_bytes: bytes, pieces: int) -> None:
    data, side = _cache.cache_paths(cache, KEY)
    assert data.read_bytes() == data_bytes and side.read_bytes() == side_bytes
    roads, _ = _cache.read_cache(cache, KEY)  # checksum verified
    assert len(roads) == pieces


def test_sigint_during_pull_keeps_previous_cache(big_osm: Path, zone_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = _pull_small(zone_file, cache)
    proc, err = _kill_mid_write(["pull", "--force", "--source", str(big_osm), "--zone", str(zone_file),
                                 "--cache-dir", str(cache)], cache, KEY, signal.SIGINT)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "icv: interrupted; no output was half-written"
    assert "Traceback" not in err
    assert _temps(cache, KEY) == []  # SIGINT leaves no temporary file
    _assert_cache_is(cache, *before, pieces=8)


def test_sigkill_during_pull_keeps_previous_cache_and_next_run_cleans_up(
        big_osm: Path, zone_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = _pull_small(zone_file, cache)
    proc, err = _kill_mid_write(["pull", "--force", "--source", str(big_osm), "--zone", str(zone_file),
                                 "--cache-dir", str(cache)], cache, KEY, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    left = _temps(cache, KEY)
    assert left, "SIGKILL cannot clean up: its temporary files must still be there for this test to mean anything"
    _assert_cache_is(cache, *before, pieces=8)
    # reading goes to the named files only, never to a leftover
    r = _run("roads", "--zone", str(zone_file), "--cache-dir", str(cache), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"][-1]["pieces"] == 8
    # the next write removes the dead run's leftovers
    r = _run("pull", "--force", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    assert _temps(cache, KEY) == [] and not any(p.exists() for p in left)
    assert len(_cache.read_cache(cache, KEY)[0]) == 8


def test_two_pulls_at_once_do_not_corrupt_the_cache(big_osm: Path, zone_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # one writes the big grid, the other the 8-piece fixture: a mixed pair would fail its checksum
    procs = [subprocess.Popen(_icv("pull", "--force", "--source", str(src), "--zone", str(zone_file),
                                   "--cache-dir", str(cache)), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for src in (big_osm, FIXTURE_OSM)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    roads, _ = _cache.read_cache(cache, KEY)
    data, side = _cache.cache_paths(cache, KEY)
    assert len(roads) == json.loads(side.read_text(encoding="utf-8"))["rows"]
    assert len(roads) in (8, 2 * GRID_N * (GRID_N - 1))
    assert not list(cache.glob(".*.tmp*"))


def test_two_pulls_while_one_reads(big_osm: Path, zone_file: Path, tmp_path: Path) -> None:
    """A reader next to a writer sees the old pair or the new pair, never a mix."""
    cache = tmp_path / "cache"
    _pull_small(zone_file, cache)
    writer = subprocess.Popen(_icv("pull", "--force", "--source", str(big_osm), "--zone", str(zone_file),
                                   "--cache-dir", str(cache)), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    while writer.poll() is None:
        roads, _ = _cache.read_cache(cache, KEY)
        seen.add(len(roads))
        time.sleep(0.05)
    assert writer.wait() == 0
    roads, _ = _cache.read_cache(cache, KEY)
    seen.add(len(roads))
    assert seen <= {8, 2 * GRID_N * (GRID_N - 1)} and 2 * GRID_N * (GRID_N - 1) in seen


if os.name != "posix":  # pragma: no cover
    pytestmark = pytest.mark.skip("signals and flock are POSIX")


def _catch_write(args: list[str], folder: Path, pattern: str, sig: int, restore: Callable[[], None],
                 tries: int = 4) -> tuple[subprocess.Popen, str]:
    """Run icv until ``sig`` lands while a temporary file matching ``pattern`` exists.

    Small outputs are written in well under a second, so a run may finish first:
    ``restore`` puts the previous outputs back and the next try starts.
    """
    for _ in range(tries):
        proc = subprocess.Popen(_icv(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        caught = False
        while proc.poll() is None:
            if list(folder.glob(pattern)):
                proc.send_signal(sig)
                caught = True
                break
        _, err = proc.communicate(timeout=120)
        if caught and proc.returncode != 0:
            return proc, err
        restore()
    pytest.skip(f"the output was written too fast to be caught mid-write in {tries} tries")


@pytest.fixture(scope="module")
def mid_osm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("mid") / "grid.osm"
    write_grid_osm(p, 100)
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_map_killed_mid_write_keeps_previous_html(sig: int, mid_osm: Path, zone_file: Path, tmp_path: Path) -> None:
    """``icv map coverage -o`` killed while writing its HTML: the previous map and sidecar are intact."""
    from cli import cli as group

    if "map" not in group.commands:
        pytest.skip("`icv map` is not in cli.py yet")
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    out = out_dir / "coverage.html"
    side = out_dir / "coverage.provenance.json"
    out.write_text("<p>previous map</p>", encoding="utf-8")
    side.write_text('{"previous": true}', encoding="utf-8")
    args = ["map", "coverage", "--source", str(mid_osm), "--zone", str(zone_file), "--basemap", "none",
            "-o", str(out)]
    def restore() -> None:
        out.write_text("<p>previous map</p>", encoding="utf-8")
        side.write_text('{"previous": true}', encoding="utf-8")

    # the HTML's own temporary file
    proc, err = _catch_write(args, out_dir, ".coverage.*.tmp.html", sig, restore)
    assert out.read_text(encoding="utf-8") == "<p>previous map</p>"
    assert side.read_text(encoding="utf-8") == '{"previous": true}'
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("icv: interrupted")
        assert _temps(out_dir, "coverage") == []
    else:
        assert proc.returncode == -signal.SIGKILL
        left = _temps(out_dir, "coverage")
        assert left
        # the next run removes them
        r = _run(*args)
        assert r.returncode == 0, r.stderr
        assert _temps(out_dir, "coverage") == [] and "previous" not in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_fleet_mileage_killed_mid_write_keeps_previous_outputs(sig: int, mid_osm: Path, zone_file: Path,
                                                              tmp_path: Path) -> None:
    """``icv fleet mileage --out-dir`` killed while writing: the previous output set is intact."""
    log = tmp_path / "fleet.parquet"
    r = _run("fleet", "simulate", "--source", str(mid_osm), "--zone", str(zone_file), "-o", str(log),
             "--vehicles", "40", "--trips", "3", "--seed", "7")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    # the snap matcher: this test is about how the outputs are written, and it runs the command several times
    args = ["fleet", "mileage", str(log), "--source", str(mid_osm), "--zone", str(zone_file), "--out-dir", str(out),
            "--matcher", "snap"]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "mileage_pieces.parquet" in before and "mileage_figures.json" in before
    def restore() -> None:  # a run that finished: put the previous set back
        for name, data in before.items():
            (out / name).write_bytes(data)

    proc, err = _catch_write(args, out, ".mileage_*.tmp*", sig, restore)
    # every previous file intact, byte for byte (the set is renamed together)
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == before
    leftovers = [p for p in out.iterdir() if p.name.startswith(".")]
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert leftovers == []
    else:
        assert proc.returncode == -signal.SIGKILL
        r = _run(*args)  # the next run succeeds and sweeps the killed run's temporary files
        assert r.returncode == 0, r.stderr
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
