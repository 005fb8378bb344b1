"""Geometry outputs by file suffix: GeoPackage, FlatGeobuf, GeoJSON, GeoParquet.

QGIS, GDAL and pandas users get the road pieces in the format they open:
``.gpkg`` (provenance also in the GeoPackage metadata), ``.fgb``, ``.geojson``
(RFC 7946: lon/lat) and ``.parquet`` (GeoParquet; GDAL builds without the
Parquet driver, such as Debian's 3.6 and pyogrio's wheels, cannot open it, so
it is not the only choice). List columns (``osm_way_ids``) stay lists where the
format has them (GeoJSON, GeoParquet) and are joined with ``;`` elsewhere.
Every file gets a ``FILE.provenance.json`` sidecar and is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from ._atomic import atomic_paths
from ._format import provenance_sidecar
from .errors import InputError

#: Suffix -> (GDAL driver or "parquet", whether the format holds list values).
GEOMETRY_SUFFIXES: dict[str, tuple[str, bool]] = {
    ".gpkg": ("GPKG", False),
    ".fgb": ("FlatGeobuf", False),
    ".geojson": ("GeoJSON", True),
    ".parquet": ("parquet", True),
}


def geometry_format(path: str | os.PathLike[str]) -> str | None:
    """The geometry format a file name asks for (its suffix), or None."""
    suffix = Path(path).suffix.lower()
    return suffix if suffix in GEOMETRY_SUFFIXES else None


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _flat(gdf: gpd.GeoDataFrame, lists: bool) -> gpd.GeoDataFrame:
    """List cells as plain lists (JSON, Parquet) or as one ``;``-joined string (GPKG, FlatGeobuf)."""
    out = gdf.copy()
    for col in out.columns:
        if col == out.geometry.name or out[col].dtype != object:
            continue
        if out[col].map(_is_list).any():
            if lists:
                out[col] = out[col].map(lambda v: [x.item() if hasattr(x, "item") else x for x in v]
                                        if _is_list(v) else v)
            else:
                out[col] = out[col].map(lambda v: ";".join(str(x) for x in v) if _is_list(v) else v)
    return out


def write_geometry(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str], *,
                   provenance: Mapping[str, Any] | None = None, layer: str = "roads") -> list[Path]:
    """Write ``gdf`` in the format its suffix names, with a ``.provenance.json`` sidecar.

    Parameters
    ----------
    gdf
        A GeoDataFrame with a CRS (written as is; GeoJSON is always EPSG:4326).
    path
        ``.gpkg``, ``.fgb``, ``.geojson`` or ``.parquet``.
    provenance
        Source, OSM timestamp, filter, zone, tool version, attribution: into the
        sidecar, and into the GeoPackage's metadata.
    layer
        Layer name (GeoPackage, FlatGeobuf).

    Returns
    -------
    list of Path
        The data file and its sidecar.

    Raises
    ------
    InputError
        An unknown suffix, or a GeoDataFrame without a CRS.
    """
    out = Path(path)
    fmt = geometry_format(out)
    if fmt is None:
        raise InputError(f"{out.name}: not a geometry format", where=str(out),
                         hint="use a name ending in " + ", ".join(GEOMETRY_SUFFIXES))
    if gdf.crs is None:
        raise InputError("the table has no CRS", where=str(out), hint="set one (roads tables are EPSG:4326)")
    driver, lists = GEOMETRY_SUFFIXES[fmt]
    data = _flat(gdf, lists)
    if fmt == ".geojson" and data.crs.to_epsg() != 4326:
        data = data.to_crs(4326)  # RFC 7946
    prov = {"file": out.name, "format": driver, "crs": data.crs.to_string(), "rows": int(len(data)),
            "layer": layer, **dict(provenance or {})}
    side = provenance_sidecar(out)
    with atomic_paths(out, side) as (tmp, tmp_side):
        if fmt == ".parquet":
            data.to_parquet(tmp, index=False)
        elif fmt == ".geojson":
            # geopandas' own writer keeps lists as JSON arrays (GDAL would need typed list fields)
            tmp.write_text(data.to_json(drop_id=True, ensure_ascii=False, default=str), encoding="utf-8")
        else:
            import pyogrio

            tmp.unlink()  # GDAL creates the file itself
            kw: dict[str, Any] = {}
            if driver == "GPKG":
                kw["dataset_metadata"] = {"icv_provenance": json.dumps(prov, ensure_ascii=False, default=str),
                                          "attribution": str(prov.get("attribution", ""))}
            pyogrio.write_dataframe(data, tmp, layer=layer, driver=driver, **kw)
        tmp_side.write_text(json.dumps(prov, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return [out, side]


__all__ = ["GEOMETRY_SUFFIXES", "geometry_format", "write_geometry"]
