"""The temporal experiment, `gsm3-ops evaluate --model BUNDLE`, and bad input.

Same small world as tests/test_evaluation_experiments.py, scored against its in-situ sites
(two in West, one in East): too few for the stratified figure and the factor analysis,
which the report must list as skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gsm3_ops.config import load_settings
from gsm3_ops.evaluation.experiments import options_from_cli, run_experiment
from gsm3_ops.ops.deployment import Deployment
from tests.test_evaluation_experiments import evaluate, write_config

# Each model on its own paired days: the sparse SMAP reference shares few days with a month
# of in-situ data.
INSITU = ["--against", "insitu", "--min-pairs", "8", "--own-days", "--reference", "SMAP=cube:smap"]


@pytest.fixture(scope="module")
def temporal(world_site, tmp_path_factory):
    """The temporal experiment run from the command line."""
    tmp = tmp_path_factory.mktemp("temporal")
    config = write_config(world_site, tmp)
    out = tmp / "temporal"
    result = evaluate(config, out, "--experiment", "temporal", *INSITU)
    assert result.exit_code == 0, result.output
    return config, out


def test_temporal_trains_before_and_scores_the_test_period(temporal) -> None:
    _, out = temporal
    meta = json.loads((out / "evaluation.json").read_text())
    assert meta["period"] == ["2019-08-21", "2019-09-19"]  # training.test_start..test_end
    assert meta["folds"][0]["train"] == ["2019-06-21", "2019-08-20"]
    table = pd.read_csv(out / "table1.csv")
    assert list(table.columns) == ["model", "metric", "West", "East", "Global"]
    sites = table[(table["model"] == "GSM3") & (table["metric"] == "Sites")]
    assert sites[["West", "East", "Global"]].values.tolist() == [[2, 1, 3]]
    skipped = pd.read_csv(out / "skipped.csv")
    listed = set(zip(skipped["kind"], skipped["name"], strict=True))
    assert {
        ("figure", "stratified_r"),
        ("factors", "factor analysis"),
        ("region", "Sahara"),
    } <= listed
    text = (out / "report.md").read_text()
    assert "## Skipped" in text and "fewer than 20" in text  # the factor analysis' reason
    assert "each model's own" in text


def test_temporal_is_reproducible(temporal, tmp_path) -> None:
    config, out = temporal
    dep = Deployment(load_settings(config))
    opts = options_from_cli("insitu", min_pairs=8, references=["SMAP=cube:smap"], own_days=True)
    again = run_experiment(dep, "temporal", tmp_path / "again", opts, progress=False)
    first = pd.read_csv(out / "site_metrics.csv").set_index(["site", "model"])
    second = again.metrics.set_index(["site", "model"]).loc[first.index]
    for metric in ("bias", "rmse", "ubrmse", "r", "n"):
        np.testing.assert_allclose(second[metric], first[metric], rtol=1e-5, equal_nan=True)
    meta = json.loads((out / "evaluation.json").read_text())
    assert again.info["folds"][0]["bundle_id"] == meta["folds"][0]["bundle_id"]


def test_bundle_scores_like_the_experiment_that_trained_it(temporal, tmp_path) -> None:
    config, out = temporal
    bundle = out / "folds" / "temporal"
    result = evaluate(config, tmp_path / "model", "--model", str(bundle), *INSITU)
    assert result.exit_code == 0, result.output
    got = pd.read_csv(tmp_path / "model" / "site_metrics.csv").set_index(["site", "model"])
    want = pd.read_csv(out / "site_metrics.csv").set_index(["site", "model"]).loc[got.index]
    # Same bundle, same test period, same warm-up: the same predictions and scores.
    np.testing.assert_allclose(got["r"], want["r"], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got["rmse"], want["rmse"], rtol=1e-6, equal_nan=True)
    meta = json.loads((tmp_path / "model" / "evaluation.json").read_text())
    assert meta["experiment"] == "bundle" and meta["period"] == ["2019-08-21", "2019-09-19"]
    held = evaluate(config, tmp_path / "held", "--model", str(bundle), "--held-out-only")
    assert held.exit_code == 2 and "lists no held-out cells" in held.stderr


def test_bundle_inputs_missing_from_the_cube(world_site, temporal, tmp_path) -> None:
    config, out = temporal
    data = Path(load_settings(config).data_root)
    copy = tmp_path / "data"  # write_config's data root: it keeps this copy
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "cube.zarr" / "forcing" / "ssrd")  # a cube without solar radiation
    other = write_config(world_site, tmp_path)
    bundle = str(out / "folds" / "temporal")
    alone = evaluate(other, tmp_path / "alone", "--model", bundle, "--against", "insitu")
    assert alone.exit_code == 2
    assert "needs inputs missing from the cube" in alone.stderr and "ssrd" in alone.stderr
    result = evaluate(other, tmp_path / "refs", "--model", bundle, *INSITU)
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(tmp_path / "refs" / "skipped.csv")
    model = skipped[skipped["kind"] == "model"]
    assert list(model["name"]) == ["GSM3"] and "ssrd" in model["reason"].iloc[0]
    table = pd.read_csv(tmp_path / "refs" / "table1.csv")
    assert set(table["model"]) == {"SMAP"}  # the references are still scored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "leave-one-out"], "unknown experiment 'leave-one-out'"),
        ([], "give either an experiment or a model bundle"),
        (["--experiment", "temporal", "--model", "x"], "give either an experiment or a model"),
        (["--experiment", "temporal", "--against", "radar"], "--against 'radar'"),
        (["--experiment", "temporal", "--reference", "SMAP"], "not NAME=KIND:WHERE"),
        (["--experiment", "temporal", "--reference", "GSM3=cube:smap"], "not 'GSM3'"),
        (["--model", "no-such-bundle"], "bundle.json is missing"),
        (["--model", "b", "--start", "2019-02-30"], "--start '2019-02-30' is not a date"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(world_site, tmp_path, args, message) -> None:
    config = write_config(world_site, tmp_path, ingested=False)  # refused before any read
    result = evaluate(config, tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists()
