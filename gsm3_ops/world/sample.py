"""Fields on a 9 km window, sampled onto a provider's grid or points.

A provider pixel coarser than a 9 km cell gets the mean of the valid cells whose centres
fall in it (what a coarser product sees; land beside sea keeps its values); a pixel that
holds no cell centre gets the cell it lies in, or the nearest window cell when it lies
within ``margin`` pixels outside the window (so a reader's bilinear stencil at the window's
edge finds values); further out it is NaN. A point (a MODIS pixel, a station) gets the cell
it lies in.
"""

from __future__ import annotations

import numpy as np

from gsm3_ops.grid import EaseGrid, Window


def cell_of_points(
    grid: EaseGrid, window: Window, lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window-relative row and column of the cells holding lon/lat points, and whether each
    point lies inside the window (rows and columns are clamped to it)."""
    row, col = grid.lonlat_to_rowcol(np.asarray(lon, float), np.asarray(lat, float))
    r, c = row - window.row0, col - window.col0
    inside = (row >= 0) & (r >= 0) & (r < window.n_rows) & (c >= 0) & (c < window.n_cols)
    return np.clip(r, 0, window.n_rows - 1), np.clip(c, 0, window.n_cols - 1), inside


def to_points(
    values: np.ndarray, grid: EaseGrid, window: Window, lon: np.ndarray, lat: np.ndarray
) -> np.ndarray:
    """``values`` (..., rows, cols) at lon/lat points of any shape: the value of the cell that
    holds each point, NaN outside the window. Result: (..., *points.shape)."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    r, c, inside = cell_of_points(grid, window, lon.ravel(), lat.ravel())
    out = np.asarray(values, dtype=np.float64)[..., r, c]
    out[..., ~inside] = np.nan
    return out.reshape(*out.shape[:-1], *lon.shape)


def to_latlon(
    values: np.ndarray,
    grid: EaseGrid,
    window: Window,
    lat: np.ndarray,
    lon: np.ndarray,
    margin: int = 2,
) -> np.ndarray:
    """``values`` (..., rows, cols) on a regular lat/lon grid of pixel centres ``lat`` (either
    order) and ``lon`` (ascending, -180..180 or 0..360): (..., lat, lon), float64."""
    values = np.asarray(values, dtype=np.float64)
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    dlat, dlon = abs(lat[1] - lat[0]), lon[1] - lon[0]
    cell_lon, cell_lat = grid.lonlat(window)
    i = np.floor((cell_lat - (lat.min() - dlat / 2)) / dlat).astype(np.int64)
    if lat[0] > lat[-1]:
        i = lat.size - 1 - i
    shift = 360.0 if lon.max() > 180 else 0.0
    j = np.floor((np.mod(cell_lon - (lon[0] - dlon / 2) + shift, 360.0)) / dlon).astype(np.int64)
    ok = (i >= 0) & (i < lat.size) & (j >= 0) & (j < lon.size)
    flat = i[ok] * lon.size + j[ok]
    count = np.bincount(flat, minlength=lat.size * lon.size)
    lead = values.shape[:-2]
    v = values.reshape(-1, *values.shape[-2:])[:, ok]
    valid = np.isfinite(v)  # a pixel's mean is over its valid cells (land beside sea)
    sums = np.stack([np.bincount(flat, weights=k, minlength=count.size)
                     for k in np.where(valid, v, 0.0)])  # fmt: skip
    n = np.stack([np.bincount(flat, weights=k, minlength=count.size) for k in valid])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, sums / n, np.nan)
    # Pixels without a cell centre: the cell they lie in, or the nearest within the margin.
    empty = np.flatnonzero(count == 0)
    plon, plat = np.meshgrid(lon, lat)
    plon = np.where(plon > 180, plon - 360, plon).ravel()[empty]
    plat = plat.ravel()[empty]
    r, c, inside = cell_of_points(grid, window, plon, plat)
    near = inside | _within(grid, window, plon, plat, margin * max(dlat, dlon))
    out[:, empty[near]] = _v_at(values, r[near], c[near])
    return out.reshape(*lead, lat.size, lon.size)


def _v_at(values: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(n, k) values of the k cells (r, c) for each of the n leading fields."""
    return values.reshape(-1, *values.shape[-2:])[:, r, c]


def _within(
    grid: EaseGrid, window: Window, lon: np.ndarray, lat: np.ndarray, degrees: float
) -> np.ndarray:
    """Whether points lie within ``degrees`` of the window's lon/lat bounding box."""
    cell_lon, cell_lat = grid.lonlat(window)
    return (
        (lon >= cell_lon.min() - degrees)
        & (lon <= cell_lon.max() + degrees)
        & (lat >= cell_lat.min() - degrees)
        & (lat <= cell_lat.max() + degrees)
    )
