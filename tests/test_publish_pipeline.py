"""run_day's publishing: quality-flag bits from the cube, every output of a day, and a failed
day (disk full) reported with the previous product and manifest left intact.

The model is not trained here (tests/test_pipeline.py runs the whole chain): the bundle and
the ensemble prediction are replaced by fixed fields, everything after them is real: the
cube ingested from the tests' archive (tests/world_site.py), and its forcing, statics and
manifest feed the flag.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gsm3_ops.config import load_settings
from gsm3_ops.grid import Window
from gsm3_ops.inference.daily import DayOutput
from gsm3_ops.inference.tile import Start
from gsm3_ops.ops import pipeline
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.lock import run_lock
from gsm3_ops.ops.status import last_run_path, status_report
from gsm3_ops.publish import day as day_module
from gsm3_ops.publish.cog import validate_cog
from gsm3_ops.publish.layers import FLAG_FILL, FLAG_FROZEN, FLAG_GAP_FILLED, FLAG_PROVISIONAL
from gsm3_ops.publish.manifest import failure_path, manifest_path

DAY = dt.date(2019, 12, 15)


def _prediction(dep: Deployment) -> dict[str, np.ndarray]:
    land = dep.land
    sm = np.where(land, np.linspace(0.1, 0.4, land.size).reshape(land.shape), np.nan)
    gaps = np.zeros(land.shape, bool)
    gaps[0] = land[0]  # the top row had a forcing gap
    return {"soil_moisture": sm.astype(np.float32),
            "soil_moisture_sd": (sm / 20).astype(np.float32), "gap_filled": gaps}  # fmt: skip


def _fake_model(monkeypatch) -> None:
    """No training or inference: the day's own inputs, then a fixed prediction."""

    def plan(dep, cube, day):
        return pipeline.DayPlan([(day, day)], None, None)

    def predict(dep, cube, plan, day, progress):
        p = _prediction(dep)
        start = Start("stored", day, day - dt.timedelta(days=1))
        out = DayOutput(p["soil_moisture"], p["soil_moisture_sd"], p["gap_filled"], start, 1)
        return SimpleNamespace(bundle_id="b-1", spec=SimpleNamespace(di_spec=None)), out

    monkeypatch.setattr(pipeline, "plan_day", plan)
    monkeypatch.setattr(pipeline, "_predict", predict)


@pytest.fixture(scope="module")
def deployment(world_site, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    # The day is ingested; its inputs are final (the archive's last 60 days are early runs).
    config = world_site.config(tmp, product={"start": "2019-12-01"})
    dep = Deployment(load_settings(config))
    cube = dep.open_cube()
    # A provisional ERA5T stream filled a 3 x 4 block of the day, frozen soil in another.
    d = dep.domain
    part = Window(d.row0 + 2, d.col0 + 1, 3, 4)
    ys = dep.grid.y_centres(part)
    xs = dep.grid.x_centres(part)
    stl1 = np.full((1, *part.shape), 265.0, np.float32)
    ds = xr.Dataset({"stl1": (("time", "y", "x"), stl1)},
                    coords={"time": pd.to_datetime([DAY]), "y": ys, "x": xs})  # fmt: skip
    cube.write("forcing", ds, source="era5_land", version="ERA5T")
    return dep


@pytest.fixture
def no_model(monkeypatch, deployment):
    _fake_model(monkeypatch)


def test_run_day_publishes_the_day_with_its_flag_bits(deployment, no_model) -> None:
    dep = deployment
    result = pipeline.run_day(dep, DAY, progress=False)
    manifest = json.loads(result.manifest.read_text())
    assert manifest["status"] == "complete" and manifest["bundle_id"] == "b-1"
    assert manifest["product_version"] == dep.settings.product.version
    root = dep.settings.publish_root
    for path in manifest["outputs"]["cog"].values():
        assert validate_cog(root / path)[0]
    assert result.cog == dep.settings.publish_root / "cog/2019/gsm3_sm_20191215.tif"
    published_config = result.manifest.with_suffix(".config.yaml").read_text()
    assert published_config == dep.settings.to_yaml(public=True)
    assert str(root) not in published_config and "data_root: ${data_root}" in published_config
    assert str(dep.settings.data_root) not in published_config
    assert str(root) not in result.manifest.read_text()  # nothing published names a local path
    ds = xr.open_zarr(result.product, mask_and_scale=False)
    flag = ds.quality_flag.sel(time=str(DAY)).values
    land = dep.land
    assert (flag[~land] == FLAG_FILL).all() and (flag[land] < FLAG_FILL).all()
    gap = (flag & FLAG_GAP_FILLED) > 0
    np.testing.assert_array_equal(gap[land], _prediction(dep)["gap_filled"][land])
    block = np.zeros(land.shape, bool)
    block[2:5, 1:5] = True
    np.testing.assert_array_equal(((flag & FLAG_PROVISIONAL) > 0)[land], block[land])
    np.testing.assert_array_equal(((flag & FLAG_FROZEN) > 0)[land], block[land])
    assert not failure_path(dep.settings.publish_root, DAY).exists()
    # the demo profile (which the test config extends) adds the Web-Mercator COG and the
    # time-series copy
    assert validate_cog(root / manifest["outputs"]["web_mercator"])[0]
    series = xr.open_zarr(root / "gsm3_timeseries.zarr")
    np.testing.assert_array_equal(
        series.soil_moisture.sel(time=str(DAY)), ds.soil_moisture.sel(time=str(DAY))
    )
    item = json.loads((root / manifest["outputs"]["stac_item"]).read_text())
    assert item["properties"]["gsm3:provisional_share"] == pytest.approx(
        block[land].sum() / land.sum(), abs=1e-4
    )


def test_a_full_disk_fails_the_day_and_keeps_the_previous_product(deployment, no_model,
                                                                  monkeypatch) -> None:  # fmt: skip
    dep = deployment
    root = dep.settings.publish_root
    pipeline.run_day(dep, DAY, progress=False)
    manifest_before = manifest_path(root, DAY).read_bytes()
    product_before = xr.open_zarr(root / "gsm3.zarr").load()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(day_module, "write_cog", full)
    for day in (DAY, DAY + dt.timedelta(days=1)):  # a rewrite and a new day
        with pytest.raises(pipeline.DayFailedError, match="No space left on device") as info:
            pipeline.run_day(dep, day, progress=False, force=True)
        assert info.value.exit_code == 1  # the CLI reports it in one line, exit 1
        record = json.loads(failure_path(root, day).read_text())
        assert record["status"] == "failed" and "No space left" in record["error"]
    assert manifest_path(root, DAY).read_bytes() == manifest_before
    assert not manifest_path(root, DAY + dt.timedelta(days=1)).exists()
    xr.testing.assert_identical(xr.open_zarr(root / "gsm3.zarr").load(), product_before)
    monkeypatch.undo()
    _fake_model(monkeypatch)
    pipeline.run_day(dep, DAY, progress=False, force=True)  # published again: record removed
    assert not failure_path(root, DAY).exists()


def test_a_day_published_to_object_storage_reaches_readers(world_site, s3_server, tmp_path,
                                                           monkeypatch) -> None:  # fmt: skip
    """publish_root: s3://...: the day is committed locally, then uploaded; a failed upload
    fails the run in one line and the next run finishes it before anything else."""
    url = s3_server.url("pipeline")
    config = world_site.config(tmp_path, product={"start": "2019-12-01"}, publish_root=url)
    for key, value in {**s3_server.aws_env(), "AWS_SECRET_ACCESS_KEY": "wrong"}.items():
        monkeypatch.setenv(key, value)
    dep = Deployment(load_settings(config))
    assert dep.settings.publish_remote == url
    assert dep.settings.publish_root == dep.settings.data_root / "publish"
    _fake_model(monkeypatch)
    with pytest.raises(pipeline.DayFailedError, match="published locally, but uploading") as info:
        pipeline.run_day(dep, DAY, progress=False)
    assert "wrong" not in str(info.value) and len(str(info.value).splitlines()) == 1
    fs = s3_server.filesystem()
    assert not fs.exists(f"{url}/latest.json")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    later = DAY + dt.timedelta(days=1)
    for day in (DAY, later):  # DAY: skipped, its upload finished first; later: mirrored
        pipeline.run_day(dep, day, progress=False)
    local = dep.settings.publish_root
    assert not list((local / ".upload").glob("*.json"))
    remote = xr.open_zarr(fs.get_mapper(f"{url}/gsm3.zarr"), consolidated=True)
    xr.testing.assert_identical(remote.load(), xr.open_zarr(local / "gsm3.zarr").load())
    series = xr.open_zarr(fs.get_mapper(f"{url}/gsm3_timeseries.zarr"), consolidated=True)
    assert list(series.indexes["time"].date) == [DAY, later]
    with urllib.request.urlopen(s3_server.http_url("pipeline/latest.json"), timeout=10) as r:
        assert json.loads(r.read())["day"] == later.isoformat()  # a plain HTTP GET
    assert fs.exists(f"{url}/manifests/{later:%Y}/gsm3_{later:%Y%m%d}.json")


def test_an_unnamed_failure_is_a_recorded_failure_and_an_interrupt_is_recorded(
    deployment, no_model, monkeypatch
) -> None:
    """A library error no stage names (GDAL's write error while staging a COG is not an
    OSError) fails the day in one line with its failure record and last run; Ctrl-C leaves
    ``interrupted``."""
    dep = deployment
    root = dep.settings.publish_root
    day = DAY + dt.timedelta(days=2)

    def gdal_write_error(*args, **kwargs):
        raise RuntimeError("TIFFAppendToStrip: Write error at scanline 0")

    monkeypatch.setattr(day_module, "write_cog", gdal_write_error)
    with pytest.raises(pipeline.DayFailedError, match="RuntimeError: TIFFAppendToStrip") as info:
        pipeline.run(dep.settings, day, progress=False)
    assert info.value.exit_code == 1 and len(str(info.value).splitlines()) == 1
    record = json.loads(failure_path(root, day).read_text())
    assert record["status"] == "failed" and "Write error" in record["error"]
    last = json.loads(last_run_path(root).read_text())
    assert (last["command"], last["outcome"], last["day"]) == ("run", "failed", str(day))
    report = status_report(root, {}, day, day)
    assert report["days"][0]["status"] == "failed" and "Write error" in report["days"][0]["error"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(day_module, "write_cog", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(dep.settings, day, progress=False)
    assert json.loads(last_run_path(root).read_text())["outcome"] == "interrupted"


def test_a_time_series_copy_out_of_step_shows_in_status_and_the_next_run_rebuilds_it(
    world_site, tmp_path, monkeypatch
) -> None:
    config = world_site.config(tmp_path, product={"start": "2019-12-01"})
    dep = Deployment(load_settings(config))
    _fake_model(monkeypatch)
    root = dep.settings.publish_root
    pipeline.run_day(dep, DAY, progress=False)
    assert status_report(root, {}, DAY, DAY)["timeseries_lag_days"] == 0
    product = dep.settings.product
    off = dep.settings.model_copy(update={"product": product.model_copy(
        update={"timeseries_copy": False})})  # fmt: skip
    later = DAY + dt.timedelta(days=1)
    pipeline.run_day(Deployment(off), later, progress=False)  # the copy misses a day
    assert status_report(root, {}, DAY, later)["timeseries_lag_days"] == 1
    last = DAY + dt.timedelta(days=2)
    pipeline.run_day(dep, last, progress=False)  # any later run with the copy rebuilds it
    assert status_report(root, {}, DAY, last)["timeseries_lag_days"] == 0
    series = xr.open_zarr(root / "gsm3_timeseries.zarr").soil_moisture.load()
    whole = xr.open_zarr(root / "gsm3.zarr").soil_moisture.load()
    np.testing.assert_array_equal(series.values, whole.values)
    assert series.sel(time=str(later)).notnull().any()


def test_a_run_past_its_deadline_fails_recorded_and_lets_go_of_the_lock(
    deployment, no_model, monkeypatch
) -> None:
    dep = deployment
    schedule = dep.settings.schedule.model_copy(update={"run_deadline_s": 1})
    bounded = Deployment(dep.settings.model_copy(update={"schedule": schedule}))
    day = DAY + dt.timedelta(days=3)

    def hung(*args, **kwargs):  # an input or store that never answers
        time.sleep(30)

    monkeypatch.setattr(pipeline, "_predict", hung)
    t0 = time.monotonic()
    with pytest.raises(pipeline.DayFailedError, match="run deadline of 1 s"):
        pipeline.run_day(bounded, day, progress=False)
    assert time.monotonic() - t0 < 10
    assert (
        "run deadline"
        in json.loads(failure_path(dep.settings.publish_root, day).read_text())["error"]
    )
    with run_lock(dep.settings.data_root, wait=False):  # released: the next run can start
        pass
