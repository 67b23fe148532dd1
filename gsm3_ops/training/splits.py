"""Spatial splits of locations into training and held-out sets."""

from __future__ import annotations

import numpy as np


def random_holdout(n_locations: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (n_locations,), True for held-out locations: a seeded random ``fraction``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng([seed, 7919])
    held = np.zeros(n_locations, dtype=bool)
    held[rng.permutation(n_locations)[: round(fraction * n_locations)]] = True
    return held


def kfold(n_locations: int, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each location, balanced and seeded."""
    if k < 2 or k > n_locations:
        raise ValueError(f"k-fold needs 2 <= k <= {n_locations} locations, got k={k}")
    rng = np.random.default_rng([seed, 104729])
    folds = np.empty(n_locations, dtype=np.int64)
    folds[rng.permutation(n_locations)] = np.arange(n_locations) % k
    return folds
