"""The deployment's model: first-use training resumes after SIGKILL; no bundle keeps secrets.

One tiny deployment on the session's world site (tests/world_site.py: the coastal window
near Lamu, its ingested cube, the real sources reading the archive; 50 training days, a
hidden size of 8), with fake credentials where a real deployment keeps them: the real
sources refuse credentials in ``sources.options`` (each validates its own entry), so they
sit in the environment (``CDSAPI_KEY``, ``EARTHDATA_USERNAME``, ``EARTHDATA_PASSWORD``),
while ``sources.options`` holds each source's archive.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.config import load_settings
from gsm3_ops.model.bundle import load_bundle
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.ops.models import cached_bundle_path, ensure_bundle, train, training_period
from gsm3_ops.training.checkpoint import load_checkpoint
from gsm3_ops.training.ensemble import checkpoint_dir

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2019, 8, 1)
SECRETS = {
    "CDSAPI_KEY": "FAKE-ERA5-KEY-7f3a9c",
    "EARTHDATA_USERNAME": "fake-earthdata-user",
    "EARTHDATA_PASSWORD": "FAKE-EARTHDATA-PASSWORD-0b1d",
}
TINY = {
    "model": {"hidden_size": 8},
    # 14 batches an epoch (hydroDL's rule: 134 training locations x 50 days, batches of
    # 64 x 30 days): checkpoints at 14, 28, 42 and 56 of 64 batches.
    "training": {
        "start": "2019-06-01", "end": "2019-07-20", "test_start": "2019-07-21",
        "test_end": "2019-08-10", "seq_len": 30, "batch_size": 64, "members": 2,
        "max_iterations": 64, "holdout_fraction": 0.2, "checkpoint_every": 1, "threads": 1,
        "device": "cpu",
    },
    "inference": {"spinup_days": 30, "device": "cpu"},  # tile_size stays the cube's
    "product": {"start": "2019-08-01"},
}  # fmt: skip

runner = CliRunner()

# `gsm3-ops run` in a child that trains slowly enough (a sleep per batch, which changes no
# number) to be killed between two checkpoints of its first member.
_CHILD = """
import sys, time
import gsm3_ops.training.trainer as trainer
_gather = trainer.gather
def slow_gather(*a, **k):
    time.sleep(0.05)
    return _gather(*a, **k)
trainer.gather = slow_gather
from gsm3_ops.cli import app
app(["run", "--config", sys.argv[1], "--date", sys.argv[2], "--quiet"])
"""


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch):
    monkeypatch.delenv("GSM3_CONFIG", raising=False)


@pytest.fixture(scope="module")
def config(world_site, tmp_path_factory) -> Path:
    return world_site.config(tmp_path_factory.mktemp("models"), name="tiny.yaml", **TINY)


def _weights(path: Path) -> list[dict[str, torch.Tensor]]:
    return [m.state_dict() for m in load_bundle(path).members]


def test_run_killed_while_training_resumes_to_the_uninterrupted_bundle(config) -> None:
    dep = Deployment(load_settings(config))
    cached = cached_bundle_path(dep)
    assert training_period(dep) == (dt.date(2019, 6, 1), dt.date(2019, 7, 20))
    ckpt = checkpoint_dir(cached) / "member-0.ckpt.safetensors"
    env = {k: v for k, v in os.environ.items() if k != "GSM3_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(config), DAY.isoformat()], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 120  # its days are ingested: it checks them, trains
        while not ckpt.exists():
            assert child.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(0.2)  # land between two checkpoints of member 0
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    saved = load_checkpoint(ckpt)
    assert not saved.complete and 0 < saved.iteration < 64
    assert not (cached / "bundle.json").exists() and training_period(dep) is not None

    result = runner.invoke(app, ["run", "--config", str(config), "--date", DAY.isoformat(),
                                 "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    bundle = load_bundle(cached)
    tr = bundle.spec.training
    # Member 0 went on from the killed run's checkpoint, member 1 started afresh.
    assert tr["member_resumed_at"] == [saved.iteration, 0]
    assert tr["member_iterations"] == [64, 64]
    assert not checkpoint_dir(cached).exists() and training_period(dep) is None

    # The trainer's exact resume: the same weights as a build that was never interrupted.
    straight = train(dep, config.parent / "straight", progress=False)
    assert load_bundle(straight).spec.training["member_resumed_at"] == [0, 0]
    assert load_bundle(straight).bundle_id == bundle.bundle_id
    for got, want in zip(_weights(cached), _weights(straight), strict=True):
        for name, p in got.items():
            assert torch.equal(p, want[name]), name
    assert tr["period"] == ["2019-06-01", "2019-07-20"] and tr["fold"] is None


def test_no_bundle_keeps_the_sources_options_or_credentials(config, monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    dep = Deployment(load_settings(config))
    # What this deployment's options hold: where each source's archive lies on this machine.
    options = [
        v for opts in dep.settings.sources.options.values() for v in opts.values()
        if isinstance(v, str)
    ]  # fmt: skip
    assert dep.settings.sources.options["smap"]["archive"] in options and len(options) >= 8
    cube = dep.open_cube()
    ensure_days(dep, cube, dep.settings.training.start, dep.settings.training.end)
    run_bundle = ensure_bundle(dep, cube, progress=False).path  # run's first-use training
    out = config.parent / "trained"
    trained = runner.invoke(app, ["train", "--config", str(config), "--out", str(out),
                                  "--folds", "2", "--quiet"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    report = config.parent / "temporal"
    evaluated = runner.invoke(app, ["evaluate", "--config", str(config), "--out", str(report),
                                    "--experiment", "temporal", "--against", "truth",
                                    "--min-pairs", "5", "--quiet"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    fold_bundle = report / "folds" / "temporal"

    for secret in SECRETS.values():
        assert secret not in trained.output + evaluated.output, secret
    keys = None
    for path in (run_bundle, out, fold_bundle):
        for file in path.iterdir():
            data = file.read_bytes()
            for secret in (*SECRETS.values(), *options):
                assert secret.encode() not in data, f"{secret} in {file}"
        tr = json.loads((path / "bundle.json").read_text())["training"]
        assert "options" not in tr["config"]["sources"]
        assert keys is None or set(tr) == keys, path  # the same provenance from every caller
        keys = set(tr)
        assert not checkpoint_dir(path).exists()
    assert json.loads((fold_bundle / "bundle.json").read_text())["training"]["fold"] == "temporal"
