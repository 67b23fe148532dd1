"""SMAP L3 enhanced passive soil moisture (``SPL3SMP_E``), the ``smap`` target, from NSIDC.

One HDF5 file per day holds two arrays on the native EASE-Grid 2.0 9 km grid (row 0 in the
north): the 6 am descending retrievals in ``Soil_Moisture_Retrieval_Data_AM`` and the 6 pm
ascending ones in ``Soil_Moisture_Retrieval_Data_PM`` (every PM name ends in ``_pm``). A
retrieval is valid when ``soil_moisture`` is not the fill (-9999), lies in the variable's
valid range, and ``retrieval_qual_flag`` bit 0 is clear: the SMAP L3 product specification
defines bit 0 as "0 = recommended quality, 1 = not recommended" (the file's ``flag_meanings``
label, ``Retrieval_recommended``, names the bit, not its set state). The day's value is the
mean of the valid AM and PM retrievals. No regridding: the window is a row/column slice.

A whole file is the global grid (1624 x 3856; the 36 km ``SPL3SMP``, 406 x 964, works on the
M36 grid), checked cell by cell against its ``EASE_row_index``/``EASE_column_index``. A
spatial subset (Harmony/OPeNDAP, ``..._subsetted.nc4``) is a rectangle of that grid with
anonymous dimensions: it is placed by its own EASE row/column indices, checked against its
``latitude``/``longitude`` where it has them, or by those alone (a variable subset keeps
only the coordinates). Both carry fills wherever there is no retrieval, so the place comes
from the cells that have one; a subset without any retrieval is an empty day.

Local archives hold the provider's names, ``SMAP_L3_SM_P_E_YYYYMMDD_RvvvvvV_nnn.h5``, or a
subset's ``<that name>[_<variable>]_subsetted.nc4``, in any sub-folder (NSIDC's own layout is
``SPL3SMP_E.006/YYYY.MM.DD/``); the highest CRID and run of a day wins and is recorded.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops.grid import GRIDS, EaseGrid, Window
from gsm3_ops.sources.archive import ArchiveIndex, Span
from gsm3_ops.sources.base import (
    CorruptFileError,
    DateNotServedError,
    Granule,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.earthdata import GLOBAL_BBOX, Bbox, Earthdata, pick_files, utc_today

NAME = "smap"
VARIABLE = "smap"
GROUPS = {
    "AM": ("Soil_Moisture_Retrieval_Data_AM", ""),
    "PM": ("Soil_Moisture_Retrieval_Data_PM", "_pm"),
}
RECOMMENDED_BIT = 0x1  # retrieval_qual_flag bit 0: set = NOT recommended quality
INDEX_FILL = 65534  # EASE_row_index / EASE_column_index / retrieval_qual_flag fill
WHOLE_SHAPES = frozenset(g.shape for g in GRIDS.values())  # any other shape is a subset
LONLAT_CHECKS = 4096  # cells whose latitude/longitude place (and check) a subset
REWALK_S = 30.0  # seconds an archive walk is reused for (a missing day walks again)


class Options(BaseModel):
    """SMAP settings (``sources.options.smap``)."""

    model_config = ConfigDict(extra="forbid")
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

    short_name: str = "SPL3SMP_E"
    version: str = "006"
    file_prefix: str = "SMAP_L3_SM_P_E"  # SPL3SMP (36 km): SMAP_L3_SM_P
    first_date: dt.date = dt.date(2015, 3, 31)
    latency_days: int = Field(2, ge=0)  # L3 daily files appear about 1-2 days after the day
    bbox: Bbox | None = None  # search box; the files are global either way
    passes: tuple[Literal["AM", "PM"], ...] = Field(("AM", "PM"), min_length=1)
    recommended_only: bool = True  # keep only retrieval_qual_flag bit 0 == 0
    check_ease_index: bool = True  # compare EASE_row/column_index with the array position


class SmapSource:
    """SMAP L3 soil moisture, daily mean of AM and PM; the ``earthaccess`` client is injectable."""

    name = NAME
    provides = (VARIABLE,)
    Options = Options

    def __init__(self, options: Options | None = None, client: Any = None) -> None:
        self.options = options or Options()
        self.earthdata = Earthdata(client)
        # Per archive folder: its index, when it was last walked, and its granules by day.
        self._archives: dict[Path, tuple[ArchiveIndex, float, dict[dt.date, list[Path]]]] = {}
        self._name = re.compile(
            rf"^{re.escape(self.options.file_prefix)}_(\d{{8}})_([A-Z])(\d+)_(\d+)"
            r"(_\w+)?\.(h5|nc4|nc)$"
        )

    def first_date(self) -> dt.date:
        """The first day served: the archive's first file when ``options.archive`` is set,
        else the first day of the SMAP science record."""
        if self.options.archive is not None:
            return self._archive_span(self.options.archive)[0]
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day served as of ``today`` (UTC): the archive's last file when
        ``options.archive`` is set, else ``today`` less the product latency."""
        if self.options.archive is not None:
            return self._archive_span(self.options.archive)[1]
        return today - dt.timedelta(days=self.options.latency_days)

    def version(self, day: dt.date) -> str:
        """Product and version, e.g. ``SPL3SMP_E.006``."""
        return f"{self.options.short_name}.{self.options.version}"

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Download the day's file (the highest processing run if several are listed)."""
        o = self.options
        today = utc_today()
        last = today - dt.timedelta(days=o.latency_days)
        if not o.first_date <= day <= last:
            raise DateNotServedError(
                f"{o.short_name} serves {o.first_date.isoformat()}..{last.isoformat()} "
                f"as of {today.isoformat()}, not {day.isoformat()}"
            )
        found = self.earthdata.require(
            o.short_name, o.version, day, o.bbox or GLOBAL_BBOX, name_contains=f"_{day:%Y%m%d}_"
        )
        what = f"{o.short_name} {o.version} on {day.isoformat()}"
        files = pick_files(self.earthdata.download(found, workdir, what), (".h5",), what)
        return self._granule(day, files)

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The day's granule under ``directory`` (any sub-folder), whole or a spatial subset."""
        files = self._by_day(Path(directory), day).get(day, [])
        if not files:
            raise DateNotServedError(
                f"no {self.options.short_name} file for {day.isoformat()} under {directory} "
                f"(expected {self.options.file_prefix}_{day:%Y%m%d}_R*_*.h5, or a subset's "
                "..._subsetted.nc4)"
            )
        return self._granule(day, files)

    def read(self, granule: Granule) -> xr.Dataset:
        """The day's mean of valid AM/PM retrievals on the native grid, (time=1, row, col)."""
        if len(granule.files) != 1:
            raise SourceError(f"SMAP {granule.day}: expected one file, got {len(granule.files)}")
        return read_daily_mean(granule.files[0], granule.day, self.options)

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """The window's rows and columns of the native grid, with cell-centre x/y (metres).

        A window without any valid retrieval (no overpass) is all NaN: the cube checks note
        such a day as empty rather than failing it.
        """
        da = native[VARIABLE]
        day = np.datetime_as_string(da["time"].values[0], unit="D")
        if native.attrs.get("subset"):
            values = _place_subset(native, grid, window, f"SMAP {day}: {native.attrs['file']}")
        else:
            shape = (da.sizes["row"], da.sizes["col"])
            if shape != grid.shape:
                raise SourceError(
                    f"SMAP {day}: file grid is {shape[0]} x {shape[1]}, the {grid.name} grid "
                    f"is {grid.n_rows} x {grid.n_cols} (9 km SPL3SMP_E needs M09, 36 km "
                    "SPL3SMP M36)"
                )
            values = da.values[:, window.rows, window.cols].astype(np.float32)
        out = xr.DataArray(
            values,
            dims=("time", "y", "x"),
            coords={
                "time": da["time"].values,
                "y": grid.y_centres(window),
                "x": grid.x_centres(window),
            },
            attrs=dict(da.attrs),
        )
        return xr.Dataset({VARIABLE: out})

    def _span_of(self, path: Path) -> Span | None:
        m = self._name.match(path.name)
        if m is None:
            return None
        try:
            day = dt.datetime.strptime(m[1], "%Y%m%d").date()
        except ValueError:
            return None
        return (day, day)

    def _archive_span(self, folder: Path) -> Span:
        days = self._by_day(Path(folder))
        if not days:
            raise DateNotServedError(
                f"{self.options.short_name}: no {self.options.file_prefix}_YYYYMMDD_* granule "
                f"in the archive {folder}"
            )
        return min(days), max(days)

    def _by_day(self, root: Path, day: dt.date | None = None) -> dict[dt.date, list[Path]]:
        """The archive's granules by day, from a walk at most ``REWALK_S`` old that knows
        ``day``: a backfill asks for hundreds of days, and walking a folder of hundreds of
        granules for each costs more than reading them."""
        now = time.monotonic()
        index, walked, days = self._archives.get(root) or (
            ArchiveIndex(root, NAME, self._span_of),
            -np.inf,
            {},
        )
        if now - walked > REWALK_S or (day is not None and day not in days):
            days = {}
            for path, (first, _) in index.spans().items():
                days.setdefault(first, []).append(path)  # a granule is one day
            self._archives[root] = (index, now, days)
        return days

    def _granule(self, day: dt.date, files: list[Path]) -> Granule:
        # Several runs of one day (a reprocessing): the highest CRID, then run number, wins;
        # a whole file before a subset of the same run.
        def rank(path: Path) -> tuple:
            m = self._name.match(path.name)
            if m is None:
                return (-1, -1, False, path.name)
            return (int(m[3]), int(m[4]), m[5] is None and m[6] == "h5", path.name)

        path = max(files, key=rank)
        m = self._name.match(path.name)
        notes = (f"crid:{m[2]}{m[3]}_{m[4]}",) if m else ()
        return Granule(NAME, day, (path,), self.version(day), notes)


# --- reading -------------------------------------------------------------------------------


@dataclass
class _Pass:
    """One pass of a file: soil moisture (NaN where not valid) and its grid coordinates."""

    group: str
    values: np.ndarray
    index: dict[str, np.ndarray] = field(default_factory=dict)  # name -> int32, -1 = fill
    lonlat: tuple[np.ndarray, np.ndarray] | None = None  # NaN = fill


def read_daily_mean(path: Path, day: dt.date, options: Options) -> xr.Dataset:
    """Mean of the valid AM and PM retrievals in one SMAP L3 file, (time=1, row, col).

    ``row``/``col`` are the cells' global grid indices; a subset whose place the file does not
    give by EASE indices has none, and carries ``latitude``/``longitude`` to find it.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        with f:
            subset = _is_subset(f, options)
            index = subset or options.check_ease_index
            passes = [_read_pass(f, path, p, options, index, subset) for p in options.passes]
    except SourceError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise CorruptFileError(f"{path}: truncated or corrupt ({exc})") from None
    shapes = {p.values.shape for p in passes}
    if len(shapes) != 1:
        raise CorruptFileError(f"{path}: AM and PM arrays differ in shape {sorted(shapes)}")
    origin = _index_origin(passes) if subset else (0, 0)
    if options.check_ease_index and origin is not None:
        for p in passes:
            _check_index(p, origin, path)
    stack = np.stack([p.values for p in passes])
    count = np.isfinite(stack).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), np.nan)
    if not subset and not np.isfinite(mean).any():
        raise SourceError(
            f"SMAP {VARIABLE} on {day.isoformat()}: no valid retrieval in {path} "
            "(all fill or flagged)"
        )
    n_rows, n_cols = mean.shape
    coords: dict[str, Any] = {"time": [np.datetime64(day.isoformat(), "ns")]}
    if origin is not None:
        coords |= {"row": origin[0] + np.arange(n_rows), "col": origin[1] + np.arange(n_cols)}
    da = xr.DataArray(
        mean[None].astype(np.float32),
        dims=("time", "row", "col"),
        coords=coords,
        attrs={"units": "m3 m-3", "long_name": "SMAP soil moisture, mean of AM and PM"},
    )
    data: dict[str, Any] = {VARIABLE: da}
    lonlat = _merged_lonlat(passes) if subset else None
    if lonlat is not None:
        data |= {"longitude": (("row", "col"), lonlat[0]), "latitude": (("row", "col"), lonlat[1])}
    return xr.Dataset(data, attrs={"subset": int(subset), "file": str(path)})


def _is_subset(f: h5py.File, options: Options) -> bool:
    """Whether the file's arrays are a spatial subset (not the shape of a whole SMAP grid)."""
    for which in options.passes:
        group_name, suffix = GROUPS[which]
        sm = f.get(f"{group_name}/soil_moisture{suffix}")
        if isinstance(sm, h5py.Dataset):
            return sm.shape not in WHOLE_SHAPES
    return False  # no soil moisture at all: reading the pass names what is missing


def _read_pass(
    f: h5py.File, path: Path, which: str, options: Options, index: bool, lonlat: bool
) -> _Pass:
    """One pass's soil moisture with invalid retrievals as NaN, and its coordinates."""
    group_name, suffix = GROUPS[which]
    group = f.get(group_name)
    if not isinstance(group, h5py.Group):
        raise MissingVariableError(f"{path}: no group {group_name}")
    sm = _dataset(group, f"soil_moisture{suffix}", path)
    flag = _dataset(group, f"retrieval_qual_flag{suffix}", path)
    if sm.ndim != 2 or sm.shape != flag.shape:
        raise CorruptFileError(
            f"{path}: {group_name} soil_moisture{suffix} {sm.shape} and "
            f"retrieval_qual_flag{suffix} {flag.shape} are not one 2-D grid"
        )
    values = np.asarray(sm[()], dtype=np.float64)
    flags = np.asarray(flag[()]).astype(np.int64)
    fill = _attr(sm, "_FillValue", -9999.0)
    lo, hi = _attr(sm, "valid_min", -np.inf), _attr(sm, "valid_max", np.inf)
    ok = np.isfinite(values) & (values != fill) & (values >= lo) & (values <= hi)
    ok &= flags != int(_attr(flag, "_FillValue", INDEX_FILL))
    if options.recommended_only:
        ok &= (flags & RECOMMENDED_BIT) == 0
    out = _Pass(group.name, np.where(ok, values, np.nan))
    for name in (f"EASE_row_index{suffix}", f"EASE_column_index{suffix}"):
        ds = group.get(name)  # older files or variable subsets may lack them
        if index and isinstance(ds, h5py.Dataset) and ds.shape == sm.shape:
            raw = np.asarray(ds[()]).astype(np.int32)
            out.index[name] = np.where(raw == int(_attr(ds, "_FillValue", INDEX_FILL)), -1, raw)
    lon, lat = group.get(f"longitude{suffix}"), group.get(f"latitude{suffix}")
    if lonlat and isinstance(lon, h5py.Dataset) and isinstance(lat, h5py.Dataset):
        out.lonlat = (_coordinate(lon), _coordinate(lat))
    return out


def _coordinate(ds: h5py.Dataset) -> np.ndarray:
    """Latitude or longitude, NaN where there is no retrieval: the -9999 fill, which some
    versions' AM coordinates carry without a ``_FillValue`` attribute."""
    values = np.asarray(ds[()], dtype=np.float64)
    return np.where(np.isfinite(values) & (np.abs(values) <= 360.0), values, np.nan)


def _index_origin(passes: list[_Pass]) -> tuple[int, int] | None:
    """The global (row, col) of a subset's first cell from its EASE indices, None if none."""
    for p in passes:
        rows = next((v for k, v in p.index.items() if k.startswith("EASE_row")), None)
        cols = next((v for k, v in p.index.items() if k.startswith("EASE_col")), None)
        if rows is None or cols is None:
            continue
        known = (rows >= 0) & (cols >= 0)
        if known.any():
            i, j = np.unravel_index(int(np.argmax(known)), known.shape)
            return int(rows[i, j] - i), int(cols[i, j] - j)
    return None


def _check_index(p: _Pass, origin: tuple[int, int], path: Path) -> None:
    """Every cell's own EASE row/column must be its array position plus ``origin``."""
    for name, got in p.index.items():
        by_row = name.startswith("EASE_row")
        n = got.shape[0 if by_row else 1]
        position = np.arange(n, dtype=np.int32) + origin[0 if by_row else 1]
        expect = position[:, None] if by_row else position[None, :]
        bad = (got >= 0) & (got != expect)
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise CorruptFileError(
                f"{path}: {p.group}/{name} is {got[i, j]} at array position ({i}, {j}), "
                f"expected {position[i if by_row else j]}; the file is not the EASE grid (or "
                "a rectangle of it) it claims"
            )


def _merged_lonlat(passes: list[_Pass]) -> tuple[np.ndarray, np.ndarray] | None:
    """Each cell's longitude and latitude from whichever pass has them (NaN where none)."""
    have = [p.lonlat for p in passes if p.lonlat is not None]
    if not have:
        return None
    lon, lat = have[0]
    for other_lon, other_lat in have[1:]:
        lon, lat = np.where(np.isnan(lon), other_lon, lon), np.where(np.isnan(lat), other_lat, lat)
    return lon, lat


# --- placing a subset ----------------------------------------------------------------------


def _place_subset(native: xr.Dataset, grid: EaseGrid, window: Window, where: str) -> np.ndarray:
    """The subset's values in ``window`` (NaN where it has none), (1, rows, cols) float32."""
    values = native[VARIABLE].values
    n_rows, n_cols = values.shape[1:]
    origin = _subset_origin(native, grid, where)
    out = np.full((1, *window.shape), np.nan, dtype=np.float32)
    if origin is None:
        if np.isfinite(values).any():
            raise MissingVariableError(
                f"{where}: a subset with retrievals but neither EASE_row_index/"
                "EASE_column_index nor latitude/longitude to place it on the grid"
            )
        return out  # no retrieval anywhere in the subset: an empty day
    r0, c0 = origin
    if r0 < 0 or c0 < 0 or r0 + n_rows > grid.n_rows or c0 + n_cols > grid.n_cols:
        raise SourceError(f"{where}: rows {r0}.., columns {c0}.. lie outside the {grid.name} grid")
    top, bottom = max(r0, window.row0), min(r0 + n_rows, window.row0 + window.n_rows)
    left, right = max(c0, window.col0), min(c0 + n_cols, window.col0 + window.n_cols)
    if top >= bottom or left >= right:
        raise SourceError(
            f"{where}: the subset covers rows {r0}..{r0 + n_rows - 1}, columns "
            f"{c0}..{c0 + n_cols - 1} of the {grid.name} grid, none of the window {window}"
        )
    target = np.s_[
        :, top - window.row0 : bottom - window.row0, left - window.col0 : right - window.col0
    ]
    out[target] = values[:, top - r0 : bottom - r0, left - c0 : right - c0]
    return out


def _subset_origin(native: xr.Dataset, grid: EaseGrid, where: str) -> tuple[int, int] | None:
    """The global (row, col) of the subset's first cell: from its EASE indices, which its
    latitude/longitude must agree with, else from the latitude/longitude alone."""
    by_index = None
    if "row" in native.coords:
        by_index = (int(native["row"].values[0]), int(native["col"].values[0]))
    by_lonlat = _lonlat_origin(native, grid, where)
    if by_index is not None and by_lonlat is not None and by_index != by_lonlat:
        raise SourceError(
            f"{where}: its EASE indices put it at row {by_index[0]}, column {by_index[1]} of "
            f"the {grid.name} grid, its latitude/longitude at row {by_lonlat[0]}, column "
            f"{by_lonlat[1]} (a file of another grid?)"
        )
    return by_index if by_index is not None else by_lonlat


def _lonlat_origin(native: xr.Dataset, grid: EaseGrid, where: str) -> tuple[int, int] | None:
    if "latitude" not in native:
        return None
    lon, lat = native["longitude"].values, native["latitude"].values
    known = np.isfinite(lon) & np.isfinite(lat)
    if not known.any():
        return None
    cells = np.flatnonzero(known)
    cells = cells[:: max(1, cells.size // LONLAT_CHECKS)]  # a large subset: a sample will do
    i, j = np.unravel_index(cells, known.shape)
    rows, cols = grid.lonlat_to_rowcol(lon.ravel()[cells], lat.ravel()[cells])
    r0, c0 = np.unique(rows - i), np.unique(cols - j)
    if r0.size != 1 or c0.size != 1 or (rows < 0).any():
        raise SourceError(
            f"{where}: its latitude/longitude are not one rectangle of {grid.name} grid cells "
            "(a file of another grid?)"
        )
    return int(r0[0]), int(c0[0])


def _dataset(group: h5py.Group, name: str, path: Path) -> h5py.Dataset:
    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise MissingVariableError(f"{path}: no variable {group.name}/{name}")
    return obj


def _attr(ds: h5py.Dataset, name: str, default: float) -> float:
    value = ds.attrs.get(name)
    if value is None:
        return default
    return float(np.asarray(value).ravel()[0])
