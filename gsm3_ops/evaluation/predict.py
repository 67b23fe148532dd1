"""A bundle's whole-series predictions at evaluation sites, in physical units.

As in hydroDL's test, each series runs in one pass from a zero state; the caller starts it a
warm-up period before the first scored day and drops the warm-up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from gsm3_ops import variables
from gsm3_ops.cube import Cube
from gsm3_ops.di import series_features
from gsm3_ops.features import assemble_inputs, denormalise, normalise
from gsm3_ops.inference.engine import Engine
from gsm3_ops.model.bundle import Bundle
from gsm3_ops.training.dataset import CellSet, read_cells

SITE_BATCH = 256  # sites assembled and run at once: bounds the input array's memory


@dataclass
class RawInputs:
    """Unnormalised inputs at sites: forcings (time, sites), statics (sites,) and, for a DI
    bundle, the retrievals it absorbs (time, sites; NaN where none)."""

    forcing: dict[str, np.ndarray]
    static: dict[str, np.ndarray]
    retrievals: np.ndarray | None = None

    def take(self, columns: np.ndarray) -> RawInputs:
        """The inputs of a subset of sites (integer or boolean index)."""
        return RawInputs(
            {k: v[:, columns] for k, v in self.forcing.items()},
            {k: v[columns] for k, v in self.static.items()},
            None if self.retrievals is None else self.retrievals[:, columns],
        )


def missing_inputs(bundle: Bundle, cube: Cube) -> list[str]:
    """Input variables the bundle needs that were never written to the cube."""
    spec = bundle.spec
    have_f, have_s = set(cube.variables("forcing")), set(cube.variables("static"))
    return [v for v in spec.forcings if v not in have_f] + [
        v for v in spec.statics if v not in have_s
    ]


def read_inputs(
    cube: Cube,
    forcings: list[str],
    statics: list[str],
    start: dt.date,
    end: dt.date,
    cells: CellSet,
    retrievals: str | None = None,
) -> RawInputs:
    """Raw inputs at ``cells`` for ``start..end`` from the cube; ``retrievals``: also that
    daily variable (a DI bundle's target, e.g. ``smap``)."""
    forcing, static = read_cells(cube, forcings, statics, start, end, cells)
    obs = None
    if retrievals is not None:
        values = cube.read(retrievals, [retrievals], start, end)[retrievals].values
        obs = np.asarray(values)[:, cells.rows, cells.cols]
    return RawInputs(forcing, static, obs)


def target_head(bundle: Bundle, against: str) -> str:
    """The output the observation is compared with: the SMAP head against SMAP, else the
    product target (the in-situ head of a separate-head bundle; a shared-head bundle has one
    output, which :meth:`BundleSpec.output_index` gives for every target)."""
    targets = bundle.spec.targets
    if against == "smap" and "smap" in targets:
        return "smap"
    if against == "insitu" and "insitu" in targets:
        return "insitu"
    return bundle.spec.product_target


def predict_series(
    bundle: Bundle,
    inputs: RawInputs,
    target: str,
    device: torch.device,
    progress: bool = False,
    desc: str = "sites",
) -> np.ndarray:
    """Ensemble-mean series (time, sites) of output ``target`` in physical units, clipped to
    the product's valid range like the published product."""
    spec = bundle.spec
    k = spec.output_index(target)
    engine = Engine(bundle, device)
    n_time, n_sites = next(iter(inputs.forcing.values())).shape
    out = np.empty((n_time, n_sites), dtype=np.float64)
    lo, hi = variables.PRODUCT_RANGE
    bar = tqdm(total=n_sites, desc=desc, unit="site", disable=not progress, leave=False)
    for a in range(0, n_sites, SITE_BATCH):
        part = inputs.take(np.arange(a, min(a + SITE_BATCH, n_sites)))
        x = assemble_inputs(part.forcing, part.static, spec.forcings, spec.statics, spec.stats)
        if (di := spec.di_spec) is not None:  # retrievals at the latency, from the period
            if part.retrievals is None:
                raise ValueError("a DI bundle's prediction needs the retrievals it absorbs")
            z = normalise(part.retrievals, di.target, spec.stats).T
            x = np.concatenate([x, series_features(z, di.latency[0], di.max_age)], axis=-1)
        y = engine.series(x)[..., k]  # (member, time, sites), normalised
        values = np.clip(denormalise(y, target, spec.stats), lo, hi)
        out[:, a : a + x.shape[0]] = values.mean(axis=0)
        bar.update(x.shape[0])
    bar.close()
    return out
