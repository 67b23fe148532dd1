"""A cube's in-situ group at a realistic size, to time ``verify_insitu`` against a read.

``python -m tests.insitu_sites 2000 3`` writes 2000 sites over 3 years as ingest does (80 %
from ISMN in one write over the whole period, 20 % from USCRN one year at a time) into a
temporary cube, then prints the time of ``read_insitu`` and of ``verify_insitu`` over the
period (best of 3). tests/test_cube_verify.py uses :func:`write_sites` at a small size.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.cube import Cube, verify_insitu
from gsm3_ops.grid import M09, Window

DOMAIN = Window(700, 2200, 200, 200)  # East Africa, 1800 km a side


def sites(ids: list[str], start: dt.date, end: dt.date, seed: int) -> xr.DataArray:
    """Daily series (site, time) of ``ids`` at seeded cells of :data:`DOMAIN`, a third NaN."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(start, end, freq="D")
    rows = DOMAIN.row0 + rng.integers(0, DOMAIN.n_rows, len(ids))
    cols = DOMAIN.col0 + rng.integers(0, DOMAIN.n_cols, len(ids))
    lon, lat = M09.rowcol_to_lonlat(rows, cols)
    values = rng.uniform(0.05, 0.5, (len(ids), len(days))).astype(np.float32)
    values[rng.random(values.shape) < 1 / 3] = np.nan
    return xr.DataArray(values, dims=("site", "time"),
                        coords={"site": ids, "time": days, "lat": ("site", lat),
                                "lon": ("site", lon)})  # fmt: skip


def write_sites(cube: Cube, n_sites: int, start: dt.date, end: dt.date) -> None:
    """``n_sites`` sites as ingest writes them: ISMN's in one write, USCRN's year by year."""
    n_uscrn = n_sites // 5
    ismn = sites([f"ismn-{i}" for i in range(n_sites - n_uscrn)], start, end, seed=1)
    cube.write_insitu(ismn, source="ismn", version="2024-01")
    uscrn = sites([f"uscrn-{i}" for i in range(n_uscrn)], start, end, seed=2)
    for year in range(start.year, end.year + 1):
        part = uscrn.sel(time=slice(f"{year}-01-01", f"{year}-12-31"))
        cube.write_insitu(part, source="uscrn", version="daily01")


def measure(n_sites: int, years: int) -> tuple[float, float, int]:
    """Seconds for ``read_insitu`` and ``verify_insitu`` over ``years`` years of ``n_sites``
    (best of 3 each), and how many checksums were checked."""
    start = dt.date(2018, 1, 1)
    end = dt.date(start.year + years - 1, 12, 31)
    with tempfile.TemporaryDirectory() as tmp:
        cube = Cube.create(Path(tmp) / "cube.zarr", M09, DOMAIN, start, end, 64)
        write_sites(cube, n_sites, start, end)
        read, verify, checked = [], [], 0
        for _ in range(3):
            t0 = time.perf_counter()
            cube.read_insitu(start, end)
            read.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            checked = verify_insitu(cube, start, end)
            verify.append(time.perf_counter() - t0)
    return min(read), min(verify), checked


if __name__ == "__main__":
    n, years = (int(a) for a in sys.argv[1:3])
    read_s, verify_s, checked = measure(n, years)
    print(f"{n} sites x {years} years: read_insitu {read_s:.2f} s, "
          f"verify_insitu {verify_s:.2f} s ({checked} checksums)")  # fmt: skip
