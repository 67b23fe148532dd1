"""Which inputs a day needs, which it has, and the versions that filled it.

A day can be published only when every source of the model's forcings wrote it completely (or, with
``--provisional``, when the missing ones are filled and the day is flagged provisional). The
SMAP target is never required: the daily product does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gsm3_ops.cube import COMPLETE


def missing_inputs(required: Sequence[str], cube_manifest: dict[str, Any]) -> dict[str, str]:
    """``required`` inputs (``Deployment.required_inputs``) that are not complete in a day's
    cube manifest, with the reason."""
    entries = cube_manifest.get("entries") or {}
    failures = cube_manifest.get("failures") or {}
    out = {}
    for key in required:
        entry = entries.get(key)
        if entry is not None and entry.get("status") == COMPLETE:
            continue
        if key in failures:
            out[key] = failures[key].get("error", "failed")
        elif entry is not None:
            out[key] = f"write {entry.get('status')}"
        else:
            out[key] = "not ingested"
    return out


def input_versions(cube_manifest: dict[str, Any]) -> dict[str, str]:
    """``group/source`` -> version of every complete entry of a day's cube manifest."""
    entries = cube_manifest.get("entries") or {}
    return {
        key: str(e.get("version"))
        for key, e in sorted(entries.items())
        if e.get("status") == COMPLETE
    }
