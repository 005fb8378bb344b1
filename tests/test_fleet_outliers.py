"""Outliers next to another road (geo._fleet_hmm): skipped, not a broken track; a long run still breaks.

Two parallel two-way roads 50 m apart, joined only at their far east ends (a hop between them
is 1.5-2 km by road for 50 m of GPS: no plausible route). A vehicle drives the south road at
10 m/s, 1 Hz; some of its fixes land on the north road. The expected km are geodesic lengths
computed here with pyproj.Geod (the driven stretch of the south road).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from geo import fleet, sources
from test_fleet import geod_len, line_points, piece_of, track, write_layer, zone_of

HMM = fleet.MileageParams(matcher="hmm")
GAP_Y = 50.0


@pytest.fixture()
def parallel(tmp_path: Path):
    """South road y = 0 and north road y = 50, 0..1500 m, joined by a link at x = 1500 only."""
    ways = [{"xy": [(0, 0), (1500, 0)]}, {"xy": [(0, GAP_Y), (1500, GAP_Y)]},
            {"xy": [(1500, 0), (1500, GAP_Y)], "highway": "tertiary"}]
    return sources.load_network(write_layer(tmp_path / "parallel.geojson", ways), zone=zone_of(-100, -100, 1600, 200))


def drive(displaced: list[int], tmp_path: Path, name: str) -> Path:
    """South road 0 -> 800 m at 10 m/s (81 fixes), the fixes ``displaced`` moved onto the north road."""
    xy = line_points((0, 0), (800, 0), 10.0)
    xy[displaced, 1] = GAP_Y
    log = tmp_path / f"{name}.csv"
    track(xy).to_csv(log, index=False)
    return log


def figure(res, name: str):
    return next(r["value"] for r in res.summary() if r["figure"] == name)


@pytest.mark.parametrize("displaced", [[40], [40, 41], [30, 55]], ids=["one", "two-consecutive", "two-apart"])
def test_an_outlier_on_a_parallel_road_is_skipped_not_a_break(parallel, tmp_path: Path, displaced: list[int]) -> None:
    res = fleet.compute_mileage(drive(displaced, tmp_path, "outlier"), parallel.roads, params=HMM)
    want = geod_len([(0, 0), (800, 0)])
    assert res.totals.unconnected_pairs == 0
    assert res.totals.break_examples == []
    assert res.totals.outliers_skipped == len(displaced)
    assert figure(res, "outliers skipped") == len(displaced)
    assert figure(res, "unfollowed pairs") == 0
    # the km along the south road driven, none off the network, none on the north road
    assert res.on_network_km * 1000 == pytest.approx(want, abs=1.0)
    assert res.off_network_km == 0
    assert res.piece_km[piece_of(parallel.roads, (0, GAP_Y), (1500, GAP_Y))] == 0
    assert res.piece_km[piece_of(parallel.roads, (0, 0), (1500, 0))] * 1000 == pytest.approx(want, abs=1.0)


def test_a_long_run_on_the_other_road_is_still_a_break(parallel, tmp_path: Path) -> None:
    # 6 consecutive fixes (x = 400..450) on the north road: more than a few outliers, the vehicle
    # is somewhere else (a data jump): both hops reported, their straight distance off-network
    run = list(range(40, 46))
    res = fleet.compute_mileage(drive(run, tmp_path, "jump"), parallel.roads, params=HMM)
    assert res.totals.unconnected_pairs == 2
    assert res.totals.outliers_skipped == 0
    assert figure(res, "outliers skipped") == 0
    assert [b[3] for b in res.totals.break_examples] == ["no plausible route between the fixes"] * 2
    t0 = 1_700_000_000 * 10**9
    assert [(b[1] - t0, b[2] - t0) for b in res.totals.break_examples] == [(39 * 10**9, 40 * 10**9),
                                                                          (45 * 10**9, 46 * 10**9)]
    hop = math.hypot(10.0, GAP_Y)
    assert res.off_network_km * 1000 == pytest.approx(2 * hop, abs=0.5)
    on = geod_len([(0, 0), (390, 0)]) + geod_len([(400, GAP_Y), (450, GAP_Y)]) + geod_len([(460, 0), (800, 0)])
    assert res.on_network_km * 1000 == pytest.approx(on, abs=1.0)


def test_a_real_switch_to_the_other_road_is_still_a_break(parallel, tmp_path: Path) -> None:
    # from x = 400 on, the vehicle is on the north road for good (it did not come back: no bridge)
    res = fleet.compute_mileage(drive(list(range(40, 81)), tmp_path, "switch"), parallel.roads, params=HMM)
    assert res.totals.unconnected_pairs == 1
    assert res.totals.outliers_skipped == 0
    on = geod_len([(0, 0), (390, 0)]) + geod_len([(400, GAP_Y), (800, GAP_Y)])
    assert res.on_network_km * 1000 == pytest.approx(on, abs=1.0)
    assert res.off_network_km * 1000 == pytest.approx(math.hypot(10.0, GAP_Y), abs=0.5)


def test_a_short_run_whose_next_fix_is_not_reached_either_stays_a_break(tmp_path: Path) -> None:
    # three parallel roads 50 m apart joined far east: south to x = 390, two fixes on the middle
    # road, then on the north road for good. The two fixes are a short segment, but the fix after
    # them is not reached from the one before them either: no outliers, both hops reported
    ways = [{"xy": [(0, y), (1500, y)]} for y in (0.0, GAP_Y, 2 * GAP_Y)]
    ways.append({"xy": [(1500, 0), (1500, 2 * GAP_Y)], "highway": "tertiary"})
    net = sources.load_network(write_layer(tmp_path / "three.geojson", ways), zone=zone_of(-100, -100, 1600, 200))
    xy = line_points((0, 0), (800, 0), 10.0)
    xy[40:42, 1] = GAP_Y
    xy[42:, 1] = 2 * GAP_Y
    log = tmp_path / "three.csv"
    track(xy).to_csv(log, index=False)
    res = fleet.compute_mileage(log, net.roads, params=HMM)
    assert res.totals.unconnected_pairs == 2
    assert res.totals.outliers_skipped == 0
    on = geod_len([(0, 0), (390, 0)]) + geod_len([(400, GAP_Y), (410, GAP_Y)]) + geod_len([(420, 100), (800, 100)])
    assert res.on_network_km * 1000 == pytest.approx(on, abs=1.0)
    assert res.off_network_km * 1000 == pytest.approx(2 * math.hypot(10.0, GAP_Y), abs=0.5)


def test_outliers_across_window_ends_and_chunks_give_the_same_answer(parallel, tmp_path: Path) -> None:
    # 5 m/s for 1450 m: 291 fixes, more than one matching window (256 fixes, 32 of context); a block
    # of three outliers across the first window's end (kept-index 256), two vehicles interleaved
    xy = line_points((0, 0), (1450, 0), 5.0)
    out = [100, 200, 201, 254, 255, 256]
    xy[out, 1] = GAP_Y
    a, b = track(xy, vehicle="V1"), track(xy[::-1].copy(), vehicle="V2")
    log = tmp_path / "two.csv"
    import pandas as pd

    pd.concat([a, b]).sort_values(["timestamp", "vehicle_id"], kind="stable").to_csv(log, index=False)
    whole = fleet.compute_mileage(log, parallel.roads, params=HMM, chunk_rows=100_000)
    assert whole.totals.unconnected_pairs == 0
    assert whole.totals.outliers_skipped == 2 * len(out)
    assert whole.on_network_km * 1000 == pytest.approx(2 * geod_len([(0, 0), (1450, 0)]), abs=2.0)
    for rows in (7, 64, 293):
        part = fleet.compute_mileage(log, parallel.roads, params=HMM, chunk_rows=rows)
        assert np.array_equal(part.totals.piece_um, whole.totals.piece_um)
        assert part.totals.outliers_skipped == whole.totals.outliers_skipped
        assert part.totals.unconnected_pairs == 0
        assert part.totals.vehicles == whole.totals.vehicles


def test_an_outlier_ahead_on_the_same_road_is_skipped(parallel, tmp_path: Path) -> None:
    # with the GPS heading (east), fix 40 lands 50 m ahead on the same road: it is reached, but the
    # fix after it (40 m behind it, heading east) is not reached from it: the fix reached but not left
    xy = line_points((0, 0), (800, 0), 10.0)
    xy[40, 0] += 50.0
    log = tmp_path / "ahead.csv"
    track(xy, heading=np.full(len(xy), 90.0), speed=np.full(len(xy), 10.0)).to_csv(log, index=False)
    res = fleet.compute_mileage(log, parallel.roads, params=HMM)
    assert res.totals.unconnected_pairs == 0
    assert res.totals.outliers_skipped == 1
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(0, 0), (800, 0)]), abs=1.0)
    assert res.off_network_km == 0


def test_outliers_on_real_roads_do_not_depend_on_chunks_interleaving_or_dask(tmp_path: Path, shared_data: Path) -> None:
    # the shared Jiading subset, a simulated fleet with 3 % outliers (25-100 m) at 1 Hz: outliers are
    # skipped, the same ones whatever the chunks, the row order or the Dask partitions
    import distributed
    import pandas as pd

    from geo.simulate import SimParams, simulate_fleet, write_simulation

    net = sources.load_network(shared_data / "jiading_osm_signalized.osm")
    sim = simulate_fleet(net.roads, SimParams(vehicles=6, enterprises=2, trips=3, seed=5, noise_m=5.0,
                                              outlier_probability=0.03, outlier_m=50.0))
    log = tmp_path / "o.parquet"
    write_simulation(sim, log, row_group_rows=333)
    m = fleet.build_matcher(net.roads)
    big = fleet.compute_mileage(log, net.roads, chunk_rows=10**6, matcher=m, params=HMM)
    assert big.totals.outliers_skipped >= 10
    inter = sim.log.sort_values(["timestamp", "vehicle_id"], kind="stable")
    p2 = tmp_path / "inter.csv"
    inter.assign(timestamp=inter["timestamp"].map(lambda t: t.isoformat())).to_csv(p2, index=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        others = [fleet.compute_mileage(log, net.roads, chunk_rows=97, matcher=m, params=HMM),
                  fleet.compute_mileage(p2, net.roads, chunk_rows=50, matcher=m, params=HMM),
                  fleet.compute_mileage(log, net.roads, chunk_rows=64, scheduler=client, matcher=m, params=HMM)]
    for o in others:
        assert np.array_equal(o.totals.piece_um, big.totals.piece_um)
        assert o.totals.outliers_skipped == big.totals.outliers_skipped
        assert o.totals.unconnected_pairs == big.totals.unconnected_pairs
        assert o.by_vehicle() == big.by_vehicle()
    assert pd.DataFrame(big.summary()).set_index("figure").loc["outliers skipped", "value"] == big.totals.outliers_skipped
