"""Load test of ``gsm3-ops serve``: point, time-series and tile latency at 50 concurrent clients.

Builds (or reuses, under ``--work``) a publish root of ``--days`` published days over a small
window (15 x 12 cells of M09 in Kenya, 8-cell chunks, the default time-series copy), written by
the real :func:`~gsm3_ops.publish.day.publish_day`; starts the service as a subprocess
(``gsm3-ops serve --root``: uvicorn, one worker, uvloop + httptools) on a free loopback port;
and drives it from this process with asyncio + aiohttp, ``--clients`` concurrent connections:

- ``point``: random cells, latest day. Closed loop (every client sends its next request as
  soon as it has an answer: the saturation throughput) and open loop at ``--point-rate``
  requests/s spread over the clients (the latency at that offered load);
- ``timeseries_365``: random cells, the last 365 published days, JSON; closed loop, and open
  loop at ``--series-rate``;
- ``tiles_cold``: every tile of zooms 5-9 over the window for each of ``--tile-days`` days,
  each requested once (rendered from the COG); ``tiles_warm``: the same tiles again (cache).

Each scenario runs ``--repeats`` times and the medians are reported, with the load average,
the server's threads and the machine. By Little's law a closed loop of 50 clients answering
R requests/s has a mean latency of 50/R, so the latency bars are read from the open-loop
runs and the throughput bar from the closed-loop runs.

    python -m benchmarks.serve_load --json benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import morecantile
import numpy as np

from gsm3_ops.config import ProductConfig
from gsm3_ops.grid import M09
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import FLAG_FILL
from gsm3_ops.publish.manifest import DayManifest

WINDOW = M09.window_from_bbox(36.0, -2.0, 37.0, -1.0)
FIRST_DAY = dt.date(2020, 1, 1)
TMS = morecantile.tms.get("WebMercatorQuad")


def build_root(root: Path, n_days: int) -> dict[str, Any]:
    """Publish days ``FIRST_DAY ..`` until ``root`` holds ``n_days`` (resumes a partial root)."""
    cfg = ProductConfig(start=FIRST_DAY, quicklook=False)  # the default time-series copy
    index = root / "days.json"
    have = set(json.loads(index.read_text())["days"]) if index.exists() else set()
    t0 = time.perf_counter()
    built = 0
    for i in range(n_days):
        day = FIRST_DAY + dt.timedelta(days=i)
        if day.isoformat() in have:
            continue
        rng = np.random.default_rng(day.toordinal())
        season = 0.25 + 0.1 * np.sin(2 * np.pi * i / 365.25)
        sm = np.clip(rng.normal(season, 0.05, WINDOW.shape), 0.02, 0.5).astype(np.float32)
        sm[:2, :3] = np.nan
        flag = np.where(np.isnan(sm), FLAG_FILL, rng.integers(0, 32, WINDOW.shape))
        layers = {"soil_moisture": sm, "soil_moisture_sd": (sm / 10).astype(np.float32),
                  "quality_flag": flag.astype(np.uint8)}  # fmt: skip
        dp = DayProduct(day, layers, {"bundle_id": "bench"})
        record = DayManifest(date=day, status="complete", bundle_id="bench",
                             product_version=cfg.version)  # fmt: skip
        publish_day(root, M09, WINDOW, cfg, 8, dp, record)
        built += 1
    return {"days": n_days, "built_now": built, "build_seconds": round(time.perf_counter() - t0, 1)}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int) -> subprocess.Popen:
    """``gsm3-ops serve --root`` in a subprocess; returns once ``/health`` answers."""
    exe = Path(sys.executable).with_name("gsm3-ops")
    proc = subprocess.Popen([str(exe), "serve", "--root", str(root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")


def _summary(latencies: list[float], seconds: float, errors: int) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[float, bool]:
    t0 = time.perf_counter()
    async with session.get(url) as r:
        await r.read()
        ok = r.status == 200
    return time.perf_counter() - t0, ok


async def closed_loop(base: str, urls: list[str], clients: int, seconds: float) -> dict:
    """Every client requests its next URL as soon as the last one answered."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def client(k: int) -> None:
            nonlocal errors
            rnd = random.Random(k)
            while time.perf_counter() < stop:
                took, ok = await _get(session, rnd.choice(urls))
                latencies.append(took)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        return _summary(latencies, time.perf_counter() - t0, errors)


async def open_loop(base: str, urls: list[str], clients: int, rate: float, seconds: float) -> dict:
    """``rate`` requests/s in all, spread evenly over ``clients`` connections, each sent on
    schedule (latency counts from the scheduled time, so a slow server is not hidden)."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        start = time.perf_counter() + 0.1
        n = int(rate * seconds)

        async def one(i: int) -> None:
            nonlocal errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            t0 = time.perf_counter()
            async with session.get(urls[i % len(urls)]) as r:
                await r.read()
                errors += r.status != 200
            latencies.append(time.perf_counter() - min(t0, due + 0.001))

        await asyncio.gather(*(one(i) for i in range(n)))
        return _summary(latencies, time.perf_counter() - start, errors)


async def each_once(base: str, urls: list[str], clients: int) -> dict:
    """Every URL once, ``clients`` at a time."""
    latencies: list[float] = []
    errors = 0
    queue = list(urls)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while queue:
                took, ok = await _get(session, queue.pop())
                latencies.append(took)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return _summary(latencies, time.perf_counter() - t0, errors)


def _points(n: int, seed: int) -> list[tuple[float, float]]:
    lon, lat = M09.lonlat(WINDOW)
    rng = np.random.default_rng(seed)
    rows = rng.integers(2, WINDOW.n_rows, n)  # below the no-data corner rows
    cols = rng.integers(0, WINDOW.n_cols, n)
    pairs = zip(rows, cols, strict=True)
    return [(round(float(lon[r, c]), 5), round(float(lat[r, c]), 5)) for r, c in pairs]


def _tiles(days: list[str]) -> list[str]:
    lon, lat = M09.lonlat(WINDOW)
    urls = []
    for day in days:
        for z in range(5, 10):
            for t in TMS.tiles(lon.min(), lat.min(), lon.max(), lat.max(), [z]):
                urls.append(f"/tiles/soil_moisture/{day}/{t.z}/{t.x}/{t.y}.png")
    return urls


def _median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _server_threads(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


async def run_all(base: str, days: list[str], args: argparse.Namespace) -> dict[str, Any]:
    points = [f"/point?lon={x}&lat={y}" for x, y in _points(2000, 1)]
    start = days[-365]
    series = [f"/timeseries?lon={x}&lat={y}&start={start}" for x, y in _points(500, 2)]
    # warm the caches (one pass over every URL) so the runs measure the steady state
    await each_once(base, points + series, args.clients)
    results: dict[str, list[dict]] = {k: [] for k in (
        "point_closed", "point_open", "timeseries_365_closed", "timeseries_365_open",
        "tiles_cold", "tiles_warm")}  # fmt: skip
    for rep in range(args.repeats):
        results["point_closed"].append(await closed_loop(base, points, args.clients, args.seconds))
        results["point_open"].append(
            await open_loop(base, points, args.clients, args.point_rate, args.seconds)
        )
        results["timeseries_365_closed"].append(
            await closed_loop(base, series, args.clients, args.seconds)
        )
        results["timeseries_365_open"].append(
            await open_loop(base, series, args.clients, args.series_rate, args.seconds)
        )
        # each repeat renders other days: its first pass is cold
        tiles = _tiles(
            days[len(days) - (rep + 1) * args.tile_days : len(days) - rep * args.tile_days]
        )
        results["tiles_cold"].append(await each_once(base, tiles, args.clients))
        results["tiles_warm"].append(await each_once(base, tiles, args.clients))
    out: dict[str, Any] = {k: _median(v) for k, v in results.items()}
    out["runs"] = results
    out["tiles_per_run"] = len(tiles)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True, help="where to write the figures")
    p.add_argument("--work", type=Path, default=Path("/tmp/gsm3-serve-bench-v2"),
                   help="publish root to build or reuse")  # fmt: skip
    p.add_argument("--days", type=int, default=400)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=8.0, help="per closed/open-loop run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--point-rate", type=float, default=500.0)
    p.add_argument("--series-rate", type=float, default=100.0)
    p.add_argument("--tile-days", type=int, default=1)
    args = p.parse_args()
    if args.days < 366:
        raise SystemExit("--days must be at least 366 for a 365-day series")
    build = build_root(args.work, args.days)
    days = json.loads((args.work / "days.json").read_text())["days"][: args.days]
    port = free_port()
    server = start_server(args.work, port)
    try:
        t0 = time.perf_counter()
        figures = asyncio.run(run_all(f"http://127.0.0.1:{port}", days, args))
        threads = _server_threads(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    doc = {
        "command": " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]]),
        "published_days": len(days),
        "window_cells": list(WINDOW.shape),
        "clients": args.clients,
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "point_rate_offered": args.point_rate,
        "series_rate_offered": args.series_rate,
        "build": build,
        **{k: v for k, v in figures.items() if k != "runs"},
        "bars": {
            "point_p99_ms_le_25": figures["point_open"]["p99_ms"] <= 25,
            "point_rps_ge_500": figures["point_closed"]["rps"] >= 500,
            "timeseries_365_p50_ms_le_50": figures["timeseries_365_open"]["p50_ms"] <= 50,
            "tile_warm_p50_ms_le_50": figures["tiles_warm"]["p50_ms"] <= 50,
        },
        "runs": figures["runs"],
        "load_seconds": round(time.perf_counter() - t0, 1),
        "server_threads": threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("point_closed", "point_open", "timeseries_365_closed",
                                          "timeseries_365_open", "tiles_cold", "tiles_warm",
                                          "bars")}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
