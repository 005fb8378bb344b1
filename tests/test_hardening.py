"""Hardening, second round (issue 12): hostile inputs, resource caps, no silently wrong number.

Each test writes its own fixture and checks the real value or the one clear
line a user sees; docs/robustness.md ("Hostile inputs") lists the same cases.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from cli import cli
from geo._format import csv_safe, md_escape, render
from geo.errors import InputError, strip_controls

# ---------------------------------------------------------------- (a) one escaper per sink

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "=cmd|' /C calc'!A0", "+1+1", "-1+1", "@SUM(A1:A2)",
            "\t=1+1", "\r=1+1", "  =1+1", " \t@x"]


@pytest.mark.parametrize("value", FORMULAS)
def test_csv_formula_is_neutralised(value: str) -> None:
    out = csv_safe(value)
    expect = "'" + value.replace("\r", "\n")  # a CR in a cell becomes LF, which the writer quotes
    assert out == expect  # the whole value kept, behind the quote spreadsheets treat as text
    # and through the one CSV renderer, read back by Python's csv module
    text = render([{"vehicle_id": value, "km": 1.5}], "csv")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1] == [expect, "1.5"]


@pytest.mark.parametrize("value", ["-1.5", "+3", "1e5", "V001", "嘉定", "", "a=b", "x-1"])
def test_plain_values_are_left_alone(value: str) -> None:
    assert csv_safe(value) == value
    assert csv_safe(-2.5) == -2.5 and csv_safe(7) == 7 and csv_safe(None) is None


def test_markdown_escapes_html_and_strips_controls() -> None:
    assert md_escape("<script>alert(1)</script>") == "\\<script\\>alert(1)\\</script\\>"
    assert md_escape("a\x1b[31mb\x00c|d") == "abc\\|d"
    assert md_escape("&lt;img&gt;") == "\\&lt;img\\&gt;"


def test_report_markdown_escapes_the_osm_timestamp() -> None:
    from geo.provenance import Provenance
    from geo.report import report_markdown

    prov = Provenance(source_kind="osm-xml", source="x.osm", filter="drive",
                      osm_timestamp="<script>alert(1)</script>", tool_version="0.1<b>")
    md = report_markdown(zone_name="z", place="P", stats=None, comparison=[], provenance=prov)
    line = next(x for x in md.splitlines() if x.startswith("- OSM data timestamp"))
    assert line == "- OSM data timestamp: \\<script\\>alert(1)\\</script\\>"
    assert "<script>" not in md and "<b>" not in md


def test_control_characters_never_reach_a_message() -> None:
    assert strip_controls("x\x1b[2J\x1b]0;pwned\x07y\u202ez\x9b1m") == "xyz"
    e = InputError("server said \x1b[31mboom\x1b[0m\x07", where="http://h/api")
    assert e.message == "http://h/api: server said boom."


# ---------------------------------------------------------------- (b) Overpass transport: caps, redirects, credentials

import gzip as _gzip  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from shapely.geometry import box  # noqa: E402

AREA = box(121.20, 31.30, 121.21, 31.31)


def overpass_json(lat: object = 31.305, nodes: object = None, **extra: object) -> dict:
    """A two-node primary road inside AREA, as Overpass JSON."""
    return {"version": 0.6, "osm3s": {"timestamp_osm_base": "2024-02-29T23:59:59Z"},
            "elements": [{"type": "node", "id": 1, "lat": lat, "lon": 121.202},
                         {"type": "node", "id": 2, "lat": 31.305, "lon": 121.208},
                         {"type": "way", "id": 5, "nodes": nodes if nodes is not None else [1, 2],
                          "tags": {"highway": "primary"}}], **extra}


class Server:
    """A one-behaviour HTTP server on 127.0.0.1: ``handle(handler)`` writes the answer."""

    def __init__(self, handle) -> None:  # noqa: ANN001
        outer = self
        self.requests: list[dict] = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                handle(self)

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(h: BaseHTTPRequestHandler, body: bytes, status: int = 200, headers: dict | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if "Content-Length" not in (headers or {}):
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture()
def serve():
    made: list[Server] = []

    def make(handle) -> Server:  # noqa: ANN001
        s = Server(handle)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def _fetch(url: str, cache_dir: Path | None = None, **kw: object):
    from geo._overpass import fetch_ways
    from geo.roads import parse_filter

    return fetch_ways(AREA, parse_filter("drive"), url=url, timeout=kw.pop("timeout", 3), max_retries=0,
                      backoff=0.0, cache_dir=cache_dir, **kw)


def test_good_answer_through_the_standin_is_read(serve, tmp_path: Path) -> None:
    s = serve(lambda h: send(h, json.dumps(overpass_json()).encode()))
    ways, info = _fetch(s.url, tmp_path)
    assert [w.way_id for w in ways] == [5] and info.osm_base == "2024-02-29T23:59:59Z"
    assert list((tmp_path / "overpass").glob("*.json"))  # the control: a good answer is cached


def test_gzip_bomb_stops_at_the_decoded_cap(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo.errors import SourceUnavailableError

    monkeypatch.setenv("ICV_MAX_ANSWER_MB", "1")
    bomb = _gzip.compress(b"{" + b" " * (20 * 2**20) + b"}")  # 20 MiB of spaces in 20 kB
    assert len(bomb) < 100_000
    s = serve(lambda h: send(h, bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(SourceUnavailableError, match=r"larger than 1 MiB once decoded.*ICV_MAX_ANSWER_MB"):
        _fetch(s.url)


def test_answer_over_the_cap_is_refused_before_reading(serve, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from geo.errors import SourceUnavailableError

    monkeypatch.setenv("ICV_MAX_ANSWER_MB", "0.5")
    big = json.dumps(overpass_json(pad="x" * 600_000)).encode()
    s = serve(lambda h: send(h, big))
    with pytest.raises(SourceUnavailableError, match=r"larger than 0.5 MiB \(Content-Length 6\d\d,\d{3} bytes\)"):
        _fetch(s.url, tmp_path)
    assert not list((tmp_path / "overpass").glob("*.json"))  # nothing cached
    monkeypatch.setenv("ICV_MAX_ANSWER_MB", "2")  # the option to raise the cap
    assert [w.way_id for w in _fetch(s.url, tmp_path)[0]] == [5]


def test_headers_sent_one_byte_a_second_hit_the_deadline(serve) -> None:
    from geo.errors import SourceUnavailableError

    def trickle(h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            for ch in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                h.wfile.write(bytes([ch]))
                h.wfile.flush()
                time.sleep(0.2)
    import contextlib

    s = serve(trickle)
    t0 = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=r"no answer within 2 s"):
        _fetch(s.url, timeout=2)
    assert time.monotonic() - t0 < 6  # each byte came within the socket timeout; the total did not


def test_redirect_to_another_host_is_refused(serve) -> None:
    from geo.errors import SourceUnavailableError

    other = serve(lambda h: send(h, json.dumps(overpass_json()).encode()))
    target = other.url.replace("127.0.0.1", "localhost") + "/interpreter"
    s = serve(lambda h: send(h, b"", status=307, headers={"Location": target}))
    with pytest.raises(SourceUnavailableError, match=r"redirects \(HTTP 307\) to another host, http://localhost"):
        _fetch(s.url)
    assert other.requests == []  # never asked


def test_redirect_on_the_same_host_is_followed(serve) -> None:
    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/api/interpreter"):
            send(h, b"", status=307, headers={"Location": "/v2/api/interpreter"})
        else:
            send(h, json.dumps(overpass_json()).encode())
    s = serve(handle)
    assert [w.way_id for w in _fetch(s.url)[0]] == [5]


def test_credentials_are_sent_but_never_shown_cached_or_recorded(serve, tmp_path: Path) -> None:
    import base64

    s = serve(lambda h: send(h, json.dumps(overpass_json()).encode()))
    url = s.url.replace("http://", "http://alice:s3cret@")
    ways, info = _fetch(url, tmp_path)
    assert s.requests[0]["auth"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert "s3cret" not in info.url and "alice" not in info.url and info.url == s.url
    for f in (tmp_path / "overpass").rglob("*"):
        if f.is_file():
            assert b"s3cret" not in f.read_bytes()
    from geo.errors import SourceUnavailableError

    down = url.rsplit(":", 1)[0] + ":9/api"  # same credentials, nothing listening
    with pytest.raises(SourceUnavailableError) as e:
        _fetch(down)
    assert "s3cret" not in e.value.message and "alice" not in e.value.message


def test_credentials_stay_out_of_the_cli_output_and_cache_sidecar(serve, runner, zone_file: Path,
                                                                    tmp_path: Path) -> None:
    big = box(121.19, 31.29, 121.22, 31.36)
    assert big.contains(AREA)
    s = serve(lambda h: send(h, json.dumps(overpass_json()).encode()))
    url = s.url.replace("http://", "http://alice:s3cret@")
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--zone", str(zone_file), "--overpass-url", url, "--cache-dir", str(cache),
                            "--timeout", "3"])
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output
    for f in cache.rglob("*"):
        if f.is_file():
            assert b"s3cret" not in f.read_bytes(), f
    side = next(cache.glob("roads-*.json"))
    assert json.loads(side.read_text())["provenance"]["source"] == s.url


def test_server_error_text_has_no_terminal_escapes(serve) -> None:
    from geo.errors import SourceUnavailableError

    page = b"<html><body>Error: \x1b]0;pwned\x07\x1b[2Jbad query</body></html>"
    s = serve(lambda h: send(h, page, status=400, headers={"Content-Type": "text/html"}))
    with pytest.raises(SourceUnavailableError) as e:
        _fetch(s.url)
    assert "\x1b" not in e.value.message and "\x07" not in e.value.message
    assert "Error: bad query" in e.value.message


BAD_ANSWERS = {
    "lat 931": (overpass_json(lat=931.0), r"node 1 has coordinates out of range \(lat=931.0"),
    "lat as text": (overpass_json(lat="31.3"), r"node 1 has coordinates that are not numbers"),
    "nodes not a list": (overpass_json(nodes="1,2"), r"way 5 has a node list that is not a list of ids"),
    "elements of numbers": ({"elements": [1, 2]}, r"element #0 is a JSON int, not an object"),
    "id as text": ({"elements": [{"type": "node", "id": "x", "lat": 1, "lon": 1}]},
                   r"element #0 \(node\) has a missing or non-integer id"),
    "tags of numbers": ({"elements": [{"type": "way", "id": 5, "nodes": [1], "tags": {"highway": 1}}]},
                        r"way 5 has tags that are not text"),
    # found by test_fuzz_overpass_json_reader: OSMnx raised ValueError (exit 70) on these
    "way without nodes": (overpass_json(nodes=[]), r"way 5 has 0 nodes \(a way has at least 2\)"),
    "way to a missing node": (overpass_json(nodes=[1, 7]),
                              r"way 5 references node 7, which the answer does not hold \(a cut answer\?\)"),
}


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_overpass_json_of_wrong_types_is_a_clear_error_and_never_cached(serve, tmp_path: Path, case: str) -> None:
    from geo.errors import SourceUnavailableError

    doc, msg = BAD_ANSWERS[case]
    s = serve(lambda h: send(h, json.dumps(doc).encode()))
    with pytest.raises(SourceUnavailableError, match=msg):
        _fetch(s.url, tmp_path)
    assert not list((tmp_path / "overpass").glob("*.json"))


@pytest.mark.parametrize("body,msg", [
    (json.dumps(overpass_json()).replace("31.305, \"lon\": 121.202", "NaN, \"lon\": 121.202"),
     r"the answer holds NaN, which is not JSON data"),
    ("[" * 100_000 + "]" * 100_000, r"nested too deeply"),
], ids=["NaN coordinate", "deep nesting"])
def test_nan_and_deep_nesting_are_clear_errors(serve, tmp_path: Path, body: str, msg: str) -> None:
    from geo.errors import SourceUnavailableError

    assert "NaN" in body or body.startswith("[[")
    s = serve(lambda h: send(h, body.encode()))
    with pytest.raises(SourceUnavailableError, match=msg):
        _fetch(s.url, tmp_path)
    assert not list((tmp_path / "overpass").glob("*.json"))


def test_empty_answer_is_not_cached(serve, tmp_path: Path) -> None:
    empty = {"version": 0.6, "osm3s": {"timestamp_osm_base": "2024-02-29T23:59:59Z"}, "elements": []}
    s = serve(lambda h: send(h, json.dumps(empty).encode()))
    ways, _ = _fetch(s.url, tmp_path)
    assert ways == []
    assert not list((tmp_path / "overpass").glob("*.json"))
    _fetch(s.url, tmp_path)
    assert len(s.requests) == 2  # asked again, not replayed from a cache


# ---------------------------------------------------------------- (b, c) OSM XML: caps and validation where it enters

from pyproj import Geod  # noqa: E402

GEOD = Geod(ellps="WGS84")
PT = {1: (121.200, 31.300), 2: (121.201, 31.300), 3: (121.201, 31.301), 4: (121.202, 31.301)}


def geodesic_m(*ids: int) -> float:
    lons, lats = zip(*(PT[i] for i in ids))
    return GEOD.line_length(lons, lats)


def osm_doc(body: str, decl: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    return f'{decl}\n<osm version="0.6" generator="test">\n{body}\n</osm>\n'


def node(i: int, v: int | None = None, lon: object = None, lat: object = None, extra: str = "") -> str:
    lon = PT[i][0] if lon is None else lon
    lat = PT[i][1] if lat is None else lat
    ver = f' version="{v}"' if v is not None else ""
    return f'<node id="{i}"{ver} lat="{lat}" lon="{lon}"{extra}/>'


def way(i: int, refs: list[int], v: int | None = None, extra: str = "", hw: str = "primary") -> str:
    ver = f' version="{v}"' if v is not None else ""
    nds = "".join(f'<nd ref="{r}"/>' for r in refs)
    return f'<way id="{i}"{ver}{extra}>{nds}<tag k="highway" v="{hw}"/></way>'


def read(tmp_path: Path, text: str | bytes, name: str = "t.osm"):
    from geo._osmxml import read_ways

    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    with warnings_caught() as caught:
        ways, _ = read_ways(p)
    return ways, [str(w.message) for w in caught]


def warnings_caught():
    import warnings

    from geo.errors import InputWarning

    class Ctx:
        def __enter__(self):  # noqa: ANN204
            self.cm = warnings.catch_warnings(record=True)
            self.list = self.cm.__enter__()
            warnings.simplefilter("always", InputWarning)
            return self.list

        def __exit__(self, *a: object) -> None:
            self.cm.__exit__(*a)
    return Ctx()


def total_m(ways) -> float:  # noqa: ANN001
    return sum(GEOD.line_length(*zip(*w.coords)) for w in ways)


def test_history_file_keeps_the_highest_version_and_leaves_deleted_out(tmp_path: Path) -> None:
    body = "".join([node(1, 1), node(2, 1), node(3, 1, lon=121.3), node(3, 2), node(4, 1),
                    way(5, [1, 2], v=1), way(5, [1, 2, 3], v=2),          # modified: v2 counts
                    way(6, [3, 4], v=1), '<way id="6" version="2" visible="false"/>'])  # deleted in v2
    ways, warns = read(tmp_path, osm_doc(body), "h.osh")
    assert sorted(w.way_id for w in ways) == [5]
    assert total_m(ways) == pytest.approx(geodesic_m(1, 2, 3), abs=1e-6)  # node 3 at its v2 position
    assert len(warns) == 1 and "3 older versions and 1 deleted elements left out" in warns[0]


def test_history_versions_in_any_order(tmp_path: Path) -> None:
    body = "".join([node(1, 1), node(2, 1), node(3, 1), way(5, [1, 2, 3], v=3), way(5, [1, 2], v=2)])
    ways, _ = read(tmp_path, osm_doc(body))
    assert total_m(ways) == pytest.approx(geodesic_m(1, 2, 3), abs=1e-6)


def test_josm_deleted_way_is_not_counted(tmp_path: Path) -> None:
    body = "".join([node(1), node(2), node(3), way(5, [1, 2], extra=' action="modify"'),
                    way(6, [2, 3], extra=' action="delete"')])
    ways, warns = read(tmp_path, osm_doc(body))
    assert [w.way_id for w in ways] == [5]
    assert total_m(ways) == pytest.approx(geodesic_m(1, 2), abs=1e-6)
    assert warns == [f"{tmp_path / 't.osm'}: 1 deleted elements left out (history or edited file): the highest "
                     "version of each id is used, deleted ones not at all"]


def test_duplicate_way_id_is_counted_once_with_a_warning(tmp_path: Path) -> None:
    body = "".join([node(1), node(2), node(3), way(5, [1, 2]), way(5, [1, 2]), way(7, [2, 3])])
    ways, warns = read(tmp_path, osm_doc(body))
    assert sorted(w.way_id for w in ways) == [5, 7]
    assert total_m(ways) == pytest.approx(geodesic_m(1, 2) + geodesic_m(2, 3), abs=1e-6)
    assert warns == [f"{tmp_path / 't.osm'}: 1 repeated ways of the same id and version (way 5): the first of "
                     "each is used, none is counted twice"]


def test_duplicate_node_at_another_position_keeps_the_first_with_a_warning(tmp_path: Path) -> None:
    body = "".join([node(1), node(2), node(2, lon=121.5), node(1), way(5, [1, 2])])
    ways, warns = read(tmp_path, osm_doc(body))
    assert ways[0].coords == [PT[1], PT[2]]
    assert len(warns) == 1 and "1 repeated nodes of the same id and version at another position (node 2)" in warns[0]


@pytest.mark.parametrize("lat,shown", [("31,37", "'31,37'"), ("", "''"), ("0x1f", "'0x1f'"), ("1_0", "'1_0'")])
def test_malformed_latitude_is_an_error_naming_the_node(tmp_path: Path, lat: str, shown: str) -> None:
    body = "".join([node(1), node(2, lat=lat), way(5, [1, 2])])
    with pytest.raises(InputError) as e:
        read(tmp_path, osm_doc(body))
    assert f"node 2 of way 5 has coordinates that are not decimal degrees (lon=121.201, lat={shown})" in e.value.message


def test_latitude_out_of_range_is_an_error(tmp_path: Path) -> None:
    body = "".join([node(1), node(2, lat="931.3"), way(5, [1, 2])])
    with pytest.raises(InputError, match=r"node 2 of way 5 has coordinates out of range \(lon=121.201, lat=931.3\)"):
        read(tmp_path, osm_doc(body))


@pytest.mark.parametrize("where", ["node", "way", "ref"])
def test_ids_beyond_64_bits_are_an_error(tmp_path: Path, where: str) -> None:
    big = 2**63
    body = {"node": node(1) + node(2) + f'<node id="{big}" lat="31.3" lon="121.2"/>' + way(5, [1, 2]),
            "way": node(1) + node(2) + way(big, [1, 2]),
            "ref": node(1) + node(2) + way(5, [1, big])}[where]
    with pytest.raises(InputError, match=r"64-bit"):
        read(tmp_path, osm_doc(body))
    ok = node(1) + node(2) + way(2**63 - 1, [1, 2])
    assert [w.way_id for w in read(tmp_path, osm_doc(ok))[0]] == [2**63 - 1]  # the largest id still reads


def test_gbk_declaration_is_one_clear_error(tmp_path: Path) -> None:
    doc = osm_doc(node(1) + node(2) + way(5, [1, 2]).replace("</way>", '<tag k="name" v="嘉定"/></way>'),
                  decl='<?xml version="1.0" encoding="GBK"?>').encode("gbk")
    with pytest.raises(InputError, match=r"encoding the reader cannot decode.*iconv -f GBK -t UTF-8"):
        read(tmp_path, doc)


def test_huge_comment_is_refused_quickly(tmp_path: Path) -> None:
    doc = osm_doc(node(1) + node(2) + "<!--" + "x" * (30 << 20) + "-->" + way(5, [1, 2]))
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"an XML comment longer than 1 MiB \(near byte"):
        read(tmp_path, doc)
    assert time.monotonic() - t0 < 10
    # a huge tag value (OSM allows 255 characters)
    doc = osm_doc(node(1) + node(2) + way(5, [1, 2]).replace("</way>", f'<tag k="name" v="{"y" * (3 << 20)}"/></way>'))
    with pytest.raises(InputError, match=r"an XML text or attribute value longer than 1 MiB"):
        read(tmp_path, doc)
    # a comment full of angle brackets is caught by the comment count
    doc = osm_doc(node(1) + "<!--" + "<>" * (1 << 20) + "-->" + node(2) + way(5, [1, 2]))
    with pytest.raises(InputError, match=r"an XML comment longer than 1 MiB"):
        read(tmp_path, doc)
    ok = osm_doc(node(1) + "<!-- " + "<b>" * 1000 + " -->" + node(2) + way(5, [1, 2]))
    assert total_m(read(tmp_path, ok)[0]) == pytest.approx(geodesic_m(1, 2), abs=1e-6)


def test_decompressed_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bz2

    nodes = "".join(f'<node id="{i}" lat="31.3" lon="121.2"/>\n' for i in range(10, 60_000))
    doc = osm_doc(node(1) + node(2) + way(5, [1, 2]) + nodes)
    assert len(doc) > 2 << 20
    monkeypatch.setenv("ICV_MAX_DECOMPRESSED_MB", "1")
    with pytest.raises(InputError, match=r"decompresses to more than 1 MiB.*ICV_MAX_DECOMPRESSED_MB"):
        read(tmp_path, bz2.compress(doc.encode()), "big.osm.bz2")
    monkeypatch.setenv("ICV_MAX_DECOMPRESSED_MB", "8")  # raised: the same file reads
    assert [w.way_id for w in read(tmp_path, bz2.compress(doc.encode()), "big.osm.bz2")[0]] == [5]
    monkeypatch.delenv("ICV_MAX_DECOMPRESSED_MB")
    import geo._osmxml as ox_

    monkeypatch.setattr(ox_, "_RATIO_FROM", 1 << 20)  # the ratio rule, without writing 64 MiB
    bomb = _gzip.compress(osm_doc(node(1) + node(2) + way(5, [1, 2])
                                  + '<node id="9" lat="31.3" lon="121.2"/>\n' * 60_000).encode(), compresslevel=9)
    assert len(doc) / len(bomb) > ox_.MAX_RATIO  # repetitive nodes compress >100 times
    with pytest.raises(InputError, match=r"refused as a possible decompression bomb"):
        read(tmp_path, bomb, "bomb.osm.gz")


def test_cli_prints_the_repair_warning(runner, zone_file: Path, tmp_path: Path) -> None:
    p = tmp_path / "dup.osm"
    p.write_text(osm_doc(node(1) + node(2) + way(5, [1, 2]) + way(5, [1, 2])))
    r = runner.invoke(cli, ["roads", "--source", str(p), "--zone", str(zone_file), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "icv: warning: " in r.stderr and "1 repeated ways of the same id and version (way 5)" in r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert [(x["highway"], x["pieces"], x["km"]) for x in rows] == [("primary", 1, round(geodesic_m(1, 2) / 1000, 3)),
                                                                    ("total", 1, round(geodesic_m(1, 2) / 1000, 3))]


# ---------------------------------------------------------------- (c) fleet logs

from test_robustness import _FLEET_HDR, _FLEET_ROWS, FIXTURE_OSM, assert_one_line_error  # noqa: E402


def fleet_run(runner, tmp_path: Path, zone_file: Path, content: str | bytes, name: str = "log.csv",  # noqa: ANN001
              extra: list[str] | None = None):
    log = tmp_path / name
    log.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    r = runner.invoke(cli, ["fleet", "mileage", str(log), "--source", str(FIXTURE_OSM), "--zone", str(zone_file),
                            "--format", "json", *(extra or [])])
    return log, r


def fleet_km(r) -> float:  # noqa: ANN001
    return {row["figure"]: row["value"] for row in json.loads(r.stdout)["tables"]["summary"]}["test mileage km"]


def test_iso_offset_without_minutes_is_an_offset(runner, tmp_path: Path, zone_file: Path) -> None:
    import pandas as pd

    from geo._fleet_io import parse_time_strings

    same = ["2024-03-01T08:00:00+08", "2024-03-01T08:00:00+0800", "2024-03-01T08:00:00+08:00",
            "2024-03-01T00:00:00Z", "2024-03-01T08:00:00"]  # the last: naive = China Standard Time
    assert set(parse_time_strings(pd.Series(same)).tolist()) == {1_709_251_200 * 10**9}
    rows = [_FLEET_ROWS[0].replace("+08:00", "+08"), _FLEET_ROWS[1].replace("2024-03-01T08:00:10+08:00",
                                                                            "2024-03-01T00:00:10Z"),
            _FLEET_ROWS[2].replace("+08:00", "+08")]
    _, r = fleet_run(runner, tmp_path, zone_file, _FLEET_HDR + "\n".join(rows) + "\n")
    assert r.exit_code == 0, r.output
    assert "bad rows" not in r.stderr  # taken as UTC, the +08 rows would run 8 h behind the Z row
    assert fleet_km(r) == pytest.approx(0.19, abs=0.006)


@pytest.mark.parametrize("stamp", ["2100-01-01T00:00:00+08:00", "1970-01-01T00:00:05Z"])
def test_implausible_timestamp_is_a_bad_row_not_a_track_breaker(runner, tmp_path: Path, zone_file: Path,
                                                                stamp: str) -> None:
    odd = f"v1,上汽,{stamp},121.2005,31.3000"
    _, r = fleet_run(runner, tmp_path, zone_file, _FLEET_HDR + "\n".join([_FLEET_ROWS[0], odd, *_FLEET_ROWS[1:]]) + "\n")
    assert r.exit_code == 0, r.output
    assert "icv: 1 bad rows not used (implausible timestamp: 1)" in r.stderr
    assert fleet_km(r) == pytest.approx(0.19, abs=0.006)  # the rest of the track still counts


def test_one_vehicle_id_in_two_enterprises_is_a_reported_conflict(runner, tmp_path: Path, zone_file: Path) -> None:
    rows = [*_FLEET_ROWS, "v1,蔚来,2024-03-01T09:00:00+08:00,121.2000,31.3000"]
    log, r = fleet_run(runner, tmp_path, zone_file, _FLEET_HDR + "\n".join(rows) + "\n")
    assert_one_line_error(r, 2, str(log), "vehicle 'v1' appears under two enterprises, '上汽' (row 1) and '蔚来' (row 4)",
                          "give each enterprise's vehicles distinct ids")


@pytest.mark.parametrize("name,content,frag", [
    ("log.csv", _FLEET_HDR, "the log holds no rows (a header only?)"),
    ("route.gpx", '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
                  '<rte><name>v1</name><rtept lat="31.3" lon="121.2"/><rtept lat="31.3" lon="121.201"/></rte></gpx>',
     "the GPX file holds no track points"),
], ids=["header-only CSV", "GPX with only a route"])
def test_empty_fleet_log_is_exit_2(runner, tmp_path: Path, zone_file: Path, name: str, content: str,
                                   frag: str) -> None:
    log, r = fleet_run(runner, tmp_path, zone_file, content, name)
    assert_one_line_error(r, 2, str(log), frag)


def test_empty_parquet_log_is_exit_2(runner, tmp_path: Path, zone_file: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    log = tmp_path / "log.parquet"
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in ("vehicle_id", "enterprise", "timestamp",
                                                                      "lon", "lat")}), log)
    r = runner.invoke(cli, ["fleet", "mileage", str(log), "--source", str(FIXTURE_OSM), "--zone", str(zone_file)])
    assert_one_line_error(r, 2, str(log), "the log holds no rows")


def test_plain_csv_named_gz_is_one_clear_error(runner, tmp_path: Path, zone_file: Path) -> None:
    log, r = fleet_run(runner, tmp_path, zone_file, _FLEET_HDR + "\n".join(_FLEET_ROWS) + "\n", "log.csv.gz")
    assert_one_line_error(r, 2, str(log), "the file is named .gz but is not gzip-compressed", "rename it to .csv")
    log.write_bytes(_gzip.compress((_FLEET_HDR + "\n".join(_FLEET_ROWS) + "\n").encode()))  # the control
    r = runner.invoke(cli, ["fleet", "mileage", str(log), "--source", str(FIXTURE_OSM), "--zone", str(zone_file),
                            "--format", "json"])
    assert r.exit_code == 0 and fleet_km(r) == pytest.approx(0.19, abs=0.006)


def test_leftover_sidecar_never_labels_a_real_log_synthetic(tmp_path: Path) -> None:
    import hashlib
    import warnings

    from geo._fleet_io import FleetLog, FleetLogWarning, sidecar_path

    log = tmp_path / "log.csv"
    log.write_text(_FLEET_HDR + "\n".join(_FLEET_ROWS) + "\n")
    side = sidecar_path(log)
    side.write_text(json.dumps({"synthetic": True, "log_sha256": "0" * 64}))  # an earlier simulated log's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FleetLogWarning)
        assert FleetLog(log).info.synthetic is False
    assert any("does not belong to this log (its checksum differs)" in str(w.message) for w in caught)
    side.write_text(json.dumps({"synthetic": True}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert FleetLog(log).info.synthetic is False
    side.write_text(json.dumps({"synthetic": True, "log_sha256": hashlib.sha256(log.read_bytes()).hexdigest()}))
    assert FleetLog(log).info.synthetic is True  # its own sidecar still marks it


def test_simulated_csv_is_still_marked_synthetic(runner, tmp_path: Path, zone_file: Path) -> None:
    from geo._fleet_io import FleetLog

    out = tmp_path / "sim.csv"
    r = runner.invoke(cli, ["fleet", "simulate", "--source", str(FIXTURE_OSM), "--zone", str(zone_file),
                            "--vehicles", "1", "--enterprises", "1", "--trips", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert FleetLog(out).info.synthetic is True


def test_formula_ids_are_neutralised_in_fleet_csv_outputs(runner, tmp_path: Path, zone_file: Path) -> None:
    rows = [x.replace("v1,上汽", "=HYPERLINK(\"http://e\"),@SUM(A1)") for x in _FLEET_ROWS]
    out = tmp_path / "out"
    _, r = fleet_run(runner, tmp_path, zone_file, _FLEET_HDR + "\n".join(rows) + "\n",
                     extra=["--format", "csv", "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    with open(out / "mileage_pieces_by_enterprise.csv", newline="", encoding="utf-8") as fh:
        ents = {row["enterprise"] for row in csv.DictReader(fh)}
    assert ents == {"'@SUM(A1)"}
    cells = [c for f in out.glob("*.csv") for row in csv.reader(open(f, newline="", encoding="utf-8")) for c in row]
    assert "'=HYPERLINK(\"http://e\")" in cells
    assert not [c for c in cells if c.lstrip()[:1] in ("=", "@")]


# ---------------------------------------------------------------- (d) zones

import geopandas as gpd  # noqa: E402
import shapely  # noqa: E402
from shapely.geometry import MultiPolygon, Polygon  # noqa: E402


def _bowtie_with_spike(x0: float = 121.19, y0: float = 31.29, s: float = 0.02) -> Polygon:
    """Invalid: a bow-tie with a spike. shapely.make_valid gives GeometryCollection(MultiPolygon, LineString)."""
    pts = [(0, 0), (2, 2), (2, 0), (0, 2), (0, 3), (0, 2), (0, 0)]
    return Polygon([(x0 + s * x, y0 + s * y) for x, y in pts])


def test_polygonal_parts_keep_nested_multipolygons() -> None:
    from geo.zones import polygonal_parts

    bad = _bowtie_with_spike(0, 0, 1)
    fixed = shapely.make_valid(bad)
    assert fixed.geom_type == "GeometryCollection" and fixed.geoms[0].geom_type == "MultiPolygon"
    kept = polygonal_parts(fixed)
    assert kept.geom_type == "MultiPolygon" and kept.area == pytest.approx(2.0)  # two unit triangles
    # the old rule (top-level Polygons only) kept nothing
    assert [g for g in shapely.get_parts(fixed) if g.geom_type == "Polygon"] == []


def test_zone_repaired_in_projection_keeps_its_area_and_its_roads() -> None:
    from geo import sources, stats

    net = sources.load_network(str(FIXTURE_OSM))
    bad = _bowtie_with_spike()
    st_bad = stats.road_stats(net.roads, bad)
    # independently: plain shapely in UTM 51N, the repaired zone's polygons kept
    utm = net.roads.to_crs(32651)
    zone_p = gpd.GeoSeries([bad], crs=4326).to_crs(32651).iloc[0]
    zone_p = shapely.union_all([g for g in shapely.get_parts(shapely.make_valid(zone_p).geoms[0])])
    expect_km = float(sum(shapely.length(shapely.intersection(utm.geometry.values, zone_p)))) / 1000
    assert expect_km > 0.3
    assert st_bad.figure("carriageway_km").value == pytest.approx(expect_km, rel=1e-9)  # was 0 km


def _zone_file(tmp_path: Path, geom, name: str = "z.geojson") -> Path:  # noqa: ANN001
    """A one-feature GeoJSON written as plain text (no GDAL: the name is taken literally here too)."""
    f = tmp_path / name
    f.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "z"}, "geometry": shapely.geometry.mapping(geom)}]}))
    return f


def test_naive_antimeridian_zone_is_refused(runner, tmp_path: Path) -> None:
    f = _zone_file(tmp_path, Polygon([(179, -17), (-179, -17), (-179, -16), (179, -16)]))
    r = runner.invoke(cli, ["zone", "show", str(f)])
    assert_one_line_error(r, 2, "z.geojson feature #0 (z): the outline crosses the antimeridian (an edge runs from "
                                "lon 179 to -179", "ogr2ogr -wrapdateline")
    # split at 180°, it is refused too (one projection cannot hold both sides), never measured as 2.3 M km²
    split = MultiPolygon([Polygon([(179, -17), (180, -17), (180, -16), (179, -16)]),
                          Polygon([(-180, -17), (-179, -17), (-179, -16), (-180, -16)])])
    f2 = _zone_file(tmp_path, split, "split.geojson")
    r = runner.invoke(cli, ["zone", "show", str(f2)])
    assert_one_line_error(r, 2, "the zone lies on both sides of the antimeridian", "give each side as a zone")
    # each side alone has the right area (pyproj geodesic area)
    east = _zone_file(tmp_path, split.geoms[0], "east.geojson")
    r = runner.invoke(cli, ["zone", "show", str(east), "--format", "json"])
    assert r.exit_code == 0, r.output
    geodesic = abs(GEOD.geometry_area_perimeter(split.geoms[0])[0]) / 1e6
    assert json.loads(r.stdout)["rows"][0]["area_km2"] == pytest.approx(geodesic, rel=1e-3)


def test_whole_world_zone_is_one_clear_error(runner, tmp_path: Path) -> None:
    f = _zone_file(tmp_path, box(-180, -90, 180, 90))
    for args in (["zone", "show", str(f)], ["stats", "--source", str(FIXTURE_OSM), "--zone", str(f)]):
        r = runner.invoke(cli, args)
        assert_one_line_error(r, 2, "the outline spans 360° of longitude and 180° of latitude (at most 60° each)")


def _two_layer_gpkg(tmp_path: Path) -> Path:
    f = tmp_path / "layers.gpkg"
    gpd.GeoDataFrame({"name": ["far"]}, geometry=[box(100, 10, 100.01, 10.01)], crs=4326).to_file(f, layer="far")
    gpd.GeoDataFrame({"name": ["near"]}, geometry=[box(121.19, 31.29, 121.22, 31.36)], crs=4326).to_file(
        f, layer="near")
    return f


def test_multi_layer_file_needs_layer(runner, tmp_path: Path) -> None:
    f = _two_layer_gpkg(tmp_path)
    r = runner.invoke(cli, ["zone", "show", str(f)])
    assert_one_line_error(r, 2, "layers.gpkg: the file holds 2 layers (far, near)", "--layer NAME")
    out = tmp_path / "zones"
    r = runner.invoke(cli, ["zone", "import", str(f), "--crs", "wgs84", "--layer", "near", "--name", "near",
                            "--out-dir", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    z = gpd.read_file(out / "near.geojson")
    assert z.geometry.iloc[0].bounds == pytest.approx((121.19, 31.29, 121.22, 31.36))
    r = runner.invoke(cli, ["zone", "import", str(f), "--crs", "wgs84", "--layer", "nope", "--out-dir", str(out)])
    assert_one_line_error(r, 2, "no layer 'nope' in the file (layers: far, near)")


@pytest.mark.parametrize("name", ["a!b.geojson", "x;y.geojson", "new\nline.geojson", "zip:a.geojson"])
def test_zone_path_is_taken_literally(runner, tmp_path: Path, name: str) -> None:
    # a decoy the virtual-path reading would open instead (b.geojson for a!b.geojson)
    _zone_file(tmp_path, box(100, 10, 100.01, 10.01), "b.geojson")
    f = _zone_file(tmp_path, box(121.19, 31.29, 121.22, 31.36), name)
    r = runner.invoke(cli, ["zone", "show", str(f), "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)["meta"]
    assert meta["bounds (lon/lat)"] == "121.19000, 31.29000, 121.22000, 31.36000"


def test_shapefile_with_odd_name_reads_its_sidecars(runner, tmp_path: Path) -> None:
    f = tmp_path / "a!b.shp"
    gpd.GeoDataFrame({"name": ["z"]}, geometry=[box(121.19, 31.29, 121.22, 31.36)], crs=4326).to_file(
        tmp_path / "plain.shp")
    for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        if (tmp_path / f"plain{ext}").exists():
            (tmp_path / f"plain{ext}").rename(tmp_path / f"a!b{ext}")
    r = runner.invoke(cli, ["zone", "show", str(f), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["meta"]["bounds (lon/lat)"] == "121.19000, 31.29000, 121.22000, 31.36000"


# ---------------------------------------------------------------- (e) outputs and options

def test_output_onto_an_input_is_refused(runner, tmp_path: Path, zone_file: Path) -> None:
    src = tmp_path / "extract.osm"
    src.write_bytes(FIXTURE_OSM.read_bytes())
    before = src.read_bytes()
    link = tmp_path / "link.osm"
    link.symlink_to(src)
    hard = tmp_path / "hard.osm"
    os.link(src, hard)
    for out in (src, tmp_path / "." / "extract.osm", link, hard):
        r = runner.invoke(cli, ["roads", "--source", str(src), "--zone", str(zone_file), "-o", str(out)])
        assert_one_line_error(r, 5, f"the output {out} is the input {src}: writing it would destroy the input")
        assert src.read_bytes() == before
    zone_before = zone_file.read_bytes()
    r = runner.invoke(cli, ["roads", "--source", str(src), "--zone", str(zone_file), "-o", str(zone_file)])
    assert_one_line_error(r, 5, "is the input")
    assert zone_file.read_bytes() == zone_before
    log = tmp_path / "log.csv"
    log.write_text(_FLEET_HDR + "\n".join(_FLEET_ROWS) + "\n")
    r = runner.invoke(cli, ["fleet", "mileage", str(log), "--source", str(src), "--zone", str(zone_file),
                            "--format", "csv", "-o", str(log)])
    assert_one_line_error(r, 5, "is the input")
    assert log.read_text().startswith(_FLEET_HDR)
    tr = tmp_path / "test_roads.csv"
    tr.write_text("name,ref,from,to,note\nA Road,,,,\n")
    r = runner.invoke(cli, ["map", "coverage", "--source", str(src), "--zone", str(zone_file), "--test-roads", str(tr),
                            "-o", str(tr)])
    assert_one_line_error(r, 5, "is the input")
    # the control: another name is written
    r = runner.invoke(cli, ["roads", "--source", str(src), "--zone", str(zone_file), "-o", str(tmp_path / "r.txt")])
    assert r.exit_code == 0, r.output


def test_255_byte_output_name_is_written(runner, tmp_path: Path, zone_file: Path) -> None:
    for name in ("r" * 250 + ".json", "路" * 83 + ".json", "a." * 127 + "j"):
        assert len(name.encode()) <= 255
        out = tmp_path / name
        r = runner.invoke(cli, ["roads", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--format", "json",
                                "-o", str(out)])
        assert r.exit_code == 0, r.output
        assert json.loads(out.read_text())["rows"][-1]["highway"] == "total"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporary file left


def test_stdout_to_dev_full_is_one_line_exit_5(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    zone = tmp_path / "z.geojson"
    zone.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                    "geometry": shapely.geometry.mapping(box(121.19, 31.29, 121.22, 31.36))}]}))
    # a table (emit) and a status line (`cached ...`, click.echo)
    for args in (["zone", "list"], ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone), "--cache-dir",
                                    str(tmp_path / "c")]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([sys.executable, "-c", "from cli import main; main()", *args], cwd=root,
                               stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert p.returncode == 5, p.stderr
        assert p.stderr.endswith("icv: error: cannot write the output to stdout (No space left on device). "
                                 "Free some space, or give -o FILE.\n"), p.stderr
        assert p.stderr.count("icv: error:") == 1 and "Traceback" not in p.stderr and "Exception" not in p.stderr


@pytest.mark.parametrize("args,frag", [
    (["fleet", "simulate", "--noise", "nan", "-o", "x.csv"], "Invalid value for '--noise': nan is not a finite number."),
    (["fleet", "simulate", "--noise", "inf", "-o", "x.csv"], "Invalid value for '--noise': inf is not a finite number."),
    (["map", "coverage", "--buffer-m", "inf"], "Invalid value for '--buffer-m': inf is not a finite number."),
    (["map", "coverage", "--cell-size-m", "nan"], "Invalid value for '--cell-size-m': nan is not a finite number."),
    (["fleet", "mileage", "log.csv", "--scheduler", "local:0"], "'local:0' is not 'local', 'local:N' (N >= 1 workers)"),
    (["fleet", "mileage", "log.csv", "--scheduler", "junk://x"], "'junk://x' is not 'local', 'local:N'"),
])
def test_bad_numbers_and_schedulers_are_usage_errors(runner, tmp_path: Path, zone_file: Path, args: list[str],
                                                     frag: str) -> None:
    r = runner.invoke(cli, [*args, "--source", str(FIXTURE_OSM), "--zone", str(zone_file)])
    assert r.exit_code == 2, r.output
    assert frag in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("value", ["local", "local:2", "tcp://10.0.0.1:8786", "tls://sched.example:8786",
                                   "inproc://192.0.2.2/32642/1"])
def test_good_scheduler_values_pass(value: str) -> None:
    from cli import _scheduler

    assert _scheduler(None, None, value) == value  # type: ignore[arg-type]


# ---------------------------------------------------------------- (e) the cache

def _pulled(runner, tmp_path: Path, zone_file: Path) -> tuple[Path, Path, Path]:  # noqa: ANN001
    cache = tmp_path / "cache"
    r = runner.invoke(cli, ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    return cache, next(cache.glob("roads-*.parquet")), next(cache.glob("roads-*.json"))


def _roads_from_cache(runner, zone_file: Path, cache: Path):  # noqa: ANN001
    return runner.invoke(cli, ["roads", "--zone", str(zone_file), "--cache-dir", str(cache), "--format", "json"])


@pytest.mark.parametrize("doc", ["[1, 2]", "\"text\"", "null", "3"])
def test_sidecar_that_is_json_but_not_an_object(runner, tmp_path: Path, zone_file: Path, doc: str) -> None:
    cache, _, side = _pulled(runner, tmp_path, zone_file)
    side.write_text(doc)
    r = _roads_from_cache(runner, zone_file, cache)
    assert_one_line_error(r, 4, str(side), "the cache sidecar is JSON but not an object", "icv pull --force")
    r = runner.invoke(cli, ["pull", "--source", str(FIXTURE_OSM), "--zone", str(zone_file), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output  # pulled again, not crashed
    assert isinstance(json.loads(side.read_text()), dict)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_cache_folder_is_still_readable(runner, tmp_path: Path, zone_file: Path) -> None:
    cache, _, _ = _pulled(runner, tmp_path, zone_file)
    for lock in cache.glob(".*.lock"):
        lock.unlink()
    cache.chmod(0o555)
    try:
        r = _roads_from_cache(runner, zone_file, cache)
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["pull", "--force", "--source", str(FIXTURE_OSM), "--zone", str(zone_file),
                                "--cache-dir", str(cache)])
        assert_one_line_error(r, 4, "cannot write the cache's lock file (Permission denied)")
    finally:
        cache.chmod(0o755)


def test_read_only_cache_folder_through_the_lock_logic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as above for root (which ignores permissions): os.open fails as on a read-only mount."""
    import errno as _errno

    from geo import _cache
    from geo.errors import CacheError

    real_open = os.open

    def ro_open(path, flags, *a):  # noqa: ANN001, ANN202
        if str(path).endswith(".lock"):
            raise OSError(_errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a)
    monkeypatch.setattr(os, "open", ro_open)
    with _cache._lock(tmp_path, "k", shared=True):
        pass  # a reader goes on without the lock
    with pytest.raises(CacheError, match=r"cannot write the cache's lock file \(Read-only file system\)"):
        with _cache._lock(tmp_path, "k"):
            pass


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
@pytest.mark.parametrize("which", ["data", "sidecar", "lock"])
def test_cache_file_replaced_by_a_fifo_or_dev_zero_does_not_hang(runner, tmp_path: Path, zone_file: Path,
                                                                  kind: str, which: str) -> None:
    cache, data, side = _pulled(runner, tmp_path, zone_file)
    target = {"data": data, "sidecar": side, "lock": next(cache.glob(".*.lock"))}[which]
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    t0 = time.monotonic()
    r = _roads_from_cache(runner, zone_file, cache)
    assert time.monotonic() - t0 < 20
    frag = {"data": "the cached data is not a regular file", "sidecar": "the cache sidecar is not a regular file",
            "lock": "the cache's lock file is not a regular file (a pipe, a device or a link)"}[which]
    assert_one_line_error(r, 4, str(target), frag)


def test_overpass_cache_entry_replaced_by_a_fifo_is_fetched_again(serve, tmp_path: Path) -> None:
    s = serve(lambda h: send(h, json.dumps(overpass_json()).encode()))
    _fetch(s.url, tmp_path)
    entry = next((tmp_path / "overpass").glob("*.json"))
    entry.unlink()
    os.mkfifo(entry)
    t0 = time.monotonic()
    ways, info = _fetch(s.url, tmp_path)
    assert time.monotonic() - t0 < 20 and [w.way_id for w in ways] == [5] and not info.from_cache
    assert len(s.requests) == 2


# ---------------------------------------------------------------- fuzz: fleet reader (CSV, GPX), Overpass JSON

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from geo.errors import IcvError  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
_cell = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-1", "0", "1e400", "0x1f", "31,37", "=1+1", "@x", "\t-2", "嘉定",
                     "2024-03-01T08:00:00+08", "2024-03-01T08:00:00Z", "2100-01-01T00:00:00", "1709251200",
                     "1709251200000", "yesterday", "\"", "\x1b[2J", "121.2", "31.3"]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["vehicle_id", "enterprise", "timestamp", "lon", "lat", "speed"])
    w.writerows(rows)
    return buf.getvalue()


def _consume(path: Path) -> int:
    import warnings

    from geo._fleet_io import NAT, FleetLog

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = FleetLog(path, chunk_rows=7)
        n = 0
        for ch in log.chunks():
            assert len(ch.lon) == len(ch.lat) == len(ch.t_ns) == len(ch.vehicle) == len(ch)
            assert ch.t_ns.dtype == np.int64 and ch.lon.dtype == np.float64
            ok = ch.t_ns != NAT
            assert (ch.t_ns[ok] > -2**62).all()
            assert ch.vehicle.max(initial=-1) < len(ch.vehicle_names)
            n += len(ch)
    return n


import numpy as np  # noqa: E402


@FUZZ
@given(rows=st.lists(st.lists(_cell, min_size=0, max_size=8), max_size=25), raw_tail=st.binary(max_size=20))
def test_fuzz_fleet_csv_reader(tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]],
                               raw_tail: bytes) -> None:
    p = tmp_path_factory.mktemp("fz") / "log.csv"
    p.write_bytes(_csv_text(rows).encode("utf-8") + raw_tail)
    try:
        n = _consume(p)
    except IcvError as e:
        assert "\n" not in e.message and e.exit_code == 2
        return
    assert 0 <= n <= len(rows) + raw_tail.count(b"\n") + 1


_attr = st.one_of(_cell, st.none())


@st.composite
def _gpx(draw) -> str:  # noqa: ANN001
    from xml.sax.saxutils import escape, quoteattr

    parts = ['<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">']
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["trk", "rte", "wpt"]))
        if kind == "wpt":
            parts.append(f'<wpt lat={quoteattr(draw(_cell))} lon={quoteattr(draw(_cell))}/>')
            continue
        parts.append(f"<{kind}>")
        if draw(st.booleans()):
            parts.append(f"<name>{escape(draw(_cell))}</name>")
        if draw(st.booleans()):
            parts.append(f"<type>{escape(draw(_cell))}</type>")
        pt = "trkpt" if kind == "trk" else "rtept"
        if kind == "trk":
            parts.append("<trkseg>")
        for _ in range(draw(st.integers(0, 4))):
            lat, lon = draw(_attr), draw(_attr)
            attrs = (f" lat={quoteattr(lat)}" if lat is not None else "") + (f" lon={quoteattr(lon)}" if lon is not None
                                                                                else "")
            t = draw(_attr)
            parts.append(f"<{pt}{attrs}>" + (f"<time>{escape(t)}</time>" if t is not None else "") + f"</{pt}>")
        if kind == "trk":
            parts.append("</trkseg>")
        parts.append(f"</{kind}>")
    parts.append("</gpx>")
    text = "".join(parts)
    cut = draw(st.integers(0, 3))
    return text[: len(text) - cut * 7] if cut else text  # sometimes truncated


@FUZZ
@given(doc=_gpx())
def test_fuzz_fleet_gpx_reader(tmp_path_factory: pytest.TempPathFactory, doc: str) -> None:
    p = tmp_path_factory.mktemp("fz") / "log.gpx"
    p.write_text(doc, encoding="utf-8")
    try:
        n = _consume(p)
    except IcvError as e:
        assert "\n" not in e.message and e.exit_code == 2
        return
    assert n == doc.count("<trkpt")


_num = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**20, 10**20),
                 st.sampled_from([31.3, 121.2, 931.0, -91.0, 180.0001]), st.text(max_size=5), st.none(), st.booleans())
_element = st.one_of(
    st.fixed_dictionaries({"type": st.just("node"), "id": st.one_of(st.integers(-5, 5), st.integers(2**63 - 2, 2**64),
                                                                    st.text(max_size=3)),
                           "lat": st.one_of(st.floats(31.30, 31.31), _num),
                           "lon": st.one_of(st.floats(121.20, 121.21), _num)}),
    st.fixed_dictionaries({"type": st.just("way"), "id": st.integers(1, 5),
                           "nodes": st.one_of(st.lists(st.integers(-2, 6), max_size=5), st.text(max_size=3)),
                           "tags": st.one_of(st.just({"highway": "primary"}),
                                             st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3),
                                                                                            st.integers()), max_size=2))}),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4)),
                 lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=3), c, max_size=3)),
                 max_leaves=8),
)
_answer = st.one_of(
    st.builds(lambda els: {"version": 0.6, "osm3s": {"timestamp_osm_base": "2024-02-29T23:59:59Z"}, "elements": els},
              st.lists(_element, max_size=8)),
    st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=4)),
                 lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
                 max_leaves=10),
)


@pytest.fixture(scope="module")
def fuzz_server():
    holder: dict[str, bytes] = {"body": b"{}"}
    s = Server(lambda h: send(h, holder["body"]))
    yield s, holder
    s.close()


@FUZZ
@given(doc=_answer, nan=st.booleans())
def test_fuzz_overpass_json_reader(fuzz_server, doc: object, nan: bool) -> None:
    import math

    server, holder = fuzz_server
    body = json.dumps(doc)
    if nan:  # NaN and Infinity are what Python's json writes for floats JSON has no word for
        body = body.replace("31.3", "NaN", 1).replace("121.2", "Infinity", 1)
    holder["body"] = body.encode()
    try:
        ways, _ = _fetch(server.url, None, timeout=5)
    except IcvError as e:
        assert "\n" not in e.message and e.exit_code in (2, 3)
        return
    for w in ways:  # whatever was accepted is real OSM data
        assert len(w.node_ids) == len(w.coords) >= 2
        assert all(math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90 for x, y in w.coords)


def test_road_on_a_shared_subzone_border_is_counted_once(tmp_path: Path) -> None:
    from geo import sources, stats, zones

    # a road running north along lon 121.2, the border of two sub-zones, and one crossing it
    pts = {1: (121.2, 31.30), 2: (121.2, 31.31), 3: (121.195, 31.305), 4: (121.205, 31.305)}
    body = "".join(f'<node id="{i}" lat="{la}" lon="{lo}"/>' for i, (lo, la) in pts.items())
    body += way(5, [1, 2]) + way(6, [3, 4], hw="secondary")
    src = tmp_path / "border.osm"
    src.write_text(osm_doc(body))
    # the border shares the road's nodes, as OSM boundaries drawn along roads do
    west = Polygon([(121.19, 31.29), (121.2, 31.29), (121.2, 31.30), (121.2, 31.31), (121.2, 31.32), (121.19, 31.32)])
    east = Polygon([(121.2, 31.29), (121.21, 31.29), (121.21, 31.32), (121.2, 31.32), (121.2, 31.31), (121.2, 31.30)])
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": n}, "geometry": shapely.geometry.mapping(b)}
        for n, b in (("west", west), ("east", east))]}
    zf = tmp_path / "two.geojson"
    zf.write_text(json.dumps(fc))
    zone = zones.load_zone(zf)
    net = sources.load_network(str(src), zone=zone)
    st = stats.road_stats(net.roads, zone)
    utm = net.roads.to_crs(32651).set_index(net.roads["highway"]).geometry.length  # plain shapely, metres
    border_km, crossing_km = utm["primary"] / 1000, utm["secondary"] / 1000
    km = {n: st.subzones[n].figure("carriageway_km").value for n in ("west", "east")}
    assert st.figure("carriageway_km").value == pytest.approx(border_km + crossing_km, rel=1e-9)
    assert km["west"] == pytest.approx(border_km + crossing_km / 2, abs=1e-4)  # the border road: first sub-zone
    assert km["east"] == pytest.approx(crossing_km / 2, abs=1e-4)  # was border_km + crossing_km / 2
    assert km["west"] + km["east"] == pytest.approx(st.figure("carriageway_km").value, rel=1e-9)
