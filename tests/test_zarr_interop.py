"""The product Zarr opens in the ecosystem: GDAL's own tools (Debian's gdal-bin) and xarray read
it, agree with the COG on pixels, and find the grid, CRS and CF/ACDD metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from gsm3_ops.grid import M09
from tests.test_publish_atomic import D1, D2, NO_QUICKLOOK, WINDOW, layers_for, publish

pytestmark = pytest.mark.skipif(
    shutil.which("gdalinfo") is None, reason="GDAL's command-line tools (gdal-bin) not installed"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interop")
    publish(root, D1, cfg=NO_QUICKLOOK)
    publish(root, D2, cfg=NO_QUICKLOOK)
    return root


def _gdal(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def _subdataset(root: Path, layer: str, index: int) -> str:
    return f'ZARR:"{root / "gsm3.zarr"}":/{layer}:{index}'


def test_gdalinfo_lists_every_layer_and_georeferences_a_day(root) -> None:
    listing = _gdal("gdalinfo", f"ZARR:{root / 'gsm3.zarr'}")
    for layer in ("soil_moisture", "soil_moisture_sd", "quality_flag", "lat", "lon"):
        assert f":/{layer}" in listing
    info = json.loads(_gdal("gdalinfo", "-json", _subdataset(root, "soil_moisture", 1)))
    assert info["size"] == [WINDOW.n_cols, WINDOW.n_rows]
    assert 'ID["EPSG",6933]' in info["coordinateSystem"]["wkt"]
    with rasterio.open(root / "cog" / "2020" / f"gsm3_sm_{D2:%Y%m%d}.tif") as cog:
        np.testing.assert_allclose(info["geoTransform"], cog.transform.to_gdal(), atol=1e-6)


@pytest.mark.parametrize(("layer", "code"), [("soil_moisture", "sm"), ("quality_flag", "flag")])
def test_gdal_xarray_and_the_cog_agree_on_pixels(root, layer, code) -> None:
    ds = xr.open_zarr(root / "gsm3.zarr", mask_and_scale=False)
    index = list(ds.indexes["time"].date).index(D2)
    with rasterio.open(root / "cog" / "2020" / f"gsm3_{code}_{D2:%Y%m%d}.tif") as cog:
        pixels = cog.read(1)
    for row, col in [(2, 5), (7, 1), (11, 9)]:
        value = _gdal("gdallocationinfo", "-valonly", _subdataset(root, layer, index),
                      str(col), str(row))  # fmt: skip
        assert float(value) == pytest.approx(float(pixels[row, col]), rel=1e-6)
        assert float(ds[layer].isel(time=index, y=row, x=col)) == pytest.approx(
            float(pixels[row, col]), rel=1e-6
        )
    np.testing.assert_array_equal(pixels, ds[layer].isel(time=index).values)
    if layer == "soil_moisture":
        np.testing.assert_array_equal(pixels, layers_for(D2)[layer])


def test_xarray_reads_cf_acdd_and_auxiliary_coordinates(root) -> None:
    ds = xr.open_zarr(root / "gsm3.zarr")
    assert list(ds.indexes["time"].date) == [D1, D2]
    lon, lat = M09.lonlat(WINDOW)
    np.testing.assert_allclose(ds.lat.values, lat, atol=1e-4)
    np.testing.assert_allclose(ds.lon.values, lon, atol=1e-4)
    assert ds.attrs["time_coverage_start"] == str(D1) and ds.attrs["time_coverage_end"] == str(D2)
    assert ds.attrs["license"] == NO_QUICKLOOK.license
    assert ds.attrs["product_version"] == NO_QUICKLOOK.version
    assert ds.soil_moisture.attrs["ancillary_variables"] == "soil_moisture_sd quality_flag"
    text = "".join(p.read_text() for p in (root / "gsm3.zarr").rglob(".z*"))
    assert str(root) not in text  # no internal path in the published metadata
