"""Splits of locations and days into training and test sets: the GSM3 paper's three tests.

- random k-fold over locations (:func:`kfold`, :func:`site_folds`): a test fold's sites and
  the grid cells holding them are both kept out of training, so no SMAP or in-situ value of
  a test location is ever trained on;
- continental holdout (:func:`continental_folds`): one test mask per configured region (the
  paper's seven are ``gsm3_ops.config.PAPER_REGIONS``); regions of sites and cells come from
  ``gsm3_ops.regions.region_of``;
- temporal (:func:`temporal_split`): disjoint training and test periods, by default those of
  :class:`~gsm3_ops.config.TrainingConfig` (train 2016-04-01..2020-12-31, test
  2015-04-01..2016-03-31).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gsm3_ops.config import TrainingConfig
from gsm3_ops.errors import UsageError
from gsm3_ops.regions import OTHER

Period = tuple[dt.date, dt.date]


class SplitError(UsageError, ValueError):
    """A split that cannot be made (too few locations, overlapping periods, unknown region)."""


def random_holdout(n_locations: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (n_locations,), True for held-out locations: a seeded random ``fraction``."""
    if not 0 <= fraction < 1:
        raise SplitError(f"holdout fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng([seed, 7919])
    held = np.zeros(n_locations, dtype=bool)
    held[rng.permutation(n_locations)[: round(fraction * n_locations)]] = True
    return held


def kfold(n_locations: int, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each location, balanced (sizes differ by at most one), seeded."""
    if k < 2 or k > n_locations:
        raise SplitError(f"k-fold needs 2 <= k <= {n_locations} locations, got k={k}")
    rng = np.random.default_rng([seed, 104729])
    folds = np.empty(n_locations, dtype=np.int64)
    folds[rng.permutation(n_locations)] = np.arange(n_locations) % k
    return folds


@dataclass(frozen=True)
class LocationFold:
    """One fold of a k-fold split over grid cells and the in-situ sites inside them.

    ``test_cells`` and ``test_sites`` are what the fold scores; ``train_cells`` and
    ``train_sites`` what it may train on. A cell holding a test site is never a training
    cell, and a site in a test cell is never a training site.
    """

    test_cells: np.ndarray
    test_sites: np.ndarray
    train_cells: np.ndarray
    train_sites: np.ndarray


def site_folds(
    site_cell: np.ndarray, n_cells: int, k: int, seed: int, by: str = "cells"
) -> list[LocationFold]:
    """k folds over locations with nothing leaking between training and test.

    Parameters
    ----------
    site_cell
        Index (0..n_cells-1) of the grid cell holding each in-situ site.
    n_cells
        Number of grid cells.
    k, seed
        Number of folds and the seed of the random assignment.
    by
        ``"cells"``: cells are dealt into folds and each site goes with its cell (every
        location is tested once; the SMAP spatial test). ``"sites"``: sites are dealt into
        folds (the paper's in-situ test) and the cells holding a fold's sites are held out
        with them; cells without a site are never tested.

    Returns
    -------
    list of LocationFold
        One per fold, boolean masks over cells and sites.
    """
    site_cell = np.asarray(site_cell, dtype=np.int64)
    if site_cell.size and (site_cell.min() < 0 or site_cell.max() >= n_cells):
        raise SplitError(f"site cell indices must lie in 0..{n_cells - 1}")
    if by == "cells":
        cell_fold = kfold(n_cells, k, seed)
        site_fold = cell_fold[site_cell]
    elif by == "sites":
        site_fold = kfold(site_cell.size, k, seed)
        cell_fold = np.full(n_cells, -1, dtype=np.int64)
    else:
        raise SplitError(f"k-fold 'by' must be 'cells' or 'sites', got {by!r}")
    folds = []
    for i in range(k):
        test_sites = site_fold == i
        test_cells = cell_fold == i
        test_cells[site_cell[test_sites]] = True  # a test site's cell is a test location too
        # Sites sharing a cell with a test site leave training as well: same cell, same SMAP.
        blocked = test_cells[site_cell]
        folds.append(LocationFold(test_cells, test_sites, ~test_cells, ~blocked & ~test_sites))
    return folds


def continental_folds(
    regions: np.ndarray, names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Region name -> boolean test mask over locations, for the continental holdout.

    Parameters
    ----------
    regions
        Region name of each location (site or cell), from ``gsm3_ops.regions.region_of``.
    names
        Regions to hold out, in this order; default: every region present except ``"Other"``,
        in order of first appearance. A named region with no location gets an all-False mask.

    Returns
    -------
    dict
        For each region, True where the location lies in it (its test set); the training set
        of that fold is the complement.
    """
    regions = np.asarray(regions).astype(str)
    if names is None:
        _, first = np.unique(regions, return_index=True)
        names = [str(regions[i]) for i in sorted(first) if regions[i] != OTHER]
    if not names:
        raise SplitError("continental holdout needs at least one region with locations")
    if len(set(names)) != len(names):
        raise SplitError(f"region names repeat: {list(names)}")
    return {str(name): regions == name for name in names}


def temporal_split(
    days: Sequence[dt.date] | np.ndarray,
    train: Period | None = None,
    test: Period | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) masks over ``days`` for two disjoint, inclusive periods.

    Parameters
    ----------
    days
        Dates (``datetime.date``, ``numpy.datetime64`` or anything ``numpy`` can turn into
        ``datetime64[D]``).
    train, test
        (first, last) day of each period; defaults are ``TrainingConfig``'s
        ``start``..``end`` and ``test_start``..``test_end``.
    """
    cfg = TrainingConfig()
    train = train or (cfg.start, cfg.end)
    test = test or (cfg.test_start, cfg.test_end)
    for label, (a, b) in (("training", train), ("test", test)):
        if a > b:
            raise SplitError(f"{label} period starts {a} after it ends {b}")
    if train[0] <= test[1] and test[0] <= train[1]:
        raise SplitError(f"training period {train} and test period {test} overlap")
    d = np.asarray(days, dtype="datetime64[D]")

    def inside(period: Period) -> np.ndarray:
        lo, hi = (np.datetime64(p, "D") for p in period)
        return (d >= lo) & (d <= hi)

    return inside(train), inside(test)
