"""The synthetic world's statics written as the default providers' files (NDVI as MOD13A3
monthly tiles), ingested through the real readers (``gsm3-ops ingest --source static`` with
an archive), give back the world's values within what the providers' pixels allow."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio

from gsm3_ops.cube import Cube
from gsm3_ops.grid import M09
from gsm3_ops.ops.ingest_other import ingest_static
from gsm3_ops.sources.static_providers import SOILGRIDS
from gsm3_ops.sources.synthetic import LONG_TERM_MEANS, SyntheticSource
from gsm3_ops.world.mod13a3 import write_month
from gsm3_ops.world.static import WORLDCOVER_OF_IGBP, write_static

# Mt Kenya's western slopes: 10 x 8 cells inside one DEM tile (1 S..0, 36 E..37 E).
WINDOW = M09.window_from_bbox(36.55, -0.95, 37.2, -0.35)


@pytest.fixture(scope="module")
def world_static():
    """The world's statics on WINDOW. Its long-term means simulate five years (~8 s) and are
    not what this writer writes, so they are left at zero here."""
    src = SyntheticSource(42)
    mp = pytest.MonkeyPatch()
    mp.setattr(SyntheticSource, "_long_term_means", lambda self, w: _zeros(w.land.shape))
    try:
        return src.static(M09, WINDOW)
    finally:
        mp.undo()


def _zeros(shape):
    return {n: np.zeros(shape) for n in LONG_TERM_MEANS}


def _neighbour_range(v: np.ndarray) -> np.ndarray:
    """Per cell, the largest |difference| to its 8 neighbours (edge cells: those present)."""
    p = np.pad(v, 1, constant_values=np.nan)
    diffs = [
        np.abs(p[1 + a : p.shape[0] - 1 + a, 1 + b : p.shape[1] - 1 + b] - v)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
    ]
    return np.nanmax(diffs, axis=0)


def test_world_statics_round_trip_through_the_provider_files(tmp_path: Path, world_static):
    files = write_static(world_static, M09, WINDOW, tmp_path / "archive")
    for month in (date(2019, 12, 1), date(2020, 1, 1), date(2020, 2, 1)):
        files += write_month(tmp_path / "archive", world_static["ndvi"].values, month, M09,
                             WINDOW, seed=42)  # fmt: skip
    names = sorted(p.name for p in files)
    assert "Copernicus_DSM_COG_30_S01_00_E036_00_DEM.tif" in names
    assert "ESA_WorldCover_10m_2021_v200_S03E036_Map.tif" in names
    assert {"sand_0-5cm_mean.vrt", "bdod_0-5cm_mean.vrt"} <= set(names)
    assert "MOD13A3.A2020001.h21v09.061.2020041031415.hdf" in names
    with rasterio.open(tmp_path / "archive/copernicus-dem-90m" / names[0]) as dem:
        assert (dem.width, dem.height, dem.dtypes[0]) == (1200, 1200, "float32")
        assert dem.transform.c == pytest.approx(36 - 0.5 / 1200)  # pixel centres on degrees

    cube = Cube.create(tmp_path / "cube.zarr", M09, WINDOW, date(2020, 1, 1), date(2020, 1, 31), 8)
    options = {
        "archive": tmp_path / "archive",
        "long_term_start": date(2020, 1, 1),
        "long_term_end": date(2020, 1, 31),
    }
    version = ingest_static(cube, options, M09, WINDOW, raw_dir=tmp_path / "raw")
    assert "dem=copernicus-glo90" in version and "land_cover=esa-worldcover" in version
    assert "ndvi=MOD13A3.061-mean-2020-01..2020-01" in version
    got = cube.read_static()
    land = np.isfinite(world_static["elevation"].values)
    assert land.sum() == WINDOW.n_rows * WINDOW.n_cols

    # A provider pixel takes the value of the 9 km cell its centre lies in, so a cell's area
    # mean is off only by the pixels along its edge that belong to a neighbour: at most a
    # fraction 4 * diagonal / cell of its area, times the largest neighbour difference. Plus
    # the provider's rounding: g/kg (0.05 %), cg/cm3 (0.005), float32 metres. MOD13A3 pixels
    # are binned into cells by the geometry the writer used, so NDVI is off by its rounding
    # alone (x 10000, half a step, float32).
    def close(name: str, pixel_m: float, rounding: float) -> None:
        world = world_static[name].values.astype(float)
        bound = 4 * pixel_m * np.sqrt(2) / M09.cell_size * _neighbour_range(world) + rounding
        err = np.abs(got[name].values - world)
        assert (err[land] <= bound[land]).all(), f"{name}: {err[land].max()}"

    close("elevation", 93.0, 0.01)  # 3 arc-seconds ~ 93 m at the equator
    for name in ("sand", "clay", "silt"):
        close(name, 250.0, 0.05)
    close("bulk_density", 250.0, 0.005)
    close("ndvi", 0.0, 5e-5 + 1e-6)
    # Land cover is the majority class: every cell gets its own class, in WorldCover codes.
    want = np.vectorize(WORLDCOVER_OF_IGBP.get)(world_static["land_cover"].values.astype(int))
    np.testing.assert_array_equal(got["land_cover"].values[land], want[land])

    # Terrain is recomputed from the DEM, which steps between cells (every pixel holds its
    # cell's elevation): slope, aspect and curvature come only from the steps at cell edges,
    # diluted by the flat interior; roughness is the range over the cell and its edge
    # pixels. They follow the world's analytic terrain but are not equal to it (measured on
    # this window: correlations 0.55, 0.80, 0.68, 0.55).
    for name, r_min in (("slope", 0.4), ("aspect_cos", 0.6), ("plan_curvature", 0.5),
                        ("roughness", 0.4)):  # fmt: skip
        a, b = got[name].values[land], world_static[name].values[land]
        assert np.isfinite(a).all()
        assert np.corrcoef(a, b)[0, 1] > r_min, name
    north_facing = world_static["aspect_cos"].values[land] > 0.5
    assert (got["aspect_cos"].values[land][north_facing] > 0).mean() > 0.8
    assert set(SOILGRIDS) <= set(got.data_vars)
