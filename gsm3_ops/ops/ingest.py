"""Fill the cube from the deployment's source: statics once, then the days that are missing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from gsm3_ops.cube import Cube
from gsm3_ops.cube_manifest import status_of
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.variables import feature_set

log = logging.getLogger(__name__)

# Days generated and written per block: large enough to amortise the source's set-up,
# small enough to bound memory for a global domain.
BLOCK_DAYS = 400


def _missing_runs(
    cube: Cube, start: dt.date, end: dt.date, source: str
) -> Iterator[tuple[dt.date, dt.date]]:
    """Contiguous runs (at most BLOCK_DAYS long) of days in start..end not yet ingested."""
    days = (start + dt.timedelta(i) for i in range((end - start).days + 1))
    missing = [d for d in days if not _ingested(cube, d, source)]
    run: list[dt.date] = []
    for day in missing:
        if run and ((day - run[-1]).days != 1 or len(run) >= BLOCK_DAYS):
            yield run[0], run[-1]
            run = []
        run.append(day)
    if run:
        yield run[0], run[-1]


def ensure_static(dep: Deployment, cube: Cube) -> None:
    """Write the static attributes when the cube does not have them all."""
    _, statics = _feature_names(dep)
    if set(statics) <= set(cube.variables("static")):
        return
    src = dep.source
    ds = src.static(dep.grid, dep.domain)
    cube.write_static(ds, source=src.name, version=src.version(dep.settings.cube.start))


def ensure_days(dep: Deployment, cube: Cube, start: dt.date, end: dt.date) -> int:
    """Ingest every day in start..end that is not complete in the cube; return how many."""
    ensure_static(dep, cube)
    src = dep.source
    n = 0
    for a, b in _missing_runs(cube, start, end, src.name):
        log.info("ingesting %s..%s from %s", a, b, src.name)
        version = src.version(b)
        cube.write("smap", src.smap(dep.grid, dep.domain, a, b).to_dataset(), source=src.name,
                   version=version)  # fmt: skip
        cube.write_insitu(src.insitu(dep.grid, dep.domain, a, b), source=src.name, version=version)
        # Forcing last: a day counts as ingested once its forcing is complete.
        cube.write("forcing", src.forcing(dep.grid, dep.domain, a, b), source=src.name,
                   version=version)  # fmt: skip
        n += (b - a).days + 1
    return n


def _feature_names(dep: Deployment) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return feature_set(dep.settings.model.feature_set)


def _ingested(cube: Cube, day: dt.date, source: str) -> bool:
    """Complete, with the forcing (written last) recorded: a crash before it means redo."""
    doc = cube.manifest(day)
    return status_of(doc) == "complete" and f"forcing/{source}" in doc["entries"]
