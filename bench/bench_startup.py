"""Benchmark: icv's fixed cost (imports) and `icv stats` as a whole process against OSMnx.

Two measurements, side by side in one run:

1. What ``icv --help``, ``icv zone show jiading`` and ``icv stats`` import
   (``python -X importtime``: module count and the summed self time of every
   import), for this tree and, with ``--baseline DIR``, for another checkout
   (e.g. the main branch before the lazy imports).
2. ``icv stats --source GRID.osm --zone BOX --format json`` as a whole process
   against the OSMnx equivalent in one process (``graph_from_xml``, street counts
   as ``graph_from_polygon`` sets them, ``project_graph``, ``basic_stats``),
   interleaved, median of ``--repeats`` runs each, on a SYNTHETIC street grid of
   ``2·n·(n−1)`` pieces (``tests/synthetic_osm.py``).

Usage::

    python bench/bench_startup.py --n 101 --repeats 3 [--baseline /path/to/main] [--write]

Not a test: timings depend on the machine and its load (printed beside them).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- bench_startup:begin -->", "<!-- bench_startup:end -->"

OX_SCRIPT = """
import sys
import geopandas as gpd
import networkx as nx
import osmnx as ox
G = ox.graph_from_xml(sys.argv[1], simplify=True, retain_all=True)
nx.set_node_attributes(G, ox.stats.count_streets_per_node(G), "street_count")  # as graph_from_polygon does
area = float(gpd.read_file(sys.argv[2]).to_crs(6933).area.sum())
s = ox.stats.basic_stats(ox.project_graph(G), area=area)
print(len(G.edges), round(s["street_length_total"] / 1000, 3))
"""

ICV = "import sys; sys.argv = ['icv'] + sys.argv[1:]; from cli import main; main()"


def importtime(cwd: Path, args: list[str], runs: int = 3) -> tuple[int, float]:
    """(modules imported, summed self time of the imports in seconds, best of ``runs``) of ``icv ARGS``."""
    best = (0, float("inf"))
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", ICV, *args], cwd=cwd, capture_output=True,
                           text=True, check=True)
        rows = [ln.split("|") for ln in r.stderr.splitlines() if ln.startswith("import time:") and "self" not in ln]
        t = sum(int(r[0].split(":")[1]) for r in rows) / 1e6
        if t < best[1]:
            best = (len(rows), t)
    return best


def wall(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one whole process: CPU time is what a shared,
    loaded machine disturbs least."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, capture_output=True, check=True)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[101, 141],
                    help="grid sizes (2·n·(n−1) pieces; 101 -> 20,200, 141 -> 39,480)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout to compare imports with")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    a = ap.parse_args()

    import geopandas as gpd
    from shapely.geometry import box
    from synthetic_osm import write_grid_osm

    # bytecode for icv's own modules, as installing a wheel writes it (pip compiles site-packages, so
    # OSMnx has it): with PYTHONDONTWRITEBYTECODE set, as on this machine, a checkout would otherwise
    # compile cli.py and geo/ again in every run (~0.1 s CPU of each `icv stats`)
    # (this tree only: the --baseline checkout is someone else's and is left untouched)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "cli.py", "geo"], cwd=ROOT, capture_output=True,
                   check=False)
    tmp = Path(tempfile.mkdtemp(prefix="icv-bench-startup-"))
    load0 = os.getloadavg()
    step = 0.0005

    def grid_files(n: int) -> tuple[Path, Path, int]:
        grid, zone = tmp / f"grid{n}.osm", tmp / f"gridbox{n}.geojson"
        write_grid_osm(grid, n, step=step)
        gpd.GeoDataFrame({"name": ["gridbox"]}, geometry=[box(121.185, 31.285, 121.19 + n * step + 0.005,
                                                              31.29 + n * step + 0.005)], crs=4326).to_file(zone)
        return grid, zone, 2 * n * (n - 1)

    def stats_args(grid: Path, zone: Path) -> list[str]:
        return ["stats", "--source", str(grid), "--zone", str(zone), "--format", "json"]

    grid, zone, pieces = grid_files(a.n[0])
    lines = []
    cmds = {"icv --help": ["--help"], "icv zone show jiading": ["zone", "show", "jiading"],
            f"icv stats ({pieces:,}-piece grid)": stats_args(grid, zone)}
    lines.append("| command | modules (before) | import self time s, best of 3 (before) | modules (now) | "
                 "import self time s, best of 3 (now) |")
    lines.append("|---|---|---|---|---|")
    for label, args in cmds.items():
        now = importtime(ROOT, args)
        before = importtime(a.baseline, args) if a.baseline else (None, None)
        b0 = "" if before[0] is None else f"{before[0]}"
        b1 = "" if before[1] is None else f"{before[1]:.2f}"
        lines.append(f"| `{label}` | {b0} | {b1} | {now[0]} | {now[1]:.2f} |")

    lines.append("")
    lines.append("| whole process (SYNTHETIC grid) | pieces | icv wall s | OSMnx wall s | icv CPU s | OSMnx CPU s | "
                 "ratio wall | ratio CPU | runs icv (wall/CPU) | runs OSMnx (wall/CPU) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for n in a.n:
        grid, zone, pieces = grid_files(n)
        icv_cmd = [sys.executable, "-c", ICV, *stats_args(grid, zone)]
        ox_cmd = [sys.executable, "-c", OX_SCRIPT, str(grid), str(zone)]
        t_icv, t_ox = [], []
        for _ in range(a.repeats):  # interleaved: both see the same load
            t_icv.append(wall(icv_cmd, ROOT))
            t_ox.append(wall(ox_cmd, ROOT))
        mi, mo = statistics.median(t[0] for t in t_icv), statistics.median(t[0] for t in t_ox)
        ci, co = statistics.median(t[1] for t in t_icv), statistics.median(t[1] for t in t_ox)
        runs = [", ".join(f"{t[0]:.2f}/{t[1]:.2f}" for t in ts) for ts in (t_icv, t_ox)]
        lines.append(f"| `icv stats --format json` vs OSMnx | {pieces:,} | {mi:.2f} | {mo:.2f} | {ci:.2f} | "
                     f"{co:.2f} | {mo / mi:.1f}x | **{co / ci:.1f}x** | {runs[0]} | {runs[1]} |")
    load1 = os.getloadavg()
    lines.append("")
    lines.append("OSMnx = `graph_from_xml` + street counts (as `graph_from_polygon` sets them) + `project_graph` + "
                 "`basic_stats`, in one process. Medians of the interleaved runs; CPU = user + system of the whole "
                 "process, which the other engineers' load on this shared machine disturbs far less than wall time. "
                 "icv's modules are byte-compiled first (`compileall`), as a wheel install leaves them; OSMnx's are "
                 "in site-packages, compiled by pip.")
    head = (f"Run: `python bench/bench_startup.py --n {' '.join(map(str, a.n))} --repeats {a.repeats}"
            f"{' --baseline ' + str(a.baseline) if a.baseline else ''}`, {time.strftime('%Y-%m-%d')}. "
            f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average "
            f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (a shared machine: the ratio, measured "
            f"interleaved, is the figure to read).")
    text = "\n".join([head, "", *lines])
    print(text)
    if a.write:
        section = f"{BEGIN}\n## Fixed cost and `icv stats` as a whole process (`bench/bench_startup.py`)\n\n{text}\n{END}"
        old = RESULTS.read_text(encoding="utf-8")
        if BEGIN in old:
            new = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + section + "\n"
        RESULTS.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
