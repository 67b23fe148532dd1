"""A local archive of a provider's files: which files cover which UTC days.

A site that mirrors its inputs (an rsync of GES DISC, a folder of CDS downloads, an ISMN
download) points a source at the folder (``sources.options.<name>.archive``); ``ingest
--from`` does the same for one run. The files keep the provider's names and layout, in any
sub-folder, and one file may cover many days (a week-long CDS request, a monthly MSWEP file).

Each source says how to recognise its files and the days each covers (from the name where
the provider's name carries the date, else from the file's own time axis); the index walks
the folder and remembers each file's days by (path, size, modification time), so a second
look after the mirror has added files opens only the new ones. Each look walks the folder
afresh but cheaply: a sub-folder whose modification time is unchanged keeps its listing (a
file added, removed or renamed changes it), and the files found for a day are checked on
disk before they are handed out (a file rewritten in place).
"""

from __future__ import annotations

import datetime as dt
import os
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
        self._dirs: dict[Path, tuple[int, list[Path], list[Path]]] = {}
        self._lock = threading.Lock()

    def spans(self) -> dict[Path, Span]:
        """Every recognised file under the root and its (first, last) day."""
        if not self.root.is_dir():
            raise DateNotServedError(f"{self.source}: archive folder {self.root} does not exist")
        out: dict[Path, Span] = {}
        with self._lock:
            for path, listed_again in self._walk():
                known = self._known.get(path)
                if known is None or listed_again:
                    known = self._look(path, known)
                if known is not None and known[1] is not None:
                    out[path] = known[1]
        return dict(sorted(out.items()))

    def files_for(self, day: dt.date) -> list[Path]:
        """The files that cover ``day`` (sorted by path); an empty list when none does."""
        found = [p for p, (a, b) in self.spans().items() if a <= day <= b]
        changed = [p for p in found if not self._unchanged(p)]
        if not changed:
            return found
        with self._lock:
            for path in changed:  # rewritten in place: look at it, and its folder, again
                self._known.pop(path, None)
                self._dirs.pop(path.parent, None)
        return [p for p, (a, b) in self.spans().items() if a <= day <= b]

    def require(self, day: dt.date, what: str = "file") -> list[Path]:
        """:meth:`files_for`, raising :class:`DateNotServedError` naming the folder when empty."""
        files = self.files_for(day)
        if not files:
            raise DateNotServedError(
                f"{self.source}: no {what} for {day.isoformat()} in the archive {self.root}"
            )
        return files

    def span(self, what: str = "file") -> Span:
        """The first and last day the archive covers; :class:`DateNotServedError` naming
        ``what`` was looked for when it holds none of the source's files."""
        first, last = self.first_day(), self.last_day()
        if first is None or last is None:
            raise DateNotServedError(f"{self.source}: no {what} in the archive {self.root}")
        return first, last

    def last_day(self) -> dt.date | None:
        """The latest day any file covers (None for an archive without the source's files)."""
        spans = self.spans().values()
        return max((b for _, b in spans), default=None)

    def first_day(self) -> dt.date | None:
        """The earliest day any file covers."""
        spans = self.spans().values()
        return min((a for a, _ in spans), default=None)

    def _walk(self) -> list[tuple[Path, bool]]:
        """Every file under the root, and whether its folder was listed again this time."""
        out: list[tuple[Path, bool]] = []
        stack = [self.root]
        while stack:
            folder = stack.pop()
            try:
                mtime = folder.stat().st_mtime_ns
            except OSError:
                continue
            cached = self._dirs.get(folder)
            again = cached is None or cached[0] != mtime
            if again:
                with os.scandir(folder) as entries:
                    items = list(entries)
                subs = [Path(e.path) for e in items if e.is_dir()]
                files = [Path(e.path) for e in items if e.is_file()]
                cached = (mtime, subs, files)
                self._dirs[folder] = cached
            stack += cached[1]
            out += [(f, again) for f in cached[2]]
        return out

    def _look(
        self, path: Path, known: tuple[tuple[int, int], Span | None] | None
    ) -> tuple[tuple[int, int], Span | None] | None:
        """``path``'s (size, mtime) and span, read again only when the file changed."""
        try:
            stat = path.stat()
        except OSError:
            self._known.pop(path, None)
            return None
        key = (stat.st_size, stat.st_mtime_ns)
        if known is None or known[0] != key:
            known = (key, self._span_of(path))
            self._known[path] = known
        return known

    def _unchanged(self, path: Path) -> bool:
        """Whether ``path`` is still on disk as the last look saw it."""
        try:
            stat = path.stat()
        except OSError:
            return False
        known = self._known.get(path)
        return known is not None and known[0] == (stat.st_size, stat.st_mtime_ns)
