"""ERA5 / ERA5-Land: CDS requests, GRIB and netCDF reading, daily aggregation, versions, errors.

The real fixtures (``era5/``) check the readers; the fetch tests hand back files written here
in the real formats: GRIB messages built with eccodes from its ERA5-like sample (forecast
hypercubes for precipitation, 0-24 h accumulations for ERA5-Land radiation) and netCDF in the
new CDS layout (``valid_time``, ``expver`` coordinate) or the old one (``time``, ``expver``
dimension).
"""

from __future__ import annotations

# pyproj before eccodes: eccodes' bundled PROJ otherwise breaks pyproj (see sources/grib.py).
import pyproj  # noqa: F401

# isort: split

import datetime as dt
import logging
import shutil
from pathlib import Path

import eccodes
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pydantic import ValidationError

from gsm3_ops.grid import M09
from gsm3_ops.sources import era5, era5_daily, grib
from gsm3_ops.sources.base import (
    CorruptFileError,
    DateNotServedError,
    Granule,
    GriddedSource,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.catalog import gridded_source
from gsm3_ops.sources.checks import check_gridded

DAY = dt.date(2024, 3, 10)
AN = "era5/ecmwf_models_testdata/ERA5_AN_20100101_0000"
T2M_UK = "era5/xarray_data/era5-2mt-2019-03-uk.grib"

# A small ERA5-Land-like grid across the prime meridian, north to south.
LAT = np.round(52.0 - 0.1 * np.arange(8), 1)
LON360 = np.round(np.r_[359.6:360.0:0.1, 0.0:0.55:0.1], 1)  # 359.6 .. 0.5 (GRIB convention)
LON180 = np.round(((LON360 + 180) % 360) - 180, 1)  # -0.4 .. 0.5 (new CDS netCDF)


# --- writing real-format files ---------------------------------------------------------------


def write_grib(path: Path, messages: list[dict], lat=LAT, lon=LON360, mode: str = "wb") -> Path:
    """GRIB1 messages from eccodes' ERA5-like sample; each dict sets keys and ``values``."""
    sample = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib1")
    step = float(abs(lat[1] - lat[0]))
    grid = {
        "Ni": len(lon),
        "Nj": len(lat),
        "latitudeOfFirstGridPointInDegrees": float(lat[0]),
        "latitudeOfLastGridPointInDegrees": float(lat[-1]),
        "longitudeOfFirstGridPointInDegrees": float(lon[0]),
        "longitudeOfLastGridPointInDegrees": float(lon[-1]),
        "iDirectionIncrementInDegrees": step,
        "jDirectionIncrementInDegrees": step,
    }
    with open(path, mode) as f:
        for msg in messages:
            h = eccodes.codes_clone(sample)
            for key, value in {"class": "ea", "bitsPerValue": 24, **grid}.items():
                eccodes.codes_set(h, key, value)
            for key in ("shortName", "expver", "dataDate", "dataTime", "stepType"):
                if key in msg:
                    eccodes.codes_set(h, key, msg[key])
            if "endStep" in msg:
                eccodes.codes_set(h, "startStep", msg.get("startStep", 0))
                eccodes.codes_set(h, "endStep", msg["endStep"])
            eccodes.codes_set_values(h, np.asarray(msg["values"], dtype=np.float64).ravel())
            eccodes.codes_write(h, f)
            eccodes.codes_release(h)
    eccodes.codes_release(sample)
    return path


def era5_tp_messages(day: dt.date, expver: str = "0001", drop_hour: int | None = None):
    """ERA5 hourly precipitation as the CDS serves it: forecasts from 06 and 18 UTC, steps 1-12.

    Covers valid times from day-1 19:00 to day+2 06:00; returns (messages, {valid time: field}).
    """
    rng = np.random.default_rng(day.toordinal())
    messages, by_valid = [], {}
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(18))
    for base in [start + dt.timedelta(hours=12 * k) for k in range(5)]:
        for step in range(1, 13):
            valid = base + dt.timedelta(hours=step)
            if drop_hour is not None and valid == dt.datetime.combine(day, dt.time(drop_hour)):
                continue
            values = rng.gamma(0.3, 4e-4, size=(len(LAT), len(LON360)))  # metres per hour
            values[0, 0] = 0.0
            messages.append(
                {
                    "shortName": "tp",
                    "stepType": "accum",
                    "dataDate": int(base.strftime("%Y%m%d")),
                    "dataTime": base.hour * 100,
                    "startStep": step - 1,
                    "endStep": step,
                    "expver": expver,
                    "values": values,
                }
            )
            by_valid[valid] = values
    return messages, by_valid


def decoded_tp_total(path: Path, day: dt.date) -> np.ndarray:
    """Independent check: eccodes' own validity date/time, summed over (day 00, day+1 00]."""
    total = np.zeros((len(LAT), len(LON360)))
    first = dt.datetime.combine(day, dt.time())
    with open(path, "rb") as f:
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            valid = dt.datetime.strptime(
                f"{eccodes.codes_get(h, 'validityDate')}{eccodes.codes_get(h, 'validityTime'):04d}",
                "%Y%m%d%H%M",
            )
            if first < valid <= first + dt.timedelta(days=1):
                total += eccodes.codes_get_values(h).reshape(total.shape)
            eccodes.codes_release(h)
    return total * 1000.0


LAND_VALUES = {
    "t2m": 281.5,
    "d2m": 276.0,
    "sp": 101000.0,
    "u10": 3.2,
    "v10": -1.5,
    "stl1": 283.0,
    "lai_hv": 2.5,
    "lai_lv": 1.8,
    "sd": 0.012,
}


def write_land_daily(path: Path, day: dt.date, expver: str = "0005", sea_nan: bool = True):
    """The new CDS daily-statistics netCDF: (valid_time, latitude, longitude), expver coord."""
    rng = np.random.default_rng(1)
    shape = (1, len(LAT), len(LON180))
    data = {}
    for name, mean in LAND_VALUES.items():
        values = (mean * (1 + 0.01 * rng.standard_normal(shape))).astype(np.float32)
        if sea_nan:
            values[0, -1, :] = np.nan  # ERA5-Land is missing over the sea
        data[name] = (("valid_time", "latitude", "longitude"), values)
    ds = xr.Dataset(
        data,
        coords={
            "valid_time": [np.datetime64(day.isoformat(), "ns")],
            "latitude": LAT.astype(np.float64),
            "longitude": LON180.astype(np.float64),
            "number": 0,
            "expver": ("valid_time", [expver]),
        },
    )
    ds.to_netcdf(path, engine="netcdf4")
    return ds


def write_land_radiation(path: Path, day: dt.date, expver: str = "0005", short_names=None):
    """ERA5-Land radiation valid at 00 UTC of day+1: base ``day`` 00 UTC, step 0-24 h, J m-2."""
    j = np.arange(len(LAT) * len(LON360), dtype=np.float64).reshape(len(LAT), len(LON360))
    fields = {"ssrd": 8.64e6 + 1e4 * j, "strd": 2.592e7 + 1e4 * j}
    messages = [
        {
            "shortName": short,
            "stepType": "accum",
            "dataDate": int(day.strftime("%Y%m%d")),
            "dataTime": 0,
            "startStep": 0,
            "endStep": 24,
            "expver": expver,
            "values": fields[short],
        }
        for short in (short_names or ("ssrd", "strd"))
    ]
    write_grib(path, messages)
    return fields


class FakeCds:
    """A ``cdsapi.Client`` stand-in: records each request and writes a prepared file."""

    def __init__(self, files: dict[str, Path] | None = None, error: Exception | None = None):
        self.files = files or {}
        self.error = error
        self.calls: list[tuple[str, dict, str]] = []

    def retrieve(self, name, request, target=None):
        self.calls.append((name, request, target))
        if self.error is not None:
            Path(target).write_bytes(b"partial")
            raise self.error
        shutil.copyfile(self.files[name], target)


# --- reading the real fixtures ----------------------------------------------------------------


def test_grib_read_one_short_name_at_a_time_keeps_swvl2(fixtures, tmp_path):
    grb = fixtures / f"{AN}.grb"
    # The pitfall: one plain cfgrib open of this file silently drops swvl2.
    with xr.open_dataset(grb, engine="cfgrib", backend_kwargs={"indexpath": ""}) as plain:
        assert "swvl2" not in plain.data_vars
    link = tmp_path / "an.grb"  # a link in an empty folder shows any .idx written beside it
    link.symlink_to(grb)
    fields = grib.open_fields(link, ["swvl1", "swvl2", "lsm"])
    twin = grib.open_fields(fixtures / f"{AN}.nc", ["swvl1", "swvl2", "lsm"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["an.grb"]
    for name in ("swvl1", "swvl2", "lsm"):
        a, b = fields.data[name], twin.data[name]
        assert a.dims == ("valid_time", "latitude", "longitude") and a.shape == (1, 721, 1440)
        np.testing.assert_array_equal(a.longitude, b.longitude)
        np.testing.assert_array_equal(a.latitude, b.latitude)
        # The netCDF twin was packed to 16-bit integers: equal to that precision.
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-5)
    assert not np.allclose(fields.data["swvl1"], fields.data["swvl2"])
    assert fields.data["valid_time"].values[0] == np.datetime64("2010-01-01T00:00")
    assert fields.expvers == {"0001"} and twin.expvers == frozenset()


def test_longitudes_folded_and_latitudes_kept_descending(fixtures):
    lsm = grib.open_fields(fixtures / f"{AN}.nc", ["lsm"]).data["lsm"]
    with xr.open_dataset(fixtures / f"{AN}.nc") as raw:
        raw_lsm = raw["lsm"].load()
    assert float(lsm.longitude[0]) == -180.0 and float(lsm.longitude[-1]) == 179.75
    assert float(lsm.latitude[0]) == 90.0 and float(lsm.latitude[-1]) == -90.0
    # Same field, only the longitudes rolled: 0..360 -> -180..180.
    np.testing.assert_array_equal(
        lsm.sel(longitude=-60.0).values[0], raw_lsm.sel(longitude=300.0).values
    )
    np.testing.assert_array_equal(lsm.sel(longitude=10.0).values[0], raw_lsm.sel(longitude=10.0))


def test_sea_points_masked_with_lsm_for_land_only_variables(fixtures):
    ds = grib.open_fields(fixtures / f"{AN}.grb", ["swvl1", "lsm"]).data
    assert np.isfinite(ds["swvl1"].values).all()  # ERA5 is not masked over the sea
    masked = grib.mask_sea(ds)
    sea = ds["lsm"].values < 0.5
    assert np.isnan(masked["swvl1"].values[sea]).all()
    np.testing.assert_array_equal(masked["swvl1"].values[~sea], ds["swvl1"].values[~sea])
    np.testing.assert_array_equal(masked["lsm"].values, ds["lsm"].values)  # not land-only


@pytest.fixture(scope="module")
def uk_t2m(fixtures) -> xr.DataArray:
    """The 744 hourly t2m fields of March 2019 (read once: 744 GRIB messages take seconds)."""
    return grib.open_fields(fixtures / T2M_UK, ["t2m"]).data["t2m"]


def _daily_means(hourly: xr.DataArray, path: Path) -> xr.DataArray:
    """(time, ...) means of every UTC day of ``hourly``, through the reader's daily_value."""
    days = pd.DatetimeIndex(hourly["valid_time"].values).normalize().unique()
    means = [era5_daily.daily_value(hourly, d.date(), path) for d in days]
    return xr.concat(means, pd.Index(days, name="time"))


def test_hourly_t2m_to_utc_daily_means(uk_t2m, fixtures):
    assert uk_t2m.shape == (744, 33, 49)
    times = pd.DatetimeIndex(uk_t2m["valid_time"].values)
    assert times[0] == pd.Timestamp("2019-03-01T00:00") and times[-1] == pd.Timestamp(
        "2019-03-31T23:00"
    )
    assert (np.diff(times.values) == np.timedelta64(1, "h")).all()
    daily = _daily_means(uk_t2m, fixtures / T2M_UK)
    assert daily.sizes["time"] == 31
    expected_days = pd.date_range("2019-03-01", "2019-03-31", freq="D").values
    np.testing.assert_array_equal(daily["time"].values, expected_days)
    # Independently: 744 hourly steps from 00 UTC, reshaped into 31 days of 24 hours.
    raw = uk_t2m.values.astype(np.float64)
    expected = raw.reshape(31, 24, 33, 49).mean(axis=1)
    np.testing.assert_allclose(daily.values, expected, rtol=1e-6)
    # Kelvin, and March in the UK.
    assert float(daily.min()) > 250.0 and float(daily.max()) < 295.0


def test_incomplete_day_is_refused_not_averaged(uk_t2m, fixtures):
    gappy = uk_t2m.drop_isel(valid_time=[24 * 4 + 7])  # 05 March, 07 UTC
    with pytest.raises(SourceError, match=r"23 time steps on 2019-03-05"):
        _daily_means(gappy, fixtures / T2M_UK)


def test_to_grid_on_real_hourly_fixture(uk_t2m, fixtures):
    day = _daily_means(uk_t2m, fixtures / T2M_UK).isel(time=[9])  # 10 March 2019
    native = xr.Dataset({"t2m": day})
    window = M09.window_from_bbox(-3.0, 52.0, 0.0, 54.0)
    out = era5.Era5LandSource().to_grid(native, M09, window)
    assert out["t2m"].dims == ("time", "y", "x") and out["t2m"].dtype == np.float32
    assert out["t2m"].shape == (1, *window.shape)
    check_gridded(out, "era5_land")
    # A cell centre near (-1.5 E, 53 N): bilinear between the four 0.25 degree neighbours.
    row, col = M09.lonlat_to_rowcol(np.array([-1.5]), np.array([53.0]))
    lon, lat = M09.rowcol_to_lonlat(row, col)
    value = float(out["t2m"].values[0, row[0] - window.row0, col[0] - window.col0])
    box = day.sel(latitude=slice(lat[0] + 0.25, lat[0] - 0.25)).sel(
        longitude=slice(lon[0] - 0.25, lon[0] + 0.25)
    )
    assert float(box.min()) <= value <= float(box.max())
    expected = day.interp(latitude=lat[0], longitude=lon[0]).values[0]
    assert value == pytest.approx(float(expected), abs=1e-3)


# --- ERA5 precipitation ---------------------------------------------------------------------


def test_era5_fetch_request_target_and_read(tmp_path):
    messages, _ = era5_tp_messages(DAY)
    served = write_grib(tmp_path / "served.grib", messages)
    client = FakeCds({"reanalysis-era5-single-levels": served})
    source = era5.Era5Source(client=client)
    work = tmp_path / "work"
    granule = source.fetch(DAY, work)
    assert client.calls == [
        (
            "reanalysis-era5-single-levels",
            {
                "product_type": ["reanalysis"],
                "variable": ["total_precipitation"],
                "year": ["2024"],
                "month": ["03"],
                "day": ["10", "11"],
                "time": [f"{h:02d}:00" for h in range(24)],
                "data_format": "grib",
                "download_format": "unarchived",
            },
            str(work / "era5_tp_20240310.grib.part"),
        )
    ]
    assert granule == Granule("era5", DAY, (work / "era5_tp_20240310.grib",), "ERA5")
    assert sorted(p.name for p in work.iterdir()) == ["era5_tp_20240310.grib"]
    native = source.read(granule)
    da = native["precip_era5"]
    assert da.dims == ("time", "latitude", "longitude") and da.dtype == np.float32
    assert da.attrs["units"] == "mm day-1"
    np.testing.assert_array_equal(da["time"].values, [np.datetime64("2024-03-10")])
    np.testing.assert_allclose(da.values[0], decoded_tp_total(served, DAY), rtol=1e-5, atol=1e-6)


def test_era5_request_spans_month_and_year_ends_with_area():
    source = era5.Era5Source(era5.Era5Options(area=(60.0, -10.0, 35.0, 30.0)))
    (req,) = source.requests(dt.date(2023, 12, 31))
    assert (req.request["year"], req.request["month"], req.request["day"]) == (
        ["2023", "2024"],
        ["01", "12"],
        ["01", "31"],
    )
    assert req.request["area"] == [60.0, -10.0, 35.0, 30.0]
    assert req.filename == "era5_tp_20231231.grib"


def test_era5t_recorded_from_expver(tmp_path):
    prelim, _ = era5_tp_messages(DAY, expver="0005")
    client = FakeCds({"reanalysis-era5-single-levels": write_grib(tmp_path / "t.grib", prelim)})
    granule = era5.Era5Source(client=client).fetch(DAY, tmp_path / "w")
    assert granule.version == "ERA5T"
    # Where ERA5T meets final ERA5 inside one request: two expvers, read one at a time.
    final, _ = era5_tp_messages(DAY, expver="0001")
    mixed = [m for m in final if m["dataDate"] < 20240310] + [
        {**m, "expver": "0005"} for m in final if m["dataDate"] >= 20240310
    ]
    path = write_grib(tmp_path / "mixed.grib", mixed)
    assert grib.expvers_of(path) == {"0001", "0005"}
    g = Granule("era5", DAY, (path,), "ERA5T")
    out = era5.Era5Source().read(g)["precip_era5"].values[0]
    np.testing.assert_allclose(out, decoded_tp_total(path, DAY), rtol=1e-5, atol=1e-6)


def test_era5_missing_hour_and_negative_packing_noise(tmp_path):
    messages, _ = era5_tp_messages(DAY, drop_hour=13)
    path = write_grib(tmp_path / "gap.grib", messages)
    with pytest.raises(SourceError, match=r"gap.grib: tp lacks 1 of the 24 hourly .*T13:00"):
        era5.Era5Source().read(Granule("era5", DAY, (path,), "ERA5"))
    messages, _ = era5_tp_messages(DAY)
    for m in messages:
        m["values"] = m["values"] - 1e-9  # packing noise around zero
    path = write_grib(tmp_path / "neg.grib", messages)
    out = era5.Era5Source().read(Granule("era5", DAY, (path,), "ERA5"))["precip_era5"]
    assert float(out.min()) == 0.0


# --- ERA5-Land ------------------------------------------------------------------------------


def _land_client(tmp_path: Path, day: dt.date = DAY, expver: str = "0005") -> FakeCds:
    daily = tmp_path / "served_daily.nc"
    write_land_daily(daily, day, expver)
    rad = write_land_radiation(tmp_path / "served_rad.grib", day, expver)
    assert rad
    return FakeCds(
        {
            "derived-era5-land-daily-statistics": daily,
            "reanalysis-era5-land": tmp_path / "served_rad.grib",
        }
    )


def test_era5_land_fetch_requests_exactly(tmp_path):
    client = _land_client(tmp_path)
    source = era5.Era5LandSource(era5.Era5Options(area=(52.1, -0.5, 51.2, 0.6)), client=client)
    work = tmp_path / "work"
    granule = source.fetch(DAY, work)
    area = [52.1, -0.5, 51.2, 0.6]
    assert client.calls == [
        (
            "derived-era5-land-daily-statistics",
            {
                "variable": [
                    "2m_temperature",
                    "2m_dewpoint_temperature",
                    "surface_pressure",
                    "10m_u_component_of_wind",
                    "10m_v_component_of_wind",
                    "soil_temperature_level_1",
                    "leaf_area_index_high_vegetation",
                    "leaf_area_index_low_vegetation",
                    "snow_depth_water_equivalent",
                ],
                "year": ["2024"],
                "month": ["03"],
                "day": ["10"],
                "daily_statistic": "daily_mean",
                "time_zone": "utc+00:00",
                "frequency": "1_hourly",
                "area": area,
            },
            str(work / "era5_land_daily_20240310.nc.part"),
        ),
        (
            "reanalysis-era5-land",
            {
                "variable": [
                    "surface_solar_radiation_downwards",
                    "surface_thermal_radiation_downwards",
                ],
                "year": ["2024"],
                "month": ["03"],
                "day": ["11"],
                "time": ["00:00"],
                "data_format": "grib",
                "download_format": "unarchived",
                "area": area,
            },
            str(work / "era5_land_rad_20240310.grib.part"),
        ),
    ]
    assert granule.files == (
        work / "era5_land_daily_20240310.nc",
        work / "era5_land_rad_20240310.grib",
    )
    assert granule.version == "ERA5-Land-ERA5T"


def test_era5_land_read_units_and_day_boundaries(tmp_path):
    client = _land_client(tmp_path)
    source = era5.Era5LandSource(client=client)
    granule = source.fetch(DAY, tmp_path / "work")
    native = source.read(granule)
    assert set(native.data_vars) == set(source.provides)
    daily = xr.open_dataset(tmp_path / "served_daily.nc")
    for name, (_, nc, factor) in era5.LAND_DAILY.items():
        np.testing.assert_allclose(
            native[name].values, daily[nc].values.astype(np.float64) * factor, rtol=1e-6
        )
    assert native["swe"].attrs["units"] == "kg m-2"
    assert float(native["swe"].mean()) == pytest.approx(12.0, rel=0.05)  # 0.012 m -> 12 kg m-2
    assert np.isnan(native["t2m"].values[0, -1]).all()  # sea stays missing
    rad = write_land_radiation(tmp_path / "again.grib", DAY)
    # 00 UTC of the next day holds the day's total: J m-2 / 86400 s = W m-2.
    np.testing.assert_allclose(native["ssrd"].values[0], rad["ssrd"] / 86400.0, rtol=1e-6)
    np.testing.assert_allclose(native["strd"].values[0], rad["strd"] / 86400.0, rtol=1e-6)
    assert float(native["ssrd"].min()) == pytest.approx(100.0, rel=1e-6)
    # Longitudes of the GRIB (359.6..0.5) and the netCDF (-0.4..0.5) were made one grid.
    np.testing.assert_allclose(native["longitude"].values, np.sort(LON180))
    for name in source.provides:
        assert native[name].dims == ("time", "latitude", "longitude")
        assert native[name].dtype == np.float32


def test_era5_land_to_grid_methods_and_registry_checks(tmp_path, monkeypatch):
    client = _land_client(tmp_path)
    source = era5.Era5LandSource(client=client)
    native = source.read(source.fetch(DAY, tmp_path / "work"))
    used = {}
    real = era5.latlon_to_ease

    def spy(da, grid, window, method):
        # The variables of one method are regridded as one stack (one set of weights).
        for name in da["variable"].values if "variable" in da.dims else [da.name]:
            used[str(name)] = method
        return real(da, grid, window, method)

    monkeypatch.setattr(era5, "latlon_to_ease", spy)
    window = M09.window_from_bbox(-0.3, 51.45, 0.4, 51.95)
    out = source.to_grid(native, M09, window)
    assert used["ssrd"] == used["strd"] == "area"
    assert {used[n] for n in source.provides if n not in ("ssrd", "strd")} == {"bilinear"}
    check_gridded(out, "era5_land")
    for name in source.provides:
        assert out[name].dims == ("time", "y", "x") and out[name].dtype == np.float32
    np.testing.assert_array_equal(out["y"].values, M09.y_centres(window))


def test_old_cds_netcdf_with_expver_dimension(tmp_path):
    """Old CDS: ``time`` and an ``expver`` dimension, each half NaN where the other holds data."""
    values = np.full((1, 2, len(LAT), len(LON180)), np.nan, dtype=np.float32)
    values[0, 0, :4] = 280.0
    values[0, 1, 4:] = 285.0
    path = tmp_path / "old.nc"
    xr.Dataset(
        {"t2m": (("time", "expver", "latitude", "longitude"), values)},
        coords={
            "time": [np.datetime64("2021-06-01", "ns")],
            "expver": [1, 5],
            "latitude": LAT,
            "longitude": LON360,
        },
    ).to_netcdf(path)
    fields = grib.open_fields(path, ["t2m"])
    assert fields.expvers == {"0001", "0005"}
    t2m = fields.data["t2m"]
    assert t2m.dims == ("valid_time", "latitude", "longitude")
    assert (t2m.values[0, :4] == 280.0).all() and (t2m.values[0, 4:] == 285.0).all()
    assert grib.expvers_of(path) == {"0001", "0005"}


def test_local_files_in_folder_or_kept_raw_layout(tmp_path):
    client = _land_client(tmp_path)
    source = era5.Era5LandSource(client=client)
    kept = tmp_path / "raw" / "era5_land" / DAY.isoformat()
    fetched = source.fetch(DAY, kept)
    assert source.local(DAY, tmp_path / "raw") == fetched
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copyfile(fetched.files[0], flat / "era5_land_daily_20240310.nc")
    # A radiation file downloaded as netCDF by hand is fine too.
    rad = xr.open_dataset(fetched.files[1], engine="cfgrib", backend_kwargs={"indexpath": ""})
    rad.to_netcdf(flat / "era5_land_rad_20240310.nc")
    granule = source.local(DAY, flat)
    assert granule.files == (
        flat / "era5_land_daily_20240310.nc",
        flat / "era5_land_rad_20240310.nc",
    )
    native = source.read(granule)
    np.testing.assert_allclose(native["ssrd"], source.read(fetched)["ssrd"], rtol=1e-6)
    # Files are found by what they hold, not by name: the missing day names the archive.
    with pytest.raises(DateNotServedError, match=r"no complete day of t2m for 2024-03-11 .*flat"):
        source.local(DAY + dt.timedelta(days=1), flat)


# --- dates, versions, options ---------------------------------------------------------------


def test_dates_served_and_future_days_refused(tmp_path):
    client = FakeCds()
    source = era5.Era5Source(client=client)
    today = dt.date(2025, 7, 20)
    assert source.latest_date(today) == dt.date(2025, 7, 15)
    assert source.first_date() == dt.date(1940, 1, 1)
    assert era5.Era5LandSource().first_date() == dt.date(1950, 1, 1)
    lagged = era5.Era5Source(era5.Era5Options(latency_days=8))
    assert lagged.latest_date(today) == dt.date(2025, 7, 12)
    utc_today = dt.datetime.now(dt.UTC).date()
    with pytest.raises(DateNotServedError, match="'era5' serves 1940-01-01"):
        source.fetch(utc_today, tmp_path)
    with pytest.raises(DateNotServedError):
        era5.Era5LandSource(client=client).fetch(dt.date(1949, 12, 31), tmp_path)
    assert client.calls == []
    assert source.version(utc_today - dt.timedelta(days=6)) == "ERA5T"
    assert source.version(dt.date(2000, 1, 1)) == "ERA5"
    assert era5.Era5LandSource().version(utc_today - dt.timedelta(days=6)) == "ERA5-Land-ERA5T"


def test_options_and_catalogue():
    source = gridded_source("era5_land", {"area": [52, -1, 51, 1], "latency_days": 6})
    assert isinstance(source, era5.Era5LandSource) and isinstance(source, GriddedSource)
    assert source.options.area == (52.0, -1.0, 51.0, 1.0)
    assert isinstance(gridded_source("era5"), era5.Era5Source)
    with pytest.raises(ValidationError):
        era5.Era5Options(areas=[1, 2, 3, 4])
    with pytest.raises(ValidationError, match="north, west, south, east"):
        era5.Era5Options(area=(40, 0, 50, 10))
    with pytest.raises(SourceError, match=r"sources\.options\.era5\.latency_days"):
        gridded_source("era5", {"latency_days": -1})


def test_window_area_covers_the_window():
    window = M09.window_from_bbox(30.0, -5.0, 42.0, 5.0)
    north, west, south, east = era5.window_area(M09, window, margin=0.5)
    assert north > 5.5 and south < -5.5 and west < 29.5 and east > 42.5
    assert north < 6.0 and south > -6.0 and west > 29.0 and east < 43.0


# --- bad input ------------------------------------------------------------------------------


def test_truncated_and_corrupt_files_name_the_path(tmp_path):
    messages, _ = era5_tp_messages(DAY)
    good = write_grib(tmp_path / "good.grib", messages)
    cut = tmp_path / "cut.grib"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2 + 100])  # inside a message
    with pytest.raises(CorruptFileError, match=r"cut.grib: unreadable GRIB"):
        era5.Era5Source().read(Granule("era5", DAY, (cut,), "ERA5"))
    daily = tmp_path / "daily.nc"
    write_land_daily(daily, DAY)
    broken = tmp_path / "broken.nc"
    broken.write_bytes(daily.read_bytes()[:2000])
    with pytest.raises(CorruptFileError, match=r"broken.nc: unreadable netCDF"):
        grib.open_fields(broken, ["t2m"])
    junk = tmp_path / "junk.grib"
    junk.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(CorruptFileError, match=r"junk.grib: neither GRIB nor netCDF"):
        grib.open_fields(junk, ["tp"])
    with pytest.raises(CorruptFileError, match=r"missing.grib: cannot be read"):
        grib.open_fields(tmp_path / "missing.grib", ["tp"])
    # The bad files did not touch the good one.
    assert grib.open_fields(good, ["tp"]).data["tp"].sizes["valid_time"] == 60


def test_wrong_variable_is_named(tmp_path):
    t2m_only = write_grib(
        tmp_path / "t2m.grib", [{"shortName": "2t", "values": np.full((8, 10), 280.0)}]
    )
    with pytest.raises(MissingVariableError, match=r"t2m.grib: no variable 'tp'.*holds 2t"):
        era5.Era5Source().read(Granule("era5", DAY, (t2m_only,), "ERA5"))
    daily = tmp_path / "daily.nc"
    write_land_daily(daily, DAY).drop_vars("stl1").to_netcdf(tmp_path / "no_stl1.nc")
    rad = tmp_path / "rad.grib"
    write_land_radiation(rad, DAY, short_names=("ssrd",))
    granule = Granule("era5_land", DAY, (tmp_path / "no_stl1.nc", rad), "ERA5-Land")
    with pytest.raises(MissingVariableError, match=r"no_stl1.nc: no variable 'stl1'"):
        era5.Era5LandSource().read(granule)
    granule = Granule("era5_land", DAY, (daily, rad), "ERA5-Land")
    with pytest.raises(MissingVariableError, match=r"rad.grib: no variable 'strd'"):
        era5.Era5LandSource().read(granule)


def test_all_nan_field_names_date_and_variable(tmp_path):
    ds = write_land_daily(tmp_path / "ok.nc", DAY)
    ds["lai_hv"][:] = np.nan
    ds.to_netcdf(tmp_path / "nan.nc")
    rad = tmp_path / "rad.grib"
    write_land_radiation(rad, DAY)
    granule = Granule("era5_land", DAY, (tmp_path / "nan.nc", rad), "ERA5-Land")
    with pytest.raises(SourceError, match=r"nan.nc: lai_hv on 2024-03-10 has no valid value"):
        era5.Era5LandSource().read(granule)


def test_wrong_day_in_file_is_refused(tmp_path):
    write_land_daily(tmp_path / "d.nc", DAY - dt.timedelta(days=1))
    rad = tmp_path / "rad.grib"
    write_land_radiation(rad, DAY)
    granule = Granule("era5_land", DAY, (tmp_path / "d.nc", rad), "ERA5-Land")
    with pytest.raises(SourceError, match=r"d.nc: t2m has 0 time steps on 2024-03-10"):
        era5.Era5LandSource().read(granule)
    write_land_daily(tmp_path / "d2.nc", DAY)
    write_land_radiation(rad, DAY - dt.timedelta(days=1))
    granule = Granule("era5_land", DAY, (tmp_path / "d2.nc", rad), "ERA5-Land")
    with pytest.raises(SourceError, match=r"rad.grib: ssrd has no field valid at 2024-03-11T00"):
        era5.Era5LandSource().read(granule)


def test_credentials_never_leak(tmp_path, monkeypatch, caplog):
    key = "4f1c2a9e-0b7d-4c55-9e21-5a6b7c8d9e0f"
    monkeypatch.setenv("CDSAPI_KEY", key)
    error = RuntimeError(f"401 Client Error: Unauthorized; PRIVATE-TOKEN {key} rejected")
    client = FakeCds(error=error)
    client.key = "client-only-secret-77"
    client.error = RuntimeError(f"401 for {key} and client-only-secret-77")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as info:
        era5.Era5Source(client=client).fetch(DAY, tmp_path / "w")
    text = str(info.value)
    assert "401" in text and "reanalysis-era5-single-levels" in text
    assert key not in text and "client-only-secret-77" not in text
    assert key not in caplog.text and "client-only-secret-77" not in caplog.text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert list((tmp_path / "w").iterdir()) == []  # the partial download is gone


def test_not_available_yet_is_date_not_served(tmp_path):
    error = Exception("The job failed: None of the data you have requested is available yet")
    with pytest.raises(DateNotServedError, match="available yet"):
        era5.Era5LandSource(client=FakeCds(error=error)).fetch(DAY, tmp_path)


def test_missing_credentials_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CDSAPI_URL", raising=False)
    monkeypatch.delenv("CDSAPI_KEY", raising=False)
    monkeypatch.setenv("CDSAPI_RC", str(tmp_path / "no-such-cdsapirc"))
    with pytest.raises(SourceError, match=r"no CDS credentials.*CDSAPI_KEY.*licence"):
        era5.Era5Source().fetch(DAY, tmp_path / "w")


def test_preliminary_versions_raise_the_provisional_flag():
    """The quality flag marks days filled from ERA5T by matching the version labels."""
    from gsm3_ops.config import QualityFlagConfig
    from gsm3_ops.publish.flags import is_provisional

    markers = QualityFlagConfig().provisional_versions
    for source in (era5.Era5Source(), era5.Era5LandSource()):
        final, preliminary = source.LABELS
        assert is_provisional(preliminary, markers) and not is_provisional(final, markers)


def test_ingest_into_the_cube_and_a_bad_day_leaves_the_good_one(tmp_path):
    """Through ops/ingest_day: fetch, read, grid, registry checks, cube write and manifest."""
    from gsm3_ops.cube import Cube
    from gsm3_ops.ops.ingest_day import IngestOptions, ingest_source

    domain = M09.window_from_bbox(-0.3, 51.45, 0.4, 51.95)
    cube = Cube.create(tmp_path / "cube.zarr", M09, domain, DAY, DAY + dt.timedelta(days=3), 8)
    source = era5.Era5LandSource(client=_land_client(tmp_path))
    out = ingest_source(cube, source, DAY, M09, domain, IngestOptions(tmp_path / "raw"))
    assert out.status == "complete" and out.version == "ERA5-Land-ERA5T"
    entry = cube.manifest(DAY)["entries"]["forcing/era5_land"]
    assert entry["version"] == "ERA5-Land-ERA5T" and set(entry["variables"]) == set(source.provides)
    t2m = cube.read("forcing", ["t2m"], DAY, DAY)["t2m"].values
    assert np.isfinite(t2m).any() and np.nanmax(np.abs(t2m - 281.5)) < 281.5 * 0.05
    # The next day's files are broken: the failure is recorded, the good day is untouched.
    bad_day = DAY + dt.timedelta(days=1)
    folder = tmp_path / "from"
    folder.mkdir()
    (folder / f"era5_land_daily_{bad_day:%Y%m%d}.nc").write_bytes(b"\x89HDF\r\n\x1a\n broken")
    write_land_radiation(folder / f"era5_land_rad_{bad_day:%Y%m%d}.grib", bad_day)
    failed = ingest_source(
        cube, source, bad_day, M09, domain, IngestOptions(tmp_path / "raw", from_dir=folder)
    )
    assert failed.status == "failed" and "unreadable netCDF" in failed.error
    assert cube.manifest(bad_day)["failures"]
    np.testing.assert_array_equal(cube.read("forcing", ["t2m"], DAY, DAY)["t2m"].values, t2m)


def test_land_sea_mask_in_a_supplied_daily_file_masks_land_only_variables(tmp_path):
    ds = write_land_daily(tmp_path / "plain.nc", DAY, sea_nan=False)
    lsm = np.ones((1, len(LAT), len(LON180)), dtype=np.float32)
    lsm[0, :, :3] = 0.2  # the western columns are sea
    ds["lsm"] = (("valid_time", "latitude", "longitude"), lsm)
    ds.to_netcdf(tmp_path / "with_lsm.nc")
    rad = write_land_radiation(tmp_path / "rad.grib", DAY)
    assert rad
    granule = Granule("era5_land", DAY, (tmp_path / "with_lsm.nc", tmp_path / "rad.grib"), "x")
    native = era5.Era5LandSource().read(granule)
    assert "lsm" not in native
    for name in ("stl1", "lai_hv", "lai_lv", "swe"):
        assert np.isnan(native[name].values[0, :, :3]).all()
        assert np.isfinite(native[name].values[0, :, 3:]).all()
    assert np.isfinite(native["t2m"].values).all()  # not a land-only variable


def test_zip_wrapped_downloads_are_unwrapped(tmp_path):
    """The CDS sometimes zips its output (one netCDF per variable) even when asked not to."""
    import zipfile

    whole = write_land_daily(tmp_path / "whole.nc", DAY)
    names = list(LAND_VALUES)
    whole[names[:4]].to_netcdf(tmp_path / "part_a.nc")
    whole[names[4:]].to_netcdf(tmp_path / "part_b.nc")
    with zipfile.ZipFile(tmp_path / "daily.zip", "w") as zf:
        zf.write(tmp_path / "part_a.nc", "data_stream-oper_stepType-instant_a.nc")
        zf.write(tmp_path / "part_b.nc", "data_stream-oper_stepType-instant_b.nc")
    write_land_radiation(tmp_path / "rad.grib", DAY)
    with zipfile.ZipFile(tmp_path / "rad.zip", "w") as zf:
        zf.write(tmp_path / "rad.grib", "data.grib")
    client = FakeCds(
        {
            "derived-era5-land-daily-statistics": tmp_path / "daily.zip",
            "reanalysis-era5-land": tmp_path / "rad.zip",
        }
    )
    source = era5.Era5LandSource(client=client)
    work = tmp_path / "work"
    granule = source.fetch(DAY, work)
    assert sorted(p.name for p in work.iterdir()) == [
        "era5_land_daily_20240310.nc",
        "era5_land_rad_20240310.grib",
    ]
    assert grib.file_format(granule.files[0]) == "netcdf"
    assert grib.file_format(granule.files[1]) == "grib"
    native = source.read(granule)
    for name, (_, nc, factor) in era5.LAND_DAILY.items():
        np.testing.assert_allclose(native[name].values, whole[nc].values * factor, rtol=1e-6)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptFileError, match=r"bad.zip: cannot unpack"):
        grib.unwrap_zip(bad, tmp_path / "out.nc")


# --- archives of CDS downloads (issue 15 findings) ------------------------------------------


def _daily_stats_zip(path: Path, first: dt.date, days: int, shift: int = 0) -> Path:
    """The CDS daily-statistics app's zip: one netCDF per variable, ``history`` ending with
    its ``daily_reduce`` line (``time_shift`` in hours: the requested time zone)."""
    import zipfile

    times = [np.datetime64((first + dt.timedelta(days=k)).isoformat(), "ns") for k in range(days)]
    whole = write_land_daily(path.with_suffix(".tmp.nc"), first)
    path.with_suffix(".tmp.nc").unlink()
    with zipfile.ZipFile(path, "w") as zf:
        for (cds, nc, _), folder in zip(era5.LAND_DAILY.values(), range(9), strict=True):
            values = np.repeat(whole[nc].values, days, axis=0)
            ds = xr.Dataset(
                {nc: (("valid_time", "latitude", "longitude"), values)},
                coords={"valid_time": times, "latitude": LAT, "longitude": LON180, "number": 0},
            )
            ds.attrs["history"] = (
                "2024-04-01T10:00 GRIB to CDM+CF via cfgrib-0.9.15.0/ecCodes-2.39.0\n"
                f"earthkit.transforms.aggregate.temporal.daily_reduce({cds}_stream-oper, "
                f"how=mean, **{{'time_shift': {{'hours': {shift}}}, "
                "'remove_partial_periods': True})"
            )
            member = path.parent / f"m{folder}.nc"
            ds.to_netcdf(member)
            zf.write(member, f"{cds}_0_daily-mean.nc")
            member.unlink()
    return path


def _radiation_days(path: Path, first: dt.date, days: int) -> Path:
    """ERA5-Land radiation at 00 UTC of each of ``days`` days from ``first`` (GRIB, J m-2)."""
    messages = []
    for k in range(days):
        base = first + dt.timedelta(days=k - 1)
        for short, value in (("ssrd", 8.64e6), ("strd", 2.592e7)):
            messages.append(
                {
                    "shortName": short,
                    "stepType": "accum",
                    "dataDate": int(base.strftime("%Y%m%d")),
                    "dataTime": 0,
                    "startStep": 0,
                    "endStep": 24,
                    "expver": "0005",
                    "values": np.full((len(LAT), len(LON360)), value + k),
                }
            )
    return write_grib(path, messages)


def test_a_week_of_cds_zips_from_a_folder(tmp_path):
    """The zip ``fetch`` unpacks is read as delivered, from any sub-folder, for any day."""
    folder = tmp_path / "cds" / "2024-03"
    folder.mkdir(parents=True)
    _daily_stats_zip(folder / "a1b2c3d4e5.zip", DAY, 7)
    _radiation_days(folder / "rad.grib", DAY, 8)
    (folder / "README.txt").write_text("downloaded by hand")  # not a CDS file: ignored
    source = era5.Era5LandSource()
    day = DAY + dt.timedelta(days=3)
    granule = source.local(day, tmp_path / "cds")
    assert granule.files == (folder / "a1b2c3d4e5.zip", folder / "rad.grib")
    assert granule.version == "ERA5-Land-ERA5T" and granule.notes == ("time_zone:UTC+00:00",)
    native = source.read(granule)
    np.testing.assert_allclose(native["ssrd"].values, (8.64e6 + 4) / 86400.0, rtol=1e-6)
    assert float(native["t2m"].mean()) == pytest.approx(281.5, rel=0.01)
    archived = era5.Era5LandSource(era5.Era5Options(archive=tmp_path / "cds"))
    assert archived.first_date() == DAY
    assert archived.latest_date(dt.date(2030, 1, 1)) == DAY + dt.timedelta(days=6)
    with pytest.raises(DateNotServedError, match=r"2024-03-17 in the archive .*cds$"):
        source.local(DAY + dt.timedelta(days=7), tmp_path / "cds")


def test_daily_statistics_of_another_time_zone_are_refused(tmp_path):
    """The CDS app computes days in any time zone, saying so only in ``history``."""
    _daily_stats_zip(tmp_path / "daily.zip", DAY, 2, shift=5)
    _radiation_days(tmp_path / "rad.grib", DAY, 3)
    source = era5.Era5LandSource()
    granule = source.local(DAY, tmp_path)
    assert "time_zone:UTC+05:00" in granule.notes
    with pytest.raises(CorruptFileError) as info:
        source.read(granule)
    text = str(info.value)
    assert "daily.zip!2m_temperature_0_daily-mean.nc" in text and "UTC+05:00, not UTC" in text
    assert "\n" not in text


def test_land_sea_mask_on_its_own_time_axis_is_accepted(fixtures, tmp_path):
    """ERA5's time-invariant ``lsm`` (the real fixture's, stamped 2010-01-01) beside a day of
    daily means: its own time axis is squeezed, not taken for another grid."""
    with xr.open_dataset(fixtures / f"{AN}.nc") as an:
        box = an.sel(latitude=slice(52.0, 50.25), longitude=slice(0.0, 1.75)).load()
    lat, lon = box["latitude"].values, box["longitude"].values
    shape = (1, lat.size, lon.size)
    data = {nc: (("valid_time", "latitude", "longitude"), np.full(shape, LAND_VALUES[nc],
            dtype=np.float32)) for nc in LAND_VALUES}  # fmt: skip
    ds = xr.Dataset(data, coords={"valid_time": [np.datetime64(DAY.isoformat(), "ns")],
                                  "latitude": lat, "longitude": lon})  # fmt: skip
    ds["lsm"] = box["lsm"].expand_dims("time")  # its own axis, with the fixture's date
    path = tmp_path / "era5_daily_with_lsm.nc"
    ds.to_netcdf(path)
    fields = grib.open_fields(path, ["t2m", "lsm"]).data  # refused before as different grids
    assert fields["lsm"].dims == ("latitude", "longitude")
    rad = tmp_path / "rad.grib"
    write_grib(rad, [{"shortName": s, "stepType": "accum", "dataDate": int(f"{DAY:%Y%m%d}"),
                      "dataTime": 0, "startStep": 0, "endStep": 24, "values": np.full(
                          (lat.size, lon.size), 8.64e6)} for s in ("ssrd", "strd")],
               lat=lat, lon=lon)  # fmt: skip
    native = era5.Era5LandSource().read(Granule("era5_land", DAY, (path, rad), "ERA5-Land"))
    sea = box["lsm"].values < 0.5
    assert sea.any() and (~sea).any()  # the real coast of East Anglia
    assert np.isnan(native["stl1"].values[0][sea]).all()
    assert np.isfinite(native["stl1"].values[0][~sea]).all()
    assert np.isfinite(native["t2m"].values).all()  # not land-only
