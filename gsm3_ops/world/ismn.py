"""The synthetic world's in-situ sites as an ISMN download in the header+values format.

ISMN delivers a request as ``Data_separate_files_header_<start>_<end>/`` (zipped or not)
holding ``<Network>/<Station>/`` folders with one ``.stm`` file per sensor, named
``<CSE>_<Network>_<Station>_sm_<from>_<to>_<Sensor>_<first>_<last>.stm``: a header line (CSE,
network, station, lat, lon, elevation, depth from, depth to, sensor), then one line per UTC
hour ``yyyy/mm/dd HH:MM value ismn_flag provider_flag``, values in m3 m-3 with 4 decimals.
Fields of a file name are split at ``_``, so a station id's ``_`` becomes ``-``.

How the world's daily values come back through the reader's rule (good flag ``G`` only, the
mean of at least 12 valid hours of a UTC day): every good hour of a day carries the day's
value, so the daily mean is the value to the printed precision (5e-5 m3 m-3). Up to four hours
a day are flagged (``D01``, ``D02,D03``, ``D06``, ``D09``, ``C03``) and carry another value that
a reader keeping them would average in. A day the world lacks is either absent (an outage) or
has fewer than 12 good hours. Every ``deep_every``-th station has a second sensor at 0.50 m
(a smoothed, deeper series) that a 5 cm reader must leave out and list.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

SENSOR = "Synthetic-Probe"
SURFACE = (0.05, 0.05)  # m: the sensor the reader uses
DEEP = (0.50, 0.50)  # m: below any 5 cm reader's range
BAD_FLAGS = ("D01", "D02,D03", "D06", "D09", "C03")
MAX_BAD_HOURS = 4  # per observed day; 20 good hours stay, well above the reader's 12


def station_name(site: str) -> str:
    """The ISMN station name of a world site id: ``SYN_0805_2317`` -> ``SYN-0805-2317``."""
    return str(site).replace("_", "-")


def write_ismn(
    sites: pd.DataFrame,
    values: xr.DataArray,
    out: Path,
    network: str = "SYNTHETIC",
    *,
    deep_every: int = 3,
    seed: int = 0,
    zipped: bool = False,
) -> Path:
    """Write the world's in-situ series as an ISMN header+values download under ``out``.

    Parameters
    ----------
    sites
        One row per site: ``site`` (a column or the index), ``lat``, ``lon`` (degrees) and,
        when known, ``elevation`` (m; 0 when the column is absent).
    values
        Daily soil moisture (site, time), m3 m-3, NaN on days without a value.
    out
        The folder that receives the download.
    network
        The network (and CSE) name; no ``_`` (a file-name field separator).
    deep_every
        Every ``deep_every``-th station (in site order) also has a 0.50 m sensor; 0: none.
    seed
        Seeds which hours are flagged and how a missing day is written.
    zipped
        Deliver the download as ISMN does, one zip archive (the folder is not kept).

    Returns
    -------
    Path
        The ``Data_separate_files_header_<start>_<end>`` folder, or its ``.zip``.
    """
    if "_" in network or not network:
        raise ValueError(f"network {network!r} must be a non-empty name without '_'")
    table = sites.set_index("site") if "site" in sites.columns else sites
    values = values.transpose("site", "time")
    days = pd.DatetimeIndex(values["time"].values).normalize()
    if len(days) == 0:
        raise ValueError("values have no day to write")
    stamps = _hour_stamps(days)
    root = Path(out) / f"Data_separate_files_header_{days[0]:%Y%m%d}_{days[-1]:%Y%m%d}"
    rng = np.random.default_rng(seed)
    for i, site in enumerate(values["site"].values):
        row = table.loc[site]
        daily = values.sel(site=site).to_numpy().astype(np.float64)
        sensors = [(SURFACE, daily)]
        if deep_every and i % deep_every == 0:
            sensors.append((DEEP, _deeper(daily)))
        station = station_name(site)
        for depth, series in sensors:
            body, first, last = _records(series, days, stamps, rng)
            if body is None:
                continue  # no hour at all: ISMN has no file for such a sensor
            header = _header(network, station, row, depth)
            name = (f"{network}_{network}_{station}_sm_{depth[0]:.6f}_{depth[1]:.6f}_{SENSOR}"
                    f"_{first:%Y%m%d}_{last:%Y%m%d}.stm")  # fmt: skip
            folder = root / network / station
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(f"{header}\r\n{body}\r\n".encode("ascii"))
    if not zipped:
        return root
    archive = shutil.make_archive(str(root), "zip", root_dir=root)
    shutil.rmtree(root)
    return Path(archive)


def _header(network: str, station: str, row: pd.Series, depth: tuple[float, float]) -> str:
    """The header line, in ISMN's column widths."""
    elevation = float(row["elevation"]) if "elevation" in row.index else 0.0
    return (
        f"{network:<10} {network:<15} {station:<15} {float(row['lat']):10.5f} "
        f"{float(row['lon']):11.5f} {elevation:7.2f} {depth[0]:7.2f} {depth[1]:7.2f} {SENSOR}"
    )


def _hour_stamps(days: pd.DatetimeIndex) -> np.ndarray:
    """``yyyy/mm/dd HH:MM`` of every hour of ``days`` (days x 24, flattened)."""
    hours = days.repeat(24) + pd.to_timedelta(np.tile(np.arange(24), len(days)), unit="h")
    return np.asarray(hours.strftime("%Y/%m/%d %H:%M"), dtype=object)


def _deeper(daily: np.ndarray) -> np.ndarray:
    """A deeper sensor's series: the surface one smoothed over a month, gaps kept."""
    smooth = pd.Series(daily).rolling(31, center=True, min_periods=1).mean().to_numpy()
    return np.where(np.isfinite(daily), smooth, np.nan)


def _records(
    daily: np.ndarray, days: pd.DatetimeIndex, stamps: np.ndarray, rng: np.random.Generator
) -> tuple[str | None, pd.Timestamp, pd.Timestamp]:
    """The hourly record lines of one sensor and the first and last day they cover."""
    n = len(daily)
    observed = np.isfinite(daily)
    # A missing day keeps a plausible value (the nearest observed one) on too few good hours.
    filled = pd.Series(daily).ffill().bfill().fillna(0.25).to_numpy()
    outage = ~observed & (rng.random(n) < 0.5)
    n_bad = np.where(observed, rng.integers(0, MAX_BAD_HOURS + 1, n), rng.integers(13, 25, n))
    order = np.argsort(rng.random((n, 24)), axis=1)
    bad = order < n_bad[:, None]
    value = np.repeat(filled[:, None], 24, axis=1)
    other = np.where(value < 0.4, value + 0.1, value - 0.1)
    value = np.where(bad, other, value)
    flag = np.where(bad, rng.choice(np.array(BAD_FLAGS, dtype=object), (n, 24)), "G")
    provider = np.where(rng.random((n, 24)) < 0.02, "", "M")  # ISMN leaves some empty
    keep = np.repeat(~outage, 24)
    if not keep.any():
        return None, days[0], days[-1]
    text = np.char.mod("%8.4f", value.ravel()[keep]).astype(object)
    lines = stamps[keep] + " " + text + " " + flag.ravel()[keep] + " " + provider.ravel()[keep]
    kept_days = days[~outage]
    return "\r\n".join(lines), kept_days[0], kept_days[-1]
