"""Publish one day atomically: product Zarr and its time-series copy, a COG per layer,
quick-look, STAC, the day index and the day manifest.

Everything that costs time or disk happens first, outside the publication lock, in the day's
staging folder: the anomaly and percentile against the product's history, the day's Zarr
chunks, the COGs (each checked with rio-cogeo's validator), the quick-look and the STAC item
(checked with pystac's validator). Then, under the lock, one transaction renames the data
into place (Zarr chunks, grown Zarr metadata, ``.zmetadata``, the time-series copy's block,
COGs, quick-look, extra files), then the STAC item and collection, ``days.json`` and
``latest.json`` (what apps poll), and writes the day manifest last: that rename is the commit
point. A failure at any step leaves the product as it was and raises :class:`PublishError`.
Nothing published names a path outside the publish root: ``outputs`` are relative to it.
"""

from __future__ import annotations

import datetime as dt
import json
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
from gsm3_ops.publish.layers import BASE_LAYERS, COG_ONLY_LAYERS, LAYERS
from gsm3_ops.publish.manifest import DayManifest, manifest_path
from gsm3_ops.publish.product import (
    day_index,
    ensure_store,
    plan_day,
    product_path,
    stage_layers,
)
from gsm3_ops.publish.quicklook import quicklook_path, render
from gsm3_ops.publish.timeseries import ensure_copy, plan_copy, timeseries_path

DAYS_NAME, LATEST_NAME = "days.json", "latest.json"

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
    changed: list[str] = field(default_factory=list)  # relative paths, in commit order
    removed: list[str] = field(default_factory=list)  # relative paths the day took away


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
        ensure_store(store, grid, window, cfg.start, chunk, _acdd(cfg))
        if cfg.timeseries_copy:
            ensure_copy(
                timeseries_path(root),
                grid,
                window,
                cfg.start,
                (cfg.timeseries_time_chunk, cfg.timeseries_space_chunk),
                _acdd(cfg),
            )
    with Transaction(root, day.isoformat()) as tx:
        staged = _stage(tx, root, grid, window, cfg, dp)
        with publish_lock(root):
            recover(root)
            placement = plan_day(tx, store, staged.store, day, cfg.start)
            if cfg.timeseries_copy:
                plan_copy(tx, timeseries_path(root), store, staged.layers, placement, cfg.start)
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
            _plan_index(tx, root, cfg, grid, window, day)
            replaced = _folders(tx)
            tx.commit(manifest, {**record.to_json(), "outputs": staged.outputs})  # the commit point
            changed, removed = _changes(root, tx, replaced)
    return Published(
        day, staged.cogs, store, staged.item, col_file, manifest, staged.quicklook,
        staged.web_mercator, time.perf_counter() - t0, changed, removed,
    )  # fmt: skip


def published_days(root: Path) -> list[dt.date]:
    """The published days, from ``days.json`` (or, before it existed, the day manifests)."""
    index = Path(root) / DAYS_NAME
    if index.exists():
        return [dt.date.fromisoformat(d) for d in json.loads(index.read_text())["days"]]
    days = []
    for path in sorted(Path(root).glob("manifests/*/gsm3_*.json")):
        stem = path.name.removesuffix(".json")[5:]
        if stem.isdigit() and len(stem) == 8:
            record = DayManifest.read(path, dt.datetime.strptime(stem, "%Y%m%d").date())
            if record is not None and record.published:
                days.append(record.date)
    return days


def _plan_index(
    tx: Transaction, root: Path, cfg: ProductConfig, grid: EaseGrid, window: Window,
    day: dt.date,
) -> None:  # fmt: skip
    """``days.json`` (every published day) and ``latest.json`` (the newest day and where its
    files are, relative to the root), after everything they point to."""
    days = sorted({*published_days(root), day})
    lon, lat = grid.lonlat(window)
    latest = {
        "day": days[-1].isoformat(),
        "first_day": days[0].isoformat(),
        "n_days": len(days),
        "product_version": cfg.version,
        "collection": _rel(stac.collection_path(root), root),
        "item": _rel(stac.item_path(root, cfg.collection_id, days[-1]), root),
        "zarr": _rel(product_path(root), root),
        "timeseries": _rel(timeseries_path(root), root) if cfg.timeseries_copy else None,
        "bbox": [round(float(v), 5) for v in (lon.min(), lat.min(), lon.max(), lat.max())],
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for name, doc in ((DAYS_NAME, {"days": [d.isoformat() for d in days]}),
                      (LATEST_NAME, latest)):  # fmt: skip
        tx.replace(root / name, _stage_json(tx, root / name, doc))


def _acdd(cfg: ProductConfig) -> dict[str, str]:
    """The product's own global attributes (ACDD) for the Zarr stores."""
    return {"license": cfg.license, "product_version": cfg.version, "id": cfg.collection_id,
            "naming_authority": "gsm3-ops"}  # fmt: skip


def _folders(tx: Transaction) -> dict[str, set[str]]:
    """The files under each folder a move replaces (a rebased store), before the commit."""
    return {
        move.final: _files_under(tx.root / move.final, tx.root)
        for move in tx.moves
        if (tx.root / move.final).is_dir()
    }


def _files_under(folder: Path, root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file()}


def _changes(root: Path, tx: Transaction, replaced: dict[str, set[str]]) -> tuple[list, list]:
    """The relative paths the committed ``tx`` wrote (folders expanded) and removed."""
    changed, removed = [], []
    for move in tx.moves:
        if move.staged is None:
            removed.append(move.final)
        elif move.final in replaced:
            now = _files_under(root / move.final, root)
            changed += sorted(now)
            removed += sorted(replaced[move.final] - now)
        else:
            changed.append(move.final)
    return changed, removed


def _rel(path: Path, root: Path) -> str:
    return str(Path(path).relative_to(root))


@dataclass
class _Staged:
    store: Path  # the one-day Zarr
    layers: dict[str, np.ndarray]  # every product layer of the day
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
    zarr_layers = {name: values for name, values in layers.items() if name in LAYERS}
    staged_store = stage_layers(store, tx.dir, zarr_layers)
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
    outputs = {  # relative to the publish root: nothing published names an internal path
        "zarr": _rel(store, root),
        "timeseries": _rel(timeseries_path(root), root) if cfg.timeseries_copy else None,
        "cog": {name: _rel(path, root) for name, path in cogs.items()},
        "stac_item": _rel(item_file, root),
        "stac_collection": _rel(stac.collection_path(root), root),
        "quicklook": _rel(ql, root) if ql else None,
        "web_mercator": _rel(web, root) if web else None,
        "files": [_rel(final, root) for final, _ in files],
    }
    return _Staged(staged_store, zarr_layers, files, cogs, item_file, ql, web, outputs)


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
    extra = {name: layer for name, layer in COG_ONLY_LAYERS.items() if name in layers}
    for name, layer in {**LAYERS, **extra}.items():
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
