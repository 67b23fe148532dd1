"""The product Zarr ``<publish_root>/gsm3.zarr``: daily layers on (time, y, x), CF-1.8 + ACDD.

A Zarr v2 store with consolidated metadata (``publish/zarr2.py``), which GDAL, QGIS and
xarray open. Chunks are one day by ``chunk`` x ``chunk`` cells, for map access. The time axis
runs daily from the first published day to the latest (a day between them not published is
no-data and absent from ``days.json``): a later day is appended, an earlier one rebases the
store (its chunk files hard-linked one folder further along the time axis). Every layer has
2-D ``lat``/``lon`` auxiliary coordinates. A day is written without touching the store in
place: its layers go to a one-day staging store with the product's own array metadata, and
at commit time (under the publication lock) its chunk files are renamed onto the day's chunk
keys, and grown metadata, time chunks and ``.zmetadata`` (last) replace the old ones, all
through an :class:`~gsm3_ops.publish.atomic.Transaction`. A failed or interrupted write
therefore leaves the previous store exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from pyproj import CRS

from gsm3_ops.errors import InputError
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.publish import zarr2
from gsm3_ops.publish.atomic import Transaction, publish_lock, recover
from gsm3_ops.publish.layers import LAYERS

STORE_NAME = "gsm3.zarr"
TIME_CHUNK = 512  # time-coordinate values per chunk
DEPTH_BOUNDS = (0.0, 0.05)  # m: the 0-5 cm layer


class ProductStoreError(InputError, ValueError):
    """The product store does not match the deployment, or a layer does not match the store."""


def product_path(root: Path) -> Path:
    """``<root>/gsm3.zarr``."""
    return Path(root) / STORE_NAME


def grid_mapping() -> xr.DataArray:
    """The CF grid-mapping variable of EPSG:6933 (attributes from pyproj, with ``crs_wkt``)."""
    crs = CRS.from_epsg(6933)
    return xr.DataArray(np.int32(0), attrs={**crs.to_cf(), "crs_wkt": crs.to_wkt()})


def template(
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    chunks: tuple[int, int, int],
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """The empty product (a zero-length time axis): every layer, coordinate and attribute.

    ``chunks`` is (days, rows, columns) per chunk; ``attrs`` adds to the global attributes
    (ACDD: licence, version, summary ...)."""
    chunks = (chunks[0], min(chunks[1], window.n_rows), min(chunks[2], window.n_cols))
    wkt = CRS.from_epsg(6933).to_wkt()
    data = {}
    for name, layer in LAYERS.items():
        empty = da.full((0, *window.shape), layer.nodata, dtype=layer.dtype, chunks=chunks)
        var_attrs = {
            **layer.cf_attrs(),
            "grid_mapping": "crs",
            "coordinates": "lat lon depth",
            # GDAL's own CRS attribute: its Zarr driver does not read grid_mapping
            "_CRS": {"url": "http://www.opengis.net/def/crs/EPSG/0/6933", "wkt": wkt},
        }
        if name == "soil_moisture":
            var_attrs["ancillary_variables"] = "soil_moisture_sd quality_flag"
        data[name] = xr.DataArray(empty, dims=("time", "y", "x"), attrs=var_attrs)
        data[name].encoding["chunks"] = chunks  # a zero-length axis has no dask chunk size
    lon, lat = grid.lonlat(window)
    depth_attrs = {
        "standard_name": "depth",
        "long_name": "depth below the surface, centre of the 0-5 cm layer",
        "units": "m",
        "positive": "down",
        "axis": "Z",
        "bounds": "depth_bnds",
    }
    lat_attrs = {"standard_name": "latitude", "units": "degrees_north", "long_name": "latitude"}
    lon_attrs = {"standard_name": "longitude", "units": "degrees_east", "long_name": "longitude"}
    return xr.Dataset(
        data,
        coords={
            "time": ("time", pd.DatetimeIndex([]), {"standard_name": "time", "axis": "T"}),
            "y": ("y", grid.y_centres(window), _axis_attrs("y")),
            "x": ("x", grid.x_centres(window), _axis_attrs("x")),
            "lat": (("y", "x"), lat.astype(np.float32), lat_attrs),
            "lon": (("y", "x"), lon.astype(np.float32), lon_attrs),
            "depth": ((), float(np.mean(DEPTH_BOUNDS)), depth_attrs),
            "depth_bnds": (("nv",), np.array(DEPTH_BOUNDS)),
            "crs": grid_mapping(),
        },
        attrs={
            "Conventions": "CF-1.8, ACDD-1.3",
            "title": "gsm3-ops daily surface soil moisture (0-5 cm) on EASE-Grid 2.0",
            "summary": (
                "Daily volumetric soil moisture of the 0-5 cm layer on the 9 km EASE-Grid 2.0, "
                "predicted by an ensemble of multitask LSTMs trained on SMAP and in-situ "
                "stations (GSM3), with its ensemble spread, anomaly, percentile and quality flag."
            ),
            "keywords": "soil moisture, SMAP, ISMN, LSTM, EASE-Grid 2.0, drought, agriculture",
            "institution": "gsm3-ops",
            "source": "GSM3 multitask LSTM ensemble (Liu et al. 2023)",
            "references": "Liu et al. 2023, Geosci. Model Dev. 16:1553 (GSM3)",
            "product_start": start.isoformat(),
            "geospatial_lat_min": float(np.min(lat)),
            "geospatial_lat_max": float(np.max(lat)),
            "geospatial_lon_min": float(np.min(lon)),
            "geospatial_lon_max": float(np.max(lon)),
            "geospatial_lat_units": "degrees_north",
            "geospatial_lon_units": "degrees_east",
            "time_coverage_resolution": "P1D",
            "date_created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **(attrs or {}),
        },
    )


def _axis_attrs(axis: str) -> dict[str, str]:
    return {
        "standard_name": f"projection_{axis}_coordinate",
        "units": "m",
        "axis": axis.upper(),
        "long_name": f"{axis} of the EASE-Grid 2.0 cell centre",
    }


def encoding(ds: xr.Dataset, start: dt.date) -> dict[str, dict]:
    """The Zarr encoding of a published store built from :func:`template`."""
    enc: dict[str, dict] = {
        name: zarr2.encoding() for name in ds.variables if name not in ("time", *LAYERS)
    }
    enc["time"] = {
        **zarr2.encoding(),
        "units": f"days since {start.isoformat()}",
        "calendar": "proleptic_gregorian",
        "dtype": "int32",
        "chunks": (TIME_CHUNK,),
    }
    for name, layer in LAYERS.items():
        # _FillValue is the CF attribute and the Zarr fill value: what a chunk never written
        # (a day not published) reads as, and the value zarr does not store a chunk of.
        enc[name] = {**zarr2.encoding(), "chunks": ds[name].encoding["chunks"],
                     "_FillValue": layer.nodata}  # fmt: skip
    return enc


def create_store(path: Path, ds: xr.Dataset, start: dt.date) -> None:
    """Write the empty ``ds`` (from :func:`template`) at ``path`` atomically (a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.creating")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ds.to_zarr(tmp, mode="w-", zarr_format=2, consolidated=True,
                   encoding=encoding(ds, start))  # fmt: skip
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_store(
    path: Path,
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    chunk: int,
    attrs: dict[str, Any] | None = None,
) -> None:
    """Create the empty product at ``path`` if absent (atomically), else check it matches.

    Call under the publication lock. Raises :class:`ProductStoreError` on a mismatch.
    """
    path = Path(path)
    if path.exists():
        check_store(path, grid, window, start)
        return
    create_store(path, template(grid, window, start, (1, chunk, chunk), attrs), start)


def check_store(path: Path, grid: EaseGrid, window: Window, start: dt.date) -> None:
    """Raise :class:`ProductStoreError` unless the store covers ``window`` from ``start``."""
    if not zarr2.is_v2(path):
        raise ProductStoreError(
            f"{path} is not a Zarr v2 product store (an earlier gsm3-ops wrote Zarr v3): move "
            "it aside and republish the days with `gsm3-ops backfill --force`"
        )
    with xr.open_zarr(path, consolidated=True, decode_times=False) as ds:
        units = ds["time"].attrs.get("units")
        if ds.sizes["y"] != window.n_rows or ds.sizes["x"] != window.n_cols:
            raise ProductStoreError(
                f"product {path} covers {ds.sizes['y']} x {ds.sizes['x']} cells, but the "
                f"deployment's domain is {window.n_rows} x {window.n_cols}"
            )
        if not np.allclose(ds["x"].values, grid.x_centres(window)) or not np.allclose(
            ds["y"].values, grid.y_centres(window)
        ):
            raise ProductStoreError(f"product {path} is on another window of the grid")
        missing = [name for name in LAYERS if name not in ds]
    if units != f"days since {start.isoformat()}":
        raise ProductStoreError(
            f"product {path} has time units {units!r}, not days since {start} (product.start)"
        )
    if missing:
        raise ProductStoreError(f"product {path} lacks the layers {missing}")


def time_length(path: Path) -> int:
    """Days on the product's time axis."""
    return int(zarr2.meta(path, "time")["shape"][0])


def time_span(path: Path) -> tuple[dt.date | None, int]:
    """The first day on the time axis (None while it is empty) and the axis' length."""
    n = time_length(path)
    first = zarr2.attrs(path).get("time_coverage_start")
    return (dt.date.fromisoformat(first) if n and first else None), n


def day_index(start: dt.date, day: dt.date) -> int:
    """Days from the product's start to ``day``; ProductStoreError before the start."""
    if day < start:
        raise ProductStoreError(f"{day} is before the product's start date {start}")
    return (day - start).days


@dataclass(frozen=True)
class Placement:
    """Where a day goes on the time axis: its ``index`` on the axis as it will be, the axis'
    new ``first`` day and ``length``, the ``old_length``, and ``shift``, the days the stored
    days move along the axis (positive when the day comes before the first day)."""

    index: int
    first: dt.date
    length: int
    old_length: int
    shift: int

    def days(self) -> list[dt.date]:
        """Every day on the new axis."""
        return [self.first + dt.timedelta(days=i) for i in range(self.length)]


def place(path: Path, day: dt.date, start: dt.date) -> Placement:
    """Where ``day`` goes on the product's time axis."""
    day_index(start, day)
    first, n = time_span(path)
    if first is None:
        return Placement(0, day, 1, n, 0)
    if day < first:
        shift = (first - day).days
        return Placement(0, day, n + shift, n, shift)
    index = (day - first).days
    return Placement(index, first, max(n, index + 1), n, 0)


def time_values(placement: Placement, start: dt.date) -> np.ndarray:
    """The time coordinate (days since ``start``) of the axis after ``placement``."""
    return (placement.first - start).days + np.arange(placement.length, dtype=np.int32)


def coverage_attrs(path: Path, placement: Placement) -> dict[str, Any]:
    """The store's global attributes with the time coverage after ``placement``."""
    last = placement.first + dt.timedelta(days=placement.length - 1)
    return {
        **zarr2.attrs(path),
        "time_coverage_start": placement.first.isoformat(),
        "time_coverage_end": last.isoformat(),
        "date_modified": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def stage_layers(path: Path, stage_dir: Path, layers: dict[str, np.ndarray]) -> Path:
    """Write one day's ``layers`` into a one-day store under ``stage_dir`` with the product's
    own array metadata (so its chunk files are byte-compatible). Layers not given are
    left empty (no-data). Returns the staged store."""
    path, staged = Path(path), Path(stage_dir) / "day.zarr"
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise ProductStoreError(f"unknown product layers {sorted(unknown)}")
    for name, layer in LAYERS.items():
        meta = zarr2.meta(path, name)
        shape = tuple(meta["shape"][1:])
        value = layers.get(name)
        if value is None:
            value = layer.empty(shape)
        value = np.asarray(value)
        if value.shape != shape:
            raise ProductStoreError(f"layer {name} has shape {value.shape}, product has {shape}")
        if layer.is_flag and value.dtype != np.uint8:
            raise ProductStoreError(f"layer {name} must be uint8, got {value.dtype}")
        arr = zarr2.staged_array(staged, name, {**meta, "shape": [1, *shape]})
        arr[0] = value.astype(layer.dtype, copy=False)
    return staged


def plan_day(tx: Transaction, path: Path, staged: Path, day: dt.date, start: dt.date) -> Placement:
    """Add to ``tx`` the moves that put the staged day into the product (under the lock).

    The day's chunk files replace the stored ones (a chunk the new day leaves empty is
    removed); when the day lies past the end of the time axis, grown ``.zarray`` files and
    time chunks follow; ``.zmetadata`` comes last. A day before the first rebases the store.
    """
    path = Path(path)
    placement = place(path, day, start)
    for name in LAYERS:
        if {**zarr2.meta(path, name), "shape": None} != {**zarr2.meta(staged, name),
                                                         "shape": None}:  # fmt: skip
            raise ProductStoreError(f"{path}/{name} changed its encoding while {day} was staged")
    if placement.shift:
        tx.replace(path, _rebased(tx, path, staged, placement, start))
        return placement
    for name in LAYERS:
        meta = zarr2.meta(path, name)
        for i, j in zarr2.spatial_chunks(meta):
            zarr2.plan_file(tx, path / name / zarr2.chunk_key(meta, (placement.index, i, j)),
                            staged / name / zarr2.chunk_key(meta, (0, i, j)))  # fmt: skip
    if placement.length > placement.old_length:
        zarr2.plan_time_axis(tx, path, time_values(placement, start), placement.old_length,
                             tx.dir / "grow")  # fmt: skip
    zarr2.plan_consolidated(tx, path, coverage_attrs(path, placement))
    return placement


def _rebased(tx: Transaction, path: Path, staged: Path, placement: Placement,
             start: dt.date) -> Path:  # fmt: skip
    """A copy of the store with the day first and every stored day ``shift`` days further
    along the axis: chunk files hard-linked (no data copied), metadata written anew."""
    new = tx.dir / "rebased" / path.name
    new.mkdir(parents=True)
    shutil.copy2(path / ".zgroup", new / ".zgroup")
    for name in zarr2.arrays(path):
        if name == "time":
            continue
        if not zarr2.time_first(path, name):
            shutil.copytree(path / name, new / name, copy_function=_link)
            continue
        (new / name).mkdir()
        for part in (".zarray", ".zattrs"):
            shutil.copy2(path / name / part, new / name / part)
        for folder in (path / name).iterdir():
            if folder.is_dir():
                shutil.copytree(folder, new / name / str(int(folder.name) + placement.shift),
                                copy_function=_link)  # fmt: skip
        if (staged / name / "0").exists():
            shutil.copytree(staged / name / "0", new / name / "0", copy_function=_link)
        grown = {
            **zarr2.meta(path, name),
            "shape": [placement.length, *zarr2.meta(path, name)["shape"][1:]],
        }
        (new / name / ".zarray").unlink()
        zarr2.write_json(new / name / ".zarray", grown)
    (new / "time").mkdir()
    shutil.copy2(path / "time" / ".zattrs", new / "time" / ".zattrs")
    times = zarr2.staged_array(new, "time", {**zarr2.meta(path, "time"),
                                             "shape": [placement.length]})  # fmt: skip
    times[:] = time_values(placement, start)
    zarr2.write_json(new / ".zattrs", coverage_attrs(path, placement))
    zarr2.write_json(new / zarr2.CONSOLIDATED, zarr2.consolidated_doc(new))
    return new


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def read_days(path: Path, name: str, indices: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Layer ``name`` at time ``indices`` (within the axis) over a block of rows and columns."""
    arr = zarr.open_array(store=zarr.storage.LocalStore(path, read_only=True), path=name,
                          zarr_format=2)  # fmt: skip
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        return np.empty((0, rows.stop - rows.start, cols.stop - cols.start), dtype=arr.dtype)
    return arr.get_orthogonal_selection((indices, rows, cols))


def write_day(
    path: Path,
    day: dt.date,
    layers: dict[str, np.ndarray],
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    tile: int = 512,
) -> None:
    """Publish ``layers`` of ``day`` into the product Zarr alone, atomically (no COG, STAC or
    manifest: :func:`gsm3_ops.publish.day.publish_day` does the whole day)."""
    path = Path(path)
    day_index(start, day)
    root = path.parent
    with publish_lock(root):
        recover(root)
        ensure_store(path, grid, window, start, tile)
    with Transaction(root, day.isoformat()) as tx:
        staged = stage_layers(path, tx.dir, layers)
        with publish_lock(root):
            recover(root)
            plan_day(tx, path, staged, day, start)
            tx.commit(None)
