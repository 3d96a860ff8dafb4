"""EOG VNL monthly: listing, OpenID Connect, crop and cache, end to end to a verdict."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest
import rasterio

from pipeline.cli import main
from pipeline.config import load_data_settings
from pipeline.errors import AuthError
from pipeline.fetch import download_months
from pipeline.fetch import http as download
from pipeline.fetch.eog import EogAuth, listing_names, pick, tile_for
from pipeline.fetch.http import get, make_session
from pipeline.read.sources import find_monthly_rasters
from tests.loopback import (
    EOG_RES,
    EOG_SITES,
    OTHER_HOST,
    TOKEN_PATH,
    Loopback,
    eog_month_dir,
    eog_name,
    eog_window,
    geotiff_bytes,
    needs_other_host,
    populate_eog,
    radiance_field,
    sites_geojson,
)

BBOX = (125.1, 39.1, 125.6, 39.6)
OIDC = {
    "client_id": "nl-client",
    "client_secret": "cs-zq4242",
    "username": "me@example.org",
    "password": "pw-zq4242",
}


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "BACKOFF_FACTOR", 0.0)
    for var in (
        "EOG_TOKEN",
        "EOG_CLIENT_ID",
        "EOG_CLIENT_SECRET",
        "EOG_USERNAME",
        "EOG_PASSWORD",
        "EARTHDATA_TOKEN",
        "NIGHTLIGHTS_EOG_URL",
        "NIGHTLIGHTS_EOG_TOKEN_URL",
        "NIGHTLIGHTS_LAADS_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIGHTLIGHTS_CONFIG", str(tmp_path / "no-config.yaml"))


@pytest.fixture
def lb(monkeypatch):
    with Loopback() as server:
        server.protect("/nighttime_light/", "login")
        server.state.oidc.update(OIDC)
        monkeypatch.setenv("NIGHTLIGHTS_EOG_URL", server.url + "/nighttime_light")
        monkeypatch.setenv("NIGHTLIGHTS_EOG_TOKEN_URL", server.url + TOKEN_PATH)
        yield server


def _login(monkeypatch):
    for k, v in OIDC.items():
        monkeypatch.setenv(f"EOG_{k.upper()}", v)


def test_listing_picks_month_tile_config_and_newest_stamp():
    html = "".join(
        f'<a href="{n}">{n}</a>'
        for n in [
            eog_name(2024, 3, stamp="202404101100") + ".tgz",
            eog_name(2024, 3, stamp="202405020900") + ".tgz",
            eog_name(2024, 3, tile="00N060E") + ".tgz",
            eog_name(2024, 3, cfg="vcmcfg") + ".tgz",
            eog_name(2024, 4) + ".tgz",
            "../",
        ]
    )
    names = listing_names(html)
    assert "../" not in names
    assert pick(names, 2024, 3, r"75N060E_vcmslcfg_v10_c\d{12,14}\.tgz") == [
        eog_name(2024, 3, stamp="202405020900") + ".tgz",
        eog_name(2024, 3, stamp="202404101100") + ".tgz",
    ]


def test_tile_for_box():
    assert tile_for((124.0, 37.5, 131.0, 43.0)) == "75N060E"
    assert tile_for((-70.0, 10.0, -50.0, 20.0)) is None  # straddles 60W: no-tile file


def test_oidc_token_is_renewed_after_expiry(lb, monkeypatch):
    _login(monkeypatch)
    lb.add("/nighttime_light/x.bin", b"data")
    session = make_session()
    auth = EogAuth(load_data_settings(), session)
    assert get(session, lb.url + "/nighttime_light/x.bin", auth).content == b"data"
    lb.expire_tokens()  # the server forgets the 5-minute token
    lb.protect("/nighttime_light/", "401")
    assert get(session, lb.url + "/nighttime_light/x.bin", auth).content == b"data"
    assert lb.state.grants == ["password", "refresh_token"]


def test_wrong_password_names_the_fix_not_the_secret(lb, monkeypatch, tmp_path):
    _login(monkeypatch)
    monkeypatch.setenv("EOG_PASSWORD", "wrong-zq999")
    populate_eog(lb, (2021,))
    with pytest.raises(AuthError, match="refused the credentials") as e:
        download_months("eog", [(2021, 1)], BBOX, tmp_path, progress=False)
    assert "zq" not in str(e.value) and "EOG_PASSWORD" in str(e.value)


def test_login_page_without_credentials_is_an_auth_error(lb, tmp_path):
    populate_eog(lb, (2021,))
    with pytest.raises(AuthError, match=r"authentication failed: .*login page.*EOG_TOKEN"):
        download_months("eog", [(2021, 1)], BBOX, tmp_path, progress=False)


def test_expired_static_token(lb, tmp_path, monkeypatch):
    monkeypatch.setenv("EOG_TOKEN", "tok-EXPIRED-777")
    lb.protect("/nighttime_light/", "401")
    populate_eog(lb, (2021,))
    with pytest.raises(AuthError, match="EOG_TOKEN was refused") as e:
        download_months("eog", [(2021, 1)], BBOX, tmp_path, progress=False)
    assert "tok-EXPIRED-777" not in str(e.value)


def test_cached_pair_is_a_cropped_georeferenced_cog(lb, tmp_path, monkeypatch, caplog):
    _login(monkeypatch)
    populate_eog(lb, (2021,))
    lb.state.files = {
        k: v for k, v in lb.state.files.items() if "/202105/" not in k
    }  # May not published
    months = [(2021, 4), (2021, 5), (2021, 7)]
    with caplog.at_level(logging.WARNING):
        folder, outcome = download_months("eog", months, BBOX, tmp_path, progress=False)
    assert outcome["downloaded"] == ["2021-04", "2021-07"] and outcome["not_published"] == [
        "2021-05"
    ]
    assert "2021-05: not published" in caplog.text
    rasters = find_monthly_rasters(folder)
    assert [r.month for r in rasters] == ["2021-04", "2021-07"] and rasters[0].aux_kind == "cf_cvg"
    west, north, w, h = eog_window([(lon, lat) for _, lon, lat in EOG_SITES])
    expected = radiance_field(west, north, EOG_RES, (h, w), [], 0)  # only for the shape
    with rasterio.open(rasters[0].radiance) as ds:
        assert (
            ds.profile["tiled"]
            and ds.block_shapes == [(256, 256)]
            and ds.compression.name == "deflate"
        )
        assert ds.crs.to_epsg() == 4326
        b = ds.bounds
        tol = 1e-9
        assert b.left <= BBOX[0] + tol and b.bottom <= BBOX[1] + tol and b.right >= BBOX[2] - tol
        assert b.top >= BBOX[3] - tol
        assert b.left - BBOX[0] > -EOG_RES and BBOX[3] - b.top > -EOG_RES  # whole pixels, no more
        # on the real grid: whole 15" steps from the 75N060E corner
        assert abs(((b.left - 60) / EOG_RES) - round((b.left - 60) / EOG_RES)) < 1e-6
        col, row = round((b.left - west) / EOG_RES), round((north - b.top) / EOG_RES)
        got = ds.read(1)
    from tests.loopback import _peaks

    full = radiance_field(
        west, north, EOG_RES, expected.shape, _peaks(EOG_SITES, 2021, 2021), 2021 * 100 + 4
    )
    np.testing.assert_array_equal(got, full[row : row + got.shape[0], col : col + got.shape[1]])
    with rasterio.open(rasters[1].aux) as ds:
        assert ds.read(1).max() == 2  # July: the low cloud-free count served
    manifest = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert len(manifest) == 4
    assert all(
        v["sources"][0]["url"].startswith(lb.url + "/nighttime_light/monthly/v10/")
        for v in manifest.values()
    )


def test_reprocessed_month_replaces_the_old_pair(lb, tmp_path, monkeypatch):
    _login(monkeypatch)
    populate_eog(lb, (2021,))
    download_months("eog", [(2021, 3)], BBOX, tmp_path, progress=False)
    folder = eog_month_dir(2021, 3)
    old = folder + eog_name(2021, 3) + ".tgz"
    lb.add(folder + eog_name(2021, 3, stamp="202112011200") + ".tgz", lb.state.files[old])
    (tmp_path / "manifest.json").write_text(
        json.dumps({"files": {}})
    )  # forget: force a re-download
    download_months("eog", [(2021, 3)], BBOX, tmp_path, progress=False)
    assert len(find_monthly_rasters(tmp_path / "eog" / "vcmslcfg")) == 1


def test_notile_tree_when_no_tiled_file(lb, tmp_path, monkeypatch):
    _login(monkeypatch)
    west, north, w, h = eog_window([(lon, lat) for _, lon, lat in EOG_SITES])
    rad = radiance_field(west, north, EOG_RES, (h, w), [(125.3, 39.3, 5.0)], 7)
    stem = eog_name(2021, 8, tile="global")
    folder = eog_month_dir(2021, 8, tree="monthly_notile")
    lb.add(
        folder + stem + ".avg_rade9h.tif.gz",
        gzip.compress(geotiff_bytes(rad, west, north, EOG_RES)),
    )
    lb.add(
        folder + stem + ".cf_cvg.tif.gz",
        gzip.compress(geotiff_bytes(np.full((h, w), 9, "uint16"), west, north, EOG_RES)),
    )
    folder_out, outcome = download_months("eog", [(2021, 8)], BBOX, tmp_path, progress=False)
    assert outcome["downloaded"] == ["2021-08"]
    [r] = find_monthly_rasters(folder_out)
    assert r.radiance.name == stem + ".avg_rade9h.tif" and r.aux.name == stem + ".cf_cvg.tif"


def test_download_then_run_gives_a_real_verdict_without_leaking_the_token(
    lb, tmp_path, monkeypatch, capsys, caplog
):
    token = "tok-DISTINCTIVE-5e1f"
    lb.protect("/nighttime_light/", "401")
    lb.allow_token(token)
    monkeypatch.setenv("EOG_TOKEN", token)
    years = (2020, 2021, 2022)
    populate_eog(lb, years)
    sites = tmp_path / "sites.geojson"
    sites.write_text(sites_geojson(EOG_SITES))
    data, out = tmp_path / "data", tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    assert (
        main(
            [
                "download",
                "--source",
                "eog",
                "--start",
                "2020-01",
                "--end",
                "2020-06",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "run",
                "--source",
                "eog",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
                "--out",
                str(out),
                "--baseline-year",
                "2021",
                "--target-year",
                "2022",
                "--no-sensitivity",
                "--no-figures",
            ]
        )
        == 0
    )
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["data_kind"] == "real"
    assert len(lb.requests("/202001/vcmslcfg/SVDNB")) == 1  # the first download was reused by run
    changes = (out / "site_changes.csv").read_text()
    assert "alpha" in changes and "brightened" in changes and "dimmed" in changes
    captured = capsys.readouterr()
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert leaked == [] and token not in captured.out + captured.err + caplog.text


# --------------------------------------------------------------------------- credentials go only where meant


@needs_other_host
@pytest.mark.parametrize("code", ["307", "308", "302"])
def test_password_grant_never_follows_a_redirect_to_another_host(monkeypatch, code):
    """The token endpoint answering 307 to another host: nothing is sent there, no token from it is used."""
    with Loopback(cdn_host=OTHER_HOST) as lb:
        lb.state.oidc.update(OIDC)
        monkeypatch.setenv("NIGHTLIGHTS_EOG_TOKEN_URL", lb.url + TOKEN_PATH)
        _login(monkeypatch)
        lb.fault(TOKEN_PATH, code)
        auth = EogAuth(load_data_settings(), make_session())
        with pytest.raises(
            AuthError,
            match=r"redirected \(HTTP \d+\) to http://127\.0\.0\.2:\d+/realms.*nothing "
            r"was sent there",
        ) as e:
            auth.headers()
        assert not lb.requests(server="cdn")  # no request at all reached the other host
        assert lb.state.grants == []  # and no token was issued to us there
        assert all(v not in str(e.value) for v in ("pw-zq4242", "cs-zq4242"))


def test_password_grant_follows_a_same_origin_307(lb, monkeypatch):
    _login(monkeypatch)
    lb.fault(TOKEN_PATH, "307-self")
    auth = EogAuth(load_data_settings(), make_session())
    assert auth.headers()["Authorization"].startswith("Bearer acc-")
    assert [r.method for r in lb.requests(TOKEN_PATH)] == ["POST", "POST"] and lb.state.grants == [
        "password"
    ]


@needs_other_host
def test_eog_token_never_follows_a_redirect_to_another_host(monkeypatch, tmp_path):
    with Loopback(cdn_host=OTHER_HOST) as lb:
        monkeypatch.setenv("NIGHTLIGHTS_EOG_URL", lb.url + "/nighttime_light")
        monkeypatch.setenv("EOG_TOKEN", "tok-eog-zq77")
        lb.allow_token("tok-eog-zq77")
        lb.protect("/nighttime_light/", "401")
        populate_eog(lb, (2021,))
        lb.state.redirect_prefixes.append("/nighttime_light/")  # files: 302 to 127.0.0.2
        with pytest.raises(AuthError):
            download_months("eog", [(2021, 1)], BBOX, tmp_path, progress=False)
        cdn = lb.requests(server="cdn")
        assert cdn and all(r.authorization is None for r in cdn)


def test_each_provider_token_stays_with_its_provider():
    from pipeline.fetch.http import PROVIDER_HOSTS, _keeps_token

    eog, nasa = PROVIDER_HOSTS["eog"], PROVIDER_HOSTS["blackmarble"]
    data = "https://eogdata.mines.edu/nighttime_light/monthly/v10/2024/202401/vcmslcfg/x.tgz"
    laads = "https://ladsweb.modaps.eosdis.nasa.gov/archive/allData/5200/VNP46A3/2024/001/x.h5"
    assert _keeps_token(data, "https://eogdata.mines.edu/other.tgz", eog)
    assert not _keeps_token(
        data, "https://ladsweb.modaps.eosdis.nasa.gov/x", eog
    )  # an EOG token to NASA: never
    assert not _keeps_token(data, "https://evil.mines.edu/x", eog)  # no suffix wildcard
    assert _keeps_token(
        laads, "https://data.laadsdaac.earthdatacloud.nasa.gov/prod-lads/VNP46A3/x.h5", nasa
    )
    assert not _keeps_token(
        laads, "https://eogdata.mines.edu/x", nasa
    )  # an Earthdata token to EOG: never
    assert not _keeps_token(laads, "https://attacker.nasa.gov/x", nasa)
    assert not _keeps_token("http://127.0.0.1:8001/x", "http://127.0.0.2:8001/x", nasa)
    assert not _keeps_token("http://127.0.0.1:8001/x", "http://localhost:8001/x", nasa)
    assert _keeps_token(
        "http://127.0.0.1:8001/data/x", "http://127.0.0.1:8002/data/x", nasa
    )  # same host


# --------------------------------------------------------------------------- archive bombs (issue 24)


def _bomb_tgz(stem: str, size: int) -> bytes:
    """A valid archive whose avg_rade9h member is ``size`` zero bytes (gzip makes ~1/1000 of it)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo(f"{stem}.avg_rade9h.tif")
        info.size = size
        tf.addfile(info, io.BytesIO(bytes(size)))
    return buf.getvalue()


def test_archive_member_over_the_unpack_budget_is_refused_before_writing(lb, tmp_path, monkeypatch):
    """Before: a 306 KB archive unpacked until the disk was full and left a 64 MB part file."""
    from pipeline.errors import DownloadError
    from pipeline.fetch import eog

    _login(monkeypatch)
    monkeypatch.setattr(eog, "UNPACK_FLOOR", 1 << 20)  # so the test archive can be small
    stem = eog_name(2021, 3)
    data = _bomb_tgz(stem, 8 << 20)
    assert len(data) < 60_000
    lb.add(eog_month_dir(2021, 3) + stem + ".tgz", data)
    with pytest.raises(DownloadError) as caught:
        download_months("eog", [(2021, 3)], BBOX, tmp_path, progress=False)
    archive = tmp_path / "raw" / "eog" / "vcmslcfg" / f"{stem}.tgz"
    assert str(caught.value) == (
        f"{archive}: member {stem}.avg_rade9h.tif unpacks to 8.0 MB, more than the "
        f"{download.human_size(eog.unpack_budget(len(data)))} allowed for an "
        f"archive of {download.human_size(len(data))} (a real EOG layer is about 2 GB); the file is damaged "
        "or not from EOG: delete it and download again"
    )
    assert not list(tmp_path.rglob("*.extracted")) and not list(tmp_path.rglob("*.tif"))


def test_unpack_stops_at_the_budget_when_the_bytes_outrun_the_header(tmp_path):
    import io
    import tarfile

    from pipeline.errors import DownloadError
    from pipeline.fetch.eog import unpack_member

    class Lying:
        def extractfile(self, member):
            return io.BytesIO(bytes(5 << 20))  # 5 MB where the header says 10 bytes

    member = tarfile.TarInfo("x.avg_rade9h.tif")
    member.size = 10
    archive = tmp_path / "a.tgz"
    archive.write_bytes(b"0" * 100)
    with pytest.raises(DownloadError, match=r"unpacks to more than 1\.0 MB"):
        unpack_member(Lying(), member, tmp_path / "x.extracted", 1 << 20, archive)
    assert (
        tmp_path / "x.extracted"
    ).stat().st_size <= 1 << 20  # stopped there; the caller removes it


def test_full_disk_while_unpacking_leaves_no_part_file(lb, tmp_path, monkeypatch):
    import errno
    import tarfile

    _login(monkeypatch)
    populate_eog(lb, (2021,))

    class FullDisk:
        def __init__(self, real):
            self.real, self.n = real, 0

        def read(self, n):
            self.n += 1
            if self.n > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.real.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

    real = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: FullDisk(real(self, m)))
    from pipeline.errors import DownloadError

    with pytest.raises(
        DownloadError, match=r"vcmslcfg: disk full while unpacking SVDNB_.*avg_rade9h\.tif \("
    ):
        download_months("eog", [(2021, 3)], BBOX, tmp_path, progress=False)
    assert not list(tmp_path.rglob("*.extracted"))


def _sparse_tgz(stem: str, realsize: int) -> bytes:
    """A valid archive of ~230 bytes whose avg_rade9h member is a GNU sparse file (PAX 1.0) of
    ``realsize`` bytes: one data byte at the end, the rest a hole that unpacks as zeros."""
    import io
    import tarfile

    name = f"{stem}.avg_rade9h.tif"
    sparse_map = f"1\n{realsize - 1}\n1\n".encode()
    block = sparse_map + bytes(512 - len(sparse_map)) + b"x"
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    info.size = len(block)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(block))
    return buf.getvalue()


def test_archive_with_a_sparse_terabyte_member_is_refused_at_once(lb, tmp_path, monkeypatch):
    """The real bomb: a few hundred bytes declaring a 1 TB member (the old code copied zeros until the disk
    was full). The real budget (64 MB floor for a small archive) refuses it before a byte is written."""
    import time

    from pipeline.errors import DownloadError

    _login(monkeypatch)
    stem = eog_name(2021, 3)
    data = _sparse_tgz(stem, 10**12)
    assert len(data) < 400
    lb.add(eog_month_dir(2021, 3) + stem + ".tgz", data)
    t0 = time.monotonic()
    with pytest.raises(
        DownloadError,
        match=rf"{stem}\.avg_rade9h\.tif unpacks to 931\.3 GB, more than the 64\.0 MB "
        r"allowed for an archive of \d+ B \(a real EOG layer is about 2 GB\)",
    ):
        download_months("eog", [(2021, 3)], BBOX, tmp_path, progress=False)
    assert time.monotonic() - t0 < 10
    assert not list(tmp_path.rglob("*.extracted")) and not list(tmp_path.rglob("*.tif"))
