"""The fleet simulator: reproducible, one-way respecting, realistic noise, marked synthetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pyproj import Transformer
from shapely.geometry import LineString, box

from cli import cli
from geo import sources
from geo._fleet_io import FleetLog
from geo.errors import InputError
from geo.gcj02 import gcj02_to_wgs84
from geo.simulate import SimParams, simulate_fleet, truth_path, write_simulation

UTM = "EPSG:32651"
X0, Y0 = 330_000.0, 3_469_000.0
TO_LL = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
TO_XY = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)


def layer(path: Path, ways: list[tuple[list[tuple[float, float]], str]]) -> Path:
    geoms = [LineString([TO_LL.transform(X0 + x, Y0 + y) for x, y in xy]) for xy, _ in ways]
    gpd.GeoDataFrame({"highway": ["primary"] * len(ways), "oneway": [o for _, o in ways]},
                     geometry=geoms, crs=4326).to_file(path, driver="GeoJSON")
    return path


@pytest.fixture()
def line_net(tmp_path: Path):
    """One straight two-way road, 2 km, cut in two pieces by a short stub at x = 800."""
    p = layer(tmp_path / "line.geojson", [([(0, 0), (800, 0), (2000, 0)], "no"), ([(800, 0), (800, 50)], "no")])
    return sources.load_network(p)


@pytest.fixture()
def ring(tmp_path: Path):
    """A one-way square ring, 500 m a side, driven anticlockwise only, with two-way spurs at two corners."""
    sq = [(0, 0), (500, 0), (500, 500), (0, 500), (0, 0)]
    ways = [([sq[i], sq[i + 1]], "yes") for i in range(4)]
    ways += [([(0, 0), (-150, 0)], "no"), ([(500, 500), (650, 500)], "no")]
    return sources.load_network(layer(tmp_path / "ring.geojson", ways))


def test_same_seed_same_log(ring) -> None:
    a = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=2, trips=2, seed=4))
    b = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=2, trips=2, seed=4))
    c = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=2, trips=2, seed=5))
    pd.testing.assert_frame_equal(a.log, b.log)
    assert a.truth.equals(b.truth)
    assert not a.log[["lon", "lat"]].equals(c.log[["lon", "lat"]])


def test_log_is_sorted_and_1_hz(ring) -> None:
    sim = simulate_fleet(ring.roads, SimParams(vehicles=4, enterprises=2, trips=2, seed=1))
    log = sim.log
    assert list(log.columns) == ["vehicle_id", "enterprise", "timestamp", "lon", "lat", "speed", "heading"]
    assert log["vehicle_id"].is_monotonic_increasing
    for _, g in log.groupby("vehicle_id"):
        dt = g["timestamp"].diff().dt.total_seconds().dropna().to_numpy()
        assert np.all(dt > 0)
        assert np.mean(np.isclose(dt, 1.0)) > 0.9  # 1 Hz, with parking gaps between trips
    assert log.groupby("vehicle_id")["enterprise"].nunique().max() == 1
    assert log["enterprise"].nunique() == 2


def test_one_way_pieces_are_driven_their_way(ring) -> None:
    sim = simulate_fleet(ring.roads, SimParams(vehicles=5, enterprises=1, trips=3, seed=2, noise_m=0))
    x, y = TO_XY.transform(sim.log["lon"].to_numpy(), sim.log["lat"].to_numpy())
    x, y = x - X0, y - Y0
    # anticlockwise: along the bottom side (y ~ 0) the vehicles head east, on the top side west
    moving = sim.log["speed"].to_numpy() > 2
    hd = sim.log["heading"].to_numpy()
    bottom, top = moving & (np.abs(y) < 1) & (x > 50) & (x < 450), moving & (np.abs(y - 500) < 1) & (x > 50) & (x < 450)
    assert bottom.sum() > 20 and top.sum() > 20
    assert np.all(np.abs(hd[bottom] - 90) < 15) and np.all(np.abs(hd[top] - 270) < 15)


def test_truth_is_the_distance_between_first_and_last_fix(line_net) -> None:
    sim = simulate_fleet(line_net.roads, SimParams(vehicles=4, enterprises=1, trips=2, seed=8, noise_m=0,
                                                   lane_offset_m=0, min_trip_m=100))
    # noise-free fixes on the centre line: the straight distances between consecutive fixes of a
    # trip add up to the distance driven (parking gaps between trips excluded; corners cut by < 1 m)
    x, y = TO_XY.transform(sim.log["lon"].to_numpy(), sim.log["lat"].to_numpy())
    d = np.hypot(np.diff(x), np.diff(y))
    same = (sim.log["vehicle_id"].to_numpy()[1:] == sim.log["vehicle_id"].to_numpy()[:-1])
    dt = np.diff(sim.log["timestamp"].astype("int64").to_numpy()) / 1e9
    walked = d[same & (dt < 60)].sum()
    # the truth is in geodesic metres, the fixes were measured in UTM: scale differs by < 0.05 %
    assert sim.truth_km * 1000 == pytest.approx(walked, rel=5e-4)


def test_noise_is_about_5_m(line_net) -> None:
    sim0 = simulate_fleet(line_net.roads, SimParams(vehicles=6, enterprises=1, trips=2, seed=9, noise_m=0))
    sim5 = simulate_fleet(line_net.roads, SimParams(vehicles=6, enterprises=1, trips=2, seed=9, noise_m=5))
    x0, y0 = TO_XY.transform(sim0.log["lon"].to_numpy(), sim0.log["lat"].to_numpy())
    x5, y5 = TO_XY.transform(sim5.log["lon"].to_numpy(), sim5.log["lat"].to_numpy())
    rms = math.sqrt(np.mean((x5 - x0) ** 2 + (y5 - y0) ** 2))
    assert len(x0) > 500 and 4.5 < rms < 5.5


def test_gcj02_output(ring) -> None:
    w = simulate_fleet(ring.roads, SimParams(vehicles=2, enterprises=1, seed=3))
    g = simulate_fleet(ring.roads, SimParams(vehicles=2, enterprises=1, seed=3, crs="gcj02"))
    lon, lat = gcj02_to_wgs84(g.log["lon"].to_numpy(), g.log["lat"].to_numpy())
    assert np.abs(lon - w.log["lon"].to_numpy()).max() < 2e-7 and np.abs(lat - w.log["lat"].to_numpy()).max() < 2e-7
    # and GCJ-02 is really shifted (~500 m around Shanghai)
    assert np.abs(g.log["lon"].to_numpy() - w.log["lon"].to_numpy()).min() > 1e-3


def test_written_files_are_marked_synthetic(ring, tmp_path: Path) -> None:
    sim = simulate_fleet(ring.roads, SimParams(vehicles=2, enterprises=1, seed=3))
    p = tmp_path / "f.parquet"
    files = write_simulation(sim, p)
    meta = json.loads(pq.read_schema(p).metadata[b"icv"])
    assert meta["synthetic"] is True and meta["params"]["seed"] == 3
    assert truth_path(p) in files and pd.read_csv(truth_path(p))["km"].sum() == pytest.approx(sim.truth_km)
    c = tmp_path / "f.csv"
    write_simulation(sim, c)
    assert json.loads((tmp_path / "f.csv.meta.json").read_text(encoding="utf-8"))["synthetic"] is True
    assert FleetLog(p).info.synthetic and FleetLog(c).info.synthetic
    assert "SYNTHETIC" in " ".join(sim.provenance.notes)


def test_bad_parameters() -> None:
    with pytest.raises(InputError):
        SimParams(vehicles=1, enterprises=2)
    with pytest.raises(InputError):
        SimParams(crs="bd09")


def test_cli_simulate(tmp_path: Path) -> None:
    src = layer(tmp_path / "r.geojson", [([(0, 0), (500, 0), (500, 500)], "yes"), ([(500, 500), (0, 0)], "no")])
    zf = tmp_path / "z.geojson"
    a, b = TO_LL.transform(X0 - 100, Y0 - 100)
    c, d = TO_LL.transform(X0 + 600, Y0 + 600)
    gpd.GeoDataFrame({"name": ["z"]}, geometry=[box(a, b, c, d)], crs=4326).to_file(zf)
    out = tmp_path / "fleet.gpx"
    r = CliRunner().invoke(cli, ["fleet", "simulate", "--source", str(src), "--zone", str(zf), "-o", str(out),
                                 "--vehicles", "2", "--enterprises", "1", "--crs", "gcj02"])
    assert r.exit_code == 0, r.output
    assert out.exists() and (tmp_path / "fleet.truth.csv").exists() and (tmp_path / "fleet.gpx.meta.json").exists()
    assert "<trk><name>E01-V001</name><type>测试企业01</type>" in out.read_text(encoding="utf-8")
