"""`gsm3-ops evaluate --experiment random-kfold|continental` on the session's small world.

The domain (the 1 x 1 degree coastal window near Lamu, Kenya, of tests/world_site.py, read
through the real sources from its ingested cube) is split into two configured regions, West
and East, each holding in-situ sites, and a third region (Sahara) that holds no site; the
window's southern row of cells lies outside every region. The model is scored against the
synthetic truth at every land cell, with the cube's SMAP as a reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
from typer.testing import CliRunner

from gsm3_ops.cli import app
from tests.world_site import WorldSite

runner = CliRunner()

# The training period starts one warm-up (inference.spinup_days) after the archive's first
# day: random-kfold and continental score the training period itself, after a warm-up.
TINY_EVAL = {
    "model": {"hidden_size": 8},
    "training": {
        "start": "2019-06-21", "end": "2019-08-20", "test_start": "2019-08-21",
        "test_end": "2019-09-19", "seq_len": 20, "batch_size": 8, "members": 1,
        "max_iterations": 2, "optimizer": "adam", "learning_rate": 0.01, "seed": 3,
    },
    "inference": {"spinup_days": 20},  # tile_size stays the ingested cube's
    "product": {"start": "2020-01-01"},
    # The window's cells span lon 40.005..41.032, lat -2.507..-1.518; its ISMN sites lie at
    # (40.10, -2.44) and (40.38, -1.52) in West, (41.03, -1.80) in East. The southern row
    # (lat -2.507) is in neither: cells outside every region.
    "regions": {
        "West": {"lon_min": 40.0, "lat_min": -2.47, "lon_max": 40.5, "lat_max": -1.5},
        "East": {"lon_min": 40.5, "lat_min": -2.47, "lon_max": 41.1, "lat_max": -1.5},
        "Sahara": {"lon_min": 0.0, "lat_min": 20.0, "lon_max": 10.0, "lat_max": 30.0},
    },
}  # fmt: skip
FIGURES = ("box_r", "box_rmse", "map_r", "map_rmse", "stratified_r", "factors")


def write_config(site: WorldSite, tmp: Path, ingested: bool = True) -> Path:
    """The tiny evaluation configuration as ``tmp/eval.yaml``; its data root ``tmp/data`` is
    a copy of the session's ingested one (unless ``ingested`` is False, or it exists)."""
    return site.config(tmp, ingested=ingested, name="eval.yaml", **TINY_EVAL)


def evaluate(config: Path, out: Path, *args: str):
    """Run ``gsm3-ops evaluate`` and return the CLI result."""
    return runner.invoke(
        app, ["evaluate", "--config", str(config), "--out", str(out), "--quiet", *args]
    )


@pytest.fixture(scope="module")
def config(world_site, tmp_path_factory) -> Path:
    return write_config(world_site, tmp_path_factory.mktemp("eval"))


def _check_report(out: Path, columns: list[str]) -> pd.DataFrame:
    """Every report file is there, Table 1 has the layout, the figures are real images."""
    for name in ("report.md", "table1.md", "table1.csv", "table1.json", "site_metrics.csv",
                 "skipped.csv", "evaluation.json", "factors.json", "config.yaml"):  # fmt: skip
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "table1.csv")
    assert list(table.columns) == ["model", "metric", *columns]
    assert set(table["model"]) == {"GSM3", "SMAP"}
    assert list(table[table["model"] == "GSM3"]["metric"]) == [
        "Bias", "RMSE", "ubRMSE", "Corr", "Sites"
    ]  # fmt: skip
    for name in FIGURES:
        image = mpimg.imread(out / f"{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 500, name
    text = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"({name}.png)" in text
    factors = json.loads((out / "factors.json").read_text())
    assert len(factors["ranking"]) >= 10 and -1 <= factors["random_forest_test_r"] <= 1
    return pd.read_csv(out / "skipped.csv")


def test_random_kfold_from_one_command(config, tmp_path) -> None:
    out = tmp_path / "kfold"
    args = ["--experiment", "random-kfold", "--against", "truth", "--folds", "2"]
    result = evaluate(config, out, *args, "--min-pairs", "20", "--reference", "SMAP=cube:smap")
    assert result.exit_code == 0, result.output
    assert "report:" in result.stdout
    skipped = _check_report(out, ["West", "East", "Other", "Global"])
    assert ("region", "Sahara") in set(zip(skipped["kind"], skipped["name"], strict=True))
    meta = json.loads((out / "evaluation.json").read_text())
    assert [f["fold"] for f in meta["folds"]] == ["fold1", "fold2"]
    assert sum(f["scored_sites"] for f in meta["folds"]) == meta["n_sites"]  # each cell once
    sites = pd.read_csv(out / "site_metrics.csv")
    gsm3 = sites[sites["model"] == "GSM3"]
    assert set(gsm3["fold"]) == {"fold1", "fold2"} and gsm3["site"].is_unique
    for f in meta["folds"]:
        assert (Path(f["bundle"]) / "bundle.json").is_file()  # each fold's model is kept


def test_continental_holds_out_each_region(config, tmp_path) -> None:
    out = tmp_path / "continental"
    args = ["--experiment", "continental", "--against", "truth", "--min-pairs", "20"]
    result = evaluate(config, out, *args, "--reference", "SMAP=cube:smap")
    assert result.exit_code == 0, result.output
    skipped = _check_report(out, ["West", "East", "Global"])
    meta = json.loads((out / "evaluation.json").read_text())
    assert [f["fold"] for f in meta["folds"]] == ["West", "East"]
    sahara = skipped[skipped["name"] == "Sahara"]
    assert list(sahara["reason"]) == ["no site in this region: no fold"]
    outside = skipped[skipped["reason"].str.contains("outside every configured region")]
    assert len(outside) > 0 and outside["name"].str.startswith("cell_").all()
    sites = pd.read_csv(out / "site_metrics.csv")
    gsm3 = sites[sites["model"] == "GSM3"]
    assert (gsm3["fold"] == gsm3["region"]).all()  # each region scored by its own fold
