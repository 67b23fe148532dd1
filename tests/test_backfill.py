"""Backfill: resumable after SIGKILL with identical COGs, a corrupt day fails alone, status,
concurrent runs of one day, and credentials kept out of the logs of a real run."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.config import load_settings
from gsm3_ops.ops.backfill import backfill
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.publish.manifest import manifest_path
from gsm3_ops.sources.synthetic import SyntheticSource
from tests.test_pipeline import TINY

START, END = dt.date(2020, 3, 1), dt.date(2020, 3, 4)
CORRUPT = dt.date(2020, 3, 2)
runner = CliRunner()


def _config(tmp: Path) -> Path:
    path = tmp / "tiny.yaml"
    doc = {**TINY, "data_root": str(tmp / "data"), "publish_root": str(tmp / "pub")}
    path.write_text(yaml.safe_dump(doc))
    return path


def _cli(config: Path, *args: str) -> list[str]:
    exe = Path(sys.executable).with_name("gsm3-ops")
    return [str(exe), *args, "--config", str(config), "--quiet"]


def _cogs(pub: Path) -> dict[str, bytes]:
    return {str(p.relative_to(pub)): p.read_bytes() for p in sorted(pub.rglob("*.tif"))}


def test_backfill_killed_and_resumed_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for d in (whole, killed):
        d.mkdir()
    args = ("backfill", "--start", str(START), "--end", str(END))
    done = subprocess.run(_cli(_config(whole), *args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 produced, 0 already done, 0 failed" in done.stdout

    config = _config(killed)
    proc = subprocess.Popen(_cli(config, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = manifest_path(killed / "pub", START + dt.timedelta(days=1))
    deadline = time.monotonic() + 240
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert second.exists(), "the backfill did not get to its second day"
    again = subprocess.run(_cli(config, *args), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "0 failed" in again.stdout and "already done" in again.stdout
    assert " 0 already done" not in again.stdout  # finished days were not redone

    a, b = _cogs(whole / "pub"), _cogs(killed / "pub")
    assert len(a) >= 4 * 3 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # same bytes for every COG


def test_a_corrupt_input_day_fails_alone_and_completes_once_fixed(tmp_path, monkeypatch):
    config = _config(tmp_path)
    dep = Deployment(load_settings(config))
    real = SyntheticSource.forcing

    def corrupt(self, grid, window, start, end):
        ds = real(self, grid, window, start, end)
        days = ds["time"].dt.date.values
        if CORRUPT in days:  # the day's 2 m temperature arrives in degrees Celsius
            t2m = ds["t2m"].values.copy()
            t2m[list(days).index(CORRUPT)] -= 273.15
            ds["t2m"] = (ds["t2m"].dims, t2m)
        return ds

    monkeypatch.setattr(SyntheticSource, "forcing", corrupt)
    result = backfill(dep, START, END, progress=False)
    assert list(result.failed) == [CORRUPT] and "t2m" in result.failed[CORRUPT]
    assert result.produced == [START, dt.date(2020, 3, 3), END]

    status = runner.invoke(app, ["status", "--start", str(START), "--end", str(END), "--json",
                                 "--config", str(config)])  # fmt: skip
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert report["counts"] == {"complete": 3, "provisional": 0, "failed": 1, "missing": 0}
    bad = next(d for d in report["days"] if d["date"] == str(CORRUPT))
    assert "outside the valid range" in bad["error"] and bad["ingest_failures"]

    monkeypatch.setattr(SyntheticSource, "forcing", real)  # the input is fixed
    fixed = backfill(dep, START, END, progress=False)
    assert fixed.produced == [CORRUPT] and not fixed.failed and len(fixed.skipped) == 3
    doc = json.loads(manifest_path(tmp_path / "pub", CORRUPT).read_text())
    assert doc["status"] == "complete" and not doc["provisional"]
    span = ["--start", str(START), "--end", str(END), "--config", str(config)]
    again = runner.invoke(app, ["backfill", *span, "--quiet"])  # nothing left to do, recorded
    assert again.exit_code == 0 and "0 produced, 4 already done, 0 failed" in again.output
    report = json.loads(runner.invoke(app, ["status", *span, "--json"]).output)
    assert report["counts"]["complete"] == 4
    last = report["last_run"]
    assert (last["command"], last["outcome"], last["produced"], last["skipped"]) == (
        "backfill", "ok", 0, 4,
    )  # fmt: skip


def test_provisional_day_is_flagged_then_replaced(tmp_path, monkeypatch):
    config = _config(tmp_path)
    dep = Deployment(load_settings(config))
    real = SyntheticSource.forcing

    def late(self, grid, window, start, end):
        ds = real(self, grid, window, start, end)
        return ds.sel(time=ds["time"].dt.date != END)  # the last day's forcing is not out yet

    monkeypatch.setattr(SyntheticSource, "forcing", late)
    failed = runner.invoke(app, ["run", "--date", str(END), "--config", str(config), "--quiet"])
    assert failed.exit_code == 1 and "required inputs missing" in failed.output
    ok = runner.invoke(app, ["run", "--date", str(END), "--provisional", "--config", str(config),
                             "--quiet"])  # fmt: skip
    assert ok.exit_code == 0 and "(provisional)" in ok.output
    doc = json.loads(manifest_path(tmp_path / "pub", END).read_text())
    assert doc["provisional"] and "forcing/synthetic" in doc["missing_inputs"]
    import rasterio

    from gsm3_ops.publish.cog import cog_path

    with rasterio.open(cog_path(tmp_path / "pub", str(END), "flag")) as src:
        flags = src.read(1)
    assert ((flags[flags != 255] & 2) == 2).all()  # provisional bit on every land cell

    monkeypatch.setattr(SyntheticSource, "forcing", real)  # the forcing arrives
    result = backfill(dep, END, END, progress=False)
    assert result.produced == [END]
    doc = json.loads(manifest_path(tmp_path / "pub", END).read_text())
    assert not doc["provisional"] and doc["missing_inputs"] == {}


def test_two_runs_of_one_day_started_together(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cmd = _cli(config, "run", "--date", str(START))
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # The lock serialises them: one does the work, the other finds it done and skips.
    assert sum("already published; skipped" in out for out, _ in outs) == 1
    doc = json.loads(manifest_path(tmp_path / "pub", START).read_text())
    assert doc["status"] == "complete"


def test_credentials_never_reach_the_logs_of_a_run(tmp_path: Path) -> None:
    config = _config(tmp_path)
    env = {**os.environ, "CDSAPI_KEY": "fake-cds-9f8e7d6c", "EARTHDATA_PASSWORD": "fake-pw-5544",
           "EARTHDATA_USERNAME": "fake-user-3321"}  # fmt: skip
    cmd = [c for c in _cli(config, "run", "--date", str(START), "--log-json") if c != "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all("level" in x for x in lines)
    for secret in ("fake-cds-9f8e7d6c", "fake-pw-5544", "fake-user-3321"):
        assert secret not in text
        for path in (tmp_path / "pub").rglob("*"):
            if path.is_file() and path.suffix in (".json", ".yaml"):
                assert secret not in path.read_text()
    assert np.isfinite(json.loads(manifest_path(tmp_path / "pub", START).read_text())
                       ["soil_moisture_mean"])  # fmt: skip
