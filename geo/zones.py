"""Test zones: named (Multi)Polygons in EPSG:4326 with optional sub-zones.

(Minimal version; extended by the zones work: import, validation, equal-area areas.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry.base import BaseGeometry

from ._paths import ZONES_DIR
from .errors import ZoneError


@dataclass
class Zone:
    """A named test zone.

    Attributes
    ----------
    name
        Short name (``jiading``).
    geometry
        (Multi)Polygon, lon/lat EPSG:4326.
    subzones
        Optional GeoDataFrame (EPSG:4326) with a ``name`` column.
    meta
        Source, licence and derivation (the zone's JSON sidecar).
    """

    name: str
    geometry: BaseGeometry
    subzones: gpd.GeoDataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_zone(name_or_path: str | Path) -> Zone:
    """A shipped zone by name (``data/zones/NAME.geojson``) or a zone file."""
    p = Path(name_or_path)
    if not p.suffix:
        p = ZONES_DIR / f"{name_or_path}.geojson"
    if not p.exists():
        raise ZoneError(f"no zone {name_or_path!r}", hint="use `icv zone list` or give a GeoJSON file")
    gdf = gpd.read_file(p).to_crs(4326)
    return Zone(name=p.stem, geometry=gdf.union_all())
