"""The run lock: one writing gsm3-ops process per deployment at a time.

The holder writes its process id into the lock file while it holds the lock (and empties it
on release), so that the scheduler can tell when its child process has the lock
(:func:`lock_holder`). The kernel releases the lock itself when the holder exits or is
killed; the id a killed holder leaves behind is stale, not a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from gsm3_ops.errors import Gsm3Error

LOCK_NAME = "run.lock"


class LockBusyError(Gsm3Error, RuntimeError):
    """Another gsm3-ops process holds the run lock."""


@contextmanager
def run_lock(data_root: Path, wait: bool = True) -> Iterator[None]:
    """Hold ``<data_root>/run.lock``: one writing process per deployment at a time."""
    data_root.mkdir(parents=True, exist_ok=True)
    with open(data_root / LOCK_NAME, "a+") as handle:
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(handle, flags)
        except BlockingIOError:
            raise LockBusyError(f"another gsm3-ops run holds {data_root / LOCK_NAME}") from None
        try:
            _write(handle, f"{os.getpid()}\n")
            yield
        finally:
            _write(handle, "")
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(data_root: Path) -> int | None:
    """The process id the holder of ``<data_root>/run.lock`` wrote into it (None when the
    file is absent or empty). Stale when the holder was killed: compare it with a process
    known to be alive."""
    try:
        text = (data_root / LOCK_NAME).read_text().strip()
    except OSError:  # absent, or unreadable: no holder to name
        return None
    return int(text) if text.isdigit() else None


def _write(handle: IO[str], text: str) -> None:
    """Replace the lock file's content (best effort: the lock matters, not the note)."""
    with contextlib.suppress(OSError):
        handle.truncate(0)
        handle.write(text)  # "a+": appends, at 0 after the truncation
        handle.flush()
