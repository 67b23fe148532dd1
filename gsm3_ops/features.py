"""Model inputs: normalisation statistics, input assembly and the NaN policy.

Statistics follow hydroDL: after the registry's input transform, the mean and standard
deviation of the values between the 10th and 90th percentiles. They are computed on training
data only and stored in the model bundle; inference reuses them. Inputs still missing after
normalisation become 0 (the training mean); targets stay NaN so the loss masks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

import numpy as np

from gsm3_ops import variables
from gsm3_ops.errors import InputError

Stats = dict[str, dict[str, float]]
# Variable name -> transform, for data outside the registry (e.g. a benchmark's NLDAS inputs).
Transforms = Mapping[str, variables.Transform]


class FeatureError(InputError, ValueError):
    """Inputs that cannot be assembled (missing variable, no valid data)."""


def apply_transform(
    values: np.ndarray, name: str, transforms: Transforms | None = None
) -> np.ndarray:
    """``values`` of variable ``name`` after its input transform: the one given in
    ``transforms`` when listed there, else the registry's."""
    if transforms is not None and name in transforms:
        kind = transforms[name]
        if kind not in get_args(variables.Transform):
            raise FeatureError(f"unknown transform {kind!r} for variable {name!r}")
        return variables.transform_values(values, kind)
    return variables.get(name).apply_transform(values)


def trimmed_stats(
    values: np.ndarray, name: str, transforms: Transforms | None = None
) -> dict[str, float]:
    """Mean and std of the 10-90 % trimmed, finite, transformed values of variable ``name``."""
    v = apply_transform(np.asarray(values, dtype=np.float64), name, transforms)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise FeatureError(f"variable {name!r} has no valid value to compute statistics from")
    lo, hi = np.percentile(v, [10, 90])
    kept = v[(v >= lo) & (v <= hi)]
    if kept.size == 0:  # too few values to trim
        kept = v
    std = float(kept.std())
    # A (near-)constant variable would blow up on division; keep it at scale 1.
    return {"mean": float(kept.mean()), "std": std if std > 1e-6 else 1.0}


def compute_stats(arrays: Mapping[str, np.ndarray], transforms: Transforms | None = None) -> Stats:
    """Statistics for each named array (any shape); compute them on training data only."""
    return {name: trimmed_stats(a, name, transforms) for name, a in arrays.items()}


def normalise(
    values: np.ndarray, name: str, stats: Stats, transforms: Transforms | None = None
) -> np.ndarray:
    """Transform and z-score ``values`` of variable ``name`` with ``stats`` (float32)."""
    if name not in stats:
        raise FeatureError(f"no normalisation statistics for variable {name!r}")
    s = stats[name]
    v = apply_transform(np.asarray(values, dtype=np.float32), name, transforms)
    return ((v - s["mean"]) / s["std"]).astype(np.float32)


def denormalise(
    values: np.ndarray, name: str, stats: Stats, transforms: Transforms | None = None
) -> np.ndarray:
    """Invert :func:`normalise` for an untransformed variable (the targets)."""
    kind = transforms[name] if transforms and name in transforms else variables.get(name).transform
    if kind != "none":
        raise FeatureError(f"cannot invert the {kind} transform of {name!r}")
    s = stats[name]
    return (np.asarray(values, dtype=np.float32) * s["std"] + s["mean"]).astype(np.float32)


def assemble_inputs(
    forcing: Mapping[str, np.ndarray],
    static: Mapping[str, np.ndarray],
    order_forcing: list[str],
    order_static: list[str],
    stats: Stats,
    transforms: Transforms | None = None,
) -> np.ndarray:
    """Model inputs (locations, time, n_in) from forcings (time, locations) and statics
    (locations,), normalised; statics are repeated along time; missing values become 0."""
    missing = [n for n in order_forcing if n not in forcing] + [
        n for n in order_static if n not in static
    ]
    if missing:
        raise FeatureError(f"inputs missing from the data: {', '.join(missing)}")
    n_time, n_loc = np.shape(forcing[order_forcing[0]])
    out = np.empty((n_loc, n_time, len(order_forcing) + len(order_static)), dtype=np.float32)
    for i, name in enumerate(order_forcing):
        out[:, :, i] = normalise(forcing[name], name, stats, transforms).T
    for j, name in enumerate(order_static):
        z = normalise(static[name], name, stats, transforms)
        out[:, :, len(order_forcing) + j] = z[:, None]
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def missing_input_mask(forcing: Mapping[str, np.ndarray], order_forcing: list[str]) -> np.ndarray:
    """(time, locations) True where any forcing was missing (and was filled with 0)."""
    return np.any([~np.isfinite(forcing[n]) for n in order_forcing], axis=0)
