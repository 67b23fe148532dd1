"""The tests' deployment: the synthetic world's archive in the providers' formats over a small
coastal window, read by the real sources (the production path), and a cube ingested from it
once per session by ``gsm3-ops ingest`` (``tests/conftest.py::world_site``).

The window (Lamu, on the Kenyan coast: 15 x 12 cells, land and Indian Ocean, three ISMN
sites) and the period (``START..END``) cover every test's training, test and product days.
A test copies the ingested data root (about 2 s) instead of ingesting again; one that needs
an empty cube asks for ``ingested=False``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

REGION = {"lon_min": 40.0, "lat_min": -2.5, "lon_max": 41.0, "lat_max": -1.5}
START, END = dt.date(2019, 6, 1), dt.date(2020, 3, 10)
TRAIN_END = dt.date(2019, 12, 31)
GRIDDED = ("era5", "era5_land", "imerg", "mswep", "modis", "smap")
SEED = 42

# A small model and the tests' shared settings; modules change what they need.
BASE = {
    "region": REGION,
    "model": {"hidden_size": 16},
    "training": {
        "start": START.isoformat(), "end": TRAIN_END.isoformat(), "seq_len": 60,
        "batch_size": 16, "members": 2, "max_iterations": 4, "holdout_fraction": 0.2,
    },
    # The cube's tiles follow inference.tile_size: every copy of the ingested cube keeps it.
    # One tile holds the window (a cube file per variable and day: fewer files to copy).
    "inference": {"spinup_days": 60, "tile_size": 16},
    "product": {"start": "2020-01-01"},
}  # fmt: skip


def sources(archive: Path) -> dict:
    """The ``sources:`` section of a site whose mirrored data is ``archive`` (the demo's)."""
    options = {name: {"archive": str(archive / name)} for name in (*GRIDDED, "ismn")}
    options["static"] = {"archive": str(archive / "static")}  # NDVI: the MOD13A3 mean
    return {"gridded": list(GRIDDED), "insitu": ["ismn"], "options": options}


def document(tmp: Path, archive: Path, **sections: dict) -> dict:
    """The configuration document of a deployment in ``tmp`` reading ``archive``; each of
    ``sections`` updates (one level deep) or, when None, removes that section."""
    doc = {
        **BASE,
        "data_root": str(tmp / "data"),
        "publish_root": str(tmp / "pub"),
        "world": {"seed": SEED, "start": START, "end": END, "archive": str(archive)},
        "sources": sources(archive),
    }
    for key, value in sections.items():
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


@dataclass(frozen=True)
class WorldSite:
    """The session's archive, its ingested data root, and what ``gsm3-ops`` printed."""

    archive: Path
    data_root: Path
    printed: dict[str, str]

    def config(self, tmp: Path, ingested: bool = True, name: str = "config.yaml",
               **sections: dict) -> Path:  # fmt: skip
        """Write a configuration in ``tmp`` (data root ``tmp/data``, a copy of the ingested
        one unless ``ingested`` is False) and return its path."""
        doc = document(tmp, self.archive, **sections)
        data = Path(doc["data_root"])
        if ingested and not data.exists():
            shutil.copytree(self.data_root, data)
        path = tmp / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path
