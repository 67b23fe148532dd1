"""The data cube: one Zarr v3 store per deployment, written by day, read by window.

Groups ``forcing`` and ``smap`` hold (time, y, x) float32 arrays over the cube's domain window,
chunked one day by one tile, with the time axis allocated from ``start`` to ``end`` up front so
that writing a day never resizes anything. ``static`` holds (y, x) arrays and ``insitu`` one
(site, time) array plus per-site coordinates. A write lands in its region only, so rewriting a
day is idempotent and touches no other day's chunks; per-day manifests (see
:mod:`gsm3_ops.cube_manifest`) record who filled each day and flag interrupted writes.
See ``docs/cube.md``.
"""

from __future__ import annotations

import os
import shutil
import uuid
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
from gsm3_ops.cube_manifest import (
    CubeError,
    Manifests,
    checksum,
    file_lock,
    sites_extent,
    status_of,
    window_extent,
)
from gsm3_ops.grid import CRS, EaseGrid, GridError, Window, get_grid

__all__ = ["DEFAULT_END", "DEFAULT_START", "DEFAULT_TILE_SIZE", "Cube", "CubeError"]

DEFAULT_START = date(2000, 1, 1)
DEFAULT_END = date(2035, 12, 31)
DEFAULT_TILE_SIZE = 256

CUBE_FORMAT = 1
DAILY_GROUPS = ("forcing", "smap")  # (time, y, x)
GROUPS = (*DAILY_GROUPS, "static", "insitu")
SITE_CHUNK = 1024
INSITU_TIME_CHUNK = 366
# Per-site coordinates of the insitu group: dtype and fill value; ``site`` is the site id.
SITE_COORDS: dict[str, tuple[Any, Any]] = {
    "site": (str, ""),
    "lat": ("float64", np.nan),
    "lon": ("float64", np.nan),
    "row": ("int64", -1),
    "col": ("int64", -1),
    "network": (str, ""),
    "region": (str, ""),
}
_COORD_NAMES = {"time", "y", "x", *SITE_COORDS}
_OFF_GRID_TOL = 1e-4  # cells: coordinates further than this from a cell centre are off-grid


@dataclass(frozen=True)
class _Layout:
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
    def from_attrs(cls, attrs: dict[str, Any], path: Path) -> _Layout:
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

    def differences(self, other: _Layout) -> list[str]:
        """Human-readable differences from ``other`` (this one being the existing store)."""
        return [
            f"{name}: existing {getattr(self, name)} != requested {getattr(other, name)}"
            for name in ("grid", "domain", "start", "end", "tile_size")
            if getattr(self, name) != getattr(other, name)
        ]


class Cube:
    """A data cube store; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, grid: EaseGrid, layout: _Layout) -> None:
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
        layout = _Layout(grid.name, domain, _as_date(start), _as_date(end), int(tile_size))
        _check_layout(grid, layout)
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
        layout = _Layout.from_attrs(attrs, path)
        try:
            grid = get_grid(layout.grid)
        except GridError as exc:
            raise CubeError(f"cube {path}: {exc}") from None
        if not np.isclose(attrs.get("grid_cell_size", np.nan), grid.cell_size, rtol=0, atol=1e-6):
            raise CubeError(f"cube {path}: its {grid.name} cell size differs from the grid's")
        return cls(path, grid, layout)

    # ----------------------------------------------------------------- writes

    def write(self, group: str, ds: xr.Dataset, *, source: str, version: str) -> None:
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
        """
        self._check_group(group, DAILY_GROUPS)
        _check_label(source, "source")
        _check_label(version, "version")
        _check_dataset(ds)
        names = self._check_names(group, list(ds.data_vars))
        if not names:
            raise CubeError(f"nothing to write into {group!r}: the dataset has no variables")
        _check_dims(ds, names, ("time", "y", "x"))
        window, orient = self._window_of(ds)
        days = _days_of(ds)
        t_index = np.array([self._time_index(d, "day") for d in days], dtype=np.int64)
        order = np.argsort(t_index)
        days, t_index = [days[i] for i in order], t_index[order]
        rel = window.relative_to(self.domain)
        contiguous = bool(np.all(np.diff(t_index) == 1))
        t_sel = slice(int(t_index[0]), int(t_index[-1]) + 1) if contiguous else t_index
        arrays = {name: self._array(group, name, create=True) for name in names}

        paths = [self._manifests.day_path(d) for d in days]
        extent = window_extent(window.row0, window.col0, window.n_rows, window.n_cols)
        write_id = self._manifests.begin(
            paths, group=group, source=source, version=version, variables=names, extent=extent
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
        _check_label(source, "source")
        _check_label(version, "version")
        _check_dataset(ds)
        names = self._check_names("static", list(ds.data_vars))
        if not names:
            raise CubeError("nothing to write into 'static': the dataset has no variables")
        _check_dims(ds, names, ("y", "x"))
        window, orient = self._window_of(ds)
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
        """
        _check_label(source, "source")
        _check_label(version, "version")
        if not isinstance(da, xr.DataArray) or da.ndim != 2 or set(da.dims) != {"site", "time"}:
            dims = getattr(da, "dims", type(da).__name__)
            raise CubeError(f"in-situ data must be a DataArray with dims (site, time), got {dims}")
        da = da.transpose("site", "time")
        if "site" not in da.coords:
            raise CubeError("in-situ data has no 'site' coordinate (site ids)")
        sites = [str(s) for s in da["site"].values]
        if "" in sites or len(set(sites)) != len(sites):
            raise CubeError("in-situ 'site' ids must be non-empty and unique")
        days = _days_of(da)
        t_index = np.array([self._time_index(d, "day") for d in days], dtype=np.int64)
        order = np.argsort(t_index)
        days, t_index = [days[i] for i in order], t_index[order]
        contiguous = bool(np.all(np.diff(t_index) == 1))
        t_sel = slice(int(t_index[0]), int(t_index[-1]) + 1) if contiguous else t_index

        # One writer at a time: appends resize the arrays, and chunks span many days.
        with file_lock(self._manifests.root / ".insitu.lock"):
            group = self._insitu_group(mode="r+")
            n_sites = int(group.attrs["n_sites"])
            index = {s: i for i, s in enumerate(_str_array(group["site"][:n_sites]))}
            new = [s for s in sites if s not in index]
            self._check_known_sites(da, sites, index, group)
            new_coords = self._new_site_coords(da, sites, new)

            paths = [self._manifests.day_path(d) for d in days]
            write_id = self._manifests.begin(
                paths, group="insitu", source=source, version=version, variables=["insitu"],
                extent=sites_extent(sites),
            )  # fmt: skip
            if new:
                self._append_sites(group, n_sites, new_coords)
                index.update({s: n_sites + i for i, s in enumerate(new)})
            rows = np.array([index[s] for s in sites], dtype=np.int64)
            site_order = np.argsort(rows)
            values = np.asarray(da.data, dtype=np.float32)[site_order][:, order]
            try:
                group["insitu"].oindex[rows[site_order], t_sel] = values
            except Exception as exc:
                raise CubeError(
                    f"writing insitu for {days[0]}..{days[-1]} into {self.path} failed: {exc}"
                ) from exc
            sums = {path: {"insitu": checksum(values[:, i])} for i, path in enumerate(paths)}
            self._manifests.finish(sums, group="insitu", source=source, write_id=write_id)

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
        self._check_group(group, DAILY_GROUPS)
        names = self._check_names(group, self.variables(group) if variables is None else variables)
        start, end = _as_date(start), _as_date(end)
        if end < start:
            raise CubeError(f"read of {group!r}: end {end} is before start {start}")
        t0, t1 = self._time_index(start, "start"), self._time_index(end, "end") + 1
        w = self._check_window(window)
        rel = w.relative_to(self.domain)
        data_vars = {}
        for name in names:
            arr = self._array(group, name)
            if arr is None:
                values = np.full((t1 - t0, *w.shape), np.nan, dtype=np.float32)
            else:
                values = np.asarray(arr[t0:t1, rel.rows, rel.cols], dtype=np.float32)
            data_vars[name] = (("time", "y", "x"), values, _var_attrs(name))
        coords = {"time": pd.date_range(start, end, freq="D", unit="ns"), **self._xy_coords(w)}
        return xr.Dataset(data_vars, coords=coords, attrs=self._dataset_attrs(w))

    def read_static(
        self, variables: Sequence[str] | None = None, window: Window | None = None
    ) -> xr.Dataset:
        """Static variables over ``window`` (default the domain), dims (y, x); NaN if unwritten."""
        names = self._check_names(
            "static", self.variables("static") if variables is None else variables
        )
        w = self._check_window(window)
        rel = w.relative_to(self.domain)
        data_vars = {}
        for name in names:
            arr = self._array("static", name)
            if arr is None:
                values = np.full(w.shape, np.nan, dtype=np.float32)
            else:
                values = np.asarray(arr[rel.rows, rel.cols], dtype=np.float32)
            data_vars[name] = (("y", "x"), values, _var_attrs(name))
        return xr.Dataset(data_vars, coords=self._xy_coords(w), attrs=self._dataset_attrs(w))

    def read_insitu(self, start: date, end: date) -> xr.DataArray:
        """In-situ series for ``start..end``, dims (site, time), with the site coordinates."""
        start, end = _as_date(start), _as_date(end)
        if end < start:
            raise CubeError(f"read of 'insitu': end {end} is before start {start}")
        t0, t1 = self._time_index(start, "start"), self._time_index(end, "end") + 1
        group = self._insitu_group(mode="r")
        n = int(group.attrs["n_sites"])
        coords: dict[str, Any] = {
            name: ("site", _str_array(group[name][:n]) if dtype is str else group[name][:n])
            for name, (dtype, _) in SITE_COORDS.items()
        }
        coords["time"] = pd.date_range(start, end, freq="D", unit="ns")
        values = np.asarray(group["insitu"][:n, t0:t1], dtype=np.float32)
        return xr.DataArray(
            values, dims=("site", "time"), coords=coords, name="insitu",
            attrs={**_var_attrs("insitu"), "grid": self.grid.name, "cube": str(self.path)},
        )  # fmt: skip

    def variables(self, group: str) -> list[str]:
        """Variables stored in ``group`` (ever written), in registry order."""
        self._check_group(group, GROUPS)
        node = zarr.open_group(self._store, path=group, mode="r", use_consolidated=False)
        present = set(node.array_keys()) - _COORD_NAMES
        return [name for name in registry.REGISTRY if name in present]

    # ----------------------------------------------------------------- manifests

    def day_status(self, day: date) -> str:
        """``complete``, ``incomplete`` or ``missing`` over everything recorded for ``day``."""
        return status_of(self.manifest(day))

    def manifest(self, day: date) -> dict:
        """The manifest of ``day`` (an empty one, status ``missing``, if nothing was written)."""
        return self._manifests.read(self._manifests.day_path(_as_date(day)))

    def static_manifest(self) -> dict:
        """The manifest of the static group."""
        return self._manifests.read(self._manifests.static_path)

    # ----------------------------------------------------------------- helpers

    def _check_group(self, group: str, allowed: Sequence[str]) -> None:
        """CubeError unless ``group`` is one of ``allowed``."""
        if group not in allowed:
            raise CubeError(f"unknown cube group {group!r} here; expected one of {list(allowed)}")

    def _check_names(self, group: str, names: Sequence[str]) -> list[str]:
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

    def _check_window(self, window: Window | None) -> Window:
        """``window`` (default the domain); CubeError unless it lies inside the domain."""
        w = self.domain if window is None else window
        if w.n_rows <= 0 or w.n_cols <= 0 or not self.domain.contains(w):
            raise CubeError(f"window {w} is not inside the domain {self.domain} of {self.path}")
        return w

    def _time_index(self, day: date, what: str) -> int:
        """Index of ``day`` on the time axis; CubeError outside ``start..end``."""
        day = _as_date(day)
        if not self.start <= day <= self.end:
            raise CubeError(
                f"{what} {day} is outside the time axis {self.start}..{self.end} of {self.path}"
            )
        return (day - self.start).days

    def _window_of(self, ds: xr.Dataset) -> tuple[Window, dict[str, slice]]:
        """The grid window of a dataset's x/y coords, and the isel that orients it north-up."""
        axes = {}
        for dim in ("y", "x"):
            if dim not in ds.coords:
                raise CubeError(f"dataset has no {dim!r} coordinate (cell-centre metres)")
            axes[dim] = _axis_cells(self.grid, dim, ds[dim].values)
        (row0, n_rows, flip_y), (col0, n_cols, flip_x) = axes["y"], axes["x"]
        w = Window(row0, col0, n_rows, n_cols)
        if not self.grid.full.contains(w):
            raise CubeError(f"data window {w} lies outside the {self.grid.name} grid")
        if not self.domain.contains(w):
            raise CubeError(
                f"data window {w} is not inside the domain {self.domain} of {self.path}"
            )
        orient = {
            dim: slice(None, None, -1) for dim, flip in (("y", flip_y), ("x", flip_x)) if flip
        }
        return w, orient

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
                    arr = _create_data_array(self._store, key, dims, self._layout)
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

    def _insitu_group(self, mode: str) -> zarr.Group:
        """The insitu group read from its own metadata (shapes change as sites are added)."""
        return zarr.open_group(self._store, path="insitu", mode=mode, use_consolidated=False)

    def _check_known_sites(
        self, da: xr.DataArray, sites: list[str], index: dict[str, int], group: zarr.Group
    ) -> None:
        """CubeError when a site already in the cube comes with another lat/lon."""
        known = [(i, index[s]) for i, s in enumerate(sites) if s in index]
        if not known:
            return
        given_at, stored_at = (np.array(a) for a in zip(*known, strict=True))
        for name in ("lat", "lon"):
            if name not in da.coords:
                continue
            given = np.asarray(da[name].values, dtype=np.float64)[given_at]
            stored = group[name].oindex[stored_at]
            moved = ~np.isclose(given, stored, rtol=0, atol=1e-6)
            if moved.any():
                names = [sites[i] for i in given_at[moved][:5]]
                raise CubeError(f"in-situ sites {names} already in {self.path} with another {name}")

    def _new_site_coords(
        self, da: xr.DataArray, sites: list[str], new: list[str]
    ) -> dict[str, np.ndarray]:
        """Coordinates of sites new to the cube; CubeError if lat/lon are missing or outside."""
        if not new:
            return {}
        at = np.array([sites.index(s) for s in new])
        for name in ("lat", "lon"):
            if name not in da.coords or da[name].dims != ("site",):
                raise CubeError(f"new in-situ sites {new[:5]} need a {name!r} coordinate on 'site'")
        lat = np.asarray(da["lat"].values, dtype=np.float64)[at]
        lon = np.asarray(da["lon"].values, dtype=np.float64)[at]
        row, col = self.grid.lonlat_to_rowcol(lon, lat)
        d = self.domain
        outside = ~(
            np.isfinite(lat) & np.isfinite(lon)
            & (row >= d.row0) & (row < d.row0 + d.n_rows)
            & (col >= d.col0) & (col < d.col0 + d.n_cols)
        )  # fmt: skip
        if outside.any():
            names = [new[i] for i in np.flatnonzero(outside)[:5]]
            raise CubeError(f"in-situ sites {names} lie outside the domain {d} of {self.path}")
        coords = {
            "site": np.array(new, dtype=object),
            "lat": lat,
            "lon": lon,
            "row": row,
            "col": col,
        }
        for name in ("network", "region"):
            values = da[name].values[at] if name in da.coords else np.full(len(new), "")
            coords[name] = np.array([str(v) for v in values], dtype=object)
        return coords

    def _append_sites(self, group: zarr.Group, n_sites: int, coords: dict[str, np.ndarray]) -> None:
        """Grow the insitu arrays by the new sites; the ``n_sites`` attribute commits them."""
        n_total = n_sites + len(coords["site"])
        # Under the metadata lock, so no other process consolidates half an append.
        with file_lock(self._manifests.root / ".metadata.lock"):
            data = group["insitu"]
            data.resize((n_total, data.shape[1]))  # also drops rows of a killed append
            for name in SITE_COORDS:
                group[name].resize((n_total,))
                group[name][n_sites:n_total] = coords[name]
            # Readers take the first n_sites rows, so a killed append leaves no half site.
            group.update_attributes({"n_sites": n_total})
            consolidate(self._store)

    def _xy_coords(self, w: Window) -> dict[str, Any]:
        """The y/x coordinates (cell-centre metres) of a window, with CF attributes."""
        return {
            "y": ("y", self.grid.y_centres(w), _Y_ATTRS),
            "x": ("x", self.grid.x_centres(w), _X_ATTRS),
        }

    def _dataset_attrs(self, w: Window) -> dict[str, Any]:
        """Attributes of a dataset read from the cube."""
        return {
            "grid": self.grid.name,
            "crs": CRS,
            "window": window_extent(w.row0, w.col0, w.n_rows, w.n_cols),
            "cube": str(self.path),
        }


_Y_ATTRS = {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}
_X_ATTRS = {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}


def consolidate(store: LocalStore) -> None:
    """Refresh the root's consolidated metadata (read by ``xr.open_zarr``); caller holds the
    metadata lock, so concurrent refreshes cannot drop each other's new arrays."""
    with warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not (yet) in the v3 spec.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(store)


def _build_store(path: Path, grid: EaseGrid, layout: _Layout) -> None:
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
            _coord(group, "time", np.arange(n_days, dtype=np.int32), _time_attrs(layout))
        if name != "insitu":
            _coord(group, "y", grid.y_centres(d), _Y_ATTRS)
            _coord(group, "x", grid.x_centres(d), _X_ATTRS)
    insitu = root["insitu"]
    insitu.update_attributes({"n_sites": 0})  # the commit point of site appends
    for name, (dtype, fill) in SITE_COORDS.items():
        insitu.create_array(
            name, shape=(0,), chunks=(SITE_CHUNK,), dtype=dtype, fill_value=fill,
            dimension_names=("site",),
        )  # fmt: skip
    insitu.create_array(
        "insitu", shape=(0, n_days), chunks=(SITE_CHUNK, INSITU_TIME_CHUNK), dtype="float32",
        fill_value=np.nan, dimension_names=("site", "time"),
        attributes={**_var_attrs("insitu"), "coordinates": " ".join(list(SITE_COORDS)[1:])},
    )  # fmt: skip
    consolidate(store)


def _coord(group: zarr.Group, name: str, values: np.ndarray, attrs: dict[str, Any]) -> None:
    """A 1-D coordinate array in one chunk, named after its dimension."""
    arr = group.create_array(
        name, shape=values.shape, chunks=values.shape, dtype=values.dtype,
        fill_value=0, dimension_names=(name,), attributes=attrs,
    )  # fmt: skip
    arr[:] = values


def _create_data_array(
    store: LocalStore, key: str, dims: tuple[str, ...], layout: _Layout
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
        dimension_names=dims, attributes=_var_attrs(key.rsplit("/", 1)[-1]),
    )  # fmt: skip


def _time_attrs(layout: _Layout) -> dict[str, Any]:
    """CF attributes of the integer time coordinate."""
    return {
        "units": f"days since {layout.start.isoformat()}",
        "calendar": "proleptic_gregorian",
        "standard_name": "time",
        "axis": "T",
    }


def _var_attrs(name: str) -> dict[str, Any]:
    """CF-ish attributes of a data variable, from the registry."""
    v = registry.REGISTRY[name]
    return {
        "units": v.units,
        "long_name": v.long_name,
        "valid_min": v.valid_min,
        "valid_max": v.valid_max,
    }


def _check_layout(grid: EaseGrid, layout: _Layout) -> None:
    """CubeError for a layout that cannot make a cube."""
    d = layout.domain
    if d.n_rows <= 0 or d.n_cols <= 0 or not grid.full.contains(d):
        raise CubeError(f"domain {d} is empty or not inside the {grid.name} grid {grid.shape}")
    if layout.end < layout.start:
        raise CubeError(f"cube end {layout.end} is before its start {layout.start}")
    if layout.tile_size <= 0:
        raise CubeError(f"tile size must be positive, got {layout.tile_size}")


def _check_label(value: str, what: str) -> None:
    """CubeError unless a source or version label is a non-empty string without '/'."""
    if not isinstance(value, str) or not value or "/" in value:
        raise CubeError(f"{what} must be a non-empty string without '/', got {value!r}")


def _check_dataset(ds: Any) -> None:
    """CubeError unless ``ds`` is an xarray Dataset."""
    if not isinstance(ds, xr.Dataset):
        raise CubeError(f"expected an xarray Dataset, got {type(ds).__name__}")


def _check_dims(ds: xr.Dataset, names: Sequence[str], dims: tuple[str, ...]) -> None:
    """CubeError unless every variable has exactly ``dims`` (in any order)."""
    for name in names:
        if set(ds[name].dims) != set(dims) or len(ds[name].dims) != len(dims):
            raise CubeError(f"variable {name!r} has dims {ds[name].dims}; expected {dims}")


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


def _days_of(obj: xr.Dataset | xr.DataArray) -> list[date]:
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


def _as_date(value: date) -> date:
    """A ``datetime.date`` from a date, datetime, pandas Timestamp or numpy datetime64."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError):
        raise CubeError(f"not a date: {value!r}") from None


def _str_array(values: Any) -> np.ndarray:
    """A numpy unicode array from zarr's variable-length strings."""
    return np.array([str(v) for v in np.asarray(values).tolist()], dtype=str)
