"""Reading fleet logs: CSV, Parquet and GPX, in chunks, into plain arrays.

Columns
-------
Required: ``vehicle_id``, ``enterprise``, ``timestamp``, ``lon``, ``lat``;
optional: ``speed`` (m/s) and ``heading`` (degrees clockwise from north). Names
match case-insensitively, and a few common aliases are accepted
(:data:`ALIASES`: ``lng``/``longitude``, ``latitude``, ``time``, ``vehicle``...).
Any other column is ignored. A file lacking a required column raises
:class:`~geo.errors.FleetLogError` naming the columns and the file.

Values
------
- Timestamps: ISO 8601 strings (with ``Z`` or an offset; *naive times are taken
  as China Standard Time, UTC+8*), Unix epoch numbers (seconds; milliseconds
  when above 1e11), or Parquet timestamp columns (naive ones again as UTC+8).
  Anything else is "unparsable" and counted, never fatal.
- Coordinates and speeds that are not numbers become NaN and are counted.

Formats
-------
CSV
    Read in blocks by pyarrow. The encoding is found first by decoding the
    whole file as UTF-8 (a BOM is allowed) and, if that fails, as GB18030 (a
    superset of GBK, as Chinese enterprise names are often written) with a
    warning; a file that is neither raises FleetLogError. Lines with the wrong
    number of fields are counted as ``malformed line`` and skipped.
Parquet
    Read row group by row group (``pyarrow.parquet.ParquetFile.iter_batches``),
    so memory stays bounded by the chunk size.
GPX
    Streamed with ``xml.etree.ElementTree.iterparse``. Each ``<trk>`` is a
    vehicle: ``vehicle_id`` is its ``<name>``; ``enterprise`` is an
    ``<extensions>`` child named ``enterprise`` (any namespace) or else the
    track's ``<type>``; without them, the file name (stated as a warning).
    ``<speed>``/``<course>`` children of a point's extensions become speed and
    heading. A track without times (or one time for all its points) is an
    ordered trace (:attr:`LogInfo.untimed`).

Synthetic marker
----------------
``icv fleet simulate`` marks its logs: Parquet schema metadata key ``icv``
(JSON with ``"synthetic": true``), and for CSV and GPX a sidecar
``LOG.meta.json``. :attr:`LogInfo.synthetic` reports it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FleetLogError, strip_controls

REQUIRED = ("vehicle_id", "enterprise", "timestamp", "lon", "lat")
OPTIONAL = ("speed", "heading")
#: Accepted alternative column names (lower case).
ALIASES: dict[str, tuple[str, ...]] = {
    "vehicle_id": ("vehicle_id", "vehicle", "vehicleid", "vin", "car_id"),
    "enterprise": ("enterprise", "company", "operator"),
    "timestamp": ("timestamp", "time", "datetime", "gps_time"),
    "lon": ("lon", "lng", "longitude"),
    "lat": ("lat", "latitude"),
    "speed": ("speed", "speed_mps"),
    "heading": ("heading", "course", "bearing"),
}
LOG_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq", ".gpx")
#: Naive timestamps are China Standard Time.
NAIVE_UTC_OFFSET_NS = 8 * 3600 * 10**9
NAT = np.iinfo(np.int64).min
#: Plausible fix times: from 2000-01-01 UTC (GPS logs of ICV tests are recent) to one day
#: after the run (clock skew); outside it a row is a bad row, not a break in its track.
PLAUSIBLE_FROM_NS = 946_684_800 * 10**9


def plausible_until_ns() -> int:
    """Latest plausible fix time: now + 1 day, UTC nanoseconds."""
    import time

    return (int(time.time()) + 86_400) * 10**9
META_KEY = b"icv"
#: Placeholder epoch seconds of the first point of an ordered trace (2020-01-01T00:00:00Z).
_ORDERED_T0 = 1_577_836_800


class FleetLogWarning(UserWarning):
    """A fleet log was read with a caveat (e.g. decoded as GB18030)."""


@dataclass
class RawChunk:
    """A block of log rows as arrays.

    ``vehicle``/``enterprise`` are codes into the chunk's own ``*_names``
    lists (``-1`` = missing); ``t_ns`` is UTC nanoseconds (:data:`NAT` =
    missing or unparsable); coordinates are as written in the file.
    """

    vehicle: np.ndarray
    vehicle_names: list[str]
    enterprise: np.ndarray
    enterprise_names: list[str]
    t_ns: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray | None
    heading: np.ndarray | None
    first_row: int

    def __len__(self) -> int:
        return len(self.t_ns)


@dataclass
class LogInfo:
    """What is known about a fleet log before and while reading it."""

    path: str
    format: str
    columns: dict[str, str]
    encoding: str | None = None
    n_rows: int | None = None
    row_groups: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    malformed_lines: int = 0
    #: vehicles whose GPX track had no usable times (ordered traces; filled while reading)
    untimed: set[str] = field(default_factory=set)

    @property
    def synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic"))


def log_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``parquet`` or ``gpx`` from the file name."""
    low = str(path).lower()
    if low.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    if low.endswith((".parquet", ".pq", ".geoparquet")):
        return "parquet"
    if low.endswith(".gpx"):
        return "gpx"
    raise FleetLogError(f"unknown kind of fleet log {Path(path).name!r}", where=str(path),
                        hint="give a .csv, .parquet or .gpx file")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``LOG.meta.json`` beside a CSV or GPX log."""
    return Path(str(path) + ".meta.json")


def resolve_columns(names: list[str], where: str) -> dict[str, str]:
    """Map standard column names to the file's names.

    Raises
    ------
    FleetLogError
        Naming every missing required column and the file.
    """
    lower = {n.strip().lower(): n for n in names}
    found: dict[str, str] = {}
    for std, alts in ALIASES.items():
        for a in alts:
            if a in lower:
                found[std] = lower[a]
                break
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        have = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
        raise FleetLogError(f"missing column(s) {', '.join(missing)} (found: {have or 'none'})", where=where,
                            hint="a fleet log needs vehicle_id, enterprise, timestamp, lon, lat "
                                 "(optional speed, heading)")
    return found


def detect_encoding(path: Path, block: int = 1 << 20) -> tuple[str, str | None]:
    """The text encoding of a CSV: ``utf-8`` (BOM allowed) or ``gb18030``, with a warning for the latter.

    The whole file is decoded incrementally, so a bad byte late in the file is found too.
    """
    opener = _open_binary(path)
    for enc in ("utf-8-sig", "gb18030"):
        if not _decode_check(opener, path, enc, block):
            continue
        if enc == "gb18030":
            return enc, "not valid UTF-8; decoded as GB18030 (GBK)"
        return "utf-8", None
    raise FleetLogError("cannot decode the file as UTF-8 or GB18030", where=str(path),
                        hint="save the log as UTF-8 CSV")


def _decode_check(opener: Any, path: Path, enc: str, block: int) -> bool:
    """Whether the whole file decodes as ``enc``; a broken gzip stream is a FleetLogError."""
    dec = codecs.getincrementaldecoder(enc)()
    try:
        with opener() as fh:
            while chunk := fh.read(block):
                dec.decode(chunk)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    except (OSError, EOFError) as e:
        raise FleetLogError(f"cannot decompress the file ({e})", where=str(path),
                            hint="the file may be truncated: copy it again") from e
    return True


def _open_binary(path: Path):  # noqa: ANN202 - a factory of binary file objects
    if str(path).lower().endswith(".gz"):
        import gzip

        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic != b"\x1f\x8b":
            raise FleetLogError("the file is named .gz but is not gzip-compressed", where=str(path),
                                hint="rename it to .csv, or compress it with gzip")
        return lambda: gzip.open(path, "rb")
    return lambda: open(path, "rb")


# ---------------------------------------------------------------- value conversion

def _codes(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Dictionary codes (-1 for null or empty) and the distinct strings."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
            arr = pc.cast(arr, pa.string())
        arr = pc.dictionary_encode(pc.utf8_trim_whitespace(arr))
    return _dictionary_codes(arr)


def _dictionary_codes(arr: pa.DictionaryArray) -> tuple[np.ndarray, list[str]]:
    """:func:`_codes` of a dictionary array (plain strings encoded, or Parquet strings read as
    such): trimmed names numbered by first appearance, entries that trim to one name merged,
    unused entries dropped, whatever order the dictionary has."""
    idx = arr.indices.to_numpy(zero_copy_only=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    vals = arr.dictionary.to_pylist()
    k = len(vals)
    idx = np.where(valid, np.nan_to_num(idx, nan=k), k).astype(np.int64)
    n = len(idx)
    first = np.full(k + 1, n, dtype=np.int64)
    first[idx[::-1]] = np.arange(n - 1, -1, -1)  # (the last write wins: the first row)
    lut = np.full(k + 1, -1, dtype=np.int64)
    names: list[str] = []
    code: dict[str, int] = {}
    for e in np.argsort(first[:k], kind="stable").tolist():
        if first[e] == n:
            break  # entries no row uses (sorted last)
        nm = str(vals[e]).strip() if vals[e] is not None else ""
        if nm:
            lut[e] = code.setdefault(nm, len(code))
            if lut[e] == len(names):
                names.append(nm)
    return lut[idx], names


def _floats(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_decimal(arr.type):
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    s = pd.Series(arr.to_pandas()).astype(object)
    return pd.to_numeric(s.where(s.notna(), None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _timestamps(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """UTC nanoseconds; :data:`NAT` where missing or unparsable."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_timestamp(t):
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        res = pc.cast(arr, pa.timestamp("ns", tz=t.tz)).cast(pa.int64()).fill_null(NAT).to_numpy()
        if t.tz is None:
            res = np.where(valid, res - NAIVE_UTC_OFFSET_NS, NAT)
        return res.astype(np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _epoch_ns(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64))
    s = pd.Series(pc.cast(arr, pa.string()).to_pylist(), dtype=object)
    return parse_time_strings(s)


def _epoch_ns(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v) & (np.abs(v) < 1e14)
    sec = np.where(np.abs(v) > 1e11, v / 1000.0, v)  # milliseconds
    return np.where(ok, np.round(np.where(ok, sec, 0.0) * 1e9), NAT).astype(np.int64)


def parse_time_strings(s: pd.Series) -> np.ndarray:
    """ISO 8601 or epoch strings to UTC nanoseconds (naive = UTC+8); :data:`NAT` where unparsable."""
    s = s.astype(object).where(s.notna(), None)
    text = s.map(lambda x: x.strip() if isinstance(x, str) else x)
    out = np.full(len(s), NAT, dtype=np.int64)
    num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    isnum = np.isfinite(num)
    out[isnum] = _epoch_ns(num[isnum])
    rest = ~isnum & text.notna().to_numpy()
    if rest.any():
        sub = text[rest].astype(str)
        # an offset after a time of day: Z, +08, +0800, +08:00 (ISO 8601 allows all three)
        aware = sub.str.contains(r"\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d\d(?::?\d\d)?)$",
                                 regex=True).to_numpy()
        dt = pd.to_datetime(sub, format="ISO8601", errors="coerce", utc=True)
        ns = dt.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        bad = dt.isna().to_numpy()
        ns = np.where(aware, ns, ns - NAIVE_UTC_OFFSET_NS)
        out[rest] = np.where(bad, NAT, ns)
    return out


def check_vehicle_identity(ch: RawChunk, owner: dict[str, tuple[str, int]], where: str) -> None:
    """Refuse a vehicle id that appears under two enterprises (``owner``: id -> (enterprise, row)).

    Mileage is kept per vehicle id; one id in two enterprises would credit one
    enterprise with the other's kilometres.
    """
    ok = (ch.vehicle >= 0) & (ch.enterprise >= 0)
    if not ok.any():
        return
    # (one integer key per pair: a 1-D unique, several times faster than rows of a 2-D array; the
    # same pairs in the same order, each at its first row)
    ne = int(ch.enterprise[ok].max()) + 1
    keys, first = np.unique(ch.vehicle[ok].astype(np.int64) * ne + ch.enterprise[ok], return_index=True)
    rows = ch.first_row + np.flatnonzero(ok)[first]
    for v, e, row in zip((keys // ne).tolist(), (keys % ne).tolist(), rows.tolist()):
        vname, ename = ch.vehicle_names[v], ch.enterprise_names[e]
        seen = owner.setdefault(vname, (ename, row))
        if seen[0] != ename:
            a, b = sorted([seen, (ename, row)], key=lambda x: x[1])
            raise FleetLogError(
                f"vehicle {strip_controls(vname)[:60]!r} appears under two enterprises, "
                f"{strip_controls(a[0])[:60]!r} (row {a[1] + 1}) and {strip_controls(b[0])[:60]!r} (row {b[1] + 1})",
                where=where, hint="a vehicle id must name one vehicle: give each enterprise's vehicles distinct ids "
                                  "(e.g. prefix the enterprise)")


def chunk_from_table(tab: pa.Table | pa.RecordBatch, cols: dict[str, str], first_row: int) -> RawChunk:
    """A :class:`RawChunk` from an Arrow table with the file's column names."""
    veh, vnames = _codes(tab.column(cols["vehicle_id"]))
    ent, enames = _codes(tab.column(cols["enterprise"]))
    return RawChunk(
        vehicle=veh, vehicle_names=vnames, enterprise=ent, enterprise_names=enames,
        t_ns=_timestamps(tab.column(cols["timestamp"])),
        lon=_floats(tab.column(cols["lon"])), lat=_floats(tab.column(cols["lat"])),
        speed=_floats(tab.column(cols["speed"])) if "speed" in cols else None,
        heading=_floats(tab.column(cols["heading"])) if "heading" in cols else None,
        first_row=first_row,
    )


# ---------------------------------------------------------------- the log

class FleetLog:
    """A fleet log file opened for chunked reading.

    Parameters
    ----------
    path
        ``.csv`` (or ``.csv.gz``), ``.parquet`` or ``.gpx``.
    chunk_rows
        Rows per chunk (Parquet reads whole row groups in batches of this size).
    """

    def __init__(self, path: str | os.PathLike[str], chunk_rows: int = 500_000) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FleetLogError("file not found", where=str(self.path), hint="check the path")
        if self.path.is_dir():
            raise FleetLogError("is a folder, not a fleet log", where=str(self.path), hint="give a log file")
        self.chunk_rows = max(1, int(chunk_rows))
        fmt = log_format(self.path)
        if fmt == "parquet":
            self.info = self._open_parquet()
        elif fmt == "csv":
            self.info = self._open_csv()
        else:
            self.info = self._open_gpx()
        side = sidecar_path(self.path)
        if fmt != "parquet" and side.exists():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                self.info.warnings.append(f"unreadable sidecar {side.name}: {e}")
            else:
                self.info.metadata = self._own_sidecar(meta, side)

    def _own_sidecar(self, meta: Any, side: Path) -> dict[str, Any]:
        """The sidecar's metadata if it belongs to this very log (its ``log_sha256``), else ``{}``.

        A leftover ``LOG.meta.json`` of an earlier simulated log must never mark a
        real log written under the same name SYNTHETIC.
        """
        from .provenance import sha256_file

        if not isinstance(meta, dict):
            msg = f"sidecar {side.name} is not a JSON object: ignored"
        elif meta.get("log_sha256") != sha256_file(self.path):
            msg = (f"sidecar {side.name} does not belong to this log (its checksum "
                   f"{'is missing' if not meta.get('log_sha256') else 'differs'}): ignored, the log is "
                   "not marked synthetic")
        else:
            return meta
        self.info.warnings.append(msg)
        warnings.warn(f"{self.path}: {msg}", FleetLogWarning, stacklevel=3)
        return {}

    # -- parquet
    def _open_parquet(self) -> LogInfo:
        import pyarrow.parquet as pq

        def open_(read_dictionary: list[str] | None = None) -> pq.ParquetFile:
            try:
                return pq.ParquetFile(self.path, read_dictionary=read_dictionary)
            except (OSError, pa.ArrowInvalid) as e:
                raise FleetLogError(f"not a readable Parquet file ({e})", where=str(self.path),
                                    hint="check the file, or give a CSV or GPX log") from e

        pf = open_()
        cols = resolve_columns(pf.schema_arrow.names, str(self.path))
        # ids read as dictionaries: Parquet stores them so, and decoding every string costs more
        # than the rest of the row (0.3 s of 0.4 s a million rows)
        ids = [cols[c] for c in ("vehicle_id", "enterprise")
               if c in cols and (pa.types.is_string(t := pf.schema_arrow.field(cols[c]).type)
                                 or pa.types.is_large_string(t))]
        if ids:
            pf = open_(ids)
        meta: dict[str, Any] = {}
        raw = (pf.schema_arrow.metadata or {}).get(META_KEY)
        if raw:
            try:
                meta = json.loads(raw.decode("utf-8"))
            except ValueError:
                meta = {}
        if pf.metadata.num_rows == 0:
            raise FleetLogError("the log holds no rows", where=str(self.path),
                                hint="a fleet log needs at least one row of vehicle_id, enterprise, timestamp, lon, lat")
        self._pf = pf
        return LogInfo(str(self.path), "parquet", cols, n_rows=pf.metadata.num_rows,
                       row_groups=pf.metadata.num_row_groups, metadata=meta)

    def row_group_rows(self) -> list[int]:
        """Rows of each Parquet row group."""
        md = self._pf.metadata
        return [md.row_group(i).num_rows for i in range(md.num_row_groups)]

    def column_value(self, row_group: int, column: str, which: int) -> Any:
        """One value of one column of a row group (``which`` = 0 first, -1 last)."""
        col = self._pf.read_row_group(row_group, columns=[self.info.columns[column]]).column(0)
        return col[which].as_py() if len(col) else None

    def iter_row_groups(self, start: int, stop: int,
                        first_batch: int | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Batches of row groups ``start..stop-1`` with their first row numbers (those of the first
        row group at most ``first_batch`` rows each, where given)."""
        rows = self.row_group_rows()
        first = int(sum(rows[:start]))
        cols = list(self.info.columns.values())
        for rg in range(start, stop):
            size = min(self.chunk_rows, first_batch) if first_batch and rg == start else self.chunk_rows
            for batch in self._pf.iter_batches(batch_size=size, row_groups=[rg], columns=cols):
                yield first, batch
                first += batch.num_rows

    # -- csv
    def _open_csv(self) -> LogInfo:
        enc, warn = detect_encoding(self.path)
        opener = _open_binary(self.path)
        with opener() as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8-sig" if enc == "utf-8" else enc, newline="")
            try:
                header = next(csv.reader(text))
            except StopIteration:
                raise FleetLogError("the file is empty", where=str(self.path),
                                    hint="a fleet log needs a header line and rows") from None
        cols = resolve_columns(header, str(self.path))
        info = LogInfo(str(self.path), "csv", cols, encoding=enc)
        if warn:
            info.warnings.append(warn)
            warnings.warn(f"{self.path}: {warn}", FleetLogWarning, stacklevel=3)
        self._csv_header = header
        return info

    def _csv_batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as pacsv

        wanted = list(dict.fromkeys(self.info.columns.values()))
        info = self.info

        def invalid(row: Any) -> str:
            info.malformed_lines += 1
            return "skip"

        read = pacsv.ReadOptions(encoding="utf8" if self.info.encoding == "utf-8" else "gb18030",
                                 block_size=1 << 22)
        parse = pacsv.ParseOptions(invalid_row_handler=invalid, newlines_in_values=False)
        conv = pacsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                    strings_can_be_null=True, quoted_strings_can_be_null=True)
        try:
            reader = pacsv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=conv)
            yield from reader
        except pa.ArrowInvalid as e:
            raise FleetLogError(f"cannot parse the CSV ({e})", where=str(self.path),
                                hint="check the delimiter (comma) and quoting") from e

    # -- gpx
    def _open_gpx(self) -> LogInfo:
        cols = {c: c for c in (*REQUIRED, *OPTIONAL)}
        return LogInfo(str(self.path), "gpx", cols, encoding="xml")

    def _gpx_batches(self) -> Iterator[pa.RecordBatch]:
        """Rows of the GPX tracks, one ``<trk>`` at a time (each is held until its end).

        A track without ``<name>`` is vehicle ``FILESTEM-trkN``; without ``<type>``
        or ``<extensions><enterprise>`` its enterprise is the file name's stem;
        both stated in :attr:`LogInfo.warnings`. A track whose points have no
        times, or one time for all, is an *ordered trace*: its points get
        increasing placeholder times, its vehicle goes into
        :attr:`LogInfo.untimed`, and the HMM matcher skips time-based checks for it.
        """
        buf: dict[str, list[Any]] = {c: [] for c in (*REQUIRED, *OPTIONAL)}
        vehicle: str | None = None
        enterprise: str | None = None
        track = 0
        stack: list[str] = []
        pts: list[tuple[Any, ...]] = []
        stem = self.path.name[: -len(".gpx")] if self.path.name.lower().endswith(".gpx") else self.path.stem
        no_type: list[str] = []
        no_name: list[str] = []

        def flush() -> pa.RecordBatch:
            b = pa.RecordBatch.from_pydict({k: pa.array(v, type=pa.string()) for k, v in buf.items()})
            for v in buf.values():
                v.clear()
            return b

        def end_track() -> Iterator[pa.RecordBatch]:
            veh = vehicle
            if veh is None:
                veh = f"{stem}-trk{track}"
                no_name.append(veh)
            ent = enterprise
            if ent is None:
                ent = stem
                no_type.append(veh)
            times = [t for _, _, t, _, _ in pts]
            stamped = [t.strip() for t in times if t is not None and t.strip()]
            ordered = len(pts) > 1 and (not stamped or (len(stamped) == len(pts) and len(set(stamped)) == 1))
            if ordered:
                self.info.untimed.add(veh.strip())
            for i, (lon, lat, t, speed, course) in enumerate(pts):
                buf["vehicle_id"].append(veh)
                buf["enterprise"].append(ent)
                buf["lon"].append(lon)
                buf["lat"].append(lat)
                # placeholder times of an ordered trace (1 s apart from 2020-01-01, epoch seconds):
                # valid for the row checks, replaced by the order in the HMM engine, never shown
                buf["timestamp"].append(str(_ORDERED_T0 + i) if ordered else t)
                buf["speed"].append(speed)
                buf["heading"].append(course)
                if len(buf["lon"]) >= self.chunk_rows:
                    yield flush()
            pts.clear()

        try:
            for ev, el in ET.iterparse(self.path, events=("start", "end")):
                tag = el.tag.rsplit("}", 1)[-1]
                if ev == "start":
                    stack.append(tag)
                    if tag == "trk":
                        track += 1
                        vehicle = enterprise = None
                    continue
                stack.pop()
                in_trk_head = "trk" in stack and "trkseg" not in stack
                if tag == "name" and stack and stack[-1] == "trk":
                    vehicle = (el.text or "").strip() or None
                elif tag == "type" and stack and stack[-1] == "trk" and enterprise is None:
                    enterprise = (el.text or "").strip() or None
                elif tag == "enterprise" and in_trk_head:
                    enterprise = (el.text or "").strip() or enterprise
                elif tag == "trkpt":
                    t = speed = course = None
                    for ch in el.iter():
                        ctag = ch.tag.rsplit("}", 1)[-1]
                        if ctag == "time":
                            t = ch.text
                        elif ctag == "speed":
                            speed = ch.text
                        elif ctag == "course":
                            course = ch.text
                    pts.append((el.get("lon"), el.get("lat"), t, speed, course))
                    el.clear()
                elif tag == "trk":
                    yield from end_track()
                    el.clear()
                elif tag == "trkseg":
                    el.clear()
        except ET.ParseError as e:
            raise FleetLogError(f"not a readable GPX file ({e})", where=str(self.path),
                                hint="check that it is GPX 1.1 XML") from e
        if pts:
            yield from end_track()
        if no_name:
            self.info.warnings.append(f"{len(no_name)} GPX track(s) without <name>: vehicle ids "
                                      f"{', '.join(no_name[:3])}{'...' if len(no_name) > 3 else ''} from the file name")
        if no_type:
            self.info.warnings.append(f"{len(no_type)} GPX track(s) without <type> or <extensions><enterprise>: "
                                      f"enterprise set to the file name {stem!r}")
        if self.info.untimed:
            self.info.warnings.append(f"{len(self.info.untimed)} GPX track(s) without usable times (none, or one "
                                      "for every point): read as ordered traces, km measured, time-based checks "
                                      "skipped")
        if buf["lon"]:
            yield flush()

    # -- all formats
    def chunks(self, first_rows: int | None = None) -> Iterator[RawChunk]:
        """The whole log as :class:`RawChunk` blocks of about ``chunk_rows`` rows; with
        ``first_rows``, the first block of at most that many (read quickly: a sample to look at
        while the next block is read).

        Raises
        ------
        FleetLogError
            The log holds no rows (a header-only CSV, a GPX without track
            points), or one vehicle id appears under two enterprises.
        """
        if self.info.format == "parquet":
            parts = self.chunks_of_row_groups(0, self.info.row_groups or 0, first_rows)
        elif self.info.format == "csv":
            parts = self._rechunk(self._csv_batches(), first_rows=first_rows)
        else:
            parts = self._rechunk(self._gpx_batches(), first_rows=first_rows)
        owner: dict[str, tuple[str, int]] = {}
        rows = 0
        for ch in parts:
            rows += len(ch)
            check_vehicle_identity(ch, owner, str(self.path))
            yield ch
        if rows == 0 and not self.info.malformed_lines:
            if self.info.format == "gpx":
                raise FleetLogError("the GPX file holds no track points (<trk><trkseg><trkpt>)", where=str(self.path),
                                    hint="routes (<rte>) and waypoints are plans, not fleet logs: give the "
                                         "recorded tracks")
            raise FleetLogError("the log holds no rows (a header only?)", where=str(self.path),
                                hint="a fleet log needs rows of vehicle_id, enterprise, timestamp, lon, lat")

    def chunks_of_row_groups(self, start: int, stop: int, first_rows: int | None = None) -> Iterator[RawChunk]:
        """:class:`RawChunk` blocks of Parquet row groups ``start..stop-1`` (row numbers global;
        ``first_rows`` as in :meth:`chunks`)."""
        rows = self.row_group_rows()
        yield from self._rechunk((b for _, b in self.iter_row_groups(start, stop, first_rows)),
                                 int(sum(rows[:start])), first_rows)

    def _rechunk(self, batches: Iterator[pa.RecordBatch], first: int = 0,
                 first_rows: int | None = None) -> Iterator[RawChunk]:
        pending: list[pa.RecordBatch] = []
        n = 0
        size = min(self.chunk_rows, first_rows) if first_rows else self.chunk_rows
        for b in batches:
            pending.append(b)
            n += b.num_rows
            while n >= size:
                tab = pa.Table.from_batches(pending)
                head, tail = tab.slice(0, size), tab.slice(size)
                size = self.chunk_rows
                yield chunk_from_table(head, self.info.columns, first)
                first += head.num_rows
                pending = tail.to_batches() if tail.num_rows else []
                n = tail.num_rows
        if n:
            yield chunk_from_table(pa.Table.from_batches(pending), self.info.columns, first)

