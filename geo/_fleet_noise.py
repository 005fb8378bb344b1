"""The GPS noise, its correlation and the sampling interval of a fleet log, read from the log itself.

:func:`estimate_noise`: the median distance of a sample of fixes to the nearest
piece, calibrated on the network (where pieces are close together the median
saturates), at least the robust estimate from second differences of dense logs,
and the AR(1) correlation of consecutive errors; the median time step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely

from ._fleet_match import _register_subs
from ._jit import kernel


def estimate_noise(x: np.ndarray, y: np.ndarray, veh: np.ndarray, t_ns: np.ndarray,
                   pieces: np.ndarray | Callable[[], np.ndarray], max_points: int = 20_000,
                   with_corr: bool = False,
                   piece_coords: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float | None, ...]:
    """Per-axis GPS noise (m) and sampling interval (s) of a sample of a log.

    Parameters
    ----------
    x, y
        Fixes in the metric CRS of ``pieces`` (NaN for rows without a position).
    veh, t_ns
        Vehicle code and UTC nanoseconds of each fix (rows in log order).
    pieces
        The road pieces (shapely lines) in the same metric CRS; with ``piece_coords``, may be a
        function that gives them (called only if a fix is farther from every piece than the
        grid answers for).
    piece_coords
        The pieces' vertices and the piece of each (``shapely.get_coordinates(pieces,
        return_index=True)``), where known without the lines.

    Noise: the median distance from the fixes to the nearest piece (within 300
    m) over 0.6745, the median of a half-normal distribution: the across-road
    component of the noise; for logs of 5 s or denser, at least the robust
    (median) estimate from second differences of consecutive fixes. Interval:
    the median time step of consecutive fixes of a vehicle. ``None`` where the
    sample says nothing. With ``with_corr``, also the correlation of the noise of
    consecutive fixes (AR(1), see :class:`geo._fleet_hmm.HmmParams`): from the second differences
    of 5 s or denser logs against the noise, ``(1 - c)(3 - c) = 3 (s2 / sigma)^2``
    (a second difference of AR(1) noise has variance ``2 sigma^2 (1 - c)(3 - c)``
    per axis); 0 where it cannot be told (sparser logs).
    """
    # per vehicle in time order: the same estimate for a log grouped by vehicle or interleaved
    o = np.lexsort((t_ns, veh))
    x, y, veh, t_ns = x[o], y[o], veh[o], t_ns[o]
    ok = np.isfinite(x) & np.isfinite(y)
    sig = None
    corr = 0.0
    idx = np.flatnonzero(ok)
    any_piece = len(piece_coords[0]) > 0 if piece_coords is not None else len(pieces) > 0  # type: ignore[arg-type]
    if len(idx) and any_piece:
        take = idx[np.unique(np.linspace(0, len(idx) - 1, min(max_points, len(idx))).astype(np.int64))]
        near = _NearestSegments(pieces, coords=piece_coords)
        d, _, _ = near.query(x[take], y[take], 300.0)
        d = d[np.isfinite(d)]
        if len(d) >= 20:
            sig = _calibrated_sigma(near, x[take], y[take], float(np.median(d)))
    itv = None
    same = (veh[1:] == veh[:-1]) & (t_ns[1:] > t_ns[:-1]) & (veh[1:] >= 0)
    if same.any():
        itv = float(np.median((t_ns[1:] - t_ns[:-1])[same]) / 1e9)
    if itv is not None and itv <= 5.0:
        # logs of 5 s or denser: white noise shows in second differences (variance 6 sigma^2 per
        # axis), which the distance to the nearest piece underestimates where pieces are close
        # together (on a grid of 11 m blocks no fix is more than 5.5 m from a piece, whatever the
        # noise); a vehicle drives straight on most triples of fixes that close, so the median holds
        tri = np.flatnonzero(same[:-1] & same[1:]
                             & ((t_ns[2:] - t_ns[:-2]) <= max(4.0, 2.5 * itv) * 1e9) & ok[:-2] & ok[1:-1] & ok[2:])
        if len(tri) >= 20:
            d2 = np.r_[x[tri] - 2 * x[tri + 1] + x[tri + 2], y[tri] - 2 * y[tri + 1] + y[tri + 2]]
            s2 = float(np.median(np.abs(d2)) / 0.6745 / np.sqrt(6.0))
            sig = s2 if sig is None else max(sig, min(s2, 80.0))
            corr = float(np.clip(2.0 - np.sqrt(1.0 + 3.0 * (s2 / sig) ** 2), 0.0, 0.99))
    return (sig, itv, corr) if with_corr else (sig, itv)


class _NearestSegments:
    """Distance from points to the nearest of a set of lines (metric CRS), by their straight segments.

    Segments are listed in the cells of a square grid their bounding boxes touch; a point's
    nearest segment among those of its own and the 8 cells round it is the nearest of all when
    it is within one cell size (nothing farther can be nearer); the other points go to an
    STRtree of the segments. The same distances as ``STRtree.query_nearest`` on the lines, at a
    fraction of its per-point cost (the noise estimate asks for ~30,000 points per log).
    """

    def __init__(self, lines: np.ndarray | Callable[[], np.ndarray], cell_m: float = 40.0,
                 coords: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        # (with ``coords``, ``lines`` may be a function: the lines are built only if the tree is needed)
        c, li = coords if coords is not None else shapely.get_coordinates(lines, return_index=True)
        k = np.flatnonzero((li[1:] == li[:-1]) & np.isfinite(c[1:]).all(axis=1) & np.isfinite(c[:-1]).all(axis=1))
        ax, ay = c[k, 0], c[k, 1]
        dx, dy = c[k + 1, 0] - ax, c[k + 1, 1] - ay
        self.n = len(k)
        self._lines = lines
        self._tree: shapely.STRtree | None = None
        self.cell = cell_m
        if self.n:
            # coarser cells where the network is large: at most ~4 M cells
            span = (max(float(max(ax.max(), (ax + dx).max()) - min(ax.min(), (ax + dx).min())), 1.0)
                    * max(float(max(ay.max(), (ay + dy).max()) - min(ay.min(), (ay + dy).min())), 1.0))
            self.cell = max(cell_m, float(np.sqrt(span / 4e6)))
            # cut into parts no longer than a cell: each then touches at most 2 x 2 cells
            cut = np.maximum(1, np.ceil(np.hypot(dx, dy) / self.cell)).astype(np.int64)
            s = np.repeat(np.arange(self.n), cut)
            f = (np.arange(len(s)) - np.repeat(np.cumsum(cut) - cut, cut)) / cut[s]
            ax, ay, dx, dy = ax[s] + f * dx[s], ay[s] + f * dy[s], dx[s] / cut[s], dy[s] / cut[s]
            self.n = len(s)
        self.ax, self.ay, self.dx, self.dy = ax, ay, dx, dy
        l2 = dx * dx + dy * dy
        self.il2 = np.where(l2 > 0, 1.0 / np.where(l2 > 0, l2, 1.0), 0.0)
        if self.n == 0:
            return
        x0, x1 = np.minimum(self.ax, self.ax + self.dx), np.maximum(self.ax, self.ax + self.dx)
        y0, y1 = np.minimum(self.ay, self.ay + self.dy), np.maximum(self.ay, self.ay + self.dy)
        self.ox, self.oy = float(x0.min()) - self.cell, float(y0.min()) - self.cell
        self.nx = int((x1.max() - self.ox) // self.cell) + 2
        self.ny = int((y1.max() - self.oy) // self.cell) + 2
        cx0, cx1 = ((x0 - self.ox) // self.cell).astype(np.int64), ((x1 - self.ox) // self.cell).astype(np.int64)
        cy0, cy1 = ((y0 - self.oy) // self.cell).astype(np.int64), ((y1 - self.oy) // self.cell).astype(np.int64)
        # each cell's segments in increasing order: the piece index's counting sort, every cell of a
        # segment's box kept (no distance bound)
        self.cell_seg, self.start = _register_subs(cx0, cx1, cy0, cy1, self.ax, self.ay, self.dx, self.dy,
                                                   self.il2, self.ox, self.oy, self.cell, np.inf, self.nx,
                                                   self.nx * self.ny)

    @property
    def lines(self) -> np.ndarray:
        if callable(self._lines):
            self._lines = self._lines()
        return np.asarray(self._lines, dtype=object)

    def query(self, x: np.ndarray, y: np.ndarray, max_distance: float) -> tuple[np.ndarray, ...]:
        """Per point: distance to the nearest line (``inf`` beyond ``max_distance``), a number that is
        ``-1`` for none (else a segment's or a line's) and the nearest point on it (x, y)."""
        n = len(x)
        d = np.full(n, np.inf)
        sg = np.full(n, -1, dtype=np.int64)
        if self.n == 0 or n == 0:
            return d, sg, (np.full(n, np.nan), np.full(n, np.nan))
        fin = np.isfinite(x) & np.isfinite(y)
        gx = np.where(fin, (np.where(fin, x, 0.0) - self.ox) // self.cell, -1.0)
        gy = np.where(fin, (np.where(fin, y, 0.0) - self.oy) // self.cell, -1.0)
        fx = np.clip(gx, 1, self.nx - 2).astype(np.int64)
        fy = np.clip(gy, 1, self.ny - 2).astype(np.int64)
        inside = fin & (gx == fx) & (gy == fy)
        # the nearest segment among those of the 3 x 3 cells round each point (compiled: in the
        # cells' order, the first of equal distances)
        ox, oy = np.full(n, np.nan), np.full(n, np.nan)
        _nearest_in_cells(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                          fin, fx, fy, self.nx, self.start, self.cell_seg, self.ax, self.ay, self.dx, self.dy,
                          self.il2, d, sg, ox, oy)
        # exact only within a cell size of a point inside the grid; the rest from a tree of the lines
        rest = np.flatnonzero(fin & ~(inside & (d <= self.cell)))
        if len(rest):
            if self._tree is None:
                self._tree = shapely.STRtree(self.lines)
            pts = shapely.points(x[rest], y[rest])
            (qi, ti), qd = self._tree.query_nearest(pts, max_distance=max_distance, return_distance=True,
                                                     all_matches=False)
            d[rest], sg[rest], ox[rest], oy[rest] = np.inf, -1, np.nan, np.nan
            r = rest[qi]
            d[r], sg[r] = qd, ti
            on = shapely.get_coordinates(shapely.shortest_line(self.lines[ti], pts[qi]))[::2]
            ox[r], oy[r] = on[:, 0], on[:, 1]
        far = ~(d <= max_distance)
        d[far], sg[far], ox[far], oy[far] = np.inf, -1, np.nan, np.nan
        return d, sg, (ox, oy)


def _calibrated_sigma(near: _NearestSegments, x: np.ndarray, y: np.ndarray, med: float) -> float:
    """Per-axis noise whose median distance to the nearest piece is ``med`` on THIS network.

    On a lone road the median distance of a fix to the nearest piece is 0.6745 sigma (half-normal);
    where pieces are close together a noisy fix is often nearer another piece than its own, so the
    median saturates (Helsinki's centre: 21 m of noise read as 13 m). Calibrated on the network
    itself: points on the pieces (the fixes snapped to their nearest piece) are moved by Gaussian
    noise of each trial sigma (a fixed random stream: the same answer every run), and the sigma
    whose median nearest-piece distance equals the observed one is taken (interpolated). Where the
    curve is flat (saturated), the sigma at which it flattens is taken: the data say no more.
    """
    if len(x) > 2000:  # the median of 2,000 is within ~3 % of the median of all
        # spread over the map, and the same whatever the order of the log's rows
        o = np.lexsort((y, x))
        k = o[np.unique(np.linspace(0, len(x) - 1, 2000).astype(np.int64))]
        x, y = x[k], y[k]
    _, sg, (ox, oy) = near.query(x, y, 300.0)
    ok = sg >= 0
    if ok.sum() < 20:
        return float(np.clip(med / 0.6745, 1.0, 80.0))
    ox, oy = ox[ok], oy[ok]
    z = np.random.default_rng(20090407).standard_normal((2, len(ox)))
    # trial sigmas from just under the lone-road reading (a saturated median only reads low) up,
    # 15 % apart, until one's median reaches the observed one
    s0 = max(0.9 * med / 0.6745, 0.5)
    grid = s0 * 1.15 ** np.arange(30)
    g: list[float] = []
    for s_ in grid.tolist():
        dd, _, _ = near.query(ox + s_ * z[0], oy + s_ * z[1], 6.0 * s_ + 20.0)
        dd = dd[np.isfinite(dd)]
        g.append(max(float(np.median(dd)) if len(dd) else np.inf, g[-1] if g else 0.0))  # grows with sigma
        # stop where it reaches the observed median, or where it grows less than a fifth as fast as on a
        # lone road (saturated: the data tell no larger sigma apart), or at 80 m
        if g[-1] >= med or s_ >= 80.0 or (len(g) > 1 and g[-1] - g[-2] < 0.2 * 0.6745 * (s_ - s_ / 1.15)):
            break
    ga, gr = np.r_[0.0, g], np.r_[0.0, grid[:len(g)]]
    return float(np.clip(np.interp(med, ga, gr), 1.0, 80.0))


@kernel
def _nearest_in_cells(x: np.ndarray, y: np.ndarray, fin: np.ndarray, fx: np.ndarray, fy: np.ndarray, nx: int,
                      start: np.ndarray, cell_seg: np.ndarray, ax: np.ndarray, ay: np.ndarray, dx: np.ndarray,
                      dy: np.ndarray, il2: np.ndarray, d: np.ndarray, sg: np.ndarray, ox: np.ndarray,
                      oy: np.ndarray) -> None:
    """Per finite point: distance ``d``, segment ``sg`` and nearest point (``ox``, ``oy``) of the nearest
    segment of the 3 x 3 cells round cell (``fx``, ``fy``); left as they are where there is none."""
    for i in range(len(x)):
        if not fin[i]:
            continue
        best = np.inf
        be = -1
        bt = 0.0
        for oy_ in range(-1, 2):
            for ox_ in range(-1, 2):
                c = (fy[i] + oy_) * nx + fx[i] + ox_
                for k in range(start[c], start[c + 1]):
                    e = cell_seg[k]
                    ux = x[i] - ax[e]
                    uy = y[i] - ay[e]
                    t = (ux * dx[e] + uy * dy[e]) * il2[e]
                    t = min(max(t, 0.0), 1.0)
                    ux -= t * dx[e]
                    uy -= t * dy[e]
                    d2 = ux * ux + uy * uy
                    if d2 < best:
                        best, be, bt = d2, e, t
        if be >= 0:
            d[i] = np.sqrt(best)
            sg[i] = be
            ox[i] = ax[be] + bt * dx[be]
            oy[i] = ay[be] + bt * dy[be]
