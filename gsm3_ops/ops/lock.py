"""The run lock: one writing gsm3-ops process per deployment at a time."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gsm3_ops.errors import Gsm3Error


class LockBusyError(Gsm3Error, RuntimeError):
    """Another gsm3-ops process holds the run lock."""


@contextmanager
def run_lock(data_root: Path, wait: bool = True) -> Iterator[None]:
    """Hold ``<data_root>/run.lock``: one writing process per deployment at a time."""
    data_root.mkdir(parents=True, exist_ok=True)
    with open(data_root / "run.lock", "a+") as handle:
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(handle, flags)
        except BlockingIOError:
            raise LockBusyError(f"another gsm3-ops run holds {data_root / 'run.lock'}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
