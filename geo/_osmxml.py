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
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Any

from .errors import InputError, InputWarning, env_mib
from .roads import RawWay, split_runs, warn_missing_refs

_HINT = "give an OSM XML file (.osm, .osm.bz2, .osm.gz) as exported by osmium, JOSM or Overpass"
#: Longest XML token (comment, text, tag) accepted, bytes: an OSM tag value has at most 255
#: characters, and expat re-scans a long token at every read (quadratic). ``$ICV_MAX_XML_TOKEN_MB``.
MAX_TOKEN_BYTES = 1 << 20
#: Largest decompressed .osm.gz/.osm.bz2 accepted, bytes (``$ICV_MAX_DECOMPRESSED_MB``), and the
#: largest ratio to the compressed size once past 64 MiB (OSM XML compresses 10-30 times).
MAX_DECOMPRESSED_BYTES = 4 << 30
MAX_RATIO = 100
_RATIO_FROM = 64 << 20
#: OSM ids are signed 64-bit integers (osmium, PBF, Parquet).
_ID_MAX = 2**63 - 1
_COORD = re.compile(r"^\s*[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)\s*$", re.IGNORECASE)


class _Guard(io.RawIOBase):
    """A reader that stops at the decompressed-size cap and at an over-long XML token.

    Scans with ``bytes.find``/regex (C speed): a stretch without ``<`` or ``>``
    (text, attribute values, comment bodies) and a comment longer than the
    token cap are refused before expat buffers them.
    """

    def __init__(self, raw: IO[bytes], path: Path, compressed: bool) -> None:
        self.raw, self.path, self.compressed = raw, path, compressed
        self.token_cap = env_mib("ICV_MAX_XML_TOKEN_MB", MAX_TOKEN_BYTES)
        self.size_cap = env_mib("ICV_MAX_DECOMPRESSED_MB", MAX_DECOMPRESSED_BYTES)
        self.on_disk = max(1, os.path.getsize(path))
        self.total = 0
        self.run = 0  # bytes since the last < or >
        self.comment: int | None = None  # bytes inside the open comment, if any
        self.tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)
        if n:
            self._check(bytes(memoryview(b)[:n]))
        return n

    def _check(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.compressed and (self.total > self.size_cap
                                or (self.total > _RATIO_FROM and self.total > MAX_RATIO * self.on_disk)):
            raise InputError(f"the file decompresses to more than {self.total / 2**20:,.0f} MiB from "
                             f"{self.on_disk:,} bytes on disk; refused as a possible decompression bomb",
                             where=str(self.path),
                             hint="check the file; to read a genuine huge extract, convert it to .osm.pbf "
                                  "or raise ICV_MAX_DECOMPRESSED_MB")
        step = self.token_cap  # a stretch inside a piece of this size cannot pass the cap
        for at in range(0, len(chunk), step):
            piece = chunk[at:at + step]
            last = max(piece.rfind(b"<"), piece.rfind(b">"))
            if last < 0:
                self.run += len(piece)
            else:
                lt, gt = piece.find(b"<"), piece.find(b">")
                self.run += min(i for i in (lt, gt) if i >= 0)
                if self.run > self.token_cap:
                    break
                self.run = len(piece) - 1 - last
            if self.run > self.token_cap:
                break
        if self.run > self.token_cap:
            self._too_long("text or attribute value")
        self._comments(chunk)

    def _comments(self, chunk: bytes) -> None:
        data, pos = self.tail + chunk, 0
        while True:
            if self.comment is None:
                at = data.find(b"<!--", pos)
                if at < 0:
                    break
                self.comment, pos = 0, at + 4
            end = data.find(b"-->", pos)
            if end < 0:
                self.comment += len(data) - pos  # (the 3-byte tail may count twice: harmless)
                break
            self.comment += end - pos
            if self.comment > self.token_cap:
                self._too_long("comment")
            self.comment, pos = None, end + 3
        if self.comment is not None and self.comment > self.token_cap:
            self._too_long("comment")
        self.tail = data[-3:]

    def _too_long(self, what: str) -> None:
        raise InputError(f"an XML {what} longer than {self.token_cap / 2**20:g} MiB (near byte {self.total:,}); "
                         "OSM XML has no such token", where=str(self.path),
                         hint="check the file; to read it anyway raise ICV_MAX_XML_TOKEN_MB")

    def close(self) -> None:
        self.raw.close()
        super().close()


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
    # one version of each id is kept: the highest (history files, JOSM edits); equal versions
    # (a duplicated element) keep the first. Deleted versions (visible="false",
    # action="delete") take the id out.
    node_version: dict[int, int] = {}
    way_version: dict[int, int] = {}
    way_at: dict[int, int] = {}  # way id -> index in pending (None slots once replaced)
    repairs = {"older": 0, "deleted": 0, "dup_way": 0, "dup_node_moved": 0}
    dup_examples: dict[str, list[int]] = {"dup_way": [], "dup_node_moved": []}
    osm_base: str | None = None
    newest: str | None = None
    root_seen = False
    try:
        with _open(path, progress) as raw_fh, io.BufferedReader(
                _Guard(raw_fh, path, compressed=path.name.lower().endswith((".gz", ".bz2")))) as fh:
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
                    nid = _osm_id(el.get("id"), "node", path)
                    version = _version(el)
                    seen = node_version.get(nid)
                    deleted = _is_deleted(el)
                    lon_s, lat_s = el.get("lon"), el.get("lat")
                    if seen is not None and version < seen:
                        repairs["older"] += 1
                    elif seen is not None and version == seen:
                        # a duplicated node: the first is kept; say so when it moved
                        if not deleted and locations.get(nid) != _coords(lon_s, lat_s):
                            repairs["dup_node_moved"] += 1
                            dup_examples["dup_node_moved"].append(nid)
                    else:
                        if seen is not None:
                            repairs["older"] += 1
                        node_version[nid] = version
                        locations.pop(nid, None)
                        bad_nodes.pop(nid, None)
                        if deleted:
                            repairs["deleted"] += 1
                        elif lon_s is None and lat_s is None:
                            pass  # a node without coordinates: ways treat it as missing
                        else:
                            loc = _coords(lon_s, lat_s)
                            if loc is not None:
                                locations[nid] = loc
                            else:  # malformed or out of range: an error if a road uses it (below)
                                bad_nodes[nid] = (lon_s, lat_s)
                    ts = el.get("timestamp")
                    if ts and (newest is None or ts > newest):
                        newest = ts
                    el.clear()
                elif tag == "way":
                    tags = {t.get("k"): t.get("v") for t in el.iter("tag")}
                    ts = el.get("timestamp")
                    if ts and (newest is None or ts > newest):
                        newest = ts
                    wid_s = el.get("id")
                    try:
                        wid = int(wid_s)
                    except (TypeError, ValueError):
                        wid = None
                    if wid is not None and abs(wid) > _ID_MAX:
                        _osm_id(wid_s, "way", path)
                    version = _version(el)
                    seen = way_version.get(wid) if wid is not None else None
                    if seen is not None and version < seen:
                        repairs["older"] += 1
                        el.clear()
                        continue
                    if seen is not None and version == seen:
                        repairs["dup_way"] += 1  # a duplicated way: the first is kept, never counted twice
                        dup_examples["dup_way"].append(wid)
                        el.clear()
                        continue
                    if seen is not None:
                        repairs["older"] += 1
                        at = way_at.pop(wid, None)
                        if at is not None:
                            pending[at] = None  # type: ignore[call-overload]
                    if wid is not None:
                        way_version[wid] = version
                    if _is_deleted(el):
                        repairs["deleted"] += 1
                    elif "highway" in tags:
                        try:
                            wid = int(wid_s)
                            refs = [int(nd.get("ref")) for nd in el.iter("nd")]
                        except (TypeError, ValueError):
                            raise InputError(f"way {wid_s or '(without id)'} has a missing or non-numeric id or node ref",
                                             where=str(path), hint=_HINT) from None
                        if any(abs(r) > _ID_MAX for r in refs):
                            raise InputError(f"way {wid} references a node id beyond the signed 64-bit range",
                                             where=str(path), hint=_HINT)
                        way_at[wid] = len(pending)
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
    except InputError:  # (an InputError is a ValueError too)
        raise
    except (ValueError, LookupError) as e:  # expat: "multi-byte encodings are not supported", unknown encoding
        raise InputError(f"the XML declaration names an encoding the reader cannot decode ({e})", where=str(path),
                         hint="convert the file to UTF-8, e.g. `iconv -f GBK -t UTF-8`, and declare "
                              "encoding=\"UTF-8\"") from e
    ways: list[RawWay] = []
    for item in pending:
        if item is None:
            continue
        wid, tags, refs, ts = item
        for ref in refs:
            if ref in bad_nodes:
                lon_s, lat_s = bad_nodes[ref]
                what = "out of range" if _coords(lon_s, lat_s, check_range=False) else "that are not decimal degrees"
                raise InputError(f"node {ref} of way {wid} has coordinates {what} (lon={_show(lon_s)}, "
                                 f"lat={_show(lat_s)})",
                                 where=str(path), hint="fix or remove the node; coordinates must be WGS84 degrees "
                                                       "written with a decimal point, e.g. lat=\"31.37\"")
        ways.extend(split_runs(wid, tags, refs, locations, ts))
    _warn_repairs(path, repairs, dup_examples)
    _count_refs(str(path), [p for p in pending if p is not None], locations, counts)
    return ways, osm_base or newest


def _osm_id(text: str | None, kind: str, path: Path) -> int:
    """An element id, or an InputError naming the element."""
    try:
        value = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{kind} {_show(text) if text else '(without id)'} has a missing or non-numeric id",
                         where=str(path), hint=_HINT) from None
    if abs(value) > _ID_MAX:
        raise InputError(f"{kind} {_show(text)} has an id beyond the signed 64-bit range of OSM ids",
                         where=str(path), hint=_HINT)
    return value


def _version(el: Any) -> int:
    v = el.get("version")
    try:
        return int(v) if v is not None else 0
    except ValueError:
        return 0


def _is_deleted(el: Any) -> bool:
    """A deleted version: history (``visible="false"``) or a JOSM/osmChange ``action="delete"``."""
    return el.get("visible") == "false" or el.get("action") == "delete"


def _coords(lon_s: str | None, lat_s: str | None, check_range: bool = True) -> tuple[float, float] | None:
    """(lon, lat) from attribute text: plain decimal numbers only (no ``31,37``, hex, ``1_0``, blanks)."""
    if lon_s is None or lat_s is None or not _COORD.match(lon_s) or not _COORD.match(lat_s):
        return None
    lon, lat = float(lon_s), float(lat_s)
    if check_range and not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
        return None
    return lon, lat


def _show(text: str | None) -> str:
    return "(missing)" if text is None else repr(text[:40]) if not _COORD.match(text) else text


def _warn_repairs(path: Path, counts: dict[str, int], examples: dict[str, list[int]]) -> None:
    """One :class:`~geo.errors.InputWarning` per kind of repair made while reading."""
    def ids(key: str) -> str:
        ex = examples[key]
        return ", ".join(str(i) for i in ex[:5]) + (" ..." if len(ex) > 5 else "")
    if counts["older"] or counts["deleted"]:
        what = " and ".join(x for x in (f"{counts['older']:,} older versions" if counts["older"] else "",
                                        f"{counts['deleted']:,} deleted elements" if counts["deleted"] else "") if x)
        warnings.warn(f"{path}: {what} left out (history or edited file): the highest version of each id is used, "
                      "deleted ones not at all", InputWarning, stacklevel=3)
    if counts["dup_way"]:
        warnings.warn(f"{path}: {counts['dup_way']:,} repeated ways of the same id and version (way {ids('dup_way')})"
                      ": the first of each is used, none is counted twice", InputWarning, stacklevel=3)
    if counts["dup_node_moved"]:
        warnings.warn(f"{path}: {counts['dup_node_moved']:,} repeated nodes of the same id and version at another "
                      f"position (node {ids('dup_node_moved')}): the first position is used", InputWarning,
                      stacklevel=3)


def _count_refs(where: str, pending: list[tuple[int, dict[str, str], list[int], str | None]],
                locations: dict[int, tuple[float, float]], counts: dict[str, int] | None) -> None:
    """Count way node refs without a location; warn when their share is large."""
    total = sum(len(refs) for _, _, refs, _ in pending)
    missing = sum(1 for _, _, refs, _ in pending for r in refs if r not in locations)
    if counts is not None:
        counts.update(refs=total, missing=missing)
    warn_missing_refs(where, missing, total)
