"""The world's days as an operator's CDS downloads of ERA5 and ERA5-Land (new CDS, netCDF).

Three kinds of file, each spanning a calendar month (or ``days_per_file`` days), named as an
operator saving each request would name it, ``<dataset>_<what>_<first>-<last>.<ext>``:

- ``reanalysis-era5-single-levels_total_precipitation_YYYYMMDD-YYYYMMDD.nc``: ERA5 ``tp`` on
  the regular 0.25 degree grid, hourly steps 00..23 UTC of every day of the request, each the
  accumulation (m) over the hour ending at its ``valid_time``; ``expver`` per step.
- ``derived-era5-land-daily-statistics_daily-mean_YYYYMMDD-YYYYMMDD.zip``: the CDS app's zip
  of one netCDF per variable (``2m_temperature_0_daily-mean.nc`` ...), the UTC daily means of
  ERA5-Land's nine state variables on its 0.1 degree grid, one step a day stamped 00 UTC,
  ``history`` ending with the app's ``daily_reduce`` line (``time_shift`` 0: UTC).
- ``reanalysis-era5-land_radiation_YYYYMMDD-YYYYMMDD.nc``: ERA5-Land ``ssrd`` and ``strd`` at
  00 UTC of every day (J m-2 accumulated since 00 UTC of the day before), what the
  ``era5_land`` source itself requests. ERA5-Land's daily statistics have no accumulated
  variables, and 24 hourly steps of 11 variables would be 24 times the size for the same days.

The grids cover the window plus ``margin`` degrees (a CDS ``area`` request), north to south.
A provider pixel is the mean of the 9 km cells in it (``sample.to_latlon``); ERA5 is defined
over the sea (cells there take the nearest land cell's value), ERA5-Land is not (NaN).

Like the CDS, a file of days a..b holds the steps of those dates; precipitation and radiation
of a day end at 00 UTC of the next day, so the last day is complete only with the next file.
Pass one day beyond the last day to serve. The day before the first (whose accumulation the
first 00 UTC step ends) is taken equal to the first: the world has no earlier day.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.sources.era5 import (
    LAND_DAILY,
    LAND_RADIATION,
    Era5LandSource,
    Era5Source,
    window_area,
)
from gsm3_ops.world.sample import to_latlon

ERA5_STEP, LAND_STEP = 0.25, 0.1
_CENTRE = "European Centre for Medium-Range Weather Forecasts"
_CFGRIB = "GRIB to CDM+CF via cfgrib-0.9.15.0/ecCodes-2.39.0 with"
# GRIB parameter id, name and units of each netCDF variable written.
_PARAMS = {
    "tp": (228, "Total precipitation", "m"),
    "t2m": (167, "2 metre temperature", "K"),
    "d2m": (168, "2 metre dewpoint temperature", "K"),
    "sp": (134, "Surface pressure", "Pa"),
    "u10": (165, "10 metre U wind component", "m s**-1"),
    "v10": (166, "10 metre V wind component", "m s**-1"),
    "stl1": (139, "Soil temperature level 1", "K"),
    "lai_hv": (66, "Leaf area index, high vegetation", "m**2 m**-2"),
    "lai_lv": (67, "Leaf area index, low vegetation", "m**2 m**-2"),
    "sd": (141, "Snow depth", "m of water equivalent"),
    "ssrd": (169, "Surface solar radiation downwards", "J m**-2"),
    "strd": (175, "Surface thermal radiation downwards", "J m**-2"),
}
# Share of a day's rain in each UTC hour (an afternoon convective peak); sums to 1.
_HOURS = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(24) + 0.5 - 13.0) / 24.0)
RAIN_BY_HOUR = _HOURS / _HOURS.sum()
_ENCODING = {"zlib": True, "complevel": 1, "shuffle": True, "_FillValue": np.float32(np.nan)}


def provider_grid(
    grid: EaseGrid, window: Window, step: float, margin: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(latitudes north to south, longitudes west to east) of the regular ``step``-degree
    grid covering ``window`` plus ``margin`` degrees, on multiples of ``step`` as the CDS
    cuts an ``area``."""
    north, west, south, east = window_area(grid, window, margin)
    lat = np.arange(math.ceil(north / step), math.floor(south / step) - 1, -1) * step
    lon = np.arange(math.floor(west / step), math.ceil(east / step) + 1) * step
    return np.round(lat, 6), np.round(lon, 6)


def write_era5(
    fields: xr.Dataset,
    grid: EaseGrid,
    window: Window,
    out: Path,
    days_per_file: int | None = None,
    preliminary_from: dt.date | None = None,
) -> list[Path]:
    """Write ``fields["precip_era5"]`` (mm day-1, (time, y, x) on ``window``) as the CDS
    serves hourly ERA5 total precipitation; return the files written.

    ``days_per_file``: None for calendar months, else that many days a file.
    ``preliminary_from``: days from this one on are ERA5T (``expver`` 0005), else 0001.
    """
    lat, lon = provider_grid(grid, window, ERA5_STEP)
    daily = _to_pixels(fields["precip_era5"].values, grid, window, lat, lon, sea=True) / 1000.0
    days = _days(fields)
    written = []
    for first, last in _chunks(days, days_per_file):
        valid = pd.date_range(first, pd.Timestamp(last) + pd.Timedelta(hours=23), freq="h").values
        # Each step ends the hour after (valid - 1 h): that hour's share of its day's total.
        ends = valid - np.timedelta64(1, "h")
        index = np.clip(np.searchsorted(days, ends.astype("datetime64[D]")), 0, len(days) - 1)
        hours = (ends - ends.astype("datetime64[D]")) // np.timedelta64(1, "h")
        tp = daily[index] * RAIN_BY_HOUR[hours][:, None, None]
        ds = _dataset({"tp": tp}, valid, lat, lon, _expvers(valid, preliminary_from))
        ds.attrs["history"] = _history("accum", last)
        name = f"{Era5Source.DATASET}_total_precipitation_{first:%Y%m%d}-{last:%Y%m%d}.nc"
        written.append(_write(ds, Path(out) / name))
    return written


def write_era5_land(
    fields: xr.Dataset,
    grid: EaseGrid,
    window: Window,
    out: Path,
    days_per_file: int | None = None,
    preliminary_from: dt.date | None = None,
) -> list[Path]:
    """Write the 11 ``era5_land`` variables of ``fields`` (registry names and units, (time,
    y, x) on ``window``) as the CDS serves them: a daily-statistics zip and an hourly
    radiation file per month (module docstring); return the files written."""
    lat, lon = provider_grid(grid, window, LAND_STEP)
    days = _days(fields)
    written = []
    for first, last in _chunks(days, days_per_file):
        pick = (days >= np.datetime64(first)) & (days <= np.datetime64(last))
        span = f"{first:%Y%m%d}-{last:%Y%m%d}"
        name = f"{Era5LandSource.DAILY_DATASET}_daily-mean_{span}.zip"
        written.append(
            _write_daily_zip(fields, grid, window, days[pick], lat, lon, Path(out) / name)
        )
        # ssrd/strd valid at 00 UTC of each day: the totals of the day before.
        valid = pd.date_range(first, last, freq="D").values
        before = np.clip(np.searchsorted(days, valid - np.timedelta64(1, "D")), 0, len(days) - 1)
        data = {}
        for reg, (_, nc, factor) in LAND_RADIATION.items():
            daily = _to_pixels(fields[reg].values, grid, window, lat, lon, sea=False)
            data[nc] = daily[before] / factor  # W m-2 -> J m-2 over the day
        ds = _dataset(data, valid, lat, lon, _expvers(valid, preliminary_from))
        ds.attrs["history"] = _history("accum", last)
        name = f"{Era5LandSource.HOURLY_DATASET}_radiation_{span}.nc"
        written.append(_write(ds, Path(out) / name))
    return written


# --- helpers ---------------------------------------------------------------------------------


def _write_daily_zip(
    fields: xr.Dataset,
    grid: EaseGrid,
    window: Window,
    days: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    target: Path,
) -> Path:
    """One netCDF per variable, zipped as the CDS daily-statistics app delivers them."""
    sel = fields.sel(time=days.astype("datetime64[ns]"))
    valid = days.astype("datetime64[ns]")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        members = []
        for reg, (cds, nc, factor) in LAND_DAILY.items():
            values = _to_pixels(sel[reg].values, grid, window, lat, lon, sea=False) / factor
            ds = _dataset({nc: values}, valid, lat, lon, None)
            reduce = (
                "earthkit.transforms.aggregate.temporal.daily_reduce("
                f"{cds}_stream-oper, how=mean, **{{'time_shift': {{'hours': 0}}, "
                "'remove_partial_periods': True})"
            )
            ds.attrs["history"] = _history("instant", _last(days)) + "\n" + reduce
            members.append(_write(ds, Path(tmp) / f"{cds}_0_daily-mean.nc"))
        partial = target.with_name(target.name + ".part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zf:
            for m in members:
                zf.write(m, m.name)
        partial.replace(target)
    return target


def _to_pixels(
    values: np.ndarray, grid: EaseGrid, window: Window, lat: np.ndarray, lon: np.ndarray, sea: bool
) -> np.ndarray:
    """(time, rows, cols) 9 km values -> (time, lat, lon) pixel means of the valid cells.

    ``sea``: the product has values everywhere (ERA5): NaN cells take the nearest valid
    cell first, and pixels beyond the window's reach the nearest pixel. Else (ERA5-Land) a
    pixel without valid cells is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values)
    reach = math.ceil(0.5 / abs(lat[1] - lat[0])) + 2  # the whole margin
    if sea:
        values = _nearest_fill(values, valid.all(axis=0))
        out = to_latlon(values, grid, window, lat, lon, margin=reach)
        return _nearest_fill(out, np.isfinite(out).all(axis=0)).astype(np.float32)
    total = to_latlon(np.where(valid, values, 0.0), grid, window, lat, lon, margin=reach)
    count = to_latlon(valid.astype(np.float64), grid, window, lat, lon, margin=reach)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return mean.astype(np.float32)


def _nearest_fill(values: np.ndarray, good: np.ndarray) -> np.ndarray:
    """(time, a, b) values with the cells outside ``good`` (a, b) set from the nearest good."""
    if good.all() or not good.any():
        return values
    _, (i, j) = ndimage.distance_transform_edt(~good, return_indices=True)
    return values[:, i, j]


def _dataset(
    data: dict[str, np.ndarray],
    valid: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    expvers: np.ndarray | None,
) -> xr.Dataset:
    """The new CDS netCDF layout: (valid_time, latitude, longitude), number, expver."""
    coords: dict = {
        "number": ((), 0, {"long_name": "ensemble member numerical id", "units": "1",
                           "standard_name": "realization"}),
        "valid_time": ("valid_time", valid.astype("datetime64[ns]"),
                       {"long_name": "time", "standard_name": "time"}),
        "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude",
                                       "long_name": "latitude", "stored_direction": "decreasing"}),
        "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude",
                                         "long_name": "longitude"}),
    }  # fmt: skip
    if expvers is not None:
        coords["expver"] = ("valid_time", expvers, {"long_name": "Experiment version"})
    ds = xr.Dataset(coords={k: xr.Variable(*v) for k, v in coords.items()})
    for name, values in data.items():
        param, long_name, units = _PARAMS[name]
        ds[name] = xr.Variable(
            ("valid_time", "latitude", "longitude"),
            np.asarray(values, dtype=np.float32),
            {
                "GRIB_paramId": param,
                "GRIB_shortName": name,
                "GRIB_name": long_name,
                "GRIB_units": units,
                "GRIB_gridType": "regular_ll",
                "GRIB_typeOfLevel": "surface",
                "GRIB_Nx": lon.size,
                "GRIB_Ny": lat.size,
                "GRIB_iDirectionIncrementInDegrees": float(abs(lon[1] - lon[0])),
                "GRIB_jDirectionIncrementInDegrees": float(abs(lat[1] - lat[0])),
                "GRIB_latitudeOfFirstGridPointInDegrees": float(lat[0]),
                "GRIB_longitudeOfFirstGridPointInDegrees": float(lon[0]),
                "GRIB_latitudeOfLastGridPointInDegrees": float(lat[-1]),
                "GRIB_longitudeOfLastGridPointInDegrees": float(lon[-1]),
                "long_name": long_name,
                "units": units,
                "standard_name": "unknown",
            },
        )
    ds.attrs = {
        "GRIB_centre": "ecmf",
        "GRIB_centreDescription": _CENTRE,
        "GRIB_subCentre": 0,
        "Conventions": "CF-1.7",
        "institution": _CENTRE,
        "comment": "synthetic world (gsm3_ops.world.era5), written in the CDS layout",
    }
    return ds


def _write(ds: xr.Dataset, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    encoding = {
        name: {**_ENCODING, "chunksizes": (1, *ds[name].shape[1:])} for name in ds.data_vars
    }
    encoding["valid_time"] = {"units": "seconds since 1970-01-01", "dtype": "int64",
                              "calendar": "proleptic_gregorian"}  # fmt: skip
    ds.to_netcdf(partial, engine="netcdf4", format="NETCDF4", encoding=encoding)
    partial.replace(target)
    return target


def _history(step_type: str, last: dt.date) -> str:
    stamp = (last + dt.timedelta(days=5)).isoformat()  # about when an operator fetched it
    keys = (
        f'{{"source": "data.grib", "filter_by_keys": {{"stream": ["oper"], '
        f'"stepType": ["{step_type}"]}}, "encode_cf": ["parameter", "time", "geography", '
        '"vertical"]}'
    )
    return f"{stamp}T00:00 {_CFGRIB} {keys}"


def _expvers(valid: np.ndarray, preliminary_from: dt.date | None) -> np.ndarray:
    if preliminary_from is None:
        return np.full(valid.shape, "0001")
    late = valid >= np.datetime64(preliminary_from.isoformat(), "ns")
    return np.where(late, "0005", "0001")


def _days(fields: xr.Dataset) -> np.ndarray:
    return np.asarray(fields["time"].values).astype("datetime64[D]")


def _last(days: np.ndarray) -> dt.date:
    return days[-1].astype(dt.date)


def _chunks(days: np.ndarray, days_per_file: int | None) -> Iterator[tuple[dt.date, dt.date]]:
    """(first, last) day of each file: calendar months, or runs of ``days_per_file`` days."""
    dates = [d.astype(dt.date) for d in days]
    if days_per_file is None:
        keys = [(d.year, d.month) for d in dates]
    else:
        keys = [i // days_per_file for i in range(len(dates))]
    start = 0
    for i in range(1, len(dates) + 1):
        if i == len(dates) or keys[i] != keys[start]:
            yield dates[start], dates[i - 1]
            start = i
