"""The synthetic world's land: analytic terrain, climate, soils, vegetation and the daily water
balance of a cell.

Pure numpy functions of position (and of the seed's hill waves); the world over a window that
drives them day by day is :mod:`gsm3_ops.sources.synthetic_world`. The equations are in
``docs/synthetic-world.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

GREENING_DAYS = 25.0  # time constant of the vegetation greenness response
F32 = np.float32

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
BIMODAL = 0.18 + _cbump(_DOY, 110, 28) + 0.75 * _cbump(_DOY, 315, 24)
BIMODAL = BIMODAL / BIMODAL[:365].mean()


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
COVER_TABLE = np.zeros((17, 3))
for _code, _row in _COVER.items():
    COVER_TABLE[_code] = _row


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
