"""NOAA USCRN daily01 files: reader, station forcing, HTTPS fetch and the ``insitu`` target.

A daily01 file holds one station-year, one line per day, 28 whitespace-separated columns
(``headers.txt`` at NCEI): WBANNO, LST_DATE, CRX_VN, LONGITUDE, LATITUDE, air temperature
(deg C), P_DAILY_CALC (mm), SOLARAD_DAILY (MJ m-2), surface temperature, relative humidity
(%), SOIL_MOISTURE_{5,10,20,50,100}_DAILY (m3 m-3) and SOIL_TEMP_{5,...,100}_DAILY (deg C).
Missing is -9999 (-9999.0, -9999.00) and -99.000 in the soil-moisture columns. Days are local
standard time (LST) days, not UTC days. Files are public:
``https://www.ncei.noaa.gov/pub/data/uscrn/products/daily01/{year}/CRND0103-{year}-{station}.txt``
and the current year's file gains yesterday's line each day.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gsm3_ops.sources.base import CorruptFileError

COLUMNS: tuple[str, ...] = (
    "wbanno",
    "lst_date",
    "crx_vn",
    "longitude",
    "latitude",
    "t_daily_max",
    "t_daily_min",
    "t_daily_mean",
    "t_daily_avg",
    "p_daily_calc",
    "solarad_daily",
    "sur_temp_daily_type",
    "sur_temp_daily_max",
    "sur_temp_daily_min",
    "sur_temp_daily_avg",
    "rh_daily_max",
    "rh_daily_min",
    "rh_daily_avg",
    "soil_moisture_5_daily",
    "soil_moisture_10_daily",
    "soil_moisture_20_daily",
    "soil_moisture_50_daily",
    "soil_moisture_100_daily",
    "soil_temp_5_daily",
    "soil_temp_10_daily",
    "soil_temp_20_daily",
    "soil_temp_50_daily",
    "soil_temp_100_daily",
)
TEXT_COLUMNS = ("wbanno", "lst_date", "sur_temp_daily_type")
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS)
SOIL_MOISTURE_COLUMNS = tuple(c for c in COLUMNS if c.startswith("soil_moisture_"))
_SOIL_AT = [NUMERIC_COLUMNS.index(c) for c in SOIL_MOISTURE_COLUMNS]
_DTYPES = {c: (str if c in TEXT_COLUMNS else "float64") for c in COLUMNS}
MISSING = -9999.0
MISSING_SOIL_MOISTURE = -99.0
# CRND0103-2015-AL_Fairhope_3_NE.txt
FILE_NAME = re.compile(r"^CRND0103-(?P<year>\d{4})-(?P<station>[A-Za-z0-9_.-]+)\.txt$")


def read_daily01(path: str | Path) -> pd.DataFrame:
    """Read one USCRN daily01 file.

    Parameters
    ----------
    path
        A ``CRND0103-<year>-<station>.txt`` file (any name is accepted).

    Returns
    -------
    pandas.DataFrame
        Indexed by the LST day (``lst_date``, datetime64 at 00:00, increasing, unique); the
        other 27 columns of the file in lower case, floats with NaN for -9999 and for -99.000
        in the soil-moisture columns; ``wbanno`` (5-digit string) and
        ``sur_temp_daily_type`` stay text. ``attrs`` holds ``wbanno``, ``lat`` and ``lon``
        (the station's position on its last line), ``station`` (from the file name, or
        ``""``) and ``file``.

    Raises
    ------
    CorruptFileError
        Naming the file and line: a line without 28 fields (a truncated file), a field that
        is not a number, a bad date, dates out of order or repeated, or lines from more than
        one station.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"USCRN file {path}: cannot read it as text: {exc}") from None
    return parse_daily01(text, path)


def parse_daily01(text: str, path: Path) -> pd.DataFrame:
    """Parse the text of a daily01 file (see :func:`read_daily01`); ``path`` names it in errors."""
    lines = text.splitlines()
    n_lines = sum(1 for line in lines if line.strip())
    if not n_lines:
        raise CorruptFileError(f"USCRN file {path}: no data lines")
    df = None
    # Fast path: the C parser; every field is a number or a text code, never blank, so the
    # token count and the absence of NaN prove each line had its 28 fields.
    if len(text.split()) == len(COLUMNS) * n_lines:
        try:
            df = pd.read_csv(
                io.StringIO(text), sep=r"\s+", header=None, names=list(COLUMNS), dtype=_DTYPES,
                index_col=False, engine="c",
            )  # fmt: skip
        except (ValueError, pd.errors.ParserError):
            df = None
    if df is None or len(df) != n_lines or df.isna().any().any():
        raise _first_bad_line(lines, path)
    _check_last_line(text, lines, path)
    # Sentinels are exact in the text (-9999.0, -9999.00, -99.000), so compare exactly.
    values = df[list(NUMERIC_COLUMNS)].to_numpy(dtype=np.float64)
    values[values == MISSING] = np.nan
    soil = values[:, _SOIL_AT]
    soil[soil == MISSING_SOIL_MOISTURE] = np.nan
    values[:, _SOIL_AT] = soil
    out = pd.DataFrame(values, columns=list(NUMERIC_COLUMNS))
    for name in TEXT_COLUMNS:
        out[name] = df[name].to_numpy()
    df = out
    line_no = np.array([n for n, line in enumerate(lines, start=1) if line.strip()])
    table = df[["wbanno", "lst_date"]].to_numpy()
    days = pd.to_datetime(df.pop("lst_date"), format="%Y%m%d", errors="coerce")
    if days.isna().any():
        i = int(np.flatnonzero(days.isna().to_numpy())[0])
        raise CorruptFileError(
            f"USCRN file {path}, line {line_no[i]}: LST_DATE {table[i, 1]!r} is not a YYYYMMDD date"
        )
    steps = np.diff(days.to_numpy()).astype("timedelta64[D]").astype(np.int64)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise CorruptFileError(
            f"USCRN file {path}, line {line_no[i]}: LST_DATE {table[i, 1]} does not follow "
            f"{table[i - 1, 1]} (dates must increase)"
        )
    stations = np.unique(df["wbanno"])
    if len(stations) != 1:
        i = int(np.flatnonzero(df["wbanno"].to_numpy() != df["wbanno"].iloc[0])[0])
        raise CorruptFileError(
            f"USCRN file {path}, line {line_no[i]}: WBANNO {table[i, 0]} differs from "
            f"{table[0, 0]} on line {line_no[0]} (one station per file)"
        )
    df = df[[c for c in COLUMNS if c != "lst_date"]]
    df.index = pd.DatetimeIndex(days, name="lst_date").as_unit("ns")
    match = FILE_NAME.match(path.name)
    lat, lon = df["latitude"].dropna(), df["longitude"].dropna()
    df.attrs.update(
        wbanno=str(stations[0]),
        lat=float(lat.iloc[-1]) if len(lat) else float("nan"),
        lon=float(lon.iloc[-1]) if len(lon) else float("nan"),
        station=match["station"] if match else "",
        file=str(path),
    )
    return df


def _first_bad_line(lines: list[str], path: Path) -> CorruptFileError:
    """The error naming the first line without 28 fields or with a field that is no number."""
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(COLUMNS):
            hint = " (truncated file?)" if n == len(lines) else ""
            return CorruptFileError(
                f"USCRN file {path}, line {n}: {len(fields)} fields, expected {len(COLUMNS)}{hint}"
            )
        for name, field in zip(COLUMNS, fields, strict=True):
            if name in TEXT_COLUMNS:
                continue
            try:
                float(field)
            except ValueError:
                return CorruptFileError(
                    f"USCRN file {path}, line {n}: {name.upper()} is {field!r}, not a number"
                )
    return CorruptFileError(f"USCRN file {path}: not a daily01 file (28 columns)")


def _check_last_line(text: str, lines: list[str], path: Path) -> None:
    """A file cut inside its last field still has 28 fields: compare that line's length."""
    if text.endswith(("\n", "\r")) or len(lines) < 2:
        return
    widths = {len(line) for line in lines[:-1] if line.strip()}
    if len(widths) == 1 and len(lines[-1]) < min(widths):
        raise CorruptFileError(
            f"USCRN file {path}, line {len(lines)}: shorter than the other lines and no end "
            "of line (truncated file?)"
        )
