"""The synthetic world's static rasters as the default providers' files.

What :mod:`gsm3_ops.sources.static_defaults` reads from an archive:

- **Copernicus GLO-90** tiles ``Copernicus_DSM_COG_30_<lat>_00_<lon>_00_DEM.tif``: 1 x 1
  degree, 1200 x 1200 float32 pixels of 3 arc-seconds whose first centre is the tile's
  north-west corner (the provider's grid), sea at 0 m; no tile without land.
- **SoilGrids 2.0** ``<prop>/<prop>_0-5cm_mean.vrt`` over tiles
  ``<prop>_0-5cm_mean/tileSG-RRR-CCC/tileSG-RRR-CCC_i-j.tif`` (Interrupted Goode Homolosine,
  250 m, 450 x 450 Int16 pixels, nodata -32768; sand, clay, silt in g/kg, bdod in cg/cm3).
  Folder RRR-CCC is the 1800-pixel block's row and column, i-j the 450-pixel sub-tile's.
- **ESA WorldCover 2021** tiles ``ESA_WorldCover_10m_2021_v200_<lat><lon>_Map.tif`` (3 x 3
  degree, uint8, nodata 0, sea as class 80), with the world's IGBP classes as WorldCover
  classes (:data:`WORLDCOVER_OF_IGBP`). Written at 1/400 degree, not the provider's 10 m:
  10 m tiles over the demo window are 7.8e9 pixels; the reader takes the majority per cell
  whatever the pixel size.

NDVI's default, MOD13A3 v061, is monthly: :mod:`gsm3_ops.world.mod13a3` writes its tiles
with each month of the world's days.

Fields are sampled with :func:`gsm3_ops.world.sample.to_latlon` (lat/lon grids) or
:func:`~gsm3_ops.world.sample.to_points` (the Homolosine pixel centres): pixels far finer
than a 9 km cell take the value of the cell they lie in.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.sources.static_defaults import window_bounds
from gsm3_ops.sources.static_providers import (
    SOILGRIDS,
    copernicus_name,
    soilgrids_map,
    worldcover_name,
)
from gsm3_ops.world.sample import to_latlon, to_points

DEM_PIXELS = 1200  # per degree: GLO-90 below 50 degrees latitude
WORLDCOVER_PIXELS = 1200  # per 3-degree tile (the provider's is 36000)
# The SoilGrids global VRT: Homolosine on WGS84, 250 m pixels.
HOMOLOSINE = pyproj.CRS.from_proj4("+proj=igh +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m")
SG_ORIGIN = (-19_949_000.0, 8_361_000.0)
SG_SIZE = (159_243, 58_034)  # columns, rows
SG_RES, SG_TILE, SG_BLOCK = 250.0, 450, 1800
SG_NODATA = -32768
# The world's IGBP codes as ESA WorldCover classes (tree cover 10, shrubland 20, grassland
# 30, cropland 40, bare / sparse 60, snow and ice 70); woody savanna has >= 10 % trees.
WORLDCOVER_OF_IGBP = {2: 10, 7: 20, 8: 10, 9: 30, 10: 30, 12: 40, 15: 70, 16: 60}
WORLDCOVER_WATER = 80
_GTIFF = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256,
          "compress": "deflate"}  # fmt: skip


def write_static(static: xr.Dataset, grid: EaseGrid, window: Window, folder: Path) -> list[Path]:
    """Write the world's statics (``SyntheticSource.static``) over ``window`` as the default
    providers' files under ``folder``; return the files written."""
    folder = Path(folder)
    bounds = window_bounds(grid, window)
    land = np.isfinite(np.asarray(static["elevation"], float))
    out = _dem(np.asarray(static["elevation"], float), land, grid, window, bounds, folder)
    soil = np.stack([np.asarray(static[a], float) for a in SOILGRIDS])
    out += _soilgrids(soil, grid, window, bounds, folder / "soilgrids")
    out += _worldcover(np.asarray(static["land_cover"], float), land, grid, window, bounds,
                       folder / "worldcover")  # fmt: skip
    return out


def _dem(elev, land, grid, window, bounds, folder: Path) -> list[Path]:
    out = []
    values = np.stack([np.where(land, elev, 0.0), land.astype(float)])
    for lat0, lon0 in bounds.tiles(1):
        lat = lat0 + 1 - np.arange(DEM_PIXELS) / DEM_PIXELS
        lon = lon0 + np.arange(DEM_PIXELS) / DEM_PIXELS
        z, is_land = to_latlon(values, grid, window, lat, lon)
        if not np.nanmax(is_land, initial=0) > 0:
            continue  # the provider has no tile over open sea
        name = copernicus_name(lat0, lon0)
        half = 0.5 / DEM_PIXELS
        path = folder / "copernicus-dem-90m" / f"{name}.tif"
        transform = from_origin(lon0 - half, lat0 + 1 + half, 2 * half, 2 * half)
        _write(path, z.astype(np.float32), "EPSG:4326", transform, None)
        out.append(path)
    return out


def _worldcover(cover, land, grid, window, bounds, folder: Path) -> list[Path]:
    codes = np.full(cover.shape, float(WORLDCOVER_WATER))
    for igbp, wc in WORLDCOVER_OF_IGBP.items():
        codes[land & (cover == igbp)] = wc
    out = []
    res = 3 / WORLDCOVER_PIXELS
    for lat0, lon0 in bounds.tiles(3):
        lat = lat0 + 3 - (np.arange(WORLDCOVER_PIXELS) + 0.5) * res
        lon = lon0 + (np.arange(WORLDCOVER_PIXELS) + 0.5) * res
        wc, is_land = to_latlon(np.stack([codes, land.astype(float)]), grid, window, lat, lon)
        if not np.nanmax(is_land, initial=0) > 0:
            continue
        path = folder / worldcover_name(lat0, lon0)
        data = np.where(np.isfinite(wc), wc, 0).astype(np.uint8)
        _write(path, data, "EPSG:4326", from_origin(lon0, lat0 + 3, res, res), 0)
        out.append(path)
    return out


def _soilgrids(soil, grid, window, bounds, folder: Path) -> list[Path]:
    """The four SoilGrids maps' tiles over the bounds, and a global VRT for each."""
    left, bottom, right, top = transform_bounds(
        "EPSG:4326", HOMOLOSINE, bounds.west, bounds.south, bounds.east, bounds.north,
        densify_pts=21,
    )  # fmt: skip
    c0, c1 = _tile_range(left - SG_ORIGIN[0], right - SG_ORIGIN[0])
    r0, r1 = _tile_range(SG_ORIGIN[1] - top, SG_ORIGIN[1] - bottom)
    to_ll = pyproj.Transformer.from_crs(HOMOLOSINE, "EPSG:4326", always_xy=True)
    units = np.array([10.0, 10.0, 10.0, 100.0])[:, None, None]  # % -> g/kg, g/cm3 -> cg/cm3
    tiles: list[tuple[str, int, int]] = []
    out: list[Path] = []
    for row in range(r0, r1, SG_TILE):
        for col in range(c0, c1, SG_TILE):
            x = SG_ORIGIN[0] + (col + np.arange(SG_TILE) + 0.5) * SG_RES
            y = SG_ORIGIN[1] - (row + np.arange(SG_TILE) + 0.5) * SG_RES
            lon, lat = to_ll.transform(*np.meshgrid(x, y))
            values = to_points(soil, grid, window, np.nan_to_num(lon, nan=999.0), lat)
            if not np.isfinite(values).any():
                continue  # SoilGrids has no tile without soil
            data = np.where(np.isfinite(values), np.round(values * units), SG_NODATA)
            rel = _tile_name(row, col)
            for attr, k in zip(SOILGRIDS, range(len(SOILGRIDS)), strict=True):
                prop = SOILGRIDS[attr][0]
                path = folder / prop / soilgrids_map(prop) / rel
                transform = from_origin(SG_ORIGIN[0] + col * SG_RES, SG_ORIGIN[1] - row * SG_RES,
                                        SG_RES, SG_RES)  # fmt: skip
                _write(path, data[k].astype(np.int16), HOMOLOSINE.to_wkt(), transform, SG_NODATA)
                out.append(path)
            tiles.append((rel, row, col))
    for prop, _ in SOILGRIDS.values():
        out.append(_soilgrids_vrt(folder / prop / f"{soilgrids_map(prop)}.vrt", prop, tiles))
    return out


def _tile_range(a: float, b: float) -> tuple[int, int]:
    """Pixel offsets (multiples of a tile) of the tiles spanning a..b metres from the origin."""
    lo = int(np.floor(a / SG_RES / SG_TILE)) * SG_TILE
    hi = int(np.ceil(b / SG_RES / SG_TILE)) * SG_TILE
    return lo, hi


def _tile_name(row: int, col: int) -> str:
    block = f"tileSG-{row // SG_BLOCK + 1:03d}-{col // SG_BLOCK + 1:03d}"
    sub = f"{row % SG_BLOCK // SG_TILE + 1}-{col % SG_BLOCK // SG_TILE + 1}"
    return f"{block}/{block}_{sub}.tif"


def _soilgrids_vrt(path: Path, prop: str, tiles: list[tuple[str, int, int]]) -> Path:
    root = ET.Element("VRTDataset", rasterXSize=str(SG_SIZE[0]), rasterYSize=str(SG_SIZE[1]))
    ET.SubElement(root, "SRS").text = HOMOLOSINE.to_wkt()
    transform = f"{SG_ORIGIN[0]!r}, {SG_RES!r}, 0.0, {SG_ORIGIN[1]!r}, 0.0, {-SG_RES!r}"
    ET.SubElement(root, "GeoTransform").text = transform
    band = ET.SubElement(root, "VRTRasterBand", dataType="Int16", band="1")
    ET.SubElement(band, "NoDataValue").text = str(SG_NODATA)
    for rel, row, col in tiles:
        src = ET.SubElement(band, "ComplexSource")
        name = ET.SubElement(src, "SourceFilename", relativeToVRT="1")
        name.text = f"{soilgrids_map(prop)}/{rel}"
        ET.SubElement(src, "SourceBand").text = "1"
        size = {"xSize": str(SG_TILE), "ySize": str(SG_TILE)}
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", **size)
        ET.SubElement(src, "DstRect", xOff=str(col), yOff=str(row), **size)
        ET.SubElement(src, "NODATA").text = str(SG_NODATA)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8")
    return path


def _write(path: Path, data: np.ndarray, crs, transform, nodata) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = _GTIFF | {"height": data.shape[0], "width": data.shape[1], "count": 1,
                        "dtype": data.dtype.name, "crs": crs, "transform": transform}  # fmt: skip
    if data.dtype == np.float32:
        profile["predictor"] = 3
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
