"""The synthetic world's IMERG days as GES DISC delivers them (``precip_imerg``).

The demo writes the **daily** product, ``3B-DAY`` (``GPM_3IMERGDF``, or ``GPM_3IMERGDL`` for
days after ``late_after``): it is what the ``imerg`` source fetches by default (one file a
day, GES DISC's own daily aggregate of the half hours), and one file a day instead of 48
keeps the demo's two years within its time budget. A daily file is netCDF4 with its arrays
in the root group, as GES DISC serves it: ``precipitation`` (mm/day) and
``precipitation_cnt`` (valid half hours) ordered (time, lon, lat), ``time`` and
``time_bnds`` in seconds since 1970, ``lat``/``lon`` the pixel centres.

``cadence="half-hour"`` writes the day's 48 ``3B-HHR`` HDF5 granules instead, in the layout
of the real V06B/V07 half-hourly files (``imerg/`` in the fixtures): a ``Grid`` group with
``precipitation`` in mm/hr (time, lon, lat), ``time``/``time_bnds`` in seconds since
1980-01-06 (V07), ``lat``/``lon`` and their bounds, ``_FillValue`` -9999.9, the
``FileHeader`` and ``GridHeader`` attributes. The world has one value a day, so each half
hour rains at the day's mean rate.

The files are GES DISC spatial subsets of the global 0.1 degree grid over the window plus
``margin`` pixels (``tenth_degree.py``), as a regional site requests them; ``subset_names``
names them as the GES DISC subsetter does (``...V07B.nc4.SUB.nc4``), else with the original
granule name. Folders follow GES DISC:
``GPM_3IMERGDF.07/YYYY/MM/`` (daily), ``GPM_3IMERGHH.07/YYYY/DDD/`` (half-hourly). Every file
says in its ``history`` that it is synthetic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import netCDF4
import numpy as np
import xarray as xr

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.world.sample import to_latlon
from gsm3_ops.world.tenth_degree import STEP, pixels

VARIABLE = "precip_imerg"
FILL = np.float32(-9999.9)
VERSION = "07"
HISTORY = "synthetic: written by gsm3_ops.world.imerg from the gsm3-ops synthetic world"
_SHORT = {("day", "final"): "GPM_3IMERGDF", ("day", "late"): "GPM_3IMERGDL"}
_SHORT |= {("half-hour", "final"): "GPM_3IMERGHH", ("half-hour", "late"): "GPM_3IMERGHHL"}
_TITLE = {"final": "Final", "late": "Late"}
_GPS_EPOCH = dt.datetime(1980, 1, 6, tzinfo=dt.UTC)  # V07 half-hourly times count from here

Cadence = Literal["day", "half-hour"]


def write_imerg(
    fields: xr.Dataset,
    grid: EaseGrid,
    window: Window,
    out: Path,
    *,
    cadence: Cadence = "day",
    late_after: dt.date | None = None,
    subset_names: bool = True,
    margin: int = 2,
) -> list[Path]:
    """Write ``fields[precip_imerg]`` (time, y, x, mm day-1 on ``window``) as IMERG files.

    Parameters
    ----------
    fields
        The world's forcings (``SyntheticSource.forcing``); only ``precip_imerg`` is used.
    grid, window
        The 9 km grid and the window ``fields`` cover.
    out
        The archive folder; GES DISC's folders are made under it.
    cadence
        ``"day"`` (``3B-DAY``, the default product) or ``"half-hour"`` (48 ``3B-HHR`` a day).
    late_after
        Days after it are written as the Late run (``3B-DAY-L``), as a real archive holds
        recent days before the Final run (~3.5 months) has them; None: every day Final.
    subset_names, margin
        The subsetter's names (``.SUB.nc4``), and pixels of subset around the window.

    Returns
    -------
    list[Path]
        The files written, in time order.
    """
    da = fields[VARIABLE]
    if da.dims != ("time", "y", "x") or da.shape[1:] != window.shape:
        raise ValueError(f"{VARIABLE}: dims {da.dims} {da.shape}, expected (time, y, x) {window}")
    lat, lon = pixels(grid, window, margin)
    # (time, lat, lon): each pixel the mean of its valid cells
    daily = to_latlon(da.values, grid, window, lat, lon, margin).astype(np.float32)
    days = [dt.date.fromisoformat(str(t)[:10]) for t in da["time"].values.astype("datetime64[D]")]
    written: list[Path] = []
    for k, day in enumerate(days):
        run = "late" if late_after is not None and day > late_after else "final"
        field = daily[k].T  # (lon, lat), IMERG's order
        if cadence == "day":
            path = _daily_path(Path(out), day, run, subset_names)
            _write_daily(path, day, run, field, lat, lon)
            written.append(path)
        else:
            for minute, path in _half_hour_paths(Path(out), day, run, subset_names):
                _write_half_hour(path, day, minute, run, field / np.float32(24.0), lat, lon)
                written.append(path)
    return written


# --- names --------------------------------------------------------------------------------


def _daily_path(out: Path, day: dt.date, run: str, subset: bool) -> Path:
    suffix = "" if run == "final" else "-L"
    name = f"3B-DAY{suffix}.MS.MRG.3IMERG.{day:%Y%m%d}-S000000-E235959.V{VERSION}B.nc4"
    folder = out / f"{_SHORT[('day', run)]}.{VERSION}" / f"{day:%Y}" / f"{day:%m}"
    return folder / (name + ".SUB.nc4" if subset else name)


def _half_hour_paths(out: Path, day: dt.date, run: str, subset: bool) -> Iterator[tuple[int, Path]]:
    folder = out / f"{_SHORT[('half-hour', run)]}.{VERSION}" / f"{day:%Y}" / f"{day:%j}"
    suffix, ext = ("", "HDF5") if run == "final" else ("-L", "RT-H5")
    for minute in range(0, 1440, 30):
        s = f"{minute // 60:02d}{minute % 60:02d}00"
        e = f"{(minute + 29) // 60:02d}{(minute + 29) % 60:02d}59"
        name = f"3B-HHR{suffix}.MS.MRG.3IMERG.{day:%Y%m%d}-S{s}-E{e}.{minute:04d}.V{VERSION}B.{ext}"
        yield minute, folder / (name + ".SUB.hdf5" if subset else name)


# --- files --------------------------------------------------------------------------------


def _write_daily(
    path: Path, day: dt.date, run: str, field: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> None:
    """One 3B-DAY file: root-group arrays, ``field`` (lon, lat) in mm/day."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts(
            {
                "BeginDate": day.isoformat(),
                "BeginTime": "00:00:00.000Z",
                "EndDate": day.isoformat(),
                "EndTime": "23:59:59.999Z",
                "title": f"GPM IMERG {_TITLE[run]} Precipitation L3 1 day 0.1 degree x 0.1 "
                f"degree ({_SHORT[('day', run)]})",
                "DOI": f"10.5067/GPM/IMERGD{run[0].upper()}/DAY/{VERSION}",
                "history": HISTORY,
            }
        )
        _coords(nc, lat, lon, bounds=False)
        _time(nc, t0, t0 + 86400, "seconds since 1970-01-01 00:00:00Z", int_type="i4")
        p = nc.createVariable(
            "precipitation", "f4", ("time", "lon", "lat"), fill_value=FILL, zlib=True
        )
        p.setncatts(
            {
                "units": "mm/day",
                "long_name": "Daily mean precipitation rate (combined microwave-IR) estimate. "
                "Formerly precipitationCal.",
            }
        )
        p[:] = np.where(np.isfinite(field), field, FILL)[None]
        cnt = nc.createVariable("precipitation_cnt", "i2", ("time", "lon", "lat"), zlib=True)
        cnt.setncatts(
            {
                "units": "count",
                "long_name": "Count of all valid half-hourly precipitation retrievals for the day",
            }
        )
        cnt[:] = np.where(np.isfinite(field), 48, 0).astype(np.int16)[None]


def _write_half_hour(
    path: Path,
    day: dt.date,
    minute: int,
    run: str,
    rate: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
) -> None:
    """One 3B-HHR granule: the ``Grid`` group, ``rate`` (lon, lat) in mm/hr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    t0 = int((start - _GPS_EPOCH).total_seconds())
    stop = start + dt.timedelta(minutes=29, seconds=59, milliseconds=999)
    header = {
        "DOI": f"10.5067/GPM/IMERG/3B-HH{'' if run == 'final' else '-L'}/{VERSION}",
        "AlgorithmID": "3IMERGHH",
        "FileName": path.name.removesuffix(".SUB.hdf5"),
        "SatelliteName": "MULTI",
        "InstrumentName": "MERGED",
        "StartGranuleDateTime": f"{start:%Y-%m-%dT%H:%M:%S}.000Z",
        "StopGranuleDateTime": f"{stop:%Y-%m-%dT%H:%M:%S}.999Z",
        "TimeInterval": "HALF_HOUR",
        "ProductVersion": f"V{VERSION}B",
        "EmptyGranule": "NOT_EMPTY",
    }
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.FileHeader = "".join(f"{k}={v};\n" for k, v in header.items())
        nc.history = HISTORY
        g = nc.createGroup("Grid")
        g.GridHeader = (
            "BinMethod=ARITHMETIC_MEAN;\nRegistration=CENTER;\nLatitudeResolution=0.1;\n"
            "LongitudeResolution=0.1;\nNorthBoundingCoordinate=90;\n"
            "SouthBoundingCoordinate=-90;\nEastBoundingCoordinate=180;\n"
            "WestBoundingCoordinate=-180;\nOrigin=SOUTHWEST;\n"
        )
        _coords(g, lat, lon, bounds=True)
        _time(g, t0, t0 + 1800, "seconds since 1980-01-06 00:00:00 UTC", int_type="i4")
        p = g.createVariable("precipitation", "f4", ("time", "lon", "lat"), fill_value=FILL)
        p.setncatts(
            {
                "DimensionNames": "time,lon,lat",
                "Units": "mm/hr",
                "units": "mm/hr",
                "coordinates": "time lon lat",
                "CodeMissingValue": "-9999.9",
            }
        )
        p[:] = np.where(np.isfinite(rate), rate, FILL)[None]


def _coords(group: netCDF4.Dataset, lat: np.ndarray, lon: np.ndarray, bounds: bool) -> None:
    """``lon`` and ``lat`` pixel centres (and, in a granule's Grid group, their bounds)."""
    for name, values, units, standard, axis in (
        ("lon", lon, "degrees_east", "longitude", "X"),
        ("lat", lat, "degrees_north", "latitude", "Y"),
    ):
        group.createDimension(name, values.size)
        v = group.createVariable(name, "f4", (name,))
        v.setncatts({"units": units, "standard_name": standard, "axis": axis})
        v[:] = values
        if bounds:
            v.bounds = f"{name}_bnds"
            group.createDimension(f"{name}v", 2)
            b = group.createVariable(f"{name}_bnds", "f4", (name, f"{name}v"))
            b.units = units
            b[:] = np.stack([values - STEP / 2, values + STEP / 2], axis=1)


def _time(group: netCDF4.Dataset, t0: int, t1: int, units: str, int_type: str) -> None:
    """``time`` (the interval's start) and ``time_bnds`` [t0, t1) in ``units``."""
    group.createDimension("time", 1)
    group.createDimension("nv", 2)
    t = group.createVariable("time", int_type, ("time",))
    t.setncatts({"units": units, "standard_name": "time", "calendar": "julian"})
    t.bounds = "time_bnds"
    t[:] = [t0]
    tb = group.createVariable("time_bnds", int_type, ("time", "nv"))
    tb.units = units
    tb[:] = [[t0, t1]]
