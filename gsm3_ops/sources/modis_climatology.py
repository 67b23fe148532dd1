"""Day-of-year climatologies that fill a MODIS product missing for a day: a file, or the
cube's own earlier years."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import xarray as xr

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.sources.base import MissingVariableError, SourceError


class Climatology(Protocol):
    """Anything that gives a variable's expected field for a day of year on a grid window."""

    def __call__(self, name: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        """``window.shape`` values of ``name`` for ``day``'s day of year."""
        ...


class FileClimatology:
    """Day-of-year fields from a Zarr store or NetCDF file: ``<variable>(dayofyear, y, x)``
    with EASE2 cell-centre ``y``/``x`` (metres); day 366 falls back to the last day present."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ds: xr.Dataset | None = None

    def __call__(self, name: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        """``name`` for ``day``'s day of year over ``window``."""
        ds = self._open()
        if name not in ds:
            raise MissingVariableError(f"climatology {self.path}: no variable {name}")
        da = ds[name]
        doy = min(day.timetuple().tm_yday, int(da["dayofyear"].max()))
        try:
            sel = da.sel(dayofyear=doy).sel(
                y=grid.y_centres(window),
                x=grid.x_centres(window),
                method="nearest",
                tolerance=grid.cell_size / 4,
            )
        except KeyError:
            raise SourceError(
                f"climatology {self.path}: {name} does not cover window {window} of {grid.name}"
            ) from None
        return np.asarray(sel.transpose("y", "x").values, dtype=np.float64)

    def _open(self) -> xr.Dataset:
        if self._ds is None:
            try:
                if self.path.is_dir() or self.path.suffix == ".zarr":
                    self._ds = xr.open_zarr(self.path)
                else:
                    self._ds = xr.open_dataset(self.path)
            except (OSError, ValueError, KeyError) as exc:
                raise SourceError(f"climatology {self.path} cannot be opened: {exc}") from None
        return self._ds


class HistoryClimatology:
    """The mean of the same days of year (+- ``half_window_days``) in the previous ``years``
    years, from the cube's own history: ``read(name, start, end, window)`` -> (time, y, x)."""

    def __init__(
        self,
        read: Callable[[str, dt.date, dt.date, Window], np.ndarray],
        years: int = 5,
        half_window_days: int = 7,
    ) -> None:
        self.read, self.years, self.half = read, years, dt.timedelta(days=half_window_days)

    def __call__(self, name: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        """``name`` averaged over the same season of earlier years."""
        parts = []
        for back in range(1, self.years + 1):
            centre = dt.date(day.year - back, day.month, min(day.day, 28 if day.month == 2 else 31))
            parts.append(
                np.asarray(self.read(name, centre - self.half, centre + self.half, window))
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
            return np.nanmean(np.concatenate(parts, axis=0), axis=0)
