"""Cube data is read back against the checksums written with it: a deleted, truncated or
altered chunk of a day, of the statics or of the in-situ group is found (naming the day(s),
variable or group, source and the repair command), a later partial rewrite is not mistaken
for damage, and writing the data again (what the repair command does) repairs it."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import zarr
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.config import load_settings
from gsm3_ops.cube import Cube, CubeDamagedError, verify_day, verify_insitu, verify_static
from gsm3_ops.grid import M09, Window
from gsm3_ops.ops.deployment import Deployment
from gsm3_ops.ops.models import ensure_bundle
from tests.insitu_sites import DOMAIN as SITES_DOMAIN
from tests.insitu_sites import write_sites
from tests.test_cube import DOMAIN, END, START, TILE, chunk_files, d, make_ds, sites_da


@pytest.fixture
def cube(tmp_path) -> Cube:
    cube = Cube.create(tmp_path / "data" / "cube.zarr", M09, DOMAIN, START, END, TILE)
    cube.write("forcing", make_ds([d(1), d(2)]), source="era5_land", version="ERA5T")
    cube.write("smap", make_ds([d(1)], names=("smap",)), source="smap", version="R19")
    return cube


def test_an_intact_day_verifies(cube) -> None:
    assert verify_day(cube, d(1)) == 3 and verify_day(cube, d(3)) == 0


@pytest.mark.parametrize("damage", ["delete", "truncate", "alter"])
def test_damage_is_found_and_named(cube, damage) -> None:
    chunk = sorted(chunk_files(cube, "t2m", d(1)))[4]
    data = chunk.read_bytes()
    if damage == "delete":
        chunk.unlink()
    elif damage == "truncate":
        chunk.write_bytes(data[: len(data) // 2])
    else:
        other = sorted(chunk_files(cube, "t2m", d(2)))[4].read_bytes()  # a valid chunk, wrong day
        chunk.write_bytes(other)
    with pytest.raises(CubeDamagedError) as info:
        verify_day(cube, d(1))
    message = str(info.value)
    assert "cube day 2020-03-01: forcing/t2m from era5_land" in message
    assert "repair: gsm3-ops ingest --source era5_land --date 2020-03-01 --force" in message
    assert "cannot be read" in message if damage == "truncate" else "checksum" in message
    assert verify_day(cube, d(2)) == 2  # the other day is untouched
    cube.write("forcing", make_ds([d(1)]), source="era5_land", version="ERA5T")  # the repair
    assert verify_day(cube, d(1)) == 3


def test_a_later_partial_rewrite_is_not_damage(cube) -> None:
    block = Window(DOMAIN.row0 + 2, DOMAIN.col0 + 1, 3, 4)
    cube.write("forcing", make_ds([d(1)], block, names=("t2m",), seed=9), source="era5",
               version="ERA5T")  # fmt: skip
    assert verify_day(cube, d(1)) == 3  # era5_land's d2m and smap, and the block's t2m


def test_verifying_a_day_costs_about_one_read(cube) -> None:
    t0 = time.perf_counter()
    for _ in range(5):
        cube.read("forcing", None, d(1), d(1))
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(5):
        verify_day(cube, d(1))
    verify = time.perf_counter() - t0
    assert verify < 3 * read + 0.05  # about one more read of the day (measured: 1.2 x)


def test_damaged_statics_are_found(cube) -> None:
    ds = make_ds([d(1)], names=("sand", "clay")).isel(time=0, drop=True)
    cube.write_static(ds, source="soilgrids", version="2.0")
    assert verify_static(cube) == 2
    chunk = sorted(p for p in (cube.path / "static" / "clay").rglob("*")
                   if p.is_file() and "c" in p.parts)[0]  # fmt: skip
    chunk.unlink()
    with pytest.raises(CubeDamagedError, match=r"cube statics: static/clay from soilgrids .* "
                       r"repair: gsm3-ops ingest --source static$"):  # fmt: skip
        verify_static(cube)


# --- the in-situ group, verified over a period before training reads it

ISMN = {"a": (805, 2305), "b": (806, 2306), "c": (810, 2310)}
USCRN = {"u1": (812, 2301), "u2": (815, 2320)}
DAYS = [d(i) for i in range(1, 11)]


@pytest.fixture
def insitu(tmp_path) -> Cube:
    """Two sources' sites in one chunk of the in-situ group (2020 is one time chunk)."""
    cube = Cube.create(tmp_path / "data" / "cube.zarr", M09, DOMAIN, START, END, TILE)
    cube.write_insitu(sites_da(ISMN, DAYS, seed=1), source="ismn", version="2024-01")
    cube.write_insitu(sites_da(USCRN, DAYS, seed=2), source="uscrn", version="daily01")
    return cube


def _chunk(cube: Cube) -> Path:
    return cube.path / "insitu" / "insitu" / "c" / "0" / "0"


def test_intact_in_situ_days_verify(insitu) -> None:
    assert verify_insitu(insitu, d(1), d(10)) == 20  # 10 days x 2 sources
    assert verify_insitu(insitu, d(11), d(12)) == 0  # nothing written


@pytest.mark.parametrize("damage", ["delete", "truncate", "alter"])
def test_in_situ_damage_is_refused_named_and_the_named_repair_works(insitu, damage, caplog) -> None:
    before = insitu.read_insitu(d(1), d(10))
    chunk = _chunk(insitu)
    if damage == "delete":
        chunk.unlink()
    elif damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:100])
    else:  # one value of site b on March 3, as a manual edit would
        zarr.open_array(chunk.parents[2], mode="r+")[1, (d(3) - START).days] = 0.99
    with pytest.raises(CubeDamagedError) as info:
        verify_insitu(insitu, d(1), d(10))
    message = str(info.value)
    if damage == "alter":
        assert message == (
            "cube insitu: insitu/insitu from ismn does not match the checksum recorded when "
            "it was written on 1 day 2020-03-03 (a lost, truncated or altered chunk); "
            "repair: gsm3-ops ingest --source ismn --date 2020-03-03 --end 2020-03-03"
        )
    else:
        found = "cannot be read" if damage == "truncate" else "does not match the checksum"
        for source in ("ismn", "uscrn"):
            assert f"insitu/insitu from {source} {found}" in message
        assert message.count("on 10 days 2020-03-01..2020-03-10") == 2
        assert message.endswith(
            "repair: gsm3-ops ingest --source ismn --source uscrn --date 2020-03-01 "
            "--end 2020-03-10"
        )
    # The repair: each named source written again over the named days (as ingest does),
    # a chunk that no longer decodes dropped first.
    repaired = [d(3)] if damage == "alter" else DAYS
    insitu.write_insitu(sites_da(ISMN, DAYS, seed=1).sel(time=pd.to_datetime(repaired)),
                        source="ismn", version="2024-01")  # fmt: skip
    assert ("no longer decode: dropped" in caplog.text) == (damage == "truncate")
    if damage != "alter":
        insitu.write_insitu(sites_da(USCRN, DAYS, seed=2), source="uscrn", version="daily01")
    assert verify_insitu(insitu, d(1), d(10)) == 20
    xr.testing.assert_equal(insitu.read_insitu(d(1), d(10)), before)


def test_later_in_situ_rewrites_are_not_damage(insitu) -> None:
    # The same sites again with new values (superseding), then one site of another source's
    # rows on one day by a third source (overlapping): each checked in the later write.
    insitu.write_insitu(sites_da(ISMN, DAYS[2:5], seed=7), source="ismn", version="2024-02")
    one = sites_da({"u1": USCRN["u1"]}, [d(6)], seed=8)
    insitu.write_insitu(one, source="fix", version="1")
    assert verify_insitu(insitu, d(1), d(10)) == 20  # d(6): ismn and the fix, not uscrn
    assert insitu.read_insitu(d(6), d(6)).sel(site="u1").item() == one.item()


def test_writes_recorded_before_rows_were_are_skipped(insitu) -> None:
    for day in DAYS:  # manifests as older versions wrote them: no rows
        path = insitu.path.parent / "manifests" / "cube" / "2020" / f"{day}.json"
        doc = json.loads(path.read_text())
        for entry in doc["entries"].values():
            for part in entry["parts"]:
                part["sites"].pop("rows")
        path.write_text(json.dumps(doc))
    _chunk(insitu).unlink()
    assert verify_insitu(insitu, d(1), d(10)) == 0  # nothing to recompute: no error
    insitu.write_insitu(sites_da(ISMN, DAYS, seed=1), source="ismn", version="2024-01")
    assert verify_insitu(insitu, d(1), d(10)) == 10  # new writes record their rows


def test_verifying_in_situ_costs_little_more_than_reading_it(tmp_path) -> None:
    start, end = dt.date(2020, 1, 1), dt.date(2020, 12, 31)
    cube = Cube.create(tmp_path / "cube.zarr", M09, SITES_DOMAIN, start, end, 64)
    write_sites(cube, 300, start, end)
    t0 = time.perf_counter()
    cube.read_insitu(start, end)
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert verify_insitu(cube, start, end) == 2 * 366
    verify = time.perf_counter() - t0
    assert verify < 10 * read + 1.0  # measured: 0.22 s against 0.05 s at 2000 sites x 3 years


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_training_refuses_damaged_in_situ_data_and_the_named_ingest_repairs_it(
    world_site, tmp_path, damage
) -> None:
    # The tests' site: its ISMN download ingested over the training period by gsm3-ops.
    config = world_site.config(tmp_path)
    dep = Deployment(load_settings(config))
    cube, t = dep.open_cube(), dep.settings.training
    before = cube.read_insitu(t.start, t.end)
    folder = cube.path / "insitu" / "insitu" / "c"
    chunk = max(p for p in folder.rglob("*") if p.is_file())  # its latest days
    if damage == "delete":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:64])
    with pytest.raises(CubeDamagedError) as info:  # before a single batch is drawn
        ensure_bundle(dep, cube, progress=False)
    message = str(info.value)
    assert message.startswith("cube insitu: insitu/insitu from ismn ")
    command = message.split("; repair: ")[1]
    assert command.startswith("gsm3-ops ingest --source ismn --date ")
    result = CliRunner().invoke(app, [*command.split()[1:], "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert verify_insitu(cube, t.start, t.end) > 0
    xr.testing.assert_equal(cube.read_insitu(t.start, t.end), before)
