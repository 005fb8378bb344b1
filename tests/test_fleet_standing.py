"""Standing still against crawling under drifting GPS noise (issue 9, item 3).

A drifting error (AR(1), a correlation time of tens of seconds) moves the mean position of a
standing vehicle over 20 s as much as a crawl at walking pace would; over several correlation
times the drift stays bounded while the crawl keeps going. The logs here are built by hand: a
crawl at a constant speed along a real route of Helsinki (the route from networkx, its truth the
sum of its pieces' geodesic ``length_m``), with noise drawn here, not by :mod:`geo.simulate`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from geo import fleet, sources
from geo._fleet_hmm import HmmParams, _mean_diff_var, _mean_diff_var_ar1
from geo._fleet_match import metric_crs
from geo.roads import roads_to_graph

HMM = fleet.MileageParams(matcher="hmm")


def ar1(n: int, sigma: float, corr_s: float, rng: np.random.Generator) -> np.ndarray:
    """AR(1) noise per axis at 1 Hz: std ``sigma``, correlation ``exp(-1 / corr_s)`` between fixes."""
    phi = math.exp(-1.0 / corr_s)
    z = rng.normal(0.0, sigma, (n, 2))
    e = np.empty((n, 2))
    e[0] = z[0]
    for k in range(1, n):
        e[k] = phi * e[k - 1] + math.sqrt(1.0 - phi * phi) * z[k]
    return e


@pytest.fixture(scope="module")
def helsinki(helsinki_pbf):
    return sources.load_network(helsinki_pbf).roads.reset_index(drop=True)


def route_of(roads, length_m: float, seed: int) -> tuple[shapely.LineString, float, list[int]]:
    """A shortest route of about ``length_m`` on the network (lon/lat line, its geodesic length, its pieces)."""
    G = roads_to_graph(roads)
    comp = sorted(max(nx.strongly_connected_components(G), key=len))
    rng = np.random.default_rng(seed)
    while True:
        o = int(comp[rng.integers(len(comp))])
        dist = nx.single_source_dijkstra_path_length(G, o, cutoff=1.3 * length_m, weight="length")
        far = [d for d, v in dist.items() if 0.9 * length_m <= v <= 1.3 * length_m]
        if far:
            d = far[rng.integers(len(far))]
            break
    path = nx.shortest_path(G, o, d, weight="length")
    edges = [min(G[u][v].values(), key=lambda e: e["length"]) for u, v in zip(path[:-1], path[1:])]
    coords = np.concatenate([np.asarray(e["geometry"].coords)[(1 if i else 0):] for i, e in enumerate(edges)])
    return shapely.LineString(coords), float(sum(e["length"] for e in edges)), [e["piece"] for e in edges]


def crawl_log(roads, speed_mps: float, minutes: float, noise_m: float, corr_s: float, seed: int,
              vehicle: str) -> tuple[pd.DataFrame, float, list[int]]:
    """A vehicle driving a route at ``speed_mps`` for about ``minutes``, logged at 1 Hz without speed or
    heading, ``noise_m`` RMS horizontal AR(1) noise; its true km (the whole route) and pieces."""
    crs = metric_crs(roads)
    line, true_m, pieces = route_of(roads, speed_mps * minutes * 60.0, seed)
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x, y = fwd.transform(*np.asarray(line.coords).T)
    mline = shapely.LineString(np.column_stack([x, y]))
    # constant speed in geodesic metres: the projected line scaled to the route's true length
    n = int(true_m / speed_mps) + 1
    at = np.minimum(np.arange(n) * speed_mps, true_m) * (mline.length / true_m)
    at[-1] = mline.length
    pts = shapely.line_interpolate_point(mline, at)
    e = ar1(n, noise_m / math.sqrt(2.0), corr_s, np.random.default_rng(seed + 1))
    lon, lat = inv.transform(shapely.get_x(pts) + e[:, 0], shapely.get_y(pts) + e[:, 1])
    df = pd.DataFrame({"vehicle_id": vehicle, "enterprise": "E1",
                       "timestamp": 1_700_000_000 + 86_400 * seed + np.arange(n),
                       "lon": np.round(lon, 8), "lat": np.round(lat, 8)})
    return df, true_m / 1000.0, pieces


def test_mean_difference_variance_in_closed_form() -> None:
    # the closed form against the covariance matrix of the fixes, summed by brute force
    for corr in (0.0, 0.5, 0.937, 0.99):
        V = _mean_diff_var(corr, 12)
        nb, nf = np.meshgrid(np.arange(13), np.arange(13), indexing="ij")
        C = _mean_diff_var_ar1(corr, nb, nf)
        assert np.allclose(C[1:, 1:], V[1:, 1:], rtol=1e-9, atol=1e-12)
        assert np.isinf(C[0]).all() and np.isinf(C[:, 0]).all()
    # independent noise: 1/nb + 1/nf
    assert _mean_diff_var_ar1(0.0, np.array([80]), np.array([40]))[0] == pytest.approx(1 / 80 + 1 / 40)


def _var_equal_runs(corr: float, k: int) -> float:
    """Variance (sigma^2 per axis) of the mean of k fixes after less the mean of k before, by brute force."""
    pos = np.r_[np.arange(-k, 0), np.arange(1, k + 1)]
    c = np.r_[np.full(k, -1.0 / k), np.full(k, 1.0 / k)]
    return float(c @ (corr ** np.abs(pos[:, None] - pos[None, :])) @ c)


def test_long_standing_horizon_grows_with_the_correlation_time() -> None:
    # the fewest fixes, from 5 correlation times (-1/ln corr fixes) on, whose 4-sigma noise tolerance
    # is at most half what a 1.5 m/s crawl covers between the two means (k fixes x interval)
    def separates(h: HmmParams, k: int) -> bool:
        return 4.0 * h.sigma_m * math.sqrt(_var_equal_runs(h.noise_corr, k)) <= 0.5 * 1.5 * k * h.interval_s

    for corr, sigma, itv in [(0.95, 21.2, 1.0), (0.937, 18.6, 1.0), (0.78, 21.0, 5.0), (0.9, 5.0, 1.0)]:
        h = HmmParams(noise_corr=corr, sigma_m=sigma, interval_s=itv)
        w0 = math.ceil(5 / -math.log(corr))
        wl = h.still_long_window
        assert wl >= w0 and wl > h.still_window and separates(h, wl), (corr, wl)
        assert wl == w0 or not separates(h, wl - 1), (corr, wl)
        assert h.still_horizon == wl
    assert HmmParams(noise_corr=0.9, sigma_m=5.0).still_long_window == math.ceil(5 / -math.log(0.9))  # 48
    # 30 m per axis drifting with a 20 s correlation time at 1 Hz: more than 5 correlation times
    assert HmmParams(noise_corr=0.95, sigma_m=30.0).still_long_window > 98
    # no long test: independent or briefly correlated noise (7 fixes: the 20-fix short test covers
    # it), or no horizon up to still_long_max tells the drift from a crawl
    assert HmmParams(noise_corr=0.5).still_long_window == 0
    assert HmmParams(noise_corr=0.0).still_long_window == 0
    assert HmmParams(noise_corr=0.99, sigma_m=30.0, still_long_max=120).still_long_window == 0
    assert HmmParams(noise_corr=0.0, interval_s=5.0).still_horizon == 4


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("speed", [1.5, 2.0])
def test_a_crawl_under_drifting_noise_counts_its_km(helsinki, tmp_path: Path, speed: float) -> None:
    """Three vehicles crawl 20 min at ``speed`` along real routes, 1 Hz, 30 m of noise drifting with a
    20 s correlation time, no speed or heading: each counts its route's km (within 5 %)."""
    frames, truth = [], {}
    for i in range(3):
        df, km, _ = crawl_log(helsinki, speed, 20.0, 30.0, 20.0, seed=11 + i, vehicle=f"C{i}")
        frames.append(df)
        truth[f"C{i}"] = km
    log = tmp_path / "crawl.csv"
    pd.concat(frames).to_csv(log, index=False)
    res = fleet.compute_mileage(log, helsinki, params=HMM)
    corr = fleet._log_noise(log, helsinki, "wgs84", with_corr=True)[2]
    assert HmmParams(noise_corr=corr).still_long_window > 0, corr  # the drift is seen: the long test is used
    got = {r["vehicle_id"]: r["on_network_km"] + r["off_network_km"] for r in res.by_vehicle()}
    for v, km in truth.items():
        assert km > 1.5
        assert got[v] == pytest.approx(km, rel=0.05), (v, got[v], km)


@pytest.mark.slow
@pytest.mark.shared
def test_long_standing_test_does_not_depend_on_chunks_or_windows(helsinki, tmp_path: Path) -> None:
    # a crawl and a vehicle parked 10 min under 30 m of drifting noise; windows (64 fixes, 16 of
    # overlap) much shorter than the long test's horizon (~100 fixes each side): each fix must still be
    # judged on its whole neighbourhood, whatever the chunks
    crawl, km, _ = crawl_log(helsinki, 1.5, 8.0, 30.0, 20.0, seed=21, vehicle="C")
    # parked where another route starts: on the network
    crs = metric_crs(helsinki)
    x0, y0 = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        *route_of(helsinki, 500.0, seed=22)[0].coords[0])
    e = ar1(600, 30 / math.sqrt(2), 20.0, np.random.default_rng(22))
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x0 + e[:, 0], y0 + e[:, 1])
    parked = pd.DataFrame({"vehicle_id": "P", "enterprise": "E1", "timestamp": 1_800_000_000 + np.arange(600),
                           "lon": np.round(lon, 8), "lat": np.round(lat, 8)})
    log = tmp_path / "mix.csv"
    pd.concat([crawl, parked]).to_csv(log, index=False)
    hp = HmmParams(sigma_m=20.0, noise_corr=0.95, window=64, overlap=16)
    assert hp.still_horizon > 4 * hp.overlap
    m = fleet.build_matcher(helsinki)
    params = fleet.MileageParams(matcher="hmm", hmm=hp)
    base = fleet.compute_mileage(log, helsinki, matcher=m, params=params, chunk_rows=10**6)
    for rows in (7, 100, 333):
        other = fleet.compute_mileage(log, helsinki, matcher=m, params=params, chunk_rows=rows)
        assert np.array_equal(base.totals.piece_um, other.totals.piece_um), rows
        assert base.by_vehicle() == other.by_vehicle(), rows
    got = {r["vehicle_id"]: r for r in base.by_vehicle()}
    assert got["C"]["on_network_km"] == pytest.approx(km, rel=0.05)
    assert got["P"]["on_network_km"] + got["P"]["off_network_km"] < 0.02


def test_a_there_and_back_is_not_standing(tmp_path: Path) -> None:
    # 3 m/s at 1 Hz (no noise) 400 m east and back, in a log said to drift (20 m, correlation 0.95 a
    # fix: the long test over ~100 fixes each side is in use): near the turn the means of the fixes
    # before and after coincide (a fix s seconds from the turn: 3 (2 s - s^2 / 98) m apart, under the
    # long test's ~60 m up to s = 11); each side's own halves (150 m apart) tell the drive apart
    from test_fleet import geod_len, line_points, track, write_layer, zone_of

    net = sources.load_network(write_layer(tmp_path / "road.geojson", [{"xy": [(-1000, 0), (1000, 0)]}]),
                               zone=zone_of(-1100, -100, 1100, 100))
    xy = np.vstack([line_points((-200.0, 0.0), (200.0, 0.0), 3.0), line_points((200.0, 0.0), (-200.0, 0.0), 3.0)[1:]])
    log = tmp_path / "back.csv"
    track(xy).to_csv(log, index=False)
    hp = HmmParams(sigma_m=20.0, noise_corr=0.95)
    assert hp.still_long_window > 90
    want = 2 * geod_len([(-200.0, 0.0), (200.0, 0.0)])

    def km(h: HmmParams) -> float:
        return fleet.compute_mileage(log, net.roads, params=fleet.MileageParams(matcher="hmm", hmm=h)).on_network_km * 1000

    got = km(hp)
    # the short test alone calls the turn and a few fixes either side standing (under its crawl bound):
    # the km to the turn and back from them are not counted; the long test adds no such loss
    assert got >= km(dataclasses.replace(hp, still_long_max=0)) - 1.0
    assert want - 50.0 <= got <= want + 1.0
    # without the halves the long test calls ~2 x 11 fixes round the turn standing
    assert km(dataclasses.replace(hp, still_halves_sigmas=1e9)) < got - 40.0
