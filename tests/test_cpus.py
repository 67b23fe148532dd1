"""A container's CPU limit caps torch's threads (cgroup v2 and v1 files as the kernel
writes them)."""

from __future__ import annotations

import os

import pytest

from gsm3_ops.cpus import cpu_quota, limit_threads, usable_cpus


def _v2(tmp_path, text: str):
    (tmp_path / "cpu.max").write_text(text + "\n")
    return tmp_path


def test_quota_from_cgroup_v2_and_v1(tmp_path) -> None:
    assert cpu_quota(_v2(tmp_path, "150000 100000")) == 1.5
    assert cpu_quota(_v2(tmp_path, "max 100000")) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(v1) is None
    assert cpu_quota(tmp_path / "none") is None  # no cgroup files: no limit


def test_threads_capped_at_the_limit_unless_chosen(tmp_path, monkeypatch) -> None:
    root = _v2(tmp_path, "50000 100000")  # half a CPU: one thread
    assert usable_cpus(root) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert limit_threads(root) is None and os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to cap")
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        assert limit_threads(root) == 1
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
