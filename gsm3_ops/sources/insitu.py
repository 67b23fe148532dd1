"""Shared pieces of the in-situ sources (ISMN, USCRN): the result type, daily aggregation,
sensor depth selection and the paper's region of each site.

Both readers hand back an :class:`InsituRead`: the ``insitu`` target as a (site, time)
``xr.DataArray`` in m3 m-3 that :meth:`gsm3_ops.cube.Cube.write_insitu` takes as it is, the
metadata of the sensor used at each site, and the files left out with the reason.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops import variables as registry
from gsm3_ops.config import PAPER_REGIONS, BoxConfig
from gsm3_ops.errors import SourceError
from gsm3_ops.regions import region_of

# Columns of InsituRead.sites, in this order (readers may add more after them).
SITE_COLUMNS: tuple[str, ...] = (
    "network",
    "station",
    "lat",
    "lon",
    "depth_from",
    "depth_to",
    "sensor",
    "file",
)


@dataclass(frozen=True)
class InsituRead:
    """What an in-situ reader returns.

    Attributes
    ----------
    data
        ``insitu`` (site, time), m3 m-3, daily; coordinates ``site`` (``ISMN:<network>:<station>``
        or ``USCRN:<WBANNO>``), ``lat``, ``lon``, ``network``, ``region``.
    sites
        One row per site of ``data`` (same order, indexed by site id): network, station, lat,
        lon, depth_from, depth_to (m), sensor, file (``; ``-separated when several), and
        whatever else the reader knows (elevation, static variables).
    skipped
        ``(path, reason)`` for every file or site left out: unreadable, no valid day.
    """

    data: xr.DataArray
    sites: pd.DataFrame
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class NoStationError(SourceError):
    """No station of the files read has a valid day; ``skipped`` lists each one and why."""

    def __init__(self, message: str, skipped: list[tuple[Path, str]]) -> None:
        super().__init__(message)
        self.skipped = list(skipped)


def default_regions() -> dict[str, BoxConfig]:
    """The GSM3 paper's seven evaluation regions (``config.PAPER_REGIONS``)."""
    return {k: BoxConfig(**v) for k, v in PAPER_REGIONS.items()}


def daily_mean(values: pd.Series, min_hours: int) -> pd.Series:
    """Daily means of a sub-daily series, on the calendar days of its time stamps.

    Values are first averaged within each clock hour (so a 15-minute sensor counts an hour
    once), then a day's mean is kept only when at least ``min_hours`` hours have a value.
    NaN values do not count. Returns one value per day that has any data (NaN where too few
    hours), indexed by the day at 00:00.
    """
    if not 1 <= min_hours <= 24:
        raise ValueError(f"min_hours must be within 1..24, got {min_hours}")
    valid = values.dropna()
    if valid.empty:
        empty = pd.DatetimeIndex([], name="time").as_unit("ns")
        return pd.Series([], index=empty, dtype="float64")
    index = pd.DatetimeIndex(valid.index)
    hourly = valid.groupby(index.floor("h")).mean()
    days = pd.DatetimeIndex(hourly.index).floor("D")
    stats = hourly.groupby(days).agg(["mean", "count"])
    daily = stats["mean"].where(stats["count"] >= min_hours)
    daily.index = pd.DatetimeIndex(daily.index, name="time").as_unit("ns")
    return daily.astype("float64")


def depth_rank(
    depth_from: float,
    depth_to: float,
    *,
    preferred: float,
    tolerance: float = 0.01,
) -> tuple[int, float, float]:
    """Sort key of a sensor's depth: smaller is better.

    First, sensors at the preferred depth (both ends within ``tolerance``, e.g. SCAN's
    0.0508 m for 0.05 m); then the distance of the layer's middle from the preferred depth;
    then the thinner layer (a point sensor at 5 cm beats a 0-10 cm integrating probe).
    """
    at_preferred = (
        abs(depth_from - preferred) <= tolerance and abs(depth_to - preferred) <= tolerance
    )
    middle = 0.5 * (depth_from + depth_to)
    return (
        0 if at_preferred else 1,
        round(abs(middle - preferred), 6),
        round(depth_to - depth_from, 6),
    )


def depth_allowed(depth_from: float, depth_to: float, *, shallowest: float, deepest: float) -> bool:
    """Whether a sensor's depth range lies within ``shallowest..deepest`` (m, ends included)."""
    eps = 1e-9  # file names carry 6 decimals; do not lose 0.1 to rounding
    return (
        np.isfinite(depth_from)
        and np.isfinite(depth_to)
        and depth_from <= depth_to
        and depth_from >= shallowest - eps
        and depth_to <= deepest + eps
    )


def excluded_sensor(sensor: str, patterns: Sequence[str]) -> str | None:
    """The first pattern (case-insensitive substring) that ``sensor`` matches, else None."""
    lowered = sensor.lower()
    for pattern in patterns:
        if pattern.lower() in lowered:
            return pattern
    return None


def range_problem(daily: pd.Series) -> str | None:
    """Why a site's daily series cannot be the ``insitu`` target, or None when it can.

    Values outside the registry's valid range mean a unit mistake (percent for m3 m-3) or a
    broken sensor; the reader leaves such a site out and names it rather than clip.
    """
    var = registry.get("insitu")
    values = daily.to_numpy(dtype=np.float64)
    bad = var.out_of_range(values)
    if bad.any():
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        return (
            f"{int(bad.sum())} daily values outside the valid range {var.valid_min:g}.."
            f"{var.valid_max:g} {var.units} (found {lo:g}..{hi:g})"
        )
    return None


def to_dataarray(
    series: Mapping[str, pd.Series],
    sites: pd.DataFrame,
    regions: Mapping[str, BoxConfig] | None = None,
    *,
    source: str,
) -> xr.DataArray:
    """Daily series per site -> the ``insitu`` (site, time) array the cube takes.

    ``series`` maps site id to a daily series (index: days at 00:00, m3 m-3); ``sites`` is
    indexed by the same ids with ``lat``, ``lon``, ``network``. The time axis runs daily from
    the first to the last day of any series (NaN where a site has no value). Values outside
    the registry's valid range are an error: they mean a unit mistake (percent for m3 m-3).
    """
    if regions is None:
        regions = default_regions()
    ids = list(series)
    if not ids:
        raise ValueError(f"{source}: no site with data")
    missing = [s for s in ids if s not in sites.index]
    if missing:
        raise ValueError(f"{source}: no metadata for sites {missing[:5]}")
    starts = [series[s].index.min() for s in ids if len(series[s])]
    ends = [series[s].index.max() for s in ids if len(series[s])]
    if not starts:
        raise ValueError(f"{source}: no site has any day")
    time = pd.date_range(min(starts), max(ends), freq="D", unit="ns", name="time")
    values = np.full((len(ids), len(time)), np.nan, dtype=np.float64)
    for i, site in enumerate(ids):
        s = series[site]
        values[i] = s.reindex(time).to_numpy(dtype=np.float64)
    _check_range(values, ids, source)
    meta = sites.loc[ids]
    lat = meta["lat"].to_numpy(dtype=np.float64)
    lon = meta["lon"].to_numpy(dtype=np.float64)
    var = registry.get("insitu")
    return xr.DataArray(
        values,
        dims=("site", "time"),
        coords={
            "site": ("site", np.array(ids, dtype=object)),
            "time": time,
            "lat": ("site", lat),
            "lon": ("site", lon),
            "network": ("site", meta["network"].astype(str).to_numpy(dtype=object)),
            "region": ("site", region_of(lon, lat, regions).astype(object)),
        },
        name="insitu",
        attrs={"units": var.units, "long_name": var.long_name, "source": source},
    )


def _check_range(values: np.ndarray, ids: list[str], source: str) -> None:
    """ValueError naming the sites whose values fall outside the registry's valid range."""
    bad = registry.get("insitu").out_of_range(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        lo, hi = float(np.nanmin(values[rows])), float(np.nanmax(values[rows]))
        names = [ids[r] for r in rows[:5]]
        raise ValueError(
            f"{source}: {int(bad.sum())} daily values outside the valid range of 'insitu' "
            f"at sites {names} (found {lo:g}..{hi:g} m3 m-3)"
        )


@dataclass(frozen=True)
class RawFile:
    """A file to read: its path (a zip member as ``archive.zip/member``) and its bytes."""

    path: Path
    load: Callable[[], bytes]


def raw_files(root: Path) -> list[RawFile]:
    """Every file under a directory, or in a zip archive (read member by member, no extract).

    Raises ValueError when ``root`` is neither; ``zipfile.BadZipFile`` for a broken archive.
    """
    root = Path(root)
    if root.is_dir():
        return [RawFile(p, p.read_bytes) for p in sorted(root.rglob("*")) if p.is_file()]
    if not (root.is_file() and zipfile.is_zipfile(root)):
        raise ValueError(f"{root} is neither a directory nor a zip archive")
    with zipfile.ZipFile(root) as archive:
        members = sorted(m for m in archive.namelist() if not m.endswith("/"))

    def member_loader(member: str) -> Callable[[], bytes]:
        def load() -> bytes:
            with zipfile.ZipFile(root) as archive:
                return archive.read(member)

        return load

    return [RawFile(root / m, member_loader(m)) for m in members]
