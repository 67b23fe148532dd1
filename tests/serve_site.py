"""A small publish root for the service's tests, written by the real publisher.

:func:`build_site` publishes a handful of days with :func:`gsm3_ops.publish.day.publish_day`
over a 15 x 12 cell window of the M09 grid in Kenya (chunks of 8 cells, so reads cross
chunks), with deterministic synthetic layers: a sea corner of no-data, flag bits, one
provisional day and a gap of unpublished days. Whatever the publisher writes (Zarr layout,
``days.json``, ``latest.json``) is what the service is tested against.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops.config import ProductConfig
from gsm3_ops.grid import M09, EaseGrid, Window
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import FLAG_FILL, FLAG_PROVISIONAL
from gsm3_ops.publish.manifest import DayManifest

WINDOW = M09.window_from_bbox(36.0, -2.0, 37.0, -1.0)
CHUNK = 8
START = dt.date(2021, 1, 1)
DAYS = (
    *(dt.date(2021, 3, 1) + dt.timedelta(days=i) for i in range(5)),
    dt.date(2021, 3, 8),  # 6 and 7 March are not published
)
PROVISIONAL_DAY = DAYS[-1]
SEA = (slice(0, 3), slice(0, 4))  # the window's north-west corner has no data
BUNDLE = "bundle-serve-1"
VERSION = "9.9.9"
INPUT_VERSIONS = {"era5_land": "ERA5-Land", "imerg": "final"}


@dataclass(frozen=True)
class Site:
    """A published root and what was published into it."""

    root: Path
    grid: EaseGrid
    window: Window
    days: tuple[dt.date, ...]


def layers_for(day: dt.date, window: Window = WINDOW) -> dict[str, np.ndarray]:
    """Deterministic base layers of ``day``: soil moisture 0.05-0.45, spread, flag bits."""
    rng = np.random.default_rng(day.toordinal())
    sm = rng.uniform(0.05, 0.45, window.shape).astype(np.float32)
    sm[SEA] = np.nan
    flag = rng.integers(0, 32, window.shape).astype(np.uint8)
    flag[np.isnan(sm)] = FLAG_FILL
    if day == PROVISIONAL_DAY:
        flag[~np.isnan(sm)] |= FLAG_PROVISIONAL
    return {"soil_moisture": sm, "soil_moisture_sd": (sm / 10).astype(np.float32),
            "quality_flag": flag}  # fmt: skip


def publish(root: Path, day: dt.date, window: Window = WINDOW, chunk: int = CHUNK,
            timeseries: bool = True) -> None:  # fmt: skip
    """Publish ``day`` under ``root`` with :func:`layers_for` and its day record (and into
    the time-series copy, chunked 64 days by ``chunk`` cells, when asked)."""
    cfg = ProductConfig(start=START, version=VERSION, quicklook=False,
                        timeseries_copy=timeseries, timeseries_time_chunk=64,
                        timeseries_space_chunk=chunk)  # fmt: skip
    provisional = day == PROVISIONAL_DAY
    tags = {"bundle_id": BUNDLE, "inputs": "synthetic"}
    dp = DayProduct(day, layers_for(day, window), tags, land=np.ones(window.shape, bool))
    record = DayManifest(
        date=day, status="complete", bundle_id=BUNDLE, product_version=VERSION,
        input_versions=INPUT_VERSIONS, provisional=provisional,
    )  # fmt: skip
    publish_day(root, M09, window, cfg, chunk, dp, record)


def build_site(root: Path, days: tuple[dt.date, ...] = DAYS, timeseries: bool = True) -> Site:
    """Publish ``days`` under ``root``, with the time-series copy or without."""
    root = Path(root)
    for day in days:
        publish(root, day, timeseries=timeseries)
    return Site(root, M09, WINDOW, tuple(days))
