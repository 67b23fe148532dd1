"""The LSTM state store: h and c per member and cell, dated, in ``<data_root>/state.zarr``.

Each date is a child group ``YYYY-MM-DD`` holding ``h`` and ``c`` (member, y, x, hidden) valid
at the end of that day. A date is written under a temporary name and renamed into place, so
a crash never leaves a half-written state visible. Retention keeps the most recent dates and
the first state of every month (the checkpoints any day can be recomputed from).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import numpy as np
import zarr

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class StateError(RuntimeError):
    """A state store that does not belong to the bundle or domain in use."""


class StateStore:
    """Dated LSTM states of one bundle over one domain (``shape`` = (rows, cols))."""

    def __init__(self, path: Path, bundle_id: str, shape: tuple[int, int], tile_size: int) -> None:
        self.path, self.bundle_id, self.shape, self.tile = Path(path), bundle_id, shape, tile_size
        root = zarr.open_group(self.path, mode="a")
        owner = root.attrs.get("bundle_id")
        if owner is None:
            root.attrs.update({"bundle_id": bundle_id, "shape": list(shape)})
        elif owner != bundle_id or list(root.attrs.get("shape", [])) != list(shape):
            raise StateError(
                f"state store {self.path} belongs to bundle {owner} over "
                f"{root.attrs.get('shape')}, not to bundle {bundle_id} over {list(shape)}; "
                "move it away to start a new one"
            )

    def dates(self) -> list[dt.date]:
        """Dates with a complete state, ascending."""
        if not self.path.is_dir():
            return []
        names = [p.name for p in self.path.iterdir() if p.is_dir() and _DATE.match(p.name)]
        return sorted(dt.date.fromisoformat(n) for n in names)

    def latest_on_or_before(self, day: dt.date) -> dt.date | None:
        """The latest stored date not after ``day``."""
        earlier = [d for d in self.dates() if d <= day]
        return earlier[-1] if earlier else None

    def load(self, day: dt.date, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """h and c (member, cells, hidden) at domain cells ``rows``, ``cols`` for ``day``."""
        group = zarr.open_group(self.path / day.isoformat(), mode="r")
        return tuple(np.asarray(group[name][:])[:, rows, cols, :] for name in ("h", "c"))

    def save(
        self, day: dt.date, rows: np.ndarray, cols: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> None:
        """Store h and c (member, cells, hidden) at domain cells for ``day`` (replacing it)."""
        final = self.path / day.isoformat()
        tmp = self.path / f".tmp-{day.isoformat()}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        group = zarr.open_group(tmp, mode="w")
        group.attrs.update({"date": day.isoformat(), "bundle_id": self.bundle_id})
        members, _, hidden = h.shape
        full_shape = (members, *self.shape, hidden)
        for name, values in (("h", h), ("c", c)):
            full = np.full(full_shape, np.nan, dtype=np.float32)
            full[:, rows, cols, :] = values
            arr = group.create_array(
                name,
                shape=full_shape,
                chunks=(1, self.tile, self.tile, hidden),
                dtype="float32",
                fill_value=np.nan,
                dimension_names=("member", "y", "x", "hidden"),
            )
            arr[...] = full
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)

    def prune(self, keep_recent: int) -> list[dt.date]:
        """Delete states other than the ``keep_recent`` latest and each month's first; return
        the deleted dates."""
        dates = self.dates()
        keep = set(dates[-keep_recent:])
        first_of_month: dict[tuple[int, int], dt.date] = {}
        for d in dates:
            first_of_month.setdefault((d.year, d.month), d)
        keep.update(first_of_month.values())
        gone = [d for d in dates if d not in keep]
        for d in gone:
            shutil.rmtree(self.path / d.isoformat())
        return gone
