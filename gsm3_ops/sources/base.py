"""The protocol every data source implements, and the errors sources raise."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable


class SourceError(RuntimeError):
    """A source could not deliver a day (not available yet, corrupt file, wrong variable)."""


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
