"""Derived layers: anomaly and percentile of a day against a day-of-year climatology, and the
bits of the quality flag.

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
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gsm3_ops.config import ClimatologyConfig, QualityFlagConfig
from gsm3_ops.grid import Window
from gsm3_ops.publish.layers import (
    FLAG_DRY_NORTH_SLOPE,
    FLAG_FILL,
    FLAG_FROZEN,
    FLAG_GAP_FILLED,
    FLAG_PERMAFROST,
    FLAG_PROVISIONAL,
)
from gsm3_ops.publish.product import read_days, time_length

BLOCK = 256  # cells per side read at once: samples x 256 x 256 float32 stay small


def _same_day(day: dt.date, year: int) -> dt.date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year
        return dt.date(year, 2, 28)


def sample_days(
    day: dt.date, start: dt.date, length: int, cfg: ClimatologyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Time indices of ``day``'s climatology samples in a product of ``length`` days from
    ``start``, and the year (season) of each; the day itself is never among them."""
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
    indices, seasons = sample_days(day, start, time_length(path), cfg)
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


# ----------------------------------------------------------------- quality flag


def is_provisional(version: str, markers: Iterable[str]) -> bool:
    """Whether a source version names a provisional stream: one of ``markers`` is a whole
    token of it, case-insensitive (``ERA5T``, ``IMERG-Early``, ``MSWEP NRT``; not ``latest``)."""
    tokens = {t for t in re.split(r"[^0-9a-z]+", version.lower()) if t}
    return any(m.lower() in tokens for m in markers)


def provisional_mask(
    manifest: Mapping[str, Any], domain: Window, markers: Iterable[str]
) -> np.ndarray:
    """Cells of ``domain`` that a provisional forcing filled on the day of ``manifest`` (a cube
    day manifest: entries ``forcing/<source>`` with parts holding a grid window and version)."""
    mask = np.zeros(domain.shape, dtype=bool)
    markers = tuple(markers)
    for key, entry in (manifest.get("entries") or {}).items():
        if not key.startswith("forcing/"):
            continue
        for part in entry.get("parts") or []:
            w = part.get("window")
            if w is None or not is_provisional(str(part.get("version", "")), markers):
                continue
            r0, c0 = w["row0"] - domain.row0, w["col0"] - domain.col0
            r1, c1 = r0 + w["n_rows"], c0 + w["n_cols"]
            mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
    return mask


def frozen_mask(stl1: np.ndarray, t2m: np.ndarray, cfg: QualityFlagConfig) -> np.ndarray:
    """Soil temperature level 1 or 2 m air temperature of the day below ``frozen_below_k``;
    a missing temperature sets nothing (that cell is flagged gap-filled instead)."""
    with np.errstate(invalid="ignore"):
        return (stl1 < cfg.frozen_below_k) | (t2m < cfg.frozen_below_k)


def dry_north_slope_mask(
    aspect_cos: np.ndarray, slope: np.ndarray, smap_mean: np.ndarray, cfg: QualityFlagConfig
) -> np.ndarray:
    """Poleward-facing (``aspect_cos >= north_aspect_cos_min``; the static is already flipped
    in the southern hemisphere), sloping (``slope >= north_slope_min_deg``: aspect means
    nothing on flat ground) and dry (``smap_mean <= dry_smap_mean_max``)."""
    with np.errstate(invalid="ignore"):
        return (
            (aspect_cos >= cfg.north_aspect_cos_min)
            & (slope >= cfg.north_slope_min_deg)
            & (smap_mean <= cfg.dry_smap_mean_max)
        )


def permafrost_mask(
    lat: np.ndarray, lst_day_mean: np.ndarray, lst_night_mean: np.ndarray, cfg: QualityFlagConfig
) -> np.ndarray:
    """North of ``permafrost_lat_min`` with a long-term mean of day and night LST at or below
    ``permafrost_lst_mean_max_k``; where the LST means are missing, latitude alone decides."""
    lst = (lst_day_mean + lst_night_mean) / 2
    with np.errstate(invalid="ignore"):
        cold = np.where(np.isfinite(lst), lst <= cfg.permafrost_lst_mean_max_k, True)
    return (lat >= cfg.permafrost_lat_min) & cold


def compose_flags(valid: np.ndarray, **bits: np.ndarray) -> np.ndarray:
    """The uint8 quality flag: 255 where ``valid`` is False, else the OR of the set bits.

    ``bits`` are boolean masks named ``gap_filled``, ``provisional``, ``frozen``,
    ``dry_north_slope``, ``permafrost`` (any subset).
    """
    values = {
        "gap_filled": FLAG_GAP_FILLED,
        "provisional": FLAG_PROVISIONAL,
        "frozen": FLAG_FROZEN,
        "dry_north_slope": FLAG_DRY_NORTH_SLOPE,
        "permafrost": FLAG_PERMAFROST,
    }
    unknown = set(bits) - set(values)
    if unknown:
        raise ValueError(f"unknown quality-flag bits {sorted(unknown)}")
    flag = np.zeros(valid.shape, dtype=np.uint8)
    for name, mask in bits.items():
        flag |= np.where(mask, values[name], 0).astype(np.uint8)
    return np.where(valid, flag, FLAG_FILL).astype(np.uint8)
