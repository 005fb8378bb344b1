"""Routes on the directed road graph of a matcher's pieces, for the HMM matcher's transitions.

:class:`RouteTable`: bounded shortest paths from each source node, computed to the
distance a pair of fixes needs and cached (FMM's upper-bounded origin-destination
table, built as needed), by a compiled bounded Dijkstra per source with one
tie-break for equally short routes, so that no cache state changes a result.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._fleet_match import PieceMatcher
from ._jit import kernel


@njit(inline="always")
def _heap_push(hd: np.ndarray, hv: np.ndarray, n: int, d: float, v: int) -> int:
    """Push ``(d, v)`` on the binary min-heap ``hd``/``hv`` of ``n`` entries; returns the new size."""
    i = n
    while i > 0:
        up = (i - 1) // 2
        if hd[up] <= d:
            break
        hd[i], hv[i] = hd[up], hv[up]
        i = up
    hd[i], hv[i] = d, v
    return n + 1


@kernel
def _dijkstra(src: np.ndarray, bound: np.ndarray, indptr: np.ndarray, head: np.ndarray, weight: np.ndarray,
              rptr: np.ndarray, rtail: np.ndarray, rweight: np.ndarray,
              n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounded shortest routes from each ``src`` node up to its ``bound`` (see :meth:`RouteTable._search`).

    Dijkstra per source on the CSR graph, with a dense distance row reset after each source. A
    distance is the float minimum over paths of their sums (rounding is monotone and weights are
    positive, so Dijkstra settles each node at that minimum, as any label-correcting search
    does); the previous node is then, of the ways ``u -> v`` into each node reached, the smallest
    ``u`` with ``dist[u] + w == dist[v]``: no order of the search changes it.

    Returns
    -------
    keys, dist, prev : arrays, one row per node reached
        ``src * n_nodes + node`` (by source as given, then in the order reached: no sort compiled
        here, numpy's sorts them), the distance (m), the previous node (-1 at the source).
    """
    N = n_nodes
    dist = np.full(N, np.inf)
    cap = 1024
    keys = np.empty(cap, np.int64)
    dd = np.empty(cap)
    pp = np.empty(cap, np.int64)
    nout = 0
    hd = np.empty(max(len(head), 1) + 1)
    hv = np.empty(max(len(head), 1) + 1, np.int64)
    seen = np.empty(N, np.int64)
    for j in range(len(src)):
        s, b = src[j], bound[j]
        dist[s] = 0.0
        nseen = 1
        seen[0] = s
        hd[0], hv[0] = 0.0, s
        nh = 1
        while nh > 0:
            d, u = hd[0], hv[0]
            # pop: the last entry sifted down from the root
            nh -= 1
            ld, lv = hd[nh], hv[nh]
            i = 0
            while True:
                c = 2 * i + 1
                if c >= nh:
                    break
                if c + 1 < nh and hd[c + 1] < hd[c]:
                    c += 1
                if ld <= hd[c]:
                    break
                hd[i], hv[i] = hd[c], hv[c]
                i = c
            if nh > 0:
                hd[i], hv[i] = ld, lv
            if d > dist[u]:
                continue  # a stale entry: u was reached shorter since
            for e in range(indptr[u], indptr[u + 1]):
                v = head[e]
                nd = d + weight[e]
                if nd <= b and nd < dist[v]:
                    if dist[v] == np.inf:
                        seen[nseen] = v
                        nseen += 1
                    dist[v] = nd
                    nh = _heap_push(hd, hv, nh, nd, v)
        if nout + nseen > cap:
            cap = max(2 * cap, nout + nseen)
            keys2, dd2, pp2 = np.empty(cap, np.int64), np.empty(cap), np.empty(cap, np.int64)
            for k in range(nout):  # (a loop: slice assignment costs seconds of compiling)
                keys2[k], dd2[k], pp2[k] = keys[k], dd[k], pp[k]
            keys, dd, pp = keys2, dd2, pp2
        for k in range(nseen):
            v = seen[k]
            dv = dist[v]
            best = -1
            if v != s:
                best = N
                for e in range(rptr[v], rptr[v + 1]):
                    u = rtail[e]
                    if u < best and dist[u] + rweight[e] == dv:
                        best = u
            keys[nout], dd[nout], pp[nout] = s * N + v, dv, best
            nout += 1
        for k in range(nseen):
            dist[seen[k]] = np.inf
    return keys[:nout], dd[:nout], pp[:nout]


@njit(inline="always")
def _search_left(a: np.ndarray, x: int, lo: int, hi: int) -> int:
    """``np.searchsorted(a[lo:hi], x) + lo`` (side left) for sorted ``a``: a loop compiles in a fraction."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always")
def _label_at(x: int, kb: np.ndarray, starts: np.ndarray) -> int:
    """Row of key ``x`` in the cached blocks ``kb[starts[i]:starts[i+1]]`` (each sorted; the newest,
    last, first), -1 where no block has it."""
    for blk in range(len(starts) - 2, -1, -1):
        lo = _search_left(kb, x, starts[blk], starts[blk + 1])
        if lo < starts[blk + 1] and kb[lo] == x:
            return lo
    return -1


@kernel
def _find_labels(key: np.ndarray, kb: np.ndarray, db: np.ndarray, pb: np.ndarray,
                 starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance and previous node of each ``key`` in the cached blocks (:func:`_label_at`):
    ``inf``/-1 where no block has it."""
    n = len(key)
    dist = np.full(n, np.inf)
    prev = np.full(n, -1, np.int64)
    for i in range(n):
        at = _label_at(key[i], kb, starts)
        if at >= 0:
            dist[i], prev[i] = db[at], pb[at]
    return dist, prev


@kernel
def _walk_back(src: np.ndarray, tgt: np.ndarray, kb: np.ndarray, pb: np.ndarray,
               starts: np.ndarray, ekey: np.ndarray, epiece: np.ndarray,
               n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pieces of the cached shortest routes ``src[r] -> tgt[r]``, walked back from the target along
    the previous nodes: (route, piece) rows, by step from the target (all routes' last pieces,
    then their second last, ...), routes in order within a step. A route whose walk reaches a node
    without a previous one stops there."""
    N = n_nodes
    n = len(src)
    ln = np.zeros(n, np.int64)
    tot = 0
    longest = 0
    for r in range(n):
        s, cur = src[r], tgt[r]
        for _ in range(100_000):
            row = _label_at(s * N + cur, kb, starts)
            prv = pb[row] if row >= 0 else -1
            if prv < 0:
                break
            ln[r] += 1
            if prv == s:
                break
            cur = prv
        tot += ln[r]
        longest = max(longest, ln[r])
    # rows of step t start after those of all routes at the steps before it
    at = np.zeros(longest + 1, np.int64)
    for r in range(n):
        for t in range(ln[r]):
            at[t + 1] += 1
    for t in range(longest):
        at[t + 1] += at[t]
    which = np.empty(tot, np.int64)
    piece = np.empty(tot, np.int64)
    ne = len(ekey)
    for r in range(n):
        s, cur = src[r], tgt[r]
        for t in range(ln[r]):
            prv = pb[_label_at(s * N + cur, kb, starts)]
            e = _search_left(ekey, prv * N + cur, 0, ne)
            which[at[t]] = r
            piece[at[t]] = epiece[min(e, ne - 1)]
            at[t] += 1
            cur = prv
    return which, piece


class RouteTable:
    """Directed road graph of a matcher's pieces and cached bounded shortest paths.

    Nodes are the pieces' end nodes; a one-way piece is an edge ``u -> v``, a
    two-way piece two edges. ``dist(src, tgt, need)`` is the shortest route
    (geodesic metres) where it is at most ``need`` (which is capped at
    ``bound_m``; ``inf`` beyond). Routes from a source node are computed to the
    smallest of a few distance levels that covers what is asked and cached, an
    upper-bounded origin-destination table built as needed (FMM's UBODT): a
    1 Hz log asks for a few hundred metres from each node, a 30 s log for some
    kilometres.

    The search is a bounded Dijkstra per source (compiled: work grows with the
    nodes reached, not with the graph).
    Distances are the float minimum over paths, whatever the level or batch; of
    equally short routes the one whose last node has the smallest number is
    kept, so the cache's state (a Dask worker's, a process's) never changes a
    result.
    """

    #: distance levels (m) to which the routes from a node are computed
    LEVELS = (100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)
    #: labels searched at once (memory of one batch: ~40 bytes each)
    _BATCH_LABELS = 2_000_000

    def __init__(self, m: PieceMatcher, bound_m: float, max_cached: int = 8_000_000) -> None:
        n = m.n_pieces
        nodes, inv = np.unique(np.r_[m.piece_u, m.piece_v], return_inverse=True)
        self.n_nodes = len(nodes)
        self.pu = inv[:n].astype(np.int64)
        self.pv = inv[n:].astype(np.int64)
        two = np.flatnonzero(~m.piece_oneway)
        tail = np.r_[self.pu, self.pv[two]]
        head = np.r_[self.pv, self.pu[two]]
        epiece = np.r_[np.arange(n), two]
        w = np.maximum(m.piece_length_m[epiece], 1e-6)
        ok = tail != head
        tail, head, epiece, w = tail[ok], head[ok], epiece[ok], w[ok]
        key = tail * self.n_nodes + head
        order = np.lexsort((w, key))
        key, epiece, w, tail, head = key[order], epiece[order], w[order], tail[order], head[order]
        first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
        self.ekey, self.epiece = key[first], epiece[first]
        # the shortest edge of each (tail, head), by tail (a CSR graph): what the searches walk
        self.indptr = np.searchsorted(tail[first], np.arange(self.n_nodes + 1)).astype(np.int64)
        self.head = head[first].astype(np.int64)
        self.weight = w[first].astype(np.float64)
        # the same edges by head: the ways into each node (for the previous node of a route)
        o = np.argsort(self.head, kind="stable")
        self.rptr = np.searchsorted(self.head[o], np.arange(self.n_nodes + 1)).astype(np.int64)
        self.rtail = np.repeat(np.arange(self.n_nodes, dtype=np.int64), np.diff(self.indptr))[o]
        self.rweight = self.weight[o]
        # node positions (metric CRS): where the pieces start and end
        self.node_x = np.zeros(self.n_nodes)
        self.node_y = np.zeros(self.n_nodes)
        if len(m.sub_piece):
            first = np.flatnonzero(m.sub_first)
            last = np.flatnonzero(m.sub_last)
            self.node_x[self.pu[m.sub_piece[first]]] = m.ax[first]
            self.node_y[self.pu[m.sub_piece[first]]] = m.ay[first]
            self.node_x[self.pv[m.sub_piece[last]]] = m.ax[last] + m.dx[last]
            self.node_y[self.pv[m.sub_piece[last]]] = m.ay[last] + m.dy[last]
        self.bound = float(bound_m)
        self.levels = np.array(sorted({min(lv, self.bound) for lv in self.LEVELS} | {self.bound}))
        self.max_cached = max_cached
        self._clear()

    def _clear(self) -> None:
        #: level each source node's routes are known to (0: none yet)
        self.src_level = np.zeros(self.n_nodes)
        #: sorted blocks of (source * n_nodes + target, distance, previous node), back to back in
        #: three buffers (grown by doubling) from ``_starts[i]`` to ``_starts[i + 1]``
        self._kb = np.zeros(0, dtype=np.int64)
        self._db = np.zeros(0)
        self._pb = np.zeros(0, dtype=np.int64)
        self._starts: list[int] = [0]
        self._cached = 0
        #: labels per source seen at each level (for sizing batches)
        self._reach: dict[float, float] = {}

    def __getstate__(self) -> dict:
        st = dict(self.__dict__)
        # sent to Dask workers without the cache
        st["src_level"] = np.zeros(self.n_nodes)
        st["_kb"], st["_db"], st["_pb"] = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
        st["_starts"], st["_cached"], st["_reach"] = [0], 0, {}
        return st

    # ------------------------------------------------------------------ search
    def _search(self, src: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bounded shortest routes from each ``src`` node (unique, sorted) up to its ``bound``.

        Returns sorted keys ``src * n_nodes + node``, distances and previous nodes (-1 at the source):
        :func:`_dijkstra`.
        """
        keys, d, p = _dijkstra(np.ascontiguousarray(src, dtype=np.int64), np.ascontiguousarray(bound, dtype=np.float64),
                               self.indptr, self.head, self.weight, self.rptr, self.rtail, self.rweight, self.n_nodes)
        o = np.argsort(keys, kind="stable")
        return keys[o], d[o], p[o]

    def _reach_guess(self, level: float) -> float:
        """Labels a search to ``level`` metres may find, before one has been seen."""
        return min(self.n_nodes, 8.0 + (level / 25.0) ** 2)

    def _ensure(self, src: np.ndarray, need: np.ndarray) -> None:
        """Make the routes from every ``src`` node known at least to its ``need`` (metres)."""
        if len(src) == 0:
            return
        lv = self.levels[np.minimum(np.searchsorted(self.levels, np.minimum(need, self.bound) - 1e-9),
                                    len(self.levels) - 1)]
        # the questions beyond what their source is known to (most, once the cache is warm, are not):
        # a source's highest level is among them wherever it is beyond
        ask = np.flatnonzero(self.src_level[src] < lv)
        if len(ask) == 0:
            return
        o = np.lexsort((-lv[ask], src[ask]))
        s_, l_ = src[ask][o], lv[ask][o]
        one = np.r_[True, s_[1:] != s_[:-1]]
        s_, l_ = s_[one], l_[one]  # each source once, at the level it needs
        N = self.n_nodes
        lv_u, lv_i = np.unique(l_, return_inverse=True)
        est = np.array([self._reach.get(v, self._reach_guess(v)) for v in lv_u.tolist()])[lv_i]
        if self._cached + est.sum() > self.max_cached and self._cached:
            # full: start again (results never depend on what is cached)
            self._clear()
            return self._ensure(src, need)
        # batches of one level each, of about _BATCH_LABELS labels
        batches = []
        for v in np.unique(l_).tolist():
            at = np.flatnonzero(l_ == v)
            size = max(1, int(self._BATCH_LABELS // max(est[at[0]], 1.0)))
            batches += [at[i:i + size] for i in range(0, len(at), size)]
        for at in batches:
            ss, ll = s_[at], l_[at]
            keys, d, p = self._search(ss, ll)  # (sorted)
            self._append_block(keys, d, p)
            self._cached += len(keys)
            self.src_level[ss] = ll
            per = np.bincount(np.searchsorted(ss, keys // N), minlength=len(ss))
            for v in np.unique(ll).tolist():
                self._reach[v] = float(max(1.0, per[ll == v].mean()))
            # blocks of about doubling size (merged as in a binary counter): a lookup searches a
            # few, and each label is merged a logarithmic number of times
            st = self._starts
            while len(st) >= 3 and 2 * (st[-1] - st[-2]) >= st[-2] - st[-3]:
                a, end = st[-3], st[-1]
                k = self._kb[a:end]  # the last two blocks: two sorted runs
                o3 = np.argsort(k, kind="stable")  # a merge
                k, d, p = k[o3], self._db[a:end][o3], self._pb[a:end][o3]
                one = np.r_[True, k[1:] != k[:-1]]  # a source searched again further: once
                self._cached -= len(k) - int(one.sum())
                k, d, p = k[one], d[one], p[one]
                self._kb[a:a + len(k)], self._db[a:a + len(k)], self._pb[a:a + len(k)] = k, d, p
                st[-2:] = [a + len(k)]

    def _append_block(self, keys: np.ndarray, d: np.ndarray, p: np.ndarray) -> None:
        """Add a sorted block of labels behind the others (the buffers grown by doubling)."""
        used, n = self._starts[-1], len(keys)
        if used + n > len(self._kb):
            cap = max(2 * len(self._kb), used + n, 1024)
            for name, dt in (("_kb", np.int64), ("_db", np.float64), ("_pb", np.int64)):
                new = np.empty(cap, dtype=dt)
                new[:used] = getattr(self, name)[:used]
                setattr(self, name, new)
        self._kb[used:used + n], self._db[used:used + n], self._pb[used:used + n] = keys, d, p
        self._starts.append(used + n)

    def _find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance and previous node of each ``source * n_nodes + target`` key (``inf``/-1 if unknown)."""
        return _find_labels(np.ascontiguousarray(key, dtype=np.int64), self._kb, self._db, self._pb,
                            np.array(self._starts, dtype=np.int64))

    def dist(self, src: np.ndarray, tgt: np.ndarray, need: np.ndarray | float | None = None) -> np.ndarray:
        """Shortest route from each ``src`` node to its ``tgt`` node where it is at most ``need``.

        ``need`` (metres, per route or one for all; default the table's bound) is how far a
        route matters: a longer one may come back ``inf`` (beyond the bound: always ``inf``).
        """
        src = np.asarray(src, dtype=np.int64)
        tgt = np.asarray(tgt, dtype=np.int64)
        out = np.full(len(src), np.inf)
        same = src == tgt
        out[same] = 0.0
        rest = np.flatnonzero(~same)
        if len(rest):
            nd = np.broadcast_to(np.asarray(self.bound if need is None else need, dtype=np.float64), src.shape)[rest]
            self._ensure(src[rest], nd)
            out[rest] = self._find(src[rest] * self.n_nodes + tgt[rest])[0]
        return out

    def path_pieces(self, src: np.ndarray, tgt: np.ndarray,
                    need: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pieces of the shortest routes ``src -> tgt``: (route number, piece), one row per piece.

        ``need``: at least each route's length (as for :meth:`dist`).
        """
        src = np.asarray(src, dtype=np.int64)
        tgt = np.asarray(tgt, dtype=np.int64)
        rest = np.flatnonzero(src != tgt)
        if len(rest) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        nd = np.broadcast_to(np.asarray(self.bound if need is None else need, dtype=np.float64), src.shape)[rest]
        self._ensure(src[rest], nd)
        which, piece = _walk_back(src[rest], tgt[rest], self._kb, self._pb, np.array(self._starts, dtype=np.int64),
                                  self.ekey, self.epiece, self.n_nodes)
        return rest[which], piece
