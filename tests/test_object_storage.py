"""Publishing to object storage: the local publish root mirrored to a real S3 server
(SeaweedFS on loopback) and read back by xarray, GDAL and plain HTTP; a mirror killed between
any two steps never shows a reader half a day, and ``resume`` finishes it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from gsm3_ops.config import ProductConfig
from gsm3_ops.errors import PublishError
from gsm3_ops.grid import M09, Window
from gsm3_ops.publish.day import DayProduct, publish_day
from gsm3_ops.publish.layers import FLAG_FILL
from gsm3_ops.publish.manifest import DayManifest, failure_path, manifest_path
from gsm3_ops.publish.remote import (
    RemoteRoot,
    is_remote,
    local_keys,
    pending,
    plan,
    resume,
    sync_all,
    upload_order,
)
from tests.s3server import S3Server, free_ports

WINDOW = Window(800, 2300, 12, 10)
CFG = ProductConfig(start=dt.date(2020, 1, 1), timeseries_copy=True)
CHUNK = 16  # one chunk a layer and day: few objects a day, as each kill point costs a process
D1, D2, D3 = dt.date(2020, 3, 1), dt.date(2020, 3, 2), dt.date(2020, 3, 4)
ZARR = "gsm3.zarr"
STORES = (ZARR, "gsm3_timeseries.zarr")  # the product and its time-series copy
# The listings a reader sees, each by the object that carries it: the days that latest.json,
# days.json and the STAC collection name, the last day on each Zarr's time axis.
LISTINGS = ("latest.json", "days.json", "stac/collection.json",
            *(f"{store}/.zmetadata" for store in STORES))  # fmt: skip

# A process that imports once, then for each k read on stdin forks a child that mirrors the
# changes with GSM3_MIRROR_KILL_AFTER=k (so it SIGKILLs itself after its k-th operation) and
# prints the child's exit code: a fresh Python a kill point would cost a second of imports.
KILLER = """
import json, os, sys, traceback
from pathlib import Path
import s3fs  # noqa: F401
from gsm3_ops.publish.remote import KILL_ENV, RemoteRoot, mirror
root, url, spec = sys.argv[1:]
spec = json.loads(Path(spec).read_text())
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            os.environ[KILL_ENV] = line.strip()
            mirror(Path(root), RemoteRoot(url), spec["changed"], spec["removed"])
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def layers_for(day: dt.date) -> dict[str, np.ndarray]:
    """Deterministic layers of ``day`` (a corner of sea, as no-data)."""
    rng = np.random.default_rng(day.toordinal())
    sm = rng.uniform(0.05, 0.45, WINDOW.shape).astype(np.float32)
    sm[:2, :3] = np.nan
    flag = np.where(np.isnan(sm), FLAG_FILL, rng.integers(0, 32, WINDOW.shape)).astype(np.uint8)
    return {"soil_moisture": sm, "soil_moisture_sd": sm / 10, "quality_flag": flag}


def publish(root: Path, day: dt.date) -> None:
    """Publish ``day`` under ``root`` with the real publisher."""
    dp = DayProduct(
        day,
        layers_for(day),
        tags={"bundle_id": "bundle-1", "inputs": "synthetic:v1"},
        properties={"gsm3:bundle_id": "bundle-1"},
        land=np.ones(WINDOW.shape, bool),
        extra_files={root / "manifests" / f"gsm3_{day:%Y%m%d}.config.yaml": b"profile: demo\n"},
    )
    record = DayManifest(date=day, status="complete")
    publish_day(root, M09, WINDOW, CFG, CHUNK, dp, record)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every published file, by key."""
    return {k: hashlib.sha256((root / k).read_bytes()).hexdigest() for k in local_keys(root)}


@pytest.fixture
def server(request) -> S3Server:
    """The session's SeaweedFS S3 server (``tests.s3server.s3_server``)."""
    return request.getfixturevalue("s3_server")


@pytest.fixture(scope="module")
def two_days(tmp_path_factory) -> Path:
    """A local publish root with two published days."""
    root = tmp_path_factory.mktemp("two_days") / "pub"
    publish(root, D1)
    publish(root, D2)
    return root


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _options(server: S3Server) -> dict:
    return {**server.storage_options(), "use_listings_cache": False}


def _remote_keys(server: S3Server, prefix: str) -> list[str]:
    base = f"{server.bucket}/{prefix}/"
    return sorted(p.removeprefix(base) for p in server.filesystem().find(base))


def _http(server: S3Server, prefix: str, key: str, method: str = "GET") -> bytes | None:
    """An anonymous HTTP request for ``key``: the body, or None when it is absent."""
    request = urllib.request.Request(server.http_url(f"{prefix}/{key}"), method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _json(server: S3Server, prefix: str, key: str) -> dict:
    body = _http(server, prefix, key)
    assert body is not None, f"{key} is referenced but absent"
    return json.loads(body)


def _open_zarr(server: S3Server, prefix: str, store: str = ZARR) -> xr.Dataset:
    """A published Zarr over s3fs, through its consolidated metadata only."""
    url = f"s3://{server.bucket}/{prefix}/{store}"
    return xr.open_zarr(url, consolidated=True, storage_options=_options(server))


def read_remote(server: S3Server, prefix: str) -> dict[str, tuple[dt.date, ...]]:
    """What a reader of the remote root sees, by listing (see ``LISTINGS``), after checking
    that it is whole: every day that ``latest.json``, ``days.json`` or the STAC collection
    names has its STAC item and every asset of the item, and its values in the consolidated
    Zarr, whose arrays all have the time axis' length; every day of ``latest.json`` and
    ``days.json`` (uploaded after the manifests) has its manifest too."""
    latest = _json(server, prefix, "latest.json")
    days = [dt.date.fromisoformat(d) for d in _json(server, prefix, "days.json")["days"]]
    collection = _json(server, prefix, "stac/collection.json")
    linked = []
    for link in collection["links"]:
        if link["rel"] != "item":
            continue
        key = posixpath.normpath(posixpath.join("stac", link["href"]))
        item = _json(server, prefix, key)
        linked.append(dt.date.fromisoformat(item["properties"]["datetime"][:10]))
        for asset in item["assets"].values():
            href = posixpath.normpath(posixpath.join(posixpath.dirname(key), asset["href"]))
            assert _http(server, prefix, href, "HEAD") is not None, f"{href} of {key} is absent"
    indexed = {dt.date.fromisoformat(latest["day"]), *days}
    assert indexed <= set(linked), "a day in days.json or latest.json has no STAC item"
    for day in indexed:
        manifest = manifest_path(Path(), day).as_posix()
        assert _json(server, prefix, manifest)["status"] == "complete", manifest
    seen = {
        "latest.json": (dt.date.fromisoformat(latest["day"]),),
        "days.json": tuple(days),
        "stac/collection.json": tuple(sorted(linked)),
    }
    stores = [posixpath.normpath(posixpath.join("stac", asset["href"]))
              for asset in collection["assets"].values() if "zarr" in asset["type"]]  # fmt: skip
    assert sorted(stores) == sorted(STORES)
    for store in stores:  # the product and its time-series copy
        with _open_zarr(server, prefix, store) as ds:
            lengths = {n: ds[n].sizes["time"] for n in ds.variables if "time" in ds[n].dims}
            assert set(lengths.values()) == {ds.sizes["time"]}, (store, lengths)
            axis = list(ds.indexes["time"].date)
            for day in {*indexed, *linked}:
                assert day in axis, f"{day} is listed but not in {store}"
                np.testing.assert_array_equal(
                    ds.soil_moisture.sel(time=str(day)).values, layers_for(day)["soil_moisture"]
                )
        seen[f"{store}/.zmetadata"] = (axis[-1],)
    return seen


def _listed(*days: dt.date) -> dict[str, tuple[dt.date, ...]]:
    """What :func:`read_remote` returns when ``days`` are published."""
    return {"latest.json": days[-1:], "days.json": days, "stac/collection.json": days,
            **{f"{store}/.zmetadata": days[-1:] for store in STORES}}  # fmt: skip


# ---------------------------------------------------------------------------- the order


def test_upload_order_puts_data_first_and_latest_last() -> None:
    ordered = [
        "cog/2020/gsm3_sm_20200304.tif",
        "gsm3.zarr/soil_moisture/63/0/0",
        "gsm3.zarr/time/0",
        "gsm3_timeseries.zarr/soil_moisture/0/0/0",
        "quicklook/2020/gsm3_ql_20200304.png",
        "gsm3.zarr/.zattrs",
        "gsm3.zarr/soil_moisture/.zarray",
        "gsm3_timeseries.zarr/soil_moisture/.zarray",
        "gsm3.zarr/time/.zarray",
        "gsm3.zarr/.zmetadata",
        "gsm3_timeseries.zarr/.zmetadata",
        "stac/items/2020/gsm3-ops-soil-moisture-20200304.json",
        "stac/collection.json",
        "manifests/gsm3_20200304.config.yaml",
        "manifests/2020/gsm3_20200304.json",
        "days.json",
        "latest.json",
    ]
    assert upload_order(reversed(ordered)) == ordered
    assert upload_order([*ordered[::2], *ordered[1::2]]) == ordered
    removed = ["gsm3.zarr/soil_moisture/0/0/0", "manifests/2020/gsm3_20200304.failed.json"]
    ops = plan(["latest.json", "gsm3.zarr/.zmetadata"], removed)
    assert ops == [
        {"op": "put", "key": "gsm3.zarr/.zmetadata"},
        {"op": "put", "key": "latest.json"},
        {"op": "delete", "key": "manifests/2020/gsm3_20200304.failed.json"},
        {"op": "delete", "key": "gsm3.zarr/soil_moisture/0/0/0"},
    ]
    with pytest.raises(ValueError, match="not a key"):
        plan(["../outside.json"])


def test_remote_roots_and_local_keys(tmp_path) -> None:
    assert is_remote("s3://bucket/prefix") and is_remote("gs://bucket")
    assert not is_remote("/data/publish") and not is_remote("file:///data")
    assert not is_remote(Path("s3:/looks/like/a/url"))
    with pytest.raises(ValueError, match="not a remote URL"):
        RemoteRoot("/data/publish")
    published = ["cog/a.tif", "gsm3.zarr/.zmetadata"]
    work = [".staging/x/new/cog/a.tif", ".journal/t.json", ".upload/u.json", ".publish.lock",
            "cog/.a.tif.tmp-1-ab"]  # fmt: skip
    for key in published + work:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
    assert local_keys(tmp_path) == published


# ---------------------------------------------------------------------------- over S3


def test_a_synced_root_reads_back_over_s3(server, two_days, tmp_path, monkeypatch) -> None:
    prefix = "synced/product"
    root = _copy(two_days, tmp_path / "pub")
    remote = RemoteRoot(server.url(prefix), server.storage_options())
    assert sync_all(root, remote) == len(local_keys(root))
    assert not pending(root)
    assert _remote_keys(server, prefix) == local_keys(root)
    assert read_remote(server, prefix) == _listed(D1, D2)

    # latest.json by a plain HTTP GET, and through the API, byte for byte
    assert _http(server, prefix, "latest.json") == (root / "latest.json").read_bytes()
    assert remote.read_bytes("days.json") == (root / "days.json").read_bytes()
    assert remote.exists("latest.json") and not remote.exists("no/such/key.json")
    with pytest.raises(FileNotFoundError):
        remote.read_bytes("no/such/key.json")
    remote.delete("no/such/key.json")  # already gone: nothing to do
    # the whole Zarr over s3fs equals the local one
    with _open_zarr(server, prefix) as far, xr.open_zarr(root / ZARR, consolidated=True) as near:
        xr.testing.assert_identical(far.load(), near.load())
    # a COG through GDAL's /vsis3/, which takes the credentials from the environment
    for name, value in server.aws_env().items():
        monkeypatch.setenv(name, value)
    cog = f"cog/{D2:%Y}/gsm3_sm_{D2:%Y%m%d}.tif"
    with (
        rasterio.Env(**server.gdal_env()),
        rasterio.open(f"/vsis3/{server.bucket}/{prefix}/{cog}") as far,
        rasterio.open(root / cog) as near,
    ):
        assert far.crs == near.crs and far.transform == near.transform
        assert far.tags() == near.tags()
        np.testing.assert_array_equal(far.read(1), near.read(1))
        np.testing.assert_array_equal(far.read(1), layers_for(D2)["soil_moisture"])


def _restore(remote: RemoteRoot, old: Path, ops: list[dict[str, str]]) -> None:
    """Put the remote objects that ``ops`` touched back as they were in the ``old`` root."""
    for op in ops:
        key = op["key"]
        if (old / key).is_file():
            remote.put(old / key, key)
        else:
            remote.delete(key)


def _killed_mirror(killer: subprocess.Popen, k: int) -> None:
    """Run the mirror in a child of ``killer`` that kills itself after operation ``k``."""
    killer.stdin.write(f"{k}\n")
    killer.stdin.flush()
    code = killer.stdout.readline().strip()
    assert code == str(-signal.SIGKILL), f"the mirror killed after {k} steps exited with {code}"


def test_a_mirror_killed_between_any_two_steps_shows_the_old_days_or_the_new(
    server, two_days, tmp_path
) -> None:
    prefix = "killed"
    root = _copy(two_days, tmp_path / "pub")
    failed = failure_path(root, D3)  # D3 failed once: its record goes when it is published
    DayManifest.failure(D3, "ERA5-Land not available yet").save_failure(root)
    old = _copy(root, tmp_path / "old")
    remote = RemoteRoot(server.url(prefix), server.storage_options())
    sync_all(root, remote)
    assert read_remote(server, prefix) == _listed(D1, D2)

    before = snapshot(root)
    publish(root, D3)
    failed.unlink()  # as the pipeline does once a day is published
    after = snapshot(root)
    changed = sorted(k for k in after if before.get(k) != after[k])
    removed = sorted(set(before) - set(after))
    assert removed == [failed.relative_to(root).as_posix()]
    spec = tmp_path / "changes.json"
    spec.write_text(json.dumps({"changed": changed, "removed": removed}))
    ops = plan(changed, removed)
    step = {op["key"]: n for n, op in enumerate(ops, start=1)}  # ops done once a key is in
    assert ops[-2]["key"] == "latest.json" and ops[-1]["op"] == "delete"

    env = {**os.environ, **server.aws_env()}  # the mirror finds the server from AWS_* alone
    killer = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(root), server.url(prefix), str(spec)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    with killer:
        for k in range(len(ops) + 1):
            _restore(remote, old, ops)  # the remote as it was before the day
            _killed_mirror(killer, k)
            assert len(pending(root)) == 1
            seen = read_remote(server, prefix)
            for listing in LISTINGS:
                expected = _listed(D1, D2, D3) if k >= step[listing] else _listed(D1, D2)
                assert seen[listing] == expected[listing], (k, ops[k - 1] if k else None, listing)
            gone = _http(server, prefix, removed[0], "HEAD") is None
            assert gone == (k == len(ops)), k  # the failure record is deleted last
            assert resume(root, remote) == 1
            assert not pending(root)
            assert _http(server, prefix, "latest.json") == (root / "latest.json").read_bytes()

    assert read_remote(server, prefix) == _listed(D1, D2, D3)
    assert _remote_keys(server, prefix) == local_keys(root)
    assert resume(root, remote) == 0


def test_a_failed_upload_is_one_line_without_the_secret_and_resume_finishes_it(
    server, two_days, tmp_path
) -> None:
    prefix = "failing"
    root = _copy(two_days, tmp_path / "pub")
    url = server.url(prefix)
    wrong = "wrong-secret-that-must-not-leak"
    first = upload_order(local_keys(root))[0]
    with pytest.raises(PublishError) as failed:
        sync_all(root, RemoteRoot(url, {**server.storage_options(), "secret": wrong}))
    message = str(failed.value)
    assert "\n" not in message and f"{first} on {url}" in message
    assert wrong not in message and server.secret_key not in message
    assert len(pending(root)) == 1
    assert _remote_keys(server, prefix) == []

    port = free_ports(1)[0]  # nothing listens there
    unreachable = RemoteRoot(url, {**server.storage_options(), "endpoint_url":
                                   f"http://127.0.0.1:{port}"}, attempts=2)  # fmt: skip
    with pytest.raises(PublishError, match=f"uploading {first} on {url} failed") as failed:
        sync_all(root, unreachable)  # finishing the first journal fails: no second one
    assert "\n" not in str(failed.value) and server.secret_key not in str(failed.value)
    assert len(pending(root)) == 1

    assert resume(root, RemoteRoot(url, server.storage_options())) == 1
    assert not pending(root)
    assert _remote_keys(server, prefix) == local_keys(root)
    assert read_remote(server, prefix) == _listed(D1, D2)
