"""Checks a gridded day must pass before it goes into the cube.

Every source's day is checked the same way, against the variable registry, so a units mistake
or an empty field in any reader is caught before it can reach the model:

- a variable the registry does not know, or with dims other than (time, y, x), is an error;
- a field with no finite value at all is an error (a source that fills gaps, such as MODIS
  from climatology, does so before this check and says so in the granule's notes), except
  where gaps are part of the observation: the SMAP target (no overpass over the window) and
  the MODIS optical variables (a window under cloud all day). Those are written as missing,
  with an ``empty:<variable>`` note in the day's manifest, and the model's missing-input
  rule (training mean, quality flag) takes over;
- finite values outside the registry's valid range are an error naming the variable, the
  day, how many values and the range found: such values mean a unit or scale-factor mistake,
  and clipping them would hide it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops import variables as registry
from gsm3_ops.errors import SourceError


class InvalidDataError(SourceError):
    """A gridded day failed the registry checks (variable, day and reason are named)."""


# Variables whose empty days are normal (no overpass, cloud), not a failure.
MAY_BE_EMPTY = frozenset({"smap", "lst_day", "lst_night", "albedo_bsa", "albedo_wsa"})


def check_gridded(ds: xr.Dataset, source: str) -> list[str]:
    """Raise :class:`InvalidDataError` unless every variable of ``ds`` passes the checks.

    Returns notes for the day manifest (``empty:<variable>`` for an allowed empty field).
    """
    if not ds.data_vars:
        raise InvalidDataError(f"source {source!r} returned no variables")
    notes = []
    for name, da in ds.data_vars.items():
        for day, values in _days(da):
            where = f"source {source!r}, {name} on {day.isoformat()}"
            if name in MAY_BE_EMPTY and not np.isfinite(values).any():
                notes.append(f"empty:{name}")
                continue
            _check_values(str(name), values, where)
    return sorted(set(notes))


def _days(da: xr.DataArray) -> list[tuple[dt.date, np.ndarray]]:
    if tuple(da.dims) != ("time", "y", "x"):
        raise InvalidDataError(f"{da.name}: dims {da.dims}, expected ('time', 'y', 'x')")
    times = pd.DatetimeIndex(da["time"].values)
    values = np.asarray(da.values, dtype=np.float64)
    return [(t.date(), values[i]) for i, t in enumerate(times)]


def _check_values(name: str, values: np.ndarray, where: str) -> None:
    try:
        var = registry.get(name)
    except registry.UnknownVariableError as exc:
        raise InvalidDataError(f"{where}: {exc.args[0]}") from None
    finite = np.isfinite(values)
    if not finite.any():
        raise InvalidDataError(f"{where}: the field has no valid value (all NaN)")
    bad = var.out_of_range(values)
    if bad.any():
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        raise InvalidDataError(
            f"{where}: {int(bad.sum())} of {int(finite.sum())} values outside the valid range "
            f"{var.valid_min}..{var.valid_max} {var.units} (found {lo:.4g}..{hi:.4g}); "
            "a unit or scale mistake in the input?"
        )
