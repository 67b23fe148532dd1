"""One day end to end: ingest -> features -> inference -> publish. Idempotent.

In ``step`` mode the day is always one LSTM step from the state valid at the end of the
previous day. That state comes from the store when present, else it is replayed day by day
from the latest earlier state (a checkpoint, within the spin-up length), else spun up from a
zero state over the ``spinup_days - 1`` days before (a cold start then equals ``window``
mode). Rerunning a day therefore reproduces it exactly. See ``docs/inference.md``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops import variables
from gsm3_ops.cube import Cube
from gsm3_ops.inference.daily import DayPredictor, InferenceError
from gsm3_ops.inference.state import StateError
from gsm3_ops.model.bundle import Bundle
from gsm3_ops.ops.cluster import ClusterError, tile_runner
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.ops.manifest import manifest_path, run_lock, write_json_atomic
from gsm3_ops.ops.models import ensure_bundle
from gsm3_ops.publish.cog import cog_path, write_cog
from gsm3_ops.publish.layers import FLAG_FILL, FLAG_GAP_FILLED
from gsm3_ops.publish.product import write_day

log = logging.getLogger(__name__)
ONE_DAY = dt.timedelta(days=1)


@dataclass
class RunResult:
    """What a run produced, and where."""

    day: dt.date
    cog: Path
    product: Path
    manifest: Path
    seconds: float


def _predict(dep: Deployment, cube: Cube, bundle: Bundle, day: dt.date) -> dict[str, np.ndarray]:
    """The day's product layers over the domain, streamed tile by tile (inference/daily)."""
    s = dep.settings
    try:
        predictor = DayPredictor(cube, bundle, dep.land, s.inference, s.data_root / "state.zarr")
        start = predictor.plan(day)  # refuses a state store of another bundle or domain
        ensure_days(dep, cube, start.first_input, day)
        with tile_runner(s.inference.cluster) as runner:
            out = predictor.predict(day, start, runner)
    except (InferenceError, StateError, ClusterError) as exc:
        raise RunError(str(exc)) from exc
    flags = np.where(out.gap_filled, FLAG_GAP_FILLED, 0).astype(np.uint8)
    flags[~dep.land] = FLAG_FILL
    return {"soil_moisture": out.mean, "soil_moisture_sd": out.sd, "quality_flag": flags}


def run_day(dep: Deployment, day: dt.date, progress: bool = True) -> RunResult:
    """Produce and publish ``day`` (already checked with ``Deployment.check_day``)."""
    t0 = time.perf_counter()
    s = dep.settings
    with run_lock(s.data_root):
        cube = dep.open_cube()
        bundle = ensure_bundle(dep, cube, progress)
        layers = _predict(dep, cube, bundle, day)
        product = s.publish_root / "gsm3.zarr"
        tags = {
            "date": day.isoformat(),
            "product_version": s.product.version,
            "bundle_id": bundle.bundle_id,
            "inputs": f"{dep.source.name}:{dep.source.version(day)}",
            "units": variables.PRODUCT_UNITS,
        }
        write_day(
            product, day, layers, dep.grid, dep.domain, s.product.start, s.inference.tile_size
        )
        cog = write_cog(cog_path(s.publish_root, day.isoformat()), layers["soil_moisture"],
                        dep.grid, dep.domain, tags)  # fmt: skip
        mpath = manifest_path(s.publish_root, day)
        config_path = write_config(mpath.with_suffix(".config.yaml"), s.to_yaml())
        sm = layers["soil_moisture"]
        write_json_atomic(
            mpath,
            {
                "date": day.isoformat(),
                "status": "complete",
                "mode": s.inference.mode,
                "bundle_id": bundle.bundle_id,
                "inputs": {dep.source.name: dep.source.version(day)},
                "cube_manifest": cube.manifest(day),
                "outputs": {"cog": str(cog), "zarr": str(product)},
                "config": str(config_path),
                "land_cells": int(np.isfinite(sm).sum()),
                "soil_moisture_mean": float(np.nanmean(sm)),
                "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
    return RunResult(day, cog, product, mpath, time.perf_counter() - t0)


def write_config(path: Path, text: str) -> Path:
    """Write the resolved configuration beside a run's outputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
