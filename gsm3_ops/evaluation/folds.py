"""The folds of the GSM3 paper's three tests: which cells each fold trains without, which sites
it scores, and over which periods. The splits themselves are :mod:`gsm3_ops.training.splits`.

- ``random-kfold``: seeded k-fold over the evaluated locations (``splits.site_folds``: by
  sites against in-situ data, by cells against SMAP or the truth); a fold trains without
  its test cells, so no value of a test location is trained on (spatial generalisation).
- ``continental``: one fold per configured region (``splits.continental_folds``); it trains
  without every land cell of the region and scores the region's sites.
- ``temporal``: one fold; it trains on the training period at every cell and scores every
  site over the disjoint test period (``training.test_start..test_end``).
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
from gsm3_ops.training.splits import continental_folds, site_folds, temporal_split

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
    """The folds, and what no fold scores (kind, name, model, reason rows for the report)."""

    folds: list[Fold]
    skipped: list[dict[str, str]]


def site_cells(sites: pd.DataFrame, cell_rows: np.ndarray, cell_cols: np.ndarray) -> np.ndarray:
    """Index of each site's land cell in (``cell_rows``, ``cell_cols``), -1 when not a land cell."""
    index = {(int(r), int(c)): k for k, (r, c) in enumerate(zip(cell_rows, cell_cols, strict=True))}
    rows, cols = sites["row"].to_numpy(), sites["col"].to_numpy()
    return np.array([index.get((int(r), int(c)), -1) for r, c in zip(rows, cols, strict=True)])


def random_kfold(
    sites: pd.DataFrame,
    cells: tuple[np.ndarray, np.ndarray],
    k: int,
    seed: int,
    period: Period,
    by: str,
) -> FoldPlan:
    """k seeded folds of the sites (``by="sites"``) or of the cells (``by="cells"``)."""
    where = site_cells(sites, *cells)
    on_land = where >= 0
    skipped = [
        _skip("site", s, "its cell is not a land cell of the domain: never held out")
        for s in sites.index[~on_land]
    ]
    if not 2 <= k <= int(on_land.sum()):
        raise EvaluationError(
            f"random-kfold needs 2 <= folds <= {int(on_land.sum())} sites, got {k}"
        )
    folds = []
    for i, f in enumerate(site_folds(where[on_land], cells[0].size, k, seed, by=by)):
        test = np.zeros(len(sites), bool)
        test[on_land] = f.test_sites
        folds.append(Fold(f"fold{i + 1}", f.test_cells, test, period, period))
    return FoldPlan(folds, skipped)


def continental(
    sites: pd.DataFrame,
    cells: tuple[np.ndarray, np.ndarray],
    cell_lonlat: tuple[np.ndarray, np.ndarray],
    regions: Mapping[str, BoxConfig],
    period: Period,
) -> FoldPlan:
    """One fold per configured region with sites; it holds out every land cell in the region
    (and the cells of the region's sites)."""
    if not regions:
        raise EvaluationError("the continental test needs configured regions (key 'regions')")
    names = list(regions)
    site_masks = continental_folds(sites["region"].to_numpy(), names)
    cell_masks = continental_folds(region_of(*cell_lonlat, regions), names)
    where = site_cells(sites, *cells)
    folds, skipped = [], []
    for name in names:
        test = site_masks[name]
        if not test.any():
            skipped.append(_skip("region", name, "no site in this region: no fold"))
            continue
        held = cell_masks[name].copy()
        held[where[test & (where >= 0)]] = True
        if held.all():
            reason = "the region covers every land cell: nothing left to train on"
            skipped.append(_skip("fold", name, reason))
            continue
        folds.append(Fold(name, held, test, period, period))
    skipped += [
        _skip("site", s, "outside every configured region: never held out")
        for s in sites.index[(sites["region"] == OTHER).to_numpy()]
    ]
    if not folds:
        raise EvaluationError(
            "the continental test found no region with sites; configure 'regions' that "
            "cover the domain's sites"
        )
    return FoldPlan(folds, skipped)


def temporal(sites: pd.DataFrame, n_cells: int, train: Period, test: Period) -> FoldPlan:
    """Train over ``train`` at every cell, score every site over the disjoint ``test``."""
    days = pd.date_range(min(train[0], test[0]), max(train[1], test[1]), freq="D")
    try:
        temporal_split(days.values, train, test)  # checks order and overlap
    except ValueError as exc:
        raise EvaluationError(f"temporal test: {exc}") from None
    fold = Fold("temporal", np.zeros(n_cells, bool), np.ones(len(sites), bool), train, test)
    return FoldPlan([fold], [])


def _skip(kind: str, name: str, reason: str) -> dict[str, str]:
    return {"kind": kind, "name": str(name), "model": "", "reason": reason}
