"""The STAC catalogue: pystac validation offline, projection and raster extensions, assets that
resolve to the published files."""

from __future__ import annotations

import copy
import datetime as dt
import json
import socket

import pystac
import pytest
import rasterio

from gsm3_ops.grid import M09
from gsm3_ops.publish import stac
from gsm3_ops.publish.layers import LAYERS
from tests.test_publish_atomic import CFG, D1, D2, WINDOW, publish


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Validation must never fetch a schema: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("stac")
    cfg = CFG.model_copy(update={"web_mercator": True})
    publish(root, D2, cfg=cfg)
    publish(root, D1, cfg=cfg)
    publish(root, D2, version=1, cfg=cfg)  # a rewrite: no second link
    return root


def test_catalogue_validates_with_pystac_offline(catalogue) -> None:
    collection = pystac.read_file(stac.collection_path(catalogue))
    assert isinstance(collection, pystac.Collection)
    collection.validate(validator=stac.OfflineValidator())
    items = list(collection.get_items())
    assert sorted(i.id for i in items) == [
        f"{CFG.collection_id}-20200301",
        f"{CFG.collection_id}-20200302",
    ]
    for item in items:
        assert item.validate(validator=stac.OfflineValidator())
        for key, asset in item.assets.items():
            assert asset.get_absolute_href() and pystac.utils.is_absolute_href(
                asset.get_absolute_href()
            )
            with open(asset.get_absolute_href(), "rb"):  # every asset resolves to a file
                pass
            assert key in (*LAYERS, "quicklook", "soil_moisture_webmercator")
    zarr_href = collection.assets["zarr"].get_absolute_href()
    assert zarr_href.endswith("gsm3.zarr") and (catalogue / "gsm3.zarr" / ".zmetadata").exists()
    interval = collection.extent.temporal.intervals[0]
    assert [d.date() for d in interval] == [D1, D2]


def test_item_carries_projection_and_raster_fields(catalogue) -> None:
    doc = json.loads(stac.item_path(catalogue, CFG.collection_id, D2).read_text())
    assert stac.PROJECTION in doc["stac_extensions"] and stac.RASTER in doc["stac_extensions"]
    props = doc["properties"]
    assert props["proj:code"] == "EPSG:6933"
    assert props["proj:shape"] == [WINDOW.n_rows, WINDOW.n_cols]
    assert props["proj:transform"] == list(M09.transform(WINDOW))[:6]
    assert props["start_datetime"] == "2020-03-02T00:00:00Z"
    assert props["gsm3:product_version"] == CFG.version and props["gsm3:bundle_id"] == "bundle-1"
    for name, layer in LAYERS.items():
        band = doc["assets"][name]["raster:bands"][0]
        assert band["data_type"] == layer.dtype and band["unit"] == layer.units
        assert band["nodata"] == ("nan" if layer.dtype == "float32" else 255)
        assert doc["assets"][name]["type"] == stac.COG_TYPE
    assert doc["assets"]["quicklook"]["proj:code"] is None  # not georeferenced
    web = doc["assets"]["soil_moisture_webmercator"]
    with rasterio.open(stac.item_path(catalogue, CFG.collection_id, D2).parent / web["href"]) as f:
        assert web["proj:code"] == "EPSG:3857" and f.crs.to_epsg() == 3857
        assert web["proj:shape"] == list(f.shape)
    west, south, east, north = doc["bbox"]
    lon, lat = M09.rowcol_to_lonlat(WINDOW.row0, WINDOW.col0)
    assert west < lon < east and south < lat < north


def test_invalid_documents_are_rejected(catalogue) -> None:
    doc = json.loads(stac.item_path(catalogue, CFG.collection_id, D2).read_text())
    for mutate in (
        lambda d: d["properties"].__setitem__("proj:shape", [12]),
        lambda d: d["properties"].__setitem__("proj:code", 6933),
        lambda d: d["assets"]["soil_moisture"]["raster:bands"][0].__setitem__("data_type", "f4"),
        lambda d: d.pop("geometry"),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(stac.StacInvalidError, match="not valid STAC"):
            stac.validate(bad, "item")


def test_schemas_that_are_not_vendored_are_refused_not_fetched(catalogue) -> None:
    doc = json.loads(stac.item_path(catalogue, CFG.collection_id, D2).read_text())
    doc["stac_extensions"].append("https://stac-extensions.github.io/eo/v2.0.0/schema.json")
    with pytest.raises(stac.StacInvalidError, match="not available offline"):
        stac.validate(doc, "item")


def test_collection_update_keeps_links_unique_and_extent_growing(catalogue) -> None:
    existing = stac.read_collection(catalogue)
    kwargs = dict(collection_id=CFG.collection_id, license="other", version="9", grid=M09,
                  window=WINDOW, zarr_assets={"zarr": catalogue / "gsm3.zarr"})  # fmt: skip
    again = stac.build_collection(catalogue, existing, D1, **kwargs)
    assert again["links"] == existing["links"]
    later = stac.build_collection(catalogue, existing, dt.date(2020, 5, 1), **kwargs)
    items = [link["href"] for link in later["links"] if link["rel"] == "item"]
    assert items == sorted(items) and len(items) == 3
    assert later["extent"]["temporal"]["interval"][0][1] == "2020-05-01T00:00:00Z"
