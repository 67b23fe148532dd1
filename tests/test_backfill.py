"""Backfill: resumable after SIGKILL with identical COGs, a corrupt day fails alone, status,
concurrent runs of one day, and credentials kept out of the logs of a real run.

Every test runs on a copy of the tests' site (``tests/world_site.py``): its cube ingested
from the archive by the real sources, and its model trained once for the module. A fault is
injected into a real source (ERA5-Land) on a day first taken out of the copied cube.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.config import load_settings
from gsm3_ops.inference import tile as tile_module
from gsm3_ops.ops.backfill import backfill
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.models import ensure_bundle
from gsm3_ops.publish.manifest import failure_path, manifest_path
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.era5 import Era5LandSource

START, END = dt.date(2020, 3, 1), dt.date(2020, 3, 4)
CORRUPT = dt.date(2020, 3, 2)
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(world_site, tmp_path_factory) -> Path:
    """A data root holding the site's ingested cube and the model a run trains on first use
    (trained once here: first-use training is tests/test_pipeline.py's subject)."""
    tmp = tmp_path_factory.mktemp("trained")
    dep = Deployment(load_settings(world_site.config(tmp)))
    ensure_bundle(dep, dep.open_cube(), progress=False)
    return dep.settings.data_root


@pytest.fixture
def site(world_site, trained):
    """``site(tmp)``: a configuration in ``tmp`` whose data root is a copy of ``trained``."""

    def config(tmp: Path) -> Path:
        shutil.copytree(trained, tmp / "data")
        return world_site.config(tmp)

    return config


def _uningest(config: Path, day: dt.date) -> None:
    """Take ``day`` out of a copied cube, as if it had never been ingested: its cube manifest
    goes (so every source of the day is ingested again) and its daily arrays are emptied."""
    s = load_settings(config)
    cube = s.data_root / "cube.zarr"
    (s.data_root / "manifests" / "cube" / f"{day:%Y}" / f"{day}.json").unlink()
    index = (day - s.cube.start).days
    for group in ("forcing", "smap"):
        for _, array in zarr.open_group(cube / group, mode="r+").arrays():
            if array.ndim == 3:
                array[index] = np.nan


def _cli(config: Path, *args: str) -> list[str]:
    exe = Path(sys.executable).with_name("gsm3-ops")
    return [str(exe), *args, "--config", str(config), "--quiet"]


def _run(config: Path, day: dt.date):
    """``gsm3-ops run --date day`` in this process, quiet."""
    return runner.invoke(app, ["run", "--date", str(day), "--config", str(config), "--quiet"])


def _published(tmp_path: Path, day: dt.date) -> bool:
    return json.loads(manifest_path(tmp_path / "pub", day).read_text())["status"] == "complete"


def _cogs(pub: Path) -> dict[str, bytes]:
    return {str(p.relative_to(pub)): p.read_bytes() for p in sorted(pub.rglob("*.tif"))}


def test_backfill_killed_and_resumed_equals_an_uninterrupted_run(site, tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for d in (whole, killed):
        d.mkdir()
    args = ("backfill", "--start", str(START), "--end", str(END))
    done = subprocess.run(_cli(site(whole), *args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 produced, 0 already done, 0 failed" in done.stdout

    config = site(killed)
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


def test_a_corrupt_input_day_fails_alone_and_completes_once_fixed(site, tmp_path, monkeypatch):
    config = site(tmp_path)
    _uningest(config, CORRUPT)  # the day arrives now, ...
    dep = Deployment(load_settings(config))
    real = Era5LandSource.to_grid

    def corrupt(self, native, grid, window):
        ds = real(self, native, grid, window)
        if CORRUPT in ds["time"].dt.date.values:  # ... its 2 m temperature in degrees Celsius
            ds = ds.assign(t2m=ds["t2m"] - 273.15)
        return ds

    monkeypatch.setattr(Era5LandSource, "to_grid", corrupt)
    result = backfill(dep, START, END, progress=False)
    assert list(result.failed) == [CORRUPT]
    assert "forcing/era5_land" in result.failed[CORRUPT] and "t2m" in result.failed[CORRUPT]
    assert result.produced == [START, dt.date(2020, 3, 3), END]

    status = runner.invoke(app, ["status", "--start", str(START), "--end", str(END), "--json",
                                 "--config", str(config)])  # fmt: skip
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert report["counts"] == {"complete": 3, "provisional": 0, "failed": 1, "missing": 0}
    bad = next(d for d in report["days"] if d["date"] == str(CORRUPT))
    assert "outside the valid range" in bad["error"]
    assert bad["ingest_failures"] == ["forcing/era5_land"]
    assert report["lag_days"] == 0
    later = str(END + dt.timedelta(days=2))  # two days the run has not reached: an alert at 1
    args = ["status", "--start", str(START), "--config", str(config), "--max-lag"]
    behind = runner.invoke(app, [*args, "1", "--end", later])
    assert behind.exit_code == 1 and "lag: 2 days" in behind.stdout, behind.output
    alert = f"gsm3-ops: the latest published day is 2 days behind {later} (--max-lag 1)"
    assert behind.stderr.strip() == alert
    assert runner.invoke(app, [*args, "2", "--end", later]).exit_code == 0

    monkeypatch.setattr(Era5LandSource, "to_grid", real)  # the input is fixed
    fixed = backfill(dep, START, END, progress=False)
    assert fixed.produced == [CORRUPT] and not fixed.failed and len(fixed.skipped) == 3
    doc = json.loads(manifest_path(tmp_path / "pub", CORRUPT).read_text())
    assert doc["status"] == "complete" and not doc["provisional"]
    span = ["--start", str(START), "--end", str(END), "--config", str(config)]
    again = runner.invoke(app, ["backfill", *span, "--quiet"])  # nothing left to do, recorded
    assert again.exit_code == 0 and "0 produced, 4 already done, 0 failed" in again.output
    summary = json.loads(runner.invoke(app, ["backfill", *span, "--quiet", "--log-json"]).stdout)
    assert summary["produced"] == [] and len(summary["skipped"]) == 4 and summary["failed"] == {}
    report = json.loads(runner.invoke(app, ["status", *span, "--json"]).output)
    assert report["counts"]["complete"] == 4
    last = report["last_run"]
    assert (last["command"], last["outcome"], last["produced"], last["skipped"]) == (
        "backfill", "ok", 0, 4,
    )  # fmt: skip


def test_provisional_day_is_flagged_then_replaced(site, tmp_path, monkeypatch):
    config = site(tmp_path)
    _uningest(config, END)
    dep = Deployment(load_settings(config))
    real = Era5LandSource.local

    def late(self, day, directory):
        if day == END:  # the last day's forcing is not out yet
            raise DateNotServedError(f"ERA5-Land {day} is not out yet")
        return real(self, day, directory)

    monkeypatch.setattr(Era5LandSource, "local", late)
    failed = runner.invoke(app, ["run", "--date", str(END), "--config", str(config), "--quiet"])
    assert failed.exit_code == 1 and "required inputs missing" in failed.output
    ok = runner.invoke(app, ["run", "--date", str(END), "--provisional", "--config", str(config),
                             "--quiet"])  # fmt: skip
    assert ok.exit_code == 0 and "(provisional)" in ok.output
    doc = json.loads(manifest_path(tmp_path / "pub", END).read_text())
    assert doc["provisional"] and list(doc["missing_inputs"]) == ["forcing/era5_land"]
    assert "not out yet" in doc["missing_inputs"]["forcing/era5_land"]
    import rasterio

    from gsm3_ops.publish.cog import cog_path

    with rasterio.open(cog_path(tmp_path / "pub", str(END), "flag")) as src:
        flags = src.read(1)
    assert ((flags[flags != 255] & 2) == 2).all()  # provisional bit on every land cell

    monkeypatch.setattr(Era5LandSource, "local", real)  # the forcing arrives
    result = backfill(dep, END, END, progress=False)
    assert result.produced == [END]
    doc = json.loads(manifest_path(tmp_path / "pub", END).read_text())
    assert not doc["provisional"] and doc["missing_inputs"] == {}


def test_two_runs_of_one_day_started_together(site, tmp_path: Path) -> None:
    config = site(tmp_path)
    cmd = _cli(config, "run", "--date", str(START))
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # The lock serialises them: one does the work, the other finds it done and skips.
    assert sum("already published; skipped" in out for out, _ in outs) == 1
    doc = json.loads(manifest_path(tmp_path / "pub", START).read_text())
    assert doc["status"] == "complete"


def test_credentials_never_reach_the_logs_of_a_run(site, tmp_path: Path) -> None:
    config = site(tmp_path)
    env = {**os.environ, "CDSAPI_KEY": "fake-cds-9f8e7d6c", "EARTHDATA_PASSWORD": "fake-pw-5544",
           "EARTHDATA_USERNAME": "fake-user-3321"}  # fmt: skip
    cmd = [c for c in _cli(config, "run", "--date", str(START), "--log-json") if c != "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line: no bars
    assert lines and all("level" in x for x in lines)
    assert {x.get("day") for x in lines} == {str(START)}  # every line of the day names it
    summary = json.loads(done.stdout)
    assert (summary["command"], summary["day"], summary["outcome"]) == ("run", str(START), "ok")
    for secret in ("fake-cds-9f8e7d6c", "fake-pw-5544", "fake-user-3321"):
        assert secret not in text
        for path in (tmp_path / "pub").rglob("*"):
            if path.is_file() and path.suffix in (".json", ".yaml"):
                assert secret not in path.read_text()
    assert np.isfinite(json.loads(manifest_path(tmp_path / "pub", START).read_text())
                       ["soil_moisture_mean"])  # fmt: skip


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_cube_day_fails_named_and_one_command_repairs_it(site, tmp_path, damage):
    """A lost or truncated forcing chunk: the day fails in one line naming it (never a
    published day from wrong inputs), status says failed, and the command the line names
    repairs it; the day then publishes."""
    config = site(tmp_path)
    s = load_settings(config)
    index = (CORRUPT - s.cube.start).days
    chunks = sorted(p for p in (s.data_root / "cube.zarr" / "forcing" / "t2m" / "c" /
                                str(index)).rglob("*") if p.is_file())  # fmt: skip
    assert chunks
    if damage == "delete":
        chunks[0].unlink()
    else:
        chunks[0].write_bytes(chunks[0].read_bytes()[:7])
    span = ["--config", str(config), "--quiet"]
    failed = _run(config, CORRUPT)
    assert failed.exit_code == 1, failed.output
    line = failed.stderr.strip()
    assert line.count("\n") == 0 and f"cube day {CORRUPT}: forcing/t2m from era5_land" in line
    repair = line.split("repair: ", 1)[1]
    assert repair == f"gsm3-ops ingest --source era5_land --date {CORRUPT} --force"
    assert not manifest_path(tmp_path / "pub", CORRUPT).exists()
    one_day = ["--start", str(CORRUPT), "--end", str(CORRUPT), "--config", str(config)]
    report = json.loads(runner.invoke(app, ["status", "--json", *one_day]).output)
    assert report["days"][0]["status"] == "failed"
    fixed = runner.invoke(app, [*repair.split()[1:], *span])
    assert fixed.exit_code == 0, fixed.output
    again = _run(config, CORRUPT)
    assert again.exit_code == 0, again.output
    assert _published(tmp_path, CORRUPT)


def test_a_damaged_state_is_moved_aside_and_the_rerun_recomputes(site, tmp_path):
    config = site(tmp_path)
    assert _run(config, START).exit_code == 0
    state = load_settings(config).data_root / "state.zarr" / str(START)
    chunk = sorted(p for p in state.rglob("*") if p.is_file() and "c" in p.parts[-5:-1])[0]
    chunk.unlink()  # read back as zeros, it would have carried a wrong state on
    day = START + dt.timedelta(days=1)
    failed = _run(config, day)
    assert failed.exit_code == 1, failed.output
    line = failed.stderr.strip()
    assert line.count("\n") == 0 and f"state {START} tile" in line and "moved aside" in line
    assert line.endswith(f"repair: gsm3-ops run --date {day} (recomputes from the state "
                         "before it, or a cold start)")  # fmt: skip
    assert not state.exists()
    again = _run(config, day)
    assert again.exit_code == 0, again.output
    assert _published(tmp_path, day)


def test_sigterm_ends_a_run_as_interrupted_and_the_next_run_completes(site, tmp_path):
    config = site(tmp_path)
    cmd = [c for c in _cli(config, "run", "--date", str(START), "--log-json") if c != "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the day has started: its first log line names it
        if json.loads(line).get("day") == str(START):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err, err
    last = json.loads((tmp_path / "pub" / "manifests" / "last_run.json").read_text())
    assert (last["command"], last["outcome"]) == ("run", "interrupted")
    done = subprocess.run(_cli(config, "run", "--date", str(START)), capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _published(tmp_path, START)


def test_a_damaged_day_inside_a_replay_is_named_not_stepped_through(site, tmp_path):
    config = site(tmp_path)
    assert _run(config, START).exit_code == 0
    s = load_settings(config)
    index = (CORRUPT - s.cube.start).days
    folder = s.data_root / "cube.zarr" / "forcing" / "t2m" / "c" / str(index)
    next(p for p in sorted(folder.rglob("*")) if p.is_file()).unlink()
    later = CORRUPT + dt.timedelta(days=1)  # replays CORRUPT from START's state
    failed = _run(config, later)
    assert failed.exit_code == 1, failed.output
    assert f"cube day {CORRUPT}: forcing/t2m from era5_land" in failed.stderr
    assert f"repair: gsm3-ops ingest --source era5_land --date {CORRUPT} --force" in failed.stderr


def test_a_full_disk_while_writing_the_state_is_a_recorded_failure(site, tmp_path, monkeypatch):
    config = site(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tile_module, "write_tile", full)
    result = runner.invoke(app, ["run", "--date", str(START), "--config", str(config), "--quiet"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "No space left on device" in line
    record = json.loads(failure_path(tmp_path / "pub", START).read_text())
    assert record["status"] == "failed" and "No space left" in record["error"]
    state = load_settings(config).data_root / "state.zarr"
    assert not [p.name for p in state.iterdir() if p.is_dir()]  # no date, no temporary left
