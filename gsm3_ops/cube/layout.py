"""The layout of a data cube store, and the checks that data fit it.

A cube's :class:`Layout` (grid, domain window, time axis, tiling) is what makes two stores the
same. Beside it live the store's conventions, used by :mod:`gsm3_ops.cube` and
:mod:`gsm3_ops.cube.insitu` (coordinate and variable attributes, how data and coordinate arrays
are created and chunked, metadata consolidation), and the checks on what is written and read:
labels, datasets, dims, groups and registry variables, grid windows and dates on the time axis.
Every check raises :class:`~gsm3_ops.cube.manifest.CubeError`. See ``docs/cube.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.storage import LocalStore

from gsm3_ops import variables as registry
from gsm3_ops.cube.manifest import CubeError, window_extent
from gsm3_ops.grid import CRS, EaseGrid, Window

CUBE_FORMAT = 1
_OFF_GRID_TOL = 1e-4  # cells: coordinates further than this from a cell centre are off-grid
Y_ATTRS = {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}
X_ATTRS = {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}


@dataclass(frozen=True)
class Layout:
    """What makes two cubes the same store: grid, domain, time axis and tiling."""

    grid: str
    domain: Window
    start: date
    end: date
    tile_size: int

    def attrs(self, grid: EaseGrid) -> dict[str, Any]:
        """Root attributes of a store with this layout."""
        d = self.domain
        return {
            "gsm3_cube_format": CUBE_FORMAT,
            "title": "gsm3-ops data cube",
            "grid": self.grid,
            "grid_cell_size": grid.cell_size,
            "grid_x0": grid.x0,
            "grid_y0": grid.y0,
            "crs": CRS,
            "domain": window_extent(d.row0, d.col0, d.n_rows, d.n_cols),
            "tile_size": self.tile_size,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "time_units": f"days since {self.start.isoformat()}",
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], path: Path) -> Layout:
        """The layout recorded in a store's root attributes."""
        try:
            return cls(
                grid=str(attrs["grid"]),
                domain=Window(**{k: int(v) for k, v in attrs["domain"].items()}),
                start=date.fromisoformat(attrs["start"]),
                end=date.fromisoformat(attrs["end"]),
                tile_size=int(attrs["tile_size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CubeError(f"cube {path} has damaged root attributes ({exc!r})") from None

    def differences(self, other: Layout) -> list[str]:
        """Human-readable differences from ``other`` (this one being the existing store)."""
        return [
            f"{name}: existing {getattr(self, name)} != requested {getattr(other, name)}"
            for name in ("grid", "domain", "start", "end", "tile_size")
            if getattr(self, name) != getattr(other, name)
        ]


# --------------------------------------------------------------------- store conventions


def var_attrs(name: str) -> dict[str, Any]:
    """CF-ish attributes of a data variable, from the registry."""
    v = registry.REGISTRY[name]
    return {
        "units": v.units,
        "long_name": v.long_name,
        "valid_min": v.valid_min,
        "valid_max": v.valid_max,
    }


def consolidate(store: LocalStore) -> None:
    """Refresh the root's consolidated metadata (read by ``xr.open_zarr``); caller holds the
    metadata lock, so concurrent refreshes cannot drop each other's new arrays."""
    with warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not (yet) in the v3 spec.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(store)


def create_coord(group: zarr.Group, name: str, values: np.ndarray, attrs: dict[str, Any]) -> None:
    """A 1-D coordinate array in one chunk, named after its dimension."""
    arr = group.create_array(
        name, shape=values.shape, chunks=values.shape, dtype=values.dtype,
        fill_value=0, dimension_names=(name,), attributes=attrs,
    )  # fmt: skip
    arr[:] = values


def create_data_array(
    store: LocalStore, key: str, dims: tuple[str, ...], layout: Layout
) -> zarr.Array:
    """An empty float32 data array over the domain, chunked one day by one tile."""
    d, tile = layout.domain, layout.tile_size
    space = (d.n_rows, d.n_cols)
    space_chunks = (min(tile, d.n_rows), min(tile, d.n_cols))
    if dims[0] == "time":
        shape, chunks = ((layout.end - layout.start).days + 1, *space), (1, *space_chunks)
    else:
        shape, chunks = space, space_chunks
    return zarr.create_array(
        store, name=key, shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan,
        dimension_names=dims, attributes=var_attrs(key.rsplit("/", 1)[-1]),
    )  # fmt: skip


def time_attrs(layout: Layout) -> dict[str, Any]:
    """CF attributes of the integer time coordinate."""
    return {
        "units": f"days since {layout.start.isoformat()}",
        "calendar": "proleptic_gregorian",
        "standard_name": "time",
        "axis": "T",
    }


# --------------------------------------------------------------------- checks


def check_layout(grid: EaseGrid, layout: Layout) -> None:
    """CubeError for a layout that cannot make a cube."""
    d = layout.domain
    if d.n_rows <= 0 or d.n_cols <= 0 or not grid.full.contains(d):
        raise CubeError(f"domain {d} is empty or not inside the {grid.name} grid {grid.shape}")
    if layout.end < layout.start:
        raise CubeError(f"cube end {layout.end} is before its start {layout.start}")
    if layout.tile_size <= 0:
        raise CubeError(f"tile size must be positive, got {layout.tile_size}")


def check_label(value: str, what: str) -> None:
    """CubeError unless a source or version label is a non-empty string without '/'."""
    if not isinstance(value, str) or not value or "/" in value:
        raise CubeError(f"{what} must be a non-empty string without '/', got {value!r}")


def check_dataset(ds: Any) -> None:
    """CubeError unless ``ds`` is an xarray Dataset."""
    if not isinstance(ds, xr.Dataset):
        raise CubeError(f"expected an xarray Dataset, got {type(ds).__name__}")


def check_dims(ds: xr.Dataset, names: Sequence[str], dims: tuple[str, ...]) -> None:
    """CubeError unless every variable has exactly ``dims`` (in any order)."""
    for name in names:
        if set(ds[name].dims) != set(dims) or len(ds[name].dims) != len(dims):
            raise CubeError(f"variable {name!r} has dims {ds[name].dims}; expected {dims}")


def check_group(group: str, allowed: Sequence[str]) -> None:
    """CubeError unless ``group`` is one of ``allowed``."""
    if group not in allowed:
        raise CubeError(f"unknown cube group {group!r} here; expected one of {list(allowed)}")


def check_names(group: str, names: Sequence[str]) -> list[str]:
    """``names`` (de-duplicated) after checking each is a registry variable of ``group``."""
    if isinstance(names, str):
        raise CubeError(f"variables must be a sequence of names, not the string {names!r}")
    out: list[str] = []
    for name in names:
        if name not in registry.REGISTRY:
            raise CubeError(
                f"unknown variable {name!r} for cube group {group!r}: "
                "not in the registry (gsm3_ops.variables)"
            )
        kind = registry.REGISTRY[name].kind
        fits = name == "smap" if group == "smap" else kind == group
        if not fits:
            raise CubeError(
                f"variable {name!r} (kind {kind!r}) does not belong in cube group {group!r}"
            )
        if name not in out:
            out.append(name)
    return out


def check_window(domain: Window, window: Window | None, path: Path) -> Window:
    """``window`` (default the domain); CubeError unless it lies inside the domain of the cube
    at ``path``."""
    w = domain if window is None else window
    if w.n_rows <= 0 or w.n_cols <= 0 or not domain.contains(w):
        raise CubeError(f"window {w} is not inside the domain {domain} of {path}")
    return w


def window_of(
    grid: EaseGrid, domain: Window, ds: xr.Dataset, path: Path
) -> tuple[Window, dict[str, slice]]:
    """The grid window of a dataset's x/y coords, and the isel that orients it north-up;
    CubeError unless it lies inside the domain of the cube at ``path``."""
    axes = {}
    for dim in ("y", "x"):
        if dim not in ds.coords:
            raise CubeError(f"dataset has no {dim!r} coordinate (cell-centre metres)")
        axes[dim] = _axis_cells(grid, dim, ds[dim].values)
    (row0, n_rows, flip_y), (col0, n_cols, flip_x) = axes["y"], axes["x"]
    w = Window(row0, col0, n_rows, n_cols)
    if not grid.full.contains(w):
        raise CubeError(f"data window {w} lies outside the {grid.name} grid")
    if not domain.contains(w):
        raise CubeError(f"data window {w} is not inside the domain {domain} of {path}")
    orient = {dim: slice(None, None, -1) for dim, flip in (("y", flip_y), ("x", flip_x)) if flip}
    return w, orient


def _axis_cells(grid: EaseGrid, dim: str, values: np.ndarray) -> tuple[int, int, bool]:
    """(first index, length, reversed) of the grid rows (``y``) or columns (``x``) that
    cell-centre coordinates name; CubeError if they are off-grid or not a contiguous run."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise CubeError(f"coordinate {dim!r} must be 1-D and non-empty, got shape {v.shape}")
    if dim == "x":
        cells = (v - grid.x0) / grid.cell_size - 0.5
    else:
        cells = (grid.y0 - v) / grid.cell_size - 0.5
    index = np.rint(cells)
    off = float(np.max(np.abs(cells - index)))
    if not off <= _OFF_GRID_TOL:
        raise CubeError(
            f"coordinate {dim!r} is not on the {grid.name} grid: values are up to "
            f"{off:.3f} cells from a cell centre"
        )
    index = index.astype(np.int64)
    step = np.diff(index)
    if v.size > 1 and not (np.all(step == 1) or np.all(step == -1)):
        raise CubeError(f"coordinate {dim!r} is not a contiguous run of {grid.name} cells")
    return int(index.min()), int(v.size), bool(v.size > 1 and step[0] == -1)


def time_index(layout: Layout, day: date, what: str, path: Path) -> int:
    """Index of ``day`` on the time axis of the cube at ``path``; CubeError outside
    ``start..end``."""
    day = as_date(day)
    if not layout.start <= day <= layout.end:
        raise CubeError(
            f"{what} {day} is outside the time axis {layout.start}..{layout.end} of {path}"
        )
    return (day - layout.start).days


def days_of(obj: xr.Dataset | xr.DataArray) -> list[date]:
    """The dates of a ``time`` coordinate; CubeError unless daily (midnight) and unique."""
    if "time" not in obj.coords:
        raise CubeError("data has no 'time' coordinate")
    try:
        index = pd.DatetimeIndex(np.atleast_1d(obj["time"].values))
    except (TypeError, ValueError) as exc:
        raise CubeError(f"'time' coordinate is not made of dates: {exc}") from None
    if len(index) == 0:
        raise CubeError("'time' coordinate is empty")
    if index.tz is not None or not (index == index.normalize()).all():
        raise CubeError("'time' values must be dates (midnight, no time zone)")
    if index.has_duplicates:
        raise CubeError(f"'time' repeats dates: {sorted(set(index[index.duplicated()].date))}")
    return list(index.date)


def as_date(value: date) -> date:
    """A ``datetime.date`` from a date, datetime, pandas Timestamp or numpy datetime64."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError):
        raise CubeError(f"not a date: {value!r}") from None


def str_array(values: Any) -> np.ndarray:
    """A numpy unicode array from zarr's variable-length strings."""
    return np.array([str(v) for v in np.asarray(values).tolist()], dtype=str)
