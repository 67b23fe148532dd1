"""SMAP-teacher skill on real data: SMAP L3 36 km AM soil moisture from NLDAS-2 forcing.

Data: ``hydroDL_CONUSv4f1`` (Fang et al. 2017): 412 EASE-Grid 2.0 36 km cells over CONUS,
7 daily NLDAS-2 forcings, 12 static attributes, SMAP 2015-04-01..2017-03-31. Each year
folder holds 412 rows (cells) x N columns (days) and runs 1 April..31 March.

- temporal: train on every cell in 2015-04-01..2016-03-31, test 2016-04-01..2017-03-31;
- spatial: 5-fold random split of the 412 cells (``splits.kfold``), each fold trained on the
  other cells in the training year and scored on its own cells over the same year
  (``spatial_test_year``: the same held-out cells in the test year, unseen in space and time).

Normalisation statistics come from each model's training cells and year only. A model
predicts the whole series (training year, then test year) from a zero state, as hydroDL
does, and is scored on SMAP in m3/m3 (median over cells; p25 of R). The paper's
hyperparameters are kept; the budget is ``--epochs`` hydroDL epochs per model (see
docs/model.md for why it is what it is).

    python -m benchmarks.conus_smap --json conus_smap.json [--report DIR]
    python -m benchmarks.conus_smap --setup fang2017 --json conus_smap_fang2017.json

``--setup fang2017`` is hydroDL's own set-up for this database (the run that saved the anchor
predictions in ``anchor_predictions/``): the same 19 inputs with plain z-scores (no
precipitation transform), batch 100 x rho 30, Adadelta, hydroDL's epoch rule (230 updates an
epoch here), 100 epochs, and the test year run from a zero state at 2016-04-01 as hydroDL's
test does. It trains the temporal model only, scores it after each stage of ``--curve``
(the learning curve: R against updates), and scores the three anchor files with the same
metric code in the same run.

``--report DIR`` also renders the per-cell metrics as the standard evaluation report
(docs/evaluation.md): the temporal and the spatial test, beside SMAP persistence.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    fixtures_dir,
    parser,
    predict,
    score,
    spec_for,
    train,
    training_config,
    write,
)
from gsm3_ops.config import PAPER_REGIONS, BoxConfig
from gsm3_ops.evaluation.metrics import paired_metrics
from gsm3_ops.evaluation.report import Report, report_from_site_metrics
from gsm3_ops.features import Stats, assemble_inputs, compute_stats, denormalise, normalise
from gsm3_ops.grid import M36
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.splits import kfold
from gsm3_ops.training.trainer import train_member

FORCINGS = ["APCP_FORA", "DLWRF_FORA", "DSWRF_FORA", "TMP_2_FORA", "SPFH_2_FORA",
            "VGRD_10_FORA", "UGRD_10_FORA"]  # fmt: skip
STATICS = ["Bulk", "Capa", "Clay", "NDVI", "Sand", "Silt", "flag_albedo", "flag_extraOrd",
           "flag_landcover", "flag_roughness", "flag_vegDense", "flag_waterbody"]  # fmt: skip
TARGET = "SMAP_AM"
# Precipitation gets the registry's transform for precipitation; nothing else is transformed.
TRANSFORMS = {name: "none" for name in [*FORCINGS, *STATICS, TARGET]} | {"APCP_FORA": "log_sqrt"}
PLAIN = {name: "none" for name in [*FORCINGS, *STATICS, TARGET]}  # hydroDL: z-scores only
TRAIN_YEAR, TEST_YEAR = 2015, 2016
EPOCHS = 4  # per model: 52 + 5 x 40 batches, about 20 minutes on 2 idle CPU cores (docs/model.md)
FANG_CURVE = (1, 5, 10, 25, 50, 100)  # hydroDL epochs at which the fang2017 model is scored
ANCHORS = {  # anchor_predictions/README.md
    "hydrodl_ep5": "CONUSv4f1_20160401_20170401_ep5_SMAP_AM.csv",
    "hydrodl_ep100": "CONUSv4f1_20160401_20170401_ep100_SMAP_AM.csv",
    "hydrodl_multi_ep100": "CONUSv4f1_multi_20160401_20170401_ep100_SMAP_AM.csv",
}
R_GOOD = 0.87  # Fang et al. 2017's threshold


class ConusDataError(ValueError):
    """A hydroDL CONUS file that is missing or has the wrong shape."""


def year_days(year: int) -> int:
    """Days in a hydroDL year folder (``year``-04-01 .. ``year + 1``-03-31)."""
    return (dt.date(year + 1, 4, 1) - dt.date(year, 4, 1)).days


def read_table(path: Path, n_cells: int, n_days: int | None) -> np.ndarray:
    """A cells x days (or cells x 1) CSV with -9999 for missing, as float32 with NaN."""
    if not path.is_file():
        raise ConusDataError(f"{path} is missing")
    a = pd.read_csv(path, header=None, dtype=np.float64).to_numpy(np.float32, copy=True)
    want = (n_cells, n_days if n_days is not None else 1)
    if a.shape != want:
        raise ConusDataError(
            f"{path} has {a.shape[0]} rows x {a.shape[1]} columns, expected {want[0]} cells "
            f"x {want[1]} {'days' if n_days else 'value'}"
        )
    a[a == -9999] = np.nan
    return a


def load(root: Path, years: list[int]) -> dict[str, np.ndarray]:
    """Forcings and SMAP (time, cells) over the consecutive ``years``, statics (cells,),
    and ``lat``/``lon`` (cells,)."""
    base = root / "hydroDL_CONUSv4f1" / "CONUSv4f1"
    crd = pd.read_csv(base / "crd.csv", header=None).to_numpy()
    n = crd.shape[0]
    out: dict[str, np.ndarray] = {"lat": crd[:, 0], "lon": crd[:, 1]}
    for name in [*FORCINGS, TARGET]:
        parts = [read_table(base / str(y) / f"{name}.csv", n, year_days(y)) for y in years]
        out[name] = np.concatenate(parts, axis=1).T
    for name in STATICS:
        out[name] = read_table(base / "const" / f"{name}.csv", n, None)[:, 0]
    return out


def inputs(
    d: dict[str, np.ndarray], cells: np.ndarray, days: slice, stats: Stats, transforms=TRANSFORMS
) -> np.ndarray:
    """Normalised model inputs (cells, days, 19)."""
    forcing = {n: d[n][days][:, cells] for n in FORCINGS}
    static = {n: d[n][cells] for n in STATICS}
    return assemble_inputs(forcing, static, FORCINGS, STATICS, stats, transforms)


def fit(d, cells, train_days: slice, args, label: str):
    """Statistics from the training cells and days, then a trained network."""
    raw = {n: d[n][train_days][:, cells] for n in [*FORCINGS, TARGET]}
    raw |= {n: d[n][cells] for n in STATICS}
    stats = compute_stats(raw, args.transforms)
    x = inputs(d, cells, train_days, stats, args.transforms)
    y = normalise(d[TARGET][train_days][:, cells], TARGET, stats, args.transforms).T[:, :, None]
    data = TrainingData(x, y, np.zeros(cells.size, bool))
    cfg = training_config(args.epochs, args.seed, args.threads, max_iterations=args.max_iterations)
    net, info = train(data, spec_for(FORCINGS, STATICS, [TARGET]), cfg, label, not args.quiet)
    return net, stats, info


def run_predict(net, d, cells, stats, transforms=TRANSFORMS) -> np.ndarray:
    """SMAP (time, cells) in m3/m3 over the whole loaded period."""
    z = predict(net, inputs(d, cells, slice(None), stats, transforms))[:, :, 0]
    return denormalise(z, TARGET, stats, transforms)


def render_report(
    out: Path, d: dict[str, np.ndarray], temporal: np.ndarray, spatial: np.ndarray, test: slice
) -> Report:
    """The test year's per-cell metrics of both models, and of yesterday's SMAP retrieval
    carried forward (persistence, a floor any model must clear), as the evaluation report."""
    obs = d[TARGET][test]
    carried = pd.DataFrame(d[TARGET]).ffill().shift(1).to_numpy()[test]
    metrics = {
        "LSTM temporal": paired_metrics(temporal, obs),
        "LSTM spatial": paired_metrics(spatial, obs),
        "SMAP persistence": paired_metrics(carried, obs),
    }
    ids = [f"cell{k:03d}" for k in range(d["lat"].size)]
    attrs = pd.DataFrame({n.lower(): d[n] for n in STATICS})
    regions = {k: BoxConfig(**v) for k, v in PAPER_REGIONS.items()}
    info = {"experiment": "conus_smap", "against": "SMAP L3 36 km AM", "period": "2016-04..2017-03"}
    return report_from_site_metrics(
        out, metrics, ids, d["lon"], d["lat"], regions, attrs, grid=M36, info=info
    )


def figures(pred: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    """The project's scores of (time, cells) arrays, and the share of cells with R > 0.87."""
    r = paired_metrics(pred, obs)["r"]
    r = r[np.isfinite(r)]
    return score(pred, obs) | {"share_r_gt_087": round(float(np.mean(r > R_GOOD)), 3)}


def anchors(root: Path, obs: np.ndarray) -> dict[str, dict[str, float]]:
    """hydroDL's saved test-year predictions (normalised units, cells x days), scored."""
    base = root / "hydroDL_CONUSv4f1"
    _, _, mean, std = read_table(base / "Statistics" / "SMAP_AM_stat.csv", 4, None)[:, 0]
    out = {}
    for name, file in ANCHORS.items():
        z = read_table(base / "anchor_predictions" / file, obs.shape[1], obs.shape[0])
        out[name] = figures(z.T * std + mean, obs)
    return out


def fang2017(args, d: dict[str, np.ndarray], t0: float) -> None:
    """hydroDL's set-up on this database, its learning curve, and the anchors beside it."""
    cells = np.arange(d["lat"].size)
    n_train = year_days(TRAIN_YEAR)
    train_days, test_days = slice(0, n_train), slice(n_train, None)
    raw = {n: d[n][train_days] for n in [*FORCINGS, TARGET]} | {n: d[n] for n in STATICS}
    stats = compute_stats(raw, PLAIN)
    forcing = {n: d[n][train_days] for n in FORCINGS}
    static = {n: d[n] for n in STATICS}
    x = assemble_inputs(forcing, static, FORCINGS, STATICS, stats, PLAIN)
    y = normalise(d[TARGET][train_days], TARGET, stats, PLAIN).T[:, :, None]
    data = TrainingData(x, y, np.zeros(cells.size, bool))
    test_x = assemble_inputs({n: d[n][test_days] for n in FORCINGS}, static, FORCINGS, STATICS,
                             stats, PLAIN)  # fmt: skip
    obs = d[TARGET][test_days]
    spec = spec_for(FORCINGS, STATICS, [TARGET])
    checkpoint = Path(tempfile.mkdtemp()) / "fang2017.ckpt"
    curve, info = [], {}
    for epochs in [e for e in args.curve if e <= args.epochs] or [args.epochs]:
        cfg = training_config(epochs, args.seed, args.threads, batch_size=100, seq_len=30,
                              max_iterations=args.max_iterations)  # fmt: skip
        r = train_member(data, spec, cfg, args.seed, progress=not args.quiet,
                         checkpoint=checkpoint, label=f"fang2017 ep{epochs}")  # fmt: skip
        pred = denormalise(predict(r.net, test_x)[:, :, 0], TARGET, stats, PLAIN)  # zero state
        curve.append({"epochs": epochs, "updates": r.iterations, **figures(pred, obs)})
        info = {"iterations": r.iterations, "seconds_last_stage": round(r.seconds, 1),
                "final_train_loss": float(np.mean(r.losses[-10:]))}  # fmt: skip
        print(json.dumps(curve[-1]), flush=True)
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    result = {
        "setup": "fang2017",
        "temporal": curve[-1],
        "learning_curve": curve,
        "anchors": anchors(fixtures_dir(), obs),
        "scored": "SMAP_AM 2016-04-01..2017-03-31, cells with >= 30 valid days, test year "
        "run from a zero state",
        "hyperparameters": {
            "batch_size": 100,
            "seq_len": 30,
            "optimizer": "adadelta",
            "hidden_size": spec.hidden_size,
            "dropout": spec.dropout,
            "epochs": args.epochs,
            "transforms": "none (z-scores)",
        },
        "budget": {"max_iterations": args.max_iterations, "seed": args.seed},
        "run": info,
    }
    write(args.json, result, t0)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--setup", choices=["paper", "fang2017"], default="paper")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"hydroDL epochs per model (paper: {EPOCHS}, fang2017: 100)")  # fmt: skip
    p.add_argument("--curve", type=lambda s: [int(v) for v in s.split(",")],
                   default=list(FANG_CURVE), help="fang2017: epochs at which to score")  # fmt: skip
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--report", type=Path, default=None, help="also write the evaluation report")
    p.add_argument("--precipitation", choices=["log_sqrt", "none"], default="log_sqrt",
                   help="paper set-up: precipitation's transform (none: z-score)")  # fmt: skip
    args = p.parse_args()
    args.transforms = TRANSFORMS if args.precipitation == "log_sqrt" else PLAIN
    t0 = time.perf_counter()
    if args.setup == "fang2017":
        args.epochs = args.epochs or 100
        fang2017(args, load(fixtures_dir(), [TRAIN_YEAR, TEST_YEAR]), t0)
        return
    args.epochs = args.epochs or EPOCHS
    d = load(fixtures_dir(), [TRAIN_YEAR, TEST_YEAR])
    n_cells = d["lat"].size
    n_train = year_days(TRAIN_YEAR)
    train_days, test_days = slice(0, n_train), slice(n_train, None)
    obs = d[TARGET]
    runs = []

    everywhere = np.arange(n_cells)
    net, stats, info = fit(d, everywhere, train_days, args, "temporal")
    runs.append({"model": "temporal", **info})
    temporal_pred = run_predict(net, d, everywhere, stats, args.transforms)
    temporal = score(temporal_pred[test_days], obs[test_days])

    fold_of = kfold(n_cells, args.folds, args.seed)
    spatial_pred = np.full_like(obs, np.nan)
    for k in range(args.folds):
        test = np.flatnonzero(fold_of == k)
        net, stats, info = fit(d, np.flatnonzero(fold_of != k), train_days, args, f"fold {k + 1}")
        runs.append({"model": f"spatial fold {k + 1}", "test_cells": int(test.size), **info})
        spatial_pred[:, test] = run_predict(net, d, test, stats, args.transforms)

    result = {
        "temporal": temporal,
        "spatial": score(spatial_pred[train_days], obs[train_days]),
        "spatial_test_year": score(spatial_pred[test_days], obs[test_days]),
        "periods": {
            "train": ["2015-04-01", "2016-03-31"],
            "temporal_test": ["2016-04-01", "2017-03-31"],
            "spatial_test": ["2015-04-01", "2016-03-31"],
        },
        "n_cells": int(n_cells),
        "smap_missing_share": round(float(np.isnan(obs).mean()), 3),
        "budget": {
            "epochs_per_model": args.epochs,
            "max_iterations": args.max_iterations,
            "folds": args.folds,
            "seed": args.seed,
        },
        "precipitation_transform": args.precipitation,
        "runs": runs,
        "anchor": "Fang et al. 2017: test RMSE < 0.035 and R > 0.87 over 75 % of CONUS, with a "
        "land-surface-model soil-moisture input that these data lack",
    }
    if args.report is not None:
        report = render_report(
            args.report, d, temporal_pred[test_days], spatial_pred[test_days], test_days
        )
        result["report"] = str(report.path / "report.md")
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
