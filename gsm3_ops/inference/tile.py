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
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops.config import InferenceConfig
from gsm3_ops.cube import Cube
from gsm3_ops.features import assemble_inputs, missing_input_mask
from gsm3_ops.grid import Window
from gsm3_ops.inference.engine import Engine, States
from gsm3_ops.inference.state import read_tile, stored_dtype, tile_key, write_tile
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
    """Ensemble mean and spread (m3/m3, NaN off land) and where a forcing was filled."""

    tile: Window
    mean: np.ndarray
    sd: np.ndarray
    gap_filled: np.ndarray


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


def _rows_per_band(engine: Engine, n_days: int, n_cols: int) -> int:
    """Tile rows whose inputs over ``n_days`` fit the memory budget (at least one)."""
    spec = engine.bundle.spec
    per_row = 4 * n_days * n_cols * (2 * len(spec.forcings) + len(spec.inputs))
    return max(1, int(engine.memory_budget_gb * 1e9) // per_row)


def _pass(
    cube: Cube, engine: Engine, task: TileTask, start: dt.date, end: dt.date
) -> tuple[np.ndarray, States, np.ndarray]:
    """Run ``start..end`` from a zero state over the tile, in bands of rows that fit the memory
    budget; return the last day's outputs, the end state (stored form) and the last day's
    forcing gaps."""
    land, win = task.land, task.grid_window
    n_cells, n_days = int(land.sum()), (end - start).days + 1
    spec = engine.bundle.spec
    members, hidden = len(engine.bundle.members), spec.hidden_size
    out = np.empty((members, n_cells, spec.n_outputs), dtype=np.float32)
    dtype = task.cfg.state_dtype
    h = np.empty((members, n_cells, hidden), dtype=stored_dtype(dtype))
    c = np.empty_like(h)
    gaps = np.empty(n_cells, dtype=bool)
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
        o, (hb, cb) = engine.advance(x, None, dtype)
        cells = slice(lo, lo + n)
        out[:, cells], h[:, cells], c[:, cells], gaps[cells] = o, hb, cb, g
        lo += n
    return out, (h, c), gaps


def _step(
    cube: Cube, engine: Engine, task: TileTask, day: dt.date, state: States
) -> tuple[np.ndarray, States, np.ndarray]:
    """One day from ``state``; the new state comes back in the store's form, so a replay
    continues from exactly what the daily run stored."""
    x, gaps = _inputs(cube, engine, task.grid_window, task.land, day, day)
    out, state = engine.advance(x, state, task.cfg.state_dtype)
    return out, state, gaps


def _save(task: TileTask, day: dt.date, state: States) -> None:
    for when, group in task.save:
        if when == day:
            write_tile(Path(group), task.key, state, task.cfg.state_dtype)


def run_tile(task: TileTask) -> TileResult:
    """Predict ``task.day`` over one tile (and write its state tiles in step mode)."""
    engine, cube = engine_for(task), _cube(task.cube_path)
    start, day, n_cells = task.start, task.day, int(task.land.sum())
    if start.kind == "window":
        out, _, gaps = _pass(cube, engine, task, start.first_input, day)
    else:
        prev = day - ONE_DAY
        if start.kind == "cold":
            _, state, _ = _pass(cube, engine, task, start.first_input, prev)
            _save(task, prev, state)
        elif start.kind in ("stored", "replay"):
            if start.base is None or task.state_path is None:
                raise ValueError(f"a {start.kind} start needs a stored state and its store")
            group = Path(task.state_path) / start.base.isoformat()
            state = read_tile(group, task.key, n_cells)
            d = start.base + ONE_DAY
            while d < day:  # replay: the daily run's steps, one day at a time
                _, state, _ = _step(cube, engine, task, d, state)
                d += ONE_DAY
        else:
            raise ValueError(f"unknown start kind {start.kind!r}")
        out, state, gaps = _step(cube, engine, task, day, state)
        _save(task, day, state)
    mean, sd = engine.product(out)
    result = TileResult(
        task.tile,
        np.full(task.land.shape, np.nan, np.float32),
        np.full(task.land.shape, np.nan, np.float32),
        np.zeros(task.land.shape, bool),
    )
    result.mean[task.land], result.sd[task.land], result.gap_filled[task.land] = mean, sd, gaps
    return result
