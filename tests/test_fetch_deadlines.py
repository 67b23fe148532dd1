"""A provider that accepts the connection and never answers: each fetch gives up after its
configured timeout (cdsapi's own, or ``sources.fetch_timeout_s`` for clients without one),
tried exactly ``sources.fetch_attempts`` times, and fails with one transient error (never
cdsapi's own 500 retries 120 s apart, never a hang)."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
import requests

from gsm3_ops.ops.deadline import deadline
from gsm3_ops.ops.ingest_day import Retry, fetch_with_retry
from gsm3_ops.sources import era5
from gsm3_ops.sources.base import SourceError
from gsm3_ops.sources.earthdata import Earthdata
from tests.blackhole import BlackHole

DAY = dt.date(2024, 3, 10)


@pytest.mark.parametrize("key", ["12345:fake-legacy-key", "fake-personal-access-token"])
def test_cds_that_never_answers_is_abandoned_after_the_configured_attempts(
    tmp_path, monkeypatch, key
) -> None:
    with BlackHole() as hole:
        monkeypatch.setenv("CDSAPI_URL", hole.url + "/api")
        monkeypatch.setenv("CDSAPI_KEY", key)
        source = era5.Era5Source(era5.Era5Options(timeout_s=0.5))
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="CDS retrieval failed") as info:
            fetch_with_retry(source, DAY, tmp_path, Retry(attempts=2, backoff_s=0.05))
        elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed  # two 0.5 s timeouts and a short backoff, not 500 x 120 s
    assert 2 <= hole.accepted <= 4, hole.accepted  # one request (or its one retry) per attempt
    assert key not in str(info.value)


class _HungEarthaccess:
    """Downloads as earthaccess does: ``requests`` with no ``timeout=`` of its own."""

    def __init__(self, url: str) -> None:
        self.url = url

    def download(self, granules, local_path):
        requests.get(f"{self.url}/{granules[0]}", stream=True)
        return []


class _EarthdataSource:
    name = "smap"

    def __init__(self, client) -> None:
        self.earthdata = Earthdata(client)

    def fetch(self, day, workdir):
        return self.earthdata.download(["SMAP_L3_SM_P_E_20240310.h5"], workdir, f"SPL3SMP_E {day}")


def test_a_download_client_without_timeouts_is_bounded_by_fetch_timeout(tmp_path) -> None:
    with BlackHole() as hole:
        source = _EarthdataSource(_HungEarthaccess(hole.url))
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="SPL3SMP_E 2024-03-10: download failed"):
            fetch_with_retry(source, DAY, tmp_path, Retry(attempts=2, backoff_s=0.05,
                                                          timeout_s=0.5))  # fmt: skip
        elapsed = time.monotonic() - t0
    assert elapsed < 10 and hole.accepted == 2, (elapsed, hole.accepted)
    assert socket.getdefaulttimeout() is None  # the process default is left as it was


def test_a_fetch_is_abandoned_at_its_deadline_whatever_its_timeouts(tmp_path, monkeypatch) -> None:
    """A provider that keeps the request waiting (the CDS queue) under long timeouts: the
    fetch deadline ends it, and an enclosing run's deadline is left to its own."""
    with BlackHole() as hole:
        monkeypatch.setenv("CDSAPI_URL", hole.url + "/api")
        monkeypatch.setenv("CDSAPI_KEY", "12345:fake-legacy-key")
        source = era5.Era5Source(era5.Era5Options(timeout_s=60))
        t0 = time.monotonic()
        retry = Retry(attempts=3, backoff_s=0.05, timeout_s=60, deadline_s=0.5)
        expected = r"abandoned after 0\.5 s \(sources\.fetch_deadline_s\)"
        # The run's deadline, longer, encloses it: it neither fires nor confuses the fetch's.
        with pytest.raises(SourceError, match=expected), deadline(30):
            fetch_with_retry(source, DAY, tmp_path, retry)
        assert time.monotonic() - t0 < 5
