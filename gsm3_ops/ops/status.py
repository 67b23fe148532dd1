"""What has been produced: each day complete / provisional / failed / missing, and the last run.

Read-only: it looks at the day manifests (written last when a day is published), the failure
records beside them, the data cube's day manifests (input versions, ingest failures) and the
last-run record the CLI leaves after ``run`` and ``backfill``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gsm3_ops.atomicfile import write_json_atomic
from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.publish.manifest import DayManifest
from gsm3_ops.publish.product import product_path, time_span
from gsm3_ops.publish.timeseries import timeseries_path
from gsm3_ops.publish.zarr2 import CONSOLIDATED

COMPLETE, PROVISIONAL, FAILED, MISSING = "complete", "provisional", "failed", "missing"


@dataclass
class DayStatus:
    """One day's state and where it came from."""

    date: str
    status: str
    inputs: dict[str, str] = field(default_factory=dict)
    bundle_id: str | None = None
    error: str | None = None
    ingest_failures: list[str] = field(default_factory=list)


def last_run_path(publish_root: Path) -> Path:
    """``<publish_root>/manifests/last_run.json``."""
    return Path(publish_root) / "manifests" / "last_run.json"


def record_last_run(publish_root: Path, command: str, outcome: str, **details: Any) -> None:
    """Record the last ``run``/``backfill`` and its outcome (``ok``, ``failed`` ...)."""
    doc = {
        "command": command,
        "outcome": outcome,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **details,
    }
    write_json_atomic(last_run_path(publish_root), doc)


def day_status(publish_root: Path, cube_manifest: dict | None, day: dt.date) -> DayStatus:
    """The state of ``day``: its published manifest wins; else its last failure; else missing."""
    record = DayManifest.load(publish_root, day)
    ingest = sorted((cube_manifest or {}).get("failures", {}))
    if record is None:
        return DayStatus(day.isoformat(), MISSING, ingest_failures=ingest)
    if not record.published:
        return DayStatus(day.isoformat(), FAILED, error=record.error, ingest_failures=ingest)
    state = PROVISIONAL if record.provisional else COMPLETE
    return DayStatus(day.isoformat(), state, record.inputs, record.bundle_id,
                     ingest_failures=ingest)  # fmt: skip


def status(
    settings: Settings, start: dt.date | None, end: dt.date | None, max_lag: int | None = None
) -> dict[str, Any]:
    """``gsm3-ops status``: the report of ``start..end`` (default: the 30 days up to the
    latest the profile can serve, or ``max_lag + 1`` days when that is longer), reading the
    cube's day manifests when there is a cube."""
    dep = Deployment(settings)
    end = end or dep.latest_day(dt.date.today())
    start = start or end - dt.timedelta(days=max(29, max_lag or 0))
    cube = Cube.open(dep.cube_path) if dep.cube_path.exists() else None
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    manifests = {d: cube.manifest(d) for d in days} if cube else {}
    return status_report(settings.publish_root, manifests, start, end)


def status_report(
    publish_root: Path, cube_manifests: dict[dt.date, dict], start: dt.date, end: dt.date
) -> dict[str, Any]:
    """Every day of ``start..end``, counts per state, the lag (days from the latest published
    day to ``end``; None when none of them is published), the bundle in use and the last run."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    rows = [day_status(publish_root, cube_manifests.get(d), d) for d in days]
    counts = {s: sum(r.status == s for r in rows) for s in (COMPLETE, PROVISIONAL, FAILED, MISSING)}
    bundles = [r.bundle_id for r in rows if r.bundle_id]
    published = [d for d, r in zip(days, rows, strict=True) if r.status in (COMPLETE, PROVISIONAL)]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "counts": counts,
        "lag_days": (end - published[-1]).days if published else None,
        "timeseries_lag_days": timeseries_lag(publish_root),
        "bundle_id": bundles[-1] if bundles else None,
        "last_run": _read_last_run(publish_root),
        "days": [asdict(r) for r in rows],
    }


def timeseries_lag(publish_root: Path) -> int | None:
    """Days the time-series copy's last day trails the product's (0: in step); None when
    either store is absent. A later run rebuilds a copy that is out of step."""
    product, copy = product_path(publish_root), timeseries_path(publish_root)
    if not (product / CONSOLIDATED).exists() or not (copy / CONSOLIDATED).exists():
        return None
    (first, n), (copy_first, copy_n) = time_span(product), time_span(copy)
    if first is None:
        return 0
    last = first + dt.timedelta(days=n - 1)
    if copy_first is None:
        return n
    return (last - (copy_first + dt.timedelta(days=copy_n - 1))).days


def _read_last_run(publish_root: Path) -> dict | None:
    path = last_run_path(publish_root)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        return {"command": "?", "outcome": FAILED, "finished": "?",
                "error": f"unreadable record {path}: {exc}"}  # fmt: skip
