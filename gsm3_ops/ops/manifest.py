"""Per-day product manifests and the run lock shared by every command that writes."""

from __future__ import annotations

import datetime as dt
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gsm3_ops.errors import Gsm3Error
from gsm3_ops.publish.atomic import write_json


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


def manifest_path(publish_root: Path, day: dt.date) -> Path:
    """``<publish_root>/manifests/YYYY/gsm3_YYYYMMDD.json``: written last when a day is
    published (its ``status`` is ``complete``), so its presence means the day is whole."""
    return Path(publish_root) / "manifests" / f"{day:%Y}" / f"gsm3_{day:%Y%m%d}.json"


def failure_path(publish_root: Path, day: dt.date) -> Path:
    """``<publish_root>/manifests/YYYY/gsm3_YYYYMMDD.failed.json``: the last failed attempt
    to publish the day (removed when the day is published); the manifest is left alone."""
    return manifest_path(publish_root, day).with_suffix(".failed.json")


def write_json_atomic(path: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON to a temporary file and rename it into place."""
    return write_json(Path(path), record)
