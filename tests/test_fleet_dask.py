"""The Dask path gives exactly the single-process totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import cli
from geo import fleet, sources
from geo.errors import InputError
from geo.simulate import SimParams, simulate_fleet, write_simulation

distributed = pytest.importorskip("distributed", reason="the Dask path needs the optional extra icv[dask]")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as c, distributed.Client(c) as client:
        yield c, client


@pytest.fixture(scope="module")
def jiading(shared_data: Path):
    from geo.zones import load_zone

    zone = load_zone("jiading")
    return zone, sources.load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)


def _log_with_bad_rows(roads, path: Path, row_group_rows: int) -> Path:
    sim = simulate_fleet(roads, SimParams(vehicles=9, enterprises=3, trips=2, seed=13))
    log = sim.log.copy()
    # bad rows in the middle of vehicles, some right at row-group boundaries
    rng = np.random.default_rng(0)
    idx = rng.choice(len(log), 40, replace=False)
    log.loc[idx[:10], "lon"] = np.nan
    log.loc[idx[10:20], "lat"] = 95.0
    log.loc[idx[20:30], "lon"] = log.loc[idx[20:30], "lon"] + 0.5  # 47 km jumps
    log.loc[idx[30:], "vehicle_id"] = None
    log.loc[[row_group_rows, 2 * row_group_rows], "vehicle_id"] = None
    sim.log = log
    write_simulation(sim, path, row_group_rows=row_group_rows)
    return path


@pytest.mark.parametrize("matcher", ["hmm", "snap"])
def test_dask_equals_single_process(cluster, jiading, tmp_path: Path, matcher: str) -> None:
    _, client = cluster
    zone, net = jiading
    log = _log_with_bad_rows(net.roads, tmp_path / "f.parquet", row_group_rows=211)
    m = fleet.build_matcher(net.roads, zone)
    params = fleet.MileageParams(matcher=matcher)
    one = fleet.compute_mileage(log, net.roads, zone=zone, chunk_rows=1000, matcher=m, params=params)
    many = fleet.compute_mileage(log, net.roads, zone=zone, chunk_rows=64, scheduler=client, matcher=m,
                                 params=params)
    assert one.matcher == many.matcher == matcher
    assert one.totals.rows == many.totals.rows == len(pd.read_parquet(log))
    assert np.array_equal(one.totals.piece_um, many.totals.piece_um)
    assert np.array_equal(one.totals.subzone_um, many.totals.subzone_um)
    assert one.totals.zone_um == many.totals.zone_um
    assert one.totals.vehicles == many.totals.vehicles
    assert {k: v.tolist() for k, v in one.totals.enterprise_piece_um.items()} == \
        {k: v.tolist() for k, v in many.totals.enterprise_piece_um.items()}
    assert one.bad_rows() == many.bad_rows() and sum(r["rows"] for r in one.bad_rows()) >= 40
    assert one.coverage() == many.coverage()
    assert many.scheduler and one.scheduler is None


def test_cli_scheduler_address(cluster, jiading, tmp_path: Path) -> None:
    c, _ = cluster
    zone, net = jiading
    sim = simulate_fleet(net.roads, SimParams(vehicles=4, enterprises=2, trips=1, seed=2))
    log = tmp_path / "a.parquet"
    write_simulation(sim, log, row_group_rows=300)
    src = str(net.provenance.source)
    r1 = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", src, "--format", "json"])
    r2 = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", src, "--format", "json",
                                  "--scheduler", c.scheduler_address])
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    import json

    t1, t2 = json.loads(r1.stdout)["tables"], json.loads(r2.stdout)["tables"]
    assert t1["by_vehicle"] == t2["by_vehicle"] and t1["by_class"] == t2["by_class"]


def test_dask_needs_parquet(cluster, jiading, tmp_path: Path) -> None:
    _, client = cluster
    zone, net = jiading
    sim = simulate_fleet(net.roads, SimParams(vehicles=1, enterprises=1, trips=1, seed=2))
    log = tmp_path / "a.csv"
    write_simulation(sim, log)
    with pytest.raises(InputError, match="Parquet"):
        fleet.compute_mileage(log, net.roads, scheduler=client)


def test_index_file_round_trip_matches_alike(jiading, tmp_path: Path) -> None:
    from geo._fleet_dask import load_index, save_index

    zone, net = jiading
    m = fleet.build_matcher(net.roads, zone)
    mapped = load_index(save_index(m, tmp_path))
    for k, v in vars(m).items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(np.asarray(getattr(mapped, k)), v), k
    x, y = m.project(np.array([121.25, 121.3]), np.array([31.3, 31.33]))
    a, b = m.match(x, y), mapped.match(x, y)
    assert np.array_equal(a.piece, b.piece) and np.allclose(a.pos_m, b.pos_m, equal_nan=True)


@pytest.mark.slow
def test_local_cluster_maps_the_index_and_equals_single_process(jiading, tmp_path: Path) -> None:
    zone, net = jiading
    log = _log_with_bad_rows(net.roads, tmp_path / "f.parquet", row_group_rows=211)
    one = fleet.compute_mileage(log, net.roads, zone=zone, chunk_rows=1000)
    many = fleet.compute_mileage(log, net.roads, zone=zone, chunk_rows=64, scheduler="local:2")
    assert many.scheduler == "dask LocalCluster (2 workers)"
    assert np.array_equal(one.totals.piece_um, many.totals.piece_um)
    assert one.totals.vehicles == many.totals.vehicles and one.bad_rows() == many.bad_rows()
    # a run that stops before the cluster is used closes it (a CSV log cannot go to Dask)
    csv = tmp_path / "a.csv"
    write_simulation(simulate_fleet(net.roads, SimParams(vehicles=1, enterprises=1, trips=1, seed=2)), csv)
    with pytest.raises(InputError, match="Parquet"):
        fleet.compute_mileage(csv, net.roads, scheduler="local:1")
