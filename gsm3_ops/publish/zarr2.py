"""Zarr v2 stores the publisher owns: their metadata files, consolidated metadata, chunk moves.

Both published stores (the product and its time-series copy) are Zarr v2 with ``/``-separated
chunk keys (``<array>/<t>/<i>/<j>``), zlib compression and consolidated metadata
(``.zmetadata``): the layout that GDAL (3.4 and later, Debian's 3.6 included), QGIS and every
xarray/zarr version read. Readers open them consolidated, so a publication changes what they
see only when it replaces ``.zmetadata``, the last file of a store it moves; a new day's
chunks lie beyond the old shape until then.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr

from gsm3_ops.publish.atomic import Transaction

CHUNK_KEYS = {"name": "v2", "configuration": {"separator": "/"}}
CONSOLIDATED = ".zmetadata"
META_NAMES = (".zgroup", ".zattrs", ".zarray")


def encoding() -> dict[str, Any]:
    """The encoding keys every array of a published store gets (xarray's ``to_zarr``)."""
    return {"compressors": [numcodecs.Zlib(level=4)], "chunk_key_encoding": CHUNK_KEYS}


def is_v2(store: Path) -> bool:
    """Whether ``store`` is a Zarr v2 group."""
    return (Path(store) / ".zgroup").exists()


def read_json(path: Path) -> dict[str, Any]:
    """A metadata document; FileNotFoundError when absent."""
    return json.loads(Path(path).read_text())


def meta(store: Path, name: str) -> dict[str, Any]:
    """The ``.zarray`` of array ``name``."""
    return read_json(Path(store) / name / ".zarray")


def attrs(store: Path, name: str = "") -> dict[str, Any]:
    """The ``.zattrs`` of array ``name`` (the group's with ``name=""``); {} when absent."""
    path = Path(store) / name / ".zattrs"
    return read_json(path) if path.exists() else {}


def arrays(store: Path) -> list[str]:
    """The store's array names."""
    return sorted(p.parent.name for p in Path(store).glob("*/.zarray"))


def time_first(store: Path, name: str) -> bool:
    """Whether array ``name`` has time as its first dimension."""
    return (attrs(store, name).get("_ARRAY_DIMENSIONS") or [None])[0] == "time"


def staged_array(root: Path, name: str, array_meta: dict[str, Any]) -> zarr.Array:
    """A writable array ``name`` under ``root`` with ``array_meta`` (a store's own ``.zarray``,
    its shape changed), so the chunk files it writes are byte-compatible with the store's."""
    (Path(root) / name).mkdir(parents=True, exist_ok=True)
    (Path(root) / name / ".zarray").write_text(json.dumps(array_meta))
    return zarr.open_array(store=zarr.storage.LocalStore(root), path=name, mode="r+",
                           zarr_format=2)  # fmt: skip


def chunk_key(array_meta: dict[str, Any], coords: tuple[int, ...]) -> str:
    """The key of the chunk at ``coords`` relative to its array's folder."""
    return array_meta.get("dimension_separator", ".").join(str(c) for c in coords)


def spatial_chunks(array_meta: dict[str, Any]) -> list[tuple[int, int]]:
    """The (row, column) chunk indices of a (time, y, x) array."""
    _, n_rows, n_cols = array_meta["shape"]
    _, c_rows, c_cols = array_meta["chunks"]
    return [
        (i, j) for i in range(math.ceil(n_rows / c_rows)) for j in range(math.ceil(n_cols / c_cols))
    ]


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write a metadata document (NaN fill values as Zarr v2 writes them)."""
    Path(path).write_text(json.dumps(doc, indent=2, allow_nan=True))
    return Path(path)


def consolidated_doc(store: Path) -> dict[str, Any]:
    """The ``.zmetadata`` document of ``store`` as its files are now."""
    docs = {
        str(path.relative_to(store)): read_json(path)
        for pattern in (".zgroup", ".zattrs", "*/.zarray", "*/.zattrs")
        for path in Path(store).glob(pattern)
    }
    return {"zarr_consolidated_format": 1, "metadata": dict(sorted(docs.items()))}


def plan_file(tx: Transaction, target: Path, source: Path) -> None:
    """``source`` replaces ``target``; zarr writes no chunk that holds only the fill value,
    so a missing ``source`` means the stored chunk must go."""
    if source.exists():
        tx.replace(target, source)
    elif target.exists():
        tx.remove(target)


def plan_json(tx: Transaction, final: Path, doc: dict[str, Any]) -> None:
    """Stage ``doc`` and plan it onto ``final``."""
    tx.replace(final, write_json(tx.stage_path(final), doc))


def plan_time_axis(
    tx: Transaction, store: Path, values: np.ndarray, first_changed: int, work: Path
) -> None:
    """Stage the time coordinate ``values`` (its chunks from ``first_changed`` on) and, when
    its length changes, every time-first array's grown ``.zarray``."""
    store = Path(store)
    time_meta = {**meta(store, "time"), "shape": [len(values)]}
    times = staged_array(work, "time", time_meta)
    size = time_meta["chunks"][0]
    for k in range(first_changed // size, math.ceil(len(values) / size)):
        lo, hi = k * size, min((k + 1) * size, len(values))
        times[lo:hi] = values[lo:hi]
        key = chunk_key(time_meta, (k,))
        plan_file(tx, store / "time" / key, work / "time" / key)
    if len(values) == meta(store, "time")["shape"][0]:
        return
    for name in arrays(store):
        if name != "time" and time_first(store, name):
            grown = meta(store, name)
            grown["shape"] = [len(values), *grown["shape"][1:]]
            plan_json(tx, store / name / ".zarray", grown)
    plan_json(tx, store / "time" / ".zarray", time_meta)


def plan_consolidated(tx: Transaction, store: Path, group_attrs: dict[str, Any]) -> None:
    """Plan the group's new ``.zattrs`` and, last, the ``.zmetadata`` that describes the store
    as it will be once every move planned so far is applied."""
    store = Path(store)
    plan_json(tx, store / ".zattrs", group_attrs)
    docs = consolidated_doc(store)["metadata"]
    prefix = store.relative_to(tx.root)
    for move in tx.moves:  # later moves win, as they will on disk
        final = Path(move.final)
        if move.staged and final.name in META_NAMES and final.is_relative_to(prefix):
            key = str(final.relative_to(prefix))
            if key.count("/") <= 1:
                docs[key] = read_json(tx.root / move.staged)
    doc = {"zarr_consolidated_format": 1, "metadata": dict(sorted(docs.items()))}
    plan_json(tx, store / CONSOLIDATED, doc)
