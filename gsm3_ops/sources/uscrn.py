"""NOAA USCRN: the ``uscrn`` source (HTTPS fetch from NCEI) and daily01 files -> ``insitu``.

The file format (reader, station forcing) is :mod:`gsm3_ops.sources.uscrn_daily01`;
``read_daily01`` and ``station_forcing`` stay importable from here. Files are public:
``https://www.ncei.noaa.gov/pub/data/uscrn/products/daily01/{year}/CRND0103-{year}-{station}.txt``
and the current year's file gains yesterday's line each day.
"""

from __future__ import annotations

import datetime as dt
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

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from gsm3_ops.config import BoxConfig
from gsm3_ops.errors import SourceError
from gsm3_ops.sources.archive import ArchiveIndex
from gsm3_ops.sources.base import CorruptFileError, DateNotServedError, Granule
from gsm3_ops.sources.insitu import (
    InsituRead,
    NoStationError,
    default_regions,
    range_problem,
    to_dataarray,
)
from gsm3_ops.sources.uscrn_daily01 import (
    file_span,
    parse_daily01,
    read_daily01,
    station_of_file,
)
from gsm3_ops.sources.uscrn_daily01 import (
    station_forcing as station_forcing,  # re-exported: benchmarks/uscrn.py imports it from here
)

log = logging.getLogger(__name__)

NAME = "uscrn"
NETWORK = "USCRN"
VERSION = "USCRN daily01"
BASE_URL = "https://www.ncei.noaa.gov/pub/data/uscrn/products/daily01"
TARGET = "soil_moisture_5_daily"  # the insitu target: 5 cm, m3 m-3


# ------------------------------------------------------------------ files -> insitu target


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
            problem = _why_no_value(joined[TARGET], start, end)
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
        message = f"USCRN: no station with valid 5 cm soil moisture ({reasons})"
        raise NoStationError(message, skipped)
    sites = pd.DataFrame.from_dict(rows, orient="index")
    sites.index.name = "site"
    data = to_dataarray(series, sites, regions or default_regions(), source=NAME)
    return InsituRead(data=data, sites=sites, skipped=skipped)


def _why_no_value(values: pd.Series, start: dt.date | None, end: dt.date | None) -> str:
    """Why a station has no valid 5 cm value in ``start..end``: none at all, or only outside."""
    valid = values.dropna().index
    what = f"no valid {TARGET.upper()} value"
    if not len(valid):
        return f"{what} in its files"
    return (f"{what} in {start or '...'}..{end or '...'} (valid days "
            f"{valid[0]:%Y-%m-%d}..{valid[-1]:%Y-%m-%d})")  # fmt: skip


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
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

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
        archive = self.options.archive
        self._index = None if archive is None else ArchiveIndex(archive, NAME, self._span_of)

    def first_date(self) -> dt.date:
        """The earliest date the source serves: with an archive, its first LST day."""
        if self._index is None:
            return self.options.first_date
        return self._archive_span()[0]

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest LST day NCEI has as of ``today`` (``latency_days`` before it); with an
        archive, its last LST day."""
        if self._index is None:
            return today - dt.timedelta(days=self.options.latency_days)
        return self._archive_span()[1]

    def _archive_span(self) -> tuple[dt.date, dt.date]:
        return self._index.span("CRND0103-<year>-<station>.txt daily01 file")

    def _span_of(self, path: Path) -> tuple[dt.date, dt.date] | None:
        """The first and last LST_DATE of a configured station's daily01 file, else None."""
        station = station_of_file(path)
        if not station or (self.options.stations and station not in self.options.stations):
            return None
        try:
            return file_span(path)
        except CorruptFileError as exc:
            log.warning("USCRN: %s", exc)  # named again, with its line, when it is read
            return None

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
        """The station files of ``day``'s year under ``directory`` (any folder depth): an
        archive or ``--from`` folder. The reader keeps the days asked for and lists a station
        without a valid day among them; DateNotServedError when the year has no file."""
        names = set(self.options.stations)
        paths = [
            p
            for p in sorted(Path(directory).rglob(f"CRND0103-{day.year}-*.txt"))
            if not names or station_of_file(p) in names
        ]
        if not paths:
            raise DateNotServedError(f"USCRN: no CRND0103-{day.year}-*.txt file under {directory}")
        return Granule(NAME, day, tuple(paths), VERSION)

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
