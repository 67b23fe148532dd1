"""Publishing with other processes around: a publisher killed half way is rolled back (or
finished, past its commit point) by the next one; two publishers at once both complete."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gsm3_ops.publish import atomic, stac
from gsm3_ops.publish.atomic import JOURNALS, publish_lock, recover
from gsm3_ops.publish.layers import LAYERS
from tests.test_publish_atomic import (
    D1,
    D2,
    D3,
    NO_QUICKLOOK,
    layers_for,
    leftovers,
    manifest_for,
    publish,
    snapshot,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A product with two published days."""
    root = tmp_path_factory.mktemp("base")
    publish(root, D1, cfg=NO_QUICKLOOK)
    publish(root, D2, cfg=NO_QUICKLOOK)
    return root


def copy_base(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "pub"
    shutil.copytree(base, root)
    return root


def _killed_worker(root: str, when: str) -> None:
    """Publish D2 again and die (no cleanup, no exception handling) at ``when``."""
    real_rename = os.rename

    def rename(src, dst):
        if when == "before commit" and str(dst).endswith("collection.json"):
            os._exit(3)
        real_rename(src, dst)

    os.rename = rename
    if when == "after commit":
        atomic.Transaction.cleanup = lambda self: os._exit(3)
    publish(Path(root), D2, version=2, cfg=NO_QUICKLOOK)


def _spawn(target, *args) -> multiprocessing.Process:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def test_a_killed_publisher_is_rolled_back_by_the_next_one(base, tmp_path) -> None:
    root = copy_base(base, tmp_path)
    before = snapshot(root)
    worker = _spawn(_killed_worker, str(root), "before commit")
    worker.join(120)
    assert worker.exitcode == 3
    assert list((root / JOURNALS).glob("*.json"))  # it died half way: a journal remains
    assert snapshot(root) != before  # data files were already renamed in
    with publish_lock(root):
        assert len(recover(root)) == 1
    assert snapshot(root) == before and not leftovers(root)


def test_a_publisher_killed_after_its_commit_point_is_finished(base, tmp_path) -> None:
    root = copy_base(base, tmp_path)
    worker = _spawn(_killed_worker, str(root), "after commit")
    worker.join(120)
    assert worker.exitcode == 3
    publish(root, D3, cfg=NO_QUICKLOOK)  # it recovers first: the day stays published
    manifest = json.loads(manifest_for(root, D2).read_text())
    assert manifest["version"] == 2 and not leftovers(root)
    ds = xr.open_zarr(root / "gsm3.zarr")
    np.testing.assert_array_equal(
        ds.soil_moisture.sel(time=str(D2)), layers_for(D2, 2)["soil_moisture"]
    )


def _concurrent_worker(root: str, days: list[str], barrier) -> None:
    barrier.wait(60)
    for day in days:
        publish(Path(root), dt.date.fromisoformat(day), cfg=NO_QUICKLOOK)


def test_two_processes_publishing_days_at_once_both_complete(tmp_path) -> None:
    root = tmp_path / "pub"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    plans = [["2020-03-05", "2020-03-03"], ["2020-03-06", "2020-03-02"]]
    workers = [ctx.Process(target=_concurrent_worker, args=(str(root), p, barrier))
               for p in plans]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
    assert [w.exitcode for w in workers] == [0, 0]
    days = sorted(dt.date.fromisoformat(d) for plan in plans for d in plan)
    ds = xr.open_zarr(root / "gsm3.zarr")
    assert ds.indexes["time"][-1].date() == max(days)
    for day in days:
        assert json.loads(manifest_for(root, day).read_text())["status"] == "complete"
        np.testing.assert_array_equal(
            ds.soil_moisture.sel(time=str(day)), layers_for(day)["soil_moisture"]
        )
    collection = stac.read_collection(root)
    stac.validate(collection, "collection")
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert len(items) == len(days)
    for href in items:
        stac.validate(json.loads((root / "stac" / href).read_text()), href)
    interval = collection["extent"]["temporal"]["interval"][0]
    assert interval == [f"{min(days)}T00:00:00Z", f"{max(days)}T00:00:00Z"]
    assert not leftovers(root)
    for name in LAYERS:
        assert ds[name].sizes["time"] == (max(days) - min(days)).days + 1
