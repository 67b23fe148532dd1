"""The profile's model: trained on first use from the cube, cached under ``<data_root>/models``.

The cache key is a hash of everything that changes the trained weights (grid, region,
source, model and training settings, and the synthetic world's version), so a changed
configuration trains a new bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from gsm3_ops import __version__
from gsm3_ops.cube import Cube
from gsm3_ops.model.bundle import Bundle, BundleSpec, load_bundle, save_bundle
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.training.dataset import CellSet, build_training_data
from gsm3_ops.training.splits import random_holdout
from gsm3_ops.training.trainer import train_ensemble
from gsm3_ops.variables import feature_set

log = logging.getLogger(__name__)


def bundle_key(dep: Deployment) -> str:
    """A short hash of the settings that determine the trained model."""
    s = dep.settings
    parts = {
        "grid": s.grid,
        "region": s.region.model_dump() if s.region else None,
        "sources": s.sources.model_dump(),
        "model": s.model.model_dump(exclude={"bundle"}),
        "training": s.training.model_dump(mode="json"),
    }
    if s.sources.kind == "synthetic":  # a new version of the world trains a new model
        parts["world"] = dep.source.version(s.training.start)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def cached_bundle_path(dep: Deployment) -> Path:
    """Where the profile's bundle lives."""
    return dep.settings.model_dir / f"{dep.settings.profile}-{bundle_key(dep)}"


def train_bundle(dep: Deployment, cube: Cube, out: Path, progress: bool = True) -> Path:
    """Ingest the training period, train the ensemble and save the bundle to ``out``."""
    s = dep.settings
    t = s.training
    ensure_days(dep, cube, t.start, t.end)
    rows, cols = dep.land_cells
    held = random_holdout(rows.size, t.holdout_fraction, t.seed)
    train = CellSet(rows[~held], cols[~held], dep.domain.row0, dep.domain.col0)
    forcings, statics = (list(v) for v in feature_set(s.model.feature_set))
    targets = list(s.model.targets)
    data, stats = build_training_data(cube, forcings, statics, targets, t.start, t.end, train)
    log.info("training %d members on %d locations x %d days", t.members, *data.x.shape[:2])
    spec = BundleSpec(
        forcings=forcings,
        statics=statics,
        targets=targets,
        hidden_size=s.model.hidden_size,
        dropout=s.model.dropout,
        stats=stats,
        grid=s.grid,
        product_target=s.model.product_target,
        code_version=__version__,
    )
    results = train_ensemble(data, spec, t, progress)
    spec.training = {
        "config": s.model_dump(mode="json"),
        "period": [t.start.isoformat(), t.end.isoformat()],
        "seeds": [t.seed + k for k in range(t.members)],
        "n_cells": int(train.rows.size),
        "n_sites": int(data.is_site.sum()),
        "iterations": results[0].iterations,
        "held_out_cells": {
            "rows": (rows[held] + dep.domain.row0).tolist(),
            "cols": (cols[held] + dep.domain.col0).tolist(),
        },
    }
    spec.metrics = {
        "final_loss": [float(np.mean(r.losses[-10:])) for r in results],
        "train_seconds": [round(r.seconds, 1) for r in results],
    }
    return save_bundle(out, spec, [r.net for r in results])


def ensure_bundle(dep: Deployment, cube: Cube, progress: bool = True) -> Bundle:
    """The configured bundle (``model.bundle``), else the cached bundle of this configuration,
    trained first when absent."""
    configured = dep.settings.model.bundle
    if configured is not None:
        if not (configured / "bundle.json").is_file():
            raise RunError(
                f"model.bundle {configured} holds no bundle.json: train one with "
                f"`gsm3-ops train --config FILE --out {configured}`"
            )
        return load_bundle(configured)
    path = cached_bundle_path(dep)
    if not (path / "bundle.json").is_file():
        log.info("no cached model at %s: training one", path)
        train_bundle(dep, cube, path, progress)
    return load_bundle(path)
