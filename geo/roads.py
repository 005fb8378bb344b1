"""The normalized roads table, road filters, and graph conversion.

Every source (Overpass, OSM XML, OSM PBF, road layers, the cache) turns its ways
into :class:`RawWay` objects and hands them to :func:`build_roads_table`, so a
road filter and the splitting into pieces mean the same for all of them.

The roads table
---------------
A GeoDataFrame in EPSG:4326, one row per *undirected road piece between
junctions*:

==============  =============================================================
``u``, ``v``     end node ids (OSM node ids where known; for coordinate-only
                 sources, ids derived from the rounded coordinates)
``osm_way_ids``  list of OSM way ids the piece is made of
``highway``      one class string (``primary``, ``motorway_link``...)
``name``         ``name`` tag (or ``None``)
``name_en``      ``name:en`` tag
``name_zh``      ``name:zh`` tag
``ref``          ``ref`` tag (``G2``, ``G1503;S5``...)
``oneway``       ``True`` for a one-way carriageway; its geometry then runs
                 in the direction of travel
``lanes``        ``lanes`` tag as written in OSM
``maxspeed``     ``maxspeed`` tag as written in OSM
``access``       ``access`` tag
``length_m``     geodesic length on the WGS84 ellipsoid, metres
``junction``     ``roundabout`` or ``circular`` for a piece of a roundabout
                 (``junction`` tag), else ``None``; statistics never pair a
                 roundabout as a dual carriageway
``geometry``     LineString, lon/lat
==============  =============================================================

Tag semantics
-------------
One-way (:func:`oneway_direction`)
    ``oneway=yes|true|1`` forward, ``oneway=-1|reverse`` against the node order
    (the geometry is turned to the direction of travel), ``oneway=no|false|0``
    two-way. Without a ``oneway`` tag, ``highway=motorway`` and
    ``junction=roundabout|circular`` are one-way, as OSM implies (ramps,
    ``motorway_link``, are not: OSM wants them tagged). ``oneway=reversible``
    and ``oneway=alternating`` (one carriageway driven one direction at a
    time: tidal lanes, single-lane bridges) are one carriageway, counted once
    as a two-way piece and never paired.
Motor-vehicle access (:func:`motor_vehicle_access`)
    The most specific access tag present decides, as OSM's hierarchy for a
    car: ``motorcar`` > ``motor_vehicle`` > ``vehicle`` > ``access``; so
    ``access=no`` + ``motor_vehicle=yes`` is a public road and ``access=yes`` +
    ``motorcar=private`` is not. A value may be a ``;`` list (``private;delivery``):
    the road is open when any listed value is open. Open values: ``yes``,
    ``permissive``, ``designated``, ``destination`` (public, only to reach a
    place there: test vehicles may drive it), ``official``, ``discouraged``
    and any value not listed below. Restricted (left out unless
    ``include_private``): ``private``, ``delivery``, ``customers`` (only for
    the deliveries / customers of a place), ``permit``, ``residents``,
    ``agricultural``, ``forestry``, ``military``, ``emergency``, ``no``.
    Conditional restrictions (``access:conditional``) are not evaluated.

A piece ends where three or more street ends meet, where a way ends, or where
its attributes change; pieces of consecutive ways with identical attributes
are merged (as OSMnx simplification does, but never mixing classes). One-way
pieces never merge across a U-turn (two ways heading > 120° apart), and a
named one-way piece that turns back on itself is cut at its vertex farthest
from its start: the two sides of a road joined by a U-turn stay two pieces
that pair as a dual carriageway.
"""

from __future__ import annotations

import gc
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Geod

if TYPE_CHECKING:  # networkx loads only where a graph is built (icv stats needs none)
    import networkx as nx

from .errors import FilterError

_GEOD = Geod(ellps="WGS84")

LINKS = ("motorway_link", "trunk_link", "primary_link", "secondary_link", "tertiary_link")
ARTERIAL = ("motorway", "trunk", "primary", "secondary", "tertiary", *LINKS)
DRIVE = (*ARTERIAL, "unclassified", "residential", "living_street")
ALL_ROADS = (*DRIVE, "service")

#: Road-filter presets: name -> highway classes kept.
PRESETS: dict[str, tuple[str, ...]] = {
    "drive": DRIVE,
    "arterial": ARTERIAL,
    "all-roads": ALL_ROADS,
}

PRIVATE_VALUES = frozenset({"private", "no"})
#: Access tags for a car, most specific first (OSM's access hierarchy).
ACCESS_HIERARCHY = ("motorcar", "motor_vehicle", "vehicle", "access")
#: The access tags a car's access depends on (decided in the order of ACCESS_HIERARCHY).
ACCESS_TAGS = ("access", "motor_vehicle", "motorcar", "vehicle")
#: Access values that keep a way out unless ``include_private`` (see the module docstring).
RESTRICTED_ACCESS = frozenset({"private", "no", "delivery", "customers", "permit", "residents", "agricultural",
                               "forestry", "military", "emergency"})
ONEWAY_FORWARD = frozenset({"yes", "true", "1"})
ONEWAY_REVERSE = frozenset({"-1", "reverse"})
ONEWAY_NO = frozenset({"no", "false", "0"})
#: One carriageway driven one direction at a time: counted as two-way, never paired.
ONEWAY_TIME_SHARED = frozenset({"reversible", "alternating"})
#: ``highway`` classes that are one-way without a ``oneway`` tag.
IMPLIED_ONEWAY_CLASSES = frozenset({"motorway"})
ROUNDABOUT_VALUES = frozenset({"roundabout", "circular"})

#: Columns of the roads table, in order.
COLUMNS = [
    "u", "v", "osm_way_ids", "highway", "name", "name_en", "name_zh", "ref",
    "oneway", "lanes", "maxspeed", "access", "length_m", "junction", "geometry",
]


@dataclass(frozen=True)
class RoadFilter:
    """Which OSM ways count as roads.

    Parameters
    ----------
    name
        ``drive``, ``arterial``, ``all-roads`` or ``custom``.
    highway
        The ``highway`` classes kept.
    include_private
        Keep ways whose ``access`` (or ``motor_vehicle``, ``motorcar``,
        ``vehicle``) is ``private`` or ``no``.
    """

    name: str
    highway: frozenset[str]
    include_private: bool = False

    @property
    def label(self) -> str:
        """Stable text form, as written in provenance: ``drive`` or ``highway=a,b``."""
        base = self.name if self.name != "custom" else "highway=" + ",".join(sorted(self.highway))
        return base + ("+private" if self.include_private else "")

    def accepts(self, tags: Mapping[str, str]) -> bool:
        """Whether a way with these OSM tags is a road of this filter."""
        hw = tags.get("highway")
        if hw not in self.highway:
            return False
        if tags.get("area") == "yes":
            return False
        if not self.include_private and not motor_vehicle_access(tags):
            return False
        return True

    def overpass_filter(self) -> str:
        """The filter in Overpass QL, for OSMnx's ``custom_filter``: classes and ``area``.

        Access is not in the query: the hierarchy (:func:`motor_vehicle_access`)
        is a union of four cases, not a conjunction of tag filters, and OSMnx
        sends one request per union member. The query pulls every way of the
        classes (a superset) and :meth:`accepts`, the same function as for
        every file reader, decides access after download.
        """
        classes = "|".join(sorted(self.highway))
        return f'["highway"~"^({classes})$"]["area"!~"yes"]'


def _access_values(value: str) -> list[str]:
    return [v.strip().lower() for v in value.split(";") if v.strip()]


def motor_vehicle_access(tags: Mapping[str, str]) -> bool:
    """Whether a car may drive a way with these tags (OSM's access hierarchy).

    The most specific of ``motorcar``, ``motor_vehicle``, ``vehicle``,
    ``access`` that is present decides; a ``;`` list is open when any of its
    values is open (see the module docstring for the values).

    Examples
    --------
    >>> motor_vehicle_access({"access": "no", "motor_vehicle": "yes"})
    True
    >>> motor_vehicle_access({"access": "private;delivery"})
    False
    >>> motor_vehicle_access({"access": "destination"})
    True
    """
    for key in ACCESS_HIERARCHY:
        raw = tags.get(key)
        if raw is None:
            continue
        values = _access_values(str(raw))
        if not values:
            continue  # an empty tag says nothing: the next, more general one decides
        return any(v not in RESTRICTED_ACCESS for v in values)
    return True


def parse_filter(preset: str | None = "drive", highway: Iterable[str] | str | None = None,
                 include_private: bool = False) -> RoadFilter:
    """Build a :class:`RoadFilter` from a preset name or a custom ``highway`` list.

    Examples
    --------
    >>> parse_filter("arterial").label
    'arterial'
    >>> parse_filter(highway="primary,secondary").label
    'highway=primary,secondary'
    """
    if highway is not None:  # an explicit empty list is an error, not "drive"
        if isinstance(highway, str):
            highway = highway.split(",")
        classes = frozenset(h.strip() for h in highway if h.strip())
        bad = [h for h in classes if not h.replace("_", "").isalnum()]
        if not classes or bad:
            raise FilterError(f"bad --highway list {','.join(sorted(bad)) or '(empty)'}",
                              hint="give comma-separated OSM highway classes, e.g. primary,secondary")
        return RoadFilter("custom", classes, include_private)
    preset = preset or "drive"
    if preset not in PRESETS:
        raise FilterError(f"unknown road filter {preset!r}",
                          hint=f"use one of {', '.join(PRESETS)} or --highway CLASS,CLASS")
    return RoadFilter(preset, frozenset(PRESETS[preset]), include_private)


@dataclass
class RawWay:
    """One OSM way (or one run of it, where a clipped extract lacks nodes).

    ``node_ids`` and ``coords`` run in parallel; ``coords`` are (lon, lat).
    """

    way_id: int
    tags: dict[str, str]
    node_ids: list[int]
    coords: list[tuple[float, float]]
    timestamp: str | None = field(default=None, compare=False)


def coord_node_id(lon: float, lat: float) -> int:
    """A node id for a coordinate-only source: the coordinate rounded to 1e-7°.

    Negative, so that it never collides with a real OSM id.
    """
    # 3.6e9 x 1.8e9 quantized positions fit in 63 bits
    return -(int(round((lon + 180.0) * 1e7)) * 1_800_000_001 + int(round((lat + 90.0) * 1e7)) + 1)


def coord_node_ids(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """:func:`coord_node_id` of arrays of coordinates (the same ids)."""
    qx = np.rint((np.asarray(lon, dtype=np.float64) + 180.0) * 1e7).astype(np.int64)
    qy = np.rint((np.asarray(lat, dtype=np.float64) + 90.0) * 1e7).astype(np.int64)
    return -(qx * 1_800_000_001 + qy + 1)


#: Share of way node refs without a location above which a reader warns.
MISSING_REFS_WARN_SHARE = 0.10


class MissingNodesWarning(UserWarning):
    """Many way node refs of a file have no location (a cut extract, or nodes a reader cannot place)."""


def warn_missing_refs(where: str, missing: int, total: int) -> None:
    """Warn (:class:`MissingNodesWarning`) when more than :data:`MISSING_REFS_WARN_SHARE` of refs lack a location.

    Every bounding-box extract references nodes outside its box, so a few
    missing refs are normal; a large share means roads are lost.
    """
    if total and missing / total > MISSING_REFS_WARN_SHARE:
        warnings.warn(f"{where}: {missing:,} of {total:,} way node refs ({100 * missing / total:.1f} %) have no "
                      f"node with a location in the file; those roads are cut there. Use a complete extract "
                      f"(osmium extract --strategy complete_ways) if that is unexpected", MissingNodesWarning,
                      stacklevel=3)


def split_runs(way_id: int, tags: dict[str, str], refs: list[int],
               locations: Mapping[int, tuple[float, float]], timestamp: str | None = None) -> list[RawWay]:
    """Split a way into runs of consecutive nodes present in ``locations``.

    Clipped extracts reference nodes outside the clip; a gap never becomes a
    straight line across it. Runs of fewer than two nodes are dropped.
    """
    runs: list[RawWay] = []
    ids: list[int] = []
    for ref in refs:
        loc = locations.get(ref)
        if loc is None:
            if len(ids) >= 2:
                runs.append(RawWay(way_id, tags, ids, [locations[i] for i in ids], timestamp))
            ids = []
        else:
            ids.append(ref)
    if len(ids) >= 2:
        runs.append(RawWay(way_id, tags, ids, [locations[i] for i in ids], timestamp))
    return runs


def oneway_direction(tags: Mapping[str, str]) -> int:
    """1 one-way forward, -1 one-way against the node order, 0 two-way (see the module docstring).

    Examples
    --------
    >>> oneway_direction({"highway": "motorway"}), oneway_direction({"highway": "motorway", "oneway": "no"})
    (1, 0)
    >>> oneway_direction({"highway": "primary", "oneway": "reversible"})
    0
    """
    ow = str(tags.get("oneway", "")).strip().lower()
    if ow in ONEWAY_FORWARD:
        return 1
    if ow in ONEWAY_REVERSE:
        return -1
    if ow in ONEWAY_NO or ow in ONEWAY_TIME_SHARED:
        return 0
    if tags.get("junction") in ROUNDABOUT_VALUES:
        return 1
    if tags.get("highway") in IMPLIED_ONEWAY_CLASSES:
        return 1
    return 0


@dataclass
class _Flat:
    """Kept ways as flat arrays: one row per node position, one-way ways in the direction of travel."""

    ids: np.ndarray          # node id per position
    xy: np.ndarray           # (n, 2) lon/lat per position
    way_of: np.ndarray       # kept-way index per position
    wstart: np.ndarray       # first position of each kept way
    wend: np.ndarray         # last position (inclusive)
    way_id: np.ndarray       # OSM way id per kept way
    attr: np.ndarray         # attribute code per kept way
    attrs: list[tuple]       # code -> (highway, name, name_en, name_zh, ref, oneway, lanes, maxspeed, access, junction)


def _flatten(ways: Iterable[RawWay], road_filter: RoadFilter | None) -> _Flat:
    """Filter the ways, drop back-to-back repeated nodes, turn ``oneway=-1`` ways (numpy over all nodes)."""
    codes: dict[tuple, int] = {}
    attrs: list[tuple] = []
    way_ids: list[int] = []
    way_attr: list[int] = []
    way_rev: list[bool] = []
    id_lists: list[Sequence[int]] = []
    xy_lists: list[Sequence[tuple[float, float]]] = []
    for w in ways:
        if road_filter is not None and not road_filter.accepts(w.tags):
            continue
        hw = w.tags.get("highway")
        if not isinstance(hw, str) or len(w.node_ids) < 2:
            continue
        d = oneway_direction(w.tags)
        get = w.tags.get
        a = (hw, get("name"), get("name:en"), get("name:zh"), get("ref"), d != 0, get("lanes"), get("maxspeed"),
             get("access"), get("junction") if get("junction") in ROUNDABOUT_VALUES else None)
        code = codes.get(a)
        if code is None:
            code = codes[a] = len(attrs)
            attrs.append(a)
        way_ids.append(w.way_id)
        way_attr.append(code)
        way_rev.append(d == -1)
        id_lists.append(w.node_ids)
        xy_lists.append(w.coords)
    counts = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    total = int(counts.sum())
    ids = np.fromiter(chain.from_iterable(id_lists), dtype=np.int64, count=total)
    xy = np.fromiter(chain.from_iterable(chain.from_iterable(xy_lists)), dtype=np.float64,
                     count=2 * total).reshape(-1, 2)
    way_of = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    # a node repeated back to back (a mapping error) would make a zero-length piece
    keep = np.ones(total, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    keep[start[counts > 0]] = True
    n_kept = np.bincount(way_of[keep], minlength=len(counts))
    keep &= (n_kept >= 2)[way_of]
    ids, xy, way_of = ids[keep], xy[keep], way_of[keep]
    alive = n_kept >= 2
    remap = np.cumsum(alive) - 1
    way_of = remap[way_of]
    counts = n_kept[alive]
    wstart = np.cumsum(counts) - counts
    wend = wstart + counts - 1
    rev = np.asarray(way_rev, dtype=bool)[alive]
    if rev.any():
        pos = np.arange(len(ids))
        r = rev[way_of]
        pos[r] = wstart[way_of[r]] + wend[way_of[r]] - pos[r]
        ids, xy = ids[pos], xy[pos]
    return _Flat(ids, xy, way_of, wstart, wend, np.asarray(way_ids, dtype=np.int64)[alive],
                 np.asarray(way_attr, dtype=np.int64)[alive], attrs)


def _split_at_junctions(f: _Flat) -> tuple[np.ndarray, np.ndarray]:
    """Chains (first, last position) of the ways split at shared nodes and way ends."""
    if len(f.ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, inv = np.unique(f.ids, return_inverse=True)
    inv = inv.ravel()
    n = int(inv.max()) + 1
    # a node used by two positions, or at a way's end, ends a chain
    uses = np.bincount(inv, minlength=n) + np.bincount(inv[f.wstart], minlength=n) + \
        np.bincount(inv[f.wend], minlength=n)
    brk = uses[inv] >= 2
    brk[f.wend] = True
    brk[f.wstart] = False
    b = np.flatnonzero(brk)
    prev = np.concatenate([[-1], b[:-1]])
    same_way = (prev >= 0) & (f.way_of[np.maximum(prev, 0)] == f.way_of[b])
    first = np.where(same_way, prev, f.wstart[f.way_of[b]])
    return first, b


def _links(f: _Flat, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """For each chain end ``2 * chain + side`` (0 start, 1 end), the chain end it merges into, or -1.

    Chains merge end to end at a node no other chain touches, with identical
    attributes; one-way chains only head to tail and never across a U-turn
    (start-to-end vectors > 120° apart: the two sides of a dual carriageway).
    """
    nc = len(c0)
    link = np.full(2 * nc, -1, dtype=np.int64)
    if nc < 2:
        return link
    end_node = np.concatenate([f.ids[c0], f.ids[c1]])
    end_key = np.concatenate([2 * np.arange(nc), 2 * np.arange(nc) + 1])
    order = np.argsort(end_node, kind="stable")
    sn = end_node[order]
    _, first, cnt = np.unique(sn, return_index=True, return_counts=True)
    two = first[cnt == 2]
    ka, kb = end_key[order[two]], end_key[order[two + 1]]
    i, j = ka >> 1, kb >> 1
    attr = f.attr[f.way_of[c0]]
    oneway = np.fromiter((a[5] for a in f.attrs), dtype=bool, count=len(f.attrs))[attr]
    ok = (i != j) & (attr[i] == attr[j])
    ow = oneway[i]
    ok &= ~ow | ((ka & 1) != (kb & 1))  # head to head or tail to tail: not one carriageway
    lat = (f.xy[c0, 1] + f.xy[c1, 1]) / 2
    vx = (f.xy[c1, 0] - f.xy[c0, 0]) * np.cos(np.radians(lat))
    vy = f.xy[c1, 1] - f.xy[c0, 1]
    na, nb = np.hypot(vx[i], vy[i]), np.hypot(vx[j], vy[j])
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (vx[i] * vx[j] + vy[i] * vy[j]) / (na * nb)
    back = (na > 0) & (nb > 0) & (cos < -0.5)
    ok &= ~(ow & back)  # a U-turn: the two sides of one road, kept apart to pair
    link[ka[ok]] = kb[ok]
    link[kb[ok]] = ka[ok]
    return link


def _walk(link: np.ndarray, nc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of linked chains: (piece, chain, side entered) per chain, in walk order.

    A run starts at a chain end that links nowhere (in chain order), walking
    away from it; closed rings made only of linked chains start at their first
    chain.
    """
    lk = link.tolist()
    if not (link >= 0).any():  # nothing merges: each chain is a piece, in chain order
        return np.arange(nc), np.arange(nc), np.zeros(nc, dtype=np.int64)
    seen = [False] * nc
    piece: list[int] = []
    chains: list[int] = []
    sides: list[int] = []
    p = 0

    def walk(i: int, side_in: int) -> None:
        while True:
            seen[i] = True
            piece.append(p)
            chains.append(i)
            sides.append(side_in)
            nxt = lk[2 * i + 1 - side_in]
            if nxt < 0 or seen[nxt >> 1]:
                return
            i, side_in = nxt >> 1, nxt & 1

    linked = ((link[0::2] >= 0) | (link[1::2] >= 0)).tolist()
    for i in range(nc):
        if seen[i]:
            continue
        if not linked[i]:  # a chain alone: no walk needed
            seen[i] = True
            piece.append(p)
            chains.append(i)
            sides.append(0)
            p += 1
            continue
        l0, l1 = lk[2 * i] >= 0, lk[2 * i + 1] >= 0
        if l0 and l1:
            continue  # interior of a run: reached from an end chain
        walk(i, 0 if not l0 else 1)
        p += 1
    for i in range(nc):
        if not seen[i]:
            walk(i, 0)
            p += 1
    return (np.asarray(piece, dtype=np.int64), np.asarray(chains, dtype=np.int64),
            np.asarray(sides, dtype=np.int64))


def _positions(c0: np.ndarray, c1: np.ndarray, e_piece: np.ndarray, e_chain: np.ndarray,
               e_side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node positions of every piece, in order, and the piece of each (a run's shared nodes once)."""
    first = np.ones(len(e_piece), dtype=bool)
    first[1:] = e_piece[1:] != e_piece[:-1]
    skip = (~first).astype(np.int64)
    a, b = c0[e_chain], c1[e_chain]
    n = b - a + 1 - skip
    fwd = e_side == 0
    base = np.where(fwd, a + skip, b - skip)
    step = np.where(fwd, 1, -1)
    rep = np.repeat(np.arange(len(n)), n)
    t = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return base[rep] + step[rep] * t, e_piece[rep]


def _u_turn_cuts(xy: np.ndarray, ids: np.ndarray, offsets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each candidate piece, the offset within it of its U-turn vertex, or -1 (see :func:`build_roads_table`)."""
    out = np.full(len(candidates), -1, dtype=np.int64)
    for n, p in enumerate(candidates.tolist()):
        s, e = int(offsets[p]), int(offsets[p + 1])
        if e - s < 3 or ids[s] == ids[e - 1]:
            continue
        q = xy[s:e] - xy[s]
        q = q * np.array([math.cos(math.radians(float(xy[s, 1]))), 1.0])
        k = int(np.argmax(np.einsum("ij,ij->i", q, q)))
        if 0 < k < e - s - 1:
            v1, v2 = q[k], q[-1] - q[k]
            n1, n2 = math.hypot(*v1), math.hypot(*v2)
            if n1 > 0 and n2 > 0 and float(v1 @ v2) / (n1 * n2) < -0.5:
                out[n] = k
    return out


def build_roads_table(ways: Iterable[RawWay], road_filter: RoadFilter | None = None,
                      merge: bool = True) -> gpd.GeoDataFrame:
    """Turn OSM ways into the roads table (see the module docstring).

    Splitting, merging and measuring run in numpy over the node positions
    of all ways at once; only the walk along runs of merging chains is a loop.

    Parameters
    ----------
    ways
        Ways of any source; only those ``road_filter`` accepts are kept
        (all ways with a ``highway`` tag when it is ``None``).
    road_filter
        The road filter.
    merge
        Merge pieces of consecutive ways with identical attributes.

    Returns
    -------
    geopandas.GeoDataFrame
        The roads table in EPSG:4326, sorted by (u, v, first way id).
    """
    with no_gc():
        return _build(ways, road_filter, merge)


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building many small lists and tuples (none cyclic) otherwise
    triggers collections that scan every live object, over and over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _build(ways: Iterable[RawWay], road_filter: RoadFilter | None, merge: bool) -> gpd.GeoDataFrame:
    f = _flatten(ways, road_filter)
    c0, c1 = _split_at_junctions(f)
    nc = len(c0)
    if nc == 0:
        return empty_roads_table()
    if merge:
        e_piece, e_chain, e_side = _walk(_links(f, c0, c1), nc)
    else:
        e_piece, e_chain, e_side = np.arange(nc), np.arange(nc), np.zeros(nc, dtype=np.int64)
    pos, pos_piece = _positions(c0, c1, e_piece, e_chain, e_side)
    n_pieces = int(e_piece[-1]) + 1
    first_e = np.flatnonzero(np.concatenate([[True], e_piece[1:] != e_piece[:-1]]))
    attr = f.attr[f.way_of[c0[e_chain[first_e]]]]
    oneway_of_attr = np.fromiter((a[5] for a in f.attrs), dtype=bool, count=len(f.attrs))
    oneway = oneway_of_attr[attr]
    # way ids of each piece in walk order, consecutive repeats once
    e_way = f.way_id[f.way_of[c0[e_chain]]]
    new_way = np.ones(len(e_way), dtype=bool)
    new_way[1:] = (e_way[1:] != e_way[:-1]) | (e_piece[1:] != e_piece[:-1])
    w_piece, w_id = e_piece[new_way], e_way[new_way]
    counts = np.bincount(pos_piece, minlength=n_pieces)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n_ways = np.bincount(w_piece, minlength=n_pieces)
    flip = np.zeros(n_pieces, dtype=bool)
    if merge:
        # one-way runs entered at their end run against travel; two-way runs of several ways start at the
        # smaller end coordinate (source-independent, unlike node ids)
        entered_back = e_side[first_e] == 1
        x0, y0 = f.xy[pos[offsets[:-1]]].T
        x1, y1 = f.xy[pos[offsets[1:] - 1]].T
        smaller_end = (x1 < x0) | ((x1 == x0) & (y1 < y0))
        flip = np.where(oneway, entered_back, (n_ways > 1) & smaller_end)
    if flip.any():
        r = flip[pos_piece]
        idx = np.arange(len(pos))
        idx[r] = offsets[pos_piece[r]] + offsets[pos_piece[r] + 1] - 1 - idx[r]
        pos = pos[idx]
        wr = flip[w_piece]
        w_off = np.concatenate([[0], np.cumsum(n_ways)])
        widx = np.arange(len(w_id))
        widx[wr] = w_off[w_piece[wr]] + w_off[w_piece[wr] + 1] - 1 - widx[wr]
        w_id = w_id[widx]
    ids, xy = f.ids[pos], f.xy[pos]
    # a named one-way piece drawn out and back is cut at its vertex farthest from its start
    named = np.fromiter((bool(a[1] or a[3] or a[4]) and a[9] is None for a in f.attrs), dtype=bool,
                        count=len(f.attrs))[attr]
    cand = np.flatnonzero(oneway & named & (counts >= 3))
    cut = _u_turn_cuts(xy, ids, offsets, cand) if len(cand) else np.zeros(0, np.int64)
    piece_src = np.arange(n_pieces)
    if (cut >= 0).any():
        at = offsets[cand[cut >= 0]] + cut[cut >= 0]
        ids, xy = np.insert(ids, at, ids[at]), np.insert(xy, at, xy[at], axis=0)
        # np.insert puts the copy before vertex k: the first half ends on the copy, the second
        # starts at the original; every later vertex moves by the number of cuts before it
        shift = np.searchsorted(at, offsets[:-1], side="left")
        starts = np.sort(np.concatenate([offsets[:-1] + shift, at + np.arange(1, len(at) + 1)]))
        offsets = np.concatenate([starts, [len(ids)]])
        piece_src = np.sort(np.concatenate([np.arange(n_pieces), cand[cut >= 0]]))
    return _table_arrays(ids, xy, offsets, piece_src, attr, f.attrs, w_piece, w_id)


def _table_arrays(ids: np.ndarray, xy: np.ndarray, offsets: np.ndarray, piece_src: np.ndarray, attr: np.ndarray,
                  attrs: list[tuple], w_piece: np.ndarray, w_id: np.ndarray) -> gpd.GeoDataFrame:
    """The roads table from piece vertex arrays; ``piece_src`` maps each row to its piece before U-turn cuts."""
    n = len(offsets) - 1
    counts = np.diff(offsets)
    geoms = shapely.linestrings(xy, indices=np.repeat(np.arange(n), counts))
    length = segment_lengths_sum(xy, offsets)
    code = attr[piece_src]
    cols = list(zip(*attrs))
    col = {k: np.fromiter(cols[c], dtype=object, count=len(attrs))[code] for k, c in
           (("highway", 0), ("name", 1), ("name_en", 2), ("name_zh", 3), ("ref", 4), ("lanes", 6),
            ("maxspeed", 7), ("access", 8), ("junction", 9))}
    n_ways = np.bincount(w_piece, minlength=int(piece_src.max()) + 1)
    bounds = np.concatenate([[0], np.cumsum(n_ways)])
    # most pieces are one way: build those lists directly, slice only the merged ones
    way_lists: list[list[int]] = [[w] for w in w_id[bounds[piece_src]].tolist()]
    wl = w_id.tolist()
    for i in np.flatnonzero(n_ways[piece_src] > 1).tolist():
        p = int(piece_src[i])
        way_lists[i] = wl[bounds[p]:bounds[p + 1]]
    df = pd.DataFrame({
        "u": pd.array(ids[offsets[:-1]], dtype="int64"),
        "v": pd.array(ids[offsets[1:] - 1], dtype="int64"),
        "osm_way_ids": way_lists,
        **{k: pd.array(col[k], dtype=object) for k in ("highway", "name", "name_en", "name_zh", "ref")},
        "oneway": np.fromiter(cols[5], dtype=bool, count=len(attrs))[code],
        **{k: pd.array(col[k], dtype=object) for k in ("lanes", "maxspeed", "access")},
        "length_m": length,
    })
    df["junction"] = pd.array(col["junction"], dtype=object)
    gdf = gpd.GeoDataFrame(df, geometry=geoms, crs="EPSG:4326")
    first_way = np.fromiter((w[0] for w in way_lists), dtype=np.int64, count=n)
    order = np.lexsort((first_way, gdf["v"].to_numpy(), gdf["u"].to_numpy()))
    return gdf.iloc[order].reset_index(drop=True)


def segment_lengths_sum(xy: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Geodesic length (m) of each line, given all vertices and line offsets."""
    if len(xy) < 2:
        return np.zeros(len(offsets) - 1)
    _, _, d = _GEOD.inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])
    d = np.asarray(d, dtype=np.float64)
    # segments that cross from one line into the next are not part of either
    d[offsets[1:-1] - 1] = 0.0
    cum = np.concatenate([[0.0], np.cumsum(d)])
    return cum[offsets[1:] - 1] - cum[offsets[:-1]]


def geodesic_length_m(geoms: gpd.GeoSeries | Iterable) -> np.ndarray:
    """Geodesic length (m) of lon/lat LineStrings (MultiLineStrings summed)."""
    arr = np.asarray(getattr(geoms, "values", geoms), dtype=object)
    parts, idx = shapely.get_parts(arr, return_index=True)
    coords, cidx = shapely.get_coordinates(parts, return_index=True)
    counts = np.bincount(cidx, minlength=len(parts))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    per_part = segment_lengths_sum(coords, offsets) if len(coords) else np.zeros(len(parts))
    return np.bincount(idx, weights=per_part, minlength=len(arr))


def empty_roads_table() -> gpd.GeoDataFrame:
    """A roads table with no rows and the right columns."""
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS if c != "geometry"})
    df["oneway"] = df["oneway"].astype(bool)
    df["length_m"] = df["length_m"].astype(float)
    df["u"] = df["u"].astype("int64")
    df["v"] = df["v"].astype("int64")
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


def ways_from_lines(gdf: gpd.GeoDataFrame, way_id_col: str | None = None,
                    tag_cols: Mapping[str, str] | None = None) -> list[RawWay]:
    """RawWays from a lon/lat line layer whose columns are OSM tags.

    Node ids are derived from the coordinates (:func:`coord_node_id`), so ways
    that share a vertex share a node. MultiLineStrings give one way per part.
    """
    tag_cols = dict(tag_cols or {})
    cols = [c for c in gdf.columns if c != gdf.geometry.name]
    # tag values column by column (one conversion per cell, no per-row dict of the frame)
    columns: list[tuple[str, str, list[Any]]] = []
    for k in cols:
        conv = []
        for val in gdf[k].tolist():
            if val is None or (isinstance(val, float) and np.isnan(val)):
                conv.append(None)
                continue
            if isinstance(val, (list, tuple, np.ndarray)):  # a list column: OSM's ';' list
                val = ";".join(str(v) for v in (val.tolist() if isinstance(val, np.ndarray) else val))
            conv.append(val if isinstance(val, str) else str(val))
        columns.append((k, tag_cols.get(k, k), conv))
    way_ids = gdf[way_id_col].tolist() if way_id_col and way_id_col in gdf.columns else None
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    # all vertices at once (node ids are a function of the coordinate): no per-vertex Python work
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    parts, part_of = shapely.get_parts(geoms[ok], return_index=True)
    part_of = np.flatnonzero(ok)[part_of]
    xy, vert_of = shapely.get_coordinates(parts, return_index=True)
    nid = coord_node_ids(xy[:, 0], xy[:, 1]) if len(xy) else np.zeros(0, dtype=np.int64)
    bounds = np.searchsorted(vert_of, np.arange(len(parts) + 1))
    out: list[RawWay] = []
    tags_of: dict[int, tuple[int, dict[str, str]]] = {}
    for j, i in enumerate(part_of.tolist()):
        a, b = int(bounds[j]), int(bounds[j + 1])
        if b - a < 2:
            continue
        got = tags_of.get(i)
        if got is None:
            tags = {name: conv[i] for _, name, conv in columns if conv[i] is not None}
            wid = way_ids[i] if way_ids is not None else None
            try:
                wid = int(wid) if wid is not None else -(i + 1)
            except (TypeError, ValueError):
                wid = -(i + 1)
            got = tags_of[i] = (wid, tags)
        out.append(RawWay(got[0], got[1], nid[a:b].tolist(), list(map(tuple, xy[a:b].tolist()))))
    return out


def ways_from_graph(G: nx.MultiDiGraph) -> list[RawWay]:
    """RawWays from an *unsimplified* OSMnx graph (one edge per OSM segment).

    OSMnx stores a two-way street as two opposite edges (one ``reversed``) and
    turns ``oneway=-1`` ways to the direction of travel; this undoes both so the
    ways can go through :func:`build_roads_table` like any other source.
    """
    by_way: dict[int, list[tuple[int, int, dict]]] = defaultdict(list)
    for u, v, data in G.edges(data=True):
        if data.get("reversed") is True:
            continue
        osmid = data.get("osmid")
        if isinstance(osmid, list):
            raise ValueError("ways_from_graph needs an unsimplified graph (simplify=False)")
        by_way[int(osmid)].append((u, v, data))
    nodes = G.nodes
    out: list[RawWay] = []
    for wid, edges in by_way.items():
        data0 = edges[0][2]
        skip = {"osmid", "length", "geometry", "reversed", "oneway"}
        tags = {k: str(val) for k, val in data0.items()
                if k not in skip and isinstance(val, (str, int)) and not isinstance(val, bool)}
        tags["oneway"] = "yes" if data0.get("oneway") is True else "no"
        succ: dict[int, list[int]] = defaultdict(list)
        indeg: dict[int, int] = defaultdict(int)
        for u, v, _ in edges:
            succ[u].append(v)
            indeg[v] += 1
        starts = [u for u in succ if indeg[u] == 0] or [edges[0][0]]
        remaining = len(edges)
        for s in starts:
            path = [s]
            while succ.get(path[-1]):
                path.append(succ[path[-1]].pop(0))
                remaining -= 1
            if len(path) >= 2:
                out.append(RawWay(wid, tags, path, [(nodes[n]["x"], nodes[n]["y"]) for n in path]))
        for u in list(succ):  # leftovers: loops
            while succ[u]:
                path = [u]
                while succ.get(path[-1]):
                    path.append(succ[path[-1]].pop(0))
                out.append(RawWay(wid, tags, path, [(nodes[n]["x"], nodes[n]["y"]) for n in path]))
    return out


def roads_to_graph(roads: gpd.GeoDataFrame) -> nx.MultiDiGraph:
    """The roads table as an OSMnx-style MultiDiGraph.

    Nodes carry ``x``/``y``; each piece is one edge ``u -> v`` (and ``v -> u``
    with ``reversed=True`` unless one-way) with ``osmid``, ``highway``, ``name``,
    ``ref``, ``oneway``, ``length`` (m) and ``geometry``. OSMnx functions
    (``ox.convert.to_undirected``, ``ox.stats``...) work on it.
    """
    import networkx as nx

    G = nx.MultiDiGraph(crs="epsg:4326")
    starts = shapely.get_point(roads.geometry.values, 0)
    ends = shapely.get_point(roads.geometry.values, -1)
    for u, p in zip(roads["u"].to_numpy(), starts):
        G.add_node(int(u), x=shapely.get_x(p), y=shapely.get_y(p))
    for v, p in zip(roads["v"].to_numpy(), ends):
        G.add_node(int(v), x=shapely.get_x(p), y=shapely.get_y(p))
    cols = ["highway", "name", "ref", "lanes", "maxspeed"]
    for i, row in enumerate(roads[["u", "v", "osm_way_ids", "oneway", "length_m", *cols]].itertuples(index=False)):
        geom = roads.geometry.values[i]
        osmid = row.osm_way_ids[0] if len(row.osm_way_ids) == 1 else list(row.osm_way_ids)
        attrs = {c: getattr(row, c) for c in cols if getattr(row, c) is not None}
        G.add_edge(int(row.u), int(row.v), osmid=osmid, oneway=bool(row.oneway), reversed=False,
                   length=float(row.length_m), geometry=geom, piece=i, **attrs)
        if not row.oneway:
            G.add_edge(int(row.v), int(row.u), osmid=osmid, oneway=False, reversed=True,
                       length=float(row.length_m), geometry=geom.reverse(), piece=i, **attrs)
    return G


def newest_timestamp(ways: Iterable[RawWay]) -> str | None:
    """The newest element timestamp among ways (ISO 8601), if any has one."""
    stamps = [w.timestamp for w in ways if w.timestamp]
    return max(stamps) if stamps else None
