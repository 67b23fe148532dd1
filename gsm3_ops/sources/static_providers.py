"""The default public rasters behind the static attributes: names, URLs and how they are got.

- **DEM**: Copernicus GLO-90 (3 arc-second, 1 x 1 degree Cloud-Optimized GeoTIFF tiles on
  the AWS open-data bucket ``copernicus-dem-90m``; no tile over open ocean).
- **Soil**: SoilGrids 2.0, 0-5 cm mean of ``sand``, ``clay``, ``silt`` (g/kg) and ``bdod``
  (cg/cm3) from ISRIC: a global VRT per map and GeoTIFF tiles (Interrupted Goode
  Homolosine, 250 m, Int16, nodata -32768) under a folder of the map's name.
- **Land cover**: ESA WorldCover 10 m 2021 v200 (3 x 3 degree COG tiles, uint8 classes,
  nodata 0; no tile over open ocean).

A file is taken from the operator's archive (``archive``: the providers' own names, in any
sub-folder), else from the download cache under the data root's raw folder, else fetched
with the injected HTTP client and cached. See ``docs/static-attributes.md``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gsm3_ops.sources.static import StaticError
from gsm3_ops.sources.uscrn import HttpClient, UrllibClient

log = logging.getLogger(__name__)

COPERNICUS_URL = "https://copernicus-dem-90m.s3.amazonaws.com"
SOILGRIDS_URL = "https://files.isric.org/soilgrids/latest/data"
WORLDCOVER_URL = "https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map"
# attribute -> (SoilGrids property, factor into registry units)
SOILGRIDS = {
    "sand": ("sand", 0.1),  # g/kg -> %
    "clay": ("clay", 0.1),
    "silt": ("silt", 0.1),
    "bulk_density": ("bdod", 0.01),  # cg/cm3 -> g/cm3
}
SOIL_DEPTH = "0-5cm"
VERSIONS = {
    "dem": "copernicus-glo90",
    "soil": "soilgrids2.0-0-5cm-mean",
    "land_cover": "esa-worldcover-2021-v200",
}


class StaticFetchError(StaticError):
    """A default static raster could not be fetched or found (the URL or file is named)."""


def _ns(lat: int) -> str:
    return f"{'N' if lat >= 0 else 'S'}{abs(lat):02d}"


def _ew(lon: int, width: int = 3) -> str:
    return f"{'E' if lon >= 0 else 'W'}{abs(lon):0{width}d}"


def copernicus_name(lat: int, lon: int) -> str:
    """The GLO-90 tile whose south-west corner is (lat, lon), e.g.
    ``Copernicus_DSM_COG_30_S04_00_E039_00_DEM`` (covers 4 S..3 S, 39 E..40 E)."""
    return f"Copernicus_DSM_COG_30_{_ns(lat)}_00_{_ew(lon)}_00_DEM"


def worldcover_name(lat: int, lon: int) -> str:
    """The WorldCover 2021 tile whose south-west corner is (lat, lon), multiples of 3, e.g.
    ``ESA_WorldCover_10m_2021_v200_S03E036_Map.tif``."""
    return f"ESA_WorldCover_10m_2021_v200_{_ns(lat)}{_ew(lon)}_Map.tif"


def soilgrids_map(prop: str) -> str:
    """The SoilGrids map name of a property at 0-5 cm, e.g. ``sand_0-5cm_mean``."""
    return f"{prop}_{SOIL_DEPTH}_mean"


@dataclass(frozen=True)
class Bounds:
    """A lon/lat box (degrees)."""

    west: float
    south: float
    east: float
    north: float

    def tiles(self, size: int) -> list[tuple[int, int]]:
        """South-west corners (lat, lon) of the ``size``-degree tiles that meet the box."""

        def edges(lo: float, hi: float) -> range:
            return range(size * math.floor(lo / size), size * math.ceil(hi / size), size)

        return [(a, b) for a in edges(self.south, self.north) for b in edges(self.west, self.east)]


@dataclass(frozen=True)
class Wanted:
    """One provider file: where it lives at the provider and how to recognise it locally.

    ``key`` is the tail of its path that identifies it (the file name, or map folder, tile
    folder and file name for SoilGrids tiles, whose file names repeat across maps).
    ``optional``: the provider has no such file over open ocean, so absent is not an error.
    """

    provider: str
    url: str
    key: str
    optional: bool = False


def dem_files(bounds: Bounds) -> list[Wanted]:
    """The GLO-90 tiles covering ``bounds``."""
    out = []
    for lat, lon in bounds.tiles(1):
        name = copernicus_name(lat, lon)
        url = f"{COPERNICUS_URL}/{name}/{name}.tif"
        out.append(Wanted("copernicus-dem-90m", url, f"{name}.tif", optional=True))
    return out


def worldcover_files(bounds: Bounds) -> list[Wanted]:
    """The WorldCover 2021 tiles covering ``bounds``."""
    return [
        Wanted("esa-worldcover", f"{WORLDCOVER_URL}/{n}", n, optional=True)
        for n in (worldcover_name(lat, lon) for lat, lon in bounds.tiles(3))
    ]


def soilgrids_vrt(prop: str) -> Wanted:
    """The global VRT of a SoilGrids 0-5 cm mean map."""
    name = soilgrids_map(prop)
    return Wanted("soilgrids", f"{SOILGRIDS_URL}/{prop}/{name}.vrt", f"{name}.vrt")


def soilgrids_tile(prop: str, relative: str) -> Wanted:
    """A tile a SoilGrids VRT names (``relative``: its path relative to the VRT)."""
    relative = relative.lstrip("./")
    key = "/".join(Path(relative).parts[-3:])
    return Wanted("soilgrids", f"{SOILGRIDS_URL}/{prop}/{relative}", key)


class ProviderFiles:
    """Provider files from an archive, the download cache, or the injected HTTP client.

    Parameters
    ----------
    cache
        Download folder (``<data_root>/raw/static``): a file is kept under
        ``<provider>/<key>`` and never fetched twice; an ocean tile the provider lacks is
        remembered by an empty ``<key>.absent`` beside it.
    archive
        A folder of the providers' files under their own names (any sub-folder); when set,
        files are read from it only and the client is never called.
    client
        ``get(url, timeout)`` -> response with ``status_code`` and ``content``.
    """

    def __init__(
        self,
        cache: Path,
        archive: Path | None = None,
        client: HttpClient | None = None,
        timeout_s: float = 300.0,
        attempts: int = 3,
    ) -> None:
        self.cache = Path(cache)
        self.archive = Path(archive) if archive is not None else None
        self.client = client
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._archived: dict[str, list[Path]] | None = None

    def get(self, wanted: Wanted) -> Path | None:
        """The local path of ``wanted``; None for an optional file the provider lacks."""
        if self.archive is not None:
            return self._from_archive(wanted)
        target = self.cache / wanted.provider / wanted.key
        absent = target.with_name(target.name + ".absent")
        if target.is_file():
            return target
        if absent.is_file():
            return None
        body = self._download(wanted)
        target.parent.mkdir(parents=True, exist_ok=True)
        if body is None:
            absent.touch()
            return None
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(body)
        os.replace(partial, target)
        return target

    def get_all(self, wanted: Iterable[Wanted]) -> list[Path]:
        """The local paths of the files that exist (optional absent ones left out)."""
        return [p for p in (self.get(w) for w in wanted) if p is not None]

    def _from_archive(self, wanted: Wanted) -> Path | None:
        assert self.archive is not None
        if self._archived is None:
            if not self.archive.is_dir():
                raise StaticFetchError(f"static archive folder {self.archive} does not exist")
            self._archived = {}
            for path in sorted(p for p in self.archive.rglob("*") if p.is_file()):
                self._archived.setdefault(path.name, []).append(path)
        name = wanted.key.rsplit("/", 1)[-1]
        hits = [p for p in self._archived.get(name, []) if p.as_posix().endswith(wanted.key)]
        if hits:
            return hits[0]
        if wanted.optional:
            log.info("static archive %s has no %s (open ocean)", self.archive, name)
            return None
        raise StaticFetchError(
            f"static archive {self.archive} lacks {wanted.key} (from {wanted.url})"
        )

    def _download(self, wanted: Wanted) -> bytes | None:
        """The body of ``wanted.url``; None when the provider has no such (optional) file."""
        client = self.client or UrllibClient()
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = client.get(wanted.url, timeout=self.timeout_s)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                code = response.status_code
                if code == 200:
                    return bytes(response.content)
                # S3 answers 403 or 404 for a key that does not exist (an ocean tile).
                if code in (403, 404) and wanted.optional:
                    return None
                error = f"HTTP {code}"
                if code < 500:
                    break
            if attempt < self.attempts:
                time.sleep(2.0 * attempt)
        raise StaticFetchError(f"static raster: GET {wanted.url} failed: {error}")
