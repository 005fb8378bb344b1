"""The maps as a person sees them: headless Chromium on the offline pages.

Chromium is driven through its DevTools protocol over ``--remote-debugging-pipe``
(JSON messages on file descriptors 3 and 4): the same protocol as over a
websocket, with no port opened and no extra package. Every request the page
makes is recorded (``Network.requestWillBeSent``), and the browser cannot reach
another machine anyway (``--host-resolver-rules`` maps every host to nothing).

Skipped with a reason when Debian's ``chromium`` is not installed
(``apt-get install -y chromium``) or the offline assets are missing
(``python -m geo._offline install``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMG_DIR = ROOT / "docs" / "img"

#: Flags from the machine notes, plus no DNS at all: nothing can leave the machine.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def chromium_path() -> str | None:
    """Debian's ``chromium`` (or ``$ICV_CHROMIUM``), if installed."""
    return os.environ.get("ICV_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(RuntimeError):
    """A DevTools command failed or timed out."""


class Chromium:
    """A headless Chromium driven over the DevTools pipe, with one page session.

    Parameters
    ----------
    width, height
        The page viewport in CSS pixels.
    timeout
        Seconds to wait for any one command or event.
    """

    def __init__(self, width: int = 1000, height: int = 700, timeout: float = 60.0) -> None:
        exe = chromium_path()
        if not exe:
            raise FileNotFoundError("chromium not found")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="icv-chromium-")
        # our ends stay close-on-exec; the child's are dup'ed onto 3 (commands in) and 4 (replies out)
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        import fcntl

        hi_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(res_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(res_w)

        def child_fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            close_fds=False, preexec_fn=child_fds,
        )
        os.close(hi_r)
        os.close(hi_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._cv = threading.Condition()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session = self._attach(width, height)

    # -- protocol
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._res_r, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._replies[msg["id"]] = msg
                        self._cv.notify_all()
                else:
                    self.log.append(msg)
                    self.events.put(msg)
                    if msg.get("method") == "Page.javascriptDialogOpening":  # never leave a dialog blocking
                        self.send("Page.handleJavaScriptDialog", {"accept": True}, wait=False,
                                  session=msg.get("sessionId"))

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = "",
             wait: bool = True) -> dict[str, Any]:
        """Send one command (to the page session by default) and return its result."""
        with self._cv:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        sid = self.session if session == "" else session
        if sid:
            msg["sessionId"] = sid
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        if not wait:
            return {}
        deadline = time.monotonic() + self.timeout
        with self._cv:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"{method}: no reply in {self.timeout} s")
                self._cv.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"no {method} event in {self.timeout} s")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev.get("method") == method:
                return ev

    def _attach(self, width: int, height: int) -> str:
        self.session = None  # type: ignore[assignment]
        targets = self.send("Target.getTargets", session=None)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        sid = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                        session=None)["sessionId"]
        self.session = sid
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        # record alert() calls even if a dialog never shows
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source":
                  "window.__icvAlerts=[];['alert','confirm','prompt'].forEach(function(n){"
                  "window[n]=function(m){window.__icvAlerts.push(n+':'+String(m));};});"})
        return sid

    # -- page
    def open(self, path: Path) -> float:
        """Navigate to a local file and wait for its load event; returns seconds to load."""
        while not self.events.empty():
            self.events.get_nowait()
        t0 = time.perf_counter()
        self.send("Page.navigate", {"url": path.resolve().as_uri()})
        self.wait_event("Page.loadEventFired")
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True)
        return time.perf_counter() - t0

    def evaluate(self, expr: str, *, await_promise: bool = False) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                             "awaitPromise": await_promise})
        if "exceptionDetails" in res:
            raise CdpError(f"page error: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(base64.b64decode(data))
        os.replace(tmp, path)
        return path

    # -- what happened
    def console_errors(self) -> list[str]:
        out = []
        for ev in self.log:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def requests(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.log if ev.get("method") == "Network.requestWillBeSent"]

    def dialogs(self) -> list[str]:
        return [ev["params"].get("message", "") for ev in self.log
                if ev.get("method") == "Page.javascriptDialogOpening"]

    def close(self) -> None:
        try:
            self.send("Browser.close", session=None, wait=False)
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            for fd in (self._cmd_w, self._res_r):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._stderr.close()
            self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# JS run in the page: what was drawn. A path counts when it has a non-empty
# outline inside the viewport; a piece shorter than a pixel is a dot
# ("M378 475L378 475", drawn by its round line cap), so a zero-size box counts.
DRAWN_JS = """
(function (cls) {
  var vw = window.innerWidth, vh = window.innerHeight, n = 0, all = 0;
  document.querySelectorAll('path.' + cls).forEach(function (p) {
    all++;
    var b = p.getBoundingClientRect(), d = p.getAttribute('d') || '';
    if (/^M-?[0-9]/.test(d) && d !== 'M0 0' && b.right >= 0 && b.bottom >= 0 && b.left <= vw && b.top <= vh) n++;
  });
  return {drawn: n, paths: all};
})
"""

OPEN_ALL_JS = """
(function () {
  var opened = 0;
  Object.keys(window).filter(function (k) { return k.indexOf('data_layer_') === 0; }).forEach(function (k) {
    window[k].eachLayer(function (l) {
      if (l.getTooltip()) { l.openTooltip(); opened++; l.closeTooltip(); }
      if (l.getPopup()) { l.openPopup(); opened++; l.closePopup(); }
    });
  });
  return opened;
})()
"""


def _is_local(url: str) -> bool:
    return url.startswith(("file://", "data:", "about:", "blob:", "http://127.0.0.1", "http://localhost"))


@pytest.fixture(scope="module")
def browser():
    if not chromium_path():
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium); the browser checks need it")
    from geo._offline import ASSETS, asset_dir, asset_path
    from geo.errors import OutputError

    try:
        for a in ASSETS.values():
            if a.package == "leaflet":
                asset_path(a)
    except OutputError:
        pytest.skip(f"offline map assets not installed in {asset_dir()}: run `python -m geo._offline install`")
    b = Chromium(1000, 700)
    yield b
    b.close()


@pytest.fixture(scope="module")
def jiading(shared_data):
    from geo.sources import load_network
    from geo.zones import load_zone

    zone = load_zone("jiading")
    return zone, load_network(shared_data / "jiading_osm_signalized.osm", zone=zone)


pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_offline_coverage_map_draws_roads_without_errors_or_requests(browser, jiading, tmp_path):
    from geo import maps

    from geo.testroads import load_test_roads, match_test_roads

    zone, net = jiading
    # a test-road set of the eight most frequent street names, so both styles show
    names = net.roads["name"].dropna().value_counts().index[:8].tolist()
    (tmp_path / "set.csv").write_text("name\n" + "\n".join(names) + "\n", encoding="utf-8")
    ts = load_test_roads(tmp_path / "set.csv")
    match = match_test_roads(net.roads, ts)
    assert 0 < match.mask.sum() < len(net.roads)
    bm = maps.resolve_basemap("osm", offline=True)
    m = maps.coverage_map(net.roads, zone.geometry, zone_name=zone.name, subzones=zone.subzones,
                          test_mask=match.mask, test_set_label="set.csv (the 8 most frequent street names)",
                          provenance=net.provenance, basemap=bm)
    out = maps.save_map(m, tmp_path / "coverage.html", offline=True)
    page = out.read_text(encoding="utf-8")
    layers = maps.extract_layers(page)
    n_roads = sum(len(v["rows"]) for v in layers.values() if v["kind"] == "line")
    assert n_roads == len(net.roads)

    browser.log.clear()
    browser.open(out)
    got = browser.evaluate(DRAWN_JS + "('icv-road')")
    assert got["paths"] == n_roads, "one SVG path per road piece"
    # drawn in the view = the pieces that cross the view's bounds (shapely on the source geometries)
    import shapely

    w, s_, e, n = browser.evaluate("(function(){var k=Object.keys(window).find(k=>k.indexOf('map_')===0);"
                                   "var b=window[k].getBounds();return [b.getWest(),b.getSouth(),b.getEast(),"
                                   "b.getNorth()];})()")
    expect = int(shapely.intersects(net.roads.geometry.values, shapely.box(w, s_, e, n)).sum())
    assert expect > 0.5 * n_roads
    assert abs(got["drawn"] - expect) <= 2 + 0.02 * expect, (got, expect)
    assert browser.evaluate(DRAWN_JS + "('icv-other')")["paths"] == int((~match.mask).sum())
    assert browser.evaluate(DRAWN_JS + "('icv-zone')")["drawn"] == 1
    assert browser.evaluate(DRAWN_JS + "('icv-cell')")["drawn"] > 0
    assert browser.console_errors() == []
    leaving = [u for u in browser.requests() if not _is_local(u)]
    assert leaving == [], leaving
    # the page's first road, as Leaflet holds it, is where Python put it (the JS decoder agrees)
    first = browser.evaluate("""(function(){var ks=Object.keys(window).filter(k=>k.indexOf('data_layer_')===0);
        for (var k of ks) { var ls = window[k].getLayers(); if (ls[0] && ls[0] instanceof L.Polyline &&
          !(ls[0] instanceof L.Polygon)) { var ll = ls[0].getLatLngs(); ll = Array.isArray(ll[0]) ? ll[0] : ll;
          return [ll[0].lng, ll[0].lat]; } } return null; })()""")
    line_layers = [v for v in layers.values() if v["kind"] == "line"]
    x0, y0 = line_layers[0]["geoms"][0][0][:2]
    assert first == pytest.approx([x0 / 1e5, y0 / 1e5], abs=1e-9)
    browser.screenshot(IMG_DIR / "coverage.png")


def test_hostile_road_name_is_inert_in_the_browser(browser, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString, box

    from geo import maps

    evil = "<img src=x onerror=alert(1)>"
    roads = gpd.GeoDataFrame(
        {"osm_way_ids": [[1], [2]], "highway": ["primary", "secondary"], "name": [evil, "ok"],
         "name_en": [None, evil], "name_zh": [None, None], "ref": [evil, None], "length_m": [1000.0, 900.0]},
        geometry=[LineString([(121.20, 31.30), (121.21, 31.30)]), LineString([(121.20, 31.301), (121.21, 31.302)])],
        crs=4326)
    zone = box(121.19, 31.29, 121.22, 31.31)
    m = maps.coverage_map(roads, zone, zone_name=evil, provenance={"source": evil, "source_kind": "test"},
                          basemap=maps.resolve_basemap("none", offline=True))
    out = maps.save_map(m, tmp_path / "evil.html", offline=True)
    browser.log.clear()
    browser.open(out)
    opened = browser.evaluate(OPEN_ALL_JS)
    assert opened >= 4  # zone, two roads, cells
    # hover the first road: its tooltip shows the name as text
    text = browser.evaluate("""(function(){var t=null;Object.keys(window).filter(k=>k.indexOf('data_layer_')===0)
        .forEach(function(k){window[k].eachLayer(function(l){ if (!t && l.getTooltip() && l instanceof L.Polyline &&
        !(l instanceof L.Polygon)) { l.openTooltip(); t = l.getTooltip().getElement().textContent; }});});
        return t;})()""")
    assert evil in text
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    assert browser.evaluate("window.__icvAlerts") == []
    assert browser.dialogs() == []
    assert browser.console_errors() == []


def test_mileage_share_map_screenshot(browser, tmp_path):
    from geo import maps
    from geo.zones import load_zone

    try:
        districts = load_zone("shanghai_districts").subzones
    except Exception as e:  # noqa: BLE001 - the zone data is another module's
        pytest.skip(f"shanghai_districts zone not available: {e}")
    try:
        shares = maps.reported_mileage_shares(districts)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"reported figures not available: {e}")
    m = maps.mileage_map(shares, districts, basemap=maps.resolve_basemap("osm", offline=True))
    out = maps.save_map(m, tmp_path / "mileage_share.html", offline=True)
    browser.log.clear()
    browser.open(out)
    got = browser.evaluate(DRAWN_JS + "('icv-district')")
    assert got["paths"] == len(districts) and got["drawn"] == len(districts)
    assert browser.evaluate(DRAWN_JS + "('icv-figure')")["drawn"] == sum(
        d.figure is not None for d in shares.districts)
    assert browser.console_errors() == []
    assert [u for u in browser.requests() if not _is_local(u)] == []
    browser.screenshot(IMG_DIR / "mileage_share.png")
