"""Fill the static options with the default public rasters for a window.

Every raster the operator did not configure (``dem``, ``sand``, ``clay``, ``silt``,
``bulk_density``, ``land_cover``) is obtained from its default provider
(:mod:`gsm3_ops.sources.static_providers`) for the window's lon/lat bounds plus a margin,
and mosaicked into a local VRT (:mod:`gsm3_ops.sources.static_mosaic`) that
:func:`gsm3_ops.sources.static.static_from_rasters` reads like any operator raster. ``ndvi``
defaults to the mean of MODIS MOD13A3 v061 over the long-term period
(:mod:`gsm3_ops.sources.static_ndvi`), written as a GeoTIFF on the window's cells.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

from gsm3_ops.grid import CRS, EaseGrid, Window
from gsm3_ops.sources.static import StaticOptions
from gsm3_ops.sources.static_mosaic import mosaic_vrt, trim_vrt, vrt_tiles
from gsm3_ops.sources.static_ndvi import NdviMean, ndvi_mean
from gsm3_ops.sources.static_providers import (
    SOILGRIDS,
    VERSIONS,
    Bounds,
    ProviderFiles,
    StaticFetchError,
    dem_files,
    soilgrids_tile,
    soilgrids_vrt,
    worldcover_files,
)
from gsm3_ops.sources.uscrn import HttpClient

log = logging.getLogger(__name__)

MARGIN_DEG = 0.05  # beyond the window's bounds: the terrain halo and the cells' edges
DEM_NODATA = -32767.0  # where the mosaic has no tile (open ocean)
# Land cover is a majority over many pixels: read finer than 1/32 of a cell is wasted work.
LAND_COVER_PIXELS_PER_CELL = 32


def window_bounds(grid: EaseGrid, window: Window, margin: float = MARGIN_DEG) -> Bounds:
    """The lon/lat box of ``window``'s cells, widened by ``margin`` degrees."""
    t = grid.transform(window)
    left, top = t @ (0, 0)
    right, bottom = t @ (window.n_cols, window.n_rows)
    w, s, e, n = transform_bounds(CRS, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    return Bounds(max(w - margin, -180.0), max(s - margin, -90.0),
                  min(e + margin, 180.0), min(n + margin, 90.0))  # fmt: skip


def default_rasters(
    opts: StaticOptions,
    grid: EaseGrid,
    window: Window,
    raw_dir: Path,
    client: HttpClient | None = None,
    earthdata: Any = None,
) -> tuple[StaticOptions, dict[str, str]]:
    """``opts`` with each unset raster taken from its default provider.

    Parameters
    ----------
    opts
        The operator's static options; a configured raster is kept as it is.
    grid, window
        The deployment's grid and window.
    raw_dir
        The data root's raw folder: downloads are cached under ``raw_dir/static`` and the
        local mosaics written under ``raw_dir/static/mosaics``.
    client
        The HTTP client (``get(url, timeout)``); never called when ``opts.archive`` is set.
    earthdata
        The ``earthaccess`` module (default) or a stand-in, for the MOD13A3 tiles behind
        ``ndvi``; never called when ``opts.archive`` is set or the tiles are cached.

    Returns
    -------
    tuple
        The filled options, and what fills each raster (provider version or file name).
    """
    cache = Path(raw_dir) / "static"
    files = ProviderFiles(cache, opts.archive, client)
    bounds = window_bounds(grid, window)
    tag = f"r{window.row0}c{window.col0}n{window.n_rows}x{window.n_cols}"
    mosaics = cache / "mosaics"
    fill: dict[str, object] = {}
    scale = dict(opts.scale)
    used = {k: Path(v).name for k in ("dem", *SOILGRIDS, "land_cover", "ndvi")
            if (v := getattr(opts, k)) is not None}  # fmt: skip
    if opts.dem is None:
        tiles = _tiles_or_error(files.get_all(dem_files(bounds)), "dem", bounds)
        fill["dem"] = mosaic_vrt(tiles, mosaics / f"copernicus_glo90_{tag}.vrt", DEM_NODATA)
        used["dem"] = VERSIONS["dem"]
    for attr, (prop, factor) in SOILGRIDS.items():
        if getattr(opts, attr) is not None:
            continue
        fill[attr] = _soilgrids(files, prop, bounds, mosaics / f"{prop}_0-5cm_mean_{tag}.vrt")
        scale[attr] = factor
        used[attr] = VERSIONS["soil"]
    if opts.land_cover is None:
        tiles = _tiles_or_error(files.get_all(worldcover_files(bounds)), "land_cover", bounds)
        factor = _overview_factor(tiles[0], grid.cell_size / LAND_COVER_PIXELS_PER_CELL)
        fill["land_cover"] = mosaic_vrt(
            tiles, mosaics / f"esa_worldcover_{tag}.vrt", nodata=0, factor=factor
        )
        used["land_cover"] = VERSIONS["land_cover"]
    if opts.ndvi is None:
        mean = _ndvi(opts, grid, window, cache, bounds, mosaics, tag, earthdata)
        fill["ndvi"], scale["ndvi"], used["ndvi"] = mean.path, 1.0, mean.version
    filled = opts.model_copy(update=fill | {"scale": scale})
    return filled, used


def _soilgrids(files: ProviderFiles, prop: str, bounds: Bounds, out: Path) -> Path:
    """A local VRT of the SoilGrids map ``prop`` holding the tiles that meet ``bounds``."""
    vrt = files.get(soilgrids_vrt(prop))
    assert vrt is not None  # a VRT is never optional
    wanted = {name: soilgrids_tile(prop, name) for name in vrt_tiles(vrt, bounds)}
    if not wanted:
        raise StaticFetchError(f"SoilGrids {vrt.name}: no tile meets {bounds}")
    local = {name: files.get(w) for name, w in wanted.items()}
    return trim_vrt(vrt, out, local.get)


def _ndvi(
    opts: StaticOptions,
    grid: EaseGrid,
    window: Window,
    cache: Path,
    bounds: Bounds,
    mosaics: Path,
    tag: str,
    earthdata: Any,
) -> NdviMean:
    """The MOD13A3 mean over the long-term period, as a GeoTIFF under ``mosaics``."""
    start, end = opts.long_term_start, opts.long_term_end
    if start is None or end is None:
        raise StaticFetchError(
            "static attribute 'ndvi': the default (a MOD13A3 mean) needs long_term_start and "
            "long_term_end; set them, or ndvi: PATH"
        )
    out = mosaics / f"mod13a3_061_ndvi_mean_{start:%Y%m}-{end:%Y%m}_{tag}.tif"
    box = (bounds.west, bounds.south, bounds.east, bounds.north)
    return ndvi_mean(grid, window, start, end, out, cache=cache, bbox=box,
                     archive=opts.archive, client=earthdata)  # fmt: skip


def _tiles_or_error(tiles: list[Path], attr: str, bounds: Bounds) -> list[Path]:
    if not tiles:
        raise StaticFetchError(
            f"static attribute {attr!r}: the default provider has no tile over {bounds} "
            f"(open ocean?); set {attr}: PATH"
        )
    return tiles


def _overview_factor(tile: Path, target_m: float) -> int:
    """The largest power of two by which the tile's pixel can grow and stay <= target_m."""
    with rasterio.open(tile) as src:
        size = abs(src.transform.a)
        metres = size * 111_320.0 if src.crs and src.crs.is_geographic else size
    return 2 ** max(0, math.floor(math.log2(target_m / metres))) if metres < target_m else 1
