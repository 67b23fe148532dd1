"""MODIS (and VIIRS) land tiles: HDF-EOS containers, sinusoidal tile geometry, calibrated fields.

MODIS land products (``MYD11A1``, ``MCD43A3`` ...) are HDF4-EOS files, read with
``pyhdf.SD``; their VIIRS successors (``VNP21A1D``, ``VNP43IA3`` ...) are HDF5-EOS files, read
with ``h5py``. Both carry the grid in the ``StructMetadata.0`` text (``XDim``, ``YDim``,
``UpperLeftPointMtrs``, ``LowerRightMtrs``, ``ProjParams``): a tile of the global sinusoidal
grid on a sphere of radius 6371007.181 m, 36 x 18 tiles of 1111950.52 m. Stored integers
become values by the HDF convention ``scale_factor * (stored - add_offset)``, after the
``_FillValue`` and packed ``valid_range`` are masked.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gsm3_ops.errors import SourceError
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regrid import MODIS_RADIUS, MODIS_TILE_SIZE, MODIS_X0, MODIS_Y0
from gsm3_ops.sources.base import CorruptFileError, MissingVariableError

# The MODLAND tiling constants (the x extent 20015109.354 m over 18 tiles), as the files
# round them; 2 pi R / 36 differs from TILE_SIZE by 0.4 mm.
SPHERE_RADIUS = MODIS_RADIUS
TILE_SIZE = MODIS_TILE_SIZE
N_H, N_V = 36, 18
TILE_NAME = re.compile(r"\.h(?P<h>\d{2})v(?P<v>\d{2})\.")
# LP DAAC granule names: MYD11A1.A2020061.h21v08.061.2020063041016.hdf (VIIRS: .h5)
GRANULE_NAME = re.compile(
    r"^(?P<short>[A-Za-z0-9]+)\.A(?P<year>\d{4})(?P<doy>\d{3})\.h(?P<h>\d{2})v(?P<v>\d{2})"
    r"\.(?P<collection>\d{3})\.(?P<production>\d{13})\.(?:hdf|h5)$"
)
HDF4_MAGIC = b"\x0e\x03\x13\x01"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CORNER_TOL_M = 1.0  # StructMetadata corners vs the tile number: metres


@dataclass(frozen=True)
class EosGrid:
    """One grid of an HDF-EOS ``StructMetadata.0``: name, size and corner coordinates (m)."""

    name: str
    x_dim: int
    y_dim: int
    upper_left: tuple[float, float]
    lower_right: tuple[float, float]
    sphere_radius: float | None
    fields: tuple[str, ...]

    @property
    def pixel_size(self) -> float:
        """Pixel width in metres."""
        return (self.lower_right[0] - self.upper_left[0]) / self.x_dim


def parse_struct_metadata(text: str) -> dict[str, EosGrid]:
    """The grids described by a ``StructMetadata.0`` text, by grid name."""
    grids = {}
    for block in re.findall(r"GROUP=GRID_\d+(.*?)END_GROUP=GRID_\d+", text, flags=re.S):
        name = _odl(block, "GridName").strip('"')
        ul = _pair(_odl(block, "UpperLeftPointMtrs"))
        lr = _pair(_odl(block, "LowerRightMtrs"))
        params = re.search(r"ProjParams=\(([^)]*)\)", block)
        radius = float(params[1].split(",")[0]) if params else None
        fields = tuple(re.findall(r'DataFieldName="([^"]+)"', block))
        x, y = int(_odl(block, "XDim")), int(_odl(block, "YDim"))
        grids[name] = EosGrid(name, x, y, ul, lr, radius, fields)
    return grids


def _odl(block: str, key: str) -> str:
    m = re.search(rf"^\s*{key}=(.*)$", block, flags=re.M)
    if not m:
        raise ValueError(f"StructMetadata grid without {key}")
    return m[1].strip()


def _pair(text: str) -> tuple[float, float]:
    a, b = text.strip("()").split(",")
    return float(a), float(b)


@dataclass(frozen=True)
class GranuleName:
    """What an LP DAAC tile's file name says: product, day, tile, collection, production."""

    short_name: str
    day: dt.date
    h: int
    v: int
    collection: str
    production: str  # YYYYDDDHHMMSS

    @property
    def tile(self) -> tuple[int, int]:
        """The (h, v) tile number."""
        return self.h, self.v


def parse_granule_name(path: Path | str) -> GranuleName | None:
    """The parts of an LP DAAC tile name, or None when the name is not one."""
    m = GRANULE_NAME.match(Path(path).name)
    if not m:
        return None
    try:
        day = dt.date(int(m["year"]), 1, 1) + dt.timedelta(days=int(m["doy"]) - 1)
    except ValueError:
        return None
    if day.year != int(m["year"]) or int(m["doy"]) == 0:
        return None
    return GranuleName(m["short"], day, int(m["h"]), int(m["v"]), m["collection"], m["production"])


def tile_of(path: Path | str) -> tuple[int, int]:
    """The (h, v) of a tile from its file name (``MYD11A1.A2020001.h14v17.061....hdf``)."""
    m = TILE_NAME.search(Path(path).name)
    if not m:
        raise CorruptFileError(f"{path}: no hHHvVV tile number in the file name")
    return int(m["h"]), int(m["v"])


def tile_corners(h: int, v: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Upper-left and lower-right corners (sinusoidal metres) of tile ``h``, ``v``."""
    x0, y0 = MODIS_X0 + h * TILE_SIZE, MODIS_Y0 - v * TILE_SIZE
    return (x0, y0), (x0 + TILE_SIZE, y0 - TILE_SIZE)


def tiles_for_bbox(west: float, south: float, east: float, north: float) -> list[tuple[int, int]]:
    """The land-grid tiles (h, v) that may hold pixels inside a lon/lat box.

    A tile spans 10 degrees of latitude; its longitude span at a latitude is its x span
    divided by ``R cos(lat)``, widest at its pole-ward edge. The test is conservative: it may
    name a neighbouring tile, never miss one.
    """
    out = []
    for v in range(N_V):
        top = 90.0 - 10.0 * v
        bottom = top - 10.0
        if bottom > north or top < south:
            continue
        # cos(lat) over the tile, smallest at the pole-ward edge, largest at the equator-ward one
        edges = np.radians([min(abs(top), 89.9999), min(abs(bottom), 89.9999)])
        cos_lo, cos_hi = float(np.cos(edges).min()), float(np.cos(edges).max())
        for h in range(N_H):
            x0 = MODIS_X0 + h * TILE_SIZE
            x1 = x0 + TILE_SIZE
            to_lon = 180.0 / (math.pi * SPHERE_RADIUS)
            near = min(abs(x0), abs(x1)) * to_lon / cos_hi  # the tile's |lon| nearest lon 0
            if near >= 180.0 and not (x0 < 0 < x1):
                continue  # wholly outside the sinusoidal domain: no such tile is produced
            lon_lo = max(-180.0, min(x0 * to_lon / cos_lo, x0 * to_lon / cos_hi))
            lon_hi = min(180.0, max(x1 * to_lon / cos_lo, x1 * to_lon / cos_hi))
            if lon_lo <= east and lon_hi >= west:
                out.append((h, v))
    return out


def tile_cells(
    h: int, v: int, n: int, grid: EaseGrid, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels of an ``n`` x ``n`` tile fall in ``window``, and in which cell.

    Returns flat pixel indices into the tile and the flat (row-major) window cell of each.
    Same answer as :func:`gsm3_ops.regrid.cell_index`, faster: a sinusoidal pixel row has
    one latitude, so one EASE2 row, and EASE2 x is linear in longitude (cylindrical).
    """
    offsets = (np.arange(n) + 0.5) * TILE_SIZE / n
    lat = np.degrees((MODIS_Y0 - v * TILE_SIZE - offsets) / SPHERE_RADIUS)  # one per pixel row
    rows, _ = grid.lonlat_to_rowcol(np.zeros(n), lat)
    r = rows - window.row0
    keep_rows = np.flatnonzero((rows >= 0) & (r >= 0) & (r < window.n_rows))
    if keep_rows.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # The same longitudes as regrid.sinusoidal_lonlat, for the kept rows only.
    x = MODIS_X0 + h * TILE_SIZE + offsets
    lon = np.degrees(x[None, :] / (SPHERE_RADIUS * np.cos(np.radians(lat[keep_rows]))[:, None]))
    e0, e1 = _ease_x_at_0_and_1_degree(grid)
    col = np.floor((e0 + lon * (e1 - e0) - grid.x0) / grid.cell_size) - window.col0
    ok = (np.abs(lon) <= 180.0) & (col >= 0) & (col < window.n_cols)
    row_idx = np.broadcast_to(keep_rows[:, None], lon.shape)[ok]
    col_idx = np.broadcast_to(np.arange(n)[None, :], lon.shape)[ok]
    cells = r[row_idx] * window.n_cols + col[ok].astype(np.int64)
    return row_idx * n + col_idx, cells


@dataclass(frozen=True)
class TilePixels:
    """The pixels of one tile that fall in a window: the smallest block of rows and columns
    holding them, cut (row-major) into runs of pixels of one cell: where each run starts
    and its flat window cell (the cell count for pixels outside the window)."""

    rows: slice
    cols: slice
    run_starts: np.ndarray  # intp, into the flattened block
    run_cells: np.ndarray  # intp

    @property
    def empty(self) -> bool:
        """True when no pixel of the tile lies in the window."""
        return self.run_starts.size == 0


@functools.lru_cache(maxsize=64)
def tile_pixels(h: int, v: int, n: int, grid: EaseGrid, window: Window) -> TilePixels:
    """:func:`tile_cells` as a block to read and runs of one cell; cached per tile and
    window, so a day's read is a block read, a sum per run and a bincount of the runs."""
    pixels, cells = tile_cells(h, v, n, grid, window)
    if pixels.size == 0:
        return TilePixels(slice(0, 0), slice(0, 0), np.empty(0, np.intp), np.empty(0, np.intp))
    row, col = np.divmod(pixels, n)
    r0, r1, c0, c1 = int(row.min()), int(row.max()) + 1, int(col.min()), int(col.max()) + 1
    cell_map = np.full((r1 - r0) * (c1 - c0), window.n_rows * window.n_cols, dtype=np.intp)
    cell_map[(row - r0) * (c1 - c0) + (col - c0)] = cells
    starts = np.flatnonzero(np.r_[True, cell_map[1:] != cell_map[:-1]])
    run_cells = cell_map[starts]
    for a in (starts, run_cells):
        a.flags.writeable = False  # shared by every caller of the cache
    return TilePixels(slice(r0, r1), slice(c0, c1), starts, run_cells)


def window_tiles(n: int, grid: EaseGrid, window: Window) -> list[tuple[int, int]]:
    """The tiles (h, v) of ``n`` x ``n`` pixels that hold pixels of ``window``."""
    lon, lat = grid.lonlat(window)
    # Centres plus a margin wider than half a cell (0.05 deg of lon, < 0.2 of lat).
    w, s = float(lon.min()) - 0.1, float(lat.min()) - 0.25
    near = tiles_for_bbox(w, s, float(lon.max()) + 0.1, float(lat.max()) + 0.25)
    return [hv for hv in near if not tile_pixels(*hv, n, grid, window).empty]


def bin_block(block: np.ndarray, px: TilePixels, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the non-NaN values of a tile's block (read at ``px.rows``,
    ``px.cols``) per window cell: ``n_cells + 1`` bins, the last for pixels outside."""
    flat = np.asarray(block).ravel()
    valid = ~np.isnan(flat)
    sums = np.add.reduceat(np.where(valid, flat, 0), px.run_starts, dtype=np.float64)
    counts = np.add.reduceat(valid, px.run_starts, dtype=np.int64)
    return (
        np.bincount(px.run_cells, sums, n_cells + 1),
        np.bincount(px.run_cells, counts, n_cells + 1).astype(np.int64),
    )


@functools.lru_cache(maxsize=8)
def _ease_x_at_0_and_1_degree(grid: EaseGrid) -> tuple[float, float]:
    """EASE2 x (metres) at longitude 0 and 1 degree east (x is linear in longitude)."""
    from pyproj import Transformer

    xs, _ = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(
        [0.0, 1.0], [0.0, 0.0]
    )
    return float(xs[0]), float(xs[1])


class TileFile:
    """An open HDF-EOS tile (HDF4 via pyhdf, HDF5 via h5py); use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._grids: dict[str, EosGrid] | None = None
        try:
            with open(self.path, "rb") as f:
                head = f.read(8)
        except OSError as exc:
            raise CorruptFileError(f"{self.path}: cannot be read ({exc})") from None
        try:
            if head.startswith(HDF4_MAGIC):
                from pyhdf.SD import SD, SDC

                self._h4, self._h5 = SD(str(self.path), SDC.READ), None
            elif head.startswith(HDF5_MAGIC):
                import h5py

                self._h4, self._h5 = None, h5py.File(self.path, "r")
            else:
                raise CorruptFileError(f"{self.path}: neither an HDF4 nor an HDF5 file")
        except CorruptFileError:
            raise
        except Exception as exc:  # pyhdf raises HDF4Error, h5py OSError, on a cut-off file
            raise CorruptFileError(f"{self.path}: truncated or corrupt ({exc})") from None

    def __enter__(self) -> TileFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        if self._h4 is not None:
            self._h4.end()
        if self._h5 is not None:
            self._h5.close()

    def struct_metadata(self) -> str:
        """The ``StructMetadata.0`` text."""
        try:
            if self._h4 is not None:  # by index (pyhdf's by-name get fails on SD attributes)
                index = self._h4.attr("StructMetadata.0").index()
                return str(self._h4.attr(index).get())
            raw = self._h5["HDFEOS INFORMATION"]["StructMetadata.0"][()]
            return raw.decode() if isinstance(raw, bytes) else str(raw)
        except Exception as exc:  # a missing attribute or a broken HDF4 attribute table
            raise CorruptFileError(f"{self.path}: no readable StructMetadata.0 ({exc})") from None

    def grid_of(self, field: str) -> EosGrid:
        """The grid a field belongs to (its shape, corners and sphere)."""
        if self._grids is None:
            try:
                self._grids = parse_struct_metadata(self.struct_metadata())
            except ValueError as exc:
                raise CorruptFileError(
                    f"{self.path}: StructMetadata.0 unreadable ({exc})"
                ) from None
        for grid in self._grids.values():
            if field in grid.fields:
                return grid
        raise MissingVariableError(f"{self.path}: no field {field} in any grid")

    def read(
        self, name: str, rows: slice | None = None, cols: slice | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The stored (packed) array of field ``name`` (or its ``rows`` x ``cols`` block) and
        its attributes."""
        block = (rows or slice(None), cols or slice(None))
        try:
            if self._h4 is not None:
                if name not in self._h4.datasets():
                    raise MissingVariableError(f"{self.path}: no variable {name}")
                sds = self._h4.select(name)
                try:
                    data = sds.get() if rows is None and cols is None else sds[block]
                    return np.asarray(data), dict(sds.attributes())
                finally:
                    sds.endaccess()
            found = []
            self._h5.visititems(
                lambda k, o: found.append(o) if k.rsplit("/", 1)[-1] == name else None
            )
            if not found:
                raise MissingVariableError(f"{self.path}: no variable {name}")
            ds = found[0]
            return np.asarray(ds[block]), {k: _plain(v) for k, v in ds.attrs.items()}
        except MissingVariableError:
            raise
        except Exception as exc:  # a cut-off data block surfaces only when it is read
            raise CorruptFileError(f"{self.path}: {name} cannot be read ({exc})") from None


def _plain(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind in "SO":
        return value.decode() if isinstance(value, bytes) else value
    return arr.tolist() if arr.size > 1 else arr.ravel()[0].item()


def calibrate(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """``scale_factor * (stored - add_offset)`` (float64), NaN at fill and outside valid_range."""
    scale, offset = _scale_offset(attrs)
    return np.where(_packed_invalid(raw, attrs), np.nan, scale * (raw.astype(np.float64) - offset))


def _packed_invalid(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Stored values at ``_FillValue`` or outside the packed ``valid_range``."""
    bad = np.zeros(raw.shape, dtype=bool)
    fill = attrs.get("_FillValue")
    if fill is not None:
        bad |= raw == np.asarray(fill).ravel()[0]
    vr = attrs.get("valid_range")
    if vr is not None:
        # Python numbers: compared in the array's own type (no float64 copy of the array)
        lo, hi = (v.item() for v in np.asarray(vr).ravel()[:2])
        bad |= (raw < lo) | (raw > hi)
    return bad


def _scale_offset(attrs: dict[str, Any]) -> tuple[float, float]:
    scale = float(np.asarray(attrs.get("scale_factor", 1.0)).ravel()[0])
    offset = float(np.asarray(attrs.get("add_offset", 0.0)).ravel()[0])
    return scale, offset


def check_tiles(paths: list[Path], tiles: list[tuple[int, int]], fields: set[str]) -> int:
    """Open each tile and check that ``fields`` lie on the grid of its tile number (corners
    within 1 m, square); the pixels per side, which must be the same for every field."""
    if len(set(tiles)) != len(tiles):
        raise SourceError(f"a tile appears twice in {[f.name for f in paths]}")
    sizes = set()
    for path, (h, v) in zip(paths, tiles, strict=True):
        with TileFile(path) as t:
            for field in sorted(fields):
                g = t.grid_of(field)
                ul, lr = tile_corners(h, v)
                off = max(
                    abs(a - b)
                    for a, b in zip((*g.upper_left, *g.lower_right), (*ul, *lr), strict=True)
                )
                if g.x_dim != g.y_dim or off > _CORNER_TOL_M:
                    raise CorruptFileError(
                        f"{path}: grid {g.name} ({g.x_dim} x {g.y_dim}, corners {g.upper_left} "
                        f"{g.lower_right}) is not tile h{h:02d}v{v:02d}"
                    )
                sizes.add(g.x_dim)
    if len(sizes) != 1:
        raise SourceError(
            f"{paths[0].name}: fields {sorted(fields)} lie on grids of {sorted(sizes)} pixels"
        )
    return sizes.pop()


def load_field(
    path: Path,
    field: str,
    qa_field: str,
    qa_mask: int,
    max_level: int,
    rows: slice | None = None,
    cols: slice | None = None,
    divisor: bool = False,
) -> np.ndarray:
    """One tile's field (or its ``rows`` x ``cols`` block): calibrated, NaN where QA rejects
    it or at fill. ``divisor``: the file's ``scale_factor`` divides (MOD13's vegetation
    indices state 10000 for values stored x 10000), as opposed to the HDF convention."""
    with TileFile(path) as t:
        raw, attrs = t.read(field, rows, cols)
        qa, _ = t.read(qa_field, rows, cols)
    if raw.shape != qa.shape:
        raise CorruptFileError(f"{path}: {field} {raw.shape} and {qa_field} {qa.shape} differ")
    if qa.dtype.kind in "iu":  # mask bits beyond the QA type's width mean nothing
        qa_mask &= int(np.iinfo(qa.dtype).max)
    reject = ((qa & qa_mask) > max_level) | _packed_invalid(raw, attrs)
    scale, offset = _scale_offset(attrs)
    if divisor:
        scale = 1.0 / scale
    out = raw.astype(np.float32)  # float32 keeps ~7 digits: 1e-5 K at 300 K
    out -= np.float32(offset)
    out *= np.float32(scale)
    out[reject] = np.nan
    return out
