"""The GSM3 paper's experiments and the evaluation of an existing bundle, from the cube.

Each experiment trains its folds through the trainer (seeded like ``gsm3-ops train``, one
bundle per fold saved under ``<out>/folds/``), predicts each fold's held-out sites as one
whole series from a zero state started a warm-up period early, and scores them with the
reference products on the same sites and days. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from gsm3_ops import __version__
from gsm3_ops.cube import Cube, verify_insitu
from gsm3_ops.di import RETRIEVALS
from gsm3_ops.evaluation import folds as folding
from gsm3_ops.evaluation.figures import land_map
from gsm3_ops.evaluation.locations import (
    AGAINST,
    cells_of,
    observations,
    site_attributes,
    site_table,
)
from gsm3_ops.evaluation.predict import missing_inputs, predict_series, read_inputs, target_head
from gsm3_ops.evaluation.references import (
    Reference,
    check_reference,
    parse_reference,
    reference_series,
)
from gsm3_ops.evaluation.report import Report, write_report
from gsm3_ops.evaluation.scores import EvaluationError, Scores, scores_from_series, skips
from gsm3_ops.model.bundle import Bundle, load_bundle
from gsm3_ops.model.device import pick_device
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_days, ensure_ranges
from gsm3_ops.ops.lock import run_lock
from gsm3_ops.training.dataset import CellSet
from gsm3_ops.training.ensemble import build_bundle
from gsm3_ops.variables import REGISTRY, feature_set

log = logging.getLogger(__name__)

MODEL = "GSM3"


@dataclass(frozen=True)
class EvaluationOptions:
    """What to evaluate against and how (the ``gsm3-ops evaluate`` options)."""

    against: str = "insitu"
    folds: int = 5
    min_pairs: int = 30
    start: dt.date | None = None  # bundle evaluation period (default: training.test_start..end)
    end: dt.date | None = None
    references: tuple[Reference, ...] = field(default_factory=tuple)
    same_days: bool = True
    held_out_only: bool = False  # bundle: only the cells its training held out
    warmup_days: int | None = None  # default: inference.spinup_days


def run_experiment(
    dep: Deployment, kind: str, out: Path, opts: EvaluationOptions, progress: bool = True
) -> Scores:
    """Train and score the folds of experiment ``kind`` (random-kfold, continental, temporal)."""
    if kind not in folding.EXPERIMENTS:
        raise EvaluationError(f"unknown experiment {kind!r}; choose one of {folding.EXPERIMENTS}")
    s, t = dep.settings, dep.settings.training
    cube = dep.open_cube()
    rows, cols = dep.land_cells
    g_rows, g_cols = rows + dep.domain.row0, cols + dep.domain.col0
    warm = _warmup(dep, opts)
    train_period = (t.start, t.end)
    score = (t.test_start, t.test_end) if kind == "temporal" else train_period
    first = min(train_period[0], score[0] - dt.timedelta(days=warm))
    last = max(train_period[1], score[1])
    ensure_ranges(dep, cube, [(first, last)], insitu=(first, last))
    verify_insitu(cube, first, last)  # the folds train on it, and it is scored against
    sites = site_table(cube, opts.against, dep.land_cells, s.regions)
    cells = (g_rows, g_cols)
    if kind == "random-kfold":
        by = "sites" if opts.against == "insitu" else "cells"
        plan = folding.random_kfold(sites, cells, opts.folds, t.seed, train_period, by)
    elif kind == "continental":
        lonlat = dep.grid.rowcol_to_lonlat(g_rows, g_cols)
        plan = folding.continental(sites, cells, lonlat, s.regions, train_period)
    else:
        plan = folding.temporal(sites, rows.size, train_period, score)
    score_start, score_end = plan.folds[0].score  # every fold of an experiment shares it
    for ref in opts.references:
        check_reference(ref, cube)

    tested = np.zeros(len(sites), bool)
    for f in plan.folds:
        tested |= f.test
    sites = sites[tested]
    plan = folding.FoldPlan(
        [folding.Fold(f.name, f.held, f.test[tested], f.train, f.score) for f in plan.folds],
        plan.skipped,
    )
    forcings, statics = (list(v) for v in feature_set(s.model.feature_set))
    read_start = score_start - dt.timedelta(days=warm)
    inputs = read_inputs(
        cube, forcings, statics, read_start, score_end, cells_of(sites, dep.domain),
        retrievals=RETRIEVALS if s.model.di is not None else None,
    )  # fmt: skip
    pred = np.full(((score_end - score_start).days + 1, len(sites)), np.nan)
    fold_col = np.full(len(sites), "", dtype=object)
    fold_info = []
    device = pick_device(s.inference.device)
    bar = tqdm(plan.folds, desc=f"{kind} folds", unit="fold", disable=not progress)
    for f in bar:
        bar.set_postfix(fold=f.name, sites=int(f.test.sum()))
        train = CellSet(rows[~f.held], cols[~f.held], dep.domain.row0, dep.domain.col0)
        bundle = _train_fold(dep, cube, train, f, out / "folds" / f.name, progress)
        head = target_head(bundle, opts.against)
        series = predict_series(
            bundle, inputs.take(np.flatnonzero(f.test)), head, device, progress, f.name
        )
        pred[:, f.test] = series[warm:]
        fold_col[f.test] = f.name
        fold_info.append(
            {
                "fold": f.name,
                "train": [d.isoformat() for d in f.train],
                "held_out_cells": int(f.held.sum()),
                "scored_sites": int(f.test.sum()),
                "bundle": str(bundle.path),
                "bundle_id": bundle.bundle_id,
            },
        )
    sites = sites.assign(fold=fold_col)
    info = {
        "experiment": kind,
        "folds": fold_info,
        "seed": t.seed,
        "members": t.members,
        "train_period": [t.start.isoformat(), t.end.isoformat()],
    }
    return _score(
        dep, cube, sites, {MODEL: pred}, (score_start, score_end), opts, info, plan.skipped
    )


def evaluate_bundle(
    dep: Deployment, path: Path, opts: EvaluationOptions, progress: bool = True
) -> Scores:
    """Score an existing bundle (and the references) at the configured sites and period."""
    s, t = dep.settings, dep.settings.training
    bundle = load_bundle(path)
    if bundle.spec.grid != s.grid:
        raise EvaluationError(
            f"bundle {path} was trained on grid {bundle.spec.grid}, the configuration uses {s.grid}"
        )
    start, end = opts.start or t.test_start, opts.end or t.test_end
    if end < start:
        raise EvaluationError(f"evaluation period ends ({end}) before it starts ({start})")
    warm = _warmup(dep, opts)
    cube = dep.open_cube()
    ensure_days(dep, cube, start - dt.timedelta(days=warm), end)
    if opts.against == "insitu":
        verify_insitu(cube, start, end)
    for ref in opts.references:
        check_reference(ref, cube)
    sites = site_table(cube, opts.against, dep.land_cells, s.regions)
    held = _bundle_held_out(bundle, sites)
    if held is not None:
        sites = sites.assign(held_out=held)
        if opts.held_out_only:
            sites = sites[held]
    elif opts.held_out_only:
        raise EvaluationError(f"bundle {path} lists no held-out cells; drop --held-out-only")
    if sites.empty:
        raise EvaluationError(f"no {opts.against} site lies in the cells bundle {path} held out")
    preds, skipped = {}, []
    missing = missing_inputs(bundle, cube)
    if missing:
        message = (
            f"bundle {path} needs inputs missing from the cube {cube.path}: {', '.join(missing)}"
        )
        if not opts.references:
            raise EvaluationError(message)
        log.warning("%s; scoring the references only", message)
        skipped.append({"kind": "model", "name": MODEL, "model": MODEL, "reason": message})
    else:
        spec = bundle.spec
        inputs = read_inputs(
            cube,
            spec.forcings,
            spec.statics,
            start - dt.timedelta(days=warm),
            end,
            cells_of(sites, dep.domain),
            retrievals=spec.di_spec.target if spec.di_spec is not None else None,
        )
        head = target_head(bundle, opts.against)
        device = pick_device(s.inference.device)
        preds[MODEL] = predict_series(bundle, inputs, head, device, progress)[warm:]
    info = {"experiment": "bundle", "bundle": str(bundle.path), "bundle_id": bundle.bundle_id}
    return _score(dep, cube, sites, preds, (start, end), opts, info, skipped)


def _score(
    dep: Deployment,
    cube: Cube,
    sites: pd.DataFrame,
    preds: dict[str, np.ndarray],
    period: tuple[dt.date, dt.date],
    opts: EvaluationOptions,
    info: dict,
    skipped: list[dict[str, str]],
) -> Scores:
    """Add the references and observations, score, attach attributes and skips."""
    start, end = period
    for ref in opts.references:
        preds[ref.name] = reference_series(ref, sites, start, end, cube)
    source = dep.source if opts.against == "truth" else None
    obs = observations(cube, opts.against, sites, start, end, source, dep.grid)
    attributes = site_attributes(cube, sites)
    sites = sites.join(attributes)
    info = {
        **info,
        "against": opts.against,
        "units": REGISTRY["insitu"].units,
        "period": [start.isoformat(), end.isoformat()],
        "warmup_days": _warmup(dep, opts),
        "references": {r.name: r.describe() for r in opts.references},
        "attributes": list(attributes.columns),
        "grid": dep.settings.grid,
        "code_version": __version__,
    }
    scores = scores_from_series(
        obs, preds, sites, list(dep.settings.regions), opts.min_pairs, opts.same_days, info
    )
    both = pd.concat([skips(skipped), scores.skipped], ignore_index=True)
    # A region the folds already listed (no fold) needs no second line saying it is empty.
    scores.skipped = both.drop_duplicates(["kind", "name", "model"], ignore_index=True)
    return scores


def _warmup(dep: Deployment, opts: EvaluationOptions) -> int:
    return dep.settings.inference.spinup_days if opts.warmup_days is None else opts.warmup_days


def _bundle_held_out(bundle: Bundle, sites: pd.DataFrame) -> np.ndarray | None:
    """Which sites lie in a cell the bundle's training held out (None: not recorded)."""
    held = bundle.spec.training.get("held_out_cells")
    if not held:
        return None
    keys = set(zip(held["rows"], held["cols"], strict=True))
    return np.array([(r, c) in keys for r, c in zip(sites["row"], sites["col"], strict=True)])


def _train_fold(
    dep: Deployment, cube: Cube, train: CellSet, fold: folding.Fold, out: Path, progress: bool
) -> Bundle:
    """Train one fold's ensemble on ``train`` cells over the fold's training period (the
    statistics from those cells only), through the bundle builder."""
    rows, cols = dep.land_cells
    held = CellSet(rows[fold.held], cols[fold.held], dep.domain.row0, dep.domain.col0)
    path = build_bundle(
        cube, train, fold.train, dep.settings, out, held_out=held, fold=fold.name, progress=False
    )
    return load_bundle(path)


def options_from_cli(
    against: str = "insitu",
    folds: int = 5,
    min_pairs: int = 30,
    start: dt.date | None = None,
    end: dt.date | None = None,
    references: list[str] | None = None,
    own_days: bool = False,
    held_out_only: bool = False,
) -> EvaluationOptions:
    """Options from the command line (dates already parsed); a bad value raises
    :class:`EvaluationError` naming
    the flag."""
    if against not in AGAINST:
        raise EvaluationError(f"--against {against!r}: choose one of {', '.join(AGAINST)}")
    if min_pairs < 2:
        raise EvaluationError(f"--min-pairs {min_pairs}: at least 2 pairs define R")
    refs = tuple(parse_reference(r) for r in references or [])
    names = [r.name for r in refs]
    if MODEL in names or len(set(names)) != len(names):
        raise EvaluationError(f"--reference names must be unique and not {MODEL!r}: {names}")
    return EvaluationOptions(
        against=against,
        folds=folds,
        min_pairs=min_pairs,
        start=start,
        end=end,
        references=refs,
        same_days=not own_days,
        held_out_only=held_out_only,
    )


def evaluate(
    dep: Deployment,
    out: Path,
    opts: EvaluationOptions,
    experiment: str | None = None,
    bundle: Path | None = None,
    progress: bool = True,
) -> Report:
    """Run an experiment or score a bundle, then write the report directory ``out``; under
    the deployment's run lock (it ingests into the cube).

    The inputs are checked before anything is written.
    """
    if (experiment is None) == (bundle is None):
        raise EvaluationError("give either an experiment or a model bundle to evaluate")
    if experiment is not None and experiment not in folding.EXPERIMENTS:
        raise EvaluationError(
            f"unknown experiment {experiment!r}; choose one of {', '.join(folding.EXPERIMENTS)}"
        )
    if bundle is not None:
        load_bundle(bundle)  # a BundleError now, before the report directory exists
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dep.settings.to_yaml())
    with run_lock(dep.settings.data_root):
        if experiment is not None:
            scores = run_experiment(dep, experiment, out, opts, progress)
        else:
            assert bundle is not None
            scores = evaluate_bundle(dep, bundle, opts, progress)
    land = land_map(dep.grid, dep.domain)
    return write_report(scores, out, land, seed=dep.settings.training.seed)
