"""Private I/O: OSM history aggregates from the ohsome API (HeiGIT).

Two requests per history: ``/elements/length/groupBy/tag`` (metres per
``highway`` class at each timestamp, clipped to the zone given as ``bpolys``)
and, for the named-street count, ``/elements/count/groupBy/tag`` grouped by
``name`` (each name with a non-zero count at a timestamp is one street name).

Server faults (HTTP 429, 502, 503, 504, a body that is not complete JSON) are
retried a bounded number of times with exponential backoff honouring
``Retry-After`` (capped at :data:`MAX_WAIT_S`), as for Overpass; an ohsome
error answer (``{"status": 400, "message": ...}``), a time-out or a connection
failure becomes one :class:`~geo.errors.SourceUnavailableError` line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from .errors import InputError, SourceUnavailableError
from .roads import ACCESS_TAGS, PRIVATE_VALUES, RoadFilter

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.ohsome.org/v1"
RETRY_STATUS = frozenset({429, 502, 503, 504})
MAX_WAIT_S = 60.0
#: Largest answer read (a zone's km per class over a few hundred dates is a few hundred kB).
MAX_BODY_BYTES = 256 * 2**20
OFFLINE_HINT = ("Give --source FILE.osh.pbf (an OSM history file) to work offline, "
                "or set ICV_OHSOME_URL to a reachable ohsome API")


@dataclass(frozen=True)
class OhsomeAnswer:
    """What the ohsome API answered for one history.

    Attributes
    ----------
    url
        The API base asked.
    km_by_class
        ``timestamp -> {highway class -> km}`` (classes with 0 km left out).
    named_streets
        ``timestamp -> distinct names`` or ``None`` when not asked.
    api_version, attribution
        As the server reported them.
    """

    url: str
    km_by_class: dict[str, dict[str, float]]
    named_streets: dict[str, int] | None
    api_version: str | None
    attribution: str | None


def resolve_url(url: str | None = None) -> str:
    """The ohsome API base (``$ICV_OHSOME_URL``, else :data:`DEFAULT_URL`), without a trailing slash.

    Raises
    ------
    InputError
        The URL is not ``http://`` or ``https://`` with a host.
    """
    raw = url or os.environ.get("ICV_OHSOME_URL") or DEFAULT_URL
    base = re.sub(r"/elements/.*$", "", raw.strip().rstrip("/"))
    parts = urlparse(base)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"ohsome URL {raw!r} is not an http(s) URL",
                         hint="give the API base, e.g. https://api.ohsome.org/v1")
    return base


def ohsome_filter(road_filter: RoadFilter) -> str:
    """The road filter in ohsome's filter language (ways only, as the other sources)."""
    classes = ", ".join(sorted(road_filter.highway))
    f = f"type:way and highway in ({classes}) and not area=yes"
    if not road_filter.include_private:
        values = ", ".join(sorted(PRIVATE_VALUES))
        for key in ACCESS_TAGS:
            f += f" and not {key} in ({values})"
    return f


def fetch_history(polygon: BaseGeometry, road_filter: RoadFilter, time_range: str, *, url: str | None = None,
                  timeout: float = 120, max_retries: int = 4, backoff: float = 2.0, names: bool = True,
                  sleep: Callable[[float], None] = time.sleep) -> OhsomeAnswer:
    """Km per highway class (and distinct street names) of a zone over time.

    Parameters
    ----------
    polygon
        The zone, lon/lat; sent as ``bpolys`` (GeoJSON).
    road_filter
        Which ways are roads (see :func:`ohsome_filter`).
    time_range
        ohsome ``time``: ``START/END/PERIOD`` such as ``2012-01-01/2024-12-31/P3M``, or a
        comma-separated list of dates.
    url
        API base; default ``$ICV_OHSOME_URL`` or https://api.ohsome.org/v1.
    timeout
        Seconds to connect and to read each answer.
    max_retries, backoff
        Further tries after a server fault; first wait (doubles each try).
    names
        Also ask for the named-street count.

    Returns
    -------
    OhsomeAnswer

    Raises
    ------
    SourceUnavailableError
        Unreachable, too slow, an ohsome error answer, or still failing after the retries.
    """
    base = resolve_url(url)
    bpolys = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "zone"}, "geometry": mapping(polygon)}]})
    form = {"bpolys": bpolys, "time": time_range, "filter": ohsome_filter(road_filter)}
    classes = ",".join(sorted(road_filter.highway))
    with requests.Session() as session:
        ask = _Asker(session, base, timeout, max(0, max_retries), max(0.0, backoff), sleep)
        length = ask("/elements/length/groupBy/tag", {**form, "groupByKey": "highway", "groupByValues": classes})
        km: dict[str, dict[str, float]] = {}
        for group, ts, value in _groups(length, base):
            cls = group.partition("=")[2] if "=" in group else None
            row = km.setdefault(ts, {})
            if cls and value:
                row[cls] = row.get(cls, 0.0) + value / 1000.0
        named: dict[str, int] | None = None
        if names:
            from .names import street_names

            counts = ask("/elements/count/groupBy/tag", {**form, "groupByKey": "name"})
            seen: dict[str, set[str]] = {ts: set() for ts in km}
            for group, ts, value in _groups(counts, base):
                names_here = street_names(group.partition("=")[2]) if "=" in group else ()
                seen.setdefault(ts, set())
                if value:
                    seen[ts].update(names_here)
            named = {ts: len(v) for ts, v in seen.items()}
    attribution = length.get("attribution")
    return OhsomeAnswer(url=base, km_by_class=dict(sorted(km.items())), named_streets=named,
                        api_version=str(length.get("apiVersion")) if length.get("apiVersion") else None,
                        attribution=attribution.get("text") if isinstance(attribution, Mapping) else None)


def _groups(doc: Mapping[str, Any], base: str) -> list[tuple[str, str, float]]:
    """(group, timestamp, value) of a groupBy answer; raises on an answer of another shape."""
    groups = doc.get("groupByResult")
    if not isinstance(groups, list):
        raise SourceUnavailableError("the answer holds no groupByResult (not an ohsome groupBy answer)",
                                     where=base, hint="Check that the URL is an ohsome API base (ending in /v1). "
                                     + OFFLINE_HINT)
    out = []
    for g in groups:
        for r in g.get("result", []) if isinstance(g, Mapping) else []:
            try:
                out.append((str(g.get("groupByObject", "")), str(r["timestamp"]), float(r["value"])))
            except (KeyError, TypeError, ValueError):
                raise SourceUnavailableError("the answer has a result without timestamp or value",
                                             where=base, hint=OFFLINE_HINT) from None
    return out


class _TooSlow(Exception):
    pass


class _TooBig(Exception):
    pass


@dataclass
class _Asker:
    session: requests.Session
    base: str
    timeout: float
    max_retries: int
    backoff: float
    sleep: Callable[[float], None]

    def __call__(self, path: str, form: Mapping[str, str]) -> dict[str, Any]:
        tries = 1
        while True:
            reason, wait, retry = self._once(path, form)
            if isinstance(reason, dict):
                return reason
            if not retry:
                raise SourceUnavailableError(f"cannot use the ohsome API: {reason}", where=self.base,
                                             hint=OFFLINE_HINT)
            if tries > self.max_retries:
                raise SourceUnavailableError(f"cannot use the ohsome API: {reason}; still failing after "
                                             f"{tries} tries", where=self.base, hint=OFFLINE_HINT)
            pause = min(max(self.backoff * 2 ** (tries - 1), wait or 0.0), MAX_WAIT_S)
            log.warning("ohsome: %s; try %d of %d in %.1f s", reason, tries + 1, self.max_retries + 1, pause)
            self.sleep(pause)
            tries += 1

    def _once(self, path: str, form: Mapping[str, str]) -> tuple[Any, float | None, bool]:
        """(answer dict, None, False) or (reason, wait, retry)."""
        try:
            r = self.session.post(self.base + path, data=dict(form), timeout=self.timeout, stream=True)
            body = self._read_body(r)
        except _TooSlow:
            return f"the answer did not arrive within {self.timeout:g} s", None, False
        except _TooBig:
            return f"the answer is larger than {MAX_BODY_BYTES // 2**20} MiB", None, False
        except requests.exceptions.ConnectTimeout:
            return f"no connection within {self.timeout:g} s", None, False
        except requests.exceptions.ReadTimeout:
            return f"no answer within {self.timeout:g} s", None, False
        except requests.exceptions.ChunkedEncodingError:
            return "the answer is not complete JSON (cut short?)", None, True
        except requests.exceptions.ConnectionError as e:
            text = str(e).lower()
            if "read timed out" in text:
                return f"no answer within {self.timeout:g} s", None, False
            why = ("connection refused" if "refused" in text else
                   f"host name {urlparse(self.base).hostname!r} not found"
                   if "name or service" in text or "resolve" in text or "nodename" in text else "connection failed")
            return why, None, False
        except requests.exceptions.RequestException as e:
            return f"request failed ({type(e).__name__})", None, False
        if r.status_code in RETRY_STATUS:
            wait = r.headers.get("Retry-After", "")
            return f"HTTP {r.status_code} {r.reason or ''}".strip(), float(wait) if wait.isdigit() else None, True
        if body.lstrip()[:1] == b"<":  # an HTML page: a wrong URL or a captive portal, asking again won't help
            return (f"the answer is a web page (HTTP {r.status_code}), not ohsome JSON; check that the URL is an "
                    "ohsome API base (ending in /v1)"), None, False
        try:
            doc = json.loads(body)
        except ValueError:
            if not r.ok:
                return f"HTTP {r.status_code} {r.reason or ''}".strip(), None, False
            return "the answer is not complete JSON (cut short?)", None, True
        if not isinstance(doc, dict):
            return "the answer is not an ohsome JSON object", None, False
        if not r.ok or "error" in doc or (isinstance(doc.get("status"), int) and doc["status"] >= 400):
            msg = " ".join(str(doc.get("message") or doc.get("error") or "").split())[:200]
            return f"HTTP {r.status_code}: {msg or 'error'}", None, False
        return doc, None, False

    def _read_body(self, r: requests.Response) -> bytes:
        """The whole body within ``timeout`` seconds (a trickling server ends too), at most MAX_BODY_BYTES."""
        deadline = time.monotonic() + self.timeout
        parts: list[bytes] = []
        size = 0
        try:
            for chunk in r.iter_content(64 * 1024):
                parts.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _TooBig
                if time.monotonic() > deadline:
                    raise _TooSlow
        finally:
            r.close()
        return b"".join(parts)


def time_labels(km_by_class: Mapping[str, Any]) -> Sequence[str]:
    """Timestamps of an answer, oldest first."""
    return sorted(km_by_class)
