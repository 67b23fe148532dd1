"""MSWEP daily precipitation (``precip_mswep``): 0.1 degree netCDF files from GloH2O.

MSWEP V2.8 is distributed by GloH2O (free for non-commercial use, on request) as one file per
day, ``YYYYDDD.nc`` (day of year), variable ``precipitation`` in mm/day, dims (time, lat, lon).
The distribution has two products in sibling folders, ``Past/Daily`` (gauge-corrected
history, months behind) and ``NRT/Daily`` (near real time, hours behind); ``Past_nogauge``
also exists. The files come from a local mirror (``directory``) or an rclone remote
(``remote``, e.g. the shared Google Drive), copied with ``rclone copyto`` as a subprocess.

With ``product="auto"`` (the default) Past is preferred where it exists and NRT fills the
recent days; the product found is the version recorded for the day (``MSWEP-2.8-NRT``).
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops import variables as registry
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regrid import latlon_to_ease
from gsm3_ops.secrets import redact
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

    # -- dates and versions --------------------------------------------------------------------

    def first_date(self) -> dt.date:
        """The first day of MSWEP (1979-01-01)."""
        return self.FIRST

    def latest_date(self, today: dt.date) -> dt.date:
        """The last day the configured product has as of ``today``."""
        if self.options.product in ("Past", "Past_nogauge"):
            return today - dt.timedelta(days=self.options.past_latency_days)
        return today - dt.timedelta(days=self.options.nrt_latency_days)

    def version(self, day: dt.date) -> str:
        """``MSWEP-<version>-<product>`` expected for ``day`` (Past while old enough)."""
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
        """``day``'s file under ``directory``: ``<product>/Daily/YYYYDDD.nc`` or flat.

        The folder it is found in says NRT or Past; a flat folder takes the configured
        product (with ``auto`` the product is unknown and the granule says so).
        """
        directory = Path(directory)
        name = file_name(day)
        for product in self._products(day, _utc_today()):
            path = directory / product / "Daily" / name
            if path.is_file():
                return Granule(self.name, day, (path,), self._label(product))
        flat = directory / name
        if flat.is_file():
            if self.options.product != "auto":
                return Granule(self.name, day, (flat,), self._label(self.options.product))
            note = "NRT or Past unknown: the file is not in a Past/ or NRT/ folder"
            return Granule(self.name, day, (flat,), f"MSWEP-{self.options.version}", (note,))
        raise DateNotServedError(
            f"mswep: no {name} for {day.isoformat()} in {directory} (looked in <product>/Daily/ "
            "and the folder itself)"
        )

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
        """The day's precipitation (mm day-1) on the native 0.1 degree grid, dims (time, lat, lon).

        Raises
        ------
        CorruptFileError, MissingVariableError, SourceError
            Unreadable file; no ``precipitation``; the day absent from the file, units other
            than mm/day, or no valid value at all.
        """
        path = granule.files[0]
        day = granule.day
        try:
            ds = xr.open_dataset(path, engine="netcdf4")
        except Exception as exc:  # netCDF4 raises OSError, RuntimeError, ValueError
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CorruptFileError(
                f"{path}: unreadable netCDF ({type(exc).__name__}: {first})"
            ) from None
        with ds:
            if VARIABLE not in ds.data_vars:
                held = ", ".join(sorted(map(str, ds.data_vars))) or "nothing"
                raise MissingVariableError(f"{path}: no variable {VARIABLE!r}; it holds {held}")
            da = ds[VARIABLE]
            units = str(da.attrs.get("units", "mm/d")).strip()
            if units not in UNITS:
                raise SourceError(f"{path}: {VARIABLE} in {units!r}, expected mm/day")
            da = _one_day(da, day, path)
            try:
                values = np.asarray(da.values, dtype=np.float32)
            except (OSError, RuntimeError, ValueError) as exc:
                raise CorruptFileError(f"{path}: cannot read {VARIABLE} ({exc})") from None
            lat = np.asarray(da["lat"].values, np.float64)
            lon = np.asarray(da["lon"].values, np.float64)
        if not np.isfinite(values).any():
            raise SourceError(
                f"{path}: {VARIABLE} on {day.isoformat()} has no valid value (all NaN)"
            )
        var = registry.get("precip_mswep")
        out = xr.DataArray(
            values[np.newaxis],
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


def _one_day(da: xr.DataArray, day: dt.date, path: Path) -> xr.DataArray:
    """``da`` on ``day`` as (lat, lon): the file's time step that falls in that UTC day."""
    da = da.rename(
        {k: v for k, v in {"latitude": "lat", "longitude": "lon"}.items() if k in da.dims}
    )
    if not {"lat", "lon"} <= set(da.dims):
        raise CorruptFileError(f"{path}: {VARIABLE} dims {da.dims}, expected (time, lat, lon)")
    if "time" in da.dims:
        times = np.asarray(da["time"].values).astype("datetime64[D]")
        hits = np.flatnonzero(times == np.datetime64(day.isoformat(), "D"))
        if hits.size != 1:
            found = ", ".join(str(t) for t in times[:3]) or "none"
            raise SourceError(
                f"{path}: {VARIABLE} has {hits.size} time steps on {day.isoformat()} "
                f"(file times: {found})"
            )
        da = da.isel(time=int(hits[0]))
    return da.transpose("lat", "lon")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
