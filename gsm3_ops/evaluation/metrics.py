"""Bias, RMSE, ubRMSE and Pearson R per location, on the paired valid mask.

A pair counts only where prediction and observation are both finite; a location with fewer
than ``min_pairs`` pairs gets NaN for every metric.
"""

from __future__ import annotations

import numpy as np


def paired_metrics(pred: np.ndarray, obs: np.ndarray, min_pairs: int = 30) -> dict[str, np.ndarray]:
    """Metrics per column of (time, locations) arrays: bias, rmse, ubrmse, r and n pairs."""
    pred = np.asarray(pred, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    if pred.shape != obs.shape:
        raise ValueError(f"prediction {pred.shape} and observation {obs.shape} differ in shape")
    valid = np.isfinite(pred) & np.isfinite(obs)
    n = valid.sum(axis=0)
    p = np.where(valid, pred, 0.0)
    o = np.where(valid, obs, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp, mo = p.sum(0) / n, o.sum(0) / n
        dp, do = np.where(valid, p - mp, 0.0), np.where(valid, o - mo, 0.0)
        bias = mp - mo
        rmse = np.sqrt(np.where(valid, (p - o) ** 2, 0.0).sum(0) / n)
        ubrmse = np.sqrt(np.where(valid, (dp - do) ** 2, 0.0).sum(0) / n)
        r = (dp * do).sum(0) / np.sqrt((dp**2).sum(0) * (do**2).sum(0))
    enough = n >= min_pairs
    out = {"bias": bias, "rmse": rmse, "ubrmse": ubrmse, "r": r}
    out = {k: np.where(enough, v, np.nan) for k, v in out.items()}
    out["n"] = n
    return out


def summary(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """Medians (and the 25th percentile of R) over locations with enough pairs."""
    ok = np.isfinite(metrics["r"])
    if not ok.any():
        return {"n_sites": 0}
    return {
        "median_r": float(np.median(metrics["r"][ok])),
        "p25_r": float(np.percentile(metrics["r"][ok], 25)),
        "median_rmse": float(np.median(metrics["rmse"][ok])),
        "median_ubrmse": float(np.median(metrics["ubrmse"][ok])),
        "median_bias": float(np.median(metrics["bias"][ok])),
        "n_sites": int(ok.sum()),
    }
