"""``/point`` and ``/timeseries``: the product's values at the cell holding a lon/lat point.

The cell is found with the grid's own :meth:`~gsm3_ops.grid.EaseGrid.lonlat_to_rowcol` in
the window the product's x/y coordinates give. A point whose chunks are cached is answered
on the event loop without a thread hop; anything that reads files runs in the thread pool.
NaN and the flag's fill value become ``null``; only published days are answered.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gsm3_ops.publish.layers import FLAG_FILL, LAYERS, QUALITY_FLAGS
from gsm3_ops.serve.days import Snapshot
from gsm3_ops.serve.service import Service, Svc, errors, parse_date, published_day
from gsm3_ops.serve.store import Cell

router = APIRouter(tags=["values"])
UNITS = {name: layer.units for name, layer in LAYERS.items()}
FLOAT_LAYERS = [name for name, layer in LAYERS.items() if not layer.is_flag]
SERIES_FIELDS = ["date", *FLOAT_LAYERS, "quality_flag"]
Lon = Annotated[float, Query(ge=-180.0, le=180.0, description="longitude, degrees east")]
Lat = Annotated[float, Query(ge=-90.0, le=90.0, description="latitude, degrees north")]


class CellOut(BaseModel):
    """A cell of the EASE-Grid 2.0 grid: row, column and centre (metres, EPSG:6933)."""

    row: int
    col: int
    x: float
    y: float


class Provenance(BaseModel):
    """Where the day's values came from (its day manifest)."""

    product_version: str | None
    bundle_id: str | None
    provisional: bool | None
    input_versions: dict[str, str] | None


class PointOut(BaseModel):
    """The product at one cell on one day."""

    lon: float
    lat: float
    date: str
    cell: CellOut
    soil_moisture: float | None
    soil_moisture_sd: float | None
    soil_moisture_anomaly: float | None
    soil_moisture_percentile: float | None
    quality_flag: int | None
    quality: list[str]
    units: dict[str, str]
    provenance: Provenance


class SeriesEntry(BaseModel):
    """One day of a series."""

    date: str
    soil_moisture: float | None
    soil_moisture_sd: float | None
    soil_moisture_anomaly: float | None
    soil_moisture_percentile: float | None
    quality_flag: int | None


class SeriesOut(BaseModel):
    """The product at one cell over published days."""

    lon: float
    lat: float
    cell: CellOut
    units: dict[str, str]
    series: list[SeriesEntry]


def quality_bits(flag: int | None) -> list[str]:
    """Names of the quality bits set in ``flag`` (none for a missing value)."""
    if flag is None:
        return []
    return [name for bit, name in QUALITY_FLAGS.items() if flag & bit]


def _float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _cell(svc: Service, snap: Snapshot, lon: float, lat: float) -> Cell:
    opened = svc.product.ready(snap) or svc.product.open(snap)
    cell = opened.domain.cell(lon, lat)
    if cell is None:
        raise HTTPException(404, f"({lon}, {lat}) lies outside the product's domain")
    return cell


def _json(doc: dict[str, Any]) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


@router.get("/point", response_model=PointOut, responses=errors(400, 404, 503))
async def point(
    svc: Svc,
    lon: Lon,
    lat: Lat,
    date: Annotated[str | None, Query(description="YYYY-MM-DD or latest (default)")] = None,
) -> Response:
    """Every layer at the cell holding (lon, lat) on a published day, with its provenance."""
    snap = await svc.snapshot()
    day = published_day(snap, date)
    if svc.product.ready(snap) is None:
        await run_in_threadpool(svc.product.open, snap)
    cell = _cell(svc, snap, lon, lat)
    values = svc.product.point(snap, cell, day, load=False)
    if values is None:
        values = await run_in_threadpool(svc.product.point, snap, cell, day)
    flag = values["quality_flag"]
    flag = None if flag == FLAG_FILL else int(flag)
    floats = {name: _float(values[name]) for name in FLOAT_LAYERS}
    if flag is None and all(v is None for v in floats.values()):
        raise HTTPException(404, f"no data at ({lon}, {lat}) on {day} (sea or outside the mask)")
    doc = {
        "lon": lon,
        "lat": lat,
        "date": day.isoformat(),
        "cell": cell.as_json(),
        **floats,
        "quality_flag": flag,
        "quality": quality_bits(flag),
        "units": UNITS,
        "provenance": svc.product.provenance(snap, day),
    }
    return _json(doc)


def _series_rows(days: list, values: dict[str, np.ndarray]) -> list[list[Any]]:
    """Rows of (date, float layers ..., flag) with None for missing values."""
    columns: list[list[Any]] = [[d.isoformat() for d in days]]
    for name in FLOAT_LAYERS:
        data = values[name].astype(np.float64)
        column: list[Any] = data.tolist()
        for i in np.flatnonzero(np.isnan(data)).tolist():
            column[i] = None
        columns.append(column)
    flags = values["quality_flag"]
    flag_col: list[Any] = flags.astype(int).tolist()
    for i in np.flatnonzero(flags == FLAG_FILL).tolist():
        flag_col[i] = None
    columns.append(flag_col)
    return [list(row) for row in zip(*columns, strict=True)]


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SERIES_FIELDS)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buffer.getvalue()


@router.get(
    "/timeseries",
    response_model=SeriesOut,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **errors(400, 404, 503),
    },
)
async def timeseries(
    svc: Svc,
    lon: Lon,
    lat: Lat,
    start: Annotated[str | None, Query(description="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(description="last day, YYYY-MM-DD")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> Response:
    """Every layer at the cell holding (lon, lat) over the published days in [start, end]."""
    snap = await svc.snapshot()
    first = parse_date(start, "start") if start is not None else None
    last = parse_date(end, "end") if end is not None else None
    if first and last and first > last:
        raise HTTPException(400, f"start {first} is after end {last}")
    days = [d for d in snap.days if (first is None or d >= first) and (last is None or d <= last)]
    if svc.product.ready(snap) is None:
        await run_in_threadpool(svc.product.open, snap)
    cell = _cell(svc, snap, lon, lat)
    values = await run_in_threadpool(svc.product.series, snap, cell, days)
    rows = _series_rows(days, values)
    if format == "csv":
        name = f"gsm3_{cell.row}_{cell.col}.csv"
        disposition = f'attachment; filename="{name}"'
        return Response(_csv(rows), media_type="text/csv",
                        headers={"Content-Disposition": disposition})  # fmt: skip
    series = [dict(zip(SERIES_FIELDS, row, strict=True)) for row in rows]
    doc = {"lon": lon, "lat": lat, "cell": cell.as_json(), "units": UNITS, "series": series}
    return _json(doc)
