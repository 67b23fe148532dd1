"""Regridding onto EASE-Grid 2.0: conservation, bilinear exactness, wrap, NaN, real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from gsm3_ops import regrid
from gsm3_ops.grid import M09, M36, Window
from gsm3_ops.regrid import RegridError

# Independent of regrid.py's own transformers.
TO_XY = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)
TO_LONLAT = Transformer.from_crs("EPSG:6933", "EPSG:4326", always_xy=True)
SPHERE = 6371007.181
ERA5_NC = "era5/ecmwf_models_testdata/ERA5_AN_20100101_0000.nc"
MODIS_HDF = "modis/MOD09GA.A2008296.h14v17.006.2015181011753.hdf"
AFRICA = M09.window_from_bbox(20.0, -12.0, 45.0, 8.0)


def global_field(res: float, lon_0_360: bool = False, descending: bool = True) -> xr.DataArray:
    """A smooth analytic field with structure at ~100 km on a global regular grid."""
    lat = np.arange(-90 + res / 2, 90, res)
    if descending:
        lat = lat[::-1]
    lon = np.arange(0, 360, res) if lon_0_360 else np.arange(-180, 180, res)
    la, lo = np.radians(lat)[:, None], np.radians(lon)[None, :]
    values = 5 + 3 * np.sin(7 * lo) * np.cos(3 * la) ** 2 + 2 * np.cos(40 * la) * np.sin(25 * lo)
    return xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="f")


def sphere_band(lat: np.ndarray) -> np.ndarray:
    """Area (m2 per radian of longitude) between the equator and ``lat`` on the sphere."""
    return SPHERE**2 * np.sin(np.radians(lat))


def ellipsoid_band(lat: np.ndarray) -> np.ndarray:
    """Area (m2 per radian of longitude) between the equator and ``lat`` on WGS84."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    e, s = np.sqrt(e2), np.sin(np.radians(lat))
    q = s / (1 - e2 * s**2) + np.log((1 + e * s) / (1 - e * s)) / (2 * e)
    return a**2 * (1 - e2) / 2 * q


def source_total(da: xr.DataArray, window: Window, band=sphere_band) -> float:
    """Sum of value x area of each source cell's part inside the window's lon/lat box.

    A window of EASE2 is a lon/lat rectangle (x depends on lon only, y on lat only).
    """
    x_lo, x_hi = (
        M09.x0 + window.col0 * M09.cell_size,
        M09.x0 + (window.col0 + window.n_cols) * M09.cell_size,
    )
    y_hi, y_lo = (
        M09.y0 - window.row0 * M09.cell_size,
        M09.y0 - (window.row0 + window.n_rows) * M09.cell_size,
    )
    (lon_lo, lon_hi), (lat_lo, lat_hi) = TO_LONLAT.transform([x_lo, x_hi], [y_lo, y_hi])
    lat, lon = da["lat"].values, da["lon"].values
    dlat, dlon = abs(lat[1] - lat[0]), lon[1] - lon[0]
    lon = (lon + 180) % 360 - 180
    s = np.clip(lat - dlat / 2, lat_lo, lat_hi), np.clip(lat + dlat / 2, lat_lo, lat_hi)
    height = band(s[1]) - band(s[0])
    w = sum(  # each source column's overlap with the box, also across the antimeridian
        np.clip(np.minimum(c + dlon / 2, lon_hi) - np.maximum(c - dlon / 2, lon_lo), 0, None)
        for c in (lon - 360, lon, lon + 360)
    )
    area = height[:, None] * np.radians(w)[None, :]
    return float(np.sum(da.values * area))


@pytest.mark.parametrize("res", [0.25, 0.1])
@pytest.mark.parametrize("window", [AFRICA, M09.full], ids=["africa", "global"])
def test_area_mean_conserves_the_area_total(res: float, window: Window) -> None:
    """Area-weighted mean: sum(value x EASE cell area) equals the source's area total.

    Within 1 % with spherical source cell areas; exactly (1e-7) with WGS84 areas, the
    ellipsoid EASE2 is equal-area on (the sphere is 0.45 % off near the equator).
    """
    da = global_field(res)
    out = regrid.latlon_to_ease(da, M09, window, "area")
    assert out.dims == ("y", "x") and out.shape == window.shape
    assert not np.isnan(out.values).any()
    target = float(out.values.sum()) * M09.cell_size**2
    assert target == pytest.approx(source_total(da, window), rel=0.01)
    assert target == pytest.approx(source_total(da, window, ellipsoid_band), rel=1e-7)


def test_area_mean_of_a_coarse_cell_is_the_overlap_weighted_mean() -> None:
    """A 36 km cell over 1 degree source cells gets the overlap-area weighted mean."""
    lat = np.arange(-89.5, 90, 1.0)
    lon = np.arange(-179.5, 180, 1.0)
    values = np.add.outer(np.arange(lat.size) * 1000.0, np.arange(lon.size))
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    win = Window(200, 480, 1, 1)
    out = float(regrid.latlon_to_ease(da, M36, win, "area").values[0, 0])
    (x_lo, x_hi), (y_lo, y_hi) = (
        (M36.x0 + 480 * M36.cell_size, M36.x0 + 481 * M36.cell_size),
        (M36.y0 - 201 * M36.cell_size, M36.y0 - 200 * M36.cell_size),
    )
    (lon_lo, lon_hi), (lat_lo, lat_hi) = TO_LONLAT.transform([x_lo, x_hi], [y_lo, y_hi])
    w_lon = np.clip(np.minimum(lon + 0.5, lon_hi) - np.maximum(lon - 0.5, lon_lo), 0, None)
    # Area on the ellipsoid is proportional to the difference in EASE y (equal-area).
    edges_lo = TO_XY.transform(0 * lat, np.clip(lat - 0.5, lat_lo, lat_hi))[1]
    edges_hi = TO_XY.transform(0 * lat, np.clip(lat + 0.5, lat_lo, lat_hi))[1]
    w = np.outer(edges_hi - edges_lo, w_lon)
    assert out == pytest.approx(float((w * values).sum() / w.sum()), rel=1e-9)


def test_bilinear_reproduces_a_linear_field() -> None:
    """A field linear in lon and lat is reproduced exactly at every cell centre."""
    lat = np.arange(-30.0, 30.01, 0.25)
    lon = np.arange(10.0, 60.01, 0.25)
    da = xr.DataArray(
        2.0 * lon[None, :] - 3.0 * lat[:, None] + 7.0,
        dims=("latitude", "longitude"),
        coords={"latitude": lat, "longitude": lon},
    )
    out = regrid.latlon_to_ease(da, M09, AFRICA, "bilinear")
    lon_c, lat_c = M09.lonlat(AFRICA)
    np.testing.assert_allclose(out.values, 2.0 * lon_c - 3.0 * lat_c + 7.0, atol=1e-8)
    np.testing.assert_allclose(out["x"].values, M09.x_centres(AFRICA))
    np.testing.assert_allclose(out["y"].values, M09.y_centres(AFRICA))


@pytest.mark.parametrize("method", ["area", "bilinear"])
def test_longitudes_0_360_give_the_same_result(method: str) -> None:
    """0..360 longitudes (ERA5) and -180..180 (IMERG) regrid identically, across the seam."""
    window = M09.window_from_bbox(-20.0, 30.0, 20.0, 45.0)  # straddles 0 E (the 0..360 seam)
    a = regrid.latlon_to_ease(global_field(0.25), M09, window, method)
    b = regrid.latlon_to_ease(global_field(0.25, lon_0_360=True), M09, window, method)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10)
    rolled = global_field(0.25, lon_0_360=True).roll(lon=720, roll_coords=True)  # 180..360, 0..180
    c = regrid.latlon_to_ease(rolled, M09, window, method)
    np.testing.assert_allclose(c.values, b.values, rtol=1e-10)
    date_line = Window(300, 0, 50, 3856)  # a full row of cells wraps around 180 E
    a = regrid.latlon_to_ease(global_field(0.25), M09, date_line, method)
    b = regrid.latlon_to_ease(global_field(0.25, lon_0_360=True), M09, date_line, method)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10)
    assert not np.isnan(a.values).any()


@pytest.mark.parametrize("method", ["area", "bilinear"])
def test_dim_order_and_latitude_order_do_not_matter(method: str) -> None:
    """(time, lon, lat) arrays (IMERG) and ascending latitudes give the same (time, y, x)."""
    base = global_field(0.1, descending=True)
    stack = xr.concat([base, base * 2], dim="time").assign_coords(time=[0, 1])
    ref = regrid.latlon_to_ease(stack, M09, AFRICA, method)
    assert ref.dims == ("time", "y", "x")
    np.testing.assert_array_equal(ref["time"].values, [0, 1])
    swapped = stack.transpose("time", "lon", "lat").sortby("lat")
    out = regrid.latlon_to_ease(swapped, M09, AFRICA, method)
    np.testing.assert_allclose(out.values, ref.values, rtol=1e-12)
    np.testing.assert_allclose(ref.values[1], 2 * ref.values[0], rtol=1e-12)


@pytest.mark.parametrize("method", ["area", "bilinear"])
def test_nan_source_is_left_out(method: str) -> None:
    """NaN source values are ignored; cells with no valid source under them are NaN."""
    lat = np.arange(-20.0, 20.01, 0.1)
    lon = np.arange(15.0, 50.01, 0.1)
    values = np.full((lat.size, lon.size), 4.0)
    values[:, lon > 30.0] = np.nan  # east of 30 E: no data
    values[:, (lon > 25.0) & (lon <= 30.0)] = 8.0
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    window = M09.window_from_bbox(20.0, -10.0, 40.0, 10.0)
    out = regrid.latlon_to_ease(da, M09, window, method).values
    lon_c, _ = M09.lonlat(window)
    assert np.isnan(out[lon_c > 30.2]).all()
    assert np.isfinite(out[lon_c < 29.9]).all()
    # A cell whose valid part is constant gets exactly that constant, NaN neighbours or not.
    np.testing.assert_allclose(out[(lon_c > 25.3) & (lon_c < 30.0)], 8.0)
    np.testing.assert_allclose(out[lon_c < 24.8], 4.0)


def test_cells_off_a_regional_source_are_nan() -> None:
    """A regional source leaves the cells it does not reach NaN, for both methods."""
    lat = np.arange(0.05, 5.0, 0.1)
    lon = np.arange(30.05, 35.0, 0.1)
    da = xr.DataArray(
        np.ones((lat.size, lon.size)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    window = M09.window_from_bbox(28.0, -2.0, 37.0, 7.0)
    lon_c, lat_c = M09.lonlat(window)
    inside = (lon_c > 30.1) & (lon_c < 34.9) & (lat_c > 0.1) & (lat_c < 4.9)
    outside = (lon_c < 29.9) | (lon_c > 35.1) | (lat_c < -0.1) | (lat_c > 5.1)
    for method in ("area", "bilinear"):
        out = regrid.latlon_to_ease(da, M09, window, method).values
        np.testing.assert_allclose(out[inside], 1.0)
        assert np.isnan(out[outside]).all()


def test_bad_source_grids_are_refused() -> None:
    """Irregular coordinates, missing dims and unknown methods give a RegridError."""
    lat = np.array([0.0, 0.1, 0.3, 0.4])
    lon = np.arange(0.0, 1.0, 0.1)
    da = xr.DataArray(
        np.ones((4, 10)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="t2m"
    )
    with pytest.raises(RegridError, match="t2m: latitude is not regularly spaced"):
        regrid.latlon_to_ease(da, M09, AFRICA, "area")
    with pytest.raises(RegridError, match="no latitude dim"):
        regrid.latlon_to_ease(da.rename(lat="row"), M09, AFRICA, "area")
    with pytest.raises(RegridError, match="unknown regrid method 'nearest'"):
        regrid.latlon_to_ease(da, M09, AFRICA, "nearest")  # type: ignore[arg-type]


def test_long_stacks_are_done_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many fields (hourly steps) give the same answer when processed a few at a time."""
    base = global_field(0.25)
    stack = xr.concat([base * k for k in range(5)], dim="step")
    stack[2, 340:380, 800:900] = np.nan  # over the window (0.25 deg, lat descending)
    ref = regrid.latlon_to_ease(stack, M09, AFRICA, "area")
    monkeypatch.setattr(regrid, "_CHUNK_VALUES", 2 * base.size)
    np.testing.assert_allclose(regrid.latlon_to_ease(stack, M09, AFRICA, "area"), ref)
    assert np.isnan(ref.values[2]).any() and not np.isnan(ref.values[1]).any()


def test_weights_are_cached() -> None:
    """The second call with the same source grid, window and method reuses the weights."""
    da = global_field(0.25)
    regrid.latlon_to_ease(da, M09, AFRICA, "area")
    hits = regrid._weights.cache_info().hits
    regrid.latlon_to_ease(da.astype(np.float32) * 2, M09, AFRICA, "area")
    assert regrid._weights.cache_info().hits == hits + 1


# Points and stations


def test_stations_land_in_their_cells() -> None:
    """Known points land in their cells (the grid's lookup, which the in-situ cube uses);
    0..360 longitudes fold; points off the grid are -1 (tests/test_grid.py)."""
    # Just north-east of (0, 0): the cell right of the central meridian, above the equator.
    row, col = M09.lonlat_to_rowcol(np.array([0.01, 359.99]), np.array([0.01, -0.01]))
    assert row.tolist() == [M09.n_rows // 2 - 1, M09.n_rows // 2]
    assert col.tolist() == [M09.n_cols // 2, M09.n_cols // 2 - 1]
    # A USCRN station (Stillwater 2 W, OK): cell bounds computed independently contain it.
    lon, lat = -97.0914, 36.1181
    (r,), (c,) = M09.lonlat_to_rowcol(np.array([lon]), np.array([lat]))
    x, y = TO_XY.transform(lon, lat)
    xmin, ymin, xmax, ymax = M09.cell_bounds(r, c)
    assert xmin <= x < xmax and ymin < y <= ymax


def test_cell_index_agrees_with_the_grid() -> None:
    """The fast pixel lookup puts random points in the cells grid.py computes with pyproj."""
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-180, 360, 200_000), rng.uniform(-90, 90, 200_000)
    for grid in (M09, M36):
        row, col = grid.lonlat_to_rowcol((lon + 180) % 360 - 180, lat)
        expected = np.where(row >= 0, row * grid.n_cols + col, -1)
        np.testing.assert_array_equal(regrid.cell_index(lon, lat, grid, grid.full), expected)
    # In a window: indices relative to it, everything else -1.
    win = Window(600, 2000, 100, 150)
    idx = regrid.cell_index(lon, lat, M09, win)
    row, col = M09.lonlat_to_rowcol((lon + 180) % 360 - 180, lat)
    inside = (row >= 600) & (row < 700) & (col >= 2000) & (col < 2150)
    np.testing.assert_array_equal(idx[inside], (row[inside] - 600) * 150 + col[inside] - 2000)
    assert (idx[~inside] == -1).all()


def test_bin_points_bins_fine_pixels() -> None:
    """Pixel centres inside a cell are averaged; NaN values and points off the window ignored."""
    window = Window(700, 2100, 3, 4)
    rows, cols = np.meshgrid(np.arange(700, 703), np.arange(2100, 2104), indexing="ij")
    # 5 x 5 sub-points in every cell, value = 10 * local row + local col + sub-point offset.
    sub = (np.arange(5) + 0.5) / 5
    xs, ys, vals = [], [], []
    for dy in sub:
        for dx in sub:
            xs.append(M09.x0 + (cols + dx) * M09.cell_size)
            ys.append(M09.y0 - (rows + dy) * M09.cell_size)
            vals.append(10.0 * (rows - 700) + (cols - 2100) + dx)
    lon, lat = TO_LONLAT.transform(np.array(xs), np.array(ys))
    vals = np.array(vals)
    vals[0, 0, 0] = np.nan  # one NaN pixel in cell (0, 0)
    lon = np.append(lon.ravel(), 0.0)  # one point far off the window
    lat = np.append(lat.ravel(), 0.0)
    mean, count = regrid.bin_points(lon, lat, np.append(vals.ravel(), 99.0), M09, window)
    expected = 10.0 * (rows - 700) + (cols - 2100) + 0.5
    expected[0, 0] = np.mean(np.repeat(sub, 5)[1:])  # the NaN pixel's dx was the first
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    assert count[0, 0] == 24 and (count.ravel()[1:] == 25).all()
    empty, _ = regrid.bin_points(np.array([0.0]), np.array([0.0]), np.array([1.0]), M09, window)
    assert np.isnan(empty).all()


# Real files


def test_real_era5_swvl1_with_land_sea_mask(fixtures: Path) -> None:
    """Real ERA5 0.25 deg swvl1, sea masked with lsm: land values in range, all-sea cells NaN."""
    ds = xr.open_dataset(fixtures / ERA5_NC, engine="netcdf4")
    land = ds["lsm"] >= 0.5
    swvl1 = ds["swvl1"].where(land)
    window = M09.window_from_bbox(-12.0, 35.0, 20.0, 60.0)  # Europe, Atlantic and the North Sea
    for method in ("area", "bilinear"):
        out = regrid.latlon_to_ease(swvl1, M09, window, method)
        assert out.dtype == np.float32 and out.shape == window.shape
        assert out["time"].values == ds["time"].values  # scalar coordinates carry over
        assert np.nanmin(out) >= float(swvl1.min()) - 1e-6
        assert np.nanmax(out) <= float(swvl1.max()) + 1e-6
        # The mask regridded the same way is 0 exactly where no land source has weight.
        land_w = regrid.latlon_to_ease(land.astype(np.float64), M09, window, method).values
        assert np.isnan(out.values[land_w == 0]).all()
        assert np.isfinite(out.values[land_w > 0]).all()
        assert 0.2 < (land_w == 0).mean() < 0.8
        # Open sea west of Ireland (-11.5 E, 50 N) is NaN; Paris (2.35 E, 48.86 N) is land.
        (r_sea, r_par), (c_sea, c_par) = M09.lonlat_to_rowcol(
            np.array([-11.5, 2.35]), np.array([50.0, 48.86])
        )
        assert np.isnan(out.values[r_sea - window.row0, c_sea - window.col0])
        paris = float(out.values[r_par - window.row0, c_par - window.col0])
        assert 0.05 < paris < 0.6


def _struct_metadata(path: Path) -> list[dict[str, str]]:
    from pyhdf.SD import SD

    text = SD(str(path)).attributes()["StructMetadata.0"]
    grids = re.findall(r"GROUP=GRID_\d+(.*?)END_GROUP=GRID_\d+", text, flags=re.S)
    return [dict(re.findall(r"^\s*(\w+)=(.*)$", g, flags=re.M)) for g in grids]


def test_sinusoidal_lonlat_matches_the_real_modis_tile(fixtures: Path) -> None:
    """Pixel centres of h14v17 agree with the tile's StructMetadata corners (both grids)."""
    # +over: no wrap, so pixels beyond the projection's outline show as |lon| > 180.
    sinu = Transformer.from_crs(
        f"+proj=sinu +R={SPHERE} +units=m +over", "EPSG:4326", always_xy=True
    )
    grids = _struct_metadata(fixtures / MODIS_HDF)
    assert {int(g["XDim"]) for g in grids} == {1200, 2400}
    for g in grids:
        n = int(g["XDim"])
        assert int(g["YDim"]) == n
        assert float(g["ProjParams"].strip("()").split(",")[0]) == SPHERE
        ul = [float(v) for v in g["UpperLeftPointMtrs"].strip("()").split(",")]
        lr = [float(v) for v in g["LowerRightMtrs"].strip("()").split(",")]
        half = (lr[0] - ul[0]) / n / 2
        lon, lat = regrid.sinusoidal_lonlat(14, 17, n)
        assert lon.shape == lat.shape == (n, n)
        # The four corner pixel centres, half a pixel in from the tile's corners.
        corners = {
            (0, 0): (ul[0] + half, ul[1] - half),
            (0, n - 1): (lr[0] - half, ul[1] - half),
            (n - 1, 0): (ul[0] + half, lr[1] + half),
            (n - 1, n - 1): (lr[0] - half, lr[1] + half),
        }
        for (i, j), (x, y) in corners.items():
            exp_lon, exp_lat = sinu.transform(x, y)
            assert lat[i, j] == pytest.approx(exp_lat, abs=1e-9)
            if abs(exp_lon) <= 180.0:
                assert lon[i, j] == pytest.approx(exp_lon, abs=1e-7)
            else:
                assert np.isnan(lon[i, j])
        # This polar tile is mostly outside the outline; its upper-right corner is inside.
        assert np.isfinite(lon[0, n - 1]) and np.isnan(lon[0, 0])
        assert np.all(np.abs(lon[np.isfinite(lon)]) <= 180.0)


def test_sinusoidal_pixels_bin_into_the_9km_grid() -> None:
    """A 1 km tile on the equator (h18v8) fills its 9 km cells with ~123 pixels each."""
    lon, lat = regrid.sinusoidal_lonlat(18, 8, 1200)
    assert np.isfinite(lon).all()
    assert lon.min() == pytest.approx(0.0, abs=0.01) and lat.max() == pytest.approx(10.0, abs=0.01)
    window = M09.window_from_bbox(-1.0, -1.0, 11.0, 11.0)
    mean, count = regrid.bin_points(lon, lat, np.full(lon.shape, 300.0), M09, window)
    assert count.sum() == 1200 * 1200
    # Equal-area pixels in equal-area cells: interior cells get 81 km2 / (0.927 km)2 pixels.
    lon_c, lat_c = M09.lonlat(window)
    interior = count[(lon_c > 1) & (lon_c < 9) & (lat_c > 1) & (lat_c < 9)]
    pixel = 1111950.5196666666 / 1200
    assert interior.mean() == pytest.approx(M09.cell_size**2 / pixel**2, rel=0.01)
    np.testing.assert_allclose(mean[count > 0], 300.0)
    with pytest.raises(RegridError, match="h40v08 does not exist"):
        regrid.sinusoidal_lonlat(40, 8, 1200)
