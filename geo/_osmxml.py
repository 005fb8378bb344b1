"""Read road ways from OSM XML (``.osm``, ``.osm.bz2``, ``.osm.gz``).

Unlike ``osmnx.graph_from_xml`` this keeps only ways with a ``highway`` tag
(no buildings) and loads clipped extracts, where ways reference nodes missing
from the file: such a way is split into the runs of nodes that are present.
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Any

from .errors import InputError
from .roads import RawWay, split_runs, warn_missing_refs

_HINT = "give an OSM XML file (.osm, .osm.bz2, .osm.gz) as exported by osmium, JOSM or Overpass"


class _Progress(io.RawIOBase):
    """A file wrapper that advances a tqdm bar by the (compressed) bytes read."""

    def __init__(self, raw: IO[bytes], bar: Any) -> None:
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)
        self.bar.update(n or 0)
        return n

    def close(self) -> None:
        self.raw.close()
        self.bar.close()
        super().close()


def _open(path: Path, progress: bool = False) -> IO[bytes]:
    name = path.name.lower()
    raw: IO[bytes] = open(path, "rb")
    if progress and sys.stderr.isatty():  # a bar only on a terminal; tqdm is not even imported otherwise
        from tqdm import tqdm

        bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=f"reading {path.name}",
                   file=sys.stderr, leave=False, disable=None)  # None: no bar when stderr is not a terminal
        raw = io.BufferedReader(_Progress(raw, bar))
    if name.endswith(".bz2"):
        return bz2.open(raw, "rb")
    if name.endswith(".gz"):
        return gzip.open(raw, "rb")
    return raw


def _sniff(path: Path) -> None:
    """Reject files that are obviously not OSM XML with a clear line."""
    if os.path.getsize(path) == 0:
        raise InputError("the file is empty (0 bytes)", where=str(path), hint=_HINT)
    try:
        with _open(path) as fh:
            head = fh.read(2048)
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read the file ({e})", where=str(path), hint=_HINT) from e
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<!doctype html") or text.startswith(b"<html") or b"<html" in text[:300]:
        raise InputError("the file is an HTML page, not OSM XML (a saved error page?)", where=str(path),
                         hint="download the extract again")
    if not text.startswith(b"<"):
        raise InputError("the file is not XML", where=str(path), hint=_HINT)


def _line_is_utf8(path: Path, line: int) -> bool:
    """Whether line ``line`` (1-based) of the decompressed file decodes as UTF-8."""
    try:
        with _open(path) as fh:
            for i, raw in enumerate(fh, start=1):
                if i == line:
                    raw.decode("utf-8")
                    return True
    except UnicodeDecodeError:
        return False
    except (OSError, EOFError):
        pass
    return True


def read_ways(path: str | os.PathLike[str], progress: bool = False,
              counts: dict[str, int] | None = None) -> tuple[list[RawWay], str | None]:
    """Road ways of an OSM XML file and its data timestamp (a progress bar on stderr with ``progress``).

    Returns
    -------
    ways
        One :class:`RawWay` per run of present nodes of each ``highway`` way.
    timestamp
        Overpass ``<meta osm_base>`` if present, else the newest element
        ``timestamp`` attribute, else ``None``.

    ``counts``, if given, receives ``refs`` (way node refs of the highway
    ways) and ``missing`` (refs to nodes absent from the file or without
    coordinates); a large share missing warns (:func:`geo.roads.warn_missing_refs`).
    """
    path = Path(path)
    _sniff(path)
    locations: dict[int, tuple[float, float]] = {}
    bad_nodes: dict[int, tuple[str | None, str | None]] = {}
    pending: list[tuple[int, dict[str, str], list[int], str | None]] = []
    osm_base: str | None = None
    newest: str | None = None
    root_seen = False
    try:
        with _open(path, progress) as fh:
            context = ET.iterparse(fh, events=("start", "end"))
            for event, el in context:
                if event == "start":
                    if not root_seen:
                        root_seen = True
                        if el.tag != "osm":
                            raise InputError(f"the root element is <{el.tag}>, not <osm>", where=str(path),
                                             hint=_HINT)
                    continue
                tag = el.tag
                if tag == "node":
                    try:
                        nid = int(el.get("id"))
                        lon, lat = float(el.get("lon")), float(el.get("lat"))
                    except (TypeError, ValueError):
                        pass  # a node without coordinates (e.g. deleted): ways treat it as missing
                    else:
                        if math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90:
                            locations[nid] = (lon, lat)
                        else:  # an error only if a road uses it (below)
                            bad_nodes[nid] = (el.get("lon"), el.get("lat"))
                    ts = el.get("timestamp")
                    if ts and (newest is None or ts > newest):
                        newest = ts
                    el.clear()
                elif tag == "way":
                    tags = {t.get("k"): t.get("v") for t in el.iter("tag")}
                    ts = el.get("timestamp")
                    if ts and (newest is None or ts > newest):
                        newest = ts
                    if "highway" in tags:
                        try:
                            wid = int(el.get("id"))
                            refs = [int(nd.get("ref")) for nd in el.iter("nd")]
                        except (TypeError, ValueError):
                            raise InputError(f"way {el.get('id') or '(without id)'} has a missing or non-numeric id or node ref",
                                             where=str(path), hint=_HINT) from None
                        pending.append((wid, tags, refs, ts))
                    el.clear()
                elif tag == "meta" and el.get("osm_base"):
                    osm_base = el.get("osm_base")
                elif tag == "relation":
                    el.clear()
    except ET.ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        if isinstance(line, int) and not _line_is_utf8(path, line):
            raise InputError(f"line {line} is not UTF-8 text (GBK or another legacy encoding?)", where=str(path),
                             hint="convert the file to UTF-8, e.g. `iconv -f GBK -t UTF-8`") from e
        raise InputError(f"broken OSM XML at line {line} ({e.msg if hasattr(e, 'msg') else e})",
                         where=str(path), hint="the file may be truncated: download or export it again") from e
    except (EOFError, OSError) as e:
        raise InputError(f"cannot decompress or read the file ({e})", where=str(path),
                         hint="the file may be truncated: download it again") from e
    ways: list[RawWay] = []
    for wid, tags, refs, ts in pending:
        for ref in refs:
            if ref in bad_nodes:
                lon_s, lat_s = bad_nodes[ref]
                raise InputError(f"node {ref} of way {wid} has coordinates out of range (lon={lon_s}, lat={lat_s})",
                                 where=str(path), hint="fix or remove the node; coordinates must be WGS84 degrees")
        ways.extend(split_runs(wid, tags, refs, locations, ts))
    _count_refs(str(path), pending, locations, counts)
    return ways, osm_base or newest


def _count_refs(where: str, pending: list[tuple[int, dict[str, str], list[int], str | None]],
                locations: dict[int, tuple[float, float]], counts: dict[str, int] | None) -> None:
    """Count way node refs without a location; warn when their share is large."""
    total = sum(len(refs) for _, _, refs, _ in pending)
    missing = sum(1 for _, _, refs, _ in pending for r in refs if r not in locations)
    if counts is not None:
        counts.update(refs=total, missing=missing)
    warn_missing_refs(where, missing, total)
