"""Read ECMWF files (ERA5, ERA5-Land; GRIB or netCDF) into plain (valid_time, lat, lon) fields.

Whatever the file, every field comes back the same way: dims ``(valid_time, latitude,
longitude)``, float32, NaN for missing, longitudes folded into -180..180 and ascending,
latitudes as in the file (ECMWF writes them north to south). That lets fields from a GRIB
and a netCDF file of the same grid be merged, and hides the three layouts in use:

- GRIB, read with cfgrib one short name at a time: a plain open of a file holding several
  variables silently drops some of them (``swvl2`` next to ``swvl1`` and ``lsm``, a level
  conflict). Accumulations come as (time, step) forecast hypercubes; they are flattened by
  their valid time. No ``.idx`` file is ever written next to an input.
- netCDF of the old CDS (``time``; an ``expver`` dimension where ERA5T and ERA5 meet).
- netCDF of the new CDS (``valid_time``, an ``expver`` coordinate).

``expver`` tells final ERA5 (``0001``) from the preliminary ERA5T (``0005``).
"""

from __future__ import annotations

# pyproj must be loaded before eccodes: the PROJ library bundled with the eccodes wheels
# otherwise takes its place, and pyproj loses its database (and crashes at exit).
import pyproj  # noqa: F401

# isort: split

import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gsm3_ops.sources.base import CorruptFileError, MissingVariableError

FINAL, PRELIMINARY = "0001", "0005"

# netCDF / cfgrib variable name -> GRIB shortName, where they differ.
_GRIB_SHORT = {"t2m": "2t", "d2m": "2d", "u10": "10u", "v10": "10v", "u100": "100u", "v100": "100v"}

# Variables that only mean something over land: ERA5 carries values over the sea for them.
LAND_ONLY = frozenset(
    {"swvl1", "swvl2", "swvl3", "swvl4", "stl1", "stl2", "stl3", "stl4", "lai_hv", "lai_lv", "sd"}
)

# Time-invariant fields: a file may carry them on their own time axis (one step, any date).
TIME_INVARIANT = frozenset({"lsm", "z", "slt", "cvh", "cvl", "tvh", "tvl", "sdor", "slor"})

_LAT, _LON, _TIME = "latitude", "longitude", "valid_time"
_COORD_DECIMALS = 6  # float32 and float64 coordinates of one grid must compare equal


@dataclass(frozen=True)
class Fields:
    """The fields read from one file, and the ERA5 experiment versions they came from.

    ``expvers`` is empty when the file does not say (netCDF written by other tools).
    """

    data: xr.Dataset
    expvers: frozenset[str]


@dataclass(frozen=True)
class Inventory:
    """What a file holds, read from its headers and coordinates (no field values).

    ``times`` maps each variable (netCDF names) to its valid times (datetime64[ns], as in the
    file); ``expvers`` to the expver of each of those steps (``""`` where the file does not
    say). ``step`` is the grid spacing in degrees (None for a single row and column);
    ``history`` the netCDF global attribute (``""`` for GRIB).
    """

    times: dict[str, np.ndarray]
    expvers: dict[str, np.ndarray]
    step: float | None
    history: str = ""


def file_format(path: Path) -> str:
    """``"grib"`` or ``"netcdf"`` from the file's first bytes (not its name).

    Raises
    ------
    CorruptFileError
        The file is missing, empty, a zip archive, or neither GRIB nor netCDF.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if head.startswith(b"GRIB"):
        return "grib"
    if head.startswith(b"\x89HDF") or head.startswith(b"CDF"):
        return "netcdf"
    if head.startswith(b"PK"):
        raise CorruptFileError(f"{path}: a zip archive; request download_format 'unarchived'")
    what = "empty" if not head else f"starts with {head[:4]!r}"
    raise CorruptFileError(f"{path}: neither GRIB nor netCDF ({what})")


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a zip archive (the CDS sometimes wraps even 'unarchived' output)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def unwrap_zip(path: Path, target: Path) -> None:
    """Write the contents of the zip archive ``path`` to ``target`` as one GRIB or netCDF file.

    GRIB members are joined (a GRIB file is a sequence of messages); netCDF members (the
    CDS writes one per variable) are merged into one netCDF file.
    """
    try:
        with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            files = [Path(zf.extract(m, tmp)) for m in zf.infolist() if not m.is_dir()]
            kinds = {file_format(f) for f in files}
            if kinds == {"grib"}:
                with open(target, "wb") as out:
                    for f in files:
                        out.write(f.read_bytes())
            elif kinds == {"netcdf"} and len(files) == 1:
                os.replace(files[0], target)
            elif kinds == {"netcdf"}:
                parts = [xr.load_dataset(f, engine="netcdf4") for f in files]
                merged = xr.merge(parts, join="exact", compat="override", combine_attrs="drop")
                merged.to_netcdf(target, engine="netcdf4")
            else:
                found = ", ".join(sorted(kinds)) or "no files"
                raise CorruptFileError(f"{path}: a zip of {found}, expected GRIB or netCDF")
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFileError(f"{path}: cannot unpack the zip archive ({exc})") from None


def open_fields(path: Path, names: Sequence[str]) -> Fields:
    """Read variables ``names`` (netCDF names: ``t2m``, ``tp``, ``swvl1`` ...) from ``path``.

    Returns
    -------
    Fields
        Each variable with dims ``(valid_time, latitude, longitude)``, float32.

    Raises
    ------
    CorruptFileError
        Truncated or unreadable file (the path is named).
    MissingVariableError
        A variable is not in the file (file and variable are named).
    """
    path = Path(path)
    if file_format(path) == "grib":
        return _open_grib(path, names)
    return _open_netcdf(path, names)


def grib_inventory(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(short names, expvers) of every message in a GRIB file, from its headers.

    Reads the whole file, so a truncated last message is caught here.
    """
    import eccodes

    try:
        index = eccodes.codes_index_new_from_file(str(path), ["shortName", "expver"])
    except Exception as exc:  # eccodes raises its own hierarchy (PrematureEndOfFileError ...)
        raise CorruptFileError(f"{path}: unreadable GRIB ({_describe(exc)})") from None
    try:
        shorts = frozenset(str(s) for s in eccodes.codes_index_get(index, "shortName"))
        expvers = frozenset(_expver(v) for v in eccodes.codes_index_get(index, "expver"))
    finally:
        eccodes.codes_index_release(index)
    return shorts, expvers - {""}


def variables_in(path: Path) -> frozenset[str]:
    """Names of the variables a file holds (netCDF names: GRIB ``2t`` is ``t2m``)."""
    path = Path(path)
    if file_format(path) == "grib":
        back = {short: name for name, short in _GRIB_SHORT.items()}
        return frozenset(back.get(s, s) for s in grib_inventory(path)[0])
    with _open_nc(path) as ds:
        return frozenset(str(v) for v in ds.data_vars)


def expvers_of(path: Path) -> frozenset[str]:
    """The expvers a file holds (``0001`` final, ``0005`` ERA5T); empty if it does not say."""
    path = Path(path)
    if file_format(path) == "grib":
        return grib_inventory(path)[1]
    with _open_nc(path) as ds:
        if "expver" not in ds.variables:
            return frozenset()
        return frozenset(_expver(v) for v in np.ravel(ds["expver"].values)) - {""}


def inventory(path: Path) -> Inventory:
    """The variables, valid times and expvers of a GRIB or netCDF file, without its values.

    Raises
    ------
    CorruptFileError
        Unreadable, truncated or not GRIB/netCDF (the path is named).
    """
    path = Path(path)
    if file_format(path) == "grib":
        return _grib_inventory_by_time(path)
    with _open_nc(path) as ds:
        return _nc_inventory(ds, path)


def mask_sea(ds: xr.Dataset, lsm: xr.DataArray | None = None, threshold: float = 0.5) -> xr.Dataset:
    """Land-only variables (:data:`LAND_ONLY`) set to NaN where the land-sea mask < threshold.

    ``lsm`` defaults to ``ds["lsm"]``; without one, ``ds`` is returned unchanged (ERA5-Land
    is already missing over the sea).
    """
    if lsm is None:
        if "lsm" not in ds:
            return ds
        lsm = ds["lsm"]
    land = lsm.isel({_TIME: 0}, drop=True) if _TIME in lsm.dims else lsm
    out = ds.copy()
    for name in ds.data_vars:
        if name in LAND_ONLY:
            out[name] = ds[name].where(land >= threshold)
    return out


# --- GRIB --------------------------------------------------------------------------------------


def _open_grib(path: Path, names: Sequence[str]) -> Fields:
    shorts, expvers = grib_inventory(path)
    fields = {}
    for name in names:
        short = _GRIB_SHORT.get(name, name)
        if short not in shorts:
            held = ", ".join(sorted(shorts)) or "nothing"
            raise MissingVariableError(
                f"{path}: no variable {name!r} (GRIB shortName {short!r}); the file holds {held}"
            )
        # Mixed ERA5/ERA5T files are opened one expver at a time, so that cfgrib never sees
        # two experiments in one hypercube.
        parts = (
            [_grib_variable(path, short, e) for e in sorted(expvers)]
            if len(expvers) > 1
            else [_grib_variable(path, short, None)]
        )
        parts = [p for p in parts if p.sizes[_TIME]]
        da = xr.concat(parts, _TIME) if len(parts) > 1 else parts[0]
        fields[name] = _unique_times(da.sortby(_TIME), path).rename(name)
    return Fields(_merge(fields, path), expvers)


def _grib_inventory_by_time(path: Path) -> Inventory:
    """Each message's short name, validity and expver, read from its header only."""
    import eccodes

    back = {short: name for name, short in _GRIB_SHORT.items()}
    rows: list[tuple[str, str, str]] = []
    step = None
    try:
        with open(path, "rb") as f:
            while (h := eccodes.codes_grib_new_from_file(f, headers_only=True)) is not None:
                try:
                    short = str(eccodes.codes_get(h, "shortName"))
                    date = eccodes.codes_get(h, "validityDate")
                    when = f"{date:08d}{eccodes.codes_get(h, 'validityTime'):04d}"
                    expver = _expver(eccodes.codes_get(h, "expver", ktype=str))
                    if step is None and eccodes.codes_get(h, "Nj") > 1:
                        step = float(eccodes.codes_get(h, "jDirectionIncrementInDegrees"))
                finally:
                    eccodes.codes_release(h)
                rows.append((back.get(short, short), when, expver))
    except Exception as exc:  # eccodes raises its own hierarchy (PrematureEndOfFileError ...)
        raise CorruptFileError(f"{path}: unreadable GRIB ({_describe(exc)})") from None
    times: dict[str, list] = {}
    expvers: dict[str, list] = {}
    for name, when, expver in rows:
        stamp = np.datetime64(f"{when[:4]}-{when[4:6]}-{when[6:8]}T{when[8:10]}:{when[10:]}", "ns")
        times.setdefault(name, []).append(stamp)
        expvers.setdefault(name, []).append(expver)
    return Inventory(
        {k: np.array(v, dtype="datetime64[ns]") for k, v in times.items()},
        {k: np.array(v, dtype=str) for k, v in expvers.items()},
        step,
    )


def _grib_variable(path: Path, short: str, expver: str | None) -> xr.DataArray:
    keys: dict[str, str] = {"shortName": short}
    if expver is not None:
        keys["expver"] = expver
    kwargs = {"filter_by_keys": keys, "indexpath": "", "errors": "raise"}
    try:
        with xr.open_dataset(
            path, engine="cfgrib", backend_kwargs=kwargs, decode_timedelta=True
        ) as ds:
            ds = ds.load()
    except Exception as exc:  # cfgrib and eccodes raise many unrelated types
        raise CorruptFileError(f"{path}: cannot read GRIB {short!r} ({_describe(exc)})") from None
    if len(ds.data_vars) != 1:
        raise CorruptFileError(
            f"{path}: GRIB shortName {short!r} gave {len(ds.data_vars)} variables, expected 1"
        )
    da = next(iter(ds.data_vars.values()))
    return _flatten_grib(da, ds["valid_time"], path)


def _flatten_grib(da: xr.DataArray, valid: xr.DataArray, path: Path) -> xr.DataArray:
    """cfgrib's (time, step, ..., lat, lon) -> (valid_time, lat, lon)."""
    if _LAT not in da.dims or _LON not in da.dims:
        raise CorruptFileError(f"{path}: {da.name} is not on a regular lat/lon grid: {da.dims}")
    lead = [d for d in da.dims if d not in (_LAT, _LON)]
    da = da.transpose(*lead, _LAT, _LON)
    n_lat, n_lon = da.sizes[_LAT], da.sizes[_LON]
    values = np.asarray(da.values, dtype=np.float32).reshape(-1, n_lat, n_lon)
    if lead:
        grid = da.isel({_LAT: 0, _LON: 0}, drop=True)
        times = valid.broadcast_like(grid).transpose(*lead).values.ravel()
    else:
        times = np.atleast_1d(valid.values)
    if len(lead) > 1:
        # A (time, step) hypercube holds NaN fields where a combination was not in the file.
        present = ~np.all(np.isnan(values), axis=(1, 2))
        values, times = values[present], times[present]
    return _field(values, times, da[_LAT].values, da[_LON].values, str(da.name), da.attrs)


# --- netCDF ------------------------------------------------------------------------------------


def _open_nc(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path, engine="netcdf4", decode_timedelta=True)
    except Exception as exc:  # netCDF4 raises OSError, RuntimeError, ValueError for bad files
        raise CorruptFileError(f"{path}: unreadable netCDF ({_describe(exc)})") from None


def _open_netcdf(path: Path, names: Sequence[str]) -> Fields:
    fields = {}
    expvers: set[str] = set()
    with _open_nc(path) as ds:
        ds = ds.rename({k: v for k, v in {"lat": _LAT, "lon": _LON}.items() if k in ds.variables})
        for name in names:
            if name not in ds.data_vars:
                held = ", ".join(sorted(map(str, ds.data_vars))) or "nothing"
                raise MissingVariableError(f"{path}: no variable {name!r}; the file holds {held}")
            try:
                da, used = _nc_variable(ds, name, path)
            except (OSError, RuntimeError, ValueError) as exc:
                raise CorruptFileError(f"{path}: cannot read {name!r} ({_describe(exc)})") from None
            fields[name] = da
            expvers |= used
    return Fields(_merge(fields, path), frozenset(expvers))


def _time_of(da: xr.DataArray) -> str | None:
    """The variable's own time axis: a dimension, else a scalar coordinate (one step)."""
    for where in (da.dims, da.coords):
        for name in (_TIME, "time"):
            if name in where:
                return name
    return None


def _nc_inventory(ds: xr.Dataset, path: Path) -> Inventory:
    ds = ds.rename({k: v for k, v in {"lat": _LAT, "lon": _LON}.items() if k in ds.variables})
    times, expvers = {}, {}
    for name, da in ds.data_vars.items():
        time = _time_of(da)
        if time is None or _LAT not in da.dims or _LON not in da.dims:
            continue
        try:
            t = np.atleast_1d(np.asarray(da[time].values, dtype="datetime64[ns]"))
        except (TypeError, ValueError):
            raise CorruptFileError(f"{path}: {name} has undecodable times ({time})") from None
        if "expver" in da.dims:  # old CDS: each step's expver is known only from the values
            e = np.full(t.shape, ",".join(sorted({_expver(v) for v in da["expver"].values})))
        elif "expver" in da.coords:
            stated = np.asarray([_expver(v) for v in np.ravel(da["expver"].values)])
            e = np.broadcast_to(stated, t.shape)
        else:
            e = np.full(t.shape, "")
        times[str(name)], expvers[str(name)] = t, np.asarray(e, dtype=str)
    lat = np.asarray(ds[_LAT].values, dtype=np.float64) if _LAT in ds.variables else np.array([])
    step = round(float(abs(lat[1] - lat[0])), _COORD_DECIMALS) if lat.size > 1 else None
    return Inventory(times, expvers, step, str(ds.attrs.get("history", "")))


def _nc_variable(ds: xr.Dataset, name: str, path: Path) -> tuple[xr.DataArray, set[str]]:
    da = ds[name]
    time = _time_of(da)
    if time is None:
        raise CorruptFileError(f"{path}: {name} has no time (looked for valid_time, time)")
    expvers: set[str] = set()
    if "expver" in da.dims:
        # Old CDS: ERA5 and ERA5T side by side, each NaN where the other holds the data.
        combined = None
        for e in da["expver"].values:
            part = da.sel(expver=e, drop=True)
            if bool(part.notnull().any()):
                expvers.add(_expver(e))
            combined = part if combined is None else combined.combine_first(part)
        da = combined
    elif "expver" in da.coords:
        expvers |= {_expver(e) for e in np.ravel(da["expver"].values)}
    if time not in da.dims:
        da = da.expand_dims(time)
    extra = [d for d in da.dims if d not in (time, _LAT, _LON)]
    for d in extra:
        if da.sizes[d] != 1:
            raise CorruptFileError(f"{path}: {name} has an unexpected dimension {d!r}")
    da = da.isel({d: 0 for d in extra}, drop=True).transpose(time, _LAT, _LON)
    values = np.asarray(da.values, dtype=np.float32)
    times = np.asarray(da[time].values, dtype="datetime64[ns]")
    out = _field(values, times, da[_LAT].values, da[_LON].values, name, da.attrs)
    return _unique_times(out.sortby(_TIME), path), expvers - {""}


# --- shared ------------------------------------------------------------------------------------


def _field(
    values: np.ndarray, times: np.ndarray, lat: np.ndarray, lon: np.ndarray, name: str, attrs
) -> xr.DataArray:
    """A (valid_time, latitude, longitude) field with longitudes folded to -180..180, ascending."""
    lon = np.round(((np.asarray(lon, np.float64) + 180.0) % 360.0) - 180.0, _COORD_DECIMALS)
    order = np.argsort(lon, kind="stable")
    keep = {k: v for k, v in attrs.items() if k in ("units", "long_name", "standard_name")}
    return xr.DataArray(
        values[..., order],
        dims=(_TIME, _LAT, _LON),
        coords={
            _TIME: np.asarray(times, dtype="datetime64[ns]"),
            _LAT: np.round(np.asarray(lat, np.float64), _COORD_DECIMALS),
            _LON: lon[order],
        },
        name=name,
        attrs=keep,
    )


def _unique_times(da: xr.DataArray, path: Path) -> xr.DataArray:
    times = pd.DatetimeIndex(da[_TIME].values)
    if times.has_duplicates:
        dup = times[times.duplicated()][0].isoformat()
        raise CorruptFileError(f"{path}: {da.name} has two fields valid at {dup}")
    return da


def _merge(fields: dict[str, xr.DataArray], path: Path) -> xr.Dataset:
    varying = [da for n, da in fields.items() if n not in TIME_INVARIANT]
    if varying:
        # A land-sea mask stamped with another date than the data: keep it as (lat, lon).
        axis = varying[0][_TIME].values
        fields = {
            n: da.isel({_TIME: 0}, drop=True)
            if n in TIME_INVARIANT and not np.array_equal(da[_TIME].values, axis)
            else da
            for n, da in fields.items()
        }
    try:
        ds = xr.merge(list(fields.values()), join="exact", combine_attrs="drop")
    except (ValueError, xr.MergeError) as exc:
        raise CorruptFileError(f"{path}: variables on different grids ({exc})") from None
    for name, da in fields.items():
        ds[name].attrs = dict(da.attrs)  # merge drops them with the dataset's
    return ds


def _expver(value) -> str:
    """``1``, ``b'0001'``, ``'0005'`` -> ``'0001'``/``'0005'``; ``''`` when unknown."""
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).strip()
    if not text or text.lower() == "nan":
        return ""
    return f"{int(text):04d}" if text.isdigit() else text


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
