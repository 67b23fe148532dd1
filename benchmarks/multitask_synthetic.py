"""Multitask vs single-teacher models on the synthetic world, scored against its hidden truth.

The GSM3 paper's claim: a model that learns from SMAP (everywhere, biased, damped, gappy)
and from in-situ sites (accurate, sparse) at once beats a model that learns from either
alone. Four models with the same architecture, hyperparameters, seed and iteration budget
(``--models`` runs a subset):

- ``insitu_only``: trained at the in-situ sites on the in-situ target (in-situ head scored);
- ``smap_only``: trained at grid cells on the SMAP target (SMAP head scored);
- ``multitask``: cells with SMAP and sites with in-situ + their cell's SMAP, a quarter of
  each batch from sites, separate heads (in-situ head scored: the product target);
- ``multitask_shared``: the same data with the paper's shared head (``model.heads: shared``,
  the default): one output compared with both teachers, in-situ values on SMAP's scale.

The demo window (East Africa) is split once: a seeded 20 % of land cells (and every site in
them) is held out from every model. Training runs on 2017-01-01..2019-12-31; each
model predicts 2019-01-01..2020-12-31 from a zero state at the held-out cells and 2020 is
scored against the truth (medians over cells). Normalisation statistics come from each
model's own training locations.

``--holdout-box LON0,LAT0,LON1,LAT1`` holds out every land cell whose centre lies in the box
instead (the paper's continental holdout in small: no model sees any SMAP or in-situ value
of that region, the product's situation in data-poor regions).

    python -m benchmarks.multitask_synthetic --json multitask_synthetic.json
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np

from benchmarks.common import parser, predict, score, spec_for, train, training_config, write
from gsm3_ops.features import assemble_inputs, compute_stats, denormalise, normalise
from gsm3_ops.grid import get_grid
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.splits import random_holdout
from gsm3_ops.variables import feature_set

BOX = (34.5, -4.5, 40.5, 0.5)  # the demo profile's region
TRAIN = (dt.date(2017, 1, 1), dt.date(2019, 12, 31))
PREDICT = (dt.date(2019, 1, 1), dt.date(2020, 12, 31))  # 2019 warms up, 2020 is scored
ITERATIONS = 100  # batches per model: 4 x 100, about 22 minutes on 2 idle CPU cores
TARGETS = ["smap", "insitu"]
MODELS = ("multitask", "multitask_shared", "insitu_only", "smap_only")


def _series(src, grid, win, period, rows, cols):
    """Forcings (time, cells) and statics (cells,) at (rows, cols)."""
    forcings, statics = (list(v) for v in feature_set("gsm3"))
    f = src.forcing(grid, win, *period)
    forcing = {n: f[n].values[:, rows, cols] for n in forcings}
    st = src.static(grid, win)
    static = {n: st[n].values[rows, cols] for n in statics}
    return forcing, static, forcings, statics


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--iterations", type=int, default=ITERATIONS, help="batches per model")
    p.add_argument("--holdout", type=float, default=0.2, help="share of land cells held out")
    p.add_argument("--holdout-box", default=None, help="lon0,lat0,lon1,lat1: hold out a region")
    p.add_argument("--models", default=",".join(MODELS), help="comma list, default: all four")
    args = p.parse_args()
    t0 = time.perf_counter()
    src, grid = SyntheticSource(seed=42), get_grid("M09")
    win = grid.window_from_bbox(*BOX)
    rows, cols = np.nonzero(grid.land_mask(win))
    if args.holdout_box:
        lon0, lat0, lon1, lat1 = (float(v) for v in args.holdout_box.split(","))
        lon, lat = (a[rows, cols] for a in grid.lonlat(win))
        held = (lon >= lon0) & (lon <= lon1) & (lat >= lat0) & (lat <= lat1)
        if not 0 < held.sum() < rows.size:
            raise SystemExit(f"--holdout-box {args.holdout_box} holds out {held.sum()} cells")
    else:
        held = random_holdout(rows.size, args.holdout, args.seed)
    tr_r, tr_c = rows[~held], cols[~held]

    # Training data: cells, and the sites inside training cells (sites in held-out cells
    # are never seen by any model).
    forcing, static, forcings, statics = _series(src, grid, win, TRAIN, tr_r, tr_c)
    smap = src.smap(grid, win, *TRAIN).values[:, tr_r, tr_c]
    sites = src.sites(grid, win)
    where = {(r, c): k for k, (r, c) in enumerate(zip(tr_r, tr_c, strict=True))}
    keys = zip(sites["row"] - win.row0, sites["col"] - win.col0, strict=True)
    site_rows = [(s, where[(r, c)]) for s, (r, c) in enumerate(keys) if (r, c) in where]
    s_idx = np.array([s for s, _ in site_rows], dtype=np.int64)
    s_cell = np.array([c for _, c in site_rows], dtype=np.int64)
    insitu = src.insitu(grid, win, *TRAIN).values[s_idx].T  # (time, sites)

    def dataset(use_cells: bool, use_sites: bool, with_smap: bool, with_insitu: bool, shared: bool):
        locs = np.r_[np.arange(tr_r.size) if use_cells else [], s_cell if use_sites else []]
        locs = locs.astype(np.int64)
        raw = {n: v[:, locs] for n, v in forcing.items()} | {n: v[locs] for n, v in static.items()}
        if with_smap:
            raw["smap"] = smap[:, locs]
        if with_insitu:
            raw["insitu"] = insitu
        stats = compute_stats(raw)
        if shared:  # one output on one scale for both teachers: SMAP's (training/dataset.py)
            stats["insitu"] = stats["smap"]
        fl = {n: v[:, locs] for n, v in forcing.items()}
        x = assemble_inputs(fl, {n: v[locs] for n, v in static.items()}, forcings, statics, stats)
        y = np.full((locs.size, x.shape[1], 2), np.nan, np.float32)
        if with_smap:
            y[:, :, 0] = normalise(smap[:, locs], "smap", stats).T
        n_site = s_cell.size if use_sites else 0
        if with_insitu:
            y[locs.size - n_site :, :, 1] = normalise(insitu, "insitu", stats).T
        is_site = np.r_[np.zeros(locs.size - n_site, bool), np.ones(n_site, bool)]
        return TrainingData(x, y, is_site), stats

    f_test, s_test, _, _ = _series(src, grid, win, PREDICT, rows[held], cols[held])
    truth = src.truth(grid, win, *PREDICT).values[:, rows[held], cols[held]]
    scored = slice((dt.date(2020, 1, 1) - PREDICT[0]).days, None)
    both = dict(use_cells=True, use_sites=True, with_smap=True, with_insitu=True)
    models = {  # name: (data, scored output, heads)
        "multitask": (both | {"shared": False}, 1, "separate"),
        "multitask_shared": (both | {"shared": True}, 0, "shared"),
        "insitu_only": (
            dict(use_cells=False, use_sites=True, with_smap=False, with_insitu=True, shared=False),
            1,
            "separate",
        ),
        "smap_only": (
            dict(use_cells=True, use_sites=False, with_smap=True, with_insitu=False, shared=False),
            0,
            "separate",
        ),
    }
    result, runs = {}, []
    wanted = args.models.split(",")
    if unknown := sorted(set(wanted) - set(models)):
        raise SystemExit(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(models)}")
    for name, (how, head, heads) in ((m, models[m]) for m in wanted):
        spec = spec_for(forcings, statics, TARGETS, heads=heads)
        data, stats = dataset(**how)
        # As many epochs as batches, so that the batch budget is what stops every model.
        cfg = training_config(
            args.iterations, args.seed, args.threads, max_iterations=args.iterations
        )
        net, info = train(data, spec, cfg, name, not args.quiet)
        runs.append({"model": name, "locations": int(data.x.shape[0]), **info})
        x = assemble_inputs(f_test, s_test, forcings, statics, stats)
        z = predict(net, x)[:, :, head]
        pred = denormalise(z, "insitu" if heads == "shared" else TARGETS[head], stats)
        result[name] = score(pred[scored], truth[scored])

    result |= {
        "scored_against": "hidden truth at held-out cells, 2020-01-01..2020-12-31",
        "n_train_cells": int(tr_r.size),
        "n_train_sites": int(s_cell.size),
        "n_held_out_cells": int(held.sum()),
        "holdout": args.holdout_box or f"random {args.holdout:.0%} of land cells",
        "budget": {"iterations_per_model": args.iterations, "seed": args.seed},
        "runs": runs,
    }
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
