"""The data cube: layout, region writes by day, reads, manifests and crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from gsm3_ops.cube import Cube, CubeError
from gsm3_ops.cube.manifest import checksum
from gsm3_ops.grid import M09, Window

ROOT = Path(__file__).resolve().parents[1]
START, END = date(2020, 1, 1), date(2020, 12, 31)
DOMAIN = Window(800, 2300, 20, 30)  # East Africa; 3 x 4 chunks of 8 x 8 per day
TILE = 8
SUB = Window(803, 2305, 7, 9)  # deliberately not aligned with the tiles


def make_ds(
    days: Sequence[date],
    window: Window = DOMAIN,
    names: Sequence[str] = ("t2m", "d2m"),
    seed: int = 0,
) -> xr.Dataset:
    """Deterministic (time, y, x) float32 fields for ``days`` over ``window``."""
    data = {}
    for k, name in enumerate(names):
        fields = [
            np.random.default_rng([seed, d.toordinal(), k]).uniform(250, 300, window.shape)
            for d in days
        ]
        data[name] = (("time", "y", "x"), np.stack(fields).astype(np.float32))
    coords = {
        "time": pd.to_datetime(list(days)),
        "y": M09.y_centres(window),
        "x": M09.x_centres(window),
    }
    return xr.Dataset(data, coords=coords)


def sites_da(sites: dict[str, tuple[int, int]], days: Sequence[date], seed: int = 0):
    """In-situ series (site, time) for sites given as grid (row, col)."""
    rows, cols = (np.array(v) for v in zip(*sites.values(), strict=True))
    lon, lat = M09.rowcol_to_lonlat(rows, cols)
    values = np.random.default_rng(seed).uniform(0.05, 0.5, (len(sites), len(days)))
    return xr.DataArray(
        values.astype(np.float32),
        dims=("site", "time"),
        coords={
            "site": list(sites),
            "time": pd.to_datetime(list(days)),
            "lat": ("site", lat),
            "lon": ("site", lon),
            "network": ("site", ["SCAN"] * len(sites)),
        },
    )


@pytest.fixture
def cube(tmp_path: Path) -> Cube:
    return Cube.create(tmp_path / "data" / "cube.zarr", M09, DOMAIN, START, END, TILE)


def d(n: int) -> date:
    """Day ``n`` of March 2020."""
    return date(2020, 3, n)


def chunk_files(cube: Cube, name: str, day: date) -> dict[Path, tuple[bytes, int]]:
    """Bytes and mtime of every stored chunk of forcing variable ``name`` on ``day``."""
    folder = cube.path / "forcing" / name / "c" / str((day - START).days)
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def manifest_files(cube: Cube) -> list[Path]:
    return sorted((cube.path.parent / "manifests").rglob("*.json"))


def run_child(code: str, *args: str) -> subprocess.Popen:
    """Start ``python -c code args`` from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------------- layout


def test_create_records_layout_and_coordinates(cube: Cube) -> None:
    root = zarr.open_group(cube.path, mode="r")
    assert root.attrs["grid"] == "M09"
    assert root.attrs["crs"] == "EPSG:6933"
    assert root.attrs["domain"] == {"row0": 800, "col0": 2300, "n_rows": 20, "n_cols": 30}
    assert (root.attrs["tile_size"], root.attrs["start"], root.attrs["end"]) == (
        8,
        "2020-01-01",
        "2020-12-31",
    )
    time_ = root["forcing/time"]
    assert time_.attrs["units"] == "days since 2020-01-01"
    assert time_.shape == (366,) and time_[365] == 365
    np.testing.assert_array_equal(root["forcing/y"][:], M09.y_centres(DOMAIN))
    np.testing.assert_array_equal(root["static/x"][:], M09.x_centres(DOMAIN))
    cube.write("forcing", make_ds([d(1)]), source="era5_land", version="ERA5T")
    t2m = zarr.open_array(cube.path / "forcing" / "t2m", mode="r")
    assert t2m.shape == (366, 20, 30) and t2m.chunks == (1, 8, 8)
    assert t2m.metadata.dimension_names == ("time", "y", "x")


def test_create_again_opens_and_open_matches(cube: Cube) -> None:
    again = Cube.create(cube.path, M09, DOMAIN, START, END, TILE)
    opened = Cube.open(cube.path)
    for c in (again, opened):
        assert (c.grid, c.domain, c.start, c.end, c.tile_size) == (M09, DOMAIN, START, END, TILE)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tile_size": 16}, "tile_size"),
        ({"domain": Window(800, 2300, 20, 31)}, "domain"),
        ({"end": date(2021, 12, 31)}, "end"),
    ],
)
def test_create_with_another_layout_fails(cube: Cube, change: dict, named: str) -> None:
    args = {"domain": DOMAIN, "start": START, "end": END, "tile_size": TILE, **change}
    with pytest.raises(CubeError, match=f"another layout: {named}"):
        Cube.create(cube.path, M09, **args)


def test_open_refuses_what_is_not_a_cube(tmp_path: Path) -> None:
    with pytest.raises(CubeError, match="no cube at"):
        Cube.open(tmp_path / "absent.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w")
    with pytest.raises(CubeError, match="not a gsm3 cube"):
        Cube.open(tmp_path / "other.zarr")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(CubeError, match="exists and is not a cube"):
        Cube.create(tmp_path / "busy", M09, DOMAIN, START, END, TILE)
    with pytest.raises(CubeError, match="not inside the M09 grid"):
        Cube.create(tmp_path / "c.zarr", M09, Window(1600, 0, 100, 10), START, END, TILE)


# ---------------------------------------------------------------------- writes and reads


def test_round_trip_with_unwritten_days_nan(cube: Cube) -> None:
    ds = make_ds([d(2), d(3)])
    cube.write("forcing", ds, source="era5_land", version="ERA5T")
    out = cube.read("forcing", ["t2m", "d2m"], d(1), d(4))
    assert out.t2m.dtype == np.float32 and out.t2m.dims == ("time", "y", "x")
    assert list(out.time.values) == list(pd.date_range("2020-03-01", "2020-03-04").values)
    np.testing.assert_array_equal(out.y, M09.y_centres(DOMAIN))
    np.testing.assert_array_equal(out.x, M09.x_centres(DOMAIN))
    for name in ("t2m", "d2m"):
        np.testing.assert_array_equal(out[name].values[1:3], ds[name].values)
        assert np.isnan(out[name].values[[0, 3]]).all()
    # A registry variable never written reads as NaN; None means everything stored.
    assert np.isnan(cube.read("forcing", ["u10"], d(2), d(2)).u10).all()
    assert cube.variables("forcing") == ["t2m", "d2m"]
    assert list(cube.read("forcing", None, d(2), d(2)).data_vars) == ["t2m", "d2m"]
    assert cube.day_status(d(2)) == "complete" and cube.day_status(d(1)) == "missing"
    # Unwritten days take no storage.
    assert not chunk_files(cube, "t2m", d(1))


def test_sub_window_write_in_either_orientation(cube: Cube) -> None:
    ds = make_ds([d(5)], window=SUB, names=["smap"])
    flipped = ds.isel(y=slice(None, None, -1), x=slice(None, None, -1))
    cube.write("smap", flipped, source="smap", version="SPL3SMP_E.006")
    full = cube.read("smap", ["smap"], d(5), d(5)).smap.values[0]
    rel = SUB.relative_to(DOMAIN)
    np.testing.assert_array_equal(full[rel.rows, rel.cols], ds.smap.values[0])
    full[rel.rows, rel.cols] = np.nan
    assert np.isnan(full).all()
    part = cube.read("smap", ["smap"], d(5), d(5), window=SUB)
    np.testing.assert_array_equal(part.smap.values, ds.smap.values)
    np.testing.assert_array_equal(part.x, M09.x_centres(SUB))
    (entry,) = cube.manifest(d(5))["entries"].values()
    assert entry["parts"][0]["window"] == {"row0": 803, "col0": 2305, "n_rows": 7, "n_cols": 9}
    assert entry["parts"][0]["checksums"]["smap"] == checksum(ds.smap.values[0])


def test_rewrite_is_idempotent_and_touches_no_other_day(cube: Cube) -> None:
    cube.write("forcing", make_ds([d(9), d(10), d(11)]), source="era5", version="ERA5T")
    before = {day: chunk_files(cube, "t2m", day) for day in (d(9), d(10), d(11))}
    assert len(before[d(10)]) == 12  # 3 x 4 tiles

    cube.write("forcing", make_ds([d(10)]), source="era5", version="ERA5T")
    after = chunk_files(cube, "t2m", d(10))
    assert {p: b for p, (b, _) in after.items()} == {p: b for p, (b, _) in before[d(10)].items()}

    new = make_ds([d(10)], seed=7)
    cube.write("forcing", new, source="era5", version="ERA5")
    np.testing.assert_array_equal(cube.read("forcing", ["t2m"], d(10), d(10)).t2m, new.t2m)
    for day in (d(9), d(11)):
        assert chunk_files(cube, "t2m", day) == before[day]  # same bytes, same mtimes
    entry = cube.manifest(d(10))["entries"]["forcing/era5"]
    assert entry["version"] == "ERA5" and len(entry["parts"]) == 1  # superseded, not stacked
    assert entry["parts"][0]["checksums"]["t2m"] == checksum(new.t2m.values[0])
    assert cube.manifest(d(9))["entries"]["forcing/era5"]["version"] == "ERA5T"


def test_block_write_of_many_days(cube: Cube) -> None:
    days = [START + timedelta(days=i) for i in range(40)]
    ds = make_ds(days)
    cube.write("forcing", ds, source="era5_land", version="ERA5T")
    out = cube.read("forcing", ["t2m", "d2m"], days[0], days[-1])
    np.testing.assert_array_equal(out.t2m.values, ds.t2m.values)
    for i, day in enumerate(days):
        assert cube.day_status(day) == "complete"
        sums = cube.manifest(day)["entries"]["forcing/era5_land"]["parts"][0]["checksums"]
        assert sums == {n: checksum(ds[n].values[i]) for n in ("t2m", "d2m")}

    # Scattered days, given out of order, land on their own days only.
    scattered = make_ds([d(20), d(3), d(12)], names=["u10"], seed=3)
    cube.write("forcing", scattered, source="era5_land", version="ERA5T")
    out = cube.read("forcing", ["u10"], d(1), d(31)).u10
    for i, n in enumerate((20, 3, 12)):
        np.testing.assert_array_equal(out.values[n - 1], scattered.u10.values[i])
    assert np.isnan(out.values[[0, 1, 3, 10, 12, 18, 20]]).all()


def test_manifest_parts_follow_what_each_write_covers(cube: Cube) -> None:
    cube.write("forcing", make_ds([d(6)]), source="era5", version="ERA5T")
    cube.write("forcing", make_ds([d(6)], window=SUB, names=["t2m"]), source="era5", version="E")
    entry = cube.manifest(d(6))["entries"]["forcing/era5"]
    assert [p["variables"] for p in entry["parts"]] == [["t2m", "d2m"], ["t2m"]]  # no cover
    full = make_ds([d(6)], names=["t2m"], seed=2)
    cube.write("forcing", full, source="era5", version="ERA5")
    entry = cube.manifest(d(6))["entries"]["forcing/era5"]
    # The domain-wide t2m rewrite takes t2m from the first part and drops the SUB part.
    assert [p["variables"] for p in entry["parts"]] == [["d2m"], ["t2m"]]
    assert [sorted(p["checksums"]) for p in entry["parts"]] == [["d2m"], ["t2m"]]
    assert entry["parts"][1]["checksums"]["t2m"] == checksum(full.t2m.values[0])
    assert entry["version"] == "ERA5" and entry["variables"] == ["d2m", "t2m"]
    assert entry["status"] == "complete"


def test_static_round_trip(cube: Cube) -> None:
    elev = make_ds([START], names=["elevation"]).isel(time=0, drop=True)
    sand = make_ds([START], window=SUB, names=["sand"]).isel(time=0, drop=True)
    cube.write_static(elev, source="static", version="SRTM-1")
    cube.write_static(sand, source="soilgrids", version="2.0")
    out = cube.read_static()
    assert list(out.data_vars) == ["elevation", "sand"] and out.elevation.dims == ("y", "x")
    np.testing.assert_array_equal(out.elevation.values, elev.elevation.values)
    rel = SUB.relative_to(DOMAIN)
    np.testing.assert_array_equal(out.sand.values[rel.rows, rel.cols], sand.sand.values)
    assert np.isnan(cube.read_static(["clay"], window=SUB).clay).all()
    entries = cube.static_manifest()["entries"]
    assert set(entries) == {"static/static", "static/soilgrids"}
    assert all(e["status"] == "complete" for e in entries.values())
    with pytest.raises(CubeError, match=r"'t2m'.*does not belong in cube group 'static'"):
        cube.write_static(elev.rename(elevation="t2m"), source="static", version="1")


def test_insitu_round_trip_append_and_overwrite(cube: Cube) -> None:
    first = sites_da({"a": (805, 2305), "b": (810, 2310)}, [d(1), d(2), d(3)])
    cube.write_insitu(first, source="ismn", version="2024-01")
    out = cube.read_insitu(d(1), d(4))
    assert out.dims == ("site", "time") and list(out.site.values) == ["a", "b"]
    np.testing.assert_array_equal(out.values[:, :3], first.values)
    assert np.isnan(out.values[:, 3]).all()
    assert list(out.row.values) == [805, 810] and list(out.col.values) == [2305, 2310]
    assert list(out.network.values) == ["SCAN", "SCAN"] and list(out.region.values) == ["", ""]

    # A new site is appended; an existing site's day is overwritten in place.
    second = sites_da({"c": (815, 2320), "a": (805, 2305)}, [d(2), d(4)], seed=1)
    cube.write_insitu(second, source="uscrn", version="v2")
    out = cube.read_insitu(d(1), d(4))
    assert list(out.site.values) == ["a", "b", "c"]
    a, b, c = out.values
    np.testing.assert_array_equal(a, [first.values[0, 0], second.values[1, 0], first.values[0, 2],
                                      second.values[1, 1]])  # fmt: skip
    np.testing.assert_array_equal(b[:3], first.values[1])
    np.testing.assert_array_equal(c[[1, 3]], second.values[0])
    assert np.isnan(c[[0, 2]]).all()
    assert set(cube.manifest(d(2))["entries"]) == {"insitu/ismn", "insitu/uscrn"}
    assert cube.day_status(d(4)) == "complete"


def test_insitu_bad_sites(cube: Cube) -> None:
    cube.write_insitu(sites_da({"a": (805, 2305)}, [d(1)]), source="ismn", version="1")
    with pytest.raises(CubeError, match=r"new in-situ sites \['z'\] need a 'lat'"):
        cube.write_insitu(
            sites_da({"z": (806, 2306)}, [d(1)]).drop_vars("lat"), source="ismn", version="1"
        )
    with pytest.raises(CubeError, match=r"sites \['far'\] lie outside the domain"):
        cube.write_insitu(sites_da({"far": (100, 100)}, [d(1)]), source="ismn", version="1")
    with pytest.raises(CubeError, match=r"sites \['a'\] already in .* with another lat"):
        cube.write_insitu(sites_da({"a": (806, 2305)}, [d(1)]), source="ismn", version="1")
    with pytest.raises(CubeError, match="dims"):
        cube.write_insitu(sites_da({"a": (805, 2305)}, [d(1)]).T.rename(site="s"), source="i",
                          version="1")  # fmt: skip
    assert list(cube.read_insitu(d(1), d(1)).site.values) == ["a"]


# ---------------------------------------------------------------------- bad input


def _shift_x(cells: float):
    return lambda ds: ds.assign_coords(x=ds.x + cells * M09.cell_size)


@pytest.mark.parametrize(
    ("group", "mutate", "message"),
    [
        ("forcing", lambda ds: ds.rename(t2m="bogus"), "unknown variable 'bogus'"),
        ("forcing", lambda ds: ds.rename(t2m="elevation"), "'elevation'.*group 'forcing'"),
        ("smap", lambda ds: ds, "'t2m'.*does not belong in cube group 'smap'"),
        ("static", lambda ds: ds, "unknown cube group 'static'"),
        ("forcing", _shift_x(0.5), "'x' is not on the M09 grid"),
        ("forcing", _shift_x(-5), "not inside the domain"),
        ("forcing", _shift_x(1e5), "outside the M09 grid"),
        ("forcing", lambda ds: ds.isel(x=[0, 2, 3]), "'x' is not a contiguous run"),
        (
            "forcing",
            lambda ds: ds.assign_coords(time=pd.to_datetime(["2021-01-01"])),
            "day 2021-01-01 is outside the time axis 2020-01-01..2020-12-31",
        ),
        (
            "forcing",
            lambda ds: ds.assign_coords(time=pd.to_datetime(["2020-03-01 12:00"])),
            "midnight",
        ),
        ("forcing", lambda ds: ds.isel(time=0), r"'t2m' has dims \('y', 'x'\)"),
        ("forcing", lambda ds: ds.drop_vars("y"), "no 'y' coordinate"),
        ("forcing", lambda ds: ds.t2m, "expected an xarray Dataset, got DataArray"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(cube: Cube, group, mutate, message) -> None:
    ds = mutate(make_ds([d(1)], window=Window(801, 2301, 5, 6)))
    with pytest.raises(CubeError, match=message):
        cube.write(group, ds, source="era5", version="1")
    assert manifest_files(cube) == []
    assert cube.variables("forcing") == [] and cube.variables("smap") == []


def test_bad_reads_name_the_problem(cube: Cube) -> None:
    with pytest.raises(CubeError, match="unknown variable 'nope'"):
        cube.read("forcing", ["t2m", "nope"], d(1), d(2))
    with pytest.raises(CubeError, match="end 2021-01-01 is outside the time axis"):
        cube.read("forcing", ["t2m"], d(1), date(2021, 1, 1))
    with pytest.raises(CubeError, match="is before start"):
        cube.read("forcing", ["t2m"], d(2), d(1))
    with pytest.raises(CubeError, match="not inside the domain"):
        cube.read("forcing", ["t2m"], d(1), d(1), window=Window(0, 0, 2, 2))
    with pytest.raises(CubeError, match="unknown variable 'nope'"):
        cube.read_static(["nope"])


# ---------------------------------------------------------------------- xarray


def test_xarray_opens_every_group(cube: Cube) -> None:
    ds = make_ds([d(1), d(2)])
    cube.write("forcing", ds, source="era5", version="1")
    cube.write("smap", make_ds([d(2)], window=SUB, names=["smap"]), source="smap", version="1")
    cube.write_static(make_ds([START], names=["slope"]).isel(time=0), source="s", version="1")
    cube.write_insitu(sites_da({"a": (805, 2305)}, [d(1)]), source="ismn", version="1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no "failed to open with consolidated metadata"
        forcing = xr.open_zarr(cube.path, group="forcing")
        smap = xr.open_zarr(cube.path, group="smap")
        static = xr.open_zarr(cube.path, group="static")
        insitu = xr.open_zarr(cube.path, group="insitu")
    assert forcing.t2m.dims == ("time", "y", "x") and forcing.t2m.chunks[0][0] == 1
    assert forcing.time.values[0] == np.datetime64("2020-01-01")
    np.testing.assert_array_equal(forcing.t2m.sel(time=slice("2020-03-01", "2020-03-02")), ds.t2m)
    np.testing.assert_array_equal(
        smap.smap.sel(time="2020-03-02"), cube.read("smap", ["smap"], d(2), d(2)).smap[0]
    )
    np.testing.assert_array_equal(static.slope, cube.read_static(["slope"]).slope)
    assert insitu.insitu.dims == ("site", "time") and "lat" in insitu.coords
    assert list(insitu.site.values) == ["a"]


# ---------------------------------------------------------------------- processes

_KILLED_WRITER = """
import sys, time
from datetime import date
from pathlib import Path
import dask, dask.array as dsa
from gsm3_ops.cube import Cube
from tests.test_cube import make_ds

def never_ends():
    time.sleep(600)  # the parent kills this process here

cube = Cube.open(Path(sys.argv[1]))
for n in (1, 2):
    cube.write("forcing", make_ds([date(2020, 3, n)]), source="synthetic", version="1")
ds = make_ds([date(2020, 3, 3)])
# d2m can only be computed once never_ends() returns: the write of day 3 marks the day
# "writing", stores t2m, then hangs inside the write while materialising d2m.
lazy = dsa.from_delayed(dask.delayed(never_ends)(), shape=ds["d2m"].shape, dtype="float32")
ds["d2m"] = (ds["d2m"].dims, lazy)
with dask.config.set(scheduler="synchronous"):
    cube.write("forcing", ds, source="synthetic", version="1")
"""


def test_sigkill_mid_write_leaves_earlier_days_complete(cube: Cube) -> None:
    child = run_child(_KILLED_WRITER, str(cube.path))
    day3 = cube.path.parent / "manifests" / "cube" / "2020" / "2020-03-03.json"
    deadline = time.monotonic() + 30
    try:
        while True:
            writing = day3.exists() and json.loads(day3.read_text())["status"] == "incomplete"
            if writing and chunk_files(cube, "t2m", d(3)):
                break  # day 3 is marked and half written: kill mid-write
            assert child.poll() is None, f"writer exited early: {child.communicate()[1]}"
            assert time.monotonic() < deadline, "writer never reached day 3"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL

    expected = make_ds([d(1), d(2)])
    out = cube.read("forcing", ["t2m", "d2m"], d(1), d(2))
    for name in ("t2m", "d2m"):
        np.testing.assert_array_equal(out[name].values, expected[name].values)
    assert [cube.day_status(d(n)) for n in (1, 2, 3)] == ["complete", "complete", "incomplete"]
    part = cube.manifest(d(3))["entries"]["forcing/synthetic"]["parts"][0]
    assert part["status"] == "writing" and part["checksums"] == {}

    # Rewriting the interrupted day repairs it.
    cube.write("forcing", make_ds([d(3)]), source="synthetic", version="1")
    assert cube.day_status(d(3)) == "complete"


_CONCURRENT_WRITER = """
import sys
from datetime import date
from pathlib import Path
from gsm3_ops.cube import Cube
from tests.test_cube import make_ds

cube = Cube.open(Path(sys.argv[1]))
name, source = sys.argv[2], sys.argv[3]
for n in range(1, 9):
    cube.write("forcing", make_ds([date(2020, 3, n)], names=[name]), source=source, version="1")
"""


def test_concurrent_writers_do_not_lose_each_other(cube: Cube) -> None:
    children = [
        run_child(_CONCURRENT_WRITER, str(cube.path), "t2m", "era5_land"),
        run_child(_CONCURRENT_WRITER, str(cube.path), "precip_imerg", "imerg"),
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    days = [d(n) for n in range(1, 9)]
    out = cube.read("forcing", ["t2m", "precip_imerg"], days[0], days[-1])
    np.testing.assert_array_equal(out.t2m.values, make_ds(days, names=["t2m"]).t2m.values)
    imerg = make_ds(days, names=["precip_imerg"]).precip_imerg.values
    np.testing.assert_array_equal(out.precip_imerg.values, imerg)
    for day in days:
        entries = cube.manifest(day)["entries"]
        assert set(entries) == {"forcing/era5_land", "forcing/imerg"}
        assert cube.day_status(day) == "complete"
