"""ISMN files: the per-sensor ``.stm`` data files and the station ``*_static_variables.csv``.

ISMN (International Soil Moisture Network, https://ismn.earth) delivers one ``.stm`` file
per sensor, named ``<NET>_<NET>_<station>_<var>_<from>_<to>_<sensor>_<start>_<end>.stm``
(the 2025 scheme adds ``_<i>_<j>`` after the sensor), in two formats:

- CEOP (``format_ceop_sep``): every line ``date time date time CSE network station lat lon
  elevation depth_from depth_to value ismn_flag provider_flag``;
- header + values: a header line ``CSE network station lat lon elevation depth_from depth_to
  sensor`` then ``date time value ismn_flag provider_flag`` lines.

Line ends may be CR, CRLF or LF; ISMN flags may be combined (``D02,D03``) and the provider
flag may be empty. Time stamps are UTC. Choosing a sensor per station and building the
``insitu`` target is :mod:`gsm3_ops.sources.ismn`.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsm3_ops.sources.base import CorruptFileError
from gsm3_ops.sources.insitu import daily_mean

_DATE = re.compile(r"^\d{4}/\d{2}/\d{2}$")
_RECORD = re.compile(rb"^\s*(\d{4})/(\d{2})/(\d{2}) \d{2}:\d{2}\s")
_EDGE_BYTES = 4096  # enough for the header and a few records at either end of a file
_STAMP = re.compile(r"^\d{8}$")
STATIC_QUANTITIES = {
    "saturation": "saturation",
    "clay fraction": "clay_fraction",
    "sand fraction": "sand_fraction",
    "silt fraction": "silt_fraction",
    "organic carbon": "organic_carbon",
}


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


# ------------------------------------------------------------------ the days a file covers

Span = tuple[dt.date, dt.date]


def _record_day(lines: Iterable[bytes]) -> dt.date | None:
    """The UTC day of the first line in ``lines`` that is a record (``yyyy/mm/dd HH:MM ...``)."""
    for line in lines:
        match = _RECORD.match(line + b" ")
        if match:
            try:
                return dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                continue
    return None


def record_span(head: bytes, tail: bytes) -> Span | None:
    """First and last UTC day of a data file from its first and last few kB (records run in
    time order in ISMN files), or None when no record is there. Any line ends."""
    first = _record_day(re.split(rb"[\r\n]+", head))
    last = _record_day(reversed(re.split(rb"[\r\n]+", tail)))
    return (first, last) if first is not None and last is not None else None


def file_span(path: Path) -> Span | None:
    """:func:`record_span` of a ``.stm`` file on disk, reading only its two ends."""
    with open(path, "rb") as f:
        head = f.read(_EDGE_BYTES)
        f.seek(0, io.SEEK_END)
        f.seek(max(0, f.tell() - _EDGE_BYTES))
        tail = f.read()
    return record_span(head, tail)


def member_span(archive: zipfile.ZipFile, member: str) -> Span | None:
    """:func:`record_span` of a ``.stm`` member of a zip archive (streamed, not extracted)."""
    with archive.open(member) as f:
        head = tail = f.read(_EDGE_BYTES)
        while chunk := f.read(1 << 20):
            tail = tail[-_EDGE_BYTES:] + chunk
    return record_span(head, tail[-2 * _EDGE_BYTES :])
