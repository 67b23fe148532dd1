"""``gsm3-ops world``: the synthetic world's days as a local archive in the providers' formats.

One folder per source under ``world.archive`` (the demo profile points each source's
``archive`` option at its folder):

| folder | what the world writes | module |
|---|---|---|
| ``era5/`` | hourly total precipitation, monthly CDS netCDF | ``world/era5.py`` |
| ``era5_land/`` | daily-statistics zips and 00 UTC radiation, monthly | ``world/era5.py`` |
| ``imerg/`` | ``3B-DAY`` GES DISC subsets (recent days the Late run) | ``world/imerg.py`` |
| ``mswep/`` | ``Past/Daily/YYYYDDD.nc`` (recent days ``NRT``) | ``world/mswep.py`` |
| ``modis/`` | MYD11A1 and MCD43A3 v061 HDF4-EOS tiles | ``world/modis.py`` |
| ``smap/`` | SPL3SMP_E subset granules | ``world/smap.py`` |
| ``ismn/`` | an ISMN header+values download | ``world/ismn.py`` |
| ``static/`` | GLO-90, SoilGrids, WorldCover, MOD13A3 tiles | ``world/static.py``, ``mod13a3.py`` |

The MOD13A3 tiles (one set per month of ``world.start..world.end``, written with the month's
days) go under ``static/`` rather than ``modis/``: the static source averages them into its
default NDVI and reads its archive only, so that folder holds every static provider's files.

ERA5's precipitation of a day ends at 24:00 and ERA5-Land's radiation at 00 UTC of the
next day, so the world writes one day past ``world.end`` (ERA5 and ERA5-Land in one pass, so
that each month's first file step holds the previous day's totals): the archive then serves
``world.start..world.end`` for every source. Writing is idempotent and resumable: finished
parts are listed in ``world.json`` with the world's version and the window, and a changed
world or window starts the archive afresh.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.atomicfile import write_json_atomic
from gsm3_ops.config import Settings
from gsm3_ops.errors import UsageError
from gsm3_ops.grid import EaseGrid, Window, get_grid
from gsm3_ops.sources.synthetic import VERSION, SyntheticSource
from gsm3_ops.world import era5, imerg, ismn, mod13a3, modis, mswep, smap, static

log = logging.getLogger(__name__)

FOLDERS = ("era5", "era5_land", "imerg", "mswep", "modis", "smap", "ismn", "static")
RECENT_DAYS = 60  # the last days go to the providers' early streams (IMERG Late, MSWEP NRT)
MARKER = "world.json"


def write_world(settings: Settings) -> Path:
    """Write (or complete) the archive that ``settings.world`` describes; return its folder."""
    w = settings.world
    if w is None:
        raise UsageError("this configuration has no world: section (the demo profile has one)")
    if settings.region is None:
        raise UsageError("the world is written over a region; set region: in the configuration")
    grid = get_grid(settings.grid)
    r = settings.region
    window = grid.window_from_bbox(r.lon_min, r.lat_min, r.lon_max, r.lat_max)
    root = Path(w.archive)
    identity = {"version": VERSION, "seed": w.seed, "grid": grid.name,
                "window": [window.row0, window.col0, window.n_rows, window.n_cols],
                "start": w.start.isoformat(), "ndvi": "MOD13A3.061"}  # fmt: skip
    done = _finished(root, identity)
    src = SyntheticSource(seed=w.seed)
    last = w.end + dt.timedelta(days=1)
    recent = w.end - dt.timedelta(days=RECENT_DAYS)
    if "static" not in done:
        static.write_static(_rasters(src, grid, window), grid, window, root / "static")
        done.append("static")
        _save(root, identity, done)
    fields = src.forcing(grid, window, w.start, last)
    ndvi = _rasters(src, grid, window)["ndvi"].values
    if "era5" not in done:  # whole months, each day's accumulations ending in the next day
        era5.write_era5(fields, grid, window, root / "era5")
        era5.write_era5_land(fields, grid, window, root / "era5_land")
        done.append("era5")
        _save(root, identity, done)
    for a, b in _months(w.start, last):
        key = f"{a:%Y-%m}..{b.isoformat()}"
        if key in done:
            continue
        log.info("world: writing %s..%s", a, b)
        month = fields.sel(time=slice(str(a), str(b)))
        imerg.write_imerg(month, grid, window, root / "imerg", late_after=recent)
        mswep.write_mswep(month, grid, window, root / "mswep", nrt_after=recent)
        modis.write_days(root / "modis", month, grid, window)
        if a <= w.end:  # the day past the end starts no month of its own
            mod13a3.write_month(root / "static", ndvi, a, grid, window, w.seed)
        smap.write_granules(src.smap(grid, window, a, b), grid, window, root / "smap", w.seed)
        done.append(key)
        _save(root, identity, done)
    if "ismn" not in done:
        (root / "ismn").mkdir(exist_ok=True)  # a window without sites: an empty download
        sites = _sites(src, grid, window)
        ismn.write_ismn(sites, src.insitu(grid, window, w.start, w.end), root / "ismn",
                        seed=w.seed)  # fmt: skip
        done.append("ismn")
        _save(root, identity, done)
    return root


def _finished(root: Path, identity: dict) -> list[str]:
    """The parts already written for this world and window; a different one starts afresh."""
    marker = root / MARKER
    if marker.is_file():
        doc = json.loads(marker.read_text())
        if doc.get("identity") == identity:
            return list(doc.get("done", []))
        log.warning(
            "world: %s holds another world or window: writing it afresh (days a deployment "
            "already ingested from the old archive stay in its cube: remove its data_root "
            "to ingest the new one)",
            root,
        )
    for name in FOLDERS:
        shutil.rmtree(root / name, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    return []


def _save(root: Path, identity: dict, done: list[str]) -> None:
    write_json_atomic(root / MARKER, {"identity": identity, "done": done})


def _months(start: dt.date, end: dt.date) -> Iterator[tuple[dt.date, dt.date]]:
    """Calendar months of start..end, clipped to it."""
    a = start
    while a <= end:
        nxt = (a.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        b = min(nxt - dt.timedelta(days=1), end)
        yield a, b
        a = b + dt.timedelta(days=1)


def _rasters(src: SyntheticSource, grid: EaseGrid, window: Window) -> xr.Dataset:
    """The world's raster statics (the long-term means come from the cube, not the world)."""
    return src.static(grid, window, long_term=False)


def _sites(src: SyntheticSource, grid: EaseGrid, window: Window) -> pd.DataFrame:
    """The world's sites with the elevation of their cell (an ISMN header states it)."""
    sites = src.sites(grid, window)
    elev = _rasters(src, grid, window)["elevation"].values
    r = (sites["row"] - window.row0).to_numpy()
    c = (sites["col"] - window.col0).to_numpy()
    return sites.assign(elevation=np.nan_to_num(elev[r, c]))
