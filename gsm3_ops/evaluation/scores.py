"""Per-site scores of one or more models against one observation, and what was skipped.

A "site" is any evaluated location: an in-situ station or a grid cell. :class:`Scores` is
what experiments produce and what the report renders; :func:`scores_from_series` builds it
from time series, :func:`scores_from_metrics` from metrics computed elsewhere (for example
a benchmark), so that both render as the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gsm3_ops.errors import UsageError
from gsm3_ops.evaluation.metrics import paired_metrics
from gsm3_ops.regions import OTHER

METRICS = ("bias", "rmse", "ubrmse", "r")
SKIP_COLUMNS = ("kind", "name", "model", "reason")


class EvaluationError(UsageError, RuntimeError):
    """An evaluation that cannot produce any score, for a reason the user can fix."""


@dataclass
class Scores:
    """Per-site metrics of several models against one observation.

    Attributes
    ----------
    sites
        One row per evaluated site, indexed by site id: ``lon``, ``lat``, ``region`` and any
        attributes (statics, long-term means, ``fold``) used by figures and factor analysis.
    metrics
        Long table: ``site``, ``model``, ``bias``, ``rmse``, ``ubrmse``, ``r``, ``n`` (pairs).
        Metrics are NaN where a site was skipped for that model.
    skipped
        ``kind`` (site, region, model, fold, figure, factors), ``name``, ``model``, ``reason``.
    regions
        The configured region names, in order; sites outside all of them are ``Other``.
    models
        Model names in display order: the model first, then its references.
    info
        Free-form description (experiment, observation, period, min_pairs, ...).
    """

    sites: pd.DataFrame
    metrics: pd.DataFrame
    skipped: pd.DataFrame
    regions: list[str]
    models: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def of(self, model: str) -> pd.DataFrame:
        """Metrics of ``model`` indexed by site, joined with the site table."""
        m = self.metrics[self.metrics["model"] == model].set_index("site")
        return self.sites.join(m.drop(columns="model"), how="inner")

    def valid(self, model: str) -> pd.DataFrame:
        """Like :meth:`of`, only the sites with a finite R (enough pairs)."""
        m = self.of(model)
        return m[np.isfinite(m["r"].to_numpy(dtype=float))]

    def region_columns(self) -> list[str]:
        """Regions that hold at least one evaluated site, configured order, ``Other`` last."""
        present = set(self.sites["region"])
        cols = [r for r in self.regions if r in present]
        return cols + ([OTHER] if OTHER in present and OTHER not in cols else [])

    def add_skip(self, kind: str, name: str, reason: str, model: str = "") -> None:
        """Record something left out of the scores, with the reason."""
        row = pd.DataFrame([{"kind": kind, "name": name, "model": model, "reason": reason}])
        self.skipped = pd.concat([self.skipped, row], ignore_index=True)


def empty_skips() -> pd.DataFrame:
    """An empty skip table."""
    return pd.DataFrame({c: pd.Series(dtype=str) for c in SKIP_COLUMNS})


def skips(rows: Sequence[Mapping[str, str]]) -> pd.DataFrame:
    """A skip table from ``{"kind", "name", "model", "reason"}`` rows."""
    table = pd.DataFrame(list(rows), columns=list(SKIP_COLUMNS)).fillna("")
    return table if len(table) else empty_skips()


def scores_from_series(
    obs: np.ndarray,
    preds: Mapping[str, np.ndarray],
    sites: pd.DataFrame,
    regions: Sequence[str],
    min_pairs: int = 30,
    same_days: bool = True,
    info: Mapping[str, Any] | None = None,
) -> Scores:
    """Score each model's (time, sites) series against the observations ``obs``.

    Parameters
    ----------
    obs, preds
        (time, sites) arrays, NaN where missing; ``preds`` maps model name to its series.
    sites
        Site table indexed by id with ``lon``, ``lat``, ``region`` (one row per column).
    regions
        Configured region names in order.
    min_pairs
        Fewest paired days for a site to be scored.
    same_days
        Score every model on the days where the observation and all models are present
        (a fair comparison); otherwise each model on its own paired days.
    """
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != len(sites):
        raise ValueError(f"observations {obs.shape} do not match {len(sites)} sites")
    if not preds:
        raise EvaluationError("no model or reference to score")
    arrays = {name: np.asarray(p, dtype=np.float64) for name, p in preds.items()}
    common = np.isfinite(obs)
    for name, p in arrays.items():
        if p.shape != obs.shape:
            raise ValueError(f"{name}: series {p.shape} do not match observations {obs.shape}")
        common &= np.isfinite(p)
    metrics = {}
    for name, p in arrays.items():
        o = np.where(common, obs, np.nan) if same_days and len(arrays) > 1 else obs
        metrics[name] = paired_metrics(p, o, min_pairs=min_pairs)
    extra = {"min_pairs": min_pairs, "same_days": bool(same_days and len(arrays) > 1)}
    return scores_from_metrics(metrics, sites, regions, min_pairs, {**extra, **(info or {})})


def scores_from_metrics(
    metrics: Mapping[str, Mapping[str, np.ndarray]],
    sites: pd.DataFrame,
    regions: Sequence[str],
    min_pairs: int = 30,
    info: Mapping[str, Any] | None = None,
) -> Scores:
    """Scores from per-site metrics computed elsewhere (e.g. :func:`paired_metrics` output).

    Parameters
    ----------
    metrics
        Model name -> ``{"bias", "rmse", "ubrmse", "r", "n"}`` arrays, one value per site row.
    sites
        Site table indexed by id with ``lon`` and ``lat``; ``region`` is added from the
        configured boxes by the caller (:func:`gsm3_ops.regions.region_of`) when absent.
    regions
        Configured region names in order (a region without sites is listed as skipped).
    min_pairs
        The minimum number of pairs the metrics were computed with (for the skip reasons).
    """
    for column in ("lon", "lat", "region"):
        if column not in sites.columns:
            raise ValueError(f"the site table needs a {column!r} column")
    sites = sites.copy()
    sites.index = sites.index.astype(str)
    sites.index.name = "site"
    rows, skipped = [], []
    for model, m in metrics.items():
        missing = [k for k in (*METRICS, "n") if k not in m]
        if missing:
            raise ValueError(f"metrics of {model!r} lack {', '.join(missing)}")
        table = pd.DataFrame({k: np.asarray(m[k], dtype=float) for k in (*METRICS, "n")})
        if len(table) != len(sites):
            raise ValueError(f"metrics of {model!r} have {len(table)} sites, not {len(sites)}")
        table.insert(0, "model", model)
        table.insert(0, "site", sites.index.to_numpy())
        rows.append(table)
        for site, n, r in zip(sites.index, table["n"], table["r"], strict=True):
            if np.isfinite(r):
                continue
            # The count is in site_metrics.csv (column n); a shared reason groups in the report.
            reason = (
                f"fewer than {min_pairs} paired days (min_pairs)"
                if n < min_pairs
                else "a constant series: R undefined"
            )
            skipped.append({"kind": "site", "name": site, "model": model, "reason": reason})
    scores = Scores(
        sites=sites,
        metrics=pd.concat(rows, ignore_index=True),
        skipped=skips(skipped),
        regions=list(regions),
        models=list(metrics),
        info=dict(info or {}),
    )
    _skip_empty_regions(scores)
    return scores


def _skip_empty_regions(scores: Scores) -> None:
    """List configured regions without sites, and regions where a model scored no site."""
    present = set(scores.sites["region"])
    for region in scores.regions:
        if region not in present:
            scores.add_skip("region", region, "no evaluated site lies in this region")
    for model in scores.models:
        valid = set(scores.valid(model)["region"])
        for region in scores.region_columns():
            if region not in valid:
                scores.add_skip("region", region, "no site with enough paired days", model)
