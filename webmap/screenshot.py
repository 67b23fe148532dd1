"""The docs' screenshot of the web map (docs/img/webmap.png) over a real publish root.

    .venv/bin/python webmap/screenshot.py gsm3-demo/publish docs/img/webmap.png [LON LAT]

Starts ``gsm3-ops serve`` on a loopback port, opens the map in Debian's Chromium with
Playwright (as tests/test_webmap.py does), clicks the point (default 37.3 E, 1.2 S, inside
the demo window) and saves the page once the series chart and the tiles are drawn.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_webmap import ARGS, CHROMIUM

PORT = 8097
READY = "window.gsm3 && gsm3.map.loaded() && gsm3.map.areTilesLoaded()"
PROJECT = "([lon, lat]) => { const p = gsm3.map.project([lon, lat]); return [p.x, p.y]; }"


def _wait_for_service(base: str) -> None:
    for _ in range(150):
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the service at {base} did not answer")


def main(root: str, out: str, lon: float = 37.3, lat: float = -1.2) -> None:
    """Serve ``root``, click (``lon``, ``lat``) on its map and save the page to ``out``."""
    exe = Path(sys.executable).with_name("gsm3-ops")
    server = subprocess.Popen([str(exe), "serve", "--root", root, "--port", str(PORT)])
    base = f"http://127.0.0.1:{PORT}"
    try:
        _wait_for_service(base)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            page.goto(base + "/")
            page.wait_for_function(READY, timeout=30_000)
            x, y = page.evaluate(PROJECT, [lon, lat])
            box = page.locator("#map").bounding_box()
            page.mouse.click(box["x"] + x, box["y"] + y)
            page.locator("#chart svg path.line").wait_for(timeout=30_000)
            page.locator("#point-values dd").first.wait_for(timeout=30_000)
            page.wait_for_function(READY, timeout=30_000)
            page.screenshot(path=out)
            browser.close()
    finally:
        server.terminate()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(float, sys.argv[3:5]))
