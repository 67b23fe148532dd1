"""Which of the configured evaluation regions a site or cell belongs to."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gsm3_ops.config import BoxConfig

OTHER = "Other"


def region_of(lon: np.ndarray, lat: np.ndarray, regions: Mapping[str, BoxConfig]) -> np.ndarray:
    """Region name per point: the first configured box that contains it, else ``"Other"``."""
    lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
    out = np.full(lon.shape, OTHER, dtype=object)
    free = np.ones(lon.shape, dtype=bool)
    for name, box in regions.items():
        hit = free & box.contains(lon, lat)
        out[hit] = name
        free &= ~hit
    return out.astype(str)
