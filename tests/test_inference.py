"""The inference engine: members x cell batches, memory budget, autocast, product."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsm3_ops.inference.engine import CPU_MAX_BATCH_CELLS, CPU_TIME_BLOCK_DAYS, Engine
from gsm3_ops.inference.state import quantise, stored
from gsm3_ops.model.bundle import BundleSpec, load_bundle, save_bundle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_batch_size_follows_the_memory_budget_and_not_the_values(engine: Engine) -> None:
    budget = Engine(engine.bundle, engine.device, memory_budget_gb=0.0002)
    assert budget.cells_per_batch(1) > budget.cells_per_batch(30) * 10
    assert budget.cells_per_batch(10_000) == 1  # never zero
    x = np.random.default_rng(2).normal(size=(50, 30, 3)).astype(np.float32)
    assert budget.cells_per_batch(30) < 50  # several batches
    got, (h, _) = budget.advance(x, None)
    want, (h_want, _) = Engine(engine.bundle, engine.device, batch_cells=50).advance(x, None)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(h, h_want, atol=1e-6)


def test_cpu_steps_run_in_cache_sized_batches(engine: Engine) -> None:
    big = Engine(engine.bundle, torch.device("cpu"), memory_budget_gb=64.0)
    assert big.cells_per_batch(1) == CPU_MAX_BATCH_CELLS  # not a whole tile at once
    assert big.cells_per_batch(365) == CPU_MAX_BATCH_CELLS
    small = Engine(engine.bundle, torch.device("cpu"), memory_budget_gb=0.0002)
    assert small.cells_per_batch(1) < CPU_MAX_BATCH_CELLS  # the budget still binds


def test_bf16_autocast_is_close_to_float32(engine: Engine) -> None:
    x = np.random.default_rng(3).normal(size=(16, 10, 3)).astype(np.float32)
    ref, _ = engine.advance(x, None)
    bf16 = Engine(engine.bundle, engine.device, batch_cells=7, autocast="bfloat16")
    got, (h, c) = bf16.advance(x, None)
    assert got.dtype == h.dtype == c.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=0.05)
    assert not np.array_equal(got, ref)  # it did run in bf16
    with pytest.raises(ValueError, match="autocast"):
        Engine(engine.bundle, engine.device, autocast="fp8")


def test_one_day_step_equals_the_networks_lstm(engine: Engine) -> None:
    """On CPU a single day runs through an LSTM cell sharing the weights: same numbers."""
    x = np.random.default_rng(4).normal(size=(9, 1, 3)).astype(np.float32)
    state = tuple(np.random.default_rng(5).normal(size=(3, 9, 8)).astype(np.float32) for _ in "hc")
    out, (h, c) = engine.advance(x, state)
    with torch.no_grad():
        for m, net in enumerate(engine.bundle.members):
            s = tuple(torch.from_numpy(a[m])[None] for a in state)
            y, (h_ref, c_ref) = net(torch.from_numpy(x.transpose(1, 0, 2).copy()), s)
            np.testing.assert_allclose(out[m], y[0].numpy(), atol=1e-6)
            np.testing.assert_allclose(h[m], h_ref[0].numpy(), atol=1e-6)
            np.testing.assert_allclose(c[m], c_ref[0].numpy(), atol=1e-6)


def test_bf16_states_go_in_and_out_as_the_stores_bits(engine: Engine) -> None:
    """The engine rounds each batch's new state to bf16 bits itself, exactly as storing a
    float32 state would, and takes those bits back as the same values."""
    x = np.random.default_rng(6).normal(size=(20, 1, 3)).astype(np.float32)
    rng = np.random.default_rng(7)
    state32 = tuple(rng.normal(size=(3, 20, 8)).astype(np.float32) for _ in "hc")
    bits = tuple(stored(a, "bfloat16") for a in state32)
    out_bits, new_bits = engine.advance(x, bits, "bfloat16")
    out_ref, new_ref = engine.advance(x, quantise(state32, "bfloat16"))
    np.testing.assert_array_equal(out_bits, out_ref)  # bits in == rounded float32 in
    for got, want in zip(new_bits, new_ref, strict=True):
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, stored(want, "bfloat16"))  # same rounding
    with pytest.raises(ValueError, match="state_dtype"):
        engine.advance(x, None, "float16")


def test_cpu_sequences_in_time_blocks_equal_one_pass_of_the_network(engine: Engine) -> None:
    days = 2 * CPU_TIME_BLOCK_DAYS + 4  # two whole blocks and a short one
    x = np.random.default_rng(8).normal(size=(9, days, 3)).astype(np.float32)
    series = engine.series(x)
    with torch.no_grad():
        for m, net in enumerate(engine.bundle.members):
            y, _ = net(torch.from_numpy(x.transpose(1, 0, 2).copy()))
            np.testing.assert_allclose(series[m], y.numpy(), atol=1e-6)
