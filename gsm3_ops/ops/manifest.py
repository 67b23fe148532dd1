"""Per-day product manifests and the run lock shared by every command that writes."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class LockBusyError(RuntimeError):
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


def manifest_path(publish_root: Path, day: dt.date) -> Path:
    """``<publish_root>/manifests/YYYY/gsm3_YYYYMMDD.json``."""
    return Path(publish_root) / "manifests" / f"{day:%Y}" / f"gsm3_{day:%Y%m%d}.json"


def write_json_atomic(path: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON to a temporary file and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path
