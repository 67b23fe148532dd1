"""Publish one day atomically: product Zarr, a COG per layer, quick-look, STAC, manifest.

Everything that costs time or disk happens first, outside the publication lock, in the day's
staging folder: the anomaly and percentile against the product's history, the day's Zarr
chunks, the COGs (each checked with rio-cogeo's validator), the quick-look and the STAC item
(checked with pystac's validator). Then, under the lock, one transaction renames the data
into place (Zarr chunks, grown Zarr metadata, COGs, quick-look, extra files), then the STAC
item and collection, and writes the day manifest last: that rename is the commit point. A
failure at any step leaves the product as it was and raises :class:`PublishError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from gsm3_ops.atomicfile import write_json_atomic
from gsm3_ops.config import ProductConfig
from gsm3_ops.errors import PublishError
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.publish import stac
from gsm3_ops.publish.atomic import Transaction, publish_lock, recover
from gsm3_ops.publish.cog import (
    cog_path,
    validate_cog,
    web_mercator_path,
    write_cog,
    write_web_mercator,
)
from gsm3_ops.publish.derived import climatology_layers
from gsm3_ops.publish.layers import BASE_LAYERS, LAYERS
from gsm3_ops.publish.manifest import DayManifest, manifest_path
from gsm3_ops.publish.product import (
    day_index,
    ensure_store,
    plan_day,
    product_path,
    stage_layers,
)
from gsm3_ops.publish.quicklook import quicklook_path, render
from gsm3_ops.publish.timeseries import timeseries_path

log = logging.getLogger(__name__)

__all__ = ["DayProduct", "PublishError", "Published", "publish_day"]


@dataclass
class DayProduct:
    """What a model run hands to the publisher for one day.

    Parameters
    ----------
    layers
        ``soil_moisture``, ``soil_moisture_sd`` and ``quality_flag`` over the domain window.
    tags
        COG metadata: product version, bundle id, input versions ...
    properties
        Extra STAC item properties (``gsm3:`` prefixed).
    land
        The window's land mask (for the quick-look), or None.
    extra_files
        Further files published with the day, final path -> bytes (e.g. the resolved config).
    """

    day: dt.date
    layers: dict[str, np.ndarray]
    tags: dict[str, str]
    properties: dict[str, Any] = field(default_factory=dict)
    land: np.ndarray | None = None
    extra_files: dict[Path, bytes] = field(default_factory=dict)


@dataclass
class Published:
    """Where a published day went."""

    day: dt.date
    cogs: dict[str, Path]
    product: Path
    item: Path
    collection: Path
    manifest: Path
    quicklook: Path | None
    web_mercator: Path | None
    seconds: float


def publish_day(
    root: Path,
    grid: EaseGrid,
    window: Window,
    cfg: ProductConfig,
    chunk: int,
    day_product: DayProduct,
    record: DayManifest,
) -> Published:
    """Publish ``day_product`` under ``root``; the day ``record`` is committed last, to
    :func:`~gsm3_ops.publish.manifest.manifest_path`.

    Raises :class:`PublishError` (naming the day and the cause) when anything fails; the
    product, catalogue and manifests are then exactly as before.
    """
    t0 = time.perf_counter()
    day = day_product.day
    try:
        return _publish(root, grid, window, cfg, chunk, day_product, record, t0)
    except PublishError:
        raise
    except (OSError, MemoryError, ValueError) as exc:
        # Disk full, unwritable folder, invalid STAC, a store of another domain: a failed day,
        # and the product is as it was. Anything else is a bug and keeps its traceback.
        raise PublishError(f"publishing {day} failed, nothing was changed: {exc}") from exc


def _publish(
    root: Path,
    grid: EaseGrid,
    window: Window,
    cfg: ProductConfig,
    chunk: int,
    dp: DayProduct,
    record: DayManifest,
    t0: float,
) -> Published:
    root, day = Path(root), dp.day
    manifest = manifest_path(root, day)
    missing = [name for name in BASE_LAYERS if name not in dp.layers]
    if missing:
        raise PublishError(f"publishing {day}: layers {missing} are missing")
    day_index(cfg.start, day)
    store = product_path(root)
    with publish_lock(root):
        recover(root)
        ensure_store(store, grid, window, cfg.start, chunk)
    with Transaction(root, day.isoformat()) as tx:
        staged = _stage(tx, root, grid, window, cfg, dp)
        with publish_lock(root):
            recover(root)
            plan_day(tx, store, staged.store, day, cfg.start)
            for final, staged_file in staged.files:
                tx.replace(final, staged_file)
            collection = stac.build_collection(
                root,
                stac.read_collection(root),
                day,
                collection_id=cfg.collection_id,
                license=cfg.license,
                version=cfg.version,
                grid=grid,
                window=window,
                zarr_assets=_zarr_assets(root, cfg),
            )
            col_file = stac.collection_path(root)
            tx.replace(col_file, _stage_json(tx, col_file, collection))
            tx.commit(manifest, {**record.to_json(), "outputs": staged.outputs})  # the commit point
    return Published(
        day, staged.cogs, store, staged.item, col_file, manifest, staged.quicklook,
        staged.web_mercator, time.perf_counter() - t0,
    )  # fmt: skip


@dataclass
class _Staged:
    store: Path  # the one-day Zarr
    files: list[tuple[Path, Path]]  # (final, staged), in publication order
    cogs: dict[str, Path]
    item: Path
    quicklook: Path | None
    web_mercator: Path | None
    outputs: dict[str, Any]


def _stage(
    tx: Transaction, root: Path, grid: EaseGrid, window: Window, cfg: ProductConfig,
    dp: DayProduct,
) -> _Staged:  # fmt: skip
    """Everything slow, outside the lock: derived layers, Zarr chunks, COGs, PNG, STAC item."""
    day, store = dp.day, product_path(root)
    layers = dict(dp.layers)
    layers["soil_moisture_anomaly"], layers["soil_moisture_percentile"] = climatology_layers(
        store, day, cfg.start, layers["soil_moisture"], cfg.climatology
    )
    staged_store = stage_layers(store, tx.dir, layers)
    files, assets, cogs = _stage_cogs(tx, root, grid, window, cfg, day, layers, dp.tags)
    web = None
    if cfg.web_mercator:
        web = web_mercator_path(root, day.isoformat())
        staged_web = _stage_web_mercator(tx, web, dict(files)[cogs["soil_moisture"]],
                                        cfg.compression)  # fmt: skip
        files.append((web, staged_web))
        assets.append(_web_asset(web, staged_web))
    ql = None
    if cfg.quicklook:
        ql = quicklook_path(root, day)
        png = render(layers["soil_moisture"], grid, window, day, dp.land, f"product {cfg.version}")
        files.append((ql, _stage_bytes(tx, ql, png)))
        # Not georeferenced: proj:code null on the asset overrides the item's (STAC advice).
        assets.append(stac.AssetSpec("quicklook", ql, "quick-look map", "image/png",
                                     ["overview", "visual"], proj={"proj:code": None}))  # fmt: skip
    files += [(path, _stage_bytes(tx, path, data)) for path, data in dp.extra_files.items()]
    properties = {**dp.properties, "gsm3:product_version": cfg.version}
    item = stac.build_item(root, day, cfg.collection_id, grid, window, assets, properties)
    item_file = stac.item_path(root, cfg.collection_id, day)
    files.append((item_file, _stage_json(tx, item_file, item)))  # after the data it describes
    outputs = {
        "zarr": str(store),
        "cog": {name: str(path) for name, path in cogs.items()},
        "stac_item": str(item_file),
        "stac_collection": str(stac.collection_path(root)),
        "quicklook": str(ql) if ql else None,
        "web_mercator": str(web) if web else None,
        "files": [str(final) for final, _ in files],
    }
    return _Staged(staged_store, files, cogs, item_file, ql, web, outputs)


def _stage_web_mercator(tx: Transaction, final: Path, source: Path, compression: str) -> Path:
    """Stage the Web-Mercator derivative of the staged soil-moisture COG ``source``."""
    staged = tx.stage_path(final)
    write_web_mercator(staged, source, "soil_moisture", compression)
    _check_cog(staged, final)
    return staged


def _stage_cogs(
    tx: Transaction,
    root: Path,
    grid: EaseGrid,
    window: Window,
    cfg: ProductConfig,
    day: dt.date,
    layers: dict[str, np.ndarray],
    tags: dict[str, str],
) -> tuple[list[tuple[Path, Path]], list[stac.AssetSpec], dict[str, Path]]:
    files, assets, cogs = [], [], {}
    tags = {**tags, "date": day.isoformat(), "product_version": cfg.version}
    for name, layer in LAYERS.items():
        final = cog_path(root, day.isoformat(), layer.code)
        staged = tx.stage_path(final)
        write_cog(staged, layers[name], grid, window, tags, name, cfg.compression)
        _check_cog(staged, final)
        files.append((final, staged))
        cogs[name] = final
        assets.append(stac.AssetSpec(name, final, layer.long_name, stac.COG_TYPE, ["data"], layer))
    return files, assets, cogs


def _check_cog(staged: Path, final: Path) -> None:
    valid, errors, _ = validate_cog(staged)
    if not valid:
        raise PublishError(f"{final.name} is not a valid COG: {'; '.join(errors)}")


def _web_asset(final: Path, staged: Path) -> stac.AssetSpec:
    with rasterio.open(staged) as src:
        proj = {
            "proj:code": "EPSG:3857",
            "proj:shape": list(src.shape),
            "proj:transform": list(src.transform)[:6],
        }
    return stac.AssetSpec(
        "soil_moisture_webmercator", final, "soil moisture, Web Mercator (for tile servers)",
        stac.COG_TYPE, ["data", "visual"], LAYERS["soil_moisture"], proj=proj,
    )  # fmt: skip


def _stage_bytes(tx: Transaction, final: Path, data: bytes) -> Path:
    staged = tx.stage_path(final)
    staged.write_bytes(data)
    return staged


def _stage_json(tx: Transaction, final: Path, doc: dict[str, Any]) -> Path:
    return write_json_atomic(tx.stage_path(final), doc)


def _zarr_assets(root: Path, cfg: ProductConfig) -> dict[str, Path]:
    assets = {"zarr": product_path(root)}
    if cfg.timeseries_copy:
        assets["zarr_timeseries"] = timeseries_path(root)
    return assets
