"""SMAP L3 enhanced passive soil moisture (``SPL3SMP_E``), the ``smap`` target, from NSIDC.

One HDF5 file per day holds two global arrays on the native EASE-Grid 2.0 9 km grid
(1624 rows x 3856 columns, row 0 in the north): the 6 am descending retrievals in
``Soil_Moisture_Retrieval_Data_AM`` and the 6 pm ascending ones in
``Soil_Moisture_Retrieval_Data_PM`` (every PM name ends in ``_pm``). A retrieval is valid
when ``soil_moisture`` is not the fill (-9999), lies in the variable's valid range, and
``retrieval_qual_flag`` bit 0 is clear: the SMAP L3 product specification defines bit 0 as
"0 = recommended quality, 1 = not recommended" (the file's ``flag_meanings`` label,
``Retrieval_recommended``, names the bit, not its set state). The day's value is the mean of
the valid AM and PM retrievals. No regridding: the window is a row/column slice, and the
file's ``EASE_row_index``/``EASE_column_index`` are checked against it. The grid size is read
from the file, so the 36 km ``SPL3SMP`` (406 x 964, same layout) works on the M36 grid.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops.grid import EaseGrid, Window
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

    def first_date(self) -> dt.date:
        """The first day of the SMAP science record."""
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day NSIDC has as of ``today`` (UTC), given the product latency."""
        return today - dt.timedelta(days=self.options.latency_days)

    def version(self, day: dt.date) -> str:
        """Product and version, e.g. ``SPL3SMP_E.006``."""
        return f"{self.options.short_name}.{self.options.version}"

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Download the day's file (the highest processing run if several are listed)."""
        today = utc_today()
        if not self.first_date() <= day <= self.latest_date(today):
            raise DateNotServedError(
                f"{self.options.short_name} serves {self.first_date().isoformat()}.."
                f"{self.latest_date(today).isoformat()} as of {today.isoformat()}, "
                f"not {day.isoformat()}"
            )
        o = self.options
        found = self.earthdata.require(
            o.short_name, o.version, day, o.bbox or GLOBAL_BBOX, name_contains=f"_{day:%Y%m%d}_"
        )
        what = f"{o.short_name} {o.version} on {day.isoformat()}"
        files = pick_files(self.earthdata.download(found, workdir, what), (".h5",), what)
        return self._granule(day, files)

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The day's file under ``directory`` (``<file_prefix>_YYYYMMDD_R*_*.h5``)."""
        pattern = f"{self.options.file_prefix}_{day:%Y%m%d}_*.h5"
        files = sorted(p for p in Path(directory).rglob(pattern) if p.is_file())
        if not files:
            raise DateNotServedError(
                f"no {self.options.short_name} file for {day.isoformat()} under {directory} "
                f"(expected {pattern})"
            )
        return self._granule(day, files)

    def read(self, granule: Granule) -> xr.Dataset:
        """The day's mean of valid AM/PM retrievals on the native grid, (time=1, row, col)."""
        if len(granule.files) != 1:
            raise SourceError(f"SMAP {granule.day}: expected one file, got {len(granule.files)}")
        return read_daily_mean(granule.files[0], granule.day, self.options)

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """The window's rows and columns of the native grid, with cell-centre x/y (metres)."""
        da = native[VARIABLE]
        day = np.datetime_as_string(da["time"].values[0], unit="D")
        shape = (da.sizes["row"], da.sizes["col"])
        if shape != grid.shape:
            raise SourceError(
                f"SMAP {day}: file grid is {shape[0]} x {shape[1]}, the {grid.name} grid is "
                f"{grid.n_rows} x {grid.n_cols} (9 km SPL3SMP_E needs M09, 36 km SPL3SMP M36)"
            )
        values = da.values[:, window.rows, window.cols].astype(np.float32)
        if not np.isfinite(values).any():
            raise SourceError(
                f"SMAP {VARIABLE} on {day}: no valid retrieval in window {window} "
                "(no overpass, or every retrieval flagged)"
            )
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

    def _granule(self, day: dt.date, files: list[Path]) -> Granule:
        # Several runs of one day (e.g. after a reprocessing): the last name is the newest CRID.
        path = sorted(files)[-1]
        m = re.search(r"_(R\d+)_(\d+)\.h5$", path.name)
        notes = (f"crid:{m[1]}_{m[2]}",) if m else ()
        return Granule(NAME, day, (path,), self.version(day), notes)


# --- reading -------------------------------------------------------------------------------


def read_daily_mean(path: Path, day: dt.date, options: Options) -> xr.Dataset:
    """Mean of the valid AM and PM retrievals in one SMAP L3 file, (time=1, row, col)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        with f:
            passes = [_read_pass(f, path, p, options) for p in options.passes]
    except SourceError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise CorruptFileError(f"{path}: truncated or corrupt ({exc})") from None
    shapes = {p.shape for p in passes}
    if len(shapes) != 1:
        raise CorruptFileError(f"{path}: AM and PM arrays differ in shape {sorted(shapes)}")
    stack = np.stack(passes)
    count = np.isfinite(stack).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), np.nan)
    if not np.isfinite(mean).any():
        raise SourceError(
            f"SMAP {VARIABLE} on {day.isoformat()}: no valid retrieval in {path} "
            "(all fill or flagged)"
        )
    n_rows, n_cols = mean.shape
    da = xr.DataArray(
        mean[None].astype(np.float32),
        dims=("time", "row", "col"),
        coords={
            "time": [np.datetime64(day.isoformat(), "ns")],
            "row": np.arange(n_rows),
            "col": np.arange(n_cols),
        },
        attrs={"units": "m3 m-3", "long_name": "SMAP soil moisture, mean of AM and PM"},
    )
    return xr.Dataset({VARIABLE: da})


def _read_pass(f: h5py.File, path: Path, which: str, options: Options) -> np.ndarray:
    """One pass's soil moisture with invalid retrievals as NaN."""
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
    if options.check_ease_index and ok.any():
        _check_index(group, suffix, ok, path)
    return np.where(ok, values, np.nan)


def _check_index(group: h5py.Group, suffix: str, ok: np.ndarray, path: Path) -> None:
    """The file's own EASE row/column of each valid retrieval must be its array position."""
    rows, cols = np.nonzero(ok)
    for name, expect in ((f"EASE_row_index{suffix}", rows), (f"EASE_column_index{suffix}", cols)):
        if name not in group:
            continue  # older files or subsets may lack them; the position is the grid anyway
        got = np.asarray(group[name][()])[rows, cols].astype(np.int64)
        bad = got != expect
        if bad.any():
            k = int(np.argmax(bad))
            raise CorruptFileError(
                f"{path}: {group.name}/{name} is {got[k]} at array position "
                f"({rows[k]}, {cols[k]}); the file is not on the EASE grid it claims"
            )


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
