"""A new version of the synthetic world (the demo's source) rewrites what the old one wrote
into the cube, days and statics alike, and keys a new model; nothing else is redone."""

from __future__ import annotations

import datetime as dt

from gsm3_ops.config import load_settings
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.ingest import ensure_days
from gsm3_ops.ops.models import bundle_key
from gsm3_ops.sources import synthetic
from tests.test_pipeline import DAY, _config


def _versions(doc: dict) -> set[str]:
    return {e["version"] for e in doc["entries"].values()}


def test_a_new_world_version_rewrites_the_cube_and_keys_a_new_model(tmp_path, monkeypatch):
    dep = Deployment(load_settings(_config(tmp_path)))
    cube = dep.open_cube()
    days = (DAY, DAY + dt.timedelta(days=1))
    monkeypatch.setattr(synthetic, "VERSION", "synthetic-v0")
    old_key = bundle_key(dep)
    assert ensure_days(dep, cube, *days) == 2
    assert _versions(cube.manifest(DAY)) == {"synthetic-v0-seed42"}
    assert _versions(cube.static_manifest()) == {"synthetic-v0-seed42"}
    assert ensure_days(dep, cube, *days) == 0  # same version: nothing to do

    monkeypatch.undo()  # the current world
    new = dep.source.version(DAY)
    assert new != "synthetic-v0-seed42" and bundle_key(dep) != old_key
    assert ensure_days(dep, cube, DAY, DAY) == 1  # only the day asked for is rewritten
    assert _versions(cube.manifest(DAY)) == {new}
    assert _versions(cube.static_manifest()) == {new}
    assert _versions(cube.manifest(days[1])) == {"synthetic-v0-seed42"}
    assert ensure_days(dep, cube, *days) == 1
    assert _versions(cube.manifest(days[1])) == {new}
    assert ensure_days(dep, cube, *days) == 0
