"""The world's IMERG and MSWEP days written in the providers' formats, read back by the sources.

World fields -> writer (GES DISC / GloH2O names, folders and layout) -> source with
``archive=`` -> ``local`` / ``read`` / ``to_grid`` -> the 9 km window again.

Tolerance, from the regridding: a 0.1 degree pixel holds the mean of the world cells whose
centres it contains (the nearest cell where it contains none), and ``to_grid`` gives a cell
the area-weighted mean of the pixels it overlaps. Both are convex combinations, and at 4 S a
pixel spans 1.07 cells east-west and 1.42 north-south, so every cell that reaches a cell's
round trip lies in the 3 x 3 block around it: the round trip lies within that block's
[min, max] (plus float32 rounding), and a uniform field comes back exactly.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gsm3_ops.grid import M09
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.imerg import ImergSource
from gsm3_ops.sources.imerg import Options as ImergOptions
from gsm3_ops.sources.mswep import MswepOptions, MswepSource
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.world.imerg import write_imerg
from gsm3_ops.world.mswep import write_mswep

WINDOW = M09.window_from_bbox(39.0, -4.6, 40.0, -3.6)  # Mombasa: land, sea and the coast
DAYS = [dt.date(2020, 3, 1) + dt.timedelta(days=k) for k in range(3)]
RTOL = 1e-5  # float32 files


@pytest.fixture(scope="module")
def world() -> xr.Dataset:
    """The world's forcings over the window for three days (the first call in a process
    also builds the land mask, several seconds)."""
    return SyntheticSource(42).forcing(M09, WINDOW, DAYS[0], DAYS[-1])


def _round_trip(source, folder: Path, day: dt.date, name: str) -> np.ndarray:
    granule = source.local(day, folder)
    return source.to_grid(source.read(granule), M09, WINDOW)[name].values[0]


def _assert_within_neighbours(back: np.ndarray, truth: np.ndarray) -> None:
    """``back`` within the [min, max] of ``truth`` over each cell's 3 x 3 block, wherever the
    world has a value (sea cells are NaN in the world)."""
    padded = np.pad(truth.astype(np.float64), 1, constant_values=np.nan)
    rows, cols = truth.shape
    block = np.stack([padded[i : i + rows, j : j + cols] for i in range(3) for j in range(3)])
    lo, hi = np.fmin.reduce(block, axis=0), np.fmax.reduce(block, axis=0)  # NaN-skipping
    land = np.isfinite(truth)
    assert np.isfinite(back[land]).all()
    slack = RTOL * np.maximum(np.abs(hi), 1.0)
    assert (back[land] >= lo[land] - slack[land]).all()
    assert (back[land] <= hi[land] + slack[land]).all()


def _uniform(world: xr.Dataset, name: str, value: float) -> xr.Dataset:
    return world[[name]].copy(data={name: np.full(world[name].shape, value, np.float32)})


# --- IMERG ----------------------------------------------------------------------------------


def test_imerg_daily_subsets_round_trip(world: xr.Dataset, tmp_path: Path) -> None:
    files = write_imerg(world, M09, WINDOW, tmp_path)
    assert [f.name for f in files[:1]] == [
        "3B-DAY.MS.MRG.3IMERG.20200301-S000000-E235959.V07B.nc4.SUB.nc4"
    ]
    assert files[0].parent == tmp_path / "GPM_3IMERGDF.07" / "2020" / "03"
    source = ImergSource(ImergOptions(archive=tmp_path))
    for k, day in enumerate(DAYS):
        granule = source.local(day, tmp_path)
        assert granule.files == (files[k],) and granule.version == "GPM_3IMERGDF.07"
        back = _round_trip(source, tmp_path, day, "precip_imerg")
        _assert_within_neighbours(back, world["precip_imerg"].values[k])


def test_imerg_uniform_field_comes_back_exactly(world: xr.Dataset, tmp_path: Path) -> None:
    write_imerg(_uniform(world, "precip_imerg", 7.25), M09, WINDOW, tmp_path)
    back = _round_trip(ImergSource(), tmp_path, DAYS[1], "precip_imerg")
    np.testing.assert_allclose(back, 7.25, rtol=RTOL)


def test_imerg_half_hourly_granules_give_the_daily_field(world: xr.Dataset, tmp_path: Path) -> None:
    one = world.isel(time=[0])
    daily = write_imerg(one, M09, WINDOW, tmp_path / "day", subset_names=False)
    halves = write_imerg(one, M09, WINDOW, tmp_path / "hh", cadence="half-hour")
    assert daily[0].name == "3B-DAY.MS.MRG.3IMERG.20200301-S000000-E235959.V07B.nc4"
    assert len(halves) == 48 and halves[1].name == (
        "3B-HHR.MS.MRG.3IMERG.20200301-S003000-E005959.0030.V07B.HDF5.SUB.hdf5"
    )
    source = ImergSource()
    granule = source.local(DAYS[0], tmp_path / "hh")
    assert granule.version == "GPM_3IMERGHH.07" and sorted(granule.files) == sorted(halves)
    from_halves = _round_trip(source, tmp_path / "hh", DAYS[0], "precip_imerg")
    from_daily = _round_trip(source, tmp_path / "day", DAYS[0], "precip_imerg")
    np.testing.assert_allclose(from_halves, from_daily, rtol=RTOL, atol=1e-6)


def test_imerg_archive_span_late_run_and_a_missing_day(world: xr.Dataset, tmp_path: Path) -> None:
    files = write_imerg(world, M09, WINDOW, tmp_path, late_after=DAYS[0])
    assert files[1].name.startswith("3B-DAY-L.") and "GPM_3IMERGDL.07" in str(files[1])
    source = ImergSource(ImergOptions(archive=tmp_path))
    assert (source.first_date(), source.latest_date(dt.date(2030, 1, 1))) == (DAYS[0], DAYS[-1])
    granule = source.local(DAYS[2], tmp_path)
    assert granule.version == "GPM_3IMERGDL.07" == source.version(DAYS[2])
    assert granule.notes == ("run:late", "fallback:late (final not available)")
    files[1].unlink()
    with pytest.raises(DateNotServedError) as err:
        source.local(DAYS[1], tmp_path)
    message = str(err.value)
    assert "\n" not in message and "2020-03-02" in message and str(tmp_path) in message


def test_imerg_incomplete_half_hours_are_not_a_day(world: xr.Dataset, tmp_path: Path) -> None:
    halves = write_imerg(world.isel(time=[0, 1]), M09, WINDOW, tmp_path, cadence="half-hour")
    halves[60].unlink()  # a half hour of the second day
    source = ImergSource(ImergOptions(archive=tmp_path))
    assert source.latest_date(dt.date(2030, 1, 1)) == DAYS[0]
    with pytest.raises(DateNotServedError, match=r"2020-03-02.*final half-hourly V07: 47 of 48"):
        source.local(DAYS[1], tmp_path)
    # A late daily file fills the day the final half hours leave incomplete.
    write_imerg(world.isel(time=[1]), M09, WINDOW, tmp_path, late_after=DAYS[0])
    granule = source.local(DAYS[1], tmp_path)
    assert granule.version == "GPM_3IMERGDL.07" and len(granule.files) == 1
    assert source.latest_date(dt.date(2030, 1, 1)) == DAYS[1]


# --- MSWEP ----------------------------------------------------------------------------------


def test_mswep_daily_round_trip(world: xr.Dataset, tmp_path: Path) -> None:
    files = write_mswep(world, M09, WINDOW, tmp_path)
    assert files[0] == tmp_path / "Past" / "Daily" / "2020061.nc"
    source = MswepSource(MswepOptions(archive=tmp_path))
    for k, day in enumerate(DAYS):
        assert source.local(day, tmp_path).version == "MSWEP-2.8-Past"
        back = _round_trip(source, tmp_path, day, "precip_mswep")
        _assert_within_neighbours(back, world["precip_mswep"].values[k])


def test_mswep_uniform_field_and_three_hourly_files(world: xr.Dataset, tmp_path: Path) -> None:
    uniform = _uniform(world, "precip_mswep", 12.5).isel(time=[0])
    files = write_mswep(uniform, M09, WINDOW, tmp_path, cadence="3hourly")
    assert [f.name for f in files] == [f"2020061.{h:02d}.nc" for h in range(0, 24, 3)]
    assert files[0].parent == tmp_path / "Past" / "3hourly"
    source = MswepSource()
    assert len(source.local(DAYS[0], tmp_path).files) == 8
    np.testing.assert_allclose(_round_trip(source, tmp_path, DAYS[0], "precip_mswep"), 12.5)


def test_mswep_global_file_reads_like_the_extract(world: xr.Dataset, tmp_path: Path) -> None:
    one = world.isel(time=[0])
    write_mswep(one, M09, WINDOW, tmp_path / "extract")
    write_mswep(one, M09, WINDOW, tmp_path / "global", global_files=True)
    source = MswepSource()
    native = source.read(source.local(DAYS[0], tmp_path / "global"))
    assert native["precip_mswep"].shape == (1, 1800, 3600)
    # The same pixels over the window; only the order of the float32 sums differs.
    np.testing.assert_allclose(
        _round_trip(source, tmp_path / "global", DAYS[0], "precip_mswep"),
        _round_trip(source, tmp_path / "extract", DAYS[0], "precip_mswep"),
        rtol=RTOL,
        atol=1e-4,
    )


def test_mswep_archive_span_nrt_and_a_missing_day(world: xr.Dataset, tmp_path: Path) -> None:
    files = write_mswep(world, M09, WINDOW, tmp_path, nrt_after=DAYS[1])
    assert files[2] == tmp_path / "NRT" / "Daily" / "2020063.nc"
    source = MswepSource(MswepOptions(archive=tmp_path))
    assert (source.first_date(), source.latest_date(dt.date(2030, 1, 1))) == (DAYS[0], DAYS[-1])
    assert source.version(DAYS[2]) == "MSWEP-2.8-NRT"
    assert source.version(DAYS[0]) == "MSWEP-2.8-Past"
    files[1].unlink()
    with pytest.raises(DateNotServedError) as err:
        source.local(DAYS[1], tmp_path)
    message = str(err.value)
    assert "\n" not in message and "2020062.nc for 2020-03-02" in message
    assert str(tmp_path) in message
