"""Backfill on the demo profile, uninterrupted and killed midway (SIGKILL) then restarted.

Runs ``gsm3-ops backfill --start S --end E`` twice in fresh folders under ``--work``:

- ``whole``: one uninterrupted run (on a fresh folder it also ingests the training years and
  trains the demo ensemble first);
- ``killed``: the same backfill, killed with SIGKILL once ``--kill-after`` days are published,
  then run again to the end. With ``--reuse-model`` (default) it starts from a copy of the
  ``whole`` run's trained bundle, so the machine does not spend the training time twice
  (the bundle id is a hash of its weights, so it is the same model either way).

Then every COG of the two product folders is compared byte for byte. Both read the demo's
archive (``gsm3-demo/archive`` under the working directory, written first by ``gsm3-ops
world`` when absent, as ``make demo`` does), so the days must lie in the world's 2019-2020.

    python -m benchmarks.backfill_resume --work /tmp/bf --json backfill_resume.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from gsm3_ops.publish.manifest import manifest_path


def _cli(config: Path, start: dt.date, end: dt.date) -> list[str]:
    exe = Path(sys.executable).with_name("gsm3-ops")
    return [str(exe), "backfill", "--config", str(config), "--quiet",
            "--start", start.isoformat(), "--end", end.isoformat()]  # fmt: skip


def _config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    doc = {
        "profile": "demo",
        "data_root": str(folder / "data"),
        "publish_root": str(folder / "pub"),
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` to the end; its seconds. Raises when it fails."""
    t0 = time.perf_counter()
    with log.open("a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}; see {log}")
    return time.perf_counter() - t0


def _cogs(pub: Path) -> dict[str, bytes]:
    return {str(p.relative_to(pub)): p.read_bytes() for p in sorted(pub.rglob("*.tif"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="an empty folder for both runs")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2020, 12, 1))
    p.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2020, 12, 31))
    p.add_argument("--kill-after", type=int, default=15, help="published days before SIGKILL")
    p.add_argument("--no-reuse-model", dest="reuse_model", action="store_false")
    args = p.parse_args()
    work = args.work.resolve()
    whole, killed = work / "whole", work / "killed"
    if whole.exists() or killed.exists():
        raise SystemExit(f"{args.work} already holds a run; give an empty folder")
    cmd_whole = _cli(_config(whole), args.start, args.end)
    world = [cmd_whole[0], "world", *cmd_whole[2:5]]  # the demo's archive, once
    _run(world, work / "world.txt")
    seconds_whole = _run(cmd_whole, whole / "log.txt")

    config = _config(killed)
    if args.reuse_model:
        shutil.copytree(whole / "data" / "models", killed / "data" / "models")
    cmd = _cli(config, args.start, args.end)
    mark = manifest_path(killed / "pub", args.start + dt.timedelta(days=args.kill_after - 1))
    t0 = time.perf_counter()
    with (killed / "log.txt").open("a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        while not mark.exists() and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    seconds_to_kill = time.perf_counter() - t0
    if not mark.exists():
        raise SystemExit(f"the killed run ended before {mark.name} was published")
    published_at_kill = len(list((killed / "pub").rglob("gsm3_*[0-9].json")))
    seconds_restart = _run(cmd, killed / "log.txt")

    a, b = _cogs(whole / "pub"), _cogs(killed / "pub")
    differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    result = {
        "command": " ".join(cmd_whole[1:]),
        "days": (args.end - args.start).days + 1,
        "seconds_uninterrupted": round(seconds_whole, 1),
        "seconds_until_kill": round(seconds_to_kill, 1),
        "day_manifests_at_kill": published_at_kill,
        "seconds_restart_to_end": round(seconds_restart, 1),
        "reused_model": args.reuse_model,
        "cogs": len(a),
        "cogs_only_in_one_run": sorted(a.keys() ^ b.keys()),
        "cogs_differing": differ,
        "identical": not differ and a.keys() == b.keys() and len(a) > 0,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["identical"]:
        raise SystemExit("the killed and restarted backfill differs from the uninterrupted one")


if __name__ == "__main__":
    main()
