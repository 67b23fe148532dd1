"""Verify a cube day against the checksums its manifest recorded when it was written.

Every complete part of a day (a source's write of some variables over a window) carries the
sha256 of each variable's values as written. Reading them back and hashing again finds a
chunk that was deleted (it reads as NaN), truncated or rewritten by anything but the cube
(it fails to decode, or hashes differently). A part whose variable a later part rewrote
over an overlapping window is skipped for that variable: its values have legitimately
changed, and the later part is checked instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from gsm3_ops.cube.manifest import COMPLETE, CubeError, checksum
from gsm3_ops.cube.store import DAILY_GROUPS, Cube
from gsm3_ops.grid import Window


class CubeDamagedError(CubeError):
    """Cube data that no longer matches what was written (a lost, truncated or altered chunk)."""


def verify_day(cube: Cube, day: dt.date) -> int:
    """Check every complete part of ``day`` in the daily groups; return how many variables
    were checked. Raises :class:`CubeDamagedError` naming the day, variable, source and the
    command that repairs it."""

    def read(group: str, name: str, window: Window) -> Any:
        return cube.read(group, [name], day, day, window)[name].values[0]

    def repair(source: str) -> str:
        return f"gsm3-ops ingest --source {source} --date {day} --force"

    return _verify(cube.manifest(day), DAILY_GROUPS, read, f"cube day {day}", repair)


def verify_static(cube: Cube) -> int:
    """Check every complete part of the static group (as :func:`verify_day` the days)."""

    def read(group: str, name: str, window: Window) -> Any:
        return cube.read_static([name], window)[name].values

    def repair(source: str) -> str:
        return "gsm3-ops ingest --source static"

    return _verify(cube.static_manifest(), ("static",), read, "cube statics", repair)


def _verify(
    manifest: dict[str, Any],
    groups: tuple[str, ...],
    read: Callable[[str, str, Window], Any],
    what: str,
    repair: Callable[[str], str],
) -> int:
    parts = [
        (entry["group"], entry["source"], part)
        for entry in manifest["entries"].values()
        if entry["group"] in groups
        for part in entry["parts"]
        if part["status"] == COMPLETE and "window" in part
    ]
    by_group = {g: [p for h, _, p in parts if h == g] for g, _, _ in parts}
    checked = 0
    for group, source, part in parts:
        window = Window(**part["window"])
        for name, expected in part["checksums"].items():
            if _rewritten_later(part, name, by_group[group]):
                continue
            try:
                values = read(group, name, window)
            except Exception as exc:  # a chunk that no longer decodes
                raise CubeDamagedError(
                    f"{what}: {group}/{name} from {source} cannot be read "
                    f"({type(exc).__name__}: {exc}); repair: {repair(source)}"
                ) from None
            if checksum(values) != expected:
                raise CubeDamagedError(
                    f"{what}: {group}/{name} from {source} does not match the checksum recorded "
                    f"when it was written (a lost or altered chunk); repair: {repair(source)}"
                )
            checked += 1
    return checked


def _rewritten_later(part: dict[str, Any], name: str, parts: list[dict[str, Any]]) -> bool:
    """Whether a part finished after ``part`` rewrote ``name`` over an overlapping window."""
    a = part["window"]
    for other in parts:
        if other is part or name not in other["checksums"] or "window" not in other:
            continue
        if (other["finished"] or "") <= (part["finished"] or ""):
            continue
        b = other["window"]
        rows = a["row0"] < b["row0"] + b["n_rows"] and b["row0"] < a["row0"] + a["n_rows"]
        cols = a["col0"] < b["col0"] + b["n_cols"] and b["col0"] < a["col0"] + a["n_cols"]
        if rows and cols:
            return True
    return False
