"""Annual products: EOG VNL v2 and VNP46A4 names, downloads, the pixel interval, end to end."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.fetch import http as download
from pipeline.fetch.eog_annual import pick_year, version_folders
from pipeline.read.sources import EOG_ANNUAL_RE, find_annual_rasters, find_monthly_rasters
from tests.conftest import write_eog_month, write_tif
from tests.loopback import BM_SITES, EOG_SITES, TOKEN_PATH, Loopback, sites_geojson
from tests.loopback_annual import (
    EOG_ANNUAL_STEMS,
    bm_annual_dir,
    bm_annual_name,
    eog_annual_dir,
    populate_bm_annual,
    populate_eog_annual,
)

EOG_TOKEN = "tok-ANNUAL-9c3d"
EDL_TOKEN = "edl-ANNUAL-41bb"
NAMES = [
    "VNL_v2_npp_2021_global_vcmslcfg_c202205302300.average_masked.dat.tif",
    "VNL_v21_npp_2021_global_vcmslcfg_c202205302300.average_masked.dat.tif",
    "VNL_v22_npp_2022_global_vcmslcfg_c202303062300.cf_cvg.dat.tif",
    "VNL_v22_npp-j01_2023_global_vcmslcfg_c202402081600.average_masked.dat.tif",
    "VNL_npp_2024_global_vcmslcfg_v2_c202502261200.average_masked.dat.tif",
    "VNL_npp_2024_global_vcmslcfg_v2_c202502261200.median_masked.tif",
]


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
def eog(monkeypatch):
    with Loopback() as server:
        server.protect("/nighttime_light/", "401")
        server.allow_token(EOG_TOKEN)
        monkeypatch.setenv("NIGHTLIGHTS_EOG_URL", server.url + "/nighttime_light")
        monkeypatch.setenv("NIGHTLIGHTS_EOG_TOKEN_URL", server.url + TOKEN_PATH)
        monkeypatch.setenv("EOG_TOKEN", EOG_TOKEN)
        yield server


@pytest.fixture
def laads(monkeypatch):
    with Loopback() as server:
        server.protect("/archive/allData/5200/VNP46A4/2", "401")
        server.allow_token(EDL_TOKEN)
        server.state.redirect_prefixes.append("/archive/")
        monkeypatch.setenv("NIGHTLIGHTS_LAADS_URL", server.url)
        monkeypatch.setenv("EARTHDATA_TOKEN", EDL_TOKEN)
        yield server


def _leaks(token: str, root, text: str) -> list:
    found = [p for p in root.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    return found + (["log or terminal"] if token in text else [])


# --------------------------------------------------------------------------- names


def test_both_eog_annual_name_forms_are_recognised():
    got = [(m["year"], m["cfg"], m["layer"]) for m in map(EOG_ANNUAL_RE.match, NAMES)]
    assert got == [
        ("2021", "vcmslcfg", "average_masked"),
        ("2021", "vcmslcfg", "average_masked"),
        ("2022", "vcmslcfg", "cf_cvg"),
        ("2023", "vcmslcfg", "average_masked"),
        ("2024", "vcmslcfg", "average_masked"),
        ("2024", "vcmslcfg", "median_masked"),
    ]
    assert (
        EOG_ANNUAL_RE.match(
            "SVDNB_npp_20240101-20240131_75N060E_vcmslcfg_v10_c202402071000.avg_rade9h.tif"
        )
        is None
    )


def test_listing_picks_the_year_config_and_the_newest_s_npp_composite():
    stem = "VNL_npp_2024_global_vcmslcfg_v2_c202502261200"
    names = [
        f"{stem}.{lyr}.dat.tif.gz" for lyr in ("average_masked", "cf_cvg", "median", "cvg")
    ] + [
        "VNL_npp_2024_global_vcmcfg_v2_c202502261200.average_masked.dat.tif.gz",
        "VNL_npp-j01_2024_global_vcmslcfg_v2_c202503010000.average_masked.dat.tif.gz",
        "VNL_npp_2024_global_vcmslcfg_v2_c202401010000.average_masked.dat.tif.gz",
        "VNL_npp_2023_global_vcmslcfg_v2_c202502261200.average_masked.dat.tif.gz",
    ]
    assert pick_year(names, 2024, "vcmslcfg") == {
        "average_masked": f"{stem}.average_masked.dat.tif.gz",
        "cf_cvg": f"{stem}.cf_cvg.dat.tif.gz",
    }
    assert pick_year(names, 2025, "vcmslcfg") == {}
    html = '<a href="../">up</a><a href="v21/">v21/</a><a href="v22/">v22/</a><a href="README.txt">r</a>'
    assert version_folders(html) == ["v22", "v21"]


def test_annual_and_monthly_files_in_one_folder_are_told_apart(tmp_path, caplog):
    west, north = 125.0, 39.5
    for year, (_, stem) in EOG_ANNUAL_STEMS.items():
        write_tif(
            tmp_path / f"{stem}.average_masked.dat.tif",
            np.full((4, 4), float(year - 2020), "float32"),
            west,
            north,
        )
        write_tif(
            tmp_path / f"{stem}.median_masked.dat.tif", np.zeros((4, 4), "float32"), west, north
        )
        write_tif(tmp_path / f"{stem}.cf_cvg.dat.tif", np.full((4, 4), 30, "uint16"), west, north)
    write_eog_month(tmp_path, 2023, 5, np.ones((4, 4)), np.full((4, 4), 9), west, north)
    caplog.set_level(logging.INFO)
    annual = find_annual_rasters(tmp_path, years=(2023, 2024))
    assert [(r.month, r.period, r.product, r.aux_kind) for r in annual] == [
        ("2023", "year", "eog-annual-vcmslcfg", "cf_cvg"),
        ("2024", "year", "eog-annual-vcmslcfg", "cf_cvg"),
    ]
    assert all(".average_masked." in r.radiance.name and ".cf_cvg." in r.aux.name for r in annual)
    months = find_monthly_rasters(tmp_path)
    assert [(r.month, r.period) for r in months] == [("2023-05", "month")]
    assert (
        "skipped" not in caplog.text
    )  # annual files are not mistaken for months (c2024... stamps)


# --------------------------------------------------------------------------- the interval


def test_delta_method_interval_matches_the_spread_of_replicates():
    """Independent pixel noise: the linearised SE (before the footprint inflation) equals the
    standard deviation of d over repeated draws; a uniform change adds no uncertainty."""
    from pipeline.judge.annual import _linearised

    rng = np.random.default_rng(3)
    n, reps = 60, 4000
    w = rng.uniform(0.2, 1.0, n)
    zone = np.zeros(n, "int64")
    mu = rng.uniform(2.0, 6.0, n)
    ok = np.ones(n, bool)
    ds, ses = [], []
    for _ in range(reps):
        b = mu + 0.4 * rng.standard_normal(n)
        t = 1.5 * mu + 0.4 * rng.standard_normal(n)
        var, _ = _linearised(zone, w, [(b, ok), (t, ok)], 1, 0.1, True)
        ds.append(np.log((np.sum(w * t) / w.sum() + 0.1) / (np.sum(w * b) / w.sum() + 0.1)))
        ses.append(np.sqrt(var[0]))
    assert np.mean(ses) == pytest.approx(np.std(ds), rel=0.08)
    var, neff = _linearised(zone, w, [(mu, ok), (2 * mu, ok)], 1, 0.0, True)
    assert var[0] == pytest.approx(0.0, abs=1e-20) and neff[0] == pytest.approx(
        w.sum() ** 2 / (w**2).sum()
    )


def test_site_interval_is_the_direct_computation_with_the_footprint_inflation(tmp_path):
    """A square site on whole pixels: value, SE and effective pixels from numpy by hand."""
    from pipeline.analysis import analyse
    from pipeline.config import Params
    from pipeline.read.sites import read_sites
    from tests.conftest import polygon_feature, write_sites

    res, west, north = 1 / 240, 125.0, 40.0
    rng = np.random.default_rng(5)
    base = rng.uniform(1, 5, (40, 40)).astype("float32")
    years = {2023: base, 2024: (base * rng.uniform(1.2, 1.6, base.shape)).astype("float32")}
    for y, arr in years.items():
        write_tif(tmp_path / f"VNP46A4_{y}.radiance.tif", arr, west, north, nodata=float("nan"))
        write_tif(tmp_path / f"VNP46A4_{y}.quality.tif", np.zeros((40, 40), "uint8"), west, north)
    c0, r0, k = 10, 12, 8  # the site: pixels [12:20, 10:18]
    ring = [
        (west + c0 * res, north - r0 * res),
        (west + (c0 + k) * res, north - r0 * res),
        (west + (c0 + k) * res, north - (r0 + k) * res),
        (west + c0 * res, north - (r0 + k) * res),
    ]
    sites = read_sites(
        [write_sites(tmp_path / "s.geojson", [polygon_feature("sq", ring + ring[:1])])], 2000.0
    )
    rasters = find_annual_rasters(tmp_path)
    params = Params(baseline_year=2023, target_year=2024, product="annual")
    row = analyse(
        sites, rasters, params, source="local", data_kind="real", sensitivity=False, progress=False
    ).changes.iloc[0]
    b, t = (
        years[2023][r0 : r0 + k, c0 : c0 + k].astype(float),
        years[2024][r0 : r0 + k, c0 : c0 + k].astype(float),
    )
    eps = params.epsilon
    resid = (t - t.mean()) / (t.mean() + eps) - (b - b.mean()) / (b.mean() + eps)
    lat = north - (r0 + k / 2) * res
    deff = (750 / (res * 111_320 * np.cos(np.radians(lat)))) * (750 / (res * 110_574))
    se = np.sqrt(deff * np.sum(resid**2) / resid.size**2 * resid.size / (resid.size - 1))
    assert row["baseline_value"] == pytest.approx(b.mean(), rel=1e-6)
    assert row["log_ratio"] == pytest.approx(np.log((t.mean() + eps) / (b.mean() + eps)), rel=1e-6)
    assert row["se_log_ratio"] == pytest.approx(se, rel=1e-3)
    assert row["n_pixels_eff"] == pytest.approx(k * k / deff, rel=1e-3)
    assert row["log_ci_high"] - row["log_ci_low"] == pytest.approx(2 * 1.959964 * se, rel=1e-3)
    assert row["class"] == "brightened" and row["n_months"] == 12


# --------------------------------------------------------------------------- end to end


def test_eog_annual_download_then_run_recovers_the_planted_classes(eog, tmp_path, capsys, caplog):
    populate_eog_annual(eog, (2022, 2023, 2024))
    eog.add("/nighttime_light/annual/README_annual.txt", b"readme")
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
                "--product",
                "annual",
                "--start",
                "2023",
                "--end",
                "2024",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    assert "2 year(s) downloaded" in capsys.readouterr().out
    assert (
        main(
            [
                "run",
                "--source",
                "eog",
                "--product",
                "annual",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
                "--out",
                str(out),
                "--baseline-year",
                "2023",
                "--target-year",
                "2024",
                "--no-sensitivity",
                "--no-figures",
            ]
        )
        == 0
    )
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["data_kind"] == "real" and verdict["product"] == "annual"
    assert (
        verdict["products"] == ["eog-annual-vcmslcfg"]
        and verdict["parameters"]["product"] == "annual"
    )
    assert [i["file"] for i in verdict["inputs"]] == [
        EOG_ANNUAL_STEMS[y][1] + ".average_masked.dat.tif" for y in (2022, 2023, 2024)
    ]
    classes = pd.read_csv(out / "site_changes.csv").set_index("site_id")["class"].to_dict()
    assert classes == {
        "alpha": "brightened",
        "bravo": "dimmed",
        "charlie": "unchanged",
        "delta": "unchanged",
    }
    for year in (2023, 2024):  # each form fetched once: download's files were reused by run
        assert (
            len(eog.requests(eog_annual_dir(year) + EOG_ANNUAL_STEMS[year][1] + ".average_masked"))
            == 1
        )
    assert not eog.requests("median_masked") and not eog.requests("vcmcfg")
    manifest = json.loads((data / "manifest.json").read_text())["files"]
    assert {(v["product"], v["month"], v["layer"]) for v in manifest.values()} == {
        ("eog-annual-vcmslcfg", str(y), lyr)
        for y in (2022, 2023, 2024)
        for lyr in ("average_masked", "cf_cvg")
    }
    assert not list((data / "raw").rglob("*.gz"))
    captured = capsys.readouterr()
    assert _leaks(EOG_TOKEN, tmp_path, captured.out + captured.err + caplog.text) == []


def test_vnp46a4_download_then_run_recovers_the_planted_classes(laads, tmp_path, capsys, caplog):
    populate_bm_annual(laads, (2022, 2023, 2024))
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
                "--product",
                "annual",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
                "--out",
                str(out),
                "--baseline-year",
                "2023",
                "--target-year",
                "2024",
                "--no-sensitivity",
                "--no-figures",
            ]
        )
        == 0
    )
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["data_kind"] == "real" and verdict["products"] == ["VNP46A4"]
    classes = pd.read_csv(out / "site_changes.csv").set_index("site_id")["class"].to_dict()
    assert classes == {"papa": "brightened", "quebec": "unchanged", "romeo": "dimmed"}
    cdn = laads.requests(".h5", server="cdn")
    assert len(cdn) == 3 * 3 and all(r.authorization == f"Bearer {EDL_TOKEN}" for r in cdn)
    assert (
        main(
            [
                "download",
                "--source",
                "blackmarble",
                "--product",
                "annual",
                "--start",
                "2022-01",
                "--end",
                "2024-12",
                "--sites",
                str(sites),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    assert len(laads.requests(".h5", server="cdn")) == 9  # months reduced to years, all cached
    captured = capsys.readouterr()
    assert "0 year(s) downloaded, 3 already cached" in captured.out
    assert sorted(p.name for p in (data / "blackmarble_annual").iterdir()) == [
        f"VNP46A4_{y}.{lyr}.tif" for y in (2022, 2023, 2024) for lyr in ("quality", "radiance")
    ]
    assert _leaks(EDL_TOKEN, tmp_path, captured.out + captured.err + caplog.text) == []


@pytest.mark.parametrize("which", ["eog", "blackmarble"])
def test_an_html_page_instead_of_the_file_is_one_error_line(which, eog, laads, tmp_path, capsys):
    sites = tmp_path / "sites.geojson"
    if which == "eog":
        populate_eog_annual(eog, (2023,))
        eog.fault(
            eog_annual_dir(2023) + EOG_ANNUAL_STEMS[2023][1] + ".average_masked.dat.tif.gz", "html"
        )
        sites.write_text(sites_geojson(EOG_SITES))
    else:
        populate_bm_annual(laads, (2023,), n=24)
        laads.fault(bm_annual_dir(2023) + bm_annual_name(2023, 30, 5), "html")
        sites.write_text(sites_geojson(BM_SITES))
    code = main(
        [
            "download",
            "-q",
            "--source",
            which,
            "--product",
            "annual",
            "--start",
            "2023",
            "--end",
            "2023",
            "--sites",
            str(sites),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("nightlights: error: authentication failed: ") and "HTML page" in err
    assert ("EOG_TOKEN" if which == "eog" else "Generate Token") in err
    assert not list((tmp_path / "data").rglob("*.tif"))


def test_a_broken_annual_file_is_refused(eog, tmp_path, capsys):
    populate_eog_annual(eog, (2023,))
    eog.add(
        eog_annual_dir(2023) + EOG_ANNUAL_STEMS[2023][1] + ".cf_cvg.dat.tif.gz",
        b"\x1f\x8b\x08garbage",
    )
    sites = tmp_path / "sites.geojson"
    sites.write_text(sites_geojson(EOG_SITES))
    code = main(
        [
            "download",
            "-q",
            "--source",
            "eog",
            "--product",
            "annual",
            "--start",
            "2023",
            "--end",
            "2023",
            "--sites",
            str(sites),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("nightlights:")]
    assert code == 2 and len(errors) == 1 and "fails verification twice" in errors[0]
    assert not list(
        (tmp_path / "data").rglob("*.tif")
    )  # no half-cached year (radiance without cf_cvg)


def test_year_range_is_checked():
    from pipeline.errors import ConfigError
    from pipeline.fetch import year_list

    assert year_list("2023", "2025") == [2023, 2024, 2025] and year_list("2023-04", "2024-02") == [
        2023,
        2024,
    ]
    with pytest.raises(ConfigError, match="use YYYY"):
        year_list("23", "2024")
    with pytest.raises(ConfigError, match="empty"):
        year_list("2025", "2024")


def test_light_shared_between_neighbours_needs_the_footprint_inflation():
    """Noise shared by 2x2 pixels (as a DNB footprint spans ~2 x 1.6 pixels at 40N): the
    uninflated pixel variance is too small by about the pixels per footprint (4 here), which is
    what the design effect restores; at 40N it is 3.4."""
    from pipeline.judge.annual import _linearised, footprint_deff
    from pipeline.read.sources import Grid

    rng = np.random.default_rng(1)
    n, k = 10, 2
    zone, w, ok = np.zeros(n * n, "int64"), np.ones(n * n), np.ones(n * n, bool)

    def noise():
        z = rng.standard_normal((n + k - 1, n + k - 1))
        return (sum(z[i : i + n, j : j + n] for i in range(k) for j in range(k)) / k).ravel() * 0.4

    ds, ses = [], []
    for _ in range(2000):
        b, t = 3.0 + noise(), 4.5 + noise()
        var, _ = _linearised(zone, w, [(b, ok), (t, ok)], 1, 0.1, True)
        ds.append(np.log((t.mean() + 0.1) / (b.mean() + 0.1)))
        ses.append(np.sqrt(var[0]))
    assert 3.0 < (np.std(ds) / np.mean(ses)) ** 2 < 4.6
    from pyproj import CRS

    grid = Grid(CRS.from_epsg(4326).to_wkt(), (1 / 240, 0, 120, 0, -1 / 240, 45), 10, 10)
    assert footprint_deff(grid, np.array([40.0]))[0] == pytest.approx(3.44, abs=0.01)


def test_the_other_products_cache_is_found_for_the_same_years(tmp_path):
    from pipeline.fetch.acquire import _other_product

    folder = tmp_path / "blackmarble_annual"
    folder.mkdir()
    for y in (2023, 2024):
        write_tif(folder / f"VNP46A4_{y}.radiance.tif", np.ones((4, 4), "float32"), 125.0, 40.0)
        write_tif(folder / f"VNP46A4_{y}.quality.tif", np.zeros((4, 4), "uint8"), 125.0, 40.0)
    product, rasters = _other_product(
        "blackmarble",
        "monthly",
        tmp_path / "blackmarble",
        tmp_path,
        "vcmslcfg",
        (2022, 2023, 2024),
        (2023, 2024),
    )
    assert product == "annual" and [r.month for r in rasters] == ["2023", "2024"]
    assert (
        _other_product(
            "blackmarble",
            "monthly",
            tmp_path / "blackmarble",
            tmp_path,
            "vcmslcfg",
            (2024, 2025),
            (2024, 2025),
        )
        is None
    )  # 2025 missing: no product dimension
    assert (
        _other_product("eog", "monthly", tmp_path / "eog", tmp_path, "vcmslcfg", (2024,), (2024,))
        is None
    )
