"""A deployment: the configured grid, domain, land cells, source and stores, resolved once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from gsm3_ops.config import Settings
from gsm3_ops.cube import Cube
from gsm3_ops.errors import SourceError, UsageError
from gsm3_ops.grid import EaseGrid, Window, get_grid
from gsm3_ops.model.bundle import BUNDLE_JSON, read_spec
from gsm3_ops.sources.base import GriddedSource
from gsm3_ops.sources.catalog import gridded_source, insitu_source
from gsm3_ops.sources.synthetic import SyntheticSource
from gsm3_ops.variables import feature_set, forcing_sources


class RunError(UsageError, RuntimeError):
    """A run that cannot proceed for a reason the user can fix (date, configuration)."""


@dataclass
class Deployment:
    """Everything a stage needs to know about where and from what the product is made."""

    settings: Settings

    @cached_property
    def grid(self) -> EaseGrid:
        """The product grid."""
        return get_grid(self.settings.grid)

    @cached_property
    def domain(self) -> Window:
        """The configured region's window, or the whole grid."""
        r = self.settings.region
        if r is None:
            return self.grid.full
        return self.grid.window_from_bbox(r.lon_min, r.lat_min, r.lon_max, r.lat_max)

    @cached_property
    def land(self) -> np.ndarray:
        """Land mask of the domain."""
        return self.grid.land_mask(self.domain)

    @cached_property
    def latitudes(self) -> np.ndarray:
        """Latitude (degrees) of each cell centre of the domain."""
        d = self.domain
        rows = np.arange(d.row0, d.row0 + d.n_rows)
        _, lat = self.grid.rowcol_to_lonlat(rows, np.zeros_like(rows))  # cylindrical: by row
        return np.broadcast_to(np.asarray(lat)[:, None], d.shape)

    @cached_property
    def land_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Domain-relative (rows, cols) of land cells, row-major."""
        return np.nonzero(self.land)

    @cached_property
    def source(self) -> SyntheticSource:
        """The synthetic world whose archive the deployment reads (``world:``, the demo), for
        its hidden truth (``evaluate --against truth``, ``benchmarks/demo_skill``)."""
        world = self.settings.world
        if world is not None:
            return SyntheticSource(world.seed)
        raise RunError(
            "this needs the synthetic world (a world: section, as in the demo profile); this "
            "deployment reads real data, which has no hidden truth"
        )

    def gridded_sources(
        self, names: tuple[str, ...] | None = None, cube: Cube | None = None
    ) -> list[GriddedSource]:
        """The configured real gridded sources (or those ``names``), built from their options.

        With ``cube``, MODIS fills a missing day from the cube's own history unless a
        climatology file is configured.
        """
        cfg = self.settings.sources
        names = cfg.gridded if names is None else names
        try:
            return [gridded_source(n, self._options(n), **self._extra(n, cube)) for n in names]
        except SourceError as exc:
            raise RunError(str(exc)) from None

    def insitu_sources(self, names: tuple[str, ...] | None = None) -> list:
        """The configured in-situ sources (or those ``names``), built from their options."""
        names = self.settings.sources.insitu if names is None else names
        try:
            return [insitu_source(n, self._options(n)) for n in names]
        except SourceError as exc:
            raise RunError(str(exc)) from None

    def _options(self, name: str) -> dict:
        """A source's config options; ERA5 requests default to the domain's box. An archive
        that is not a folder is a configuration error, named with how the demo makes its."""
        opts = dict(self.settings.sources.options.get(name) or {})
        archive = opts.get("archive")
        if archive is not None and not Path(archive).is_dir():
            hint = (
                " (`gsm3-ops world` writes it; `make demo` does both)"
                if self.settings.world
                else ""
            )
            raise RunError(f"sources.options.{name}.archive: {archive} is not a folder{hint}")
        if name in ("era5", "era5_land") and "area" not in opts and self.settings.region:
            from gsm3_ops.sources.era5 import window_area

            opts["area"] = window_area(self.grid, self.domain)
        return opts

    def _extra(self, name: str, cube: Cube | None) -> dict:
        if name != "modis" or cube is None:
            return {}
        from gsm3_ops.sources.modis import HistoryClimatology

        def read(var: str, start: dt.date, end: dt.date, window: Window) -> np.ndarray:
            return cube.read("forcing", [var], start, end, window)[var].values

        return {"climatology": HistoryClimatology(read)}

    @property
    def raw_dir(self) -> Path:
        """Where fetched raw files are kept while (or, with ``keep_raw``, after) ingesting."""
        return self.settings.data_root / "raw"

    @property
    def cube_path(self) -> Path:
        """``<data_root>/cube.zarr``."""
        return self.settings.data_root / "cube.zarr"

    def open_cube(self) -> Cube:
        """Create or open the deployment's cube."""
        c = self.settings.cube
        tile = self.settings.inference.tile_size
        return Cube.create(self.cube_path, self.grid, self.domain, c.start, c.end, tile)

    @cached_property
    def model_forcings(self) -> tuple[str, ...]:
        """The forcings the model reads: the configured bundle's (``model.bundle``), else
        those of the configured feature set (a bundle trained on first use has them; so will
        the configured bundle not trained yet, which ``run`` reports on its own)."""
        bundle = self.settings.model.bundle
        if bundle is not None and (bundle / BUNDLE_JSON).is_file():
            return tuple(read_spec(bundle)[0].forcings)
        return feature_set(self.settings.model.feature_set or "gsm3")[0]

    def input_source_names(self) -> tuple[str, ...]:
        """The gridded sources the model's forcings come from: exactly what a published day
        needs (SMAP, a training target, is never one). :class:`RunError` when one of them is
        not configured in ``sources.gridded``."""
        names = forcing_sources(self.model_forcings)
        unlisted = [n for n in names if n not in self.settings.sources.gridded]
        if unlisted:
            raise RunError(
                f"the model reads forcings from {', '.join(unlisted)}, which sources.gridded "
                "does not list: add the source with its options, or use a model without it "
                "(model.feature_set: gsm3_open leaves out MSWEP)"
            )
        return names

    def required_inputs(self) -> tuple[str, ...]:
        """Cube manifest keys (``forcing/<source>``) every published day must have complete."""
        return tuple(f"forcing/{name}" for name in self.input_source_names())

    def required_sources(self) -> list:
        """The gridded sources every published day needs: those the model's forcings come
        from (built once: an archive source remembers what its folder holds)."""
        return self._required_sources

    @cached_property
    def _required_sources(self) -> list:
        return self.gridded_sources(self.input_source_names())

    def latest_day(self, today: dt.date, provisional: bool = False) -> dt.date:
        """The latest day every required source can serve as of ``today`` (``provisional``:
        the latest any of them serves; the late ones are then gap-filled and flagged)."""
        latest = [src.latest_date(today) for src in self.required_sources()]
        return max(latest) if provisional else min(latest)

    def check_day(self, day: dt.date, today: dt.date, provisional: bool = False) -> None:
        """Raise :class:`RunError` when ``day`` cannot be produced."""
        s = self.settings
        lookback = s.inference.spinup_days
        first_served = max(src.first_date() for src in self.required_sources())
        first = max(
            s.product.start,
            first_served + dt.timedelta(days=lookback),
            s.cube.start + dt.timedelta(days=lookback),
        )
        last = min(self.latest_day(today, provisional), s.cube.end)
        if not first <= day <= last:
            raise RunError(
                f"the {s.profile} profile can serve {first.isoformat()}..{last.isoformat()}, "
                f"not {day.isoformat()}"
            )
