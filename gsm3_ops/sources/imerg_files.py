"""GPM IMERG file names as GES DISC delivers them, and which of a day's files fill it.

Original granules and the names GES DISC's services give them are recognised, in any folder:

- daily: ``3B-DAY[-E|-L].MS.MRG.3IMERG.20200101-S000000-E235959.V07B.nc4`` (V06: ``.V06.nc4``);
- half-hourly: ``3B-HHR.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V07B.HDF5`` (final) and
  ``3B-HHR-E...`` / ``3B-HHR-L....V07B.RT-H5`` (the near-real-time runs);
- the same names with the suffix a subset or conversion adds: ``...nc4.SUB.nc4`` and
  ``...HDF5.SUB.hdf5`` (the GES DISC subsetter), ``...HDF5.nc4``, ``...HDF5.dap.nc4``,
  ``...nc4.nc`` (OPeNDAP).

Monthly ``3B-MO`` files are not daily data and are not recognised.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Run = Literal["final", "late", "early"]
Kind = Literal["DAY", "HHR"]

HALF_HOURS = 48  # half-hourly granules in a UTC day
_RUN_OF_SUFFIX: dict[str, Run] = {"": "final", "-L": "late", "-E": "early"}
FILE_NAME = re.compile(
    r"^3B-(?P<kind>DAY|HHR)(?P<run>-[EL])?\.MS\.MRG\.3IMERG\.(?P<date>\d{8})"
    r"-S(?P<start>\d{6})-E\d{6}\.(?:\d{4}\.)?V(?P<version>\d{2})[A-Z]?"
    r"\.(?:nc4|nc|HDF5|h5|RT-H5)"
    r"(?P<derived>(?:\.SUB)?(?:\.dap)?\.(?:nc4|nc|hdf5|h5))?$",
    re.IGNORECASE,
)
EXAMPLE = "3B-DAY.MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V07B.nc4"


@dataclass(frozen=True)
class ImergFile:
    """What an IMERG file's name says: run, daily or half-hourly, day, start, version."""

    path: Path
    kind: Kind
    run: Run
    day: dt.date
    start_s: int  # seconds after 00 UTC at which the file's interval starts (0 for daily)
    version: str  # the two-digit algorithm version, e.g. "07"
    derived: bool  # a subset or format conversion of the original granule


def parse(path: Path) -> ImergFile | None:
    """The name's facts, or None when ``path`` is not named like an IMERG daily or
    half-hourly file."""
    m = FILE_NAME.match(Path(path).name)
    if m is None:
        return None
    try:
        day = dt.datetime.strptime(m["date"], "%Y%m%d").date()
    except ValueError:
        return None
    hh, mm, ss = int(m["start"][:2]), int(m["start"][2:4]), int(m["start"][4:])
    return ImergFile(
        path=Path(path),
        kind="DAY" if m["kind"].upper() == "DAY" else "HHR",
        run=_RUN_OF_SUFFIX[(m["run"] or "").upper()],
        day=day,
        start_s=hh * 3600 + mm * 60 + ss,
        version=m["version"],
        derived=bool(m["derived"]),
    )


def span_of(path: Path) -> tuple[dt.date, dt.date] | None:
    """The UTC day an IMERG file covers, from its name (for ``ArchiveIndex``)."""
    f = parse(path)
    return None if f is None else (f.day, f.day)


def needed_half_hours(min_coverage: float) -> int:
    """Half-hourly files a day needs to count as complete."""
    return math.ceil(min_coverage * HALF_HOURS - 1e-9)


@dataclass(frozen=True)
class Choice:
    """The files chosen for a day: one run, one cadence, one version."""

    run: Run
    kind: Kind
    version: str
    files: tuple[Path, ...]
    skipped: tuple[str, ...]  # better runs that were not complete on disk


def choose(
    files: Iterable[ImergFile],
    day: dt.date,
    runs: tuple[Run, ...],
    version: str,
    min_coverage: float,
) -> tuple[Choice | None, list[str]]:
    """The best complete set of ``day``'s files, and what was found but incomplete.

    Runs are tried in ``runs`` order; within a run a daily file beats half-hourly ones, the
    configured ``version`` beats others (then the newest), and an original granule beats a
    subset of the same interval. Half-hourly files count when they hold ``min_coverage`` of
    the day's 48 half hours.
    """
    files = [f for f in files if f.day == day]
    need = needed_half_hours(min_coverage)
    incomplete: list[str] = []
    for i, run in enumerate(runs):
        for kind in ("DAY", "HHR"):
            group = [f for f in files if f.run == run and f.kind == kind]
            for ver in sorted({f.version for f in group}, key=lambda v: (v != version, -int(v))):
                picked = _one_per_interval([f for f in group if f.version == ver])
                if kind == "HHR" and len(picked) < need:
                    incomplete.append(f"{run} half-hourly V{ver}: {len(picked)} of {need}")
                    continue
                paths = tuple(f.path for f in picked)
                return Choice(run, kind, ver, paths, runs[:i]), incomplete
    return None, incomplete


def complete_days(
    files: Iterable[ImergFile], runs: tuple[Run, ...], min_coverage: float
) -> list[dt.date]:
    """The days, sorted, for which some run in ``runs`` has a complete set of files."""
    need = needed_half_hours(min_coverage)
    days: set[dt.date] = set()
    starts: dict[tuple[dt.date, str, str], set[int]] = {}
    for f in files:
        if f.run not in runs:
            continue
        if f.kind == "DAY":
            days.add(f.day)
        else:
            starts.setdefault((f.day, f.run, f.version), set()).add(f.start_s)
    days |= {d for (d, _, _), s in starts.items() if len(s) >= need}
    return sorted(days)


def _one_per_interval(files: list[ImergFile]) -> list[ImergFile]:
    """One file per interval start: the original granule before a subset, then by path."""
    best: dict[int, ImergFile] = {}
    for f in sorted(files, key=lambda f: (f.derived, str(f.path))):
        best.setdefault(f.start_s, f)
    return [best[s] for s in sorted(best)]
