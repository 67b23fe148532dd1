"""The synthetic world's numpy model: terrain, soils, climate, weather and a water balance.

Every value is a function of (seed, global position, day) only, never of the window or date
range asked for: random numbers come from a counter-based hash of global lattice nodes (or
global grid rows/columns), and the water balance runs from :data:`EPOCH`. The xarray adapter
that serves it as a data source is :mod:`gsm3_ops.sources.synthetic`; the equations are in
``docs/synthetic-world.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import ndtri

EPOCH = dt.date(2000, 1, 1)  # the water balance starts here, a year of spin-up ...
FIRST_SERVED = dt.date(2001, 1, 1)  # ... before the first served day
CHUNK_DAYS = 32  # days simulated per vectorised block
CHECKPOINT_EVERY = 8  # keep the water-balance state every this many chunks
DEPTH_MM = 100.0  # effective depth of the surface store (0-5 cm coupled to the layer below)
GREENING_DAYS = 25.0  # time constant of the vegetation greenness response
F32 = np.float32

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


# ------------------------------------------------------------------ terrain

# (lon, lat, height above the plateau in m, radius in degrees) of the volcanoes.
_PEAKS = (
    (37.35, -3.07, 4300.0, 0.14),  # Kilimanjaro
    (37.30, -0.15, 3300.0, 0.13),  # Mt Kenya
    (36.75, -3.24, 2500.0, 0.08),  # Mt Meru
    (34.55, 1.13, 2300.0, 0.16),  # Mt Elgon
    (36.70, -0.40, 1000.0, 0.18),  # Aberdares
    (35.60, -3.20, 900.0, 0.25),  # Ngorongoro highlands
)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gauss(lon, lat, lon0, lat0, s_lon, s_lat=None):
    s_lat = s_lon if s_lat is None else s_lat
    return np.exp(-0.5 * (((lon - lon0) / s_lon) ** 2 + ((lat - lat0) / s_lat) ** 2))


def _hill_waves(seed: int) -> np.ndarray:
    """(k, 4) parameters of the small-scale hills: kx, ky (rad per degree), phase, amplitude."""
    rng = np.random.default_rng([seed, 7])
    wavelength = rng.uniform(0.15, 0.7, 12)
    angle = rng.uniform(0, np.pi, 12)
    k = 2 * np.pi / wavelength
    amp = rng.uniform(15.0, 45.0, 12)
    return np.stack([k * np.cos(angle), k * np.sin(angle), rng.uniform(0, 2 * np.pi, 12), amp], 1)


def elevation(lon: np.ndarray, lat: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """Analytic terrain (m): a gentle global base, the East African plateau, the Kenya
    highlands, the Gregory Rift, the Lake Victoria basin, volcanoes and small hills."""
    base = 300 + 180 * np.sin(np.radians(3 * lon) + 1.0) * np.cos(np.radians(4 * lat))
    plateau = 1000 * _sig((lon - 29.0) / 0.6) * _sig((39.3 - lon) / 0.6)
    plateau *= _sig((lat + 12.0) / 1.0) * _sig((6.0 - lat) / 1.0)
    plateau *= 1 - 0.6 * _sig(((lon - 38.0) + (lat - 1.0)) / 0.8)  # north-east lowlands
    highlands = 1100 * _gauss(lon, lat, 36.4, -0.5, 1.1, 1.6)
    highlands += 1300 * _gauss(lon, lat, 38.5, 8.5, 2.5, 3.0)  # Ethiopian highlands
    rift = (
        800
        * np.exp(-0.5 * ((lon - 36.15 - 0.1 * lat) / 0.2) ** 2)
        * np.exp(-0.5 * (lat / 3.5) ** 2)
    )
    basin = 200 * _gauss(lon, lat, 33.0, -1.0, 1.2)
    peaks = sum(h * _gauss(lon, lat, x, y, r) for x, y, h, r in _PEAKS)
    relief = 0.4 + np.minimum(plateau + highlands, 2000.0) / 2000.0
    hills = sum(a * np.sin(kx * lon + ky * lat + ph) for kx, ky, ph, a in waves) * relief
    return np.maximum(base + plateau + highlands - rift - basin + peaks + hills, 2.0)


_M_PER_DEG = 111_195.0  # metres per degree of latitude on the authalic sphere


def terrain_statics(lon: np.ndarray, lat: np.ndarray, cell_m: float, seed: int) -> dict:
    """elevation, slope, aspect_cos, plan_curvature, roughness at cell centres (2-D lon, lat),
    from the analytic terrain sampled at the centre +- offsets, so never from neighbours."""
    waves = _hill_waves(seed)
    h = cell_m / 2
    dlat, dlon = h / _M_PER_DEG, h / (_M_PER_DEG * np.cos(np.radians(lat)))
    z = {
        (a, b): elevation(lon + a * dlon, lat + b * dlat, waves)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
    }
    zx = (z[1, 0] - z[-1, 0]) / (2 * h)  # dz/d(east)
    zy = (z[0, 1] - z[0, -1]) / (2 * h)  # dz/d(north)
    zxx = (z[1, 0] - 2 * z[0, 0] + z[-1, 0]) / h**2
    zyy = (z[0, 1] - 2 * z[0, 0] + z[0, -1]) / h**2
    zxy = (z[1, 1] - z[1, -1] - z[-1, 1] + z[-1, -1]) / (4 * h**2)
    g2 = zx**2 + zy**2
    flat = g2 < 1e-10
    # Aspect is the downhill direction; cos(aspect) = +1 facing north. The southern hemisphere
    # is flipped so that +1 always means pole-facing (as in the GSM3 paper).
    aspect_cos = np.where(flat, 0.0, -zy / np.sqrt(np.maximum(g2, 1e-20)))
    aspect_cos = np.where(lat < 0, -aspect_cos, aspect_cos)
    # Plan (tangential) curvature: the curvature across the slope, < 0 where flow converges.
    plan = -(zxx * zy**2 - 2 * zxy * zx * zy + zyy * zx**2) / (
        np.maximum(g2, 1e-10) * np.sqrt(1 + g2)
    )
    sub = np.linspace(-0.4, 0.4, 5)  # a 5 x 5 set of points inside the cell
    zs = [elevation(lon + 2 * a * dlon, lat + 2 * b * dlat, waves) for a in sub for b in sub]
    return {
        "elevation": z[0, 0],
        "slope": np.degrees(np.arctan(np.sqrt(g2))),
        "aspect_cos": aspect_cos,
        "plan_curvature": np.clip(np.where(flat, 0.0, plan), -1, 1),
        "roughness": np.max(zs, axis=0) - np.min(zs, axis=0),
    }


# ------------------------------------------------------------------ climate, soils, vegetation

_DOY = np.arange(1, 367)


def _cbump(doy: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (doy - centre + 182.5) % 365.25 - 182.5  # circular distance in days
    return np.exp(-0.5 * (d / width) ** 2)


# Bimodal East African rain season, mean 1: long rains peak mid-April, short rains November.
_BIMODAL = 0.18 + _cbump(_DOY, 110, 28) + 0.75 * _cbump(_DOY, 315, 24)
_BIMODAL = _BIMODAL / _BIMODAL[:365].mean()


def annual_rain(lon, lat, elev, noise) -> np.ndarray:
    """Mean annual rain (mm): wet near Lake Victoria, the highlands and the coast, arid NE."""
    dlv = np.hypot(lon - 33.0, lat + 1.0)
    p = 700 + 950 * np.exp(-0.5 * (dlv / 1.6) ** 2)
    p += 0.3 * np.clip(elev - 1200, 0, 2300) - 0.3 * np.clip(elev - 3500, 0, None)
    p -= 470 * _sig(((lon - 38.3) + (lat - 0.8)) / 0.7)
    p += 350 * np.exp(-0.5 * ((lon - 39.9) / 0.5) ** 2) * _sig(-(lat + 1.8) / 0.5)
    return np.clip(p * np.exp(0.18 * noise), 120, 3500)


# IGBP class -> (high-vegetation LAI max, low-vegetation LAI max, snow-free albedo).
_COVER = {
    2: (5.0, 1.0, 0.12),  # evergreen broadleaf forest
    7: (0.4, 0.8, 0.24),  # open shrubland
    8: (2.0, 2.0, 0.15),  # woody savanna
    9: (1.0, 2.0, 0.17),  # savanna
    10: (0.2, 2.2, 0.19),  # grassland
    12: (0.3, 3.0, 0.17),  # cropland
    15: (0.0, 0.0, 0.35),  # snow and ice
    16: (0.0, 0.1, 0.30),  # barren
}
_COVER_TABLE = np.zeros((17, 3))
for _code, _row in _COVER.items():
    _COVER_TABLE[_code] = _row


def land_cover(p_ann, elev, noise_a, noise_b) -> np.ndarray:
    """IGBP land-cover class from rain, altitude and two static noises."""
    score = p_ann + 300 * noise_a
    lc = np.select(
        [
            elev > 5300,
            elev > 4300,
            score >= 1500,
            score >= 1000,
            score >= 650,
            score >= 350,
            score >= 200,
        ],
        [15, 16, 2, np.where(noise_b > -0.2, 12, 8), 9, 10, 7],
        16,
    )
    return lc.astype(np.int64)


def soil_texture(lon, lat, elev, p_ann, n_sand, n_clay) -> tuple[np.ndarray, ...]:
    """Integer sand, clay, silt (%) summing to 100: clayey volcanic highlands and lake
    margins, sandy arid north-east and coast."""
    hl = np.clip((elev - 1200) / 1500, 0, 1)
    arid = np.clip((700 - p_ann) / 500, 0, 1)
    coast = np.exp(-0.5 * ((lon - 39.9) / 0.5) ** 2)
    lake = np.exp(-0.5 * (np.hypot(lon - 33.0, lat + 1.0) / 1.5) ** 2)
    sand = np.clip(42 + 35 * arid + 20 * coast - 22 * hl - 10 * lake + 9 * n_sand, 8, 90)
    clay = np.clip(22 + 26 * hl + 14 * lake - 12 * arid - 8 * coast + 7 * n_clay, 4, 65)
    excess = np.maximum(sand + clay - 95, 0)  # keep silt >= 5 %
    sand, clay = np.round(sand - excess / 2), np.round(clay - excess / 2)
    return sand, clay, 100 - sand - clay


@dataclass
class Soil:
    """Water-balance parameters of each cell (m3/m3 and per day), from texture and cover."""

    porosity: np.ndarray
    fc: np.ndarray  # field capacity
    wp: np.ndarray  # wilting point
    res: np.ndarray  # residual water content
    k_drain: np.ndarray  # fraction of the water above field capacity drained per day
    veg: np.ndarray  # vegetation fraction: transpiration versus bare-soil evaporation

    @cached_property
    def inv_fc_wp(self) -> np.ndarray:
        """1 / (field capacity - wilting point)."""
        return F32(1.0) / (self.fc - self.wp)

    @cached_property
    def inv_fc_res(self) -> np.ndarray:
        """1 / (field capacity - residual content)."""
        return F32(1.0) / (self.fc - self.res)

    @cached_property
    def bare(self) -> np.ndarray:
        """Bare-soil fraction."""
        return F32(1.0) - self.veg


def soil_params(sand, clay, silt, bulk_density, ndvi) -> Soil:
    """Pedotransfer: texture bounds from sand/clay/silt, porosity from bulk density."""
    porosity = 1 - bulk_density / 2.65
    fc = np.minimum(0.07 + 0.0055 * clay + 0.0015 * silt, porosity - 0.05)
    wp = 0.02 + 0.0045 * clay
    res = 0.01 + 0.0015 * clay
    k_drain = 0.25 + 0.6 * sand / 100
    veg = np.clip((ndvi - 0.1) / 0.7, 0, 1)
    return Soil(*(np.asarray(a, dtype=F32) for a in (porosity, fc, wp, res, k_drain, veg)))


def aspect_factor(slope_deg, aspect_cos) -> np.ndarray:
    """Radiation (hence evaporation) factor of a slope: < 1 pole-facing, > 1 equator-facing."""
    steep = np.clip(np.tan(np.radians(slope_deg)) / 0.15, 0, 1)
    return 1 - 0.35 * steep * aspect_cos


def water_balance_step(theta, green, rain_z, pet_z, s: Soil):
    """One day: infiltrate rain (runoff above porosity), drain above field capacity, then
    evapotranspire PET times a moisture limit; ``rain_z``/``pet_z`` are in m3/m3 per day.
    Returns the new (theta, green)."""
    w = np.minimum(theta + rain_z, s.porosity)
    w -= s.k_drain * np.maximum(w - s.fc, F32(0.0))
    # Transpiration stops at the wilting point; bare-soil evaporation dries on towards the
    # residual content, ever more slowly.
    transp = np.minimum(np.maximum((w - s.wp) * s.inv_fc_wp, F32(0.0)), F32(1.0))
    evap = np.minimum(np.maximum((w - s.res) * s.inv_fc_res, F32(0.0)), F32(1.0))
    w -= pet_z * (s.veg * transp + s.bare * evap * evap)
    green = green + (transp - green) * F32(1 / GREENING_DAYS)
    return np.minimum(np.maximum(w, s.res), s.porosity), green


def toa_radiation(lat_deg: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Daily mean top-of-atmosphere shortwave (W m-2), FAO-56, shape (doy, lat)."""
    phi = np.radians(lat_deg)[None, :]
    doy = np.asarray(doy, dtype=float)[:, None]
    dr = 1 + 0.033 * np.cos(2 * np.pi * doy / 365)
    decl = 0.409 * np.sin(2 * np.pi * doy / 365 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1, 1))
    return (
        1361
        / np.pi
        * dr
        * (ws * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(ws))
    )


# ------------------------------------------------------------------ the world over a window


@dataclass(frozen=True)
class Block:
    """CHUNK_DAYS days of one window: the weather, the truth and the vegetation greenness."""

    weather: dict[str, np.ndarray]
    truth: np.ndarray  # (days, rows, cols) surface soil moisture, m3/m3
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
        self.lai_hv_max, self.lai_lv_max, self.albedo0 = (f(_COVER_TABLE[lc, k]) for k in range(3))
        self.smap_bias = f(-0.025 * self.soil.veg + 0.015 * self.noise("smap_bias", 1.0))
        self.smap_gain = f(0.85 + 0.05 * self.noise("smap_gain", 1.0))
        start = (self.soil.wp + self.soil.fc) / 2
        self._checkpoints = {0: (start, np.full_like(start, 0.5))}

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
        season = _BIMODAL[doy - 1].astype(F32)[:, None, None]
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

    def _balance(self, wx, theta, green) -> tuple[np.ndarray, np.ndarray]:
        rain_z, pet_z = wx["rain"] / F32(DEPTH_MM), wx["pet"] / F32(DEPTH_MM)
        out_t, out_g = np.empty_like(rain_z), np.empty_like(rain_z)
        for k in range(rain_z.shape[0]):
            theta, green = water_balance_step(theta, green, rain_z[k], pet_z[k], self.soil)
            out_t[k], out_g[k] = theta, green
        return out_t, out_g

    def chunks(self, first: int, last: int) -> Iterator[Block]:
        """The fixed blocks of CHUNK_DAYS days that cover day numbers first..last, with the
        water balance run from EPOCH (resumed from the nearest cached state)."""
        c0, c1 = first // CHUNK_DAYS, last // CHUNK_DAYS
        k = max(c for c in self._checkpoints if c <= c0)
        theta, green = self._checkpoints[k]
        for c in range(k, c1 + 1):
            days = np.arange(c * CHUNK_DAYS, (c + 1) * CHUNK_DAYS)
            wx = self.weather(days)
            truth, greens = self._balance(wx, theta, green)
            theta, green = truth[-1], greens[-1]
            if (c + 1) % CHECKPOINT_EVERY == 0:
                self._checkpoints[c + 1] = (theta, green)
            if c >= c0:
                yield Block(wx, truth, greens)
