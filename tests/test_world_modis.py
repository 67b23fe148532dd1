"""The world's MODIS writer and the MODIS reader on its archive: a round trip through real
MYD11A1 / MCD43A3 v061 HDF4-EOS tiles, the archive's span, missing products and tiles.

Quantisation: LST is stored in 0.02 K steps and albedo in 0.001, so a 9 km value comes back
within half a step (0.01 K, 0.0005) plus float32 rounding of the world's and the reader's
values (1e-4 K, 1e-6).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyhdf.SD import SD, SDC

from gsm3_ops.grid import M09
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.checks import check_gridded
from gsm3_ops.sources.modis import MissingTileError, ModisSource, Options
from gsm3_ops.sources.modis_hdf import parse_struct_metadata, tile_corners
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.world.modis import MCD43A3, MYD11A1, granule_path, write_days

VARIABLES = ["lst_day", "lst_night", "albedo_bsa", "albedo_wsa"]
TOLERANCE = {"lst_day": 0.01 + 1e-4, "lst_night": 0.01 + 1e-4}
TOLERANCE |= {"albedo_bsa": 0.0005 + 1e-6, "albedo_wsa": 0.0005 + 1e-6}
START = dt.date(2020, 3, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]
WINDOW = M09.window_from_bbox(39.0, -4.6, 40.0, -3.6)  # inside h21v09
EDGE = M09.window_from_bbox(39.6, -4.6, 40.6, -3.6)  # across the h21v09 / h22v09 edge


@pytest.fixture(scope="module")
def world() -> xr.Dataset:
    """Three days of the synthetic world's MODIS variables on the small window."""
    return SyntheticSource().forcing(M09, WINDOW, DAYS[0], DAYS[-1])[VARIABLES].load()


@pytest.fixture(scope="module")
def archive(world: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("modis_archive")
    write_days(root, world, M09, WINDOW)
    return root


def _fields(window, days: list[dt.date], lst: float = 300.0, albedo: float = 0.2) -> xr.Dataset:
    """Smooth fields with a cloudy column (NaN LST) on ``window``."""
    lon, _ = M09.lonlat(window)
    base = np.stack([lon - lon.mean() + 2 * k for k in range(len(days))])
    clouds = np.zeros(base.shape, bool)
    clouds[:, :, 0] = True
    lst_day = np.where(clouds, np.nan, lst + base)
    data = {
        "lst_day": lst_day,
        "lst_night": lst_day - 15.0,
        "albedo_bsa": albedo + 0.01 * base,
        "albedo_wsa": albedo + 0.02 + 0.01 * base,
    }
    time = np.array([np.datetime64(d.isoformat(), "ns") for d in days])
    dims = ("time", "y", "x")
    return xr.Dataset({k: (dims, v.astype(np.float32)) for k, v in data.items()}, {"time": time})


def _grid(src: ModisSource, day: dt.date, root: Path, window=WINDOW) -> xr.Dataset:
    return src.to_grid(src.read(src.local(day, root)), M09, window)


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_gives_back_the_world_within_quantisation(
    world: xr.Dataset, archive: Path
) -> None:
    src = ModisSource(Options(archive=archive))
    for i, day in enumerate(DAYS):
        got = _grid(src, day, archive)
        assert "empty:lst_day" not in check_gridded(got, "modis")
        for var in VARIABLES:
            want, back = world[var].values[i], got[var].values[0]
            np.testing.assert_array_equal(np.isnan(back), np.isnan(want), err_msg=var)
            np.testing.assert_allclose(back, want, rtol=0, atol=TOLERANCE[var], equal_nan=True)
    clouds = np.isnan(world["lst_day"].values) & np.isfinite(world["albedo_bsa"].values)
    assert clouds.any() and np.isfinite(world["lst_day"].values).any()  # both cases were met


def test_tiles_have_the_real_products_layout(archive: Path) -> None:
    lst = archive / granule_path(MYD11A1, DAYS[0], 21, 9)
    assert lst.parts[-3:-1] == ("MYD11A1.061", "2020.03.01")
    assert lst.name.startswith("MYD11A1.A2020061.h21v09.061.") and lst.suffix == ".hdf"
    sd = SD(str(lst), SDC.READ)
    try:
        grids = parse_struct_metadata(sd.attributes()["StructMetadata.0"])
        grid = grids["MODIS_Grid_Daily_1km_LST"]
        assert (grid.x_dim, grid.y_dim, grid.sphere_radius) == (1200, 1200, 6371007.181)
        (ulx, uly), (lrx, lry) = tile_corners(21, 9)
        assert (*grid.upper_left, *grid.lower_right) == pytest.approx((ulx, uly, lrx, lry))
        assert set(grid.fields) == {"LST_Day_1km", "QC_Day", "LST_Night_1km", "QC_Night"}
        sds = sd.select("LST_Day_1km")
        attrs = sds.attributes()
        assert sds.info()[3] == SDC.UINT16 and sds.getcompress()[0] == SDC.COMP_DEFLATE
        assert (attrs["scale_factor"], attrs["add_offset"], attrs["_FillValue"]) == (0.02, 0, 0)
        assert list(attrs["valid_range"]) == [7500, 65535]
        value, qc = sds.get(), sd.select("QC_Day").get()
        assert sd.select("QC_Day").info()[3] == SDC.UINT8
    finally:
        sd.end()
    # Mandatory QA bits: 00 where a value is, 10 (cloud) or 11 (outside the window) where not.
    assert set(np.unique(qc[value > 0] & 0b11)) == {0b00}
    assert set(np.unique(qc[value == 0] & 0b11)) == {0b10, 0b11}

    sd = SD(str(archive / granule_path(MCD43A3, DAYS[0], 21, 9)), SDC.READ)
    try:
        grid = parse_struct_metadata(sd.attributes()["StructMetadata.0"])["MOD_Grid_BRDF"]
        assert (grid.x_dim, grid.y_dim) == (2400, 2400)
        sds = sd.select("Albedo_BSA_shortwave")
        attrs = sds.attributes()
        assert sds.info()[3] == SDC.INT16 and attrs["_FillValue"] == 32767
        assert attrs["scale_factor"] == 0.001 and list(attrs["valid_range"]) == [0, 32766]
        qa = sd.select("BRDF_Albedo_Band_Mandatory_Quality_shortwave")
        assert qa.info()[3] == SDC.UINT8 and qa.attributes()["_FillValue"] == 255
        value, q = sds.get(), qa.get()
    finally:
        sd.end()
    assert set(np.unique(q[value != 32767])) == {0} and set(np.unique(q[value == 32767])) == {255}


def test_rewriting_a_day_replaces_its_files(tmp_path: Path) -> None:
    fields = _fields(WINDOW, DAYS[:1])
    first = write_days(tmp_path, fields, M09, WINDOW)
    again = write_days(tmp_path, fields + 1.0, M09, WINDOW)
    assert first == again and len(first) == 2  # one tile per product
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(first)


# --- the archive ------------------------------------------------------------------------------


def test_archive_span_is_the_days_with_every_product(tmp_path: Path) -> None:
    fields = _fields(WINDOW, DAYS)
    write_days(tmp_path, fields[["lst_day", "lst_night"]], M09, WINDOW)
    write_days(tmp_path, fields[["albedo_bsa", "albedo_wsa"]].isel(time=[0, 1]), M09, WINDOW)
    src = ModisSource(Options(archive=tmp_path))
    assert src.first_date() == DAYS[0]
    assert src.latest_date(dt.date(2030, 1, 1)) == DAYS[1]  # MCD43A3 ends a day earlier
    only_lst = ModisSource(Options(archive=tmp_path, products=Options().products[:1]))
    assert only_lst.latest_date(dt.date(2030, 1, 1)) == DAYS[2]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DateNotServedError, match="holds no day with tiles of every product"):
        ModisSource(Options(archive=empty)).latest_date(dt.date(2030, 1, 1))


def test_latest_production_and_collection_win(tmp_path: Path) -> None:
    write_days(tmp_path, _fields(WINDOW, DAYS[:1], lst=300.0), M09, WINDOW)
    old = tmp_path / granule_path(MYD11A1, DAYS[0], 21, 9)
    newer = old.with_name(old.name.replace(".2020063031415.", ".2020090000000."))
    other = tmp_path / "other"
    write_days(other, _fields(WINDOW, DAYS[:1], lst=310.0), M09, WINDOW)
    shutil.copyfile(other / granule_path(MYD11A1, DAYS[0], 21, 9), newer)
    src = ModisSource(Options(archive=tmp_path))
    granule = src.local(DAYS[0], tmp_path)
    assert newer in granule.files and old not in granule.files
    assert granule.version == "MYD11A1.061+MCD43A3.061"
    got = src.to_grid(src.read(granule), M09, WINDOW)["lst_day"].values
    assert np.nanmin(got) > 305.0
    older = tmp_path / "flat" / old.name.replace(".061.", ".006.")
    older.parent.mkdir()
    shutil.copyfile(old, older)  # a C6 copy in another sub-folder: the C6.1 file is read
    assert older not in src.local(DAYS[0], tmp_path).files


# --- missing products and tiles are not clouds -----------------------------------------------


def test_missing_product_is_named_not_taken_for_cloud(tmp_path: Path) -> None:
    write_days(tmp_path, _fields(WINDOW, DAYS[:2]), M09, WINDOW)
    (tmp_path / granule_path(MCD43A3, DAYS[1], 21, 9)).unlink()
    src = ModisSource(Options(archive=tmp_path))
    with pytest.raises(DateNotServedError, match=r"no MCD43A3 tile for 2020-03-02 in the archive"):
        src.local(DAYS[1], tmp_path)
    clim = xr.Dataset(
        {
            v: (("dayofyear", "y", "x"), np.full((366, *WINDOW.shape), 0.25))
            for v in ("albedo_bsa", "albedo_wsa")
        },
        coords={
            "dayofyear": np.arange(1, 367),
            "y": M09.y_centres(WINDOW),
            "x": M09.x_centres(WINDOW),
        },
    )
    clim.to_netcdf(tmp_path / "clim.nc")
    filled = ModisSource(Options(archive=tmp_path, climatology=tmp_path / "clim.nc"))
    granule = filled.local(DAYS[1], tmp_path)
    assert granule.notes == ("filled:climatology", "missing:MCD43A3")
    np.testing.assert_allclose(_grid(filled, DAYS[1], tmp_path)["albedo_bsa"].values, 0.25)


def test_missing_tile_is_named_not_taken_for_cloud(tmp_path: Path) -> None:
    write_days(tmp_path, _fields(EDGE, DAYS[:2]), M09, EDGE)
    assert (tmp_path / granule_path(MYD11A1, DAYS[1], 22, 9)).exists()
    src = ModisSource(Options(archive=tmp_path))
    assert np.isfinite(_grid(src, DAYS[0], tmp_path, EDGE)["lst_day"].values).any()
    (tmp_path / granule_path(MYD11A1, DAYS[1], 22, 9)).unlink()
    with pytest.raises(MissingTileError, match=r"MYD11A1 on 2020-03-02: tile h22v09 missing"):
        _grid(src, DAYS[1], tmp_path, EDGE)


def test_tiles_that_miss_the_window_are_a_missing_tile(tmp_path: Path) -> None:
    """A product present but only for other tiles (the window's absent): named, not cloud."""
    write_days(tmp_path, _fields(WINDOW, DAYS[:1]), M09, WINDOW)
    far = M09.window_from_bbox(-60.0, -5.0, -59.0, -4.0)  # Amazonia: tile h12v09
    src = ModisSource(Options(products=Options().products[:1]))
    native = src.read(src.local(DAYS[0], tmp_path))
    with pytest.raises(MissingTileError, match=r"MYD11A1 on 2020-03-01: tile h12v09 missing"):
        src.to_grid(native, M09, far)


def test_a_fully_cloudy_present_tile_is_an_empty_day(tmp_path: Path) -> None:
    fields = _fields(WINDOW, DAYS[:1])
    fields["lst_day"][:] = np.nan
    write_days(tmp_path, fields, M09, WINDOW)
    got = _grid(ModisSource(Options(archive=tmp_path)), DAYS[0], tmp_path)
    assert np.isnan(got["lst_day"].values).all() and np.isfinite(got["lst_night"].values).any()
    assert "empty:lst_day" in check_gridded(got, "modis")
