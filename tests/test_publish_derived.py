"""Derived layers: climatology samples, anomaly, percentile, quality-flag bits, quick-look."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from matplotlib.image import imread
from scipy.stats import percentileofscore

from gsm3_ops.config import ClimatologyConfig, ProductConfig, QualityFlagConfig
from gsm3_ops.cube import Cube, written_parts
from gsm3_ops.grid import M09, Window
from gsm3_ops.publish import derived, flags
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import BASE_LAYERS, FLAG_FILL, LAYERS, QUALITY_FLAGS
from gsm3_ops.publish.manifest import DayManifest
from gsm3_ops.publish.quicklook import render

WINDOW = Window(800, 2300, 6, 5)
START = dt.date(2019, 1, 1)
DAY = dt.date(2022, 6, 15)
FLAGS = QualityFlagConfig()


def _history(tmp_path, values) -> tuple:
    """A product whose days before ``DAY`` hold ``values(date) -> (rows, cols)`` (fast: the
    history is written straight into the zarr arrays after START and DAY published empty)."""
    empty = {name: LAYERS[name].empty(WINDOW.shape) for name in BASE_LAYERS}
    cfg = ProductConfig(start=START, quicklook=False, timeseries_copy=False)
    for day in (START, DAY):
        record = DayManifest(date=day, status="complete")
        published = publish_day(tmp_path, M09, WINDOW, cfg, 8, DayProduct(day, empty, {}), record)
    path = published.product
    arr = zarr.open_array(path / "soil_moisture", mode="r+")
    days = pd.date_range(START, DAY - dt.timedelta(days=1)).date
    arr[: len(days)] = np.stack([values(d) for d in days]).astype(np.float32)
    return path


def test_own_history_samples_are_earlier_seasons_only() -> None:
    cfg = ClimatologyConfig(window_days=15)
    length = (DAY - START).days + 1
    idx, seasons = derived.sample_days(DAY, START, length, cfg)
    days = [START + dt.timedelta(days=int(i)) for i in idx]
    assert sorted(set(seasons)) == [2019, 2020, 2021]
    assert len(days) == 3 * 31 and max(days) == dt.date(2021, 6, 30)
    for d, season in zip(days, seasons, strict=True):
        assert abs((d - dt.date(int(season), 6, 15)).days) <= 15


def test_baseline_samples_include_neither_the_day_nor_days_outside() -> None:
    cfg = ClimatologyConfig(
        window_days=3, baseline_start=dt.date(2020, 1, 1), baseline_end=dt.date(2022, 12, 31)
    )
    idx, seasons = derived.sample_days(DAY, START, 2000, cfg)
    days = {START + dt.timedelta(days=int(i)) for i in idx}
    assert DAY not in days and dt.date(2022, 6, 14) in days  # same season, inside the baseline
    assert sorted(set(seasons)) == [2020, 2021, 2022] and len(days) == 3 * 7 - 1
    assert all(dt.date(2020, 1, 1) <= d <= dt.date(2022, 12, 31) for d in days)
    # the product holds only 10 days: no sample lies beyond its time axis
    idx, _ = derived.sample_days(DAY, START, 10, cfg)
    assert idx.size == 0


def test_29_february_uses_28_february_in_common_years() -> None:
    cfg = ClimatologyConfig(window_days=0)
    day = dt.date(2024, 2, 29)
    idx, _ = derived.sample_days(day, START, (day - START).days + 1, cfg)
    days = sorted(START + dt.timedelta(days=int(i)) for i in idx)
    assert days == [dt.date(2019, 2, 28), dt.date(2020, 2, 29), dt.date(2021, 2, 28),
                    dt.date(2022, 2, 28), dt.date(2023, 2, 28)]  # fmt: skip


def test_a_day_equal_to_its_climatology_has_zero_anomaly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.4, WINDOW.shape)

    def values(d: dt.date) -> np.ndarray:
        noise = np.random.default_rng(d.toordinal()).normal(0, 0.03, WINDOW.shape)
        return base + noise

    path = _history(tmp_path, values)
    cfg = ClimatologyConfig(window_days=15, min_years=3)
    idx, _ = derived.sample_days(DAY, START, (DAY - START).days + 1, cfg)
    samples = zarr.open_array(path / "soil_moisture")[idx]
    climatology = samples.astype(np.float64).mean(axis=0).astype(np.float32)
    anomaly, percentile = derived.climatology_layers(path, DAY, START, climatology, cfg)
    assert (anomaly == 0).all()
    # the mean sits near the middle of the samples (mid-rank percentile)
    assert ((percentile > 30) & (percentile < 70)).all()

    today = (climatology + np.float32(0.05)).astype(np.float32)
    anomaly, percentile = derived.climatology_layers(path, DAY, START, today, cfg)
    np.testing.assert_allclose(anomaly, today - climatology, atol=1e-7)
    for r, c in [(0, 0), (3, 2), (5, 4)]:
        expected = percentileofscore(samples[:, r, c], today[r, c], kind="mean")
        assert percentile[r, c] == pytest.approx(expected, abs=1e-4)


def test_too_little_history_gives_nan(tmp_path) -> None:
    def values(d: dt.date) -> np.ndarray:
        v = np.full(WINDOW.shape, 0.2)
        if d.year < 2021:
            v[0, 0] = np.nan  # this cell has data in one year only
        return v

    path = _history(tmp_path, values)
    value = np.full(WINDOW.shape, 0.25, np.float32)
    anomaly, percentile = derived.climatology_layers(
        path, DAY, START, value, ClimatologyConfig(min_years=2)
    )
    assert np.isnan(anomaly[0, 0]) and np.isnan(percentile[0, 0])
    np.testing.assert_allclose(anomaly[1:], 0.05, atol=1e-6)
    assert (percentile[1:] == 100).all()
    # a product younger than min_years: nothing at all
    anomaly, _ = derived.climatology_layers(path, DAY, START, value, ClimatologyConfig(min_years=4))
    assert np.isnan(anomaly).all()


def test_baseline_climatology_counts_the_new_value_of_the_day(tmp_path) -> None:
    path = _history(tmp_path, lambda d: np.full(WINDOW.shape, 0.2))
    cfg = ClimatologyConfig(
        window_days=0, min_years=1, baseline_start=dt.date(2022, 1, 1),
        baseline_end=dt.date(2022, 12, 31),
    )  # fmt: skip
    value = np.full(WINDOW.shape, 0.3, np.float32)
    anomaly, percentile = derived.climatology_layers(path, DAY, START, value, cfg)
    # the only sample is the day itself (its new value): anomaly 0, mid-rank 50
    assert (anomaly == 0).all() and (percentile == 50).all()


def test_provisional_versions_are_matched_as_whole_tokens() -> None:
    markers = FLAGS.provisional_versions
    for version in ("ERA5T", "era5t", "IMERG-Early", "imerg late v07", "MSWEP NRT"):
        assert flags.is_provisional(version, markers), version
    for version in ("ERA5", "IMERG final V07B", "latest", "MSWEP past", "synthetic-v1-seed42"):
        assert not flags.is_provisional(version, markers), version


def test_provisional_mask_follows_the_cube_manifest(tmp_path) -> None:
    domain = Window(800, 2300, 20, 30)
    cube = Cube.create(tmp_path / "cube.zarr", M09, domain, START, dt.date(2023, 12, 31), 8)
    day = dt.date(2022, 6, 15)

    def ds(window: Window) -> xr.Dataset:
        values = np.full((1, *window.shape), 280.0, np.float32)
        coords = {"time": pd.to_datetime([day]), "y": M09.y_centres(window),
                  "x": M09.x_centres(window)}  # fmt: skip
        return xr.Dataset({"t2m": (("time", "y", "x"), values)}, coords=coords)

    cube.write("forcing", ds(domain), source="era5_land", version="ERA5")
    part = Window(805, 2310, 4, 6)
    cube.write("forcing", ds(part), source="era5", version="ERA5T")
    parts = written_parts(cube.manifest(day), "forcing")
    mask = flags.provisional_mask(parts, domain, FLAGS.provisional_versions)
    expected = np.zeros(domain.shape, bool)
    expected[5:9, 10:16] = True
    np.testing.assert_array_equal(mask, expected)


def test_physical_flag_masks() -> None:
    nan = np.nan
    stl1 = np.array([270.0, 280.0, nan, 280.0])
    t2m = np.array([280.0, 270.0, 280.0, nan])
    assert flags.frozen_mask(stl1, t2m, FLAGS).tolist() == [True, True, False, False]
    aspect = np.array([0.9, 0.9, 0.9, 0.2, nan])
    slope = np.array([5.0, 5.0, 0.3, 5.0, 5.0])
    smap = np.array([0.10, 0.30, 0.10, 0.10, 0.10])
    assert flags.dry_north_slope_mask(aspect, slope, smap, FLAGS).tolist() == [
        True, False, False, False, False,
    ]  # fmt: skip
    lat = np.array([70.0, 70.0, 70.0, 50.0])
    day_lst = np.array([260.0, 300.0, nan, 260.0])
    night_lst = np.array([250.0, 290.0, nan, 250.0])
    assert flags.permafrost_mask(lat, day_lst, night_lst, FLAGS).tolist() == [
        True, False, True, False,
    ]  # fmt: skip


def test_compose_flags_sets_bits_and_fill() -> None:
    valid = np.array([True, True, True, False])
    flag = flags.compose_flags(
        valid,
        gap_filled=np.array([True, False, True, True]),
        frozen=np.array([False, False, True, True]),
        permafrost=np.array([False, True, True, False]),
    )
    assert flag.dtype == np.uint8
    assert flag.tolist() == [1, 16, 1 | 4 | 16, FLAG_FILL]
    assert sum(QUALITY_FLAGS) < FLAG_FILL  # no valid combination equals the fill value
    with pytest.raises(ValueError, match="unknown quality-flag bits"):
        flags.compose_flags(valid, cloudy=valid)


def test_quicklook_is_a_png_of_the_map() -> None:
    window = M09.window_from_bbox(39.0, -4.6, 40.0, -3.6)
    land = np.ones(window.shape, bool)
    land[:, -3:] = False  # sea
    sm = np.where(land, 0.25, np.nan).astype(np.float32)
    png = render(sm, M09, window, DAY, land, "product 0.1.0")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(io.BytesIO(png))
    assert image.shape[0] > 300 and image.shape[1] > 500
    # an empty day still renders (no values, nothing to average)
    assert render(np.full(window.shape, np.nan, np.float32), M09, window, DAY)[:4] == b"\x89PNG"
