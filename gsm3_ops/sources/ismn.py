"""ISMN soil moisture files -> the ``insitu`` target (one sensor near 5 cm per station).

ISMN (International Soil Moisture Network, https://ismn.earth) delivers one ``.stm`` file
per sensor, named ``<NET>_<NET>_<station>_<var>_<from>_<to>_<sensor>_<start>_<end>.stm``
(the 2025 scheme adds ``_<i>_<j>`` after the sensor), in two formats:

- CEOP (``format_ceop_sep``): every line ``date time date time CSE network station lat lon
  elevation depth_from depth_to value ismn_flag provider_flag``;
- header + values: a header line ``CSE network station lat lon elevation depth_from depth_to
  sensor`` then ``date time value ismn_flag provider_flag`` lines.

Line ends may be CR, CRLF or LF; ISMN flags may be combined (``D02,D03``) and the provider
flag may be empty. Time stamps are UTC. Only values whose every flag is in ``good_flags``
(default ``G``) are kept; the daily value is the mean over the UTC day of at least
``min_hours`` valid hours. Per station the sensor nearest 5 cm whose depth lies within
``shallowest..deepest`` is used (see :func:`gsm3_ops.sources.insitu.depth_rank`).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gsm3_ops.config import BoxConfig
from gsm3_ops.sources.base import CorruptFileError, Granule, SourceError
from gsm3_ops.sources.insitu import (
    InsituRead,
    RawFile,
    daily_mean,
    default_regions,
    depth_allowed,
    depth_rank,
    excluded_sensor,
    range_problem,
    raw_files,
    to_dataarray,
)

log = logging.getLogger(__name__)

NAME = "ismn"
VERSION = "ISMN"
_DATE = re.compile(r"^\d{4}/\d{2}/\d{2}$")
_STAMP = re.compile(r"^\d{8}$")
STATIC_QUANTITIES = {
    "saturation": "saturation",
    "clay fraction": "clay_fraction",
    "sand fraction": "sand_fraction",
    "silt fraction": "silt_fraction",
    "organic carbon": "organic_carbon",
}


class Options(BaseModel):
    """ISMN settings (``sources.options.ismn``)."""

    model_config = ConfigDict(extra="forbid")

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


@dataclass(frozen=True)
class FileName:
    """The fields of an ISMN data file name."""

    network: str
    station: str
    variable: str
    depth_from: float
    depth_to: float
    sensor: str


def parse_file_name(name: str) -> FileName | None:
    """The fields of an ISMN ``.stm`` file name, or None when it is not one."""
    if not name.lower().endswith(".stm"):
        return None
    parts = name[:-4].split("_")
    if len(parts) < 9 or not (_STAMP.match(parts[-1]) and _STAMP.match(parts[-2])):
        return None
    try:
        depth_from, depth_to = float(parts[4]), float(parts[5])
    except ValueError:
        return None
    sensor = "_".join(parts[6:-2])
    return FileName(parts[1], parts[2], parts[3], depth_from, depth_to, sensor)


@dataclass(frozen=True)
class IsmnFile:
    """One ISMN data file read: records (UTC time, value, flag, provider flag) and metadata."""

    records: pd.DataFrame  # index time (UTC); columns value, flag, provider_flag
    meta: dict[str, Any]  # format, network, station, lat, lon, elevation, depths, sensor, file

    def daily(self, good_flags: Iterable[str] = ("G",), min_hours: int = 12) -> pd.Series:
        """Daily means (UTC days) of the values whose every flag is good."""
        good = set(good_flags)
        flags = self.records["flag"]
        # A combined flag (D02,D03) is good only when every code in it is.
        verdict = {f: bool(f) and set(f.split(",")) <= good for f in flags.unique()}
        ok = flags.map(verdict).to_numpy(dtype=bool)
        return daily_mean(self.records["value"][ok], min_hours)


def read_file(path: str | Path) -> IsmnFile:
    """Read one ISMN ``.stm`` file (either format, any line ends)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"ISMN file {path}: {exc}") from None
    return parse_text(raw, path)


def parse_text(raw: bytes, path: Path) -> IsmnFile:
    """Parse the bytes of an ISMN data file; ``path`` names it (and its fields) in errors."""
    name = parse_file_name(path.name)
    if name is None:
        raise CorruptFileError(f"ISMN file {path}: not an ISMN data file name")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"ISMN file {path}: not text: {exc}") from None
    lines = text.splitlines()  # CR, CRLF and LF alike
    first_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first_at is None:
        raise CorruptFileError(f"ISMN file {path}: empty")
    meta_fields = lines[first_at].split()
    if len(meta_fields) > 4 and _DATE.match(meta_fields[0]) and _DATE.match(meta_fields[2]):
        fmt, at = "ceop", _numbers_at(meta_fields, 6, path, first_at + 1)
        data_from, value_at = first_at, at + 5
    else:
        fmt, at = "header_values", _numbers_at(meta_fields, 3, path, first_at + 1)
        data_from, value_at = first_at + 1, 2
    if not any(line.strip() for line in lines[data_from:]):
        raise CorruptFileError(f"ISMN file {path}: a header and no data lines")
    records = _fast_records(lines[data_from:], value_at)
    if records is None:  # something is off: find the line and name it
        records = _checked_records(lines, data_from, value_at, fmt, path)
    lat, lon, elevation = (float(x) for x in meta_fields[at : at + 3])
    meta = {
        "format": fmt,
        "network": meta_fields[1] if fmt == "header_values" else meta_fields[5],
        "station": name.station,
        "station_name": " ".join(meta_fields[(6 if fmt == "ceop" else 2) : at]),
        "lat": lat,
        "lon": lon,
        "elevation": elevation,
        "depth_from": name.depth_from,
        "depth_to": name.depth_to,
        "sensor": name.sensor,
        "variable": name.variable,
        "file": str(path),
    }
    return IsmnFile(records, meta)


def _numbers_at(fields: list[str], start: int, path: Path, line: int) -> int:
    """Index of lat (the first of 5 numbers: lat lon elevation depth_from depth_to)."""
    for k in range(start, len(fields) - 4):
        try:
            [float(x) for x in fields[k : k + 5]]
        except ValueError:
            continue
        return k
    raise CorruptFileError(f"ISMN file {path}, line {line}: no lat lon elevation depths found")


def _frame(stamps: Any, values: np.ndarray, flags: Any, providers: Any) -> pd.DataFrame:
    times = pd.to_datetime(stamps, format="%Y/%m/%d %H:%M")
    index = pd.DatetimeIndex(times, name="time").as_unit("ns")
    data = {"value": values, "flag": flags, "provider_flag": providers}
    return pd.DataFrame({k: np.asarray(v) for k, v in data.items()}, index=index)


def _fast_records(lines: list[str], value_at: int) -> pd.DataFrame | None:
    """The records through pandas' C parser, or None when any line is off."""
    body = "\n".join(lines)
    try:
        table = pd.read_csv(
            io.StringIO(body), sep=r"\s+", header=None, names=list(range(value_at + 3)),
            dtype=str, na_filter=False, index_col=False, engine="c",
        )  # fmt: skip
        # Missing fields read as "": every token must be in a cell (none dropped as extra)
        # and every line needs its value and flag (only the provider flag may be empty).
        if (table != "").to_numpy().sum() != len(body.split()):
            return None
        if (table[value_at + 1] == "").any():
            return None
        return _frame(
            table[0] + " " + table[1],
            table[value_at].to_numpy().astype(np.float64),
            table[value_at + 1],
            table[value_at + 2],
        )
    except (ValueError, pd.errors.ParserError):
        return None


def _checked_records(
    lines: list[str], data_from: int, value_at: int, fmt: str, path: Path
) -> pd.DataFrame:
    """The records line by line; CorruptFileError naming the first bad line."""
    rows = [(n, line.split()) for n, line in enumerate(lines, 1) if n > data_from and line.strip()]
    for n, fields in rows:
        if len(fields) not in (value_at + 2, value_at + 3):
            raise CorruptFileError(
                f"ISMN file {path}, line {n}: {len(fields)} fields, expected {value_at + 3} "
                f"({fmt} format; {value_at + 2} when the provider flag is empty)"
            )
    stamps = pd.Series([f"{f[0]} {f[1]}" for _, f in rows])
    bad_time = pd.to_datetime(stamps, format="%Y/%m/%d %H:%M", errors="coerce").isna()
    bad_value = pd.to_numeric(pd.Series([f[value_at] for _, f in rows]), errors="coerce").isna()
    bad_value &= ~pd.Series([f[value_at].lower() == "nan" for _, f in rows])
    for i in np.flatnonzero((bad_time | bad_value).to_numpy())[:1]:
        n, fields = rows[i]
        if bad_time[i]:
            raise CorruptFileError(f"ISMN file {path}, line {n}: bad time {stamps[i]!r}")
        raise CorruptFileError(
            f"ISMN file {path}, line {n}: value {fields[value_at]!r} is not a number"
        )
    return _frame(
        [f"{f[0]} {f[1]}" for _, f in rows],
        np.array([f[value_at] for _, f in rows], dtype=np.float64),
        [f[value_at + 1] for _, f in rows],
        [f[value_at + 2] if len(f) > value_at + 2 else "" for _, f in rows],
    )


def read_static_variables(source: str | Path | io.BytesIO, path: Path | None = None) -> dict:
    """A station's ``*_static_variables.csv`` -> soil properties of its top layer (0 m down,
    HWSD), land cover (ESA CCI 2010) and Koeppen-Geiger climate; NaN or ``""`` where absent."""
    try:
        table = pd.read_csv(source, sep=";", dtype=str, index_col=False)
        quantity, top = table["quantity_name"], pd.to_numeric(table["depth_from[m]"], "coerce")
        value = pd.to_numeric(table["value"], errors="coerce")
        origin = table["quantity_source_name"]
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
        raise CorruptFileError(f"ISMN static variables {path or source}: {exc!r}") from None
    out: dict[str, Any] = {}
    for name, column in STATIC_QUANTITIES.items():
        hit = value[(quantity == name) & (top == 0.0)]
        out[column] = float(hit.iloc[0]) if len(hit) else np.nan
    for column, name, source_name in (
        ("landcover_2010", "land cover classification", "CCI_landcover_2010"),
        ("climate_kg", "climate classification", "koeppen_geiger_2007"),
    ):
        hit = table["value"][(quantity == name) & (origin == source_name)]
        out[column] = str(hit.iloc[0]) if len(hit) else ""
    return out


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
