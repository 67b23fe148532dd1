"""ISMN: every real file in both formats, agreement with the ismn package, depth rule, bad input."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
from ismn.base import IsmnRoot
from ismn.filehandlers import DataFile, StaticMetaFile
from pydantic import ValidationError

from gsm3_ops.errors import SourceError
from gsm3_ops.sources.base import CorruptFileError, Source
from gsm3_ops.sources.ismn import IsmnSource, Options, read_dir
from gsm3_ops.sources.ismn_files import (
    parse_file_name,
    parse_text,
    read_file,
    read_static_variables,
)

FRAYE = "Data_seperate_files_20170810_20180809/FR_Aqui/fraye"
FRAYE_STM = "FR-Aqui_FR-Aqui_fraye_sm_0.050000_0.050000_ThetaProbe-ML2X_19500101_20210131.stm"
ADAMCLISI = "archive_sample/RSMN/Adamclisi"
ZIPS = ("zip_archives/multinetwork_header_values/Data_header_values.zip",
        "archive_sample/ismn_archive.zip")  # fmt: skip


@pytest.fixture(scope="module")
def ismn_dir(fixtures: Path) -> Path:
    return fixtures / "ismn_testdata"


def _data_files(ismn_dir: Path) -> list[tuple[Path, str]]:
    """(root, path inside the root) of every data file, extracted or in a zip archive."""
    out = [
        (
            ismn_dir / p.relative_to(ismn_dir).parts[0],
            str(p.relative_to(ismn_dir / p.relative_to(ismn_dir).parts[0])),
        )
        for p in sorted(ismn_dir.rglob("*.stm"))
    ]
    for z in ZIPS:
        with zipfile.ZipFile(ismn_dir / z) as archive:
            out += [(ismn_dir / z, m) for m in archive.namelist() if m.endswith(".stm")]
    return out


@pytest.fixture(scope="module")
def data_files(ismn_dir: Path) -> list[tuple[Path, str]]:
    files = _data_files(ismn_dir)
    assert len(files) == 16 + 8 + 1
    return files


def _raw(root: Path, member: str) -> bytes:
    if root.suffix == ".zip":
        with zipfile.ZipFile(root) as archive:
            return archive.read(member)
    return (root / member).read_bytes()


def _ours(root: Path, member: str):
    return parse_text(_raw(root, member), root / member)


@pytest.fixture(scope="module")
def ours(data_files) -> dict[tuple[Path, str], object]:
    return {(root, member): _ours(root, member) for root, member in data_files}


# ------------------------------------------------------------------ every file


def test_every_file_record_count_and_first_and_last_records(data_files, ours) -> None:
    formats = set()
    for root, member in data_files:
        lines = [line.split() for line in _raw(root, member).decode().splitlines() if line.strip()]
        got = ours[(root, member)]
        ceop = len(lines[0]) >= 14 and "/" in lines[0][0]
        data = lines if ceop else lines[1:]  # header+values: one header line
        formats.add(got.meta["format"])
        assert got.meta["format"] == ("ceop" if ceop else "header_values"), member
        assert len(got.records) == len(data), member
        at = 12 if ceop else 2
        for row, fields in ((0, data[0]), (-1, data[-1])):
            rec = got.records.iloc[row]
            assert got.records.index[row] == pd.Timestamp(
                f"{fields[0]} {fields[1]}".replace("/", "-")
            )
            assert rec["value"] == float(fields[at]), member
            assert rec["flag"] == fields[at + 1]
            assert rec["provider_flag"] == (fields[at + 2] if len(fields) > at + 2 else "")
    assert formats == {"ceop", "header_values"}


def _package_daily(frame: pd.DataFrame, flags: tuple[str, ...], min_hours: int = 12) -> pd.Series:
    """The daily mean rule applied to the ismn package's own read, with pandas only."""
    good = frame.loc[frame["soil_moisture_flag"].isin(flags), "soil_moisture"].dropna()
    hourly = good.resample("h").mean().dropna()
    stats = hourly.resample("D").agg(["mean", "count"])
    return stats["mean"].where(stats["count"] >= min_hours).dropna()


@pytest.mark.parametrize("flags", [("G",), ("G", "U")])
def test_daily_means_agree_with_the_ismn_package(data_files, ours, flags) -> None:
    compared = 0
    for root, member in data_files:
        theirs = DataFile(IsmnRoot(root), member)
        expected = _package_daily(theirs.read_data(), flags)
        got = ours[(root, member)].daily(flags).dropna()
        assert got.index.equals(pd.DatetimeIndex(expected.index)), member
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-6)
        compared += len(got)
        meta = theirs.metadata
        mine = ours[(root, member)].meta
        assert mine["network"] == meta["network"].val == PurePosixPath(member).parts[0]
        assert mine["station"] == meta["station"].val
        assert mine["lat"] == meta["latitude"].val and mine["lon"] == meta["longitude"].val
        assert mine["elevation"] == meta["elevation"].val
        depth = meta["instrument"].depth
        assert mine["depth_from"] == pytest.approx(depth.start, abs=1e-3), member
        assert mine["depth_to"] == pytest.approx(depth.end, abs=1e-3), member
        assert mine["sensor"] == meta["instrument"].val
    assert compared > (2500 if flags == ("G",) else 10000)


def test_line_ends_cr_crlf_lf_and_mixed_give_the_same_records(ismn_dir: Path) -> None:
    path = ismn_dir / FRAYE / FRAYE_STM  # CRLF
    raw = b"".join(path.read_bytes().splitlines(keepends=True)[:3000])  # a quick part
    assert raw.count(b"\r\n") == 3000
    lf = raw.replace(b"\r\n", b"\n")
    cr = raw.replace(b"\r\n", b"\r")
    cut = lf.index(b"\n", len(lf) // 2)
    mixed = lf[: cut + 1] + cr[cut + 1 :]  # LF lines, then CR lines
    base = parse_text(raw, path).records
    for variant in (lf, cr, mixed):
        pd.testing.assert_frame_equal(parse_text(variant, path).records, base)
    # The real header+values file with an LF header, a lone CR line, then CRLF lines:
    cosmos = next((ismn_dir / "Data_seperate_files_header_20170810_20180809").rglob("*ARM-1*.stm"))
    assert len(read_file(cosmos).records) == 6865


def test_combined_flags_and_empty_provider_flags(ismn_dir: Path) -> None:
    got = read_file(next((ismn_dir / ADAMCLISI).glob("*.stm")))
    assert "D02,D03" in set(got.records["flag"]) and "D01,D02,D03" in set(got.records["flag"])
    good_days = got.daily(("G",))
    with_d02 = got.daily(("G", "D02", "D03"))
    assert with_d02.notna().sum() > good_days.notna().sum()  # combined flags need every code
    aamu = read_file(next(ismn_dir.rglob("SCAN_SCAN_AAMU-jtg_*.stm")))
    assert (aamu.records["provider_flag"] == "").sum() == 125


def test_min_hours_is_the_count_of_valid_hours(ismn_dir: Path) -> None:
    got = read_file(ismn_dir / FRAYE / FRAYE_STM)
    good = got.records.loc[got.records["flag"] == "G", "value"]
    hours = good.groupby(good.index.floor("D")).size()
    for n in (1, 12, 24):
        daily = got.daily(("G",), min_hours=n).dropna()
        assert set(daily.index) == set(hours.index[hours >= n])
    first = hours.index[0]  # 2013-08-13 starts at 10:00: 14 hours
    assert hours[first] == 14
    assert got.daily(("G",), 12)[first] == pytest.approx(
        good[good.index.floor("D") == first].mean()
    )
    assert np.isnan(got.daily(("G",), 15)[first])


def test_static_variables_match_the_ismn_package(ismn_dir: Path) -> None:
    root = ismn_dir / "Data_seperate_files_20170810_20180809"
    for csv in sorted(root.rglob("*_static_variables.csv")):
        ours = read_static_variables(csv)
        theirs = StaticMetaFile(root, csv.relative_to(root)).metadata
        for name in ("saturation", "clay_fraction", "sand_fraction", "silt_fraction",
                     "organic_carbon"):  # fmt: skip
            top = [v.val for v in theirs[name] if v.depth is not None and v.depth.start == 0.0]
            assert ours[name] == top[0], (csv, name)
        assert ours["landcover_2010"] == str(theirs["lc_2010"].val)
        assert ours["climate_kg"] == theirs["climate_KG"].val


def test_file_names_old_and_2025_schemes() -> None:
    old = parse_file_name(
        "SCAN_SCAN_AdamsRanch#1_sm_0.050800_0.050800_Hydraprobe-Analog-(2.5-Volt)_20070101_20131231.stm"
    )
    assert (old.network, old.station, old.variable) == ("SCAN", "AdamsRanch#1", "sm")
    assert (old.depth_from, old.depth_to, old.sensor) == (
        0.0508,
        0.0508,
        "Hydraprobe-Analog-(2.5-Volt)",
    )
    new = parse_file_name(
        "RSMN_RSMN_Adamclisi_sm_0.000000_0.050000_Meter-5TM_1_1_19500101_20260512.stm"
    )
    assert (new.station, new.depth_from, new.depth_to, new.sensor) == (
        "Adamclisi",
        0.0,
        0.05,
        "Meter-5TM_1_1",
    )
    assert parse_file_name("FR-Aqui_FR-Aqui_fraye_static_variables.csv") is None
    assert parse_file_name("notes.stm") is None


# ------------------------------------------------------------------ directories


def test_read_dir_on_the_fixture_tree(ismn_dir: Path) -> None:
    result = read_dir(ismn_dir)
    da = result.data
    assert da.name == "insitu" and da.dims == ("site", "time") and da.attrs["units"] == "m3 m-3"
    assert list(da["site"].values) == ["ISMN:FR_Aqui:fraye", "ISMN:RSMN:Adamclisi"]
    assert list(da["region"].values) == ["Europe", "Europe"]
    assert list(result.sites.index) == list(da["site"].values)
    fraye = result.sites.loc["ISMN:FR_Aqui:fraye"]
    assert (fraye["depth_from"], fraye["depth_to"], fraye["sensor"]) == (
        0.05,
        0.05,
        "ThetaProbe-ML2X",
    )
    assert fraye["clay_fraction"] == 4.0 and fraye["climate_kg"] == "Cfb"
    expected = read_file(ismn_dir / FRAYE / FRAYE_STM).daily(("G",))
    got = da.sel(site="ISMN:FR_Aqui:fraye").to_series().dropna()
    pd.testing.assert_series_equal(got, expected.dropna(), check_names=False, check_freq=False)
    # Cosmic-ray probes are excluded; stations with only unchecked ("U") data have no day.
    assert not any("COSMOS" in s for s in da["site"].values)
    reasons = dict((str(p), r) for p, r in result.skipped)
    assert any(
        "SCAN:AdamsRanch#1: no day with 12 valid hours (flags G)" in r for r in reasons.values()
    )


def test_read_dir_with_unchecked_flags_and_regions(ismn_dir: Path) -> None:
    result = read_dir(ismn_dir, Options(good_flags=("G", "U")))
    regions = dict(zip(result.data["site"].values, result.data["region"].values, strict=True))
    assert regions["ISMN:SCAN:AdamsRanch#1"] == "CONUS"
    assert regions["ISMN:MAQU:CST-01"] == "Asia"
    assert regions["ISMN:SMOSMANIA:Narbonne"] == "Europe"
    assert len(regions) == 11
    # Narbonne exists in both formats: the two files of one sensor are joined, not doubled.
    narbonne = result.sites.loc["ISMN:SMOSMANIA:Narbonne", "file"].split("; ")
    assert len(narbonne) == 2
    assert result.data.sel(site="ISMN:SMOSMANIA:Narbonne").notnull().sum() == 31


def test_zip_archive_reads_like_the_extracted_folder(ismn_dir: Path) -> None:
    opts = Options(good_flags=("G", "U"))
    zipped = read_dir(ismn_dir / ZIPS[0], opts)
    folder = read_dir(ismn_dir / "multinetwork_header_values_extracted", opts)
    assert zipped.data.identical(folder.data)
    assert zipped.sites["file"].iloc[0].startswith(str(ismn_dir / ZIPS[0]))
    new = read_dir(ismn_dir / ZIPS[1])
    assert list(new.data["site"].values) == ["ISMN:RSMN:Adamclisi"]


def _station(tmp_path: Path, src: Path, names: list[str]) -> list[Path]:
    """Copies of the first 3000 lines of a real file under other sensor names and depths."""
    folder = tmp_path / "FR_Aqui" / "fraye"
    folder.mkdir(parents=True, exist_ok=True)
    part = b"".join(src.read_bytes().splitlines(keepends=True)[:3000])
    out = []
    for name in names:
        (folder / name).write_bytes(part)
        out.append(folder / name)
    return out


def _name(depth_from: str, depth_to: str, sensor: str) -> str:
    return f"FR-Aqui_FR-Aqui_fraye_sm_{depth_from}_{depth_to}_{sensor}_19500101_20210131.stm"


def test_depth_rule_prefers_5cm_and_falls_back_when_it_is_broken(ismn_dir, tmp_path) -> None:
    src = ismn_dir / FRAYE / FRAYE_STM
    at5, layer, deep, cosmic = _station(tmp_path, src, [
        _name("0.050000", "0.050000", "A"),
        _name("0.000000", "0.100000", "B"),
        _name("0.200000", "0.200000", "C"),
        _name("0.000000", "0.100000", "Cosmic-ray-Probe"),
    ])  # fmt: skip
    assert read_dir(tmp_path).sites.iloc[0]["sensor"] == "A"
    at5.write_bytes(src.read_bytes()[:3000] + b"2013/08/13 x\r\n")
    result = read_dir(tmp_path)
    assert result.sites.iloc[0]["sensor"] == "B"
    # Every sensor left out is listed with why: broken, too deep, excluded type.
    reasons = dict(result.skipped)
    assert set(reasons) == {at5, deep, cosmic}
    assert "line 22: 11 fields" in reasons[at5]
    assert reasons[deep] == ("station FR-Aqui:fraye sensor C 0.2-0.2 m: depth outside 0..0.1 m")
    assert "excluded sensor type ('cosmic'" in reasons[cosmic]
    wide = read_dir(tmp_path, Options(deepest=0.25, exclude_sensors=()))
    assert wide.sites.iloc[0]["sensor"] == "B"  # the 0-10 cm layer beats 20 cm
    layer.unlink()
    cosmic_only = read_dir(tmp_path, Options(exclude_sensors=()))
    assert cosmic_only.sites.iloc[0]["sensor"] == "Cosmic-ray-Probe"
    with pytest.raises(SourceError, match="no site with valid data"):
        read_dir(tmp_path)


def test_a_malformed_file_beside_good_copies_is_skipped_and_named(
    ismn_dir: Path, tmp_path: Path, caplog
) -> None:
    for folder in ("SCAN/AdamsRanch#1", "SCAN/Abrams", "MAQU/CST-01"):
        src = ismn_dir / "multinetwork_header_values_extracted" / folder
        shutil.copytree(src, tmp_path / folder)
    bad_src = next(
        (ismn_dir / "multinetwork_header_values_extracted/SOILSCAPE/node414").glob("*.stm")
    )
    bad = tmp_path / "SOILSCAPE" / "node414" / bad_src.name
    bad.parent.mkdir(parents=True)
    lines = bad_src.read_bytes().split(b"\r")
    lines[100] = b"2007/05/01 04:00   0.2110 U M extra"
    bad.write_bytes(b"\r".join(lines))
    broken_csv = tmp_path / "SCAN" / "Abrams" / "SCAN_SCAN_Abrams_static_variables.csv"
    broken_csv.write_bytes(b"not;a;static\nfile")
    with caplog.at_level(logging.WARNING, logger="gsm3_ops.sources.ismn"):
        result = read_dir(tmp_path, Options(good_flags=("G", "U")))
    assert sorted(result.data["site"].values) == [
        "ISMN:MAQU:CST-01", "ISMN:SCAN:Abrams", "ISMN:SCAN:AdamsRanch#1"
    ]  # fmt: skip
    reasons = dict(result.skipped)
    assert set(reasons) == {bad, broken_csv}
    assert "line 101: 6 fields" in reasons[bad]
    assert "quantity_name" in reasons[broken_csv]  # the site stays, without statics
    assert str(bad) in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe\x00", "not text"),
        (b"FR_Aqui FR_Aqui fraye 44.4 -0.7 52.4 0.05 0.05 X\n", "a header and no data lines"),
        (b"FR_Aqui FR_Aqui fraye here\n2013/08/13 10:00 0.03 G M\n", "line 1: no lat lon"),
        (
            b"N N s 1 2 3 0.05 0.05 X\n2013/08/13 10:00 0.03 G M\n2013/13/13 11:00 0.03 G M\n",
            "line 3: bad time '2013/13/13 11:00'",
        ),
        (b"N N s 1 2 3 0.05 0.05 X\n2013/08/13 10:00 x.03 G M\n", "line 2: value 'x.03'"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / _name("0.050000", "0.050000", "X")
    path.write_bytes(content)
    with pytest.raises(CorruptFileError, match=message) as info:
        read_file(path)
    assert path.name in str(info.value)


def test_source_local_and_read(ismn_dir: Path) -> None:
    source = IsmnSource(Options(good_flags=("G", "U")))
    granule = source.local(dt.date(2013, 1, 1), ismn_dir / "multinetwork_header_values_extracted")
    assert granule.version == "ISMN" and len(granule.files) == 8
    result = source.read(granule, start=dt.date(2010, 1, 1), end=dt.date(2010, 12, 31))
    assert result.data.sizes["time"] == 365
    assert result.data.sizes["site"] >= 1
    with pytest.raises(SourceError, match=r"no \.stm file"):
        source.local(dt.date(2013, 1, 1), ismn_dir / "docs")
    with pytest.raises(SourceError, match=r"no download API.*sources\.options\.ismn\.archive"):
        source.fetch(dt.date(2013, 1, 1), ismn_dir)
    assert source.latest_date(dt.date(2024, 1, 2)) == dt.date(2024, 1, 1)
    assert isinstance(source, Source) and source.version(dt.date(2020, 1, 1)) == "ISMN"
    with pytest.raises(ValidationError, match="shallowest < deepest"):
        Options(shallowest=0.1, deepest=0.05)
    with pytest.raises(ValidationError):
        Options(good_flag=("G",))


def test_an_archive_is_read_like_from_and_left_out_sensors_are_listed(ismn_dir, tmp_path) -> None:
    from gsm3_ops.cube import Cube
    from gsm3_ops.grid import M09
    from gsm3_ops.ops.ingest_other import ingest_insitu
    from gsm3_ops.sources.insitu import default_regions

    # A 5 cm station (CEOP format) beside two cosmic-ray probes (header+values, 0-0.19 and
    # 0-0.21 m: deeper than the 0..0.1 m range, and an excluded sensor type).
    archive = tmp_path / "download"
    shutil.copytree(ismn_dir / "Data_seperate_files_header_20170810_20180809", archive / "hv")
    shutil.copytree(ismn_dir / FRAYE, archive / "ceop" / "FR_Aqui" / "fraye")
    source = IsmnSource(Options(archive=archive))
    assert source.first_date() == dt.date(2013, 8, 13)  # fraye's first and last records
    assert source.latest_date(dt.date(2030, 1, 1)) == dt.date(2020, 1, 1)
    france = M09.window_from_bbox(-2.0, 43.5, 1.0, 45.5)
    start, end = dt.date(2017, 8, 10), dt.date(2018, 8, 9)
    cube = Cube.create(tmp_path / "cube.zarr", M09, france, start, end)

    def ingest(src: IsmnSource, a: dt.date = start, b: dt.date = end):
        return ingest_insitu(cube, src, a, b, M09, france, default_regions(),
                             workdir=tmp_path / "raw")  # fmt: skip

    out = ingest(source)
    assert out.status == "complete" and out.n_sites == 1, out.error
    assert {p.parent.name: why for p, why in out.skipped} == {
        "ARM-1": "station COSMOS:ARM-1 sensor Cosmic-ray-Probe 0-0.19 m: depth outside 0..0.1 m",
        "Barrow-ARM": "station COSMOS:Barrow-ARM sensor Cosmic-ray-Probe 0-0.21 m: depth outside "
        "0..0.1 m",
    }
    # Opened to 25 cm and every sensor type, the probes are read, then left out as outside.
    wide = ingest(IsmnSource(Options(archive=archive, deepest=0.25, exclude_sensors=())))
    assert sorted(why for _, why in wide.skipped) == [
        "ISMN:COSMOS:ARM-1 at lat 36.6054, lon -97.4878: outside the domain",
        "ISMN:COSMOS:Barrow-ARM at lat 71.3298, lon -156.6287: outside the domain",
    ]
    # A window after the station's last record: listed with why, and the ingest fails.
    late = ingest(source, dt.date(2020, 6, 1), dt.date(2020, 6, 30))
    assert late.status == "failed" and "no site with valid data" in late.error
    assert any(why == "station FR-Aqui:fraye: no valid day in 2020-06-01..2020-06-30 at any "
               "sensor" for _, why in late.skipped)  # fmt: skip
    assert not (tmp_path / "raw").exists()
