"""The quality flag: one bit per condition a user should know about a cell's value.

Every function here works on arrays handed to it (the day's forcing, the statics, the
windows that provisional streams filled); nothing reads the cube. Bits and the fill value
are defined once in ``layers.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from gsm3_ops.config import QualityFlagConfig
from gsm3_ops.grid import Window
from gsm3_ops.publish.layers import (
    FLAG_DRY_NORTH_SLOPE,
    FLAG_FILL,
    FLAG_FROZEN,
    FLAG_GAP_FILLED,
    FLAG_NO_RETRIEVAL,
    FLAG_PERMAFROST,
    FLAG_PROVISIONAL,
    FLAG_RETRIEVAL_LATE,
)

FLAG_STATICS = ("aspect_cos", "slope", "smap_mean", "lst_day_mean", "lst_night_mean")
FLAG_FORCINGS = ("stl1", "t2m")


def is_provisional(version: str, markers: Iterable[str]) -> bool:
    """Whether a source version names a provisional stream: one of ``markers`` is a whole
    token of it, case-insensitive (``ERA5T``, ``IMERG-Early``, ``MSWEP NRT``; not ``latest``)."""
    tokens = {t for t in re.split(r"[^0-9a-z]+", version.lower()) if t}
    return any(m.lower() in tokens for m in markers)


def provisional_mask(
    parts: Iterable[tuple[str, Mapping[str, int]]], domain: Window, markers: Iterable[str]
) -> np.ndarray:
    """Cells of ``domain`` that a provisional stream filled: ``parts`` are the (version, grid
    window) of each forcing write of the day (``Cube.written_parts``)."""
    mask = np.zeros(domain.shape, dtype=bool)
    markers = tuple(markers)
    for version, w in parts:
        if not is_provisional(str(version), markers):
            continue
        r0, c0 = w["row0"] - domain.row0, w["col0"] - domain.col0
        r1, c1 = r0 + w["n_rows"], c0 + w["n_cols"]
        mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
    return mask


def frozen_mask(stl1: np.ndarray, t2m: np.ndarray, cfg: QualityFlagConfig) -> np.ndarray:
    """Soil temperature level 1 or 2 m air temperature of the day below ``frozen_below_k``;
    a missing temperature sets nothing (that cell is flagged gap-filled instead)."""
    with np.errstate(invalid="ignore"):
        return (stl1 < cfg.frozen_below_k) | (t2m < cfg.frozen_below_k)


def dry_north_slope_mask(
    aspect_cos: np.ndarray, slope: np.ndarray, smap_mean: np.ndarray, cfg: QualityFlagConfig
) -> np.ndarray:
    """Poleward-facing (``aspect_cos >= north_aspect_cos_min``; the static is already flipped
    in the southern hemisphere), sloping (``slope >= north_slope_min_deg``: aspect means
    nothing on flat ground) and dry (``smap_mean <= dry_smap_mean_max``)."""
    with np.errstate(invalid="ignore"):
        return (
            (aspect_cos >= cfg.north_aspect_cos_min)
            & (slope >= cfg.north_slope_min_deg)
            & (smap_mean <= cfg.dry_smap_mean_max)
        )


def permafrost_mask(
    lat: np.ndarray, lst_day_mean: np.ndarray, lst_night_mean: np.ndarray, cfg: QualityFlagConfig
) -> np.ndarray:
    """North of ``permafrost_lat_min`` with a long-term mean of day and night LST at or below
    ``permafrost_lst_mean_max_k``; where the LST means are missing, latitude alone decides."""
    lst = (lst_day_mean + lst_night_mean) / 2
    with np.errstate(invalid="ignore"):
        cold = np.where(np.isfinite(lst), lst <= cfg.permafrost_lst_mean_max_k, True)
    return (lat >= cfg.permafrost_lat_min) & cold


def compose_flags(valid: np.ndarray, **bits: np.ndarray) -> np.ndarray:
    """The uint8 quality flag: 255 where ``valid`` is False, else the OR of the set bits.

    ``bits`` are boolean masks named ``gap_filled``, ``provisional``, ``frozen``,
    ``dry_north_slope``, ``permafrost``, ``no_retrieval``, ``retrieval_late`` (any subset).
    """
    values = {
        "gap_filled": FLAG_GAP_FILLED,
        "provisional": FLAG_PROVISIONAL,
        "frozen": FLAG_FROZEN,
        "dry_north_slope": FLAG_DRY_NORTH_SLOPE,
        "permafrost": FLAG_PERMAFROST,
        "no_retrieval": FLAG_NO_RETRIEVAL,
        "retrieval_late": FLAG_RETRIEVAL_LATE,
    }
    unknown = set(bits) - set(values)
    if unknown:
        raise ValueError(f"unknown quality-flag bits {sorted(unknown)}")
    flag = np.zeros(valid.shape, dtype=np.uint8)
    for name, mask in bits.items():
        flag |= np.where(mask, values[name], 0).astype(np.uint8)
    return np.where(valid, flag, FLAG_FILL).astype(np.uint8)


def day_flags(
    valid: np.ndarray,
    *,
    gap_filled: np.ndarray,
    provisional: np.ndarray,
    provisional_day: bool,
    forcing: Mapping[str, np.ndarray],
    static: Mapping[str, np.ndarray],
    lat: np.ndarray,
    cfg: QualityFlagConfig,
    no_retrieval: np.ndarray | None = None,
    retrieval_late: bool = False,
) -> np.ndarray:
    """The day's quality flag over a domain: forcing gap-filled, provisional inputs (the
    cells of ``provisional``, or every cell of a ``provisional_day``: one published before a
    required input arrived), frozen soil (``forcing`` holds the day's ``stl1`` and ``t2m``),
    dry poleward slopes and Arctic permafrost (``static`` holds :data:`FLAG_STATICS`);
    ``lat`` is each cell's latitude. A DI bundle's day adds the cells where it absorbed no
    retrieval (``no_retrieval``) and, on every cell, ``retrieval_late``."""
    di = {}
    if no_retrieval is not None:
        di = {"no_retrieval": no_retrieval, "retrieval_late": np.full(valid.shape, retrieval_late)}
    return compose_flags(
        valid,
        gap_filled=gap_filled,
        provisional=provisional | provisional_day,
        frozen=frozen_mask(forcing["stl1"], forcing["t2m"], cfg),
        dry_north_slope=dry_north_slope_mask(
            static["aspect_cos"], static["slope"], static["smap_mean"], cfg
        ),
        permafrost=permafrost_mask(lat, static["lst_day_mean"], static["lst_night_mean"], cfg),
        **di,
    )
