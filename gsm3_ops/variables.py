"""The variable registry: every input and target with its units, valid range and transform.

Nothing else in the code base hard-codes a variable's unit or valid range: look it up here.
Forcings are daily fields (time, y, x); statics are (y, x); targets are what the model learns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gsm3_ops.errors import UsageError

Kind = Literal["forcing", "static", "target"]
Transform = Literal["none", "log_sqrt"]


class UnknownVariableError(UsageError, KeyError):
    """A variable or feature-set name that the registry does not know."""


def transform_values(values: np.ndarray, kind: Transform) -> np.ndarray:
    """``values`` after the input transform ``kind``: ``none`` leaves them as they are,
    ``log_sqrt`` is hydroDL's log10(sqrt(x) + 0.1) for skewed fluxes (negatives count as 0)."""
    if kind == "log_sqrt":
        return np.log10(np.sqrt(np.clip(values, 0.0, None)) + 0.1)
    return values


@dataclass(frozen=True)
class Variable:
    """One registry entry."""

    name: str
    kind: Kind
    units: str
    valid_min: float
    valid_max: float
    source: str
    long_name: str
    aggregation: str = "mean"  # how sub-daily values become a daily value
    transform: Transform = "none"  # applied before normalisation

    def apply_transform(self, values: np.ndarray) -> np.ndarray:
        """The variable's input transform (see :func:`transform_values`)."""
        return transform_values(values, self.transform)

    def out_of_range(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of finite values outside the valid range."""
        v = np.asarray(values)
        return np.isfinite(v) & ((v < self.valid_min) | (v > self.valid_max))


def _f(name, units, lo, hi, source, long_name, agg="mean", transform="none") -> Variable:
    return Variable(name, "forcing", units, lo, hi, source, long_name, agg, transform)


def _s(name, units, lo, hi, source, long_name, transform="none") -> Variable:
    return Variable(name, "static", units, lo, hi, source, long_name, "none", transform)


_ALL = [
    # 18 daily forcings
    _f("precip_mswep", "mm day-1", 0, 1000, "mswep", "MSWEP precipitation", "sum", "log_sqrt"),
    _f("precip_imerg", "mm day-1", 0, 1000, "imerg", "GPM IMERG precipitation", "sum", "log_sqrt"),
    _f("precip_era5", "mm day-1", 0, 1000, "era5", "ERA5 total precipitation", "sum", "log_sqrt"),
    _f("t2m", "K", 180, 340, "era5_land", "2 m air temperature"),
    _f("d2m", "K", 160, 320, "era5_land", "2 m dewpoint temperature"),
    _f("sp", "Pa", 40000, 110000, "era5_land", "surface pressure"),
    _f("ssrd", "W m-2", 0, 500, "era5_land", "surface solar radiation downwards", "mean"),
    _f("strd", "W m-2", 50, 600, "era5_land", "surface thermal radiation downwards", "mean"),
    _f("u10", "m s-1", -50, 50, "era5_land", "10 m eastward wind"),
    _f("v10", "m s-1", -50, 50, "era5_land", "10 m northward wind"),
    _f("stl1", "K", 190, 350, "era5_land", "soil temperature level 1 (0-7 cm)"),
    _f("lai_hv", "m2 m-2", 0, 10, "era5_land", "leaf area index, high vegetation"),
    _f("lai_lv", "m2 m-2", 0, 10, "era5_land", "leaf area index, low vegetation"),
    _f("swe", "kg m-2", 0, 5000, "era5_land", "snow water equivalent", "mean", "log_sqrt"),
    _f("lst_day", "K", 200, 360, "modis", "MODIS land surface temperature, day"),
    _f("lst_night", "K", 190, 340, "modis", "MODIS land surface temperature, night"),
    _f("albedo_bsa", "1", 0, 1, "modis", "MODIS black-sky shortwave albedo"),
    _f("albedo_wsa", "1", 0, 1, "modis", "MODIS white-sky shortwave albedo"),
    # 17 statics
    _s("elevation", "m", -500, 9000, "static", "elevation above sea level"),
    _s("slope", "degree", 0, 90, "static", "terrain slope"),
    _s("aspect_cos", "1", -1, 1, "static", "cosine of aspect, southern hemisphere flipped"),
    _s("plan_curvature", "m-1", -1, 1, "static", "plan curvature"),
    _s("roughness", "m", 0, 5000, "static", "terrain roughness (elevation range)"),
    _s("sand", "%", 0, 100, "static", "sand fraction of topsoil"),
    _s("clay", "%", 0, 100, "static", "clay fraction of topsoil"),
    _s("silt", "%", 0, 100, "static", "silt fraction of topsoil"),
    _s("bulk_density", "g cm-3", 0.1, 2.5, "static", "topsoil bulk density"),
    _s("land_cover", "1", 0, 255, "static", "land-cover class code"),
    _s("ndvi", "1", -1, 1, "static", "long-term mean NDVI"),
    _s("lst_day_mean", "K", 200, 360, "cube", "long-term mean LST, day"),
    _s("lst_night_mean", "K", 190, 340, "cube", "long-term mean LST, night"),
    _s("albedo_bsa_mean", "1", 0, 1, "cube", "long-term mean black-sky albedo"),
    _s("albedo_wsa_mean", "1", 0, 1, "cube", "long-term mean white-sky albedo"),
    _s("smap_mean", "m3 m-3", 0, 0.7, "cube", "long-term mean SMAP soil moisture"),
    _s("precip_mean", "mm day-1", 0, 100, "cube", "long-term mean precipitation", "log_sqrt"),
    # targets
    Variable(
        "smap",
        "target",
        "m3 m-3",
        0.0,
        0.7,
        "smap",
        "SMAP SPL3SMP_E soil moisture, daily mean of AM and PM",
    ),
    Variable(
        "insitu",
        "target",
        "m3 m-3",
        0.0,
        0.7,
        "ismn",
        "in-situ soil moisture near 5 cm, daily mean",
    ),
]

REGISTRY: dict[str, Variable] = {v.name: v for v in _ALL}

_FORCINGS = tuple(v.name for v in _ALL if v.kind == "forcing")
_STATICS = tuple(v.name for v in _ALL if v.kind == "static")

# Named (forcings, statics) sets in model input order. "gsm3" is the paper's (MSWEP, IMERG
# and ERA5 precipitation); "gsm3_open" leaves out MSWEP, a licensed product, for
# deployments without a licence (the paper ranks MSWEP+GPM+ERA5 ~ MSWEP > GPM > ERA5).
FEATURE_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gsm3": (_FORCINGS, _STATICS),
    "gsm3_open": (tuple(n for n in _FORCINGS if n != "precip_mswep"), _STATICS),
}

TARGETS: tuple[str, ...] = ("smap", "insitu")

# The product: volumetric water content of the top 0-5 cm, in the units of the targets.
PRODUCT_UNITS = REGISTRY["insitu"].units
PRODUCT_RANGE = (REGISTRY["insitu"].valid_min, REGISTRY["insitu"].valid_max)


def get(name: str) -> Variable:
    """The registry entry for ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownVariableError(f"unknown variable {name!r}; see gsm3_ops.variables") from None


def feature_set(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(forcings, statics) of a named feature set, in model input order."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        known = ", ".join(FEATURE_SETS)
        raise UnknownVariableError(f"unknown feature set {name!r}; known: {known}") from None


def forcing_sources(forcings: Iterable[str]) -> tuple[str, ...]:
    """The gridded sources that provide ``forcings``, in registry order, each once."""
    needed = {get(name).source for name in forcings}
    return tuple(dict.fromkeys(v.source for v in _ALL if v.source in needed))
