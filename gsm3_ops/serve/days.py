"""The published days of a root, as one consistent snapshot.

``days.json`` (``{"days": [...]}``) and ``latest.json`` are written last at each publication,
``latest.json`` very last, so the days they list are whole. The snapshot is re-read when their
stamps change, checked at most every ``refresh_s`` seconds. Until a root has ``days.json``
the days are those with a complete day manifest ``manifests/YYYY/gsm3_YYYYMMDD.json``.

Each snapshot has a ``key`` that changes with every publication (a new day, or a day
published again): caches of decoded data are keyed by it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gsm3_ops.serve.root import PublishRoot

DAYS_FILE = "days.json"
LATEST_FILE = "latest.json"
PRODUCT_ZARR = "gsm3.zarr"
TIMESERIES_ZARR = "gsm3_timeseries.zarr"
COLLECTION = "stac/collection.json"
_MANIFEST = re.compile(r"^manifests/(\d{4})/gsm3_(\d{8})\.json$")


@dataclass(frozen=True)
class Snapshot:
    """The published days at one moment, and what ``latest.json`` says about them."""

    days: tuple[dt.date, ...]
    latest: dict[str, Any]
    key: str
    day_set: frozenset[dt.date] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "day_set", frozenset(self.days))

    @property
    def last(self) -> dt.date | None:
        """The latest published day, or None before the first."""
        return self.days[-1] if self.days else None


def day_manifest_path(day: dt.date) -> str:
    """The day manifest of ``day`` relative to the root."""
    return f"manifests/{day:%Y}/gsm3_{day:%Y%m%d}.json"


class PublishedDays:
    """The current :class:`Snapshot` of a root, refreshed when its files change."""

    def __init__(self, root: PublishRoot, refresh_s: float = 2.0) -> None:
        self.root = root
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._stamps: tuple[str | None, ...] | None = None
        self._checked = float("-inf")
        self._complete: dict[str, bool] = {}  # manifest path + stamp -> complete (fallback)

    def due(self) -> bool:
        """Whether the next :meth:`current` call will look at the files."""
        return time.monotonic() - self._checked >= self.refresh_s

    def current(self) -> Snapshot:
        """The snapshot, re-read when ``days.json``/``latest.json`` changed (checked at most
        every ``refresh_s``). Raises OSError when the root cannot be read."""
        snap = self._snapshot
        if snap is not None and not self.due():
            return snap
        with self._lock:
            if self._snapshot is not None and not self.due():
                return self._snapshot
            self._snapshot = self._refresh()
            self._checked = time.monotonic()
            return self._snapshot

    def _refresh(self) -> Snapshot:
        stamps = (
            self.root.stamp(DAYS_FILE),
            self.root.stamp(LATEST_FILE),
            self.root.stamp(TIMESERIES_ZARR),  # the copy is swapped in after the day
        )
        if stamps[0] is None:
            self.root.check()  # RootError when the root itself is missing or unreadable
            self._stamps = None
            return self._from_manifests()
        if self._snapshot is not None and stamps == self._stamps:
            return self._snapshot
        try:
            doc = self.root.read_json(DAYS_FILE)
            days = tuple(sorted({dt.date.fromisoformat(d) for d in doc["days"]}))
        except (KeyError, TypeError, ValueError) as exc:
            raise OSError(f"{self.root.url(DAYS_FILE)} is not a valid days list: {exc}") from None
        latest = self._latest_doc(days)
        self._stamps = stamps
        key = hashlib.sha1(repr(stamps).encode()).hexdigest()[:16]
        return Snapshot(days, latest, key)

    def _latest_doc(self, days: tuple[dt.date, ...]) -> dict[str, Any]:
        """``latest.json`` when it describes the last listed day, else one made from the days
        (``latest.json`` is written after ``days.json``: it may lag by one publication)."""
        try:
            doc = self.root.read_json(LATEST_FILE)
        except (FileNotFoundError, ValueError):
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        made = self._made_latest(days, doc)
        if days and doc.get("day") == days[-1].isoformat():
            return {**made, **doc}
        return made

    def _made_latest(self, days: tuple[dt.date, ...], known: dict[str, Any]) -> dict[str, Any]:
        if not days:
            return {"day": None, "first_day": None, "n_days": 0}
        last = days[-1]
        version = known.get("product_version")
        with contextlib.suppress(FileNotFoundError, ValueError, AttributeError):
            version = self.root.read_json(day_manifest_path(last)).get("product_version", version)
        items = self.root.glob(f"stac/items/{last:%Y}/*-{last:%Y%m%d}.json")
        return {
            "day": last.isoformat(),
            "first_day": days[0].isoformat(),
            "n_days": len(days),
            "product_version": version,
            "collection": COLLECTION if self.root.exists(COLLECTION) else None,
            "item": items[0] if items else None,
            "zarr": PRODUCT_ZARR,
            "timeseries": TIMESERIES_ZARR if self.root.exists(TIMESERIES_ZARR) else None,
        }

    def _from_manifests(self) -> Snapshot:
        """The fallback: days with a complete manifest (each manifest read once per stamp)."""
        days, stamps = [], []
        for rel in self.root.glob("manifests/*/gsm3_*.json"):
            match = _MANIFEST.match(rel)
            if not match:
                continue  # last_run.json, failure records, config copies
            stamp = self.root.stamp(rel)
            token = f"{rel}@{stamp}"
            if token not in self._complete:
                try:
                    self._complete[token] = self.root.read_json(rel).get("status") == "complete"
                except (FileNotFoundError, ValueError, AttributeError):
                    self._complete[token] = False
            if self._complete[token]:
                try:
                    days.append(dt.datetime.strptime(match.group(2), "%Y%m%d").date())
                except ValueError:
                    continue
                stamps.append(token)
        days_t = tuple(sorted(days))
        stamps.append(f"timeseries@{self.root.stamp(TIMESERIES_ZARR)}")
        key = hashlib.sha1("\n".join(stamps).encode()).hexdigest()[:16]
        return Snapshot(days_t, self._made_latest(days_t, {}), key)
