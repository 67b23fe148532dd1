"""The published day record: one typed manifest per day, written last, and its failure twin.

``<publish_root>/manifests/YYYY/gsm3_YYYYMMDD.json`` is committed last when a day is
published (``status`` ``complete``), so its presence means the day is whole.
``gsm3_YYYYMMDD.failed.json`` beside it records the last failed attempt (``status``
``failed``) and is removed when the day is published. ``run``, ``backfill`` and ``status``
read both through :meth:`DayManifest.load` only.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gsm3_ops.atomicfile import write_json_atomic

COMPLETE, FAILED = "complete", "failed"


def manifest_path(publish_root: Path, day: dt.date) -> Path:
    """``<publish_root>/manifests/YYYY/gsm3_YYYYMMDD.json``, the published day's record."""
    return Path(publish_root) / "manifests" / f"{day:%Y}" / f"gsm3_{day:%Y%m%d}.json"


def failure_path(publish_root: Path, day: dt.date) -> Path:
    """``<publish_root>/manifests/YYYY/gsm3_YYYYMMDD.failed.json``: the last failed attempt to
    publish the day (removed when the day is published); the manifest is left alone."""
    return manifest_path(publish_root, day).with_suffix(".failed.json")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class DayManifest(BaseModel):
    """A day's record: what was published from which inputs, or why the last attempt failed.

    Keys a newer version adds are kept as they are (``extra="allow"``).
    """

    model_config = ConfigDict(extra="allow")

    date: dt.date
    status: Literal["complete", "failed"]
    mode: str | None = None
    bundle_id: str | None = None
    product_version: str | None = None
    inputs: dict[str, str] = {}
    input_versions: dict[str, str] = {}
    provisional: bool = False
    missing_inputs: dict[str, str] = {}
    cube_manifest: dict[str, Any] = {}
    config: str | None = None
    land_cells: int | None = None
    soil_moisture_mean: float | None = None
    # A DI bundle's day: latency, the retrieval days absorbed, whether the newest was late.
    di: dict[str, Any] | None = None
    finished: str | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    failed: str | None = None

    @classmethod
    def failure(cls, day: dt.date, error: str) -> DayManifest:
        """The record of a failed attempt to publish ``day``."""
        return cls(date=day, status=FAILED, error=error, failed=_now())

    @classmethod
    def read(cls, path: Path, day: dt.date) -> DayManifest | None:
        """The record at ``path``: None when there is none; an unreadable or invalid file is
        a failed record naming the file (so nothing trusts it as published)."""
        try:
            doc = json.loads(Path(path).read_text())
            return cls.model_validate(doc)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, ValidationError) as exc:
            reason = str(exc).splitlines()[0]
            return cls(date=day, status=FAILED, error=f"unreadable record {path}: {reason}")

    @classmethod
    def load(cls, publish_root: Path, day: dt.date) -> DayManifest | None:
        """The day's state: its manifest (published, or failed when unreadable), else its last
        failure record, else None (never attempted)."""
        doc = cls.read(manifest_path(publish_root, day), day)
        return doc if doc is not None else cls.read(failure_path(publish_root, day), day)

    @property
    def published(self) -> bool:
        """Whether this records a published day (provisional or not)."""
        return self.status == COMPLETE

    def published_from(self, input_versions: dict[str, str]) -> bool:
        """Whether this is a final (not provisional) publication from ``input_versions``."""
        return self.published and not self.provisional and self.input_versions == input_versions

    def to_json(self) -> dict[str, Any]:
        """The JSON document, with only the keys this record was given."""
        return self.model_dump(mode="json", exclude_unset=True)

    def save_failure(self, publish_root: Path) -> Path:
        """Write this failure record beside the day's manifest (atomically)."""
        return write_json_atomic(failure_path(publish_root, self.date), self.to_json())
