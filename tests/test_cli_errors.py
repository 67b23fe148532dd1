"""Every command, given a bad configuration, a bad date, a missing file or a failing source,
prints one line naming the problem and exits 1 or 2: never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.errors import SourceError
from gsm3_ops.sources.synthetic import SyntheticSource
from tests.test_pipeline import TINY

runner = CliRunner()
COMMANDS = ("run", "backfill", "schedule", "train", "ingest", "evaluate", "status")


def _args(command: str, tmp: Path) -> list[str]:
    """The command's other required options, valid."""
    return {
        "run": ["run", "--date", "2020-03-01"],
        "backfill": ["backfill", "--start", "2020-03-01", "--end", "2020-03-02"],
        "schedule": ["schedule"],
        "train": ["train", "--out", str(tmp / "bundle")],
        "ingest": ["ingest", "--source", "era5", "--date", "2020-03-01"],
        "evaluate": ["evaluate", "--out", str(tmp / "report"), "--experiment", "temporal"],
        "status": ["status", "--start", "2020-03-01", "--end", "2020-03-02"],
    }[command]


@pytest.fixture
def tmp(tmp_path, monkeypatch) -> Path:
    for name in ("GSM3_CONFIG", "GSM3_DATA_ROOT", "GSM3_PUBLISH_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _config(tmp: Path, **changes: dict) -> Path:
    doc = {**TINY, "data_root": str(tmp / "data"), "publish_root": str(tmp / "pub")}
    for key, value in changes.items():
        doc[key] = {**doc.get(key, {}), **value}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _one_line(result, code: int, *phrases: str) -> None:
    """Exit ``code``, exactly one line on stderr naming the problem, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("gsm3-ops: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_configuration(tmp, command) -> None:
    bad = tmp / "bad.yaml"
    bad.write_text("inference: {moed: step}\n")
    result = runner.invoke(app, [*_args(command, tmp), "--config", str(bad)])
    _one_line(result, 2, "unknown config key 'inference.moed'")


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_configuration_file(tmp, command) -> None:
    result = runner.invoke(app, [*_args(command, tmp), "--config", str(tmp / "nope.yaml")])
    _one_line(result, 2, "cannot read config file", "nope.yaml")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["run", "--date", "2020-02-30"], "--date"),
        (["backfill", "--start", "2020-03-01", "--end", "soon"], "--end"),
        (["backfill", "--start", "March", "--end", "2020-03-02"], "--start"),
        (["ingest", "--source", "era5", "--date", "2020-03-01", "--end", "x"], "--end"),
        (["evaluate", "--out", "r", "--model", "m", "--start", "March 1"], "--start"),
        (["status", "--end", "garbage"], "--end"),
        (["status", "--start", "garbage"], "--start"),
    ],
)
def test_bad_date_names_its_flag(tmp, args, flag) -> None:
    result = runner.invoke(app, [*args, "--config", str(_config(tmp))])
    _one_line(result, 2, flag, "is not a date")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["run", "--date", "2019-01-01"], "not 2019-01-01"),  # before the product starts
        (["backfill", "--start", "2020-03-02", "--end", "2020-03-01"], "is before --start"),
        (["ingest", "--source", "era5", "--date", "2020-03-02", "--end", "2020-03-01"],
         "is before --date"),
        (["train", "--out", "b", "--members", "2", "--folds", "2"], "not both"),
        (["evaluate", "--out", "r", "--experiment", "astrology"], "unknown experiment"),
    ],
)  # fmt: skip
def test_a_date_or_option_the_deployment_cannot_serve(tmp, args, phrase) -> None:
    result = runner.invoke(app, [*args, "--config", str(_config(tmp))])
    _one_line(result, 2, phrase)


def test_missing_files(tmp) -> None:
    config = str(_config(tmp))
    nowhere = str(tmp / "nowhere")
    ingest = runner.invoke(app, ["ingest", "--source", "era5", "--date", "2020-03-01",
                                 "--from", nowhere, "--config", config])  # fmt: skip
    _one_line(ingest, 2, "--from", "no such folder")
    evaluate = runner.invoke(app, ["evaluate", "--out", str(tmp / "r"), "--model", nowhere,
                                   "--config", config])  # fmt: skip
    _one_line(evaluate, 2, "nowhere")
    bundle = _config(tmp, model={"bundle": nowhere})
    run = runner.invoke(app, ["run", "--date", "2020-03-01", "--config", str(bundle)])
    _one_line(run, 2, "holds no bundle.json", "gsm3-ops train")


@pytest.fixture
def source_down(monkeypatch):
    def down(*args, **kwargs):
        raise SourceError("synthetic world unreachable: connection refused")

    monkeypatch.setattr(SyntheticSource, "static", down)
    monkeypatch.setattr(SyntheticSource, "forcing", down)


@pytest.mark.parametrize("command", ["run", "backfill", "train", "evaluate"])
def test_failing_source(tmp, source_down, command) -> None:
    result = runner.invoke(app, [*_args(command, tmp), "--config", str(_config(tmp)), "--quiet"])
    _one_line(result, 1, "synthetic world unreachable")


def test_failing_source_on_ingest_is_a_failed_line(tmp, monkeypatch) -> None:
    from gsm3_ops.sources.era5 import Era5Source

    def down(self, day, workdir):
        raise SourceError("CDS unreachable: connection refused")

    monkeypatch.setattr(Era5Source, "fetch", down)
    fetching = {"era5": {"archive": None}}  # not the demo's archive: fetch (from a dead CDS)
    config = _config(tmp, sources={"kind": "real", "fetch_attempts": 1, "options": fetching})
    result = runner.invoke(app, ["ingest", "--source", "era5", "--date", "2020-03-01",
                                 "--config", str(config), "--quiet"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "2020-03-01 era5       failed    SourceError: CDS unreachable" in result.stdout
    assert "Traceback" not in result.output


def test_training_that_cannot_run_is_one_line_from_run(tmp) -> None:
    """First-use training asked for a GPU this machine does not have."""
    config = _config(tmp, training={"device": "cuda"})
    result = runner.invoke(app, ["run", "--date", "2020-03-01", "--config", str(config),
                                 "--quiet"])  # fmt: skip
    _one_line(result, result.exit_code, "CUDA")
    assert result.exit_code in (1, 2)


def test_schedule_with_a_bad_cron_line(tmp) -> None:
    config = _config(tmp, schedule={"cron": "every day at noon"})
    result = runner.invoke(app, ["schedule", "--config", str(config)])
    _one_line(result, 2, "schedule.cron")
