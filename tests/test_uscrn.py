"""USCRN daily01: all 540 real station-year files, station summary, forcing, fetch, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gsm3_ops.sources.base import CorruptFileError
from gsm3_ops.sources.uscrn import COLUMNS, read_daily01

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
