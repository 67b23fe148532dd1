"""The synthetic world over a window: random numbers and fields, weather and the water balance.

Every value is a function of (seed, global position, day) only, never of the window or date
range asked for: random numbers come from a counter-based hash of global lattice nodes (or
global grid rows/columns), and the water balance runs from :data:`EPOCH`. The land (terrain,
soils, climate, the water balance of a cell) is :mod:`gsm3_ops.sources.synthetic_land`; the
xarray adapter that serves the world as a data source is :mod:`gsm3_ops.sources.synthetic`;
the equations are in ``docs/synthetic-world.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from gsm3_ops.sources.synthetic_land import (
    BIMODAL,
    COVER_TABLE,
    F32,
    annual_rain,
    aspect_factor,
    land_cover,
    soil_params,
    soil_texture,
    terrain_statics,
    toa_radiation,
    water_balance_step,
)

EPOCH = dt.date(2000, 1, 1)  # the water balance starts here, a year of spin-up ...
FIRST_SERVED = dt.date(2001, 1, 1)  # ... before the first served day
CHUNK_DAYS = 32  # days simulated per vectorised block
CHECKPOINT_EVERY = 8  # keep the water-balance state every this many chunks
DEPTH_MM = 100.0  # effective depth of the surface store (0-5 cm coupled to the layer below)
# The skin SMAP senses (the top 2-3 cm): the same daily change as the store, concentrated in
# SKIN_DEPTH_MM of water, and half of its departure from the store gone a day later.
SKIN_DEPTH_MM = 40.0
SKIN_KEEP = 0.5

# ------------------------------------------------------------------ counter-based random numbers

_U = np.uint64
_GOLD, _K2, _K3 = _U(0x9E3779B97F4A7C15), _U(0xC2B2AE3D27D4EB4F), _U(0x165667B19E3779F9)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection of uint64 that scrambles every bit."""
    x = (x ^ (x >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U(27))) * _U(0x94D049BB133111EB)
    return x ^ (x >> _U(31))


def _u64(a: np.ndarray | int) -> np.ndarray:
    # Negative indices wrap modulo 2**64, which keeps them distinct.
    return np.atleast_1d(np.asarray(a, dtype=np.int64)).astype(np.uint64)


def hash_keys(seed: int, stream: str, t, i=0, j=0) -> np.ndarray:
    """uint64 hash of (seed, stream, t, i, j); the integer arrays broadcast together."""
    with np.errstate(over="ignore"):
        base = _mix(_u64(seed) * _GOLD + _U(zlib.crc32(stream.encode())))
        h = _mix(base + _u64(t) * _GOLD)
        return _mix(h + _u64(i) * _K2 + _u64(j) * _K3)


def normal(h: np.ndarray) -> np.ndarray:
    """Standard normal float64 from hashes (exact inverse CDF; for small arrays)."""
    return ndtri(((h >> _U(11)).astype(np.float64) + 0.5) * 2.0**-53)


def uniform(h: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 from hashes."""
    return (h >> _U(11)).astype(np.float64) * 2.0**-53


def normal_fast(h: np.ndarray) -> np.ndarray:
    """Near-normal float32 (sum of four 16-bit uniforms, unit variance) for large arrays."""
    m = _U(0xFFFF)
    s = (h & m) + ((h >> _U(16)) & m) + ((h >> _U(32)) & m) + (h >> _U(48))
    return ((s.astype(F32) + F32(2.0)) * F32(1 / 65536) - F32(2.0)) * F32(math.sqrt(3.0))


# ------------------------------------------------------------------ smooth random fields


@dataclass(frozen=True)
class _Axis:
    """Linear interpolation of one coordinate onto global lattice nodes."""

    lo: int  # global index of the first node used
    n: int  # nodes used
    i0: np.ndarray  # node (relative to lo) below each point
    w0: np.ndarray  # weights, scaled so that interpolated unit normals keep unit variance
    w1: np.ndarray


def _axis(coord: np.ndarray, spacing: float) -> _Axis:
    a = np.asarray(coord, dtype=np.float64) / spacing
    i = np.floor(a)
    f = a - i
    norm = np.sqrt(f * f + (1.0 - f) * (1.0 - f))
    lo = int(i.min())
    return _Axis(
        lo,
        int(i.max()) - lo + 2,
        (i - lo).astype(np.intp),
        ((1 - f) / norm).astype(F32),
        (f / norm).astype(F32),
    )


def _interp(v: np.ndarray, ax: _Axis, axis: int) -> np.ndarray:
    """Interpolate node values along one axis (elementwise, so bit-identical per point)."""
    shape = [1] * v.ndim
    shape[axis] = ax.i0.size
    w0, w1 = ax.w0.reshape(shape), ax.w1.reshape(shape)
    return np.take(v, ax.i0, axis=axis) * w0 + np.take(v, ax.i0 + 1, axis=axis) * w1


@dataclass(frozen=True)
class Lattice:
    """A unit-variance random field: iid normals on a global (time, lat, lon) lattice."""

    stream: str
    spacing_deg: float
    dt_days: int = 1


def lattice_field(
    seed: int, lattice: Lattice, days: np.ndarray, ylat: np.ndarray, xlon: np.ndarray
) -> np.ndarray:
    """(days, rows, cols) float32 values of a lattice field at cells with latitude ``ylat``
    (per row) and longitude ``xlon`` (per column): bilinear in space, linear in time."""
    ya, xa = _axis(ylat, lattice.spacing_deg), _axis(xlon, lattice.spacing_deg)
    n_lon = round(360.0 / lattice.spacing_deg)  # nodes wrap at the date line
    if lattice.dt_days == 1:
        tn = np.asarray(days)
    else:
        ta = _axis(np.asarray(days, dtype=np.float64), float(lattice.dt_days))
        tn = np.arange(ta.lo, ta.lo + ta.n)
    rows = np.arange(ya.lo, ya.lo + ya.n)
    cols = np.mod(np.arange(xa.lo, xa.lo + xa.n), n_lon)
    h = hash_keys(seed, lattice.stream, tn[:, None, None], rows[None, :, None], cols[None, None, :])
    v = normal_fast(h)
    if lattice.dt_days != 1:
        v = _interp(v, ta, 0)
    return _interp(_interp(v, xa, 2), ya, 1)


def static_field(seed: int, stream: str, spacing: float, ylat, xlon) -> np.ndarray:
    """(lat, lon) float64 unit-variance static random field."""
    return lattice_field(seed, Lattice(stream, spacing), np.array([0]), ylat, xlon)[0].astype(float)


# ------------------------------------------------------------------ the world over a window


@dataclass(frozen=True)
class Block:
    """CHUNK_DAYS days of one window: the weather, the truth, the skin's departure from it
    and the vegetation greenness."""

    weather: dict[str, np.ndarray]
    truth: np.ndarray  # (days, rows, cols) surface soil moisture, m3/m3
    skin_departure: np.ndarray  # (days, rows, cols) skin minus truth before clipping, m3/m3
    green: np.ndarray  # (days, rows, cols) greenness 0..1, lagged soil-moisture response

    @property
    def days(self) -> np.ndarray:
        """Day numbers (from EPOCH) of the block."""
        return self.weather["days"]


def day_of_year(days: np.ndarray) -> np.ndarray:
    """Day of year (1..366) of day numbers counted from EPOCH."""
    dates = np.datetime64(EPOCH.isoformat(), "D") + np.asarray(days).astype("timedelta64[D]")
    return (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1


class World:
    """The synthetic world over one window: its statics, weather and water balance.

    Cells are given by their centres; lat must depend on the row only and lon on the column
    only (true of the cylindrical EASE-Grid 2.0). ``rows``/``cols`` are global grid indices
    (they key per-cell noise) and ``x`` the global projected x of each column (it keys the
    SMAP swaths).
    """

    def __init__(
        self,
        seed: int,
        lat: np.ndarray,
        lon: np.ndarray,
        x: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        cell_m: float,
    ) -> None:
        self.seed = seed
        self.lat, self.lon, self.x = lat, lon, x
        self.rows, self.cols = rows, cols
        lon2, lat2 = np.meshgrid(lon, lat)
        st = terrain_statics(lon2, lat2, cell_m, seed)
        elev = st["elevation"]
        p_ann = annual_rain(lon2, lat2, elev, self.noise("rain", 1.0))
        lc = land_cover(p_ann, elev, self.noise("cover_a", 0.5), self.noise("cover_b", 0.25))
        sand, clay, silt = soil_texture(
            lon2, lat2, elev, p_ann, self.noise("sand", 0.5), self.noise("clay", 0.5)
        )
        highland = np.clip((elev - 1200) / 1500, 0, 1)
        bulk = 1.55 + 0.0015 * sand - 0.005 * clay - 0.15 * highland + 0.03 * self.noise("bd", 0.5)
        ndvi = 0.08 + 0.72 * (1 - np.exp(-p_ann / 900)) + 0.03 * self.noise("ndvi", 0.5)
        ndvi = np.where(lc >= 15, 0.05, ndvi)
        self.statics = st | {
            "sand": sand,
            "clay": clay,
            "silt": silt,
            "bulk_density": bulk,
            "land_cover": lc,
            "ndvi": ndvi,
        }
        self.soil = soil_params(sand, clay, silt, bulk, ndvi)
        f = lambda a: np.asarray(a, dtype=F32)  # noqa: E731
        self.elev = f(elev)
        self.pet_scale = f(0.0135 * 0.03527 * aspect_factor(st["slope"], st["aspect_cos"]))
        # Near Lake Victoria rain is spread over the year; elsewhere it follows the two seasons.
        flat = 0.12 + 0.45 * np.exp(-0.5 * (np.hypot(lon2 - 33.0, lat2 + 1.0) / 2.0) ** 2)
        self.rain_flat, self.rain_peaky = f(p_ann / 365.25 * flat), f(p_ann / 365.25 * (1 - flat))
        sin2 = np.sin(np.radians(lat2)) ** 2
        self.t_base = f(300.5 - 45 * sin2 - 0.0065 * elev)
        # Warmest around day 50 south of 5 N (East Africa), day 200 further north.
        peak = 2 * np.pi / 365.25 * np.where(lat2 > 5, 200.0, 50.0)
        self.t_cos, self.t_sin = (
            f((1.5 + 25 * sin2) * np.cos(peak)),
            f((1.5 + 25 * sin2) * np.sin(peak)),
        )
        self.transmissivity = f(0.68 + 3e-5 * elev)
        self.lai_hv_max, self.lai_lv_max, self.albedo0 = (f(COVER_TABLE[lc, k]) for k in range(3))
        self.smap_bias = f(-0.025 * self.soil.veg + 0.015 * self.noise("smap_bias", 1.0))
        self.smap_gain = f(0.85 + 0.05 * self.noise("smap_gain", 1.0))
        start = (self.soil.wp + self.soil.fc) / 2
        self._checkpoints = {0: (start, np.full_like(start, 0.5), np.zeros_like(start))}

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the window."""
        return (self.lat.size, self.lon.size)

    def noise(self, stream: str, spacing: float) -> np.ndarray:
        """A static unit-variance random field at the cells."""
        return static_field(self.seed, stream, spacing, self.lat, self.lon)

    def field(self, stream: str, spacing: float, dt_days: int, days: np.ndarray) -> np.ndarray:
        """A daily unit-variance random field (days, rows, cols)."""
        return lattice_field(self.seed, Lattice(stream, spacing, dt_days), days, self.lat, self.lon)

    def cell_hash(self, stream: str, days: np.ndarray) -> np.ndarray:
        """Per cell and day hashes (days, rows, cols) keyed on global rows and columns."""
        return hash_keys(
            self.seed,
            stream,
            days[:, None, None],
            self.rows[None, :, None],
            self.cols[None, None, :],
        )

    def weather(self, days: np.ndarray) -> dict[str, np.ndarray]:
        """The weather the water balance needs: rain, cloud, radiation, temperature, PET."""
        doy = day_of_year(days)
        season = BIMODAL[doy - 1].astype(F32)[:, None, None]
        wobble = np.exp(F32(0.35) * self.field("season", 4.0, 30, days) - F32(0.061))
        clim = (self.rain_flat + self.rain_peaky * season) * wobble  # mean rain of the day
        z_syn = self.field("synoptic", 1.5, 3, days)
        z = F32(0.55) * z_syn + F32(0.835) * self.field("convective", 0.25, 1, days)
        # Storms: the wet-day chance is p = clim / (clim + 7) and the mean wet-day amount
        # clim + 7 mm. With q = logistic(1.702 z), close to uniform, a cell is wet when
        # q > 1 - p, i.e. when y = clim * exp(1.702 z) > 7, and e = -log(1 - (q - 1 + p) / p)
        # = log((clim + y) / (clim + 7)) is then an Exp(1) draw that peaks at storm centres.
        y = clim * np.exp(F32(1.702) * z)
        e = np.log(np.maximum((clim + y) / (clim + F32(7.0)), F32(1.0)))
        # Amounts (clim + 7) * e**1.5 / Gamma(2.5): a heavy, gamma-like tail, capped.
        e = np.minimum(e, F32(7.0))
        amount = (clim + F32(7.0)) * F32(1 / 1.3293) * e * np.sqrt(e)
        rain = np.where((y > F32(7.0)) & (amount >= F32(0.1)), amount, F32(0.0))
        p_wet = clim / (clim + F32(7.0))
        cloud = F32(0.12) + F32(0.45) * p_wet + F32(0.12) * z_syn + F32(0.4) * rain / (rain + 4)
        cloud = np.minimum(np.maximum(cloud, F32(0.02)), F32(0.98))
        toa = toa_radiation(self.lat, doy).astype(F32)[:, :, None]
        ssrd = toa * self.transmissivity * (1 - F32(0.6) * cloud)
        angle = 2 * np.pi / 365.25 * doy
        cos_a, sin_a = (
            np.cos(angle).astype(F32)[:, None, None],
            np.sin(angle).astype(F32)[:, None, None],
        )
        t_clim = self.t_base + self.t_cos * cos_a + self.t_sin * sin_a
        t2m = t_clim + F32(1.1) * self.field("temperature", 2.0, 4, days)
        t2m -= F32(1.5) * (cloud - F32(0.35)) + F32(0.5) * (rain > 0)
        # Jensen-Haise-like PET (mm/day) from radiation (as mm of water) and temperature;
        # the slope's aspect scales the radiation the surface actually receives.
        pet = np.maximum(t2m - F32(255.35), 0) * ssrd * self.pet_scale
        return {
            "days": days,
            "doy": doy,
            "clim": clim,
            "z_syn": z_syn,
            "z": z,
            "rain": rain,
            "cloud": cloud,
            "ssrd": ssrd,
            "t_clim": t_clim,
            "t2m": t2m,
            "pet": pet,
        }

    def skin_layer(self, truth: np.ndarray, departure: np.ndarray) -> np.ndarray:
        """The skin's soil moisture: the truth plus its departure, within the soil's bounds."""
        return np.minimum(np.maximum(truth + departure, self.soil.res), self.soil.porosity)

    def _balance(self, wx, theta, green, skin):
        rain_z, pet_z = wx["rain"] / F32(DEPTH_MM), wx["pet"] / F32(DEPTH_MM)
        out_t, out_g, out_s = (np.empty_like(rain_z) for _ in range(3))
        amplify = F32(DEPTH_MM / SKIN_DEPTH_MM - 1.0)
        for k in range(rain_z.shape[0]):
            new, green = water_balance_step(theta, green, rain_z[k], pet_z[k], self.soil)
            skin = skin * F32(SKIN_KEEP) + amplify * (new - theta)
            theta = new
            out_t[k], out_g[k], out_s[k] = theta, green, skin
        return out_t, out_g, out_s

    def chunks(self, first: int, last: int) -> Iterator[Block]:
        """The fixed blocks of CHUNK_DAYS days that cover day numbers first..last, with the
        water balance run from EPOCH (resumed from the nearest cached state)."""
        c0, c1 = first // CHUNK_DAYS, last // CHUNK_DAYS
        k = max(c for c in self._checkpoints if c <= c0)
        theta, green, skin = self._checkpoints[k]
        for c in range(k, c1 + 1):
            days = np.arange(c * CHUNK_DAYS, (c + 1) * CHUNK_DAYS)
            wx = self.weather(days)
            truth, greens, skins = self._balance(wx, theta, green, skin)
            theta, green, skin = truth[-1], greens[-1], skins[-1]
            if (c + 1) % CHECKPOINT_EVERY == 0:
                self._checkpoints[c + 1] = (theta, green, skin)
            if c >= c0:
                yield Block(wx, truth, skins, greens)
