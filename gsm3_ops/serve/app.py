"""The FastAPI app of ``gsm3-ops serve``: a read-only HTTP service over one publish root.

Routes: ``/health``, ``/metrics``, ``/latest``, ``/days``, ``/layers``, ``/legend/{layer}``,
``/tiles/...``, ``/wmts/...``, ``/point``, ``/timeseries``, ``/stac/{path}``, the web map
(``/`` and ``/static/``), ``/docs`` and ``/openapi.json``. Every error is a JSON
``{"detail": ...}``: 4xx for bad input, 503 when the root or the product cannot be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse

from gsm3_ops import __version__
from gsm3_ops.errors import Gsm3Error
from gsm3_ops.serve import catalog, legend, points, tiles
from gsm3_ops.serve.metrics import MetricsMiddleware
from gsm3_ops.serve.middleware import BundledStatic, ReadOnly
from gsm3_ops.serve.service import Service

STATIC = Path(__file__).parent / "static"


def create_app(
    root: str | Path,
    *,
    cors_origins: Sequence[str] = (),
    storage_options: dict[str, Any] | None = None,
    cache_mb: int = 256,
    tile_cache_mb: int = 64,
    refresh_s: float = 2.0,
) -> FastAPI:
    """The service over the publish root ``root`` (a folder or ``s3://bucket/prefix``).

    Parameters
    ----------
    cors_origins
        Origins allowed to call the API from a browser (``*`` for any).
    storage_options
        fsspec options for a remote root (endpoint, credentials ...).
    cache_mb, tile_cache_mb
        Bounds of the decoded-data and rendered-tile caches.
    refresh_s
        Longest time before a new publication is seen.
    """
    svc = Service(root, storage_options, cache_mb << 20, tile_cache_mb << 20, refresh_s)
    app = FastAPI(
        title="gsm3-ops",
        version=__version__,
        summary="Daily 9 km surface soil moisture: maps, tiles, points and time series.",
    )
    app.state.service = svc
    for module in (catalog, legend, tiles, points):
        app.include_router(module.router)
    _web_map(app)
    _metrics_route(app, svc)
    _error_handlers(app)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "HEAD"], allow_headers=["*"])  # fmt: skip
    app.add_middleware(ReadOnly)
    app.add_middleware(MetricsMiddleware, metrics=svc.metrics)
    return app


def _web_map(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = STATIC / "index.html"
        if not page.is_file():
            return JSONResponse({"detail": "the web map is not bundled with this install"}, 503)
        return FileResponse(page, media_type="text/html")

    app.mount("/static", BundledStatic(STATIC), name="static")


def _metrics_route(app: FastAPI, svc: Service) -> None:
    @app.get("/metrics", response_class=Response, tags=["service"],
             responses={200: {"content": {"text/plain": {}}}})  # fmt: skip
    def metrics() -> Response:
        """Prometheus metrics: requests and latency per route, cache hits and sizes."""
        svc.metrics.cache_bytes.labels("data").set(svc.data_cache.nbytes)
        svc.metrics.cache_bytes.labels("tiles").set(svc.tile_cache.nbytes)
        body, content_type = svc.metrics.exposition()
        return Response(body, media_type=content_type)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OSError)
    async def unreadable(request: Request, exc: OSError) -> JSONResponse:
        return JSONResponse({"detail": f"the product cannot be read: {exc}"}, 503)

    @app.exception_handler(Gsm3Error)
    async def unavailable(request: Request, exc: Gsm3Error) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in exc.errors()
        ]
        return JSONResponse({"detail": detail}, 422)


__all__ = ["create_app"]
