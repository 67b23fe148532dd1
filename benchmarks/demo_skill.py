"""Skill of the demo model against the synthetic world's hidden truth at held-out cells.

The held-out cells (listed in the bundle) were never used in training. The model runs one
whole-series pass from a zero state over the warm-up (the year before the test year, or the
part of it the world covers) and the test year, and the test year is scored against the
truth (the product target, ensemble mean).

    python -m benchmarks.demo_skill --json demo_skill.json [--config FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from gsm3_ops.config import load_settings
from gsm3_ops.evaluation.metrics import paired_metrics, summary
from gsm3_ops.features import assemble_inputs
from gsm3_ops.inference.engine import Engine
from gsm3_ops.model.device import pick_device
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_ranges
from gsm3_ops.ops.lock import run_lock
from gsm3_ops.ops.models import ensure_bundle
from gsm3_ops.training.dataset import CellSet, read_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the figures")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--test-year", type=int, default=2020)
    args = parser.parse_args()

    t0 = time.perf_counter()
    dep = Deployment(load_settings(args.config))
    # Warm-up: the year before the test year, from the world's first day when it is later.
    first = dep.settings.world.start if dep.settings.world else dt.date(args.test_year - 1, 1, 1)
    start = max(dt.date(args.test_year - 1, 1, 1), first)
    test_start = dt.date(args.test_year, 1, 1)
    end = dt.date(args.test_year, 12, 31)
    with run_lock(dep.settings.data_root):
        cube = dep.open_cube()
        t = dep.settings.training
        ensure_ranges(dep, cube, [(t.start, t.end), (start, end)])  # ingest once, then train
        bundle = ensure_bundle(dep, cube)
    held = bundle.spec.training["held_out_cells"]
    cells = CellSet(
        np.asarray(held["rows"]) - dep.domain.row0,
        np.asarray(held["cols"]) - dep.domain.col0,
        dep.domain.row0,
        dep.domain.col0,
    )
    spec = bundle.spec
    forcing, static = read_cells(cube, spec.forcings, spec.statics, start, end, cells)
    x = assemble_inputs(forcing, static, spec.forcings, spec.statics, spec.stats)
    engine = Engine(bundle, pick_device(dep.settings.inference.device))
    mean, _ = engine.product(engine.series(x))
    truth = dep.source.truth(dep.grid, dep.domain, start, end).values[:, cells.rows, cells.cols]
    skip = (test_start - start).days
    result = {
        "truth": summary(paired_metrics(mean[skip:], truth[skip:])),
        "test_period": [test_start.isoformat(), end.isoformat()],
        "bundle": str(bundle.path),
        "bundle_id": bundle.bundle_id,
        "n_held_out_cells": int(cells.rows.size),
        "device": str(engine.device),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
