"""Fleet test mileage: where the test vehicles drove, in km per road piece.

:func:`compute_mileage` reads a fleet log (CSV, Parquet or GPX; see
:mod:`geo._fleet_io` for columns, encodings and the synthetic marker),
estimates its GPS noise and sampling interval from its first 100,000 rows,
matches it to the road pieces and attributes the distance between consecutive
fixes of each vehicle to pieces. Two matchers (``MileageParams.matcher``):

``hmm`` (default, :mod:`geo._fleet_hmm`)
    HMM map matching (Newson & Krumm; FMM): candidates within a radius of at
    least 4 x the estimated noise, routes on the directed road graph, Viterbi
    per vehicle; right for sparse (5-30 s) and noisy (15-30 m) logs, logs
    without speed/heading, ordered traces and routed gaps.
``snap`` (:mod:`geo._fleet_match`, :mod:`geo._fleet_engine`)
    The nearest piece per fix (a grid index in EPSG:32651, heading- and
    continuity-aware, dual carriageways by direction); several times faster;
    right for dense (1-2 s), clean logs with speed and heading.

It returns a :class:`MileageResult` with km per road piece, per named road,
per class, per sub-zone, per enterprise and per vehicle, the network coverage,
every bad row counted by reason, and the estimated noise and interval.

Definitions
-----------
km on a piece
    ``hmm``: distance along the matched, routed path between consecutive
    fixes: partial pieces at both ends, every piece in between its whole
    length; on one piece, signed in the direction of travel (jitter cancels);
    a standing vehicle adds nothing. ``snap``: distance along the matched piece
    between consecutive points of a vehicle (signed in the direction of
    travel), through the shared junction when consecutive points lie on
    adjacent pieces; the straight GPS distance, half to each piece, when they
    lie on pieces that do not touch. Scaled so that a piece driven end to end
    counts its geodesic ``length_m``. Pairs more than ``max_gap_s`` (60 s)
    apart are gaps and count nowhere, unless ``hmm`` finds a plausible route
    between them.
off-network km
    Straight GPS distance of pairs with a point farther than the radius (35
    m, or 4 x the estimated noise) from every piece; with ``hmm`` also of pairs
    it could not follow (no plausible route: reported as unfollowed pairs).
test mileage
    On-network km plus off-network km of all vehicles (gaps excluded).
driven piece
    A piece whose km is at least ``driven_share`` (half) of its length.
coverage
    Centerline km (:mod:`geo.stats`: each dual carriageway counted once) of the
    driven pieces inside the zone over the centerline km of the whole network
    inside the zone. A one-way carriageway counts as driven when it or its
    paired opposite carriageway was driven ("driven at least once", either
    direction). The carriageway-km share is reported beside it.

Scale
-----
The log is streamed in chunks of ``chunk_rows`` rows (Parquet row group by
row group), so memory is bounded by the chunk size, the network index and one
small state per vehicle. *Logs must be sorted by vehicle, then time*: a row
earlier than its vehicle's previous row is counted as a ``backwards
timestamp``. (Interleaved vehicles are handled in the single-process path, but
the Dask path needs each vehicle's rows contiguous.) With ``scheduler`` the
row groups of a Parquet log are processed on a Dask cluster
(:mod:`geo._fleet_dask`) with results identical to the single-process path.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import geopandas as gpd
import numpy as np
import pandas as pd

from ._atomic import atomic_paths
from ._fleet_engine import REASONS, EngineParams, MileageEngine, Totals
from ._fleet_hmm import HmmEngine, HmmParams
from ._fleet_noise import estimate_noise
from ._fleet_io import FleetLog, FleetLogWarning, LogInfo, RawChunk
from ._fleet_match import MatchParams, PieceMatcher
from ._format import csv_safe_frame, render
from ._jit import warm_in_background
from .errors import InputError
from .provenance import Provenance, sha256_file
from .zones import Zone

__all__ = [
    "MileageParams", "MileageResult", "compute_mileage", "build_matcher", "fleet_figures",
    "write_outputs", "render_tables", "fleet_figures_from_file", "REASONS", "FleetLogWarning",
]

CRS_CHOICES = ("wgs84", "gcj02")
MATCHERS = ("hmm", "snap")
TABLES = ("summary", "by_class", "by_road", "by_subzone", "by_enterprise", "by_vehicle", "coverage", "bad_rows",
          "unfollowed")
#: Header of a table that can come out empty (a clean log has no bad rows): an empty CSV keeps its header.
EMPTY_COLUMNS = {"bad_rows": ["reason", "rows", "examples"], "unfollowed": ["vehicle_id", "from", "to", "why"]}


@dataclass(frozen=True)
class MileageParams:
    """Parameters of a mileage run (matching, engine rules, coverage)."""

    match: MatchParams = field(default_factory=MatchParams)
    engine: EngineParams = field(default_factory=EngineParams)
    driven_share: float = 0.5
    #: ``hmm`` (routed HMM matching, :mod:`geo._fleet_hmm`) or ``snap`` (nearest piece per fix)
    matcher: str = "hmm"
    #: HMM parameters; ``None``: from the log's estimated noise and sampling interval
    hmm: HmmParams | None = None
    #: widen the candidate radius to ``4 x`` the estimated noise (at least ``match.radius_m``)
    adapt_radius: bool = True


def build_matcher(roads: gpd.GeoDataFrame, zone: Zone | None = None,
                  params: MatchParams | None = None) -> PieceMatcher:
    """The piece index of a roads table, with the zone and its sub-zones for attribution."""
    warm_in_background()  # (whoever builds an index matches next: the compiled kernels loaded meanwhile)
    subzones = None
    if zone is not None and zone.subzones is not None and len(zone.subzones):
        subzones = list(zone.subzones.geometry.values)
    return PieceMatcher(roads.reset_index(drop=True), params, zone_geometry=zone.geometry if zone else None,
                        subzones=subzones)


@dataclass
class MileageResult:
    """Mileage of a fleet log on a road network (see the module docstring).

    Attributes
    ----------
    roads
        The roads table the log was matched to (row = piece id).
    totals
        The engine's additive totals (integer micrometres).
    zone
        The test zone, if any.
    log
        What was read: path, format, encoding, synthetic marker, warnings.
    params
        The parameters used.
    provenance
        The network's provenance with notes on the log and the method.
    scheduler
        ``None`` (single process) or the Dask scheduler used.
    """

    roads: gpd.GeoDataFrame
    totals: Totals
    zone: Zone | None
    log: LogInfo
    params: MileageParams
    provenance: Provenance

    def __repr__(self) -> str:  # short: not the roads table
        return (f"MileageResult(log={str(self.log.path)!r}, pieces={len(self.roads):,}, "
                f"zone={self.zone.name if self.zone is not None else None!r})")
    scheduler: str | None = None
    _stats: Any = field(default=None, repr=False)
    #: ``hmm`` or ``snap``
    matcher: str = "snap"
    #: estimated per-axis GPS noise (m) and sampling interval (s) of the log (None: unknown)
    noise_m: float | None = None
    interval_s: float | None = None
    #: vehicles whose tracks had no usable times (ordered traces)
    untimed: tuple[str, ...] = ()
    _cov: Any = field(default=None, repr=False)
    _road_keys: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- per piece
    @property
    def piece_km(self) -> np.ndarray:
        """km per piece (row of :attr:`roads`), never negative."""
        return np.maximum(self.totals.piece_um, 0) / 1e9

    def driven(self, piece_km: np.ndarray | None = None) -> np.ndarray:
        """Which pieces count as driven (km at least ``driven_share`` of the length)."""
        km = self.piece_km if piece_km is None else piece_km
        return km * 1000.0 >= self.params.driven_share * self.roads["length_m"].to_numpy()

    def pieces(self) -> gpd.GeoDataFrame:
        """km per road piece, with the piece's attributes and geometry (EPSG:4326).

        Columns: ``piece``, ``u``, ``v``, ``osm_way_ids``, ``highway``, ``name``,
        ``ref``, ``oneway``, ``length_m``, ``km``, ``passes`` (km / length),
        ``points`` (matched points), ``driven``, ``geometry``. This is the table
        ``icv map mileage`` draws.
        """
        r = self.roads
        km = self.piece_km
        length_km = r["length_m"].to_numpy() / 1000.0
        with np.errstate(invalid="ignore", divide="ignore"):
            passes = np.where(length_km > 0, km / length_km, 0.0)
        df = pd.DataFrame({
            "piece": np.arange(len(r)), "u": r["u"].to_numpy(), "v": r["v"].to_numpy(),
            "osm_way_ids": list(r["osm_way_ids"]), "highway": r["highway"].to_numpy(dtype=object),
            "name": r["name"].to_numpy(dtype=object), "ref": r["ref"].to_numpy(dtype=object),
            "oneway": r["oneway"].to_numpy(dtype=bool), "length_m": r["length_m"].to_numpy(),
            "km": km, "passes": passes, "points": self.totals.piece_points, "driven": self.driven(km),
        })
        gdf = gpd.GeoDataFrame(df, geometry=r.geometry.values, crs="EPSG:4326")
        gdf.attrs["provenance"] = self.provenance.to_dict()
        return gdf

    def pieces_by_enterprise(self) -> pd.DataFrame:
        """Long table of km per (piece, enterprise) with km > 0: ``piece``, ``u``, ``v``,
        ``osm_way_ids`` (``;``-joined), ``name``, ``highway``, ``enterprise``, ``km``."""
        r = self.roads
        frames = []
        ids = r["osm_way_ids"].to_numpy(dtype=object)
        joined: dict[int, str] = {}  # each piece's ids joined once, for all enterprises
        for e in sorted(self.totals.enterprise_piece_um):
            km = np.maximum(self.totals.enterprise_piece_um[e], 0) / 1e9
            sel = np.flatnonzero(km > 0)
            way_ids = []
            for i in sel.tolist():
                s = joined.get(i)
                if s is None:
                    s = joined[i] = ";".join(str(x) for x in ids[i])
                way_ids.append(s)
            frames.append(pd.DataFrame({
                "piece": sel, "u": r["u"].to_numpy()[sel], "v": r["v"].to_numpy()[sel],
                "osm_way_ids": way_ids,
                "name": r["name"].to_numpy(dtype=object)[sel], "highway": r["highway"].to_numpy(dtype=object)[sel],
                "enterprise": e, "km": km[sel]}))
        cols = ["piece", "u", "v", "osm_way_ids", "name", "highway", "enterprise", "km"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    # ---------------------------------------------------------------- summaries
    @property
    def on_network_km(self) -> float:
        return float(self.piece_km.sum())

    @property
    def off_network_km(self) -> float:
        return sum(v["offnet_um"] for v in self.totals.vehicles.values()) / 1e9

    @property
    def test_mileage_km(self) -> float:
        """On-network plus off-network km (gaps excluded)."""
        return self.on_network_km + self.off_network_km

    def active_vehicles(self) -> dict[str, dict[str, Any]]:
        """Vehicles with at least one valid point."""
        return {k: v for k, v in self.totals.vehicles.items() if v["points"] > 0}

    def enterprises(self) -> list[str]:
        """Enterprises of the active vehicles."""
        return sorted({v["enterprise"] or "(unknown)" for v in self.active_vehicles().values()})

    def summary(self) -> list[dict[str, Any]]:
        """Headline figures: rows, bad rows, vehicles, enterprises, km."""
        t = self.totals
        bad = sum(t.bad.values())
        pts = sum(v["points"] for v in t.vehicles.values())
        matched = sum(v["matched_points"] for v in t.vehicles.values())
        cov = self.coverage()[0] if len(self.roads) else {}
        rows = [
            ("rows read", t.rows, "rows", "data rows of the log (plus malformed lines)"),
            ("bad rows", bad, "rows", "rows not used, by reason in the bad-rows table"),
            ("valid points", pts, "points", "rows used"),
            ("matched points", matched, "points", f"valid points within {self.params.match.radius_m:g} m of a piece"),
            ("vehicles", len(self.active_vehicles()), "count", "distinct vehicle_id with a valid point"),
            ("enterprises", len(self.enterprises()), "count", "distinct enterprise of those vehicles"),
            ("on-network km", self.on_network_km, "km", "distance along matched pieces"),
            ("in-zone km", t.zone_um / 1e9, "km", "on-network km on pieces' parts inside the zone"),
            ("off-network km", self.off_network_km, "km", "straight GPS distance where a point is off the network"),
            ("test mileage km", self.test_mileage_km, "km", "on-network + off-network km, gaps excluded"),
            ("driving hours", sum(v["driving_ns"] for v in t.vehicles.values()) / 3.6e12, "h",
             "time between consecutive valid points, gaps excluded"),
            ("centerline coverage %", cov.get("centerline_coverage_pct"), "%",
             "centerline km of driven pieces / centerline km of the network in the zone"),
            ("estimated GPS noise m", None if self.noise_m is None else round(self.noise_m, 1), "m",
             "per-axis sigma whose median distance to the nearest piece, for points on the pieces moved by that noise, is the fixes' (0.6745 sigma on a lone road; calibrated where pieces are close together); logs of 5 s or denser: at least the median second difference of consecutive fixes / (0.6745 sqrt 6)"),
            ("sampling interval s", None if self.interval_s is None else round(self.interval_s, 2), "s",
             "median time between consecutive fixes of a vehicle"),
            ("matcher", self.matcher, "", "hmm: HMM along routed paths; snap: nearest piece per fix"),
            ("unfollowed pairs", int(t.unconnected_pairs), "pairs",
             "consecutive fixes with no plausible route between them (HMM: track broken there; "
             "snap: straight distance halved)"),
            ("outliers skipped", int(t.outliers_skipped), "points",
             "HMM: fixes left out of the matching as outliers (beyond the radius, or next to a road no plausible "
             "route reaches and leaves, between fixes it can follow); the route goes from the fix before to the one after"),
        ]
        if self.untimed:
            rows.append(("ordered traces", len(self.untimed), "vehicles",
                         "tracks without usable times: km measured, time-based checks skipped, no driving hours"))
        return [{"figure": f, "value": round(v, 3) if isinstance(v, float) else v, "unit": u, "definition": d}
                for f, v, u, d in rows]

    def _group(self, key: np.ndarray, name: str) -> list[dict[str, Any]]:
        km = self.piece_km
        length = self.roads["length_m"].to_numpy() / 1000.0
        drv = self.driven(km)
        df = pd.DataFrame({name: key, "km": km, "network_km": length, "driven_km": np.where(drv, length, 0.0),
                           "pieces": 1})
        g = df.groupby(name, sort=False, dropna=False).sum(numeric_only=True).sort_values("km", ascending=False)
        out = []
        for k, r in g.iterrows():
            out.append({name: k, "pieces": int(r["pieces"]), "network_km": round(float(r["network_km"]), 3),
                        "km": round(float(r["km"]), 3), "driven_network_km": round(float(r["driven_km"]), 3)})
        return out

    def by_class(self) -> list[dict[str, Any]]:
        """km per highway class."""
        return self._group(self.roads["highway"].to_numpy(dtype=object), "highway")

    def by_road(self) -> list[dict[str, Any]]:
        """km per named road (normalized street name, else ref, else ``(unnamed)``)."""
        try:
            from .names import street_names
        except ImportError:  # pragma: no cover - the names module ships with icv
            street_names = None
        if self._road_keys is None:
            keys = []
            seen: dict[tuple[Any, Any, Any], str] = {}  # a street's pieces share their names
            for nm, zh, ref in zip(self.roads["name"], self.roads["name_zh"], self.roads["ref"]):
                tri = (nm, zh, ref)
                try:
                    key = seen.get(tri)
                except TypeError:  # an unhashable cell
                    key, tri = None, None
                if key is None:
                    names = street_names(nm, zh) if street_names else ((nm,) if nm else ())
                    if names:
                        key = ";".join(names)
                    elif isinstance(ref, str) and ref.strip():
                        key = ref.strip()
                    else:
                        key = "(unnamed)"
                    if tri is not None:
                        seen[tri] = key
                keys.append(key)
            self._road_keys = np.array(keys, dtype=object)
        return self._group(self._road_keys, "road")

    def by_subzone(self) -> list[dict[str, Any]]:
        """km per sub-zone of the zone (by where each stretch lies), and outside them."""
        t = self.totals
        names = []
        if self.zone is not None and self.zone.subzones is not None:
            names = [str(n) for n in self.zone.subzones["name"]]
        out = [{"subzone": n, "km": round(int(t.subzone_um[i]) / 1e9, 3)} for i, n in enumerate(names)]
        out.append({"subzone": "(no sub-zone)" if names else "(all)", "km": round(int(t.subzone_um[-1]) / 1e9, 3)})
        return out

    def by_enterprise(self) -> list[dict[str, Any]]:
        """Vehicles, km and coverage per enterprise."""
        vehicles = self.active_vehicles()
        cov = {c["scope"]: c for c in self.coverage()}
        out = []
        for e in self.enterprises():
            vs = [v for v in vehicles.values() if (v["enterprise"] or "(unknown)") == e]
            on = self.totals.enterprise_piece_um.get(e)
            on_km = float(np.maximum(on, 0).sum()) / 1e9 if on is not None else 0.0
            off_km = sum(v["offnet_um"] for v in vs) / 1e9
            c = cov.get(f"enterprise:{e}", {})
            out.append({"enterprise": e, "vehicles": len(vs), "points": sum(v["points"] for v in vs),
                        "on_network_km": round(on_km, 3), "off_network_km": round(off_km, 3),
                        "test_mileage_km": round(on_km + off_km, 3),
                        "centerline_coverage_pct": c.get("centerline_coverage_pct")})
        return sorted(out, key=lambda r: -r["test_mileage_km"])

    def by_vehicle(self) -> list[dict[str, Any]]:
        """Rows, points and km per vehicle."""
        out = []
        for name, v in self.totals.vehicles.items():
            out.append({
                "vehicle_id": name, "enterprise": v["enterprise"], "rows": v["rows"], "bad_rows": v["bad_rows"],
                "points": v["points"], "matched_points": v["matched_points"],
                "on_network_km": round(v["matched_um"] / 1e9, 3), "off_network_km": round(v["offnet_um"] / 1e9, 3),
                "gps_km": round(v["gps_um"] / 1e9, 3), "gaps": v["gap_pairs"],
                "first": _iso(v["first_ns"]), "last": _iso(v["last_ns"]),
            })
        return sorted(out, key=lambda r: (-r["on_network_km"], r["vehicle_id"]))

    def bad_rows(self) -> list[dict[str, Any]]:
        """Bad rows by reason, with the first row numbers (1-based data rows)."""
        t = self.totals
        return [{"reason": r, "rows": int(t.bad.get(r, 0)),
                 "examples": ",".join(str(x) for x in t.bad_examples.get(r, []))}
                for r in REASONS if t.bad.get(r, 0)]

    def unfollowed(self) -> list[dict[str, Any]]:
        """Pairs of fixes the HMM matcher could not follow (the first 20): vehicle, time range, why."""
        return [{"vehicle_id": v, "from": _iso(t0), "to": _iso(t1), "why": why}
                for v, t0, t1, why in self.totals.break_examples]

    # ---------------------------------------------------------------- coverage
    def _centerline(self) -> pd.DataFrame:
        """Per piece: in-zone carriageway m, centerline m and paired partners (geo.stats)."""
        if self._stats is None:
            self._stats = _centerline_table(self.roads, self.zone)
        return self._stats

    def coverage(self) -> list[dict[str, Any]]:
        """Share of the network driven at least once: overall and per enterprise.

        Rows: ``scope`` (``all`` or ``enterprise:NAME``), ``network_centerline_km``,
        ``driven_centerline_km``, ``centerline_coverage_pct``, and the same on
        carriageway km.
        """
        if len(self.roads) == 0:
            return []
        if self._cov is None:  # computed once: summary, by_enterprise and the tables all ask
            self._cov = self._coverage()
        return [dict(r) for r in self._cov]

    def _coverage(self) -> list[dict[str, Any]]:
        cl = self._centerline()
        scopes = [("all", self.piece_km)]
        for e in sorted(self.totals.enterprise_piece_um):
            scopes.append((f"enterprise:{e}", np.maximum(self.totals.enterprise_piece_um[e], 0) / 1e9))
        piece = cl["piece"].to_numpy()
        cl_m = cl["centerline_m"].to_numpy()
        cw_m = cl["clipped_m"].to_numpy()
        # partners as flat (row, partner piece) pairs, so each scope is one bincount
        counts = np.array([len(ps) if ps is not None else 0 for ps in cl["partners"]], dtype=np.int64)
        p_row = np.repeat(np.arange(len(piece)), counts)
        p_of = (np.concatenate([np.asarray(ps, dtype=np.int64) for ps in cl["partners"] if ps is not None and len(ps)])
                if counts.sum() else np.zeros(0, dtype=np.int64))
        tot_cl, tot_cw = cl_m.sum() / 1000, cw_m.sum() / 1000
        out = []
        for scope, km in scopes:
            drv = self.driven(km)
            d = drv[piece]
            # a carriageway counts for the centerline when it or its opposite partner was driven
            d_cl = d | (np.bincount(p_row, weights=drv[p_of], minlength=len(piece)) > 0)
            got_cl, got_cw = cl_m[d_cl].sum() / 1000, cw_m[d].sum() / 1000
            out.append({"scope": scope, "network_centerline_km": round(float(tot_cl), 3),
                        "driven_centerline_km": round(float(got_cl), 3),
                        "centerline_coverage_pct": round(100 * got_cl / tot_cl, 2) if tot_cl else None,
                        "network_carriageway_km": round(float(tot_cw), 3),
                        "driven_carriageway_km": round(float(got_cw), 3),
                        "carriageway_coverage_pct": round(100 * got_cw / tot_cw, 2) if tot_cw else None})
        return out

    # ---------------------------------------------------------------- all tables
    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Every summary table by name (:data:`TABLES`)."""
        return {name: getattr(self, name)() for name in TABLES}

    def meta(self) -> dict[str, Any]:
        """Provenance and definitions for output envelopes."""
        return {
            "log": self.log.path, "log_format": self.log.format, "log_encoding": self.log.encoding,
            "synthetic_log": self.log.synthetic, "scheduler": self.scheduler or "single process",
            "provenance": self.provenance.summary(),
            "matcher": self.matcher, "estimated_noise_m": self.noise_m, "sampling_interval_s": self.interval_s,
            "definitions": "km along matched pieces (see geo.fleet); test mileage = on- + off-network km; "
                           f"driven = km >= {self.params.driven_share:g} x length; coverage on centerline km",
        }


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return pd.Timestamp(ns, unit="ns", tz="UTC").tz_convert("Asia/Shanghai").isoformat()


def fleet_figures(result: MileageResult) -> dict[str, Any]:
    """Computed fleet figures for ``icv compare``: vehicles, enterprises, test mileage (and hours).

    Returns
    -------
    dict
        Figure name -> :class:`geo.reported.ComputedValue` (value, unit, definition).
    """
    from .reported import ComputedValue

    t = result.totals
    syn = " (SYNTHETIC log)" if result.log.synthetic else ""
    return {
        "vehicles": ComputedValue(float(len(result.active_vehicles())), "count",
                                  f"distinct vehicle_id with at least one valid point in the fleet log{syn}"),
        "enterprises": ComputedValue(float(len(result.enterprises())), "count",
                                     f"distinct enterprise of those vehicles{syn}"),
        "test_mileage_km": ComputedValue(result.test_mileage_km, "km",
                                         "km driven in the fleet log: along matched road pieces plus straight "
                                         f"GPS distance off the network, gaps over {result.params.engine.max_gap_s:g} s "
                                         f"excluded{syn}"),
        "test_hours": ComputedValue(sum(v["driving_ns"] for v in t.vehicles.values()) / 3.6e12, "h",
                                    f"time between consecutive valid points, gaps excluded{syn}"),
    }


def fleet_figures_from_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the fleet figures that :func:`write_outputs` wrote (``mileage_figures.json``),
    or the JSON that ``icv fleet mileage --format json`` printed.

    Raises
    ------
    InputError
        Unreadable file or no figures in it.
    """
    from .reported import ComputedValue

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        figs = doc["figures"]
        return {k: ComputedValue(float(v["value"]), str(v["unit"]), str(v.get("definition", "")))
                for k, v in figs.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"not a fleet figures file ({type(e).__name__}: {e})", where=str(p),
                         hint="give the mileage_figures.json that `icv fleet mileage --out-dir` wrote") from None


def compute_mileage(log_path: str | os.PathLike[str], roads: gpd.GeoDataFrame, *, zone: Zone | None = None,
                    crs: str = "wgs84", chunk_rows: int = 500_000, scheduler: Any = None,
                    params: MileageParams | None = None, provenance: Provenance | None = None,
                    matcher: PieceMatcher | None = None) -> MileageResult:
    """Mileage of a fleet log on a road network.

    Parameters
    ----------
    log_path
        ``.csv``, ``.parquet`` or ``.gpx`` fleet log.
    roads
        The roads table (e.g. ``load_network(...).roads``).
    zone
        The test zone (for in-zone km, sub-zones and coverage).
    crs
        ``wgs84`` or ``gcj02``: the coordinates of the log.
    chunk_rows
        Rows per chunk (memory bound).
    scheduler
        ``None`` for one process; a Dask scheduler address, ``"local"`` (a
        LocalCluster) or a ``distributed.Client``. Parquet logs only.
    params
        Matching and engine parameters.
    provenance
        The network's provenance (default: ``roads.attrs["provenance"]``).
    matcher
        A prebuilt index of ``roads`` (reused across runs).

    Raises
    ------
    FleetLogError
        Unreadable log, missing columns.
    InputError
        Unknown ``crs``, Dask on a non-Parquet log.
    """
    if crs not in CRS_CHOICES:
        raise InputError(f"unknown coordinate system {crs!r} for the fleet log", hint="use --crs wgs84 or gcj02")
    if chunk_rows < 1:
        raise InputError("--chunk-rows must be at least 1", hint="e.g. --chunk-rows 500000")
    params = params or MileageParams()
    roads = roads.reset_index(drop=True)
    starting = None
    if isinstance(scheduler, str) and scheduler.startswith("local"):
        from ._fleet_dask import LocalStart

        starting = LocalStart(scheduler)  # worker processes start while the index is built
    try:
        return _compute_mileage(log_path, roads, zone, crs, chunk_rows, starting or scheduler, params,
                                provenance, matcher)
    except BaseException:
        if starting is not None:
            starting.close()
        raise


def _compute_mileage(log_path: str | os.PathLike[str], roads: gpd.GeoDataFrame, zone: Zone | None, crs: str,
                     chunk_rows: int, scheduler: Any, params: MileageParams, provenance: Provenance | None,
                     matcher: PieceMatcher | None) -> MileageResult:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FleetLogWarning)
        log = FleetLog(log_path, chunk_rows=chunk_rows)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    if params.matcher not in MATCHERS:
        raise InputError(f"unknown matcher {params.matcher!r}", hint="use --matcher hmm or snap")
    warm_in_background()  # (the compiled kernels loaded while the log is read)
    # the first chunk, small, is read once: it gives the noise estimate (where it holds the whole
    # sample) and is then matched with the rest; the next one is read meanwhile, in a thread
    chunks = log.chunks(first_rows=_NOISE_SAMPLE_ROWS) if scheduler is None else iter(())
    first = next(chunks, None)
    with _ReadAhead(chunks) as ahead:
        if first is not None and (len(first) >= _NOISE_SAMPLE_ROWS or len(first) < log.chunk_rows):
            noise, interval, corr = _chunk_noise(first, roads, crs, with_corr=True)
        else:
            noise, interval, corr = _log_noise(log_path, roads, crs, with_corr=True)
        mp = params.match
        if matcher is None and params.adapt_radius and noise is not None and 4.0 * noise > mp.radius_m:
            # noisy log: a wider radius (and coarser grid cells, so the index stays as small)
            r = 4.0 * noise
            mp = replace(mp, radius_m=r, cell_m=max(mp.cell_m, 0.7 * r))
        m = matcher or build_matcher(roads, zone, mp)
        eng_p = params.engine
        if noise is not None and eng_p.jump_slack_m == 0.0:
            eng_p = replace(eng_p, jump_slack_m=7.0 * noise)  # two fixes' noise: P(valid step flagged) ~ 1e-5
        hmm = None
        if params.matcher == "hmm":
            hmm = params.hmm or hmm_params_for(noise, interval, corr)
        untimed = log.info.untimed  # filled by the GPX reader as it reads tracks without times
        sched_label = None
        pre: dict[str, Any] = {}
        if scheduler is not None:
            from ._fleet_dask import mileage_on_dask

            if log.info.format != "parquet":
                raise InputError("the Dask path reads Parquet row groups", where=str(log_path),
                                 hint="convert the log to Parquet, or drop --scheduler")
            def meanwhile() -> None:
                # this process waits while the workers match: the tables' road statistics and the
                # log's checksum, which would otherwise follow the matching
                pre["sha256"] = sha256_file(log.info.path)
                if len(roads):
                    pre["stats"] = _centerline_table(roads, zone)

            totals, sched_label = mileage_on_dask(log, m, crs, eng_p, scheduler, hmm=hmm, while_waiting=meanwhile)
        else:
            eng = (HmmEngine(m, crs, eng_p, hmm, untimed=untimed) if hmm is not None
                   else MileageEngine(m, crs, eng_p))
            ahead.prepare_with(eng.prepare)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="icv-sha256") as bg:
                # the log's checksum (provenance) beside the matching: hashing runs without the GIL
                sha_f = bg.submit(sha256_file, log.info.path)
                if first is not None:
                    eng.feed(first)
                del first  # (the first chunk lives no longer than its own matching)
                for ch, prepared in ahead:
                    eng.feed(ch, prepared)
                    del ch, prepared
                eng.add_malformed(log.info.malformed_lines)
                totals = eng.finish()
                pre["sha256"] = sha_f.result()
    params = replace(params, match=replace(params.match, radius_m=m.params.radius_m), engine=eng_p, hmm=hmm)
    if provenance is None and roads.attrs.get("provenance"):
        provenance = Provenance.from_dict(roads.attrs["provenance"])
    base = provenance or Provenance("unknown", "roads table")
    sha = pre.get("sha256") or sha256_file(log.info.path)
    notes = [*base.notes,
             f"fleet log {log.info.path} ({log.info.format}, sha256 {sha[:12]}, "
             f"coordinates {crs})" + ("; SYNTHETIC log (icv fleet simulate)" if log.info.synthetic else ""),
             f"matched in {m.crs.to_string()}: radius {m.params.radius_m:g} m, "
             + ("HMM along routed paths (directed graph)" if hmm is not None else "heading and continuity checked")
             + (f"; estimated GPS noise {noise:.1f} m" if noise is not None else "")
             + (f", sampling interval {interval:g} s" if interval is not None else "")]
    notes.extend(log.info.warnings)
    prov = base.with_(notes=notes)
    return MileageResult(roads, totals, zone, log.info, params, prov, sched_label, _stats=pre.get("stats"),
                         matcher=params.matcher, noise_m=noise, interval_s=interval,
                         untimed=tuple(sorted(log.info.untimed)))


def _centerline_table(roads: gpd.GeoDataFrame, zone: Zone | None) -> pd.DataFrame:
    """Per piece: in-zone carriageway m, centerline m and paired partners (geo.stats), for coverage."""
    from .stats import road_stats

    st = road_stats(roads, zone.geometry if zone is not None else None,
                    subzones={}, zone_name=zone.name if zone is not None else None)
    return pd.DataFrame({"piece": st.pieces["piece"].to_numpy(), "clipped_m": st.pieces["clipped_m"].to_numpy(),
                         "centerline_m": st.pieces["centerline_m"].to_numpy(),
                         "partners": list(st.pieces["partners"])})


def hmm_params_for(noise_m: float | None, interval_s: float | None, noise_corr: float = 0.0) -> HmmParams:
    """HMM parameters for a log of this per-axis noise (m), sampling interval (s) and noise correlation
    of consecutive fixes (0: independent)."""
    sig = 5.0 if noise_m is None else max(2.0, noise_m)
    itv = 1.0 if interval_s is None else interval_s
    # routes up to twice what 35 m/s covers in a step (gaps up to the bound are routed)
    bound = float(np.clip(2.0 * 35.0 * itv + 500.0, 1000.0, 5000.0))
    return HmmParams(sigma_m=sig, interval_s=itv, route_bound_m=bound, noise_corr=float(noise_corr))


#: rows at the start of a log from which its noise and interval are estimated
_NOISE_SAMPLE_ROWS = 100_000


class _ReadAhead:
    """The items of an iterator, the next one read in a thread while the caller works on this one;
    once :meth:`prepare_with` has a function, each item comes with its ``prepare(item)``, done in
    that thread too (``None`` before).

    Reading a chunk (Arrow's decoding, the CSV parser) and projecting its rows mostly run without
    the GIL, as do numpy's and the matcher's kernels: on two cores the next chunk is read while
    this one is matched (and the first one's noise estimated). One item ahead, never more (memory
    stays at two chunks); an error of the reader is raised at the item it stopped at.
    """

    _END = object()

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._prepare: Callable[[Any], Any] | None = None
        self._given = threading.Event()
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="icv-read")
        self._fut = self._ex.submit(self._read)

    def _read(self) -> Any:
        item = next(self._items, self._END)
        if item is self._END:
            return item
        self._given.wait()  # (the item read ahead waits for the function to prepare it with)
        return item, (self._prepare(item) if self._prepare is not None else None)

    def prepare_with(self, prepare: Callable[[Any], Any]) -> None:
        """Prepare the items from now on with ``prepare`` (in the reading thread)."""
        self._prepare = prepare
        self._given.set()

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._given.set()
        while True:
            got = self._fut.result()
            if got is self._END:
                return
            self._fut = self._ex.submit(self._read)
            yield got
            del got  # (not held here while the next one is read)

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._given.set()
        self._ex.shutdown(wait=True)  # (a read under way finishes; nothing more is read)


def _log_noise(log_path: str | os.PathLike[str], roads: gpd.GeoDataFrame, crs: str,
               sample_rows: int | None = None, with_corr: bool = False) -> tuple[float | None, ...]:
    """Estimated per-axis noise and interval (and with ``with_corr`` the noise correlation of
    consecutive fixes) from the first ``sample_rows`` rows of a log (default ``_NOISE_SAMPLE_ROWS``).

    The same rows whatever the chunk size or scheduler, so results do not depend on them.
    """
    none = (None, None, 0.0) if with_corr else (None, None)
    if len(roads) == 0:
        return none
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FleetLogWarning)
        log = FleetLog(log_path, chunk_rows=sample_rows or _NOISE_SAMPLE_ROWS)
        ch = next(iter(log.chunks()), None)
    if ch is None:
        return none
    return _chunk_noise(ch, roads, crs, with_corr)


def _chunk_noise(ch: RawChunk, roads: gpd.GeoDataFrame, crs: str, with_corr: bool = False) -> tuple[float | None, ...]:
    """:func:`_log_noise` of rows already read."""
    import shapely
    from pyproj import Transformer

    from ._fleet_match import metric_crs

    none = (None, None, 0.0) if with_corr else (None, None)
    if len(roads) == 0 or len(ch) == 0:
        return none
    lon, lat = ch.lon.astype(float), ch.lat.astype(float)
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90) & ~((lon == 0) & (lat == 0))
    if crs == "gcj02" and ok.any():
        from .gcj02 import gcj02_to_wgs84

        lon[ok], lat[ok] = gcj02_to_wgs84(lon[ok], lat[ok])
    mc = metric_crs(roads)
    x, y = np.full(len(lon), np.nan), np.full(len(lon), np.nan)
    if ok.any():
        x[ok], y[ok] = Transformer.from_crs("EPSG:4326", mc, always_xy=True).transform(lon[ok], lat[ok])
    # the pieces' vertices projected as arrays (to_crs would build every line anew: 0.1 s on a
    # district); the lines themselves only if a fix lies beyond what the segment grid answers for
    c, li = shapely.get_coordinates(roads.geometry.values, return_index=True)
    px, py = Transformer.from_crs(roads.crs, mc, always_xy=True).transform(c[:, 0], c[:, 1])
    t = np.where(ok, ch.t_ns, np.iinfo(np.int64).min)
    return estimate_noise(x, y, np.where(ok, ch.vehicle, -1), t, lambda: roads.to_crs(mc).geometry.values,
                          with_corr=with_corr, piece_coords=(np.column_stack([px, py]), li))


# ---------------------------------------------------------------- outputs

_EXT = {"table": "txt", "json": "json", "csv": "csv", "markdown": "md"}


def render_tables(result: MileageResult, fmt: str, names: tuple[str, ...] = TABLES) -> str:
    """The summary tables in one document of format ``fmt``."""
    tables = result.tables()
    if fmt == "json":
        figs = {k: {"value": v.value, "unit": v.unit, "definition": v.definition}
                for k, v in fleet_figures(result).items()}
        doc = {"tables": {n: tables[n] for n in names}, "figures": figs, "meta": result.meta()}
        return json.dumps(doc, ensure_ascii=False, indent=2, default=_json_default, allow_nan=False) + "\n"
    parts = []
    for n in names:
        title = n.replace("_", " ")
        if fmt == "csv":
            parts.append(f"# {title}\n" + render(tables[n], "csv"))
        else:
            parts.append(render(tables[n], fmt, title=title) if tables[n] else f"{title}: none\n")
    meta = result.meta()
    if fmt == "markdown":
        parts.append("\n".join(f"- {k}: {v}" for k, v in meta.items()) + "\n")
    elif fmt == "csv":
        parts.append("".join(f"# {k}: {v}\n" for k, v in meta.items()))
    else:
        parts.append("\n".join(f"{k}: {v}" for k, v in meta.items()) + "\n")
    return "\n".join(parts)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def write_outputs(result: MileageResult, out_dir: str | os.PathLike[str], fmt: str = "csv",
                  bom: bool = False) -> list[Path]:
    """Write km per piece (GeoParquet and CSV), every summary table and the provenance.

    Files: ``mileage_pieces.parquet`` (GeoParquet, EPSG:4326), ``mileage_pieces.csv``
    (no geometry), ``mileage_pieces_by_enterprise.csv`` (``piece``, ``osm_way_ids``,
    ``enterprise``, ``km``: what ``icv map mileage --fleet`` reads),
    ``mileage_<table>.<ext>`` for each of :data:`TABLES` in ``fmt``,
    ``mileage_figures.json`` (what ``icv compare --fleet-summary`` reads) and
    ``mileage_provenance.json``. Each is written atomically; ``bom`` writes the CSV files
    as UTF-8 with a byte-order mark (Excel on Chinese-locale Windows).
    """
    out = Path(out_dir)
    gdf = result.pieces()
    flat = pd.DataFrame(gdf.drop(columns="geometry"))
    flat["osm_way_ids"] = [";".join(str(x) for x in ids) for ids in flat["osm_way_ids"]]
    tables = result.tables()
    figs = {k: {"value": v.value, "unit": v.unit, "definition": v.definition}
            for k, v in fleet_figures(result).items()}
    texts = {f"mileage_{name}.{_EXT[fmt]}": render(tables[name], fmt, meta=result.meta(),
                                                   columns=EMPTY_COLUMNS.get(name) if not tables[name] else None,
                                                   title=name.replace("_", " ")) for name in TABLES}
    texts["mileage_figures.json"] = json.dumps({"figures": figs, "meta": result.meta()}, ensure_ascii=False,
                                               indent=2) + "\n"
    texts["mileage_provenance.json"] = json.dumps({"provenance": result.provenance.to_dict(), **result.meta()},
                                                  ensure_ascii=False, indent=2) + "\n"
    names = ["mileage_pieces.parquet", "mileage_pieces.csv", "mileage_pieces_by_enterprise.csv", *texts]
    written = [out / n for n in names]
    # one set: renamed together, so an interrupt never mixes new tables with old ones
    with atomic_paths(*written) as tmps:
        gdf.to_parquet(tmps[0], index=False)
        # vehicle and enterprise names come from the log: never a live spreadsheet formula
        csv_safe_frame(flat).to_csv(tmps[1], index=False, encoding="utf-8")
        csv_safe_frame(result.pieces_by_enterprise()).to_csv(tmps[2], index=False, encoding="utf-8")
        for tmp, name in zip(tmps[3:], texts, strict=True):
            tmp.write_text(texts[name], encoding="utf-8")

        if bom:  # Excel: a byte-order mark on every CSV of the set
            for tmp, name in zip(tmps, names, strict=True):
                if name.endswith(".csv"):
                    tmp.write_bytes(b"\xef\xbb\xbf" + tmp.read_bytes())
    return written
