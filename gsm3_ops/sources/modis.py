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
in a cell is its area mean. Only the block of each tile that holds the window's pixels is
read, and the pixel -> cell index is computed once per tile and window.

Local archives (``options.archive``, ``ingest --from``): the tiles under their LP DAAC names
in any sub-folder (an LP DAAC mirror ``MYD11A1.061/YYYY.MM.DD/`` or flat); where a tile
appears more than once, the latest collection, then the latest production, is read. With an
archive, the served days are the archive's: the days that hold tiles of every product.

Missing tiles are not clouds: a product whose tiles do not cover the window, or (reading an
archive) that lacks on this day a tile the window needs and the archive holds on other
days, fails the day with :class:`MissingTileError` naming the product, tile and day. A
window whose tiles are all present but under cloud all day gives an all-NaN field (written
as missing with an ``empty:<variable>`` note by the checks).

Missing days: when a product has no granule for a served day and a day-of-year climatology
is configured (``climatology``: a Zarr/NetCDF file, or a provider passed in, e.g. the cube's
own history), its variables are filled from the climatology and ``Granule.notes`` records
``filled:climatology`` and ``missing:<short name>``. Without a climatology the day fails as
not served. A day after ``latest_date`` is never filled.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator
from xarray.backends import BackendArray
from xarray.core import indexing

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.sources.base import DateNotServedError, Granule, SourceError
from gsm3_ops.sources.earthdata import GLOBAL_BBOX, Bbox, Earthdata, pick_files, utc_today
from gsm3_ops.sources.modis_archive import TileArchive
from gsm3_ops.sources.modis_climatology import (
    Climatology,
    FileClimatology,
    HistoryClimatology,
)
from gsm3_ops.sources.modis_hdf import (
    TilePixels,
    bin_block,
    check_tiles,
    load_field,
    parse_granule_name,
    tile_of,
    tile_pixels,
    window_tiles,
)

__all__ = ["Climatology", "FileClimatology", "HistoryClimatology", "ModisSource", "Options"]

NAME = "modis"
VARIABLES = ("lst_day", "lst_night", "albedo_bsa", "albedo_wsa")
SUFFIXES = (".hdf", ".h5")


class MissingTileError(DateNotServedError):
    """A product's tile that the window needs is absent (from the archive or the fetch)."""


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
        self._archives: dict[Path, TileArchive] = {}

    def first_date(self) -> dt.date:
        """The first day every configured product has (in the archive, when one is set)."""
        if self.options.archive is not None:
            return self._archive(self.options.archive).span()[0]
        return self.options.first_date

    def latest_date(self, today: dt.date) -> dt.date:
        """The latest day LP DAAC has as of ``today`` (UTC), or the latest day the archive
        holds tiles of every product."""
        if self.options.archive is not None:
            return self._archive(self.options.archive).span()[1]
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
        """The day's tiles in a local archive (LP DAAC names, any sub-folder): for each product
        and tile, the latest collection and production."""
        archive = self._archive(directory)
        files: list[Path] = []
        missing: list[str] = []
        for p in self.options.products:
            got = archive.files(day, p.short_name)
            if not got:
                if self.climatology is None:
                    raise DateNotServedError(
                        f"MODIS: no {p.short_name} tile for {day.isoformat()} in the archive "
                        f"{archive.root}"
                    )
                missing.append(p.short_name)
            files += got
        return self._granule(day, files, missing)

    def read(self, granule: Granule) -> xr.Dataset:
        """Each tile's QA-filtered calibrated fields, lazily: ``<var>(p<k>_tile, row, col)``.

        The files are opened and their grids checked now; :meth:`to_grid` reads only the
        block of each tile that the window needs. ``attrs["expected_tiles"]`` holds, per
        product, the tiles its archive holds on any day (none for fetched files).
        """
        data_vars: dict[str, Any] = {}
        coords: dict[str, Any] = {"time": [np.datetime64(granule.day.isoformat(), "ns")]}
        missing = []
        expected: dict[str, list[tuple[int, int]]] = {}
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
                stack = _TileStack(paths, n, field, p.qa[var], p.qa_mask, p.max_level)
                data_vars[var] = xr.Variable(dims, indexing.LazilyIndexedArray(stack))
            expected[p.short_name] = sorted(self._archive_tiles(paths[0], p.short_name))
        unfilled = [m for m in missing if self.climatology is None]
        if unfilled:
            raise DateNotServedError(
                f"MODIS {granule.day.isoformat()}: no {', '.join(unfilled)} tile"
            )
        attrs = {"missing_products": missing, "expected_tiles": expected}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def to_grid(self, native: xr.Dataset, grid: EaseGrid, window: Window) -> xr.Dataset:
        """Area-mean of the pixels in each cell of ``window``; missing products from climatology.

        Raises :class:`MissingTileError` when a present product's tiles do not cover the
        window, or a tile the window needs is absent that the archive holds on other days.
        """
        day = dt.date.fromisoformat(np.datetime_as_string(native["time"].values[0], unit="D"))
        out = {}
        for k, p in enumerate(self.options.products):
            if p.short_name in native.attrs.get("missing_products", []):
                fields = {var: self._fill(var, day, grid, window) for var in p.fields}
            else:
                expected = set(native.attrs.get("expected_tiles", {}).get(p.short_name, []))
                tiles = _present_tiles(native, k, p.short_name, expected, day, grid, window)
                fields = _mosaic(native, tiles, list(p.fields), window)
            for var, values in fields.items():
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
        return Granule(NAME, day, tuple(files), self._version_of(files), notes)

    def _version_of(self, files: list[Path]) -> str:
        """The products and the collections the files are (the configured one where none)."""
        parts = []
        for p in self.options.products:
            names = [parse_granule_name(f) for f in files if f.name.startswith(p.short_name + ".")]
            found = sorted({g.collection for g in names if g is not None})
            parts.append(f"{p.short_name}.{'/'.join(found) or p.version}")
        return "+".join(parts)

    # --- local archives -----------------------------------------------------------------------

    def _archive(self, folder: Path) -> TileArchive:
        """The one view of ``folder`` this source keeps (an index of its files, by day)."""
        folder = Path(folder)
        if folder not in self._archives:
            names = tuple(p.short_name for p in self.options.products)
            self._archives[folder] = TileArchive(folder, NAME, names)
        return self._archives[folder]

    def _archive_tiles(self, path: Path, short_name: str) -> set[tuple[int, int]]:
        """The tiles of a product that the archive holding ``path`` has on any day."""
        for root, archive in self._archives.items():
            if Path(path).is_relative_to(root):
                return archive.tiles(short_name)
        return set()


class _TileStack(BackendArray):
    """A product field over its tiles, ``(tile, row, col)`` float32, read block by block."""

    def __init__(
        self, paths: list[Path], n: int, field: str, qa: str, qa_mask: int, max_level: int
    ) -> None:
        self.paths, self.field, self.qa = paths, field, qa
        self.qa_mask, self.max_level = qa_mask, max_level
        self.shape = (len(paths), n, n)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        tiles, rows, cols = key
        picked = range(len(self.paths))[tiles]
        if isinstance(picked, int):
            return self._block(self.paths[picked], rows, cols)
        return np.stack([self._block(self.paths[i], rows, cols) for i in picked])

    def _block(self, path: Path, rows: slice, cols: slice) -> np.ndarray:
        return load_field(path, self.field, self.qa, self.qa_mask, self.max_level, rows, cols)


def _present_tiles(
    native: xr.Dataset,
    k: int,
    short_name: str,
    expected: set[tuple[int, int]],
    day: dt.date,
    grid: EaseGrid,
    window: Window,
) -> list[tuple[int, TilePixels]]:
    """(index, pixels) of the product's tiles that hold pixels of ``window``; raises
    :class:`MissingTileError` when none does, or when a tile the window needs is absent
    though the archive holds it on other days."""
    n = native.sizes[f"p{k}_row"]
    hs, vs = native[f"p{k}_h"].values.tolist(), native[f"p{k}_v"].values.tolist()
    present = {(h, v): i for i, (h, v) in enumerate(zip(hs, vs, strict=True))}
    wanted = window_tiles(n, grid, window)
    absent = [hv for hv in wanted if hv not in present and hv in expected]
    covering = [(i, tile_pixels(*hv, n, grid, window)) for hv, i in present.items()]
    covering = [(i, px) for i, px in covering if not px.empty]
    if wanted and (absent or not covering):
        names = ", ".join(f"h{h:02d}v{v:02d}" for h, v in absent or wanted)
        raise MissingTileError(
            f"MODIS {short_name} on {day.isoformat()}: tile {names} missing (from the archive "
            f"or the fetch); the window {window} needs "
            + ", ".join(f"h{h:02d}v{v:02d}" for h, v in wanted)
        )
    return covering


def _mosaic(
    native: xr.Dataset, tiles: list[tuple[int, TilePixels]], names: list[str], window: Window
) -> dict[str, np.ndarray]:
    """Mean of every valid tile pixel in each window cell, tile by tile."""
    n_cells = window.n_rows * window.n_cols
    total = {n: np.zeros(n_cells + 1) for n in names}  # the last bin: pixels outside
    count = {n: np.zeros(n_cells + 1) for n in names}
    for i, px in tiles:
        for n in names:
            sums, counts = bin_block(native[n].variable[i, px.rows, px.cols].values, px, n_cells)
            total[n] += sums
            count[n] += counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            n: np.where(count[n] > 0, total[n] / count[n], np.nan)[:-1].reshape(window.shape)
            for n in names
        }
