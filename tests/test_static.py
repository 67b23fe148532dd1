"""Static attributes: terrain from analytic DEMs in several CRSs, soil and land-cover rasters,
long-term means from a small cube, and the errors an operator will meet."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from pydantic import ValidationError
from pyproj import Transformer
from rasterio.transform import from_origin

from gsm3_ops import regrid
from gsm3_ops.cube import Cube
from gsm3_ops.grid import M09, Window
from gsm3_ops.sources.static import (
    LONG_TERM,
    RASTERS,
    TERRAIN,
    StaticError,
    StaticOptions,
    long_term_means,
    static_attributes,
    static_from_rasters,
)
from gsm3_ops.sources.static_defaults import default_rasters
from gsm3_ops.variables import FEATURE_SETS, REGISTRY
from gsm3_ops.world.static import write_static

A_WGS84, E2_WGS84 = 6378137.0, 0.00669437999014


def write_tif(
    path: Path, z: np.ndarray, crs: str, transform, nodata: float | None = -9999.0
) -> Path:
    """A single-band float32 GeoTIFF."""
    with rasterio.open(
        path, "w", driver="GTiff", height=z.shape[0], width=z.shape[1], count=1,
        dtype="float32", crs=crs, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(z.astype(np.float32), 1)
    return path


def geographic_plane(path: Path, lat_top: float, east: float, north: float) -> Path:
    """A plane z = 1000 + east * x + north * y in local metres on WGS84, 0.001 deg pixels."""
    res, n, lon0 = 0.001, 1000, 30.0
    lat = np.radians(lat_top - (np.arange(n) + 0.5) * res)
    w = np.sqrt(1 - E2_WGS84 * np.sin(lat) ** 2)
    n_rad, m_rad = A_WGS84 / w, A_WGS84 * (1 - E2_WGS84) / w**3
    x = (n_rad * np.cos(lat))[:, None] * np.radians((np.arange(n) + 0.5) * res)[None, :]
    # Distance north along the meridian from the first row (trapezoid sum of M dphi).
    y = np.concatenate([[0.0], np.cumsum((m_rad[:-1] + m_rad[1:]) / 2 * np.diff(lat))])
    z = 1000.0 + east * x + north * y[:, None]
    return write_tif(path, z, "EPSG:4326", from_origin(lon0, lat_top, res, res))


def inner_window(lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> Window:
    """Cells well inside a lon/lat box (one cell trimmed on every side)."""
    w = M09.window_from_bbox(lon_min, lat_min, lon_max, lat_max)
    return Window(w.row0 + 1, w.col0 + 1, w.n_rows - 2, w.n_cols - 2)


def footprint(crs: str, left: float, top: float, size: float) -> tuple[Window, np.ndarray]:
    """The window over a square projected raster, and which of its cells lie wholly inside
    the raster with a 1 km margin (the raster's edge pixels have no derivatives)."""
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    edge = np.linspace(0.0, size, 50)
    ring_x = np.concatenate([left + edge, left + edge, np.full(50, left), np.full(50, left + size)])
    ring_y = np.concatenate([np.full(50, top), np.full(50, top - size), top - edge, top - edge])
    lon, lat = to_ll.transform(ring_x, ring_y)
    window = M09.window_from_bbox(lon.min(), lat.min(), lon.max(), lat.max())
    rows, cols = np.meshgrid(
        np.arange(window.row0, window.row0 + window.n_rows + 1),
        np.arange(window.col0, window.col0 + window.n_cols + 1),
        indexing="ij",
    )
    corner_x = M09.x0 + cols * M09.cell_size
    corner_y = M09.y0 - rows * M09.cell_size
    px, py = Transformer.from_crs("EPSG:6933", crs, always_xy=True).transform(corner_x, corner_y)
    ok = (px > left + 1e3) & (px < left + size - 1e3) & (py < top - 1e3) & (py > top - size + 1e3)
    inside = ok[:-1, :-1] & ok[1:, :-1] & ok[:-1, 1:] & ok[1:, 1:]
    return window, inside


# Terrain


@pytest.mark.parametrize("hemisphere", ["north", "south"])
def test_plane_slope_and_aspect_on_a_geographic_dem(tmp_path: Path, hemisphere: str) -> None:
    """A tilted plane in EPSG:4326: exact slope everywhere, aspect_cos flips in the south."""
    east, north = 0.05, -0.02  # rises to the east and to the south: faces west-north-west
    lat_top = 11.0 if hemisphere == "north" else -10.0
    dem = geographic_plane(tmp_path / "dem.tif", lat_top, east, north)
    window = inner_window(30.0, lat_top - 1.0, 31.0, lat_top)
    ds = static_from_rasters(StaticOptions(dem=dem), M09, window, names=TERRAIN)
    assert set(ds.data_vars) == set(TERRAIN)
    # x runs along parallels from 30 E, so moving north changes x by -sin(lat) per radian of
    # longitude: the true northward gradient is north - east * sin(lat) * (lon - 30 E).
    lon_c, lat_c = M09.lonlat(window)
    p = east
    q = north - east * np.sin(np.radians(lat_c)) * np.radians(lon_c - 30.0)
    np.testing.assert_allclose(ds["slope"], np.degrees(np.arctan(np.hypot(p, q))), atol=1e-4)
    # Downslope azimuth atan2(-p, -q): about 68 degrees west of north, cos +0.37.
    sign = 1.0 if hemisphere == "north" else -1.0
    np.testing.assert_allclose(ds["aspect_cos"], sign * np.cos(np.arctan2(-p, -q)), atol=1e-4)
    assert np.all(sign * ds["aspect_cos"].values > 0.36)
    np.testing.assert_allclose(ds["plan_curvature"], 0.0, atol=1e-7)
    # Range within a cell: the plane rises east * (cell width) + |north| * (cell height) roughly.
    assert np.all(ds["roughness"] > 0.05 * 8000) and np.all(ds["roughness"] < 0.07 * 10000)
    for name in TERRAIN:
        assert ds[name].dtype == np.float32 and ds[name].dims == ("y", "x")
        assert ds[name].attrs["units"] == REGISTRY[name].units
    np.testing.assert_allclose(ds["x"], M09.x_centres(window))


def test_cone_in_a_projected_dem(tmp_path: Path) -> None:
    """A cone in UTM (100 m pixels): constant slope, aspect facing away from the apex,
    positive plan curvature sin(slope) / distance, roughness from the elevation range."""
    crs, rise = "EPSG:32636", 0.1  # UTM 36N; the cone falls 0.1 m per metre from its apex
    x_apex, y_apex, res, n = 500_000.0, 1_000_000.0, 100.0, 600
    left, top = x_apex - n * res / 2, y_apex + n * res / 2
    xs = left + (np.arange(n) + 0.5) * res
    ys = top - (np.arange(n) + 0.5) * res
    rho = np.hypot(xs[None, :] - x_apex, ys[:, None] - y_apex)
    dem = write_tif(
        tmp_path / "cone.tif", 5000.0 - rise * rho, crs, from_origin(left, top, res, res)
    )
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    window, inside = footprint(crs, left, top, n * res)
    ds = static_from_rasters(StaticOptions(dem=dem), M09, window, names=TERRAIN)
    # Distance of each cell centre from the apex, in metres.
    lon_c, lat_c = M09.lonlat(window)
    cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon_c, lat_c)
    dist = np.hypot(cx - x_apex, cy - y_apex)
    far = inside & (dist > 12_000)  # clear of the apex (where the cone has no derivative)
    assert far.sum() >= 10
    np.testing.assert_allclose(ds["slope"].values[far], np.degrees(np.arctan(rise)), atol=0.02)
    # Facing away from the apex: north of it aspect_cos is +, south of it -.
    north_of, south_of = far & (cy - y_apex > 0.8 * dist), far & (y_apex - cy > 0.8 * dist)
    assert (ds["aspect_cos"].values[north_of] > 0.75).all()
    assert (ds["aspect_cos"].values[south_of] < -0.75).all()
    # Cell mean of the analytic plan curvature sin(beta) / rho over the DEM pixels in the cell.
    pixel_lon, pixel_lat = to_ll.transform(*np.meshgrid(xs, ys))
    analytic = np.sin(np.arctan(rise)) / np.maximum(rho, 1.0)
    expected, _ = regrid.bin_points(pixel_lon, pixel_lat, analytic, M09, window)
    np.testing.assert_allclose(ds["plan_curvature"].values[far], expected[far], rtol=0.03)
    assert (ds["plan_curvature"].values[far] > 0).all()
    mean_z, _ = regrid.bin_points(pixel_lon, pixel_lat, 5000.0 - rise * rho, M09, window)
    # Pixels are binned by centre in the reference, weighted by overlap in GDAL's average:
    # they differ by at most about one pixel's change in elevation (rise x 100 m).
    np.testing.assert_allclose(ds["elevation"].values[inside], mean_z[inside], atol=rise * res)
    # Roughness: the range of the pixels centred in the cell, plus at most the pixels GDAL
    # also counts for overlapping the cell's edge.
    index = regrid.cell_index(pixel_lon, pixel_lat, M09, window).ravel()
    top_z, low_z = np.full(index.max() + 1, -np.inf), np.full(index.max() + 1, np.inf)
    z = (5000.0 - rise * rho).ravel()
    np.maximum.at(top_z, index[index >= 0], z[index >= 0])
    np.minimum.at(low_z, index[index >= 0], z[index >= 0])
    centred = (top_z - low_z).reshape(window.shape)
    got = ds["roughness"].values
    assert (got[inside] >= centred[inside] - 1e-3).all()
    assert (got[inside] <= centred[inside] + 2 * np.sqrt(2) * rise * res).all()


def test_aspect_uses_true_north_in_a_polar_projection(tmp_path: Path) -> None:
    """Polar stereographic (EPSG:3413), far from its central meridian: grid north is up to
    80 degrees off true north. A surface falling towards the pole still faces north."""
    crs = "EPSG:3413"
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0 = to_xy.transform(20.0, 66.0)  # 65 degrees east of the central meridian (45 W)
    res, n = 500.0, 500
    left, top = x0 - n * res / 2, y0 + n * res / 2
    xs, ys = np.meshgrid(left + (np.arange(n) + 0.5) * res, top - (np.arange(n) + 0.5) * res)
    _, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    # Falls 0.02 m per metre northwards along the meridian (metres per degree at 66 N).
    phi = np.radians(66.0)
    m_rad = A_WGS84 * (1 - E2_WGS84) / (1 - E2_WGS84 * np.sin(phi) ** 2) ** 1.5
    z = 4000.0 - 0.02 * np.radians(lat - 60.0) * m_rad
    dem = write_tif(tmp_path / "polar.tif", z, crs, from_origin(left, top, res, res))
    window, inside = footprint(crs, left, top, n * res)
    assert inside.sum() >= 100
    ds = static_from_rasters(StaticOptions(dem=dem), M09, window, names=["slope", "aspect_cos"])
    np.testing.assert_allclose(ds["aspect_cos"].values[inside], 1.0, atol=1e-3)
    np.testing.assert_allclose(ds["slope"].values[inside], np.degrees(np.arctan(0.02)), atol=0.01)
    # Without the convergence the same surface would read cos(65 deg) = 0.42 "north-facing".


def test_nodata_is_left_out(tmp_path: Path) -> None:
    """DEM nodata (sea) is excluded from the means; a cell of nodata only is NaN."""
    res, n = 0.001, 600
    z = np.full((n, n), 250.0)
    z[:, 300:] = -9999.0  # the eastern half is sea
    dem = write_tif(tmp_path / "coast.tif", z, "EPSG:4326", from_origin(36.0, 1.0, res, res))
    window = inner_window(36.0, 0.4, 36.6, 1.0)
    ds = static_from_rasters(StaticOptions(dem=dem), M09, window, names=["elevation", "slope"])
    lon_c, _ = M09.lonlat(window)
    elev = ds["elevation"].values
    np.testing.assert_allclose(elev[lon_c < 36.25], 250.0)
    assert np.isnan(elev[lon_c > 36.35]).all()
    np.testing.assert_allclose(ds["slope"].values[lon_c < 36.25], 0.0, atol=1e-9)


# Soil, land cover, NDVI


def test_soil_rasters_match_the_area_mean_regridder(tmp_path: Path) -> None:
    """A 30 arc-second sand raster aggregated by GDAL agrees with regrid's exact area mean;
    the scale option converts g/kg to %; nodata pixels are skipped."""
    res = 1 / 120
    lat = 2.0 - (np.arange(240) + 0.5) * res
    lon = 34.0 + (np.arange(360) + 0.5) * res
    sand_pct = (
        40 + 20 * np.sin(np.radians(lon * 40))[None, :] * np.cos(np.radians(lat * 70))[:, None]
    )
    raw = sand_pct * 10.0  # g/kg, as SoilGrids stores it
    raw[100:110, 50:60] = -1.0
    tif = write_tif(
        tmp_path / "sand.tif", raw, "EPSG:4326", from_origin(34.0, 2.0, res, res), nodata=-1.0
    )
    opts = StaticOptions(sand=tif, scale={"sand": 0.1})
    window = inner_window(34.0, 0.0, 37.0, 2.0)
    got = static_from_rasters(opts, M09, window, names=["sand"])["sand"].values
    masked = np.where(raw < 0, np.nan, sand_pct)
    da = xr.DataArray(masked, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    expected = regrid.latlon_to_ease(da, M09, window, "area").values
    np.testing.assert_allclose(got, expected, rtol=0.01)
    assert np.isfinite(got).all()


def test_land_cover_is_the_majority_class(tmp_path: Path) -> None:
    """Land cover takes the most frequent class in each cell, never an average of codes."""
    res = 0.005
    classes = np.full((200, 200), 10.0)  # 1 x 1 degree of class 10
    classes[:, 120:] = 40.0  # the east is class 40
    classes[::3, :] = 20.0  # a third of the rows class 20 everywhere: a minority
    tif = write_tif(
        tmp_path / "lc.tif", classes, "EPSG:4326", from_origin(20.0, 5.0, res, res), nodata=0
    )
    window = inner_window(20.0, 4.0, 21.0, 5.0)
    lc = static_from_rasters(StaticOptions(land_cover=tif), M09, window, names=["land_cover"])
    lon_c, _ = M09.lonlat(window)
    values = lc["land_cover"].values
    assert set(np.unique(values)) <= {10.0, 40.0}
    assert (values[lon_c < 20.55] == 10).all() and (values[lon_c > 20.65] == 40).all()


# Errors


def test_missing_and_unconfigured_rasters_are_named(tmp_path: Path) -> None:
    window = Window(800, 2300, 2, 2)
    with pytest.raises(StaticError, match=r"'clay': no raster configured \(set clay: PATH\)"):
        static_from_rasters(StaticOptions(), M09, window, names=["clay"])
    gone = tmp_path / "nowhere" / "dem.tif"
    with pytest.raises(StaticError, match=rf"'dem': raster {gone} does not exist"):
        static_from_rasters(StaticOptions(dem=gone), M09, window, names=["slope"])
    broken = tmp_path / "ndvi.tif"
    broken.write_bytes(b"II*\x00 this is not a GeoTIFF")
    with pytest.raises(StaticError, match=rf"'ndvi': cannot read raster {broken}"):
        static_from_rasters(StaticOptions(ndvi=broken), M09, window, names=["ndvi"])
    elsewhere = write_tif(
        tmp_path / "sand.tif",
        np.full((50, 50), 30.0),
        "EPSG:4326",
        from_origin(-70.0, -10.0, 0.01, 0.01),
    )
    with pytest.raises(StaticError, match=rf"'sand': raster {elsewhere} has no valid value over"):
        static_from_rasters(StaticOptions(sand=elsewhere), M09, window, names=["sand"])
    with pytest.raises(StaticError, match="not a raster static attribute"):
        static_from_rasters(StaticOptions(), M09, window, names=["smap_mean"])


def test_values_outside_the_valid_range_name_the_attribute(tmp_path: Path) -> None:
    """Bulk density in kg/m3 (a unit mistake) is refused, naming the attribute."""
    res = 0.01
    tif = write_tif(
        tmp_path / "bd.tif",
        np.full((100, 100), 1450.0),
        "EPSG:4326",
        from_origin(30.0, 1.0, res, res),
    )
    with pytest.raises(
        StaticError, match=r"'bulk_density' from raster .*bd.tif: \d+ cells outside"
    ):
        static_from_rasters(
            StaticOptions(bulk_density=tif),
            M09,
            inner_window(30.0, 0.0, 31.0, 1.0),
            names=["bulk_density"],
        )
    ok = StaticOptions(bulk_density=tif, scale={"bulk_density": 0.001})
    ds = static_from_rasters(ok, M09, inner_window(30.0, 0.0, 31.0, 1.0), names=["bulk_density"])
    np.testing.assert_allclose(ds["bulk_density"], 1.45, rtol=1e-6)


def test_options_are_strict() -> None:
    with pytest.raises(ValidationError, match="extra"):
        StaticOptions(dem_path="x.tif")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="unknown attribute"):
        StaticOptions(scale={"elevation_m": 2.0})
    with pytest.raises(ValidationError, match="before"):
        StaticOptions(long_term_start=date(2020, 1, 1), long_term_end=date(2019, 1, 1))
    assert set(RASTERS) | {"dem"} <= set(StaticOptions.model_fields)


# Long-term means from the cube

DOMAIN = Window(800, 2300, 12, 16)
DAYS = [date(2020, 3, 1) + timedelta(days=k) for k in range(10)]


def daily(names: dict[str, np.ndarray], days: list[date], window: Window = DOMAIN) -> xr.Dataset:
    coords = {"time": pd.to_datetime(days), "y": M09.y_centres(window), "x": M09.x_centres(window)}
    return xr.Dataset(
        {n: (("time", "y", "x"), v.astype(np.float32)) for n, v in names.items()}, coords=coords
    )


def test_long_term_means_from_a_cube(tmp_path: Path) -> None:
    """Means over the period skip NaN days; cells with too few valid days are NaN."""
    cube = Cube.create(tmp_path / "cube.zarr", M09, DOMAIN, date(2020, 1, 1), date(2020, 12, 31), 8)
    rng = np.random.default_rng(1)
    shape = (len(DAYS), *DOMAIN.shape)
    values = {
        "lst_day": rng.uniform(280, 320, shape),
        "lst_night": rng.uniform(260, 290, shape),
        "albedo_bsa": rng.uniform(0.1, 0.3, shape),
        "albedo_wsa": rng.uniform(0.1, 0.3, shape),
        "precip_mswep": rng.gamma(0.5, 4.0, shape),
    }
    values["lst_day"][:7, 0, 0] = np.nan  # cell (0, 0) has 3 valid LST days only
    smap = rng.uniform(0.05, 0.45, shape)
    smap[::2] = np.nan  # SMAP seen every other day
    cube.write("forcing", daily(values, DAYS), source="test", version="v1")
    cube.write("smap", daily({"smap": smap}, DAYS), source="test", version="v1")
    # Outside the period: must not count.
    later = daily(
        {k: np.full((1, *DOMAIN.shape), 300.0 if "lst" in k else 0.9) for k in values},
        [date(2020, 4, 1)],
    )
    cube.write("forcing", later, source="test", version="v1")

    sub = Window(802, 2303, 6, 9)
    ds = long_term_means(cube, M09, sub, DAYS[0], DAYS[-1], min_days=4)
    assert set(ds.data_vars) == set(LONG_TERM)
    rel = (slice(2, 8), slice(3, 12))
    for name, (_, var) in LONG_TERM.items():
        src = smap if var == "smap" else values[var]
        np.testing.assert_allclose(ds[name].values, np.nanmean(src, axis=0)[rel], rtol=1e-5)
        assert ds[name].attrs["units"] == REGISTRY[name].units and ds[name].dtype == np.float32
    full = long_term_means(cube, M09, DOMAIN, DAYS[0], DAYS[-1], min_days=4)
    assert np.isnan(full["lst_day_mean"].values[0, 0]) and np.isfinite(
        full["lst_night_mean"].values[0, 0]
    )
    assert full.attrs["long_term_period"] == "2020-03-01/2020-03-10"
    # An unwritten period gives NaN everywhere, not zeros.
    empty = long_term_means(cube, M09, sub, date(2020, 6, 1), date(2020, 6, 30))
    assert all(np.isnan(empty[n].values).all() for n in LONG_TERM)


def test_long_term_mean_out_of_range_is_named(tmp_path: Path) -> None:
    """LST in degrees Celsius (a unit mistake upstream) is caught by the mean's range."""
    cube = Cube.create(tmp_path / "cube.zarr", M09, DOMAIN, date(2020, 1, 1), date(2020, 12, 31), 8)
    celsius = daily({"lst_day": np.full((len(DAYS), *DOMAIN.shape), 25.0)}, DAYS)
    cube.write("forcing", celsius, source="test", version="v1")
    with pytest.raises(StaticError, match=r"'lst_day_mean' from cube .*: 192 cells outside"):
        long_term_means(cube, M09, DOMAIN, DAYS[0], DAYS[-1])


def test_precip_mean_can_come_from_another_product(tmp_path: Path) -> None:
    """Without MSWEP (licence), precip_mean can be the IMERG long-term mean."""
    cube = Cube.create(tmp_path / "cube.zarr", M09, DOMAIN, date(2020, 1, 1), date(2020, 12, 31), 8)
    cube.write(
        "forcing",
        daily({"precip_imerg": np.full((len(DAYS), *DOMAIN.shape), 2.5)}, DAYS),
        source="test",
        version="v1",
    )
    ds = long_term_means(cube, M09, DOMAIN, DAYS[0], DAYS[-1], precip="precip_imerg")
    np.testing.assert_allclose(ds["precip_mean"], 2.5)
    assert ds.attrs["precip_mean_from"] == "precip_imerg"
    assert np.isnan(long_term_means(cube, M09, DOMAIN, DAYS[0], DAYS[-1])["precip_mean"]).all()


def test_all_17_statics_go_into_the_cube(tmp_path: Path) -> None:
    """Rasters plus long-term means give exactly the gsm3 statics, and the cube takes them."""
    lon_c, lat_c = M09.lonlat(DOMAIN)
    west, north, res = np.floor(lon_c.min()) - 1, np.ceil(lat_c.max()) + 1, 0.01
    n_rows = round((north - np.floor(lat_c.min()) + 1) / res)
    n_cols = round((np.ceil(lon_c.max()) + 1 - west) / res)
    transform = from_origin(west, north, res, res)
    constant = {
        "sand": 40.0,
        "clay": 25.0,
        "silt": 35.0,
        "bulk_density": 1.4,
        "land_cover": 7.0,
        "ndvi": 0.5,
    }
    paths = {
        k: write_tif(tmp_path / f"{k}.tif", np.full((n_rows, n_cols), v), "EPSG:4326", transform)
        for k, v in constant.items()
    }
    ramp = 1200.0 + 5.0 * np.arange(n_cols)[None, :] * np.ones((n_rows, 1))
    paths["dem"] = write_tif(tmp_path / "dem.tif", ramp, "EPSG:4326", transform)
    cube = Cube.create(tmp_path / "cube.zarr", M09, DOMAIN, date(2020, 1, 1), date(2020, 12, 31), 8)
    fields = {
        "lst_day": 300.0,
        "lst_night": 280.0,
        "albedo_bsa": 0.2,
        "albedo_wsa": 0.22,
        "precip_mswep": 3.0,
    }
    cube.write(
        "forcing",
        daily({k: np.full((len(DAYS), *DOMAIN.shape), v) for k, v in fields.items()}, DAYS),
        source="test",
        version="v1",
    )
    cube.write(
        "smap",
        daily({"smap": np.full((len(DAYS), *DOMAIN.shape), 0.3)}, DAYS),
        source="test",
        version="v1",
    )
    opts = StaticOptions(
        **paths, long_term_start=DAYS[0], long_term_end=DAYS[-1], long_term_min_days=5
    )
    ds = static_attributes(opts, cube, M09, DOMAIN)
    assert sorted(ds.data_vars) == sorted(FEATURE_SETS["gsm3"][1])
    for name, value in constant.items():
        np.testing.assert_allclose(ds[name], value, rtol=1e-6)
    np.testing.assert_allclose(ds["smap_mean"], 0.3, rtol=1e-6)
    # The ramp rises 5 m per 0.01 deg eastwards: faces west, aspect_cos 0 in both hemispheres.
    np.testing.assert_allclose(ds["aspect_cos"], 0.0, atol=1e-6)
    assert ((ds["slope"] > 0.2) & (ds["slope"] < 0.3)).all()  # atan(5 m / 1.1 km)
    cube.write_static(ds, source="static", version="rasters-v1")
    back = cube.read_static()
    np.testing.assert_allclose(back["sand"], 40.0)
    with pytest.raises(StaticError, match="long_term_start and long_term_end"):
        static_attributes(StaticOptions(**paths), cube, M09, DOMAIN)


# Default providers: Copernicus GLO-90, SoilGrids 2.0, ESA WorldCover (docs/static-attributes.md)

SMALL = M09.window_from_bbox(36.5, -0.6, 36.65, -0.45)  # 2 x 2 cells, one tile of each
SG = "https://files.isric.org/soilgrids/latest/data"
SMALL_URLS = [
    "https://copernicus-dem-90m.s3.amazonaws.com/Copernicus_DSM_COG_30_S01_00_E036_00_DEM/"
    "Copernicus_DSM_COG_30_S01_00_E036_00_DEM.tif",
    *(
        url
        for p in ("sand", "clay", "silt", "bdod")
        for url in (
            f"{SG}/{p}/{p}_0-5cm_mean.vrt",
            f"{SG}/{p}/{p}_0-5cm_mean/tileSG-019-054/tileSG-019-054_3-2.tif",
        )
    ),
    "https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map/"
    "ESA_WorldCover_10m_2021_v200_S03E036_Map.tif",
]


class Provider:
    """An HTTP client serving the files the providers publish (made by the world writer,
    which writes their names, CRSs, tiling, dtypes, nodata and units), recording each GET;
    anything else is a 404 (as S3 answers for an ocean tile)."""

    def __init__(self, folder: Path, fail: bool = False) -> None:
        self.files = [p for p in folder.rglob("*") if p.is_file()]
        self.calls: list[str] = []
        self.fail = fail

    def get(self, url: str, timeout: float):
        if self.fail:
            raise AssertionError(f"no download expected, got GET {url}")
        self.calls.append(url)
        # SoilGrids tile names repeat across maps: match the map folder too.
        deep = [p for p in self.files if url.endswith("/".join(p.parts[-3:]))]
        named = [p for p in self.files if p.name == url.rsplit("/", 1)[-1]]
        path = (deep or named or [None])[0]
        body = path.read_bytes() if path else b""
        return SimpleNamespace(status_code=200 if path else 404, content=body)


MY_NDVI = "operator/ndvi_x1e4.tif"
CONSTANT = {"elevation": 1500.0, "sand": 40.0, "clay": 25.0, "silt": 35.0,
            "bulk_density": 1.3, "land_cover": 12.0, "ndvi": 0.5}  # fmt: skip


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """The providers' files over SMALL for a uniform world (all land)."""
    coords = {"y": M09.y_centres(SMALL), "x": M09.x_centres(SMALL)}
    ds = xr.Dataset(
        {k: (("y", "x"), np.full(SMALL.shape, v)) for k, v in CONSTANT.items()}, coords=coords
    )
    for name in TERRAIN[1:]:
        ds[name] = ds["elevation"] * 0
    folder = tmp_path_factory.mktemp("providers")
    write_static(ds, M09, SMALL, folder)
    # NDVI's default is a MOD13A3 mean (tests/test_static_ndvi.py): here the operator's
    # raster, in MODIS integer units (x 10000), keeps these tests on the other providers.
    (folder / MY_NDVI).parent.mkdir()
    write_tif(folder / MY_NDVI, np.full((100, 100), CONSTANT["ndvi"] * 1e4), "EPSG:4326",
              from_origin(36.0, 0.0, 0.01, 0.01))  # fmt: skip
    return folder


def test_defaults_fetch_exactly_the_window_tiles(tmp_path: Path, published: Path) -> None:
    client = Provider(published)
    opts = StaticOptions(ndvi=published / MY_NDVI, scale={"ndvi": 1e-4})
    filled, used = default_rasters(opts, M09, SMALL, tmp_path / "raw", client)
    assert client.calls == SMALL_URLS
    assert used["dem"] == "copernicus-glo90" and used["ndvi"] == "ndvi_x1e4.tif"
    ds = static_from_rasters(filled, M09, SMALL)
    for name, value in CONSTANT.items():
        want = 40.0 if name == "land_cover" else value  # IGBP cropland is WorldCover 40
        np.testing.assert_allclose(ds[name], want, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(ds["slope"], 0.0, atol=1e-9)
    cached = tmp_path / "raw/static/soilgrids/sand_0-5cm_mean/tileSG-019-054/tileSG-019-054_3-2.tif"
    assert cached.is_file()


def test_a_download_is_cached_and_an_ocean_tile_remembered(tmp_path: Path, published) -> None:
    client = Provider(published)
    opts = StaticOptions(ndvi=published / MY_NDVI)
    default_rasters(opts, M09, SMALL, tmp_path / "raw", client)
    n = len(client.calls)
    default_rasters(opts, M09, SMALL, tmp_path / "raw", client)
    assert len(client.calls) == n  # nothing fetched again
    # Next door (one degree east) the provider has no DEM tile: a 404 is open sea, kept.
    east = Window(SMALL.row0, SMALL.col0 + 12, 2, 2)
    with pytest.raises(StaticError, match=r"'dem': the default provider has no tile over"):
        default_rasters(opts, M09, east, tmp_path / "raw", client)
    absent = list((tmp_path / "raw/static/copernicus-dem-90m").glob("*E037*.absent"))
    assert len(absent) == 1
    calls = len(client.calls)
    with pytest.raises(StaticError, match="no tile over"):
        default_rasters(opts, M09, east, tmp_path / "raw", client)
    assert len(client.calls) == calls


def test_an_operator_raster_overrides_its_default(tmp_path: Path, published: Path) -> None:
    client = Provider(published)
    sand = write_tif(
        tmp_path / "my_sand.tif", np.full((100, 100), 55.0), "EPSG:4326",
        from_origin(36.0, 0.0, 0.01, 0.01),
    )  # fmt: skip
    opts = StaticOptions(sand=sand, ndvi=published / MY_NDVI)
    filled, used = default_rasters(opts, M09, SMALL, tmp_path / "raw", client)
    assert not [u for u in client.calls if "/sand/" in u]
    assert [u for u in client.calls if "/clay/" in u]
    assert used["sand"] == "my_sand.tif" and "sand" not in filled.scale
    ds = static_from_rasters(filled, M09, SMALL, names=["sand", "clay"])
    np.testing.assert_allclose(ds["sand"], 55.0)
    np.testing.assert_allclose(ds["clay"], 25.0)


def test_an_archive_is_read_without_any_download(tmp_path: Path, published: Path) -> None:
    opts = StaticOptions(archive=published, ndvi=published / MY_NDVI)
    filled, _ = default_rasters(opts, M09, SMALL, tmp_path / "raw", Provider(published, True))
    ds = static_from_rasters(filled, M09, SMALL, names=["elevation", "bulk_density"])
    np.testing.assert_allclose(ds["bulk_density"], 1.3, rtol=1e-6)
    np.testing.assert_allclose(ds["elevation"], 1500.0)
    # An incomplete mirror is named: the archive lacks a SoilGrids tile the VRT lists.
    partial = tmp_path / "partial"
    for p in published.rglob("*"):
        if p.is_file() and "clay_0-5cm_mean/tileSG" not in p.as_posix():
            (partial / p.relative_to(published)).parent.mkdir(parents=True, exist_ok=True)
            (partial / p.relative_to(published)).write_bytes(p.read_bytes())
    opts = StaticOptions(archive=partial, ndvi=published / MY_NDVI)
    with pytest.raises(StaticError, match=r"archive .*partial lacks clay_0-5cm_mean/tileSG-"):
        default_rasters(opts, M09, SMALL, tmp_path / "raw", Provider(published, True))


def test_a_failing_download_names_the_url(tmp_path: Path, published: Path) -> None:
    class Broken:
        def get(self, url: str, timeout: float):
            return SimpleNamespace(status_code=403 if url.endswith(".vrt") else 200, content=b"")

    opts = StaticOptions(dem=published / "x.tif", land_cover=published / "x.tif")
    with pytest.raises(StaticError, match=rf"GET {SG}/sand/sand_0-5cm_mean.vrt failed: HTTP 403"):
        default_rasters(opts, M09, SMALL, tmp_path / "raw", Broken())
