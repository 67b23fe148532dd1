"""Local GDAL VRT mosaics of provider tiles, so the static readers open one raster.

``mosaic_vrt`` puts regular tiles (Copernicus DEM, WorldCover) side by side, optionally at a
coarser pixel (GDAL then reads the tiles' overviews); ``trim_vrt`` keeps, of a provider's
global VRT (SoilGrids), only the tiles that meet a box, pointing at local copies.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import rasterio
from rasterio.warp import transform_bounds

from gsm3_ops.sources.static import StaticError
from gsm3_ops.sources.static_providers import Bounds

_SOURCES = ("SimpleSource", "ComplexSource")
_GDAL_TYPES = {
    "uint8": "Byte",
    "int16": "Int16",
    "uint16": "UInt16",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


class MosaicError(StaticError):
    """Provider tiles that cannot be put together (unreadable, mixed CRSs, a broken VRT)."""


def mosaic_vrt(tiles: Sequence[Path], out: Path, nodata: float, factor: int = 1) -> Path:
    """Write a VRT at ``out`` mosaicking north-up ``tiles`` of one CRS and data type.

    The mosaic's pixel is the finest tile's times ``factor``; ``nodata`` fills the gaps
    between tiles (open ocean) and replaces each tile's own nodata value.
    """
    if not tiles:
        raise MosaicError(f"no tile to mosaic into {out}")
    info = []
    for path in tiles:
        try:
            with rasterio.open(path) as src:
                info.append((path, src.crs, src.transform, src.width, src.height,
                             src.dtypes[0], src.nodata))  # fmt: skip
        except rasterio.errors.RasterioError as exc:
            raise MosaicError(f"cannot read tile {path}: {exc}") from None
    crs = info[0][1]
    if crs is None or any(i[1] != crs for i in info):
        raise MosaicError(f"tiles {[str(i[0]) for i in info]} lack a CRS or mix CRSs")
    dx = min(abs(i[2].a) for i in info) * factor
    dy = min(abs(i[2].e) for i in info) * factor
    west = min(i[2].c for i in info)
    north = max(i[2].f for i in info)
    east = max(i[2].c + i[3] * i[2].a for i in info)
    south = min(i[2].f + i[4] * i[2].e for i in info)
    width, height = math.ceil((east - west) / dx - 1e-6), math.ceil((north - south) / dy - 1e-6)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = f"{west!r}, {dx!r}, 0, {north!r}, 0, {-dy!r}"
    band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[info[0][5]], band="1")
    ET.SubElement(band, "NoDataValue").text = repr(float(nodata))
    for path, _, t, w, h, _, own_nodata in info:
        src = ET.SubElement(band, "ComplexSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = str(Path(path).resolve())
        ET.SubElement(src, "SourceBand").text = "1"
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(
            src, "DstRect",
            xOff=str(round((t.c - west) / dx)), yOff=str(round((north - t.f) / dy)),
            xSize=str(round(w * abs(t.a) / dx)), ySize=str(round(h * abs(t.e) / dy)),
        )  # fmt: skip
        if own_nodata is not None:
            ET.SubElement(src, "NODATA").text = repr(float(own_nodata))
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8")
    return out


def vrt_tiles(vrt: Path, bounds: Bounds) -> list[str]:
    """The source files (as written in the VRT, relative to it) of the tiles of a global
    VRT that meet the lon/lat ``bounds``."""
    root, gt, crs = _parse(vrt)
    box = (bounds.west, bounds.south, bounds.east, bounds.north)
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, *box, densify_pts=21)
    out = []
    for src, rect in _sources(root, vrt):
        x0, y0 = gt[0] + rect[0] * gt[1], gt[3] + rect[1] * gt[5]
        x1, y1 = x0 + rect[2] * gt[1], y0 + rect[3] * gt[5]
        if x0 < right and x1 > left and y1 < top and y0 > bottom:
            out.append(src.findtext("SourceFilename", "").strip())
    return out


def trim_vrt(vrt: Path, out: Path, local: Callable[[str], Path | None]) -> Path:
    """Write at ``out`` a copy of ``vrt`` holding only the sources ``local`` maps to a file
    (absolute paths); the others are dropped."""
    root, _, _ = _parse(vrt)
    for band in root.iter("VRTRasterBand"):
        for src in [s for s in list(band) if s.tag in _SOURCES]:
            name = src.find("SourceFilename")
            path = local(name.text.strip()) if name is not None and name.text else None
            if path is None:
                band.remove(src)
                continue
            name.text = str(Path(path).resolve())
            name.set("relativeToVRT", "0")
    for overview in root.iter("OverviewList"):  # the provider's .ovr is not copied
        overview.clear()
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8")
    return out


def _parse(vrt: Path) -> tuple[ET.Element, list[float], str]:
    try:
        root = ET.parse(vrt).getroot()
        gt = [float(v) for v in (root.findtext("GeoTransform") or "").split(",")]
        crs = (root.findtext("SRS") or "").strip()
    except (ET.ParseError, ValueError, OSError) as exc:
        raise MosaicError(f"VRT {vrt} is not readable: {exc}") from None
    if root.tag != "VRTDataset" or len(gt) != 6 or not crs or gt[2] or gt[4]:
        raise MosaicError(f"VRT {vrt}: not a north-up VRTDataset with an SRS and GeoTransform")
    return root, gt, crs


def _sources(root: ET.Element, vrt: Path):
    for band in root.iter("VRTRasterBand"):
        for src in (s for s in band if s.tag in _SOURCES):
            rect = src.find("DstRect")
            try:
                yield src, [float(rect.get(k)) for k in ("xOff", "yOff", "xSize", "ySize")]
            except (AttributeError, TypeError, ValueError):
                raise MosaicError(f"VRT {vrt}: a source without a valid DstRect") from None
