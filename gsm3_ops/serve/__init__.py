"""``gsm3-ops serve``: a read-only HTTP service over a publish root (maps, tiles, WMTS, point
values, time series, the STAC catalogue, Prometheus metrics). See :func:`create_app`."""

from gsm3_ops.serve.app import create_app

__all__ = ["create_app"]
