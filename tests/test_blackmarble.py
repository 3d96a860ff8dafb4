"""Black Marble VNP46A3: fill/scale from attributes, tile grid, mosaic, LAADS access, end to end."""

from __future__ import annotations

import io
import json
import logging

import h5py
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point

from pipeline.cli import main
from pipeline.errors import AuthError, DownloadError, SourceError
from pipeline.fetch import download_months
from pipeline.fetch import http as download
from pipeline.fetch.blackmarble import (
    GROUP,
    VARIABLE,
    decode,
    mosaic,
    read_tile,
    tile_bounds,
    tiles_for,
)
from pipeline.read.sources import find_monthly_rasters
from tests.loopback import (
    BM_SITES,
    OTHER_HOST,
    Loopback,
    bm_dir,
    bm_h5,
    bm_name,
    needs_other_host,
    populate_bm,
    sites_geojson,
)

TOKEN = "edl-DISTINCTIVE-77aa"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "BACKOFF_FACTOR", 0.0)
    for var in ("EOG_TOKEN", "EOG_CLIENT_ID", "EOG_USERNAME", "EOG_PASSWORD", "EARTHDATA_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIGHTLIGHTS_CONFIG", str(tmp_path / "no-config.yaml"))


@pytest.fixture
def lb(monkeypatch):
    with Loopback() as server:
        server.protect(
            "/archive/allData/5200/VNP46A3/2", "401"
        )  # files and listings need the token
        server.allow_token(TOKEN)
        server.state.redirect_prefixes.append("/archive/")  # files: 302 to the "cdn" port
        monkeypatch.setenv("NIGHTLIGHTS_LAADS_URL", server.url)
        monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
        yield server


def _tile_file(tmp_path, h, v, rad, q, convention):
    p = tmp_path / bm_name(2021, 3, h, v)
    p.write_bytes(bm_h5(h, v, rad, q, convention))
    return p


@pytest.mark.parametrize("convention", ["c1", "c2"])
def test_fill_and_scale_come_from_the_file(tmp_path, convention):
    rad = np.array([[12.3, np.nan], [0.0, 407.5]], "float32")
    q = np.array([[0, 255], [1, 2]], "uint8")
    t = read_tile(_tile_file(tmp_path, 30, 5, rad, q, convention))
    np.testing.assert_allclose(t.radiance, rad, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(t.quality, q)
    assert (t.h, t.v) == (30, 5)


def test_decode_reads_offset_under_either_name():
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        a = f.create_dataset("a", data=np.array([10, 65535], "uint16"))
        a.attrs.update({"_FillValue": np.uint16(65535), "scale_factor": 0.5, "offset": 1.0})
        b = f.create_dataset("b", data=np.array([10, 7], "uint16"))
        b.attrs.update({"_FillValue": np.uint16(7), "scale_factor": 2.0, "add_offset": -1.0})
        va, fa = decode(f["a"])
        vb, _ = decode(f["b"])
    assert va[0] == 6.0 and np.isnan(va[1]) and fa.tolist() == [False, True]
    assert vb[0] == 19.0 and np.isnan(vb[1])


def test_tile_grid_and_needed_tiles():
    assert tile_bounds(30, 5) == (120.0, 30.0, 130.0, 40.0)
    assert tile_bounds(31, 4) == (130.0, 40.0, 140.0, 50.0)
    nk = (124.0, 37.5, 131.0, 43.0)
    assert tiles_for(nk) == [(30, 4), (30, 5), (31, 4), (31, 5)]
    sites = [Point(lon, lat).buffer(0.15) for _, lon, lat in BM_SITES]
    assert tiles_for(nk, sites) == [(30, 4), (30, 5), (31, 4)]  # h31v05 is sea here


def test_mosaic_places_each_tile_by_h_v(tmp_path):
    n = 24  # tiny tiles: the reader takes the pixel count from the file
    tiles = []
    for h, v, value in ((30, 4, 1.0), (30, 5, 2.0), (31, 4, 3.0)):
        q = np.zeros((n, n), "uint8")
        tiles.append(
            read_tile(_tile_file(tmp_path, h, v, np.full((n, n), value, "float32"), q, "c2"))
        )
    rad, qual, transform = mosaic(tiles, (129.0, 39.0, 131.0, 41.0))
    res = 10 / n
    assert transform.a == pytest.approx(res) and transform.c == pytest.approx(129.0 - (129.0 % res))

    def at(lon, lat):
        col, row = ~transform * (lon, lat)
        return rad[int(row), int(col)], qual[int(row), int(col)]

    assert at(129.5, 40.5)[0] == 1.0 and at(129.5, 39.5)[0] == 2.0 and at(130.5, 40.5)[0] == 3.0
    assert np.isnan(at(130.5, 39.5)[0]) and at(130.5, 39.5)[1] == 255  # h31v05 not given: fill


def test_tile_number_mismatch_is_an_error(tmp_path):
    p = _tile_file(tmp_path, 30, 5, np.zeros((4, 4), "float32"), np.zeros((4, 4), "uint8"), "c2")
    bad = p.with_name(p.name.replace("h30v05", "h31v05"))
    p.rename(bad)
    with pytest.raises(SourceError, match="attributes say h30v5"):
        read_tile(bad)


def test_laads_download_follows_redirect_with_token_and_mosaics(lb, tmp_path):
    populate_bm(lb, (2021,), n=48)
    geoms = [Point(lon, lat).buffer(0.15) for _, lon, lat in BM_SITES]
    bbox = (129.4, 39.5, 130.6, 40.6)
    folder, outcome = download_months(
        "blackmarble", [(2021, 2), (2021, 3)], bbox, tmp_path, progress=False, geometries=geoms
    )
    assert outcome["downloaded"] == ["2021-02", "2021-03"]
    cdn = lb.requests(".h5", server="cdn")
    assert len(cdn) == 6 and all(r.authorization == f"Bearer {TOKEN}" for r in cdn)
    assert not lb.requests("h31v05.002")  # listed but not needed
    rasters = find_monthly_rasters(folder)
    assert [r.month for r in rasters] == ["2021-02", "2021-03"] and rasters[
        0
    ].aux_kind == "bm_quality"
    with rasterio.open(rasters[0].radiance) as ds:
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata) and ds.block_shapes == [(256, 256)]
        assert ds.bounds.left <= bbox[0] and ds.bounds.top >= bbox[3]
        assert ds.tags()["LAYER"] == VARIABLE
    manifest = json.loads((tmp_path / "manifest.json").read_text())["files"]
    urls = [s["url"] for v in manifest.values() for s in v["sources"]]
    assert urls and all(
        "X-Signature" not in u and u.startswith(lb.url + "/archive/allData/5200/VNP46A3/2021/")
        for u in urls
    )
    assert not list((tmp_path / "raw").rglob("*.h5"))


def test_html_instead_of_hdf5_says_generate_a_token(lb, tmp_path):
    populate_bm(lb, (2021,), n=24)
    name = bm_dir(2021, 1) + bm_name(2021, 1, 30, 5)
    lb.fault(name, "html")
    with pytest.raises(AuthError, match=r"authentication failed.*Generate Token.*Affiliation"):
        download_months(
            "blackmarble", [(2021, 1)], (129.4, 39.5, 129.9, 39.9), tmp_path, progress=False
        )
    assert not (tmp_path / "blackmarble").exists() or not list((tmp_path / "blackmarble").iterdir())


def test_truncated_hdf5_is_rejected(lb, tmp_path):
    populate_bm(lb, (2021,), n=24)
    name = bm_dir(2021, 1) + bm_name(2021, 1, 30, 5)
    lb.add(name, lb.state.files[name][:2000])
    with pytest.raises(DownloadError, match="fails verification twice"):
        download_months(
            "blackmarble", [(2021, 1)], (129.4, 39.5, 129.9, 39.9), tmp_path, progress=False
        )
    assert not list(tmp_path.rglob("*.tif"))


def test_group_name_is_the_real_one():
    assert (
        GROUP == "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields"
        and VARIABLE == "NearNadir_Composite_Snow_Free"
    )


@pytest.mark.slow
def test_download_then_run_gives_a_real_verdict_without_leaking_the_token(
    lb, tmp_path, capsys, caplog
):
    populate_bm(lb, (2020, 2021, 2022), n=240)
    sites = tmp_path / "sites.geojson"
    sites.write_text(sites_geojson(BM_SITES))
    data, out = tmp_path / "data", tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    assert (
        main(
            [
                "run",
                "--source",
                "blackmarble",
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
    changes = (out / "site_changes.csv").read_text()
    assert "brightened" in changes and "dimmed" in changes
    n_h5 = len(lb.requests(".h5", server="cdn"))
    assert n_h5 == 36 * 3
    assert (
        main(
            [
                "download",
                "--source",
                "blackmarble",
                "--start",
                "2022-01",
                "--end",
                "2022-12",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    assert len(lb.requests(".h5", server="cdn")) == n_h5  # all cached: nothing fetched again
    captured = capsys.readouterr()
    assert "0 month(s) downloaded, 12 already cached" in captured.out
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == [] and TOKEN not in captured.out + captured.err + caplog.text


@needs_other_host
def test_earthdata_token_never_follows_a_redirect_to_another_host(tmp_path, monkeypatch):
    """LAADS redirecting a file to a stranger (127.0.0.2): the file is asked for without the token."""
    with Loopback(cdn_host=OTHER_HOST) as server:
        server.protect("/archive/allData/5200/VNP46A3/2", "401")
        server.allow_token("tok-bm-zq55")
        server.state.redirect_prefixes.append("/archive/")
        populate_bm(server, (2021,), n=24)
        monkeypatch.setenv("NIGHTLIGHTS_LAADS_URL", server.url)
        monkeypatch.setenv("EARTHDATA_TOKEN", "tok-bm-zq55")
        geoms = [Point(lon, lat).buffer(0.15) for _, lon, lat in BM_SITES]
        with pytest.raises(AuthError):
            download_months(
                "blackmarble",
                [(2021, 2)],
                (129.4, 39.5, 130.6, 40.6),
                tmp_path,
                progress=False,
                geometries=geoms,
            )
        cdn = server.requests(server="cdn")
        assert cdn and all(r.authorization is None for r in cdn)
        assert all(
            r.authorization == "Bearer tok-bm-zq55"
            for r in server.requests("/archive/", server="main")
        )


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_hdf5_declaring_a_huge_layer_is_refused_in_bounded_memory(tmp_path, side):
    """A 6 KB file declaring 20000^2 px used 3.7 GB, one declaring 100000^2 tried 37 GiB."""
    import subprocess
    import sys

    import h5py

    path = tmp_path / bm_name(2024, 1, 30, 5)
    with h5py.File(path, "w") as f:
        g = f.create_group(GROUP)
        g.create_dataset(
            VARIABLE, shape=(side, side), dtype="uint16", chunks=(256, 256), fillvalue=65535
        )
        g.create_dataset(
            f"{VARIABLE}_Quality", shape=(side, side), dtype="uint8", chunks=(256, 256)
        )
    assert path.stat().st_size < 20_000
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from pathlib import Path; from pipeline.errors import SourceError; "
        "from pipeline.fetch.blackmarble import read_tile\n"
        "try:\n    read_tile(Path(sys.argv[1]))\nexcept SourceError as e:\n    print(e); sys.exit(2)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr[-400:]
    assert done.stdout.strip() == (
        f"{path}: {VARIABLE} declares {side} x {side} px; a Black Marble tile is 2400 x 2400: the file is "
        "damaged or not VNP46A3/A4 (refused before reading it); delete it and download it again"
    )
