"""IMERG: the real V06B half-hourly subset, daily files, run choice, requests and bad input."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from gsm3_ops.grid import M09
from gsm3_ops.sources import imerg_files
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
from gsm3_ops.sources.imerg import ImergSource, Options
from tests.earthdata_fakes import FakeEarthaccess, search_keys

DAY = dt.date(2020, 1, 1)
HH_NAME = "3B-HHR.MS.MRG.3IMERG.20200101-S{start}-E{end}.{minute:04d}.V06B.HDF5"
# The subset was cut at these indices of the full 0.1 degree grid (its history attribute).
LON_SLICE, LAT_SLICE = slice(1500, 1650), slice(1200, 1350)
# A known pixel of the subset: lon -29.75, lat 35.05 rains 11.148554 mm/hr.
PIXEL = {"lon": -29.75, "lat": 35.05}
PIXEL_RATE = 11.148554


@pytest.fixture()
def subset(fixtures: Path) -> Path:
    return fixtures / "imerg" / "GPM_3IMERGHH_bounds.nc4"


def _half_hour_copies(src: Path, folder: Path, n: int, day: dt.date = DAY) -> list[Path]:
    """``n`` half-hourly files of ``day`` made from the real file: times set, rates scaled."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    out = []
    for k in range(n):
        start = dt.datetime.fromtimestamp(t0 + 1800 * k, dt.UTC)
        end = start + dt.timedelta(minutes=29, seconds=59)
        name = HH_NAME.format(start=f"{start:%H%M%S}", end=f"{end:%H%M%S}", minute=30 * k)
        name = name.replace("20200101", f"{start:%Y%m%d}")
        dest = folder / name
        shutil.copyfile(src, dest)
        with netCDF4.Dataset(dest, "a") as nc:
            g = nc["Grid"]
            g["time"][:] = [t0 + 1800 * k]
            g["time_bnds"][:] = [[t0 + 1800 * k, t0 + 1800 * (k + 1)]]
            g["precipitationCal"][:] = g["precipitationCal"][:] * (k + 1) / n
        out.append(dest)
    return out


def _daily_file(
    path: Path,
    field_lat_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    units: str = "mm/day",
    name: str = "precipitation",
) -> Path:
    """A V07-layout daily file: root-group (time, lon, lat) variables, seconds since 1970."""
    t0 = int(dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.UTC).timestamp())
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 1)
        nc.createDimension("lon", lon.size)
        nc.createDimension("lat", lat.size)
        nc.createDimension("nv", 2)
        t = nc.createVariable("time", "i4", ("time",))
        t.units, t.calendar = "seconds since 1970-01-01 00:00:00Z", "julian"
        t[:] = [t0]
        tb = nc.createVariable("time_bnds", "i4", ("time", "nv"))
        tb.units = t.units
        tb[:] = [[t0, t0 + 86399]]
        nc.createVariable("lon", "f4", ("lon",))[:] = lon
        nc.createVariable("lat", "f4", ("lat",))[:] = lat
        p = nc.createVariable(name, "f4", ("time", "lon", "lat"), fill_value=-9999.9)
        p.units = units
        p[:] = field_lat_lon.T[None]
    return path


# --- the real half-hourly subset ------------------------------------------------------------


def test_real_subset_known_pixel_and_order(subset: Path, fixtures: Path) -> None:
    with netCDF4.Dataset(subset) as nc:
        g = nc["Grid"]
        assert g["precipitationCal"].dimensions == ("time", "lon", "lat")
        raw = np.asarray(g["precipitationCal"][:])
        lon, lat = np.asarray(g["lon"][:]), np.asarray(g["lat"][:])
    with netCDF4.Dataset(fixtures / "imerg" / "GPM_3IMERGHH_prefetch.nc4") as full:
        np.testing.assert_allclose(full["Grid"]["lon"][LON_SLICE], lon)
        np.testing.assert_allclose(full["Grid"]["lat"][LAT_SLICE], lat)
    i, j = int(np.argmin(abs(lon - PIXEL["lon"]))), int(np.argmin(abs(lat - PIXEL["lat"])))
    assert raw[0, i, j] == pytest.approx(PIXEL_RATE, rel=1e-6)
    assert raw[0, j, i] != pytest.approx(PIXEL_RATE, rel=1e-3)  # a transposed read would miss

    # One half hour stands for the day only when the coverage rule is relaxed.
    ds = ImergSource(Options(min_coverage=1 / 48)).read(_granule((subset,)))
    da = ds["precip_imerg"]
    assert da.dims == ("time", "lat", "lon") and da.shape == (1, 150, 150)
    assert da.attrs["units"] == "mm day-1"
    assert da.sel(PIXEL, method="nearest").item() == pytest.approx(PIXEL_RATE * 24, rel=1e-6)
    np.testing.assert_allclose(da.values[0], raw[0].T * 24, rtol=1e-6)


def test_half_hourly_day_sums_the_utc_day(subset: Path, tmp_path: Path) -> None:
    files = _half_hour_copies(subset, tmp_path / "hh", 48)
    files += _half_hour_copies(subset, tmp_path / "next", 1, DAY + dt.timedelta(days=1))
    with netCDF4.Dataset(subset) as nc:
        raw = np.asarray(nc["Grid"]["precipitationCal"][0], dtype=np.float64).T  # (lat, lon)
    expected = sum(raw * (k + 1) / 48 * 0.5 for k in range(48))  # mm/hr x 0.5 h, 48 half hours
    da = ImergSource().read(_granule(tuple(files)))["precip_imerg"]
    np.testing.assert_allclose(da.values[0], expected, rtol=1e-5)
    assert da.sel(PIXEL, method="nearest").item() == pytest.approx(PIXEL_RATE * 49 / 4, rel=1e-5)


def test_half_hourly_incomplete_day_is_an_error(subset: Path, tmp_path: Path) -> None:
    files = _half_hour_copies(subset, tmp_path, 47)
    with pytest.raises(SourceError, match=r"2020-01-01 cover 23\.5 of 24 hours \(47 half hours\)"):
        ImergSource().read(_granule(tuple(files)))


def test_half_hourly_duplicate_half_hour_is_an_error(subset: Path, tmp_path: Path) -> None:
    files = _half_hour_copies(subset, tmp_path / "a", 1) + _half_hour_copies(
        subset, tmp_path / "b", 1
    )
    with pytest.raises(SourceError, match="same half hour"):
        ImergSource(Options(min_coverage=1 / 48)).read(_granule(tuple(files)))


# --- daily files ----------------------------------------------------------------------------


def test_daily_file_is_transposed_by_dim_name(tmp_path: Path) -> None:
    lat = np.arange(-0.95, 1.0, 0.1)  # 20 rows
    lon = np.arange(10.05, 13.0, 0.1)  # 30 columns: not square, so a swap cannot hide
    field = np.add.outer(lat * 100, lon)  # distinct in every pixel
    f = _daily_file(
        tmp_path / "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4", np.abs(field), lat, lon
    )
    da = ImergSource().read(_granule((f,)))["precip_imerg"]
    assert da.shape == (1, 20, 30)
    np.testing.assert_allclose(da.values[0], np.abs(field), rtol=1e-6)
    assert da.sel(lat=0.05, lon=11.05, method="nearest").item() == pytest.approx(16.05, rel=1e-5)


def test_to_grid_area_mean_over_the_subset(subset: Path) -> None:
    src = ImergSource(Options(min_coverage=1 / 48))
    native = src.read(_granule((subset,)))
    window = M09.window_from_bbox(-29.0, 31.0, -16.0, 44.0)
    out = src.to_grid(native, M09, window)
    da = out["precip_imerg"]
    assert da.dims == ("time", "y", "x") and da.shape == (1, *window.shape)
    assert da.dtype == np.float32
    check_gridded(out, "imerg")
    # An area mean never leaves the range of the pixels under it, and the window mean
    # matches the native mean over the same box to within edge effects.
    vals = native["precip_imerg"].sel(lat=slice(31, 44), lon=slice(-29, -16)).values
    assert np.nanmin(da) >= np.nanmin(vals) - 1e-4 and np.nanmax(da) <= np.nanmax(vals) + 1e-4
    assert float(np.nanmean(da)) == pytest.approx(float(np.nanmean(vals)), rel=0.05)


def test_to_grid_window_outside_the_files_is_an_error(subset: Path) -> None:
    src = ImergSource(Options(min_coverage=1 / 48))
    native = src.read(_granule((subset,)))
    with pytest.raises(SourceError, match="2020-01-01"):
        src.to_grid(native, M09, M09.window_from_bbox(30.0, -5.0, 35.0, 0.0))


# --- fetching -------------------------------------------------------------------------------


def test_fetch_falls_back_to_late_and_records_it(subset: Path, tmp_path: Path) -> None:
    late = tmp_path / "srv" / "3B-DAY-L.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4"
    late.parent.mkdir()
    shutil.copyfile(subset, late)
    fake = FakeEarthaccess({("GPM_3IMERGDL", "07"): [late]})
    src = ImergSource(Options(bbox=(-30.0, 30.0, -15.0, 45.0)), client=fake)
    assert isinstance(src, GriddedSource)
    granule = src.fetch(DAY, tmp_path / "work")
    day_range = ("2020-01-01T00:00:00Z", "2020-01-01T23:59:59Z")
    assert search_keys(fake) == [
        ("GPM_3IMERGDF", "07", day_range, (-30.0, 30.0, -15.0, 45.0), -1),
        ("GPM_3IMERGDL", "07", day_range, (-30.0, 30.0, -15.0, 45.0), -1),
    ]
    assert granule.version == "GPM_3IMERGDL.07"
    assert granule.notes == ("run:late", "fallback:late (final not available)")
    assert [f.name for f in granule.files] == [late.name]
    assert granule.files[0].parent == tmp_path / "work"
    assert fake.logins == ["environment"]


def test_fetch_prefers_final_and_skips_other_days(subset: Path, tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    names = [
        "3B-DAY.MS.MRG.3IMERG.20191231-S000000-E235959.V07B.nc4",
        "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4",
    ]
    for n in names:
        shutil.copyfile(subset, srv / n)
    fake = FakeEarthaccess({("GPM_3IMERGDF", "07"): [srv / n for n in names]})
    granule = gridded_source("imerg", {}, client=fake).fetch(DAY, tmp_path / "work")
    assert granule.version == "GPM_3IMERGDF.07" and granule.notes == ("run:final",)
    assert [f.name for f in granule.files] == [names[1]]
    assert search_keys(fake)[0][3] == (-180.0, -90.0, 180.0, 90.0)


def test_fetch_nothing_found_names_short_names_and_date(tmp_path: Path) -> None:
    fake = FakeEarthaccess()
    src = ImergSource(Options(runs=("late", "early")), client=fake)
    with pytest.raises(DateNotServedError, match=r"2020-01-01.*GPM_3IMERGDL, GPM_3IMERGDE"):
        src.fetch(DAY, tmp_path)
    assert fake.downloads == []


def test_fetch_future_day_is_not_served_without_a_search(tmp_path: Path) -> None:
    fake = FakeEarthaccess()
    with pytest.raises(DateNotServedError, match="not 2999-01-01"):
        ImergSource(client=fake).fetch(dt.date(2999, 1, 1), tmp_path)
    assert fake.searches == []


def test_served_dates_and_expected_version() -> None:
    src = ImergSource()
    assert src.first_date() == dt.date(1998, 1, 1)
    assert src.latest_date(dt.date(2024, 5, 2)) == dt.date(2024, 5, 1)
    assert src.version(dt.date(2001, 1, 1)) == "GPM_3IMERGDF.07"
    assert src.version(dt.date(2999, 1, 1)) == "GPM_3IMERGDE.07"


def test_options_reject_unknown_keys() -> None:
    with pytest.raises(SourceError, match=r"sources\.options\.imerg\.colour"):
        gridded_source("imerg", {"colour": "blue"})


# --- local files ----------------------------------------------------------------------------


def test_local_takes_the_best_run_on_disk(subset: Path, tmp_path: Path) -> None:
    for name in [
        "3B-DAY-E.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4",
        "3B-DAY-L.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4",
        "3B-DAY.MS.MRG.3IMERG.20200102-S000000-E235959.V07B.nc4",
    ]:
        shutil.copyfile(subset, tmp_path / name)
    granule = ImergSource().local(DAY, tmp_path)
    assert granule.version == "GPM_3IMERGDL.07"
    assert [f.name for f in granule.files] == [
        "3B-DAY-L.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4"
    ]
    with pytest.raises(DateNotServedError, match="2020-01-03"):
        ImergSource().local(dt.date(2020, 1, 3), tmp_path)


def test_local_half_hourly_files(subset: Path, tmp_path: Path) -> None:
    files = _half_hour_copies(subset, tmp_path, 48)
    granule = ImergSource().local(DAY, tmp_path)
    assert granule.version == "GPM_3IMERGHH.06" and len(granule.files) == 48
    assert sorted(granule.files) == sorted(files)


# --- bad input ------------------------------------------------------------------------------


def test_truncated_file_names_the_path(subset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4"
    bad.write_bytes(subset.read_bytes()[:20000])
    with pytest.raises(CorruptFileError, match=str(bad)):
        ImergSource().read(_granule((bad,)))
    bad.write_text("<html>Earthdata Login</html>")
    with pytest.raises(CorruptFileError, match=str(bad)):
        ImergSource().read(_granule((bad,)))


def test_wrong_variable_names_file_and_variable(tmp_path: Path) -> None:
    lat, lon = np.array([0.05, 0.15]), np.array([0.05, 0.15, 0.25])
    f = _daily_file(tmp_path / "x.nc4", np.ones((2, 3)), lat, lon, name="randomError")
    with pytest.raises(MissingVariableError, match=rf"{f}.*precipitation, precipitationCal"):
        ImergSource().read(_granule((f,)))


def test_all_nan_field_names_date_and_variable(tmp_path: Path) -> None:
    lat, lon = np.array([0.05, 0.15]), np.array([0.05, 0.15, 0.25])
    f = _daily_file(tmp_path / "x.nc4", np.full((2, 3), -9999.9), lat, lon)
    with pytest.raises(SourceError, match=r"precip_imerg on 2020-01-01.*all NaN"):
        ImergSource().read(_granule((f,)))


def test_wrong_units_are_an_error(tmp_path: Path) -> None:
    lat, lon = np.array([0.05, 0.15]), np.array([0.05, 0.15, 0.25])
    f = _daily_file(tmp_path / "x.nc4", np.ones((2, 3)), lat, lon, units="kg m-2 s-1")
    with pytest.raises(SourceError, match="kg m-2 s-1"):
        ImergSource().read(_granule((f,)))


def _granule(files: tuple[Path, ...]) -> Granule:
    return Granule("imerg", DAY, files, "GPM_3IMERGDF.07")


def test_credentials_never_reach_errors(
    subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = "imerg-user-x1", "imerg-pass-y2"
    monkeypatch.setenv("EARTHDATA_USERNAME", user)
    monkeypatch.setenv("EARTHDATA_PASSWORD", password)
    late = tmp_path / "3B-DAY-L.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4"
    shutil.copyfile(subset, late)
    boom = PermissionError(f"403 https://{user}:{password}@data.gesdisc.invalid/{late.name}")
    fake = FakeEarthaccess({("GPM_3IMERGDL", "07"): [late]}, download_error=boom)
    with pytest.raises(SourceError, match="GPM_3IMERGDL 07 on 2020-01-01: download failed") as err:
        ImergSource(client=fake).fetch(DAY, tmp_path / "work")
    assert user not in str(err.value) and password not in str(err.value)


# --- GES DISC names, subsets included -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "run", "version", "derived"),
    [
        ("3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V06.nc4", "DAY", "final", "06", False),
        ("3B-DAY-E.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4", "DAY", "early", "07", False),
        (
            "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4.SUB.nc4",
            "DAY",
            "final",
            "07",
            True,
        ),
        ("3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V06.nc4.nc", "DAY", "final", "06", True),
        (
            "3B-HHR.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V06B.HDF5",
            "HHR",
            "final",
            "06",
            False,
        ),
        (
            "3B-HHR-L.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V07B.RT-H5",
            "HHR",
            "late",
            "07",
            False,
        ),
        (
            "3B-HHR.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V06B.HDF5.SUB.hdf5",
            "HHR",
            "final",
            "06",
            True,
        ),
        (
            "3B-HHR-E.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V06B.HDF5.nc4",
            "HHR",
            "early",
            "06",
            True,
        ),
        (
            "3B-HHR.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V06B.HDF5.dap.nc4",
            "HHR",
            "final",
            "06",
            True,
        ),
    ],
)
def test_ges_disc_names_are_recognised(name, kind, run, version, derived) -> None:
    f = imerg_files.parse(Path("/a") / name)
    assert f is not None
    assert (f.kind, f.run, f.version, f.derived, f.day) == (kind, run, version, derived, DAY)
    assert f.start_s == (0 if kind == "DAY" else 12 * 3600)


@pytest.mark.parametrize(
    "name",
    [
        "3B-MO.MS.MRG.3IMERG.20200101-S000000-E235959.01.V07B.HDF5",  # a monthly total
        "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4.xml",  # the granule's metadata
        "3B-DAY.MS.MRG.3IMERG.20201301-S000000-E235959.V07B.nc4",  # no 13th month
        "imerg_20200101.nc4",
    ],
)
def test_other_names_are_not_imerg_days(name: str) -> None:
    assert imerg_files.parse(Path(name)) is None


def test_real_granule_under_subset_names_in_sub_folders(subset: Path, tmp_path: Path) -> None:
    """The real V06B half-hour, named as the GES DISC subsetter and OPeNDAP name it, deep in an
    rsync of GES DISC's folders: found, read, the known pixel right."""
    stem = "3B-HHR.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V06B.HDF5"
    folder = tmp_path / "GPM_L3" / "GPM_3IMERGHH.06" / "2020" / "001"
    folder.mkdir(parents=True)
    shutil.copyfile(subset, folder / f"{stem}.SUB.hdf5")
    source = ImergSource(Options(min_coverage=1 / 48, archive=tmp_path))
    granule = source.local(DAY, tmp_path)
    assert granule.files == (folder / f"{stem}.SUB.hdf5",)
    assert granule.version == "GPM_3IMERGHH.06"
    assert source.first_date() == source.latest_date(dt.date(2030, 1, 1)) == DAY
    da = source.read(granule)["precip_imerg"]
    assert da.sel(PIXEL, method="nearest").item() == pytest.approx(PIXEL_RATE * 24, rel=1e-6)
    # The original granule and a second subset of the same half hour: one file is read.
    shutil.copyfile(subset, folder / stem)
    shutil.copyfile(subset, tmp_path / f"{stem}.dap.nc4")
    assert source.local(DAY, tmp_path).files == (folder / stem,)


def test_configured_version_wins_over_another_on_disk(subset: Path, tmp_path: Path) -> None:
    for name in [
        "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V06.nc4",
        "3B-DAY.MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4",
    ]:
        shutil.copyfile(subset, tmp_path / name)
    assert ImergSource().local(DAY, tmp_path).version == "GPM_3IMERGDF.07"
    assert ImergSource(Options(version="06")).local(DAY, tmp_path).version == "GPM_3IMERGDF.06"


def test_empty_archive_serves_nothing(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not IMERG")
    source = ImergSource(Options(archive=tmp_path))
    with pytest.raises(DateNotServedError, match=rf"archive {tmp_path} holds no complete day"):
        source.latest_date(dt.date(2030, 1, 1))
    with pytest.raises(DateNotServedError, match="does not exist"):
        ImergSource(Options(archive=tmp_path / "nowhere")).first_date()


def test_daily_time_in_days_since_an_epoch(tmp_path: Path) -> None:
    lat, lon = np.array([0.05, 0.15]), np.array([0.05, 0.15, 0.25])
    f = _daily_file(tmp_path / "x.nc4", np.full((2, 3), 3.0), lat, lon)
    with netCDF4.Dataset(f, "a") as nc:
        days = (DAY - dt.date(1970, 1, 1)).days
        nc["time"].units = nc["time_bnds"].units = "days since 1970-01-01 00:00:00Z"
        nc["time"][:] = [days]
        nc["time_bnds"][:] = [[days, days + 1]]
    np.testing.assert_allclose(ImergSource().read(_granule((f,)))["precip_imerg"].values, 3.0)
