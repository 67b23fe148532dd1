"""MODIS: the real HDF4-EOS tile, QA and scaling, mosaics, requests, climatology fill, bad input.

Product test tiles are HDF4 files written with pyhdf in the real MYD11A1/MCD43A3 layout (SDS
names, types, scale_factor/_FillValue/valid_range, a ``StructMetadata.0`` grid), with fewer
pixels per side: the reader takes the size from ``StructMetadata``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from pyhdf.SD import SD, SDC
from pyproj import Transformer

from gsm3_ops.grid import M09, Window
from gsm3_ops.sources.base import (
    CorruptFileError,
    DateNotServedError,
    Granule,
    GriddedSource,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.checks import check_gridded
from gsm3_ops.sources.modis import (
    FileClimatology,
    HistoryClimatology,
    ModisSource,
    Options,
    Product,
)
from gsm3_ops.sources.modis_hdf import (
    TileFile,
    calibrate,
    parse_struct_metadata,
    tile_cells,
    tile_corners,
    tile_of,
    tiles_for_bbox,
)
from tests.earthdata_fakes import FakeEarthaccess, search_keys

DAY = dt.date(2020, 3, 1)  # day of year 061
REAL = "MOD09GA.A2008296.h14v17.006.2015181011753.hdf"
N = 240  # pixels per side of the test tiles (4.6 km)
H, V = 21, 8  # East Africa: lon ~ 30-40 E, lat 0-10 N

LST = {
    "LST_Day_1km": (
        SDC.UINT16,
        {
            "scale_factor": 0.02,
            "add_offset": 0.0,
            "_FillValue": 0,
            "valid_range": [7500, 65535],
            "units": "K",
        },
    ),
    "LST_Night_1km": (
        SDC.UINT16,
        {
            "scale_factor": 0.02,
            "add_offset": 0.0,
            "_FillValue": 0,
            "valid_range": [7500, 65535],
            "units": "K",
        },
    ),
    "QC_Day": (SDC.UINT8, {"valid_range": [0, 255]}),
    "QC_Night": (SDC.UINT8, {"valid_range": [0, 255]}),
}
ALBEDO = {
    "Albedo_BSA_shortwave": (
        SDC.INT16,
        {"scale_factor": 0.001, "add_offset": 0.0, "_FillValue": 32767, "valid_range": [0, 32766]},
    ),
    "Albedo_WSA_shortwave": (
        SDC.INT16,
        {"scale_factor": 0.001, "add_offset": 0.0, "_FillValue": 32767, "valid_range": [0, 32766]},
    ),
    "BRDF_Albedo_Band_Mandatory_Quality_shortwave": (
        SDC.UINT8,
        {"_FillValue": 255, "valid_range": [0, 254]},
    ),
}
_ATTR_TYPES = {float: SDC.FLOAT64, int: SDC.INT32}


def struct_metadata(grid_name: str, h: int, v: int, n: int, fields: list[str]) -> str:
    (ulx, uly), (lrx, lry) = tile_corners(h, v)
    objs = "".join(
        f'\t\t\tOBJECT=DataField_{i}\n\t\t\t\tDataFieldName="{f}"\n\t\t\t\tDimList=("YDim","XDim")'
        f"\n\t\t\tEND_OBJECT=DataField_{i}\n"
        for i, f in enumerate(fields, 1)
    )
    return (
        "GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n\tGROUP=GRID_1\n"
        f'\t\tGridName="{grid_name}"\n\t\tXDim={n}\n\t\tYDim={n}\n'
        f"\t\tUpperLeftPointMtrs=({ulx:.6f},{uly:.6f})\n\t\tLowerRightMtrs=({lrx:.6f},{lry:.6f})\n"
        "\t\tProjection=GCTP_SNSOID\n\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)\n"
        "\t\tSphereCode=-1\n\t\tGridOrigin=HDFE_GD_UL\n\t\tGROUP=DataField\n"
        f"{objs}\t\tEND_GROUP=DataField\n\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\nEND\n"
    )


def write_tile(
    path: Path,
    h: int,
    v: int,
    arrays: dict[str, np.ndarray],
    layout: dict,
    grid_name: str = "MODIS_Grid_Daily_1km_LST",
    meta_hv: tuple | None = None,
) -> Path:
    """An HDF4-EOS tile with ``arrays`` as SDS in ``layout`` (type, attributes)."""
    n = next(iter(arrays.values())).shape[0]
    sd = SD(str(path), SDC.WRITE | SDC.CREATE | SDC.TRUNC)
    meta = struct_metadata(grid_name, *(meta_hv or (h, v)), n, list(arrays))
    sd.attr("StructMetadata.0").set(SDC.CHAR, meta)
    for name, data in arrays.items():
        kind, attrs = layout[name]
        sds = sd.create(name, kind, data.shape)
        for key, value in attrs.items():
            if isinstance(value, str):
                sds.attr(key).set(SDC.CHAR, value)
            elif key in ("_FillValue", "valid_range"):
                sds.attr(key).set(kind, value)
            else:
                sds.attr(key).set(_ATTR_TYPES[type(value)], value)
        sds[:] = data
        sds.endaccess()
    sd.end()
    return path


def lst_tile(
    folder: Path, h: int, v: int, day_k: float, night_k: float, qc: int = 0, day: dt.date = DAY
) -> Path:
    name = f"MYD11A1.A{day:%Y%j}.h{h:02d}v{v:02d}.061.2020063041016.hdf"
    day_raw = np.full((N, N), round(day_k / 0.02), dtype=np.uint16)
    night_raw = np.full((N, N), round(night_k / 0.02), dtype=np.uint16)
    q = np.full((N, N), qc, dtype=np.uint8)
    arrays = {"LST_Day_1km": day_raw, "QC_Day": q, "LST_Night_1km": night_raw, "QC_Night": q}
    return write_tile(folder / name, h, v, arrays, LST)


def albedo_tile(folder: Path, h: int, v: int, bsa: float, wsa: float, q: int = 0) -> Path:
    name = f"MCD43A3.A{DAY:%Y%j}.h{h:02d}v{v:02d}.061.2020070123456.hdf"
    n = 2 * N
    arrays = {
        "Albedo_BSA_shortwave": np.full((n, n), round(bsa / 0.001), dtype=np.int16),
        "Albedo_WSA_shortwave": np.full((n, n), round(wsa / 0.001), dtype=np.int16),
        "BRDF_Albedo_Band_Mandatory_Quality_shortwave": np.full((n, n), q, dtype=np.uint8),
    }
    return write_tile(folder / name, h, v, arrays, ALBEDO, "MOD_Grid_BRDF")


def _window_in_tile(h: int, v: int, size: int = 8) -> Window:
    (ulx, uly), (lrx, lry) = tile_corners(h, v)
    to_ll = Transformer.from_crs("+proj=sinu +R=6371007.181 +units=m", "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform((ulx + lrx) / 2, (uly + lry) / 2)
    row, col = M09.lonlat_to_rowcol(lon, lat)
    return Window(int(row) - size // 2, int(col) - size // 2, size, size)


# --- the real HDF4-EOS tile ------------------------------------------------------------------


def test_real_tile_number_and_corners(fixtures: Path) -> None:
    path = fixtures / "modis" / REAL
    assert tile_of(path) == (14, 17)
    with TileFile(path) as t:
        grids = parse_struct_metadata(t.struct_metadata())
    assert set(grids) == {"MODIS_Grid_1km_2D", "MODIS_Grid_500m_2D"}
    ul, lr = tile_corners(14, 17)
    for g in grids.values():
        assert g.sphere_radius == 6371007.181
        np.testing.assert_allclose(g.upper_left, ul, atol=1e-5)
        np.testing.assert_allclose(g.lower_right, lr, atol=1e-5)
    assert (grids["MODIS_Grid_1km_2D"].x_dim, grids["MODIS_Grid_500m_2D"].x_dim) == (1200, 2400)
    assert grids["MODIS_Grid_500m_2D"].pixel_size == pytest.approx(463.3127, rel=1e-6)


@pytest.mark.parametrize("name", ["SensorZenith_1", "Range_1", "num_observations_1km"])
def test_real_tile_calibration_matches_a_direct_read(fixtures: Path, name: str) -> None:
    path = fixtures / "modis" / REAL
    sd = SD(str(path), SDC.READ)
    sds = sd.select(name)
    raw, attrs = sds.get(), sds.attributes()
    sd.end()
    lo, hi = attrs["valid_range"]
    expect = np.where(
        (raw == attrs["_FillValue"]) | (raw < lo) | (raw > hi),
        np.nan,
        attrs.get("scale_factor", 1.0) * (raw.astype(np.float64) - attrs.get("add_offset", 0.0)),
    )
    with TileFile(path) as t:
        got_raw, got_attrs = t.read(name)
    got = calibrate(got_raw, got_attrs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expect))
    np.testing.assert_allclose(got, expect, equal_nan=True)
    assert np.isfinite(got).sum() > 1000  # the tile holds real values, not only fill


@pytest.mark.parametrize(("qa_mask", "min_pixels"), [(0b11, 20), (0, 3000)])
def test_real_tile_area_mean_matches_independent_binning(
    fixtures: Path, tmp_path: Path, qa_mask: int, min_pixels: int
) -> None:
    """Pixels of the real tile (clear sky only: state_1km bits 0-1 == 00; or all) per cell."""
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    shutil.copyfile(fixtures / "modis" / REAL, src_dir / REAL)
    product = Product(
        short_name="MOD09GA",
        version="006",
        fields={"lst_day": "SensorZenith_1"},
        qa={"lst_day": "state_1km_1"},
        qa_mask=qa_mask,
    )
    src = ModisSource(Options(products=[product]))
    granule = src.local(dt.date(2008, 10, 22), src_dir)
    native = src.read(granule)
    window = M09.window_from_bbox(-180.0, -80.5, -172.0, -79.9)
    got = src.to_grid(native, M09, window)["lst_day"].values[0]

    with TileFile(src_dir / REAL) as t:
        zen = calibrate(*t.read("SensorZenith_1"))
        state, _ = t.read("state_1km_1")
    zen[(state & qa_mask) != 0] = np.nan
    (ulx, uly), _ = tile_corners(14, 17)
    size = (1111950.5196666666) / 1200
    x = ulx + (np.arange(1200) + 0.5) * size
    y = uly - (np.arange(1200) + 0.5) * size
    xx, yy = np.meshgrid(x, y)
    to_ll = Transformer.from_crs("+proj=sinu +R=6371007.181 +units=m", "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xx, yy)
    ok = np.isfinite(zen) & (np.abs(lon) <= 180)
    row, col = M09.lonlat_to_rowcol(lon[ok], lat[ok])
    r, c = row - window.row0, col - window.col0
    inside = (r >= 0) & (r < window.n_rows) & (c >= 0) & (c < window.n_cols)
    sums = np.zeros(window.shape)
    counts = np.zeros(window.shape)
    np.add.at(sums, (r[inside], c[inside]), zen[ok][inside])
    np.add.at(counts, (r[inside], c[inside]), 1)
    expect = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    assert counts.sum() >= min_pixels
    np.testing.assert_allclose(got, expect, rtol=1e-5, equal_nan=True)


# --- tiles for a box -----------------------------------------------------------------------


def test_tiles_for_bbox_known_boxes() -> None:
    assert tiles_for_bbox(29.9, -20.1, 30.1, -19.9) == [(20, 10), (20, 11)]
    assert (18, 4) in tiles_for_bbox(-10, 35, 40, 72)  # western Europe
    assert (14, 17) in tiles_for_bbox(-180, -80.5, -172, -79.9)  # the real tile's corner


def test_tiles_for_bbox_never_misses_a_tile() -> None:
    from gsm3_ops.regrid import sinusoidal_lonlat

    rng = np.random.default_rng(3)
    pixels = {(h, v): sinusoidal_lonlat(h, v, 24) for h in range(36) for v in range(18)}
    for _ in range(25):
        w, s = rng.uniform(-180, 170), rng.uniform(-90, 80)
        e, n = w + rng.uniform(0.5, 30), s + rng.uniform(0.5, 20)
        got = set(tiles_for_bbox(w, s, e, n))
        for hv, (lon, lat) in pixels.items():
            if ((lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)).any():
                assert hv in got, (hv, (w, s, e, n))


@pytest.mark.parametrize(
    ("h", "v", "bbox"),
    [
        (21, 8, (30.0, 0.0, 41.0, 10.0)),  # one whole tile near the equator
        (14, 17, (-180.0, -80.5, -172.0, -79.9)),  # the edge of the sinusoidal domain
        (19, 2, (10.0, 68.0, 30.0, 79.0)),  # high latitude, cut by the window
    ],
)
def test_tile_cells_agree_with_regrid_cell_index(h: int, v: int, bbox: tuple) -> None:
    from gsm3_ops.regrid import cell_index, sinusoidal_lonlat

    n = 600
    window = M09.window_from_bbox(*bbox)
    pixels, cells = tile_cells(h, v, n, M09, window)
    expect = cell_index(*sinusoidal_lonlat(h, v, n), M09, window).ravel()
    assert pixels.size > 0
    np.testing.assert_array_equal(pixels, np.flatnonzero(expect >= 0))
    np.testing.assert_array_equal(cells, expect[expect >= 0])


# --- product tiles: QA, scaling, mosaic -------------------------------------------------------


def test_fetch_read_grid_lst_and_albedo(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    lst = lst_tile(srv, H, V, 301.0, 285.5)
    alb = albedo_tile(srv, H, V, 0.153, 0.171)
    other_day = lst_tile(srv, H, V, 280.0, 270.0, day=DAY - dt.timedelta(days=1))
    fake = FakeEarthaccess({("MYD11A1", "061"): [other_day, lst], ("MCD43A3", "061"): [alb]})
    src = ModisSource(Options(bbox=(30.0, 0.0, 40.0, 10.0)), client=fake)
    assert isinstance(src, GriddedSource)
    assert src.provides == ("lst_day", "lst_night", "albedo_bsa", "albedo_wsa")
    granule = src.fetch(DAY, tmp_path / "work")
    day_range = ("2020-03-01T00:00:00Z", "2020-03-01T23:59:59Z")
    assert search_keys(fake) == [
        ("MYD11A1", "061", day_range, (30.0, 0.0, 40.0, 10.0), -1),
        ("MCD43A3", "061", day_range, (30.0, 0.0, 40.0, 10.0), -1),
    ]
    assert sorted(f.name for f in granule.files) == sorted([lst.name, alb.name])
    assert granule.version == "MYD11A1.061+MCD43A3.061" and granule.notes == ()
    window = _window_in_tile(H, V)
    out = src.to_grid(src.read(granule), M09, window)
    check_gridded(out, "modis")
    for var, want in (
        ("lst_day", 301.0),
        ("lst_night", 285.5),
        ("albedo_bsa", 0.153),
        ("albedo_wsa", 0.171),
    ):
        assert out[var].dims == ("time", "y", "x") and out[var].shape == (1, 8, 8)
        np.testing.assert_allclose(out[var].values, want, rtol=1e-6)


@pytest.mark.parametrize(
    ("qc", "accept", "kept"),
    [
        (0b00, False, True),
        (0b01, False, False),
        (0b01, True, True),
        (0b10, True, False),
        (0b01000000, False, True),  # LST error bits set, mandatory bits 00: kept
    ],
)
def test_lst_mandatory_qa_bits(tmp_path: Path, qc: int, accept: bool, kept: bool) -> None:
    lst_tile(tmp_path, H, V, 300.0, 280.0, qc=qc)
    products = Options().products
    products[0] = products[0].model_copy(update={"accept_other_quality": accept})
    src = ModisSource(Options(products=products[:1]))
    native = src.read(src.local(DAY, tmp_path))
    window = _window_in_tile(H, V)
    got = src.to_grid(native, M09, window)
    if kept:
        np.testing.assert_allclose(got["lst_day"].values, 300.0)
    else:  # rejected like cloud: the field is empty, the day is not failed
        assert np.isnan(got["lst_day"].values).all()
        assert "empty:lst_day" in check_gridded(got, "modis")


def test_albedo_magnitude_inversion_rejected(tmp_path: Path) -> None:
    albedo_tile(tmp_path, H, V, 0.2, 0.25, q=1)
    src = ModisSource(Options(products=Options().products[1:]))
    native = src.read(src.local(DAY, tmp_path))
    got = src.to_grid(native, M09, _window_in_tile(H, V))
    assert np.isnan(got["albedo_bsa"].values).all() and np.isnan(got["albedo_wsa"].values).all()


def test_mosaic_across_a_tile_edge(tmp_path: Path) -> None:
    lst_tile(tmp_path, H, V, 290.0, 280.0)
    lst_tile(tmp_path, H + 1, V, 300.0, 280.0)
    src = ModisSource(Options(products=Options().products[:1]))
    native = src.read(src.local(DAY, tmp_path))
    # The h21/h22 edge at lat ~5 N: x = -20015109.354 + 22 * 1111950.52 m.
    to_ll = Transformer.from_crs("+proj=sinu +R=6371007.181 +units=m", "EPSG:4326", always_xy=True)
    (x_edge, _), _ = tile_corners(H + 1, V)
    lon, lat = to_ll.transform(x_edge, 555975.0)
    row, col = M09.lonlat_to_rowcol(lon, lat)
    window = Window(int(row) - 3, int(col) - 6, 6, 12)
    v = src.to_grid(native, M09, window)["lst_day"].values[0]
    np.testing.assert_allclose(v[:, :4], 290.0)
    np.testing.assert_allclose(v[:, -4:], 300.0)
    assert np.all((v >= 290.0) & (v <= 300.0))
    assert ((v > 290.5) & (v < 299.5)).any()  # the cells over the edge mix both tiles


# --- climatology fill ------------------------------------------------------------------------


def _climatology_file(path: Path, window: Window) -> Path:
    doy = np.arange(1, 366)
    shape = (365, *window.shape)
    ds = xr.Dataset(
        {
            "albedo_bsa": (
                ("dayofyear", "y", "x"),
                np.broadcast_to(doy[:, None, None] / 1000, shape),
            ),
            "albedo_wsa": (
                ("dayofyear", "y", "x"),
                np.broadcast_to(doy[:, None, None] / 500, shape),
            ),
        },
        coords={"dayofyear": doy, "y": M09.y_centres(window), "x": M09.x_centres(window)},
    )
    ds.to_netcdf(path)
    return path


def test_missing_product_is_filled_from_climatology(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    lst = lst_tile(srv, H, V, 301.0, 285.5)
    window = _window_in_tile(H, V)
    clim = _climatology_file(tmp_path / "clim.nc", Window(window.row0 - 2, window.col0 - 2, 12, 12))
    fake = FakeEarthaccess({("MYD11A1", "061"): [lst]})
    src = ModisSource(Options(climatology=clim), client=fake)
    granule = src.fetch(DAY, tmp_path / "work")
    assert granule.notes == ("filled:climatology", "missing:MCD43A3")
    out = src.to_grid(src.read(granule), M09, window)
    check_gridded(out, "modis")
    np.testing.assert_allclose(out["lst_day"].values, 301.0)
    np.testing.assert_allclose(out["albedo_bsa"].values, 61 / 1000, rtol=1e-6)
    np.testing.assert_allclose(out["albedo_wsa"].values, 61 / 500, rtol=1e-6)
    # A whole day from climatology (albedo only here), and a window it does not cover.
    only_albedo = ModisSource(Options(products=Options().products[1:], climatology=clim))
    empty = tmp_path / "empty"
    empty.mkdir()
    filled = only_albedo.local(DAY, empty)
    assert filled.files == () and filled.notes == ("filled:climatology", "missing:MCD43A3")
    native = only_albedo.read(filled)
    np.testing.assert_allclose(only_albedo.to_grid(native, M09, window)["albedo_bsa"], 0.061)
    with pytest.raises(SourceError, match="does not cover window"):
        only_albedo.to_grid(native, M09, Window(0, 0, 4, 4))


def test_missing_product_without_climatology_is_not_served(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    fake = FakeEarthaccess({("MYD11A1", "061"): [lst_tile(srv, H, V, 301.0, 285.5)]})
    with pytest.raises(DateNotServedError, match=r"MCD43A3 version 061 .*2020-03-01"):
        ModisSource(client=fake).fetch(DAY, tmp_path / "work")
    with pytest.raises(DateNotServedError, match=r"no MCD43A3 tile for 2020-03-01"):
        ModisSource().local(DAY, srv)


def test_history_climatology_averages_earlier_years() -> None:
    calls = []

    def read(name: str, start: dt.date, end: dt.date, window: Window) -> np.ndarray:
        calls.append((name, start, end))
        n = (end - start).days + 1
        return np.full((n, *window.shape), float(start.year))

    clim = HistoryClimatology(read, years=3, half_window_days=2)
    got = clim("lst_day", dt.date(2024, 2, 29), M09, Window(0, 0, 2, 3))
    np.testing.assert_allclose(got, (2023 + 2022 + 2021) / 3)
    assert calls[0] == ("lst_day", dt.date(2023, 2, 26), dt.date(2023, 3, 2))


def test_future_day_is_never_filled(tmp_path: Path) -> None:
    src = ModisSource(Options(climatology=tmp_path / "c.nc"), client=FakeEarthaccess())
    with pytest.raises(DateNotServedError, match="not 2999-01-01"):
        src.fetch(dt.date(2999, 1, 1), tmp_path)


# --- VIIRS successor (HDF5-EOS) --------------------------------------------------------------


def test_viirs_products_plug_in(tmp_path: Path) -> None:
    n = N
    name = f"VNP21A1D.A{DAY:%Y%j}.h{H:02d}v{V:02d}.002.2020063000000.h5"
    meta = struct_metadata("VIIRS_Grid_1km_2D", H, V, n, ["LST_1KM", "QC"])
    with h5py.File(tmp_path / name, "w") as f:
        f.create_dataset("HDFEOS INFORMATION/StructMetadata.0", data=np.bytes_(meta))
        fields = f.create_group("HDFEOS/GRIDS/VIIRS_Grid_1km_2D/Data Fields")
        lst = fields.create_dataset("LST_1KM", data=np.full((n, n), 15500, dtype=np.uint16))
        lst.attrs.update({"scale_factor": 0.02, "add_offset": 0.0, "_FillValue": np.uint16(0)})
        fields.create_dataset("QC", data=np.zeros((n, n), dtype=np.uint16))
    viirs = Product(
        short_name="VNP21A1D", version="002", fields={"lst_day": "LST_1KM"}, qa={"lst_day": "QC"}
    )
    src = ModisSource(Options(products=[viirs]))
    assert src.provides == ("lst_day",) and src.version(DAY) == "VNP21A1D.002"
    out = src.to_grid(src.read(src.local(DAY, tmp_path)), M09, _window_in_tile(H, V))
    np.testing.assert_allclose(out["lst_day"].values, 310.0)


def test_options_reject_a_variable_twice() -> None:
    p = Options().products
    with pytest.raises(ValueError, match="at most once"):
        Options(products=[p[0], p[0]])
    with pytest.raises(ValueError, match="qa must name"):
        Product(short_name="X", version="1", fields={"lst_day": "a"}, qa={})


# --- bad input --------------------------------------------------------------------------------


def test_truncated_tile_names_the_path(tmp_path: Path) -> None:
    path = lst_tile(tmp_path, H, V, 300.0, 280.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    src = ModisSource(Options(products=Options().products[:1]))
    with pytest.raises(CorruptFileError, match=str(path)):
        src.to_grid(src.read(src.local(DAY, tmp_path)), M09, _window_in_tile(H, V))
    path.write_text("<html>401</html>")
    with pytest.raises(CorruptFileError, match=str(path)):
        src.read(src.local(DAY, tmp_path))


def test_wrong_variable_names_file_and_variable(tmp_path: Path) -> None:
    name = f"MYD11A1.A{DAY:%Y%j}.h{H:02d}v{V:02d}.061.2020063041016.hdf"
    q = np.zeros((N, N), dtype=np.uint8)
    path = write_tile(tmp_path / name, H, V, {"QC_Day": q, "QC_Night": q}, LST)
    src = ModisSource(Options(products=Options().products[:1]))
    with pytest.raises(MissingVariableError, match=rf"{path}: no field LST_Day_1km"):
        src.read(src.local(DAY, tmp_path))


def test_tile_whose_grid_is_not_its_number_is_corrupt(tmp_path: Path) -> None:
    name = f"MYD11A1.A{DAY:%Y%j}.h{H:02d}v{V:02d}.061.2020063041016.hdf"
    raw = np.full((N, N), 15000, dtype=np.uint16)
    q = np.zeros((N, N), dtype=np.uint8)
    arrays = {"LST_Day_1km": raw, "QC_Day": q, "LST_Night_1km": raw, "QC_Night": q}
    path = write_tile(tmp_path / name, H, V, arrays, LST, meta_hv=(H + 1, V))
    src = ModisSource(Options(products=Options().products[:1]))
    with pytest.raises(CorruptFileError, match=rf"{path}: .* is not tile h21v08"):
        src.read(src.local(DAY, tmp_path))


def test_fill_everywhere_is_an_empty_day_not_a_failure(tmp_path: Path) -> None:
    """A tile present but with fill everywhere (cloud all day): empty fields, noted."""
    name = f"MYD11A1.A{DAY:%Y%j}.h{H:02d}v{V:02d}.061.2020063041016.hdf"
    raw = np.zeros((N, N), dtype=np.uint16)  # _FillValue 0
    q = np.full((N, N), 0b10, dtype=np.uint8)  # not produced: cloud
    arrays = {"LST_Day_1km": raw, "QC_Day": q, "LST_Night_1km": raw, "QC_Night": q}
    write_tile(tmp_path / name, H, V, arrays, LST)
    src = ModisSource(Options(products=Options().products[:1]))
    got = src.to_grid(src.read(src.local(DAY, tmp_path)), M09, _window_in_tile(H, V))
    assert np.isnan(got["lst_day"].values).all() and np.isnan(got["lst_night"].values).all()
    assert check_gridded(got, "modis") == ["empty:lst_day", "empty:lst_night"]


def test_served_dates_and_version() -> None:
    src = ModisSource()
    assert src.first_date() == dt.date(2002, 7, 4)
    assert src.latest_date(dt.date(2024, 1, 10)) == dt.date(2024, 1, 8)
    assert src.version(DAY) == "MYD11A1.061+MCD43A3.061"


def test_local_granule_records_source_and_version(tmp_path: Path) -> None:
    path = lst_tile(tmp_path, H, V, 300.0, 280.0)
    lst_tile(tmp_path, H, V, 300.0, 280.0, day=DAY + dt.timedelta(days=1))
    granule = ModisSource(Options(products=Options().products[:1])).local(DAY, tmp_path)
    assert granule == Granule("modis", DAY, (path,), "MYD11A1.061")


def test_climatology_file_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "clim.nc"
    bad.write_text("nope")
    with pytest.raises(SourceError, match="cannot be opened"):
        FileClimatology(bad)("albedo_bsa", DAY, M09, Window(0, 0, 1, 1))


def test_credentials_never_reach_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARTHDATA_PASSWORD", "modis-pass-77z")
    monkeypatch.setenv("EARTHDATA_USERNAME", "modis-user-88y")
    srv = tmp_path / "srv"
    srv.mkdir()
    boom = ConnectionError("https://modis-user-88y:modis-pass-77z@e4ftl01.invalid/ reset")
    fake = FakeEarthaccess(
        {("MYD11A1", "061"): [lst_tile(srv, H, V, 300.0, 280.0)]}, download_error=boom
    )
    with pytest.raises(SourceError, match="MYD11A1 061 on 2020-03-01: download failed") as err:
        ModisSource(client=fake).fetch(DAY, tmp_path / "work")
    assert "modis-pass-77z" not in str(err.value) and "modis-user-88y" not in str(err.value)
