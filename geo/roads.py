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
``geometry``     LineString, lon/lat
==============  =============================================================

A piece ends where three or more street ends meet, where a way ends, or where
its attributes change; pieces of consecutive ways with identical attributes
are merged (as OSMnx simplification does, but never mixing classes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
#: Tags whose private value keeps a way out of the network unless asked for.
ACCESS_TAGS = ("access", "motor_vehicle", "motorcar", "vehicle")
ONEWAY_FORWARD = frozenset({"yes", "true", "1"})
ONEWAY_REVERSE = frozenset({"-1", "reverse"})

#: Columns of the roads table, in order.
COLUMNS = [
    "u", "v", "osm_way_ids", "highway", "name", "name_en", "name_zh", "ref",
    "oneway", "lanes", "maxspeed", "access", "length_m", "geometry",
]
_ATTR_TAGS = {"name": "name", "name_en": "name:en", "name_zh": "name:zh", "ref": "ref",
              "lanes": "lanes", "maxspeed": "maxspeed", "access": "access"}


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
        if not self.include_private:
            for key in ACCESS_TAGS:
                if tags.get(key) in PRIVATE_VALUES:
                    return False
        return True

    def overpass_filter(self) -> str:
        """The same filter in Overpass QL, for OSMnx's ``custom_filter``."""
        classes = "|".join(sorted(self.highway))
        q = f'["highway"~"^({classes})$"]["area"!~"yes"]'
        if not self.include_private:
            for key in ACCESS_TAGS:
                q += f'["{key}"!~"^(private|no)$"]'
        return q


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


def _direction(tags: Mapping[str, str]) -> int:
    """1 one-way forward, -1 one-way against the node order, 0 two-way."""
    ow = str(tags.get("oneway", "")).strip().lower()
    if ow in ONEWAY_FORWARD:
        return 1
    if ow in ONEWAY_REVERSE:
        return -1
    if ow in {"no", "false", "0"}:
        return 0
    if tags.get("junction") in {"roundabout", "circular"}:
        return 1
    return 0


@dataclass
class _Chain:
    nodes: list[int]
    coords: list[tuple[float, float]]
    way_ids: list[int]
    attrs: tuple  # (highway, name, name_en, name_zh, ref, oneway, lanes, maxspeed, access)

    @property
    def oneway(self) -> bool:
        return bool(self.attrs[5])


def _chains(ways: Iterable[RawWay], road_filter: RoadFilter | None) -> list[_Chain]:
    """Filter, orient and split ways at shared nodes."""
    kept: list[tuple[RawWay, tuple, list[int], list[tuple[float, float]]]] = []
    uses: dict[int, int] = defaultdict(int)
    for w in ways:
        if road_filter is not None and not road_filter.accepts(w.tags):
            continue
        hw = w.tags.get("highway")
        if not isinstance(hw, str) or len(w.node_ids) < 2:
            continue
        d = _direction(w.tags)
        # a node repeated back to back (a mapping error) would make a zero-length piece
        keep = [i for i in range(len(w.node_ids)) if i == 0 or w.node_ids[i] != w.node_ids[i - 1]]
        if len(keep) < 2:
            continue
        nodes, coords = [w.node_ids[i] for i in keep], [w.coords[i] for i in keep]
        if d == -1:
            nodes.reverse()
            coords.reverse()
        attrs = (hw, *(w.tags.get(_ATTR_TAGS[c]) for c in ("name", "name_en", "name_zh", "ref")),
                 d != 0, *(w.tags.get(_ATTR_TAGS[c]) for c in ("lanes", "maxspeed", "access")))
        kept.append((w, attrs, nodes, coords))
        for n in nodes:
            uses[n] += 1
        # a way's own ends are piece ends
        uses[nodes[0]] += 1
        uses[nodes[-1]] += 1
    chains: list[_Chain] = []
    for w, attrs, nodes, coords in kept:
        start = 0
        for i in range(1, len(nodes)):
            if uses[nodes[i]] >= 2 or i == len(nodes) - 1:
                if i > start:
                    chains.append(_Chain(nodes[start:i + 1], coords[start:i + 1], [w.way_id], attrs))
                start = i
    return chains


def _merge_chains(chains: list[_Chain]) -> list[_Chain]:
    """Merge chains that meet end to end at a node no other chain touches.

    Only chains with identical attributes merge, so a piece has one class,
    one name and one direction of travel.
    """
    ends: dict[int, list[tuple[int, int]]] = defaultdict(list)  # node -> [(chain index, 0 start | 1 end)]
    for i, c in enumerate(chains):
        ends[c.nodes[0]].append((i, 0))
        ends[c.nodes[-1]].append((i, 1))
    # link[i][side] = (j, side_j): chain i's end ``side`` continues into chain j at its ``side_j``
    link: dict[tuple[int, int], tuple[int, int]] = {}
    for node, inc in ends.items():
        if len(inc) != 2:
            continue
        (i, si), (j, sj) = inc
        if i == j:
            continue
        a, b = chains[i], chains[j]
        if a.attrs != b.attrs:
            continue
        if a.oneway and si == sj:  # head to head or tail to tail: not one carriageway
            continue
        link[(i, si)] = (j, sj)
        link[(j, sj)] = (i, si)
    if not link:
        return chains
    seen = [False] * len(chains)
    merged: list[_Chain] = []

    def walk(start: int, enter_side: int) -> _Chain:
        # start at chain ``start`` entered at ``enter_side``; follow links from its other end
        i, side_in = start, enter_side
        nodes: list[int] = []
        coords: list[tuple[float, float]] = []
        way_ids: list[int] = []
        while True:
            seen[i] = True
            c = chains[i]
            n, xy = (c.nodes, c.coords) if side_in == 0 else (c.nodes[::-1], c.coords[::-1])
            if nodes:
                n, xy = n[1:], xy[1:]
            nodes.extend(n)
            coords.extend(xy)
            for wid in c.way_ids:
                if not way_ids or way_ids[-1] != wid:
                    way_ids.append(wid)
            out_side = 1 - side_in
            nxt = link.get((i, out_side))
            if nxt is None or seen[nxt[0]]:
                break
            i, side_in = nxt
        return _Chain(nodes, coords, way_ids, chains[start].attrs)

    for i, c in enumerate(chains):
        if seen[i]:
            continue
        if (i, 0) in link and (i, 1) in link:
            continue  # interior of a run: reached from an end chain
        # start from the free end, walking away from it
        if (i, 0) not in link:
            merged.append(walk(i, 0))
        else:
            # only the end side is free: walk from that end (reversing a two-way chain)
            merged.append(walk(i, 1))
    for i, c in enumerate(chains):  # closed rings made only of linked chains
        if not seen[i]:
            merged.append(walk(i, 0))
    return merged


def _orient_oneway(chains: list[_Chain], original: list[_Chain]) -> None:
    """Turn merged one-way chains back to the direction of travel (in place)."""
    direction: dict[tuple[int, int], bool] = {}
    for c in original:
        if c.oneway:
            for a, b in zip(c.nodes[:-1], c.nodes[1:]):
                direction[(a, b)] = True
    for c in chains:
        if c.oneway and len(c.nodes) >= 2 and (c.nodes[0], c.nodes[1]) not in direction:
            c.nodes.reverse()
            c.coords.reverse()
            c.way_ids.reverse()


def build_roads_table(ways: Iterable[RawWay], road_filter: RoadFilter | None = None,
                      merge: bool = True) -> gpd.GeoDataFrame:
    """Turn OSM ways into the roads table (see the module docstring).

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
    chains = _chains(ways, road_filter)
    pieces = _merge_chains(chains) if merge else chains
    if merge:
        _orient_oneway(pieces, chains)
        _orient_twoway(pieces)
    return _table(pieces)


def _orient_twoway(chains: list[_Chain]) -> None:
    """Give two-way pieces of several ways one direction whatever the order ways came in.

    A merged piece's direction follows where the merge walk started, which
    depends on the order of the input; start it at the lexicographically
    smaller end coordinate (source-independent, unlike node ids).
    """
    for c in chains:
        if not c.oneway and len(c.way_ids) > 1 and c.coords[-1] < c.coords[0]:
            c.nodes.reverse()
            c.coords.reverse()
            c.way_ids.reverse()


def _table(pieces: list[_Chain]) -> gpd.GeoDataFrame:
    if not pieces:
        return empty_roads_table()
    counts = np.fromiter((len(p.coords) for p in pieces), dtype=np.int64, count=len(pieces))
    xy = np.fromiter((v for p in pieces for c in p.coords for v in c), dtype=np.float64,
                     count=int(counts.sum()) * 2).reshape(-1, 2)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    geoms = shapely.linestrings(xy, indices=np.repeat(np.arange(len(pieces)), counts))
    length = segment_lengths_sum(xy, offsets)
    attrs = list(zip(*(p.attrs for p in pieces)))
    df = pd.DataFrame({
        "u": pd.array([p.nodes[0] for p in pieces], dtype="int64"),
        "v": pd.array([p.nodes[-1] for p in pieces], dtype="int64"),
        "osm_way_ids": [list(p.way_ids) for p in pieces],
        "highway": pd.array(attrs[0], dtype=object),
        "name": pd.array(attrs[1], dtype=object),
        "name_en": pd.array(attrs[2], dtype=object),
        "name_zh": pd.array(attrs[3], dtype=object),
        "ref": pd.array(attrs[4], dtype=object),
        "oneway": np.array(attrs[5], dtype=bool),
        "lanes": pd.array(attrs[6], dtype=object),
        "maxspeed": pd.array(attrs[7], dtype=object),
        "access": pd.array(attrs[8], dtype=object),
        "length_m": length,
    })
    gdf = gpd.GeoDataFrame(df, geometry=geoms, crs="EPSG:4326")
    first_way = np.fromiter((p.way_ids[0] for p in pieces), dtype=np.int64, count=len(pieces))
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
    records = gdf[cols].to_dict("records")
    out: list[RawWay] = []
    for i, (rec, geom) in enumerate(zip(records, gdf.geometry.values)):
        if geom is None or geom.is_empty:
            continue
        tags = {}
        for k, val in rec.items():
            if val is None or (isinstance(val, float) and np.isnan(val)):
                continue
            tags[tag_cols.get(k, k)] = str(val) if not isinstance(val, str) else val
        wid = rec.get(way_id_col) if way_id_col else None
        try:
            wid = int(wid) if wid is not None else -(i + 1)
        except (TypeError, ValueError):
            wid = -(i + 1)
        for part in shapely.get_parts(geom):
            xy = shapely.get_coordinates(part)
            if len(xy) < 2:
                continue
            coords = [(float(x), float(y)) for x, y in xy]
            out.append(RawWay(wid, tags, [coord_node_id(x, y) for x, y in coords], coords))
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
