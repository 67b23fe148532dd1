"""Daily values of ERA5 and ERA5-Land fields read by :mod:`gsm3_ops.sources.grib`.

The fields have dims ``(valid_time, latitude, longitude)``. ERA5 single-level accumulations
cover the hour ending at their valid time; ERA5-Land accumulates from 00 UTC, so the field
valid at 00 UTC of D+1 holds the total of day D. A day that is not complete is an error
naming the file (or variable) and the day: a partial mean or sum would be biased. A CDS
daily-statistics step is taken only for a UTC day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.errors import SourceError
from gsm3_ops.sources.base import CorruptFileError, MissingVariableError
from gsm3_ops.sources.era5_files import (
    FROM_00,
    HOURLY_SUM,
    INSTANT,
    CdsFiles,
    Need,
    Part,
    choose,
    zone_label,
)

_TIME = "valid_time"  # the time dimension of grib.open_fields


def day_slice(da: xr.DataArray, day: dt.date) -> xr.DataArray:
    """The steps of ``da`` whose valid time falls in the UTC day ``day`` (00:00 included)."""
    start = np.datetime64(day.isoformat(), "ns")
    times = da[_TIME].values
    keep = (times >= start) & (times < start + np.timedelta64(1, "D"))
    return da.isel({_TIME: np.flatnonzero(keep)})


def day_value(
    files: CdsFiles, parts: list[Part], need: Need, day: dt.date
) -> tuple[xr.DataArray, str]:
    """``day`` of ``need`` from the parts that hold it: (latitude, longitude) in the files'
    units (a daily-mean precipitation step made a daily total), and the file(s) it came from.

    Raises
    ------
    MissingVariableError
        No part holds the variable.
    SourceError
        The day is incomplete (the file and the first missing step are named), or a daily
        statistic is of another time zone than UTC or of an unusable kind.
    """
    use = choose(parts, need, day)
    if not use:  # let the day rules say what is missing, in the files' own terms
        use = [p for p in parts if need.name in p.inv.times]
        if not use:
            _missing(files, parts, need)
    label = ", ".join(p.label for p in use)
    if len(use) == 1 and use[0].daily and need.kind != FROM_00:
        return _statistic(files.field(use[0], need.name), use[0], need, day), label
    fields = [files.field(p, need.name) for p in use]
    da = fields[0]  # the reader's fields come sorted, each step once
    if len(fields) > 1:
        try:
            da = xr.concat(fields, _TIME, join="exact")
        except ValueError:
            raise CorruptFileError(f"{label}: {need.name} on different grids") from None
        _, first = np.unique(da[_TIME].values, return_index=True)
        da = da.isel({_TIME: first})  # sorted, each step once (files may overlap)
    if need.kind == HOURLY_SUM:
        return sum_hourly_accumulations(da, day, label), label
    if need.kind == FROM_00:
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
        return accumulation_at(da, end, label), label
    return daily_value(da, day, label), label


def _missing(files: CdsFiles, parts: list[Part], need: Need) -> None:
    """Raise the reader's own MissingVariableError from the file that should hold ``need``:
    one holding another variable of its kind, else the first."""
    kin = {n.name for n in files.needs if n.kind == need.kind}
    sibling = next((p for p in parts if kin & set(p.inv.times)), parts[0] if parts else None)
    if sibling is not None:
        files.field(sibling, need.name)  # raises, naming the file and what it holds
    where = sibling.label if sibling is not None else "no files"
    raise MissingVariableError(f"{where}: no variable {need.name!r}")


def _statistic(da: xr.DataArray, part: Part, need: Need, day: dt.date) -> xr.DataArray:
    """The daily-statistics step of ``day``: UTC days only; precipitation as a daily total."""
    zone = part.zone(need)
    if zone not in (None, 0):
        raise CorruptFileError(
            f"{part.label}: daily statistics of {need.name} computed for time zone "
            f"{zone_label(zone)}, not UTC; request time_zone utc+00:00"
        )
    stat = part.statistic
    factor = 1.0
    if need.kind == INSTANT and stat not in (None, "mean"):
        raise CorruptFileError(f"{part.label}: daily {stat} of {need.name}, expected daily mean")
    if need.kind == HOURLY_SUM:
        if stat not in ("mean", "sum"):
            raise CorruptFileError(
                f"{part.label}: daily {stat or 'statistic (unstated)'} of {need.name}, "
                "expected daily_mean or daily_sum"
            )
        factor = 24.0 if stat == "mean" else 1.0  # the mean of 24 hourly accumulations
    (i,) = np.flatnonzero(da[_TIME].values == np.datetime64(day.isoformat(), "ns"))
    return da.isel({_TIME: i}, drop=True) * factor


def sum_hourly_accumulations(da: xr.DataArray, day: dt.date, path: Path | str) -> xr.DataArray:
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


def accumulation_at(da: xr.DataArray, when: dt.datetime, path: Path | str) -> xr.DataArray:
    """The field valid at ``when`` (ERA5-Land: 00 UTC of D+1 holds the total of day D)."""
    t = np.datetime64(when.replace(tzinfo=None).isoformat(), "ns")
    at = np.flatnonzero(da[_TIME].values == t)
    if not at.size:
        raise SourceError(f"{path}: {da.name} has no field valid at {when.isoformat()}")
    return da.isel({_TIME: int(at[0])})


def daily_value(da: xr.DataArray, day: dt.date, path: Path | str) -> xr.DataArray:
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
