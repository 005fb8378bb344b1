"""The coarse main-road skeleton of the PyPI package ``scgraph-data`` as a road source.

``scgraph-data`` (MIT; data © OpenStreetMap contributors) ships a world graph of
main roads (``scgraph_data/world_highways.py``): nodes as ``[lat, lon]`` rounded
to 0.001° (about 100 m), undirected straight edges, no names, classes or
one-way information. Inside Jiading it holds about 367 km of road. It is good
for a district-wide demo (simulated fleets, maps) when no OSM extract is at hand,
never for statistics of the real network.

How it becomes a roads table (:func:`load_skeleton`):

- the module file is read as text from the installed package (importing it
  needs an old ``scgraph`` API, and the data are never copied into this
  repository); both literal lines are parsed with numpy/str operations;
- edges with an end inside the zone's bounding box (widened by 0.05°) and whose
  straight line touches the zone polygon are kept;
- every edge becomes a two-way way with ``highway`` = :data:`SKELETON_HIGHWAY`
  (a placeholder: the source has no classes) and a negative synthetic way id
  (OSM's convention for ids that are not OSM's); they go through
  :func:`geo.roads.build_roads_table`, which merges chains of edges between
  junctions into pieces and measures geodesic lengths;
- the road filter is not applied (the skeleton has no classes; it is all main
  road) and provenance says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from .errors import EmptyNetworkError, InputError
from .provenance import Provenance, sha256_file
from .roads import RawWay, RoadFilter, build_roads_table, coord_node_id
from .zones import Zone

#: The placeholder class of every skeleton piece (the source has no road classes).
SKELETON_HIGHWAY = "unclassified"
SKELETON_NOTE = ("coarse main-road skeleton (scgraph-data world_highways: OSM-derived, nodes rounded to "
                 "0.001 deg ~ 100 m, straight edges, no names, classes or one-way; highway='unclassified' "
                 "is a placeholder)")
_PACKAGE = "scgraph_data"
_MODULE_FILE = "world_highways.py"
_INSTALL_HINT = "install the optional extra: pip install 'icv[skeleton]' (or pip install scgraph-data)"


def skeleton_file() -> Path:
    """Path of ``world_highways.py`` in the installed ``scgraph-data``.

    Raises
    ------
    InputError
        When the package is not installed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the skeleton source needs the PyPI package scgraph-data, which is not installed",
                         hint=_INSTALL_HINT)
    p = Path(list(spec.submodule_search_locations)[0]) / _MODULE_FILE
    if not p.exists():
        raise InputError(f"scgraph-data is installed but has no {_MODULE_FILE}", where=str(p.parent),
                         hint="reinstall scgraph-data>=2.0")
    return p


def read_skeleton_graph(path: Path) -> tuple[np.ndarray, list[str]]:
    """Node coordinates and raw adjacency text of the scgraph-data module file.

    Returns
    -------
    lonlat
        ``(n, 2)`` float array of (lon, lat).
    adjacency
        One string per node, ``"j: km, k: km"`` (empty for an isolated node).
    """
    graph_line = nodes_line = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("graph=["):
                graph_line = line.strip()
            elif line.startswith("nodes=["):
                nodes_line = line.strip()
    if graph_line is None or nodes_line is None:
        raise InputError("unexpected layout of the scgraph-data module file", where=str(path),
                         hint="install scgraph-data 2.x")
    body = nodes_line[len("nodes=[["):-2]
    latlon = np.array(body.replace("], [", ",").split(","), dtype=np.float64).reshape(-1, 2)
    adjacency = graph_line[len("graph=[{"):-2].split("}, {")
    if len(adjacency) != len(latlon):
        raise InputError("scgraph-data graph and node lists differ in length", where=str(path),
                         hint="reinstall scgraph-data")
    return latlon[:, ::-1].copy(), adjacency


def skeleton_edges(zone_geom: shapely.Geometry, lonlat: np.ndarray, adjacency: list[str],
                   margin_deg: float = 0.05) -> np.ndarray:
    """Undirected edges ``(i, j)``, ``i < j``, whose straight line touches ``zone_geom``."""
    minx, miny, maxx, maxy = zone_geom.bounds
    inbox = ((lonlat[:, 0] >= minx - margin_deg) & (lonlat[:, 0] <= maxx + margin_deg)
             & (lonlat[:, 1] >= miny - margin_deg) & (lonlat[:, 1] <= maxy + margin_deg))
    pairs: set[tuple[int, int]] = set()
    for i in np.flatnonzero(inbox):
        text = adjacency[i].strip()
        if not text:
            continue
        for item in text.split(","):
            j = int(item.split(":")[0])
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    edges = np.array(sorted(pairs), dtype=np.int64)
    lines = shapely.linestrings(np.stack([lonlat[edges[:, 0]], lonlat[edges[:, 1]]], axis=1))
    shapely.prepare(zone_geom)
    return edges[shapely.intersects(zone_geom, lines)]


def load_skeleton(zone: Zone | None, road_filter: RoadFilter | None = None) -> tuple[gpd.GeoDataFrame, Provenance]:
    """The scgraph-data main-road skeleton of a zone as a roads table.

    Parameters
    ----------
    zone
        The zone; edges that touch it are kept whole (statistics clip later).
    road_filter
        Recorded in provenance only: the skeleton has no classes to filter.

    Returns
    -------
    (roads, provenance)
        The roads table (see :mod:`geo.roads`), every piece two-way with
        ``highway`` = :data:`SKELETON_HIGHWAY`, and its provenance
        (``source_kind`` ``skeleton``).

    Raises
    ------
    InputError
        No zone given, or scgraph-data missing.
    EmptyNetworkError
        No skeleton edge touches the zone.
    """
    if zone is None:
        raise InputError("the skeleton covers the whole world", hint="give --zone to select a part of it")
    path = skeleton_file()
    lonlat, adjacency = read_skeleton_graph(path)
    edges = skeleton_edges(zone.geometry, lonlat, adjacency)
    if len(edges) == 0:
        raise EmptyNetworkError(f"no skeleton road touches zone {zone.name!r}", where=str(path),
                                hint="the skeleton holds main roads only; use an OSM extract")
    tags = {"highway": SKELETON_HIGHWAY}
    ways = []
    for k, (i, j) in enumerate(edges):
        coords = [(float(lonlat[i, 0]), float(lonlat[i, 1])), (float(lonlat[j, 0]), float(lonlat[j, 1]))]
        ways.append(RawWay(-(k + 1), tags, [coord_node_id(*coords[0]), coord_node_id(*coords[1])], coords))
    roads = build_roads_table(ways, None)
    try:
        from importlib.metadata import version

        ver = version("scgraph-data")
    except Exception:  # noqa: BLE001 - the version is informative only
        ver = "unknown"
    notes = [SKELETON_NOTE, f"scgraph-data {ver}"]
    if road_filter is not None:
        notes.append(f"road filter {road_filter.label!r} not applied: the skeleton has no road classes")
    prov = Provenance("skeleton", f"scgraph-data {ver}: {_PACKAGE}/{_MODULE_FILE}", source_sha256=sha256_file(path),
                      filter=road_filter.label if road_filter else None, zone=zone.name, notes=notes)
    roads.attrs["provenance"] = prov.to_dict()
    return roads, prov
