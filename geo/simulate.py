"""Synthetic fleet logs with a known answer.

:func:`simulate_fleet` drives ``vehicles`` vehicles of ``enterprises``
enterprises over a road network and logs them every ``interval_s`` (1-60 s,
default 1 s):

- Routes: shortest paths by length (networkx on :func:`geo.roads.roads_to_graph`,
  so one-way pieces are driven only in their direction) between random nodes of
  the largest strongly connected part of the network; each vehicle drives
  ``trips`` trips in a row, parking 2-15 min between trips (not logging, or with
  probability ``park_log_probability`` logging in place: truth 0 km).
  Routes that are not shortest paths: up to ``via_points`` random via
  junctions (shortest legs through them), with ``loop_probability`` a loop back
  to the start through two or more via points, with ``uturn_probability`` a
  there-and-back on a two-way piece (a U-turn only where the graph has the way
  back, slowed to :data:`UTURN_SPEED_MPS`).
- Parked vehicles: ``parked_vehicles`` extra vehicles that stand in their lane
  for ``park_minutes`` while logging; their truth is 0 km.
- Motion: a cruising speed per piece (a class speed, :data:`CLASS_SPEED_MPS`,
  times a random factor 0.8-1.1), :data:`TURN_SPEED_MPS` through turns sharper
  than 45°, and with probability ``stop_probability`` a 5-40 s stop a few
  metres before the junction that ends a piece; speeds change with
  :data:`ACCEL` (1.5 m/s²) of acceleration and braking, from rest to rest. On two-way pieces the
  vehicle keeps ``lane_offset_m`` right of the centre line.
- GPS: Gaussian noise with a horizontal RMS error of ``noise_m`` (default 5
  m; ``noise_m / sqrt(2)`` per axis), independent between fixes, or with
  ``drift_s > 0`` correlated as a receiver drifts: AR(1) per axis, correlation
  ``exp(-dt / drift_s)`` between fixes ``dt`` apart, the same stationary std;
  with probability ``outlier_probability`` per fix an extra error of 0.5-2 x
  ``outlier_m`` in a random direction; with probability
  ``dropout_probability`` per fix a dropout of ``dropout_s`` seconds (no
  fixes; a trip's first and last fix are kept). A speed column (m/s, noise
  0.2) and a heading column (degrees from north, noise
  ``heading_noise_deg``), left out with ``speed_heading=False``; optionally
  GCJ-02 coordinates.
- The truth: per road piece, the distance driven between each trip's first
  and last fix, measured along the piece and scaled to its geodesic
  ``length_m``, the same measure :mod:`geo.fleet` reports; and per fix the
  piece it was generated on.

Everything is drawn from one ``numpy.random.Generator`` seeded with ``seed``:
the same inputs give the same log.

The log is *marked synthetic* wherever it is written (:func:`write_simulation`):
Parquet schema metadata ``icv`` = JSON with ``"synthetic": true``, and for CSV
and GPX a ``LOG.meta.json`` sidecar; the truth goes to ``LOG.truth.csv``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from ._atomic import atomic_path, write_text
from ._fleet_io import META_KEY, log_format, sidecar_path
from ._fleet_match import metric_crs
from .errors import EmptyNetworkError, InputError
from .provenance import sha256_file, Provenance
from .roads import roads_to_graph

#: Cruising speed per highway class (m/s) before the random factor.
CLASS_SPEED_MPS: dict[str, float] = {
    "motorway": 25.0, "trunk": 20.0, "primary": 15.0, "secondary": 13.0, "tertiary": 11.0,
    "unclassified": 10.0, "residential": 8.0, "living_street": 5.0, "service": 6.0,
    "motorway_link": 14.0, "trunk_link": 12.0, "primary_link": 10.0, "secondary_link": 10.0,
    "tertiary_link": 9.0,
}
DEFAULT_SPEED_MPS = 9.0
#: Acceleration and braking (m/s²) and the speed through turns sharper than 45° (m/s).
ACCEL = 1.5
TURN_SPEED_MPS = 6.0
#: Speed through a U-turn (a change of direction over 150°), m/s.
UTURN_SPEED_MPS = 2.0
LOG_COLUMNS = ["vehicle_id", "enterprise", "timestamp", "lon", "lat", "speed", "heading"]


@dataclass(frozen=True)
class SimParams:
    """What to simulate (see the module docstring)."""

    vehicles: int = 10
    enterprises: int = 3
    trips: int = 2
    seed: int = 0
    noise_m: float = 5.0
    heading_noise_deg: float = 3.0
    lane_offset_m: float = 1.75
    stop_probability: float = 0.25
    min_trip_m: float = 500.0
    start: str = "2024-03-01T08:00:00+08:00"
    crs: str = "wgs84"
    interval_s: float = 1.0
    drift_s: float = 0.0
    outlier_probability: float = 0.0
    outlier_m: float = 100.0
    dropout_probability: float = 0.0
    dropout_s: tuple[float, float] = (5.0, 30.0)
    via_points: int = 0
    loop_probability: float = 0.0
    uturn_probability: float = 0.0
    park_log_probability: float = 0.0
    parked_vehicles: int = 0
    park_minutes: float = 20.0
    speed_heading: bool = True

    def __post_init__(self) -> None:
        if self.vehicles < 1 or self.enterprises < 1 or self.trips < 1:
            raise InputError("a fleet needs at least one vehicle, one enterprise and one trip",
                             hint="give --vehicles, --enterprises and --trips of 1 or more")
        if self.enterprises > self.vehicles:
            raise InputError(f"{self.enterprises} enterprises but only {self.vehicles} vehicles",
                             hint="give at least as many vehicles as enterprises")
        if self.noise_m < 0:
            raise InputError("GPS noise must be >= 0 m", hint="give --noise 5")
        if self.crs not in ("wgs84", "gcj02"):
            raise InputError(f"unknown coordinate system {self.crs!r}", hint="use wgs84 or gcj02")
        if not 1.0 <= self.interval_s <= 60.0:
            raise InputError(f"log interval {self.interval_s:g} s is outside 1-60 s", hint="give --interval 1 to 60")
        if self.drift_s < 0 or self.outlier_m < 0 or self.park_minutes < 0 or self.via_points < 0:
            raise InputError("drift time, outlier size, parking time and via points must be >= 0",
                             hint="give e.g. --drift 30 --outliers 0.01 --via 1")
        for name in ("outlier_probability", "dropout_probability", "loop_probability", "uturn_probability",
                     "park_log_probability", "stop_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name.replace('_', ' ')} {getattr(self, name):g} is not a probability (0-1)",
                                 hint="give a value between 0 and 1")
        lo, hi = self.dropout_s
        if not 0 < lo <= hi:
            raise InputError(f"dropout durations {lo:g}-{hi:g} s are not a range", hint="e.g. 5-30 s")
        if self.parked_vehicles < 0:
            raise InputError("parked vehicles must be >= 0", hint="give --parked 0 or more")


@dataclass
class Simulation:
    """A simulated fleet log and its known answer.

    Attributes
    ----------
    log
        Rows sorted by vehicle then time: :data:`LOG_COLUMNS`; ``timestamp`` is
        tz-aware (UTC+8).
    truth
        Per road piece driven: ``piece`` (row of the roads table), ``u``,
        ``v``, ``name``, ``highway``, ``oneway``, ``length_m``, ``km``.
    true_piece
        Per log row, the piece it was generated on.
    params
        The parameters.
    provenance
        Marked synthetic; notes the network's provenance.
    """

    log: pd.DataFrame
    truth: pd.DataFrame
    true_piece: np.ndarray
    params: SimParams
    provenance: Provenance
    vehicles: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def truth_km(self) -> float:
        return float(self.truth["km"].sum())

    def metadata(self) -> dict[str, Any]:
        """The synthetic marker written with the log."""
        return {"synthetic": True, "generator": "icv fleet simulate", "params": asdict(self.params),
                "truth_km": round(self.truth_km, 6), "provenance": self.provenance.to_dict()}


def enterprise_name(i: int) -> str:
    """Synthetic enterprise ``i`` (0-based): ``测试企业01`` ("test enterprise 01")."""
    return f"测试企业{i + 1:02d}"


def _routable(G: nx.MultiDiGraph) -> list[int]:
    comp = max(nx.strongly_connected_components(G), key=len)
    return sorted(comp)


def _shortest_edges(G: nx.MultiDiGraph, o: int, d: int) -> list[tuple[int, int, dict]]:
    path = nx.shortest_path(G, o, d, weight="length")
    return [(u, v, min(G[u][v].values(), key=lambda e: e["length"])) for u, v in zip(path[:-1], path[1:])]


def _uturn(G: nx.MultiDiGraph, edges: list[tuple[int, int, dict]],
           rng: np.random.Generator) -> list[tuple[int, int, dict]]:
    """Insert a there-and-back on a two-way piece at a random junction of the route (where the graph allows)."""
    order = rng.permutation(len(edges) + 1)
    for j in order[:20]:
        w = edges[j - 1][1] if j > 0 else edges[0][0]
        outs = [(x, e) for x, es in G[w].items() for e in es.values()
                if x != w and not e["oneway"] and G.has_edge(x, w)]
        if not outs:
            continue
        x, e = outs[int(rng.integers(len(outs)))]
        back = next((b for b in G[x][w].values() if b["piece"] == e["piece"]), None)
        if back is None:
            continue
        return [*edges[:j], (w, x, e), (x, w, back), *edges[j:]]
    return edges


def _trip(G: nx.MultiDiGraph, nodes: list[int], start: int | None, rng: np.random.Generator,
          min_trip_m: float, p: SimParams | None = None) -> list[tuple[int, int, dict]]:
    """Edges of a route from ``start`` (or a random node) to a random node.

    Shortest by length, unless ``p`` asks for via points (shortest legs through
    random junctions), a loop (back to the start through two or more via points)
    or a U-turn (there and back on a two-way piece, only where the graph has the
    way back).
    """
    p = p or SimParams()

    def pick() -> int:
        return nodes[int(rng.integers(len(nodes)))]

    for attempt in range(250):
        o = start if start is not None else pick()
        loop = p.loop_probability > 0 and rng.random() < p.loop_probability
        n_via = int(rng.integers(0, p.via_points + 1)) if p.via_points else 0
        if loop:
            n_via = max(n_via, 2)
        d = o if loop else pick()
        stops = [o, *[pick() for _ in range(n_via)], d]
        if any(a == b for a, b in zip(stops[:-1], stops[1:])):
            continue
        try:
            edges = [e for a, b in zip(stops[:-1], stops[1:]) for e in _shortest_edges(G, a, b)]
        except nx.NetworkXNoPath:
            continue
        if not edges:
            continue
        if p.uturn_probability > 0 and rng.random() < p.uturn_probability:
            edges = _uturn(G, edges, rng)
        # on a small network accept any route with at least one edge after the first tries
        if sum(e[2]["length"] for e in edges) >= min_trip_m or attempt >= 50:
            return edges
    raise EmptyNetworkError("no route of the network leads anywhere", hint="use a connected road network")


def _ar1(n: int, t: np.ndarray, sigma: float, drift_s: float, rng: np.random.Generator) -> np.ndarray:
    """Correlated noise per axis: AR(1) with std ``sigma`` and correlation exp(-dt / drift_s) between fixes.

    ``drift_s == 0`` gives independent noise.
    """
    z = rng.normal(0.0, sigma, n)
    if drift_s <= 0 or n < 2:
        return z
    phi = np.exp(-np.diff(t) / drift_s)
    inn = np.sqrt(1.0 - phi ** 2)
    e = np.empty(n)
    e[0] = z[0]
    # a plain loop: numpy has no first-order recursive filter and scipy is not a dependency
    for k in range(1, n):
        e[k] = phi[k - 1] * e[k - 1] + inn[k - 1] * z[k]
    return e


def simulate_fleet(roads: gpd.GeoDataFrame, params: SimParams | None = None, *,
                   network_provenance: Provenance | None = None) -> Simulation:
    """Simulate a fleet on a roads table (see the module docstring).

    Parameters
    ----------
    roads
        The roads table (EPSG:4326).
    params
        What to simulate.
    network_provenance
        Provenance of the network, noted in the log's metadata.

    Returns
    -------
    Simulation
    """
    p = params or SimParams()
    if len(roads) == 0:
        raise EmptyNetworkError("the road network is empty", hint="load a network with roads")
    roads = roads.reset_index(drop=True)
    # two streams: routes and motion from one, GPS error from the other, so the same seed drives
    # the same routes whatever the noise settings
    rng, nrng = np.random.default_rng(p.seed).spawn(2)
    G = roads_to_graph(roads)
    nodes = _routable(G)
    if len(nodes) < 2:
        raise EmptyNetworkError("the network has no two connected junctions", hint="use a connected road network")
    crs = metric_crs(roads)
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    # per piece: projected coordinates in the piece's own direction, projected length, scale
    coords, idx = shapely.get_coordinates(roads.geometry.values, return_index=True)
    px, py = fwd.transform(coords[:, 0], coords[:, 1])
    bounds = np.searchsorted(idx, np.arange(len(roads) + 1))
    seg = np.hypot(np.diff(px), np.diff(py))
    seg[np.diff(idx) != 0] = 0.0
    cum = np.r_[0.0, np.cumsum(seg)]
    proj_len = cum[bounds[1:] - 1] - cum[bounds[:-1]]
    length_m = roads["length_m"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(proj_len > 0, length_m / proj_len, 1.0)
    highway = roads["highway"].to_numpy(dtype=object)
    oneway = roads["oneway"].to_numpy(dtype=bool)
    start0 = pd.Timestamp(p.start)
    if start0.tzinfo is None:
        start0 = start0.tz_localize("Asia/Shanghai")
    truth_m = np.zeros(len(roads))
    frames: list[dict[str, np.ndarray]] = []
    vehicle_rows: list[dict[str, Any]] = []
    sigma = p.noise_m / np.sqrt(2.0)
    dt = p.interval_s
    n_all = p.vehicles + p.parked_vehicles
    for vi in range(n_all):
        ent = enterprise_name(vi % p.enterprises)
        vid = f"E{vi % p.enterprises + 1:02d}-V{vi + 1:03d}"
        t_clock = float(rng.uniform(0, 3600))
        here: int | None = None
        parts: list[dict[str, np.ndarray]] = []
        v_truth = 0.0
        if vi >= p.vehicles:  # parked all along, logging: its truth is 0 km
            e = G[nodes[int(rng.integers(len(nodes)))]]
            x = next(iter(e))
            data = next(iter(e[x].values()))
            sx, sy, hd0 = _point_on_piece(int(data["piece"]), float(rng.uniform(0.2, 0.8)), bool(data["reversed"]),
                                          px, py, bounds, oneway, p.lane_offset_m)
            n = max(int(p.park_minutes * 60 / dt), 2)
            parts.append(_parked(t_clock, n, dt, sx, sy, hd0, int(data["piece"]), p, nrng))
        for _ in range(p.trips if vi < p.vehicles else 0):
            edges = _trip(G, nodes, here, rng, p.min_trip_m, p)
            here = edges[-1][1]
            out = _drive(edges, px, py, bounds, scale, highway, oneway, p, rng, nrng)
            if out is None:
                continue
            ts, xs, ys, sp, hd, tp, driven = out
            truth_m += driven
            v_truth += float(driven.sum())
            parts.append({"t": t_clock + ts, "x": xs, "y": ys, "speed": sp, "heading": hd, "piece": tp,
                          "keep": np.r_[True, np.zeros(len(ts) - 2, dtype=bool), True]})
            gap = float(rng.uniform(120, 900))
            park_logged = rng.random() < p.park_log_probability  # drawn always: the same routes either way
            if park_logged:
                # engine left on while parked: fixes at the same place, truth 0 km
                n = int(gap / dt)
                if n >= 1:
                    park = _parked(t_clock + float(ts[-1]) + dt, n, dt, float(xs[-1]), float(ys[-1]),
                                   float(hd[-1]), int(tp[-1]), p, nrng)
                    parts.append(park)
            t_clock += float(ts[-1]) + gap
        if not parts:
            continue
        V = {k: np.concatenate([f[k] for f in parts]) for k in parts[0]}
        n = len(V["t"])
        # GPS error: AR(1) drift (or independent noise), occasional outliers, dropouts
        ex, ey = _ar1(n, V["t"], sigma, p.drift_s, nrng), _ar1(n, V["t"], sigma, p.drift_s, nrng)
        if p.outlier_probability > 0:
            out_i = nrng.random(n) < p.outlier_probability
            mag = nrng.uniform(0.5, 2.0, n) * p.outlier_m
            ang = nrng.uniform(0, 2 * np.pi, n)
            ex = ex + np.where(out_i, mag * np.cos(ang), 0.0)
            ey = ey + np.where(out_i, mag * np.sin(ang), 0.0)
        V["x"], V["y"] = V["x"] + ex, V["y"] + ey
        keep = np.ones(n, dtype=bool)
        if p.dropout_probability > 0:
            starts = np.flatnonzero(nrng.random(n) < p.dropout_probability)
            lens = np.ceil(nrng.uniform(p.dropout_s[0], p.dropout_s[1], len(starts)) / dt).astype(int)
            for s0, k in zip(starts, lens):
                keep[s0:s0 + k] = False
            keep |= V["keep"]  # a trip's first and last fix stay: the truth is measured between them
        V = {k: a[keep] for k, a in V.items()}
        V["vehicle_id"] = np.full(len(V["t"]), vid, dtype=object)
        V["enterprise"] = np.full(len(V["t"]), ent, dtype=object)
        frames.append(V)
        vehicle_rows.append({"vehicle_id": vid, "enterprise": ent, "km": v_truth / 1000.0,
                             "parked": vi >= p.vehicles, "fixes": int(len(V["t"]))})
    if not frames:
        raise EmptyNetworkError("no trip could be simulated", hint="use a larger connected network")
    cat = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}
    lon, lat = inv.transform(cat["x"], cat["y"])
    lon, lat = np.asarray(lon), np.asarray(lat)
    if p.crs == "gcj02":
        from .gcj02 import wgs84_to_gcj02

        lon, lat = wgs84_to_gcj02(lon, lat)
    ts = start0 + pd.to_timedelta(np.round(cat["t"] * 1000).astype(np.int64), unit="ms")
    log = pd.DataFrame({"vehicle_id": cat["vehicle_id"], "enterprise": cat["enterprise"], "timestamp": ts,
                        "lon": np.round(lon, 7), "lat": np.round(lat, 7),
                        "speed": np.round(cat["speed"], 2), "heading": np.round(cat["heading"], 1)})
    order = np.lexsort((cat["t"], log["vehicle_id"].to_numpy()))
    log = log.iloc[order].reset_index(drop=True)
    if not p.speed_heading:
        log = log.drop(columns=["speed", "heading"])
    true_piece = cat["piece"][order]
    driven = np.flatnonzero(truth_m > 0)
    truth = pd.DataFrame({
        "piece": driven, "u": roads["u"].to_numpy()[driven], "v": roads["v"].to_numpy()[driven],
        "name": roads["name"].to_numpy(dtype=object)[driven], "highway": highway[driven],
        "oneway": oneway[driven], "length_m": length_m[driven], "km": truth_m[driven] / 1000.0,
    })
    notes = ["SYNTHETIC fleet log made by icv fleet simulate: not real test driving",
             f"seed {p.seed}, {p.vehicles} vehicles, {p.enterprises} enterprises, {p.trips} trips each, "
             f"GPS noise {p.noise_m} m RMS, coordinates {p.crs}",
             f"a fix every {p.interval_s:g} s; noise "
             + (f"AR(1) drift, correlation time {p.drift_s:g} s" if p.drift_s > 0 else "independent")
             + f"; outliers {p.outlier_probability:g}, dropouts {p.dropout_probability:g} per fix; "
             f"{p.via_points} via points at most, loops {p.loop_probability:g}, U-turns {p.uturn_probability:g}; "
             f"parked vehicles {p.parked_vehicles}; speed and heading {'logged' if p.speed_heading else 'not logged'}"]
    if network_provenance is not None:
        notes.append("network: " + network_provenance.summary())
    prov = Provenance("synthetic", "icv fleet simulate",
                      filter=network_provenance.filter if network_provenance else None,
                      zone=network_provenance.zone if network_provenance else None, notes=notes)
    return Simulation(log, truth, true_piece, p, prov, pd.DataFrame(vehicle_rows))


def _point_on_piece(i: int, frac: float, rev: bool, px: np.ndarray, py: np.ndarray, bounds: np.ndarray,
                    oneway: np.ndarray, lane_offset_m: float) -> tuple[float, float, float]:
    """A point ``frac`` along piece ``i`` (in the driven direction), in its lane, and the heading there."""
    ex, ey = px[bounds[i]:bounds[i + 1]], py[bounds[i]:bounds[i + 1]]
    if rev:
        ex, ey = ex[::-1], ey[::-1]
    D = np.r_[0.0, np.cumsum(np.hypot(np.diff(ex), np.diff(ey)))]
    d = frac * D[-1]
    k = int(np.clip(np.searchsorted(D, d, side="right") - 1, 0, len(D) - 2))
    f = (d - D[k]) / max(D[k + 1] - D[k], 1e-9)
    ux, uy = ex[k + 1] - ex[k], ey[k + 1] - ey[k]
    un = max(float(np.hypot(ux, uy)), 1e-9)
    ux, uy = ux / un, uy / un
    off = 0.0 if oneway[i] else lane_offset_m
    x = ex[k] + f * (ex[k + 1] - ex[k]) + off * uy
    y = ey[k] + f * (ey[k + 1] - ey[k]) - off * ux
    return float(x), float(y), float(np.degrees(np.arctan2(ux, uy)) % 360.0)


def _parked(t0: float, n: int, dt: float, x: float, y: float, heading: float, piece: int, p: SimParams,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` fixes of a standing vehicle (noise is added later): speed ~0, the last heading."""
    return {"t": t0 + dt * np.arange(n), "x": np.full(n, x), "y": np.full(n, y),
            "speed": np.abs(rng.normal(0, 0.2, n)),
            "heading": (heading + rng.normal(0, p.heading_noise_deg, n)) % 360.0,
            "piece": np.full(n, piece), "keep": np.zeros(n, dtype=bool)}


def _turn_angles(X: np.ndarray, Y: np.ndarray, D: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Change of direction (degrees) of a polyline at route distances ``at``, over ±10 m."""
    if len(at) == 0:
        return np.zeros(0)
    def pos(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.interp(d, D, X), np.interp(d, D, Y)
    x0, y0 = pos(np.maximum(at - 10.0, 0.0))
    x1, y1 = pos(at)
    x2, y2 = pos(np.minimum(at + 10.0, D[-1]))
    a1 = np.arctan2(y1 - y0, x1 - x0)
    a2 = np.arctan2(y2 - y1, x2 - x1)
    return np.degrees(np.abs((a2 - a1 + np.pi) % (2 * np.pi) - np.pi))


def _drive(edges: list[tuple[int, int, dict]], px: np.ndarray, py: np.ndarray, bounds: np.ndarray,
           scale: np.ndarray, highway: np.ndarray, oneway: np.ndarray, p: SimParams,
           rng: np.random.Generator, nrng: np.random.Generator) -> tuple[np.ndarray, ...] | None:
    """Sample one trip every ``p.interval_s``: times, x/y in the lane (no GPS error yet), speed, heading,
    true piece, truth metres per piece."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    seg_edge: list[np.ndarray] = []
    for k, (_, _, data) in enumerate(edges):
        i = int(data["piece"])
        ex, ey = px[bounds[i]:bounds[i + 1]], py[bounds[i]:bounds[i + 1]]
        if data.get("reversed"):
            ex, ey = ex[::-1], ey[::-1]
        if xs:
            ex, ey = ex[1:], ey[1:]
        xs.append(ex)
        ys.append(ey)
        seg_edge.append(np.full(len(ex), k))
    X, Y = np.concatenate(xs), np.concatenate(ys)
    vedge = np.concatenate(seg_edge)  # edge of the segment that ends at each vertex
    step = np.hypot(np.diff(X), np.diff(Y))
    keepv = np.r_[True, step > 1e-9]
    X, Y, vedge = X[keepv], Y[keepv], vedge[keepv]
    D = np.r_[0.0, np.cumsum(np.hypot(np.diff(X), np.diff(Y)))]
    if D[-1] <= 0:
        return None
    n_e = len(edges)
    # distance along the route where each edge starts and ends
    last_v = np.searchsorted(vedge, np.arange(n_e), side="right") - 1  # vedge is non-decreasing
    e_end = np.maximum.accumulate(np.where(last_v >= 0, D[np.maximum(last_v, 0)], 0.0))
    e_start = np.r_[0.0, e_end[:-1]]
    pieces = np.array([int(e[2]["piece"]) for e in edges])
    speed = np.array([CLASS_SPEED_MPS.get(str(highway[i]), DEFAULT_SPEED_MPS) for i in pieces])
    speed = speed * rng.uniform(0.8, 1.1, n_e)
    stop = rng.random(n_e) < p.stop_probability
    stop[-1] = False
    dwell = np.where(stop, rng.uniform(5, 40, n_e), 0.0)
    # speed profile over a 1 m grid of route distance: the class speed of each edge,
    # slower through sharp turns, zero at the start, the end and at stops (a few metres
    # before the junction that ends an edge), with acceleration and braking of ACCEL
    grid = np.unique(np.r_[np.arange(0.0, D[-1], 1.0), D[-1], e_end])
    limit = speed[np.clip(np.searchsorted(e_end, grid, side="left"), 0, n_e - 1)]
    turn = _turn_angles(X, Y, D, e_end[:-1])
    for k, ang in enumerate(turn):
        if ang > 45.0:
            j = np.searchsorted(grid, e_end[k])
            limit[j] = min(limit[j], UTURN_SPEED_MPS if ang > 150.0 else TURN_SPEED_MPS)
    stop_d = np.where(stop, e_end - np.minimum(8.0, 0.5 * (e_end - e_start)), np.nan)
    stop_j = np.searchsorted(grid, stop_d[stop])
    limit[stop_j] = 0.0
    limit[0] = limit[-1] = 0.0
    v2 = limit ** 2
    v2 = np.minimum(v2, np.minimum.accumulate(v2 - 2 * ACCEL * grid) + 2 * ACCEL * grid)
    rg = grid[::-1]
    v2 = np.minimum(v2, (np.minimum.accumulate(v2[::-1] + 2 * ACCEL * rg) - 2 * ACCEL * rg)[::-1])
    v = np.sqrt(np.maximum(v2, 0.0))
    vmid = np.maximum((v[1:] + v[:-1]) / 2, 0.05)
    tg = np.r_[0.0, np.cumsum(np.diff(grid) / vmid)]
    # dwell at each stop: time jumps there while the distance stays
    for j, w in sorted(zip(stop_j.tolist(), dwell[stop].tolist()), reverse=True):
        tg[j + 1:] += w
        grid = np.insert(grid, j + 1, grid[j])
        tg = np.insert(tg, j + 1, tg[j] + w)
        v = np.insert(v, j + 1, 0.0)
    ts = np.arange(0.0, tg[-1] + 1e-9, p.interval_s)
    if len(ts) < 2:
        return None
    d = np.interp(ts, tg, grid)
    vt = np.interp(ts, tg, v)
    # position on the polyline
    si = np.clip(np.searchsorted(D, d, side="right") - 1, 0, len(D) - 2)
    f = (d - D[si]) / np.where(D[si + 1] > D[si], D[si + 1] - D[si], 1.0)
    sx, sy = X[si] + f * (X[si + 1] - X[si]), Y[si] + f * (Y[si + 1] - Y[si])
    ux, uy = X[si + 1] - X[si], Y[si + 1] - Y[si]
    un = np.hypot(ux, uy)
    ux, uy = ux / un, uy / un
    ek = np.clip(np.searchsorted(e_end, d, side="right"), 0, n_e - 1)
    ek = np.where(d >= e_end[-1], n_e - 1, ek)
    tpiece = pieces[ek]
    off = np.where(oneway[tpiece], 0.0, p.lane_offset_m)
    sx, sy = sx + off * uy, sy - off * ux  # right of the direction of travel
    vs = np.maximum(vt + nrng.normal(0, 0.2, len(ts)), 0.0)
    hd = (np.degrees(np.arctan2(ux, uy)) + nrng.normal(0, p.heading_noise_deg, len(ts))) % 360.0
    # truth: distance along each edge between the first and last fix, geodesic-scaled
    d_last = float(d[-1])
    driven = np.clip(np.minimum(e_end, d_last) - e_start, 0.0, None) * scale[pieces]
    truth = np.bincount(pieces, weights=driven, minlength=len(scale))
    return ts, sx, sy, vs, hd, tpiece, truth


# ---------------------------------------------------------------- writing

def truth_path(log_path: str | os.PathLike[str]) -> Path:
    """``LOG.truth.csv`` beside a log (``fleet.parquet`` -> ``fleet.truth.csv``)."""
    p = Path(log_path)
    name = p.name
    for sfx in (".csv.gz", ".parquet", ".csv", ".gpx", ".pq"):
        if name.lower().endswith(sfx):
            name = name[: -len(sfx)]
            break
    return p.with_name(name + ".truth.csv")


def write_simulation(sim: Simulation, path: str | os.PathLike[str], row_group_rows: int = 100_000) -> list[Path]:
    """Write the log (format from the suffix), its synthetic marker and the truth; atomically.

    Returns
    -------
    list of Path
        The files written: the log, the sidecar (CSV, GPX), the truth CSV.
    """
    path = Path(path)
    fmt = log_format(path)
    meta = sim.metadata()
    written = [path]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tab = pa.Table.from_pandas(sim.log, preserve_index=False)
        tab = tab.replace_schema_metadata({**(tab.schema.metadata or {}),
                                           META_KEY: json.dumps(meta, ensure_ascii=False).encode("utf-8")})
        with atomic_path(path) as tmp:
            pq.write_table(tab, tmp, row_group_size=row_group_rows)
    elif fmt == "csv":
        df = sim.log.copy()
        df["timestamp"] = df["timestamp"].map(lambda ts: ts.isoformat())
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, encoding="utf-8")
        written.append(write_text(sidecar_path(path), json.dumps({**meta, "log_sha256": sha256_file(path)},
                                                                 ensure_ascii=False, indent=2) + "\n"))
    else:
        write_text(path, gpx_text(sim.log, meta))
        written.append(write_text(sidecar_path(path), json.dumps({**meta, "log_sha256": sha256_file(path)},
                                                                 ensure_ascii=False, indent=2) + "\n"))
    tp = truth_path(path)
    with atomic_path(tp) as tmp:
        sim.truth.to_csv(tmp, index=False, encoding="utf-8")
    written.append(tp)
    return written


def gpx_text(log: pd.DataFrame, meta: dict[str, Any] | None = None) -> str:
    """A GPX 1.1 document: one ``<trk>`` per vehicle (``<name>`` vehicle, ``<type>`` enterprise)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<gpx version="1.1" creator="icv fleet simulate" xmlns="http://www.topografix.com/GPX/1/1">']
    if meta is not None:
        desc = "SYNTHETIC fleet log" if meta.get("synthetic") else "fleet log"
        out.append(f"<metadata><desc>{escape(desc)}</desc></metadata>")
    for vid, g in log.groupby("vehicle_id", sort=False):
        ent = g["enterprise"].iloc[0]
        out.append(f"<trk><name>{escape(str(vid))}</name><type>{escape(str(ent))}</type><trkseg>")
        times = [ts.isoformat() if isinstance(ts, (pd.Timestamp, datetime)) else str(ts) for ts in g["timestamp"]]
        has_sh = "speed" in g.columns and "heading" in g.columns
        sps = g["speed"] if has_sh else [None] * len(g)
        hds = g["heading"] if has_sh else [None] * len(g)
        for lo, la, tm, sp, hd in zip(g["lon"], g["lat"], times, sps, hds):
            ext = f"<extensions><speed>{sp}</speed><course>{hd}</course></extensions>" if has_sh else ""
            out.append(f"<trkpt lat={quoteattr(repr(float(la)))} lon={quoteattr(repr(float(lo)))}>"
                       f"<time>{escape(tm)}</time>{ext}</trkpt>")
        out.append("</trkseg></trk>")
    out.append("</gpx>")
    return "\n".join(out) + "\n"
