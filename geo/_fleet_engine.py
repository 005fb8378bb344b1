"""The streaming mileage engine: chunks of a fleet log in, additive totals out.

The engine keeps, per vehicle, the last few *kept* points (position, time,
heading, matched piece) and prepends them as context to the vehicle's rows in
the next chunk. Every quantity of a row depends only on earlier rows of the
same vehicle, so the totals do not depend on where chunks (or Dask partitions)
are cut. Lengths are added as integer micrometres, so the totals are exactly
the same whatever the order of addition.

Per row
-------
1. Stateless checks, in this order: missing vehicle id, missing coordinates,
   coordinates out of range (``|lon| > 180``, ``|lat| > 90`` or exactly
   ``(0, 0)``), unparsable timestamp.
2. Sequential checks against the vehicle's last kept point: backwards
   timestamp (earlier), repeated timestamp (equal), jump (implied speed over
   ``max_speed_mps``, 60 m/s). A rejected row is never a reference for the
   next one.
3. Heading: the GPS ``heading`` column where present (and ``speed`` is at least
   ``min_gps_heading_speed`` or absent); otherwise the bearing across the
   shortest window of kept points that spans at least ``min_heading_move_m``
   (20 m, well above GPS noise): centred on the point (±1, ±2), else looking
   back 3, 6 or 10 points, else (a track's start) ahead 2 or 1 points; unless
   the GPS speed says the vehicle stands; otherwise the last known heading.
4. Standing still (GPS speed under ``still_speed_mps``; without a speed
   column, the mean position of the 2 next points less than ``still_move_m``
   from that of the 2 previous ones): the vehicle keeps the piece it had when
   it last moved, if that piece is within the radius.
5. Matching (:mod:`geo._fleet_match`): first pass by distance and heading,
   second pass adds the continuity bonus for the previous point's first-pass
   piece.

Per pair of consecutive kept points of a vehicle
------------------------------------------------
- More than ``max_gap_s`` apart in time: a *gap*, no distance attributed.
- Both on the same piece: the signed distance along the piece in the direction
  of travel (one-way: the piece's direction; two-way: from the heading). Signed
  sums telescope, so GPS jitter while standing still adds nothing.
- On two pieces that share an end node: each gets the distance along it from
  the point to that node (the shorter way when they share both ends), provided
  that way is plausible: at most ``sqrt(2)`` times the straight distance plus
  ``detour_slack_m`` (a right-angle turn is ``sqrt(2)`` at worst).
- Otherwise (pieces that do not touch, or a hop between two pieces forking at
  a shallow angle): the straight GPS distance, half to each.
- One point or both off the network (nothing within the radius): the straight
  GPS distance counts as *off-network* km of the vehicle, on no piece.

All distances along pieces are projected metres scaled by the piece's
geodesic/projected length ratio, so a piece driven end to end counts exactly
its ``length_m``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._jit import kernel
from ._fleet_io import NAT, PLAUSIBLE_FROM_NS, RawChunk, plausible_until_ns
from ._fleet_match import PieceMatcher

#: Bad-row reasons, in the order they are checked.
REASONS = (
    "malformed line",
    "missing vehicle id",
    "missing coordinates",
    "coordinates out of range",
    "unparsable timestamp",
    "implausible timestamp",
    "backwards timestamp",
    "repeated timestamp",
    "jump over max speed",
)
_R = {r: i + 1 for i, r in enumerate(REASONS)}
UM = 1_000_000  # micrometres per metre
_VEH_FIELDS = ("rows", "bad_rows", "points", "matched_points", "matched_um", "offnet_um", "gps_um",
               "gap_pairs", "driving_ns")


@dataclass(frozen=True)
class EngineParams:
    """Rules of the engine (see the module docstring)."""

    max_speed_mps: float = 60.0
    max_gap_s: float = 60.0
    heading_lookback: tuple[int, ...] = (3, 6, 10)
    min_heading_move_m: float = 20.0
    min_gps_heading_speed: float = 1.5
    still_speed_mps: float = 1.0
    still_move_m: float = 6.0
    detour_slack_m: float = 15.0
    lookahead: int = 2
    examples_per_reason: int = 5
    #: metres added to ``max_speed_mps * dt`` before a step is a jump: two fixes' noise
    #: (set from the log's estimated noise by geo.fleet, so a noisy 1 Hz log loses no valid fix)
    jump_slack_m: float = 0.0


@dataclass
class Totals:
    """Additive results of the engine; :meth:`merge` adds another one."""

    n_pieces: int
    n_subzones: int
    rows: int = 0
    piece_um: np.ndarray = field(default=None)  # type: ignore[assignment]
    piece_points: np.ndarray = field(default=None)  # type: ignore[assignment]
    subzone_um: np.ndarray = field(default=None)  # type: ignore[assignment]
    zone_um: int = 0
    enterprise_piece_um: dict[str, np.ndarray] = field(default_factory=dict)
    vehicles: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad: Counter = field(default_factory=Counter)
    bad_examples: dict[str, list[int]] = field(default_factory=dict)
    unconnected_pairs: int = 0
    #: pairs the HMM matcher could not follow: (vehicle, t0_ns, t1_ns, why), the first few
    break_examples: list = field(default_factory=list)
    #: fixes the HMM matcher left out as outliers (beyond the radius, or next to a road no plausible
    #: route reaches and leaves, between fixes it could follow)
    outliers_skipped: int = 0

    def __post_init__(self) -> None:
        if self.piece_um is None:
            self.piece_um = np.zeros(self.n_pieces, dtype=np.int64)
        if self.piece_points is None:
            self.piece_points = np.zeros(self.n_pieces, dtype=np.int64)
        if self.subzone_um is None:
            self.subzone_um = np.zeros(self.n_subzones + 1, dtype=np.int64)

    def merge(self, other: Totals) -> Totals:
        """Add ``other`` into this (in place) and return self."""
        self.rows += other.rows
        self.piece_um += other.piece_um
        self.piece_points += other.piece_points
        self.subzone_um += other.subzone_um
        self.zone_um += other.zone_um
        self.unconnected_pairs += other.unconnected_pairs
        self.outliers_skipped += other.outliers_skipped
        self.break_examples = sorted([*self.break_examples, *other.break_examples])[:20]
        for e, arr in other.enterprise_piece_um.items():
            if e in self.enterprise_piece_um:
                self.enterprise_piece_um[e] = self.enterprise_piece_um[e] + arr
            else:
                self.enterprise_piece_um[e] = arr.copy()
        for v, st in other.vehicles.items():
            mine = self.vehicles.get(v)
            if mine is None:
                self.vehicles[v] = dict(st)
                continue
            for k in _VEH_FIELDS:
                mine[k] += st[k]
            for k, fn in (("first_ns", min), ("last_ns", max)):
                vals = [x for x in (mine[k], st[k]) if x is not None]
                mine[k] = fn(vals) if vals else None
            if mine["enterprise"] is None:
                mine["enterprise"] = st["enterprise"]
        self.bad.update(other.bad)
        for r, ex in other.bad_examples.items():
            self.bad_examples[r] = sorted(set(self.bad_examples.get(r, [])) | set(ex))[:5]
        return self


def _group_starts(veh: np.ndarray) -> np.ndarray:
    """For each element of a grouped array, the index where its group starts."""
    n = len(veh)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.r_[True, veh[1:] != veh[:-1]]
    return np.maximum.accumulate(np.where(new, np.arange(n), 0))


@kernel
def _sum_contributions(c_piece: np.ndarray, c_sub: np.ndarray, c_um: np.ndarray, ent: np.ndarray,
                       sub_zone_index: np.ndarray, sub_in_zone: np.ndarray, n_ent: int,
                       piece_um: np.ndarray, subzone_um: np.ndarray) -> tuple:
    """Sums of the contributions per piece, sub-zone, zone and (enterprise, piece).

    Parameters
    ----------
    c_piece, c_sub, c_um, ent : int64 arrays
        Per contribution: piece, sub-segment, micrometres, enterprise code (0 = unknown).
    sub_zone_index : int64 array
        Sub-zone of each sub-segment (-1: none).
    sub_in_zone : bool array
        Whether each sub-segment is in the test zone.
    n_ent : int
        Number of enterprise codes.
    piece_um, subzone_um : int64 arrays
        The totals per piece and per sub-zone (the last: none), added to in place.

    Returns
    -------
    zone_um : int
        Micrometres in the zone.
    count : int64 array
        Contributions per enterprise code.
    e_start, e_piece, e_um : int64 arrays
        Per enterprise code ``e``, the pieces it has contributions on,
        ``e_piece[e_start[e]:e_start[e + 1]]``, and their micrometres.

    Notes
    -----
    Each bin is summed in float64 in the order of the contributions and then truncated to
    int64, as ``np.bincount(..., weights=c_um).astype(np.int64)``: the same numbers bit for bit,
    without a dense enterprises x pieces table per call.
    """
    n, n_pieces, n_sz = len(c_piece), len(piece_um), len(subzone_um)
    acc = np.zeros(n_pieces)
    acc_z = np.zeros(n_sz)
    zone = 0
    for i in range(n):
        w = float(c_um[i])
        acc[c_piece[i]] += w
        zi = sub_zone_index[c_sub[i]]
        acc_z[zi if zi >= 0 else n_sz - 1] += w
        if sub_in_zone[c_sub[i]]:
            zone += c_um[i]
    for k in range(n):
        p = c_piece[k]
        piece_um[p] += np.int64(acc[p])
        acc[p] = 0.0
    for z in range(n_sz):
        subzone_um[z] += np.int64(acc_z[z])
    # per enterprise: its contributions in their order (a stable counting sort), summed per piece
    count = np.zeros(n_ent, dtype=np.int64)
    for i in range(n):
        count[ent[i]] += 1
    e_start = np.zeros(n_ent + 1, dtype=np.int64)
    for e in range(n_ent):
        e_start[e + 1] = e_start[e] + count[e]
    fill = e_start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[fill[ent[i]]] = i
        fill[ent[i]] += 1
    e_piece = np.empty(n, dtype=np.int64)
    e_um = np.empty(n, dtype=np.int64)
    seen = np.zeros(n_pieces, dtype=np.bool_)
    m = 0
    for e in range(n_ent):
        lo, hi = e_start[e], e_start[e + 1]
        e_start[e] = m
        for k in range(lo, hi):
            i = order[k]
            acc[c_piece[i]] += float(c_um[i])
        for k in range(lo, hi):
            p = c_piece[order[k]]
            if not seen[p]:
                seen[p] = True
                e_piece[m] = p
                e_um[m] = np.int64(acc[p])
                m += 1
        for k in range(e_start[e], m):
            acc[e_piece[k]] = 0.0
            seen[e_piece[k]] = False
    e_start[n_ent] = m
    return zone, count, e_start, e_piece[:m], e_um[:m]


class MileageEngine:
    """Feed :class:`~geo._fleet_io.RawChunk` blocks, call :meth:`finish`, read :attr:`totals`.

    Parameters
    ----------
    matcher
        The piece index of the network.
    crs
        ``wgs84`` or ``gcj02``: the coordinate system of the log.
    params
        Engine rules.
    """

    def __init__(self, matcher: PieceMatcher, crs: str = "wgs84", params: EngineParams | None = None) -> None:
        self.m = matcher
        self.crs = crs
        self.p = params or EngineParams()
        self._until_ns = plausible_until_ns()
        self.totals = Totals(matcher.n_pieces, matcher.n_subzones)
        self.vehicle_names: list[str] = []
        self._vcode: dict[str, int] = {}
        self.enterprise_names: list[str] = []
        self._ecode: dict[str, int] = {}
        # per vehicle code: the last finalized rows (context) and the kept row awaiting its successor
        self.ctx: dict[int, dict[str, np.ndarray]] = {}
        self.pending: dict[int, dict[str, np.ndarray]] = {}
        #: When a list, (row numbers, matched piece) of finalized rows are appended (tests, diagnostics).
        self.point_log: list[tuple[np.ndarray, np.ndarray]] | None = None

    # ------------------------------------------------------------------ helpers
    def _global_codes(self, local: np.ndarray, names: list[str], table: list[str],
                      index: dict[str, int]) -> np.ndarray:
        lut = np.empty(len(names) + 1, dtype=np.int64)
        for i, nm in enumerate(names):
            code = index.get(nm)
            if code is None:
                code = index[nm] = len(table)
                table.append(nm)
            lut[i] = code
        lut[-1] = -1
        return lut[np.where(local >= 0, local, len(names))]

    def _count_bad(self, reason_code: np.ndarray, rows: np.ndarray) -> None:
        codes, counts = np.unique(reason_code[reason_code > 0], return_counts=True)
        for c, k in zip(codes, counts):
            name = REASONS[int(c) - 1]
            self.totals.bad[name] += int(k)
            ex = self.totals.bad_examples.setdefault(name, [])
            if len(ex) < self.p.examples_per_reason:
                sel = rows[reason_code == c][: self.p.examples_per_reason - len(ex)]
                ex.extend(int(r) + 1 for r in sel)  # 1-based data-row numbers

    def add_malformed(self, n: int) -> None:
        """Count lines the reader skipped as malformed."""
        if n:
            self.totals.bad["malformed line"] += int(n)

    def _vehicle(self, code: int) -> dict[str, Any]:
        name = self.vehicle_names[code]
        st = self.totals.vehicles.get(name)
        if st is None:
            st = {k: 0 for k in _VEH_FIELDS}
            st.update(enterprise=None, first_ns=None, last_ns=None)
            self.totals.vehicles[name] = st
        return st

    # ------------------------------------------------------------------ input
    def prepare(self, ch: RawChunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The part of :meth:`feed` that needs nothing but the chunk: each row's reason to be left
        out (0: none) and the metric coordinates of the rows without one.

        Pure (it reads the engine's settings and matcher, changes nothing), so the rows of the next
        chunk are checked and projected in the reading thread while this one is matched.
        """
        n = len(ch)
        lon, lat, t = ch.lon, ch.lat, ch.t_ns
        reason = np.zeros(n, dtype=np.int8)
        nan_xy = ~(np.isfinite(lon) & np.isfinite(lat))
        out = ~nan_xy & ((np.abs(lon) > 180) | (np.abs(lat) > 90) | ((lon == 0) & (lat == 0)))
        for mask, r in ((ch.vehicle < 0, "missing vehicle id"), (nan_xy, "missing coordinates"),
                        (out, "coordinates out of range"), (t == NAT, "unparsable timestamp"),
                        ((t != NAT) & ((t < PLAUSIBLE_FROM_NS) | (t > self._until_ns)), "implausible timestamp")):
            reason[(reason == 0) & mask] = _R[r]
        ok = np.flatnonzero(reason == 0)
        x = y = np.zeros(0)
        if len(ok):
            lo, la = lon[ok], lat[ok]
            if self.crs == "gcj02":
                from .gcj02 import gcj02_to_wgs84

                lo, la = gcj02_to_wgs84(lo, la)
            x, y = self.m.project(lo, la)
        return reason, x, y

    def feed(self, ch: RawChunk, prepared: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        """Process one chunk of rows (in file order); ``prepared``: its :meth:`prepare`, where done."""
        n = len(ch)
        self.totals.rows += n
        if n == 0:
            return
        veh = self._global_codes(ch.vehicle, ch.vehicle_names, self.vehicle_names, self._vcode)
        ent = self._global_codes(ch.enterprise, ch.enterprise_names, self.enterprise_names, self._ecode)
        reason, xo, yo = prepared if prepared is not None else self.prepare(ch)
        rows = ch.first_row + np.arange(n, dtype=np.int64)
        has_v = veh >= 0
        for code, k in zip(*np.unique(veh[has_v], return_counts=True)):
            self._vehicle(int(code))["rows"] += int(k)
        ok = np.flatnonzero(reason == 0)
        t = ch.t_ns
        new = {
            "veh": veh[ok], "ent": ent[ok], "row": rows[ok], "t": t[ok], "x": xo, "y": yo,
            "speed": ch.speed[ok] if ch.speed is not None else np.full(len(ok), np.nan),
            "gh": ch.heading[ok] if ch.heading is not None else np.full(len(ok), np.nan),
        }
        keep, why = self._process(new, final=False)
        reason[ok[~keep]] = why[~keep]
        self._count_bad(reason, rows)
        bad_v = veh[(reason > 0) & has_v]
        for code, k in zip(*np.unique(bad_v, return_counts=True)):
            self._vehicle(int(code))["bad_rows"] += int(k)

    def finish(self) -> Totals:
        """Finalize the rows still waiting for a successor; return the totals."""
        if self.pending:
            empty = {k: np.zeros(0, dtype=np.int64 if k in ("veh", "ent", "row", "t") else np.float64)
                     for k in ("veh", "ent", "row", "t", "x", "y", "speed", "gh")}
            self._process(empty, final=True)
        return self.totals

    # ------------------------------------------------------------------ the sequence
    _RAW = ("veh", "ent", "row", "t", "x", "y", "speed", "gh")
    _DONE = ("hx", "hy", "fp", "piece", "sub", "pos", "hold", "sx", "sy")

    def _process(self, new: dict[str, np.ndarray], final: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run context + pending + new rows; returns the keep mask and reasons of the new rows."""
        p = self.p
        vehicles = np.unique(new["veh"]) if len(new["veh"]) else np.zeros(0, dtype=np.int64)
        if final:
            vehicles = np.array(sorted(self.pending), dtype=np.int64)
        parts: list[dict[str, np.ndarray]] = []
        for code in vehicles.tolist():
            for kind, store in ((0, self.ctx), (1, self.pending)):
                blk = store.get(code)
                if blk is not None:
                    parts.append({**blk, "kind": np.full(len(blk["t"]), kind, dtype=np.int8)})
        nnew = len(new["t"])
        parts.append({**new, "kind": np.full(nnew, 2, dtype=np.int8)})
        cols = {}
        for k in (*self._RAW, *self._DONE, "kind"):
            arrs = []
            for part in parts:
                if k in part:
                    arrs.append(part[k])
                else:
                    ln = len(part["t"])
                    if k in ("fp", "piece", "sub", "hold"):
                        arrs.append(np.full(ln, -1, dtype=np.int64))
                    else:
                        arrs.append(np.full(ln, np.nan))
            cols[k] = np.concatenate(arrs) if arrs else np.zeros(0)
        kind = cols["kind"]
        # order: by vehicle; context, pending, then new rows in file order
        ordkey = np.where(kind == 2, cols["row"], np.iinfo(np.int64).min + np.arange(len(kind)))
        order = np.lexsort((ordkey, cols["veh"]))
        S = {k: cols[k][order] for k in ("veh", "t", "x", "y", "kind")}
        is_new = S["kind"] == 2
        keep_all, why_all = self._sequential_filter(S["veh"], S["t"], S["x"], S["y"], ~is_new)
        # keep/why for the new rows, in the order they were given
        inv = np.empty(len(order), dtype=np.int64)
        inv[order] = np.arange(len(order))
        new_pos = inv[len(kind) - nnew:]
        keep_new, why_new = keep_all[new_pos], why_all[new_pos]

        # one gather per column: sorted, then kept
        take = order[keep_all]
        K = {k: v[take] for k, v in cols.items()}
        nK = len(K["t"])
        if nK == 0:
            return keep_new, why_new
        veh = K["veh"]
        gs = _group_starts(veh)
        idx = np.arange(nK)
        ge = np.r_[np.flatnonzero(veh[1:] != veh[:-1]), nK - 1]
        ctx = K["kind"] == 0
        # finalize every non-context row that has its look-ahead successors (all of them at the end)
        gend = np.repeat(ge, np.diff(np.r_[-1, ge]))
        F = ~ctx & ((gend - idx >= p.lookahead) | final)
        fw = np.flatnonzero(F)
        self._finalize(K, fw, gs, idx, gend)
        self._pairs_and_totals(K, fw, gs, idx)
        # ---- new context and pending rows per vehicle
        lb = max(p.heading_lookback)
        done = ~F & ~ctx  # rows waiting for successors (at most ``lookahead`` per vehicle)
        for s, e in zip(gs[ge], ge):
            code = int(veh[e])
            fin = np.flatnonzero((ctx | F)[s:e + 1]) + s
            if len(fin):
                sl = fin[-lb:]
                self.ctx[code] = {k: K[k][sl].copy() for k in (*self._RAW, *self._DONE)}
            wait = np.flatnonzero(done[s:e + 1]) + s
            if len(wait):
                self.pending[code] = {k: K[k][wait].copy() for k in self._RAW}
            else:
                self.pending.pop(code, None)
        return keep_new, why_new

    def _smoothed(self, K: dict[str, np.ndarray], gs: np.ndarray, gend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions averaged with their neighbours (up to 2 each side, at most 2 s apart).

        With GPS speed and heading, each neighbour is moved by dead reckoning
        (the mean of the two velocities times the time step) onto the row's own
        time, so the average has no lag or corner cutting. Without them, only
        the direct neighbours are used, weighted (1, 2, 1)/4.
        """
        X, Y, T = K["x"], K["y"], K["t"]
        n = len(X)
        idx = np.arange(n)
        spd, gh = K["speed"], K["gh"]
        rad = np.radians(np.nan_to_num(gh))
        standing = np.isfinite(spd) & (spd < 0.5)
        dr = np.isfinite(spd) & (np.isfinite(gh) | standing)
        vx = np.where(standing, 0.0, np.nan_to_num(spd) * np.sin(rad))
        vy = np.where(standing, 0.0, np.nan_to_num(spd) * np.cos(rad))
        nx_ = np.minimum(idx + 1, n - 1)
        dt = (T[nx_] - T) / 1e9
        step_ok = (idx < gend) & (dt > 0) & (dt <= 2.0)
        # step[j]: displacement from row j to row j+1 by dead reckoning
        sxs = (vx + vx[nx_]) / 2 * dt
        sys_ = (vy + vy[nx_]) / 2 * dt
        dr_step = step_ok & dr & dr[nx_]
        acc_x, acc_y, cnt = X.copy(), Y.copy(), np.ones(n)

        # neighbour indices clamped to the array, computed once
        nb = {k: np.minimum(np.maximum(idx + k, 0), n - 1) for k in (-2, -1, 1, 2)}

        # forward neighbours i+1, i+2 and backward i-1, i-2
        okf1 = dr_step
        ex, ey = X[nb[1]] - sxs, Y[nb[1]] - sys_
        acc_x += np.where(okf1, ex, 0)
        acc_y += np.where(okf1, ey, 0)
        cnt += okf1
        okf2 = okf1 & dr_step[nb[1]] & (idx + 1 < gend)
        ex2, ey2 = X[nb[2]] - sxs - sxs[nb[1]], Y[nb[2]] - sys_ - sys_[nb[1]]
        acc_x += np.where(okf2, ex2, 0)
        acc_y += np.where(okf2, ey2, 0)
        cnt += okf2
        okb1 = (idx > gs) & dr_step[nb[-1]]
        bx, by = X[nb[-1]] + sxs[nb[-1]], Y[nb[-1]] + sys_[nb[-1]]
        acc_x += np.where(okb1, bx, 0)
        acc_y += np.where(okb1, by, 0)
        cnt += okb1
        okb2 = okb1 & (idx - 1 > gs) & dr_step[nb[-2]]
        bx2 = X[nb[-2]] + sxs[nb[-2]] + sxs[nb[-1]]
        by2 = Y[nb[-2]] + sys_[nb[-2]] + sys_[nb[-1]]
        acc_x += np.where(okb2, bx2, 0)
        acc_y += np.where(okb2, by2, 0)
        cnt += okb2
        sx, sy = acc_x / cnt, acc_y / cnt
        # no dead reckoning: the direct neighbours within 2 s, weighted (1, 2, 1)/4
        plain = (cnt == 1) & (idx > gs) & step_ok & step_ok[nb[-1]]
        sx = np.where(plain, (X[nb[-1]] + 2 * X + X[nb[1]]) / 4, sx)
        sy = np.where(plain, (Y[nb[-1]] + 2 * Y + Y[nb[1]]) / 4, sy)
        return sx, sy

    def _finalize(self, K: dict[str, np.ndarray], fw: np.ndarray, gs: np.ndarray, idx: np.ndarray,
                  gend: np.ndarray) -> None:
        """Heading, smoothing and matching of the rows ``fw`` of the kept sequence ``K`` (in place)."""
        p, m = self.p, self.m
        nK = len(idx)
        X, Y = K["x"], K["y"]
        fin = np.zeros(nK, dtype=bool)
        fin[fw] = True
        # heading: GPS heading when moving; else the shortest window around the point that moved
        # far enough (centred on it, then looking back, then ahead at the start of a track)
        hx = np.full(nK, np.nan)
        hy = np.full(nK, np.nan)
        spd, gh = K["speed"], K["gh"]
        slow = np.isfinite(spd) & (spd < p.min_gps_heading_speed)
        use = np.isfinite(gh) & ~slow
        rad = np.radians(gh[use])
        hx[use], hy[use] = np.sin(rad), np.cos(rad)
        need = np.flatnonzero(fin & ~use & ~slow)  # only these look at their neighbours
        windows = [(-k, k) for k in range(1, p.lookahead + 1)]
        windows += [(-lb, 0) for lb in p.heading_lookback]
        windows += [(0, k) for k in range(p.lookahead, 0, -1)]
        for b, f in windows:
            if len(need) == 0:
                break
            i0 = np.maximum(need + b, gs[need])
            i1 = np.minimum(need + f, gend[need])
            ddx, ddy = X[i1] - X[i0], Y[i1] - Y[i0]
            dd = np.hypot(ddx, ddy)
            take = (i0 == need + b) & (i1 == need + f) & (dd >= p.min_heading_move_m)
            hx[need[take]] = ddx[take] / dd[take]
            hy[need[take]] = ddy[take] / dd[take]
            need = need[~take]
        hx = np.where(fin, hx, K["hx"])
        hy = np.where(fin, hy, K["hy"])
        known = np.isfinite(hx)
        last = np.maximum.accumulate(np.where(known, idx, -1))
        okh = last >= gs
        lastc = np.maximum(last, 0)
        K["hx"] = np.where(okh, hx[lastc], np.nan)
        K["hy"] = np.where(okh, hy[lastc], np.nan)
        sx, sy = self._smoothed(K, gs, gend)
        K["sx"] = np.where(fin, sx, K["sx"])
        K["sy"] = np.where(fin, sy, K["sy"])
        if len(fw) == 0:
            return
        # standing still: GPS speed under still_speed_mps; without GPS speed, the mean of
        # the 2 points after minus the mean of the 2 before (noise ~2/3 of one fix's; a
        # vehicle at v m/s moves it by about 2v metres)
        i_2, i_1 = np.maximum(idx - 2, 0), np.maximum(idx - 1, 0)
        j_1, j_2 = np.minimum(idx + 1, nK - 1), np.minimum(idx + 2, nK - 1)
        full = (idx - 2 >= gs) & (idx + 2 <= gend)
        mdx = (X[j_1] + X[j_2] - X[i_1] - X[i_2]) / 3
        mdy = (Y[j_1] + Y[j_2] - Y[i_1] - Y[i_2]) / 3
        still = np.where(np.isfinite(spd), spd < p.still_speed_mps, full & (np.hypot(mdx, mdy) < p.still_move_m))
        still &= fin
        # the last moving row at or before each row (its piece is what a standing vehicle keeps)
        last_src = np.maximum.accumulate(np.where(~still, idx, -1))
        has_prev = idx > gs
        # in blocks of rows, so the candidate temporaries stay in cache; every quantity of a
        # row depends only on its own candidates and on earlier rows, so blocks give the same result
        pieces = []
        for b0 in range(0, len(fw), self._MATCH_BLOCK):
            pieces.append(self._match_block(K, fw[b0:b0 + self._MATCH_BLOCK], gs, i_1, has_prev, still, last_src))
        if self.point_log is not None:
            self.point_log.append((K["row"][fw].copy(), np.concatenate(pieces)))

    #: Rows matched at once (candidates of ~8 sub-segments each stay within a few MiB).
    _MATCH_BLOCK = 16_384

    def _match_block(self, K: dict[str, np.ndarray], f: np.ndarray, gs: np.ndarray, prv: np.ndarray,
                     has_prev: np.ndarray, still: np.ndarray, last_src: np.ndarray) -> np.ndarray:
        """Match the finalized rows ``f`` (ascending; earlier rows already matched); returns their pieces.

        First pass by distance and heading; second pass with the continuity
        bonus for the previous row's first-pass piece; a standing vehicle then
        keeps the piece it had when it last moved, if that piece is a candidate.
        """
        m = self.m
        c = m.candidates(K["sx"][f], K["sy"][f], block=len(f))
        score1 = m.heading_score(c, K["hx"][f], K["hy"][f])
        b1 = m.best(c, score1)
        cpiece = m.sub_piece[c.sub]
        K["fp"][f] = np.where(b1 >= 0, cpiece[np.maximum(b1, 0)] if len(cpiece) else -1, -1)
        prev_fp = np.where(has_prev[f], K["fp"][prv[f]], -1)
        score2 = score1 - m.params.continuity_bonus * ((cpiece == prev_fp[c.point]) & ~m.beyond_end(c))
        mt = m.resolve(c, m.best(c, score2))
        hold = K["hold"]
        st = still[f]
        hold[f] = np.where(st, -1, mt.piece)
        ls = last_src[f]
        held = np.where(ls >= gs[f], hold[np.maximum(ls, 0)], -1)
        sw = st & (held >= 0)
        if sw.any():
            # re-choose only for those points (the others' scores are unchanged)
            sel = np.flatnonzero(sw[c.point])
            cs = c.subset(sel)
            stay = held[cs.point] == cpiece[sel]
            ms = m.resolve(cs, m.best(cs, score2[sel] - 1.0e4 * stay))
            mt.piece[sw], mt.sub[sw], mt.pos_m[sw], mt.dist_m[sw] = ms.piece[sw], ms.sub[sw], ms.pos_m[sw], ms.dist_m[sw]
            hold[f[sw]] = held[sw]
        K["piece"][f], K["sub"][f], K["pos"][f] = mt.piece, mt.sub, mt.pos_m
        return mt.piece

    def _add_contributions(self, c_piece: np.ndarray, c_sub: np.ndarray, c_um: np.ndarray,
                           ent: np.ndarray) -> None:
        """Micrometres ``c_um`` on pieces ``c_piece`` (sub-segments ``c_sub``, for the zone and
        sub-zones) into the totals, per enterprise code ``ent`` (0 = unknown enterprise)."""
        m, tot = self.m, self.totals
        if not len(c_piece):
            return
        zcols = getattr(self, "_zone_cols", None)
        if zcols is None or not zcols[0].flags.writeable:
            # own writeable copies: a matcher sent to a Dask worker arrives read-only, which would be
            # another signature of the kernel (another compile)
            zcols = self._zone_cols = (np.array(m.sub_zone_index, dtype=np.int64),
                                       np.array(m.sub_in_zone, dtype=np.bool_))
        i64 = np.int64
        n_e = len(self.enterprise_names) + 1
        zone, count, e_start, e_piece, e_um = _sum_contributions(
            *(np.ascontiguousarray(a, dtype=i64) for a in (c_piece, c_sub, c_um, ent)), *zcols, n_e,
            tot.piece_um, tot.subzone_um)
        tot.zone_um += int(zone)
        for e in np.flatnonzero(count).tolist():
            name = self.enterprise_names[e - 1] if e > 0 else "(unknown)"
            arr = tot.enterprise_piece_um.get(name)
            if arr is None:
                arr = tot.enterprise_piece_um[name] = np.zeros(m.n_pieces, dtype=np.int64)
            at = slice(e_start[e], e_start[e + 1])
            arr[e_piece[at]] += e_um[at]

    def _pairs_and_totals(self, K: dict[str, np.ndarray], fw: np.ndarray, gs: np.ndarray, idx: np.ndarray) -> None:
        """Attribute the pairs that end at the finalized rows ``fw``; add to the totals."""
        p, m, tot = self.p, self.m, self.totals
        piece, pos, sub = K["piece"], K["pos"], K["sub"]
        pi = fw[idx[fw] > gs[fw]]
        a = pi - 1
        dt_ns = K["t"][pi] - K["t"][a]
        gap = dt_ns > int(p.max_gap_s * 1e9)
        d_straight = np.hypot(K["x"][pi] - K["x"][a], K["y"][pi] - K["y"][a])
        pa_, pb_ = piece[a], piece[pi]
        both = (pa_ >= 0) & (pb_ >= 0) & ~gap
        # same piece: signed distance along it in the direction of travel
        si = np.flatnonzero(both & (pa_ == pb_))
        piece_s = pb_[si]
        delta = (pos[pi[si]] - pos[a[si]]) * m.piece_scale[piece_s]
        sub_b = sub[pi[si]]
        cosv = K["hx"][pi[si]] * m.ux[sub_b] + K["hy"][pi[si]] * m.uy[sub_b]
        dirn = np.where(m.piece_oneway[piece_s], 1.0,
                        np.where(np.isfinite(cosv) & (cosv != 0), np.sign(np.nan_to_num(cosv)), np.sign(delta)))
        contrib_same = dirn * delta
        # two pieces: through their shared node when plausible, else the straight distance halved
        di = np.flatnonzero(both & (pa_ != pb_))
        A, B = pa_[di], pb_[di]
        posA, posB = pos[a[di]], pos[pi[di]]
        lenA, lenB = m.piece_proj_len[A], m.piece_proj_len[B]
        best_cost = np.full(len(di), np.inf)
        cA = np.zeros(len(di))
        cB = np.zeros(len(di))
        for nodeA, endA in ((m.piece_u[A], 0.0), (m.piece_v[A], 1.0)):
            for nodeB, endB in ((m.piece_u[B], 0.0), (m.piece_v[B], 1.0)):
                da = np.abs(endA * lenA - posA)
                db = np.abs(posB - endB * lenB)
                better = (nodeA == nodeB) & (da + db < best_cost)
                best_cost = np.where(better, da + db, best_cost)
                cA = np.where(better, da, cA)
                cB = np.where(better, db, cB)
        # a hop between two pieces that fork at a shallow angle is not a drive back to the fork
        connected = np.isfinite(best_cost) & (
            best_cost * np.minimum(m.piece_scale[A], m.piece_scale[B])
            <= np.sqrt(2.0) * d_straight[di] + p.detour_slack_m)
        half = d_straight[di] / 2.0
        mA = np.where(connected, cA * m.piece_scale[A], half)
        mB = np.where(connected, cB * m.piece_scale[B], half)
        tot.unconnected_pairs += int((~connected).sum())

        c_piece = np.concatenate([piece_s, A, B])
        c_sub = np.concatenate([sub_b, sub[a[di]], sub[pi[di]]])
        c_um = np.rint(np.concatenate([contrib_same, mA, mB]) * UM).astype(np.int64)
        c_at = np.concatenate([pi[si], pi[di], pi[di]])  # the pair's end row
        self._add_contributions(c_piece, c_sub, c_um, K["ent"][c_at] + 1)
        matched = fw[piece[fw] >= 0]
        tot.piece_points += np.bincount(piece[matched], minlength=m.n_pieces)
        # per vehicle
        veh = K["veh"]
        nv = len(self.vehicle_names)
        off = ~gap & ~both
        per = {
            "matched_um": np.bincount(veh[c_at], weights=c_um, minlength=nv),
            "offnet_um": np.bincount(veh[pi[off]], weights=np.rint(d_straight[off] * UM), minlength=nv),
            "gps_um": np.bincount(veh[pi[~gap]], weights=np.rint(d_straight[~gap] * UM), minlength=nv),
            "gap_pairs": np.bincount(veh[pi[gap]], minlength=nv),
            "driving_ns": np.bincount(veh[pi[~gap]], weights=dt_ns[~gap].astype(np.float64), minlength=nv),
            "points": np.bincount(veh[fw], minlength=nv),
            "matched_points": np.bincount(veh[matched], minlength=nv),
        }
        vf = veh[fw]
        if len(vf) == 0:
            return
        starts = np.flatnonzero(np.r_[True, vf[1:] != vf[:-1]])
        ends = np.r_[starts[1:], len(vf)] - 1
        tf = K["t"][fw]
        ef = K["ent"][fw]
        for s_, e_ in zip(starts, ends):
            code = int(vf[s_])
            st = self._vehicle(code)
            for k_, arr in per.items():
                st[k_] += int(arr[code])
            t0, t1 = int(tf[s_]), int(tf[e_])
            st["first_ns"] = t0 if st["first_ns"] is None else min(st["first_ns"], t0)
            st["last_ns"] = t1 if st["last_ns"] is None else max(st["last_ns"], t1)
            if st["enterprise"] is None:
                st["enterprise"] = self.enterprise_names[ef[s_]] if ef[s_] >= 0 else "(unknown)"

    # ------------------------------------------------------------------ sequential filter
    def _sequential_filter(self, veh: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray,
                           ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact "compare with the last kept point" filter (one compiled pass: a log whose every
        row is flagged, e.g. one timestamp repeated throughout, costs no more than a clean one).

        A vehicle's first row and a context row (the last kept row of an earlier chunk) are kept;
        every other row is compared with the last kept row of its vehicle: a backwards or repeated
        timestamp, or a step faster than ``max_speed_mps`` (plus ``jump_slack_m``), is rejected and
        the next row is compared with the same kept row.
        """
        n = len(t)
        if n < 2:
            return np.ones(n, dtype=bool), np.zeros(n, dtype=np.int8)
        return _filter_kernel(np.ascontiguousarray(veh, dtype=np.int64), np.ascontiguousarray(t, dtype=np.int64),
                              np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                              np.ascontiguousarray(ctx, dtype=np.bool_), float(self.p.max_speed_mps),
                              float(self.p.jump_slack_m), _R["backwards timestamp"], _R["repeated timestamp"],
                              _R["jump over max speed"])


@kernel
def _filter_kernel(veh: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, ctx: np.ndarray, vmax: float,
                   slack: float, r_back: int, r_repeat: int, r_jump: int) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`MileageEngine._sequential_filter`: keep mask and reason code of each row."""
    n = len(t)
    keep = np.ones(n, dtype=np.bool_)
    why = np.zeros(n, dtype=np.int8)
    lk = -1  # last kept row of the current vehicle
    for i in range(n):
        if i == 0 or veh[i] != veh[i - 1]:
            lk = -1
        if lk < 0 or ctx[i]:
            lk = i
            continue
        dt = t[i] - t[lk]
        r = 0
        if dt < 0:
            r = r_back
        elif dt == 0:
            r = r_repeat
        elif np.hypot(x[i] - x[lk], y[i] - y[lk]) > vmax * dt / 1e9 + slack:
            r = r_jump
        if r:
            keep[i] = False
            why[i] = r
        else:
            lk = i
    return keep, why
