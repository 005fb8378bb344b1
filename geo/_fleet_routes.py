"""Routes on the directed road graph of a matcher's pieces, for the HMM matcher's transitions.

:class:`RouteTable`: bounded shortest paths from each source node, computed to the
distance a pair of fixes needs and cached (FMM's upper-bounded origin-destination
table, built as needed), by a sparse label-correcting search in numpy for short
bounds and scipy's Dijkstra for long ones, both with one tie-break so that no cache
state changes a result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from ._fleet_match import PieceMatcher
from ._jit import kernel


@njit(inline="always")
def crow1(node_x: np.ndarray, node_y: np.ndarray, a: int, b: int) -> float:
    """One :meth:`RouteTable.crow` bound (m) from node ``a`` to node ``b``, for the compiled
    kernels of the HMM matcher (the same operations: numba's ``math.hypot`` is the C library's,
    as numpy's ``hypot``). Inlined where called: a call per pair costs more than the bound."""
    return 0.99 * math.hypot(node_x[a] - node_x[b], node_y[a] - node_y[b])


@njit(inline="always")
def crow_le(node_x: np.ndarray, node_y: np.ndarray, a: int, b: int, base: float, lim: float) -> bool:
    """Whether ``base + crow1(node_x, node_y, a, b) <= lim``, exactly as computed with it, mostly
    without the C library's ``hypot`` (14 ns a call, millions of pairs).

    ``q = sqrt(x*x + y*y)`` is within 3e-16 of the true length, as ``hypot`` is (within an ulp):
    ``hypot`` lies in ``[q (1 - 1e-12), q (1 + 1e-12) + 1e-200]``, and since rounding is monotone so
    does ``base + 0.99 * hypot`` between the same sums of the two bounds; only where ``lim`` falls
    between them (a band of 1e-12 relative) is ``hypot`` itself called.
    """
    x, y = node_x[a] - node_x[b], node_y[a] - node_y[b]
    q = math.sqrt(x * x + y * y)
    if base + 0.99 * (q * (1.0 - 1e-12)) > lim:
        return False
    if base + 0.99 * (q * (1.0 + 1e-12) + 1e-200) <= lim:
        return True
    return base + 0.99 * math.hypot(x, y) <= lim


@kernel
def _crow_many(node_x: np.ndarray, node_y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`crow1` of each pair ``a[i], b[i]`` (one pass, no gathered temporaries)."""
    out = np.empty(len(a))
    for i in range(len(a)):
        out[i] = crow1(node_x, node_y, a[i], b[i])
    return out


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

    The search is a label-correcting one over all sources of a batch at once
    (numpy, sparse: work grows with the nodes reached, not with the graph).
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
        #: sorted blocks of (source * n_nodes + target, distance, previous node)
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._cached = 0
        self._graph: Any = None
        #: labels per source seen at each level (for sizing batches)
        self._reach: dict[float, float] = {}

    def __getstate__(self) -> dict:
        st = dict(self.__dict__)
        # sent to Dask workers without the cache
        st["src_level"] = np.zeros(self.n_nodes)
        st["_blocks"], st["_cached"], st["_reach"], st["_graph"] = [], 0, {}, None
        return st

    # ------------------------------------------------------------------ search
    def _search(self, src: np.ndarray, bound: np.ndarray,
                dense: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bounded shortest routes from each ``src`` node (unique, sorted) up to its ``bound``.

        Returns sorted keys ``src * n_nodes + node``, distances and previous nodes (-1 at the source).
        A label-correcting search over all sources at once with labels in sorted arrays
        (``dense=False``: work grows with the nodes reached), or :meth:`_search_dense`
        (``dense=True``: for searches that reach a good part of the graph); both give the same
        answer, previous nodes included (:meth:`_ensure` picks the one that suits the bounds).
        """
        N = self.n_nodes
        B = len(src)
        ip, hd, wt = self.indptr, self.head, self.weight
        j0 = np.arange(B, dtype=np.int64)
        if dense:
            return self._search_dense(src, bound)
        lk = j0 * N + src  # labels, local source number j: sorted as j is
        ld = np.zeros(B)
        lp = np.full(B, -1, dtype=np.int64)
        fj, fv, fd = j0, src.astype(np.int64), np.zeros(B)
        while len(fj):
            deg = ip[fv + 1] - ip[fv]
            tot = int(deg.sum())
            if tot == 0:
                break
            rep = np.repeat(np.arange(len(fj)), deg)
            e = ip[fv][rep] + (np.arange(tot) - np.repeat(np.cumsum(deg) - deg, deg))
            nj, nv, nd, pv = fj[rep], hd[e], fd[rep] + wt[e], fv[rep]
            ok = nd <= bound[nj]
            nj, nv, nd, pv = nj[ok], nv[ok], nd[ok], pv[ok]
            if len(nj) == 0:
                break
            k = nj * N + nv
            # per node reached: the shortest, and of equally short ones the smaller previous node
            o = np.argsort(k)
            k, nd, pv = k[o], nd[o], pv[o]
            first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            mn = np.minimum.reduceat(nd, first)
            gid = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(k)]))
            pv = np.minimum.reduceat(np.where(nd == mn[gid], pv, N), first)
            k, nd = k[first], mn
            at = np.searchsorted(lk, k)
            atc = np.minimum(at, len(lk) - 1)
            known = lk[atc] == k
            shorter = known & (nd < ld[atc])
            tie = known & (nd == ld[atc]) & (pv < lp[atc])
            upd = atc[shorter | tie]
            ld[upd] = nd[shorter | tie]
            lp[upd] = pv[shorter | tie]
            new = ~known
            if new.any():
                lk = np.insert(lk, at[new], k[new])
                ld = np.insert(ld, at[new], nd[new])
                lp = np.insert(lp, at[new], pv[new])
            go = shorter | new
            fj, fv, fd = k[go] // N, k[go] % N, nd[go]
        return src[lk // N] * N + lk % N, ld, lp

    def _search_dense(self, src: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_search` by scipy's Dijkstra (compiled; a dense row per source, so for searches
        that reach a good part of the graph), with the same previous nodes: of the equally short
        routes into a node, the one from the smallest previous node."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import dijkstra

        N = self.n_nodes
        if self._graph is None:
            self._graph = csr_matrix((self.weight, self.head, self.indptr), shape=(N, N))
            # the same edges by head: the ways into each node
            o = np.argsort(self.head, kind="stable")
            tail = np.repeat(np.arange(N), np.diff(self.indptr))
            self._into = (np.searchsorted(self.head[o], np.arange(N + 1)), tail[o], self.weight[o])
        D = dijkstra(self._graph, directed=True, indices=src, limit=float(bound.max()))
        D[D > bound[:, None]] = np.inf
        flat = D.ravel()
        lk = np.flatnonzero(np.isfinite(flat))  # j * N + node, sorted
        ld = flat[lk]
        j, v = lk // N, lk % N
        # previous node: the smallest u with fl(d(u) + w(u, v)) == d(v), as the sparse search keeps
        rip, rtail, rw = self._into
        deg = rip[v + 1] - rip[v]
        rep = np.repeat(np.arange(len(lk)), deg)
        e = rip[v][rep] + (np.arange(int(deg.sum())) - np.repeat(np.cumsum(deg) - deg, deg))
        u = rtail[e]
        on = flat[j[rep] * N + u] + rw[e] == ld[rep]
        lp = np.full(len(lk), N, dtype=np.int64)
        np.minimum.at(lp, rep[on], u[on])
        lp[v == src[j]] = -1
        return src[j] * N + v, ld, lp

    def _reach_guess(self, level: float) -> float:
        """Labels a search to ``level`` metres may find, before one has been seen."""
        return min(self.n_nodes, 8.0 + (level / 25.0) ** 2)

    def _ensure(self, src: np.ndarray, need: np.ndarray) -> None:
        """Make the routes from every ``src`` node known at least to its ``need`` (metres)."""
        if len(src) == 0:
            return
        lv = self.levels[np.minimum(np.searchsorted(self.levels, np.minimum(need, self.bound) - 1e-9),
                                    len(self.levels) - 1)]
        o = np.lexsort((-lv, src))
        s_, l_ = src[o], lv[o]
        one = np.r_[True, s_[1:] != s_[:-1]]
        s_, l_ = s_[one], l_[one]  # each source once, at the level it needs
        miss = self.src_level[s_] < l_
        if not miss.any():
            return
        s_, l_ = s_[miss], l_[miss]
        N = self.n_nodes
        lv_u, lv_i = np.unique(l_, return_inverse=True)
        est = np.array([self._reach.get(v, self._reach_guess(v)) for v in lv_u.tolist()])[lv_i]
        if self._cached + est.sum() > self.max_cached and self._cached:
            # full: start again (results never depend on what is cached)
            self._clear()
            return self._ensure(src, need)
        # batches of one level each: a dense table of at most ~_BATCH_LABELS cells, or about as
        # many labels in sorted arrays
        batches = []
        for v in np.unique(l_).tolist():
            at = np.flatnonzero(l_ == v)
            dense = est[at[0]] * 16 >= N
            per = N if dense else est[at[0]]
            size = max(1, int(self._BATCH_LABELS // max(per, 1.0)))
            batches += [(at[i:i + size], dense) for i in range(0, len(at), size)]
        for at, dense in batches:
            ss, ll = s_[at], l_[at]
            keys, d, p = self._search(ss, ll, dense)
            o2 = np.argsort(keys, kind="stable")
            keys, d, p = keys[o2], d[o2], p[o2]
            self._blocks.append((keys, d, p))
            self._cached += len(keys)
            self.src_level[ss] = ll
            per = np.bincount(np.searchsorted(ss, keys // N), minlength=len(ss))
            for v in np.unique(ll).tolist():
                self._reach[v] = float(max(1.0, per[ll == v].mean()))
            # blocks of about doubling size (merged as in a binary counter): a lookup searches a
            # few, and each label is merged a logarithmic number of times
            while len(self._blocks) >= 2 and 2 * len(self._blocks[-1][0]) >= len(self._blocks[-2][0]):
                (k1, d1, p1), (k2, d2, p2) = self._blocks[-2], self._blocks[-1]
                k = np.concatenate([k1, k2])
                o3 = np.argsort(k, kind="stable")  # two sorted runs: a merge
                k, d, p = k[o3], np.concatenate([d1, d2])[o3], np.concatenate([p1, p2])[o3]
                one = np.r_[True, k[1:] != k[:-1]]  # a source searched again further: once
                self._cached -= len(k) - int(one.sum())
                self._blocks[-2:] = [(k[one], d[one], p[one])]

    def _find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance and previous node of each ``source * n_nodes + target`` key (``inf``/-1 if unknown)."""
        dist = np.full(len(key), np.inf)
        prev = np.full(len(key), -1, dtype=np.int64)
        todo = np.arange(len(key))
        for bk, bd, bp in reversed(self._blocks):
            if len(todo) == 0 or len(bk) == 0:
                continue
            at = np.minimum(np.searchsorted(bk, key[todo]), len(bk) - 1)
            hit = bk[at] == key[todo]
            dist[todo[hit]] = bd[at[hit]]
            prev[todo[hit]] = bp[at[hit]]
            todo = todo[~hit]
        return dist, prev

    def crow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A lower bound of the route from each node ``a`` to its ``b``: the straight line between
        them, less 1 % for the projection's scale against geodesic piece lengths."""
        return _crow_many(self.node_x, self.node_y, np.ascontiguousarray(a, dtype=np.int64),
                          np.ascontiguousarray(b, dtype=np.int64))

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
        s, cur, which = src[rest], tgt[rest].copy(), rest
        self._ensure(s, nd)
        N = self.n_nodes
        out_r, out_p = [], []
        for _ in range(100_000):
            if len(cur) == 0:
                break
            _, prv = self._find(s * N + cur)
            ok = prv >= 0
            s, cur, which, prv = s[ok], cur[ok], which[ok], prv[ok]
            e = np.searchsorted(self.ekey, prv * N + cur)
            out_r.append(which)
            out_p.append(self.epiece[np.minimum(e, len(self.epiece) - 1)])
            go = prv != s
            s, cur, which = s[go], prv[go], which[go]
        return (np.concatenate(out_r), np.concatenate(out_p)) if out_r else (np.zeros(0, np.int64),) * 2
