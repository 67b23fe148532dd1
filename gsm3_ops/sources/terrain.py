"""Terrain derivatives of a DEM block at the DEM's own resolution, with metric pixel spacing.

Degrees become metres on the ellipsoid for geographic rasters; for projected ones the scale
factors and the meridian convergence come from the projection, so slope and aspect are true
on the ground and aspect is measured from true north. :mod:`gsm3_ops.sources.static`
aggregates the fields onto the 9 km cells.
"""

from __future__ import annotations

import functools

import numpy as np
import pyproj
from affine import Affine
from pyproj import Proj, Transformer
from rasterio.enums import Resampling

# The fine fields of terrain_fields; _max and _min give roughness (max - min) per cell.
TERRAIN_FIELDS = ("elevation", "slope", "aspect_cos", "plan_curvature", "_max", "_min")


def terrain_fields(
    z: np.ndarray, transform: Affine, crs: pyproj.CRS
) -> dict[str, tuple[np.ndarray, Resampling]]:
    """Elevation, slope (degrees), cos(aspect), plan curvature (1/m) at the DEM resolution.

    Horn's 3 x 3 gradient, Zevenbergen-Thorne second derivatives; aspect is the azimuth of
    the downslope direction from true north (flat pixels count 0), plan curvature the
    tangential curvature of the contours, positive where the surface is convex (ridges).
    """
    dx, dy, gamma = _metrics(transform, z.shape, crs)
    zp = np.pad(z, 1, constant_values=np.nan)
    a, b, c = zp[:-2, :-2], zp[:-2, 1:-1], zp[:-2, 2:]
    d, e, f = zp[1:-1, :-2], zp[1:-1, 1:-1], zp[1:-1, 2:]
    g, h, i = zp[2:, :-2], zp[2:, 1:-1], zp[2:, 2:]
    p = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dx)  # dz/d(east)
    q = ((a + 2 * b + c) - (g + 2 * h + i)) / (8 * dy)  # dz/d(north); row 0 is the north
    r = (d - 2 * e + f) / dx**2
    t = (b - 2 * e + h) / dy**2
    s = (c - a + g - i) / (4 * dx * dy)
    g2 = p * p + q * q
    grad = np.sqrt(g2)
    flat = g2 < 1e-20  # aspect and plan curvature are undefined there: count 0
    with np.errstate(invalid="ignore", divide="ignore"):
        # Downslope azimuth theta = atan2(-p, -q) in grid terms; true azimuth theta + gamma.
        if np.ndim(gamma) == 0 and gamma == 0.0:
            cos_aspect = -q / grad
        else:
            cos_aspect = (p * np.sin(gamma) - q * np.cos(gamma)) / grad
        plan = -(q * q * r - 2 * p * q * s + p * p * t) / (g2 * np.sqrt(1 + g2))
    cos_aspect[flat] = 0.0
    plan[flat] = 0.0
    avg = Resampling.average
    return {
        "elevation": (z, avg),
        "slope": (np.degrees(np.arctan(grad)), avg),
        "aspect_cos": (cos_aspect, avg),
        "plan_curvature": (plan, avg),
        "_max": (z, Resampling.max),
        "_min": (z, Resampling.min),
    }


def _metrics(
    transform: Affine, shape: tuple[int, int], crs: pyproj.CRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    """Pixel width and height in metres on the ground, and the meridian convergence (radians:
    the true azimuth of the raster's up direction), each broadcastable to ``shape``."""
    rows = np.arange(shape[0])[:, None] + 0.5
    if crs.is_geographic:
        ell = crs.ellipsoid
        a_, e2 = ell.semi_major_metre, 1 - (ell.semi_minor_metre / ell.semi_major_metre) ** 2
        lat = np.radians(transform.f + rows * transform.e)
        w = np.sqrt(1 - e2 * np.sin(lat) ** 2)
        n_rad, m_rad = a_ / w, a_ * (1 - e2) / w**3  # prime-vertical and meridian radii
        dx = n_rad * np.cos(lat) * np.radians(abs(transform.a))
        return dx, m_rad * np.radians(abs(transform.e)), 0.0
    # Projected: scale factors and convergence on a coarse lattice, interpolated per pixel.
    unit = crs.axis_info[0].unit_conversion_factor
    step = 32
    sr = np.unique(np.append(np.arange(0, shape[0], step), shape[0] - 1))
    sc = np.unique(np.append(np.arange(0, shape[1], step), shape[1] - 1))
    cc, rr = np.meshgrid(sc + 0.5, sr + 0.5)
    xs = transform.c + cc * transform.a
    ys = transform.f + rr * transform.e
    to_lonlat, proj = _projection(crs.to_wkt())
    lon, lat = to_lonlat.transform(xs, ys)
    fac = proj.get_factors(lon, lat)
    # Bilinear from the lattice to every pixel, separably: full = Ry @ values @ Rx.T.
    ry = _interp_matrix(np.arange(shape[0]), sr)
    rx = _interp_matrix(np.arange(shape[1]), sc)

    def full(v: np.ndarray) -> np.ndarray:
        return ry @ np.asarray(v, dtype=np.float64) @ rx.T

    dx = abs(transform.a) * unit / full(fac.parallel_scale)
    dy = abs(transform.e) * unit / full(fac.meridional_scale)
    return dx, dy, np.radians(full(fac.meridian_convergence))


@functools.lru_cache(maxsize=4)
def _projection(wkt: str) -> tuple[Transformer, Proj]:
    """To-lon/lat transformer and Proj of a raster CRS (slow to build: cached)."""
    return Transformer.from_crs(wkt, "EPSG:4326", always_xy=True), Proj(wkt)


def _interp_matrix(points: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(len(points), len(knots)) weights of linear interpolation between knots."""
    return np.stack([np.interp(points, knots, unit) for unit in np.eye(knots.size)], axis=1)
