"""Inference speed: one global 9 km day in ``step`` mode end to end, ``window``-mode LSTM
throughput, and the engine against a bare ``torch.nn.LSTM`` of the same shape.

Set-up (not timed, reused from ``--work`` when it is there): the land mask of the whole 9 km
grid (or ``--region``), a cube on disk holding one day of the 18 ``gsm3`` forcings and the 17
statics (random values inside each variable's valid range: speed does not depend on them),
an untrained ensemble of ``--members`` (hidden 256, the paper's shape) and a state store
holding a previous-day state for every land cell (random values, ``--state-dtype``).

Timed, in a fresh process so that its peak RSS is the day's alone: open cube and bundle, plan,
then tile by tile read the day's forcings and statics, read the state tile, run every member,
write the new state tile; then write the product Zarr (``publish.product.write_day``) and the
day's COG (``publish.cog.write_cog``). Then, in memory, ``window`` mode over ``--window-cells``
cells x 365 days (cell-steps per second, members counted), and a bare ``nn.LSTM(256, 256)``
over the same batches of 365-day sequences, alternating, best of ``--repeats``.

    python -m benchmarks.inference_speed --json inference_speed.json --work /data/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from benchmarks.common import write
from gsm3_ops import variables
from gsm3_ops.config import ClusterConfig, InferenceConfig
from gsm3_ops.cube import Cube
from gsm3_ops.features import compute_stats
from gsm3_ops.grid import M09, Window
from gsm3_ops.inference.daily import DayPredictor
from gsm3_ops.inference.engine import Engine
from gsm3_ops.inference.state import write_tile
from gsm3_ops.inference.tile import Start
from gsm3_ops.model.bundle import BundleSpec, load_bundle, save_bundle
from gsm3_ops.model.device import pick_device
from gsm3_ops.ops.cluster import tile_runner
from gsm3_ops.publish.cog import cog_path, write_cog
from gsm3_ops.publish.layers import FLAG_FILL, FLAG_GAP_FILLED
from gsm3_ops.publish.product import product_path, write_day

DAY = dt.date(2021, 6, 15)
SPINUP = 365


def _values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random float32 values inside the variable's valid range."""
    v = variables.get(name)
    lo, hi = v.valid_min, v.valid_max
    mid, spread = (lo + hi) / 2, (hi - lo) / 8
    out = rng.standard_normal(shape, dtype=np.float32) * np.float32(spread) + np.float32(mid)
    return np.clip(out, lo, hi, out=out)


def _domain(region: str | None) -> Window:
    if not region:
        return M09.full
    lon0, lat0, lon1, lat1 = (float(v) for v in region.split(","))
    return M09.window_from_bbox(lon0, lat0, lon1, lat1)


def _config(args: argparse.Namespace) -> InferenceConfig:
    return InferenceConfig(
        tile_size=args.tile_size, spinup_days=SPINUP, device=args.device,
        state_dtype=args.state_dtype, memory_budget_gb=args.budget_gb, autocast=args.autocast,
    )  # fmt: skip


def setup(args: argparse.Namespace) -> dict:
    """Build (or reuse) the land mask, cube, bundle and previous-day state under ``--work``."""
    work: Path = args.work
    marker = work / "ready.json"
    want = {k: getattr(args, k) for k in ("region", "members", "state_dtype", "tile_size")}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return want
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(0)
    domain = _domain(args.region)
    t0 = time.perf_counter()
    land = M09.land_mask(domain)
    np.save(work / "land.npy", land)
    print(f"land mask: {int(land.sum())} cells ({time.perf_counter() - t0:.0f} s)", flush=True)
    forcings, statics = (list(v) for v in variables.feature_set("gsm3"))
    cube = Cube.create(work / "cube.zarr", M09, domain, DAY - dt.timedelta(days=1), DAY,
                       args.tile_size)  # fmt: skip
    coords = {"y": M09.y_centres(domain), "x": M09.x_centres(domain)}
    for name in forcings:  # one variable at a time: ~25 MB each over the globe
        ds = xr.Dataset(
            {name: (("time", "y", "x"), _values(name, (1, *domain.shape), rng))},
            coords={"time": [np.datetime64(DAY, "ns")], **coords},
        )
        cube.write("forcing", ds, source="synthetic", version="bench")
    for name in statics:
        ds = xr.Dataset({name: (("y", "x"), _values(name, domain.shape, rng))}, coords=coords)
        cube.write_static(ds, source="synthetic", version="bench")
    print(f"cube written ({time.perf_counter() - t0:.0f} s)", flush=True)

    sample = {n: _values(n, (20_000,), rng) for n in forcings + statics}
    stats = compute_stats(sample) | {
        "smap": {"mean": 0.22, "std": 0.1}, "insitu": {"mean": 0.25, "std": 0.1},
    }  # fmt: skip
    spec = BundleSpec(
        forcings=forcings, statics=statics, targets=["smap", "insitu"], hidden_size=256,
        dropout=0.5, stats=stats, grid="M09", product_target="insitu",
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        nets = [spec.new_network() for _ in range(args.members)]
    bundle = load_bundle(save_bundle(work / "bundle", spec, nets))

    predictor = DayPredictor(cube, bundle, land, _config(args), work / "state.zarr")
    prev = DAY - dt.timedelta(days=1)
    tmp = predictor.store.begin(prev)
    tasks = predictor.tasks(DAY, Start("stored", DAY, prev), {})
    gen = torch.Generator().manual_seed(1)
    for task in tasks:
        n = int(task.land.sum())
        h = torch.randn(args.members, n, 256, generator=gen).mul_(0.3).tanh_().numpy()
        c = torch.randn(args.members, n, 256, generator=gen).numpy()
        write_tile(tmp, task.key, (h, c), args.state_dtype)
    predictor.store.commit(prev, tmp, [t.key for t in tasks])
    print(f"previous-day state written ({time.perf_counter() - t0:.0f} s)", flush=True)
    marker.write_text(json.dumps(want))
    return want


def step_day(args: argparse.Namespace) -> dict:
    """The timed day (run in a child process); prints its figures as JSON."""
    work: Path = args.work
    for stale in (work / "publish", work / "state.zarr" / DAY.isoformat()):
        shutil.rmtree(stale, ignore_errors=True)
    land = np.load(work / "land.npy")
    t0 = time.perf_counter()
    cube = Cube.open(work / "cube.zarr")
    bundle = load_bundle(work / "bundle")
    cfg = _config(args)
    predictor = DayPredictor(cube, bundle, land, cfg, work / "state.zarr")
    start = predictor.plan(DAY)
    if start.kind != "stored":
        raise SystemExit(f"expected a stored previous-day state, got a {start.kind} start")
    cluster = ClusterConfig()
    if args.workers:  # dask gives each worker process one OpenMP (torch) thread by default
        cluster = ClusterConfig(kind="local", n_workers=args.workers)
    with tile_runner(cluster) as runner:
        out = predictor.predict(DAY, start, runner)
    t1 = time.perf_counter()
    flags = np.where(out.gap_filled, FLAG_GAP_FILLED, 0).astype(np.uint8)
    flags[~land] = FLAG_FILL
    layers = {"soil_moisture": out.mean, "soil_moisture_sd": out.sd, "quality_flag": flags}
    pub = work / "publish"
    write_day(product_path(pub), DAY, layers, M09, cube.domain, DAY, cfg.tile_size)
    write_cog(cog_path(pub, DAY.isoformat()), out.mean, M09, cube.domain,
              {"date": DAY.isoformat()})  # fmt: skip
    t2 = time.perf_counter()
    return {
        "step_global_day_s": round(t2 - t0, 1),
        "predict_s": round(t1 - t0, 1),
        "publish_s": round(t2 - t1, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "tiles": out.tiles,
        "land_cells_predicted": int(np.isfinite(out.mean).sum()),
    }


def window_throughput(args: argparse.Namespace) -> dict:
    """Window-mode cell-steps/s of the engine and of a bare nn.LSTM on the same batches."""
    bundle = load_bundle(args.work / "bundle")
    device = pick_device(args.device)
    engine = Engine(bundle, device, memory_budget_gb=args.budget_gb, autocast=args.autocast)
    n_in = len(bundle.spec.inputs)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((args.window_cells, SPINUP, n_in), dtype=np.float32)
    batch = engine.cells_per_batch(SPINUP)
    bare = torch.nn.LSTM(256, 256).eval().to(device)
    # The bare LSTM's inputs are made up front, on the device: it is timed on the LSTM alone.
    seqs = [
        torch.randn(SPINUP, min(batch, args.window_cells - lo), 256, device=device)
        for lo in range(0, args.window_cells, batch)
    ]
    members = len(bundle.members)
    steps = args.window_cells * SPINUP * members
    best = {"engine": 0.0, "bare": 0.0}
    for _ in range(args.repeats):
        t = time.perf_counter()
        engine.advance(x, None)
        best["engine"] = max(best["engine"], steps / (time.perf_counter() - t))
        t = time.perf_counter()
        bf16 = args.autocast == "bfloat16"
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            for s in seqs:
                for _ in range(members):
                    bare(s)
            if device.type == "cuda":
                torch.cuda.synchronize()
        best["bare"] = max(best["bare"], steps / (time.perf_counter() - t))
    return {
        "window_cell_steps_per_s": round(best["engine"]),
        "bare_lstm_cell_steps_per_s": round(best["bare"]),
        "engine_vs_bare_ratio": round(best["engine"] / best["bare"], 3),
        "window_cells": args.window_cells,
        "window_batch_cells": batch,
    }


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _device_name(name: str) -> str:
    device = pick_device(name)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True, help="where to write the figures")
    p.add_argument("--work", type=Path, required=True, help="set-up folder (~10 GB globally)")
    p.add_argument("--region", default=None, help="lon0,lat0,lon1,lat1 instead of the globe")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--state-dtype", choices=["float32", "bfloat16"], default="bfloat16")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--budget-gb", type=float, default=InferenceConfig().memory_budget_gb)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--autocast", choices=["none", "bfloat16"], default="none")
    p.add_argument("--workers", type=int, default=0, help="tile tasks on N local dask workers")
    p.add_argument("--window-cells", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--phase", choices=["all", "step"], default="all", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase == "step":
        print(json.dumps(step_day(args)))
        return
    t0 = time.perf_counter()
    setup_info = setup(args)
    load_before = [round(v, 2) for v in os.getloadavg()]
    child = [sys.executable, "-m", "benchmarks.inference_speed", *sys.argv[1:], "--phase", "step"]
    run = subprocess.run(child, check=True, capture_output=True, text=True)
    step = json.loads(run.stdout.strip().splitlines()[-1])
    load_after_step = [round(v, 2) for v in os.getloadavg()]
    window = window_throughput(args)
    land = np.load(args.work / "land.npy")
    result = {
        **step,
        "n_cells": int(land.sum()),
        "members": args.members,
        **window,
        "device": _device_name(args.device),
        "autocast": args.autocast,
        "state_dtype": args.state_dtype,
        "tile_size": args.tile_size,
        "memory_budget_gb": args.budget_gb,
        "workers": args.workers or "in-process",
        "domain": "global 9 km (EASE2 M09)" if not args.region else args.region,
        "setup": setup_info,
        "load_average_before_step": load_before,
        "load_average_after_step": load_after_step,
    }
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
