"""The STAC catalogue of the product: one collection and one item per day (pystac, STAC 1.1).

Layout under the publish root::

    stac/collection.json                  the collection, with a Zarr asset and item links
    stac/items/YYYY/<collection>-YYYYMMDD.json

Every href is relative, so the tree can be copied to object storage as it is. Items carry the
projection extension (``proj:code``, ``proj:shape``, ``proj:transform``) and, on each COG
asset, the raster extension (``nodata``, ``data_type``, ``unit``). Everything is validated with
pystac's JSON-schema validator before it is published, offline: the extension schemas are
vendored in ``stac_schemas/`` (see its README) and no schema is ever fetched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pystac.validation
from pyproj import Transformer
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from gsm3_ops.errors import Gsm3Error
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.publish.layers import Layer

PROJECTION = ProjectionExtension.get_schema_uri()
RASTER = RasterExtension.get_schema_uri()
EXTENSION_SCHEMAS = {PROJECTION: "projection-v2.0.0.json", RASTER: "raster-v1.1.0.json"}
COG_TYPE = str(pystac.MediaType.COG)
ZARR_TYPE = "application/vnd+zarr"
JSON_TYPE = str(pystac.MediaType.JSON)


class StacInvalidError(Gsm3Error, ValueError):
    """A STAC document failed validation (or needs a schema that is not vendored)."""


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator with every schema read from disk, never the network.

    pystac bundles the core STAC and GeoJSON schemas; the extension schemas come from
    ``gsm3_ops/publish/stac_schemas``. A schema that is in neither raises
    :class:`StacInvalidError` instead of being downloaded.
    """

    def __init__(self) -> None:
        super().__init__()
        folder = resources.files("gsm3_ops.publish").joinpath("stac_schemas")
        for uri, name in EXTENSION_SCHEMAS.items():
            self.schema_cache[uri] = json.loads(folder.joinpath(name).read_text())

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise StacInvalidError(
                f"STAC schema {schema_uri} is not available offline; vendor it in "
                "gsm3_ops/publish/stac_schemas (see its README)"
            )
        return super()._get_schema(schema_uri)


def validate(doc: dict[str, Any], what: str) -> None:
    """Validate a STAC item or collection dict offline; :class:`StacInvalidError` if invalid."""
    try:
        pystac.validation.validate_dict(doc, validator=OfflineValidator())
    except pystac.errors.STACValidationError as exc:
        lines = str(exc).splitlines()  # what failed, then jsonschema's best-matching error
        raise StacInvalidError(f"{what} is not valid STAC: {' / '.join(lines[:2])}") from None


def collection_path(root: Path) -> Path:
    """``<root>/stac/collection.json``."""
    return Path(root) / "stac" / "collection.json"


def item_id(collection_id: str, day: dt.date) -> str:
    """``<collection id>-YYYYMMDD``."""
    return f"{collection_id}-{day:%Y%m%d}"


def item_path(root: Path, collection_id: str, day: dt.date) -> Path:
    """``<root>/stac/items/YYYY/<item id>.json``."""
    return Path(root) / "stac" / "items" / f"{day:%Y}" / f"{item_id(collection_id, day)}.json"


@dataclass
class AssetSpec:
    """One asset of an item: a file, what it is, and (for rasters) its band."""

    key: str
    path: Path
    title: str
    media_type: str
    roles: list[str]
    layer: Layer | None = None
    description: str | None = None
    proj: dict[str, Any] = field(default_factory=dict)  # asset-level projection overrides


def lonlat_bbox(grid: EaseGrid, window: Window) -> list[float]:
    """[west, south, east, north] in degrees of the window's outer cell edges."""
    t = grid.transform(window)
    xs = [t.c, t.c + t.a * window.n_cols]
    ys = [t.f + t.e * window.n_rows, t.f]
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    lat = np.clip(lat, -90.0, 90.0)
    return [round(float(v), 6) for v in (lon[0], lat[0], lon[1], lat[1])]


def _geometry(bbox: list[float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(target, start.parent)


def _band(layer: Layer, resolution: float) -> dict[str, Any]:
    nodata: Any = "nan" if np.isnan(layer.nodata) else int(layer.nodata)
    return {
        "data_type": layer.dtype,
        "nodata": nodata,
        "unit": layer.units,
        "sampling": "area",
        "spatial_resolution": resolution,
    }


def _utc(day: dt.date, time: dt.time = dt.time(0)) -> dt.datetime:
    return dt.datetime.combine(day, time, tzinfo=dt.UTC)


def build_item(
    root: Path,
    day: dt.date,
    collection_id: str,
    grid: EaseGrid,
    window: Window,
    assets: list[AssetSpec],
    properties: dict[str, Any],
) -> dict[str, Any]:
    """The STAC item of ``day`` as a dict (hrefs relative to its file), validated."""
    path = item_path(root, collection_id, day)
    bbox = lonlat_bbox(grid, window)
    item = pystac.Item(
        id=item_id(collection_id, day),
        geometry=_geometry(bbox),
        bbox=bbox,
        datetime=_utc(day),
        start_datetime=_utc(day),
        end_datetime=_utc(day, dt.time(23, 59, 59)),
        properties=dict(properties),
        collection=collection_id,
    )
    ProjectionExtension.ext(item, add_if_missing=True).apply(
        code=grid.crs, shape=list(window.shape), transform=list(grid.transform(window))[:6]
    )
    for spec in assets:
        extra: dict[str, Any] = dict(spec.proj)
        if spec.layer is not None:
            extra["raster:bands"] = [_band(spec.layer, grid.cell_size)]
        item.add_asset(
            spec.key,
            pystac.Asset(
                href=_rel(spec.path, path),
                title=spec.title,
                description=spec.description,
                media_type=spec.media_type,
                roles=spec.roles,
                extra_fields=extra,
            ),
        )
    RasterExtension.add_to(item)
    collection = _rel(collection_path(root), path)
    for rel in ("collection", "parent", "root"):
        item.add_link(pystac.Link(rel, collection, media_type=JSON_TYPE))
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    validate(doc, f"STAC item {path}")
    return doc


def build_collection(
    root: Path,
    existing: dict[str, Any] | None,
    day: dt.date,
    *,
    collection_id: str,
    license: str,
    version: str,
    grid: EaseGrid,
    window: Window,
    zarr_assets: dict[str, Path],
) -> dict[str, Any]:
    """The collection with ``day``'s item linked and its temporal extent covering ``day``,
    built from the ``existing`` collection dict (None: a new collection); validated."""
    path = collection_path(root)
    start = end = _utc(day)
    links: list[dict[str, Any]] = []
    if existing is not None:
        interval = existing["extent"]["temporal"]["interval"][0]
        start = min(start, _parse(interval[0]))
        end = max(end, _parse(interval[1]))
        links = [link for link in existing.get("links", []) if link.get("rel") == "item"]
    href = _rel(item_path(root, collection_id, day), path)
    if not any(link["href"] == href for link in links):
        links.append({"rel": "item", "href": href, "type": "application/geo+json"})
    links.sort(key=lambda link: link["href"])
    collection = pystac.Collection(
        id=collection_id,
        title="gsm3-ops daily surface soil moisture (0-5 cm), 9 km EASE-Grid 2.0",
        description=(
            "Daily 0-5 cm volumetric soil moisture (m3 m-3) from the GSM3 multitask LSTM "
            "ensemble (Liu et al. 2023, Geosci. Model Dev. 16:1553): ensemble mean and spread, "
            "anomaly and percentile against a day-of-year climatology, and a quality flag."
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([lonlat_bbox(grid, window)]),
            pystac.TemporalExtent([[start, end]]),
        ),
        license=license,
        keywords=["soil moisture", "GSM3", "LSTM", "EASE-Grid 2.0"],
        extra_fields={"version": version},
    )
    for key, store in zarr_assets.items():
        collection.add_asset(
            key,
            pystac.Asset(
                href=_rel(store, path),
                title="product Zarr" if key == "zarr" else "time-series copy (Zarr)",
                media_type=ZARR_TYPE,
                roles=["data"],
                extra_fields={
                    "proj:code": grid.crs,
                    "proj:shape": list(window.shape),
                    "proj:transform": list(grid.transform(window))[:6],
                },
            ),
        )
    ProjectionExtension.add_to(collection)
    collection.add_link(pystac.Link("root", "./collection.json", media_type=JSON_TYPE))
    doc = collection.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [link for link in doc["links"] if link["rel"] != "item"] + links
    validate(doc, f"STAC collection {path}")
    return doc


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_collection(root: Path) -> dict[str, Any] | None:
    """The published collection dict, or None when there is none yet."""
    path = collection_path(root)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise StacInvalidError(f"STAC collection {path} is not valid JSON: {exc}") from None
