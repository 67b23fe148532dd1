"""Mirror the local publish root to object storage (``s3://bucket/prefix``) so that remote
readers never see half a day.

A day is published atomically into the local root first (:mod:`gsm3_ops.publish.day`); then
its changed files are copied to the remote root, one object per PUT (atomic per object on S3),
in the order of :func:`upload_order`: data, then Zarr array metadata, then each store's
consolidated ``.zmetadata`` (which alone makes a new day visible to Zarr readers), STAC items,
the collection, day manifests, ``days.json`` and ``latest.json`` last. Objects that no longer
exist locally are deleted after every upload, pointers before the data they pointed to.

:func:`mirror` writes the ordered operations to a journal ``<root>/.upload/<id>.json`` first
and removes it when all are done; :func:`resume` replays the journals that a failed or killed
mirror left (every operation is idempotent). Both hold the local publication lock, so no day
is published locally while its files upload: call them outside
:func:`~gsm3_ops.publish.atomic.publish_lock`, e.g. ``resume`` before ``publish_day`` and
``mirror`` after it.

Fault injection (tests only): with ``GSM3_MIRROR_KILL_AFTER=k`` in the environment, the process
kills itself with SIGKILL after the k-th operation of a journal it replays (``0``: right after
the journal is written), to check what readers see when a mirror dies between two steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import fsspec
from fsspec.core import split_protocol
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from gsm3_ops.atomicfile import write_json_atomic
from gsm3_ops.errors import PublishError
from gsm3_ops.publish.atomic import publish_lock
from gsm3_ops.secrets import MASK, redact

log = logging.getLogger(__name__)

UPLOADS = ".upload"  # pending-upload journals, in the local root
KILL_ENV = "GSM3_MIRROR_KILL_AFTER"  # fault-injection hook for tests (see the module doc)
ZARR_META = (".zarray", ".zattrs", ".zgroup")
CONSOLIDATED = ".zmetadata"
_DAY_MANIFEST = re.compile(r"gsm3_\d{8}\.json$")
_SECRET_OPTION = re.compile(r"(key|secret|token|password)", re.IGNORECASE)
_NOT_TRANSIENT = (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                  ValueError)  # fmt: skip
_BUGS = (TypeError, AttributeError, KeyError, NameError, AssertionError)
T = TypeVar("T")


def is_remote(root: str | Path) -> bool:
    """Whether ``root`` is an fsspec URL with a scheme other than ``file`` (``s3://...``)."""
    if isinstance(root, Path):
        return False
    protocol, _ = split_protocol(str(root))
    return protocol not in (None, "file", "local")


class RemoteRoot:
    """The remote publish root ``url`` over an fsspec file system.

    Parameters
    ----------
    url
        ``s3://bucket/prefix`` (or another fsspec URL).
    storage_options
        Passed to the file system (for s3fs: ``key``, ``secret``, ``endpoint_url``,
        ``client_kwargs`` ...). Without them s3fs takes credentials from the standard
        ``AWS_*`` environment variables, the endpoint from ``AWS_ENDPOINT_URL_S3`` or
        ``AWS_ENDPOINT_URL``.
    attempts
        Tries per operation: transient errors (a lost connection, a timeout, a 5xx) are
        retried after a short, growing pause (0.2 s, doubling, at most 2 s).
    """

    def __init__(
        self, url: str, storage_options: dict[str, Any] | None = None, attempts: int = 3
    ) -> None:
        protocol, _ = split_protocol(url)
        if not is_remote(url) or protocol is None:
            raise ValueError(f"{url} is not a remote URL (s3://bucket/prefix)")
        self.url = url.rstrip("/")
        self.attempts = attempts
        options = _options(protocol, dict(storage_options or {}))
        self._secrets = _option_secrets(options)
        self.fs = fsspec.filesystem(protocol, **options)
        self._root = self.fs._strip_protocol(self.url).rstrip("/")

    def __repr__(self) -> str:
        return f"RemoteRoot({self.url!r})"

    def path(self, key: str) -> str:
        """The file system path of ``key`` (a key relative to the root, ``/``-separated)."""
        return f"{self._root}/{_check_key(key)}"

    def put(self, local: Path, key: str) -> None:
        """Upload the local file ``local`` to ``key``: one PUT (a multipart upload above
        s3fs' 50 MiB block, which S3 also shows only once it is complete)."""
        self._call("uploading", key, self.fs.put_file, str(local), self.path(key))

    def delete(self, key: str) -> None:
        """Delete ``key``; nothing happens when it is already gone."""
        with contextlib.suppress(FileNotFoundError):
            self._call("deleting", key, self.fs.rm_file, self.path(key),
                       passthrough=(FileNotFoundError,))  # fmt: skip

    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``; FileNotFoundError when absent."""
        return self._call("reading", key, self.fs.cat_file, self.path(key),
                          passthrough=(FileNotFoundError,))  # fmt: skip

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return bool(self._call("checking", key, self.fs.exists, self.path(key)))

    def _call(
        self,
        what: str,
        key: str,
        func: Callable[..., T],
        *args: Any,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        """``func(*args)`` with retries; a failure becomes a one-line PublishError naming the
        key and the remote (exceptions of ``passthrough`` types, and bugs, are re-raised)."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            return retrying(func, *args)
        except (*_BUGS, *passthrough):
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            message = f"{what} {key} on {self.url} failed: {reason}"
            raise PublishError(self._mask(message)) from exc

    def _mask(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, MASK)
        return redact(text)


def _options(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """Storage options with the s3 endpoint from the environment and no instance cache (so
    credentials from the environment are read afresh)."""
    options.setdefault("skip_instance_cache", True)
    if protocol in ("s3", "s3a"):
        client = options.get("client_kwargs") or {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in options and "endpoint_url" not in client:
            options["endpoint_url"] = endpoint
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", {"max_attempts": 2, "mode": "standard"})
        config.setdefault("connect_timeout", 5)
        config.setdefault("read_timeout", 60)
        options["config_kwargs"] = config
    return options


def _option_secrets(options: dict[str, Any]) -> list[str]:
    values = [str(v) for k, v in options.items() if _SECRET_OPTION.search(k) and v]
    values += [str(v) for k, v in (options.get("client_kwargs") or {}).items()
               if _SECRET_OPTION.search(k) and v]  # fmt: skip
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def _transient(exc: BaseException) -> bool:
    return not isinstance(exc, (*_NOT_TRANSIENT, *_BUGS))


def _check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise ValueError(f"{key!r} is not a key relative to the publish root")
    return str(path)


# ---------------------------------------------------------------------------- order


def _rank(key: str) -> tuple[int, int]:
    """(stage, order within the stage) of ``key`` in :func:`upload_order`."""
    parts = PurePosixPath(key).parts
    name = parts[-1]
    if name == "latest.json":
        return 7, 0
    if name == "days.json":
        return 6, 0
    if parts[0] == "manifests":
        return 5, 1 if _DAY_MANIFEST.search(name) else 0  # the day's record after its extras
    if parts[:2] == ("stac", "items"):
        return 3, 0
    if parts[0] == "stac":
        return 4, 0
    store = next((i for i, part in enumerate(parts[:-1]) if part.endswith(".zarr")), None)
    if store is not None:
        inside = parts[store + 1 :]
        if name == CONSOLIDATED or inside == ("zarr.json",):  # v3 keeps it in the root zarr.json
            return 2, 0
        if name in ZARR_META or name == "zarr.json":
            return 1, 1 if inside[0] == "time" else 0  # the time coordinate last
    return 0, 0


def upload_order(keys: Iterable[str]) -> list[str]:
    """``keys`` in the order that keeps remote readers consistent.

    Data first (COGs, quick-looks, Zarr chunks, other files), then Zarr array metadata
    (``.zarray``, ``.zattrs``, ``.zgroup``), each store's ``.zmetadata``, STAC items
    (``stac/items/**``), ``stac/collection.json``, the manifests (``manifests/**``, the day
    records after the other files there), ``days.json``, and ``latest.json`` very last.
    """
    return sorted(dict.fromkeys(keys), key=lambda key: (*_rank(key), key))


def plan(changed: Iterable[str], removed: Iterable[str] = ()) -> list[dict[str, str]]:
    """The operations of a mirror: uploads in :func:`upload_order`, then deletions in the
    reverse order (what points to an object goes before it). A key in both is uploaded."""
    changed = [_check_key(k) for k in changed]
    kept = set(changed)
    gone = [_check_key(k) for k in removed if k not in kept]
    puts = [{"op": "put", "key": k} for k in upload_order(changed)]
    deletes = [{"op": "delete", "key": k} for k in reversed(upload_order(gone))]
    return puts + deletes


# ---------------------------------------------------------------------------- mirror


def mirror(
    local_root: Path, remote: RemoteRoot, changed: Iterable[str], removed: Iterable[str] = ()
) -> None:
    """Copy ``changed`` keys of ``local_root`` to ``remote`` and delete ``removed`` ones, in
    the safe order, under a pending-upload journal.

    Runs pending journals first (:func:`resume`). Takes the local publication lock, so it
    must not be called under :func:`~gsm3_ops.publish.atomic.publish_lock`. Raises
    :class:`PublishError` when an operation fails after its retries; the journal then stays
    for the next :func:`resume`.
    """
    local_root, changed, removed = Path(local_root), list(changed), list(removed)
    for key in [*changed, *removed]:
        if _skipped(key):
            raise ValueError(f"{key} is a work file of the publish root, not a published file")
    ops = plan(changed, removed)
    with publish_lock(local_root):
        _resume(local_root, remote)
        if not ops:
            return
        journal = _write_journal(local_root, remote, ops)
        _replay(local_root, remote, journal)


def resume(local_root: Path, remote: RemoteRoot) -> int:
    """Finish the mirrors that a failed or killed process left, oldest first; returns how
    many journals were replayed. Raises :class:`PublishError` if one still fails."""
    with publish_lock(Path(local_root)):
        return _resume(Path(local_root), remote)


def sync_all(local_root: Path, remote: RemoteRoot) -> int:
    """Upload every published file of ``local_root`` in the safe order (a first publication
    to an empty bucket, or a repair); work folders are left out. Returns the file count."""
    keys = local_keys(local_root)
    mirror(local_root, remote, keys)
    return len(keys)


def local_keys(local_root: Path) -> list[str]:
    """Keys of every published file under ``local_root`` (work files and folders aside)."""
    root = Path(local_root)
    keys = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(k for k in keys if not _skipped(k))


def pending(local_root: Path) -> list[Path]:
    """The pending-upload journals of ``local_root``, oldest first."""
    return sorted((Path(local_root) / UPLOADS).glob("*.json"))


def _skipped(key: str) -> bool:
    """Work files: ``.staging``, ``.journal``, ``.upload``, the lock, temporary files; every
    hidden name except Zarr's own metadata files."""
    return any(p.startswith(".") and p not in (*ZARR_META, CONSOLIDATED)
               for p in PurePosixPath(key).parts)  # fmt: skip


def _resume(local_root: Path, remote: RemoteRoot) -> int:
    journals = pending(local_root)
    for journal in journals:
        log.warning("finishing the interrupted upload %s to %s", journal.name, remote.url)
        _replay(local_root, remote, journal)
    return len(journals)


def _write_journal(local_root: Path, remote: RemoteRoot, ops: list[dict[str, str]]) -> Path:
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    doc = {"remote": remote.url, "created": time.time(), "ops": ops}
    return write_json_atomic(local_root / UPLOADS / name, doc)


def _replay(local_root: Path, remote: RemoteRoot, journal: Path) -> None:
    try:
        ops = json.loads(journal.read_text())["ops"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PublishError(f"unreadable upload journal {journal}: {exc}") from None
    kill_after = os.environ.get(KILL_ENV)
    _maybe_kill(kill_after, 0)
    for done, op in enumerate(ops, start=1):
        key = op["key"]
        if op["op"] == "delete":
            remote.delete(key)
        elif (local_root / key).is_file():
            remote.put(local_root / key, key)
        else:
            # Removed locally since the journal was written: the mirror that removed it
            # deletes it remotely, in its own safe order.
            log.warning("%s is no longer in %s; not uploaded", key, local_root)
        _maybe_kill(kill_after, done)
    journal.unlink()


def _maybe_kill(kill_after: str | None, done: int) -> None:
    if kill_after is not None and int(kill_after) == done:
        os.kill(os.getpid(), signal.SIGKILL)
