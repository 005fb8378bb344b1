"""Limits: a 100,000-vertex zone and a 200,000-edge network, time and peak memory.

Each scenario runs in its own subprocess so that its peak RSS is its own:

``zone``
    A star-shaped outline of ``--zone-vertices`` vertices (default 100,000)
    around Anting, validated (``geo.zones.validate_zone_geometry``), then
    used to select and clip a 10,000-piece grid network (``geo.stats``).
``network``
    An ``n x n`` street grid written as OSM XML with about ``--edges`` road
    pieces (default 200,000), loaded with ``geo.sources.load_network``
    (parse, split, merge, geodesic lengths), then ``geo.stats.road_stats``
    inside a simple box zone.

Run: ``python bench/bench_limits.py [--quick] [--markdown]``. Prints one line
per scenario: load s, stats s, peak RSS MiB, sizes. Numbers go into
bench/RESULTS.md ("Limits").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthetic_osm import write_grid_osm  # noqa: E402


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _star_zone(n_vertices: int, cx: float, cy: float, r: float):
    import numpy as np
    from shapely.geometry import Polygon

    t = np.linspace(0, 2 * math.pi, n_vertices, endpoint=False)
    rad = r * (1 + 0.15 * np.sin(37 * t) + 0.05 * np.sin(1013 * t))  # wiggly, like a traced boundary
    return Polygon(np.column_stack([cx + rad * np.cos(t), cy + rad * np.sin(t) * 0.85]))


def run_zone(n_vertices: int, grid_n: int) -> dict:
    import warnings

    from geo import stats
    from geo.roads import RawWay, build_roads_table, parse_filter
    from geo.sources import select_in_zone
    from geo.zones import Zone, validate_zone_geometry, zone_area_km2

    step, lon0, lat0 = 0.001, 121.19, 31.29
    ways = []
    for i in range(grid_n):
        ids = [i * grid_n + j + 1 for j in range(grid_n)]
        ways.append(RawWay(i + 1, {"highway": "residential"}, ids, [(lon0 + j * step, lat0 + i * step)
                                                                    for j in range(grid_n)]))
    for j in range(grid_n):
        ids = [i * grid_n + j + 1 for i in range(grid_n)]
        ways.append(RawWay(grid_n + j + 1, {"highway": "tertiary"}, ids, [(lon0 + j * step, lat0 + i * step)
                                                                          for i in range(grid_n)]))
    roads = build_roads_table(ways, parse_filter("drive"))
    half = step * grid_n / 2
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geom = validate_zone_geometry(_star_zone(n_vertices, lon0 + half, lat0 + half, half * 0.8), where="bench")
    zone = Zone("bench_zone", geom)
    area = zone_area_km2(zone)
    inside = select_in_zone(roads, zone)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = stats.road_stats(inside, zone)
    t_stats = time.perf_counter() - t0
    return {"scenario": "zone", "zone_vertices": len(geom.exterior.coords) - 1 if geom.geom_type == "Polygon"
            else n_vertices, "pieces": int(len(roads)), "pieces_in_zone": int(len(inside)),
            "area_km2": round(area, 3), "carriageway_km": round(st.value("carriageway_km"), 3),
            "load_s": round(t_load, 2), "stats_s": round(t_stats, 2), "peak_rss_mib": round(_peak_rss_mib(), 1)}


def run_network(edges: int) -> dict:
    from shapely.geometry import box

    from geo import stats
    from geo.roads import parse_filter
    from geo.sources import load_network
    from geo.zones import Zone

    n = int(math.ceil((1 + math.sqrt(1 + 2 * edges)) / 2))  # 2 n (n - 1) pieces
    step = 0.001
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "grid.osm"
        t0 = time.perf_counter()
        write_grid_osm(src, n, step=step)
        t_gen = time.perf_counter() - t0
        size_mb = src.stat().st_size / 1e6
        zone = Zone("bench_box", box(121.19 - 0.001, 31.29 - 0.001, 121.19 + n * step, 31.29 + n * step))
        t0 = time.perf_counter()
        net = load_network(src, zone=zone, road_filter=parse_filter("drive"))
        t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = stats.road_stats(net.roads, zone)
    t_stats = time.perf_counter() - t0
    return {"scenario": "network", "grid": f"{n}x{n}", "osm_mb": round(size_mb, 1), "pieces": int(len(net.roads)),
            "carriageway_km": round(st.value("carriageway_km"), 3), "intersections": st.value("intersections"),
            "generate_s": round(t_gen, 2), "load_s": round(t_load, 2), "stats_s": round(t_stats, 2),
            "peak_rss_mib": round(_peak_rss_mib(), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10x smaller inputs (a smoke run)")
    ap.add_argument("--zone-vertices", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=200_000)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    zv, edges = (a.zone_vertices // 10, a.edges // 10) if a.quick else (a.zone_vertices, a.edges)
    if a._child == "zone":
        print(json.dumps(run_zone(zv, 71)))
        return
    if a._child == "network":
        print(json.dumps(run_network(edges)))
        return
    rows = []
    for scen in ("zone", "network"):
        cmd = [sys.executable, __file__, "--_child", scen, "--zone-vertices", str(zv), "--edges", str(edges)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if r.returncode != 0:
            sys.exit(f"{scen} failed:\n{r.stderr}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    if a.markdown:
        print("| scenario | input | pieces | load s | stats s | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            what = (f"zone of {r['zone_vertices']:,} vertices, {r['pieces_in_zone']:,} of {r['pieces']:,} pieces inside"
                    if r["scenario"] == "zone" else f"grid {r['grid']} OSM XML ({r['osm_mb']} MB)")
            print(f"| {r['scenario']} | {what} | {r['pieces']:,} | {r['load_s']} | {r['stats_s']} | {r['peak_rss_mib']} |")
    else:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
