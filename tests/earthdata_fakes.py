"""A stand-in for the ``earthaccess`` module: records every call, "downloads" real-format files.

Used by the IMERG, SMAP, MODIS and Earthdata tests; never touches the network.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


class FakeGranule(dict):
    """Shaped like ``earthaccess.DataGranule`` (a dict with ``meta`` and ``data_links()``)."""

    def __init__(self, path: Path, short_name: str) -> None:
        super().__init__(meta={"native-id": path.name, "provider-id": "FAKE"}, umm={})
        self.path = path
        self.short_name = short_name

    def data_links(self) -> list[str]:
        return [f"https://example.invalid/{self.short_name}/{self.path.name}"]


class FakeAuth:
    def __init__(self, authenticated: bool) -> None:
        self.authenticated = authenticated


class FakeEarthaccess:
    """``catalogue`` maps (short_name, version) to the files a search returns.

    ``login_results`` maps a strategy to True (success), False (rejected) or an exception to
    raise; strategies not named raise like earthaccess does when the strategy is unavailable.
    ``download_error`` makes every download raise it.
    """

    def __init__(
        self,
        catalogue: dict[tuple[str, str], list[Path]] | None = None,
        login_results: dict[str, Any] | None = None,
        download_error: Exception | None = None,
    ) -> None:
        self.catalogue = catalogue or {}
        self.login_results = {"environment": True} if login_results is None else login_results
        self.download_error = download_error
        self.searches: list[dict[str, Any]] = []
        self.downloads: list[tuple[list[str], str]] = []
        self.logins: list[str] = []

    def search_data(self, **kwargs: Any) -> list[FakeGranule]:
        self.searches.append(kwargs)
        key = (kwargs["short_name"], kwargs["version"])
        return [FakeGranule(p, key[0]) for p in self.catalogue.get(key, [])]

    def download(self, granules: list[FakeGranule], local_path: str) -> list[str]:
        self.downloads.append(([g.path.name for g in granules], local_path))
        if self.download_error is not None:
            raise self.download_error
        out = []
        for g in granules:
            dest = Path(local_path) / g.path.name
            shutil.copyfile(g.path, dest)
            out.append(str(dest))
        return out

    def login(self, strategy: str = "all") -> FakeAuth:
        self.logins.append(strategy)
        result = self.login_results.get(strategy)
        if result is None:
            raise RuntimeError(f"login strategy {strategy} unavailable")
        if isinstance(result, Exception):
            raise result
        return FakeAuth(bool(result))


def search_keys(fake: FakeEarthaccess) -> list[tuple[Any, ...]]:
    """Each recorded search as (short_name, version, temporal, bounding_box, count)."""
    return [
        (s["short_name"], s["version"], s["temporal"], s["bounding_box"], s["count"])
        for s in fake.searches
    ]
