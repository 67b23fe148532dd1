"""Reference products (SMAP itself, another model) sampled at the evaluation sites and days.

A reference is written ``NAME=KIND:WHERE``:

- ``SMAP=cube:smap`` or ``NAME=cube:<group>/<variable>``: a daily variable of the cube;
- ``NAME=zarr:/path/store.zarr#variable``: a Zarr store with a ``time`` axis and either
  projected ``x``/``y`` coordinates (CRS from the variable's ``grid_mapping``, EPSG:6933 when
  none) or ``lat``/``lon``; the variable defaults to ``soil_moisture``;
- ``NAME=cog:/path/folder``: one GeoTIFF per day anywhere under the folder, the date in the
  file name as ``YYYYMMDD`` or ``YYYY-MM-DD`` (as ``gsm3-ops run`` publishes them).

Each site takes the value of the pixel that contains it (nearest cell centre within one
cell); values are volumetric soil moisture, ``%`` is converted to m3/m3.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from pyproj import CRS, Transformer

from gsm3_ops.cube import Cube
from gsm3_ops.errors import UsageError
from gsm3_ops.evaluation.locations import cells_of

KINDS = ("cube", "zarr", "cog")
_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")
_PERCENT = {"%", "percent", "pct"}


class ReferenceProductError(UsageError, ValueError):
    """A reference product that cannot be read: bad spec, missing path or variable."""


@dataclass(frozen=True)
class Reference:
    """A reference product: display name, kind (cube, zarr, cog), where, and variable."""

    name: str
    kind: str
    where: str
    variable: str = ""

    def describe(self) -> str:
        """The reference as written on the command line (without the name)."""
        if self.kind == "cube":
            return (
                f"cube:{self.where}/{self.variable}" if self.variable != self.where else "cube:smap"
            )
        return f"zarr:{self.where}#{self.variable}" if self.kind == "zarr" else f"cog:{self.where}"


def parse_reference(text: str) -> Reference:
    """Parse ``NAME=KIND:WHERE`` (see the module docstring)."""
    name, eq, rest = text.partition("=")
    kind, colon, where = rest.partition(":")
    if not (eq and colon and name.strip() and where.strip()) or kind not in KINDS:
        raise ReferenceProductError(
            f"reference {text!r} is not NAME=KIND:WHERE with KIND one of {', '.join(KINDS)} "
            "(e.g. SMAP=cube:smap, ERA5L=zarr:/data/era5l.zarr#swvl1, GSM3=cog:/publish/cog)"
        )
    name, where = name.strip(), where.strip()
    if kind == "cube":
        group, _, variable = where.rpartition("/")
        return Reference(name, kind, group or where, variable)
    if kind == "zarr":
        path, _, variable = where.partition("#")
        return Reference(name, kind, path, variable or "soil_moisture")
    return Reference(name, kind, where)


def check_reference(ref: Reference, cube: Cube | None = None) -> None:
    """Raise :class:`ReferenceProductError` when the reference cannot be read at all."""
    if ref.kind == "cube":
        if cube is None:
            raise ReferenceProductError(f"reference {ref.name}: no cube to read {ref.where} from")
        if ref.where not in ("forcing", "smap"):
            raise ReferenceProductError(
                f"reference {ref.name}: cube group {ref.where!r} is not a daily group "
                "(use cube:smap or cube:forcing/<variable>)"
            )
        variable = ref.variable or ref.where
        if variable not in cube.variables(ref.where):
            raise ReferenceProductError(
                f"reference {ref.name}: the cube {cube.path} has no {ref.where}/{variable}"
            )
    elif ref.kind == "zarr":
        _open_zarr(ref)
    elif not _cog_files(ref):
        raise ReferenceProductError(
            f"reference {ref.name}: no GeoTIFF with a date in its name under {ref.where}"
        )


def reference_series(
    ref: Reference, sites: pd.DataFrame, start: dt.date, end: dt.date, cube: Cube | None = None
) -> np.ndarray:
    """The reference's series (time, sites) for ``start..end``, NaN where it has no value."""
    check_reference(ref, cube)
    if ref.kind == "cube":
        assert cube is not None  # checked above
        variable = ref.variable or ref.where
        cells = cells_of(sites, cube.domain)
        values = cube.read(ref.where, [variable], start, end)[variable].values
        return np.asarray(values, dtype=np.float64)[:, cells.rows, cells.cols]
    days = pd.date_range(start, end, freq="D")
    if ref.kind == "zarr":
        return _zarr_series(ref, sites, days)
    return _cog_series(ref, sites, days)


def _open_zarr(ref: Reference) -> xr.DataArray:
    path = Path(ref.where)
    if not path.exists():
        raise ReferenceProductError(f"reference {ref.name}: Zarr store {path} does not exist")
    try:
        ds = xr.open_zarr(path, consolidated=None, decode_timedelta=False)
    except Exception as exc:  # zarr raises many types for a store it cannot read
        raise ReferenceProductError(
            f"reference {ref.name}: cannot open {path} as Zarr: {exc}"
        ) from None
    if ref.variable not in ds.data_vars:
        raise ReferenceProductError(
            f"reference {ref.name}: {path} has no variable {ref.variable!r} "
            f"(it has {', '.join(map(str, ds.data_vars)) or 'none'}); name it after '#'"
        )
    da = ds[ref.variable]
    if "time" not in da.dims:
        raise ReferenceProductError(f"reference {ref.name}: {path}:{ref.variable} has no time axis")
    if da.attrs.get("grid_mapping") in ds:
        da = da.assign_attrs(_crs=ds[da.attrs["grid_mapping"]].attrs.get("crs_wkt", ""))
    return da


def _scale(units: str) -> float:
    return 0.01 if units.strip().lower() in _PERCENT else 1.0


def _nearest(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest axis point, -1 where farther than one spacing (off the grid)."""
    axis = np.asarray(axis, dtype=float)
    order = np.argsort(axis)
    pos = np.clip(np.searchsorted(axis[order], values), 1, axis.size - 1)
    lo, hi = axis[order][pos - 1], axis[order][pos]
    pick = np.where(np.abs(values - lo) <= np.abs(values - hi), pos - 1, pos)
    idx = order[pick]
    spacing = np.median(np.abs(np.diff(axis))) if axis.size > 1 else np.inf
    return np.where(np.abs(axis[idx] - values) <= 0.5 * spacing * 1.001, idx, -1)


def _zarr_series(ref: Reference, sites: pd.DataFrame, days: pd.DatetimeIndex) -> np.ndarray:
    da = _open_zarr(ref)
    lon, lat = sites["lon"].to_numpy(float), sites["lat"].to_numpy(float)
    if "x" in da.dims and "y" in da.dims:
        crs = CRS.from_wkt(da.attrs["_crs"]) if da.attrs.get("_crs") else CRS.from_epsg(6933)
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        ix, iy, dims = _nearest(da["x"].values, x), _nearest(da["y"].values, y), ("y", "x")
    else:
        names = {d.lower(): d for d in da.dims}
        lat_dim = names.get("lat", names.get("latitude"))
        lon_dim = names.get("lon", names.get("longitude"))
        if lat_dim is None or lon_dim is None:
            raise ReferenceProductError(
                f"reference {ref.name}: {ref.where}:{ref.variable} needs x/y or lat/lon "
                f"dimensions, it has {da.dims}"
            )
        ix, iy = _nearest(da[lon_dim].values, lon), _nearest(da[lat_dim].values, lat)
        dims = (lat_dim, lon_dim)
    times = pd.DatetimeIndex(da["time"].values).normalize()
    t_at = times.get_indexer(days)
    out = np.full((days.size, len(sites)), np.nan)
    inside = (ix >= 0) & (iy >= 0)
    have = t_at >= 0
    if inside.any() and have.any():
        pick = da.transpose("time", *dims).isel(
            time=xr.DataArray(t_at[have], dims="t"),
        )
        points = pick.isel(
            {
                dims[0]: xr.DataArray(iy[inside], dims="s"),
                dims[1]: xr.DataArray(ix[inside], dims="s"),
            }
        )
        values = np.asarray(points.transpose("t", "s").values, dtype=np.float64)
        out[np.ix_(have, inside)] = values * _scale(str(da.attrs.get("units", "")))
    return out


def _cog_files(ref: Reference) -> dict[pd.Timestamp, Path]:
    root = Path(ref.where)
    if not root.is_dir():
        raise ReferenceProductError(f"reference {ref.name}: COG folder {root} does not exist")
    files = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".tif", ".tiff") or path.name.startswith("."):
            continue
        m = _DATE.search(path.name)
        if m:
            try:
                files[pd.Timestamp(dt.date(*map(int, m.groups())))] = path
            except ValueError:
                continue  # eight digits that are not a date
    return files


def _cog_series(ref: Reference, sites: pd.DataFrame, days: pd.DatetimeIndex) -> np.ndarray:
    files = _cog_files(ref)
    out = np.full((days.size, len(sites)), np.nan)
    lon, lat = sites["lon"].to_numpy(float), sites["lat"].to_numpy(float)
    for t, day in enumerate(days):
        path = files.get(day)
        if path is None:
            continue
        with rasterio.open(path) as src:
            x, y = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True).transform(lon, lat)
            rows, cols = rasterio.transform.rowcol(src.transform, x, y)
            rows, cols = np.asarray(rows), np.asarray(cols)
            inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
            if not inside.any():
                continue
            band = src.read(1, masked=True).astype(np.float64).filled(np.nan)
            scale = _scale(str(src.tags(1).get("units", src.tags().get("units", ""))))
            out[t, inside] = band[rows[inside], cols[inside]] * scale
    return out
