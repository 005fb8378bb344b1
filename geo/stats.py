"""Road statistics of a test zone.

Pure functions on a roads table (:mod:`geo.roads`) and a zone outline. The main
entry point is :func:`road_stats`; it returns a :class:`RoadStats` holding every
figure with its unit and definition (:meth:`RoadStats.figures`) and the tables
behind them (the clipped pieces, the junctions), and :func:`explain` lists the
pieces behind one figure.

Measurement
-----------
* Every length is measured in metres in a projected CRS: the local UTM zone of
  the zone's centroid (:func:`local_utm_crs`: EPSG:32651 for Shanghai,
  EPSG:32635 for Helsinki). Within a UTM zone the projected length differs from
  the geodesic one by less than 0.1 %.
* Every length is clipped at the zone boundary: a piece crossing the edge counts
  with the part inside only.
* The zone area is measured in an Albers equal-area projection centred on the
  zone (:func:`geo.zones.zone_area_km2`, the same area the zone files carry).

Figures
-------
``carriageway_km``
    Every drivable carriageway inside the zone: the sum of the clipped piece
    lengths. A two-way road is one piece and counts once; a dual carriageway is
    two one-way pieces and counts twice.
``centerline_km``
    Road length with each dual carriageway counted once. Pairing: two one-way
    pieces are the two carriageways of one road when they share a normalized
    name or ref (:mod:`geo.names`), run in opposite directions (bearings 180°
    apart within ``pair_angle_deg``, default 30°) and lie within
    ``pair_distance_m`` (default 40 m). Measurement: each one-way piece is cut
    into its straight segments; the part of a segment that runs alongside a
    partner is the projection onto it of the partner segments' parts within
    ``pair_distance_m`` of its line (their union, so overlapping partners count
    once). That *paired* length counts half, so the two sides of a dual
    carriageway together count once, and any unpaired stretch (where one side
    runs on alone) counts fully::

        centerline = carriageway - 1/2 * paired length (clipped at the zone)

    Unnamed one-way pieces without a ref are never paired: nothing says they
    belong to one road. Roundabout pieces (``junction=roundabout|circular``)
    are never paired: the opposite arcs of a small named roundabout run
    antiparallel within ``pair_distance_m`` but are one carriageway. Two
    one-way ways joined end to start by a U-turn stay two pieces, and a named
    one-way piece that turns back on itself is cut at its turn
    (:mod:`geo.roads`), so the two sides pair like any dual carriageway.

    Pairing and junction clustering see the whole table given, and
    :func:`geo.sources.load_network` keeps the pieces within
    :data:`geo.sources.ZONE_MARGIN_M` of the zone for them
    (:attr:`geo.sources.Network.stats_roads`), so a zone edge running between
    two carriageways, or through a junction, changes no pairing and no
    cluster: the zone only clips the lengths afterwards.
``dual_carriageway_km``
    The paired length itself (both sides).
``class_km:CLASS`` / ``class_centerline_km:CLASS``
    Carriageway / centerline km per ``highway`` class.
``ref_km:REF`` / ``ref_centerline_km:REF``
    Carriageway / centerline km per route ref. A piece with several refs
    (``G2;G1503``, a shared section) counts in full under each ref, so the ref
    figures can add up to more than the total.
``expressway_km``
    Centerline km of ``highway=motorway``; ``motorway_link`` (ramps) is
    excluded, as expressway lengths are reported as route lengths.
``named_streets``
    Distinct normalized street names (``name`` else ``name:zh``, split at
    ``;``; see :mod:`geo.names`) of the pieces with a part inside the zone.
``unnamed_km``
    Carriageway km of pieces with neither ``name`` nor ``name:zh`` (ref-only
    expressways included).
``intersections``
    Junctions of three or more street ends (a node where at least three piece
    ends meet; a road passing through counts two ends), with junction nodes
    closer than ``2 * intersection_tolerance_m`` merged transitively, as
    OSMnx merges overlapping buffers of that radius. A merged junction counts
    where the mean of its nodes lies in the zone. Street ends are counted on the
    whole table given, so a junction just inside the edge keeps its outside arms.
``intersections_osmnx``
    What ``osmnx.consolidate_intersections(G, tolerance, dead_ends=False)``
    returns on the graph of the same pieces (:func:`geo.roads.roads_to_graph`),
    reproduced node for node (:func:`osmnx_clusters`): every node but dead
    ends (OSMnx's street count, :func:`osmnx_street_counts`), so also nodes
    where only two pieces meet; buffers merged; a cluster split into the parts
    its own pieces connect. Counted where the mean of its nodes lies in the zone.
``junction_nodes``
    The junction nodes before merging.
``carriageway_density`` / ``intersection_density``
    Carriageway km and intersections per km² of zone area.

With sub-zones, every figure is computed again per sub-zone (figure names
``subzone:NAME/FIGURE``).

Use (``icv stats``, ``icv compare``, ``icv report``)
----------------------------------------------------
::

    stats = road_stats(net, zone)            # net: geo.sources.Network; zone: geo.zones.Zone
    stats.value("centerline_km")              # full-precision value
    stats.figure("expressway_km")             # Figure(figure, value, unit, definition)
    stats.figures(detail=False, subzones=True)  # records for a table
    explain(stats, "ref_centerline_km:G2")    # DataFrame of the pieces behind a figure
    breakdown(stats, "class")                 # rows per class, ref or sub-zone
    stats_meta(stats)                         # zone, CRS, tolerances, provenance summary

Reported figures map naturally to: road km of test roads -> ``centerline_km``
(``carriageway_km`` beside it), "streets" -> ``named_streets``, expressway km ->
``expressway_km`` (or ``ref_centerline_km:G2`` + ``ref_centerline_km:G1503``),
district area -> ``zone_area_km2``, intersections -> ``intersections``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from .errors import InputError
from .names import english_labels_of, refs_of, street_names_of
from .provenance import Provenance
from .zones import Zone, zone_area_km2

#: Classes counted as expressway (``motorway_link`` is deliberately not).
EXPRESSWAY_CLASSES = ("motorway",)

#: Figure name -> unit, for the base figures (class/ref figures are km).
UNITS: dict[str, str] = {
    "zone_area_km2": "km²",
    "pieces": "pieces",
    "carriageway_km": "km",
    "centerline_km": "km",
    "dual_carriageway_km": "km",
    "expressway_km": "km",
    "named_streets": "names",
    "unnamed_km": "km",
    "intersections": "junctions",
    "junction_nodes": "nodes",
    "intersections_osmnx": "junctions",
    "carriageway_density": "km/km²",
    "intersection_density": "1/km²",
    "class_km": "km",
    "class_centerline_km": "km",
    "ref_km": "km",
    "ref_centerline_km": "km",
}
_GROUPED = ("class_km", "class_centerline_km", "ref_km", "ref_centerline_km")


@dataclass(frozen=True)
class StatsParams:
    """Tolerances of the statistics (see the module docstring)."""

    pair_distance_m: float = 40.0
    pair_angle_deg: float = 30.0
    intersection_tolerance_m: float = 15.0

    def __post_init__(self) -> None:
        finite = all(math.isfinite(v) for v in (self.pair_distance_m, self.pair_angle_deg,
                                                 self.intersection_tolerance_m))
        if not (finite and self.pair_distance_m > 0 and 0 < self.pair_angle_deg < 90
                and self.intersection_tolerance_m >= 0):
            raise InputError(f"bad statistics tolerances {self}",
                             hint="pair distance > 0 m, pair angle in (0, 90) degrees, intersection tolerance >= 0 m")


@dataclass(frozen=True)
class Figure:
    """One computed figure: a value with its unit and what it means."""

    figure: str
    value: float | int | None
    unit: str
    definition: str

    def to_record(self) -> dict[str, Any]:
        """``{figure, value, unit, definition}`` (km rounded to the metre)."""
        v = self.value
        if isinstance(v, float):
            v = round(v, 3)
        return {"figure": self.figure, "value": v, "unit": self.unit, "definition": self.definition}


@dataclass
class RoadStats:
    """Road statistics of one zone (and its sub-zones).

    Attributes
    ----------
    zone_name
        Name of the zone (``None`` when no zone was given: nothing clipped).
    crs
        The projected CRS of every length (``EPSG:32651``...).
    area_km2
        Equal-area zone area, or ``None`` without a zone.
    params
        The tolerances used.
    pieces
        One row per road piece with a part inside the zone, in ``crs``, geometry
        clipped: ``piece`` (row of the roads table), ``osm_way_ids``,
        ``highway``, ``name`` (normalized names joined by ``;``), ``names``
        (tuple), ``name_en`` (English label), ``ref`` (normalized refs joined
        by ``;``), ``refs`` (tuple), ``oneway``, ``length_m`` (whole piece),
        ``clipped_m``, ``paired_m`` (clipped length running alongside a
        partner), ``centerline_m``, ``partners`` (pieces it is paired with).
    junctions
        Merged intersections in the zone: ``junction``, ``lon``, ``lat``,
        ``nodes`` (node ids), ``node_count``, ``street_ends``.
    junction_nodes
        Junction nodes (three or more street ends) in the zone: ``node``,
        ``lon``, ``lat``, ``street_ends``, ``junction``.
    figures_by_name
        Every figure by name.
    subzones
        Sub-zone name -> its own :class:`RoadStats`.
    provenance
        Where the roads table comes from.
    osmnx_junctions
        The clusters ``intersections_osmnx`` counts: ``junction``, ``lon``,
        ``lat``, ``nodes``, ``node_count``.
    """

    zone_name: str | None
    crs: str
    area_km2: float | None
    params: StatsParams
    pieces: gpd.GeoDataFrame
    junctions: pd.DataFrame
    junction_nodes: pd.DataFrame
    figures_by_name: dict[str, Figure]
    subzones: dict[str, RoadStats] = field(default_factory=dict)
    provenance: Provenance | None = None
    osmnx_junctions: pd.DataFrame | None = None

    def __repr__(self) -> str:  # short: the headline figures, not the piece tables
        km = self.figures_by_name.get("carriageway_km")
        return (f"RoadStats(zone={self.zone_name!r}, pieces={len(self.pieces):,}, "
                f"carriageway_km={round(km.value, 3) if km and km.value is not None else None}, crs={self.crs!r})")

    def figure(self, name: str) -> Figure:
        """One figure by name (``subzone:NAME/FIGURE`` for a sub-zone's).

        Raises
        ------
        InputError
            If there is no such figure.
        """
        stats, base = self._resolve(name)
        try:
            return stats.figures_by_name[base]
        except KeyError:
            raise InputError(f"no figure {name!r}", hint=_figure_hint(stats, base)) from None

    def value(self, name: str) -> float | int | None:
        """The value of one figure (full precision)."""
        return self.figure(name).value

    def figures(self, detail: bool = True, subzones: bool = False) -> list[dict[str, Any]]:
        """Figure records ``{figure, value, unit, definition}``.

        Parameters
        ----------
        detail
            Include the per-class and per-ref figures.
        subzones
            Include every sub-zone's figures (``subzone:NAME/FIGURE``).
        """
        out = [f.to_record() for name, f in self.figures_by_name.items()
               if detail or name.split(":")[0] not in _GROUPED]
        if subzones:
            for zname, sub in self.subzones.items():
                for rec in sub.figures(detail=detail):
                    out.append({**rec, "figure": f"subzone:{zname}/{rec['figure']}"})
        return out

    def _resolve(self, name: str) -> tuple[RoadStats, str]:
        if name.startswith("subzone:"):
            rest = name[len("subzone:"):]
            # longest sub-zone name first: a name may itself contain "/"
            for zname in sorted(self.subzones, key=len, reverse=True):
                if rest.startswith(zname + "/"):
                    return self.subzones[zname], rest[len(zname) + 1:]
            known = ", ".join(self.subzones) or "none"
            raise InputError(f"no sub-zone figure {name!r}", hint=f"write subzone:NAME/FIGURE; sub-zones: {known}")
        return self, name


def _figure_hint(stats: RoadStats, base: str) -> str:
    prefix = base.split(":")[0]
    names = [n for n in stats.figures_by_name if n.split(":")[0] == prefix]
    if names:
        return "known: " + ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    return "known figures: " + ", ".join(n for n in UNITS if n not in _GROUPED) + \
        ", class_km:CLASS, class_centerline_km:CLASS, ref_km:REF, ref_centerline_km:REF"


# ---------------------------------------------------------------- CRS and area

def local_utm_crs(geometry: BaseGeometry) -> pyproj.CRS:
    """The WGS84 UTM CRS of the zone holding ``geometry``'s centroid (lon/lat in).

    The zone number is computed from the longitude (6° zones), north or south
    from the latitude: the same choice as ``GeoSeries.estimate_utm_crs()`` for a
    point, without its CRS-database query (UTM's Norway/Svalbard exceptions
    are not applied).

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> local_utm_crs(Point(121.25, 31.35)).to_epsg()
    32651
    """
    c = geometry.centroid if not geometry.is_empty else None
    if c is None or not (-180 <= c.x <= 180 and -80 <= c.y <= 84):
        raise InputError("cannot choose a UTM zone: the geometry is empty or not lon/lat",
                         hint="give lon/lat (EPSG:4326) data, or a projected CRS explicitly")
    number = min(int((c.x + 180.0) // 6.0) + 1, 60)
    return pyproj.CRS.from_epsg((32600 if c.y >= 0 else 32700) + number)


_TRANSFORMERS = threading.local()


def _transformer(src: Any, dst: Any) -> pyproj.Transformer:
    """A cached lon/lat-order transformer, one cache per thread (transformers are not shared)."""
    cache = getattr(_TRANSFORMERS, "cache", None)
    if cache is None:
        cache = _TRANSFORMERS.cache = {}
    key = tuple(c.srs if isinstance(c, pyproj.CRS) else str(c) for c in (src, dst))
    tr = cache.get(key)
    if tr is None:
        tr = cache[key] = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    return tr


def _project(geoms: np.ndarray, crs: pyproj.CRS) -> np.ndarray:
    tr = _transformer(4326, crs)

    def fwd(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, fwd)


def _unproject_xy(xy: np.ndarray, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    if len(xy) == 0:
        return np.zeros(0), np.zeros(0)
    lon, lat = _transformer(crs, 4326).transform(xy[:, 0], xy[:, 1])
    return np.asarray(lon), np.asarray(lat)


# ---------------------------------------------------------------- dual carriageways

@dataclass
class Pairing:
    """Paired stretches of one-way lines (see :func:`pair_carriageways`).

    Attributes
    ----------
    start, end
        ``(k, 2)`` arrays: the straight stretches of the lines that run
        alongside a partner (projected metres, in the lines' direction).
    segment_line
        For each stretch, the index of its line.
    partners
        ``(k, 2)`` int array: pairs ``(i, j)`` of line indices paired with each other.
    """

    start: np.ndarray
    end: np.ndarray
    segment_line: np.ndarray
    partners: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Length (m) of each stretch."""
        d = self.end - self.start
        return np.hypot(d[:, 0], d[:, 1])

    def segments(self, which: np.ndarray | None = None) -> np.ndarray:
        """The stretches (all, or those ``which`` selects) as LineStrings."""
        start, end = (self.start, self.end) if which is None else (self.start[which], self.end[which])
        return shapely.linestrings(np.stack([start, end], axis=1))

    def paired_length(self, n: int) -> np.ndarray:
        """Paired length (m) of each of ``n`` lines."""
        return np.bincount(self.segment_line, weights=self.lengths, minlength=n)


def pair_carriageways(lines: np.ndarray, keys: Sequence[Sequence[str]], *, distance: float = 40.0,
                      angle_deg: float = 30.0) -> Pairing:
    """Find the stretches of one-way lines that run alongside an opposite one of the same road.

    Parameters
    ----------
    lines
        One-way LineStrings in projected metres, each in its direction of travel.
    keys
        For each line, the names/refs identifying its road; lines pair only
        when they share one.
    distance
        Maximum distance between the two carriageways (m).
    angle_deg
        Maximum deviation of the two bearings from exactly opposite (degrees).

    Returns
    -------
    Pairing
        For each segment of a line, the union of the projections onto it of the
        partner segments' parts lying within ``distance`` of its line.
    """
    key_ids: dict[str, int] = {}
    kl: list[int] = []
    kk: list[int] = []
    for i, ks in enumerate(keys):
        for k in ks:
            kl.append(i)
            kk.append(key_ids.setdefault(k, len(key_ids)))
    return _pair(lines, np.asarray(kl, dtype=np.int64), np.asarray(kk, dtype=np.int64), distance, angle_deg)


def _pair(lines: np.ndarray, key_line: np.ndarray, key_id: np.ndarray, distance: float,
          angle_deg: float) -> Pairing:
    """:func:`pair_carriageways` with the keys given as pairs (line index, key id)."""
    empty = Pairing(np.zeros((0, 2)), np.zeros((0, 2)), np.empty(0, dtype=np.int64), np.empty((0, 2), dtype=np.int64))
    n = len(lines)
    if n < 2:
        return empty
    has_key = np.zeros(n, dtype=bool)
    has_key[key_line] = True  # lines without any key never pair
    if has_key.sum() < 2:
        return empty
    xy, idx = shapely.get_coordinates(lines, return_index=True)
    cont = (idx[:-1] == idx[1:]) & has_key[idx[:-1]]
    p0, p1, seg_line = xy[:-1][cont], xy[1:][cont], idx[:-1][cont]
    d = p1 - p0
    seg_len = np.hypot(d[:, 0], d[:, 1])
    ok = seg_len > 1e-9
    p0, p1, seg_line, d, seg_len = p0[ok], p1[ok], seg_line[ok], d[ok], seg_len[ok]
    if len(p0) < 2:
        return empty
    u = d / seg_len[:, None]
    # candidates: bounding boxes within ``distance``; the band test below is the exact criterion
    lo_xy, hi_xy = np.minimum(p0, p1), np.maximum(p0, p1)
    tree = shapely.STRtree(shapely.box(lo_xy[:, 0], lo_xy[:, 1], hi_xy[:, 0], hi_xy[:, 1]))
    a, b = tree.query(shapely.box(lo_xy[:, 0] - distance, lo_xy[:, 1] - distance,
                                  hi_xy[:, 0] + distance, hi_xy[:, 1] + distance))
    keep = (seg_line[a] != seg_line[b]) & (np.einsum("ij,ij->i", u[a], u[b]) <= -math.cos(math.radians(angle_deg)))
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return empty
    # same road: the two lines share a key
    n_keys = int(key_id.max()) + 1
    line_key = np.unique(key_line * n_keys + key_id)  # sorted codes of (line, key)
    kl, kid = line_key // n_keys, line_key % n_keys
    first = np.searchsorted(kl, np.arange(n))
    count = np.bincount(kl, minlength=n)
    cand = np.unique(seg_line[a] * n + seg_line[b])
    p, q = cand // n, cand % n
    c = count[p]
    rep_ = np.repeat(np.arange(len(cand)), c)
    keys_p = kid[np.repeat(first[p], c) + np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)]
    want = q[rep_] * n_keys + keys_p
    pos = np.minimum(np.searchsorted(line_key, want), len(line_key) - 1)
    same = np.unique(cand[rep_[line_key[pos] == want]])
    keep = np.isin(seg_line[a] * n + seg_line[b], same)
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return empty
    # the part of partner segment b within ``distance`` of a's line, projected onto a; kept
    # where the projection falls on a, so every counted point of a has b within ``distance``
    P, ua = p0[a], u[a]
    na = np.column_stack([-ua[:, 1], ua[:, 0]])
    A, B = p0[b] - P, p1[b] - P
    sA, sB = np.einsum("ij,ij->i", A, ua), np.einsum("ij,ij->i", B, ua)
    oA, oB = np.einsum("ij,ij->i", A, na), np.einsum("ij,ij->i", B, na)
    do = oB - oA
    flat = np.abs(do) < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = (-distance - oA) / do
        l2 = (distance - oA) / do
    lo = np.where(flat, np.where(np.abs(oA) <= distance, 0.0, 1.0), np.clip(np.minimum(l1, l2), 0.0, 1.0))
    hi = np.where(flat, np.where(np.abs(oA) <= distance, 1.0, 0.0), np.clip(np.maximum(l1, l2), 0.0, 1.0))
    s_lo, s_hi = sA + lo * (sB - sA), sA + hi * (sB - sA)
    start = np.clip(np.minimum(s_lo, s_hi), 0.0, seg_len[a])
    end = np.clip(np.maximum(s_lo, s_hi), 0.0, seg_len[a])
    keep = (hi > lo) & (end - start > 1e-9)
    a, b, start, end = a[keep], b[keep], start[keep], end[keep]
    if len(a) == 0:
        return empty
    partners = np.unique(np.column_stack([seg_line[a], seg_line[b]]), axis=0)
    # union of the intervals on each segment
    order = np.lexsort((start, a))
    a, start, end = a[order], start[order], end[order]
    reach = pd.Series(end).groupby(a).cummax().to_numpy()
    new = np.ones(len(a), dtype=bool)
    new[1:] = (a[1:] != a[:-1]) | (start[1:] > reach[:-1])
    firsts = np.flatnonzero(new)
    blo = np.minimum.reduceat(start, firsts)
    bhi = np.maximum.reduceat(end, firsts)
    bseg = a[firsts]
    q0 = p0[bseg] + u[bseg] * blo[:, None]
    q1 = p0[bseg] + u[bseg] * bhi[:, None]
    return Pairing(q0, q1, seg_line[bseg], partners)


# ---------------------------------------------------------------- intersections

def cluster_points(xy: np.ndarray, tolerance: float) -> np.ndarray:
    """Cluster labels (0..k-1) of points merged when within ``2 * tolerance``, transitively.

    The same merging as buffering each point by ``tolerance`` and dissolving
    overlapping buffers (``osmnx.consolidate_intersections``), done with a grid
    of ``2 * tolerance`` cells (close points lie in neighbouring cells) and
    connected components, in numpy.
    """
    n = len(xy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if tolerance <= 0:
        return np.arange(n)
    a, b = _close_pairs(xy, 2 * tolerance)
    return _components(n, a, b)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component labels (0..k-1) of ``n`` items linked by the pairs ``(a[i], b[i])``."""
    labels = np.arange(n)
    while len(a):
        m = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        while True:  # pointer jumping: each label points to its root
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, labels):
            break
        labels = new
    return np.unique(labels, return_inverse=True)[1] if n else np.zeros(0, dtype=np.int64)


def osmnx_street_counts(nodes: np.ndarray, u: np.ndarray, v: np.ndarray, oneway: np.ndarray) -> np.ndarray:
    """``osmnx.stats.count_streets_per_node`` of :func:`geo.roads.roads_to_graph`'s graph, for sorted ``nodes``.

    OSMnx counts the edges of the undirected view, where ``u->v`` and
    ``v->u`` edges with the same key merge: between two nodes that makes
    ``max(edges u->v, edges v->u)`` streets (two one-way pieces between the
    same two nodes, a U-turn, count as one street), and a node's self-loops
    count 2 together, however many there are.
    """
    fwd_u = np.concatenate([u, v[~oneway]])
    fwd_v = np.concatenate([v, u[~oneway]])
    loop = fwd_u == fwd_v
    out = np.zeros(len(nodes), dtype=np.int64)
    a, b = fwd_u[~loop], fwd_v[~loop]
    if len(a):
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        # node pairs by one int64 key of their positions in ``nodes`` (np.unique(axis=0) sorts a void
        # dtype, 10x slower); positions keep the order of the ids
        ilo, ihi = np.searchsorted(nodes, lo), np.searchsorted(nodes, hi)
        keys, inv = np.unique(ilo * np.int64(len(nodes)) + ihi, return_inverse=True)
        up = np.bincount(inv, weights=(a == lo), minlength=len(keys))
        down = np.bincount(inv, weights=(a != lo), minlength=len(keys))
        streets = np.maximum(up, down).astype(np.int64)
        np.add.at(out, keys // len(nodes), streets)
        np.add.at(out, keys % len(nodes), streets)
    looped = np.unique(fwd_u[loop])
    if len(looped):
        out[np.searchsorted(nodes, looped)] += 2
    return out


def osmnx_clusters(node_id: np.ndarray, node_xy: np.ndarray, u: np.ndarray, v: np.ndarray,
                   tolerance: float) -> np.ndarray:
    """Cluster labels of nodes as ``osmnx.consolidate_intersections(G, tolerance, dead_ends=False)`` forms them.

    ``node_id``/``node_xy``: the nodes OSMnx keeps (two or more street ends);
    ``u``/``v``: the pieces. Nodes whose ``tolerance`` buffers overlap merge
    (:func:`cluster_points`); a merged cluster is then split into the parts
    that its own pieces (both ends in the cluster) connect, as OSMnx splits a
    cluster into the weakly connected components of its subgraph.
    """
    first = cluster_points(node_xy, tolerance)
    if len(node_id) == 0:
        return first
    order = np.argsort(node_id)
    sid = node_id[order]

    def index(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(sid, x), len(sid) - 1)
        return order[pos], sid[pos] == x

    iu, ku = index(u)
    iv, kv = index(v)
    inner = ku & kv & (first[iu] == first[iv]) & (iu != iv)
    # a node alone stays alone; pieces inside a cluster link its nodes
    both = _components(len(node_id), iu[inner], iv[inner])
    return np.unique(first * (int(both.max()) + 1) + both, return_inverse=True)[1]


def _close_pairs(xy: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` of points at most ``d`` apart (grid hashing)."""
    rel = xy - xy.min(axis=0)
    # cells of at least d (neighbours then hold every close point), at most 1e6 per side (int64 keys)
    size = max(d, float(rel.max()) / 1e6, 1e-9)
    cell = np.floor(rel / size).astype(np.int64)
    width = int(cell[:, 1].max()) + 3
    key = (cell[:, 0] + 1) * width + (cell[:, 1] + 1)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    a_all, b_all = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            lo = np.searchsorted(skey, key + dx * width + dy, "left")
            cnt = np.searchsorted(skey, key + dx * width + dy, "right") - lo
            i = np.repeat(np.arange(len(xy)), cnt)
            j = order[np.repeat(lo, cnt) + np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)]
            a_all.append(i)
            b_all.append(j)
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    diff = xy[a] - xy[b]
    keep = (a < b) & (np.einsum("ij,ij->i", diff, diff) <= d * d)
    return a[keep], b[keep]


# ---------------------------------------------------------------- the statistics

@dataclass
class _Prepared:
    """The zone-independent part: projected pieces, names, pairing, junction clusters.

    Per-piece columns are numpy arrays (object arrays for lists/strings) so
    that a zone takes its rows by one fancy index.
    """

    crs: pyproj.CRS
    lines: np.ndarray           # projected, unclipped
    length_m: np.ndarray
    cols: dict[str, np.ndarray]  # piece columns of the result (osm_way_ids, highway, names...)
    pairing: Pairing             # segment_line indexes rows of the roads table
    node_id: np.ndarray         # junction nodes (3+ street ends)
    node_xy: np.ndarray
    node_ends: np.ndarray
    node_cluster: np.ndarray
    cluster_xy: np.ndarray
    cluster_nodes: np.ndarray   # object: tuple of node ids per cluster
    cluster_size: np.ndarray
    cluster_ends: np.ndarray
    ox_cluster_xy: np.ndarray    # clusters as OSMnx forms them (see osmnx_clusters)
    ox_cluster_nodes: np.ndarray


def _prepare(roads: gpd.GeoDataFrame, crs: pyproj.CRS, params: StatsParams) -> _Prepared:
    geoms = np.asarray(roads.geometry.values, dtype=object)
    lines = _project(geoms, crs)
    length_m = shapely.length(lines)
    names = street_names_of(roads["name"], roads["name_zh"])
    name_en = english_labels_of(roads["name_en"])
    refs = refs_of(roads["ref"])
    oneway = roads["oneway"].to_numpy(dtype=bool)
    # a roundabout's opposite arcs run antiparallel a few metres apart: never a dual carriageway
    if "junction" in roads.columns:
        roundabout = roads["junction"].isin(["roundabout", "circular"]).to_numpy(dtype=bool)
    else:  # a roads table from before the junction column (an old cache)
        roundabout = np.zeros(len(roads), dtype=bool)
    ow = np.flatnonzero(oneway & ~roundabout)
    key_line, key_id = _road_keys(names[ow], refs[ow])
    pr = _pair(lines[ow], key_line, key_id, params.pair_distance_m, params.pair_angle_deg)
    pairing = Pairing(pr.start, pr.end, ow[pr.segment_line], ow[pr.partners] if len(pr.partners) else pr.partners)
    partners = _grouped_tuples(pairing.partners[:, 0], pairing.partners[:, 1], len(roads))
    cols = {
        "osm_way_ids": _obj_array(list(roads["osm_way_ids"])),
        "highway": roads["highway"].to_numpy(dtype=object),
        "name": _joined(names),
        "names": names,
        "name_en": name_en,
        "ref": _joined(refs),
        "refs": refs,
        "oneway": oneway,
        "partners": partners,
    }
    # street ends per node: a piece has two ends (a self-loop both at one node)
    xy, idx = shapely.get_coordinates(lines, return_index=True)
    if len(xy):
        counts = np.bincount(idx, minlength=len(lines))
        last = np.cumsum(counts) - 1
        first = last - counts + 1
        ends = np.concatenate([roads["u"].to_numpy(dtype=np.int64), roads["v"].to_numpy(dtype=np.int64)])
        end_xy = np.concatenate([xy[first], xy[last]])
        uniq, first_at, n_ends = np.unique(ends, return_index=True, return_counts=True)
        j = n_ends >= 3
        node_id, node_xy, node_ends = uniq[j], end_xy[first_at[j]], n_ends[j]
        j2 = osmnx_street_counts(uniq, roads["u"].to_numpy(dtype=np.int64), roads["v"].to_numpy(dtype=np.int64),
                                 oneway) >= 2  # OSMnx drops only dead ends
        ox_id, ox_xy = uniq[j2], end_xy[first_at[j2]]
    else:
        node_id, node_xy, node_ends = np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64)
        ox_id, ox_xy = node_id, node_xy
    ox_label = osmnx_clusters(ox_id, ox_xy, roads["u"].to_numpy(dtype=np.int64), roads["v"].to_numpy(dtype=np.int64),
                              params.intersection_tolerance_m)
    kx = int(ox_label.max()) + 1 if len(ox_label) else 0
    ox_size = np.bincount(ox_label, minlength=kx)
    ox_cxy = (np.column_stack([np.bincount(ox_label, ox_xy[:, 0], kx), np.bincount(ox_label, ox_xy[:, 1], kx)])
              / ox_size[:, None]) if kx else np.zeros((0, 2))
    ox_nodes = _grouped_tuples(ox_label, ox_id, kx)
    cluster = cluster_points(node_xy, params.intersection_tolerance_m)
    k = int(cluster.max()) + 1 if len(cluster) else 0
    size = np.bincount(cluster, minlength=k)
    cxy = np.column_stack([np.bincount(cluster, node_xy[:, 0], k), np.bincount(cluster, node_xy[:, 1], k)])
    cxy = cxy / size[:, None] if k else np.zeros((0, 2))
    cluster_nodes = _grouped_tuples(cluster, node_id, k)
    cluster_ends = np.bincount(cluster, node_ends, k).astype(np.int64)
    return _Prepared(crs, lines, length_m, cols, pairing, node_id, node_xy, node_ends, cluster, cxy,
                     cluster_nodes, size, cluster_ends, ox_cxy, ox_nodes)


def _obj_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of ``items`` (tuples and lists stay single elements)."""
    return np.fromiter(items, dtype=object, count=len(items))


def _road_keys(names: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(line index, key id) pairs: each line's names and refs (a ref never equals a name)."""
    lines: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    vocab: dict[str, int] = {}
    for col, prefix in ((names, ""), (refs, "ref:")):
        codes, uniq = pd.factorize(pd.Series(col, dtype=object))
        per = [np.array([vocab.setdefault(prefix + x, len(vocab)) for x in t], dtype=np.int64) for t in uniq]
        counts = np.array([len(x) for x in per], dtype=np.int64)
        flat = np.concatenate(per) if per else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        n_each = counts[codes]
        line = np.repeat(np.arange(len(codes)), n_each)
        # position of each exploded key inside its tuple
        pos = np.arange(len(line)) - np.repeat(np.cumsum(n_each) - n_each, n_each)
        lines.append(line)
        ids.append(flat[np.repeat(offsets[codes], n_each) + pos])
    return np.concatenate(lines), np.concatenate(ids)


def _grouped_tuples(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Object array of ``n`` tuples: the ``values`` of each key ``0..n-1``, sorted."""
    order = np.lexsort((values, keys))
    vals = values[order].tolist()
    ends = np.cumsum(np.bincount(keys, minlength=n)).tolist()
    starts = [0, *ends[:-1]]
    return _obj_array([tuple(vals[a:b]) for a, b in zip(starts, ends)])


def _joined(tuples: np.ndarray) -> np.ndarray:
    """``;``-joined strings (``None`` for empty tuples) of an object array of tuples."""
    codes, uniq = pd.factorize(pd.Series(tuples, dtype=object))
    done = _obj_array([";".join(t) or None for t in uniq])
    return done[codes] if len(codes) else _obj_array([])


def _clip(lines: np.ndarray, zone_p: BaseGeometry | None) -> tuple[np.ndarray, np.ndarray]:
    """Clipped geometries and a status per line: 2 inside, 1 crossing, 0 outside."""
    if zone_p is None:
        return lines, np.full(len(lines), 2, dtype=np.int8)
    shapely.prepare(zone_p)
    inside = shapely.contains_properly(zone_p, lines)
    hit = shapely.intersects(zone_p, lines)
    cross = hit & ~inside
    out = np.full(len(lines), None, dtype=object)
    out[inside] = lines[inside]
    if cross.any():
        out[cross] = shapely.intersection(lines[cross], zone_p)
    status = np.where(inside, 2, np.where(cross, 1, 0)).astype(np.int8)
    return out, status


def _in_zone_points(xy: np.ndarray, zone_p: BaseGeometry | None) -> np.ndarray:
    """Points inside the zone or on its boundary."""
    if zone_p is None or len(xy) == 0:
        return np.ones(len(xy), dtype=bool)
    return np.asarray(shapely.intersects_xy(zone_p, xy[:, 0], xy[:, 1]))


def _zone_stats(prep: _Prepared, zone: BaseGeometry | None, zone_name: str | None,
                params: StatsParams, provenance: Provenance | None,
                exclude: BaseGeometry | None = None) -> RoadStats:
    crs = prep.crs
    zone_p = _project(np.array([zone], dtype=object), crs)[0] if zone is not None else None
    exclude_p = _project(np.array([exclude], dtype=object), crs)[0] if exclude is not None else None
    if zone_p is not None and not zone_p.is_valid:
        # a valid lon/lat outline can turn invalid by a rounding-sized sliver once projected
        # every polygon of the repair, however nested (a MultiPolygon inside a GeometryCollection too)
        from .zones import polygonal_parts

        zone_p = polygonal_parts(shapely.make_valid(zone_p))
    area = zone_area_km2(zone) if zone is not None else None
    clipped, status = _clip(prep.lines, zone_p)
    if exclude_p is not None:  # border lines already counted in another sub-zone
        hit = np.flatnonzero(status > 0)
        hit = hit[shapely.intersects(clipped[hit], exclude_p)]
        if len(hit):
            clipped[hit] = shapely.difference(clipped[hit], exclude_p)
            status[hit] = 1
    clipped_m = np.nan_to_num(shapely.length(np.where(status > 0, clipped, None)).astype(float))
    # paired stretches, clipped like their pieces
    pr = prep.pairing
    st = status[pr.segment_line] if len(pr.segment_line) else np.zeros(0, np.int8)
    seg_in = np.where(st == 2, pr.lengths, 0.0)
    cross = st == 1
    if cross.any() and zone_p is not None:
        inter = shapely.intersection(pr.segments(cross), zone_p)
        if exclude_p is not None:
            inter = shapely.difference(inter, exclude_p)
        seg_in[cross] = shapely.length(inter)
    paired_m = np.bincount(pr.segment_line, weights=seg_in, minlength=len(prep.lines))
    paired_m = np.minimum(paired_m, clipped_m)  # float noise only
    centerline_m = clipped_m - 0.5 * paired_m

    rows = np.flatnonzero(clipped_m > 0)
    c = prep.cols
    pieces = gpd.GeoDataFrame({
        "piece": rows,
        **{k: pd.Series(c[k][rows], dtype=object)
           for k in ("osm_way_ids", "highway", "name", "names", "name_en", "ref", "refs")},
        "oneway": c["oneway"][rows],
        "length_m": prep.length_m[rows],
        "clipped_m": clipped_m[rows],
        "paired_m": paired_m[rows],
        "centerline_m": centerline_m[rows],
        "partners": pd.Series(c["partners"][rows], dtype=object),
    }, geometry=gpd.GeoSeries(clipped[rows], crs=crs), crs=crs)

    # junctions
    c_in = _in_zone_points(prep.cluster_xy, zone_p)
    n_in = _in_zone_points(prep.node_xy, zone_p)
    lon, lat = _unproject_xy(prep.cluster_xy[c_in], crs)
    kept = np.flatnonzero(c_in)
    junctions = pd.DataFrame({
        "junction": np.arange(len(kept)),
        "lon": lon, "lat": lat,
        "nodes": prep.cluster_nodes[kept],
        "node_count": prep.cluster_size[kept],
        "street_ends": prep.cluster_ends[kept],
    })
    jmap = np.full(len(prep.cluster_xy), -1)
    jmap[kept] = np.arange(len(kept))
    nlon, nlat = _unproject_xy(prep.node_xy[n_in], crs)
    junction_nodes = pd.DataFrame({
        "node": prep.node_id[n_in], "lon": nlon, "lat": nlat,
        "street_ends": prep.node_ends[n_in],
        "junction": jmap[prep.node_cluster[n_in]] if len(prep.node_cluster) else np.zeros(0, np.int64),
    })
    ox_in = np.flatnonzero(_in_zone_points(prep.ox_cluster_xy, zone_p))
    olon, olat = _unproject_xy(prep.ox_cluster_xy[ox_in], crs)
    osmnx_junctions = pd.DataFrame({
        "junction": np.arange(len(ox_in)), "lon": olon, "lat": olat,
        "nodes": prep.ox_cluster_nodes[ox_in],
        "node_count": np.fromiter((len(t) for t in prep.ox_cluster_nodes[ox_in]), dtype=np.int64, count=len(ox_in)),
    })
    figures = _figures(pieces, junctions, junction_nodes, area, str(crs_label(crs)), params)
    figures["intersections_osmnx"] = Figure(
        "intersections_osmnx", int(len(osmnx_junctions)), UNITS["intersections_osmnx"],
        f"what osmnx.consolidate_intersections(G, tolerance={params.intersection_tolerance_m:g}, dead_ends=False) "
        "gives on the graph of these pieces: every node but dead ends (also where a piece ends between two "
        "pieces only), buffers merged, a cluster split where its own pieces do not connect it; counted where "
        "their mean position lies in the zone")
    return RoadStats(zone_name, crs_label(crs), area, params, pieces, junctions, junction_nodes, figures,
                     provenance=provenance, osmnx_junctions=osmnx_junctions)


def crs_label(crs: pyproj.CRS) -> str:
    """``EPSG:32651`` where the CRS has an EPSG code, else its name."""
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.name


def _figures(pieces: pd.DataFrame, junctions: pd.DataFrame, junction_nodes: pd.DataFrame,
             area: float | None, crs: str, params: StatsParams) -> dict[str, Figure]:
    km = pieces["clipped_m"].to_numpy() / 1000.0
    ckm = pieces["centerline_m"].to_numpy() / 1000.0
    pkm = pieces["paired_m"].to_numpy() / 1000.0
    hw = pieces["highway"].to_numpy(dtype=object)
    clip = f"clipped at the zone boundary, metres in {crs}"
    pair = (f"a dual carriageway (two opposite one-way pieces of one road: same normalized name or ref, "
            f"bearings opposite within {params.pair_angle_deg:g}°, within {params.pair_distance_m:g} m) "
            f"counted once: carriageway km minus half the length of one-way pieces running alongside their "
            f"partner")
    f: dict[str, Figure] = {}

    def add(name: str, value: float | int | None, definition: str, unit: str | None = None) -> None:
        f[name] = Figure(name, value, unit or UNITS[name.split(":")[0]], definition)

    if area is not None:
        add("zone_area_km2", area, "area of the zone outline in an Albers equal-area projection centred on "
                                   "the zone")
    add("pieces", int(len(pieces)), "road pieces (between junctions) with a part inside the zone")
    carriageway = float(km.sum())
    add("carriageway_km", carriageway,
        f"every drivable carriageway inside the zone, a two-way road once and each side of a dual "
        f"carriageway once (sum of piece lengths {clip})")
    add("centerline_km", float(ckm.sum()), f"road length with {pair} ({clip})")
    add("dual_carriageway_km", float(pkm.sum()),
        "carriageway km of one-way pieces that run alongside an opposite carriageway of the same road "
        "(both sides counted)")
    expressway = np.isin(hw, EXPRESSWAY_CLASSES)
    add("expressway_km", float(ckm[expressway].sum()),
        f"centerline km of highway={'/'.join(EXPRESSWAY_CLASSES)} (motorway_link ramps excluded; {clip})")
    names = {n for ns in pieces["names"] for n in ns}
    add("named_streets", len(names),
        "distinct street names inside the zone (name, else name:zh; NFKC, whitespace collapsed, "
        "';' lists split; name:en kept apart)")
    unnamed = np.array([not ns for ns in pieces["names"]], dtype=bool)
    add("unnamed_km", float(km[unnamed].sum()), f"carriageway km of pieces with neither name nor name:zh ({clip})")
    add("intersections", int(len(junctions)),
        f"junctions of 3 or more street ends, nodes within 2 x {params.intersection_tolerance_m:g} m merged "
        f"(OSMnx's buffer merge, but only junction nodes and no split by connectivity: see intersections_osmnx); "
        "counted where their mean position lies in the zone")
    add("junction_nodes", int(len(junction_nodes)), "nodes where 3 or more street ends meet, before merging")
    if area:
        add("carriageway_density", carriageway / area, "carriageway km per km² of zone area (equal-area)")
        add("intersection_density", len(junctions) / area, "intersections per km² of zone area (equal-area)")
    by_class = _sums_by(hw, km, ckm)
    for c, k, _ in by_class:
        add(f"class_km:{c}", k, f"carriageway km of highway={c} ({clip})")
    for c, _, ck in by_class:
        add(f"class_centerline_km:{c}", ck, f"centerline km of highway={c}")
    refs = pieces["refs"].to_numpy(dtype=object)
    n_refs = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))
    flat = np.array([r for rs in refs for r in rs], dtype=object)
    by_ref = _sums_by(flat, np.repeat(km, n_refs), np.repeat(ckm, n_refs))
    for ref, k, _ in by_ref:
        add(f"ref_km:{ref}", k,
            f"carriageway km of pieces with ref {ref} (a piece with several refs counts under each; {clip})")
    for ref, _, ck in by_ref:
        add(f"ref_centerline_km:{ref}", ck, f"centerline km of pieces with ref {ref}")
    return f


def _sums_by(keys: np.ndarray, km: np.ndarray, ckm: np.ndarray) -> list[tuple[str, float, float]]:
    """(key, km sum, centerline km sum) per distinct key, largest km first (ties by key)."""
    if len(keys) == 0:
        return []
    uniq, inv = np.unique(keys.astype(str), return_inverse=True)
    k = np.bincount(inv, km, len(uniq))
    ck = np.bincount(inv, ckm, len(uniq))
    order = np.lexsort((uniq, -k))
    return [(str(uniq[i]), float(k[i]), float(ck[i])) for i in order]


def _as_subzones(subzones: gpd.GeoDataFrame | Mapping[str, BaseGeometry] | None) -> dict[str, BaseGeometry]:
    if subzones is None:
        return {}
    if isinstance(subzones, gpd.GeoDataFrame):
        if len(subzones) == 0:
            return {}
        if "name" not in subzones.columns:
            raise InputError("the sub-zones have no 'name' column", hint="give each sub-zone a name")
        gdf = subzones.to_crs(4326) if subzones.crs is not None else subzones
        out: dict[str, BaseGeometry] = {}
        for name, geom in zip(gdf["name"], gdf.geometry.values):
            key = str(name)
            out[key] = shapely.union(out[key], geom) if key in out else geom
        return out
    return dict(subzones)


def road_stats(roads: gpd.GeoDataFrame | Any, zone: Zone | BaseGeometry | None = None, *,
               subzones: gpd.GeoDataFrame | Mapping[str, BaseGeometry] | None = None,
               zone_name: str | None = None, crs: Any = None, params: StatsParams | None = None,
               provenance: Provenance | None = None) -> RoadStats:
    """Road statistics of a roads table inside a zone (see the module docstring).

    Parameters
    ----------
    roads
        A roads table (:mod:`geo.roads`), EPSG:4326. Its pieces are never
        cut by loading; clipping happens here. Or a
        :class:`geo.sources.Network`: its :attr:`~geo.sources.Network.stats_roads`
        (the pieces near the zone too) and its provenance are used.
    zone
        A :class:`~geo.zones.Zone` (its name and sub-zones are used) or a
        lon/lat (Multi)Polygon. ``None``: nothing is clipped and there is no
        area (no densities).
    subzones
        Sub-zones (GeoDataFrame with ``name``, or name -> polygon); every figure
        is computed again for each. Default: the zone's own sub-zones.
    zone_name
        Name written in the result (default: the zone's).
    crs
        Projected CRS for lengths; default :func:`local_utm_crs` of the zone
        (or of the roads without a zone).
    params
        Tolerances (pairing distance and angle, intersection tolerance).
    provenance
        Where the roads come from (default: ``roads.attrs["provenance"]``).

    Returns
    -------
    RoadStats

    Raises
    ------
    InputError
        If the roads table lacks columns, or the tolerances are out of range.
    """
    params = params or StatsParams()
    if hasattr(roads, "stats_roads") and hasattr(roads, "provenance"):  # a geo.sources.Network
        provenance = provenance if provenance is not None else roads.provenance
        roads = roads.stats_roads
    missing = [c for c in ("u", "v", "osm_way_ids", "highway", "name", "name_en", "name_zh", "ref", "oneway")
               if c not in roads.columns]
    if missing:
        raise InputError(f"not a roads table: missing column(s) {', '.join(missing)}",
                         hint="build it with geo.roads.build_roads_table or geo.sources.load_network")
    if roads.crs is not None and pyproj.CRS(roads.crs).to_epsg() != 4326:
        roads = roads.to_crs(4326)
    geom: BaseGeometry | None
    if isinstance(zone, Zone):
        zone_name = zone_name or zone.name
        if subzones is None:
            subzones = zone.subzones
        geom = zone.geometry
    else:
        geom = zone
    if provenance is None and roads.attrs.get("provenance"):
        provenance = Provenance.from_dict(roads.attrs["provenance"])
    if crs is None:
        ref_geom = geom if geom is not None and not geom.is_empty else (
            shapely.box(*roads.total_bounds) if len(roads) else None)
        if ref_geom is None:
            raise InputError("no roads and no zone: nothing to measure", hint="give a zone or a roads table")
        crs = local_utm_crs(ref_geom)
    crs = pyproj.CRS(crs)
    if not crs.is_projected:
        raise InputError(f"lengths need a projected CRS, not {crs_label(crs)}", hint="give a UTM CRS, e.g. EPSG:32651")
    if "mercator" in crs.name.lower() and "transverse" not in crs.name.lower():
        # Web Mercator stretches lengths by 1/cos(latitude): +17 % in Shanghai
        raise InputError(f"lengths are never measured in {crs_label(crs)} (Mercator)",
                         hint="give a UTM CRS, e.g. EPSG:32651, or leave the CRS to icv")
    roads = roads.reset_index(drop=True)
    prep = _prepare(roads, crs, params)
    stats = _zone_stats(prep, geom, zone_name, params, provenance)
    earlier: BaseGeometry | None = None
    for name, sub in _as_subzones(subzones).items():
        # a road along a border two sub-zones share counts in the first of them (file order), so
        # the sub-zones' km add up to the zone's instead of counting that road twice
        shared = shapely.intersection(sub.boundary, earlier) if earlier is not None else None
        if shared is not None and shapely.length(shared) <= 0:
            shared = None
        stats.subzones[name] = _zone_stats(prep, sub, name, params, provenance, exclude=shared)
        earlier = sub if earlier is None else shapely.union(earlier, sub)
    return stats


# ---------------------------------------------------------------- explain and breakdowns

_PIECE_COLS = ["piece", "osm_way_ids", "highway", "name", "name_en", "ref", "oneway"]


def _piece_table(pieces: pd.DataFrame, mask: np.ndarray | None = None, centerline: bool = False) -> pd.DataFrame:
    p = pieces if mask is None else pieces.loc[mask]
    out = pd.DataFrame(p[_PIECE_COLS]).reset_index(drop=True)
    out["clipped_km"] = p["clipped_m"].to_numpy() / 1000.0
    if centerline:
        out["paired_km"] = p["paired_m"].to_numpy() / 1000.0
        out["centerline_km"] = p["centerline_m"].to_numpy() / 1000.0
        out["partners"] = list(p["partners"])
    return out


def explain(stats: RoadStats, figure: str) -> pd.DataFrame:
    """The table behind one figure.

    Piece figures list every clipped piece counted (``piece``, ``osm_way_ids``,
    ``name``, ``clipped_km``...; centerline figures add ``paired_km``,
    ``centerline_km`` and ``partners``): the km column sums to the figure.
    ``named_streets`` lists the names; ``intersections`` the merged junctions;
    ``junction_nodes`` the nodes; area and densities one row with their parts.

    Raises
    ------
    InputError
        If there is no such figure.
    """
    fig = stats.figure(figure)  # validates, also sub-zone names
    s, base = stats._resolve(figure)
    p = s.pieces
    kind, _, arg = base.partition(":")
    hw = p["highway"].to_numpy(dtype=object)
    if kind in ("carriageway_km", "pieces"):
        return _piece_table(p)
    if kind == "centerline_km":
        return _piece_table(p, centerline=True)
    if kind == "dual_carriageway_km":
        t = _piece_table(p, p["paired_m"].to_numpy() > 0, centerline=True)
        return t
    if kind == "expressway_km":
        return _piece_table(p, np.isin(hw, EXPRESSWAY_CLASSES), centerline=True)
    if kind == "unnamed_km":
        return _piece_table(p, np.array([not n for n in p["names"]], dtype=bool))
    if kind in ("class_km", "class_centerline_km"):
        return _piece_table(p, hw == arg, centerline=kind == "class_centerline_km")
    if kind in ("ref_km", "ref_centerline_km"):
        return _piece_table(p, np.array([arg in r for r in p["refs"]], dtype=bool),
                            centerline=kind == "ref_centerline_km")
    if kind == "named_streets":
        rows = [(n, i, m, e, w) for ns, i, m, e, w in
                zip(p["names"], p["piece"], p["clipped_m"], p["name_en"], p["osm_way_ids"]) for n in ns]
        df = pd.DataFrame(rows, columns=["name", "piece", "m", "name_en", "ways"])
        if df.empty:
            return pd.DataFrame(columns=["name", "name_en", "pieces", "clipped_km", "osm_way_ids"])
        g = df.groupby("name", sort=True)
        return pd.DataFrame({
            "name": list(g.groups),
            # isinstance: pandas may hand a missing label back as NaN, which no format can write
            "name_en": [sorted({e for e in grp["name_en"] if isinstance(e, str) and e}) or None for _, grp in g],
            "pieces": g["piece"].nunique().to_numpy(),
            "clipped_km": g["m"].sum().to_numpy() / 1000.0,
            "osm_way_ids": [sorted({w for ws in grp["ways"] for w in ws}) for _, grp in g],
        })
    if kind == "intersections":
        return s.junctions.copy()
    if kind == "junction_nodes":
        return s.junction_nodes.copy()
    if kind == "intersections_osmnx":
        return s.osmnx_junctions.copy() if s.osmnx_junctions is not None else pd.DataFrame()
    if kind == "zone_area_km2":
        return pd.DataFrame([{"zone": s.zone_name, "area_km2": s.area_km2,
                              "projection": "Albers equal-area centred on the zone"}])
    if kind == "carriageway_density":
        return pd.DataFrame([{"carriageway_km": s.value("carriageway_km"), "area_km2": s.area_km2,
                              "value": fig.value}])
    if kind == "intersection_density":
        return pd.DataFrame([{"intersections": s.value("intersections"), "area_km2": s.area_km2,
                              "value": fig.value}])
    raise InputError(f"no explanation for figure {figure!r}")  # pragma: no cover - every figure handled


def breakdown(stats: RoadStats, by: str) -> list[dict[str, Any]]:
    """Rows of km per ``class``, per ``ref`` or per ``subzone``.

    ``class`` and ``ref`` rows: pieces, carriageway km, centerline km, share of
    the zone's carriageway km (ref rows overlap where a piece has several refs).
    ``subzone`` rows: the headline figures of each sub-zone.

    Raises
    ------
    InputError
        For an unknown ``by``, or ``subzone`` when the zone has no sub-zones.
    """
    p = stats.pieces
    total = float(p["clipped_m"].sum())
    if by in ("class", "ref"):
        if by == "class":
            df = pd.DataFrame({"key": p["highway"].to_numpy(dtype=object), "m": p["clipped_m"].to_numpy(),
                               "cm": p["centerline_m"].to_numpy()})
        else:
            df = pd.DataFrame([(r, m, cm) for rs, m, cm in zip(p["refs"], p["clipped_m"], p["centerline_m"])
                               for r in rs], columns=["key", "m", "cm"])
        if df.empty:
            return []
        g = df.groupby("key").agg(pieces=("m", "size"), m=("m", "sum"), cm=("cm", "sum"))
        g = g.sort_values("m", ascending=False)
        label = "highway" if by == "class" else "ref"
        return [{label: k, "pieces": int(r["pieces"]), "carriageway_km": round(r["m"] / 1000, 3),
                 "centerline_km": round(r["cm"] / 1000, 3),
                 "share_pct": round(100 * r["m"] / total, 1) if total else 0.0} for k, r in g.iterrows()]
    if by == "subzone":
        if not stats.subzones:
            raise InputError(f"zone {stats.zone_name!r} has no sub-zones",
                             hint="use a zone file with sub-zones, or --by class/ref")
        heads = ["zone_area_km2", "carriageway_km", "centerline_km", "expressway_km", "named_streets",
                 "unnamed_km", "intersections", "carriageway_density", "intersection_density"]
        rows = []
        for name, sub in stats.subzones.items():
            row: dict[str, Any] = {"subzone": name}
            for h in heads:
                f = sub.figures_by_name.get(h)
                row[h] = f.to_record()["value"] if f else None
            rows.append(row)
        return rows
    raise InputError(f"unknown breakdown {by!r}", hint="use class, ref or subzone")


def stats_meta(stats: RoadStats) -> dict[str, Any]:
    """What every statistics output carries beside its rows: zone, CRS, tolerances, provenance."""
    meta: dict[str, Any] = {
        "zone": stats.zone_name,
        "zone_area_km2": round(stats.area_km2, 3) if stats.area_km2 is not None else None,
        "length_crs": stats.crs,
        "pair_distance_m": stats.params.pair_distance_m,
        "pair_angle_deg": stats.params.pair_angle_deg,
        "intersection_tolerance_m": stats.params.intersection_tolerance_m,
    }
    if stats.subzones:
        meta["subzones"] = ", ".join(stats.subzones)
    if stats.provenance is not None:
        meta["provenance"] = stats.provenance.summary()
    return meta


def records(table: pd.DataFrame, digits: int = 3) -> list[dict[str, Any]]:
    """Rows of an :func:`explain` table as plain records (floats rounded, numpy scalars unwrapped)."""
    out: list[dict[str, Any]] = []
    cols = [c for c in table.columns if c != "geometry"]
    for row in table[cols].itertuples(index=False, name=None):
        out.append({c: _plain(v, digits) for c, v in zip(cols, row)})
    return out


def _plain(v: Any, digits: int) -> Any:
    """A cell as a plain value every format can write: NaN/NA -> None, lists element by element."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, digits) if math.isfinite(v) else None
    if isinstance(v, (tuple, list, np.ndarray)):
        return [_plain(x, digits) for x in v]
    if v is pd.NA or v is pd.NaT:
        return None
    return v
