"""Ingest the in-situ sources (ISMN, USCRN) and the static attributes into the cube.

In-situ files are read for a date range: each year's granule (USCRN serves one file per
station and year; ISMN one archive for all), sites outside the domain left out, the rest
written with ``Cube.write_insitu``. A malformed file is skipped and named; the good files
are still ingested. Statics are derived from the operator's rasters and the cube's own
long-term means, then written with ``Cube.write_static``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gsm3_ops.config import BoxConfig
from gsm3_ops.cube import Cube, CubeError
from gsm3_ops.errors import SourceError
from gsm3_ops.grid import EaseGrid, GridError, Window
from gsm3_ops.secrets import redact

log = logging.getLogger(__name__)


@dataclass
class InsituOutcome:
    """What an in-situ ingest did: sites written, files skipped (with why), or the error."""

    source: str
    start: dt.date
    end: dt.date
    status: str  # "complete" or "failed"
    n_sites: int = 0
    version: str | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    error: str | None = None


def ingest_insitu(
    cube: Cube,
    source: Any,
    start: dt.date,
    end: dt.date,
    grid: EaseGrid,
    domain: Window,
    regions: Mapping[str, BoxConfig],
    *,
    workdir: Path,
    from_dir: Path | None = None,
) -> InsituOutcome:
    """Read ``source``'s stations for ``start..end`` and write those inside ``domain``."""
    out = InsituOutcome(source.name, start, end, "complete", version=source.version(end))
    seen: set[tuple[Path, ...]] = set()
    try:
        for year in range(start.year, end.year + 1):
            day = max(start, dt.date(year, 1, 1))
            if from_dir is not None:
                granule = source.local(day, from_dir)
            else:
                (workdir / source.name).mkdir(parents=True, exist_ok=True)
                granule = source.fetch(day, workdir / source.name)
            if granule.files in seen:  # one archive serves every year (ISMN)
                continue
            seen.add(granule.files)
            got = source.read(granule, regions=regions, start=start, end=end)
            out.skipped += got.skipped
            data = _inside(got.data, grid, domain)
            if data.sizes["site"]:
                cube.write_insitu(data, source=source.name, version=granule.version)
                out.n_sites += data.sizes["site"]
    except (SourceError, CubeError, OSError) as exc:
        out.status, out.error = "failed", redact(f"{type(exc).__name__}: {exc}")
        log.error("%s %s..%s: %s", source.name, start, end, out.error)
    for path, reason in out.skipped:
        log.warning("%s: skipped %s: %s", source.name, path, reason)
    return out


def _inside(data, grid: EaseGrid, domain: Window):
    """The sites of ``data`` whose cell lies in ``domain``."""
    lon, lat = np.asarray(data["lon"], float), np.asarray(data["lat"], float)
    keep = np.zeros(lon.shape, dtype=bool)
    for i, (x, y) in enumerate(zip(lon, lat, strict=True)):
        try:
            row, col = grid.lonlat_to_rowcol(np.array([x]), np.array([y]))
        except GridError:
            continue
        keep[i] = domain.contains(Window(int(row[0]), int(col[0]), 1, 1))
    return data.isel(site=np.nonzero(keep)[0])


def ingest_static(cube: Cube, options: Mapping[str, Any], grid: EaseGrid, domain: Window) -> str:
    """Derive the 17 statics from the configured rasters and the cube; write them; version."""
    from gsm3_ops.sources.static import StaticOptions, static_attributes

    try:
        opts = StaticOptions(**dict(options))
    except ValueError as exc:
        raise SourceError(f"sources.options.static: {exc}") from None
    ds = static_attributes(opts, cube, grid, domain)
    version = "rasters:" + ",".join(
        f"{k}={Path(v).name}" for k, v in sorted(opts.model_dump().items())
        if isinstance(v, Path)
    )  # fmt: skip
    cube.write_static(ds, source="static", version=version)
    return version
