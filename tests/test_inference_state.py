"""The LSTM state store: per-tile land-cell arrays, bf16 bits, atomic dates, retention, owner."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from gsm3_ops.inference.state import (
    StateDamagedError,
    StateError,
    StateLayout,
    StateStore,
    as_float32,
    land_hash,
    quantise,
    read_tile,
    write_tile,
)

LAND = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=bool)


def _layout(**over) -> StateLayout:
    base = dict(bundle_id="abc", grid="M09", domain=(10, 20, 4, 3), tile_size=2,
                land_hash=land_hash(LAND), members=2, hidden=5, dtype="float32")  # fmt: skip
    return StateLayout(**{**base, **over})


def _state(seed: int, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=(2, n, 5)).astype(np.float32) for _ in range(2))


def _save(store: StateStore, day: dt.date, state) -> None:
    tmp = store.begin(day)
    write_tile(tmp, "r00000c00000", state, store.layout.dtype)
    store.commit(day, tmp, ["r00000c00000"])


def test_float32_round_trip_is_exact_and_bf16_is_the_rounded_value(tmp_path) -> None:
    state = _state(0)
    write_tile(tmp_path / "g32", "t", state, "float32")
    for got, want in zip(read_tile(tmp_path / "g32", "t", 3), state, strict=True):
        np.testing.assert_array_equal(got, want)
    write_tile(tmp_path / "g16", "t", state, "bfloat16")
    back = read_tile(tmp_path / "g16", "t", 3)
    assert all(a.dtype == np.uint16 for a in back)  # the bits, widened batch by batch later
    for got, want, rounded in zip(map(as_float32, back), state, quantise(state, "bfloat16"),
                                  strict=True):  # fmt: skip
        np.testing.assert_array_equal(got, rounded)
        np.testing.assert_array_equal(got, torch.from_numpy(want).bfloat16().float().numpy())
        assert np.abs(got - want).max() <= np.abs(want).max() * 2**-8
    sizes = {g: sum(f.stat().st_size for f in (tmp_path / g / "t" / "c").rglob("*") if f.is_file())
             for g in ("g32", "g16")}  # fmt: skip
    assert sizes["g32"] == 2 * 2 * 3 * 5 * 4 == 2 * sizes["g16"]  # raw: only the cells stored
    with pytest.raises(StateError, match="holds 3 cells, the land mask 4"):
        read_tile(tmp_path / "g32", "t", 4)
    with pytest.raises(StateError, match="has no tile nope"):
        read_tile(tmp_path / "g32", "nope", 3)


def test_a_date_appears_only_when_committed_whole(tmp_path) -> None:
    store = StateStore(tmp_path / "s.zarr", _layout())
    day = dt.date(2021, 1, 5)
    tmp = store.begin(day)
    write_tile(tmp, "r00000c00000", _state(1), "float32")
    assert store.dates() == []  # a temporary group is never a date
    with pytest.raises(StateError, match="missing tiles"):
        store.commit(day, tmp, ["r00000c00000", "r00002c00000"])
    assert store.dates() == []
    store.commit(day, tmp, ["r00000c00000"])
    assert store.dates() == [day]
    _save(store, day, _state(2))  # replacing a date swaps it whole
    np.testing.assert_array_equal(store.load(day, "r00000c00000", 3)[0], _state(2)[0])
    doomed = store.begin(day)
    store.abort(doomed)
    assert not doomed.exists() and store.dates() == [day]
    assert sorted(p.name for p in store.path.iterdir()) == [day.isoformat(), "zarr.json"]


def test_retention_keeps_recent_dates_and_checkpoints(tmp_path) -> None:
    store = StateStore(tmp_path / "s.zarr", _layout())
    days = [dt.date(2021, 1, d) for d in (1, 2, 3)] + [dt.date(2021, 2, d) for d in range(1, 5)]
    for k, day in enumerate(days):
        _save(store, day, _state(k))
    assert store.checkpoints("month") == [days[0], days[3]]
    assert store.checkpoints("year") == [days[0]]
    assert store.latest_on_or_before(dt.date(2021, 1, 31)) == days[2]
    assert store.latest_on_or_before(dt.date(2020, 12, 31)) is None
    gone = store.prune(keep_recent=2)
    assert gone == [days[1], days[2], days[4]]
    assert store.dates() == [days[0], days[3], days[5], days[6]]
    np.testing.assert_array_equal(store.load(days[3], "r00000c00000", 3)[1], _state(3)[1])
    assert store.prune(keep_recent=2, keep_checkpoints=1) == [days[0]]  # only Feb's is left
    weekly = StateStore(tmp_path / "w.zarr", _layout())
    for day in [dt.date(2021, 3, d) for d in range(1, 16)]:  # Mon 1st .. Mon 15th
        _save(weekly, day, _state(0))
    weekly.prune(keep_recent=2, every="week")
    mondays = [dt.date(2021, 3, 1), dt.date(2021, 3, 8), dt.date(2021, 3, 15)]
    assert weekly.dates() == [*mondays[:2], dt.date(2021, 3, 14), mondays[2]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bundle_id": "other"}, "bundle_id 'abc' \\(this run: 'other'\\)"),
        ({"domain": (10, 21, 4, 3)}, "domain"),
        ({"tile_size": 4}, "tile_size"),
        ({"land_hash": land_hash(~LAND)}, "land_hash"),
        ({"members": 5, "hidden": 256}, "members .*hidden"),
        ({"dtype": "bfloat16"}, "dtype 'float32'"),
    ],
)
def test_a_store_made_for_another_run_is_refused_untouched(tmp_path, change, message) -> None:
    store = StateStore(tmp_path / "s.zarr", _layout())
    _save(store, dt.date(2021, 1, 1), _state(0))
    before = {p: p.stat().st_mtime_ns for p in store.path.rglob("*")}
    with pytest.raises(StateError, match=message):
        StateStore(tmp_path / "s.zarr", _layout(**change))
    assert {p: p.stat().st_mtime_ns for p in store.path.rglob("*")} == before


def test_a_folder_that_is_not_a_store_is_refused(tmp_path) -> None:
    (tmp_path / "s.zarr").mkdir()
    (tmp_path / "s.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(StateError, match="not a state store"):
        StateStore(tmp_path / "s.zarr", _layout())
    assert land_hash(LAND) != land_hash(LAND.T.copy().T[::-1])


@pytest.mark.parametrize("damage", ["delete", "truncate", "alter"])
def test_a_damaged_tile_is_found_and_its_date_can_be_moved_aside(tmp_path, damage) -> None:
    store = StateStore(tmp_path / "s.zarr", _layout())
    early, late = dt.date(2021, 1, 4), dt.date(2021, 1, 5)
    _save(store, early, _state(1))
    _save(store, late, _state(2))
    chunk = sorted(p for p in (store.group(late) / "r00000c00000" / "c").rglob("*")
                   if p.is_file())[0]  # fmt: skip
    if damage == "delete":
        chunk.unlink()  # reads back as the fill value, zeros: a silently wrong state before
    elif damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:10])
    else:
        data = bytearray(chunk.read_bytes())
        data[0] ^= 1
        chunk.write_bytes(bytes(data))
    with pytest.raises(StateDamagedError, match="state 2021-01-05 tile r00000c00000") as info:
        store.load(late, "r00000c00000", 3)
    assert info.value.day == late
    aside = store.quarantine(late)
    assert aside.name.startswith(".damaged-2021-01-05-") and store.dates() == [early]
    assert store.latest_on_or_before(late) == early  # the next run recomputes from here
    np.testing.assert_array_equal(store.load(early, "r00000c00000", 3)[0], _state(1)[0])


def test_an_unreadable_store_is_refused_naming_the_repair(tmp_path) -> None:
    StateStore(tmp_path / "s.zarr", _layout())
    (tmp_path / "s.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    with pytest.raises(StateError, match=r"s\.zarr cannot be read .*move it away"):
        StateStore(tmp_path / "s.zarr", _layout())
