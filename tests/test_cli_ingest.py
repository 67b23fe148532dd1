"""`gsm3-ops ingest --from DIR`: real-format files on disk into the cube, failures listed."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.cube import Cube
from tests.test_era5 import DAY, write_land_daily, write_land_radiation

runner = CliRunner()


def _config(tmp_path: Path) -> Path:
    cfg = {
        "profile": "global",
        "data_root": str(tmp_path / "data"),
        "publish_root": str(tmp_path / "publish"),
        "region": {"lon_min": -0.3, "lat_min": 51.45, "lon_max": 0.4, "lat_max": 51.95},
        "cube": {"start": "2024-01-01", "end": "2024-12-31"},
        "inference": {"tile_size": 8},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_ingest_from_a_folder_then_a_broken_day(tmp_path: Path) -> None:
    folder = tmp_path / "offline"
    folder.mkdir()
    bad_day = DAY + dt.timedelta(days=1)
    write_land_daily(folder / f"era5_land_daily_{DAY:%Y%m%d}.nc", DAY)
    write_land_radiation(folder / f"era5_land_rad_{DAY:%Y%m%d}.grib", DAY)
    (folder / f"era5_land_daily_{bad_day:%Y%m%d}.nc").write_bytes(b"\x89HDF\r\n\x1a\n broken")
    write_land_radiation(folder / f"era5_land_rad_{bad_day:%Y%m%d}.grib", bad_day)
    config = _config(tmp_path)

    args = ["ingest", "--source", "era5_land", "--date", DAY.isoformat(), "--from", str(folder)]
    result = runner.invoke(app, [*args, "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"{DAY} era5_land  complete  ERA5-Land-ERA5T" in result.output

    args[4] = bad_day.isoformat()
    result = runner.invoke(app, [*args, "--config", str(config), "--quiet"])
    assert result.exit_code == 1
    assert f"{bad_day} era5_land  failed" in result.output and "broken" not in result.output
    assert f"era5_land_daily_{bad_day:%Y%m%d}.nc" in result.output

    cube = Cube.open(tmp_path / "data" / "cube.zarr")
    t2m = cube.read("forcing", ["t2m"], DAY, bad_day)["t2m"].values
    assert np.isfinite(t2m[0]).any() and np.isnan(t2m[1]).all()
    doc = json.loads(
        (tmp_path / "data" / "manifests" / "cube" / "2024" / f"{bad_day}.json").read_text()
    )
    assert "forcing/era5_land" in doc["failures"] and not doc["entries"]
    assert sorted(folder.iterdir())  # files given with --from are left in place


def test_unknown_source_and_missing_folder_are_usage_errors(tmp_path: Path) -> None:
    config = _config(tmp_path)
    base = ["ingest", "--date", "2024-03-10", "--config", str(config)]
    result = runner.invoke(app, [*base, "--source", "nope"])
    assert result.exit_code == 2 and "unknown source 'nope'" in result.output
    result = runner.invoke(app, [*base, "--source", "era5", "--from", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no such folder" in result.output


def _region_config(tmp_path: Path, region: dict) -> Path:
    cfg = {
        "profile": "global",
        "data_root": str(tmp_path / "data"),
        "publish_root": str(tmp_path / "publish"),
        "region": region,
        "cube": {"start": "2015-01-01", "end": "2021-12-31"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_uscrn_station_files_inside_the_domain(tmp_path: Path, fixtures: Path) -> None:
    # The south-east US: the Alabama and Georgia stations, not the rest of the 60.
    region = {"lon_min": -89.0, "lat_min": 30.0, "lon_max": -81.0, "lat_max": 35.5}
    config = _region_config(tmp_path, region)
    folder = fixtures / "uscrn_daily01" / "2020"
    args = ["ingest", "--source", "uscrn", "--date", "2020-06-01", "--end", "2020-06-30"]
    result = runner.invoke(app, [*args, "--from", str(folder), "--config", str(config)])
    assert result.exit_code == 0, result.output
    cube = Cube.open(tmp_path / "data" / "cube.zarr")
    da = cube.read_insitu(dt.date(2020, 6, 1), dt.date(2020, 6, 30))
    lon, lat = da["lon"].values, da["lat"].values
    assert da.sizes["site"] >= 2 and f"{da.sizes['site']} sites" in result.output
    assert ((lon > -89) & (lon < -81) & (lat > 30) & (lat < 35.5)).all()
    assert np.nanmax(da.values) < 0.7 and np.isfinite(da.values).mean() > 0.5
    fairhope = da.sel(site="USCRN:63869")  # AL_Fairhope_3_NE, 5 cm column of its daily01 file
    assert region["lat_min"] < float(fairhope["lat"]) < region["lat_max"]


def test_ismn_folder_with_a_malformed_file(tmp_path: Path, fixtures: Path) -> None:
    import shutil

    src = fixtures / "ismn_testdata"
    folder = tmp_path / "ismn"
    good = folder / "FR_Aqui" / "fraye"
    good.mkdir(parents=True)
    for stm in (src / "Data_seperate_files_20170810_20180809" / "FR_Aqui" / "fraye").glob("*"):
        shutil.copy(stm, good / stm.name)
    bad = folder / "FR_Aqui" / "broken"
    bad.mkdir()
    name = "FR-Aqui_FR-Aqui_broken_sm_0.050000_0.050000_ThetaProbe-ML2X_20170101_20170131.stm"
    (bad / name).write_text("FR_Aqui FR_Aqui broken 44.0 -0.7 52 0.05 0.05\n2017/01/01 garbage\n")
    region = {"lon_min": -2.0, "lat_min": 43.5, "lon_max": 1.0, "lat_max": 45.5}
    config = _region_config(tmp_path, region)
    args = ["ingest", "--source", "ismn", "--date", "2017-08-10", "--end", "2018-08-09"]
    result = runner.invoke(app, [*args, "--from", str(folder), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "ismn       complete  1 sites" in result.output
    assert "skipped" in result.output and name in result.output
    cube = Cube.open(tmp_path / "data" / "cube.zarr")
    da = cube.read_insitu(dt.date(2017, 8, 10), dt.date(2018, 8, 9))
    assert list(da["site"].values) == ["ISMN:FR_Aqui:fraye"]
    assert np.isfinite(da.values).sum() > 100


def test_ingest_waits_for_the_run_lock(tmp_path: Path) -> None:
    """An ingest never writes the cube while a run holds the deployment's lock."""
    folder = tmp_path / "offline"
    folder.mkdir()
    write_land_daily(folder / f"era5_land_daily_{DAY:%Y%m%d}.nc", DAY)
    write_land_radiation(folder / f"era5_land_rad_{DAY:%Y%m%d}.grib", DAY)
    config = _config(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from gsm3_ops.ops.lock import run_lock\n"
         "with run_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(3)",
         str(tmp_path / "data")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    args = ["ingest", "--source", "era5_land", "--date", DAY.isoformat(), "--from", str(folder)]
    result = runner.invoke(app, [*args, "--config", str(config), "--quiet"])
    waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert result.exit_code == 0, result.output
    assert waited > 1.5  # it waited for the holder to let go
