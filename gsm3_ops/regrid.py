"""Put source data on the EASE-Grid 2.0 grid: regular lat/lon fields, fine pixels, points.

EASE-Grid 2.0 (EPSG:6933) is a cylindrical equal-area projection: x depends on longitude
only (linearly) and y on latitude only. A lat/lon rectangle is therefore an x/y rectangle,
and its area on the WGS84 ellipsoid is its width in x times its height in y. Both
regridding methods are thus separable, ``out = Wy @ field @ Wx.T``, with small sparse
one-dimensional weight matrices:

- ``area``: ``Wy[r, i]`` is the overlap in y metres of target row ``r`` and source row
  ``i``, ``Wx[c, j]`` the overlap in longitude of target column ``c`` and source column
  ``j``. Their product is the exact overlap area, so the area-weighted mean conserves the
  area total (no supersampling approximation).
- ``bilinear``: the target cell centres form a lon/lat grid, so bilinear interpolation is
  linear interpolation along latitude times linear interpolation along longitude.

NaN source values are left out by normalising with the same weights applied to the valid
mask. Weights are cached per (source grid, target grid, window, method).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import xarray as xr
from pyproj import Transformer

from gsm3_ops.errors import InputError
from gsm3_ops.grid import CRS, EaseGrid, Window

Method = Literal["bilinear", "area"]

LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "longitude")

# MODIS land products: sinusoidal projection on a sphere (MODLAND tile grid constants).
MODIS_RADIUS = 6371007.181
MODIS_TILE_SIZE = 1111950.5196666666
MODIS_X0 = -20015109.354
MODIS_Y0 = 10007554.677

_SPACING_TOL = 0.01  # fraction of a source cell: allowed jitter in float32 coordinates

_to_xy = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
_to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


class RegridError(InputError, ValueError):
    """Input that cannot be regridded (not a regular lat/lon grid, points off the grid)."""


@dataclass(frozen=True)
class LatLonGrid:
    """A regular lat/lon source grid: first centre, spacing and count along each axis.

    Latitudes ascend and longitudes ascend (inputs in another order are sorted first).
    """

    lat0: float
    dlat: float
    n_lat: int
    lon0: float
    dlon: float
    n_lon: int

    @property
    def periodic(self) -> bool:
        """Whether the longitudes go all the way round (the last column neighbours the first)."""
        return abs(self.n_lon * self.dlon - 360.0) < _SPACING_TOL * self.dlon


def latlon_to_ease(
    da: xr.DataArray, grid: EaseGrid, window: Window, method: Method
) -> xr.DataArray:
    """Regrid a field on a regular lat/lon grid onto a window of an EASE2 grid.

    Parameters
    ----------
    da
        Field with a latitude dim (``lat`` or ``latitude``) and a longitude dim (``lon`` or
        ``longitude``), any other dims first or last (``(time, lon, lat)`` is fine). Either
        latitude order; longitudes in -180..180 or 0..360, any regular spacing.
    grid, window
        The target grid and the window of it to fill.
    method
        ``"bilinear"`` for state variables (temperature, pressure), ``"area"`` for fluxes
        (precipitation, radiation): the area-weighted mean, which conserves the area total.

    Returns
    -------
    xr.DataArray
        Dims ``(..., y, x)`` with cell-centre ``y``/``x`` coordinates (metres) of ``window``;
        float32 for float32 input, float64 otherwise. NaN in the source is left out of each
        cell's weights; a cell with no valid source under it is NaN.
    """
    if method not in ("bilinear", "area"):
        raise RegridError(f"unknown regrid method {method!r}; use 'bilinear' or 'area'")
    lat_dim, lon_dim = _find_dim(da, LAT_NAMES, "latitude"), _find_dim(da, LON_NAMES, "longitude")
    lead = [d for d in da.dims if d not in (lat_dim, lon_dim)]
    da = da.transpose(*lead, lat_dim, lon_dim)
    for dim in (lat_dim, lon_dim):
        # Descending latitudes (ERA5) and rolled longitudes (180..360, 0..180) become ascending.
        if not np.all(np.diff(np.asarray(da[dim].values, dtype=np.float64)) > 0):
            da = da.sortby(dim)
    lat = np.asarray(da[lat_dim].values, dtype=np.float64)
    lon = np.asarray(da[lon_dim].values, dtype=np.float64)
    src = _source_grid(lat, lon, str(da.name))
    values = np.asarray(da.values)
    wy, wx = _weights(src, grid, window, method)
    out = _apply(values, wy, wx)
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    # Coordinates along the other dims (time, step) and scalar ones (valid_time) carry over.
    coords = {k: c for k, c in da.coords.items() if set(c.dims) <= set(lead)}
    coords["y"] = ("y", grid.y_centres(window))
    coords["x"] = ("x", grid.x_centres(window))
    return xr.DataArray(
        out.astype(dtype, copy=False),
        dims=(*lead, "y", "x"),
        coords=coords,
        name=da.name,
        attrs=dict(da.attrs),
    )


def bin_points(
    lon: np.ndarray,
    lat: np.ndarray,
    values: np.ndarray,
    grid: EaseGrid,
    window: Window,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, count) of the valid points in each cell of ``window``.

    ``mean`` is float32 (NaN where ``count`` is 0), ``count`` int64 (valid points per cell).
    """
    index = cell_index(lon, lat, grid, window)
    return bin_by_index(index, values, window, weights)


def cell_index(lon: np.ndarray, lat: np.ndarray, grid: EaseGrid, window: Window) -> np.ndarray:
    """Flat (row-major) index into ``window`` of the cell holding each point; -1 outside.

    Points with a NaN coordinate are -1. Reuse the result for many fields on the same pixels.
    Fast for millions of pixels: the column is linear in longitude and the row is looked up
    among the cached latitudes of the row edges (no projection per point).
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if lon.shape != lat.shape:
        raise RegridError(f"lon {lon.shape} and lat {lat.shape} differ in shape")
    lon0, dlon, neg_lat_edges = _grid_edges(grid)
    ok = np.isfinite(lon) & np.isfinite(lat)
    col = np.floor((_wrap_lon(np.where(ok, lon, 0.0)) - lon0) / dlon).astype(np.int64)
    col = np.minimum(col, grid.n_cols - 1)  # lon = 180 exactly belongs to the last column
    row = np.searchsorted(neg_lat_edges, -np.where(ok, lat, 0.0), side="right") - 1
    r, c = row - window.row0, col - window.col0
    inside = ok & (row < grid.n_rows) & (r >= 0) & (r < window.n_rows)
    inside &= (c >= 0) & (c < window.n_cols)
    return np.where(inside, r * window.n_cols + c, -1).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _grid_edges(grid: EaseGrid) -> tuple[float, float, np.ndarray]:
    """Longitude of column 0's west edge, column width in degrees, and minus the latitudes of
    the row edges (ascending, for searchsorted), of a whole grid."""
    x = grid.x0 + np.array([0.0, grid.n_cols]) * grid.cell_size
    (lon_w, lon_e), _ = _to_lonlat.transform(x, np.zeros(2))
    y = grid.y0 - np.arange(grid.n_rows + 1) * grid.cell_size
    _, lat = _to_lonlat.transform(np.zeros_like(y), y)
    return float(lon_w), float((lon_e - lon_w) / grid.n_cols), -np.asarray(lat)


def bin_by_index(
    index: np.ndarray, values: np.ndarray, window: Window, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, count) per cell of ``window`` from a :func:`cell_index` and values of one shape."""
    index = np.asarray(index).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if index.shape != values.shape:
        raise RegridError(f"{values.size} values for {index.size} cell indices")
    ok = (index >= 0) & np.isfinite(values)
    w = np.ones(values.shape) if weights is None else np.asarray(weights, np.float64).ravel()
    ok &= np.isfinite(w) & (w > 0)
    n = window.n_rows * window.n_cols
    total = np.bincount(index[ok], weights=values[ok] * w[ok], minlength=n)
    wsum = np.bincount(index[ok], weights=w[ok], minlength=n)
    count = np.bincount(index[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / wsum, np.nan)
    return mean.reshape(window.shape).astype(np.float32), count.reshape(window.shape)


def sinusoidal_lonlat(h: int, v: int, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees, (n, n) arrays) of the pixel centres of MODIS tile h, v.

    ``n_pixels`` per side: 1200 at 1 km, 2400 at 500 m. Pixels of edge tiles that lie outside
    the projection's outline (more than 180 degrees from the central meridian; the products
    hold fill values there) have a NaN longitude; latitude depends on the row only.
    """
    if not (0 <= h <= 35 and 0 <= v <= 17):
        raise RegridError(f"MODIS tile h{h:02d}v{v:02d} does not exist (h 0..35, v 0..17)")
    if n_pixels <= 0:
        raise RegridError(f"n_pixels must be positive, got {n_pixels}")
    size = MODIS_TILE_SIZE / n_pixels
    offsets = (np.arange(n_pixels) + 0.5) * size
    x = MODIS_X0 + h * MODIS_TILE_SIZE + offsets
    y = MODIS_Y0 - v * MODIS_TILE_SIZE - offsets
    lat = np.degrees(y / MODIS_RADIUS)
    lon = np.degrees(x[None, :] / (MODIS_RADIUS * np.cos(np.radians(lat))[:, None]))
    lon[np.abs(lon) > 180.0] = np.nan
    return lon, np.broadcast_to(lat[:, None], lon.shape).copy()


# --- internals -------------------------------------------------------------------------------


def _find_dim(da: xr.DataArray, names: tuple[str, ...], what: str) -> str:
    for name in names:
        if name in da.dims:
            return name
    raise RegridError(f"{da.name or 'field'}: no {what} dim (looked for {names}); dims {da.dims}")


def _wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes folded into -180..180 (180 stays 180)."""
    wrapped = (lon + 180.0) % 360.0 - 180.0
    return np.where((wrapped == -180.0) & (lon > 0), 180.0, wrapped)


def _regular(coord: np.ndarray, name: str, what: str) -> tuple[float, float]:
    """(first, spacing) of an ascending regular coordinate; RegridError otherwise."""
    c = coord
    if c.size < 2:
        raise RegridError(f"{name}: {what} needs at least 2 values to define a grid")
    step = (c[-1] - c[0]) / (c.size - 1)
    if step <= 0 or np.max(np.abs(np.diff(c) - step)) > _SPACING_TOL * step:
        raise RegridError(f"{name}: {what} is not regularly spaced (or has repeats)")
    return float(c[0]), float(step)


def _source_grid(lat: np.ndarray, lon: np.ndarray, name: str) -> LatLonGrid:
    lat0, dlat = _regular(lat, name, "latitude")
    lon0, dlon = _regular(lon, name, "longitude")
    if np.nanmax(np.abs(lat)) > 90.0 + _SPACING_TOL * dlat:
        raise RegridError(f"{name}: latitudes beyond the poles ({lat.min()}..{lat.max()})")
    if lon.size * dlon > 360.0 + _SPACING_TOL * dlon:
        raise RegridError(f"{name}: longitudes cover more than 360 degrees")
    # Rounded so that float32 jitter in the coordinates does not defeat the weight cache.
    return LatLonGrid(
        round(lat0, 9), round(dlat, 12), lat.size, round(lon0, 9), round(dlon, 12), lon.size
    )


@functools.lru_cache(maxsize=32)
def _weights(
    src: LatLonGrid, grid: EaseGrid, window: Window, method: Method
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(Wy, Wx): sparse (n_rows, n_lat) and (n_cols, n_lon) weights, cached."""
    # Target edges: x edges -> longitude (linear), y edges -> latitude (the equal-area inverse).
    cols = np.arange(window.col0, window.col0 + window.n_cols + 1)
    rows = np.arange(window.row0, window.row0 + window.n_rows + 1)
    x_edges = grid.x0 + cols * grid.cell_size
    y_edges = grid.y0 - rows * grid.cell_size
    lon_edges, _ = _to_lonlat.transform(x_edges, np.zeros_like(x_edges))
    if method == "area":
        lat_c = src.lat0 + np.arange(src.n_lat) * src.dlat
        lat_e = np.clip(np.append(lat_c - src.dlat / 2, lat_c[-1] + src.dlat / 2), -90.0, 90.0)
        _, src_y = _to_xy.transform(np.zeros_like(lat_e), lat_e)
        # Target rows run north to south: their y intervals are (y_edges[r+1], y_edges[r]).
        wy = _overlap(y_edges[1:], y_edges[:-1], src_y, src.n_lat, periodic=None)
        wx = _overlap(lon_edges[:-1], lon_edges[1:], None, src.n_lon, periodic=src)
    else:
        y_c = (y_edges[:-1] + y_edges[1:]) / 2
        x_c = (x_edges[:-1] + x_edges[1:]) / 2
        _, lat_t = _to_lonlat.transform(np.zeros_like(y_c), y_c)
        lon_t, _ = _to_lonlat.transform(x_c, np.zeros_like(x_c))
        wy = _linear((lat_t - src.lat0) / src.dlat, src.n_lat, periodic=False)
        pos = np.mod(lon_t - src.lon0 + src.dlon / 2, 360.0) / src.dlon - 0.5
        wx = _linear(pos, src.n_lon, periodic=src.periodic)
    return wy, wx


def _overlap(
    lo: np.ndarray,
    hi: np.ndarray,
    src_edges: np.ndarray | None,
    n_src: int,
    periodic: LatLonGrid | None,
) -> sp.csr_matrix:
    """Overlap lengths of target intervals [lo, hi] with the source cells.

    Latitude: ``src_edges`` are the ascending source cell edges (in y metres). Longitude
    (``periodic`` given): source cells are [lon0 + (j - 1/2) d, lon0 + (j + 1/2) d], and the
    target intervals are moved into the 360 degrees that start at the first source edge;
    a target interval that runs past the end is also matched 360 degrees lower, which picks
    up the wrap for a global source and leaves a regional one alone.
    """
    if periodic is not None:
        g = periodic
        start = g.lon0 - g.dlon / 2
        shift = np.floor((lo - start) / 360.0) * 360.0
        lo, hi = lo - shift, hi - shift
        src_edges = start + np.arange(n_src + 1) * g.dlon
        parts = [_overlap_sorted(lo, hi, src_edges), _overlap_sorted(lo - 360, hi - 360, src_edges)]
        return (parts[0] + parts[1]).tocsr()
    return _overlap_sorted(lo, hi, src_edges).tocsr()


def _overlap_sorted(lo: np.ndarray, hi: np.ndarray, edges: np.ndarray) -> sp.coo_matrix:
    n_src = edges.size - 1
    first = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, n_src - 1)
    last = np.clip(np.searchsorted(edges, hi, side="left"), 1, n_src)  # exclusive
    width = int(max(1, np.max(last - first)))
    k = first[:, None] + np.arange(width)[None, :]
    k_ok = k < n_src
    kk = np.minimum(k, n_src - 1)
    w = np.minimum(hi[:, None], edges[kk + 1]) - np.maximum(lo[:, None], edges[kk])
    keep = k_ok & (w > 0)
    t = np.broadcast_to(np.arange(lo.size)[:, None], k.shape)
    return sp.coo_matrix((w[keep], (t[keep], kk[keep])), shape=(lo.size, n_src))


def _linear(pos: np.ndarray, n_src: int, periodic: bool) -> sp.csr_matrix:
    """Linear-interpolation weights at fractional source positions (cell centres at 0..n-1).

    Off a non-periodic source by up to half a cell, the edge value is used (that part of the
    cell still lies over the source); further out, no weights (NaN).
    """
    n_t = pos.size
    i0 = np.floor(pos).astype(np.int64)
    t = pos - i0
    i1 = i0 + 1
    if periodic:
        i0, i1 = np.mod(i0, n_src), np.mod(i1, n_src)
        ok = np.ones(n_t, dtype=bool)
    else:
        ok = (pos >= -0.5) & (pos <= n_src - 0.5)
        low, high = pos < 0, pos > n_src - 1
        i0 = np.clip(i0, 0, n_src - 1)
        i1 = np.clip(i1, 0, n_src - 1)
        t = np.where(low, 0.0, np.where(high, 1.0, t))
    rows = np.arange(n_t)
    data = np.concatenate([(1 - t)[ok], t[ok]])
    idx = (np.concatenate([rows[ok], rows[ok]]), np.concatenate([i0[ok], i1[ok]]))
    return sp.coo_matrix((data, idx), shape=(n_t, n_src)).tocsr()


_CHUNK_VALUES = 20_000_000  # source values per pass of _apply (bounds float64 temporaries)


def _apply(values: np.ndarray, wy: sp.csr_matrix, wx: sp.csr_matrix) -> np.ndarray:
    """Weighted mean of ``values`` (..., n_lat, n_lon) -> (..., n_rows, n_cols), NaN left out."""
    lead = values.shape[:-2]
    n_lat, n_lon = values.shape[-2:]
    stack = values.reshape(-1, n_lat, n_lon)
    full = np.outer(np.asarray(wy.sum(axis=1)).ravel(), np.asarray(wx.sum(axis=1)).ravel())
    out = np.empty((stack.shape[0], wy.shape[0], wx.shape[0]))
    step = max(1, _CHUNK_VALUES // (n_lat * n_lon))
    for i in range(0, stack.shape[0], step):
        part = np.asarray(stack[i : i + step], dtype=np.float64)
        valid = np.isfinite(part)
        num = _separable(np.where(valid, part, 0.0), wy, wx)
        # Without NaN the weights' sums are the same for every field.
        den = full if valid.all() else _separable(valid.astype(np.float64), wy, wx)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i : i + step] = np.where(den > 0, num / den, np.nan)
    return out.reshape(*lead, wy.shape[0], wx.shape[0])


def _separable(stack: np.ndarray, wy: sp.csr_matrix, wx: sp.csr_matrix) -> np.ndarray:
    """``Wy @ field @ Wx.T`` for every field of a (n, n_lat, n_lon) stack: two sparse products."""
    n, n_lat, n_lon = stack.shape
    a = wy @ stack.transpose(1, 0, 2).reshape(n_lat, n * n_lon)  # (rows, n * n_lon)
    a = a.reshape(-1, n, n_lon).transpose(2, 1, 0).reshape(n_lon, -1)  # (n_lon, n * rows)
    b = wx @ a  # (cols, n * rows)
    return b.reshape(wx.shape[0], n, wy.shape[0]).transpose(1, 2, 0)
