"""Daily values of ERA5 and ERA5-Land fields read by :mod:`gsm3_ops.sources.grib`.

The fields have dims ``(valid_time, latitude, longitude)``. ERA5 single-level accumulations
cover the hour ending at their valid time; ERA5-Land accumulates from 00 UTC, so the field
valid at 00 UTC of D+1 holds the total of day D. A day that is not complete is an error
naming the file (or variable) and the day: a partial mean or sum would be biased.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.errors import SourceError

_TIME = "valid_time"  # the time dimension of grib.open_fields


def day_slice(da: xr.DataArray, day: dt.date) -> xr.DataArray:
    """The steps of ``da`` whose valid time falls in the UTC day ``day`` (00:00 included)."""
    start = np.datetime64(day.isoformat(), "ns")
    times = da[_TIME].values
    keep = (times >= start) & (times < start + np.timedelta64(1, "D"))
    return da.isel({_TIME: np.flatnonzero(keep)})


def sum_hourly_accumulations(da: xr.DataArray, day: dt.date, path: Path) -> xr.DataArray:
    """Total of ``day`` from hourly accumulations that each cover the hour ending at valid time.

    ERA5 single levels: the value valid at T is the accumulation over (T - 1 h, T], so the UTC
    day ``day`` is the sum of the 24 values valid at 01:00 .. 24:00 (00:00 of the next day).
    Returns dims (latitude, longitude).
    """
    start = np.datetime64(day.isoformat(), "ns")
    wanted = start + np.arange(1, 25) * np.timedelta64(1, "h")
    have = pd.DatetimeIndex(da[_TIME].values)
    missing = [t for t in wanted if t not in have]
    if missing:
        first = pd.Timestamp(missing[0]).isoformat()
        raise SourceError(
            f"{path}: {da.name} lacks {len(missing)} of the 24 hourly accumulations of "
            f"{day.isoformat()} (first missing valid time {first})"
        )
    return da.sel({_TIME: wanted}).sum(_TIME, skipna=False)


def accumulation_at(da: xr.DataArray, when: dt.datetime, path: Path) -> xr.DataArray:
    """The field valid at ``when`` (ERA5-Land: 00 UTC of D+1 holds the total of day D)."""
    t = np.datetime64(when.replace(tzinfo=None).isoformat(), "ns")
    if t not in pd.DatetimeIndex(da[_TIME].values):
        raise SourceError(f"{path}: {da.name} has no field valid at {when.isoformat()}")
    return da.sel({_TIME: t})


def daily_value(da: xr.DataArray, day: dt.date, path: Path) -> xr.DataArray:
    """The daily statistic of ``day`` (one step), or the mean of 24 hourly steps."""
    steps = day_slice(da, day)
    n = steps.sizes[_TIME]
    if n == 1:
        return steps.isel({_TIME: 0}, drop=True)
    if n == 24:
        return steps.mean(_TIME)
    raise SourceError(
        f"{path}: {da.name} has {n} time steps on {day.isoformat()}; expected the daily "
        "statistic (1) or 24 hourly values"
    )
