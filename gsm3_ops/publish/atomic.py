"""Atomic publication: files are staged under temporary names, then renamed into place under a
journal, so that neither a failure nor a killed process leaves half a day published.

A :class:`Transaction` collects *moves*, each a staged file that replaces or creates a final
path, or a final path to remove. :meth:`Transaction.commit` (under :func:`publish_lock`)
writes a journal, then applies the moves in order, renaming any old file to a backup first.
The last move is the *commit point*: a JSON file (the day manifest) holding ``"commit": <id>``.
Any failure before it rolls every applied move back from the backups; renames need no disk
space, so this works on a full disk. A journal left by a killed process is rolled back, or
finished when its commit point is in place, by :func:`recover`, which every commit runs first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gsm3_ops.atomicfile import write_json_atomic
from gsm3_ops.errors import PublishError

log = logging.getLogger(__name__)

LOCK_NAME = ".publish.lock"
STAGING = ".staging"
JOURNALS = ".journal"
STALE_SECONDS = 2 * 86400  # a staging folder of another host is removed after two days


@contextlib.contextmanager
def publish_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive publication lock ``<root>/.publish.lock`` (``fcntl.flock``).

    The kernel drops it when the process dies, so a killed publisher never leaves it held.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class Move:
    """One rename: ``staged`` (None: remove) onto ``final``; paths relative to the root."""

    final: str
    staged: str | None
    had_old: bool


class Transaction:
    """The staged files and moves of one publication.

    Parameters
    ----------
    root
        The publish root; staged files and backups live in ``<root>/.staging/<id>``, on the
        same file system as the product, so every move is an atomic rename.
    label
        Part of the transaction id, e.g. the day.
    """

    def __init__(self, root: Path, label: str) -> None:
        self.root = Path(root)
        host = socket.gethostname().replace("-", "_")
        self.id = f"{label}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir = self.root / STAGING / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.moves: list[Move] = []
        self._applied = False

    # ------------------------------------------------------------------ staging

    def stage_path(self, final: Path) -> Path:
        """A fresh staged path for ``final`` (inside the staging folder)."""
        path = self.dir / "new" / self._rel(final)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def replace(self, final: Path, staged: Path) -> None:
        """Plan ``staged`` to replace (or create) ``final``."""
        self.moves.append(Move(self._rel(final), self._rel(staged), False))

    def remove(self, final: Path) -> None:
        """Plan ``final`` to be removed (kept as a backup until the commit point)."""
        self.moves.append(Move(self._rel(final), None, False))

    # ------------------------------------------------------------------ commit

    def commit(self, point: Path | None, record: dict[str, Any] | None = None) -> None:
        """Apply every planned move, then write ``record`` to ``point`` as the commit point.

        Must run under :func:`publish_lock`. On any failure the applied moves are rolled
        back and the error re-raised; the product is then as it was before. Without a
        ``point`` an interrupted transaction is always rolled back by :func:`recover`.
        """
        for move in self.moves:
            move.had_old = (self.root / move.final).exists()
        if point is not None:
            staged_point = self.stage_path(point)
            write_json_atomic(staged_point, {**(record or {}), "commit": self.id})
            self.replace(point, staged_point)
            self.moves[-1].had_old = point.exists()
        self._write_journal(point)
        try:
            _apply(self.root, self.dir, self.moves)
        except BaseException:
            self.rollback()
            raise
        self._applied = True
        self.cleanup()

    def rollback(self) -> None:
        """Undo the applied moves, remove the staged files and the journal."""
        _rollback(self.root, self.dir, self.moves)
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the staging folder (staged files, backups) and the journal."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.root / JOURNALS / f"{self.id}.json").unlink(missing_ok=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._applied:
            self.cleanup()

    def _rel(self, path: Path) -> str:
        path = Path(path)
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            raise ValueError(f"{path} is not inside the publish root {self.root}") from None

    def _write_journal(self, point: Path | None) -> None:
        doc = {
            "id": self.id,
            "commit_point": None if point is None else self._rel(point),
            "moves": [asdict(m) for m in self.moves],
            "created": time.time(),
        }
        write_json_atomic(self.root / JOURNALS / f"{self.id}.json", doc)


def _backup(stage_dir: Path, final: str) -> Path:
    return stage_dir / "old" / final


def _apply(root: Path, stage_dir: Path, moves: list[Move]) -> None:
    for move in moves:
        final = root / move.final
        if move.had_old:
            backup = _backup(stage_dir, move.final)
            backup.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, backup)
        if move.staged is not None:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(root / move.staged, final)


def _rollback(root: Path, stage_dir: Path, moves: list[Move]) -> None:
    """Undo whatever part of ``moves`` was applied; safe to run more than once."""
    for move in reversed(moves):
        final = root / move.final
        backup = _backup(stage_dir, move.final)
        staged = root / move.staged if move.staged else None
        if backup.exists():  # the old file was set aside: put it back over whatever is there
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)  # a replaced folder (a rebased store): rename can't overwrite
            os.replace(backup, final)
        elif not move.had_old and staged is not None and not staged.exists() and final.exists():
            final.unlink()  # a new file where there was none: take it away


def recover(root: Path) -> list[str]:
    """Finish or undo the transactions that a killed process left; run under the lock.

    Returns the ids of the transactions found. Also removes staging folders without a journal
    whose process is gone (same host) or that are older than two days (another host).
    """
    root = Path(root)
    found = []
    for journal in sorted((root / JOURNALS).glob("*.json")):
        try:
            doc = json.loads(journal.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PublishError(f"unreadable publication journal {journal}: {exc}") from None
        tx_id = doc["id"]
        found.append(tx_id)
        stage_dir = root / STAGING / tx_id
        moves = [Move(**m) for m in doc["moves"]]
        point = doc["commit_point"]
        if point is not None and _committed(root / point, tx_id):
            log.warning("publication %s had reached its commit point; finishing it", tx_id)
        else:
            log.warning("publication %s was interrupted; rolling it back", tx_id)
            _rollback(root, stage_dir, moves)
        shutil.rmtree(stage_dir, ignore_errors=True)
        journal.unlink()
    _remove_orphans(root)
    return found


def _committed(point: Path, tx_id: str) -> bool:
    try:
        return json.loads(point.read_text()).get("commit") == tx_id
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _remove_orphans(root: Path) -> None:
    host = socket.gethostname().replace("-", "_")
    for folder in (root / STAGING).glob("*"):
        parts = folder.name.split("-")
        # id: <label>-<host>-<pid>-<hex>; the label (a date) holds dashes of its own
        same_host = len(parts) >= 3 and parts[-3] == host
        if same_host and parts[-2].isdigit() and _alive(int(parts[-2])):
            continue
        if not same_host and time.time() - folder.stat().st_mtime < STALE_SECONDS:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
