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
    """Read ``source``'s stations for ``start..end`` and write those inside ``domain``.

    Files come from ``from_dir`` (``ingest --from``), else the source's configured archive
    (``options.archive``), else a fetch into ``workdir``; folders are only read. Every station
    or sensor left out is in ``skipped`` with why (unreadable, depth, no valid day in the
    window, outside the domain, a year without files); the outcome fails only when no year
    gave a station.
    """
    out = InsituOutcome(source.name, start, end, "complete", version=source.version(end))
    folder = from_dir or getattr(source.options, "archive", None)
    where = Path(folder) if folder is not None else workdir / source.name
    seen: set[tuple[Path, ...]] = set()
    written: set[str] = set()
    errors: list[str] = []
    try:
        for year in range(start.year, end.year + 1):
            day = max(start, dt.date(year, 1, 1))
            try:
                if folder is not None:
                    granule = source.local(day, Path(folder))
                else:
                    where.mkdir(parents=True, exist_ok=True)
                    granule = source.fetch(day, where)
                if granule.files in seen:  # one archive serves every year (ISMN)
                    continue
                seen.add(granule.files)
                got = source.read(granule, regions=regions, start=start, end=end)
            except SourceError as exc:  # this year has no file or no station with data
                errors.append(f"{type(exc).__name__}: {exc}")
                out.skipped += getattr(exc, "skipped", None) or [(where, f"{year}: {exc}")]
                continue
            out.skipped += [(where, note) for note in granule.notes]
            out.skipped += got.skipped
            data, outside = _inside(got.data, grid, domain)
            out.skipped += [(_first_file(got.sites, site), why) for site, why in outside]
            if data.sizes["site"]:
                cube.write_insitu(data, source=source.name, version=granule.version)
                written.update(str(s) for s in data["site"].values)
    except (CubeError, OSError) as exc:
        errors, out.status = [f"{type(exc).__name__}: {exc}"], "failed"
    out.n_sites = len(written)
    if errors and (out.status == "failed" or not written):
        out.status, out.error = "failed", redact(errors[0])
        log.error("%s %s..%s: %s", source.name, start, end, out.error)
    for path, reason in out.skipped:
        log.info("%s: skipped %s: %s", source.name, path, reason)
    return out


def _inside(data, grid: EaseGrid, domain: Window):
    """The sites of ``data`` whose cell lies in ``domain``, and (site, why) of the others."""
    lon, lat = np.asarray(data["lon"], float), np.asarray(data["lat"], float)
    keep = np.zeros(lon.shape, dtype=bool)
    for i, (x, y) in enumerate(zip(lon, lat, strict=True)):
        try:
            row, col = grid.lonlat_to_rowcol(np.array([x]), np.array([y]))
        except GridError:
            continue
        keep[i] = domain.contains(Window(int(row[0]), int(col[0]), 1, 1))
    outside = [
        (str(site), f"{site} at lat {y:.4f}, lon {x:.4f}: outside the domain")
        for site, x, y, k in zip(data["site"].values, lon, lat, keep, strict=True)
        if not k
    ]
    return data.isel(site=np.nonzero(keep)[0]), outside


def _first_file(sites, site: str) -> Path:
    """The first file a reader used for ``site`` (its ``file`` column, ``; ``-separated)."""
    return Path(str(sites.loc[site, "file"]).split("; ")[0])


def ingest_static(
    cube: Cube,
    options: Mapping[str, Any],
    grid: EaseGrid,
    domain: Window,
    *,
    raw_dir: Path | None = None,
    client: Any = None,
) -> str:
    """Derive the 17 statics and write them; return the version recorded.

    Rasters the operator configured (``sources.options.static.<field>``) are used as they
    are; the others come from the default providers (Copernicus GLO-90, SoilGrids, ESA
    WorldCover: ``options.archive``, else downloaded with ``client`` and cached under
    ``raw_dir/static``, by default the ``raw`` folder beside the cube; NDVI: the MOD13A3 mean
    over the long-term period, from the archive or Earthdata). The long-term means come from
    the cube.
    """
    from gsm3_ops.sources.static import StaticOptions, static_attributes
    from gsm3_ops.sources.static_defaults import default_rasters

    try:
        opts = StaticOptions(**dict(options))
    except ValueError as exc:
        raise SourceError(f"sources.options.static: {exc}") from None
    raw = Path(raw_dir) if raw_dir is not None else Path(cube.path).parent / "raw"
    filled, used = default_rasters(opts, grid, domain, raw, client)
    ds = static_attributes(filled, cube, grid, domain)
    version = "rasters:" + ",".join(f"{k}={v}" for k, v in sorted(used.items()))
    cube.write_static(ds, source="static", version=version)
    return version
