"""The inference engine and the LSTM state store."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from gsm3_ops.inference.engine import Engine
from gsm3_ops.inference.state import StateError, StateStore
from gsm3_ops.model.bundle import BundleSpec, load_bundle, save_bundle


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    spec = BundleSpec(
        forcings=["t2m", "precip_mswep"], statics=["sand"], targets=["smap", "insitu"],
        hidden_size=8, dropout=0.5, grid="M09", product_target="insitu",
        stats={"insitu": {"mean": 0.25, "std": 0.1}, "smap": {"mean": 0.2, "std": 0.1}},
    )  # fmt: skip
    path = tmp_path_factory.mktemp("bundle") / "b"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_bundle(path, spec, [spec.new_network(), spec.new_network(), spec.new_network()])
    return Engine(load_bundle(path), torch.device("cpu"), batch_cells=7)


def test_stepping_in_parts_equals_one_pass_and_series(engine: Engine) -> None:
    x = np.random.default_rng(0).normal(size=(20, 30, 3)).astype(np.float32)
    whole, (h, c) = engine.advance(x, None)
    first, state = engine.advance(x[:, :18], None)
    part, (h2, c2) = engine.advance(x[:, 18:], state)
    np.testing.assert_allclose(part, whole, atol=1e-5)
    np.testing.assert_allclose(h2, h, atol=1e-5)
    np.testing.assert_allclose(c2, c, atol=1e-5)
    series = engine.series(x)
    assert series.shape == (3, 30, 20, 2)
    np.testing.assert_allclose(series[:, -1], whole, atol=1e-5)
    np.testing.assert_allclose(series[:, 17], first, atol=1e-5)


def test_product_is_clipped_mean_and_spread(engine: Engine) -> None:
    out = np.zeros((3, 4, 2), np.float32)
    out[:, :, 1] = [[0.0], [1.0], [2.0]]  # insitu head, normalised
    out[0, 0, 1] = 100.0  # far outside the valid range
    mean, sd = engine.product(out)
    np.testing.assert_allclose(mean[1:], 0.35, atol=1e-6)
    np.testing.assert_allclose(sd[1:], 0.1, atol=1e-6)
    assert mean[0] == pytest.approx((0.7 + 0.35 + 0.45) / 3)


def test_state_store_round_trip_retention_and_ownership(tmp_path) -> None:
    rows, cols = np.array([0, 1, 3]), np.array([2, 0, 1])
    store = StateStore(tmp_path / "state.zarr", "abc", (4, 3), tile_size=2)
    h = np.random.default_rng(1).normal(size=(2, 3, 5)).astype(np.float32)
    days = [dt.date(2021, 1, d) for d in (1, 2, 3)] + [dt.date(2021, 2, d) for d in range(1, 5)]
    for k, day in enumerate(days):
        store.save(day, rows, cols, h + k, -h - k)
    got_h, got_c = store.load(days[2], rows, cols)
    np.testing.assert_array_equal(got_h, h + 2)
    np.testing.assert_array_equal(got_c, -h - 2)
    assert store.latest_on_or_before(dt.date(2021, 1, 31)) == days[2]
    assert store.latest_on_or_before(dt.date(2020, 12, 31)) is None
    gone = store.prune(keep_recent=2)
    assert gone == [days[1], days[2], days[4]]
    assert store.dates() == [days[0], days[3], days[5], days[6]]
    with pytest.raises(StateError, match="belongs to bundle abc"):
        StateStore(tmp_path / "state.zarr", "other", (4, 3), tile_size=2)
