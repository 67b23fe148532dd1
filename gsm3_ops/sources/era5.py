"""ERA5 and ERA5-Land from the Copernicus Climate Data Store, via ``cdsapi``.

Two sources, one small request per day per dataset:

- ``era5`` (``precip_era5``): hourly total precipitation from ``reanalysis-era5-single-levels``
  (GRIB). The value valid at T accumulates over the hour ending at T, so day D is the sum of
  the 24 values valid 01:00 .. 24:00; the request spans D and D+1 and the reader picks those.
- ``era5_land``: daily means of the instantaneous variables from
  ``derived-era5-land-daily-statistics`` (computed by the CDS over the UTC day from hourly
  values; the dataset returns netCDF), and radiation from hourly ``reanalysis-era5-land``
  (GRIB): ERA5-Land accumulates from 00 UTC, so the field valid at 00 UTC of D+1 is the total
  of day D (J m-2, divided by 86400 s for the daily mean flux in W m-2).

The version recorded for a day comes from the files' ``expver``: ``0005`` is the preliminary
ERA5T (about 5 days behind real time), ``0001`` the final ERA5 (2-3 months behind).
Credentials are ``cdsapi``'s business (``CDSAPI_URL``/``CDSAPI_KEY`` or ``~/.cdsapirc``); no
message leaving this module carries them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyproj import Transformer

from gsm3_ops import variables as registry
from gsm3_ops.errors import SourceError
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regrid import latlon_to_ease
from gsm3_ops.secrets import MASK, redact
from gsm3_ops.sources import grib
from gsm3_ops.sources.base import CredentialsError, DateNotServedError, Granule, check_served
from gsm3_ops.sources.era5_daily import day_value
from gsm3_ops.sources.era5_files import (
    FROM_00,
    HOURLY_SUM,
    INSTANT,
    CdsFiles,
    Need,
    Part,
    choose,
    expvers_at,
    zone_label,
)

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0
FLUXES = frozenset({"precip_era5", "ssrd", "strd"})  # area-mean regridding; the rest bilinear
HOURS = tuple(f"{h:02d}:00" for h in range(24))
# How the CDS says a day is not there yet ("None of the data you have requested is available yet")
_NOT_YET = re.compile(r"available yet|not (yet )?available|no data", re.IGNORECASE)


class Era5Options(BaseModel):
    """Settings of the ``era5`` and ``era5_land`` sources (``sources.options.<name>``)."""

    model_config = ConfigDict(extra="forbid")
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

    area: tuple[float, float, float, float] | None = Field(
        None, description="bounding box [north, west, south, east] in degrees; None = global"
    )
    latency_days: int = Field(5, ge=0, description="days behind today of the latest ERA5T day")
    final_lag_days: int = Field(
        90, ge=0, description="days after which ERA5T is expected to be replaced by final ERA5"
    )
    timeout_s: float = Field(60, gt=0, description="limit of one HTTP request to the CDS")

    @field_validator("area")
    @classmethod
    def _check_area(cls, v: tuple[float, float, float, float] | None):
        if v is not None:
            north, west, south, east = v
            if not (-90 <= south < north <= 90 and -180 <= west < east <= 360):
                raise ValueError(f"area must be [north, west, south, east], got {list(v)}")
        return v


@dataclass(frozen=True)
class CdsRequest:
    """One CDS retrieval: dataset name, request body and the file name it is saved as."""

    dataset: str
    request: dict[str, Any]
    filename: str


def window_area(grid: EaseGrid, window: Window, margin: float = 0.5) -> list[float]:
    """[north, west, south, east] covering the cells of ``window`` plus ``margin`` degrees.

    For ``Era5Options.area``: a regional deployment then downloads only its own box.
    """
    last_row, last_col = window.row0 + window.n_rows - 1, window.col0 + window.n_cols - 1
    west, _, _, top = grid.cell_bounds(np.array(window.row0), np.array(window.col0))
    _, bottom, east, _ = grid.cell_bounds(np.array(last_row), np.array(last_col))
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    (lon_w, lon_e), (lat_s, lat_n) = to_lonlat.transform([west, east], [bottom, top])
    return [
        round(min(90.0, lat_n + margin), 3),
        round(max(-180.0, lon_w - margin), 3),
        round(max(-90.0, lat_s - margin), 3),
        round(min(180.0, lon_e + margin), 3),
    ]


class _CdsSource(ABC):
    """What ERA5 and ERA5-Land share: dates, versions, the client, files, gridding."""

    Options: ClassVar[type[Era5Options]] = Era5Options
    name: str
    provides: tuple[str, ...]
    FIRST: ClassVar[dt.date]
    LABELS: ClassVar[tuple[str, str]]  # (final, preliminary) version labels
    # registry name -> (the variable in the files and how its day is made, factor to units)
    READS: ClassVar[dict[str, tuple[Need, float]]]
    FINE_GRID: ClassVar[bool]  # ERA5-Land's 0.1 degree grid (else ERA5's 0.25)
    PREFIX: ClassVar[str]  # how fetch names the files

    def __init__(self, options: Era5Options | None = None, client: Any = None) -> None:
        self.options = options or Era5Options()
        self._client = client
        needs = [need for need, _ in self.READS.values()]
        self._files = CdsFiles(self.name, needs, self.FINE_GRID, self.PREFIX)

    # -- dates and versions --------------------------------------------------------------------

    def first_date(self) -> dt.date:
        """The earliest date the CDS serves, or the first complete day of the archive."""
        if self.options.archive is not None:
            return self._files.served(self.options.archive)[0]
        return self.FIRST

    def latest_date(self, today: dt.date) -> dt.date:
        """``today`` minus the configured latency (ERA5T: about 5 days), or the last day of
        the archive (``options.archive``) that has every step of every variable."""
        if self.options.archive is not None:
            return self._files.served(self.options.archive)[1]
        return today - dt.timedelta(days=self.options.latency_days)

    def version(self, day: dt.date) -> str:
        """The version expected for ``day`` before any file is seen (ERA5T while recent)."""
        recent = day > _utc_today() - dt.timedelta(days=self.options.final_lag_days)
        return self.LABELS[1] if recent else self.LABELS[0]

    @abstractmethod
    def requests(self, day: dt.date) -> list[CdsRequest]:
        """The CDS retrievals that fill ``day``."""

    @abstractmethod
    def read(self, granule: Granule) -> xr.Dataset:
        """The granule's files -> the day on the native grid, registry names and units."""

    def _day_values(
        self, granule: Granule
    ) -> tuple[list[Part], dict[str, xr.DataArray], dict[str, str]]:
        """The granule's parts, each variable's day in registry units, and its file(s)."""
        parts = [p for f in granule.files for p in self._files.parts(f)]
        out, paths = {}, {}
        for name, (need, factor) in self.READS.items():
            value, label = day_value(self._files, parts, need, granule.day)
            out[name], paths[name] = value * factor, label
        return parts, out, paths

    # -- files ---------------------------------------------------------------------------------

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Retrieve ``day`` into ``workdir`` (one file per request).

        Raises
        ------
        DateNotServedError
            ``day`` is before the first date or after :meth:`latest_date` of today, or the
            CDS says the data are not available yet.
        SourceError
            The retrieval failed (the message is free of credentials).
        """
        check_served(self, day, _utc_today())
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        files = []
        for req in self.requests(day):
            target = workdir / req.filename
            self._retrieve(req, target)
            files.append(target)
        return self._granule(day, files)

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The files of ``day`` in a local archive ``directory``: CDS files in any sub-folder,
        under any name, each spanning any days (GRIB, netCDF, or the CDS's zips of them).

        Raises
        ------
        DateNotServedError
            The archive lacks a step of the day of some variable (the folder is named).
        CorruptFileError
            A file named as fetch names the day's files is unreadable.
        """
        return self._granule(day, self._files.day_files(day, Path(directory)))

    def _granule(self, day: dt.date, files: list[Path]) -> Granule:
        """The granule of ``files``: the version from the expvers of the day's own steps,
        and the time zone of any daily statistics among them."""
        parts = [p for f in files for p in self._files.parts(f)]
        expvers: set[str] = set()
        notes: list[str] = []
        for need, _ in self.READS.values():
            use = choose(parts, need, day)
            if use:
                expvers |= expvers_at(use, need, day)
            else:  # incomplete: read() will say so; the version from what there is
                expvers |= {str(e) for p in parts for e in p.inv.expvers.get(need.name, ())} - {""}
            for p in use:
                zone = p.zone(need) if p.daily else None
                if zone is not None and f"time_zone:{zone_label(zone)}" not in notes:
                    notes.append(f"time_zone:{zone_label(zone)}")
        if not expvers:
            note = "version inferred from the date: the files carry no expver"
            return Granule(self.name, day, tuple(files), self.version(day), (note, *notes))
        version = self.LABELS[1] if grib.PRELIMINARY in expvers else self.LABELS[0]
        unknown = expvers - {grib.FINAL, grib.PRELIMINARY}
        if unknown:
            notes.append(f"unexpected expver {', '.join(sorted(unknown))}")
        return Granule(self.name, day, tuple(files), version, tuple(notes))

    # -- the CDS client ------------------------------------------------------------------------

    def _retrieve(self, req: CdsRequest, target: Path) -> None:
        client = self._cds()
        partial = target.with_name(target.name + ".part")
        log.info("%s: retrieving %s into %s", self.name, req.dataset, target)
        try:
            client.retrieve(req.dataset, req.request, str(partial))
        except Exception as exc:  # cdsapi raises plain Exception and requests' errors
            partial.unlink(missing_ok=True)
            message = self._scrub(f"{req.dataset}: {type(exc).__name__}: {exc}")
            log.error("%s: %s", self.name, message)
            if _NOT_YET.search(message):
                raise DateNotServedError(f"{self.name}: {message}") from None
            raise SourceError(f"{self.name}: CDS retrieval failed: {message}") from None
        if not partial.is_file() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
            raise SourceError(f"{self.name}: {req.dataset} returned no data for {target.name}")
        if grib.is_zip(partial):
            try:
                grib.unwrap_zip(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        else:
            os.replace(partial, target)

    def _cds(self) -> Any:
        if self._client is None:
            import cdsapi

            try:
                # One try per fetch: the attempts and their backoff are gsm3-ops' own
                # (sources.fetch_attempts, fetch_backoff_s), not cdsapi's 500 x 120 s.
                timeout = self.options.timeout_s
                self._client = cdsapi.Client(
                    quiet=True, progress=False, retry_max=1, sleep_max=1, timeout=timeout
                )
            except Exception as exc:  # cdsapi raises a bare Exception for missing credentials
                raise CredentialsError(
                    f"{self.name}: no CDS credentials ({self._scrub(str(exc))}); set CDSAPI_URL "
                    "and CDSAPI_KEY or write ~/.cdsapirc, and accept each dataset's licence"
                ) from None
        return self._client

    def _scrub(self, text: str) -> str:
        """``text`` without secrets: environment secrets and the client's own key."""
        text = redact(text)
        key = getattr(self._client, "key", None)
        if isinstance(key, str) and len(key) >= 4:
            text = text.replace(key, MASK)
        return text

    # -- to the grid ---------------------------------------------------------------------------

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """Native day -> (time, y, x) on ``window``: area mean for fluxes, bilinear otherwise.

        The variables of one method are regridded together (one set of weights a day).
        """
        names = [str(n) for n in native.data_vars]
        dims = ("time", "latitude", "longitude")
        out = {}
        for method in ("area", "bilinear"):
            group = [n for n in names if (n in FLUXES) == (method == "area")]
            if not group:
                continue
            values = np.stack([native[n].transpose(*dims).values for n in group])
            coords = {"variable": group, **{d: native[d].values for d in dims}}
            if coords["latitude"].size > 1 and coords["latitude"][0] > coords["latitude"][-1]:
                # ECMWF's north-to-south rows, flipped here once rather than sorted per call
                values, coords["latitude"] = values[..., ::-1, :], coords["latitude"][::-1]
            stack = xr.DataArray(values, coords, ("variable", *dims), "+".join(group))
            gridded = latlon_to_ease(stack, grid, window, method)
            arr = np.asarray(gridded.values, dtype=np.float32)
            coords = {d: gridded[d].values for d in ("time", "y", "x")}
            for i, name in enumerate(group):
                attrs = {"units": registry.get(name).units}
                out[name] = xr.DataArray(arr[i], coords, ("time", "y", "x"), name, attrs)
        return xr.Dataset({n: out[n] for n in names})


class Era5Source(_CdsSource):
    """ERA5 total precipitation (``precip_era5``, mm day-1): the UTC-day sum of hourly values."""

    name = "era5"
    provides = ("precip_era5",)
    FIRST = dt.date(1940, 1, 1)
    LABELS = ("ERA5", "ERA5T")
    DATASET = "reanalysis-era5-single-levels"
    READS: ClassVar = {"precip_era5": (Need("tp", HOURLY_SUM), 1000.0)}  # m -> mm
    FINE_GRID = False
    PREFIX = "era5_tp_"

    def requests(self, day: dt.date) -> list[CdsRequest]:
        """One GRIB request for days D and D+1 (every hour): day D ends at 00 UTC of D+1."""
        days = (day, day + dt.timedelta(days=1))
        request: dict[str, Any] = {
            "product_type": ["reanalysis"],
            "variable": ["total_precipitation"],
            **_dates(days),
            "time": list(HOURS),
            "data_format": "grib",
            "download_format": "unarchived",
        }
        if self.options.area is not None:
            request["area"] = list(self.options.area)
        return [CdsRequest(self.DATASET, request, f"era5_tp_{day:%Y%m%d}.grib")]

    def read(self, granule: Granule) -> xr.Dataset:
        """The day's precipitation total in mm day-1 on the native 0.25 degree grid: the 24
        hourly accumulations valid 01..24 UTC (from one file or two), or a CDS daily-mean or
        daily-sum step of a UTC day."""
        _, out, paths = self._day_values(granule)
        total = out["precip_era5"]
        # GRIB packing leaves tiny negative totals where no rain fell.
        out["precip_era5"] = total.where(~(total < 0), 0.0)
        return _native(out, granule.day, paths)


# ERA5-Land: registry name -> (CDS variable, netCDF name, factor to registry units)
LAND_DAILY: dict[str, tuple[str, str, float]] = {
    "t2m": ("2m_temperature", "t2m", 1.0),
    "d2m": ("2m_dewpoint_temperature", "d2m", 1.0),
    "sp": ("surface_pressure", "sp", 1.0),
    "u10": ("10m_u_component_of_wind", "u10", 1.0),
    "v10": ("10m_v_component_of_wind", "v10", 1.0),
    "stl1": ("soil_temperature_level_1", "stl1", 1.0),
    "lai_hv": ("leaf_area_index_high_vegetation", "lai_hv", 1.0),
    "lai_lv": ("leaf_area_index_low_vegetation", "lai_lv", 1.0),
    "swe": ("snow_depth_water_equivalent", "sd", 1000.0),  # m of water -> kg m-2
}
LAND_RADIATION: dict[str, tuple[str, str, float]] = {
    "ssrd": ("surface_solar_radiation_downwards", "ssrd", 1.0 / SECONDS_PER_DAY),  # J m-2 -> W m-2
    "strd": ("surface_thermal_radiation_downwards", "strd", 1.0 / SECONDS_PER_DAY),
}


class Era5LandSource(_CdsSource):
    """ERA5-Land daily means of 9 state variables and 2 radiation fluxes."""

    name = "era5_land"
    provides = ("t2m", "d2m", "sp", "ssrd", "strd", "u10", "v10", "stl1", "lai_hv", "lai_lv", "swe")
    FIRST = dt.date(1950, 1, 1)
    LABELS = ("ERA5-Land", "ERA5-Land-ERA5T")  # "ERA5T" marks it provisional
    DAILY_DATASET = "derived-era5-land-daily-statistics"
    HOURLY_DATASET = "reanalysis-era5-land"
    READS: ClassVar = {
        **{name: (Need(nc, INSTANT), factor) for name, (_, nc, factor) in LAND_DAILY.items()},
        **{name: (Need(nc, FROM_00), factor) for name, (_, nc, factor) in LAND_RADIATION.items()},
    }
    FINE_GRID = True
    PREFIX = "era5_land_"

    def requests(self, day: dt.date) -> list[CdsRequest]:
        """Daily means of day D; radiation valid at 00 UTC of D+1 (the totals of day D)."""
        area = {"area": list(self.options.area)} if self.options.area is not None else {}
        daily = {
            "variable": [cds for cds, _, _ in LAND_DAILY.values()],
            **_dates((day,)),
            "daily_statistic": "daily_mean",
            "time_zone": "utc+00:00",
            "frequency": "1_hourly",
            **area,
        }
        radiation = {
            "variable": [cds for cds, _, _ in LAND_RADIATION.values()],
            **_dates((day + dt.timedelta(days=1),)),
            "time": ["00:00"],
            "data_format": "grib",
            "download_format": "unarchived",
            **area,
        }
        return [
            CdsRequest(self.DAILY_DATASET, daily, f"era5_land_daily_{day:%Y%m%d}.nc"),
            CdsRequest(self.HOURLY_DATASET, radiation, f"era5_land_rad_{day:%Y%m%d}.grib"),
        ]

    def read(self, granule: Granule) -> xr.Dataset:
        """The granule's files -> the 11 variables of the day in registry units, native 0.1
        degree grid: daily statistics (or 24 hourly values) of the state variables, and the
        radiation accumulated to 00 UTC of the next day."""
        parts, out, paths = self._day_values(granule)
        # ERA5-Land is missing over the sea already; ERA5 fields supplied in its place are
        # not, and are masked where a file brings its land-sea mask (on any time axis).
        masks = [self._files.field(p, "lsm") for p in parts if "lsm" in p.inv.times]
        for name, (need, _) in self.READS.items():
            if need.name not in grib.LAND_ONLY:
                continue
            for lsm in masks:
                land = lsm.isel(valid_time=0, drop=True)
                if _same_grid(land, out[name]):
                    out[name] = out[name].where(land >= 0.5)
                    break
        return _native(out, granule.day, paths)


# --- helpers ---------------------------------------------------------------------------------


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    return all(np.array_equal(a[c].values, b[c].values) for c in ("latitude", "longitude"))


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _dates(days: tuple[dt.date, ...]) -> dict[str, list[str]]:
    """CDS year/month/day lists (the CDS takes their cross product; the reader picks)."""
    return {
        "year": sorted({f"{d.year}" for d in days}),
        "month": sorted({f"{d.month:02d}" for d in days}),
        "day": sorted({f"{d.day:02d}" for d in days}),
    }


def _native(fields: dict[str, xr.DataArray], day: dt.date, paths: dict[str, str]) -> xr.Dataset:
    """(time=1, latitude, longitude) float32 variables with registry units; all-NaN refused."""
    first = next(iter(fields.values()))
    lat, lon = first["latitude"].values, first["longitude"].values
    out = {}
    for name, da in fields.items():
        same = np.array_equal(da["latitude"].values, lat)
        if not (same and np.array_equal(da["longitude"].values, lon)):
            files = ", ".join(sorted(set(paths.values())))
            raise SourceError(f"{files}: the files are on different grids ({name})")
        values = np.asarray(da.transpose("latitude", "longitude").values, dtype=np.float32)
        if not bool(np.isfinite(values).any()):
            raise SourceError(
                f"{paths[name]}: {name} on {day.isoformat()} has no valid value (all NaN)"
            )
        attrs = {"units": registry.get(name).units, "long_name": registry.get(name).long_name}
        out[name] = (("time", "latitude", "longitude"), values[None], attrs)
    time = np.array([np.datetime64(day.isoformat(), "ns")])
    return xr.Dataset(out, coords={"time": time, "latitude": lat, "longitude": lon})
