"""Ingest one day of the real gridded sources into the cube, one source at a time.

For each source: fetch the raw files (or take them from a local folder), read them, put them
on the grid, check them against the registry, write them into the cube. A source that fails
is recorded in the day's cube manifest (``failures``) with a credential-free message; the
data already in the cube, and every other source and day, stay as they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import shutil
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from gsm3_ops.cube import COMPLETE, Cube, CubeError
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.logs import log_context
from gsm3_ops.ops.deadline import DeadlineExceeded, deadline
from gsm3_ops.secrets import redact
from gsm3_ops.sources.base import (
    CorruptFileError,
    CredentialsError,
    DateNotServedError,
    Granule,
    GriddedSource,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.checks import check_gridded

log = logging.getLogger(__name__)


# Failures that another try will not change: the date is not served yet, or the file is bad.
PERMANENT = (DateNotServedError, CorruptFileError, MissingVariableError, CredentialsError)


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a fetch is retried after a transient failure."""

    attempts: int = 3
    backoff_s: float = 30.0
    timeout_s: float = 300.0  # a socket read with no data for this long fails the attempt
    deadline_s: float | None = 3 * 3600.0  # the whole fetch, all attempts and queue waits


@dataclass(frozen=True)
class IngestOptions:
    """Where raw files go (or come from) and how a source's day is (re)done.

    ``workdir`` takes fetched raw files (``<workdir>/<source>/<YYYY-MM-DD>``), removed after
    a successful write unless ``keep_raw``; files taken from ``from_dir`` are never touched.
    ``force`` re-ingests days the cube already holds from the source. ``min_coverage``: the
    share of the window's land cells a forcing day must fill (``sources/checks.py``).
    """

    workdir: Path
    from_dir: Path | None = None
    force: bool = False
    keep_raw: bool = False
    retry: Retry = Retry()
    min_coverage: float = 0.0


def fetch_with_retry(source: GriddedSource, day: dt.date, workdir: Path, retry: Retry) -> Granule:
    """``source.fetch`` retried with exponential backoff on transient failures (network,
    server errors); permanent ones (not served yet, corrupt file) are raised at once."""
    retrying = Retrying(
        stop=stop_after_attempt(retry.attempts),
        wait=wait_exponential(multiplier=retry.backoff_s, max=retry.backoff_s * 16),
        retry=retry_if_exception(
            lambda e: isinstance(e, (SourceError, OSError)) and not isinstance(e, PERMANENT)
        ),
        before_sleep=lambda state: _log_retry(source.name, day, state),
        reraise=True,
    )
    mine = None
    try:
        with socket_timeout(retry.timeout_s), deadline(retry.deadline_s) as mine:
            return retrying(source.fetch, day, workdir)
    except DeadlineExceeded as exc:
        if exc.owner is not mine:
            raise  # an enclosing deadline (the run's): not this fetch's to report
        raise SourceError(
            f"{source.name} {day}: the fetch was abandoned after {retry.deadline_s} s "
            "(sources.fetch_deadline_s)"
        ) from None


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Inside, a connection opened without a timeout of its own gives up after ``seconds``
    without data: plain sockets through the process default, and ``requests`` calls made
    with no ``timeout=`` (earthaccess' downloads, CMR searches), which would otherwise wait
    forever, through their transport adapter."""
    before = socket.getdefaulttimeout()
    send = HTTPAdapter.send

    def bounded(self: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = seconds
        return send(self, request, *args, **kwargs)

    socket.setdefaulttimeout(seconds)
    HTTPAdapter.send = bounded  # type: ignore[method-assign]
    try:
        yield
    finally:
        HTTPAdapter.send = send  # type: ignore[method-assign]
        socket.setdefaulttimeout(before)


def _log_retry(name: str, day: dt.date, state: RetryCallState) -> None:
    error = redact(str(state.outcome.exception())) if state.outcome else "?"
    log.warning("%s %s: fetch attempt %d failed (%s); retrying",
                name, day, state.attempt_number, error)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What happened to one source on one day."""

    source: str
    day: dt.date
    status: str  # "complete", "skipped" (already in the cube) or "failed"
    version: str | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class DayReport:
    """Every source's outcome for a day."""

    day: dt.date
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        """The sources that failed."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no source failed."""
        return not self.failed


def group_of(source: GriddedSource) -> str:
    """The cube group a source fills: ``smap`` for the SMAP target, else ``forcing``."""
    return "smap" if tuple(source.provides) == ("smap",) else "forcing"


def already_ingested(cube: Cube, source: GriddedSource, day: dt.date) -> bool:
    """Whether ``day`` holds a complete write of every variable ``source`` provides."""
    entry = cube.manifest(day)["entries"].get(f"{group_of(source)}/{source.name}")
    return bool(
        entry
        and entry.get("status") == COMPLETE
        and set(source.provides) <= set(entry.get("variables", []))
    )


def ingest_source(
    cube: Cube,
    source: GriddedSource,
    day: dt.date,
    grid: EaseGrid,
    window: Window,
    opts: IngestOptions,
) -> Outcome:
    """Fetch (or take from ``opts.from_dir``, else the source's configured archive), read,
    grid, check and write one source's day. A one-off ``from_dir`` re-reads days the cube
    holds; an archive, like a fetch, skips them unless ``opts.force``."""
    workdir, from_dir = opts.workdir, opts.from_dir
    if not opts.force and from_dir is None and already_ingested(cube, source, day):
        return Outcome(source.name, day, "skipped")
    group = group_of(source)
    raw = workdir / source.name / day.isoformat()
    version = _expected_version(source, day)
    try:
        folder = from_dir or source.options.archive
        if folder is not None:
            granule = source.local(day, folder)
        else:
            raw.mkdir(parents=True, exist_ok=True)
            granule = fetch_with_retry(source, day, raw, opts.retry)
        version = granule.version
        gridded = source.to_grid(source.read(granule), grid, window)
        land = land_mask(grid, window)
        notes = (*granule.notes, *check_gridded(gridded, source.name, land, opts.min_coverage))
        cube.write(group, gridded, source=source.name, version=version, notes=notes)
    except (SourceError, CubeError, OSError) as exc:
        message = redact(f"{type(exc).__name__}: {exc}")
        log.error("%s %s: %s", source.name, day.isoformat(), message)
        cube.record_failure(day, group=group, source=source.name, version=version, error=message)
        if isinstance(exc, CredentialsError):  # every later day would fail the same way
            raise type(exc)(redact(str(exc))) from None
        return Outcome(source.name, day, "failed", version, error=message)
    if not opts.keep_raw:
        shutil.rmtree(raw, ignore_errors=True)  # only fetched files: archives are not touched
    log.info("%s %s: %s written (%s)", source.name, day.isoformat(), group, version)
    return Outcome(source.name, day, "complete", version, notes)


@functools.lru_cache(maxsize=8)
def land_mask(grid: EaseGrid, window: Window) -> np.ndarray:
    """The window's land mask, computed once per process (the coverage check's cells)."""
    mask = grid.land_mask(window)
    mask.flags.writeable = False
    return mask


def ingest_day(
    cube: Cube,
    sources: Iterable[GriddedSource],
    day: dt.date,
    grid: EaseGrid,
    window: Window,
    opts: IngestOptions,
) -> DayReport:
    """Ingest ``day`` from every source in turn; one source failing does not stop the others."""
    outcomes = []
    for src in sources:
        with log_context(day=day.isoformat(), source=src.name):  # on every line it logs
            outcomes.append(ingest_source(cube, src, day, grid, window, opts))
    return DayReport(day, outcomes)


def _expected_version(source: GriddedSource, day: dt.date) -> str:
    try:
        return source.version(day)
    except SourceError:
        return "unknown"
