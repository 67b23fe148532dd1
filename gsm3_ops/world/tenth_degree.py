"""The global 0.1 degree lat/lon grid that IMERG and MSWEP share, over a 9 km window.

Pixel centres are -179.95 + 0.1 i east and -89.95 + 0.1 j north (IMERG lists latitudes south
to north, MSWEP north to south). A regional file holds the pixels over the window's cells
and ``margin`` pixels around them, as a provider's subset (or a ``cdo sellonlatbox``
extract) of the window would.
"""

from __future__ import annotations

import numpy as np

from gsm3_ops.grid import EaseGrid, Window

STEP = 0.1  # degrees


def pixels(grid: EaseGrid, window: Window, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Ascending latitude and longitude centres (float64, 2 decimals) of the pixels over
    ``window`` and ``margin`` pixels around it."""
    lon, lat = grid.lonlat(window)
    pad = margin * STEP - 1e-4  # inside ``to_latlon``'s margin, so every pixel gets a value
    i = np.arange(np.ceil((lon.min() - pad + 179.95) / STEP), (lon.max() + pad + 179.95) / STEP)
    j = np.arange(np.ceil((lat.min() - pad + 89.95) / STEP), (lat.max() + pad + 89.95) / STEP)
    return np.round(-89.95 + STEP * j, 2), np.round(-179.95 + STEP * i, 2)
