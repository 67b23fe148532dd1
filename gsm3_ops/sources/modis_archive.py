"""A local archive of MODIS (or VIIRS) tiles as the ``modis`` source sees it: which tiles of
which product it holds for each day.

The files keep their LP DAAC names (``MYD11A1.A2020061.h21v08.061.2020063041016.hdf``) in
any sub-folder: an LP DAAC mirror (``MYD11A1.061/2020.03.01/``) or flat. The folder is
walked through an :class:`~gsm3_ops.sources.archive.ArchiveIndex` (which caches each file's
day by size and modification time); the day -> tiles map built from a walk is kept for
``max_age_s`` seconds, and a day it does not hold walks again at once, so a backfill over a
large archive does not walk it once per day.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from gsm3_ops.sources.archive import ArchiveIndex, Span
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.modis_hdf import GranuleName, parse_granule_name

Tile = tuple[int, int]


class TileArchive:
    """The tiles of ``products`` (short names) under ``root``, by day."""

    def __init__(
        self, root: Path, source: str, products: tuple[str, ...], max_age_s: float = 60.0
    ) -> None:
        self.products = products
        self.index = ArchiveIndex(root, source, self._span_of)
        self.max_age_s = max_age_s
        self._by_day: dict[dt.date, list[tuple[Path, GranuleName]]] = {}
        self._walked_at: float | None = None

    @property
    def root(self) -> Path:
        """The archive folder."""
        return self.index.root

    def files(self, day: dt.date, short_name: str) -> list[Path]:
        """One file per tile of ``short_name`` on ``day``: the latest collection present
        that day, then the latest production within it (sorted; empty when none)."""
        named = self._day(day)
        if any(not f.exists() for f, _ in named):  # removed since the walk
            named = self._day(day, refresh=True)
        return latest_per_tile([(f, g) for f, g in named if g.short_name == short_name])

    def tiles(self, short_name: str) -> set[Tile]:
        """Every tile of ``short_name`` the archive holds on any day."""
        self._fresh()
        return {
            g.tile for got in self._by_day.values() for _, g in got if g.short_name == short_name
        }

    def span(self) -> Span:
        """The first and last day on which the archive holds tiles of every product."""
        self._walk()
        days = {p: set() for p in self.products}
        for day, got in self._by_day.items():
            for _, g in got:
                days[g.short_name].add(day)
        common = set.intersection(*days.values())
        if not common:
            held = ", ".join(f"{k}: {len(v)} day(s)" for k, v in days.items())
            raise DateNotServedError(
                f"MODIS: the archive {self.root} holds no day with tiles of every product ({held})"
            )
        return min(common), max(common)

    def _day(self, day: dt.date, refresh: bool = False) -> list[tuple[Path, GranuleName]]:
        if refresh or day not in self._by_day:
            self._walk()
        else:
            self._fresh()
        return self._by_day.get(day, [])

    def _fresh(self) -> None:
        if self._walked_at is None or time.monotonic() - self._walked_at > self.max_age_s:
            self._walk()

    def _walk(self) -> None:
        by_day: dict[dt.date, list[tuple[Path, GranuleName]]] = {}
        for path, (day, _) in self.index.spans().items():
            g = parse_granule_name(path)
            if g is not None:
                by_day.setdefault(day, []).append((path, g))
        self._by_day, self._walked_at = by_day, time.monotonic()

    def _span_of(self, path: Path) -> Span | None:
        g = parse_granule_name(path)
        if g is None or g.short_name not in self.products:
            return None
        return g.day, g.day


def latest_per_tile(named: list[tuple[Path, GranuleName]]) -> list[Path]:
    """One file per tile: the latest collection among ``named``, then the latest production
    within it."""
    if not named:
        return []
    collection = max(g.collection for _, g in named)
    best: dict[Tile, tuple[str, Path]] = {}
    for f, g in named:
        if g.collection == collection and (g.tile not in best or g.production > best[g.tile][0]):
            best[g.tile] = (g.production, f)
    return sorted(f for _, f in best.values())
