"""Log lines (text or JSON) never carry a credential, even inside an exception's text."""

from __future__ import annotations

import json
import logging

import pytest

from gsm3_ops.logs import Progress, log_context, setup_logging
from gsm3_ops.secrets import redact

SECRET = "5f2a-fake-cds-key-0042"


@pytest.fixture(autouse=True)
def _restore_root_logger(restore_root_logger):
    """Every test here sets up logging; the root logger is put back after each."""


@pytest.mark.parametrize("json_lines", [False, True])
def test_secrets_masked_in_messages_and_tracebacks(monkeypatch, capsys, json_lines) -> None:
    monkeypatch.setenv("CDSAPI_KEY", SECRET)
    monkeypatch.setenv("EARTHDATA_TOKEN", "tok-fake-777")
    setup_logging(json_lines=json_lines)
    log = logging.getLogger("gsm3_ops.test")
    log.info("request with key %s", SECRET)
    try:
        raise RuntimeError(f"401 for https://x.test/?token=tok-fake-777 ({SECRET})")
    except RuntimeError:
        log.exception("fetch failed")
    err = capsys.readouterr().err
    assert SECRET not in err and "tok-fake-777" not in err
    assert err.count("***") >= 3 and "RuntimeError" in err
    if json_lines:
        docs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert [d["level"] for d in docs] == ["INFO", "ERROR"]
        assert docs[0]["logger"] == "gsm3_ops.test"


def test_redact_masks_key_value_pairs_without_env() -> None:
    assert redact("url=https://a.b key: abc123xyz, password=pw1234") == (
        "url=https://a.b key: ***, password=***"
    )
    assert redact("nothing secret here") == "nothing secret here"


def test_json_lines_carry_the_day_and_source_of_their_context(capsys) -> None:
    setup_logging(json_lines=True)
    log = logging.getLogger("gsm3_ops.test")
    with log_context(day="2020-03-01"):
        log.info("day started")
        with log_context(source="era5_land"):
            log.warning("late")
        log.info("published", extra={"status": "complete"})
    log.info("outside")
    docs = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(d.get("day"), d.get("source"), d.get("status")) for d in docs] == [
        ("2020-03-01", None, None),
        ("2020-03-01", "era5_land", None),
        ("2020-03-01", None, "complete"),
        (None, None, None),
    ]


def test_progress_lines_with_rate_and_eta(caplog, monkeypatch) -> None:
    clock = iter([0.0, 10.0, 20.0, 70.0, 200.0])
    monkeypatch.setattr("gsm3_ops.logs.time.monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO)
    progress = Progress(logging.getLogger("gsm3_ops.test"), "ingest 2020-01-01..2020-01-04", 4)
    for _ in range(4):  # at 10 s and 20 s nothing is due; at 70 s a line; at the end a line
        progress.step()
    assert [r.getMessage() for r in caplog.records] == [
        "ingest 2020-01-01..2020-01-04: 3/4 (0.04/s, ETA 0m23s)",
        "ingest 2020-01-01..2020-01-04: 4/4 (0.02/s, done)",
    ]
