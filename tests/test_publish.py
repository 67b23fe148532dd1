"""Product Zarr and COG writers: grid, encoding, CF attributes, growth and rewrites."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import CRS

from gsm3_ops.grid import M09
from gsm3_ops.publish.cog import (
    cog_path,
    validate_cog,
    web_mercator_path,
    write_cog,
    write_web_mercator,
)
from gsm3_ops.publish.layers import FLAG_FILL, LAYERS, QUALITY_FLAGS
from gsm3_ops.publish.product import ProductStoreError, time_length, time_span, write_day

WINDOW = M09.window_from_bbox(36.0, -2.0, 37.0, -1.0)
START = dt.date(2021, 1, 1)


def _layers(seed: int, window=WINDOW) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sm = rng.uniform(0.05, 0.5, window.shape).astype(np.float32)
    sm[0, :3] = np.nan
    return {
        "soil_moisture": sm,
        "soil_moisture_sd": (sm * 0.1).astype(np.float32),
        "quality_flag": np.where(np.isnan(sm), 255, rng.integers(0, 32, sm.shape)).astype(np.uint8),
    }


def test_cog_is_valid_on_the_grid_and_matches_the_data(tmp_path) -> None:
    data = _layers(0)["soil_moisture"]
    tags = {"date": "2021-01-05", "product_version": "9.9", "bundle_id": "b", "inputs": "x:1"}
    path = write_cog(tmp_path / "x.tif", data, M09, WINDOW, tags)
    valid, errors, _ = validate_cog(path)
    assert valid, errors
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 6933
        assert src.transform.almost_equals(M09.transform(WINDOW))
        assert np.isnan(src.nodata) and src.dtypes[0] == "float32"
        assert src.profile["blockxsize"] == 512 and src.profile["compress"] == "deflate"
        assert src.tags()["date"] == "2021-01-05" and src.tags()["bundle_id"] == "b"
        assert src.tags()["product_version"] == "9.9" and src.tags()["inputs"] == "x:1"
        assert src.tags(1)["units"] == "m3 m-3"
        np.testing.assert_array_equal(src.read(1), data)
    assert not list(tmp_path.glob(".*tmp*"))


def test_large_cog_has_overviews_average_for_floats_nearest_for_the_flag(tmp_path) -> None:
    window = M09.window_from_bbox(0.0, -25.0, 60.0, 25.0)  # > 512 cells each way: overviews
    layers = _layers(1, window)
    sm = write_cog(tmp_path / "sm.tif", layers["soil_moisture"], M09, window, {},
                   compression="zstd")  # fmt: skip
    flag = write_cog(tmp_path / "f.tif", layers["quality_flag"], M09, window, {}, "quality_flag")
    for path in (sm, flag):
        assert validate_cog(path)[0]
    with rasterio.open(sm) as src:
        assert src.overviews(1) and src.profile["compress"] == "zstd"
        assert src.tags()["OVERVIEW_RESAMPLING"] == "AVERAGE"
    with rasterio.open(flag) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == FLAG_FILL
        assert src.tags()["OVERVIEW_RESAMPLING"] == "NEAREST"
        overview = src.read(1, out_shape=(src.height // 2, src.width // 2))
        valid = set(np.unique(layers["quality_flag"]))
        assert set(np.unique(overview)) <= valid  # nearest: no invented bit combinations
        np.testing.assert_array_equal(src.read(1), layers["quality_flag"])


def test_web_mercator_derivative_is_a_valid_cog_in_3857(tmp_path) -> None:
    src_path = write_cog(tmp_path / "sm.tif", _layers(2)["soil_moisture"], M09, WINDOW, {})
    path = write_web_mercator(tmp_path / "wm.tif", src_path)
    assert validate_cog(path)[0]
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 3857
        assert src.tags()["TILING_SCHEME_NAME"] == "WebMercatorQuad"
        data = src.read(1)
        assert np.isfinite(data).any() and np.nanmax(data) <= 0.5


def test_cog_paths(tmp_path) -> None:
    assert cog_path(tmp_path, "2021-03-04") == tmp_path / "cog/2021/gsm3_sm_20210304.tif"
    assert cog_path(tmp_path, "2021-03-04", "flag").name == "gsm3_flag_20210304.tif"
    assert web_mercator_path(tmp_path, "2021-03-04").name == "gsm3_sm_20210304_webmercator.tif"


def test_product_grows_and_rewrites_in_place(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    write_day(path, dt.date(2021, 1, 3), _layers(1), M09, WINDOW, START)
    assert time_span(path) == (dt.date(2021, 1, 3), 1)  # the axis starts at the first day
    write_day(path, dt.date(2021, 1, 6), _layers(2), M09, WINDOW, START)
    write_day(path, dt.date(2021, 1, 3), _layers(3), M09, WINDOW, START)
    ds = xr.open_zarr(path)  # consolidated
    assert list(ds.indexes["time"].date) == [dt.date(2021, 1, 3) + dt.timedelta(d)
                                             for d in range(4)]  # fmt: skip
    np.testing.assert_array_equal(
        ds.soil_moisture.sel(time="2021-01-03"), _layers(3)["soil_moisture"]
    )
    np.testing.assert_array_equal(
        ds.soil_moisture.sel(time="2021-01-06"), _layers(2)["soil_moisture"]
    )
    assert int(ds.soil_moisture.sel(time="2021-01-04").count()) == 0
    raw = xr.open_zarr(path, mask_and_scale=False)
    np.testing.assert_array_equal(
        raw.quality_flag.sel(time="2021-01-06"), _layers(2)["quality_flag"]
    )
    assert raw.quality_flag.dtype == np.uint8
    assert (raw.quality_flag.sel(time="2021-01-04") == FLAG_FILL).all()
    assert ds.attrs["time_coverage_start"] == "2021-01-03"
    assert ds.attrs["time_coverage_end"] == "2021-01-06"
    assert not list((tmp_path / ".staging").glob("*")) and not list(
        (tmp_path / ".journal").glob("*")
    )


def test_an_earlier_day_rebases_the_axis_without_copying_data(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    write_day(path, dt.date(2021, 1, 5), _layers(1), M09, WINDOW, START)
    write_day(path, dt.date(2021, 1, 6), _layers(2), M09, WINDOW, START)
    chunk = path / "soil_moisture" / "1" / "0" / "0"
    inode = chunk.stat().st_ino
    write_day(path, dt.date(2021, 1, 2), _layers(3), M09, WINDOW, START)
    assert time_span(path) == (dt.date(2021, 1, 2), 5)
    ds = xr.open_zarr(path)
    expected = {"2021-01-02": 3, "2021-01-05": 1, "2021-01-06": 2}
    for day, seed in expected.items():
        expected_sm = _layers(seed)["soil_moisture"]
        np.testing.assert_array_equal(ds.soil_moisture.sel(time=day), expected_sm)
    assert int(ds.soil_moisture.sel(time="2021-01-03").count()) == 0
    assert (path / "soil_moisture" / "4" / "0" / "0").stat().st_ino == inode  # hard-linked
    np.testing.assert_allclose(ds.lat.values, M09.lonlat(WINDOW)[1], atol=1e-4)
    assert not list((tmp_path / ".staging").glob("*"))


def test_time_axis_grows_across_time_chunks(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    first = dt.date(2021, 1, 2)
    far = first + dt.timedelta(days=699)  # past the first 512-day time chunk
    write_day(path, first, _layers(1), M09, WINDOW, START)
    write_day(path, far, _layers(2), M09, WINDOW, START)
    ds = xr.open_zarr(path)
    assert time_length(path) == 700
    np.testing.assert_array_equal(ds.indexes["time"].date, [
        first + dt.timedelta(d) for d in range(700)
    ])  # fmt: skip
    np.testing.assert_array_equal(ds.soil_moisture.sel(time=str(far)), _layers(2)["soil_moisture"])


def test_product_cf_attributes_and_grid_mapping(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    write_day(path, START, _layers(1), M09, WINDOW, START)
    ds = xr.open_zarr(path, decode_times=False)
    assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    assert ds.attrs["geospatial_lat_min"] < ds.attrs["geospatial_lat_max"]
    sm = ds.soil_moisture
    assert sm.attrs["standard_name"] == "volume_fraction_of_condensed_water_in_soil"
    assert sm.attrs["units"] == "m3 m-3" and sm.attrs["grid_mapping"] == "crs"
    for name in LAYERS:
        assert ds[name].attrs["grid_mapping"] == "crs"
        assert ds[name].dims == ("time", "y", "x")
    # The grid mapping describes EPSG:6933 completely: pyproj reads it back as that CRS.
    assert ds.crs.attrs["grid_mapping_name"] == "lambert_cylindrical_equal_area"
    assert ds.crs.attrs["standard_parallel"] == 30.0
    assert CRS.from_cf(ds.crs.attrs).equals(CRS.from_epsg(6933))
    assert CRS.from_wkt(ds.crs.attrs["crs_wkt"]).to_epsg() == 6933
    for axis in ("x", "y"):
        assert ds[axis].attrs["standard_name"] == f"projection_{axis}_coordinate"
        assert ds[axis].attrs["units"] == "m"
    np.testing.assert_allclose(ds.x.values, M09.x_centres(WINDOW))
    np.testing.assert_allclose(ds.y.values, M09.y_centres(WINDOW))
    # depth: a scalar coordinate at the layer centre, with 0-5 cm bounds
    assert float(ds.depth) == 0.025 and ds.depth.attrs["positive"] == "down"
    assert ds.depth.attrs["units"] == "m" and ds.depth.attrs["bounds"] == "depth_bnds"
    np.testing.assert_allclose(ds.depth_bnds.values, [0.0, 0.05])
    assert ds.time.attrs["units"] == f"days since {START}"
    assert ds.time.attrs["calendar"] == "proleptic_gregorian"
    # every layer lists the scalar depth as an auxiliary coordinate (CF 5.7)
    attrs = json.loads((path / "soil_moisture" / ".zattrs").read_text())
    assert set(attrs["coordinates"].split()) == {"lat", "lon", "depth"}
    assert sm.attrs["ancillary_variables"] == "soil_moisture_sd quality_flag"
    assert ds.lat.attrs["standard_name"] == "latitude" and ds.lon.dims == ("y", "x")
    flag = ds.quality_flag.attrs
    assert list(flag["flag_masks"]) == list(QUALITY_FLAGS)
    assert flag["flag_meanings"].split() == list(QUALITY_FLAGS.values())
    assert ds.soil_moisture_percentile.attrs["units"] == "%"


def test_chunks_are_one_day_by_a_tile(tmp_path) -> None:
    path = tmp_path / "gsm3.zarr"
    write_day(path, START, _layers(1), M09, WINDOW, START, tile=8)
    meta = json.loads((path / "soil_moisture" / ".zarray").read_text())
    assert meta["chunks"] == [1, 8, 8] and meta["zarr_format"] == 2
    assert meta["dimension_separator"] == "/" and meta["compressor"]["id"] == "zlib"


def test_product_refuses_day_before_start_and_a_foreign_window(tmp_path) -> None:
    with pytest.raises(ProductStoreError, match="before the product's start"):
        write_day(tmp_path / "p.zarr", dt.date(2020, 12, 31), _layers(0), M09, WINDOW, START)
    assert not (tmp_path / "p.zarr").exists()
    write_day(tmp_path / "p.zarr", START, _layers(0), M09, WINDOW, START)
    other = M09.window_from_bbox(36.0, -2.0, 37.5, -1.0)
    with pytest.raises(ProductStoreError, match="deployment's domain"):
        write_day(tmp_path / "p.zarr", START, _layers(0, other), M09, other, START)
    with pytest.raises(ProductStoreError, match="shape"):
        write_day(tmp_path / "p.zarr", START, {"soil_moisture": np.zeros((2, 2))}, M09,
                  WINDOW, START)  # fmt: skip


def test_failed_zarr_write_leaves_the_store_as_it_was(tmp_path, monkeypatch) -> None:
    import gsm3_ops.publish.atomic as atomic

    path = tmp_path / "gsm3.zarr"
    write_day(path, START, _layers(1), M09, WINDOW, START)
    before = xr.open_zarr(path).load()
    rename = atomic.os.rename
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # some chunks of the new day are in place, the metadata is not
            raise OSError(28, "No space left on device")
        rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing)
    with pytest.raises(OSError, match="No space"):
        write_day(path, dt.date(2021, 1, 4), _layers(2), M09, WINDOW, START)
    monkeypatch.setattr(atomic.os, "rename", rename)
    xr.testing.assert_identical(xr.open_zarr(path).load(), before)
    assert time_length(path) == 1
