"""One day end to end: ingest -> features -> inference -> publish. Idempotent.

In ``step`` mode the day is always one LSTM step from the state valid at the end of the
previous day. That state comes from the store when present, else it is replayed day by day
from the latest earlier state (a checkpoint, within the spin-up length), else spun up from a
zero state over the ``spinup_days - 1`` days before (a cold start then equals ``window``
mode). Rerunning a day therefore reproduces it exactly. See ``docs/inference.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops import variables
from gsm3_ops.cube import Cube
from gsm3_ops.errors import InferenceError, PublishError
from gsm3_ops.inference.daily import DayPredictor
from gsm3_ops.inference.state import StateError
from gsm3_ops.model.bundle import Bundle
from gsm3_ops.ops.cluster import ClusterError, tile_runner
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.ops.inputs import input_versions, missing_inputs
from gsm3_ops.ops.manifest import failure_path, manifest_path, run_lock, write_json_atomic
from gsm3_ops.ops.models import ensure_bundle
from gsm3_ops.publish import derived
from gsm3_ops.publish.cog import cog_path
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import FLAG_PROVISIONAL
from gsm3_ops.publish.timeseries import write_timeseries_copy

log = logging.getLogger(__name__)
ONE_DAY = dt.timedelta(days=1)


class DayFailedError(RunError):
    """A day could not be published; the previous product is intact (see the failure record)."""


@dataclass
class RunResult:
    """What a run produced, and where (``skipped``: already published from the same inputs)."""

    day: dt.date
    cog: Path
    product: Path
    manifest: Path
    seconds: float
    skipped: bool = False
    provisional: bool = False


def already_published(dep: Deployment, cube: Cube, day: dt.date) -> bool:
    """Whether ``day`` is published, not provisional, from the inputs the cube now holds."""
    doc = _read_json(manifest_path(dep.settings.publish_root, day))
    if not doc or doc.get("status") != "complete" or doc.get("provisional"):
        return False
    return doc.get("input_versions") == input_versions(cube.manifest(day))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _predict(dep: Deployment, cube: Cube, bundle: Bundle, day: dt.date) -> dict[str, np.ndarray]:
    """Ensemble mean and spread (m3 m-3) and the gap-filled mask of the day over the domain,
    streamed tile by tile (inference/daily)."""
    s = dep.settings
    try:
        predictor = DayPredictor(cube, bundle, dep.land, s.inference, s.data_root / "state.zarr")
        start = predictor.plan(day)  # refuses a state store of another bundle or domain
        ensure_days(dep, cube, start.first_input, day)
        with tile_runner(s.inference.cluster) as runner:
            out = predictor.predict(day, start, runner)
    except (InferenceError, StateError, ClusterError) as exc:
        raise RunError(str(exc)) from exc
    return {"soil_moisture": out.mean, "soil_moisture_sd": out.sd, "gap_filled": out.gap_filled}


def quality_flag(
    dep: Deployment, cube: Cube, day: dt.date, valid: np.ndarray, gap_filled: np.ndarray
) -> np.ndarray:
    """The day's quality flag over the domain (bits in ``gsm3_ops.publish.layers``): forcing
    gap-filled, provisional inputs (from the cube day manifest), frozen soil (stl1 or t2m of
    the day from the cube), dry poleward slopes and Arctic permafrost (cube statics)."""
    cfg = dep.settings.product.flags
    forcing = cube.read("forcing", ["stl1", "t2m"], day, day)  # NaN where never written
    static = cube.read_static(
        ["aspect_cos", "slope", "smap_mean", "lst_day_mean", "lst_night_mean"]
    )
    rows = np.arange(dep.domain.row0, dep.domain.row0 + dep.domain.n_rows)
    _, lat = dep.grid.rowcol_to_lonlat(rows, np.zeros_like(rows))  # cylindrical: lat by row
    lat = np.broadcast_to(np.asarray(lat)[:, None], dep.domain.shape)
    return derived.compose_flags(
        valid,
        gap_filled=gap_filled,
        provisional=derived.provisional_mask(
            cube.manifest(day), dep.domain, cfg.provisional_versions
        ),
        frozen=derived.frozen_mask(forcing["stl1"].values[0], forcing["t2m"].values[0], cfg),
        dry_north_slope=derived.dry_north_slope_mask(
            static["aspect_cos"].values, static["slope"].values, static["smap_mean"].values, cfg
        ),
        permafrost=derived.permafrost_mask(
            lat, static["lst_day_mean"].values, static["lst_night_mean"].values, cfg
        ),
    )


def run_day(
    dep: Deployment,
    day: dt.date,
    progress: bool = True,
    *,
    provisional: bool = False,
    force: bool = False,
) -> RunResult:
    """Produce and publish ``day`` (already checked with ``Deployment.check_day``).

    Skipped when the day is already published, not provisional, from the same input
    versions (unless ``force``). A day whose own required inputs are missing fails, unless
    ``provisional``: the missing forcings are then filled (training mean, gap-filled bit)
    and the day is flagged provisional, to be replaced by a later run once they arrive.

    Raises :class:`DayFailedError` when inputs are missing or publication fails (a full
    disk, say): the product, catalogue and manifest are then as before, and a failure
    record is left beside the day's manifest (``gsm3_YYYYMMDD.failed.json``).
    """
    t0 = time.perf_counter()
    s = dep.settings
    mpath = manifest_path(s.publish_root, day)
    with run_lock(s.data_root):
        cube = dep.open_cube()
        if not force and already_published(dep, cube, day):
            log.info("%s is already published from the same inputs: skipped", day)
            cog = cog_path(s.publish_root, day.isoformat())
            return RunResult(day, cog, s.publish_root / "gsm3.zarr", mpath,
                             time.perf_counter() - t0, skipped=True)  # fmt: skip
        ensure_days(dep, cube, day, day)  # the day's own inputs first: fail early
        missing = missing_inputs(s, cube.manifest(day))
        if missing and not provisional:
            reasons = "; ".join(f"{k}: {v}" for k, v in missing.items())
            exc = DayFailedError(f"{day}: required inputs missing ({reasons})")
            _record_failure(s.publish_root, day, exc)
            raise exc
        bundle = ensure_bundle(dep, cube, progress)
        predicted = _predict(dep, cube, bundle, day)
        sm = predicted["soil_moisture"]
        flag = quality_flag(dep, cube, day, np.isfinite(sm), predicted["gap_filled"])
        if missing:
            flag = np.where(np.isfinite(sm), flag | FLAG_PROVISIONAL, flag).astype(flag.dtype)
        versions = input_versions(cube.manifest(day))
        inputs = {k.split("/", 1)[1]: v for k, v in versions.items() if k.startswith("forcing/")}
        config_path = mpath.with_suffix(".config.yaml")
        land = np.isfinite(sm)
        day_product = DayProduct(
            day=day,
            layers={
                "soil_moisture": sm,
                "soil_moisture_sd": predicted["soil_moisture_sd"],
                "quality_flag": flag,
            },
            tags={
                "bundle_id": bundle.bundle_id,
                "inputs": ", ".join(f"{k}:{v}" for k, v in inputs.items()),
                "units": variables.PRODUCT_UNITS,
            },
            properties={
                "gsm3:bundle_id": bundle.bundle_id,
                "gsm3:inputs": inputs,
                "gsm3:mode": s.inference.mode,
                "gsm3:provisional_share": _share(flag, 2, land),
                "gsm3:land_cells": int(land.sum()),
            },
            land=dep.land,
            extra_files={config_path: s.to_yaml().encode()},
        )
        record = {
            "date": day.isoformat(),
            "status": "complete",
            "mode": s.inference.mode,
            "bundle_id": bundle.bundle_id,
            "product_version": s.product.version,
            "inputs": inputs,
            "input_versions": versions,
            "provisional": bool(missing),
            "missing_inputs": missing,
            "cube_manifest": cube.manifest(day),
            "config": str(config_path),
            "land_cells": int(land.sum()),
            "soil_moisture_mean": float(np.nanmean(sm)) if land.any() else None,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            published = publish_day(
                s.publish_root, dep.grid, dep.domain, s.product, s.inference.tile_size,
                day_product, mpath, record,
            )  # fmt: skip
        except PublishError as exc:
            _record_failure(s.publish_root, day, exc)
            raise DayFailedError(str(exc)) from exc
        failure_path(s.publish_root, day).unlink(missing_ok=True)
        if s.product.timeseries_copy:
            _refresh_timeseries(dep)
    return RunResult(
        day, published.cogs["soil_moisture"], published.product, mpath,
        time.perf_counter() - t0, provisional=bool(missing),
    )  # fmt: skip


def _share(flag: np.ndarray, bit: int, land: np.ndarray) -> float:
    """Share of land cells with ``bit`` set."""
    n = int(land.sum())
    return round(float(((flag & bit) > 0)[land].sum()) / n, 4) if n else 0.0


def _record_failure(publish_root: Path, day: dt.date, exc: Exception) -> None:
    """Best effort (the disk may be full): the failure record beside the day's manifest."""
    record = {
        "date": day.isoformat(),
        "status": "failed",
        "error": str(exc),
        "failed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        write_json_atomic(failure_path(publish_root, day), record)
    except OSError as write_error:
        log.error("could not record the failure of %s: %s", day, write_error)


def _refresh_timeseries(dep: Deployment) -> None:
    """Rebuild the time-series copy; a failure leaves the previous copy and the day stands."""
    p = dep.settings.product
    try:
        write_timeseries_copy(dep.settings.publish_root, p.timeseries_time_chunk,
                              p.timeseries_space_chunk)  # fmt: skip
    except (OSError, ValueError) as exc:
        log.error("time-series copy not refreshed (the previous copy is kept): %s", exc)
