"""The world's NDVI as MODIS MOD13A3 v061 monthly tiles (Terra, 1 km, HDF4-EOS sinusoidal).

One file per month and tile holding pixels of the window, dated the month's first day:
1200 x 1200 pixels on grid ``MOD_Grid_monthly_1km_VI``, written like the MYD11A1/MCD43A3
tiles (:mod:`gsm3_ops.world.modis`: ``StructMetadata.0``, deflated chunks) with the two
layers the reader uses: ``1 km monthly NDVI`` (int16, values x 10000 with
``scale_factor = 10000`` stated as a divisor, as LP DAAC's files do; fill -3000, valid
-2000..10000) and ``1 km monthly pixel raliability`` (sic; int8, 0 good, 1 marginal, 3
cloudy, fill -1).

The world's NDVI is static: every month a pixel holds the value of the 9 km cell its centre
lies in. A draw fixed by the seed, month and tile marks 10 % of the land pixels marginal
(true value, kept by the reader), 8 % cloudy (the value less 0.3, as a cloud-contaminated
composite reads, which the reader must drop) and 2 % fill; sea cells and pixels outside the
window are fill. So each cell's mean of its reliable pixels, in every month and so over the
months, is the world's NDVI within half a quantum (0.00005).

The world writes them under ``<archive>/static/`` (the static source's archive, searched in
any sub-folder) as an LP DAAC mirror: ``MOD13A3.061/YYYY.MM.01/MOD13A3.AYYYYDDD.hHHvVV.061.
<production>.hdf``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pyhdf.SD import SDC

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.world.modis import ProductSpec, Sds, encode, tile_layouts, write_blocks

GOOD, MARGINAL, SNOW, CLOUDY, FILL = 0, 1, 2, 3, -1  # pixel reliability ranks
CLOUD_BIAS = -0.3  # NDVI of a cloudy pixel: the value less this much
SHARES = ((MARGINAL, 0.10), (CLOUDY, 0.08), (FILL, 0.02))  # of the land pixels, each month

NDVI = Sds(
    name="1 km monthly NDVI",
    kind=SDC.INT16,
    dtype="int16",
    valid_range=(-2000, 10000),
    long_name="1 km monthly NDVI",
    units="NDVI",
    fill=-3000,
    scale=0.0001,
    divisor=True,
    variables=("ndvi",),
)
RELIABILITY = Sds(
    name="1 km monthly pixel raliability",
    kind=SDC.INT8,
    dtype="int8",
    valid_range=(0, 3),
    long_name="1 km monthly pixel raliability",
    units="rank",
    fill=FILL,
    variables=("ndvi",),
)
MOD13A3 = ProductSpec(
    short_name="MOD13A3",
    grid_name="MOD_Grid_monthly_1km_VI",
    n=1200,
    sds=(NDVI, RELIABILITY),
    lag_days=40,  # produced about ten days after the month ends
    qa=(GOOD, CLOUDY, FILL),
)


def write_month(
    root: Path, ndvi: np.ndarray, month: dt.date, grid: EaseGrid, window: Window, seed: int
) -> list[Path]:
    """Write the MOD13A3 tiles of ``month`` for the world's (rows, cols) ``ndvi`` on
    ``window`` (NaN: sea) under ``root``; the paths written."""
    month = month.replace(day=1)
    per_cell = np.append(np.asarray(ndvi, dtype=np.float64).ravel(), np.nan)  # last: outside
    out = []
    for layout in tile_layouts(MOD13A3.n, grid, window):
        value = per_cell[layout.take]
        rng = np.random.default_rng([seed, month.year, month.month, layout.h, layout.v])
        u = rng.random(value.shape)
        edges = np.cumsum([share for _, share in SHARES])
        rank = np.select([u < e for e in edges], [r for r, _ in SHARES], GOOD)
        rank = np.where(np.isfinite(value), rank, FILL)
        value = np.where(rank == CLOUDY, value + CLOUD_BIAS, value)
        stored = np.where(rank == FILL, NDVI.fill, encode(value, NDVI))
        blocks = {NDVI.name: stored, RELIABILITY.name: rank}
        out.append(write_blocks(root, MOD13A3, month, layout, blocks))
    return out
