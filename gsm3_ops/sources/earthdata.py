"""Search and download NASA Earthdata granules with ``earthaccess`` (IMERG, SMAP, MODIS and
the MOD13A3 NDVI behind the static ``ndvi``).

The client is the ``earthaccess`` module unless one is injected (tests, mirrors): anything
with ``search_data(short_name=, version=, temporal=, bounding_box=, count=)`` and
``download(granules, local_path=)``, and optionally ``login(strategy=)``. Login happens once,
lazily, before the first download: ``strategy="environment"`` (``EARTHDATA_TOKEN``, or
``EARTHDATA_USERNAME`` and ``EARTHDATA_PASSWORD``), then ``"netrc"`` (``~/.netrc`` or
``$NETRC``). Every message that leaves this module is scrubbed of those credentials.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsm3_ops.errors import SourceError
from gsm3_ops.secrets import MASK, redact
from gsm3_ops.sources.base import CredentialsError, DateNotServedError

log = logging.getLogger(__name__)

Bbox = tuple[float, float, float, float]  # (west, south, east, north), degrees
GLOBAL_BBOX: Bbox = (-180.0, -90.0, 180.0, 90.0)

CREDENTIAL_VARS = ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "EARTHDATA_TOKEN")
LOGIN_STRATEGIES = ("environment", "netrc")


class EarthdataLoginError(CredentialsError):
    """No Earthdata Login credentials were found, or they were rejected."""


def scrub(text: str) -> str:
    """``text`` with every secret masked, the Earthdata user name included.

    :func:`gsm3_ops.secrets.redact` masks variables named like secrets; the user name is not
    named like one, but together with a leaked password it would be, so it is masked too.
    """
    text = redact(text)
    for var in CREDENTIAL_VARS:
        value = os.environ.get(var, "")
        if len(value) >= 3:
            text = text.replace(value, MASK)
    return text


def utc_today() -> dt.date:
    """Today's date in UTC (the day boundary every Earthdata product uses)."""
    return dt.datetime.now(dt.UTC).date()


def day_range(day: dt.date) -> tuple[str, str]:
    """The CMR temporal range of one UTC day, as ISO strings."""
    iso = day.isoformat()
    return (f"{iso}T00:00:00Z", f"{iso}T23:59:59Z")


def granule_name(granule: Any) -> str | None:
    """The file name of a search result (earthaccess ``DataGranule``), or None if unknown."""
    try:
        links = granule.data_links()
    except Exception:  # not a DataGranule, or no usable links: fall back to its metadata id
        links = []
    if links:
        return str(links[0]).rsplit("/", 1)[-1]
    try:
        return str(granule["meta"]["native-id"]).rsplit(":", 1)[-1]
    except (KeyError, TypeError):
        return None


class Earthdata:
    """One Earthdata connection: search for a day's granules, log in once, download them.

    Parameters
    ----------
    client
        The ``earthaccess`` module (default, imported on first use) or a replacement.
    """

    def __init__(self, client: Any = None) -> None:
        self._client = client
        self._logged_in = False

    @property
    def client(self) -> Any:
        """The download client (``earthaccess`` unless one was injected)."""
        if self._client is None:
            import earthaccess

            self._client = earthaccess
        return self._client

    def search(
        self,
        short_name: str,
        version: str,
        day: dt.date,
        bbox: Bbox = GLOBAL_BBOX,
        *,
        name_contains: str | None = None,
        count: int = -1,
    ) -> list[Any]:
        """Granules of ``short_name``/``version`` for one UTC day intersecting ``bbox``.

        ``name_contains`` keeps only granules whose file name holds it (e.g. the date in
        the name): CMR temporal matching is inclusive, so a neighbouring day that touches a
        day boundary would otherwise come back too. Granules without a known name are kept.
        """
        what = f"{short_name} {version} on {day.isoformat()}"
        found = self._search(short_name, version, day_range(day), bbox, count, what)
        if name_contains is not None:
            found = [g for g in found if (n := granule_name(g)) is None or name_contains in n]
        return found

    def search_period(
        self,
        short_name: str,
        version: str,
        first: dt.date,
        last: dt.date,
        bbox: Bbox = GLOBAL_BBOX,
        *,
        count: int = -1,
    ) -> list[Any]:
        """Granules of ``short_name``/``version`` whose time meets the UTC days
        ``first..last`` (inclusive) and whose extent meets ``bbox``, in one search."""
        temporal = (day_range(first)[0], day_range(last)[1])
        what = f"{short_name} {version} over {first.isoformat()}..{last.isoformat()}"
        return self._search(short_name, version, temporal, bbox, count, what)

    def _search(
        self,
        short_name: str,
        version: str,
        temporal: tuple[str, str],
        bbox: Bbox,
        count: int,
        what: str,
    ) -> list[Any]:
        try:
            found = self.client.search_data(
                short_name=short_name,
                version=version,
                temporal=temporal,
                bounding_box=tuple(float(b) for b in bbox),
                count=count,
            )
        except Exception as exc:  # any client failure (HTTP, CMR) becomes a source error
            raise SourceError(scrub(f"Earthdata search for {what} failed: {exc}")) from None
        return list(found or [])

    def require(
        self,
        short_name: str,
        version: str,
        day: dt.date,
        bbox: Bbox = GLOBAL_BBOX,
        *,
        name_contains: str | None = None,
        count: int = -1,
    ) -> list[Any]:
        """Like :meth:`search`, but :class:`DateNotServedError` when nothing is found."""
        found = self.search(
            short_name, version, day, bbox, name_contains=name_contains, count=count
        )
        if not found:
            raise DateNotServedError(
                f"no {short_name} version {version} granule found for {day.isoformat()} "
                f"(bounding box {tuple(bbox)}): not produced yet, or not at all"
            )
        return found

    def download(self, granules: Sequence[Any], workdir: Path, what: str) -> list[Path]:
        """Download ``granules`` into ``workdir``; the local paths, sorted.

        ``what`` names the request in errors (e.g. ``"MYD11A1 061 on 2020-01-01"``).
        """
        if not granules:
            raise SourceError(f"{what}: nothing to download")
        self.login()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            got = self.client.download(list(granules), local_path=str(workdir))
        except Exception as exc:  # network, HTTP 401/403, disk: one clear source error
            raise SourceError(scrub(f"{what}: download failed: {exc}")) from None
        paths = sorted(Path(p) for p in (got or []) if isinstance(p, str | os.PathLike))
        missing = [p for p in paths if not p.is_file()]
        if len(paths) < len(granules) or missing:
            raise SourceError(
                f"{what}: {len(granules)} granule(s) found but {len(paths) - len(missing)} "
                f"file(s) downloaded into {workdir} (access not approved for this "
                "application, or the download was cut off?)"
            )
        log.info("%s: %d file(s) downloaded", what, len(paths))
        return paths

    def login(self) -> None:
        """Log in once: the environment's credentials first, then ``~/.netrc``.

        A client without ``login`` (a mirror, a test double) needs none.
        """
        if self._logged_in:
            return
        login = getattr(self.client, "login", None)
        if login is None:
            self._logged_in = True
            return
        tried = []
        for strategy in LOGIN_STRATEGIES:
            try:
                auth = login(strategy=strategy)
            except Exception as exc:  # earthaccess: LoginStrategyUnavailable, LoginAttemptFailure
                tried.append(f"{strategy}: {type(exc).__name__}: {exc}")
                continue
            if auth is None or getattr(auth, "authenticated", True):
                self._logged_in = True
                log.info("Earthdata login via %s", strategy)
                return
            tried.append(f"{strategy}: credentials rejected")
        raise EarthdataLoginError(
            scrub(
                "Earthdata login failed; set EARTHDATA_TOKEN, or EARTHDATA_USERNAME and "
                "EARTHDATA_PASSWORD, or add 'machine urs.earthdata.nasa.gov login ... "
                "password ...' to ~/.netrc (tried " + "; ".join(tried) + ")"
            )
        )


def pick_files(paths: Sequence[Path], suffixes: Sequence[str], what: str) -> list[Path]:
    """The paths whose name ends in one of ``suffixes`` (case-insensitive); SourceError if none.

    A granule can bring side files (``.xml``, ``.qa``) besides its data file.
    """
    keep = [p for p in paths if p.name.lower().endswith(tuple(s.lower() for s in suffixes))]
    if not keep:
        names = ", ".join(p.name for p in paths) or "none"
        raise SourceError(f"{what}: no {'/'.join(suffixes)} file among the downloads ({names})")
    return sorted(keep)
