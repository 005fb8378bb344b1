"""Benchmark: loading an OSM PBF into road pieces, icv against pyrosm and a bare pyosmium handler.

Whole process, interleaved: each tool runs in a fresh ``python`` subprocess
(imports included), the three in turn, ``--repeats`` rounds; the median wall
time and the peak RSS (``ru_maxrss`` of the child) are reported, and the
edges each one produced, so that "the same edges" is checked, not assumed.

* ``icv``: ``geo.sources.load_network(pbf, road_filter=drive)`` (read with
  pyosmium, split at junctions, merged, measured: the roads table).
* ``pyrosm``: ``pyrosm.OSM(pbf).get_network(network_type="driving", nodes=True)``
  (one edge per segment between consecutive nodes; on the grid below that is
  one edge per icv piece).
* ``pyosmium``: a bare ``osmium.FileProcessor`` loop with node locations,
  collecting each highway way's node ids and coordinates into lists (the
  floor for any pyosmium-based reader: no splitting, no table).

Networks: ``grid`` (SYNTHETIC: an n x n street grid, ``tests/synthetic_osm.py``,
n = 159 gives 50,244 pieces, written as PBF with pyosmium); ``subset``: the
shared Jiading subset re-encoded as PBF (negative node ids).

Usage::

    python bench/bench_load.py                 # print
    python bench/bench_load.py --write         # and update bench/RESULTS.md (load section)

Not a test: timings depend on the machine and its load (``os.getloadavg`` is
printed beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CHILD = {  # (imports, load): the load is timed apart from the imports too
    "icv": ("""
from geo.sources import load_network
from geo.roads import parse_filter
""", """
net = load_network(PATH, road_filter=parse_filter("drive"))
EDGES = len(net.roads)
"""),
    "pyrosm": ("""
import warnings
warnings.simplefilter("ignore")
import pyrosm
""", """
nodes, edges = pyrosm.OSM(PATH).get_network(network_type="driving", nodes=True)
EDGES = len(edges)
"""),
    "pyosmium": ("""
import osmium
""", """
ways = []
for o in osmium.FileProcessor(PATH, osmium.osm.NODE | osmium.osm.WAY).with_locations().with_filter(
        osmium.filter.KeyFilter("highway")):
    if o.is_way():
        ways.append(([n.ref for n in o.nodes],
                     [(n.location.lon, n.location.lat) for n in o.nodes if n.location.valid()]))
EDGES = sum(max(len(xy) - 1, 0) for _, xy in ways)  # segments with both nodes placed (positive ids only)
"""),
}
WRAP = """
import json, resource, sys, time
t0 = time.perf_counter()
PATH = sys.argv[1]
{imports}
t1 = time.perf_counter()
{body}
t2 = time.perf_counter()
print(json.dumps({{"in_process_s": t2 - t0, "load_s": t2 - t1, "edges": EDGES,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _run(tool: str, path: Path) -> dict:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAP.format(imports=CHILD[tool][0], body=CHILD[tool][1]), str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["wall_s"] = time.perf_counter() - t
    return rec


def _grid_pbf(tmp: Path, n: int) -> Path:
    from synthetic_osm import write_grid_osm

    xml, pbf = tmp / f"grid{n}.osm", tmp / f"grid{n}.osm.pbf"
    write_grid_osm(xml, n)
    return _to_pbf(xml, pbf)


def _to_pbf(xml: Path, pbf: Path) -> Path:
    """The nodes and ways of an OSM XML file re-encoded as PBF (pyosmium)."""
    import osmium

    with osmium.SimpleWriter(str(pbf), overwrite=True) as w:
        for o in osmium.FileProcessor(str(xml)):
            if o.is_node():
                w.add_node(o)
            elif o.is_way():
                w.add_way(o)
    return pbf


def _subset_pbf(tmp: Path) -> Path | None:
    src = ROOT.parent / "shared" / "data" / "jiading_osm_signalized.osm"
    if not src.exists():
        return None
    pbf = tmp / "subset.osm.pbf"
    return _to_pbf(src, pbf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=159, help="grid size (159: 50,244 pieces)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nets = [(f"grid {args.n}x{args.n} (SYNTHETIC)", _grid_pbf(tmp, args.n))]
        sub = _subset_pbf(tmp)
        if sub is not None:
            nets.append(("shared Jiading subset as PBF", sub))
        load0 = os.getloadavg()
        for label, path in nets:
            runs: dict[str, list[dict]] = {t: [] for t in CHILD}
            for _ in range(args.repeats):
                for tool in CHILD:  # interleaved: load drifts hit all three alike
                    runs[tool].append(_run(tool, path))
            med = {t: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "in_process_s", "load_s", "peak_mib")}
                   | {"edges": rs[0]["edges"]} for t, rs in runs.items()}
            rows.append((label, med))
        load1 = os.getloadavg()
    head = ("| network | tool | edges | whole process s (median) | in-process s (imports + load) | load s "
            "(after imports) | peak RSS MiB | icv / tool, whole | icv / tool, load |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, med in rows:
        for tool, m in med.items():
            ratio_w = med["icv"]["wall_s"] / m["wall_s"]
            ratio_l = med["icv"]["load_s"] / m["load_s"]
            lines.append(f"| {label} | {tool} | {m['edges']:,} | {m['wall_s']:.2f} | {m['in_process_s']:.2f} | "
                         f"{m['load_s']:.2f} | {m['peak_mib']:.0f} | {ratio_w:.2f} | {ratio_l:.2f} |")
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}"
    note = (f"Run: `python bench/bench_load.py --n {args.n} --repeats {args.repeats}`, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}; load average "
            f"{load0[0]:.1f} before, {load1[0]:.1f} after (a shared machine: ratios, from interleaved runs, are "
            f"what to read, not absolute times). Ratio < 1: icv faster.")
    text = "\n".join([note, "", *lines])
    print(text)
    if args.write:
        res = ROOT / "bench" / "RESULTS.md"
        body = res.read_text(encoding="utf-8")
        begin, end = "<!-- bench_load:begin -->", "<!-- bench_load:end -->"
        section = f"{begin}\n## Loading a PBF (`bench/bench_load.py`)\n\n{text}\n{end}"
        if begin in body:
            body = body[:body.index(begin)] + section + body[body.index(end) + len(end):]
        else:
            body = body.rstrip("\n") + "\n\n" + section + "\n"
        res.write_text(body, encoding="utf-8")


if __name__ == "__main__":
    main()
