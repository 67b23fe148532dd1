"""The benchmarks' data handling on the real fixtures (training itself is tested elsewhere)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import conus_smap, uscrn


def test_conus_files_are_cells_by_days_and_years_run_april_to_march(fixtures) -> None:
    d = conus_smap.load(fixtures, [2015, 2016])
    assert conus_smap.year_days(2015) == 366 and conus_smap.year_days(2016) == 365
    assert d["SMAP_AM"].shape == (731, 412) and d["APCP_FORA"].shape == (731, 412)
    assert d["Sand"].shape == (412,) and d["lat"].shape == (412,)
    # About 58 % of SMAP is missing (no overpass or flagged); -9999 never survives.
    assert 0.5 < np.isnan(d["SMAP_AM"]).mean() < 0.65
    assert np.nanmin(d["SMAP_AM"]) >= 0 and np.nanmax(d["SMAP_AM"]) <= 1
    # Kelvin air temperature is warmer in July (day 91 of the April year) than in January.
    t = d["TMP_2_FORA"]
    assert 250 < np.nanmean(t) < 300 and t[91].mean() > t[280].mean() + 10


def test_hydrodl_anchor_predictions_score_as_their_readme_says(fixtures) -> None:
    """The ancestor's own test-year predictions, scored by the project's metric code."""
    d = conus_smap.load(fixtures, [2015, 2016])
    scores = conus_smap.anchors(fixtures, d["SMAP_AM"][366:])
    readme = {"hydrodl_ep5": (0.804, 0.042, 0.22), "hydrodl_ep100": (0.841, 0.033, 0.36),
              "hydrodl_multi_ep100": (0.855, 0.031, 0.42)}  # fmt: skip
    for name, (r, rmse, share) in readme.items():
        assert scores[name]["median_r"] == pytest.approx(r, abs=0.002), name
        assert scores[name]["median_rmse"] == pytest.approx(rmse, abs=0.001), name
        assert scores[name]["share_r_gt_087"] == pytest.approx(share, abs=0.01), name


def test_conus_results_render_as_the_evaluation_report(fixtures, tmp_path) -> None:
    d = conus_smap.load(fixtures, [2015, 2016])
    test = slice(366, None)
    obs = d["SMAP_AM"][test]
    rng = np.random.default_rng(0)
    good, noisy = obs + 0.01, obs + rng.normal(0, 0.05, obs.shape)  # stand-ins for the models
    report = conus_smap.render_report(tmp_path / "rep", d, good, noisy, test)
    table = pd.read_csv(report.tables["csv"])
    assert set(table["model"]) == {"LSTM temporal", "LSTM spatial", "SMAP persistence"}
    bias = table[(table["model"] == "LSTM temporal") & (table["metric"] == "Bias")]
    assert bias["CONUS"].iloc[0] == pytest.approx(0.01, abs=1e-6)
    assert (report.path / "report.md").is_file() and "map_r" in report.figures


def test_conus_reader_refuses_a_transposed_file(tmp_path) -> None:
    bad = tmp_path / "SMAP_AM.csv"
    np.savetxt(bad, np.zeros((366, 412)), delimiter=",")
    with pytest.raises(conus_smap.ConusDataError, match=r"SMAP_AM\.csv has 366 rows x 412"):
        conus_smap.read_table(bad, 412, 366)


def test_uscrn_stations_are_joined_over_the_years(fixtures) -> None:
    s = uscrn.load_stations(fixtures / "uscrn_daily01")
    assert len(s.names) == 60 and s.target.shape == (3287, 60)
    assert s.forcing["temperature"].shape == (3287, 60)
    assert 0.7 < np.isfinite(s.target).mean() < 1
    assert np.all(s.static["mean_temperature"] > 260) and np.all(s.static["mean_humidity"] < 100)
    part = s.take(np.array([2, 0]))
    assert part.names == [s.names[2], s.names[0]]
    assert np.array_equal(part.target[:, 1], s.target[:, 0], equal_nan=True)


def test_api_is_a_decaying_sum_of_rain() -> None:
    p = np.array([[10.0], [0.0], [np.nan], [5.0]])
    assert np.allclose(uscrn.api(p, 0.5)[:, 0], [10.0, 5.0, 2.5, 6.25])


@pytest.mark.parametrize("name", ["conus_di", "conus_di_kernels"])
def test_di_benchmarks_run_end_to_end_on_the_conus_database(fixtures, tmp_path, name) -> None:
    """Both DI benchmarks train (two updates), score and write their JSON: the scores are
    correlations over the cells they name, so a long run cannot fail at its end."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / f"{name}.json"
    env = os.environ | {"GSM3_FIXTURES": str(fixtures), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out), "--quiet",
           "--threads", "1", "--max-iterations", "2"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    scores = (
        [result["open_loop"], *result["di"].values()]
        if name == "conus_di"
        else list(result["validation"].values())
    )
    assert {"median_r", "median_rmse", "median_ubrmse", "n_sites"} <= scores[0].keys()
    assert all(-1 <= s["median_r"] <= 1 and s["n_sites"] > 50 for s in scores)
    if name == "conus_di":
        assert set(result["di"]) == {"lag1", "lag2", "lag3"}
