"""ERA5 and ERA5-Land files as the CDS delivers them: what each holds, which days it fills.

A file is GRIB, netCDF or a CDS zip of them (the new CDS zips one netCDF per step type, its
daily-statistics datasets one netCDF per variable), and may span any days: a week or a month
of hourly steps, or of daily statistics. A variable's day is made of:

- ``INSTANT`` (2 m temperature ...): the 24 hourly values 00..23 UTC of the day, or the one
  daily-statistics step stamped 00 UTC of the day (the CDS daily-mean apps);
- ``HOURLY_SUM`` (ERA5 precipitation): the 24 accumulations valid 01..24 UTC, each over the
  hour ending at its valid time, so the last lies in the next day (or a daily-statistics step);
- ``FROM_00`` (ERA5-Land radiation): the accumulation since 00 UTC valid at 00 UTC of the next
  day (ERA5-Land's daily statistics have no accumulated variables).

The steps of one day may come from two files (a month file and the next one). A daily-
statistics file is told by its ``history`` (the CDS app's ``daily_reduce`` line, which also
gives its ``time_shift``, i.e. the time zone) or, for files without one, by a name that says
``daily`` with every step at 00 UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from gsm3_ops.errors import SourceError
from gsm3_ops.sources import grib
from gsm3_ops.sources.archive import ArchiveIndex, Span
from gsm3_ops.sources.base import CorruptFileError, DateNotServedError

log = logging.getLogger(__name__)

INSTANT, HOURLY_SUM, FROM_00 = "instant", "hourly_sum", "from_00"
_HOUR, _DAY = np.timedelta64(1, "h"), np.timedelta64(1, "D")
_TIME = "valid_time"
# The CDS daily-statistics app: "daily_reduce(<var>, how=mean, **{'time_shift': {'hours': 5} ..."
_REDUCE = re.compile(r"daily_reduce\(.*?how=(\w+)")
_SHIFT = re.compile(r"time_shift\W+hours\W+(-?\d+)")
_NAME_STAT = re.compile(r"daily[-_](mean|sum|max|min)")  # the CDS names: t2m_0_daily-mean.nc
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{8})(?!\d)")
# ERA5-Land's native grid is 0.1 degree, ERA5's 0.25: files between are taken as ERA5's.
FINE_STEP = 0.2
_CACHE_FIELDS = 48  # loaded (file, variable) fields kept: a month of a demo window is ~1 MB


@dataclass(frozen=True)
class Need:
    """A variable a source reads: its netCDF name and how its day is made (module docstring)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Part:
    """One GRIB or netCDF file, or one member of a CDS zip, and what it holds."""

    path: Path
    member: str | None
    inv: grib.Inventory
    daily: bool  # CDS daily statistics: one step a day, stamped 00 UTC
    statistic: str | None  # daily statistics: "mean", "sum", "max" ...; None if unstated
    shift: int | None  # daily statistics: the app's time_shift in hours; None if unstated

    @property
    def label(self) -> str:
        """The file, or ``zip!member``, as error messages name it."""
        return f"{self.path}!{self.member}" if self.member else str(self.path)

    def zone(self, need: Need) -> int | None:
        """Hours east of UTC of the days of a daily-statistics part (None: not stated).

        The CDS shifts accumulations one hour less than the zone (they end at their stamp).
        """
        if self.shift is None:
            return None
        return self.shift + (1 if need.kind != INSTANT else 0)

    def steps(self, need: Need) -> np.ndarray:
        return self.inv.times.get(need.name, np.array([], dtype="datetime64[ns]"))


def zone_label(hours: int) -> str:
    """``5`` -> ``UTC+05:00``."""
    return f"UTC{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"


def parts_of(path: Path) -> list[Part]:
    """The parts of a file (itself, or each member of a zip), with their inventories.

    Raises
    ------
    CorruptFileError
        The file or a member is unreadable (named).
    """
    path = Path(path)
    if not grib.is_zip(path):
        return [_part(path, None, grib.inventory(path))]
    try:
        with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
            out = []
            for info in zf.infolist():
                if info.is_dir():
                    continue
                extracted = Path(zf.extract(info, tmp))
                label = f"{path}!{info.filename}"
                inv = _relabel(grib.inventory, extracted, label)
                out.append(_part(path, info.filename, inv))
            return out
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(f"{path}: cannot unpack the zip archive ({exc})") from None


def load(part: Part, name: str) -> xr.DataArray:
    """One variable of a part, (valid_time, latitude, longitude) float32, in memory."""
    if part.member is None:
        return grib.open_fields(part.path, [name]).data[name].load()
    try:
        with zipfile.ZipFile(part.path) as zf, tempfile.TemporaryDirectory() as tmp:
            extracted = Path(zf.extract(part.member, tmp))
            fields = _relabel(grib.open_fields, extracted, part.label, [name])
            return fields.data[name].load()
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise CorruptFileError(f"{part.path}: cannot unpack the zip archive ({exc})") from None


def wanted(need: Need, day: dt.date, daily: bool) -> np.ndarray:
    """The valid times that make ``day`` of ``need`` from hourly (or daily-statistics) steps."""
    start = np.datetime64(day.isoformat(), "ns")
    if need.kind == FROM_00:
        return np.array([start + _DAY])
    if daily:
        return np.array([start])
    first = 1 if need.kind == HOURLY_SUM else 0
    return start + np.arange(first, first + 24) * _HOUR


def days_touched(part: Part, need: Need) -> np.ndarray:
    """The days (datetime64[D]) the part's steps of ``need`` belong to."""
    t = part.steps(need)
    if need.kind == INSTANT or (part.daily and need.kind == HOURLY_SUM):
        return t.astype("datetime64[D]")
    return (t - _HOUR).astype("datetime64[D]")  # accumulations end at their stamp


def complete_days(parts: Iterable[Part], need: Need) -> set[dt.date]:
    """The days every step of which ``parts`` hold for ``need``."""
    days: set[np.datetime64] = set()
    hourly = []
    for p in parts:
        if need.name not in p.inv.times:
            continue
        if p.daily and need.kind != FROM_00:
            days |= set(days_touched(p, need))
        else:
            hourly.append(p.steps(need))
    if hourly:
        t = np.unique(np.concatenate(hourly))
        t = t[(t - t.astype("datetime64[h]")) == np.timedelta64(0, "ns")]  # on the hour
        if need.kind == FROM_00:
            t = t[t == t.astype("datetime64[D]")]
            days |= set((t - _DAY).astype("datetime64[D]"))
        else:
            shifted = t - _HOUR if need.kind == HOURLY_SUM else t
            d, n = np.unique(shifted.astype("datetime64[D]"), return_counts=True)
            days |= set(d[n == 24])
    return {d.astype(dt.date) for d in days}


def choose(parts: Iterable[Part], need: Need, day: dt.date) -> list[Part]:
    """The parts that together hold every step of ``day`` of ``need`` (a daily-statistics
    part first, else hourly parts); an empty list when the day is not complete."""
    held = [p for p in parts if need.name in p.inv.times]
    if need.kind != FROM_00:
        for p in held:
            if p.daily and np.isin(wanted(need, day, True), p.steps(need)).all():
                return [p]
    want = wanted(need, day, False)
    use = [
        p
        for p in held
        if not (p.daily and need.kind != FROM_00) and np.isin(p.steps(need), want).any()
    ]
    have = np.concatenate([p.steps(need) for p in use]) if use else np.array([], "M8[ns]")
    return use if np.isin(want, have).all() else []


def expvers_at(parts: Iterable[Part], need: Need, day: dt.date) -> set[str]:
    """The expvers of the steps that make ``day`` of ``need`` in ``parts``."""
    out: set[str] = set()
    for p in parts:
        want = wanted(need, day, p.daily and need.kind != FROM_00)
        steps = p.steps(need)
        for e in p.inv.expvers.get(need.name, np.array([], str))[np.isin(steps, want)]:
            out |= set(str(e).split(",")) - {""}
    return out


class CdsFiles:
    """One source's view of CDS files: inventories and loaded fields (cached by path, size
    and modification time), and one :class:`ArchiveIndex` per folder."""

    def __init__(
        self, source: str, needs: Iterable[Need], fine_grid: bool, own_prefix: str
    ) -> None:
        self.source = source
        self.needs = tuple(needs)
        self.fine_grid = fine_grid
        self.own_prefix = own_prefix  # the names fetch gives: a broken one is dated by its name
        self._parts: dict[Path, tuple[tuple[int, int], list[Part]]] = {}
        self._broken: dict[Path, str] = {}
        self._fields: OrderedDict[tuple, xr.DataArray] = OrderedDict()
        self._indexes: dict[Path, ArchiveIndex] = {}
        self._lock = threading.RLock()

    # -- files -----------------------------------------------------------------------------------

    def parts(self, path: Path) -> list[Part]:
        """Every part of ``path`` (cached; raises :class:`CorruptFileError` when unreadable)."""
        path = Path(path)
        stat = path.stat() if path.is_file() else None
        key = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        with self._lock:
            known = self._parts.get(path)
            if known is not None and known[0] == key:
                return known[1]
        parts = parts_of(path)
        with self._lock:
            self._parts[path] = (key, parts)
        return parts

    def mine(self, parts: Iterable[Part]) -> list[Part]:
        """The parts holding one of the source's variables on its kind of grid."""
        names = {n.name for n in self.needs}
        return [
            p
            for p in parts
            if names & set(p.inv.times)
            and (p.inv.step is None or (p.inv.step < FINE_STEP) == self.fine_grid)
        ]

    def field(self, part: Part, name: str) -> xr.DataArray:
        """A part's variable, loaded once and kept while recently used."""
        stat = part.path.stat()
        key = (part.path, part.member, stat.st_size, stat.st_mtime_ns, name)
        with self._lock:
            if key in self._fields:
                self._fields.move_to_end(key)
                return self._fields[key]
        da = load(part, name)
        with self._lock:
            self._fields[key] = da
            while len(self._fields) > _CACHE_FIELDS:
                self._fields.popitem(last=False)
        return da

    # -- archives --------------------------------------------------------------------------------

    def span_of(self, path: Path) -> Span | None:
        """The (first, last) day a file touches with the source's variables; None when it is
        not one of the source's files. An unreadable GRIB, netCDF or zip file is remembered
        and, when named as fetch names the source's files (with a YYYYMMDD date), attributed
        to that day, so the day's error names it."""
        path = Path(path)
        if not _looks_like_cds(path):
            return None
        try:
            parts = self.mine(self.parts(path))
        except SourceError as exc:
            self._broken[path] = str(exc)
            dated = _DATE_IN_NAME.search(path.name)
            day = _parse_date(dated.group(1)) if dated else None
            if day is None or not path.name.startswith(self.own_prefix):
                log.warning("%s: skipping an unreadable archive file: %s", self.source, exc)
                self._broken.pop(path)
                return None
            return day, day
        self._broken.pop(path, None)
        days = [days_touched(p, n) for p in parts for n in self.needs if n.name in p.inv.times]
        days = [d for d in days if d.size]
        if not days:
            return None
        every = np.concatenate(days)
        return every.min().astype(dt.date), every.max().astype(dt.date)

    def index(self, folder: Path) -> ArchiveIndex:
        """The archive index of ``folder`` (one per folder, kept for the source's life)."""
        folder = Path(folder)
        with self._lock:
            if folder not in self._indexes:
                self._indexes[folder] = ArchiveIndex(folder, self.source, self.span_of)
            return self._indexes[folder]

    def day_files(self, day: dt.date, folder: Path) -> list[Path]:
        """The archive files that together hold every step of ``day`` of every variable.

        Raises
        ------
        DateNotServedError
            A variable's day is not complete in the archive (the folder is named).
        CorruptFileError
            An unreadable file is dated ``day`` by its name.
        """
        index = self.index(folder)
        files = index.files_for(day)
        for path in files:
            if path in self._broken:
                raise CorruptFileError(self._broken[path])
        parts = self.mine(p for f in files for p in self.parts(f))
        chosen: set[Path] = set()
        for need in self.needs:
            use = choose(parts, need, day)
            if not use:
                raise DateNotServedError(
                    f"{self.source}: no complete day of {need.name} for {day.isoformat()} "
                    f"in the archive {index.root}"
                )
            chosen |= {p.path for p in use}
        return sorted(chosen)

    def served(self, folder: Path) -> tuple[dt.date, dt.date]:
        """The first and last day whose every variable is complete in the archive."""
        index = self.index(folder)
        parts = self.mine(p for f in index.spans() if f not in self._broken for p in self.parts(f))
        days: set[dt.date] | None = None
        for need in self.needs:
            have = complete_days(parts, need)
            days = have if days is None else days & have
        if not days:
            raise DateNotServedError(
                f"{self.source}: the archive {index.root} holds no complete day"
            )
        return min(days), max(days)


def _part(path: Path, member: str | None, inv: grib.Inventory) -> Part:
    name = (member or path.name).lower()
    reduce = _REDUCE.search(inv.history)
    shift = _SHIFT.search(inv.history) if reduce else None
    at_midnight = all(t.size and (t == t.astype("datetime64[D]")).all() for t in inv.times.values())
    daily = bool(reduce) or ("daily" in name and bool(inv.times) and at_midnight)
    named = _NAME_STAT.search(name)
    statistic = reduce.group(1) if reduce else named.group(1) if named else None
    return Part(path, member, inv, daily, statistic, int(shift.group(1)) if shift else None)


def _looks_like_cds(path: Path) -> bool:
    """Whether the file starts as GRIB, netCDF (classic or HDF5) or zip does."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith((b"GRIB", b"\x89HDF", b"CDF", b"PK"))


def _relabel(func, extracted: Path, label: str, *args):
    """Call ``func(extracted, *args)``; errors name ``zip!member``, not the temporary file."""
    try:
        return func(extracted, *args)
    except SourceError as exc:
        raise type(exc)(str(exc).replace(str(extracted), label)) from None


def _parse_date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
