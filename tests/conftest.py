"""Shared fixtures: the real-data folder (``GSM3_FIXTURES``, default ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pyproj  # noqa: F401  (before eccodes; see gsm3_ops/__init__.py)
import pytest

ROOT = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """The real-data fixture folder, from ``GSM3_FIXTURES`` or ``../shared/data``."""
    return Path(os.environ.get("GSM3_FIXTURES", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real-data fixture folder; skips the test when it is absent."""
    path = fixtures_dir()
    if not path.is_dir():
        pytest.skip(f"real-data fixtures not found at {path} (set GSM3_FIXTURES)")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: one torch thread avoids spin-waiting on a busy shared CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
