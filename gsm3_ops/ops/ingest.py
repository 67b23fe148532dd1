"""Fill the cube from the deployment's source: statics once, then the days that are missing."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube
from gsm3_ops.logs import Progress, current_setup, setup_logging
from gsm3_ops.ops import ingest_other
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest_day import (
    DayReport,
    IngestOptions,
    Retry,
    already_ingested,
    ingest_day,
)
from gsm3_ops.ops.lock import run_lock
from gsm3_ops.secrets import masked_config
from gsm3_ops.sources.base import GriddedSource
from gsm3_ops.sources.catalog import GRIDDED, INSITU, STATIC, check_names
from gsm3_ops.variables import feature_set

log = logging.getLogger(__name__)

# Days a worker process must have to be worth starting (a process imports for seconds).
DAYS_PER_WORKER = 30


def ensure_static(dep: Deployment, cube: Cube) -> None:
    """Write the static attributes when the cube does not have them all: derived from the
    static source (the default providers' rasters, an archive of them, or the operator's
    own) and the long-term means from the cube, after ingesting the long-term period's days
    (``sources.options.static.long_term_start..end``, by default the training period)."""
    _, statics = feature_set(dep.settings.model.feature_set)
    if set(statics) - set(cube.variables("static")):
        _derive_static(dep, cube)


def static_options(dep: Deployment) -> dict:
    """The static source's options, its long-term period defaulting to the training period."""
    s = dep.settings
    options = dict(s.sources.options.get(STATIC) or {})
    options.setdefault("long_term_start", s.training.start)
    options.setdefault("long_term_end", s.training.end)
    return options


def _derive_static(dep: Deployment, cube: Cube) -> None:
    options = static_options(dep)
    first = dt.date.fromisoformat(str(options["long_term_start"]))
    last = dt.date.fromisoformat(str(options["long_term_end"]))
    log.info("deriving the static attributes (long-term means over %s..%s)", first, last)
    _ensure_real(dep, cube, first, last)
    version = ingest_other.ingest_static(cube, options, dep.grid, dep.domain,
                                         raw_dir=dep.raw_dir)  # fmt: skip
    log.info("static attributes written: %s", version)


def ensure_days(dep: Deployment, cube: Cube, start: dt.date, end: dt.date) -> int:
    """Ingest every day in start..end that is not complete in the cube; return how many
    days were attempted. A day whose input fails its checks is not written; the failure is
    recorded in its cube manifest and the other days go on."""
    return ensure_ranges(dep, cube, [(start, end)])


def ensure_ranges(
    dep: Deployment,
    cube: Cube,
    ranges: Sequence[tuple[dt.date, dt.date]],
    insitu: tuple[dt.date, dt.date] | None = None,
) -> int:
    """:func:`ensure_days` over several date ranges (overlaps merged), then the statics when
    the cube lacks them, then (``insitu``, a training period) the in-situ sources over it."""
    n = sum(_ensure_real(dep, cube, a, b) for a, b in _merged(ranges))
    ensure_static(dep, cube)
    if insitu is not None:
        ensure_insitu(dep, cube, *insitu)
    return n


def ensure_insitu(dep: Deployment, cube: Cube, start: dt.date, end: dt.date) -> None:
    """Write the configured in-situ sources' stations for start..end (a training period); a
    source that fails is logged, and training goes on with what the cube holds."""
    s = dep.settings
    for src in dep.insitu_sources():
        o = ingest_other.ingest_insitu(cube, src, start, end, dep.grid, dep.domain, s.regions,
                                       workdir=dep.raw_dir)  # fmt: skip
        if o.status == "failed":
            log.error("%s %s..%s: %s", src.name, start, end, o.error)
        else:
            log.info("%s %s..%s: %d sites (%d left out)", src.name, start, end, o.n_sites,
                     len(o.skipped))  # fmt: skip


def _merged(ranges: Sequence[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    out: list[tuple[dt.date, dt.date]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _ensure_real(dep: Deployment, cube: Cube, start: dt.date, end: dt.date) -> int:
    """Ingest the configured gridded sources for the days of start..end not yet complete;
    return how many days were attempted."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    sources = dep.gridded_sources(cube=cube)
    todo = [d for d in days if not all(already_ingested(cube, src, d) for src in sources)]
    ingest_days(dep, cube, todo, sources=sources)
    return len(todo)


def ingest_days(
    dep: Deployment,
    cube: Cube,
    days: Sequence[dt.date],
    names: tuple[str, ...] | None = None,
    opts: IngestOptions | None = None,
    sources: list[GriddedSource] | None = None,
) -> list[DayReport]:
    """Ingest the gridded sources ``names`` (default: the configured ones; or the ready-made
    ``sources``) for ``days``: in this process, or for many days in ``ingest_workers``
    processes, each a contiguous part (the readers' C libraries, netCDF, HDF5 and HDF4, are
    not thread-safe; each day is its own cube chunk and manifest, so processes never write
    the same file). One report per day, in order."""
    opts = opts or ingest_options(dep)
    workers = min(dep.settings.sources.ingest_workers, len(days) // DAYS_PER_WORKER)
    if workers <= 1:
        sources = sources or dep.gridded_sources(names, cube)
        return _ingest_each(cube, sources, days, dep, opts)
    names = names or tuple(s.name for s in sources or dep.gridded_sources(cube=cube))
    size = -(-len(days) // workers)
    parts = [list(days[i : i + size]) for i in range(0, len(days), size)]
    context = multiprocessing.get_context("spawn")
    setup = (current_setup(), dep.settings.model_dump(mode="json"))
    with ProcessPoolExecutor(len(parts), mp_context=context, initializer=worker_setup,
                             initargs=setup) as pool:  # fmt: skip
        n = len(parts)
        done = pool.map(_ingest_part, [dep.settings] * n, [names] * n, [opts] * n, parts)
        return [report for part in done for report in part]


def worker_setup(logging_setup: tuple[bool, bool], config: dict) -> None:
    """A worker process's logging as its parent's, with the configuration's credentials
    (``config``, a settings dump) masked in every line it logs."""
    setup_logging(*logging_setup)
    masked_config(config)


def _ingest_part(
    settings: Settings, names: tuple[str, ...], opts: IngestOptions, days: list[dt.date]
) -> list[DayReport]:
    """A worker process's part of :func:`ingest_days`."""
    dep = Deployment(settings)
    cube = dep.open_cube()
    sources = dep.gridded_sources(names, cube)
    return _ingest_each(cube, sources, days, dep, opts)


def _ingest_each(
    cube: Cube,
    sources: list[GriddedSource],
    days: Sequence[dt.date],
    dep: Deployment,
    opts: IngestOptions,
) -> list[DayReport]:
    """Each day in turn, with a progress line (and ETA) at most once a minute."""
    what = f"ingest {days[0]}..{days[-1]}" if days else "ingest"
    progress = Progress(log, what, len(days))
    reports = []
    for day in days:
        reports.append(ingest_day(cube, sources, day, dep.grid, dep.domain, opts))
        progress.step()
    return reports


def ingest_options(
    dep: Deployment, from_dir: Path | None = None, force: bool = False
) -> IngestOptions:
    """The deployment's ingest options (raw folder, retries), reading ``from_dir`` if given."""
    cfg = dep.settings.sources
    return IngestOptions(dep.raw_dir, from_dir, force, cfg.keep_raw,
                         Retry(cfg.fetch_attempts, cfg.fetch_backoff_s, cfg.fetch_timeout_s,
                               cfg.fetch_deadline_s),
                         cfg.min_coverage)  # fmt: skip


@dataclass(frozen=True)
class IngestLine:
    """One line of what ``gsm3-ops ingest`` did: ``complete``, ``skipped`` or ``failed``."""

    status: str
    text: str


def ingest_sources(
    dep: Deployment,
    names: Sequence[str],
    first: dt.date,
    last: dt.date,
    *,
    from_dir: Path | None = None,
    force: bool = False,
) -> list[IngestLine]:
    """``gsm3-ops ingest``: the named sources for ``first..last`` into the cube, each routed
    by kind (gridded day by day, in situ over the range, statics once). A source failing on
    a day is a ``failed`` line (and recorded in the cube day manifest), not an exception.
    Holds the run lock: an ingest and a run never write the cube at once."""
    check_names(tuple(names))
    with run_lock(dep.settings.data_root):
        return _ingest_sources(dep, names, first, last, from_dir, force)


def _ingest_sources(
    dep: Deployment,
    names: Sequence[str],
    first: dt.date,
    last: dt.date,
    from_dir: Path | None,
    force: bool,
) -> list[IngestLine]:
    s = dep.settings
    cube = dep.open_cube()
    lines: list[IngestLine] = []
    gridded = tuple(n for n in names if n in GRIDDED)
    if gridded:
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        reports = ingest_days(dep, cube, days, gridded, ingest_options(dep, from_dir, force))
        for o in (o for r in reports for o in r.outcomes):
            detail = o.error if o.status == "failed" else (o.version or "")
            lines.append(IngestLine(o.status, f"{o.day} {o.source:<10} {o.status:<9} {detail}"))
    span = f"{first}..{last}"
    for src in dep.insitu_sources(tuple(n for n in names if n in INSITU)):
        o = ingest_other.ingest_insitu(cube, src, first, last, dep.grid, dep.domain, s.regions,
                                       workdir=dep.raw_dir, from_dir=from_dir)  # fmt: skip
        detail = o.error if o.status == "failed" else f"{o.n_sites} sites ({o.version})"
        lines.append(IngestLine(o.status, f"{span} {o.source:<10} {o.status:<9} {detail}"))
        lines += [IngestLine("skipped", f"{span} {o.source:<10} skipped   {p}: {why}")
                  for p, why in o.skipped]  # fmt: skip
    if STATIC in names:
        options = static_options(dep)
        if from_dir is not None:
            options["archive"] = from_dir
        version = ingest_other.ingest_static(cube, options, dep.grid, dep.domain,
                                             raw_dir=dep.raw_dir)  # fmt: skip
        lines.append(IngestLine("complete", f"{'static':<21} complete  {version}"))
    return lines
