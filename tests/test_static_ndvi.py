"""The default NDVI static: the MOD13A3 v061 mean over the long-term period, from the world's
monthly tiles (their layout, QA and round trip), an archive, or an earthaccess fetch (the
exact request, the cache), and the errors an operator meets (a missing or unreadable tile, a
land cell never reliable, no credentials).

Quantisation: NDVI is stored in steps of 0.0001, so a cell comes back within half a step
(plus float32 rounding): each pixel holds its cell's value, and the reader bins pixels into
cells by the same geometry the writer used.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest
from pyhdf.SD import SD, SDC

from gsm3_ops.grid import M09
from gsm3_ops.sources.base import CredentialsError
from gsm3_ops.sources.modis_hdf import parse_struct_metadata, tile_corners
from gsm3_ops.sources.static import StaticError, StaticOptions, static_from_rasters
from gsm3_ops.sources.static_defaults import default_rasters, window_bounds
from gsm3_ops.sources.static_ndvi import months
from gsm3_ops.world import mod13a3
from gsm3_ops.world.mod13a3 import MOD13A3, write_month
from gsm3_ops.world.modis import granule_path
from tests.earthdata_fakes import FakeEarthaccess, search_keys

EDGE = M09.window_from_bbox(39.6, -4.6, 40.6, -3.6)  # across the h21v09 / h22v09 edge
MONTHS = [dt.date(2020, m, 1) for m in (1, 2, 3)]
START, END = dt.date(2020, 1, 10), dt.date(2020, 3, 5)  # meets January..March
TOLERANCE = 0.00005 + 1e-6
# Every other raster configured: default_rasters then makes only the NDVI.
OTHERS = {k: Path("/nowhere/x.tif") for k in ("dem", "sand", "clay", "silt", "bulk_density",
                                              "land_cover")}  # fmt: skip


def _ndvi() -> np.ndarray:
    """A smooth NDVI field with a sea corner (NaN)."""
    lon, lat = M09.lonlat(EDGE)
    ndvi = 0.15 + 0.6 * (lon - lon.min()) / np.ptp(lon) + 0.05 * (lat - lat.min()) / np.ptp(lat)
    ndvi[:3, :4] = np.nan
    return ndvi


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Three months of MOD13A3 tiles of ``_ndvi`` (the world's seed 42)."""
    root = tmp_path_factory.mktemp("mod13a3")
    ndvi = _ndvi()
    for month in [*MONTHS, dt.date(2020, 4, 1)]:  # April: outside the period, never read
        write_month(root / "archive", ndvi, month, M09, EDGE, seed=42)
    return root / "archive", ndvi


def _opts(**kw) -> StaticOptions:
    return StaticOptions(**OTHERS, long_term_start=START, long_term_end=END, **kw)


def _back(filled: StaticOptions) -> np.ndarray:
    return static_from_rasters(filled, M09, EDGE, names=["ndvi"])["ndvi"].values


def _copy(src: Path, dst: Path, skip: str = "") -> Path:
    for p in src.rglob("*.hdf"):
        if not skip or skip not in p.name:
            (dst / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / p.relative_to(src)).write_bytes(p.read_bytes())
    return dst


# --- the world's tiles ------------------------------------------------------------------------


def test_months_are_every_calendar_month_the_period_meets() -> None:
    assert months(START, END) == MONTHS
    assert months(dt.date(2019, 12, 31), dt.date(2020, 1, 1)) == [dt.date(2019, 12, 1), MONTHS[0]]


def test_tiles_have_the_real_products_layout(world) -> None:
    root, _ = world
    path = root / granule_path(MOD13A3, MONTHS[1], 22, 9)
    assert path.parts[-3:-1] == ("MOD13A3.061", "2020.02.01")
    assert path.name.startswith("MOD13A3.A2020032.h22v09.061.") and path.suffix == ".hdf"
    sd = SD(str(path), SDC.READ)
    try:
        grid = parse_struct_metadata(sd.attributes()["StructMetadata.0"])["MOD_Grid_monthly_1km_VI"]
        assert (grid.x_dim, grid.y_dim, grid.sphere_radius) == (1200, 1200, 6371007.181)
        (ulx, uly), (lrx, lry) = tile_corners(22, 9)
        assert (*grid.upper_left, *grid.lower_right) == pytest.approx((ulx, uly, lrx, lry))
        assert set(grid.fields) == {"1 km monthly NDVI", "1 km monthly pixel raliability"}
        sds = sd.select("1 km monthly NDVI")
        attrs = sds.attributes()
        assert sds.info()[3] == SDC.INT16 and sds.getcompress()[0] == SDC.COMP_DEFLATE
        assert attrs["_FillValue"] == -3000 and list(attrs["valid_range"]) == [-2000, 10000]
        # LP DAAC's MOD13 files state the scale as a divisor: values are stored x 10000.
        assert attrs["scale_factor"] == pytest.approx(10000) and attrs["add_offset"] == 0
        rank_sds = sd.select("1 km monthly pixel raliability")
        assert rank_sds.info()[3] == SDC.INT8 and rank_sds.attributes()["_FillValue"] == -1
        value, rank = sds.get(), rank_sds.get()
    finally:
        sd.end()
    # Land pixels are good, marginal, cloudy (0.3 low) or fill; sea and outside are fill.
    assert set(np.unique(rank)) == {-1, 0, 1, 3}
    assert ((value == -3000) == (rank == -1)).all()
    land = rank >= 0
    assert 0.75 < (rank[land] == 0).mean() < 0.85 and 0.06 < (rank[land] == 3).mean() < 0.10
    assert value[rank == 3].mean() < value[rank == 0].mean() - 1500  # cloud-contaminated


# --- the mean ---------------------------------------------------------------------------------


def test_archive_mean_gives_back_the_world(world, tmp_path: Path) -> None:
    root, ndvi = world
    opts = _opts(archive=root, scale={"ndvi": 0.0001})  # a stale scale is replaced
    filled, used = default_rasters(opts, M09, EDGE, tmp_path / "raw", earthdata=_no_fetch())
    assert used["ndvi"] == "MOD13A3.061-mean-2020-01..2020-03"
    assert filled.scale["ndvi"] == 1.0 and filled.dem == OTHERS["dem"]
    assert filled.ndvi.parent == tmp_path / "raw/static/mosaics"
    got = _back(filled)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ndvi))
    np.testing.assert_allclose(got, ndvi, rtol=0, atol=TOLERANCE, equal_nan=True)


def test_the_latest_production_wins(world, tmp_path: Path) -> None:
    root, ndvi = world
    archive = _copy(root, tmp_path / "archive")
    other = tmp_path / "other"
    write_month(other, ndvi + 0.1, MONTHS[0], M09, EDGE, seed=42)
    old = archive / granule_path(MOD13A3, MONTHS[0], 21, 9)
    newer = tmp_path / "archive/flat" / old.name.replace(".2020041", ".2020300")
    newer.parent.mkdir()
    newer.write_bytes((other / granule_path(MOD13A3, MONTHS[0], 21, 9)).read_bytes())
    filled, _ = default_rasters(_opts(archive=archive), M09, EDGE, tmp_path / "raw",
                                earthdata=_no_fetch())  # fmt: skip
    diff = _back(filled) - ndvi
    assert np.nanmax(diff) == pytest.approx(0.1 / 3, abs=1e-4)  # one month of three, h21v09
    assert np.nanmin(diff) == pytest.approx(0.0, abs=TOLERANCE)  # cells wholly in h22v09


def test_an_operator_raster_overrides_the_default(world, tmp_path: Path) -> None:
    root, _ = world
    fake = FakeEarthaccess()
    opts = _opts(archive=root, ndvi=tmp_path / "my_ndvi.tif")
    filled, used = default_rasters(opts, M09, EDGE, tmp_path / "raw", earthdata=fake)
    assert used["ndvi"] == "my_ndvi.tif" and filled.ndvi == tmp_path / "my_ndvi.tif"
    assert fake.searches == [] and not (tmp_path / "raw/static/MOD13A3.061").exists()


# --- fetching ---------------------------------------------------------------------------------


def test_fetch_asks_lp_daac_once_then_uses_the_cache(world, tmp_path: Path) -> None:
    root, ndvi = world
    published = sorted(root.rglob("*.hdf"))  # April too: the search may return neighbours
    fake = FakeEarthaccess({("MOD13A3", "061"): published})
    filled, used = default_rasters(_opts(), M09, EDGE, tmp_path / "raw", earthdata=fake)
    b = window_bounds(M09, EDGE)
    assert search_keys(fake) == [
        ("MOD13A3", "061", ("2020-01-01T00:00:00Z", "2020-03-31T23:59:59Z"),
         (b.west, b.south, b.east, b.north), -1),
    ]  # fmt: skip
    cache = tmp_path / "raw/static/MOD13A3.061"
    names, folder = fake.downloads[0]
    assert folder == str(cache) and len(fake.downloads) == 1
    assert sorted(names) == sorted(p.name for p in published if ".A2020092." not in p.name)
    assert fake.logins == ["environment"]
    np.testing.assert_allclose(_back(filled), ndvi, rtol=0, atol=TOLERANCE, equal_nan=True)
    assert used["ndvi"] == "MOD13A3.061-mean-2020-01..2020-03"
    default_rasters(_opts(), M09, EDGE, tmp_path / "raw", earthdata=fake)
    assert len(fake.searches) == 1 and len(fake.downloads) == 1  # all cached


def test_missing_credentials_are_one_clear_error(world, tmp_path: Path) -> None:
    root, _ = world
    fake = FakeEarthaccess({("MOD13A3", "061"): sorted(root.rglob("*.hdf"))}, login_results={})
    with pytest.raises(CredentialsError, match=r"^Earthdata login failed; set EARTHDATA_TOKEN"):
        default_rasters(_opts(), M09, EDGE, tmp_path / "raw", earthdata=fake)


def test_a_month_lp_daac_lacks_is_named(world, tmp_path: Path) -> None:
    root, _ = world
    published = [p for p in root.rglob("*.hdf") if ".A2020032.h22v09." not in p.name]
    fake = FakeEarthaccess({("MOD13A3", "061"): published})
    with pytest.raises(StaticError, match=r"LP DAAC .* lacks MOD13A3 tile h22v09 2020-02 "):
        default_rasters(_opts(), M09, EDGE, tmp_path / "raw", earthdata=fake)


# --- bad input --------------------------------------------------------------------------------


def test_a_month_missing_from_the_archive_is_named(world, tmp_path: Path) -> None:
    root, _ = world
    archive = _copy(root, tmp_path / "archive", skip=".A2020032.h21v09.")
    with pytest.raises(StaticError, match=r"archive .* lacks MOD13A3 tile h21v09 2020-02 "):
        default_rasters(_opts(archive=archive), M09, EDGE, tmp_path / "raw",
                        earthdata=_no_fetch())  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StaticError, match=r"has no MOD13A3.061 tile \(h21v09, h22v09\)"):
        default_rasters(_opts(archive=empty), M09, EDGE, tmp_path / "raw", earthdata=_no_fetch())


def test_a_tile_absent_in_every_month_is_open_sea(world, tmp_path: Path, caplog) -> None:
    root, _ = world
    archive = _copy(root, tmp_path / "archive", skip=".h22v09.")
    with caplog.at_level(logging.WARNING):
        filled, _ = default_rasters(_opts(archive=archive), M09, EDGE, tmp_path / "raw",
                                    earthdata=_no_fetch())  # fmt: skip
    assert "no MOD13A3 tile h22v09 in any month: taken as open sea" in caplog.text
    got = _back(filled)
    assert np.isfinite(got[:, 0]).any() and np.isnan(got[:, -1]).all()


def test_an_unreadable_tile_names_file_and_month(world, tmp_path: Path) -> None:
    root, _ = world
    archive = _copy(root, tmp_path / "archive")
    bad = archive / granule_path(MOD13A3, MONTHS[1], 22, 9)
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(StaticError, match=rf"^MOD13A3 2020-02: {bad}"):
        default_rasters(_opts(archive=archive), M09, EDGE, tmp_path / "raw",
                        earthdata=_no_fetch())  # fmt: skip


def test_a_land_cell_never_reliable_is_named(tmp_path: Path, monkeypatch) -> None:
    ndvi = _ndvi()
    monkeypatch.setattr(mod13a3, "SHARES", ((mod13a3.CLOUDY, 1.0),))
    for month in MONTHS:
        write_month(tmp_path / "cloudy", ndvi, month, M09, EDGE, seed=1)
    with pytest.raises(StaticError, match=r"2020-01..2020-03: \d+ land cell\(s\) without a "
                       r"reliable pixel .* first at lon 40\.00\d, lat -3\.\d+"):  # fmt: skip
        default_rasters(_opts(archive=tmp_path / "cloudy"), M09, EDGE, tmp_path / "raw",
                        earthdata=_no_fetch())  # fmt: skip
    for month in MONTHS:
        write_month(tmp_path / "sea", np.full(ndvi.shape, np.nan), month, M09, EDGE, seed=1)
    with pytest.raises(StaticError, match=r"MOD13A3 2020-01: no NDVI pixel over the window"):
        default_rasters(_opts(archive=tmp_path / "sea"), M09, EDGE, tmp_path / "raw",
                        earthdata=_no_fetch())  # fmt: skip


def test_the_default_needs_the_long_term_period(tmp_path: Path) -> None:
    with pytest.raises(StaticError, match="needs long_term_start and long_term_end"):
        default_rasters(StaticOptions(**OTHERS), M09, EDGE, tmp_path / "raw")


def _no_fetch() -> FakeEarthaccess:
    """An earthaccess stand-in that fails any search (an archive is read, never fetched)."""

    class NoFetch(FakeEarthaccess):
        def search_data(self, **kwargs):
            raise AssertionError(f"no search expected, got {kwargs}")

    return NoFetch()
