"""Test-road sets: which roads of a network are open for ICV testing.

A test-road set comes from a user file:

CSV of names or refs
    A header row naming at least one of the columns ``name``, ``ref`` or
    ``road`` (a name *or* a ref), and optionally ``from``, ``to`` and ``note``.
    One road per row, e.g.::

        name,ref,from,to,note
        Bo'yuan Road,,Jiasong North Road,Anting Road,phase 1
        ,G1503,,,expressway 21.5 km
        博园路,,,,

    Names match the street names of the road pieces (``name``, else
    ``name:zh``) or their English label (``name:en``), each split at ``;`` and
    normalized exactly as the statistics do (:mod:`geo.names`: NFKC, collapsed
    whitespace, case kept); refs match any ``;``-separated token of a piece's
    ``ref`` tag (:func:`geo.names.split_refs`: no spaces, upper case).
    ``from``/``to`` are kept as notes only:
    a named road counts with all its pieces in the network (OSM does not say
    where a published stretch starts), and the listing says so.
GeoJSON of geometries
    (Multi)LineStrings in WGS84 lon/lat (an optional ``name`` property labels
    them). A road piece counts as a test road when at least
    :data:`GEOMETRY_MIN_SHARE` of its length lies within
    :data:`GEOMETRY_TOLERANCE_M` of the set's lines (measured in the local UTM
    zone): a tolerance for two drawings of the same road, not a search radius.

Entries (rows or features) that match no road piece are reported in
:attr:`TestRoadMatch.unmatched`; they are never silently dropped.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .errors import InputError
from .provenance import sha256_file

#: A piece within this distance of a set's line is on that line (two drawings of one road).
GEOMETRY_TOLERANCE_M = 20.0
#: Share of a piece's length that must lie within the tolerance for it to count.
GEOMETRY_MIN_SHARE = 0.5

_NAME_COLUMNS = ("name", "ref", "road")
_NOTE_COLUMNS = ("from", "to", "note")
_GEOJSON_SUFFIXES = (".geojson", ".json")


def entry_names(text: str | None) -> tuple[str, ...]:
    """The normalized names of a set's name cell (:func:`geo.names.split_names`)."""
    from .names import split_names

    return split_names(text)


def entry_refs(text: str | None) -> tuple[str, ...]:
    """The normalized refs of a set's ref cell (:func:`geo.names.split_refs`: ``g 1503`` -> ``G1503``)."""
    from .names import split_refs

    return split_refs(text)


@dataclass(frozen=True)
class TestRoadEntry:
    """One row of a CSV test-road set (or one feature of a GeoJSON set).

    Attributes
    ----------
    line
        Line number in the file (the header is line 1), or feature number (1-based).
    name, ref
        What the row names; at least one is set (a ``road`` cell fills both).
    from_note, to_note, note
        Free text kept for the listing; not used to cut roads.
    """

    __test__ = False  # not a pytest test class

    line: int
    name: str | None = None
    ref: str | None = None
    from_note: str | None = None
    to_note: str | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        """``line 3: 博园路 (ref G1503)`` for listings."""
        what = " / ".join(x for x in (self.name, f"ref {self.ref}" if self.ref else None) if x)
        if self.from_note or self.to_note:
            what += f" (from {self.from_note or '?'} to {self.to_note or '?'})"
        return f"line {self.line}: {what}"


@dataclass
class TestRoadSet:
    """A set of roads open for testing, as read from a file.

    Attributes
    ----------
    kind
        ``names`` (CSV) or ``geometries`` (GeoJSON).
    entries
        The rows (CSV) or one entry per feature (GeoJSON: ``name`` from its property).
    geometries
        The GeoJSON lines (EPSG:4326), one row per entry; None for a CSV set.
    source, source_sha256
        The file and its sha256.
    """

    __test__ = False

    kind: str
    entries: list[TestRoadEntry]
    geometries: gpd.GeoDataFrame | None = None
    source: str | None = None
    source_sha256: str | None = None

    @property
    def label(self) -> str:
        """One line for provenance: file, kind and size."""
        n = len(self.entries)
        what = f"{n} road name/ref rows" if self.kind == "names" else f"{n} line features"
        return f"{self.source or '(in memory)'} ({what})"


@dataclass
class TestRoadMatch:
    """Which road pieces a test-road set selects.

    Attributes
    ----------
    mask
        Boolean Series on the roads table's index: True for test-road pieces.
    pieces_per_entry
        Number of pieces each entry matched, in entry order.
    unmatched
        Entries that match no piece.
    """

    __test__ = False

    mask: pd.Series
    pieces_per_entry: list[int]
    unmatched: list[TestRoadEntry] = field(default_factory=list)


def _cell(row: dict[str, str | None], key: str) -> str | None:
    v = row.get(key)
    if v is None:
        return None
    v = " ".join(v.split())
    return v or None


def _read_csv(path: Path) -> list[TestRoadEntry]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the test-road file is not UTF-8 text", where=str(path),
                         hint="save it as UTF-8 CSV") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise InputError(f"not a readable CSV: {e}", where=str(path), hint="check quotes and separators") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError("the test-road file is empty", where=str(path),
                         hint="give a CSV with a header row name,ref,from,to,note and one road per row")
    header = [h.strip().casefold() for h in rows[0]]
    if not any(h in _NAME_COLUMNS for h in header):
        raise InputError(f"no name, ref or road column in the header {','.join(rows[0])!r}", where=str(path),
                         hint="the first row must name the columns, e.g. name,ref,from,to,note")
    entries: list[TestRoadEntry] = []
    for lineno, raw in enumerate(rows[1:], start=2):
        row = {h: (raw[i] if i < len(raw) else None) for i, h in enumerate(header)}
        name, ref, road = _cell(row, "name"), _cell(row, "ref"), _cell(row, "road")
        if road and not name:
            name = road
        if road and not ref:
            ref = road
        if not name and not ref:
            raise InputError(f"row {lineno} names no road (empty name/ref/road)", where=str(path),
                             hint="give a name or a ref on every row, or delete the row")
        entries.append(TestRoadEntry(lineno, name, ref, _cell(row, "from"), _cell(row, "to"), _cell(row, "note")))
    if not entries:
        raise InputError("the test-road file has a header but no rows", where=str(path),
                         hint="add one road per row")
    return entries


def _read_geojson(path: Path) -> tuple[list[TestRoadEntry], gpd.GeoDataFrame]:
    try:
        json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not valid GeoJSON ({e})", where=str(path), hint="give a GeoJSON FeatureCollection") from None
    try:
        gdf = gpd.read_file(path)
    except Exception as e:  # pyogrio's errors vary by driver
        raise InputError(f"not readable as GeoJSON ({e})", where=str(path),
                         hint="give a GeoJSON FeatureCollection of LineStrings") from None
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(4326)
    gdf = gdf.set_crs(4326, allow_override=True)
    kinds = set(gdf.geometry.geom_type.dropna())
    bad = kinds - {"LineString", "MultiLineString"}
    if gdf.empty or bad or gdf.geometry.is_empty.any() or gdf.geometry.isna().any():
        raise InputError("a GeoJSON test-road set must hold (Multi)LineString features only"
                         + (f", not {sorted(bad)[0]}" if bad else ""), where=str(path),
                         hint="give the test roads as lines in WGS84 lon/lat")
    xy = shapely.get_coordinates(gdf.geometry.values)
    if not (np.all(np.abs(xy[:, 0]) <= 180) and np.all(np.abs(xy[:, 1]) <= 90)):
        raise InputError("coordinates are not lon/lat degrees", where=str(path),
                         hint="give WGS84 lon/lat (EPSG:4326)")
    names = gdf["name"] if "name" in gdf.columns else pd.Series([None] * len(gdf))
    refs = gdf["ref"] if "ref" in gdf.columns else pd.Series([None] * len(gdf))
    entries = [
        TestRoadEntry(i + 1, name=(str(n) if isinstance(n, str) and n.strip() else f"feature {i + 1}"),
                      ref=(str(r) if isinstance(r, str) and r.strip() else None))
        for i, (n, r) in enumerate(zip(names, refs, strict=True))
    ]
    return entries, gdf[["geometry"]].reset_index(drop=True)


def load_test_roads(path: str | Path) -> TestRoadSet:
    """Read a test-road set from a CSV (names/refs) or a GeoJSON (lines) file.

    Parameters
    ----------
    path
        ``.csv`` (or ``.txt``) with a header row, or ``.geojson``/``.json``.

    Returns
    -------
    TestRoadSet

    Raises
    ------
    InputError
        Missing file, unknown suffix, no name/ref/road column, an empty row, an
        empty file, bad GeoJSON or non-line geometries.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("test-road file not found", where=str(p), hint="check the --test-roads path")
    if p.is_dir():
        raise InputError("is a folder, not a test-road file", where=str(p), hint="give a CSV or GeoJSON file")
    low = p.name.lower()
    if low.endswith(_GEOJSON_SUFFIXES):
        entries, geoms = _read_geojson(p)
        return TestRoadSet("geometries", entries, geoms, str(p), sha256_file(p))
    if low.endswith((".csv", ".txt")):
        return TestRoadSet("names", _read_csv(p), None, str(p), sha256_file(p))
    raise InputError(f"unknown kind of test-road file {p.suffix or p.name!r}", where=str(p),
                     hint="give a .csv of names/refs or a .geojson of lines")


def _match_names(roads: gpd.GeoDataFrame, entries: list[TestRoadEntry]) -> tuple[np.ndarray, list[int]]:
    from .names import split_names, split_refs, street_names

    def col(name: str) -> list[object]:
        return roads[name].tolist() if name in roads.columns else [None] * len(roads)

    # normalized name / ref -> piece positions
    by_name: dict[str, set[int]] = {}
    by_ref: dict[str, set[int]] = {}
    for pos, (nm, zh, en, ref) in enumerate(zip(col("name"), col("name_zh"), col("name_en"), col("ref"),
                                                strict=True)):
        for key in (*street_names(nm, zh), *split_names(en)):
            by_name.setdefault(key, set()).add(pos)
        for tok in split_refs(ref):
            by_ref.setdefault(tok, set()).add(pos)
    mask = np.zeros(len(roads), dtype=bool)
    counts: list[int] = []
    for e in entries:
        hit: set[int] = set()
        for key in entry_names(e.name):
            hit |= by_name.get(key, set())
        for tok in entry_refs(e.ref):
            hit |= by_ref.get(tok, set())
        if hit:
            mask[list(hit)] = True
        counts.append(len(hit))
    return mask, counts


def _match_geometries(roads: gpd.GeoDataFrame, lines: gpd.GeoDataFrame,
                      tolerance_m: float, min_share: float) -> tuple[np.ndarray, list[int]]:
    from .stats import local_utm_crs  # the one UTM choice of every measurement

    crs = local_utm_crs(shapely.box(*(roads if len(roads) else lines).total_bounds))
    r = np.asarray(roads.geometry.to_crs(crs).values, dtype=object)
    g = np.asarray(lines.geometry.to_crs(crs).values, dtype=object)
    corridors = shapely.buffer(g, tolerance_m, quad_segs=4)
    tree = shapely.STRtree(corridors)
    piece_idx, line_idx = tree.query(r, predicate="intersects")
    lengths = shapely.length(r)
    mask = np.zeros(len(roads), dtype=bool)
    counts = [0] * len(lines)
    if len(piece_idx):
        # share of each piece inside the union of the corridors it touches
        for p in np.unique(piece_idx):
            ls = line_idx[piece_idx == p]
            inside = shapely.length(shapely.intersection(r[p], shapely.union_all(corridors[ls])))
            if lengths[p] > 0 and inside / lengths[p] >= min_share:
                mask[p] = True
                for li in ls:
                    counts[li] += 1
    return mask, counts


def match_test_roads(roads: gpd.GeoDataFrame, test_set: TestRoadSet, *,
                     tolerance_m: float = GEOMETRY_TOLERANCE_M,
                     min_share: float = GEOMETRY_MIN_SHARE) -> TestRoadMatch:
    """Mark the pieces of ``roads`` that a test-road set selects.

    Parameters
    ----------
    roads
        The roads table (EPSG:4326).
    test_set
        From :func:`load_test_roads`.
    tolerance_m, min_share
        For a GeoJSON set: a piece counts when ``min_share`` of its length lies
        within ``tolerance_m`` of the set's lines.

    Returns
    -------
    TestRoadMatch
        ``mask`` on ``roads.index``; entries that matched no piece in ``unmatched``.
    """
    if test_set.kind == "geometries":
        assert test_set.geometries is not None
        mask, counts = _match_geometries(roads, test_set.geometries, tolerance_m, min_share)
    else:
        mask, counts = _match_names(roads, test_set.entries)
    unmatched = [e for e, n in zip(test_set.entries, counts, strict=True) if n == 0]
    return TestRoadMatch(pd.Series(mask, index=roads.index, name="test_road"), counts, unmatched)
