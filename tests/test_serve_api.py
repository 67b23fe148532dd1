"""The HTTP service over a publish root written by the real publisher (tests/serve_site.py):
every endpoint's answer checked against the published files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import xml.etree.ElementTree as ET

import morecantile
import numpy as np
import pytest
import rasterio
import xarray as xr
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from gsm3_ops.cli import app as cli
from gsm3_ops.publish.cog import cog_path
from gsm3_ops.publish.layers import FLAG_FILL, LAYERS, QUALITY_FLAGS
from gsm3_ops.publish.remote import RemoteRoot, sync_all
from gsm3_ops.serve import app as app_module
from gsm3_ops.serve import create_app
from gsm3_ops.serve.palettes import PALETTES
from tests.serve_site import (
    BUNDLE,
    DAYS,
    INPUT_VERSIONS,
    PROVISIONAL_DAY,
    VERSION,
    build_site,
    publish,
)

TMS = morecantile.tms.get("WebMercatorQuad")
INSIDE = [(36.5, -1.5), (36.9, -1.95), (36.05, -1.9), (36.6, -1.2)]
SEA_POINT = (36.02, -1.03)  # the window's no-data corner


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("serve") / "pub")


@pytest.fixture(scope="module")
def client(site):
    return TestClient(create_app(site.root, cors_origins=["https://map.example.org"]))


def _cog_value(root, layer: str, day: dt.date, x: float, y: float):
    with rasterio.open(cog_path(root, day.isoformat(), LAYERS[layer].code)) as src:
        row, col = src.index(x, y)
        return src.read(1)[row, col]


def _same(served, stored) -> bool:
    """A served JSON value equals a stored raw value (NaN and the flag's fill are null)."""
    if served is None:
        return (
            bool(np.isnan(stored))
            if np.issubdtype(type(stored), np.floating)
            else (int(stored) == FLAG_FILL)
        )
    return np.asarray(served, dtype=np.asarray(stored).dtype) == stored


def _rgba(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.size == (256, 256)
    return np.asarray(image.convert("RGBA"))


def test_health_latest_and_days_follow_days_json(client, site) -> None:
    assert client.get("/health").json() == {"status": "ok", "latest": DAYS[-1].isoformat()}
    index = json.loads((site.root / "days.json").read_text())
    assert client.get("/days").json() == {"days": index["days"]}
    assert client.get("/days", params={"start": "2021-03-03", "end": "2021-03-08"}).json() == {
        "days": ["2021-03-03", "2021-03-04", "2021-03-05", "2021-03-08"]
    }
    latest = client.get("/latest").json()
    stored = json.loads((site.root / "latest.json").read_text())
    assert {k: latest[k] for k in stored} == stored
    assert latest["day"] == "2021-03-08" and latest["n_days"] == len(DAYS)
    links = latest["links"]
    assert all(link.startswith("/") and "://" not in link for link in links.values())
    assert client.get(links["collection"]).json()["type"] == "Collection"
    assert client.get(links["item"]).json()["id"].endswith("20210308")
    assert client.get("/days", params={"start": "2021-02-30"}).status_code == 400
    assert (
        client.get("/days", params={"start": "2021-03-05", "end": "2021-03-01"}).status_code == 400
    )


def test_layers_and_legends(client) -> None:
    layers = client.get("/layers").json()
    assert [layer["name"] for layer in layers] == list(LAYERS)
    sm = client.get("/legend/soil_moisture").json()
    assert (sm["min"], sm["max"], sm["units"]) == (0.0, 0.5, "m3 m-3")
    assert len(sm["stops"]) == 11 and sm["stops"][0]["color"].startswith("#")
    anomaly = client.get("/legend/anom").json()
    assert anomaly["type"] == "diverging" and anomaly["min"] == -anomaly["max"]
    flag = client.get("/legend/quality_flag").json()
    assert flag["type"] == "categorical"
    assert [c["label"] for c in flag["classes"][1:]] == list(QUALITY_FLAGS.values())
    png = client.get("/legend/pct", params={"format": "png"})
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (256, 16)
    assert client.get("/legend/rainfall").status_code == 404


@pytest.mark.parametrize("day", [DAYS[1], PROVISIONAL_DAY])
def test_point_equals_the_cog_pixels_and_the_manifest(client, site, day) -> None:
    for lon, lat in INSIDE:
        body = client.get("/point", params={"lon": lon, "lat": lat, "date": day.isoformat()})
        assert body.status_code == 200, body.text
        doc = body.json()
        cell = doc["cell"]
        row, col = site.grid.lonlat_to_rowcol(np.array([lon]), np.array([lat]))
        assert (cell["row"], cell["col"]) == (row[0], col[0])
        for name in LAYERS:
            stored = _cog_value(site.root, name, day, cell["x"], cell["y"])
            assert _same(doc[name], stored), (name, doc[name], stored)
        flag = doc["quality_flag"]
        assert doc["quality"] == [n for bit, n in QUALITY_FLAGS.items() if flag & bit]
        assert doc["units"]["soil_moisture"] == "m3 m-3"
        assert doc["provenance"] == {
            "product_version": VERSION,
            "bundle_id": BUNDLE,
            "provisional": day == PROVISIONAL_DAY,
            "input_versions": INPUT_VERSIONS,
        }
        if day == PROVISIONAL_DAY:
            assert "provisional_inputs" in doc["quality"]


def test_point_defaults_to_latest_and_refuses_bad_input(client) -> None:
    lon, lat = INSIDE[0]
    latest = client.get("/point", params={"lon": lon, "lat": lat}).json()
    assert latest["date"] == DAYS[-1].isoformat()
    cases = {
        (lon, lat, "2021-03-06"): 404,  # not published
        (lon, lat, "2021-13-01"): 400,
        (lon, lat, "yesterday"): 400,
        (0.0, 0.0, None): 404,  # outside the domain
        (*SEA_POINT, None): 404,  # no data
        (181.0, lat, None): 422,
        (lon, -91.0, None): 422,
        ("nan", lat, None): 422,
    }
    for (x, y, date), status in cases.items():
        params = {"lon": x, "lat": y} | ({"date": date} if date else {})
        r = client.get("/point", params=params)
        assert r.status_code == status, (params, r.text)
        assert "detail" in r.json()


def _zarr_series(root, x: float, y: float, days) -> dict[str, np.ndarray]:
    with xr.open_zarr(root / "gsm3.zarr", consolidated=None, mask_and_scale=False) as ds:
        at = ds.sel(x=x, y=y, method="nearest").sel(time=[np.datetime64(d) for d in days])
        return {name: at[name].values for name in LAYERS}


def test_timeseries_equals_the_zarr_on_published_days_only(client, site) -> None:
    lon, lat = INSIDE[1]
    doc = client.get("/timeseries", params={"lon": lon, "lat": lat}).json()
    dates = [entry["date"] for entry in doc["series"]]
    assert dates == [d.isoformat() for d in DAYS]  # 6 and 7 March are not published
    stored = _zarr_series(site.root, doc["cell"]["x"], doc["cell"]["y"], DAYS)
    for i, entry in enumerate(doc["series"]):
        for name in LAYERS:
            assert _same(entry[name], stored[name][i]), (name, entry)
    part = client.get("/timeseries", params={"lon": lon, "lat": lat, "start": "2021-03-04",
                                             "end": "2021-03-07"}).json()  # fmt: skip
    assert part["series"] == doc["series"][3:5]
    text = client.get("/timeseries", params={"lon": lon, "lat": lat, "format": "csv"})
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert [r["date"] for r in rows] == dates
    for row, entry in zip(rows, doc["series"], strict=True):
        assert float(row["soil_moisture"]) == entry["soil_moisture"]
        assert (row["quality_flag"] or None) == (
            None if entry["quality_flag"] is None else str(entry["quality_flag"])
        )
    bad = client.get("/timeseries", params={"lon": lon, "lat": lat, "start": "2021-03-09",
                                            "end": "2021-03-01"})  # fmt: skip
    assert bad.status_code == 400
    assert (
        client.get("/timeseries", params={"lon": lon, "lat": lat, "format": "xml"}).status_code
        == 422
    )
    assert client.get("/timeseries", params={"lon": 10, "lat": 50}).status_code == 404


def test_timeseries_without_the_copy_reads_the_product(tmp_path, site) -> None:
    days = DAYS[:3]
    other = build_site(tmp_path / "pub", days=days, timeseries=False)
    client = TestClient(create_app(other.root))
    lon, lat = INSIDE[2]
    doc = client.get("/timeseries", params={"lon": lon, "lat": lat}).json()
    stored = _zarr_series(other.root, doc["cell"]["x"], doc["cell"]["y"], days)
    assert [e["date"] for e in doc["series"]] == [d.isoformat() for d in days]
    for i, entry in enumerate(doc["series"]):
        assert _same(entry["soil_moisture"], stored["soil_moisture"][i])
        assert _same(entry["quality_flag"], stored["quality_flag"][i])


def _tile_of(lon: float, lat: float, z: int) -> morecantile.Tile:
    return TMS.tile(lon, lat, z)


def _pixel_lonlat(tile: morecantile.Tile, row: int, col: int) -> tuple[float, float]:
    bounds = TMS.xy_bounds(tile)
    x = bounds.left + (col + 0.5) * (bounds.right - bounds.left) / 256
    y = bounds.top - (row + 0.5) * (bounds.top - bounds.bottom) / 256
    lnglat = TMS.lnglat(x, y)
    return lnglat.x, lnglat.y


def test_tile_is_coloured_over_data_and_transparent_elsewhere(client, site) -> None:
    tile = _tile_of(*INSIDE[0], 7)  # holds the whole window, sea corner included
    r = client.get(f"/tiles/soil_moisture/2021-03-02/{tile.z}/{tile.x}/{tile.y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "max-age" in r.headers["cache-control"]
    rgba = _rgba(r.content)
    alpha = rgba[..., 3]
    assert (alpha == 255).sum() > 1000 and (alpha == 0).sum() > 1000  # the window is smaller
    # a coloured pixel has the palette's colour of the value at its centre
    palette = PALETTES["soil_moisture"]
    rows, cols = np.nonzero(alpha == 255)
    picks = np.random.default_rng(0).choice(len(rows), 12, replace=False)
    for row, col in zip(rows[picks], cols[picks], strict=True):
        lon, lat = _pixel_lonlat(tile, row, col)
        cell = client.get("/point", params={"lon": lon, "lat": lat, "date": "2021-03-02"}).json()
        expected = palette.colormap[int(palette.to_bytes(np.array([cell["soil_moisture"]]))[0])]
        assert tuple(rgba[row, col]) == expected
    # the sea corner (no data) is transparent
    lon, lat = SEA_POINT
    x, y = TMS.xy(lon, lat)
    bounds = TMS.xy_bounds(tile)
    col = int((x - bounds.left) / (bounds.right - bounds.left) * 256)
    row = int((bounds.top - y) / (bounds.top - bounds.bottom) * 256)
    assert alpha[row, col] == 0


def test_tiles_beyond_the_data_are_transparent_and_bad_tiles_refused(client) -> None:
    far = client.get("/tiles/sm/latest/3/0/0.png")
    assert far.status_code == 200 and (_rgba(far.content)[..., 3] == 0).all()
    tile = _tile_of(*INSIDE[0], 9)
    flag = client.get(f"/tiles/quality_flag/latest/{tile.z}/{tile.x}/{tile.y}.png")
    assert flag.status_code == 200 and (_rgba(flag.content)[..., 3] == 255).any()
    assert client.get("/tiles/sm/latest/3/8/0.png").status_code == 400  # x >= 2**z
    assert client.get("/tiles/sm/latest/30/0/0.png").status_code == 422
    assert client.get("/tiles/sm/2021-03-06/3/0/0.png").status_code == 404
    assert client.get("/tiles/sm/2021-3-6/3/0/0.png").status_code == 422
    assert client.get("/tiles/rain/latest/3/0/0.png").status_code == 404


def test_wmts_capabilities_and_tiles(client) -> None:
    r = client.get("/wmts/WMTSCapabilities.xml")
    assert r.status_code == 200
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    doc = ET.fromstring(r.content)
    layers = doc.findall("w:Contents/w:Layer", ns)
    assert [el.find("ows:Identifier", ns).text for el in layers] == list(LAYERS)
    values = [v.text for v in layers[0].findall("w:Dimension/w:Value", ns)]
    assert values == [d.isoformat() for d in DAYS]
    matrix_set = doc.find("w:Contents/w:TileMatrixSet", ns)
    assert matrix_set.find("ows:Identifier", ns).text == "GoogleMapsCompatible"
    template = layers[0].find("w:ResourceURL", ns).get("template")
    tile = _tile_of(*INSIDE[0], 8)
    url = (template.replace("{Time}", "2021-03-02").replace("{TileMatrix}", str(tile.z))
           .replace("{TileRow}", str(tile.y)).replace("{TileCol}", str(tile.x)))  # fmt: skip
    wmts = client.get(url)
    xyz = client.get(f"/tiles/soil_moisture/2021-03-02/{tile.z}/{tile.x}/{tile.y}.png")
    assert wmts.status_code == 200 and wmts.content == xyz.content


def test_stac_is_served_and_traversal_refused(client, site) -> None:
    collection = client.get("/stac/collection.json")
    assert collection.json() == json.loads((site.root / "stac/collection.json").read_text())
    secret = (site.root / "manifests/2021/gsm3_20210301.json").read_text()
    for path in (
        "/stac/%2e%2e/manifests/2021/gsm3_20210301.json",
        "/stac/..%2fmanifests/2021/gsm3_20210301.json",
        "/stac/%2E%2E%2F%2E%2E%2Fetc/passwd",
        "/stac/items/..%5c..%5cmanifests/2021/gsm3_20210301.json",
        "/stac/collection.json%00.json",
        "/stac//etc/passwd",
        "/stac/%252e%252e/manifests/2021/gsm3_20210301.json",
    ):
        r = client.get(path)
        assert r.status_code in (400, 404), path
        assert secret not in r.text and "detail" in r.json()


def test_cors_head_and_read_only(client, site) -> None:
    r = client.get("/health", headers={"Origin": "https://map.example.org"})
    assert r.headers["access-control-allow-origin"] == "https://map.example.org"
    other = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
    head = client.head("/latest")
    assert head.status_code == 200 and head.content == b""
    assert client.post("/health").status_code == 405
    assert client.delete("/stac/collection.json").status_code == 405
    closed = TestClient(create_app(site.root))
    assert (
        "access-control-allow-origin"
        not in closed.get("/health", headers={"Origin": "https://map.example.org"}).headers
    )


def test_metrics_count_routes_and_tile_cache(client) -> None:
    tile = _tile_of(*INSIDE[0], 7)
    for _ in range(2):
        client.get(f"/tiles/sd/latest/{tile.z}/{tile.x}/{tile.y}.png")
    text = client.get("/metrics").text
    assert 'route="/tiles/{layer}/{date}/{z}/{x}/{y}.png"' in text
    assert "gsm3_serve_request_seconds_bucket" in text
    hits = [line for line in text.splitlines() if line.startswith("gsm3_serve_tile_cache_total")]
    assert any('result="hit"' in line and float(line.split()[-1]) >= 1 for line in hits)


def test_a_day_counts_once_days_json_lists_it(tmp_path, site) -> None:
    root = tmp_path / "pub"
    shutil.copytree(site.root, root)
    client = TestClient(create_app(root, refresh_s=0))
    lon, lat = INSIDE[0]
    new = dt.date(2021, 3, 9)
    index = (root / "days.json").read_text()
    latest = (root / "latest.json").read_text()
    publish(root, new)
    before = client.get("/point", params={"lon": lon, "lat": lat}).json()
    assert before["date"] == new.isoformat()
    # a publication caught between its data and its index: the day is not served yet
    (root / "days.json").write_text(index)
    (root / "latest.json").write_text(latest)
    assert (
        client.get("/point", params={"lon": lon, "lat": lat, "date": "2021-03-09"}).status_code
        == 404
    )
    assert client.get("/latest").json()["day"] == DAYS[-1].isoformat()
    assert new.isoformat() not in client.get("/days").json()["days"]


def test_without_days_json_the_complete_manifests_count(tmp_path, site) -> None:
    root = tmp_path / "pub"
    shutil.copytree(site.root, root)
    (root / "days.json").unlink()
    (root / "latest.json").unlink()
    failed = root / "manifests/2021/gsm3_20210307.failed.json"
    failed.write_text(json.dumps({"date": "2021-03-07", "status": "failed", "error": "x"}))
    (root / "manifests/last_run.json").write_text("{}")
    client = TestClient(create_app(root))
    assert client.get("/days").json()["days"] == [d.isoformat() for d in DAYS]
    latest = client.get("/latest").json()
    assert latest["day"] == DAYS[-1].isoformat() and latest["product_version"] == VERSION
    assert latest["timeseries"] == "gsm3_timeseries.zarr"
    assert client.get("/point", params={"lon": 36.5, "lat": -1.5}).status_code == 200


def test_an_unreadable_root_is_a_503_not_a_500(tmp_path) -> None:
    client = TestClient(create_app(tmp_path / "missing"))
    assert client.get("/health").status_code == 503
    for url in ("/latest", "/days", "/point?lon=36.5&lat=-1.5", "/tiles/sm/latest/3/4/3.png",
                "/wmts/WMTSCapabilities.xml"):  # fmt: skip
        r = client.get(url)
        assert r.status_code == 503 and "detail" in r.json(), url


def test_web_map_is_served_or_reported_missing(tmp_path, site, monkeypatch) -> None:
    monkeypatch.setattr(app_module, "STATIC", tmp_path / "static")
    bare = TestClient(create_app(site.root))
    r = bare.get("/")
    assert r.status_code == 503 and "not bundled" in r.json()["detail"]
    assert bare.get("/static/app.js").status_code == 503
    (tmp_path / "static").mkdir()
    (tmp_path / "static/index.html").write_text("<html>map</html>")
    (tmp_path / "static/app.js").write_text("let a = 1;")
    bundled = TestClient(create_app(site.root))
    assert bundled.get("/").text == "<html>map</html>"
    assert bundled.get("/static/app.js").text == "let a = 1;"


def test_cli_serve_refuses_a_missing_root_in_one_line(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--root", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "nowhere" in result.output
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(cli, ["serve", "--config", str(tmp_path / "none.yaml")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_a_bucket_is_served_as_the_folder_it_mirrors(client, site, s3_server) -> None:
    """The service over s3://... (the root object storage readers get) answers as over the
    local folder: days, a point, a time series, a tile, the STAC collection."""
    remote = RemoteRoot(s3_server.url("serve"), s3_server.storage_options())
    sync_all(site.root, remote)
    bucket = TestClient(create_app(s3_server.url("serve"),
                                   storage_options=s3_server.storage_options()))  # fmt: skip
    lon, lat = INSIDE[1]
    day = DAYS[1].isoformat()
    for path, params in [("/days", {}), ("/latest", {}), ("/stac/collection.json", {}),
                         ("/point", {"lon": lon, "lat": lat, "date": day}),
                         ("/timeseries", {"lon": lon, "lat": lat})]:  # fmt: skip
        here, there = client.get(path, params=params), bucket.get(path, params=params)
        assert there.status_code == here.status_code == 200, (path, there.text)
        assert there.json() == here.json(), path
    t = _tile_of(lon, lat, 9)
    tile = f"/tiles/soil_moisture/{day}/{t.z}/{t.x}/{t.y}.png"
    assert np.array_equal(_rgba(bucket.get(tile).content), _rgba(client.get(tile).content))
    assert bucket.get("/health").json()["status"] == "ok"
