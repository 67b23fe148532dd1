"""Static attributes on the EASE2 grid: terrain from a DEM, soil, land cover and NDVI from
rasters (the operator's, or the default providers' made local by
:mod:`gsm3_ops.sources.static_defaults`), and long-term means of the cube's dynamic inputs.

Rasters may be in any CRS rasterio reads (geographic or projected). They are processed in
blocks that each cover a few 9 km cells: terrain derivatives are computed at the DEM's own
resolution with metric spacing (:mod:`gsm3_ops.sources.terrain`: degrees -> metres on the
ellipsoid for geographic rasters; scale factors and meridian convergence from the projection
otherwise), then every fine field is aggregated onto the cells by GDAL's area-weighted
average (``mode`` for land cover, ``max - min`` for roughness). See
``docs/static-attributes.md``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyproj
import rasterio
import xarray as xr
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window as RasterWindow
from rasterio.windows import from_bounds

from gsm3_ops.errors import SourceError
from gsm3_ops.grid import CRS, EaseGrid, Window
from gsm3_ops.sources.terrain import TERRAIN_FIELDS, terrain_fields
from gsm3_ops.variables import REGISTRY

if TYPE_CHECKING:
    from gsm3_ops.cube import Cube

TERRAIN = ("elevation", "slope", "aspect_cos", "plan_curvature", "roughness")
RASTERS = ("sand", "clay", "silt", "bulk_density", "land_cover", "ndvi")
# long-term mean -> (cube group, daily variable)
LONG_TERM = {
    "lst_day_mean": ("forcing", "lst_day"),
    "lst_night_mean": ("forcing", "lst_night"),
    "albedo_bsa_mean": ("forcing", "albedo_bsa"),
    "albedo_wsa_mean": ("forcing", "albedo_wsa"),
    "smap_mean": ("smap", "smap"),
    "precip_mean": ("forcing", "precip_mswep"),
}
PRECIP_NAMES = ("precip_mswep", "precip_imerg", "precip_era5")
PrecipName = Literal["precip_mswep", "precip_imerg", "precip_era5"]
_BLOCK_PIXELS = 2_000_000  # source pixels per processing block (bounds memory)
_CUBE_VALUES = 50_000_000  # cube values per read when averaging over time


class StaticError(SourceError):
    """A static attribute could not be made (raster missing or unreadable, values out of range)."""


class StaticOptions(BaseModel):
    """Where the static rasters are, and the period of the long-term means.

    ``dem`` gives elevation, slope, aspect_cos, plan_curvature and roughness; each other
    raster gives the attribute of its name. ``scale`` multiplies a raster's values into the
    registry's units (e.g. ``sand: 0.1`` for SoilGrids g/kg -> %, ``ndvi: 0.0001``).
    A raster left unset comes from its default provider when ingested
    (:mod:`gsm3_ops.sources.static_defaults`), read from ``archive`` (a folder of the
    providers' files under their own names) when set, else downloaded; ``ndvi``'s is the
    MOD13A3 mean over ``long_term_start..long_term_end`` (:mod:`gsm3_ops.sources.static_ndvi`).
    """

    model_config = ConfigDict(extra="forbid")

    dem: Path | None = None
    sand: Path | None = None
    clay: Path | None = None
    silt: Path | None = None
    bulk_density: Path | None = None
    land_cover: Path | None = None
    ndvi: Path | None = None
    archive: Path | None = None
    scale: dict[str, float] = Field(default_factory=dict)
    long_term_start: dt.date | None = None
    long_term_end: dt.date | None = None
    long_term_min_days: int = Field(30, ge=1)
    long_term_precip: PrecipName = "precip_mswep"

    @model_validator(mode="after")
    def _check(self) -> StaticOptions:
        unknown = set(self.scale) - {"dem", *RASTERS}
        if unknown:
            raise ValueError(f"scale: unknown attribute(s) {sorted(unknown)}; use dem or {RASTERS}")
        if (
            self.long_term_start
            and self.long_term_end
            and self.long_term_end < self.long_term_start
        ):
            raise ValueError("long_term_end is before long_term_start")
        return self


def static_from_rasters(
    opts: StaticOptions,
    grid: EaseGrid,
    window: Window,
    names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Terrain, soil, land cover and NDVI on ``window`` from the configured rasters.

    Parameters
    ----------
    opts
        Raster paths (see :class:`StaticOptions`).
    grid, window
        Target grid and window.
    names
        Attributes to make (default all eleven: ``TERRAIN`` and ``RASTERS``).

    Returns
    -------
    xr.Dataset
        float32 (y, x) variables with registry units; NaN where the raster has no data.

    Raises
    ------
    StaticError
        A raster not configured, missing, unreadable or without data over the window
        (attribute and path named), or values outside the registry's valid range.
    """
    names = list(TERRAIN + RASTERS if names is None else names)
    unknown = [n for n in names if n not in TERRAIN + RASTERS]
    if unknown:
        raise StaticError(f"not a raster static attribute: {unknown}; known {TERRAIN + RASTERS}")
    out: dict[str, np.ndarray] = {}
    terrain = [n for n in names if n in TERRAIN]
    if terrain:
        fields = _aggregate(opts, "dem", grid, window, terrain_fields, TERRAIN_FIELDS)
        lat = grid.lonlat(window)[1]
        # Pole-facing is +1 in both hemispheres (the GSM3 north-facing measure).
        fields["aspect_cos"] = np.where(lat < 0, -1.0, 1.0) * fields["aspect_cos"]
        fields["roughness"] = fields.pop("_max") - fields.pop("_min")
        out |= {n: fields[n] for n in terrain}
    for name in (n for n in names if n in RASTERS):
        how = Resampling.mode if name == "land_cover" else Resampling.average
        out[name] = _aggregate(opts, name, grid, window, _plain(name, how), (name,))[name]
    data = {}
    for name in names:
        path = opts.dem if name in TERRAIN else getattr(opts, name)
        if not np.isfinite(out[name]).any():
            raise StaticError(
                f"static attribute {name!r}: raster {path} has no valid value over {window} "
                "(does it cover the region? is its nodata value right?)"
            )
        data[name] = _variable(name, out[name], f"raster {path}")
    return xr.Dataset(data, coords=_coords(grid, window))


def long_term_means(
    cube: Cube,
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    end: dt.date,
    min_days: int = 1,
    precip: PrecipName = "precip_mswep",
) -> xr.Dataset:
    """Long-term means of LST, albedo, SMAP and MSWEP precipitation from the cube.

    Parameters
    ----------
    cube
        A :class:`gsm3_ops.cube.Cube` on ``grid`` holding the daily inputs.
    grid, window
        The grid and the window (inside the cube's domain) to compute.
    start, end
        The period (inclusive).
    min_days
        Fewest valid days for a mean; cells with fewer are NaN.
    precip
        The daily precipitation behind ``precip_mean``: MSWEP as in GSM3, or IMERG / ERA5
        where MSWEP's licence is not available.

    Returns
    -------
    xr.Dataset
        ``lst_day_mean``, ``lst_night_mean``, ``albedo_bsa_mean``, ``albedo_wsa_mean``,
        ``smap_mean``, ``precip_mean``: float32 (y, x) in registry units; the attrs record
        the period and ``min_days``.
    """
    if cube.grid.name != grid.name:
        raise StaticError(f"cube {cube.path} is on {cube.grid.name}, not {grid.name}")
    if end < start:
        raise StaticError(f"long-term mean period ends ({end}) before it starts ({start})")
    if min_days < 1 or precip not in PRECIP_NAMES:
        raise StaticError(f"min_days must be >= 1 and precip one of {PRECIP_NAMES}")
    sources = LONG_TERM | {"precip_mean": ("forcing", precip)}
    n_days = (end - start).days + 1
    step = max(1, _CUBE_VALUES // (window.n_rows * window.n_cols * len(LONG_TERM)))
    sums = {n: np.zeros(window.shape) for n in LONG_TERM}
    counts = {n: np.zeros(window.shape, dtype=np.int64) for n in LONG_TERM}
    for first in range(0, n_days, step):
        a = start + dt.timedelta(days=first)
        b = min(end, a + dt.timedelta(days=step - 1))
        for group in ("forcing", "smap"):
            wanted = {n: v for n, (g, v) in sources.items() if g == group}
            ds = cube.read(group, list(wanted.values()), a, b, window)
            for name, var in wanted.items():
                values = ds[var].values
                ok = np.isfinite(values)
                sums[name] += np.where(ok, values, 0.0).sum(axis=0)
                counts[name] += ok.sum(axis=0)
    data = {}
    for name in LONG_TERM:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts[name] >= min_days, sums[name] / counts[name], np.nan)
        data[name] = _variable(name, mean, f"cube {cube.path} {start}..{end}")
    attrs = {
        "long_term_period": f"{start.isoformat()}/{end.isoformat()}",
        "min_days": min_days,
        "precip_mean_from": precip,
    }
    return xr.Dataset(data, coords=_coords(grid, window), attrs=attrs)


def static_attributes(
    opts: StaticOptions, cube: Cube, grid: EaseGrid, window: Window
) -> xr.Dataset:
    """All 17 statics: :func:`static_from_rasters` and :func:`long_term_means` over the
    configured period (``long_term_start``/``long_term_end``, required)."""
    if opts.long_term_start is None or opts.long_term_end is None:
        raise StaticError("static options need long_term_start and long_term_end (dates)")
    means = long_term_means(
        cube,
        grid,
        window,
        opts.long_term_start,
        opts.long_term_end,
        opts.long_term_min_days,
        opts.long_term_precip,
    )
    return xr.merge([static_from_rasters(opts, grid, window), means], combine_attrs="override")


# --- raster blocks ---------------------------------------------------------------------------

Derive = Callable[[np.ndarray, Affine, pyproj.CRS], dict[str, tuple[np.ndarray, Resampling]]]


def _plain(name: str, how: Resampling) -> Derive:
    return lambda block, transform, crs: {name: (block, how)}


def _aggregate(
    opts: StaticOptions,
    attr: str,
    grid: EaseGrid,
    window: Window,
    derive: Derive,
    names: Sequence[str],
) -> dict[str, np.ndarray]:
    """The fine fields ``names`` from ``derive`` on each block of the raster ``attr``,
    aggregated onto the cells of ``window`` (NaN where the raster has no data)."""
    path = getattr(opts, attr)
    if path is None:
        raise StaticError(f"static attribute {attr!r}: no raster configured (set {attr}: PATH)")
    if not Path(path).is_file():
        raise StaticError(f"static attribute {attr!r}: raster {path} does not exist")
    scale = opts.scale.get(attr, 1.0)
    out = {n: np.full(window.shape, np.nan) for n in names}
    try:
        with rasterio.open(path) as src:
            crs = _check_raster(src, attr, path)
            for tile in grid.tiles(window, _tile_cells(src, crs, grid, window)):
                block, transform = _read_block(src, grid, tile, crs, halo=2)
                if block is None or not np.isfinite(block).any():  # off the raster, or sea
                    continue
                rel = tile.relative_to(window)
                for name, (fine, how) in derive(block * scale, transform, crs).items():
                    out[name][rel.rows, rel.cols] = _warp(fine, transform, crs, grid, tile, how)
    except rasterio.errors.RasterioError as exc:
        raise StaticError(f"static attribute {attr!r}: cannot read raster {path}: {exc}") from None
    return out


def _check_raster(src, attr: str, path: Path) -> pyproj.CRS:
    if src.crs is None:
        raise StaticError(f"static attribute {attr!r}: raster {path} has no CRS")
    t = src.transform
    if t.b != 0 or t.d != 0:
        raise StaticError(f"static attribute {attr!r}: raster {path} is rotated; warp it first")
    return pyproj.CRS.from_user_input(src.crs.to_wkt())


def _tile_cells(src, crs: pyproj.CRS, grid: EaseGrid, window: Window) -> int:
    """Cells per tile side so that a block holds about ``_BLOCK_PIXELS`` source pixels.

    Cells are equal-area; a geographic pixel's area shrinks with cos(latitude), so the
    window's most poleward latitude sets the size.
    """
    t = src.transform
    if crs.is_geographic:
        lat = np.abs(grid.lonlat(Window(window.row0, window.col0, window.n_rows, 1))[1])
        cos_lat = max(float(np.cos(np.radians(lat.max()))), 0.05)
        pixel_area = abs(t.a * t.e) * 111_320.0**2 * cos_lat
    else:
        pixel_area = abs(t.a * t.e) * crs.axis_info[0].unit_conversion_factor ** 2
    cells = math.sqrt(_BLOCK_PIXELS * pixel_area) / grid.cell_size
    return int(max(1, min(256, cells)))


def _read_block(
    src, grid: EaseGrid, tile: Window, crs: pyproj.CRS, halo: int
) -> tuple[np.ndarray | None, Affine]:
    """The raster pixels under ``tile`` plus ``halo`` (float64, NaN for no data), north-up."""
    left, top = grid.transform(tile) @ (0, 0)
    right, bottom = grid.transform(tile) @ (tile.n_cols, tile.n_rows)
    bounds = transform_bounds(CRS, src.crs, left, bottom, right, top, densify_pts=21)
    win = from_bounds(*bounds, transform=src.transform)
    c0 = max(0, math.floor(win.col_off) - halo)
    r0 = max(0, math.floor(win.row_off) - halo)
    c1 = min(src.width, math.ceil(win.col_off + win.width) + halo)
    r1 = min(src.height, math.ceil(win.row_off + win.height) + halo)
    if c1 <= c0 or r1 <= r0:
        return None, src.transform
    rw = RasterWindow(c0, r0, c1 - c0, r1 - r0)
    block = src.read(1, window=rw, masked=True).astype(np.float64).filled(np.nan)
    transform = src.window_transform(rw)
    if transform.e > 0:  # south-up raster: flip to north-up
        block = block[::-1]
        transform = transform @ Affine.translation(0, block.shape[0]) @ Affine.scale(1, -1)
    if transform.a < 0:
        block = block[:, ::-1]
        transform = transform @ Affine.translation(block.shape[1], 0) @ Affine.scale(-1, 1)
    return block, transform


def _warp(
    fine: np.ndarray, transform: Affine, crs: pyproj.CRS, grid: EaseGrid, tile: Window, how
) -> np.ndarray:
    dest = np.full(tile.shape, np.nan)
    reproject(
        np.ascontiguousarray(fine, dtype=np.float64),
        dest,
        src_transform=transform,
        src_crs=crs.to_wkt(),
        src_nodata=np.nan,
        dst_transform=grid.transform(tile),
        dst_crs=CRS,
        dst_nodata=np.nan,
        resampling=how,
    )
    return dest


# --- output ----------------------------------------------------------------------------------


def _coords(grid: EaseGrid, window: Window) -> dict[str, tuple[str, np.ndarray]]:
    return {"y": ("y", grid.y_centres(window)), "x": ("x", grid.x_centres(window))}


def _variable(name: str, values: np.ndarray, origin: str) -> xr.DataArray:
    """float32 (y, x) with registry attrs; StaticError naming ``name`` when out of range."""
    var = REGISTRY[name]
    bad = var.out_of_range(values)
    if bad.any():
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        raise StaticError(
            f"static attribute {name!r} from {origin}: {int(bad.sum())} cells outside the valid "
            f"range {var.valid_min}..{var.valid_max} {var.units} (found {lo:.4g}..{hi:.4g}); "
            "wrong units? set scale in the static options"
        )
    attrs = {"units": var.units, "long_name": var.long_name}
    return xr.DataArray(values.astype(np.float32), dims=("y", "x"), attrs=attrs)
