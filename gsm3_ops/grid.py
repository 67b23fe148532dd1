"""EASE-Grid 2.0 global grids (EPSG:6933): cell geometry, lon/lat <-> row/col, windows, tiles.

The definitions follow NSIDC's ``EASE2_M09km.gpd`` and ``EASE2_M36km.gpd``. Rows count
from the top (north), columns from the left (180 degrees west); cell centres sit at
``x0 + (col + 0.5) * cell`` and ``y0 - (row + 0.5) * cell``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer

from gsm3_ops.errors import UsageError

CRS = "EPSG:6933"


class GridError(UsageError, ValueError):
    """A request that the grid cannot answer (unknown grid, empty or out-of-grid window)."""


@dataclass(frozen=True)
class Window:
    """A rectangle of grid cells: ``row0``/``col0`` upper-left, ``n_rows`` x ``n_cols``."""

    row0: int
    col0: int
    n_rows: int
    n_cols: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the window."""
        return (self.n_rows, self.n_cols)

    @property
    def rows(self) -> slice:
        """Row slice into a full-grid array."""
        return slice(self.row0, self.row0 + self.n_rows)

    @property
    def cols(self) -> slice:
        """Column slice into a full-grid array."""
        return slice(self.col0, self.col0 + self.n_cols)

    def relative_to(self, outer: Window) -> Window:
        """This window in the index space of ``outer`` (which must contain it)."""
        if not outer.contains(self):
            raise GridError(f"window {self} is not inside {outer}")
        return Window(self.row0 - outer.row0, self.col0 - outer.col0, self.n_rows, self.n_cols)

    def contains(self, other: Window) -> bool:
        """Whether ``other`` lies wholly inside this window."""
        return (
            self.row0 <= other.row0
            and self.col0 <= other.col0
            and other.row0 + other.n_rows <= self.row0 + self.n_rows
            and other.col0 + other.n_cols <= self.col0 + self.n_cols
        )


@dataclass(frozen=True)
class EaseGrid:
    """One global EASE-Grid 2.0 grid on the WGS84 ellipsoid."""

    name: str
    cell_size: float
    n_cols: int
    n_rows: int
    x0: float
    y0: float

    @property
    def crs(self) -> str:
        """The grid's CRS as an authority string."""
        return CRS

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the whole grid."""
        return (self.n_rows, self.n_cols)

    @property
    def full(self) -> Window:
        """The window covering the whole grid."""
        return Window(0, 0, self.n_rows, self.n_cols)

    def transform(self, window: Window | None = None) -> Affine:
        """Affine transform (pixel corner -> metres) of the grid or of a window of it."""
        w = window or self.full
        return Affine(
            self.cell_size, 0.0, self.x0 + w.col0 * self.cell_size,
            0.0, -self.cell_size, self.y0 - w.row0 * self.cell_size,
        )  # fmt: skip

    def x_centres(self, window: Window | None = None) -> np.ndarray:
        """Cell-centre x (metres, float64) of the window's columns."""
        w = window or self.full
        return self.x0 + (np.arange(w.col0, w.col0 + w.n_cols) + 0.5) * self.cell_size

    def y_centres(self, window: Window | None = None) -> np.ndarray:
        """Cell-centre y (metres, float64) of the window's rows, north to south."""
        w = window or self.full
        return self.y0 - (np.arange(w.row0, w.row0 + w.n_rows) + 0.5) * self.cell_size

    def xy_to_rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column (int64) of the cells containing projected points; -1 outside."""
        col = np.floor((np.asarray(x, dtype=float) - self.x0) / self.cell_size)
        row = np.floor((self.y0 - np.asarray(y, dtype=float)) / self.cell_size)
        outside = ~((row >= 0) & (row < self.n_rows) & (col >= 0) & (col < self.n_cols))
        row = np.where(outside, -1, row).astype(np.int64)
        col = np.where(outside, -1, col).astype(np.int64)
        return row, col

    def lonlat_to_rowcol(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column (int64) of the cells containing lon/lat points; -1 outside the grid."""
        x, y = _to_xy.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        return self.xy_to_rowcol(x, y)

    def _checked(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column as arrays; GridError when any lies outside the grid."""
        row = np.asarray(row)
        col = np.asarray(col)
        if np.any((row < 0) | (row >= self.n_rows) | (col < 0) | (col >= self.n_cols)):
            raise GridError(f"row/col outside the {self.name} grid {self.shape}")
        return row, col

    def rowcol_to_lonlat(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude (degrees) of cell centres."""
        row, col = self._checked(row, col)
        x = self.x0 + (col + 0.5) * self.cell_size
        y = self.y0 - (row + 0.5) * self.cell_size
        return _to_lonlat.transform(x, y)

    def lonlat(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """2-D longitude and latitude arrays (rows, cols) of a window's cell centres."""
        w = window or self.full
        rows, cols = np.meshgrid(
            np.arange(w.row0, w.row0 + w.n_rows),
            np.arange(w.col0, w.col0 + w.n_cols),
            indexing="ij",
        )
        return self.rowcol_to_lonlat(rows, cols)

    def cell_bounds(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, ...]:
        """Projected bounds (xmin, ymin, xmax, ymax) in metres of cells."""
        row, col = self._checked(row, col)
        xmin = self.x0 + col * self.cell_size
        ymax = self.y0 - row * self.cell_size
        return xmin, ymax - self.cell_size, xmin + self.cell_size, ymax

    def window_from_bbox(
        self, lon_min: float, lat_min: float, lon_max: float, lat_max: float
    ) -> Window:
        """Smallest window whose cells cover the lon/lat box (clipped to the grid). A box edge
        on a cell edge (within 1e-6 cell) does not pull in the neighbouring cell."""
        if not (lon_min < lon_max and lat_min < lat_max):
            raise GridError(f"empty lon/lat box ({lon_min}, {lat_min}, {lon_max}, {lat_max})")
        # Cylindrical: x depends on lon only and y on lat only, so the corners bound the box.
        lats = np.clip([lat_min, lat_max], -90.0, 90.0)
        (x_lo, x_hi), (y_lo, y_hi) = _to_xy.transform([lon_min, lon_max], lats)
        # Box edges in cell units from the grid's upper-left corner, clipped to the grid.
        c_lo, c_hi = np.clip(np.array([x_lo, x_hi]) - self.x0, 0, None) / self.cell_size
        r_lo, r_hi = np.clip(self.y0 - np.array([y_hi, y_lo]), 0, None) / self.cell_size
        c_lo, c_hi = min(c_lo, self.n_cols), min(c_hi, self.n_cols)
        r_lo, r_hi = min(r_lo, self.n_rows), min(r_hi, self.n_rows)
        if not (c_lo < c_hi and r_lo < r_hi):
            raise GridError(
                f"lon/lat box ({lon_min}, {lat_min}, {lon_max}, {lat_max}) "
                f"does not overlap the {self.name} grid (longitudes wrap to -180..180; "
                "boxes across the antimeridian are not supported)"
            )
        r0, c0 = _first_cell(r_lo, self.n_rows), _first_cell(c_lo, self.n_cols)
        r1, c1 = max(_end_cell(r_hi), r0 + 1), max(_end_cell(c_hi), c0 + 1)
        return Window(r0, c0, r1 - r0, c1 - c0)

    def tiles(self, window: Window | None = None, size: int = 256) -> Iterator[Window]:
        """Fixed-size tiles covering a window, starting at its upper-left corner (the last row
        and column of tiles are clipped to the window). Cube chunks follow the same tiling.
        A bad ``size`` raises GridError at the call, not at the first iteration."""
        w = window or self.full
        if size <= 0:
            raise GridError(f"tile size must be positive, got {size}")
        return _tiles(w, size)

    def land_mask(self, window: Window | None = None) -> np.ndarray:
        """Boolean land mask of a window: a cell is land when most of a 3 x 3 set of points
        spread over it falls on land in the ``global-land-mask`` (GLOBE 1 km) data. Read from
        the grid's packaged mask (``gsm3_ops/masks/``, made by :func:`write_packaged_mask`);
        loading GLOBE itself takes seconds in every process."""
        w = window or self.full
        return _packaged_mask(self.name, self.full.shape)[w.rows, w.cols].copy()

    def globe_land_mask(self, window: Window | None = None) -> np.ndarray:
        """:meth:`land_mask` computed from the GLOBE data (what the packaged masks hold)."""
        from global_land_mask import globe

        w = window or self.full
        offsets = (np.arange(3) + 0.5) / 3.0
        votes = np.zeros(w.shape, dtype=np.int8)
        for dy in offsets:
            for dx in offsets:
                x = self.x0 + (np.arange(w.col0, w.col0 + w.n_cols) + dx) * self.cell_size
                y = self.y0 - (np.arange(w.row0, w.row0 + w.n_rows) + dy) * self.cell_size
                lon, lat = _to_lonlat.transform(*np.meshgrid(x, y))
                votes += globe.is_land(np.clip(lat, -89.999, 89.999), lon).astype(np.int8)
        return votes >= 5


MASKS = Path(__file__).parent / "masks"


@functools.cache
def _packaged_mask(name: str, shape: tuple[int, int]) -> np.ndarray:
    with np.load(MASKS / f"land_{name}.npz") as f:
        bits = np.unpackbits(f["land"], count=shape[0] * shape[1])
    return bits.reshape(shape).astype(bool)


def write_packaged_mask(grid: EaseGrid) -> Path:
    """Compute ``grid``'s global land mask from GLOBE and write it into the package."""
    MASKS.mkdir(exist_ok=True)
    path = MASKS / f"land_{grid.name}.npz"
    np.savez_compressed(path, land=np.packbits(grid.globe_land_mask().ravel()))
    return path


def _tiles(w: Window, size: int) -> Iterator[Window]:
    """The tiles of ``w`` (see ``EaseGrid.tiles``)."""
    for r in range(w.row0, w.row0 + w.n_rows, size):
        for c in range(w.col0, w.col0 + w.n_cols, size):
            yield Window(r, c, min(size, w.row0 + w.n_rows - r), min(size, w.col0 + w.n_cols - c))


_EDGE_TOL = 1e-6  # cells: round-off allowance when a box edge falls on a cell edge


def _first_cell(edge: float, n: int) -> int:
    """Index of the cell holding a box's low edge (in cell units)."""
    return min(int(np.floor(edge + _EDGE_TOL)), n - 1)


def _end_cell(edge: float) -> int:
    """One past the index of the cell holding a box's high edge (in cell units)."""
    return int(np.ceil(edge - _EDGE_TOL))


_to_xy = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
_to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

_X0 = -17367530.44516138
M09 = EaseGrid("M09", 9008.055210146, 3856, 1624, _X0, 7314540.830638505)
M36 = EaseGrid("M36", 36032.220840584, 964, 406, _X0, 7314540.830638505)
GRIDS = {g.name: g for g in (M09, M36)}


def get_grid(name: str) -> EaseGrid:
    """The grid called ``name`` (``M09`` or ``M36``)."""
    try:
        return GRIDS[name]
    except KeyError:
        raise GridError(f"unknown grid {name!r}; known grids: {', '.join(GRIDS)}") from None
