"""SMAP L3: AM/PM mean, quality flag bit 0, fill and range, grid slicing, requests, bad input.

Test files follow the real SPL3SMP layout (``smap_structure/SC_SPL3SMP_008.dmr``): groups
``Soil_Moisture_Retrieval_Data_AM``/``_PM``, PM names ending in ``_pm``, -9999 fills,
uint16 flags with fill 65534, EASE row/column indices.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pytest

from gsm3_ops.cube import Cube
from gsm3_ops.grid import M09, M36, EaseGrid, Window
from gsm3_ops.ops.ingest_day import IngestOptions, ingest_source
from gsm3_ops.sources.base import (
    CorruptFileError,
    CredentialsError,
    DateNotServedError,
    Granule,
    GriddedSource,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.smap import Options, SmapSource
from tests.earthdata_fakes import FakeEarthaccess, search_keys

DAY = dt.date(2020, 6, 15)
FILE_36 = "SMAP_L3_SM_P_20200615_R19240_001.h5"
FILE_9 = "SMAP_L3_SM_P_E_20200615_R19240_001.h5"
OPTS_36 = Options(short_name="SPL3SMP", version="009", file_prefix="SMAP_L3_SM_P")


def write_smap(
    path: Path,
    am: np.ndarray,
    pm: np.ndarray,
    am_flag: np.ndarray | None = None,
    pm_flag: np.ndarray | None = None,
    grid: EaseGrid | None = None,
    skip: tuple[str, ...] = (),
    origin: tuple[int, int] = (0, 0),
) -> Path:
    """An SPL3SMP-layout HDF5 file; NaN in ``am``/``pm`` becomes the -9999 fill. With an
    ``origin``, a spatial subset whose first cell is that global (row, col)."""
    rows, cols = np.indices(am.shape)
    rows, cols = rows + origin[0], cols + origin[1]
    if grid is not None:
        lon, lat = grid.rowcol_to_lonlat(rows, cols)
    with h5py.File(path, "w") as f:
        for group, suffix, sm, flag in (
            ("Soil_Moisture_Retrieval_Data_AM", "", am, am_flag),
            ("Soil_Moisture_Retrieval_Data_PM", "_pm", pm, pm_flag),
        ):
            g = f.create_group(group)
            has = np.isfinite(sm)
            flag = np.where(has, 0, 65534) if flag is None else flag

            def put(name: str, data: np.ndarray, dtype: str, fill: float, g=g, **attrs) -> None:
                if name in skip:
                    return
                d = g.create_dataset(
                    name,
                    data=data.astype(dtype),
                    compression="gzip",
                    fillvalue=np.array(fill, dtype=dtype),
                )
                d.attrs["_FillValue"] = np.array([fill], dtype=dtype)
                for k, v in attrs.items():
                    d.attrs[k] = v

            put(
                f"soil_moisture{suffix}",
                np.where(has, sm, -9999.0),
                "f4",
                -9999.0,
                units="cm**3/cm**3",
                valid_min=np.float32(0.02),
                valid_max=np.float32(0.5),
            )
            put(
                f"retrieval_qual_flag{suffix}",
                flag,
                "u2",
                65534,
                flag_masks="1s, 2s, 4s, 8s",
                flag_meanings="Retrieval_recommended Retrieval_attempted Retrieval_success "
                "FT_retrieval_success",
            )
            put(f"EASE_row_index{suffix}", np.where(has, rows, 65534), "u2", 65534)
            put(f"EASE_column_index{suffix}", np.where(has, cols, 65534), "u2", 65534)
            if grid is not None:
                put(f"latitude{suffix}", np.where(has, lat, -9999.0), "f4", -9999.0)
                put(f"longitude{suffix}", np.where(has, lon, -9999.0), "f4", -9999.0)
    return path


def _granule(path: Path) -> Granule:
    return Granule("smap", DAY, (path,), "SPL3SMP_E.006")


def _empty(grid: EaseGrid) -> np.ndarray:
    return np.full(grid.shape, np.nan)


# --- the real grid ---------------------------------------------------------------------------


def test_real_36km_retrieval_layout_matches_the_grid(fixtures: Path, tmp_path: Path) -> None:
    """Where the real SPL3SMP granule has retrievals, our row/col -> lon/lat agrees with it."""
    with h5py.File(fixtures / "smap_structure" / "SC_SPL3SMP_009_prefetch.nc4") as f:
        lat = f["Soil_Moisture_Retrieval_Data_AM/latitude"][()]
        lon = f["Soil_Moisture_Retrieval_Data_AM/longitude"][()]
    has = lat != -9999.0
    assert lat.shape == M36.shape and 1000 < has.sum() < has.size
    rows, cols = np.indices(M36.shape)
    am = np.where(has, 0.05 + 0.4 * rows / M36.n_rows, np.nan)
    path = write_smap(tmp_path / FILE_36, am, _empty(M36))
    src = SmapSource(OPTS_36)
    native = src.read(_granule(path))
    out = src.to_grid(native, M36, M36.full)["smap"]
    valid = np.isfinite(out.values[0])
    np.testing.assert_array_equal(valid, has)
    g_lon, g_lat = M36.rowcol_to_lonlat(rows[has], cols[has])
    np.testing.assert_allclose(g_lat, lat[has], atol=1e-3)
    np.testing.assert_allclose(g_lon, lon[has], atol=1e-3)
    # Any window is the same rows and columns, north-up.
    w = Window(100, 200, 30, 40)
    part = src.to_grid(native, M36, w)["smap"]
    np.testing.assert_array_equal(part.values[0], out.values[0][w.rows, w.cols])
    np.testing.assert_allclose(part["y"], M36.y_centres(w))
    np.testing.assert_allclose(part["x"], M36.x_centres(w))


@pytest.fixture(scope="module")
def file_9km(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size 9 km file: AM only, AM and PM, PM only in three bands of rows."""
    am, pm = _empty(M09), _empty(M09)
    am[800:810, 2300:2320], pm[805:815, 2300:2320] = 0.2, 0.3
    return write_smap(tmp_path_factory.mktemp("smap9") / FILE_9, am, pm)


def test_full_size_9km_file(file_9km: Path) -> None:
    src = SmapSource()
    native = src.read(_granule(file_9km))
    assert native["smap"].shape == (1, 1624, 3856)
    out = src.to_grid(native, M09, Window(800, 2300, 16, 16))
    v = out["smap"].values[0]
    assert out["smap"].dims == ("time", "y", "x") and v.dtype == np.float32
    np.testing.assert_allclose(v[0:5, :], 0.2)  # AM only
    np.testing.assert_allclose(v[5:10, :], 0.25)  # AM and PM
    np.testing.assert_allclose(v[10:15, :], 0.3)  # PM only
    assert np.isnan(v[15]).all()
    assert out["smap"].attrs["units"] == "m3 m-3"


# --- AM/PM mean, flags, fill ------------------------------------------------------------------


def test_mean_of_valid_am_and_pm_with_flags(tmp_path: Path) -> None:
    am, pm = _empty(M36), _empty(M36)
    am_flag = np.full(M36.shape, 65534, dtype=np.uint16)
    pm_flag = am_flag.copy()
    cases = {  # (row, col): (am, am_flag, pm, pm_flag, expected, expected without flag filter)
        (10, 10): (0.2, 0, 0.3, 0, 0.25, 0.25),  # both recommended
        (10, 11): (0.2, 0, np.nan, 65534, 0.2, 0.2),  # PM fill
        (10, 12): (0.2, 1, 0.4, 0, 0.4, 0.3),  # AM bit 0 set: not recommended
        (10, 13): (0.2, 8, 0.3, 0, 0.25, 0.25),  # bit 3 only (freeze/thaw ok): recommended
        (10, 14): (0.2, 1, 0.3, 5, np.nan, 0.25),  # both not recommended
        (10, 15): (0.2, 0, 0.6, 0, 0.2, 0.2),  # PM above valid_max 0.5
        (10, 16): (0.2, 65534, 0.3, 0, 0.3, 0.3),  # AM flag fill
        (10, 17): (np.nan, 65534, np.nan, 65534, np.nan, np.nan),  # no retrieval
        (10, 18): (0.2, 2, 0.3, 0, 0.25, 0.25),  # bit 0 alone decides "recommended"
    }
    for (r, c), (a, af, p, pf, _, _) in cases.items():
        am[r, c], am_flag[r, c], pm[r, c], pm_flag[r, c] = a, af, p, pf
    path = write_smap(tmp_path / FILE_36, am, pm, am_flag, pm_flag)
    w = Window(10, 10, 1, 9)
    for opts, k in ((OPTS_36, 4), (OPTS_36.model_copy(update={"recommended_only": False}), 5)):
        src = SmapSource(opts)
        got = src.to_grid(src.read(_granule(path)), M36, w)["smap"].values[0, 0]
        want = np.array([cases[(10, c)][k] for c in range(10, 19)])
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_am_only_option(tmp_path: Path) -> None:
    am, pm = _empty(M36), _empty(M36)
    am[5, 5], pm[5, 5], pm[5, 6] = 0.1, 0.3, 0.3
    path = write_smap(tmp_path / FILE_36, am, pm)
    src = SmapSource(OPTS_36.model_copy(update={"passes": ("AM",)}))
    got = src.to_grid(src.read(_granule(path)), M36, Window(5, 5, 1, 2))["smap"].values[0, 0]
    np.testing.assert_allclose(got, [0.1, np.nan], equal_nan=True)


# --- fetch and local ---------------------------------------------------------------------------


def test_fetch_request_and_granule(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    am = _empty(M36)
    am[1, 1] = 0.2
    h5 = write_smap(srv / FILE_36, am, _empty(M36))
    side = srv / (FILE_36 + ".xml")
    side.write_text("<xml/>")
    other = write_smap(srv / FILE_36.replace("20200615", "20200614"), am, _empty(M36))
    fake = FakeEarthaccess({("SPL3SMP", "009"): [other, h5, side]})
    src = SmapSource(OPTS_36.model_copy(update={"bbox": (0.0, 0.0, 10.0, 10.0)}), client=fake)
    assert isinstance(src, GriddedSource)
    granule = src.fetch(DAY, tmp_path / "work")
    assert search_keys(fake) == [
        (
            "SPL3SMP",
            "009",
            ("2020-06-15T00:00:00Z", "2020-06-15T23:59:59Z"),
            (0.0, 0.0, 10.0, 10.0),
            -1,
        )
    ]
    assert fake.downloads[0][0] == [FILE_36, FILE_36 + ".xml"]
    assert [p.name for p in granule.files] == [FILE_36]
    assert granule.version == "SPL3SMP.009" and granule.notes == ("crid:R19240_001",)
    assert SmapSource().version(DAY) == "SPL3SMP_E.006"


def test_fetch_nothing_found_names_short_name_and_date(tmp_path: Path) -> None:
    with pytest.raises(DateNotServedError, match=r"SPL3SMP_E version 006 .*2020-06-15"):
        SmapSource(client=FakeEarthaccess()).fetch(DAY, tmp_path)


def test_fetch_day_not_served_yet(tmp_path: Path) -> None:
    fake = FakeEarthaccess()
    src = SmapSource(client=fake)
    assert src.latest_date(dt.date(2024, 1, 10)) == dt.date(2024, 1, 8)
    with pytest.raises(DateNotServedError, match="not 2999-01-01"):
        src.fetch(dt.date(2999, 1, 1), tmp_path)
    with pytest.raises(DateNotServedError, match="not 2015-03-30"):
        src.fetch(dt.date(2015, 3, 30), tmp_path)
    assert fake.searches == []


def test_local_takes_the_newest_run(tmp_path: Path) -> None:
    am = _empty(M36)
    am[1, 1] = 0.2
    for name in (FILE_36, FILE_36.replace("R19240", "R18290"), FILE_36.replace("0615", "0616")):
        write_smap(tmp_path / name, am, _empty(M36))
    granule = SmapSource(OPTS_36).local(DAY, tmp_path)
    assert [p.name for p in granule.files] == [FILE_36]
    with pytest.raises(DateNotServedError, match="2020-06-17"):
        SmapSource(OPTS_36).local(dt.date(2020, 6, 17), tmp_path)


def test_ingest_into_the_cube(file_9km: Path, tmp_path: Path) -> None:
    domain = Window(800, 2300, 16, 16)
    cube = Cube.create(tmp_path / "cube.zarr", M09, domain, DAY, DAY, tile_size=16)
    src = SmapSource(client=FakeEarthaccess({("SPL3SMP_E", "006"): [file_9km]}))
    outcome = ingest_source(cube, src, DAY, M09, domain, IngestOptions(tmp_path / "raw"))
    assert outcome.status == "complete", outcome.error
    assert outcome.version == "SPL3SMP_E.006" and "crid:R19240_001" in outcome.notes
    stored = cube.read("smap", ["smap"], DAY, DAY)["smap"].values[0]
    np.testing.assert_allclose(stored[5:10], 0.25)
    assert np.isnan(stored[15]).all()


# --- bad input --------------------------------------------------------------------------------


def test_grid_mismatch_is_an_error(tmp_path: Path) -> None:
    am = _empty(M36)
    am[1, 1] = 0.2
    src = SmapSource()
    native = src.read(_granule(write_smap(tmp_path / FILE_36, am, _empty(M36))))
    with pytest.raises(SourceError, match="406 x 964, the M09 grid is 1624 x 3856"):
        src.to_grid(native, M09, Window(0, 0, 2, 2))


def test_wrong_ease_index_is_corrupt(tmp_path: Path) -> None:
    am = _empty(M36)
    am[3, 4] = 0.2
    path = write_smap(tmp_path / FILE_36, am, _empty(M36))
    with h5py.File(path, "a") as f:
        f["Soil_Moisture_Retrieval_Data_AM/EASE_row_index"][3, 4] = 7
    with pytest.raises(CorruptFileError, match=rf"{path}.*EASE_row_index is 7"):
        SmapSource().read(_granule(path))


def test_truncated_file_names_the_path(tmp_path: Path) -> None:
    am = _empty(M36)
    am[::3, ::3] = 0.2
    path = write_smap(tmp_path / FILE_36, am, am)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=str(path)):
        SmapSource().read(_granule(path))
    path.write_text("not hdf5")
    with pytest.raises(CorruptFileError, match=str(path)):
        SmapSource().read(_granule(path))


def test_missing_variable_names_file_and_variable(tmp_path: Path) -> None:
    am = _empty(M36)
    am[1, 1] = 0.2
    path = write_smap(tmp_path / FILE_36, am, am, skip=("retrieval_qual_flag_pm",))
    with pytest.raises(
        MissingVariableError, match=rf"{path}.*Soil_Moisture_Retrieval_Data_PM/retrieval_qual"
    ):
        SmapSource().read(_granule(path))


def test_all_fill_names_date_and_variable(tmp_path: Path) -> None:
    path = write_smap(tmp_path / FILE_36, _empty(M36), _empty(M36))
    with pytest.raises(SourceError, match=r"smap on 2020-06-15: no valid retrieval"):
        SmapSource().read(_granule(path))


def test_window_without_retrievals_is_an_empty_day(tmp_path: Path) -> None:
    """No overpass over the window is normal: all NaN, which the cube notes as empty."""
    am = _empty(M36)
    am[1, 1] = 0.2
    src = SmapSource(OPTS_36)
    native = src.read(_granule(write_smap(tmp_path / FILE_36, am, _empty(M36))))
    out = src.to_grid(native, M36, Window(100, 100, 5, 5))["smap"]
    assert out.shape == (1, 5, 5) and np.isnan(out.values).all()


def test_credential_failure_recorded_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "smap-token-0123456789"
    monkeypatch.setenv("EARTHDATA_TOKEN", token)
    monkeypatch.setenv("EARTHDATA_USERNAME", "smap-user-q9")
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / FILE_9).write_bytes(b"never downloaded: the login fails first")
    fake = FakeEarthaccess(
        {("SPL3SMP_E", "006"): [srv / FILE_9]},
        login_results={"environment": RuntimeError(f"token {token} expired for smap-user-q9")},
    )
    domain = Window(800, 2300, 16, 16)
    cube = Cube.create(tmp_path / "cube.zarr", M09, domain, DAY, DAY, tile_size=16)
    # Credentials are configuration: the ingest stops (exit 2), the day's failure recorded.
    with pytest.raises(CredentialsError, match="Earthdata login failed") as raised:
        ingest_source(
            cube, SmapSource(client=fake), DAY, M09, domain, IngestOptions(tmp_path / "w")
        )
    recorded = str(cube.manifest(DAY)["failures"])
    assert "Earthdata login failed" in recorded
    for text in (str(raised.value), recorded):
        assert token not in text and "smap-user-q9" not in text
    assert np.isnan(cube.read("smap", ["smap"], DAY, DAY)["smap"].values).all()


# --- spatial subsets ----------------------------------------------------------------------------

SUBSET_36 = "SMAP_L3_SM_P_20200615_R19240_001_subsetted.nc4"


def test_real_coordinates_place_a_variable_subset(fixtures: Path, tmp_path: Path) -> None:
    """A subset cut from the real SPL3SMP granule, with only soil moisture, flags and the
    real latitude/longitude (-9999 where no retrieval, no _FillValue on the AM ones): placed
    by its coordinates, it equals the whole file's window."""
    rows, cols = slice(100, 130), slice(500, 540)
    whole = {}
    with h5py.File(fixtures / "smap_structure" / "SC_SPL3SMP_009_prefetch.nc4") as real:
        sub = tmp_path / "2020.06.15" / SUBSET_36
        sub.parent.mkdir()
        with h5py.File(sub, "w") as f:
            for group, suffix in (("Soil_Moisture_Retrieval_Data_AM", ""),
                                  ("Soil_Moisture_Retrieval_Data_PM", "_pm")):  # fmt: skip
                g = f.create_group(group)
                for name in (f"latitude{suffix}", f"longitude{suffix}"):
                    src_ds = real[f"{group}/{name}"]
                    d = g.create_dataset(name, data=src_ds[rows, cols])
                    d.attrs.update({k: v for k, v in src_ds.attrs.items() if k == "_FillValue"})
                lat = real[f"{group}/latitude{suffix}"][()]
                sm = np.where(lat != -9999.0, 0.1 + 0.3 * np.indices(lat.shape)[1] / 964, np.nan)
                whole[group] = sm
                g.create_dataset(
                    f"soil_moisture{suffix}",
                    data=np.nan_to_num(sm, nan=-9999.0)[rows, cols].astype("f4"),
                )
                g[f"soil_moisture{suffix}"].attrs["_FillValue"] = np.float32(-9999.0)
                flag = np.where(np.isfinite(sm), 0, 65534)[rows, cols].astype("u2")
                g.create_dataset(f"retrieval_qual_flag{suffix}", data=flag)
    src = SmapSource(OPTS_36)
    w = Window(95, 510, 30, 40)  # overlaps the subset (rows 100..129, columns 500..539)
    got = src.to_grid(src.read(src.local(DAY, tmp_path)), M36, w)["smap"].values[0]
    full = write_smap(tmp_path / FILE_36, *whole.values())
    want = src.to_grid(src.read(_granule(full)), M36, w)["smap"].values[0]
    np.testing.assert_array_equal(got[5:, :30], want[5:, :30])
    assert np.isnan(got[:5]).all() and np.isfinite(got).sum() > 300  # rows above the subset
    assert np.isnan(got[:, 30:]).all()  # columns right of it


def test_subset_placed_by_its_ease_indices(tmp_path: Path) -> None:
    am = np.full((6, 8), np.nan)
    am[1:5, 2:7] = 0.3
    pm = np.where(np.isfinite(am), 0.1, np.nan)
    pm[2, 3] = np.nan
    path = write_smap(tmp_path / SUBSET_36, am, pm, grid=M36, origin=(200, 300))
    src = SmapSource(OPTS_36)
    native = src.read(_granule(path))
    out = src.to_grid(native, M36, Window(199, 299, 10, 10))["smap"].values[0]
    expected = np.full((10, 10), np.nan)
    expected[2:6, 3:8] = 0.2
    expected[3, 4] = 0.3  # AM only
    np.testing.assert_allclose(out, expected, rtol=1e-6, equal_nan=True)
    with pytest.raises(SourceError, match=r"rows 200\.\.205, columns 300\.\.307 .* none of"):
        src.to_grid(native, M36, Window(0, 0, 10, 10))


def test_subset_of_another_grid_is_refused(tmp_path: Path) -> None:
    """A 36 km subset on the 9 km grid: its coordinates are not one rectangle of cells; and
    EASE indices that disagree with the latitude/longitude are refused."""
    am = np.full((6, 8), 0.2)
    path = write_smap(tmp_path / SUBSET_36, am, am, grid=M36, origin=(200, 300))
    src = SmapSource(OPTS_36)
    with pytest.raises(SourceError, match=rf"{path}: its latitude/longitude are not one rect"):
        src.to_grid(src.read(_granule(path)), M09, Window(800, 1200, 30, 30))
    with h5py.File(path, "a") as f:
        for group, suffix in (("Soil_Moisture_Retrieval_Data_AM", ""),
                              ("Soil_Moisture_Retrieval_Data_PM", "_pm")):  # fmt: skip
            f[f"{group}/EASE_row_index{suffix}"][...] += 1
    with pytest.raises(SourceError, match=r"indices put it at row 201, .* at row 200, column"):
        src.to_grid(src.read(_granule(path)), M36, Window(200, 300, 6, 8))


def test_subset_with_inconsistent_indices_is_corrupt(tmp_path: Path) -> None:
    am = np.full((4, 4), 0.2)
    path = write_smap(tmp_path / SUBSET_36, am, am, origin=(50, 60))
    with h5py.File(path, "a") as f:
        f["Soil_Moisture_Retrieval_Data_PM/EASE_column_index_pm"][2, 3] = 99
    with pytest.raises(CorruptFileError, match=r"EASE_column_index_pm is 99 .* expected 63"):
        SmapSource(OPTS_36).read(_granule(path))


def test_subset_without_retrievals_is_an_empty_day(tmp_path: Path) -> None:
    empty = np.full((4, 4), np.nan)
    path = write_smap(tmp_path / SUBSET_36, empty, empty, grid=M36, origin=(50, 60))
    src = SmapSource(OPTS_36)
    out = src.to_grid(src.read(_granule(path)), M36, Window(50, 60, 4, 4))["smap"]
    assert np.isnan(out.values).all()


def test_archive_picks_the_newest_run_in_any_folder(tmp_path: Path) -> None:
    """Whole files and subsets (a Harmony subset's name, with or without one variable's
    name) in any sub-folder; the highest CRID and run of the day wins; side files and the
    other product's granules are not this source's."""
    names = {
        "2020/SMAP_L3_SM_P_20200615_R18290_002.h5": 0.1,
        "x/y/SMAP_L3_SM_P_20200615_R19240_001_subsetted.nc4": 0.2,
        "SMAP_L3_SM_P_20200615_R19240_001_Soil_Moisture_Retrieval_Data_AM_soil_moisture"
        "_subsetted.nc4": 0.3,
        "SMAP_L3_SM_P_20200616_R19240_001_subsetted.nc4": 0.4,
    }
    for name, value in names.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_smap(tmp_path / name, np.full((4, 4), value), np.full((4, 4), value), origin=(5, 6))
    (tmp_path / "SMAP_L3_SM_P_20200614_R19240_001.h5.dmrpp").write_text("sidecar")
    (tmp_path / "SMAP_L3_SM_P_E_20200613_R19240_001.h5").write_text("the 9 km product")
    src = SmapSource(OPTS_36.model_copy(update={"archive": tmp_path}))
    assert (src.first_date(), src.latest_date(dt.date(2030, 1, 1))) == (DAY, dt.date(2020, 6, 16))
    granule = src.local(DAY, tmp_path)
    assert granule.notes == ("crid:R19240_001",) and granule.version == "SPL3SMP.009"
    assert granule.files[0].name in {Path(n).name for n, v in names.items() if v in (0.2, 0.3)}
    got = src.to_grid(src.read(granule), M36, Window(5, 6, 4, 4))["smap"].values
    assert np.isin(got, np.float32([0.2, 0.3])).all()
