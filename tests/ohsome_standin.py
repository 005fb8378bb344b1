"""A stand-in ohsome API on 127.0.0.1, for tests that must not touch the network.

It answers ``POST /v1/elements/length/groupBy/tag`` and ``POST /v1/elements/count/groupBy/tag`` as
HeiGIT's ohsome API does, from an OSM history XML file held in memory, by its own plain reading
(xml.etree + shapely clipping + pyproj geodesic lengths, no icv code):

* ``bpolys`` must be a GeoJSON FeatureCollection; lengths are clipped to it;
* ``time`` is a comma list of dates or ``START/END/PnM|PnY`` (steps by dateutil's relativedelta);
* ``filter`` must read ``type:way and highway in (a, b) and not area=yes [and not K in (private, no)]...``;
  anything else is a 400 with ohsome's error JSON, as is a missing parameter;
* ``groupByKey=highway`` (with ``groupByValues``) or ``groupByKey=name``.

A fault script (``script``) serves successive requests: ``ok``, ``503`` (with ``Retry-After: 0``),
``429``, ``400`` (ohsome error JSON), ``html`` (a 200 web page), ``cut`` (half the JSON), ``hang``,
``slow`` (the answer trickled, 20 bytes every 0.1 s).
"""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyproj
import shapely
from dateutil.relativedelta import relativedelta
from shapely.geometry import shape

GEOD = pyproj.Geod(ellps="WGS84")
_FILTER = re.compile(r"^type:way and highway in \(([^)]*)\) and not area=yes"
                     r"((?: and not [a-z_]+ in \(no, private\))*)$")


def read_history_xml(path: Path) -> tuple[dict[int, list[dict]], dict[int, list[dict]]]:
    """Node and way versions of an OSM history XML file: id -> versions (oldest first)."""
    nodes: dict[int, list[dict]] = {}
    ways: dict[int, list[dict]] = {}
    for el in ET.parse(path).getroot():
        ts = datetime.fromisoformat(el.get("timestamp").replace("Z", "+00:00"))
        visible = el.get("visible", "true") == "true"
        rec: dict[str, Any] = {"ts": ts, "visible": visible,
                               "tags": {t.get("k"): t.get("v") for t in el.findall("tag")}}
        if el.tag == "node":
            rec["xy"] = (float(el.get("lon")), float(el.get("lat"))) if visible else None
            nodes.setdefault(int(el.get("id")), []).append(rec)
        elif el.tag == "way":
            rec["refs"] = [int(nd.get("ref")) for nd in el.findall("nd")]
            ways.setdefault(int(el.get("id")), []).append(rec)
    for d in (nodes, ways):
        for vs in d.values():
            vs.sort(key=lambda r: r["ts"])
    return nodes, ways


def state_at(versions: list[dict], t: datetime) -> dict | None:
    """The version visible at t, or None (not yet created, or deleted)."""
    cur = None
    for v in versions:
        if v["ts"] <= t:
            cur = v
    return cur if cur is not None and cur["visible"] else None


def timestamps(value: str) -> list[date]:
    if "/" not in value:
        return [date.fromisoformat(s) for s in value.split(",")]
    start, end, period = value.split("/")
    m = re.fullmatch(r"P(?:(\d+)Y)?(?:(\d+)M)?", period)
    if not m or not any(m.groups()):
        raise ValueError(f"unsupported period {period}")
    step = relativedelta(years=int(m.group(1) or 0), months=int(m.group(2) or 0))
    d, e, out, k = date.fromisoformat(start), date.fromisoformat(end), [], 0
    while (t := d + k * step) <= e:
        out.append(t)
        k += 1
    return out


@dataclass
class OhsomeStandIn:
    history_xml: Path
    script: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    hang_s: float = 30.0
    _server: ThreadingHTTPServer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> OhsomeStandIn:
        self.nodes, self.ways = read_history_xml(self.history_xml)
        state = self

        class Handler(_Handler):
            server_state = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def compute(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        """The ohsome answer, or raises ValueError (served as 400)."""
        for key in ("bpolys", "time", "filter", "groupByKey"):
            if key not in form:
                raise ValueError(f"missing parameter {key}")
        m = _FILTER.match(form["filter"])
        if not m:
            raise ValueError(f"unsupported filter {form['filter']!r}")
        classes = {c.strip() for c in m.group(1).split(",")}
        excluded_keys = re.findall(r"not ([a-z_]+) in", m.group(2))
        fc = json.loads(form["bpolys"])
        if fc.get("type") != "FeatureCollection":
            raise ValueError("bpolys must be a FeatureCollection")
        area = shapely.union_all([shape(f["geometry"]) for f in fc["features"]])
        key = form["groupByKey"]
        results: dict[str, list[dict[str, Any]]] = {}
        times = timestamps(form["time"])
        for d in times:
            t = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)  # ohsome's timestamps are 00:00 UTC
            sums: dict[str, float] = {}
            for versions in self.ways.values():
                w = state_at(versions, t)
                if w is None:
                    continue
                tags = w["tags"]
                if tags.get("highway") not in classes or tags.get("area") == "yes":
                    continue
                if any(tags.get(k) in ("private", "no") for k in excluded_keys):
                    continue
                xy = [n["xy"] for r in w["refs"] if (n := state_at(self.nodes.get(r, []), t))]
                if len(xy) < 2:
                    continue
                clipped = shapely.intersection(shapely.LineString(xy), area)
                length = GEOD.geometry_length(clipped) if not clipped.is_empty else 0.0
                if length == 0:
                    continue
                group = f"{key}={tags[key]}" if key in tags else "remainder"
                if path.startswith("/v1/elements/length"):
                    sums[group] = sums.get(group, 0.0) + length
                else:
                    sums[group] = sums.get(group, 0.0) + 1
            for g in sums:
                results.setdefault(g, [])
            for g in results:
                results[g].append({"timestamp": f"{d.isoformat()}T00:00:00Z", "value": round(sums.get(g, 0.0), 2)})
        if key == "highway" and "groupByValues" in form:
            for v in form["groupByValues"].split(","):
                results.setdefault(f"highway={v}", [{"timestamp": f"{d.isoformat()}T00:00:00Z", "value": 0.0}
                                                    for d in times])
        results.setdefault("remainder", [{"timestamp": f"{d.isoformat()}T00:00:00Z", "value": 0.0} for d in times])
        return {"attribution": {"url": "https://ohsome.org/copyrights", "text": "© OpenStreetMap contributors"},
                "apiVersion": "1.10.4-standin",
                "groupByResult": [{"groupByObject": g, "result": r} for g, r in sorted(results.items())]}


class _Handler(BaseHTTPRequestHandler):
    server_state: OhsomeStandIn
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"timestamp": "2026-01-01T00:00:00", "status": status, "message": message,
                                       "requestUrl": self.path}).encode())

    def do_POST(self) -> None:  # noqa: N802
        st = self.server_state
        n = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode("utf-8")).items()}
        st.requests.append({"path": self.path, **form})
        behaviour = st.script.pop(0) if st.script else "ok"
        try:
            if behaviour == "hang":
                st._stop.wait(st.hang_s)
                return
            if behaviour in ("503", "429"):
                self._send(int(behaviour), b"busy", "text/plain", {"Retry-After": "0"})
                return
            if behaviour == "400":
                self._error(400, "The provided time parameter is not ISO-8601 conform.")
                return
            if behaviour == "html":
                self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
                return
            if not self.path.startswith(("/v1/elements/length/groupBy/tag", "/v1/elements/count/groupBy/tag")):
                self._error(404, f"no such endpoint {self.path}")
                return
            try:
                doc = st.compute(self.path, form)
            except (ValueError, KeyError) as e:
                self._error(400, str(e))
                return
            body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
            if behaviour == "slow":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(0, len(body), 20):
                    if st._stop.wait(0.1):
                        return
                    self.wfile.write(body[i:i + 20])
                    self.wfile.flush()
                return
            if behaviour == "cut":
                body = body[: len(body) // 2]
            self._send(200, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
