"""The world's ERA5 / ERA5-Land files, read back through the real sources from an archive.

World fields on a small coastal window over days that cross a month end -> the writer (CDS
files, one a month) -> ``Era5Source`` / ``Era5LandSource`` with ``archive=`` the folder ->
local, read, to_grid -> the input fields again, within what the regridding can keep.

The tolerance: a 9 km cell's value after the round trip is a weighted mean of provider
pixels near it (area mean for ERA5's 0.25 degree pixels, bilinear between ERA5-Land's 0.1
degree pixel centres), and each pixel is the mean of the cells inside it. So the result lies
within the range of the input over the cells within 1.5 pixels plus one cell of the cell:
6 cells for 0.25 degree (27.8 km), 3 cells for 0.1 degree (11.1 km), at 9 km a cell.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from gsm3_ops.grid import M09
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.era5 import Era5LandSource, Era5Options, Era5Source
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.world.era5 import LAND_STEP, RAIN_BY_HOUR, write_era5, write_era5_land

WINDOW = M09.window_from_bbox(39.0, -4.6, 40.0, -3.6)  # Mombasa coast: land and sea
FIRST, LAST = dt.date(2020, 1, 29), dt.date(2020, 2, 3)
RADIUS = {"era5": 6, "era5_land": 3}  # cells: 1.5 provider pixels + 1 (module docstring)


@pytest.fixture(scope="module")
def world() -> xr.Dataset:
    return SyntheticSource().forcing(M09, WINDOW, FIRST, LAST)


@pytest.fixture(scope="module")
def archive(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cds") / "downloads"
    write_era5(world, M09, WINDOW, out, preliminary_from=dt.date(2020, 2, 2))
    write_era5_land(world, M09, WINDOW, out / "land")  # any sub-folder
    return out


def _local_range(values: np.ndarray, radius: int) -> np.ndarray:
    """max - min of the valid values within ``radius`` cells of each cell."""
    size = 2 * radius + 1
    high = ndimage.maximum_filter(np.where(np.isfinite(values), values, -np.inf), size=size)
    low = ndimage.minimum_filter(np.where(np.isfinite(values), values, np.inf), size=size)
    return high - low


@pytest.mark.parametrize("source_type", [Era5Source, Era5LandSource])
def test_round_trip_through_the_readers(world, archive, source_type):
    source = source_type(Era5Options(archive=archive))
    assert source.first_date() == FIRST
    # The last day's accumulations end at 00 UTC of a day the archive does not have.
    assert source.latest_date(dt.date(2030, 1, 1)) == LAST - dt.timedelta(days=1)
    day = FIRST
    while day < LAST:
        granule = source.local(day, archive)
        gridded = source.to_grid(source.read(granule), M09, WINDOW)
        for name in source.provides:
            truth = world[name].sel(time=day.isoformat()).values
            got = gridded[name].values[0]
            land = np.isfinite(truth)
            assert np.isfinite(got[land]).all(), (name, day)
            tol = _local_range(truth, RADIUS[source.name]) + 1e-4 * np.abs(truth) + 1e-6
            err = np.abs(got - truth)[land]
            assert (err <= tol[land]).all(), (name, day, float(err.max()))
        day += dt.timedelta(days=1)


def test_month_end_day_takes_two_files_and_versions_follow_expver(archive):
    era5 = Era5Source(Era5Options(archive=archive))
    end_of_month = era5.local(dt.date(2020, 1, 31), archive)
    assert [p.name for p in end_of_month.files] == [
        "reanalysis-era5-single-levels_total_precipitation_20200129-20200131.nc",
        "reanalysis-era5-single-levels_total_precipitation_20200201-20200203.nc",
    ]
    assert end_of_month.version == "ERA5"
    # 2 Feb ends at 00 UTC of 3 Feb... all written as ERA5T from 2 Feb on.
    assert era5.local(dt.date(2020, 2, 1), archive).version == "ERA5T"  # its 24:00 step
    land = Era5LandSource(Era5Options(archive=archive))
    granule = land.local(dt.date(2020, 1, 31), archive)
    assert [p.name for p in granule.files] == [
        "derived-era5-land-daily-statistics_daily-mean_20200129-20200131.zip",
        "reanalysis-era5-land_radiation_20200201-20200203.nc",
    ]
    assert granule.version == "ERA5-Land" and granule.notes == ("time_zone:UTC+00:00",)


def test_missing_day_is_one_line_naming_the_archive(archive):
    for source in (Era5Source(), Era5LandSource()):
        with pytest.raises(DateNotServedError) as info:
            source.local(LAST + dt.timedelta(days=3), archive)
        text = str(info.value)
        assert "\n" not in text and str(archive) in text and "2020-02-06" in text
    with pytest.raises(DateNotServedError, match=r"no complete day of ssrd for 2020-02-03"):
        Era5LandSource().local(LAST, archive)


def test_files_are_what_the_cds_delivers(world, archive):
    (zip_path,) = (archive / "land").glob("derived-era5-land-daily-statistics_*_20200129-*.zip")
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(
            f"{cds}_0_daily-mean.nc"
            for cds in (
                "2m_temperature",
                "2m_dewpoint_temperature",
                "surface_pressure",
                "10m_u_component_of_wind",
                "10m_v_component_of_wind",
                "soil_temperature_level_1",
                "leaf_area_index_high_vegetation",
                "leaf_area_index_low_vegetation",
                "snow_depth_water_equivalent",
            )
        )
    tp_path = archive / "reanalysis-era5-single-levels_total_precipitation_20200201-20200203.nc"
    with xr.open_dataset(tp_path) as tp:
        assert tp["tp"].dims == ("valid_time", "latitude", "longitude")
        assert tp["tp"].attrs["units"] == "m" and tp["tp"].attrs["GRIB_paramId"] == 228
        assert tp.sizes["valid_time"] == 72 and list(np.unique(tp["expver"])) == ["0001", "0005"]
        assert float(tp["latitude"][0]) > float(tp["latitude"][-1])  # north to south
        assert np.allclose(np.diff(tp["longitude"]), 0.25)
        # The 24 accumulations valid 01..24 UTC of 1 Feb, in metres, add up to the day's total.
        day = tp["tp"].sel(valid_time=slice("2020-02-01T01", "2020-02-02T00"))
        assert day.sizes["valid_time"] == 24
        total = day.sum("valid_time")
        i, j = np.unravel_index(int(np.argmax(total.values)), total.shape)  # where it rained
        shares = day.isel(latitude=i, longitude=j) / total.isel(latitude=i, longitude=j)
        np.testing.assert_allclose(shares, RAIN_BY_HOUR, rtol=1e-4)
    rad_path = archive / "land" / "reanalysis-era5-land_radiation_20200129-20200131.nc"
    with xr.open_dataset(rad_path) as rad:
        assert rad["ssrd"].attrs["units"] == "J m**-2"
        assert np.allclose(np.diff(rad["latitude"]), -LAND_STEP)
        # 00 UTC of 30 Jan holds the total of 29 Jan: about 86400 s x a daily mean flux.
        mean = float(world["ssrd"].sel(time="2020-01-29").mean())
        total = float(rad["ssrd"].sel(valid_time="2020-01-30T00").mean())
        assert total / 86400.0 == pytest.approx(mean, rel=0.1)


def test_weekly_files_serve_the_same_days(world, tmp_path):
    write_era5(world, M09, WINDOW, tmp_path, days_per_file=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "reanalysis-era5-single-levels_total_precipitation_20200129-20200130.nc"
    assert len(names) == 3
    source = Era5Source(Era5Options(archive=tmp_path))
    assert source.latest_date(dt.date(2030, 1, 1)) == LAST - dt.timedelta(days=1)
    (tmp_path / names[1]).unlink()  # 31 Jan - 1 Feb gone: 30 Jan lacks its 24:00 step too
    with pytest.raises(DateNotServedError, match=r"tp for 2020-01-30 in the archive"):
        source.local(dt.date(2020, 1, 30), tmp_path)
    assert source.latest_date(dt.date(2030, 1, 1)) == LAST - dt.timedelta(days=1)
    assert source.local(dt.date(2020, 1, 29), tmp_path).files == (tmp_path / names[0],)
