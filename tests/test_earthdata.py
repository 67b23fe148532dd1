"""The shared Earthdata helper: exact requests, lazy login with fallback, credentials kept out."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from gsm3_ops.errors import SourceError
from gsm3_ops.sources.base import DateNotServedError
from gsm3_ops.sources.earthdata import (
    Earthdata,
    EarthdataLoginError,
    granule_name,
    pick_files,
    scrub,
)
from tests.earthdata_fakes import FakeEarthaccess, FakeGranule, search_keys

DAY = dt.date(2021, 6, 30)
USER, PASSWORD, TOKEN = "fake-user-7f3a", "fake-pass-c0ffee", "fake-token-1b2c3d4e"


@pytest.fixture()
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARTHDATA_USERNAME", USER)
    monkeypatch.setenv("EARTHDATA_PASSWORD", PASSWORD)
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)


def _files(tmp_path: Path, *names: str) -> list[Path]:
    paths = []
    for n in names:
        p = tmp_path / "srv" / n
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"\x89HDF\r\n\x1a\n" + n.encode())
        paths.append(p)
    return paths


def test_search_request_is_exact_and_filters_other_days(tmp_path: Path) -> None:
    files = _files(
        tmp_path, "SMAP_L3_SM_P_E_20210629_R19240_001.h5", "SMAP_L3_SM_P_E_20210630_R19240_001.h5"
    )
    fake = FakeEarthaccess({("SPL3SMP_E", "006"): files})
    found = Earthdata(fake).search(
        "SPL3SMP_E", "006", DAY, (10.0, -5.0, 20.0, 5.0), name_contains="_20210630_"
    )
    assert [granule_name(g) for g in found] == ["SMAP_L3_SM_P_E_20210630_R19240_001.h5"]
    assert search_keys(fake) == [
        (
            "SPL3SMP_E",
            "006",
            ("2021-06-30T00:00:00Z", "2021-06-30T23:59:59Z"),
            (10.0, -5.0, 20.0, 5.0),
            -1,
        )
    ]
    assert fake.logins == []  # searching needs no login


def test_require_names_short_name_and_date() -> None:
    with pytest.raises(DateNotServedError, match=r"no MYD11A1 version 061 granule .*2021-06-30"):
        Earthdata(FakeEarthaccess()).require("MYD11A1", "061", DAY)


def test_login_once_environment_first(tmp_path: Path) -> None:
    files = _files(tmp_path, "a.h5")
    fake = FakeEarthaccess({("X", "1"): files})
    ed = Earthdata(fake)
    for k in range(2):
        got = ed.download(ed.search("X", "1", DAY), tmp_path / f"w{k}", "X 1")
        assert [p.name for p in got] == ["a.h5"] and got[0].read_bytes() == files[0].read_bytes()
    assert fake.logins == ["environment"]
    assert fake.downloads[0] == (["a.h5"], str(tmp_path / "w0"))


def test_login_falls_back_to_netrc(tmp_path: Path) -> None:
    fake = FakeEarthaccess(
        {("X", "1"): _files(tmp_path, "a.h5")},
        login_results={"environment": RuntimeError("no env vars"), "netrc": True},
    )
    ed = Earthdata(fake)
    ed.download(ed.search("X", "1", DAY), tmp_path / "w", "X 1")
    assert fake.logins == ["environment", "netrc"]


def test_login_failure_is_clear_and_scrubbed(tmp_path: Path, creds: None) -> None:
    fake = FakeEarthaccess(
        {("X", "1"): _files(tmp_path, "a.h5")},
        login_results={
            "environment": RuntimeError(f"401 for {USER}:{PASSWORD} token={TOKEN}"),
            "netrc": False,
        },
    )
    ed = Earthdata(fake)
    with pytest.raises(EarthdataLoginError) as err:
        ed.download(ed.search("X", "1", DAY), tmp_path / "w", "X 1")
    text = str(err.value)
    assert "EARTHDATA_TOKEN" in text and "netrc: credentials rejected" in text
    for secret in (USER, PASSWORD, TOKEN):
        assert secret not in text
    assert fake.downloads == []


def test_download_error_is_scrubbed_in_errors_and_logs(
    tmp_path: Path, creds: None, caplog: pytest.LogCaptureFixture
) -> None:
    boom = ConnectionError(f"https://{USER}:{PASSWORD}@example.invalid/a.h5?token={TOKEN} 403")
    fake = FakeEarthaccess({("X", "1"): _files(tmp_path, "a.h5")}, download_error=boom)
    ed = Earthdata(fake)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError, match="X 1 on day: download failed") as err:
        ed.download(ed.search("X", "1", DAY), tmp_path / "w", "X 1 on day")
    for secret in (USER, PASSWORD, TOKEN):
        assert secret not in str(err.value)
        assert secret not in caplog.text


def test_scrub_masks_every_credential(creds: None) -> None:
    text = scrub(f"user {USER} pass {PASSWORD} tok {TOKEN}")
    assert text == "user *** pass *** tok ***"


def test_short_download_is_an_error(tmp_path: Path) -> None:
    class Dropping(FakeEarthaccess):
        def download(self, granules: list[FakeGranule], local_path: str) -> list[str]:
            return super().download(granules, local_path)[:1]

    fake = Dropping({("X", "1"): _files(tmp_path, "a.h5", "b.h5")})
    ed = Earthdata(fake)
    with pytest.raises(SourceError, match=r"2 granule\(s\) found but 1 file\(s\) downloaded"):
        ed.download(ed.search("X", "1", DAY), tmp_path / "w", "X 1")


def test_search_failure_is_a_source_error(creds: None) -> None:
    class Failing(FakeEarthaccess):
        def search_data(self, **kwargs: object) -> list[FakeGranule]:
            raise TimeoutError(f"CMR timeout for {USER}")

    with pytest.raises(SourceError, match="Earthdata search for X 1 on 2021-06-30") as err:
        Earthdata(Failing()).search("X", "1", DAY)
    assert USER not in str(err.value)


def test_granule_name_and_pick_files(tmp_path: Path) -> None:
    assert granule_name({"meta": {"native-id": "GPM_3IMERGDF.07:3B-DAY.x.nc4"}}) == "3B-DAY.x.nc4"
    assert granule_name(object()) is None
    paths = [tmp_path / "a.h5", tmp_path / "a.qa", tmp_path / "a.h5.xml"]
    assert pick_files(paths, (".h5",), "w") == [tmp_path / "a.h5"]
    with pytest.raises(SourceError, match=r"no \.hdf file among the downloads \(a\.h5, a\.qa"):
        pick_files(paths, (".hdf",), "w")
