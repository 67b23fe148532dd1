"""ISMN soil moisture files -> the ``insitu`` target (one sensor near 5 cm per station).

The files themselves (``.stm`` formats, station static variables) are read by
:mod:`gsm3_ops.sources.ismn_files`. Only values whose every flag is in ``good_flags``
(default ``G``) are kept; the daily value is the mean over the UTC day of at least
``min_hours`` valid hours. Per station the sensor nearest 5 cm whose depth lies within
``shallowest..deepest`` is used (see :func:`gsm3_ops.sources.insitu.depth_rank`); every
other soil-moisture sensor and every station without a valid day is listed in ``skipped``
with the reason. ISMN has no download API: the files come from a local archive
(``options.archive``) or ``ingest --from``.
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
from gsm3_ops.sources.archive import ArchiveIndex
from gsm3_ops.sources.base import CorruptFileError, DateNotServedError, Granule
from gsm3_ops.sources.insitu import (
    InsituRead,
    NoStationError,
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
    FileName,
    IsmnFile,
    file_span,
    member_span,
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
            continue  # another variable (soil temperature, precipitation): not a candidate
        why = _not_a_candidate(name, opts)
        if why:
            label = _label(name.network, name.station, _sensor(name))
            skipped.append((entry.path, f"{label}: {why}"))
            continue
        station = stations.setdefault((name.network, name.station), {})
        station.setdefault(_sensor(name), []).append(entry)

    series: dict[str, pd.Series] = {}
    rows: dict[str, dict[str, Any]] = {}
    for key in sorted(stations):
        candidates = sorted(
            stations[key].items(),
            key=lambda kv: (depth_rank(kv[0][1], kv[0][2], preferred=opts.preferred_depth), kv[0]),
        )
        picked = _pick(key, candidates, opts, start, end, skipped)
        if picked is None:
            continue
        meta, daily = picked
        site = f"ISMN:{meta['network']}:{meta['station']}"
        series[site] = daily
        static = statics.get(Path(meta["file"].split("; ")[0]).parent)
        rows[site] = {**meta, **_statics(static, skipped)}
    if not series:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:5]) or "no ISMN data files"
        raise NoStationError(f"ISMN: no site with valid data ({reasons})", skipped)
    sites = pd.DataFrame.from_dict(rows, orient="index")
    sites.index.name = "site"
    data = to_dataarray(series, sites, regions or default_regions(), source=NAME)
    return InsituRead(data=data, sites=sites, skipped=skipped)


Sensor = tuple[str, float, float]  # sensor name, depth_from, depth_to (m)


def _sensor(name: FileName) -> Sensor:
    return (name.sensor, name.depth_from, name.depth_to)


def _label(network: str, station: str, sensor: Sensor) -> str:
    """``station NET:STATION sensor NAME 0.05-0.05 m``: how a left-out sensor is named."""
    return f"station {network}:{station} sensor {sensor[0]} {sensor[1]:g}-{sensor[2]:g} m"


def _not_a_candidate(name: FileName, opts: Options) -> str | None:
    """Why a soil-moisture file's sensor is never used (depth, sensor type), else None."""
    if not depth_allowed(name.depth_from, name.depth_to, shallowest=opts.shallowest,
                         deepest=opts.deepest):  # fmt: skip
        return f"depth outside {opts.shallowest:g}..{opts.deepest:g} m"
    pattern = excluded_sensor(name.sensor, opts.exclude_sensors)
    if pattern:
        return f"excluded sensor type ({pattern!r} in sources.options.ismn.exclude_sensors)"
    return None


def _pick(
    station: tuple[str, str],
    candidates: list[tuple[Sensor, list[RawFile]]],
    opts: Options,
    start: dt.date | None,
    end: dt.date | None,
    skipped: list[tuple[Path, str]],
) -> tuple[dict[str, Any], pd.Series] | None:
    """The first candidate sensor (best depth first) with a valid day: (metadata, daily).

    Every other candidate is listed in ``skipped`` with why it was not used; a station with
    no usable sensor is listed once, on its first readable file.
    """
    no_day = f"no day with {opts.min_hours} valid hours (flags {','.join(opts.good_flags)})"
    window = f"{start or '...'}..{end or '...'}"
    tried: list[tuple[Sensor, Path, str]] = []  # readable candidates without a valid day
    for at, (sensor, entries) in enumerate(candidates):
        files = _parse(entries, skipped)
        if not files:
            continue
        records = pd.concat([f.records for f in files]).sort_index(kind="stable")
        records = records[~records.index.duplicated(keep="first")]
        every_day = IsmnFile(records, files[0].meta).daily(opts.good_flags, opts.min_hours)
        daily = every_day
        if start is not None:
            daily = daily[daily.index >= pd.Timestamp(start)]
        if end is not None:
            daily = daily[daily.index <= pd.Timestamp(end)]
        problem = range_problem(daily)
        if problem:
            skipped.extend((e.path, problem) for e in entries)
            continue
        if daily.notna().any():
            used = f"not used: sensor {sensor[0]} {sensor[1]:g}-{sensor[2]:g} m ranks first"
            skipped.extend((path, f"{_label(*station, s)}: {why}") for s, path, why in tried)
            skipped.extend((es[0].path, f"{_label(*station, s)}: {used}")
                           for s, es in candidates[at + 1 :])  # fmt: skip
            meta = dict(files[0].meta, file="; ".join(f.meta["file"] for f in files))
            return meta, daily
        valid = every_day.dropna().index
        why = (f"no valid day in {window} (valid days {valid[0]:%Y-%m-%d}..{valid[-1]:%Y-%m-%d})"
               if len(valid) else no_day)  # fmt: skip
        tried.append((sensor, entries[0].path, why))
    if tried:
        in_window = any(why.startswith("no valid day in") for *_, why in tried)
        why = f"no valid day in {window}" if in_window else no_day
        skipped.append((tried[0][1], f"station {station[0]}:{station[1]}: {why} at any sensor"))
    return None


def _parse(entries: list[RawFile], skipped: list[tuple[Path, str]]) -> list[IsmnFile]:
    """The sensor's files read; each one that does not read is listed in ``skipped``."""
    files: list[IsmnFile] = []
    for entry in entries:
        try:
            files.append(parse_text(entry.load(), entry.path))
        except (CorruptFileError, OSError) as exc:
            log.warning("ISMN: skipping %s: %s", entry.path, exc)
            skipped.append((entry.path, str(exc)))
    return files


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

    ISMN has no download API for this product, so the operator places the download (zip or
    extracted) in a folder, ``sources.options.ismn.archive`` (or ``ingest --from``); ``local``
    finds it and ``read`` gives the ``insitu`` target. With an archive, ``first_date`` and
    ``latest_date`` are the days of its first and last records.
    """

    name = NAME
    provides: tuple[str, ...] = ("insitu",)
    Options = Options

    def __init__(self, options: Options | None = None, client: Any = None) -> None:
        self.options = options or Options()  # ``client`` is accepted and unused: no API
        archive = self.options.archive
        self._index = None if archive is None else ArchiveIndex(archive, NAME, self._span_of)

    def first_date(self) -> dt.date:
        """The earliest date the source serves: with an archive, its first record's day."""
        if self._index is None:
            return self.options.first_date
        return self._archive_span()[0]

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day, as of ``today``, that a fresh ISMN download can hold; with an
        archive, its last record's day."""
        if self._index is None:
            return today - dt.timedelta(days=self.options.latency_days)
        return self._archive_span()[1]

    def _archive_span(self) -> tuple[dt.date, dt.date]:
        return self._index.span(f"{self.options.variable!r} data file within the depth range")

    def _span_of(self, path: Path) -> tuple[dt.date, dt.date] | None:
        """The days of a candidate data file (or of every candidate in a zip archive)."""
        if path.suffix.lower() == ".stm":
            return file_span(path) if self._candidate(path.name) else None
        if path.suffix.lower() != ".zip" or not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            spans = [member_span(archive, m) for m in archive.namelist()
                     if m.lower().endswith(".stm") and self._candidate(Path(m).name)]  # fmt: skip
        spans = [s for s in spans if s is not None]
        return (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None

    def _candidate(self, file_name: str) -> bool:
        name = parse_file_name(file_name)
        return (name is not None and name.variable == self.options.variable
                and _not_a_candidate(name, self.options) is None)  # fmt: skip

    def version(self, day: dt.date) -> str:
        """The product recorded in the day manifest."""
        return VERSION

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """ISMN has no download API: always a SourceError saying where to put the files."""
        raise SourceError(
            "ISMN has no download API: download the data at https://ismn.earth and set "
            "sources.options.ismn.archive to the folder (or pass --from)"
        )

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The ISMN files (``.stm``, station CSVs, zip archives) under ``directory``, an
        ISMN download as delivered (zip or extracted, any folder depth)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise DateNotServedError(f"ISMN: the folder {directory} does not exist")
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
