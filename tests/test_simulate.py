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


# ---------------------------------------------------------------- the realistic simulator (issue 9, item 4)

def _xy(log: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x, y = TO_XY.transform(log["lon"].to_numpy(), log["lat"].to_numpy())
    return np.asarray(x) - X0, np.asarray(y) - Y0


def _trip_dt(log: pd.DataFrame) -> np.ndarray:
    """Seconds between consecutive fixes of the same vehicle."""
    same = log["vehicle_id"].to_numpy()[1:] == log["vehicle_id"].to_numpy()[:-1]
    dt = log["timestamp"].diff().dt.total_seconds().to_numpy()[1:]
    return dt[same]


@pytest.mark.parametrize("interval", [5.0, 30.0])
def test_interval_is_respected(ring, interval: float) -> None:
    sim = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=1, trips=3, seed=1, interval_s=interval))
    dt = _trip_dt(sim.log)
    driving = dt[dt < 100]  # parking between trips is 120-900 s
    assert len(driving) > 10
    np.testing.assert_allclose(driving, interval, atol=1e-3)
    # a 30 s log has about a thirtieth of the fixes of the 1 s log of the same routes
    one = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=1, trips=3, seed=1, interval_s=1))
    assert len(sim.log) == pytest.approx(len(one.log) / interval, rel=0.1, abs=3 * 3 * 3)


def test_truth_is_whole_pieces_of_the_route(ring) -> None:
    """Trips run junction to junction: each piece's truth is a whole number of its length.

    The last fix of a trip comes at most one interval before the stop at the final junction, when
    the vehicle is braking from at most ACCEL * dt (so < 0.75 m at 1 s); noise does not enter the truth.
    """
    for kw in ({}, {"via_points": 2}, {"loop_probability": 1.0}, {"uturn_probability": 1.0}):
        sim = simulate_fleet(ring.roads, SimParams(vehicles=4, enterprises=1, trips=3, seed=7, noise_m=15, **kw))
        t = sim.truth
        times = t["km"] * 1000 / t["length_m"]
        short_m = (np.round(times) - times) * t["length_m"]
        assert np.all(np.round(times) >= 1), kw
        # 12 trips, each loses < 0.75 m at its end
        assert short_m.min() > -0.01 and short_m.sum() < 12 * 0.75 + 1e-6, kw
        assert sim.vehicles["km"].sum() == pytest.approx(sim.truth_km), kw


def test_uturns_only_where_the_graph_allows(ring) -> None:
    from geo.roads import roads_to_graph
    from geo.simulate import _routable, _trip

    G = roads_to_graph(ring.roads)
    nodes = _routable(G)
    rng = np.random.default_rng(3)
    p = SimParams(uturn_probability=1.0, min_trip_m=100)
    turns = 0
    for _ in range(40):
        edges = _trip(G, nodes, None, rng, p.min_trip_m, p)
        for (u1, v1, e1), (u2, v2, e2) in zip(edges[:-1], edges[1:]):
            assert v1 == u2  # a connected route
            if u1 == v2 and v1 == u2 and e1["piece"] == e2["piece"]:
                turns += 1
                assert not ring.roads["oneway"].iloc[e1["piece"]]  # never on a one-way ring side
    assert turns >= 30  # nearly every trip has its U-turn (only the two spurs allow one)


def test_loops_return_and_via_points_lengthen(ring) -> None:
    from geo.roads import roads_to_graph
    from geo.simulate import _routable, _trip

    G = roads_to_graph(ring.roads)
    nodes = _routable(G)
    rng = np.random.default_rng(5)
    for _ in range(20):
        edges = _trip(G, nodes, None, rng, 100.0, SimParams(loop_probability=1.0))
        assert edges[0][0] == edges[-1][1]
    longer = 0
    for _ in range(30):
        edges = _trip(G, nodes, None, rng, 100.0, SimParams(via_points=2))
        import networkx as nx

        sp = nx.shortest_path_length(G, edges[0][0], edges[-1][1], weight="length")
        route = sum(e[2]["length"] for e in edges)
        assert route >= sp - 1e-6
        longer += route > sp + 1
    assert longer >= 5  # some routes are not shortest paths


def test_parked_vehicles_have_zero_truth(ring) -> None:
    sim = simulate_fleet(ring.roads, SimParams(vehicles=1, enterprises=1, trips=1, seed=2, noise_m=0,
                                               parked_vehicles=2, park_minutes=10, interval_s=5))
    v = sim.vehicles.set_index("vehicle_id")
    parked = v[v["parked"]]
    assert len(parked) == 2 and (parked["km"] == 0).all() and (parked["fixes"] == 120).all()
    assert v.loc[~v["parked"], "km"].sum() == pytest.approx(sim.truth_km) and sim.truth_km > 0
    for vid in parked.index:
        g = sim.log[sim.log["vehicle_id"] == vid]
        assert g["lon"].nunique() == 1 and g["lat"].nunique() == 1  # noise-free: it stands still
        assert (g["speed"] < 1.0).all()


def test_logged_parking_adds_fixes_not_truth(ring) -> None:
    a = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=1, trips=3, seed=4, noise_m=0))
    b = simulate_fleet(ring.roads, SimParams(vehicles=3, enterprises=1, trips=3, seed=4, noise_m=0,
                                             park_log_probability=1.0))
    assert b.truth_km == pytest.approx(a.truth_km)
    assert len(b.log) > len(a.log) + 3 * 2 * 100  # 2 stops per vehicle of >= 120 s each
    assert _trip_dt(b.log).max() <= 1.0 + 1e-3  # logged all along


def test_ar1_noise_has_its_std_and_autocorrelation() -> None:
    from geo.simulate import _ar1

    rng = np.random.default_rng(0)
    t = np.arange(200_000, dtype=float)
    e = _ar1(len(t), t, 5.0, 30.0, rng)
    assert e.std() == pytest.approx(5.0, rel=0.03)
    for lag in (1, 10, 30):
        r = np.corrcoef(e[:-lag], e[lag:])[0, 1]
        assert r == pytest.approx(math.exp(-lag / 30.0), abs=0.02)
    w = _ar1(len(t), t, 5.0, 0.0, rng)  # no drift: independent
    assert abs(np.corrcoef(w[:-1], w[1:])[0, 1]) < 0.01 and w.std() == pytest.approx(5.0, rel=0.01)


def test_simulated_drift_is_the_configured_noise(line_net) -> None:
    kw = dict(vehicles=6, enterprises=1, trips=3, seed=9, min_trip_m=100)
    clean = simulate_fleet(line_net.roads, SimParams(noise_m=0, **kw))
    noisy = simulate_fleet(line_net.roads, SimParams(noise_m=10, drift_s=20, **kw))
    assert len(clean.log) == len(noisy.log)  # the same routes whatever the noise
    assert noisy.truth_km == pytest.approx(clean.truth_km)
    x0, y0 = _xy(clean.log)
    x1, y1 = _xy(noisy.log)
    ex, ey = x1 - x0, y1 - y0
    assert math.sqrt(np.mean(ex ** 2 + ey ** 2)) == pytest.approx(10.0, rel=0.2)
    vid = noisy.log["vehicle_id"].to_numpy()
    dt1 = np.r_[False, np.isclose(noisy.log["timestamp"].diff().dt.total_seconds().to_numpy()[1:], 1.0)
                & (vid[1:] == vid[:-1])]
    k = np.flatnonzero(dt1)
    r = np.corrcoef(ex[k - 1], ex[k])[0, 1]
    assert r == pytest.approx(math.exp(-1 / 20), abs=0.03)


def test_outliers_and_dropouts(line_net) -> None:
    kw = dict(vehicles=6, enterprises=1, trips=3, seed=11, min_trip_m=100, noise_m=0)
    clean = simulate_fleet(line_net.roads, SimParams(**kw))
    out = simulate_fleet(line_net.roads, SimParams(outlier_probability=0.05, outlier_m=100, **kw))
    x0, y0 = _xy(clean.log)
    x1, y1 = _xy(out.log)
    err = np.hypot(x1 - x0, y1 - y0)
    big = err > 1
    assert big.mean() == pytest.approx(0.05, abs=0.015)
    assert err[big].min() > 49.9 and err[big].max() < 200.1
    drop = simulate_fleet(line_net.roads, SimParams(dropout_probability=0.01, **kw))
    assert drop.truth_km == pytest.approx(clean.truth_km)  # a trip's first and last fix stay
    dt = _trip_dt(drop.log)
    gaps = dt[(dt > 1.5) & (dt < 100)]
    # a dropout of 5-30 s; shorter only where a trip's first or last fix was kept inside it
    assert len(gaps) >= 3 and (gaps >= 5).mean() > 0.7 and gaps.max() <= 31 + 1e-6
    assert len(drop.log) < len(clean.log)


def test_no_speed_heading(ring, tmp_path: Path) -> None:
    sim = simulate_fleet(ring.roads, SimParams(vehicles=2, enterprises=1, seed=3, speed_heading=False))
    assert list(sim.log.columns) == ["vehicle_id", "enterprise", "timestamp", "lon", "lat"]
    for name in ("f.parquet", "f.csv", "f.gpx"):
        write_simulation(sim, tmp_path / name)
        info = FleetLog(tmp_path / name)
        ch = next(iter(info.chunks()))
        assert ch.speed is None or np.isnan(ch.speed).all(), name
        assert ch.heading is None or np.isnan(ch.heading).all(), name


def test_bad_realistic_parameters() -> None:
    for kw in ({"interval_s": 0.5}, {"interval_s": 61}, {"drift_s": -1}, {"outlier_probability": 1.5},
               {"dropout_s": (10.0, 5.0)}, {"parked_vehicles": -1}):
        with pytest.raises(InputError):
            SimParams(**kw)


def test_cli_simulate_realistic(tmp_path: Path) -> None:
    src = layer(tmp_path / "r.geojson", [([(0, 0), (500, 0), (500, 500)], "yes"), ([(500, 500), (0, 0)], "no")])
    zf = tmp_path / "z.geojson"
    a, b = TO_LL.transform(X0 - 100, Y0 - 100)
    c, d = TO_LL.transform(X0 + 600, Y0 + 600)
    gpd.GeoDataFrame({"name": ["z"]}, geometry=[box(a, b, c, d)], crs=4326).to_file(zf)
    out = tmp_path / "fleet.parquet"
    r = CliRunner().invoke(cli, ["fleet", "simulate", "--source", str(src), "--zone", str(zf), "-o", str(out),
                                 "--vehicles", "2",
                                 "--enterprises", "1", "--interval", "5", "--drift", "30", "--outliers", "0.01",
                                 "--dropouts", "0.01", "--via", "1", "--loops", "0.5", "--uturns", "0.5",
                                 "--park-logging", "1", "--parked", "1", "--no-speed-heading"])
    assert r.exit_code == 0, r.output
    assert "3 vehicles" in r.output and "every 5 s" in r.output and "SYNTHETIC" in r.output
    tab = pq.read_table(out)
    assert "speed" not in tab.column_names and "heading" not in tab.column_names
    meta = json.loads(tab.schema.metadata[b"icv"])
    assert meta["params"]["interval_s"] == 5 and meta["params"]["drift_s"] == 30 and meta["synthetic"]
    bad = CliRunner().invoke(cli, ["fleet", "simulate", "--source", str(src), "--zone", str(zf),
                                   "-o", str(tmp_path / "b.parquet"),
                                   "--interval", "0.5"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and not (tmp_path / "b.parquet").exists()
