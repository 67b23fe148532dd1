"""MSWEP file names and folders as GloH2O delivers them, and which files fill a day.

GloH2O shares ``MSWEP_V280/<product>/<cadence>/``: products ``Past`` (gauge-corrected),
``Past_nogauge`` and ``NRT``; cadences ``Daily`` (``YYYYDDD.nc``, day of year), ``3hourly``
(``YYYYDDD.HH.nc``, HH = 00, 03, ... 21, the UTC hour the 3 hours start) and ``Monthly``
(``YYYYMM.nc``). A day is one daily file, or the eight 3-hourly files of the day summed;
monthly totals cannot give a day and are not recognised. The product is the nearest folder
above a file named like one (any depth, any other folders in between); a file outside such
a folder has no known product.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PRODUCTS = ("Past", "Past_nogauge", "NRT")
THREE_HOURS = tuple(range(0, 24, 3))
_NAME = re.compile(r"^(?P<year>\d{4})(?P<doy>\d{3})(?:\.(?P<hour>\d{2}))?\.nc$")
_PRODUCT_OF = {p.lower(): p for p in PRODUCTS}


@dataclass(frozen=True)
class MswepFile:
    """What an MSWEP file's name and folder say."""

    path: Path
    day: dt.date
    hour: int | None  # the 3-hourly interval's start hour (UTC); None for a daily file
    product: str | None  # Past, Past_nogauge, NRT; None when no folder says


def day_of(name: str) -> tuple[dt.date, int | None] | None:
    """(day, start hour or None) of a daily or 3-hourly MSWEP file name, else None."""
    m = _NAME.match(name)
    if m is None:
        return None
    year, doy = int(m["year"]), int(m["doy"])
    hour = None if m["hour"] is None else int(m["hour"])
    if not 1 <= doy <= (366 if _leap(year) else 365) or (
        hour is not None and hour not in THREE_HOURS
    ):
        return None
    return dt.date(year, 1, 1) + dt.timedelta(days=doy - 1), hour


def span_of(path: Path) -> tuple[dt.date, dt.date] | None:
    """The UTC day an MSWEP file covers, from its name (for ``ArchiveIndex``)."""
    found = day_of(Path(path).name)
    return None if found is None else (found[0], found[0])


def parse(path: Path, root: Path) -> MswepFile | None:
    """The facts of a file under ``root``, or None when it is not a daily or 3-hourly file."""
    found = day_of(Path(path).name)
    if found is None:
        return None
    try:
        folders = Path(path).relative_to(root).parts[:-1]
    except ValueError:
        folders = Path(path).parts[:-1]
    products = [_PRODUCT_OF[f.lower()] for f in folders if f.lower() in _PRODUCT_OF]
    return MswepFile(Path(path), found[0], found[1], products[-1] if products else None)


def choose(
    files: Iterable[MswepFile], day: dt.date, products: Sequence[str | None]
) -> tuple[str | None, tuple[Path, ...]] | None:
    """The first of ``products`` (None: files of no known product) with the day complete:
    its daily file, else its eight 3-hourly files (sorted by hour)."""
    files = [f for f in files if f.day == day]
    for product in products:
        mine = sorted((f for f in files if f.product == product), key=lambda f: str(f.path))
        daily = [f for f in mine if f.hour is None]
        if daily:
            return product, (daily[0].path,)
        hours = {f.hour: f.path for f in reversed(mine) if f.hour is not None}
        if set(hours) == set(THREE_HOURS):
            return product, tuple(hours[h] for h in THREE_HOURS)
    return None


def complete_days(files: Iterable[MswepFile], products: Sequence[str | None]) -> list[dt.date]:
    """The days, sorted, that one of ``products`` holds complete."""
    days: set[dt.date] = set()
    hours: dict[tuple[dt.date, str | None], set[int]] = {}
    for f in files:
        if f.product not in products:
            continue
        if f.hour is None:
            days.add(f.day)
        else:
            hours.setdefault((f.day, f.product), set()).add(f.hour)
    days |= {d for (d, _), h in hours.items() if h == set(THREE_HOURS)}
    return sorted(days)


def is_three_hourly(path: Path) -> bool:
    """Whether ``path`` is named like a 3-hourly MSWEP file."""
    found = day_of(Path(path).name)
    return found is not None and found[1] is not None


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
