"""The tile-streamed day predictor on a small cube: modes, state chain, recompute, bad input."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import zarr

from gsm3_ops.config import InferenceConfig
from gsm3_ops.cube import Cube
from gsm3_ops.errors import InferenceError
from gsm3_ops.features import assemble_inputs, compute_stats
from gsm3_ops.grid import M09, Window
from gsm3_ops.inference.daily import DayPredictor
from gsm3_ops.inference.engine import Engine
from gsm3_ops.inference.state import StateError
from gsm3_ops.inference.tile import Start
from gsm3_ops.model.bundle import Bundle, BundleSpec, load_bundle, save_bundle

START, END = dt.date(2020, 1, 1), dt.date(2020, 3, 31)
DOMAIN = Window(700, 2100, 10, 9)  # tiles of 5: 2 x 2, the last column clipped to 4
GAP = dt.date(2020, 3, 25)  # a day whose forcing "failed": no manifest entry, t2m all NaN
FORCINGS, STATICS = ["t2m", "precip_mswep"], ["sand"]


@dataclass
class World:
    """A cube over DOMAIN with random forcings (none on GAP), a land mask with one all-sea
    tile, and a bundle."""

    root: Path
    cube: Cube
    land: np.ndarray
    bundle: Bundle

    def predictor(self, state_name: str = "state.zarr", **cfg) -> DayPredictor:
        """A predictor with small tiles and spin-up; ``cfg`` overrides InferenceConfig keys."""
        cfg = InferenceConfig(**{"tile_size": 5, "spinup_days": 20, "device": "cpu", **cfg})
        return DayPredictor(self.cube, self.bundle, self.land, cfg, self.root / state_name)


def make_world(root: Path, members: int = 2, hidden: int = 8, seed: int = 0) -> World:
    """Build the small world under ``root``."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(START, END, freq="D")
    shape = (len(days), *DOMAIN.shape)
    coords = {"y": M09.y_centres(DOMAIN), "x": M09.x_centres(DOMAIN)}
    forcing = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(285, 6, shape).astype(np.float32)),
            "precip_mswep": (("time", "y", "x"), rng.gamma(0.5, 4, shape).astype(np.float32)),
        },
        coords={"time": days, **coords},
    )
    static = xr.Dataset(
        {"sand": (("y", "x"), rng.uniform(5, 80, DOMAIN.shape).astype(np.float32))}, coords=coords
    )
    cube = Cube.create(root / "cube.zarr", M09, DOMAIN, START, END, tile_size=5)
    forcing["t2m"].loc[{"time": str(GAP)}] = np.nan
    cube.write("forcing", forcing.drop_sel(time=str(GAP)), source="test", version="1")
    zarr.open_array(cube.path / "forcing" / "t2m", mode="r+")[(GAP - START).days] = np.nan
    cube.write_static(static, source="test", version="1")
    land = rng.uniform(size=DOMAIN.shape) < 0.7
    land[0:5, 5:9] = False  # a tile with no land: no task, no state array
    stats = compute_stats({n: forcing[n].values for n in FORCINGS} | {"sand": static.sand.values})
    stats |= {"smap": {"mean": 0.2, "std": 0.08}, "insitu": {"mean": 0.25, "std": 0.1}}
    spec = BundleSpec(
        forcings=FORCINGS, statics=STATICS, targets=["smap", "insitu"], hidden_size=hidden,
        dropout=0.5, stats=stats, grid="M09", product_target="insitu",
    )  # fmt: skip
    return World(root, cube, land, make_bundle(root / "bundle", spec, members, seed))


def make_bundle(path: Path, spec: BundleSpec, members: int, seed: int) -> Bundle:
    """An untrained bundle with seeded weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        nets = [spec.new_network() for _ in range(members)]
    return load_bundle(save_bundle(path, spec, nets))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))


def _reference(world: World, first: dt.date, day: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and sd over the domain from one whole-domain pass (no tiles)."""
    spec = world.bundle.spec
    ds = world.cube.read("forcing", FORCINGS, first, day)
    forcing = {n: ds[n].values[:, world.land] for n in FORCINGS}
    static = {"sand": world.cube.read_static(STATICS)["sand"].values[world.land]}
    x = assemble_inputs(forcing, static, FORCINGS, STATICS, spec.stats)
    engine = Engine(world.bundle, torch.device("cpu"))
    mean, sd = engine.product(engine.advance(x, None)[0])
    out_mean, out_sd = np.full(DOMAIN.shape, np.nan, np.float32), np.full(DOMAIN.shape, np.nan)
    out_mean[world.land], out_sd[world.land] = mean, sd
    return out_mean, out_sd


def test_window_mode_matches_one_pass_over_the_domain(world: World) -> None:
    day = dt.date(2020, 2, 10)
    p = world.predictor(mode="window", state_name="unused.zarr")
    start = p.plan(day)
    assert (start.kind, start.first_input) == ("window", day - dt.timedelta(days=19))
    out = p.predict(day)
    mean, sd = _reference(world, start.first_input, day)
    np.testing.assert_allclose(out.mean, mean, atol=1e-5)
    np.testing.assert_allclose(out.sd, sd, atol=1e-5)
    assert np.isnan(out.mean[~world.land]).all() and (out.mean[world.land] > 0).all()
    assert out.tiles == 3  # four tiles, one all sea
    assert not (world.root / "unused.zarr").exists()  # window mode keeps no state
    # A budget so small that every tile runs in one-row bands and tiny batches: same values.
    small = world.predictor(mode="window", memory_budget_gb=2e-6).predict(day)
    np.testing.assert_allclose(small.mean, out.mean, atol=1e-6)


def test_cold_start_equals_window_and_days_chain(world: World, tmp_path) -> None:
    day = dt.date(2020, 2, 10)
    p = world.predictor(state_name="chain.zarr")
    first = p.predict(day)
    assert first.start.kind == "cold"
    window = world.predictor(mode="window").predict(day)
    np.testing.assert_allclose(first.mean, window.mean, atol=1e-5)
    assert p.store.dates() == [day - dt.timedelta(days=1), day]  # spun-up state kept
    nxt = p.predict(day + dt.timedelta(days=1))
    assert nxt.start.kind == "stored" and nxt.start.base == day
    # Stepping from the stored state is one pass over the 21 days from a zero state.
    mean, _ = _reference(world, day - dt.timedelta(days=19), day + dt.timedelta(days=1))
    np.testing.assert_allclose(nxt.mean, mean, atol=1e-5)
    # Rerunning a day gives the same values and replaces its state.
    again = p.predict(day + dt.timedelta(days=1))
    np.testing.assert_array_equal(again.mean, nxt.mean)
    # Only land cells are stored: one array per tile with land, one row per land cell.
    group = zarr.open_group(p.store.group(day), mode="r")
    assert sorted(group.array_keys())[0] == "r00000c00000"
    assert "r00000c00005" not in group.array_keys()
    assert sum(a.shape[2] for _, a in group.arrays()) == world.land.sum()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_recompute_from_a_checkpoint_equals_the_original_run(world: World, dtype: str) -> None:
    p = world.predictor(
        state_name=f"re-{dtype}.zarr", state_dtype=dtype, keep_recent_states=2,
        checkpoint_every="week",
    )  # fmt: skip
    days = [dt.date(2020, 2, 1) + dt.timedelta(days=i) for i in range(7)]  # Sat..Fri
    original = {d: p.predict(d).mean for d in days}
    stored = p.store.dates()  # Jan 31 (spun up) and Mon Feb 3 (weekly checkpoints), Feb 6, 7
    assert stored == [dt.date(2020, 1, 31), dt.date(2020, 2, 3), days[-2], days[-1]]
    target = dt.date(2020, 2, 6)  # recomputed from Feb 3, stepping Feb 4 and 5 again
    assert target - dt.timedelta(days=1) not in stored
    base = p.store.latest_on_or_before(target - dt.timedelta(days=1))
    assert base is not None and base in p.store.checkpoints("week")
    again = p.predict(target)
    assert again.start.kind == "replay" and again.start.base == base
    np.testing.assert_array_equal(again.mean, original[target])


def test_bf16_state_halves_the_bytes_and_stays_close(world: World) -> None:
    day = dt.date(2020, 2, 12)
    p32 = world.predictor(state_name="s32.zarr")
    p16 = world.predictor(state_name="s16.zarr", state_dtype="bfloat16")
    for d in (day, day + dt.timedelta(days=1)):
        a, b = p32.predict(d), p16.predict(d)
    np.testing.assert_allclose(b.mean, a.mean, atol=2e-3)
    size = {n: sum(f.stat().st_size for f in p.store.group(day).rglob("c/*/*/*/*"))
            for n, p in (("32", p32), ("16", p16))}  # fmt: skip
    assert size["16"] * 2 == size["32"] > 0


def test_a_store_of_another_bundle_or_precision_is_refused_untouched(world: World) -> None:
    day = dt.date(2020, 2, 10)
    p = world.predictor(state_name="owned.zarr")
    p.predict(day)
    before = sorted(str(f) for f in p.store.path.rglob("*"))
    other = make_bundle(world.root / "other", world.bundle.spec, 2, seed=1)
    other_p = DayPredictor(world.cube, other, world.land, p.cfg, p.state_path)
    with pytest.raises(StateError, match="bundle_id"):
        other_p.predict(day + dt.timedelta(days=1))
    with pytest.raises(StateError, match="dtype 'float32'"):
        world.predictor(state_name="owned.zarr", state_dtype="bfloat16").plan(day)
    moved_land = world.land.copy()
    moved_land[-1, -1] = not moved_land[-1, -1]
    with pytest.raises(StateError, match="land_hash"):
        DayPredictor(world.cube, world.bundle, moved_land, p.cfg, p.state_path).plan(day)
    assert sorted(str(f) for f in p.store.path.rglob("*")) == before


def test_bundle_that_does_not_match_the_cube_is_refused(world: World, tmp_path) -> None:
    spec = world.bundle.spec
    wrong_grid = Bundle(world.bundle.path, BundleSpec(**{**spec.__dict__, "grid": "M36"}),
                        world.bundle.members)  # fmt: skip
    with pytest.raises(InferenceError, match="grid M36"):
        DayPredictor(world.cube, wrong_grid, world.land, InferenceConfig(), tmp_path / "s")
    more = BundleSpec(**{**spec.__dict__, "forcings": [*FORCINGS, "d2m"], "statics": ["clay"]})
    bundle = Bundle(world.bundle.path, more, world.bundle.members)
    p = DayPredictor(world.cube, bundle, world.land, InferenceConfig(spinup_days=5), tmp_path / "s")
    with pytest.raises(InferenceError, match=r"forcing variables .* d2m"):
        p.predict(dt.date(2020, 2, 10))
    assert p.store.dates() == [] and not list(p.store.path.glob(".tmp-*"))


def test_missing_forcing_day_is_an_error_or_filled_and_flagged(world: World) -> None:
    day = GAP + dt.timedelta(days=2)
    strict = world.predictor(missing_forcing="error", spinup_days=5, state_name="strict.zarr")
    with pytest.raises(InferenceError, match=r"no complete forcing .* 2020-03-25"):
        strict.predict(day)
    assert strict.store.dates() == [] and not list(strict.store.path.glob(".tmp-*"))
    # The default fills and flags: the flag is only set on the day that lacks the forcing.
    assert not world.predictor(spinup_days=5, state_name="f1.zarr").predict(day).gap_filled.any()
    on_gap = world.predictor(spinup_days=5, state_name="f2.zarr").predict(GAP)
    assert (on_gap.gap_filled == world.land).all()
    assert np.isfinite(on_gap.mean[world.land]).all()


def test_a_cold_start_logs_its_progress_over_the_tiles(world: World, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gsm3_ops.inference.daily")
    world.predictor(state_name="progress.zarr").predict(dt.date(2020, 2, 10))
    lines = [r.getMessage() for r in caplog.records if "tiles:" in r.getMessage()]
    assert lines and lines[-1].startswith("predict 2020-02-10 (cold start), tiles: 3/3 (")
    assert lines[-1].endswith(", done)")


def test_a_cold_start_for_an_earlier_date_keeps_the_later_chain_recomputable(world: World) -> None:
    """History backfilled before a chain's cold start must not change how that chain's days
    recompute: its spun-up root is never pruned, and a cold start never replaces a state."""
    p = world.predictor(state_name="lineage.zarr", keep_recent_states=2)
    later = [dt.date(2020, 2, 10) + dt.timedelta(days=i) for i in range(4)]  # Feb 10..13
    original = {d: p.predict(d).mean for d in later}
    assert p.store.roots() == [dt.date(2020, 2, 9)]
    assert p.predict(dt.date(2020, 2, 1)).start.kind == "cold"  # history, before the chain
    assert p.store.roots() == [dt.date(2020, 1, 31), dt.date(2020, 2, 9)]
    assert dt.date(2020, 2, 9) in p.store.dates()  # Feb 1 is February's checkpoint now
    again = p.predict(later[-1])  # recomputed: from Feb 9's chain, as the original
    assert again.start.base is not None and again.start.base >= dt.date(2020, 2, 9)
    np.testing.assert_array_equal(again.mean, original[later[-1]])
    last = later[-1]
    stored = zarr.open_array(p.store.group(last) / "r00000c00000", mode="r")[...]
    forced = p.predict(last, Start("cold", last - dt.timedelta(days=19)))
    assert forced.start.kind == "cold"
    np.testing.assert_array_equal(
        zarr.open_array(p.store.group(last) / "r00000c00000", mode="r")[...], stored
    )  # a cold start left the state the chain goes on from as it was
