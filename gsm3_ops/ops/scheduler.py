"""``gsm3-ops schedule``: run the daily job on a cron trigger until SIGTERM or SIGINT.

APScheduler 3's BlockingScheduler, one job: coalescing (a backlog of missed fires runs once),
at most one instance, and a generous misfire grace (a machine that was down at the cron time
still runs the job when it comes back within the grace). The job itself takes the same run
lock as ``gsm3-ops run`` and ``backfill``, so a cron entry and the scheduler never overlap.
Each fire runs in a child process of its own (``ops/fire.py``), where the run deadline can
stop a hung stage, with a backstop from this process should it not.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
from collections.abc import Callable
from types import FrameType

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from gsm3_ops.config import ScheduleConfig, Settings
from gsm3_ops.errors import ConfigError, Gsm3Error
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.fire import GRACE_S, fire

log = logging.getLogger(__name__)
JOB_ID = "gsm3-daily"


def build_scheduler(
    cfg: ScheduleConfig, job: Callable[[], object], trigger: BaseTrigger | None = None
) -> BlockingScheduler:
    """A scheduler holding the daily ``job`` on ``cfg``'s cron trigger (or ``trigger``)."""
    if trigger is None:
        try:
            trigger = CronTrigger.from_crontab(cfg.cron, timezone=cfg.timezone)
        except ValueError as exc:
            raise ConfigError(f"schedule.cron {cfg.cron!r}: {exc}") from None
    sched = BlockingScheduler(timezone=cfg.timezone)
    sched.add_job(
        job,
        trigger,
        id=JOB_ID,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=cfg.misfire_grace_s,
        replace_existing=True,
    )
    sched.add_listener(_report, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    logging.getLogger("apscheduler.executors.default").addFilter(_expected_failures)
    return sched


def run_schedule(settings: Settings, provisional: bool = False) -> None:
    """``gsm3-ops schedule``: check the configuration now (not at the first fire), then run
    :func:`daily_job` on the configured cron line until SIGTERM/SIGINT."""
    Deployment(settings).required_sources()  # builds every source: bad options fail here
    serve(settings.schedule, lambda: daily_job(settings, provisional))


def daily_job(settings: Settings, provisional: bool = False, grace_s: float = GRACE_S) -> str:
    """One scheduled fire: the latest servable day, produced in a child process and
    recorded like ``gsm3-ops run`` (see ``ops/fire.py``); returns ``"<day> <outcome>"``,
    or raises :class:`~gsm3_ops.ops.fire.FireFailedError` with the reason."""
    return fire(settings, provisional, grace_s=grace_s)


def serve(
    cfg: ScheduleConfig, job: Callable[[], object], trigger: BaseTrigger | None = None
) -> None:
    """Run ``job`` on schedule until SIGTERM/SIGINT; a running job is finished, not killed
    (a daily fire's child process ends within the run deadline, or the parent's backstop
    ends it: ``ops/fire.py``).

    ``trigger`` replaces the configured cron line (tests use one a few seconds ahead).
    """
    sched = build_scheduler(cfg, job, trigger)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the running job, then stopping", signal.Signals(signum).name
        )
        sched.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler started: %r (%s); next run %s", cfg.cron, cfg.timezone, _next(sched))
    sched.start()  # blocks until shutdown
    log.info("scheduler stopped")


def _next(sched: BlockingScheduler) -> str:
    job = sched.get_job(JOB_ID)
    trigger = job.trigger if job else None
    if trigger is None:
        return "never"
    now = dt.datetime.now(dt.UTC)
    when = trigger.get_next_fire_time(None, now)
    return when.isoformat() if when else "never"


def _expected_failures(record: logging.LogRecord) -> bool:
    """Drop APScheduler's traceback of a job's expected failure (a Gsm3Error): ``_report``
    logs it as one line."""
    return not (record.exc_info and isinstance(record.exc_info[1], Gsm3Error))


def _report(event: JobExecutionEvent) -> None:
    if event.exception is not None:
        log.error("daily job failed: %s", event.exception)
    else:
        log.info("daily job finished: %s", event.retval)
