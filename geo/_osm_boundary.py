"""OSM boundary relations as test zones: from a local extract, or online through OSMnx.

``osm:relation/ID`` names a boundary (or multipolygon) relation. From a local
extract (``--source FILE``: .osm, .osm.gz, .osm.bz2, .osm.pbf, read by pyosmium)
the member ways are noded and joined into rings by :func:`shapely.polygonize_full`,
and the area is what an odd number of rings enclose (inner rings are holes, an
island in a hole is land: the result of libosmium's multipolygon assembler,
which the tests compare it with on real extracts). A ring that does not close
(a member way missing from a clipped extract) is an error naming the relation,
never a smaller zone.

The next administrative level (``--subzones``) is every ``boundary=administrative``
relation of the extract with the smallest ``admin_level`` above the zone's whose
representative point lies in the zone.

Online, :func:`relation_online` asks Nominatim through
``osmnx.geocode_to_gdf("R<ID>", by_osmid=True)``; ``--nominatim-url`` (env
``ICV_NOMINATIM_URL``) points it at another server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from .errors import SourceUnavailableError, ZoneError

__all__ = ["parse_relation_spec", "BoundaryRelation", "relation_from_file", "relations_from_file",
           "next_level", "relation_online"]

_SPEC_RE = re.compile(r"^osm:(?:relation|rel|r)/(\d+)$", re.IGNORECASE)
OSM_SUFFIXES = (".osm", ".osm.gz", ".osm.bz2", ".osm.pbf", ".pbf", ".osc", ".o5m")


def parse_relation_spec(text: str) -> int | None:
    """``osm:relation/123`` -> 123; None when ``text`` is not such a spec."""
    m = _SPEC_RE.match(str(text).strip())
    return int(m.group(1)) if m else None


@dataclass
class BoundaryRelation:
    """A relation as read from an extract.

    Attributes
    ----------
    id
        OSM relation id.
    tags
        Its tags.
    ways
        (way id, role) of its way members, in order.
    geometry
        The assembled (Multi)Polygon, lon/lat; None before :func:`_assemble`.
    """

    id: int
    tags: dict[str, str]
    ways: list[tuple[int, str]]
    geometry: BaseGeometry | None = None
    timestamp: str | None = None
    missing: list[int] = field(default_factory=list)
    #: The member ways the extract has, when the rings cannot be closed (to tell where it lies).
    partial: BaseGeometry | None = None

    @property
    def name(self) -> str:
        return self.tags.get("name:en") or self.tags.get("name") or f"relation {self.id}"

    @property
    def admin_level(self) -> int | None:
        try:
            return int(self.tags.get("admin_level", ""))
        except ValueError:
            return None


def _is_osm_file(path: Path) -> bool:
    n = path.name.lower()
    return any(n.endswith(s) for s in OSM_SUFFIXES)


def _read(path: Path, want: set[int] | None, *, admin: bool) -> dict[int, BoundaryRelation]:
    """Relations ``want`` (and, with ``admin``, every administrative boundary) with their ways' lines."""
    import osmium

    if not path.exists():
        raise ZoneError("OSM extract not found", where=str(path), hint="give --source FILE.osm|.osm.pbf")
    rels: dict[int, BoundaryRelation] = {}
    try:
        for r in osmium.FileProcessor(str(path), osmium.osm.RELATION):
            tags = {t.k: t.v for t in r.tags}
            if (want is not None and r.id in want) or (admin and tags.get("boundary") == "administrative"):
                rels[r.id] = BoundaryRelation(r.id, tags, [(m.ref, m.role) for m in r.members if m.type == "w"],
                                              timestamp=str(r.timestamp) if r.timestamp else None)
        need = {w for rel in rels.values() for w, _ in rel.ways}
        lines: dict[int, Any] = {}
        if need:
            for w in osmium.FileProcessor(str(path), osmium.osm.WAY | osmium.osm.NODE).with_locations():
                if w.type_str() != "w" or w.id not in need:
                    continue
                try:
                    coords = [(n.lon, n.lat) for n in w.nodes]
                except osmium.InvalidLocationError:
                    continue  # a node outside the extract: the way is incomplete
                if len(coords) >= 2:
                    lines[w.id] = shapely.LineString(coords)
    except (RuntimeError, OSError) as e:
        raise ZoneError(f"cannot read the OSM extract ({e})", where=str(path),
                        hint="give an OSM XML or PBF file") from None
    for rel in rels.values():
        rel.missing = [w for w, _ in rel.ways if w not in lines]
        rel.geometry = _assemble(rel, lines) if not rel.missing else None
        present = [lines[w] for w, _ in rel.ways if w in lines]
        rel.partial = shapely.union_all(present) if rel.geometry is None and present else None
    return rels


_AREA_ROLES = ("outer", "inner", "", "exclave", "enclave")
_AREA_TYPES = ("boundary", "multipolygon")


def _assemble(rel: BoundaryRelation, lines: dict[int, Any]) -> BaseGeometry | None:
    """The area the member ways enclose, by the even-odd rule; None if a ring does not close.

    The ways are noded (ways that meet mid-way are split there) and polygonized;
    a face is inside when an odd number of ring shells hold it. So an inner ring
    is a hole, an island in it is land again, and a pocket closed off by the
    outer ways alone is a hole too, as libosmium's assembler has them.
    """
    members = [lines[w] for w, role in rel.ways if role in _AREA_ROLES and w in lines]
    if not members:
        return None
    noded = shapely.get_parts(shapely.union_all(members))
    polys, cuts, dangles, invalid = shapely.polygonize_full(noded)
    if polys.is_empty or not all(g.is_empty for g in (cuts, dangles, invalid)):
        return None
    faces = shapely.get_parts(polys)
    shells = shapely.polygons(shapely.get_exterior_ring(faces))
    tree = shapely.STRtree(shells)
    points = shapely.point_on_surface(faces)
    pairs = tree.query(points, predicate="within")  # (point index, shell index)
    depth = np.bincount(pairs[0], minlength=len(faces))
    inside = faces[depth % 2 == 1]
    if len(inside) == 0:
        return None
    geom = shapely.union_all(inside)
    return shapely.make_valid(geom) if not geom.is_valid else geom


def relations_from_file(path: str | Path, ids: set[int] | None = None, *,
                        admin: bool = False) -> dict[int, BoundaryRelation]:
    """Read relations (``ids``, and with ``admin`` every administrative boundary) from an extract."""
    return _read(Path(path), ids, admin=admin)


def relation_from_file(path: str | Path, relation_id: int) -> BoundaryRelation:
    """One relation of a local extract, its rings assembled.

    Raises
    ------
    ZoneError
        The file is not an OSM extract, holds no such relation, or its rings do
        not close (member ways missing from the extract, or a broken ring).
    """
    p = Path(path)
    if not _is_osm_file(p):
        raise ZoneError(f"osm:relation/{relation_id} needs an OSM extract as --source, not {p.name!r}",
                        hint="give --source FILE.osm|.osm.pbf holding the relation, or leave --source for "
                             "the online lookup (--source overpass)")
    rels = _read(p, {relation_id}, admin=False)
    rel = rels.get(relation_id)
    if rel is None:
        raise ZoneError(f"no relation {relation_id} in the extract", where=str(p),
                        hint="check the id, or use an extract that holds the boundary relation and its ways")
    if rel.tags.get("type") not in _AREA_TYPES:
        raise ZoneError(f"relation {relation_id} ({rel.name!r}) is type={rel.tags.get('type', '(none)')!r}, "
                        "not an area", where=str(p), hint="give a boundary or multipolygon relation")
    if rel.missing:
        raise ZoneError(f"relation {relation_id} ({rel.name!r}) lacks {len(rel.missing)} of its {len(rel.ways)} "
                        f"member ways in the extract (e.g. way {rel.missing[0]})", where=str(p),
                        hint="cut the extract with complete multipolygons (osmium extract -s smart), or add the "
                             "relation and its ways (osmium getid -r FILE rID)")
    if rel.geometry is None or rel.geometry.is_empty:
        raise ZoneError(f"the rings of relation {relation_id} ({rel.name!r}) do not close", where=str(p),
                        hint="check the relation in an editor: every outer and inner ring must be closed")
    return rel


def next_level(path: str | Path, parent: BoundaryRelation) -> list[BoundaryRelation]:
    """The administrative boundaries one level below ``parent`` inside it (their rings closed).

    Boundaries of that level whose ways the extract lacks but whose present ways
    run inside the zone are left out with a :class:`geo.zones.ZoneWarning`
    naming them: the sub-zones then do not tile the zone.
    """
    import warnings

    from .zones import ZoneWarning

    rels = _read(Path(path), None, admin=True)
    base = parent.admin_level or 0
    inside = [r for r in rels.values() if r.id != parent.id and r.geometry is not None
              and (r.admin_level or 0) > base
              and parent.geometry.covers(r.geometry.representative_point())]
    if not inside:
        return []
    level = min(r.admin_level or 0 for r in inside)
    broken = [r for r in rels.values() if r.geometry is None and r.admin_level == level and r.partial is not None
              and shapely.intersection(r.partial, parent.geometry).length > 0]
    if broken:
        warnings.warn(f"{Path(path).name}: {len(broken)} boundaries of admin_level {level} in the zone lack "
                      "member ways in the extract and are left out of the sub-zones: "
                      + ", ".join(f"relation {r.id} ({r.name!r})" for r in broken[:5])
                      + ("..." if len(broken) > 5 else ""), ZoneWarning, stacklevel=2)
    return sorted((r for r in inside if r.admin_level == level), key=lambda r: r.id)


def relation_online(relation_id: int, *, nominatim_url: str | None = None, timeout: int = 60) -> tuple[BaseGeometry, dict[str, Any]]:
    """The outline of a relation from Nominatim, via ``osmnx.geocode_to_gdf(by_osmid=True)``.

    Returns
    -------
    (geometry, properties)
        The (Multi)Polygon (lon/lat) and Nominatim's row (display_name, osm_id...).

    Raises
    ------
    SourceUnavailableError
        Nominatim cannot be reached or answers with an error.
    ZoneError
        Nominatim knows no such relation, or its geometry is not an area.
    """
    import osmnx as ox
    import requests

    saved = {k: getattr(ox.settings, k) for k in ("nominatim_url", "requests_timeout", "use_cache")}
    try:
        if nominatim_url:
            ox.settings.nominatim_url = nominatim_url.rstrip("/")
        ox.settings.requests_timeout = timeout
        ox.settings.use_cache = False
        gdf = ox.geocode_to_gdf(f"R{relation_id}", by_osmid=True)
    except (requests.exceptions.RequestException, ConnectionError) as e:
        raise SourceUnavailableError(f"Nominatim could not be reached for osm:relation/{relation_id} "
                                     f"({type(e).__name__})", where=ox.settings.nominatim_url,
                                     hint="check the network or --nominatim-url, or give --source FILE.osm "
                                          "holding the relation") from None
    except (ox._errors.InsufficientResponseError, ValueError, TypeError) as e:  # type: ignore[attr-defined]
        raise ZoneError(f"Nominatim returned no area for osm:relation/{relation_id} ({e})",
                        hint="check the relation id (it must be a boundary or multipolygon relation)") from None
    finally:
        for k, v in saved.items():
            setattr(ox.settings, k, v)
    if gdf.empty:
        raise ZoneError(f"Nominatim knows no osm:relation/{relation_id}", hint="check the relation id")
    geom = gdf.geometry.iloc[0]
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ZoneError(f"osm:relation/{relation_id} is a {geom.geom_type} in Nominatim, not an area",
                        hint="give a boundary or multipolygon relation")
    props = {k: v for k, v in gdf.drop(columns=gdf.geometry.name).iloc[0].to_dict().items()}
    return geom, props
