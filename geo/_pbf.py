"""Read road ways from OSM PBF (``.osm.pbf``) with pyosmium.

pyosmium streams the file through libosmium with a node-location index, so
memory stays bounded by the nodes, and it reads the PBF header (replication
timestamp) that the provenance needs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .roads import RawWay

_HINT = "give an OSM PBF extract (.osm.pbf), e.g. from Geofabrik or osmium extract"


def read_ways(path: str | os.PathLike[str]) -> tuple[list[RawWay], str | None]:
    """Road ways of a PBF file and its data timestamp.

    The timestamp is the header's ``osmosis_replication_timestamp`` when set,
    else the newest element timestamp. Ways referencing nodes outside the
    extract are split into runs of present nodes.
    """
    import osmium

    path = Path(path)
    if os.path.getsize(path) == 0:
        raise InputError("the file is empty (0 bytes)", where=str(path), hint=_HINT)
    header_ts: str | None = None
    try:
        reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
        try:
            header_ts = reader.header().get("osmosis_replication_timestamp") or None
        finally:
            reader.close()
        fp = (osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
              .with_locations()
              .with_filter(osmium.filter.KeyFilter("highway")))
        ways: list[RawWay] = []
        newest = None
        for obj in fp:
            if not obj.is_way():
                continue
            ts = obj.timestamp
            if ts is not None and ts.year > 1970 and (newest is None or ts > newest):
                newest = ts
            tags = {t.k: t.v for t in obj.tags}
            ids: list[int] = []
            coords: list[tuple[float, float]] = []
            for nd in obj.nodes:
                if nd.location.valid():
                    ids.append(nd.ref)
                    coords.append((nd.location.lon, nd.location.lat))
                else:  # outside the clip: end the run here
                    if len(ids) >= 2:
                        ways.append(RawWay(obj.id, tags, ids, coords))
                    ids, coords = [], []
            if len(ids) >= 2:
                ways.append(RawWay(obj.id, tags, ids, coords))
    except RuntimeError as e:
        raise InputError(f"cannot read the PBF file ({e})", where=str(path),
                         hint="the file may be truncated or not PBF: download it again") from e
    stamp = header_ts or (newest.strftime("%Y-%m-%dT%H:%M:%SZ") if newest else None)
    return ways, stamp
