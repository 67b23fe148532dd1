"""Train an ensemble from the cube into one bundle: seeded members, or one member per fold.

- ``members=N``: N members on the same training cells, seeds ``seed .. seed + N - 1``.
- ``folds=K``: K members; member k trains without fold k of a seeded k-fold split of the
  cells (``splits.site_folds``, by cells: a held-out cell's sites go with it), so the
  ensemble's spread reflects its sensitivity to the training locations and each member has
  unseen cells listed in the bundle.

The bundle's normalisation statistics are computed once, on every training cell of the
bundle (all folds together): inference feeds all members the same inputs. Figures that must
be strictly cross-validated (benchmarks, ``gsm3-ops evaluate``) compute statistics per fold.
Each member checkpoints into ``<out>.checkpoints/`` so that an interrupted run resumes; the
checkpoints are removed once the bundle is written.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from gsm3_ops import __version__
from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube
from gsm3_ops.errors import TrainingError
from gsm3_ops.model.bundle import BundleSpec, save_bundle
from gsm3_ops.training.dataset import CellSet, build_training_data
from gsm3_ops.training.splits import random_holdout, site_folds
from gsm3_ops.training.trainer import train_member
from gsm3_ops.variables import feature_set

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
            "kind": settings.sources.kind,
            "synthetic_seed": settings.sources.synthetic_seed,
        },
        "model": settings.model.model_dump(mode="json"),
        "training": settings.training.model_dump(mode="json"),
    }


def train_bundle_from_cube(
    cube: Cube,
    land_rows: np.ndarray,
    land_cols: np.ndarray,
    origin: tuple[int, int],
    settings: Settings,
    out: Path,
    members: int | None = None,
    folds: int | None = None,
    progress: bool = True,
) -> Path:
    """Train an ensemble on the cube's training period and write the bundle to ``out``.

    Parameters
    ----------
    cube
        The data cube, holding the training period (``settings.training.start..end``).
    land_rows, land_cols
        Domain-relative rows and columns of the land cells to train on.
    origin
        (row0, col0) of the domain on the grid.
    members, folds
        At most one: N seeded members (default ``settings.training.members``), or one member
        per fold of a K-fold split of the cells.
    """
    if members is not None and folds is not None:
        raise TrainingError("choose --members or --folds, not both")
    t, m = settings.training, settings.model
    n_members = folds if folds is not None else (members or t.members)
    if n_members < 1:
        raise TrainingError(f"an ensemble needs at least one member, got {n_members}")
    held = random_holdout(land_rows.size, t.holdout_fraction, t.seed)
    rows, cols = land_rows[~held], land_cols[~held]
    cells = CellSet(rows, cols, *origin)
    forcings, statics = (list(v) for v in feature_set(m.feature_set))
    targets = list(m.targets)
    data, stats = build_training_data(cube, forcings, statics, targets, t.start, t.end, cells)
    spec = BundleSpec(
        forcings=forcings, statics=statics, targets=targets, hidden_size=m.hidden_size,
        dropout=m.dropout, stats=stats, grid=settings.grid, product_target=m.product_target,
        code_version=__version__,
    )  # fmt: skip
    if not np.isfinite(data.y).any():
        raise TrainingError(f"the cube holds no target value in {t.start}..{t.end}")

    fold_cells: list[np.ndarray] = []
    if folds is not None:
        n_sites = int(data.is_site.sum())
        site_cell = data.cell[data.is_site]
        for f in site_folds(site_cell, rows.size, folds, t.seed, by="cells"):
            fold_cells.append(f.test_cells)
        log.info("%d folds over %d cells and %d sites", folds, rows.size, n_sites)
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
                label=f"{k + 1}/{n_members}",
            )
        )
    spec.training = {
        "config": resolved_settings(settings),
        "period": [t.start.isoformat(), t.end.isoformat()],
        "seeds": [t.seed + k for k in range(n_members)],
        "ensemble": "folds" if folds is not None else "members",
        "n_cells": int(rows.size),
        "n_sites": int(data.is_site.sum()),
        "iterations": results[0].iterations,
        "member_iterations": [r.iterations for r in results],
        "held_out_cells": {
            "rows": (land_rows[held] + origin[0]).tolist(),
            "cols": (land_cols[held] + origin[1]).tolist(),
        },
    }
    if fold_cells:
        spec.training["member_held_out_cells"] = [
            {"rows": (rows[f] + origin[0]).tolist(), "cols": (cols[f] + origin[1]).tolist()}
            for f in fold_cells
        ]
    spec.metrics = {
        "final_loss": [float(np.mean(r.losses[-10:])) if r.losses else None for r in results],
        "train_seconds": [round(r.seconds, 1) for r in results],
    }
    path = save_bundle(out, spec, [r.net for r in results])
    shutil.rmtree(ckpt, ignore_errors=True)
    return path
