"""The scheduler fires its job on a trigger a few seconds ahead and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gsm3_ops.config import ScheduleConfig
from gsm3_ops.ops.scheduler import JOB_ID, build_scheduler

SCRIPT = """
import datetime as dt, logging, sys, time
from apscheduler.triggers.date import DateTrigger
from gsm3_ops.config import ScheduleConfig
from gsm3_ops.logs import setup_logging
from gsm3_ops.ops.scheduler import serve

setup_logging()
marker = sys.argv[1]
def job():
    with open(marker, "a") as f:
        f.write(dt.datetime.now(dt.UTC).isoformat() + "\\n")
    return "wrote " + marker
when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
serve(ScheduleConfig(), job, trigger=DateTrigger(run_date=when))
"""


def test_cron_line_is_validated_and_job_configured() -> None:
    sched = build_scheduler(ScheduleConfig(cron="15 6 * * *"), lambda: None)
    job = sched.get_job(JOB_ID)
    assert job.coalesce and job.max_instances == 1 and job.misfire_grace_time == 6 * 3600
    assert str(job.trigger.fields[5]) == "6" and str(job.trigger.fields[6]) == "15"
    with pytest.raises(ValueError, match="five fields"):
        ScheduleConfig(cron="every day")
    with pytest.raises(ValueError, match=r"schedule\.cron"):
        build_scheduler(ScheduleConfig(cron="99 6 * * *"), lambda: None)


def test_fires_then_stops_on_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "fired.txt"
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), "the job did not fire"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert len(marker.read_text().splitlines()) == 1
    assert "daily job finished: wrote" in err and "SIGTERM" in err and "scheduler stopped" in err
