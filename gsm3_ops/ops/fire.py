"""One scheduled fire in a child process of its own, bounded from outside.

The scheduler runs its job in an APScheduler worker thread, which the run deadline's
watchdog (``ops/deadline.py``: a signal to the *main* thread) cannot interrupt. So each fire
runs in a child process started with the 'spawn' method (a fresh interpreter, none of the
scheduler's threads or locks), where ``run`` is in the main thread: the run deadline stops a
hung stage exactly as in ``gsm3-ops run`` (the day recorded failed, the lock released). The
child gets the settings (they pickle whole, credentials included), the logging set-up (text
or JSON lines) and the configured credentials to mask, so its lines read like the
scheduler's. It starts a process group of its own, so that a terminal's Ctrl-C reaches only
the scheduler, which finishes the running fire before it stops (``scheduler.serve``).

The parent waits with a backstop. Once the child holds the run lock (its process id in
``run.lock``: ``ops/lock.py``) it has the run deadline plus ``grace_s``; past that, the
parent sends SIGTERM (the child's run ends as interrupted, as a stopped ``gsm3-ops run``
does, and lets the lock go), then SIGKILL to the child's process group ``grace_s`` later,
and records the failure itself: ``last_run.json`` and the day's failure record. A child
that ends without a result (killed by the OOM killer, say) is recorded the same way. Before
it holds the lock a child is not timed: waiting for the lock is legitimate for as long as a
long ``ingest`` or ``backfill`` holds it, and a fire holding nothing blocks nothing but the
next fires (coalesced). With ``schedule.run_deadline_s: null`` there is no backstop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from gsm3_ops.config import Settings
from gsm3_ops.errors import DayFailedError, Gsm3Error
from gsm3_ops.logs import current_setup, setup_logging
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.lock import lock_holder
from gsm3_ops.ops.pipeline import run
from gsm3_ops.ops.status import record_last_run
from gsm3_ops.publish.manifest import DayManifest
from gsm3_ops.secrets import masked_config

log = logging.getLogger(__name__)

GRACE_S = 120.0  # past the run deadline before SIGTERM, and from SIGTERM to SIGKILL
POLL_S = 0.5  # how often the parent looks at the run lock while it waits
COMMAND = "schedule"  # as last_run.json records the fire

# What a child runs: (settings, provisional, report_day) -> its result line. It calls
# report_day with the day it works on before taking the run lock.
Target = Callable[[Settings, bool, Callable[[dt.date], None]], str]


class FireFailedError(DayFailedError):
    """A scheduled fire that failed: the child's own one line, or why the parent stopped it."""


def run_latest(settings: Settings, provisional: bool, report_day: Callable[[dt.date], None]) -> str:
    """The daily fire: the latest day the profile can serve, produced and recorded as
    ``gsm3-ops run`` does; returns ``"<day> <outcome>"``."""
    day = Deployment(settings).latest_day(dt.date.today(), provisional)
    report_day(day)
    result = run(settings, day, provisional=provisional, progress=False, command=COMMAND)
    return f"{result.day} {result.outcome}"


def fire(
    settings: Settings,
    provisional: bool = False,
    *,
    grace_s: float = GRACE_S,
    target: Target = run_latest,
) -> str:
    """Run ``target`` in a spawned child process and wait for it (see the module's text);
    return its result line. Raises :class:`FireFailedError` when it failed (recorded by the
    child, or by this process when the child could not: stopped by the backstop, or ended
    without a result)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, name="gsm3-fire",
                        args=(target, settings, provisional, current_setup(), send))  # fmt: skip
    child.start()
    send.close()  # the child holds the only sending end: its exit closes the pipe
    log.info("scheduled run started in process %d", child.pid)
    deadline_s = settings.schedule.run_deadline_s
    limit = None if deadline_s is None else deadline_s + grace_s
    messages, expired = _wait(child, receive, settings, limit)
    receive.close()
    day = messages.get("day")
    if expired:
        how = _stop(child, grace_s)
        reason = (
            f"{day or 'the scheduled day'}: stopped after the run deadline of {deadline_s} s "
            f"(schedule.run_deadline_s): the run did not stop itself within {grace_s:g} s more "
            f"and {how}"
        )
    elif "done" in messages:
        return messages["done"]
    elif "failed" in messages:
        raise FireFailedError(messages["failed"])  # the child recorded it
    else:
        reason = f"{day or 'the scheduled day'}: the scheduled run's process {_ended(child)}"
    _record(settings, day, reason)
    raise FireFailedError(reason)


def _child(
    target: Target,
    settings: Settings,
    provisional: bool,
    logging_setup: tuple[bool, bool],
    results: Connection,
) -> None:
    """The child's main thread: the parent's logging and masking, then ``target``; its
    outcome goes to the parent as ``day``, then ``done`` or ``failed``."""
    os.setpgrp()  # its own group: a terminal's Ctrl-C is the scheduler's to handle
    signal.signal(signal.SIGTERM, _interrupt)  # a stop ends run() as Ctrl-C does
    setup_logging(*logging_setup)
    masked_config(settings.model_dump(mode="json"))  # its credentials masked here too
    day: list[str] = []

    def report_day(d: dt.date) -> None:
        day.append(d.isoformat())
        _send(results, "day", d.isoformat())

    try:
        line = target(settings, provisional, report_day)
    except KeyboardInterrupt:  # SIGTERM: ended as a stopped gsm3-ops run ends
        at = {"day": day[-1]} if day else {}
        record_last_run(settings.publish_root, COMMAND, "interrupted", **at,
                        error="KeyboardInterrupt")  # fmt: skip
        _send(results, "failed", f"{day[-1] if day else 'the scheduled run'}: interrupted")
        return
    except Exception as exc:  # recorded whatever it is, like gsm3-ops run
        at = {"day": day[-1]} if day else {}
        if isinstance(exc, Gsm3Error):
            message = str(exc)
        else:  # a bug: its traceback goes to the log
            log.error("scheduled run failed", exc_info=True)
            message = f"{type(exc).__name__}: {exc}"
        record_last_run(settings.publish_root, COMMAND, "failed", **at, error=message)
        _send(results, "failed", message)
        return
    _send(results, "done", line)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _send(results: Connection, kind: str, text: str) -> None:
    with contextlib.suppress(OSError):  # the scheduler is gone: the records on disk tell
        results.send((kind, text))


def _wait(
    child: BaseProcess, receive: Connection, settings: Settings, limit: float | None
) -> tuple[dict[str, str], bool]:
    """The child's messages by kind once it has ended, and whether it was still running
    ``limit`` seconds after it took the run lock (it is then left running)."""
    messages: dict[str, str] = {}
    locked_at: float | None = None
    open_pipe = True
    while True:
        if locked_at is None and lock_holder(settings.data_root) == child.pid:
            locked_at = time.monotonic()
        if locked_at is not None and limit is not None and time.monotonic() - locked_at > limit:
            return messages, True
        ready = wait([child.sentinel, receive] if open_pipe else [child.sentinel], POLL_S)
        if receive in ready:
            try:
                kind, text = receive.recv()
                messages[kind] = text
            except EOFError:
                open_pipe = False
        if child.sentinel in ready and not (open_pipe and receive.poll()):
            child.join()
            return messages, False


def _stop(child: BaseProcess, grace_s: float) -> str:
    """End a child past its backstop: SIGTERM, then SIGKILL to its process group; say how."""
    log.error("scheduled run in process %d is past its run deadline: SIGTERM", child.pid)
    child.terminate()
    child.join(grace_s)
    if child.exitcode is not None:
        return "was ended by SIGTERM"
    log.error("process %d did not end within %g s of SIGTERM: SIGKILL", child.pid, grace_s)
    try:
        os.killpg(child.pid, signal.SIGKILL)  # its ingest workers too
    except ProcessLookupError:
        child.kill()
    child.join(grace_s)
    if child.exitcode is None:  # stuck in the kernel (a hung mount): nothing more to do
        log.error("process %d did not end after SIGKILL; it may still hold the lock", child.pid)
        return "did not end after SIGKILL"
    return "was killed (SIGKILL)"


def _ended(child: BaseProcess) -> str:
    """How a child that sent no result ended, in words."""
    code = child.exitcode
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name} before it reported a result"
    return f"ended without a result (exit code {code})"


def _record(settings: Settings, day: str | None, reason: str) -> None:
    """Best effort (the disk may be full): the failure in ``last_run.json`` and, when the
    day is known, its failure record, as the child would have written them."""
    log.error("%s", reason)
    try:
        record_last_run(settings.publish_root, COMMAND, "failed",
                        **({"day": day} if day else {}), error=reason)  # fmt: skip
        if day is not None:
            DayManifest.failure(dt.date.fromisoformat(day), reason).save_failure(
                settings.publish_root
            )
    except OSError as exc:
        log.error("could not record the failed scheduled run: %s", exc)
