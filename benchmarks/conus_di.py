"""Data integration on real data: the CONUS test year at SMAP latencies of 1, 2 and 3 days.

Data: ``hydroDL_CONUSv4f1`` (as ``benchmarks.conus_smap``): 412 EASE-Grid 2.0 36 km cells,
7 NLDAS-2 forcings, 12 statics, SMAP L3 AM 2015-04-01..2017-03-31. Train on every cell in
the first year, test on the second.

Two models trained the same way in the same run, hydroDL's set-up for this database (the
``--setup fang2017`` of ``conus_smap``: plain z-scores, batch 100 x rho 30, Adadelta,
hydroDL's epoch rule): the open-loop model, and the DI model (``gsm3_ops.di``: the latest
SMAP retrieval at least ``lag`` days old, carried forward, with its age), trained with one
lag per window drawn from 1..3 days. Each model predicts the test year from a zero state at
2016-04-01 (as hydroDL's test does); the DI model once per latency, seeing the retrievals
(of both years) at least that many days old. Beside them, SMAP persistence at each latency
(the carried retrieval itself, where there is one): the floor a DI model must clear.

Both models are scored after each stage of ``--curve`` (epochs), so the JSON also says how
skill grows with training.

    python -m benchmarks.conus_di --json benchmarks/results/conus_di.json
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import fixtures_dir, parser, predict, spec_for, training_config, write
from benchmarks.conus_smap import (
    FORCINGS,
    PLAIN,
    STATICS,
    TARGET,
    TEST_YEAR,
    TRAIN_YEAR,
    figures,
    load,
    year_days,
)
from gsm3_ops.di import DISpec, series_features
from gsm3_ops.features import assemble_inputs, compute_stats, denormalise, normalise
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.trainer import train_member

LATENCIES = (1, 2, 3)
MAX_AGE = 30  # days: an older retrieval counts as none
EPOCHS = 50  # per model: both fit in 60 minutes on 2 CPU cores
CURVE = (10, 25, 50)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=EPOCHS, help="hydroDL epochs per model")
    p.add_argument("--curve", type=lambda s: [int(v) for v in s.split(",")],
                   default=list(CURVE), help="epochs at which to score both models")  # fmt: skip
    args = p.parse_args()
    t0 = time.perf_counter()
    d = load(fixtures_dir(), [TRAIN_YEAR, TEST_YEAR])
    n_train = year_days(TRAIN_YEAR)
    train_days, test_days = slice(0, n_train), slice(n_train, None)
    raw = {n: d[n][train_days] for n in [*FORCINGS, TARGET]} | {n: d[n] for n in STATICS}
    stats = compute_stats(raw, PLAIN)
    static = {n: d[n] for n in STATICS}
    x_all = assemble_inputs({n: d[n] for n in FORCINGS}, static, FORCINGS, STATICS, stats, PLAIN)
    z_all = normalise(d[TARGET], TARGET, stats, PLAIN).T  # (cells, days), both years
    data = TrainingData(
        x_all[:, train_days], z_all[:, train_days, None], np.zeros(len(z_all), bool)
    )
    obs = d[TARGET][test_days]
    di = DISpec(TARGET, (min(LATENCIES), max(LATENCIES)), MAX_AGE)
    specs = {
        "open_loop": spec_for(FORCINGS, STATICS, [TARGET]),
        "di": spec_for(FORCINGS, STATICS, [TARGET]),
    }
    specs["di"].di = di.to_json()
    test_x = {
        lag: np.concatenate([x_all, series_features(z_all, lag, MAX_AGE)], axis=-1)[:, test_days]
        for lag in LATENCIES
    }

    def skill(z: np.ndarray) -> dict[str, float]:
        return figures(denormalise(z, TARGET, stats, PLAIN), obs)

    curve: dict[str, list] = {"open_loop": [], "di": []}
    runs = {}
    work = Path(tempfile.mkdtemp())
    for name, spec in specs.items():
        for epochs in [e for e in args.curve if e <= args.epochs] or [args.epochs]:
            cfg = training_config(epochs, args.seed, args.threads, batch_size=100, seq_len=30,
                                  max_iterations=args.max_iterations)  # fmt: skip
            r = train_member(data, spec, cfg, args.seed, progress=not args.quiet,
                             checkpoint=work / f"{name}.ckpt",
                             label=f"{name} ep{epochs}")  # fmt: skip
            if name == "open_loop":
                row = skill(predict(r.net, x_all[:, test_days])[:, :, 0])
            else:
                row = {
                    f"lag{lag}": skill(predict(r.net, test_x[lag])[:, :, 0]) for lag in LATENCIES
                }
            curve[name].append({"epochs": epochs, "updates": r.iterations, **row})
            runs[name] = {"iterations": r.iterations, "seconds_last_stage": round(r.seconds, 1),
                          "final_train_loss": float(np.mean(r.losses[-10:]))}  # fmt: skip
            print(json.dumps({name: curve[name][-1]}), flush=True)
    shutil.rmtree(work, ignore_errors=True)

    persistence = {}
    for lag in LATENCIES:
        carried = series_features(z_all, lag, MAX_AGE)[:, test_days]
        z = np.where(carried[..., 1] < 1, carried[..., 0], np.nan).T
        persistence[f"lag{lag}"] = skill(z)
    open_loop, di_last = curve["open_loop"][-1], curve["di"][-1]
    result = {
        "open_loop": {k: v for k, v in open_loop.items() if k not in ("epochs", "updates")},
        "di": {f"lag{lag}": di_last[f"lag{lag}"] for lag in LATENCIES},
        "di_gain_median_r": {
            f"lag{lag}": round(di_last[f"lag{lag}"]["median_r"] - open_loop["median_r"], 3)
            for lag in LATENCIES
        },
        "smap_persistence": persistence,
        "learning_curve": curve,
        "scored": "SMAP_AM 2016-04-01..2017-03-31, cells with >= 30 valid days, each test "
        "year run from a zero state; DI inputs from retrievals at least `lag` days old",
        "di_spec": di.to_json(),
        "hyperparameters": {
            "batch_size": 100,
            "seq_len": 30,
            "optimizer": "adadelta",
            "epochs": args.epochs,
            "transforms": "none (z-scores)",
        },
        "budget": {"max_iterations": args.max_iterations, "seed": args.seed},
        "runs": runs,
    }
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
