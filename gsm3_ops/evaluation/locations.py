"""Where and against what a model is evaluated: the site table and the observed series.

Three observations are known: ``insitu`` (the cube's in-situ stations, what the GSM3 paper
evaluates against), ``smap`` (the cube's SMAP-like target at land cells) and ``truth`` (the
synthetic world's hidden soil moisture at land cells; only a source with a ``truth`` method
has it). Stations are identified by their id, cells by ``cell_<row>_<col>`` (global grid row
and column).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from gsm3_ops.config import BoxConfig
from gsm3_ops.cube import Cube
from gsm3_ops.evaluation.scores import EvaluationError
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regions import region_of
from gsm3_ops.training.dataset import CellSet

Against = Literal["insitu", "smap", "truth"]
AGAINST: tuple[str, ...] = ("insitu", "smap", "truth")


def cell_id(row: int, col: int) -> str:
    """The id of a grid cell as a site: ``cell_<row>_<col>`` (global row and column)."""
    return f"cell_{int(row):04d}_{int(col):04d}"


def site_table(
    cube: Cube,
    against: str,
    land_cells: tuple[np.ndarray, np.ndarray],
    regions: Mapping[str, BoxConfig],
) -> pd.DataFrame:
    """Sites to evaluate: indexed by id, with ``lon``, ``lat``, ``region`` and global ``row``,
    ``col``; stations for ``insitu``, the domain's land cells (domain-relative ``land_cells``)
    for ``smap`` and ``truth``."""
    if against not in AGAINST:
        raise EvaluationError(f"unknown observation {against!r}; choose one of {AGAINST}")
    d = cube.domain
    if against == "insitu":
        da = cube.read_insitu(cube.start, cube.start)
        ids = [str(s) for s in da["site"].values]
        if not ids:
            raise EvaluationError(
                f"the cube {cube.path} holds no in-situ site; evaluate against smap or truth"
            )
        lon = np.asarray(da["lon"].values, dtype=float)
        lat = np.asarray(da["lat"].values, dtype=float)
        row = np.asarray(da["row"].values, dtype=np.int64)
        col = np.asarray(da["col"].values, dtype=np.int64)
    else:
        row = land_cells[0].astype(np.int64) + d.row0
        col = land_cells[1].astype(np.int64) + d.col0
        lon, lat = cube.grid.rowcol_to_lonlat(row, col)
        ids = [cell_id(r, c) for r, c in zip(row, col, strict=True)]
    table = pd.DataFrame(
        {"lon": lon, "lat": lat, "region": region_of(lon, lat, regions), "row": row, "col": col},
        index=pd.Index(ids, name="site"),
    )
    if table.empty:
        raise EvaluationError(f"no {against} location to evaluate in the domain of {cube.path}")
    return table


def cells_of(sites: pd.DataFrame, domain: Window) -> CellSet:
    """The grid cells holding ``sites`` (domain-relative, as the training readers want)."""
    return CellSet(
        sites["row"].to_numpy(np.int64) - domain.row0,
        sites["col"].to_numpy(np.int64) - domain.col0,
        domain.row0,
        domain.col0,
    )


def observations(
    cube: Cube,
    against: str,
    sites: pd.DataFrame,
    start: dt.date,
    end: dt.date,
    source: Any = None,
    grid: EaseGrid | None = None,
) -> np.ndarray:
    """Observed series (time, sites) for ``start..end``, NaN where missing.

    ``source`` (with a ``truth(grid, window, start, end)`` method) is needed for ``truth``.
    """
    cells = cells_of(sites, cube.domain)
    if against == "insitu":
        da = cube.read_insitu(start, end)
        at = pd.Index([str(s) for s in da["site"].values]).get_indexer(sites.index)
        if (at < 0).any():
            lost = list(sites.index[at < 0][:5])
            raise EvaluationError(f"sites {lost} are not in the in-situ group of {cube.path}")
        return np.asarray(da.values, dtype=np.float64)[at].T
    if against == "smap":
        values = cube.read("smap", ["smap"], start, end)["smap"].values
    elif against == "truth":
        if source is None or not hasattr(source, "truth"):
            raise EvaluationError(
                "the configured source has no hidden truth; evaluate against insitu or smap"
            )
        values = source.truth(grid or cube.grid, cube.domain, start, end).values
    else:
        raise EvaluationError(f"unknown observation {against!r}; choose one of {AGAINST}")
    return np.asarray(values, dtype=np.float64)[:, cells.rows, cells.cols]


def site_attributes(cube: Cube, sites: pd.DataFrame) -> pd.DataFrame:
    """The cube's static attributes (terrain, soil, long-term means) at each site's cell."""
    names = cube.variables("static")
    if not names:
        return pd.DataFrame(index=sites.index)
    cells = cells_of(sites, cube.domain)
    ds = cube.read_static(names)
    return pd.DataFrame(
        {n: np.asarray(ds[n].values, dtype=float)[cells.rows, cells.cols] for n in names},
        index=sites.index,
    )
