"""The LSTM state store: h and c per member and land cell, dated, in ``<data_root>/state.zarr``.

Layout (Zarr v3): the root's attributes say whose states these are (bundle, grid, domain,
tile size, a hash of the land mask, members, hidden size, precision). Each date is a child
group ``YYYY-MM-DD`` holding the state valid at the end of that day: one array per tile with
land, named ``r<row>c<col>`` after the tile's domain-relative origin, shape
``(2, member, cell, hidden)`` (h then c) over the tile's land cells in row-major order.
Only land cells cost bytes: 1.8 M cells x 5 members x 256 x 2 is 18 GB a date in float32,
9 GB in bfloat16 (stored as the uint16 bit pattern; Zarr has no bfloat16).

A date is written under a temporary name (tile by tile, by any worker) and renamed into place
once every tile is there, so a crash never leaves a half-written date visible. Each tile
records the CRC-32 of its h and c bytes (``crc32`` attribute) and is checked when it is read,
so a lost, truncated or altered chunk is found (:class:`StateDamagedError`) instead of
carrying a wrong state forward; a damaged date is moved aside (:meth:`StateStore.quarantine`)
and the next run recomputes from the date before it. Retention keeps
the most recent dates and one checkpoint per period (the first date stored in each month by
default), from which any later day can be recomputed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import zarr

from gsm3_ops.di import NO_DAY, DIState
from gsm3_ops.errors import InputError

STATE_FORMAT = 2
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHUNK_ELEMENTS = 1 << 24  # ~64 MB float32 per chunk: large sequential writes, bounded copies

# h and c, each (member, cells, hidden): float32, or bfloat16 bit patterns as uint16.
States = tuple[np.ndarray, np.ndarray]


class StateError(InputError):
    """A state store that does not belong to the bundle or domain in use, or an unusable one."""


class StateDamagedError(StateError):
    """A stored state tile that no longer reads back as it was written."""

    def __init__(self, message: str, day: dt.date | None = None) -> None:
        super().__init__(message)
        self.day = day

    def __reduce__(self) -> tuple:  # crosses process boundaries (dask workers) whole
        return (type(self), (str(self), self.day))


def tile_crc(h: np.ndarray, c: np.ndarray) -> int:
    """CRC-32 of a tile's h then c bytes, as stored (about 4 GB/s: a cheap check)."""
    crc = zlib.crc32(memoryview(np.ascontiguousarray(h)).cast("B"))
    return zlib.crc32(memoryview(np.ascontiguousarray(c)).cast("B"), crc)


@dataclass(frozen=True)
class StateLayout:
    """Whose states a store holds; a store is only ever used with the layout it was made for."""

    bundle_id: str
    grid: str
    domain: tuple[int, int, int, int]  # row0, col0, n_rows, n_cols on the grid
    tile_size: int
    land_hash: str
    members: int
    hidden: int
    dtype: str  # "float32" or "bfloat16"


def land_hash(land: np.ndarray) -> str:
    """A short hash of a boolean land mask (it fixes which cells a tile's arrays hold)."""
    land = np.asarray(land, dtype=bool)
    digest = hashlib.sha256(repr(land.shape).encode() + np.packbits(land).tobytes())
    return digest.hexdigest()[:16]


def tile_key(row0: int, col0: int) -> str:
    """The array name of the tile whose domain-relative origin is (row0, col0)."""
    return f"r{row0:05d}c{col0:05d}"


def stored_dtype(dtype: str) -> type:
    """The numpy dtype a state of precision ``dtype`` is held in (uint16 bits for bfloat16)."""
    return np.uint16 if dtype == "bfloat16" else np.float32


def state_tensor(a: np.ndarray) -> torch.Tensor:
    """A stored state array as a CPU tensor, without a copy when contiguous: bfloat16 over
    uint16 bits, float32 otherwise."""
    if a.dtype == np.uint16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def state_array(t: torch.Tensor, dtype: str) -> np.ndarray:
    """A state tensor (any device) on the host in ``dtype``'s stored form: float32, or for
    ``bfloat16`` each value rounded to nearest even (torch's rounding), as uint16 bits."""
    if dtype == "bfloat16":
        return t.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return t.float().cpu().numpy()


def stored(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` (float32, or already stored) in its stored form for ``dtype``."""
    if dtype == "bfloat16" and a.dtype == np.uint16:
        return a
    return state_array(state_tensor(a), dtype)


def as_float32(a: np.ndarray) -> np.ndarray:
    """A stored state array (float32, or bfloat16 bits as uint16) as float32 values."""
    return state_tensor(a).float().numpy()


def quantise(state: States, dtype: str) -> States:
    """``state`` (float32) as it reads back after storing at ``dtype``, as float32."""
    return tuple(as_float32(stored(a, dtype)) for a in state)  # type: ignore[return-value]


def write_tile(group: Path, key: str, state: States, dtype: str) -> None:
    """Write one tile's h and c (member, cells, hidden), float32 or already in the stored form
    of ``dtype``, into the date group at ``group``. h and c go in as they are, one chunk row
    each, so nothing is stacked or converted again when the engine already stored them."""
    h, c = (stored(a, dtype) for a in state)
    members, n_cells, hidden = h.shape
    cells_chunk = max(1, min(n_cells, _CHUNK_ELEMENTS // (members * hidden)))
    arr = zarr.create_array(
        zarr.storage.LocalStore(group),
        name=key,
        shape=(2, members, n_cells, hidden),
        chunks=(1, members, cells_chunk, hidden),
        dtype=h.dtype,
        fill_value=0,
        compressors=None,  # states are noise to a compressor; raw chunks write at disk speed
        dimension_names=("state", "member", "cell", "hidden"),
        attributes={"state_dtype": dtype},
        config={"write_empty_chunks": True},  # skip the all-fill scan of every chunk
        overwrite=True,
    )
    arr[0] = h
    arr[1] = c
    arr.attrs["crc32"] = tile_crc(h, c)  # after the data: a tile without it was never finished


def read_tile(group: Path, key: str, n_cells: int) -> States:
    """h and c (member, cells, hidden) of one tile from the date group at ``group``, in their
    stored form (float32, or bfloat16 bits as uint16: see :func:`as_float32`)."""
    try:
        arr = zarr.open_array(zarr.storage.LocalStore(group, read_only=True), path=key, mode="r")
    except FileNotFoundError:
        raise StateError(f"state {group.name} has no tile {key} (an incomplete store?)") from None
    if arr.shape[2] != n_cells:
        raise StateError(
            f"state {group.name} tile {key} holds {arr.shape[2]} cells, the land mask {n_cells}"
        )
    day = dt.date.fromisoformat(group.name) if _DATE.match(group.name) else None
    try:
        data = arr[...]
    except Exception as exc:  # a truncated chunk no longer decodes
        raise StateDamagedError(
            f"state {group.name} tile {key} cannot be read ({type(exc).__name__}: {exc})", day
        ) from None
    expected = arr.attrs.get("crc32")
    if expected is not None and tile_crc(data[0], data[1]) != expected:
        raise StateDamagedError(
            f"state {group.name} tile {key} does not match the checksum written with it "
            "(a lost or altered chunk)", day
        )  # fmt: skip
    return data[0], data[1]


def open_loop_key(key: str) -> str:
    """The array beside tile ``key`` holding a DI bundle's open-loop h and c."""
    return f"{key}_ol"


def di_key(key: str) -> str:
    """The array beside tile ``key`` holding a DI bundle's absorbed retrievals."""
    return f"{key}_di"


def write_di_tile(group: Path, key: str, state: DIState) -> None:
    """Write one tile's DI state (the last absorbed retrieval and its day ordinal per cell)
    beside its h and c: one (2, cells) float64 array, NaN where none, with its CRC-32."""
    data = np.stack([state.value.astype(np.float64), np.where(state.day == NO_DAY, np.nan,
                                                              state.day)])  # fmt: skip
    arr = zarr.create_array(
        zarr.storage.LocalStore(group), name=di_key(key), shape=data.shape, chunks=data.shape,
        dtype="float64", fill_value=np.nan, dimension_names=("field", "cell"), overwrite=True,
    )  # fmt: skip
    arr[...] = data
    arr.attrs["crc32"] = zlib.crc32(data.tobytes())


def read_di_tile(group: Path, key: str, n_cells: int) -> DIState:
    """One tile's DI state from the date group at ``group`` (see :func:`write_di_tile`)."""
    day = dt.date.fromisoformat(group.name) if _DATE.match(group.name) else None
    try:
        arr = zarr.open_array(
            zarr.storage.LocalStore(group, read_only=True), path=di_key(key), mode="r"
        )
        data = arr[...]
    except FileNotFoundError:
        raise StateError(f"state {group.name} has no DI tile {di_key(key)}") from None
    except Exception as exc:  # a truncated chunk no longer decodes
        raise StateDamagedError(
            f"state {group.name} DI tile {di_key(key)} cannot be read ({type(exc).__name__})",
            day,
        ) from None
    if data.shape != (2, n_cells) or zlib.crc32(data.tobytes()) != arr.attrs.get("crc32"):
        raise StateDamagedError(
            f"state {group.name} DI tile {di_key(key)} does not match what was written", day
        )
    days = np.where(np.isnan(data[1]), NO_DAY, np.nan_to_num(data[1])).astype(np.int64)
    return DIState(data[0].astype(np.float32), days)


class StateStore:
    """Dated LSTM states of one bundle over one domain; refuses a store made for another."""

    def __init__(self, path: Path, layout: StateLayout) -> None:
        self.path, self.layout = Path(path), layout
        wanted = {"state_format": STATE_FORMAT, **_jsonable(layout)}
        if (self.path / "zarr.json").exists():
            try:
                have = dict(zarr.open_group(self.path, mode="r").attrs)
            except Exception as exc:  # a truncated or edited zarr.json
                raise StateError(
                    f"state store {self.path} cannot be read ({type(exc).__name__}: {exc}); "
                    "move it away (the next run spins a new one up)"
                ) from None
            diffs = [
                f"{k} {have.get(k)!r} (this run: {v!r})"
                for k, v in wanted.items()
                if have.get(k) != v
            ]
            if diffs:
                raise StateError(
                    f"state store {self.path} was made for another model or domain: "
                    + "; ".join(diffs)
                    + ". Move it away (a new one is spun up) or configure the matching run"
                )
        elif self.path.exists() and any(self.path.iterdir()):
            raise StateError(f"{self.path} exists and is not a state store")
        else:
            zarr.open_group(self.path, mode="w", attributes=wanted)

    def dates(self) -> list[dt.date]:
        """Dates with a complete state, ascending."""
        names = [p.name for p in self.path.iterdir() if p.is_dir() and _DATE.match(p.name)]
        return sorted(dt.date.fromisoformat(n) for n in names)

    def latest_on_or_before(self, day: dt.date) -> dt.date | None:
        """The latest stored date not after ``day``."""
        earlier = [d for d in self.dates() if d <= day]
        return earlier[-1] if earlier else None

    def group(self, day: dt.date) -> Path:
        """The folder of the committed state of ``day``."""
        return self.path / day.isoformat()

    def begin(self, day: dt.date, origin: str = "step") -> Path:
        """A fresh temporary group for ``day``'s tiles; :meth:`commit` or :meth:`abort` it.
        ``origin`` ``cold``: the spun-up state a cold start begins a chain of days from."""
        tmp = self.path / f".tmp-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        zarr.open_group(tmp, mode="w", attributes={"date": day.isoformat(), "origin": origin})
        return tmp

    def roots(self) -> list[dt.date]:
        """Dates a cold start spun up: the first state of a chain of published days, which a
        recomputation of those days must start from, so they are never pruned."""
        out = []
        for day in self.dates():
            meta = json.loads((self.group(day) / "zarr.json").read_text())
            if meta.get("attributes", {}).get("origin") == "cold":
                out.append(day)
        return out

    def commit(self, day: dt.date, tmp: Path, keys: Iterable[str]) -> None:
        """Make the temporary group ``tmp`` the state of ``day`` once every tile is in it."""
        missing = [k for k in keys if not (tmp / k / "zarr.json").is_file()]
        if missing:
            raise StateError(f"state {day} is missing tiles {missing[:5]}; not committed")
        final = self.group(day)
        old = self.path / f".old-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self, tmp: Path) -> None:
        """Discard a temporary group."""
        shutil.rmtree(tmp, ignore_errors=True)

    def quarantine(self, day: dt.date) -> Path:
        """Move the state of ``day`` aside (``.damaged-<day>-<id>``), so that no run starts
        from it; return where it went."""
        aside = self.path / f".damaged-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        os.replace(self.group(day), aside)
        return aside

    def load(self, day: dt.date, key: str, n_cells: int) -> States:
        """h and c of one tile for ``day``, in their stored form (see :func:`read_tile`)."""
        return read_tile(self.group(day), key, n_cells)

    def checkpoints(self, every: str = "month") -> list[dt.date]:
        """The first stored date of each ``week``, ``month`` or ``year``."""
        first: dict[tuple[int, int], dt.date] = {}
        for d in self.dates():
            first.setdefault(_period(d, every), d)
        return sorted(first.values())

    def prune(
        self, keep_recent: int, every: str = "month", keep_checkpoints: int | None = None
    ) -> list[dt.date]:
        """Delete states other than the ``keep_recent`` latest, the checkpoints (the latest
        ``keep_checkpoints`` of them when given) and the chains' roots; return the deleted
        dates."""
        dates = self.dates()
        checkpoints = self.checkpoints(every)
        if keep_checkpoints is not None:
            checkpoints = checkpoints[-keep_checkpoints:]
        keep = set(dates[-keep_recent:]) | set(checkpoints) | set(self.roots())
        gone = [d for d in dates if d not in keep]
        for d in gone:
            shutil.rmtree(self.group(d))
        return gone


def _period(d: dt.date, every: str) -> tuple[int, int]:
    if every == "week":
        year, week, _ = d.isocalendar()
        return (year, week)
    if every == "month":
        return (d.year, d.month)
    if every == "year":
        return (d.year, 0)
    raise ValueError(f"unknown checkpoint period {every!r}; use week, month or year")


def _jsonable(layout: StateLayout) -> dict:
    out = asdict(layout)
    out["domain"] = list(layout.domain)
    return out
