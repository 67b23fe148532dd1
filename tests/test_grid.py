"""EASE-Grid 2.0 grids checked against NSIDC's definitions and real SMAP / USCRN data."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import CRS as PROJ_CRS
from pyproj import Transformer

from gsm3_ops.grid import CRS, M09, M36, EaseGrid, GridError, Window, get_grid

# Independent of the module's own transformers, so the tests do not check grid.py with itself.
TO_XY = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)
SMAP_FILE = "smap_structure/SC_SPL3SMP_009_prefetch.nc4"
LAND_FILE = "smap_structure/ease36land.nc"
# 36 km land mask vs ease36land.nc over the file's rows (it stops at 55.4 S: no Antarctica,
# which the file leaves out). Observed: agreement 0.9932, IoU 0.9767, recall 0.9883,
# precision 0.9881.
MIN_LAND_AGREEMENT = 0.985
MIN_LAND_IOU = 0.96
MIN_LAND_RECALL_PRECISION = 0.975


def read_gpd(path: Path) -> dict[str, str]:
    """``key: value`` pairs of an NSIDC .gpd file (``;`` starts a comment)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        text = line.split(";", 1)[0].strip()
        if text:
            key, value = text.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def read_array(path: Path, var: str, driver: str = "HDF5") -> np.ndarray:
    """One variable of a netCDF-4/HDF5 file through GDAL (h5py is not a dependency).

    The HDF5 driver keeps the stored row order (GDAL's netCDF driver flips 2-D arrays
    without a y coordinate); the netCDF driver is needed for 1-D variables.
    """
    name = f"HDF5:{path}://{var.lstrip('/')}" if driver == "HDF5" else f"netcdf:{path}:{var}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(name) as ds:
            return ds.read(1)


def ease36land(fixtures: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-point index, lon and lat (1-D) of the ease36land.nc land points."""
    path = fixtures / LAND_FILE
    return tuple(read_array(path, v, driver="netCDF")[0] for v in ("gpi", "lon", "lat"))


def all_cells(grid: EaseGrid) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable (rows, 1) and (1, cols) index arrays of the whole grid."""
    return np.arange(grid.n_rows)[:, None], np.arange(grid.n_cols)[None, :]


# 1. NSIDC grid definitions


@pytest.mark.parametrize(("grid", "name"), [(M09, "EASE2_M09km.gpd"), (M36, "EASE2_M36km.gpd")])
def test_grid_matches_nsidc_gpd(fixtures: Path, grid: EaseGrid, name: str) -> None:
    """Cell size, shape and origin agree with NSIDC's .gpd definition."""
    gpd = read_gpd(fixtures / "ease_grid_reference" / name)
    assert gpd["Map Projection"] == "Cylindrical Equal-Area (ellipsoid)"
    assert grid.cell_size == pytest.approx(float(gpd["Grid Map Units per Cell"]), abs=1e-9)
    assert grid.n_cols == int(gpd["Grid Width"])
    assert grid.n_rows == int(gpd["Grid Height"])
    assert grid.x0 == pytest.approx(float(gpd["Map Origin X"]), abs=1e-3)
    assert grid.y0 == pytest.approx(float(gpd["Map Origin Y"]), abs=1e-3)
    # Origin row/col -0.5: the map origin is the outer corner of cell (0, 0), not its centre.
    assert float(gpd["Grid Map Origin Column"]) == float(gpd["Grid Map Origin Row"]) == -0.5
    assert grid.transform() @ (0, 0) == pytest.approx((grid.x0, grid.y0), abs=1e-6)
    # The gpd's own identities: cell = -2 x0 / width and y0 = cell * height / 2.
    assert grid.cell_size == pytest.approx(-2 * grid.x0 / grid.n_cols, abs=1e-6)
    assert grid.y0 == pytest.approx(grid.cell_size * grid.n_rows / 2, abs=1e-3)


def test_crs_matches_gpd_projection(fixtures: Path) -> None:
    """EPSG:6933 is the gpd's cylindrical equal-area on WGS84 with true scale at 30 degrees."""
    gpd = read_gpd(fixtures / "ease_grid_reference" / "EASE2_M09km.gpd")
    assert M09.crs == M36.crs == CRS == "EPSG:6933"
    crs = PROJ_CRS(CRS)
    params = {p.name: p.value for p in crs.coordinate_operation.params}
    assert crs.coordinate_operation.method_name == "Lambert Cylindrical Equal Area"
    assert params["Latitude of 1st standard parallel"] == float(
        gpd["Map Second Reference Latitude"]
    )
    assert params["Longitude of natural origin"] == float(gpd["Map Reference Longitude"])
    assert params["False easting"] == params["False northing"] == 0.0
    ell = crs.ellipsoid
    assert ell.semi_major_metre == float(gpd["Map Equatorial Radius"])
    ecc = np.sqrt(1 - (ell.semi_minor_metre / ell.semi_major_metre) ** 2)
    assert ecc == pytest.approx(float(gpd["Map Eccentricity"]), abs=1e-11)


@pytest.mark.parametrize("grid", [M09, M36])
def test_grid_edges_are_gpd_bounds(grid: EaseGrid) -> None:
    """Grid edges sit at lon -180/+180 and lat +-85.0445664 (the gpd header comments)."""
    to_lonlat = Transformer.from_crs("EPSG:6933", "EPSG:4326", always_xy=True)
    x_right = grid.x0 + grid.n_cols * grid.cell_size
    y_bottom = grid.y0 - grid.n_rows * grid.cell_size
    lon, lat = to_lonlat.transform([grid.x0, x_right], [grid.y0, y_bottom])
    np.testing.assert_allclose(lon, [-180.0, 180.0], atol=1e-9)
    np.testing.assert_allclose(lat, [85.0445664, -85.0445664], atol=1e-7)


# 2. Real SMAP 36 km coordinates


@pytest.mark.parametrize(
    "group", ["Soil_Moisture_Retrieval_Data_AM/{}", "Soil_Moisture_Retrieval_Data_PM/{}_pm"]
)
def test_m36_matches_smap_lat_lon(fixtures: Path, group: str) -> None:
    """Every valid SPL3SMP v9 lat/lon is our M36 cell centre, and maps back to its cell."""
    lat = read_array(fixtures / SMAP_FILE, group.format("latitude")).astype(float)
    lon = read_array(fixtures / SMAP_FILE, group.format("longitude")).astype(float)
    assert lat.shape == lon.shape == M36.shape
    valid = (lat != -9999) & (lon != -9999)
    assert np.array_equal(valid, lat != -9999)  # lat and lon are missing together
    assert valid.sum() > 200_000  # a swath-filled day: ~52 % of the grid
    rows, cols = np.nonzero(valid)
    assert rows.min() == 0 and rows.max() == M36.n_rows - 1  # pole to pole rows present
    c_lon, c_lat = M36.rowcol_to_lonlat(rows, cols)
    np.testing.assert_allclose(c_lon, lon[valid], rtol=0, atol=1e-4)
    np.testing.assert_allclose(c_lat, lat[valid], rtol=0, atol=1e-4)
    r, c = M36.lonlat_to_rowcol(lon[valid], lat[valid])
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)


def test_ease36land_points_are_m36_cells(fixtures: Path) -> None:
    """ease36land.nc's land points are M36 centres; its gpi counts rows from the south."""
    gpi, lon, lat = ease36land(fixtures)
    assert len(np.unique(gpi)) == gpi.size == 103_902
    assert gpi.min() >= 0 and gpi.max() < M36.n_rows * M36.n_cols
    south_row, cols = np.divmod(gpi, M36.n_cols)
    rows = M36.n_rows - 1 - south_row
    c_lon, c_lat = M36.rowcol_to_lonlat(rows, cols)
    np.testing.assert_allclose(c_lon, lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(c_lat, lat, rtol=0, atol=1e-9)
    r, c = M36.lonlat_to_rowcol(lon, lat)
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)


def test_land_mask_agrees_with_ease36land(fixtures: Path) -> None:
    """Our M36 land mask matches the ease36land.nc land points north of Antarctica."""
    gpi, _, _ = ease36land(fixtures)
    south_row, cols = np.divmod(gpi, M36.n_cols)
    rows = M36.n_rows - 1 - south_row
    window = Window(0, 0, int(rows.max()) + 1, M36.n_cols)  # the file stops at 55.4 S
    ref = np.zeros(window.shape, dtype=bool)
    ref[rows, cols] = True
    ours = M36.land_mask(window)
    both = (ours & ref).sum()
    assert (ours == ref).mean() >= MIN_LAND_AGREEMENT
    assert both / (ours | ref).sum() >= MIN_LAND_IOU
    assert both / ref.sum() >= MIN_LAND_RECALL_PRECISION
    assert both / ours.sum() >= MIN_LAND_RECALL_PRECISION


# 3. Nesting of M09 in M36


def test_m09_nests_4x4_in_m36() -> None:
    """Same origin, 4x finer; every M09 cell lies in M36 cell (r // 4, c // 4)."""
    assert (M09.x0, M09.y0) == (M36.x0, M36.y0)
    assert M36.cell_size == pytest.approx(4 * M09.cell_size, abs=1e-9)
    assert (M09.n_rows, M09.n_cols) == (4 * M36.n_rows, 4 * M36.n_cols)
    rows, cols = all_cells(M09)
    fine = M09.cell_bounds(rows, cols)
    coarse = M36.cell_bounds(rows // 4, cols // 4)
    tol = 1e-6
    assert np.all(fine[0] >= coarse[0] - tol) and np.all(fine[2] <= coarse[2] + tol)
    assert np.all(fine[1] >= coarse[1] - tol) and np.all(fine[3] <= coarse[3] + tol)


def test_m36_cell_is_union_of_its_16_m09_cells() -> None:
    """The bounding box of the 16 M09 cells equals the M36 cell and their areas add up."""
    rows36, cols36 = all_cells(M36)
    xmin, ymin, xmax, ymax = M36.cell_bounds(rows36, cols36)
    sub = np.arange(4)
    f_xmin, _, f_xmax, _ = M09.cell_bounds(0, 4 * cols36[..., None] + sub)
    _, f_ymin, _, f_ymax = M09.cell_bounds(4 * rows36[..., None] + sub, 0)
    np.testing.assert_allclose(f_xmin.min(-1), xmin, rtol=0, atol=1e-6)
    np.testing.assert_allclose(f_xmax.max(-1), xmax, rtol=0, atol=1e-6)
    np.testing.assert_allclose(f_ymin.min(-1), ymin, rtol=0, atol=1e-6)
    np.testing.assert_allclose(f_ymax.max(-1), ymax, rtol=0, atol=1e-6)
    # Edges shared between neighbours (no gaps): widths add up to the coarse cell.
    np.testing.assert_allclose((f_xmax - f_xmin).sum(-1), xmax - xmin, rtol=1e-12)
    np.testing.assert_allclose((f_ymax - f_ymin).sum(-1), ymax - ymin, rtol=1e-12)
    np.testing.assert_allclose(f_xmin[..., 1:], f_xmax[..., :-1], rtol=0, atol=1e-6)


def test_m36_window_maps_to_m09_window() -> None:
    """A 4x-scaled M36 window has the same outer corners and holds the box's M09 window."""
    box = (-105.3, 35.1, -95.7, 41.2)
    w36 = M36.window_from_bbox(*box)
    w09 = Window(4 * w36.row0, 4 * w36.col0, 4 * w36.n_rows, 4 * w36.n_cols)
    t09, t36 = M09.transform(w09), M36.transform(w36)
    assert t09 @ (0, 0) == pytest.approx(t36 @ (0, 0), abs=1e-6)
    assert t09 @ (w09.n_cols, w09.n_rows) == pytest.approx(t36 @ (w36.n_cols, w36.n_rows), abs=1e-6)
    assert w09.contains(M09.window_from_bbox(*box))


# 4. USCRN stations


def test_uscrn_stations_lie_in_their_cells(fixtures: Path) -> None:
    """Each USCRN station's 9 km cell (and its 36 km parent) contains the station."""
    with open(fixtures / "uscrn_daily01" / "_stations_selected.csv", newline="") as f:
        stations = list(csv.DictReader(f))
    assert len(stations) == 60
    lon = np.array([float(s["lon"]) for s in stations])
    lat = np.array([float(s["lat"]) for s in stations])
    x, y = TO_XY.transform(lon, lat)
    for grid in (M09, M36):
        rows, cols = grid.lonlat_to_rowcol(lon, lat)
        assert np.all(rows >= 0) and np.all(cols >= 0)
        xmin, ymin, xmax, ymax = grid.cell_bounds(rows, cols)
        assert np.all((xmin <= x) & (x < xmax) & (ymin < y) & (y <= ymax))
    r09, c09 = M09.lonlat_to_rowcol(lon, lat)
    r36, c36 = M36.lonlat_to_rowcol(lon, lat)
    np.testing.assert_array_equal(r09 // 4, r36)
    np.testing.assert_array_equal(c09 // 4, c36)


# 5. Windows and tiles

BOXES = [
    (34.0, -5.0, 41.0, 1.0),  # East Africa
    (-124.7, 24.5, -66.9, 49.4),  # CONUS
    (36.8, -1.3, 36.8001, -1.2999),  # inside one cell
    (-180.0, -90.0, 180.0, 90.0),  # whole globe
    (150.3, -44.2, 179.99, -10.1),  # up to the antimeridian
]


@pytest.mark.parametrize("grid", [M09, M36])
@pytest.mark.parametrize("box", BOXES)
def test_window_from_bbox_is_smallest_cover(grid: EaseGrid, box: tuple[float, ...]) -> None:
    """The window holds the box's corner cells and its edge rows/cols are those corners'."""
    lon_min, lat_min, lon_max, lat_max = box
    w = grid.window_from_bbox(*box)
    lat_lo, lat_hi = max(lat_min, -85.04), min(lat_max, 85.04)  # clip to the grid
    rows, cols = grid.lonlat_to_rowcol(
        np.array([lon_min, lon_max, lon_min, lon_max]),
        np.array([lat_lo, lat_lo, lat_hi, lat_hi]),
    )
    assert np.all(rows >= 0) and np.all(cols >= 0)
    assert (w.row0, w.row0 + w.n_rows - 1) == (rows.min(), rows.max())
    assert (w.col0, w.col0 + w.n_cols - 1) == (cols.min(), cols.max())
    assert grid.full.contains(w)


def test_window_from_bbox_whole_globe_and_clipping() -> None:
    """The globe, and boxes beyond the poles, give the full grid."""
    assert M09.window_from_bbox(-180, -90, 180, 90) == M09.full
    assert M36.window_from_bbox(-180, -95, 180, 95) == M36.full


@pytest.mark.parametrize("grid", [M09, M36])
def test_window_from_cell_edge_bbox_round_trips(grid: EaseGrid) -> None:
    """A box on a window's exact cell edges gives back that window, not one cell more."""
    to_lonlat = Transformer.from_crs("EPSG:6933", "EPSG:4326", always_xy=True)
    for w in (Window(100, 200, 37, 53), Window(0, 0, 5, 7), Window(3, 11, 1, 1)):
        w = Window(min(w.row0, grid.n_rows - w.n_rows), w.col0, w.n_rows, w.n_cols)
        t = grid.transform(w)
        (xmin, ymax), (xmax, ymin) = t @ (0, 0), t @ (w.n_cols, w.n_rows)
        (lon0, lon1), (lat0, lat1) = to_lonlat.transform([xmin, xmax], [ymin, ymax])
        assert grid.window_from_bbox(lon0, lat0, lon1, lat1) == w


@pytest.mark.parametrize(
    "box",
    [
        (10.0, 0.0, 10.0, 1.0),  # zero width
        (10.0, 1.0, 11.0, 0.0),  # lat_min > lat_max
        (float("nan"), 0.0, 1.0, 1.0),
        (-10.0, 86.0, 10.0, 89.0),  # north of the grid
        (-10.0, -89.0, 10.0, -86.0),  # south of the grid
        (170.0, 0.0, 190.0, 1.0),  # across the antimeridian (used to give n_cols < 0)
    ],
)
def test_window_from_bbox_rejects_bad_boxes(box: tuple[float, ...]) -> None:
    """Empty boxes and boxes off the grid raise GridError."""
    with pytest.raises(GridError):
        M09.window_from_bbox(*box)


def coverage(grid: EaseGrid, window: Window, size: int) -> np.ndarray:
    """How many tiles cover each cell of ``window``; checks each tile on the way."""
    count = np.zeros(window.shape, dtype=np.int16)
    for tile in grid.tiles(window, size):
        assert window.contains(tile)
        assert 1 <= tile.n_rows <= size and 1 <= tile.n_cols <= size
        assert (tile.row0 - window.row0) % size == 0 and (tile.col0 - window.col0) % size == 0
        rel = tile.relative_to(window)
        count[rel.rows, rel.cols] += 1
    return count


@pytest.mark.parametrize(
    ("grid", "window", "size"),
    [
        (M09, None, 256),
        (M09, Window(797, 2292, 86, 76), 16),
        (M09, Window(797, 2292, 86, 76), 100),  # one tile bigger than the window
        (M36, Window(5, 7, 3, 5), 1),
        (M36, None, 128),
    ],
)
def test_tiles_cover_window_exactly_once(grid: EaseGrid, window: Window | None, size: int) -> None:
    """Tiles partition the window: every cell covered once, areas sum to the window's."""
    w = window or grid.full
    tiles = list(grid.tiles(window, size))
    assert sum(t.n_rows * t.n_cols for t in tiles) == w.n_rows * w.n_cols
    assert np.all(coverage(grid, w, size) == 1)
    expected = -(-w.n_rows // size) * -(-w.n_cols // size)
    assert len(tiles) == expected
    assert tiles[0].row0 == w.row0 and tiles[0].col0 == w.col0


@pytest.mark.parametrize("size", [0, -1])
def test_tiles_reject_bad_size_at_call(size: int) -> None:
    """A non-positive tile size raises at the call (not lazily at first iteration)."""
    with pytest.raises(GridError):
        M09.tiles(size=size)


def test_window_contains_and_relative_to() -> None:
    """Containment, the inner window's offsets, and slices into a full array."""
    outer = Window(10, 20, 30, 40)
    inner = Window(15, 25, 5, 6)
    assert outer.contains(outer) and outer.contains(inner)
    assert not inner.contains(outer)
    assert not outer.contains(Window(35, 25, 6, 5))  # overhangs the bottom
    assert not outer.contains(Window(9, 20, 1, 1))  # above
    assert not outer.contains(Window(10, 59, 1, 2))  # overhangs the right
    rel = inner.relative_to(outer)
    assert rel == Window(5, 5, 5, 6)
    grid = np.arange(100 * 100).reshape(100, 100)
    np.testing.assert_array_equal(
        grid[outer.rows, outer.cols][rel.rows, rel.cols], grid[inner.rows, inner.cols]
    )
    assert grid[outer.rows, outer.cols].shape == outer.shape
    with pytest.raises(GridError):
        outer.relative_to(inner)


@pytest.mark.parametrize("grid", [M09, M36])
@pytest.mark.parametrize(
    ("row", "col"), [(-1, 0), (0, -1), ("n_rows", 0), (0, "n_cols"), ([0, 5], [3, -2])]
)
def test_out_of_grid_rowcol_raises(grid: EaseGrid, row: object, col: object) -> None:
    """rowcol_to_lonlat and cell_bounds reject cells outside the grid."""
    row = grid.n_rows if row == "n_rows" else row
    col = grid.n_cols if col == "n_cols" else col
    with pytest.raises(GridError):
        grid.rowcol_to_lonlat(np.asarray(row), np.asarray(col))
    with pytest.raises(GridError):
        grid.cell_bounds(np.asarray(row), np.asarray(col))


def test_lonlat_outside_grid_is_minus_one() -> None:
    """Points beyond 85.04 degrees or NaN map to row/col -1; lon +-180 stay on the grid."""
    rows, cols = M09.lonlat_to_rowcol(
        np.array([0.0, 0.0, np.nan, -180.0, 180.0]), np.array([86.0, -89.0, 0.0, 0.0, 0.0])
    )
    np.testing.assert_array_equal(rows[:3], -1)
    np.testing.assert_array_equal(cols[:3], -1)
    np.testing.assert_array_equal(cols[3:], [0, M09.n_cols - 1])


def test_get_grid() -> None:
    """Known names give the grid objects; unknown ones raise GridError (a ValueError)."""
    assert get_grid("M09") is M09 and get_grid("M36") is M36
    for bad in ("M03", "m09", ""):
        with pytest.raises(GridError, match="unknown grid"):
            get_grid(bad)
    assert issubclass(GridError, ValueError)


@pytest.mark.parametrize("grid", [M09, M36])
def test_transform_and_centres_agree(grid: EaseGrid) -> None:
    """The window transform, x/y centres, cell bounds and lonlat() describe the same cells."""
    w = Window(200, 300, 7, 9)
    t = grid.transform(w)
    xmin, ymin, xmax, ymax = grid.cell_bounds(w.row0, w.col0)
    assert t @ (0, 0) == pytest.approx((xmin, ymax), abs=1e-6)
    assert t @ (1, 1) == pytest.approx((xmax, ymin), abs=1e-6)
    cx, cy = grid.x_centres(w), grid.y_centres(w)
    assert cx.shape == (w.n_cols,) and cy.shape == (w.n_rows,)
    np.testing.assert_allclose(cx, [(t @ (c + 0.5, 0))[0] for c in range(w.n_cols)], atol=1e-6)
    np.testing.assert_allclose(cy, [(t @ (0, r + 0.5))[1] for r in range(w.n_rows)], atol=1e-6)
    lon, lat = grid.lonlat(w)
    assert lon.shape == lat.shape == w.shape
    x, y = TO_XY.transform(lon, lat)
    # PROJ's inverse CEA uses a series for the authalic latitude: sub-millimetre round trip.
    np.testing.assert_allclose(x, np.broadcast_to(cx, w.shape), rtol=0, atol=1e-3)
    np.testing.assert_allclose(y, np.broadcast_to(cy[:, None], w.shape), rtol=0, atol=1e-3)


# 6. Land mask


def test_land_mask_east_africa() -> None:
    """Kenya/Tanzania coast: land inland, Indian Ocean sea east of about 39.2 E."""
    w = M09.window_from_bbox(34.0, -5.0, 41.0, 1.0)
    mask = M09.land_mask(w)
    assert mask.shape == w.shape and mask.dtype == bool
    assert mask.any() and not mask.all()
    lon, _ = M09.lonlat(w)
    assert lon[~mask].min() > 39.0  # every sea cell is offshore, none inland
    assert 0.85 < mask.mean() < 0.97  # observed 0.924
    for (px, py), land in [((36.82, -1.29), True), ((41.0, -4.5), False)]:
        r, c = M09.lonlat_to_rowcol(px, py)
        assert mask[r - w.row0, c - w.col0] == land


def test_land_mask_window_matches_larger_mask() -> None:
    """A sub-window's mask equals the same cells of an enclosing window's mask."""
    outer = M36.window_from_bbox(-20.0, 30.0, 40.0, 60.0)
    inner = Window(outer.row0 + 3, outer.col0 + 5, 10, 12)
    rel = inner.relative_to(outer)
    np.testing.assert_array_equal(M36.land_mask(inner), M36.land_mask(outer)[rel.rows, rel.cols])


# 7. Round trips


@pytest.mark.parametrize("grid", [M09, M36])
def test_lonlat_rowcol_round_trip_within_half_cell(grid: EaseGrid) -> None:
    """Random points land in a cell whose centre is within half a cell (projected)."""
    rng = np.random.default_rng(42)
    lon = rng.uniform(-180.0, 180.0, 100_000)
    lat = rng.uniform(-85.0, 85.0, 100_000)
    rows, cols = grid.lonlat_to_rowcol(lon, lat)
    assert np.all(rows >= 0) and np.all(cols >= 0)
    c_lon, c_lat = grid.rowcol_to_lonlat(rows, cols)
    x, y = TO_XY.transform(lon, lat)
    cx, cy = TO_XY.transform(c_lon, c_lat)
    half = grid.cell_size / 2 + 1e-6
    assert np.all(np.abs(x - cx) <= half) and np.all(np.abs(y - cy) <= half)
    assert np.all(np.abs(c_lon - lon) <= 180.0 / grid.n_cols + 1e-9)


def test_m36_centres_map_to_their_own_cells() -> None:
    """Every M36 cell centre maps back to its own row and column."""
    lon, lat = M36.lonlat()
    rows, cols = M36.lonlat_to_rowcol(lon, lat)
    r, c = np.indices(M36.shape)
    np.testing.assert_array_equal(rows, r)
    np.testing.assert_array_equal(cols, c)


@pytest.mark.parametrize(
    "grid, box",
    [
        (M09, (34.5, -4.5, 40.5, 0.5)),  # the demo's window
        (M09, (-11.0, 35.0, 5.0, 44.0)),  # Iberia: coasts, islands
        (M09, (-180.0, 60.0, -150.0, 72.0)),  # Alaska at the antimeridian
        (M36, (-180.0, -80.0, 180.0, 80.0)),  # the whole M36 grid
    ],
)
def test_packaged_land_masks_are_the_globe_computation(grid, box) -> None:
    w = grid.window_from_bbox(*box)
    np.testing.assert_array_equal(grid.land_mask(w), grid.globe_land_mask(w))
