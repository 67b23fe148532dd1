"""k-fold (no leakage between test sites, their cells and training), continental, temporal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from gsm3_ops.config import PAPER_REGIONS, BoxConfig, TrainingConfig
from gsm3_ops.regions import region_of
from gsm3_ops.training.splits import (
    SplitError,
    continental_folds,
    kfold,
    site_folds,
    temporal_split,
)


def test_kfold_is_balanced_seeded_and_checked() -> None:
    f = kfold(412, 5, seed=0)
    assert sorted(np.bincount(f)) == [82, 82, 82, 83, 83]
    assert np.array_equal(f, kfold(412, 5, seed=0)) and not np.array_equal(f, kfold(412, 5, 1))
    with pytest.raises(SplitError, match="k=1"):
        kfold(10, 1, 0)


@pytest.mark.parametrize("by", ["cells", "sites"])
def test_site_folds_leak_nothing(by: str) -> None:
    rng = np.random.default_rng(0)
    n_cells = 50
    site_cell = rng.integers(0, n_cells, 40)  # several sites share cells
    folds = site_folds(site_cell, n_cells, 5, seed=2, by=by)
    tested = np.zeros(site_cell.size, int)
    for f in folds:
        tested += f.test_sites
        # No training cell holds a test site, and no training site lies in a test cell.
        assert not f.train_cells[site_cell[f.test_sites]].any()
        assert not f.test_cells[site_cell[f.train_sites]].any()
        assert not (f.train_cells & f.test_cells).any()
        assert not (f.train_sites & f.test_sites).any()
        # Training sites sit in training cells only.
        assert f.train_cells[site_cell[f.train_sites]].all()
    assert np.array_equal(tested, np.ones(site_cell.size))  # every site tested exactly once
    if by == "cells":
        assert np.array_equal(sum(f.test_cells.astype(int) for f in folds), np.ones(n_cells))


def test_site_folds_check_inputs() -> None:
    with pytest.raises(SplitError, match=r"0\.\.4"):
        site_folds(np.array([0, 5]), 5, 2, 0)
    with pytest.raises(SplitError, match="'cells' or 'sites'"):
        site_folds(np.array([0, 1]), 5, 2, 0, by="random")


def test_continental_folds_use_the_papers_regions() -> None:
    regions = {k: BoxConfig(**v) for k, v in PAPER_REGIONS.items()}
    lon = np.array([-100.0, 10.0, 20.0, 135.0, 36.0, 25.0, -150.0, 100.0, -60.0])
    lat = np.array([40.0, 50.0, 10.0, -25.0, 0.0, -30.0, 65.0, 30.0, -10.0])
    names = region_of(lon, lat, regions)
    folds = continental_folds(names)
    assert list(folds) == ["CONUS", "Europe", "Africa_North", "Australia", "Africa_South",
                           "Alaska", "Asia"]  # fmt: skip
    # 0.0 N lies between the paper's two African bands (1.8..19.3 and -38.9..-22.0).
    assert not any(m[4] for m in folds.values()) and not any(m[8] for m in folds.values())
    assert folds["Africa_North"].tolist() == [False, False, True] + [False] * 6
    chosen = continental_folds(names, ["Europe", "Asia"])
    assert list(chosen) == ["Europe", "Asia"] and chosen["Asia"].sum() == 1
    with pytest.raises(SplitError, match="at least one region"):
        continental_folds(np.array(["Other", "Other"]))


def test_temporal_split_defaults_and_checks() -> None:
    cfg = TrainingConfig()
    assert (cfg.start, cfg.end) == (dt.date(2016, 4, 1), dt.date(2020, 12, 31))
    assert (cfg.test_start, cfg.test_end) == (dt.date(2015, 4, 1), dt.date(2016, 3, 31))
    days = np.arange("2015-01-01", "2021-03-01", dtype="datetime64[D]")
    train, test = temporal_split(days)
    assert test.sum() == 366 and days[test][0] == np.datetime64("2015-04-01")
    assert days[train][0] == np.datetime64("2016-04-01")
    assert days[train][-1] == np.datetime64("2020-12-31") and not (train & test).any()
    dates = [dt.date(2015, 4, 1) + dt.timedelta(days=i) for i in range(731)]
    a, b = temporal_split(dates, (dates[0], dates[365]), (dates[366], dates[-1]))
    assert a.sum() == 366 and b.sum() == 365
    with pytest.raises(SplitError, match="overlap"):
        temporal_split(dates, (dates[0], dates[400]), (dates[366], dates[-1]))
    with pytest.raises(SplitError, match="after it ends"):
        temporal_split(dates, (dates[10], dates[0]), (dates[366], dates[-1]))
