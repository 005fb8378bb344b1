"""Road networks in: every source gives the same roads table.

Sources
-------
``overpass``
    OSMnx ``graph_from_polygon`` on the zone polygon (see :mod:`geo._overpass`).
OSM XML
    ``.osm``, ``.osm.bz2``, ``.osm.gz`` (see :mod:`geo._osmxml`).
OSM PBF
    ``.osm.pbf`` with pyosmium (see :mod:`geo._pbf`).
Road layers
    GeoJSON, GeoPackage, GeoParquet, Shapefile with OSM or Geofabrik columns.
``cache``
    What ``icv pull`` wrote (GeoParquet + JSON sidecar), read without download.
``skeleton``
    The coarse main-road skeleton of the PyPI package ``scgraph-data``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

if TYPE_CHECKING:  # networkx loads only where a graph is built (icv stats needs none)
    import networkx as nx

from . import _cache
from ._layers import LAYER_SUFFIXES
from ._paths import cache_dir as default_cache_dir
from .errors import CacheError, EmptyNetworkError, InputError
from .provenance import Provenance, file_provenance, sha256_file
from .roads import RoadFilter, build_roads_table, parse_filter, roads_to_graph
from .zones import Zone

if TYPE_CHECKING:
    import networkx as nx

XML_SUFFIXES = (".osm", ".osm.bz2", ".osm.gz", ".xml")
PBF_SUFFIXES = (".osm.pbf", ".pbf")
#: OSM history files (every version of every object), read as of a date (see geo._osh).
HISTORY_SUFFIXES = (".osh.pbf", ".osh", ".osh.gz", ".osh.bz2")
#: Overpass pulls a polygon this much wider than the zone (metres), see load_network.
OVERPASS_MARGIN_M = 2000.0
#: Pieces this close to the zone (metres) are kept beside it for pairing and junction clustering:
#: at least the default pair distance (40 m) + twice the junction tolerance (2 x 15 m), with room.
ZONE_MARGIN_M = 200.0


@dataclass
class Network:
    """A loaded road network: the roads table and where it comes from.

    ``roads`` holds the pieces that touch the zone; ``surroundings`` the other
    pieces within :data:`ZONE_MARGIN_M` of it (``None`` without a zone), which
    statistics need so that a zone edge changes no pairing and no junction
    cluster (:attr:`stats_roads`).
    """

    roads: gpd.GeoDataFrame
    provenance: Provenance
    surroundings: gpd.GeoDataFrame | None = None

    @property
    def stats_roads(self) -> gpd.GeoDataFrame:
        """``roads`` and ``surroundings`` in one table, for :func:`geo.stats.road_stats`."""
        if self.surroundings is None or len(self.surroundings) == 0:
            return self.roads
        out = gpd.GeoDataFrame(pd.concat([self.roads, self.surroundings], ignore_index=True),
                               geometry="geometry", crs=self.roads.crs)
        out.attrs = dict(self.roads.attrs)
        return out

    def __repr__(self) -> str:  # short: never the whole roads table
        return (f"Network({len(self.roads):,} pieces, {self.roads['length_m'].sum() / 1000:.1f} km, "
                f"{self.provenance.source_kind} {self.provenance.source})")

    @functools.cached_property
    def graph(self) -> nx.MultiDiGraph:
        """The OSMnx-style graph of the roads table (built on first use)."""
        return roads_to_graph(self.roads)


def source_kind(source: str | os.PathLike[str]) -> str:
    """``overpass``, ``cache``, ``skeleton``, ``osm-history``, ``osm-xml``, ``osm-pbf`` or ``layer``."""
    s = str(source)
    if s in {"overpass", "cache", "skeleton"}:
        return s
    low = s.lower()
    if low.endswith(HISTORY_SUFFIXES):  # before PBF: .osh.pbf ends in .pbf
        return "osm-history"
    if low.endswith(PBF_SUFFIXES):
        return "osm-pbf"
    if low.endswith(XML_SUFFIXES):
        return "osm-xml"
    if low.endswith(LAYER_SUFFIXES):
        return "layer"
    raise InputError(f"unknown kind of road source {s!r}",
                     hint="give .osm/.osm.bz2/.osm.gz, .osm.pbf, .geojson/.gpkg/.parquet/.shp, "
                          "'overpass', 'skeleton' or 'cache'")


def load_network(source: str | os.PathLike[str], *, zone: Zone | None = None,
                 road_filter: RoadFilter | None = None, overpass_url: str | None = None,
                 timeout: int | None = None, memory: int | None = None, cache_dir: Path | None = None,
                 progress: bool = False, as_of: Any = None) -> Network:
    """Load a road network as the normalized roads table.

    Parameters
    ----------
    source
        A file path, ``overpass``, ``skeleton`` or ``cache`` (see the module docstring).
    zone
        Keep the pieces that touch this zone (Overpass pulls just its polygon).
        Statistics clip at the zone boundary later; loading never cuts a piece.
    road_filter
        Which ways are roads; ``drive`` when ``None``.
    overpass_url, timeout, memory
        Overpass settings (``$ICV_OVERPASS_URL`` when ``overpass_url`` is ``None``).
    cache_dir
        The project's cache folder (``$ICV_CACHE_DIR`` or ``./cache``).
    progress
        Show progress on stderr for long work.
    as_of
        The network as it was at this date (``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY`` or a
        :class:`geo.history.AsOf`): Overpass attic data, the state of an OSM history
        file, or the cache entry pulled for that date. Other sources have no history.

    Returns
    -------
    Network

    Raises
    ------
    InputError, EmptyNetworkError, SourceUnavailableError, CacheError
    """
    road_filter = road_filter or parse_filter("drive")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    kind = source_kind(source)
    zone_name = zone.name if zone is not None else None
    when = None
    if as_of is not None:
        from .history import parse_as_of

        when = parse_as_of(as_of)
        if kind not in {"overpass", "osm-history", "cache"}:
            raise InputError(f"--as-of needs a source with history, not {kind} {str(source)!r}",
                             hint="use --source overpass, an OSM history file (.osh.pbf, .osh, .osh.gz), or the "
                                  "cache of `icv pull --as-of`")
    if kind == "cache":
        if zone is None:
            raise InputError("the cache is kept per zone", hint="give --zone")
        roads, prov = _cache.read_cache(cache_dir, _cache.cache_key(zone.name, road_filter.label,
                                                                    when.label if when else None),
                                        zone_sha256=_cache.zone_fingerprint(zone.geometry))
        # the cache holds the margin too (pull_to_cache writes stats_roads)
        touch = _touches(roads, zone)
        inside, around = roads.loc[touch].reset_index(drop=True), roads.loc[~touch].reset_index(drop=True)
        inside.attrs = dict(roads.attrs)
        return Network(inside, prov.with_(notes=[*prov.notes, f"read from cache {cache_dir}"]), around)
    if kind == "overpass":
        if zone is None:
            raise InputError("an Overpass pull needs a zone polygon", hint="give --zone")
        from . import _overpass

        # OSMnx cuts each way at its first node outside the polygon; a margin keeps
        # whole pieces at the zone edge, as the file sources give them
        ways, info = _overpass.fetch_ways(zone.geometry, road_filter, url=overpass_url, timeout=timeout if timeout is not None else 180,
                                          memory=memory, cache_dir=cache_dir, progress=progress,
                                          margin_m=OVERPASS_MARGIN_M, as_of=when.attic if when else None)
        prov = Provenance("overpass", info.url, osm_timestamp=when.attic if when else info.osm_base,
                          filter=road_filter.label, zone=zone_name,
                          notes=[f"Overpass attic data as of {when.attic} (server data {info.osm_base or 'unknown'})"]
                          if when else [])
        roads = build_roads_table(ways, road_filter)
        return _finish(roads, prov, zone, str(source))
    if kind == "skeleton":
        from . import _skeleton  # provided with the fleet work

        roads, prov = _skeleton.load_skeleton(zone, road_filter)
        return _finish(roads, prov, zone, "scgraph-data skeleton")
    path = Path(source)
    if not path.exists():
        raise InputError("file not found", where=str(path), hint="check the path")
    if path.is_dir():
        raise InputError("is a folder, not a file", where=str(path), hint="give a road-network file")
    reader: Callable[[Path], tuple[list[Any], str | None]]
    if kind == "osm-history":
        from ._osh import read_ways_as_of

        ways, stamp = read_ways_as_of(path, when.moment if when else None)
        prov = file_provenance(kind, path, osm_timestamp=stamp, filter=road_filter.label, zone=zone_name,
                               notes=[f"OSM history file as of {when.attic if when else stamp}"])
        if not ways:
            raise EmptyNetworkError(f"the history file holds no road ways as of {stamp}", where=str(path),
                                    hint="check the date and that the file covers the zone")
        return _finish(build_roads_table(ways, road_filter), prov, zone, str(path))
    if kind == "osm-xml":
        from ._osmxml import read_ways as reader
    elif kind == "osm-pbf":
        from ._pbf import read_ways as reader
    else:
        from ._layers import read_ways as reader
    # a bar for the big text format; PBF and layers read in seconds
    counts: dict[str, int] = {}
    if kind == "osm-xml":
        ways, stamp = reader(path, progress=progress, counts=counts)
    elif kind == "osm-pbf":
        ways, stamp = reader(path, counts=counts)
    else:
        ways, stamp = reader(path)
    notes = []
    if counts.get("missing"):  # a cut extract: say how much of the ways' geometry the file lacks
        notes.append(f"{counts['missing']:,} of {counts['refs']:,} way node refs have no node in the file "
                     "(roads cut there)")
    prov = file_provenance(kind, path, osm_timestamp=stamp, filter=road_filter.label, zone=zone_name, notes=notes)
    if not ways:
        raise EmptyNetworkError("the file holds no road ways (no way with a highway tag)", where=str(path),
                                hint="check that it is an OSM road extract of the right area")
    roads = build_roads_table(ways, road_filter)
    return _finish(roads, prov, zone, str(path))


def _finish(roads: gpd.GeoDataFrame, prov: Provenance, zone: Zone | None, where: str) -> Network:
    if len(roads) == 0:
        raise EmptyNetworkError(f"no road ways pass the filter {prov.filter!r}", where=where,
                                hint="try --filter all-roads or another --highway list")
    around = None
    if zone is not None:
        near = select_in_zone(roads, zone, margin_m=ZONE_MARGIN_M)
        touch = _touches(near, zone)
        roads, around = near.loc[touch].reset_index(drop=True), near.loc[~touch].reset_index(drop=True)
        if len(roads) == 0:
            raise EmptyNetworkError(f"no road of the source lies in zone {zone.name!r}", where=where,
                                    hint="check the zone, or that the extract covers it")
        around.attrs["provenance"] = prov.to_dict()
    roads.attrs["provenance"] = prov.to_dict()
    return Network(roads, prov, around)


def _touches(roads: gpd.GeoDataFrame, zone: Zone) -> np.ndarray:
    geom = zone.geometry
    shapely.prepare(geom)
    return np.asarray(shapely.intersects(geom, roads.geometry.values), dtype=bool)


def select_in_zone(roads: gpd.GeoDataFrame, zone: Zone, margin_m: float = 0.0) -> gpd.GeoDataFrame:
    """Pieces that touch the zone, or come within ``margin_m`` metres of it (whole pieces; statistics clip later).

    The margin is measured in the zone's local UTM zone.
    """
    if margin_m <= 0:
        return roads.loc[_touches(roads, zone)].reset_index(drop=True)
    from .stats import _project, local_utm_crs

    crs = local_utm_crs(zone.geometry)
    wide = _project(np.array([zone.geometry], dtype=object), crs)[0].buffer(margin_m)
    shapely.prepare(wide)
    if len(roads) == 0:
        return roads
    # only pieces in a lon/lat box 1.5 x the margin wider are projected and tested
    x0, y0, x1, y1 = zone.geometry.bounds
    dlat = 1.5 * margin_m / 111_000.0
    dlon = dlat / max(math.cos(math.radians(max(abs(y0), abs(y1)) + dlat)), 0.01)
    geoms = np.asarray(roads.geometry.values, dtype=object)
    near = np.flatnonzero(shapely.intersects(shapely.box(x0 - dlon, y0 - dlat, x1 + dlon, y1 + dlat), geoms))
    hit = np.zeros(len(roads), dtype=bool)
    hit[near] = shapely.intersects(wide, _project(geoms[near], crs))
    return roads.loc[hit].reset_index(drop=True)


def pull_to_cache(source: str, *, zone: Zone, road_filter: RoadFilter | None = None, force: bool = False,
                  cache_dir: Path | None = None, as_of: Any = None, **kw: Any) -> Path:
    """Load a network (default: through Overpass) and write it to the cache.

    Returns the cached Parquet path. An existing, valid cache is kept unless ``force``.
    With ``as_of`` the network as of that date is cached under its own key.
    """
    road_filter = road_filter or parse_filter("drive")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if as_of is not None:
        from .history import parse_as_of

        as_of = parse_as_of(as_of)
        kw["as_of"] = as_of
    key = _cache.cache_key(zone.name, road_filter.label, as_of.label if as_of is not None else None)
    zone_sha = _cache.zone_fingerprint(zone.geometry)
    if not force and _cache.cache_exists(cache_dir, key) and _same_request(cache_dir, key, source, zone_sha):
        try:
            _cache.read_cache(cache_dir, key, zone_sha256=zone_sha)
            return _cache.cache_paths(cache_dir, key)[0]
        except CacheError:  # a corrupted cache is fetched again
            pass
    net = load_network(source, zone=zone, road_filter=road_filter, cache_dir=cache_dir, **kw)
    _cache.remove_stale_temp(cache_dir)
    return _cache.write_cache(net.stats_roads, net.provenance, cache_dir, key, zone_sha256=zone_sha)


def _same_request(cache_dir: Path, key: str, source: str, zone_sha: str) -> bool:
    """Whether the cached entry came from this source (same file content) and this outline."""
    side = _cache.read_sidecar(cache_dir, key)
    if not side or side.get("zone_sha256") not in (None, zone_sha):
        return False
    prov = side.get("provenance", {})
    kind = source_kind(source)
    if prov.get("source_kind") != kind:
        return False
    if kind in {"osm-xml", "osm-pbf", "layer", "osm-history"}:
        path = Path(source)
        return path.is_file() and prov.get("source_sha256") == sha256_file(path)
    return True


def summarize(roads: gpd.GeoDataFrame, by: str | None = "highway") -> list[dict[str, Any]]:
    """Rows and km of the roads table, per highway class (or in total)."""
    total_km = float(roads["length_m"].sum()) / 1000.0
    rows: list[dict[str, Any]] = []
    if by:
        g = roads.groupby(by, sort=True)["length_m"].agg(["count", "sum"])
        g = g.sort_values("sum", ascending=False)
        for cls, r in g.iterrows():
            km = float(r["sum"]) / 1000.0
            rows.append({by: cls, "pieces": int(r["count"]), "km": round(km, 3),
                         "share_pct": round(100 * km / total_km, 1) if total_km else 0.0})
    rows.append({(by or "highway"): "total", "pieces": int(len(roads)), "km": round(total_km, 3),
                 "share_pct": 100.0 if total_km else 0.0})
    return rows
