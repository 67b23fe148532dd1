"""A local archive of a provider's files: which files cover which UTC days.

A site that mirrors its inputs (an rsync of GES DISC, a folder of CDS downloads, an ISMN
download) points a source at the folder (``sources.options.<name>.archive``); ``ingest
--from`` does the same for one run. The files keep the provider's names and layout, in any
sub-folder, and one file may cover many days (a week-long CDS request, a monthly MSWEP file).

Each source says how to recognise its files and the days each covers (from the name where
the provider's name carries the date, else from the file's own time axis); the index walks
the folder and remembers each file's days by (path, size, modification time), so a second
look after the mirror has added files opens only the new ones.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

from gsm3_ops.sources.base import DateNotServedError

# A file's first and last UTC day, or None when the file is not one of the source's.
Span = tuple[dt.date, dt.date]
SpanOf = Callable[[Path], Span | None]


class ArchiveIndex:
    """The files under ``root`` that ``span_of`` recognises, with the days each covers."""

    def __init__(self, root: Path, source: str, span_of: SpanOf) -> None:
        self.root = Path(root)
        self.source = source
        self._span_of = span_of
        self._known: dict[Path, tuple[tuple[int, int], Span | None]] = {}
        self._lock = threading.Lock()

    def spans(self) -> dict[Path, Span]:
        """Every recognised file under the root and its (first, last) day, walked afresh."""
        if not self.root.is_dir():
            raise DateNotServedError(f"{self.source}: archive folder {self.root} does not exist")
        out: dict[Path, Span] = {}
        with self._lock:
            for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                stat = path.stat()
                key = (stat.st_size, stat.st_mtime_ns)
                known = self._known.get(path)
                if known is None or known[0] != key:
                    known = (key, self._span_of(path))
                    self._known[path] = known
                if known[1] is not None:
                    out[path] = known[1]
        return out

    def files_for(self, day: dt.date) -> list[Path]:
        """The files that cover ``day`` (sorted by path); an empty list when none does."""
        return [p for p, (a, b) in self.spans().items() if a <= day <= b]

    def require(self, day: dt.date, what: str = "file") -> list[Path]:
        """:meth:`files_for`, raising :class:`DateNotServedError` naming the folder when empty."""
        files = self.files_for(day)
        if not files:
            raise DateNotServedError(
                f"{self.source}: no {what} for {day.isoformat()} in the archive {self.root}"
            )
        return files

    def last_day(self) -> dt.date | None:
        """The latest day any file covers (None for an archive without the source's files)."""
        spans = self.spans().values()
        return max((b for _, b in spans), default=None)

    def first_day(self) -> dt.date | None:
        """The earliest day any file covers."""
        spans = self.spans().values()
        return min((a for a, _ in spans), default=None)
