"""The ``insitu`` group of a data cube: one (site, time) array plus per-site coordinates.

Sites are appended as they first arrive (the group's arrays grow along ``site``; the
``n_sites`` attribute is the commit point, so a killed append leaves no half site) and
existing sites are overwritten in place for the days given. Each write records, per day, the
sha256 of the values it wrote and the rows it wrote them to (``cube/verify.py`` recomputes
it). A chunk that no longer decodes (truncated) is dropped when a write needs to merge into
it, so re-ingesting the days it held repairs it. :class:`gsm3_ops.cube.Cube` delegates
``write_insitu``, ``read_insitu`` and ``read_insitu_values`` here. See ``docs/cube.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.storage import LocalStore

from gsm3_ops.cube.layout import (
    Layout,
    as_date,
    check_label,
    consolidate,
    days_of,
    str_array,
    time_index,
    var_attrs,
)
from gsm3_ops.cube.manifest import CubeError, Manifests, checksum, file_lock, sites_extent
from gsm3_ops.grid import EaseGrid

log = logging.getLogger(__name__)

SITE_CHUNK = 1024
INSITU_TIME_CHUNK = 366
# Per-site coordinates of the insitu group: dtype and fill value; ``site`` is the site id.
SITE_COORDS: dict[str, tuple[Any, Any]] = {
    "site": (str, ""),
    "lat": ("float64", np.nan),
    "lon": ("float64", np.nan),
    "row": ("int64", -1),
    "col": ("int64", -1),
    "network": (str, ""),
    "region": (str, ""),
}


def create_insitu_arrays(insitu: zarr.Group, n_days: int) -> None:
    """The empty arrays of a new store's insitu group: no sites, the whole time axis."""
    insitu.update_attributes({"n_sites": 0})  # the commit point of site appends
    for name, (dtype, fill) in SITE_COORDS.items():
        insitu.create_array(
            name, shape=(0,), chunks=(SITE_CHUNK,), dtype=dtype, fill_value=fill,
            dimension_names=("site",),
        )  # fmt: skip
    insitu.create_array(
        "insitu", shape=(0, n_days), chunks=(SITE_CHUNK, INSITU_TIME_CHUNK), dtype="float32",
        fill_value=np.nan, dimension_names=("site", "time"),
        attributes={**var_attrs("insitu"), "coordinates": " ".join(list(SITE_COORDS)[1:])},
    )  # fmt: skip


@dataclass(frozen=True)
class InsituGroup:
    """The insitu group of the cube at ``path``, read and written through ``store``."""

    path: Path
    grid: EaseGrid
    layout: Layout
    store: LocalStore
    manifests: Manifests

    def write(self, da: xr.DataArray, *, source: str, version: str) -> None:
        """Write in-situ series, dims (site, time): new sites are appended, existing overwritten.

        ``da`` needs a ``site`` coordinate (string ids) and, for sites new to the cube, ``lat``
        and ``lon`` coordinates along ``site`` (degrees); ``network`` and ``region`` are
        optional. ``row``/``col`` are derived from lat/lon and must fall inside the domain.
        """
        check_label(source, "source")
        check_label(version, "version")
        if not isinstance(da, xr.DataArray) or da.ndim != 2 or set(da.dims) != {"site", "time"}:
            dims = getattr(da, "dims", type(da).__name__)
            raise CubeError(f"in-situ data must be a DataArray with dims (site, time), got {dims}")
        da = da.transpose("site", "time")
        if "site" not in da.coords:
            raise CubeError("in-situ data has no 'site' coordinate (site ids)")
        sites = [str(s) for s in da["site"].values]
        if "" in sites or len(set(sites)) != len(sites):
            raise CubeError("in-situ 'site' ids must be non-empty and unique")
        days = days_of(da)
        t_index = np.array(
            [time_index(self.layout, d, "day", self.path) for d in days], dtype=np.int64
        )
        order = np.argsort(t_index)
        days, t_index = [days[i] for i in order], t_index[order]
        contiguous = bool(np.all(np.diff(t_index) == 1))
        t_sel = slice(int(t_index[0]), int(t_index[-1]) + 1) if contiguous else t_index

        # One writer at a time: appends resize the arrays, and chunks span many days.
        with file_lock(self.manifests.root / ".insitu.lock"):
            group = self._group(mode="r+")
            n_sites = int(group.attrs["n_sites"])
            index = {s: i for i, s in enumerate(str_array(group["site"][:n_sites]))}
            new = [s for s in sites if s not in index]
            self._check_known_sites(da, sites, index, group)
            new_coords = self._new_site_coords(da, sites, new)
            index.update({s: n_sites + i for i, s in enumerate(new)})  # the rows they get
            rows = np.array([index[s] for s in sites], dtype=np.int64)

            paths = [self.manifests.day_path(d) for d in days]
            write_id = self.manifests.begin(
                paths, group="insitu", source=source, version=version, variables=["insitu"],
                extent=sites_extent(sites, rows),
            )  # fmt: skip
            if new:
                self._append_sites(group, n_sites, new_coords)
            site_order = np.argsort(rows)
            values = np.asarray(da.data, dtype=np.float32)[site_order][:, order]
            self._write_values(group["insitu"], rows[site_order], t_sel, values, days)
            sums = {path: {"insitu": checksum(values[:, i])} for i, path in enumerate(paths)}
            self.manifests.finish(sums, group="insitu", source=source, write_id=write_id)

    def read(self, start: date, end: date) -> xr.DataArray:
        """In-situ series for ``start..end``, dims (site, time), with the site coordinates."""
        start, end = as_date(start), as_date(end)
        if end < start:
            raise CubeError(f"read of 'insitu': end {end} is before start {start}")
        t0 = time_index(self.layout, start, "start", self.path)
        t1 = time_index(self.layout, end, "end", self.path) + 1
        group = self._group(mode="r")
        n = int(group.attrs["n_sites"])
        coords: dict[str, Any] = {
            name: ("site", str_array(group[name][:n]) if dtype is str else group[name][:n])
            for name, (dtype, _) in SITE_COORDS.items()
        }
        coords["time"] = pd.date_range(start, end, freq="D", unit="ns")
        values = np.asarray(group["insitu"][:n, t0:t1], dtype=np.float32)
        return xr.DataArray(
            values, dims=("site", "time"), coords=coords, name="insitu",
            attrs={**var_attrs("insitu"), "grid": self.grid.name, "cube": str(self.path)},
        )  # fmt: skip

    def read_values(self, start: date, end: date) -> tuple[np.ndarray, np.ndarray]:
        """The (site, time) values of ``start..end`` read chunk by chunk, NaN in chunks that
        no longer decode, and the mask of those values: what verification reads."""
        t0 = time_index(self.layout, as_date(start), "start", self.path)
        t1 = time_index(self.layout, as_date(end), "end", self.path) + 1
        group = self._group(mode="r")
        n = int(group.attrs["n_sites"])
        array = group["insitu"]
        values = np.full((n, t1 - t0), np.nan, dtype=np.float32)
        unreadable = np.zeros(values.shape, dtype=bool)
        for rows, times in _chunk_regions(array, n, slice(t0, t1)):
            at = (rows, slice(times.start - t0, times.stop - t0))
            try:
                values[at] = array[rows, times]
            except Exception:  # a truncated or garbled chunk
                unreadable[at] = True
        return values, unreadable

    def _write_values(
        self,
        array: zarr.Array,
        rows: np.ndarray,
        times: slice | np.ndarray,
        values: np.ndarray,
        days: list[date],
    ) -> None:
        """``values`` into ``array`` at ``rows`` x ``times``; a chunk there that no longer
        decodes (zarr merges a partial write into it) is dropped and the write tried again."""

        def failed(exc: Exception) -> CubeError:
            return CubeError(
                f"writing insitu for {days[0]}..{days[-1]} into {self.path} failed: {exc}"
            )

        try:
            array.oindex[rows, times] = values
        except Exception as exc:
            dropped = self._drop_undecodable(array, rows, times)
            if not dropped:
                raise failed(exc) from exc
            log.warning(
                "insitu chunks %s of %s no longer decode: dropped before rewriting them (their "
                "other days and sites read as missing until ingested again)",
                ", ".join(dropped), self.path,
            )  # fmt: skip
            try:
                array.oindex[rows, times] = values
            except Exception as again:
                raise failed(again) from again

    def _drop_undecodable(
        self, array: zarr.Array, rows: np.ndarray, times: slice | np.ndarray
    ) -> list[str]:
        """Delete the chunks under ``rows`` x ``times`` that fail to decode; their keys."""
        t = np.arange(times.start, times.stop) if isinstance(times, slice) else times
        site_chunk, time_chunk = array.chunks
        dropped = []
        for i in np.unique(rows // site_chunk):
            for j in np.unique(t // time_chunk):
                region = (
                    slice(i * site_chunk, min((i + 1) * site_chunk, array.shape[0])),
                    slice(j * time_chunk, min((j + 1) * time_chunk, array.shape[1])),
                )
                try:
                    array[region]
                except Exception:
                    key = array.metadata.encode_chunk_key((int(i), int(j)))
                    (self.path / "insitu" / "insitu" / key).unlink(missing_ok=True)
                    dropped.append(key)
        return dropped

    def _group(self, mode: str) -> zarr.Group:
        """The insitu group read from its own metadata (shapes change as sites are added)."""
        return zarr.open_group(self.store, path="insitu", mode=mode, use_consolidated=False)

    def _check_known_sites(
        self, da: xr.DataArray, sites: list[str], index: dict[str, int], group: zarr.Group
    ) -> None:
        """CubeError when a site already in the cube comes with another lat/lon."""
        known = [(i, index[s]) for i, s in enumerate(sites) if s in index]
        if not known:
            return
        given_at, stored_at = (np.array(a) for a in zip(*known, strict=True))
        for name in ("lat", "lon"):
            if name not in da.coords:
                continue
            given = np.asarray(da[name].values, dtype=np.float64)[given_at]
            stored = group[name].oindex[stored_at]
            moved = ~np.isclose(given, stored, rtol=0, atol=1e-6)
            if moved.any():
                names = [sites[i] for i in given_at[moved][:5]]
                raise CubeError(f"in-situ sites {names} already in {self.path} with another {name}")

    def _new_site_coords(
        self, da: xr.DataArray, sites: list[str], new: list[str]
    ) -> dict[str, np.ndarray]:
        """Coordinates of sites new to the cube; CubeError if lat/lon are missing or outside."""
        if not new:
            return {}
        at = np.array([sites.index(s) for s in new])
        for name in ("lat", "lon"):
            if name not in da.coords or da[name].dims != ("site",):
                raise CubeError(f"new in-situ sites {new[:5]} need a {name!r} coordinate on 'site'")
        lat = np.asarray(da["lat"].values, dtype=np.float64)[at]
        lon = np.asarray(da["lon"].values, dtype=np.float64)[at]
        row, col = self.grid.lonlat_to_rowcol(lon, lat)
        d = self.layout.domain
        outside = ~(
            np.isfinite(lat) & np.isfinite(lon)
            & (row >= d.row0) & (row < d.row0 + d.n_rows)
            & (col >= d.col0) & (col < d.col0 + d.n_cols)
        )  # fmt: skip
        if outside.any():
            names = [new[i] for i in np.flatnonzero(outside)[:5]]
            raise CubeError(f"in-situ sites {names} lie outside the domain {d} of {self.path}")
        coords = {
            "site": np.array(new, dtype=object),
            "lat": lat,
            "lon": lon,
            "row": row,
            "col": col,
        }
        for name in ("network", "region"):
            values = da[name].values[at] if name in da.coords else np.full(len(new), "")
            coords[name] = np.array([str(v) for v in values], dtype=object)
        return coords

    def _append_sites(self, group: zarr.Group, n_sites: int, coords: dict[str, np.ndarray]) -> None:
        """Grow the insitu arrays by the new sites; the ``n_sites`` attribute commits them."""
        n_total = n_sites + len(coords["site"])
        # Under the metadata lock, so no other process consolidates half an append.
        with file_lock(self.manifests.root / ".metadata.lock"):
            data = group["insitu"]
            data.resize((n_total, data.shape[1]))  # also drops rows of a killed append
            for name in SITE_COORDS:
                group[name].resize((n_total,))
                group[name][n_sites:n_total] = coords[name]
            # Readers take the first n_sites rows, so a killed append leaves no half site.
            group.update_attributes({"n_sites": n_total})
            consolidate(self.store)


def _chunk_regions(array: zarr.Array, n_rows: int, times: slice) -> list[tuple[slice, slice]]:
    """The parts of ``array[:n_rows, times]`` that each lie in one chunk."""
    site_chunk, time_chunk = array.chunks
    first = times.start - times.start % time_chunk
    return [
        (slice(r, min(r + site_chunk, n_rows)),
         slice(max(t, times.start), min(t + time_chunk, times.stop)))
        for r in range(0, n_rows, site_chunk)
        for t in range(first, times.stop, time_chunk)
    ]  # fmt: skip
