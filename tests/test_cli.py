"""The command line: help, and bad input giving one line, exit status 2 and no output."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gsm3_ops.cli import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "train"):
        assert command in result.output


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("GSM3_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("GSM3_PUBLISH_ROOT", str(tmp_path / "pub"))
    monkeypatch.delenv("GSM3_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # the demo profile's relative archive: none here, even after
    return tmp_path  # `make demo` wrote one in the checkout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--date", "2021-13-01"], "--date '2021-13-01' is not a date"),
        (["run", "--date", "yesterday"], "--date 'yesterday' is not a date"),
        # The demo profile reads its archive, which only `gsm3-ops world` writes.
        (["run", "--date", "1990-01-01"], "archive: gsm3-demo/archive/mswep is not a folder"),
        (["run"], "(`gsm3-ops world` writes it; `make demo` does both)"),
        (["run", "--profile", "mars"], "unknown profile 'mars'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(roots, args, message) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert sorted(p.name for p in roots.iterdir()) == []


def test_unknown_key_and_unreadable_file(roots) -> None:
    bad = roots / "bad.yaml"
    bad.write_text("inference: {moed: step}\n")
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2
    assert "unknown config key 'inference.moed'" in result.stderr
    missing = runner.invoke(app, ["run", "--config", str(roots / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read config file" in missing.stderr
    assert sorted(p.name for p in roots.iterdir()) == ["bad.yaml"]
    (roots / "dir.yaml").mkdir()
    unreadable = runner.invoke(app, ["run", "--config", str(roots / "dir.yaml")])
    assert unreadable.exit_code == 2 and "cannot read config file" in unreadable.stderr


def test_global_profile_without_credentials_stops_at_once(roots, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(roots))  # no ~/.cdsapirc, no ~/.netrc
    for name in ("CDSAPI_URL", "CDSAPI_KEY", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["run", "--profile", "global", "--date", "2021-01-01"])
    assert result.exit_code == 2, result.output  # configuration: not retried, no day failed
    lines = result.stderr.strip().splitlines()
    assert "no CDS credentials" in lines[-1] and "CDSAPI_KEY" in lines[-1]


def test_train_writes_a_loadable_bundle(tmp_path, monkeypatch, world_site) -> None:
    from gsm3_ops.model.bundle import load_bundle

    monkeypatch.delenv("GSM3_CONFIG", raising=False)
    config = world_site.config(tmp_path, training={"members": 1, "max_iterations": 2})
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "b"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "b")
    assert len(bundle.members) == 1 and bundle.spec.hidden_size == 16
    assert bundle.spec.training["period"] == ["2019-06-01", "2019-12-31"]
    assert bundle.spec.training["held_out_cells"]["rows"]
