"""How many CPUs this process may use, so torch does not start more threads than a
container's CPU limit allows (oversubscribed, it slows down several-fold).

The count is the smallest of the CPUs this process may run on (its affinity) and the cgroup's
CPU quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in v1),
rounded down, at least 1.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cpu_quota(root: Path = CGROUP) -> float | None:
    """The cgroup's CPU limit in CPUs (1.5 for ``150000 100000``), or None when unlimited."""
    try:
        text = (root / "cpu.max").read_text().split()
        quota, period = text[0], text[1]
    except (OSError, IndexError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup quota (rounded down)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cpu_quota(root)
    if quota is not None:
        n = min(n or 1, math.floor(quota))
    return max(1, n or 1)


def limit_threads(root: Path = CGROUP) -> int | None:
    """Cap torch's (and OpenMP's) threads at :func:`usable_cpus` unless ``OMP_NUM_THREADS``
    is set; returns the cap, or None when nothing was changed."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the operator chose
    n = usable_cpus(root)
    if n >= (os.cpu_count() or 1):
        return None
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch when it starts, and by workers
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n
