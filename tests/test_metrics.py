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


# ------------------------------------------------------------- real USCRN data

USCRN_COLUMNS = 28
SM5, SM10 = 18, 19  # SOIL_MOISTURE_5_DAILY, SOIL_MOISTURE_10_DAILY (0-based columns)


def _uscrn_series(folder, years: tuple[int, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """5 cm and 10 cm soil moisture (days, stations) from daily01 files, NaN where missing.

    Parsed here with pandas only, independently of any reader in the package.
    """
    import pandas as pd

    frames: dict[str, list] = {}
    for year in years:
        for path in sorted((folder / str(year)).glob("CRND0103-*.txt")):
            df = pd.read_csv(path, sep=r"\s+", header=None, dtype={1: str})
            assert df.shape[1] == USCRN_COLUMNS, path
            station = path.stem.split("-", 2)[2]
            frames.setdefault(station, []).append(df)
    days = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-31", freq="D")
    names = sorted(frames)
    sm5 = np.full((days.size, len(names)), np.nan)
    sm10 = np.full_like(sm5, np.nan)
    for k, name in enumerate(names):
        df = pd.concat(frames[name])
        at = days.get_indexer(pd.to_datetime(df[1], format="%Y%m%d"))
        for out, col in ((sm5, SM5), (sm10, SM10)):
            v = df[col].to_numpy(dtype=float)
            out[at, k] = np.where(v < 0, np.nan, v)  # -99.000 / -9999.0 are missing
    return names, sm5, sm10


@pytest.fixture(scope="module")
def uscrn(fixtures):
    return _uscrn_series(fixtures / "uscrn_daily01", (2017, 2018))


def test_agrees_with_independent_formulas_on_real_uscrn(uscrn) -> None:
    names, sm5, sm10 = uscrn
    gappy = np.isnan(sm5).any(axis=0) & ~np.isnan(sm5).all(axis=0)
    assert len(names) >= 50 and gappy.sum() >= 10  # real gaps, not a gap-free toy
    persistence = np.vstack([np.full((1, sm5.shape[1]), np.nan), sm5[:-1]])  # yesterday's 5 cm
    for pred in (sm10, persistence):
        got = paired_metrics(pred, sm5, min_pairs=30)
        checked = 0
        for k in range(sm5.shape[1]):
            ok = np.isfinite(pred[:, k]) & np.isfinite(sm5[:, k])
            assert got["n"][k] == ok.sum()
            if ok.sum() < 30:
                assert np.isnan(got["r"][k]), names[k]
                continue
            ref = _reference(pred[:, k], sm5[:, k])
            for name, value in ref.items():
                assert abs(got[name][k] - value) <= 1e-9, (names[k], name)
            checked += 1
        assert checked >= 50


def test_real_series_with_few_pairs_are_left_out(uscrn) -> None:
    names, sm5, sm10 = uscrn
    obs = sm5.copy()
    obs[20:, 0] = np.nan  # the first station keeps at most 20 days
    got = paired_metrics(sm10, obs, min_pairs=30)
    assert got["n"][0] <= 20 and np.isnan(got["rmse"][0]) and np.isnan(got["r"][0])
    assert summary(got)["n_sites"] == int(np.isfinite(got["r"]).sum()) < len(names)


def test_the_package_reader_feeds_the_same_numbers(uscrn, fixtures) -> None:
    """gsm3_ops.sources.uscrn.read_daily01 gives the series parsed independently above."""
    from gsm3_ops.sources.uscrn import read_daily01

    names, sm5, sm10 = uscrn
    series = []
    for name in names:
        years = [
            read_daily01(fixtures / "uscrn_daily01" / str(y) / f"CRND0103-{y}-{name}.txt")
            for y in (2017, 2018)
        ]
        df = years[0].combine_first(years[1])
        assert len(df) == sm5.shape[0] and df.index.is_monotonic_increasing
        series.append(df[["soil_moisture_5_daily", "soil_moisture_10_daily"]].to_numpy(float))
    got5, got10 = (np.column_stack([s[:, k] for s in series]) for k in (0, 1))
    a, b = paired_metrics(got10, got5), paired_metrics(sm10, sm5)
    for key in ("bias", "rmse", "ubrmse", "r", "n"):
        np.testing.assert_array_equal(a[key], b[key])
