"""Archives change: a reprocessed EOG month (new c stamp) and a changed LAADS file are fetched again
by the next ``download``; the manifest and the cached COGs follow; ``--no-refresh`` trusts the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from pipeline.cli import main
from tests.loopback import (
    BM_SITES,
    EOG_SITES,
    Loopback,
    bm_dir,
    bm_h5,
    bm_name,
    eog_month_dir,
    eog_name,
    eog_tgz,
    eog_window,
    populate_bm,
    populate_eog,
    sites_geojson,
)


@pytest.fixture
def lb(monkeypatch):
    with Loopback() as server:  # an open mirror: no credentials needed
        monkeypatch.setenv("NIGHTLIGHTS_EOG_URL", server.url + "/nighttime_light")
        monkeypatch.setenv("NIGHTLIGHTS_LAADS_URL", server.url)
        for k in ("EOG_TOKEN", "EOG_CLIENT_ID", "EARTHDATA_TOKEN"):
            monkeypatch.delenv(k, raising=False)
        yield server


def _manifest(data) -> dict:
    return json.loads((data / "manifest.json").read_text())["files"]


def test_republished_eog_month_replaces_the_old_one(lb, tmp_path, capsys):
    populate_eog(lb, (2020,))
    sites = tmp_path / "sites.geojson"
    sites.write_text(sites_geojson(EOG_SITES))
    data = tmp_path / "data"
    args = [
        "download",
        "--source",
        "eog",
        "--start",
        "2020-01",
        "--end",
        "2020-02",
        "--sites",
        str(sites),
        "--data-dir",
        str(data),
        "-q",
    ]
    assert main(args) == 0
    old = sorted(k for k in _manifest(data) if "20200101" in k)
    assert len(old) == 2 and all("c202002071000" in k for k in old)

    # EOG reprocesses January: a new stamp beside the old file, with other values (x 3)
    west, north, w, h = eog_window([(lon, lat) for _, lon, lat in EOG_SITES])
    stem = eog_name(2020, 1, stamp="202306011200")
    lb.add(
        eog_month_dir(2020, 1) + stem + ".tgz",
        eog_tgz(stem, np.full((h, w), 30.0, "float32"), np.full((h, w), 12, "uint16"), west, north),
    )
    assert main([*args, "--no-refresh"]) == 0
    assert len(lb.requests(stem)) == 0  # trusted the cache, as asked

    assert main(args) == 0
    assert len(lb.requests(stem + ".tgz")) == 1
    assert "EOG 2020-01: republished as " + stem + ".tgz" in capsys.readouterr().err
    files = _manifest(data)
    january = sorted(k for k in files if "20200101" in k)
    assert len(january) == 2 and all("c202306011200" in k for k in january)
    assert not any((data / k).exists() for k in old)  # the old month is gone from the cache
    rad = next(k for k in january if k.endswith("avg_rade9h.tif"))
    with rasterio.open(data / rad) as ds:
        assert float(np.nanmax(ds.read(1))) == 30.0
    feb_requests = len(lb.requests(eog_name(2020, 2)))
    assert main(args) == 0  # nothing changed since: nothing fetched
    assert (
        len(lb.requests(stem + ".tgz")) == 1 and len(lb.requests(eog_name(2020, 2))) == feb_requests
    )


def test_changed_laads_file_is_fetched_again(lb, tmp_path, capsys):
    served = populate_bm(lb, (2020,), n=120)
    sites = tmp_path / "sites.geojson"
    sites.write_text(sites_geojson(BM_SITES))
    data = tmp_path / "data"
    args = [
        "download",
        "--source",
        "blackmarble",
        "--start",
        "2020-03",
        "--end",
        "2020-03",
        "--sites",
        str(sites),
        "--data-dir",
        str(data),
        "-q",
    ]
    assert main(args) == 0
    name = bm_name(2020, 3, 30, 4)
    path = bm_dir(2020, 3) + name
    assert len(lb.requests(name)) == 1
    before = {k: v["sha256"] for k, v in _manifest(data).items()}

    # LAADS replaces the file under the same name (a fixed production run): its size changes
    rad = np.full((120, 120), 7.0)
    lb.add(path, bm_h5(30, 4, rad, np.zeros((120, 120), "uint8"), "c2") + b"\0" * 512)
    assert len(lb.state.files[path]) != len(served[path])
    assert main(args) == 0
    assert len(lb.requests(name)) == 2
    assert f"VNP46A3 2020-03: {name} changed on LAADS" in capsys.readouterr().err
    after = {k: v["sha256"] for k, v in _manifest(data).items()}
    assert after.keys() == before.keys() and after != before
    assert main(args) == 0 and len(lb.requests(name)) == 2  # unchanged since: cached


def test_full_disk_during_a_download_says_where_and_how_much_and_resumes(
    lb, tmp_path, monkeypatch, capsys
):
    import errno

    from pipeline.fetch import http

    populate_eog(lb, (2020,))
    sites = tmp_path / "sites.geojson"
    sites.write_text(sites_geojson(EOG_SITES))
    data = tmp_path / "data"
    args = [
        "download",
        "--source",
        "eog",
        "--start",
        "2020-01",
        "--end",
        "2020-01",
        "--sites",
        str(sites),
        "--data-dir",
        str(data),
        "-q",
    ]
    real_stream = http._stream

    def full_disk(r, part, *a, **k):
        part.write_bytes(b"x" * 100)  # some bytes landed before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(http, "_stream", full_disk)
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nightlights:")]
    assert len(err) == 1 and err[0].startswith(
        f"nightlights: error: {data / 'raw' / 'eog' / 'vcmslcfg'}: disk full"
    )
    assert "free space or choose another --data-dir" in err[0] and "needed" in err[0]
    assert not (data / "manifest.json").exists() or not _manifest(
        data
    )  # nothing half-done is trusted
    assert not list(data.rglob("*.tif"))  # no cached month from the half file
    monkeypatch.setattr(http, "_stream", real_stream)
    assert main(args) == 0  # space freed: the next run completes and verifies the month
    assert len(_manifest(data)) == 2
