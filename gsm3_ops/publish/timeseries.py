"""The optional time-series copy of the product, ``<publish_root>/gsm3_timeseries.zarr``.

The product Zarr is chunked one day at a time, for maps; reading one cell's history from it
touches one chunk per day. The copy holds the same layers chunked ``time_chunk`` days by
``space_chunk`` x ``space_chunk`` cells, so a point's whole series is one or a few chunks.
It is rebuilt from the product (under the publication lock, so it is a consistent snapshot)
into the staging folder and swapped in with two renames; readers of the old copy keep their
open files. A rebuild reads the whole product: cheap for a regional deployment, hours for the
global one, which should refresh it weekly rather than daily.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import xarray as xr

from gsm3_ops.publish.atomic import STAGING, publish_lock
from gsm3_ops.publish.layers import LAYERS
from gsm3_ops.publish.product import product_path

TIMESERIES_NAME = "gsm3_timeseries.zarr"


def timeseries_path(root: Path) -> Path:
    """``<root>/gsm3_timeseries.zarr``."""
    return Path(root) / TIMESERIES_NAME


def write_timeseries_copy(root: Path, time_chunk: int, space_chunk: int) -> Path:
    """Rebuild the time-series copy of the product under ``root`` and swap it in."""
    root = Path(root)
    dest = timeseries_path(root)
    work = root / STAGING / f"timeseries-{uuid.uuid4().hex[:8]}"
    try:
        with publish_lock(root), xr.open_zarr(product_path(root), consolidated=False) as ds:
            n_time = ds.sizes["time"]
            if n_time == 0:
                raise ValueError(f"product {product_path(root)} holds no day yet")
            chunks = (min(time_chunk, n_time), min(space_chunk, ds.sizes["y"]),
                      min(space_chunk, ds.sizes["x"]))  # fmt: skip
            out = ds.chunk(dict(zip(("time", "y", "x"), chunks, strict=True)))
            encoding = {}
            for name, layer in LAYERS.items():
                out[name].encoding = {}
                encoding[name] = {"chunks": chunks, "_FillValue": layer.nodata,
                                  "fill_value": layer.nodata, "dtype": layer.dtype}  # fmt: skip
            out.attrs = {**ds.attrs, "title": f"{ds.attrs.get('title', '')} (time-series copy)",
                         "last_day": str(ds.indexes["time"][-1].date())}  # fmt: skip
            out.to_zarr(work / TIMESERIES_NAME, mode="w-", zarr_format=3, consolidated=False,
                        encoding=encoding)  # fmt: skip
            old = work / "old"
            if dest.exists():
                dest.rename(old)
            (work / TIMESERIES_NAME).rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
