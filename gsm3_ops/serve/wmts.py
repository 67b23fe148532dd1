"""The WMTS 1.0.0 capabilities document (RESTful encoding, GoogleMapsCompatible tile matrices).

One layer per product layer, each with a ``Time`` dimension listing the published days
(default: the latest), a PNG legend link and the tile URL template served by
:mod:`gsm3_ops.serve.tiles`.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import morecantile

from gsm3_ops.publish.layers import LAYERS
from gsm3_ops.publish.stac import lonlat_bbox
from gsm3_ops.serve.store import Domain

WMTS_NS = "http://www.opengis.net/wmts/1.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
MATRIX_SET = "GoogleMapsCompatible"
MAX_WMTS_ZOOM = 12  # 9 km cells: zoom 12 already draws one cell over ~230 tile pixels
_TMS = morecantile.tms.get("WebMercatorQuad")

ET.register_namespace("", WMTS_NS)
ET.register_namespace("ows", OWS_NS)
ET.register_namespace("xlink", XLINK_NS)


def _w(tag: str) -> str:
    return f"{{{WMTS_NS}}}{tag}"


def _o(tag: str) -> str:
    return f"{{{OWS_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _matrix_set(contents: ET.Element) -> None:
    tms = _sub(contents, _w("TileMatrixSet"))
    _sub(tms, _o("Identifier"), MATRIX_SET)
    _sub(tms, _o("SupportedCRS"), "urn:ogc:def:crs:EPSG::3857")
    _sub(tms, _w("WellKnownScaleSet"), "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    for z in range(MAX_WMTS_ZOOM + 1):
        m = _TMS.matrix(z)
        tm = _sub(tms, _w("TileMatrix"))
        _sub(tm, _o("Identifier"), str(z))
        _sub(tm, _w("ScaleDenominator"), repr(m.scaleDenominator))
        _sub(tm, _w("TopLeftCorner"), " ".join(repr(v) for v in m.pointOfOrigin))
        _sub(tm, _w("TileWidth"), str(m.tileWidth))
        _sub(tm, _w("TileHeight"), str(m.tileHeight))
        _sub(tm, _w("MatrixWidth"), str(m.matrixWidth))
        _sub(tm, _w("MatrixHeight"), str(m.matrixHeight))


def capabilities(base: str, days: Sequence[dt.date], domain: Domain | None) -> bytes:
    """The capabilities XML; tile and legend URLs start with ``base`` (the service's URL)."""
    root = ET.Element(_w("Capabilities"), {"version": "1.0.0"})
    ident = _sub(root, _o("ServiceIdentification"))
    _sub(ident, _o("Title"), "GSM3 daily surface soil moisture")
    _sub(ident, _o("ServiceType"), "OGC WMTS")
    _sub(ident, _o("ServiceTypeVersion"), "1.0.0")
    contents = _sub(root, _w("Contents"))
    west, south, east, north = (
        lonlat_bbox(domain.grid, domain.window) if domain else [-180.0, -85.05, 180.0, 85.05]
    )
    for name, layer in LAYERS.items():
        el = _sub(contents, _w("Layer"))
        _sub(el, _o("Title"), layer.long_name)
        _sub(el, _o("Identifier"), name)
        box = _sub(el, _o("WGS84BoundingBox"))
        _sub(box, _o("LowerCorner"), f"{west} {max(south, -85.05)}")
        _sub(box, _o("UpperCorner"), f"{east} {min(north, 85.05)}")
        style = _sub(el, _w("Style"), isDefault="true")
        _sub(style, _o("Identifier"), "default")
        _sub(style, _w("LegendURL"), format="image/png",
             **{f"{{{XLINK_NS}}}href": f"{base}/legend/{name}?format=png"})  # fmt: skip
        _sub(el, _w("Format"), "image/png")
        dim = _sub(el, _w("Dimension"))
        _sub(dim, _o("Identifier"), "Time")
        _sub(dim, _w("Default"), days[-1].isoformat() if days else "latest")
        for day in days:
            _sub(dim, _w("Value"), day.isoformat())
        if not days:
            _sub(dim, _w("Value"), "latest")
        link = _sub(el, _w("TileMatrixSetLink"))
        _sub(link, _w("TileMatrixSet"), MATRIX_SET)
        template = f"{base}/wmts/{name}/{{Time}}/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.png"
        _sub(el, _w("ResourceURL"), format="image/png", resourceType="tile", template=template)
    _matrix_set(contents)
    _sub(root, _w("ServiceMetadataURL"),
         **{f"{{{XLINK_NS}}}href": f"{base}/wmts/WMTSCapabilities.xml"})  # fmt: skip
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
