"""The scheduler fires its job on a trigger a few seconds ahead and stops cleanly on SIGTERM;
each daily fire runs in a child process, where the run deadline stops a hung stage (the
scheduler waits for it on SIGTERM), and a run the deadline cannot stop is ended by the
parent's backstop and recorded."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gsm3_ops.config import ScheduleConfig, Settings, load_settings
from gsm3_ops.logs import setup_logging
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.fire import FireFailedError, fire
from gsm3_ops.ops.lock import lock_holder, run_lock
from gsm3_ops.ops.scheduler import JOB_ID, build_scheduler
from gsm3_ops.ops.status import last_run_path, status
from gsm3_ops.publish.manifest import DayManifest, manifest_path
from tests.world_site import REGION

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


# --- each fire in a child process: the run deadline works there, the parent has a backstop

FIRE_SCRIPT = """
import datetime as dt, sys
from apscheduler.triggers.date import DateTrigger
from gsm3_ops.config import load_settings
from gsm3_ops.logs import setup_logging
from gsm3_ops.ops.scheduler import daily_job, serve

if __name__ == "__main__":  # a spawned child imports this file too, as gsm3-ops' own
    setup_logging(json_lines=True)
    settings = load_settings(sys.argv[1])
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    serve(settings.schedule, lambda: daily_job(settings, grace_s=float(sys.argv[2])),
          trigger=DateTrigger(run_date=when))
"""
DAY = dt.date(2020, 1, 1)
log = logging.getLogger(__name__)


def _config(tmp: Path, **sections: dict) -> Path:
    """A deployment of the real sources (nothing fetched before the hang) over the tests'
    window, with a run deadline of 1 s."""
    doc = {"profile": "global", "data_root": str(tmp / "data"), "publish_root": str(tmp / "pub"),
           "region": REGION, "schedule": {"run_deadline_s": 1}, **sections}  # fmt: skip
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _holder(data_root: Path, other_than: int) -> int | None:
    pid = lock_holder(data_root)
    return pid if pid not in (None, other_than) else None


def test_a_hung_scheduled_run_stops_at_its_deadline_and_sigterm_waits_for_it(tmp_path) -> None:
    settings = load_settings(_config(tmp_path))
    day = Deployment(settings).latest_day(dt.date.today())
    stuck = manifest_path(settings.publish_root, day)  # a publish root on a stuck mount:
    stuck.parent.mkdir(parents=True)  # reading the day's record never returns
    os.mkfifo(stuck)
    script, err = tmp_path / "schedule.py", tmp_path / "schedule.log"
    script.write_text(FIRE_SCRIPT)
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "config.yaml"), "30"], stderr=stderr
        )
    try:
        until = time.monotonic() + 120
        while _holder(settings.data_root, proc.pid) is None and time.monotonic() < until:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        assert _holder(settings.data_root, proc.pid), "the fire never took the run lock"
        locked = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # the scheduler finishes the running fire first
        proc.wait(timeout=120)
        took = time.monotonic() - locked
    finally:
        proc.kill()
    text = err.read_text()
    assert proc.returncode == 0, text
    lines = [json.loads(line)["message"] for line in text.splitlines()]  # JSON throughout
    at = {key: next(i for i, m in enumerate(lines) if key in m)
          for key in ("received SIGTERM", "daily job failed", "scheduler stopped")}  # fmt: skip
    assert at["received SIGTERM"] < at["daily job failed"] < at["scheduler stopped"]
    failed = lines[at["daily job failed"]]
    assert f"{day}: stopped after the run deadline of 1 s" in failed and "Traceback" not in text
    assert took < 1 + 30  # the run deadline (the child's own watchdog), within the backstop
    stuck.unlink()
    with run_lock(settings.data_root, wait=False):  # released: the next run can start
        pass
    last = json.loads(last_run_path(settings.publish_root).read_text())
    assert (last["command"], last["outcome"], last["day"]) == ("schedule", "failed", str(day))
    assert "run deadline of 1 s" in last["error"]
    row = next(r for r in status(settings, None, None)["days"] if r["date"] == str(day))
    assert row["status"] == "failed" and "run deadline of 1 s" in row["error"]


def _obeys_sigterm(settings: Settings, provisional: bool, report_day) -> str:
    """A run its watchdog cannot interrupt (a call holding the interpreter): holds the lock."""
    report_day(DAY)
    with run_lock(settings.data_root):
        (settings.data_root / "locked_at").write_text(str(time.monotonic()))
        try:
            time.sleep(120)
        finally:
            (settings.data_root / "cleaned_up").touch()
    return "never"


def _ignores_sigterm(settings: Settings, provisional: bool, report_day) -> str:
    """The same, deaf to SIGTERM as well."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return _obeys_sigterm(settings, provisional, report_day)


@pytest.mark.parametrize(
    ("target", "ended"),
    [(_obeys_sigterm, "was ended by SIGTERM"), (_ignores_sigterm, "was killed (SIGKILL)")],
)
def test_a_run_its_deadline_cannot_stop_is_ended_by_the_backstop(tmp_path, target, ended):
    settings = load_settings(_config(tmp_path))
    grace = 3.0
    with pytest.raises(FireFailedError) as info:
        fire(settings, grace_s=grace, target=target)
    took = time.monotonic() - float((settings.data_root / "locked_at").read_text())
    reason = f"{DAY}: stopped after the run deadline of 1 s (schedule.run_deadline_s)"
    assert str(info.value).startswith(reason) and ended in str(info.value)
    assert 1 + grace < took < 1 + 2 * grace + 3  # deadline + grace, then SIGTERM (+ grace)
    assert (settings.data_root / "cleaned_up").exists() == (target is _obeys_sigterm)
    with run_lock(settings.data_root, wait=False):
        pass
    last = json.loads(last_run_path(settings.publish_root).read_text())
    assert (last["outcome"], last["day"], last["error"]) == ("failed", str(DAY), str(info.value))
    record = DayManifest.load(settings.publish_root, DAY)
    assert record is not None and not record.published and record.error == str(info.value)


def _dies(settings: Settings, provisional: bool, report_day) -> str:
    """Killed from outside (the OOM killer, say) before it could record anything."""
    report_day(DAY)
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


def test_a_child_that_dies_without_a_result_is_recorded_by_the_parent(tmp_path) -> None:
    settings = load_settings(_config(tmp_path))
    with pytest.raises(FireFailedError, match="was killed by SIGKILL before it reported"):
        fire(settings, target=_dies)
    last = json.loads(last_run_path(settings.publish_root).read_text())
    assert (last["outcome"], last["day"]) == ("failed", str(DAY))
    assert "SIGKILL" in DayManifest.load(settings.publish_root, DAY).error


def _logs_credentials(settings: Settings, provisional: bool, report_day) -> str:
    log.info("remote %s, key %s", settings.sources.options["mswep"]["remote"],
             os.environ["CDSAPI_KEY"])  # fmt: skip
    return f"{DAY} ok"


def test_the_child_logs_as_the_scheduler_does_with_credentials_masked(
    tmp_path, capfd, monkeypatch, restore_root_logger
) -> None:
    monkeypatch.setenv("CDSAPI_KEY", "cds-key-5f4e3d2c")
    remote = "gdrive,client_secret=drive-secret-9a8b7c:"
    mswep = {"archive": None, "remote": remote}
    settings = load_settings(_config(tmp_path, sources={"options": {"mswep": mswep}}))
    assert pickle.loads(pickle.dumps(settings)) == settings  # the child gets them whole
    setup_logging(json_lines=True)
    assert fire(settings, target=_logs_credentials) == f"{DAY} ok"
    err = capfd.readouterr().err
    line = next(json.loads(t) for t in err.splitlines() if "remote gdrive" in t)
    assert line["logger"] == __name__ and line["level"] == "INFO"
    assert "drive-secret" not in err and "cds-key" not in err and "***" in line["message"]


def test_the_lock_file_names_its_holder_while_held(tmp_path) -> None:
    assert lock_holder(tmp_path) is None
    with run_lock(tmp_path):
        assert lock_holder(tmp_path) == os.getpid()
    assert lock_holder(tmp_path) is None
