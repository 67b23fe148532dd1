"""Which site attributes explain the model's skill: a random forest predicting per-site R
from the static attributes and long-term means, with a gradient-boosting check beside it.

As in the GSM3 paper's factor analysis: an 80/20 seeded split of the sites, the forest's
correlation on the held-out 20 %, and the attributes ranked by permutation importance (the
drop in test R² when an attribute is shuffled) with the impurity importance beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

MIN_SITES = 20
N_REPEATS = 20  # shuffles per attribute for the permutation importance
TEST_SHARE = 0.2


class FactorsSkippedError(ValueError):
    """Too few sites or attributes for a factor analysis."""


@dataclass
class FactorResult:
    """The factor analysis: test correlations and the ranked importances."""

    ranking: pd.DataFrame  # feature, rf_permutation(_sd), rf_impurity, gb_permutation, gb_impurity
    rf_test_r: float
    gb_test_r: float
    n_train: int
    n_test: int
    seed: int

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "target": "per-site Pearson R",
            "split": f"{self.n_train} training / {self.n_test} test sites (seed {self.seed})",
            "random_forest_test_r": self.rf_test_r,
            "gradient_boosting_test_r": self.gb_test_r,
            "ranking": self.ranking.to_dict(orient="records"),
        }


def factor_analysis(
    table: pd.DataFrame, features: Sequence[str], target: str = "r", seed: int = 0
) -> FactorResult:
    """Fit both models on 80 % of the sites and rank ``features`` by importance.

    Parameters
    ----------
    table
        One row per site with the ``features`` columns and the ``target`` (per-site R).
    features
        Attribute columns; constant or all-missing ones are dropped.
    """
    cols = [
        f
        for f in features
        if f in table.columns
        and np.isfinite(table[f].to_numpy(float)).any()
        and np.nanstd(table[f].to_numpy(float)) > 0
    ]
    if not cols:
        raise FactorsSkippedError("no site attribute varies between sites")
    data = table[[*cols, target]].astype(float)
    data = data[np.isfinite(data[target])]
    # Trees need complete rows: fill a missing attribute with its median over the sites.
    data[cols] = data[cols].fillna(data[cols].median())
    if len(data) < MIN_SITES:
        raise FactorsSkippedError(f"{len(data)} sites with a valid R, fewer than {MIN_SITES}")
    x, y = data[cols].to_numpy(), data[target].to_numpy()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SHARE, random_state=seed)
    rf = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)
    gb = GradientBoostingRegressor(
        n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
    )
    out = {"feature": cols}
    test_r = {}
    for name, model in (("rf", rf), ("gb", gb)):
        model.fit(x_tr, y_tr)
        test_r[name] = _corr(model.predict(x_te), y_te)
        perm = permutation_importance(model, x_te, y_te, N_REPEATS, seed)
        out[f"{name}_permutation"] = perm.mean(axis=1)
        out[f"{name}_permutation_sd"] = perm.std(axis=1)
        out[f"{name}_impurity"] = model.feature_importances_
    ranking = pd.DataFrame(out).sort_values(
        ["rf_permutation", "rf_impurity"], ascending=False, ignore_index=True
    )
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    return FactorResult(ranking, test_r["rf"], test_r["gb"], len(y_tr), len(y_te), seed)


def permutation_importance(
    model, x: np.ndarray, y: np.ndarray, n_repeats: int, seed: int
) -> np.ndarray:
    """Drop in R² when one column of ``x`` is shuffled, (features, repeats).

    The definition of :func:`sklearn.inspection.permutation_importance`, computed with one
    ``predict`` call over all shuffled copies (a forest's per-call overhead dominates).
    """
    rng = np.random.default_rng([seed, 4241])
    n, k = x.shape
    copies = np.repeat(x[None, None], k, axis=0).repeat(n_repeats, axis=1)  # (k, rep, n, k)
    for j in range(k):
        for r in range(n_repeats):
            copies[j, r, :, j] = x[rng.permutation(n), j]
    pred = model.predict(copies.reshape(-1, k)).reshape(k, n_repeats, n)
    base = r2_score(y, model.predict(x))
    return np.array([[base - r2_score(y, pred[j, r]) for r in range(n_repeats)] for j in range(k)])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
