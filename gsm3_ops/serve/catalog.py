"""``/health``, ``/latest``, ``/days`` and ``/stac/{path}``: what is published, read-only.

Links in ``/latest`` are root-relative paths of this service (no scheme or host), so the
answer holds behind any proxy. ``/stac`` serves the catalogue's JSON files from the root's
``stac/`` folder only, and a day's item only once the day is published.
"""

from __future__ import annotations

import datetime as dt
import errno
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from gsm3_ops.errors import Gsm3Error
from gsm3_ops.serve.days import Snapshot
from gsm3_ops.serve.root import PathRefusedError, safe_relpath
from gsm3_ops.serve.service import Svc, errors, parse_date

router = APIRouter(tags=["catalogue"])
# a name that cannot exist, rather than a failing disk
_NO_SUCH_FILE = {None, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL}
_ITEM_DAY = re.compile(r"^items/\d{4}/.+-(\d{8})\.json$")


@router.get("/health", responses=errors(503))
async def health(svc: Svc) -> JSONResponse:
    """``ok`` and the latest published day, or 503 when the publish root cannot be read."""
    try:
        svc.root.check()
    except (Gsm3Error, OSError) as exc:
        return JSONResponse({"status": "unavailable", "latest": None, "detail": str(exc)}, 503)
    snap = await svc.snapshot()
    return JSONResponse({"status": "ok", "latest": snap.last.isoformat() if snap.last else None})


def _links(prefix: str, snap: Snapshot, latest: dict[str, Any]) -> dict[str, str]:
    day = snap.last.isoformat() if snap.last else "latest"
    links = {
        "self": f"{prefix}/latest",
        "days": f"{prefix}/days",
        "layers": f"{prefix}/layers",
        "tiles": f"{prefix}/tiles/{{layer}}/{day}/{{z}}/{{x}}/{{y}}.png",
        "wmts": f"{prefix}/wmts/WMTSCapabilities.xml",
        "point": f"{prefix}/point?lon={{lon}}&lat={{lat}}&date={day}",
        "timeseries": f"{prefix}/timeseries?lon={{lon}}&lat={{lat}}",
        "legend": f"{prefix}/legend/{{layer}}",
    }
    for key in ("collection", "item"):
        rel = latest.get(key)
        if isinstance(rel, str) and rel.startswith("stac/"):
            links[key] = f"{prefix}/{rel}"
    return links


@router.get("/latest", responses=errors(404, 503))
async def latest(request: Request, svc: Svc) -> dict[str, Any]:
    """``latest.json`` (the latest published day, the product's files) and service links."""
    snap = await svc.snapshot()
    if snap.last is None:
        raise HTTPException(404, "no day is published yet")
    doc = dict(snap.latest)
    doc["links"] = _links(request.scope.get("root_path", "").rstrip("/"), snap, doc)
    return doc


@router.get("/days", responses=errors(400, 503))
async def days(
    svc: Svc,
    start: Annotated[str | None, Query(description="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(description="last day, YYYY-MM-DD")] = None,
) -> dict[str, list[str]]:
    """The published days in [start, end], sorted."""
    first = parse_date(start, "start") if start is not None else dt.date.min
    last = parse_date(end, "end") if end is not None else dt.date.max
    if first > last:
        raise HTTPException(400, f"start {first} is after end {last}")
    snap = await svc.snapshot()
    return {"days": [d.isoformat() for d in snap.days if first <= d <= last]}


@router.get(
    "/stac/{path:path}",
    responses={200: {"content": {"application/json": {}}}, **errors(400, 404, 503)},
)
async def stac(path: str, svc: Svc) -> Response:
    """A file of the STAC catalogue (``collection.json``, ``items/YYYY/<id>.json``)."""
    try:
        rel = safe_relpath(path)
    except PathRefusedError as exc:
        raise HTTPException(400, str(exc)) from None
    if not rel.endswith(".json"):
        raise HTTPException(404, f"stac/{rel} is not a catalogue file")
    match = _ITEM_DAY.match(rel)
    if match:
        snap = await svc.snapshot()
        try:
            day = dt.datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            raise HTTPException(404, f"stac/{rel} is not a catalogue file") from None
        if day not in snap.day_set:
            raise HTTPException(404, f"{day} is not a published day")
    try:
        body = svc.root.read_bytes(f"stac/{rel}")
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _NO_SUCH_FILE:
            raise HTTPException(503, f"stac/{rel} cannot be read: {exc}") from None
        raise HTTPException(404, f"stac/{rel} does not exist") from None
    return Response(body, media_type="application/json",
                    headers={"Cache-Control": "public, max-age=60"})  # fmt: skip
