"""Prometheus metrics of the service: requests and latency per route template, tile cache hits.

Each app has its own registry (two apps in one process do not share counters). The
middleware is plain ASGI (no per-request task or body copy) and labels a request by the route
template that matched (``/tiles/{layer}/{date}/{z}/{x}/{y}.png``), never by the raw path, so
the label set stays bounded; requests that matched nothing count as ``unmatched``.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's counters, histograms and gauges in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gsm3_serve_requests", "HTTP requests answered", ["route", "method", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "gsm3_serve_request_seconds", "time to answer a request", ["route"],
            buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.tile_cache = Counter(
            "gsm3_serve_tile_cache", "rendered-tile cache lookups", ["result"],
            registry=self.registry,
        )  # fmt: skip
        self.cache_bytes = Gauge(
            "gsm3_serve_cache_bytes", "bytes held by the caches", ["cache"], registry=self.registry
        )
        self.published_days = Gauge(
            "gsm3_serve_published_days", "days published under the root", registry=self.registry
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    """The template of the route that answered, or ``unmatched``."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class MetricsMiddleware:
    """Count requests and time them per route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(scope)
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
