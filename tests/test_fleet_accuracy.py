"""A few cases of bench/bench_fleet_accuracy.py pinned as tests, with the tolerances of issue 9.

The truth is the simulator's (:mod:`geo.simulate`: km per piece along the driven route, 0 km
for a standing vehicle), independent of any matcher. Tolerances: total km within ±3 % of the
truth and per-piece recall and precision by km >= 0.95; at 30 s with 30 m noise ±5 % and 0.90.

recall = sum_p min(matched_p, truth_p) / sum_p truth_p; precision = the same over sum_p matched_p.

Each case runs with every matcher this icv offers (``snap``, the nearest-piece matcher, and
``hmm`` where it exists). Cases the nearest-piece matcher is known to miss (sparse or noisy logs,
standing vehicles: the reasons of issue 9) are ``xfail(strict=False)`` for ``snap`` only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from geo import fleet, sources
from geo.simulate import SimParams, simulate_fleet, write_simulation

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def matcher_kinds() -> list[str]:
    """The matchers this icv offers: always ``snap``; ``hmm`` once it exists."""
    kinds = ["snap"]
    try:
        import geo._fleet_hmm  # noqa: F401
    except ImportError:
        return kinds
    return [*kinds, "hmm"]


def mileage(path: Path, roads, kind: str):
    """icv's whole mileage path with the matcher ``kind`` (``MileageParams.matcher`` where it exists)."""
    if "matcher" in {f.name for f in dataclasses.fields(fleet.MileageParams)}:
        return fleet.compute_mileage(path, roads, params=fleet.MileageParams(matcher=kind))
    if kind != "snap":
        pytest.skip(f"this icv offers no choice of matcher ({kind!r} asked)")
    return fleet.compute_mileage(path, roads)


def scores(res, sim) -> tuple[float, float, float]:
    """(km error %, recall, precision)."""
    truth = np.zeros(len(res.piece_km))
    truth[sim.truth["piece"].to_numpy()] = sim.truth["km"].to_numpy()
    m = res.piece_km
    hit = np.minimum(m, truth).sum()
    return 100 * (res.test_mileage_km - sim.truth_km) / sim.truth_km, hit / truth.sum(), hit / m.sum()


@pytest.fixture(scope="module")
def helsinki(helsinki_pbf):
    return sources.load_network(helsinki_pbf).roads.reset_index(drop=True)


@pytest.fixture(scope="module")
def bayreuth(shared_data):
    return sources.load_network(shared_data / "peers" / "north-bayreuth.osm.gz").roads.reset_index(drop=True)


def realistic(interval: float, noise: float, speed_heading: bool = True, **kw) -> SimParams:
    """The benchmark's fleet (bench_fleet_accuracy.sim_params), smaller."""
    base = dict(vehicles=4, enterprises=2, trips=3, seed=3, noise_m=noise, interval_s=interval, drift_s=20.0,
                outlier_probability=0.003, outlier_m=80.0, dropout_probability=0.002, via_points=1,
                loop_probability=0.1, uturn_probability=0.1, park_log_probability=0.3, min_trip_m=1500.0,
                speed_heading=speed_heading)
    return SimParams(**{**base, **kw})


CASES = [
    # network, interval s, noise m, speed+heading, km tolerance %, recall/precision, matchers known to miss
    ("helsinki", 1, 5, True, 3.0, 0.95, ()),
    # hmm was +24.5 %, then +4.5 % (bench, 10 vehicles): 30 m of drifting noise read as 13 m on
    # Helsinki's close-set pieces (the nearest-piece distance saturates), now calibrated on the network
    ("helsinki", 1, 30, False, 3.0, 0.95, ("snap",)),
    # hmm was +7.0 %: the same noise reading; then -3.9 % with it right: slow vehicles called standing
    ("helsinki", 5, 30, False, 3.0, 0.95, ("snap",)),
    ("helsinki", 10, 15, False, 3.0, 0.95, ("snap",)),
    # hmm was -4.8 % (recall 0.92) once the noise was read right: the 108 m standing bound of one
    # fix before and one after called every slow or turning vehicle standing (now: at most a crawl)
    ("helsinki", 30, 30, False, 5.0, 0.90, ("snap",)),
    # a fix logged at a stop (GPS speed ~0) must not make its 30 s pair count as standing
    ("helsinki", 30, 15, True, 3.0, 0.95, ("snap",)),
    ("bayreuth", 10, 15, False, 3.0, 0.95, ()),
    ("bayreuth", 30, 30, True, 5.0, 0.90, ("snap",)),
]


def _xfail(kind: str, reason: str) -> list:
    return [pytest.mark.xfail(strict=False, reason=f"{kind}: {reason} (issue 9)")]


def _params():
    for case in CASES:
        for kind in matcher_kinds():
            marks = _xfail(kind, "misses this case in bench/RESULTS.md") if kind in case[-1] else []
            yield pytest.param(*case[:-1], kind, marks=marks, id=f"{case[0]}-{case[1]}s-{case[2]}m-"
                               f"{'sh' if case[3] else 'nosh'}-{kind}")


@pytest.mark.parametrize("net,interval,noise,sh,tol,q,kind", list(_params()))
def test_km_recall_precision(request, tmp_path: Path, net, interval, noise, sh, tol, q, kind) -> None:
    roads = request.getfixturevalue(net)
    sim = simulate_fleet(roads, realistic(interval, noise, sh))
    p = tmp_path / "log.parquet"
    write_simulation(sim, p)
    res = mileage(p, roads, kind)
    d, recall, precision = scores(res, sim)
    assert sim.truth_km > 10  # a fleet worth the name
    assert abs(d) <= tol and recall >= q and precision >= q, (d, recall, precision)


STANDING = [
    # drift s (0: independent noise), speed+heading logged, matchers known to miss
    (0, False, ("snap",)),
    (20, True, ("snap",)),
    # a 30 m drift with a 20 s correlation time and no speed column looks like creeping at
    # walking pace, which must count (a vehicle at 1.5 m/s is never called standing): hmm adds
    # 0.23 km for 3 x 20 min (was ~2 km before the noise was calibrated), snap 9.4 km
    (20, False, ("snap",)),
]


@pytest.mark.parametrize("drift,sh,kind", [
    pytest.param(d, sh, k, marks=_xfail(k, "a standing vehicle's noisy fixes add km") if k in miss else [],
                 id=f"drift{d}-{'sh' if sh else 'nosh'}-{k}")
    for d, sh, miss in STANDING for k in matcher_kinds()])
def test_standing_vehicles_add_no_km(helsinki, tmp_path: Path, drift: float, sh: bool, kind: str) -> None:
    """Three vehicles stand 20 min logging at 1 Hz with 30 m noise: 0 km (issue 9, item 3)."""
    sim = simulate_fleet(helsinki, SimParams(vehicles=1, enterprises=1, trips=1, seed=5, noise_m=30, drift_s=drift,
                                             parked_vehicles=3, park_minutes=20, speed_heading=sh))
    p = tmp_path / "log.parquet"
    write_simulation(sim, p)
    res = mileage(p, helsinki, kind)
    parked = set(sim.vehicles.loc[sim.vehicles["parked"], "vehicle_id"])
    rows = [r for r in res.by_vehicle() if r["vehicle_id"] in parked]
    assert len(rows) == 3 and all(r["points"] >= 1000 for r in rows)
    km = sum(r["on_network_km"] + r["off_network_km"] for r in rows)
    assert km < 0.05, rows  # 3,600 noisy fixes: < 50 m in all
