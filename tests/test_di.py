"""Data integration inputs: whole series, training windows and the daily state agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsm3_ops.di import (
    NO_DAY,
    DISpec,
    DIState,
    absorb,
    carry_forward,
    gather_features,
    series_features,
    state_features,
)


def _obs(seed: int = 0, n_loc: int = 5, n_time: int = 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n_loc, n_time)).astype(np.float32)
    obs[rng.random(obs.shape) < 0.6] = np.nan  # SMAP-like revisit gaps
    obs[1, 10:60] = np.nan  # a long gap (frozen season)
    obs[2] = np.nan  # a cell never observed
    return obs


def test_carry_forward_holds_the_last_retrieval_and_its_day() -> None:
    obs = np.array([[np.nan, 1.0, np.nan, np.nan, 4.0, np.nan]], np.float32)
    value, day = carry_forward(obs)
    np.testing.assert_array_equal(value[0], [np.nan, 1, 1, 1, 4, 4])
    assert day[0].tolist() == [NO_DAY, 1, 1, 1, 4, 4]


def test_series_features_see_only_retrievals_at_least_lag_days_old() -> None:
    obs = np.array([[0.5, np.nan, np.nan, -1.0, np.nan, np.nan, np.nan]], np.float32)
    f = series_features(obs, lag=2, max_age=3)[0]
    # day 0, 1: nothing 2 days old yet; day 2: the retrieval of day 0 (age 2); day 3: age 3;
    # day 4: day 0 is 4 days old (> max_age) and day 3's not yet 2 days old -> none;
    # day 5: day 3's at age 2; day 6: age 3.
    np.testing.assert_allclose(f[:, 0], [0, 0, 0.5, 0.5, 0, -1, -1])
    np.testing.assert_allclose(f[:, 1], [1, 1, 2 / 3, 1, 1, 2 / 3, 1])


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_training_windows_equal_the_whole_series(lag: int) -> None:
    obs = _obs()
    value, day = carry_forward(obs)
    locs = np.array([0, 1, 2, 3, 4, 1])
    starts = np.array([0, 3, 20, 50, 1, 40])
    got = gather_features(
        torch.from_numpy(value), torch.from_numpy(day), torch.from_numpy(locs),
        torch.from_numpy(starts), torch.full((6,), lag), seq_len=30, max_age=10,
    ).numpy()  # fmt: skip
    whole = series_features(obs, lag, max_age=10)
    for b, (loc, s) in enumerate(zip(locs, starts, strict=True)):
        np.testing.assert_allclose(got[:, b], whole[loc, s : s + 30], rtol=0, atol=1e-7)


@pytest.mark.parametrize("lag", [1, 3])
def test_daily_absorption_equals_the_whole_series(lag: int) -> None:
    """A run absorbing day t - lag each day sees what the whole-series features give."""
    obs = _obs(1)
    whole = series_features(obs, lag, max_age=10)
    state = DIState.empty(obs.shape[0])
    for t in range(obs.shape[1]):
        if t - lag >= 0:
            state = absorb(state, obs[:, t - lag], t - lag)
        np.testing.assert_allclose(state_features(state, t, 10), whole[:, t], atol=1e-7)


def test_a_late_retrieval_absorbed_later_never_replaces_a_newer_one() -> None:
    state = absorb(DIState.empty(2), np.array([1.0, np.nan], np.float32), 10)
    late = absorb(state, np.array([5.0, 7.0], np.float32), 8)  # day 8 arrives after day 10
    assert late.value.tolist() == [1.0, 7.0]
    assert late.day.tolist() == [10, 8]


def test_spec_round_trips_and_refuses_bad_latencies() -> None:
    spec = DISpec("smap", (2, 4), 30)
    assert DISpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="latency"):
        DISpec("smap", (0, 2), 30)
    with pytest.raises(ValueError, match="max_age"):
        DISpec("smap", (1, 5), 3)


def test_a_di_member_trains_saves_and_loads_with_its_channels(tmp_path) -> None:
    from gsm3_ops.config import TrainingConfig
    from gsm3_ops.model.bundle import BundleSpec, load_bundle, save_bundle
    from gsm3_ops.training.sampling import TrainingData
    from gsm3_ops.training.trainer import train_member

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 90, 3)).astype(np.float32)
    y = _obs(2, 6, 90)[:, :, None]
    spec = BundleSpec(forcings=["a", "b"], statics=["c"], targets=["smap"], hidden_size=8,
                      dropout=0.5, stats={}, grid="none", product_target="smap",
                      heads="shared", di=DISpec("smap", (1, 3), 10).to_json())  # fmt: skip
    cfg = TrainingConfig(epochs=1, max_iterations=6, batch_size=4, seq_len=20, device="cpu",
                         checkpoint_every=0, threads=1)  # fmt: skip
    data = TrainingData(x, y, np.zeros(6, bool))
    a = train_member(data, spec, cfg, seed=3, progress=False)
    b = train_member(data, spec, cfg, seed=3, progress=False)
    assert a.net.linear_in.in_features == 5  # 3 inputs + value + age
    assert a.losses == b.losses  # lags are drawn from the seeded sampler
    bundle = load_bundle(save_bundle(tmp_path / "b", spec, [a.net]))
    assert bundle.spec.di_spec == DISpec("smap", (1, 3), 10)
