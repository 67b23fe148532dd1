"""GPM IMERG daily precipitation (``precip_imerg``, mm day-1) from NASA GES DISC.

Three runs of the same algorithm: early (``GPM_3IMERGDE``, ~4 h after the day), late
(``GPM_3IMERGDL``, ~14 h) and final (``GPM_3IMERGDF``, gauge-adjusted, ~3.5 months). A day is
taken from the best run available (``runs``, default final, then late, then early) and the
run is recorded in ``Granule.version`` (``GPM_3IMERGDL.07``) so a later re-run can upgrade it.

The reader takes daily files (``precipitation`` in mm/day; V06 ``precipitationCal`` in mm)
and half-hourly ones (``/Grid/precipitation`` or ``/Grid/precipitationCal`` in mm/hr). IMERG
arrays are ordered (time, lon, lat); dims are matched by name, never by position. A
half-hourly day is the mean of the valid rates over the UTC day times 24 h (the daily
product's own rule), and needs the half hours to cover ``min_coverage`` of the day.

A local archive (``archive``, or ``ingest --from``) holds the files under GES DISC's names,
subsets included, in any sub-folder (``imerg_files.py``); with ``archive`` set, the dates
served are the days it holds complete.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regrid import latlon_to_ease
from gsm3_ops.sources.archive import ArchiveIndex
from gsm3_ops.sources.base import (
    CorruptFileError,
    DateNotServedError,
    Granule,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.earthdata import GLOBAL_BBOX, Bbox, Earthdata, pick_files, utc_today
from gsm3_ops.sources.imerg_files import EXAMPLE, Run, choose, complete_days, parse, span_of

NAME = "imerg"
VARIABLE = "precip_imerg"
DAILY_SHORT_NAMES: dict[str, str] = {
    "final": "GPM_3IMERGDF",
    "late": "GPM_3IMERGDL",
    "early": "GPM_3IMERGDE",
}
HALF_HOURLY_SHORT_NAMES: dict[str, str] = {
    "final": "GPM_3IMERGHH",
    "late": "GPM_3IMERGHHL",
    "early": "GPM_3IMERGHHE",
}
SUFFIXES = (".nc4", ".nc", ".hdf5", ".h5")
_HALF_HOUR_UNITS = ("mm/hr", "mm/h", "mm hr-1", "mm h-1")
_DAILY_UNITS = ("mm/day", "mm/d", "mm day-1", "mm")


class Options(BaseModel):
    """IMERG settings (``sources.options.imerg``)."""

    model_config = ConfigDict(extra="forbid")
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

    runs: tuple[Run, ...] = Field(("final", "late", "early"), min_length=1)
    version: str = "07"
    first_date: dt.date = dt.date(1998, 1, 1)
    # Days after a UTC day ends until each run has it (early ~4 h, late ~14 h, final ~3.5 months).
    latency_days: dict[Run, int] = Field(
        default_factory=lambda: {"final": 105, "late": 1, "early": 1}
    )
    bbox: Bbox | None = None  # search box (west, south, east, north); None: the globe
    variables: tuple[str, ...] = ("precipitation", "precipitationCal")
    min_coverage: float = Field(1.0, gt=0, le=1)  # half-hourly files: share of the day needed


class ImergSource:
    """GPM IMERG daily precipitation; the ``earthaccess`` client is injectable."""

    name = NAME
    provides = (VARIABLE,)
    Options = Options

    def __init__(self, options: Options | None = None, client: Any = None) -> None:
        self.options = options or Options()
        self.earthdata = Earthdata(client)
        self._indexes: dict[Path, ArchiveIndex] = {}

    def first_date(self) -> dt.date:
        """The first day of the IMERG V07 record, or of the configured archive."""
        if self.options.archive is not None:
            return self._archive_days()[0]
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day the fastest configured run has as of ``today`` (UTC), or the
        latest day the configured archive holds complete."""
        if self.options.archive is not None:
            return min(self._archive_days()[-1], today)
        return today - dt.timedelta(days=min(self._latency(r) for r in self.options.runs))

    def version(self, day: dt.date) -> str:
        """The run that fills ``day``: the archive's best run for it when an archive is
        configured and holds it, else the first in ``runs`` whose latency has passed."""
        if self.options.archive is not None:
            try:
                return self.local(day, self.options.archive).version
            except SourceError:
                pass  # not in the archive (yet): what a fetch would be expected to find
        age = (utc_today() - day).days
        run = next((r for r in self.options.runs if age >= self._latency(r)), self.options.runs[-1])
        return f"{DAILY_SHORT_NAMES[run]}.{self.options.version}"

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Download the day's file from the best run that has it."""
        self._check_day(day, utc_today())
        bbox = self.options.bbox or GLOBAL_BBOX
        for i, run in enumerate(self.options.runs):
            short = DAILY_SHORT_NAMES[run]
            found = self.earthdata.search(
                short, self.options.version, day, bbox, name_contains=f".{day:%Y%m%d}-S"
            )
            if not found:
                continue
            what = f"{short} {self.options.version} on {day.isoformat()}"
            files = pick_files(self.earthdata.download(found, workdir, what), SUFFIXES, what)
            return Granule(
                NAME,
                day,
                tuple(files),
                f"{short}.{self.options.version}",
                _run_notes(run, self.options.runs[:i]),
            )
        shorts = ", ".join(DAILY_SHORT_NAMES[r] for r in self.options.runs)
        raise DateNotServedError(
            f"no IMERG granule for {day.isoformat()}: searched {shorts} "
            f"version {self.options.version}"
        )

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The day's IMERG files anywhere under ``directory``, under GES DISC's names
        (``imerg_files.py``): the best run with a complete set (a daily file, else the day's
        half-hourly files), the configured version first."""
        found = [f for p in self._index(directory).files_for(day) if (f := parse(p))]
        o = self.options
        pick, incomplete = choose(found, day, o.runs, o.version, o.min_coverage)
        if pick is None:
            held = f"; incomplete: {', '.join(incomplete)} half hours" if incomplete else ""
            raise DateNotServedError(
                f"imerg: no complete set of IMERG files for {day.isoformat()} in the archive "
                f"{directory} (runs {', '.join(o.runs)}; names like {EXAMPLE}){held}"
            )
        shorts = DAILY_SHORT_NAMES if pick.kind == "DAY" else HALF_HOURLY_SHORT_NAMES
        notes = _run_notes(pick.run, pick.skipped)
        return Granule(NAME, day, pick.files, f"{shorts[pick.run]}.{pick.version}", notes)

    def read(self, granule: Granule) -> xr.Dataset:
        """The day's precipitation on the native 0.1 degree grid, (time=1, lat, lon), mm/day."""
        return read_daily_precip(granule.files, granule.day, self.options)

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """Area-weighted mean onto ``window`` (precipitation is a flux: totals are conserved)."""
        da = latlon_to_ease(native[VARIABLE], grid, window, "area").astype(np.float32)
        if not np.isfinite(da.values).any():
            day = np.datetime_as_string(native["time"].values[0], unit="D")
            raise SourceError(
                f"IMERG {VARIABLE} on {day}: no valid value over window {window} "
                "(the files do not cover it)"
            )
        da.attrs = {"units": "mm day-1", "long_name": "GPM IMERG precipitation"}
        return xr.Dataset({VARIABLE: da})

    def _index(self, directory: Path) -> ArchiveIndex:
        """The archive index of ``directory``, kept for the life of the source."""
        key = Path(directory)
        if key not in self._indexes:
            self._indexes[key] = ArchiveIndex(key, NAME, span_of)
        return self._indexes[key]

    def _archive_days(self) -> list[dt.date]:
        """The days the configured archive holds complete, sorted; an error when none."""
        archive = Path(self.options.archive)
        files = [f for p in self._index(archive).spans() if (f := parse(p))]
        days = complete_days(files, self.options.runs, self.options.min_coverage)
        if not days:
            raise DateNotServedError(
                f"imerg: the archive {archive} holds no complete day of IMERG files "
                f"(runs {', '.join(self.options.runs)}; names like {EXAMPLE})"
            )
        return days

    def _latency(self, run: Run) -> int:
        return self.options.latency_days.get(run, 1)

    def _check_day(self, day: dt.date, today: dt.date) -> None:
        first, last = self.first_date(), self.latest_date(today)
        if not first <= day <= last:
            raise DateNotServedError(
                f"IMERG serves {first.isoformat()}..{last.isoformat()} as of {today.isoformat()}, "
                f"not {day.isoformat()}"
            )


def _run_notes(run: str, skipped: tuple[str, ...]) -> tuple[str, ...]:
    notes = [f"run:{run}"]
    if skipped:
        notes.append(f"fallback:{run} ({', '.join(skipped)} not available)")
    return tuple(notes)


# --- reading -------------------------------------------------------------------------------


def read_daily_precip(files: tuple[Path, ...], day: dt.date, options: Options) -> xr.Dataset:
    """Daily precipitation (mm/day) for ``day`` from IMERG daily or half-hourly files."""
    if not files:
        raise SourceError(f"IMERG {day.isoformat()}: no files to read")
    steps = [_read_file(Path(f), options.variables) for f in files]
    lat, lon = steps[0].lat, steps[0].lon
    for s in steps[1:]:
        if (
            s.lat.shape != lat.shape
            or s.lon.shape != lon.shape
            or not (np.allclose(s.lat, lat) and np.allclose(s.lon, lon))
        ):
            raise SourceError(f"IMERG {day.isoformat()}: {s.path} is on a different grid")
    daily = [s for s in steps if not s.half_hourly]
    if daily:
        field = _daily_field(daily, day)
    else:
        field = _half_hourly_field(steps, day, options.min_coverage)
    if not np.isfinite(field).any():
        raise SourceError(f"IMERG {VARIABLE} on {day.isoformat()}: the field is all NaN")
    time = np.array([np.datetime64(day.isoformat(), "ns")])
    da = xr.DataArray(
        field[None].astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": time, "lat": lat, "lon": lon},
        attrs={"units": "mm day-1", "long_name": "GPM IMERG precipitation"},
    )
    return xr.Dataset({VARIABLE: da})


@dataclass(frozen=True)
class _Step:
    """One file's field: (n_time, lat, lon) values, interval bounds (s since 1970), units kind."""

    path: Path
    values: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    start: np.ndarray
    end: np.ndarray
    half_hourly: bool


def _read_file(path: Path, names: tuple[str, ...]) -> _Step:
    try:
        nc = netCDF4.Dataset(path)
    except (OSError, RuntimeError) as exc:
        raise CorruptFileError(f"{path}: not a readable netCDF4/HDF5 file ({exc})") from None
    try:
        with nc:
            return _read_open(nc, path, names)
    except SourceError:
        raise
    except (OSError, RuntimeError, IndexError) as exc:
        raise CorruptFileError(f"{path}: truncated or corrupt ({exc})") from None


def _read_open(nc: netCDF4.Dataset, path: Path, names: tuple[str, ...]) -> _Step:
    group = nc.groups.get("Grid", nc)
    name = next((n for n in names if n in group.variables), None)
    if name is None:
        raise MissingVariableError(
            f"{path}: no precipitation variable (looked for {', '.join(names)} "
            f"in {'/Grid' if group is not nc else '/'})"
        )
    var = group.variables[name]
    dims = list(var.dimensions)
    for need in ("lat", "lon"):
        if need not in dims:
            raise CorruptFileError(f"{path}: {name} has dims {dims}, no {need!r}")
    units = str(getattr(var, "units", getattr(var, "Units", ""))).strip().lower()
    if units in _HALF_HOUR_UNITS:
        half_hourly = True
    elif units in _DAILY_UNITS:
        half_hourly = False
    else:
        raise SourceError(f"{path}: {name} has units {units!r}, expected mm/hr or mm/day")
    var.set_auto_maskandscale(True)
    raw = np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan)
    if "time" not in dims:
        raw, dims = raw[None], ["time", *dims]
    values = np.transpose(raw, [dims.index(d) for d in ("time", "lat", "lon")])
    values = np.where(values < 0, np.nan, values)  # -9999.9 fills that escaped the mask
    lat = np.asarray(group.variables["lat"][:], dtype=np.float64)
    lon = np.asarray(group.variables["lon"][:], dtype=np.float64)
    start, end = _time_bounds(group, path, values.shape[0])
    return _Step(path, values, lat, lon, start, end, half_hourly)


def _time_bounds(group: Any, path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval starts and ends in seconds since 1970-01-01 UTC.

    The ``calendar = "julian"`` attribute IMERG carries is ignored: the times are plain
    seconds on the Gregorian calendar (V07 counts from 1980-01-06, V06 from 1970-01-01);
    other units since an epoch (``days since``) are scaled to seconds.
    """
    if "time" not in group.variables:
        raise CorruptFileError(f"{path}: no time variable")
    var = group.variables["time"]
    scale, epoch = _epoch(str(getattr(var, "units", "")), path)
    t = np.asarray(var[:], dtype=np.float64).ravel() * scale
    if "time_bnds" in group.variables:
        b = np.asarray(group.variables["time_bnds"][:], dtype=np.float64).reshape(-1, 2) * scale
        start, end = b[:, 0], b[:, 1]
    else:  # without bounds, a half-hourly time is the start of its half hour
        start, end = t, t + 1800.0
    if start.size != n:
        raise CorruptFileError(f"{path}: {start.size} time bounds for {n} time steps")
    return start + epoch, end + epoch


_SECONDS_PER = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}


def _epoch(units: str, path: Path) -> tuple[float, float]:
    """(seconds per unit, epoch in seconds since 1970) of ``<unit> since <date> [time]``."""
    m = re.match(
        r"\s*(seconds|minutes|hours|days) since (\d{4}-\d{2}-\d{2})[ T]?(\d{2}:\d{2}:\d{2})?",
        units,
    )
    if not m:
        raise CorruptFileError(f"{path}: time units {units!r}, expected '<unit> since <date>'")
    stamp = dt.datetime.fromisoformat(f"{m[2]}T{m[3] or '00:00:00'}").replace(tzinfo=dt.UTC)
    return _SECONDS_PER[m[1]], stamp.timestamp()


def _day_seconds(day: dt.date) -> tuple[float, float]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    return start, start + 86400.0


def _daily_field(steps: list[_Step], day: dt.date) -> np.ndarray:
    d0, d1 = _day_seconds(day)
    for s in steps:
        for k in range(s.values.shape[0]):
            mid = (s.start[k] + s.end[k]) / 2
            if d0 <= mid < d1:
                return s.values[k]
    raise SourceError(f"IMERG daily files {[str(s.path) for s in steps]} do not hold {day}")


def _half_hourly_field(steps: list[_Step], day: dt.date, min_coverage: float) -> np.ndarray:
    d0, d1 = _day_seconds(day)
    seen: dict[float, Path] = {}
    total = count = None
    hours = 0.0
    for s in steps:
        for k in range(s.values.shape[0]):
            if not (d0 <= s.start[k] < d1):
                continue  # a half hour of another UTC day
            if s.start[k] in seen:
                raise SourceError(
                    f"IMERG {day.isoformat()}: {s.path} and {seen[s.start[k]]} hold the same "
                    "half hour"
                )
            seen[s.start[k]] = s.path
            hours += (min(s.end[k], d1) - s.start[k]) / 3600.0
            v = s.values[k]
            ok = np.isfinite(v)
            total = np.where(ok, v, 0.0) if total is None else total + np.where(ok, v, 0.0)
            count = ok.astype(np.int32) if count is None else count + ok
    hours = round(hours, 3)
    if total is None or hours < min_coverage * 24.0:
        raise SourceError(
            f"IMERG half-hourly files for {day.isoformat()} cover {hours:g} of 24 hours "
            f"({len(seen)} half hours); at least {min_coverage * 24:g} h are needed"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count * 24.0, np.nan)
