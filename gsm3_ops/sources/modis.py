"""MODIS land surface temperature and albedo (``lst_day``, ``lst_night``, ``albedo_bsa``,
``albedo_wsa``) from LP DAAC, area-averaged from sinusoidal tiles onto the 9 km grid.

Defaults: ``MYD11A1`` v061 (Aqua daily LST, ``LST_Day_1km``/``LST_Night_1km``, 0.02 K, kept
where ``QC_Day``/``QC_Night`` mandatory bits 0-1 are 00, "good quality"; ``accept_other_quality``
also keeps 01) and ``MCD43A3`` v061 (``Albedo_BSA_shortwave``/``Albedo_WSA_shortwave``, 0.001,
kept where ``BRDF_Albedo_Band_Mandatory_Quality_shortwave`` is 0, a full BRDF inversion).
Products, fields and QA fields are options, so a VIIRS successor (``VNP21A1D``/``VNP21A1N``,
``VNP43IA3`` ...) plugs in when Aqua MODIS ends (2026); HDF5-EOS files are read too.

The tiles that cover the window (from its lon/lat bounds) are mosaicked by binning every
pixel centre into its 9 km cell: sinusoidal pixels are equal-area, so the mean of the pixels
in a cell is its area mean.

Missing days: when a product has no granule for a served day and a day-of-year climatology
is configured (``climatology``: a Zarr/NetCDF file, or a provider passed in, e.g. the cube's
own history), its variables are filled from the climatology and ``Granule.notes`` records
``filled:climatology`` and ``missing:<short name>``. Without a climatology the day fails as
not served. A day after ``latest_date`` is never filled.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.sources.base import (
    DateNotServedError,
    Granule,
    MissingVariableError,
    SourceError,
)
from gsm3_ops.sources.earthdata import GLOBAL_BBOX, Bbox, Earthdata, pick_files, utc_today
from gsm3_ops.sources.modis_hdf import (
    check_tiles,
    load_field,
    tile_cells,
    tile_of,
    tiles_for_bbox,
)

NAME = "modis"
VARIABLES = ("lst_day", "lst_night", "albedo_bsa", "albedo_wsa")
SUFFIXES = (".hdf", ".h5")


class Product(BaseModel):
    """One tiled product: which registry variables it fills from which fields, and its QA."""

    model_config = ConfigDict(extra="forbid")

    short_name: str
    version: str
    fields: dict[str, str]  # registry variable -> data field
    qa: dict[str, str]  # registry variable -> QA field
    qa_mask: int = 0b11  # bits of the QA field that hold the quality level
    accept_other_quality: bool = False  # keep level 1 ("other quality", magnitude inversion)

    @model_validator(mode="after")
    def _qa_for_every_field(self) -> Product:
        if set(self.qa) != set(self.fields):
            raise ValueError(
                f"{self.short_name}: qa must name a QA field for each of {sorted(self.fields)}"
            )
        return self

    @property
    def max_level(self) -> int:
        """The highest QA level kept."""
        return 1 if self.accept_other_quality else 0


def _default_products() -> list[Product]:
    return [
        Product(
            short_name="MYD11A1",
            version="061",
            fields={"lst_day": "LST_Day_1km", "lst_night": "LST_Night_1km"},
            qa={"lst_day": "QC_Day", "lst_night": "QC_Night"},
        ),
        Product(
            short_name="MCD43A3",
            version="061",
            fields={"albedo_bsa": "Albedo_BSA_shortwave", "albedo_wsa": "Albedo_WSA_shortwave"},
            qa={
                v: "BRDF_Albedo_Band_Mandatory_Quality_shortwave"
                for v in ("albedo_bsa", "albedo_wsa")
            },
            qa_mask=0xFF,  # a whole-value flag: 0 full inversion, 1 magnitude, 255 fill
        ),
    ]


class Options(BaseModel):
    """MODIS settings (``sources.options.modis``)."""

    model_config = ConfigDict(extra="forbid")
    # A local archive of the provider's files (any sub-folder, the provider's names):
    # read instead of fetching (docs/data-sources.md).
    archive: Path | None = None

    products: list[Product] = Field(default_factory=_default_products, min_length=1)
    first_date: dt.date = dt.date(2002, 7, 4)  # Aqua MODIS, and MCD43 from both satellites
    latency_days: int = Field(2, ge=0)
    bbox: Bbox | None = None  # search box (west, south, east, north); None: every land tile
    climatology: Path | None = None  # Zarr/NetCDF: <variable>(dayofyear, y, x), EASE2 x/y

    @model_validator(mode="after")
    def _each_variable_once(self) -> Options:
        seen: list[str] = [v for p in self.products for v in p.fields]
        unknown = sorted(set(seen) - set(VARIABLES))
        if unknown or len(seen) != len(set(seen)):
            raise ValueError(
                f"products must fill each of {', '.join(VARIABLES)} at most once; got {seen}"
            )
        return self


class ModisSource:
    """MODIS LST and albedo; ``client`` (earthaccess) and ``climatology`` are injectable."""

    name = NAME
    Options = Options

    def __init__(
        self,
        options: Options | None = None,
        client: Any = None,
        climatology: Climatology | None = None,
    ) -> None:
        self.options = options or Options()
        self.earthdata = Earthdata(client)
        if climatology is None and self.options.climatology is not None:
            climatology = FileClimatology(self.options.climatology)
        self.climatology = climatology
        self.provides = tuple(v for p in self.options.products for v in p.fields)

    def first_date(self) -> dt.date:
        """The first day every configured product has."""
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day LP DAAC has as of ``today`` (UTC)."""
        return today - dt.timedelta(days=self.options.latency_days)

    def version(self, day: dt.date) -> str:
        """The products and versions, e.g. ``MYD11A1.061+MCD43A3.061``."""
        return "+".join(f"{p.short_name}.{p.version}" for p in self.options.products)

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        """Download the day's tiles of every product (filling a missing one if configured)."""
        today = utc_today()
        if not self.first_date() <= day <= self.latest_date(today):
            first, last = self.first_date().isoformat(), self.latest_date(today).isoformat()
            raise DateNotServedError(
                f"MODIS serves {first}..{last} as of {today.isoformat()}, not {day.isoformat()}"
            )
        files: list[Path] = []
        missing: list[str] = []
        bbox = self.options.bbox or GLOBAL_BBOX
        for p in self.options.products:
            try:
                found = self.earthdata.require(
                    p.short_name, p.version, day, bbox, name_contains=f".A{day:%Y%j}."
                )
            except DateNotServedError:
                if self.climatology is None:
                    raise
                missing.append(p.short_name)
                continue
            what = f"{p.short_name} {p.version} on {day.isoformat()}"
            files += pick_files(self.earthdata.download(found, workdir, what), SUFFIXES, what)
        return self._granule(day, files, missing)

    def local(self, day: dt.date, directory: Path) -> Granule:
        """The day's tiles under ``directory`` (``<short>.AYYYYDDD.hHHvVV.*.hdf``)."""
        files: list[Path] = []
        missing: list[str] = []
        for p in self.options.products:
            got = sorted(
                f
                for f in Path(directory).rglob(f"{p.short_name}.A{day:%Y%j}.h??v??.*")
                if f.is_file() and f.suffix.lower() in SUFFIXES
            )
            if not got:
                if self.climatology is None:
                    raise DateNotServedError(
                        f"no {p.short_name} tile for {day.isoformat()} under {directory}"
                    )
                missing.append(p.short_name)
            files += got
        return self._granule(day, files, missing)

    def read(self, granule: Granule) -> xr.Dataset:
        """Each tile's QA-filtered calibrated fields, lazily: ``<var>(p<k>_tile, row, col)``.

        The files are opened and their grids checked now; pixel values are read by
        :meth:`to_grid`, one tile at a time, and only for the tiles the window needs.
        """
        data_vars: dict[str, Any] = {}
        coords: dict[str, Any] = {"time": [np.datetime64(granule.day.isoformat(), "ns")]}
        missing = []
        for k, p in enumerate(self.options.products):
            paths = [f for f in granule.files if f.name.startswith(p.short_name + ".")]
            if not paths:
                missing.append(p.short_name)
                continue
            tiles = [tile_of(f) for f in paths]
            n = check_tiles(paths, tiles, {*p.fields.values(), *p.qa.values()})
            dims = (f"p{k}_tile", f"p{k}_row", f"p{k}_col")
            coords[f"p{k}_h"] = (dims[0], [h for h, _ in tiles])
            coords[f"p{k}_v"] = (dims[0], [v for _, v in tiles])
            for var, field in p.fields.items():
                parts = [
                    dsa.from_delayed(
                        dask.delayed(load_field)(f, field, p.qa[var], p.qa_mask, p.max_level),
                        (n, n),
                        dtype=np.float32,
                    )
                    for f in paths
                ]
                data_vars[var] = (dims, dsa.stack(parts))
        unfilled = [m for m in missing if self.climatology is None]
        if unfilled:
            raise DateNotServedError(
                f"MODIS {granule.day.isoformat()}: no {', '.join(unfilled)} tile"
            )
        return xr.Dataset(data_vars, coords=coords, attrs={"missing_products": missing})

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """Area-mean of the pixels in each cell of ``window``; missing products from climatology."""
        day = dt.date.fromisoformat(np.datetime_as_string(native["time"].values[0], unit="D"))
        lon, lat = grid.lonlat(window)
        # Centres plus a margin wider than half a cell (0.04 deg of lon, < 0.2 of lat here).
        w, s = float(lon.min()) - 0.1, float(lat.min()) - 0.25
        need = set(tiles_for_bbox(w, s, float(lon.max()) + 0.1, float(lat.max()) + 0.25))
        out = {}
        for k, p in enumerate(self.options.products):
            if p.short_name in native.attrs.get("missing_products", []):
                fields = {var: self._fill(var, day, grid, window) for var in p.fields}
            else:
                fields = _mosaic(native, k, list(p.fields), need, grid, window)
            for var, values in fields.items():
                if not np.isfinite(values).any():
                    raise SourceError(
                        f"MODIS {var} on {day.isoformat()}: no valid pixel in window {window} "
                        "(cloud, QA-rejected, or no tile covers it)"
                    )
                out[var] = xr.DataArray(
                    values[None].astype(np.float32),
                    dims=("time", "y", "x"),
                    coords={
                        "time": native["time"].values,
                        "y": grid.y_centres(window),
                        "x": grid.x_centres(window),
                    },
                )
        return xr.Dataset(out)

    def _fill(self, var: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        if self.climatology is None:
            raise SourceError(f"MODIS {var} on {day.isoformat()}: missing and no climatology")
        return np.asarray(self.climatology(var, day, grid, window), dtype=np.float64)

    def _granule(self, day: dt.date, files: list[Path], missing: list[str]) -> Granule:
        notes = ("filled:climatology", *(f"missing:{m}" for m in missing)) if missing else ()
        return Granule(NAME, day, tuple(files), self.version(day), notes)


def _mosaic(
    native: xr.Dataset,
    k: int,
    names: list[str],
    need: set[tuple[int, int]],
    grid: EaseGrid,
    window: Window,
) -> dict[str, np.ndarray]:
    """Mean of every valid tile pixel in each window cell, tile by tile."""
    n_cells = window.n_rows * window.n_cols
    total = {n: np.zeros(n_cells) for n in names}
    count = {n: np.zeros(n_cells, dtype=np.int64) for n in names}
    hs, vs = native[f"p{k}_h"].values, native[f"p{k}_v"].values
    for i, (h, v) in enumerate(zip(hs.tolist(), vs.tolist(), strict=True)):
        if (h, v) not in need:
            continue
        pixels, cells = tile_cells(h, v, native.sizes[f"p{k}_row"], grid, window)
        if pixels.size == 0:
            continue
        fields = dask.compute(*(native[n].data[i] for n in names))
        for n, values in zip(names, fields, strict=True):
            vals = values.ravel()[pixels].astype(np.float64)
            ok = np.isfinite(vals)
            total[n] += np.bincount(cells[ok], weights=vals[ok], minlength=n_cells)
            count[n] += np.bincount(cells[ok], minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            n: np.where(count[n] > 0, total[n] / count[n], np.nan).reshape(window.shape)
            for n in names
        }


# --- climatology fill ------------------------------------------------------------------------


class Climatology(Protocol):
    """Anything that gives a variable's expected field for a day of year on a grid window."""

    def __call__(self, name: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        """``window.shape`` values of ``name`` for ``day``'s day of year."""
        ...


class FileClimatology:
    """Day-of-year fields from a Zarr store or NetCDF file: ``<variable>(dayofyear, y, x)``
    with EASE2 cell-centre ``y``/``x`` (metres); day 366 falls back to the last day present."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ds: xr.Dataset | None = None

    def __call__(self, name: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        """``name`` for ``day``'s day of year over ``window``."""
        ds = self._open()
        if name not in ds:
            raise MissingVariableError(f"climatology {self.path}: no variable {name}")
        da = ds[name]
        doy = min(day.timetuple().tm_yday, int(da["dayofyear"].max()))
        try:
            sel = da.sel(dayofyear=doy).sel(
                y=grid.y_centres(window),
                x=grid.x_centres(window),
                method="nearest",
                tolerance=grid.cell_size / 4,
            )
        except KeyError:
            raise SourceError(
                f"climatology {self.path}: {name} does not cover window {window} of {grid.name}"
            ) from None
        return np.asarray(sel.transpose("y", "x").values, dtype=np.float64)

    def _open(self) -> xr.Dataset:
        if self._ds is None:
            try:
                if self.path.is_dir() or self.path.suffix == ".zarr":
                    self._ds = xr.open_zarr(self.path)
                else:
                    self._ds = xr.open_dataset(self.path)
            except (OSError, ValueError, KeyError) as exc:
                raise SourceError(f"climatology {self.path} cannot be opened: {exc}") from None
        return self._ds


class HistoryClimatology:
    """The mean of the same days of year (+- ``half_window_days``) in the previous ``years``
    years, from the cube's own history: ``read(name, start, end, window)`` -> (time, y, x)."""

    def __init__(
        self,
        read: Callable[[str, dt.date, dt.date, Window], np.ndarray],
        years: int = 5,
        half_window_days: int = 7,
    ) -> None:
        self.read, self.years, self.half = read, years, dt.timedelta(days=half_window_days)

    def __call__(self, name: str, day: dt.date, grid: EaseGrid, window: Window) -> np.ndarray:
        """``name`` averaged over the same season of earlier years."""
        parts = []
        for back in range(1, self.years + 1):
            centre = dt.date(day.year - back, day.month, min(day.day, 28 if day.month == 2 else 31))
            parts.append(
                np.asarray(self.read(name, centre - self.half, centre + self.half, window))
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
            return np.nanmean(np.concatenate(parts, axis=0), axis=0)
