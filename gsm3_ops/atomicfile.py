"""Files written whole or not at all: a temporary file in the same folder, then a rename.

A reader sees the old file or the new one, never half of either; a failed write leaves the
old file as it was and no temporary file behind. Used by the cube's manifests and by the
publisher (journals, manifests, COGs), so it sits below both.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write; renamed onto ``path``
    when the block ends normally, removed when it raises.

    The name is ``.<name>.tmp-<pid>-<random>`` in the same folder (created if needed), so the
    rename is atomic and a stray temporary file is hidden and traceable to its process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk (fsync) before the rename."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def write_json_atomic(path: Path, doc: Mapping[str, Any], *, sort_keys: bool = False) -> Path:
    """Write ``doc`` as indented JSON (NaN refused, other values as ``str``) atomically."""
    text = json.dumps(doc, indent=2, default=str, allow_nan=False, sort_keys=sort_keys) + "\n"
    return write_bytes_atomic(path, text.encode())
