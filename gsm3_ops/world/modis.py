"""The world's MODIS days as LP DAAC tiles: MYD11A1 and MCD43A3 v061, HDF4-EOS sinusoidal.

Each day of ``lst_day``/``lst_night`` becomes one ``MYD11A1`` file per tile (1200 x 1200
pixels of 1 km, grid ``MODIS_Grid_Daily_1km_LST``) and each day of ``albedo_bsa``/
``albedo_wsa`` one ``MCD43A3`` file per tile (2400 x 2400 pixels of 500 m, grid
``MOD_Grid_BRDF``), written with ``pyhdf`` like the real ones: ``StructMetadata.0`` with the
grid's size, corners and sinusoidal projection (sphere 6371007.181 m), and the SDS with their
real names, types, ``scale_factor``/``add_offset``/``_FillValue``/``valid_range``, deflated
in chunks. Only the layers the reader uses are written (LST and ``QC_Day``/``QC_Night``;
shortwave albedo and its mandatory quality), not the products' other bands.

A pixel takes the value of the 9 km cell that holds its centre (``sample.cell_of_points``),
quantised to the product's integers. A NaN cell (the world's clouds, and its sea) is fill
with LST QA "not produced due to cloud" (``QC`` bits 0-1 = 10) or albedo QA 255 (fill);
pixels outside the window are fill, LST QA "not produced, other reasons" (11). So the
reader's area mean returns the 9 km value to within half a quantum: 0.01 K, 0.0005 albedo.

Files go into an LP DAAC mirror layout, ``<root>/MYD11A1.061/YYYY.MM.DD/
MYD11A1.AYYYYDDD.hHHvVV.061.<production>.hdf``, with a production time fixed by the day so
that rewriting a day replaces its files. The pixel -> cell index of each tile and window is
computed once (cached); a day is then an encoding of the window's cells, a gather per layer
and a write of the chunks that hold the window.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from pyhdf.SD import SD, SDC

from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regrid import MODIS_RADIUS, MODIS_TILE_SIZE, MODIS_X0, MODIS_Y0
from gsm3_ops.sources.modis_hdf import tile_corners, tiles_for_bbox
from gsm3_ops.world import hdf4_chunks as _hdf4_chunks
from gsm3_ops.world.sample import cell_of_points

COLLECTION = "061"
DEFLATE_LEVEL = 1  # deflate level 1: 2-3x faster than 8, files ~2x larger
CHUNKS_PER_SIDE = 8  # 150 (1 km) or 300 (500 m) pixel chunks: only the window's are written
QC_GOOD, QC_CLOUD, QC_OTHER = 0b00, 0b10, 0b11  # MOD11 mandatory QA, bits 0-1
ALBEDO_FULL_INVERSION = 0


@dataclass(frozen=True)
class Sds:
    """One SDS as the product writes it: type, fill, packed valid range, scale, names."""

    name: str
    kind: int  # SDC type
    dtype: str
    valid_range: tuple[int, int]
    long_name: str
    units: str
    fill: int | None = None
    scale: float | None = None  # value = scale * stored (add_offset 0); None: a QA layer
    divisor: bool = False  # the file states 1 / scale (MOD13's convention: 10000 for NDVI)
    variables: tuple[str, ...] = ()  # the registry variable it holds, or those its QA rates


@dataclass(frozen=True)
class ProductSpec:
    """A tiled product: its grid, pixels per side, SDS in file order, production lag, and
    its QA values for a clear pixel, a NaN cell (cloud) and a pixel outside the window."""

    short_name: str
    grid_name: str
    n: int
    sds: tuple[Sds, ...]
    lag_days: int
    qa: tuple[int, int, int]

    @property
    def variables(self) -> tuple[str, ...]:
        """The registry variables the product holds."""
        return tuple(v for s in self.sds if s.scale is not None for v in s.variables)


def _lst(part: str, var: str) -> tuple[Sds, Sds]:
    time = "daytime" if part == "Day" else "nighttime"
    value = Sds(
        name=f"LST_{part}_1km",
        kind=SDC.UINT16,
        dtype="uint16",
        valid_range=(7500, 65535),
        long_name=f"Daily {time} 1km grid Land-surface Temperature",
        units="K",
        fill=0,
        scale=0.02,
        variables=(var,),
    )
    qc = Sds(
        name=f"QC_{part}",
        kind=SDC.UINT8,
        dtype="uint8",
        valid_range=(0, 255),
        long_name=f"Quality control for {time} LST and emissivity",
        units="none",
        variables=(var,),
    )
    return value, qc


def _albedo(kind: str, var: str) -> Sds:
    sky = "Black" if kind == "BSA" else "White"
    return Sds(
        name=f"Albedo_{kind}_shortwave",
        kind=SDC.INT16,
        dtype="int16",
        valid_range=(0, 32766),
        long_name=f"{sky}_Sky_Albedo_shortwave",
        units="reflectance, no units",
        fill=32767,
        scale=0.001,
        variables=(var,),
    )


ALBEDO_QA = Sds(
    name="BRDF_Albedo_Band_Mandatory_Quality_shortwave",
    kind=SDC.UINT8,
    dtype="uint8",
    valid_range=(0, 254),
    long_name="BRDF_Albedo_Band_Mandatory_Quality_shortwave",
    units="concatenated flags",
    fill=255,
    variables=("albedo_bsa", "albedo_wsa"),
)
MYD11A1 = ProductSpec(
    short_name="MYD11A1",
    grid_name="MODIS_Grid_Daily_1km_LST",
    n=1200,
    sds=(*_lst("Day", "lst_day"), *_lst("Night", "lst_night")),
    lag_days=2,
    qa=(QC_GOOD, QC_CLOUD, QC_OTHER),
)
MCD43A3 = ProductSpec(
    short_name="MCD43A3",
    grid_name="MOD_Grid_BRDF",
    n=2400,
    sds=(ALBEDO_QA, _albedo("BSA", "albedo_bsa"), _albedo("WSA", "albedo_wsa")),
    lag_days=9,
    qa=(ALBEDO_FULL_INVERSION, 255, 255),
)
PRODUCTS = (MYD11A1, MCD43A3)


@dataclass(frozen=True)
class TileLayout:
    """Where a window's cells land in one tile: the block of rows/cols holding the window's
    pixels and, per pixel of that block, its flat window cell (the cell count: outside)."""

    h: int
    v: int
    n: int
    rows: slice
    cols: slice
    take: np.ndarray  # (block rows, block cols) int32, into per-cell values + 1 "outside"


def write_days(root: Path, fields: xr.Dataset, grid: EaseGrid, window: Window) -> list[Path]:
    """Write every day of ``fields`` (registry MODIS variables, (time, y, x) on ``window``)
    as MYD11A1 and/or MCD43A3 tiles under ``root``; the paths written.

    A product is written when ``fields`` holds all its variables; at least one must be.
    """
    products = [p for p in PRODUCTS if set(p.variables) <= set(fields.data_vars)]
    if not products:
        raise ValueError(
            f"no MODIS product's variables in {sorted(map(str, fields.data_vars))}: "
            "MYD11A1 needs lst_day and lst_night, MCD43A3 albedo_bsa and albedo_wsa"
        )
    days = [dt.date.fromisoformat(str(t)[:10]) for t in fields["time"].values]
    written = []
    for p in products:
        values = {v: np.asarray(fields[v].transpose("time", "y", "x").values) for v in p.variables}
        for t, day in enumerate(days):
            day_values = {v: a[t] for v, a in values.items()}
            written += [
                write_tile(root, p, day, layout, day_values)
                for layout in tile_layouts(p.n, grid, window)
            ]
    return written


def tile_layouts(n: int, grid: EaseGrid, window: Window) -> list[TileLayout]:
    """The layouts of the tiles (``n`` pixels a side) that hold pixels of ``window``."""
    return list(_tile_layouts(n, grid, window))


@functools.lru_cache(maxsize=16)
def _tile_layouts(n: int, grid: EaseGrid, window: Window) -> tuple[TileLayout, ...]:
    lon, lat = grid.lonlat(window)
    margin = 2 * 360.0 / grid.n_cols  # two cells: the box holds every cell's pixels
    bbox = (lon.min() - margin, lat.min() - 1.0, lon.max() + margin, lat.max() + 1.0)
    found = (_layout(h, v, n, grid, window, bbox) for h, v in tiles_for_bbox(*map(float, bbox)))
    return tuple(t for t in found if t is not None)


def _layout(
    h: int, v: int, n: int, grid: EaseGrid, window: Window, bbox: tuple[float, ...]
) -> TileLayout | None:
    """One tile's layout, or None when none of its pixel centres lies in the window."""
    offsets = (np.arange(n) + 0.5) * MODIS_TILE_SIZE / n
    lat = np.degrees((MODIS_Y0 - v * MODIS_TILE_SIZE - offsets) / MODIS_RADIUS)
    rows = np.flatnonzero((lat >= bbox[1]) & (lat <= bbox[3]))
    if rows.size == 0:
        return None
    x = MODIS_X0 + h * MODIS_TILE_SIZE + offsets
    lon = np.degrees(x[None, :] / (MODIS_RADIUS * np.cos(np.radians(lat[rows]))[:, None]))
    near = (lon >= bbox[0]) & (lon <= bbox[2]) & (np.abs(lon) <= 180.0)
    r_idx, c_idx = np.nonzero(near)
    r, c, inside = cell_of_points(grid, window, lon[near], np.repeat(lat[rows], near.sum(1)))
    if not inside.any():
        return None
    pr, pc = rows[r_idx[inside]], c_idx[inside]
    r0, r1, c0, c1 = pr.min(), pr.max() + 1, pc.min(), pc.max() + 1
    take = np.full((r1 - r0, c1 - c0), window.n_rows * window.n_cols, dtype=np.int32)
    take[pr - r0, pc - c0] = r[inside] * window.n_cols + c[inside]
    take.flags.writeable = False
    return TileLayout(h, v, n, slice(int(r0), int(r1)), slice(int(c0), int(c1)), take)


def write_tile(
    root: Path, product: ProductSpec, day: dt.date, layout: TileLayout, values: dict
) -> Path:
    """Write one day's tile of ``product``; ``values`` maps its variables to (rows, cols)
    window fields. Written beside the target and renamed, so readers never see half a file."""
    flat = {v: np.asarray(a, dtype=np.float64).ravel() for v, a in values.items()}
    good, cloud, other = product.qa
    blocks = {}
    for spec in product.sds:
        # Encode the window's cells, then gather them per pixel: a day is one take a layer.
        if spec.scale is not None:
            per_cell = np.append(encode(flat[spec.variables[0]], spec), spec.fill)
        else:
            clear = np.logical_and.reduce([np.isfinite(flat[v]) for v in spec.variables])
            per_cell = np.append(np.where(clear, good, cloud), other)
        blocks[spec.name] = per_cell.astype(spec.dtype)[layout.take]
    return write_blocks(root, product, day, layout, blocks)


def write_blocks(
    root: Path, product: ProductSpec, day: dt.date, layout: TileLayout, blocks: dict
) -> Path:
    """Write one tile of ``product`` for ``day`` from its SDS' stored blocks (name ->
    ``layout``'s rows x cols), beside the target and renamed: readers never see half a file."""
    path = Path(root) / granule_path(product, day, layout.h, layout.v)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    sd = SD(str(part), SDC.WRITE | SDC.CREATE | SDC.TRUNC)
    try:
        sd.attr("HDFEOSVersion").set(SDC.CHAR8, "HDFEOS_V2.19")
        sd.attr("StructMetadata.0").set(SDC.CHAR8, struct_metadata(product, layout.h, layout.v))
        for spec in product.sds:
            write_sds(sd, spec, product, layout, np.asarray(blocks[spec.name], spec.dtype))
    finally:
        sd.end()
    os.replace(part, path)
    return path


def encode(values: np.ndarray, spec: Sds) -> np.ndarray:
    """Stored integers: value / scale rounded into the valid range, fill where NaN."""
    lo, hi = spec.valid_range
    with np.errstate(invalid="ignore"):
        raw = np.clip(np.rint(values / spec.scale), lo, hi)
    return np.where(np.isfinite(values), raw, spec.fill)


def write_sds(
    sd: SD, spec: Sds, product: ProductSpec, layout: TileLayout, block: np.ndarray
) -> None:
    """One tile-sized SDS, deflated in chunks. A layer with a ``_FillValue`` is written over
    the block only (chunks never written read back as fill); one without (LST ``QC``) whole,
    "not produced, other reasons" outside the block."""
    n = product.n
    sds = sd.create(spec.name, spec.kind, (n, n))
    try:
        sds.dim(0).setname(f"YDim:{product.grid_name}")
        sds.dim(1).setname(f"XDim:{product.grid_name}")
        sds.attr("long_name").set(SDC.CHAR8, spec.long_name)
        sds.attr("units").set(SDC.CHAR8, spec.units)
        sds.setrange(*spec.valid_range)
        if spec.fill is not None:
            sds.setfillvalue(spec.fill)
        if spec.scale is not None:
            stated = 1.0 / spec.scale if spec.divisor else spec.scale
            sds.setcal(stated, 0.0, 0.0, 0.0, SDC.FLOAT32)
        chunked = _hdf4_chunks.deflate(sds, n // CHUNKS_PER_SIDE, DEFLATE_LEVEL)
        if chunked and spec.fill is not None:
            sds[layout.rows, layout.cols] = block
            return
        if not chunked:
            sds.setcompress(SDC.COMP_DEFLATE, DEFLATE_LEVEL)
        outside = spec.fill if spec.fill is not None else product.qa[2]
        data = np.full((n, n), outside, spec.dtype)
        data[layout.rows, layout.cols] = block
        sds[:] = data
    finally:
        sds.endaccess()


def granule_path(product: ProductSpec, day: dt.date, h: int, v: int) -> Path:
    """``<short>.061/YYYY.MM.DD/<short>.AYYYYDDD.hHHvVV.061.<production>.hdf``."""
    made = dt.datetime.combine(day + dt.timedelta(days=product.lag_days), dt.time(3, 14, 15))
    name = f"{product.short_name}.A{day:%Y%j}.h{h:02d}v{v:02d}.{COLLECTION}.{made:%Y%j%H%M%S}.hdf"
    return Path(f"{product.short_name}.{COLLECTION}", f"{day:%Y.%m.%d}", name)


_TYPES = {
    "int8": "DFNT_INT8",
    "uint8": "DFNT_UINT8",
    "uint16": "DFNT_UINT16",
    "int16": "DFNT_INT16",
}


def struct_metadata(product: ProductSpec, h: int, v: int) -> str:
    """The ``StructMetadata.0`` text of one tile: one grid, its fields, sinusoidal sphere."""
    (ulx, uly), (lrx, lry) = tile_corners(h, v)
    fields = "".join(
        f'\t\t\tOBJECT=DataField_{i}\n\t\t\t\tDataFieldName="{s.name}"\n'
        f'\t\t\t\tDataType={_TYPES[s.dtype]}\n\t\t\t\tDimList=("YDim","XDim")\n'
        f"\t\t\tEND_OBJECT=DataField_{i}\n"
        for i, s in enumerate(product.sds, 1)
    )
    return (
        "GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n\tGROUP=GRID_1\n"
        f'\t\tGridName="{product.grid_name}"\n\t\tXDim={product.n}\n\t\tYDim={product.n}\n'
        f"\t\tUpperLeftPointMtrs=({ulx:.6f},{uly:.6f})\n"
        f"\t\tLowerRightMtrs=({lrx:.6f},{lry:.6f})\n"
        "\t\tProjection=GCTP_SNSOID\n"
        f"\t\tProjParams=({MODIS_RADIUS:.6f},0,0,0,0,0,0,0,0,0,0,0,0)\n"
        "\t\tSphereCode=-1\n\t\tGridOrigin=HDFE_GD_UL\n"
        "\t\tGROUP=Dimension\n\t\tEND_GROUP=Dimension\n"
        f"\t\tGROUP=DataField\n{fields}\t\tEND_GROUP=DataField\n"
        "\t\tGROUP=MergedFields\n\t\tEND_GROUP=MergedFields\n"
        "\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\n"
        "GROUP=PointStructure\nEND_GROUP=PointStructure\nEND\n"
    )
