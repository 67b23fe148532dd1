"""The world's in-situ sites as an ISMN download, read back through the production ingest.

World sites and daily values -> ``write_ismn`` (header+values ``.stm`` files) -> ``IsmnSource``
with ``archive=`` -> ``ingest_insitu`` (what ``gsm3-ops ingest --source ismn`` runs) -> cube.
Values are printed with 4 decimals, so a day comes back within 5e-5 m3 m-3 of the world's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.cube import Cube
from gsm3_ops.grid import M09
from gsm3_ops.ops.ingest_other import ingest_insitu
from gsm3_ops.sources.insitu import default_regions
from gsm3_ops.sources.ismn import IsmnSource, Options
from gsm3_ops.sources.ismn_files import read_file
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.world.ismn import station_name, write_ismn

START, END = dt.date(2020, 1, 1), dt.date(2020, 2, 9)  # 40 days
BOX = (36.0, -2.0, 38.5, 0.5)  # lon_min, lat_min, lon_max, lat_max: part of the demo window
PRINTED = 5e-5 + 1e-7  # half the last printed decimal, plus float32 rounding of the world


@pytest.fixture(scope="module")
def world():
    src = SyntheticSource(seed=42)
    window = M09.window_from_bbox(*BOX)
    sites = src.sites(M09, window)
    values = src.insitu(M09, window, START, END)
    assert len(sites) >= 5 and np.isnan(values.values).any()
    return window, sites, values


def _site_id(site: str) -> str:
    return f"ISMN:SYNTHETIC:{station_name(site)}"


def _ingest(tmp_path: Path, window, archive: Path, start=START, end=END):
    cube = Cube.create(tmp_path / "cube.zarr", M09, window, START, END)
    source = IsmnSource(Options(archive=archive))
    out = ingest_insitu(cube, source, start, end, M09, window, default_regions(),
                        workdir=tmp_path / "raw")  # fmt: skip
    return cube, out


def _deep_stations(root: Path) -> set[str]:
    return {p.parent.name for p in root.rglob("*_sm_0.500000_0.500000_*.stm")}


def test_daily_values_round_trip_and_deep_sensors_are_listed(world, tmp_path: Path) -> None:
    window, sites, values = world
    root = write_ismn(sites, values, tmp_path / "ismn")
    assert root.name == "Data_separate_files_header_20200101_20200209"
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    cube, out = _ingest(tmp_path, window, root)
    assert out.status == "complete" and out.n_sites == len(sites), out.error
    back = cube.read_insitu(START, END)
    for site in values["site"].values:
        got = back.sel(site=_site_id(site)).values
        want = values.sel(site=site).values
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=site)
        np.testing.assert_allclose(got, want, rtol=0, atol=PRINTED, equal_nan=True)

    deep = _deep_stations(root)
    assert 0 < len(deep) < len(sites)
    listed = {p.parent.name: why for p, why in out.skipped}
    assert set(listed) == deep  # nothing else is left out
    for station, why in listed.items():
        assert why == (f"station SYNTHETIC:{station} sensor Synthetic-Probe 0.5-0.5 m: "
                       "depth outside 0..0.1 m")  # fmt: skip
    # Read from the archive, nothing fetched, nothing in the archive changed.
    assert not (tmp_path / "raw").exists()
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_the_file_is_ismn_header_values_with_flags_the_reader_drops(world, tmp_path) -> None:
    _, sites, values = world
    root = write_ismn(sites, values, tmp_path / "ismn")
    site = values["site"].values[0]
    path = next((root / "SYNTHETIC" / station_name(site)).glob("*_sm_0.050000_0.050000_*.stm"))
    header = path.read_bytes().split(b"\r\n")[0].decode()
    assert header.split()[:3] == ["SYNTHETIC", "SYNTHETIC", station_name(site)]
    got = read_file(path)
    assert got.meta["format"] == "header_values" and got.meta["sensor"] == "Synthetic-Probe"
    row = sites.set_index("site").loc[site]
    assert got.meta["lat"] == pytest.approx(row["lat"], abs=5e-6)
    flags = got.records["flag"]
    assert (flags == "G").mean() > 0.8 and flags.isin(["D01", "D02,D03", "D06", "D09", "C03"]).any()
    assert (got.records["provider_flag"] == "").any()
    # Kept, the flagged hours would move the daily means off the world's values.
    every_flag = tuple(sorted(set(flags)))
    world_days = values.sel(site=site).to_series()
    world_days.index = pd.DatetimeIndex(world_days.index).normalize()
    good = got.daily(("G",)).reindex(world_days.index)
    polluted = got.daily(every_flag).reindex(world_days.index)
    assert np.nanmax(np.abs(good - world_days)) <= PRINTED
    assert np.nanmax(np.abs(polluted - world_days)) > 0.003


def test_a_zipped_download_reads_like_the_folder(world, tmp_path: Path) -> None:
    window, sites, values = world
    archive = write_ismn(sites.head(3), values.isel(site=slice(0, 3)), tmp_path / "dl",
                         zipped=True)  # fmt: skip
    assert archive.suffix == ".zip" and sorted(p.name for p in archive.parent.iterdir()) == [
        archive.name
    ]
    source = IsmnSource(Options(archive=archive.parent))
    assert (source.first_date(), source.latest_date(dt.date(2030, 1, 1))) == (START, END)
    cube, out = _ingest(tmp_path, window, archive.parent)
    assert out.status == "complete" and out.n_sites == 3
    back = cube.read_insitu(START, END)
    for site in values["site"].values[:3]:
        np.testing.assert_allclose(back.sel(site=_site_id(site)).values,
                                   values.sel(site=site).values, atol=PRINTED)  # fmt: skip


def test_a_window_outside_the_archive_lists_every_station(world, tmp_path: Path) -> None:
    window, sites, values = world
    root = write_ismn(sites, values, tmp_path / "ismn", deep_every=0)
    later = (dt.date(2020, 3, 1), dt.date(2020, 3, 5))
    _, out = _ingest(tmp_path, window, root, *later)
    assert out.status == "failed" and "no site with valid data" in out.error
    reasons = [why for _, why in out.skipped]
    assert len(reasons) == len(sites)
    assert all("no valid day in 2020-03-01..2020-03-05 at any sensor" in r for r in reasons)


def test_stations_outside_the_domain_are_listed(world, tmp_path: Path) -> None:
    _, sites, values = world
    root = write_ismn(sites, values, tmp_path / "ismn", deep_every=0)
    east = M09.window_from_bbox(37.5, -2.0, 38.5, 0.5)
    _, out = _ingest(tmp_path, east, root)
    inside = sites["lon"] > 37.5 + 0.1  # clear of the box edge
    outside = sites["lon"] < 37.5 - 0.1
    assert out.status == "complete" and out.n_sites >= inside.sum()
    listed = {why.split(" at lat ")[0] for _, why in out.skipped if "outside the domain" in why}
    assert {_site_id(s) for s in sites.loc[outside, "site"]} <= listed
    assert not {_site_id(s) for s in sites.loc[inside, "site"]} & listed
    assert out.n_sites + len(listed) == len(sites)


def test_cli_ingest_reads_the_configured_archive(world, tmp_path: Path) -> None:
    _, sites, values = world
    root = write_ismn(sites, values, tmp_path / "ismn")
    cfg = {
        "profile": "global",
        "data_root": str(tmp_path / "data"),
        "publish_root": str(tmp_path / "publish"),
        "region": dict(zip(("lon_min", "lat_min", "lon_max", "lat_max"), BOX, strict=True)),
        "cube": {"start": "2020-01-01", "end": "2020-12-31"},
        "sources": {"options": {"ismn": {"archive": str(root)}}},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    args = ["ingest", "--source", "ismn", "--date", str(START), "--end", str(END)]
    result = CliRunner().invoke(app, [*args, "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"ismn       complete  {len(sites)} sites" in result.output
    skipped = [line for line in result.output.splitlines() if "ismn       skipped" in line]
    assert len(skipped) == len(_deep_stations(root))
    assert all(line.endswith("depth outside 0..0.1 m") for line in skipped)
    back = Cube.open(tmp_path / "data" / "cube.zarr").read_insitu(START, END)
    assert back.sizes["site"] == len(sites)
