"""The variable registry and the gsm3 feature set."""

from __future__ import annotations

import numpy as np
import pytest

from gsm3_ops import variables
from gsm3_ops.variables import REGISTRY, UnknownVariableError, feature_set, get


def test_gsm3_feature_set_has_18_forcings_and_17_statics() -> None:
    forcings, statics = feature_set("gsm3")
    assert len(forcings) == 18 and len(statics) == 17
    assert len(set(forcings) | set(statics)) == 35
    assert {"precip_mswep", "precip_imerg", "precip_era5"} <= set(forcings)
    assert {"lst_day", "lst_night", "albedo_bsa", "albedo_wsa", "swe", "stl1"} <= set(forcings)
    assert {"aspect_cos", "sand", "clay", "silt", "bulk_density", "smap_mean"} <= set(statics)
    assert all(get(n).kind == "forcing" for n in forcings)
    assert all(get(n).kind == "static" for n in statics)
    assert variables.TARGETS == ("smap", "insitu")


def test_every_entry_has_units_range_source_and_a_known_transform() -> None:
    for v in REGISTRY.values():
        assert v.units and v.source and v.long_name
        assert v.valid_min < v.valid_max
        assert v.transform in ("none", "log_sqrt")
    assert get("smap").units == get("insitu").units == "m3 m-3"
    assert variables.PRODUCT_RANGE == (0.0, 0.7)


def test_precipitation_transform_and_range_check() -> None:
    p = get("precip_imerg")
    assert p.transform == "log_sqrt" and p.aggregation == "sum"
    np.testing.assert_allclose(p.apply_transform(np.array([0.0, 4.0])), np.log10([0.1, 2.1]))
    assert get("t2m").out_of_range(np.array([150.0, 290.0, np.nan])).tolist() == [
        True,
        False,
        False,
    ]


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(UnknownVariableError, match="unknown variable 'soil'"):
        get("soil")
    with pytest.raises(UnknownVariableError, match="unknown feature set 'x'"):
        feature_set("x")
