"""Derived layers: anomaly and percentile of a day against a day-of-year climatology (the
quality flag's bits are ``flags.py``).

Climatology. The samples of a day are the product's soil moisture within ``window_days`` of
the same calendar day in other years (29 February counts as 28 February in common years):

* with a configured baseline (``baseline_start``..``baseline_end``), every such day inside it
  (the day itself, when inside, with its new value);
* without one, the product's own history: every such day before the current season, i.e.
  earlier than ``day - window_days``.

A cell needs samples from at least ``min_years`` different years; with fewer (a young product,
a baseline the product does not cover, a cell often missing) its anomaly and percentile are
NaN. The anomaly is the day's value minus the sample mean (m3 m-3); the percentile is
``100 * (n_below + n_equal / 2) / n`` (mid-rank, 0..100).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from gsm3_ops.config import ClimatologyConfig
from gsm3_ops.publish.product import read_days, time_span

BLOCK = 256  # cells per side read at once: samples x 256 x 256 float32 stay small


def _same_day(day: dt.date, year: int) -> dt.date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year
        return dt.date(year, 2, 28)


def sample_days(
    day: dt.date, start: dt.date, length: int, cfg: ClimatologyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Time indices of ``day``'s climatology samples on a time axis of ``length`` days from
    ``start`` (its first day), and the year (season) of each; never the day itself."""
    w = dt.timedelta(days=cfg.window_days)
    if cfg.baseline_start is not None and cfg.baseline_end is not None:
        lo, hi = cfg.baseline_start, cfg.baseline_end
    else:
        lo, hi = start, day - w - dt.timedelta(days=1)
    lo, hi = max(lo, start), min(hi, start + dt.timedelta(days=length - 1))
    indices, seasons = [], []
    for year in range(lo.year - 1, hi.year + 2):
        anchor = _same_day(day, year)
        first, last = max(anchor - w, lo), min(anchor + w, hi)
        for offset in range((last - first).days + 1):
            d = first + dt.timedelta(days=offset)
            if d != day:
                indices.append((d - start).days)
                seasons.append(year)
    return np.asarray(indices, dtype=np.int64), np.asarray(seasons, dtype=np.int64)


def climatology_layers(
    path: Path, day: dt.date, start: dt.date, value: np.ndarray, cfg: ClimatologyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly (m3 m-3) and percentile (0..100) of ``value`` (the day's soil moisture over the
    product's window) against the climatology read from the product Zarr at ``path``."""
    first, length = time_span(path)
    indices, seasons = sample_days(day, first or start, length, cfg)
    with_today = cfg.baseline_start is not None and cfg.baseline_start <= day <= cfg.baseline_end
    if with_today:
        seasons = np.append(seasons, day.year)
    anomaly = np.full(value.shape, np.nan, dtype=np.float32)
    percentile = np.full(value.shape, np.nan, dtype=np.float32)
    for r0 in range(0, value.shape[0], BLOCK):
        for c0 in range(0, value.shape[1], BLOCK):
            rows, cols = slice(r0, r0 + BLOCK), slice(c0, c0 + BLOCK)
            v = value[rows, cols]
            rows = slice(r0, r0 + v.shape[0])
            cols = slice(c0, c0 + v.shape[1])
            samples = read_days(path, "soil_moisture", indices, rows, cols)
            if with_today:
                samples = np.concatenate([samples, v[None]])
            anomaly[rows, cols], percentile[rows, cols] = _score(samples, seasons, v, cfg)
    return anomaly, percentile


def _score(
    samples: np.ndarray, seasons: np.ndarray, v: np.ndarray, cfg: ClimatologyConfig
) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(samples)
    years = np.zeros(v.shape, dtype=np.int32)
    for season in np.unique(seasons):
        years += valid[seasons == season].any(axis=0)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # The mean is rounded to float32 before subtracting, so that a day equal to its
        # climatology has an anomaly of exactly zero.
        mean = (np.where(valid, samples, 0).sum(axis=0, dtype=np.float64) / n).astype(np.float32)
        below = (samples < v).sum(axis=0)  # NaN compares False: only valid samples count
        equal = (samples == v).sum(axis=0)
        pct = (100.0 * (below + 0.5 * equal) / n).astype(np.float32)
    ok = (years >= cfg.min_years) & np.isfinite(v)
    return np.where(ok, v - mean, np.nan), np.where(ok, pct, np.nan)
