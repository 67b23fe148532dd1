"""The world's SMAP as SPL3SMP_E subset granules, read back through the real SMAP source."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gsm3_ops.cube import Cube
from gsm3_ops.grid import M09
from gsm3_ops.ops.ingest_day import IngestOptions, ingest_source
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.smap import Options, SmapSource
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.world.smap import (
    BAD,
    GOOD,
    NONE,
    OBSERVED,
    granule_path,
    split_passes,
    write_granules,
    write_smap,
)

START, END = dt.date(2001, 3, 1), dt.date(2001, 3, 3)
WINDOW = M09.window_from_bbox(39.0, -4.6, 40.0, -3.6)
AM, PM = "Soil_Moisture_Retrieval_Data_AM", "Soil_Moisture_Retrieval_Data_PM"


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]


@pytest.fixture(scope="module")
def world_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.DataArray]:
    """The world's SMAP over WINDOW for START..END, written as granules, and the input."""
    folder = tmp_path_factory.mktemp("smap_archive")
    world = SyntheticSource()
    paths = write_smap(world, M09, WINDOW, START, END, folder)
    assert [p.name for p in paths] == [granule_path(folder, d).name for d in _days(START, END)]
    return folder, world.smap(M09, WINDOW, START, END)


def _read(src: SmapSource, day: dt.date, folder: Path | None = None) -> np.ndarray:
    granule = src.local(day, folder or src.options.archive)
    return src.to_grid(src.read(granule), M09, WINDOW)["smap"].values[0]


def test_world_round_trip(world_archive: tuple[Path, xr.DataArray]) -> None:
    folder, truth = world_archive
    src = SmapSource(Options(archive=folder))
    observed = 0
    for k, day in enumerate(_days(START, END)):
        got = _read(src, day)
        want = truth.values[k].astype(np.float32)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)  # NaN where the world saw nothing
        observed += int(np.isfinite(want).sum())
    assert observed > 50  # the window is seen on some of the days


def test_granules_are_subsets_with_the_real_layout(
    world_archive: tuple[Path, xr.DataArray],
) -> None:
    folder, _ = world_archive
    path = granule_path(folder, START)
    assert path.relative_to(folder).parts[:2] == ("SPL3SMP_E.006", "2001.03.01")
    assert path.name == "SMAP_L3_SM_P_E_20010301_R19240_001_subsetted.nc4"
    with h5py.File(path) as f:
        for group, suffix in ((AM, ""), (PM, "_pm")):
            sm = f[f"{group}/soil_moisture{suffix}"]
            assert sm.shape == (WINDOW.n_rows + 2, WINDOW.n_cols + 2)  # a one-cell margin
            assert sm.attrs["_FillValue"] == -9999.0 and sm.attrs["units"] == "cm**3/cm**3"
            assert f[f"{group}/retrieval_qual_flag{suffix}"].attrs["_FillValue"] == 65534
            rows = f[f"{group}/EASE_row_index{suffix}"][()]
            lat = f[f"{group}/latitude{suffix}"][()]
            has = sm[()] != -9999.0
            assert (rows[has] >= WINDOW.row0 - 1).all() and (rows[~has] == 65534).all()
            assert (lat[~has] == -9999.0).all()


def test_flagged_retrievals_are_dropped(world_archive: tuple[Path, xr.DataArray]) -> None:
    """The files hold retrievals flagged not recommended; taking them changes the day."""
    folder, truth = world_archive
    flags = []
    for day in _days(START, END):
        with h5py.File(granule_path(folder, day)) as f:
            flags += [f[f"{AM}/retrieval_qual_flag"][()], f[f"{PM}/retrieval_qual_flag_pm"][()]]
    retrieved = np.concatenate([a.ravel() for a in flags])
    retrieved = retrieved[retrieved != 65534]
    assert (retrieved & 1 == 1).any()  # not recommended
    assert ((retrieved & 8 == 8) & (retrieved & 1 == 0)).any()  # bit 3 only: recommended
    lax = SmapSource(Options(archive=folder, recommended_only=False))
    for k, day in enumerate(_days(START, END)):
        differs = ~np.isclose(_read(lax, day), truth.values[k], equal_nan=True)
        if differs.any():
            return
    pytest.fail("no flagged retrieval reached the window: the reader's filter is untested")


def test_split_passes_gives_the_value_back() -> None:
    """Every case of the split occurs, and the mean of the recommended passes is the value."""
    rng = np.random.default_rng(1)
    values = rng.uniform(0.0, 0.6, (40, 50)).astype(np.float32)
    values[rng.uniform(size=values.shape) < 0.3] = np.nan
    rows, cols = np.indices(values.shape)
    passes = split_passes(values, rows + 700, cols + 2000, START, 42)
    good = [np.isfinite(v) & (f & 1 == 0) & (f != 65534) for v, f in passes]
    bad = [np.isfinite(v) & (f & 1 == 1) for v, f in passes]
    state = [GOOD * g + BAD * b for g, b in zip(good, bad, strict=True)]  # NONE elsewhere
    seen = np.isfinite(values)
    pairs = set(zip(state[0][seen].tolist(), state[1][seen].tolist(), strict=True))
    assert pairs == {(a, p) for _, a, p in OBSERVED}
    (am, _), (pm, _) = passes
    mean = np.where(good[0] & good[1], (am + pm) / 2, np.where(good[0], am, pm))
    mean[~(good[0] | good[1])] = np.nan
    np.testing.assert_array_equal(mean, values)
    assert (state[0] + state[1])[~seen].max() == BAD and (state[0] == NONE)[~seen].any()
    for v, b in zip((am, pm), bad, strict=True):
        assert (v[b & seen] != values[b & seen]).all()  # a flagged pass is another value


def test_archive_span_and_missing_day(tmp_path: Path) -> None:
    days = pd.date_range("2020-06-01", periods=3)
    values = np.full((3, *WINDOW.shape), 0.2, dtype=np.float32)
    smap = xr.DataArray(values, dims=("time", "y", "x"), coords={"time": days})
    write_granules(smap, M09, WINDOW, tmp_path)
    granule_path(tmp_path, dt.date(2020, 6, 2)).unlink()
    src = SmapSource(Options(archive=tmp_path))
    assert src.first_date() == dt.date(2020, 6, 1)
    assert src.latest_date(dt.date(2030, 1, 1)) == dt.date(2020, 6, 3)
    np.testing.assert_array_equal(_read(src, dt.date(2020, 6, 3)), values[2])
    with pytest.raises(DateNotServedError) as err:
        src.local(dt.date(2020, 6, 2), tmp_path)
    message = str(err.value)
    assert "\n" not in message and "2020-06-02" in message and str(tmp_path) in message
    empty = tmp_path / "SPL3SMP_E.006" / "2020.06.02"  # a folder without granules
    with pytest.raises(DateNotServedError, match=r"no SMAP_L3_SM_P_E_YYYYMMDD_\* granule"):
        SmapSource(Options(archive=empty)).first_date()


def test_ingest_from_the_archive(world_archive: tuple[Path, xr.DataArray], tmp_path: Path) -> None:
    folder, truth = world_archive
    cube = Cube.create(tmp_path / "cube.zarr", M09, WINDOW, START, END, tile_size=16)
    src = SmapSource(Options(archive=folder))
    for k, day in enumerate(_days(START, END)):
        outcome = ingest_source(cube, src, day, M09, WINDOW, IngestOptions(tmp_path / "raw"))
        assert outcome.status == "complete", outcome.error
        assert outcome.version == "SPL3SMP_E.006" and "crid:R19240_001" in outcome.notes
        if not np.isfinite(truth.values[k]).any():
            assert "empty:smap" in outcome.notes  # no overpass: an empty day, not a failure
    stored = cube.read("smap", ["smap"], START, END)["smap"].values
    np.testing.assert_array_equal(stored, truth.values.astype(np.float32))
    assert not any((folder / "SPL3SMP_E.006").rglob("*.part"))
