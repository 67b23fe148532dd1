"""The ``synthetic`` source: a deterministic world on the real grid, the embedded demo's only
source. It serves the 18 ``gsm3`` forcings, the 17 statics, a SMAP-like and an in-situ target,
and the hidden truth they all derive from.

The physics lives in :mod:`gsm3_ops.sources.synthetic_world`; this module makes the observed
products (precipitation products, MODIS-like LST and albedo, SMAP, sites) and serves them as
xarray objects. See ``docs/synthetic-world.md``.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.config import BoxConfig
from gsm3_ops.grid import EaseGrid, Window
from gsm3_ops.regions import region_of
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.synthetic_world import (
    EPOCH,
    F32,
    FIRST_SERVED,
    Block,
    World,
    hash_keys,
    normal,
    normal_fast,
    uniform,
)
from gsm3_ops.variables import FEATURE_SETS, PRODUCT_RANGE, PRODUCT_UNITS, REGISTRY

FORCINGS, STATICS = FEATURE_SETS["gsm3"]
VERSION = "synthetic-v2"  # v2: SMAP senses a faster skin, sites their own depth
REFERENCE_PERIOD = (dt.date(2015, 1, 1), dt.date(2019, 12, 31))  # for the long-term means
LONG_TERM_MEANS = {
    "lst_day_mean": "lst_day",
    "lst_night_mean": "lst_night",
    "albedo_bsa_mean": "albedo_bsa",
    "albedo_wsa_mean": "albedo_wsa",
    "smap_mean": "smap",
    "precip_mean": "precip_mswep",
}
GAP_FREE = {"lst_day": "lst_day_clear", "lst_night": "lst_night_clear", "smap": "smap_expected"}
SITE_DENSITY = 1 / 150  # in-situ sites per land cell
OBS_MAX = 0.6  # SMAP and in-situ values are clipped to [0, OBS_MAX]
_CACHED_WINDOWS = 4
# The synthetic sites' ``region``: Africa split into North, Equatorial and South (first box
# wins, edges included, so the equatorial band is the open interval between the other two).
SITE_REGIONS = {
    "Africa_North": BoxConfig(lon_min=-20.0, lat_min=1.8, lon_max=55.0, lat_max=19.3),
    "Africa_South": BoxConfig(lon_min=-20.0, lat_min=-38.9, lon_max=55.0, lat_max=-22.0),
    "Africa_Equatorial": BoxConfig(lon_min=-20.0, lat_min=-22.0, lon_max=55.0, lat_max=1.8),
}


# ------------------------------------------------------------------ observed products


class Products:
    """The observable variables of one block of days, computed on demand and cached."""

    def __init__(self, world: World, block: Block) -> None:
        self.w, self.b = world, block
        self.days = block.days
        self._cache: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray:
        """(days, rows, cols) float32 values of a forcing, ``smap`` or ``truth``."""
        if name not in self._cache:
            self._cache[name] = getattr(self, f"_{name}")()
        return self._cache[name]

    def _wx(self, name: str) -> np.ndarray:
        return self.b.weather[name]

    def _field(self, stream: str, spacing: float, dt_days: int = 1) -> np.ndarray:
        return self.w.field(stream, spacing, dt_days, self.days)

    def _truth(self) -> np.ndarray:
        return self.b.truth

    def _skin(self) -> np.ndarray:
        return self.w.skin_layer(self.b.truth, self.b.skin_departure)

    def _rel(self) -> np.ndarray:
        """Relative saturation 0..1 of the truth: what drives humidity, LST and albedo."""
        s = self.w.soil
        return (self.b.truth - s.res) / (s.porosity - s.res)

    def _precip_mswep(self) -> np.ndarray:
        # A merged gauge-satellite-reanalysis product: the truth with modest noise.
        r = self._wx("rain") * np.exp(F32(0.12) * self._field("mswep", 0.5) - F32(0.0072))
        return np.where(r >= F32(0.1), r, F32(0.0))

    def _precip_imerg(self) -> np.ndarray:
        # Satellite-only: multiplicative error, light rain missed, occasional false alarms.
        rain = self._wx("rain")
        error = np.minimum(self._field("imerg", 0.25), F32(2.0))  # no absurd peaks
        r = rain * np.exp(F32(0.45) * error - F32(0.1))
        r = np.where((rain < F32(2.0)) & (self._field("imerg_miss", 0.25) < F32(0.2)), F32(0), r)
        alarm = self._field("imerg_false_alarm", 0.5)
        r = np.where((rain == 0) & (alarm > F32(2.2)), F32(0.5) + F32(4.0) * (alarm - F32(2.2)), r)
        return np.where(r >= F32(0.1), r, F32(0.0))

    def _precip_era5(self) -> np.ndarray:
        # Reanalysis: drizzle on too many days from the smooth synoptic field, damped peaks.
        drizzle = np.clip((self._wx("z_syn") + F32(1.2)) / F32(2.4), 0, 1) ** 2
        r = F32(0.9) * self._wx("rain") ** F32(0.85) + F32(1.2) * self._wx("clim") * drizzle
        return np.where(r >= F32(0.1), r, F32(0.0))

    def _t2m(self) -> np.ndarray:
        return self._wx("t2m")

    def _d2m(self) -> np.ndarray:
        humid = F32(0.45) * self.get("rel") + F32(0.35) * np.minimum(self._wx("clim") / 3, 1)
        humid = np.clip(humid + F32(0.2) * self._wx("cloud"), 0, 1)
        return self._wx("t2m") - (F32(1.0) + F32(13.0) * (1 - humid))  # depression >= 1 K

    def _sp(self) -> np.ndarray:
        elev = self.w.elev
        column_t = self._wx("t2m") + F32(0.00325) * elev  # mean temperature of the column
        p0 = F32(101325.0) + F32(250.0) * self._field("pressure", 3.0, 3)
        return p0 * np.exp(-elev / (F32(29.26) * column_t))  # hypsometric equation

    def _ssrd(self) -> np.ndarray:
        return self._wx("ssrd")

    def _strd(self) -> np.ndarray:
        # Brutsaert clear-sky emissivity from vapour pressure, raised by cloud.
        t, td = self._wx("t2m"), self.get("d2m") - F32(273.15)
        ea = F32(6.112) * np.exp(F32(17.67) * td / (td + F32(243.5)))
        eps = F32(1.24) * (ea / t) ** F32(1 / 7)
        eps = eps + (F32(0.98) - eps) * F32(0.8) * self._wx("cloud")
        return eps * F32(5.670e-8) * t**4

    def _exposure(self) -> np.ndarray:
        return F32(0.8) + F32(0.4) * np.minimum(self.w.elev / F32(3000.0), 1)

    def _u10(self) -> np.ndarray:
        return (F32(-2.5) + F32(1.3) * self._field("wind_u", 2.0, 2)) * self._exposure()

    def _v10(self) -> np.ndarray:
        # The monsoon: from the south-east in July, from the north-east in January.
        doy = self.b.weather["doy"]
        monsoon = (3.0 * np.cos(2 * np.pi * (doy - 200) / 365.25)).astype(F32)[:, None, None]
        return (monsoon + F32(1.3) * self._field("wind_v", 2.0, 2)) * self._exposure()

    def _stl1(self) -> np.ndarray:
        dry = (
            (1 - self.get("rel"))
            * (self._wx("ssrd") / F32(300.0))
            * (1 - F32(0.6) * self.w.soil.veg)
        )
        stl1 = self._wx("t2m") + F32(0.8) + F32(5.0) * dry
        return np.where(self.get("swe") > 0, np.minimum(stl1, F32(273.15)), stl1)

    def _lai_hv(self) -> np.ndarray:
        return self.w.lai_hv_max * (F32(0.55) + F32(0.45) * self.b.green)

    def _lai_lv(self) -> np.ndarray:
        return self.w.lai_lv_max * (F32(0.15) + F32(0.85) * self.b.green)

    def _swe(self) -> np.ndarray:
        # Snow only where even the seasonal climate is well below freezing (~5000 m here).
        return F32(12.0) * np.maximum(F32(268.5) - self._wx("t_clim"), 0)

    def _lst_day(self) -> np.ndarray:
        return np.where(self._wx("cloud") > F32(0.32), F32(np.nan), self.get("lst_day_clear"))

    def _lst_day_clear(self) -> np.ndarray:
        heating = F32(3.0) + F32(13.0) * (1 - self.get("rel")) * (1 - F32(0.5) * self.w.soil.veg)
        return self._wx("t2m") + F32(2.0) + self._wx("ssrd") / F32(300.0) * heating

    def _lst_night(self) -> np.ndarray:
        gap = self._wx("cloud") + F32(0.1) * self._wx("z") > F32(0.36)
        return np.where(gap, F32(np.nan), self.get("lst_night_clear"))

    def _lst_night_clear(self) -> np.ndarray:
        cloud = self._wx("cloud")
        return (
            self._wx("t2m") - F32(2.5) - F32(3.0) * (1 - cloud) * (1 - F32(0.5) * self.get("rel"))
        )

    def _albedo_bsa(self) -> np.ndarray:
        dry = (1 - self.get("rel")) * (1 - F32(0.5) * self.w.soil.veg)
        lai = self.get("lai_hv") + self.get("lai_lv")
        snow = F32(0.45) * np.minimum(self.get("swe") / F32(30.0), 1)
        return np.clip(self.w.albedo0 + F32(0.06) * dry - F32(0.006) * lai + snow, 0.03, 0.9)

    def _albedo_wsa(self) -> np.ndarray:
        return self.get("albedo_bsa") * F32(1.05) + F32(0.004)

    def smap_seen(self) -> np.ndarray:
        """Where the SMAP-like sensor retrieves: its swaths, minus frozen, dense-forest and
        random quality gaps."""
        w, days = self.w, self.days
        # The swath pattern shifts 3/8 of a period a day: each place is seen 3-4 days in 8.
        phase = np.mod(w.x[None, None, :] / 2.8e6 + days[:, None, None] * 0.375, 1.0)
        width = np.minimum(0.38 / np.cos(np.radians(w.lat)), 1.0)[None, :, None]
        u = uniform(w.cell_hash("smap_gap", days))
        forest = w.statics["land_cover"] == 2
        gap = (
            (u < 0.06)
            | (forest & (u < 0.5))
            | (self._wx("t2m") < F32(273.15))
            | (self.get("swe") > 0)
        )
        return (phase < width) & ~gap

    def _smap_expected(self) -> np.ndarray:
        return self.w.smap_bias + self.w.smap_gain * self.get("skin")

    def _smap(self) -> np.ndarray:
        w = self.w
        noise = F32(0.04) * normal_fast(w.cell_hash("smap_noise", self.days))
        value = np.clip(self.get("smap_expected") + noise, 0, OBS_MAX)
        return np.where(self.smap_seen(), value, F32(np.nan))


def site_depth_weight(seed: int, rows, cols) -> np.ndarray:
    """How far towards the skin (1) or below the nominal layer (< 0) each site's sensor reads:
    installation depth and probe geometry vary from site to site around the nominal 5 cm."""
    return np.clip(0.3 * normal(hash_keys(seed, "site_depth", 0, rows, cols)), -0.8, 0.8)


def insitu_values(
    seed: int, truth: np.ndarray, skin: np.ndarray, bounds, days: np.ndarray, rows, cols
) -> np.ndarray:
    """(days, sites) in-situ series: the layer each site's sensor reads (between the truth and
    the ``skin`` by its depth weight, within the soil's ``bounds`` (res, porosity)) with a site
    gain and bias, slow (autocorrelated) and white noise, missing days and outages, clipped."""
    rows, cols = np.asarray(rows)[None, :], np.asarray(cols)[None, :]
    layer = truth + site_depth_weight(seed, rows, cols) * (skin - truth)
    layer = np.clip(layer, *(np.asarray(b)[None, :] for b in bounds))
    bias = 0.03 * normal(hash_keys(seed, "site_bias", 0, rows, cols))
    gain = 1 + 0.08 * normal(hash_keys(seed, "site_gain", 0, rows, cols))
    # Slow noise: node values every 6 days, linearly interpolated (variance-preserving).
    k, f = np.divmod(days, 6)
    f = (f / 6.0)[:, None]
    n0, n1 = (normal(hash_keys(seed, "site_drift", (k + a)[:, None], rows, cols)) for a in (0, 1))
    slow = (n0 * (1 - f) + n1 * f) / np.sqrt(f**2 + (1 - f) ** 2)
    d = days[:, None]
    white = normal(hash_keys(seed, "site_white", d, rows, cols))
    value = bias + gain * layer + 0.017 * slow + 0.01 * white
    missing = uniform(hash_keys(seed, "site_missing", d, rows, cols)) < 0.08
    missing |= uniform(hash_keys(seed, "site_outage", d // 30, rows, cols)) < 0.06
    return np.where(missing, np.nan, np.clip(value, 0, OBS_MAX)).astype(F32)


# ------------------------------------------------------------------ the source


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


@dataclass
class _Window:
    """What the source keeps for one window: its world, land mask and coordinates."""

    world: World
    land_future: Future
    coords: dict
    statics: xr.Dataset | None = None

    @property
    def land(self) -> np.ndarray:
        """The window's land mask."""
        return self.land_future.result()


class SyntheticSource:
    """A deterministic synthetic world: every forcing, static and target, plus the truth.

    Values depend only on the seed, the cell (global row and column) and the day, never on
    the window or date range requested.
    """

    name = "synthetic"
    provides: tuple[str, ...] = (*FORCINGS, *STATICS, "smap", "insitu")

    def __init__(self, seed: int = 42, latency_days: int = 1) -> None:
        self.seed = int(seed)
        self.latency_days = int(latency_days)
        self._windows: OrderedDict[tuple[str, Window], _Window] = OrderedDict()

    def __getstate__(self) -> dict:
        # Ship the settings, not the caches (they hold futures and can be large).
        return {"seed": self.seed, "latency_days": self.latency_days}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def first_date(self) -> dt.date:
        """The first served day (the water balance spins up for a year before it)."""
        return FIRST_SERVED

    def latest_date(self, today: dt.date) -> dt.date:
        """``today`` less the configured latency."""
        return today - dt.timedelta(days=self.latency_days)

    def version(self, day: dt.date) -> str:
        """Product name and version (the same for every day)."""
        return f"{VERSION}-seed{self.seed}"

    # ------------------------------------------------------------ public data

    def forcing(self, grid: EaseGrid, window: Window, start, end) -> xr.Dataset:
        """The 18 daily forcings, float32 (time, y, x), ``start``..``end`` inclusive."""
        start, end = self._check(start, end)
        values = self._series(grid, window, start, end, FORCINGS)
        w = self._window(grid, window)
        data = {
            n: self._grid_array(w, values[n], n, REGISTRY[n].units, start, end) for n in FORCINGS
        }
        return xr.Dataset(data, attrs=self._attrs())

    def static(self, grid: EaseGrid, window: Window, long_term: bool = True) -> xr.Dataset:
        """The 17 statics, float32 (y, x), long-term means over the reference period; without
        ``long_term``, the 11 raster statics only (no five-year run for the means)."""
        w = self._window(grid, window)
        if not long_term:
            names = [n for n in STATICS if n in w.world.statics]
            return xr.Dataset({n: self._static_array(w, n, w.world.statics[n]) for n in names},
                              attrs=self._attrs())  # fmt: skip
        if w.statics is None:
            values = {
                n: np.asarray(w.world.statics[n], dtype=F32)
                for n in STATICS
                if n in w.world.statics
            }
            values |= self._long_term_means(w)
            data = {n: self._static_array(w, n, values[n]) for n in STATICS}
            attrs = self._attrs() | {
                "reference_period": "/".join(d.isoformat() for d in REFERENCE_PERIOD)
            }
            w.statics = xr.Dataset(data, attrs=attrs)
        return w.statics.copy(deep=True)  # callers may write into it; the cache stays intact

    def smap(self, grid: EaseGrid, window: Window, start, end) -> xr.DataArray:
        """The SMAP-like target (time, y, x): NaN where not observed."""
        start, end = self._check(start, end)
        values = self._series(grid, window, start, end, ("smap",))["smap"]
        return self._grid_array(
            self._window(grid, window), values, "smap", REGISTRY["smap"].units, start, end
        )

    def truth(self, grid: EaseGrid, window: Window, start, end) -> xr.DataArray:
        """The hidden true surface soil moisture (time, y, x), for evaluation only."""
        start, end = self._check(start, end)
        values = self._series(grid, window, start, end, ("truth",))["truth"]
        return self._grid_array(
            self._window(grid, window), values, "truth", PRODUCT_UNITS, start, end
        )

    def skin(self, grid: EaseGrid, window: Window, start, end) -> xr.DataArray:
        """The hidden soil moisture of the skin SMAP senses (time, y, x), for evaluation only:
        it wets more after rain and dries back faster than the truth."""
        start, end = self._check(start, end)
        values = self._series(grid, window, start, end, ("skin",))["skin"]
        return self._grid_array(
            self._window(grid, window), values, "skin", PRODUCT_UNITS, start, end
        )

    def sites(self, grid: EaseGrid, window: Window) -> pd.DataFrame:
        """In-situ sites in the window (about one per 150 land cells), sorted by id."""
        w = self._window(grid, window)
        rows, cols = w.world.rows, w.world.cols
        u = uniform(hash_keys(self.seed, "site", 0, rows[:, None], cols[None, :]))
        r, c = np.nonzero((u < SITE_DENSITY) & w.land)
        lat, lon = w.world.lat[r], w.world.lon[c]
        table = pd.DataFrame(
            {
                "site": [f"SYN_{a:04d}_{b:04d}" for a, b in zip(rows[r], cols[c], strict=True)],
                "lat": lat.astype(float),
                "lon": lon.astype(float),
                "row": rows[r].astype(np.int64),
                "col": cols[c].astype(np.int64),
                "network": "SYNTHETIC",
                "region": region_of(lon, lat, SITE_REGIONS).astype(object),
            }
        )
        return table.sort_values("site", ignore_index=True)

    def insitu(self, grid: EaseGrid, window: Window, start, end) -> xr.DataArray:
        """In-situ series (site, time) at the window's sites, NaN on missing days."""
        start, end = self._check(start, end)
        table = self.sites(grid, window)
        w = self._window(grid, window)
        r = (table["row"].to_numpy() - w.world.rows[0]).astype(np.intp)
        c = (table["col"].to_numpy() - w.world.cols[0]).astype(np.intp)
        series = self._series(grid, window, start, end, ("truth", "skin"), cells=(r, c))
        i0 = (start - EPOCH).days
        days = np.arange(i0, i0 + series["truth"].shape[0])
        bounds = (w.world.soil.res[r, c], w.world.soil.porosity[r, c])
        values = insitu_values(
            self.seed, series["truth"], series["skin"], bounds, days, table["row"], table["col"]
        ).T
        coords = {"site": table["site"].to_numpy(), "time": _times(start, end)}
        coords |= {
            k: ("site", table[k].to_numpy())
            for k in ("lat", "lon", "row", "col", "network", "region")
        }
        return xr.DataArray(
            values,
            dims=("site", "time"),
            coords=coords,
            name="insitu",
            attrs={"units": REGISTRY["insitu"].units, **self._attrs()},
        )

    # ------------------------------------------------------------ internals

    def _static_array(self, w: _Window, name: str, values: np.ndarray) -> xr.DataArray:
        """A static in registry range over land, NaN over the sea."""
        v = REGISTRY[name]
        arr = np.where(w.land, np.clip(values, v.valid_min, v.valid_max), np.nan)
        attrs = {"units": v.units, "long_name": v.long_name}
        return xr.DataArray(arr.astype(F32), dims=("y", "x"), coords=w.coords, attrs=attrs)

    def _check(self, start, end) -> tuple[dt.date, dt.date]:
        start, end = _as_date(start), _as_date(end)
        if start > end:
            raise DateNotServedError(f"empty date range: start {start} is after end {end}")
        if start < FIRST_SERVED:
            raise DateNotServedError(
                f"source 'synthetic' serves from {FIRST_SERVED.isoformat()}, "
                f"not {start.isoformat()}..{end.isoformat()}"
            )
        return start, end

    def _attrs(self) -> dict:
        return {"source": self.name, "version": self.version(FIRST_SERVED), "seed": self.seed}

    def _window(self, grid: EaseGrid, window: Window) -> _Window:
        key = (grid.name, window)
        if key in self._windows:
            self._windows.move_to_end(key)
            return self._windows[key]
        # The first land-mask call in a process loads about 1 GB of global data (seconds,
        # mostly in zlib, which releases the GIL): make it while the water balance runs.
        pool = ThreadPoolExecutor(1)
        land = pool.submit(grid.land_mask, window)
        pool.shutdown(wait=False)  # the thread ends once the mask is made
        lon, lat = grid.lonlat(window)
        rows = np.arange(window.row0, window.row0 + window.n_rows)
        cols = np.arange(window.col0, window.col0 + window.n_cols)
        x = grid.x_centres(window)
        world = World(self.seed, lat[:, 0], lon[0, :], x, rows, cols, grid.cell_size)
        coords = {"y": grid.y_centres(window), "x": x, "row": ("y", rows), "col": ("x", cols)}
        entry = _Window(world, land, coords)
        self._windows[key] = entry
        while len(self._windows) > _CACHED_WINDOWS:
            self._windows.popitem(last=False)
        return entry

    def _series(self, grid, window, start, end, names, cells=None) -> dict[str, np.ndarray]:
        """Daily values of ``names``, sea masked, range-clipped; (time, y, x), or (time, n)
        at the (rows, cols) of ``cells``."""
        w = self._window(grid, window)
        first, last = (start - EPOCH).days, (end - EPOCH).days
        shape = (last - first + 1, *(w.world.shape if cells is None else cells[0].shape))
        out = {n: np.empty(shape, dtype=F32) for n in names}
        for block in w.world.chunks(first, last):
            days = block.days
            lo, hi = max(first, days[0]), min(last, days[-1])
            src, dst = slice(lo - days[0], hi - days[0] + 1), slice(lo - first, hi - first + 1)
            products = Products(w.world, block)
            for n in names:
                values = products.get(n)[src]
                out[n][dst] = values if cells is None else values[:, cells[0], cells[1]]
        land = w.land if cells is None else w.land[cells]
        for n, arr in out.items():
            lo, hi = (
                PRODUCT_RANGE
                if n in ("truth", "skin")
                else (REGISTRY[n].valid_min, REGISTRY[n].valid_max)
            )
            np.clip(arr, lo, hi, out=arr)
            arr[:, ~land] = np.nan
        return out

    def _grid_array(self, w: _Window, values, name, units, start, end) -> xr.DataArray:
        coords = {"time": _times(start, end), **w.coords}
        return xr.DataArray(
            values, dims=("time", "y", "x"), coords=coords, name=name, attrs={"units": units}
        )

    def _long_term_means(self, w: _Window) -> dict[str, np.ndarray]:
        """Means over REFERENCE_PERIOD of the LST, albedo, SMAP and precipitation products,
        skipping gaps; a cell never observed gets the mean of the gap-free value."""
        first, last = ((d - EPOCH).days for d in REFERENCE_PERIOD)
        names = tuple(LONG_TERM_MEANS.values())
        sums = {n: np.zeros(w.land.shape) for n in (*names, *GAP_FREE.values())}
        counts = {n: np.zeros(w.land.shape) for n in names}
        for block in w.world.chunks(first, last):
            products = Products(w.world, block)
            for k in np.flatnonzero((block.days >= first) & (block.days <= last)):
                for n in sums:
                    v = products.get(n)[k]
                    ok = np.isfinite(v)
                    sums[n] += np.where(ok, v, 0.0)  # one day at a time: a fixed summation order
                    if n in counts:
                        counts[n] += ok
        means = {}
        for mean, n in LONG_TERM_MEANS.items():
            means[mean] = sums[n] / np.maximum(counts[n], 1)
            if n in GAP_FREE:
                gap_free = sums[GAP_FREE[n]] / (last - first + 1)
                means[mean] = np.where(counts[n] > 0, means[mean], gap_free)
        return means


def _times(start: dt.date, end: dt.date) -> np.ndarray:
    return pd.date_range(start, end, freq="D").to_numpy(dtype="datetime64[ns]")
