"""OSM history files as of a date: icv's reading beside osmium-tool's ``time-filter``.

A synthetic history of an ``n x n`` street grid (the grid of ``tests/synthetic_osm.py``): every way
created on 2014-01-01, the rows retagged residential -> tertiary on 2018-01-01, every tenth column
deleted on 2022-05-01, every node moved by 1e-6° on 2020-01-01. Written as OSM history XML and
converted to ``.osh.pbf`` with pyosmium.

Side by side, in one run, for the state at the end of 2021-06-30:

``icv``
    ``geo.sources.load_network(FILE.osh.pbf, as_of=...)``: pyosmium reads every version once
    (geo._osh), picks the versions visible then, and builds the roads table.
``peer``
    ``osmium time-filter FILE.osh.pbf 2021-06-30T23:59:59Z -o snap.osm.pbf`` (osmium-tool, C++),
    then ``geo.sources.load_network(snap.osm.pbf)``.

Both must give the same pieces and km (checked). A second line does a 10-date series: icv reads
the file once (``geo.history.history_from_file``), the peer cuts and loads 10 snapshots.

Run: ``python bench/bench_history.py [--n 200] [--markdown]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_history(path: Path, n: int, lon0: float = 121.19, lat0: float = 31.29, step: float = 0.001) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="icv bench">\n')
        for i in range(n):
            for j in range(n):
                nid = i * n + j + 1
                lat, lon = lat0 + i * step, lon0 + j * step
                f.write(f'<node id="{nid}" version="1" timestamp="2013-01-01T00:00:00Z" visible="true" '
                        f'lat="{lat:.7f}" lon="{lon:.7f}"/>\n'
                        f'<node id="{nid}" version="2" timestamp="2020-01-01T00:00:00Z" visible="true" '
                        f'lat="{lat + 1e-6:.7f}" lon="{lon:.7f}"/>\n')
        for i in range(n):
            nds = "".join(f'<nd ref="{i * n + j + 1}"/>' for j in range(n))
            f.write(f'<way id="{i + 1}" version="1" timestamp="2014-01-01T00:00:00Z" visible="true">{nds}'
                    f'<tag k="highway" v="residential"/><tag k="name" v="横{i}路"/></way>\n'
                    f'<way id="{i + 1}" version="2" timestamp="2018-01-01T00:00:00Z" visible="true">{nds}'
                    f'<tag k="highway" v="tertiary"/><tag k="name" v="横{i}路"/></way>\n')
        for j in range(n):
            wid = n + j + 1
            nds = "".join(f'<nd ref="{i * n + j + 1}"/>' for i in range(n))
            f.write(f'<way id="{wid}" version="1" timestamp="2014-01-01T00:00:00Z" visible="true">{nds}'
                    '<tag k="highway" v="tertiary"/></way>\n')
            if j % 10 == 0:
                f.write(f'<way id="{wid}" version="2" timestamp="2022-05-01T00:00:00Z" visible="false"/>\n')
        f.write("</osm>\n")


def to_pbf(xml: Path, pbf: Path) -> None:
    import osmium

    header = osmium.io.Header()
    header.has_multiple_object_versions = True
    w = osmium.SimpleWriter(str(pbf), header=header, overwrite=True)
    try:
        for obj in osmium.FileProcessor(str(xml)):
            w.add(obj)
    finally:
        w.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    exe = shutil.which("osmium")
    if exe is None:
        sys.exit("osmium-tool is not installed (apt-get install osmium-tool)")
    from geo import history as hist
    from geo import sources
    from geo.roads import parse_filter

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        xml, pbf = d / "grid.osh", d / "grid.osh.pbf"
        write_history(xml, args.n)
        to_pbf(xml, pbf)
        size_kb, xml_mb = pbf.stat().st_size / 1e3, xml.stat().st_size / 1e6

        snap = d / "snap.osm.pbf"
        t_icv = t_peer = float("inf")
        for _ in range(2):  # best of two: the first run also pays imports and warm-up
            t = time.perf_counter()
            ours = sources.load_network(pbf, as_of="2021-06-30")
            t_icv = min(t_icv, time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([exe, "time-filter", str(pbf), "2021-06-30T23:59:59Z", "-o", str(snap), "-O"], check=True)
            peer = sources.load_network(snap)
            t_peer = min(t_peer, time.perf_counter() - t)
        assert len(ours.roads) == len(peer.roads), (len(ours.roads), len(peer.roads))
        km_icv, km_peer = ours.roads["length_m"].sum() / 1000, peer.roads["length_m"].sum() / 1000
        assert abs(km_icv - km_peer) < 1e-6 * max(km_peer, 1), (km_icv, km_peer)

        days = [date(y, 1, 2) for y in range(2014, 2024)]
        from geo.zones import Zone
        from shapely.geometry import box

        zone = Zone("grid", box(121.18, 31.28, 121.19 + args.n * 0.001 + 0.01, 31.29 + args.n * 0.001 + 0.01),
                    None, {})
        t = time.perf_counter()
        h = hist.history_from_file(pbf, zone, parse_filter("drive"), days)
        t_series_icv = time.perf_counter() - t
        t = time.perf_counter()
        from geo.stats import road_stats

        peer_km = []
        for day in days:
            subprocess.run([exe, "time-filter", str(pbf), f"{day.isoformat()}T00:00:00Z", "-o", str(snap), "-O"],
                           check=True)
            st = road_stats(sources.load_network(snap, zone=zone).roads, zone, subzones={})
            peer_km.append(float(st.figures_by_name["carriageway_km"].value))
        t_series_peer = time.perf_counter() - t
        for p, k in zip(h.points, peer_km):
            assert abs(p.total_km - k) < 0.002 * max(k, 1), (p.day, p.total_km, k)
    load = os.getloadavg()
    rows = [
        ("one date (2021-06-30)", f"{len(ours.roads):,} pieces, {km_icv:,.1f} km", t_icv, t_peer),
        ("10 dates, km in the zone", f"{h.points[0].total_km:,.1f} -> {h.points[-1].total_km:,.1f} km", t_series_icv,
         t_series_peer),
    ]
    head = (f"grid {args.n}x{args.n} history: {2 * args.n * args.n:,} node and {3 * args.n + (args.n + 9) // 10:,} way "
            f"versions, .osh {xml_mb:.1f} MB, .osh.pbf {size_kb:.0f} kB (a regular grid compresses well); "
            f"load average {load[0]:.2f} {load[1]:.2f} (1, 5 min) at the end")
    if args.markdown:
        print(head + "\n")
        print("| task | result (same for both) | icv s | osmium time-filter + icv s | ratio |")
        print("|---|---|---:|---:|---:|")
        for name, res, a, b in rows:
            print(f"| {name} | {res} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    else:
        print(head)
        for name, res, a, b in rows:
            print(f"{name}: {res}; icv {a:.2f} s, peer {b:.2f} s, ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
