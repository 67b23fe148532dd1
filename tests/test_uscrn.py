"""USCRN daily01: all 540 real station-year files, station summary, forcing, fetch, bad input."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from gsm3_ops.config import BoxConfig
from gsm3_ops.errors import SourceError
from gsm3_ops.sources.base import CorruptFileError, DateNotServedError, Source
from gsm3_ops.sources.insitu import InsituRead
from gsm3_ops.sources.uscrn import (
    Options,
    Response,
    UscrnSource,
    read_dir,
    read_files,
    station_url,
    to_target,
)
from gsm3_ops.sources.uscrn_daily01 import COLUMNS, read_daily01, station_forcing

N_FILES = 540
CALENDAR_DAYS = len(pd.date_range("2015-01-01", "2023-12-31"))
SAMPLE = "2016/CRND0103-2016-WA_Quinault_4_NE.txt"


@pytest.fixture(scope="module")
def folder(fixtures: Path) -> Path:
    return fixtures / "uscrn_daily01"


@pytest.fixture(scope="module")
def files(folder: Path) -> list[Path]:
    found = sorted(folder.glob("*/CRND0103-*.txt"))
    assert len(found) == N_FILES
    return found


@pytest.fixture(scope="module")
def frames(files: list[Path]) -> dict[Path, pd.DataFrame]:
    return {path: read_daily01(path) for path in files}


@pytest.fixture(scope="module")
def raw(files: list[Path]) -> dict[Path, list[list[str]]]:
    """Each file's fields, split here independently of the reader."""
    return {
        path: [line.split() for line in path.read_text().splitlines() if line.strip()]
        for path in files
    }


def _expected(field: str, column: str) -> float:
    """A raw field as the reader must return it: NaN for the missing-value codes."""
    value = float(field)
    if value == -9999.0 or (column.startswith("soil_moisture_") and value == -99.0):
        return np.nan
    return value


# ------------------------------------------------------------------ the reader


def test_every_file_reads_with_its_line_count_and_first_and_last_lines(frames, raw) -> None:
    for path, df in frames.items():
        lines = raw[path]
        assert len(df) == len(lines), path
        assert list(df.columns) == [c for c in COLUMNS if c != "lst_date"]
        assert df.index.name == "lst_date" and df.index.is_monotonic_increasing
        assert df.index.is_unique
        names = [c for c in COLUMNS if c != "lst_date"]
        for row, line in ((0, lines[0]), (-1, lines[-1])):
            assert df.index[row] == pd.Timestamp(line[1]), path
            got = dict(zip(names, df.iloc[row].tolist(), strict=True))
            fields = dict(zip(COLUMNS, line, strict=True))
            assert got.pop("wbanno") == fields.pop("wbanno")
            assert got.pop("sur_temp_daily_type") == fields.pop("sur_temp_daily_type")
            del fields["lst_date"]
            want = [_expected(fields[c], c) for c in got]
            np.testing.assert_equal(list(got.values()), want, err_msg=str(path))


def test_missing_codes_become_nan_and_nothing_else_is_negative_in_soil_moisture(
    frames, raw
) -> None:
    soil = [c for c in COLUMNS if c.startswith("soil_moisture_")]
    n_missing_raw = n_nan = 0
    for path, df in frames.items():
        values = df[soil].to_numpy()
        assert not (values < 0).any(), path
        assert not (df.select_dtypes("number").to_numpy() == -9999.0).any(), path
        fields = np.array([line[18:23] for line in raw[path]], dtype=float)
        n_missing_raw += int(((fields == -99.0) | (fields == -9999.0)).sum())
        n_nan += int(np.isnan(values).sum())
    assert n_nan == n_missing_raw > 0


def test_station_attributes_and_position(frames, folder: Path) -> None:
    table = pd.read_csv(folder / "_stations_selected.csv")
    by_station = table.set_index("station")
    for path, df in frames.items():
        station = path.stem.split("-", 2)[2]
        assert df.attrs["station"] == station
        assert int(df.attrs["wbanno"]) == by_station.loc[station, "wbanno"]
        assert len(df.attrs["wbanno"]) == 5  # WBANNO keeps its leading zero: 04237
        assert df.attrs["lat"] == pytest.approx(by_station.loc[station, "lat"], abs=0.005)
        assert df.attrs["lon"] == pytest.approx(by_station.loc[station, "lon"], abs=0.005)
        assert df.attrs["file"] == str(path)


def test_coverage_of_valid_5cm_values_matches_the_station_summary(frames, folder: Path) -> None:
    table = pd.read_csv(folder / "_stations_selected.csv").set_index("station")
    per_station: dict[str, list[pd.DataFrame]] = {}
    for df in frames.values():
        per_station.setdefault(df.attrs["station"], []).append(df)
    assert sorted(per_station) == sorted(table.index)
    for station, dfs in per_station.items():
        df = pd.concat(dfs)
        row = table.loc[station]
        assert len(df) == row["ndays"], station
        assert int(df["soil_moisture_5_daily"].notna().sum()) == row["n_sm5"], station
        assert int(df["p_daily_calc"].notna().sum()) == row["n_p"], station
        # The summary's share is over the calendar days of 2015-2023 (some files lack days).
        frac = df["soil_moisture_5_daily"].notna().sum() / CALENDAR_DAYS
        assert frac == pytest.approx(row["frac_sm5_2015_2023"], abs=0.0005)
        assert frac >= 0.8


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_truncated_file_names_file_and_line(fixtures: Path, tmp_path: Path) -> None:
    text = (fixtures / "uscrn_daily01" / SAMPLE).read_text()
    lines = text.splitlines(keepends=True)
    cut = "".join(lines[:100]) + lines[100][:120]  # stops inside line 101
    path = _write(tmp_path / Path(SAMPLE).name, cut)
    with pytest.raises(CorruptFileError, match=r"CRND0103-2016-WA_Quinault_4_NE\.txt, line 101: "):
        read_daily01(path)


def test_file_cut_inside_the_last_field_is_caught(fixtures: Path, tmp_path: Path) -> None:
    text = (fixtures / "uscrn_daily01" / SAMPLE).read_text()
    path = _write(tmp_path / "cut.txt", text.rstrip("\n")[:-2])  # 28 fields, last one short
    with pytest.raises(CorruptFileError, match=r"cut\.txt, line 366: .*truncated"):
        read_daily01(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.__setitem__(9, "x.x"), r"line 5: P_DAILY_CALC is 'x.x', not a number"),
        (lambda f: f.__setitem__(1, "20161345"), r"line 5: LST_DATE '20161345' is not a YYYYMMDD"),
        (lambda f: f.__setitem__(1, "20160101"), r"line 5: LST_DATE 20160101 does not follow"),
        (lambda f: f.__setitem__(0, "99999"), r"line 5: WBANNO 99999 differs"),
        (lambda f: f.append("1.0"), r"line 5: 29 fields, expected 28"),
    ],
)
def test_bad_lines_are_named(fixtures: Path, tmp_path: Path, edit, message: str) -> None:
    lines = (fixtures / "uscrn_daily01" / SAMPLE).read_text().splitlines()
    fields = lines[4].split()
    edit(fields)
    lines[4] = " ".join(fields)
    path = _write(tmp_path / "bad.txt", "\n".join(lines) + "\n")
    with pytest.raises(CorruptFileError, match=message):
        read_daily01(path)


def test_empty_and_binary_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match=r"empty\.txt: no data lines"):
        read_daily01(_write(tmp_path / "empty.txt", "\n"))
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe")
    with pytest.raises(CorruptFileError, match=r"bin\.txt: cannot read it as text"):
        read_daily01(binary)


# ------------------------------------------------------------------ station forcing


def test_station_forcing_units_and_values(frames, files: list[Path]) -> None:
    df = frames[files[0]]
    forcing = station_forcing(df)
    assert list(forcing.columns) == ["temperature", "precipitation", "solar_radiation",
                                     "relative_humidity"]  # fmt: skip
    assert forcing.attrs["units"]["solar_radiation"] == "W m-2"
    assert forcing.index.equals(df.index)
    first = forcing.iloc[0]
    # 2015-01-01 at Fairhope: T_DAILY_AVG 9.7 C, P 0.0 mm, SOLARAD 5.99 MJ m-2, RH 86.3 %
    assert first["temperature"] == pytest.approx(9.7 + 273.15)
    assert first["precipitation"] == 0.0
    assert first["solar_radiation"] == pytest.approx(5.99e6 / 86400)
    assert first["relative_humidity"] == pytest.approx(86.3)
    for path in files[:60]:
        f = station_forcing(frames[path])
        t = f["temperature"].dropna()
        assert ((t > 273.15 - 60) & (t < 273.15 + 50)).all(), path
        assert (f["solar_radiation"].dropna().between(0, 500)).all(), path
        assert (f["precipitation"].dropna() >= 0).all(), path


def test_station_forcing_falls_back_to_max_min_mean(frames, files: list[Path]) -> None:
    df = frames[files[0]].copy()
    df.iloc[0, df.columns.get_loc("t_daily_avg")] = np.nan
    assert station_forcing(df)["temperature"].iloc[0] == pytest.approx(10.3 + 273.15)
    with pytest.raises(ValueError, match="solarad_daily"):
        station_forcing(df.drop(columns="solarad_daily"))


# ------------------------------------------------------------------ insitu target


@pytest.fixture(scope="module")
def target(frames) -> InsituRead:
    """The target of all 540 files (read once for the whole module)."""
    return to_target(frames.values())


def test_read_dir_gives_the_cube_ready_target_for_all_60_stations(target, folder) -> None:
    table = pd.read_csv(folder / "_stations_selected.csv")
    da = target.data
    assert da.name == "insitu" and da.dims == ("site", "time")
    assert da.attrs["units"] == "m3 m-3"
    assert da.sizes["site"] == 60 and not target.skipped
    expected_ids = sorted(f"USCRN:{w:05d}" for w in table["wbanno"])
    assert sorted(da["site"].values.tolist()) == expected_ids
    assert da["time"].values[0] == np.datetime64("2015-01-01")
    assert da["time"].values[-1] == np.datetime64("2023-12-31")
    assert set(da["network"].values) == {"USCRN"}
    by_id = table.assign(site=[f"USCRN:{w:05d}" for w in table["wbanno"]]).set_index("site")
    valid = da.notnull().sum("time").to_series()
    assert (valid == by_id.loc[valid.index, "n_sm5"]).all()
    lat = da["lat"].to_series()
    assert np.allclose(lat, by_id.loc[lat.index, "lat"], atol=0.005)
    assert list(target.sites.index) == list(da["site"].values)
    assert (target.sites["depth_from"] == 0.05).all()


def test_regions_of_the_sites(target) -> None:
    regions = dict(zip(target.data["site"].values, target.data["region"].values, strict=True))
    lon = target.data["lon"].to_series()
    lat = target.data["lat"].to_series()
    for site, region in regions.items():
        if -125 <= lon[site] <= -66 and 24 <= lat[site] <= 50:
            assert region == "CONUS", site
        elif lat[site] > 51 and lon[site] < -129:
            assert region == "Alaska", site
    assert "CONUS" in regions.values()
    one = {"Here": BoxConfig(lon_min=-90, lat_min=30, lon_max=-80, lat_max=35)}
    files = sorted(Path(target.sites["file"].iloc[0].split("; ")[0]).parent.glob("*.txt"))[:10]
    custom = read_files(files, regions=one, start=dt.date(2015, 6, 1), end=dt.date(2015, 6, 30))
    assert set(custom.data["region"].values) <= {"Here", "Other"}
    assert custom.data.sizes["time"] == 30


def test_a_broken_file_is_skipped_and_named_the_others_are_read(folder, tmp_path) -> None:
    good = sorted((folder / "2020").glob("*.txt"))[:3]
    for path in good:
        shutil.copy(path, tmp_path / path.name)
    bad = tmp_path / "CRND0103-2021-XX_Broken_1_N.txt"
    bad.write_text(good[0].read_text()[:5000])  # cut mid-line
    result = read_dir(tmp_path)
    assert result.data.sizes["site"] == 3
    assert [p for p, _ in result.skipped] == [bad]
    assert "line" in result.skipped[0][1] and bad.name in result.skipped[0][1]
    assert result.data["time"].values[-1] == np.datetime64("2020-12-31")


def test_cube_takes_the_target(target, tmp_path: Path) -> None:
    from gsm3_ops.cube import Cube
    from gsm3_ops.grid import M09

    conus = M09.window_from_bbox(-125, 24, -66, 50)
    cube = Cube.create(
        tmp_path / "cube.zarr", M09, conus, start=dt.date(2015, 1, 1), end=dt.date(2015, 1, 31)
    )
    part = target.data.sel(time=slice("2015-01-01", "2015-01-31"))
    cube.write_insitu(part, source="uscrn", version="USCRN daily01")
    back = cube.read_insitu(dt.date(2015, 1, 1), dt.date(2015, 1, 31))
    back = back.set_index(site="site").sel(site=part["site"].values)
    np.testing.assert_allclose(back.values, part.values.astype(np.float32), equal_nan=True)
    assert list(back["region"].values) == list(part["region"].values)


# ------------------------------------------------------------------ fetch


class FakeHttp:
    """Serves fixture files by URL; records every request (url, timeout)."""

    def __init__(self, routes: dict[str, bytes | int]) -> None:
        self.routes = routes
        self.calls: list[tuple[str, float]] = []

    def get(self, url: str, timeout: float) -> Response:
        self.calls.append((url, timeout))
        body = self.routes.get(url, 404)
        if isinstance(body, int):
            return Response(body, b"not here")
        return Response(200, body)


def _url(year: int, station: str) -> str:
    return f"https://www.ncei.noaa.gov/pub/data/uscrn/products/daily01/{year}/CRND0103-{year}-{station}.txt"


def test_station_url_is_ncei_daily01() -> None:
    assert station_url(2023, "WA_Quinault_4_NE") == _url(2023, "WA_Quinault_4_NE")


def test_fetch_asks_the_exact_url_and_returns_the_day(folder: Path, tmp_path: Path) -> None:
    raw = (folder / SAMPLE).read_bytes()
    client = FakeHttp({_url(2016, "WA_Quinault_4_NE"): raw})
    source = UscrnSource(Options(stations=("WA_Quinault_4_NE",), timeout_s=30), client=client)
    granule = source.fetch(dt.date(2016, 7, 1), tmp_path)
    assert client.calls == [(_url(2016, "WA_Quinault_4_NE"), 30)]
    assert granule.version == "USCRN daily01" and granule.source == "uscrn"
    assert granule.files == (tmp_path / "2016" / "CRND0103-2016-WA_Quinault_4_NE.txt",)
    assert granule.files[0].read_bytes() == raw
    result = source.read(granule, start=dt.date(2016, 7, 1), end=dt.date(2016, 7, 1))
    assert result.data.sel(site="USCRN:04237").item() == pytest.approx(
        read_daily01(folder / SAMPLE).loc["2016-07-01", "soil_moisture_5_daily"]
    )


def test_fetch_lists_the_year_when_no_stations_are_configured(folder: Path, tmp_path) -> None:
    names = ["WA_Quinault_4_NE", "AL_Fairhope_3_NE"]
    listing = "".join(f'<a href="CRND0103-2016-{n}.txt">x</a>\n' for n in names).encode()
    routes: dict[str, bytes | int] = {
        "https://www.ncei.noaa.gov/pub/data/uscrn/products/daily01/2016/": listing
    }
    for n in names:
        routes[_url(2016, n)] = (folder / "2016" / f"CRND0103-2016-{n}.txt").read_bytes()
    client = FakeHttp(routes)
    granule = UscrnSource(client=client).fetch(dt.date(2016, 3, 1), tmp_path)
    assert [url for url, _ in client.calls[1:]] == [_url(2016, n) for n in sorted(names)]
    assert len(granule.files) == 2


def test_missing_station_is_noted_and_a_day_not_there_yet_is_not_served(folder, tmp_path) -> None:
    text = (folder / SAMPLE).read_text()
    june = "".join(line + "\n" for line in text.splitlines() if line.split()[1] < "20160701")
    client = FakeHttp({_url(2016, "WA_Quinault_4_NE"): june.encode()})
    source = UscrnSource(Options(stations=("WA_Quinault_4_NE", "XX_Gone_1_N")), client=client)
    granule = source.fetch(dt.date(2016, 6, 30), tmp_path)
    assert any("XX_Gone_1_N" in note and "HTTP 404" in note for note in granule.notes)
    with pytest.raises(DateNotServedError, match="2016-07-01"):
        source.fetch(dt.date(2016, 7, 1), tmp_path)
    assert source.latest_date(dt.date(2024, 5, 2)) == dt.date(2024, 5, 1)


def test_a_truncated_download_never_replaces_a_good_file(folder, tmp_path) -> None:
    raw = (folder / SAMPLE).read_bytes()
    url = _url(2016, "WA_Quinault_4_NE")
    source = UscrnSource(Options(stations=("WA_Quinault_4_NE",)), client=FakeHttp({url: raw}))
    good = source.fetch(dt.date(2016, 1, 5), tmp_path).files[0]
    source.client = FakeHttp({url: raw[: len(raw) // 2 + 50]})  # cut inside line 184
    with pytest.raises(SourceError, match=rf"{re.escape(url)}, line 184: "):
        source.fetch(dt.date(2016, 1, 5), tmp_path)
    assert good.read_bytes() == raw
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]


def test_server_errors_are_retried_then_named(tmp_path: Path) -> None:
    url = _url(2016, "WA_Quinault_4_NE")
    client = FakeHttp({url: 503})
    options = Options(stations=("WA_Quinault_4_NE",), retries=3, retry_wait_s=0)
    with pytest.raises(SourceError, match=r"HTTP 503"):
        UscrnSource(options, client=client).fetch(dt.date(2016, 1, 5), tmp_path)
    assert len(client.calls) == 3


def test_local_files_and_options_from_config(folder: Path) -> None:
    source = UscrnSource(Options(stations=("WA_Quinault_4_NE",)))
    granule = source.local(dt.date(2018, 2, 1), folder)
    assert len(granule.files) == 1 and granule.files[0].name.endswith("WA_Quinault_4_NE.txt")
    with pytest.raises(DateNotServedError):
        source.local(dt.date(2030, 1, 1), folder)
    with pytest.raises(ValidationError):
        Options(stationz=("x",))
    assert isinstance(source, Source) and source.provides == ("insitu",)


def test_default_client_over_loopback_http(folder: Path, tmp_path: Path) -> None:
    served = tmp_path / "www" / "2016"
    served.mkdir(parents=True)
    shutil.copy(folder / SAMPLE, served)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path / "www"))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            options = Options(stations=("WA_Quinault_4_NE", "XX_Gone_1_N"), base_url=base)
            granule = UscrnSource(options).fetch(dt.date(2016, 5, 5), tmp_path / "work")
        finally:
            server.shutdown()
    assert granule.files[0].read_bytes() == (folder / SAMPLE).read_bytes()
    assert any("XX_Gone_1_N" in n and "HTTP 404" in n for n in granule.notes)


# ------------------------------------------------------------------ a local archive


def _archive(folder: Path, tmp_path: Path, stations: tuple[str, ...]) -> Path:
    """A USCRN archive as NCEI lays it out: ``<year>/CRND0103-<year>-<station>.txt``."""
    archive = tmp_path / "uscrn"
    for year in (2019, 2020):
        (archive / str(year)).mkdir(parents=True)
        for station in stations:
            name = f"CRND0103-{year}-{station}.txt"
            shutil.copy(folder / str(year) / name, archive / str(year) / name)
    return archive


def test_an_archive_is_read_like_from_and_left_out_stations_are_listed(folder, tmp_path) -> None:
    from gsm3_ops.cube import Cube
    from gsm3_ops.grid import M09
    from gsm3_ops.ops.ingest_other import ingest_insitu
    from gsm3_ops.sources.insitu import default_regions

    archive = _archive(folder, tmp_path, ("AL_Fairhope_3_NE", "WA_Quinault_4_NE"))
    # Fairhope's 5 cm values of January 2020 made missing (-99.000), as NCEI writes a gap.
    fairhope = archive / "2020" / "CRND0103-2020-AL_Fairhope_3_NE.txt"
    at = COLUMNS.index("soil_moisture_5_daily")
    lines = [line.split() for line in fairhope.read_text().splitlines()]
    for fields in lines:
        if fields[1] < "20200201":
            fields[at] = "-99.000"
    fairhope.write_text("".join(" ".join(fields) + "\n" for fields in lines))

    source = UscrnSource(Options(archive=archive))
    assert source.first_date() == dt.date(2019, 1, 1)
    assert source.latest_date(dt.date(2030, 1, 1)) == dt.date(2020, 12, 31)
    south_east = M09.window_from_bbox(-89.0, 30.0, -81.0, 35.5)
    start, end = dt.date(2019, 12, 1), dt.date(2020, 1, 31)
    cube = Cube.create(tmp_path / "cube.zarr", M09, south_east, start, end)
    out = ingest_insitu(cube, source, start, end, M09, south_east, default_regions(),
                        workdir=tmp_path / "raw")  # fmt: skip
    assert out.status == "complete" and out.n_sites == 1, out.error
    reasons = {(p.name, why) for p, why in out.skipped}
    assert reasons == {
        ("CRND0103-2019-WA_Quinault_4_NE.txt",
         "USCRN:04237 at lat 47.5100, lon -123.8100: outside the domain"),
        ("CRND0103-2020-WA_Quinault_4_NE.txt",
         "USCRN:04237 at lat 47.5100, lon -123.8100: outside the domain"),
        ("CRND0103-2020-AL_Fairhope_3_NE.txt",
         "USCRN:63869: no valid SOIL_MOISTURE_5_DAILY value in 2019-12-01..2020-01-31 "
         "(valid days 2020-02-01..2020-12-31)"),
    }  # fmt: skip
    back = cube.read_insitu(start, end).sel(site="USCRN:63869").to_series()
    assert back[:"2019-12-31"].notna().sum() > 20 and back["2020-01-01":].isna().all()
    assert not (tmp_path / "raw").exists()  # read from the archive, nothing fetched
    # A year the archive lacks is listed; the outcome fails only when no year gave a station.
    gone = ingest_insitu(cube, source, dt.date(2021, 1, 1), dt.date(2021, 1, 31), M09,
                         south_east, default_regions(), workdir=tmp_path / "raw")  # fmt: skip
    assert gone.status == "failed" and "no CRND0103-2021-*.txt file" in gone.error
