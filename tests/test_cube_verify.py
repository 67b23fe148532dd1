"""A cube day is read back against the checksums written with it: a deleted, truncated or
altered chunk is found (naming the day, variable, source and the repair command), a later
partial rewrite is not mistaken for damage, and re-ingesting the day repairs it."""

from __future__ import annotations

import time

import pytest

from gsm3_ops.cube import Cube, CubeDamagedError, verify_day, verify_static
from gsm3_ops.grid import M09, Window
from tests.test_cube import DOMAIN, END, START, TILE, chunk_files, d, make_ds


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
