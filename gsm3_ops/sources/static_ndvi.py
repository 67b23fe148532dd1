"""The default ``ndvi`` static: the long-term mean of MODIS MOD13A3 v061 NDVI.

MOD13A3 (Terra, monthly, 1 km; Didan 2021, doi:10.5067/MODIS/MOD13A3.061) is one HDF4-EOS
sinusoidal tile per month, dated the month's first day. Its ``1 km monthly NDVI`` (int16,
values x 10000, its ``scale_factor`` 10000 a divisor unlike the other MODIS products; fill
-3000, valid -2000..10000) is kept where ``1 km monthly pixel
raliability`` (sic, the product's name) is 0 (good) or 1 (marginal), not 2 (snow/ice), 3
(cloudy) or -1 (fill). For each calendar month that the long-term period meets, the kept
pixels are averaged into each 9 km cell (sinusoidal pixels are equal-area: the MODIS
source's binning, :mod:`gsm3_ops.sources.modis_hdf`); a cell's NDVI is the mean of its
monthly means, written as a float32 GeoTIFF on the window's EASE-Grid cells that
:func:`gsm3_ops.sources.static.static_from_rasters` reads like an operator's raster.

Tiles come from the static ``archive`` (LP DAAC names in any sub-folder, e.g. an LP DAAC
mirror ``MOD13A3.061/YYYY.MM.DD/``; the latest collection, then production, wins), else from
``<raw>/static/MOD13A3.061`` (earlier downloads), else from LP DAAC through ``earthaccess``:
one search for the period over the window's box, Earthdata credentials as for SMAP. A tile
the window needs that is absent in every month is taken as open sea (LP DAAC makes no tile
without land) and logged; one absent in some months only is an error naming tile and month.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from gsm3_ops.errors import SourceError
from gsm3_ops.grid import CRS, EaseGrid, Window
from gsm3_ops.sources.earthdata import Bbox, Earthdata, granule_name, pick_files
from gsm3_ops.sources.modis import Product
from gsm3_ops.sources.modis_archive import TileArchive
from gsm3_ops.sources.modis_hdf import (
    bin_block,
    check_tiles,
    load_field,
    parse_granule_name,
    tile_of,
    tile_pixels,
    window_tiles,
)
from gsm3_ops.sources.static_providers import StaticFetchError

log = logging.getLogger(__name__)

MOD13A3 = Product(
    short_name="MOD13A3",
    version="061",
    fields={"ndvi": "1 km monthly NDVI"},
    qa={"ndvi": "1 km monthly pixel raliability"},
    qa_mask=0xFF,  # a whole-value rank: 0 good, 1 marginal, 2 snow/ice, 3 cloudy, -1 fill
    accept_other_quality=True,  # keep rank 1
)
TILE_PIXELS = 1200  # 1 km pixels per tile side
Tile = tuple[int, int]
Key = tuple[dt.date, Tile]  # (the month's first day, tile)


@dataclass(frozen=True)
class NdviMean:
    """The mean NDVI raster written and what it is (``MOD13A3.061-mean-2019-01..2020-06``)."""

    path: Path
    version: str


def months(start: dt.date, end: dt.date) -> list[dt.date]:
    """The first days of the calendar months that ``start..end`` meets."""
    out, m = [], start.replace(day=1)
    while m <= end:
        out.append(m)
        m = (m + dt.timedelta(days=32)).replace(day=1)
    return out


def ndvi_mean(
    grid: EaseGrid,
    window: Window,
    start: dt.date,
    end: dt.date,
    out: Path,
    *,
    cache: Path,
    bbox: Bbox,
    archive: Path | None = None,
    client: Any = None,
) -> NdviMean:
    """Write at ``out`` the mean MOD13A3 NDVI of the months ``start..end`` meets on ``window``.

    Parameters
    ----------
    grid, window
        The deployment's grid and window.
    start, end
        The long-term period (every calendar month it meets is averaged).
    out
        The GeoTIFF to write (float32, the window's EASE-Grid cells, NaN where no land).
    cache
        The static download folder (``<raw>/static``): tiles are kept under
        ``MOD13A3.061/`` and never fetched twice.
    bbox
        The lon/lat box (west, south, east, north) the LP DAAC search asks for.
    archive
        A folder holding the tiles under their LP DAAC names (any sub-folder): read instead
        of fetching; the client is then never called.
    client
        The ``earthaccess`` module (default) or a stand-in.

    Raises
    ------
    StaticFetchError
        A tile missing for a month, an unreadable tile, or a land cell without a reliable
        pixel in any month (tile or cell and month named); credentials missing or refused
        raise :class:`gsm3_ops.sources.earthdata.EarthdataLoginError`.
    """
    if end < start:
        raise StaticFetchError(f"MOD13A3 NDVI mean: period {start}..{end} ends before it starts")
    wanted = months(start, end)
    tiles = window_tiles(TILE_PIXELS, grid, window)
    if archive is not None:
        files = _in_folder(Path(archive), wanted, tiles, f"the static archive {archive}")
    else:
        files = _cached_or_fetched(Path(cache) / _product_dir(), wanted, tiles, bbox, client)
    mean = _monthly_mean(files, wanted, grid, window)
    _write_tif(mean, grid, window, Path(out))
    collections = sorted({g.collection for p in files.values() if (g := parse_granule_name(p))})
    tag = f"{MOD13A3.short_name}.{'/'.join(collections) or MOD13A3.version}"
    return NdviMean(Path(out), f"{tag}-mean-{wanted[0]:%Y-%m}..{wanted[-1]:%Y-%m}")


def _product_dir() -> str:
    return f"{MOD13A3.short_name}.{MOD13A3.version}"


def _name(key: Key) -> str:
    month, (h, v) = key
    return f"h{h:02d}v{v:02d} {month:%Y-%m} ({MOD13A3.short_name}.A{month:%Y%j}.h{h:02d}v{v:02d})"


def _scan(folder: Path, wanted: Sequence[dt.date], tiles: Sequence[Tile]) -> dict[Key, Path]:
    """The tiles of ``wanted`` months under ``folder``: latest collection, then production."""
    archive = TileArchive(folder, "static", (MOD13A3.short_name,))
    found: dict[Key, Path] = {}
    for month in wanted:
        for path in archive.files(month, MOD13A3.short_name):
            if (tile := tile_of(path)) in tiles:
                found[(month, tile)] = path
    return found


def _complete(
    found: dict[Key, Path], wanted: Sequence[dt.date], tiles: Sequence[Tile], where: str
) -> dict[Key, Path]:
    """``found`` once every tile held in some month is held in all; a tile held in none is
    open sea (logged); StaticFetchError naming the first missing tiles and months."""
    held = [t for t in tiles if any((m, t) in found for m in wanted)]
    if not held:
        names = ", ".join(f"h{h:02d}v{v:02d}" for h, v in tiles)
        raise StaticFetchError(
            f"static attribute 'ndvi': {where} has no {_product_dir()} tile ({names}) for "
            f"{wanted[0]:%Y-%m}..{wanted[-1]:%Y-%m}; add them, or set ndvi: PATH"
        )
    for h, v in sorted(set(tiles) - set(held)):
        log.warning(
            "%s has no MOD13A3 tile h%02dv%02d in any month: taken as open sea", where, h, v
        )
    missing = [(m, t) for t in held for m in wanted if (m, t) not in found]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise StaticFetchError(
            f"static attribute 'ndvi': {where} lacks MOD13A3 tile "
            + ", ".join(_name(k) for k in missing[:3])
            + more
        )
    return found


def _in_folder(
    folder: Path, wanted: Sequence[dt.date], tiles: Sequence[Tile], where: str
) -> dict[Key, Path]:
    if not folder.is_dir():
        raise StaticFetchError(f"static archive folder {folder} does not exist")
    return _complete(_scan(folder, wanted, tiles), wanted, tiles, where)


def _cached_or_fetched(
    folder: Path, wanted: Sequence[dt.date], tiles: Sequence[Tile], bbox: Bbox, client: Any
) -> dict[Key, Path]:
    """The cached tiles, after one LP DAAC search and download for those not cached."""
    folder.mkdir(parents=True, exist_ok=True)
    found = _scan(folder, wanted, tiles)
    missing = {(m, t) for m in wanted for t in tiles} - set(found)
    if missing:
        earthdata = Earthdata(client)
        first, last = min(m for m, _ in missing), max(m for m, _ in missing)
        last_day = (last + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        granules = earthdata.search_period(
            MOD13A3.short_name, MOD13A3.version, first, last_day, bbox
        )
        keep = []
        for g in granules:
            parsed = parse_granule_name(granule_name(g) or "")
            if parsed is not None and (parsed.day, parsed.tile) in missing:
                keep.append(g)
        if keep:
            what = f"{MOD13A3.short_name} {MOD13A3.version} {first:%Y-%m}..{last:%Y-%m}"
            pick_files(earthdata.download(keep, folder, what), (".hdf",), what)
        found = _scan(folder, wanted, tiles)
    return _complete(found, wanted, tiles, f"LP DAAC (via earthaccess, cached in {folder})")


def _monthly_mean(
    files: dict[Key, Path], wanted: Sequence[dt.date], grid: EaseGrid, window: Window
) -> np.ndarray:
    """The mean over months of each cell's mean reliable NDVI; NaN where MOD13A3 has no
    pixel (sea); StaticFetchError for a month without any NDVI pixel over the window, or a
    cell with pixels but none reliable in any month."""
    n_cells = window.n_rows * window.n_cols
    total = np.zeros(n_cells)
    n_months = np.zeros(n_cells, dtype=np.int64)
    seen = np.zeros(n_cells, dtype=bool)
    field, qa = MOD13A3.fields["ndvi"], MOD13A3.qa["ndvi"]
    for month in wanted:
        keys = sorted(k for k in files if k[0] == month)
        paths, tiles = [files[k] for k in keys], [k[1] for k in keys]
        sums, counts, observed = np.zeros(n_cells + 1), np.zeros(n_cells + 1), np.zeros(n_cells + 1)
        try:
            n = check_tiles(paths, tiles, {field, qa})
            for path, (h, v) in zip(paths, tiles, strict=True):
                px = tile_pixels(h, v, n, grid, window)
                if px.empty:
                    continue
                good = load_field(path, field, qa, MOD13A3.qa_mask, MOD13A3.max_level,
                                  px.rows, px.cols, divisor=True)  # fmt: skip
                any_rank = load_field(path, field, qa, 0, 0, px.rows, px.cols, divisor=True)
                s, c = bin_block(good, px, n_cells)
                sums, counts = sums + s, counts + c
                observed += bin_block(any_rank, px, n_cells)[1]
        except SourceError as exc:
            raise StaticFetchError(f"MOD13A3 {month:%Y-%m}: {exc}") from None
        if not observed[:-1].any():
            raise StaticFetchError(
                f"MOD13A3 {month:%Y-%m}: no NDVI pixel over the window {window} in "
                + ", ".join(p.name for p in paths)
                + " (fill everywhere: a broken file, or a window at sea?)"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / counts, np.nan)[:-1]
        ok = np.isfinite(mean)
        total[ok] += mean[ok]
        n_months += ok
        seen |= observed[:-1] > 0
    unreliable = np.flatnonzero(seen & (n_months == 0))
    if unreliable.size:
        row, col = np.divmod(int(unreliable[0]), window.n_cols)
        lon, lat = grid.lonlat(Window(window.row0 + row, window.col0 + col, 1, 1))
        raise StaticFetchError(
            f"MOD13A3 {wanted[0]:%Y-%m}..{wanted[-1]:%Y-%m}: {unreliable.size} land cell(s) "
            f"without a reliable pixel (rank 0 or 1) in any month, first at lon "
            f"{float(lon[0, 0]):.3f}, lat {float(lat[0, 0]):.3f} (tiles "
            + ", ".join(sorted({f"h{h:02d}v{v:02d}" for _, (h, v) in files}))
            + "); set ndvi: PATH"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_months > 0, total / n_months, np.nan).reshape(window.shape)


def _write_tif(values: np.ndarray, grid: EaseGrid, window: Window, out: Path) -> None:
    """A float32 GeoTIFF of ``values`` on the window's cells, written beside and renamed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    profile = {"driver": "GTiff", "height": window.n_rows, "width": window.n_cols, "count": 1,
               "dtype": "float32", "crs": CRS, "transform": grid.transform(window),
               "nodata": float("nan")}  # fmt: skip
    with rasterio.open(part, "w", **profile) as dst:
        dst.write(values.astype(np.float32), 1)
    os.replace(part, out)
