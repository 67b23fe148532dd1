"""A quick-look PNG per day: the soil-moisture map with a colour bar, units and the date.

Drawn with matplotlib's Agg backend (no display needed). The colour scale is fixed
(0 to 0.5 m3 m-3) so that days can be compared by eye; grey is land without a value, pale
blue-grey is no data (sea, outside the land mask). EASE-Grid 2.0 is cylindrical, so columns
map to longitudes and rows to latitudes, and the axes are labelled in degrees.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from gsm3_ops.grid import EaseGrid, Window

VMIN, VMAX = 0.0, 0.5
CMAP = "YlGnBu"
MAX_PIXELS = 1600  # longest side of the map in the image
NO_DATA = "#dfe6ee"
STEPS = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60)  # degrees between ticks


def quicklook_path(root: Path, day: dt.date) -> Path:
    """``<root>/quicklook/YYYY/gsm3_ql_YYYYMMDD.png``."""
    return Path(root) / "quicklook" / f"{day:%Y}" / f"gsm3_ql_{day:%Y%m%d}.png"


def render(
    soil_moisture: np.ndarray,
    grid: EaseGrid,
    window: Window,
    day: dt.date,
    land: np.ndarray | None = None,
    note: str = "",
) -> bytes:
    """The PNG bytes of the day's map.

    Parameters
    ----------
    land
        Land mask of the window; land cells without a value are drawn grey.
    note
        A line under the map (product version, share of flagged cells ...).
    """
    rows, cols = soil_moisture.shape
    step = max(1, int(np.ceil(max(rows, cols) / MAX_PIXELS)))  # decimate a global map
    sm = soil_moisture[::step, ::step]
    lon, lat = grid.lonlat(window)
    lon_edges = lon[0, ::step]
    lat_edges = lat[::step, 0]
    aspect = rows / cols
    width = 9.0 if aspect >= 0.6 else 13.0  # wide (global) maps get a wider figure
    # A Figure on its own Agg canvas, not pyplot: no global state, no display, thread-safe.
    fig = Figure(figsize=(width, max(3.5, width * aspect * 0.8 + 0.8)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_facecolor(NO_DATA)
    if land is not None:
        no_value = land[::step, ::step] & ~np.isfinite(sm)
        ax.imshow(np.where(no_value, 1.0, np.nan), cmap="Greys", vmin=0, vmax=3,
                  interpolation="nearest")  # fmt: skip
    image = ax.imshow(
        np.ma.masked_invalid(sm), cmap=CMAP, vmin=VMIN, vmax=VMAX, interpolation="nearest"
    )
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, extend="max")
    bar.set_label("volumetric soil moisture, 0-5 cm (m³ m⁻³)", fontsize=11)
    bar.ax.tick_params(labelsize=10)
    ax.set_title(f"GSM3 surface soil moisture  {day.isoformat()}", fontsize=14, weight="bold")
    _degree_ticks(ax.xaxis, lon_edges, "E", "W")
    _degree_ticks(ax.yaxis, lat_edges, "N", "S")
    ax.tick_params(labelsize=10)
    finite = np.isfinite(soil_moisture)
    stats = (
        f"land cells {int(finite.sum())}, mean {np.nanmean(soil_moisture):.3f} "
        f"(range {np.nanmin(soil_moisture):.3f}-{np.nanmax(soil_moisture):.3f}) m³ m⁻³"
        if finite.any()
        else "no values"
    )
    legend = "grey: land without a value; blue-grey: no data"
    ax.set_xlabel(f"{stats}.  {legend}.  {note}".strip(), fontsize=9, color="#333333")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _degree_ticks(axis, centres: np.ndarray, pos: str, neg: str) -> None:
    """Ticks at round degrees: pixel positions interpolated from the cell-centre degrees."""
    lo, hi = float(np.min(centres)), float(np.max(centres))
    step = next((s for s in STEPS if (hi - lo) / s <= 7), STEPS[-1])
    values = np.arange(np.ceil(lo / step) * step, hi + 1e-9, step)
    order = np.argsort(centres)  # latitudes fall with the row index
    where = np.interp(values, centres[order], np.arange(len(centres))[order])
    axis.set_ticks(where)
    digits = 0 if step >= 1 else 1
    axis.set_major_formatter(
        FuncFormatter(lambda _, i: _label(values[i], digits, pos, neg) if i < len(values) else "")
    )


def _label(value: float, digits: int, pos: str, neg: str) -> str:
    if abs(value) < 1e-9:
        return "0°"
    return f"{abs(value):.{digits}f}°{pos if value > 0 else neg}"
