"""One day end to end: ingest -> features -> inference -> publish. Idempotent.

In ``step`` mode the day is always one LSTM step from the state valid at the end of the
previous day. That state comes from the store when present, else it is advanced from the
latest earlier state (within the spin-up length), else spun up from a zero state over the
``spinup_days - 1`` days before (a cold start then equals ``window`` mode). Rerunning a day
therefore reproduces it exactly.
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
from gsm3_ops.features import assemble_inputs, missing_input_mask
from gsm3_ops.inference.engine import Engine, States, pick_device
from gsm3_ops.inference.state import StateStore
from gsm3_ops.model.bundle import Bundle
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.ops.manifest import manifest_path, run_lock, write_json_atomic
from gsm3_ops.ops.models import ensure_bundle
from gsm3_ops.publish.cog import cog_path, write_cog
from gsm3_ops.publish.product import FLAG_FILL, FLAG_GAP_FILLED, write_day
from gsm3_ops.training.dataset import CellSet, read_cells

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


def _inputs(
    dep: Deployment, cube: Cube, bundle: Bundle, start: dt.date, end: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised inputs (cells, days, n_in) and the last day's missing-forcing mask."""
    rows, cols = dep.land_cells
    cells = CellSet(rows, cols, dep.domain.row0, dep.domain.col0)
    spec = bundle.spec
    forcing, static = read_cells(cube, spec.forcings, spec.statics, start, end, cells)
    x = assemble_inputs(forcing, static, spec.forcings, spec.statics, spec.stats)
    return x, missing_input_mask(forcing, spec.forcings)[-1]


def _advance(
    dep: Deployment, cube: Cube, engine: Engine, start: dt.date, end: dt.date, state: States | None
) -> tuple[np.ndarray, States, np.ndarray]:
    ensure_days(dep, cube, start, end)
    x, gaps = _inputs(dep, cube, engine.bundle, start, end)
    out, new_state = engine.advance(x, state)
    return out, new_state, gaps


def _previous_state(
    dep: Deployment, cube: Cube, engine: Engine, store: StateStore, day: dt.date
) -> States:
    """The LSTM state at the end of ``day - 1``."""
    rows, cols = dep.land_cells
    prev = day - ONE_DAY
    spinup = dep.settings.inference.spinup_days
    base = store.latest_on_or_before(prev)
    if base == prev:
        return store.load(prev, rows, cols)
    if base is not None and (prev - base).days <= spinup:
        log.info("advancing the LSTM state from %s to %s", base, prev)
        state = store.load(base, rows, cols)
        _, state, _ = _advance(dep, cube, engine, base + ONE_DAY, prev, state)
    else:
        # Spin up over the days before ``day`` so that, with ``day``'s step, the state has
        # seen ``spinup`` days: the same computation as window mode.
        log.info("cold start: spinning up the LSTM state over %d days to %s", spinup - 1, prev)
        _, state, _ = _advance(dep, cube, engine, day - dt.timedelta(days=spinup - 1), prev, None)
    store.save(prev, rows, cols, *state)
    return state


def _predict(dep: Deployment, cube: Cube, bundle: Bundle, day: dt.date) -> dict[str, np.ndarray]:
    s = dep.settings
    engine = Engine(bundle, pick_device(s.inference.device), s.inference.batch_cells)
    if s.inference.mode == "window":
        start = day - dt.timedelta(days=s.inference.spinup_days - 1)
        out, _, gaps = _advance(dep, cube, engine, start, day, None)
    else:
        store = StateStore(
            s.data_root / "state.zarr", bundle.bundle_id, dep.domain.shape, s.inference.tile_size
        )
        state = _previous_state(dep, cube, engine, store, day)
        out, state, gaps = _advance(dep, cube, engine, day, day, state)
        rows, cols = dep.land_cells
        store.save(day, rows, cols, *state)
        store.prune(s.inference.keep_recent_states)
    mean, sd = engine.product(out)
    flags = np.where(gaps, FLAG_GAP_FILLED, 0).astype(np.uint8)
    return _to_grid(dep, {"soil_moisture": mean, "soil_moisture_sd": sd, "quality_flag": flags})


def _to_grid(dep: Deployment, layers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rows, cols = dep.land_cells
    out = {}
    for name, values in layers.items():
        fill = FLAG_FILL if values.dtype == np.uint8 else np.nan
        grid = np.full(dep.domain.shape, fill, dtype=values.dtype)
        grid[rows, cols] = values
        out[name] = grid
    return out


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
