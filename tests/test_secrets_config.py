"""Credentials written into the configuration (an rclone connection string or flag in
``sources.options.mswep``, a dask cluster's password) never reach a published configuration,
a bundle or a log line; the source still gets the real values."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess

import pytest
import yaml

from gsm3_ops.config import load_settings
from gsm3_ops.errors import ConfigError, SourceError
from gsm3_ops.logs import setup_logging
from gsm3_ops.secrets import load_secret_files, redact
from gsm3_ops.sources.mswep import MswepOptions, MswepSource
from gsm3_ops.training.ensemble import resolved_settings

FAKES = ("FAKE-client-secret-1", "FAKE-access-token-2", "FAKE-refresh-token-3",
         "FAKE-flag-secret-4", "FAKE-flag-token-5", "FAKE-cluster-pw-6")  # fmt: skip
TOKEN = json.dumps({"access_token": FAKES[1], "refresh_token": FAKES[2]})
MSWEP = {
    "remote": f":drive,client_id=public-id,client_secret={FAKES[0]},token='{TOKEN}':MSWEP_V280",
    "rclone_args": ["--drive-client-secret", FAKES[3], f"--drive-token={FAKES[4]}",
                    "--transfers", "4"],
    "product": "NRT",
}  # fmt: skip


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for name in ("GSM3_CONFIG", "GSM3_DATA_ROOT", "GSM3_PUBLISH_ROOT"):
        monkeypatch.delenv(name, raising=False)
    doc = {
        "data_root": str(tmp_path / "data"),
        "sources": {"options": {"mswep": MSWEP}},
        "inference": {"cluster": {"kind": "local", "options": {"password": FAKES[5]}}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_settings(path)


@pytest.fixture(autouse=True)
def _restore_root_logger(restore_root_logger):
    """Every test here sets up logging; the root logger is put back after each."""


def test_written_configuration_and_bundle_mask_credentials(settings) -> None:
    for text in (settings.to_yaml(public=True), settings.to_yaml()):
        assert not [f for f in FAKES if f in text], text
        doc = yaml.safe_load(text)
        mswep = doc["sources"]["options"]["mswep"]
        assert mswep["remote"].startswith(":drive,client_id=public-id,client_secret=***,")
        assert mswep["rclone_args"] == ["--drive-client-secret", "***", "--drive-token=***",
                                        "--transfers", "4"]  # fmt: skip
        assert doc["inference"]["cluster"]["options"] == {"password": "***"}
    running = settings.sources.options["mswep"]  # the running configuration keeps them
    assert {k: running[k] for k in MSWEP} == MSWEP
    bundle = json.dumps(resolved_settings(settings))
    assert not [f for f in FAKES if f in bundle]


@pytest.mark.parametrize("json_lines", [False, True])
def test_logs_mask_configured_credentials(settings, capsys, json_lines) -> None:
    setup_logging(json_lines=json_lines)
    for fake in FAKES:
        logging.getLogger("gsm3_ops.test").warning("a client library echoed %s", fake)
    err = capsys.readouterr().err
    assert not [f for f in FAKES if f in err] and err.count("***") == len(FAKES)


def test_the_rclone_command_carries_them_and_its_log_line_does_not(settings, caplog) -> None:
    calls = []

    def rclone(cmd):
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, "", f"bad token {FAKES[4]}")

    source = MswepSource(MswepOptions(**MSWEP), client=rclone)  # as the fetch path builds it
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as info:
        source.fetch(dt.date(2021, 2, 3), settings.data_root / "w")
    assert FAKES[3] in calls[0] and f"--drive-token={FAKES[4]}" in calls[0]
    shown = caplog.text + str(info.value)
    assert not [f for f in FAKES if f in shown] and "rclone" in caplog.text


def test_credentials_from_files_as_container_secrets_mount_them(tmp_path, monkeypatch) -> None:
    for name in ("CDSAPI_KEY", "EARTHDATA_TOKEN", "RCLONE_CONFIG_GLOH2O_TOKEN"):
        monkeypatch.setenv(name, "placeholder")  # restored after the test, whatever it sets
        monkeypatch.delenv(name)
    (tmp_path / "cds").write_text("4321:fake-cds-file-key\n")
    (tmp_path / "rclone").write_text('{"access_token":"fake-rclone-file-token"}')
    monkeypatch.setenv("CDSAPI_KEY_FILE", str(tmp_path / "cds"))
    monkeypatch.setenv("RCLONE_CONFIG_GLOH2O_TOKEN_FILE", str(tmp_path / "rclone"))
    monkeypatch.setenv("GSM3_FIXTURES_FILE", str(tmp_path / "nope"))  # not a credential: left
    assert load_secret_files() == ["CDSAPI_KEY", "RCLONE_CONFIG_GLOH2O_TOKEN"]
    assert os.environ["CDSAPI_KEY"] == "4321:fake-cds-file-key"
    assert redact("key 4321:fake-cds-file-key rejected") == "key *** rejected"
    monkeypatch.setenv("CDSAPI_KEY_FILE", str(tmp_path / "other"))  # the variable itself wins
    assert load_secret_files() == []
    monkeypatch.setenv("EARTHDATA_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^EARTHDATA_TOKEN_FILE: cannot read .*missing"):
        load_secret_files()


def _echo_credentials() -> None:
    for fake in FAKES:
        logging.getLogger("gsm3_ops.test").warning("a reader in a worker echoed %s", fake)


def test_ingest_worker_processes_mask_the_configured_credentials(settings, capfd) -> None:
    """Long ingests run in spawned worker processes: they log as the parent does, with the
    configuration's credentials masked (the child never saw the parent's masking)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from gsm3_ops.ops.ingest import worker_setup

    setup = ((False, True), settings.model_dump(mode="json"))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=worker_setup, initargs=setup) as pool:  # fmt: skip
        pool.submit(_echo_credentials).result()
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(lines) == len(FAKES) and all("***" in r["message"] for r in lines), err
    assert not [f for f in FAKES if f in err]
