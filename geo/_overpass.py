"""Private I/O: pull road ways from an Overpass API server through OSMnx.

OSMnx builds the query (``way[...](poly:...);>;``), caches answers and turns
them into a graph; this module configures it for one pull and makes its HTTP
side dependable:

* every HTTP answer passes through a requests *response hook* before OSMnx
  sees it. A server fault (HTTP 429, 502, 503, 504; a 200 whose body is
  truncated or not JSON; a 200 whose ``remark`` says the query did not finish)
  is retried a bounded number of times with exponential backoff, honouring
  ``Retry-After`` (or, on a 429 without it, the wait that ``/status``
  announces), capped at :data:`MAX_WAIT_S`. OSMnx therefore only ever sees,
  parses and caches a good answer, and its own unbounded 55-second retry loop
  for 429/504 never runs;
* the body is read inside the hook against a deadline, so a server that
  trickles its answer ends in a clear error instead of a read that never ends;
* connection refused, time-outs and unknown host names become one
  :class:`~geo.errors.SourceUnavailableError` line that names the server and
  the offline alternatives.

Time-outs are not retried: a server too slow to answer once will not be
faster a few seconds later, and each try would cost a full ``timeout``.

``ox.settings`` is process-global, so a pull holds a module lock and restores
every setting it changed when it ends.
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import geopandas as gpd
import osmnx as ox
import osmnx._http as _ox_http
import requests
import urllib3.exceptions
from osmnx._errors import InsufficientResponseError
from requests.hooks import default_hooks
from shapely.geometry import MultiPolygon, Polygon
from tqdm.auto import tqdm

from .errors import InputError, SourceUnavailableError, ZoneError, env_mib, strip_controls
from .roads import RawWay, RoadFilter, ways_from_graph

log = logging.getLogger(__name__)

DEFAULT_URL = "https://overpass-api.de/api"
#: What to do when no Overpass server can be used.
OFFLINE_HINT = ("Use --source FILE.osm|.osm.pbf|.geojson, or --source skeleton, "
                "or set ICV_OVERPASS_URL to a reachable Overpass server")
_URL_HINT = "Check that the URL is an Overpass API base (ending in /api). "
#: HTTP statuses that mean "busy or briefly broken, ask again".
RETRY_STATUS = frozenset({429, 502, 503, 504})
#: Longest single wait between two tries, seconds (caps Retry-After too).
MAX_WAIT_S = 60.0
#: OSM way tags kept on graph edges: everything the roads table and the road
#: filter read, on top of OSMnx's defaults.
USEFUL_TAGS_WAY = (
    "highway", "name", "name:en", "name:zh", "ref", "lanes", "maxspeed", "oneway", "junction",
    "access", "motor_vehicle", "motorcar", "vehicle", "area",
)
_CHUNK = 64 * 1024
_LOCK = threading.Lock()
#: Largest Overpass answer accepted, bytes after decoding (gzip): the whole of Jiading is
#: about 30 MB; raise it with ``max_answer_bytes`` or ``$ICV_MAX_ANSWER_MB``.
MAX_ANSWER_BYTES = 256 * 1024 * 1024


def max_answer_bytes() -> int:
    """The answer-size cap: ``$ICV_MAX_ANSWER_MB`` (MiB) or :data:`MAX_ANSWER_BYTES`."""
    return env_mib("ICV_MAX_ANSWER_MB", MAX_ANSWER_BYTES, max_mb=1e7, example="512")


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@`` and the credentials (for HTTP basic auth), if any.

    Credentials are sent as an ``Authorization`` header and never appear in a
    message, a cache, provenance or a map.
    """
    parts = urlparse(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    from urllib.parse import unquote

    auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    return parts._replace(netloc=netloc).geturl(), auth


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for messages)."""
    return re.sub(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/@\s]*@", r"\1***@", str(url))


@dataclass(frozen=True)
class OverpassInfo:
    """Where a pull came from, for provenance.

    Attributes
    ----------
    url
        The Overpass API base URL asked (``.../api``).
    osm_base
        ``osm3s.timestamp_osm_base`` of the answer: the OSM data's age on the
        server (the oldest one when the zone took several requests), or
        ``None`` when the server did not say.
    from_cache
        ``True`` when every answer came from the OSMnx cache and no request
        was sent.
    """

    url: str
    osm_base: str | None
    from_cache: bool


def resolve_url(url: str | None = None) -> str:
    """The Overpass API base URL to use.

    Parameters
    ----------
    url
        Given URL; ``None`` means ``$ICV_OVERPASS_URL``, else
        :data:`DEFAULT_URL`. A trailing ``/interpreter`` is dropped, since
        OSMnx appends it.

    Returns
    -------
    str
        The base URL without a trailing slash.

    Raises
    ------
    InputError
        The URL is not ``http://`` or ``https://`` with a host.
    """
    raw = url or os.environ.get("ICV_OVERPASS_URL") or DEFAULT_URL
    base = raw.strip().rstrip("/")
    base = re.sub(r"/interpreter$", "", base)
    parts = urlparse(base)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"Overpass URL {redact_url(raw)!r} is not an http(s) URL",
                         hint="give the API base, e.g. https://overpass-api.de/api")
    return base


def fetch_ways(polygon: Polygon | MultiPolygon, road_filter: RoadFilter, *,
               url: str | None = None, timeout: int = 180, memory: int | None = None,
               cache_dir: Path | None = None, progress: bool = False,
               max_retries: int = 4, backoff: float = 2.0,
               margin_m: float = 0.0, as_of: str | None = None) -> tuple[list[RawWay], OverpassInfo]:
    """Pull the road ways inside a polygon from an Overpass server.

    Runs ``osmnx.graph_from_polygon`` with the filter's Overpass QL, unsimplified,
    every component kept, edges crossing the outline kept up to their first node
    outside it; then splits the graph back into OSM ways.

    A way that leaves the polygon is therefore cut at its first node outside.
    To get whole road pieces (junction to junction) for the pieces that touch
    the zone, as the file sources give, pull with a ``margin_m`` wider than
    the pieces reach beyond the outline and select the pieces that touch the
    zone afterwards (on the shared Jiading extract 1 km already gives exactly
    the file source's pieces).

    Parameters
    ----------
    polygon
        The zone, lon/lat (EPSG:4326).
    road_filter
        Which ways are roads; sent as OSMnx's ``custom_filter``.
    url
        Overpass API base URL; default ``$ICV_OVERPASS_URL`` or
        https://overpass-api.de/api.
    timeout
        Seconds. Sent as the query's ``[timeout:]``; also the client's limit
        for connecting, for the first byte of the answer and (separately) for
        receiving the whole body.
    memory
        Server memory limit in bytes (``[maxsize:]``); ``None`` for the
        server's default.
    cache_dir
        The project's cache folder; OSMnx caches raw answers in
        ``cache_dir/overpass``. ``None`` disables the cache.
    progress
        Show a download bar and retry notices on stderr.
    max_retries
        Further tries after a server fault (so at most ``1 + max_retries``
        requests per query).
    backoff
        First wait between tries, seconds; doubles with every try.
    margin_m
        Widen the polygon by this many metres (in its local UTM zone) before
        querying.
    as_of
        Query OSM as it was at this moment (Overpass attic data), an ISO
        timestamp ``YYYY-MM-DDTHH:MM:SSZ`` sent as ``[date:"..."]``; checked by
        :func:`geo.history.parse_as_of`. OSMnx's cache key is the query text,
        so each date is cached apart.

    Returns
    -------
    ways : list of RawWay
        The ways (runs of them where the outline cuts a way), with OSM node
        ids and lon/lat coordinates; one-way ways in the direction of travel.
    info : OverpassInfo
        Server URL, OSM data timestamp, and whether the cache answered.

    Raises
    ------
    SourceUnavailableError
        The server cannot be reached, does not answer in time, or keeps
        failing after the retries.
    ZoneError
        ``polygon`` is not a valid, non-empty lon/lat (Multi)Polygon.
    InputError
        ``url`` is not an http(s) URL.
    """
    base, auth = split_credentials(resolve_url(url))
    _check_polygon(polygon)
    if margin_m > 0:
        polygon = _widen(polygon, margin_m)
    hook = _RetryHook(base, timeout=timeout, max_retries=max(0, max_retries),
                      backoff=max(0.0, backoff), progress=progress, max_bytes=max_answer_bytes())
    requests_kwargs: dict[str, Any] = {"hooks": {"response": [hook]}, "allow_redirects": True}
    if auth is not None:
        requests_kwargs["auth"] = auth
        hook.session.auth = auth  # retries and /status
    cached: list[str | None] = []
    values: dict[str, Any] = {
        "overpass_url": base,
        "requests_timeout": timeout,
        "overpass_memory": memory,
        "overpass_settings": "[out:json][timeout:{timeout}]{maxsize}" + _date_setting(as_of),
        "overpass_rate_limit": False,  # no /status call before each query; 429 is handled by the hook
        "requests_kwargs": requests_kwargs,
        "doh_url_template": None,  # never ask Google's DNS-over-HTTPS when the host does not resolve
        "use_cache": cache_dir is not None,
        "cache_folder": str(Path(cache_dir) / "overpass") if cache_dir is not None else ox.settings.cache_folder,
        "cache_only_mode": False,
        "useful_tags_way": sorted(set(ox.settings.useful_tags_way) | set(USEFUL_TAGS_WAY)),
        "all_oneway": False,
        "bidirectional_network_types": [],  # keep one-way streets one-way
    }
    if progress:
        tqdm.write(f"Overpass: asking {base} for {road_filter.label} roads (timeout {timeout} s)",
                   file=sys.stderr)
    G = None
    try:
        with _LOCK, _osmnx_settings(values), _watch_cache(cached), _header_deadline(timeout):
            G = ox.graph_from_polygon(polygon, network_type="all", custom_filter=road_filter.overpass_filter(),
                                      simplify=False, retain_all=True, truncate_by_edge=True)
    except requests.exceptions.RequestException as exc:
        raise _unreachable(base, timeout, exc) from exc
    except InsufficientResponseError:
        log.info("Overpass at %s returned no ways for %s", base, road_filter.label)
    except ValueError as exc:
        if not str(exc).startswith("Found no graph nodes"):
            raise
        log.info("Overpass at %s returned no ways inside the polygon", base)
    finally:
        hook.close()
    ways = ways_from_graph(G) if G is not None else []
    # the query asks for the classes only; access (a hierarchy, not a tag filter) is decided here
    ways = [w for w in ways if road_filter.accepts(w.tags)]
    stamps = [s for s in [*hook.osm_bases, *cached] if s]
    info = OverpassInfo(url=base, osm_base=min(stamps) if stamps else None,
                        from_cache=hook.answers == 0 and bool(cached))
    if progress and info.from_cache:
        tqdm.write(f"Overpass: answer read from the cache {values['cache_folder']}", file=sys.stderr)
    return ways, info


def _date_setting(as_of: str | None) -> str:
    """The attic ``[date:"..."]`` setting for an as-of pull ("" for current data)."""
    if as_of is None:
        return ""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", as_of):
        raise InputError(f"as-of timestamp {as_of!r} is not YYYY-MM-DDTHH:MM:SSZ", hint="give --as-of YYYY-MM-DD")
    return f'[date:"{as_of}"]'


def _check_polygon(polygon: Any) -> None:
    """Raise ZoneError unless ``polygon`` is a valid lon/lat (Multi)Polygon."""
    if not isinstance(polygon, (Polygon, MultiPolygon)) or polygon.is_empty:
        raise ZoneError(f"zone must be a non-empty Polygon or MultiPolygon, not {type(polygon).__name__}")
    if not polygon.is_valid:
        raise ZoneError("zone outline is not a valid polygon", hint="repair it (e.g. shapely.make_valid)")
    minx, miny, maxx, maxy = polygon.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise ZoneError("zone coordinates are not lon/lat degrees", hint="give the zone in EPSG:4326")


def _widen(polygon: Polygon | MultiPolygon, margin_m: float) -> Polygon | MultiPolygon:
    """The polygon buffered by ``margin_m`` metres in its local UTM zone."""
    s = gpd.GeoSeries([polygon], crs="EPSG:4326")
    utm = s.estimate_utm_crs()
    return s.to_crs(utm).buffer(margin_m).to_crs("EPSG:4326").iloc[0]


@contextlib.contextmanager
def _osmnx_settings(values: dict[str, Any]) -> Iterator[None]:
    """Set ``ox.settings`` for one pull; restore them (and DNS) afterwards."""
    saved = {k: getattr(ox.settings, k) for k in values}
    # OSMnx pins the server's host name to one IP by replacing socket.getaddrinfo
    getaddrinfo = socket.getaddrinfo
    try:
        for k, v in values.items():
            setattr(ox.settings, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(ox.settings, k, v)
        socket.getaddrinfo = getaddrinfo


@contextlib.contextmanager
def _watch_cache(stamps: list[str | None]) -> Iterator[None]:
    """Record OSMnx cache hits (their ``timestamp_osm_base``) during a pull.

    OSMnx writes cache files non-atomically; a file cut short by a crash is
    dropped and treated as a miss, so the answer is fetched again.
    """
    original: Callable[[str], Any] = _ox_http._retrieve_from_cache

    def retrieve(key: str) -> Any:
        path = _ox_http._resolve_cache_filepath(key)
        if path.exists() and not path.is_file():  # a FIFO would hang the read, /dev/zero never end
            log.warning("ignoring Overpass cache entry %s: not a regular file", path)
            return None
        if path.is_symlink():
            log.warning("ignoring Overpass cache entry %s: a symbolic link", path)
            return None
        try:
            data = original(key)
        except (ValueError, UnicodeDecodeError):
            path = _ox_http._resolve_cache_filepath(key)
            log.warning("dropping unreadable Overpass cache file %s", path)
            path.unlink(missing_ok=True)
            return None
        if data is not None and (_invalid_answer(data) or not data.get("elements")):
            path = _ox_http._resolve_cache_filepath(key)
            log.warning("dropping invalid or empty Overpass cache file %s", path)
            path.unlink(missing_ok=True)
            return None
        if isinstance(data, dict):
            stamps.append(_osm_base(data))
        return data

    def save(url: str, response_json: Any, ok: bool) -> None:
        # an empty answer (server hiccup, wrong area) would be replayed forever: never cached
        if isinstance(response_json, dict) and response_json.get("elements") and not _invalid_answer(response_json):
            path = _ox_http._resolve_cache_filepath(url)
            if path.is_symlink() or (path.exists() and not path.is_file()):
                path.unlink()  # writing into a FIFO would block, into a link would write elsewhere
            original_save(url, response_json, ok)

    original_save = _ox_http._save_to_cache
    _ox_http._retrieve_from_cache = retrieve
    _ox_http._save_to_cache = save
    try:
        yield
    finally:
        _ox_http._retrieve_from_cache = original
        _ox_http._save_to_cache = original_save


@contextlib.contextmanager
def _header_deadline(timeout: float) -> Iterator[None]:
    """A total deadline for the status line and headers of every answer during a pull.

    requests' ``timeout`` bounds each socket read, so a server sending its
    headers one byte a second never times out; here a timer shuts the socket
    down once ``timeout`` seconds have passed without the headers complete.
    """
    import urllib3.connection as uc

    original = uc.HTTPConnection.getresponse

    def getresponse(self: Any) -> Any:
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            sock = getattr(self, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            return original(self)
        except Exception:
            if fired.is_set():
                raise TimeoutError(f"headers not complete within {timeout:g} s") from None
            raise
        finally:
            timer.cancel()

    uc.HTTPConnection.getresponse = getresponse  # type: ignore[method-assign]
    try:
        yield
    finally:
        uc.HTTPConnection.getresponse = original  # type: ignore[method-assign]


def _invalid_answer(data: Any) -> str | None:
    """Why an Overpass JSON answer cannot be used as OSM data, or None when it can.

    Checked before OSMnx sees it (and before it is cached): element types, ids,
    finite in-range coordinates, node lists and tags of the right types.
    """
    if not isinstance(data, dict):
        return f"the answer is a JSON {type(data).__name__}, not an object"
    elements = data.get("elements")
    if not isinstance(elements, list):
        return "the answer holds no list of OSM elements"
    for i, el in enumerate(elements):
        if not isinstance(el, dict):
            return f"element #{i} is a JSON {type(el).__name__}, not an object"
        kind, eid = el.get("type"), el.get("id")
        label = f"{kind} {eid}" if isinstance(kind, str) else f"element #{i}"
        if kind not in ("node", "way", "relation", "area"):
            return f"element #{i} has an unknown type {str(kind)[:40]!r}"
        if isinstance(eid, bool) or not isinstance(eid, int) or not -2**63 < eid < 2**63:
            return f"element #{i} ({kind}) has a missing or non-integer id"
        tags = el.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            return f"{label} has tags that are not text"
        if kind == "node":
            lat, lon = el.get("lat"), el.get("lon")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
                return f"{label} has coordinates that are not numbers (lat={str(lat)[:20]}, lon={str(lon)[:20]})"
            if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
                return f"{label} has coordinates out of range (lat={lat}, lon={lon})"
        elif kind == "way":
            nodes = el.get("nodes")
            if not isinstance(nodes, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in nodes):
                return f"{label} has a node list that is not a list of ids"
            if len(nodes) < 2:
                return f"{label} has {len(nodes)} nodes (a way has at least 2)"
    # the query ends in `>;`: every node of every way is in the answer, or the answer is cut
    have = {el["id"] for el in elements if el.get("type") == "node"}
    for el in elements:
        if el.get("type") == "way":
            missing = next((n for n in el["nodes"] if n not in have), None)
            if missing is not None:
                return f"way {el['id']} references node {missing}, which the answer does not hold (a cut answer?)"
    return None


def _osm_base(data: dict[str, Any]) -> str | None:
    osm3s = data.get("osm3s")
    stamp = osm3s.get("timestamp_osm_base") if isinstance(osm3s, dict) else None
    return stamp if isinstance(stamp, str) else None


@dataclass
class _Fault:
    """Why one HTTP answer is not usable."""

    reason: str  # one line, for the user
    retry: bool
    wait_s: float | None = None  # server-suggested wait
    hint: str = OFFLINE_HINT
    ask_status: bool = False  # a 429 without Retry-After: /status says when a slot frees


class _TooSlow(Exception):
    pass


class _TooBig(Exception):
    pass


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(name)  # NaN, Infinity: Python's json accepts them, JSON does not


@dataclass
class _RetryHook:
    """requests response hook: retry server faults, read the body with a deadline.

    Attributes
    ----------
    answers
        HTTP answers seen (first tries and retries); 0 when the cache answered.
    osm_bases
        ``timestamp_osm_base`` of each good answer.
    """

    base: str
    timeout: float
    max_retries: int
    backoff: float
    progress: bool = False
    max_bytes: int = MAX_ANSWER_BYTES
    answers: int = 0
    osm_bases: list[str | None] = field(default_factory=list)
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def close(self) -> None:
        """Close the session used for re-sending."""
        self.session.close()

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Return a good answer for ``response.request`` or raise SourceUnavailableError."""
        if response.is_redirect:
            # followed by requests (which calls the hook again) only on the same host: the
            # provenance names the server asked, so an answer from elsewhere is refused
            target = requests.compat.urljoin(response.url, response.headers.get("Location", ""))
            if (urlparse(target).hostname or "").lower() != (urlparse(self.base).hostname or "").lower():
                response.close()
                raise SourceUnavailableError(
                    f"the server redirects (HTTP {response.status_code}) to another host, "
                    f"{strip_controls(redact_url(target))[:120]}; refused", where=self.base,
                    hint="give that server's URL with --overpass-url if you trust it")
            return response
        send_kwargs = {k: kwargs[k] for k in ("timeout", "verify", "proxies", "cert") if k in kwargs}
        tries = 1
        while True:
            self.answers += 1
            fault = self._check(response)
            if fault is None:
                return response
            response.close()
            if not fault.retry:
                raise SourceUnavailableError(fault.reason, where=self.base, hint=fault.hint)
            if tries > self.max_retries:
                raise SourceUnavailableError(
                    f"{fault.reason}; still failing after {tries} tries", where=self.base, hint=fault.hint)
            if fault.ask_status:
                fault.wait_s = self._status_wait()
            wait = min(max(self.backoff * 2 ** (tries - 1), fault.wait_s or 0.0), MAX_WAIT_S)
            self._say(f"Overpass: {fault.reason}; try {tries + 1} of {self.max_retries + 1} "
                      f"in {wait:.1f} s")
            self.sleep(wait)
            request = response.request.copy()
            request.hooks = default_hooks()  # this loop is the retry; no nested hook calls
            response = self.session.send(request, stream=True, **send_kwargs)
            tries += 1

    def _say(self, message: str) -> None:
        message = strip_controls(message)
        # once: to the user's stderr when icv shows progress, else to the log (logging's
        # last-resort handler prints an unhandled warning to stderr too: both would print it twice)
        if self.progress:
            tqdm.write(message, file=sys.stderr)
        else:
            log.warning("%s", message)

    def _check(self, response: requests.Response) -> _Fault | None:
        """Read and judge one answer; None when it is good (body then cached on it)."""
        status = response.status_code
        if status in RETRY_STATUS:
            wait = _retry_after(response.headers.get("Retry-After"))
            return _Fault(f"HTTP {status} {response.reason or ''}".strip(), retry=True, wait_s=wait,
                          ask_status=wait is None and status == 429)
        try:
            body = self._read_body(response)
        except _TooBig as exc:
            return _Fault(f"the answer is larger than {self.max_bytes / 2**20:g} MiB{exc.args[0]}", retry=False,
                          hint="query a smaller zone, or raise the cap with ICV_MAX_ANSWER_MB (MiB)")
        except (_TooSlow, urllib3.exceptions.ReadTimeoutError, TimeoutError):
            return _Fault(f"the server did not finish sending its answer within {self.timeout:g} s",
                          retry=False)
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            return _Fault(f"the connection broke while receiving the answer ({type(exc).__name__})",
                          retry=True)
        if not response.ok:
            return _Fault(f"HTTP {status} {response.reason or ''}: {_excerpt(body)}".strip(), retry=False,
                          hint=_URL_HINT + OFFLINE_HINT)
        if body.lstrip()[:1] == b"<":  # an HTML or XML page: the URL is not an Overpass JSON API
            return _Fault(f"the answer is a web page, not Overpass JSON: {_excerpt(body)}", retry=False,
                          hint=_URL_HINT + OFFLINE_HINT)
        try:
            data = json.loads(body, parse_constant=_no_constant)
        except _NotJson as exc:
            return _Fault(f"the answer holds {exc.args[0]}, which is not JSON data", retry=False,
                          hint=_URL_HINT + OFFLINE_HINT)
        except RecursionError:
            return _Fault("the answer is JSON nested too deeply to be Overpass data", retry=False,
                          hint=_URL_HINT + OFFLINE_HINT)
        except ValueError:
            return _Fault("the answer is not complete JSON (cut short?)", retry=True)
        if not isinstance(data, dict) or not isinstance(data.get("elements"), list):
            return _Fault("the answer holds no OSM elements", retry=True)
        why = _invalid_answer(data)
        if why:  # never handed to OSMnx, never cached
            return _Fault(f"the answer is not valid OSM data: {why}", retry=False, hint=_URL_HINT + OFFLINE_HINT)
        remark = data.get("remark")
        if remark:
            # Overpass adds a remark only when the query did not run to the end
            text = " ".join(str(remark).split())[:200].rstrip(".")
            hint = OFFLINE_HINT
            if "memory" in text.lower():
                hint = "Give a larger --memory (bytes) or a smaller zone. " + OFFLINE_HINT
            elif "timeout" in text.lower() or "timed out" in text.lower():
                hint = f"Give a larger --timeout (now {self.timeout:g} s) or a smaller zone. " + OFFLINE_HINT
            return _Fault(f"the server did not finish the query: {text}", retry=True, hint=hint)
        self.osm_bases.append(_osm_base(data))
        return None

    def _read_body(self, response: requests.Response) -> bytes:
        """Read the whole body within ``timeout`` seconds; store it on the response.

        ``read1`` returns as soon as any bytes arrive, so the deadline is checked
        however slowly the server sends; each read waits at most ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > self.max_bytes:
            raise _TooBig(f" (Content-Length {total:,} bytes)")
        parts: list[bytes] = []
        size = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="Overpass",
                  file=sys.stderr, disable=None if self.progress else True,  # None: a bar on a terminal only
                  leave=False, mininterval=0.5) as bar:
            while True:
                if time.monotonic() > deadline:
                    raise _TooSlow
                chunk = response.raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:  # counted after decoding: a gzip bomb stops here
                    raise _TooBig(" once decoded" if response.headers.get("Content-Encoding") else "")
                parts.append(chunk)
                bar.update(len(chunk))
        body = b"".join(parts)
        # requests keeps a read body in _content; OSMnx then parses it via response.json()
        response._content = body
        response._content_consumed = True
        response.raw.release_conn()
        return body

    def _status_wait(self) -> float | None:
        """Seconds until a query slot frees, from the server's ``/status`` page."""
        try:
            r = self.session.get(self.base + "/status", timeout=min(self.timeout, 10.0))
            text = r.text if r.ok else ""
        except requests.exceptions.RequestException:
            return None
        waits = [int(s) for s in re.findall(r"Slot available after: \S+, in (-?\d+) seconds", text)]
        return float(max(min(waits), 0)) if waits else None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _excerpt(body: bytes, limit: int = 160) -> str:
    """A short plain-text excerpt of an (HTML) error page."""
    text = body[:20_000].decode("utf-8", "replace")
    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", text)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = re.sub(r"\s+([:.,;])", r"\1", " ".join(text.split()))
    # Overpass's error pages open with a copyright line; the message follows "Error"
    at = text.find("Error")
    if at > 0:
        text = text[at:]
    return text[:limit] + ("..." if len(text) > limit else "")


def _unreachable(base: str, timeout: float, exc: requests.exceptions.RequestException) -> SourceUnavailableError:
    """The one-line error for a server that cannot be reached or does not answer."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        why = f"no connection within {timeout:g} s"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        why = f"no answer within {timeout:g} s"
    elif isinstance(exc, requests.exceptions.SSLError):
        why = "TLS/SSL handshake failed"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        why = _connection_failure(exc, base)
    else:
        why = f"request failed ({type(exc).__name__})"
    return SourceUnavailableError(f"cannot use the Overpass server: {why}", where=base, hint=OFFLINE_HINT)


def _connection_failure(exc: BaseException, base: str) -> str:
    """Name the cause of a requests ConnectionError from its exception chain."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, urllib3.exceptions.NameResolutionError) or isinstance(e, socket.gaierror):
            return f"host name {urlparse(base).hostname!r} not found"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
        stack.extend([e.__cause__, e.__context__, getattr(e, "reason", None),
                      *(a for a in e.args if isinstance(a, BaseException))])
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "RemoteDisconnected" in text or "closed connection" in text.lower():
        return "the server closed the connection without answering"
    return "connection failed"
