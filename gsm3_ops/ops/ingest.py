"""Fill the cube from the deployment's source: statics once, then the days that are missing."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube, status_of
from gsm3_ops.errors import SourceError
from gsm3_ops.logs import current_setup, setup_logging
from gsm3_ops.ops import ingest_other
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest_day import (
    IngestOptions,
    Retry,
    already_ingested,
    ingest_day,
    ingest_range,
)
from gsm3_ops.sources.base import GriddedSource
from gsm3_ops.sources.catalog import GRIDDED, INSITU, STATIC, check_names
from gsm3_ops.sources.checks import check_gridded
from gsm3_ops.variables import feature_set

log = logging.getLogger(__name__)

# Days generated and written per block: large enough to amortise the source's set-up,
# small enough to bound memory for a global domain.
BLOCK_DAYS = 400
# Days a worker process must have to be worth starting (a process imports for seconds).
DAYS_PER_WORKER = 30


def _missing_runs(
    cube: Cube, start: dt.date, end: dt.date, source: str, version: str
) -> Iterator[tuple[dt.date, dt.date]]:
    """Contiguous runs (at most BLOCK_DAYS long) of days in start..end not yet ingested
    from this ``version`` of the source."""
    days = (start + dt.timedelta(i) for i in range((end - start).days + 1))
    missing = [d for d in days if not _ingested(cube, d, source, version)]
    run: list[dt.date] = []
    for day in missing:
        if run and ((day - run[-1]).days != 1 or len(run) >= BLOCK_DAYS):
            yield run[0], run[-1]
            run = []
        run.append(day)
    if run:
        yield run[0], run[-1]


def ensure_static(dep: Deployment, cube: Cube) -> None:
    """Write the static attributes when the cube does not have them all.

    The synthetic world makes them. A real deployment derives them from the static source
    (the default providers' rasters, an archive of them, or the operator's own) and the
    long-term means from the cube, after ingesting the long-term period's days
    (``sources.options.static.long_term_start..end``, by default the training period).
    """
    _, statics = _feature_names(dep)
    missing = sorted(set(statics) - set(cube.variables("static")))
    if dep.settings.sources.kind != "synthetic":
        if missing:
            _derive_static(dep, cube)
        return
    src = dep.source
    version = src.version(dep.settings.cube.start)
    # A world upgrade (a new synthetic version) rewrites statics written by the old one.
    if missing or _other_version(cube.static_manifest(), src.name, version):
        cube.write_static(src.static(dep.grid, dep.domain), source=src.name, version=version)


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
    if dep.settings.sources.kind == "synthetic":
        ensure_static(dep, cube)
        return sum(_ensure_range(dep, cube, a, b) for a, b in _merged(ranges))
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


def _ensure_range(dep: Deployment, cube: Cube, start: dt.date, end: dt.date) -> int:
    if dep.settings.sources.kind != "synthetic":
        return _ensure_real(dep, cube, start, end)
    src = dep.source
    n = 0
    version = src.version(start)  # the synthetic world has one version for all days
    for a, b in _missing_runs(cube, start, end, src.name, version):
        log.info("ingesting %s..%s from %s %s", a, b, src.name, version)
        cube.write("smap", src.smap(dep.grid, dep.domain, a, b).to_dataset(), source=src.name,
                   version=version)  # fmt: skip
        cube.write_insitu(src.insitu(dep.grid, dep.domain, a, b), source=src.name, version=version)
        # Forcing last: a day counts as ingested once its forcing is complete.
        forcing = src.forcing(dep.grid, dep.domain, a, b)
        good = _checked_days(cube, forcing, src.name, version)
        if good:
            cube.write("forcing", forcing.sel(time=good), source=src.name, version=version)
        n += (b - a).days + 1
    return n


def _checked_days(cube: Cube, ds: xr.Dataset, source: str, version: str) -> list:
    """Times of ``ds`` whose day passes the registry checks; failures recorded per day."""
    good = []
    for t in ds["time"].values:
        try:
            check_gridded(ds.sel(time=[t]), source)
        except SourceError as exc:
            day = pd.Timestamp(t).date()
            log.error("%s %s: %s", source, day, exc)
            cube.record_failure(day, group="forcing", source=source, version=version,
                                error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            continue
        good.append(t)
    return good


def _ensure_real(dep: Deployment, cube: Cube, start: dt.date, end: dt.date) -> int:
    """Ingest the configured gridded sources for the days of start..end: in this process, or
    for a long range in ``ingest_workers`` processes, each a contiguous part (the readers'
    C libraries, netCDF, HDF5 and HDF4, are not thread-safe; each day is its own cube chunk
    and manifest, so processes never write the same file)."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    sources = dep.gridded_sources(cube=cube)
    todo = [d for d in days if not all(already_ingested(cube, src, d) for src in sources)]
    workers = min(dep.settings.sources.ingest_workers, len(todo) // DAYS_PER_WORKER)
    if workers <= 1:
        _ingest_days(dep, cube, sources, todo)
        return len(todo)
    size = -(-len(todo) // workers)
    parts = [todo[i : i + size] for i in range(0, len(todo), size)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(parts), mp_context=context, initializer=setup_logging,
                             initargs=current_setup()) as pool:  # fmt: skip
        list(pool.map(_ingest_part, [dep.settings] * len(parts), parts))
    return len(todo)


def _ingest_days(
    dep: Deployment, cube: Cube, sources: list[GriddedSource], days: list[dt.date]
) -> None:
    opts = ingest_options(dep)
    for day in days:
        ingest_day(cube, sources, day, dep.grid, dep.domain, opts)


def _ingest_part(settings: Settings, days: list[dt.date]) -> None:
    """A worker process's part of :func:`_ensure_real`."""
    dep = Deployment(settings)
    cube = dep.open_cube()
    _ingest_days(dep, cube, dep.gridded_sources(cube=cube), days)


def _feature_names(dep: Deployment) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return feature_set(dep.settings.model.feature_set)


def _ingested(cube: Cube, day: dt.date, source: str, version: str) -> bool:
    """Complete, with the forcing (written last) recorded (a crash before it means redo), and
    nothing from another version of ``source``."""
    doc = cube.manifest(day)
    complete = status_of(doc) == "complete" and f"forcing/{source}" in doc["entries"]
    return complete and not _other_version(doc, source, version)


def _other_version(doc: dict, source: str, version: str) -> bool:
    """Whether a manifest holds an entry written by ``source`` at another version."""
    entries = (doc.get("entries") or {}).values()
    return any(e.get("source") == source and e.get("version") != version for e in entries)


def ingest_options(
    dep: Deployment, from_dir: Path | None = None, force: bool = False
) -> IngestOptions:
    """The deployment's ingest options (raw folder, retries), reading ``from_dir`` if given."""
    cfg = dep.settings.sources
    return IngestOptions(dep.raw_dir, from_dir, force, cfg.keep_raw,
                         Retry(cfg.fetch_attempts, cfg.fetch_backoff_s),
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
    a day is a ``failed`` line (and recorded in the cube day manifest), not an exception."""
    check_names(tuple(names))
    s = dep.settings
    cube = dep.open_cube()
    lines: list[IngestLine] = []
    gridded = tuple(n for n in names if n in GRIDDED)
    if gridded:
        reports = ingest_range(cube, dep.gridded_sources(gridded, cube), first, last, dep.grid,
                               dep.domain, ingest_options(dep, from_dir, force))  # fmt: skip
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
