"""The published layers and quality-flag bits: one table that the Zarr, COG and STAC writers
share, so that a name, unit, data type or no-data value is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gsm3_ops import variables

FLAG_FILL = 255  # no product (ocean, outside the land mask, or a day not published)
FLAG_GAP_FILLED = 1  # a forcing of the day was missing and replaced by its training mean
FLAG_PROVISIONAL = 2  # a forcing of the day came from a provisional stream (ERA5T, IMERG early)
FLAG_FROZEN = 4  # stl1 or t2m of the day below the freezing threshold
FLAG_DRY_NORTH_SLOPE = 8  # poleward-facing slope with a dry long-term SMAP mean
FLAG_PERMAFROST = 16  # Arctic permafrost regime (latitude and long-term LST)
# Data integration (DI bundles only): no SMAP retrieval within the bundle's maximum age was
# absorbed, so the value is the model's open loop; and the day's newest expected retrieval
# (day - latency) was not in the cube when the day ran (late or missing), on every cell.
FLAG_NO_RETRIEVAL = 32
FLAG_RETRIEVAL_LATE = 64

QUALITY_FLAGS: dict[int, str] = {
    FLAG_GAP_FILLED: "forcing_gap_filled",
    FLAG_PROVISIONAL: "provisional_inputs",
    FLAG_FROZEN: "frozen_soil",
    FLAG_DRY_NORTH_SLOPE: "dry_north_facing_slope",
    FLAG_PERMAFROST: "arctic_permafrost",
    FLAG_NO_RETRIEVAL: "no_recent_smap_retrieval",
    FLAG_RETRIEVAL_LATE: "smap_retrieval_late",
}
FLAG_VALID_MAX = sum(QUALITY_FLAGS)  # 127: every valid value is below the fill value


@dataclass(frozen=True)
class Layer:
    """One published layer.

    ``name`` is the Zarr variable and STAC asset key, ``code`` the COG file-name code.
    ``nodata`` is NaN for float layers; ``resampling`` is the COG overview resampling.
    """

    name: str
    code: str
    dtype: str
    nodata: float
    units: str
    long_name: str
    resampling: str = "average"
    standard_name: str | None = None
    valid_range: tuple[float, float] | None = None

    @property
    def is_flag(self) -> bool:
        """Whether this is the bit-field quality flag."""
        return self.dtype == "uint8"

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """An array of no-data values of this layer's type."""
        return np.full(shape, self.nodata, dtype=self.dtype)

    def cf_attrs(self) -> dict[str, object]:
        """CF-1.8 variable attributes (the grid mapping is added by the Zarr writer)."""
        attrs: dict[str, object] = {"long_name": self.long_name}
        if self.standard_name:
            attrs["standard_name"] = self.standard_name
        if self.is_flag:
            attrs["flag_masks"] = np.array(list(QUALITY_FLAGS), dtype=np.uint8)
            attrs["flag_meanings"] = " ".join(QUALITY_FLAGS.values())
            attrs["valid_range"] = np.array([0, FLAG_VALID_MAX], dtype=np.uint8)
        else:
            attrs["units"] = self.units
        if self.valid_range is not None:
            attrs["valid_min"], attrs["valid_max"] = self.valid_range
        return attrs


_SM = variables.PRODUCT_UNITS
LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer(
            "soil_moisture", "sm", "float32", np.nan, _SM,
            "surface soil moisture 0-5 cm, ensemble mean",
            standard_name="volume_fraction_of_condensed_water_in_soil",
            valid_range=variables.PRODUCT_RANGE,
        ),
        Layer(
            "soil_moisture_sd", "sd", "float32", np.nan, _SM,
            "surface soil moisture 0-5 cm, ensemble standard deviation (spread)",
        ),
        Layer(
            "soil_moisture_anomaly", "anom", "float32", np.nan, _SM,
            "surface soil moisture 0-5 cm minus its day-of-year climatological mean",
        ),
        Layer(
            "soil_moisture_percentile", "pct", "float32", np.nan, "%",
            "percentile of the day's soil moisture within its day-of-year climatology",
            valid_range=(0.0, 100.0),
        ),
        Layer(
            "quality_flag", "flag", "uint8", FLAG_FILL, "1", "quality flag (bit field)",
            resampling="nearest",
        ),
    )
}  # fmt: skip

# Layers published as COGs (and STAC assets) only, on the days that have them: a DI bundle's
# open-loop value. Not in the product Zarr, its time-series copy or the service (yet).
COG_ONLY_LAYERS: dict[str, Layer] = {
    "soil_moisture_open_loop": Layer(
        "soil_moisture_open_loop", "ol", "float32", np.nan, _SM,
        "surface soil moisture 0-5 cm, ensemble mean of the DI model run without retrievals "
        "(open loop)", valid_range=variables.PRODUCT_RANGE,
    ),
}  # fmt: skip


def layer_spec(name: str) -> Layer:
    """The layer called ``name``, a product layer or a COG-only one."""
    if name in LAYERS:
        return LAYERS[name]
    return COG_ONLY_LAYERS[name]


# What the model produces; the anomaly and percentile are derived from the product history.
BASE_LAYERS = ("soil_moisture", "soil_moisture_sd", "quality_flag")
