"""MSWEP: file names, local mirror layouts, the exact rclone command, reading, bad input.

Files are written here in the MSWEP V2.8 daily layout: ``YYYYDDD.nc`` holding
``precipitation`` (mm/d) with dims (time, lat, lon), latitudes north to south, 0.1 degree.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from gsm3_ops.grid import M09
from gsm3_ops.sources import mswep
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

DAY = dt.date(2021, 2, 3)  # day of year 34
LAT = np.round(np.arange(5.95, -6.0, -0.1), 2)  # 120 rows, north to south
LON = np.round(np.arange(29.05, 43.0, 0.1), 2)  # 140 columns


def write_mswep(path: Path, day: dt.date, values=None, name="precipitation", units="mm/d"):
    """One MSWEP V2.8 daily file."""
    if values is None:
        rng = np.random.default_rng(day.toordinal())
        values = rng.gamma(0.4, 6.0, size=(len(LAT), len(LON))).astype(np.float32)
    da = xr.DataArray(
        values[np.newaxis],
        dims=("time", "lat", "lon"),
        coords={"time": [np.datetime64(day.isoformat(), "ns")], "lat": LAT, "lon": LON},
        attrs={"units": units, "long_name": "precipitation"},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    xr.Dataset({name: da}).to_netcdf(path, engine="netcdf4")
    return values


class FakeRclone:
    """Stands in for ``subprocess.run``: records commands; serves files from a fake remote."""

    def __init__(self, remote_root: Path, stderr: str = "", code: int | None = None):
        self.root = remote_root
        self.calls: list[list[str]] = []
        self.stderr = stderr
        self.code = code

    def __call__(self, cmd):
        self.calls.append(list(cmd))
        if self.code is not None:
            return subprocess.CompletedProcess(cmd, self.code, "", self.stderr)
        src = self.root / cmd[-2].split(":", 1)[1]
        if not src.is_file():
            return subprocess.CompletedProcess(cmd, 3, "", "directory not found")
        shutil.copyfile(src, cmd[-1])
        return subprocess.CompletedProcess(cmd, 0, "", "")


def test_file_name_is_year_and_day_of_year():
    assert mswep.file_name(DAY) == "2021034.nc"
    assert mswep.file_name(dt.date(2020, 12, 31)) == "2020366.nc"


def test_fetch_runs_rclone_copyto_exactly(tmp_path):
    values = write_mswep(tmp_path / "remote" / "MSWEP_V280" / "NRT" / "Daily" / "2021034.nc", DAY)
    runner = FakeRclone(tmp_path / "remote")
    options = mswep.MswepOptions(
        remote="gloh2o:MSWEP_V280", product="NRT", rclone_args=("--drive-shared-with-me",)
    )
    source = mswep.MswepSource(options, client=runner)
    work = tmp_path / "work"
    granule = source.fetch(DAY, work)
    target = work / "NRT" / "Daily" / "2021034.nc"
    assert runner.calls == [
        [
            "rclone",
            "copyto",
            "--drive-shared-with-me",
            "gloh2o:MSWEP_V280/NRT/Daily/2021034.nc",
            str(target),
        ]
    ]
    assert granule == Granule("mswep", DAY, (target,), "MSWEP-2.8-NRT")
    native = source.read(granule)
    da = native["precip_mswep"]
    assert da.dims == ("time", "lat", "lon") and da.dtype == np.float32
    assert da.attrs["units"] == "mm day-1"
    # GloH2O's rows run north to south; the reader hands them on south to north.
    np.testing.assert_array_equal(da["lat"].values, LAT[::-1])
    np.testing.assert_array_equal(da.values[0], values[::-1])
    np.testing.assert_array_equal(da["time"].values, [np.datetime64("2021-02-03")])


def test_auto_prefers_past_then_falls_back_to_nrt(tmp_path):
    remote = tmp_path / "remote" / "M"
    write_mswep(remote / "NRT" / "Daily" / "2021034.nc", DAY)
    runner = FakeRclone(tmp_path / "remote")
    source = mswep.MswepSource(mswep.MswepOptions(remote="r:M"), client=runner)
    granule = source.fetch(DAY, tmp_path / "w")  # an old day: Past first, not there
    assert [c[2] for c in runner.calls] == [
        "r:M/Past/Daily/2021034.nc",
        "r:M/NRT/Daily/2021034.nc",
    ]
    assert granule.version == "MSWEP-2.8-NRT"
    write_mswep(remote / "Past" / "Daily" / "2021034.nc", DAY)
    assert source.fetch(DAY, tmp_path / "w2").version == "MSWEP-2.8-Past"
    with pytest.raises(DateNotServedError, match="no file for 2021-02-04"):
        source.fetch(DAY + dt.timedelta(days=1), tmp_path / "w3")


def test_rclone_failure_is_reported_without_credentials(tmp_path, monkeypatch, caplog):
    secret = "ya29.super-secret-drive-token"
    monkeypatch.setenv("RCLONE_DRIVE_TOKEN", secret)
    runner = FakeRclone(tmp_path, stderr=f"Failed to copy: token {secret} expired", code=1)
    source = mswep.MswepSource(mswep.MswepOptions(remote="r:M", product="NRT"), client=runner)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError, match=r"rclone copyto failed \(exit 1\)") as info:
        source.fetch(DAY, tmp_path / "w")
    assert secret not in str(info.value) and secret not in caplog.text
    assert not (tmp_path / "w" / "NRT" / "Daily" / "2021034.nc").exists()


def test_rclone_not_installed(tmp_path):
    def missing(cmd):
        raise FileNotFoundError(cmd[0])

    options = mswep.MswepOptions(remote="r:M", product="NRT", rclone="/opt/none/rclone")
    with pytest.raises(SourceError, match="rclone program '/opt/none/rclone' was not found"):
        mswep.MswepSource(options, client=missing).fetch(DAY, tmp_path)


def test_local_layout_decides_nrt_or_past(tmp_path):
    source = mswep.MswepSource()
    write_mswep(tmp_path / "NRT" / "Daily" / "2021034.nc", DAY)
    assert source.local(DAY, tmp_path).version == "MSWEP-2.8-NRT"
    write_mswep(tmp_path / "Past" / "Daily" / "2021034.nc", DAY)
    granule = source.local(DAY, tmp_path)
    assert granule.version == "MSWEP-2.8-Past"
    assert granule.files == (tmp_path / "Past" / "Daily" / "2021034.nc",)
    nrt_only = mswep.MswepSource(mswep.MswepOptions(product="NRT"))
    assert nrt_only.local(DAY, tmp_path).version == "MSWEP-2.8-NRT"
    flat = tmp_path / "flat"
    write_mswep(flat / "2021034.nc", DAY)
    unknown = source.local(DAY, flat)
    assert unknown.version == "MSWEP-2.8" and "NRT or Past unknown" in unknown.notes[0]
    assert nrt_only.local(DAY, flat).version == "MSWEP-2.8-NRT"
    with pytest.raises(DateNotServedError, match=r"no 2021035.nc for 2021-02-04"):
        source.local(DAY + dt.timedelta(days=1), flat)


def test_fetch_from_a_configured_directory(tmp_path):
    write_mswep(tmp_path / "mirror" / "Past" / "Daily" / "2021034.nc", DAY)
    source = mswep.MswepSource(mswep.MswepOptions(directory=tmp_path / "mirror"))
    assert source.fetch(DAY, tmp_path / "w").version == "MSWEP-2.8-Past"
    with pytest.raises(SourceError, match=r"set sources\.options\.mswep\.remote"):
        mswep.MswepSource().fetch(DAY, tmp_path / "w")


def test_dates_served_and_versions():
    today = dt.date(2025, 7, 20)
    assert mswep.MswepSource().latest_date(today) == dt.date(2025, 7, 19)
    past = mswep.MswepSource(mswep.MswepOptions(product="Past"))
    assert past.latest_date(today) == today - dt.timedelta(days=120)
    assert mswep.MswepSource().first_date() == dt.date(1979, 1, 1)
    utc_today = dt.datetime.now(dt.UTC).date()
    assert mswep.MswepSource().version(utc_today - dt.timedelta(days=2)) == "MSWEP-2.8-NRT"
    assert mswep.MswepSource().version(dt.date(2000, 1, 1)) == "MSWEP-2.8-Past"
    runner = FakeRclone(Path("/nonexistent"))
    source = mswep.MswepSource(mswep.MswepOptions(remote="r:M"), client=runner)
    with pytest.raises(DateNotServedError, match="'mswep' serves 1979-01-01"):
        source.fetch(utc_today, Path("/nonexistent"))
    assert runner.calls == []


def test_to_grid_area_mean_and_checks(tmp_path):
    path = tmp_path / "2021034.nc"
    values = write_mswep(path, DAY)
    source = mswep.MswepSource()
    native = source.read(Granule("mswep", DAY, (path,), "MSWEP-2.8-Past"))
    window = M09.window_from_bbox(30.0, -5.0, 42.0, 5.0)
    out = source.to_grid(native, M09, window)
    da = out["precip_mswep"]
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32
    assert da.shape == (1, *window.shape)
    check_gridded(out, "mswep")
    # Area means stay within the source range, and the domain mean is nearly preserved.
    assert float(da.min()) >= 0.0 and float(da.max()) <= float(values.max())
    inner = values[(LAT <= 5.0) & (LAT >= -5.0)][:, (LON >= 30.0) & (LON <= 42.0)]
    assert float(da.mean()) == pytest.approx(float(inner.mean()), rel=0.02)


def test_options_and_catalogue(tmp_path):
    source = gridded_source("mswep", {"directory": str(tmp_path), "product": "Past"})
    assert isinstance(source, mswep.MswepSource) and isinstance(source, GriddedSource)
    assert source.options.directory == tmp_path
    with pytest.raises(ValidationError):
        mswep.MswepOptions(product="Final")
    with pytest.raises(ValidationError):
        mswep.MswepOptions(remotes="x")


# --- bad input ------------------------------------------------------------------------------


def test_truncated_or_corrupt_file_names_the_path(tmp_path):
    good = tmp_path / "good.nc"
    write_mswep(good, DAY)
    cut = tmp_path / "2021034.nc"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(CorruptFileError, match=r"2021034.nc: unreadable netCDF"):
        mswep.MswepSource().read(Granule("mswep", DAY, (cut,), "MSWEP-2.8-NRT"))
    html = tmp_path / "html.nc"
    html.write_text("<html>quota exceeded</html>")
    with pytest.raises(CorruptFileError, match=r"html.nc"):
        mswep.MswepSource().read(Granule("mswep", DAY, (html,), "MSWEP-2.8-NRT"))


def test_wrong_variable_wrong_units_wrong_day(tmp_path):
    source = mswep.MswepSource()
    path = tmp_path / "a.nc"
    write_mswep(path, DAY, name="precip")
    with pytest.raises(MissingVariableError, match=r"a.nc: no variable 'precipitation'.*precip"):
        source.read(Granule("mswep", DAY, (path,), "MSWEP-2.8-NRT"))
    write_mswep(path, DAY, units="mm/3h")
    with pytest.raises(SourceError, match=r"a.nc: precipitation in 'mm/3h', expected mm/day"):
        source.read(Granule("mswep", DAY, (path,), "MSWEP-2.8-NRT"))
    write_mswep(path, DAY - dt.timedelta(days=1))
    with pytest.raises(SourceError, match=r"a.nc: precipitation has 0 time steps on 2021-02-03"):
        source.read(Granule("mswep", DAY, (path,), "MSWEP-2.8-NRT"))


def test_all_nan_field_names_date_and_variable(tmp_path):
    path = tmp_path / "2021034.nc"
    write_mswep(path, DAY, values=np.full((len(LAT), len(LON)), np.nan, np.float32))
    with pytest.raises(SourceError, match=r"precipitation on 2021-02-03 has no valid value"):
        mswep.MswepSource().read(Granule("mswep", DAY, (path,), "MSWEP-2.8-NRT"))


def test_nrt_version_raises_the_provisional_flag():
    from gsm3_ops.config import QualityFlagConfig
    from gsm3_ops.publish.flags import is_provisional

    markers = QualityFlagConfig().provisional_versions
    assert is_provisional("MSWEP-2.8-NRT", markers)
    assert not is_provisional("MSWEP-2.8-Past", markers)


# --- GloH2O's names and folders in an archive -----------------------------------------------


def test_daily_and_three_hourly_names_only():
    from gsm3_ops.sources.mswep_files import day_of

    assert day_of("2021034.nc") == (DAY, None)
    assert day_of("2021034.21.nc") == (DAY, 21)
    assert day_of("2020366.nc") == (dt.date(2020, 12, 31), None)
    for name in ("202102.nc", "2021366.nc", "2021034.04.nc", "2021034.nc4", "x2021034.nc"):
        assert day_of(name) is None, name  # monthly, no 366th day, not a 3-hourly start


def test_archive_any_depth_products_from_folders(tmp_path):
    deep = tmp_path / "mirror" / "MSWEP_V280"
    write_mswep(deep / "Past_nogauge" / "Daily" / "2021034.nc", DAY)
    write_mswep(deep / "NRT" / "Daily" / "2021035.nc", DAY + dt.timedelta(days=1))
    write_mswep(deep / "Past" / "Monthly" / "202102.nc", DAY)  # a month total: never a day
    auto = mswep.MswepSource(mswep.MswepOptions(archive=tmp_path))
    assert auto.first_date() == auto.latest_date(dt.date(2030, 1, 1)) == DAY + dt.timedelta(days=1)
    assert auto.local(DAY + dt.timedelta(days=1), tmp_path).version == "MSWEP-2.8-NRT"
    with pytest.raises(DateNotServedError, match=r"2021034\.nc for 2021-02-03 in the archive"):
        auto.local(DAY, tmp_path)  # Past_nogauge only when configured
    nogauge = mswep.MswepSource(mswep.MswepOptions(archive=tmp_path, product="Past_nogauge"))
    assert nogauge.local(DAY, tmp_path).version == "MSWEP-2.8-Past_nogauge"
    assert nogauge.first_date() == nogauge.latest_date(dt.date(2030, 1, 1)) == DAY


def test_three_hourly_day_is_the_sum_and_needs_all_eight(tmp_path):
    folder = tmp_path / "NRT" / "3hourly"
    parts = []
    for hour in range(0, 24, 3):
        path = folder / f"2021034.{hour:02d}.nc"
        stamp = dt.datetime(2021, 2, 3, hour)
        parts.append(write_mswep(path, DAY, units="mm/3h"))
        with netCDF4.Dataset(path, "a") as nc:  # the interval's start, not midnight
            nc["time"][:] = netCDF4.date2num(stamp, nc["time"].units, nc["time"].calendar)
    source = mswep.MswepSource(mswep.MswepOptions(product="NRT"))
    granule = source.local(DAY, tmp_path)
    assert granule.version == "MSWEP-2.8-NRT" and len(granule.files) == 8
    native = source.read(granule)["precip_mswep"]
    np.testing.assert_allclose(native.values[0], sum(parts)[::-1], rtol=1e-6)
    (folder / "2021034.09.nc").unlink()
    with pytest.raises(DateNotServedError, match="eight 3-hourly"):
        source.local(DAY, tmp_path)
    wrong = Granule("mswep", DAY, tuple(sorted(folder.glob("*.nc"))), "MSWEP-2.8-NRT")
    with pytest.raises(SourceError, match=r"the eight 3-hourly files of the day, got 2021034\.00"):
        source.read(wrong)


def test_three_hourly_units_are_checked(tmp_path):
    folder = tmp_path / "3hourly"
    for hour in range(0, 24, 3):
        write_mswep(folder / f"2021034.{hour:02d}.nc", DAY, units="mm/d")
    source = mswep.MswepSource()
    with pytest.raises(
        SourceError, match=r"2021034.00.nc: precipitation in 'mm/d', expected mm/3h"
    ):
        source.read(source.local(DAY, tmp_path))
