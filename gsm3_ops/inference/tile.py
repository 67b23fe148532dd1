"""One tile of one day: read the tile's inputs, run every member, write its state tile.

A :class:`TileTask` holds everything a worker needs (paths, the tile, its land mask, how the
state before the day is obtained) and pickles small, so the same function runs in-process
or on any dask worker. The bundle, engine and cube are opened once per worker process.

How the state before ``day`` is obtained (a :class:`Start`):

- ``window``: no state; the ``spinup_days`` days up to ``day`` run from a zero state.
- ``stored``: the state of ``day - 1`` is in the store.
- ``replay``: the latest stored state before that (a checkpoint) is stepped forward one day
  at a time, rounding to the store's precision after each day exactly as the daily run did,
  so a recomputed day equals the original.
- ``cold``: the ``spinup_days - 1`` days before ``day`` run from a zero state in one pass
  (the window-mode computation), then ``day`` is one step.

A DI bundle (``gsm3_ops.di``) also carries, per cell, the last SMAP retrieval it absorbed.
Each step absorbs the retrieval days the task lists for it (``TileTask.absorb``: what the
cube held when the day first ran, as the day's record says, so a replay absorbs the same);
a pass absorbs, each day, the retrieval ``latency`` days old, from what the cube holds.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops.config import InferenceConfig
from gsm3_ops.cube import Cube
from gsm3_ops.di import DIState, absorb, none_features, state_features
from gsm3_ops.features import assemble_inputs, missing_input_mask, normalise
from gsm3_ops.grid import Window
from gsm3_ops.inference.engine import Engine, States
from gsm3_ops.inference.state import (
    open_loop_key,
    read_di_tile,
    read_tile,
    stored_dtype,
    tile_key,
    write_di_tile,
    write_tile,
)
from gsm3_ops.model.bundle import load_bundle
from gsm3_ops.model.device import pick_device

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Start:
    """How the state before a day is obtained (see the module docstring)."""

    kind: str  # "window", "stored", "replay" or "cold"
    first_input: dt.date  # first day of inputs read from the cube
    base: dt.date | None = None  # the stored state used (stored, replay)


@dataclass(frozen=True)
class TileTask:
    """One tile of one day; ``tile`` is relative to the domain, whose origin is ``origin``."""

    day: dt.date
    start: Start
    tile: Window
    origin: tuple[int, int]
    land: np.ndarray  # bool, the tile's shape
    cube_path: str
    bundle_path: str
    cfg: InferenceConfig
    state_path: str | None = None  # the store (step mode)
    save: tuple[tuple[dt.date, str], ...] = ()  # (date, temporary group) to write states to
    # DI bundles: the SMAP retrieval days each stepped day absorbs, ascending; and the days
    # a pass (cold start, window mode) may absorb: those with a complete write in the cube.
    absorb: tuple[tuple[dt.date, tuple[dt.date, ...]], ...] = ()
    retrieved: frozenset[dt.date] = frozenset()

    def absorbs(self, day: dt.date) -> tuple[dt.date, ...]:
        """The retrieval days ``day`` absorbs (a DI bundle's step)."""
        return dict(self.absorb).get(day, ())

    @property
    def key(self) -> str:
        """The tile's name in the state store."""
        return tile_key(self.tile.row0, self.tile.col0)

    @property
    def grid_window(self) -> Window:
        """The tile on the grid (what the cube reads take)."""
        r0, c0 = self.origin
        return Window(r0 + self.tile.row0, c0 + self.tile.col0, self.tile.n_rows, self.tile.n_cols)


@dataclass
class TileResult:
    """Ensemble mean and spread (m3/m3, NaN off land), where a forcing was filled, and (DI
    bundles) where no retrieval within the maximum age was absorbed."""

    tile: Window
    mean: np.ndarray
    sd: np.ndarray
    gap_filled: np.ndarray
    no_retrieval: np.ndarray | None = None
    open_loop: np.ndarray | None = None  # DI bundles: the open-loop ensemble mean


@functools.lru_cache(maxsize=4)
def _engine(bundle_path: str, bundle_id: str, device: str, budget: float, batch: int | None,
            autocast: str) -> Engine:  # fmt: skip
    """The worker's engine for a bundle (``bundle_id`` keys the cache to its content)."""
    dev = pick_device(device)
    return Engine(load_bundle(Path(bundle_path), dev), dev, batch, budget, autocast)


@functools.lru_cache(maxsize=4)
def _cube(path: str) -> Cube:
    return Cube.open(Path(path))


def engine_for(task: TileTask) -> Engine:
    """The (cached) engine that runs ``task``."""
    bundle_id = (Path(task.bundle_path) / "bundle.id").read_text().strip()
    c = task.cfg
    return _engine(
        task.bundle_path, bundle_id, c.device, c.memory_budget_gb, c.batch_cells, c.autocast
    )


def _inputs(
    cube: Cube, engine: Engine, window: Window, land: np.ndarray, start: dt.date, end: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised inputs (cells, days, n_in) at the land cells of ``window`` (grid coordinates)
    and the missing-forcing mask of the last day (cells,)."""
    spec = engine.bundle.spec
    ds = cube.read("forcing", spec.forcings, start, end, window)
    forcing = {n: np.asarray(ds[n].values)[:, land] for n in spec.forcings}
    del ds
    st = cube.read_static(spec.statics, window)
    static = {n: np.asarray(st[n].values)[land] for n in spec.statics}
    x = assemble_inputs(forcing, static, spec.forcings, spec.statics, spec.stats)
    return x, missing_input_mask(forcing, spec.forcings)[-1]


def _retrievals(
    cube: Cube, engine: Engine, window: Window, land: np.ndarray, first: dt.date, last: dt.date
) -> tuple[dt.date, np.ndarray]:
    """A DI bundle's normalised retrievals (days, cells) over ``first..last`` (clipped to the
    cube's time axis; NaN where none) at the land cells of ``window``, and the first day."""
    spec = engine.bundle.spec
    di = spec.di_spec
    assert di is not None
    first = max(first, cube.start)
    if last < first:
        return first, np.full((0, int(land.sum())), np.nan, np.float32)
    values = np.asarray(cube.read(di.target, [di.target], first, last, window)[di.target].values)
    return first, normalise(values[:, land], di.target, spec.stats)


def _pass_features(
    cube: Cube,
    engine: Engine,
    task: TileTask,
    window: Window,
    land: np.ndarray,
    start: dt.date,
    end: dt.date,
) -> tuple[np.ndarray, DIState]:
    """DI channels (cells, days, 2) over ``start..end``, each day absorbing the retrieval
    ``latency`` days old when the cube holds it complete (``task.retrieved``), and the DI
    state at the end."""
    di = engine.bundle.spec.di_spec
    assert di is not None
    lag = di.latency[0]
    first, obs = _retrievals(cube, engine, window, land, start - dt.timedelta(di.max_age + lag),
                             end - dt.timedelta(lag))  # fmt: skip
    for i in range(obs.shape[0]):
        if first + dt.timedelta(i) not in task.retrieved:
            obs[i] = np.nan  # written in part, or not at all: not a retrieval to absorb
    state = DIState.empty(int(land.sum()))
    out = np.empty((state.value.size, (end - start).days + 1, 2), np.float32)
    for i in range(obs.shape[0]):  # absorb every retrieval up to the first day's lag
        when = first + dt.timedelta(i)
        if when + dt.timedelta(lag) >= start:
            break
        state = absorb(state, obs[i], when.toordinal())
    for k in range(out.shape[1]):
        d = start + dt.timedelta(k)
        i = (d - dt.timedelta(lag) - first).days
        if 0 <= i < obs.shape[0]:
            state = absorb(state, obs[i], (first + dt.timedelta(i)).toordinal())
        out[:, k] = state_features(state, d.toordinal(), di.max_age)
    return out, state


def _step_features(
    cube: Cube, engine: Engine, task: TileTask, day: dt.date, state: DIState
) -> tuple[np.ndarray, DIState]:
    """DI channels (cells, 1, 2) of ``day`` after absorbing the retrieval days the task
    lists for it, and the new DI state."""
    di = engine.bundle.spec.di_spec
    assert di is not None
    for when in task.absorbs(day):
        _, obs = _retrievals(cube, engine, task.grid_window, task.land, when, when)
        if obs.shape[0]:
            state = absorb(state, obs[0], when.toordinal())
    return state_features(state, day.toordinal(), di.max_age)[:, None], state


def _rows_per_band(engine: Engine, n_days: int, n_cols: int) -> int:
    """Tile rows whose inputs over ``n_days`` fit the memory budget (at least one)."""
    spec = engine.bundle.spec
    per_row = 4 * n_days * n_cols * (2 * len(spec.forcings) + spec.n_inputs)
    return max(1, int(engine.memory_budget_gb * 1e9) // per_row)


@dataclass
class Carry:
    """What a tile carries from one day to the next: h and c (stored form) and, for a DI
    bundle, the absorbed retrievals and the open-loop h and c (the same network run with no
    retrieval ever absorbed, published as ``soil_moisture_open_loop``)."""

    state: States
    di: DIState | None = None
    open_loop: States | None = None


def _pass(
    cube: Cube, engine: Engine, task: TileTask, start: dt.date, end: dt.date
) -> tuple[np.ndarray, Carry, np.ndarray, np.ndarray | None]:
    """Run ``start..end`` from a zero state over the tile, in bands of rows that fit the memory
    budget; return the last day's outputs, what the tile carries at the end, the last day's
    forcing gaps and (DI bundles) the last day's open-loop outputs."""
    land, win = task.land, task.grid_window
    n_cells, n_days = int(land.sum()), (end - start).days + 1
    spec = engine.bundle.spec
    members, hidden = len(engine.bundle.members), spec.hidden_size
    dtype = task.cfg.state_dtype

    def outputs() -> tuple[np.ndarray, States]:
        h = np.empty((members, n_cells, hidden), dtype=stored_dtype(dtype))
        return np.empty((members, n_cells, spec.n_outputs), np.float32), (h, np.empty_like(h))

    out, (h, c) = outputs()
    gaps = np.empty(n_cells, dtype=bool)
    di = DIState.empty(n_cells) if spec.di else None
    ol_out, (ol_h, ol_c) = outputs() if spec.di else (None, (None, None))
    band = _rows_per_band(engine, n_days, win.n_cols)
    lo = 0  # land cells are row-major, so a band of rows is a run of cells
    for r in range(0, win.n_rows, band):
        rows = slice(r, min(r + band, win.n_rows))
        band_land = land[rows]
        n = int(band_land.sum())
        if n == 0:
            continue
        sub = Window(win.row0 + rows.start, win.col0, rows.stop - rows.start, win.n_cols)
        x, g = _inputs(cube, engine, sub, band_land, start, end)
        cells = slice(lo, lo + n)
        if di is not None:
            f, band_di = _pass_features(cube, engine, task, sub, band_land, start, end)
            di.value[cells], di.day[cells] = band_di.value, band_di.day
            o, (hb, cb) = engine.advance(np.concatenate([x, none_features(x.shape[:2])], -1),
                                         None, dtype)  # fmt: skip
            ol_out[:, cells], ol_h[:, cells], ol_c[:, cells] = o, hb, cb
            x = np.concatenate([x, f], axis=-1)
        o, (hb, cb) = engine.advance(x, None, dtype)
        out[:, cells], h[:, cells], c[:, cells], gaps[cells] = o, hb, cb, g
        lo += n
    open_loop = None if ol_h is None else (ol_h, ol_c)
    return out, Carry((h, c), di, open_loop), gaps, ol_out


def _step(
    cube: Cube, engine: Engine, task: TileTask, day: dt.date, carry: Carry
) -> tuple[np.ndarray, Carry, np.ndarray, np.ndarray | None]:
    """One day from what the tile carries; the new states come back in the store's form, so
    a replay continues from exactly what the daily run stored."""
    x, gaps = _inputs(cube, engine, task.grid_window, task.land, day, day)
    dtype = task.cfg.state_dtype
    if carry.di is None or carry.open_loop is None:
        out, state = engine.advance(x, carry.state, dtype)
        return out, Carry(state), gaps, None
    f, di = _step_features(cube, engine, task, day, carry.di)
    ol_out, ol_state = engine.advance(np.concatenate([x, none_features(x.shape[:2])], -1),
                                      carry.open_loop, dtype)  # fmt: skip
    out, state = engine.advance(np.concatenate([x, f], axis=-1), carry.state, dtype)
    return out, Carry(state, di, ol_state), gaps, ol_out


def _save(task: TileTask, day: dt.date, carry: Carry) -> None:
    for when, group in task.save:
        if when == day:
            write_tile(Path(group), task.key, carry.state, task.cfg.state_dtype)
            if carry.di is not None and carry.open_loop is not None:
                write_di_tile(Path(group), task.key, carry.di)
                write_tile(Path(group), open_loop_key(task.key), carry.open_loop,
                           task.cfg.state_dtype)  # fmt: skip


def _load(group: Path, key: str, n_cells: int, di: bool) -> Carry:
    if not di:
        return Carry(read_tile(group, key, n_cells))
    return Carry(read_tile(group, key, n_cells), read_di_tile(group, key, n_cells),
                 read_tile(group, open_loop_key(key), n_cells))  # fmt: skip


def run_tile(task: TileTask) -> TileResult:
    """Predict ``task.day`` over one tile (and write its state tiles in step mode)."""
    engine, cube = engine_for(task), _cube(task.cube_path)
    start, day, n_cells = task.start, task.day, int(task.land.sum())
    spec = engine.bundle.spec
    if start.kind == "window":
        out, carry, gaps, ol_out = _pass(cube, engine, task, start.first_input, day)
    else:
        prev = day - ONE_DAY
        if start.kind == "cold":
            _, carry, _, _ = _pass(cube, engine, task, start.first_input, prev)
            _save(task, prev, carry)
        elif start.kind in ("stored", "replay"):
            if start.base is None or task.state_path is None:
                raise ValueError(f"a {start.kind} start needs a stored state and its store")
            group = Path(task.state_path) / start.base.isoformat()
            carry = _load(group, task.key, n_cells, bool(spec.di))
            d = start.base + ONE_DAY
            while d < day:  # replay: the daily run's steps, one day at a time
                _, carry, _, _ = _step(cube, engine, task, d, carry)
                d += ONE_DAY
        else:
            raise ValueError(f"unknown start kind {start.kind!r}")
        out, carry, gaps, ol_out = _step(cube, engine, task, day, carry)
        _save(task, day, carry)
    shape, land = task.land.shape, task.land

    def layer(values: np.ndarray) -> np.ndarray:
        full = np.full(shape, np.nan, np.float32)
        full[land] = values
        return full

    mean, sd = engine.product(out)
    result = TileResult(task.tile, layer(mean), layer(sd), np.zeros(shape, bool))
    result.gap_filled[land] = gaps
    if carry.di is not None and ol_out is not None and spec.di_spec is not None:
        result.open_loop = layer(engine.product(ol_out)[0])
        none = state_features(carry.di, day.toordinal(), spec.di_spec.max_age)[:, 1] >= 1
        result.no_retrieval = np.zeros(shape, bool)
        result.no_retrieval[land] = none
    return result
