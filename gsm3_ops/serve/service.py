"""What every route shares: the root, its published days, the product reader and caches,
and the few request checks (a day, a layer) that turn bad input into 4xx answers."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from gsm3_ops.errors import Gsm3Error
from gsm3_ops.publish.layers import LAYERS, Layer
from gsm3_ops.serve.cache import ByteLRU
from gsm3_ops.serve.days import PublishedDays, Snapshot
from gsm3_ops.serve.metrics import Metrics
from gsm3_ops.serve.product import ProductReader
from gsm3_ops.serve.root import PublishRoot

DATE_PATTERN = r"^(\d{4}-\d{2}-\d{2}|latest)$"
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LAYER_KEYS = {**{name: layer for name, layer in LAYERS.items()},
              **{layer.code: layer for layer in LAYERS.values()}}  # fmt: skip

ERROR_SCHEMA = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {}},
                "required": ["detail"],
            }
        }
    },
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route answers with."""
    return {code: ERROR_SCHEMA for code in codes}


class Service:
    """The state of one app: a publish root and what is cached about it."""

    def __init__(
        self,
        root: str | Path,
        storage_options: dict[str, Any] | None = None,
        cache_bytes: int = 256 << 20,
        tile_cache_bytes: int = 64 << 20,
        refresh_s: float = 2.0,
    ) -> None:
        self.root = PublishRoot(root, storage_options)
        self.days = PublishedDays(self.root, refresh_s)
        self.data_cache = ByteLRU(cache_bytes)
        self.tile_cache = ByteLRU(tile_cache_bytes)
        self.product = ProductReader(self.root, self.data_cache)
        self.metrics = Metrics()

    async def snapshot(self) -> Snapshot:
        """The published days now (a 503 when the root cannot be read)."""
        try:
            if self.days.due():
                snap = await run_in_threadpool(self.days.current)
            else:
                snap = self.days.current()
        except (OSError, Gsm3Error) as exc:
            raise HTTPException(503, f"the publish root cannot be read: {exc}") from None
        self.metrics.published_days.set(len(snap.days))
        return snap


async def service(request: Request) -> Service:
    """The app's :class:`Service` (async: FastAPI runs a plain function in a thread)."""
    return request.app.state.service


def parse_date(text: str, what: str = "date") -> dt.date:
    """``YYYY-MM-DD`` as a date; 400 otherwise."""
    if not _ISO.match(text or ""):
        raise HTTPException(400, f"{what} {text!r} is not a date in the form YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"{what} {text!r} is not a valid date") from None


def published_day(snap: Snapshot, text: str | None) -> dt.date:
    """The published day ``text`` names (``latest`` or None: the latest); 400 for a malformed
    date, 404 for a day that is not published."""
    if text is None or text == "latest":
        if snap.last is None:
            raise HTTPException(404, "no day is published yet")
        return snap.last
    day = parse_date(text)
    if day not in snap.day_set:
        raise HTTPException(404, f"{day} is not a published day")
    return day


def layer_of(name: str) -> Layer:
    """The layer called ``name`` (its name or file code); 404 otherwise."""
    layer = LAYER_KEYS.get(name)
    if layer is None:
        raise HTTPException(404, f"unknown layer {name!r}; layers: {', '.join(LAYERS)}")
    return layer


Svc = Annotated[Service, Depends(service)]
