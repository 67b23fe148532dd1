"""The product Zarr stores as the service reads them: the grid window, the dates, the arrays.

Stores are opened through the generic APIs only (``xarray.open_zarr(consolidated=None)`` for
the coordinates, ``zarr.open_group`` for the arrays), so a Zarr v2 store with consolidated
metadata and a v3 store read alike, and a day's index comes from the ``time`` coordinate's
values, never from a start date. Values are raw: NaN no-data for the float layers, 255 for
the flag, as in the COGs.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr
import zarr

from gsm3_ops.grid import GRIDS, EaseGrid, Window
from gsm3_ops.publish.layers import LAYERS
from gsm3_ops.serve.root import PublishRoot


class StoreError(OSError):
    """A product store that is absent or cannot be read as a product."""


@dataclass(frozen=True)
class Cell:
    """One grid cell: row and column on the whole EASE-Grid 2.0 grid, and its centre."""

    row: int
    col: int
    x: float
    y: float

    def as_json(self) -> dict[str, float | int]:
        """``{"row", "col", "x", "y"}``."""
        return {"row": self.row, "col": self.col, "x": self.x, "y": self.y}


@dataclass(frozen=True)
class Domain:
    """The window of the grid a product covers."""

    grid: EaseGrid
    window: Window
    x: np.ndarray
    y: np.ndarray

    def cell(self, lon: float, lat: float) -> Cell | None:
        """The cell holding ``lon``/``lat``, or None outside the product's window."""
        row, col = self.grid.lonlat_to_rowcol(np.array([lon]), np.array([lat]))
        r, c = int(row[0]) - self.window.row0, int(col[0]) - self.window.col0
        if row[0] < 0 or not (0 <= r < self.window.n_rows and 0 <= c < self.window.n_cols):
            return None
        return Cell(int(row[0]), int(col[0]), float(self.x[c]), float(self.y[r]))

    def local(self, cell: Cell) -> tuple[int, int]:
        """Row and column of ``cell`` within the window."""
        return cell.row - self.window.row0, cell.col - self.window.col0


def domain_of(x: np.ndarray, y: np.ndarray) -> Domain:
    """The grid and window whose cell centres are ``x`` and ``y``; StoreError if none."""
    for grid in GRIDS.values():
        col0 = round((float(x[0]) - grid.x0) / grid.cell_size - 0.5)
        row0 = round((grid.y0 - float(y[0])) / grid.cell_size - 0.5)
        if col0 < 0 or row0 < 0:
            continue
        window = Window(row0, col0, len(y), len(x))
        if not grid.full.contains(window):
            continue
        tol = grid.cell_size * 1e-6
        if np.allclose(grid.x_centres(window), x, atol=tol, rtol=0) and np.allclose(
            grid.y_centres(window), y, atol=tol, rtol=0
        ):
            return Domain(grid, window, np.asarray(x), np.asarray(y))
    raise StoreError("the product's x/y coordinates are not a window of an EASE-Grid 2.0 grid")


class ZarrCube:
    """One opened product store (the map store or the time-series copy)."""

    def __init__(self, root: PublishRoot, rel: str) -> None:
        target = root.zarr_target(rel)
        self.rel = rel
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = xr.open_zarr(target, consolidated=None, chunks=None, decode_times=True,
                                  mask_and_scale=False)  # fmt: skip
                try:
                    times = ds.indexes["time"]
                    self.x = np.asarray(ds["x"].values, dtype=np.float64)
                    self.y = np.asarray(ds["y"].values, dtype=np.float64)
                finally:
                    ds.close()
                group = zarr.open_group(target, mode="r")
                self.arrays = {name: group[name] for name in LAYERS}
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot read the product store {root.url(rel)}: {exc}") from None
        days = [dt.date(t.year, t.month, t.day) for t in times]
        self.index = {day: i for i, day in enumerate(days)}
        self.chunks = {name: tuple(arr.chunks) for name, arr in self.arrays.items()}

    @property
    def n_time(self) -> int:
        """Length of the time axis."""
        return len(self.index)

    def day_block(self, name: str, t: int, block: tuple[int, int]) -> np.ndarray:
        """The (rows, cols) chunk ``block`` of layer ``name`` on time index ``t``."""
        _, ch_r, ch_c = self.chunks[name]
        r0, c0 = block[0] * ch_r, block[1] * ch_c
        return np.asarray(self.arrays[name][t, r0 : r0 + ch_r, c0 : c0 + ch_c])

    def time_block(self, name: str, block: tuple[int, int]) -> np.ndarray:
        """The (time, rows, cols) block ``block`` of layer ``name`` over the whole time axis."""
        _, ch_r, ch_c = self.chunks[name]
        r0, c0 = block[0] * ch_r, block[1] * ch_c
        return np.asarray(self.arrays[name][:, r0 : r0 + ch_r, c0 : c0 + ch_c])

    def cell_series(self, name: str, row: int, col: int) -> np.ndarray:
        """Layer ``name`` at one cell (window row, column) over the whole time axis."""
        return np.asarray(self.arrays[name][:, row, col])

    def block_of(self, name: str, row: int, col: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(chunk block, offset within it) of window cell ``row``, ``col``."""
        _, ch_r, ch_c = self.chunks[name]
        return (row // ch_r, col // ch_c), (row % ch_r, col % ch_c)
