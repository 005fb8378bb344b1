"""The HMM matcher's compiled kernels (:mod:`geo._fleet_hmm`): the Viterbi, the attribution, the
pairs of states and their transitions, the candidates' directed states.

Each is the loop form of numpy passes it replaced, with the same IEEE operations in the same order
(results bit for bit the same); see :mod:`geo._jit`. The small helpers they inline
(``njit(inline="always")``) live here with them: numba's disk cache is keyed by this file.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._jit import kernel


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


@njit(inline="always")
def _query_buffers(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Room for up to ``m`` route questions: position, source node, target node, how far it matters."""
    return np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m)


@kernel
def _turn_a_queries(look, sa, d_main, en_l, piece, oneway, s_entry, L, node_x, node_y,
                    tol):  # type: ignore[no-untyped-def]
    """Routes that may start by driving back along ``a``'s piece (a two-way one) to turn at its
    entry node: those whose straight-line bound leaves room for it (position in ``look``, source,
    target, how far the route matters)."""
    m = len(look)
    q, src, tgt, need = _query_buffers(m)
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
    q, src, tgt, need = _query_buffers(m)
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
