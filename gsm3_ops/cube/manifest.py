"""Manifests of the data cube: per day (and for the statics) which sources filled it, with
versions, checksums and a status that makes interrupted writes visible.

Files live at ``<cube parent>/manifests/cube/YYYY/YYYY-MM-DD.json`` (and ``static.json``).
Every change is a read-modify-write under an exclusive ``fcntl.flock`` on a lock file next to
the manifest, and the new file replaces the old one atomically (temporary file in the same
folder, then ``os.replace``), so a reader never sees half a manifest and two writers of the
same day never lose each other's entries.

A manifest holds one entry per ``"<group>/<source>"``; an entry holds the *parts* that
writes of that source left: the extent written (``window``, grid rows/cols, or ``sites``, a
count and hash of the in-situ site ids and, since in-situ verification, the ``rows`` of the
insitu group they were written to), version, variables, per-variable sha256 checksums
and status. A part is added as
``"writing"`` before any data of the write reaches the store and turned ``"complete"`` once
all of it has, so a killed writer leaves its days ``"writing"``. A later write whose extent
covers an older part's extent takes over the variables it rewrites from that part.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gsm3_ops.atomicfile import write_json_atomic
from gsm3_ops.errors import InputError

MANIFEST_FORMAT = 1
WRITING = "writing"
COMPLETE = "complete"
INCOMPLETE = "incomplete"
MISSING = "missing"


class CubeError(InputError):
    """A cube request that cannot be honoured; the message names the file, date or variable."""


def checksum(values: np.ndarray) -> str:
    """``sha256:<hex>`` of an array's C-ordered little-endian float32 bytes."""
    data = np.ascontiguousarray(values, dtype="<f4")
    return "sha256:" + hashlib.sha256(memoryview(data).cast("B")).hexdigest()


def window_extent(row0: int, col0: int, n_rows: int, n_cols: int) -> dict[str, int]:
    """The manifest extent of a grid window (grid row/col, not domain-relative)."""
    return {"row0": int(row0), "col0": int(col0), "n_rows": int(n_rows), "n_cols": int(n_cols)}


def sites_extent(site_ids: Iterable[str], rows: Iterable[int] | None = None) -> dict[str, Any]:
    """The manifest extent of a set of in-situ sites: their count and a hash of the sorted ids,
    and, given their ``rows`` in the insitu group, those rows as ``[start, stop)`` ranges (what
    a checksum is recomputed over: :func:`extent_rows`)."""
    ids = sorted(site_ids)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    extent: dict[str, Any] = {"n_sites": len(ids), "sites_sha256": "sha256:" + digest}
    if rows is not None:
        extent["rows"] = _row_ranges(np.unique(np.fromiter(rows, dtype=np.int64)))
    return extent


def extent_rows(extent: Mapping[str, Any]) -> np.ndarray | None:
    """The sorted insitu-group rows a ``sites`` extent records (None: written before rows
    were recorded, so its checksums cannot be recomputed)."""
    ranges = extent.get("rows")
    if ranges is None:
        return None
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])


def _row_ranges(rows: np.ndarray) -> list[list[int]]:
    """Sorted unique ``rows`` as ``[start, stop)`` ranges (a source's sites are appended
    together, so usually one range)."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [[int(run[0]), int(run[-1]) + 1] for run in np.split(rows, breaks)]


def status_of(doc: Mapping[str, Any]) -> str:
    """``complete``, ``incomplete`` or ``missing`` over every entry of a manifest document."""
    entries = doc.get("entries") or {}
    if not entries:
        return MISSING
    if all(e.get("status") == COMPLETE for e in entries.values()):
        return COMPLETE
    return INCOMPLETE


def written_parts(doc: Mapping[str, Any], group: str) -> list[tuple[str, dict[str, int]]]:
    """(version, grid window) of every part that a source of ``group`` wrote into a day
    manifest document (in-situ parts, which have no window, are left out)."""
    out = []
    for key, entry in (doc.get("entries") or {}).items():
        if key.split("/", 1)[0] != group:
            continue
        out += [
            (str(part.get("version", "")), dict(part["window"]))
            for part in entry.get("parts") or []
            if part.get("window") is not None
        ]
    return out


class Manifests:
    """The manifest folder of one cube.

    Parameters
    ----------
    root
        The folder, ``<cube parent>/manifests/cube``.
    cube_path
        The cube store, recorded in each manifest so a stray file can be traced.
    """

    def __init__(self, root: Path, cube_path: Path) -> None:
        self.root = root
        self.cube_path = cube_path

    def day_path(self, day: date) -> Path:
        """The manifest file of ``day``."""
        return self.root / f"{day:%Y}" / f"{day.isoformat()}.json"

    @property
    def static_path(self) -> Path:
        """The manifest file of the static group."""
        return self.root / "static.json"

    def read(self, path: Path) -> dict[str, Any]:
        """The manifest at ``path``; an empty one when the file does not exist."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return self._empty(path)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CubeError(f"cube manifest {path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
            raise CubeError(f"cube manifest {path} has no 'entries' mapping")
        return doc

    def begin(
        self,
        paths: Iterable[Path],
        *,
        group: str,
        source: str,
        version: str,
        variables: list[str],
        extent: Mapping[str, Any],
        notes: Iterable[str] = (),
    ) -> str:
        """Record a write as ``writing`` in each manifest; returns the write's id.

        ``notes`` are kept with the part (e.g. ``filled:climatology`` for a flagged fill).
        """
        write_id = uuid.uuid4().hex
        part = {
            "id": write_id,
            _extent_key(extent): dict(extent),
            "version": version,
            "notes": list(notes),
            "variables": list(variables),
            "checksums": {},
            "status": WRITING,
            "started": _now(),
            "finished": None,
        }
        key = f"{group}/{source}"

        def add(doc: dict[str, Any]) -> None:
            doc.get("failures", {}).pop(key, None)  # a new attempt replaces an old failure
            entry = doc["entries"].setdefault(key, {"group": group, "source": source, "parts": []})
            entry["parts"] = [*_superseded(entry["parts"], part), dict(part)]
            _refresh(entry)

        for path in paths:
            self._update(path, add)
        return write_id

    def finish(
        self,
        checksums: Mapping[Path, Mapping[str, str]],
        *,
        group: str,
        source: str,
        write_id: str,
    ) -> None:
        """Mark a write ``complete`` in each manifest, with its per-variable checksums."""
        key = f"{group}/{source}"
        for path, sums in checksums.items():

            def complete(doc: dict[str, Any], sums: Mapping[str, str] = sums) -> None:
                entry = doc["entries"].get(key)
                # A part can be gone only if a concurrent write of the same extent and
                # variables superseded it; that write's record then stands.
                for part in entry["parts"] if entry else ():
                    if part["id"] == write_id:
                        part.update(status=COMPLETE, checksums=dict(sums), finished=_now())
                        _refresh(entry)

            self._update(path, complete)

    def fail(self, path: Path, *, group: str, source: str, version: str, error: str) -> None:
        """Record that ``source`` could not fill ``group`` for the manifest's day.

        The failure is kept under ``failures`` (not ``entries``), so data already written
        stays as it was; the next write of the same group and source clears it.
        """
        key = f"{group}/{source}"
        record = {"group": group, "source": source, "version": version, "error": error}

        def add(doc: dict[str, Any]) -> None:
            doc.setdefault("failures", {})[key] = {**record, "time": _now()}

        self._update(path, add)

    def _update(self, path: Path, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the manifest at ``path`` under its lock; replace it atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_suffix(".lock")):
            doc = self.read(path)
            change(doc)
            doc["status"] = status_of(doc)
            doc["updated"] = _now()
            write_json_atomic(path, doc, sort_keys=True)

    def _empty(self, path: Path) -> dict[str, Any]:
        """A manifest with no entries for ``path``."""
        day = None if path.name == self.static_path.name else path.stem
        return {
            "format": MANIFEST_FORMAT,
            "cube": str(self.cube_path),
            "date": day,
            "status": MISSING,
            "entries": {},
            "updated": None,
        }


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed) for the block.

    The kernel drops the lock when the process dies, so a killed writer never leaves it held.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _superseded(parts: list[dict[str, Any]], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Older parts minus the variables ``new`` rewrites over their whole extent."""
    rewritten = set(new["variables"])
    kept = []
    for part in parts:
        if _covers(new, part):
            part["variables"] = [v for v in part["variables"] if v not in rewritten]
            part["checksums"] = {k: v for k, v in part["checksums"].items() if k not in rewritten}
        if part["variables"]:
            kept.append(part)
    return kept


def _extent_key(extent: Mapping[str, Any]) -> str:
    """``window`` for a grid window extent, ``sites`` for a set of in-situ sites."""
    return "window" if "row0" in extent else "sites"


def _covers(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether part ``new``'s extent contains ``old``'s (windows) or equals it (site sets)."""
    outer, inner = new.get("window"), old.get("window")
    if outer is not None and inner is not None:
        return (
            outer["row0"] <= inner["row0"]
            and outer["col0"] <= inner["col0"]
            and inner["row0"] + inner["n_rows"] <= outer["row0"] + outer["n_rows"]
            and inner["col0"] + inner["n_cols"] <= outer["col0"] + outer["n_cols"]
        )
    outer, inner = new.get("sites"), old.get("sites")  # the same ids (rows or no rows)
    identity = ("n_sites", "sites_sha256")
    return (
        outer is not None
        and inner is not None
        and all(outer.get(k) == inner.get(k) for k in identity)
    )


def _refresh(entry: dict[str, Any]) -> None:
    """Recompute an entry's summary fields from its parts."""
    parts = entry["parts"]
    entry["status"] = COMPLETE if all(p["status"] == COMPLETE for p in parts) else WRITING
    entry["version"] = parts[-1]["version"] if parts else None  # the most recent write's
    entry["variables"] = sorted({v for p in parts for v in p["variables"]})


def _now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
