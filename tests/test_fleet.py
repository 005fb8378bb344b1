"""Fleet mileage: known answers on hand-built networks, bad rows, encodings, formats, CLI.

The hand-built networks are drawn in local metres (UTM 51N, near Jiading) and
written as a GeoJSON road layer with OSM tag columns, so they go through the same
loading as any source. Known answers are computed here by hand (lengths with
pyproj.Geod), never copied from the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pyproj import Geod, Transformer
from shapely.geometry import LineString, box

from cli import cli
from geo import fleet, sources
from geo._fleet_io import FleetLog, detect_encoding
from geo.errors import FleetLogError, InputError
from geo.gcj02 import wgs84_to_gcj02
from geo.simulate import SimParams, simulate_fleet, write_simulation
from geo.zones import Zone

GEOD = Geod(ellps="WGS84")
UTM = "EPSG:32651"
X0, Y0 = 330_000.0, 3_469_000.0  # a point in Jiading, UTM 51N
TO_LL = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def ll(x: float, y: float) -> tuple[float, float]:
    lon, lat = TO_LL.transform(X0 + x, Y0 + y)
    return float(lon), float(lat)


def write_layer(path: Path, ways: list[dict]) -> Path:
    """A GeoJSON road layer from ways ``{"xy": [(x, y), ...], "highway", "oneway", "name"}`` in local metres."""
    rows = [{"highway": w.get("highway", "primary"), "oneway": w.get("oneway", "no"), "name": w.get("name"),
             "osm_way_id": i + 1} for i, w in enumerate(ways)]
    geoms = [LineString([ll(x, y) for x, y in w["xy"]]) for w in ways]
    gpd.GeoDataFrame(rows, geometry=geoms, crs=4326).to_file(path, driver="GeoJSON")
    return path


def zone_of(x0: float, y0: float, x1: float, y1: float, name: str = "testzone") -> Zone:
    (a, b), (c, d) = ll(x0, y0), ll(x1, y1)
    return Zone(name, box(a, b, c, d))


def geod_len(xy: list[tuple[float, float]]) -> float:
    pts = [ll(x, y) for x, y in xy]
    return float(GEOD.line_length([p[0] for p in pts], [p[1] for p in pts]))


def track(xy: np.ndarray, vehicle: str = "V1", enterprise: str = "E1", t0: int = 1_700_000_000,
          heading: np.ndarray | None = None, speed: np.ndarray | None = None) -> pd.DataFrame:
    """Log rows (1 Hz) for local-metre positions."""
    lon, lat = TO_LL.transform(X0 + xy[:, 0], Y0 + xy[:, 1])
    df = pd.DataFrame({"vehicle_id": vehicle, "enterprise": enterprise, "timestamp": t0 + np.arange(len(xy)),
                       "lon": np.round(lon, 8), "lat": np.round(lat, 8)})
    if heading is not None:
        df["heading"] = heading
    if speed is not None:
        df["speed"] = speed
    return df


def line_points(a: tuple[float, float], b: tuple[float, float], step: float) -> np.ndarray:
    n = int(round(math.dist(a, b) / step))
    f = np.linspace(0.0, 1.0, n + 1)
    return np.column_stack([a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])])


# ---------------------------------------------------------------- networks

@pytest.fixture()
def tee(tmp_path: Path):
    """A 1 km east-west two-way road A-C-B with a 300 m side road C-D to the north at C (x = 400)."""
    ways = [{"xy": [(0, 0), (400, 0), (1000, 0)], "name": "东西路"},
            {"xy": [(400, 0), (400, 300)], "name": "南北路", "highway": "secondary"}]
    net = sources.load_network(write_layer(tmp_path / "tee.geojson", ways), zone=zone_of(-100, -100, 1100, 400))
    return net


@pytest.fixture()
def dual(tmp_path: Path):
    """A dual carriageway: eastbound y = 0 and westbound y = 20, one-way, 1 km, joined at both ends."""
    ways = [{"xy": [(0, 0), (1000, 0)], "oneway": "yes", "name": "双向路"},
            {"xy": [(1000, 20), (0, 20)], "oneway": "yes", "name": "双向路"},
            {"xy": [(1000, 0), (1000, 20)], "highway": "tertiary"},
            {"xy": [(0, 20), (0, 0)], "highway": "tertiary"}]
    return sources.load_network(write_layer(tmp_path / "dual.geojson", ways), zone=zone_of(-100, -100, 1100, 120))


def piece_of(roads: gpd.GeoDataFrame, xy_a: tuple[float, float], xy_b: tuple[float, float]) -> int:
    """Row of the piece whose ends are these local points (in that order for one-way pieces)."""
    a, b = ll(*xy_a), ll(*xy_b)
    for i, g in enumerate(roads.geometry.values):
        s, e = g.coords[0], g.coords[-1]
        if (math.dist(s, a) < 1e-6 and math.dist(e, b) < 1e-6) or (math.dist(s, b) < 1e-6 and math.dist(e, a) < 1e-6):
            return i
    raise AssertionError("no such piece")


# ---------------------------------------------------------------- known answers

def test_straight_drive_counts_each_piece_length(tee, tmp_path: Path) -> None:
    log = tmp_path / "drive.csv"
    track(line_points((0, 0), (1000, 0), 10.0)).to_csv(log, index=False)
    res = fleet.compute_mileage(log, tee.roads)
    ac, cb, cd = (piece_of(tee.roads, (0, 0), (400, 0)), piece_of(tee.roads, (400, 0), (1000, 0)),
                  piece_of(tee.roads, (400, 0), (400, 300)))
    km = res.piece_km
    assert km[ac] * 1000 == pytest.approx(geod_len([(0, 0), (400, 0)]), abs=0.01)
    assert km[cb] * 1000 == pytest.approx(geod_len([(400, 0), (1000, 0)]), abs=0.01)
    assert km[cd] == 0
    v = res.totals.vehicles["V1"]
    assert v["matched_um"] / 1e6 == pytest.approx(geod_len([(0, 0), (1000, 0)]), abs=0.01)
    assert v["points"] == 101 and v["matched_points"] == 101


def test_turn_goes_through_the_junction(tee, tmp_path: Path) -> None:
    # A -> C, turn north, C -> D; a fix lands every 7 m, none exactly on C
    xy = np.vstack([line_points((0, 0), (400, 0), 8.0)[:-1] + [3.5, 0], line_points((400, 0), (400, 300), 8.0)[1:]])
    log = tmp_path / "turn.csv"
    track(xy).to_csv(log, index=False)
    res = fleet.compute_mileage(log, tee.roads)
    ac, cd = piece_of(tee.roads, (0, 0), (400, 0)), piece_of(tee.roads, (400, 0), (400, 300))
    # from the first fix (x = 3.5) to C, then C to D
    assert res.piece_km[ac] * 1000 == pytest.approx(geod_len([(3.5, 0), (400, 0)]), abs=0.05)
    assert res.piece_km[cd] * 1000 == pytest.approx(geod_len([(400, 0), (400, 300)]), abs=0.05)


def test_dual_carriageway_goes_by_direction(dual, tmp_path: Path) -> None:
    # both vehicles drive exactly midway (10 m from each carriageway): only the heading can decide
    east = line_points((50, 10), (950, 10), 12.0)
    west = east[::-1]
    df = pd.concat([track(east, "EAST", "E1"), track(west, "WEST", "E2")])
    log = tmp_path / "dual.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, dual.roads)
    eb, wb = piece_of(dual.roads, (0, 0), (1000, 0)), piece_of(dual.roads, (1000, 20), (0, 20))
    ent = {e: np.maximum(a, 0) / 1e9 for e, a in res.totals.enterprise_piece_um.items()}
    assert ent["E1"][eb] * 1000 == pytest.approx(900, rel=1e-3) and ent["E1"][wb] == 0
    assert ent["E2"][wb] * 1000 == pytest.approx(900, rel=1e-3) and ent["E2"][eb] == 0


def test_gps_heading_column_decides_midway_points(dual, tmp_path: Path) -> None:
    # standing points midway, with a GPS heading of 270 (west) and moving speed: the westbound carriageway
    xy = np.column_stack([np.linspace(500, 488, 5), np.full(5, 10.0)])
    df = track(xy, heading=np.full(5, 270.0), speed=np.full(5, 3.0))
    log = tmp_path / "h.csv"
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, dual.roads)
    wb = piece_of(dual.roads, (1000, 20), (0, 20))
    assert res.totals.piece_points[wb] == 5


def test_standing_jitter_adds_almost_nothing(tee, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # 10 m/s to x = 395 (5 m before the junction), 120 s standing with 5 m RMS noise, then on
    drive = line_points((0, 0), (395, 0), 10.0)
    stand = np.array([[395.0, 0.0]] * 120) + rng.normal(0, 5 / math.sqrt(2), (120, 2))
    on = line_points((395, 0), (1000, 0), 10.0)[1:]
    xy = np.vstack([drive, stand, on])
    speed = np.r_[np.full(len(drive), 10.0), np.zeros(len(stand)), np.full(len(on), 10.0)]
    log = tmp_path / "stand.csv"
    track(xy, speed=speed).to_csv(log, index=False)
    res = fleet.compute_mileage(log, tee.roads)
    # the straight distances between fixes add ~ 120 x 7 m of jitter; the mileage must not
    jitter_m = float(np.hypot(*np.diff(stand, axis=0).T).sum())
    assert jitter_m > 500
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(0, 0), (1000, 0)]), abs=10.0)


# ---------------------------------------------------------------- bad rows, columns, encodings

BAD_CSV = """vehicle_id,enterprise,timestamp,lon,lat
V1,E1,2024-03-01T08:00:00+08:00,{a}
V1,E1,2024-03-01T08:00:01+08:00,{b}
V1,E1,2024-03-01T08:00:02+08:00,,
V1,E1,2024-03-01T08:00:03+08:00,121.3,95.0
V1,E1,not a time,{c}
V1,E1,2024-03-01T08:00:04+08:00,{far}
V1,E1,2024-03-01T08:00:05+08:00,{c}
V1,E1,2024-03-01T08:00:04+08:00,{c}
V1,E1,2024-03-01T08:00:05+08:00,{c}
,E1,2024-03-01T08:00:06+08:00,{d}
V1,E1,2024-03-01T08:00:06+08:00,{d},extra,fields
V1,E1,2024-03-01T08:00:07+08:00,{e}
V1,E1,2024-03-01T08:00:08+08:00,0,0
"""


def bad_csv(path: Path) -> Path:
    fmt = lambda x: "{:.8f},{:.8f}".format(*ll(x, 0))  # noqa: E731
    path.write_text(BAD_CSV.format(a=fmt(100), b=fmt(110), c=fmt(130), far=fmt(5100), d=fmt(140), e=fmt(150)),
                    encoding="utf-8")
    return path


def test_bad_rows_are_counted_by_reason(tee, tmp_path: Path) -> None:
    res = fleet.compute_mileage(bad_csv(tmp_path / "bad.csv"), tee.roads)
    got = {r["reason"]: r["rows"] for r in res.bad_rows()}
    assert got == {"malformed line": 1, "missing vehicle id": 1, "missing coordinates": 1,
                   "coordinates out of range": 2, "unparsable timestamp": 1, "backwards timestamp": 1,
                   "repeated timestamp": 1, "jump over max speed": 1}
    # rows kept: 100, 110, 130 (t=5), 150 (t=7): the jump to x=5100 is not the reference of the next row
    v = res.totals.vehicles["V1"]
    assert v["points"] == 4 and v["rows"] == 11  # the malformed line is not read as a row
    assert v["matched_um"] / 1e6 == pytest.approx(geod_len([(100, 0), (150, 0)]), abs=0.01)
    examples = {r["reason"]: r["examples"] for r in res.bad_rows()}
    # data rows as read (the malformed line 11 is skipped, so the last line is row 12)
    assert examples["jump over max speed"] == "6" and examples["coordinates out of range"] == "4,12"


def test_missing_columns_name_the_columns_and_file(tmp_path: Path) -> None:
    p = tmp_path / "nocols.csv"
    p.write_text("vehicle,time,x,y\nV1,2024-03-01T08:00:00Z,121.3,31.3\n", encoding="utf-8")
    with pytest.raises(FleetLogError) as e:
        FleetLog(p)
    msg = e.value.message
    assert "enterprise" in msg and "lon" in msg and "lat" in msg and str(p) in msg
    assert "vehicle_id" not in msg.split("(found")[0]  # 'vehicle' is an accepted alias


def test_gbk_csv_is_decoded_with_a_warning(tee, tmp_path: Path) -> None:
    p = tmp_path / "gbk.csv"
    df = track(line_points((0, 0), (300, 0), 10.0), enterprise="上海智能网联测试企业")
    p.write_bytes(df.to_csv(index=False).encode("gbk"))
    assert detect_encoding(p)[0] == "gb18030"
    with pytest.warns(fleet.FleetLogWarning, match="GB18030"):
        res = fleet.compute_mileage(p, tee.roads)
    assert [r["enterprise"] for r in res.by_enterprise()] == ["上海智能网联测试企业"]
    assert res.log.encoding == "gb18030"


def test_utf8_bom_and_aliases(tee, tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    df = track(line_points((0, 0), (300, 0), 10.0)).rename(columns={"lon": "Longitude", "lat": "LAT"})
    p.write_bytes(df.to_csv(index=False).encode("utf-8-sig"))
    res = fleet.compute_mileage(p, tee.roads)
    assert res.log.encoding == "utf-8" and res.totals.bad == {}
    assert res.on_network_km * 1000 == pytest.approx(geod_len([(0, 0), (300, 0)]), abs=0.01)


def test_undecodable_file_is_a_fleet_log_error(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"vehicle_id,enterprise,timestamp,lon,lat\n\xff\xfe\x80\x81\xff\n")
    with pytest.raises(FleetLogError, match="UTF-8 or GB18030"):
        FleetLog(p)


# ---------------------------------------------------------------- streaming, formats, crs

def test_results_do_not_depend_on_chunks_or_interleaving(tmp_path: Path, shared_data: Path) -> None:
    net = sources.load_network(shared_data / "jiading_osm_signalized.osm")
    sim = simulate_fleet(net.roads, SimParams(vehicles=6, enterprises=2, trips=2, seed=11))
    log = tmp_path / "s.parquet"
    write_simulation(sim, log, row_group_rows=333)
    m = fleet.build_matcher(net.roads)
    big = fleet.compute_mileage(log, net.roads, chunk_rows=10**6, matcher=m)
    small = fleet.compute_mileage(log, net.roads, chunk_rows=97, matcher=m)
    assert np.array_equal(big.totals.piece_um, small.totals.piece_um)
    assert big.by_vehicle() == small.by_vehicle()
    # the same rows sorted by time only (vehicles interleaved)
    inter = sim.log.sort_values(["timestamp", "vehicle_id"], kind="stable")
    p2 = tmp_path / "inter.csv"
    inter.assign(timestamp=inter["timestamp"].map(lambda t: t.isoformat())).to_csv(p2, index=False)
    mixed = fleet.compute_mileage(p2, net.roads, chunk_rows=50, matcher=m)
    assert np.array_equal(big.totals.piece_um, mixed.totals.piece_um)


def test_parquet_csv_gpx_and_gcj02_agree(tee, tmp_path: Path) -> None:
    sim = simulate_fleet(tee.roads, SimParams(vehicles=3, enterprises=1, trips=2, seed=5, min_trip_m=100))
    m = fleet.build_matcher(tee.roads)
    out = {}
    for sfx in ("parquet", "csv", "gpx"):
        p = tmp_path / f"s.{sfx}"
        write_simulation(sim, p)
        out[sfx] = fleet.compute_mileage(p, tee.roads, matcher=m)
        assert out[sfx].log.synthetic
    assert np.array_equal(out["parquet"].totals.piece_um, out["csv"].totals.piece_um)
    assert np.array_equal(out["parquet"].totals.piece_um, out["gpx"].totals.piece_um)
    g = sim.log.copy()
    g["lon"], g["lat"] = wgs84_to_gcj02(g["lon"].to_numpy(), g["lat"].to_numpy())
    pg = tmp_path / "g.parquet"
    g.to_parquet(pg)
    right = fleet.compute_mileage(pg, tee.roads, crs="gcj02", matcher=m)
    wrong = fleet.compute_mileage(pg, tee.roads, crs="wgs84", matcher=m)
    assert right.on_network_km == pytest.approx(out["parquet"].on_network_km, abs=0.002)
    # read as WGS84 the points lie ~500 m off: nothing matches, but for a few metres where the
    # shifted side road (~420 m east, ~220 m south) crosses the main road
    assert wrong.on_network_km < 0.01 and wrong.off_network_km > 0


def test_unknown_crs_and_bad_chunk_rows(tee, tmp_path: Path) -> None:
    log = tmp_path / "d.csv"
    track(line_points((0, 0), (100, 0), 10.0)).to_csv(log, index=False)
    with pytest.raises(InputError, match="coordinate system"):
        fleet.compute_mileage(log, tee.roads, crs="bd09")
    with pytest.raises(InputError, match="chunk"):
        fleet.compute_mileage(log, tee.roads, chunk_rows=0)


# ---------------------------------------------------------------- tables, coverage, outputs

def test_tables_coverage_and_figures(tee, tmp_path: Path) -> None:
    zone = zone_of(-100, -100, 1100, 400)
    log = tmp_path / "drive.csv"
    df = pd.concat([track(line_points((0, 0), (1000, 0), 10.0), "V1", "企业甲"),
                    track(line_points((0, 0), (400, 0), 10.0), "V2", "企业乙", t0=1_700_100_000)])
    df.to_csv(log, index=False)
    res = fleet.compute_mileage(log, tee.roads, zone=zone)
    ab, side = geod_len([(0, 0), (1000, 0)]), geod_len([(400, 0), (400, 300)])
    ac = geod_len([(0, 0), (400, 0)])
    cov = {c["scope"]: c for c in res.coverage()}
    assert cov["all"]["centerline_coverage_pct"] == pytest.approx(100 * ab / (ab + side), abs=0.05)
    assert cov["enterprise:企业乙"]["centerline_coverage_pct"] == pytest.approx(100 * ac / (ab + side), abs=0.05)
    ent = {r["enterprise"]: r for r in res.by_enterprise()}
    assert ent["企业甲"]["on_network_km"] * 1000 == pytest.approx(ab, abs=0.5)
    assert ent["企业乙"]["vehicles"] == 1
    cls = {r["highway"]: r["km"] for r in res.by_class()}
    assert cls["primary"] * 1000 == pytest.approx(ab + ac, abs=0.5) and cls["secondary"] == 0
    road = {r["road"]: r["km"] for r in res.by_road()}
    assert road["东西路"] == pytest.approx(cls["primary"])
    figs = fleet.fleet_figures(res)
    assert figs["vehicles"].value == 2 and figs["enterprises"].value == 2
    assert figs["test_mileage_km"].value * 1000 == pytest.approx(ab + ac, abs=0.02)
    assert "matched road pieces" in figs["test_mileage_km"].definition
    assert res.by_subzone() == [{"subzone": "(all)", "km": round((ab + ac) / 1000, 3)}]


def test_write_outputs(tee, tmp_path: Path) -> None:
    log = tmp_path / "drive.csv"
    track(line_points((0, 0), (1000, 0), 10.0), enterprise="E<1>").to_csv(log, index=False)
    res = fleet.compute_mileage(log, tee.roads)
    files = fleet.write_outputs(res, tmp_path / "out", fmt="json")
    names = {f.name for f in files}
    assert {"mileage_pieces.parquet", "mileage_pieces.csv", "mileage_by_vehicle.json", "mileage_figures.json",
            "mileage_pieces_by_enterprise.csv", "mileage_provenance.json"} <= names
    gdf = gpd.read_parquet(tmp_path / "out" / "mileage_pieces.parquet")
    assert gdf.crs.to_epsg() == 4326 and gdf["km"].sum() == pytest.approx(res.on_network_km)
    csv_ = pd.read_csv(tmp_path / "out" / "mileage_pieces.csv")
    assert csv_["km"].sum() == pytest.approx(res.on_network_km)
    by_ent = pd.read_csv(tmp_path / "out" / "mileage_pieces_by_enterprise.csv")
    assert set(by_ent["enterprise"]) == {"E<1>"} and by_ent["km"].sum() == pytest.approx(res.on_network_km)
    figs = fleet.fleet_figures_from_file(tmp_path / "out" / "mileage_figures.json")
    assert figs["test_mileage_km"].value == pytest.approx(res.test_mileage_km)
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


# ---------------------------------------------------------------- known answer on real OSM data

@pytest.mark.shared
@pytest.mark.parametrize("crs,columns", [("wgs84", "all"), ("gcj02", "all"), ("wgs84", "no speed/heading")])
def test_simulated_fleet_on_jiading_osm(tmp_path: Path, shared_data: Path, crs: str, columns: str) -> None:
    from geo.zones import load_zone

    zone = load_zone("jiading")
    net = sources.load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)
    sim = simulate_fleet(net.roads, SimParams(vehicles=15, enterprises=3, trips=3, seed=21, crs=crs))
    log = tmp_path / "sim.parquet"
    write_simulation(sim, log)
    if columns != "all":
        pd.read_parquet(log).drop(columns=["speed", "heading"]).to_parquet(log)
    m = fleet.build_matcher(net.roads, zone)
    from geo._fleet_engine import MileageEngine

    eng = MileageEngine(m, crs)
    eng.point_log = []
    for ch in FleetLog(log).chunks():
        eng.feed(ch)
    eng.finish()
    rows = np.concatenate([r for r, _ in eng.point_log])
    got = np.concatenate([p for _, p in eng.point_log])
    right = float(np.mean(got == sim.true_piece[rows]))
    res = fleet.compute_mileage(log, net.roads, zone=zone, crs=crs, matcher=m)
    truth = np.zeros(len(net.roads))
    truth[sim.truth["piece"].to_numpy()] = sim.truth["km"].to_numpy()
    km = res.piece_km
    total_err = abs(km.sum() - truth.sum()) / truth.sum()
    piece_err = np.abs(km - truth).sum() / truth.sum()
    assert len(rows) == len(sim.log)
    assert total_err < 0.02
    assert piece_err < 0.03
    # without GPS speed and heading, turns and stops are harder to place (measured ~95%)
    assert right >= (0.98 if columns == "all" else 0.94)


# ---------------------------------------------------------------- CLI

@pytest.fixture()
def tee_files(tmp_path: Path) -> tuple[Path, Path]:
    ways = [{"xy": [(0, 0), (400, 0), (1000, 0)], "name": "东西路"},
            {"xy": [(400, 0), (400, 300)], "name": "南北路", "highway": "secondary"}]
    src = write_layer(tmp_path / "tee.geojson", ways)
    zf = tmp_path / "tz.geojson"
    gpd.GeoDataFrame({"name": ["tz"]}, geometry=[zone_of(-100, -100, 1100, 400).geometry], crs=4326).to_file(zf)
    return src, zf


def test_cli_mileage_reports_bad_rows(tee_files: tuple[Path, Path], tmp_path: Path) -> None:
    src, zf = tee_files
    log = bad_csv(tmp_path / "bad.csv")
    r = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", str(src), "--zone", str(zf),
                                 "--format", "json", "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "9 bad rows not used" in r.stderr and "jump over max speed: 1" in r.stderr
    doc = json.loads(r.stdout)
    assert {b["reason"]: b["rows"] for b in doc["tables"]["bad_rows"]}["coordinates out of range"] == 2
    assert doc["figures"]["vehicles"]["value"] == 1
    assert (tmp_path / "o" / "mileage_pieces.parquet").exists()


def test_cli_mileage_missing_columns_one_line(tee_files: tuple[Path, Path], tmp_path: Path) -> None:
    src, zf = tee_files
    log = tmp_path / "cols.csv"
    log.write_text("vehicle_id,timestamp,lon\nV1,2024-03-01T08:00:00Z,121.3\n", encoding="utf-8")
    r = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", str(src), "--zone", str(zf)])
    assert r.exit_code == FleetLogError.exit_code != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "missing column(s) enterprise, lat" in lines[0] and str(log) in lines[0]
    assert "Traceback" not in r.output


def test_cli_simulate_then_mileage(tee_files: tuple[Path, Path], tmp_path: Path) -> None:
    src, zf = tee_files
    log = tmp_path / "fleet.csv"
    r = CliRunner().invoke(cli, ["fleet", "simulate", "--source", str(src), "--zone", str(zf), "-o", str(log),
                                 "--vehicles", "4", "--enterprises", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "SYNTHETIC" in r.stdout and (tmp_path / "fleet.truth.csv").exists()
    truth = pd.read_csv(tmp_path / "fleet.truth.csv")
    r = CliRunner().invoke(cli, ["fleet", "mileage", str(log), "--source", str(src), "--zone", str(zf),
                                 "--format", "csv", "-o", str(tmp_path / "summary.csv"), "--chunk-rows", "50"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "summary.csv").read_text(encoding="utf-8")
    assert "# by enterprise" in text and "synthetic_log: True" in text
    km = float(next(ln for ln in text.splitlines() if ln.startswith("on-network km")).split(",")[1])
    assert km == pytest.approx(truth["km"].sum(), rel=0.02)


def test_parquet_ids_read_as_dictionaries_give_the_csv_codes(tmp_path: Path) -> None:
    # Parquet string ids are read as dictionaries (faster); the codes must be those of the same
    # strings read plainly: trimmed, first appearance first, variants that trim alike merged,
    # empty and null -1, across row groups with different dictionaries.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geo._fleet_io import FleetLog

    veh = ["b", " a", None, "", "c ", "a", "b", "d", " d ", "a"]
    df = pd.DataFrame({"vehicle_id": veh, "enterprise": ["E"] * 10,
                       "timestamp": 1_700_000_000 + np.arange(10), "lon": 121.2, "lat": 31.3})
    p = tmp_path / "log.parquet"
    tab = pa.Table.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(p, tab.schema) as w:
        w.write_table(tab.slice(0, 4))
        w.write_table(tab.slice(4))
    df.to_csv(tmp_path / "log.csv", index=False)
    for chunk_rows in (3, 100):
        got = list(FleetLog(p, chunk_rows=chunk_rows).chunks())
        ref = list(FleetLog(tmp_path / "log.csv", chunk_rows=chunk_rows).chunks())
        for g, r in zip(got, ref):
            names_g = [g.vehicle_names[c] if c >= 0 else None for c in g.vehicle]
            names_r = [r.vehicle_names[c] if c >= 0 else None for c in r.vehicle]
            assert names_g == names_r
            # the same numbering (first appearance), so the same order of vehicles everywhere
            assert np.array_equal(np.unique(g.vehicle, return_index=True)[1], np.unique(r.vehicle, return_index=True)[1])
    one = next(FleetLog(p, chunk_rows=100).chunks())
    assert [one.vehicle_names[c] if c >= 0 else None for c in one.vehicle] == \
        ["b", "a", None, None, "c", "a", "b", "d", "d", "a"]


@pytest.mark.parametrize("seed", range(3))
def test_contribution_sums_equal_bincount_per_piece_subzone_zone_and_enterprise(seed: int) -> None:
    """The compiled sums of ``_add_contributions`` against np.bincount on random contributions
    (negative ones too: standing jitter telescopes), several per (enterprise, piece)."""
    from geo._fleet_engine import _sum_contributions

    rng = np.random.default_rng(seed)
    n, n_pieces, n_subs, n_sz, n_ent = 5000, 300, 900, 4, 6
    c_sub = rng.integers(0, n_subs, n)
    sub_piece = np.sort(rng.integers(0, n_pieces, n_subs))
    c_piece = sub_piece[c_sub]
    c_um = rng.integers(-2_000_000, 9_000_000_000, n)
    ent = rng.integers(0, n_ent - 1, n)  # the last enterprise code has no contribution
    zi = rng.integers(-1, n_sz, n_subs)
    inz = rng.random(n_subs) < 0.7
    piece_um = rng.integers(0, 100, n_pieces)
    subzone_um = rng.integers(0, 100, n_sz + 1)
    want_p = piece_um + np.bincount(c_piece, weights=c_um, minlength=n_pieces).astype(np.int64)
    zz = zi[c_sub]
    want_z = subzone_um + np.bincount(np.where(zz >= 0, zz, n_sz), weights=c_um, minlength=n_sz + 1).astype(np.int64)
    zone, count, e_start, e_piece, e_um = _sum_contributions(c_piece, c_sub, c_um, ent, zi, inz, n_ent,
                                                             piece_um, subzone_um)
    assert np.array_equal(piece_um, want_p) and np.array_equal(subzone_um, want_z)
    assert zone == int(c_um[inz[c_sub]].sum())
    assert np.array_equal(count, np.bincount(ent, minlength=n_ent)) and count[-1] == 0
    for e in range(n_ent):
        got = np.zeros(n_pieces, dtype=np.int64)
        at = slice(e_start[e], e_start[e + 1])
        assert len(np.unique(e_piece[at])) == len(e_piece[at])  # each piece once
        got[e_piece[at]] = e_um[at]
        sel = ent == e
        want = np.bincount(c_piece[sel], weights=c_um[sel], minlength=n_pieces).astype(np.int64)
        assert np.array_equal(got, want)
        assert set(e_piece[at].tolist()) == set(c_piece[sel].tolist())


def test_read_ahead_keeps_order_reads_one_ahead_and_raises_where_the_reader_stopped() -> None:
    import threading

    from geo.fleet import _ReadAhead

    produced: list[int] = []
    consumed: list[int] = []
    main = threading.get_ident()
    threads: set[int] = set()

    def reader():
        for i in range(1, 6):
            threads.add(threading.get_ident())
            produced.append(i)
            yield i
        raise FleetLogError("bad row group", where="log.parquet", hint="check the file")

    with pytest.raises(FleetLogError, match="bad row group"):
        with _ReadAhead(reader()) as ahead:
            # the first item is read at once, before anything asks for it; prepared only once a
            # function is given (it waits for it)
            for _ in range(200):
                if produced:
                    break
                threading.Event().wait(0.01)
            assert produced == [1]
            ahead.prepare_with(lambda i: (i * 10, threading.get_ident()))
            for item, prep in ahead:
                # never more than one item read beyond the one in hand, each prepared in the thread
                assert len(produced) <= item + 1, (item, produced)
                assert prep[0] == item * 10 and prep[1] != main
                consumed.append(item)
    assert consumed == [1, 2, 3, 4, 5]
    assert threads and main not in threads  # read in the other thread


def test_a_conflict_in_a_later_chunk_is_raised_with_the_read_ahead(tee, tmp_path: Path) -> None:
    sim = simulate_fleet(tee.roads, SimParams(vehicles=3, enterprises=1, trips=2, seed=5, min_trip_m=100))
    df = sim.log.copy()
    last = df.iloc[[-1]].assign(enterprise="another")  # the last vehicle's id under a second enterprise
    p = tmp_path / "two.parquet"
    pd.concat([df, last]).to_parquet(p, row_group_size=50)
    with pytest.raises(FleetLogError, match="appears under two enterprises"):
        fleet.compute_mileage(p, tee.roads, chunk_rows=40)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_small_first_chunk_then_the_usual_ones_the_same_rows(tee, tmp_path: Path, fmt: str) -> None:
    sim = simulate_fleet(tee.roads, SimParams(vehicles=6, enterprises=2, trips=3, seed=5, min_trip_m=100))
    p = tmp_path / f"s.{fmt}"
    write_simulation(sim, p, **({"row_group_rows": 300} if fmt == "parquet" else {}))
    n = len(sim.log)
    assert n > 600, n
    plain = list(FleetLog(p, chunk_rows=250).chunks())
    quick = list(FleetLog(p, chunk_rows=250).chunks(first_rows=70))
    assert [len(c) for c in quick] == [70] + [250] * ((n - 70) // 250) + ([(n - 70) % 250] if (n - 70) % 250 else [])
    for field in ("t_ns", "lon", "lat"):
        assert np.array_equal(np.concatenate([getattr(c, field) for c in plain]),
                              np.concatenate([getattr(c, field) for c in quick]))
    assert [c.first_row for c in quick] == list(np.cumsum([0] + [len(c) for c in quick[:-1]]))


def test_the_kernels_cached_on_disk_are_loaded_in_the_background(tmp_path: Path) -> None:
    # In a fresh process: a kernel compiled (and cached) in one run is found in the cache index by
    # the warm-up of the next, which loads it without being called.
    import subprocess
    import sys
    import textwrap

    mod = tmp_path / "k_mod.py"
    mod.write_text(textwrap.dedent('''
        import numpy as np
        from geo._jit import kernel

        @kernel
        def total(a):
            s = 0.0
            for v in a:
                s += v
            return s
    '''))
    first = "import k_mod, numpy as np; print(k_mod.total(np.arange(4.0)))"
    second = ("import k_mod, geo._jit as j; t = j.warm_in_background(); t.join(60); "
              "print(len(k_mod.total.signatures), j.warm_in_background() is None)")
    env = {**__import__('os').environ, "PYTHONPATH": f"{tmp_path}{__import__('os').pathsep}{Path(__file__).parents[1]}"}
    r1 = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r1.returncode == 0 and r1.stdout.strip() == "6.0", r1.stderr
    r2 = subprocess.run([sys.executable, "-c", second], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.split() == ["1", "True"]  # loaded from the cache without a call; started once


def _filter_reference(veh, t, x, y, ctx, vmax, slack):
    # plain Python: each row against the last kept row of its vehicle
    keep, why, lk = [], [], None
    for i in range(len(t)):
        if i == 0 or veh[i] != veh[i - 1]:
            lk = None
        if lk is None or ctx[i]:
            keep.append(True), why.append("")
            lk = i
            continue
        dt = int(t[i]) - int(t[lk])
        r = ("backwards timestamp" if dt < 0 else "repeated timestamp" if dt == 0 else
             "jump over max speed" if math.hypot(x[i] - x[lk], y[i] - y[lk]) > vmax * dt / 1e9 + slack else "")
        keep.append(not r), why.append(r)
        if not r:
            lk = i
    return keep, why


@pytest.mark.parametrize("seed", range(6))
def test_sequential_filter_equals_a_plain_walk_on_hostile_rows(tee, seed: int) -> None:
    from geo._fleet_engine import REASONS, EngineParams, MileageEngine

    rng = np.random.default_rng(seed)
    n = 3000
    veh = np.sort(rng.integers(0, 7, n))
    # times: mostly forward, many repeats and steps back (every second row flagged or so)
    t = np.cumsum(rng.choice([-2, 0, 0, 1, 1, 1, 5], n)).astype(np.int64) * 10**9 + 1_700_000_000 * 10**9
    x = np.cumsum(rng.normal(0, 40, n)) + rng.choice([0, 0, 0, 900], n)
    y = np.cumsum(rng.normal(0, 40, n))
    ctx = np.r_[True, veh[1:] != veh[:-1]] & (rng.uniform(size=n) < 0.5)
    eng = MileageEngine(fleet.build_matcher(tee.roads), "wgs84", EngineParams(jump_slack_m=25.0))
    keep, why = eng._sequential_filter(veh, t, x, y, ctx)
    rk, rw = _filter_reference(veh, t, x, y, ctx, eng.p.max_speed_mps, 25.0)
    assert keep.tolist() == rk
    assert [REASONS[c - 1] if c else "" for c in why.tolist()] == rw
    assert 0.2 < 1 - keep.mean() < 0.8  # (many rejections of each kind)
    assert {"backwards timestamp", "repeated timestamp", "jump over max speed"} <= set(rw)


def test_candidates_equal_a_brute_force_over_every_sub_segment(tee) -> None:
    # the grid kernel (float32 screen, float64 distance) against shapely's distance from each point
    # to every sub-segment of the index: the same pairs within the radius, in point then
    # sub-segment order, the same distances and positions; NaN points and points off the grid get none
    import shapely

    m = fleet.build_matcher(tee.roads)
    rng = np.random.default_rng(7)
    lx, ly = rng.uniform(-80, 1080, 400), rng.uniform(-80, 380, 400)
    lon, lat = TO_LL.transform(X0 + lx, Y0 + ly)
    x, y = m.project(lon, lat)
    x[[3, 50]] = np.nan
    x[[7]] += 1e6  # far off the grid
    c = m.candidates(x, y)
    subs = shapely.linestrings(np.stack([np.column_stack([m.ax, m.ay]),
                                         np.column_stack([m.ax + m.dx, m.ay + m.dy])], axis=1))
    r = m.params.radius_m
    got = set(zip(c.point.tolist(), c.sub.tolist()))
    n_in = 0
    for i in range(len(x)):
        if not np.isfinite(x[i]):
            assert i not in set(c.point.tolist())
            continue
        d = shapely.distance(shapely.points(x[i], y[i]), subs)
        for s in np.flatnonzero(d <= r - 1e-3):
            assert (i, int(s)) in got
            n_in += 1
        for s in np.flatnonzero(d > r + 1e-3):
            assert (i, int(s)) not in got
    assert n_in > 200 and not np.isin([3, 7, 50], c.point).any()
    # order: by point, then by sub-segment
    assert (np.diff(c.point) >= 0).all()
    same = np.diff(c.point) == 0
    assert (np.diff(c.sub)[same] > 0).all()
    # exact distance and position of the snapped location
    pts = shapely.points(x[c.point], y[c.point])
    assert np.allclose(c.dist, shapely.distance(pts, subs[c.sub]), rtol=0, atol=1e-9)
    snapped_x = m.ax[c.sub] + c.frac * m.dx[c.sub]
    snapped_y = m.ay[c.sub] + c.frac * m.dy[c.sub]
    assert ((c.frac >= 0) & (c.frac <= 1)).all()
    assert np.allclose(np.hypot(x[c.point] - snapped_x, y[c.point] - snapped_y), c.dist, rtol=0, atol=1e-9)
    # in blocks of 7 points: the same arrays bit for bit (the point numbers offset per block)
    b = m.candidates(x, y, block=7)
    for f in ("point", "sub", "dist", "frac"):
        assert np.array_equal(getattr(b, f), getattr(c, f))
    e = m.candidates(x[:0], y[:0])
    assert len(e.point) == 0 and e.n_points == 0


def test_best_candidate_is_the_first_lowest_score_of_each_point() -> None:
    # against a plain loop: ties go to the first candidate, a point without candidates gets -1,
    # and so does a point with a NaN score (numpy's minimum of its run is NaN, which equals none)
    from geo._fleet_match import Candidates, PieceMatcher

    rng = np.random.default_rng(3)
    point = np.sort(rng.integers(0, 300, 2000))
    score = rng.integers(0, 6, len(point)).astype(np.float64)  # many ties
    score[[10, 500]] = np.nan
    n = 310
    c = Candidates(point, np.zeros(len(point), dtype=np.int64), score, score, n)
    got = PieceMatcher.best(c, score)
    want = np.full(n, -1)
    for p_ in range(n):
        idx = np.flatnonzero(point == p_)
        if len(idx) and not np.isnan(score[idx]).any():
            want[p_] = idx[np.argmin(score[idx])]  # argmin: the first of the lowest
    assert np.array_equal(got, want)
    assert (want[point[[10, 500]]] == -1).all() and (want >= 0).sum() > 250 and (want[300:] == -1).all()
    assert np.array_equal(PieceMatcher.best(c, score.astype(np.float32)), want)


def test_heading_score_by_hand(dual, tee) -> None:
    # distance + 0.15 m per degree; a one-way piece more than 110 degrees off the heading + 1000 m;
    # a two-way piece either way (at most 90 degrees); unknown heading: distance only
    p = fleet.MatchParams()
    m = fleet.build_matcher(dual.roads)
    lon, lat = TO_LL.transform(X0 + np.array([500.0, 500.0]), Y0 + np.array([5.0, 5.0]))
    x, y = m.project(lon, lat)
    c = m.candidates(x, y)
    s = m.heading_score(c, np.array([1.0, np.nan]), np.array([0.0, np.nan]))  # east; unknown
    east = m.sub_piece[c.sub] == piece_of(dual.roads, (0, 0), (1000, 0))
    west = m.sub_piece[c.sub] == piece_of(dual.roads, (1000, 20), (0, 20))
    for k in range(len(c.point)):
        if c.point[k] == 1:
            assert s[k] == c.dist[k]
        elif east[k]:
            assert s[k] == pytest.approx(c.dist[k], abs=1e-6)
        elif west[k]:
            assert s[k] == pytest.approx(c.dist[k] + p.heading_weight * 180.0 + p.wrong_way_penalty, abs=1e-6)
    assert east[c.point == 0].any() and west[c.point == 0].any()
    # south-west (225 degrees) on the two-way east-west road: 45 degrees off its westward direction
    m = fleet.build_matcher(tee.roads)
    lon, lat = TO_LL.transform(X0 + np.array([200.0]), Y0 + np.array([3.0]))
    x, y = m.project(lon, lat)
    c = m.candidates(x, y)
    r = math.sqrt(0.5)
    s = m.heading_score(c, np.array([-r]), np.array([-r]))
    main = m.sub_piece[c.sub] == piece_of(tee.roads, (0, 0), (400, 0))
    assert main.any()
    # (the UTM grid is ~0.3 degrees off true north here: the sub-segment's bearing, not the map's)
    bearing = np.degrees(np.arccos(np.abs(-r * m.ux[c.sub] - r * m.uy[c.sub])))
    assert np.allclose(bearing[main], 45.0, atol=1.0)
    assert np.allclose(s[main], c.dist[main] + p.heading_weight * bearing[main], rtol=0, atol=1e-9)
