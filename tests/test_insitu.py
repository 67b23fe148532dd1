"""Shared in-situ helpers: daily means, the depth rule, the cube-ready array, raw file walks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gsm3_ops.sources.insitu import (
    daily_mean,
    default_regions,
    depth_allowed,
    depth_rank,
    excluded_sensor,
    range_problem,
    raw_files,
    to_dataarray,
)


def test_daily_mean_counts_hours_not_records() -> None:
    # Day 1: 12 hours, the first of them with four 15-minute records; day 2: 11 hours.
    quarter = pd.date_range("2020-01-01 00:00", periods=4, freq="15min")
    hours = pd.date_range("2020-01-01 01:00", periods=11, freq="h")
    day2 = pd.date_range("2020-01-02 00:00", periods=11, freq="h")
    index = quarter.append(hours).append(day2)
    values = np.r_[[0.1, 0.2, 0.3, 0.4], np.full(11, 0.5), np.full(11, 0.3)]
    daily = daily_mean(pd.Series(values, index=index), min_hours=12)
    assert daily.index.tolist() == [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02")]
    assert daily.iloc[0] == pytest.approx((0.25 + 11 * 0.5) / 12)  # hour means, then the day
    assert np.isnan(daily.iloc[1])
    assert daily_mean(pd.Series(values, index=index), min_hours=11).iloc[1] == pytest.approx(0.3)
    with_nan = pd.Series([np.nan] * 3, index=pd.date_range("2020-01-01", periods=3, freq="h"))
    assert daily_mean(with_nan, 1).empty
    with pytest.raises(ValueError, match="min_hours"):
        daily_mean(with_nan, 25)


def test_depth_rule() -> None:
    ranked = sorted(
        [(0.0, 0.1), (0.05, 0.05), (0.0508, 0.0508), (0.1, 0.1), (0.0, 0.05), (0.02, 0.02)],
        key=lambda d: depth_rank(*d, preferred=0.05),
    )
    assert ranked[:2] == [(0.05, 0.05), (0.0508, 0.0508)]  # at 5 cm first
    assert ranked[2] == (0.0, 0.1)  # then the layer centred on 5 cm
    assert depth_allowed(0.0, 0.1, shallowest=0.0, deepest=0.1)
    assert not depth_allowed(0.0, 0.19, shallowest=0.0, deepest=0.1)
    assert not depth_allowed(0.1, 0.05, shallowest=0.0, deepest=0.2)
    assert not depth_allowed(np.nan, 0.05, shallowest=0.0, deepest=0.2)
    assert excluded_sensor("Cosmic-ray-Probe", ("cosmic",)) == "cosmic"
    assert excluded_sensor("ThetaProbe-ML2X", ("cosmic",)) is None


def _sites(ids: list[str], lat: list[float], lon: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"lat": lat, "lon": lon, "network": "N"}, index=pd.Index(ids, name="site"))


def test_to_dataarray_builds_a_daily_axis_and_the_regions() -> None:
    a = pd.Series([0.2, 0.3], index=pd.to_datetime(["2020-01-01", "2020-01-04"]))
    b = pd.Series([0.1], index=pd.to_datetime(["2020-01-02"]))
    sites = _sites(["A", "B"], [40.0, 0.0], [-100.0, 0.0])
    da = to_dataarray({"A": a, "B": b}, sites, source="test")
    assert da.dims == ("site", "time") and da.sizes["time"] == 4
    np.testing.assert_array_equal(da.sel(site="A").values, [0.2, np.nan, np.nan, 0.3])
    assert list(da["region"].values) == ["CONUS", "Other"]
    assert set(default_regions()) >= {"CONUS", "Europe", "Africa_North"}


def test_to_dataarray_refuses_bad_input() -> None:
    a = pd.Series([0.2], index=pd.to_datetime(["2020-01-01"]))
    with pytest.raises(ValueError, match="no site with data"):
        to_dataarray({}, _sites([], [], []), source="test")
    with pytest.raises(ValueError, match=r"no metadata for sites \['A'\]"):
        to_dataarray({"A": a}, _sites(["B"], [0.0], [0.0]), source="test")
    percent = pd.Series([23.0], index=a.index)
    with pytest.raises(ValueError, match=r"outside the valid range .* sites \['A'\]"):
        to_dataarray({"A": percent}, _sites(["A"], [0.0], [0.0]), source="test")
    assert "outside the valid range" in range_problem(percent)
    assert range_problem(a) is None


def test_raw_files_walks_folders_and_zip_archives(tmp_path: Path) -> None:
    (tmp_path / "d" / "NET" / "st").mkdir(parents=True)
    (tmp_path / "d" / "NET" / "st" / "x.stm").write_bytes(b"abc")
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("NET/st/x.stm", b"abc")
        archive.writestr("NET/st/", b"")
    folder = raw_files(tmp_path / "d")
    zipped = raw_files(tmp_path / "a.zip")
    assert [f.path.relative_to(tmp_path / "d") for f in folder] == [Path("NET/st/x.stm")]
    assert [f.path for f in zipped] == [tmp_path / "a.zip" / "NET/st/x.stm"]
    assert zipped[0].load() == folder[0].load() == b"abc"
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a directory nor a zip"):
        raw_files(tmp_path / "plain.txt")
