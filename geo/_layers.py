"""Read road ways from line layers: GeoJSON, GeoPackage, GeoParquet, Shapefile.

Columns are OSM tags (``highway``, ``name``, ``name:en``, ``oneway``...) as in
Overpass/QGIS exports, or Geofabrik's shapefile schema (``fclass``, ``osm_id``,
``oneway`` = F/T/B, ``ref``, ``maxspeed``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from .errors import InputError
from .roads import RawWay, ways_from_lines

LAYER_SUFFIXES = (".geojson", ".json", ".gpkg", ".parquet", ".geoparquet", ".shp", ".fgb")
_ID_COLUMNS = ("osm_way_id", "osm_id", "osmid", "@id", "id")
_GEOFABRIK_ONEWAY = {"F": "yes", "T": "-1", "B": "no"}
_HINT = "give a line layer with a `highway` (OSM) or `fclass` (Geofabrik) column"


def read_layer(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Read a layer file into a GeoDataFrame in EPSG:4326."""
    path = Path(path)
    if os.path.getsize(path) == 0:
        raise InputError("the file is empty (0 bytes)", where=str(path), hint=_HINT)
    try:
        with warnings.catch_warnings():  # NaN coordinates warn here; they are reported below as one line
            warnings.simplefilter("ignore", RuntimeWarning)
            if path.suffix.lower() in {".parquet", ".geoparquet"}:
                gdf = gpd.read_parquet(path)
            else:
                gdf = gpd.read_file(path)
    except Exception as e:  # pyogrio/pyarrow raise many types for broken files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"cannot read the layer ({msg})", where=str(path),
                         hint="the file may be truncated or of another format") from e
    if gdf.crs is None:
        b = gdf.total_bounds if len(gdf) else np.array([0, 0, 0, 0])
        if np.all(np.abs(b[[0, 2]]) <= 180) and np.all(np.abs(b[[1, 3]]) <= 90):
            gdf = gdf.set_crs(4326)
        else:
            raise InputError("the layer has no CRS and its coordinates are not lon/lat", where=str(path),
                             hint="save it with a CRS (e.g. EPSG:4326)")
    elif not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs(4326)
    return gdf


def read_ways(path: str | os.PathLike[str]) -> tuple[list[RawWay], str | None]:
    """Road ways of a layer file; the data timestamp is never known here."""
    gdf = read_layer(path)
    return ways_from_layer(gdf, where=str(path)), None


def ways_from_layer(gdf: gpd.GeoDataFrame, where: str = "layer") -> list[RawWay]:
    """RawWays from a line layer with OSM or Geofabrik columns."""
    gdf = gdf[gdf.geometry.notna()]
    kinds = set(gdf.geometry.geom_type.unique())
    if kinds - {"LineString", "MultiLineString"}:
        gdf = gdf[gdf.geometry.geom_type.isin(["LineString", "MultiLineString"])]
    gdf = gdf.copy()
    _check_lonlat(gdf, where)
    if "highway" not in gdf.columns:
        if "fclass" not in gdf.columns:
            raise InputError("the layer has neither a `highway` nor an `fclass` column", where=where, hint=_HINT)
        gdf["highway"] = gdf["fclass"]
        if "oneway" in gdf.columns:
            gdf["oneway"] = gdf["oneway"].map(_GEOFABRIK_ONEWAY)
    renames = {"name_en": "name:en", "name_zh": "name:zh"}
    tag_cols = {c: renames[c] for c in gdf.columns if c in renames and renames[c] not in gdf.columns}
    id_col = next((c for c in _ID_COLUMNS if c in gdf.columns), None)
    if id_col is not None and gdf[id_col].dtype == object:
        gdf[id_col] = gdf[id_col].astype(str).str.replace(r"^(way/|w)", "", regex=True)
    return ways_from_lines(gdf, way_id_col=id_col, tag_cols=tag_cols)


def _check_lonlat(gdf: gpd.GeoDataFrame, where: str) -> None:
    """Reject NaN or out-of-range lon/lat: they would give silently wrong lengths."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        xy, idx = shapely.get_coordinates(gdf.geometry.values, return_index=True)
    ok = np.isfinite(xy).all(axis=1) & (np.abs(xy[:, 0]) <= 180) & (np.abs(xy[:, 1]) <= 90)
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        x, y = xy[k]
        raise InputError(f"feature #{gdf.index[idx[k]]} has coordinates out of range (lon={x}, lat={y})",
                         where=where, hint="fix or remove the feature; coordinates must be lon/lat degrees")
