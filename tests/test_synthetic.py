"""The synthetic world: determinism, completeness, physical consistency and its error model."""

from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import pytest

from gsm3_ops.grid import M09, M36, Window
from gsm3_ops.sources.base import DateNotServedError, Source
from gsm3_ops.sources.synthetic import SyntheticSource, site_depth_weight
from gsm3_ops.sources.synthetic_land import (
    F32,
    aspect_factor,
    soil_params,
    water_balance_step,
)
from gsm3_ops.variables import FEATURE_SETS, PRODUCT_UNITS, REGISTRY

FORCINGS, STATICS = FEATURE_SETS["gsm3"]
HIGHLANDS = M09.window_from_bbox(36.6, -3.6, 37.8, -2.6)  # Kilimanjaro and Meru, 14 x 12
COAST = M09.window_from_bbox(39.2, -4.7, 40.3, -3.7)  # Mombasa: land and sea
DEMO = M09.window_from_bbox(34, -5, 41, 1)  # the demo window, 86 x 76
D = dt.date


@pytest.fixture(scope="module")
def src() -> SyntheticSource:
    return SyntheticSource(seed=42)


@pytest.fixture(scope="module")
def highlands(src):
    """Six years over the highlands: forcing, truth, SMAP."""
    start, end = D(2002, 1, 1), D(2007, 12, 31)
    return (
        src.forcing(M09, HIGHLANDS, start, end),
        src.truth(M09, HIGHLANDS, start, end),
        src.smap(M09, HIGHLANDS, start, end),
    )


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def test_interface(src):
    assert isinstance(src, Source)
    assert src.name == "synthetic"
    assert src.provides == (*FORCINGS, *STATICS, "smap", "insitu")
    assert len(src.provides) == 37
    assert src.first_date() == D(2001, 1, 1)
    assert src.latest_date(D(2024, 5, 10)) == D(2024, 5, 9)
    assert SyntheticSource(latency_days=3).latest_date(D(2024, 5, 10)) == D(2024, 5, 7)
    assert src.version(D(2020, 1, 1)) == "synthetic-v2-seed42"


def test_pickles_without_its_caches():
    one = SyntheticSource(seed=5, latency_days=2)
    one.sites(M09, HIGHLANDS)  # fills the window cache
    two = pickle.loads(pickle.dumps(one))
    assert (two.seed, two.latency_days) == (5, 2)
    assert two.sites(M09, HIGHLANDS).equals(one.sites(M09, HIGHLANDS))


def test_forcing_variables_units_ranges_and_coordinates(src):
    ds = src.forcing(M09, COAST, D(2010, 3, 1), D(2010, 4, 30))
    assert tuple(ds.data_vars) == FORCINGS
    assert ds.sizes == {"time": 61, "y": COAST.n_rows, "x": COAST.n_cols}
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    assert ds.time.values[0] == np.datetime64("2010-03-01T00:00:00")
    np.testing.assert_array_equal(ds.y.values, M09.y_centres(COAST))
    np.testing.assert_array_equal(ds.x.values, M09.x_centres(COAST))
    np.testing.assert_array_equal(ds.row.values, np.arange(COAST.row0, COAST.row0 + COAST.n_rows))
    np.testing.assert_array_equal(ds.col.values, np.arange(COAST.col0, COAST.col0 + COAST.n_cols))
    land = M09.land_mask(COAST)
    assert 0 < land.sum() < land.size
    for name in FORCINGS:
        da, var = ds[name], REGISTRY[name]
        assert da.dims == ("time", "y", "x") and da.dtype == np.float32, name
        assert da.attrs["units"] == var.units, name
        assert not var.out_of_range(da.values).any(), name
        assert np.isnan(da.values[:, ~land]).all(), name
        if name not in ("lst_day", "lst_night"):  # the MODIS LSTs have cloud gaps
            assert np.isfinite(da.values[:, land]).all(), name
    assert (ds.d2m.values[:, land] <= ds.t2m.values[:, land]).all()
    gaps = np.isnan(ds.lst_day.values[:, land]).mean()
    assert 0.05 < gaps < 0.8


def test_statics_complete_in_range_and_consistent(src):
    ds = src.static(M09, COAST)
    land = M09.land_mask(COAST)
    assert tuple(ds.data_vars) == STATICS
    for name in STATICS:
        da, var = ds[name], REGISTRY[name]
        assert da.dims == ("y", "x") and da.dtype == np.float32, name
        assert da.attrs["units"] == var.units, name
        assert not var.out_of_range(da.values).any(), name
        assert np.isnan(da.values[~land]).all() and np.isfinite(da.values[land]).all(), name
    total = ds.sand + ds.clay + ds.silt
    assert (total.values[land] == 100).all()
    assert (ds.land_cover.values[land] == np.round(ds.land_cover.values[land])).all()


def test_terrain_has_the_volcanoes_and_snow_only_on_them(src, highlands):
    st = src.static(M09, HIGHLANDS)
    r, c = M09.lonlat_to_rowcol(np.array([37.35]), np.array([-3.07]))
    top = st.elevation.values[r[0] - HIGHLANDS.row0, c[0] - HIGHLANDS.col0]
    assert 5000 < top < 6200
    assert np.nanmax(st.slope.values) > 5
    swe = highlands[0].swe.values
    snowy = np.nanmax(swe, axis=0) > 0
    assert snowy.any() and (st.elevation.values[snowy] > 4500).all()


def test_subwindow_and_subrange_are_bit_identical():
    big, small = SyntheticSource(seed=7), SyntheticSource(seed=7)
    sub = Window(HIGHLANDS.row0 + 3, HIGHLANDS.col0 + 5, 5, 4)
    r, c = slice(3, 8), slice(5, 9)
    a = big.forcing(M09, HIGHLANDS, D(2003, 1, 1), D(2003, 3, 31))
    b = small.forcing(M09, sub, D(2003, 2, 10), D(2003, 2, 20))
    t = slice(40, 51)
    for name in FORCINGS:
        assert _same(a[name].values[t, r, c], b[name].values), name
    for fn in (big.truth, big.skin, big.smap):
        whole = fn(M09, HIGHLANDS, D(2003, 1, 1), D(2003, 3, 31)).values[t, r, c]
        part = getattr(small, fn.__name__)(M09, sub, D(2003, 2, 10), D(2003, 2, 20)).values
        assert _same(whole, part), fn.__name__
    sa, sb = big.static(M09, HIGHLANDS), small.static(M09, sub)
    for name in STATICS:
        assert _same(sa[name].values[r, c], sb[name].values), name
    # A single cell, on its own, far from the window's corner.
    one = Window(HIGHLANDS.row0 + 7, HIGHLANDS.col0 + 2, 1, 1)
    cell = SyntheticSource(seed=7).forcing(M09, one, D(2003, 3, 31), D(2003, 3, 31))
    for name in FORCINGS:
        assert _same(a[name].values[-1:, 7:8, 2:3], cell[name].values), name


def test_sites_and_insitu_do_not_depend_on_the_window(src):
    big = src.sites(M09, DEMO)
    sub = Window(DEMO.row0 + 10, DEMO.col0 + 20, 30, 25)
    part = SyntheticSource(seed=42).sites(M09, sub)
    inside = big[(big.row >= sub.row0) & (big.row < sub.row0 + 30)]
    inside = inside[(inside.col >= sub.col0) & (inside.col < sub.col0 + 25)]
    assert list(part.site) == list(inside.site) and len(part) > 0
    a = src.insitu(M09, DEMO, D(2004, 1, 1), D(2004, 2, 29)).sel(site=list(part.site))
    b = SyntheticSource(seed=42).insitu(M09, sub, D(2004, 2, 1), D(2004, 2, 29))
    assert _same(a.values[:, 31:], b.values)


def test_same_seed_same_output_and_other_seed_differs():
    args = (M09, HIGHLANDS, D(2005, 6, 1), D(2005, 6, 10))
    one, two, other = SyntheticSource(1), SyntheticSource(1), SyntheticSource(2)
    assert _same(one.forcing(*args).precip_mswep, two.forcing(*args).precip_mswep)
    assert _same(one.truth(*args), two.truth(*args))
    assert not _same(one.forcing(*args).precip_mswep, other.forcing(*args).precip_mswep)
    assert not _same(one.truth(*args), other.truth(*args))
    assert not _same(one.static(M09, HIGHLANDS).sand, other.static(M09, HIGHLANDS).sand)


def test_bimodal_rain_season(highlands):
    rain = highlands[0].precip_mswep
    by_month = rain.groupby("time.month").mean(...).values
    mam, jja, ond = by_month[2:5].mean(), by_month[5:8].mean(), by_month[9:12].mean()
    assert mam > 1.5 * jja and ond > 1.5 * jja
    assert by_month[0:2].mean() < mam


def test_truth_stays_within_texture_bounds_and_varies(src, highlands):
    st = src.static(M09, HIGHLANDS)
    truth = highlands[1]
    assert truth.name == "truth" and truth.attrs["units"] == PRODUCT_UNITS
    soil = soil_params(
        st.sand.values, st.clay.values, st.silt.values, st.bulk_density.values, st.ndvi.values
    )
    v = truth.values
    land = np.isfinite(st.elevation.values)
    assert (v[:, land] >= soil.res[land] - 1e-6).all()
    assert (v[:, land] <= soil.porosity[land] + 1e-6).all()
    std = np.nanstd(v, axis=0)[land]
    assert 0.02 < np.median(std) < 0.12


def test_smap_is_noisy_gappy_and_every_two_to_three_days(highlands):
    truth, smap = highlands[1].values, highlands[2].values
    assert highlands[2].name == "smap" and highlands[2].attrs["units"] == REGISTRY["smap"].units
    land = np.isfinite(truth[0])
    seen = np.isfinite(smap[:, land])
    assert 0.25 < seen.mean() < 0.5
    assert np.nanmin(smap) >= 0 and np.nanmax(smap) <= 0.6
    # Noise around each cell's own bias.
    diff = (smap - truth)[:, land][:, seen.any(axis=0)]
    resid = diff - np.nanmean(diff, axis=0)
    assert 0.03 < np.nanstd(resid) < 0.06
    # Revisit: most intervals between retrievals at a snow-free cell are 2 or 3 days.
    intervals = np.concatenate([np.diff(np.flatnonzero(s)) for s in seen.T if s.sum() > 10])
    assert np.isin(intervals, (2, 3)).mean() > 0.6


def test_the_skin_smap_senses_wets_more_and_dries_back_faster(src, highlands):
    st = src.static(M09, HIGHLANDS)
    truth = highlands[1].values
    skin = src.skin(M09, HIGHLANDS, D(2002, 1, 1), D(2007, 12, 31)).values
    land = np.isfinite(truth[0])
    t, s = truth[:, land], skin[:, land]
    soil = soil_params(
        *(st[n].values[land] for n in ("sand", "clay", "silt", "bulk_density", "ndvi"))
    )
    assert (s >= soil.res - 1e-6).all() and (s <= soil.porosity + 1e-6).all()
    # Larger day-to-day changes, about the same mean, closely but not fully correlated.
    ratio = np.std(np.diff(s, axis=0), axis=0) / np.std(np.diff(t, axis=0), axis=0)
    assert 1.8 < np.median(ratio) < 3.0
    assert abs(np.mean(s - t)) < 0.01
    r = np.array([np.corrcoef(t[:, k], s[:, k])[0, 1] for k in range(t.shape[1])])
    assert 0.75 < np.median(r) < 0.95
    # After a wet day the skin has lost a larger share of its gain two days later.
    wet = (np.diff(t, axis=0) > 0.05) & (np.diff(s, axis=0) > 0.05)  # skin not at porosity
    k, c = np.nonzero(wet[:-2])
    gain_t, gain_s = t[k + 1, c] - t[k, c], s[k + 1, c] - s[k, c]
    kept_t, kept_s = (t[k + 3, c] - t[k, c]) / gain_t, (s[k + 3, c] - s[k, c]) / gain_s
    assert k.size > 50 and np.median(kept_s) < np.median(kept_t) - 0.1


def test_smap_follows_the_skin_rather_than_the_truth(src, highlands):
    truth, smap = highlands[1].values, highlands[2].values
    skin = src.skin(M09, HIGHLANDS, D(2002, 1, 1), D(2007, 12, 31)).values
    closer = []
    for k in np.flatnonzero(np.isfinite(smap).sum(axis=0).ravel() > 100):
        r, c = np.unravel_index(k, smap.shape[1:])
        ok = np.isfinite(smap[:, r, c])
        cs, ct = (np.corrcoef(smap[ok, r, c], v[ok, r, c])[0, 1] for v in (skin, truth))
        closer.append(cs > ct)
    assert len(closer) > 50 and np.mean(closer) > 0.9


def test_each_site_reads_its_own_depth(src):
    start, end = D(2003, 1, 1), D(2006, 12, 31)
    ins = src.insitu(M09, DEMO, start, end)
    r, c = ins.row.values - DEMO.row0, ins.col.values - DEMO.col0
    truth = src.truth(M09, DEMO, start, end).values[:, r, c].T
    skin = src.skin(M09, DEMO, start, end).values[:, r, c].T
    # Day-to-day changes remove the slow site noise; regress the site's on the skin's.
    dy, dt_, ds = (np.diff(v, axis=1) for v in (ins.values, truth, skin))
    slopes = []
    for y, t, s in zip(dy, dt_, ds, strict=True):
        ok = np.isfinite(y)
        a = np.c_[t[ok], s[ok] - t[ok]]
        slopes.append(np.linalg.lstsq(a, y[ok], rcond=None)[0][1])
    weight = site_depth_weight(42, ins.row.values, ins.col.values)
    assert len(slopes) > 20 and 0.15 < np.std(weight) < 0.45
    assert np.corrcoef(slopes, weight)[0, 1] > 0.8


def test_site_density_and_table(src):
    sites = src.sites(M09, DEMO)
    n_land = M09.land_mask(DEMO).sum()
    assert n_land / 250 < len(sites) < n_land / 100
    assert list(sites.columns) == ["site", "lat", "lon", "row", "col", "network", "region"]
    assert list(sites.site) == sorted(sites.site) and sites.site.is_unique
    assert (sites.network == "SYNTHETIC").all() and (sites.region == "Africa_Equatorial").all()
    lon, lat = M09.rowcol_to_lonlat(sites.row.to_numpy(), sites.col.to_numpy())
    np.testing.assert_allclose(sites.lat, lat)
    np.testing.assert_allclose(sites.lon, lon)


def test_insitu_is_truth_plus_a_site_bias(src):
    start, end = D(2003, 1, 1), D(2004, 12, 31)
    ins = src.insitu(M09, DEMO, start, end)
    assert ins.dims == ("site", "time") and ins.name == "insitu"
    assert ins.attrs["units"] == REGISTRY["insitu"].units
    for coord in ("lat", "lon", "row", "col", "network", "region"):
        assert ins[coord].dims == ("site",)
    truth = src.truth(M09, DEMO, start, end).values
    at_sites = truth[:, ins.row.values - DEMO.row0, ins.col.values - DEMO.col0].T
    diff = ins.values - at_sites
    bias, noise = np.nanmean(diff, axis=1), np.nanstd(diff, axis=1)
    assert 0.015 < np.std(bias) < 0.05
    assert 0.01 < np.median(noise) < 0.035
    assert 0.03 < np.isnan(ins.values).mean() < 0.3
    assert np.nanmin(ins.values) >= 0 and np.nanmax(ins.values) <= 0.6


def test_precipitation_products_agree_but_differ(highlands):
    ds = highlands[0]
    mswep, imerg, era5 = (
        ds[n].values.ravel() for n in ("precip_mswep", "precip_imerg", "precip_era5")
    )
    ok = np.isfinite(mswep)
    mswep, imerg, era5 = mswep[ok], imerg[ok], era5[ok]
    for other in (imerg, era5):
        r = np.corrcoef(mswep, other)[0, 1]
        assert 0.6 < r < 0.99
    assert (era5 > 0.1).mean() > 1.5 * (mswep > 0.1).mean()  # ERA5 drizzles
    assert era5.max() < mswep.max()  # and damps the peaks
    assert ((imerg > 0) & (mswep == 0)).any()  # false alarms
    assert ((imerg == 0) & (mswep > 0)).any()  # missed light rain


def _drydown(sand, clay, slope=0.0, aspect_cos=0.0, days=6) -> tuple[float, float]:
    """Start saturated, no rain, fixed PET: (loss of water, loss of available water)."""
    silt = 100 - sand - clay
    soil = soil_params(
        np.array([sand]), np.array([clay]), np.array([silt]), np.array([1.45]), np.array([0.45])
    )
    pet_z = F32(5.0 / 100) * aspect_factor(np.array([slope]), np.array([aspect_cos])).astype(F32)
    theta, green = soil.porosity.copy(), np.array([0.5], dtype=F32)
    start = theta.copy()
    for _ in range(days):
        theta, green = water_balance_step(theta, green, np.zeros(1, F32), pet_z, soil)
    return float(start[0] - theta[0]), float((start - theta)[0] / (start - soil.res)[0])


def test_sandy_soil_and_equator_facing_slopes_dry_faster():
    sandy, clayey = _drydown(sand=85, clay=5), _drydown(sand=20, clay=45)
    assert sandy[1] > clayey[1]  # a larger share of its water gone
    pole, equator = (
        _drydown(40, 20, slope=10, aspect_cos=1),
        _drydown(40, 20, slope=10, aspect_cos=-1),
    )
    assert equator[0] > pole[0]


@pytest.mark.parametrize("method", ["forcing", "smap", "truth", "skin", "insitu"])
def test_bad_ranges_are_refused(src, method):
    fn = getattr(src, method)
    with pytest.raises(DateNotServedError, match="2005-01-02"):
        fn(M09, HIGHLANDS, D(2005, 1, 2), D(2005, 1, 1))
    with pytest.raises(DateNotServedError, match="2000-12-31"):
        fn(M09, HIGHLANDS, D(2000, 12, 31), D(2001, 1, 5))


def test_works_on_the_36_km_grid():
    w = M36.window_from_bbox(36, -2, 38, 0)
    ds = SyntheticSource().forcing(M36, w, D(2001, 1, 1), D(2001, 1, 3))
    assert ds.sizes["y"] == w.n_rows and np.isfinite(ds.t2m.values).any()
