"""GCJ-02 <-> WGS84: the offset that Chinese web maps (Amap, Tencent) apply.

GCJ-02 is WGS84 shifted by a published, smooth, non-invertible-in-closed-form
formula (the widely reimplemented "eviltransform"/"coordtransform" code, on the
Krasovsky ellipsoid ``a = 6378245 m``, ``ee = 0.00669342162296594323``). Around
Shanghai the shift is about 490 m (mostly east-south-east).

- :func:`wgs84_to_gcj02` is that formula, vectorized with numpy. The maps use it
  to shift WGS84 overlays onto Amap tiles.
- :func:`gcj02_to_wgs84` inverts it by fixed-point iteration (not the common
  one-step approximation, which is off by up to a few metres): the result maps
  back onto the input within ``tol`` degrees (default 1e-10 deg, about 0.01 mm),
  so the WGS84 position is exact to far better than 0.5 m.
- Outside China (the rough bounding box of :func:`in_china`) GCJ-02 is the
  identity, as in the reference implementations.
- :func:`geometry_wgs84_to_gcj02` / :func:`geometry_gcj02_to_wgs84` shift shapely
  geometries (or arrays / GeoSeries of them) with one vectorized call.

Example
-------
>>> lon, lat = wgs84_to_gcj02(116.404, 39.915)   # published test vector
>>> round(float(lon), 9), round(float(lat), 9)
(116.410244499, 39.916404282)
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "A_KRASOVSKY",
    "EE_KRASOVSKY",
    "CHINA_BBOX",
    "in_china",
    "wgs84_to_gcj02",
    "gcj02_to_wgs84",
    "geometry_wgs84_to_gcj02",
    "geometry_gcj02_to_wgs84",
    "ConvergenceError",
]

#: Semi-major axis and squared eccentricity of the Krasovsky 1940 ellipsoid, as GCJ-02 uses them.
A_KRASOVSKY = 6378245.0
EE_KRASOVSKY = 0.00669342162296594323

#: (min lon, min lat, max lon, max lat): the rough box in which GCJ-02 differs from WGS84.
#: The same box as the reference implementations (coordtransform's ``out_of_china``); it
#: also covers parts of neighbouring countries, which is what those implementations do too.
CHINA_BBOX = (73.66, 3.86, 135.05, 53.55)

_DEFAULT_TOL = 1e-10
#: The shift is at most about 0.01 deg (1 km) in the box; the inverse looks this far outside it.
_EDGE_MARGIN = 0.05
_MAX_ITER = 50

G = TypeVar("G")


class ConvergenceError(ArithmeticError):
    """The inverse iteration did not converge (cannot happen for finite input inside China)."""


def _in_box(x: NDArray[np.float64], y: NDArray[np.float64], margin: float = 0.0) -> NDArray[np.bool_]:
    w, s, e, n = CHINA_BBOX
    return (x > w - margin) & (x < e + margin) & (y > s - margin) & (y < n + margin)


def in_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """True where (lon, lat) lies in the rough China box where GCJ-02 applies.

    Parameters
    ----------
    lon, lat
        Degrees; scalars or arrays (broadcast together).

    Returns
    -------
    numpy.ndarray of bool
        Broadcast shape of the inputs (0-d for scalars).
    """
    return _in_box(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))


def _offset(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The GCJ-02 shift (dlon, dlat) in degrees at WGS84 (lon, lat), without the China mask."""
    x = lon - 105.0
    y = lat - 35.0
    pi = np.pi
    sx = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sx
    dlat = dlat + common
    dlat = dlat + (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat = dlat + (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sx
    dlon = dlon + common
    dlon = dlon + (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon = dlon + (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1.0 - EE_KRASOVSKY * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((A_KRASOVSKY * (1.0 - EE_KRASOVSKY)) / (magic * sqrtmagic) * pi)
    dlon = (dlon * 180.0) / (A_KRASOVSKY / sqrtmagic * np.cos(radlat) * pi)
    return dlon, dlat


def _as_float_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x, y = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return x, y


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """WGS84 -> GCJ-02 (the published forward formula), vectorized.

    Parameters
    ----------
    lon, lat
        WGS84 degrees; scalars or arrays (broadcast together).

    Returns
    -------
    (lon, lat)
        GCJ-02 degrees, arrays of the broadcast shape. Points outside
        :data:`CHINA_BBOX` (and NaN) are returned unchanged.
    """
    x, y = _as_float_arrays(lon, lat)
    inside = in_china(x, y)
    dlon, dlat = _offset(x, y)
    return np.where(inside, x + dlon, x), np.where(inside, y + dlat, y)


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike, tol: float = _DEFAULT_TOL,
                   max_iter: int = _MAX_ITER) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """GCJ-02 -> WGS84 by fixed-point iteration on the forward formula, vectorized.

    Solves ``wgs84_to_gcj02(w) == g`` with ``w <- w - (wgs84_to_gcj02(w) - g)``,
    starting at ``w = g``. The shift varies by a few metres per kilometre, so
    each step shrinks the error about a thousandfold: 3-4 steps reach 1e-10 deg.

    Parameters
    ----------
    lon, lat
        GCJ-02 degrees; scalars or arrays (broadcast together).
    tol
        Stop when every point maps forward onto its input within ``tol`` degrees
        (in lon and in lat). 1e-10 deg is about 0.01 mm.
    max_iter
        Safety bound on the number of steps.

    Returns
    -------
    (lon, lat)
        WGS84 degrees, arrays of the broadcast shape. Where the solution
        lies outside :data:`CHINA_BBOX` the input is returned unchanged (GCJ-02
        is the identity there), as are NaNs. Within about 1 km of the box's
        edge the forward map is not one-to-one (a shifted point and an
        unshifted one can coincide); the inverse then prefers the shifted
        (in-box) solution, so every WGS84 point in the box round-trips.

    Raises
    ------
    ConvergenceError
        If some point has not converged after ``max_iter`` steps.
    """
    gx, gy = _as_float_arrays(lon, lat)
    wx, wy = gx.copy(), gy.copy()
    # Iterate wherever the WGS84 answer may lie in the box (the shift is at most ~0.01 deg).
    near = _in_box(gx, gy, _EDGE_MARGIN)
    if not near.any():
        return wx, wy
    ix, iy = gx[near], gy[near]
    x, y = ix.copy(), iy.copy()
    for _ in range(max_iter):
        dlon, dlat = _offset(x, y)
        ex = x + dlon - ix
        ey = y + dlat - iy
        if max(float(np.max(np.abs(ex))), float(np.max(np.abs(ey)))) < tol:
            break
        x = x - ex
        y = y - ey
    else:
        raise ConvergenceError(f"GCJ-02 inverse did not reach {tol} deg in {max_iter} steps")
    # Keep the solution only where the forward formula applies to it, so that
    # wgs84_to_gcj02(gcj02_to_wgs84(g)) == g; elsewhere GCJ-02 is the identity.
    ok = in_china(x, y)
    wx[near] = np.where(ok, x, ix)
    wy[near] = np.where(ok, y, iy)
    return wx, wy


def _coords_fn(fn):  # noqa: ANN001, ANN202 - private adapter
    """Wrap a (lon, lat) -> (lon, lat) function for shapely.transform on (N, 2|3) arrays."""
    def apply(coords: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.array(coords, dtype=float, copy=True)
        if len(out):
            out[:, 0], out[:, 1] = fn(out[:, 0], out[:, 1])
        return out
    return apply


def _transform_geometry(geom: G, fn) -> G:  # noqa: ANN001
    import geopandas as gpd

    if isinstance(geom, gpd.GeoSeries):
        values = shapely.transform(np.asarray(geom.values), _coords_fn(fn), include_z=None)
        return gpd.GeoSeries(values, index=geom.index, crs=geom.crs, name=geom.name)  # type: ignore[return-value]
    return shapely.transform(geom, _coords_fn(fn), include_z=None)


def geometry_wgs84_to_gcj02(geom: G) -> G:
    """Shift a geometry (or an array / GeoSeries of geometries) from WGS84 to GCJ-02.

    One vectorized call over all coordinates; Z values are kept. Use it to lay
    WGS84 overlays onto Amap (GCJ-02) tiles.
    """
    return _transform_geometry(geom, wgs84_to_gcj02)


def geometry_gcj02_to_wgs84(geom: G) -> G:
    """Shift a geometry (or an array / GeoSeries of geometries) from GCJ-02 to WGS84.

    Uses the iterative inverse :func:`gcj02_to_wgs84` on all coordinates at once.
    """
    return _transform_geometry(geom, gcj02_to_wgs84)
