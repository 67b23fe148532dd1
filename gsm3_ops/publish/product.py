"""The product Zarr ``<publish_root>/gsm3.zarr``: daily layers on (time, y, x), CF-1.8.

The time axis runs daily from the product's start date to the latest day published; a new
later day grows it (the days in between stay NaN until published), and rewriting a day
overwrites its region, so every day has exactly one time entry.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS

from gsm3_ops import variables
from gsm3_ops.grid import EaseGrid, Window

FLAG_FILL = 255
FLAG_GAP_FILLED = 1  # a forcing was missing and replaced by its training mean
QUALITY_FLAGS = {FLAG_GAP_FILLED: "forcing_gap_filled"}

_LAYERS = {
    "soil_moisture": {
        "standard_name": "volume_fraction_of_condensed_water_in_soil",
        "long_name": "surface soil moisture 0-5 cm, ensemble mean",
        "units": variables.PRODUCT_UNITS,
        "valid_min": variables.PRODUCT_RANGE[0],
        "valid_max": variables.PRODUCT_RANGE[1],
    },
    "soil_moisture_sd": {
        "long_name": "surface soil moisture 0-5 cm, ensemble standard deviation",
        "units": variables.PRODUCT_UNITS,
    },
    "quality_flag": {
        "long_name": "quality flag",
        "flag_masks": np.array(list(QUALITY_FLAGS), dtype=np.uint8),
        "flag_meanings": " ".join(QUALITY_FLAGS.values()),
    },
}


def _grid_mapping() -> xr.DataArray:
    crs = CRS.from_epsg(6933)
    return xr.DataArray(np.int32(0), attrs={**crs.to_cf(), "crs_wkt": crs.to_wkt()})


def _block(
    days: pd.DatetimeIndex,
    layers: dict[str, np.ndarray],
    grid: EaseGrid,
    window: Window,
    tile: int,
) -> xr.Dataset:
    """A dataset of ``days``; the last day holds ``layers``, earlier ones are empty.

    The empty days are lazy (dask) fill values, so a first day published years after the
    product's start never materialises the gap in memory, and zarr stores no empty chunk.
    """
    chunks = (1, tile, tile)
    data = {}
    for name, attrs in _LAYERS.items():
        value = layers[name]
        fill = FLAG_FILL if name == "quality_flag" else np.nan
        empty = da.full((len(days) - 1, *window.shape), fill, dtype=value.dtype, chunks=chunks)
        arr = da.concatenate([empty, da.from_array(value[None], chunks=chunks)])
        data[name] = xr.DataArray(
            arr, dims=("time", "y", "x"), attrs={**attrs, "grid_mapping": "crs"}
        )
    return xr.Dataset(
        data,
        coords={
            "time": ("time", days, {"standard_name": "time", "axis": "T"}),
            "y": ("y", grid.y_centres(window), _axis_attrs("y")),
            "x": ("x", grid.x_centres(window), _axis_attrs("x")),
            "depth": (
                (),
                0.025,
                {
                    "standard_name": "depth",
                    "units": "m",
                    "positive": "down",
                    "long_name": "centre of the 0-5 cm layer",
                },
            ),
            "crs": _grid_mapping(),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": "gsm3-ops daily surface soil moisture (0-5 cm) on EASE-Grid 2.0",
            "institution": "gsm3-ops",
            "references": "Liu et al. 2023, Geosci. Model Dev. 16:1553 (GSM3)",
        },
    )


def _axis_attrs(axis: str) -> dict[str, str]:
    return {
        "standard_name": f"projection_{axis}_coordinate",
        "units": "m",
        "axis": axis.upper(),
        "long_name": f"{axis} of the EASE-Grid 2.0 cell centre",
    }


def _encoding(ds: xr.Dataset, start: dt.date, tile: int) -> dict[str, dict]:
    enc: dict[str, dict] = {"time": {"units": f"days since {start.isoformat()}", "dtype": "int32"}}
    for name in _LAYERS:
        chunks = (1, min(tile, ds.sizes["y"]), min(tile, ds.sizes["x"]))
        fill = FLAG_FILL if name == "quality_flag" else np.nan
        enc[name] = {"chunks": chunks, "_FillValue": fill}
    return enc


def write_day(
    path: Path,
    day: dt.date,
    layers: dict[str, np.ndarray],
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    tile: int = 512,
) -> None:
    """Publish one day's ``layers`` (soil_moisture, soil_moisture_sd, quality_flag) into the
    product Zarr at ``path``, creating it or growing its time axis as needed."""
    if day < start:
        raise ValueError(f"{day} is before the product's start date {start}")
    path = Path(path)
    if not (path / "zarr.json").exists():
        days = pd.date_range(start, day, freq="D")
        ds = _block(days, layers, grid, window, tile)
        ds.to_zarr(
            path, mode="w-", zarr_format=3, consolidated=False, encoding=_encoding(ds, start, tile)
        )
        return
    with xr.open_zarr(path, consolidated=False) as existing:
        last = existing.indexes["time"][-1].date()
        if existing.sizes["y"] != window.n_rows or existing.sizes["x"] != window.n_cols:
            raise ValueError(f"product {path} covers {dict(existing.sizes)}, not {window.shape}")
    if day > last:
        days = pd.date_range(last + dt.timedelta(days=1), day, freq="D")
        block = _block(days, layers, grid, window, tile).drop_vars(["y", "x", "depth", "crs"])
        block.to_zarr(path, append_dim="time", consolidated=False)
    else:
        index = (day - start).days
        block = _block(pd.DatetimeIndex([pd.Timestamp(day)]), layers, grid, window, tile)
        block = block.drop_vars(["y", "x", "depth", "crs", "time"])
        block.to_zarr(path, region={"time": slice(index, index + 1)}, consolidated=False)
