"""A data-integration bundle through `gsm3-ops run` on the tests' site: trained on first use,
each day absorbing the SMAP retrievals the cube holds at the latency, recording them, and a
recomputation from a checkpoint absorbing exactly what the original run did."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pytest
import rasterio
import xarray as xr

from gsm3_ops.config import load_settings
from gsm3_ops.cube import Cube
from gsm3_ops.model.bundle import read_spec
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.models import existing_bundle
from gsm3_ops.ops.pipeline import run_day
from gsm3_ops.publish.layers import FLAG_FILL, FLAG_NO_RETRIEVAL, FLAG_RETRIEVAL_LATE
from gsm3_ops.publish.manifest import DayManifest
from tests.world_site import GRIDDED

DAY = dt.date(2020, 3, 1)
ONE = dt.timedelta(days=1)
DI = {"latency_days": 2, "late_days": 1, "max_age_days": 10}


def _site(world_site, tmp):
    """A DI deployment; SMAP is not among the run's sources, so that a test decides which
    retrievals the cube holds (the session's ingest wrote them all)."""
    sources = {"gridded": [g for g in GRIDDED if g != "smap"]}
    cfg = world_site.config(tmp, model={"hidden_size": 16, "di": DI}, sources=sources)
    return Deployment(load_settings(cfg))


def _hide(dep: Deployment, day: dt.date) -> str:
    """Take SMAP of ``day`` out of the cube's manifest (a retrieval not yet arrived); return
    the manifest's text, to put back with :func:`_restore`."""
    path = Cube.open(dep.settings.data_root / "cube.zarr")._manifests.day_path(day)
    text = path.read_text()
    doc = json.loads(text)
    doc["entries"] = {k: v for k, v in doc["entries"].items() if not k.startswith("smap/")}
    path.write_text(json.dumps(doc))
    return text


def _restore(dep: Deployment, day: dt.date, text: str) -> None:
    Cube.open(dep.settings.data_root / "cube.zarr")._manifests.day_path(day).write_text(text)


def _layers(dep: Deployment, day: dt.date) -> dict[str, np.ndarray]:
    ds = xr.open_zarr(dep.settings.publish_root / "gsm3.zarr", consolidated=False,
                      mask_and_scale=False)  # fmt: skip
    return {k: ds[k].sel(time=str(day)).values for k in ("soil_moisture", "quality_flag")}


@pytest.fixture(scope="module")
def di_site(world_site, tmp_path_factory):
    dep = _site(world_site, tmp_path_factory.mktemp("di"))
    run_day(dep, DAY, progress=False)  # trains the DI bundle, cold start
    return dep


def test_the_bundle_records_di_and_the_day_what_it_absorbed(di_site) -> None:
    dep = di_site
    spec, _ = read_spec(existing_bundle(dep).path)
    assert spec.di == {"target": "smap", "latency": [2, 3], "max_age": 10}
    assert spec.n_inputs == len(spec.inputs) + 2
    record = DayManifest.load(dep.settings.publish_root, DAY)
    di = record.di
    assert di["absorbed"] == [(DAY - 3 * ONE).isoformat(), (DAY - 2 * ONE).isoformat()]
    assert di["late"] is False and di["expected"] == (DAY - 2 * ONE).isoformat()
    assert set(di["versions"]) == set(di["absorbed"])
    flag = _layers(dep, DAY)["quality_flag"]
    land = flag != FLAG_FILL
    assert not (flag[land] & FLAG_RETRIEVAL_LATE).any()
    stac = dep.settings.publish_root / "stac"
    item = json.loads(next(stac.rglob("*20200301*.json")).read_text())
    assert item["properties"]["gsm3:di_absorbed"] == di["absorbed"]
    # The open-loop value is its own layer: a COG beside the product, as a STAC asset.
    assert "soil_moisture_open_loop" in item["assets"]
    sm = _layers(dep, DAY)["soil_moisture"]
    with rasterio.open(
        dep.settings.publish_root / record.outputs["cog"]["soil_moisture_open_loop"]
    ) as src:
        ol = src.read(1)
    assert np.isfinite(ol[land]).all() and np.isnan(ol[~land]).all()
    assert not np.array_equal(ol[land], sm[land])  # the retrievals moved the DI value


def test_a_late_retrieval_is_flagged_and_a_recompute_absorbs_what_the_run_did(
    di_site, tmp_path
) -> None:
    dep = di_site
    days = [DAY + k * ONE for k in (1, 2, 3)]
    run_day(dep, days[0], progress=False)
    late = days[2] - 2 * ONE  # what days[2] expects at the 2-day latency
    text = _hide(dep, late)
    run_day(dep, days[1], progress=False)  # absorbs days[1] - 3 and - 2 = late: hidden
    run_day(dep, days[2], progress=False)
    record = DayManifest.load(dep.settings.publish_root, days[2])
    assert record.di["late"] is True and late.isoformat() not in record.di["absorbed"]
    original = _layers(dep, days[2])
    flag = original["quality_flag"]
    land = flag != FLAG_FILL
    assert (flag[land] & FLAG_RETRIEVAL_LATE).all()  # published all the same, flagged
    assert np.isfinite(original["soil_moisture"][land]).all()

    _restore(dep, late, text)  # the retrieval arrives after the day was published
    state = dep.settings.data_root / "state.zarr"
    for d in (days[0], days[1], days[2]):  # keep only the state of DAY: a checkpoint
        shutil.rmtree(state / d.isoformat())
    run_day(dep, days[2], progress=False, force=True)  # replays days[0], days[1] from DAY
    again = _layers(dep, days[2])
    np.testing.assert_array_equal(again["soil_moisture"], original["soil_moisture"])
    np.testing.assert_array_equal(again["quality_flag"], original["quality_flag"])
    assert (
        DayManifest.load(dep.settings.publish_root, days[2]).di["absorbed"]
        == (record.di["absorbed"])
    )

    # The next day absorbs the retrieval that came late (it is within its window).
    run_day(dep, days[2] + ONE, progress=False)
    nxt = DayManifest.load(dep.settings.publish_root, days[2] + ONE).di
    assert late.isoformat() in nxt["absorbed"] and nxt["late"] is False


def test_cells_without_a_retrieval_run_open_loop_and_are_flagged(world_site, tmp_path) -> None:
    """With every retrieval of the last max_age days missing, the day still publishes, each
    land cell flagged as having none."""
    dep = _site(world_site, tmp_path)
    day = DAY
    for k in range(0, DI["max_age_days"] + 4):
        _hide(dep, day - k * ONE)
    run_day(dep, day, progress=False)
    out = _layers(dep, day)
    land = out["quality_flag"] != FLAG_FILL
    assert land.any() and np.isfinite(out["soil_moisture"][land]).all()
    assert (out["quality_flag"][land] & FLAG_NO_RETRIEVAL).all()
    assert (out["quality_flag"][land] & FLAG_RETRIEVAL_LATE).all()
    assert DayManifest.load(dep.settings.publish_root, day).di["absorbed"] == []


def test_gsm3_ops_evaluate_scores_a_di_bundle_with_its_retrievals(di_site, tmp_path) -> None:
    """`gsm3-ops evaluate --model` runs a DI bundle on the retrievals at its latency, and
    its scores are finite correlations."""
    import pandas as pd

    from tests.test_evaluation_experiments import evaluate

    dep = di_site
    bundle = existing_bundle(dep).path
    config = tmp_path / "di.yaml"
    config.write_text(dep.settings.to_yaml())
    out = tmp_path / "eval"
    args = ("--model", str(bundle), "--against", "smap", "--min-pairs", "8",
            "--start", "2019-10-01", "--end", "2019-12-31")  # fmt: skip
    result = evaluate(config, out, *args)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "site_metrics.csv")
    r = scores.loc[scores["model"] == "GSM3", "r"]
    assert len(r) and np.isfinite(r).all() and (r.abs() <= 1).all()
