"""Colour scales of the published layers, shared by the tiles and the legends.

Soil moisture uses the quick-look's scale (``YlGnBu``, 0 to 0.5 m3 m-3, from
:mod:`gsm3_ops.publish.quicklook`) so that tiles and quick-looks read alike; the anomaly a
diverging brown-to-teal scale centred on zero; the percentile and the spread sequential
scales; the quality flag one categorical colour per bit (a cell takes its highest set bit's
colour, a cell with no bit set the "no flag" colour).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from rio_tiler.colormap import cmap as rio_cmaps

from gsm3_ops.publish import quicklook
from gsm3_ops.publish.layers import FLAG_VALID_MAX, LAYERS, QUALITY_FLAGS, Layer

Rgba = tuple[int, int, int, int]
NO_FLAG_COLOUR = "#1a9850"
BIT_COLOURS = {1: "#fdae61", 2: "#abd9e9", 4: "#4575b4", 8: "#d73027", 16: "#762a83",
               32: "#bababa", 64: "#f1b6da"}  # fmt: skip
N_STOPS = 11


def _hex(rgba: Rgba) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])


def _rgba(colour: str) -> Rgba:
    value = colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16), 255)


def flag_colour(value: int) -> str:
    """The colour of a quality-flag value: its highest set bit's, or the no-flag colour."""
    if value == 0:
        return NO_FLAG_COLOUR
    return BIT_COLOURS[1 << (int(value).bit_length() - 1)]


@dataclass(frozen=True)
class Palette:
    """A layer's colour scale: continuous (``cmap`` from ``vmin`` to ``vmax``) or, for the
    quality flag, categorical."""

    layer: Layer
    cmap: str | None
    vmin: float
    vmax: float
    kind: str  # sequential, diverging or categorical

    @cached_property
    def colormap(self) -> dict[int, Rgba]:
        """The 256-entry rio-tiler colour map of the rendered byte values."""
        if self.cmap is None:
            table: dict[int, Rgba] = dict.fromkeys(range(256), (0, 0, 0, 0))
            for value in range(FLAG_VALID_MAX + 1):
                table[value] = _rgba(flag_colour(value))
            return table
        return {k: tuple(int(c) for c in v) for k, v in rio_cmaps.get(self.cmap).items()}

    def to_bytes(self, data: np.ndarray) -> np.ndarray:
        """Values as the byte values the colour map colours (NaN and out-of-range clipped)."""
        if self.cmap is None:
            return np.asarray(data).astype(np.uint8)
        scaled = (np.asarray(data, dtype=np.float64) - self.vmin) / (self.vmax - self.vmin)
        return np.round(np.clip(np.nan_to_num(scaled), 0.0, 1.0) * 255).astype(np.uint8)

    def legend(self) -> dict[str, Any]:
        """The legend as JSON: units, range and colour stops (or classes, for the flag)."""
        doc: dict[str, Any] = {
            "layer": self.layer.name,
            "code": self.layer.code,
            "units": self.layer.units,
            "long_name": self.layer.long_name,
            "type": self.kind,
        }
        if self.cmap is None:
            doc["min"], doc["max"] = 0, FLAG_VALID_MAX
            doc["classes"] = [{"value": 0, "bit": None, "label": "no_flag",
                               "color": NO_FLAG_COLOUR}] + [
                {"value": bit, "bit": bit, "label": label, "color": BIT_COLOURS[bit]}
                for bit, label in QUALITY_FLAGS.items()
            ]  # fmt: skip
            doc["rule"] = "a cell takes the colour of its highest set bit"
            return doc
        values = np.linspace(self.vmin, self.vmax, N_STOPS)
        colours = self.to_bytes(values)
        doc["min"], doc["max"], doc["palette"] = self.vmin, self.vmax, self.cmap
        doc["stops"] = [
            {"value": round(float(v), 6), "color": _hex(self.colormap[int(b)])}
            for v, b in zip(values, colours, strict=True)
        ]
        return doc


PALETTES: dict[str, Palette] = {
    "soil_moisture": Palette(LAYERS["soil_moisture"], quicklook.CMAP.lower(), quicklook.VMIN,
                             quicklook.VMAX, "sequential"),
    "soil_moisture_sd": Palette(LAYERS["soil_moisture_sd"], "purples", 0.0, 0.1, "sequential"),
    "soil_moisture_anomaly": Palette(LAYERS["soil_moisture_anomaly"], "brbg", -0.15, 0.15,
                                     "diverging"),
    "soil_moisture_percentile": Palette(LAYERS["soil_moisture_percentile"], "viridis", 0.0,
                                        100.0, "sequential"),
    "quality_flag": Palette(LAYERS["quality_flag"], None, 0, FLAG_VALID_MAX, "categorical"),
}  # fmt: skip
