"""The time-series copy of the product, ``<publish_root>/gsm3_timeseries.zarr``.

The product Zarr is chunked one day at a time, for maps; reading one cell's history from it
touches one chunk per day. The copy holds the same layers, coordinates and time axis chunked
``time_chunk`` days by ``space_chunk`` x ``space_chunk`` cells, so a point's year is a few
chunks. It is updated in the day's own transaction (so it always holds the same days as the
product): only the chunks of the time block holding the new day are rewritten, from the
copy's own block and the new day's layers. A day before the first, or a copy out of step
with the product (switched on later, say), rewrites every block.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.publish import zarr2
from gsm3_ops.publish.atomic import Transaction
from gsm3_ops.publish.layers import LAYERS
from gsm3_ops.publish.product import (
    Placement,
    check_store,
    coverage_attrs,
    create_store,
    read_days,
    template,
    time_span,
    time_values,
)

TIMESERIES_NAME = "gsm3_timeseries.zarr"
BAND_BYTES = 256 * 2**20  # rows of a time block read and written at once stay below this


def timeseries_path(root: Path) -> Path:
    """``<root>/gsm3_timeseries.zarr``."""
    return Path(root) / TIMESERIES_NAME


def ensure_copy(
    path: Path,
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    chunks: tuple[int, int],
    attrs: dict[str, Any] | None = None,
) -> None:
    """Create the empty copy (``chunks``: days, cells per side) if absent, else check it.

    Call under the publication lock."""
    path = Path(path)
    if path.exists():
        check_store(path, grid, window, start)
        return
    title = "gsm3-ops daily surface soil moisture (0-5 cm), time-series copy"
    ds = template(grid, window, start, (chunks[0], chunks[1], chunks[1]),
                  {**(attrs or {}), "title": title})  # fmt: skip
    create_store(path, ds, start)


def plan_copy(
    tx: Transaction,
    copy: Path,
    product: Path,
    layers: dict[str, np.ndarray],
    placement: Placement,
    start: dt.date,
) -> None:
    """Add to ``tx`` the moves that put the day's ``layers`` (every product layer) into the
    copy, as :func:`~gsm3_ops.publish.product.plan_day` puts them into ``product`` (the
    product as it is before this transaction)."""
    copy = Path(copy)
    in_step = time_span(copy) == time_span(product)
    size = zarr2.meta(copy, "soil_moisture")["chunks"][0]
    if placement.shift or not in_step:
        blocks = range(math.ceil(placement.length / size))
    else:
        blocks = range(placement.index // size, placement.index // size + 1)
    # The stored days of a block: from the copy itself when it is in step (one chunk per
    # spatial chunk), else from the product (one chunk per day).
    source = copy if in_step and not placement.shift else product
    work = tx.dir / "timeseries"
    for name in LAYERS:
        meta = zarr2.meta(copy, name)
        meta["shape"] = [placement.length, *meta["shape"][1:]]
        out = zarr2.staged_array(work / "data", name, meta)
        for block in blocks:
            _write_block(out, source, name, layers[name], placement, block)
            for i, j in zarr2.spatial_chunks(meta):
                key = zarr2.chunk_key(meta, (block, i, j))
                zarr2.plan_file(tx, copy / name / key, work / "data" / name / key)
    old_length = time_span(copy)[1]
    first_changed = old_length if in_step and not placement.shift else 0
    if placement.length != old_length or first_changed == 0:
        zarr2.plan_time_axis(tx, copy, time_values(placement, start), first_changed,
                             work / "time")  # fmt: skip
    zarr2.plan_consolidated(tx, copy, coverage_attrs(copy, placement))


def _write_block(
    out: Any, source: Path, name: str, day: np.ndarray, placement: Placement, block: int
) -> None:
    """Time block ``block`` of layer ``name``: the stored days (read from ``source``, on the
    time axis as it was), then the new day."""
    size, (_, n_rows, n_cols) = out.chunks[0], out.shape
    t0, t1 = block * size, min((block + 1) * size, placement.length)
    layer = LAYERS[name]
    band = max(out.chunks[1], BAND_BYTES // (size * n_cols * 4) // out.chunks[1] * out.chunks[1])
    old = np.arange(t0, t1) - placement.shift
    stored = (old >= 0) & (old < placement.old_length)
    for r0 in range(0, n_rows, band):
        rows = slice(r0, min(r0 + band, n_rows))
        values = layer.empty((t1 - t0, rows.stop - rows.start, n_cols))
        values[stored] = read_days(source, name, old[stored], rows, slice(0, n_cols))
        if t0 <= placement.index < t1:
            values[placement.index - t0] = day[rows]
        out[t0:t1, rows] = values
