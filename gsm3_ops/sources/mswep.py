"""MSWEP daily precipitation (``precip_mswep``): 0.1 degree netCDF files from GloH2O.

MSWEP V2.8 is distributed by GloH2O (free for non-commercial use, on request) as one file per
day, ``YYYYDDD.nc`` (day of year), variable ``precipitation`` in mm/day, dims (time, lat, lon);
3-hourly files ``YYYYDDD.HH.nc`` (mm/3h) are read too, eight of them summed to the day.
The distribution has two products in sibling folders, ``Past/Daily`` (gauge-corrected
history, months behind) and ``NRT/Daily`` (near real time, hours behind); ``Past_nogauge``
also exists. The files come from a local mirror (``directory``) or an rclone remote
(``remote``, e.g. the shared Google Drive), copied with ``rclone copyto`` as a subprocess.

With ``product="auto"`` (the default) Past is preferred where it exists and NRT fills the
recent days; the product found is the version recorded for the day (``MSWEP-2.8-NRT``).
A local archive (``archive``, or ``ingest --from``) is searched in every sub-folder
(``mswep_files.py``); with ``archive`` set, the dates served are the days it holds complete.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import netCDF4
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops import variables as registry
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regrid import latlon_to_ease
from gsm3_ops.secrets import redact
from gsm3_ops.sources import mswep_files
from gsm3_ops.sources.archive import ArchiveIndex
from gsm3_ops.sources.base import (
    CorruptFileError,
    DateNotServedError,
    Granule,
    MissingVariableError,
    SourceError,
    check_served,
)

log = logging.getLogger(__name__)

Product = Literal["Past", "Past_nogauge", "NRT"]
VARIABLE = "precipitation"
UNITS = frozenset({"mm/d", "mm/day", "mm d-1", "mm day-1", "mm d**-1", "mm"})
UNITS_3H = frozenset({"mm/3h", "mm/3hr", "mm 3h-1", "mm (3h)-1", "mm"})
# rclone exit codes for a source that does not exist: 3 directory, 4 file not found.
RCLONE_NOT_FOUND = frozenset({3, 4})

Runner = Callable[[Sequence[str]], Any]  # -> an object with returncode and stderr


class MswepOptions(BaseModel):
    """Settings of the ``mswep`` source (``sources.options.mswep``)."""

    model_config = ConfigDict(extra="forbid")
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

    directory: Path | None = Field(None, description="local mirror: <dir>/<product>/Daily/")
    remote: str | None = Field(None, description="rclone remote root, e.g. 'gloh2o:MSWEP_V280'")
    product: Literal["auto", "Past", "Past_nogauge", "NRT"] = "auto"
    version: str = "2.8"
    rclone: str = "rclone"
    rclone_args: tuple[str, ...] = ()
    timeout_s: int = Field(900, gt=0, description="limit for one rclone copy")
    nrt_latency_days: int = Field(1, ge=0, description="NRT: days behind today of the last day")
    past_latency_days: int = Field(
        120, ge=0, description="Past: days behind today of the last day (updated every few months)"
    )


def file_name(day: dt.date) -> str:
    """The MSWEP daily file name of ``day``: ``YYYYDDD.nc``."""
    return f"{day.year}{day.timetuple().tm_yday:03d}.nc"


class MswepSource:
    """MSWEP daily precipitation from a local mirror or an rclone remote.

    Parameters
    ----------
    options
        :class:`MswepOptions`.
    client
        Runs a command (a list of strings) and returns an object with ``returncode`` and
        ``stderr``; default :func:`subprocess.run`. Tests pass a fake to check the command.
    """

    Options: ClassVar[type[MswepOptions]] = MswepOptions
    name = "mswep"
    provides = ("precip_mswep",)
    FIRST = dt.date(1979, 1, 1)

    def __init__(self, options: MswepOptions | None = None, client: Runner | None = None) -> None:
        self.options = options or MswepOptions()
        self._run = client or self._subprocess
        self._indexes: dict[Path, ArchiveIndex] = {}

    # -- dates and versions --------------------------------------------------------------------

    def first_date(self) -> dt.date:
        """The first day of MSWEP (1979-01-01), or of the configured archive."""
        if self.options.archive is not None:
            return self._archive_days()[0]
        return self.FIRST

    def latest_date(self, today: dt.date) -> dt.date:
        """The last day the configured product has as of ``today``, or the last day the
        configured archive holds complete."""
        if self.options.archive is not None:
            return min(self._archive_days()[-1], today)
        if self.options.product in ("Past", "Past_nogauge"):
            return today - dt.timedelta(days=self.options.past_latency_days)
        return today - dt.timedelta(days=self.options.nrt_latency_days)

    def version(self, day: dt.date) -> str:
        """``MSWEP-<version>-<product>`` for ``day``: what the configured archive holds, else
        what is expected (Past while old enough)."""
        if self.options.archive is not None:
            try:
                return self.local(day, self.options.archive).version
            except SourceError:
                pass  # not in the archive (yet): what a fetch would be expected to find
        return self._label(self._products(day, _utc_today())[0])

    def _products(self, day: dt.date, today: dt.date) -> list[Product]:
        """The products to try for ``day``, best first."""
        if self.options.product != "auto":
            return [self.options.product]
        if day <= today - dt.timedelta(days=self.options.past_latency_days):
            return ["Past", "NRT"]
        return ["NRT", "Past"]  # Past is rarely there yet; still take it if it is

    def _label(self, product: str) -> str:
        return f"MSWEP-{self.options.version}-{product}"

    # -- files ---------------------------------------------------------------------------------

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Copy ``day``'s file from the rclone remote into ``workdir`` (or find it locally).

        Raises
        ------
        DateNotServedError
            ``day`` is outside the served dates, or no product has its file yet.
        SourceError
            rclone failed for another reason (its message, free of credentials, is kept).
        """
        check_served(self, day, _utc_today())
        if self.options.remote is None:
            if self.options.directory is None:
                raise SourceError(
                    "mswep: set sources.options.mswep.remote (an rclone remote) or .directory"
                )
            return self.local(day, self.options.directory)
        tried = []
        for product in self._products(day, _utc_today()):
            source = f"{self.options.remote.rstrip('/')}/{product}/Daily/{file_name(day)}"
            target = Path(workdir) / product / "Daily" / file_name(day)
            target.parent.mkdir(parents=True, exist_ok=True)
            cmd = [self.options.rclone, "copyto", *self.options.rclone_args, source, str(target)]
            if self._copy(cmd, target, day):
                return Granule(self.name, day, (target,), self._label(product))
            tried.append(source)
        raise DateNotServedError(f"mswep: no file for {day.isoformat()} at {', '.join(tried)}")

    def local(self, day: dt.date, directory: Path) -> Granule:
        """``day``'s file(s) anywhere under ``directory``, in GloH2O's names (``mswep_files``):
        ``YYYYDDD.nc``, else the day's eight ``YYYYDDD.HH.nc``.

        The folder a file is in says Past or NRT (``Past/Daily/``); the configured product
        order decides between them. A file in no such folder takes the configured product
        (with ``auto`` the product is unknown and the granule says so).
        """
        directory = Path(directory)
        found = self._index(directory).files_for(day)
        files = [f for p in found if (f := mswep_files.parse(p, directory))]
        pick = mswep_files.choose(files, day, [*self._products(day, _utc_today()), None])
        if pick is None:
            raise DateNotServedError(
                f"mswep: no {file_name(day)} for {day.isoformat()} in the archive {directory} "
                "(nor the day's eight 3-hourly YYYYDDD.HH.nc; any sub-folder was searched)"
            )
        product, paths = pick
        if product is not None:
            return Granule(self.name, day, paths, self._label(product))
        if self.options.product != "auto":
            return Granule(self.name, day, paths, self._label(self.options.product))
        note = "NRT or Past unknown: the file is not in a Past/ or NRT/ folder"
        return Granule(self.name, day, paths, f"MSWEP-{self.options.version}", (note,))

    def _index(self, directory: Path) -> ArchiveIndex:
        """The archive index of ``directory``, kept for the life of the source."""
        key = Path(directory)
        if key not in self._indexes:
            self._indexes[key] = ArchiveIndex(key, self.name, mswep_files.span_of)
        return self._indexes[key]

    def _archive_days(self) -> list[dt.date]:
        """The days the configured archive holds complete, sorted; an error when none."""
        root = Path(self.options.archive)
        files = [f for p in self._index(root).spans() if (f := mswep_files.parse(p, root))]
        auto = self.options.product == "auto"
        wanted = ["Past", "NRT"] if auto else [self.options.product]  # as ``_products``
        days = mswep_files.complete_days(files, [*wanted, None])
        if not days:
            raise DateNotServedError(
                f"mswep: the archive {root} holds no complete day of MSWEP files "
                "(YYYYDDD.nc, or eight YYYYDDD.HH.nc)"
            )
        return days

    def _copy(self, cmd: list[str], target: Path, day: dt.date) -> bool:
        """Run one rclone copy; False when the remote has no such file."""
        log.info("mswep %s: %s", day.isoformat(), redact(" ".join(cmd)))
        try:
            result = self._run(cmd)
        except FileNotFoundError:
            raise SourceError(
                f"mswep: the rclone program {self.options.rclone!r} was not found; install "
                "rclone or set sources.options.mswep.rclone"
            ) from None
        except subprocess.TimeoutExpired:
            target.unlink(missing_ok=True)
            raise SourceError(
                f"mswep: rclone took longer than {self.options.timeout_s} s for {target.name}"
            ) from None
        code = int(result.returncode)
        if code in RCLONE_NOT_FOUND:
            return False
        if code != 0:
            target.unlink(missing_ok=True)
            err = redact(_text(getattr(result, "stderr", "")).strip()[-500:])
            raise SourceError(f"mswep: rclone copyto failed (exit {code}): {err}")
        if not target.is_file():
            raise SourceError(f"mswep: rclone reported success but {target} is missing")
        return True

    def _subprocess(self, cmd: Sequence[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=self.options.timeout_s, check=False
        )

    # -- reading -------------------------------------------------------------------------------

    def read(self, granule: Granule) -> xr.Dataset:
        """The day's precipitation (mm day-1) on the native 0.1 degree grid, dims (time, lat, lon)
        with latitudes ascending: the daily file's field, or the sum of the day's eight 3-hourly
        files.

        Raises
        ------
        CorruptFileError, MissingVariableError, SourceError
            Unreadable file; no ``precipitation``; the day absent from the file, units other
            than mm/day (mm/3h for 3-hourly files), files on different grids, or no valid
            value at all.
        """
        day = granule.day
        paths = [Path(p) for p in granule.files]
        if len(paths) > 1 or mswep_files.is_three_hourly(paths[0]):
            if len(paths) != len(mswep_files.THREE_HOURS) or not all(
                mswep_files.is_three_hourly(p) for p in paths
            ):
                names = ", ".join(p.name for p in paths)
                raise SourceError(
                    f"mswep {day.isoformat()}: expected one daily file or the eight 3-hourly "
                    f"files of the day, got {names}"
                )
            parts = [_read_field(p, day, UNITS_3H, "mm/3h") for p in paths]
            values, lat, lon = parts[0]
            for p, (v, la, lo) in zip(paths[1:], parts[1:], strict=True):
                if v.shape != values.shape or not (np.allclose(la, lat) and np.allclose(lo, lon)):
                    raise SourceError(f"{p}: on another grid than {paths[0]}")
                values = values + v
            where = f"{paths[0].parent}/{paths[0].name[:7]}.HH.nc"
        else:
            values, lat, lon = _read_field(paths[0], day, UNITS, "mm/day")
            where = str(paths[0])
        if not np.isfinite(values).any():
            raise SourceError(
                f"{where}: {VARIABLE} on {day.isoformat()} has no valid value (all NaN)"
            )
        if lat.size > 1 and lat[0] > lat[-1]:  # GloH2O's north-to-south rows, made ascending
            values, lat = values[::-1], lat[::-1]
        var = registry.get("precip_mswep")
        out = xr.DataArray(
            values[np.newaxis].astype(np.float32),
            dims=("time", "lat", "lon"),
            coords={
                "time": [np.datetime64(day.isoformat(), "ns")],
                "lat": lat,
                "lon": lon,
            },
            attrs={"units": var.units, "long_name": var.long_name},
        )
        return xr.Dataset({"precip_mswep": out})

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """Area-weighted mean onto ``window`` (precipitation is a flux): (time, y, x) float32."""
        da = latlon_to_ease(native["precip_mswep"], grid, window, "area").astype(np.float32)
        da.attrs = {"units": registry.get("precip_mswep").units}
        return xr.Dataset({"precip_mswep": da.transpose("time", "y", "x")})


def _read_field(
    path: Path, day: dt.date, units_ok: frozenset[str], expected: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values (lat, lon), lat, lon) of ``day`` in one MSWEP file, its units checked.

    netCDF4 directly rather than xarray: a day's file opens in half the time, which a
    backfill of years pays once a day.
    """
    try:
        nc = netCDF4.Dataset(path)
    except Exception as exc:  # netCDF4 raises OSError, RuntimeError, ValueError
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CorruptFileError(
            f"{path}: unreadable netCDF ({type(exc).__name__}: {first})"
        ) from None
    try:
        with nc:
            return _field_of(nc, path, day, units_ok, expected)
    except SourceError:
        raise
    except (OSError, RuntimeError, ValueError, IndexError) as exc:
        raise CorruptFileError(f"{path}: cannot read {VARIABLE} ({exc})") from None


def _field_of(
    nc: netCDF4.Dataset, path: Path, day: dt.date, units_ok: frozenset[str], expected: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if VARIABLE not in nc.variables:
        data = sorted(n for n in nc.variables if n not in nc.dimensions)
        raise MissingVariableError(
            f"{path}: no variable {VARIABLE!r}; it holds {', '.join(data) or 'nothing'}"
        )
    var = nc.variables[VARIABLE]
    units = str(getattr(var, "units", "mm/d")).strip()
    if units not in units_ok:
        raise SourceError(f"{path}: {VARIABLE} in {units!r}, expected {expected}")
    dims = [_DIM_NAMES.get(d, d) for d in var.dimensions]
    if not {"lat", "lon"} <= set(dims) or not set(dims) <= {"time", "lat", "lon"}:
        raise CorruptFileError(f"{path}: {VARIABLE} dims {tuple(dims)}, expected (time, lat, lon)")
    index: list[int | slice] = [slice(None)] * len(dims)
    if "time" in dims:
        index[dims.index("time")] = _time_step(nc, path, day)
    raw = np.ma.filled(np.ma.asarray(var[tuple(index)], dtype=np.float32), np.nan)
    kept = [d for d in dims if d != "time"]
    values = np.transpose(raw, [kept.index("lat"), kept.index("lon")])
    names = {_DIM_NAMES.get(d, d): d for d in var.dimensions}
    lat = np.asarray(nc.variables[names["lat"]][:], np.float64)
    lon = np.asarray(nc.variables[names["lon"]][:], np.float64)
    return values, lat, lon


_DIM_NAMES = {"latitude": "lat", "longitude": "lon"}


def _time_step(nc: netCDF4.Dataset, path: Path, day: dt.date) -> int:
    """The index of the file's one time step that falls in ``day`` (UTC)."""
    tvar = nc.variables.get("time")
    if tvar is None:
        raise CorruptFileError(f"{path}: {VARIABLE} has a time dimension but no time variable")
    calendar = str(getattr(tvar, "calendar", "standard"))
    stamps = netCDF4.num2date(
        np.ma.filled(np.ma.asarray(tvar[:], dtype=np.float64), np.nan).ravel(),
        str(getattr(tvar, "units", "")),
        calendar,
        only_use_cftime_datetimes=False,
    )
    days = [dt.date(t.year, t.month, t.day) for t in stamps]
    hits = [i for i, d in enumerate(days) if d == day]
    if len(hits) != 1:
        found = ", ".join(str(t) for t in stamps[:3]) or "none"
        raise SourceError(
            f"{path}: {VARIABLE} has {len(hits)} time steps on {day.isoformat()} "
            f"(file times: {found})"
        )
    return hits[0]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
