"""NOAA USCRN daily01 files: the file reader and a station's own daily forcing.

A daily01 file holds one station-year, one line per day, 28 whitespace-separated columns
(``headers.txt`` at NCEI): WBANNO, LST_DATE, CRX_VN, LONGITUDE, LATITUDE, air temperature
(deg C), P_DAILY_CALC (mm), SOLARAD_DAILY (MJ m-2), surface temperature, relative humidity
(%), SOIL_MOISTURE_{5,10,20,50,100}_DAILY (m3 m-3) and SOIL_TEMP_{5,...,100}_DAILY (deg C).
Missing is -9999 (-9999.0, -9999.00) and -99.000 in the soil-moisture columns. Days are local
standard time (LST) days, not UTC days. The source (fetch and the ``insitu`` target) is
:mod:`gsm3_ops.sources.uscrn`.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gsm3_ops.sources.base import CorruptFileError

# The 28 columns of headers.txt, in order, lower case.
COLUMNS: tuple[str, ...] = (
    "wbanno", "lst_date", "crx_vn", "longitude", "latitude",
    "t_daily_max", "t_daily_min", "t_daily_mean", "t_daily_avg", "p_daily_calc", "solarad_daily",
    "sur_temp_daily_type", "sur_temp_daily_max", "sur_temp_daily_min", "sur_temp_daily_avg",
    "rh_daily_max", "rh_daily_min", "rh_daily_avg",
    "soil_moisture_5_daily", "soil_moisture_10_daily", "soil_moisture_20_daily",
    "soil_moisture_50_daily", "soil_moisture_100_daily",
    "soil_temp_5_daily", "soil_temp_10_daily", "soil_temp_20_daily", "soil_temp_50_daily",
    "soil_temp_100_daily",
)  # fmt: skip
TEXT_COLUMNS = ("wbanno", "lst_date", "sur_temp_daily_type")
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS)
SOIL_MOISTURE_COLUMNS = tuple(c for c in COLUMNS if c.startswith("soil_moisture_"))
_SOIL_AT = [NUMERIC_COLUMNS.index(c) for c in SOIL_MOISTURE_COLUMNS]
_NUMERIC_AT = [COLUMNS.index(c) for c in NUMERIC_COLUMNS]
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


def parse_daily01(text: str, path: str | Path) -> pd.DataFrame:
    """Parse the text of a daily01 file (see :func:`read_daily01`).

    ``path`` (a path or a URL) names the file in errors and in ``attrs["file"]``.
    """
    lines = text.splitlines()
    line_no = np.array([n for n, line in enumerate(lines, start=1) if line.strip()])
    if not line_no.size:
        raise CorruptFileError(f"USCRN file {path}: no data lines")
    tokens = text.split()
    # Every field is a number or a code, never blank: 28 tokens a line and a clean numeric
    # parse prove that each line had its 28 fields; otherwise find and name the bad line.
    if len(tokens) != len(COLUMNS) * line_no.size:
        raise _first_bad_line(lines, path)
    try:
        values = np.loadtxt(
            io.StringIO("\n".join(lines)), usecols=_NUMERIC_AT, dtype=np.float64, ndmin=2
        )
    except ValueError:
        raise _first_bad_line(lines, path) from None
    _check_last_line(text, lines, path)
    # Sentinels are exact in the text (-9999.0, -9999.00, -99.000), so compare exactly.
    values[values == MISSING] = np.nan
    soil = values[:, _SOIL_AT]
    soil[soil == MISSING_SOIL_MOISTURE] = np.nan
    values[:, _SOIL_AT] = soil
    width = len(COLUMNS)
    wbanno, stamps = tokens[0::width], tokens[1::width]
    days = _dates(stamps, line_no, path)
    steps = np.diff(days).astype(np.int64)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise CorruptFileError(
            f"USCRN file {path}, line {line_no[i]}: LST_DATE {stamps[i]} does not follow "
            f"{stamps[i - 1]} (dates must increase)"
        )
    other = next((i for i, w in enumerate(wbanno) if w != wbanno[0]), None)
    if other is not None:
        raise CorruptFileError(
            f"USCRN file {path}, line {line_no[other]}: WBANNO {wbanno[other]} differs from "
            f"{wbanno[0]} on line {line_no[0]} (one station per file)"
        )
    df = pd.DataFrame(
        values,
        columns=list(NUMERIC_COLUMNS),
        index=pd.DatetimeIndex(days.astype("datetime64[ns]"), name="lst_date"),
    )
    df.insert(0, "wbanno", np.array(wbanno, dtype=object))
    at = COLUMNS.index("sur_temp_daily_type")
    df.insert(at - 1, "sur_temp_daily_type", np.array(tokens[at::width], dtype=object))
    match = FILE_NAME.match(Path(path).name)
    lat, lon = df["latitude"].dropna(), df["longitude"].dropna()
    df.attrs.update(
        wbanno=wbanno[0],
        lat=float(lat.iloc[-1]) if len(lat) else float("nan"),
        lon=float(lon.iloc[-1]) if len(lon) else float("nan"),
        station=match["station"] if match else "",
        file=str(path),
    )
    return df


def _dates(stamps: list[str], line_no: np.ndarray, path: str | Path) -> np.ndarray:
    """YYYYMMDD strings -> datetime64[D]; CorruptFileError naming the first bad one."""
    iso = [f"{s[:4]}-{s[4:6]}-{s[6:]}" if len(s) == 8 and s.isdigit() else "?" for s in stamps]
    try:
        return np.array(iso, dtype="datetime64[D]")
    except ValueError:
        for i, text in enumerate(iso):
            try:
                np.datetime64(text, "D")
            except ValueError:
                raise CorruptFileError(
                    f"USCRN file {path}, line {line_no[i]}: LST_DATE {stamps[i]!r} is not a "
                    "YYYYMMDD date"
                ) from None
        raise


def _first_bad_line(lines: list[str], path: str | Path) -> CorruptFileError:
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


def _check_last_line(text: str, lines: list[str], path: str | Path) -> None:
    """A file cut inside its last field still has 28 fields: compare that line's length."""
    if text.endswith(("\n", "\r")) or len(lines) < 2:
        return
    widths = {len(line) for line in lines[:-1] if line.strip()}
    if len(widths) == 1 and len(lines[-1]) < min(widths):
        raise CorruptFileError(
            f"USCRN file {path}, line {len(lines)}: shorter than the other lines and no end "
            "of line (truncated file?)"
        )


# ------------------------------------------------------------------ station forcing

FORCING_UNITS: dict[str, str] = {
    "temperature": "K",
    "precipitation": "mm day-1",
    "solar_radiation": "W m-2",
    "relative_humidity": "%",
}
_SECONDS_PER_DAY = 86400.0


def station_forcing(df: pd.DataFrame) -> pd.DataFrame:
    """The station's own daily forcing from a :func:`read_daily01` frame.

    Columns (units in ``attrs["units"]``): ``temperature`` (K, the mean of the day's hourly
    temperatures ``T_DAILY_AVG``, else ``T_DAILY_MEAN`` = (max + min) / 2 where the hourly
    mean is missing), ``precipitation`` (mm day-1, ``P_DAILY_CALC``), ``solar_radiation``
    (W m-2, the day's mean flux: ``SOLARAD_DAILY`` MJ m-2 * 1e6 / 86400 s) and
    ``relative_humidity`` (%, ``RH_DAILY_AVG``). Same LST-day index; NaN stays NaN.
    """
    missing = [c for c in ("t_daily_avg", "t_daily_mean", "p_daily_calc", "solarad_daily",
                           "rh_daily_avg") if c not in df.columns]  # fmt: skip
    if missing:
        raise ValueError(f"not a daily01 frame: columns {missing} missing")
    temperature = df["t_daily_avg"].fillna(df["t_daily_mean"]) + 273.15
    out = pd.DataFrame(
        {
            "temperature": temperature,
            "precipitation": df["p_daily_calc"],
            "solar_radiation": df["solarad_daily"] * 1e6 / _SECONDS_PER_DAY,
            "relative_humidity": df["rh_daily_avg"],
        },
        index=df.index,
    )
    out.attrs.update(df.attrs)
    out.attrs["units"] = dict(FORCING_UNITS)
    return out


def file_span(path: Path) -> tuple[dt.date, dt.date] | None:
    """First and last LST day of a daily01 file from its first and last lines (None when it
    has no line); CorruptFileError naming the file when a date there is not YYYYMMDD."""
    try:
        lines = [line.split() for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise CorruptFileError(f"USCRN file {path}: {exc}") from None
    if not lines:
        return None
    days = []
    for n, fields in ((1, lines[0]), (len(lines), lines[-1])):
        stamp = fields[1].decode("ascii", "replace") if len(fields) > 1 else ""
        try:
            days.append(dt.datetime.strptime(stamp, "%Y%m%d").date())
        except ValueError:
            raise CorruptFileError(
                f"USCRN file {path}, line {n}: LST_DATE {stamp!r} is not a YYYYMMDD date"
            ) from None
    return days[0], days[1]


def station_of_file(path: Path) -> str:
    """The station name of a ``CRND0103-<year>-<station>.txt`` path ("" for other names)."""
    match = FILE_NAME.match(path.name)
    return match["station"] if match else ""
