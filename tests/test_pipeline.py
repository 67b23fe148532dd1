"""`gsm3-ops run` end to end on the tests' site (tests/world_site.py): the real readers over the
synthetic world's archive, a tiny model trained on first use, the day published."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pytest
import rasterio
import xarray as xr

from gsm3_ops.config import load_settings
from gsm3_ops.grid import M09
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.pipeline import run_day
from gsm3_ops.publish.cog import validate_cog

DAY = dt.date(2020, 3, 1)


@pytest.fixture(scope="module")
def first_run(world_site, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    dep = Deployment(load_settings(world_site.config(tmp)))
    t0 = time.perf_counter()
    result = run_day(dep, DAY, progress=False)
    return dep, result, time.perf_counter() - t0


def test_outputs_are_valid_and_agree(first_run) -> None:
    dep, result, _ = first_run
    valid, errors, _ = validate_cog(result.cog)
    assert valid, errors
    ds = xr.open_zarr(result.product, consolidated=False)
    sm = ds.soil_moisture.sel(time=str(DAY)).values
    land = M09.land_mask(dep.domain)
    assert land.any() and (~land).any()
    assert np.isfinite(sm[land]).all() and np.isnan(sm[~land]).all()
    assert sm[land].min() >= 0 and sm[land].max() <= 0.6
    assert np.nanstd(sm) > 0  # spatial structure, not a constant
    with rasterio.open(result.cog) as src:
        assert src.crs.to_epsg() == 6933
        assert src.transform.almost_equals(M09.transform(dep.domain))
        np.testing.assert_array_equal(src.read(1), sm)
    manifest = json.loads(result.manifest.read_text())
    assert manifest["status"] == "complete" and manifest["date"] == DAY.isoformat()
    assert (dep.settings.publish_root / manifest["config"]).is_file()


def test_rerun_is_identical_and_uses_the_cached_model(first_run) -> None:
    dep, result, first_seconds = first_run
    before = xr.open_zarr(result.product, consolidated=False).load()
    cog_bytes = result.cog.read_bytes()
    again = run_day(dep, DAY, progress=False)
    after = xr.open_zarr(again.product, consolidated=False).load()
    assert list(after.indexes["time"].date).count(DAY) == 1
    xr.testing.assert_identical(before, after)
    with rasterio.open(again.cog) as a:
        data = a.read(1)
    assert np.array_equal(data, before.soil_moisture.sel(time=str(DAY)).values, equal_nan=True)
    assert again.skipped and again.cog.read_bytes() == cog_bytes
    assert again.seconds < first_seconds

    # Forced, the day is recomputed from the stored state with the cached model: same bytes,
    # same bundle, and the cached bundle's files untouched (not retrained).
    models = sorted(dep.settings.model_dir.rglob("*"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    forced = run_day(dep, DAY, progress=False, force=True)
    assert not forced.skipped and forced.cog.read_bytes() == cog_bytes
    assert {p: p.stat().st_mtime_ns for p in sorted(dep.settings.model_dir.rglob("*"))} == stamps
    first_id = json.loads(result.manifest.read_text())["bundle_id"]
    assert json.loads(forced.manifest.read_text())["bundle_id"] == first_id


def test_next_day_steps_from_stored_state(first_run) -> None:
    dep, _, _ = first_run
    nxt = run_day(dep, DAY + dt.timedelta(days=1), progress=False)
    ds = xr.open_zarr(nxt.product, consolidated=False)
    assert ds.indexes["time"][-1].date() == DAY + dt.timedelta(days=1)
    a = ds.soil_moisture.sel(time=str(DAY)).values
    b = ds.soil_moisture.sel(time=str(DAY + dt.timedelta(days=1))).values
    assert not np.array_equal(a, b, equal_nan=True)


def test_step_mode_agrees_with_window_mode(first_run, tmp_path) -> None:
    dep, result, _ = first_run
    settings = dep.settings.model_copy(deep=True)
    settings.inference.mode = "window"
    settings.publish_root = tmp_path / "pub-window"
    window = run_day(Deployment(settings), DAY, progress=False)
    step_sm = xr.open_zarr(result.product, consolidated=False).soil_moisture.sel(time=str(DAY))
    win_sm = xr.open_zarr(window.product, consolidated=False).soil_moisture.sel(time=str(DAY))
    # Cold start: 59 spin-up days then one step, versus one pass over the same 60 days.
    np.testing.assert_allclose(step_sm.values, win_sm.values, atol=1e-5)


def test_days_the_profile_cannot_serve(first_run) -> None:
    dep, _, _ = first_run
    today = dt.date(2024, 6, 1)  # the archive ends on 2020-03-10
    with pytest.raises(RunError, match=r"can serve 2020-01-01\.\.2020-03-10"):
        dep.check_day(dt.date(2019, 12, 31), today)
    with pytest.raises(RunError, match=r"can serve 2020-01-01\.\.2020-03-10"):
        dep.check_day(dt.date(2020, 3, 11), today)
    dep.check_day(dt.date(2020, 3, 10), today)
    dep.check_day(dt.date(2020, 1, 1), today)


def test_missing_forcing_is_filled_and_flagged(first_run) -> None:
    dep, _, _ = first_run
    day = DAY + dt.timedelta(days=3)
    cube = dep.open_cube()
    run_day(dep, day - dt.timedelta(days=1), progress=False)  # steps the state to the day before
    forcing = cube.read("forcing", list(dep.model_forcings), day, day)
    # Inputs already missing that day (e.g. MODIS LST under cloud) are filled and flagged too.
    natural = np.any([np.isnan(forcing[v].values[0]) for v in forcing.data_vars], axis=0)
    t2m = forcing[["t2m"]].copy(deep=True)
    t2m["t2m"][:, :3, :] = np.nan  # the top three rows lose their temperature
    entry = cube.manifest(day)["entries"]["forcing/era5_land"]
    cube.write("forcing", t2m, source="era5_land", version=entry["version"])
    result = run_day(dep, day, progress=False)
    ds = xr.open_zarr(result.product, consolidated=False).sel(time=str(day))
    land = M09.land_mask(dep.domain)
    flag = ds.quality_flag.values
    expected = natural.copy()
    expected[:3] = True
    # xarray decodes the uint8 flag with its fill value to float; bit 1 = forcing gap-filled
    gap_bit = np.where(np.isfinite(flag), flag, 255).astype(np.uint8) & 1
    np.testing.assert_array_equal(gap_bit[land], np.where(expected[land], 1, 0))
    assert (gap_bit[:3][land[:3]] == 1).all() and (~natural[3:][land[3:]]).any()
    assert np.isfinite(ds.soil_moisture.values[land]).all()
