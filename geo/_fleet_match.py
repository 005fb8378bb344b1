"""Snap GPS points to road pieces: vectorized, heading- and continuity-aware.

The index (:class:`PieceMatcher`)
---------------------------------
Pieces are projected to a metric CRS (EPSG:32651, UTM 51N, for Shanghai; the
local UTM zone elsewhere) and cut into *sub-segments* no longer than
``step_m``. Every sub-segment is registered in each cell of a uniform grid
(``cell_m``) that lies within ``radius_m`` of it, in a dense CSR table (cell ->
sub-segments). A point then looks up one cell and gets every sub-segment
within ``radius_m`` without any tree walk: candidate generation, distances,
headings and the choice of the best candidate are all numpy array operations.

Scoring (lower is better)
-------------------------
``score = distance_m + heading_weight * angle_deg (+ wrong_way_penalty) (- continuity_bonus)``

- ``angle_deg``: angle between the vehicle's heading and the sub-segment's
  bearing at the snapped location; for a two-way piece the smaller of the two
  directions (0-90°), for a one-way piece (geometry runs in the direction of
  travel) the full angle (0-180°). Where the heading is unknown it is 0.
- ``wrong_way_penalty``: added for a one-way piece whose bearing is more than
  ``wrong_way_deg`` from the heading. This is what sends points of a dual
  carriageway to the carriageway of their direction; a wrong-way piece is kept
  only as the last resort.
- ``continuity_bonus``: subtracted for the piece that the previous point of the
  same vehicle took in the first (heading-only) pass, unless the point lies
  beyond that piece's end (its snapped location is the end vertex): a vehicle
  that has passed the junction is not held back on the piece it left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer

from ._jit import kernel

#: The metric CRS for Shanghai (UTM zone 51N).
SHANGHAI_CRS = "EPSG:32651"


@dataclass(frozen=True)
class MatchParams:
    """Parameters of :class:`PieceMatcher` (metres and degrees).

    Attributes
    ----------
    radius_m
        Points farther than this from every piece stay unmatched.
    step_m
        Longest sub-segment of the index.
    cell_m
        Grid cell size of the index.
    heading_weight
        Metres of score per degree of heading difference.
    wrong_way_deg
        Heading difference beyond which a one-way piece counts as wrong-way.
    wrong_way_penalty
        Metres added to a wrong-way one-way piece.
    continuity_bonus
        Metres subtracted from the previous point's first-pass piece.
    """

    radius_m: float = 35.0
    step_m: float = 20.0
    cell_m: float = 25.0
    heading_weight: float = 0.15
    wrong_way_deg: float = 110.0
    wrong_way_penalty: float = 1000.0
    continuity_bonus: float = 6.0


@dataclass
class Candidates:
    """Candidate (point, sub-segment) pairs within the radius, grouped by point.

    ``point`` is sorted ascending; ``dist`` is the point-to-sub-segment
    distance (m) and ``frac`` the position of the snapped location on the
    sub-segment (0-1).
    """

    point: np.ndarray
    sub: np.ndarray
    dist: np.ndarray
    frac: np.ndarray
    n_points: int
    _groups: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each point's run of candidates starts, and the run number of each candidate (cached)."""
        if self._groups is None:
            starts = np.flatnonzero(np.r_[True, self.point[1:] != self.point[:-1]])
            grp = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(self.point)]))
            self._groups = (starts, grp)
        return self._groups

    def subset(self, sel: np.ndarray) -> Candidates:
        """The candidates ``sel`` (ascending indices), still grouped by point."""
        return Candidates(self.point[sel], self.sub[sel], self.dist[sel], self.frac[sel], self.n_points)


@dataclass
class Match:
    """Best piece per point; ``piece == -1`` where nothing is within the radius."""

    piece: np.ndarray
    sub: np.ndarray
    pos_m: np.ndarray
    dist_m: np.ndarray


def metric_crs(roads: gpd.GeoDataFrame) -> CRS:
    """EPSG:32651 for networks in UTM zone 51N (Shanghai), else the UTM zone of the centre of
    their bounds (by arithmetic, as :func:`geo.stats.local_utm_crs`: ``estimate_utm_crs``'s
    query of the CRS database costs ~0.1 s a call, a third of matching a small log)."""
    from shapely.geometry import Point

    from .stats import local_utm_crs

    minx, miny, maxx, maxy = roads.total_bounds
    if 120.0 <= minx and maxx <= 126.0 and 0.0 <= miny:
        return CRS.from_user_input(SHANGHAI_CRS)
    if not np.isfinite([minx, miny, maxx, maxy]).all():
        return roads.estimate_utm_crs()  # (an empty table: geopandas' own error)
    return local_utm_crs(Point((minx + maxx) / 2.0, (miny + maxy) / 2.0))


class PieceMatcher:
    """Grid index of a roads table's pieces and the vectorized matcher.

    Parameters
    ----------
    roads
        The roads table (EPSG:4326; see :mod:`geo.roads`).
    params
        Matching parameters.
    zone_geometry
        The test zone (lon/lat); sub-segments whose midpoint lies inside are
        flagged ``in_zone``.
    subzones
        Sub-zone polygons (lon/lat), in order; each sub-segment gets the index
        of the one holding its midpoint (``-1`` for none).
    crs
        The metric CRS; :func:`metric_crs` when ``None``.
    """

    def __init__(self, roads: gpd.GeoDataFrame, params: MatchParams | None = None, *,
                 zone_geometry: shapely.Geometry | None = None,
                 subzones: list[shapely.Geometry] | None = None, crs: CRS | str | None = None) -> None:
        self.params = params or MatchParams()
        self.crs = CRS.from_user_input(crs) if crs is not None else metric_crs(roads)
        self._to_metric = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        self.n_pieces = len(roads)
        self.piece_u = roads["u"].to_numpy(dtype=np.int64)
        self.piece_v = roads["v"].to_numpy(dtype=np.int64)
        self.piece_oneway = roads["oneway"].to_numpy(dtype=bool)
        self.piece_length_m = roads["length_m"].to_numpy(dtype=np.float64)
        self._build(roads.geometry.values, zone_geometry, subzones or [])

    # ------------------------------------------------------------------ build
    def _build(self, geoms: np.ndarray, zone_geometry: shapely.Geometry | None,
               subzones: list[shapely.Geometry]) -> None:
        p = self.params
        coords, piece_of = shapely.get_coordinates(geoms, return_index=True)
        x, y = self.project(coords[:, 0], coords[:, 1])
        same = piece_of[1:] == piece_of[:-1]
        i0 = np.flatnonzero(same)
        sx0, sy0, sx1, sy1 = x[i0], y[i0], x[i0 + 1], y[i0 + 1]
        spiece = piece_of[i0]
        slen = np.hypot(sx1 - sx0, sy1 - sy0)
        # projected length of each piece and position where each segment starts
        proj_len = np.bincount(spiece, weights=slen, minlength=self.n_pieces)
        cum = np.cumsum(slen) - slen
        # segments come in piece order, so a piece's first segment is found by bisection
        first_seg = np.searchsorted(spiece, np.arange(self.n_pieces))
        along = cum - cum[first_seg[spiece]]
        # cut into sub-segments of at most step_m
        nsub = np.maximum(1, np.ceil(slen / p.step_m).astype(np.int64))
        seg_of = np.repeat(np.arange(len(slen)), nsub)
        k = np.arange(len(seg_of)) - np.repeat(np.cumsum(nsub) - nsub, nsub)
        f0 = k / nsub[seg_of]
        f1 = (k + 1) / nsub[seg_of]
        dxs, dys = sx1 - sx0, sy1 - sy0
        self.ax = sx0[seg_of] + f0 * dxs[seg_of]
        self.ay = sy0[seg_of] + f0 * dys[seg_of]
        self.dx = (f1 - f0) * dxs[seg_of]
        self.dy = (f1 - f0) * dys[seg_of]
        self.sub_len = np.hypot(self.dx, self.dy)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.ux = np.where(self.sub_len > 0, self.dx / self.sub_len, 0.0)
            self.uy = np.where(self.sub_len > 0, self.dy / self.sub_len, 0.0)
            self.inv_len2 = np.where(self.sub_len > 0, 1.0 / self.sub_len**2, 0.0)
        self.sub_piece = spiece[seg_of].astype(np.int64)
        self.sub_along = along[seg_of] + f0 * slen[seg_of]
        self.sub_oneway = self.piece_oneway[self.sub_piece]
        self.sub_first = np.r_[True, self.sub_piece[1:] != self.sub_piece[:-1]]
        self.sub_last = np.r_[self.sub_piece[1:] != self.sub_piece[:-1], True]
        with np.errstate(invalid="ignore", divide="ignore"):
            self.piece_scale = np.where(proj_len > 0, self.piece_length_m / proj_len, 1.0)
        self.piece_proj_len = proj_len
        # zone and sub-zone of each sub-segment, by its midpoint
        mx, my = self.ax + self.dx / 2, self.ay + self.dy / 2
        to_ll = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        mlon, mlat = to_ll.transform(mx, my)
        if zone_geometry is not None:
            shapely.prepare(zone_geometry)
            self.sub_in_zone = shapely.contains_xy(zone_geometry, mlon, mlat)
        else:
            self.sub_in_zone = np.ones(len(mx), dtype=bool)
        self.sub_zone_index = np.full(len(mx), -1, dtype=np.int64)
        for i, g in enumerate(subzones):
            shapely.prepare(g)
            hit = (self.sub_zone_index < 0) & shapely.contains_xy(g, mlon, mlat)
            self.sub_zone_index[hit] = i
        self.n_subzones = len(subzones)
        self._build_grid()

    def _build_grid(self) -> None:
        p = self.params
        n = len(self.ax)
        bx0 = np.minimum(self.ax, self.ax + self.dx)
        bx1 = np.maximum(self.ax, self.ax + self.dx)
        by0 = np.minimum(self.ay, self.ay + self.dy)
        by1 = np.maximum(self.ay, self.ay + self.dy)
        r = p.radius_m
        if n == 0:
            self.ox = self.oy = 0.0
            self.cell = p.cell_m
            self.nx = self.ny = 1
            self.offsets = np.zeros(2, dtype=np.int64)
            self.cell_sub = np.zeros(0, dtype=np.int32)
            self._entry_arrays()
            return
        self.ox = float(bx0.min() - r - 1.0)
        self.oy = float(by0.min() - r - 1.0)
        span_x = float(bx1.max() + r + 1.0 - self.ox)
        span_y = float(by1.max() + r + 1.0 - self.oy)
        # a dense table of at most ~20 M cells; coarser cells for larger networks
        cell = max(p.cell_m, float(np.sqrt(span_x * span_y / 2.0e7)))
        self.cell = cell
        self.nx = int(span_x // cell) + 1
        self.ny = int(span_y // cell) + 1
        cx0 = ((bx0 - r - self.ox) // cell).astype(np.int64)
        cx1 = ((bx1 + r - self.ox) // cell).astype(np.int64)
        cy0 = ((by0 - r - self.oy) // cell).astype(np.int64)
        cy1 = ((by1 + r - self.oy) // cell).astype(np.int64)
        reach = r + cell * np.sqrt(0.5)
        # keep cells whose centre is within radius + half a cell diagonal of the sub-segment; cell
        # order, sub-segments in increasing order within a cell (a compiled counting sort)
        self.cell_sub, off = _register_subs(cx0, cx1, cy0, cy1, self.ax, self.ay, self.dx, self.dy, self.inv_len2,
                                            self.ox, self.oy, cell, reach, self.nx, self.nx * self.ny)
        self.offsets = off.astype(np.int32 if off[-1] < 2**31 else np.int64)
        self._entry_arrays()

    def _entry_arrays(self) -> None:
        """Sub-segment geometry copied per table entry (cell order), float32 relative to the origin.

        A point's candidates are then one contiguous run of these arrays, read
        with little memory traffic; float32 keeps millimetres within the ~40 km
        of a district. Distances for the chosen candidate are recomputed in float64.
        """
        cs = self.cell_sub
        self.e_ax = (self.ax[cs] - self.ox).astype(np.float32)
        self.e_ay = (self.ay[cs] - self.oy).astype(np.float32)
        self.e_dx = self.dx[cs].astype(np.float32)
        self.e_dy = self.dy[cs].astype(np.float32)
        self.e_il2 = self.inv_len2[cs].astype(np.float32)

    # ------------------------------------------------------------------ queries
    def project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat (EPSG:4326) to the matcher's metric CRS."""
        x, y = self._to_metric.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def _dist(self, px: np.ndarray, py: np.ndarray, sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ax, ay, dx, dy = self.ax[sub], self.ay[sub], self.dx[sub], self.dy[sub]
        t = np.clip(((px - ax) * dx + (py - ay) * dy) * self.inv_len2[sub], 0.0, 1.0)
        return np.hypot(px - (ax + t * dx), py - (ay + t * dy)), t

    def candidates(self, x: np.ndarray, y: np.ndarray, block: int = 32_768) -> Candidates:
        """Every sub-segment within ``radius_m`` of each point (NaN points get none).

        Points go through in blocks, so each block's output buffers (sized for
        every table entry of its points' cells) stay small.
        """
        n = len(x)
        parts = [self._candidates(x[i:i + block], y[i:i + block], i) for i in range(0, n, block)]
        if not parts:
            e = np.zeros(0)
            return Candidates(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), e, e, 0)
        if len(parts) == 1:
            return Candidates(*parts[0], n)
        return Candidates(*(np.concatenate([p_[k] for p_ in parts]) for k in range(4)), n)

    def _candidates(self, x: np.ndarray, y: np.ndarray, first: int) -> tuple[np.ndarray, ...]:
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        k, pt, sub, d, frac = _candidates_kernel(
            x, y, float(self.ox), float(self.oy), float(self.cell), int(self.nx), int(self.ny), self.offsets,
            self.cell_sub, self.e_ax, self.e_ay, self.e_dx, self.e_dy, self.e_il2,
            np.float32(self.params.radius_m) ** 2, self.ax, self.ay, self.dx, self.dy, self.inv_len2, first)
        return pt[:k], sub[:k], d[:k], frac[:k]

    def heading_score(self, c: Candidates, hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
        """Distance plus heading terms of each candidate (see the module docstring)."""
        p = self.params
        if not (np.isfinite(hx).any()):
            return c.dist.copy()  # no heading known: distance only
        angle = _heading_cos(c.point, c.sub, np.ascontiguousarray(hx, dtype=np.float64),
                             np.ascontiguousarray(hy, dtype=np.float64), self.ux, self.uy, self.sub_oneway)
        # numpy's arccos and degrees (its SIMD routines, whose last bits a kernel's libm may not share)
        np.arccos(angle, out=angle)
        np.degrees(angle, out=angle)
        return _heading_score(c.sub, c.dist, angle, self.sub_oneway, float(p.heading_weight),
                              float(p.wrong_way_deg), float(p.wrong_way_penalty))

    def beyond_end(self, c: Candidates) -> np.ndarray:
        """Candidates whose snapped location is a piece's end vertex (the point lies past the piece)."""
        return (self.sub_first[c.sub] & (c.frac <= 0.0)) | (self.sub_last[c.sub] & (c.frac >= 1.0))

    @staticmethod
    def best(c: Candidates, score: np.ndarray) -> np.ndarray:
        """Index (into the candidate arrays) of the lowest score per point; -1 without candidates."""
        return _best_kernel(c.point, np.ascontiguousarray(score, dtype=np.float64), c.n_points)

    def resolve(self, c: Candidates, chosen: np.ndarray) -> Match:
        """Piece, sub-segment, position along the piece (projected m) and distance of chosen candidates."""
        has = chosen >= 0
        ch = np.where(has, chosen, 0)
        sub = np.where(has, c.sub[ch] if len(c.sub) else 0, -1)
        piece = np.where(has, self.sub_piece[np.maximum(sub, 0)], -1)
        pos = np.where(has, self.sub_along[np.maximum(sub, 0)]
                       + (c.frac[ch] if len(c.frac) else 0.0) * self.sub_len[np.maximum(sub, 0)], np.nan)
        dist = np.where(has, c.dist[ch] if len(c.dist) else 0.0, np.nan)
        return Match(piece.astype(np.int64), sub.astype(np.int64), pos, dist)

    def match(self, x: np.ndarray, y: np.ndarray, hx: np.ndarray | None = None,
              hy: np.ndarray | None = None, prev_piece: np.ndarray | None = None,
              block: int = 32_768) -> Match:
        """One-shot matching of independent points (no vehicle sequence), in blocks.

        Parameters
        ----------
        x, y
            Points in the matcher's CRS.
        hx, hy
            Unit heading vectors (east, north); NaN where unknown.
        prev_piece
            Piece to favour per point (continuity), ``-1`` for none.
        """
        n = len(x)
        if hx is None or hy is None:
            hx = hy = np.full(n, np.nan)
        parts = []
        for i in range(0, max(n, 1), block):
            sl = slice(i, i + block)
            c = self.candidates(x[sl], y[sl], block=block)
            score = self.heading_score(c, hx[sl], hy[sl])
            if prev_piece is not None:
                same = (self.sub_piece[c.sub] == prev_piece[sl][c.point]) & ~self.beyond_end(c)
                score = score - self.params.continuity_bonus * same
            parts.append(self.resolve(c, self.best(c, score)))
        return Match(*(np.concatenate([getattr(p_, f) for p_ in parts]) for f in ("piece", "sub", "pos_m", "dist_m")))

    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return int(sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray)))


# One pass over each point's cell run instead of a dozen whole-array passes (each a temporary
# of every table entry): the same float32 screen and float64 distance as the numpy code was.
@kernel
def _candidates_kernel(x: np.ndarray, y: np.ndarray, ox: float, oy: float, cell: float, nx: int, ny: int,
                       offsets: np.ndarray, cell_sub: np.ndarray, e_ax: np.ndarray, e_ay: np.ndarray,
                       e_dx: np.ndarray, e_dy: np.ndarray, e_il2: np.ndarray, r2: np.float32, ax: np.ndarray,
                       ay: np.ndarray, dx: np.ndarray, dy: np.ndarray, inv_len2: np.ndarray,
                       first: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sub-segments within the radius of each point, in point order, then table order.

    Parameters
    ----------
    x, y
        The points (float64; NaN or off the grid: no candidates).
    ox, oy, cell, nx, ny
        The grid: origin, cell size and number of cells across.
    offsets, cell_sub, e_ax, e_ay, e_dx, e_dy, e_il2
        The table: each cell's run of entries, and the sub-segment and its float32
        geometry per entry (see ``_entry_arrays``).
    r2
        The float32 square of the radius.
    ax, ay, dx, dy, inv_len2
        Sub-segment geometry (float64), for the exact distance.
    first
        Added to the point numbers.

    Returns
    -------
    k, point, sub, dist, frac
        The number of candidates, and buffers whose first ``k`` entries are the
        candidates' point, sub-segment, distance (m) and position on it (0-1).
    """
    n = len(x)
    start = np.zeros(n, dtype=np.int64)
    cnt = np.zeros(n, dtype=np.int64)
    total = 0
    for i in range(n):
        fx = (x[i] - ox) // cell
        fy = (y[i] - oy) // cell
        if np.isfinite(fx) and np.isfinite(fy) and fx >= 0 and fx < nx and fy >= 0 and fy < ny:
            cid = np.int64(fy * nx + fx)
            start[i] = offsets[cid]
            cnt[i] = offsets[cid + 1] - offsets[cid]
            total += cnt[i]
    o_pt = np.empty(total, dtype=np.int64)
    o_sub = np.empty(total, dtype=np.int64)
    o_d = np.empty(total, dtype=np.float64)
    o_fr = np.empty(total, dtype=np.float64)
    zero32, one32 = np.float32(0.0), np.float32(1.0)
    k = 0
    for i in range(len(start)):
        if cnt[i] == 0:
            continue
        qx, qy = np.float32(x[i] - ox), np.float32(y[i] - oy)
        for e in range(start[i], start[i] + cnt[i]):
            # float32 screen (as np.clip: -0.0 and NaN stay)
            px = qx - e_ax[e]
            py = qy - e_ay[e]
            ex, ey = e_dx[e], e_dy[e]
            t = (px * ex + py * ey) * e_il2[e]
            if t < zero32:
                t = zero32
            if t > one32:
                t = one32
            px -= t * ex
            py -= t * ey
            if not (px * px + py * py <= r2):
                continue
            # exact (float64) distance and position of a kept candidate
            s = cell_sub[e]
            sx, sy, sdx, sdy = ax[s], ay[s], dx[s], dy[s]
            u = ((x[i] - sx) * sdx + (y[i] - sy) * sdy) * inv_len2[s]
            if u < 0.0:
                u = 0.0
            if u > 1.0:
                u = 1.0
            o_pt[k] = i + first
            o_sub[k] = s
            o_d[k] = np.hypot(x[i] - (sx + u * sdx), y[i] - (sy + u * sdy))
            o_fr[k] = u
            k += 1
    return k, o_pt, o_sub, o_d, o_fr


# The first lowest score of each point's run in one pass (no group minima, hits and firsts).
@kernel
def _best_kernel(point: np.ndarray, score: np.ndarray, n_points: int) -> np.ndarray:
    """Index of the first lowest ``score`` of each point's run of candidates; -1 without candidates.

    Parameters
    ----------
    point
        The candidates' points, grouped (each point's candidates one run).
    score
        Their scores (float64).
    n_points
        Number of points.

    Returns
    -------
    numpy.ndarray
        Per point, the candidate index, or -1 (no candidates, or a NaN among its scores: a NaN
        minimum equals no score, as with numpy's minimum).
    """
    out = np.full(n_points, -1, dtype=np.int64)
    m = len(point)
    i = 0
    while i < m:
        p = point[i]
        b = i
        nan = score[i] != score[i]
        j = i + 1
        while j < m and point[j] == p:
            if score[j] < score[b]:
                b = j
            elif score[j] != score[j]:
                nan = True
            j += 1
        if not nan:
            out[p] = b
        i = j
    return out


# heading_score's index arithmetic in two passes instead of a dozen (the arccos between them in numpy)
@kernel
def _heading_cos(point: np.ndarray, sub: np.ndarray, hx: np.ndarray, hy: np.ndarray, ux: np.ndarray,
                 uy: np.ndarray, oneway: np.ndarray) -> np.ndarray:
    """Cosine of the angle between each candidate's heading and its sub-segment, clipped to [-1, 1].

    1 where the heading is unknown (NaN); its absolute value on a two-way
    sub-segment (either direction will do).
    """
    out = np.empty(len(point), dtype=np.float64)
    for k in range(len(point)):
        s = sub[k]
        cs = hx[point[k]] * ux[s] + hy[point[k]] * uy[s]
        if not np.isfinite(cs):
            cs = 1.0
        if not oneway[s]:
            cs = abs(cs)
        # as np.clip (-0.0 stays)
        if cs < -1.0:
            cs = -1.0
        if cs > 1.0:
            cs = 1.0
        out[k] = cs
    return out


@kernel
def _heading_score(sub: np.ndarray, dist: np.ndarray, angle: np.ndarray, oneway: np.ndarray,
                   heading_weight: float, wrong_way_deg: float, wrong_way_penalty: float) -> np.ndarray:
    """``dist + heading_weight * angle``, plus ``wrong_way_penalty`` on a one-way sub-segment
    whose ``angle`` (degrees) exceeds ``wrong_way_deg``."""
    out = np.empty(len(sub), dtype=np.float64)
    for k in range(len(sub)):
        score = dist[k] + heading_weight * angle[k]
        if oneway[sub[k]] and angle[k] > wrong_way_deg:
            score = score + wrong_way_penalty
        out[k] = score
    return out


@kernel
def _register_subs(cx0: np.ndarray, cx1: np.ndarray, cy0: np.ndarray, cy1: np.ndarray, ax: np.ndarray,
                   ay: np.ndarray, dx: np.ndarray, dy: np.ndarray, inv_len2: np.ndarray, ox: float, oy: float,
                   cell: float, reach: float, nx: int, ncell: int) -> tuple[np.ndarray, np.ndarray]:
    """The index's table: the sub-segments of each cell (those within ``reach`` of the cell's centre,
    in increasing order) and where each cell's run starts (``ncell + 1`` offsets). Two passes (count,
    then fill) instead of a table of every (cell, sub-segment) candidate and a sort. With ``reach`` =
    inf, every cell of each segment's box (the noise estimate's grid, :mod:`geo._fleet_noise`)."""
    count = np.zeros(ncell + 1, dtype=np.int64)
    for fill in range(2):
        if fill:
            start = np.cumsum(count)
            at = start[:-1].copy()
            out = np.empty(start[-1], dtype=np.int32)
        for s in range(len(cx0)):
            for cy in range(cy0[s], cy1[s] + 1):
                py = oy + (cy + 0.5) * cell
                for cx in range(cx0[s], cx1[s] + 1):
                    px = ox + (cx + 0.5) * cell
                    t = ((px - ax[s]) * dx[s] + (py - ay[s]) * dy[s]) * inv_len2[s]
                    t = min(max(t, 0.0), 1.0)
                    if math.hypot(px - (ax[s] + t * dx[s]), py - (ay[s] + t * dy[s])) <= reach:
                        c = cy * nx + cx
                        if fill:
                            out[at[c]] = s
                            at[c] += 1
                        else:
                            count[c + 1] += 1
    return out, start
