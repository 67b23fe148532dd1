"""Which DI kernel: forward fill with an age channel, or hydroDL's closed loop, on validation.

The choice of kernel is a design choice, so it is made without the test year: the CONUS
database's training year (2015-04..2016-03) only, a seeded 20 % of the cells held out. Both
kernels train on the other cells with the same budget, the same hydroDL set-up as
``conus_di`` (batch 100 x rho 30, Adadelta, plain z-scores) and one lag per window drawn from
1..3 days, and are scored on the held-out cells over the training year at a 2-day latency.

- ``forward_fill`` (``gsm3_ops.di``, what the product uses): the latest retrieval at least
  the lag old, carried forward, and its age.
- ``closed_loop`` (hydroDL's ``LstmCloseModel``): one extra input, the retrieval the lag ago
  where there is one, else the model's own output of the day before; run a day at a time
  (the fed-back output needs the step before), so it cannot use the fused LSTM kernel.

    python -m benchmarks.conus_di_kernels --json benchmarks/results/conus_di_kernels_seed0.json
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.common import fixtures_dir, parser, predict, spec_for, training_config, write
from benchmarks.conus_di import MAX_AGE
from benchmarks.conus_smap import (
    FORCINGS,
    PLAIN,
    STATICS,
    TARGET,
    TRAIN_YEAR,
    figures,
    load,
)
from gsm3_ops.di import DISpec, series_features
from gsm3_ops.features import assemble_inputs, compute_stats, denormalise, normalise
from gsm3_ops.model.network import GSM3Net
from gsm3_ops.training.sampling import BatchSampler, TrainingData, iterations_per_epoch
from gsm3_ops.training.splits import kfold
from gsm3_ops.training.trainer import train_member

LAGS = (1, 3)
VALIDATION_LAG = 2
EPOCHS = 10


def closed_loop(
    net: GSM3Net, x: torch.Tensor, obs: torch.Tensor, lag: torch.Tensor, train: bool
) -> torch.Tensor:
    """hydroDL's closed loop over (time, batch, n_in) inputs: day t also sees the retrieval of
    day t - lag (``obs``, (time, batch), NaN where none) or else its own output of day t - 1.
    Weight-drop masks are drawn once per call while training (``WeightDropLSTM``'s draw)."""
    lstm = net.lstm.lstm
    dropped = train and net.lstm.dropout > 0
    w = net.lstm.dropped_weights() if dropped else dict(lstm.named_parameters())
    n_time, batch = x.shape[:2]
    h = c = torch.zeros(batch, lstm.hidden_size)
    y_prev = torch.zeros(batch)
    outs = []
    for t in range(n_time):
        src = t - lag
        seen = obs[src.clamp(min=0), torch.arange(batch)]
        seen = torch.where((src >= 0) & ~torch.isnan(seen), seen, y_prev)
        xt = torch.relu(net.linear_in(torch.cat([x[t], seen[:, None]], dim=1)))
        # torch.nn.LSTM's cell, one day at a time (a module call per day costs a third more)
        gates = (
            xt @ w["weight_ih_l0"].T + w["bias_ih_l0"] + h @ w["weight_hh_l0"].T + w["bias_hh_l0"]
        )
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        y = net.linear_out(h)
        outs.append(y)
        y_prev = y[:, 0]
    return torch.stack(outs)


def train_closed_loop(data: TrainingData, obs: np.ndarray, cfg, seed: int) -> GSM3Net:
    """The closed-loop model on ``data`` (its inputs without DI channels) and the retrievals
    ``obs`` (locations, time): hydroDL's loop, the trainer's sampler, loss and optimiser."""
    from gsm3_ops.model.loss import masked_multitask_rmse
    from gsm3_ops.training.trainer import make_optimizer

    torch.manual_seed(seed)
    net = GSM3Net(data.x.shape[2] + 1, 1, 256, 0.5)
    net.train()
    sampler = BatchSampler(data, cfg.batch_size, cfg.seq_len, 0.0, seed)
    opt = make_optimizer(net, cfg)
    n_iter = cfg.epochs * iterations_per_epoch(*data.x.shape[:2], cfg.batch_size, cfg.seq_len)
    if cfg.max_iterations:
        n_iter = min(n_iter, cfg.max_iterations)
    x_all, y_all, o_all = (torch.from_numpy(a) for a in (data.x, data.y, obs))
    steps = torch.arange(cfg.seq_len)
    for _ in range(n_iter):
        locs, starts = sampler.draw()
        lags = torch.from_numpy(sampler.draw_lags(*LAGS))
        loc, t = torch.from_numpy(locs)[None, :], torch.from_numpy(starts)[None, :] + steps[:, None]
        # The windows' retrievals reach back `lag` days before each window.
        o_idx = (t - lags[None, :]).clamp(min=0)
        o = torch.where(t - lags[None, :] >= 0, o_all[loc, o_idx], torch.nan)
        pred = closed_loop(net, x_all[loc, t], o, torch.zeros_like(lags), train=True)
        loss = masked_multitask_rmse(pred, y_all[loc, t])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return net


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=EPOCHS, help="hydroDL epochs per kernel")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    d = load(fixtures_dir(), [TRAIN_YEAR])
    n_cells = d["lat"].size
    held = kfold(n_cells, 5, args.seed) == 0
    train_cells, val_cells = np.flatnonzero(~held), np.flatnonzero(held)
    raw = {n: d[n][:, train_cells] for n in [*FORCINGS, TARGET]}
    raw |= {n: d[n][train_cells] for n in STATICS}
    stats = compute_stats(raw, PLAIN)
    x = assemble_inputs({n: d[n] for n in FORCINGS}, {n: d[n] for n in STATICS}, FORCINGS,
                        STATICS, stats, PLAIN)  # fmt: skip
    z = normalise(d[TARGET], TARGET, stats, PLAIN).T  # (cells, days)
    data = TrainingData(x[train_cells], z[train_cells, :, None], np.zeros(train_cells.size, bool))
    obs = d[TARGET][:, val_cells]
    cfg = training_config(args.epochs, args.seed, args.threads, batch_size=100, seq_len=30,
                          max_iterations=args.max_iterations)  # fmt: skip
    scores, seconds = {}, {}

    t = time.perf_counter()
    spec = spec_for(FORCINGS, STATICS, [TARGET])
    spec.di = DISpec(TARGET, LAGS, MAX_AGE).to_json()
    r = train_member(data, spec, cfg, args.seed, progress=not args.quiet, label="forward fill")
    xv = np.concatenate([x, series_features(z, VALIDATION_LAG, MAX_AGE)], axis=-1)[val_cells]
    pred = predict(r.net, xv)[:, :, 0]
    scores["forward_fill"] = figures(denormalise(pred, TARGET, stats, PLAIN), obs)
    seconds["forward_fill"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    net = train_closed_loop(data, z[train_cells], cfg, args.seed)
    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x[val_cells].transpose(1, 0, 2)))
        ot = torch.from_numpy(np.ascontiguousarray(z[val_cells].T))
        lag = torch.full((val_cells.size,), VALIDATION_LAG)
        pred = closed_loop(net, xt, ot, lag, train=False)[:, :, 0].numpy()
    scores["closed_loop"] = figures(denormalise(pred, TARGET, stats, PLAIN), obs)
    seconds["closed_loop"] = round(time.perf_counter() - t, 1)

    result = {
        "validation": scores,
        "train_and_score_seconds": seconds,
        "scored": f"SMAP_AM 2015-04-01..2016-03-31 at {val_cells.size} held-out cells (fold 0 "
        f"of a seeded 5-fold split), latency {VALIDATION_LAG} days; no test-year data read",
        "budget": {
            "epochs": args.epochs,
            "lags": list(LAGS),
            "max_age": MAX_AGE,
            "max_iterations": args.max_iterations,
            "seed": args.seed,
        },
    }
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
