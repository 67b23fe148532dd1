"""The web map at ``/`` in a real browser (Debian's chromium driven by playwright), against
the real service (``create_app``) over the root the real publisher wrote for the service's
tests (``tests/serve_site.py``).

Checked: the page asks nothing of any host but the service (every other request fails the
test), the latest day's tiles are drawn in the layer's palette inside the map, the bundled
coastlines and borders load, a click on land draws the cell's time series (one vertex per
published day) with its values, and the layer switch and the date slider ask for the tiles of
the new layer and day.

``GSM3_WEBMAP_SCREENSHOT=docs/img/webmap.png`` also saves the page after the click (the
docs' screenshot).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.serve_site import BUNDLE, Site, build_site

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None,
    reason="Debian's chromium (/usr/bin/chromium) is not installed: apt-get install chromium",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TIMEOUT_MS = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return build_site(tmp_path_factory.mktemp("webmap"))


def _land_cell(site: Site) -> tuple[float, float]:
    """(lon, lat) of a cell with data: the window's centre (the sea corner is elsewhere)."""
    w = site.window
    row, col = w.row0 + w.n_rows // 2, w.col0 + w.n_cols // 2
    lon, lat = site.grid.rowcol_to_lonlat(np.array([row]), np.array([col]))
    return float(lon[0]), float(lat[0])


@pytest.fixture(scope="module")
def base_url(site) -> Iterator[str]:
    import uvicorn

    from gsm3_ops.serve.app import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(site.root), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class MapPage:
    """A page on the map that fails any request to another host and logs tile requests."""

    def __init__(self, browser, base_url: str, width: int = 1200, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.foreign: list[str] = []
        self.tiles: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", self._request)
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(base_url)
        self.wait_idle()

    def _route(self, route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.hostname not in LOOPBACK and parts.scheme not in ("data", "blob"):
            self.foreign.append(request.url)
        if "/tiles/" in parts.path:
            self.tiles.append(parts.path)

    def wait_idle(self) -> None:
        """Until the map has its style, its sources and every tile in view."""
        self.page.wait_for_function(
            "window.gsm3 && gsm3.map.loaded() && gsm3.map.areTilesLoaded()"
            " && gsm3.map.isSourceLoaded('coastlines') && gsm3.map.isSourceLoaded('borders')",
            timeout=TIMEOUT_MS,
        )

    def close(self) -> None:
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        assert not self.errors, f"errors on the page: {self.errors}"
        self.context.close()


@pytest.fixture
def map_page(browser, base_url) -> Iterator[MapPage]:
    page = MapPage(browser, base_url)
    yield page
    page.close()


def _ramp(legend: dict) -> np.ndarray:
    """The legend's colour ramp as RGB rows: its stops and 15 steps between each two."""
    stops = [s["color"] if isinstance(s, dict) else s[1] for s in legend["stops"]]
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in stops], float)
    steps = np.linspace(0, 1, 16)[:, None]
    return np.vstack([a + steps * (b - a) for a, b in itertools.pairwise(rgb)])


def _palette_share(png: bytes, ramp: np.ndarray) -> tuple[float, int]:
    """Share of the image's pixels (every third row and column) within a small distance of
    the ramp, and how many distinct ramp colours they take."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32)
    pixels = image[::3, ::3].reshape(-1, 3)
    distance = np.linalg.norm(pixels[:, None, :] - ramp[None, :, :], axis=2)
    near = distance.min(axis=1) < 12
    return float(near.mean()), len(np.unique(distance[near].argmin(axis=1)))


def test_map_draws_the_latest_day_in_its_palette_over_bundled_lines(map_page, base_url, site):
    page = map_page.page
    latest = site.days[-1].isoformat()
    assert page.locator("#day-value").inner_text() == latest
    assert map_page.tiles and all(
        re.fullmatch(rf"/tiles/soil_moisture/{latest}/\d+/\d+/\d+\.png", t) for t in map_page.tiles
    ), map_page.tiles
    assert not [u for u in map_page.failed if "/tiles/" not in u], map_page.failed
    assert "Soil moisture" in page.locator("#legend").inner_text()

    png = page.locator("#map").screenshot()
    share, colours = _palette_share(png, _ramp(_get_json(f"{base_url}legend/soil_moisture")))
    assert share > 0.25 and colours >= 5, (share, colours)
    # No link to another host either (attribution included).
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    assert all(urlsplit(h).hostname in LOOPBACK for h in hrefs if h.startswith("http")), hrefs


def test_click_on_land_draws_its_time_series(map_page, site):
    page = map_page.page
    lon, lat = _land_cell(site)
    x, y = page.evaluate("([lon, lat]) => { const p = gsm3.map.project([lon, lat]);"
                         " return [p.x, p.y]; }", [lon, lat])  # fmt: skip
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    line = page.locator("#chart svg path.line")
    line.wait_for(timeout=TIMEOUT_MS)
    # One vertex per published day; the unpublished days between two of them break the line.
    path = line.get_attribute("d")
    assert len(re.findall(r"[ML]\s*[-\d.]+\s+[-\d.]+", path)) == len(site.days)
    assert path.count("M") == 2
    assert page.locator("#chart svg circle.dot").count() == len(site.days)
    page.locator("#point-values dd").first.wait_for(timeout=TIMEOUT_MS)
    values = page.locator("#point-values").inner_text()
    assert "Soil moisture" in values and "m³ m⁻³" in values and BUNDLE in values
    assert f"({len(site.days)} days)" in page.locator("#point-hint").inner_text()

    target = os.environ.get("GSM3_WEBMAP_SCREENSHOT")  # the docs' screenshot: map, legend, chart
    if target:
        map_page.wait_idle()
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=target)


def test_layer_switch_and_date_slider_ask_for_their_tiles(map_page, site):
    page = map_page.page
    latest, previous = site.days[-1].isoformat(), site.days[-2].isoformat()

    def asks(layer: str, day: str):
        pattern = re.compile(rf"/tiles/{layer}/{day}/\d+/\d+/\d+\.png$")
        return page.expect_request(lambda r: bool(pattern.search(urlsplit(r.url).path)),
                                   timeout=TIMEOUT_MS)  # fmt: skip

    with asks("quality_flag", latest):
        page.select_option("#layer", "quality_flag")
    page.locator("#legend .legend-swatches").wait_for(timeout=TIMEOUT_MS)
    assert "Quality flag" in page.locator("#legend").inner_text()

    with asks("quality_flag", previous):
        page.focus("#day")
        page.keyboard.press("ArrowLeft")
    assert page.locator("#day-value").inner_text() == previous
    map_page.wait_idle()

    with asks("soil_moisture_anomaly", previous):
        page.select_option("#layer", "soil_moisture_anomaly")
    map_page.wait_idle()


def test_map_fits_a_phone(browser, base_url):
    phone = MapPage(browser, base_url, width=390, height=800)
    try:
        page = phone.page
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone: {width} px"
        map_box = page.locator("#map").bounding_box()
        panel_box = page.locator(".panel").bounding_box()
        assert map_box["width"] >= 380 and map_box["height"] >= 300
        assert panel_box["y"] >= map_box["y"] + map_box["height"] - 1  # the panel is below
        for control in ("#layer", "#day"):
            label = page.locator(f"label[for='{control[1:]}']")
            assert label.is_visible() and page.locator(control).is_visible()
    finally:
        phone.close()
