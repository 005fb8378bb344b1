"""Read OSM history files (``.osh.pbf``, ``.osh``, ``.osh.gz``) as of a date, with pyosmium.

A history file holds every version of every object, each with its timestamp
and a ``visible`` flag (``false``: the object was deleted by that version).
The state at a date T is, for each object, its newest version with a
timestamp at or before T; an object whose newest such version is deleted, or
that has none yet, does not exist at T. A way's geometry at T uses each of its
nodes as the node was at T (a node moved later does not move the way).

Two passes: the ways (every version of each way that was ever a ``highway``),
then only the nodes those ways reference.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputError
from .roads import RawWay

HISTORY_SUFFIXES = (".osh.pbf", ".osh", ".osh.gz", ".osh.bz2")
_HINT = ("give an OSM history file (.osh.pbf), e.g. a full-history extract from "
         "https://osm-internal.download.geofabrik.de or `osmium extract --with-history`")


@dataclass
class _WayVersion:
    ts: float
    visible: bool
    tags: dict[str, str]
    refs: tuple[int, ...]


@dataclass
class History:
    """The road-relevant history of a file.

    Attributes
    ----------
    path
        The file.
    ways
        Way id -> its versions, oldest first (ways that were a ``highway`` in some version).
    node_ts, node_xy
        Node id -> version timestamps (oldest first) and ``(lon, lat)`` or ``None`` (deleted).
    first, last
        Oldest and newest timestamps of the file's objects (UTC).
    """

    path: Path
    ways: dict[int, list[_WayVersion]] = field(default_factory=dict)
    node_ts: dict[int, list[float]] = field(default_factory=dict)
    node_xy: dict[int, list[tuple[float, float] | None]] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None

    def ways_as_of(self, when: datetime) -> list[RawWay]:
        """The ``highway`` ways as they were at ``when`` (runs of nodes that existed then)."""
        t = when.timestamp()
        out: list[RawWay] = []
        for wid, versions in self.ways.items():
            v = _latest(versions, t)
            if v is None or not v.visible or "highway" not in v.tags:
                continue
            ids: list[int] = []
            coords: list[tuple[float, float]] = []
            for ref in v.refs:
                xy = self._node_at(ref, t)
                if xy is not None:
                    ids.append(ref)
                    coords.append(xy)
                else:  # node missing at T (outside the extract, or not there yet): end the run
                    if len(ids) >= 2:
                        out.append(RawWay(wid, dict(v.tags), ids, coords))
                    ids, coords = [], []
            if len(ids) >= 2:
                out.append(RawWay(wid, dict(v.tags), ids, coords))
        return out

    def change_times(self) -> list[float]:
        """Sorted times at which a road way or one of its nodes changed (the state is constant between)."""
        times = {v.ts for vs in self.ways.values() for v in vs}
        times.update(t for ts in self.node_ts.values() for t in ts)
        return sorted(times)

    def _node_at(self, ref: int, t: float) -> tuple[float, float] | None:
        ts = self.node_ts.get(ref)
        if not ts:
            return None
        i = bisect.bisect_right(ts, t) - 1
        return self.node_xy[ref][i] if i >= 0 else None


def _latest(versions: list[_WayVersion], t: float) -> _WayVersion | None:
    found = None
    for v in versions:  # few versions per way: a scan is enough
        if v.ts <= t:
            found = v
        else:
            break
    return found


def is_history_path(path: str | os.PathLike[str]) -> bool:
    """Whether a file name says OSM history (``.osh.pbf``, ``.osh``, ``.osh.gz``, ``.osh.bz2``)."""
    return str(path).lower().endswith(HISTORY_SUFFIXES)


def read_history(path: str | os.PathLike[str]) -> History:
    """Read the road-relevant history of an OSM history file.

    Raises
    ------
    InputError
        Empty or unreadable file, objects without timestamps, or a file that
        holds one version of each object and no deletion (not a history file).
    """
    import osmium

    path = Path(path)
    if not path.exists():
        raise InputError("file not found", where=str(path), hint="check the path")
    if os.path.getsize(path) == 0:
        raise InputError("the file is empty (0 bytes)", where=str(path), hint=_HINT)
    h = History(path)
    versions_seen = False  # an id seen twice, or a deleted version: there is history
    first, last = float("inf"), float("-inf")
    try:
        reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
        try:
            declared = bool(reader.header().has_multiple_object_versions)
        finally:
            reader.close()
        group: list[_WayVersion] = []
        gid: int | None = None
        highway = False
        # versions of ways without a highway tag, by id: only their times, in case another version of the
        # same way is a highway (files not sorted by id: the road is "not a road" from these times on)
        others: dict[int, list[float]] = {}
        seen: set[int] = set()

        def flush() -> None:
            if gid is None:
                return
            if highway:
                h.ways.setdefault(gid, []).extend(group)
            else:
                others.setdefault(gid, []).extend(v.ts for v in group)

        for w in osmium.FileProcessor(str(path), osmium.osm.WAY):
            ts = _stamp(w.timestamp, path, f"way {w.id}")
            first, last = min(first, ts), max(last, ts)
            if w.id != gid:
                flush()
                if w.id in seen:  # versions of one way apart in the file: still its history
                    versions_seen = True
                seen.add(w.id)
                gid, group, highway = w.id, [], False
            else:
                versions_seen = True
            if not w.visible:
                versions_seen = True
            tags = {t.k: t.v for t in w.tags}
            highway = highway or "highway" in tags
            group.append(_WayVersion(ts, bool(w.visible), tags, tuple(n.ref for n in w.nodes)))
        flush()
        for wid, versions in h.ways.items():
            versions.extend(_WayVersion(t, True, {}, ()) for t in others.get(wid, ()))
            versions.sort(key=lambda v: v.ts)
        needed = {r for vs in h.ways.values() for v in vs for r in v.refs}
        last_id = None
        if needed:
            fp = osmium.FileProcessor(str(path), osmium.osm.NODE).with_filter(osmium.filter.IdFilter(needed))
            for n in fp:
                ts = _stamp(n.timestamp, path, f"node {n.id}")
                first, last = min(first, ts), max(last, ts)
                if n.id == last_id or not n.visible:
                    versions_seen = True
                last_id = n.id
                xy = (n.location.lon, n.location.lat) if n.visible and n.location.valid() else None
                h.node_ts.setdefault(n.id, []).append(ts)
                h.node_xy.setdefault(n.id, []).append(xy)
    except RuntimeError as e:
        raise InputError(f"cannot read the OSM history file ({e})", where=str(path),
                         hint="the file may be truncated or of another format: download it again") from e
    if not (declared or versions_seen):
        raise InputError("the file holds one version of each object and no deletion: it is not an OSM "
                         "history file", where=str(path),
                         hint="as-of needs every version of the objects: an OSM history file (.osh.pbf) from a "
                              "full-history extract or `osmium extract --with-history`; a plain extract is read "
                              "without --as-of")
    for nid, times in h.node_ts.items():  # a file sorted by id, version is sorted by time too; make sure
        if any(b < a for a, b in zip(times, times[1:])):
            order = sorted(range(len(times)), key=times.__getitem__)
            h.node_ts[nid] = [times[i] for i in order]
            h.node_xy[nid] = [h.node_xy[nid][i] for i in order]
    if first <= last:
        h.first = datetime.fromtimestamp(first, tz=timezone.utc)
        h.last = datetime.fromtimestamp(last, tz=timezone.utc)
    return h


def _stamp(ts: datetime | None, path: Path, what: str) -> float:
    if ts is None or ts.year <= 1970:
        raise InputError(f"{what} has no timestamp, so its history cannot be dated", where=str(path), hint=_HINT)
    return ts.timestamp()


def read_ways_as_of(path: str | os.PathLike[str], when: datetime | None) -> tuple[list[RawWay], str | None]:
    """Road ways of a history file as of ``when`` (``None``: its newest state) and that date's stamp."""
    h = read_history(path)
    at = when or h.last or datetime.now(timezone.utc)
    return h.ways_as_of(at), at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
