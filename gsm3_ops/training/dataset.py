"""Training arrays from the cube: grid cells with the SMAP target, in-situ sites with both.

Normalisation statistics come from the training locations only (held-out cells and the
sites in them are excluded before anything is computed), so nothing leaks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from gsm3_ops.cube import Cube
from gsm3_ops.features import Stats, assemble_inputs, compute_stats, normalise
from gsm3_ops.training.sampling import TrainingData


@dataclass
class CellSet:
    """Domain-relative rows and columns of the cells to use, and the domain's origin."""

    rows: np.ndarray
    cols: np.ndarray
    row0: int
    col0: int


def read_cells(
    cube: Cube,
    forcings: list[str],
    statics: list[str],
    start: dt.date,
    end: dt.date,
    cells: CellSet,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Forcings (time, cells) and statics (cells,) at ``cells`` from the cube."""
    ds = cube.read("forcing", forcings, start, end)
    forcing = {n: np.asarray(ds[n].values)[:, cells.rows, cells.cols] for n in forcings}
    st = cube.read_static(statics)
    static = {n: np.asarray(st[n].values)[cells.rows, cells.cols] for n in statics}
    return forcing, static


def build_training_data(
    cube: Cube,
    forcings: list[str],
    statics: list[str],
    targets: list[str],
    start: dt.date,
    end: dt.date,
    cells: CellSet,
    stats: Stats | None = None,
    shared: bool = False,
) -> tuple[TrainingData, Stats]:
    """Normalised training arrays over ``cells`` (training cells only) and their statistics.

    The statistics are computed from these cells and the sites in them, unless ``stats`` is
    given (computed on a wider training set, e.g. the union of an ensemble's folds).
    ``shared`` (one output for both targets): the in-situ values are normalised with SMAP's
    statistics, so that one output is on one scale for both teachers; SMAP's, because it
    covers every training cell while the sites are few and clustered.
    """
    forcing, static = read_cells(cube, forcings, statics, start, end, cells)
    smap = np.asarray(cube.read("smap", ["smap"], start, end)["smap"].values)
    smap = smap[:, cells.rows, cells.cols]
    insitu = cube.read_insitu(start, end)
    # Sites inside the training cells; others (held out, sea, elsewhere) are left out.
    where = {
        (int(r), int(c)): k for k, (r, c) in enumerate(zip(cells.rows, cells.cols, strict=True))
    }
    site_cell, site_rows = [], []
    for s in range(insitu.sizes["site"]):
        key = (int(insitu["row"][s]) - cells.row0, int(insitu["col"][s]) - cells.col0)
        if key in where:
            site_cell.append(where[key])
            site_rows.append(s)
    obs = np.asarray(insitu.values, dtype=np.float32)[site_rows].T  # (time, sites)

    raw = {**forcing, **static, "smap": smap}
    if "insitu" in targets and obs.size and np.isfinite(obs).any():
        raw["insitu"] = obs
    if stats is None:
        stats = compute_stats(raw)
        stats.setdefault("insitu", stats["smap"])  # no sites: share the SMAP scale
        if shared:
            stats["insitu"] = stats["smap"]

    x_cells = assemble_inputs(forcing, static, forcings, statics, stats)
    n_cells, n_time = x_cells.shape[:2]
    site_cell_idx = np.asarray(site_cell, dtype=np.int64)
    y_cells = np.full((n_cells, n_time, len(targets)), np.nan, dtype=np.float32)
    y_sites = np.full((len(site_cell), n_time, len(targets)), np.nan, dtype=np.float32)
    if "smap" in targets:
        k = targets.index("smap")
        smap_n = normalise(smap, "smap", stats).T
        y_cells[:, :, k] = smap_n
        y_sites[:, :, k] = smap_n[site_cell_idx]
    if "insitu" in targets and site_cell:
        y_sites[:, :, targets.index("insitu")] = normalise(obs, "insitu", stats).T
    data = TrainingData(
        x=np.concatenate([x_cells, x_cells[site_cell_idx]]),
        y=np.concatenate([y_cells, y_sites]),
        is_site=np.concatenate([np.zeros(n_cells, bool), np.ones(len(site_cell), bool)]),
        cell=np.concatenate([np.arange(n_cells), site_cell_idx]),
    )
    return data, stats
