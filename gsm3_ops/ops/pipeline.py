"""One day end to end, in one pass down the floors: plan, ingest, predict, publish. Idempotent.

1. **Plan** the input days the run needs: the day itself and the days before it that the
   LSTM state needs (a stored state: none; a replay from a checkpoint; a cold start: the
   spin-up), plus the training period when the model must first be trained.
2. **Ingest** those days once; then read the day's cube manifest once.
3. **Predict**: train the model on first use (checkpointed), then one LSTM step from the
   state valid at the end of the previous day (``step`` mode; a cold start equals ``window``
   mode). Rerunning a day reproduces it exactly. See ``docs/inference.md``.
4. **Publish**: layers, quality flag, the day's record last.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops import variables
from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube, verify_day, verify_static, written_parts
from gsm3_ops.errors import DayFailedError, Gsm3Error, PublishError
from gsm3_ops.inference.daily import DayOutput, DayPredictor
from gsm3_ops.inference.state import StateDamagedError
from gsm3_ops.inference.tile import Start
from gsm3_ops.logs import log_context
from gsm3_ops.model.bundle import Bundle
from gsm3_ops.ops.cluster import tile_runner
from gsm3_ops.ops.deadline import DeadlineExceeded, deadline
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_ranges
from gsm3_ops.ops.inputs import input_versions, missing_inputs
from gsm3_ops.ops.lock import run_lock
from gsm3_ops.ops.models import ensure_bundle, existing_bundle
from gsm3_ops.ops.remote import finish_uploads, upload_day
from gsm3_ops.ops.status import record_last_run
from gsm3_ops.publish import flags
from gsm3_ops.publish.cog import cog_path
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import FLAG_NO_RETRIEVAL
from gsm3_ops.publish.manifest import DayManifest, failure_path, manifest_path
from gsm3_ops.publish.product import product_path

log = logging.getLogger(__name__)


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

    @property
    def outcome(self) -> str:
        """``skipped``, ``provisional`` or ``ok``, as ``last_run.json`` records it."""
        return "skipped" if self.skipped else "provisional" if self.provisional else "ok"


@dataclass
class DayPlan:
    """The input days a run needs, and how the day's state will be obtained.

    ``predictor`` and ``start`` are None when the model must first be trained: ``ranges``
    then hold the training period and the cold-start window, which covers any start the
    trained model's state store can then ask for.
    """

    ranges: list[tuple[dt.date, dt.date]]
    predictor: DayPredictor | None
    start: Start | None
    training: tuple[dt.date, dt.date] | None = None  # the period to train on first


def run(
    settings: Settings,
    day: dt.date | None = None,
    *,
    provisional: bool = False,
    force: bool = False,
    progress: bool = True,
    command: str = "run",
) -> RunResult:
    """``gsm3-ops run`` (and the scheduled job): produce ``day`` (default: the latest the
    profile can serve), and record the outcome in ``last_run.json``."""
    dep = Deployment(settings)
    today = dt.date.today()
    day = day or dep.latest_day(today, provisional)
    dep.check_day(day, today, provisional)
    try:
        result = run_day(dep, day, progress, provisional=provisional, force=force)
    except Gsm3Error as exc:
        record_last_run(settings.publish_root, command, "failed", day=str(day), error=str(exc))
        raise
    except BaseException as exc:  # Ctrl-C, or SIGTERM (raised as Ctrl-C by the CLI): unfinished
        record_last_run(settings.publish_root, command, "interrupted", day=str(day),
                        error=type(exc).__name__)  # fmt: skip
        raise
    record_last_run(settings.publish_root, command, result.outcome, day=str(day))
    return result


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
    disk, say), and any other :class:`~gsm3_ops.errors.Gsm3Error` of the stages; the
    product, catalogue and manifest are then as before, and a failure record is left beside
    the day's manifest (``gsm3_YYYYMMDD.failed.json``).
    """
    t0 = time.perf_counter()
    s = dep.settings
    limit = s.schedule.run_deadline_s
    mine = None
    try:
        with log_context(day=day.isoformat()), run_lock(s.data_root), deadline(limit) as mine:
            cube = dep.open_cube()
            finish_uploads(s)  # an upload a killed run left comes before anything new
            if not force and _published_from_cube(dep, cube, day):
                log.info("%s is already published from the same inputs: skipped", day)
                return RunResult(
                    day, cog_path(s.publish_root, day.isoformat()), product_path(s.publish_root),
                    manifest_path(s.publish_root, day), time.perf_counter() - t0, skipped=True,
                )  # fmt: skip
            try:
                missing = _produce(dep, cube, day, progress, provisional)
            except Gsm3Error as exc:
                _record_failure(s.publish_root, day, exc)
                if isinstance(exc, PublishError):
                    raise DayFailedError(str(exc)) from exc
                raise
            except Exception as exc:  # a store, disk or library failure no stage named
                log.debug("%s failed", day, exc_info=True)
                failed = DayFailedError(f"{day}: {type(exc).__name__}: {exc}")
                _record_failure(s.publish_root, day, failed)
                raise failed from exc
            failure_path(s.publish_root, day).unlink(missing_ok=True)
    except DeadlineExceeded as exc:  # the lock is released; the next run can start
        if exc.owner is not mine:
            raise
        failed = DayFailedError(
            f"{day}: stopped after the run deadline of {limit} s (schedule.run_deadline_s)"
        )
        _record_failure(s.publish_root, day, failed)
        raise failed from None
    return RunResult(
        day, cog_path(s.publish_root, day.isoformat()), product_path(s.publish_root),
        manifest_path(s.publish_root, day), time.perf_counter() - t0, provisional=bool(missing),
    )  # fmt: skip


def _produce(
    dep: Deployment, cube: Cube, day: dt.date, progress: bool, provisional: bool
) -> dict[str, str]:
    """Ingest what the day needs, check its inputs, predict and publish it; return the
    required inputs that were missing (filled: a provisional day)."""
    plan = plan_day(dep, cube, day)
    ensure_ranges(dep, cube, plan.ranges, insitu=plan.training)
    doc = cube.manifest(day)
    for d in _days_to_verify(plan, day):  # damage fails the day naming it: never a day
        verify_day(cube, d)  # published from wrong inputs
    verify_static(cube)
    missing = missing_inputs(dep.required_inputs(), doc)
    if missing and not provisional:
        reasons = "; ".join(f"{k}: {v}" for k, v in missing.items())
        raise DayFailedError(f"{day}: required inputs missing ({reasons})")
    bundle, output = _predict(dep, cube, plan, day, progress)
    _publish(dep, cube, doc, bundle, day, output, missing)
    return missing


def _published_from_cube(dep: Deployment, cube: Cube, day: dt.date) -> bool:
    """Whether ``day`` is published, not provisional, from the inputs the cube now holds."""
    record = DayManifest.load(dep.settings.publish_root, day)
    return record is not None and record.published_from(input_versions(cube.manifest(day)))


def _days_to_verify(plan: DayPlan, day: dt.date) -> list[dt.date]:
    """The input days checked against their checksums before a run: the days a stored or
    replayed start steps through (at most a checkpoint period), else the day itself (a
    cold start's year is not re-read for this)."""
    start = plan.start
    if start is None or start.kind not in ("stored", "replay"):
        return [day]
    n = (day - start.first_input).days + 1
    return [start.first_input + dt.timedelta(days=i) for i in range(n)]


def plan_day(dep: Deployment, cube: Cube, day: dt.date) -> DayPlan:
    """The input days ``day`` needs (see :class:`DayPlan`); loads the model when it exists."""
    s = dep.settings
    bundle = existing_bundle(dep)
    if bundle is None:
        cold_first = day - dt.timedelta(days=s.inference.spinup_days - 1)
        period = (s.training.start, s.training.end)
        return DayPlan([period, (cold_first, day)], None, None, period)
    predictor = _predictor(dep, cube, bundle)
    start = predictor.plan(day)  # refuses a state store of another bundle or domain
    ranges = [(start.first_input, day)]
    if (di := bundle.spec.di_spec) is not None:  # a late retrieval is fetched again
        ranges.append((day - dt.timedelta(days=di.latency[1]), day))
    return DayPlan(ranges, predictor, start)


def _predict(
    dep: Deployment, cube: Cube, plan: DayPlan, day: dt.date, progress: bool
) -> tuple[Bundle, DayOutput]:
    """The model (trained first when the plan says so) and its prediction of ``day``:
    ensemble mean, spread and gap-filled cells over the domain, streamed tile by tile."""
    predictor = plan.predictor or _predictor(dep, cube, ensure_bundle(dep, cube, progress))
    start = plan.start or predictor.plan(day)
    recorded = _recorded_retrievals(dep, predictor, start, day)
    try:
        with tile_runner(dep.settings.inference.cluster) as runner:
            output = predictor.predict(day, start, runner, recorded)
    except StateDamagedError as exc:
        if exc.day is None:
            raise
        aside = predictor.store.quarantine(exc.day)
        raise StateDamagedError(
            f"{exc}; moved aside to {aside.name}; repair: gsm3-ops run --date {day} "
            "(recomputes from the state before it, or a cold start)", exc.day
        ) from None  # fmt: skip
    return predictor.bundle, output


def _recorded_retrievals(
    dep: Deployment, predictor: DayPredictor, start: Start, day: dt.date
) -> dict[dt.date, list[dt.date]]:
    """The retrieval days a DI bundle absorbed on the days this run steps through, as their
    published records say (a recomputation absorbs exactly those, whatever arrived since)."""
    if predictor.bundle.spec.di_spec is None or start.kind == "window":
        return {}
    first = start.base + dt.timedelta(days=1) if start.base is not None else day
    out = {}
    for i in range((day - first).days + 1):
        d = first + dt.timedelta(days=i)
        record = DayManifest.load(dep.settings.publish_root, d)
        di = record.di if record is not None and record.published else None
        if di and di.get("bundle_id") == predictor.bundle.bundle_id:
            out[d] = [dt.date.fromisoformat(a) for a in di["absorbed"]]
    return out


def _di_record(bundle: Bundle, cube: Cube, day: dt.date, out: DayOutput) -> dict | None:
    """A DI bundle's provenance for the day's record: what it absorbed, with the versions the
    cube held, and whether the newest expected retrieval (day - latency) was late."""
    di = bundle.spec.di_spec
    if di is None:
        return None
    expected = day - dt.timedelta(days=di.latency[0])
    versions = {}
    for d in out.absorbed:
        entries = cube.manifest(d).get("entries") or {}
        versions[d.isoformat()] = next(
            (str(e.get("version")) for k, e in entries.items() if k.startswith(f"{di.target}/")),
            "",
        )
    return {
        "bundle_id": bundle.bundle_id,
        "target": di.target,
        "latency_days": list(di.latency),
        "max_age_days": di.max_age,
        "absorbed": [d.isoformat() for d in out.absorbed],
        "versions": versions,
        "expected": expected.isoformat(),
        "late": expected not in out.absorbed,
    }


def _predictor(dep: Deployment, cube: Cube, bundle: Bundle) -> DayPredictor:
    s = dep.settings
    return DayPredictor(cube, bundle, dep.land, s.inference, s.data_root / "state.zarr")


def _quality_flag(
    dep: Deployment,
    cube: Cube,
    doc: dict,
    day: dt.date,
    out: DayOutput,
    provisional_day: bool,
    di: dict | None,
) -> np.ndarray:
    """The day's quality flag from the cube's arrays of the day (see ``publish/flags.py``)."""
    cfg = dep.settings.product.flags
    forcing = cube.read("forcing", list(flags.FLAG_FORCINGS), day, day)  # NaN if never written
    static = cube.read_static(list(flags.FLAG_STATICS))
    return flags.day_flags(
        np.isfinite(out.mean),
        gap_filled=out.gap_filled,
        provisional=flags.provisional_mask(
            written_parts(doc, "forcing"), dep.domain, cfg.provisional_versions
        ),
        provisional_day=provisional_day,
        forcing={k: forcing[k].values[0] for k in flags.FLAG_FORCINGS},
        static={k: static[k].values for k in flags.FLAG_STATICS},
        lat=dep.latitudes,
        cfg=cfg,
        no_retrieval=out.no_retrieval,
        retrieval_late=bool(di and di["late"]),
    )


def _publish(
    dep: Deployment,
    cube: Cube,
    doc: dict,
    bundle: Bundle,
    day: dt.date,
    out: DayOutput,
    missing: dict[str, str],
) -> None:
    """Publish the day's layers and, last, its record."""
    s = dep.settings
    sm = out.mean
    di = _di_record(bundle, cube, day, out)
    flag = _quality_flag(dep, cube, doc, day, out, bool(missing), di)
    versions = input_versions(doc)
    inputs = {k.split("/", 1)[1]: v for k, v in versions.items() if k.startswith("forcing/")}
    config_path = manifest_path(s.publish_root, day).with_suffix(".config.yaml")
    land = np.isfinite(sm)
    day_product = DayProduct(
        day=day,
        layers={
            "soil_moisture": sm,
            "soil_moisture_sd": out.sd,
            "quality_flag": flag,
            **({"soil_moisture_open_loop": out.open_loop} if out.open_loop is not None else {}),
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
            "gsm3:provisional_share": _share(flag, flags.FLAG_PROVISIONAL, land),
            "gsm3:land_cells": int(land.sum()),
            **(_di_properties(di, flag, land) if di else {}),
        },
        land=dep.land,
        extra_files={config_path: s.to_yaml(public=True).encode()},
    )
    record = DayManifest(
        date=day,
        status="complete",
        mode=s.inference.mode,
        bundle_id=bundle.bundle_id,
        product_version=s.product.version,
        inputs=inputs,
        input_versions=versions,
        provisional=bool(missing),
        missing_inputs=missing,
        cube_manifest=doc,
        config=str(config_path.relative_to(s.publish_root)),
        land_cells=int(land.sum()),
        soil_moisture_mean=float(np.nanmean(sm)) if land.any() else None,
        di=di,
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    published = publish_day(s.publish_root, dep.grid, dep.domain, s.product,
                            s.inference.tile_size, day_product, record)  # fmt: skip
    upload_day(s, published)


def _di_properties(di: dict, flag: np.ndarray, land: np.ndarray) -> dict:
    """A DI day's STAC properties: the retrieval days absorbed, and the share of land cells
    that had none (open loop)."""
    return {
        "gsm3:di_absorbed": di["absorbed"],
        "gsm3:di_late": di["late"],
        "gsm3:di_no_retrieval_share": _share(flag, FLAG_NO_RETRIEVAL, land),
    }


def _share(flag: np.ndarray, bit: int, land: np.ndarray) -> float:
    """Share of land cells with ``bit`` set."""
    n = int(land.sum())
    return round(float(((flag & bit) > 0)[land].sum()) / n, 4) if n else 0.0


def _record_failure(publish_root: Path, day: dt.date, exc: Exception) -> None:
    """Best effort (the disk may be full): the failure record beside the day's manifest."""
    try:
        DayManifest.failure(day, str(exc)).save_failure(publish_root)
    except OSError as write_error:
        log.error("could not record the failure of %s: %s", day, write_error)
