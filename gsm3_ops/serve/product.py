"""Values of the published product at a cell: one day, or a series of days.

Stores are opened once per snapshot of the published days (reopened when a publication
changes the snapshot's key) and decoded chunks are kept in a byte-bounded LRU keyed by that
key, so a new publication never serves stale values. Point reads use the map store's one-day
chunks; series read the time-series copy's long chunks where it holds the days, and the map
store (one cell over the whole axis) for days the copy does not hold yet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from gsm3_ops.publish.layers import LAYERS
from gsm3_ops.serve.cache import ByteLRU
from gsm3_ops.serve.days import PRODUCT_ZARR, TIMESERIES_ZARR, Snapshot, day_manifest_path
from gsm3_ops.serve.root import PublishRoot
from gsm3_ops.serve.store import Cell, Domain, StoreError, ZarrCube, domain_of

PROVENANCE_KEYS = ("product_version", "bundle_id", "provisional", "input_versions")


@dataclass(frozen=True)
class Opened:
    """The stores of one snapshot."""

    key: str
    product: ZarrCube
    timeseries: ZarrCube | None
    domain: Domain


class ProductReader:
    """Cached reads of the product under a publish root."""

    def __init__(self, root: PublishRoot, cache: ByteLRU) -> None:
        self.root = root
        self.cache = cache
        self._opened: Opened | None = None
        self._lock = threading.Lock()

    def ready(self, snap: Snapshot) -> Opened | None:
        """The stores of ``snap`` when already open, else None (no I/O)."""
        opened = self._opened
        return opened if opened is not None and opened.key == snap.key else None

    def open(self, snap: Snapshot) -> Opened:
        """The stores of ``snap``, opened (and the cache emptied) when its key is new."""
        opened = self.ready(snap)
        if opened is not None:
            return opened
        with self._lock:
            opened = self.ready(snap)
            if opened is not None:
                return opened
            product = ZarrCube(self.root, PRODUCT_ZARR)
            series = None
            if self.root.exists(TIMESERIES_ZARR):
                try:
                    series = ZarrCube(self.root, TIMESERIES_ZARR)
                except StoreError:
                    series = None  # a copy being swapped in: the map store answers alone
            self.cache.clear()
            self._opened = Opened(snap.key, product, series, domain_of(product.x, product.y))
            return self._opened

    def point(self, snap: Snapshot, cell: Cell, day: Any, *, load: bool = True) -> dict | None:
        """Every layer at ``cell`` on published ``day`` (raw values). With ``load`` False,
        None unless the store is open and every chunk is cached (no I/O then)."""
        opened = self.open(snap) if load else self.ready(snap)
        if opened is None:
            return None
        product = opened.product
        t = product.index.get(day)
        if t is None:
            raise StoreError(f"published day {day} is not on the product's time axis")
        row, col = opened.domain.local(cell)
        values = {}
        for name in LAYERS:
            block, (r, c) = product.block_of(name, row, col)
            key = (snap.key, "day", name, t, block)
            chunk = self.cache.get(key)
            if chunk is None:
                if not load:
                    return None
                chunk = self.cache.put(key, product.day_block(name, t, block))
            values[name] = chunk[r, c].item()
        return values

    def series(self, snap: Snapshot, cell: Cell, days: list) -> dict[str, np.ndarray]:
        """Every layer at ``cell`` on the published ``days`` (raw values, in order)."""
        opened = self.open(snap)
        row, col = opened.domain.local(cell)
        out = {name: np.full(len(days), layer.nodata, dtype=layer.dtype)
               for name, layer in LAYERS.items()}  # fmt: skip
        rest = list(range(len(days)))
        ts = opened.timeseries
        if ts is not None:
            where = [(i, ts.index[d]) for i, d in enumerate(days) if d in ts.index]
            if where:
                pos, idx = map(np.array, zip(*where, strict=True))
                for name in LAYERS:
                    block, (r, c) = ts.block_of(name, row, col)
                    key = (snap.key, "series", name, block)
                    data = self.cache.get_or_load(key, lambda n=name, b=block: ts.time_block(n, b))
                    out[name][pos] = data[idx, r, c]
                done = set(pos.tolist())
                rest = [i for i in rest if i not in done]
        if rest:
            product = opened.product
            missing = [days[i] for i in rest if days[i] not in product.index]
            if missing:
                raise StoreError(f"published day {missing[0]} is not on the product's time axis")
            idx = np.array([product.index[days[i]] for i in rest])
            for name in LAYERS:
                key = (snap.key, "cell", name, row, col)
                data = self.cache.get_or_load(key, lambda n=name: product.cell_series(n, row, col))
                out[name][np.array(rest)] = data[idx]
        return out

    def provenance(self, snap: Snapshot, day: Any) -> dict[str, Any]:
        """``product_version``, ``bundle_id``, ``provisional``, ``input_versions`` of ``day``
        from its manifest (None where it says nothing)."""
        key = (snap.key, "manifest", day)
        doc = self.cache.get(key)
        if doc is None:
            try:
                manifest = self.root.read_json(day_manifest_path(day))
            except (FileNotFoundError, ValueError):
                manifest = {}
            if not isinstance(manifest, dict):
                manifest = {}
            doc = self.cache.put(key, {k: manifest.get(k) for k in PROVENANCE_KEYS})
        return dict(doc)
