"""One day over a whole domain, streamed tile by tile: plan, check, run the tiles, commit.

:class:`DayPredictor` checks everything that could make a run write wrong or partial output
before any tile runs (the bundle's grid and variables against the cube, the state store's
owner, missing forcing days), hands one :class:`~gsm3_ops.inference.tile.TileTask` per tile
with land to a runner (in this process by default, or dask; see :mod:`gsm3_ops.ops.cluster`),
assembles the output tiles into domain arrays, then commits the day's state atomically and
prunes old states. Peak memory per task is bounded by the tile and the memory budget.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsm3_ops.config import InferenceConfig
from gsm3_ops.cube import Cube
from gsm3_ops.errors import InferenceError
from gsm3_ops.grid import Window, get_grid
from gsm3_ops.inference.state import StateLayout, StateStore, land_hash
from gsm3_ops.inference.tile import ONE_DAY, Start, TileResult, TileTask, run_tile
from gsm3_ops.logs import Progress
from gsm3_ops.model.bundle import Bundle

log = logging.getLogger(__name__)

Runner = Callable[[Callable[[TileTask], TileResult], Sequence[TileTask]], Iterable[TileResult]]


def in_process(fn: Callable[[TileTask], TileResult], tasks: Sequence[TileTask]) -> Iterable:
    """Run the tasks one after the other in this process, yielding results as they come."""
    return (fn(t) for t in tasks)


@dataclass
class DayOutput:
    """A day's ensemble mean and spread (m3/m3, NaN off land) over the domain, where a
    forcing was missing and filled, and how the state before the day was obtained. A DI
    bundle's day also says which retrieval days it absorbed and where no retrieval within
    the maximum age was there (the model ran open loop)."""

    mean: np.ndarray
    sd: np.ndarray
    gap_filled: np.ndarray
    start: Start
    tiles: int
    absorbed: tuple[dt.date, ...] = ()
    no_retrieval: np.ndarray | None = None
    open_loop: np.ndarray | None = None  # a DI bundle's open-loop ensemble mean (m3/m3)


class DayPredictor:
    """Predicts days of one bundle over one domain of a cube.

    Parameters
    ----------
    cube
        The input cube (its domain is the output domain).
    bundle
        The trained ensemble.
    land
        Land mask of the cube's domain; only land cells are predicted.
    cfg
        The inference settings (mode, tiles, device, budget, state precision, retention).
    state_path
        The state store (``<data_root>/state.zarr``), used in ``step`` mode.
    """

    def __init__(
        self, cube: Cube, bundle: Bundle, land: np.ndarray, cfg: InferenceConfig, state_path: Path
    ) -> None:
        self.cube, self.bundle, self.cfg, self.state_path = cube, bundle, cfg, Path(state_path)
        self.domain: Window = cube.domain
        self.land = np.asarray(land, dtype=bool)
        spec = bundle.spec
        if spec.grid != cube.grid.name:
            raise InferenceError(
                f"bundle {bundle.path} was trained on grid {spec.grid}, "
                f"but cube {cube.path} is on grid {cube.grid.name}"
            )
        if self.land.shape != self.domain.shape:
            raise InferenceError(
                f"land mask {self.land.shape} does not match the cube's domain {self.domain}"
            )
        self._store: StateStore | None = None

    # ----------------------------------------------------------------- state

    @property
    def store(self) -> StateStore:
        """The state store; opening it refuses one made for another bundle or domain."""
        if self._store is None:
            d = self.domain
            spec = self.bundle.spec
            layout = StateLayout(
                bundle_id=self.bundle.bundle_id,
                grid=self.cube.grid.name,
                domain=(d.row0, d.col0, d.n_rows, d.n_cols),
                tile_size=self.cfg.tile_size,
                land_hash=land_hash(self.land),
                members=len(self.bundle.members),
                hidden=spec.hidden_size,
                dtype=self.cfg.state_dtype,
            )
            self._store = StateStore(self.state_path, layout)
        return self._store

    def plan(self, day: dt.date) -> Start:
        """How the state before ``day`` will be obtained and which input days that needs."""
        spinup = self.cfg.spinup_days
        cold_first = day - dt.timedelta(days=spinup - 1)
        if self.cfg.mode == "window":
            return Start("window", cold_first)
        prev = day - ONE_DAY
        base = self.store.latest_on_or_before(prev)
        if base == prev:
            return Start("stored", day, base)
        if base is not None and (prev - base).days < spinup:
            return Start("replay", base + ONE_DAY, base)
        return Start("cold", cold_first)

    # ----------------------------------------------------------------- checks

    def check_inputs(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """Raise InferenceError when the cube lacks a variable the bundle needs, or (policy
        ``error``) a forcing day in ``first..last``; return the days with no forcing."""
        spec = self.bundle.spec
        for group, names in (("forcing", spec.forcings), ("static", spec.statics)):
            missing = sorted(set(names) - set(self.cube.variables(group)))
            if missing:
                raise InferenceError(
                    f"bundle {self.bundle.path} needs {group} variables the cube "
                    f"{self.cube.path} does not hold: {', '.join(missing)}"
                )
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        gaps = [d for d in days if not _has_forcing(self.cube.manifest(d))]
        if gaps and self.cfg.missing_forcing == "error":
            shown = ", ".join(d.isoformat() for d in gaps[:5])
            more = f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
            raise InferenceError(
                f"no complete forcing in cube {self.cube.path} for {shown}{more} "
                "(inference.missing_forcing is 'error'; 'fill' would fill and flag them)"
            )
        if gaps:
            log.warning(
                "%d day(s) from %s lack forcing: filled with the training mean and flagged",
                len(gaps),
                gaps[0],
            )
        return gaps

    # ----------------------------------------------------------------- run

    def absorption(
        self, day: dt.date, start: Start, recorded: Mapping[dt.date, Sequence[dt.date]]
    ) -> dict[dt.date, tuple[dt.date, ...]]:
        """A DI bundle's retrieval days for each day it steps through up to ``day``: those
        ``recorded`` for a day that ran before (so a recomputation absorbs what the original
        did, whatever arrived since), else the ones the cube holds now."""
        if self.bundle.spec.di_spec is None or start.kind == "window":
            return {}
        first = start.base + ONE_DAY if start.base is not None else day
        days = [first + dt.timedelta(days=i) for i in range((day - first).days + 1)]
        return {
            d: tuple(sorted(recorded[d])) if d in recorded else self.retrievals_for(d) for d in days
        }

    def pass_retrievals(self, day: dt.date, start: Start) -> frozenset[dt.date]:
        """The days a DI bundle's pass (cold start, window mode) may absorb: those the cube
        holds a complete write of the target for, back to the maximum age before the pass."""
        di = self.bundle.spec.di_spec
        if di is None or start.kind not in ("cold", "window"):
            return frozenset()
        first = max(start.first_input - dt.timedelta(days=di.max_age + di.latency[1]),
                    self.cube.start)  # fmt: skip
        days = (first + dt.timedelta(days=i) for i in range((day - first).days + 1))
        return frozenset(d for d in days if _has(self.cube.manifest(d), di.target))

    def retrievals_for(self, day: dt.date) -> tuple[dt.date, ...]:
        """The retrieval days a DI bundle's ``day`` would absorb from what the cube holds:
        ``day - latency_high .. day - latency_low`` with a complete write of the target."""
        di = self.bundle.spec.di_spec
        if di is None:
            return ()
        lo, hi = di.latency
        wanted = [day - dt.timedelta(days=k) for k in range(hi, lo - 1, -1)]
        return tuple(
            w for w in wanted
            if self.cube.start <= w <= self.cube.end and _has(self.cube.manifest(w), di.target)
        )  # fmt: skip

    def tasks(
        self,
        day: dt.date,
        start: Start,
        saves: dict[dt.date, Path],
        absorb: Mapping[dt.date, tuple[dt.date, ...]] | None = None,
        retrieved: frozenset[dt.date] = frozenset(),
    ) -> list[TileTask]:
        """One task per tile with land."""
        grid = get_grid(self.cube.grid.name)
        d = self.domain
        out = []
        for t in grid.tiles(d, self.cfg.tile_size):
            rel = t.relative_to(d)
            land = self.land[rel.rows, rel.cols]
            if not land.any():
                continue
            out.append(
                TileTask(
                    day=day,
                    start=start,
                    tile=rel,
                    origin=(d.row0, d.col0),
                    land=land.copy(),
                    cube_path=str(self.cube.path),
                    bundle_path=str(self.bundle.path),
                    cfg=self.cfg,
                    state_path=None if start.kind == "window" else str(self.state_path),
                    save=tuple((k, str(v)) for k, v in saves.items()),
                    absorb=tuple(sorted((absorb or {}).items())),
                    retrieved=retrieved,
                )
            )
        return out

    def predict(
        self,
        day: dt.date,
        start: Start | None = None,
        runner: Runner = in_process,
        recorded: Mapping[dt.date, Sequence[dt.date]] | None = None,
    ) -> DayOutput:
        """Predict ``day`` over the domain; in step mode also store its state (and, on a cold
        start, the spun-up state of the day before) and prune old states. ``recorded``: the
        retrieval days a DI bundle's earlier runs absorbed (see :meth:`absorption`)."""
        start = start or self.plan(day)
        absorb = self.absorption(day, start, recorded or {})
        retrieved = self.pass_retrievals(day, start)
        self.check_inputs(start.first_input, day)
        saves: dict[dt.date, Path] = {}
        if start.kind != "window":
            store = self.store
            saves[day] = store.begin(day)
            if start.kind == "cold":
                saves[day - ONE_DAY] = store.begin(day - ONE_DAY, origin="cold")
        log.info("predicting %s over %s (%s start)", day, self.domain, start.kind)
        try:
            tasks = self.tasks(day, start, saves, absorb, retrieved)
            shape = self.domain.shape
            mean = np.full(shape, np.nan, np.float32)
            sd = np.full(shape, np.nan, np.float32)
            gap_filled = np.zeros(shape, bool)
            no_retrieval = np.zeros(shape, bool) if self.bundle.spec.di else None
            open_loop = np.full(shape, np.nan, np.float32) if self.bundle.spec.di else None
            progress = Progress(log, f"predict {day} ({start.kind} start), tiles", len(tasks))
            for r in runner(run_tile, tasks):
                t = r.tile
                mean[t.rows, t.cols], sd[t.rows, t.cols] = r.mean, r.sd
                gap_filled[t.rows, t.cols] = r.gap_filled
                if no_retrieval is not None and r.no_retrieval is not None:
                    no_retrieval[t.rows, t.cols] = r.no_retrieval
                if open_loop is not None and r.open_loop is not None:
                    open_loop[t.rows, t.cols] = r.open_loop
                progress.step()  # a cold start over the globe takes hours: a line a minute
            keys = [t.key for t in tasks]
            for when in sorted(saves):  # the earlier date first: never a later without it
                if start.kind == "cold" and self.store.group(when).exists():
                    continue  # a cold start never replaces a state days were computed from
                self.store.commit(when, saves.pop(when), keys)
        finally:
            for tmp in saves.values():
                self.store.abort(tmp)
        if start.kind != "window":
            c = self.cfg
            self.store.prune(c.keep_recent_states, c.checkpoint_every, c.keep_checkpoints)
        absorbed = absorb.get(day, ())
        if start.kind == "window" and (di := self.bundle.spec.di_spec) is not None:
            last = day - dt.timedelta(days=di.latency[0])  # a pass absorbs day - latency
            absorbed = tuple(d for d in self.retrievals_for(day) if d == last)
        return DayOutput(mean, sd, gap_filled, start, len(tasks), absorbed, no_retrieval,
                         open_loop)  # fmt: skip


def _has(manifest: dict, group: str) -> bool:
    """Whether a day's cube manifest has a complete write into ``group``."""
    entries = manifest.get("entries") or {}
    return any(
        key.startswith(f"{group}/") and e.get("status") == "complete" for key, e in entries.items()
    )


def _has_forcing(manifest: dict) -> bool:
    return _has(manifest, "forcing")
