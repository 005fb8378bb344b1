"""A stand-in Overpass API server on 127.0.0.1, for tests that must not touch the network.

It answers ``/api/interpreter`` (POST or GET, form field ``data``) and
``/api/status`` like a real Overpass server: it parses the Overpass QL that
OSMnx sends (``way[...](poly:"lat lon ...");>;``), selects the ways of an OSM
XML file that pass the tag filters and touch the polygon, adds all their nodes
(as ``>;`` does), and returns Overpass JSON with ``osm3s.timestamp_osm_base``.

A *fault script* makes it misbehave on purpose: a list of behaviours served to
successive interpreter requests, then ``ok``:

==================  =============================================================
``ok``               200 with the real answer
``chunked``          the same, sent with ``Transfer-Encoding: chunked`` as real servers stream
``429``              429 Too Many Requests with ``Retry-After: <retry_after>``
``429-status``       429 without Retry-After; ``/status`` announces a slot in
                     ``slot_wait_s`` seconds
``502`` ``503``      gateway / service errors, HTML body
``504``
``400``              400 with Overpass's HTML parse-error page
``html``             200 with an HTML page (a wrong URL, a captive portal)
``remark``           200 JSON, half the elements, remark "runtime error: Query timed out..."
``remark-oom``       the same with "runtime error: Query run out of memory..."
``truncated``        200 without Content-Length, the JSON cut in half, connection closed
``cut``              200 with the full Content-Length, half the body, connection closed
``chunked-cut``      200 chunked, connection closed after half the chunks (no final chunk)
``slow``             200, body trickled one byte per ``trickle_s`` seconds
``hang``             reads the request and then says nothing for ``hang_s`` seconds
==================  =============================================================

Usage::

    with OverpassStandIn(osm_path) as server:
        server.script = ["429", "ok"]
        fetch_ways(..., url=server.url)
        assert server.interpreter_count == 2

or, in another test module, the fixture (it serves the shared Jiading extract
and skips when ../shared/data is absent)::

    from overpass_standin import overpass_standin  # noqa: F401

    def test_x(overpass_standin): ...
"""

from __future__ import annotations

import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import shapely

OSM_BASE = "2024-02-29T23:59:59Z"
#: The shared extract the fixture serves (in ../shared/data).
SHARED_OSM = "jiading_osm_signalized.osm"
BEHAVIOURS = ("ok", "chunked", "429", "429-status", "502", "503", "504", "400", "html", "remark", "remark-oom",
              "truncated", "cut", "chunked-cut", "slow", "hang")
REMARK_TIMEOUT = 'runtime error: Query timed out in "query" at line 1 after 2 seconds.'
REMARK_OOM = 'runtime error: Query run out of memory in "recurse" at line 1 using about 2048 MB of RAM.'


@dataclass
class OsmData:
    """Nodes and ways of an OSM XML file, as Overpass would hold them."""

    nodes: dict[int, dict[str, Any]]  # id -> {"lat", "lon", "tags"}
    ways: list[dict[str, Any]]  # {"id", "nodes", "tags"}, sorted by id
    lines: np.ndarray  # shapely geometry of each way (LineString, or Point for one node)


@lru_cache(maxsize=4)
def load_osm(path: Path) -> OsmData:
    """Read nodes (lat/lon/tags) and ways (node refs/tags) of an OSM XML file.

    Ways that reference nodes missing from the file are left out, since a real
    Overpass database never lacks a way's nodes.
    """
    root = ET.parse(path).getroot()
    nodes: dict[int, dict[str, Any]] = {}
    ways: list[dict[str, Any]] = []
    for el in root:
        tags = {t.get("k"): t.get("v") for t in el.findall("tag")}
        if el.tag == "node":
            nodes[int(el.get("id"))] = {"lat": float(el.get("lat")), "lon": float(el.get("lon")), "tags": tags}
        elif el.tag == "way":
            refs = [int(nd.get("ref")) for nd in el.findall("nd")]
            ways.append({"id": int(el.get("id")), "nodes": refs, "tags": tags})
    # an Overpass database is complete: drop ways whose nodes the file lacks
    ways = [w for w in ways if all(r in nodes for r in w["nodes"])]
    ways.sort(key=lambda w: w["id"])
    lines = []
    for w in ways:
        xy = [(nodes[r]["lon"], nodes[r]["lat"]) for r in w["nodes"]]
        lines.append(shapely.LineString(xy) if len(xy) >= 2 else shapely.Point(xy[0]) if xy else None)
    return OsmData(nodes, ways, np.array(lines, dtype=object))


# --- a small Overpass QL reader: settings, way statements, tag filters, poly ---------------------

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_KEY = rf'(?:{_STRING}|[A-Za-z_][\w:]*)'
_FILTER = re.compile(rf'\[\s*(?P<neg>!)?\s*(?P<key>{_KEY})\s*(?:(?P<op>!=|=|!~|~)\s*(?P<val>{_KEY}|[^\]\s,]+))?'
                     r'\s*(?P<ci>,\s*i)?\s*\]')
_WAY = re.compile(rf'way(?P<filters>(?:\[[^\]]*\])*)\(\s*poly\s*:\s*(?P<poly>{_STRING})\s*\)')
_SETTING = re.compile(r'\[(out|timeout|maxsize|date):([^\]]*)\]')


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", s[1:-1])
    return s


@dataclass
class TagFilter:
    """One Overpass tag filter: ``[k]``, ``[!k]``, ``[k=v]``, ``[k!=v]``, ``[k~re]``, ``[k!~re]``."""

    key: str
    op: str | None  # None: key present; "!": key absent
    value: str | None = None
    ignore_case: bool = False

    def passes(self, tags: dict[str, str]) -> bool:
        """Whether an element with these tags passes (Overpass semantics)."""
        v = tags.get(self.key)
        if self.op is None:
            return v is not None
        if self.op == "!":
            return v is None
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        flags = re.IGNORECASE if self.ignore_case else 0
        hit = v is not None and re.search(self.value or "", v, flags) is not None
        return hit if self.op == "~" else not hit


@dataclass
class WayQuery:
    """One ``way[...](poly:"...")`` statement."""

    filters: list[TagFilter]
    polygon: shapely.Polygon


@dataclass
class ParsedQuery:
    """What the stand-in understood of a query."""

    settings: dict[str, str]
    ways: list[WayQuery]
    recurse_down: bool


class QueryError(ValueError):
    """The stand-in cannot read the query (Overpass answers 400)."""


def parse_query(ql: str) -> ParsedQuery:
    """Read the parts of an Overpass QL query that OSMnx's network queries use."""
    settings = {m.group(1): m.group(2) for m in _SETTING.finditer(ql.split(";", 1)[0])}
    ways = []
    for m in _WAY.finditer(ql):
        filters = []
        rest = m.group("filters")
        pos = 0
        while pos < len(rest):
            f = _FILTER.match(rest, pos)
            if not f:
                raise QueryError(f"parse error in filter near {rest[pos:pos + 30]!r}")
            key = _unquote(f.group("key"))
            if f.group("neg"):
                filters.append(TagFilter(key, "!"))
            elif f.group("op"):
                filters.append(TagFilter(key, f.group("op"), _unquote(f.group("val")), bool(f.group("ci"))))
            else:
                filters.append(TagFilter(key, None))
            pos = f.end()
        nums = [float(x) for x in _unquote(m.group("poly")).split()]
        if len(nums) < 6 or len(nums) % 2:
            raise QueryError("poly needs at least three lat lon pairs")
        lat, lon = nums[0::2], nums[1::2]
        ways.append(WayQuery(filters, shapely.Polygon(list(zip(lon, lat)))))
    if not ways:
        raise QueryError("no way(poly:...) statement")
    return ParsedQuery(settings, ways, recurse_down=bool(re.search(r">\s*;", ql)))


def answer(data: OsmData, query: ParsedQuery, osm_base: str = OSM_BASE) -> dict[str, Any]:
    """The Overpass JSON answer: matching ways touching the polygon, plus their nodes."""
    chosen: set[int] = set()
    for wq in query.ways:
        ok = np.array([all(f.passes(w["tags"]) for f in wq.filters) for w in data.ways], dtype=bool)
        valid = np.array([g is not None for g in data.lines], dtype=bool)
        idx = np.flatnonzero(ok & valid)
        touch = shapely.intersects(data.lines[idx], wq.polygon) if len(idx) else np.array([], dtype=bool)
        chosen.update(int(i) for i in idx[touch])
    ways = [data.ways[i] for i in sorted(chosen)]
    elements: list[dict[str, Any]] = []
    if query.recurse_down:
        node_ids = sorted({r for w in ways for r in w["nodes"]})
        for nid in node_ids:
            n = data.nodes[nid]
            el: dict[str, Any] = {"type": "node", "id": nid, "lat": n["lat"], "lon": n["lon"]}
            if n["tags"]:
                el["tags"] = n["tags"]
            elements.append(el)
    for w in ways:
        el = {"type": "way", "id": w["id"], "nodes": w["nodes"]}
        if w["tags"]:
            el["tags"] = w["tags"]
        elements.append(el)
    return {
        "version": 0.6,
        "generator": "Overpass API 0.7.62.1 (icv test stand-in)",
        "osm3s": {"timestamp_osm_base": osm_base,
                  "copyright": "The data included in this document is from www.openstreetmap.org. "
                               "The data is made available under ODbL."},
        "elements": elements,
    }


# --- the server ---------------------------------------------------------------------------------

@dataclass
class RequestRecord:
    """One request the stand-in received."""

    method: str
    path: str
    at: float  # time.monotonic() when the request was read
    behaviour: str | None = None  # for interpreter requests
    query: str | None = None


@dataclass
class OverpassStandIn:
    """The stand-in server; a context manager that starts and stops it.

    Parameters
    ----------
    osm_path
        OSM XML file whose nodes and ways the server holds.
    osm_base
        ``timestamp_osm_base`` it reports.
    retry_after
        ``Retry-After`` value sent with ``429``.
    slot_wait_s
        Seconds ``/status`` announces until a free slot (``0`` -> slots free).
    trickle_s
        Pause between the bytes of a ``slow`` body.
    hang_s
        How long ``hang`` stays silent (cut short when the server stops).
    attic
        Dated data for queries with ``[date:"..."]`` (Overpass attic queries): ISO
        timestamp -> OSM XML file. A dated query is served the entry with the latest
        timestamp at or before its date, with ``timestamp_osm_base`` unchanged (as the real
        server does); a date before every entry gets no elements, a malformed date a 400.
    """

    osm_path: Path
    osm_base: str = OSM_BASE
    retry_after: str = "1"
    slot_wait_s: int = 0
    trickle_s: float = 0.05
    hang_s: float = 60.0
    script: list[str] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    attic: dict[str, Path] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """Base URL of the API, ``http://127.0.0.1:PORT/api``."""
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    @property
    def interpreter_requests(self) -> list[RequestRecord]:
        """Requests to ``/api/interpreter``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/interpreter")]

    @property
    def interpreter_count(self) -> int:
        """How many interpreter requests arrived."""
        return len(self.interpreter_requests)

    def start(self) -> OverpassStandIn:
        """Load the data and serve on 127.0.0.1 at a free port, in a thread."""
        load_osm(Path(self.osm_path))
        stand_in = self

        class Handler(_Handler):
            server_state = stand_in

        self._stop.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="overpass-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (hanging or trickling answers end)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OverpassStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_behaviour(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else "ok"

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def status_text(self) -> str:
        """The ``/api/status`` page, in real Overpass's format."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        lines = ["Connected as: 2130706433", f"Current time: {now:%Y-%m-%dT%H:%M:%SZ}",
                 "Announced endpoint: none", "Rate limit: 2"]
        if self.slot_wait_s > 0:
            free = now + timedelta(seconds=self.slot_wait_s)
            lines.append(f"Slot available after: {free:%Y-%m-%dT%H:%M:%SZ}, in {self.slot_wait_s} seconds.")
        else:
            lines.append("2 slots available now.")
        lines.append("Currently running queries (pid, space limit, time limit, start time):")
        return "\n".join(lines) + "\n"


_ERROR_PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en"><head>
<meta http-equiv="content-type" content="text/html; charset=utf-8" lang="en"/>
<title>OSM3S Response</title></head>
<body><p>The data included in this document is from www.openstreetmap.org.</p>
<p><strong style="color:#FF0000">Error</strong>: {message}</p>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server_state: OverpassStandIn
    protocol_version = "HTTP/1.0"  # one request per connection; a body may end at close

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean

    def do_GET(self) -> None:  # noqa: N802
        parsed = urlparse(self.path)
        if parsed.path.rstrip("/").endswith("/api/status"):
            self.server_state._record(RequestRecord("GET", parsed.path, time.monotonic()))
            self._send(200, self.server_state.status_text().encode(), "text/plain")
        elif parsed.path.rstrip("/").endswith("/api/interpreter"):
            self._interpreter("GET", parsed.path, parse_qs(parsed.query).get("data", [""])[0])
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        parsed = urlparse(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8") if n else ""
        if parsed.path.rstrip("/").endswith("/api/interpreter"):
            self._interpreter("POST", parsed.path, parse_qs(body).get("data", [""])[0])
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error_page(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        page = _ERROR_PAGE.format(message=message).encode()
        self._send(status, page, "text/html; charset=utf-8", headers)

    def _interpreter(self, method: str, path: str, ql: str) -> None:
        st = self.server_state
        behaviour = st._next_behaviour()
        st._record(RequestRecord(method, path, time.monotonic(), behaviour, ql))
        try:
            self._serve(behaviour, ql)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should on slow or hanging answers

    def _serve(self, behaviour: str, ql: str) -> None:
        st = self.server_state
        if behaviour == "hang":
            st._stop.wait(st.hang_s)
            return
        if behaviour in {"429", "429-status"}:
            headers = {"Retry-After": st.retry_after} if behaviour == "429" else {}
            self._error_page(429, "rate_limited", headers)
            return
        if behaviour in {"502", "503", "504"}:
            text = {"502": "Bad Gateway", "503": "Service Unavailable", "504": "Gateway Timeout"}[behaviour]
            self._error_page(int(behaviour), text)
            return
        if behaviour == "html":
            self._send(200, b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")
            return
        if behaviour == "400":
            self._error_page(400, "line 1: parse error: Unknown type &quot;wya&quot;")
            return
        try:
            query = parse_query(ql)
        except QueryError as exc:
            self._error_page(400, f"line 1: parse error: {exc}")
            return
        date = query.settings.get("date")
        if date is not None:
            stamp = _unquote(date.strip())
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", stamp):
                self._error_page(400, f"line 1: parse error: invalid date {stamp}")
                return
            dated = [k for k in st.attic if k <= stamp]
            data = load_osm(Path(st.attic[max(dated)])) if dated else OsmData({}, [], np.array([], dtype=object))
            result = answer(data, query, st.osm_base)
        else:
            result = answer(load_osm(Path(st.osm_path)), query, st.osm_base)
        if behaviour in {"remark", "remark-oom"}:
            result["elements"] = result["elements"][: len(result["elements"]) // 2]
            result["remark"] = REMARK_TIMEOUT if behaviour == "remark" else REMARK_OOM
        body = json.dumps(result, ensure_ascii=False).encode("utf-8")
        if behaviour == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        if behaviour == "cut":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        if behaviour in {"chunked", "chunked-cut"}:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, len(body) // 8)
            chunks = [body[i:i + step] for i in range(0, len(body), step)]
            if behaviour == "chunked-cut":
                chunks = chunks[: len(chunks) // 2]
            for c in chunks:
                self.wfile.write(f"{len(c):x}\r\n".encode() + c + b"\r\n")
            if behaviour == "chunked":
                self.wfile.write(b"0\r\n\r\n")
            return
        if behaviour == "slow":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            end = time.monotonic() + st.hang_s
            for i in range(len(body)):
                if st._stop.wait(st.trickle_s) or time.monotonic() > end:
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
            return
        self._send(200, body, "application/json")


@pytest.fixture()
def overpass_standin(shared_data: Path) -> Iterator[OverpassStandIn]:
    """A running stand-in serving the shared Jiading extract; stopped after the test."""
    with OverpassStandIn(shared_data / SHARED_OSM) as server:
        yield server
