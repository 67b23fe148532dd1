"""Cloud-Optimized GeoTIFFs: one file per day and layer on the native EASE-Grid 2.0 grid, and an
optional Web-Mercator derivative for tile servers.

Files are 512 x 512 internally tiled, DEFLATE or ZSTD compressed with the floating-point
predictor (horizontal differencing for the integer flag), with overviews (average for the
float layers, nearest for the flag), NaN no-data for float layers and 255 for the flag.
"""

from __future__ import annotations

from pathlib import Path

import morecantile
import numpy as np
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from gsm3_ops.atomicfile import replacing
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.publish.layers import Layer, layer_spec

BLOCKSIZE = 512
WEB_MERCATOR_SUFFIX = "webmercator"


def cog_path(root: Path, day_str: str, layer: str = "sm") -> Path:
    """``<root>/cog/YYYY/gsm3_<layer code>_YYYYMMDD.tif`` for an ISO day string."""
    compact = day_str.replace("-", "")
    return Path(root) / "cog" / compact[:4] / f"gsm3_{layer}_{compact}.tif"


def web_mercator_path(root: Path, day_str: str, layer: str = "sm") -> Path:
    """``<root>/cog/YYYY/gsm3_<layer code>_YYYYMMDD_webmercator.tif``."""
    path = cog_path(root, day_str, layer)
    return path.with_name(f"{path.stem}_{WEB_MERCATOR_SUFFIX}.tif")


def _profile(layer: Layer, compression: str) -> dict:
    profile = cog_profiles[compression].copy()  # .get() warns on every ZSTD file
    # Predictor 3 (floating point) for float layers, 2 (horizontal) for the integer flag.
    profile.update(blockxsize=BLOCKSIZE, blockysize=BLOCKSIZE, predictor=2 if layer.is_flag else 3)
    return profile


def write_cog(
    path: Path,
    data: np.ndarray,
    grid: EaseGrid,
    window: Window,
    tags: dict[str, str],
    layer: str = "soil_moisture",
    compression: str = "deflate",
) -> Path:
    """Write ``data`` (rows, cols) of ``window`` as a COG of ``layer``, atomically.

    Parameters
    ----------
    tags
        GDAL metadata written to the file (date, product version, bundle id, inputs ...).
    layer
        A product or COG-only layer name (``layers.layer_spec``): sets data type, no-data value and
        overview resampling.
    compression
        ``deflate`` or ``zstd``.
    """
    spec = layer_spec(layer)
    if data.shape != window.shape:
        raise ValueError(f"data shape {data.shape} does not match window {window.shape}")
    if compression not in ("deflate", "zstd"):
        raise ValueError(f"compression must be deflate or zstd, not {compression!r}")
    path = Path(path)
    src_profile = {
        "driver": "GTiff",
        "dtype": spec.dtype,
        "count": 1,
        "height": window.n_rows,
        "width": window.n_cols,
        "crs": grid.crs,
        "transform": grid.transform(window),
        "nodata": spec.nodata,
    }
    with replacing(path) as tmp, MemoryFile() as mem:
        with mem.open(**src_profile) as src:
            src.write(np.asarray(data, dtype=spec.dtype), 1)
            src.set_band_description(1, spec.long_name)
            src.update_tags(1, units=spec.units, layer=spec.name)
        with mem.open() as src:
            cog_translate(
                src,
                str(tmp),
                _profile(spec, compression),
                nodata=spec.nodata,
                overview_resampling=spec.resampling,
                additional_cog_metadata={**tags, "layer": spec.name},
                forward_band_tags=True,
                in_memory=True,
                quiet=True,
            )
    return path


def write_web_mercator(
    path: Path, source: Path, layer: str = "soil_moisture", compression: str = "deflate"
) -> Path:
    """Reproject the COG ``source`` to a web-optimised COG in EPSG:3857 (WebMercatorQuad tiles,
    zoom chosen by rio-cogeo from the 9 km resolution), atomically. Bilinear resampling for
    float layers, nearest for the flag; beyond +-85.05 degrees latitude is cut off."""
    spec = layer_spec(layer)
    path = Path(path)
    with replacing(path) as tmp:
        cog_translate(
            str(source),
            str(tmp),
            _profile(spec, compression),
            nodata=spec.nodata,
            tms=morecantile.tms.get("WebMercatorQuad"),  # reproject to the tile matrix
            resampling="nearest" if spec.is_flag else "bilinear",
            overview_resampling=spec.resampling,
            forward_band_tags=True,
            quiet=True,
        )
    return path


def validate_cog(path: Path) -> tuple[bool, list[str], list[str]]:
    """rio-cogeo's validator: (valid, errors, warnings)."""
    return cog_validate(str(path), quiet=True)
