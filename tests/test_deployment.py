"""A deployment on the real sources: which day it serves, and which bundle it serves it with."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gsm3_ops.config import load_settings
from gsm3_ops.model.bundle import BundleSpec, save_bundle
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.models import ensure_bundle

ROOT = Path(__file__).resolve().parents[1]
TODAY = dt.date(2026, 11, 24)


@pytest.fixture
def dep(tmp_path: Path) -> Deployment:
    settings = load_settings(ROOT / "deploy" / "config" / "global.yaml")
    settings.data_root, settings.publish_root = tmp_path / "data", tmp_path / "pub"
    return Deployment(settings)


def test_latest_day_waits_for_the_slowest_required_source(dep: Deployment) -> None:
    latest = {s.name: s.latest_date(TODAY) for s in dep.required_sources()}
    assert "smap" not in latest  # a training target, never needed to publish a day
    assert latest["era5"] == TODAY - dt.timedelta(days=5)  # ERA5T
    assert dep.latest_day(TODAY) == min(latest.values()) == TODAY - dt.timedelta(days=5)
    assert dep.latest_day(TODAY, provisional=True) == max(latest.values()) > TODAY - dt.timedelta(5)


def test_a_day_beyond_the_slowest_source_needs_provisional(dep: Deployment) -> None:
    fast = dep.latest_day(TODAY, provisional=True)
    dep.check_day(dep.latest_day(TODAY), TODAY)
    with pytest.raises(RunError, match=rf"can serve .*\.\.{dep.latest_day(TODAY)}, not {fast}"):
        dep.check_day(fast, TODAY)
    dep.check_day(fast, TODAY, provisional=True)
    with pytest.raises(RunError, match="not 2027-01-01"):
        dep.check_day(dt.date(2027, 1, 1), TODAY, provisional=True)


def test_the_configured_bundle_is_served_and_never_retrained(dep: Deployment, tmp_path) -> None:
    where = tmp_path / "models" / "gsm3-v1"
    dep.settings.model.bundle = where
    with pytest.raises(RunError, match=r"gsm3-v1 holds no bundle\.json: train one with"):
        ensure_bundle(dep, cube=None)  # a real deployment never trains behind the user's back
    spec = BundleSpec(
        forcings=["t2m"], statics=["sand"], targets=["smap", "insitu"], hidden_size=4,
        dropout=0.5, grid="M09", product_target="insitu",
        stats={"insitu": {"mean": 0.25, "std": 0.1}, "smap": {"mean": 0.2, "std": 0.1}},
    )  # fmt: skip
    save_bundle(where, spec, [spec.new_network()])
    bundle = ensure_bundle(dep, cube=None)
    assert bundle.path == where and len(bundle.members) == 1


def _settings(tmp_path: Path, **changes) -> Deployment:
    """The global deployment with ``changes`` to its sources/model settings (YAML-level)."""
    import yaml

    doc = yaml.safe_load((ROOT / "deploy" / "config" / "global.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        doc.setdefault(section, {})[name] = value
    doc["data_root"], doc["publish_root"] = str(tmp_path / "data"), str(tmp_path / "pub")
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Deployment(load_settings(path))


def test_without_a_mswep_licence_the_open_feature_set_is_the_default(tmp_path: Path) -> None:
    dep = _settings(tmp_path, sources__gridded=["era5", "era5_land", "imerg", "modis", "smap"])
    assert dep.settings.model.feature_set == "gsm3_open"
    assert "precip_mswep" not in dep.model_forcings and "precip_imerg" in dep.model_forcings
    assert dep.input_source_names() == ("imerg", "era5", "era5_land", "modis")
    assert "forcing/mswep" not in dep.required_inputs()
    assert {s.name for s in dep.required_sources()} == {"imerg", "era5", "era5_land", "modis"}
    # With MSWEP listed, the paper's feature set and MSWEP among the required sources.
    full = _settings(tmp_path / "full")
    assert full.settings.model.feature_set == "gsm3"
    assert "mswep" in full.input_source_names()


def test_a_model_needing_an_unconfigured_source_is_one_clear_error(tmp_path: Path) -> None:
    dep = _settings(
        tmp_path,
        sources__gridded=["era5", "era5_land", "imerg", "modis"],
        model__feature_set="gsm3",
    )
    with pytest.raises(
        RunError, match=r"forcings from mswep, which sources\.gridded does not list"
    ):
        dep.required_sources()


def test_run_requires_exactly_the_sources_the_configured_bundle_reads(tmp_path: Path) -> None:
    where = tmp_path / "models" / "era5-only"
    spec = BundleSpec(
        forcings=["precip_era5", "t2m"], statics=["sand"], targets=["smap", "insitu"],
        hidden_size=4, dropout=0.5, grid="M09", product_target="insitu",
        stats={"insitu": {"mean": 0.25, "std": 0.1}, "smap": {"mean": 0.2, "std": 0.1}},
    )  # fmt: skip
    save_bundle(where, spec, [spec.new_network()])
    dep = _settings(tmp_path, model__bundle=str(where))  # MSWEP, IMERG, MODIS configured too
    assert dep.input_source_names() == ("era5", "era5_land")
    assert dep.required_inputs() == ("forcing/era5", "forcing/era5_land")


def test_a_real_deployment_has_no_hidden_truth(dep: Deployment) -> None:
    with pytest.raises(RunError, match="reads real data, which has no hidden truth"):
        dep.source  # noqa: B018
