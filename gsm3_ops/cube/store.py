"""The data cube: one Zarr v3 store per deployment, written by day, read by window.

Groups ``forcing`` and ``smap`` hold (time, y, x) float32 arrays over the cube's domain window,
chunked one day by one tile, with the time axis allocated from ``start`` to ``end`` up front so
that writing a day never resizes anything. ``static`` holds (y, x) arrays and ``insitu`` one
(site, time) array plus per-site coordinates. A write lands in its region only, so rewriting a
day is idempotent and touches no other day's chunks; per-day manifests (see
:mod:`gsm3_ops.cube.manifest`) record who filled each day and flag interrupted writes.
See ``docs/cube.md``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.storage import LocalStore

from gsm3_ops import variables as registry
from gsm3_ops.config import CubeConfig
from gsm3_ops.cube.insitu import SITE_COORDS, InsituGroup, create_insitu_arrays
from gsm3_ops.cube.layout import (
    CUBE_FORMAT,
    X_ATTRS,
    Y_ATTRS,
    Layout,
    as_date,
    check_dataset,
    check_dims,
    check_group,
    check_label,
    check_layout,
    check_names,
    check_window,
    consolidate,
    create_coord,
    create_data_array,
    days_of,
    time_attrs,
    time_index,
    var_attrs,
    window_of,
)
from gsm3_ops.cube.manifest import (
    CubeError,
    Manifests,
    checksum,
    file_lock,
    status_of,
    window_extent,
)
from gsm3_ops.grid import CRS, EaseGrid, GridError, Window, get_grid

__all__ = ["DEFAULT_END", "DEFAULT_START", "DEFAULT_TILE_SIZE", "Cube"]

# The pre-allocated time axis of a cube created without dates: config.CubeConfig's defaults.
DEFAULT_START: date = CubeConfig().start
DEFAULT_END: date = CubeConfig().end
DEFAULT_TILE_SIZE = 256

DAILY_GROUPS = ("forcing", "smap")  # (time, y, x)
GROUPS = (*DAILY_GROUPS, "static", "insitu")
_COORD_NAMES = {"time", "y", "x", *SITE_COORDS}


class Cube:
    """A data cube store; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, grid: EaseGrid, layout: Layout) -> None:
        self.path = path
        self.grid = grid
        self.domain = layout.domain
        self.start = layout.start
        self.end = layout.end
        self.tile_size = layout.tile_size
        self._layout = layout
        self._store = LocalStore(path)
        self._manifests = Manifests(path.parent / "manifests" / "cube", path)
        self._arrays: dict[str, zarr.Array] = {}  # fixed-shape arrays only; insitu resizes
        self._insitu = InsituGroup(path, grid, layout, self._store, self._manifests)

    def __repr__(self) -> str:
        return (
            f"Cube({str(self.path)!r}, grid={self.grid.name}, domain={self.domain}, "
            f"{self.start}..{self.end}, tile_size={self.tile_size})"
        )

    @property
    def n_days(self) -> int:
        """Length of the time axis."""
        return (self.end - self.start).days + 1

    # ----------------------------------------------------------------- create / open

    @classmethod
    def create(
        cls,
        path: Path,
        grid: EaseGrid,
        domain: Window,
        start: date = DEFAULT_START,
        end: date = DEFAULT_END,
        tile_size: int = DEFAULT_TILE_SIZE,
    ) -> Cube:
        """Create a cube at ``path``, or open the one there if its layout is the same.

        Raises CubeError naming each difference when a cube with another layout is there.
        """
        path = Path(path)
        layout = Layout(grid.name, domain, as_date(start), as_date(end), int(tile_size))
        check_layout(grid, layout)
        manifests_root = path.parent / "manifests" / "cube"
        with file_lock(manifests_root / ".metadata.lock"):
            if (path / "zarr.json").exists():
                cube = cls.open(path)
                diffs = cube._layout.differences(layout)
                if diffs:
                    raise CubeError(f"cube {path} exists with another layout: " + "; ".join(diffs))
                return cube
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise CubeError(f"cannot create a cube at {path}: it exists and is not a cube")
            # Build beside the target and rename, so a killed create leaves no half cube.
            tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex}")
            try:
                _build_store(tmp, grid, layout)
                if path.exists():
                    path.rmdir()
                os.rename(tmp, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> Cube:
        """Open the cube at ``path``; CubeError if there is none."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise CubeError(f"no cube at {path} (no zarr.json there)")
        try:
            root = zarr.open_group(LocalStore(path, read_only=True), mode="r")
        except (OSError, ValueError) as exc:
            raise CubeError(f"cannot open cube {path}: {exc}") from None
        attrs = dict(root.attrs)
        if attrs.get("gsm3_cube_format") != CUBE_FORMAT:
            raise CubeError(
                f"{path} is a Zarr store but not a gsm3 cube of format {CUBE_FORMAT} "
                f"(gsm3_cube_format={attrs.get('gsm3_cube_format')!r})"
            )
        layout = Layout.from_attrs(attrs, path)
        try:
            grid = get_grid(layout.grid)
        except GridError as exc:
            raise CubeError(f"cube {path}: {exc}") from None
        if not np.isclose(attrs.get("grid_cell_size", np.nan), grid.cell_size, rtol=0, atol=1e-6):
            raise CubeError(f"cube {path}: its {grid.name} cell size differs from the grid's")
        return cls(path, grid, layout)

    # ----------------------------------------------------------------- writes

    def write(
        self,
        group: str,
        ds: xr.Dataset,
        *,
        source: str,
        version: str,
        notes: Sequence[str] = (),
    ) -> None:
        """Write (time, y, x) variables into their day regions of ``group`` (forcing or smap).

        Parameters
        ----------
        group
            ``"forcing"`` or ``"smap"``.
        ds
            Variables with dims (time, y, x); coords ``time`` (daily), ``y`` and ``x`` (cell
            centres of the grid, a window inside the domain, either orientation).
        source, version
            Recorded in each day's manifest (e.g. ``era5_land``, ``ERA5T``).
        notes
            Also recorded, e.g. ``filled:climatology`` when a source filled a missing day.
        """
        check_group(group, DAILY_GROUPS)
        check_label(source, "source")
        check_label(version, "version")
        check_dataset(ds)
        names = check_names(group, list(ds.data_vars))
        if not names:
            raise CubeError(f"nothing to write into {group!r}: the dataset has no variables")
        check_dims(ds, names, ("time", "y", "x"))
        window, orient = window_of(self.grid, self.domain, ds, self.path)
        days = days_of(ds)
        t_index = np.array(
            [time_index(self._layout, d, "day", self.path) for d in days], dtype=np.int64
        )
        order = np.argsort(t_index)
        days, t_index = [days[i] for i in order], t_index[order]
        rel = window.relative_to(self.domain)
        contiguous = bool(np.all(np.diff(t_index) == 1))
        t_sel = slice(int(t_index[0]), int(t_index[-1]) + 1) if contiguous else t_index
        arrays = {name: self._array(group, name, create=True) for name in names}

        paths = [self._manifests.day_path(d) for d in days]
        extent = window_extent(window.row0, window.col0, window.n_rows, window.n_cols)
        write_id = self._manifests.begin(
            paths,
            group=group,
            source=source,
            version=version,
            variables=names,
            extent=extent,
            notes=notes,
        )
        sums: dict[Path, dict[str, str]] = {p: {} for p in paths}
        for name in names:
            # Materialise one variable at a time (it may be dask-backed) to bound memory.
            values = np.asarray(
                ds[name].transpose("time", "y", "x").isel(orient).data, dtype=np.float32
            )[order]
            selection = (t_sel, rel.rows, rel.cols)
            try:
                # One region write for the whole block of days.
                if contiguous:
                    arrays[name][selection] = values
                else:
                    arrays[name].oindex[selection] = values
            except Exception as exc:
                raise CubeError(
                    f"writing {group}/{name} for {days[0]}..{days[-1]} into {self.path} "
                    f"failed: {exc}"
                ) from exc
            for i, path in enumerate(paths):
                sums[path][name] = checksum(values[i])
        self._manifests.finish(sums, group=group, source=source, write_id=write_id)

    def write_static(self, ds: xr.Dataset, *, source: str, version: str) -> None:
        """Write (y, x) static variables into their region of the ``static`` group."""
        check_label(source, "source")
        check_label(version, "version")
        check_dataset(ds)
        names = check_names("static", list(ds.data_vars))
        if not names:
            raise CubeError("nothing to write into 'static': the dataset has no variables")
        check_dims(ds, names, ("y", "x"))
        window, orient = window_of(self.grid, self.domain, ds, self.path)
        rel = window.relative_to(self.domain)
        arrays = {name: self._array("static", name, create=True) for name in names}
        path = self._manifests.static_path
        extent = window_extent(window.row0, window.col0, window.n_rows, window.n_cols)
        write_id = self._manifests.begin(
            [path], group="static", source=source, version=version, variables=names, extent=extent
        )
        sums: dict[str, str] = {}
        for name in names:
            values = np.asarray(ds[name].transpose("y", "x").isel(orient).data, dtype=np.float32)
            arrays[name][rel.rows, rel.cols] = values
            sums[name] = checksum(values)
        self._manifests.finish({path: sums}, group="static", source=source, write_id=write_id)

    def write_insitu(self, da: xr.DataArray, *, source: str, version: str) -> None:
        """Write in-situ series, dims (site, time): new sites are appended, existing overwritten.

        ``da`` needs a ``site`` coordinate (string ids) and, for sites new to the cube, ``lat``
        and ``lon`` coordinates along ``site`` (degrees); ``network`` and ``region`` are
        optional. ``row``/``col`` are derived from lat/lon and must fall inside the domain.
        See :mod:`gsm3_ops.cube.insitu`.
        """
        self._insitu.write(da, source=source, version=version)

    # ----------------------------------------------------------------- reads

    def read(
        self,
        group: str,
        variables: Sequence[str] | None,
        start: date,
        end: date,
        window: Window | None = None,
    ) -> xr.Dataset:
        """Variables of ``group`` for ``start..end`` over ``window`` (default the domain);
        dims (time, y, x), float32, NaN where nothing was written. ``None``: all variables."""
        check_group(group, DAILY_GROUPS)
        names = check_names(group, self.variables(group) if variables is None else variables)
        start, end = as_date(start), as_date(end)
        if end < start:
            raise CubeError(f"read of {group!r}: end {end} is before start {start}")
        t0 = time_index(self._layout, start, "start", self.path)
        t1 = time_index(self._layout, end, "end", self.path) + 1
        w = check_window(self.domain, window, self.path)
        rel = w.relative_to(self.domain)
        data_vars = {}
        for name in names:
            arr = self._array(group, name)
            if arr is None:
                values = np.full((t1 - t0, *w.shape), np.nan, dtype=np.float32)
            else:
                values = np.asarray(arr[t0:t1, rel.rows, rel.cols], dtype=np.float32)
            data_vars[name] = (("time", "y", "x"), values, var_attrs(name))
        coords = {"time": pd.date_range(start, end, freq="D", unit="ns"), **self._xy_coords(w)}
        return xr.Dataset(data_vars, coords=coords, attrs=self._dataset_attrs(w))

    def read_static(
        self, variables: Sequence[str] | None = None, window: Window | None = None
    ) -> xr.Dataset:
        """Static variables over ``window`` (default the domain), dims (y, x); NaN if unwritten."""
        names = check_names("static", self.variables("static") if variables is None else variables)
        w = check_window(self.domain, window, self.path)
        rel = w.relative_to(self.domain)
        data_vars = {}
        for name in names:
            arr = self._array("static", name)
            if arr is None:
                values = np.full(w.shape, np.nan, dtype=np.float32)
            else:
                values = np.asarray(arr[rel.rows, rel.cols], dtype=np.float32)
            data_vars[name] = (("y", "x"), values, var_attrs(name))
        return xr.Dataset(data_vars, coords=self._xy_coords(w), attrs=self._dataset_attrs(w))

    def read_insitu(self, start: date, end: date) -> xr.DataArray:
        """In-situ series for ``start..end``, dims (site, time), with the site coordinates."""
        return self._insitu.read(start, end)

    def read_insitu_values(self, start: date, end: date) -> tuple[np.ndarray, np.ndarray]:
        """The in-situ values (site, time) of ``start..end``, NaN in chunks that no longer
        decode, and the mask of those (what ``verify_insitu`` reads)."""
        return self._insitu.read_values(start, end)

    def variables(self, group: str) -> list[str]:
        """Variables stored in ``group`` (ever written), in registry order."""
        check_group(group, GROUPS)
        node = zarr.open_group(self._store, path=group, mode="r", use_consolidated=False)
        present = set(node.array_keys()) - _COORD_NAMES
        return [name for name in registry.REGISTRY if name in present]

    # ----------------------------------------------------------------- manifests

    def day_status(self, day: date) -> str:
        """``complete``, ``incomplete`` or ``missing`` over everything recorded for ``day``."""
        return status_of(self.manifest(day))

    def manifest(self, day: date) -> dict:
        """The manifest of ``day`` (an empty one, status ``missing``, if nothing was written)."""
        return self._manifests.read(self._manifests.day_path(as_date(day)))

    def record_failure(
        self, day: date, *, group: str, source: str, version: str, error: str
    ) -> None:
        """Note in ``day``'s manifest that ``source`` failed to fill ``group``; data untouched."""
        check_group(group, (*DAILY_GROUPS, "insitu"))
        self._manifests.fail(
            self._manifests.day_path(as_date(day)),
            group=group,
            source=source,
            version=version,
            error=error,
        )

    def static_manifest(self) -> dict:
        """The manifest of the static group."""
        return self._manifests.read(self._manifests.static_path)

    # ----------------------------------------------------------------- helpers

    def _array(self, group: str, name: str, *, create: bool = False) -> zarr.Array | None:
        """The array ``group/name``: None if absent, or created (and metadata consolidated)."""
        key = f"{group}/{name}"
        if key in self._arrays:
            return self._arrays[key]
        arr = self._open_array(key)
        if arr is None and create:
            with file_lock(self._manifests.root / ".metadata.lock"):
                arr = self._open_array(key)  # another process may have just created it
                if arr is None:
                    dims = ("y", "x") if group == "static" else ("time", "y", "x")
                    arr = create_data_array(self._store, key, dims, self._layout)
                    consolidate(self._store)
        if arr is not None:
            self._arrays[key] = arr
        return arr

    def _open_array(self, key: str) -> zarr.Array | None:
        """The array at ``key`` read from its own metadata (never the consolidated copy)."""
        try:
            return zarr.open_array(self._store, path=key, mode="r+")
        except FileNotFoundError:
            return None

    def _xy_coords(self, w: Window) -> dict[str, Any]:
        """The y/x coordinates (cell-centre metres) of a window, with CF attributes."""
        return {
            "y": ("y", self.grid.y_centres(w), Y_ATTRS),
            "x": ("x", self.grid.x_centres(w), X_ATTRS),
        }

    def _dataset_attrs(self, w: Window) -> dict[str, Any]:
        """Attributes of a dataset read from the cube."""
        return {
            "grid": self.grid.name,
            "crs": CRS,
            "window": window_extent(w.row0, w.col0, w.n_rows, w.n_cols),
            "cube": str(self.path),
        }


def _build_store(path: Path, grid: EaseGrid, layout: Layout) -> None:
    """Write an empty cube (groups, coordinates, no data) to a new folder ``path``."""
    store = LocalStore(path)
    root = zarr.open_group(store, mode="w-", attributes=layout.attrs(grid))
    d = layout.domain
    n_days = (layout.end - layout.start).days + 1
    descriptions = {
        "forcing": "daily forcings (time, y, x), one array per registry variable",
        "smap": "SMAP target soil moisture (time, y, x)",
        "static": "static predictors (y, x), one array per registry variable",
        "insitu": "in-situ target soil moisture (site, time) with site coordinates",
    }
    for name in GROUPS:
        group = root.create_group(name, attributes={"description": descriptions[name]})
        if name != "static":
            create_coord(group, "time", np.arange(n_days, dtype=np.int32), time_attrs(layout))
        if name != "insitu":
            create_coord(group, "y", grid.y_centres(d), Y_ATTRS)
            create_coord(group, "x", grid.x_centres(d), X_ATTRS)
    create_insitu_arrays(root["insitu"], n_days)
    consolidate(store)
