"""A provider that accepts the connection and never answers: each fetch gives up after its
configured HTTP timeout, tried exactly ``sources.fetch_attempts`` times, and fails with one
transient error (never cdsapi's own 500 retries 120 s apart)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from gsm3_ops.ops.ingest_day import Retry, fetch_with_retry
from gsm3_ops.sources import era5
from gsm3_ops.sources.base import SourceError
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
