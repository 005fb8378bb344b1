"""Provenance: where a network or a number comes from.

A :class:`Provenance` travels with every loaded network (in ``gdf.attrs``) and
is written beside every output (JSON sidecar, map title block, report header).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._version import __version__

OSM_ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"
OSM_LICENCE_URL = "https://www.openstreetmap.org/copyright"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    """The current time, ISO 8601 in UTC to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Provenance:
    """Where a road network (or anything computed from it) comes from.

    Attributes
    ----------
    source_kind
        ``overpass``, ``osm-xml``, ``osm-pbf``, ``layer``, ``cache``, ``skeleton``, ``synthetic``.
    source
        URL or file path.
    source_sha256
        sha256 of the source file, when it is a file.
    osm_timestamp
        OSM data timestamp when known (Overpass ``osm_base``, PBF header or the
        newest element timestamp); ``None`` when the source does not say.
    filter
        The road filter (``drive``, ``arterial``, ``all-roads`` or ``highway=a,b``).
    zone
        The zone the network was clipped or pulled to, if any.
    """

    source_kind: str
    source: str
    source_sha256: str | None = None
    osm_timestamp: str | None = None
    filter: str | None = None
    zone: str | None = None
    created: str = field(default_factory=utc_now)
    tool_version: str = __version__
    attribution: str = OSM_ATTRIBUTION
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def with_(self, **changes: Any) -> Provenance:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        """One line for a report footer or a map title block."""
        src = self.source
        if self.source_sha256:
            src += f" (sha256 {self.source_sha256[:12]})"
        bits = [
            f"source: {self.source_kind} {src}",
            f"OSM data timestamp: {self.osm_timestamp or 'unknown'}",
            f"filter: {self.filter or 'none'}",
            f"zone: {self.zone or 'none'}",
            f"icv {self.tool_version}, {self.created}",
        ]
        if self.source_kind in {"overpass", "osm-xml", "osm-pbf", "layer", "cache", "skeleton"}:
            bits.append(self.attribution)
        bits.extend(self.notes)
        return "; ".join(bits)


def file_provenance(kind: str, path: str | os.PathLike[str], **kw: Any) -> Provenance:
    """Provenance of a local file: its path and sha256."""
    p = Path(path)
    return Provenance(source_kind=kind, source=str(p), source_sha256=sha256_file(p), **kw)
