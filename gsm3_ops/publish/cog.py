"""One Cloud-Optimized GeoTIFF per day and layer, on the native EASE-Grid 2.0 grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from gsm3_ops.grid import EaseGrid, Window

BLOCKSIZE = 512


def cog_path(root: Path, day_str: str, layer: str = "sm") -> Path:
    """``<root>/cog/YYYY/gsm3_<layer>_YYYYMMDD.tif`` for an ISO day string."""
    compact = day_str.replace("-", "")
    return Path(root) / "cog" / compact[:4] / f"gsm3_{layer}_{compact}.tif"


def write_cog(
    path: Path, data: np.ndarray, grid: EaseGrid, window: Window, tags: dict[str, str]
) -> Path:
    """Write ``data`` (rows, cols; NaN = nodata) of ``window`` as a COG, atomically.

    DEFLATE with the floating-point predictor, 512 x 512 internal tiles, average overviews.
    """
    if data.shape != window.shape:
        raise ValueError(f"data shape {data.shape} does not match window {window.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    src_profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "height": window.n_rows,
        "width": window.n_cols,
        "crs": grid.crs,
        "transform": grid.transform(window),
        "nodata": np.nan,
    }
    dst_profile = cog_profiles.get("deflate")
    dst_profile.update(blockxsize=BLOCKSIZE, blockysize=BLOCKSIZE, predictor=3)
    with MemoryFile() as mem:
        with mem.open(**src_profile) as src:
            src.write(data.astype(np.float32), 1)
        with mem.open() as src:
            cog_translate(
                src,
                str(tmp),
                dst_profile,
                nodata=np.nan,
                overview_resampling="average",
                additional_cog_metadata=tags,
                in_memory=True,
                quiet=True,
            )
    os.replace(tmp, path)
    return path


def validate_cog(path: Path) -> tuple[bool, list[str], list[str]]:
    """rio-cogeo's validator: (valid, errors, warnings)."""
    return cog_validate(str(path), quiet=True)
