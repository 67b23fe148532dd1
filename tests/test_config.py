"""Configuration: profiles, files, environment, errors."""

from __future__ import annotations

import pytest

from gsm3_ops.config import load_settings
from gsm3_ops.errors import ConfigError


def test_demo_profile_is_default_and_keeps_paper_hyperparameters(monkeypatch) -> None:
    monkeypatch.delenv("GSM3_CONFIG", raising=False)
    s = load_settings()
    assert s.profile == "demo" and s.world is not None
    assert s.sources.options["era5"]["archive"] == "gsm3-demo/archive/era5"
    assert (s.model.hidden_size, s.model.dropout) == (256, 0.5)
    assert (s.training.batch_size, s.training.seq_len) == (128, 365)
    assert s.data_root.is_absolute()


def test_global_profile(monkeypatch) -> None:
    s = load_settings(profile="global")
    assert s.region is None and s.training.members == 5


def test_file_then_environment_override(tmp_path, monkeypatch) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("data_root: d\ntraining: {max_iterations: 3}\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(f)
    assert s.training.max_iterations == 3 and s.data_root == tmp_path / "d"
    assert s.training.seq_len == 365  # untouched keys keep the profile's value
    monkeypatch.setenv("GSM3_TRAINING__MAX_ITERATIONS", "9")
    assert load_settings(f).training.max_iterations == 9
    monkeypatch.setenv("GSM3_CONFIG", str(f))
    assert load_settings().training.max_iterations == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus: 1\n", "unknown config key 'bogus'"),
        ("training: {epochz: 3}\n", "unknown config key 'training.epochz'"),
        ("training: {batch_size: -1}\n", "training.batch_size"),
        ("region: {lon_min: 5, lat_min: 0, lon_max: 1, lat_max: 1}\n", "region"),
        ("- a\n- b\n", "must hold a mapping"),
        ("a: [\n", "not valid YAML"),
        ("profile: nope\n", "unknown profile 'nope'"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text: str, message: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(f)


def test_environment_names_keys_and_takes_the_blame(tmp_path, monkeypatch) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("data_root: d\n")
    monkeypatch.setenv("GSM3_SOURCES__OPTIONS__MSWEP__REMOTE", "gdrive:mswep")  # inside a mapping
    assert load_settings(f).sources.options["mswep"]["remote"] == "gdrive:mswep"
    monkeypatch.setenv("GSM3_INFERENCE__SPINUP_DAYS", "-3")
    with pytest.raises(ConfigError, match=r"spinup_days' in environment variable GSM3_INFERENCE"):
        load_settings(f)
    monkeypatch.delenv("GSM3_INFERENCE__SPINUP_DAYS")
    for typo in ("GSM3_INFERENCE__SPINUP", "GSM3_INFERNCE__SPINUP_DAYS", "GSM3_REGION__", "GSM3_"):
        monkeypatch.setenv(typo, "1")
        with pytest.raises(ConfigError, match=f"unknown environment variable {typo}:"):
            load_settings(f)
        monkeypatch.delenv(typo)


def test_unreadable_config(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml")
