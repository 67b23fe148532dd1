"""The synthetic world's SMAP days as ``SPL3SMP_E`` granules, spatial subsets of a window.

Each day becomes one HDF5 file in the layout of NSIDC's SPL3SMP_E (``smap_structure/`` in the
fixtures): groups ``Soil_Moisture_Retrieval_Data_AM`` and ``..._PM`` (PM names end in
``_pm``) with ``soil_moisture``, ``retrieval_qual_flag``, ``EASE_row_index``,
``EASE_column_index``, ``latitude`` and ``longitude``, fills of -9999 (floats) and 65534
(integers) wherever a pass has no retrieval. A file holds the window and a one-cell margin
(without retrievals: the world says nothing there) as a Harmony/OPeNDAP spatial subset
would: a rectangle of the 9 km grid with anonymous dimensions, named
``SMAP_L3_SM_P_E_YYYYMMDD_R19240_001_subsetted.nc4``, in NSIDC's folder layout
``SPL3SMP_E.006/YYYY.MM.DD/``. Subsets, because a whole global day (1624 x 3856 cells, a
dozen arrays, ~150 MB) would cost the demo far more time and disk than the window's
~190 kB, and because a regional site fetches subsets: the demo then takes the reader's
subset path (the whole-file path has its own tests).

The world gives one daily value per observed cell. It is split into passes so that the
reader's mean of the recommended AM and PM retrievals gives it back exactly: both passes
equal, or one pass alone, or one pass good and the other flagged "not recommended" (bit 0)
with another value. Some unobserved cells get a flagged retrieval too, which the reader must
drop. Good retrievals carry flag 0 or 8 (bit 3, freeze/thaw retrieval failed, leaves the
quality recommended). ``valid_min``/``valid_max`` are the world's own range (its SMAP is
clipped to 0..0.6), where a real file says 0.02..0.5.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.sources.synthetic import OBS_MAX, SyntheticSource
from gsm3_ops.sources.synthetic_world import EPOCH, hash_keys, uniform

PREFIX = "SMAP_L3_SM_P_E"
PRODUCT = "SPL3SMP_E.006"
CRID = "R19240_001"
FLOAT_FILL = np.float32(-9999.0)
INDEX_FILL = np.uint16(65534)
NOT_RECOMMENDED = 1  # retrieval_qual_flag bit 0
FT_FAILED = 8  # bit 3: freeze/thaw retrieval failed; the soil moisture stays recommended
MARGIN = 1  # cells of subset around the window: a subset's box rarely fits it exactly


def granule_path(folder: Path, day: dt.date) -> Path:
    """Where the granule of ``day`` goes: NSIDC's day folder, a Harmony subset's name."""
    name = f"{PREFIX}_{day:%Y%m%d}_{CRID}_subsetted.nc4"
    return Path(folder) / PRODUCT / f"{day:%Y.%m.%d}" / name


def write_smap(
    world: SyntheticSource,
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    end: dt.date,
    folder: Path,
) -> list[Path]:
    """Write the world's SMAP days ``start..end`` over ``window`` as granules under
    ``folder``; returns their paths."""
    return write_granules(world.smap(grid, window, start, end), grid, window, folder, world.seed)


def write_granules(
    smap: xr.DataArray, grid: EaseGrid, window: Window, folder: Path, seed: int = 42
) -> list[Path]:
    """Write each day of ``smap`` (time, y, x) over ``window``, m3/m3, NaN where unobserved,
    as one subset granule of the window and a ``MARGIN`` of cells without retrievals (the
    world says nothing of them); returns their paths."""
    r0, c0 = max(window.row0 - MARGIN, 0), max(window.col0 - MARGIN, 0)
    r1 = min(window.row0 + window.n_rows + MARGIN, grid.n_rows)
    c1 = min(window.col0 + window.n_cols + MARGIN, grid.n_cols)
    outer = Window(r0, c0, r1 - r0, c1 - c0)
    inner = window.relative_to(outer)
    lon, lat = grid.lonlat(outer)
    rows, cols = np.indices(outer.shape)
    rows, cols = rows + outer.row0, cols + outer.col0
    attrs = _attributes(grid)
    values = np.full(outer.shape, np.nan, dtype=np.float32)
    paths = []
    for t, day_values in zip(pd.DatetimeIndex(smap["time"].values), smap.values, strict=True):
        day = t.date()
        values[inner.rows, inner.cols] = day_values
        passes = split_passes(values, rows, cols, day, seed)
        path = granule_path(folder, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, passes, (rows, cols, lat, lon), attrs)
        paths.append(path)
    return paths


# How a cell's passes look, by a uniform draw per cell and day: (upper bound of the draw,
# AM state, PM state). GOOD: the world's value, recommended; BAD: another value, flagged
# not recommended; NONE: no retrieval (fills).
NONE, GOOD, BAD = 0, 1, 2
OBSERVED = ((0.5, GOOD, GOOD), (0.65, GOOD, NONE), (0.8, NONE, GOOD), (0.9, GOOD, BAD),
            (1.0, BAD, GOOD))  # fmt: skip
UNOBSERVED = ((0.05, BAD, NONE), (0.1, NONE, BAD), (1.0, NONE, NONE))


def split_passes(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, day: dt.date, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """AM and PM ``(soil_moisture, retrieval_qual_flag)`` whose recommended mean is
    ``values`` (NaN and the flag fill where a pass has no retrieval). The split depends only
    on the cell, the day and the seed."""
    h = hash_keys(seed, "smap_passes", (day - EPOCH).days, rows, cols)
    u, seen = uniform(h), np.isfinite(values)
    good = np.where((h & np.uint64(7)) == 0, FT_FAILED, 0)  # low bits, unused by ``uniform``
    other = np.where(seen, np.where(values > 0.3, values - 0.15, values + 0.15), 0.25)
    k_seen = np.searchsorted([c[0] for c in OBSERVED], u, side="right")
    k_unseen = np.searchsorted([c[0] for c in UNOBSERVED], u, side="right")
    passes = []
    for p in (1, 2):
        state = np.where(
            seen, np.array([c[p] for c in OBSERVED])[k_seen],
            np.array([c[p] for c in UNOBSERVED])[k_unseen],
        )  # fmt: skip
        kinds = [state == GOOD, state == BAD]
        sm = np.select(kinds, [values, other], np.nan).astype(np.float32)
        flag = np.select(kinds, [good, good | NOT_RECOMMENDED], INDEX_FILL).astype(np.uint16)
        passes.append((sm, flag))
    return passes


def _write(
    path: Path,
    passes: list[tuple[np.ndarray, np.ndarray]],
    coords: tuple[np.ndarray, ...],
    attrs: dict[str, dict],
) -> None:
    """One granule: per pass, the fields the SPL3SMP_E reader needs, with their attributes;
    written under a temporary name and renamed, so a reader never sees half a file."""
    rows, cols, lat, lon = coords
    tmp = path.with_name(path.name + ".part")
    with h5py.File(tmp, "w") as f:
        f.attrs["history"] = (
            "gsm3-ops synthetic world in the SPL3SMP_E layout: a spatial subset of rows "
            f"{rows[0, 0]}..{rows[-1, 0]}, columns {cols[0, 0]}..{cols[0, -1]}"
        )
        for (group_name, suffix), (sm, flag) in zip(GROUPS, passes, strict=True):
            g = f.create_group(group_name)
            has = ~np.isnan(sm)
            fields = {
                "soil_moisture": np.where(has, sm, FLOAT_FILL),
                "retrieval_qual_flag": flag,
                "EASE_row_index": np.where(has, rows, INDEX_FILL),
                "EASE_column_index": np.where(has, cols, INDEX_FILL),
                "latitude": np.where(has, lat, FLOAT_FILL),
                "longitude": np.where(has, lon, FLOAT_FILL),
            }
            for name, data in fields.items():
                fill = attrs[name]["_FillValue"]
                d = g.create_dataset(name + suffix, data=data.astype(fill.dtype), fillvalue=fill)
                for key, value in attrs[name].items():
                    d.attrs[key] = value
    tmp.replace(path)


GROUPS = (("Soil_Moisture_Retrieval_Data_AM", ""), ("Soil_Moisture_Retrieval_Data_PM", "_pm"))


def _attributes(grid: EaseGrid) -> dict[str, dict]:
    """The attributes a reader uses, as SPL3SMP_E carries them (the soil moisture range aside;
    the long names and ``coordinates`` are left out: writing attributes is most of the cost)."""
    return {
        "soil_moisture": {
            "units": "cm**3/cm**3",
            "valid_min": np.float32(0.0),
            "valid_max": np.float32(OBS_MAX),
            "_FillValue": FLOAT_FILL,
        },
        "retrieval_qual_flag": {
            "flag_masks": "1s, 2s, 4s, 8s",
            "flag_meanings": "Retrieval_recommended Retrieval_attempted Retrieval_success "
            "FT_retrieval_success",
            "_FillValue": INDEX_FILL,
        },
        "EASE_row_index": {"valid_max": np.uint16(grid.n_rows - 1), "_FillValue": INDEX_FILL},
        "EASE_column_index": {"valid_max": np.uint16(grid.n_cols - 1), "_FillValue": INDEX_FILL},
        "latitude": {"units": "degrees_north", "_FillValue": FLOAT_FILL},
        "longitude": {"units": "degrees_east", "_FillValue": FLOAT_FILL},
    }
