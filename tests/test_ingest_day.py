"""Ingesting a day of real gridded sources: writes, skips, failures recorded, secrets kept out."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gsm3_ops.cube import Cube
from gsm3_ops.grid import M09, Window
from gsm3_ops.ops.ingest_day import IngestOptions, already_ingested, ingest_day, ingest_source
from gsm3_ops.sources.base import CorruptFileError, DateNotServedError, Granule, GriddedSource

DOMAIN = Window(800, 2300, 16, 16)
DAY = dt.date(2020, 3, 1)


class FileSource:
    """A gridded source whose raw 'files' are .npy fields; the client writes them."""

    def __init__(
        self, name: str, var: str, client, version: str = "v1", archive: Path | None = None
    ) -> None:
        self.name, self.provides, self.client, self._version = name, (var,), client, version
        self.options = SimpleNamespace(archive=archive)

    def first_date(self) -> dt.date:
        return dt.date(2000, 1, 1)

    def latest_date(self, today: dt.date) -> dt.date:
        return today - dt.timedelta(days=2)

    def version(self, day: dt.date) -> str:
        return self._version

    def fetch(self, day: dt.date, workdir: Path) -> Granule:
        path = workdir / f"{self.name}_{day:%Y%m%d}.npy"
        self.client(day, path)
        return Granule(self.name, day, (path,), self._version)

    def local(self, day: dt.date, directory: Path) -> Granule:
        path = directory / f"{self.name}_{day:%Y%m%d}.npy"
        if not path.exists():
            raise DateNotServedError(f"{self.name}: no file {path} for {day}")
        return Granule(self.name, day, (path,), self._version, ("local",))

    def read(self, granule: Granule) -> xr.Dataset:
        try:
            values = np.load(granule.files[0])
        except (ValueError, OSError) as exc:
            raise CorruptFileError(f"{granule.files[0]}: unreadable ({exc})") from None
        return xr.Dataset({self.provides[0]: (("y", "x"), values)})

    def to_grid(self, native: xr.Dataset, grid, window: Window) -> xr.Dataset:
        coords = {
            "time": pd.to_datetime([DAY]),
            "y": grid.y_centres(window),
            "x": grid.x_centres(window),
        }
        return native.expand_dims("time").assign_coords(coords)


def writer(value: float):
    def client(day: dt.date, path: Path) -> None:
        np.save(path, np.full(DOMAIN.shape, value, dtype=np.float32))

    return client


@pytest.fixture
def cube(tmp_path: Path) -> Cube:
    return Cube.create(
        tmp_path / "cube.zarr", M09, DOMAIN, dt.date(2020, 1, 1), dt.date(2020, 12, 31), 8
    )


def test_protocol_and_write(cube: Cube, tmp_path: Path) -> None:
    src = FileSource("era5_land", "t2m", writer(290.0))
    assert isinstance(src, GriddedSource)
    out = ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path / "raw"))
    assert out.status == "complete" and out.version == "v1"
    np.testing.assert_array_equal(cube.read("forcing", ["t2m"], DAY, DAY)["t2m"].values, 290.0)
    entry = cube.manifest(DAY)["entries"]["forcing/era5_land"]
    assert entry["status"] == "complete" and entry["version"] == "v1"
    assert not (tmp_path / "raw" / "era5_land" / DAY.isoformat()).exists()  # raw removed
    assert already_ingested(cube, src, DAY)
    assert ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path)).status == "skipped"


def test_a_configured_archive_is_read_instead_of_fetching(cube: Cube, tmp_path: Path) -> None:
    archive = tmp_path / "mirror"
    archive.mkdir()
    writer(281.0)(DAY, archive / f"era5_land_{DAY:%Y%m%d}.npy")

    def no_fetch(day: dt.date, path: Path) -> None:
        raise AssertionError("a source with an archive must not fetch")

    src = FileSource("era5_land", "t2m", no_fetch, archive=archive)
    out = ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path / "raw"))
    assert out.status == "complete" and out.notes[0] == "local"
    np.testing.assert_array_equal(cube.read("forcing", ["t2m"], DAY, DAY)["t2m"].values, 281.0)
    assert (archive / f"era5_land_{DAY:%Y%m%d}.npy").is_file()  # the archive is never touched
    assert ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path)).status == "skipped"


def test_corrupt_file_keeps_good_data_and_is_recorded(cube: Cube, tmp_path: Path) -> None:
    ingest_source(
        cube,
        FileSource("era5_land", "t2m", writer(290.0)),
        DAY,
        M09,
        DOMAIN,
        IngestOptions(tmp_path),
    )

    def corrupt(day: dt.date, path: Path) -> None:
        path.write_bytes(b"\x93NUMPY truncated")

    bad = FileSource("era5_land", "t2m", corrupt, version="v2")
    out = ingest_source(cube, bad, DAY, M09, DOMAIN, IngestOptions(tmp_path, force=True))
    assert out.status == "failed" and "CorruptFileError" in out.error and "npy" in out.error
    np.testing.assert_array_equal(cube.read("forcing", ["t2m"], DAY, DAY)["t2m"].values, 290.0)
    doc = cube.manifest(DAY)
    assert doc["failures"]["forcing/era5_land"]["version"] == "v2"
    assert doc["entries"]["forcing/era5_land"]["status"] == "complete"
    # A later good write clears the failure.
    good = FileSource("era5_land", "t2m", writer(291.0), version="v3")
    assert ingest_source(
        cube, good, DAY, M09, DOMAIN, IngestOptions(tmp_path, force=True)
    ).status == ("complete")
    assert "forcing/era5_land" not in cube.manifest(DAY).get("failures", {})


@pytest.mark.parametrize(
    ("value", "reason"),
    [(np.nan, "all NaN"), (29.0, "outside the valid range")],  # 29 K: Celsius given as kelvin?
)
def test_registry_checks_refuse_bad_fields(cube: Cube, tmp_path: Path, value, reason) -> None:
    src = FileSource("era5_land", "t2m", writer(value))
    out = ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path))
    assert out.status == "failed" and reason in out.error and "t2m" in out.error
    assert "2020-03-01" in out.error
    assert "t2m" not in cube.variables("forcing")


def test_one_failing_source_does_not_stop_the_others(cube: Cube, tmp_path: Path) -> None:
    def late(day: dt.date, path: Path) -> None:
        raise DateNotServedError(f"imerg: no granule for {day}")

    sources = [FileSource("imerg", "precip_imerg", late), FileSource("smapx", "smap", writer(0.2))]
    report = ingest_day(cube, sources, DAY, M09, DOMAIN, IngestOptions(tmp_path))
    assert [o.status for o in report.outcomes] == ["failed", "complete"]
    assert not report.ok and report.failed[0].source == "imerg"
    np.testing.assert_allclose(cube.read("smap", ["smap"], DAY, DAY)["smap"].values, 0.2)
    assert "forcing/imerg" in cube.manifest(DAY)["failures"]


def test_local_files_are_used_and_kept(cube: Cube, tmp_path: Path) -> None:
    folder = tmp_path / "offline"
    folder.mkdir()
    np.save(folder / "mswep_20200301.npy", np.full(DOMAIN.shape, 5.0, dtype=np.float32))
    src = FileSource("mswep", "precip_mswep", writer(0.0))
    out = ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path, from_dir=folder))
    assert out.status == "complete" and out.notes == ("local", "coverage:1.0000")
    assert (folder / "mswep_20200301.npy").exists()
    np.testing.assert_array_equal(cube.read("forcing", ["precip_mswep"], DAY, DAY).to_array(), 5)
    missing = ingest_source(
        cube, src, DAY + dt.timedelta(1), M09, DOMAIN, IngestOptions(tmp_path, from_dir=folder)
    )
    assert missing.status == "failed" and "DateNotServedError" in missing.error


def test_credentials_never_reach_errors_logs_or_manifests(
    cube: Cube, tmp_path: Path, monkeypatch, caplog
) -> None:
    secret = "0123abcd-fake-cds-key-9876"
    monkeypatch.setenv("CDSAPI_KEY", secret)
    monkeypatch.setenv("EARTHDATA_PASSWORD", "hunter2-fake-pw")

    def leaky(day: dt.date, path: Path) -> None:
        raise DateNotServedError(f"request with key {secret} / password=hunter2-fake-pw refused")

    caplog.set_level(logging.DEBUG)
    out = ingest_source(
        cube, FileSource("era5", "precip_era5", leaky), DAY, M09, DOMAIN, IngestOptions(tmp_path)
    )
    assert out.status == "failed"
    texts = [out.error, caplog.text, Path(cube.path.parent / "manifests").rglob("*.json")]
    manifests = "".join(p.read_text() for p in texts.pop())
    for text in [*texts, manifests]:
        assert secret not in text and "hunter2-fake-pw" not in text
    assert "***" in out.error


def test_an_empty_smap_day_is_written_as_missing_with_a_note(cube: Cube, tmp_path: Path) -> None:
    out = ingest_source(
        cube, FileSource("smap", "smap", writer(np.nan)), DAY, M09, DOMAIN, IngestOptions(tmp_path)
    )
    assert out.status == "complete" and "empty:smap" in out.notes
    part = cube.manifest(DAY)["entries"]["smap/smap"]["parts"][-1]
    assert part["notes"] == ["coverage:0.0000", "coverage:smap=0.0000", "empty:smap"]
    assert np.isnan(cube.read("smap", ["smap"], DAY, DAY)["smap"].values).all()


def test_transient_fetch_failures_are_retried_permanent_ones_are_not(cube, tmp_path) -> None:
    from gsm3_ops.errors import SourceError
    from gsm3_ops.ops.ingest_day import Retry

    calls = []

    def flaky(day: dt.date, path: Path) -> None:
        calls.append(day)
        if len(calls) < 3:
            raise SourceError("HTTP 503 from the server")
        np.save(path, np.full(DOMAIN.shape, 280.0, dtype=np.float32))

    src = FileSource("era5_land", "t2m", flaky)
    out = ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path, retry=Retry(3, 0.0)))
    assert out.status == "complete" and len(calls) == 3

    calls.clear()

    def late(day: dt.date, path: Path) -> None:
        calls.append(day)
        raise DateNotServedError("not yet")

    src = FileSource("imerg", "precip_imerg", late)
    out = ingest_source(cube, src, DAY, M09, DOMAIN, IngestOptions(tmp_path, retry=Retry(3, 0.0)))
    assert out.status == "failed" and len(calls) == 1


def _part_covered(share: float):
    """A field with values on the first ``share`` of the window's rows only."""

    def client(day: dt.date, path: Path) -> None:
        values = np.full(DOMAIN.shape, 290.0, dtype=np.float32)
        values[round(share * DOMAIN.n_rows) :] = np.nan
        np.save(path, values)

    return client


def test_a_day_covering_part_of_the_window_is_refused_and_its_share_recorded(
    cube: Cube, tmp_path: Path
) -> None:
    opts = IngestOptions(tmp_path / "raw", min_coverage=0.9)
    land = M09.land_mask(DOMAIN)
    out = ingest_source(cube, FileSource("era5_land", "t2m", _part_covered(0.4)), DAY, M09,
                        DOMAIN, opts)  # fmt: skip
    assert out.status == "failed"
    assert (
        "land cells, below sources.min_coverage 90%" in out.error
        and "t2m on 2020-03-01" in out.error
    )
    assert "forcing/era5_land" in cube.manifest(DAY)["failures"]
    # Above the threshold the day is written and its share recorded for the gap-filled cells.
    out = ingest_source(cube, FileSource("era5_land", "t2m", _part_covered(15 / 16)), DAY, M09,
                        DOMAIN, opts)  # fmt: skip
    assert out.status == "complete"
    share = land[:15].sum() / land.sum()
    assert f"coverage:{share:.4f}" in out.notes and f"coverage:t2m={share:.4f}" in out.notes
    part = cube.manifest(DAY)["entries"]["forcing/era5_land"]["parts"][-1]
    assert f"coverage:{share:.4f}" in part["notes"]
