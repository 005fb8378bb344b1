"""The Meili side of bench/bench_fleet_accuracy.py: Valhalla tiles and map matching (pyvalhalla 3.9.1).

Runs under the benchmark's own Python 3.12 virtual environment (``/work/valhalla-venv`` by
default, never the project's: pyvalhalla's tile builder needs Python 3.12), as a subprocess::

    python bench/_meili.py build OSM.pbf TILE_DIR
    python bench/_meili.py match TILE_DIR TRACES.json OUT.json

``build`` runs ``valhalla_build_tiles`` on the same OSM data icv reads (converted to PBF by
``osmium``) and writes ``TILE_DIR/valhalla.json``. ``match`` reads traces
(``{"traces": [{"id": ..., "lon": [...], "lat": [...], "t": [...]}], "gps_accuracy": m,
"search_radius": m, "trace_options": {...}}``), calls ``Actor.trace_attributes`` with ``shape_match=map_snap`` per
trace and writes, per trace, the matched shape (lon/lat), the edges' OSM way ids and shape
index ranges, and the seconds spent inside Valhalla. Traces Meili cannot match are recorded
with their error, never dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def build(pbf: str, tile_dir: str) -> None:
    from valhalla import PYVALHALLA_DIR, get_config

    td = Path(tile_dir)
    td.mkdir(parents=True, exist_ok=True)
    cfg = get_config(tile_extract="", tile_dir=td)
    cfg["mjolnir"]["concurrency"] = 1  # a shared 2-core machine
    cfg_path = td / "valhalla.json"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    exe = PYVALHALLA_DIR / "bin" / "valhalla_build_tiles"  # the wheel's binary (its wrapper wants it on PATH)
    t = time.perf_counter()
    subprocess.run([str(exe), "-c", str(cfg_path), pbf], check=True, stdout=subprocess.DEVNULL,
                   cwd=td)
    print(json.dumps({"tile_dir": str(td), "seconds": round(time.perf_counter() - t, 2)}))


def _decode(poly: str, precision: int = 6) -> list[tuple[float, float]]:
    """Google polyline (Valhalla's precision 6) to [(lon, lat)]."""
    coords, idx, lat, lon, f = [], 0, 0, 0, 10.0 ** precision
    while idx < len(poly):
        for which in (0, 1):
            shift = result = 0
            while True:
                b = ord(poly[idx]) - 63
                idx += 1
                result |= (b & 0x1F) << shift
                shift += 5
                if b < 0x20:
                    break
            d = ~(result >> 1) if result & 1 else result >> 1
            if which == 0:
                lat += d
            else:
                lon += d
        coords.append((lon / f, lat / f))
    return coords


def match(tile_dir: str, traces_json: str, out_json: str) -> None:
    from valhalla import Actor

    cfg = json.loads((Path(tile_dir) / "valhalla.json").read_text(encoding="utf-8"))
    req_in = json.loads(Path(traces_json).read_text(encoding="utf-8"))
    # the settings go into the config, for the "auto" mode (it overrides the defaults' search radius
    # and turn penalty) as well as the defaults
    cfg["meili"]["default"]["max_search_radius"] = max(req_in["search_radius"],
                                                       cfg["meili"]["default"].get("max_search_radius", 100))
    sets = {"gps_accuracy": req_in["gps_accuracy"], "search_radius": req_in["search_radius"],
            **req_in.get("trace_options", {})}
    cfg["meili"]["default"].update(sets)
    cfg["meili"]["auto"].update(sets)
    actor = Actor(cfg)
    out = []
    spent = 0.0
    for tr in req_in["traces"]:
        shape = [{"lon": lo, "lat": la, "time": int(t)} for lo, la, t in zip(tr["lon"], tr["lat"], tr["t"])]
        req = {"shape": shape, "costing": "auto", "shape_match": "map_snap", "use_timestamps": True,
               "trace_options": {"gps_accuracy": req_in["gps_accuracy"], "search_radius": req_in["search_radius"],
                                 "breakage_distance": 3000, **req_in.get("trace_options", {})},
               "filters": {"attributes": ["edge.way_id", "edge.begin_shape_index", "edge.end_shape_index",
                                          "edge.length", "shape"], "action": "include"}}
        t0 = time.perf_counter()
        try:
            res = actor.trace_attributes(json.dumps(req))
            err = None
        except Exception as e:  # Meili's own refusal of a trace: recorded, not dropped
            res, err = None, str(e).splitlines()[0][:200]
        spent += time.perf_counter() - t0
        if res is None:
            out.append({"id": tr["id"], "error": err, "points": len(shape)})
            continue
        r = json.loads(res) if isinstance(res, str) else res
        out.append({"id": tr["id"], "points": len(shape), "shape": _decode(r.get("shape", "")),
                    "edges": [[e.get("way_id"), e.get("begin_shape_index"), e.get("end_shape_index"),
                               e.get("length")] for e in r.get("edges", [])]})
    Path(out_json).write_text(json.dumps({"seconds": spent, "results": out}), encoding="utf-8")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"build": build, "match": match}[cmd](*args)
