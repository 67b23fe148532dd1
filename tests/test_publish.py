"""Product Zarr and COG writers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
import xarray as xr

from gsm3_ops.grid import M09
from gsm3_ops.publish.cog import cog_path, validate_cog, write_cog
from gsm3_ops.publish.product import write_day

WINDOW = M09.window_from_bbox(36.0, -2.0, 37.0, -1.0)
START = dt.date(2021, 1, 1)


def _layers(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sm = rng.uniform(0.05, 0.5, WINDOW.shape).astype(np.float32)
    sm[0, :3] = np.nan
    return {
        "soil_moisture": sm,
        "soil_moisture_sd": (sm * 0.1).astype(np.float32),
        "quality_flag": np.where(np.isnan(sm), 255, 0).astype(np.uint8),
    }


def test_cog_is_valid_on_the_grid_and_matches_the_data(tmp_path) -> None:
    data = _layers(0)["soil_moisture"]
    path = write_cog(tmp_path / "x.tif", data, M09, WINDOW, {"date": "2021-01-05"})
    valid, errors, _ = validate_cog(path)
    assert valid, errors
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 6933
        assert src.transform.almost_equals(M09.transform(WINDOW))
        assert np.isnan(src.nodata) and src.tags()["date"] == "2021-01-05"
        np.testing.assert_array_equal(src.read(1), data)
    assert not list(tmp_path.glob(".*tmp*"))


def test_cog_path_layout(tmp_path) -> None:
    assert cog_path(tmp_path, "2021-03-04") == tmp_path / "cog/2021/gsm3_sm_20210304.tif"


def test_product_grows_and_rewrites_in_place(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    write_day(path, dt.date(2021, 1, 3), _layers(1), M09, WINDOW, START)
    write_day(path, dt.date(2021, 1, 6), _layers(2), M09, WINDOW, START)
    write_day(path, dt.date(2021, 1, 3), _layers(3), M09, WINDOW, START)
    ds = xr.open_zarr(path, consolidated=False)
    assert list(ds.indexes["time"].date) == [START + dt.timedelta(d) for d in range(6)]
    np.testing.assert_array_equal(
        ds.soil_moisture.sel(time="2021-01-03"), _layers(3)["soil_moisture"]
    )
    np.testing.assert_array_equal(
        ds.soil_moisture.sel(time="2021-01-06"), _layers(2)["soil_moisture"]
    )
    assert int(ds.soil_moisture.sel(time="2021-01-04").count()) == 0


def test_product_cf_attributes(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    write_day(path, START, _layers(1), M09, WINDOW, START)
    ds = xr.open_zarr(path, consolidated=False)
    sm = ds.soil_moisture
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert sm.attrs["standard_name"] == "volume_fraction_of_condensed_water_in_soil"
    assert sm.attrs["units"] == "m3 m-3" and sm.attrs["grid_mapping"] == "crs"
    assert ds.crs.attrs["grid_mapping_name"] == "lambert_cylindrical_equal_area"
    assert ds.crs.attrs["standard_parallel"] == 30.0
    assert ds.x.attrs["standard_name"] == "projection_x_coordinate" and ds.x.attrs["units"] == "m"
    np.testing.assert_allclose(ds.x.values, M09.x_centres(WINDOW))
    assert float(ds.depth) == 0.025


def test_product_refuses_day_before_start(tmp_path) -> None:
    with pytest.raises(ValueError, match="before the product's start"):
        write_day(tmp_path / "p.zarr", dt.date(2020, 12, 31), _layers(0), M09, WINDOW, START)
    assert not (tmp_path / "p.zarr").exists()
