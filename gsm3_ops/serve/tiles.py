"""Map tiles of a published day: XYZ (``/tiles``) and WMTS (``/wmts``), both Web-Mercator
(``WebMercatorQuad``, i.e. GoogleMapsCompatible) 256 px PNGs.

rio-tiler reads each tile from the day's EPSG:6933 COG and reprojects it (nearest neighbour:
9 km cells stay crisp, flag bits are never blended); the layer's palette colours it and
no-data is transparent. A tile beyond the data is a transparent PNG, not an error. Rendered
tiles are kept in a byte-bounded LRU keyed by the publication snapshot.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePath
from typing import Annotated

import morecantile
import numpy as np
import rasterio
from fastapi import APIRouter, HTTPException, Path, Request, Response
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render
from starlette.concurrency import run_in_threadpool

from gsm3_ops.publish.cog import cog_path
from gsm3_ops.publish.layers import Layer
from gsm3_ops.serve.palettes import PALETTES
from gsm3_ops.serve.root import PublishRoot
from gsm3_ops.serve.service import (
    DATE_PATTERN,
    LAYER_KEYS,
    Service,
    Svc,
    errors,
    layer_of,
    published_day,
)
from gsm3_ops.serve.wmts import capabilities

router = APIRouter(tags=["tiles"])
TMS = morecantile.tms.get("WebMercatorQuad")
TILE_SIZE = 256
MAX_ZOOM = 18
PNG_HEADERS_LATEST = "public, max-age=60"
PNG_HEADERS_DATED = "public, max-age=3600"
PNG = {200: {"content": {"image/png": {}}, "description": "a 256 x 256 PNG tile"}}
LayerName = Annotated[str, Path(description=f"layer name or code: {', '.join(LAYER_KEYS)}")]
DateText = Annotated[str, Path(pattern=DATE_PATTERN, description="YYYY-MM-DD or latest")]


def _empty_png() -> bytes:
    blank = np.zeros((1, TILE_SIZE, TILE_SIZE), dtype=np.uint8)
    return render(blank, np.zeros((TILE_SIZE, TILE_SIZE), dtype=np.uint8), img_format="PNG")


EMPTY_PNG = _empty_png()


def _dataset(root: PublishRoot, rel: str) -> rasterio.DatasetReader:
    """The COG at ``rel``, opened from disk or through the root's filesystem."""
    if root.local is not None:
        return rasterio.open(root.url(rel))
    return rasterio.open(root.url(rel), opener=root.fs)


def render_tile(root: PublishRoot, layer: Layer, day: dt.date, z: int, x: int, y: int) -> bytes:
    """The PNG tile ``z/x/y`` of ``layer`` on ``day`` (transparent beyond the data)."""
    rel = cog_path(PurePath(), day.isoformat(), layer.code).as_posix()  # relative to the root
    try:
        src_dst = _dataset(root, rel)
    except rasterio.RasterioIOError as exc:
        raise OSError(f"cannot open the COG {rel}: {exc}") from None
    with src_dst, Reader(None, dataset=src_dst) as src:
        try:
            img = src.tile(x, y, z, tilesize=TILE_SIZE, resampling_method="nearest",
                           reproject_method="nearest")  # fmt: skip
        except TileOutsideBounds:
            return EMPTY_PNG
    band = img.array[0]
    valid = ~np.ma.getmaskarray(band)
    data = np.asarray(band.data)
    if layer.is_flag:
        valid &= data != layer.nodata
    else:
        valid &= np.isfinite(data)
    if not valid.any():
        return EMPTY_PNG
    palette = PALETTES[layer.name]
    mask = np.where(valid, 255, 0).astype(np.uint8)
    return render(palette.to_bytes(data)[None], mask, img_format="PNG",
                  colormap=palette.colormap)  # fmt: skip


async def tile_response(
    svc: Service, layer_name: str, date: str, z: int, x: int, y: int
) -> Response:
    """The tile response, rendered once per publication snapshot and then cached."""
    layer = layer_of(layer_name)
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise HTTPException(400, f"tile {z}/{x}/{y} does not exist: x and y must be < {n}")
    snap = await svc.snapshot()
    day = published_day(snap, date)
    key = (snap.key, layer.name, day, z, x, y)
    png = svc.tile_cache.get(key)
    if png is None:
        svc.metrics.tile_cache.labels("miss").inc()
        png = await run_in_threadpool(render_tile, svc.root, layer, day, z, x, y)
        svc.tile_cache.put(key, png)
        svc.metrics.cache_bytes.labels("tiles").set(svc.tile_cache.nbytes)
    else:
        svc.metrics.tile_cache.labels("hit").inc()
    cache = PNG_HEADERS_LATEST if date == "latest" else PNG_HEADERS_DATED
    return Response(png, media_type="image/png", headers={"Cache-Control": cache})


@router.get(
    "/tiles/{layer}/{date}/{z}/{x}/{y}.png",
    response_class=Response,
    responses={**PNG, **errors(400, 404, 503)},
)
async def xyz_tile(
    svc: Svc,
    layer: LayerName,
    date: DateText,
    z: Annotated[int, Path(ge=0, le=MAX_ZOOM)],
    x: Annotated[int, Path(ge=0)],
    y: Annotated[int, Path(ge=0)],
) -> Response:
    """A 256 px Web-Mercator XYZ tile of a layer on a published day (or ``latest``)."""
    return await tile_response(svc, layer, date, z, x, y)


@router.get(
    "/wmts/{layer}/{date}/{tile_matrix}/{tile_row}/{tile_col}.png",
    response_class=Response,
    responses={**PNG, **errors(400, 404, 503)},
)
async def wmts_tile(
    svc: Svc,
    layer: LayerName,
    date: DateText,
    tile_matrix: Annotated[int, Path(ge=0, le=MAX_ZOOM)],
    tile_row: Annotated[int, Path(ge=0)],
    tile_col: Annotated[int, Path(ge=0)],
) -> Response:
    """A WMTS tile (GoogleMapsCompatible): TileMatrix is the zoom, TileRow y, TileCol x."""
    return await tile_response(svc, layer, date, tile_matrix, tile_col, tile_row)


@router.get(
    "/wmts/WMTSCapabilities.xml",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}, **errors(503)},
)
async def wmts_capabilities(request: Request, svc: Svc) -> Response:
    """WMTS 1.0.0 capabilities: one layer per product layer, a Time dimension of the days."""
    snap = await svc.snapshot()
    bbox = None
    if snap.days:
        opened = await run_in_threadpool(svc.product.open, snap)
        bbox = opened.domain
    base = str(request.base_url).rstrip("/")
    xml = capabilities(base, snap.days, bbox)
    return Response(xml, media_type="application/xml",
                    headers={"Cache-Control": PNG_HEADERS_LATEST})  # fmt: skip
