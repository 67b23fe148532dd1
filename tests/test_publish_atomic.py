"""Publishing a whole day: consistency of its files, and atomicity under failures, a killed
publisher and two publishers at once."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from gsm3_ops.config import ProductConfig
from gsm3_ops.errors import PublishError
from gsm3_ops.grid import M09, Window
from gsm3_ops.publish import atomic, stac
from gsm3_ops.publish import day as day_module
from gsm3_ops.publish.atomic import JOURNALS, STAGING
from gsm3_ops.publish.cog import validate_cog
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import FLAG_FILL
from gsm3_ops.publish.manifest import DayManifest, manifest_path
from gsm3_ops.publish.product import time_length

WINDOW = Window(800, 2300, 12, 10)
CFG = ProductConfig(start=dt.date(2020, 1, 1))
CHUNK = 8
D0, D1, D2, D3 = dt.date(2020, 2, 27), dt.date(2020, 3, 1), dt.date(2020, 3, 2), dt.date(2020, 3, 4)
KINDS = {D0: "day before the first", D2: "rewrite", D3: "new day"}


def layers_for(day: dt.date, version: int = 0) -> dict[str, np.ndarray]:
    """Deterministic layers of ``day`` (a corner of sea, as no-data)."""
    rng = np.random.default_rng([day.toordinal(), version])
    sm = rng.uniform(0.05, 0.45, WINDOW.shape).astype(np.float32)
    sm[:2, :3] = np.nan
    flag = np.where(np.isnan(sm), FLAG_FILL, rng.integers(0, 32, WINDOW.shape)).astype(np.uint8)
    return {"soil_moisture": sm, "soil_moisture_sd": sm / 10, "quality_flag": flag}


def manifest_for(root: Path, day: dt.date) -> Path:
    return manifest_path(root, day)


def publish(root: Path, day: dt.date, version: int = 0, cfg: ProductConfig = CFG):
    """Publish ``day`` under ``root`` with its deterministic layers."""
    land = np.ones(WINDOW.shape, bool)
    dp = DayProduct(
        day,
        layers_for(day, version),
        tags={"bundle_id": "bundle-1", "inputs": "synthetic:v1"},
        properties={"gsm3:bundle_id": "bundle-1"},
        land=land,
        extra_files={root / "manifests" / f"gsm3_{day:%Y%m%d}.config.yaml": b"profile: demo\n"},
    )
    record = DayManifest(date=day, status="complete", version=version)
    return publish_day(root, M09, WINDOW, cfg, CHUNK, dp, record)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every published file (the lock file and empty work folders aside)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] not in (STAGING, JOURNALS, atomic.LOCK_NAME):
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[Path]:
    return [*(root / STAGING).glob("*"), *(root / JOURNALS).glob("*")]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A product with two published days."""
    root = tmp_path_factory.mktemp("base")
    publish(root, D1)
    publish(root, D2)
    return root


def _copy(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "pub"
    shutil.copytree(base, root)
    return root


def test_published_day_is_complete_and_its_files_agree(base) -> None:
    root = base
    ds = xr.open_zarr(root / "gsm3.zarr", mask_and_scale=False)  # consolidated
    assert list(ds.indexes["time"].date) == [D1, D2]  # the published days only
    manifest = json.loads(manifest_for(root, D2).read_text())
    assert manifest["status"] == "complete" and manifest["commit"].startswith("2020-03-02-")
    assert all((root / p).is_file() for p in manifest["outputs"]["files"])
    assert str(root) not in manifest_for(root, D2).read_text()  # no internal path published
    assert json.loads((root / "days.json").read_text()) == {"days": [str(D1), str(D2)]}
    latest = json.loads((root / "latest.json").read_text())
    assert latest["day"] == str(D2) and latest["n_days"] == 2 and latest["first_day"] == str(D1)
    assert (root / latest["item"]).is_file() and (root / latest["collection"]).is_file()
    series = xr.open_zarr(root / latest["timeseries"], mask_and_scale=False)
    for name in ds.data_vars:
        xr.testing.assert_equal(series[name].load(), ds[name].load())
    xs, ys = M09.x_centres(WINDOW), M09.y_centres(WINDOW)
    cells = [(2, 5), (7, 1), (11, 9), (0, 0)]  # (0, 0) is no-data
    for name, rel in manifest["outputs"]["cog"].items():
        path = root / rel
        assert validate_cog(path)[0], path
        with rasterio.open(path) as src:
            assert src.tags()["date"] == D2.isoformat() and src.tags()["bundle_id"] == "bundle-1"
            coords = [(xs[c], ys[r]) for r, c in cells]
            for (r, c), pixel in zip(cells, src.sample(coords), strict=True):
                stored = ds[name].sel(time=str(D2), x=xs[c], y=ys[r]).values
                np.testing.assert_array_equal(pixel[0], stored)
    expected = layers_for(D2)
    np.testing.assert_array_equal(ds.soil_moisture.sel(time=str(D2)), expected["soil_moisture"])
    np.testing.assert_array_equal(ds.quality_flag.sel(time=str(D2)), expected["quality_flag"])
    assert (root / manifest["outputs"]["quicklook"]).read_bytes()[:4] == b"\x89PNG"
    assert not leftovers(root)


def _raise(exc: Exception):
    def fail(*args, **kwargs):
        raise exc

    return fail


ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _fail_rename(predicate):
    real = os.rename

    def rename(src, dst):
        if predicate(str(dst)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    return rename


MANIFEST = re.compile(r"/manifests/\d{4}/gsm3_\d{8}\.json$")

# Each step of a day's publication, made to fail: the previous product must stay as it was.
STEPS = {
    "climatology": ("climatology_layers", _raise(ENOSPC)),
    "zarr staging": ("stage_layers", _raise(ENOSPC)),
    "cog": ("write_cog", _raise(ENOSPC)),
    "quick-look": ("render", _raise(MemoryError("plot"))),
    "stac item": ("stac.build_item", _raise(stac.StacInvalidError("bad item"))),
    "zarr plan": ("plan_day", _raise(ENOSPC)),
    "time-series plan": ("plan_copy", _raise(ENOSPC)),
    "rename zarr metadata": ("os.rename", _fail_rename(lambda d: d.endswith(".zmetadata"))),
    "rename latest": ("os.rename", _fail_rename(lambda d: d.endswith("latest.json"))),
    "collection": ("stac.build_collection", _raise(ENOSPC)),
    "rename data": ("os.rename", _fail_rename(lambda d: "/cog/" in d)),
    "rename collection": ("os.rename", _fail_rename(lambda d: d.endswith("collection.json"))),
    "rename manifest": ("os.rename", _fail_rename(MANIFEST.search)),
}  # fmt: skip


NO_QUICKLOOK = CFG.model_copy(update={"quicklook": False})  # the PNG is the slow part


@pytest.mark.parametrize(
    ("step", "day"),
    [  # rewrites of a published day and new days (which grow the time axis), alternately
        pytest.param(step, day, id=f"{step}, {KINDS[day]}")
        for step, day in zip(STEPS, [D2, D3, D0] * len(STEPS), strict=False)
    ],
)
def test_a_failure_at_any_step_leaves_the_previous_product(base, tmp_path, monkeypatch, step,
                                                           day) -> None:  # fmt: skip
    root = _copy(base, tmp_path)
    before = snapshot(root)
    target, replacement = STEPS[step]
    if target == "os.rename":
        monkeypatch.setattr(atomic.os, "rename", replacement)
    elif target.startswith("stac."):
        monkeypatch.setattr(stac, target.split(".")[1], replacement)
    else:
        monkeypatch.setattr(day_module, target, replacement)
    cfg = CFG if step == "quick-look" else NO_QUICKLOOK
    with pytest.raises(PublishError, match=f"publishing {day}"):
        publish(root, day, version=1, cfg=cfg)
    monkeypatch.undo()
    assert snapshot(root) == before
    assert time_length(root / "gsm3.zarr") == 2
    assert not leftovers(root)


def test_after_a_full_disk_the_day_is_published_by_the_next_run(base, tmp_path, monkeypatch):
    root = _copy(base, tmp_path)
    monkeypatch.setattr(day_module, "write_cog", _raise(ENOSPC))
    with pytest.raises(PublishError, match="No space left on device"):
        publish(root, D3, cfg=NO_QUICKLOOK)
    monkeypatch.undo()
    assert not manifest_for(root, D3).exists()
    publish(root, D3, cfg=NO_QUICKLOOK)
    ds = xr.open_zarr(root / "gsm3.zarr")
    np.testing.assert_array_equal(
        ds.soil_moisture.sel(time=str(D3)), layers_for(D3)["soil_moisture"]
    )


def test_a_day_before_the_first_rebases_product_and_copy(base, tmp_path) -> None:
    root = _copy(base, tmp_path)
    published = publish(root, D0, cfg=NO_QUICKLOOK)
    ds = xr.open_zarr(root / "gsm3.zarr")
    assert list(ds.indexes["time"].date) == [D0 + dt.timedelta(d) for d in range(5)]
    for day in (D0, D1, D2):
        np.testing.assert_array_equal(ds.soil_moisture.sel(time=str(day)),
                                      layers_for(day)["soil_moisture"])  # fmt: skip
    assert int(ds.soil_moisture.sel(time="2020-02-28").count()) == 0
    series = xr.open_zarr(root / "gsm3_timeseries.zarr")
    xr.testing.assert_equal(series.soil_moisture.load(), ds.soil_moisture.load())
    assert json.loads((root / "days.json").read_text())["days"] == [str(D0), str(D1), str(D2)]
    # the mirror is told every file of the rebased store, and the keys that went away
    assert "gsm3.zarr/soil_moisture/3/0/0" in published.changed
    assert published.changed[-1].startswith("manifests/")
    assert "gsm3.zarr/soil_moisture/1/0/0" in published.removed  # D2's old key, now a gap day
