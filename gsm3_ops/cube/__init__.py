"""The data cube: one Zarr store per deployment holding every input on the product grid.

- ``store.py``: :class:`Cube`, creating and opening the store, day region writes and window
  reads of the daily groups (``forcing``, ``smap``) and the statics;
- ``layout.py``: the store's layout and the checks every write passes;
- ``insitu.py``: the ``insitu`` group, dims (site, time);
- ``manifest.py``: per-day (and static) manifests: which source and version wrote what,
  checksums, and a status that makes interrupted writes visible;
- ``verify.py``: a day's data, the statics and the in-situ group read back against those
  checksums (damage found before use).

Callers use this package's names only; see ``docs/cube.md``.
"""

from gsm3_ops.cube.manifest import (
    COMPLETE,
    INCOMPLETE,
    MISSING,
    WRITING,
    CubeError,
    status_of,
    written_parts,
)
from gsm3_ops.cube.store import DEFAULT_END, DEFAULT_START, DEFAULT_TILE_SIZE, Cube
from gsm3_ops.cube.verify import CubeDamagedError, verify_day, verify_insitu, verify_static

__all__ = [
    "COMPLETE",
    "DEFAULT_END",
    "DEFAULT_START",
    "DEFAULT_TILE_SIZE",
    "INCOMPLETE",
    "MISSING",
    "WRITING",
    "Cube",
    "CubeDamagedError",
    "CubeError",
    "status_of",
    "verify_day",
    "verify_insitu",
    "verify_static",
    "written_parts",
]
