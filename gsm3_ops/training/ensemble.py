"""The one bundle builder: train an ensemble from the cube and write one bundle.

Every caller goes through :func:`build_bundle`: ``gsm3-ops train``, the model ``run``
trains on first use (``ops/models.py``), and each fold of ``gsm3-ops evaluate``. The caller
names the cells to train on and the period; the builder reads them from the cube (it never
ingests), computes the normalisation statistics on those cells, trains the members and
writes the bundle with the same provenance whoever calls it.

- ``members=N``: N members on the same training cells, seeds ``seed .. seed + N - 1``.
- ``folds=K``: K members; member k trains without fold k of a seeded k-fold split of the
  cells (``splits.site_folds``, by cells: a held-out cell's sites go with it), so the
  ensemble's spread reflects its sensitivity to the training locations and each member has
  unseen cells listed in the bundle.

The bundle's normalisation statistics are computed once, on every training cell of the
bundle (all folds together): inference feeds all members the same inputs. Figures that must
be strictly cross-validated (benchmarks, ``gsm3-ops evaluate``) build one bundle per fold,
so their statistics are per fold. Each member checkpoints into ``<out>.checkpoints/`` so
that an interrupted build resumes (finished members are not redone, and a resumed member
ends with the weights of an uninterrupted one); the checkpoints are removed once the bundle
is written.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import numpy as np

from gsm3_ops import __version__
from gsm3_ops.config import DIConfig, Settings
from gsm3_ops.cube import Cube
from gsm3_ops.di import RETRIEVALS, DISpec
from gsm3_ops.errors import TrainingError
from gsm3_ops.model.bundle import BundleSpec, save_bundle
from gsm3_ops.training.dataset import CellSet, build_training_data
from gsm3_ops.training.splits import site_folds
from gsm3_ops.training.trainer import train_member
from gsm3_ops.variables import feature_set, forcing_sources

log = logging.getLogger(__name__)


def checkpoint_dir(out: Path) -> Path:
    """Where the members of a bundle bound for ``out`` checkpoint."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoints")


def resolved_settings(settings: Settings) -> dict:
    """The parts of the configuration that decide the weights, for the bundle (no sources'
    options: they can hold credentials)."""
    return {
        "profile": settings.profile,
        "grid": settings.grid,
        "region": settings.region.model_dump() if settings.region else None,
        "sources": {
            # What a deployment serving this bundle must ingest every day.
            "inputs_from": list(forcing_sources(feature_set(settings.model.feature_set)[0])),
        },
        "model": settings.model.model_dump(mode="json"),
        "training": settings.training.model_dump(mode="json"),
    }


def build_bundle(
    cube: Cube,
    cells: CellSet,
    period: tuple[dt.date, dt.date],
    settings: Settings,
    out: Path,
    *,
    held_out: CellSet | None = None,
    members: int | None = None,
    folds: int | None = None,
    fold: str | None = None,
    progress: bool = True,
) -> Path:
    """Train an ensemble on ``cells`` over ``period`` and write the bundle to ``out``.

    Parameters
    ----------
    cube
        The data cube, already holding ``period`` (the builder reads, it never ingests).
    cells
        The land cells to train on (and the in-situ sites inside them); the normalisation
        statistics come from these cells only.
    period
        First and last training day.
    settings
        The deployment's settings: the model, and the training hyperparameters and seed.
    out
        The bundle directory; members checkpoint into ``<out>.checkpoints/`` and a build
        interrupted before resumes from there.
    held_out
        Cells kept out of training (a random holdout, an evaluation fold's test cells),
        recorded in the bundle as ``held_out_cells``.
    members, folds
        At most one: N seeded members (default ``settings.training.members``), or one member
        per fold of a K-fold split of ``cells``.
    fold
        The evaluation fold this bundle belongs to, recorded as ``fold``.

    Returns
    -------
    Path
        ``out``.
    """
    if members is not None and folds is not None:
        raise TrainingError("choose --members or --folds, not both")
    t, m = settings.training, settings.model
    n_members = folds if folds is not None else (members or t.members)
    if n_members < 1:
        raise TrainingError(f"an ensemble needs at least one member, got {n_members}")
    start, end = period
    forcings, statics = (list(v) for v in feature_set(m.feature_set))
    targets = list(m.targets)
    data, stats = build_training_data(cube, forcings, statics, targets, start, end, cells,
                                      shared=m.heads == "shared")  # fmt: skip
    if not np.isfinite(data.y).any():
        raise TrainingError(f"the cube holds no target value in {start}..{end}")
    spec = BundleSpec(
        forcings=forcings, statics=statics, targets=targets, hidden_size=m.hidden_size,
        dropout=m.dropout, stats=stats, grid=settings.grid, product_target=m.product_target,
        heads=m.heads, di=_di(m.di, targets), code_version=__version__,
    )  # fmt: skip
    n_sites = int(data.is_site.sum())
    where = f"fold {fold}: " if fold is not None else ""
    log.info(
        "%straining %d members on %d cells and %d sites x %d days",
        where, n_members, cells.rows.size, n_sites, data.x.shape[1],
    )  # fmt: skip

    fold_cells: list[np.ndarray] = []
    if folds is not None:
        site_cell = data.cell[data.is_site]
        fold_cells = [f.test_cells for f in site_folds(site_cell, cells.rows.size, folds, t.seed)]
    ckpt = checkpoint_dir(out)
    results = []
    for k in range(n_members):
        member_data = data if not fold_cells else data.select(~fold_cells[k][data.cell])
        results.append(
            train_member(
                member_data,
                spec,
                t,
                t.seed + k,
                progress,
                checkpoint=ckpt / f"member-{k}.ckpt.safetensors",
                label=f"{where}{k + 1}/{n_members}",
            )
        )
    spec.training = {
        "config": resolved_settings(settings),
        "period": [start.isoformat(), end.isoformat()],
        "seeds": [t.seed + k for k in range(n_members)],
        "ensemble": "folds" if folds is not None else "members",
        "fold": fold,
        "n_cells": int(cells.rows.size),
        "n_sites": n_sites,
        "iterations": results[0].iterations,
        "member_iterations": [r.iterations for r in results],
        "member_resumed_at": [r.resumed_at for r in results],
        "held_out_cells": _cell_list(held_out),
        "member_held_out_cells": [
            _cell_list(CellSet(cells.rows[f], cells.cols[f], cells.row0, cells.col0))
            for f in fold_cells
        ]
        or None,
    }
    spec.metrics = {
        "final_loss": [float(np.mean(r.losses[-10:])) if r.losses else None for r in results],
        "train_seconds": [round(r.seconds, 1) for r in results],
    }
    path = save_bundle(out, spec, [r.net for r in results])
    shutil.rmtree(ckpt, ignore_errors=True)
    return path


def _di(cfg: DIConfig | None, targets: list[str]) -> dict:
    """The bundle's DI record: SMAP retrievals, lags latency..latency + late days."""
    if cfg is None:
        return {}
    if RETRIEVALS not in targets:
        raise TrainingError("model.di absorbs SMAP retrievals: model.targets must include smap")
    lags = (cfg.latency_days, cfg.latency_days + cfg.late_days)
    return DISpec(RETRIEVALS, lags, cfg.max_age_days).to_json()


def _cell_list(cells: CellSet | None) -> dict[str, list[int]] | None:
    """Grid rows and columns of ``cells`` for ``bundle.json``; None when there are none."""
    if cells is None or cells.rows.size == 0:
        return None
    return {"rows": (cells.rows + cells.row0).tolist(), "cols": (cells.cols + cells.col0).tolist()}
