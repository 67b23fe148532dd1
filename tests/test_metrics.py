"""Metrics on the paired valid mask, against formulas written independently here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gsm3_ops.evaluation.metrics import paired_metrics, summary


def _reference(p: np.ndarray, o: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(p) & np.isfinite(o)
    p, o = p[ok], o[ok]
    return {
        "bias": p.mean() - o.mean(),
        "rmse": np.sqrt(np.mean((p - o) ** 2)),
        "ubrmse": np.sqrt(np.mean(((p - p.mean()) - (o - o.mean())) ** 2)),
        "r": stats.pearsonr(p, o)[0],
    }


def test_agrees_with_independent_formulas_on_gappy_series() -> None:
    rng = np.random.default_rng(3)
    obs = rng.uniform(0.05, 0.45, (400, 6))
    pred = 0.8 * obs + 0.05 + rng.normal(0, 0.03, obs.shape)
    obs[rng.random(obs.shape) < 0.3] = np.nan  # gaps in the observations
    pred[rng.random(obs.shape) < 0.1] = np.nan  # and, elsewhere, in the prediction
    got = paired_metrics(pred, obs)
    for k in range(obs.shape[1]):
        ref = _reference(pred[:, k], obs[:, k])
        for name, value in ref.items():
            assert got[name][k] == pytest.approx(value, abs=1e-12), (name, k)
        assert got["n"][k] == (np.isfinite(pred[:, k]) & np.isfinite(obs[:, k])).sum()


def test_too_few_pairs_give_nan_and_are_left_out_of_the_summary() -> None:
    obs = np.linspace(0.1, 0.4, 50)[:, None].repeat(2, axis=1)
    pred = obs + 0.01
    obs[10:, 1] = np.nan  # only 10 pairs at the second location
    got = paired_metrics(pred, obs, min_pairs=30)
    assert np.isfinite(got["r"][0]) and np.isnan(got["r"][1]) and got["n"][1] == 10
    s = summary(got)
    assert s["n_sites"] == 1 and s["median_bias"] == pytest.approx(0.01)
    assert summary(paired_metrics(pred[:5], obs[:5]))["n_sites"] == 0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        paired_metrics(np.zeros((3, 2)), np.zeros((3, 3)))
