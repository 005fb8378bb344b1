"""OSM as it was: as-of dates, the mapped network over time, and its chart beside the reported figures.

* :func:`parse_as_of` checks an as-of date (OSM's attic data starts on
  2012-09-12, the day of the ODbL licence change; a date in the future has no
  data) and gives the Overpass attic timestamp (``[date:"...T23:59:59Z"]``).
* :func:`history_from_ohsome` and :func:`history_from_file` give the zone's
  carriageway km by ``highway`` class (and distinct street names) at a series
  of dates, from the ohsome API or offline from an OSM history file.
* :func:`write_charts` draws that series beside a place's reported figures over
  time (with their sources): PNG and SVG (matplotlib) and one self-contained
  interactive HTML file (inline SVG and a few lines of script, no CDN).
* :func:`report_history_section` and :func:`dates_compared_lines` are the
  report's pieces (``icv report --history``, ``icv report --as-of``).
"""

from __future__ import annotations

import calendar
import csv
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from ._atomic import atomic_path, write_text
from ._format import md_escape
from ._version import __version__
from .errors import InputError
from .provenance import OSM_ATTRIBUTION, utc_now
from .roads import RoadFilter

#: The first day of OSM's attic (history) data in Overpass: the ODbL licence change.
ATTIC_START = date(2012, 9, 12)
#: Default time range of ``icv history`` (ohsome syntax).
DEFAULT_RANGE = "2012-10-01/2024-12-31/P3M"
KM_DEFINITION = ("carriageway km: every way of the filter clipped at the zone boundary, each carriageway "
                 "counted (a dual carriageway twice)")


class AsOfWarning(UserWarning):
    """An as-of date that could only be half kept (e.g. no cache entry pulled for it)."""


@dataclass(frozen=True)
class AsOf:
    """A checked as-of date.

    Attributes
    ----------
    day
        The date (end of the period for ``YYYY`` or ``YYYY-MM``).
    text
        As the user wrote it.
    """

    day: date
    text: str

    @property
    def moment(self) -> datetime:
        """The end of ``day``, UTC: what is visible "as of" that date."""
        return datetime.combine(self.day, time(23, 59, 59), tzinfo=timezone.utc)

    @property
    def attic(self) -> str:
        """The Overpass attic timestamp, ``YYYY-MM-DDT23:59:59Z``."""
        return self.moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def label(self) -> str:
        return self.day.isoformat()


def parse_as_of(value: str | date | AsOf, *, today: date | None = None) -> AsOf:
    """Check an as-of date for OSM data.

    Parameters
    ----------
    value
        ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` (the end of that month or year).
    today
        The current UTC date (default: now); for tests.

    Raises
    ------
    InputError
        Not a date, before :data:`ATTIC_START`, or after today.
    """
    if isinstance(value, AsOf):
        return value
    from .reported import parse_as_of as _parse

    text = value.isoformat() if isinstance(value, date) else str(value).strip()
    try:
        day, _ = _parse(value if isinstance(value, date) else text)
    except ValueError as e:
        raise InputError(f"bad as-of date: {e}", hint="write YYYY-MM-DD, YYYY-MM or YYYY") from None
    today = today or datetime.now(timezone.utc).date()
    if day < ATTIC_START:
        raise InputError(f"as-of date {text} is before {ATTIC_START.isoformat()}, where OSM's history data "
                         "starts (the ODbL licence change)", hint=f"give a date from {ATTIC_START.isoformat()} on")
    if day > today:
        raise InputError(f"as-of date {text} is in the future (today is {today.isoformat()} UTC)",
                         hint="give a past date, or leave --as-of out for the current data")
    return AsOf(day, text)


# ---------------------------------------------------------------- time ranges

_RANGE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})/P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def parse_time_range(value: str, *, today: date | None = None) -> list[date]:
    """The dates of an ohsome-style time range ``START/END/PERIOD`` (or a comma list of dates).

    ``2012-01-01/2012-12-31/P3M`` gives 2012-01-01, 2012-04-01, 2012-07-01, 2012-10-01
    (steps counted from START, so month ends stay month ends; END included when on the grid).

    Raises
    ------
    InputError
        Malformed, END before START, a zero period, more than 2,000 dates, or END in the future.
    """
    hint = "write START/END/PERIOD, e.g. 2012-01-01/2024-12-31/P3M, or a comma-separated list of dates"
    text = value.strip()
    today = today or datetime.now(timezone.utc).date()
    if "/" not in text:
        try:
            days = sorted({date.fromisoformat(s.strip()) for s in text.split(",") if s.strip()})
        except ValueError:
            raise InputError(f"bad time range {value!r}", hint=hint) from None
        if not days:
            raise InputError(f"bad time range {value!r}", hint=hint)
        end = days[-1]
    else:
        m = _RANGE_RE.match(text)
        if not m:
            raise InputError(f"bad time range {value!r}", hint=hint)
        try:
            start, end = date.fromisoformat(m.group(1)), date.fromisoformat(m.group(2))
        except ValueError:
            raise InputError(f"bad time range {value!r}: not a real date", hint=hint) from None
        y, mo, w, d = (int(g) if g else 0 for g in m.groups()[2:])
        if end < start:
            raise InputError(f"time range {value!r} ends before it starts", hint=hint)
        if not (y or mo or w or d):
            raise InputError(f"time range {value!r} has a zero period", hint=hint)
        days = []
        k = 0
        while True:
            t = _add(start, years=k * y, months=k * mo, days=k * (7 * w + d))
            if t > end:
                break
            days.append(t)
            k += 1
            if len(days) > 2000:
                raise InputError(f"time range {value!r} has more than 2,000 dates", hint="give a longer period")
    if end > today:
        raise InputError(f"time range {value!r} ends in the future (today is {today.isoformat()} UTC)",
                         hint="end it today or earlier")
    return days


def _add(d: date, *, years: int = 0, months: int = 0, days: int = 0) -> date:
    m0 = d.month - 1 + months + 12 * years
    y, m = d.year + m0 // 12, m0 % 12 + 1
    last = calendar.monthrange(y, m)[1]
    # the end of a month stays the end of a month (2012-01-31 + P1M = 2012-02-29)
    day = last if d.day == calendar.monthrange(d.year, d.month)[1] else min(d.day, last)
    return date(y, m, day) + timedelta(days=days)


# ---------------------------------------------------------------- the OSM history

@dataclass
class HistoryPoint:
    """The zone's network at one date."""

    day: date
    km_by_class: dict[str, float]
    named_streets: int | None = None

    @property
    def total_km(self) -> float:
        return float(sum(self.km_by_class.values()))


@dataclass
class OsmHistory:
    """The zone's mapped network over time, and where it comes from.

    Attributes
    ----------
    zone
        Zone name.
    points
        One :class:`HistoryPoint` per date, oldest first.
    provenance
        Source (``ohsome`` URL or history file and its sha256), filter, zone,
        tool version, attribution.
    names_definition
        What ``named_streets`` counts (it differs between the sources), or why it is absent.
    """

    zone: str
    points: list[HistoryPoint]
    provenance: dict[str, Any] = field(default_factory=dict)
    names_definition: str = ""

    @property
    def classes(self) -> list[str]:
        """Classes seen at any date, the largest (at the last date it appears) first."""
        total: dict[str, float] = {}
        for p in self.points:
            for c, km in p.km_by_class.items():
                total[c] = max(total.get(c, 0.0), km)
        return sorted(total, key=lambda c: (-total[c], c))

    def at(self, day: date) -> HistoryPoint | None:
        """The last point at or before ``day``."""
        found = None
        for p in self.points:
            if p.day <= day:
                found = p
        return found


def _provenance(kind: str, source: str, road_filter: RoadFilter, zone: str, **extra: Any) -> dict[str, Any]:
    return {"source_kind": kind, "source": source, "filter": road_filter.label, "zone": zone,
            "km": KM_DEFINITION, "tool_version": __version__, "created": utc_now(),
            "attribution": OSM_ATTRIBUTION, **extra}


def history_from_ohsome(zone: Any, road_filter: RoadFilter, time_range: str = DEFAULT_RANGE, *,
                        url: str | None = None, timeout: float = 120, names: bool = True,
                        max_retries: int = 4, backoff: float = 2.0) -> OsmHistory:
    """The zone's km by class (and street names) over time from the ohsome API.

    Parameters
    ----------
    zone
        A :class:`~geo.zones.Zone`.
    road_filter
        Which ways are roads.
    time_range
        ``START/END/PERIOD`` (checked, then sent as ohsome's ``time``).
    url
        ohsome API base (default ``$ICV_OHSOME_URL`` or https://api.ohsome.org/v1).
    timeout, max_retries, backoff
        As for Overpass.
    names
        Also count distinct street names (one more request).

    Raises
    ------
    InputError, SourceUnavailableError
    """
    from . import _ohsome

    parse_time_range(time_range)
    ans = _ohsome.fetch_history(zone.geometry, road_filter, time_range, url=url, timeout=timeout, names=names,
                                max_retries=max_retries, backoff=backoff)
    points = []
    for ts, by_class in ans.km_by_class.items():
        day = date.fromisoformat(ts[:10])
        points.append(HistoryPoint(day, {c: round(v, 3) for c, v in sorted(by_class.items())},
                                   ans.named_streets.get(ts) if ans.named_streets is not None else None))
    points.sort(key=lambda p: p.day)
    prov = _provenance("ohsome", ans.url, road_filter, zone.name, time_range=time_range,
                       ohsome_api_version=ans.api_version, ohsome_attribution=ans.attribution,
                       osm_timestamp=points[-1].day.isoformat() if points else None)
    defn = ("distinct street names (NFKC, whitespace collapsed, ';' lists split) of the name tag on ways of the "
            "filter in the zone, from ohsome's count grouped by name (name:zh is not read)") if names else "not asked"
    return OsmHistory(zone.name, points, prov, defn)


def history_from_file(path: str | Path, zone: Any, road_filter: RoadFilter, days: Sequence[date]) -> OsmHistory:
    """The zone's km by class and named streets at each date, offline from an OSM history file.

    Each date's network is the file's state at 00:00 UTC of that day, as ohsome's
    timestamps are (see :mod:`geo._osh`), built and clipped as every other source
    (:func:`geo.roads.build_roads_table`, :func:`geo.stats.road_stats`).

    Raises
    ------
    InputError
        Not a history file, or unreadable.
    """
    import bisect

    from . import _osh
    from .provenance import sha256_file
    from .roads import build_roads_table
    from .sources import ZONE_MARGIN_M, select_in_zone
    from .stats import road_stats

    path = Path(path)
    h = _osh.read_history(path)
    changes = h.change_times()
    points: list[HistoryPoint] = []
    prev: float | None = None
    for day in days:
        # 00:00 UTC of each date, as ohsome's timestamps, so both sources give the same series
        moment = datetime.combine(day, time(0, 0), tzinfo=timezone.utc)
        t = moment.timestamp()
        if prev is not None and bisect.bisect_right(changes, t) == bisect.bisect_right(changes, prev):
            # nothing changed since the previous date: the same network
            points.append(HistoryPoint(day, dict(points[-1].km_by_class), points[-1].named_streets))
            prev = t
            continue
        prev = t
        ways = h.ways_as_of(moment)
        roads = build_roads_table(ways, road_filter) if ways else None
        if roads is None or len(roads) == 0:
            points.append(HistoryPoint(day, {}, 0))
            continue
        # the pieces near the zone too, as every network's statistics take them (pairing at the edge)
        roads = select_in_zone(roads, zone, margin_m=ZONE_MARGIN_M)
        if len(roads) == 0:
            points.append(HistoryPoint(day, {}, 0))
            continue
        st = road_stats(roads, zone, subzones={})
        by_class = {name.split(":", 1)[1]: round(float(f.value), 3) for name, f in st.figures_by_name.items()
                    if name.startswith("class_km:") and f.value}
        points.append(HistoryPoint(day, dict(sorted(by_class.items())), int(st.figures_by_name["named_streets"].value)))
    prov = _provenance("osm-history", str(path), road_filter, zone.name, source_sha256=sha256_file(path),
                       osm_timestamp=h.last.strftime("%Y-%m-%dT%H:%M:%SZ") if h.last else None,
                       dates=f"{days[0].isoformat()}..{days[-1].isoformat()} ({len(days)} dates)" if days else "")
    defn = ("distinct street names inside the zone (name, else name:zh; NFKC, whitespace collapsed, ';' lists "
            "split), as icv stats counts them")
    return OsmHistory(zone.name, points, prov, defn)


def history_records(h: OsmHistory) -> list[dict[str, Any]]:
    """One row per date: ``date``, ``total_km``, ``<class>_km`` per class, ``named_streets``."""
    classes = h.classes
    rows = []
    for p in h.points:
        row: dict[str, Any] = {"date": p.day.isoformat(), "total_km": round(p.total_km, 3)}
        for c in classes:
            row[f"{c}_km"] = round(p.km_by_class.get(c, 0.0), 3)
        row["named_streets"] = p.named_streets
        rows.append(row)
    return rows


def series_records(h: OsmHistory) -> list[dict[str, Any]]:
    """The long series: one row per date and class (``total`` included), km, and named streets."""
    rows = []
    for p in h.points:
        for c in [*sorted(p.km_by_class), "total"]:
            rows.append({"date": p.day.isoformat(), "zone": h.zone, "highway": c,
                         "km": round(p.total_km if c == "total" else p.km_by_class[c], 3),
                         "named_streets": p.named_streets if c == "total" else None})
    return rows


def history_meta(h: OsmHistory) -> dict[str, Any]:
    """Provenance and definitions, for the table's notes."""
    return {**h.provenance, "named_streets": h.names_definition}


def _csv_text(text: Any) -> Any:
    # a cell opening with = + - @ is a formula to a spreadsheet: data stays data
    if isinstance(text, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def write_series(h: OsmHistory, out_dir: str | Path, stem: str = "osm_history") -> list[Path]:
    """Write ``STEM.csv`` (long series, provenance as ``#`` lines) and ``STEM.json``, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = series_records(h)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["date", "zone", "highway", "km", "named_streets"]
    w.writerow(cols)
    for r in rows:
        w.writerow([_csv_text("" if r[c] is None else r[c]) for c in cols])
    for k, v in history_meta(h).items():
        w.writerow([_csv_text(f"# {k}: {v}")])
    paths = [write_text(out_dir / f"{stem}.csv", buf.getvalue())]
    doc = {"series": rows, "meta": history_meta(h)}
    paths.append(write_text(out_dir / f"{stem}.json", json.dumps(doc, ensure_ascii=False, indent=2) + "\n"))
    return paths


# ---------------------------------------------------------------- the reported side

@dataclass(frozen=True)
class ReportedPoint:
    """One reported figure: date, value, unit, its source."""

    day: date
    value: float
    unit: str
    label: str  # the date at the source's precision
    source: str
    note: str = ""


def reported_series(place: str, figure: str = "test_road_km", *, figures: Any = None,
                    allow_unknown_place: bool = False) -> list[ReportedPoint]:
    """The reported values of ``figure`` for ``place`` over time (targets left out), with sources.

    With ``allow_unknown_place`` a place without reported figures gives an empty series
    (a test zone of one's own) instead of an InputError.
    """
    from . import reported

    if allow_unknown_place and place.casefold() not in {p.casefold() for p in reported.places(figures)}:
        return []
    return [ReportedPoint(r.as_of, float(r.value), r.unit, r.as_of_label, r.source.citation, r.notes or "")
            for r in reported.history(place, figure, figures=figures)]


# ---------------------------------------------------------------- charts

def _chart_title(h: OsmHistory, place: str) -> str:
    return f"{place}: reported test-road km and OSM km of zone {h.zone} over time"


def _matplotlib_figure(h: OsmHistory, reported: Sequence[ReportedPoint], place: str,
                       mark: date | None = None) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display here; never opens a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.6), dpi=100)
    xs = [p.day for p in h.points]
    ax.plot(xs, [p.total_km for p in h.points], color="#1f77b4", lw=2,
            label=f"OSM carriageway km in the zone ({h.provenance.get('filter')})")
    if reported:
        ax.step([r.day for r in reported], [r.value for r in reported], where="post", color="#d62728", lw=1.5,
                label=f"reported test-road km of {place}")
        ax.scatter([r.day for r in reported], [r.value for r in reported], color="#d62728", zorder=3, s=18)
        for i, r in enumerate(reported):
            if i and r.value == reported[i - 1].value:
                continue  # the same figure restated: one label
            ax.annotate(f"{r.value:,.1f}", (r.day, r.value), textcoords="offset points", xytext=(3, 4), fontsize=7)
    if mark is not None:  # the report's as-of date
        ax.axvline(mark, color="#555", ls="--", lw=1)
        ax.annotate(f"as of {mark.isoformat()}", (mark, ax.get_ylim()[1]), textcoords="offset points",
                    xytext=(-4, -12), ha="right", fontsize=8, color="#555")
    ax.set_ylabel("km")
    ax.set_title(_chart_title(h, place), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    foot = (f"OSM: {h.provenance.get('source_kind')} {h.provenance.get('source')}; {OSM_ATTRIBUTION}. "
            f"Reported: data/reported_figures.toml ({len(reported)} records; their sources are listed in the "
            f"HTML chart). icv {__version__}")
    fig.text(0.01, 0.01, foot, fontsize=6, color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _html_chart(h: OsmHistory, reported: Sequence[ReportedPoint], place: str, mark: date | None = None) -> str:
    """One self-contained HTML file: inline SVG, hover text from <title>, no external resources."""
    W, H, L, R, T, B = 900, 460, 70, 20, 40, 60
    days = [p.day for p in h.points] + [r.day for r in reported] + ([mark] if mark else [])
    if not days:
        days = [date.today()]
    d0, d1 = min(days), max(days)
    span = max((d1 - d0).days, 1)
    top = max([p.total_km for p in h.points] + [r.value for r in reported] + [1.0])
    tick = _nice_step(top / 5)
    vmax = tick * (int(top / tick) + 1)
    x = lambda d: L + (W - L - R) * (d - d0).days / span  # noqa: E731
    y = lambda v: H - B - (H - T - B) * v / vmax  # noqa: E731
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
             'role="img" font-family="sans-serif" font-size="11">',
             f'<text x="{L}" y="22" font-size="14">{e(_chart_title(h, place))}</text>']
    for i in range(int(round(vmax / tick)) + 1):  # y grid at round numbers
        v = tick * i
        parts.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for yr in range(d0.year, d1.year + 1):
        d = date(yr, 1, 1)
        if d0 <= d <= d1:
            parts.append(f'<line x1="{x(d):.1f}" x2="{x(d):.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>'
                         f'<text x="{x(d):.1f}" y="{H - B + 16}" text-anchor="middle">{yr}</text>')
    parts.append(f'<text x="16" y="{(T + H - B) / 2:.0f}" transform="rotate(-90 16 {(T + H - B) / 2:.0f})" '
                 'text-anchor="middle">km</text>')
    if h.points:
        pts = " ".join(f"{x(p.day):.1f},{y(p.total_km):.1f}" for p in h.points)
        parts.append(f'<polyline class="osm" points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
        for p in h.points:
            tip = f"{p.day.isoformat()}: {p.total_km:,.1f} km in OSM" + (
                f", {p.named_streets} named streets" if p.named_streets is not None else "")
            parts.append(f'<circle class="osm" cx="{x(p.day):.1f}" cy="{y(p.total_km):.1f}" r="3" '
                         f'fill="#1f77b4"><title>{e(tip)}</title></circle>')
    if reported:
        step = []
        for i, r in enumerate(reported):
            if i:
                step.append(f"{x(r.day):.1f},{y(reported[i - 1].value):.1f}")
            step.append(f"{x(r.day):.1f},{y(r.value):.1f}")
        step.append(f"{x(d1):.1f},{y(reported[-1].value):.1f}")
        parts.append(f'<polyline class="rep" points="{" ".join(step)}" fill="none" stroke="#d62728" '
                     'stroke-width="1.5"/>')
        for r in reported:
            tip = f"{r.label}: {r.value:,.1f} {r.unit} reported; source: {r.source}"
            tip += f" ({r.note})" if r.note else ""
            parts.append(f'<circle class="rep" cx="{x(r.day):.1f}" cy="{y(r.value):.1f}" r="4" fill="#d62728">'
                         f'<title>{e(tip)}</title></circle>')
    parts.append(f'<g font-size="11"><rect x="{L + 10}" y="{T + 4}" width="12" height="3" fill="#1f77b4"/>'
                 f'<text x="{L + 28}" y="{T + 9}">OSM carriageway km in the zone '
                 f'({e(str(h.provenance.get("filter")))})</text>'
                 f'<rect x="{L + 10}" y="{T + 20}" width="12" height="3" fill="#d62728"/>'
                 f'<text x="{L + 28}" y="{T + 25}">reported test-road km of {e(place)}</text></g>')
    if mark is not None:
        parts.append(f'<line class="mark" x1="{x(mark):.1f}" x2="{x(mark):.1f}" y1="{T}" y2="{H - B}" stroke="#555" '
                     f'stroke-dasharray="4 3"/><text x="{x(mark) - 4:.1f}" y="{T + 12}" text-anchor="end" '
                     f'fill="#555">as of {mark.isoformat()}</text>')
    parts.append("</svg>")
    rows = "".join(f"<tr><td>{e(r.label)}</td><td>{r.value:,.1f} {e(r.unit)}</td><td>{e(r.source)}</td>"
                   f"<td>{e(r.note)}</td></tr>" for r in reported)
    osm_rows = "".join(f"<tr><td>{p.day.isoformat()}</td><td>{p.total_km:,.3f}</td>"
                       f"<td>{'' if p.named_streets is None else p.named_streets}</td></tr>" for p in h.points)
    prov = "".join(f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in history_meta(h).items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{e(_chart_title(h, place))}</title>
<style>body{{font-family:sans-serif;margin:1em;max-width:960px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} #readout{{min-height:1.4em;color:#333}} label{{margin-right:1em}}</style>
</head><body>
<div><label><input type="checkbox" data-series="osm" checked> OSM km</label>
<label><input type="checkbox" data-series="rep" checked> reported km</label></div>
{"".join(parts)}
<p id="readout">Point at a dot for its date, value and source.</p>
<h3>Reported figures ({len(reported)})</h3>
<table><tr><th>as of</th><th>value</th><th>source</th><th>note</th></tr>{rows}</table>
<h3>OSM km over time ({len(h.points)} dates)</h3>
<table><tr><th>date</th><th>km</th><th>named streets</th></tr>{osm_rows}</table>
<h3>Provenance</h3><ul>{prov}</ul>
<p>Road data {e(OSM_ATTRIBUTION)}. Made by icv {e(__version__)}.</p>
<script>
document.querySelectorAll("input[data-series]").forEach(function (box) {{
  box.addEventListener("change", function () {{
    document.querySelectorAll("svg ." + box.dataset.series).forEach(function (el) {{
      el.style.display = box.checked ? "" : "none"; }}); }}); }});
document.querySelectorAll("svg circle").forEach(function (c) {{
  c.addEventListener("mouseenter", function () {{
    document.getElementById("readout").textContent = c.querySelector("title").textContent; }}); }});
</script>
</body></html>
"""


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    import math

    p = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * p for m in (1, 2, 5, 10) if m * p >= raw)


def write_charts(h: OsmHistory, reported: Sequence[ReportedPoint], out_dir: str | Path, *, place: str,
                 stem: str = "history_chart", png: bool = True, svg: bool = True,
                 mark: date | None = None) -> dict[str, Path]:
    """Write the chart of both histories: ``STEM.png``, ``STEM.svg`` (matplotlib) and ``STEM.html``.

    Every file is written atomically; the HTML needs nothing from the network. ``mark`` draws a
    dashed line at a date (the report's as-of date).

    Returns
    -------
    dict
        ``{"png": path, "svg": path, "html": path}`` for those written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if png or svg:
        import matplotlib.pyplot as plt

        fig = _matplotlib_figure(h, reported, place, mark)
        try:
            for kind, wanted in (("png", png), ("svg", svg)):
                if wanted:
                    target = out_dir / f"{stem}.{kind}"
                    with atomic_path(target) as tmp:
                        fig.savefig(tmp, format=kind, metadata=_chart_metadata(h, kind))
                    out[kind] = target
        finally:
            plt.close(fig)
    out["html"] = write_text(out_dir / f"{stem}.html", _html_chart(h, reported, place, mark))
    return out


def _chart_metadata(h: OsmHistory, kind: str) -> dict[str, str]:
    text = f"{h.provenance.get('source_kind')} {h.provenance.get('source')}; {OSM_ATTRIBUTION}; icv {__version__}"
    return {"Title": f"OSM history of {h.zone}", ("Description" if kind == "png" else "Description"): text}


# ---------------------------------------------------------------- report pieces

def report_history_section(charts: Mapping[str, str | Path], h: OsmHistory | None = None,
                           reported: Sequence[ReportedPoint] = ()) -> str:
    """Markdown section linking the history charts (file names relative to report.md)."""
    lines = ["## OSM and the reported figures over time", ""]
    names = {"html": "interactive chart (HTML)", "png": "chart (PNG)", "svg": "chart (SVG)",
             "csv": "OSM series (CSV)", "json": "OSM series (JSON)"}
    order = ["html", "png", "svg", "csv", "json"]
    if "png" in charts:
        png = Path(charts["png"]).name
        lines += [f"![OSM km and reported km over time]({png})", ""]
    for kind in sorted(charts, key=lambda k: order.index(k) if k in order else len(order)):
        name = Path(charts[kind]).name
        lines.append(f"- {names.get(kind, kind)}: [{md_escape(name)}]({name})")
    if h is not None and h.points:
        first, last = h.points[0], h.points[-1]
        lines += ["", f"- OSM: {first.total_km:,.1f} km on {first.day.isoformat()}, {last.total_km:,.1f} km on "
                  f"{last.day.isoformat()} ({md_escape(h.provenance.get('source_kind'))} "
                  f"{md_escape(h.provenance.get('source'))}; {md_escape(KM_DEFINITION)})"]
    if reported:
        lines.append("- reported: " + "; ".join(f"{r.value:,.1f} {md_escape(r.unit)} as of {r.label}"
                                                 for r in reported))
    return "\n".join(lines) + "\n"


def dates_compared_lines(reported_as_of: str | None, network_date: str | None, *, network_is_as_of: bool) -> list[str]:
    """Report lines saying which dates are compared (reported figures, OSM network)."""
    rep = (f"the latest reported figures at or before {reported_as_of}" if reported_as_of
           else "the latest reported figures")
    net = (f"OSM as of {network_date}" if network_is_as_of else
           f"OSM as it is in the source (data timestamp {network_date or 'unknown'})")
    return [f"- dates compared: {rep} (each row gives its own date) with {net}"]


def insert_section(markdown: str, section: str) -> str:
    """``section`` placed before the report's closing rule (``---``), or at the end."""
    at = markdown.rfind("\n---\n")
    if at < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    return markdown[:at] + "\n\n" + section.rstrip("\n") + "\n" + markdown[at:]


def load_history(source: str, zone: Any, road_filter: RoadFilter, time_range: str = DEFAULT_RANGE, *,
                 ohsome_url: str | None = None, timeout: float = 120, names: bool = True) -> OsmHistory:
    """The zone's OSM history from ``ohsome`` (the API) or from an OSM history file.

    Raises
    ------
    InputError
        A bad time range, or a source that holds no history.
    SourceUnavailableError
        The ohsome API fails.
    """
    from ._osh import is_history_path

    if source == "ohsome":
        return history_from_ohsome(zone, road_filter, time_range, url=ohsome_url, timeout=timeout, names=names)
    if is_history_path(source):
        return history_from_file(source, zone, road_filter, parse_time_range(time_range))
    raise InputError(f"no history in source {source!r}",
                     hint="give --source ohsome or an OSM history file (.osh.pbf, .osh, .osh.gz)")


def network_as_of(source: str, as_of: str | None, *, zone_name: str | None = None, filter_label: str | None = None,
                  cache_dir: Path | None = None) -> AsOf | None:
    """The date to load a report's network as of, or ``None`` for the source as it is.

    Overpass and history files are loaded as of ``as_of``; the cache only when
    ``icv pull --as-of`` stored that date (else the current cache is used, and
    the report says so). Other files have one date only.
    """
    if as_of is None:
        return None
    from ._osh import is_history_path

    if source == "overpass" or is_history_path(source):
        return parse_as_of(as_of)
    if source == "cache" and zone_name and filter_label:
        from . import _cache
        from ._paths import cache_dir as default_cache_dir

        try:
            when = parse_as_of(as_of)
        except InputError:  # a reported-figures date outside OSM's history: the current cache
            return None
        key = _cache.cache_key(zone_name, filter_label, when.label)
        if _cache.cache_exists(Path(cache_dir) if cache_dir else default_cache_dir(), key):
            return when
    return None


def is_history_source(source: str) -> bool:
    """Whether ``source`` names an OSM history file (.osh.pbf, .osh, .osh.gz, .osh.bz2)."""
    from ._osh import is_history_path

    return is_history_path(source)


def add_to_report(markdown: str, *, as_of: str | None, network_date: str | None, network_is_as_of: bool,
                  history: OsmHistory | None = None, place: str | None = None,
                  out_dir: str | Path | None = None, written: dict[str, Path] | None = None) -> str:
    """report.md with the dates it compares and, given a ``history``, its chart section.

    The dates line goes at the end of the report's header (before its first section); the
    series (CSV/JSON) and charts (PNG/SVG/HTML) are written to ``out_dir`` beside report.md and
    linked from a section before the closing rule. For ``geo.report`` / ``icv report``.

    Parameters
    ----------
    markdown
        The report as :func:`geo.report.report_markdown` wrote it.
    as_of
        The reported figures' as-of date (``None``: the latest).
    network_date, network_is_as_of
        The network's date: the as-of date it was loaded for (``network_is_as_of``), or its
        source's OSM data timestamp.
    history, place, out_dir
        The OSM history to chart beside the reported figures of ``place``.
    written
        When given, the files written are added to it (``history chart (html)``, ...).
    """
    dates = "\n".join(dates_compared_lines(as_of, network_date, network_is_as_of=network_is_as_of))
    at = markdown.find("\n\n## ")  # the end of the header's provenance list
    md = markdown[:at] + "\n" + dates + markdown[at:] if at >= 0 else markdown.rstrip("\n") + "\n\n" + dates + "\n"
    if history is None:
        return md
    if out_dir is None or place is None:
        raise ValueError("a history section needs out_dir and place")
    reported = reported_series(place, allow_unknown_place=True)
    files: dict[str, Path] = dict(zip(("csv", "json"), write_series(history, out_dir)))
    mark = None
    if as_of is not None:
        from .reported import parse_as_of as _parse

        try:
            mark = _parse(as_of)[0]
        except ValueError:
            mark = None
    files = {**write_charts(history, reported, out_dir, place=place, mark=mark), **files}
    if written is not None:
        written.update({f"history {'series' if k in ('csv', 'json') else 'chart'} ({k})": p for k, p in files.items()})
    return insert_section(md, report_history_section(files, history, reported))
