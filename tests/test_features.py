"""Normalisation statistics and input assembly."""

from __future__ import annotations

import numpy as np
import pytest

from gsm3_ops.features import FeatureError, assemble_inputs, compute_stats, denormalise, normalise


def test_trimmed_stats_ignore_outliers_and_nan() -> None:
    values = np.concatenate([np.linspace(280, 300, 1000), [1e6, np.nan]])
    s = compute_stats({"t2m": values})["t2m"]
    assert s["mean"] == pytest.approx(290, abs=0.05)
    assert s["std"] < 5


def test_precipitation_is_log_sqrt_transformed() -> None:
    s = compute_stats({"precip_mswep": np.array([0.0, 1.0, 4.0, 9.0, 16.0] * 20)})
    z = normalise(np.array([4.0]), "precip_mswep", s)
    expected = (np.log10(2.1) - s["precip_mswep"]["mean"]) / s["precip_mswep"]["std"]
    assert z[0] == pytest.approx(expected, rel=1e-5)


def test_target_round_trip_and_nan_kept() -> None:
    s = compute_stats({"smap": np.linspace(0.05, 0.45, 100)})
    v = np.array([0.1, np.nan, 0.3], dtype=np.float32)
    back = denormalise(normalise(v, "smap", s), "smap", s)
    assert np.isnan(back[1]) and np.allclose(back[[0, 2]], v[[0, 2]], atol=1e-6)


def test_assemble_inputs_fills_missing_with_zero_and_repeats_statics() -> None:
    forcing = {"t2m": np.array([[280.0, np.nan], [300.0, 290.0], [290.0, 285.0]])}
    static = {"sand": np.array([20.0, 60.0])}
    stats = compute_stats({**forcing, **static})
    x = assemble_inputs(forcing, static, ["t2m"], ["sand"], stats)
    assert x.shape == (2, 3, 2)
    assert x[1, 0, 0] == 0.0
    assert np.all(x[0, :, 1] == x[0, 0, 1]) and x[0, 0, 1] != x[1, 0, 1]
    with pytest.raises(FeatureError, match="d2m"):
        assemble_inputs(forcing, static, ["t2m", "d2m"], ["sand"], stats)


def test_stats_refuse_all_missing() -> None:
    with pytest.raises(FeatureError, match="no valid value"):
        compute_stats({"t2m": np.full(5, np.nan)})


def test_transforms_for_variables_outside_the_registry() -> None:
    rain = np.array([0.0, 1.0, 4.0, 9.0, 16.0] * 20)
    tr = {"APCP_FORA": "log_sqrt", "TMP_2_FORA": "none"}
    s = compute_stats({"APCP_FORA": rain, "TMP_2_FORA": np.linspace(260, 300, 50)}, tr)
    assert s["APCP_FORA"] == compute_stats({"precip_mswep": rain})["precip_mswep"]
    x = assemble_inputs({"APCP_FORA": rain[:, None]}, {}, ["APCP_FORA"], [], s, tr)
    assert np.allclose(
        x[0, :, 0], normalise(rain, "precip_mswep", {"precip_mswep": s["APCP_FORA"]})
    )
    with pytest.raises(FeatureError, match="cannot invert the log_sqrt"):
        denormalise(x[0, :, 0], "APCP_FORA", s, tr)
    with pytest.raises(FeatureError, match="no normalisation statistics for variable 'd2m'"):
        normalise(rain, "d2m", s)
    with pytest.raises(FeatureError, match="unknown transform"):
        compute_stats({"X": rain}, {"X": "log"})
