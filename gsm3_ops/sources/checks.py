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
  and clipping them would hide it;
- coverage: the share of the window's land cells with a value is recorded for every day and
  source (``coverage:<share>``, the least of its variables, and ``coverage:<variable>=<share>``
  for each variable below 1). A forcing below ``min_coverage`` is an error (a file cut to a
  smaller area, a truncated download); above it, the missing cells take the model's
  missing-input rule and the quality flag's gap-filled bit.
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


def check_gridded(
    ds: xr.Dataset, source: str, land: np.ndarray | None = None, min_coverage: float = 0.0
) -> list[str]:
    """Raise :class:`InvalidDataError` unless every variable of ``ds`` passes the checks.

    ``land`` (the window's land mask) turns on the coverage check against ``min_coverage``.
    Returns notes for the day manifest (``empty:<variable>`` for an allowed empty field,
    ``coverage:...`` shares when ``land`` is given).
    """
    if not ds.data_vars:
        raise InvalidDataError(f"source {source!r} returned no variables")
    notes = []
    shares: dict[str, float] = {}
    for name, da in ds.data_vars.items():
        for day, values in _days(da):
            where = f"source {source!r}, {name} on {day.isoformat()}"
            if land is not None and land.any():
                share = float(np.isfinite(values[land]).mean())
                shares[str(name)] = min(share, shares.get(str(name), 1.0))
                if name not in MAY_BE_EMPTY and 0 < share < min_coverage:
                    raise InvalidDataError(
                        f"{where}: values at {share:.1%} of the window's land cells, below "
                        f"sources.min_coverage {min_coverage:.0%} (a file cut to a smaller "
                        "area, or a truncated download?)"
                    )
            if name in MAY_BE_EMPTY and not np.isfinite(values).any():
                notes.append(f"empty:{name}")
                continue
            _check_values(str(name), values, where)
    if shares:
        notes.append(f"coverage:{min(shares.values()):.4f}")
        notes += [f"coverage:{k}={v:.4f}" for k, v in shares.items() if v < 1]
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
