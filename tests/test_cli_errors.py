"""Every command, given a bad configuration, a bad date, a missing file or a failing source,
prints one line naming the problem and exits 1 or 2: never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.errors import SourceError
from gsm3_ops.sources.static_providers import ProviderFiles, StaticFetchError
from tests.world_site import sources

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


@pytest.fixture
def site(world_site):
    """The tests' site (``tests/world_site.py``): its archive, and its ingested cube."""
    return world_site


def _config(site, tmp: Path, ingested: bool = False, **changes: dict) -> Path:
    """A configuration of ``site`` in ``tmp``: an empty cube, or (``ingested``) a copy of the
    ingested one; ``changes`` update its sections."""
    return site.config(tmp, ingested=ingested, **changes)


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


@pytest.mark.parametrize(
    ("variable", "value", "phrases"),
    [
        ("GSM3_TRAINNG__EPOCHS", "3", ("unknown environment variable GSM3_TRAINNG__EPOCHS",)),
        ("GSM3_BOGUS", "1", ("unknown environment variable GSM3_BOGUS",)),
        ("GSM3_TRAINING__EPOCHS", "many",
         ("'training.epochs'", "in environment variable GSM3_TRAINING__EPOCHS")),
        ("GSM3_DATA_ROOT", "<a file>",
         ("environment variable GSM3_DATA_ROOT", "a-file exists and is not a folder")),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["status", "ingest", "run"])
def test_bad_environment_variable_is_named(tmp, monkeypatch, variable, value, phrases,
                                           command) -> None:  # fmt: skip
    if value == "<a file>":
        value = str(tmp / "a-file")
        Path(value).write_text("not a folder")
    monkeypatch.setenv(variable, value)
    _one_line(runner.invoke(app, _args(command, tmp)), 2, *phrases)


def test_unreadable_secret_file_is_named(tmp, monkeypatch) -> None:
    monkeypatch.setenv("EARTHDATA_PASSWORD_FILE", str(tmp / "no-such-secret"))
    result = runner.invoke(app, _args("status", tmp))
    _one_line(result, 2, "EARTHDATA_PASSWORD_FILE: cannot read", "no-such-secret")


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
def test_bad_date_names_its_flag(site, tmp, args, flag) -> None:
    result = runner.invoke(app, [*args, "--config", str(_config(site, tmp))])
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
def test_a_date_or_option_the_deployment_cannot_serve(site, tmp, args, phrase) -> None:
    result = runner.invoke(app, [*args, "--config", str(_config(site, tmp))])
    _one_line(result, 2, phrase)


def test_missing_files(site, tmp) -> None:
    config = str(_config(site, tmp))
    nowhere = str(tmp / "nowhere")
    ingest = runner.invoke(app, ["ingest", "--source", "era5", "--date", "2020-03-01",
                                 "--from", nowhere, "--config", config])  # fmt: skip
    _one_line(ingest, 2, "--from", "no such folder")
    evaluate = runner.invoke(app, ["evaluate", "--out", str(tmp / "r"), "--model", nowhere,
                                   "--config", config])  # fmt: skip
    _one_line(evaluate, 2, "nowhere")
    bundle = _config(site, tmp, model={"bundle": nowhere})
    run = runner.invoke(app, ["run", "--date", "2020-03-01", "--config", str(bundle)])
    _one_line(run, 2, "holds no bundle.json", "gsm3-ops train")


@pytest.fixture(scope="module")
def without_statics(world_site, tmp_path_factory) -> Path:
    """A configuration whose cube, a copy of the site's, holds every day but no statics: they
    were never derived (the static providers were down on first use). The commands of
    ``test_failing_source`` fail before writing to it, so they share it."""
    tmp = tmp_path_factory.mktemp("without_statics")
    # The temporal experiment scores a test period the site's archive holds.
    test = {"test_start": "2020-01-01", "test_end": "2020-03-10"}
    config = world_site.config(tmp, training=test)
    data = tmp / "data"
    for array in (data / "cube.zarr" / "static").iterdir():
        if array.is_dir() and array.name not in ("x", "y"):
            shutil.rmtree(array)
    (data / "manifests" / "cube" / "static.json").unlink()
    return config


@pytest.fixture
def source_down(monkeypatch):
    """The static providers' mirror refuses connections."""

    def down(self, wanted):
        raise StaticFetchError(f"static providers unreachable: {wanted.key}: connection refused")

    monkeypatch.setattr(ProviderFiles, "get", down)


@pytest.mark.parametrize("command", ["run", "backfill", "train", "evaluate"])
def test_failing_source(tmp, without_statics, source_down, command) -> None:
    result = runner.invoke(app, [*_args(command, tmp), "--config", str(without_statics),
                                 "--quiet"])  # fmt: skip
    _one_line(result, 1, "static providers unreachable", "connection refused")


def test_failing_source_on_ingest_is_a_failed_line(site, tmp, monkeypatch) -> None:
    from gsm3_ops.sources.era5 import Era5Source

    def down(self, day, workdir):
        raise SourceError("CDS unreachable: connection refused")

    monkeypatch.setattr(Era5Source, "fetch", down)
    # ERA5 not from the site's archive: fetched (from a dead CDS).
    fetching = {**sources(site.archive)["options"], "era5": {"archive": None}}
    config = _config(site, tmp, sources={"fetch_attempts": 1, "options": fetching})
    result = runner.invoke(app, ["ingest", "--source", "era5", "--date", "2020-03-01",
                                 "--config", str(config), "--quiet"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "2020-03-01 era5       failed    SourceError: CDS unreachable" in result.stdout
    assert "Traceback" not in result.output


def test_training_that_cannot_run_is_one_line_from_run(site, tmp) -> None:
    """First-use training asked for a GPU this machine does not have."""
    # No in-situ source: its ingest (before training) warns of the site's deeper ISMN sensor.
    config = _config(site, tmp, ingested=True, training={"device": "cuda"},
                     sources={"insitu": []})  # fmt: skip
    result = runner.invoke(app, ["run", "--date", "2020-03-01", "--config", str(config),
                                 "--quiet"])  # fmt: skip
    _one_line(result, result.exit_code, "CUDA")
    assert result.exit_code in (1, 2)


def test_schedule_with_a_bad_cron_line(site, tmp) -> None:
    config = _config(site, tmp, schedule={"cron": "every day at noon"})
    result = runner.invoke(app, ["schedule", "--config", str(config)])
    _one_line(result, 2, "schedule.cron")
