"""Scores, Table 1, figures, factor analysis and the report, without training a model.

Region medians are checked against per-site metrics recomputed here with scipy; the
benchmark path (per-site metrics rendered as a report) runs on the real hydroDL CONUS
SMAP fixture.
"""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gsm3_ops.config import PAPER_REGIONS, BoxConfig
from gsm3_ops.evaluation.factors import FactorsSkippedError, factor_analysis
from gsm3_ops.evaluation.metrics import paired_metrics
from gsm3_ops.evaluation.report import report_from_site_metrics, write_report
from gsm3_ops.evaluation.scores import scores_from_series
from gsm3_ops.evaluation.tables import table1, write_tables
from gsm3_ops.grid import M36
from gsm3_ops.regions import region_of

REGIONS = {
    "North": BoxConfig(lon_min=30, lat_min=0, lon_max=40, lat_max=10),
    "South": BoxConfig(lon_min=30, lat_min=-10, lon_max=40, lat_max=0),
    "Empty": BoxConfig(lon_min=-10, lat_min=50, lon_max=0, lat_max=60),
}


def _world(n_sites: int = 60, n_days: int = 300, seed: int = 1):
    """Sites in North, South and outside (Other), an observation, a model and a reference
    with their own gaps; site skill depends on an attribute so the factors can find it."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(30, 45, n_sites)  # lon > 40: outside every region
    lat = rng.uniform(-9, 9, n_sites)
    attrs = pd.DataFrame(
        {
            "aspect_cos": rng.uniform(-1, 1, n_sites),
            "smap_mean": rng.uniform(0.1, 0.4, n_sites),
            "noise_a": rng.normal(size=n_sites),
            "noise_b": rng.normal(size=n_sites),
        }
    )
    signal = (
        0.1
        + 0.05 * np.sin(np.arange(n_days) / 20.0)[:, None]
        + rng.normal(0, 0.03, (n_days, n_sites))
    )
    error_sd = 0.005 + 0.06 * (attrs["smap_mean"].to_numpy() - 0.1)  # wetter: worse
    model = signal + rng.normal(0, 1, signal.shape) * error_sd + 0.01
    reference = signal + rng.normal(0, 0.02, signal.shape)
    obs = signal.copy()
    obs[rng.random(obs.shape) < 0.2] = np.nan
    reference[rng.random(obs.shape) < 0.6] = np.nan  # a sparse, SMAP-like reference
    obs[25:, 0] = np.nan  # site 0: too few pairs
    ids = [f"S{k:03d}" for k in range(n_sites)]
    sites = pd.DataFrame(
        {"lon": lon, "lat": lat, "region": region_of(lon, lat, REGIONS)},
        index=pd.Index(ids, name="site"),
    ).join(attrs.set_index(pd.Index(ids, name="site")))
    return sites, obs, {"GSM3": model, "SMAP": reference}


def _scipy_metrics(p: np.ndarray, o: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(p) & np.isfinite(o)
    p, o = p[ok], o[ok]
    return {
        "bias": np.mean(p) - np.mean(o),
        "rmse": np.sqrt(np.mean((p - o) ** 2)),
        "ubrmse": np.std(p - o),
        "r": stats.pearsonr(p, o).statistic,
        "n": ok.sum(),
    }


@pytest.fixture(scope="module")
def world():
    return _world()


def test_table1_is_median_per_region_of_independent_site_metrics(world) -> None:
    sites, obs, preds = world
    scores = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30, same_days=False)
    table = table1(scores, "GSM3")
    assert list(table.index) == ["Bias", "RMSE", "ubRMSE", "Corr", "Sites"]
    assert list(table.columns) == ["North", "South", "Other", "Global"]
    per_site = pd.DataFrame(
        [_scipy_metrics(preds["GSM3"][:, k], obs[:, k]) for k in range(len(sites))],
        index=sites.index,
    )
    ok = per_site["n"] >= 30
    for column in table.columns:
        in_col = ok & ((sites["region"] == column) | (column == "Global"))
        for row, key in {"Bias": "bias", "RMSE": "rmse", "ubRMSE": "ubrmse", "Corr": "r"}.items():
            assert table.loc[row, column] == pytest.approx(
                np.median(per_site.loc[in_col, key]), abs=1e-12
            ), (row, column)
        assert table.loc["Sites", column] == in_col.sum()


def test_same_days_scores_every_model_on_the_common_pairs(world) -> None:
    sites, obs, preds = world
    same = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30, same_days=True)
    own = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30, same_days=False)
    common = (np.isfinite(obs) & np.isfinite(preds["SMAP"])).sum(axis=0)
    for model in ("GSM3", "SMAP"):
        np.testing.assert_array_equal(same.of(model)["n"].to_numpy(), common)
    assert (own.of("GSM3")["n"].to_numpy() > common).all()  # the model has every day
    assert same.info["same_days"] and not own.info["same_days"]


def test_too_few_pairs_and_empty_regions_are_listed_as_skipped(world) -> None:
    sites, obs, preds = world
    scores = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30, same_days=False)
    site0 = scores.skipped[(scores.skipped["kind"] == "site") & (scores.skipped["name"] == "S000")]
    assert set(site0["model"]) == {"GSM3", "SMAP"}
    assert site0["reason"].str.contains("fewer than 30 paired days").all()
    assert np.isnan(scores.of("GSM3").loc["S000", "r"])  # kept in the table, not dropped
    empty = scores.skipped[(scores.skipped["kind"] == "region")]
    assert list(empty["name"]) == ["Empty"]
    assert "no evaluated site" in empty["reason"].iloc[0]


def test_tables_are_written_as_markdown_csv_and_json(world, tmp_path) -> None:
    sites, obs, preds = world
    scores = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30)
    tables = {m: table1(scores, m) for m in scores.models}
    paths = write_tables(tables, tmp_path, "m3 m-3")
    md = paths["md"].read_text()
    assert "### GSM3" in md and "### SMAP" in md
    assert "|  | North | South | Other | Global |" in md
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == ["model", "metric", "North", "South", "Other", "Global"]
    rows = ["Bias", "RMSE", "ubRMSE", "Corr", "Sites"]
    assert list(csv[csv["model"] == "GSM3"]["metric"]) == rows
    doc = json.loads(paths["json"].read_text())
    assert doc["models"]["SMAP"]["Corr"]["Global"] == pytest.approx(
        tables["SMAP"].loc["Corr", "Global"]
    )


def test_factor_analysis_ranks_the_attribute_that_drives_r(world) -> None:
    sites, obs, preds = world
    scores = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30, same_days=False)
    features = ["aspect_cos", "smap_mean", "noise_a", "noise_b"]
    result = factor_analysis(scores.valid("GSM3"), features, seed=0)
    assert result.ranking["feature"].iloc[0] == "smap_mean"
    assert result.rf_test_r > 0.7 and result.gb_test_r > 0.7
    assert result.n_train + result.n_test == len(scores.valid("GSM3"))
    assert result.n_test == pytest.approx(0.2 * len(scores.valid("GSM3")), abs=1)
    assert set(result.ranking.columns) >= {
        "rank", "rf_permutation", "rf_impurity", "gb_permutation", "gb_impurity"
    }  # fmt: skip
    with pytest.raises(FactorsSkippedError, match="fewer than 20"):
        factor_analysis(scores.valid("GSM3").head(10), features)


def test_report_has_tables_figures_factors_and_skips(world, tmp_path) -> None:
    sites, obs, preds = world
    info = {"experiment": "unit", "against": "insitu", "units": "m3 m-3",
            "attributes": ["aspect_cos", "smap_mean", "noise_a", "noise_b"]}  # fmt: skip
    scores = scores_from_series(obs, preds, sites, list(REGIONS), min_pairs=30, info=info)
    report = write_report(scores, tmp_path / "rep")
    for name in ("box_r", "box_rmse", "map_r", "map_rmse", "stratified_r", "factors"):
        image = mpimg.imread(report.figures[name])
        assert image.shape[0] > 300 and image.shape[1] > 500, name
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Table 1" in text and "| Corr |" in text and "## Factor analysis" in text
    assert "Empty" in text and "fewer than 30 paired days" in text
    site_csv = pd.read_csv(tmp_path / "rep" / "site_metrics.csv")
    assert set(site_csv["model"]) == {"GSM3", "SMAP"} and len(site_csv) == 2 * len(sites)
    skipped = pd.read_csv(tmp_path / "rep" / "skipped.csv")
    assert {"site", "region"} <= set(skipped["kind"])


# ------------------------------------------- a benchmark's metrics as the same report


def _conus(fixtures):
    root = fixtures / "hydroDL_CONUSv4f1" / "CONUSv4f1"
    crd = np.loadtxt(root / "crd.csv", delimiter=",")
    smap = np.loadtxt(root / "2015" / "SMAP_AM.csv", delimiter=",")  # cells x days
    smap[smap == -9999] = np.nan
    attrs = {}
    for name in ("Sand", "Clay", "Silt", "NDVI", "Bulk"):
        v = np.loadtxt(root / "const" / f"{name}.csv", delimiter=",").ravel()
        attrs[name.lower()] = np.where(v == -9999, np.nan, v)
    return crd[:, 0], crd[:, 1], smap.T, pd.DataFrame(attrs)


def test_per_site_metrics_render_as_the_same_report(fixtures, tmp_path) -> None:
    lat, lon, obs, attrs = _conus(fixtures)
    assert obs.shape[1] == 412 == len(attrs)
    # A "model": the last SMAP retrieval carried forward (persistence), scored like a benchmark.
    carried = pd.DataFrame(obs).ffill().shift(1).to_numpy()
    metrics = {"persistence": paired_metrics(carried, obs, min_pairs=30)}
    regions = {k: BoxConfig(**v) for k, v in PAPER_REGIONS.items()}
    ids = [f"cell{k:03d}" for k in range(412)]
    report = report_from_site_metrics(
        tmp_path / "conus", metrics, ids, lon, lat, regions, attributes=attrs, grid=M36,
        info={"experiment": "conus_smap", "against": "smap"},
    )  # fmt: skip
    table = pd.read_csv(report.tables["csv"])
    assert list(table.columns) == ["model", "metric", "CONUS", "Global"]
    n_valid = int(np.isfinite(metrics["persistence"]["r"]).sum())
    assert table.set_index("metric").loc["Sites", "Global"] == n_valid > 300
    assert {"box_r", "box_rmse", "map_r", "map_rmse", "factors"} <= set(report.figures)
    skipped = report.skipped
    fig6 = skipped[(skipped["kind"] == "figure") & (skipped["name"] == "stratified_r")]
    assert "aspect_cos" in fig6["reason"].iloc[0]  # no aspect attribute: listed, not dropped
    assert set(skipped[skipped["kind"] == "region"]["name"]) == set(PAPER_REGIONS) - {"CONUS"}
    assert report.factors is not None and set(report.factors.ranking["feature"]) <= set(attrs)
