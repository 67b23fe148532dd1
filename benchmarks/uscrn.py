"""In-situ-teacher skill on real data: a station-forced LSTM on NOAA USCRN stations.

Each station's own daily forcing (``gsm3_ops.sources.uscrn.station_forcing``: temperature,
precipitation, solar radiation, relative humidity) drives the GSM3 network (paper
hyperparameters); statics are the station's long-term climate, derived from that forcing
over the whole period (inputs only, never the target): mean temperature, the 5-95 %
temperature range, mean precipitation, mean solar radiation, mean humidity. The target is
``SOIL_MOISTURE_5_DAILY`` (m3/m3).

- default: 5-fold random spatial cross-validation over the fixture's 60 stations,
  2015-2023 (``splits.kfold`` over stations; statistics from each fold's training stations);
- ``--test-dir DIR``: train on every fixture station and score every daily01 station in DIR.

Each model predicts a station's whole series from a zero state; 2015 warms the state up
and 2016-01-01..2023-12-31 is scored (median over stations; p25 of R). Beside the LSTM,
an antecedent-precipitation-index (API) regression trained on the same stations:
``API_t = k API_{t-1} + P_t`` (missing rain counts as none), then least squares of soil
moisture on API and the same statics; ``k`` is chosen from a grid by the training stations'
least-squares error.

    python -m benchmarks.uscrn --json uscrn.json [--test-dir DIR]
"""

from __future__ import annotations

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
from gsm3_ops.features import Stats, assemble_inputs, compute_stats, denormalise, normalise
from gsm3_ops.sources.uscrn import TARGET, read_daily01, station_forcing
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.splits import kfold

START, END = pd.Timestamp("2015-01-01"), pd.Timestamp("2023-12-31")
SCORE_FROM = pd.Timestamp("2016-01-01")
FORCINGS = ["temperature", "precipitation", "solar_radiation", "relative_humidity"]
STATICS = ["mean_temperature", "temperature_range", "mean_precipitation", "mean_solar",
           "mean_humidity"]  # fmt: skip
TRANSFORMS = {n: "none" for n in [*FORCINGS, *STATICS]} | {
    "precipitation": "log_sqrt", "mean_precipitation": "log_sqrt", "insitu": "none",
}  # fmt: skip
EPOCHS = 4  # per fold model: 5 x 56 batches, about 25 minutes on 2 idle CPU cores
API_DECAYS = np.round(np.arange(0.80, 0.995, 0.01), 2)


class Stations:
    """Forcing (time, stations), target (time, stations) and statics (stations,)."""

    def __init__(self, names: list[str], forcing, target, static) -> None:
        self.names, self.forcing, self.target, self.static = names, forcing, target, static

    def take(self, idx: np.ndarray) -> Stations:
        return Stations(
            [self.names[i] for i in idx],
            {k: v[:, idx] for k, v in self.forcing.items()},
            self.target[:, idx],
            {k: v[idx] for k, v in self.static.items()},
        )


def load_stations(directory: Path) -> Stations:
    """Every ``CRND0103-*.txt`` under ``directory``, joined per station over 2015-2023."""
    paths = sorted(Path(directory).rglob("CRND0103-*.txt"))
    if not paths:
        raise SystemExit(f"no USCRN daily01 files (CRND0103-*.txt) under {directory}")
    frames: dict[str, list[pd.DataFrame]] = {}
    for path in paths:
        df = read_daily01(path)
        frames.setdefault(df.attrs["station"] or df.attrs["wbanno"], []).append(df)
    days = pd.date_range(START, END, freq="D")
    names = sorted(frames)
    forcing = {n: np.full((days.size, len(names)), np.nan, np.float32) for n in FORCINGS}
    target = np.full((days.size, len(names)), np.nan, np.float32)
    for j, name in enumerate(names):
        df = pd.concat(sorted(frames[name], key=lambda d: d.index[0])).sort_index()
        df = df[~df.index.duplicated(keep="last")].reindex(days)
        f = station_forcing(df)
        for n in FORCINGS:
            forcing[n][:, j] = f[n].to_numpy(np.float32)
        target[:, j] = df[TARGET].to_numpy(np.float32)
    t = forcing["temperature"]
    static = {
        "mean_temperature": np.nanmean(t, axis=0),
        "temperature_range": np.nanpercentile(t, 95, axis=0) - np.nanpercentile(t, 5, axis=0),
        "mean_precipitation": np.nanmean(forcing["precipitation"], axis=0),
        "mean_solar": np.nanmean(forcing["solar_radiation"], axis=0),
        "mean_humidity": np.nanmean(forcing["relative_humidity"], axis=0),
    }
    return Stations(names, forcing, target, static)


def _inputs(s: Stations, stats: Stats) -> np.ndarray:
    return assemble_inputs(s.forcing, s.static, FORCINGS, STATICS, stats, TRANSFORMS)


def fit_lstm(s: Stations, args, label: str):
    """Statistics from the training stations, then a trained station-forced network."""
    stats = compute_stats({**s.forcing, **s.static, "insitu": s.target}, TRANSFORMS)
    y = normalise(s.target, "insitu", stats, TRANSFORMS).T[:, :, None]
    data = TrainingData(_inputs(s, stats), y, np.ones(len(s.names), bool))
    cfg = training_config(args.epochs, args.seed, args.threads, max_iterations=args.max_iterations)
    net, info = train(data, spec_for(FORCINGS, STATICS, ["insitu"]), cfg, label, not args.quiet)
    return net, stats, info


def predict_lstm(net, stats: Stats, s: Stations) -> np.ndarray:
    """Soil moisture (time, stations) in m3/m3."""
    return denormalise(predict(net, _inputs(s, stats))[:, :, 0], "insitu", stats, TRANSFORMS)


def api(precip: np.ndarray, k: float) -> np.ndarray:
    """Antecedent precipitation index (time, stations); missing rain counts as none."""
    p = np.nan_to_num(precip, nan=0.0)
    out = np.empty_like(p)
    acc = np.zeros(p.shape[1], dtype=p.dtype)
    for t in range(p.shape[0]):
        acc = k * acc + p[t]
        out[t] = acc
    return out


def _design(s: Stations, k: float) -> np.ndarray:
    """(time, stations, features): 1, API, statics."""
    a = api(s.forcing["precipitation"], k)
    cols = [np.ones_like(a), a] + [np.broadcast_to(s.static[n], a.shape) for n in STATICS]
    return np.stack(cols, axis=-1)


def fit_baseline(s: Stations) -> tuple[float, np.ndarray]:
    """The API decay and regression coefficients with the least training error."""
    best = (np.inf, 0.0, np.zeros(0))
    ok = np.isfinite(s.target)
    for k in API_DECAYS:
        x = _design(s, k)[ok]
        coef, *_ = np.linalg.lstsq(x, s.target[ok], rcond=None)
        sse = float(np.sum((x @ coef - s.target[ok]) ** 2))
        if sse < best[0]:
            best = (sse, float(k), coef)
    return best[1], best[2]


def predict_baseline(model: tuple[float, np.ndarray], s: Stations) -> np.ndarray:
    k, coef = model
    return (_design(s, k) @ coef).astype(np.float32)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=EPOCHS, help="hydroDL epochs per model")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--test-dir", type=Path, default=None, help="score these stations instead")
    args = p.parse_args()
    t0 = time.perf_counter()
    stations = load_stations(fixtures_dir() / "uscrn_daily01")
    scored = slice((SCORE_FROM - START).days, None)
    runs = []
    if args.test_dir is None:
        n = len(stations.names)
        fold_of = kfold(n, args.folds, args.seed)
        lstm = np.full_like(stations.target, np.nan)
        base = np.full_like(stations.target, np.nan)
        for k in range(args.folds):
            tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
            train_s, test_s = stations.take(tr), stations.take(te)
            net, stats, info = fit_lstm(train_s, args, f"fold {k + 1}")
            runs.append({"model": f"fold {k + 1}", "test_stations": int(te.size), **info})
            lstm[:, te] = predict_lstm(net, stats, test_s)
            model = fit_baseline(train_s)
            runs[-1]["api_decay"] = model[0]
            base[:, te] = predict_baseline(model, test_s)
        obs, test_names, mode = stations.target, stations.names, f"{args.folds}-fold spatial CV"
    else:
        test_s = load_stations(args.test_dir)
        net, stats, info = fit_lstm(stations, args, "all stations")
        model = fit_baseline(stations)
        runs.append({"model": "all stations", "api_decay": model[0], **info})
        lstm, base = predict_lstm(net, stats, test_s), predict_baseline(model, test_s)
        obs, test_names, mode = (
            test_s.target,
            test_s.names,
            f"trained on fixtures, tested on {args.test_dir}",
        )
    result = {
        "lstm": score(lstm[scored], obs[scored]),
        "baseline": score(base[scored], obs[scored]),
        "mode": mode,
        "scored_period": [str(SCORE_FROM.date()), str(END.date())],
        "test_stations": test_names,
        "budget": {
            "epochs_per_model": args.epochs, "max_iterations": args.max_iterations,
            "folds": args.folds, "seed": args.seed,
        },
        "runs": runs,
    }  # fmt: skip
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
