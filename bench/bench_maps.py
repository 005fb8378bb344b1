"""Benchmark: size and draw time of icv's coverage map against ``GeoDataFrame.explore()``.

Run from the repository root::

    python bench/bench_maps.py            # prints a Markdown table
    python bench/bench_maps.py --write    # also replaces the "## Maps" section of bench/RESULTS.md

Inputs: the shared real Jiading OSM subset (``../shared/data/jiading_osm_signalized.osm``, 818
pieces touching the zone) and, to see the scale of the complete district (tens of thousands of
pieces), the same roads tiled 5 x 5 (shifted copies, 20,450 pieces; synthetic).

Compared, for the same roads:

- ``icv``: :func:`geo.maps.coverage_map` (roads by class, grid cells, zone outline, title, legend).
- ``explore``: ``roads.explore(column="highway")`` (geopandas' default styled map; needs
  matplotlib and mapclassify).

Sizes are the HTML as written with CDN script references (what each tool writes by default), and
offline (scripts inlined: icv loads Leaflet only; explore's page inlines every asset folium's
template loads, minus the two marker-icon stylesheets no registry carries). Draw time is measured
in headless Chromium on the offline pages: from ``Page.navigate`` to the load event plus two
animation frames (so the SVG is laid out), median of ``--repeat`` loads, and the browser's own
``loadEventEnd`` of the navigation timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import geopandas as gpd  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402

SECTION = "## Maps"


def tiled(roads: gpd.GeoDataFrame, n: int, step: float = 0.25) -> gpd.GeoDataFrame:
    """``n`` x ``n`` shifted copies of the roads (a stand-in for a network of the district's size)."""
    parts = []
    for i in range(n):
        for j in range(n):
            c = roads.copy()
            c["geometry"] = shapely.transform(c.geometry.values, lambda xy, i=i, j=j: xy + [i * step, j * step])
            parts.append(c)
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=4326)


def draw_times(path: Path, repeat: int) -> tuple[float, float, int]:
    """Median seconds to load and lay out, median browser loadEventEnd (ms), SVG paths drawn."""
    from tests.test_browser import Chromium

    walls, loads = [], []
    with Chromium(1000, 700) as b:
        b.open(path)  # warm-up: disk cache and fonts
        for _ in range(repeat):
            walls.append(b.open(path))
            loads.append(b.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
        paths = b.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length")
        errors = b.console_errors()
        if errors:
            print(f"  console errors in {path.name}: {errors[:3]}", file=sys.stderr)
    return statistics.median(walls), statistics.median(loads), int(paths)


def run(repeat: int, tiles: int, draw: bool = True, builds: int = 1,
        grid_spacing: float = 0.0) -> list[dict[str, object]]:
    from geo import maps
    from geo._offline import MARKER_ICON_CSS, inline_assets
    from geo._paths import shared_data_dir
    from geo.sources import load_network
    from geo.zones import load_zone

    src = shared_data_dir() / "jiading_osm_signalized.osm"
    if not src.exists():
        sys.exit(f"bench_maps: {src} not found (../shared/data is needed)")
    zone = load_zone("jiading")
    net = load_network(src, zone=zone)
    cases = [("Jiading OSM subset", net.roads, zone.geometry)]
    if tiles > 1:
        big = tiled(net.roads, tiles)
        cases.append((f"subset tiled {tiles}x{tiles} (synthetic)", big, shapely.box(*big.total_bounds).buffer(0.01)))
    if grid_spacing:
        from bench_stats import synthetic_network

        cases.append((f"grid in the Jiading outline, {grid_spacing:.0f} m (synthetic)",
                      synthetic_network(zone, spacing=grid_spacing), zone.geometry))
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="icv-bench-maps-") as tmp:
        d = Path(tmp)
        for label, roads, zgeom in cases:
            # build times interleaved (icv, explore, icv, ...) so that load from elsewhere hits both alike
            t_ours_all, t_theirs_all, c_ours_all, c_theirs_all = [], [], [], []
            for _ in range(builds):
                t0, c0 = time.perf_counter(), time.process_time()
                m = maps.coverage_map(roads, zgeom, zone_name="jiading", provenance=net.provenance,
                                      basemap=maps.resolve_basemap("osm"))
                ours = maps.map_html(m)
                t_ours_all.append(time.perf_counter() - t0)
                c_ours_all.append(time.process_time() - c0)
                t0, c0 = time.perf_counter(), time.process_time()
                theirs = roads.explore(column="highway").get_root().render()
                t_theirs_all.append(time.perf_counter() - t0)
                c_theirs_all.append(time.process_time() - c0)
            t_ours, t_theirs = statistics.median(t_ours_all), statistics.median(t_theirs_all)
            # CPU time of this process: what the other work on a shared machine disturbs least
            cpu = {"icv coverage_map": statistics.median(c_ours_all),
                   "explore(column='highway')": statistics.median(c_theirs_all)}
            m_off = maps.coverage_map(roads, zgeom, zone_name="jiading", provenance=net.provenance,
                                      basemap=maps.resolve_basemap("osm", offline=True))
            ours_off = maps.map_html(m_off, offline=True)
            theirs_off = inline_assets(theirs, drop=MARKER_ICON_CSS)
            # no tiles for either in the browser: nothing may leave the machine
            theirs_off = theirs_off.replace("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "")
            (d / "ours.html").write_text(ours_off, encoding="utf-8")
            (d / "theirs.html").write_text(theirs_off, encoding="utf-8")
            for tool, page, page_off, t_build, f in (("icv coverage_map", ours, ours_off, t_ours, "ours.html"),
                                                     ("explore(column='highway')", theirs, theirs_off, t_theirs,
                                                      "theirs.html")):
                wall, load_ms, paths = draw_times(d / f, repeat) if draw else (float("nan"), float("nan"), 0)
                rows.append({"case": label, "pieces": len(roads), "tool": tool,
                             "html_kb": len(page.encode()) / 1024, "offline_kb": len(page_off.encode()) / 1024,
                             "build_s": t_build, "build_cpu_s": cpu[tool], "draw_s": wall, "load_ms": load_ms,
                             "paths": paths})
    return rows


def markdown(rows: list[dict[str, object]], repeat: int) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        SECTION, "",
        f"`python bench/bench_maps.py --write` ({os.cpu_count()}-core {cpu} VM, Python "
        f"{platform.python_version()}, headless Chromium; draw = median of {repeat} loads). Same roads, "
        "same styling by class; `explore` = `roads.explore(column=\"highway\")`.", "",
        "| case | pieces | tool | HTML KiB | ratio | offline KiB | build s | draw s | loadEventEnd ms | SVG paths |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(0, len(rows), 2):
        a, b = rows[i], rows[i + 1]
        for r in (a, b):
            ratio = float(r["html_kb"]) / float(b["html_kb"])
            lines.append(f"| {r['case']} | {int(r['pieces']):,} | {r['tool']} | {float(r['html_kb']):,.0f} | "
                         f"{ratio:.2f} | {float(r['offline_kb']):,.0f} | {float(r['build_s']):.2f} | "
                         f"{float(r['draw_s']):.2f} | {float(r['load_ms']):,.0f} | {int(r['paths']):,} |")
    lines += [
        "",
        "- *HTML KiB*: the page as each tool writes it (scripts from CDNs); *ratio*: icv / explore (goal ≤ 0.33).",
        "- icv's page is smaller because coordinates are delta-encoded integers on a 1e-5° (≈ 1 m) grid, lines",
        "  are simplified by 1e-5°, properties are only what the tooltip shows, styles are shared by index and",
        "  the page loads Leaflet alone; explore writes full-precision GeoJSON with every column and a style per",
        "  feature. icv's page also holds the grid cells, the zone outline, title block and legend.",
        "- *build s*: icv = coverage numbers (clip, 500 m buffers, grid) + page; explore = page only (its first",
        "  call also imports matplotlib and mapclassify).",
        "- *offline KiB*: scripts and stylesheets inlined (icv: Leaflet 1.9.3, ≈ 160 KiB; explore: Leaflet, jQuery,",
        "  Bootstrap, Font Awesome with its fonts, awesome-markers).",
        "- *draw s*: wall time from navigation to two animation frames after the load event (the roads are laid",
        "  out); *SVG paths*: paths in Leaflet's overlay pane (icv adds the cells and the zone outline).",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    """Replace the maps section of RESULTS.md (or append it); other sections are left as they are."""
    from geo._atomic import write_text

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start = old.find(SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + ("\n\n" if old.strip() else "") + text
    else:
        # up to the next section, or to the build-time subsection written by hand (kept)
        ends = [i for i in (old.find("\n## ", start + len(SECTION)), old.find("\n### Build time", start)) if i >= 0]
        nxt = min(ends) if ends else -1
        new = old[:start] + text + (old[nxt + 1:] if nxt >= 0 else "")
        new = new.replace(text + "## ", text + "\n## ")
    write_text(path, new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="page loads per measurement (median)")
    ap.add_argument("--tiles", type=int, default=5, help="also bench the subset tiled N x N (1: off)")
    ap.add_argument("--builds", type=int, default=1, help="page builds per tool, interleaved (median)")
    ap.add_argument("--grid", type=float, default=0.0, metavar="M",
                    help="also bench a dense SYNTHETIC grid of this spacing in the Jiading outline (160: ~50k pieces)")
    ap.add_argument("--no-draw", action="store_true", help="sizes and build times only (no Chromium)")
    ap.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = ap.parse_args()
    rows = run(args.repeat, args.tiles, draw=not args.no_draw, builds=args.builds, grid_spacing=args.grid)
    text = markdown(rows, args.repeat)
    print(text)
    load = os.getloadavg()
    print(f"Build times (median of {args.builds}, interleaved; load average now {load[0]:.1f}):\n")
    print("| case | pieces | icv build s | explore build s | icv / explore | icv CPU s | explore CPU s | "
          "icv / explore (CPU) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(rows[0::2], rows[1::2], strict=True):
        print(f"| {a['case']} | {int(a['pieces']):,} | {float(a['build_s']):.2f} | {float(b['build_s']):.2f} | "
              f"{float(a['build_s']) / float(b['build_s']):.2f} | {float(a['build_cpu_s']):.2f} | "
              f"{float(b['build_cpu_s']):.2f} | {float(a['build_cpu_s']) / float(b['build_cpu_s']):.2f} |")
    if args.write:
        write_section(text, ROOT / "bench" / "RESULTS.md")
        print(f"wrote the maps section of {ROOT / 'bench' / 'RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
