"""``gsm3-ops backfill``: produce every day of a range, resumably, in date order.

Inputs are ingested first for the whole range (real sources several days at once), then the
days are produced in date order so each LSTM step starts from the previous day's state. A
day already published from the same inputs is skipped, so a backfill killed at any point
and started again repeats no finished day; the interrupted day is redone from scratch (its
publication is one transaction, see ``publish/day.py``). A day that fails is reported and
recorded, and the next days go on (their LSTM state is carried through it with the missing
inputs filled). With ``reprocess_upgraded``, days published from inputs that have since been
upgraded (ERA5T -> ERA5, IMERG late -> final) are redone too; provisional days always are.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube
from gsm3_ops.errors import Gsm3Error
from gsm3_ops.ops.cluster import shared_clusters
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.ops.inputs import input_versions, missing_inputs
from gsm3_ops.ops.pipeline import run_day
from gsm3_ops.ops.status import record_last_run
from gsm3_ops.publish.manifest import DayManifest

log = logging.getLogger(__name__)


@dataclass
class BackfillResult:
    """Days produced, skipped (already done) and failed (with why)."""

    produced: list[dt.date] = field(default_factory=list)
    skipped: list[dt.date] = field(default_factory=list)
    failed: dict[dt.date, str] = field(default_factory=dict)
    seconds: float = 0.0


def run_backfill(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    *,
    reprocess_upgraded: bool = False,
    progress: bool = True,
) -> BackfillResult:
    """``gsm3-ops backfill``: check both ends of the range, produce it, record the outcome in
    ``last_run.json``."""
    dep = Deployment(settings)
    today = dt.date.today()
    dep.check_day(start, today)
    dep.check_day(end, today)
    try:
        result = backfill(dep, start, end, reprocess_upgraded=reprocess_upgraded,
                          progress=progress)  # fmt: skip
    except BaseException as exc:  # an ingest that failed for every day, SIGTERM, Ctrl-C
        outcome = "failed" if isinstance(exc, Exception) else "interrupted"
        record_last_run(settings.publish_root, "backfill", outcome, start=str(start),
                        end=str(end), error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        raise
    record_last_run(
        settings.publish_root, "backfill", "failed" if result.failed else "ok",
        start=str(start), end=str(end), produced=len(result.produced),
        skipped=len(result.skipped), failed={str(d): e for d, e in result.failed.items()},
    )  # fmt: skip
    return result


def _published(dep: Deployment, day: dt.date) -> DayManifest | None:
    record = DayManifest.load(dep.settings.publish_root, day)
    return record if record is not None and record.published else None


def upgraded(dep: Deployment, day: dt.date, current: dict) -> bool:
    """Whether the cube now holds other input versions than ``day`` was published from."""
    record = _published(dep, day)
    return record is not None and record.input_versions != input_versions(current)


def backfill(
    dep: Deployment,
    start: dt.date,
    end: dt.date,
    *,
    reprocess_upgraded: bool = False,
    progress: bool = True,
) -> BackfillResult:
    """Produce ``start..end`` (each day already checked with ``Deployment.check_day``)."""
    t0 = time.perf_counter()
    result = BackfillResult()
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    cube = dep.open_cube()
    log.info("ingesting inputs for %s..%s", start, end)
    ensure_days(dep, cube, start, end)
    required = dep.required_inputs()
    bar = tqdm(days, desc="backfill", unit="day", disable=not progress)
    with shared_clusters():  # one dask cluster (if configured) for every day, not one a day
        for day in bar:
            _backfill_day(dep, cube, day, required, result, reprocess_upgraded)
            bar.set_postfix(done=len(result.produced), failed=len(result.failed))
    result.seconds = time.perf_counter() - t0
    return result


def _backfill_day(
    dep: Deployment,
    cube: Cube,
    day: dt.date,
    required: Sequence[str],
    result: BackfillResult,
    reprocess_upgraded: bool,
) -> None:
    """Produce ``day`` unless done (or still provisional without its late inputs); record
    the outcome in ``result``."""
    record = _published(dep, day)
    if record and record.provisional and missing_inputs(required, cube.manifest(day)):
        result.skipped.append(day)  # still provisional: its late inputs are not in yet
        return
    redo = record is None or record.provisional
    if not redo and reprocess_upgraded and upgraded(dep, day, cube.manifest(day)):
        log.info("%s: inputs upgraded since publication; reprocessing", day)
        redo = True
    if not redo:
        result.skipped.append(day)
        return
    try:
        run_day(dep, day, progress=False, force=True)
    except Gsm3Error as exc:
        log.error("%s failed: %s", day, exc)
        result.failed[day] = str(exc)
    else:
        result.produced.append(day)
