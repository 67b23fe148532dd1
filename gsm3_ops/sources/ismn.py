"""ISMN soil moisture files -> the ``insitu`` target (one sensor near 5 cm per station).

The files themselves (``.stm`` formats, station static variables) are read by
:mod:`gsm3_ops.sources.ismn_files`. Only values whose every flag is in ``good_flags``
(default ``G``) are kept; the daily value is the mean over the UTC day of at least
``min_hours`` valid hours. Per station the sensor nearest 5 cm whose depth lies within
``shallowest..deepest`` is used (see :func:`gsm3_ops.sources.insitu.depth_rank`).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gsm3_ops.config import BoxConfig
from gsm3_ops.errors import SourceError
from gsm3_ops.sources.base import CorruptFileError, Granule
from gsm3_ops.sources.insitu import (
    InsituRead,
    RawFile,
    default_regions,
    depth_allowed,
    depth_rank,
    excluded_sensor,
    range_problem,
    raw_files,
    to_dataarray,
)
from gsm3_ops.sources.ismn_files import (
    IsmnFile,
    parse_file_name,
    parse_text,
    read_static_variables,
)

log = logging.getLogger(__name__)

NAME = "ismn"
VERSION = "ISMN"


class Options(BaseModel):
    """ISMN settings (``sources.options.ismn``)."""

    model_config = ConfigDict(extra="forbid")
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

    variable: str = "sm"  # the file-name variable code
    shallowest: float = Field(0.0, ge=0)  # a sensor's depth_from must be >= this (m)
    deepest: float = Field(0.1, gt=0)  # ... and its depth_to <= this (m)
    preferred_depth: float = Field(0.05, ge=0)
    # Sensors left out whatever their depth (case-insensitive substrings of the sensor name):
    # cosmic-ray probes see a footprint of hectares and tens of centimetres, not 5 cm.
    exclude_sensors: tuple[str, ...] = ("cosmic",)
    good_flags: tuple[str, ...] = Field(("G",), min_length=1)
    min_hours: int = Field(12, ge=1, le=24)
    first_date: dt.date = dt.date(1950, 1, 1)  # the earliest start in ISMN file names
    latency_days: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _depths(self) -> Options:
        if not self.shallowest < self.deepest:
            raise ValueError("ismn options need shallowest < deepest")
        return self


# ------------------------------------------------------------------ directories -> target


def read_dir(
    directory: str | Path,
    opts: Options | None = None,
    *,
    regions: Mapping[str, BoxConfig] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> InsituRead:
    """Every ISMN data file under ``directory`` (or in a zip archive) -> the ``insitu`` target.

    One sensor per station: the candidates within the depth range, best
    :func:`~gsm3_ops.sources.insitu.depth_rank` first; files of the same sensor are joined. A
    file that does not read is listed in ``skipped`` with the reason and logged with its path,
    and the next candidate is tried; so is a station with no valid day at any sensor.
    """
    return read_paths([Path(directory)], opts, regions=regions, start=start, end=end)


def read_paths(
    paths: Iterable[Path],
    opts: Options | None = None,
    *,
    regions: Mapping[str, BoxConfig] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> InsituRead:
    """Like :func:`read_dir` over several directories, zip archives or single files."""
    opts = opts or Options()
    entries: list[RawFile] = []
    skipped: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            entries += raw_files(p)
        elif p.suffix.lower() == ".zip":
            try:
                entries += raw_files(p)
            except (ValueError, zipfile.BadZipFile, OSError) as exc:
                log.warning("ISMN: skipping archive %s: %s", p, exc)
                skipped.append((p, f"unreadable zip archive: {exc}"))
        elif p.is_file():
            entries.append(RawFile(p, p.read_bytes))
        else:
            raise SourceError(f"ISMN: {p} is neither a directory, a zip archive nor a file")
    statics = {e.path.parent: e for e in entries if e.path.name.endswith("_static_variables.csv")}
    stations: dict[tuple[str, str], dict[tuple, list[RawFile]]] = {}
    for entry in entries:
        if entry.path.suffix.lower() != ".stm":
            continue
        name = parse_file_name(entry.path.name)
        if name is None:
            skipped.append((entry.path, "not an ISMN data file name"))
            continue
        if name.variable != opts.variable:
            continue
        if not depth_allowed(name.depth_from, name.depth_to, shallowest=opts.shallowest,
                             deepest=opts.deepest):  # fmt: skip
            log.debug("ISMN: %s outside the depth range", entry.path)
            continue
        if excluded_sensor(name.sensor, opts.exclude_sensors):
            log.debug("ISMN: %s is an excluded sensor", entry.path)
            continue
        sensor = (name.sensor, name.depth_from, name.depth_to)
        stations.setdefault((name.network, name.station), {}).setdefault(sensor, []).append(entry)

    series: dict[str, pd.Series] = {}
    rows: dict[str, dict[str, Any]] = {}
    for key in sorted(stations):
        candidates = sorted(
            stations[key].items(),
            key=lambda kv: (depth_rank(kv[0][1], kv[0][2], preferred=opts.preferred_depth), kv[0]),
        )
        n_skipped = len(skipped)
        picked = _first_with_data(candidates, opts, start, end, skipped)
        if picked is None:
            unread = {p for p, _ in skipped[n_skipped:]}
            readable = [e.path for _, es in candidates for e in es if e.path not in unread]
            if not readable:  # every file is already listed with its own reason
                continue
            first = readable[0]
            flags = ",".join(opts.good_flags)
            why = f"no day with {opts.min_hours} valid hours (flags {flags}) at any sensor"
            skipped.append((first, f"station {key[0]}:{key[1]}: {why}"))
            continue
        meta, daily = picked
        site = f"ISMN:{meta['network']}:{meta['station']}"
        series[site] = daily
        static = statics.get(Path(meta["file"]).parent)
        rows[site] = {**meta, **_statics(static, skipped)}
    if not series:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:5]) or "no ISMN data files"
        raise SourceError(f"ISMN: no site with valid data ({reasons})")
    sites = pd.DataFrame.from_dict(rows, orient="index")
    sites.index.name = "site"
    data = to_dataarray(series, sites, regions or default_regions(), source=NAME)
    return InsituRead(data=data, sites=sites, skipped=skipped)


def _first_with_data(
    candidates: list[tuple[tuple, list[RawFile]]],
    opts: Options,
    start: dt.date | None,
    end: dt.date | None,
    skipped: list[tuple[Path, str]],
) -> tuple[dict[str, Any], pd.Series] | None:
    """The first candidate sensor (metadata, daily series) with a valid day, else None."""
    for _, entries in candidates:
        files: list[IsmnFile] = []
        for entry in entries:
            try:
                files.append(parse_text(entry.load(), entry.path))
            except (CorruptFileError, OSError) as exc:
                log.warning("ISMN: skipping %s: %s", entry.path, exc)
                skipped.append((entry.path, str(exc)))
        if not files:
            continue
        records = pd.concat([f.records for f in files]).sort_index(kind="stable")
        records = records[~records.index.duplicated(keep="first")]
        daily = IsmnFile(records, files[0].meta).daily(opts.good_flags, opts.min_hours)
        if start is not None:
            daily = daily[daily.index >= pd.Timestamp(start)]
        if end is not None:
            daily = daily[daily.index <= pd.Timestamp(end)]
        meta = dict(files[0].meta, file="; ".join(f.meta["file"] for f in files))
        problem = range_problem(daily)
        if problem:
            skipped.extend((e.path, problem) for e in entries)
            continue
        if daily.notna().any():
            return meta, daily
    return None


def _statics(entry: RawFile | None, skipped: list[tuple[Path, str]]) -> dict[str, Any]:
    """The station's static variables, or an empty dict (noted in ``skipped`` when broken)."""
    if entry is None:
        return {}
    try:
        return read_static_variables(io.BytesIO(entry.load()), entry.path)
    except CorruptFileError as exc:
        log.warning("ISMN: %s", exc)
        skipped.append((entry.path, str(exc)))
        return {}


class IsmnSource:
    """ISMN data already downloaded (https://ismn.earth: an account, then a data request).

    ISMN has no download API for this product, so the operator places the archive (zip or
    extracted) in a folder; ``local`` finds it and ``read`` gives the ``insitu`` target.
    """

    name = NAME
    provides: tuple[str, ...] = ("insitu",)
    Options = Options

    def __init__(self, options: Options | None = None, client: Any = None) -> None:
        self.options = options or Options()  # ``client`` is accepted and unused: no API

    def first_date(self) -> dt.date:
        """The earliest date the source serves."""
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day, as of ``today``, that a fresh ISMN download can hold."""
        return today - dt.timedelta(days=self.options.latency_days)

    def version(self, day: dt.date) -> str:
        """The product recorded in the day manifest."""
        return VERSION

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The ISMN files (``.stm``, station CSVs, zip archives) under ``directory``."""
        directory = Path(directory)
        files = [p for p in sorted(directory.rglob("*"))
                 if p.suffix.lower() in (".stm", ".csv", ".zip") and p.is_file()]  # fmt: skip
        if not any(p.suffix.lower() in (".stm", ".zip") for p in files):
            raise SourceError(f"ISMN: no .stm file or zip archive under {directory}")
        return Granule(NAME, day, tuple(files), VERSION)

    def read(
        self,
        granule: Granule,
        regions: Mapping[str, BoxConfig] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> InsituRead:
        """The granule's files -> the ``insitu`` target (see :func:`read_dir`)."""
        return read_paths(granule.files, self.options, regions=regions, start=start, end=end)
