"""The synthetic world's MSWEP days as GloH2O delivers them (``precip_mswep``).

GloH2O shares MSWEP V2.8 as netCDF files in ``MSWEP_V280/<product>/<cadence>/``: products
``Past`` and ``NRT`` (near real time), cadences ``Daily`` (``YYYYDDD.nc``) and ``3hourly``
(``YYYYDDD.HH.nc``). A file holds ``precipitation`` (mm/d, or mm/3h) with dims (time, lat,
lon) on the 0.1 degree grid, latitudes north to south (``tenth_degree.py``).

GloH2O's files are global (3600 x 1800 pixels). The demo writes **regional extracts** of
them by default, the pixels over the window plus ``margin`` (what a site gets from ``cdo
sellonlatbox`` on the shared files, a common way of keeping a region): a global file per day
would cost ~26 MB of float32 to compress and, worse, to read back and regrid every day,
where the extract costs a few kilobytes and the reader takes the same path (it regrids
whatever lat/lon box a file holds). ``global_files=True`` writes GloH2O's full global
grid, NaN outside the window, to check that path.

Days after ``nrt_after`` go to ``NRT/``, the others to ``Past/``, as a real mirror holds
recent days in NRT until Past catches up. Every file says in its ``history`` that it is
synthetic.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import netCDF4
import numpy as np
import xarray as xr

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.world.sample import to_latlon
from gsm3_ops.world.tenth_degree import STEP, pixels

VARIABLE = "precip_mswep"
HISTORY = "synthetic: written by gsm3_ops.world.mswep from the gsm3-ops synthetic world"
TIME_UNITS = "days since 1970-01-01 00:00:00"

Cadence = Literal["daily", "3hourly"]


def write_mswep(
    fields: xr.Dataset,
    grid: EaseGrid,
    window: Window,
    out: Path,
    *,
    cadence: Cadence = "daily",
    nrt_after: dt.date | None = None,
    global_files: bool = False,
    margin: int = 2,
) -> list[Path]:
    """Write ``fields[precip_mswep]`` (time, y, x, mm day-1 on ``window``) as MSWEP files.

    Parameters
    ----------
    fields
        The world's forcings (``SyntheticSource.forcing``); only ``precip_mswep`` is used.
    grid, window
        The 9 km grid and the window ``fields`` cover.
    out
        The ``MSWEP_V280`` folder: ``<product>/Daily/`` (or ``3hourly/``) is made under it.
    cadence
        ``"daily"`` (one file a day) or ``"3hourly"`` (eight a day, each an eighth of the
        day's total: the world has one value a day).
    nrt_after
        Days after it are written to ``NRT/``; None: every day in ``Past/``.
    global_files, margin
        GloH2O's whole global grid instead of the regional extract; pixels around the window.

    Returns
    -------
    list[Path]
        The files written, in time order.
    """
    da = fields[VARIABLE]
    if da.dims != ("time", "y", "x") or da.shape[1:] != window.shape:
        raise ValueError(f"{VARIABLE}: dims {da.dims} {da.shape}, expected (time, y, x) {window}")
    lat, lon = pixels(grid, window, margin)
    daily = to_latlon(da.values, grid, window, lat, lon, margin).astype(np.float32)
    daily = daily[:, ::-1]  # north to south
    lat = lat[::-1]
    if global_files:
        daily, lat, lon = _on_the_globe(daily, lat, lon)
    days = [dt.date.fromisoformat(str(t)[:10]) for t in da["time"].values.astype("datetime64[D]")]
    written: list[Path] = []
    for k, day in enumerate(days):
        product = "NRT" if nrt_after is not None and day > nrt_after else "Past"
        if cadence == "daily":
            path = Path(out) / product / "Daily" / f"{day:%Y%j}.nc"
            _write(path, day, 0, daily[k], lat, lon, "mm/d")
            written.append(path)
            continue
        for hour in range(0, 24, 3):
            path = Path(out) / product / "3hourly" / f"{day:%Y%j}.{hour:02d}.nc"
            _write(path, day, hour, daily[k] / np.float32(8.0), lat, lon, "mm/3h")
            written.append(path)
    return written


def _on_the_globe(
    values: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The regional (time, lat, lon) block placed in GloH2O's global grid, NaN elsewhere."""
    glat = np.round(89.95 - STEP * np.arange(1800), 2)
    glon = np.round(-179.95 + STEP * np.arange(3600), 2)
    j0 = int(np.argmin(np.abs(glat - lat[0])))
    i0 = int(np.argmin(np.abs(glon - lon[0])))
    out = np.full((values.shape[0], glat.size, glon.size), np.nan, dtype=np.float32)
    out[:, j0 : j0 + lat.size, i0 : i0 + lon.size] = values
    return out, glat, glon


def _write(
    path: Path,
    day: dt.date,
    hour: int,
    field: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    units: str,
) -> None:
    """One MSWEP file: ``precipitation`` (time=1, lat, lon) in ``units``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts(
            {
                "title": "MSWEP V2.8 (Multi-Source Weighted-Ensemble Precipitation)",
                "institution": "GloH2O",
                "history": HISTORY,
            }
        )
        for name, values, units_, standard in (
            ("lon", lon, "degrees_east", "longitude"),
            ("lat", lat, "degrees_north", "latitude"),
        ):
            nc.createDimension(name, values.size)
            v = nc.createVariable(name, "f4", (name,))
            v.setncatts({"units": units_, "standard_name": standard, "long_name": standard})
            v[:] = values
        nc.createDimension("time", 1)
        t = nc.createVariable("time", "f8", ("time",))
        t.setncatts({"units": TIME_UNITS, "standard_name": "time", "calendar": "standard"})
        t[:] = [(day - dt.date(1970, 1, 1)).days + hour / 24.0]
        p = nc.createVariable(
            "precipitation",
            "f4",
            ("time", "lat", "lon"),
            fill_value=np.float32(np.nan),
            zlib=True,
            chunksizes=(1, min(lat.size, 600), min(lon.size, 600)),
        )
        p.setncatts({"units": units, "long_name": "precipitation"})
        p[:] = field[None]
