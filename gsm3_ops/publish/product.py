"""The product Zarr ``<publish_root>/gsm3.zarr``: daily layers on (time, y, x), CF-1.8.

Chunks are one day by ``chunk`` x ``chunk`` cells, for map access. The time axis runs daily
from the product's start to the latest day published. A day is written without touching the
store in place: its layers go to a one-day staging store with the product's own array
metadata, and at commit time (under the publication lock) its chunk files are renamed onto the
day's chunk keys, and grown array metadata (``zarr.json`` with the longer time axis) and time
chunks replace the old ones, all through an :class:`~gsm3_ops.publish.atomic.Transaction`.
A failed or interrupted write therefore leaves the previous store exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from pyproj import CRS

from gsm3_ops.errors import InputError
from gsm3_ops.grid import EaseGrid, Window
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


def template(grid: EaseGrid, window: Window, start: dt.date, chunk: int) -> xr.Dataset:
    """The empty product (a zero-length time axis): every layer, coordinate and attribute."""
    chunks = (1, min(chunk, window.n_rows), min(chunk, window.n_cols))
    data = {}
    for name, layer in LAYERS.items():
        empty = da.full((0, *window.shape), layer.nodata, dtype=layer.dtype, chunks=chunks)
        attrs = {**layer.cf_attrs(), "grid_mapping": "crs"}
        data[name] = xr.DataArray(empty, dims=("time", "y", "x"), attrs=attrs)
    depth_attrs = {
        "standard_name": "depth",
        "long_name": "depth below the surface, centre of the 0-5 cm layer",
        "units": "m",
        "positive": "down",
        "axis": "Z",
        "bounds": "depth_bnds",
    }
    return xr.Dataset(
        data,
        coords={
            "time": ("time", pd.DatetimeIndex([]), {"standard_name": "time", "axis": "T"}),
            "y": ("y", grid.y_centres(window), _axis_attrs("y")),
            "x": ("x", grid.x_centres(window), _axis_attrs("x")),
            "depth": ((), float(np.mean(DEPTH_BOUNDS)), depth_attrs),
            "depth_bnds": (("nv",), np.array(DEPTH_BOUNDS)),
            "crs": grid_mapping(),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": "gsm3-ops daily surface soil moisture (0-5 cm) on EASE-Grid 2.0",
            "institution": "gsm3-ops",
            "source": "GSM3 multitask LSTM ensemble (Liu et al. 2023)",
            "references": "Liu et al. 2023, Geosci. Model Dev. 16:1553 (GSM3)",
            "product_start": start.isoformat(),
        },
    )


def _axis_attrs(axis: str) -> dict[str, str]:
    return {
        "standard_name": f"projection_{axis}_coordinate",
        "units": "m",
        "axis": axis.upper(),
        "long_name": f"{axis} of the EASE-Grid 2.0 cell centre",
    }


def _encoding(ds: xr.Dataset, start: dt.date) -> dict[str, dict]:
    enc: dict[str, dict] = {
        "time": {
            "units": f"days since {start.isoformat()}",
            "calendar": "proleptic_gregorian",
            "dtype": "int32",
            "chunks": (TIME_CHUNK,),
        }
    }
    for name, layer in LAYERS.items():
        # _FillValue is the CF attribute; fill_value is what zarr returns for a chunk never
        # written (a day not published) and the value it does not store a chunk of.
        enc[name] = {
            "chunks": (1, *ds[name].data.chunksize[1:]),
            "_FillValue": layer.nodata,
            "fill_value": layer.nodata,
        }
    return enc


def ensure_store(path: Path, grid: EaseGrid, window: Window, start: dt.date, chunk: int) -> None:
    """Create the empty product at ``path`` if absent (atomically), else check it matches.

    Call under the publication lock. Raises :class:`ProductStoreError` on a mismatch.
    """
    path = Path(path)
    if (path / "zarr.json").exists():
        check_store(path, grid, window, start)
        return
    tmp = path.with_name(f".{path.name}.creating")
    shutil.rmtree(tmp, ignore_errors=True)
    ds = template(grid, window, start, chunk)
    try:
        ds.to_zarr(
            tmp,
            mode="w-",
            zarr_format=3,
            consolidated=False,
            encoding=_encoding(ds, start),
            compute=False,  # metadata and coordinates only: the arrays start empty
        )
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_store(path: Path, grid: EaseGrid, window: Window, start: dt.date) -> None:
    """Raise :class:`ProductStoreError` unless the store covers ``window`` from ``start``."""
    with xr.open_zarr(path, consolidated=False, decode_times=False) as ds:
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
    return int(_meta(Path(path) / "time")["shape"][0])


def day_index(start: dt.date, day: dt.date) -> int:
    """Index of ``day`` on the time axis; ProductStoreError before the start."""
    if day < start:
        raise ProductStoreError(f"{day} is before the product's start date {start}")
    return (day - start).days


def stage_layers(path: Path, stage_dir: Path, layers: dict[str, np.ndarray]) -> Path:
    """Write one day's ``layers`` into a one-day store under ``stage_dir`` with the product's
    own array metadata (so its chunk files are byte-compatible). Layers not given are
    left empty (no-data). Returns the staged store."""
    path, staged = Path(path), Path(stage_dir) / "day.zarr"
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise ProductStoreError(f"unknown product layers {sorted(unknown)}")
    for name, layer in LAYERS.items():
        meta = _meta(path / name)
        shape = tuple(meta["shape"][1:])
        value = layers.get(name)
        if value is None:
            value = layer.empty(shape)
        value = np.asarray(value)
        if value.shape != shape:
            raise ProductStoreError(f"layer {name} has shape {value.shape}, product has {shape}")
        if layer.is_flag and value.dtype != np.uint8:
            raise ProductStoreError(f"layer {name} must be uint8, got {value.dtype}")
        meta["shape"] = [1, *shape]
        (staged / name).mkdir(parents=True, exist_ok=True)
        (staged / name / "zarr.json").write_text(json.dumps(meta))
        arr = zarr.open_array(store=zarr.storage.LocalStore(staged), path=name, mode="r+")
        arr[0] = value.astype(layer.dtype, copy=False)
    return staged


def plan_day(tx: Transaction, path: Path, staged: Path, day: dt.date, start: dt.date) -> int:
    """Add to ``tx`` the moves that put the staged day into the product (under the lock).

    The day's chunk files replace the stored ones (a chunk the new day leaves empty is
    removed); when the day lies past the end of the time axis, grown ``zarr.json`` files and
    time-coordinate chunks follow. Returns the day's time index.
    """
    path = Path(path)
    index = day_index(start, day)
    for name in LAYERS:
        product_meta, staged_meta = _meta(path / name), _meta(staged / name)
        if {**product_meta, "shape": None} != {**staged_meta, "shape": None}:
            raise ProductStoreError(f"{path}/{name} changed its encoding while {day} was staged")
        _plan_chunks(tx, path / name, staged / name, index)
    length = time_length(path)
    if index >= length:
        _plan_growth(tx, path, length, index + 1, tx.dir / "grow")
    return index


def _plan_chunks(tx: Transaction, array: Path, staged: Path, index: int) -> None:
    meta = zarr.open_array(store=zarr.storage.LocalStore(staged), mode="r").metadata
    _, n_rows, n_cols = meta.shape
    c_rows, c_cols = meta.chunk_grid.chunk_shape[1:]
    for i in range(math.ceil(n_rows / c_rows)):
        for j in range(math.ceil(n_cols / c_cols)):
            source = staged / meta.encode_chunk_key((0, i, j))
            _plan_file(tx, array / meta.encode_chunk_key((index, i, j)), source)


def _plan_file(tx: Transaction, target: Path, source: Path) -> None:
    """``source`` replaces ``target``; zarr writes no chunk that holds only the fill value,
    so a missing ``source`` means the stored chunk must go."""
    if source.exists():
        tx.replace(target, source)
    elif target.exists():
        tx.remove(target)


def _plan_growth(tx: Transaction, path: Path, old: int, new: int, grow_dir: Path) -> None:
    """Stage the time chunks covering ``old..new`` and every time array's grown metadata."""
    time_meta = _meta(path / "time")
    time_meta["shape"] = [new]
    (grow_dir / "time").mkdir(parents=True, exist_ok=True)
    (grow_dir / "time" / "zarr.json").write_text(json.dumps(time_meta))
    times = zarr.open_array(store=zarr.storage.LocalStore(grow_dir), path="time", mode="r+")
    size = times.metadata.chunk_grid.chunk_shape[0]
    # Time values are days since the start, i.e. the index itself: a chunk's content follows
    # from its position alone, so rewriting the chunks that hold new days is always right.
    for k in range(old // size, math.ceil(new / size)):
        lo, hi = k * size, min((k + 1) * size, new)
        times[lo:hi] = np.arange(lo, hi, dtype=np.int32)
        key = times.metadata.encode_chunk_key((k,))
        _plan_file(tx, path / "time" / key, grow_dir / "time" / key)
    growing = [n for n in _arrays(path) if n != "time" and _time_first(_meta(path / n))]
    for name in [*growing, "time"]:  # the time coordinate last: readers see data before dates
        meta = _meta(path / name)
        meta["shape"] = [new, *meta["shape"][1:]]
        staged = grow_dir / "meta" / name / "zarr.json"
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(json.dumps(meta))
        tx.replace(path / name / "zarr.json", staged)


def _time_first(meta: dict) -> bool:
    return (meta.get("dimension_names") or [None])[0] == "time"


def _arrays(path: Path) -> list[str]:
    return sorted(p.parent.name for p in Path(path).glob("*/zarr.json"))


def _meta(array: Path) -> dict:
    try:
        return json.loads((Path(array) / "zarr.json").read_text())
    except FileNotFoundError:
        raise ProductStoreError(f"{array} is not an array of the product store") from None


def read_days(path: Path, name: str, indices: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Layer ``name`` at time ``indices`` (within the axis) over a block of rows and columns."""
    arr = zarr.open_array(store=zarr.storage.LocalStore(path, read_only=True), path=name)
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
