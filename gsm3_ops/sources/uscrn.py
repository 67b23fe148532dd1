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

import datetime as dt
import io
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops.config import BoxConfig
from gsm3_ops.sources.base import CorruptFileError, DateNotServedError, Granule, SourceError
from gsm3_ops.sources.insitu import InsituRead, default_regions, range_problem, to_dataarray

log = logging.getLogger(__name__)

NAME = "uscrn"
NETWORK = "USCRN"
VERSION = "USCRN daily01"
BASE_URL = "https://www.ncei.noaa.gov/pub/data/uscrn/products/daily01"
TARGET = "soil_moisture_5_daily"  # the insitu target: 5 cm, m3 m-3

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


# ------------------------------------------------------------------ files -> insitu target


def station_of_file(path: Path) -> str:
    """The station name of a ``CRND0103-<year>-<station>.txt`` path ("" for other names)."""
    match = FILE_NAME.match(path.name)
    return match["station"] if match else ""


def read_files(
    paths: Iterable[str | Path],
    *,
    regions: Mapping[str, BoxConfig] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> InsituRead:
    """Daily01 files (any stations and years) -> the ``insitu`` target at 5 cm.

    A file that does not read is left out and listed in ``skipped`` with the reason (and
    logged with its path); the others go on. See :func:`to_target`.
    """
    frames: list[pd.DataFrame] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(Path(p) for p in paths):
        try:
            frames.append(read_daily01(path))
        except CorruptFileError as exc:
            log.warning("USCRN: skipping %s: %s", path, exc)
            skipped.append((path, str(exc)))
    return to_target(frames, regions=regions, start=start, end=end, skipped=skipped)


def to_target(
    frames: Iterable[pd.DataFrame],
    *,
    regions: Mapping[str, BoxConfig] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    skipped: list[tuple[Path, str]] | None = None,
) -> InsituRead:
    """:func:`read_daily01` frames -> the ``insitu`` target (``SOIL_MOISTURE_5_DAILY``).

    Frames of one station (same WBANNO) are joined; site ids are ``USCRN:<WBANNO>``; days are
    the files' LST days, clipped to ``start..end`` when given. A station with no valid value,
    or with values outside the registry's range, is left out and listed in ``skipped``.
    """
    skipped = list(skipped or [])
    by_station: dict[str, list[pd.DataFrame]] = {}
    for df in frames:
        by_station.setdefault(df.attrs["wbanno"], []).append(df)
    series: dict[str, pd.Series] = {}
    rows: dict[str, dict[str, Any]] = {}
    for wbanno, dfs in sorted(by_station.items()):
        site = f"{NETWORK}:{wbanno}"
        dfs.sort(key=lambda d: d.index[0])  # the last frame holds the latest position
        joined = pd.concat(dfs).sort_index()
        joined = joined[~joined.index.duplicated(keep="last")]  # a re-fetched year wins
        daily = joined[TARGET]
        if start is not None:
            daily = daily[daily.index >= pd.Timestamp(start)]
        if end is not None:
            daily = daily[daily.index <= pd.Timestamp(end)]
        files = "; ".join(df.attrs["file"] for df in dfs)
        problem = range_problem(daily)
        if daily.notna().sum() == 0:
            problem = f"no valid {TARGET.upper()} value in the period"
        if problem:
            log.warning("USCRN: leaving out %s (%s): %s", site, files, problem)
            skipped.extend((Path(df.attrs["file"]), f"{site}: {problem}") for df in dfs)
            continue
        last = dfs[-1].attrs
        series[site] = daily.rename(None)
        rows[site] = {
            "network": NETWORK,
            "station": next((d.attrs["station"] for d in dfs if d.attrs["station"]), wbanno),
            "lat": last["lat"],
            "lon": last["lon"],
            "depth_from": 0.05,
            "depth_to": 0.05,
            "sensor": TARGET.upper(),
            "file": files,
            "wbanno": wbanno,
        }
    if not series:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:5]) or "no daily01 files"
        raise SourceError(f"USCRN: no station with valid 5 cm soil moisture ({reasons})")
    sites = pd.DataFrame.from_dict(rows, orient="index")
    sites.index.name = "site"
    data = to_dataarray(series, sites, regions or default_regions(), source=NAME)
    return InsituRead(data=data, sites=sites, skipped=skipped)


def read_dir(
    directory: str | Path,
    *,
    regions: Mapping[str, BoxConfig] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> InsituRead:
    """Every ``CRND0103-*.txt`` under ``directory`` (any depth) -> the ``insitu`` target.

    See :func:`read_files`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"USCRN: {directory} is not a directory")
    paths = sorted(directory.rglob("CRND0103-*.txt"))
    if not paths:
        raise SourceError(f"USCRN: no CRND0103-*.txt daily01 files under {directory}")
    return read_files(paths, regions=regions, start=start, end=end)


# ------------------------------------------------------------------ HTTPS fetch


class HttpResponse(Protocol):
    """What the fetcher needs of an HTTP response."""

    status_code: int
    content: bytes


class HttpClient(Protocol):
    """An HTTP client: ``get(url, timeout)`` returns a response, whatever its status."""

    def get(self, url: str, timeout: float) -> HttpResponse: ...


@dataclass(frozen=True)
class Response:
    """A plain HTTP response (status and body)."""

    status_code: int
    content: bytes


class UrllibClient:
    """The default client: ``urllib.request`` (no extra dependency); HTTP errors are returned."""

    def get(self, url: str, timeout: float) -> Response:
        """GET ``url``; a 4xx/5xx answer is returned as a response, not raised."""
        request = urllib.request.Request(url, headers={"User-Agent": "gsm3-ops"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return Response(answer.status, answer.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read() or b"")


class Options(BaseModel):
    """USCRN settings (``sources.options.uscrn``)."""

    model_config = ConfigDict(extra="forbid")

    # Station names as in the file names (``AL_Fairhope_3_NE``); empty: every station
    # listed in the year's folder at NCEI.
    stations: tuple[str, ...] = ()
    base_url: str = BASE_URL
    first_date: dt.date = dt.date(2000, 1, 1)
    latency_days: int = Field(1, ge=0)  # yesterday's line appears during the day
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=1)  # attempts per file on connection errors and 5xx
    retry_wait_s: float = Field(5.0, ge=0)


def station_url(year: int, station: str, base_url: str = BASE_URL) -> str:
    """The NCEI URL of one station-year daily01 file."""
    return f"{base_url.rstrip('/')}/{year}/CRND0103-{year}-{station}.txt"


_LISTED = re.compile(r'href="(CRND0103-(\d{4})-([A-Za-z0-9_.-]+)\.txt)"')


class UscrnSource:
    """USCRN daily01 over HTTPS from NOAA NCEI, through an injected HTTP client.

    The current year's file of each station is fetched again each day (NCEI appends
    yesterday's line); a fetched file replaces the one on disk only after it has been read
    without error, so a broken download never spoils a good file.
    """

    name = NAME
    provides: tuple[str, ...] = ("insitu",)
    Options = Options

    def __init__(self, options: Options | None = None, client: HttpClient | None = None) -> None:
        self.options = options or Options()
        self.client = client or UrllibClient()

    def first_date(self) -> dt.date:
        """The earliest date the source serves."""
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest LST day NCEI has as of ``today`` (``latency_days`` before it)."""
        return today - dt.timedelta(days=self.options.latency_days)

    def version(self, day: dt.date) -> str:
        """The product recorded in the day manifest."""
        return VERSION

    def list_stations(self, year: int) -> list[str]:
        """Station names with a file for ``year``, from NCEI's folder listing."""
        url = f"{self.options.base_url.rstrip('/')}/{year}/"
        body = self._get(url).decode("utf-8", errors="replace")
        names = sorted({m[2] for m in _LISTED.findall(body) if m[1] == str(year)})
        if not names:
            raise SourceError(f"USCRN: no CRND0103-{year}-*.txt file listed at {url}")
        return names

    def fetch_station_year(self, year: int, station: str, workdir: Path) -> Path:
        """Download one station-year file to ``workdir/<year>/``; checked before it replaces."""
        url = station_url(year, station, self.options.base_url)
        target = Path(workdir) / str(year) / f"CRND0103-{year}-{station}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(self._get(url))
        try:
            text = partial.read_bytes().decode("ascii")
            parse_daily01(text, url)
        except UnicodeDecodeError as exc:
            partial.unlink()
            raise CorruptFileError(f"USCRN file {url}: not text: {exc}") from None
        except CorruptFileError:
            partial.unlink()
            raise
        os.replace(partial, target)
        return target

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Fetch the files of ``day``'s year for the configured stations.

        A station whose file is missing or broken is noted in the granule and the others go
        on; :class:`DateNotServedError` when no fetched file has a line for ``day`` yet.
        """
        if day < self.first_date():
            raise DateNotServedError(f"USCRN serves from {self.first_date()}, not {day}")
        stations = self.options.stations or tuple(self.list_stations(day.year))
        files: list[Path] = []
        notes: list[str] = []
        for station in stations:
            try:
                files.append(self.fetch_station_year(day.year, station, Path(workdir)))
            except SourceError as exc:
                log.warning("USCRN: %s %d not fetched: %s", station, day.year, exc)
                notes.append(f"{station}: {exc}")
        if not files:
            raise SourceError(f"USCRN: no file fetched for {day.year}: {'; '.join(notes)}")
        return self._granule(day, files, notes)

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The files of ``day``'s year already on disk under ``directory``."""
        names = set(self.options.stations)
        paths = [
            p
            for p in sorted(Path(directory).rglob(f"CRND0103-{day.year}-*.txt"))
            if not names or station_of_file(p) in names
        ]
        if not paths:
            raise DateNotServedError(f"USCRN: no CRND0103-{day.year}-*.txt file under {directory}")
        return self._granule(day, paths, [])

    def read(
        self,
        granule: Granule,
        regions: Mapping[str, BoxConfig] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> InsituRead:
        """The granule's files -> the ``insitu`` target (see :func:`read_files`)."""
        return read_files(granule.files, regions=regions, start=start, end=end)

    def _granule(self, day: dt.date, files: list[Path], notes: list[str]) -> Granule:
        """DateNotServedError unless one of ``files`` has a line for ``day``."""
        stamp = day.strftime("%Y%m%d")
        for path in files:
            if any(line.split()[1:2] == [stamp] for line in path.read_text().splitlines()):
                return Granule(NAME, day, tuple(files), VERSION, tuple(notes))
        raise DateNotServedError(f"USCRN: no station file has a line for {day} yet")

    def _get(self, url: str) -> bytes:
        """GET with retries on connection errors and 5xx; 4xx is a SourceError at once."""
        error = ""
        for attempt in range(1, self.options.retries + 1):
            try:
                response = self.client.get(url, timeout=self.options.timeout_s)
            except OSError as exc:  # URLError, timeouts, resets
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return bytes(response.content)
                error = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    break
            if attempt < self.options.retries:
                time.sleep(self.options.retry_wait_s)
        raise SourceError(f"USCRN: GET {url} failed: {error}")
