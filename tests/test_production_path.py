"""The production path end to end on real-format files: the synthetic world writes a local
archive in the providers' formats, and `gsm3-ops ingest` (the session's ``world_site``),
`train` and `run` publish a day through the real readers, exactly as a site with mirrored
data would.

Tolerances, derived from how the files are made and read back, at the window's land cells
(the world has no fields at sea):

- **Lat/lon products** (ERA5 0.25 deg, ERA5-Land, IMERG and MSWEP 0.1 deg). The world writes
  each provider pixel as the mean of the 9 km cells in it (the window's edge cells fill the
  margin; a pixel over sea, of its land cells), and the readers regrid by bilinear
  interpolation or area mean: a convex combination of pixels whose footprints lie within 1.5
  pixels of the cell. So a cell's ingested value lies within the range of the world's field
  over the land cells within ``ceil(1.5 * pixel / cell) + 1`` cells of it (6 for ERA5, 3
  for 0.1 deg), plus float32 rounding of the unit conversions (1e-4 relative).
- **MODIS** pixels take the value of the 9 km cell holding their centre and the reader
  averages the pixels of a cell: the world's value back, within half the product's integer
  step (0.01 K for LST, 0.0005 for albedo) plus two float32 ulps (6e-5 K at 311 K).
- **SMAP** granules hold the world's float32 values on the 9 km grid itself: exact.
- **The published day** is the model's step after a cold start over ``spinup_days``, which
  is the window-mode pass over the same days (``docs/inference.md``): recomputed from the
  cube's inputs it agrees to float32 round-off (1e-5 m3/m3).
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import ndimage
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.config import load_settings
from gsm3_ops.evaluation.predict import predict_series, read_inputs
from gsm3_ops.model.bundle import load_bundle
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.training.dataset import CellSet
from tests.world_site import END, GRIDDED, START

SPINUP = 60
# Cells within which a lat/lon product's regridded value must lie (see the docstring).
NEIGHBOURS = {"era5": 0.25, "era5_land": 0.1, "imerg": 0.1, "mswep": 0.1}
CELL_DEG = 9.008 / 111.2
QUANTUM = {"lst_day": 0.01, "lst_night": 0.01, "albedo_bsa": 0.0005, "albedo_wsa": 0.0005}
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"gsm3-ops {' '.join(args)}: {result.output}"
    return result.output


@pytest.fixture(scope="module")
def published(world_site, tmp_path_factory) -> tuple[Deployment, dict, str]:
    """The session's archive ingested by `gsm3-ops ingest` (conftest), then `train` and
    `run` (no date: the archive's latest day) on a copy of that data root."""
    printed = world_site.printed
    assert printed["gridded"].count(" complete ") == len(GRIDDED) * ((END - START).days + 1)
    assert "ismn       complete  3 sites" in printed["ismn"], printed["ismn"]
    assert "static                complete" in printed["static"], printed["static"]
    tmp = tmp_path_factory.mktemp("production")
    product = {"start": "2020-02-01", "web_mercator": False, "quicklook": False,
               "timeseries_copy": False}  # fmt: skip
    config = world_site.config(tmp, model={"bundle": str(tmp / "bundle")}, product=product)
    _cli("train", "--config", str(config), "--quiet", "--out", str(tmp / "bundle"))
    out = _cli("run", "--config", str(config), "--quiet")
    dep = Deployment(load_settings(config))
    manifest = json.loads(next((tmp / "pub" / "manifests").rglob("gsm3_*.json")).read_text())
    return dep, manifest, out


def test_the_latest_archive_day_is_published_complete(published) -> None:
    dep, manifest, out = published
    assert dep.source.seed == 42  # the world behind the archive, for its hidden truth only
    assert manifest["date"] == END.isoformat() and manifest["status"] == "complete"
    assert f"day:      {END}" in out
    versions = manifest["input_versions"]
    assert versions["forcing/era5"] == "ERA5" and versions["forcing/mswep"].startswith("MSWEP")
    assert versions["forcing/imerg"].startswith("GPM_3IMERGD")  # Late near the end, as real
    assert versions["forcing/modis"] == "MYD11A1.061+MCD43A3.061"


def test_ingested_inputs_equal_the_worlds_fields_within_the_regridding(published) -> None:
    dep, _, _ = published
    cube = dep.open_cube()
    first = END - dt.timedelta(days=9)
    world = SyntheticSource(seed=42).forcing(dep.grid, dep.domain, first, END)
    got = cube.read("forcing", list(world.data_vars), first, END)
    land = dep.land  # the world has no fields at sea
    for name in world.data_vars:
        field = world[name].values.astype(np.float64)
        truth, back = field[:, land], got[name].values.astype(np.float64)[:, land]
        np.testing.assert_array_equal(np.isnan(back), np.isnan(truth), err_msg=str(name))
        source = _source_of(str(name))
        if source in NEIGHBOURS:
            r = math.ceil(1.5 * NEIGHBOURS[source] / CELL_DEG) + 1
            size = (1, 2 * r + 1, 2 * r + 1)
            gap = np.isnan(field)
            lo = ndimage.minimum_filter(np.where(gap, np.inf, field), size=size, mode="nearest")
            hi = ndimage.maximum_filter(np.where(gap, -np.inf, field), size=size, mode="nearest")
            eps = 1e-4 * np.nanmax(np.abs(field)) + 1e-6
            assert (back >= lo[:, land] - eps).all() and (back <= hi[:, land] + eps).all(), name
        else:
            step = QUANTUM[str(name)]  # cloud: NaN in both
            ulp = float(np.spacing(np.float32(np.nanmax(np.abs(truth)))))  # float32 rounding
            assert np.nanmax(np.abs(back - truth)) <= step + 2 * ulp, name
    smap_world = SyntheticSource(seed=42).smap(dep.grid, dep.domain, first, END).values
    smap_back = cube.read("smap", ["smap"], first, END)["smap"].values
    np.testing.assert_array_equal(smap_back[:, land], smap_world[:, land])


def test_the_published_day_is_the_window_pass_over_the_cubes_inputs(published) -> None:
    dep, manifest, _ = published
    bundle = load_bundle(dep.settings.model.bundle)
    rows, cols = dep.land_cells
    cells = CellSet(rows, cols, dep.domain.row0, dep.domain.col0)
    first = END - dt.timedelta(days=SPINUP - 1)
    inputs = read_inputs(dep.open_cube(), bundle.spec.forcings, bundle.spec.statics, first, END,
                         cells)  # fmt: skip
    series = predict_series(bundle, inputs, bundle.spec.product_target, torch.device("cpu"))
    product = xr.open_zarr(dep.settings.publish_root / "gsm3.zarr", consolidated=False)
    sm = product.soil_moisture.sel(time=str(END)).values
    np.testing.assert_allclose(sm[rows, cols], series[-1], atol=1e-5)
    assert manifest["bundle_id"] == bundle.bundle_id


def _source_of(name: str) -> str:
    from gsm3_ops.variables import get

    return get(name).source
