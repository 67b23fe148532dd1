"""The protocol every data source implements, and the errors sources raise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import xarray as xr

from gsm3_ops.errors import SourceError, UsageError
from gsm3_ops.grid import EaseGrid, Window


class DateNotServedError(SourceError):
    """The source does not (yet) have data for the requested date."""


@runtime_checkable
class Source(Protocol):
    """What the pipeline needs to know of a source before it asks for data."""

    name: str
    provides: tuple[str, ...]  # registry names this source fills

    def first_date(self) -> dt.date:
        """The earliest date the source serves."""
        ...

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest date the source serves as of ``today``."""
        ...

    def version(self, day: dt.date) -> str:
        """Product name and version that fills ``day`` (recorded in the day manifest)."""
        ...


def check_served(source: Source, day: dt.date, today: dt.date) -> None:
    """Raise :class:`DateNotServedError` when ``source`` cannot serve ``day``."""
    first, last = source.first_date(), source.latest_date(today)
    if not first <= day <= last:
        raise DateNotServedError(
            f"source {source.name!r} serves {first.isoformat()}..{last.isoformat()}, "
            f"not {day.isoformat()}"
        )


class CredentialsError(SourceError, UsageError):
    """A source's credentials are missing or refused: a configuration error (exit 2) that
    no retry and no other day will change, so ingestion stops at the first one."""


class CorruptFileError(SourceError):
    """A raw file is truncated, unreadable or not the format it claims (the path is named)."""


class MissingVariableError(SourceError):
    """A raw file lacks a variable the source needs (file and variable are named)."""


@dataclass(frozen=True)
class Granule:
    """The raw files that fill one day of one source, and the product version they are.

    ``version`` is what the day manifest records, e.g. ``ERA5T`` or ``ERA5`` (from
    ``expver``), ``GPM_3IMERGDL.07``, ``SPL3SMP_E.006``. ``notes`` carries anything else worth
    recording (a fallback taken, a fill used).
    """

    source: str
    day: dt.date
    files: tuple[Path, ...]
    version: str
    notes: tuple[str, ...] = ()


@runtime_checkable
class GriddedSource(Source, Protocol):
    """A real daily gridded source: fetch raw files, read them, put them on the EASE2 grid.

    The download client (``cdsapi.Client``, the ``earthaccess`` module, an HTTP session) is
    injected in the constructor so tests can check the exact request and hand back real files.
    """

    options: Any  # the source's validated settings; ``options.archive``: a local archive

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Download the raw files for ``day`` into ``workdir``."""
        ...

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The raw files for ``day`` under ``directory``, a local archive in the provider's
        names and layout (any sub-folder; a file may span many days): see ``archive.py``."""
        ...

    def read(self, granule: Granule) -> xr.Dataset:
        """Raw files -> one day on the source's native grid, registry names and units."""
        ...

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """Native day -> (time, y, x) variables on ``window`` of the EASE2 grid (cube-ready)."""
        ...
