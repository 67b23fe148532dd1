"""Shared fixtures: the real-data folder (``GSM3_FIXTURES``, default ``../shared/data``), the
session's synthetic-world archive with its ingested cube (``world_site``) and the session's
S3 server on loopback (``s3_server``, tests/s3server.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyproj  # noqa: F401  (before eccodes; see gsm3_ops/__init__.py)
import pytest

from tests.s3server import s3_server  # noqa: F401  (the session fixture)

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


@pytest.fixture(scope="session")
def world_site(tmp_path_factory):
    """The synthetic world's archive over the tests' window, and a data root ingested from
    it through the real readers by ``gsm3-ops world`` and ``gsm3-ops ingest`` (once per
    session; see ``tests/world_site.py``)."""
    from typer.testing import CliRunner

    from gsm3_ops.cli import app
    from tests.world_site import END, GRIDDED, START, TRAIN_END, WorldSite

    tmp = tmp_path_factory.mktemp("world_site")
    site = WorldSite(tmp / "archive", tmp / "data", {})
    config = str(site.config(tmp, ingested=False))

    def cli(step: str, *args: str) -> None:
        result = CliRunner().invoke(app, [*args, "--config", config, "--quiet"])
        assert result.exit_code == 0, f"gsm3-ops {' '.join(args)}: {result.output}"
        site.printed[step] = result.output

    span = ("--date", str(START), "--end", str(END))
    cli("world", "world")
    cli("gridded", "ingest", *[a for name in GRIDDED for a in ("--source", name)], *span)
    cli("ismn", "ingest", "--source", "ismn", "--date", str(START), "--end", str(TRAIN_END))
    cli("static", "ingest", "--source", "static", "--date", str(START))
    return site


@pytest.fixture
def restore_root_logger():
    """Put the root logger's handlers and level back after a test that sets up logging."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    root.handlers[:] = before
    root.setLevel(level)
