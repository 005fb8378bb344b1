"""Read road ways from OSM PBF (``.osm.pbf``) with pyosmium.

pyosmium streams the file through libosmium with a node-location index, so
memory stays bounded by the nodes, and it reads the PBF header (replication
timestamp) that the provenance needs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .roads import RawWay, no_gc, warn_missing_refs

_HINT = "give an OSM PBF extract (.osm.pbf), e.g. from Geofabrik or osmium extract"


def read_ways(path: str | os.PathLike[str], counts: dict[str, int] | None = None) -> tuple[list[RawWay], str | None]:
    """Road ways of a PBF file and its data timestamp.

    The timestamp is the header's ``osmosis_replication_timestamp`` when set,
    else the newest element timestamp. Ways referencing nodes outside the
    extract are split into runs of present nodes.

    Negative node ids (JOSM and anonymised exports) are resolved too:
    libosmium's location index holds only positive ids, so when ways
    reference negative ids a second pass reads those nodes' locations.
    ``counts``, if given, receives ``refs`` (way node refs of the highway
    ways) and ``missing`` (refs without a location); a large share missing
    warns (:func:`geo.roads.warn_missing_refs`).
    """
    with no_gc():  # many small tuples and lists, no cycles: collections would only rescan them
        return _read_ways(Path(path), counts)


def _read_ways(path: Path, counts: dict[str, int] | None) -> tuple[list[RawWay], str | None]:
    import osmium

    if os.path.getsize(path) == 0:
        raise InputError("the file is empty (0 bytes)", where=str(path), hint=_HINT)
    header_ts: str | None = None
    try:
        reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
        try:
            header = reader.header()
            header_ts = header.get("osmosis_replication_timestamp") or None
            history = bool(header.has_multiple_object_versions)
        finally:
            reader.close()
        if history:  # a history PBF under a plain name: every version inside, so read its newest state
            from ._osh import read_ways_as_of

            return read_ways_as_of(path, None)
        fp = (osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
              .with_locations()
              .with_filter(osmium.filter.KeyFilter("highway")))
        ways: list[RawWay] = []
        # ways with a negative node ref the index could not place: (id, tags, refs, coords or None)
        unresolved: list[tuple[int, dict[str, str], list[int], list[tuple[float, float] | None]]] = []
        needed: set[int] = set()
        n_refs = n_missing = 0
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
            complete = True
            for nd in obj.nodes:  # the common case first: every node placed
                loc = nd.location
                if not loc.valid():
                    complete = False
                    break
                ids.append(nd.ref)
                coords.append((loc.lon, loc.lat))
            if complete:
                n_refs += len(ids)
                if len(ids) >= 2:
                    ways.append(RawWay(obj.id, tags, ids, coords))
                continue
            refs: list[int] = []
            locs: list[tuple[float, float] | None] = []
            for nd in obj.nodes:
                refs.append(nd.ref)
                locs.append((nd.location.lon, nd.location.lat) if nd.location.valid() else None)
            n_refs += len(refs)
            neg = [r for r, xy in zip(refs, locs) if xy is None and r < 0]
            if neg:
                needed.update(neg)
                unresolved.append((obj.id, tags, refs, locs))
            else:
                n_missing += sum(xy is None for xy in locs)
                ways.extend(_runs(obj.id, tags, refs, locs))
        if needed:
            # only files with negative ids pay for this Python pass over their nodes
            found: dict[int, tuple[float, float]] = {}
            for node in osmium.FileProcessor(str(path), osmium.osm.NODE):
                if node.id < 0 and node.id in needed and node.location.valid():
                    found[node.id] = (node.location.lon, node.location.lat)
            for wid, tags, refs, locs in unresolved:
                locs = [xy if xy is not None else found.get(r) for r, xy in zip(refs, locs)]
                n_missing += sum(xy is None for xy in locs)
                ways.extend(_runs(wid, tags, refs, locs))
    except RuntimeError as e:
        raise InputError(f"cannot read the PBF file ({e})", where=str(path),
                         hint="the file may be truncated or not PBF: download it again") from e
    if counts is not None:
        counts.update(refs=n_refs, missing=n_missing)
    warn_missing_refs(str(path), n_missing, n_refs)
    stamp = header_ts or (newest.strftime("%Y-%m-%dT%H:%M:%SZ") if newest else None)
    return ways, stamp


def _runs(way_id: int, tags: dict[str, str], refs: list[int],
          locs: list[tuple[float, float] | None]) -> list[RawWay]:
    """Runs of consecutive located nodes (a gap never becomes a straight line)."""
    out: list[RawWay] = []
    ids: list[int] = []
    coords: list[tuple[float, float]] = []
    for ref, xy in zip(refs, locs):
        if xy is None:
            if len(ids) >= 2:
                out.append(RawWay(way_id, tags, ids, coords))
            ids, coords = [], []
        else:
            ids.append(ref)
            coords.append(xy)
    if len(ids) >= 2:
        out.append(RawWay(way_id, tags, ids, coords))
    return out
