"""Read access to a publish root, a local folder or ``s3://bucket/prefix`` (fsspec / s3fs).

Every path the service reads goes through :func:`safe_relpath`: a relative path is normalised
and refused when it could reach outside the root (``..``, an absolute path, a backslash, a NUL
byte, a percent sign left over from double encoding, a URL scheme). Nothing here writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fsspec

from gsm3_ops.errors import UsageError


class RootError(UsageError):
    """The publish root does not exist or cannot be read."""


class PathRefusedError(ValueError):
    """A relative path that could leave the publish root."""


_FORBIDDEN = ("\x00", "\\", "%", ":")


def safe_relpath(path: str) -> str:
    """``path`` normalised to ``a/b/c`` inside the root; :class:`PathRefusedError` when it names the
    root itself or could leave it."""
    if not path or any(c in path for c in _FORBIDDEN) or path.startswith(("/", "~")):
        raise PathRefusedError(f"path {path!r} is not a relative path inside the publish root")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise PathRefusedError(f"path {path!r} is not a relative path inside the publish root")
    return "/".join(parts)


class PublishRoot:
    """A publish root: a local folder or an fsspec URL (``s3://bucket/prefix``)."""

    def __init__(self, root: str | Path, storage_options: dict[str, Any] | None = None) -> None:
        text = str(root)
        self.storage_options = dict(storage_options or {})
        if "://" in text and not text.startswith("file://"):
            protocol = text.split("://", 1)[0]
            try:
                self.fs = fsspec.filesystem(protocol, **self.storage_options)
            except (ValueError, ImportError, TypeError) as exc:
                raise RootError(f"publish root {text}: {exc}") from None
            self.protocol = protocol
            self.base = text.rstrip("/")
            self._strip = self.fs._strip_protocol(self.base).rstrip("/")
            self.local: Path | None = None
        else:
            local = Path(text.removeprefix("file://")).expanduser().absolute()
            self.fs = fsspec.filesystem("file")
            self.protocol = "file"
            self.base = str(local)
            self._strip = str(local)
            self.local = local

    def __repr__(self) -> str:
        return f"PublishRoot({self.base!r})"

    def url(self, rel: str) -> str:
        """Where ``rel`` lies: a local path, or a URL with the root's scheme."""
        return f"{self.base}/{safe_relpath(rel)}"

    def fs_path(self, rel: str) -> str:
        """``rel`` as a path of :attr:`fs` (no scheme)."""
        return f"{self._strip}/{safe_relpath(rel)}"

    def check(self) -> None:
        """Raise :class:`RootError` unless the root is an existing, listable folder."""
        try:
            if self.local is not None:
                if not self.local.is_dir():
                    raise RootError(f"publish root {self.base} is not a folder")
                os.listdir(self.local)
            elif not self.fs.isdir(self._strip):
                raise RootError(f"publish root {self.base} does not exist or is not readable")
        except RootError:
            raise
        except Exception as exc:  # any backend failure (permissions, network, credentials)
            raise RootError(f"publish root {self.base} is not readable: {exc}") from None

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of file ``rel``; FileNotFoundError when it is absent (or a folder)."""
        if self.local is not None:
            path = self.local / safe_relpath(rel)
            if path.is_dir():
                raise FileNotFoundError(str(path))
            return path.read_bytes()
        path = self.fs_path(rel)
        if self.fs.isdir(path):
            raise FileNotFoundError(path)
        return self.fs.cat_file(path)

    def read_json(self, rel: str) -> Any:
        """File ``rel`` parsed as JSON (FileNotFoundError, ValueError)."""
        return json.loads(self.read_bytes(rel))

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists (a file or a folder)."""
        if self.local is not None:
            return (self.local / safe_relpath(rel)).exists()
        return self.fs.exists(self.fs_path(rel))

    def stamp(self, rel: str) -> str | None:
        """A token that changes when file ``rel`` is replaced (mtime and size, or the object's
        ETag); None when it is absent."""
        try:
            if self.local is not None:
                st = os.stat(self.local / safe_relpath(rel))
                return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"
            self.fs.invalidate_cache(self.fs_path(rel))
            info = self.fs.info(self.fs_path(rel))
        except FileNotFoundError:
            return None
        return str(info.get("ETag") or info.get("etag") or info.get("LastModified") or info)

    def glob(self, pattern: str) -> list[str]:
        """Relative paths of the files matching ``pattern`` (fsspec glob syntax), sorted."""
        if self.local is None:
            self.fs.invalidate_cache()
        found = self.fs.glob(f"{self._strip}/{safe_relpath(pattern)}")
        prefix = self._strip + "/"
        return sorted(p[len(prefix) :] for p in found if p.startswith(prefix))

    def zarr_target(self, rel: str) -> str | fsspec.FSMap:
        """What ``xarray.open_zarr`` / ``zarr.open_group`` take for the store at ``rel``."""
        if self.local is not None:
            return str(self.local / safe_relpath(rel))
        return self.fs.get_mapper(self.fs_path(rel))
