"""Tile tasks run in-process or on dask give the same day; clear errors for missing clusters."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import zarr

from gsm3_ops.config import ClusterConfig
from gsm3_ops.ops.cluster import ClusterError, shared_clusters, tile_runner
from tests.test_inference_daily import make_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_local_cluster_gives_the_same_day_and_state_as_in_process(tmp_path) -> None:
    world = make_world(tmp_path)
    day = dt.date(2020, 2, 10)
    here = world.predictor(state_name="here.zarr", spinup_days=10)
    with tile_runner(ClusterConfig()) as runner:
        a = [here.predict(day, runner=runner), here.predict(day + dt.timedelta(days=1))]
    # One worker thread in this process: spares the shared CPU, same code path as processes.
    local = ClusterConfig(kind="local", n_workers=1, processes=False)
    there = world.predictor(state_name="there.zarr", spinup_days=10, cluster=local)
    with tile_runner(local) as runner:
        b = [there.predict(day, runner=runner)]
        b.append(there.predict(day + dt.timedelta(days=1), runner=runner))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.mean, y.mean)
        np.testing.assert_array_equal(x.sd, y.sd)
        np.testing.assert_array_equal(x.gap_filled, y.gap_filled)
    assert [s.start.kind for s in b] == ["cold", "stored"]
    assert here.store.dates() == there.store.dates()
    for day_ in here.store.dates():  # every state tile, bit for bit
        mine = zarr.open_group(here.store.group(day_), mode="r")
        keys = sorted(mine.array_keys())
        assert keys == sorted(zarr.open_group(there.store.group(day_), mode="r").array_keys())
        for key in keys:
            theirs = zarr.open_array(there.store.group(day_) / key, mode="r")
            np.testing.assert_array_equal(mine[key][...], theirs[...])


def test_a_failing_task_raises_and_commits_no_state(tmp_path) -> None:
    world = make_world(tmp_path)
    p = world.predictor(state_name="s.zarr", spinup_days=5)

    def broken(fn, tasks):
        yield fn(tasks[0])
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        p.predict(dt.date(2020, 2, 10), runner=broken)
    assert p.store.dates() == [] and not list(p.store.path.glob(".tmp-*"))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (ClusterConfig(kind="kubernetes"), "needs the dask-kubernetes package"),
        (ClusterConfig(kind="dask-cuda"), "needs the dask-cuda package"),
        (ClusterConfig(kind="jobqueue", jobqueue_system="slurm"), "cannot start the jobqueue"),
        (
            ClusterConfig(kind="address", address="tcp://127.0.0.1:1", options={"timeout": "1s"}),
            "cannot reach the dask scheduler at tcp://127.0.0.1:1",
        ),
    ],
)
def test_clusters_that_cannot_start_give_a_clear_error(cfg, message) -> None:
    with pytest.raises(ClusterError, match=message), tile_runner(cfg):
        pass


def test_address_is_required_for_kind_address_only() -> None:
    with pytest.raises(ValueError, match=r"cluster\.address"):
        ClusterConfig(kind="address")
    with pytest.raises(ValueError, match=r"cluster\.address"):
        ClusterConfig(kind="local", address="tcp://x:1")


def test_shared_clusters_start_one_cluster_for_many_days(monkeypatch) -> None:
    from gsm3_ops.ops import cluster as cluster_module

    started = []
    real = cluster_module._make_cluster

    def counting(cfg):
        started.append(cfg.kind)
        return real(cfg)

    monkeypatch.setattr(cluster_module, "_make_cluster", counting)
    local = ClusterConfig(kind="local", n_workers=1, processes=False)
    with shared_clusters():
        with tile_runner(local) as first:
            assert list(first(lambda x: x * 2, [1])) == [2]
        with tile_runner(local) as second:  # the next day: the same cluster, still open
            assert second is first and list(second(lambda x: x + 1, [1])) == [2]
    assert started == ["local"]
    with tile_runner(local), tile_runner(local):  # outside: one cluster per runner, as before
        pass
    assert started == ["local"] * 3
