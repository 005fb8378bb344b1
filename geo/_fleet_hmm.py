"""HMM map matching of fleet logs along routed paths (Newson & Krumm 2009; FMM, Yang & Gidofalvi 2018).

States
------
Each fix gets the candidate pieces within the matcher's radius
(:mod:`geo._fleet_match`; the radius adapts to the log's estimated noise)
whose emission cost is within ``emission_cut`` of the nearest one's. A candidate is a *directed* state: a one-way piece in its own
direction, a two-way piece in both. ``off`` is the geodesic distance from the
state's entry node to the snapped location.

Costs (negative log-likelihoods)
--------------------------------
- emission: ``d^2 / (2 sigma^2)`` (``d`` the distance to the piece), plus
  ``heading_weight * (1 - cos)`` against the GPS heading where the vehicle moves.
- transition from state ``a`` at fix ``i`` to ``b`` at fix ``i+1``:
  ``|route - straight| / beta`` with ``route`` the distance along the road:

  * same directed state, ``b`` not behind ``a`` by more than ``back_tol``:
    ``off_b - off_a`` (a backward step, GPS jitter, costs ``back_penalty`` times
    its length more, which is what tells a one-way pair apart at 1 Hz);
  * the opposite direction of the same piece: a U-turn on the spot, plus
    ``uturn_penalty_m``;
  * otherwise: the rest of ``a``, the shortest path from ``a``'s exit node to
    ``b``'s entry node on the directed graph (one-way aware; a bounded search per
    source node to the distance the pair needs, cached like FMM's UBODT: see
    :class:`RouteTable`) and the start of ``b``.

  A route longer than ``route_factor`` x straight + slack, or faster than
  ``max_speed_mps`` (where times are known), is not plausible. The straight
  distance is de-biased for the noise of the step (``4 step_sigma^2``: a
  drifting error, AR(1) with ``noise_corr``, moves consecutive fixes together).
  A routed pair also pays turn costs, ``turn_penalty_m (1 - cos theta) / 2``
  where the route leaves ``a``'s piece and where it enters ``b``'s (as
  Meili's turn costs): a hop to a parallel street and back is four right angles.

Viterbi runs per window of ``window`` fixes of a vehicle (with ``overlap`` fixes
of context on both sides), all windows of a chunk at once (a compiled loop over the pairs of
fixes in row order). Windows are cut at fixed positions of each vehicle's sequence of
kept fixes, so results do not depend on chunks or Dask partitions. Where no
transition into a fix is plausible the track is broken there (a new segment),
reported with the vehicle and time, never a crash.

Outliers (as Newson & Krumm and Meili): a block of up to ``outlier_run`` matched fixes beside a
break (fixes no plausible transition reaches, e.g. an outlier next to another road; or reached
but not left, an outlier ahead) whose removal joins the fix before it to the fix after it by a
plausible transition is left out: that part of the window is matched again without it, the route
goes round it, and it is counted in ``Totals.outliers_skipped``. A longer run, or a block no
plausible transition bridges, stays a break (the vehicle left the network, or the data jumped).

Km along the matched path: every piece of the routed path between two fixes
gets its km (partial pieces at both ends, whole pieces in between). A standing
vehicle (GPS speed under ``still_speed_mps`` on logs of 5 s or denser, else the mean
position of the ``w`` fixes after within a noise-calibrated distance of that of
the ``w`` before, and within what a crawl of ``still_crawl_mps`` covers; where the noise drifts,
also the same over several of its correlation times, over which a drift stays bounded and a crawl
does not: :meth:`HmmEngine._standing`) does not take part in the matching: it adds no km whatever
the noise; it keeps the piece of its last matched fix. A pair of matched fixes
round a stop is a time gap only where the log itself has one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ._fleet_engine import UM, EngineParams, MileageEngine, Totals, _group_starts
from ._fleet_match import PieceMatcher
from ._fleet_routes import RouteTable
from ._jit import kernel



@dataclass(frozen=True)
class HmmParams:
    """Parameters of the HMM matcher (metres, seconds); ``sigma_m`` is the per-axis GPS noise."""

    sigma_m: float = 5.0
    interval_s: float = 1.0
    #: candidates whose emission cost exceeds the nearest one's by more than this are dropped
    emission_cut: float = 10.0
    beta_m: float | None = None
    back_penalty: float = 2.0
    uturn_penalty_m: float = 200.0
    heading_weight: float = 3.0
    route_bound_m: float = 3000.0
    route_factor: float = 4.0
    window: int = 256
    overlap: int = 32
    still_sigmas: float = 4.0
    #: speed (m/s) under which a vehicle may be called standing when the noise alone would allow more
    still_crawl_mps: float = 1.5
    #: typical speed (m/s) against which the noise is weighed for decimating dense noisy logs
    decimate_speed_mps: float = 8.0
    #: a matched step should be this many sigmas: shorter, noise makes backward steps and zig-zags
    #: over short pieces common (1 Hz, 8 m steps, 3.5 m noise: a step goes back 1 time in 20)
    decimate_sigmas: float = 6.0
    #: and, where a drifting error would allow shorter steps, at least this long (at the typical speed)
    decimate_min_step_m: float = 16.0
    #: a turn of angle theta where a route leaves a state's piece and where it enters the next
    #: state's costs ``turn_penalty_m (1 - cos theta) / 2`` (a right angle half of it), as
    #: Meili's turn costs: against excursions round one block on a dense grid
    turn_penalty_m: float = 30.0
    #: correlation of the GPS error of consecutive fixes (a drifting receiver, AR(1)); 0: independent.
    #: Two fixes ``k`` intervals apart then differ by ``sigma sqrt(2 (1 - corr^k))`` of noise per axis
    noise_corr: float = 0.0
    #: the transition scale grows with the step: beta of a pair is at least this fraction of its
    #: straight distance (Newson & Krumm fitted beta to |route - straight|, which grows with the step)
    beta_step: float = 0.0
    #: up to this many consecutive matched fixes that no plausible transition reaches, while the fix
    #: after them is reached from the fix before them, are outliers (left out, not a broken track)
    outlier_run: int = 3
    #: ... where the fix before and the fix after them are at most this far apart in time
    outlier_span_s: float = 60.0

    def step_sigma(self, lag: np.ndarray | float) -> np.ndarray | float:
        """Per-axis noise of the step between fixes ``lag`` intervals apart, over sqrt 2 (sigma if independent)."""
        return self.sigma_m * np.sqrt(1.0 - self.noise_corr ** np.maximum(lag, 0.0))

    @property
    def beta(self) -> float:
        return self.beta_m if self.beta_m is not None else max(4.0, 1.0 * self.sigma_m)

    @property
    def back_tol(self) -> float:
        return 4.0 * self.sigma_m + 10.0

    @property
    def slack(self) -> float:
        return 6.0 * self.sigma_m + 50.0

    @property
    def decimate(self) -> int:
        """Match every k-th fix: a step of a dense log should be larger than ~3 sigma of noise."""
        # the longest step of <= decimate_sigmas of the step's own noise (a drifting error moves
        # consecutive fixes together: less noise in a step than in a fix)
        k = np.arange(1, 31)
        step = k * self.decimate_speed_mps * max(self.interval_s, 0.1)
        ok = step <= self.decimate_sigmas * self.step_sigma(k)
        k_step = int(k[ok].max()) if ok.any() else 1
        # but no shorter than decimate_min_step_m where independent noise of that sigma would have
        # allowed it (finer steps add work, not km)
        k_white = int(k[step <= self.decimate_sigmas * self.sigma_m].max()) if step[0] <= self.decimate_sigmas * self.sigma_m else 1
        k_min = int(k[step <= self.decimate_min_step_m].max()) if step[0] <= self.decimate_min_step_m else 1
        return max(k_step, min(k_white, k_min))

    @property
    def still_window(self) -> int:
        """Fixes on each side compared for standing still: about 20 s (a moving vehicle's mean
        moves ~ 20 s x its speed, the noise of a mean shrinks with the fixes in it)."""
        return int(np.clip(round(20.0 / max(self.interval_s, 0.1)), 1, 20))

    #: where the noise drifts (AR(1) with a long correlation time), standing is also tested over this
    #: many correlation times on each side: a drift's displacement is bounded (a few sigma whatever
    #: the horizon) while a crawl's grows with time, so over a long horizon the two separate
    still_corr_times: float = 5.0
    #: at most this many fixes on each side for that long standing test
    still_long_max: int = 160
    #: the long test speaks only where its noise tolerance is at most this fraction of what a crawl
    #: at ``still_crawl_mps`` covers between its two means (a crawl round a bend: less chord than path)
    still_long_margin: float = 0.5
    #: and each of its sides' two halves agree within this many sigmas of their noise (a there-and-back
    #: has its two means together at the turn; a guard, looser than the test: 4 checks must all pass)
    still_halves_sigmas: float = 6.0

    @property
    def still_long_window(self) -> int:
        """Fixes on each side of the long standing test: the fewest (at least ``still_corr_times``
        correlation times of the noise, ``-1 / ln noise_corr`` fixes) whose noise tolerance is within
        ``still_long_margin`` of what a crawl covers between the two means; 0 (no long test) where the
        noise is independent or briefly correlated (the short test covers it) or no horizon up to
        ``still_long_max`` fixes tells a crawl from the drift."""
        corr = round(self.noise_corr, 3)
        if not 0.0 < corr < 1.0 or self.still_crawl_mps <= 0:
            return 0
        w0 = int(np.ceil(self.still_corr_times / -np.log(corr)))
        if w0 <= self.still_window:
            return 0
        k = np.arange(w0, self.still_long_max + 1)
        ok = (self.still_sigmas * self.sigma_m * np.sqrt(_mean_diff_var_ar1(corr, k, k))
              <= self.still_long_margin * self.still_crawl_mps * k * max(self.interval_s, 0.1))
        return int(k[ok][0]) if ok.any() else 0

    @property
    def still_horizon(self) -> int:
        """Fixes on each side that the standing tests of a fix read."""
        return max(self.still_window, self.still_long_window)


@functools.lru_cache(maxsize=64)
def _mean_diff_var(corr: float, w: int) -> np.ndarray:
    """``V[nb, nf]``: variance (in sigma^2, per axis) of the mean of the ``nf`` fixes after a fix less
    the mean of the ``nb`` before it, for AR(1) noise of correlation ``corr`` between consecutive
    fixes (``1/nb + 1/nf`` where independent); ``inf`` where either side is empty."""
    V = np.full((w + 1, w + 1), np.inf)
    for nb in range(1, w + 1):
        for nf in range(1, w + 1):
            pos = np.r_[np.arange(-nb, 0), np.arange(1, nf + 1)]
            c = np.r_[np.full(nb, -1.0 / nb), np.full(nf, 1.0 / nf)]
            V[nb, nf] = float(c @ (corr ** np.abs(pos[:, None] - pos[None, :])) @ c)
    return V


def _mean_diff_var_ar1(corr: float, nb: np.ndarray, nf: np.ndarray) -> np.ndarray:
    """:func:`_mean_diff_var` in closed form, for any ``nb``, ``nf`` (arrays; ``inf`` where either is 0).

    With ``S(n) = sum_ij corr^|i-j|`` over ``n`` consecutive fixes and ``G(n) = corr + ... + corr^n``
    (the fix itself lies between the two runs): ``S(nb)/nb^2 + S(nf)/nf^2 - 2 G(nb) G(nf) / (nb nf)``.
    """
    r = float(corr)
    nb = np.asarray(nb, dtype=np.float64)
    nf = np.asarray(nf, dtype=np.float64)

    def S(k: np.ndarray) -> np.ndarray:
        return k * (1.0 + r) / (1.0 - r) - 2.0 * r * (1.0 - r ** k) / (1.0 - r) ** 2

    def G(k: np.ndarray) -> np.ndarray:
        return r * (1.0 - r ** k) / (1.0 - r)

    with np.errstate(invalid="ignore", divide="ignore"):
        v = S(nb) / nb**2 + S(nf) / nf**2 - 2.0 * G(nb) * G(nf) / (nb * nf)
    return np.where((nb > 0) & (nf > 0), v, np.inf)


@kernel
def _viterbi(pa: np.ndarray, pb: np.ndarray, st_start: np.ndarray, st_cnt: np.ndarray, cost: np.ndarray,
             emis: np.ndarray, Hh: np.ndarray, win: np.ndarray, prevH: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Viterbi over the windows of a group, and the backtrack from each segment's last fix.

    Parameters
    ----------
    pa, pb : int64 arrays
        The pairs of consecutive matched fixes (rows), ``pb`` increasing; pair ``j``'s
        transitions are ``cost[off_j + b * na + a]`` (b-major), ``off_j`` the running sum of
        ``na * nb``.
    st_start, st_cnt : int64 arrays
        Per row, its first state and its number of states.
    cost, emis : float64 arrays
        Transition cost per pair of states, emission cost per state.
    Hh, win, prevH : int64 arrays
        The matched fixes with states (rows, increasing), the window of each row, and
        the previous matched fix of each row in its window (-1: none).

    Returns
    -------
    chosen : int64 array
        Per row, its state on the best path (-1: none).
    seg_start : bool array
        Per row, whether a segment starts there (no state is plausibly reached).
    """
    n, ns = len(st_cnt), len(emis)
    score = emis.copy()
    bp = np.full(ns, -1, dtype=np.int64)
    has_bp = np.zeros(n, dtype=np.bool_)
    off = 0
    # in row order: a fix's predecessor is an earlier row of its window, so its scores are final
    for j in range(len(pa)):
        a0, na = st_start[pa[j]], st_cnt[pa[j]]
        b0, nb = st_start[pb[j]], st_cnt[pb[j]]
        any_ok = False
        for b in range(nb):
            # the minimum (NaN wins, as numpy's) and the first incoming state that attains it
            k = off + b * na
            mn = score[a0] + cost[k]
            best = a0
            for a in range(1, na):
                v = score[a0 + a] + cost[k + a]
                if mn != mn:
                    break
                if v != v or v < mn:
                    mn = v
                    best = a0 + a
            if mn != mn:
                best = -1
            score[b0 + b] = mn  # (the minimum until the fix is done: no pair of this fix reads it)
            bp[b0 + b] = best
            any_ok = any_ok or np.isfinite(mn)
        # a fix none of whose states can be reached starts a new segment (emission only)
        for b in range(b0, b0 + nb):
            mn = score[b]
            score[b] = mn + emis[b] if any_ok else emis[b]
            if not (any_ok and np.isfinite(mn)):
                bp[b] = -1
            elif bp[b] >= 0:
                has_bp[pb[j]] = True
        off += na * nb
    chosen = np.full(n, -1, dtype=np.int64)
    seg_start = np.zeros(n, dtype=np.bool_)
    for f in Hh:
        seg_start[f] = not has_bp[f]
    nh = len(Hh)
    for i in range(nh):
        f = Hh[i]
        if i + 1 < nh and win[Hh[i + 1]] == win[f] and not seg_start[Hh[i + 1]]:
            continue  # not a segment's last fix
        # its best state (the first of the minimum), then back step by step
        s0 = st_start[f]
        mn = score[s0]
        best = s0
        for s in range(s0 + 1, s0 + st_cnt[f]):
            v = score[s]
            if mn != mn:
                break
            if v != v or v < mn:
                mn = v
                best = s
        chosen[f] = best if mn == mn else -1
        cur = f
        while not seg_start[cur]:
            prev = prevH[cur]
            chosen[prev] = bp[chosen[cur]]
            cur = prev
    return chosen, seg_start


@kernel
def _longest_steps(t: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Longest time step (float64 ns) between consecutive rows ``pa+1 .. pb`` of each pair
    (``pa < pb``): a pair of matched fixes round a stop spans the stop, not a gap."""
    out = np.zeros(len(pa))
    for j in range(len(pa)):
        mx = float(t[pa[j] + 1] - t[pa[j]])
        for r in range(pa[j] + 2, pb[j] + 1):
            mx = max(mx, float(t[r] - t[r - 1]))
        out[j] = mx
    return out


@kernel
def _fix_pieces(chosen: np.ndarray, s_piece: np.ndarray, H: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Piece of every row: its chosen state's; a row left out of the matching (not in ``H``) that of
    the last row of ``H`` before it in its window, where that has none (or there is none) the
    first after it; -1 where neither has one.

    Parameters
    ----------
    chosen : int64 array
        State of each row (-1: none).
    s_piece : int64 array
        Piece of each state.
    H : int64 array
        The rows that took part in the matching.
    win : int64 array
        Window of each row (rows of a window are consecutive).
    """
    n = len(chosen)
    own = np.full(n, -1, dtype=np.int64)
    for r in range(n):
        if chosen[r] >= 0:
            own[r] = s_piece[chosen[r]]
    inH = np.zeros(n, dtype=np.bool_)
    for r in H:
        inH[r] = True
    out = own.copy()
    last = -1
    for r in range(n):
        if r == 0 or win[r] != win[r - 1]:
            last = -1
        if inH[r]:
            last = r
        else:
            out[r] = own[last] if last >= 0 else -1
    nxt = -1
    for r in range(n - 1, -1, -1):
        if r == n - 1 or win[r] != win[r + 1]:
            nxt = -1
        if inH[r]:
            nxt = r
        elif out[r] < 0 and nxt >= 0:
            out[r] = own[nxt]
    return out


@kernel
def _vehicle_sums(fw: np.ndarray, win: np.ndarray, veh: np.ndarray, ent: np.ndarray, t: np.ndarray,
                  x: np.ndarray, y: np.ndarray, untimed: np.ndarray, piece_fix: np.ndarray, c_at: np.ndarray,
                  c_um: np.ndarray, off_at: np.ndarray, off_d: np.ndarray, nv: int, max_gap_ns: int,
                  piece_points: np.ndarray, um: float) -> tuple:
    """Per-vehicle sums of the committed rows ``fw`` (ascending) and their pairs; ``um``: micrometres
    per metre (an argument, not the other module's constant: numba's disk cache would not see it change).

    Parameters
    ----------
    fw : int64 array
        The committed rows; a row's pair is with the row before it in its window (``win``).
    veh, ent, t, x, y, untimed, piece_fix : arrays per row
        Vehicle and enterprise codes (int64), time (int64 ns), position (float64 m), whether
        the row is untimed, piece (int64, -1: none).
    c_at, c_um : int64 arrays
        Per contribution, the row its pair ends at and its micrometres.
    off_at, off_d : arrays
        Per off-network pair, the row it ends at (int64) and its straight distance (float64 m).
    nv, max_gap_ns : int
        Number of vehicle codes; longest step (ns) that is no time gap.
    piece_points : int64 array
        Matched rows per piece, added to in place.

    Returns
    -------
    fsum : float64 array (4, nv)
        matched, off-network and GPS micrometres, driving ns (each summed in float64 in row
        order, as ``np.bincount`` with weights).
    cnt : int64 array (3, nv)
        Time gaps, rows, matched rows.
    present, untimed_any : bool arrays (nv)
        Vehicles with rows in ``fw``, and those with an untimed one.
    t_lo, t_hi, e_first : int64 arrays (nv)
        First and last time of a vehicle's rows, enterprise of its first row.
    """
    fsum = np.zeros((4, nv))
    cnt = np.zeros((3, nv), dtype=np.int64)
    present = np.zeros(nv, dtype=np.bool_)
    unt_any = np.zeros(nv, dtype=np.bool_)
    t_lo = np.zeros(nv, dtype=np.int64)
    t_hi = np.zeros(nv, dtype=np.int64)
    e_first = np.zeros(nv, dtype=np.int64)
    for i in range(len(c_at)):
        fsum[0, veh[c_at[i]]] += float(c_um[i])
    for i in range(len(off_at)):
        fsum[1, veh[off_at[i]]] += np.rint(off_d[i] * um)
    for r in fw:
        v = veh[r]
        cnt[1, v] += 1
        if piece_fix[r] >= 0:
            cnt[2, v] += 1
            piece_points[piece_fix[r]] += 1
        if not present[v]:
            present[v] = True
            t_lo[v], t_hi[v], e_first[v] = t[r], t[r], ent[r]
        else:
            t_lo[v], t_hi[v] = min(t_lo[v], t[r]), max(t_hi[v], t[r])
        unt_any[v] |= untimed[r]
        if r > 0 and win[r] == win[r - 1]:
            dt = t[r] - t[r - 1]
            timed = not untimed[r]
            if timed and dt > max_gap_ns:
                cnt[0, v] += 1
            else:
                fsum[2, v] += np.rint(math.hypot(x[r] - x[r - 1], y[r] - y[r - 1]) * um)
                if timed:
                    fsum[3, v] += float(dt)
    return fsum, cnt, present, unt_any, t_lo, t_hi, e_first


@kernel
def _chosen_pairs(pa: np.ndarray, pb: np.ndarray, chosen: np.ndarray, seg_start: np.ndarray,
                  pair_at: np.ndarray, st_start: np.ndarray, st_cnt: np.ndarray, fwd: np.ndarray,
                  use_rev: np.ndarray, route: np.ndarray, delta: np.ndarray, r_rev: np.ndarray,
                  route_len: np.ndarray, s_piece: np.ndarray, s_sub: np.ndarray, L: np.ndarray,
                  off: np.ndarray, s_exit: np.ndarray, s_entry: np.ndarray) -> tuple:
    """The contributions of the chosen states of the pairs of matched fixes ``pa`` -> ``pb``.

    Parameters
    ----------
    pa, pb : int64 arrays
        The pairs (rows).
    chosen, seg_start : arrays per row
        Its state on the best path (int64, -1: none), whether a segment starts there.
    pair_at, st_start, st_cnt : int64 arrays per row
        Where the pairs of states ending at the row start in the pair table (-1: none), its
        first state and number of states.
    fwd, use_rev, route : bool arrays; delta, r_rev, route_len : float64 arrays
        The pair table (see :meth:`HmmEngine._pair_routes`).
    s_piece, s_sub, s_exit, s_entry : int64 arrays; L, off : float64 arrays
        Per state: piece, sub-segment, exit and entry node, piece length and offset (m).

    Returns
    -------
    both : bool array
        Per pair, whether both fixes have a chosen state and the track goes on.
    c_piece, c_sub, c_m, c_at : arrays
        The contributions (piece, sub-segment, metres, row of the pair's end): same state
        (signed advance), U-turn on the piece, then the routed pairs' rest of the first
        piece and start of the last, in that order.
    ex, en, d_nodes, at_r : arrays
        Per routed pair: exit and entry node, the node-to-node length asked for, row of its end.
    """
    n = len(pa)
    both = np.zeros(n, dtype=np.bool_)
    k = np.empty(n, dtype=np.int64)
    nf = nu = nr = 0
    for j in range(n):
        a, b = pa[j], pb[j]
        both[j] = chosen[a] >= 0 and chosen[b] >= 0 and not seg_start[b]
        if both[j]:
            # pair (sa, sb) of fixes (a, b) is at pair_at[b] + (sb - st_start[b]) * st_cnt[a] + (sa - st_start[a])
            k[j] = pair_at[b] + (chosen[b] - st_start[b]) * st_cnt[a] + (chosen[a] - st_start[a])
            nf += fwd[k[j]]
            nu += use_rev[k[j]]
            nr += route[k[j]]
    m = nf + nu + 2 * nr
    c_piece = np.empty(m, dtype=np.int64)
    c_sub = np.empty(m, dtype=np.int64)
    c_m = np.empty(m)
    c_at = np.empty(m, dtype=np.int64)
    ex = np.empty(nr, dtype=np.int64)
    en = np.empty(nr, dtype=np.int64)
    d_nodes = np.empty(nr)
    at_r = np.empty(nr, dtype=np.int64)
    i_f, i_u, i_r = 0, nf, nf + nu
    r = 0
    for j in range(n):
        if not both[j]:
            continue
        kj, sa, sb, at = k[j], chosen[pa[j]], chosen[pb[j]], pb[j]
        if fwd[kj]:  # same directed state: signed distance (standing jitter telescopes)
            c_piece[i_f], c_sub[i_f], c_m[i_f], c_at[i_f] = s_piece[sb], s_sub[sb], delta[kj], at
            i_f += 1
        if use_rev[kj]:
            c_piece[i_u], c_sub[i_u], c_m[i_u], c_at[i_u] = s_piece[sb], s_sub[sb], r_rev[kj], at
            i_u += 1
        if route[kj]:
            rest_a = L[sa] - off[sa]
            c_piece[i_r], c_sub[i_r], c_m[i_r], c_at[i_r] = s_piece[sa], s_sub[sa], rest_a, at
            i_b = i_r + nr
            c_piece[i_b], c_sub[i_b], c_m[i_b], c_at[i_b] = s_piece[sb], s_sub[sb], off[sb], at
            i_r += 1
            # (the node-to-node part of the route: the length its search was asked for)
            ex[r], en[r], d_nodes[r], at_r[r] = s_exit[sa], s_entry[sb], route_len[kj] - rest_a - off[sb] + 1e-6, at
            r += 1
    return both, c_piece, c_sub, c_m, c_at, ex, en, d_nodes, at_r


# ---------------------------------------------------------------- kernels of the transitions
# The pairs of consecutive matched fixes (every state to every state: millions per group of
# windows) were dozens of numpy passes, each a gathered temporary of the size of the pairs; these
# loops do each pair once. Same IEEE operations in the same order as the numpy code they replaced
# (bit-identical costs): the pow of the step's noise stays in numpy, once per pair of fixes.
# Each argument is passed in one dtype (cast at the call), so each kernel compiles once.


def _i64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _f64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _b(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.bool_)


def _states(S: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state arrays of ``S`` as the kernels take them (int64 ids, float64 metres)."""
    return {k: (_f64(v) if k in ("off", "pos", "L") else _i64(v)) for k, v in S.items()}


@njit(inline="always")
def _crow_le(node_x: np.ndarray, node_y: np.ndarray, a: int, b: int, base: float, lim: float) -> bool:
    """Whether ``base + 0.99 * hypot(...) <= lim`` for the straight line from node ``a`` to node ``b``
    (a lower bound of the route: the line less 1 % for the projection's scale against geodesic piece
    lengths), exactly as computed with the C library's ``hypot`` (numba's and numpy's), mostly
    without it (14 ns a call, millions of pairs).

    ``q = sqrt(x*x + y*y)`` is within 3e-16 of the true length, as ``hypot`` is (within an ulp):
    ``hypot`` lies in ``[q (1 - 1e-12), q (1 + 1e-12) + 1e-200]``, and since rounding is monotone so
    does ``base + 0.99 * hypot`` between the same sums of the two bounds; only where ``lim`` falls
    between them (a band of 1e-12 relative) is ``hypot`` itself called. (Here, beside the kernels
    that inline it: numba's disk cache does not see a change in another module's function.)
    """
    x, y = node_x[a] - node_x[b], node_y[a] - node_y[b]
    q = math.sqrt(x * x + y * y)
    if base + 0.99 * (q * (1.0 - 1e-12)) > lim:
        return False
    if base + 0.99 * (q * (1.0 + 1e-12) + 1e-200) <= lim:
        return True
    return base + 0.99 * math.hypot(x, y) <= lim


@kernel
def _pair_states(pa: np.ndarray, pb: np.ndarray, st_start: np.ndarray,
                 st_cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every state of fix ``pa[k]`` to every state of fix ``pb[k]``, b-major (the incoming pairs of
    each state of ``pb[k]`` contiguous, its ``a`` states in order).

    Returns
    -------
    prp, sa, sb : int64 arrays, one row per pair of states
        The pair of fixes ``k`` and the two states.
    """
    tot = 0
    for k in range(len(pa)):
        tot += st_cnt[pa[k]] * st_cnt[pb[k]]
    prp = np.empty(tot, np.int64)
    sa = np.empty(tot, np.int64)
    sb = np.empty(tot, np.int64)
    i = 0
    for k in range(len(pa)):
        na, nb = st_cnt[pa[k]], st_cnt[pb[k]]
        a0, b0 = st_start[pa[k]], st_start[pb[k]]
        for jb in range(nb):
            for ja in range(na):
                prp[i] = k
                sa[i] = a0 + ja
                sb[i] = b0 + jb
                i += 1
    return prp, sa, sb


@kernel
def _routes_pre(sa, sb, prp, d_st, dt_s, unt, piece, sdir, off, pos, L, s_exit, s_entry, node_x, node_y,
                back_tol, route_factor, slack, max_speed, uturn):  # type: ignore[no-untyped-def]
    """First part of :meth:`HmmEngine._pair_routes`: per pair of states (``d_st``, ``dt_s``, ``unt``
    per pair of fixes ``prp``) whether it is a step on the same directed state (``fwd``), a U-turn
    on the piece (``rev``), the signed advance, the U-turn distance; and the routes to look up (the
    pairs whose straight-line bound leaves room for a plausible route): pair, exit node, entry
    node, how far the route matters, the pieces' ends (m)."""
    n = len(sa)
    fwd = np.empty(n, np.bool_)
    rev = np.empty(n, np.bool_)
    delta = np.empty(n)
    r_rev = np.empty(n)
    look = np.empty(n, np.int64)
    ex = np.empty(n, np.int64)
    en = np.empty(n, np.int64)
    need = np.empty(n)
    ends = np.empty(n)
    k = 0
    for i in range(n):
        a, b = sa[i], sb[i]
        same = piece[a] == piece[b]
        dl = off[b] - off[a]
        dsame = sdir[a] == sdir[b]
        f = same and dsame and dl >= -back_tol
        fwd[i] = f
        rev[i] = same and not dsame
        delta[i] = dl
        rr = abs(pos[b] - pos[a])
        r_rev[i] = rr
        if f:
            continue
        e = (L[a] - off[a]) + off[b]
        j = prp[i]
        lim = route_factor * d_st[j] + slack
        if not unt[j]:
            dt = dt_s[j]
            t = max_speed * (dt if dt > 0.0 else 0.0) + slack
            if t < lim:
                lim = t
        x, y = s_exit[a], s_entry[b]
        if _crow_le(node_x, node_y, x, y, e, lim):
            nd = lim - e
            if rev[i]:
                # for a U-turn on the piece: to where the route stops being the shorter way
                alt = rr + uturn - e
                if alt > nd:
                    nd = alt
            look[k], ex[k], en[k], need[k], ends[k] = i, x, y, nd, e
            k += 1
    return fwd, rev, delta, r_rev, look[:k], ex[:k], en[:k], need[:k], ends[:k]


@kernel
def _turn_a_queries(look, sa, d_main, en_l, piece, oneway, s_entry, L, node_x, node_y,
                    tol):  # type: ignore[no-untyped-def]
    """Routes that may start by driving back along ``a``'s piece (a two-way one) to turn at its
    entry node: those whose straight-line bound leaves room for it (position in ``look``, source,
    target, how far the route matters)."""
    m = len(look)
    q = np.empty(m, np.int64)
    src = np.empty(m, np.int64)
    tgt = np.empty(m, np.int64)
    need = np.empty(m)
    c = 0
    for k in range(m):
        a = sa[look[k]]
        dm = d_main[k]
        if not np.isfinite(dm) or oneway[piece[a]]:
            continue
        La = L[a]
        if _crow_le(node_x, node_y, s_entry[a], en_l[k], La, dm + tol):
            q[c], src[c], tgt[c], need[c] = k, s_entry[a], en_l[k], dm - La + tol
            c += 1
    return q[:c], src[:c], tgt[:c], need[:c]


@kernel
def _turn_b_queries(look, sa, sb, d_main, ex_l, qa, dist_a, piece, oneway, s_exit, L, node_x, node_y,
                    tol):  # type: ignore[no-untyped-def]
    """Whether a looked-up route turns at ``a``'s entry node (``ta``, per position in ``look``), and
    the routes that may end by driving ``b``'s piece the wrong way to turn at its entry (as
    :func:`_turn_a_queries`, of those that do not turn at ``a``)."""
    m = len(look)
    ta = np.zeros(m, np.bool_)
    for c in range(len(qa)):
        k = qa[c]
        ta[k] = L[sa[look[k]]] + dist_a[c] <= d_main[k] + tol
    q = np.empty(m, np.int64)
    src = np.empty(m, np.int64)
    tgt = np.empty(m, np.int64)
    need = np.empty(m)
    c = 0
    for k in range(m):
        b = sb[look[k]]
        dm = d_main[k]
        if ta[k] or not np.isfinite(dm) or oneway[piece[b]]:
            continue
        Lb = L[b]
        if _crow_le(node_x, node_y, ex_l[k], s_exit[b], Lb, dm + tol):  # (a + b == b + a in IEEE)
            q[c], src[c], tgt[c], need[c] = k, ex_l[k], s_exit[b], dm - Lb + tol
            c += 1
    return ta, q[:c], src[:c], tgt[:c], need[:c]


@kernel
def _routes_final(sa, sb, fwd, rev, r_rev, look, ends, d_main, ta, qb, dist_b, piece, s_exit, s_entry, L,
                  uturn, tol):  # type: ignore[no-untyped-def]
    """Last part of :meth:`HmmEngine._pair_routes`: the routed distance (``inf`` where not looked
    up), and the masks ``use_rev`` (the U-turn on the piece is the shorter way), ``route`` and
    ``node_turn`` (a route with a U-turn at a node)."""
    n = len(sa)
    r_route = np.full(n, np.inf)
    end_turn = np.zeros(n, np.bool_)
    for k in range(len(look)):
        r_route[look[k]] = ends[k] + d_main[k]
        end_turn[look[k]] = ta[k]
    for c in range(len(qb)):
        k = qb[c]
        if dist_b[c] + L[sb[look[k]]] <= d_main[k] + tol:
            end_turn[look[k]] = True
    use_rev = np.empty(n, np.bool_)
    route = np.empty(n, np.bool_)
    node_turn = np.empty(n, np.bool_)
    for i in range(n):
        u = rev[i] and r_rev[i] + uturn < r_route[i]
        rt = not fwd[i] and not u
        use_rev[i] = u
        route[i] = rt
        # any U-turn at a node: at either end of the route, or on the same piece (to its end and back)
        node_turn[i] = rt and (end_turn[i] or (piece[sa[i]] == piece[sb[i]] and s_exit[sa[i]] == s_entry[sb[i]]))
    return r_route, use_rev, route, node_turn


@njit(inline="always")
def _plausible1(fwd: bool, r: float, d_st: float, dt_s: float, unt: bool, route_factor: float, slack: float,
                max_speed: float) -> bool:
    """:meth:`HmmEngine._plausible` of one transition."""
    return fwd or (r <= route_factor * d_st + slack
                   and (unt or r <= max_speed * (dt_s if dt_s > 0.0 else 0.0) + slack))


@kernel
def _plausible_many(fwd, r, d_st, dt_s, unt, route_factor, slack, max_speed):  # type: ignore[no-untyped-def]
    """:func:`_plausible1` of each transition."""
    out = np.empty(len(fwd), np.bool_)
    for i in range(len(fwd)):
        out[i] = _plausible1(fwd[i], r[i], d_st[i], dt_s[i], unt[i], route_factor, slack, max_speed)
    return out


@kernel
def _pair_costs(prp, sa, sb, fwd, use_rev, route, node_turn, delta, r_rev, r_route, d_st, dt_s, unt, straight,
                beta, piece, sdir, s_exit, s_entry, fx, fy, lx, ly, node_x, node_y, h_beta, back_penalty,
                uturn, turn_penalty, route_factor, slack, max_speed):  # type: ignore[no-untyped-def]
    """Transition cost of each pair of states (see the module docstring; ``inf`` where not
    plausible); ``d_st``, ``dt_s``, ``unt``, the de-biased ``straight`` distance and ``beta`` per
    pair of fixes ``prp``.

    A turn of angle theta where the route leaves ``a``'s piece (toward the chord from its exit
    node to ``b``'s entry node) and where it enters ``b``'s piece costs
    ``turn_penalty (1 - cos theta) / 2`` (where the two nodes are one: the change from piece to
    piece), on routed pairs without a U-turn at a node whose route is finite.
    """
    n = len(sa)
    out = np.empty(n)
    u_cost = uturn / h_beta
    for i in range(n):
        j = prp[i]
        f = fwd[i]
        r = abs(delta[i]) if f else (r_rev[i] if use_rev[i] else r_route[i])
        if not _plausible1(f, r, d_st[j], dt_s[j], unt[j], route_factor, slack, max_speed):
            out[i] = np.inf
            continue
        bj = beta[j]
        c = abs(r - straight[j]) / bj
        if f:
            # a backward step (GPS jitter) costs back_penalty times its length more
            mb = -delta[i]
            c = c + back_penalty * (mb if mb > 0.0 else 0.0) / bj
        if use_rev[i] or node_turn[i]:
            c = c + u_cost
        if turn_penalty > 0 and route[i] and not node_turn[i] and np.isfinite(r):
            # (inline: a call per pair with a dozen array arguments costs more than the turn)
            a, b = sa[i], sb[i]
            pa, pb = piece[a], piece[b]
            # heading of a at its exit, of b at its entry (a piece driven backwards: the other end, reversed)
            if sdir[a] > 0:
                ax, ay = lx[pa], ly[pa]
            else:
                ax, ay = -fx[pa], -fy[pa]
            if sdir[b] > 0:
                bx, by = fx[pb], fy[pb]
            else:
                bx, by = -lx[pb], -ly[pb]
            ex, en = s_exit[a], s_entry[b]
            cx, cy = node_x[en] - node_x[ex], node_y[en] - node_y[ex]
            Lc = np.hypot(cx, cy)
            if Lc > 1.0:
                ux, uy = cx / Lc, cy / Lc
                c1 = ax * ux + ay * uy
                c2 = ux * bx + uy * by
            else:
                c1 = ax * bx + ay * by
                c2 = 1.0
            c = c + turn_penalty * ((1.0 - c1) + (1.0 - c2)) / 2.0 / h_beta
        out[i] = c
    return out


# ---------------------------------------------------------------- the engine

#: window * _KEY + kept-index: one key per fix of a group of windows
_KEY = 1 << 40

class HmmEngine(MileageEngine):
    """:class:`~geo._fleet_engine.MileageEngine` with HMM matching along routed paths.

    Same input (``feed``/``finish``), bad-row checks and :class:`Totals`; the
    sequence of kept fixes of each vehicle is matched per window (see the
    module docstring).
    """

    def __init__(self, matcher: PieceMatcher, crs: str = "wgs84", params: EngineParams | None = None,
                 hmm: HmmParams | None = None, routes: RouteTable | None = None,
                 untimed: frozenset[str] = frozenset()) -> None:
        super().__init__(matcher, crs, params)
        self.h = hmm or HmmParams()
        self.routes = routes or RouteTable(matcher, self.h.route_bound_m)
        self.untimed = untimed
        #: per vehicle code: kept rows not yet dropped, kept-index of the first, next commit start
        self.buf: dict[int, dict[str, np.ndarray]] = {}
        self.base: dict[int, int] = {}
        self.next: dict[int, int] = {}
        self.last_kept: dict[int, dict[str, np.ndarray]] = {}
        #: U-turns at a node of the pairs of the last :meth:`_pair_routes` call
        #: windows to match again without their outliers, gathered over a drain's groups
        self._redo: list = []

    # ------------------------------------------------------------------ input
    def _process(self, new: dict[str, np.ndarray], final: bool) -> tuple[np.ndarray, np.ndarray]:
        nnew = len(new["t"])
        keep_new = np.ones(nnew, dtype=bool)
        why_new = np.zeros(nnew, dtype=np.int8)
        if nnew:
            # the rows per vehicle, each vehicle's last kept row (context) first, then its new rows
            # by row number: laid out directly (positions), and only the columns the filter reads
            order_new = np.lexsort((new["row"], new["veh"]))
            sv = new["veh"][order_new]
            gfirst = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
            vehs = sv[gfirst]
            got = [self.last_kept.get(c) for c in vehs.tolist()]
            has = np.array([c is not None for c in got], dtype=bool)
            upto = np.cumsum(has)  # context rows up to and including each vehicle's
            at_new = np.arange(nnew) + np.repeat(upto, np.diff(np.r_[gfirst, nnew]))  # sorted new -> S
            at_ctx = (gfirst + upto - 1)[has]
            ctx = [c for c in got if c is not None]
            ns_ = nnew + len(ctx)

            def laid(k: str) -> np.ndarray:
                a = np.empty(ns_, dtype=new[k].dtype)
                a[at_new] = new[k][order_new]
                if ctx:
                    a[at_ctx] = np.concatenate([c[k] for c in ctx])
                return a

            S = {k: laid(k) for k in ("veh", "t", "x", "y")}
            sctx = np.zeros(ns_, dtype=bool)
            sctx[at_ctx] = True
            t = S["t"]
            # ordered traces (no times): no time-based checks
            if self.untimed:
                ut = np.array([self.vehicle_names[c] in self.untimed for c in S["veh"].tolist()], dtype=bool)
                t = np.where(ut, _ordered_times(S["veh"]), t)
            keep, why = self._sequential_filter(S["veh"], t, S["x"], S["y"], sctx)
            pos_new = np.empty(nnew, dtype=np.int64)
            pos_new[order_new] = at_new
            keep_new, why_new = keep[pos_new], why[pos_new]
            # the kept new rows, in that order, straight from the new columns
            sel = order_new[keep[at_new]]
            K = {k: new[k][sel] for k in self._RAW}
            veh = K["veh"]
            if len(veh):
                starts = np.flatnonzero(np.r_[True, veh[1:] != veh[:-1]])
                ends = np.r_[starts[1:], len(veh)]
                for s_, e_ in zip(starts.tolist(), ends.tolist()):
                    code = int(veh[s_])
                    old = self.buf.get(code)
                    # (a copy, never a view: a view would keep the whole chunk's arrays alive for
                    # as long as the vehicle's last rows wait for their look-ahead)
                    self.buf[code] = ({k: v[s_:e_].copy() for k, v in K.items()} if old is None else
                                      {k: np.concatenate([old[k], v[s_:e_]]) for k, v in K.items()})
                    self.base.setdefault(code, 0)
                    self.next.setdefault(code, 0)
                    self.last_kept[code] = {k: v[e_ - 1:e_].copy() for k, v in K.items()}
        self._drain(final)
        return keep_new, why_new

    def finish(self) -> Totals:
        """Match the fixes still waiting for their look-ahead; return the totals."""
        self._drain(True)
        return self.totals

    #: Fixes matched at once (their candidates and state pairs: some tens of MiB).
    _GROUP_FIXES = 32_768

    # ------------------------------------------------------------------ windows
    def _drain(self, final: bool) -> None:
        W, L = self.h.window, self.h.overlap
        E = self.h.still_horizon
        jobs = []  # (code, lo, hi, commit_lo, commit_hi, ends the track) in kept-index
        for code, b in self.buf.items():
            total = self.base[code] + len(b["t"])
            nxt = self.next[code]
            # (and the standing tests' horizon beyond the window: see _standing)
            while total >= nxt + W + L + E or (final and total > nxt):
                jobs.append((code, max(0, nxt - L), min(total, nxt + W + L), nxt, min(total, nxt + W),
                             final and nxt + W + L >= total))
                nxt += W
            self.next[code] = nxt
        if not jobs:
            return
        # windows are independent: matched a group at a time, so the state pairs stay small
        group: list = []
        size = 0
        for j in jobs:
            group.append(j)
            size += j[2] - j[1]
            if size >= self._GROUP_FIXES:
                self._windows(group)
                group, size = [], 0
        if group:
            self._windows(group)
        self._redo_outliers()
        for code in {j[0] for j in jobs}:
            drop = max(0, self.next[code] - L - E - self.base[code])
            if drop:
                self.buf[code] = {k: v[drop:].copy() for k, v in self.buf[code].items()}
                self.base[code] += drop

    def _gather(self, code_: np.ndarray, lo_: np.ndarray, hi_: np.ndarray,
                keys: tuple[str, ...] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """The buffered rows ``lo_ .. hi_ - 1`` (kept-index) of vehicles ``code_``, range after range:
        the columns ``keys`` (all where ``None``), each row's range number and kept-index.

        Consecutive ranges of one vehicle (windows, which overlap) are one gather per column.
        """
        cnt = hi_ - lo_
        n = int(cnt.sum())
        rng = np.repeat(np.arange(len(cnt)), cnt)
        kidx = np.arange(n) - np.repeat(np.cumsum(cnt) - cnt, cnt) + np.repeat(lo_, cnt)
        runs = np.flatnonzero(np.r_[True, code_[1:] != code_[:-1]]) if len(cnt) else np.zeros(0, dtype=np.int64)
        row_at = np.r_[0, np.cumsum(cnt)]
        cols: dict[str, list[np.ndarray]] = {kk: [] for kk in keys or ()}
        for r0, r1 in zip(runs.tolist(), np.r_[runs[1:], len(cnt)].tolist()):
            code = int(code_[r0])
            b, base = self.buf[code], self.base[code]
            at = kidx[row_at[r0]:row_at[r1]] - base
            for kk in keys or tuple(b):
                cols.setdefault(kk, []).append(b[kk][at])
        return {kk: np.concatenate(v) if v else np.zeros(0) for kk, v in cols.items()}, rng, kidx

    def _standing(self, jobs: list[tuple[int, int, int, int, int, bool]]) -> np.ndarray:
        """Standing-still flags of the fixes of the windows ``jobs`` (rows as :meth:`_windows` lays them out).

        The short test: the mean position of the ``w`` fixes after a fix (``still_window``, about
        20 s) is within a noise-calibrated distance of that of the ``w`` before, and within what a
        crawl of ``still_crawl_mps`` covers between the two. Where the noise drifts with a long
        correlation time, that test alone fails (over 20 s a drift moves the means as much as a
        crawl would), so also the long test: the same over ``still_long_window`` fixes (several
        correlation times), with its own noise variance and crawl bound; a fix is standing if
        either says so. On logs of 5 s or denser with a GPS speed: the speed. Each fix is judged on
        its neighbourhood in the vehicle's whole sequence of kept fixes (up to ``still_horizon``
        fixes beyond the window are read from the buffer, which keeps them), so the flags do not
        depend on windows, chunks or partitions.
        """
        h, p = self.h, self.p
        J = np.array([j[:3] for j in jobs], dtype=np.int64).reshape(-1, 3)
        code_, lo_, hi_ = J.T
        if h.interval_s <= 5.0:
            spd_w = self._gather(code_, lo_, hi_, ("speed",))[0]["speed"]
            if np.isfinite(spd_w).all():
                return spd_w < p.still_speed_mps  # (the GPS speed decides every fix)
        E = h.still_horizon
        # each window with up to E fixes beyond it on both sides, as far as the buffer holds them
        base_ = np.array([self.base[c] for c in code_.tolist()], dtype=np.int64)
        blen_ = np.array([len(self.buf[c]["t"]) for c in code_.tolist()], dtype=np.int64)
        elo_, ehi_ = np.maximum(base_, lo_ - E), np.minimum(base_ + blen_, hi_ + E)
        G, win, ki = self._gather(code_, elo_, ehi_, ("x", "y", "t", "speed"))
        X, Y, T, spd = G["x"], G["y"], G["t"], G["speed"]
        inwin = (ki >= lo_[win]) & (ki < hi_[win])
        n = len(T)
        gs = _group_starts(win)
        ge = np.r_[np.flatnonzero(win[1:] != win[:-1]), n - 1]
        gend = np.repeat(ge, np.diff(np.r_[-1, ge]))
        idx = np.arange(n)
        cx, cy = np.r_[0.0, np.cumsum(X)], np.r_[0.0, np.cumsum(Y)]
        corr = round(h.noise_corr, 3)
        # where the long test takes the long stops, the short one leaves a crawl room for its noise
        crawl_f = h.still_long_margin if h.still_long_window else 1.0

        def halves_agree(a: np.ndarray, cnt: np.ndarray, V: np.ndarray) -> np.ndarray:
            # the mean of the first half of the fixes a .. a+cnt-1 within the noise of that of the second
            h1 = cnt // 2
            h2 = cnt - h1
            with np.errstate(invalid="ignore", divide="ignore"):
                d = np.hypot((cx[a + cnt] - cx[a + h1]) / h2 - (cx[a + h1] - cx[a]) / h1,
                             (cy[a + cnt] - cy[a + h1]) / h2 - (cy[a + h1] - cy[a]) / h1)
                tol_h = p.still_move_m + h.still_halves_sigmas * h.sigma_m * np.sqrt(V[h1, h2])
            return (h1 == 0) | (d < tol_h)

        def test(w: int, long: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            # mean of up to w fixes after vs up to w before, within the noise and a crawl
            nb_ = np.minimum(w, idx - gs)
            nf_ = np.minimum(w, gend - idx)
            i0 = idx - nb_
            i1 = idx + nf_ + 1
            with np.errstate(invalid="ignore", divide="ignore"):
                bx = (cx[idx] - cx[i0]) / nb_
                by = (cy[idx] - cy[i0]) / nb_
                ax_ = (cx[i1] - cx[idx + 1]) / nf_
                ay_ = (cy[i1] - cy[idx + 1]) / nf_
                moved = np.hypot(ax_ - bx, ay_ - by)
                # per-axis variance of the difference of the two means in sigma^2: 1/nb + 1/nf for
                # independent noise, more for a drifting error (its means average out less)
                k = np.arange(w + 1)
                V = _mean_diff_var_ar1(corr, k[:, None], k[None, :]) if long else _mean_diff_var(corr, w)
                var_f = V[np.clip(nb_, 0, w), np.clip(nf_, 0, w)]
                tol = p.still_move_m + h.still_sigmas * h.sigma_m * np.sqrt(var_f)
                # over half the time from the first fix before to the last after
                half_s = (T[np.minimum(i1 - 1, n - 1)] - T[np.maximum(i0, 0)]) / 2e9
                if long:
                    # it speaks only where the noise alone tells a crawl apart, with room for a crawl
                    # round a bend (less chord than path): not near a track's ends, where it has
                    # few fixes on one side (as still_long_window chooses the horizon)
                    ok = (h.still_sigmas * h.sigma_m * np.sqrt(var_f)
                          <= h.still_long_margin * h.still_crawl_mps * half_s) & (nb_ > 0) & (nf_ > 0)
                    # a there-and-back has its two means together at the turn: each side's own two
                    # halves must agree too (a standing vehicle's do, within their noise)
                    st = ok & (moved < tol) & halves_agree(i0, nb_, V) & halves_agree(idx + 1, nf_, V)
                    # near a track's ends: the verdict of the nearest fix where it speaks if its means
                    # reach the end (standing there: so are the fixes in its mean)
                    nxt_ok = np.minimum.accumulate(np.where(ok, idx, n)[::-1])[::-1]
                    prv_ok = np.maximum.accumulate(np.where(ok, idx, -1))
                    a = ~ok & (nxt_ok <= gend) & (np.minimum(nxt_ok, n - 1) - gs <= w)
                    st[a] = st[nxt_ok[a]]
                    b = ~ok & (prv_ok >= gs) & (gend - np.maximum(prv_ok, 0) <= w)
                    st[b] = st[prv_ok[b]]
                    return st, nb_, nf_
                # no more than a crawl covers between the two means: on a sparse noisy log (10 s, 30 m:
                # 90 m of tolerance) the noise bound alone calls every slow vehicle standing
                if h.still_crawl_mps > 0:
                    tol = np.minimum(tol, p.still_move_m + crawl_f * h.still_crawl_mps * half_s)
            return (nb_ > 0) & (nf_ > 0) & (moved < tol), nb_, nf_

        still_xy, nb_, nf_ = test(h.still_window, False)
        if h.still_long_window:
            still_xy |= test(h.still_long_window, True)[0]
        # a track's first and last fix: as their neighbour
        nxt1, prv1 = np.minimum(idx + 1, n - 1), np.maximum(idx - 1, 0)
        still_xy = np.where((nb_ == 0) & (nf_ > 0), still_xy[nxt1], still_xy)
        still_xy = np.where((nf_ == 0) & (nb_ > 0), still_xy[prv1], still_xy)
        # (GPS speed only on dense logs: on a sparse one a fix at a red light is a position like any other)
        still = np.where(np.isfinite(spd) & (h.interval_s <= 5.0), spd < p.still_speed_mps, still_xy)
        return still[inwin]

    def _windows(self, jobs: list[tuple[int, int, int, int, int, bool]],
                 drop: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Match and attribute a group of windows; ``drop``: (window, kept-index) of the fixes to
        leave out, the redo of windows with outliers (see :meth:`_outlier_runs`)."""
        h, p, m, R = self.h, self.p, self.m, self.routes
        # the windows' fixes one after the other: per run of windows of one vehicle, one gather of
        # each column of its buffer (windows overlap, so their rows repeat)
        J = np.array([j[:5] for j in jobs], dtype=np.int64).reshape(-1, 5)
        code_, lo_, hi_, c0_, c1_ = J.T
        P, win, kidx = self._gather(code_, lo_, hi_)
        n = len(win)
        P.update({"win": win, "kidx": kidx, "commit": (kidx >= c0_[win]) & (kidx < c1_[win]),
                  "last": np.array([j[5] for j in jobs], dtype=bool)[win] & (kidx == hi_[win] - 1)})
        gs = _group_starts(win)
        ge = np.r_[np.flatnonzero(win[1:] != win[:-1]), n - 1]
        gend = np.repeat(ge, np.diff(np.r_[-1, ge]))
        idx = np.arange(n)
        X, Y = P["x"], P["y"]
        untimed = np.zeros(n, dtype=bool)
        if self.untimed:
            names = self.vehicle_names
            untimed = np.array([names[c] in self.untimed for c in P["veh"].tolist()], dtype=bool)
        T = np.where(untimed, 0, P["t"])
        # ---- standing still (see _standing): each fix judged on its whole neighbourhood in the track
        still = self._standing(jobs)
        spd = P["speed"]
        # fixes that take part in the matching: the moving ones; where the noise is large against
        # a step, every k-th (by position in the vehicle's sequence, so the same in any chunking)
        # (and always the track's last fix, and the fixes on both sides of a time gap)
        tg = np.r_[np.diff(P["t"]) > 3e9 * h.decimate * h.interval_s, False]
        tg = (tg | np.r_[False, tg[:-1]]) & ~untimed
        H = np.flatnonzero(~still & ((P["kidx"] % h.decimate == 0) | P["last"] | tg))
        skipped = np.zeros(n, dtype=bool)  # outliers left out of the matching (counted where committed)
        if drop is not None:
            # the redo of windows with outliers next to another road: those fixes left out
            out_ = np.isin(win[H] * _KEY + P["kidx"][H], drop[0] * _KEY + drop[1])
            skipped[H[out_]] = True
            H = H[~out_]
        # ---- candidates: the nearest pieces of each matched fix, as directed states
        c = m.candidates(X[H], Y[H])
        # the GPS heading of each matched fix, where the vehicle moves (numpy's sin/cos, per fix)
        gh, sp_h = P["gh"][H], spd[H]
        use_h = np.isfinite(gh) & ~(np.isfinite(sp_h) & (sp_h < p.min_gps_heading_speed))
        rad = np.radians(np.where(use_h, gh, 0.0))
        (ns, s_pt, s_piece, s_sub, Lg, s_pos, s_off, s_exit, s_entry, emis, sdir, st_cnt,
         st_start) = _states_kernel(
            c.point, c.dist, c.sub, c.frac, H, n, float(2.0 * h.emission_cut * h.sigma_m ** 2),
            float(2.0 * h.sigma_m ** 2), float(h.heading_weight), use_h,
            np.sin(rad).astype(np.float64), np.cos(rad).astype(np.float64), m.sub_piece, m.sub_along,
            m.sub_len, m.piece_scale, m.piece_oneway, m.piece_length_m, R.pu, R.pv, m.ux, m.uy)
        s_pt, s_piece, s_sub, Lg, s_pos, s_off, s_exit, s_entry, emis, sdir = (
            a_[:ns] for a_ in (s_pt, s_piece, s_sub, Lg, s_pos, s_off, s_exit, s_entry, emis, sdir))
        # ---- pairs of consecutive matched fixes of a window, every state to every state
        # a lone fix without candidates between two with (an outlier beyond the radius) is left out:
        # the route goes from the fix before to the fix after, not twice the outlier's straight
        # distance off the network; a run of such fixes is driving off the network
        if len(H) > 2:
            noc = st_cnt[H] == 0
            w_ = win[H]
            lone = np.r_[False, noc[1:-1] & ~noc[:-2] & ~noc[2:] & (w_[1:-1] == w_[:-2]) & (w_[1:-1] == w_[2:]),
                         False]
            skipped[H[lone]] = True
            H = H[~lone]
        Hh = H[st_cnt[H] > 0]  # matched fixes with candidates
        prevH = np.full(n, -1, dtype=np.int64)
        # the previous matched fix (in H, with or without candidates) of the same window
        if len(H) > 1:
            sameH = win[H[1:]] == win[H[:-1]]
            prevH[H[1:][sameH]] = H[:-1][sameH]
        pb = Hh[(prevH[Hh] >= 0)]
        pa = prevH[pb]
        ok = st_cnt[pa] > 0
        pa, pb = pa[ok], pb[ok]
        na, nb = st_cnt[pa], st_cnt[pb]
        npair = na * nb
        # b-major: the incoming pairs of each state of b are contiguous
        prp, sa_, sb_ = _pair_states(_i64(pa), _i64(pb), _i64(st_start), _i64(st_cnt))
        # per pair of fixes (the pairs of states read them through prp)
        d_st = np.hypot(X[pb] - X[pa], Y[pb] - Y[pa])
        dt_s = (T[pb] - T[pa]) / 1e9
        unt = untimed[pb]
        S = {"piece": s_piece, "dir": sdir, "off": s_off, "pos": s_pos, "exit": s_exit, "entry": s_entry,
             "L": Lg}
        fwd, use_rev, route, delta, r_rev, r_route, node_turn = self._pair_routes(S, sa_, sb_, d_st, dt_s, unt, prp)
        # kept for the km of the chosen pairs: pair (sa, sb) of fixes (pa, pb) is at
        # off[pb] + (sb - st_start[pb]) * na + (sa - st_start[pa])
        pair_at = np.full(n, -1, dtype=np.int64)
        pair_at[pb] = np.cumsum(npair) - npair
        pairs = (pair_at, st_start, st_cnt, (fwd, use_rev, route, delta, r_rev, r_route))
        # the straight distance between two noisy fixes is biased long (E d^2 = step^2 + 4 sigma^2):
        # against it, a zig-zag over parallel short pieces looks likelier than the road driven
        # (2 x the per-axis variance of the step's noise, on both axes; a drifting error cancels in part)
        lag = np.where(unt, float(h.decimate), dt_s / max(h.interval_s, 1e-3))
        beta = np.maximum(h.beta, h.beta_step * d_st)
        straight = np.sqrt(np.maximum(d_st * d_st - 4.0 * h.step_sigma(lag) ** 2, 0.0))
        # |route - straight| / beta, a backward step's extra, a U-turn at a node as much as one on
        # the spot (else, on pieces shorter than the penalty, "to the end of the piece and back" is
        # a free U-turn: a zig-zag on a dense grid), the turn costs; inf where not plausible
        (fx, fy), (lx, ly) = self._end_dirs
        St = _states(S)
        cost = _pair_costs(prp, sa_, sb_, fwd, use_rev, route, node_turn, delta, r_rev, r_route,
                           _f64(d_st), _f64(dt_s), _b(unt), _f64(straight), _f64(beta),
                           St["piece"], St["dir"], St["exit"], St["entry"], fx, fy, lx, ly, R.node_x, R.node_y,
                           float(h.beta), float(h.back_penalty), float(h.uturn_penalty_m), float(h.turn_penalty_m),
                           float(h.route_factor), float(h.slack), float(p.max_speed_mps))
        # ---- Viterbi and backtrack (a compiled loop: per state, the best of its incoming pairs)
        i64, f64 = np.int64, np.float64
        chosen, seg_start = _viterbi(*(np.ascontiguousarray(a, dtype=i64) for a in (pa, pb, st_start, st_cnt)),
                                     np.ascontiguousarray(cost, dtype=f64), np.ascontiguousarray(emis, dtype=f64),
                                     *(np.ascontiguousarray(a, dtype=i64) for a in (Hh, win, prevH)))
        # outliers next to another road: the windows with some are matched again without them
        redo = None if drop is not None else self._outlier_runs(jobs, P, T, untimed, Hh, prevH, seg_start, S,
                                                                 st_start, st_cnt)
        self.totals.outliers_skipped += int((skipped & P["commit"]).sum())
        self._attribute(P, jobs, H, still, chosen, prevH, seg_start, s_piece, s_sub, sdir, s_off, s_pos,
                        s_exit, s_entry, Lg, untimed, pairs)
        if redo is not None:
            self._redo.append(redo)

    def _redo_outliers(self) -> None:
        """Match the windows with outliers again without them: those of all groups of a drain at
        once (a few fixes each: one Viterbi pass over them all, not one per group)."""
        todo, self._redo = self._redo, []
        jobs: list = []
        dw, dk = [], []
        for sub, (w, k) in todo:
            dw.append(w + len(jobs))
            dk.append(k)
            jobs += sub
        if not jobs:
            return
        dw_, dk_ = np.concatenate(dw), np.concatenate(dk)
        # in groups of at most _GROUP_FIXES fixes, as the first pass
        size = np.cumsum([j[2] - j[1] for j in jobs])
        cut = np.r_[0, np.flatnonzero(np.diff(size // self._GROUP_FIXES) > 0) + 1, len(jobs)]
        for a, b in zip(cut[:-1].tolist(), cut[1:].tolist()):
            if b > a:
                sel = (dw_ >= a) & (dw_ < b)
                self._windows(jobs[a:b], (dw_[sel] - a, dk_[sel]))

    def _plausible(self, fwd: np.ndarray, r: np.ndarray, d_st: np.ndarray, dt_s: np.ndarray,
                   unt: np.ndarray) -> np.ndarray:
        """Whether a transition of route ``r`` (m) is plausible for fixes ``d_st`` m and ``dt_s`` s apart."""
        h, p = self.h, self.p
        return _plausible_many(_b(fwd), _f64(r), _f64(d_st), _f64(dt_s), _b(unt), float(h.route_factor),
                               float(h.slack), float(p.max_speed_mps))

    def _bridges(self, S: dict[str, np.ndarray], st_start: np.ndarray, st_cnt: np.ndarray, fa: np.ndarray,
                 fb: np.ndarray, X: np.ndarray, Y: np.ndarray, T: np.ndarray, untimed: np.ndarray) -> np.ndarray:
        """Whether some state of fix ``fb`` is plausibly reached from some state of fix ``fa`` (per pair)."""
        out = np.zeros(len(fa), dtype=bool)
        na, nb = st_cnt[fa], st_cnt[fb]
        npair = na * nb
        if len(fa) == 0 or npair.sum() == 0:
            return out
        prp = np.repeat(np.arange(len(fa)), npair)
        kk = np.arange(int(npair.sum())) - np.repeat(np.cumsum(npair) - npair, npair)
        sa_ = st_start[fa][prp] + kk % na[prp]
        sb_ = st_start[fb][prp] + kk // na[prp]
        d_st = np.hypot(X[fb] - X[fa], Y[fb] - Y[fa])[prp]
        dt_s = ((T[fb] - T[fa]) / 1e9)[prp]
        unt = untimed[fb][prp]
        fwd, use_rev, _route, delta, r_rev, r_route, _ = self._pair_routes(S, sa_, sb_, d_st, dt_s, unt)
        r = np.where(fwd, np.abs(delta), np.where(use_rev, r_rev, r_route))
        ok = self._plausible(fwd, r, d_st, dt_s, unt)
        out[np.unique(prp[ok])] = True
        return out

    def _outlier_runs(self, jobs: list, P: dict[str, np.ndarray], T: np.ndarray, untimed: np.ndarray,
                      Hh: np.ndarray, prevH: np.ndarray, seg_start: np.ndarray, S: dict[str, np.ndarray],
                      st_start: np.ndarray, st_cnt: np.ndarray) -> tuple | None:
        """Outliers, as Newson & Krumm and Meili treat them: where no plausible transition joins two
        consecutive matched fixes (a break), a block of 1..``outlier_run`` matched fixes next to it
        whose removal joins the fix before the block to the fix after it plausibly.

        For each break at fix ``q`` (``q - 1`` before it), in this order: the block ``q .. q+r-1``
        (fixes no plausible transition reaches: an outlier next to another road, or behind the
        vehicle), then ``q-r .. q-1`` (fixes reached but not left: an outlier ahead), r = 1, 2, ...;
        the first whose bridge is plausible and spans at most ``outlier_span_s`` is taken. Blocks
        that touch are one (at most ``outlier_run`` fixes, its bridge tested again). A break none
        of whose blocks bridges stays a break (the vehicle left the network, or the data jumped).
        The fixes round the outliers are uncommitted here (``P["commit"]``, in place) and returned
        as windows for :meth:`_windows` to match again without the outliers; each window's answer
        depends on its own fixes alone, so chunks and Dask partitions do not change it.
        """
        h, k = self.h, self.h.outlier_run
        if len(Hh) < 3 or k < 1:
            return None
        win, kidx, commit, X, Y = P["win"], P["kidx"], P["commit"], P["x"], P["y"]
        nh = len(Hh)
        pv = prevH[Hh]
        # consecutive in H, both with candidates (no fix without candidates in between), same window
        chain = np.r_[False, pv[1:] == Hh[:-1]]
        # breaks the summary would report: no plausible transition from a fix with candidates
        brk = seg_start[Hh] & chain
        brk &= untimed[Hh] | (T[Hh] - T[np.maximum(pv, 0)] <= self.p.max_gap_s * 1e9)
        q = np.flatnonzero(brk)
        if len(q) == 0:
            return None
        broken_chain = np.r_[0, np.cumsum(~chain)]  # links j0+1..j1 all chained: equal at j0 and j1

        def linked(j0: np.ndarray, j1: np.ndarray) -> np.ndarray:
            return (j0 >= 0) & (j1 < nh) & (broken_chain[np.clip(j1, 0, nh - 1) + 1]
                                            == broken_chain[np.clip(j0, 0, nh - 1) + 1])

        # hypotheses (break, first dropped, last dropped, before, after) in the order of preference
        lq: list[np.ndarray] = []
        lf: list[np.ndarray] = []
        ll: list[np.ndarray] = []
        for r in range(1, k + 1):
            lq += [q, q]
            lf += [q, q - r]
            ll += [q + r - 1, q - 1]
        hq, hf, hl = np.concatenate(lq), np.concatenate(lf), np.concatenate(ll)
        order = np.arange(len(hq))
        bef, aft = hf - 1, hl + 1
        ok = linked(bef, aft)
        bi, ai = Hh[np.clip(bef, 0, nh - 1)], Hh[np.clip(aft, 0, nh - 1)]
        ok &= untimed[ai] | (T[ai] - T[bi] <= h.outlier_span_s * 1e9)
        c = np.flatnonzero(ok)
        c = c[self._bridges(S, st_start, st_cnt, bi[c], ai[c], X, Y, T, untimed)]
        if len(c) == 0:
            return None
        # per break, the first hypothesis that bridges
        o = np.lexsort((order[c], hq[c]))
        c = c[o]
        c = c[np.r_[True, hq[c][1:] != hq[c][:-1]]]
        cover = np.zeros(nh + 1, dtype=np.int64)
        np.add.at(cover, hf[c], 1)
        np.add.at(cover, hl[c] + 1, -1)
        d = np.flatnonzero(np.cumsum(cover)[:-1] > 0)  # dropped positions in Hh
        new = np.r_[True, (d[1:] != d[:-1] + 1) | (win[Hh[d[1:]]] != win[Hh[d[:-1]]])]  # (never across windows)
        blk = np.cumsum(new) - 1
        first, last = d[new], d[np.r_[new[1:], True]]
        bi, ai = Hh[first - 1], Hh[np.minimum(last + 1, nh - 1)]
        good = (last - first + 1 <= k) & linked(first - 1, last + 1) & (
            untimed[ai] | (T[ai] - T[bi] <= h.outlier_span_s * 1e9))
        g = np.flatnonzero(good)
        good[g] = self._bridges(S, st_start, st_cnt, bi[g], ai[g], X, Y, T, untimed)
        rows = Hh[d[good[blk]]]
        if len(rows) == 0:
            return None
        # the redo: per window, the part of its commit range from ``M`` matched fixes before the
        # first bridge to ``M`` after the last, with ``overlap`` fixes of context (a window like any
        # other: the Viterbi settles within that)
        L, M = h.overlap, 16
        gf, gl = first[good], last[good]
        wb = win[Hh[gf]]
        wH = win[Hh]
        sub, dw, dk = [], [], []
        wr = win[rows]
        for w in np.unique(wb).tolist():
            code, lo, hi, c0, c1, end = jobs[w]
            hs, he = np.searchsorted(wH, w), np.searchsorted(wH, w, side="right") - 1
            pf = max(hs, int(gf[wb == w].min()) - 1 - M)
            pl = min(he, int(gl[wb == w].max()) + 1 + M)
            s0, s1 = max(c0, int(kidx[Hh[pf]])), min(c1, int(kidx[Hh[pl]]) + 1)
            if s0 >= s1:
                continue  # outliers in the context only: the window that commits them sees them
            lo2, hi2 = max(lo, s0 - L), min(hi, s1 + L)
            commit[(win == w) & (kidx >= s0) & (kidx < s1)] = False
            kd = kidx[rows[wr == w]]
            kd = kd[(kd >= lo2) & (kd < hi2)]
            dw.append(np.full(len(kd), len(sub), dtype=np.int64))
            dk.append(kd)
            sub.append((code, lo2, hi2, s0, s1, bool(end and hi2 == hi)))
        if not sub:
            return None
        return sub, (np.concatenate(dw), np.concatenate(dk))

    def _attribute(self, P: dict[str, np.ndarray], jobs: list, H: np.ndarray, still: np.ndarray,
                   chosen: np.ndarray, prevH: np.ndarray, seg_start: np.ndarray, s_piece: np.ndarray,
                   s_sub: np.ndarray, sdir: np.ndarray, s_off: np.ndarray, s_pos: np.ndarray,
                   s_exit: np.ndarray, s_entry: np.ndarray, Lg: np.ndarray, untimed: np.ndarray,
                   pairs: tuple) -> None:
        """Km of the committed pairs along their matched routes; per-vehicle counts; into the totals."""
        p, m, R, tot = self.p, self.m, self.routes, self.totals
        n = len(P["t"])
        commit = P["commit"]
        win = P["win"]
        X, Y, T = P["x"], P["y"], P["t"]
        # pairs of matched fixes ending at committed fixes
        pb = H[commit[H] & (prevH[H] >= 0)]
        pa = prevH[pb]
        # a gap is time without fixes: a pair of matched fixes round a stop (the standing fixes left
        # out of the matching) spans minutes of logging, and its route counts
        longest = self._longest_step(T, pa, pb)
        gap = ~untimed[pb] & (longest > p.max_gap_s * 1e9)
        d_st = np.hypot(X[pb] - X[pa], Y[pb] - Y[pa])
        # how each chosen pair leads on: as worked out for the Viterbi (the same fixes, the same states)
        pair_at, st_start, st_cnt, (fwd, use_rev, route, delta, r_rev, route_len) = pairs
        i64, f64, b1 = np.int64, np.float64, np.bool_
        both, c_piece, c_sub, c_m, c_at, ex, en, d_nodes, at_r = _chosen_pairs(
            *(np.ascontiguousarray(a, dtype=i64) for a in (pa, pb, chosen)), np.ascontiguousarray(seg_start, dtype=b1),
            *(np.ascontiguousarray(a, dtype=i64) for a in (pair_at, st_start, st_cnt)),
            *(np.ascontiguousarray(a, dtype=b1) for a in (fwd, use_rev, route)),
            *(np.ascontiguousarray(a, dtype=f64) for a in (delta, r_rev, route_len)),
            *(np.ascontiguousarray(a, dtype=i64) for a in (s_piece, s_sub)),
            *(np.ascontiguousarray(a, dtype=f64) for a in (Lg, s_off)),
            *(np.ascontiguousarray(a, dtype=i64) for a in (s_exit, s_entry)))
        # the whole pieces in between
        which, mid = R.path_pieces(ex, en, d_nodes)
        c_piece = np.concatenate([c_piece, mid]).astype(np.int64)
        c_sub = np.concatenate([c_sub, self._mid_sub[mid] if len(mid) else mid]).astype(np.int64)
        c_um = np.rint(np.concatenate([c_m, m.piece_length_m[mid]]) * UM).astype(np.int64)
        c_at = np.concatenate([c_at, at_r[which]]).astype(np.int64)
        # pairs the matcher could not follow: reported; their straight distance is off-network
        broke = np.flatnonzero((chosen[pa] >= 0) & (chosen[pb] >= 0) & seg_start[pb] & ~gap)
        if len(broke):
            tot.unconnected_pairs += len(broke)
            ex = tot.break_examples
            for i in broke[:max(0, 20 - len(ex))].tolist():
                ex.append((self.vehicle_names[int(P["veh"][pb[i]])], int(T[pa[i]]), int(T[pb[i]]),
                           "no plausible route between the fixes"))
        # piece of every committed fix: its state's; a fix left out of the matching (standing,
        # or between matched fixes of a dense log) that of the last matched fix before it, else after
        piece_fix = _fix_pieces(*(np.ascontiguousarray(a, dtype=np.int64) for a in (chosen, s_piece, H, win)))
        fw = np.flatnonzero(commit)
        # off-network: pairs with a fix without candidates, or broken
        off = ~gap & ~both
        K = {"veh": P["veh"], "ent": P["ent"], "t": T, "x": X, "y": Y}
        self._add(K, fw, c_piece, c_sub, c_um, c_at, piece_fix, pb[off], d_st[off], win, untimed)
        if self.point_log is not None:
            self.point_log.append((P["row"][fw].copy(), piece_fix[fw].copy()))

    def _pair_routes(self, S: dict[str, np.ndarray], sa: np.ndarray, sb: np.ndarray, d_st: np.ndarray,
                     dt_s: np.ndarray, unt: np.ndarray, prp: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """How state ``sa`` leads to state ``sb`` (see the module docstring).

        ``d_st``, ``dt_s`` and ``unt`` are per pair, or per pair of fixes ``prp`` of each pair.
        Returns the masks ``fwd`` (same directed state), ``use_rev`` (U-turn on the
        piece) and ``route`` (through the graph), the signed advance ``delta`` on
        the same state, the U-turn distance, the routed distance (``inf``
        where longer than any plausible route: those are not looked up) and the
        mask of routes with a U-turn at a node.
        """
        h, p, R = self.h, self.p, self.routes
        sa, sb = _i64(sa), _i64(sb)
        prp = np.arange(len(sa), dtype=np.int64) if prp is None else _i64(prp)
        St = _states(S)
        oneway = _b(self.m.piece_oneway)
        fwd, rev, delta, r_rev, look, ex, en, need, ends = _routes_pre(
            sa, sb, prp, _f64(d_st), _f64(dt_s), _b(unt), St["piece"], St["dir"], St["off"], St["pos"], St["L"],
            St["exit"], St["entry"], R.node_x, R.node_y, float(h.back_tol), float(h.route_factor), float(h.slack),
            float(p.max_speed_mps), float(h.uturn_penalty_m))
        d_main = R.dist(ex, en, need)
        # routes that start by driving back along a's piece, or end by driving b's piece the wrong way
        # to turn at its entry node: a U-turn at a node (a shortest path has none in between); looked
        # up only where the straight line between the nodes leaves room for it
        tol = 1e-3
        qa, src, tgt, nd = _turn_a_queries(look, sa, d_main, en, St["piece"], oneway, St["entry"], St["L"],
                                           R.node_x, R.node_y, tol)
        dist_a = R.dist(src, tgt, nd)
        ta, qb, src, tgt, nd = _turn_b_queries(look, sa, sb, d_main, ex, qa, dist_a, St["piece"], oneway,
                                               St["exit"], St["L"], R.node_x, R.node_y, tol)
        dist_b = R.dist(src, tgt, nd)
        r_route, use_rev, route, node_turn = _routes_final(sa, sb, fwd, rev, r_rev, look, ends, d_main, ta, qb,
                                                           dist_b, St["piece"], St["exit"], St["entry"], St["L"],
                                                           float(h.uturn_penalty_m), tol)
        return fwd, use_rev, route, delta, r_rev, r_route, node_turn

    @staticmethod
    def _longest_step(t: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        """Longest time step (ns, float64) between consecutive rows ``pa+1 .. pb`` of each pair of
        rows ``pa < pb`` (times ``t``, int64 ns)."""
        i64 = np.int64
        return _longest_steps(*(np.ascontiguousarray(a, dtype=i64) for a in (t, pa, pb)))

    @property
    def _end_dirs(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Per piece: unit direction (u to v) of its first and of its last sub-segment."""
        ed = getattr(self, "_end_dirs_arr", None)
        if ed is None:
            m = self.m
            k = np.arange(m.n_pieces)
            first = np.clip(np.searchsorted(m.sub_piece, k), 0, max(len(m.sub_piece) - 1, 0))
            last = np.clip(np.searchsorted(m.sub_piece, k, side="right") - 1, 0, max(len(m.sub_piece) - 1, 0))
            ed = self._end_dirs_arr = ((m.ux[first], m.uy[first]), (m.ux[last], m.uy[last]))
        return ed

    @property
    def _mid_sub(self) -> np.ndarray:
        ms = getattr(self, "_mid_sub_arr", None)
        if ms is None:
            m = self.m
            first = np.searchsorted(m.sub_piece, np.arange(m.n_pieces))
            last = np.searchsorted(m.sub_piece, np.arange(m.n_pieces), side="right") - 1
            ms = self._mid_sub_arr = np.maximum((first + last) // 2, 0)
        return ms

    def _add(self, K: dict[str, np.ndarray], fw: np.ndarray, c_piece: np.ndarray, c_sub: np.ndarray,
             c_um: np.ndarray, c_at: np.ndarray, piece_fix: np.ndarray, off_at: np.ndarray,
             off_d: np.ndarray, win: np.ndarray, untimed: np.ndarray) -> None:
        """The contributions and the committed rows ``fw`` (windows ``win``) into the totals."""
        p, tot = self.p, self.totals
        self._add_contributions(c_piece, c_sub, c_um, K["ent"][c_at] + 1)
        if len(fw) == 0:
            return
        i64, f64 = np.int64, np.float64
        nv = len(self.vehicle_names)
        fsum, cnt, present, unt_v, t_lo, t_hi, e_first = _vehicle_sums(
            *(np.ascontiguousarray(a, dtype=i64) for a in (fw, win, K["veh"], K["ent"], K["t"])),
            *(np.ascontiguousarray(a, dtype=f64) for a in (K["x"], K["y"])),
            np.ascontiguousarray(untimed, dtype=np.bool_),
            *(np.ascontiguousarray(a, dtype=i64) for a in (piece_fix, c_at, c_um, off_at)),
            np.ascontiguousarray(off_d, dtype=f64), nv, int(p.max_gap_s * 1e9), tot.piece_points, float(UM))
        names = ("matched_um", "offnet_um", "gps_um", "driving_ns")
        counts = ("gap_pairs", "points", "matched_points")
        for code in np.flatnonzero(present).tolist():
            st = self._vehicle(code)
            for j, k_ in enumerate(names):
                st[k_] += int(fsum[j, code])
            for j, k_ in enumerate(counts):
                st[k_] += int(cnt[j, code])
            if not unt_v[code]:
                t0, t1 = int(t_lo[code]), int(t_hi[code])
                st["first_ns"] = t0 if st["first_ns"] is None else min(st["first_ns"], t0)
                st["last_ns"] = t1 if st["last_ns"] is None else max(st["last_ns"], t1)
            if st["enterprise"] is None:
                e0 = int(e_first[code])
                st["enterprise"] = self.enterprise_names[e0] if e0 >= 0 else "(unknown)"

def _ordered_times(veh: np.ndarray) -> np.ndarray:
    """Increasing times per vehicle, for the order checks of traces without times."""
    gs = _group_starts(veh)
    # a million seconds apart: no step is a jump over the max speed
    return ((np.arange(len(veh)) - gs) * 10**15).astype(np.int64)


# The candidates of a fix become its directed states in one pass over its run, instead of some
# forty whole-array passes (filters, group minima, repeats) with their temporaries: the same
# float64 operations in the same order as the numpy code was.
@kernel
def _states_kernel(c_pt: np.ndarray, c_dist: np.ndarray, c_sub: np.ndarray, c_frac: np.ndarray,
                   H: np.ndarray, n: int, cut: float, two_s2: float, heading_weight: float,
                   use_h: np.ndarray, sin_h: np.ndarray, cos_h: np.ndarray, sub_piece: np.ndarray,
                   sub_along: np.ndarray, sub_len: np.ndarray, piece_scale: np.ndarray,
                   piece_oneway: np.ndarray, piece_length_m: np.ndarray, pu: np.ndarray, pv: np.ndarray,
                   ux: np.ndarray, uy: np.ndarray) -> tuple:
    """The directed states (fix, piece, direction) of the matched fixes' candidates.

    Per fix (its candidates one run, as :meth:`PieceMatcher.candidates` gives them):
    the candidates whose emission is not hopeless against the nearest one's
    (``d^2 - d_min^2 <= cut``); of each run of one piece among those, the first
    nearest; a state per direction the piece can be driven (along it first);
    emission ``d^2 / two_s2``, plus ``heading_weight * (1 - cos)`` where the fix's
    GPS heading counts (``use_h``); states against that heading (``cos < -0.3``)
    dropped unless the fix has no other.

    Parameters
    ----------
    c_pt, c_dist, c_sub, c_frac
        The candidates: position in ``H`` of the fix, distance (m), sub-segment, position on it.
    H
        Row (of the window arrays, ``n`` rows) of each matched fix.
    use_h, sin_h, cos_h
        Per matched fix: whether its heading counts, sine and cosine of it.
    sub_piece, sub_along, sub_len, piece_scale, piece_oneway, piece_length_m, ux, uy
        The matcher's sub-segment and piece arrays.
    pu, pv
        Node of each piece's start and end.

    Returns
    -------
    tuple
        The number of states ``ns``; buffers whose first ``ns`` entries are each
        state's row, piece, sub-segment, piece length (m), position from u (m),
        offset from its entry end (m), exit and entry node, emission and direction
        (1 along the piece, -1 against); the count of states of each row and where
        its run starts.
    """
    m = len(c_pt)
    cap = 2 * m
    o_pt = np.empty(cap, dtype=np.int64)
    o_piece = np.empty(cap, dtype=np.int64)
    o_sub = np.empty(cap, dtype=np.int64)
    o_L = np.empty(cap, dtype=np.float64)
    o_pos = np.empty(cap, dtype=np.float64)
    o_off = np.empty(cap, dtype=np.float64)
    o_exit = np.empty(cap, dtype=np.int64)
    o_entry = np.empty(cap, dtype=np.int64)
    o_emis = np.empty(cap, dtype=np.float64)
    o_dir = np.empty(cap, dtype=np.int64)
    against = np.empty(cap, dtype=np.bool_)
    st_cnt = np.zeros(n, dtype=np.int64)
    ns = 0
    i = 0
    while i < m:
        f = c_pt[i]
        j_end = i
        dmin = c_dist[i]
        while j_end < m and c_pt[j_end] == f:
            if c_dist[j_end] < dmin:
                dmin = c_dist[j_end]
            j_end += 1
        row = H[f]
        first_state = ns
        n_ok = 0
        j = i
        while j < j_end:
            # the next run of one piece among the kept candidates: its first nearest
            best = -1
            piece = -1
            while j < j_end:
                d = c_dist[j]
                if d * d - dmin * dmin <= cut:
                    pc = sub_piece[c_sub[j]]
                    if best < 0:
                        best, piece = j, pc
                    elif pc != piece:
                        break
                    elif d < c_dist[best]:
                        best = j
                j += 1
            if best < 0:
                break
            sb = c_sub[best]
            d = c_dist[best]
            pos = (sub_along[sb] + c_frac[best] * sub_len[sb]) * piece_scale[piece]
            Lg = piece_length_m[piece]
            for sd in (1, -1):
                if sd < 0 and piece_oneway[piece]:
                    break
                o_pt[ns] = row
                o_piece[ns] = piece
                o_sub[ns] = sb
                o_L[ns] = Lg
                o_pos[ns] = pos
                o_off[ns] = pos if sd > 0 else Lg - pos
                o_exit[ns] = pv[piece] if sd > 0 else pu[piece]
                o_entry[ns] = pu[piece] if sd > 0 else pv[piece]
                e = d * d / two_s2
                ag = False
                if use_h[f]:
                    cs = (sin_h[f] * ux[sb] + cos_h[f] * uy[sb]) * sd
                    e = e + heading_weight * (1.0 - cs)
                    ag = cs < -0.3
                else:
                    e = e + 0.0
                o_emis[ns] = e
                o_dir[ns] = sd
                against[ns] = ag
                if not ag:
                    n_ok += 1
                ns += 1
        # against the GPS heading of a moving vehicle: out, unless the fix has nothing else
        if n_ok > 0 and n_ok < ns - first_state:
            k = first_state
            for q in range(first_state, ns):
                if not against[q]:
                    o_pt[k], o_piece[k], o_sub[k], o_L[k] = o_pt[q], o_piece[q], o_sub[q], o_L[q]
                    o_pos[k], o_off[k], o_exit[k], o_entry[k] = o_pos[q], o_off[q], o_exit[q], o_entry[q]
                    o_emis[k], o_dir[k] = o_emis[q], o_dir[q]
                    k += 1
            ns = k
        st_cnt[row] += ns - first_state
        i = j_end
    st_start = np.zeros(max(n, 1), dtype=np.int64)
    for r in range(1, n):
        st_start[r] = st_start[r - 1] + st_cnt[r - 1]
    return (ns, o_pt, o_piece, o_sub, o_L, o_pos, o_off, o_exit, o_entry, o_emis, o_dir, st_cnt, st_start)
