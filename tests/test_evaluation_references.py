"""Reference products sampled at sites and days: a cube variable, Zarr (projected and lat/lon)
and a folder of daily COGs; bad specs and paths give clear errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS

from gsm3_ops.cube import Cube
from gsm3_ops.evaluation.references import (
    ReferenceProductError,
    check_reference,
    parse_reference,
    reference_series,
)
from gsm3_ops.grid import M09, Window
from gsm3_ops.publish.cog import cog_path, write_cog

DOMAIN = Window(810, 2300, 10, 12)
START = dt.date(2020, 3, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(5)]
CELLS = [(812, 2301), (815, 2306), (819, 2311)]  # global (row, col) of three sites


@pytest.fixture(scope="module")
def sites() -> pd.DataFrame:
    rows, cols = (np.array(v) for v in zip(*CELLS, strict=True))
    lon, lat = M09.rowcol_to_lonlat(rows, cols)
    # Each site a little off its cell centre, as a station would be.
    return pd.DataFrame(
        {"lon": lon + 0.02, "lat": lat - 0.02, "region": "Other", "row": rows, "col": cols},
        index=pd.Index(["a", "b", "c"], name="site"),
    )


def _fields() -> np.ndarray:
    """(days, rows, cols) values that identify day and cell: 0.1 + day/100 + cell/1e4."""
    cell = np.arange(DOMAIN.n_rows * DOMAIN.n_cols).reshape(DOMAIN.shape)
    return np.stack([0.1 + d / 100 + cell / 1e4 for d in range(len(DAYS))]).astype(np.float32)


def _expected() -> np.ndarray:
    f = _fields()
    r = [c[0] - DOMAIN.row0 for c in CELLS]
    k = [c[1] - DOMAIN.col0 for c in CELLS]
    return f[:, r, k].astype(np.float64)


def _grid_ds(values: np.ndarray, name: str) -> xr.Dataset:
    return xr.Dataset(
        {name: (("time", "y", "x"), values)},
        coords={
            "time": pd.to_datetime(DAYS),
            "y": M09.y_centres(DOMAIN),
            "x": M09.x_centres(DOMAIN),
        },
    )


def test_cube_variable(tmp_path, sites) -> None:
    cube = Cube.create(tmp_path / "cube.zarr", M09, DOMAIN, dt.date(2020, 1, 1),
                       dt.date(2020, 12, 31), tile_size=8)  # fmt: skip
    cube.write("smap", _grid_ds(_fields(), "smap"), source="test", version="v1")
    ref = parse_reference("SMAP=cube:smap")
    got = reference_series(ref, sites, DAYS[0], DAYS[-1] + dt.timedelta(days=2), cube)
    np.testing.assert_allclose(got[:5], _expected(), rtol=0, atol=1e-7)
    assert np.isnan(got[5:]).all()  # days never written
    with pytest.raises(ReferenceProductError, match="no forcing/t2m"):
        check_reference(parse_reference("T=cube:forcing/t2m"), cube)
    with pytest.raises(ReferenceProductError, match="not a daily group"):
        check_reference(parse_reference("T=cube:static/elevation"), cube)


def test_projected_zarr_like_the_product(tmp_path, sites) -> None:
    ds = _grid_ds(_fields(), "soil_moisture")
    ds["soil_moisture"].attrs = {"grid_mapping": "crs", "units": "m3 m-3"}
    ds["crs"] = xr.DataArray(np.int32(0), attrs={"crs_wkt": CRS.from_epsg(6933).to_wkt()})
    # Day 3 is missing from the store.
    ds.isel(time=[0, 1, 3, 4]).to_zarr(tmp_path / "gsm3.zarr", mode="w", consolidated=False)
    ref = parse_reference(f"OTHER=zarr:{tmp_path / 'gsm3.zarr'}")
    assert ref.variable == "soil_moisture"
    got = reference_series(ref, sites, DAYS[0], DAYS[-1], None)
    want = _expected()
    want[2] = np.nan
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def test_lat_lon_zarr_in_percent_and_a_site_off_the_grid(tmp_path, sites) -> None:
    lat = np.arange(-5.0, 2.0, 0.25) + 0.125
    lon = np.arange(33.0, 40.0, 0.25) + 0.125
    values = np.arange(len(DAYS) * lat.size * lon.size, dtype=float).reshape(
        len(DAYS), lat.size, lon.size
    )
    da = xr.DataArray(values, dims=("time", "latitude", "longitude"),
                      coords={"time": pd.to_datetime(DAYS), "latitude": lat, "longitude": lon},
                      attrs={"units": "%"})  # fmt: skip
    xr.Dataset({"swvl1": da}).to_zarr(tmp_path / "era.zarr", mode="w", consolidated=False)
    far = sites.copy()
    far.loc["c", "lon"] = 50.0  # east of the store's grid
    got = reference_series(parse_reference(f"E=zarr:{tmp_path / 'era.zarr'}#swvl1"), far,
                           DAYS[0], DAYS[-1])  # fmt: skip
    for k, site in enumerate(["a", "b"]):
        i = int(np.floor((far.loc[site, "lat"] - (-5.0)) / 0.25))
        j = int(np.floor((far.loc[site, "lon"] - 33.0) / 0.25))
        np.testing.assert_allclose(got[:, k], values[:, i, j] / 100)
    assert np.isnan(got[:, 2]).all()


def test_folder_of_daily_cogs(tmp_path, sites) -> None:
    fields = _fields()
    for d in (0, 1, 4):  # days 2 and 3 not published
        write_cog(cog_path(tmp_path / "pub", DAYS[d].isoformat()), fields[d], M09, DOMAIN, {})
    got = reference_series(parse_reference(f"PUB=cog:{tmp_path / 'pub'}"), sites, DAYS[0],
                           DAYS[-1])  # fmt: skip
    want = _expected()
    want[[2, 3]] = np.nan
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SMAP", "not NAME=KIND:WHERE"),
        ("=cube:smap", "not NAME=KIND:WHERE"),
        ("X=netcdf:/tmp/a.nc", "not NAME=KIND:WHERE"),
    ],
)
def test_bad_specs(text, message) -> None:
    with pytest.raises(ReferenceProductError, match=message):
        parse_reference(text)


def test_missing_paths_and_variables(tmp_path) -> None:
    with pytest.raises(ReferenceProductError, match="does not exist"):
        check_reference(parse_reference(f"Z=zarr:{tmp_path / 'none.zarr'}"))
    xr.Dataset({"a": (("time",), [1.0])}, coords={"time": pd.to_datetime([START])}).to_zarr(
        tmp_path / "s.zarr", mode="w", consolidated=False
    )
    with pytest.raises(ReferenceProductError, match=r"no variable 'soil_moisture' \(it has a\)"):
        check_reference(parse_reference(f"Z=zarr:{tmp_path / 's.zarr'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReferenceProductError, match="no GeoTIFF with a date"):
        check_reference(parse_reference(f"C=cog:{tmp_path / 'empty'}"))
    with pytest.raises(ReferenceProductError, match="no cube"):
        check_reference(parse_reference("S=cube:smap"), None)
