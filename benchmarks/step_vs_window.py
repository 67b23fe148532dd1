"""How far ``step`` mode (one LSTM step a day from a spun-up state) drifts from ``window`` mode
(the 365 days up to the day from a zero state), on real data.

Data: ``hydroDL_CONUSv4f1`` (412 SMAP 36 km cells over CONUS, NLDAS-2 forcing; year folders
run 1 April..31 March, files are cells x days; see ``benchmarks/conus_smap.py``). A quick
model is trained with the project's trainer (``train_ensemble``, the paper's hyperparameters,
``--members`` members of ``--max-iterations`` iterations each on the 2015 year; a documented
small budget, not a skilful model). Then, over the test year 2016-04-01..2017-03-31:

- ``step``: the state is spun up over the ``spinup_days - 1`` days before 2016-04-01 from a
  zero state (as a cold start does), then each day is one step from the previous day's state,
  rounded to the state store's precision after every day (float32, and bfloat16 as well);
- ``window``: each sampled day (every ``--every`` days) is the last output of a pass over the
  ``spinup_days`` days ending on it, from a zero state.

The first test day is the same computation in both modes; later days differ by what the
state remembers from before the window. Figures are absolute differences of the ensemble mean
SMAP (m3/m3, clipped to the product's range) over every cell and sampled day.

    python -m benchmarks.step_vs_window --json step_vs_window.json
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import fixtures_dir, parser, spec_for, training_config, write
from benchmarks.conus_smap import (
    FORCINGS,
    STATICS,
    TARGET,
    TEST_YEAR,
    TRAIN_YEAR,
    TRANSFORMS,
    inputs,
    load,
    year_days,
)
from gsm3_ops import variables
from gsm3_ops.features import compute_stats, denormalise, normalise
from gsm3_ops.inference.engine import Engine
from gsm3_ops.model.bundle import Bundle, load_bundle, save_bundle
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.trainer import train_ensemble

SPINUP = 365
MEMBERS = 2
MAX_ITERATIONS = 40  # per member: ~3 hydroDL epochs, minutes on 2 CPU cores
EVERY = 14  # window mode on every 14th test day (27 days); --every 1 for all 365


def train_bundle(d: dict[str, np.ndarray], args, out: Path) -> tuple[Bundle, dict]:
    """A quick ensemble trained on the 2015 year over every cell, saved to ``out``."""
    n_cells, train_days = d["lat"].size, slice(0, year_days(TRAIN_YEAR))
    cells = np.arange(n_cells)
    raw = {n: d[n][train_days] for n in [*FORCINGS, TARGET]} | {n: d[n] for n in STATICS}
    stats = compute_stats(raw, TRANSFORMS)
    x = inputs(d, cells, train_days, stats)
    y = normalise(d[TARGET][train_days], TARGET, stats, TRANSFORMS).T[:, :, None]
    spec = spec_for(FORCINGS, STATICS, [TARGET])
    spec.stats = stats
    cfg = training_config(
        10_000, args.seed, args.threads, members=args.members, max_iterations=args.max_iterations
    )
    t0 = time.perf_counter()
    results = train_ensemble(TrainingData(x, y, np.zeros(n_cells, bool)), spec, cfg, not args.quiet)
    info = {
        "members": args.members,
        "iterations_per_member": results[0].iterations,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "final_train_loss": [float(np.mean(r.losses[-10:])) for r in results],
        "train_period": ["2015-04-01", "2016-03-31"],
    }
    return load_bundle(save_bundle(out, spec, [r.net for r in results])), info


def soil_moisture(engine: Engine, out: np.ndarray) -> np.ndarray:
    """Ensemble-mean SMAP (m3/m3, clipped like the product) from normalised outputs
    (member, cells, 1)."""
    lo, hi = variables.PRODUCT_RANGE
    values = denormalise(out[..., 0], TARGET, engine.bundle.spec.stats, TRANSFORMS)
    return np.clip(values, lo, hi).mean(axis=0)


def step_series(engine: Engine, x: np.ndarray, first: int, n_days: int, dtype: str) -> np.ndarray:
    """(days, cells) from a cold start before ``first`` then one step a day."""
    _, state = engine.advance(x[:, first - (SPINUP - 1) : first], None, dtype)
    out = np.empty((n_days, x.shape[0]), np.float32)
    for k in range(n_days):
        o, state = engine.advance(x[:, first + k : first + k + 1], state, dtype)
        out[k] = soil_moisture(engine, o)
    return out


def window_days(engine: Engine, x: np.ndarray, days: np.ndarray) -> np.ndarray:
    """(len(days), cells): each day from a zero state over the SPINUP days ending on it;
    several days' windows run side by side as extra cells."""
    n_cells = x.shape[0]
    out = np.empty((len(days), n_cells), np.float32)
    group = max(1, 20_000 // n_cells)  # bound the stacked windows (~0.5 GB of inputs)
    for g in range(0, len(days), group):
        part = days[g : g + group]
        stacked = np.concatenate([x[:, t - SPINUP + 1 : t + 1] for t in part])
        o, _ = engine.advance(stacked, None)
        out[g : g + len(part)] = soil_moisture(engine, o).reshape(len(part), n_cells)
    return out


def diff_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """max, p99, median absolute difference (m3/m3)."""
    d = np.abs(a.astype(np.float64) - b)
    return {
        "max_abs_diff": float(d.max()),
        "p99_abs_diff": float(np.percentile(d, 99)),
        "median_abs_diff": float(np.median(d)),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--members", type=int, default=MEMBERS)
    p.add_argument("--every", type=int, default=EVERY, help="window mode on every Nth test day")
    p.add_argument("--bundle", type=Path, default=None, help="reuse (or keep) the trained model")
    p.set_defaults(max_iterations=MAX_ITERATIONS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    d = load(fixtures_dir(), [TRAIN_YEAR, TEST_YEAR])
    with tempfile.TemporaryDirectory() as tmp:
        where = args.bundle or Path(tmp) / "bundle"
        if (where / "bundle.json").is_file():
            bundle, training = load_bundle(where), {"reused": str(where)}
        else:
            bundle, training = train_bundle(d, args, where)
    engine = Engine(bundle, torch.device("cpu"))
    n_cells = d["lat"].size
    x = inputs(d, np.arange(n_cells), slice(None), bundle.spec.stats)  # 2015-04-01..2017-03-31
    first, n_test = year_days(TRAIN_YEAR), year_days(TEST_YEAR)  # 2016-04-01, 365 days
    t1 = time.perf_counter()
    step32 = step_series(engine, x, first, n_test, "float32")
    step16 = step_series(engine, x, first, n_test, "bfloat16")
    sampled = np.arange(0, n_test, args.every)
    window = window_days(engine, x, first + sampled)
    t2 = time.perf_counter()
    lags = {}  # the drift by how long the state has been stepped
    for lo, hi in ((0, 1), (1, 31), (31, 91), (91, 181), (181, n_test)):
        sel = (sampled >= lo) & (sampled < hi)
        if sel.any():
            lags[f"days_{lo}_{hi - 1}"] = diff_stats(step32[sampled[sel]], window[sel])
    result = {
        **diff_stats(step32[sampled], window),
        "spinup_days": SPINUP,
        "state_dtype": "float32",
        "bfloat16_state": diff_stats(step16[sampled], window),
        "bfloat16_vs_float32_state": diff_stats(step16, step32),
        "by_days_since_spinup": lags,
        "n_cells": int(n_cells),
        "test_days": int(n_test),
        "window_days_sampled": int(sampled.size),
        "test_period": ["2016-04-01", "2017-03-31"],
        "units": "m3/m3",
        "training": training,
        "inference_seconds": round(t2 - t1, 1),
    }
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
