"""The folds of the GSM3 paper's three tests: which cells each fold trains without, which sites
it scores, and over which periods.

- ``random-kfold``: sites are dealt into k seeded folds; a fold trains without the cells of
  its sites (their SMAP and in-situ data) and scores them (spatial generalisation).
- ``continental``: one fold per configured region; it trains without every land cell of the
  region and scores the region's sites (generalisation to an unseen continent).
- ``temporal``: one fold; it trains on the period before the split date at every cell and
  scores every site after it (generalisation to unseen years).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gsm3_ops.config import BoxConfig
from gsm3_ops.evaluation.scores import EvaluationError
from gsm3_ops.regions import OTHER, region_of
from gsm3_ops.training.splits import kfold

EXPERIMENTS = ("random-kfold", "continental", "temporal")
Period = tuple[dt.date, dt.date]


@dataclass(frozen=True)
class Fold:
    """One training run of an experiment and the sites it scores.

    ``held`` is a boolean mask over the domain's land cells (True: not trained on);
    ``test`` a boolean mask over the site table's rows.
    """

    name: str
    held: np.ndarray
    test: np.ndarray
    train: Period
    score: Period


@dataclass(frozen=True)
class FoldPlan:
    """The folds, and what no fold scores (kind, name, reason rows for the report)."""

    folds: list[Fold]
    skipped: list[dict[str, str]]


def _held_cells(
    sites: pd.DataFrame, test: np.ndarray, cell_rows: np.ndarray, cell_cols: np.ndarray
) -> np.ndarray:
    """Land cells (global rows/cols) that hold one of the test sites."""
    keys = set(zip(sites["row"].to_numpy()[test], sites["col"].to_numpy()[test], strict=True))
    return np.array([(r, c) in keys for r, c in zip(cell_rows, cell_cols, strict=True)], bool)


def random_kfold(
    sites: pd.DataFrame, cells: tuple[np.ndarray, np.ndarray], k: int, seed: int, period: Period
) -> FoldPlan:
    """k seeded folds of the sites; each holds out the cells of its sites."""
    if not 2 <= k <= len(sites):
        raise EvaluationError(f"random-kfold needs 2 <= folds <= {len(sites)} sites, got {k}")
    fold_of = kfold(len(sites), k, seed)
    folds = []
    for i in range(k):
        test = fold_of == i
        held = _held_cells(sites, test, *cells)
        folds.append(Fold(f"fold{i + 1}", held, test, period, period))
    return FoldPlan(folds, [])


def continental(
    sites: pd.DataFrame,
    cells: tuple[np.ndarray, np.ndarray],
    cell_lonlat: tuple[np.ndarray, np.ndarray],
    regions: Mapping[str, BoxConfig],
    period: Period,
) -> FoldPlan:
    """One fold per configured region with sites; it holds out every land cell in the region."""
    if not regions:
        raise EvaluationError("the continental test needs configured regions (key 'regions')")
    cell_region = region_of(*cell_lonlat, regions)
    folds, skipped = [], []
    for name in regions:
        test = (sites["region"] == name).to_numpy()
        if not test.any():
            skipped.append(_skip("region", name, "no site in this region: no fold"))
            continue
        held = (cell_region == name) | _held_cells(sites, test, *cells)
        if held.all():
            skipped.append(
                _skip("fold", name, "the region covers every land cell: nothing left to train on")
            )
            continue
        folds.append(Fold(name, held, test, period, period))
    outside = sites.index[(sites["region"] == OTHER).to_numpy()]
    skipped += [
        _skip("site", s, "outside every configured region: never held out") for s in outside
    ]
    if not folds:
        raise EvaluationError(
            "the continental test found no region with sites; configure 'regions' that "
            "cover the domain's sites"
        )
    return FoldPlan(folds, skipped)


def temporal(
    sites: pd.DataFrame,
    n_cells: int,
    period: Period,
    split: dt.date | None,
    min_train_days: int,
) -> FoldPlan:
    """Train before ``split`` (default: the middle of ``period``), score from it on."""
    start, end = period
    split = split or start + dt.timedelta(days=((end - start).days + 1) // 2)
    if not start < split <= end:
        raise EvaluationError(f"temporal split {split} must lie after {start} and not after {end}")
    train = (start, split - dt.timedelta(days=1))
    if (train[1] - train[0]).days + 1 < min_train_days:
        raise EvaluationError(
            f"temporal split {split} leaves {(train[1] - train[0]).days + 1} training days, "
            f"fewer than the sequence length {min_train_days}; move the split later"
        )
    fold = Fold("temporal", np.zeros(n_cells, bool), np.ones(len(sites), bool), train, (split, end))
    return FoldPlan([fold], [])


def _skip(kind: str, name: str, reason: str) -> dict[str, str]:
    return {"kind": kind, "name": str(name), "model": "", "reason": reason}
