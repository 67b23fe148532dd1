"""The deployment's model: the configured bundle, else one trained on first use and cached.

Without ``model.bundle``, the bundle of this configuration is cached under
``<data_root>/models/<profile>-<key>``; the key is a hash of everything that changes the
trained weights (grid, region, source, model and training settings), so a changed
configuration trains a new bundle. Training goes through the
one bundle builder (``training/ensemble.py``) on ``training.start..end`` minus a seeded
random holdout of ``training.holdout_fraction`` of the land cells, checkpointing each member
so that a killed run resumes.

Nothing here ingests on behalf of ``run``: the daily pipeline asks :func:`training_period`
which days the model needs, ingests them with the rest of its days, then calls
:func:`ensure_bundle`. :func:`train` (``gsm3-ops train``) ingests its own period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path

from gsm3_ops.cube import MISSING, Cube, verify_insitu
from gsm3_ops.errors import InputError, UsageError
from gsm3_ops.model.bundle import Bundle, load_bundle
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.ingest import ensure_ranges
from gsm3_ops.ops.lock import run_lock
from gsm3_ops.training.dataset import CellSet
from gsm3_ops.training.ensemble import build_bundle
from gsm3_ops.training.splits import random_holdout

log = logging.getLogger(__name__)


def bundle_key(dep: Deployment) -> str:
    """A short hash of the settings that determine the trained model."""
    s = dep.settings
    parts = {
        "grid": s.grid,
        "region": s.region.model_dump() if s.region else None,
        "sources": s.sources.model_dump(mode="json"),
        "model": s.model.model_dump(exclude={"bundle"}),
        "training": s.training.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def cached_bundle_path(dep: Deployment) -> Path:
    """Where the profile's bundle lives."""
    return dep.settings.model_dir / f"{dep.settings.profile}-{bundle_key(dep)}"


def training_period(dep: Deployment) -> tuple[dt.date, dt.date] | None:
    """The days :func:`ensure_bundle` will read from the cube (``training.start..end``) when
    it has to train; None when the bundle is configured or already cached."""
    if dep.settings.model.bundle is not None:
        return None
    if (cached_bundle_path(dep) / "bundle.json").is_file():
        return None
    t = dep.settings.training
    return t.start, t.end


def ensure_bundle(dep: Deployment, cube: Cube | None, progress: bool = True) -> Bundle:
    """The configured bundle (``model.bundle``), else the cached bundle of this configuration,
    trained when absent (resuming from its checkpoints after an interrupted attempt).

    The cube must already hold :func:`training_period`; this never ingests.
    """
    bundle = existing_bundle(dep)
    if bundle is not None:
        return bundle
    path = cached_bundle_path(dep)
    if cube is None:
        raise RunError(f"no cached model at {path}, and no cube to train one from")
    t = dep.settings.training
    _check_ingested(cube, t.start, t.end)
    log.info("no cached model at %s: training one", path)
    _build(dep, cube, path, progress=progress)
    return load_bundle(path)


def existing_bundle(dep: Deployment) -> Bundle | None:
    """The configured bundle (``model.bundle``), else the cached bundle of this
    configuration; None when it must first be trained. A configured bundle must exist."""
    configured = dep.settings.model.bundle
    if configured is not None:
        if not (configured / "bundle.json").is_file():
            raise RunError(
                f"model.bundle {configured} holds no bundle.json: train one with "
                f"`gsm3-ops train --config FILE --out {configured}`"
            )
        return load_bundle(configured)
    path = cached_bundle_path(dep)
    return load_bundle(path) if (path / "bundle.json").is_file() else None


def train(
    dep: Deployment,
    out: Path,
    members: int | None = None,
    folds: int | None = None,
    progress: bool = True,
) -> Path:
    """``gsm3-ops train``: under the run lock, ingest the training period and build the
    bundle ``out`` (an interrupted run resumes from ``<out>.checkpoints/``).

    Parameters
    ----------
    members, folds
        At most one: N seeded members (default ``training.members``), or one member per
        fold of a K-fold split of the training cells.

    Returns
    -------
    Path
        The bundle directory.
    """
    if members is not None and folds is not None:
        raise UsageError("choose --folds or --members, not both")
    t = dep.settings.training
    with run_lock(dep.settings.data_root):
        cube = dep.open_cube()
        ensure_ranges(dep, cube, [(t.start, t.end)], insitu=(t.start, t.end))
        return _build(dep, cube, Path(out), members=members, folds=folds, progress=progress)


def _build(
    dep: Deployment,
    cube: Cube,
    out: Path,
    members: int | None = None,
    folds: int | None = None,
    progress: bool = True,
) -> Path:
    """The deployment's bundle: land cells minus the seeded random holdout, training period.
    The in-situ targets are verified against their write checksums first (damage is refused
    naming the repair, never learned from)."""
    t = dep.settings.training
    verify_insitu(cube, t.start, t.end)
    rows, cols = dep.land_cells
    held = random_holdout(rows.size, t.holdout_fraction, t.seed)
    row0, col0 = dep.domain.row0, dep.domain.col0
    return build_bundle(
        cube,
        CellSet(rows[~held], cols[~held], row0, col0),
        (t.start, t.end),
        dep.settings,
        out,
        held_out=CellSet(rows[held], cols[held], row0, col0),
        members=members,
        folds=folds,
        progress=progress,
    )


def _check_ingested(cube: Cube, start: dt.date, end: dt.date) -> None:
    """Refuse to train on a period the cube was never given (the caller ingests first).

    Days that were attempted and failed are allowed, as they always were: training reads
    what the cube holds and masks the gaps.
    """
    days = (start + dt.timedelta(days=i) for i in range((end - start).days + 1))
    absent = [d for d in days if cube.day_status(d) == MISSING]
    if absent:
        raise InputError(
            f"the cube {cube.path} lacks {len(absent)} day(s) of the training period "
            f"{start}..{end} (first {absent[0]}): ingest them before training "
            "(ops.models.training_period names the days)"
        )
