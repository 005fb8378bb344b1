"""The HMM matcher (geo._fleet_hmm): known answers on hand-built networks.

Networks and logs are drawn in local metres (see tests/test_fleet.py); the
expected km are geodesic lengths computed here with pyproj.Geod.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geo import fleet, sources
from geo._fleet_hmm import HmmParams
from geo._fleet_routes import RouteTable
from test_fleet import geod_len, line_points, piece_of, track, write_layer, zone_of

HMM = fleet.MileageParams(matcher="hmm")
SNAP = fleet.MileageParams(matcher="snap")


@pytest.fixture()
def row3(tmp_path: Path):
    """Three two-way pieces in a row, 0-300-600-900 m east, with a block to the north (300-600, y = 300)."""
    ways = [{"xy": [(0, 0), (300, 0)]}, {"xy": [(300, 0), (600, 0)]}, {"xy": [(600, 0), (900, 0)]},
            {"xy": [(300, 0), (300, 300)]}, {"xy": [(600, 0), (600, 300)]}, {"xy": [(300, 300), (600, 300)]}]
    return sources.load_network(write_layer(tmp_path / "row3.geojson", ways), zone=zone_of(-100, -100, 1000, 400))


@pytest.fixture()
def dual(tmp_path: Path):
    """A dual carriageway: eastbound y = 0 and westbound y = 20, one-way, 1 km, joined at both ends."""
    ways = [{"xy": [(0, 0), (1000, 0)], "oneway": "yes", "name": "双向路"},
            {"xy": [(1000, 20), (0, 20)], "oneway": "yes", "name": "双向路"},
            {"xy": [(1000, 0), (1000, 20)], "highway": "tertiary"}, {"xy": [(0, 20), (0, 0)], "highway": "tertiary"}]
    return sources.load_network(write_layer(tmp_path / "dual.geojson", ways), zone=zone_of(-100, -100, 1100, 120))


def test_sparse_fixes_give_the_pieces_in_between_their_full_length(row3, tmp_path: Path) -> None:
    # 30 s apart at 20 m/s: x = 100 (first piece), x = 700 (third piece); no fix on the middle piece
    df = track(np.array([[100.0, 0.0], [700.0, 0.0]]))
    df["timestamp"] = [1_700_000_000, 1_700_000_030]
    log = tmp_path / "sparse.csv"
    df.to_csv(log, index=False)
    a, b, c = (piece_of(row3.roads, (0, 0), (300, 0)), piece_of(row3.roads, (300, 0), (600, 0)),
               piece_of(row3.roads, (600, 0), (900, 0)))
    res = fleet.compute_mileage(log, row3.roads, params=HMM)
    km_m = res.piece_km * 1000
    assert km_m[a] == pytest.approx(geod_len([(100, 0), (300, 0)]), abs=0.05)
    assert km_m[b] == pytest.approx(geod_len([(300, 0), (600, 0)]), abs=0.05)  # the whole middle piece
    assert km_m[c] == pytest.approx(geod_len([(600, 0), (700, 0)]), abs=0.05)
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(100, 0), (700, 0)]), abs=0.1)
    assert res.driven()[b]
    # the nearest-piece matcher splits the straight distance between the two end pieces
    snap = fleet.compute_mileage(log, row3.roads, params=SNAP)
    assert snap.piece_km[b] == 0


def test_a_routed_detour_counts_the_route_not_the_straight_line(row3, tmp_path: Path) -> None:
    # round the block: (250, 0) -> north side (450, 300) -> (650, 0), 40 s apart
    df = track(np.array([[250.0, 0.0], [450.0, 300.0], [650.0, 0.0]]))
    df["timestamp"] = [1_700_000_000, 1_700_000_040, 1_700_000_080]
    log = tmp_path / "block.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, row3.roads, params=HMM)
    want = geod_len([(250, 0), (300, 0), (300, 300), (600, 300), (600, 0), (650, 0)])
    assert res.on_network_km * 1000 == pytest.approx(want, abs=0.2)
    assert res.piece_km[piece_of(row3.roads, (300, 0), (600, 0))] == 0


@pytest.mark.parametrize("with_speed", [False, True])
def test_standing_vehicle_with_30_m_noise_adds_no_km(row3, tmp_path: Path, with_speed: bool) -> None:
    rng = np.random.default_rng(3)
    # 10 minutes at 1 Hz standing 5 m from the junction at x = 300, 30 m RMS horizontal noise
    xy = np.array([[300.0, 5.0]] * 600) + rng.normal(0, 30 / math.sqrt(2), (600, 2))
    df = track(xy, speed=np.zeros(600) if with_speed else None)
    log = tmp_path / "stand.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, row3.roads, params=HMM)
    jitter = float(np.hypot(*np.diff(xy, axis=0).T).sum())
    assert jitter > 15_000
    assert res.on_network_km * 1000 < 1.0
    assert sum(res.totals.bad.values()) == 0
    assert res.noise_m == pytest.approx(30 / math.sqrt(2), rel=0.25)


def test_one_way_pair_goes_by_direction_without_heading(dual, tmp_path: Path) -> None:
    # both drive midway (10 m from each carriageway) at 12 m/s, 1 Hz, no heading column
    east = line_points((50, 10), (950, 10), 12.0)
    df = pd.concat([track(east, "EAST", "E1"), track(east[::-1], "WEST", "E2")])
    log = tmp_path / "dual.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, dual.roads, params=HMM)
    eb, wb = piece_of(dual.roads, (0, 0), (1000, 0)), piece_of(dual.roads, (1000, 20), (0, 20))
    ent = {e: np.maximum(a, 0) / 1e9 for e, a in res.totals.enterprise_piece_um.items()}
    assert ent["E1"][eb] * 1000 == pytest.approx(900, abs=1.0) and ent["E1"][wb] == 0
    assert ent["E2"][wb] * 1000 == pytest.approx(900, abs=1.0) and ent["E2"][eb] == 0


def test_noisy_1hz_log_loses_no_valid_fix_and_keeps_its_km(row3, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    # 15 m/s along the 900 m row, 30 m RMS noise: many raw steps exceed 60 m in 1 s
    true = line_points((0, 0), (900, 0), 15.0)
    xy = true + rng.normal(0, 30 / math.sqrt(2), true.shape)
    assert (np.hypot(*np.diff(xy, axis=0).T) > 60).sum() >= 3
    log = tmp_path / "noisy.csv"
    track(xy).to_csv(log, index=False)
    res = fleet.compute_mileage(log, row3.roads, params=HMM)
    assert sum(res.totals.bad.values()) == 0
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(0, 0), (900, 0)]), rel=0.05)


def test_gap_over_60_s_is_routed_when_plausible(row3, tmp_path: Path) -> None:
    df = track(np.array([[100.0, 0.0], [110.0, 0.0], [790.0, 0.0], [800.0, 0.0]]))
    df["timestamp"] = [1_700_000_000, 1_700_000_001, 1_700_000_091, 1_700_000_092]  # a 90 s gap
    log = tmp_path / "gap.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, row3.roads, params=HMM)
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(100, 0), (800, 0)]), abs=0.2)


def test_unfollowable_pair_breaks_the_track_and_is_reported(tmp_path: Path) -> None:
    # two roads 60 m apart that do not connect: a hop between them has no route
    ways = [{"xy": [(0, 0), (500, 0)]}, {"xy": [(0, 60), (500, 60)]}]
    net = sources.load_network(write_layer(tmp_path / "two.geojson", ways))
    xy = np.vstack([line_points((0, 0), (200, 0), 10.0), line_points((210, 60), (400, 60), 10.0)])
    log = tmp_path / "hop.csv"
    track(xy).to_csv(log, index=False)
    res = fleet.compute_mileage(log, net.roads, params=HMM)
    assert res.totals.unconnected_pairs == 1
    (veh, t0, t1, why), = res.totals.break_examples
    assert veh == "V1" and (t1 - t0) == 10**9 and "route" in why
    # km on both roads, the hop as off-network straight distance
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(0, 0), (200, 0)]) + geod_len([(210, 60), (400, 60)]),
                                                     abs=0.5)
    assert res.off_network_km * 1000 == pytest.approx(math.hypot(10, 60), abs=0.5)
    assert any(r["figure"] == "unfollowed pairs" and r["value"] == 1 for r in res.summary())
    (row,) = res.unfollowed()
    assert row["vehicle_id"] == "V1" and row["from"] < row["to"] and "route" in row["why"]


def test_route_table_is_one_way_aware(dual) -> None:
    m = fleet.build_matcher(dual.roads)
    rt = RouteTable(m, 5000.0)
    eb = piece_of(dual.roads, (0, 0), (1000, 0))
    u, v = rt.pu[eb], rt.pv[eb]
    # u -> v along the eastbound carriageway; v -> u only round by the westbound one (20 + 1000 + 20)
    d = rt.dist(np.array([u, v]), np.array([v, u]))
    assert d[0] == pytest.approx(geod_len([(0, 0), (1000, 0)]), abs=0.01)
    assert d[1] == pytest.approx(geod_len([(1000, 0), (1000, 20), (0, 20), (0, 0)]), abs=0.01)
    which, pieces = rt.path_pieces(np.array([v]), np.array([u]))
    assert sorted(pieces.tolist()) == sorted([piece_of(dual.roads, (1000, 0), (1000, 20)),
                                              piece_of(dual.roads, (1000, 20), (0, 20)),
                                              piece_of(dual.roads, (0, 20), (0, 0))])


def test_states_of_candidates_by_hand() -> None:
    # the states kernel on hand-made candidates: the emission cut, the first nearest sub-segment of
    # each piece, both directions of a two-way piece, the heading emission, and the against-heading
    # filter (a state against the heading goes unless its fix has nothing else)
    from geo._fleet_hmm_kernels import _states_kernel

    f64, i64 = np.float64, np.int64
    # sub-segments: 0, 1 of two-way piece 0 (east), 2 of one-way piece 1 (east), 3 of one-way piece 2 (west)
    sub_piece = np.array([0, 0, 1, 2], dtype=i64)
    sub_along, sub_len = np.array([0.0, 10.0, 0.0, 0.0]), np.full(4, 10.0)
    ux, uy = np.array([1.0, 1.0, 1.0, -1.0]), np.zeros(4)
    scale, oneway = np.array([1.0, 1.0, 2.0]), np.array([False, True, True])
    length = np.array([20.0, 10.0, 20.0])
    pu, pv = np.array([10, 11, 12], dtype=i64), np.array([20, 21, 22], dtype=i64)
    H = np.array([5, 7, 8], dtype=i64)
    # fix 0: a tie on piece 0 (the first wins), piece 1, and piece 2 far beyond the cut (50^2 - 2^2 > 100)
    # fix 1: only piece 2, against its heading; fix 2: piece 0, heading not used
    c_pt = np.array([0, 0, 0, 0, 1, 2], dtype=i64)
    c_d = np.array([2.0, 2.0, 4.0, 50.0, 1.0, 5.0])
    c_sub = np.array([0, 1, 2, 3, 3, 1], dtype=i64)
    c_fr = np.array([0.5, 0.25, 0.5, 0.1, 0.25, 0.5])
    use_h = np.array([True, True, False])
    sin_h, cos_h = np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])  # heading east
    out = _states_kernel(c_pt, c_d, c_sub, c_fr, H, 10, 100.0, 50.0, 10.0, use_h, sin_h, cos_h, sub_piece,
                         sub_along, sub_len, scale, oneway, length, pu, pv, ux, uy)
    ns = out[0]
    s_pt, piece, sub, L, pos, off, ex, en, emis, sdir = (a[:ns].tolist() for a in out[1:11])
    assert ns == 5
    assert s_pt == [5, 5, 7, 8, 8]
    assert piece == [0, 1, 2, 0, 0] and sub == [0, 2, 3, 1, 1] and sdir == [1, 1, 1, 1, -1]
    assert L == [20.0, 10.0, 20.0, 20.0, 20.0]
    assert pos == [5.0, 5.0, 5.0, 15.0, 15.0]  # (along + frac * len) * scale: piece 2 counts double
    assert off == [5.0, 5.0, 5.0, 15.0, 5.0]  # against the piece: from its v end
    assert ex == [20, 21, 22, 20, 10] and en == [10, 11, 12, 10, 20]
    # d^2 / 2 sigma^2 (+ 10 (1 - cos) with the heading): along 0, against (cos -1) 20
    assert emis == pytest.approx([4 / 50, 16 / 50, 1 / 50 + 20.0, 25 / 50, 25 / 50], rel=1e-15)
    st_cnt, st_start = out[11], out[12]
    assert st_cnt.tolist() == [0, 0, 0, 0, 0, 2, 0, 1, 2, 0]
    assert st_start.tolist() == [0, 0, 0, 0, 0, 0, 2, 2, 3, 5]
    # no candidates at all
    e = np.zeros(0, dtype=i64)
    out = _states_kernel(e, e.astype(f64), e, e.astype(f64), e, 3, 100.0, 50.0, 10.0, use_h[:0], sin_h[:0],
                         cos_h[:0], sub_piece, sub_along, sub_len, scale, oneway, length, pu, pv, ux, uy)
    assert out[0] == 0 and out[11].tolist() == [0, 0, 0] and out[12].tolist() == [0, 0, 0]


def test_results_do_not_depend_on_chunks_or_windows(row3, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    frames = []
    for i in range(3):
        true = np.vstack([line_points((0, 0), (900, 0), 9.0), line_points((900, 0), (0, 0), 9.0)[1:]])
        frames.append(track(true + rng.normal(0, 8, true.shape), f"V{i}", f"E{i % 2}", t0=1_700_000_000 + 5000 * i))
    log = tmp_path / "three.csv"
    pd.concat(frames).to_csv(log, index=False)
    m = fleet.build_matcher(row3.roads)
    small = fleet.MileageParams(hmm=HmmParams(sigma_m=8.0, window=16, overlap=8))
    base = fleet.compute_mileage(log, row3.roads, matcher=m, params=small, chunk_rows=10**6)
    for rows in (7, 50, 333):
        other = fleet.compute_mileage(log, row3.roads, matcher=m, params=small, chunk_rows=rows)
        assert np.array_equal(base.totals.piece_um, other.totals.piece_um)
        assert base.by_vehicle() == other.by_vehicle()
    total = geod_len([(0, 0), (900, 0)]) * 2 * 3
    assert base.on_network_km * 1000 == pytest.approx(total, rel=0.02)


def _gpx(tracks: list[tuple[str | None, str | None, np.ndarray, list[str] | None]]) -> str:
    from test_fleet import TO_LL, X0, Y0

    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<gpx version="1.1" creator="test" '
           'xmlns="http://www.topografix.com/GPX/1/1">']
    for name, typ, xy, times in tracks:
        out.append("<trk>" + (f"<name>{name}</name>" if name else "") + (f"<type>{typ}</type>" if typ else "")
                   + "<trkseg>")
        lon, lat = TO_LL.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
        for i, (a, b) in enumerate(zip(lon, lat)):
            t = f"<time>{times[i]}</time>" if times else ""
            out.append(f'<trkpt lat="{b:.8f}" lon="{a:.8f}">{t}</trkpt>')
        out.append("</trkseg></trk>")
    out.append("</gpx>")
    return "\n".join(out)


def test_gpx_without_times_or_type_is_an_ordered_trace(row3, tmp_path: Path) -> None:
    # fixes every 100 m, no <time> and no <type>; a second track with one time for every point
    xy = line_points((50, 0), (850, 0), 100.0)
    same = ["2024-03-01T08:00:00+08:00"] * len(xy)
    p = tmp_path / "walk.gpx"
    p.write_text(_gpx([("car-1", None, xy, None), (None, "ACME", xy[::-1], same)]), encoding="utf-8")
    res = fleet.compute_mileage(p, row3.roads, params=HMM)
    want = geod_len([(50, 0), (850, 0)])
    by = {v["vehicle_id"]: v for v in res.by_vehicle()}
    assert set(by) == {"car-1", "walk-trk2"}
    assert by["car-1"]["on_network_km"] * 1000 == pytest.approx(want, abs=0.5)
    assert by["walk-trk2"]["on_network_km"] * 1000 == pytest.approx(want, abs=0.5)
    assert by["car-1"]["enterprise"] == "walk" and by["walk-trk2"]["enterprise"] == "ACME"
    assert sum(res.totals.bad.values()) == 0  # 100 m "in 1 s" is no jump: times are not known
    assert res.untimed == ("car-1", "walk-trk2")
    summary = {r["figure"]: r["value"] for r in res.summary()}
    assert summary["ordered traces"] == 2 and summary["driving hours"] == 0
    assert any("enterprise set to the file name 'walk'" in w for w in res.log.warnings)
    assert any("ordered traces" in w for w in res.log.warnings)


def test_cli_matcher_option_and_noise_in_the_summary(row3, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli import cli
    import geopandas as gpd
    import json

    src = tmp_path / "row3_src.geojson"
    ways = [{"xy": [(0, 0), (300, 0)]}, {"xy": [(300, 0), (600, 0)]}, {"xy": [(600, 0), (900, 0)]}]
    write_layer(src, ways)
    zf = tmp_path / "z.geojson"
    gpd.GeoDataFrame({"name": ["z"]}, geometry=[zone_of(-100, -100, 1000, 400).geometry], crs=4326).to_file(zf)
    df = track(np.array([[100.0, 0.0], [700.0, 0.0]]))
    df["timestamp"] = [1_700_000_000, 1_700_000_030]
    log = tmp_path / "two.csv"
    df.to_csv(log, index=False)
    got = {}
    for mt in ("hmm", "snap"):
        r = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", str(src), "--zone", str(zf),
                                     "--format", "json", "--matcher", mt, "--out-dir", str(tmp_path / mt)])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        summ = {row["figure"]: row["value"] for row in doc["tables"]["summary"]}
        assert summ["matcher"] == mt and summ["sampling interval s"] == 30
        assert "estimated GPS noise m" in summ
        meta = json.loads((tmp_path / mt / "mileage_figures.json").read_text(encoding="utf-8"))["meta"]
        assert meta["matcher"] == mt and meta["sampling_interval_s"] == 30
        got[mt] = summ["on-network km"]
    assert got["hmm"] * 1000 == pytest.approx(geod_len([(100, 0), (700, 0)]), abs=0.1)
    r = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", str(src), "--matcher", "meili"])
    assert r.exit_code != 0 and "meili" in r.output


def test_route_cache_that_fills_up_gives_the_same_routes(row3) -> None:
    m = fleet.build_matcher(row3.roads)
    big, tiny = RouteTable(m, 5000.0), RouteTable(m, 5000.0, max_cached=3)
    src = np.r_[big.pu, big.pv]
    tgt = np.r_[big.pv[::-1], big.pu]
    for _ in range(3):  # the tiny cache is cleared again and again
        assert np.array_equal(big.dist(src, tgt), tiny.dist(src, tgt))
        assert [a.tolist() for a in big.path_pieces(src, tgt)] == [a.tolist() for a in tiny.path_pieces(src, tgt)]


def test_coverage_counts_a_carriageway_with_its_driven_partner(dual, tmp_path: Path) -> None:
    east = line_points((0, 0), (1000, 0), 10.0)
    log = tmp_path / "east.csv"
    track(east).to_csv(log, index=False)
    res = fleet.compute_mileage(log, dual.roads, zone=zone_of(-100, -100, 1100, 120), params=HMM)
    cl = res._centerline()
    drv = res.driven()
    # the same by a plain loop over the partners
    d_cl = [bool(drv[p]) or any(bool(drv[q]) for q in (ps if ps is not None else [])) for p, ps in
            zip(cl["piece"], cl["partners"])]
    want = cl["centerline_m"].to_numpy()[np.array(d_cl)].sum() / 1000
    cov = res.coverage()
    assert cov[0]["driven_centerline_km"] == pytest.approx(round(want, 3))
    eb, wb = piece_of(dual.roads, (0, 0), (1000, 0)), piece_of(dual.roads, (1000, 20), (0, 20))
    assert drv[eb] and not drv[wb]
    assert any(eb in (ps if ps is not None else []) for ps in cl["partners"])  # the pair is paired
    assert res.coverage() == cov and res.coverage() is not res.coverage()  # cached, handed out as copies


@pytest.fixture(scope="module")
def dense_grid(tmp_path_factory):
    """A street grid of 11 m pieces (like write_grid_osm): 7 rows of 80 pieces (880 m) and 81 columns."""
    s, nx_, ny_ = 11.0, 81, 7
    ways = [{"xy": [(j * s, i * s) for j in range(nx_)], "highway": "residential"} for i in range(ny_)]
    ways += [{"xy": [(j * s, i * s) for i in range(ny_)], "highway": "tertiary"} for j in range(nx_)]
    tmp = tmp_path_factory.mktemp("dense")
    net = sources.load_network(write_layer(tmp / "grid.geojson", ways),
                               zone=zone_of(-50, -50, nx_ * s + 50, ny_ * s + 50))
    return net, s * (nx_ - 1), 3 * s


@pytest.mark.parametrize("interval", [1, 5])
@pytest.mark.parametrize("noise", [5.0, 15.0])
@pytest.mark.parametrize("speed_heading", [False, True])
def test_straight_drive_on_a_dense_grid_counts_the_row_length(dense_grid, tmp_path: Path, interval: int,
                                                              noise: float, speed_heading: bool) -> None:
    # Regression: with 11 m pieces, noisy fixes made the HMM zig-zag over parallel rows and turn back at
    # nodes for free (138.9 km vs 99.9 km truth on the 100 x 100 grid). A drive along the middle row at
    # 8 m/s, ``noise`` m RMS horizontal: the km must be the row length (hand-checked: 880 m) within 4 %.
    net, length, y = dense_grid
    rng = np.random.default_rng(11)
    pts = line_points((0.0, y), (length, y), 8.0 * interval)
    xy = pts + rng.normal(0, noise / math.sqrt(2), pts.shape)
    n = len(xy)
    df = track(xy, heading=np.full(n, 90.0) if speed_heading else None,
               speed=np.full(n, 8.0) if speed_heading else None)
    df["timestamp"] = 1_700_000_000 + interval * np.arange(n)
    log = tmp_path / "row.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, net.roads, params=HMM)
    want = geod_len([(0.0, y), (length, y)])
    assert res.on_network_km * 1000 == pytest.approx(want, rel=0.04)
    # almost all of it on the rows: a 2.6-sigma fix nearer the next row may still be matched there
    # (an excursion round one block puts 22 m on the columns), a zig-zag at every junction may not
    rows = net.roads["highway"].to_numpy() == "residential"
    assert res.piece_km[~rows].sum() * 1000 < 0.05 * want


# ---------------------------------------------------------------- noise, standing, turns (issue 9, item 5)

def _lines(coords: list[list[tuple[float, float]]]):
    import shapely

    return np.array([shapely.LineString(c) for c in coords], dtype=object)


def test_noise_estimate_is_calibrated_where_roads_are_close_together() -> None:
    import shapely

    from geo._fleet_noise import estimate_noise

    rng = np.random.default_rng(21)
    sigma = 20.0
    # 5 parallel roads 50 m apart, 2 km long; 10 s fixes on the middle one (second differences unused)
    pieces = _lines([[(0.0, 50.0 * k), (2000.0, 50.0 * k)] for k in range(-2, 3)])
    n = 4000
    x = rng.uniform(100, 1900, n) + rng.normal(0, sigma, n)
    y = rng.normal(0, sigma, n)
    veh, t = np.zeros(n, dtype=np.int64), (np.arange(n) * 10 * 10**9).astype(np.int64)
    sig, itv = estimate_noise(x, y, veh, t, pieces)
    assert itv == 10.0
    # the lone-road reading, the median distance to the nearest piece / 0.6745, reads low: a fix
    # more than 25 m off is nearer the next road (hand-checked: 17.5 m for 20 m)
    d = shapely.STRtree(pieces).query_nearest(shapely.points(x, y), return_distance=True)[1]
    assert np.median(d) / 0.6745 < 0.9 * sigma
    assert sig == pytest.approx(sigma, rel=0.07)
    # on a lone road the calibration is the half-normal reading itself
    sig1, _ = estimate_noise(x, y, veh, t, pieces[2:3])
    assert sig1 == pytest.approx(np.median(np.abs(y)) / 0.6745, rel=0.05)
    assert sig1 == pytest.approx(sigma, rel=0.08)
    # where the roads are so close that the median no longer grows with the noise (20 m apart: about
    # 5 m whatever the noise above 10 m), the estimate stops where it flattens instead of running away
    near = _lines([[(0.0, 20.0 * k), (2000.0, 20.0 * k)] for k in range(-2, 3)])
    sig2, _ = estimate_noise(x, y, veh, t, near)
    assert 5.0 < sig2 < sigma


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_noise_correlation_of_consecutive_fixes(rho: float) -> None:
    from geo._fleet_noise import estimate_noise

    rng = np.random.default_rng(4)
    sigma, n = 10.0, 6000
    # AR(1) per axis with stationary std sigma: e_i = rho e_(i-1) + sqrt(1 - rho^2) w_i
    e = np.zeros((n, 2))
    e[0] = rng.normal(0, sigma, 2)
    w = rng.normal(0, sigma * math.sqrt(1 - rho ** 2), (n, 2))
    for i in range(1, n):
        e[i] = rho * e[i - 1] + w[i]
    # a straight drive at 10 m/s on a lone road, 1 Hz: second differences are the noise's alone
    x = 10.0 * np.arange(n) + e[:, 0]
    y = e[:, 1]
    pieces = _lines([[(-100.0, 0.0), (10.0 * n + 100.0, 0.0)]])
    sig, itv, corr = estimate_noise(x, y, np.zeros(n, dtype=np.int64), (np.arange(n) * 10**9).astype(np.int64),
                                    pieces, with_corr=True)
    # (a drifting sample is worth fewer fixes: against its own half-normal reading, and loosely sigma)
    assert itv == 1.0 and sig == pytest.approx(np.median(np.abs(y)) / 0.6745, rel=0.04)
    assert sig == pytest.approx(sigma, rel=0.15)
    assert corr == pytest.approx(rho, abs=0.05)
    # the step's own noise: sigma sqrt(1 - rho^k) per axis over sqrt 2 (hand-checked: k = 1, rho = 0.9: 0.436 sigma)
    h = HmmParams(sigma_m=sigma, noise_corr=rho)
    assert h.step_sigma(1) == pytest.approx(sigma * math.sqrt(1 - rho), rel=1e-9)


@pytest.fixture()
def ladder(tmp_path: Path):
    """Two parallel two-way rows 11 m apart (y = 0 and y = 11), 440 m long, joined by rungs every 11 m."""
    s, nx_ = 11.0, 41
    ways = [{"xy": [(j * s, 0.0) for j in range(nx_)], "highway": "residential"},
            {"xy": [(j * s, s) for j in range(nx_)], "highway": "residential"}]
    ways += [{"xy": [(j * s, 0.0), (j * s, s)], "highway": "tertiary"} for j in range(nx_)]
    return sources.load_network(write_layer(tmp_path / "ladder.geojson", ways), zone=zone_of(-50, -50, 500, 60))


def test_turn_costs_keep_a_zigzag_on_its_row(ladder, tmp_path: Path) -> None:
    # along row y = 0 at 11 m/s, 1 Hz, 1 m south of it, but three runs of three fixes 8.5 m north
    # (2.5 m from the other row); the known noise of 4 m given. The road driven is the row: 440 m on
    # it, nothing on the rungs (a hop to the other row and back is 4 right-angle turns)
    xy = line_points((0.0, 0.0), (440.0, 0.0), 11.0)
    xy[:, 1] = -1.0
    for k in (8, 20, 32):
        xy[k:k + 3, 1] = 8.5
    log = tmp_path / "zig.csv"
    track(xy).to_csv(log, index=False)
    rows = ladder.roads["highway"].to_numpy() == "residential"
    want = geod_len([(0.0, 0.0), (440.0, 0.0)])
    got = {}
    for tp in (0.0, HmmParams().turn_penalty_m):
        hp = HmmParams(sigma_m=4.0, turn_penalty_m=tp, decimate_sigmas=0.0)  # every fix matched
        res = fleet.compute_mileage(log, ladder.roads, params=fleet.MileageParams(matcher="hmm", hmm=hp))
        got[tp] = (res.on_network_km * 1000, res.piece_km[~rows].sum() * 1000)
    km, rungs = got[HmmParams().turn_penalty_m]
    assert km == pytest.approx(want, abs=1.0) and rungs < 0.5
    # without turn costs the same fixes hop over to the other row and back, 2 rungs each time (66 m)
    assert got[0.0][1] == pytest.approx(3 * 2 * geod_len([(0.0, 0.0), (0.0, 11.0)]), abs=1.0)


def test_a_crawling_vehicle_on_a_sparse_noisy_log_is_not_standing(row3, tmp_path: Path) -> None:
    # 2 m/s along the 900 m row, a fix every 10 s (20 m apart, no noise) in a log said to have 21 m
    # of noise: the noise bound alone (6 + 4 x 21 x sqrt(1/2 + 1/2) = 90 m between the means of two
    # fixes before and two after, 20 s on) calls it standing; a crawl of 1 m/s over those 20 s does not
    xy = line_points((0.0, 0.0), (900.0, 0.0), 20.0)
    df = track(xy)
    df["timestamp"] = 1_700_000_000 + 10 * np.arange(len(xy))
    log = tmp_path / "crawl.csv"
    df.to_csv(log, index=False)
    want = geod_len([(0.0, 0.0), (900.0, 0.0)])
    hp = HmmParams(sigma_m=21.0, interval_s=10.0)
    res = fleet.compute_mileage(log, row3.roads, params=fleet.MileageParams(matcher="hmm", hmm=hp))
    assert res.on_network_km * 1000 == pytest.approx(want, abs=1.0)
    old = fleet.compute_mileage(log, row3.roads, params=fleet.MileageParams(
        matcher="hmm", hmm=HmmParams(sigma_m=21.0, interval_s=10.0, still_crawl_mps=0.0)))
    assert old.on_network_km * 1000 < 0.5 * want


def test_a_pair_round_a_logged_stop_is_no_gap(row3, tmp_path: Path) -> None:
    # 10 m/s from x = 0 to 400, standing 3 minutes at x = 400 (logging at 1 Hz, no noise), on to 900:
    # the vehicle was seen all the time, so the km are the 900 m driven
    xy = np.vstack([line_points((0.0, 0.0), (400.0, 0.0), 10.0), np.full((180, 2), [400.0, 0.0]),
                    line_points((400.0, 0.0), (900.0, 0.0), 10.0)[1:]])
    log = tmp_path / "stop.csv"
    track(xy).to_csv(log, index=False)
    res = fleet.compute_mileage(log, row3.roads, params=HMM)
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(0.0, 0.0), (900.0, 0.0)]), abs=1.0)
    assert res.off_network_km == 0


def test_route_table_equals_scipy_dijkstra_on_a_real_network(helsinki_pbf) -> None:
    # Independent check: every bounded route of the sparse label-correcting search equals
    # scipy's Dijkstra on the same directed graph (Helsinki: one-way streets, short pieces),
    # and the pieces of each route add up to its length.
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    net = sources.load_network(helsinki_pbf)
    m = fleet.build_matcher(net.roads)
    rt = RouteTable(m, 1500.0)
    N = rt.n_nodes
    tail = np.repeat(np.arange(N), np.diff(rt.indptr))
    G = csr_matrix((rt.weight, (tail, rt.head)), shape=(N, N))
    rng = np.random.default_rng(4)
    src = rng.choice(N, 60, replace=False)
    D = dijkstra(G, directed=True, indices=src, limit=1500.0)
    s_all = np.repeat(src, N)
    t_all = np.tile(np.arange(N), len(src))
    ours = rt.dist(s_all, t_all, 1500.0)
    ref = D.ravel()
    assert np.isfinite(ref).sum() > 5_000  # a real test: many routes within the bound
    assert np.array_equal(np.isfinite(ours), np.isfinite(ref))
    fin = np.isfinite(ref)
    assert np.allclose(ours[fin], ref[fin], rtol=0, atol=1e-6)
    # the pieces of a sample of routes add up to their length
    k = np.flatnonzero(fin & (ref > 0))[::97]
    which, pieces = rt.path_pieces(s_all[k], t_all[k], ours[k] + 1e-6)
    got = np.bincount(which, weights=np.maximum(m.piece_length_m[pieces], 1e-6), minlength=len(k))
    assert np.allclose(got, ours[k], atol=1e-6)


def test_routes_do_not_depend_on_the_distance_asked_for(row3, dense_grid) -> None:
    # A source searched first to a short level and later to a longer one gives the same routes
    # (distances and pieces, ties included) as one searched once to the longest: Dask workers and
    # processes see different sequences of questions.
    net = dense_grid[0]
    m = fleet.build_matcher(net.roads)
    a, b = RouteTable(m, 3000.0), RouteTable(m, 3000.0)
    src = np.r_[a.pu, a.pv]
    tgt = np.roll(np.r_[a.pv, a.pu], 17)
    a.dist(src, tgt, 100.0)  # short first: cached to the lowest level
    da, db = a.dist(src, tgt, 3000.0), b.dist(src, tgt, 3000.0)
    assert np.array_equal(da, db) and np.isfinite(da).mean() > 0.9
    fin = np.isfinite(da)
    pa = a.path_pieces(src[fin], tgt[fin], da[fin] + 1e-6)
    pb = b.path_pieces(src[fin], tgt[fin], db[fin] + 1e-6)
    assert [x.tolist() for x in pa] == [x.tolist() for x in pb]
    # asked for less than a route's length: never a wrong distance, only "beyond"
    short = a.dist(src, tgt, 50.0)
    assert np.all((short == da) | (np.isinf(short) & (da > 50.0)))


def test_rows_waiting_for_their_look_ahead_do_not_keep_a_chunk_alive(row3, tmp_path: Path) -> None:
    # Regression (50 M points peaked at 3.9 GB, growing ~30 MiB a chunk): the rows of a vehicle
    # waiting for the look-ahead of its last window were views of the whole chunk's arrays, so
    # every chunk with such a vehicle stayed in memory to the end of the log.
    from geo._fleet_hmm import HmmEngine
    from geo._fleet_io import FleetLog

    frames = [track(line_points((0, 0), (900, 0), 9.0), f"V{i}", "E1", t0=1_700_000_000 + 1000 * i)
              for i in range(4)]
    log = tmp_path / "four.csv"
    pd.concat(frames).to_csv(log, index=False)
    m = fleet.build_matcher(row3.roads)
    eng = HmmEngine(m, "wgs84", hmm=HmmParams(sigma_m=5.0))  # 101 rows a vehicle: all wait
    for ch in FleetLog(log, chunk_rows=150).chunks():
        eng.feed(ch)
        waiting = [a for b in eng.buf.values() for a in b.values()]
        assert waiting and all(a.base is None for a in waiting)  # own copies, no views
    tot = eng.finish()
    assert tot.piece_um.sum() / 1e6 == pytest.approx(4 * geod_len([(0, 0), (900, 0)]), rel=0.02)


def test_route_searches_equal_scipy_dijkstra_with_the_smallest_previous_node(helsinki_pbf, dense_grid) -> None:
    # The compiled Dijkstra behind the route table against scipy's Dijkstra (distances, bit for bit)
    # and the previous node computed here by brute force: of the ways into each node that are as
    # short as its route, the one from the smallest node (a grid is all ties).
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    for roads in (sources.load_network(helsinki_pbf).roads, dense_grid[0].roads):
        rt = RouteTable(fleet.build_matcher(roads), 3000.0)
        N = rt.n_nodes
        G = csr_matrix((rt.weight, rt.head, rt.indptr), shape=(N, N))
        tail = np.repeat(np.arange(N), np.diff(rt.indptr))
        src = np.unique(np.random.default_rng(2).choice(N, 40))
        for level in (50.0, 400.0, 3000.0):
            keys, d, p = rt._search(src, np.full(len(src), level))
            D = dijkstra(G, directed=True, indices=src, limit=level)
            D[D > level] = np.inf
            j, v = np.nonzero(np.isfinite(D))
            assert len(j) > len(src)
            assert np.array_equal(keys, src[j] * N + v) and np.array_equal(d, D[j, v])
            want = np.full(len(j), N)
            for i, (jj, vv) in enumerate(zip(j.tolist(), v.tolist())):
                into = np.flatnonzero(rt.head == vv)
                ok = D[jj, tail[into]] + rt.weight[into] == D[jj, vv]
                if ok.any():
                    want[i] = tail[into][ok].min()
            want[v == src[j]] = -1
            assert np.array_equal(p, want)


def test_nearest_segments_equal_strtree_on_a_real_network(helsinki_pbf) -> None:
    # Independent check of the noise estimate's nearest-piece distances: shapely's STRtree on
    # the pieces themselves, for fixes near the roads (the usual case) and far from them.
    import shapely

    from geo._fleet_noise import _NearestSegments
    from geo._fleet_match import metric_crs

    roads = sources.load_network(helsinki_pbf).roads
    pieces = roads.to_crs(metric_crs(roads)).geometry.values
    rng = np.random.default_rng(11)
    on = shapely.line_interpolate_point(pieces[rng.integers(0, len(pieces), 4000)], rng.uniform(0, 1, 4000),
                                        normalized=True)
    near_x = shapely.get_x(on) + rng.normal(0, 25, 4000)
    near_y = shapely.get_y(on) + rng.normal(0, 25, 4000)
    x0, y0, x1, y1 = shapely.total_bounds(pieces)
    far_x, far_y = rng.uniform(x0 - 800, x1 + 800, 2000), rng.uniform(y0 - 800, y1 + 800, 2000)
    x, y = np.r_[near_x, far_x, np.nan], np.r_[near_y, far_y, 0.0]
    tree = shapely.STRtree(pieces)
    ns = _NearestSegments(pieces)
    for max_d in (300.0, 30.0):
        (i, _), d = tree.query_nearest(shapely.points(x[:-1], y[:-1]), max_distance=max_d, return_distance=True,
                                       all_matches=False)
        ref = np.full(len(x), np.inf)  # (the NaN fix: none)
        ref[i] = d
        got, seg, (ox, oy) = ns.query(x, y, max_d)
        assert np.array_equal(np.isfinite(got), np.isfinite(ref))
        fin = np.isfinite(ref)
        assert fin.sum() > 1000 and (~fin).sum() > 100  # both kinds of fix
        assert np.allclose(got[fin], ref[fin], rtol=0, atol=1e-6)
        # the nearest point returned is at that distance
        assert np.allclose(np.hypot(ox - x, oy - y)[fin], ref[fin], atol=1e-6)
        assert (seg[~fin] == -1).all()

    # built from the vertices alone (the noise estimate's own path), the lines only once asked for:
    # the same answers, and near fixes alone never ask for them
    c, li = shapely.get_coordinates(pieces, return_index=True)
    asked = []
    lazy = _NearestSegments(lambda: asked.append(1) or pieces, coords=(c, li))
    # (fixes within a cell size of a piece, away from the grid's border cells)
    mid = (near_x > x0 + 100) & (near_x < x1 - 100) & (near_y > y0 + 100) & (near_y < y1 - 100)
    keep = np.flatnonzero(mid & (ns.query(near_x, near_y, 300.0)[0] <= ns.cell))
    assert len(keep) > 1000
    a, b = lazy.query(near_x[keep], near_y[keep], 300.0), ns.query(near_x[keep], near_y[keep], 300.0)
    assert not asked and all(np.array_equal(u, v) for u, v in zip((a[0], a[1], *a[2]), (b[0], b[1], *b[2])))
    a, b = lazy.query(x, y, 300.0), ns.query(x, y, 300.0)
    assert asked == [1] and all(np.array_equal(u, v, equal_nan=True)
                                for u, v in zip((a[0], a[1], *a[2]), (b[0], b[1], *b[2])))

def test_noise_estimate_reads_the_same_rows_whatever_the_chunks(row3, tmp_path: Path, monkeypatch) -> None:
    # The first chunk is shared with the matching where it holds the whole sample; a smaller
    # first chunk means a read of its own: the same estimate, the same km either way.
    rng = np.random.default_rng(3)
    true = np.vstack([line_points((0, 0), (900, 0), 9.0), line_points((900, 0), (0, 0), 9.0)[1:]])
    frames = [track(true + rng.normal(0, 6, true.shape), f"V{i}", "E", t0=1_700_000_000 + 5000 * i) for i in range(2)]
    log = tmp_path / "two.csv"
    pd.concat(frames).to_csv(log, index=False)
    monkeypatch.setattr(fleet, "_NOISE_SAMPLE_ROWS", 150)
    m = fleet.build_matcher(row3.roads)
    runs = {rows: fleet.compute_mileage(log, row3.roads, matcher=m, chunk_rows=rows) for rows in (10**6, 200, 150, 40)}
    ref = runs[10**6]
    assert ref.noise_m is not None and 3.0 < ref.noise_m < 12.0
    for r in runs.values():
        assert r.noise_m == ref.noise_m and r.interval_s == ref.interval_s
        assert np.array_equal(r.totals.piece_um, ref.totals.piece_um)
    # and it is the estimate of the first 150 rows
    sample = pd.read_csv(log).iloc[:150]
    sample.to_csv(tmp_path / "head.csv", index=False)
    assert fleet._log_noise(tmp_path / "head.csv", row3.roads, "wgs84")[0] == ref.noise_m


def test_metric_crs_is_geopandas_utm_zone_on_real_extracts(shared_data: Path, helsinki_pbf) -> None:
    # The matcher's metric CRS by arithmetic equals geopandas' estimate_utm_crs (a CRS-database
    # query) on real extracts of four UTM zones, and a box round a point on either side of a
    # zone boundary; Shanghai is UTM 51N.
    import geopandas as gpd
    from shapely.geometry import box

    from geo._fleet_match import metric_crs

    for src in (helsinki_pbf, shared_data / "peers" / "krems.osm.gz", shared_data / "peers" / "north-bayreuth.osm.gz",
                shared_data / "jiading_osm_signalized.osm"):
        roads = sources.load_network(src).roads
        assert metric_crs(roads).to_epsg() == roads.estimate_utm_crs().to_epsg(), src
    for lon, lat in ((11.9, 49.9), (12.1, 49.9), (-58.4, -34.6), (151.2, -33.9), (-0.1, 51.5)):
        g = gpd.GeoDataFrame(geometry=[box(lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05)], crs=4326)
        assert metric_crs(g).to_epsg() == g.estimate_utm_crs().to_epsg(), (lon, lat)
    assert metric_crs(sources.load_network(shared_data / "jiading_osm_signalized.osm").roads).to_epsg() == 32651


# ---------------------------------------------------------------- the transitions' compiled kernels

def test_crow_bound_decision_equals_the_one_computed_with_hypot() -> None:
    # _crow_le decides "base + 0.99 hypot(dx, dy) <= lim" mostly from sqrt(dx^2 + dy^2): against the
    # decision made with numpy's hypot, on random nodes and on limits at the sum itself and one ulp
    # either side of it (where a wrong bound would show)
    from geo._fleet_hmm_kernels import _crow_le as crow_le
    from numba import njit

    @njit
    def decide(nx, ny, a, b, base, lim):
        out = np.empty(len(a), np.bool_)
        for i in range(len(a)):
            out[i] = crow_le(nx, ny, a[i], b[i], base[i], lim[i])
        return out

    rng = np.random.default_rng(7)
    n = 200_000
    nx = np.r_[rng.uniform(3e5, 4e5, 5000), 3.5e5]  # UTM-like metres; the last node twice (length 0)
    ny = np.r_[rng.uniform(3.4e6, 3.5e6, 5000), 3.45e6]
    nx, ny = np.r_[nx, nx[-1]], np.r_[ny, ny[-1]]
    a = rng.integers(0, len(nx), n)
    b = np.where(rng.random(n) < 0.01, len(nx) - 1, rng.integers(0, len(nx), n))
    a[:100] = len(nx) - 2
    base = rng.uniform(0, 500, n)
    exact = base + 0.99 * np.hypot(nx[a] - nx[b], ny[a] - ny[b])
    for lim in (exact, np.nextafter(exact, np.inf), np.nextafter(exact, -np.inf), exact * rng.uniform(0.5, 1.5, n)):
        got = decide(nx, ny, a, b, base, lim)
        assert np.array_equal(got, exact <= lim)
    assert decide(nx, ny, a, b, base, np.nextafter(exact, -np.inf)).sum() == 0
    assert decide(nx, ny, a, b, base, exact).all()


def test_pair_states_are_every_state_to_every_state_b_major() -> None:
    from geo._fleet_hmm_kernels import _pair_states

    rng = np.random.default_rng(3)
    st_cnt = rng.integers(0, 5, 40)
    st_start = np.r_[0, np.cumsum(st_cnt)[:-1]]
    pa = np.arange(0, 39)
    pb = pa + 1
    prp, sa, sb = _pair_states(pa, pb, st_start, st_cnt)
    want = [(k, st_start[pa[k]] + ja, st_start[pb[k]] + jb)
            for k in range(len(pa)) for jb in range(st_cnt[pb[k]]) for ja in range(st_cnt[pa[k]])]
    assert len(want) > 100
    assert list(zip(prp.tolist(), sa.tolist(), sb.tolist())) == want


def _viterbi_fixture(rng: np.random.Generator, ties: bool):
    """Random windows of fixes as ``_windows`` lays them out: some fixes left out of the matching,
    some without states; pairs of consecutive matched fixes with states, b-major costs; a few
    transitions implausible (inf), and some fixes none of whose states can be reached."""
    n = 60
    win = np.repeat(np.arange(4), n // 4).astype(np.int64)
    H = np.flatnonzero(rng.random(n) < 0.8)
    st_cnt = np.zeros(n, dtype=np.int64)
    st_cnt[H] = rng.integers(0, 4, len(H)) * (rng.random(len(H)) > 0.1)
    st_cnt[H] = np.maximum(st_cnt[H], rng.random(len(H)) < 0.9)
    st_start = np.r_[0, np.cumsum(st_cnt)[:-1]].astype(np.int64)
    ns = int(st_cnt.sum())
    Hh = H[st_cnt[H] > 0]
    prevH = np.full(n, -1, dtype=np.int64)
    same = win[H[1:]] == win[H[:-1]]
    prevH[H[1:][same]] = H[:-1][same]
    pb = Hh[prevH[Hh] >= 0]
    pa = prevH[pb]
    ok = st_cnt[pa] > 0
    pa, pb = pa[ok], pb[ok]
    m = int((st_cnt[pa] * st_cnt[pb]).sum())
    emis = (rng.integers(0, 3, ns) if ties else rng.random(ns) * 3).astype(np.float64)
    cost = (rng.integers(0, 3, m) if ties else rng.random(m) * 5).astype(np.float64)
    cost[rng.random(m) < 0.15] = np.inf
    dead = rng.choice(len(pb), size=max(1, len(pb) // 8), replace=False)  # unreachable fixes: breaks
    off = np.r_[0, np.cumsum(st_cnt[pa] * st_cnt[pb])]
    for j in dead.tolist():
        cost[off[j]:off[j + 1]] = np.inf
    return pa, pb, st_start, st_cnt, cost, emis, Hh, win, prevH


def _viterbi_plain(pa, pb, st_start, st_cnt, cost, emis, Hh, win, prevH):
    """The same Viterbi in plain Python: per state, its best incoming state (the first at the
    minimum); a fix none of whose states is reached starts a segment; back from each segment's
    best last state (the first at the minimum)."""
    score = {s: float(emis[s]) for s in range(len(emis))}
    back: dict[int, int] = {}
    off = 0
    for a_fix, b_fix in zip(pa.tolist(), pb.tolist()):
        na, nb = int(st_cnt[a_fix]), int(st_cnt[b_fix])
        A = [int(st_start[a_fix]) + i for i in range(na)]
        best = {}
        for b in range(nb):
            vals = [score[A[i]] + float(cost[off + b * na + i]) for i in range(na)]
            best[int(st_start[b_fix]) + b] = (min(vals), A[vals.index(min(vals))])
        off += na * nb
        reached = any(math.isfinite(v) for v, _ in best.values())
        for s, (v, a) in best.items():
            score[s] = v + emis[s] if reached else float(emis[s])
            if reached and math.isfinite(v):
                back[s] = a
    n = len(st_cnt)
    chosen = np.full(n, -1, dtype=np.int64)
    start = np.zeros(n, dtype=bool)
    states = {f: list(range(int(st_start[f]), int(st_start[f] + st_cnt[f]))) for f in Hh.tolist()}
    for f in Hh.tolist():
        start[f] = not any(s in back for s in states[f])
    Hl = Hh.tolist()
    for i, f in enumerate(Hl):
        if i + 1 < len(Hl) and win[Hl[i + 1]] == win[f] and not start[Hl[i + 1]]:
            continue
        vals = [score[s] for s in states[f]]
        cur, s = f, states[f][vals.index(min(vals))]
        chosen[f] = s
        while not start[cur]:
            s = back[s]
            cur = int(prevH[cur])
            chosen[cur] = s
    return chosen, start


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_viterbi_kernel_equals_a_plain_viterbi_and_brute_force(seed: int, ties: bool) -> None:
    from geo._fleet_hmm_kernels import _viterbi

    args = _viterbi_fixture(np.random.default_rng(seed), ties)
    chosen, start = _viterbi(*args)
    want_c, want_s = _viterbi_plain(*args)
    assert np.array_equal(chosen, want_c) and np.array_equal(start, want_s)
    pa, pb, st_start, st_cnt, cost, emis, Hh, win, prevH = args
    assert start.any() and (chosen[Hh] >= 0).all()
    if ties:
        return
    # every segment's path is the cheapest of all its state sequences (brute force)
    off = dict(zip(pb.tolist(), np.r_[0, np.cumsum(st_cnt[pa] * st_cnt[pb])].tolist()))
    segs: list[list[int]] = []
    for f in Hh.tolist():
        if start[f]:
            segs.append([])
        segs[-1].append(f)
    for seg in segs:
        def total(path: tuple[int, ...]) -> float:
            c = sum(float(emis[s]) for s in path)
            for (fa, sa), (fb, sb) in zip(zip(seg, path), zip(seg[1:], path[1:])):
                c += float(cost[off[fb] + (sb - st_start[fb]) * st_cnt[fa] + (sa - st_start[fa])])
            return c
        paths = list(itertools.product(*[range(st_start[f], st_start[f] + st_cnt[f]) for f in seg]))
        if len(paths) > 20000:
            continue
        best = min(paths, key=total)
        assert tuple(chosen[seg].tolist()) == best


@pytest.mark.parametrize("seed", range(3))
def test_attribution_kernels_equal_plain_numpy(seed: int) -> None:
    """The piece of every fix, the longest step of each pair and the per-vehicle sums (compiled)
    against plain loops and np.bincount on a random layout of windows."""
    from geo._fleet_hmm_kernels import _fix_pieces, _longest_steps, _vehicle_sums

    rng = np.random.default_rng(seed)
    n, ns, nv = 400, 300, 5
    win = np.sort(rng.integers(0, 9, n)).astype(np.int64)
    H = np.flatnonzero(rng.random(n) < 0.4)
    chosen = np.full(n, -1, dtype=np.int64)
    hh = H[rng.random(len(H)) < 0.8]
    chosen[hh] = rng.integers(0, ns, len(hh))
    s_piece = rng.integers(0, 50, ns)
    got = _fix_pieces(chosen, s_piece, H, win)
    own = np.where(chosen >= 0, s_piece[np.maximum(chosen, 0)], -1)
    inH = np.isin(np.arange(n), H)
    for r in range(n):
        if inH[r]:
            want = own[r]
        else:
            before = [q for q in range(r - 1, -1, -1) if win[q] == win[r] and inH[q]][:1]
            after = [q for q in range(r + 1, n) if win[q] == win[r] and inH[q]][:1]
            want = own[before[0]] if before else -1
            if want < 0 and after:
                want = own[after[0]]
        assert got[r] == want, r
    t = np.cumsum(rng.integers(1, 10**12, n))
    pa = np.sort(rng.choice(n - 1, 40, replace=False))
    pb = np.minimum(pa + rng.integers(1, 6, 40), n - 1)
    assert np.array_equal(_longest_steps(t, pa, pb),
                          [float(np.diff(t)[a:b].max()) for a, b in zip(pa.tolist(), pb.tolist())])
    # per-vehicle sums of the committed rows
    veh = rng.integers(0, nv - 1, n)
    ent = rng.integers(-1, 3, n)
    x, y = rng.random(n) * 1e4, rng.random(n) * 1e4
    untimed = rng.random(n) < 0.1
    fw = np.flatnonzero(rng.random(n) < 0.7)
    piece_fix = np.where(rng.random(n) < 0.8, rng.integers(0, 50, n), -1)
    c_at = rng.choice(fw, 200)
    c_um = rng.integers(-10**6, 10**9, 200)
    off_at = rng.choice(fw, 30)
    off_d = rng.random(30) * 300
    max_gap = 6 * 10**11
    pp = np.zeros(50, dtype=np.int64)
    fsum, cnt, present, unt_v, t_lo, t_hi, e_first = _vehicle_sums(
        fw, win, veh, ent, t, x, y, untimed, piece_fix, c_at, c_um, off_at, off_d, nv, max_gap, pp, 1e6)
    ri = fw[(fw > 0) & (win[fw] == win[np.maximum(fw - 1, 0)])]
    dt = t[ri] - t[ri - 1]
    gap = ~untimed[ri] & (dt > max_gap)
    d = np.hypot(x[ri] - x[ri - 1], y[ri] - y[ri - 1])
    keep = ~gap & ~untimed[ri]
    matched = fw[piece_fix[fw] >= 0]
    assert np.array_equal(fsum[0], np.bincount(veh[c_at], weights=c_um, minlength=nv))
    assert np.array_equal(fsum[1], np.bincount(veh[off_at], weights=np.rint(off_d * 1e6), minlength=nv))
    assert np.array_equal(fsum[2], np.bincount(veh[ri[~gap]], weights=np.rint(d[~gap] * 1e6), minlength=nv))
    assert np.array_equal(fsum[3], np.bincount(veh[ri[keep]], weights=dt[keep].astype(float), minlength=nv))
    assert np.array_equal(cnt[0], np.bincount(veh[ri[gap]], minlength=nv)) and gap.any() and (~gap).any()
    assert np.array_equal(cnt[1], np.bincount(veh[fw], minlength=nv))
    assert np.array_equal(cnt[2], np.bincount(veh[matched], minlength=nv))
    assert np.array_equal(pp, np.bincount(piece_fix[matched], minlength=50))
    assert np.array_equal(present, np.bincount(veh[fw], minlength=nv) > 0) and not present[-1]
    for v in range(nv - 1):
        rows = fw[veh[fw] == v]
        assert (t_lo[v], t_hi[v], e_first[v], unt_v[v]) == (t[rows].min(), t[rows].max(), ent[rows[0]],
                                                            untimed[rows].any())


@pytest.mark.parametrize("seed", range(3))
def test_chosen_pairs_kernel_equals_numpy_gathers(seed: int) -> None:
    """The contributions of the chosen pairs (compiled) against the same gathers in numpy: for each
    pair whose fixes both have a state and whose track goes on, its entry in the pair table."""
    from geo._fleet_hmm_kernels import _chosen_pairs

    rng = np.random.default_rng(seed)
    n = 300
    st_cnt = rng.integers(0, 4, n)
    st_start = np.r_[0, np.cumsum(st_cnt)[:-1]]
    ns = int(st_cnt.sum())
    pb = np.flatnonzero(rng.random(n) < 0.6)
    pb = pb[pb > 0]
    pa = pb - 1
    npair = st_cnt[pa] * st_cnt[pb]
    pair_at = np.full(n, -1, dtype=np.int64)
    pair_at[pb] = np.cumsum(npair) - npair
    M = int(npair.sum())
    cat = rng.integers(0, 3, M)  # same state / U-turn on the piece / routed
    fwd, use_rev, route = cat == 0, cat == 1, cat == 2
    delta, r_rev, route_len = rng.normal(0, 50, M), rng.random(M) * 200, rng.random(M) * 2000
    chosen = np.full(n, -1, dtype=np.int64)
    has = np.flatnonzero((st_cnt > 0) & (rng.random(n) < 0.9))
    chosen[has] = st_start[has] + rng.integers(0, 4, len(has)) % st_cnt[has]
    seg_start = rng.random(n) < 0.1
    s_piece, s_sub = rng.integers(0, 90, ns), rng.integers(0, 400, ns)
    L = rng.random(ns) * 500
    off = L * rng.random(ns)
    s_exit, s_entry = rng.integers(0, 70, ns), rng.integers(0, 70, ns)
    both, c_piece, c_sub, c_m, c_at, ex, en, d_nodes, at_r = _chosen_pairs(
        pa, pb, chosen, seg_start, pair_at, st_start, st_cnt, fwd, use_rev, route, delta, r_rev, route_len,
        s_piece, s_sub, L, off, s_exit, s_entry)
    want_both = (chosen[pa] >= 0) & (chosen[pb] >= 0) & ~seg_start[pb]
    assert np.array_equal(both, want_both) and both.any() and (~both).any()
    sa, sb, at = chosen[pa[both]], chosen[pb[both]], pb[both]
    k = pair_at[pb[both]] + (sb - st_start[pb[both]]) * st_cnt[pa[both]] + (sa - st_start[pa[both]])
    f, u, ri = np.flatnonzero(fwd[k]), np.flatnonzero(use_rev[k]), np.flatnonzero(route[k])
    assert len(f) and len(u) and len(ri)
    assert np.array_equal(c_piece, np.concatenate([s_piece[sb[f]], s_piece[sb[u]], s_piece[sa[ri]], s_piece[sb[ri]]]))
    assert np.array_equal(c_sub, np.concatenate([s_sub[sb[f]], s_sub[sb[u]], s_sub[sa[ri]], s_sub[sb[ri]]]))
    assert np.array_equal(c_m, np.concatenate([delta[k][f], r_rev[k][u], L[sa[ri]] - off[sa[ri]], off[sb[ri]]]))
    assert np.array_equal(c_at, np.concatenate([at[f], at[u], at[ri], at[ri]]))
    assert np.array_equal(ex, s_exit[sa[ri]]) and np.array_equal(en, s_entry[sb[ri]])
    assert np.array_equal(at_r, at[ri])
    assert np.array_equal(d_nodes, route_len[k][ri] - (L[sa[ri]] - off[sa[ri]]) - off[sb[ri]] + 1e-6)
